//! Freshness and volume, read live: the newest message and the message count of each topic,
//! the newest timestamp and the row estimate of each table, and the registry's versions and
//! aliases with the production version's metrics. A source that cannot be read gives its
//! entry an `error` instead of failing the whole catalog.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mlflow_client::MlflowClient;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use sqlx::PgPool;

use crate::datasets::Table;

/// A topic's volume and freshness.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TopicState {
    /// The catalog's name (`raw_data`).
    pub name: String,
    /// The topic it is on this deployment (`[kafka.topics]`).
    pub topic: String,
    pub partitions: usize,
    /// Messages the broker holds (high minus low watermark, summed over partitions).
    pub messages: i64,
    /// The broker timestamp of the newest message (its producer's create time).
    pub last_message_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A table's volume and freshness.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableState {
    pub name: String,
    /// PostgreSQL's estimate (`pg_class.reltuples`); counted when the table was never
    /// analysed; none for a view.
    pub rows_estimate: Option<i64>,
    /// The newest value of the table's time column, as text (a timestamp or a date).
    pub latest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A registered model's versions and aliases, with the production version's metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelState {
    pub name: String,
    /// Newest first: (version, its aliases, its run).
    pub versions: Vec<VersionState>,
    /// alias -> version.
    pub aliases: BTreeMap<String, String>,
    /// The metrics of the run behind the `production` version.
    pub production_metrics: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionState {
    pub version: String,
    pub aliases: Vec<String>,
    pub run_id: String,
}

/// Each table's row estimate and newest timestamp.
pub async fn tables(pool: &PgPool, tables: &[Table]) -> Vec<TableState> {
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        let state = match table_state(pool, t).await {
            Ok(s) => s,
            Err(e) => TableState {
                name: t.name.to_owned(),
                error: Some(e.to_string()),
                ..TableState::default()
            },
        };
        out.push(state);
    }
    out
}

async fn table_state(pool: &PgPool, t: &Table) -> Result<TableState, sqlx::Error> {
    // A view has no rows of its own (counting one would run it): no estimate. A table never
    // analysed has -1: it is counted.
    let rows_estimate = if t.kind == crate::TableKind::View {
        None
    } else {
        let estimate: Option<f32> =
            sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)")
                .bind(t.name)
                .fetch_optional(pool)
                .await?;
        match estimate {
            Some(e) if e >= 0.0 => Some(e as i64),
            _ => Some(
                sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {}", t.name))
                    .fetch_one(pool)
                    .await?,
            ),
        }
    };
    let latest = match t.time_column {
        Some(col) => {
            sqlx::query_scalar::<_, Option<String>>(&latest_query(t.name, t.key, col))
                .fetch_one(pool)
                .await?
        }
        None => None,
    };
    Ok(TableState {
        name: t.name.to_owned(),
        rows_estimate,
        latest,
        error: None,
    })
}

/// The newest value of `col`. A table keyed on (sensor_id, col) is read by one index probe
/// per sensor (a loose index scan), not a scan of every row: readings holds millions.
fn latest_query(table: &str, key: &[&str], col: &str) -> String {
    if key.len() >= 2 && key[0] == "sensor_id" && key[1] == col {
        format!(
            "WITH RECURSIVE s AS ( \
               (SELECT sensor_id FROM {table} ORDER BY sensor_id LIMIT 1) \
               UNION ALL \
               SELECT (SELECT t.sensor_id FROM {table} t WHERE t.sensor_id > s.sensor_id \
                       ORDER BY t.sensor_id LIMIT 1) FROM s WHERE s.sensor_id IS NOT NULL) \
             SELECT to_json(max(m.v)) #>> '{{}}' FROM s, LATERAL \
               (SELECT {col} AS v FROM {table} t WHERE t.sensor_id = s.sensor_id \
                ORDER BY {col} DESC LIMIT 1) m"
        )
    } else {
        format!("SELECT to_json(max({col})) #>> '{{}}' FROM {table}")
    }
}

/// Each topic's message count and newest message. `names`: (catalog name, topic on this
/// deployment). Blocking: reads the brokers with a client of its own that joins no group;
/// the newest messages of every topic are fetched at once.
pub fn topics(brokers: &str, names: &[(&str, &str)], timeout: Duration) -> Vec<TopicState> {
    let mut states: Vec<TopicState> = names
        .iter()
        .map(|(name, topic)| TopicState {
            name: (*name).to_owned(),
            topic: (*topic).to_owned(),
            ..TopicState::default()
        })
        .collect();
    let consumer = match airq_kafka::client::observer(brokers, "airq-catalog") {
        Ok(c) => c,
        Err(e) => {
            for s in &mut states {
                s.error = Some(e.to_string());
            }
            return states;
        }
    };
    let mut newest = TopicPartitionList::new();
    for s in &mut states {
        if let Err(e) = watermarks(&consumer, s, timeout, &mut newest) {
            s.error = Some(e);
        }
    }
    read_newest(&consumer, &newest, timeout, &mut states);
    states
}

