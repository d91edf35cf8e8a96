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
    pub processed: ProcessedSettings,
}

/// How `processed_data` is partitioned.
#[derive(Debug, Clone, Deserialize)]
pub struct ProcessedSettings {
    /// Messages are keyed by the reading's cell of this many degrees of latitude and
    /// longitude (`Location::region_key`); 0 keys the whole fleet as one region.
    pub region_cell_deg: f64,
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
