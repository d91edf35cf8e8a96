//! The trainer's steps end to end on a real PostgreSQL and a real MLflow server (the
//! native stack): runs, artifacts, registered versions, aliases and stages are checked
//! through the REST API. The DAGs that run these steps are tested in `airflow/tests` (pytest).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use airq_domain::qc::QcConfig;
use airq_domain::sensor::Cleaner;
use airq_sim::faults::FaultRates;
use airq_sim::sim::{FleetSpec, Simulator};
use chrono::{DateTime, Duration, Utc};
use mlflow_client::{MlflowClient, RunStatus, Stage};
use sqlx::PgPool;

fn mlflow_url() -> String {
    std::env::var("AIRQ_TEST_MLFLOW_URL").unwrap_or_else(|_| "http://127.0.0.1:5500".into())
}

fn pg_admin() -> String {
    std::env::var("AIRQ_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into())
}

async fn test_database() -> (String, PgPool) {
    let name = format!("airq_test_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPool::connect(&pg_admin()).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", pg_admin().rsplit_once('/').unwrap().0);
    let pool = PgPool::connect(&url).await.unwrap();
    airq_store::migrate(&pool).await.unwrap();
    (url, pool)
}

/// Days of simulated readings: enough for the models to learn the daily cycle and beat
/// persistence on the held-out days.
const DAYS: i64 = 14;

fn start() -> DateTime<Utc> {
    "2025-03-01T00:00:00Z".parse().unwrap()
}

/// `days` of clean readings from `sensors` sensors, one every 10 minutes, stored as the
/// cleaner stores them.
async fn load_readings(pool: &PgPool, sensors: usize, days: i64, seed: u64) {
    let out = Simulator::new(FleetSpec {
        sensors,
        center: airq_domain::Location {
            lat: 48.85,
            lon: 2.35,
        },
        start: start(),
        interval: Duration::minutes(10),
        seed,
        faults: FaultRates::none(),
    })
    .run((days * 144) as u64);
    let mut cleaner = Cleaner::new(QcConfig::default());
    let processed: Vec<_> = out
        .messages
        .iter()
        .map(|m| cleaner.process(serde_json::from_slice(&m.payload).unwrap()))
        .collect();
    for chunk in processed.chunks(5000) {
        airq_store::readings::insert_readings(pool, chunk)
            .await
            .unwrap();
    }
}

struct Trainer {
    env: Vec<(String, String)>,
}

impl Trainer {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_trainer"))
            .args(args)
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "trainer {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_validate_train_evaluate_promote_through_mlflow() {
    let (db, pool) = test_database().await;
    load_readings(&pool, 3, DAYS, 5).await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (experiment, model) = (format!("exp-{id}"), format!("model-{id}"));
    let t = Trainer {
        env: [
            ("AIRQ__DATABASE__URL", db.as_str()),
            ("AIRQ__MLFLOW__URL", &mlflow_url()),
            ("AIRQ__MLFLOW__EXPERIMENT", &experiment),
            ("AIRQ__MLFLOW__MODEL", &model),
            ("AIRQ__TRAIN__FOREST__TREES", "10"),
            ("AIRQ__TRAIN__BOOSTING__ROUNDS", "30"),
            ("AIRQ__EVALUATE__WINDOW_DAYS", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    };
    let to = (start() + Duration::days(DAYS)).to_rfc3339();
    let snapshot = t.ok(&["extract", "--from", "2025-03-01", "--to", &to]);
    t.ok(&["validate"]);
    assert_eq!(t.ok(&["train"]), "1");

    let c = MlflowClient::new(&mlflow_url()).unwrap();
    let exp = c.get_or_create_experiment(&experiment).await.unwrap();
    let snap = c.get_run(&snapshot).await.unwrap();
    assert_eq!(
        snap.metric("rows"),
        Some(3.0 * 24.0 * DAYS as f64),
        "3 sensors, every hour"
    );
    assert_eq!(snap.tag("airq.validated"), Some("true"));
    assert_eq!(snap.tag("airq.snapshot.sha256").map(str::len), Some(64));
    let csv = c
        .download_artifact(&snap.info.artifact_uri, "dataset/hourly.csv")
        .await
        .unwrap();
    assert_eq!(
        csv.iter().filter(|b| **b == b'\n').count() as i64,
        1 + 3 * 24 * DAYS
    );

    let runs = c
        .search_runs(&[&exp], "tags.`airq.step` = 'train'", 10)
        .await
        .unwrap();
    let mut names: Vec<&str> = runs.iter().map(|r| r.info.run_name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "gradient_boosting",
            "linear",
            "persistence",
            "random_forest"
        ]
    );
    // The boosting search: the settings and the default config's two variants, child runs of
    // the gradient-boosting run.
    let boosting = runs
        .iter()
        .find(|r| r.info.run_name == "gradient_boosting")
        .unwrap();
    let trials = c
        .search_runs(&[&exp], "tags.`airq.step` = 'search'", 10)
        .await
        .unwrap();
    assert_eq!(trials.len(), 3);
    for t in &trials {
        assert_eq!(
            t.tag("mlflow.parentRunId"),
            Some(boosting.info.run_id.as_str())
        );
        assert!(t.metric("validation_rmse").is_some_and(f64::is_finite));
    }
    assert!(boosting.param("validation_rmse").is_some() && boosting.param("rounds").is_some());
    let mut best = ("", f64::INFINITY);
    for r in &runs {
        assert_eq!(r.info.status, RunStatus::Finished);
        let rmse = r.metric("test_rmse").expect("test_rmse");
        assert!(
            rmse.is_finite() && r.metric("test_mae").is_some() && r.metric("test_r2").is_some()
        );
        assert!(r.param("train_rows").is_some() && r.param("test_from").is_some());
        let mut files: Vec<String> = Vec::new();
        for dir in ["", "model", "plots"] {
            for f in c.list_artifacts(&r.info.artifact_uri, dir).await.unwrap() {
                files.push(f.path);
            }
        }
        for want in [
            "feature_importances.json",
            "model/model.json",
            "plots/predicted_vs_actual.png",
            "plots/residuals.png",
        ] {
            assert!(
                files.iter().any(|f| f == want),
                "{} lacks {want}: {files:?}",
                r.info.run_name
            );
        }
        if r.info.run_name != "persistence" && rmse < best.1 {
            best = (r.info.run_name.as_str(), rmse);
        }
    }
    let staging = c
        .get_by_alias(&model, "staging")
        .await
        .unwrap()
        .expect("staging alias");
    assert_eq!(
        (staging.version.as_str(), staging.current_stage),
        ("1", Stage::Staging)
    );
    let staging_run = c.get_run(&staging.run_id).await.unwrap();
    assert_eq!(
        staging_run.info.run_name, best.0,
        "the best candidate is registered"
    );
    let artifact = c
        .download_artifact(&staging.source, "model.json")
        .await
        .unwrap();
    let artifact = airq_model::Artifact::from_json(&artifact).unwrap();
    assert_eq!(artifact.name, best.0);
    // The same kind refitted for each longer horizon, an interval for every hour ahead, and
    // the per-hour table on the run (trained and interpolated hours).
    assert_eq!(artifact.hours(), [1, 3, 6, 12, 24]);
    assert_eq!(artifact.intervals.len(), 24);
    for h in [1, 2, 3, 6, 12, 17, 24] {
        let rmse = staging_run.metric(&format!("test_rmse_h{h}"));
        let coverage = staging_run.metric(&format!("interval_coverage_h{h}"));
        assert!(
            rmse.is_some_and(f64::is_finite) && coverage.is_some_and(|c| (0.0..=1.0).contains(&c)),
            "{h} h: {rmse:?} {coverage:?}"
        );
    }
    let table: serde_json::Value = serde_json::from_slice(
        &c.download_artifact(&staging_run.info.artifact_uri, "horizons.json")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(table.as_array().map(Vec::len), Some(24), "{table}");
    assert_eq!(table[16]["interpolated"], serde_json::json!(true), "17 h");
    let tag = staging.tags.iter().find(|t| t.key == "horizons");
    assert_eq!(tag.map(|t| t.value.as_str()), Some("1,3,6,12,24"));

    // No production yet: staging is promoted.
    let promoted = t.ok(&["evaluate"]);
    assert!(promoted.starts_with("promote:"), "{promoted}");
    let prod = c
        .get_by_alias(&model, "production")
        .await
        .unwrap()
        .expect("production alias");
    assert_eq!(
        (prod.version.as_str(), prod.current_stage),
        ("1", Stage::Production)
    );

    // The same data again: version 2 is no better than version 1, so it is not promoted.
    assert_eq!(t.ok(&["train"]), "2");
    let kept = t.ok(&["evaluate"]);
    assert!(kept.starts_with("keep: staging v2"), "{kept}");
    assert_eq!(
        c.get_by_alias(&model, "production")
            .await
            .unwrap()
            .unwrap()
            .version,
        "1"
    );
    let evals = c
        .search_runs(&[&exp], "tags.`airq.step` = 'evaluate'", 10)
        .await
        .unwrap();
    let decisions: Vec<&str> = evals
        .iter()
        .filter_map(|r| r.tag("airq.decision"))
        .collect();
    assert_eq!(decisions, ["keep", "promote"], "newest first");
    assert!(
        evals[0].metric("production_rmse").is_some() && evals[0].metric("staging_rmse").is_some()
    );
    // The gate is per horizon: each one's RMSE on the window, and the table.
    assert!(
        evals[0].metric("staging_rmse_h24").is_some()
            && evals[0].metric("production_rmse_h24").is_some()
    );
    let gate: serde_json::Value = serde_json::from_slice(
        &c.download_artifact(&evals[0].info.artifact_uri, "gate.json")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(gate[4]["hours"], serde_json::json!(24), "{gate}");
    // Judged only on data the candidate never trained on: its own held-out span.
    let param_time = |r: &mlflow_client::Run, k: &str| -> chrono::DateTime<chrono::Utc> {
        r.param(k)
            .unwrap_or_else(|| panic!("param {k}"))
            .parse()
            .unwrap()
    };
    for e in &evals {
        assert!(param_time(e, "window_start") >= param_time(e, "candidate_test_from"));
        assert!(param_time(e, "window_start") < param_time(e, "window_end"));
    }
    // A version named explicitly is the one judged, whatever holds the staging alias.
    let v1 = t.ok(&["evaluate", "--version", "1"]);
    assert!(v1.contains("v1"), "{v1}");

    // A sparse sensor makes the next snapshot fail validation, with the reason.
    let sparse: Vec<_> = {
        let mut cleaner = Cleaner::new(QcConfig::default());
        (0..24 * DAYS)
            .filter(|h| h % 3 == 0)
            .map(|h| {
                let json = format!(
                    r#"{{"sensor_id":"SPARSE","timestamp":"{}","location":{{"lat":48.8,"lon":2.3}},"measurements":{{"pm2_5":10,"pm10":20,"no2":30}}}}"#,
                    (start() + Duration::hours(h)).to_rfc3339()
                );
                cleaner.process(serde_json::from_str(&json).unwrap())
            })
            .collect()
    };
    airq_store::readings::insert_readings(&pool, &sparse)
        .await
        .unwrap();
    t.ok(&["extract", "--from", "2025-03-01", "--to", &to]);
    let out = t.run(&["validate"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("completeness: below 75 %: SPARSE 33 %"),
        "{err}"
    );
    let failed = c
        .search_runs(&[&exp], "tags.`airq.validation` = 'failed'", 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].info.status, RunStatus::Failed);
    assert_eq!(failed[0].metric("completeness_passed"), Some(0.0));

    pool.close().await;
    let admin = PgPool::connect(&pg_admin()).await.unwrap();
    let name = db.rsplit_once('/').unwrap().1;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}
