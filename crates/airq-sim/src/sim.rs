//! The synthetic fleet: one [`Simulator::tick`] produces every sensor's message for one
//! time step, with faults injected and recorded. Pure: no clock, no I/O.

use std::collections::BTreeMap;

use airq_domain::{Location, Reading};
use chrono::{DateTime, Duration, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::faults::{
    Delivery, FaultKind, FaultRates, GroundTruth, Ongoing, apply_ongoing, corrupt_message,
    corrupt_values, start_ongoing,
};
use crate::signal::{SensorProfile, Weather, sample};

/// A message ready to publish: key (sensor id) and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub key: String,
    pub payload: Vec<u8>,
}

/// Everything one tick produced.
#[derive(Debug, Default)]
pub struct TickOutput {
    pub messages: Vec<Outgoing>,
    pub truth: Vec<GroundTruth>,
}

/// Parameters of the synthetic fleet.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub sensors: usize,
    pub center: Location,
    pub start: DateTime<Utc>,
    pub interval: Duration,
    pub seed: u64,
    pub faults: FaultRates,
}

pub struct Simulator {
    spec: FleetSpec,
    profiles: Vec<SensorProfile>,
    weather: Weather,
    rng: ChaCha8Rng,
    ongoing: Vec<Option<Ongoing>>,
    /// Late messages, by the tick at which they are released.
    held: BTreeMap<u64, Vec<Outgoing>>,
    tick: u64,
}

