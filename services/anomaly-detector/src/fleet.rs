//! The detector state of the sensors this instance owns, kept valid across restarts and
//! rebalances: a sensor's state is warmed from its stored history before its first
//! reading is processed, and dropped when its partition's offsets show a gap or a rewind
//! (another instance processed that partition meanwhile). Live readings are held in
//! event-time ticks ([`airq_detect::ticks`]) and judged when their tick closes, with the
//! message each came from.

use std::collections::{HashMap, HashSet};

use airq_detect::{AnomalyEvent, Detector, DetectorConfig, Ticks, Wait};
use airq_domain::ProcessedReading;
use airq_domain::qc::{Flag, QcConfig};
use airq_domain::sensor::Cleaner;
use airq_runtime::latency::Histogram;
use airq_store::readings::StoredRaw;

use crate::sink::Finding;
use chrono::{DateTime, Utc};
use rdkafka::Message;
use rdkafka::message::OwnedMessage;

/// What [`Fleet::observe`] made of a message's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next message of the partition (or its first): process it.
    Next,
    /// Processed by this instance already: skip it.
    Again,
    /// Another instance processed messages before it: `dropped` sensors must be warmed again.
    AfterGap { dropped: usize },
}

pub struct Fleet {
    detector: Detector,
    /// Each held reading with its message; `None`: a stored reading of the warm start that
    /// shares a tick with live ones (judged with them, its events were written already).
    ticks: Ticks<Option<OwnedMessage>>,
    qc: QcConfig,
    warmed: HashSet<String>,
    next_offset: HashMap<(String, i32), i64>,
    sensors_of: HashMap<(String, i32), HashSet<String>>,
    /// How long the readings judged waited for their tick to close (from its first
    /// reading's arrival): the detector's deliberate share of its latency.
    pub tick_wait: Histogram,
}

impl Fleet {
    pub fn new(detect: DetectorConfig, qc: QcConfig) -> Self {
        Self {
            ticks: Ticks::new(&detect.spatial),
            detector: Detector::new(detect),
            qc,
            warmed: HashSet::new(),
            next_offset: HashMap::new(),
            sensors_of: HashMap::new(),
            tick_wait: Histogram::default(),
        }
    }

    /// Records a message of `sensor` at `offset` of a partition and says what to do with it.
    ///
    /// Offsets of a partition this instance kept are contiguous. A message below the next
    /// expected offset was processed by this instance already (the broker rewound it to the
    /// committed offset, e.g. after the consumer rejoined its group): it is skipped, its events
    /// were written then, and the state stays exactly that of the stream in order. A jump
    /// ahead means another instance processed the messages between: every sensor of the
    /// partition is dropped and will be warmed again from PostgreSQL.
    pub fn observe(&mut self, topic: &str, partition: i32, offset: i64, sensor: &str) -> Seen {
        let key = (topic.to_owned(), partition);
        let mut seen = Seen::Next;
        match self.next_offset.get(&key) {
            Some(&expected) if offset < expected => return Seen::Again,
            Some(&expected) if offset > expected => {
                let dropped = self.sensors_of.remove(&key).unwrap_or_default();
                for s in &dropped {
                    self.detector.forget(s);
                    self.ticks.forget(s);
                    self.warmed.remove(s);
                }
                seen = Seen::AfterGap {
                    dropped: dropped.len(),
                };
            }
            _ => {}
        }
        self.next_offset.insert(key.clone(), offset + 1);
        self.sensors_of
            .entry(key)
            .or_default()
            .insert(sensor.to_owned());
        seen
    }

    /// Drops a sensor's state (it went quiet); it is warmed again if it comes back.
    pub fn forget(&mut self, sensor: &str) {
        self.detector.forget(sensor);
        self.ticks.forget(sensor);
        self.warmed.remove(sensor);
        for sensors in self.sensors_of.values_mut() {
            sensors.remove(sensor);
        }
    }

    pub fn needs_warm(&self, sensor: &str) -> bool {
        !self.warmed.contains(sensor)
    }

    /// Rebuilds `sensor`'s state from its stored history (oldest first); see [`Fleet::warm_all`].
    pub fn warm(&mut self, sensor: &str, history: &[StoredRaw]) {
        self.warm_all(&[(sensor, history)], None, 0);
    }

