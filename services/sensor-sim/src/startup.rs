//! Builds and runs the two modes.

use std::time::Duration as StdDuration;

use airq_domain::Location;
use anyhow::Context;
use chrono::{Duration, SubsecRound, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::cli::{ReplayArgs, SyntheticArgs};
use crate::config::Settings;
use crate::faults::FaultRates;
use crate::publish::{Pacer, Publisher};
use crate::replay;
use crate::sim::{FleetSpec, Simulator};
use crate::truth::TruthLog;

async fn publisher(settings: &Settings) -> anyhow::Result<Publisher> {
    let k = &settings.kafka;
    airq_kafka::admin::ensure_topics(&k.brokers, &[&k.topics.raw], k.partitions)
        .await
        .context("creating the raw topic")?;
    let producer = airq_kafka::client::producer(&k.brokers, 5).context("creating the producer")?;
    Ok(Publisher::new(producer, k.topics.raw.clone()))
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
    let readings = replay::load(&args.data_dir, args.limit)
        .with_context(|| format!("loading Beijing data from {}", args.data_dir.display()))?;
    let mut out = publisher(&settings).await?;
    let bar = if args.quiet {
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
    for r in &readings {
        if shutdown.is_cancelled() {
            break;
        }
        if let (Some(t0), true) = (t0, args.speedup > 0.0) {
            let due = (r.timestamp - t0).num_milliseconds() as f64 / 1000.0 / args.speedup;
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
    Ok(())
}
