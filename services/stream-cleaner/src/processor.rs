//! A batch of `raw_data` messages through the pure pipeline.

use std::sync::Arc;
use std::time::Duration;

use airq_domain::ProcessedReading;
use airq_domain::sensor::Cleaner;
use airq_domain::validate::ValidationConfig;
use airq_kafka::runtime::{Context, Outputs, ProcessError, Processor};
use chrono::Utc;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;

use crate::counters::Counters;
use crate::pipeline::{Outcome, handle};

/// The cleaner's per-sensor state and what it counts.
pub struct CleanerProcessor {
    pub cleaner: Cleaner,
    pub validation: ValidationConfig,
    pub counters: Arc<Counters>,
}

impl CleanerProcessor {
    /// Every message of a batch, in order: readings to write, the rest rejected.
    pub fn process_batch(&mut self, batch: &[OwnedMessage]) -> Outputs<ProcessedReading> {
        let now = Utc::now();
        let mut out = Outputs::default();
        for (i, msg) in batch.iter().enumerate() {
            match handle(msg.payload(), now, &self.validation, &mut self.cleaner) {
                Outcome::Reading(r) => {
                    self.counters.count(&r);
                    out.push(i, *r);
                }
                Outcome::Rejected(rej) => out.reject(i, rej.reason.as_str(), rej.detail),
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
        Ok(self.process_batch(batch))
    }

    fn evict_idle(&mut self, idle: Duration) -> usize {
        let idle = chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::MAX);
        self.cleaner.evict_idle(idle)
    }

    fn log_progress(&self) {
        self.counters.log_summary(self.cleaner.sensors());
    }
}
