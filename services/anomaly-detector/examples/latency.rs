//! Sensor -> anomaly latency harness (bench/latency.sh runs it against a running cleaner
//! and detector). Publishes a faulty simulated stream to `raw_data` at a fixed rate,
//! remembers when each reading was handed to the producer, and reads `anomalies`: an
//! opened anomaly (or a silence, closed at once) is raised by the reading at its `end`,
//! so its latency is the time from that reading's send to the event's arrival.
//!
//! With `--live`, the readings are stamped with the wall clock: the fleet reports every
//! `sensors / rate` seconds, each time step sent at its time, as a live fleet does (late
//! deliveries later). Without it, the stream starts at 2025-03-01 with a reading a minute
//! (a backlog, judged with the backlog wait). With `--live --spread`, each sensor reports at
//! its own phase of the interval (sensors on their own clocks) instead of the whole fleet at
//! the same instant.
//!
//! cargo run --release -p anomaly-detector --example latency -- --rate 5000 --seconds 60 --live

// A bench harness: a poisoned lock is a bug worth a panic.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airq_detect::{AnomalyEvent, AnomalyKind, Status};
use airq_domain::Reading;
use airq_sim::sim::{FleetSpec, Outgoing, Simulator};
use anyhow::Context;
use clap::Parser;
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
    /// Live: each sensor reports at its own phase of the interval, not all at once.
    #[arg(long)]
    spread: bool,
    /// Live: leave out the events raised by the readings of the first seconds (the detector
    /// warms each new sensor from PostgreSQL on its first reading).
    #[arg(long, default_value_t = 10)]
    warmup_secs: u64,
}

type Key = (String, i64);

