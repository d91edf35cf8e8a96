//! anomaly-detector: per-sensor streaming anomaly detection (the detectors live in
//! `airq-detect`).
//!
//! - [`evaluate`]: the offline evaluation: the same detector code over a labelled stream
//!   from the simulator, scored against its ground truth (precision, recall, F1, delay).

pub mod evaluate;
