//! Cleaned readings into PostgreSQL (insert-if-absent on `(sensor_id, ts)`, sharded by
//! sensor over concurrent inserts) and, at the same time, onto `processed_data`, keyed by the
//! reading's region (`Location::region_key`): every sensor of a region lands on one
//! partition, so the detector instance that owns it sees all of a sensor's neighbours, and
//! each sensor's readings stay in order.

use std::sync::Arc;

use airq_domain::ProcessedReading;
use airq_kafka::publish::{Outgoing, Publisher};
use airq_kafka::runtime::{Sink, SinkError};
use airq_store::StoreError;
use sqlx::PgPool;

use crate::counters::Counters;
use crate::pipeline::stored;

pub struct ReadingSink {
    pub pool: PgPool,
    pub producer: Publisher,
    pub processed_topic: String,
    /// Grid cell of the region key in degrees; 0 keys the whole fleet as one region.
    pub region_cell_deg: f64,
    pub write_parallelism: usize,
    pub counters: Arc<Counters>,
}

impl Sink for ReadingSink {
    type Item = ProcessedReading;

    async fn write(&self, readings: &[ProcessedReading]) -> Result<(), SinkError> {
        // Duplicates are published (flagged) but PostgreSQL already holds them.
        let to_store = readings.iter().filter(|r| stored(r));
        let shards = shard_by_sensor(to_store, self.write_parallelism);
        let writes = shards
            .iter()
            .map(|s| airq_store::readings::insert_readings(&self.pool, s));
        let inserted: u64 = futures::future::try_join_all(writes)
            .await
            .map_err(store_error)?
            .iter()
            .sum();
        Counters::add(&self.counters.stored, inserted);
        Ok(())
    }

    /// `processed_data`, in consumption order: each sensor's readings stay in order.
    async fn publish(&self, readings: &[ProcessedReading]) -> Result<(), SinkError> {
        // The batch's messages in one buffer (librdkafka copies each payload it queues): one
        // allocation a batch instead of one a message.
        let mut payloads = Vec::with_capacity(readings.len() * ProcessedReading::JSON_CAPACITY);
        let mut spans = Vec::with_capacity(readings.len());
        for r in readings {
            let start = payloads.len();
            r.write_json(&mut payloads);
            spans.push(start..payloads.len());
        }
        let keys: Vec<_> = readings
            .iter()
            .map(|r| r.location.region_key(self.region_cell_deg))
            .collect();
        let messages: Vec<_> = keys
            .iter()
            .zip(spans)
            .map(|(k, span)| {
                Outgoing::new(&self.processed_topic, Some(k.as_bytes()), &payloads[span])
            })
            .collect();
        airq_kafka::publish::send_all(&self.producer, messages).await?;
        Ok(())
    }
}

fn store_error(e: StoreError) -> SinkError {
    if e.is_retryable() {
        SinkError::Transient(Box::new(e))
    } else {
        SinkError::Permanent(Box::new(e))
    }
}

/// Splits readings into at most `n` shards by sensor: concurrent inserts never race on one key.
fn shard_by_sensor<'a>(
    readings: impl Iterator<Item = &'a ProcessedReading>,
    n: usize,
) -> Vec<Vec<&'a ProcessedReading>> {
    use std::hash::{Hash, Hasher};
    let n = n.max(1);
    let mut shards = vec![Vec::new(); n];
    for r in readings {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        r.sensor_id.hash(&mut h);
        shards[(h.finish() % n as u64) as usize].push(r);
    }
    shards.retain(|s| !s.is_empty());
    shards
}
