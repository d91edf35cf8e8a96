//! An archived range back to `raw_data`, in reading-time order, each payload exactly as it
//! was received (the cleaner then applies today's rules; its sinks are idempotent).

use airq_kafka::publish::{Outgoing, Publisher};
use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::{Document, doc};

use crate::document::{payload_bytes, replay_filter, replay_key};

/// What to replay.
#[derive(Debug, Clone)]
pub struct Range {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub sensor: Option<String>,
    pub valid_only: bool,
}

/// Publishes the range's documents to `topic`; returns how many.
pub async fn replay(
    coll: &Collection<Document>,
    producer: &Publisher,
    topic: &str,
    range: &Range,
) -> anyhow::Result<u64> {
    let filter = replay_filter(
        range.from,
        range.to,
        range.sensor.as_deref(),
        range.valid_only,
    );
    let mut cursor = coll
        .find(filter)
        .sort(doc! { "ts": 1, "_id": 1 })
        .await
        .context("querying the archive")?;
    let (mut batch, mut sent) = (Vec::with_capacity(CHUNK), 0u64);
    while let Some(d) = cursor.try_next().await.context("reading the archive")? {
        if let Some(p) = payload_bytes(&d) {
            batch.push((replay_key(&d), p));
        }
        if batch.len() == CHUNK {
            sent += publish(producer, topic, &batch).await?;
            batch.clear();
        }
    }
    sent += publish(producer, topic, &batch).await?;
    Ok(sent)
}

const CHUNK: usize = 5000;

async fn publish(
    producer: &Publisher,
    topic: &str,
    batch: &[(Option<Vec<u8>>, Vec<u8>)],
) -> anyhow::Result<u64> {
    let messages: Vec<_> = batch
        .iter()
        .map(|(k, p)| Outgoing::new(topic, k.as_deref(), p))
        .collect();
    airq_kafka::publish::send_all(producer, messages)
        .await
        .context("publishing to raw_data")?;
    Ok(batch.len() as u64)
}
