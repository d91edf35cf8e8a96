//! Settings of sensor-sim: broker and fault rates (run parameters are CLI flags).

use airq_kafka::KafkaConfig;
use serde::Deserialize;

use airq_sim::faults::FaultRates;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub faults: FaultRates,
}

impl Settings {
    pub fn load() -> Result<Self, airq_runtime::ConfigError> {
        airq_runtime::load_config(DEFAULTS)
    }
}
