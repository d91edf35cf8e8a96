//! A batch of `processed_data` messages through the detectors: decode and check each
//! message, warm the sensors seen for the first time from their stored history (read in
//! pages of `page_sensors`), hold each reading in its event-time tick, then judge the
//! ticks that closed. A tick's messages stay uncommitted until it is judged and its
//! events and pollution episodes written (`Processor::holding`); a tick that waits
//! `ticks.wait_ms` (`ticks.backlog_wait_ms` for a replay's; a sensor that stopped) is judged
//! without the missing readings (`Processor::due`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use airq_domain::ProcessedReading;
use airq_domain::validate::{ValidationConfig, validate_sensor_id};
use airq_kafka::runtime::{Context, IdleTracker, Outputs, ProcessError, Processor};
use airq_runtime::retry::RetryError;
use airq_store::readings::StoredRaw;
use chrono::{DateTime, Utc};
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sqlx::PgPool;

use crate::config::{TickSettings, WarmSettings};
use crate::fleet::{Fleet, Seen};
use crate::sink::Finding;

/// Dead-letter reason of a `processed_data` message that is not a valid processed reading.
pub const MALFORMED_PROCESSED: &str = "malformed_processed";

/// Running totals, logged every 10 s and on exit.
#[derive(Debug, Default)]
struct Counters {
    events: u64,
    warmed: u64,
    warm_failed: u64,
    history_rows: u64,
    dropped: u64,
    skipped: u64,
    evicted: u64,
}

pub struct DetectorProcessor {
    pub fleet: Fleet,
    pub pool: PgPool,
    pub warm: WarmSettings,
    pub ticks: TickSettings,
    pub validation: ValidationConfig,
    counters: Counters,
    seen: IdleTracker,
    /// The origin of the processing clock of the ticks.
    epoch: Instant,
}

/// A `processed_data` payload as a reading, or why not.
pub fn decode(payload: Option<&[u8]>, v: &ValidationConfig) -> Result<ProcessedReading, String> {
    let r: ProcessedReading =
        serde_json::from_slice(payload.unwrap_or_default()).map_err(|e| e.to_string())?;
    validate_sensor_id(&r.sensor_id, v).map_err(|rej| rej.detail)?;
    Ok(r)
}

impl DetectorProcessor {
    pub fn new(fleet: Fleet, pool: PgPool, warm: WarmSettings, ticks: TickSettings) -> Self {
        Self {
            fleet,
            pool,
            warm,
            ticks,
            validation: ValidationConfig::default(),
            counters: Counters::default(),
            seen: IdleTracker::default(),
            epoch: Instant::now(),
        }
    }

    fn clock_ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// The stored history of each sensor before the given time, by sensor, read in pages.
    /// A history that cannot be read for a reason no retry fixes is logged and skipped:
    /// the sensor then starts cold rather than stopping the stream.
    async fn history(
        &mut self,
        sensors: Vec<(String, DateTime<Utc>)>,
        ctx: &Context,
    ) -> Result<HashMap<String, Vec<StoredRaw>>, ProcessError> {
        let window = chrono::Duration::hours(self.warm.hours);
        let mut by_sensor: HashMap<String, Vec<StoredRaw>> = HashMap::new();
        for page in sensors.chunks(self.warm.page_sensors.max(1)) {
            let pool = &self.pool;
            let read = || airq_store::readings::history(pool, page, window);
            match ctx.retry("reading history", read).await {
                Ok(rows) => {
                    self.counters.history_rows += rows.len() as u64;
                    for row in rows {
                        by_sensor
                            .entry(row.reading.sensor_id.clone())
                            .or_default()
                            .push(row);
                    }
                }
                Err(RetryError::Stopped(_)) => return Err(ProcessError::Stopped),
                Err(RetryError::Permanent(e)) => {
                    tracing::error!(error = %e, sensors = page.len(), "history unreadable; these sensors start cold");
                    self.counters.warm_failed += page.len() as u64;
                }
            }
        }
        Ok(by_sensor)
    }
}

