//! A consumer group's lag on a topic: messages past its committed offsets, summed over the
//! partitions, for benchmarks that wait until a service has caught up. Reads offsets only:
//! it does not join the group.
//!
//! `cargo run --release -p airq-kafka --example group_lag -- BROKERS GROUP TOPIC`
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, group, topic] = args.as_slice() else {
        return Err("usage: group_lag BROKERS GROUP TOPIC".into());
    };
    let timeout = Duration::from_secs(10);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("isolation.level", "read_uncommitted")
        .create()?;
    let meta = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics() {
        for p in t.partitions() {
            tpl.add_partition(t.name(), p.id());
        }
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let mut lag = 0;
    for e in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
        let at = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        lag += (high - at).max(0);
        if std::env::var_os("AIRQ_LAG_PER_PARTITION").is_some() {
            eprintln!(
                "{} {}: committed {at}, high {high}",
                e.topic(),
                e.partition()
            );
        }
    }
    println!("{lag}");
    Ok(())
}
