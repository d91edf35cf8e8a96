//! Integration tests of stream-cleaner on the real broker and real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod resilience;

use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Command};
use std::time::Duration;

use airq_domain::ProcessedReading;
use airq_domain::qc::Flag;
use airq_sim::faults::{FaultKind, FaultRates};
use helpers::*;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const LONG: Duration = Duration::from_secs(120);

fn spawn_cleaner(
    settings: stream_cleaner::config::Settings,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let token = CancellationToken::new();
    let handle = tokio::spawn(stream_cleaner::startup::run(settings, token.clone()));
    (token, handle)
}

fn valid_keys(msgs: &[airq_sim::sim::Outgoing]) -> (usize, BTreeSet<(String, String)>) {
    let keys: Vec<_> = msgs.iter().filter_map(|m| oracle_key(&m.payload)).collect();
    (keys.len(), keys.into_iter().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_stream_lands_exactly_once_and_invalid_messages_are_dead_lettered() {
    airq_runtime::init_tracing("warn");
    let (msgs, truth) = simulate(20, 300, scaled_faults(10.0), 7);
    let (valid_count, valid) = valid_keys(&msgs);
    let invalid = msgs.len() - valid_count;
    let kinds: BTreeSet<FaultKind> = truth.iter().map(|t| t.kind).collect();
    assert!(
        kinds.len() >= 10,
        "the stream exercises most fault kinds: {kinds:?}"
    );
    assert!(invalid > 0);

    let db = test_database().await;
    let topics = unique_topics();
    produce(&topics.raw, &msgs).await;
    let (stop, cleaner) = spawn_cleaner(settings(&db, &topics));
    let pool = PgPool::connect(&db).await.unwrap();

    wait_for_rows(&pool, valid.len() as i64, LONG).await;
    let dead = read_topic(&topics.dead_letter, invalid, Duration::from_secs(2), LONG).await;
    let processed = read_topic(&topics.processed, valid_count, Duration::from_secs(2), LONG).await;
    stop.cancel();
    cleaner.await.unwrap().unwrap();

    // PostgreSQL: every valid reading exactly once, nothing else.
    let stored: BTreeSet<_> = stored_keys(&pool).await.into_iter().collect();
    assert_eq!(count_rows(&pool).await as usize, valid.len());
    assert_eq!(stored, valid);

    // Dead-letter topic: every invalid message, unchanged, with where it came from and why.
    assert_eq!(dead.len(), invalid);
    let by_reason = |r: &str| {
        dead.iter()
            .filter(|d| d.headers["airq.reason"] == r)
            .count()
    };
    let injected = |k: FaultKind| truth.iter().filter(|t| t.kind == k).count();
    assert_eq!(
        by_reason("malformed_json"),
        injected(FaultKind::MalformedJson)
    );
    assert_eq!(
        by_reason("missing_field"),
        injected(FaultKind::MissingField)
    );
    for d in &dead {
        assert_eq!(d.headers["airq.source.topic"], topics.raw);
        assert!(d.headers["airq.source.offset"].parse::<i64>().is_ok());
        assert!(!d.headers["airq.detail"].is_empty());
        assert!(
            msgs.iter().any(|m| m.payload == d.payload),
            "payload kept byte for byte"
        );
    }

    // processed_data: one enriched message per valid message, duplicates included and flagged.
    assert_eq!(processed.len(), valid_count);
    let readings: Vec<ProcessedReading> = processed
        .iter()
        .map(|p| serde_json::from_slice(&p.payload).unwrap())
        .collect();
    let published: BTreeSet<_> = readings
        .iter()
        .map(|r| (r.sensor_id.clone(), r.timestamp.to_rfc3339()))
        .collect();
    assert_eq!(published, valid);
    assert_eq!(
        readings
            .iter()
            .filter(|r| r.flags.contains(Flag::Duplicate))
            .count(),
        injected(FaultKind::Duplicate)
    );
    assert_eq!(
        readings
            .iter()
            .filter(|r| r.flags.contains(Flag::Late))
            .count(),
        out_of_order(&msgs)
    );

    // The daily batch summarises the day per sensor, and a rerun gives the same result.
    let day: chrono::NaiveDate = "2025-06-01".parse().unwrap();
    let summarise = || async {
        airq_store::daily::compute_daily_stats(&pool, day)
            .await
            .unwrap();
        sqlx::query_as::<_, (i64, i64, f64)>(
            "SELECT count(*), sum(n_readings), min(completeness) FROM daily_sensor_stats WHERE day = $1",
        )
        .bind(day)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let first = summarise().await;
    assert_eq!(first, summarise().await);
    let (sensors, readings, completeness) = first;
    assert_eq!((sensors, readings as usize), (20, valid.len()));
    assert!(
        (completeness - 5.0 / 24.0).abs() < 1e-9,
        "5 simulated hours out of 24: {completeness}"
    );

    // The quality summary counts the same readings and the injected duplicates by flag
    // name; a rerun replaces the day's rows with identical ones.
    let quality = airq_store::daily::compute_daily_quality(&pool, day)
        .await
        .unwrap();
    assert_eq!(
        quality,
        airq_store::daily::compute_daily_quality(&pool, day)
            .await
            .unwrap()
    );
    assert_eq!(quality.len(), 20);
    assert_eq!(
        quality.iter().map(|q| q.n_readings as usize).sum::<usize>(),
        valid.len()
    );
    // Per flag name, the summary's counts add up to the stored readings with that flag.
    let stored: Vec<(String, i64)> = sqlx::query_as(
        "SELECT q.name, count(*) FROM readings r JOIN quality_flags q ON r.flags & q.bit <> 0 \
         GROUP BY q.name ORDER BY q.name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!stored.is_empty(), "the faulty stream flags readings");
    for (name, n) in &stored {
        let summed: i64 = quality
            .iter()
            .map(|q| {
                serde_json::from_str::<serde_json::Value>(&q.flag_counts).unwrap()[name]
                    .as_i64()
                    .unwrap_or(0)
            })
            .sum();
        assert_eq!(summed, *n, "flag {name}");
    }

    // The next day is not complete: every sensor active before it is late, named.
    let next = day.succ_opt().unwrap();
    let c = airq_store::daily::day_completeness(&pool, next, chrono::Duration::days(3))
        .await
        .unwrap();
    assert_eq!((c.active, c.late.len()), (20, 20));
    assert!(!c.is_complete());
    assert!(
        c.late
            .iter()
            .all(|(_, last)| last.is_some_and(|t| t.date_naive() == day))
    );

    // Value faults carry their flag in PostgreSQL.
    let flags_at = |sensor: &str, ts: chrono::DateTime<chrono::Utc>| {
        let pool = pool.clone();
        let sensor = sensor.to_owned();
        async move {
            sqlx::query_scalar::<_, i32>(
                "SELECT flags FROM readings WHERE sensor_id = $1 AND ts = $2",
            )
            .bind(&sensor)
            .bind(ts)
            .fetch_optional(&pool)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no row for {sensor} at {ts}"))
        }
    };
    let expected_flag: HashMap<FaultKind, Flag> = [
        (FaultKind::Negative, Flag::Negative),
        (FaultKind::OutOfRange, Flag::OutOfRange),
        (FaultKind::Pm25AbovePm10, Flag::Pm25AbovePm10),
        (FaultKind::Spike, Flag::Spike),
    ]
    .into();
    for t in truth.iter().filter(|t| expected_flag.contains_key(&t.kind)) {
        let flags = flags_at(&t.sensor_id, t.start).await;
        assert_ne!(flags & expected_flag[&t.kind] as i32, 0, "{t:?} flagged");
    }
    let last_tick: chrono::DateTime<chrono::Utc> = "2025-06-01T04:59:00Z".parse().unwrap();
    let stuck = truth
        .iter()
        .filter(|t| t.kind == FaultKind::Stuck && t.end > t.start + chrono::Duration::minutes(2));
    for t in stuck.filter(|t| t.start + chrono::Duration::minutes(2) <= last_tick) {
        let flags = flags_at(&t.sensor_id, t.start + chrono::Duration::minutes(2)).await;
        assert_ne!(
            flags & Flag::Flatline as i32,
            0,
            "{t:?} flagged as flatline from its third reading"
        );
    }
    pool.close().await;
    cleanup(&topics, &db).await;
}

/// Oracle for late data: valid readings that arrive after a newer one of the same sensor.
/// (An injected delay is not always out of order: the sensor may have been silent since.)
fn out_of_order(msgs: &[airq_sim::sim::Outgoing]) -> usize {
    let mut newest: HashMap<String, String> = HashMap::new();
    let mut seen = BTreeSet::new();
    let mut late = 0;
    for (sensor, ts) in msgs.iter().filter_map(|m| oracle_key(&m.payload)) {
        if !seen.insert((sensor.clone(), ts.clone())) {
            continue; // a duplicate, not a late reading
        }
        match newest.get(&sensor) {
            Some(n) if *n > ts => late += 1,
            _ => {
                newest.insert(sensor, ts);
            }
        }
    }
    late
}

fn start_subprocess(env: &[(String, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stream-cleaner"))
        .envs(env.iter().cloned())
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start stream-cleaner")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_cleaner_writes_each_arrival_without_waiting_for_the_batch_timeout() {
    airq_runtime::init_tracing("warn");
    let db = test_database().await;
    let topics = unique_topics();
    let mut s = settings(&db, &topics);
    // Batches that would wait ten minutes to fill: only `flush_when_caught_up` writes them.
    s.cleaner.batch_timeout_ms = 600_000;
    s.cleaner.flush_when_caught_up = true;
    let (stop, cleaner) = spawn_cleaner(s);
    let pool = PgPool::connect(&db).await.unwrap();
    let (msgs, _) = simulate(3, 4, FaultRates::none(), 11);
    let mut stored = 0;
    // One time step after another, each once the previous one is stored.
    for step in msgs.chunks(3) {
        produce(&topics.raw, step).await;
        let expected = stored + step.len() as i64;
        stored = wait_for_rows(&pool, expected, Duration::from_secs(60)).await;
        assert_eq!(
            stored, expected,
            "written while the batch was far from full"
        );
    }
    stop.cancel();
    cleaner.await.unwrap().unwrap();
}

/// A batch is inserted as it is; one with rows stored already (a redelivery) is inserted
/// again skipping them: only the new rows land, and the stored ones keep their first write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_stored_rows_inserts_only_the_new_ones() {
    use airq_store::readings::insert_readings;
    let db = test_database().await;
    let pool = PgPool::connect(&db).await.unwrap();
    airq_store::migrate(&pool).await.unwrap();
    let (msgs, _) = simulate(4, 5, FaultRates::none(), 3);
    let mut cleaner = airq_domain::sensor::Cleaner::default();
    let readings: Vec<ProcessedReading> = msgs
        .iter()
        .map(|m| cleaner.process(serde_json::from_slice(&m.payload).unwrap()))
        .collect();
    let (first, rest) = readings.split_at(10);
    assert_eq!(insert_readings(&pool, first).await.unwrap(), 10);

    // The last 5 of the first batch again, with other values, then the rest.
    let mut again = first[5..].to_vec();
    again.iter_mut().for_each(|r| r.clean.pm2_5 = Some(-1.0));
    again.extend_from_slice(rest);
    let inserted = insert_readings(&pool, &again).await.unwrap();
    assert_eq!(
        inserted,
        rest.len() as u64,
        "only the new rows are inserted"
    );
    assert_eq!(count_rows(&pool).await, readings.len() as i64);
    let overwritten: i64 = sqlx::query_scalar("SELECT count(*) FROM readings WHERE pm2_5 = -1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(overwritten, 0, "a stored row keeps its first write");
    assert_eq!(
        insert_readings(&pool, &readings).await.unwrap(),
        0,
        "a batch stored whole inserts nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleaner_killed_and_restarted_mid_stream_loses_and_duplicates_nothing() {
    let (msgs, _) = simulate(20, 1500, FaultRates::none(), 11);
    let (_, valid) = valid_keys(&msgs);
    let db = test_database().await;
    let topics = unique_topics();
    let s = settings(&db, &topics);
    let env = settings_env(&s, &db);
    produce(&topics.raw, &msgs).await;
    let pool = PgPool::connect(&db).await.unwrap();

    // SIGTERM first (graceful), then SIGKILL (no chance to commit), then run to the end.
    let first = start_subprocess(&env);
    let seen = wait_for_rows(&pool, 5_000, LONG).await;
    assert!(
        seen >= 5_000,
        "cleaner made progress before the stop ({seen})"
    );
    let ok = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = tokio::task::spawn_blocking(move || {
        let mut first = first;
        first.wait()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");

    let mut second = start_subprocess(&env);
    let seen = wait_for_rows(&pool, 15_000, LONG).await;
    assert!(
        seen >= 15_000 && (seen as usize) < valid.len(),
        "killed mid-stream ({seen})"
    );
    second.kill().unwrap();
    second.wait().unwrap();

    // Restarted at once, while the dead member is still in the group: Tansu gives the new
    // member no partition (docs/tansu.md) until its watchdog recreates the consumer.
    let log = std::env::temp_dir().join(format!("{}.log", topics.raw));
    let mut env = env.clone();
    env.push(("AIRQ__CLEANER__HEAL_AFTER_SECS".into(), "6".into()));
    let mut third = Command::new(env!("CARGO_BIN_EXE_stream-cleaner"))
        .envs(env.iter().cloned())
        .env("RUST_LOG", "warn")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start stream-cleaner");
    let rows = wait_for_rows(&pool, valid.len() as i64, LONG).await;
    let processed = read_topic_until(
        &topics.processed,
        |got| processed_keys(got) == valid,
        Duration::from_secs(2),
        LONG,
    )
    .await;
    third.kill().unwrap();
    third.wait().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);

    assert_eq!(rows as usize, valid.len());
    assert!(
        logged.contains("recreating the consumer"),
        "the stuck member healed itself (log: {logged})"
    );
    let stored: BTreeSet<_> = stored_keys(&pool).await.into_iter().collect();
    assert_eq!(stored, valid, "every reading stored exactly once");
    let published = processed_keys(&processed);
    let missing: Vec<_> = valid.difference(&published).take(5).collect();
    assert!(
        missing.is_empty(),
        "processed_data complete (redelivery may repeat, never lose): {} of {} missing, e.g. {missing:?}; {} messages read",
        valid.difference(&published).count(),
        valid.len(),
        processed.len()
    );
    assert_eq!(published, valid);
    pool.close().await;
    cleanup(&topics, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_stops_progress_and_loses_nothing() {
    airq_runtime::init_tracing("warn");
    let pg = PrivatePg::start();
    let db = create_database(&pg.admin_url()).await;
    let (msgs, _) = simulate(20, 600, FaultRates::none(), 13);
    let (_, valid) = valid_keys(&msgs);
    let half = msgs.len() / 2;
    let topics = unique_topics();
    produce(&topics.raw, &msgs[..half]).await;
    let (stop, cleaner) = spawn_cleaner(settings(&db, &topics));
    let pool = PgPool::connect(&db).await.unwrap();
    let seen = wait_for_rows(&pool, 2_000, LONG).await;
    assert!(seen >= 2_000);
    pool.close().await;

    pg.stop();
    produce(&topics.raw, &msgs[half..]).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !cleaner.is_finished(),
        "the cleaner waits for the database, it does not crash"
    );
    pg.start_again();

    let pool = PgPool::connect(&db).await.unwrap();
    let rows = wait_for_rows(&pool, valid.len() as i64, LONG).await;
    stop.cancel();
    cleaner.await.unwrap().unwrap();
    assert_eq!(rows as usize, valid.len());
    let stored: BTreeSet<_> = stored_keys(&pool).await.into_iter().collect();
    assert_eq!(stored, valid);
    cleanup(&topics, &db).await;
}
