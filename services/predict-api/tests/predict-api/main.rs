//! predict-api over HTTP on a random port, with models from the real MLflow registry and
//! readings in a real PostgreSQL: every route, every error status, and the hot swap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use airq_features::FeatureSpec;
use airq_model::{Artifact, Horizon, Interval, Model};
use chrono::{DateTime, Utc};
use mlflow_client::MlflowClient;
use predict_api::config::Settings;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

mod stress;

fn mlflow_url() -> String {
    std::env::var("AIRQ_TEST_MLFLOW_URL").unwrap_or_else(|_| "http://127.0.0.1:5500".into())
}

fn pg_admin() -> String {
    std::env::var("AIRQ_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into())
}

/// A database with 2 days of readings of S1 and S2, every 20 minutes (PM2.5 = 10 + hour of the day).
async fn database() -> (String, PgPool) {
    let name = format!("airq_test_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPool::connect(&pg_admin()).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", pg_admin().rsplit_once('/').unwrap().0);
    let pool = PgPool::connect(&url).await.unwrap();
    airq_store::migrate(&pool).await.unwrap();
    let mut cleaner = airq_domain::sensor::Cleaner::default();
    let t0: DateTime<Utc> = "2025-05-01T00:00:00Z".parse().unwrap();
    let mut rows = Vec::new();
    for k in 0..(2 * 24 * 3) {
        let t = t0 + chrono::Duration::minutes(20 * k);
        for s in ["S1", "S2"] {
            let pm = 10.0 + (k / 3 % 24) as f64 + if s == "S2" { 5.0 } else { 0.0 };
            let json = format!(
                r#"{{"sensor_id":"{s}","timestamp":"{}","location":{{"lat":1,"lon":2}},"measurements":{{"pm2_5":{pm},"pm10":{},"no2":30}}}}"#,
                t.to_rfc3339(),
                2.0 * pm
            );
            rows.push(cleaner.process(serde_json::from_str(&json).unwrap()));
        }
    }
    airq_store::readings::insert_readings(&pool, &rows)
        .await
        .unwrap();
    (url, pool)
}

/// Registers `model` as a new version of `name` and points `production` at it.
async fn publish(c: &MlflowClient, name: &str, kind: &str, model: Model) -> String {
    publish_artifact(c, name, Artifact::new(kind, FeatureSpec::default(), model)).await
}

async fn publish_artifact(c: &MlflowClient, name: &str, artifact: Artifact) -> String {
    let exp = c
        .get_or_create_experiment("predict-api-tests")
        .await
        .unwrap();
    let run = c.create_run(&exp, &artifact.name, &[]).await.unwrap();
    c.upload_artifact(&run.artifact_uri, "model/model.json", artifact.to_json())
        .await
        .unwrap();
    c.ensure_registered_model(name, "test").await.unwrap();
    let v = c
        .create_model_version(
            name,
            &format!("{}/model", run.artifact_uri),
            &run.run_id,
            &[],
        )
        .await
        .unwrap();
    c.set_alias(name, "production", &v.version).await.unwrap();
    v.version
}

struct Server {
    base: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(db: &str, model: &str) -> Server {
    start_with(db, model, |_| {}).await
}

async fn start_with(db: &str, model: &str, tweak: impl FnOnce(&mut Settings)) -> Server {
    let mut s = Settings::load().unwrap();
    s.database.url = SecretString::from(db.to_owned());
    s.mlflow.url = mlflow_url();
    s.mlflow.model = model.to_owned();
    s.mlflow.poll_secs = 1;
    s.server.max_body_bytes = 16 * 1024;
    tweak(&mut s);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let task = tokio::spawn(predict_api::serve(s, listener, stop.clone()));
    Server { base, stop, task }
}

/// Waits until the server has loaded its model.
async fn wait_ready(base: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Ok(r) = reqwest::get(format!("{base}/ready")).await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{base} not ready after 30 s");
}

async fn drop_database(db: &str, pool: PgPool) {
    pool.close().await;
    let admin = PgPool::connect(&pg_admin()).await.unwrap();
    let name = db.rsplit_once('/').unwrap().1;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}

/// 30 hourly readings from `t0`, hour `h` with the (PM2.5, PM10, NO2) of `values(h)`.
fn hourly_readings(t0: &str, values: impl Fn(i64) -> (f64, f64, f64)) -> Vec<Value> {
    let t0: DateTime<Utc> = t0.parse().unwrap();
    (0..30)
        .map(|h| {
            let (pm2_5, pm10, no2) = values(h);
            let t = (t0 + chrono::Duration::hours(h)).to_rfc3339();
            json!({ "timestamp": t, "pm2_5": pm2_5, "pm10": pm10, "no2": no2 })
        })
        .collect()
}

async fn post(http: &reqwest::Client, url: String, body: &Value) -> (u16, Value) {
    let r = http.post(url).json(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_forecasts_refuses_bad_input_and_swaps_models_live() {
    let (db, pool) = database().await;
    let c = MlflowClient::new(&mlflow_url()).unwrap();
    let name = format!("predict-{}", uuid::Uuid::new_v4().simple());
    let v1 = publish(&c, &name, "persistence", Model::Persistence).await;
    let srv = start(&db, &name).await;
    let http = reqwest::Client::new();
    let u = |p: &str| format!("{}{p}", srv.base);

    assert_eq!(http.get(u("/health")).send().await.unwrap().status(), 200);
    let ready: Value = http
        .get(u("/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["version"], json!(v1));

    // From stored readings: persistence forecasts the last hour's mean (23:00 -> 10 + 23 = 33).
    let (status, p) = post(&http, u("/predict"), &json!({ "sensor_id": "S1" })).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["pm2_5"], json!(33.0));
    assert_eq!(p["forecast_for"], json!("2025-05-03T00:00:00Z"));
    assert_eq!(p["us_aqi"]["category"], json!("moderate"));
    assert_eq!(
        p["model"],
        json!({ "name": name, "version": v1, "kind": "persistence" })
    );

    // From explicit readings: 30 hourly readings, the last one 50.
    let readings = hourly_readings("2025-06-01T00:00:00Z", |h| (20.0 + h as f64, 40.0, 10.0));
    let (status, p) = post(
        &http,
        u("/predict"),
        &json!({ "sensor_id": "X", "readings": readings }),
    )
    .await;
    assert_eq!((status, p["pm2_5"].clone()), (200, json!(49.0)), "{p}");

    // Each served forecast is recorded (asynchronously) once per model version and hour.
    let (status, _) = post(&http, u("/predict"), &json!({ "sensor_id": "S1" })).await;
    assert_eq!(status, 200);
    let recorded = || async {
        sqlx::query_as::<_, (String, DateTime<Utc>, f64, String, String)>(
            "SELECT sensor_id, forecast_for, pm2_5, model_version, model_kind FROM forecasts ORDER BY sensor_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let started = Instant::now();
    while recorded().await.len() < 2 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hour = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    assert_eq!(
        recorded().await,
        vec![
            (
                "S1".into(),
                hour("2025-05-03T00:00:00Z"),
                33.0,
                v1.clone(),
                "persistence".into()
            ),
            (
                "X".into(),
                hour("2025-06-02T06:00:00Z"),
                49.0,
                v1.clone(),
                "persistence".into()
            ),
        ]
    );

    // Errors.
    let (status, e) = post(&http, u("/predict"), &json!({ "sensor_id": "NOPE" })).await;
    assert_eq!(status, 404, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("unknown sensor"));
    let (status, e) = post(&http, u("/predict"), &json!({ "sensor": "S1" })).await;
    assert_eq!(status, 422);
    assert!(
        e["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("unknown field `sensor`"),
        "{e}"
    );
    let (status, e) = post(&http, u("/predict"), &json!({ "sensor_id": "S1", "readings": [{ "timestamp": "2025-06-01T00:00:00Z", "pm2_5": -3 }] })).await;
    assert_eq!(
        (status, e["detail"][0]["loc"].clone()),
        (422, json!(["body", "readings", 0, "pm2_5"]))
    );
    let (status, e) = post(
        &http,
        u("/predict"),
        &json!({ "sensor_id": "S1", "readings": [{ "timestamp": "yesterday" }] }),
    )
    .await;
    assert_eq!(
        (status, e["detail"][0]["loc"].clone()),
        (422, json!(["body", "readings", 0, "timestamp"])),
        "{e}"
    );
    let (status, e) = post(&http, u("/predict"), &json!({ "sensor_id": "S1", "readings": [{ "timestamp": "2025-06-01T00:00:00Z", "pm2_5": 3 }] })).await;
    assert_eq!(status, 422);
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("not enough recent data"),
        "{e}"
    );
    let r = http
        .post(u("/predict"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let big = json!({ "sensor_id": "S1", "readings": vec![json!({ "timestamp": "2025-06-01T00:00:00Z", "pm2_5": 1 }); 1000] });
    let r = http.post(u("/predict")).json(&big).send().await.unwrap();
    assert_eq!(r.status(), 413);

    // Batch: one result per sensor, each with its status.
    let (status, b) = post(&http, u("/predict/batch"), &json!({ "requests": [{ "sensor_id": "S1" }, { "sensor_id": "S2" }, { "sensor_id": "NOPE" }] })).await;
    assert_eq!(status, 200);
    let statuses: Vec<u64> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 404]);
    assert_eq!(b["results"][1]["prediction"]["pm2_5"], json!(38.0));

    // Hot swap: version 2 predicts a constant 42; requests keep succeeding throughout.
    let hammer = {
        let (http, url) = (http.clone(), u("/predict"));
        tokio::spawn(async move {
            let mut codes = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(6) {
                codes.push(
                    post(&http, url.clone(), &json!({ "sensor_id": "S1" }))
                        .await
                        .0,
                );
            }
            codes
        })
    };
    let n = FeatureSpec::default().names().len();
    let v2 = publish(
        &c,
        &name,
        "linear",
        Model::Linear {
            mean: vec![0.0; n],
            scale: vec![1.0; n],
            weights: vec![0.0; n],
            intercept: 42.0,
        },
    )
    .await;
    let started = Instant::now();
    loop {
        let (_, p) = post(&http, u("/predict"), &json!({ "sensor_id": "S1" })).await;
        if p["model"]["version"] == json!(v2) {
            assert_eq!(p["pm2_5"], json!(42.0));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the new production version was not loaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let codes = hammer.await.unwrap();
    assert!(
        codes.len() > 10 && codes.iter().all(|c| *c == 200),
        "{} requests during the swap, not all 200",
        codes.len()
    );

    let metrics = http
        .get(u("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("airq_predict_requests_total{route=\"/predict\",status=\"404\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("airq_predict_model_loaded{{version=\"{v2}\"}} 1")));
    let spec: Value = http
        .get(u("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["paths"]["/predict"]["post"]["responses"]["422"].is_object());
    let docs = http
        .get(u("/docs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(docs.contains("/openapi.json"));

    // Graceful shutdown.
    srv.stop.cancel();
    srv.task.await.unwrap().unwrap();

    // A registry without a production model: not ready, 503.
    let none = start(&db, &format!("absent-{}", uuid::Uuid::new_v4().simple())).await;
    let r = http
        .get(format!("{}/ready", none.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let (status, e) = post(
        &http,
        format!("{}/predict", none.base),
        &json!({ "sensor_id": "S1" }),
    )
    .await;
    assert_eq!(status, 503, "{e}");
    none.stop.cancel();
    none.task.await.unwrap().unwrap();

    pool.close().await;
    let admin = PgPool::connect(&pg_admin()).await.unwrap();
    let dbname = db.rsplit_once('/').unwrap().1;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecasts_each_requested_horizon_with_its_interval() {
    let (db, pool) = database().await;
    let c = MlflowClient::new(&mlflow_url()).unwrap();
    let name = format!("horizons-{}", uuid::Uuid::new_v4().simple());
    let n = FeatureSpec::default().names().len();
    // Each horizon's model forecasts a constant: 10 x its hours.
    let constant = |v: f64| Model::Linear {
        mean: vec![0.0; n],
        scale: vec![1.0; n],
        weights: vec![0.0; n],
        intercept: v,
    };
    let iv = Interval {
        coverage: 0.9,
        lower: -0.2,
        upper: 0.3,
        offset: 10.0,
        calibration_rows: 500,
    };
    let mut a = Artifact::new("linear", FeatureSpec::default(), constant(10.0));
    a.horizons = [6, 24]
        .map(|h| Horizon {
            hours: h,
            model: constant(10.0 * f64::from(h)),
        })
        .into();
    a.intervals = vec![iv; 24];
    let version = publish_artifact(&c, &name, a).await;
    let srv = start(&db, &name).await;
    wait_ready(&srv.base).await;
    let http = reqwest::Client::new();
    let url = format!("{}/predict", srv.base);
    // 30 hourly readings, the last one (2025-06-02T05:00) 49 ug/m3.
    let readings = hourly_readings("2025-06-01T00:00:00Z", |h| (20.0 + h as f64, 40.0, 10.0));
    let body =
        |horizons: Value| json!({ "sensor_id": "X", "readings": readings, "horizons": horizons });
    let (status, p) = post(&http, url.clone(), &body(json!([1, 6, 15, 24]))).await;
    assert_eq!(status, 200, "{p}");
    let scale = 49.0 + 10.0;
    assert_eq!(
        p["pm2_5"],
        json!(10.0),
        "the next hour stays at the top level"
    );
    assert_eq!(
        p["interval"],
        json!({ "lower": 0.0, "upper": 10.0 + 0.3 * scale, "coverage": 0.9 })
    );
    let h = &p["horizons"];
    assert_eq!(h.as_array().unwrap().len(), 4, "{p}");
    assert_eq!(h[0]["pm2_5"], p["pm2_5"]);
    assert_eq!(
        (
            h[1]["hours"].clone(),
            h[1]["pm2_5"].clone(),
            h[1]["interpolated"].clone()
        ),
        (json!(6), json!(60.0), json!(false))
    );
    assert_eq!(h[1]["forecast_for"], json!("2025-06-02T11:00:00Z"));
    assert_eq!(h[1]["interval"]["upper"], json!(60.0 + 0.3 * scale));
    // 15 h: halfway between the 6 h and 24 h models.
    assert_eq!(
        (h[2]["pm2_5"].clone(), h[2]["interpolated"].clone()),
        (json!(150.0), json!(true))
    );
    assert_eq!(h[2]["us_aqi"]["category"], json!("very_unhealthy"), "{p}");
    assert_eq!(h[3]["pm2_5"], json!(240.0));
    assert_eq!(p["model"]["version"], json!(version));

    // Past the longest horizon, or 0: a 422 that names the horizon and the limit.
    let (status, e) = post(&http, url.clone(), &body(json!([3, 25]))).await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["detail"][0]["loc"], json!(["body", "horizons", 1]));
    assert!(
        e["detail"][0]["msg"].as_str().unwrap().contains("1 to 24"),
        "{e}"
    );
    let (status, e) = post(&http, url.clone(), &body(json!([0]))).await;
    assert_eq!(status, 422, "{e}");
    let (status, e) = post(&http, url.clone(), &body(json!(["6"]))).await;
    assert_eq!(
        (status, e["detail"][0]["loc"].clone()),
        (422, json!(["body", "horizons", 0])),
        "{e}"
    );
    // In a batch, each request's horizons.
    let (status, b) = post(
        &http,
        format!("{}/predict/batch", srv.base),
        &json!({ "requests": [{ "sensor_id": "X", "readings": readings, "horizons": [24] }] }),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(
        b["results"][0]["prediction"]["horizons"][0]["pm2_5"],
        json!(240.0)
    );

    srv.stop.cancel();
    srv.task.await.unwrap().unwrap();
    drop_database(&db, pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbour_features_read_the_nearest_sensors_stored_series() {
    let (db, pool) = database().await;
    let c = MlflowClient::new(&mlflow_url()).unwrap();
    let name = format!("neighbours-{}", uuid::Uuid::new_v4().simple());
    let spec = FeatureSpec::default();
    let names = spec.names();
    let n = names.len();
    // Forecasts the neighbours' deviation from the sensor: nb_dev.
    let mut weights = vec![0.0; n];
    weights[names.iter().position(|f| f == "nb_dev").unwrap()] = 1.0;
    let model = Model::Linear {
        mean: vec![0.0; n],
        scale: vec![1.0; n],
        weights,
        intercept: 0.0,
    };
    let mut a = Artifact::new("linear", spec, model);
    a.locations = [
        ("S1".to_owned(), [1.0, 2.0]),
        ("S2".to_owned(), [1.01, 2.0]),
    ]
    .into();
    publish_artifact(&c, &name, a).await;
    let srv = start(&db, &name).await;
    wait_ready(&srv.base).await;
    let http = reqwest::Client::new();
    let url = format!("{}/predict", srv.base);
    // Stored: S2 is S1 + 5 at every hour.
    let (status, p) = post(&http, url.clone(), &json!({ "sensor_id": "S1" })).await;
    assert_eq!((status, p["pm2_5"].clone()), (200, json!(5.0)), "{p}");
    // Readings in the body, the neighbour's from PostgreSQL: S2's last hour is 38.
    let readings = hourly_readings("2025-05-01T18:00:00Z", |_| (1.0, 2.0, 3.0));
    let body = |sensor: &str| json!({ "sensor_id": sensor, "readings": readings });
    let (status, p) = post(&http, url.clone(), &body("S1")).await;
    assert_eq!((status, p["pm2_5"].clone()), (200, json!(37.0)), "{p}");
    // A sensor the model has no location for has no neighbours: its own values, 0.
    let (status, p) = post(&http, url.clone(), &body("X")).await;
    assert_eq!((status, p["pm2_5"].clone()), (200, json!(0.0)), "{p}");
    srv.stop.cancel();
    srv.task.await.unwrap().unwrap();
    drop_database(&db, pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensors_series_is_read_once_per_series_cache_ms() {
    let (db, pool) = database().await;
    let c = MlflowClient::new(&mlflow_url()).unwrap();
    let name = format!("cache-{}", uuid::Uuid::new_v4().simple());
    publish(&c, &name, "persistence", Model::Persistence).await;
    const TTL_MS: u64 = 5000;
    let srv = start_with(&db, &name, |s| s.server.series_cache_ms = TTL_MS).await;
    wait_ready(&srv.base).await;
    let http = reqwest::Client::new();
    let url = format!("{}/predict", srv.base);
    let body = json!({ "sensor_id": "S1" });
    let (status, p) = post(&http, url.clone(), &body).await;
    let read_at = Instant::now();
    assert_eq!((status, p["pm2_5"].clone()), (200, json!(33.0)), "{p}");

    // A new hour lands in PostgreSQL; within the ttl the series read before is served.
    let json = r#"{"sensor_id":"S1","timestamp":"2025-05-03T00:10:00Z","location":{"lat":1,"lon":2},"measurements":{"pm2_5":80,"pm10":160,"no2":30}}"#;
    let r = airq_domain::sensor::Cleaner::default().process(serde_json::from_str(json).unwrap());
    airq_store::readings::insert_readings(&pool, &[r])
        .await
        .unwrap();
    let (_, p) = post(&http, url.clone(), &body).await;
    assert!(
        read_at.elapsed() < Duration::from_millis(TTL_MS),
        "the test was too slow to tell"
    );
    assert_eq!(p["forecast_for"], json!("2025-05-03T00:00:00Z"), "{p}");
    // After it, the new hour is read.
    tokio::time::sleep(Duration::from_millis(TTL_MS + 100)).await;
    let (_, p) = post(&http, url.clone(), &body).await;
    assert_eq!(p["forecast_for"], json!("2025-05-03T01:00:00Z"), "{p}");
    assert_eq!(p["pm2_5"], json!(80.0), "{p}");
    let reads = || async {
        let text = http
            .get(format!("{}/metrics", srv.base))
            .send()
            .await
            .unwrap();
        let text = text.text().await.unwrap();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("airq_predict_series_reads_total "))
            .unwrap_or_else(|| panic!("no series reads in {text}"));
        line.parse::<u64>().unwrap()
    };
    assert_eq!(reads().await, 2, "two reads so far, one per ttl");

    // Once it expired again, 32 requests at once: one reads it, the others are served the
    // series read before (every request in flight used to read it).
    tokio::time::sleep(Duration::from_millis(TTL_MS + 100)).await;
    let mut at_once = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        at_once.spawn(async move { post(&http, url, &body).await });
    }
    while let Some(answer) = at_once.join_next().await {
        let (status, p) = answer.unwrap();
        assert_eq!(status, 200, "{p}");
        assert_eq!(p["forecast_for"], json!("2025-05-03T01:00:00Z"), "{p}");
    }
    assert_eq!(reads().await, 3, "one read for the 32 requests");
    srv.stop.cancel();
    srv.task.await.unwrap().unwrap();
    drop_database(&db, pool).await;
}

#[tokio::test]
async fn the_catalog_describes_every_dataset_with_its_freshness() {
    let (db, pool) = database().await;
    let c = MlflowClient::new(&mlflow_url()).unwrap();
    let name = format!("catalog-{}", uuid::Uuid::new_v4().simple());
    let version = publish(&c, &name, "persistence", Model::Persistence).await;
    // raw_data is a topic of this test holding 2 messages; the others do not exist.
    let brokers = std::env::var("AIRQ_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into());
    let raw = format!("catalog_raw_{}", uuid::Uuid::new_v4().simple());
    airq_kafka::admin::ensure_topics(&brokers, &[&raw], 2)
        .await
        .unwrap();
    let producer = airq_kafka::client::producer(&brokers, 0).unwrap();
    for key in ["S1", "S2"] {
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&raw)
                    .key(key)
                    .payload("{}"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let srv = start_with(&db, &name, |s| {
        s.catalog.brokers = brokers.clone();
        s.catalog.topics.raw = raw.clone();
        s.catalog.topics.processed = format!("{raw}_absent");
    })
    .await;
    let r = reqwest::get(format!("{}/catalog", srv.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    let cat: Value = r.json().await.unwrap();

    // The static part: schemas from the Rust types, the tables, the lineage.
    let raw_topic = &cat["topics"][0];
    assert_eq!(raw_topic["name"], "raw_data");
    assert_eq!(raw_topic["key"], "sensor_id");
    assert_eq!(
        raw_topic["schema"]["properties"]["timestamp"]["format"],
        "date-time"
    );
    let tables: Vec<&str> = cat["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(tables.contains(&"readings") && tables.contains(&"forecast_errors"));
    assert!(
        cat["lineage"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "airq_daily.train" && p["runs"] == "trainer train")
    );

    // The live part.
    let fresh = &cat["freshness"];
    let topic = &fresh["topics"][0];
    assert_eq!(
        (topic["topic"].as_str(), topic["messages"].as_i64()),
        (Some(raw.as_str()), Some(2)),
        "{topic}"
    );
    assert!(topic["last_message_at"].is_string(), "{topic}");
    let absent = &fresh["topics"][1];
    assert!(
        absent["error"].as_str().unwrap().contains("does not exist"),
        "{absent}"
    );
    let readings = fresh["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "readings")
        .unwrap();
    assert_eq!(readings["rows_estimate"], 2 * 2 * 24 * 3, "{readings}");
    assert_eq!(
        readings["latest"], "2025-05-02T23:40:00+00:00",
        "{readings}"
    );
    let model = &fresh["models"][0];
    assert_eq!(model["name"], name.as_str());
    assert_eq!(model["aliases"]["production"], version.as_str(), "{model}");
    assert_eq!(model["versions"].as_array().unwrap().len(), 1, "{model}");

    srv.stop.cancel();
    srv.task.await.unwrap().unwrap();
    drop_database(&db, pool).await;
    let storage = std::env::var("AIRQ_KAFKA_STORAGE").unwrap_or_default();
    if storage.starts_with("postgres")
        && let Ok(tansu) = PgPool::connect(&storage).await
    {
        let _ = sqlx::query("DELETE FROM topic WHERE name = $1")
            .bind(&raw)
            .execute(&tansu)
            .await;
    }
}
