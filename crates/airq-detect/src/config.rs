//! Detector settings.

use serde::{Deserialize, Serialize};

use crate::spatial::SpatialConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Readings in the robust (median/MAD) window of deseasonalised values.
    pub window: usize,
    /// Readings a sensor needs before statistical detectors speak.
    pub min_history: usize,
    /// Robust z-score above which a point is an outlier (robust sigmas).
    pub z_threshold: f64,
    /// EWMA smoothing factor and control-limit width (sigmas of the EWMA).
    pub ewma_lambda: f64,
    pub ewma_limit: f64,
    /// Residuals fed to the EWMA and Page-Hinkley are clipped to +-this many sigmas, so
    /// one huge outlier (reported as an outlier) does not also read as a shift or drift.
    pub residual_clip: f64,
    /// Page-Hinkley: allowed drift per point (sigmas) and alarm threshold.
    pub ph_delta: f64,
    pub ph_threshold: f64,
    /// Smoothing of the slow level the drift test compares with, per reading.
    pub level_alpha: f64,
    /// Memory of the hour-of-day profile, days.
    pub profile_tau_days: f64,
    /// A gap longer than this many of the sensor's usual intervals is a silence...
    pub silence_factor: f64,
    /// ...and it must also be at least this long, s.
    pub silence_min_secs: i64,
    /// Firing points further apart than this many usual intervals start a new episode.
    pub episode_gap_factor: f64,
    /// Flatline-flagged points in a row before a stuck sensor is reported.
    pub flatline_min_points: u32,
    /// Readings in a row a sensor must read PM2.5 above PM10 (beyond its neighbours) before
    /// it is reported. 1 on Beijing: 2 halves the source's own reports but also misses
    /// noisy channels and spikes that read PM2.5 above PM10 for one hour (recall 0.902 ->
    /// 0.888 on injected faults, docs/detection.md).
    pub pm25_above_pm10_min_points: u32,
    /// The neighbours' context (`[detect.spatial]`; its own defaults when absent).
    #[serde(default)]
    pub spatial: SpatialConfig,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            window: 60,
            min_history: 30,
            z_threshold: 9.0,
            ewma_lambda: 0.2,
            ewma_limit: 20.0,
            residual_clip: 30.0,
            ph_delta: 3.0,
            ph_threshold: 60.0,
            level_alpha: 0.01,
            profile_tau_days: 3.0,
            silence_factor: 4.0,
            silence_min_secs: 60,
            episode_gap_factor: 3.0,
            flatline_min_points: 3,
            pm25_above_pm10_min_points: 1,
            spatial: SpatialConfig::default(),
        }
    }
}
