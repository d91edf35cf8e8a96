//! The longer horizons and the prediction intervals (pure: data in, models and numbers out).
//! The best one-hour candidate's kind is refitted for each of `[train] horizons`
//! ([`horizons`]); every hour ahead gets an interval calibrated through the serving path on the
//! validation window by models that did not see it ([`intervals`]), and is scored on the test
//! rows as predict-api serves it ([`served_scores`]).

use airq_features::{Dataset, FeatureSpec, Network, build_dataset_ahead, each_target};
use airq_model::horizon::Plan;
use airq_model::{Anchors, Artifact, Horizon, Interval, Model, Scores, scores};
use chrono::{DateTime, Utc};

use crate::config::TrainSettings;
use crate::train::{Trained, fit_like, split, validation_start};

/// A model of `c`'s kind that did not see the validation window of its training rows
/// `train` (the last `boosting.validation_days`): `c`'s own model when it was fitted without
/// it, else the same kind refitted on the rows before it. Intervals are calibrated on it.
pub fn held_out_model(c: &Trained, train: &Dataset, cfg: &TrainSettings) -> anyhow::Result<Model> {
    if c.held_out {
        return Ok(c.model.clone());
    }
    let Some(from) = validation_start(train, cfg.boosting.validation_days) else {
        return Ok(c.model.clone());
    };
    let fit = train.filter(|t| t < from);
    if fit.len() < 2 {
        return Ok(c.model.clone());
    }
    Ok(fit_like(c, &fit, cfg)?.model)
}

/// A model for one horizon, and its twin that did not see the validation window.
#[derive(Debug, Clone)]
pub struct HorizonFit {
    pub hours: u32,
    pub model: Model,
    pub held_out: Model,
    pub train_rows: usize,
    pub train_seconds: f64,
}

/// The chosen one-hour candidate `c`, then its kind refitted for each of `cfg.horizons`
/// (split at the same `test_from`). A horizon without training or test rows is left out.
pub fn horizons(
    c: &Trained,
    spec: &FeatureSpec,
    net: &Network,
    train_set: &Dataset,
    test_from: DateTime<Utc>,
    cfg: &TrainSettings,
) -> anyhow::Result<Vec<HorizonFit>> {
    let mut out = vec![HorizonFit {
        hours: 1,
        model: c.model.clone(),
        held_out: held_out_model(c, train_set, cfg)?,
        train_rows: train_set.len(),
        train_seconds: c.train_seconds,
    }];
    let mut hours: Vec<u32> = cfg.horizons.iter().copied().filter(|h| *h > 1).collect();
    hours.sort_unstable();
    hours.dedup();
    for h in hours {
        let d = build_dataset_ahead(spec, net, h);
        let (train, test) = split(&d, test_from);
        if train.len() < 2 || test.is_empty() {
            tracing::warn!(
                hours = h,
                train = train.len(),
                test = test.len(),
                "horizon left out: no rows"
            );
            continue;
        }
        let fitted = fit_like(c, &train, cfg)?;
        tracing::info!(
            hours = h,
            rows = train.len(),
            seconds = fitted.train_seconds,
            "horizon trained"
        );
        out.push(HorizonFit {
            hours: h,
            held_out: held_out_model(&fitted, &train, cfg)?,
            model: fitted.model,
            train_rows: train.len(),
            train_seconds: fitted.train_seconds,
        });
    }
    Ok(out)
}

/// The longer horizons of `fits` as an artifact lists them, each with the model `pick` takes.
fn longer(fits: &[HorizonFit], pick: impl Fn(&HorizonFit) -> &Model) -> Vec<Horizon> {
    fits.iter()
        .filter(|f| f.hours > 1)
        .map(|f| Horizon {
            hours: f.hours,
            model: pick(f).clone(),
        })
        .collect()
}

/// The artifact of the one-hour candidate `c` and the longer horizons of `fits` (without
/// intervals or locations).
pub fn artifact(c: &Trained, spec: &FeatureSpec, fits: &[HorizonFit]) -> Artifact {
    let mut a = Artifact::new(c.name, spec.clone(), c.model.clone());
    a.horizons = longer(fits, |f| &f.model);
    a
}

/// The held-out twins of `fits` laid out as predict-api serves them: what the intervals are
/// calibrated on.
pub fn held_out_anchors(fits: &[HorizonFit]) -> Anchors {
    // Never empty: `horizons` starts with the one-hour model.
    let one = fits
        .first()
        .map_or(Model::Persistence, |f| f.held_out.clone());
    Anchors::new(&one, &longer(fits, |f| &f.held_out), &[])
}

/// The forecasts of `hours` ahead as predict-api serves them (a trained horizon's model, or
/// the interpolation between the two around it) on the rows whose target is in `[from, to)`
/// (`each_target`: only the window's hours get features, once per model they go to):
/// (truth, forecast, the last hour's PM2.5) of each.
fn served_rows(
    anchors: &Anchors,
    spec: &FeatureSpec,
    net: &Network,
    hours: u32,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut y, mut value, mut last) = (vec![], vec![], vec![]);
    let Some(plan) = anchors.plan(hours) else {
        return (y, value, last);
    };
    let mut values = vec![f64::NAN; anchors.anchors.len()];
    each_target(spec, net, hours, window, |row| {
        for a in plan.uses() {
            // A row needs its features: the same history for every horizon.
            let at = anchors.anchors[a].hours;
            let Ok(x) = spec.features_ahead(row.series, row.t, at, row.neighbours) else {
                return;
            };
            values[a] = anchors.value(a, &x);
        }
        y.push(row.y);
        value.push(plan.value(&values));
        last.push(row.last);
    });
    (y, value, last)
}

