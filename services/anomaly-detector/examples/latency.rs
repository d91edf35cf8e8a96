//! Sensor -> anomaly latency harness (bench/latency.sh runs it against a running cleaner
//! and detector). Publishes a faulty simulated stream to `raw_data` at a fixed rate,
//! remembers when each reading was handed to the producer, and reads `anomalies`: an
//! opened anomaly (or a silence, closed at once) is raised by the reading at its `end`,
//! so its latency is the time from that reading's send to the event's arrival.
//!
//! With `--live`, the readings are stamped with the wall clock: the fleet reports every
//! `sensors / rate` seconds, each time step sent at its time, as a live fleet does (late
//! deliveries later). Without it, the stream starts at 2025-03-01 with a reading a minute
//! (a backlog, judged with the backlog wait).
//!
//! cargo run --release -p anomaly-detector --example latency -- --rate 5000 --seconds 60 --live

// A bench harness: a poisoned lock is a bug worth a panic.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airq_detect::{AnomalyEvent, AnomalyKind, Status};
use airq_domain::Reading;
use airq_sim::sim::{FleetSpec, Simulator};
use anyhow::Context;
use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:19092")]
    brokers: String,
    #[arg(long, default_value = "raw_data")]
    raw_topic: String,
    #[arg(long, default_value = "anomalies")]
    anomalies_topic: String,
    /// Also time raw -> processed_data (the cleaner's share of the path).
    #[arg(long)]
    processed_topic: Option<String>,
    /// Readings per second.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    #[arg(long, default_value_t = 100)]
    sensors: usize,
    /// Fault rates: the simulator's defaults times this.
    #[arg(long, default_value_t = 3.0)]
    fault_factor: f64,
    /// Stamp the readings with the wall clock and send each time step at its time.
    #[arg(long)]
    live: bool,
    /// Live: leave out the events raised by the readings of the first seconds (the detector
    /// warms each new sensor from PostgreSQL on its first reading).
    #[arg(long, default_value_t = 10)]
    warmup_secs: u64,
}

type Key = (String, i64);

/// The key fields of a reading, raw or processed.
#[derive(serde::Deserialize)]
struct Keyed {
    sensor_id: String,
    #[serde(with = "airq_domain::reading::rfc3339")]
    timestamp: chrono::DateTime<chrono::Utc>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let total = (args.rate * args.seconds as f64) as u64;
    let faults = airq_sim::faults::FaultRates::default().scaled(args.fault_factor);
    let ticks = total / args.sensors as u64;
    let (start, interval) = if args.live {
        // The reader joins its group for 5 s first; the fleet starts on the second after.
        let at = chrono::Utc::now() + chrono::Duration::seconds(6);
        let whole = chrono::DateTime::from_timestamp(at.timestamp(), 0).context("clock")?;
        let ms = (args.sensors as f64 / args.rate * 1e3).round() as i64;
        (whole, chrono::Duration::milliseconds(ms.max(1)))
    } else {
        (
            "2025-03-01T00:00:00Z".parse()?,
            chrono::Duration::minutes(1),
        )
    };
    let stream = Simulator::new(FleetSpec {
        sensors: args.sensors,
        center: airq_domain::Location {
            lat: 48.8566,
            lon: 2.3522,
        },
        start,
        interval,
        seed: 5,
        faults,
    })
    .run(ticks);
    let messages = stream.messages;
    eprintln!(
        "{} messages, {ticks} time steps of {} ms from {start}",
        messages.len(),
        interval.num_milliseconds()
    );
    let counted_from = start + chrono::Duration::seconds(args.warmup_secs as i64);

