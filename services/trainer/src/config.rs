//! Settings of the trainer (`config/default.toml` documents every key).

use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database: airq_store::DatabaseSettings,
    pub mlflow: Mlflow,
    pub validate: ValidateSettings,
    pub train: TrainSettings,
    pub evaluate: EvaluateSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mlflow {
    pub url: String,
    pub experiment: String,
    pub model: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateSettings {
    pub min_rows: usize,
    pub min_completeness: f64,
    pub max_pm2_5: f64,
    pub max_pm10: f64,
    pub max_no2: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    pub seed: u64,
    pub test_fraction: f64,
    pub threads: usize,
    pub forest: ForestSettings,
    pub boosting: BoostingSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForestSettings {
    pub trees: usize,
    pub max_depth: usize,
    pub min_leaf: usize,
    pub max_features: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoostingSettings {
    pub rounds: usize,
    pub learning_rate: f64,
    pub max_depth: usize,
    pub min_leaf: usize,
    pub subsample: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateSettings {
    pub window_days: i64,
}

impl Settings {
    pub fn load() -> Result<Self, airq_runtime::ConfigError> {
        airq_runtime::load_config(DEFAULTS)
    }
}
