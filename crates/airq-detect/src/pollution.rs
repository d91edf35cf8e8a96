//! Pollution episodes: the air is bad, and the network sees it.
//!
//! An episode is open while at least `episode_share` of a region's fresh sensors (and two
//! of them) report a US AQI at or above `episode_aqi`; it closes after `episode_gap_secs`
//! below. It is reported on its own, never as a sensor fault: the sensors involved, the
//! region they span, the peak AQI and its category.
//!
//! Each region ([`Areas`]) has its own tracker ([`Regions`]): a city's episode is its own,
//! and a fleet replaying 2013 next to one that reports today are two timelines that must not
//! hold or close each other's episodes.

use std::collections::BTreeSet;

use airq_domain::Location;
use airq_domain::aqi::AqiCategory;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::episode::Status;
use crate::spatial::{Areas, Neighbourhood, SpatialConfig, distance_km};

/// Where an episode was seen: the sensors' centroid and the farthest sensor's distance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Region {
    pub centroid: Location,
    pub radius_km: f64,
}

/// One pollution episode, as opened, updated or closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollutionEpisode {
    /// Stable: the hash of the start time and the first sensor above the threshold, so a
    /// replay gives the same id and two regions' episodes never share one.
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

/// Tracks one region's pollution episodes, one reading at a time.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    /// The region's sensors.
    members: Vec<String>,
    open: Option<Open>,
    last_eval: Option<DateTime<Utc>>,
}

/// The fleet's pollution episodes, region by region ([`Areas`]).
#[derive(Debug, Clone, Default)]
pub struct Regions {
    areas: Areas,
    trackers: Vec<Tracker>,
}

impl Regions {
    /// Looks at `sensor`'s region after its reading at `ts`; returns an episode opened or
    /// closed there.
    pub fn observe(
        &mut self,
        sensor: &str,
        location: Location,
        ts: DateTime<Utc>,
        hood: &Neighbourhood,
        cfg: &SpatialConfig,
    ) -> Option<PollutionEpisode> {
        let (area, entered) = self.areas.of(sensor, location, cfg.region_km);
        if area == self.trackers.len() {
            self.trackers.push(Tracker::default());
        }
        let tracker = &mut self.trackers[area];
        if entered {
            tracker.members.push(sensor.to_owned());
        }
        tracker.observe(ts, hood, cfg)
    }

    /// Closes every open episode (end of a finite stream).
    pub fn flush(&mut self, cfg: &SpatialConfig) -> Vec<PollutionEpisode> {
        self.trackers
            .iter_mut()
            .filter_map(|t| t.flush(cfg))
            .collect()
    }

    /// Number of regions seen.
    pub fn len(&self) -> usize {
        self.trackers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.trackers.is_empty()
    }
}

/// A region is looked at no more often than this (a tick of many sensors is one look).
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
        let (fresh, high) = hood.aqi_share(&self.members, ts, cfg.episode_aqi, cfg);
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
                        id: format!(
                            "{:016x}",
                            crate::episode::episode_hash(ts, high.first().copied().unwrap_or(""))
                        ),
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

#[cfg(test)]
mod tests {
    use airq_domain::sensor::Cleaner;
    use airq_domain::{Measurements, ProcessedReading, Reading};
    use chrono::Duration;

    use super::*;

    fn reading(
        cleaner: &mut Cleaner,
        sensor: &str,
        at: Location,
        ts: DateTime<Utc>,
        pm2_5: f64,
    ) -> ProcessedReading {
        cleaner.process(Reading {
            sensor_id: sensor.into(),
            timestamp: ts,
            location: at,
            measurements: Measurements {
                pm2_5: Some(pm2_5),
                pm10: Some(2.0 * pm2_5),
                no2: None,
            },
        })
    }

    /// Beijing's 2013 replay interleaved hour by hour with a live fleet in Paris: the
    /// live readings, later in time, neither hold Beijing's looks nor close its episode.
    #[test]
    fn a_region_replaying_history_next_to_a_live_one_keeps_its_episodes() {
        let cfg = SpatialConfig::default();
        let beijing = |i: usize| Location {
            lat: 39.9 + 0.05 * i as f64,
            lon: 116.4,
        };
        let paris = |i: usize| Location {
            lat: 48.85 + 0.01 * i as f64,
            lon: 2.35,
        };
        let then: DateTime<Utc> = "2013-03-01T00:00:00Z".parse().unwrap();
        let now: DateTime<Utc> = "2026-12-04T00:00:00Z".parse().unwrap();
        let mut cleaner = Cleaner::default();
        let mut hood = Neighbourhood::default();
        let mut regions = Regions::default();
        let mut found = Vec::new();
        for h in 0..48 {
            // Beijing's air is very unhealthy from hour 10 to 20.
            let pm = if (10..=20).contains(&h) { 180.0 } else { 15.0 };
            let mut tick = Vec::new();
            for i in 0..4 {
                let bj = format!("BJ_{i}");
                let live = format!("LIVE_{i}");
                tick.push(reading(
                    &mut cleaner,
                    &bj,
                    beijing(i),
                    then + Duration::hours(h),
                    pm,
                ));
                tick.push(reading(
                    &mut cleaner,
                    &live,
                    paris(i),
                    now + Duration::minutes(h),
                    8.0,
                ));
            }
            for r in &tick {
                hood.update(r);
                found.extend(regions.observe(&r.sensor_id, r.location, r.timestamp, &hood, &cfg));
            }
        }
        found.extend(regions.flush(&cfg));
        assert_eq!(regions.len(), 2);
        let statuses: Vec<_> = found.iter().map(|e| e.status).collect();
        assert_eq!(statuses, [Status::Open, Status::Closed], "{found:?}");
        let closed = &found[1];
        assert_eq!(closed.id, found[0].id);
        // NowCast (a 12 h weighted mean) takes an hour to reach Unhealthy and lags after.
        let hours = |t: DateTime<Utc>| (t - then).num_hours();
        assert!((10..=12).contains(&hours(closed.start)), "{}", closed.start);
        assert!((20..=26).contains(&hours(closed.end)), "{}", closed.end);
        assert_eq!(closed.sensors, ["BJ_0", "BJ_1", "BJ_2", "BJ_3"]);
        assert_eq!(closed.peak_category, "very_unhealthy");
        assert!(distance_km(closed.region.centroid, beijing(1)) < 10.0);
    }
}
