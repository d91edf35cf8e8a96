//! predict-api past saturation, with its database gone, and against its own OpenAPI
//! document (schemathesis generates the requests).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;

/// Readings for a request body: 30 hours, one per 20 minutes.
fn body_readings() -> Value {
    let t0: DateTime<Utc> = "2025-05-01T00:00:00Z".parse().unwrap();
    let readings: Vec<Value> = (0..90)
        .map(|k| {
            let t = t0 + chrono::Duration::minutes(20 * k);
            json!({ "timestamp": t.to_rfc3339(), "pm2_5": 12.0 + (k % 7) as f64, "pm10": 30.0, "no2": 20.0 })
        })
        .collect();
    json!(readings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_saturation_every_answer_is_a_200_422_or_503_with_retry_after() {
    let (db, pool) = database().await;
    let mlflow = MlflowClient::new(&mlflow_url()).unwrap();
    let name = format!("stress-{}", uuid::Uuid::new_v4().simple());
    publish(&mlflow, &name, "persistence", Model::Persistence).await;
    let srv = start_with(&db, &name, |s| s.server.max_concurrent_requests = 4).await;
    wait_ready(&srv.base).await;

    let http = reqwest::Client::new();
    let bodies = Arc::new(vec![
        json!({ "sensor_id": "S1" }),
        json!({ "sensor_id": "S2", "readings": body_readings() }),
        json!({ "sensor_id": "" }),
        json!({ "sensor_id": "S1", "readings": [{ "timestamp": "2025-05-01T00:00:00Z", "pm2_5": -1 }] }),
        json!({ "requests": [{ "sensor_id": "S1" }, { "sensor_id": "S2" }] }),
    ]);
    // 64 clients, 40 requests each, against 4 permits.
    let tasks: Vec<_> = (0..64)
        .map(|c| {
            let (http, bodies, base) = (http.clone(), bodies.clone(), srv.base.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for i in 0..40 {
                    let b = &bodies[(c + i) % bodies.len()];
                    let path = if b.get("requests").is_some() {
                        "predict/batch"
                    } else {
                        "predict"
                    };
                    let r = http
                        .post(format!("{base}/{path}"))
                        .json(b)
                        .send()
                        .await
                        .unwrap();
                    let retry_after = r.headers().get("retry-after").is_some();
                    seen.push((r.status().as_u16(), retry_after));
                }
                seen
            })
        })
        .collect();
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for t in tasks {
        for (status, retry_after) in t.await.unwrap() {
            *by_status.entry(status).or_default() += 1;
            if status == 503 {
                assert!(retry_after, "a 503 says when to retry");
            }
        }
    }
    let total: usize = by_status.values().sum();
    assert_eq!(total, 64 * 40);
    assert!(
        by_status.keys().all(|s| [200, 422, 503].contains(s)),
        "only 200, 422 and 503: {by_status:?}"
    );
    assert!(
        by_status.get(&503).copied().unwrap_or(0) > 0,
        "load was shed: {by_status:?}"
    );
    assert!(
        by_status.get(&200).copied().unwrap_or(0) > 0,
        "and served: {by_status:?}"
    );

    // Once the burst is over the server answers normally.
    let (status, p) = post(
        &http,
        format!("{}/predict", srv.base),
        &json!({ "sensor_id": "S1" }),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    srv.stop.cancel();
    srv.task.await.unwrap().unwrap();
    drop_database(&db, pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_gone_gives_a_503_that_leaks_no_internals() {
    let mlflow = MlflowClient::new(&mlflow_url()).unwrap();
    let name = format!("nodb-{}", uuid::Uuid::new_v4().simple());
    publish(&mlflow, &name, "persistence", Model::Persistence).await;
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let srv = start(
        &format!("postgres://postgres@127.0.0.1:{port}/nowhere"),
        &name,
    )
    .await;
    wait_ready(&srv.base).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/predict", srv.base))
        .json(&json!({ "sensor_id": "S1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    let body: Value = r.json().await.unwrap();
    let detail = body["detail"].as_str().unwrap();
    assert_eq!(detail, "database unavailable; retry later");
    // A request with its own readings needs no database.
    let (status, p) = post(
        &http,
        format!("{}/predict", srv.base),
        &json!({ "sensor_id": "S9", "readings": body_readings() }),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    srv.stop.cancel();
    srv.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_does_what_its_openapi_document_says() {
    let Ok(schemathesis) = std::env::var("AIRQ_SCHEMATHESIS") else {
        panic!(
            "AIRQ_SCHEMATHESIS is not set: run the tests through `make test` (scripts/stack.sh installs it)"
        );
    };
    let (db, pool) = database().await;
    let mlflow = MlflowClient::new(&mlflow_url()).unwrap();
    let name = format!("contract-{}", uuid::Uuid::new_v4().simple());
    publish(&mlflow, &name, "persistence", Model::Persistence).await;
    let srv = start(&db, &name).await;
    wait_ready(&srv.base).await;
    let base = srv.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        let config = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/predict-api/schemathesis.toml"
        );
        std::process::Command::new(schemathesis)
            .args(["--config-file", config])
            .args(["run", &format!("{base}/openapi.json"), "--checks", "all"])
            .args([
                "--max-examples",
                "60",
                "--generation-deterministic",
                "--no-color",
            ])
            .args(["--exclude-checks", "positive_data_acceptance"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found mismatches:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    srv.stop.cancel();
    srv.task.await.unwrap().unwrap();
    drop_database(&db, pool).await;
}