    /// Rebuilds the state of several sensors (those of a partition that came to this
    /// instance) from their stored histories, through the same cleaning and detection as the
    /// stream, tick by tick, so that their neighbour context is rebuilt too. The events this
    /// raises were published when those readings were first processed, so they are dropped.
    /// Stored readings at or after `live_from` (the first live reading of these sensors)
    /// join the live ticks instead: a tick the previous owner judged partly is judged again
    /// whole. Late readings are skipped, as they were live.
    pub fn warm_all(
        &mut self,
        histories: &[(&str, &[StoredRaw])],
        live_from: Option<DateTime<Utc>>,
        now_ms: u64,
    ) {
        let mut readings = Vec::new();
        for (sensor, history) in histories {
            self.detector.forget(sensor);
            let mut cleaner = Cleaner::new(self.qc.clone());
            readings.extend(
                history
                    .iter()
                    .filter(|h| !h.flags.contains(Flag::Late))
                    .map(|h| cleaner.process(h.reading.clone())),
            );
            self.warmed.insert((*sensor).to_owned());
        }
        readings.sort_by_key(|r| r.timestamp);
        let (past, live): (Vec<_>, Vec<_>) = readings
            .into_iter()
            .partition(|r| live_from.is_none_or(|t| r.timestamp < t));
        let mut ticks = Ticks::sorted(&self.detector.config().spatial);
        past.into_iter().for_each(|r| ticks.push(r, (), 0));
        for tick in ticks.drain() {
            let _replayed = self
                .detector
                .judge_tick(tick.readings.iter().map(|(r, _)| r));
        }
        live.into_iter()
            .for_each(|r| self.ticks.push(r, None, now_ms));
    }

    /// Judges one reading at once, outside the ticks (the warm start, tests).
    pub fn process(&mut self, r: &ProcessedReading) -> Vec<AnomalyEvent> {
        self.detector.process(r)
    }

    /// Holds a live reading, with its message, until its tick closes; `now_ms` is the
    /// processing clock.
    pub fn hold(&mut self, r: ProcessedReading, message: OwnedMessage, now_ms: u64) {
        self.ticks.push(r, Some(message), now_ms);
    }

    /// Judges the ticks that closed, and those that waited their `wait` or more: the anomaly
    /// events and pollution episodes, each with the message of the reading that raised it.
    pub fn judge_ready(&mut self, now_ms: u64, wait: Wait) -> Vec<(OwnedMessage, Finding)> {
        let mut out = Vec::new();
        for tick in self.ticks.due(now_ms, wait) {
            let waited = std::time::Duration::from_millis(now_ms.saturating_sub(tick.arrived_ms));
            self.tick_wait.record_n(waited, tick.readings.len() as u64);
            let steps = self
                .detector
                .judge_tick(tick.readings.iter().map(|(r, _)| r));
            for ((_, message), step) in tick.readings.into_iter().zip(steps) {
                if let Some(message) = message {
                    let found = step.events.into_iter().map(Finding::Anomaly);
                    let found = found.chain(step.episode.map(Finding::Pollution));
                    out.extend(found.map(|f| (message.clone(), f)));
                }
            }
        }
        out
    }

    /// Whether a held tick waited its `wait` or more.
    pub fn is_due(&self, now_ms: u64, wait: Wait) -> bool {
        self.ticks.is_due(now_ms, wait)
    }

    /// The lowest offset held per (topic, partition).
    pub fn holding(&self) -> Vec<(String, i32, i64)> {
        let mut low: HashMap<(String, i32), i64> = HashMap::new();
        for m in self.ticks.held().flatten() {
            let e = low
                .entry((m.topic().to_owned(), m.partition()))
                .or_insert(m.offset());
            *e = (*e).min(m.offset());
        }
        low.into_iter().map(|((t, p), o)| (t, p, o)).collect()
    }

    /// Readings held in open ticks.
    pub fn held(&self) -> usize {
        self.ticks.len()
    }

    /// Number of sensors with state.
    pub fn sensors(&self) -> usize {
        self.detector.sensors()
    }
}

#[cfg(test)]
mod tests {
    use airq_domain::{Location, Measurements, Reading};
    use chrono::{DateTime, Duration, Utc};

    use super::*;

    fn raw(sensor: &str, minute: i64, pm2_5: f64) -> Reading {
        let t0: DateTime<Utc> = "2024-01-15T00:00:00Z".parse().unwrap();
        Reading {
            sensor_id: sensor.into(),
            timestamp: t0 + Duration::minutes(minute),
            location: Location { lat: 0.0, lon: 0.0 },
            measurements: Measurements {
                pm2_5: Some(pm2_5),
                pm10: Some(2.0 * pm2_5),
                no2: Some(20.0),
            },
        }
    }

