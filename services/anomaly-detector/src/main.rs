use std::path::PathBuf;

use airq_detect::DetectorConfig;
use airq_domain::Location;
use anomaly_detector::config::Settings;
use anomaly_detector::evaluate::{run_pipeline, score};
use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "anomaly-detector",
    version,
    about = "Per-sensor anomaly detection for airq"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Consume processed_data and publish and store anomalies until stopped (the default).
    Run,
    /// Apply database migrations and exit.
    Migrate,
    /// Score a univariate time series from a CSV file; writes per-row score and flag as CSV.
    Score {
        #[arg(long)]
        csv: PathBuf,
        /// The column holding the values.
        #[arg(long)]
        value_column: String,
        /// The column holding the timestamps (RFC 3339 or `YYYY-MM-DD HH:MM:SS` in UTC).
        #[arg(long)]
        timestamp_column: Option<String>,
        /// Seconds between rows when there is no timestamp column.
        #[arg(long, default_value_t = 3600)]
        interval_secs: i64,
        /// Where to write the scores (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Alert rates per sensor-day by kind on the Beijing replay (real data, no injected fault).
    ReplayRates {
        #[arg(
            long,
            env = "AIRQ_BEIJING_DIR",
            default_value = "../shared/data/beijing_prsa"
        )]
        data_dir: std::path::PathBuf,
    },
    /// The production cleaning and detection over a file of raw readings (JSON lines in the
    /// raw_data shape, or a CSV `timestamp,sensor_id,lat,lon,pm2_5,pm10,no2`, time order);
    /// writes one JSON line per alert and per pollution episode.
    Backtest {
        #[arg(long)]
        input: PathBuf,
        /// Where to write the JSON lines (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Score the detector on the Beijing data with faults injected into its last year (the
    /// years before warm it up): precision, recall per fault kind, delay, false alerts.
    EvaluateReal {
        #[arg(
            long,
            env = "AIRQ_BEIJING_DIR",
            default_value = "../shared/data/beijing_prsa"
        )]
        data_dir: std::path::PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Faults are injected from this day on (UTC) and alerts scored from then.
        #[arg(long, default_value = "2016-03-01")]
        test_from: chrono::NaiveDate,
        #[arg(long, default_value_t = 4)]
        per_sensor_month: usize,
        /// Write the ground truth (JSON lines) here.
        #[arg(long)]
        truth: Option<PathBuf>,
    },
    /// Score the detector on a simulated, labelled stream (precision, recall, F1, delay).
    Evaluate {
        #[arg(long, default_value_t = 20)]
        sensors: usize,
        #[arg(long, default_value_t = 7)]
        days: u64,
        #[arg(long, default_value_t = 60)]
        interval_secs: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Override the robust z-score threshold.
        #[arg(long)]
        z_threshold: Option<f64>,
        /// Override the EWMA control limit.
        #[arg(long)]
        ewma_limit: Option<f64>,
        /// Override the Page-Hinkley threshold.
        #[arg(long)]
        ph_threshold: Option<f64>,
    },
}

