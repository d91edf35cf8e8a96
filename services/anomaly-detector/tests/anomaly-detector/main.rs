//! The detector on the real broker and PostgreSQL: a faulty stream goes through the
//! cleaner and the detector, and the anomalies in the topic and the table are exactly
//! those of the same detector code run offline over `processed_data`, once each, also
//! when the detector is killed mid-stream and restarted (warm start from PostgreSQL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../stream-cleaner/tests/stream-cleaner/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use airq_detect::{AnomalyEvent, Detector};
use airq_domain::ProcessedReading;
use helpers::*;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const LONG: Duration = Duration::from_secs(240);

fn detector_env(env: &[(String, String)], group: &str) -> Vec<(String, String)> {
    let mut env: Vec<_> = env
        .iter()
        .filter(|(k, _)| !k.starts_with("AIRQ__CLEANER__"))
        .cloned()
        .collect();
    env.push(("AIRQ__DETECTOR__GROUP_ID".into(), group.into()));
    // The whole test stream is history enough: the warm start can rebuild everything.
    env.push(("AIRQ__WARM__HOURS".into(), "72".into()));
    env
}

fn start_detector(env: &[(String, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_anomaly-detector"))
        .arg("run")
        .envs(env.iter().cloned())
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start anomaly-detector")
}

/// (id, status, points, end) of each stored anomaly.
type Row = (String, String, i32, chrono::DateTime<chrono::Utc>);

async fn stored_anomalies(pool: &PgPool) -> Vec<Row> {
    sqlx::query_as("SELECT id, status, points, end_ts FROM anomalies ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap_or_default()
}

fn as_row(e: &AnomalyEvent) -> Row {
    (
        e.id.clone(),
        e.status.as_str().to_owned(),
        e.points as i32,
        e.end,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalies_land_exactly_once_also_across_a_kill_and_restart() {
    // 10 sensors x 30 h, one reading a minute, every fault at 3x its default rate.
    let (msgs, truth) = simulate(10, 1800, scaled_faults(3.0), 21);
    assert!(truth.len() > 20, "faults were injected");
    let db = test_database().await;
    let topics = unique_topics();
    let cleaner_settings = settings(&db, &topics);
    let env = detector_env(
        &settings_env(&cleaner_settings, &db),
        &format!("det_{}", uuid::Uuid::new_v4().simple()),
    );
    airq_kafka::admin::ensure_topics(
        &brokers(),
        &[
            &topics.raw,
            &topics.processed,
            &topics.anomalies,
            &topics.dead_letter,
        ],
        3,
    )
    .await
    .expect("topics");

    let stop_cleaner = CancellationToken::new();
    let cleaner = tokio::spawn(stream_cleaner::startup::run(
        cleaner_settings,
        stop_cleaner.clone(),
    ));
    let mut first = start_detector(&env);

    // The stream arrives at about 2,000 readings/s while the detector runs.
    let producer = {
        let (topic, msgs) = (topics.raw.clone(), msgs.clone());
        tokio::spawn(async move {
            let producer = airq_kafka::client::producer(&brokers(), 5).expect("producer");
            let mut out = sensor_sim::publish::Publisher::new(producer, topic);
            for chunk in msgs.chunks(200) {
                for m in chunk {
                    out.send(&m.key, &m.payload).await.expect("send");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            out.flush().await.expect("flush");
        })
    };
    let pool = PgPool::connect(&db).await.unwrap();
    let started = Instant::now();
    while stored_anomalies(&pool).await.len() < 10 && started.elapsed() < LONG {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let before_kill = stored_anomalies(&pool).await.len();
    assert!(
        before_kill >= 10,
        "the detector stored anomalies before the kill ({before_kill})"
    );
    assert!(!producer.is_finished(), "killed mid-stream");
    // Tansu evicts a vanished member only when its session (10 s) expires (docs/tansu.md).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut second = start_detector(&env);
    producer.await.unwrap();

    // The oracle: the same detector code over everything the cleaner published, in order.
    let valid = msgs
        .iter()
        .filter(|m| oracle_key(&m.payload).is_some())
        .count();
    let processed = read_topic(&topics.processed, valid, Duration::from_secs(2), LONG).await;
    assert_eq!(
        processed.len(),
        valid,
        "the cleaner published every reading once"
    );
    let mut det = Detector::new(
        anomaly_detector::config::Settings::defaults()
            .unwrap()
            .detect,
    );
    let mut expected_events = Vec::new();
    for m in &processed {
        let r: ProcessedReading = serde_json::from_slice(&m.payload).unwrap();
        expected_events.extend(det.process(&r));
    }
    let final_state: BTreeMap<String, &AnomalyEvent> =
        expected_events.iter().map(|e| (e.id.clone(), e)).collect();
    let expected_rows: Vec<Row> = final_state.values().map(|e| as_row(e)).collect();
    let kinds: BTreeSet<_> = final_state.values().map(|e| e.kind).collect();
    assert!(kinds.len() >= 5, "several kinds of anomaly: {kinds:?}");

    let started = Instant::now();
    let mut rows = stored_anomalies(&pool).await;
    while rows != expected_rows && started.elapsed() < LONG {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rows = stored_anomalies(&pool).await;
    }
    let published = read_topic(
        &topics.anomalies,
        expected_events.len(),
        Duration::from_secs(3),
        LONG,
    )
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
    stop_cleaner.cancel();
    cleaner.await.unwrap().unwrap();

    let missing: Vec<_> = expected_rows
        .iter()
        .filter(|r| !rows.contains(r))
        .take(3)
        .collect();
    let extra: Vec<_> = rows
        .iter()
        .filter(|r| !expected_rows.contains(r))
        .take(3)
        .collect();
    assert_eq!(
        rows.len(),
        expected_rows.len(),
        "table: {} rows, oracle {}; missing e.g. {missing:?}, extra e.g. {extra:?}",
        rows.len(),
        expected_rows.len()
    );
    assert_eq!(rows, expected_rows);

    // The topic is at least once: a kill between a batch's publish and its table write
    // publishes that batch again on restart. Every copy is the same event (same id, status and
    // content), so keyed on (id, status) the topic holds exactly the expected events.
    let mut seen: BTreeMap<(String, String), Vec<AnomalyEvent>> = BTreeMap::new();
    for m in &published {
        let e: AnomalyEvent = serde_json::from_slice(&m.payload).expect("an anomaly event");
        seen.entry((e.id.clone(), e.status.as_str().to_owned()))
            .or_default()
            .push(e);
    }
    // Compared as they travel: through JSON (serde_json's float parsing is not bit-exact).
    let expected_msgs: BTreeMap<(String, String), AnomalyEvent> = expected_events
        .iter()
        .map(|e| {
            let travelled: AnomalyEvent = serde_json::from_slice(&e.to_json()).unwrap();
            ((e.id.clone(), e.status.as_str().to_owned()), travelled)
        })
        .collect();
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        expected_msgs.keys().cloned().collect::<BTreeSet<_>>()
    );
    for (key, copies) in &seen {
        assert!(
            copies.iter().all(|c| *c == expected_msgs[key]),
            "every copy of {key:?} is the expected event: {copies:?} vs {:?}",
            expected_msgs[key]
        );
    }
    let repeats: usize = seen.values().map(|c| c.len() - 1).sum();
    assert!(
        repeats <= 100,
        "repeats come from one redelivered batch at most, not from the whole replay: {repeats}"
    );
    pool.close().await;
    cleanup(&topics, &db).await;
}
