//! The consume -> process -> write -> store-offset loop.
//!
//! Messages are gathered into batches. While up to `max_batches_in_flight` batches are
//! being written (PostgreSQL, `processed_data`, dead-letter topic), the next one is
//! consumed and processed. A batch's offsets are stored only after all its outputs are
//! acknowledged and all older batches' offsets are stored, so a crash at any point
//! redelivers, never loses. Writes are idempotent (see `airq_store`).

use std::collections::VecDeque;
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

/// A dead-letter record, owned so that it can be re-sent on retry.
struct OutRecord {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: OwnedHeaders,
}

/// Outputs of one batch. Readings are serialized by the writer task, off the consume loop.
#[derive(Default)]
struct Batch {
    /// Every reading, in order, with whether it goes to PostgreSQL.
    readings: Vec<(ProcessedReading, bool)>,
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
    write_parallelism: usize,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
}

pub struct Worker {
    consumer: StreamConsumer,
    sinks: Arc<Sinks>,
    settings: Settings,
    cleaner: Cleaner,
    counters: Arc<Counters>,
    /// Set once a batch was abandoned on shutdown: no later offset may be stored then.
    abandoned: bool,
}

impl Worker {
    pub fn new(
        settings: Settings,
        consumer: StreamConsumer,
        producer: FutureProducer,
        pool: PgPool,
        counters: Arc<Counters>,
        shutdown: CancellationToken,
    ) -> Self {
        let sinks = Arc::new(Sinks {
            pool,
            producer,
            processed_topic: settings.kafka.topics.processed.clone(),
            dead_letter_topic: settings.kafka.topics.dead_letter.clone(),
            retry_initial: Duration::from_millis(settings.cleaner.retry_initial_ms),
            retry_max: Duration::from_millis(settings.cleaner.retry_max_ms),
            write_parallelism: settings.database.max_connections as usize,
            counters: counters.clone(),
            shutdown,
        });
        let cleaner = Cleaner::new(settings.qc.clone());
        Self {
            consumer,
            sinks,
            settings,
            cleaner,
            counters,
            abandoned: false,
        }
    }

