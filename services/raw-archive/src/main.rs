use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use raw_archive::config::Settings;
use raw_archive::replay::Range;
use raw_archive::startup;

#[derive(Parser)]
#[command(
    name = "raw-archive",
    version,
    about = "Archives every raw_data message in MongoDB; replays an archived range"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Consume raw_data into the archive until stopped (the default).
    Run,
    /// Publish the archived messages whose reading time is in [from, to) to raw_data again,
    /// in time order, exactly as received; prints {"topic", "messages", "from", "to"}.
    Replay {
        #[arg(long)]
        from: DateTime<Utc>,
        #[arg(long)]
        to: DateTime<Utc>,
        /// Only this sensor.
        #[arg(long)]
        sensor: Option<String>,
        /// Only messages that were valid when archived (by default the invalid ones too: a
        /// rule change may accept them now).
        #[arg(long)]
        valid_only: bool,
    },
}

/// A failure is one `error:` line with its causes; exit 75 when a server was unreachable.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let transient = e.chain().any(|c| {
                c.downcast_ref::<mongodb::error::Error>().is_some()
                    || c.downcast_ref::<airq_kafka::KafkaError>().is_some()
            });
            std::process::ExitCode::from(if transient { 75 } else { 1 })
        }
    }
}

async fn run() -> anyhow::Result<()> {
    airq_runtime::init_tracing("info,rdkafka=warn,mongodb=warn");
    let cli = Cli::parse();
    let settings = Settings::load().context("loading configuration")?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => startup::run(settings, airq_runtime::shutdown_token()).await,
        Command::Replay {
            from,
            to,
            sensor,
            valid_only,
        } => {
            anyhow::ensure!(from < to, "--from {from} is not before --to {to}");
            let coll = startup::collection(&settings.mongodb).await?;
            let producer = airq_kafka::client::publisher(&settings.kafka.brokers, 20)?;
            let range = Range {
                from,
                to,
                sensor,
                valid_only,
            };
            let topic = &settings.kafka.topics.raw;
            let n = raw_archive::replay::replay(&coll, &producer, topic, &range).await?;
            println!(
                "{}",
                serde_json::json!({"topic": topic, "messages": n, "from": from, "to": to})
            );
            Ok(())
        }
    }
}
