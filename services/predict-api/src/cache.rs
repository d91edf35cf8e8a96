//! Each sensor's recent hourly series, kept for `ttl` after it was read, so that a request
//! for a sensor read less than `ttl` ago needs no query. The series is hourly: a second's
//! staleness changes no forecast, and at many requests per sensor and second it saves a
//! PostgreSQL round trip per request. A sensor with no readings is kept too (its 404 needs no
//! query either). `ttl` 0 turns the cache off.
//!
//! Once a series is older than `ttl`, the first request to ask reads it again and the
//! requests that ask meanwhile are served the one before, for at most another `ttl`. If that
//! read fails or its request is dropped, the others keep the old series until then, and then
//! read it themselves. Without that, every request in flight when a busy sensor's series
//! expired read it at once: at 30k requests a second, a burst of queries once a second that
//! queued on the connection pool and set the p99 (docs/benchmarks.md).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use airq_features::Series;

/// Entries past this are pruned of the expired ones (sensors no longer asked for).
const PRUNE_AT: usize = 100_000;

#[derive(Debug, Clone)]
struct Entry {
    read_at: Instant,
    /// Hours of history the series was read for (a new model may need more).
    hours: i64,
    /// `None`: the sensor has no readings.
    series: Option<Arc<Series>>,
    /// A request is reading the series again (it is older than the ttl).
    refreshing: bool,
}

/// What a lookup does with a sensor's entry.
#[derive(Debug, PartialEq, Eq)]
enum Use {
    /// Serve it: younger than the ttl, or younger than twice the ttl while another request
    /// reads it again.
    Serve,
    /// Older than the ttl, younger than twice it, and nobody reads it yet: read it, and
    /// serve it to the others meanwhile.
    Claim,
    /// Read it: none, older still, or for another history.
    Read,
}

impl Use {
    fn of(entry: Option<&Entry>, hours: i64, ttl: Duration, now: Instant) -> Self {
        let Some(e) = entry.filter(|e| e.hours == hours) else {
            return Use::Read;
        };
        let age = now.saturating_duration_since(e.read_at);
        if age < ttl || (age < ttl.saturating_mul(2) && e.refreshing) {
            Use::Serve
        } else if age < ttl.saturating_mul(2) {
            Use::Claim
        } else {
            Use::Read
        }
    }
}

/// The series cache (shared by the request handlers).
#[derive(Debug, Default)]
pub struct SeriesCache {
    ttl: Duration,
    entries: RwLock<HashMap<String, Entry>>,
    /// Reads stored ([`SeriesCache::store`] calls: one query each), and the sensors they read.
    reads: AtomicU64,
    sensors_read: AtomicU64,
}

/// What [`SeriesCache::lookup`] found: the series to use, and the sensors to read (the
/// caller then [`SeriesCache::store`]s them).
#[derive(Debug, Default)]
pub struct Lookup {
    pub found: BTreeMap<String, Arc<Series>>,
    pub missing: Vec<String>,
}

impl SeriesCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            ..Self::default()
        }
    }

    /// The reads stored so far, and the sensors they read (`/metrics`).
    pub fn reads(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::Relaxed),
            self.sensors_read.load(Ordering::Relaxed),
        )
    }

    /// The series of `sensors` for `hours` of history: those read less than `ttl` before
    /// `now`, and those read less than twice `ttl` before while another request reads them
    /// again; the others are `missing`, and a stale one this call returns as `missing` is
    /// being read by its caller from then on. A sensor known to have no readings is in
    /// neither.
    pub fn lookup(&self, sensors: &[String], hours: i64, now: Instant) -> Lookup {
        let mut out = Lookup::default();
        if self.ttl.is_zero() {
            out.missing = sensors.to_vec();
            return out;
        }
        let mut to_claim = Vec::new();
        {
            let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
            for s in sensors {
                let entry = entries.get(s);
                match Use::of(entry, hours, self.ttl, now) {
                    Use::Serve => serve(&mut out, s, entry),
                    Use::Claim => to_claim.push(s),
                    Use::Read => out.missing.push(s.clone()),
                }
            }
        }
        if !to_claim.is_empty() {
            // Rare (once a ttl per busy sensor): the write lock, to claim the refresh. Decided
            // again: another request may have claimed or stored it meanwhile.
            let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
            for s in to_claim {
                let entry = entries.get_mut(s);
                match Use::of(entry.as_deref(), hours, self.ttl, now) {
                    Use::Serve => serve(&mut out, s, entry.as_deref()),
                    Use::Claim => {
                        if let Some(e) = entry {
                            e.refreshing = true;
                        }
                        out.missing.push(s.clone());
                    }
                    Use::Read => out.missing.push(s.clone()),
                }
            }
        }
        out
    }

    /// Keeps what was read at `now` for `asked` (a sensor of `asked` not in `read` has no
    /// readings), and counts the read.
    pub fn store(
        &self,
        asked: &[String],
        read: &BTreeMap<String, Arc<Series>>,
        hours: i64,
        now: Instant,
    ) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.sensors_read
            .fetch_add(asked.len() as u64, Ordering::Relaxed);
        if self.ttl.is_zero() || asked.is_empty() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= PRUNE_AT {
            let keep = self.ttl.saturating_mul(2);
            entries.retain(|_, e| now.saturating_duration_since(e.read_at) < keep);
        }
        for s in asked {
            entries.insert(
                s.clone(),
                Entry {
                    read_at: now,
                    hours,
                    series: read.get(s).cloned(),
                    refreshing: false,
                },
            );
        }
    }

    /// Sensors held.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Adds an entry's series to what a lookup found (nothing for a sensor without readings).