/// The interval of every hour ahead from 1 to the longest trained horizon, calibrated through
/// the serving path on the rows whose target is in `[from, to)` by models that did not see
/// them (`held_out`). Empty when an hour has too few rows for `coverage`.
pub fn intervals(
    held_out: &Anchors,
    spec: &FeatureSpec,
    net: &Network,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    coverage: f64,
) -> Vec<Interval> {
    let mut out = Vec::new();
    for h in 1..=held_out.max_hours() {
        let (y, value, last) = served_rows(held_out, spec, net, h, (from, to));
        match Interval::calibrate(&y, &value, &last, coverage) {
            Some(iv) => out.push(iv),
            None => {
                tracing::warn!(
                    hours = h,
                    rows = y.len(),
                    "no intervals: too few calibration rows"
                );
                return Vec::new();
            }
        }
    }
    out
}

/// How the forecasts of one horizon did on its test rows.
#[derive(Debug, Clone, PartialEq)]
pub struct HorizonScore {
    pub hours: u32,
    /// Served by interpolating between two trained horizons.
    pub interpolated: bool,
    pub test: Scores,
    pub persistence: Scores,
    /// Share of test rows inside their interval, and the interval's mean width (NaN: none).
    pub coverage: f64,
    pub mean_width: f64,
}

/// Every hour from 1 to the longest trained horizon, forecast as predict-api serves it, on
/// the rows whose target is at or after `test_from`.
pub fn served_scores(
    anchors: &Anchors,
    spec: &FeatureSpec,
    net: &Network,
    test_from: DateTime<Utc>,
) -> Vec<HorizonScore> {
    (1..=anchors.max_hours())
        .map(|h| {
            let (y, value, last) =
                served_rows(anchors, spec, net, h, (test_from, DateTime::<Utc>::MAX_UTC));
            let (coverage, mean_width) = match anchors.interval(h) {
                Some(iv) if !y.is_empty() => {
                    let width = value
                        .iter()
                        .zip(&last)
                        .map(|(p, l)| {
                            let (lo, hi) = iv.bounds(*p, *l);
                            hi - lo
                        })
                        .sum::<f64>();
                    (iv.coverage_of(&y, &value, &last), width / y.len() as f64)
                }
                _ => (f64::NAN, f64::NAN),
            };
            HorizonScore {
                hours: h,
                interpolated: matches!(anchors.plan(h), Some(Plan::Between { .. })),
                test: scores(&y, &value),
                persistence: scores(&y, &last),
                coverage,
                mean_width,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use airq_features::build_dataset;

    use super::*;
    use crate::train::tests::{series, settings};
    use crate::train::{boosting, evaluate, linear, test_start};

    #[test]
    fn longer_horizons_are_refitted_with_intervals_that_cover_the_test_rows() {
        let sensors = series();
        let spec = FeatureSpec::default();
        let d = build_dataset(&spec, &sensors);
        let from = test_start(&d, 0.25).unwrap();
        let (train, test) = split(&d, from);
        let cfg = settings();
        let gb = boosting(&train, &cfg, &|| {});
        let fits = horizons(&gb, &spec, &sensors, &train, from, &cfg).unwrap();
        assert_eq!(fits.iter().map(|f| f.hours).collect::<Vec<_>>(), [1, 6]);
        assert!(
            fits.iter().all(|f| f.held_out == f.model),
            "boosting never sees its window"
        );
        let window = (validation_start(&train, 2).unwrap(), from);
        let calibrated = intervals(&held_out_anchors(&fits), &spec, &sensors, window, 0.8);
        assert_eq!(calibrated.len(), 6, "one per hour ahead");
        let mut artifact = artifact(&gb, &spec, &fits);
        artifact.intervals = calibrated;
        let served = artifact.anchors();
        let scored = served_scores(&served, &spec, &sensors, from);
        assert_eq!(
            scored.iter().map(|s| s.hours).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6]
        );
        for s in &scored {
            assert_eq!(s.interpolated, !matches!(s.hours, 1 | 6));
            // Calibrated on 2 days of the same law: near its coverage on the test days.
            assert!((0.6..=1.0).contains(&s.coverage), "{s:?}");
            assert!(s.test.rmse < s.persistence.rmse, "{s:?}");
            assert!(s.test.n > 0);
        }
        // The one-hour anchor scores as the trainer's evaluation does (rows in another order).
        let one = evaluate(&gb.model, &test).overall;
        assert_eq!(scored[0].test.n, one.n);
        assert!(
            (scored[0].test.rmse - one.rmse).abs() < 1e-9,
            "{:?} against {one:?}",
            scored[0].test
        );
        // The 6-hour model forecasts 6 hours after its inputs.
        assert_eq!(
            scored[5].test.n,
            split(&build_dataset_ahead(&spec, &sensors, 6), from)
                .1
                .len()
        );
        // A forest or a linear model is calibrated by a refit without the window.
        let lin = linear(&train).unwrap();
        assert!(!lin.held_out);
        assert_ne!(held_out_model(&lin, &train, &cfg).unwrap(), lin.model);
    }
}
