//! anomaly-detector: per-sensor streaming anomaly detection (the detectors live in
//! `airq-detect`).
//!
//! - [`processor`] / [`sink`] / [`startup`]: the streaming service on the consumer runtime
//!   (`airq_kafka::runtime`): `processed_data` in, the `anomalies` topic and table out, at
//!   least once with idempotent sinks;
//! - [`fleet`]: the owned sensors' state, warmed from PostgreSQL history on first sight
//!   and dropped when a partition moves;
//! - [`evaluate`]: the offline evaluation: the same detector code over a labelled stream
//!   from the simulator, scored against its ground truth (precision, recall, F1, delay);
//! - [`backtest`]: the production cleaning and detection over a file of raw readings
//!   (many sensors, neighbours included), alerts and pollution episodes out;
//! - [`injected`]: the evaluation on real data with injected faults (Beijing);
//! - [`score`]: the detectors over any univariate CSV time series.

pub mod backtest;
pub mod config;
pub mod evaluate;
pub mod fleet;
pub mod injected;
pub mod processor;
pub mod score;
pub mod sink;
pub mod startup;

/// The service's name in dead-letter headers and logs.
pub const SERVICE: &str = "anomaly-detector";
