//! Wiring: database, topics, clients, worker, periodic counters.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::counters::Counters;
use crate::worker::Worker;

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
    let consumer =
        airq_kafka::client::consumer(&k.brokers, &settings.cleaner.group_id, &[&k.topics.raw])?;
    let producer = airq_kafka::client::producer(&k.brokers, settings.cleaner.producer_linger_ms)?;
    let counters = Arc::new(Counters::default());
    let ticker = {
        let (counters, shutdown) = (counters.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(10));
            every.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = every.tick() => counters.log_summary(),
                }
            }
        })
    };
    tracing::info!(group = %settings.cleaner.group_id, topic = %k.topics.raw, "stream-cleaner started");
    let result = Worker::new(
        settings,
        consumer,
        producer,
        pool,
        counters,
        shutdown.clone(),
    )
    .run()
    .await;
    shutdown.cancel();
    let _ = ticker.await;
    result
}
