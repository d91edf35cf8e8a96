//! Anomaly episodes: consecutive firing points of one sensor, pollutant and kind are one
//! anomaly, opened, updated and closed. The id is a stable hash of (sensor, pollutant,
//! kind, start), so a redelivered reading produces the same id and the sink's upsert
//! keeps one row.

use airq_domain::Pollutant;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
/// What kind of anomaly.
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// Rules carried from the cleaner's quality flags.
    OutOfRange,
    Negative,
    Pm25AbovePm10,
    Flatline,
    Spike,
    /// Statistical: a point far from the sensor's usual level for this hour (robust z).
    Outlier,
    /// Statistical: a sustained shift (EWMA control chart).
    Shift,
    /// A slow drift (Page-Hinkley).
    Drift,
    /// No reading for longer than usual.
    Silence,
    /// Spatial: the sensor disagrees with its neighbours far more than it usually does.
    Inconsistent,
}

impl AnomalyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::OutOfRange => "out_of_range",
            AnomalyKind::Negative => "negative",
            AnomalyKind::Pm25AbovePm10 => "pm25_above_pm10",
            AnomalyKind::Flatline => "flatline",
            AnomalyKind::Spike => "spike",
            AnomalyKind::Outlier => "outlier",
            AnomalyKind::Shift => "shift",
            AnomalyKind::Drift => "drift",
            AnomalyKind::Silence => "silence",
            AnomalyKind::Inconsistent => "inconsistent",
        }
    }

    /// The detector that raises this kind.
    pub fn detector(self) -> &'static str {
        match self {
            AnomalyKind::OutOfRange
            | AnomalyKind::Negative
            | AnomalyKind::Pm25AbovePm10
            | AnomalyKind::Flatline
            | AnomalyKind::Spike => "qc_rule",
            AnomalyKind::Outlier => "robust_z",
            AnomalyKind::Shift => "ewma",
            AnomalyKind::Drift => "page_hinkley",
            AnomalyKind::Silence => "silence",
            AnomalyKind::Inconsistent => "spatial",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
/// How urgent it is.
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
/// `open` when the episode opens, `closed` once, when it ends (final span and points).
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Closed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Closed => "closed",
        }
    }
}

/// One anomaly, as published to `anomalies` and upserted into the `anomalies` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnomalyEvent {
    /// Version of this message's schema.
    pub schema_version: u32,
    /// FNV-1a 64 of (sensor, pollutant, kind, start), 16 hex digits: a redelivered reading
    /// gives the same id.
    #[schemars(regex(pattern = r"^[0-9a-f]{16}$"))]
    pub id: String,
    /// The sensor's id.
    pub sensor_id: String,
    /// The pollutant concerned; `null` for sensor-level kinds (`silence`).
    pub pollutant: Option<Pollutant>,
    pub kind: AnomalyKind,
    /// The detector that raised it (`qc_rule`, `robust_z`, `ewma`, `page_hinkley`,
    /// `silence`, `spatial`).
    pub detector: String,
    pub status: Status,
    /// The first point of the episode, UTC.
    #[serde(with = "airq_domain::reading::rfc3339")]
    #[schemars(with = "DateTime<Utc>")]
    pub start: DateTime<Utc>,
    /// The last point of the episode so far, UTC.
    #[serde(with = "airq_domain::reading::rfc3339")]
    #[schemars(with = "DateTime<Utc>")]
    pub end: DateTime<Utc>,
    /// Firing points in the episode.
    pub points: u32,
    /// How far from normal, in the detector's unit (robust sigmas, EWMA sigmas, Page-Hinkley
    /// statistic over its threshold, gap over the usual interval; 1 for rules).
    pub score: f64,
    pub severity: Severity,
    /// ug/m3 (seconds for a silence) at the worst point.
    pub observed: Option<f64>,
    /// What was expected there, same unit.
    pub expected: Option<f64>,
    /// One sentence a person can act on.
    pub explanation: String,
}

impl AnomalyEvent {
    pub fn to_json(&self) -> Vec<u8> {
        // Plain data: serialization cannot fail (non-finite floats are never stored here).
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// FNV-1a 64: stable across builds and platforms, unlike std's hasher.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The deterministic id of an anomaly.
pub fn anomaly_id(
    sensor: &str,
    pollutant: Option<Pollutant>,
    kind: AnomalyKind,
    start: DateTime<Utc>,
) -> String {
    let p = pollutant.map_or("", Pollutant::as_str);
    format!(
        "{:016x}",
        fnv1a(&[
            sensor.as_bytes(),
            p.as_bytes(),
            kind.as_str().as_bytes(),
            &start.timestamp_millis().to_be_bytes()
        ])
    )
}

/// The hash a pollution episode's id is made of (its start time).
pub(crate) fn episode_hash(ts: DateTime<Utc>, sensor: &str) -> u64 {
    fnv1a(&[
        b"pollution_episode",
        &ts.timestamp_millis().to_be_bytes(),
        sensor.as_bytes(),
    ])
}

/// One firing point of a detector.
#[derive(Debug, Clone)]
pub struct Firing {
    pub pollutant: Option<Pollutant>,
    pub kind: AnomalyKind,
    pub ts: DateTime<Utc>,
    pub score: f64,
    pub severity: Severity,
    pub observed: Option<f64>,
    pub expected: Option<f64>,
    pub explanation: String,
}

/// An episode being built.
#[derive(Debug, Clone)]
pub struct Episode {
    pub event: AnomalyEvent,
    /// Whether it has been published (it is only once it has `min_points`).
    pub published: bool,
}

impl Episode {
    pub fn start(sensor: &str, f: Firing) -> Self {
        let event = AnomalyEvent {
            schema_version: 1,
            id: anomaly_id(sensor, f.pollutant, f.kind, f.ts),
            sensor_id: sensor.to_owned(),
            pollutant: f.pollutant,
            kind: f.kind,
            detector: f.kind.detector().to_owned(),
            status: Status::Open,
            start: f.ts,
            end: f.ts,
            points: 1,
            score: f.score,
            severity: f.severity,
            observed: f.observed,
            expected: f.expected,
            explanation: f.explanation,
        };
        Self {
            event,
            published: false,
        }
    }

    /// Adds a point; the worst point's values and explanation describe the episode.
    pub fn extend(&mut self, f: Firing) {
        let e = &mut self.event;
        e.end = e.end.max(f.ts);
        e.points += 1;
        e.severity = e.severity.max(f.severity);
        if f.score > e.score {
            e.score = f.score;
            e.observed = f.observed;
            e.expected = f.expected;
            e.explanation = f.explanation;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let t: DateTime<Utc> = "2024-01-15T14:00:00Z".parse().unwrap();
        let a = anomaly_id("s1", Some(Pollutant::Pm25), AnomalyKind::Outlier, t);
        assert_eq!(
            a,
            anomaly_id("s1", Some(Pollutant::Pm25), AnomalyKind::Outlier, t)
        );
        assert_eq!(a.len(), 16);
        assert_ne!(
            a,
            anomaly_id("s1", Some(Pollutant::Pm10), AnomalyKind::Outlier, t)
        );
        assert_ne!(
            a,
            anomaly_id("s2", Some(Pollutant::Pm25), AnomalyKind::Outlier, t)
        );
    }
}
