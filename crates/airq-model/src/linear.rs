//! Ridge regression on standardized features, and the blend of a model with it.
//!
//! Trees predict in steps and cannot follow a trend past the levels they saw; a linear model
//! is smooth and extrapolates. A small share of a linear model in a tree ensemble's forecast
//! is a cheap stack of the two ([`best_share`] picks it on held-out rows).

use crate::{Model, Predictor};

/// The ridge penalty, relative to the rows: `lambda = RIDGE * n` on standardized features
/// (whose Gram matrix has `n` on its diagonal), a 0.1 % shrinkage.
pub const RIDGE: f64 = 1e-3;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LinearError {
    #[error("{rows} training rows for {features} features")]
    TooFewRows { rows: usize, features: usize },
    #[error("the normal equations are not positive definite")]
    NotPositiveDefinite,
}

/// Least squares with a small ridge penalty on standardized features. Some features are
/// exact combinations of others (`nb_change1 = nb_pm2_5_lag0 - nb_pm2_5_lag1`, `nb_dev`), which
/// makes plain least squares singular (linfa-linear's OLS returned weights of 1e12 on them);
/// the penalty makes the normal equations solvable and changes nothing measurable otherwise.
pub fn fit_ridge(x: &[Vec<f64>], y: &[f64]) -> Result<Model, LinearError> {
    let (n, f) = (x.len().min(y.len()), x.first().map_or(0, Vec::len));
    if n <= f {
        return Err(LinearError::TooFewRows {
            rows: n,
            features: f,
        });
    }
    let mean: Vec<f64> = (0..f)
        .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n as f64)
        .collect();
    let scale: Vec<f64> = (0..f)
        .map(|j| {
            let var = x.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n as f64;
            if var > 1e-12 { var.sqrt() } else { 1.0 }
        })
        .collect();
    let y_mean = y.iter().sum::<f64>() / n as f64;
    // The normal equations (X'X + lambda I) w = X'(y - mean y).
    let mut gram = vec![vec![0.0; f]; f];
    let mut rhs = vec![0.0; f];
    let mut z = vec![0.0; f];
    for (r, y) in x.iter().zip(y) {
        for j in 0..f {
            z[j] = (r[j] - mean[j]) / scale[j];
        }
        for j in 0..f {
            rhs[j] += z[j] * (y - y_mean);
            for k in 0..=j {
                gram[j][k] += z[j] * z[k];
            }
        }
    }
    for (j, row) in gram.iter_mut().enumerate() {
        row[j] += RIDGE * n as f64;
    }
    let weights = solve_spd(gram, rhs)?;
    Ok(Model::Linear {
        mean,
        scale,
        weights,
        intercept: y_mean,
    })
}

/// Solves `a x = b` for a symmetric positive definite `a` (its lower triangle is read) by
/// Cholesky decomposition.
fn solve_spd(mut a: Vec<Vec<f64>>, b: Vec<f64>) -> Result<Vec<f64>, LinearError> {
    let f = b.len();
    for j in 0..f {
        let d = a[j][j] - (0..j).map(|k| a[j][k] * a[j][k]).sum::<f64>();
        if !(d > 0.0 && d.is_finite()) {
            return Err(LinearError::NotPositiveDefinite);
        }
        a[j][j] = d.sqrt();
        for i in j + 1..f {
            a[i][j] = (a[i][j] - (0..j).map(|k| a[i][k] * a[j][k]).sum::<f64>()) / a[j][j];
        }
    }
    // L y = b, then L' x = y.
    let mut y = vec![0.0; f];
    for i in 0..f {
        y[i] = (b[i] - (0..i).map(|k| a[i][k] * y[k]).sum::<f64>()) / a[i][i];
    }
    let mut x = vec![0.0; f];
    for i in (0..f).rev() {
        x[i] = (y[i] - (i + 1..f).map(|k| a[k][i] * x[k]).sum::<f64>()) / a[i][i];
    }
    Ok(x)
}

/// Shares tried by [`best_share`]: 0, 0.05, 0.10, ...
const SHARE_STEP: f64 = 0.05;

/// The share `w` (0 to `max`, by 0.05) for which `(1 - w) * model + w * linear` has the lowest
/// RMSE against `truth`, the predictions floored at 0 as they are served; with that RMSE. The
/// smaller share wins a tie, so 0 (the model alone) unless blending helps.
pub fn best_share(model: &[f64], linear: &[f64], truth: &[f64], max: f64) -> (f64, f64) {
    let rmse = |w: f64| {
        let (se, n) =
            model
                .iter()
                .zip(linear)
                .zip(truth)
                .fold((0.0, 0usize), |(se, n), ((m, l), t)| {
                    let p = ((1.0 - w) * m + w * l).max(0.0);
                    (se + (t - p).powi(2), n + 1)
                });
        (se / n.max(1) as f64).sqrt()
    };
    let steps = (max / SHARE_STEP + 1e-9).floor().max(0.0) as usize;
    (0..=steps)
        .map(|i| i as f64 * SHARE_STEP)
        .map(|w| (w, rmse(w)))
        .fold(
            (0.0, f64::INFINITY),
            |best, (w, r)| {
                if r < best.1 { (w, r) } else { best }
            },
        )
}

