//! The live OpenAQ source: each cycle asks a location's latest values; a sensor whose
//! newest value is the hour after its watermark gets that value, one with a gap (or none
//! yet: the first start) gets the missing hours first. Readings go to `raw_data`; the
//! watermarks move and are saved only once the broker has acknowledged them, so a crash
//! between the two republishes at most one cycle, which the cleaner's first-write-wins sink
//! absorbs, and a restart after a save republishes nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use airq_domain::Location;
use chrono::{DateTime, Duration, Utc};

use super::api::{Client, LocationInfo};
use super::watermark::Watermarks;
use super::{Observation, Pollutant, merge, to_ugm3};
use crate::publish::Publisher;

/// One location's live source.
pub struct LiveSource {
    pub client: Client,
    pub location_id: i64,
    /// How far back the first start fetches hours.
    pub backfill: Duration,
    pub state_file: PathBuf,
    location: Option<LocationInfo>,
    watermarks: Watermarks,
}

/// A cycle's outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cycle {
    pub observations: usize,
    pub published: usize,
}

impl LiveSource {
    pub fn new(
        client: Client,
        location_id: i64,
        backfill: Duration,
        state_file: PathBuf,
    ) -> anyhow::Result<Self> {
        let watermarks = Watermarks::load(&state_file)?;
        Ok(Self {
            client,
            location_id,
            backfill,
            state_file,
            location: None,
            watermarks,
        })
    }

    pub fn watermarks(&self) -> &Watermarks {
        &self.watermarks
    }

    /// The new observations of the location at `now`.
    async fn observe(&mut self, now: DateTime<Utc>) -> anyhow::Result<Vec<Observation>> {
        if self.location.is_none() {
            let loc = self
                .client
                .location(self.location_id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("OpenAQ has no location {}", self.location_id))?;
            tracing::info!(
                location = loc.id,
                sensors = loc.sensors.len(),
                "OpenAQ location loaded"
            );
            self.location = Some(loc);
        }
        let Some(loc) = self.location.clone() else {
            return Ok(Vec::new());
        };
        let latest = self.client.latest(loc.id).await?;
        let mut out = Vec::new();
        for s in &loc.sensors {
            let Some(pollutant) = Pollutant::from_openaq(&s.parameter.name) else {
                continue;
            };
            let Some(newest) = latest.iter().find(|l| l.sensors_id == s.id) else {
                continue;
            };
            let since = self
                .watermarks
                .by_sensor
                .get(&s.id)
                .copied()
                .unwrap_or(now - self.backfill);
            let t = newest.datetime.utc;
            if t <= since {
                continue;
            }
            if t - since > Duration::hours(1) {
                for h in self.client.hours(s.id, since, t).await? {
                    let at = h.period.datetime_to.utc;
                    let Some(v) = h
                        .value
                        .and_then(|v| to_ugm3(pollutant, v, &h.parameter.units))
                    else {
                        continue;
                    };
                    if at > since && at <= t && self.watermarks.is_new(s.id, at) {
                        out.push(obs(loc.id, s.id, at, pollutant, v));
                    }
                }
            }
            if let Some(v) = newest
                .value
                .and_then(|v| to_ugm3(pollutant, v, &s.parameter.units))
                && self.watermarks.is_new(s.id, t)
                && !out.iter().any(|o| o.sensor_id == s.id && o.timestamp == t)
            {
                out.push(obs(loc.id, s.id, t, pollutant, v));
            }
        }
        Ok(out)
    }

    /// One poll: observe, publish the merged readings, wait for the broker, then move and
    /// save the watermarks.
    pub async fn cycle(
        &mut self,
        out: &mut Publisher,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Cycle> {
        let observations = self.observe(now).await?;
        let Some(loc) = &self.location else {
            return Ok(Cycle::default());
        };
        let locations = BTreeMap::from([(
            loc.id,
            Location {
                lat: loc.coordinates.latitude,
                lon: loc.coordinates.longitude,
            },
        )]);
        let readings = merge(&observations, &locations);
        for r in &readings {
            out.send(&r.sensor_id, &r.to_json()).await?;
        }
        out.flush().await?;
        for o in &observations {
            self.watermarks.advance(o.sensor_id, o.timestamp);
        }
        self.watermarks.save(&self.state_file)?;
        Ok(Cycle {
            observations: observations.len(),
            published: readings.len(),
        })
    }
}

fn obs(
    location_id: i64,
    sensor_id: i64,
    timestamp: DateTime<Utc>,
    pollutant: Pollutant,
    value: f64,
) -> Observation {
    Observation {
        location_id,
        sensor_id,
        timestamp,
        pollutant,
        value,
    }
}
