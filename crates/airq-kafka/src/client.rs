//! Client builders with the settings every airq service relies on.

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;

use crate::KafkaError;

/// An idempotent producer: acks from all in-sync replicas, no duplicates on retry,
/// ordering kept per partition. `linger_ms` trades latency for batching.
pub fn producer(brokers: &str, linger_ms: u32) -> Result<FutureProducer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "300000")
        .create()
        .map_err(KafkaError::Config)
}

/// A consumer in `group_id` for at-least-once processing: offsets are stored by the
/// caller after the outputs of a message are durable (`store_offsets`), and the stored
/// offsets are committed in the background every second and on close.
pub fn consumer(brokers: &str, group_id: &str, topics: &[&str]) -> Result<StreamConsumer, KafkaError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("fetch.wait.max.ms", "50")
        .set("queued.min.messages", "200000")
        .set("fetch.max.bytes", "52428800")
        .create()
        .map_err(KafkaError::Config)?;
    consumer.subscribe(topics).map_err(KafkaError::Transient)?;
    Ok(consumer)
}
