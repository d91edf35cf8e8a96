//! The consume -> process -> write -> store-offset loop.
//!
//! Messages are gathered into batches. While batch N is being written (PostgreSQL,
//! `processed_data`, dead-letter topic), batch N+1 is consumed and processed. The
//! offsets of batch N are stored only after all its outputs are acknowledged, so a crash
//! at any point redelivers, never loses. Writes are idempotent (see `airq_store`).

use std::sync::Arc;
use std::time::Duration;

use airq_domain::ProcessedReading;
use airq_domain::sensor::Cleaner;
use airq_kafka::dead_letter::{Provenance, headers};
use airq_kafka::offsets::OffsetTracker;
use anyhow::Context;
use chrono::Utc;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::counters::Counters;
use crate::pipeline::{Outcome, handle};

pub const SERVICE: &str = "stream-cleaner";

/// A record for a topic, owned so that it can be re-sent on retry.
struct OutRecord {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Option<OwnedHeaders>,
}

/// Outputs of one batch.
#[derive(Default)]
struct Batch {
    to_store: Vec<ProcessedReading>,
    processed: Vec<OutRecord>,
    dead: Vec<OutRecord>,
    offsets: OffsetTracker,
    messages: usize,
}

/// What the flush task needs, shared.
struct Sinks {
    pool: PgPool,
    producer: FutureProducer,
    processed_topic: String,
    dead_letter_topic: String,
    retry_initial: Duration,
    retry_max: Duration,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
}

pub struct Worker {
    consumer: StreamConsumer,
    sinks: Arc<Sinks>,
    settings: Settings,
    cleaner: Cleaner,
    counters: Arc<Counters>,
}

impl Worker {
    pub fn new(settings: Settings, consumer: StreamConsumer, producer: FutureProducer, pool: PgPool, counters: Arc<Counters>, shutdown: CancellationToken) -> Self {
        let sinks = Arc::new(Sinks {
            pool,
            producer,
            processed_topic: settings.kafka.topics.processed.clone(),
            dead_letter_topic: settings.kafka.topics.dead_letter.clone(),
            retry_initial: Duration::from_millis(settings.cleaner.retry_initial_ms),
            retry_max: Duration::from_millis(settings.cleaner.retry_max_ms),
            counters: counters.clone(),
            shutdown,
        });
        let cleaner = Cleaner::new(settings.qc.clone());
        Self { consumer, sinks, settings, cleaner, counters }
    }

