//! Pollution episodes: the air is bad, and the network sees it.
//!
//! An episode is open while at least `episode_share` of the fresh sensors (and two of them)
//! report a US AQI at or above `episode_aqi`; it closes after `episode_gap_secs` below. It
//! is reported on its own, never as a sensor fault: the sensors involved, the region they
//! span, the peak AQI and its category.

use std::collections::BTreeSet;

use airq_domain::Location;
use airq_domain::aqi::AqiCategory;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::episode::Status;
use crate::spatial::{Neighbourhood, SpatialConfig, distance_km};

/// Where an episode was seen: the sensors' centroid and the farthest sensor's distance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Region {
    pub centroid: Location,
    pub radius_km: f64,
}

/// One pollution episode, as opened, updated or closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollutionEpisode {
    /// Stable: the start time's hash, so a replay gives the same id.
    pub id: String,
    pub status: Status,
    #[serde(with = "airq_domain::reading::rfc3339")]
    pub start: DateTime<Utc>,
    #[serde(with = "airq_domain::reading::rfc3339")]
    pub end: DateTime<Utc>,
    pub peak_aqi: u16,
    pub peak_category: String,
    /// Largest share of the fresh sensors at or above the threshold at once.
    pub peak_share: f64,
    /// Every sensor that was at or above the threshold during the episode.
    pub sensors: Vec<String>,
    pub region: Region,
    pub explanation: String,
}

#[derive(Debug, Clone)]
struct Open {
    episode: PollutionEpisode,
    sensors: BTreeSet<String>,
    locations: Vec<Location>,
}

/// Tracks the fleet's pollution episodes, one reading at a time.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    open: Option<Open>,
    last_eval: Option<DateTime<Utc>>,
}

/// The fleet is looked at no more often than this (a tick of many sensors is one look).
const EVAL_EVERY_SECS: i64 = 60;

impl Tracker {
    /// Looks at the fleet after a reading at `ts`; returns an episode opened or closed.
    pub fn observe(
        &mut self,
        ts: DateTime<Utc>,
        hood: &Neighbourhood,
        cfg: &SpatialConfig,
    ) -> Option<PollutionEpisode> {
        if self
            .last_eval
            .is_some_and(|t| (ts - t).num_seconds() < EVAL_EVERY_SECS)
        {
            return None;
        }
        self.last_eval = Some(ts);
        let (fresh, high) = hood.aqi_share(ts, cfg.episode_aqi, cfg);
        let share = if fresh == 0 {
            0.0
        } else {
            high.len() as f64 / fresh as f64
        };
        let active = high.len() >= 2 && share >= cfg.episode_share;
        match (&mut self.open, active) {
            (Some(open), true) => {
                open.episode.end = ts;
                open.episode.peak_share = open.episode.peak_share.max(share);
                for s in &high {
                    let peak = hood.aqi_of(s).unwrap_or(0);
                    open.episode.peak_aqi = open.episode.peak_aqi.max(peak);
                    if open.sensors.insert((*s).to_owned())
                        && let Some(l) = hood.location_of(s)
                    {
                        open.locations.push(l);
                    }
                }
                None
            }
            (None, true) => {
                let mut open = Open {
                    episode: PollutionEpisode {
                        id: format!("{:016x}", crate::episode::fnv1a_of_time(ts)),
                        status: Status::Open,
                        start: ts,
                        end: ts,
                        peak_aqi: 0,
                        peak_category: String::new(),
                        peak_share: share,
                        sensors: Vec::new(),
                        region: Region {
                            centroid: Location { lat: 0.0, lon: 0.0 },
                            radius_km: 0.0,
                        },
                        explanation: String::new(),
                    },
                    sensors: BTreeSet::new(),
                    locations: Vec::new(),
                };
                for s in &high {
                    open.episode.peak_aqi = open.episode.peak_aqi.max(hood.aqi_of(s).unwrap_or(0));
                    open.sensors.insert((*s).to_owned());
                    open.locations.extend(hood.location_of(s));
                }
                let opened = finish(&open, fresh, cfg);
                self.open = Some(open);
                Some(opened)
            }
            (Some(open), false) if (ts - open.episode.end).num_seconds() > cfg.episode_gap_secs => {
                let mut closed = finish(open, fresh, cfg);
                closed.status = Status::Closed;
                self.open = None;
                Some(closed)
            }
            _ => None,
        }
    }

    /// Closes the open episode (end of a finite stream).
    pub fn flush(&mut self, cfg: &SpatialConfig) -> Option<PollutionEpisode> {
        let open = self.open.take()?;
        let mut closed = finish(&open, open.sensors.len(), cfg);
        closed.status = Status::Closed;
        Some(closed)
    }
}

/// The episode with its sensors, region, category and explanation filled in.
fn finish(open: &Open, fresh: usize, cfg: &SpatialConfig) -> PollutionEpisode {
    let mut e = open.episode.clone();
    e.sensors = open.sensors.iter().cloned().collect();
    let n = open.locations.len().max(1) as f64;
    let centroid = Location {
        lat: open.locations.iter().map(|l| l.lat).sum::<f64>() / n,
        lon: open.locations.iter().map(|l| l.lon).sum::<f64>() / n,
    };
    let radius_km = open
        .locations
        .iter()
        .map(|l| distance_km(*l, centroid))
        .fold(0.0, f64::max);
    e.region = Region {
        centroid,
        radius_km,
    };
    let category = AqiCategory::from_aqi(e.peak_aqi);
    e.peak_category = category.as_str().to_owned();
    e.explanation = format!(
        "{} sensors within {radius_km:.0} km reached US AQI {} or more (up to {:.0} % of the {fresh} reporting at once); peak AQI {} ({})",
        e.sensors.len(),
        cfg.episode_aqi,
        100.0 * e.peak_share,
        e.peak_aqi,
        category.as_str()
    );
    e
}
