//! Per-sensor streaming state and the cleaning step that uses it.
//!
//! [`Cleaner::process`] is the whole per-reading logic of the stream cleaner: quality
//! flags, cleaned values, rolling 1-hour means, NowCast, US AQI and EAQI. Late
//! (out-of-order) readings are flagged and cleaned but do not move the state, so the
//! metrics they carry are those of the sensor's latest time.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::aqi::{eaqi_band, us_aqi};
use crate::nowcast::nowcast_pm;
use crate::processed::{Metrics, NowCast, PROCESSED_SCHEMA_VERSION, ProcessedReading};
use crate::qc::{
    Flag, FlagEntry, Flags, QcConfig, decimal_step, is_flatline, is_spike, pm25_above_pm10,
    value_check,
};
use crate::reading::{Measurements, Pollutant, Reading};

const HOUR: i64 = 3600;
/// Hours of history the NowCast looks at.
const NOWCAST_HOURS: i64 = 12;
/// Most timestamps remembered per sensor for duplicate detection.
const DEDUP_CAPACITY: usize = 4096;
/// A pollutant is missing from a reading when the sensor reported it in at least this share
/// of its recent readings (EWMA with [`PRESENCE_ALPHA`]).
const MISSING_PRESENCE: f64 = 0.5;
const PRESENCE_ALPHA: f64 = 0.1;

#[derive(Debug, Clone, Copy, Default)]
struct HourBucket {
    hour: i64,
    sum: [f64; 3],
    count: [u32; 3],
}

/// Rolling state of one sensor.
#[derive(Debug, Default)]
pub struct SensorState {
    latest_ts: Option<i64>,
    last_valid: [Option<(i64, f64)>; 3],
    repeats: [Option<(f64, u32)>; 3],
    /// How often each pollutant is reported (EWMA of present = 1, absent = 0); `None`
    /// before the first reading.
    presence: Option<[f64; 3]>,
    window: [VecDeque<(i64, f64)>; 3],
    window_sum: [f64; 3],
    hours: VecDeque<HourBucket>,
    seen: HashSet<i64>,
    seen_order: VecDeque<i64>,
}

impl SensorState {
    fn remember(&mut self, ts: i64, cfg: &QcConfig) {
        if self.seen.insert(ts) {
            self.seen_order.push_back(ts);
        }
        let horizon = self.latest_ts.unwrap_or(ts) - cfg.dedup_window_secs;
        while let Some(&front) = self.seen_order.front() {
            if front >= horizon && self.seen_order.len() <= DEDUP_CAPACITY {
                break;
            }
            self.seen_order.pop_front();
            self.seen.remove(&front);
        }
    }

    /// Flatline and spike checks, then the value enters the rolling windows.
    fn advance(
        &mut self,
        p: Pollutant,
        ts: i64,
        v: f64,
        cfg: &QcConfig,
        flags: &mut Vec<FlagEntry>,
    ) {
        let i = p.index();
        if let Some((prev_ts, prev)) = self.last_valid[i]
            && is_spike(p, prev, v, ts - prev_ts, cfg)
        {
            flags.push(FlagEntry {
                flag: Flag::Spike,
                pollutant: Some(p),
            });
        }
        let repeats = match self.repeats[i] {
            Some((prev, n)) if prev == v => n + 1,
            _ => 1,
        };
        self.repeats[i] = Some((v, repeats));
        // The value's own resolution: a sensor that reports integers but once wrote 5.5
        // still repeats its integers.
        if is_flatline(v, repeats, decimal_step(v), cfg) {
            flags.push(FlagEntry {
                flag: Flag::Flatline,
                pollutant: Some(p),
            });
        }
        self.last_valid[i] = Some((ts, v));
        self.window[i].push_back((ts, v));
        self.window_sum[i] += v;

        let hour = ts.div_euclid(HOUR);
        if self.hours.back().is_none_or(|b| b.hour < hour) {
            self.hours.push_back(HourBucket {
                hour,
                ..HourBucket::default()
            });
        }
        if let Some(bucket) = self.hours.iter_mut().rev().find(|b| b.hour == hour) {
            bucket.sum[i] += v;
            bucket.count[i] += 1;
        }
    }

