use anyhow::Context;
use clap::Parser;
use sensor_sim::cli::{Cli, Command};
use sensor_sim::config::Settings;
use sensor_sim::startup;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    airq_runtime::init_tracing("info,rdkafka=warn");
    let cli = Cli::parse();
    let settings = Settings::load().context("loading configuration")?;
    let shutdown = airq_runtime::shutdown_token();
    match cli.command {
        Command::Synthetic(args) => startup::run_synthetic(settings, args, shutdown).await,
        Command::Replay(args) => startup::run_replay(settings, args, shutdown).await,
    }
}
