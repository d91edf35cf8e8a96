//! Time per message to decode `raw_data` payloads (one JSON object a line, from
//! `sensor-sim replay --to-file`) into the wire shape the cleaner decodes
//! (`airq_domain::validate`'s `Wire`: every field optional, strings borrowed), with serde_json,
//! sonic-rs and simd-json, and whether they decode every message the same.
//! Usage: json-parsers FILE [MESSAGES] [ROUNDS]

use std::borrow::Cow;
use std::time::Instant;

use serde::Deserialize;

#[derive(Deserialize, Debug, PartialEq)]
struct Wire<'a> {
    #[serde(borrow)]
    sensor_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    location: Option<Location>,
    measurements: Option<Measurements>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Location {
    lat: Option<f64>,
    lon: Option<f64>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Measurements {
    pm2_5: Option<f64>,
    pm10: Option<f64>,
    no2: Option<f64>,
}

/// Nanoseconds per message of `decode` over `lines`; the checksum keeps the work alive.
fn time(lines: &[&[u8]], mut decode: impl FnMut(&[u8]) -> usize) -> (f64, usize) {
    let started = Instant::now();
    let sum = lines.iter().map(|l| decode(l)).sum();
    (
        started.elapsed().as_nanos() as f64 / lines.len() as f64,
        sum,
    )
}

fn checksum(w: Option<Wire<'_>>) -> usize {
    w.and_then(|w| w.sensor_id).map_or(0, |s| s.len())
}

/// The count in argument `arg`, or `default` without one.
fn count(arg: Option<String>, default: usize, name: &str) -> Result<usize, String> {
    arg.map_or(Ok(default), |a| {
        a.parse()
            .map_err(|_| format!("{name}: {a:?} is not a count"))
    })
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: json-parsers FILE [MESSAGES] [ROUNDS]")?;
    let n = count(args.next(), 200_000, "MESSAGES")?;
    let rounds = count(args.next(), 5, "ROUNDS")?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let lines: Vec<&[u8]> = text.lines().take(n).map(str::as_bytes).collect();
    println!(
        "{} messages of {path}, {} bytes on average",
        lines.len(),
        lines.iter().map(|l| l.len()).sum::<usize>() / lines.len().max(1)
    );
    let mut buf = Vec::new();
    for round in 1..=rounds {
        let (serde, a) = time(&lines, |l| checksum(serde_json::from_slice(l).ok()));
        let (sonic, b) = time(&lines, |l| checksum(sonic_rs::from_slice(l).ok()));
        // simd-json parses in place: each message is copied to a scratch buffer first, as
        // the cleaner would have to (its payloads are borrowed).
        let (simd, c) = time(&lines, |l| {
            buf.clear();
            buf.extend_from_slice(l);
            checksum(simd_json::serde::from_slice(&mut buf).ok())
        });
        if a != b || b != c {
            return Err("the parsers decoded different sensor ids".into());
        }
        println!(
            "round {round}: ns per message: serde_json {serde:.0}, sonic-rs {sonic:.0}, simd-json {simd:.0}"
        );
    }
    let differ = |f: &dyn Fn(&[u8]) -> bool| lines.iter().filter(|l| f(l)).count();
    let sonic =
        differ(&|l| serde_json::from_slice::<Wire>(l).ok() != sonic_rs::from_slice::<Wire>(l).ok());
    let simd = differ(&|l| {
        let mut b = l.to_vec();
        serde_json::from_slice::<Wire>(l).ok() != simd_json::serde::from_slice::<Wire>(&mut b).ok()
    });
    println!("messages decoded differently from serde_json: sonic-rs {sonic}, simd-json {simd}");
    Ok(())
}
