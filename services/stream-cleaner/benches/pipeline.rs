//! The cleaner's own work per message, without the broker or PostgreSQL: decoding and
//! cleaning a `raw_data` message (`pipeline::handle`), and writing the `processed_data`
//! message by hand (`ProcessedReading::to_json`) against `serde_json::to_vec` of the same
//! reading. 12 sensors, hourly readings of the raw_data shape with the replay's decimals.
//! Run: `cargo bench -p stream-cleaner --bench pipeline`.

use airq_domain::ProcessedReading;
use airq_domain::sensor::Cleaner;
use airq_domain::validate::ValidationConfig;
use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stream_cleaner::pipeline::handle;

const MESSAGES: usize = 12_000;

fn messages() -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let t0: DateTime<Utc> = "2016-01-01T00:00:00Z".parse().unwrap_or_default();
    (0..MESSAGES)
        .map(|i| {
            let (sensor, hour) = (i % 12, (i / 12) as i64);
            let ts = (t0 + Duration::hours(hour)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let pm25: f64 = rng.random_range(3.0..300.0);
            format!(
                r#"{{"sensor_id":"bj_station_{sensor:02}","timestamp":"{ts}","location":{{"lat":39.9{sensor},"lon":116.3{sensor}}},"measurements":{{"pm2_5":{:.1},"pm10":{:.1},"no2":{:.1}}}}}"#,
                pm25,
                pm25 * rng.random_range(1.1..1.8),
                rng.random_range(5.0..120.0)
            )
            .into_bytes()
        })
        .collect()
}

fn processed(msgs: &[Vec<u8>]) -> Vec<ProcessedReading> {
    let (now, cfg, mut cleaner) = (Utc::now(), ValidationConfig::default(), Cleaner::default());
    msgs.iter()
        .filter_map(|m| handle(Some(m), now, &cfg, &mut cleaner).ok())
        .collect()
}

fn pipeline(c: &mut Criterion) {
    let msgs = messages();
    let readings = processed(&msgs);
    assert_eq!(readings.len(), MESSAGES, "every message is a valid reading");
    let mut g = c.benchmark_group("cleaner per message");
    g.throughput(Throughput::Elements(MESSAGES as u64));
    g.bench_function("decode + clean (pipeline::handle)", |b| {
        b.iter(|| processed(&msgs).len())
    });
    g.bench_function("processed_data JSON, hand-written (to_json)", |b| {
        b.iter(|| readings.iter().map(|r| r.to_json().len()).sum::<usize>())
    });
    g.bench_function("processed_data JSON, serde_json::to_vec", |b| {
        b.iter(|| {
            readings
                .iter()
                .map(|r| serde_json::to_vec(r).map_or(0, |v| v.len()))
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
