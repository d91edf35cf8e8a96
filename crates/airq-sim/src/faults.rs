//! Fault injection. Every injected fault is returned as a [`GroundTruth`] record, kept
//! outside the data path, so that the cleaner and the anomaly detector can be scored.

use airq_domain::{Measurements, Pollutant, Reading};
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The kinds of fault the simulator injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Spike,
    Stuck,
    Drift,
    Dropout,
    OutOfRange,
    Negative,
    Pm25AbovePm10,
    MalformedJson,
    MissingField,
    Duplicate,
    Late,
}

impl FaultKind {
    /// Whether the message carrying this fault is invalid (goes to the dead-letter topic).
    pub fn is_invalid_message(self) -> bool {
        matches!(self, FaultKind::MalformedJson | FaultKind::MissingField)
    }
}

/// Probability per reading that each kind of fault starts there. Missing fields take the
/// default rates (sensor-sim's `AIRQ__FAULTS__...` override them one by one).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultRates {
    pub spike: f64,
    pub stuck: f64,
    pub drift: f64,
    pub dropout: f64,
    pub out_of_range: f64,
    pub negative: f64,
    pub pm25_above_pm10: f64,
    pub malformed_json: f64,
    pub missing_field: f64,
    pub duplicate: f64,
    pub late: f64,
}

impl Default for FaultRates {
    /// The simulator's default rates (the evaluation's tables in docs/benchmarks.md use them).
    fn default() -> Self {
        Self {
            spike: 0.002,
            stuck: 0.0005,
            drift: 0.0002,
            dropout: 0.0005,
            out_of_range: 0.001,
            negative: 0.001,
            pm25_above_pm10: 0.001,
            malformed_json: 0.001,
            missing_field: 0.001,
            duplicate: 0.002,
            late: 0.002,
        }
    }
}

impl FaultRates {
    pub fn none() -> Self {
        Self {
            spike: 0.0,
            stuck: 0.0,
            drift: 0.0,
            dropout: 0.0,
            out_of_range: 0.0,
            negative: 0.0,
            pm25_above_pm10: 0.0,
            malformed_json: 0.0,
            missing_field: 0.0,
            duplicate: 0.0,
            late: 0.0,
        }
    }

    /// Every rate times `factor`.
    pub fn scaled(&self, factor: f64) -> Self {
        Self {
            spike: self.spike * factor,
            stuck: self.stuck * factor,
            drift: self.drift * factor,
            dropout: self.dropout * factor,
            out_of_range: self.out_of_range * factor,
            negative: self.negative * factor,
            pm25_above_pm10: self.pm25_above_pm10 * factor,
            malformed_json: self.malformed_json * factor,
            missing_field: self.missing_field * factor,
            duplicate: self.duplicate * factor,
            late: self.late * factor,
        }
    }

    fn table(&self) -> [(FaultKind, f64); 11] {
        [
            (FaultKind::Spike, self.spike),
            (FaultKind::Stuck, self.stuck),
            (FaultKind::Drift, self.drift),
            (FaultKind::Dropout, self.dropout),
            (FaultKind::OutOfRange, self.out_of_range),
            (FaultKind::Negative, self.negative),
            (FaultKind::Pm25AbovePm10, self.pm25_above_pm10),
            (FaultKind::MalformedJson, self.malformed_json),
            (FaultKind::MissingField, self.missing_field),
            (FaultKind::Duplicate, self.duplicate),
            (FaultKind::Late, self.late),
        ]
    }

    /// At most one new fault per reading: walk the cumulative rates with one draw.
    pub fn draw(&self, rng: &mut impl Rng) -> Option<FaultKind> {
        let u: f64 = rng.random();
        let mut acc = 0.0;
        self.table().into_iter().find_map(|(kind, rate)| {
            acc += rate;
            (u < acc).then_some(kind)
        })
    }
}

/// One injected fault: which sensor, when, what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub sensor_id: String,
    pub kind: FaultKind,
    #[serde(with = "airq_domain::reading::rfc3339")]
    pub start: DateTime<Utc>,
    #[serde(with = "airq_domain::reading::rfc3339")]
    pub end: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pollutant: Option<Pollutant>,
    /// True when the message is invalid and must end in the dead-letter topic.
    pub invalid_message: bool,
}

/// A fault that lasts several ticks.
#[derive(Debug, Clone)]
pub enum Ongoing {
    Stuck {
        remaining: u32,
        frozen: Measurements,
    },
    Drift {
        elapsed: u32,
        duration: u32,
        pollutant: Pollutant,
        slope: f64,
    },
    Dropout {
        remaining: u32,
    },
}

/// What to do with one reading's message.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Send now.
    Now,
    /// Send now, and once more.
    Twice,
    /// Hold back this many ticks.
    Delayed(u32),
    /// Do not send at all (the sensor is silent).
    Drop,
}

fn random_pollutant(rng: &mut impl Rng) -> Pollutant {
    Pollutant::ALL[rng.random_range(0..3)]
}

