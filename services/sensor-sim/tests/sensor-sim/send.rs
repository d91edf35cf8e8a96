//! `sensor-sim send`: JSON lines published as they are, on the stack's broker, keyed by their
//! sensor id (a line that is not a reading too: the cleaner dead-letters it).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};

use super::openaq::brokers;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_is_published_as_it_is_keyed_by_its_sensor() {
    let topic = format!("raw_send_{}", uuid::Uuid::new_v4().simple());
    let lines = [
        r#"{"sensor_id":"CAP_001","timestamp":"2024-01-15T14:30:00Z","location":{"lat":48.8566,"lon":2.3522},"measurements":{"pm2_5":900.0}}"#,
        "not json at all",
    ];
    let file = std::env::temp_dir().join(format!("{topic}.jsonl"));
    std::fs::write(&file, format!("{}\n\n{}\n", lines[0], lines[1])).unwrap();
    let mut settings = sensor_sim::config::Settings::load().unwrap();
    settings.kafka.brokers = brokers();
    settings.kafka.topics.raw = topic.clone();
    let args = sensor_sim::cli::SendArgs {
        file: Some(file.clone()),
    };
    sensor_sim::startup::run_send(settings, args).await.unwrap();

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("reader_{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut got: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 2 && std::time::Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(300), consumer.recv()).await {
            got.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    got.sort();
    let expected = vec![
        (Vec::new(), lines[1].as_bytes().to_vec()),
        (b"CAP_001".to_vec(), lines[0].as_bytes().to_vec()),
    ];
    assert_eq!(
        got, expected,
        "the blank line is skipped, the others sent byte for byte"
    );
    std::fs::remove_file(file).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_deliveries_are_settled_as_a_live_fleet_sends() {
    let topic = format!("raw_reap_{}", uuid::Uuid::new_v4().simple());
    airq_kafka::admin::ensure_topics(&brokers(), &[&topic], 1)
        .await
        .unwrap();
    let producer = airq_kafka::client::producer(&brokers(), 5).unwrap();
    let mut out = sensor_sim::publish::Publisher::new(producer, topic);
    // A live fleet's pace: the first delivery is acknowledged long before the next send,
    // which settles it instead of keeping its future until 100,000 are pending.
    out.send("a", b"{}").await.unwrap();
    for n in 2..=5 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        out.send("a", b"{}").await.unwrap();
        assert!(
            out.pending() <= 1,
            "{} pending after {n} sends",
            out.pending()
        );
    }
    out.flush().await.unwrap();
    assert_eq!((out.pending(), out.sent), (0, 5));
}
