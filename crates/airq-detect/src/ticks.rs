//! Event-time ticks: the readings of one timestamp are judged together, once every sensor
//! that is expected at that time has reported it.
//!
//! The neighbours' context of a reading depends on which of its neighbours' readings the
//! detector holds when it judges it. Judged one by one in arrival order, that depends on how
//! the broker interleaved the sensors (in a stream, across partitions and producers), so the
//! same readings could give different alerts. [`Ticks`] removes the interleaving: readings
//! are held by timestamp, and tick `t` closes (oldest first) when
//!
//! - every expected sensor has reported `t` or later (a sensor that skipped `t` holds it
//!   until its next reading). Expected are the sensors that reported within `fresh_secs`
//!   before `t` (event time), and in a stream also those whose readings arrived within the
//!   last wait (processing time): in a fast replay a sensor whose partition lags behind the
//!   others is days behind in event time but still arriving. Or
//! - in a time-ordered input ([`Ticks::sorted`], a `backtest` file), only: a newer reading
//!   arrived, or
//! - in a stream, the caller's wall clock says the tick waited long enough and the sensors
//!   it waits for have been silent that long ([`Ticks::due`]: a sensor that stopped; one
//!   that is behind but still arriving is waited for). Such a tick closes with the older ticks that hold a reading of
//!   one of its sensors (each sensor's readings are judged in time order), not with every
//!   older tick: a live fleet next to a historical replay does not cut the replay's ticks.
//!   A live tick (within `fresh_secs` of the wall clock) goes by each sensor's rhythm
//!   instead ([`Wait::grace_ms`]): it does not wait for a sensor with no reading due at `t`
//!   or that missed its previous one, and gives the others up once their reading is late on
//!   their own interval by four times their usual jitter.
//!
//! The sensors a stream expects are those it has seen. So when a sensor it has not seen
//! arrives (at the start, or a replay started next to a live fleet, or a new sensor), the
//! first rule is suspended for one wait: the other new sensors' first readings, in other
//! partitions, need a moment to arrive. Ticks that wait that long close by the wall clock as
//! usual, so a fleet where sensors keep appearing never stalls for more than one wait. There
//! is no event-time grace in a stream: a fast replay through a multi-partition topic
//! interleaves sensors hundreds of readings apart, so no bound on the skew holds.
//!
//! A closed tick's readings come out sorted by sensor, and [`crate::Detector::judge_tick`]
//! enters all of their values into the neighbourhood before it judges any of them. The
//! alerts then depend on the set of readings per timestamp, not on their order: `backtest`
//! over a file and the service over a topic give the same alerts. They differ only where a
//! sensor the ticks did not expect (new, or back after `fresh_secs` of silence) reports a
//! timestamp whose tick the stream closed already; it is judged in a tick of its own.

use std::collections::{BTreeMap, HashMap};

use airq_domain::ProcessedReading;
#[cfg(test)]
use chrono::Timelike;
use chrono::{DateTime, Utc};

use crate::spatial::{Areas, SpatialConfig};

/// How long a tick waits by the wall clock for the sensors it misses.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    /// A live tick (its time within `fresh_secs` of `now`), ms: the most a stopped sensor
    /// delays its neighbours' alerts.
    pub live_ms: u64,
    /// A backlog tick (older: a replay, a catch-up after an outage), ms. No alert on it is
    /// urgent, and a pipeline working through a backlog delivers its sensors unevenly: the
    /// cleaner drains one partition for seconds while another waits.
    pub backlog_ms: u64,
    /// A live tick stops waiting for a sensor once its reading is late on the sensor's own
    /// rhythm (its previous reading's arrival plus the time between the two readings) by
    /// four times the sensor's usual jitter, and at most this, ms; it also waits this long
    /// for the sensors whose first reading is on its way. Event time advances with the wall
    /// clock in a live stream, so a sensor that reports every minute is due a minute after
    /// its last reading arrived: a stopped sensor costs its neighbours that, not `live_ms`.
    pub grace_ms: u64,
    /// The wall clock.
    pub now: DateTime<Utc>,
}

impl Wait {
    fn is_live(&self, ts: DateTime<Utc>, fresh_secs: i64) -> bool {
        (self.now - ts).num_seconds() <= fresh_secs
    }

    fn of(&self, ts: DateTime<Utc>, fresh_secs: i64) -> u64 {
        if self.is_live(ts, fresh_secs) {
            self.live_ms
        } else {
            self.backlog_ms
        }
    }

    /// How long a new sensor's arrival holds the first rule: in a live stream the other new
    /// sensors' first readings are at most `grace_ms` behind it.
    fn settle(&self, ts: DateTime<Utc>, fresh_secs: i64) -> u64 {
        if self.is_live(ts, fresh_secs) {
            self.grace_ms.min(self.live_ms)
        } else {
            self.backlog_ms
        }
    }
}

/// The readings of one timestamp, sorted by sensor, each with its caller's tag.
#[derive(Debug)]
pub struct Tick<T> {
    pub ts: DateTime<Utc>,
    pub readings: Vec<(ProcessedReading, T)>,
    /// The caller's clock when its first reading arrived.
    pub arrived_ms: u64,
}

