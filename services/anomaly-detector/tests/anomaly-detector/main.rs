//! The detector on the real broker and PostgreSQL: a faulty stream goes through the
//! cleaner and the detector (neighbours on, as deployed), and the anomalies in the topic
//! and the table are exactly those of `backtest` over the same raw readings, once each,
//! also when the detector is killed mid-stream and restarted (warm start from PostgreSQL,
//! neighbour context included).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../stream-cleaner/tests/stream-cleaner/helpers.rs"]
#[allow(dead_code)]
mod helpers;
mod resilience;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use airq_detect::{AnomalyEvent, Detector, Ticks};
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
    env.push(("AIRQ__DETECTOR__HEAL_AFTER_SECS".into(), "6".into()));
    env.push(("AIRQ__TICKS__WAIT_MS".into(), TICK_WAIT_MS.to_string()));
    env.push((
        "AIRQ__TICKS__BACKLOG_WAIT_MS".into(),
        TICK_WAIT_MS.to_string(),
    ));
    env
}

/// How long a tick waits for a sensor that stopped (a simulated dropout) in these tests.
const TICK_WAIT_MS: u64 = 5000;

/// Publishes `msgs` to `topic` at about 2,000 a second, holding its last third back until the
/// returned sender fires (or is dropped): a kill made before that falls mid-stream however
/// fast (or slowly, on a busy broker) the consumers go.
fn paced_stream(
    topic: &str,
    msgs: &[airq_sim::sim::Outgoing],
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (killed, after_kill) = tokio::sync::oneshot::channel::<()>();
    let (topic, msgs) = (topic.to_owned(), msgs.to_vec());
    let task = tokio::spawn(async move {
        let producer = airq_kafka::client::producer(&brokers(), 5).expect("producer");
        let mut out = sensor_sim::publish::Publisher::new(producer, topic);
        let gate = msgs.len() * 2 / 3;
        let mut after_kill = Some(after_kill);
        for (i, chunk) in msgs.chunks(200).enumerate() {
            if i * 200 >= gate
                && let Some(rx) = after_kill.take()
            {
                let _ = rx.await;
            }
            for m in chunk {
                out.send(&m.key, &m.payload).await.expect("send");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        out.flush().await.expect("flush");
    });
    (killed, task)
}

fn start_detector(env: &[(String, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_anomaly-detector"))
        .arg("run")
        .envs(env.iter().cloned())
        // The consumer counters every 10 s: a failure's log shows who stopped where.
        .env("RUST_LOG", "warn,airq_kafka::runtime::counters=info")
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
    let (killed, producer) = paced_stream(&topics.raw, &msgs);
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
    let _ = killed.send(());
    // Restarted at once: the watchdog heals the member Tansu leaves without partitions
    // while the dead one is still in the group (docs/tansu.md).
    let mut second = start_detector(&env);
    producer.await.unwrap();

    // The oracle: `backtest` over the raw stream the sensors sent.
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
    let expected_events = backtest(&msgs);
    let expected_rows = final_rows(&expected_events);
    assert_eq!(
        expected_rows,
        final_rows(&oracle(&processed)),
        "backtest over the raw stream = the detector's code over processed_data"
    );
    let kinds: BTreeSet<_> = expected_events.iter().map(|e| e.kind).collect();
    assert!(kinds.len() >= 5, "several kinds of anomaly: {kinds:?}");
    let rows = wait_for_table(&pool, &expected_rows).await;
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

    assert_rows(&rows, &expected_rows);
    assert_topic_holds(&published, &expected_events);
    assert_messages_match_the_catalog(&msgs, &processed, &published);
    pool.close().await;
    cleanup(&topics, &db).await;
}

/// Every message the pipeline carried matches its topic's JSON Schema in the data catalog
/// (generated from the Rust types): each reading the cleaner accepted, each processed
/// reading and each anomaly event. A raw message of the wrong shape, which the cleaner
/// dead-letters, fails it too.
fn assert_messages_match_the_catalog(
    raw: &[airq_sim::sim::Outgoing],
    processed: &[Received],
    anomalies: &[Received],
) {
    let catalog = airq_catalog::Catalog::platform();
    let validator = |topic: &str| {
        let schema = catalog
            .topic(topic)
            .and_then(|t| t.schema.as_ref())
            .unwrap();
        jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .unwrap()
    };
    let check = |topic: &str, payloads: &mut dyn Iterator<Item = &[u8]>| {
        let v = validator(topic);
        let mut n = 0;
        for p in payloads {
            let json: serde_json::Value = serde_json::from_slice(p).unwrap();
            let errors: Vec<String> = v.iter_errors(&json).map(|e| e.to_string()).collect();
            assert!(
                errors.is_empty(),
                "{topic}: {json} does not match its schema: {errors:?}"
            );
            n += 1;
        }
        n
    };
    let v = airq_domain::validate::ValidationConfig::default();
    let now = chrono::Utc::now();
    let (accepted, refused): (Vec<_>, Vec<_>) = raw
        .iter()
        .partition(|m| airq_domain::validate::decode(&m.payload, now, &v).is_ok());
    let n = check(
        "raw_data",
        &mut accepted.iter().map(|m| m.payload.as_slice()),
    );
    assert!(n > 10_000, "{n} raw readings checked");
    let raw_schema = validator("raw_data");
    let wrong_shape = refused
        .iter()
        .filter(|m| {
            matches!(
                airq_domain::validate::decode(&m.payload, now, &v).map_err(|e| e.reason.as_str()),
                Err("missing_field" | "invalid_type" | "invalid_sensor_id" | "invalid_location")
            )
        })
        .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).ok())
        .collect::<Vec<_>>();
    assert!(
        !wrong_shape.is_empty(),
        "the stream had messages of the wrong shape"
    );
    for m in &wrong_shape {
        assert!(
            !raw_schema.is_valid(m),
            "{m} was refused but matches the schema"
        );
    }
    check(
        "processed_data",
        &mut processed.iter().map(|m| m.payload.as_slice()),
    );
    let n = check(
        "anomalies",
        &mut anomalies.iter().map(|m| m.payload.as_slice()),
    );
    assert!(n > 20, "{n} anomaly events checked");
}

/// `backtest` over the raw messages, in the order the sensors sent them: every event it
/// raised, with the ticks still open judged (the service judges them once they waited), and
/// no alert closed by the end of the input (a stream has none).
fn backtest(raw: &[airq_sim::sim::Outgoing]) -> Vec<AnomalyEvent> {
    let s = anomaly_detector::config::Settings::defaults().unwrap();
    let mut bt = anomaly_detector::backtest::Backtest::new(s.qc, s.detect);
    let v = airq_domain::validate::ValidationConfig::default();
    let now = chrono::Utc::now();
    raw.iter()
        .filter_map(|m| airq_domain::validate::decode(&m.payload, now, &v).ok())
        .for_each(|r| bt.push(r));
    bt.close_ticks();
    bt.events
}

/// The oracle where no raw stream exists: the detector code over everything on
/// `processed_data`, tick by tick (each sensor's readings are in order on the topic; out of
/// order ones are flagged late and judged as nothing).
fn oracle(processed: &[Received]) -> Vec<AnomalyEvent> {
    oracle_with(
        processed,
        anomaly_detector::config::Settings::defaults()
            .unwrap()
            .detect,
    )
}

/// [`oracle`] with these detector settings.
fn oracle_with(processed: &[Received], cfg: airq_detect::DetectorConfig) -> Vec<AnomalyEvent> {
    let mut readings: Vec<ProcessedReading> = processed
        .iter()
        .filter_map(|m| serde_json::from_slice(&m.payload).ok())
        .collect();
    readings.sort_by_key(|r| r.timestamp);
    let mut ticks = Ticks::sorted(&cfg.spatial);
    let mut det = Detector::new(cfg);
    let mut events = Vec::new();
    let mut judge = |ticks: Vec<airq_detect::Tick<()>>, events: &mut Vec<AnomalyEvent>| {
        for t in ticks {
            let steps = det.judge_tick(t.readings.iter().map(|(r, _)| r));
            events.extend(steps.into_iter().flat_map(|s| s.events));
        }
    };
    for r in readings {
        ticks.push(r, (), 0);
        judge(ticks.ready(), &mut events);
    }
    judge(ticks.drain(), &mut events);
    events
}

/// The table the events leave: the last state of each episode.
fn final_rows(events: &[AnomalyEvent]) -> Vec<Row> {
    let last: BTreeMap<String, &AnomalyEvent> = events.iter().map(|e| (e.id.clone(), e)).collect();
    last.values().map(|e| as_row(e)).collect()
}

/// Waits until the table holds `expected` (or LONG passed); returns what it holds.
async fn wait_for_table(pool: &PgPool, expected: &[Row]) -> Vec<Row> {
    let started = Instant::now();
    let mut rows = stored_anomalies(pool).await;
    while rows != expected && started.elapsed() < LONG {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rows = stored_anomalies(pool).await;
    }
    rows
}

fn assert_rows(rows: &[Row], expected: &[Row]) {
    let missing: Vec<_> = expected
        .iter()
        .filter(|r| !rows.contains(r))
        .take(3)
        .collect();
    let extra: Vec<_> = rows
        .iter()
        .filter(|r| !expected.contains(r))
        .take(3)
        .collect();
    assert_eq!(
        rows.len(),
        expected.len(),
        "table: {} rows, oracle {}; missing e.g. {missing:?}, extra e.g. {extra:?}",
        rows.len(),
        expected.len()
    );
    assert_eq!(rows, expected);
}

/// The topic is at least once: a kill between a batch's publish and its table write
/// publishes that batch again on restart. Every copy is the same event (same id, status and
/// content), so keyed on (id, status) the topic holds exactly the expected events.
fn assert_topic_holds(published: &[Received], expected: &[AnomalyEvent]) {
    let mut seen: BTreeMap<(String, String), Vec<AnomalyEvent>> = BTreeMap::new();
    for m in published {
        let e: AnomalyEvent = serde_json::from_slice(&m.payload).expect("an anomaly event");
        seen.entry((e.id.clone(), e.status.as_str().to_owned()))
            .or_default()
            .push(e);
    }
    // Compared as they travel: through JSON (serde_json's float parsing is not bit-exact).
    let expected_msgs: BTreeMap<(String, String), AnomalyEvent> = expected
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
        repeats <= 200,
        "repeats come from redelivered batches, not from the whole replay: {repeats}"
    );
}
