//! Faults injected into real series: a labelled set made of real data.
//!
//! The faults that matter on real low-cost sensors, written into a real stream (e.g. the
//! Beijing replay's last year), several per sensor and month, with random parameters from a
//! seed and the ground truth alongside. Every reading outside a fault is left exactly as
//! it was, and the real pollution episodes stay unlabelled: they are normal air.

use std::collections::BTreeMap;

use airq_domain::{Pollutant, Reading};
use chrono::{DateTime, Datelike, Months, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

/// The kinds of fault injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RealFault {
    /// One reading of one pollutant several times too high.
    Spike,
    /// Every channel frozen at its value for hours.
    Stuck,
    /// Every channel reads exactly 0 for hours (a dropout the firmware fills with zeros).
    Zeros,
    /// PM2.5 read above PM10 for hours (a mislabelled or faulty channel).
    Pm25AbovePm10,
    /// One channel with heavy multiplicative noise for a day or two.
    Noisy,
    /// One channel's gain drifting away from 1 over days (and staying there until the end).
    GainDrift,
    /// A physically impossible value: negative, or above the instrument's range.
    Impossible,
}

impl RealFault {
    pub const ALL: [RealFault; 7] = [
        RealFault::Spike,
        RealFault::Stuck,
        RealFault::Zeros,
        RealFault::Pm25AbovePm10,
        RealFault::Noisy,
        RealFault::GainDrift,
        RealFault::Impossible,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RealFault::Spike => "spike",
            RealFault::Stuck => "stuck",
            RealFault::Zeros => "zeros",
            RealFault::Pm25AbovePm10 => "pm25_above_pm10",
            RealFault::Noisy => "noisy",
            RealFault::GainDrift => "gain_drift",
            RealFault::Impossible => "impossible",
        }
    }
}

/// One injected fault: the ground truth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Injected {
    pub sensor_id: String,
    /// The channel, for faults of one channel.
    pub pollutant: Option<Pollutant>,
    pub kind: RealFault,
    #[serde(with = "airq_domain::reading::rfc3339")]
    pub start: DateTime<Utc>,
    #[serde(with = "airq_domain::reading::rfc3339")]
    pub end: DateTime<Utc>,
    /// Readings changed.
    pub readings: usize,
}

/// Where and how many.
#[derive(Debug, Clone)]
pub struct InjectSpec {
    /// Faults go into readings in `[from, to)`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Faults per sensor and calendar month.
    pub per_sensor_month: usize,
    pub seed: u64,
}

/// Writes faults into `readings` (time order, many sensors); returns the ground truth.
pub fn inject(readings: &mut [Reading], spec: &InjectSpec) -> Vec<Injected> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    // Per sensor and month, the positions of its readings in the window.
    let mut slots: BTreeMap<(String, i32, u32), Vec<usize>> = BTreeMap::new();
    for (i, r) in readings.iter().enumerate() {
        if r.timestamp >= spec.from && r.timestamp < spec.to {
            let t = r.timestamp;
            slots
                .entry((r.sensor_id.clone(), t.year(), t.month()))
                .or_default()
                .push(i);
        }
    }
    let mut truth = Vec::new();
    let mut turn = 0usize;
    for ((sensor, _, _), idx) in slots {
        let n = spec.per_sensor_month.max(1);
        let slot_len = idx.len() / n;
        if slot_len < 4 {
            continue;
        }
        for j in 0..n {
            // Each kind in turn, so that every kind is as frequent as the others.
            let kind = RealFault::ALL[turn % RealFault::ALL.len()];
            turn += 1;
            let slot = &idx[j * slot_len..(j + 1) * slot_len];
            if let Some(t) = inject_one(readings, slot, &sensor, kind, &mut rng) {
                truth.push(t);
            }
        }
    }
    truth
}

/// How many readings a fault of `kind` lasts (hourly data), at most `room`.
fn duration(kind: RealFault, room: usize, rng: &mut impl Rng) -> usize {
    let (lo, hi) = match kind {
        RealFault::Spike => (1, 2),
        RealFault::Impossible => (1, 4),
        RealFault::Stuck => (6, 25),
        RealFault::Zeros => (3, 13),
        RealFault::Pm25AbovePm10 => (3, 13),
        RealFault::Noisy => (12, 49),
        RealFault::GainDrift => (120, 361),
    };
    rng.random_range(lo..hi).min(room)
}

fn pick_pollutant(kind: RealFault, rng: &mut impl Rng) -> Option<Pollutant> {
    match kind {
        RealFault::Stuck | RealFault::Zeros | RealFault::Pm25AbovePm10 => None,
        _ => Some(Pollutant::ALL[rng.random_range(0..3)]),
    }
}