#[derive(Debug)]
struct Open<T> {
    readings: Vec<(ProcessedReading, T)>,
    /// The regions of its readings' sensors: the tick waits for theirs only.
    areas: Vec<usize>,
    /// The caller's clock (ms) when the tick's first reading arrived.
    arrived_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct Latest {
    ts: DateTime<Utc>,
    /// When any reading of the sensor last arrived (an older one too): it is still sending.
    arrived_ms: u64,
    /// When its reading of `ts` arrived: its rhythm runs from there. A late delivery of an
    /// older reading does not move it; before it did, and a live tick waited for the sensor's
    /// next reading one interval past its time (in the latency bench, every tick next to a
    /// late delivery: 200 ms).
    ts_arrived_ms: u64,
    area: usize,
    /// The sensor's last two intervals between readings (event time); the shorter is its
    /// rhythm (one skipped reading does not change it).
    gaps: [Option<chrono::Duration>; 2],
    /// How far its readings usually arrive off its rhythm (processing time against event
    /// time; a moving mean of the absolute difference), ms.
    jitter_ms: Option<f64>,
    /// The ticks it owes a reading to by its rhythm, `[from, until)`: from its next reading's
    /// time to the one after (a tick past it, the sensor missed its reading). Derived from
    /// `ts` and `gaps` by [`Latest::new`] and [`Latest::advance`]: a live tick checks it
    /// for every sensor it may wait for, at every check.
    owed: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The least a live tick waits for a sensor past its rhythm, ms (timer and clock noise).
const JITTER_FLOOR_MS: u64 = 5;

/// How long past its rhythm a reading of a sensor whose usual jitter is `jitter_ms` may still
/// come: four times that jitter (about three standard deviations), plus the floor. A live
/// tick waits that long for it, at most the grace.
fn late_after_ms(jitter_ms: f64) -> u64 {
    ((4.0 * jitter_ms) as u64).saturating_add(JITTER_FLOOR_MS)
}

impl Latest {
    fn new(ts: DateTime<Utc>, arrived_ms: u64, area: usize) -> Self {
        Self {
            ts,
            arrived_ms,
            ts_arrived_ms: arrived_ms,
            area,
            gaps: [None, None],
            jitter_ms: None,
            owed: None,
        }
    }

    /// A newer reading of time `ts` arrived at `arrived_ms`.
    fn advance(&mut self, ts: DateTime<Utc>, arrived_ms: u64) {
        let gap = ts - self.ts;
        let off =
            (arrived_ms as f64 - self.ts_arrived_ms as f64 - gap.num_milliseconds() as f64).abs();
        // One delivery far off the rhythm (a retry, a reading held back) counts as no further
        // off than a live tick would wait for it: it raises the usual jitter by a share of
        // that, not of itself. Unclipped, one second-late reading made its sensor's ticks wait
        // the whole grace for seconds after, twice (the late reading, then the next on time).
        let off = self
            .jitter_ms
            .map_or(off, |j| off.min(late_after_ms(j) as f64));
        self.jitter_ms = Some(self.jitter_ms.map_or(off, |j| j + 0.1 * (off - j)));
        self.gaps = [Some(gap), self.gaps[0]];
        self.ts = ts;
        self.ts_arrived_ms = arrived_ms;
        // The shorter of the last two intervals: one skipped reading does not change it.
        let rhythm = self.gaps.iter().flatten().min().copied();
        self.owed = rhythm.map(|r| (ts + r, ts + r + r));
    }

    /// The earliest tick the sensor may hold back ([`Latest::awaited_live`] is false before
    /// it): its next reading's time by its rhythm, or its own time while it has none.
    fn owed_from(&self) -> DateTime<Utc> {
        self.owed.map_or(self.ts, |(from, _)| from)
    }

    /// Whether, by its rhythm, the sensor owes no reading at `ts` (a live tick does not wait
    /// for it): its next one is later, or it already missed the one before `ts` (stopped or
    /// late; a late reading is judged in a tick of its own).
    fn owes_none(&self, ts: DateTime<Utc>) -> bool {
        self.owed
            .is_some_and(|(from, until)| from > ts || until <= ts)
    }

    /// Whether a live tick `ts` still waits for the sensor at `now_ms`: it owes a reading at
    /// `ts`, and that reading is not late on its rhythm by four times its jitter (at most
    /// `grace_ms`), nor has the sensor been silent for `wait_ms`.
    fn awaited_live(&self, ts: DateTime<Utc>, now_ms: u64, wait_ms: u64, grace_ms: u64) -> bool {
        if self.ts >= ts || self.owes_none(ts) {
            return false;
        }
        let gap_ms = u64::try_from((ts - self.ts).num_milliseconds()).unwrap_or(u64::MAX);
        let late_after = self
            .jitter_ms
            .map_or(grace_ms, |j| late_after_ms(j).min(grace_ms));
        let due_in = gap_ms.saturating_add(late_after).min(wait_ms);
        now_ms.saturating_sub(self.ts_arrived_ms) < due_in
    }
}

/// The sensors by the earliest tick each may hold back ([`Latest::owed_from`]), up to the
/// newest open tick: a live tick looks only at those owed at or before it, not at the whole
/// fleet. In a fleet on its own clocks every reading is a tick, and checking each open tick
/// against every sensor was a quarter of the detector's work.
struct OwedBy<'a>(Vec<(DateTime<Utc>, &'a Latest)>);

