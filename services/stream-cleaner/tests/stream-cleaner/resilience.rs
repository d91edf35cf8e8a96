//! The cleaner under poison messages and a broker that dies.

use std::collections::BTreeMap;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_messages_are_dead_lettered_and_good_ones_still_flow() {
    airq_runtime::init_tracing("info,sqlx=warn");
    let (msgs, _) = simulate(20, 300, FaultRates::none(), 17);
    let (_, valid) = valid_keys(&msgs);
    let bad = malformed(10_000, 5);
    let validation = airq_domain::validate::ValidationConfig::default();
    let now = chrono::Utc::now();
    for b in &bad {
        assert!(
            airq_domain::validate::decode(b, now, &validation).is_err(),
            "the generator makes only invalid messages: {:?}",
            String::from_utf8_lossy(&b[..b.len().min(80)])
        );
    }
    let db = test_database().await;
    let topics = unique_topics();
    // Poison before, between and after the good messages.
    produce_bytes(&brokers(), &topics.raw, &bad[..5000]).await;
    produce(&topics.raw, &msgs).await;
    produce_bytes(&brokers(), &topics.raw, &bad[5000..]).await;
    let (stop, cleaner) = spawn_cleaner(settings(&db, &topics));
    let pool = PgPool::connect(&db).await.unwrap();

    let rows = wait_for_rows(&pool, valid.len() as i64, LONG).await;
    let distinct = |got: &[Received]| {
        got.iter()
            .map(|d| {
                (
                    &d.headers["airq.source.partition"],
                    &d.headers["airq.source.offset"],
                )
            })
            .collect::<BTreeSet<_>>()
            .len()
    };
    let dead = read_topic_until(
        &topics.dead_letter,
        |got| distinct(got) >= bad.len(),
        Duration::from_secs(2),
        LONG,
    )
    .await;
    assert!(!cleaner.is_finished(), "the cleaner is still running");
    stop.cancel();
    cleaner.await.unwrap().unwrap();

    assert_eq!(rows as usize, valid.len(), "every good reading stored");
    let stored: BTreeSet<_> = stored_keys(&pool).await.into_iter().collect();
    assert_eq!(stored, valid);
    // Each bad message in the dead-letter topic, byte for byte, with a reason. At least once:
    // when the watchdog recreates the consumer, a batch whose offsets were not stored yet is
    // redelivered and dead-lettered again, as an identical copy naming the same source.
    let mut by_source: BTreeMap<(String, String), &Received> = BTreeMap::new();
    for d in &dead {
        let source = (
            d.headers["airq.source.partition"].clone(),
            d.headers["airq.source.offset"].clone(),
        );
        if let Some(first) = by_source.insert(source.clone(), d) {
            assert_eq!(
                (&first.payload, &first.headers["airq.reason"]),
                (&d.payload, &d.headers["airq.reason"]),
                "a repeat of {source:?} is an identical copy"
            );
        }
    }
    let mut expected: BTreeMap<&[u8], usize> = BTreeMap::new();
    bad.iter()
        .for_each(|b| *expected.entry(b.as_slice()).or_default() += 1);
    let mut got: BTreeMap<&[u8], usize> = BTreeMap::new();
    by_source
        .values()
        .for_each(|d| *got.entry(d.payload.as_slice()).or_default() += 1);
    assert_eq!(by_source.len(), bad.len(), "every bad message, none lost");
    assert!(
        got == expected,
        "the dead-letter topic holds exactly the bad messages"
    );
    let reasons: BTreeSet<&str> = dead
        .iter()
        .map(|d| d.headers["airq.reason"].as_str())
        .collect();
    assert!(
        reasons.len() >= 5,
        "reasons name what is wrong: {reasons:?}"
    );
    assert!(
        dead.iter()
            .all(|d| !d.headers["airq.detail"].is_empty() || d.payload.is_empty())
    );
    pool.close().await;
    cleanup(&topics, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_mid_stream_loses_and_duplicates_nothing() {
    airq_runtime::init_tracing("warn");
    let mut broker = PrivateTansu::start().await;
    let (msgs, _) = simulate(20, 600, FaultRates::none(), 19);
    let (_, valid) = valid_keys(&msgs);
    let half = msgs.len() / 2;
    let db = test_database().await;
    let topics = unique_topics();
    let mut s = settings(&db, &topics);
    s.kafka.brokers = broker.brokers();
    produce_on(&broker.brokers(), &topics.raw, &msgs[..half]).await;
    let (stop, cleaner) = spawn_cleaner(s);
    let pool = PgPool::connect(&db).await.unwrap();
    let seen = wait_for_rows(&pool, 2_000, LONG).await;
    assert!(seen >= 2_000, "progress before the kill ({seen})");

    broker.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !cleaner.is_finished(),
        "the cleaner waits for the broker, it does not crash"
    );
    broker.start_again();
    produce_on(&broker.brokers(), &topics.raw, &msgs[half..]).await;

    let rows = wait_for_rows(&pool, valid.len() as i64, LONG).await;
    let processed = read_topic_until_on(
        &broker.brokers(),
        &topics.processed,
        |got| processed_keys(got) == valid,
        Duration::from_secs(2),
        LONG,
    )
    .await;
    stop.cancel();
    cleaner.await.unwrap().unwrap();
    assert_eq!(rows as usize, valid.len());
    let stored = stored_keys(&pool).await;
    assert_eq!(stored.len(), valid.len(), "nothing stored twice");
    assert_eq!(stored.into_iter().collect::<BTreeSet<_>>(), valid);
    assert_eq!(processed_keys(&processed), valid, "processed_data complete");
    pool.close().await;
    cleanup(&topics, &db).await;
}