/// A ridge model and the share of it to blend into another model ([`choose_share`]).
#[derive(Debug, Clone)]
pub struct Chosen {
    pub linear: Model,
    pub share: f64,
    /// The blend's RMSE on the held-out rows, as served.
    pub validation_rmse: f64,
}

/// Fits a ridge model on `(x, y)` and picks its share in `model`'s forecast on the held-out
/// rows `(val_x, val_y)` ([`best_share`], at most `max`). Apply it with [`blend`].
pub fn choose_share(
    model: &Model,
    (x, y): (&[Vec<f64>], &[f64]),
    (val_x, val_y): (&[Vec<f64>], &[f64]),
    max: f64,
) -> Result<Chosen, LinearError> {
    let linear = fit_ridge(x, y)?;
    let predicted = |m: &Model| {
        let p = Predictor::new(m);
        val_x.iter().map(|r| p.predict(r)).collect::<Vec<f64>>()
    };
    let (share, validation_rmse) = best_share(&predicted(model), &predicted(&linear), val_y, max);
    Ok(Chosen {
        linear,
        share,
        validation_rmse,
    })
}

/// `(1 - share) * model + share * linear`; the model itself when `share` is 0.
pub fn blend(model: Model, linear: Model, share: f64) -> Model {
    if share <= 0.0 {
        return model;
    }
    Model::Blend {
        parts: vec![(1.0 - share, model), (share, linear)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_recovers_a_linear_law_and_survives_collinear_features() {
        // y = 3 + 2 a - b, and a third feature that is exactly a - b.
        let x: Vec<Vec<f64>> = (0..200)
            .map(|i| {
                let (a, b) = (f64::from(i % 17), f64::from(i % 5) * 1.5);
                vec![a, b, a - b]
            })
            .collect();
        let y: Vec<f64> = x.iter().map(|r| 3.0 + 2.0 * r[0] - r[1]).collect();
        let m = fit_ridge(&x, &y).unwrap();
        for (r, t) in x.iter().zip(&y) {
            assert!((m.predict(r) - t).abs() < 0.05, "{} vs {t}", m.predict(r));
        }
        let spd = solve_spd(vec![vec![4.0, 0.0], vec![2.0, 3.0]], vec![2.0, 5.0]).unwrap();
        assert!(
            (spd[0] + 0.5).abs() < 1e-12 && (spd[1] - 2.0).abs() < 1e-12,
            "{spd:?}"
        );
        assert_eq!(
            fit_ridge(&x[..2], &y[..2]),
            Err(LinearError::TooFewRows {
                rows: 2,
                features: 3
            })
        );
    }

    #[test]
    fn a_linear_law_gets_the_largest_share_in_a_forecast_that_ignores_it() {
        // y = 3 + 2 a - b; persistence forecasts a alone.
        let x: Vec<Vec<f64>> = (0..300)
            .map(|i| vec![f64::from(i % 17), f64::from(i % 5) * 1.5])
            .collect();
        let y: Vec<f64> = x.iter().map(|r| 3.0 + 2.0 * r[0] - r[1]).collect();
        let c = choose_share(
            &Model::Persistence,
            (&x[..200], &y[..200]),
            (&x[200..], &y[200..]),
            0.5,
        )
        .unwrap();
        assert!((c.share - 0.5).abs() < 1e-9, "{}", c.share);
        let p = Predictor::new(&Model::Persistence);
        let alone = best_share(
            &x[200..].iter().map(|r| p.predict(r)).collect::<Vec<_>>(),
            &y[200..],
            &y[200..],
            0.0,
        )
        .1;
        assert!(c.validation_rmse < alone, "{} {alone}", c.validation_rmse);
    }

    #[test]
    fn the_best_share_is_the_one_with_the_lowest_rmse_and_zero_when_blending_does_not_help() {
        let truth = [10.0, 20.0, 30.0, 40.0];
        // One model too high by 4, the other too low by 4: an even blend is exact, but the
        // search stops at `max`.
        let high: Vec<f64> = truth.iter().map(|t| t + 4.0).collect();
        let low: Vec<f64> = truth.iter().map(|t| t - 4.0).collect();
        let (w, rmse) = best_share(&high, &low, &truth, 0.5);
        assert!((w - 0.5).abs() < 1e-9 && rmse < 1e-9, "{w} {rmse}");
        let (w, rmse) = best_share(&high, &low, &truth, 0.3);
        assert!(
            (w - 0.3).abs() < 1e-9 && (rmse - 1.6).abs() < 1e-9,
            "{w} {rmse}"
        );
        // The linear model is no better than the model: the model alone.
        let (w, rmse) = best_share(&truth, &high, &truth, 0.5);
        assert_eq!((w, rmse), (0.0, 0.0));
        assert_eq!(
            blend(Model::Persistence, Model::Persistence, 0.0),
            Model::Persistence
        );
    }
}
