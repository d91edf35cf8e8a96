//! Client builders with the settings every airq service relies on.

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;

use crate::KafkaError;
use crate::publish::{Deliveries, Publisher};

/// Operator overrides from the environment: `AIRQ_KAFKA_DEBUG` (librdkafka debug contexts,
/// e.g. `cgrp,fetch`, logged through tracing) and `AIRQ_KAFKA_PROPERTIES`
/// (`key=value,key=value`, any librdkafka property, applied last).
fn with_overrides(mut cfg: ClientConfig) -> ClientConfig {
    if let Ok(contexts) = std::env::var("AIRQ_KAFKA_DEBUG") {
        cfg.set("debug", contexts);
    }
    if let Ok(props) = std::env::var("AIRQ_KAFKA_PROPERTIES") {
        for (k, v) in props.split(',').filter_map(|kv| kv.split_once('=')) {
            cfg.set(k.trim(), v.trim());
        }
    }
    cfg
}

/// The settings every reader of ours shares, for `group_id`: the base of [`consumer`] and
/// [`observer`], and of a bench harness's own consumer.
pub fn reader(brokers: &str, group_id: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers)
        .set("group.id", group_id)
        // No producer of ours uses transactions, so both levels read the same messages; and
        // Tansu 0.6.0 on PostgreSQL 15 fails ListOffsets(latest) under read_committed (its
        // query has an un-aliased subquery, which PostgreSQL < 16 rejects) and drops the
        // connection (docs/tansu.md).
        .set("isolation.level", "read_uncommitted")
        .set("fetch.wait.max.ms", fetch_wait_ms());
    cfg
}

/// How long a fetch may wait for new messages, ms: `AIRQ_KAFKA_FETCH_WAIT_MS`, 100 by default
/// (librdkafka's is 500). Apache Kafka answers a fetch as soon as it has data, so this is only
/// an idle consumer's wait. Tansu 0.6.0 sleeps out the whole wait even when it has data
/// (tansu-storage's `service/fetch.rs`), so there every fetch takes this long: it is the
/// latency floor of each hop, and each consumer sends 1000 / this fetches a second, each a
/// PostgreSQL query per partition on the native stack. Measured there with the live fleet
/// (docs/benchmarks.md): the broker and PostgreSQL took 0.89 of a core at 10 ms and 0.17 at
/// 100, and the full replay ran as fast. `bench/latency.sh` runs at 1.
fn fetch_wait_ms() -> String {
    fetch_wait_from(std::env::var("AIRQ_KAFKA_FETCH_WAIT_MS").ok().as_deref()).to_string()
}

/// The fetch wait a setting names: a whole number of ms, or 100 when it is absent or not one
/// (a typo must not turn into librdkafka's 500 ms, nor stop the service).
fn fetch_wait_from(setting: Option<&str>) -> u32 {
    const DEFAULT_MS: u32 = 100;
    setting
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MS)
}

/// A client that reads without taking part: it joins no group and commits nothing, and is
/// given its partitions with `assign` (offsets, watermarks, a message at a known offset). For
/// watching a group's progress (`lag`) or the topics' freshness (the catalog). `group_id` is
/// the group whose committed offsets it may read.
pub fn observer(brokers: &str, group_id: &str) -> Result<BaseConsumer, KafkaError> {
    let mut cfg = reader(brokers, group_id);
    cfg.set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    with_overrides(cfg).create().map_err(KafkaError::Config)
}

/// The settings of every producer of ours: idempotent, acks from all in-sync replicas, no
/// duplicates on retry, ordering kept per partition. `linger_ms` trades latency for batching.
pub(crate) fn producer_config(brokers: &str, linger_ms: u32) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "300000");
    cfg
}

/// An idempotent producer with a future per message, for senders that wait on each.
pub fn producer(brokers: &str, linger_ms: u32) -> Result<FutureProducer, KafkaError> {
    with_overrides(producer_config(brokers, linger_ms))
        .create()
        .map_err(KafkaError::Config)
}

/// An idempotent producer whose deliveries are settled per batch ([`publish::send_all`]):
/// the consumers' outputs and dead letters.
///
/// [`publish::send_all`]: crate::publish::send_all
pub fn publisher(brokers: &str, linger_ms: u32) -> Result<Publisher, KafkaError> {
    with_overrides(producer_config(brokers, linger_ms))
        .create_with_context(Deliveries)
        .map_err(KafkaError::Config)
}

/// A consumer in `group_id` for at-least-once processing: offsets are stored by the
/// caller after the outputs of a message are durable (`store_offsets`), and the stored
/// offsets are committed in the background every second and on close.
pub fn consumer(
    brokers: &str,
    group_id: &str,
    topics: &[&str],
) -> Result<StreamConsumer, KafkaError> {
    let mut cfg = reader(brokers, group_id);
    cfg.set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "3000")
        // A member stuck longer than this (e.g. a long database outage) leaves the group and
        // rejoins when it polls again; its unstored offsets are redelivered.
        .set("max.poll.interval.ms", "20000")
        // A request the broker leaves unanswered is retried after this (librdkafka: 60 s).
        // Under a full-speed replay Tansu once left a FetchRequest hanging for the full 60 s
        // and the cleaner stood still that long; a fetch answers in well under a second.
        .set("socket.timeout.ms", "20000")
        .set("queued.min.messages", "200000")
        // Tansu 0.6.0 answers a fetch with up to 5 MB taken partition by partition (it ignores
        // the per-partition limit): on a full topic one partition's ~20,000 records a fetch, and
        // the others waited their turn. 1 MB a fetch drains a full raw_data evenly (the Beijing
        // stations' first readings stored within 4 s of one another, not 13-29 s) as fast
        // (docs/benchmarks.md). Apache Kafka answers at once with data, so small fetches cost
        // it little. On Tansu a fetch takes the whole fetch wait: 1 MB per 100 ms caps a
        // consumer at 10 MB/s, far above what Tansu on PostgreSQL serves (memory-storage
        // benches fetch every 10 ms instead).
        .set("fetch.max.bytes", "1048576");
    let consumer: StreamConsumer = with_overrides(cfg).create().map_err(KafkaError::Config)?;
    consumer.subscribe(topics).map_err(KafkaError::Transient)?;
    Ok(consumer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fetch_wait_is_the_settings_whole_ms_or_a_hundred() {
        assert_eq!(fetch_wait_from(None), 100);
        assert_eq!(fetch_wait_from(Some("1")), 1);
        assert_eq!(fetch_wait_from(Some(" 250 ")), 250);
        for bad in ["", "1.5", "-1", "ten"] {
            assert_eq!(fetch_wait_from(Some(bad)), 100, "{bad:?}");
        }
    }
}
