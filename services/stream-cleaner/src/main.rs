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
    /// Recompute the daily per-sensor statistics of one UTC day (default: yesterday).
    Daily {
        #[arg(long)]
        date: Option<NaiveDate>,
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
            Ok(())
        }
    }
}
