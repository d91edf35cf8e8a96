//! Wiring: database, topics, clients, and the detector's processor and sink on the
//! consumer runtime (`airq_kafka::runtime`).

use airq_kafka::runtime::{Runtime, consumer_factory};
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::SERVICE;
use crate::config::Settings;
use crate::fleet::Fleet;
use crate::processor::DetectorProcessor;
use crate::sink::EventSink;

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
    let factory = consumer_factory(&k.brokers, &settings.detector.group_id, &k.topics.processed);
    let producer = airq_kafka::client::publisher(&k.brokers, settings.detector.producer_linger_ms)?;
    let fleet = Fleet::new(settings.detect.clone(), settings.qc.clone());
    let processor = DetectorProcessor::new(
        fleet,
        pool.clone(),
        settings.warm.clone(),
        settings.ticks.clone(),
    );
    let sink = EventSink {
        pool,
        producer: producer.clone(),
        topic: k.topics.anomalies.clone(),
    };
    tracing::info!(group = %settings.detector.group_id, topic = %k.topics.processed, "anomaly-detector started");
    Runtime::new(
        SERVICE,
        settings.detector.clone(),
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