/// Applies the value-level effect of a newly drawn single-reading fault to `m`;
/// returns the pollutant concerned.
pub fn corrupt_values(
    kind: FaultKind,
    m: &mut Measurements,
    rng: &mut impl Rng,
) -> Option<Pollutant> {
    match kind {
        FaultKind::Spike => {
            let p = random_pollutant(rng);
            let v = m.get(p).unwrap_or(10.0);
            // Above every pollutant's default spike threshold (PM10: 300 ug/m3).
            m.set(
                p,
                Some((v * rng.random_range(2.0..4.0) + rng.random_range(320.0..450.0)).round()),
            );
            Some(p)
        }
        FaultKind::OutOfRange => {
            let p = random_pollutant(rng);
            m.set(p, Some(rng.random_range(2500.0..9000.0_f64).round()));
            Some(p)
        }
        FaultKind::Negative => {
            let p = random_pollutant(rng);
            m.set(p, Some(-rng.random_range(1.0..25.0_f64).round()));
            Some(p)
        }
        FaultKind::Pm25AbovePm10 => {
            let pm10 = m.pm10.unwrap_or(20.0);
            m.pm2_5 = Some((pm10 * rng.random_range(1.3..2.0) + 5.0).round());
            Some(Pollutant::Pm25)
        }
        _ => None,
    }
}

/// Makes an invalid message out of a reading.
pub fn corrupt_message(kind: FaultKind, reading: &Reading, rng: &mut impl Rng) -> Vec<u8> {
    let json = reading.to_json();
    match kind {
        FaultKind::MalformedJson => {
            let cut = rng.random_range(1..json.len().saturating_sub(1).max(2));
            let mut bytes = json[..cut].to_vec();
            bytes.extend_from_slice(b"\x00}{");
            bytes
        }
        FaultKind::MissingField => {
            let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap_or_default();
            let field =
                ["sensor_id", "timestamp", "location", "measurements"][rng.random_range(0..4)];
            if let Some(obj) = value.as_object_mut() {
                obj.remove(field);
            }
            serde_json::to_vec(&value).unwrap_or_default()
        }
        _ => json,
    }
}

/// Starts a multi-tick fault.
pub fn start_ongoing(
    kind: FaultKind,
    current: &Measurements,
    rng: &mut impl Rng,
) -> Option<(Ongoing, u32, Option<Pollutant>)> {
    match kind {
        FaultKind::Stuck => {
            let n = rng.random_range(6..20);
            Some((
                Ongoing::Stuck {
                    remaining: n,
                    frozen: *current,
                },
                n,
                None,
            ))
        }
        FaultKind::Drift => {
            let duration = rng.random_range(90..240);
            let pollutant = if rng.random_bool(0.5) {
                Pollutant::Pm25
            } else {
                Pollutant::No2
            };
            let total = rng.random_range(40.0..90.0);
            Some((
                Ongoing::Drift {
                    elapsed: 0,
                    duration,
                    pollutant,
                    slope: total / f64::from(duration),
                },
                duration,
                Some(pollutant),
            ))
        }
        FaultKind::Dropout => {
            let n = rng.random_range(10..40);
            Some((Ongoing::Dropout { remaining: n }, n, None))
        }
        _ => None,
    }
}

/// Applies an ongoing fault to this tick's values; returns whether it is still running after.
pub fn apply_ongoing(fault: &mut Ongoing, m: &mut Measurements) -> (Delivery, bool) {
    match fault {
        Ongoing::Stuck { remaining, frozen } => {
            *m = *frozen;
            *remaining -= 1;
            (Delivery::Now, *remaining > 0)
        }
        Ongoing::Drift {
            elapsed,
            duration,
            pollutant,
            slope,
        } => {
            *elapsed += 1;
            let offset = *slope * f64::from(*elapsed);
            m.set(
                *pollutant,
                m.get(*pollutant)
                    .map(|v| ((v + offset) * 10.0).round() / 10.0),
            );
            (Delivery::Now, *elapsed < *duration)
        }
        Ongoing::Dropout { remaining } => {
            *remaining -= 1;
            (Delivery::Drop, *remaining > 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn no_rates_never_draw_a_fault() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!((0..10_000).all(|_| FaultRates::none().draw(&mut rng).is_none()));
    }

    #[test]
    fn rates_are_respected_roughly() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let rates = FaultRates {
            spike: 0.1,
            ..FaultRates::none()
        };
        let n = (0..10_000)
            .filter(|_| rates.draw(&mut rng) == Some(FaultKind::Spike))
            .count();
        assert!((800..1200).contains(&n), "{n}");
    }

    #[test]
    fn a_spike_jumps_far_above_the_spike_threshold() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut m = Measurements {
            pm2_5: Some(10.0),
            pm10: Some(20.0),
            no2: Some(30.0),
        };
        let before = m;
        let p = corrupt_values(FaultKind::Spike, &mut m, &mut rng).unwrap();
        assert!(m.get(p).unwrap() - before.get(p).unwrap() > 300.0);
    }

    #[test]
    fn a_stuck_sensor_repeats_its_values() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let frozen = Measurements {
            pm2_5: Some(10.0),
            pm10: Some(20.0),
            no2: Some(30.0),
        };
        let (mut f, n, _) = start_ongoing(FaultKind::Stuck, &frozen, &mut rng).unwrap();
        for i in 0..n {
            let mut m = Measurements {
                pm2_5: Some(1.0 + f64::from(i)),
                ..frozen
            };
            let (_, running) = apply_ongoing(&mut f, &mut m);
            assert_eq!(m, frozen);
            assert_eq!(running, i + 1 < n);
        }
    }
}