    fn prune(&mut self, now: i64) {
        for i in 0..3 {
            while let Some(&(t, v)) = self.window[i].front() {
                if t > now - HOUR {
                    break;
                }
                self.window[i].pop_front();
                self.window_sum[i] -= v;
            }
            if self.window[i].is_empty() {
                self.window_sum[i] = 0.0; // no float residue once the window empties
            }
        }
        let oldest_hour = now.div_euclid(HOUR) - (NOWCAST_HOURS - 1);
        while self.hours.front().is_some_and(|b| b.hour < oldest_hour) {
            self.hours.pop_front();
        }
    }

    fn metrics(&self) -> Metrics {
        let mut mean_1h = Measurements::default();
        for p in Pollutant::ALL {
            let n = self.window[p.index()].len();
            if n > 0 {
                mean_1h.set(p, Some(self.window_sum[p.index()] / n as f64));
            }
        }
        let nowcast = NowCast {
            pm2_5: self.nowcast(Pollutant::Pm25),
            pm10: self.nowcast(Pollutant::Pm10),
        };
        let aqi_inputs = Measurements {
            pm2_5: nowcast.pm2_5,
            pm10: nowcast.pm10,
            no2: mean_1h.no2,
        };
        Metrics {
            mean_1h,
            nowcast,
            us_aqi: us_aqi(&aqi_inputs),
            eaqi: eaqi_band(&mean_1h),
        }
    }

    fn nowcast(&self, p: Pollutant) -> Option<f64> {
        let current = self.latest_ts?.div_euclid(HOUR);
        let i = p.index();
        // Hours ago -> that hour's mean, in one pass over the (at most 12) buckets; the first
        // bucket of an hour wins, as a search per hour would find it.
        let mut hourly = [None; NOWCAST_HOURS as usize];
        for b in &self.hours {
            let ago = current - b.hour;
            if (0..NOWCAST_HOURS).contains(&ago) && b.count[i] > 0 {
                hourly[ago as usize].get_or_insert(b.sum[i] / f64::from(b.count[i]));
            }
        }
        nowcast_pm(&hourly)
    }
}

/// The cleaning step over all sensors: one [`SensorState`] per sensor id.
#[derive(Debug, Default)]
pub struct Cleaner {
    cfg: QcConfig,
    sensors: HashMap<String, SensorState>,
}

impl Cleaner {
    pub fn new(cfg: QcConfig) -> Self {
        Self {
            cfg,
            sensors: HashMap::new(),
        }
    }

    /// Number of sensors with state.
    pub fn sensors(&self) -> usize {
        self.sensors.len()
    }

    /// Drops a sensor's state (it went quiet): if it comes back it starts afresh, and
    /// PostgreSQL's insert-if-absent still keeps its duplicates out.
    pub fn forget(&mut self, sensor: &str) {
        self.sensors.remove(sensor);
    }

