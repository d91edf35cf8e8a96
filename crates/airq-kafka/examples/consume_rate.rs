//! The broker's own consume rate through librdkafka, for context in benchmarks:
//! reads `N` messages of `TOPIC` from the beginning in a fresh group and prints msg/s.
//!
//! `cargo run --release -p airq-kafka --example consume_rate -- BROKERS TOPIC N`
use std::time::Instant;

use rdkafka::consumer::StreamConsumer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, n] = args.as_slice() else {
        return Err("usage: consume_rate BROKERS TOPIC N".into());
    };
    let n: u64 = n.parse()?;
    let group = format!("consume-rate-{}", std::process::id());
    let consumer: StreamConsumer = airq_kafka::client::consumer(brokers, &group, &[topic])?;
    let first = consumer.recv().await?; // the group is formed: start the clock
    drop(first);
    let start = Instant::now();
    for _ in 1..n {
        consumer.recv().await?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} messages in {secs:.2} s: {:.0} msg/s",
        n - 1,
        (n - 1) as f64 / secs
    );
    Ok(())
}
