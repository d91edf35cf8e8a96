//! Wiring: database, topics, clients, and the cleaner's processor and sink on the consumer
//! runtime (`airq_kafka::runtime`).

use std::sync::Arc;

use airq_domain::sensor::Cleaner;
use airq_kafka::runtime::{Runtime, consumer_factory};
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::SERVICE;
use crate::config::Settings;
use crate::counters::Counters;
use crate::processor::CleanerProcessor;
use crate::sink::ReadingSink;

/// Runs the cleaner until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = settings.database.connect()?;
    airq_store::migrate_with_retry(&pool, &shutdown).await?;
    let k = &settings.kafka;
    airq_kafka::admin::ensure_topics(
        &k.brokers,
        &[&k.topics.raw, &k.topics.processed, &k.topics.dead_letter],
        k.partitions,
    )
    .await
    .context("creating topics")?;
    let factory = consumer_factory(&k.brokers, &settings.cleaner.group_id, &k.topics.raw);
    let producer = airq_kafka::client::publisher(&k.brokers, settings.cleaner.producer_linger_ms)?;
    let counters = Arc::new(Counters::default());
    let processor = CleanerProcessor::new(
        Cleaner::new(settings.qc.clone()),
        settings.validation.clone(),
        counters.clone(),
    );
    let sink = ReadingSink {
        pool,
        producer: producer.clone(),
        processed_topic: k.topics.processed.clone(),
        region_cell_deg: settings.processed.region_cell_deg,
        write_parallelism: settings.database.max_connections as usize,
        counters,
    };
    tracing::info!(group = %settings.cleaner.group_id, topic = %k.topics.raw, "stream-cleaner started");
    Runtime::new(
        SERVICE,
        settings.cleaner.clone(),
        factory,
        producer,
        k.topics.dead_letter.clone(),
        processor,
        sink,
        shutdown,
    )?
    .run()
    .await?;
    Ok(())
}
