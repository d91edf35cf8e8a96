//! Wiring: database, topics, clients, worker.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::worker::Worker;

/// Runs the detector until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = settings.database.connect()?;
    airq_store::migrate_with_retry(&pool, &shutdown)
        .await
        .context("applying migrations")?;
    let k = &settings.kafka;
    airq_kafka::admin::ensure_topics(
        &k.brokers,
        &[
            &k.topics.processed,
            &k.topics.anomalies,
            &k.topics.dead_letter,
        ],
        k.partitions,
    )
    .await
    .context("creating topics")?;
    let consumer = airq_kafka::client::consumer(
        &k.brokers,
        &settings.detector.group_id,
        &[&k.topics.processed],
    )?;
    // Anomalies are rare and latency matters: no linger.
    let producer = airq_kafka::client::producer(&k.brokers, 0)?;
    tracing::info!(group = %settings.detector.group_id, topic = %k.topics.processed, "anomaly-detector started");
    Worker::new(settings, consumer, producer, pool, shutdown)
        .run()
        .await
}
