//! The consume -> detect -> publish -> store -> store-offset loop.
//!
//! One batch at a time (small batches: latency matters more than throughput here). A
//! batch's events are published to `anomalies`, then upserted into PostgreSQL, then the
//! batch's offsets are stored: a crash anywhere redelivers and never loses. Events are
//! deterministic, so a redelivered batch yields the same events; the ones PostgreSQL
//! already holds (published before the crash) are not published again.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use airq_detect::{AnomalyEvent, Status};
use airq_domain::ProcessedReading;
use airq_kafka::dead_letter::{Provenance, headers};
use airq_kafka::offsets::OffsetTracker;
use airq_store::readings::StoredRaw;
use anyhow::Context;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::fleet::Fleet;

pub const SERVICE: &str = "anomaly-detector";

/// Running totals, logged every 10 s and on exit.
#[derive(Debug, Default)]
struct Counters {
    received: u64,
    events: u64,
    republish_skipped: u64,
    dead_lettered: u64,
    warmed: u64,
    history_rows: u64,
    dropped: u64,
}

/// A message that is not a processed reading, for the dead-letter topic.
struct Dead {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: OwnedHeaders,
}

pub struct Worker {
    settings: Settings,
    consumer: StreamConsumer,
    producer: FutureProducer,
    pool: PgPool,
    fleet: Fleet,
    shutdown: CancellationToken,
    counters: Counters,
}

impl Worker {
    pub fn new(
        settings: Settings,
        consumer: StreamConsumer,
        producer: FutureProducer,
        pool: PgPool,
        shutdown: CancellationToken,
    ) -> Self {
        let fleet = Fleet::new(settings.detect.clone(), settings.qc.clone());
        Self {
            settings,
            consumer,
            producer,
            pool,
            fleet,
            shutdown,
            counters: Counters::default(),
        }
    }

    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut last_log = Instant::now();
        loop {
            let messages = self.collect().await;
            if !messages.is_empty() {
                match self.handle(messages).await {
                    Ok(offsets) => {
                        if let Err(e) = self.consumer.store_offsets(&offsets.to_store()) {
                            tracing::warn!(error = %e, "offsets not stored (partition revoked?); they will be redelivered");
                        }
                    }
                    Err(e) if self.shutdown.is_cancelled() => {
                        tracing::info!(error = %e, "batch abandoned on shutdown; it will be redelivered");
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if last_log.elapsed() > Duration::from_secs(10) {
                tracing::info!(counters = ?self.counters, "progress");
                last_log = Instant::now();
            }
            if self.shutdown.is_cancelled() {
                break;
            }
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final commit");
        }
        tracing::info!(counters = ?self.counters, "anomaly-detector stopped");
        Ok(())
    }

    /// Up to `batch_size` messages, or what arrived within `batch_timeout_ms` of the first.
    async fn collect(&mut self) -> Vec<OwnedMessage> {
        let cfg = &self.settings.detector;
        let mut out = Vec::new();
        let deadline = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(deadline);
        while out.len() < cfg.batch_size {
            let msg = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                _ = &mut deadline, if !out.is_empty() => break,
                m = self.consumer.recv() => m,
            };
            match msg {
                Ok(m) => {
                    if out.is_empty() {
                        deadline.as_mut().reset(
                            tokio::time::Instant::now()
                                + Duration::from_millis(cfg.batch_timeout_ms),
                        );
                    }
                    out.push(m.detach());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    tokio::time::sleep(Duration::from_millis(cfg.retry_initial_ms)).await;
                }
            }
        }
        out
    }

    /// Detects, publishes and stores one batch; returns its offsets to store.
    async fn handle(&mut self, messages: Vec<OwnedMessage>) -> anyhow::Result<OffsetTracker> {
        self.counters.received += messages.len() as u64;
        let mut offsets = OffsetTracker::default();
        let parsed: Vec<Result<ProcessedReading, String>> = messages
            .iter()
            .map(|m| {
                serde_json::from_slice(m.payload().unwrap_or_default()).map_err(|e| e.to_string())
            })
            .collect();

        // Sensors without state get their history in one query, from before their first
        // reading in this batch.
        let mut first_seen: Vec<(String, chrono::DateTime<chrono::Utc>)> = Vec::new();
        for r in parsed.iter().flatten() {
            if self.fleet.needs_warm(&r.sensor_id)
                && !first_seen.iter().any(|(s, _)| *s == r.sensor_id)
            {
                first_seen.push((r.sensor_id.clone(), r.timestamp));
            }
        }
        let mut prefetched = self.history(first_seen).await?;

        let mut events = Vec::new();
        let mut dead = Vec::new();
        for (m, r) in messages.iter().zip(parsed) {
            offsets.observe(m.topic(), m.partition(), m.offset());
            let r = match r {
                Ok(r) => r,
                Err(detail) => {
                    let source = Provenance {
                        topic: m.topic(),
                        partition: m.partition(),
                        offset: m.offset(),
                    };
                    dead.push(Dead {
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().unwrap_or_default().to_vec(),
                        headers: headers(&source, SERVICE, "malformed_processed", &detail),
                    });
                    continue;
                }
            };
            self.counters.dropped +=
                self.fleet
                    .observe(m.topic(), m.partition(), m.offset(), &r.sensor_id)
                    as u64;
            if self.fleet.needs_warm(&r.sensor_id) {
                let history = match prefetched.remove(&r.sensor_id) {
                    Some(h) => h,
                    // Dropped mid-batch by a rebalance: fetch its history alone.
                    None => self
                        .history(vec![(r.sensor_id.clone(), r.timestamp)])
                        .await?
                        .remove(&r.sensor_id)
                        .unwrap_or_default(),
                };
                self.fleet.warm(&r.sensor_id, &history);
                self.counters.warmed += 1;
            }
            events.extend(self.fleet.process(&r));
        }
        self.counters.dead_lettered += dead.len() as u64;
        self.counters.events += events.len() as u64;
        if !events.is_empty() || !dead.is_empty() {
            self.write(events, dead).await?;
        }
        Ok(offsets)
    }

    /// The stored history of each sensor before the given time, grouped by sensor.
    async fn history(
        &mut self,
        sensors: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    ) -> anyhow::Result<HashMap<String, Vec<StoredRaw>>> {
        if sensors.is_empty() {
            return Ok(HashMap::new());
        }
        let window = chrono::Duration::hours(self.settings.detector.warm_hours);
        let (pool, sensors) = (self.pool.clone(), sensors);
        let rows = self
            .retry("reading history", || {
                airq_store::readings::history(&pool, &sensors, window)
            })
            .await?;
        self.counters.history_rows += rows.len() as u64;
        let mut by_sensor: HashMap<String, Vec<StoredRaw>> = HashMap::new();
        for row in rows {
            by_sensor
                .entry(row.reading.sensor_id.clone())
                .or_default()
                .push(row);
        }
        Ok(by_sensor)
    }

    /// Publishes the events not yet published and the dead letters, then upserts the events.
    async fn write(&mut self, events: Vec<AnomalyEvent>, dead: Vec<Dead>) -> anyhow::Result<()> {
        let pool = self.pool.clone();
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        let stored = self
            .retry("looking up published events", || {
                airq_store::anomalies::stored_status(&pool, &ids)
            })
            .await?;
        let fresh: Vec<&AnomalyEvent> = events
            .iter()
            .filter(|e| !already_published(e, stored.get(&e.id).copied()))
            .collect();
        self.counters.republish_skipped += (events.len() - fresh.len()) as u64;
        let (producer, topics) = (self.producer.clone(), self.settings.kafka.topics.clone());
        self.retry("publishing", || publish(&producer, &topics, &fresh, &dead))
            .await?;
        self.retry("storing anomalies", || {
            airq_store::anomalies::upsert_anomalies(&pool, &events)
        })
        .await?;
        Ok(())
    }

    /// Retries `op` with exponential back-off until it succeeds or shutdown.
    async fn retry<T, E, F, Fut>(&self, what: &str, mut op: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let cfg = &self.settings.detector;
        let mut backoff = Duration::from_millis(cfg.retry_initial_ms);
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    tracing::warn!(error = %e, what, backoff_ms = backoff.as_millis() as u64, "failed; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => anyhow::bail!("shutdown while {what}: {e}"),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(cfg.retry_max_ms));
                }
            }
        }
    }
}

