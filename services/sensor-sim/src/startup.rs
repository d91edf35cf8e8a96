//! Builds and runs the two modes.

use std::time::Duration as StdDuration;

use airq_domain::Location;
use anyhow::Context;
use chrono::{Duration, SubsecRound, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::cli::{ArchiveArgs, OpenaqArgs, ReplayArgs, SendArgs, SyntheticArgs};
use crate::config::Settings;
use crate::publish::{Pacer, Publisher};
use crate::truth::TruthLog;
use airq_sim::faults::FaultRates;
use airq_sim::replay;
use airq_sim::sim::{FleetSpec, Simulator};

async fn publisher(settings: &Settings) -> anyhow::Result<Publisher> {
    let k = &settings.kafka;
    airq_kafka::admin::ensure_topics(&k.brokers, &[&k.topics.raw], k.partitions)
        .await
        .context("creating the raw topic")?;
    let producer = airq_kafka::client::producer(&k.brokers, 5).context("creating the producer")?;
    Ok(Publisher::new(producer, k.topics.raw.clone()))
}

/// The key of a line sent as is: its `sensor_id` when it is a JSON object with a string one,
/// else empty (the cleaner dead-letters what is not a reading, whatever its key).
pub fn key_of(line: &str) -> String {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("sensor_id")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Publishes every non-empty line of the file (or standard input) to `raw_data` as it is, then
/// prints what was published.
pub async fn run_send(settings: Settings, args: SendArgs) -> anyhow::Result<()> {
    let text = match &args.file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => std::io::read_to_string(std::io::stdin()).context("reading standard input")?,
    };
    let mut out = publisher(&settings).await?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        out.send(&key_of(line), line.as_bytes()).await?;
    }
    out.flush().await?;
    println!("{}", out.summary());
    Ok(())
}

/// Runs the synthetic fleet until `ticks` are done or `shutdown` fires.
pub async fn run_synthetic(
    settings: Settings,
    args: SyntheticArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let interval = Duration::milliseconds((args.interval_secs * 1000.0).round() as i64);
    anyhow::ensure!(
        interval > Duration::zero(),
        "--interval-secs must be positive"
    );
    let live = args.start.is_none();
    let spec = FleetSpec {
        sensors: args.sensors,
        center: Location {
            lat: args.center_lat,
            lon: args.center_lon,
        },
        // Live readings carry whole-second timestamps, as real sensors report them.
        start: args.start.unwrap_or_else(|| Utc::now().trunc_subsecs(0)),
        interval,
        seed: args.seed,
        faults: if args.no_faults {
            FaultRates::none()
        } else {
            settings.faults.clone()
        },
    };
    let mut sim = Simulator::new(spec);
    let mut truth = TruthLog::open(args.truth_file.as_deref())?;
    let mut out = publisher(&settings).await?;
    let pacer = Pacer::new(if live { 0.0 } else { args.rate });
    tracing::info!(
        sensors = args.sensors,
        live,
        ticks = args.ticks,
        "synthetic fleet started"
    );

    while args.ticks == 0 || sim.ticks() < args.ticks {
        if live {
            let wait = (sim.time_of(sim.ticks()) - Utc::now())
                .to_std()
                .unwrap_or(StdDuration::ZERO);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        } else if shutdown.is_cancelled() {
            break;
        }
        let tick = sim.tick();
        truth.record(&tick.truth)?;
        for m in &tick.messages {
            pacer.wait_for(out.sent).await;
            out.send(&m.key, &m.payload).await?;
        }
    }
    for m in sim.flush_held() {
        out.send(&m.key, &m.payload).await?;
    }
    truth.flush()?;
    out.flush().await?;
    tracing::info!(
        messages = out.sent,
        ticks = sim.ticks(),
        "synthetic fleet stopped"
    );
    Ok(())
}

/// Replays the Beijing data set.
pub async fn run_replay(
    settings: Settings,
    args: ReplayArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut readings = replay::load(&args.data_dir, args.limit)
        .with_context(|| format!("loading Beijing data from {}", args.data_dir.display()))?;
    let w = &args.window;
    readings.retain(|r| {
        w.from.is_none_or(|f| r.timestamp >= f) && w.to.is_none_or(|t| r.timestamp < t)
    });
    if let Some(path) = &args.to_file {
        write_jsonl(path, &readings).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("{} readings written to {}", readings.len(), path.display());
        return Ok(());
    }
    replay_readings(
        &settings,
        &readings,
        &args.window,
        args.speedup,
        args.quiet,
        &shutdown,
    )
    .await
}

