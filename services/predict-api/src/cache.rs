//! Each sensor's recent hourly series, kept for `ttl` after it was read, so that a request
//! for a sensor read less than `ttl` ago needs no query. The series is hourly: a second's
//! staleness changes no forecast, and at many requests per sensor and second it saves a
//! PostgreSQL round trip per request. A sensor with no readings is kept too (its 404 needs no
//! query either). `ttl` 0 turns the cache off.

use std::collections::{BTreeMap, HashMap};
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
}

/// The series cache (shared by the request handlers).
#[derive(Debug, Default)]
pub struct SeriesCache {
    ttl: Duration,
    entries: RwLock<HashMap<String, Entry>>,
}

/// What [`SeriesCache::lookup`] found: the fresh series, and the sensors to read.
#[derive(Debug, Default)]
pub struct Lookup {
    pub found: BTreeMap<String, Arc<Series>>,
    pub missing: Vec<String>,
}

impl SeriesCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::default(),
        }
    }

    /// The series of `sensors` read at most `ttl` before `now` for `hours` of history; the
    /// others are `missing`. A sensor known to have no readings is in neither.
    pub fn lookup(&self, sensors: &[String], hours: i64, now: Instant) -> Lookup {
        let mut out = Lookup::default();
        if self.ttl.is_zero() {
            out.missing = sensors.to_vec();
            return out;
        }
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        for s in sensors {
            match entries.get(s) {
                Some(e)
                    if e.hours == hours && now.saturating_duration_since(e.read_at) < self.ttl =>
                {
                    if let Some(series) = &e.series {
                        out.found.insert(s.clone(), series.clone());
                    }
                }
                _ => out.missing.push(s.clone()),
            }
        }
        out
    }

    /// Keeps what was read at `now` for `asked` (a sensor of `asked` not in `read` has no
    /// readings).
    pub fn store(
        &self,
        asked: &[String],
        read: &BTreeMap<String, Arc<Series>>,
        hours: i64,
        now: Instant,
    ) {
        if self.ttl.is_zero() || asked.is_empty() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= PRUNE_AT {
            let ttl = self.ttl;
            entries.retain(|_, e| now.saturating_duration_since(e.read_at) < ttl);
        }
        for s in asked {
            entries.insert(
                s.clone(),
                Entry {
                    read_at: now,
                    hours,
                    series: read.get(s).cloned(),
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
    fn a_zero_ttl_keeps_nothing() {
        let c = SeriesCache::new(Duration::ZERO);
        let t0 = Instant::now();
        let asked = names(&["S1"]);
        c.store(&asked, &[("S1".to_owned(), series(1.0))].into(), 25, t0);
        assert!(c.is_empty());
        assert_eq!(c.lookup(&asked, 25, t0).missing, asked);
    }
}
