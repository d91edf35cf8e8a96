//! The forecasting models of airq.
//!
//! - [`Artifact`]: what the registry stores: the model, its [`FeatureSpec`], its name and
//!   the format version; the prediction API loads it and predicts with [`Model::predict`];
//! - [`linear`]: ridge regression, and the blend of a model with a share of it;
//! - [`tree`]: histogram-based regression trees (CART on quantile bins) and the random forest
//!   ([`tree::fit_forest`]); [`boost`]: gradient boosting grown leaf-wise ([`boost::fit_boosted`]);
//! - [`Predictor`]: a model laid out for serving (each ensemble's trees in one flat array).
//!   linfa-trees only has classifiers, so regression trees are implemented here.

pub mod boost;
pub mod flat;
pub mod horizon;
pub mod linear;
pub mod tree;

use std::collections::BTreeMap;

use airq_features::{FeatureSpec, Locations};
use serde::{Deserialize, Serialize};

pub use flat::Predictor;
pub use horizon::{Anchors, Horizon, Interval};
pub use tree::Tree;

/// Version of the artifact format this crate reads and writes.
pub const ARTIFACT_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Model {
    /// Next hour = this hour (feature 0, `pm2_5_lag0`).
    Persistence,
    /// Linear in standardized features.
    Linear {
        mean: Vec<f64>,
        scale: Vec<f64>,
        weights: Vec<f64>,
        intercept: f64,
    },
    /// Mean of the trees.
    Forest { trees: Vec<Tree> },
    /// `base + learning_rate * sum(trees)`.
    Boosted {
        base: f64,
        learning_rate: f64,
        trees: Vec<Tree>,
    },
    /// Predicts the change from feature `from` (the last hour's PM2.5): `x[from] + inner(x)`.
    /// Trees cannot extrapolate beyond the levels they saw; the hour-to-hour change is a
    /// steadier target than the level.
    Delta { from: usize, inner: Box<Model> },
    /// `sum(weight * model(x))`, in order: e.g. a tree ensemble with a share of a linear
    /// model ([`linear::blend`]).
    Blend { parts: Vec<(f64, Model)> },
}

impl Model {
    pub fn predict(&self, x: &[f64]) -> f64 {
        match self {
            Model::Persistence => x.first().copied().unwrap_or(f64::NAN),
            Model::Linear {
                mean,
                scale,
                weights,
                intercept,
            } => {
                intercept
                    + x.iter()
                        .zip(mean.iter().zip(scale).zip(weights))
                        .map(|(v, ((m, s), w))| w * (v - m) / s)
                        .sum::<f64>()
            }
            Model::Forest { trees } => {
                trees.iter().map(|t| t.predict(x)).sum::<f64>() / trees.len().max(1) as f64
            }
            Model::Boosted {
                base,
                learning_rate,
                trees,
            } => base + learning_rate * trees.iter().map(|t| t.predict(x)).sum::<f64>(),
            Model::Delta { from, inner } => {
                x.get(*from).copied().unwrap_or(f64::NAN) + inner.predict(x)
            }
            Model::Blend { parts } => parts.iter().map(|(w, m)| w * m.predict(x)).sum(),
        }
    }

    /// Importance of each feature: total squared-error reduction of its splits (trees),
    /// or |standardized weight| (linear), normalized to sum 1.
    pub fn importances(&self, n_features: usize) -> Vec<f64> {
        let mut imp = vec![0.0; n_features];
        match self {
            Model::Persistence => {
                if let Some(first) = imp.first_mut() {
                    *first = 1.0;
                }
            }
            Model::Linear { weights, .. } => {
                for (i, w) in weights.iter().enumerate().take(n_features) {
                    imp[i] = w.abs();
                }
            }
            Model::Forest { trees } | Model::Boosted { trees, .. } => {
                for t in trees {
                    t.add_importances(&mut imp);
                }
            }
            Model::Delta { inner, .. } => imp = inner.importances(n_features),
            Model::Blend { parts } => {
                for (w, m) in parts {
                    let part = m.importances(n_features);
                    imp.iter_mut()
                        .zip(part)
                        .for_each(|(i, p)| *i += w.abs() * p);
                }
            }
        }
        let total: f64 = imp.iter().sum();
        if total > 0.0 {
            imp.iter_mut().for_each(|v| *v /= total);
        }
        imp
    }
}

