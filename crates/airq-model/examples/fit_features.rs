//! Gradient boosting on the features `trainer train --export-features DIR` wrote (the files
//! the references of bench/forecast_refs.py read), timed: the like-for-like comparison of
//! docs/benchmarks.md. Like the trainer it learns the change from the last hour (feature 0)
//! and stops on the last `AIRQ_VALIDATION_DAYS` (default 60) of the training rows.
//!
//! Usage: cargo run --release -p airq-model --example fit_features -- DIR [key=value ...]
//! with keys of [`BoostParams`] (rounds, learning_rate, max_leaves, max_depth, min_leaf,
//! lambda, subsample, feature_fraction, patience, seed, threads), `refit=1` to refit on
//! every training row with the best number of rounds, and `linear_share_max` (default 0.5, as
//! the trainer): a ridge model fitted on the same rows blended in, its share chosen on the
//! validation window (`airq_model::linear`).

use std::time::Instant;

use airq_model::boost::{BoostParams, Validation, fit_boosted};
use airq_model::linear::{blend, choose_share};
use airq_model::tree::Binned;
use airq_model::{Model, Predictor};

struct Rows {
    x: Vec<Vec<f64>>,
    y: Vec<f64>,
    /// Target time, RFC 3339 (sorts as time: all in UTC).
    target: Vec<String>,
}

type Error = Box<dyn std::error::Error>;

fn read(path: &str) -> Result<Rows, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let nf = header
        .iter()
        .position(|h| *h == "y")
        .ok_or(format!("{path}: no y column"))?;
    let mut r = Rows {
        x: Vec::new(),
        y: Vec::new(),
        target: Vec::new(),
    };
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let num = |s: &str| s.parse::<f64>().unwrap_or(f64::NAN);
        r.x.push(cells[..nf].iter().map(|c| num(c)).collect());
        r.y.push(num(cells[nf]));
        r.target.push(cells[nf + 1].to_owned());
    }
    Ok(r)
}

fn rmse(truth: &[f64], pred: &[f64]) -> f64 {
    let se: f64 = truth.iter().zip(pred).map(|(t, p)| (t - p).powi(2)).sum();
    (se / truth.len().max(1) as f64).sqrt()
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .ok_or("usage: fit_features DIR [key=value ...]")?;
    let mut p = BoostParams {
        rounds: 3000,
        learning_rate: 0.05,
        max_leaves: 255,
        max_depth: 0,
        min_leaf: 300,
        lambda: 100.0,
        subsample: 0.8,
        feature_fraction: 0.8,
        patience: 15,
        seed: 42,
        threads: 2,
    };
    let mut refit = false;
    let mut share_max = 0.5;
    for kv in &args[1..] {
        let (k, v) = kv.split_once('=').ok_or(format!("{kv}: not key=value"))?;
        let v: f64 = v.parse().map_err(|_| format!("{kv}: not a number"))?;
        match k {
            "rounds" => p.rounds = v as usize,
            "learning_rate" => p.learning_rate = v,
            "max_leaves" => p.max_leaves = v as usize,
            "max_depth" => p.max_depth = v as usize,
            "min_leaf" => p.min_leaf = v as usize,
            "lambda" => p.lambda = v,
            "subsample" => p.subsample = v,
            "feature_fraction" => p.feature_fraction = v,
            "patience" => p.patience = v as usize,
            "seed" => p.seed = v as u64,
            "threads" => p.threads = v as usize,
            "refit" => refit = v != 0.0,
            "linear_share_max" => share_max = v,
            _ => return Err(format!("unknown key {k}").into()),
        }
    }
    let days: i64 = std::env::var("AIRQ_VALIDATION_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let train = read(&format!("{dir}/train.csv"))?;
    let test = read(&format!("{dir}/test.csv"))?;
    // The validation window: the last `days` of the training targets.
    let last = train.target.iter().max().cloned().unwrap_or_default();
    let cut = chrono::DateTime::parse_from_rfc3339(&last)
        .map(|t| (t - chrono::Duration::days(days)).to_rfc3339())
        .unwrap_or_default();
    let change = |r: &Rows, i: usize| r.y[i] - r.x[i][0];
    let (mut fx, mut fy, mut vx, mut vy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The levels, for the ridge model and the blend.
    let (mut fy_level, mut vy_level) = (Vec::new(), Vec::new());
    for i in 0..train.y.len() {
        let (x, y, level) = if train.target[i] >= cut {
            (&mut vx, &mut vy, &mut vy_level)
        } else {
            (&mut fx, &mut fy, &mut fy_level)
        };
        x.push(train.x[i].clone());
        y.push(change(&train, i));
        level.push(train.y[i]);
    }
    let started = Instant::now();
    let binned = Binned::new(&fx, 255);
    let v = Validation {
        x: &vx,
        target: &vy,
    };
    let mut fit = fit_boosted(&fx, &binned, &fy, p, Some(v), &|| {});
    let mut seconds = started.elapsed().as_secs_f64();
    let best = fit.trees.len();
    let best_validation = fit.curve.iter().copied().fold(f64::NAN, f64::min);
    if refit {
        let all_y: Vec<f64> = (0..train.y.len()).map(|i| change(&train, i)).collect();
        let started = Instant::now();
        let binned = Binned::new(&train.x, 255);
        let q = BoostParams { rounds: best, ..p };
        fit = fit_boosted(&train.x, &binned, &all_y, q, None, &|| {});
        seconds += started.elapsed().as_secs_f64();
    }
    // The change from the last hour, as the trainer models it.
    let mut model = Model::Delta {
        from: 0,
        inner: Box::new(Model::Boosted {
            base: fit.base,
            learning_rate: p.learning_rate,
            trees: fit.trees,
        }),
    };
    // The linear share, chosen on the validation window (as the trainer does).
    let started = Instant::now();
    let (mut share, mut blended_validation) = (0.0, f64::NAN);
    if share_max > 0.0 {
        let c = choose_share(&model, (&fx, &fy_level), (&vx, &vy_level), share_max)
            .map_err(|e| e.to_string())?;
        (share, blended_validation) = (c.share, c.validation_rmse);
        model = blend(model, c.linear, share);
    }
    seconds += started.elapsed().as_secs_f64();
    let served = Predictor::new(&model);
    let pred: Vec<f64> = test.x.iter().map(|x| served.predict(x)).collect();
    println!(
        "boosting {p:?} refit={refit} linear_share {share:.2} (at most {share_max}, blended validation RMSE {blended_validation:.3}): fit rows {} validation rows {}, rounds {best}, best validation RMSE {:.3}, test RMSE {:.3}, floored at 0 (as served) {:.3}, fit seconds {seconds:.1}",
        fx.len(),
        vx.len(),
        best_validation,
        rmse(&test.y, &pred),
        rmse(
            &test.y,
            &pred.iter().map(|v| v.max(0.0)).collect::<Vec<_>>()
        )
    );
    Ok(())
}