/// Writes `readings` as JSON lines, in order.
fn write_jsonl(path: &std::path::Path, readings: &[airq_domain::Reading]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for r in readings {
        serde_json::to_writer(&mut out, r)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Publishes `readings` in order (paced at `speedup` data seconds per second, 0 = as fast as
/// possible), then prints what was published as one JSON line on stdout (the input of
/// `stream-cleaner landed`).
async fn replay_readings(
    settings: &Settings,
    readings: &[airq_domain::Reading],
    window: &crate::cli::Window,
    speedup: f64,
    quiet: bool,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut out = publisher(settings).await?;
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(readings.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} readings  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let t0 = readings.first().map(|r| r.timestamp);
    for r in readings {
        if shutdown.is_cancelled() {
            break;
        }
        if let (Some(t0), true) = (t0, speedup > 0.0) {
            let due = (r.timestamp - t0).num_milliseconds() as f64 / 1000.0 / speedup;
            tokio::time::sleep_until((started + StdDuration::from_secs_f64(due)).into()).await;
        }
        out.send(&r.sensor_id, &r.to_json()).await?;
        bar.inc(1);
    }
    out.flush().await?;
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        messages = out.sent,
        secs,
        rate = out.sent as f64 / secs.max(1e-9),
        "replay finished"
    );
    // What `stream-cleaner landed` waits for: the readings that carry a measurement (one
    // without any is dead-lettered) of the window.
    let storable = readings
        .iter()
        .filter(|r| {
            let m = r.measurements;
            m.pm2_5.is_some() || m.pm10.is_some() || m.no2.is_some()
        })
        .count();
    let mut summary = out.summary();
    summary["storable"] = storable.into();
    summary["from"] = window.from.map(|t| t.to_rfc3339()).into();
    summary["to"] = window.to.map(|t| t.to_rfc3339()).into();
    println!("{summary}");
    Ok(())
}

/// Replays a folder of OpenAQ archive files.
pub async fn run_openaq_archive(
    settings: Settings,
    args: ArchiveArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let readings = crate::openaq::archive::load(&args.dir, args.window.from, args.window.to)
        .with_context(|| format!("loading the OpenAQ archive in {}", args.dir.display()))?;
    replay_readings(&settings, &readings, &args.window, 0.0, true, &shutdown).await
}

/// Polls OpenAQ until stopped (or once). A failed cycle (the API unreachable after its
/// retries, a malformed answer) is logged and the next one tries again: nothing crashes and
/// the watermarks only move past what the broker acknowledged.
pub async fn run_openaq(
    settings: Settings,
    args: OpenaqArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use crate::openaq::{api, live, watermark::Watermarks};
    let cfg = api::ClientConfig {
        base_url: args.base_url.clone(),
        api_key: std::env::var("OPENAQ_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .map(Into::into),
        timeout: StdDuration::from_secs_f64(args.timeout_secs),
        ..api::ClientConfig::default()
    };
    if cfg.api_key.is_none() {
        tracing::warn!(
            "OPENAQ_API_KEY is not set: OpenAQ answers key-less requests at a low rate limit"
        );
    }
    let client = api::Client::new(cfg).context("building the HTTP client")?;
    let state = Watermarks::path(&args.state_dir, args.location);
    let mut source = live::LiveSource::new(
        client,
        args.location,
        Duration::hours(args.backfill_hours),
        state,
    )?;
    let mut out = publisher(&settings).await?;
    tracing::info!(location = args.location, base_url = %args.base_url, "OpenAQ source started");
    loop {
        match source.cycle(&mut out, Utc::now()).await {
            Ok(c) => tracing::info!(
                observations = c.observations,
                published = c.published,
                "OpenAQ poll done"
            ),
            Err(e) if args.once => return Err(e),
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "OpenAQ poll failed: next poll retries"
            ),
        }
        if args.once {
            return Ok(());
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(StdDuration::from_secs(args.poll_secs)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::key_of;

    #[test]
    fn a_line_is_keyed_by_its_sensor_id_when_it_has_one() {
        assert_eq!(key_of(r#"{"sensor_id":"CAP_001","x":1}"#), "CAP_001");
        assert_eq!(key_of(r#"{"sensor_id":7}"#), "");
        assert_eq!(key_of("not json"), "");
        assert_eq!(key_of("[1, 2]"), "");
    }
}