/// A trained model as stored in the registry (`model/model.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub format: u32,
    /// `persistence`, `linear`, `random_forest`, `gradient_boosting`.
    pub name: String,
    pub spec: FeatureSpec,
    pub feature_names: Vec<String>,
    /// PM2.5 one hour ahead.
    pub model: Model,
    /// Direct models for longer horizons, ascending (absent: one hour only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub horizons: Vec<Horizon>,
    /// The prediction interval of each hour ahead served, from 1 (absent in artifacts
    /// trained before intervals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<Interval>,
    /// The training sensors' locations: the neighbours the neighbour features look at.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub locations: Locations,
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("not a model artifact: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("artifact format {found} is not supported (this build reads {ARTIFACT_FORMAT})")]
    Format { found: u32 },
    #[error("the artifact's feature names do not match its feature spec")]
    Features,
}

impl Artifact {
    pub fn new(name: &str, spec: FeatureSpec, model: Model) -> Self {
        Self {
            format: ARTIFACT_FORMAT,
            name: name.to_owned(),
            feature_names: spec.names(),
            spec,
            model,
            horizons: Vec::new(),
            intervals: Vec::new(),
            locations: Locations::new(),
        }
    }

    /// The hours ahead with a model of their own: 1, then the longer horizons.
    pub fn hours(&self) -> Vec<u32> {
        std::iter::once(1)
            .chain(self.horizons.iter().map(|h| h.hours).filter(|h| *h > 1))
            .collect()
    }

    /// The model of `hours` ahead, if trained.
    pub fn model_for(&self, hours: u32) -> Option<&Model> {
        if hours == 1 {
            return Some(&self.model);
        }
        self.horizons
            .iter()
            .find(|h| h.hours == hours)
            .map(|h| &h.model)
    }

    /// The trained horizons laid out for serving.
    pub fn anchors(&self) -> Anchors {
        Anchors::new(&self.model, &self.horizons, &self.intervals)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with finite floats: cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks an artifact: format version and features as this build defines them.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let a: Artifact = serde_json::from_slice(bytes)?;
        if a.format != ARTIFACT_FORMAT {
            return Err(ArtifactError::Format { found: a.format });
        }
        if a.feature_names != a.spec.names() {
            return Err(ArtifactError::Features);
        }
        Ok(a)
    }
}

/// RMSE, MAE and R2 of predictions against truth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub rmse: f64,
    pub mae: f64,
    pub r2: f64,
    pub n: usize,
}

pub fn scores(truth: &[f64], predicted: &[f64]) -> Scores {
    let n = truth.len().min(predicted.len());
    if n == 0 {
        return Scores {
            rmse: f64::NAN,
            mae: f64::NAN,
            r2: f64::NAN,
            n,
        };
    }
    let mean = truth[..n].iter().sum::<f64>() / n as f64;
    let (mut se, mut ae, mut tot) = (0.0, 0.0, 0.0);
    for (t, p) in truth.iter().zip(predicted) {
        se += (t - p).powi(2);
        ae += (t - p).abs();
        tot += (t - mean).powi(2);
    }
    Scores {
        rmse: (se / n as f64).sqrt(),
        mae: ae / n as f64,
        r2: if tot > 0.0 { 1.0 - se / tot } else { f64::NAN },
        n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_match_hand_computation() {
        let s = scores(&[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0]);
        assert!((s.rmse - (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((s.mae - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.r2 - (1.0 - 4.0 / 2.0)).abs() < 1e-12);
    }

    #[test]
    fn an_artifact_round_trips_and_refuses_other_formats() {
        let spec = FeatureSpec::default();
        let n = spec.names().len();
        let a = Artifact::new(
            "linear",
            spec,
            Model::Linear {
                mean: vec![0.0; n],
                scale: vec![1.0; n],
                weights: vec![0.5; n],
                intercept: 1.0,
            },
        );
        let back = Artifact::from_json(&a.to_json()).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.model.predict(&vec![2.0; n]), 1.0 + n as f64);
        let mut v: serde_json::Value = serde_json::from_slice(&a.to_json()).unwrap();
        v["format"] = 99.into();
        let err = Artifact::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(err, ArtifactError::Format { found: 99 }));
    }
}
