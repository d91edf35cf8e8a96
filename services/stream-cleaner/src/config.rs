//! Settings of stream-cleaner (`config/default.toml` documents every key).

use airq_domain::qc::QcConfig;
use airq_domain::validate::ValidationConfig;
use airq_kafka::KafkaConfig;
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub kafka: KafkaConfig,
    pub database: airq_store::DatabaseSettings,
    pub cleaner: CleanerSettings,
    pub validation: ValidationConfig,
    pub qc: QcConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanerSettings {
    pub group_id: String,
    pub batch_size: usize,
    pub batch_timeout_ms: u64,
    pub max_batches_in_flight: usize,
    pub producer_linger_ms: u32,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    pub drain_timeout_secs: u64,
}

impl Settings {
    pub fn load() -> Result<Self, airq_runtime::ConfigError> {
        airq_runtime::load_config(DEFAULTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_match_the_code_defaults() {
        let s: Settings = airq_runtime::load_config_from(DEFAULTS, None, []).unwrap();
        assert_eq!(s.qc, QcConfig::default());
        assert_eq!(s.validation, ValidationConfig::default());
    }
}
