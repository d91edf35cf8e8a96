//! Settings of stream-cleaner (`config/default.toml` documents every key).

use airq_domain::qc::QcConfig;
use airq_domain::validate::ValidationConfig;
use airq_kafka::KafkaConfig;
use airq_kafka::runtime::ConsumerSettings;
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub kafka: KafkaConfig,
    pub database: airq_store::DatabaseSettings,
    /// The consumer loop (`airq_kafka::runtime`).
    pub cleaner: ConsumerSettings,
    pub validation: ValidationConfig,
    pub qc: QcConfig,
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
