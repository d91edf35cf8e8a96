//! Idempotent writes of anomaly events, keyed by their deterministic id.

use std::collections::HashMap;

use airq_detect::{AnomalyEvent, Status};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::StoreError;

const UPSERT: &str = r#"
INSERT INTO anomalies AS a (id, sensor_id, pollutant, kind, detector, status, start_ts, end_ts,
                            points, score, severity, observed, expected, explanation, schema_version)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::timestamptz[], $8::timestamptz[], $9::int4[], $10::float8[], $11::text[],
                     $12::float8[], $13::float8[], $14::text[], $15::int2[])
ON CONFLICT (id) DO UPDATE SET
    status = EXCLUDED.status, end_ts = EXCLUDED.end_ts, points = EXCLUDED.points,
    score = EXCLUDED.score, severity = EXCLUDED.severity, observed = EXCLUDED.observed,
    expected = EXCLUDED.expected, explanation = EXCLUDED.explanation, updated_at = now()
-- A closed episode is final: a redelivered open event must not reopen it.
WHERE a.status = 'open' AND (EXCLUDED.status = 'closed' OR EXCLUDED.points >= a.points)
"#;

/// The last event of each id, in first-seen order: one statement may touch a row once.
pub fn latest_per_id(events: &[AnomalyEvent]) -> Vec<&AnomalyEvent> {
    crate::last_of_each(events, |e| &e.id)
}

/// Upserts events; returns the number of rows inserted or updated.
pub async fn upsert_anomalies(pool: &PgPool, events: &[AnomalyEvent]) -> Result<u64, StoreError> {
    let events = latest_per_id(events);
    if events.is_empty() {
        return Ok(0);
    }
    let text =
        |f: &dyn Fn(&AnomalyEvent) -> String| events.iter().map(|e| f(e)).collect::<Vec<_>>();
    let ts = |f: &dyn Fn(&AnomalyEvent) -> DateTime<Utc>| {
        events.iter().map(|e| f(e)).collect::<Vec<_>>()
    };
    let done = sqlx::query(UPSERT)
        .bind(text(&|e| e.id.clone()))
        .bind(text(&|e| e.sensor_id.clone()))
        .bind(
            events
                .iter()
                .map(|e| e.pollutant.map(|p| p.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(text(&|e| e.kind.as_str().to_owned()))
        .bind(text(&|e| e.detector.clone()))
        .bind(text(&|e| e.status.as_str().to_owned()))
        .bind(ts(&|e| e.start))
        .bind(ts(&|e| e.end))
        .bind(
            events
                .iter()
                .map(|e| i32::try_from(e.points).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|e| e.score).collect::<Vec<_>>())
        .bind(text(&|e| e.severity.as_str().to_owned()))
        .bind(events.iter().map(|e| e.observed).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.expected).collect::<Vec<_>>())
        .bind(text(&|e| e.explanation.clone()))
        .bind(
            events
                .iter()
                .map(|e| e.schema_version as i16)
                .collect::<Vec<_>>(),
        )
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// The stored status of each of `ids` that is stored.
pub async fn stored_status(
    pool: &PgPool,
    ids: &[String],
) -> Result<HashMap<String, Status>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, status FROM anomalies WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, s)| {
            let status = if s == "closed" {
                Status::Closed
            } else {
                Status::Open
            };
            (id, status)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_event_of_each_id_in_first_seen_order() {
        let t: DateTime<Utc> = "2024-01-15T14:00:00Z".parse().unwrap();
        let ev = |id: &str, status| AnomalyEvent {
            schema_version: 1,
            id: id.into(),
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
        let events = [
            ev("a", Status::Open),
            ev("b", Status::Open),
            ev("a", Status::Closed),
        ];
        let kept: Vec<_> = latest_per_id(&events)
            .iter()
            .map(|e| (e.id.as_str(), e.status))
            .collect();
        assert_eq!(kept, [("b", Status::Open), ("a", Status::Closed)]);
    }
}
