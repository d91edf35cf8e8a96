use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use clap::{Parser, Subcommand};
use stream_cleaner::config::Settings;
use stream_cleaner::startup;

#[derive(Parser)]
#[command(
    name = "stream-cleaner",
    version,
    about = "Cleans raw_data into PostgreSQL and processed_data"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Consume raw_data until stopped (the default).
    Run,
    /// Apply database migrations and exit.
    Migrate,
    /// Recompute the daily batch of one UTC day (default: yesterday): per-sensor statistics
    /// and the data-quality summary, which it also prints.
    Daily {
        #[arg(long)]
        date: Option<NaiveDate>,
    },
    /// Whether a UTC day is complete: every sensor active in the days before it has data past
    /// its end. Prints one JSON object (`complete`, `active`, `late` with each late sensor's
    /// newest reading); exit 0 either way, so a caller can wait and ask again.
    DayComplete {
        #[arg(long)]
        date: NaiveDate,
        /// How far back a sensor counts as active.
        #[arg(long, default_value_t = 3)]
        lookback_days: i64,
    },
    /// Wait until what a replay published (its summary line: `from`, `to`, `storable`) is
    /// stored: at least `storable` readings in [from, to). Exit 75 on timeout.
    Landed {
        #[arg(long)]
        summary: String,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
}

/// `landed` timed out: a retry (later) may find everything stored.
#[derive(Debug)]
struct NotYetStored(String);

impl std::fmt::Display for NotYetStored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotYetStored {}

/// A failure is one `error:` line with its causes; exit 75 when a retry may help (a
/// replay not stored yet, the database unreachable), 1 otherwise.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let transient = e.chain().any(|c| {
                c.is::<NotYetStored>()
                    || c.downcast_ref::<airq_store::StoreError>()
                        .is_some_and(airq_store::StoreError::is_retryable)
            });
            std::process::ExitCode::from(if transient { 75 } else { 1 })
        }
    }
}

async fn run() -> anyhow::Result<()> {
    airq_runtime::init_tracing("info,rdkafka=warn,sqlx=warn");
    let cli = Cli::parse();
    let settings = Settings::load().context("loading configuration")?;
    let shutdown = airq_runtime::shutdown_token();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => startup::run(settings, shutdown).await,
        Command::Migrate => {
            let pool = airq_store::connect(&settings.database.url, 1)?;
            Ok(airq_store::migrate_with_retry(&pool, &shutdown).await?)
        }
        Command::Daily { date } => {
            let day = date.unwrap_or_else(|| (Utc::now() - Duration::days(1)).date_naive());
            let pool = airq_store::connect(&settings.database.url, 1)?;
            let n = airq_store::daily::compute_daily_stats(&pool, day)
                .await
                .context("computing daily stats")?;
            tracing::info!(%day, sensors = n, "daily statistics written");
            let quality = airq_store::daily::compute_daily_quality(&pool, day)
                .await
                .context("computing the daily quality summary")?;
            print!("{}", stream_cleaner::report::quality_table(day, &quality));
            Ok(())
        }
        Command::DayComplete {
            date,
            lookback_days,
        } => {
            let pool = airq_store::connect(&settings.database.url, 1)?;
            let c = airq_store::daily::day_completeness(&pool, date, Duration::days(lookback_days))
                .await
                .context("checking the day's completeness")?;
            println!("{}", stream_cleaner::report::completeness_json(date, &c));
            Ok(())
        }
        Command::Landed {
            summary,
            timeout_secs,
        } => {
            #[derive(serde::Deserialize)]
            struct Summary {
                from: DateTime<Utc>,
                to: DateTime<Utc>,
                storable: i64,
            }
            let s: Summary = serde_json::from_str(summary.trim())
                .context("--summary is not a replay's summary line with from, to and storable")?;
            let pool = airq_store::connect(&settings.database.url, 1)?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout_secs);
            loop {
                let stored = airq_store::readings::count_between(&pool, s.from, s.to)
                    .await
                    .context("counting stored readings")?;
                if stored >= s.storable {
                    tracing::info!(stored, expected = s.storable, "landed");
                    return Ok(());
                }
                if std::time::Instant::now() >= deadline {
                    return Err(NotYetStored(format!(
                        "{stored} of {} readings of [{}, {}) stored after {timeout_secs} s",
                        s.storable, s.from, s.to
                    ))
                    .into());
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}
