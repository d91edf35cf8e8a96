//! Wiring: MongoDB, topics, clients, the archive's processor and sink on the consumer runtime.

use std::sync::Arc;
use std::time::Duration;

use airq_kafka::runtime::{Runtime, consumer_factory};
use anyhow::Context;
use mongodb::bson::Document;
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::SERVICE;
use crate::config::{MongoSettings, Settings};
use crate::processor::ArchiveProcessor;
use crate::sink::{ArchiveSink, Counters, ensure_indexes};

/// The archive collection (the URL is never logged).
pub async fn collection(m: &MongoSettings) -> anyhow::Result<Collection<Document>> {
    let mut opts = ClientOptions::parse(m.url.expose_secret())
        .await
        .context("parsing mongodb.url")?;
    opts.app_name = Some(SERVICE.to_owned());
    opts.server_selection_timeout = Some(Duration::from_millis(m.server_selection_timeout_ms));
    let client = Client::with_options(opts).context("creating the MongoDB client")?;
    Ok(client.database(&m.database).collection(&m.collection))
}

/// Archives `raw_data` until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let coll = collection(&settings.mongodb).await?;
    ensure_indexes(&coll)
        .await
        .context("creating the archive's indexes")?;
    let k = &settings.kafka;
    airq_kafka::admin::ensure_topics(
        &k.brokers,
        &[&k.topics.raw, &k.topics.dead_letter],
        k.partitions,
    )
    .await
    .context("creating topics")?;
    let factory = consumer_factory(&k.brokers, &settings.archiver.group_id, &k.topics.raw);
    let producer = airq_kafka::client::publisher(&k.brokers, settings.archiver.producer_linger_ms)?;
    let counters = Arc::new(Counters::default());
    let sink = ArchiveSink {
        collection: coll,
        counters: counters.clone(),
    };
    let processor = ArchiveProcessor {
        validation: settings.validation.clone(),
    };
    tracing::info!(group = %settings.archiver.group_id, topic = %k.topics.raw,
        collection = %settings.mongodb.collection, "raw-archive started");
    Runtime::new(
        SERVICE,
        settings.archiver.clone(),
        factory,
        producer,
        k.topics.dead_letter.clone(),
        processor,
        sink,
        shutdown,
    )?
    .run()
    .await?;
    let c = &counters;
    tracing::info!(
        archived = c.archived.load(std::sync::atomic::Ordering::Relaxed),
        already_archived = c
            .already_archived
            .load(std::sync::atomic::Ordering::Relaxed),
        "raw-archive stopped"
    );
    Ok(())
}
