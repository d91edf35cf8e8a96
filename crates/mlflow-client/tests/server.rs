//! The client against a real MLflow server (`scripts/stack.sh up` starts one; the URL is
//! `AIRQ_TEST_MLFLOW_URL`, default http://127.0.0.1:5500).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mlflow_client::*;

fn client() -> MlflowClient {
    let url =
        std::env::var("AIRQ_TEST_MLFLOW_URL").unwrap_or_else(|_| "http://127.0.0.1:5500".into());
    MlflowClient::new(&url).unwrap()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn tracks_a_run_with_params_stepped_metrics_tags_and_artifacts() {
    let c = client();
    let name = unique("exp");
    let exp = c.get_or_create_experiment(&name).await.unwrap();
    assert_eq!(
        c.get_or_create_experiment(&name).await.unwrap(),
        exp,
        "idempotent"
    );

    let run = c
        .create_run(&exp, "r1", &[tag("purpose", "test")])
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Running);
    // More than one request's worth of metrics: the client splits the batch.
    let metrics: Vec<Metric> = (0..1500)
        .map(|i| metric("loss", 1.0 / (1 + i) as f64, i))
        .collect();
    c.log_batch(
        &run.run_id,
        &metrics,
        &[param("seed", 42), param("model", "forest")],
        &[tag("stage", "train")],
    )
    .await
    .unwrap();
    c.upload_artifact(
        &run.artifact_uri,
        "model/model.json",
        b"{\"w\":[1,2]}".to_vec(),
    )
    .await
    .unwrap();
    c.upload_artifact(
        &run.artifact_uri,
        "plots/residuals.png",
        vec![0x89, b'P', b'N', b'G'],
    )
    .await
    .unwrap();
    let done = c
        .update_run(&run.run_id, RunStatus::Finished)
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Finished);
    assert!(done.end_time.is_some());

    let got = c.get_run(&run.run_id).await.unwrap();
    assert_eq!(got.param("seed"), Some("42"));
    assert_eq!(got.tag("purpose"), Some("test"));
    assert_eq!(got.tag("stage"), Some("train"));
    assert_eq!(
        got.metric("loss"),
        Some(1.0 / 1500.0),
        "the latest step's value"
    );
    assert_eq!(
        c.download_artifact(&run.artifact_uri, "model/model.json")
            .await
            .unwrap(),
        b"{\"w\":[1,2]}"
    );
    let mut top: Vec<(String, bool)> = c
        .list_artifacts(&run.artifact_uri, "")
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.path, f.is_dir))
        .collect();
    top.sort();
    assert_eq!(
        top,
        [("model".to_owned(), true), ("plots".to_owned(), true)]
    );
    let found = c
        .search_runs(&[&exp], "params.model = 'forest'", 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].info.run_id, run.run_id);
}

#[tokio::test]
async fn registers_versions_with_aliases_and_legacy_stages() {
    let c = client();
    let exp = c.get_or_create_experiment(&unique("exp")).await.unwrap();
    let model = unique("model");
    c.ensure_registered_model(&model, "test").await.unwrap();
    c.ensure_registered_model(&model, "test").await.unwrap();
    assert_eq!(c.get_by_alias(&model, "production").await.unwrap(), None);

    let mut versions = Vec::new();
    for i in 0..2 {
        let run = c.create_run(&exp, &format!("r{i}"), &[]).await.unwrap();
        c.upload_artifact(&run.artifact_uri, "model/model.json", vec![b'0' + i])
            .await
            .unwrap();
        let source = format!("{}/model", run.artifact_uri);
        let v = c
            .create_model_version(&model, &source, &run.run_id, &[tag("rmse", 1.5)])
            .await
            .unwrap();
        assert_eq!(v.current_stage, Stage::None);
        versions.push(v);
    }
    assert_eq!(
        (versions[0].version.as_str(), versions[1].version.as_str()),
        ("1", "2")
    );

    c.set_alias(&model, "production", "1").await.unwrap();
    c.transition_stage(&model, "1", Stage::Production, false)
        .await
        .unwrap();
    c.set_alias(&model, "production", "2").await.unwrap();
    let v2 = c
        .transition_stage(&model, "2", Stage::Production, true)
        .await
        .unwrap();
    assert_eq!(v2.current_stage, Stage::Production);
    assert_eq!(
        c.get_model_version(&model, "1")
            .await
            .unwrap()
            .current_stage,
        Stage::Archived
    );

    let prod = c
        .get_by_alias(&model, "production")
        .await
        .unwrap()
        .expect("alias set");
    assert_eq!(prod.version, "2");
    assert_eq!(
        c.download_artifact(&prod.source, "model.json")
            .await
            .unwrap(),
        b"1"
    );
    let rm = c.get_registered_model(&model).await.unwrap();
    assert_eq!(
        rm.aliases
            .iter()
            .map(|a| (a.alias.as_str(), a.version.as_str()))
            .collect::<Vec<_>>(),
        [("production", "2")]
    );
    c.delete_alias(&model, "production").await.unwrap();
    assert_eq!(c.get_by_alias(&model, "production").await.unwrap(), None);
}

#[tokio::test]
async fn errors_say_what_is_wrong() {
    let c = client();
    let err = c
        .get_run("0123456789abcdef0123456789abcdef")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(!err.is_retryable());
    let down = MlflowClient::new("http://127.0.0.1:9").unwrap();
    let err = down.get_or_create_experiment("x").await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let err = c.download_artifact("file:///tmp/x", "a").await.unwrap_err();
    assert!(err.to_string().contains("--serve-artifacts"), "{err}");
}
