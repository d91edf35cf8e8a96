use anyhow::Context;
use clap::Parser;
use sensor_sim::cli::{Cli, Command};
use sensor_sim::config::Settings;
use sensor_sim::startup;

/// A failure is one `error:` line with its causes, and exit code 1.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    airq_runtime::init_tracing("info,rdkafka=warn");
    let cli = Cli::parse();
    let settings = Settings::load().context("loading configuration")?;
    let shutdown = airq_runtime::shutdown_token();
    match cli.command {
        Command::Synthetic(args) => startup::run_synthetic(settings, args, shutdown).await,
        Command::Replay(args) => startup::run_replay(settings, args, shutdown).await,
        Command::Openaq(args) => startup::run_openaq(settings, args, shutdown).await,
        Command::OpenaqArchive(args) => startup::run_openaq_archive(settings, args, shutdown).await,
        Command::Send(args) => startup::run_send(settings, args).await,
    }
}
