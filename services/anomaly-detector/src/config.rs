//! Settings of anomaly-detector (`config/default.toml` documents every key).

use airq_detect::DetectorConfig;
use airq_domain::qc::QcConfig;
use airq_kafka::KafkaConfig;
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub kafka: KafkaConfig,
    pub database: airq_store::DatabaseSettings,
    pub detector: ServiceSettings,
    pub detect: DetectorConfig,
    pub qc: QcConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    pub group_id: String,
    pub batch_size: usize,
    pub batch_timeout_ms: u64,
    pub warm_hours: i64,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
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