/// The partitions and message count of `state`'s topic; adds the offset of each partition's
/// newest message to `newest`.
fn watermarks(
    c: &BaseConsumer,
    state: &mut TopicState,
    timeout: Duration,
    newest: &mut TopicPartitionList,
) -> Result<(), String> {
    let topic = state.topic.as_str();
    let meta = c
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| e.to_string())?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!("topic {topic} does not exist"));
    }
    state.partitions = partitions.len();
    for &p in &partitions {
        let (low, high) = c
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| e.to_string())?;
        state.messages += (high - low).max(0);
        if high > low {
            newest
                .add_partition_offset(topic, p, Offset::Offset(high - 1))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Reads the message at each offset of `newest` and keeps, per topic, the newest timestamp.
fn read_newest(
    c: &BaseConsumer,
    newest: &TopicPartitionList,
    timeout: Duration,
    states: &mut [TopicState],
) {
    let mut waiting: BTreeMap<(String, i32), ()> = newest
        .elements()
        .iter()
        .map(|e| ((e.topic().to_owned(), e.partition()), ()))
        .collect();
    if waiting.is_empty() {
        return;
    }
    if let Err(e) = c.assign(newest) {
        for s in states.iter_mut() {
            s.error.get_or_insert_with(|| e.to_string());
        }
        return;
    }
    let deadline = std::time::Instant::now() + timeout;
    while !waiting.is_empty() && std::time::Instant::now() < deadline {
        let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        waiting.remove(&(m.topic().to_owned(), m.partition()));
        let at = m
            .timestamp()
            .to_millis()
            .and_then(DateTime::<Utc>::from_timestamp_millis);
        if let Some(s) = states.iter_mut().find(|s| s.topic == m.topic()) {
            s.last_message_at = s.last_message_at.max(at);
        }
    }
    let _ = c.unassign();
    for ((topic, partition), ()) in waiting {
        if let Some(s) = states.iter_mut().find(|s| s.topic == topic) {
            s.error.get_or_insert_with(|| {
                format!("the newest message of partition {partition} did not arrive in {timeout:?}")
            });
        }
    }
}

/// Each registered model's versions and aliases, and its production version's metrics.
pub async fn models(mlflow: &MlflowClient, names: &[&str]) -> Vec<ModelState> {
    let mut out = Vec::with_capacity(names.len());
    for &name in names {
        let state = match model_state(mlflow, name).await {
            Ok(s) => s,
            Err(e) => ModelState {
                name: name.to_owned(),
                error: Some(e.to_string()),
                ..ModelState::default()
            },
        };
        out.push(state);
    }
    out
}

async fn model_state(
    mlflow: &MlflowClient,
    name: &str,
) -> Result<ModelState, mlflow_client::MlflowError> {
    let registered = mlflow.get_registered_model(name).await?;
    let aliases: BTreeMap<String, String> = registered
        .aliases
        .into_iter()
        .map(|a| (a.alias, a.version))
        .collect();
    let versions = mlflow
        .search_model_versions(name, 100)
        .await?
        .into_iter()
        .map(|v| VersionState {
            aliases: aliases
                .iter()
                .filter(|(_, version)| **version == v.version)
                .map(|(alias, _)| alias.clone())
                .collect(),
            version: v.version,
            run_id: v.run_id,
        })
        .collect::<Vec<_>>();
    let mut production_metrics = BTreeMap::new();
    if let Some(v) = aliases.get("production")
        && let Some(run) = versions.iter().find(|x| &x.version == v)
        && !run.run_id.is_empty()
    {
        let run = mlflow.get_run(&run.run_id).await?;
        production_metrics = run
            .data
            .metrics
            .into_iter()
            .map(|m| (m.key, m.value))
            .collect();
    }
    Ok(ModelState {
        name: name.to_owned(),
        versions,
        aliases,
        production_metrics,
        error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_keyed_on_sensor_and_time_is_read_by_index_probes() {
        let q = latest_query("readings", &["sensor_id", "ts"], "ts");
        assert!(q.contains("WITH RECURSIVE"), "{q}");
        assert!(q.contains("ORDER BY ts DESC LIMIT 1"), "{q}");
        let q = latest_query("anomalies", &["id"], "start_ts");
        assert_eq!(q, "SELECT to_json(max(start_ts)) #>> '{}' FROM anomalies");
    }
}