    /// Cleans, flags and enriches one reading, updating its sensor's state.
    pub fn process(&mut self, reading: Reading) -> ProcessedReading {
        let cfg = &self.cfg;
        let state = self.sensors.entry(reading.sensor_id.clone()).or_default();
        let ts = reading.timestamp.timestamp();
        let mut details = Vec::new();

        let mut clean = reading.measurements;
        // Missing means absent from a sensor that usually reports it: many sensors measure
        // only some pollutants.
        let present = Pollutant::ALL.map(|p| reading.measurements.get(p).is_some());
        let usual = *state
            .presence
            .get_or_insert(present.map(|x| if x { 1.0 } else { 0.0 }));
        for p in Pollutant::ALL {
            match reading.measurements.get(p) {
                None if usual[p.index()] >= MISSING_PRESENCE => details.push(FlagEntry {
                    flag: Flag::Missing,
                    pollutant: Some(p),
                }),
                None => {}
                Some(v) => {
                    if let Some(flag) = value_check(p, v, cfg) {
                        details.push(FlagEntry {
                            flag,
                            pollutant: Some(p),
                        });
                        clean.set(p, None);
                    }
                }
            }
        }
        if let (Some(pm25), Some(pm10)) = (clean.pm2_5, clean.pm10)
            && pm25_above_pm10(pm25, pm10)
        {
            details.push(FlagEntry {
                flag: Flag::Pm25AbovePm10,
                pollutant: None,
            });
        }

        if state.seen.contains(&ts) {
            details.push(FlagEntry {
                flag: Flag::Duplicate,
                pollutant: None,
            });
        } else if state.latest_ts.is_some_and(|latest| ts < latest) {
            details.push(FlagEntry {
                flag: Flag::Late,
                pollutant: None,
            });
            state.remember(ts, cfg);
        } else {
            for p in Pollutant::ALL {
                if let Some(v) = clean.get(p) {
                    state.advance(p, ts, v, cfg, &mut details);
                }
            }
            state.latest_ts = Some(ts);
            if let Some(usual) = state.presence.as_mut() {
                for (u, p) in usual.iter_mut().zip(present) {
                    *u += PRESENCE_ALPHA * (f64::from(u8::from(p)) - *u);
                }
            }
            state.remember(ts, cfg);
            state.prune(ts);
        }

        let mut flags = Flags::default();
        details.iter().for_each(|d| flags.insert(d.flag));
        ProcessedReading {
            schema_version: PROCESSED_SCHEMA_VERSION,
            metrics: state.metrics(),
            sensor_id: reading.sensor_id,
            timestamp: reading.timestamp,
            location: reading.location,
            raw: reading.measurements,
            clean,
            flags,
            flag_details: details,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};

    use super::*;
    use crate::reading::Location;

    fn t0() -> DateTime<Utc> {
        "2024-01-15T00:00:00Z".parse().unwrap()
    }

    fn reading(minutes: i64, pm2_5: f64, pm10: f64, no2: f64) -> Reading {
        Reading {
            sensor_id: "s1".into(),
            timestamp: t0() + Duration::minutes(minutes),
            location: Location {
                lat: 48.8,
                lon: 2.3,
            },
            measurements: Measurements {
                pm2_5: Some(pm2_5),
                pm10: Some(pm10),
                no2: Some(no2),
            },
        }
    }

    fn has(p: &ProcessedReading, f: Flag) -> bool {
        p.flags.contains(f)
    }

    #[test]
    fn a_forgotten_sensor_starts_afresh() {
        let mut c = Cleaner::default();
        c.process(reading(0, 10.0, 20.0, 30.0));
        assert_eq!(c.sensors(), 1);
        c.forget("s1");
        assert_eq!(c.sensors(), 0);
        let again = c.process(reading(0, 10.0, 20.0, 30.0));
        assert!(
            !has(&again, Flag::Duplicate),
            "no memory of the first reading"
        );
    }

    #[test]
    fn a_normal_reading_has_no_flags_and_gets_metrics() {
        let mut c = Cleaner::default();
        let out = c.process(reading(0, 12.0, 20.0, 30.0));
        assert!(out.flags.is_empty(), "{:?}", out.flag_details);
        assert_eq!(out.metrics.mean_1h.pm2_5, Some(12.0));
        assert_eq!(out.metrics.eaqi, Some(crate::aqi::EaqiBand::Moderate));
    }

    #[test]
    fn rejects_reading_with_negative_pm10_value() {
        let mut c = Cleaner::default();
        let out = c.process(reading(0, 5.0, -3.0, 30.0));
        assert!(has(&out, Flag::Negative));
        assert_eq!(out.clean.pm10, None);
        assert_eq!(out.raw.pm10, Some(-3.0));
    }

    #[test]
    fn invalidates_values_above_the_instrument_range() {
        let mut c = Cleaner::default();
        let out = c.process(reading(0, 1500.0, 1600.0, 30.0));
        assert!(has(&out, Flag::OutOfRange));
        assert_eq!(out.clean.pm2_5, None);
        assert_eq!(out.clean.pm10, Some(1600.0));
    }

    #[test]
    fn flags_pm25_above_pm10_and_keeps_both() {
        let mut c = Cleaner::default();
        let out = c.process(reading(0, 50.0, 20.0, 30.0));
        assert!(has(&out, Flag::Pm25AbovePm10));
        assert_eq!(out.clean.pm2_5, Some(50.0));
    }

    #[test]
    fn flags_a_flatline_from_the_third_repeat() {
        let mut c = Cleaner::default();
        // 10.7 at a resolution of 0.1: 107 steps, a repeat is unlikely.
        let a = c.process(reading(0, 10.7, 20.0, 30.0));
        let b = c.process(reading(1, 10.7, 21.0, 31.0));
        let d = c.process(reading(2, 10.7, 22.0, 32.0));
        assert!(!has(&a, Flag::Flatline) && !has(&b, Flag::Flatline));
        assert!(has(&d, Flag::Flatline));
        assert_eq!(
            d.flag_details
                .iter()
                .filter(|f| f.flag == Flag::Flatline)
                .count(),
            1
        );
    }

    #[test]
    fn flags_a_rate_of_change_spike() {
        let mut c = Cleaner::default();
        c.process(reading(0, 10.0, 20.0, 30.0));
        let out = c.process(reading(1, 400.0, 450.0, 31.0));
        assert!(has(&out, Flag::Spike));
    }

    #[test]
    fn flags_a_duplicate_and_leaves_the_state_alone() {
        let mut c = Cleaner::default();
        let first = c.process(reading(0, 10.0, 20.0, 30.0));
        let dup = c.process(reading(0, 99.0, 120.0, 30.0));
        assert!(has(&dup, Flag::Duplicate));
        assert_eq!(dup.metrics, first.metrics);
    }

    #[test]
    fn flags_late_readings_without_moving_the_state() {
        let mut c = Cleaner::default();
        c.process(reading(10, 10.0, 20.0, 30.0));
        let late = c.process(reading(5, 80.0, 90.0, 30.0));
        assert!(has(&late, Flag::Late));
        assert_eq!(late.metrics.mean_1h.pm2_5, Some(10.0));
        // A replay of the late one is then a duplicate.
        assert!(has(
            &c.process(reading(5, 80.0, 90.0, 30.0)),
            Flag::Duplicate
        ));
    }

    #[test]
    fn rolling_mean_covers_exactly_one_hour() {
        let mut c = Cleaner::default();
        c.process(reading(0, 10.0, 20.0, 30.0));
        c.process(reading(30, 20.0, 30.0, 30.0));
        let out = c.process(reading(60, 30.0, 40.0, 31.0));
        assert_eq!(out.metrics.mean_1h.pm2_5, Some(25.0));
    }

    #[test]
    fn nowcast_and_aqi_follow_hourly_averages() {
        let mut c = Cleaner::default();
        let mut last = None;
        for h in 0..12 {
            last = Some(c.process(reading(h * 60, 35.9, 60.0, 20.0 + h as f64)));
        }
        let out = last.unwrap();
        assert!((out.metrics.nowcast.pm2_5.unwrap() - 35.9).abs() < 1e-9);
        let aqi = out.metrics.us_aqi.unwrap();
        assert_eq!((aqi.aqi, aqi.dominant), (102, Pollutant::Pm25));
    }

    #[test]
    fn a_pollutant_the_sensor_usually_reports_is_flagged_missing() {
        let mut c = Cleaner::default();
        for m in 0..5 {
            assert!(!has(
                &c.process(reading(m, 10.0, 20.0, 30.0)),
                Flag::Missing
            ));
        }
        let mut r = reading(5, 10.0, 20.0, 30.0);
        r.measurements.no2 = None;
        let out = c.process(r);
        assert!(has(&out, Flag::Missing));
        assert!(out.metrics.mean_1h.no2.is_some(), "the hour still has NO2");
    }

    #[test]
    fn a_pollutant_the_sensor_never_reports_is_not_missing() {
        // Most low-cost sensors measure PM only.
        let mut c = Cleaner::default();
        for m in 0..20 {
            let mut r = reading(m, 10.0, 20.0, 30.0);
            r.measurements.no2 = None;
            let out = c.process(r);
            assert!(!has(&out, Flag::Missing), "minute {m}");
            assert_eq!(out.metrics.mean_1h.no2, None);
        }
    }
}