impl Simulator {
    pub fn new(spec: FleetSpec) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let profiles = SensorProfile::fleet(spec.sensors, spec.center, &mut rng);
        let ongoing = vec![None; profiles.len()];
        Self {
            spec,
            profiles,
            weather: Weather::default(),
            rng,
            ongoing,
            held: BTreeMap::new(),
            tick: 0,
        }
    }

    /// Time of tick `k`.
    pub fn time_of(&self, k: u64) -> DateTime<Utc> {
        let k = i32::try_from(k).unwrap_or(i32::MAX);
        self.spec.start + self.spec.interval * k
    }

    /// Ticks produced so far.
    pub fn ticks(&self) -> u64 {
        self.tick
    }

    /// Produces the next tick.
    pub fn tick(&mut self) -> TickOutput {
        let k = self.tick;
        self.tick += 1;
        let ts = self.time_of(k);
        let interval_secs = self.spec.interval.num_milliseconds() as f64 / 1000.0;
        self.weather.advance(interval_secs, &mut self.rng);
        let mut out = TickOutput::default();

        for i in 0..self.profiles.len() {
            let profile = &self.profiles[i];
            let mut m = sample(profile, ts, &self.weather, &mut self.rng);
            let mut delivery = Delivery::Now;
            if let Some(fault) = self.ongoing[i].as_mut() {
                let (d, running) = apply_ongoing(fault, &mut m);
                delivery = d;
                if !running {
                    self.ongoing[i] = None;
                }
            }
            let mut reading = Reading {
                sensor_id: profile.sensor_id.clone(),
                timestamp: ts,
                location: profile.location,
                measurements: m,
            };
            let mut payload = None;
            // A new fault only starts on a sensor that is behaving normally.
            if self.ongoing[i].is_none()
                && delivery == Delivery::Now
                && let Some(kind) = self.spec.faults.draw(&mut self.rng)
            {
                let record = |end: DateTime<Utc>, pollutant| GroundTruth {
                    sensor_id: reading.sensor_id.clone(),
                    kind,
                    start: ts,
                    end,
                    pollutant,
                    invalid_message: kind.is_invalid_message(),
                };
                match kind {
                    FaultKind::Stuck | FaultKind::Drift | FaultKind::Dropout => {
                        if let Some((mut fault, n, pollutant)) =
                            start_ongoing(kind, &reading.measurements, &mut self.rng)
                        {
                            let end = ts + self.spec.interval * (n as i32 - 1).max(0);
                            out.truth.push(record(end, pollutant));
                            let (d, running) = apply_ongoing(&mut fault, &mut reading.measurements);
                            delivery = d;
                            self.ongoing[i] = running.then_some(fault);
                        }
                    }
                    FaultKind::MalformedJson | FaultKind::MissingField => {
                        out.truth.push(record(ts, None));
                        payload = Some(corrupt_message(kind, &reading, &mut self.rng));
                    }
                    FaultKind::Duplicate => {
                        out.truth.push(record(ts, None));
                        delivery = Delivery::Twice;
                    }
                    FaultKind::Late => {
                        out.truth.push(record(ts, None));
                        delivery = Delivery::Delayed(3 + (k % 5) as u32);
                    }
                    FaultKind::Spike
                    | FaultKind::OutOfRange
                    | FaultKind::Negative
                    | FaultKind::Pm25AbovePm10 => {
                        let p = corrupt_values(kind, &mut reading.measurements, &mut self.rng);
                        out.truth.push(record(ts, p));
                    }
                }
            }
            let msg = Outgoing {
                key: reading.sensor_id.clone(),
                payload: payload.unwrap_or_else(|| reading.to_json()),
            };
            match delivery {
                Delivery::Now => out.messages.push(msg),
                Delivery::Twice => {
                    out.messages.push(msg.clone());
                    out.messages.push(msg);
                }
                Delivery::Delayed(n) => self.held.entry(k + u64::from(n)).or_default().push(msg),
                Delivery::Drop => {}
            }
        }
        if let Some(released) = self.held.remove(&k) {
            out.messages.extend(released);
        }
        out
    }

    /// Runs `ticks` more ticks and releases what is held back: a finite stream with its
    /// ground truth.
    pub fn run(&mut self, ticks: u64) -> TickOutput {
        let mut out = TickOutput::default();
        for _ in 0..ticks {
            let t = self.tick();
            out.messages.extend(t.messages);
            out.truth.extend(t.truth);
        }
        out.messages.extend(self.flush_held());
        out
    }

    /// Releases every message still held back (at the end of a finite run).
    pub fn flush_held(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.held)
            .into_values()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(faults: FaultRates) -> FleetSpec {
        FleetSpec {
            sensors: 20,
            center: Location {
                lat: 48.8566,
                lon: 2.3522,
            },
            start: "2024-01-15T00:00:00Z".parse().unwrap(),
            interval: Duration::minutes(1),
            seed: 42,
            faults,
        }
    }

    fn run(s: FleetSpec, ticks: u64) -> (Vec<Outgoing>, Vec<GroundTruth>) {
        let out = Simulator::new(s).run(ticks);
        (out.messages, out.truth)
    }

    #[test]
    fn without_faults_every_sensor_sends_once_per_tick() {
        let (msgs, truth) = run(spec(FaultRates::none()), 10);
        assert_eq!(msgs.len(), 200);
        assert!(truth.is_empty());
    }

    #[test]
    fn same_seed_gives_the_same_stream() {
        let rates = FaultRates {
            spike: 0.05,
            duplicate: 0.05,
            late: 0.05,
            ..FaultRates::none()
        };
        assert_eq!(run(spec(rates.clone()), 50).0, run(spec(rates), 50).0);
    }

    #[test]
    fn every_injected_fault_is_recorded() {
        let rates = FaultRates {
            duplicate: 0.02,
            malformed_json: 0.02,
            dropout: 0.002,
            ..FaultRates::none()
        };
        let (msgs, truth) = run(spec(rates), 300);
        let dups = truth
            .iter()
            .filter(|t| t.kind == FaultKind::Duplicate)
            .count();
        let bad = truth.iter().filter(|t| t.invalid_message).count();
        assert!(dups > 0 && bad > 0);
        let invalid = msgs
            .iter()
            .filter(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).is_err())
            .count();
        assert_eq!(invalid, bad);
        let silent_ticks: i64 = truth
            .iter()
            .filter(|t| t.kind == FaultKind::Dropout)
            .map(|t| (t.end - t.start).num_minutes() + 1)
            .sum();
        // A dropout that runs past the end of the run is cut short.
        assert!(msgs.len() as i64 >= 6000 + dups as i64 - silent_ticks);
        assert!(msgs.len() as i64 <= 6000 + dups as i64);
    }
}
