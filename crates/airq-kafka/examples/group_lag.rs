//! A consumer group's lag on a topic: messages past its committed offsets, summed over the
//! partitions, for benchmarks that wait until a service has caught up. Reads offsets only:
//! it does not join the group.
//!
//! `cargo run --release -p airq-kafka --example group_lag -- BROKERS GROUP TOPIC`
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, group, topic] = args.as_slice() else {
        return Err("usage: group_lag BROKERS GROUP TOPIC".into());
    };
    let offsets = airq_kafka::lag::group_offsets(brokers, group, topic, Duration::from_secs(10))?;
    if std::env::var_os("AIRQ_LAG_PER_PARTITION").is_some() {
        for p in &offsets {
            eprintln!(
                "{topic} {}: committed {}, high {}",
                p.partition, p.committed, p.high
            );
        }
    }
    println!("{}", offsets.iter().map(|p| p.lag()).sum::<i64>());
    Ok(())
}