    /// Runs until `shutdown`; the batches in flight are written and their offsets committed.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let shutdown = self.sinks.shutdown.clone();
        // Batches being written, oldest first: offsets are stored strictly in this order.
        let mut in_flight: VecDeque<(JoinHandle<anyhow::Result<()>>, OffsetTracker)> =
            VecDeque::new();
        let depth = self.settings.cleaner.max_batches_in_flight.max(1);
        loop {
            let collect_started = std::time::Instant::now();
            let batch = self.collect(&shutdown).await?;
            let collected = collect_started.elapsed();
            while in_flight.len() >= depth
                || in_flight.front().is_some_and(|(t, _)| t.is_finished())
            {
                let Some((task, offsets)) = in_flight.pop_front() else {
                    break;
                };
                self.finish(task, offsets).await?;
            }
            tracing::trace!(
                messages = batch.messages,
                collect_ms = collected.as_millis() as u64,
                wait_ms = (collect_started.elapsed() - collected).as_millis() as u64,
                "batch collected"
            );
            if batch.messages > 0 {
                let offsets = batch.offsets.clone();
                in_flight.push_back((tokio::spawn(write(self.sinks.clone(), batch)), offsets));
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
        let drain = Duration::from_secs(self.settings.cleaner.drain_timeout_secs);
        let drained = tokio::time::timeout(drain, async {
            while let Some((task, offsets)) = in_flight.pop_front() {
                self.finish(task, offsets).await?;
            }
            anyhow::Ok(())
        })
        .await;
        match drained {
            Ok(r) => r?,
            Err(_) => tracing::warn!("drain timed out: the last batches will be redelivered"),
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last auto-commit is not an error worth failing on.
            tracing::debug!(error = %e, "final commit");
        }
        self.counters.log_summary();
        Ok(())
    }

    /// Waits for a batch's writer; stores its offsets if it completed. Once a batch is
    /// abandoned (shutdown mid-retry), no later batch stores its offsets, or the abandoned
    /// one would be skipped instead of redelivered.
    async fn finish(
        &mut self,
        task: JoinHandle<anyhow::Result<()>>,
        offsets: OffsetTracker,
    ) -> anyhow::Result<()> {
        match task.await.context("batch writer panicked")? {
            Ok(()) if self.abandoned => Ok(()),
            Ok(()) => {
                // Fails for partitions revoked meanwhile: their new owner gets them again.
                if let Err(e) = self.consumer.store_offsets(&offsets.to_store()) {
                    tracing::warn!(error = %e, "offsets not stored (partition revoked?); they will be redelivered");
                }
                Counters::add(&self.counters.batches, 1);
                Ok(())
            }
            Err(e) if self.sinks.shutdown.is_cancelled() => {
                tracing::info!(error = %e, "batch abandoned on shutdown; it will be redelivered");
                self.abandoned = true;
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
        // One timer per batch, armed by the first message (a timer per message costs ~10 %).
        let timeout = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(timeout);
        let mut armed = false;
        while batch.messages < cfg.batch_size {
            let msg = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = &mut timeout => break,
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
            if !armed {
                armed = true;
                timeout.as_mut().reset(
                    tokio::time::Instant::now() + Duration::from_millis(cfg.batch_timeout_ms),
                );
            }
            batch.messages += 1;
            Counters::add(&self.counters.received, 1);
            batch
                .offsets
                .observe(msg.topic(), msg.partition(), msg.offset());
            match handle(
                msg.payload(),
                now,
                &self.settings.validation,
                &mut self.cleaner,
            ) {
                Outcome::Reading(r) => {
                    Counters::add(&self.counters.readings, 1);
                    if !r.flags.is_empty() {
                        Counters::add(&self.counters.flagged, 1);
                        r.flags.iter().for_each(|f| self.counters.flag(f));
                    }
                    let stored = Outcome::stored(&r);
                    if !stored {
                        Counters::add(&self.counters.duplicates, 1);
                    }
                    batch.readings.push((*r, stored));
                }
                Outcome::Rejected(rej) => {
                    tracing::debug!(reason = rej.reason.as_str(), detail = %rej.detail, partition = msg.partition(), offset = msg.offset(), "dead-lettered");
                    Counters::add(&self.counters.dead_lettered, 1);
                    let source = Provenance {
                        topic: msg.topic(),
                        partition: msg.partition(),
                        offset: msg.offset(),
                    };
                    let h = headers(&source, SERVICE, rej.reason.as_str(), &rej.detail);
                    let key = msg.key().map(<[u8]>::to_vec);
                    batch.dead.push(OutRecord {
                        key,
                        payload: msg.payload().unwrap_or_default().to_vec(),
                        headers: h,
                    });
                }
            }
        }
        Ok(batch)
    }
}

/// Writes one batch: PostgreSQL first, then both topics; retries until done or shutdown.
async fn write(sinks: Arc<Sinks>, batch: Batch) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut backoff = sinks.retry_initial;
    // Processed messages keyed by sensor id, like raw_data, so one partition holds a sensor.
    let processed: Vec<(String, Vec<u8>)> = batch
        .readings
        .iter()
        .map(|(r, _)| (r.sensor_id.clone(), r.to_json()))
        .collect();
    let to_store = batch
        .readings
        .into_iter()
        .filter_map(|(r, stored)| stored.then_some(r));
    let chunks = shard_by_sensor(to_store, sinks.write_parallelism);
    let rows: usize = chunks.iter().map(Vec::len).sum();
    loop {
        let writes = chunks
            .iter()
            .map(|c| airq_store::readings::insert_readings(&sinks.pool, c));
        match futures::future::try_join_all(writes)
            .await
            .map(|n| n.iter().sum::<u64>())
        {
            Ok(n) => {
                Counters::add(&sinks.counters.stored, n);
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, retryable = e.is_retryable(), rows, backoff_ms = backoff.as_millis() as u64, "database write failed; retrying");
                Counters::add(&sinks.counters.retries, 1);
                tokio::select! {
                    _ = sinks.shutdown.cancelled() => anyhow::bail!("shutdown during database retry"),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(sinks.retry_max);
            }
        }
    }
    let stored_at = started.elapsed();
    loop {
        match produce_all(&sinks, &processed, &batch.dead).await {
            Ok(()) => {
                tracing::debug!(
                    messages = batch.messages,
                    db_ms = stored_at.as_millis() as u64,
                    total_ms = started.elapsed().as_millis() as u64,
                    "batch written"
                );
                return Ok(());
            }
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

/// Splits a batch into `n` shards by sensor: concurrent inserts never race on one key.
fn shard_by_sensor(
    readings: impl Iterator<Item = ProcessedReading>,
    n: usize,
) -> Vec<Vec<ProcessedReading>> {
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

async fn produce_all(
    sinks: &Sinks,
    processed: &[(String, Vec<u8>)],
    dead: &[OutRecord],
) -> anyhow::Result<()> {
    // Collected: a lazy iterator of borrowed records does not make a `Send` future.
    let records: Vec<FutureRecord<[u8], [u8]>> = processed
        .iter()
        .map(|(key, payload)| {
            FutureRecord::<[u8], [u8]>::to(&sinks.processed_topic)
                .key(key.as_bytes())
                .payload(payload)
        })
        .chain(dead.iter().map(|r| {
            let rec = FutureRecord::<[u8], [u8]>::to(&sinks.dead_letter_topic)
                .payload(&r.payload)
                .headers(r.headers.clone());
            match &r.key {
                Some(k) => rec.key(k),
                None => rec,
            }
        }))
        .collect();
    airq_kafka::publish::send_all(&sinks.producer, records)
        .await
        .context("publishing the batch")
}