/// What the reader timed, ms.
#[derive(Default)]
struct Timings {
    /// Sensor -> anomaly event, by kind of anomaly.
    by_kind: std::collections::BTreeMap<String, Vec<f64>>,
    /// Sensor -> `processed_data`.
    cleaned: Vec<f64>,
    /// `processed_data` here -> the detector producing the event (its broker timestamp).
    detector: Vec<f64>,
    /// The event produced -> here.
    last_hop: Vec<f64>,
}

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
    let messages = if args.live && args.spread {
        spread(stream.messages, start, interval)
    } else {
        stream.messages
    };
    eprintln!(
        "{} messages, {ticks} time steps of {} ms from {start}",
        messages.len(),
        interval.num_milliseconds()
    );
    let counted_from = start + chrono::Duration::seconds(args.warmup_secs as i64);

    let sent: Arc<Mutex<HashMap<Key, Instant>>> = Arc::default();
    let mut topics = vec![args.raw_topic.as_str(), args.anomalies_topic.as_str()];
    topics.extend(args.processed_topic.as_deref());
    let mut distinct = topics.clone();
    distinct.sort_unstable();
    distinct.dedup();
    airq_kafka::admin::ensure_topics(&args.brokers, &distinct, 6).await?;
    let group = format!("latency-{}", std::process::id());
    let consumer: StreamConsumer = airq_kafka::client::reader(&args.brokers, &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .create()?;
    consumer.subscribe(&topics[1..])?;
    let reader = {
        let sent = sent.clone();
        let anomalies_topic = args.anomalies_topic.clone();
        let live = args.live;
        tokio::spawn(async move {
            let mut t = Timings::default();
            let mut processed_at: HashMap<Key, i64> = HashMap::new();
            loop {
                let Ok(Ok(m)) =
                    tokio::time::timeout(Duration::from_secs(15), consumer.recv()).await
                else {
                    break;
                };
                let arrived = Instant::now();
                let arrived_ms = chrono::Utc::now().timestamp_millis();
                let since_sent = |key: &Key| {
                    let sent = sent.lock().expect("lock");
                    sent.get(key)
                        .map(|s| arrived.duration_since(*s).as_secs_f64() * 1e3)
                };
                if m.topic() != anomalies_topic {
                    let Ok(r) = serde_json::from_slice::<Keyed>(m.payload().unwrap_or_default())
                    else {
                        continue;
                    };
                    let key = (r.sensor_id, r.timestamp.timestamp_millis());
                    // A duplicate delivery: its first arrival counts.
                    if (live && r.timestamp < counted_from) || processed_at.contains_key(&key) {
                        continue;
                    }
                    t.cleaned.extend(since_sent(&key));
                    processed_at.insert(key, arrived_ms);
                    continue;
                }
                let Ok(e) = serde_json::from_slice::<AnomalyEvent>(m.payload().unwrap_or_default())
                else {
                    continue;
                };
                let raised_by_end = e.status == Status::Open || e.kind == AnomalyKind::Silence;
                if !raised_by_end || (live && e.end < counted_from) {
                    continue;
                }
                let key = (e.sensor_id.clone(), e.end.timestamp_millis());
                if let (Some(p), Some(produced)) =
                    (processed_at.get(&key), m.timestamp().to_millis())
                {
                    t.detector.push((produced - p) as f64);
                    t.last_hop.push((arrived_ms - produced) as f64);
                }
                if let Some(ms) = since_sent(&key) {
                    let kind = format!("{:?}", e.kind).to_lowercase();
                    t.by_kind.entry(kind).or_default().push(ms);
                }
            }
            t
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
    let t = reader.await?;
    let l: Vec<f64> = t.by_kind.values().flatten().copied().collect();
    anyhow::ensure!(
        !l.is_empty() || !t.cleaned.is_empty(),
        "nothing arrived: are the cleaner and detector running on these topics?"
    );
    println!(
        "rate {:.0} readings/s over {elapsed:.1} s",
        messages.len() as f64 / elapsed
    );
    if !l.is_empty() {
        println!("sensor -> anomaly: {}", summary(l));
        for (kind, l) in t.by_kind {
            println!("  {kind}: {}", summary(l));
        }
        if !t.detector.is_empty() {
            println!(
                "  processed_data here -> event produced: {}",
                summary(t.detector)
            );
            println!("  event produced -> here: {}", summary(t.last_hop));
        }
    }
    if let (false, Some(topic)) = (t.cleaned.is_empty(), &args.processed_topic) {
        println!("raw -> {topic}: {}", summary(t.cleaned));
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

/// Each sensor at its own phase of `interval` (a hash of its id): its readings' times move by
/// it, and each time step's messages go out in phase order. A message keeps its time step in
/// the stream, so a late delivery stays late; one that is not a reading goes at the step's start.
fn spread(
    messages: Vec<Outgoing>,
    start: chrono::DateTime<chrono::Utc>,
    interval: chrono::Duration,
) -> Vec<Outgoing> {
    use std::hash::{Hash, Hasher};
    let interval_ms = interval.num_milliseconds().max(1) as u64;
    let phase = |id: &str| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        chrono::Duration::milliseconds((h.finish() % interval_ms) as i64)
    };
    let mut step = start;
    let mut out: Vec<(chrono::DateTime<chrono::Utc>, chrono::Duration, Outgoing)> = messages
        .into_iter()
        .map(|mut m| {
            let mut offset = chrono::Duration::zero();
            if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&m.payload) {
                let id = v["sensor_id"].as_str().map(str::to_owned);
                let ts = v["timestamp"]
                    .as_str()
                    .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok());
                if let (Some(id), Some(ts)) = (id, ts) {
                    step = step.max(ts);
                    offset = phase(&id);
                    v["timestamp"] = (ts + offset)
                        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                        .to_string()
                        .into();
                    m.payload = serde_json::to_vec(&v).expect("a JSON value serializes");
                }
            }
            (step, offset, m)
        })
        .collect();
    out.sort_by_key(|(step, offset, _)| (*step, *offset));
    out.into_iter().map(|(_, _, m)| m).collect()
}