    let sent: Arc<Mutex<HashMap<Key, Instant>>> = Arc::default();
    // By kind of anomaly.
    let latencies: Arc<Mutex<std::collections::BTreeMap<String, Vec<f64>>>> = Arc::default();
    let mut topics = vec![args.raw_topic.as_str(), args.anomalies_topic.as_str()];
    topics.extend(args.processed_topic.as_deref());
    let mut distinct = topics.clone();
    distinct.sort_unstable();
    distinct.dedup();
    airq_kafka::admin::ensure_topics(&args.brokers, &distinct, 6).await?;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", format!("latency-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        // Tansu on PostgreSQL fails ListOffsets under read_committed (docs/tansu.md).
        .set("isolation.level", "read_uncommitted")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    consumer.subscribe(&topics[1..])?;
    let cleaned: Arc<Mutex<Vec<f64>>> = Arc::default();
    // The anomalies' path after processed_data, by hop: processed_data (as this reader got
    // it) -> the detector producing the event (its broker timestamp), -> its arrival here.
    let hops: Arc<Mutex<(Vec<f64>, Vec<f64>)>> = Arc::default();
    let reader = {
        let (sent, latencies, cleaned) = (sent.clone(), latencies.clone(), cleaned.clone());
        let hops = hops.clone();
        let mut processed_at: HashMap<Key, i64> = HashMap::new();
        let anomalies_topic = args.anomalies_topic.clone();
        let live = args.live;
        tokio::spawn(async move {
            loop {
                let Ok(Ok(m)) =
                    tokio::time::timeout(Duration::from_secs(15), consumer.recv()).await
                else {
                    break;
                };
                let arrived = Instant::now();
                let arrived_ms = chrono::Utc::now().timestamp_millis();
                if m.topic() != anomalies_topic {
                    let Ok(r) = serde_json::from_slice::<Keyed>(m.payload().unwrap_or_default())
                    else {
                        continue;
                    };
                    if live && r.timestamp < counted_from {
                        continue;
                    }
                    let key = (r.sensor_id, r.timestamp.timestamp_millis());
                    // A duplicate delivery: its first arrival counts.
                    if processed_at.contains_key(&key) {
                        continue;
                    }
                    processed_at.insert(key.clone(), arrived_ms);
                    if let Some(t) = sent.lock().expect("lock").get(&key) {
                        cleaned
                            .lock()
                            .expect("lock")
                            .push(arrived.duration_since(*t).as_secs_f64() * 1e3);
                    }
                    continue;
                }
                let Ok(e) = serde_json::from_slice::<AnomalyEvent>(m.payload().unwrap_or_default())
                else {
                    continue;
                };
                let raised_by_end = e.status == Status::Open || e.kind == AnomalyKind::Silence;
                if !raised_by_end {
                    continue;
                }
                if live && e.end < counted_from {
                    continue;
                }
                let key = (e.sensor_id.clone(), e.end.timestamp_millis());
                if let (Some(p), Some(produced)) =
                    (processed_at.get(&key), m.timestamp().to_millis())
                {
                    let mut h = hops.lock().expect("lock");
                    h.0.push((produced - p) as f64);
                    h.1.push((arrived_ms - produced) as f64);
                }
                if let Some(t) = sent.lock().expect("lock").get(&key) {
                    latencies
                        .lock()
                        .expect("lock")
                        .entry(format!("{:?}", e.kind).to_lowercase())
                        .or_default()
                        .push(arrived.duration_since(*t).as_secs_f64() * 1e3);
                }
            }
        })
    };
    // Let the reader join its group before the stream starts.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Lingers 5 ms like sensor-sim.
    let producer = airq_kafka::client::producer(&args.brokers, 5).context("producer")?;
    let mut out = sensor_sim::publish::Publisher::new(producer, args.raw_topic.clone());
    let started = Instant::now();
    let pacer = sensor_sim::publish::Pacer::new(args.rate);
    for (i, m) in messages.iter().enumerate() {
        let reading = serde_json::from_slice::<Reading>(&m.payload);
        match (&reading, args.live) {
            // Each time step at its time (a late delivery, older, at once).
            (Ok(r), true) => {
                if let Ok(ahead) = (r.timestamp - chrono::Utc::now()).to_std() {
                    tokio::time::sleep(ahead).await;
                }
            }
            (Err(_), true) => {}
            (_, false) => pacer.wait_for(i as u64).await,
        }
        if let Ok(r) = reading {
            sent.lock()
                .expect("lock")
                .entry((r.sensor_id, r.timestamp.timestamp_millis()))
                .or_insert_with(Instant::now);
        }
        out.send(&m.key, &m.payload).await?;
    }
    out.flush().await?;
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "sent {} in {elapsed:.1} s ({:.0}/s); waiting for the last anomalies",
        messages.len(),
        messages.len() as f64 / elapsed
    );
    reader.await?;
    let by_kind = latencies.lock().expect("lock").clone();
    let l: Vec<f64> = by_kind.values().flatten().copied().collect();
    let c = cleaned.lock().expect("lock").clone();
    anyhow::ensure!(
        !l.is_empty() || !c.is_empty(),
        "nothing arrived: are the cleaner and detector running on these topics?"
    );
    println!(
        "rate {:.0} readings/s over {elapsed:.1} s",
        messages.len() as f64 / elapsed
    );
    if !l.is_empty() {
        println!("sensor -> anomaly: {}", summary(l));
        for (kind, l) in by_kind {
            println!("  {kind}: {}", summary(l));
        }
        let (detector, last_hop) = hops.lock().expect("lock").clone();
        if !detector.is_empty() {
            println!(
                "  processed_data here -> event produced: {}",
                summary(detector)
            );
            println!("  event produced -> here: {}", summary(last_hop));
        }
    }
    if let (false, Some(topic)) = (c.is_empty(), &args.processed_topic) {
        println!("raw -> {topic}: {}", summary(c));
    }
    Ok(())
}

/// "n timed; latency ms: p50 .. p90 .. p99 .. max ..".
fn summary(mut l: Vec<f64>) -> String {
    l.sort_by(f64::total_cmp);
    let q = |p: f64| l[((l.len() - 1) as f64 * p).round() as usize];
    format!(
        "{} timed; latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        l.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        l[l.len() - 1]
    )
}
