//! A batch of `raw_data` messages through the pure pipeline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use airq_domain::ProcessedReading;
use airq_domain::sensor::Cleaner;
use airq_domain::validate::ValidationConfig;
use airq_kafka::runtime::{Context, IdleTracker, Outputs, ProcessError, Processor};
use chrono::Utc;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;

use crate::counters::Counters;
use crate::pipeline::handle;

/// The cleaner's per-sensor state and what it counts.
pub struct CleanerProcessor {
    cleaner: Cleaner,
    validation: ValidationConfig,
    counters: Arc<Counters>,
    seen: IdleTracker,
}

impl CleanerProcessor {
    pub fn new(cleaner: Cleaner, validation: ValidationConfig, counters: Arc<Counters>) -> Self {
        Self {
            cleaner,
            validation,
            counters,
            seen: IdleTracker::default(),
        }
    }

    /// Sensors with cleaning state.
    pub fn sensors(&self) -> usize {
        self.cleaner.sensors()
    }

    /// Every message of a batch, in order: readings to write, the rest rejected. `seen_at`
    /// is when the batch arrived (for idle eviction).
    pub fn process_batch(
        &mut self,
        batch: &[OwnedMessage],
        seen_at: Instant,
    ) -> Outputs<ProcessedReading> {
        let now = Utc::now();
        let mut out = Outputs::default();
        for (i, msg) in batch.iter().enumerate() {
            match handle(msg.payload(), now, &self.validation, &mut self.cleaner) {
                Ok(r) => {
                    self.counters.count(&r);
                    self.seen.touch(&r.sensor_id, seen_at);
                    out.push(i, r);
                }
                Err(rej) => out.reject(i, rej.reason.as_str(), rej.detail),
            }
        }
        out
    }
}

impl Processor for CleanerProcessor {
    type Item = ProcessedReading;

    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        _ctx: &Context,
    ) -> Result<Outputs<ProcessedReading>, ProcessError> {
        Ok(self.process_batch(batch, Instant::now()))
    }

    fn evict_idle(&mut self, now: Instant, idle: Duration) -> usize {
        let gone = self.seen.take_idle(now, idle);
        gone.iter().for_each(|s| self.cleaner.forget(s));
        gone.len()
    }

    fn log_progress(&self) {
        self.counters.log_summary(self.cleaner.sensors());
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;

    use super::*;

    fn message(offset: i64, payload: Vec<u8>) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload),
            None,
            "raw".into(),
            Timestamp::NotAvailable,
            0,
            offset,
            None,
        )
    }

    #[test]
    fn state_stays_flat_when_100k_sensors_come_and_go() {
        let mut p = CleanerProcessor::new(
            Cleaner::default(),
            ValidationConfig::default(),
            Default::default(),
        );
        let t0 = Instant::now();
        let mut peak = 0;
        for chunk in 0..100 {
            let batch: Vec<OwnedMessage> = (0..1000)
                .map(|i| {
                    let id = chunk * 1000 + i;
                    let json = format!(
                        r#"{{"sensor_id":"s{id}","timestamp":"2024-01-15T14:30:00Z","location":{{"lat":1,"lon":2}},"measurements":{{"pm2_5":1,"pm10":2,"no2":3}}}}"#
                    );
                    message(id, json.into_bytes())
                })
                .collect();
            // Each batch a minute after the previous; a sensor idle for 5 minutes is dropped.
            let at = t0 + Duration::from_secs(60 * chunk as u64);
            let out = p.process_batch(&batch, at);
            assert_eq!(out.items.len(), 1000);
            peak = peak.max(p.sensors());
            p.evict_idle(at, Duration::from_secs(300));
        }
        assert!((5000..=6000).contains(&peak), "peak {peak} sensors held");
        let later = t0 + Duration::from_secs(1_000_000);
        assert_eq!(p.evict_idle(later, Duration::from_secs(300)), 5000);
        assert_eq!(p.sensors(), 0, "all gone once idle");
    }
}
