use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};
use trainer::config::Settings;
use trainer::pipeline::Pipeline;

#[derive(Parser)]
#[command(
    name = "trainer",
    version,
    about = "airq's forecasting pipeline: extract -> validate -> train -> evaluate, tracked in MLflow"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read hourly means of [from, to) from PostgreSQL into a snapshot (an MLflow artifact).
    Extract {
        /// First day (UTC), e.g. 2013-03-01, or an RFC 3339 time.
        #[arg(long, value_parser = parse_time)]
        from: DateTime<Utc>,
        /// End (exclusive).
        #[arg(long, value_parser = parse_time)]
        to: DateTime<Utc>,
    },
    /// Data-quality gate on a snapshot (default: the newest); exits non-zero with the reasons.
    Validate {
        #[arg(long)]
        snapshot_run: Option<String>,
    },
    /// Train every candidate on a validated snapshot; register the best with alias `staging`.
    Train {
        #[arg(long)]
        snapshot_run: Option<String>,
        /// Start of the test set (default: the last `test_fraction` of the snapshot).
        #[arg(long, value_parser = parse_time)]
        test_from: Option<DateTime<Utc>>,
        /// Also write the train and test feature matrices as CSV into this folder.
        #[arg(long)]
        export_features: Option<std::path::PathBuf>,
    },
    /// Compare a candidate with production on data it never trained on; promote it if it
    /// beats both production and persistence.
    Evaluate {
        /// The model version to judge (default: the one with the alias `staging`).
        #[arg(long)]
        version: Option<String>,
    },
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = s.parse::<DateTime<Utc>>() {
        return Ok(t);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        .map_err(|_| format!("{s:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time"))
}

/// An expected failure (a validation gate that fails, a missing model, a bad argument) is
/// one clear line with its cause chain, without a backtrace; the exit code says whether a
/// retry can help (75: a server was unreachable) or not (1).
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(trainer::failure::exit_code(&e))
        }
    }
}

async fn run() -> anyhow::Result<()> {
    airq_runtime::init_tracing("info,sqlx=warn");
    let cli = Cli::parse();
    let settings = Settings::load().context("loading configuration")?;
    let pipeline = Pipeline::new(settings).await?;
    match cli.command {
        Command::Extract { from, to } => {
            anyhow::ensure!(from < to, "--from {from} is not before --to {to}");
            let run = pipeline.extract(from, to).await?;
            println!("{run}");
        }
        Command::Validate { snapshot_run } => pipeline.validate(snapshot_run.as_deref()).await?,
        Command::Train {
            snapshot_run,
            test_from,
            export_features,
        } => {
            let version = pipeline
                .train(
                    snapshot_run.as_deref(),
                    test_from,
                    export_features.as_deref(),
                )
                .await?;
            println!("{version}");
        }
        Command::Evaluate { version } => {
            let d = pipeline.evaluate(version.as_deref()).await?;
            println!("{}: {}", d.action.as_str(), d.reason);
        }
    }
    Ok(())
}
