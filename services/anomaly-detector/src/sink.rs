//! What the detector finds, written idempotently. Anomaly events go onto the `anomalies` topic,
//! then into the `anomalies` table (upsert by id). Events are deterministic, so a redelivered
//! batch yields the same events; those the table already holds (published before a crash) are
//! not published again. Pollution episodes are not sensor faults: they go to the
//! `pollution_episodes` table only (upsert by id), never to the `anomalies` topic.

use airq_detect::{AnomalyEvent, PollutionEpisode, Status};
use airq_kafka::publish::{Outgoing, Publisher};
use airq_kafka::runtime::{Sink, SinkError};
use airq_store::StoreError;
use sqlx::PgPool;

/// One thing the detector found at a reading.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// A sensor fault, opened or closed.
    Anomaly(AnomalyEvent),
    /// The air is bad and the network sees it, opened or closed.
    Pollution(PollutionEpisode),
}

pub struct EventSink {
    pub pool: PgPool,
    pub producer: Publisher,
    pub topic: String,
}

impl Sink for EventSink {
    type Item = Finding;

    async fn write(&self, found: &[Finding]) -> Result<(), SinkError> {
        let (mut events, mut episodes) = (Vec::new(), Vec::new());
        for f in found {
            match f {
                Finding::Anomaly(e) => events.push(e.clone()),
                Finding::Pollution(p) => episodes.push(p.clone()),
            }
        }
        self.write_events(&events).await?;
        if !episodes.is_empty() {
            airq_store::pollution::upsert_episodes(&self.pool, &episodes)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }
}

impl EventSink {
    async fn write_events(&self, events: &[AnomalyEvent]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        let stored = airq_store::anomalies::stored_status(&self.pool, &ids)
            .await
            .map_err(store_error)?;
        let fresh: Vec<&AnomalyEvent> = events
            .iter()
            .filter(|e| !already_published(e, stored.get(&e.id).copied()))
            .collect();
        let payloads: Vec<Vec<u8>> = fresh.iter().map(|e| e.to_json()).collect();
        let messages: Vec<_> = fresh
            .iter()
            .zip(&payloads)
            .map(|(e, p)| Outgoing::new(&self.topic, Some(e.sensor_id.as_bytes()), p))
            .collect();
        airq_kafka::publish::send_all(&self.producer, messages).await?;
        airq_store::anomalies::upsert_anomalies(&self.pool, events)
            .await
            .map_err(store_error)?;
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

/// Whether an event was published before (PostgreSQL is written after the topic): a
/// closed episode is final; an open one was published if the row exists at all.
fn already_published(e: &AnomalyEvent, stored: Option<Status>) -> bool {
    matches!(
        (e.status, stored),
        (_, Some(Status::Closed)) | (Status::Open, Some(Status::Open))
    )
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
