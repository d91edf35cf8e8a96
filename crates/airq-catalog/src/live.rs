//! Freshness and volume, read live: the newest message and the message count of each topic,
//! the newest timestamp and the row estimate of each table, and the registry's versions and
//! aliases with the production version's metrics. A source that cannot be read gives its
//! entry an `error` instead of failing the whole catalog.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mlflow_client::MlflowClient;
use rdkafka::config::ClientConfig;
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
    /// analysed.
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
    let estimate: Option<f32> =
        sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)")
            .bind(t.name)
            .fetch_optional(pool)
            .await?;
    // Views have no statistics (0); a table never analysed has -1: count it.
    let rows_estimate = match estimate {
        Some(e) if e >= 0.0 && t.kind == "table" => Some(e as i64),
        _ => Some(
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {}", t.name))
                .fetch_one(pool)
                .await?,
        ),
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
/// deployment). Blocking: reads the brokers with a client of its own that joins no group.
pub fn topics(brokers: &str, names: &[(&str, &str)], timeout: Duration) -> Vec<TopicState> {
    let consumer: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "airq-catalog")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // Tansu on PostgreSQL 15 fails ListOffsets under read_committed (docs/tansu.md); no
        // producer of ours is transactional, so both levels read the same messages.
        .set("isolation.level", "read_uncommitted")
        .create();
    names
        .iter()
        .map(|(name, topic)| {
            let mut state = TopicState {
                name: (*name).to_owned(),
                topic: (*topic).to_owned(),
                ..TopicState::default()
            };
            let read = consumer
                .as_ref()
                .map_err(|e| e.to_string())
                .and_then(|c| topic_state(c, topic, timeout, &mut state));
            if let Err(e) = read {
                state.error = Some(e);
            }
            state
        })
        .collect()
}

fn topic_state(
    c: &BaseConsumer,
    topic: &str,
    timeout: Duration,
    state: &mut TopicState,
) -> Result<(), String> {
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
    // The newest message of each partition that holds one.
    let mut last = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = c
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| e.to_string())?;
        state.messages += (high - low).max(0);
        if high > low {
            last.add_partition_offset(topic, p, Offset::Offset(high - 1))
                .map_err(|e| e.to_string())?;
        }
    }
    let mut waiting = last.count();
    if waiting == 0 {
        return Ok(());
    }
    c.assign(&last).map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + timeout;
    while waiting > 0 && std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                waiting -= 1;
                let at = m
                    .timestamp()
                    .to_millis()
                    .and_then(DateTime::<Utc>::from_timestamp_millis);
                state.last_message_at = state.last_message_at.max(at);
            }
            Some(Err(e)) => return Err(e.to_string()),
            None => {}
        }
    }
    let _ = c.unassign();
    if waiting > 0 {
        return Err(format!(
            "the newest message of {waiting} partition(s) did not arrive in {timeout:?}"
        ));
    }
    Ok(())
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
