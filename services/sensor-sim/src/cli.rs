//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sensor-sim",
    version,
    about = "Simulated air-quality sensors and replay of real data, to raw_data"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// A synthetic fleet with realistic signals and injected faults.
    Synthetic(SyntheticArgs),
    /// Replay the Beijing PRSA hourly data (12 stations, 2013-2017).
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct SyntheticArgs {
    /// Number of sensors.
    #[arg(long, default_value_t = 20)]
    pub sensors: usize,
    /// Latitude of the fleet's centre (default: Paris).
    #[arg(long, default_value_t = 48.8566, allow_hyphen_values = true)]
    pub center_lat: f64,
    /// Longitude of the fleet's centre.
    #[arg(long, default_value_t = 2.3522, allow_hyphen_values = true)]
    pub center_lon: f64,
    /// Simulated seconds between two readings of one sensor.
    #[arg(long, default_value_t = 5.0)]
    pub interval_secs: f64,
    /// Time of the first reading (RFC 3339). Without it the fleet is live: it starts now
    /// and sends each reading when its time comes.
    #[arg(long)]
    pub start: Option<chrono::DateTime<chrono::Utc>>,
    /// With --start: messages per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Number of ticks (one reading per sensor each); 0 = run until stopped.
    #[arg(long, default_value_t = 0)]
    pub ticks: u64,
    /// Random seed: the same seed gives the same stream.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Inject no fault at all (the rates come from the config otherwise).
    #[arg(long)]
    pub no_faults: bool,
    /// Append one JSON line per injected fault to this file.
    #[arg(long)]
    pub truth_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Folder with stations.csv and raw/PRSA_Data_*.csv.
    #[arg(
        long,
        env = "AIRQ_BEIJING_DIR",
        default_value = "../shared/data/beijing_prsa"
    )]
    pub data_dir: PathBuf,
    /// Data seconds per real second (3600 = one hour of data per second); 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub speedup: f64,
    /// Replay only the first N readings (in time order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}
