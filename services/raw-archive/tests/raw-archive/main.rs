//! raw-archive on a real broker and a real MongoDB. No MongoDB server can be installed on the
//! machines `.ci/run` runs on, so these tests are `#[ignore]`d there and run wherever
//! `AIRQ_MONGODB_URL` points at one (the compose stack's: `mongodb://127.0.0.1:27017`):
//!
//! ```sh
//! AIRQ_MONGODB_URL=mongodb://127.0.0.1:27017 cargo nextest run -p raw-archive --run-ignored all
//! ```
//!
//! The document mapping, the idempotence rule and the replay filter are unit-tested in
//! `src/document.rs` and run everywhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use airq_kafka::publish::Outgoing;
use futures::StreamExt;
use mongodb::bson::{Document, doc};
use raw_archive::config::Settings;
use raw_archive::replay::{Range, replay};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio_util::sync::CancellationToken;

fn brokers() -> String {
    std::env::var("AIRQ_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

fn mongo_url() -> String {
    std::env::var("AIRQ_MONGODB_URL").expect("AIRQ_MONGODB_URL: a MongoDB server to test against")
}

fn settings(id: &str, group: &str) -> Settings {
    Settings::with_env([
        ("AIRQ__KAFKA__BROKERS".into(), brokers()),
        ("AIRQ__KAFKA__TOPICS__RAW".into(), format!("raw_{id}")),
        (
            "AIRQ__KAFKA__TOPICS__DEAD_LETTER".into(),
            format!("dlq_{id}"),
        ),
        ("AIRQ__MONGODB__URL".into(), mongo_url()),
        ("AIRQ__MONGODB__DATABASE".into(), format!("airq_test_{id}")),
        ("AIRQ__ARCHIVER__GROUP_ID".into(), group.into()),
    ])
    .unwrap()
}

fn reading(sensor: &str, hour: u32) -> String {
    format!(
        r#"{{"sensor_id":"{sensor}","timestamp":"2024-01-15T{hour:02}:00:00Z","location":{{"lat":48.85,"lon":2.35}},"measurements":{{"pm2_5":{hour}.5,"pm10":20.0,"no2":30.0}}}}"#
    )
}

async fn wait_count(coll: &mongodb::Collection<Document>, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = coll.count_documents(doc! {}).await.unwrap();
        if got >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Runs an archiver until `stop`; returns its task.
fn archiver(s: Settings, stop: CancellationToken) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(raw_archive::startup::run(s, stop))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a MongoDB server at AIRQ_MONGODB_URL (docker compose); .ci/run has none"]
async fn every_message_is_archived_once_and_a_range_replays_exactly_as_received() {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let s = settings(&id, &format!("archive_{id}"));
    airq_kafka::admin::ensure_topics(&s.kafka.brokers, &[&s.kafka.topics.raw], 3)
        .await
        .unwrap();
    let producer = airq_kafka::client::publisher(&s.kafka.brokers, 5).unwrap();
    let mut payloads: Vec<(String, String)> = Vec::new();
    for sensor in ["CAP_001", "CAP_002"] {
        for hour in 0..24 {
            payloads.push((sensor.into(), reading(sensor, hour)));
        }
    }
    payloads.push(("CAP_001".into(), "{\"sensor_id\":".into())); // malformed: archived too
    airq_kafka::publish::send_all(
        &producer,
        payloads
            .iter()
            .map(|(k, p)| Outgoing::new(&s.kafka.topics.raw, Some(k.as_bytes()), p.as_bytes()))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();

    let coll = raw_archive::startup::collection(&s.mongodb).await.unwrap();
    let stop = CancellationToken::new();
    let task = archiver(s.clone(), stop.clone());
    assert_eq!(wait_count(&coll, 49).await, 49);
    stop.cancel();
    task.await.unwrap().unwrap();
    let invalid = coll
        .find_one(doc! { "valid": false })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(invalid.get_str("reason").unwrap(), "malformed_json");
    let indexes = coll.list_index_names().await.unwrap();
    assert!(
        indexes.iter().any(|i| i.starts_with("sensor_id_1_ts_1")),
        "{indexes:?}"
    );

    // A second group reads everything again (a redelivery of every message): nothing new.
    let again = CancellationToken::new();
    let task = archiver(settings(&id, &format!("archive2_{id}")), again.clone());
    tokio::time::sleep(Duration::from_secs(10)).await;
    again.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 49);

    // One sensor's morning back to a topic, in time order, byte for byte.
    let out = format!("replayed_{id}");
    airq_kafka::admin::ensure_topics(&s.kafka.brokers, &[&out], 1)
        .await
        .unwrap();
    let range = Range {
        from: "2024-01-15T06:00:00Z".parse().unwrap(),
        to: "2024-01-15T12:00:00Z".parse().unwrap(),
        sensor: Some("CAP_002".into()),
        valid_only: false,
    };
    assert_eq!(replay(&coll, &producer, &out, &range).await.unwrap(), 6);
    let consumer: StreamConsumer =
        airq_kafka::client::consumer(&s.kafka.brokers, &format!("check_{id}"), &[&out]).unwrap();
    let mut got = Vec::new();
    let mut stream = consumer.stream();
    while got.len() < 6 {
        let m = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(m.key(), Some(b"CAP_002".as_slice()));
        got.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
    }
    let want: Vec<String> = (6..12).map(|h| reading("CAP_002", h)).collect();
    assert_eq!(got, want);
    drop(stream);
    consumer.unsubscribe();
    let client = mongodb::Client::with_uri_str(mongo_url()).await.unwrap();
    client.database(&s.mongodb.database).drop().await.unwrap();
}