    /// Runs until `shutdown`; the batch in flight is written and its offsets committed.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let shutdown = self.sinks.shutdown.clone();
        let mut in_flight: Option<(JoinHandle<anyhow::Result<()>>, OffsetTracker)> = None;
        loop {
            let batch = self.collect(&shutdown).await?;
            if let Some((task, offsets)) = in_flight.take() {
                self.finish(task, offsets).await?;
            }
            if batch.messages > 0 {
                let offsets = batch.offsets.clone();
                let sinks = self.sinks.clone();
                in_flight = Some((tokio::spawn(write(sinks, batch)), offsets));
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
        if let Some((task, offsets)) = in_flight.take() {
            let drain = Duration::from_secs(self.settings.cleaner.drain_timeout_secs);
            match tokio::time::timeout(drain, self.finish(task, offsets)).await {
                Ok(r) => r?,
                Err(_) => tracing::warn!("drain timed out: the last batch will be redelivered"),
            }
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last auto-commit is not an error worth failing on.
            tracing::debug!(error = %e, "final commit");
        }
        self.counters.log_summary();
        Ok(())
    }

    async fn finish(&self, task: JoinHandle<anyhow::Result<()>>, offsets: OffsetTracker) -> anyhow::Result<()> {
        match task.await.context("batch writer panicked")? {
            Ok(()) => {
                // Fails for partitions revoked meanwhile: their new owner gets them again.
                if let Err(e) = self.consumer.store_offsets(&offsets.to_store()) {
                    tracing::warn!(error = %e, "offsets not stored (partition revoked?); they will be redelivered");
                }
                Counters::add(&self.counters.batches, 1);
                Ok(())
            }
            // Only a shutdown interrupts a write: its offsets stay unstored, it will be redelivered.
            Err(e) if self.sinks.shutdown.is_cancelled() => {
                tracing::info!(error = %e, "batch abandoned on shutdown");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Gathers up to `batch_size` messages or until `batch_timeout_ms` after the first one.
    async fn collect(&mut self, shutdown: &CancellationToken) -> anyhow::Result<Batch> {
        let cfg = &self.settings.cleaner;
        let mut batch = Batch::default();
        let now = Utc::now();
        let mut deadline = None;
        while batch.messages < cfg.batch_size {
            let timeout = match deadline {
                Some(d) => tokio::time::sleep_until(d),
                None => tokio::time::sleep(Duration::from_secs(3600)),
            };
            let msg = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = timeout => break,
                m = self.consumer.recv() => m,
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    Counters::add(&self.counters.retries, 1);
                    tokio::time::sleep(Duration::from_millis(cfg.retry_initial_ms)).await;
                    continue;
                }
            };
            if deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + Duration::from_millis(cfg.batch_timeout_ms));
            }
            batch.messages += 1;
            Counters::add(&self.counters.received, 1);
            batch.offsets.observe(msg.topic(), msg.partition(), msg.offset());
            let key = msg.key().map(<[u8]>::to_vec);
            match handle(msg.payload(), now, &self.settings.validation, &mut self.cleaner) {
                Outcome::Reading(r) => {
                    Counters::add(&self.counters.readings, 1);
                    if !r.flags.is_empty() {
                        Counters::add(&self.counters.flagged, 1);
                        r.flags.iter().for_each(|f| self.counters.flag(f));
                    }
                    batch.processed.push(OutRecord { key, payload: r.to_json(), headers: None });
                    if Outcome::stored(&r) {
                        batch.to_store.push(*r);
                    } else {
                        Counters::add(&self.counters.duplicates, 1);
                    }
                }
                Outcome::Rejected(rej) => {
                    tracing::debug!(reason = rej.reason.as_str(), detail = %rej.detail, partition = msg.partition(), offset = msg.offset(), "dead-lettered");
                    Counters::add(&self.counters.dead_lettered, 1);
                    let source = Provenance { topic: msg.topic(), partition: msg.partition(), offset: msg.offset() };
                    let h = headers(&source, SERVICE, rej.reason.as_str(), &rej.detail);
                    batch.dead.push(OutRecord { key, payload: msg.payload().unwrap_or_default().to_vec(), headers: Some(h) });
                }
            }
        }
        Ok(batch)
    }
}

/// Writes one batch: PostgreSQL first, then both topics; retries until done or shutdown.
async fn write(sinks: Arc<Sinks>, batch: Batch) -> anyhow::Result<()> {
    let mut backoff = sinks.retry_initial;
    loop {
        match airq_store::readings::insert_readings(&sinks.pool, &batch.to_store).await {
            Ok(n) => {
                Counters::add(&sinks.counters.stored, n);
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, retryable = e.is_retryable(), rows = batch.to_store.len(), backoff_ms = backoff.as_millis() as u64, "database write failed; retrying");
                Counters::add(&sinks.counters.retries, 1);
                tokio::select! {
                    _ = sinks.shutdown.cancelled() => anyhow::bail!("shutdown during database retry"),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(sinks.retry_max);
            }
        }
    }
    loop {
        match produce_all(&sinks, &batch).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "publishing failed; retrying the batch's messages");
                Counters::add(&sinks.counters.retries, 1);
                tokio::select! {
                    _ = sinks.shutdown.cancelled() => anyhow::bail!("shutdown during publish retry"),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(sinks.retry_max);
            }
        }
    }
}

async fn produce_all(sinks: &Sinks, batch: &Batch) -> anyhow::Result<()> {
    let records = batch
        .processed
        .iter()
        .map(|r| (&sinks.processed_topic, r))
        .chain(batch.dead.iter().map(|r| (&sinks.dead_letter_topic, r)));
    let mut deliveries = Vec::with_capacity(batch.processed.len() + batch.dead.len());
    for (topic, r) in records {
        let mut rec = FutureRecord::<[u8], [u8]>::to(topic).payload(&r.payload);
        if let Some(k) = &r.key {
            rec = rec.key(k);
        }
        if let Some(h) = &r.headers {
            rec = rec.headers(h.clone());
        }
        loop {
            match sinks.producer.send_result(rec) {
                Ok(f) => {
                    deliveries.push(f);
                    break;
                }
                Err((e, back)) => {
                    if !matches!(e, rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)) {
                        return Err(e).context("queueing an output message");
                    }
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    for d in deliveries {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e).context("delivering an output message"),
            Err(_) => anyhow::bail!("producer dropped a delivery"),
        }
    }
    Ok(())
}