impl<'a> OwedBy<'a> {
    fn new(latest: impl Iterator<Item = &'a Latest>, newest: Option<DateTime<Utc>>) -> Self {
        let mut owed: Vec<_> = latest
            .map(|l| (l.owed_from(), l))
            .filter(|(from, _)| newest.is_some_and(|n| *from <= n))
            .collect();
        owed.sort_unstable_by_key(|(from, _)| *from);
        Self(owed)
    }

    /// The sensors that may hold back tick `ts`.
    fn at(&self, ts: DateTime<Utc>) -> impl Iterator<Item = &'a Latest> + '_ {
        let end = self.0.partition_point(|(from, _)| *from <= ts);
        self.0[..end].iter().map(|(_, l)| *l)
    }
}

/// Readings held by timestamp until their tick closes.
#[derive(Debug)]
pub struct Ticks<T> {
    /// Off (the spatial checks are off): every reading is its own tick, at once.
    enabled: bool,
    /// The input is in time order: a newer reading closes every older tick.
    sorted: bool,
    /// When a sensor not seen before arrived last, and its reading's time: the first rule
    /// waits one wait after it.
    new_sensor_ms: Option<(u64, DateTime<Utc>)>,
    /// Whether that wait has not been followed by a [`Ticks::due`] call yet.
    new_pending: bool,
    /// The caller's clock at the last [`Ticks::due`] call.
    now_ms: u64,
    fresh_secs: i64,
    region_km: f64,
    areas: Areas,
    open: BTreeMap<DateTime<Utc>, Open<T>>,
    /// The newest timestamp each sensor reported, when its last reading arrived, its region.
    latest: HashMap<String, Latest>,
    /// The newest arrival time pushed.
    last_arrival_ms: u64,
    /// The wait of the last [`Ticks::due`] call: sensors that arrived within it are expected.
    wait: Option<Wait>,
    newest: Option<DateTime<Utc>>,
}

impl<T> Ticks<T> {
    /// Ticks of a stream.
    pub fn new(cfg: &SpatialConfig) -> Self {
        Self {
            enabled: cfg.enabled,
            sorted: false,
            new_sensor_ms: None,
            new_pending: false,
            now_ms: 0,
            fresh_secs: cfg.fresh_secs,
            region_km: cfg.region_km,
            areas: Areas::default(),
            open: BTreeMap::new(),
            latest: HashMap::new(),
            last_arrival_ms: 0,
            wait: None,
            newest: None,
        }
    }

    /// Ticks of an input in time order.
    pub fn sorted(cfg: &SpatialConfig) -> Self {
        Self {
            sorted: true,
            ..Self::new(cfg)
        }
    }

    /// Holds a reading in its tick; `arrived_ms` is the caller's clock (any origin).
    pub fn push(&mut self, r: ProcessedReading, tag: T, arrived_ms: u64) {
        let ts = r.timestamp;
        if !self.latest.contains_key(&r.sensor_id) {
            self.new_sensor_ms = Some((arrived_ms, ts));
            self.new_pending = true;
        }
        let (area, _) = self.areas.of(&r.sensor_id, r.location, self.region_km);
        let latest = self
            .latest
            .entry(r.sensor_id.clone())
            .or_insert_with(|| Latest::new(ts, arrived_ms, area));
        if ts > latest.ts {
            latest.advance(ts, arrived_ms);
        }
        latest.arrived_ms = arrived_ms;
        self.last_arrival_ms = self.last_arrival_ms.max(arrived_ms);
        self.newest = Some(self.newest.map_or(ts, |n| n.max(ts)));
        let open = self.open.entry(ts).or_insert_with(|| Open {
            readings: Vec::new(),
            areas: Vec::new(),
            arrived_ms,
        });
        if !open.areas.contains(&area) {
            open.areas.push(area);
        }
        open.readings.push((r, tag));
    }

    /// The ticks that closed, oldest first.
    pub fn ready(&mut self) -> Vec<Tick<T>> {
        let mut out = Vec::new();
        if self.enabled && !self.sorted && self.settling() {
            return out;
        }
        while let Some(&ts) = self.open.keys().next() {
            if self.enabled && !self.complete(ts) {
                break;
            }
            out.extend(self.close_first());
        }
        out
    }

    /// The ticks that closed, with every tick that waited its `wait` or more (by the
    /// caller's clock `now_ms`) closed too, and all before it.
    pub fn due(&mut self, now_ms: u64, wait: Wait) -> Vec<Tick<T>> {
        self.wait = Some(wait);
        self.now_ms = now_ms;
        if !self.settling() {
            self.new_pending = false;
        }
        let owed = self.owed();
        let waited: Vec<DateTime<Utc>> = self
            .open
            .iter()
            .filter(|(ts, o)| self.timed_out(**ts, o, now_ms, wait, &owed))
            .map(|(ts, _)| *ts)
            .collect();
        let mut out = Vec::new();
        for ts in waited {
            if !self.open.contains_key(&ts) {
                continue;
            }
            // The older ticks this one depends on: those holding one of its sensors, and
            // theirs in turn (newest first, so a dependency's own sensors are known).
            let mut sensors: std::collections::HashSet<String> = self.open[&ts]
                .readings
                .iter()
                .map(|(r, _)| r.sensor_id.clone())
                .collect();
            let mut close = vec![ts];
            for (older, o) in self.open.range(..ts).rev() {
                if o.readings
                    .iter()
                    .any(|(r, _)| sensors.contains(&r.sensor_id))
                {
                    sensors.extend(o.readings.iter().map(|(r, _)| r.sensor_id.clone()));
                    close.push(*older);
                }
            }
            close.sort();
            for t in close {
                out.extend(self.close(t));
            }
        }
        out.extend(self.ready());
        out
    }

