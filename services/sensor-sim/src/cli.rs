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
    /// Poll the OpenAQ API v3 for one location's readings (live, with gaps filled).
    Openaq(OpenaqArgs),
    /// Replay a folder of OpenAQ archive files (one CSV or CSV.gz per location and day).
    OpenaqArchive(ArchiveArgs),
    /// Publish JSON lines as they are, one message per line (a fault or a malformed message
    /// injected by hand: the demo's, a test's).
    Send(SendArgs),
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Read the lines from this file instead of standard input.
    #[arg(long)]
    pub file: Option<PathBuf>,
}

/// A UTC day (YYYY-MM-DD, its midnight) or an RFC 3339 time.
pub fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = s.parse::<chrono::DateTime<chrono::Utc>>() {
        return Ok(t);
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{s:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time"))
}

/// A time window `[from, to)` of a replay.
#[derive(Debug, Clone, Args)]
pub struct Window {
    /// Only readings at or after this time (a UTC day or an RFC 3339 time).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only readings before this time.
    #[arg(long, value_parser = parse_time)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Args)]
pub struct OpenaqArgs {
    /// The OpenAQ location id.
    #[arg(long, default_value_t = crate::openaq::DEFAULT_LOCATION)]
    pub location: i64,
    /// The API's base URL.
    #[arg(
        long,
        env = "AIRQ_OPENAQ_URL",
        default_value = "https://api.openaq.org"
    )]
    pub base_url: String,
    /// Seconds between two polls.
    #[arg(long, default_value_t = 300)]
    pub poll_secs: u64,
    /// On the first start, fetch this many hours of history.
    #[arg(long, default_value_t = 24)]
    pub backfill_hours: i64,
    /// Timeout of each HTTP request, seconds.
    #[arg(long, default_value_t = 15.0)]
    pub timeout_secs: f64,
    /// Where the per-sensor watermarks are kept (one JSON file per location).
    #[arg(long, env = "AIRQ_OPENAQ_STATE_DIR", default_value = ".airq-state")]
    pub state_dir: PathBuf,
    /// Poll once and exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Folder of archive files (searched recursively).
    #[arg(long, env = "AIRQ_OPENAQ_ARCHIVE_DIR")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub window: Window,
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
    #[command(flatten)]
    pub window: Window,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Write the readings to this file as JSON lines (the raw_data shape, the input of
    /// `anomaly-detector backtest`) instead of publishing them.
    #[arg(long)]
    pub to_file: Option<PathBuf>,
}
