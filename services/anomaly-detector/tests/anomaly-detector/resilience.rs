//! The detector (with the cleaner before it) under poison messages, a long database outage,
//! scale-out with instances killed, the Beijing replay next to a live fleet, and the pollution
//! episodes of the Beijing replay.

use std::path::PathBuf;

use airq_sim::faults::FaultRates;

use super::*;

fn spawn_cleaner(
    s: stream_cleaner::config::Settings,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let stop = CancellationToken::new();
    (
        stop.clone(),
        tokio::spawn(stream_cleaner::startup::run(s, stop)),
    )
}

fn detector_settings(
    db: &str,
    topics: &airq_kafka::Topics,
    brokers: &str,
) -> anomaly_detector::config::Settings {
    let mut s = anomaly_detector::config::Settings::load().unwrap();
    s.database.url = secrecy::SecretString::from(db.to_owned());
    s.kafka.brokers = brokers.to_owned();
    s.kafka.topics = topics.clone();
    s.kafka.partitions = 3;
    s.detector.group_id = format!("det_{}", uuid::Uuid::new_v4().simple());
    s.warm.hours = 72;
    s.ticks.wait_ms = TICK_WAIT_MS;
    s.ticks.backlog_wait_ms = TICK_WAIT_MS;
    s
}

/// The detector next to a replay sent as fast as possible: the cleaner drains raw_data's
/// partitions unevenly, so some sensors reach processed_data seconds behind the others; the
/// backlog's ticks wait for them longer than [`TICK_WAIT_MS`], as `ticks.backlog_wait_ms`
/// does by default (docs/detection.md), though not as long (the tests' end of stream).
fn replay_detector_settings(
    db: &str,
    topics: &airq_kafka::Topics,
) -> anomaly_detector::config::Settings {
    let mut s = detector_settings(db, topics, &brokers());
    s.ticks.backlog_wait_ms = 30_000;
    s
}

fn spawn_detector(
    s: anomaly_detector::config::Settings,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let stop = CancellationToken::new();
    (
        stop.clone(),
        tokio::spawn(anomaly_detector::startup::run(s, stop)),
    )
}

async fn create_topics(brokers: &str, t: &airq_kafka::Topics, partitions: i32) {
    airq_kafka::admin::ensure_topics(
        brokers,
        &[&t.raw, &t.processed, &t.anomalies, &t.dead_letter],
        partitions,
    )
    .await
    .expect("topics");
}

