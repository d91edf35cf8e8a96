use anyhow::Context;
use chrono::{Duration, NaiveDate, Utc};
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
    }
}