fn main() -> anyhow::Result<()> {
    airq_runtime::init_tracing("info,rdkafka=warn,sqlx=warn");
    let cli = Cli::parse();
    let settings = Settings::load().context("loading configuration")?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => tokio_main(async {
            let shutdown = airq_runtime::shutdown_token();
            anomaly_detector::startup::run(settings, shutdown).await
        }),
        Command::Migrate => tokio_main(async {
            let pool = airq_store::connect(&settings.database.url, 1)?;
            let shutdown = airq_runtime::shutdown_token();
            Ok(airq_store::migrate_with_retry(&pool, &shutdown).await?)
        }),
        Command::Score {
            csv,
            value_column,
            timestamp_column,
            interval_secs,
            output,
        } => {
            let input =
                std::fs::File::open(&csv).with_context(|| format!("opening {}", csv.display()))?;
            let columns = anomaly_detector::score::Columns {
                value: value_column,
                timestamp: timestamp_column,
                interval_secs,
            };
            let out: Box<dyn std::io::Write> = match &output {
                Some(p) => Box::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            let s = anomaly_detector::score::score_csv(input, out, &columns, settings.detect)?;
            eprintln!(
                "{} rows scored, {} missing, {} flagged",
                s.rows, s.missing, s.flagged
            );
            Ok(())
        }
        Command::ReplayRates { data_dir } => {
            let readings = airq_sim::replay::load(&data_dir, None)?;
            let n = readings.len();
            let rates = anomaly_detector::evaluate::alert_rates(readings, settings.detect);
            println!("{n} readings, {:.0} sensor-days", rates.sensor_days);
            println!(
                "{:<18} {:>8} {:>16} {:>22}",
                "alert kind", "alerts", "per sensor-day", "impossible in source"
            );
            for (k, c) in &rates.by_kind {
                println!(
                    "{k:<18} {:>8} {:>16.3} {:>22}",
                    c.alerts,
                    rates.per_sensor_day(c.alerts),
                    c.impossible_in_source
                );
            }
            println!(
                "{:<18} {:>8} {:>16.3}",
                "all",
                rates.alerts(),
                rates.per_sensor_day(rates.alerts())
            );
            println!(
                "{:<18} {:>8} {:>16.3}   (not shown faulty by the source's own values)",
                "unverified",
                rates.unverified(),
                rates.per_sensor_day(rates.unverified())
            );
            Ok(())
        }
        Command::Backtest { input, output } => {
            let (readings, rejected) = anomaly_detector::backtest::read(&input)?;
            for r in rejected.iter().take(20) {
                eprintln!("line {}: {}", r.line, r.reason);
            }
            let started = std::time::Instant::now();
            let outcome = anomaly_detector::backtest::run(readings, settings.qc, settings.detect);
            let out: Box<dyn std::io::Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            anomaly_detector::backtest::write_jsonl(out, &outcome).context("writing")?;
            eprintln!(
                "{} readings ({} rejected) in {:.2} s: {} alerts, {} pollution episodes, {} temporal alerts explained by neighbours",
                outcome.readings,
                rejected.len(),
                started.elapsed().as_secs_f64(),
                outcome.alerts.len(),
                outcome.episodes.len(),
                outcome.explained
            );
            Ok(())
        }
        Command::EvaluateReal {
            data_dir,
            seed,
            test_from,
            per_sensor_month,
            truth,
        } => anomaly_detector::injected::run_cli(
            &data_dir,
            seed,
            test_from,
            per_sensor_month,
            truth.as_deref(),
            settings.qc,
            settings.detect,
        ),
        Command::Evaluate {
            sensors,
            days,
            interval_secs,
            seed,
            z_threshold,
            ewma_limit,
            ph_threshold,
        } => {
            let d = settings.detect;
            let cfg = DetectorConfig {
                z_threshold: z_threshold.unwrap_or(d.z_threshold),
                ewma_limit: ewma_limit.unwrap_or(d.ewma_limit),
                ph_threshold: ph_threshold.unwrap_or(d.ph_threshold),
                ..d
            };
            let faults = airq_sim::faults::FaultRates::default();
            let spec = airq_sim::sim::FleetSpec {
                sensors,
                center: Location {
                    lat: 48.8566,
                    lon: 2.3522,
                },
                start: "2026-01-05T00:00:00Z".parse()?,
                interval: chrono::Duration::seconds(i64::try_from(interval_secs)?),
                seed,
                faults,
            };
            let ticks = days * 86_400 / interval_secs.max(1);
            let (truth, alerts) = run_pipeline(spec, ticks, cfg);
            let r = score(&truth, &alerts);
            println!(
                "{:<18} {:>8} {:>8} {:>7}",
                "fault kind", "episodes", "detected", "recall"
            );
            for (k, c) in &r.by_fault {
                println!(
                    "{k:<18} {:>8} {:>8} {:>7.3}",
                    c.episodes,
                    c.detected,
                    c.recall()
                );
            }
            println!(
                "\n{:<18} {:>8} {:>8} {:>9}",
                "alert kind", "alerts", "true", "precision"
            );
            for (k, c) in &r.by_alert {
                println!(
                    "{k:<18} {:>8} {:>8} {:>9.3}",
                    c.alerts,
                    c.true_alerts,
                    c.precision()
                );
            }
            let o = &r.overall;
            println!(
                "\noverall: precision {:.3}  recall {:.3}  F1 {:.3}  delay median {:.0} s  p95 {:.0} s",
                o.precision(),
                o.recall(),
                o.f1(),
                r.delay_quantile(0.5).unwrap_or(f64::NAN),
                r.delay_quantile(0.95).unwrap_or(f64::NAN)
            );
            Ok(())
        }
    }
}

fn tokio_main(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(f)
}