/// Injects one fault somewhere in `slot` (positions of one sensor's readings, in order).
fn inject_one(
    readings: &mut [Reading],
    slot: &[usize],
    sensor: &str,
    kind: RealFault,
    rng: &mut impl Rng,
) -> Option<Injected> {
    let len = duration(kind, slot.len() / 2, rng).max(1);
    let at = rng.random_range(0..slot.len() - len);
    let span = &slot[at..at + len];
    let pollutant = pick_pollutant(kind, rng);
    let frozen = readings[span[0]].measurements;
    let gain_to = if rng.random_bool(0.5) {
        rng.random_range(1.6..2.5)
    } else {
        1.0 / rng.random_range(1.6..2.5)
    };
    let spike = rng.random_range(4.0..10.0);
    let pm_factor = rng.random_range(1.3..2.0);
    let noise: Normal<f64> = Normal::new(0.0, 0.8).ok()?;
    let negative = rng.random_bool(0.5);
    let mut changed = 0;
    for (k, &i) in span.iter().enumerate() {
        let m = &mut readings[i].measurements;
        let before = *m;
        match kind {
            RealFault::Stuck => *m = frozen,
            RealFault::Zeros => {
                for p in Pollutant::ALL {
                    if m.get(p).is_some() {
                        m.set(p, Some(0.0));
                    }
                }
            }
            RealFault::Pm25AbovePm10 => {
                if let Some(pm10) = m.pm10 {
                    m.pm2_5 = Some((pm10 * pm_factor).round().max(pm10 + 5.0));
                }
            }
            RealFault::Spike | RealFault::Noisy | RealFault::GainDrift | RealFault::Impossible => {
                let p = pollutant?;
                let Some(x) = m.get(p) else { continue };
                let y = match kind {
                    RealFault::Spike => (x * spike + 100.0).round(),
                    RealFault::Noisy => (x * noise.sample(rng).exp()).round(),
                    RealFault::GainDrift => {
                        let progress = (k + 1) as f64 / len as f64;
                        (x * (1.0 + (gain_to - 1.0) * progress)).round()
                    }
                    _ if negative => -rng.random_range(1.0..50.0_f64).round(),
                    _ => rng.random_range(2500.0..9000.0_f64).round(),
                };
                m.set(p, Some(y));
            }
        }
        if *m != before {
            changed += 1;
        }
    }
    // A gain drift stays after its ramp: the rest of the slot keeps the final gain.
    let mut end_i = *span.last()?;
    if kind == RealFault::GainDrift
        && let Some(p) = pollutant
    {
        for &i in &slot[at + len..] {
            let m = &mut readings[i].measurements;
            if let Some(x) = m.get(p) {
                m.set(p, Some((x * gain_to).round()));
                changed += 1;
            }
            end_i = i;
        }
    }
    (changed > 0).then(|| Injected {
        sensor_id: sensor.to_owned(),
        pollutant,
        kind,
        start: readings[span[0]].timestamp,
        end: readings[end_i].timestamp,
        readings: changed,
    })
}

/// The first instant of the month `months` before `t`'s month.
pub fn months_before(t: DateTime<Utc>, months: u32) -> DateTime<Utc> {
    let first = Utc
        .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(t);
    first
        .checked_sub_months(Months::new(months))
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use airq_domain::{Location, Measurements};
    use chrono::Duration;

    use super::*;

    fn hourly(sensors: usize, days: i64) -> Vec<Reading> {
        let t0: DateTime<Utc> = "2016-03-01T00:00:00Z".parse().unwrap();
        let mut out = Vec::new();
        for h in 0..days * 24 {
            for s in 0..sensors {
                out.push(Reading {
                    sensor_id: format!("s{s}"),
                    timestamp: t0 + Duration::hours(h),
                    location: Location {
                        lat: 39.9,
                        lon: 116.4,
                    },
                    measurements: Measurements {
                        pm2_5: Some(40.0 + (h % 7) as f64),
                        pm10: Some(80.0 + (h % 5) as f64),
                        no2: Some(30.0 + (h % 3) as f64),
                    },
                });
            }
        }
        out
    }

    #[test]
    fn faults_change_only_their_readings_and_are_reproducible() {
        let original = hourly(3, 61);
        let spec = InjectSpec {
            from: "2016-03-01T00:00:00Z".parse().unwrap(),
            to: "2016-05-01T00:00:00Z".parse().unwrap(),
            per_sensor_month: 7,
            seed: 9,
        };
        let mut a = original.clone();
        let truth = inject(&mut a, &spec);
        let mut b = original.clone();
        assert_eq!(inject(&mut b, &spec), truth, "same seed, same faults");
        assert_eq!(a, b);
        let kinds: std::collections::BTreeSet<_> = truth.iter().map(|t| t.kind).collect();
        assert_eq!(kinds.len(), RealFault::ALL.len(), "every kind: {kinds:?}");
        for (r, o) in a.iter().zip(&original) {
            let inside = truth.iter().any(|t| {
                t.sensor_id == r.sensor_id && t.start <= r.timestamp && r.timestamp <= t.end
            });
            if !inside {
                assert_eq!(r, o, "outside every fault, byte for byte");
            }
        }
        let changed = a.iter().zip(&original).filter(|(r, o)| r != o).count();
        assert_eq!(changed, truth.iter().map(|t| t.readings).sum::<usize>());
    }

    #[test]
    fn pm25_above_pm10_faults_read_above_pm10() {
        let mut a = hourly(1, 31);
        let spec = InjectSpec {
            from: "2016-03-01T00:00:00Z".parse().unwrap(),
            to: "2016-04-01T00:00:00Z".parse().unwrap(),
            per_sensor_month: 7,
            seed: 1,
        };
        let truth = inject(&mut a, &spec);
        let f = truth
            .iter()
            .find(|t| t.kind == RealFault::Pm25AbovePm10)
            .unwrap();
        for r in a
            .iter()
            .filter(|r| f.start <= r.timestamp && r.timestamp <= f.end)
        {
            assert!(r.measurements.pm2_5.unwrap() > r.measurements.pm10.unwrap());
        }
    }
}
