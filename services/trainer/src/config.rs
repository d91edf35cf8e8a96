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
    /// Hours ahead with a direct model of their own besides the next hour; the hours
    /// between are interpolated when served.
    #[serde(default)]
    pub horizons: Vec<u32>,
    /// Coverage of the prediction intervals (split-conformal on the validation window).
    pub interval_coverage: f64,
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
    pub max_leaves: usize,
    pub max_depth: usize,
    pub min_leaf: usize,
    pub lambda: f64,
    pub subsample: f64,
    pub feature_fraction: f64,
    pub patience: usize,
    pub validation_days: i64,
    /// The largest share of a ridge model blended into the boosting's forecast, chosen on the
    /// validation window (0: the boosting alone).
    #[serde(default)]
    pub linear_share_max: f64,
    /// Variants of these settings also fitted; the one with the lowest validation RMSE wins.
    #[serde(default)]
    pub search: Vec<BoostingVariant>,
}

/// Settings that differ from [`BoostingSettings`] in one trial of the search.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoostingVariant {
    pub learning_rate: Option<f64>,
    pub max_leaves: Option<usize>,
    pub max_depth: Option<usize>,
    pub min_leaf: Option<usize>,
    pub lambda: Option<f64>,
    pub subsample: Option<f64>,
    pub feature_fraction: Option<f64>,
}

impl BoostingSettings {
    /// These settings with `v`'s changes.
    pub fn with(&self, v: &BoostingVariant) -> Self {
        Self {
            learning_rate: v.learning_rate.unwrap_or(self.learning_rate),
            max_leaves: v.max_leaves.unwrap_or(self.max_leaves),
            max_depth: v.max_depth.unwrap_or(self.max_depth),
            min_leaf: v.min_leaf.unwrap_or(self.min_leaf),
            lambda: v.lambda.unwrap_or(self.lambda),
            subsample: v.subsample.unwrap_or(self.subsample),
            feature_fraction: v.feature_fraction.unwrap_or(self.feature_fraction),
            search: Vec::new(),
            ..self.clone()
        }
    }
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