/// Valid processed readings (faults included), as the cleaner makes them, in stream order.
fn processed_stream(sensors: usize, ticks: u64, seed: u64) -> Vec<Vec<u8>> {
    let (msgs, _) = simulate(sensors, ticks, scaled_faults(3.0), seed);
    let mut cleaner = airq_domain::sensor::Cleaner::default();
    let v = airq_domain::validate::ValidationConfig::default();
    let now = chrono::Utc::now();
    msgs.iter()
        .filter_map(|m| airq_domain::validate::decode(&m.payload, now, &v).ok())
        .map(|r| cleaner.process(r).to_json())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_processed_messages_are_dead_lettered_and_detection_goes_on() {
    airq_runtime::init_tracing("info,sqlx=warn");
    // Where the time went, shown on success too (.config/nextest.toml): this test once ran
    // past 60 s against its usual 12.
    let started = Instant::now();
    let phase = |what: &str| eprintln!("{:>7.1} s  {what}", started.elapsed().as_secs_f64());
    let good = processed_stream(10, 600, 23);
    let bad = malformed(10_000, 9);
    let db = test_database().await;
    let topics = unique_topics();
    create_topics(&brokers(), &topics, 3).await;
    // The poison is keyless; the good stream goes in whole, between its two halves, keyed by
    // region as the cleaner keys it (one region here: every sensor on one partition, in
    // event-time order, as the detector's ticks expect).
    produce_bytes(&brokers(), &topics.processed, &bad[..5000]).await;
    let keyed: Vec<airq_sim::sim::Outgoing> = good
        .iter()
        .map(|p| {
            let r: ProcessedReading = serde_json::from_slice(p).unwrap();
            airq_sim::sim::Outgoing {
                key: r.location.region_key(0.0).into_owned(),
                payload: p.clone(),
            }
        })
        .collect();
    produce(&topics.processed, &keyed).await;
    produce_bytes(&brokers(), &topics.processed, &bad[5000..]).await;
    phase("produced");
    let pool = PgPool::connect(&db).await.unwrap();
    airq_store::migrate(&pool).await.unwrap();
    let (stop, detector) = spawn_detector(detector_settings(&db, &topics, &brokers()));

    let dead = read_topic(&topics.dead_letter, bad.len(), Duration::from_secs(2), LONG).await;
    phase("dead letters read");
    let processed = read_topic(
        &topics.processed,
        bad.len() + good.len(),
        Duration::from_secs(1),
        LONG,
    )
    .await;
    phase("processed_data read");
    let expected = oracle(&processed);
    assert!(!expected.is_empty(), "the good stream has anomalies");
    let rows = wait_for_table(&pool, &final_rows(&expected)).await;
    phase("anomalies stored");
    assert!(!detector.is_finished(), "the detector is still running");
    stop.cancel();
    detector.await.unwrap().unwrap();

    assert_eq!(
        dead.len(),
        bad.len(),
        "every poison message dead-lettered once"
    );
    assert!(
        dead.iter()
            .all(|d| d.headers["airq.reason"] == "malformed_processed")
    );
    assert!(
        dead.iter()
            .all(|d| d.headers["airq.service"] == "anomaly-detector")
    );
    assert_rows(&rows, &final_rows(&expected));
    pool.close().await;
    cleanup(&topics, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleaner_and_detector_wait_out_a_30_s_database_outage_and_lose_nothing() {
    airq_runtime::init_tracing("error");
    let pg = PrivatePg::start();
    let db = create_database(&pg.admin_url()).await;
    let (msgs, _) = simulate(10, 1200, scaled_faults(3.0), 29);
    let valid: BTreeSet<_> = msgs.iter().filter_map(|m| oracle_key(&m.payload)).collect();
    let topics = unique_topics();
    create_topics(&brokers(), &topics, 3).await;
    let half = msgs.len() / 2;
    produce(&topics.raw, &msgs[..half]).await;
    let (stop_c, cleaner) = spawn_cleaner(settings(&db, &topics));
    // Without the neighbours: the outage stalls the whole stream for longer than a tick's
    // wait, so the ticks open at the stall close without the readings still to come, and
    // the alerts around it differ from `backtest`'s (docs/detection.md, known limits). What
    // this test checks is delivery: every reading and every alert once.
    let mut ds = detector_settings(&db, &topics, &brokers());
    ds.detect.spatial.enabled = false;
    let cfg = ds.detect.clone();
    let (stop_d, detector) = spawn_detector(ds);
    let pool = PgPool::connect(&db).await.unwrap();
    assert!(wait_for_rows(&pool, 2_000, LONG).await >= 2_000);
    pool.close().await;

    pg.stop();
    produce(&topics.raw, &msgs[half..]).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        !cleaner.is_finished() && !detector.is_finished(),
        "both wait, neither crashes"
    );
    pg.start_again();

    let pool = PgPool::connect(&db).await.unwrap();
    let rows = wait_for_rows(&pool, valid.len() as i64, LONG).await;
    assert_eq!(rows as usize, valid.len());
    let stored: BTreeSet<_> = stored_keys(&pool).await.into_iter().collect();
    assert_eq!(stored, valid, "every reading once");
    let processed = read_topic_until(
        &topics.processed,
        |got| processed_keys(got) == valid,
        Duration::from_secs(2),
        LONG,
    )
    .await;
    let expected = final_rows(&oracle_with(&processed, cfg));
    let table = wait_for_table(&pool, &expected).await;
    stop_c.cancel();
    stop_d.cancel();
    cleaner.await.unwrap().unwrap();
    detector.await.unwrap().unwrap();
    assert_rows(&table, &expected);
    pool.close().await;
    cleanup(&topics, &db).await;
}

fn cleaner_binary() -> PathBuf {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_anomaly-detector"))
        .with_file_name("stream-cleaner");
    assert!(
        bin.exists(),
        "{} missing: run the suite as `make test` does (cargo nextest run --workspace builds every binary)",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_each_with_one_of_each_killed_mid_stream_the_survivors_finish_the_work() {
    let (msgs, _) = simulate(12, 1500, scaled_faults(3.0), 31);
    let valid: BTreeSet<_> = msgs.iter().filter_map(|m| oracle_key(&m.payload)).collect();
    let db = test_database().await;
    let topics = unique_topics();
    create_topics(&brokers(), &topics, 6).await;
    let mut cs = settings(&db, &topics);
    cs.kafka.partitions = 6;
    let mut env = settings_env(&cs, &db);
    env.push(("AIRQ__CLEANER__HEAL_AFTER_SECS".into(), "6".into()));
    let mut denv = detector_env(&env, &format!("det_{}", uuid::Uuid::new_v4().simple()));
    // Without the neighbours: the killed cleaner stalls the stream until the survivor takes
    // its partitions, longer than a tick's wait (see the outage test).
    denv.push(("AIRQ__DETECT__SPATIAL__ENABLED".into(), "false".into()));
    let mut cfg = anomaly_detector::config::Settings::defaults()
        .unwrap()
        .detect;
    cfg.spatial.enabled = false;
    let start_cleaner = || {
        Command::new(cleaner_binary())
            .envs(env.iter().cloned())
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("start stream-cleaner")
    };
    let mut cleaners = [start_cleaner(), start_cleaner()];
    let mut detectors = [start_detector(&denv), start_detector(&denv)];

    // Its last third only after the kill (a busy broker slows the consumers down).
    let (killed, producer) = paced_stream(&topics.raw, &msgs);
    let pool = PgPool::connect(&db).await.unwrap();
    airq_store::migrate(&pool).await.unwrap();
    let started = Instant::now();
    while (count_rows(&pool).await < 4_000 || stored_anomalies(&pool).await.len() < 5)
        && started.elapsed() < LONG
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cleaners[0].kill().unwrap();
    detectors[0].kill().unwrap();
    assert!(!producer.is_finished(), "killed mid-stream");
    let _ = killed.send(());
    producer.await.unwrap();

    let rows = wait_for_rows(&pool, valid.len() as i64, LONG).await;
    let processed = read_topic_until(
        &topics.processed,
        |got| processed_keys(got) == valid,
        Duration::from_secs(2),
        LONG,
    )
    .await;
    let expected = final_rows(&oracle_with(&processed, cfg));
    let table = wait_for_table(&pool, &expected).await;
    for mut p in cleaners.into_iter().chain(detectors) {
        let _ = p.kill();
        let _ = p.wait();
    }
    assert_eq!(rows as usize, valid.len());
    let stored = stored_keys(&pool).await;
    assert_eq!(stored.len(), valid.len(), "every reading once");
    assert_eq!(stored.into_iter().collect::<BTreeSet<_>>(), valid);
    assert_eq!(processed_keys(&processed), valid, "processed_data complete");
    assert_rows(&table, &expected);
    pool.close().await;
    cleanup(&topics, &db).await;
}

fn beijing_dir() -> PathBuf {
    let shared = PathBuf::from(std::env::var("AIRQ_BEIJING_DIR").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/beijing_prsa"
        )
        .into()
    }));
    if shared.join("stations.csv").exists() {
        shared
    } else {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/beijing_prsa"
        ))
    }
}