    #[test]
    fn a_gap_in_a_partition_drops_its_sensors_only_and_a_rewind_is_skipped() {
        let mut f = Fleet::new(DetectorConfig::default(), QcConfig::default());
        f.warm("a", &[]);
        f.warm("b", &[]);
        assert_eq!(f.observe("t", 0, 10, "a"), Seen::Next);
        assert_eq!(f.observe("t", 1, 5, "b"), Seen::Next);
        assert_eq!(f.observe("t", 0, 11, "a"), Seen::Next, "contiguous");
        assert_eq!(f.observe("t", 0, 20, "a"), Seen::AfterGap { dropped: 1 });
        assert!(f.needs_warm("a"));
        assert!(!f.needs_warm("b"));
        assert_eq!(
            f.observe("t", 1, 3, "b"),
            Seen::Again,
            "a rewind: processed already"
        );
        assert!(!f.needs_warm("b"), "its state stays");
        assert_eq!(f.observe("t", 1, 6, "b"), Seen::Next, "then it goes on");
    }

    #[test]
    fn a_forgotten_sensor_is_warmed_again() {
        let mut f = Fleet::new(DetectorConfig::default(), QcConfig::default());
        f.warm("a", &[]);
        f.observe("t", 0, 1, "a");
        f.forget("a");
        assert!(f.needs_warm("a"));
        assert_eq!(
            f.observe("t", 0, 2, "a"),
            Seen::Next,
            "forgetting is not a gap"
        );
    }

    #[test]
    fn a_warmed_detector_continues_like_one_that_saw_everything() {
        // A day of history, then a stuck-sensor episode that straddles the restart point.
        let history: Vec<Reading> = (0..1500)
            .map(|m| raw("s", m, 10.0 + (m % 7) as f64))
            .chain((1500..1503).map(|m| raw("s", m, 50.0)))
            .collect();
        let live: Vec<Reading> = (1503..1510)
            .map(|m| raw("s", m, 50.0))
            .chain((1510..1520).map(|m| raw("s", m, 10.0 + (m % 7) as f64)))
            .collect();

        let mut whole = Fleet::new(DetectorConfig::default(), QcConfig::default());
        let mut cleaner = Cleaner::new(QcConfig::default());
        for r in &history {
            whole.process(&cleaner.process(r.clone()));
        }
        let expected: Vec<_> = live
            .iter()
            .flat_map(|r| whole.process(&cleaner.process(r.clone())))
            .collect();

        let mut restarted = Fleet::new(DetectorConfig::default(), QcConfig::default());
        let stored: Vec<StoredRaw> = history
            .iter()
            .map(|r| StoredRaw {
                reading: r.clone(),
                flags: Default::default(),
            })
            .collect();
        restarted.warm("s", &stored);
        let mut live_cleaner = cleaner_after(&history);
        let got: Vec<_> = live
            .iter()
            .flat_map(|r| restarted.process(&live_cleaner.process(r.clone())))
            .collect();
        assert_eq!(got, expected);
        assert!(
            got.iter()
                .any(|e| e.kind == airq_detect::AnomalyKind::Flatline),
            "the straddling episode closes after the restart: {got:?}"
        );
    }

    #[test]
    fn state_stays_flat_when_100k_sensors_come_and_go() {
        // As the processor evicts: every sensor touched on its reading, idle ones dropped
        // once a (simulated) minute; a sensor idle for 5 minutes goes.
        // The streaming service's detection: without the neighbours (default.toml).
        let mut streaming = DetectorConfig::default();
        streaming.spatial.enabled = false;
        let mut f = Fleet::new(streaming, QcConfig::default());
        let mut seen = airq_kafka::runtime::IdleTracker::default();
        let mut cleaner = Cleaner::new(QcConfig::default());
        let t0 = std::time::Instant::now();
        let mut peak = 0;
        for minute in 0..100_u64 {
            let at = t0 + std::time::Duration::from_secs(60 * minute);
            for i in 0..1000 {
                let id = format!("s{}", minute * 1000 + i);
                assert_eq!(
                    f.observe("t", 0, (minute * 1000 + i) as i64, &id),
                    Seen::Next
                );
                f.warm(&id, &[]);
                seen.touch(&id, at);
                f.process(&cleaner.process(raw(&id, minute as i64, 12.0)));
                cleaner.forget(&id);
            }
            peak = peak.max(f.sensors());
            for s in seen.take_idle(at, std::time::Duration::from_secs(300)) {
                f.forget(&s);
            }
        }
        assert!((5000..=6000).contains(&peak), "peak {peak} sensors held");
        let later = t0 + std::time::Duration::from_secs(1_000_000);
        for s in seen.take_idle(later, std::time::Duration::from_secs(300)) {
            f.forget(&s);
        }
        assert_eq!(f.sensors(), 0, "all gone once idle");
        assert!(f.needs_warm("s0"), "and warmed again if they come back");
    }

    fn cleaner_after(history: &[Reading]) -> Cleaner {
        let mut c = Cleaner::new(QcConfig::default());
        for r in history {
            c.process(r.clone());
        }
        c
    }
}