    /// Whether a tick is open that waited its `wait` or more.
    /// Or one a new sensor's wait held back.
    pub fn is_due(&self, now_ms: u64, wait: Wait) -> bool {
        let settled = self.new_sensor_ms.is_some() && !self.gathering(now_ms, wait);
        if !self.open.is_empty() && self.new_pending && settled {
            return true;
        }
        let owed = self.owed();
        self.open
            .iter()
            .any(|(ts, o)| self.timed_out(*ts, o, now_ms, wait, &owed))
    }

    fn owed(&self) -> OwedBy<'_> {
        OwedBy::new(self.latest.values(), self.open.keys().next_back().copied())
    }

    /// Whether the wall clock closes tick `ts`.
    ///
    /// A backlog tick: it waited its wait, and every sensor of its regions it still waits
    /// for (not at `ts` yet) has been silent that long. A sensor that is behind but still
    /// arriving is waited for, however far behind in event time: in a fast replay the
    /// cleaner's partitions drift apart by days (the sensors of a busy partition lag those of
    /// a quiet one), and a tick cut without them would judge their readings later, alone.
    /// One that stopped is not waited for, nor one of another region (a replay does not hold
    /// a live fleet's ticks).
    ///
    /// A live tick: no sensor of its regions is still awaited ([`Latest::awaited_live`]):
    /// each reported `ts`, owes no reading at `ts`, is late on its rhythm by four times its
    /// jitter, or was silent for the live wait. While new sensors gather, it also waited
    /// `grace_ms` for theirs to arrive.
    fn timed_out(
        &self,
        ts: DateTime<Utc>,
        o: &Open<T>,
        now_ms: u64,
        wait: Wait,
        owed: &OwedBy,
    ) -> bool {
        let wait_ms = wait.of(ts, self.fresh_secs);
        let waited = now_ms.saturating_sub(o.arrived_ms);
        if wait.is_live(ts, self.fresh_secs) {
            let least = if self.gathering(now_ms, wait) {
                wait.grace_ms.min(wait_ms)
            } else {
                0
            };
            return waited >= least
                && !owed.at(ts).any(|l| {
                    o.areas.contains(&l.area) && l.awaited_live(ts, now_ms, wait_ms, wait.grace_ms)
                });
        }
        if waited < wait_ms {
            return false;
        }
        !self.latest.values().any(|l| {
            o.areas.contains(&l.area) && l.ts < ts && now_ms.saturating_sub(l.arrived_ms) < wait_ms
        })
    }

    /// Closes every tick (end of a finite stream).
    pub fn drain(&mut self) -> Vec<Tick<T>> {
        let mut out = Vec::new();
        while !self.open.is_empty() {
            out.extend(self.close_first());
        }
        out
    }

    /// The tags of the readings still held.
    pub fn held(&self) -> impl Iterator<Item = &T> {
        self.open
            .values()
            .flat_map(|o| o.readings.iter().map(|(_, t)| t))
    }

    /// Readings held.
    pub fn len(&self) -> usize {
        self.open.values().map(|o| o.readings.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// No tick waits for this sensor any more (it went quiet, or moved to another instance).
    pub fn forget(&mut self, sensor: &str) {
        self.latest.remove(sensor);
    }

    /// Within one wait of a new sensor's arrival (or before the first [`Ticks::due`] call).
    fn settling(&self) -> bool {
        self.wait.is_none_or(|w| self.gathering(self.now_ms, w))
    }

    /// Whether, at `now_ms`, a new sensor arrived less than its settling wait ago.
    fn gathering(&self, now_ms: u64, wait: Wait) -> bool {
        self.new_sensor_ms
            .is_some_and(|(n, ts)| now_ms.saturating_sub(n) < wait.settle(ts, self.fresh_secs))
    }

    /// Whether every sensor of tick `ts`'s regions that is expected at `ts` reported it.
    fn complete(&self, ts: DateTime<Utc>) -> bool {
        if self.sorted {
            // Every reading of `ts` was read once a newer one is.
            return self.newest.is_some_and(|n| n > ts);
        }
        let Some(o) = self.open.get(&ts) else {
            return true;
        };
        let expected_from = ts - chrono::Duration::seconds(self.fresh_secs);
        let arriving_from = self.wait.map_or(u64::MAX, |w| {
            self.last_arrival_ms
                .saturating_sub(w.of(ts, self.fresh_secs))
        });
        let live = self.wait.is_some_and(|w| w.is_live(ts, self.fresh_secs));
        self.latest.values().all(|l| {
            !o.areas.contains(&l.area)
                || l.ts >= ts
                || (l.ts < expected_from && l.arrived_ms < arriving_from)
                || (live && l.owes_none(ts))
        })
    }

    fn close_first(&mut self) -> Option<Tick<T>> {
        let ts = *self.open.keys().next()?;
        self.close(ts)
    }

    fn close(&mut self, ts: DateTime<Utc>) -> Option<Tick<T>> {
        let open = self.open.remove(&ts)?;
        let mut readings = open.readings;
        readings.sort_by(|a, b| a.0.sensor_id.cmp(&b.0.sensor_id));
        Some(Tick {
            ts,
            readings,
            arrived_ms: open.arrived_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use airq_domain::sensor::Cleaner;
    use airq_domain::{Location, Measurements, Reading};

    use super::*;

    #[test]
    fn a_live_tick_is_held_back_only_by_sensors_owed_at_or_before_it() {
        let t0: DateTime<Utc> = "2024-01-15T00:00:00Z".parse().unwrap();
        let ms = chrono::Duration::milliseconds;
        let mut x = 17_u64;
        let mut rnd = move |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        // Sensors with a rhythm of 50 ms to 2 s or none yet (one reading), their last reading
        // in the first 10 s, each arriving 0-2 s later than the others on the caller's clock.
        let latest: Vec<Latest> = (0..400)
            .map(|_| {
                let readings = 1 + rnd(3) as i64;
                let gap = 50 + rnd(1950) as i64;
                let first = rnd(10_000) as i64 - (readings - 1) * gap;
                let arrived = |t: i64, late: u64| (t + 10_000) as u64 + late;
                let mut l = Latest::new(t0 + ms(first), arrived(first, rnd(2_000)), 0);
                for k in 1..readings {
                    let t = first + k * gap + rnd(100) as i64;
                    let at = arrived(t, rnd(2_000));
                    l.advance(t0 + ms(t), at);
                    l.arrived_ms = at;
                }
                l
            })
            .collect();
        let newest = t0 + ms(14_000);
        let owed = OwedBy::new(latest.iter(), Some(newest));
        let mut held_back = 0;
        for k in 0..=140 {
            let ts = t0 + ms(k * 100);
            let now_ms = (k * 100) as u64 + 10_000 + rnd(2_500);
            let looked: Vec<*const Latest> = owed.at(ts).map(|l| l as *const Latest).collect();
            for l in &latest {
                if l.awaited_live(ts, now_ms, 10_000, 250) {
                    held_back += 1;
                    assert!(looked.contains(&(l as *const Latest)), "{l:?} at {ts}");
                }
            }
        }
        assert!(
            held_back > 1_000,
            "the sample holds ticks back: {held_back}"
        );
    }

    fn at(sensor: &str, hour: i64) -> ProcessedReading {
        let t0: DateTime<Utc> = "2024-01-15T00:00:00Z".parse().unwrap();
        Cleaner::default().process(Reading {
            sensor_id: sensor.into(),
            timestamp: t0 + chrono::Duration::hours(hour),
            location: Location { lat: 0.0, lon: 0.0 },
            measurements: Measurements {
                pm2_5: Some(10.0),
                pm10: Some(20.0),
                no2: None,
            },
        })
    }

    fn closed(t: Vec<Tick<()>>) -> Vec<Vec<String>> {
        t.into_iter()
            .map(|t| t.readings.into_iter().map(|(r, _)| r.sensor_id).collect())
            .collect()
    }

    fn hourly() -> SpatialConfig {
        SpatialConfig {
            fresh_secs: 2 * 3600,
            ..SpatialConfig::default()
        }
    }

    /// A stream's ticks that gathered their first readings already.
    fn started() -> Ticks<()> {
        let mut t = Ticks::new(&hourly());
        assert!(t.due(WAIT, wait()).is_empty());
        t
    }

    const WAIT: u64 = 10_000;

    /// The same wait for every tick; the ticks are a backlog's (a replay's), so no rhythm
    /// shortens it.
    fn wait() -> Wait {
        Wait {
            live_ms: WAIT,
            backlog_ms: WAIT,
            grace_ms: WAIT,
            now: DateTime::<Utc>::MAX_UTC,
        }
    }

    /// Every tick of `order` through a stream's ticks, the first 3 readings in their
    /// gathering wait and the rest within one wait, then what is open at the end.
    fn through(order: &[&ProcessedReading]) -> Vec<Vec<String>> {
        let mut t = Ticks::new(&hourly());
        let mut out = Vec::new();
        for (i, r) in order.iter().enumerate() {
            let ms = if i < 3 { 0 } else { WAIT };
            t.push((*r).clone(), (), ms);
            out.extend(closed(t.due(ms, wait())));
        }
        out.extend(closed(t.drain()));
        out
    }

    /// The ticks of a time-ordered file (`backtest`).
    fn in_file(order: &[&ProcessedReading]) -> Vec<Vec<String>> {
        let mut t = Ticks::sorted(&hourly());
        let mut out = Vec::new();
        for r in order {
            t.push((*r).clone(), (), 0);
            out.extend(closed(t.ready()));
        }
        out.extend(closed(t.drain()));
        out
    }

    #[test]
    fn a_tick_closes_once_every_expected_sensor_reported_it_and_comes_out_by_sensor() {
        let mut t = started();
        t.push(at("b", 0), (), 0);
        t.push(at("a", 0), (), 0);
        assert_eq!(closed(t.ready()), [["a", "b"]], "both in, sorted");
        t.push(at("b", 1), (), 0);
        assert!(t.ready().is_empty(), "a has not reported hour 1");
        t.push(at("a", 2), (), 0);
        assert_eq!(closed(t.ready()), [["b"]], "a skipped hour 1");
        assert!(t.ready().is_empty(), "hour 2 waits for b");
        assert_eq!(t.len(), 1);
        assert_eq!(closed(t.drain()), [["a"]], "hour 2 at the end");
    }

    #[test]
    fn a_stream_in_any_interleaving_gives_the_ticks_of_the_time_ordered_file() {
        let readings: Vec<ProcessedReading> = (0..8)
            .flat_map(|h| ["a", "b", "c"].map(|s| at(s, h)))
            .filter(|r| !(r.sensor_id == "b" && r.timestamp.hour() == 3))
            .collect();
        let in_order = in_file(&readings.iter().collect::<Vec<_>>());
        assert_eq!(through(&readings.iter().collect::<Vec<_>>()), in_order);
        assert_eq!(in_order.len(), 8);
        assert_eq!(in_order[3], ["a", "c"], "b skipped hour 3");
        // After the first hour, sensor c far behind the others, as across two partitions
        // of a fast replay.
        let (c, mut skewed): (Vec<&ProcessedReading>, Vec<&ProcessedReading>) =
            readings.iter().partition(|r| r.sensor_id == "c");
        skewed.insert(2, c[0]);
        skewed.extend(&c[1..]);
        assert_ne!(skewed, readings.iter().collect::<Vec<_>>());
        assert_eq!(through(&skewed), in_order);
    }

    #[test]
    fn a_stream_gathers_its_first_readings_for_one_wait() {
        let mut t = Ticks::new(&hourly());
        t.push(at("a", 0), (), 100);
        assert!(t.ready().is_empty(), "b may be on its way");
        assert!(!t.is_due(WAIT, wait()));
        t.push(at("b", 0), (), 9_000);
        assert!(t.due(WAIT, wait()).is_empty());
        assert!(t.is_due(WAIT + 100, wait()));
        assert_eq!(closed(t.due(WAIT + 100, wait())), [["a", "b"]]);
    }

    #[test]
    fn a_time_ordered_input_closes_a_tick_at_the_next_timestamp() {
        let mut t = Ticks::sorted(&hourly());
        t.push(at("a", 0), (), 0);
        t.push(at("b", 0), (), 0);
        assert!(t.ready().is_empty(), "c may be next in the file");
        t.push(at("a", 1), (), 0);
        assert_eq!(closed(t.ready()), [["a", "b"]]);
        t.push(at("a", 2), (), 0);
        assert_eq!(
            closed(t.ready()),
            [["a"]],
            "b skipped hour 1: the file moved on"
        );
    }

    #[test]
    fn the_wall_clock_closes_a_tick_that_waited_long_enough_and_those_before_it() {
        let mut t = started();
        t.push(at("a", 0), (), 0);
        t.push(at("b", 0), (), 0);
        t.push(at("a", 1), (), 1_000);
        t.push(at("a", 2), (), 6_000);
        assert_eq!(closed(t.ready()), [["a", "b"]]);
        assert!(!t.is_due(5_000, wait()), "hours 1 and 2 wait for b");
        assert!(t.due(5_000, wait()).is_empty());
        assert!(t.is_due(11_000, wait()));
        assert_eq!(closed(t.due(11_000, wait())), [["a"]], "hour 1 only");
        assert_eq!(closed(t.due(16_000, wait())), [["a"]]);
        assert!(t.is_empty());
    }

    #[test]
    fn off_every_reading_goes_at_once_and_a_forgotten_sensor_is_not_waited_for() {
        let off = SpatialConfig {
            enabled: false,
            ..hourly()
        };
        let mut t = Ticks::new(&off);
        t.push(at("a", 0), (), 0);
        assert_eq!(closed(t.ready()), [["a"]]);

        let mut t = started();
        t.push(at("a", 0), (), 0);
        t.push(at("b", 0), (), 0);
        t.push(at("a", 1), (), 0);
        assert_eq!(closed(t.ready()).len(), 1, "hour 0");
        assert!(t.ready().is_empty(), "hour 1 waits for b");
        t.forget("b");
        assert_eq!(closed(t.ready()), [["a"]]);
    }

    #[test]
    fn a_waited_tick_closes_with_the_older_ticks_of_its_sensors_only() {
        let mut t = started();
        let live = |h| {
            let mut r = at("live", h);
            r.location.lat = 48.0;
            r
        };
        t.push(live(10_000), (), 0);
        t.push(at("a", 0), (), 0);
        t.push(at("b", 0), (), 0);
        assert_eq!(
            closed(t.due(WAIT, wait())),
            vec![vec!["a", "b"], vec!["live"]]
        );
        // A replay ("a" runs ahead of "b") next to a live sensor, far ahead in event time.
        t.push(live(10_001), (), WAIT);
        for h in 1..100 {
            t.push(at("a", h), (), WAIT + 5000);
        }
        assert!(t.due(WAIT + 5000, wait()).is_empty(), "hour 1 waits for b");
        // The live tick waited: it closes alone, the replay's ticks hold none of its sensors.
        assert_eq!(closed(t.due(2 * WAIT, wait())), [["live"]]);
        assert_eq!(t.len(), 99, "hours 1..99 still wait for b");
        t.push(at("b", 1), (), 2 * WAIT);
        assert_eq!(
            closed(t.due(2 * WAIT, wait())),
            [["a", "b"]],
            "hour 1, complete"
        );
        assert_eq!(t.len(), 98);
    }

    #[test]
    fn a_waited_tick_waits_for_a_sensor_of_its_region_days_behind_but_arriving() {
        let mut t = started();
        t.push(at("a", 0), (), 0);
        t.push(at("b", 0), (), 0);
        assert_eq!(closed(t.due(WAIT, wait())), [["a", "b"]]);
        // A fast replay: "a"'s partition runs 4 days ahead of "b"'s, both still arriving.
        for h in 1..=100 {
            t.push(at("a", h), (), WAIT);
        }
        for round in 1..=3 {
            let now = WAIT + round * WAIT;
            t.push(at("b", round as i64), (), now);
            let ticks = t.due(now, wait());
            assert_eq!(closed(ticks), [["a", "b"]], "hour {round}, with b");
        }
        // "b" stopped: after one wait, "a"'s ticks close without it.
        assert_eq!(t.due(5 * WAIT, wait()).len(), 97);
    }

    #[test]
    fn a_backlog_tick_waits_longer_than_a_live_one() {
        let t0: DateTime<Utc> = "2024-01-15T00:00:00Z".parse().unwrap();
        let wait_at = |now| Wait {
            live_ms: WAIT,
            backlog_ms: 6 * WAIT,
            grace_ms: WAIT,
            now,
        };
        // "b" stops after hour 0: a live tick gives it up once it was silent for the live
        // wait (here at once: it was, when hour 1 arrived); a backlog's tick also waits
        // the backlog wait itself.
        let live = (t0, WAIT, WAIT);
        let backlog = (t0 + chrono::Duration::days(30), 6 * WAIT, 12 * WAIT);
        for (now, waits, closes) in [live, backlog] {
            let mut t = started();
            t.push(at("a", 0), (), 0);
            t.push(at("b", 0), (), 0);
            // New sensors: the first rule waits one wait, the tick's own.
            assert!(t.due(waits - 1, wait_at(now)).is_empty(), "{now}");
            assert_eq!(closed(t.due(waits, wait_at(now))), [["a", "b"]]);
            t.push(at("a", 1), (), waits);
            assert!(!t.is_due(closes - 1, wait_at(now)), "{now}");
            assert!(t.is_due(closes, wait_at(now)), "{now}");
            assert_eq!(closed(t.due(closes, wait_at(now))), [["a"]]);
        }
    }

    #[test]
    fn a_new_sensor_holds_the_first_rule_for_one_wait() {
        let mut t = started();
        t.push(at("a", 0), (), 0);
        assert_eq!(closed(t.due(WAIT, wait())), [["a"]]);
        t.push(at("b", 1), (), WAIT);
        t.push(at("a", 1), (), WAIT + 5000);
        t.push(at("a", 2), (), WAIT + 5000);
        t.push(at("b", 2), (), WAIT + 5000);
        assert!(
            t.due(WAIT + 5000, wait()).is_empty(),
            "complete, but another new sensor may be on its way"
        );
        assert!(!t.is_due(2 * WAIT - 1, wait()));
        assert!(t.is_due(2 * WAIT, wait()));
        assert_eq!(
            closed(t.due(2 * WAIT, wait())),
            [["a", "b"], ["a", "b"]],
            "one wait after b arrived"
        );
    }

    #[test]
    fn a_sensor_behind_but_arriving_is_waited_for_past_the_wait() {
        let mut t = started();
        t.push(at("a", 0), (), 0);
        t.push(at("b", 0), (), 0);
        assert_eq!(closed(t.due(WAIT, wait())), [["a", "b"]]);
        t.push(at("a", 1), (), WAIT);
        t.push(at("a", 2), (), WAIT);
        t.push(at("b", 1), (), 2 * WAIT - 1);
        assert_eq!(closed(t.due(2 * WAIT, wait())), [["a", "b"]], "hour 1");
        assert!(
            !t.is_due(2 * WAIT, wait()),
            "hour 2 waited, but b is still arriving"
        );
        assert_eq!(t.len(), 1);
        assert!(
            t.is_due(3 * WAIT, wait()),
            "b silent for a wait: it stopped"
        );
        assert_eq!(closed(t.due(3 * WAIT, wait())), [["a"]]);
    }

    /// A reading of a fleet that reports by the second.
    fn at_second(sensor: &str, second: i64) -> ProcessedReading {
        let mut r = at(sensor, 0);
        r.timestamp += chrono::Duration::seconds(second);
        r
    }

    const GRACE: u64 = 50;

    /// Live ticks (the wall clock at the fleet's time) with a grace on the rhythm.
    fn live() -> Wait {
        Wait {
            live_ms: WAIT,
            backlog_ms: 6 * WAIT,
            grace_ms: GRACE,
            now: at("x", 0).timestamp,
        }
    }

    #[test]
    fn a_live_tick_stops_waiting_for_a_sensor_once_it_is_late_on_its_rhythm() {
        let mut t = Ticks::new(&hourly());
        let push = |t: &mut Ticks<()>, second: i64, arrivals: &[(&str, u64)]| {
            for (s, ms) in arrivals {
                t.push(at_second(s, second), (), *ms);
            }
        };
        push(&mut t, 0, &[("a", 0), ("b", 0), ("c", 0)]);
        assert!(
            t.due(GRACE - 1, live()).is_empty(),
            "new: their neighbours may come"
        );
        assert_eq!(
            closed(t.due(GRACE, live())),
            [["a", "b", "c"]],
            "after the grace"
        );
        // b's readings arrive 40 ms off its rhythm, a's and c's on it.
        push(&mut t, 1, &[("a", 1000), ("b", 1040), ("c", 1000)]);
        assert_eq!(closed(t.due(1040, live())), [["a", "b", "c"]]);
        // c stopped: with no jitter, it is given up 5 ms after its reading was due; b,
        // whose readings jitter, is waited for four times its jitter, at most the grace.
        push(&mut t, 2, &[("a", 2000)]);
        assert!(!t.is_due(2089, live()), "b may come");
        push(&mut t, 2, &[("b", 2080)]);
        assert_eq!(closed(t.due(2080, live())), [["a", "b"]], "without c");
        // b stopped: given up the same way, 50 ms after its reading was due.
        push(&mut t, 3, &[("a", 3000)]);
        assert!(!t.is_due(3000 + 80 + GRACE - 1, live()));
        assert_eq!(closed(t.due(3000 + 80 + GRACE, live())), [["a"]]);
        // Having missed second 3, b is not waited for at all, nor c.
        push(&mut t, 4, &[("a", 4000)]);
        assert_eq!(closed(t.due(4000, live())), [["a"]], "at once");
        // The same on a backlog's tick (a replay) waits the backlog wait.
        let backlog = Wait {
            now: at("x", 24 * 30).timestamp,
            ..live()
        };
        push(&mut t, 5, &[("a", 5000)]);
        assert!(!t.is_due(5000 + WAIT, backlog));
        assert_eq!(closed(t.due(5000 + 6 * WAIT, backlog)), [["a"]]);
    }

    /// `sensor`'s reading of `second`, arriving at `ms`.
    fn push_at(t: &mut Ticks<()>, sensor: &str, second: i64, ms: u64) {
        t.push(at_second(sensor, second), (), ms);
    }

    /// Sensors a and b reporting each second from second 0 to `last`, each tick closed: a on
    /// its rhythm, b 2 ms off it at every reading (its usual jitter is 2 ms).
    fn a_and_b_on_their_rhythm(last: i64) -> Ticks<()> {
        let mut t = Ticks::new(&hourly());
        for k in 0..=last {
            let ms = k as u64 * 1000;
            push_at(&mut t, "a", k, ms);
            push_at(&mut t, "b", k, ms + 2 * (ms / 1000 % 2));
            assert_eq!(t.due(ms + GRACE, live()).len(), 1, "second {k}");
        }
        t
    }

    /// b, which missed the reading due at `due_ms` (its rhythm), is given up about four times
    /// its usual jitter after it, not after the whole grace.
    fn b_given_up_on_its_rhythm(t: &Ticks<()>, due_ms: u64) {
        assert!(!t.is_due(due_ms + 5, live()), "b may still come");
        assert!(
            t.is_due(due_ms + GRACE / 2, live()),
            "b given up on its rhythm, not after the grace"
        );
    }

    #[test]
    fn one_late_delivery_does_not_make_its_sensor_hold_the_next_ticks_for_the_grace() {
        let mut t = a_and_b_on_their_rhythm(5);
        // b's reading of second 6 comes a second late, with its reading of second 7.
        push_at(&mut t, "a", 6, 6000);
        assert_eq!(closed(t.due(6000 + GRACE, live())), [["a"]]);
        push_at(&mut t, "b", 6, 7000);
        push_at(&mut t, "a", 7, 7000);
        push_at(&mut t, "b", 7, 7000);
        push_at(&mut t, "a", 8, 8000);
        push_at(&mut t, "b", 8, 8000);
        assert_eq!(t.due(8000, live()).len(), 3, "seconds 6 (b's own), 7 and 8");
        // b misses second 9: given up about four times its usual jitter after its reading was
        // due, as before the late one, not after the whole grace.
        push_at(&mut t, "a", 9, 9000);
        b_given_up_on_its_rhythm(&t, 9000);
    }

    #[test]
    fn a_late_delivery_of_an_older_reading_does_not_move_its_sensors_rhythm() {
        let mut t = a_and_b_on_their_rhythm(3);
        // b's reading of second 4 is held back on its way; its reading of second 1 comes now.
        push_at(&mut t, "a", 4, 4000);
        push_at(&mut t, "b", 1, 4000);
        assert_eq!(
            closed(t.due(4000, live())),
            [["b"]],
            "the late one, alone, at once"
        );
        // Its reading of second 4 was due at 4000, not an interval after the late one.
        b_given_up_on_its_rhythm(&t, 4000);
    }

    #[test]
    fn a_live_tick_does_not_wait_for_a_sensor_with_no_reading_due_at_its_time() {
        let mut t = Ticks::new(&hourly());
        let mut out = Vec::new();
        // "a" reports every second, "c" every two; each second's tick is asked at once.
        for k in 0..=12 {
            let ms = k as u64 * 1000;
            t.push(at_second("a", k), (), ms);
            if k % 2 == 0 {
                t.push(at_second("c", k), (), ms);
            }
            let now = closed(t.due(ms, live()));
            if k == 11 {
                assert_eq!(now, [["a"]], "second 11: c had none due, closed at once");
            }
            out.extend(now);
        }
        out.extend(closed(t.due(12_000 + GRACE, live())));
        assert_eq!(out.len(), 13, "every second closed: {out:?}");
        assert_eq!(out[0], ["a", "c"], "second 0, after the new sensors' grace");
        // Before c's rhythm is known, second 1 waits for it: closed with second 2.
        assert_eq!(out[1], ["a"]);
        assert_eq!(out[12], ["a", "c"]);
        assert!(t.is_empty());
    }
}
