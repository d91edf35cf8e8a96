//! Fitting and scoring the candidate models (pure: data in, models and numbers out).

use std::collections::BTreeMap;
use std::time::Instant;

use airq_features::Dataset;
use airq_model::boost::{self, BoostParams, Validation};
use airq_model::tree::{self, Binned, ForestParams, TreeParams};
use airq_model::{Model, Predictor, Scores, linear, scores};
use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::config::{BoostingSettings, TrainSettings};

/// A fitted candidate.
#[derive(Debug, Clone)]
pub struct Trained {
    pub name: &'static str,
    pub model: Model,
    pub params: Vec<(String, String)>,
    /// Everything it took, the search included.
    pub train_seconds: f64,
    /// The settings tried to find it (the search), the chosen one among them.
    pub trials: Vec<Trial>,
    /// Fitted without the validation window of its training rows (which can then calibrate
    /// its interval).
    pub held_out: bool,
    /// The boosting settings the search chose (refitted as such for longer horizons).
    pub chosen: Option<BoostingSettings>,
}

/// One fit of a search, scored on the validation window.
#[derive(Debug, Clone)]
pub struct Trial {
    pub params: Vec<(String, String)>,
    pub validation_rmse: f64,
    pub fit_seconds: f64,
}

/// Where the test set starts: `fraction` of the targets' time span before its end.
pub fn test_start(d: &Dataset, fraction: f64) -> Option<DateTime<Utc>> {
    let (first, last) = (d.target.first()?, d.target.last()?);
    let span = (*last - *first).num_seconds() as f64;
    Some(*first + chrono::Duration::seconds((span * (1.0 - fraction)) as i64))
}

/// Where the validation window of a training set starts: `days` before its last target, but
/// never before the last fifth of its span (a short snapshot keeps most rows to fit on).
pub fn validation_start(d: &Dataset, days: i64) -> Option<DateTime<Utc>> {
    let fifth = test_start(d, 0.2)?;
    Some((*d.target.last()? - chrono::Duration::days(days)).max(fifth))
}

/// Train (targets before `test_from`) and test (from it) sets: a cut in time, never shuffled.
pub fn split(d: &Dataset, test_from: DateTime<Utc>) -> (Dataset, Dataset) {
    (d.filter(|t| t < test_from), d.filter(|t| t >= test_from))
}

pub fn persistence() -> Trained {
    Trained {
        name: "persistence",
        model: Model::Persistence,
        params: Vec::new(),
        train_seconds: 0.0,
        trials: Vec::new(),
        held_out: true,
        chosen: None,
    }
}

/// Ridge regression on standardized features ([`airq_model::linear::fit_ridge`]).
pub fn linear(train: &Dataset) -> anyhow::Result<Trained> {
    let started = Instant::now();
    let model = linear::fit_ridge(&train.x, &train.y).context("fitting the linear model")?;
    Ok(Trained {
        name: "linear",
        model,
        params: vec![
            ("standardized".into(), "true".into()),
            ("solver".into(), "ridge normal equations, Cholesky".into()),
            ("ridge".into(), format!("{} x rows", linear::RIDGE)),
        ],
        train_seconds: started.elapsed().as_secs_f64(),
        trials: Vec::new(),
        held_out: false,
        chosen: None,
    })
}

fn max_features(f: usize, fraction: f64) -> usize {
    ((f as f64 * fraction).round() as usize).clamp(1, f.max(1))
}

/// Trees learn the change from the last hour's PM2.5 (feature 0), not the level.
fn change(d: &Dataset) -> Vec<f64> {
    d.y.iter().zip(&d.last).map(|(y, last)| y - last).collect()
}

fn on_change(inner: Model) -> Model {
    Model::Delta {
        from: 0,
        inner: Box::new(inner),
    }
}

