//! Settings of predict-api (`config/default.toml` documents every key).

use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: Server,
    pub database: airq_store::DatabaseSettings,
    pub mlflow: Mlflow,
    pub forecasts: Forecasts,
    pub catalog: CatalogSettings,
}

/// Where `GET /catalog` reads the topics' freshness.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSettings {
    pub brokers: String,
    /// Longest wait for the broker, per topic.
    pub timeout_ms: u64,
    pub topics: airq_kafka::Topics,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forecasts {
    /// Record served forecasts in the `forecasts` table.
    pub record: bool,
    /// Records waiting for the writer; past it they are dropped.
    pub queue: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub addr: String,
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub max_readings: usize,
    /// A prediction request still running after this long is answered 503.
    pub request_timeout_ms: u64,
    /// Prediction requests served at once; one more is answered 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Longest wait for requests in flight on shutdown.
    pub drain_timeout_secs: u64,
    /// A sensor's stored series is reused this long after it was read, ms (0: a query per
    /// request).
    pub series_cache_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mlflow {
    pub url: String,
    pub model: String,
    pub alias: String,
    pub poll_secs: u64,
}

impl Settings {
    pub fn load() -> Result<Self, airq_runtime::ConfigError> {
        airq_runtime::load_config(DEFAULTS)
    }
}