/// Whether the cleaner accepts this reading (the rest is dead-lettered).
fn accepted(r: &airq_domain::Reading) -> bool {
    let v = airq_domain::validate::ValidationConfig::default();
    airq_domain::validate::decode(&r.to_json(), chrono::Utc::now(), &v).is_ok()
}

/// Replays `history` (Beijing's first `limit` readings) as `make replay` sends them (as fast
/// as possible), in two steps: the first hour, until the cleaner stored it, then the rest, so
/// that the bulk never waits on raw_data for a cleaner still joining its group.
async fn replay_beijing(
    dir: &std::path::Path,
    history: &[airq_domain::Reading],
    topics: &airq_kafka::Topics,
    pool: &PgPool,
) {
    let limit = history.len();
    let first_hour = history[0].timestamp + chrono::Duration::hours(1);
    let in_first_hour = history
        .iter()
        .filter(|r| r.timestamp < first_hour && accepted(r))
        .count() as i64;
    for (from, to) in [(None, Some(first_hour)), (Some(first_hour), None)] {
        let mut settings = sensor_sim::config::Settings::load().unwrap();
        settings.kafka.brokers = brokers();
        settings.kafka.topics = topics.clone();
        let args = sensor_sim::cli::ReplayArgs {
            data_dir: dir.to_owned(),
            speedup: 0.0,
            limit: Some(limit),
            quiet: true,
            to_file: None,
            window: sensor_sim::cli::Window { from, to },
        };
        sensor_sim::startup::run_replay(settings, args, CancellationToken::new())
            .await
            .unwrap();
        if from.is_none() {
            assert!(
                wait_for_rows(pool, in_first_hour, LONG).await >= in_first_hour,
                "the cleaner consumes"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beijing_replay_next_to_a_live_fleet_lands_every_reading() {
    airq_runtime::init_tracing("error");
    const REPLAYED: usize = 30_000;
    let dir = beijing_dir();
    let history = airq_sim::replay::load(&dir, Some(REPLAYED)).unwrap();
    let db = test_database().await;
    let topics = unique_topics();
    create_topics(&brokers(), &topics, 6).await;
    let mut cs = settings(&db, &topics);
    cs.kafka.partitions = 6;
    let (stop_c, cleaner) = spawn_cleaner(cs);
    let (stop_d, detector) = spawn_detector(replay_detector_settings(&db, &topics));

    // The live fleet: 20 sensors, a reading each per second, stamped with the wall clock.
    let stop_live = CancellationToken::new();
    let live = {
        let (topic, stop) = (topics.raw.clone(), stop_live.clone());
        tokio::spawn(async move {
            let mut sim = airq_sim::sim::Simulator::new(airq_sim::sim::FleetSpec {
                sensors: 20,
                center: airq_domain::Location {
                    lat: 48.85,
                    lon: 2.35,
                },
                start: chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 0),
                interval: chrono::Duration::seconds(1),
                seed: 3,
                faults: FaultRates::none(),
            });
            let producer = airq_kafka::client::producer(&brokers(), 5).expect("producer");
            let mut out = sensor_sim::publish::Publisher::new(producer, topic);
            let mut sent = Vec::new();
            while !stop.is_cancelled() {
                for m in sim.tick().messages {
                    out.send(&m.key, &m.payload).await.expect("send");
                    sent.push(m);
                }
                out.flush().await.expect("flush");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            sent
        })
    };
    // The replay, as `make replay` sends it: as fast as possible.
    let pool = PgPool::connect(&db).await.unwrap();
    airq_store::migrate(&pool).await.unwrap();
    replay_beijing(&dir, &history, &topics, &pool).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_live.cancel();
    let live_sent = live.await.unwrap();
    assert!(
        live_sent.len() >= 20 * 3,
        "the live fleet sent while the replay ran"
    );

    let mut valid: BTreeSet<(String, String)> = history
        .iter()
        .filter(|r| accepted(r))
        .map(|r| (r.sensor_id.clone(), r.timestamp.to_rfc3339()))
        .collect();
    valid.extend(live_sent.iter().filter_map(|m| oracle_key(&m.payload)));
    let rows = wait_for_rows(&pool, valid.len() as i64, LONG).await;
    assert_eq!(
        rows as usize,
        valid.len(),
        "every replayed and every live reading stored"
    );
    let stored: BTreeSet<_> = stored_keys(&pool).await.into_iter().collect();
    assert_eq!(stored, valid);

    // The detector keeps up: its group reaches the end of processed_data.
    let processed = read_topic(&topics.processed, valid.len(), Duration::from_secs(2), LONG).await;
    assert_eq!(processed_keys(&processed), valid);
    let expected = final_rows(&oracle(&processed));
    let table = wait_for_table(&pool, &expected).await;
    // Beijing's episodes, as if the live fleet (another region, another timeline) were not
    // there: its later timestamps once kept every Beijing episode from opening.
    let (episodes, _) = backtest_episodes(&history);
    let stored_episodes = wait_for_episodes(&pool, &episodes).await;
    stop_c.cancel();
    stop_d.cancel();
    cleaner.await.unwrap().unwrap();
    detector.await.unwrap().unwrap();
    assert_rows(&table, &expected);
    assert!(!episodes.is_empty(), "the replay holds a pollution episode");
    assert_eq!(stored_episodes, episodes);
    pool.close().await;
    cleanup(&topics, &db).await;
}

/// A stored pollution episode: id, status, start, end, peak AQI, sensors.
type EpisodeRow = (
    String,
    String,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
    i16,
    Vec<String>,
);

/// The oracle: `backtest`'s episodes over the readings, as stored, and their ids. A stream
/// never ends, so the last episode may stay open (no flush).
fn backtest_episodes(history: &[airq_domain::Reading]) -> (Vec<EpisodeRow>, BTreeSet<String>) {
    let s = anomaly_detector::config::Settings::defaults().unwrap();
    let mut bt = anomaly_detector::backtest::Backtest::new(s.qc, s.detect);
    history
        .iter()
        .filter(|r| accepted(r))
        .for_each(|r| bt.push(r.clone()));
    bt.close_ticks();
    let last: BTreeMap<String, &airq_detect::PollutionEpisode> =
        bt.episodes.iter().map(|e| (e.id.clone(), e)).collect();
    let rows = last
        .values()
        .map(|e| {
            (
                e.id.clone(),
                e.status.as_str().to_owned(),
                e.start,
                e.end,
                e.peak_aqi as i16,
                e.sensors.clone(),
            )
        })
        .collect();
    (rows, last.into_keys().collect())
}

/// Waits until the pollution_episodes table holds `expected` (or LONG passed).
async fn wait_for_episodes(pool: &PgPool, expected: &[EpisodeRow]) -> Vec<EpisodeRow> {
    let started = Instant::now();
    let mut stored = Vec::new();
    while started.elapsed() < LONG {
        stored = airq_store::pollution::stored_episodes(pool)
            .await
            .unwrap_or_default();
        if stored == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_stores_the_pollution_episodes_backtest_finds_in_the_beijing_replay() {
    airq_runtime::init_tracing("error");
    // The 12 stations' first 25 days (March 2013: several city-wide episodes); the
    // fixture's 3 stations x 72 h on a clone without the data set.
    const REPLAYED: usize = 7_200;
    let dir = beijing_dir();
    let history = airq_sim::replay::load(&dir, Some(REPLAYED)).unwrap();
    let db = test_database().await;
    let topics = unique_topics();
    create_topics(&brokers(), &topics, 3).await;
    let (stop_c, cleaner) = spawn_cleaner(settings(&db, &topics));
    let (stop_d, detector) = spawn_detector(replay_detector_settings(&db, &topics));
    let pool = PgPool::connect(&db).await.unwrap();
    airq_store::migrate(&pool).await.unwrap();
    replay_beijing(&dir, &history, &topics, &pool).await;

    let (expected, ids) = backtest_episodes(&history);
    assert!(
        expected.iter().any(|e| e.1 == "closed"),
        "the replay holds a pollution episode: {expected:?}"
    );
    let stored = wait_for_episodes(&pool, &expected).await;
    let faults = stored_anomalies(&pool).await;
    stop_c.cancel();
    stop_d.cancel();
    cleaner.await.unwrap().unwrap();
    detector.await.unwrap().unwrap();
    assert_eq!(stored, expected);
    // Never counted as a fault: no anomaly carries an episode's id.
    assert!(faults.iter().all(|f| !ids.contains(&f.0)));
    pool.close().await;
    cleanup(&topics, &db).await;
}
