//! The catalog against the real servers: its tables are exactly what `migrations/` creates
//! (names, columns, types, order), and the live reads report what was just written to
//! PostgreSQL, the broker and the MLflow registry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use airq_catalog::{Catalog, live};
use chrono::Utc;
use mlflow_client::{MlflowClient, metric};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A fresh database with the migrations applied; (its URL, a pool on it).
async fn migrated_database() -> (String, PgPool) {
    let admin = std::env::var("AIRQ_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into());
    let name = unique("airq_catalog");
    let pool = PgPool::connect(&admin).await.expect("test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let db = PgPool::connect(&url).await.unwrap();
    airq_store::migrate(&db).await.unwrap();
    (name, db)
}

async fn drop_database(name: &str, db: PgPool) {
    db.close().await;
    let admin = std::env::var("AIRQ_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into());
    let pool = PgPool::connect(&admin).await.unwrap();
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&pool)
        .await;
}

/// Topics are dropped from Tansu's storage, never by DeleteTopics (docs/tansu.md).
async fn drop_topics(names: &[&str]) {
    let storage = std::env::var("AIRQ_KAFKA_STORAGE").unwrap_or_default();
    if storage.starts_with("postgres")
        && let Ok(pool) = PgPool::connect(&storage).await
    {
        let _ = sqlx::query("DELETE FROM topic WHERE name = ANY($1)")
            .bind(names)
            .execute(&pool)
            .await;
        pool.close().await;
    }
}

#[tokio::test]
async fn the_tables_are_exactly_what_the_migrations_create() {
    let (name, db) = migrated_database().await;
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT c.relname::text, CASE c.relkind WHEN 'v' THEN 'view' ELSE 'table' END, \
                a.attname::text, format_type(a.atttypid, a.atttypmod) \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v') AND a.attnum > 0 \
           AND NOT a.attisdropped AND c.relname <> '_sqlx_migrations' \
         ORDER BY c.relname, a.attnum",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let mut in_db: BTreeMap<String, (String, Vec<(String, String)>)> = BTreeMap::new();
    for (table, kind, column, ty) in rows {
        let e = in_db.entry(table).or_insert((kind, Vec::new()));
        e.1.push((column, ty));
    }
    let catalog: BTreeMap<String, (String, Vec<(String, String)>)> = Catalog::platform()
        .tables
        .iter()
        .map(|t| {
            let cols = t
                .columns
                .iter()
                .map(|c| (c.name.to_owned(), c.ty.to_owned()))
                .collect();
            (t.name.to_owned(), (t.kind.as_str().to_owned(), cols))
        })
        .collect();
    assert_eq!(
        catalog.keys().collect::<Vec<_>>(),
        in_db.keys().collect::<Vec<_>>(),
        "the catalog describes every table and view, and no other"
    );
    for (table, expected) in &in_db {
        assert_eq!(&catalog[table], expected, "{table}: kind and columns");
    }
    // Every column says what it means.
    for t in Catalog::platform().tables {
        for c in &t.columns {
            assert!(
                !c.meaning.is_empty(),
                "{}.{} has no meaning",
                t.name,
                c.name
            );
        }
    }
    drop_database(&name, db).await;
}

#[tokio::test]
async fn freshness_and_volume_are_read_live() {
    // PostgreSQL: two readings, the newest of them is the table's freshness.
    let (name, db) = migrated_database().await;
    for (sensor, ts) in [
        ("A", "2026-01-01T10:00:00Z"),
        ("B", "2026-01-01T12:00:00Z"),
        ("A", "2026-01-01T11:00:00Z"),
    ] {
        sqlx::query("INSERT INTO readings (sensor_id, ts, lat, lon, flags, schema_version) VALUES ($1, $2::timestamptz, 39.9, 116.4, 0, 1)")
            .bind(sensor)
            .bind(ts)
            .execute(&db)
            .await
            .unwrap();
    }
    let catalog = Catalog::platform();
    let tables = live::tables(&db, &catalog.tables).await;
    let readings = tables.iter().find(|t| t.name == "readings").unwrap();
    assert_eq!(readings.error, None);
    assert_eq!(readings.rows_estimate, Some(3), "never analysed: counted");
    assert_eq!(
        readings.latest.as_deref(),
        Some("2026-01-01T12:00:00+00:00")
    );
    let anomalies = tables.iter().find(|t| t.name == "anomalies").unwrap();
    assert_eq!(
        (anomalies.rows_estimate, anomalies.latest.as_deref()),
        (Some(0), None)
    );
    assert!(tables.iter().all(|t| t.error.is_none()), "{tables:?}");
    sqlx::query("ANALYZE readings").execute(&db).await.unwrap();
    let analysed = live::tables(&db, &catalog.tables[..1]).await;
    assert_eq!(
        analysed[0].rows_estimate,
        Some(3),
        "the estimate, once analysed"
    );
    drop_database(&name, db).await;

    // The broker: a topic with 5 messages, another with none, a third that does not exist.
    let brokers = std::env::var("AIRQ_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into());
    let (full, empty) = (unique("catalog_full"), unique("catalog_empty"));
    airq_kafka::admin::ensure_topics(&brokers, &[&full, &empty], 3)
        .await
        .unwrap();
    let producer: FutureProducer = airq_kafka::client::producer(&brokers, 0).unwrap();
    let sent_at = Utc::now();
    for i in 0..5 {
        let key = format!("S{i}");
        producer
            .send(
                FutureRecord::to(&full).key(&key).payload("{}"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let missing = unique("catalog_missing");
    let names = [
        ("raw_data", full.as_str()),
        ("anomalies", empty.as_str()),
        ("processed_data", missing.as_str()),
    ];
    let states = live::topics(&brokers, &names, Duration::from_secs(10));
    assert_eq!(states[0].error, None, "{states:?}");
    assert_eq!((states[0].partitions, states[0].messages), (3, 5));
    let last = states[0]
        .last_message_at
        .expect("the newest message's time");
    assert!(
        (last - sent_at).num_seconds().abs() < 60,
        "{last} is when it was sent ({sent_at})"
    );
    assert_eq!((states[1].messages, states[1].last_message_at), (0, None));
    assert!(states[2].error.is_some(), "{states:?}");
    drop_topics(&[&full, &empty]).await;

    // The registry: two versions, production on the first, whose run has metrics.
    let url =
        std::env::var("AIRQ_TEST_MLFLOW_URL").unwrap_or_else(|_| "http://127.0.0.1:5500".into());
    let mlflow = MlflowClient::new(&url).unwrap();
    let exp = mlflow
        .get_or_create_experiment(&unique("catalog"))
        .await
        .unwrap();
    let model = unique("catalog-model");
    mlflow
        .ensure_registered_model(&model, "test")
        .await
        .unwrap();
    let mut runs = Vec::new();
    for rmse in [16.7, 17.2] {
        let run = mlflow.create_run(&exp, "r", &[]).await.unwrap();
        mlflow
            .log_batch(&run.run_id, &[metric("test_rmse", rmse, 0)], &[], &[])
            .await
            .unwrap();
        let v = mlflow
            .create_model_version(&model, &run.artifact_uri, &run.run_id, &[])
            .await
            .unwrap();
        runs.push((v.version, run.run_id));
    }
    mlflow
        .set_alias(&model, "production", &runs[0].0)
        .await
        .unwrap();
    mlflow
        .set_alias(&model, "staging", &runs[1].0)
        .await
        .unwrap();
    let states = live::models(&mlflow, &[model.as_str()]).await;
    let m = &states[0];
    assert_eq!(m.error, None);
    assert_eq!(
        m.versions
            .iter()
            .map(|v| v.version.as_str())
            .collect::<Vec<_>>(),
        vec![runs[1].0.as_str(), runs[0].0.as_str()],
        "newest first"
    );
    assert_eq!(m.versions[1].aliases, vec!["production".to_owned()]);
    assert_eq!(m.aliases["staging"], runs[1].0);
    assert_eq!(m.production_metrics.get("test_rmse"), Some(&16.7));
    let unknown = live::models(&mlflow, &["no-such-model-in-this-registry"]).await;
    assert!(unknown[0].error.is_some());
}

#[test]
fn the_schemas_accept_what_the_code_writes_and_refuse_the_wrong_shape() {
    let catalog = Catalog::platform();
    let validator = |topic: &str| {
        jsonschema::options()
            .should_validate_formats(true)
            .build(catalog.topic(topic).unwrap().schema.as_ref().unwrap())
            .unwrap()
    };
    let raw = validator("raw_data");
    let reading = serde_json::json!({
        "sensor_id": "CAP_001", "timestamp": "2024-01-15T14:30:00Z",
        "location": {"lat": 48.8566, "lon": 2.3522},
        "measurements": {"pm2_5": 12.5, "pm10": 25.3, "no2": 40.2}
    });
    assert!(raw.is_valid(&reading));
    let mut nulls = reading.clone();
    nulls["measurements"] = serde_json::json!({"pm2_5": 3.0, "no2": null});
    assert!(raw.is_valid(&nulls), "a channel may be absent or null");
    for (path, bad) in [
        ("/timestamp", serde_json::json!("yesterday")),
        ("/sensor_id", serde_json::json!("CAP 001")),
        ("/location/lat", serde_json::json!(91.0)),
        ("/measurements/pm10", serde_json::json!("25")),
    ] {
        let mut m = reading.clone();
        *m.pointer_mut(path).unwrap() = bad;
        assert!(!raw.is_valid(&m), "{m} matches");
    }
    let mut missing = reading.clone();
    missing.as_object_mut().unwrap().remove("location");
    assert!(!raw.is_valid(&missing));

    // The cleaner's own output, through its hand-written encoder.
    let r: airq_domain::Reading = serde_json::from_str(&reading.to_string()).unwrap();
    let processed = airq_domain::sensor::Cleaner::default().process(r);
    let json: serde_json::Value = serde_json::from_slice(&processed.to_json()).unwrap();
    let errors: Vec<String> = validator("processed_data")
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{json}: {errors:?}");
}
