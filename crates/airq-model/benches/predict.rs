//! Time per prediction of a tree ensemble: [`Model::predict`] (a `Vec` of 32-byte nodes per
//! tree) against [`Predictor::predict`] (all trees in one array of 16-byte nodes).
//!
//! The model is the artifact named by `AIRQ_BENCH_ARTIFACT` (a registry's `model.json`, e.g.
//! the production model of bench/train_beijing.sh), or else a gradient boosting with the
//! trainer's default parameters (600 rounds, 63 leaves) fitted on 20,000 synthetic rows of 24
//! features. Run: `cargo bench -p airq-model --bench predict`.

use airq_model::boost::{BoostParams, fit_boosted};
use airq_model::tree::Binned;
use airq_model::{Artifact, Model, Predictor};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Features of the synthetic model.
const FEATURES: usize = 24;

fn rows(n: usize, features: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
    (0..n)
        .map(|_| (0..features).map(|_| rng.random::<f64>() * 100.0).collect())
        .collect()
}

/// The model's name, the model and its number of features.
fn model() -> (String, Model, usize) {
    if let Ok(path) = std::env::var("AIRQ_BENCH_ARTIFACT") {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let a = Artifact::from_json(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
        return (a.name, a.model, a.feature_names.len());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x = rows(20_000, FEATURES, &mut rng);
    let y: Vec<f64> = x
        .iter()
        .map(|r| r[0] * 0.8 + (r[1] * 0.1).sin() * 10.0 + r[2].max(r[3]) * 0.2)
        .collect();
    let p = BoostParams {
        rounds: 600,
        learning_rate: 0.05,
        max_leaves: 63,
        max_depth: 0,
        min_leaf: 50,
        lambda: 1.0,
        subsample: 0.8,
        feature_fraction: 0.8,
        patience: 0,
        seed: 42,
        threads: 2,
    };
    let fit = fit_boosted(&x, &Binned::new(&x, 255), &y, p, None, &|| {});
    let (base, trees) = (fit.base, fit.trees);
    let model = Model::Boosted {
        base,
        learning_rate: p.learning_rate,
        trees,
    };
    ("synthetic gradient_boosting".into(), model, FEATURES)
}

fn bench(c: &mut Criterion) {
    let (name, model, features) = model();
    let flat = Predictor::new(&model);
    let inputs = rows(1024, features, &mut ChaCha8Rng::seed_from_u64(2));
    let mut g = c.benchmark_group(format!("predict {name}"));
    let mut i = 0;
    g.bench_function("Model::predict", |b| {
        b.iter(|| {
            i = (i + 1) % inputs.len();
            model.predict(std::hint::black_box(&inputs[i]))
        })
    });
    g.bench_function("Predictor::predict (flat)", |b| {
        b.iter(|| {
            i = (i + 1) % inputs.len();
            flat.predict(std::hint::black_box(&inputs[i]))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
