//! Settings of anomaly-detector (`config/default.toml` documents every key).

use airq_detect::DetectorConfig;
use airq_domain::qc::QcConfig;
use airq_kafka::KafkaConfig;
use airq_kafka::runtime::ConsumerSettings;
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub kafka: KafkaConfig,
    pub database: airq_store::DatabaseSettings,
    /// The consumer loop (`airq_kafka::runtime`).
    pub detector: ConsumerSettings,
    pub warm: WarmSettings,
    pub ticks: TickSettings,
    pub detect: DetectorConfig,
    pub qc: QcConfig,
}

/// The warm start: a sensor's state is rebuilt from its stored history before its first
/// reading is processed (at start, after a rebalance, after eviction).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmSettings {
    /// History replayed, in hours before the reading.
    pub hours: i64,
    /// Sensors whose history is read in one query (bounds the memory of one page).
    pub page_sensors: usize,
}

/// The event-time ticks of the live stream (`airq_detect::ticks`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TickSettings {
    /// A live tick still waiting for a sensor after this long (processing time) is judged
    /// without it: the most a stopped sensor delays its neighbours' alerts, ms.
    pub wait_ms: u64,
    /// The same for a backlog tick (older than `detect.spatial.fresh_secs`: a replay, a
    /// catch-up), ms: a pipeline working through a backlog delivers sensors unevenly.
    pub backlog_wait_ms: u64,
    /// A live tick stops waiting for a sensor once its reading is late on the sensor's own
    /// rhythm (its last arrival plus its interval) by four times its jitter, at most this,
    /// ms (`airq_detect::Wait::grace_ms`).
    pub live_grace_ms: u64,
}

impl TickSettings {
    /// The waits, at the wall clock's `now`.
    pub fn wait(&self, now: chrono::DateTime<chrono::Utc>) -> airq_detect::Wait {
        airq_detect::Wait {
            live_ms: self.wait_ms,
            backlog_ms: self.backlog_wait_ms,
            grace_ms: self.live_grace_ms,
            now,
        }
    }
}

impl Settings {
    pub fn load() -> Result<Self, airq_runtime::ConfigError> {
        airq_runtime::load_config(DEFAULTS)
    }

    /// The defaults alone, without the environment (for offline subcommands and tests).
    pub fn defaults() -> Result<Self, airq_runtime::ConfigError> {
        airq_runtime::load_config_from(DEFAULTS, None, [])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_match_the_code_defaults() {
        let s = Settings::defaults().unwrap();
        assert_eq!(s.detect, DetectorConfig::default());
        assert_eq!(s.qc, QcConfig::default());
    }
}