fn serve(out: &mut Lookup, sensor: &str, entry: Option<&Entry>) {
    if let Some(series) = entry.and_then(|e| e.series.as_ref()) {
        out.found.insert(sensor.to_owned(), series.clone());
    }
}

#[cfg(test)]
mod tests {
    use airq_features::Hourly;

    use super::*;

    fn series(pm: f64) -> Arc<Series> {
        let t: chrono::DateTime<chrono::Utc> = "2025-05-01T00:00:00Z".parse().unwrap();
        let hour = Hourly {
            pm2_5: Some(pm),
            pm10: None,
            no2: None,
        };
        Arc::new(std::iter::once((t, hour)).collect())
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_series_is_served_for_its_ttl_then_read_again() {
        let c = SeriesCache::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let asked = names(&["S1", "S2", "NONE"]);
        assert_eq!(c.lookup(&asked, 25, t0).missing, asked, "empty: read all");
        let read: BTreeMap<_, _> = [
            ("S1".to_owned(), series(1.0)),
            ("S2".to_owned(), series(2.0)),
        ]
        .into();
        c.store(&asked, &read, 25, t0);

        let hit = c.lookup(&asked, 25, t0 + Duration::from_millis(999));
        assert!(hit.missing.is_empty(), "{:?}", hit.missing);
        assert_eq!(hit.found, read, "NONE is known to have no readings");
        // Older than the ttl, or for another model's history: read again.
        assert_eq!(
            c.lookup(&asked, 25, t0 + Duration::from_secs(1)).missing,
            asked
        );
        assert_eq!(c.lookup(&asked, 49, t0).missing, asked);
    }

    #[test]
    fn an_expired_series_is_read_by_one_request_while_the_others_are_served_the_old_one() {
        let c = SeriesCache::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let asked = names(&["S1", "NONE"]);
        c.store(&asked, &[("S1".to_owned(), series(1.0))].into(), 25, t0);

        // The first request past the ttl reads both again...
        assert_eq!(c.lookup(&asked, 25, at(1000)).missing, asked);
        // ...and those meanwhile get what was read before, for up to another ttl.
        for ms in [1001, 1999] {
            let stale = c.lookup(&asked, 25, at(ms));
            assert!(stale.missing.is_empty(), "at {ms} ms: {:?}", stale.missing);
            assert_eq!(stale.found, [("S1".to_owned(), series(1.0))].into());
        }
        // A read that never came back (the database failed it, the client went away): past
        // twice the ttl, every request reads again.
        assert_eq!(c.lookup(&asked, 25, at(2000)).missing, asked);
        assert_eq!(c.lookup(&asked, 25, at(2001)).missing, asked);
        // Another model's history is never served stale.
        assert_eq!(c.lookup(&asked, 49, at(1500)).missing, asked);

        // What the refresh stored is served fresh, and its own expiry claims again once.
        c.store(
            &asked,
            &[("S1".to_owned(), series(2.0))].into(),
            25,
            at(2001),
        );
        let fresh = c.lookup(&asked, 25, at(2500));
        assert_eq!(fresh.found, [("S1".to_owned(), series(2.0))].into());
        assert_eq!(c.lookup(&asked, 25, at(3001)).missing, asked);
        assert!(c.lookup(&asked, 25, at(3002)).missing.is_empty());
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let c = SeriesCache::new(Duration::ZERO);
        let t0 = Instant::now();
        let asked = names(&["S1"]);
        c.store(&asked, &[("S1".to_owned(), series(1.0))].into(), 25, t0);
        assert!(c.is_empty());
        assert_eq!(c.lookup(&asked, 25, t0).missing, asked);
    }
}