/// Whether an event was published before (PostgreSQL is written after the topic): a
/// closed episode is final; an open one was published if the row exists at all.
fn already_published(e: &AnomalyEvent, stored: Option<Status>) -> bool {
    matches!(
        (e.status, stored),
        (_, Some(Status::Closed)) | (Status::Open, Some(Status::Open))
    )
}

async fn publish(
    producer: &FutureProducer,
    topics: &airq_kafka::Topics,
    events: &[&AnomalyEvent],
    dead: &[Dead],
) -> anyhow::Result<()> {
    let payloads: Vec<Vec<u8>> = events.iter().map(|e| e.to_json()).collect();
    // Collected: a lazy iterator of borrowed records does not make a `Send` future.
    let records: Vec<FutureRecord<[u8], [u8]>> = events
        .iter()
        .zip(&payloads)
        .map(|(e, payload)| {
            FutureRecord::<[u8], [u8]>::to(&topics.anomalies)
                .key(e.sensor_id.as_bytes())
                .payload(payload)
        })
        .chain(dead.iter().map(|d| {
            let rec = FutureRecord::<[u8], [u8]>::to(&topics.dead_letter)
                .payload(&d.payload)
                .headers(d.headers.clone());
            match &d.key {
                Some(k) => rec.key(k),
                None => rec,
            }
        }))
        .collect();
    airq_kafka::publish::send_all(producer, records)
        .await
        .context("publishing anomalies")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn republishes_only_what_the_table_does_not_hold() {
        use Status::{Closed, Open};
        let t = "2024-01-15T14:00:00Z".parse().unwrap();
        let ev = |status| AnomalyEvent {
            schema_version: 1,
            id: "x".into(),
            sensor_id: "s".into(),
            pollutant: None,
            kind: airq_detect::AnomalyKind::Silence,
            detector: "silence".into(),
            status,
            start: t,
            end: t,
            points: 1,
            score: 1.0,
            severity: airq_detect::Severity::Info,
            observed: None,
            expected: None,
            explanation: String::new(),
        };
        assert!(!already_published(&ev(Open), None));
        assert!(already_published(&ev(Open), Some(Open)));
        assert!(!already_published(&ev(Closed), Some(Open)));
        assert!(already_published(&ev(Closed), Some(Closed)));
        assert!(already_published(&ev(Open), Some(Closed)));
    }
}
