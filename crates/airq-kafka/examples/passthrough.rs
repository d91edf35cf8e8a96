//! librdkafka's own cost per message, the floor under the consumers' CPU per message: reads
//! `N` messages of `IN` from the beginning in a fresh group, with the services' consumer and
//! publisher settings, and publishes each one's bytes unchanged to `OUT`, a batch of up to
//! 5,000 at a time (each message copied out of the consumer, as the runtime does, and every
//! batch acknowledged before its offsets are stored). No decoding, no database. Prints msg/s
//! and the process's CPU per message (all threads, from `/proc/self/stat`), from the first
//! message to the last acknowledgement. With `OUT` = `-` it only consumes (and stores the
//! offsets): the consumer's share of the floor.
//!
//! `cargo run --release -p airq-kafka --example passthrough -- BROKERS IN OUT|- N`
use std::time::Instant;

use airq_kafka::publish::{Outgoing, send_all};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;

const BATCH: usize = 5_000;

/// The process's user + system CPU time, s (`/proc` counts in USER_HZ, 100 on Linux).
fn cpu_secs() -> Result<f64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').ok_or("no ')' in /proc/self/stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, input, output, n] = args.as_slice() else {
        return Err("usage: passthrough BROKERS IN OUT|- N".into());
    };
    let n: usize = n.parse()?;
    let publish = output != "-";
    if publish {
        airq_kafka::admin::ensure_topics(brokers, &[output], 6).await?;
    }
    let group = format!("passthrough-{}", std::process::id());
    let consumer: StreamConsumer = airq_kafka::client::consumer(brokers, &group, &[input])?;
    let publisher = airq_kafka::client::publisher(brokers, 5)?;
    let mut batch: Vec<OwnedMessage> = Vec::with_capacity(BATCH);
    batch.push(consumer.recv().await?.detach()); // the group is formed: start the clocks
    let (start, cpu0) = (Instant::now(), cpu_secs()?);
    let mut done = 0;
    while done < n {
        while batch.len() < BATCH.min(n - done) {
            batch.push(consumer.recv().await?.detach());
        }
        if publish {
            let out = batch
                .iter()
                .map(|m| Outgoing::new(output, m.key(), m.payload().unwrap_or_default()));
            send_all(&publisher, out).await?;
        }
        for m in &batch {
            consumer.store_offset(m.topic(), m.partition(), m.offset() + 1)?;
        }
        done += batch.len();
        batch.clear();
    }
    let (secs, cpu) = (start.elapsed().as_secs_f64(), cpu_secs()? - cpu0);
    println!(
        "{done} messages in {secs:.2} s: {:.0} msg/s; CPU {:.2} us per message ({:.2} cores busy)",
        done as f64 / secs,
        cpu * 1e6 / done as f64,
        cpu / secs
    );
    Ok(())
}