pub fn forest(
    train: &Dataset,
    binned: &Binned,
    cfg: &TrainSettings,
    progress: &(dyn Fn() + Sync),
) -> Trained {
    let started = Instant::now();
    let fc = &cfg.forest;
    let p = ForestParams {
        trees: fc.trees,
        tree: TreeParams {
            max_depth: fc.max_depth,
            min_leaf: fc.min_leaf,
            max_features: max_features(binned.features(), fc.max_features),
        },
        seed: cfg.seed,
        threads: cfg.threads,
    };
    let trees = tree::fit_forest(binned, &change(train), p, progress);
    Trained {
        name: "random_forest",
        model: on_change(Model::Forest { trees }),
        params: vec![
            ("trees".into(), fc.trees.to_string()),
            ("max_depth".into(), fc.max_depth.to_string()),
            ("min_leaf".into(), fc.min_leaf.to_string()),
            ("max_features".into(), p.tree.max_features.to_string()),
            ("bins".into(), "255".into()),
            ("target".into(), "change from the last hour".into()),
            ("seed".into(), cfg.seed.to_string()),
        ],
        train_seconds: started.elapsed().as_secs_f64(),
        trials: Vec::new(),
        held_out: false,
        chosen: None,
    }
}

/// Gradient boosting with early stopping: the last `validation_days` of the training rows
/// (the window just before the test set) watch the rounds; the trees are fitted on the rows
/// before it. The settings and each of their `search` variants are fitted; the one with the
/// lowest validation RMSE is the candidate, the others are its [`Trained::trials`].
pub fn boosting(train: &Dataset, cfg: &TrainSettings, progress: &(dyn Fn() + Sync)) -> Trained {
    let started = Instant::now();
    let window = validation_start(train, cfg.boosting.validation_days);
    let (fit, validation) = match window {
        Some(from) => split(train, from),
        None => (train.clone(), train.clone()),
    };
    let binned = Binned::new(&fit.x, 255);
    let (fit_change, watch) = (change(&fit), change(&validation));
    let v = (!validation.is_empty()).then_some(Validation {
        x: &validation.x,
        target: &watch,
    });
    let settings: Vec<BoostingSettings> = std::iter::once(cfg.boosting.clone())
        .chain(cfg.boosting.search.iter().map(|s| cfg.boosting.with(s)))
        .collect();
    let mut trials: Vec<(Trial, Model)> = settings
        .iter()
        .map(|bc| {
            let t0 = Instant::now();
            let p = BoostParams {
                rounds: bc.rounds,
                learning_rate: bc.learning_rate,
                max_leaves: bc.max_leaves,
                max_depth: bc.max_depth,
                min_leaf: bc.min_leaf,
                lambda: bc.lambda,
                subsample: bc.subsample,
                feature_fraction: bc.feature_fraction,
                patience: bc.patience,
                seed: cfg.seed,
                threads: cfg.threads,
            };
            let b = boost::fit_boosted(&fit.x, &binned, &fit_change, p, v, progress);
            let trial = Trial {
                params: boosting_params(bc, b.trees.len(), validation.len(), cfg.seed),
                validation_rmse: b.curve.iter().copied().fold(f64::NAN, f64::min),
                fit_seconds: t0.elapsed().as_secs_f64(),
            };
            let model = on_change(Model::Boosted {
                base: b.base,
                learning_rate: bc.learning_rate,
                trees: b.trees,
            });
            (trial, model)
        })
        .collect();
    let best = (0..trials.len())
        .min_by(|&a, &b| {
            let r = |i: usize| trials[i].0.validation_rmse;
            r(a).total_cmp(&r(b))
        })
        .unwrap_or(0);
    let (chosen, model) = trials.swap_remove(best);
    let chosen_settings = settings.get(best).cloned();
    // Without a validation window there is nothing to choose a share on.
    let share_max = window.map_or(0.0, |_| cfg.boosting.linear_share_max);
    let (model, blended) = with_linear_share(model, &fit, &validation, share_max);
    let mut params = chosen.params.clone();
    if let Some((share, rmse)) = blended {
        params.push(("linear_share".into(), format!("{share:.2}")));
        params.push(("validation_rmse_blended".into(), format!("{rmse:.4}")));
    }
    params.push(("search_trials".into(), settings.len().to_string()));
    params.push((
        "validation_rmse".into(),
        format!("{:.4}", chosen.validation_rmse),
    ));
    params.push(("fit_seconds".into(), format!("{:.1}", chosen.fit_seconds)));
    let mut all: Vec<Trial> = trials.into_iter().map(|(t, _)| t).collect();
    all.insert(best.min(all.len()), chosen);
    Trained {
        name: "gradient_boosting",
        model,
        params,
        train_seconds: started.elapsed().as_secs_f64(),
        trials: all,
        held_out: true,
        chosen: chosen_settings,
    }
}