impl Processor for DetectorProcessor {
    type Item = Finding;

    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        ctx: &Context,
    ) -> Result<Outputs<Finding>, ProcessError> {
        let mut out = Outputs::default();
        let seen_at = Instant::now();
        let parsed: Vec<Result<ProcessedReading, String>> = batch
            .iter()
            .map(|m| decode(m.payload(), &self.validation))
            .collect();

        // Sensors without state get their history first, from before their first reading.
        let mut first_seen: Vec<(String, DateTime<Utc>)> = Vec::new();
        for r in parsed.iter().flatten() {
            if self.fleet.needs_warm(&r.sensor_id)
                && !first_seen.iter().any(|(s, _)| *s == r.sensor_id)
            {
                first_seen.push((r.sensor_id.clone(), r.timestamp));
            }
        }
        // Warmed together, tick by tick: their neighbour context is rebuilt with them.
        let live_from = first_seen.iter().map(|(_, t)| *t).min();
        let sensors: Vec<String> = first_seen.iter().map(|(s, _)| s.clone()).collect();
        let histories = self.history(first_seen, ctx).await?;
        let warm: Vec<(&str, &[StoredRaw])> = sensors
            .iter()
            .map(|s| (s.as_str(), histories.get(s).map_or(&[][..], |h| &h[..])))
            .collect();
        self.fleet
            .warm_all(&warm, live_from, self.clock_ms(seen_at));
        self.counters.warmed += warm.len() as u64;

        for (i, (m, r)) in batch.iter().zip(parsed).enumerate() {
            let r = match r {
                Ok(r) => r,
                Err(detail) => {
                    out.reject(i, MALFORMED_PROCESSED, detail);
                    continue;
                }
            };
            match self
                .fleet
                .observe(m.topic(), m.partition(), m.offset(), &r.sensor_id)
            {
                Seen::Again => {
                    self.counters.skipped += 1;
                    continue;
                }
                Seen::AfterGap { dropped } => self.counters.dropped += dropped as u64,
                Seen::Next => {}
            }
            self.seen.touch(&r.sensor_id, seen_at);
            if self.fleet.needs_warm(&r.sensor_id) {
                // Dropped mid-batch by a rebalance: warmed alone.
                let history = self
                    .history(vec![(r.sensor_id.clone(), r.timestamp)], ctx)
                    .await?
                    .remove(&r.sensor_id)
                    .unwrap_or_default();
                self.fleet.warm(&r.sensor_id, &history);
                self.counters.warmed += 1;
            }
            self.fleet.hold(r, m.clone(), self.clock_ms(seen_at));
        }
        // The events of the ticks that closed, each traced to its message: this batch's,
        // or one carried from the batch that brought it.
        let index: HashMap<(i32, i64), usize> = batch
            .iter()
            .enumerate()
            .map(|(i, m)| ((m.partition(), m.offset()), i))
            .collect();
        for (m, e) in self
            .fleet
            .judge_ready(self.clock_ms(seen_at), self.ticks.wait(chrono::Utc::now()))
        {
            let source = match index.get(&(m.partition(), m.offset())) {
                Some(&i) => i,
                None => out.carry(batch.len(), m),
            };
            out.push(source, e);
        }
        self.counters.events += out.items.len() as u64;
        Ok(out)
    }

    fn holding(&self) -> Vec<(String, i32, i64)> {
        self.fleet.holding()
    }

    fn due(&self, now: Instant) -> bool {
        self.fleet
            .is_due(self.clock_ms(now), self.ticks.wait(chrono::Utc::now()))
    }

    fn evict_idle(&mut self, now: Instant, idle: Duration) -> usize {
        let gone = self.seen.take_idle(now, idle);
        gone.iter().for_each(|s| self.fleet.forget(s));
        self.counters.evicted += gone.len() as u64;
        gone.len()
    }

    fn log_progress(&self) {
        tracing::info!(counters = ?self.counters, sensors = self.fleet.sensors(), held = self.fleet.held(), tick_wait = %self.fleet.tick_wait.summary(), tick_wait_recent = %self.fleet.tick_wait.recent_summary(), "detector counters");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_processed_message_must_be_a_reading_with_a_valid_sensor_id() {
        let v = ValidationConfig::default();
        assert!(decode(None, &v).is_err());
        assert!(decode(Some(b"\xff\x00garbage"), &v).is_err());
        assert!(decode(Some(br#"{"sensor_id":"a"}"#), &v).is_err());
        let reading = airq_domain::Reading {
            sensor_id: "a".into(),
            timestamp: "2024-01-15T14:30:00Z".parse().unwrap(),
            location: airq_domain::Location { lat: 1.0, lon: 2.0 },
            measurements: airq_domain::Measurements {
                pm2_5: Some(1.0),
                pm10: Some(2.0),
                no2: Some(3.0),
            },
        };
        let mut r = airq_domain::sensor::Cleaner::default().process(reading);
        assert_eq!(decode(Some(&r.to_json()), &v).unwrap(), r);
        // A NUL byte: PostgreSQL would refuse it in a text column.
        r.sensor_id = "a\u{0}b".into();
        let err = decode(Some(&r.to_json()), &v).unwrap_err();
        assert!(err.contains("sensor_id"), "{err}");
    }
}
