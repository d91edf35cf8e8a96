//! Streaming anomaly detection for airq, pure: no I/O, time comes from the readings.
//!
//! - [`config`]: thresholds and windows (all configuration, with documented defaults);
//! - [`stats`]: the building blocks: hour-of-day profile, robust (median/MAD) window,
//!   EWMA control chart, Page-Hinkley drift test;
//! - [`episode`]: merging consecutive firing points into one anomaly that is opened,
//!   updated and closed, with a deterministic id;
//! - [`spatial`]: the neighbours' context (sensor faults told apart from regional
//!   pollution); [`pollution`]: pollution episodes the network sees;
//! - [`engine`]: per-sensor state and [`engine::Detector::process`], one processed
//!   reading in, anomaly events out;
//! - [`ticks`]: the readings of one timestamp held until every expected sensor reported
//!   it, then judged together ([`engine::Detector::judge_tick`]).

pub mod config;
pub mod engine;
pub mod episode;
pub mod pollution;
pub mod spatial;
pub mod stats;
pub mod ticks;

pub use config::DetectorConfig;
pub use engine::{Detector, Step};
pub use episode::{AnomalyEvent, AnomalyKind, Severity, Status};
pub use pollution::PollutionEpisode;
pub use spatial::SpatialConfig;
pub use ticks::{Tick, Ticks, Wait};