/// The boosting blended with a ridge model fitted on the same rows: the linear share (at most
/// `max`) with the lowest RMSE on the validation window, as served (floored at 0); a share of 0
/// keeps the boosting alone. Returns the model and, when a share was chosen, it and that RMSE.
fn with_linear_share(
    boosted: Model,
    fit: &Dataset,
    validation: &Dataset,
    max: f64,
) -> (Model, Option<(f64, f64)>) {
    if max <= 0.0 || validation.is_empty() {
        return (boosted, None);
    }
    let (rows, held_out) = (
        (fit.x.as_slice(), fit.y.as_slice()),
        (validation.x.as_slice(), validation.y.as_slice()),
    );
    match linear::choose_share(&boosted, rows, held_out, max) {
        Ok(c) => (
            linear::blend(boosted, c.linear, c.share),
            Some((c.share, c.validation_rmse)),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "no linear share: the ridge model did not fit");
            (boosted, None)
        }
    }
}

/// A model of the same kind and settings as `c`, fitted on `train` (e.g. another horizon's
/// rows); a boosting search is not run again, its chosen settings are used.
pub fn fit_like(c: &Trained, train: &Dataset, cfg: &TrainSettings) -> anyhow::Result<Trained> {
    match c.name {
        "persistence" => Ok(persistence()),
        "linear" => linear(train),
        "random_forest" => Ok(forest(train, &Binned::new(&train.x, 255), cfg, &|| {})),
        "gradient_boosting" => {
            let mut cfg = cfg.clone();
            cfg.boosting = c.chosen.clone().unwrap_or(cfg.boosting);
            cfg.boosting.search.clear();
            Ok(boosting(train, &cfg, &|| {}))
        }
        other => anyhow::bail!("no way to refit a {other} model"),
    }
}

