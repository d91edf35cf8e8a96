//! Settings of raw-archive (`config/default.toml` documents every key).

use airq_domain::validate::ValidationConfig;
use airq_kafka::KafkaConfig;
use airq_kafka::runtime::ConsumerSettings;
use secrecy::SecretString;
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub kafka: KafkaConfig,
    pub mongodb: MongoSettings,
    /// The consumer loop (`airq_kafka::runtime`).
    pub archiver: ConsumerSettings,
    pub validation: ValidationConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSettings {
    /// May hold credentials: never logged.
    pub url: SecretString,
    pub database: String,
    pub collection: String,
    pub server_selection_timeout_ms: u64,
}

impl Settings {
    pub fn load() -> Result<Self, airq_runtime::ConfigError> {
        airq_runtime::load_config(DEFAULTS)
    }

    /// The defaults with these `AIRQ__...` overrides only (tests).
    pub fn with_env(
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, airq_runtime::ConfigError> {
        airq_runtime::load_config_from(DEFAULTS, None, env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_load_and_validate_as_the_cleaner_does() {
        let s: Settings = airq_runtime::load_config_from(DEFAULTS, None, []).unwrap();
        assert_eq!(s.validation, ValidationConfig::default());
        assert_eq!(s.mongodb.collection, "raw_messages");
        assert_eq!(s.kafka.topics.raw, "raw_data");
    }
}