fn boosting_params(
    bc: &BoostingSettings,
    rounds: usize,
    validation_rows: usize,
    seed: u64,
) -> Vec<(String, String)> {
    [
        ("max_rounds", bc.rounds.to_string()),
        ("rounds", rounds.to_string()),
        ("learning_rate", bc.learning_rate.to_string()),
        ("max_leaves", bc.max_leaves.to_string()),
        ("max_depth", bc.max_depth.to_string()),
        ("min_leaf", bc.min_leaf.to_string()),
        ("lambda", bc.lambda.to_string()),
        ("subsample", bc.subsample.to_string()),
        ("feature_fraction", bc.feature_fraction.to_string()),
        ("patience", bc.patience.to_string()),
        ("validation_days", bc.validation_days.to_string()),
        ("validation_rows", validation_rows.to_string()),
        ("bins", "255".into()),
        ("target", "change from the last hour".into()),
        ("seed", seed.to_string()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .into()
}

/// A model's scores on a data set, overall and per sensor, with its predictions.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub overall: Scores,
    pub per_sensor: BTreeMap<String, Scores>,
    pub predicted: Vec<f64>,
}

pub fn evaluate(model: &Model, d: &Dataset) -> Evaluation {
    let model = Predictor::new(model);
    // Served forecasts are never below 0 (a tree on the change can undershoot).
    let predicted: Vec<f64> = d.x.iter().map(|x| model.predict(x).max(0.0)).collect();
    let mut by_sensor: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for ((sensor, y), p) in d.sensor.iter().zip(&d.y).zip(&predicted) {
        let e = by_sensor.entry(sensor).or_default();
        e.0.push(*y);
        e.1.push(*p);
    }
    Evaluation {
        overall: scores(&d.y, &predicted),
        per_sensor: by_sensor
            .into_iter()
            .map(|(s, (t, p))| (s.to_owned(), scores(&t, &p)))
            .collect(),
        predicted,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use airq_features::{FeatureSpec, Hourly, Network, Series, build_dataset};
    use chrono::Duration;

    use super::*;
    use crate::config::{BoostingVariant, ForestSettings};

    pub(crate) fn data() -> Dataset {
        build_dataset(&FeatureSpec::default(), &series())
    }

    /// Two weeks of an hourly AR(1)-like series with a daily cycle, 2 sensors.
    /// Two sensors 1.4 km apart.
    pub(crate) fn series() -> Network {
        let t0: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
        let sensors = ["a", "b"].map(|s| {
            let mut v = 30.0;
            let series: Series = (0..24 * 14)
                .map(|h| {
                    let daily = 10.0 * (std::f64::consts::TAU * (h % 24) as f64 / 24.0).sin();
                    v = 0.8 * v + 0.2 * (30.0 + daily) + ((h * 7919) % 11) as f64 / 11.0;
                    (
                        t0 + Duration::hours(h),
                        Hourly {
                            pm2_5: Some(v),
                            pm10: Some(2.0 * v),
                            no2: Some(40.0 - daily),
                        },
                    )
                })
                .collect();
            (s.to_owned(), series)
        });
        Network {
            series: sensors.into_iter().collect(),
            locations: [
                ("a".to_owned(), [48.85, 2.35]),
                ("b".to_owned(), [48.86, 2.36]),
            ]
            .into(),
        }
    }

    pub(crate) fn settings() -> TrainSettings {
        TrainSettings {
            seed: 1,
            test_fraction: 0.25,
            threads: 2,
            horizons: vec![6],
            interval_coverage: 0.8,
            forest: ForestSettings {
                trees: 30,
                max_depth: 10,
                min_leaf: 3,
                max_features: 0.33,
            },
            boosting: BoostingSettings {
                rounds: 200,
                learning_rate: 0.1,
                max_leaves: 15,
                max_depth: 0,
                min_leaf: 5,
                lambda: 1.0,
                subsample: 0.8,
                feature_fraction: 0.8,
                patience: 20,
                validation_days: 2,
                linear_share_max: 0.5,
                search: vec![BoostingVariant {
                    max_leaves: Some(4),
                    ..BoostingVariant::default()
                }],
            },
        }
    }

    #[test]
    fn the_split_is_a_cut_in_time() {
        let d = data();
        let from = test_start(&d, 0.25).unwrap();
        let (train, test) = split(&d, from);
        assert_eq!(train.len() + test.len(), d.len());
        assert!(train.target.iter().all(|t| *t < from) && test.target.iter().all(|t| *t >= from));
    }

    #[test]
    fn the_validation_window_is_the_end_of_the_training_set_and_at_most_a_fifth_of_it() {
        let d = data();
        let (last, first) = (*d.target.last().unwrap(), d.target[0]);
        assert_eq!(
            validation_start(&d, 2),
            Some(last - Duration::days(2)),
            "2 of 14 days"
        );
        let capped = validation_start(&d, 60).unwrap();
        assert_eq!(capped, test_start(&d, 0.2).unwrap());
        assert!(capped > first + Duration::days(10), "{capped}");
    }

    #[test]
    fn every_model_beats_persistence_on_a_learnable_series_and_is_deterministic() {
        let d = data();
        let (train, test) = split(&d, test_start(&d, 0.25).unwrap());
        let binned = Binned::new(&train.x, 255);
        let cfg = settings();
        let base = evaluate(&persistence().model, &test).overall.rmse;
        let lin = evaluate(&linear(&train).unwrap().model, &test).overall.rmse;
        let f1 = forest(&train, &binned, &cfg, &|| {});
        let f2 = forest(&train, &binned, &cfg, &|| {});
        assert_eq!(f1.model, f2.model, "same seed, same forest");
        let rf = evaluate(&f1.model, &test).overall.rmse;
        let boosted = boosting(&train, &cfg, &|| {});
        assert_eq!(
            boosted.trials.len(),
            2,
            "the settings and their one variant"
        );
        let lowest = boosted
            .trials
            .iter()
            .map(|t| t.validation_rmse)
            .fold(f64::INFINITY, f64::min);
        let chosen = boosted.params.iter().find(|(k, _)| k == "validation_rmse");
        assert_eq!(chosen.map(|(_, v)| v.clone()), Some(format!("{lowest:.4}")));
        let gb = evaluate(&boosted.model, &test).overall.rmse;
        assert!(
            lin < base && rf < base && gb < base,
            "persistence {base}, linear {lin}, forest {rf}, boosting {gb}"
        );
    }
}
