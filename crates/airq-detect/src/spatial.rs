//! Spatial context: what a sensor's neighbours read at about the same time.
//!
//! Real pollution is regional: a winter inversion raises PM2.5 at every station of a city
//! within hours. A sensor fault is local: one sensor reads what its neighbours do not. So a
//! value that is extreme for one sensor's own history is a fault candidate only when its
//! neighbours do not explain it. [`Neighbourhood`] keeps every sensor's latest clean values;
//! [`Neighbourhood::context`] gives, for one reading, the median of the neighbours' values
//! (sensors within `radius_km`, or the whole fleet when fewer than `min_neighbours` are that
//! close), counted only while fresh (read within `fresh_secs` of the reading).
//!
//! The engine tracks each sensor's log-ratio to that median, `ln((x + c) / (m + c))`, with a
//! robust window (its usual offset from its neighbours) and a slow level (for gain drift).

mod dense;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use airq_domain::{Location, Measurements, Pollutant, ProcessedReading};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use dense::Dense;
use dense::Sorted;

/// Settings of the spatial checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpatialConfig {
    /// Use the neighbours at all (off: every sensor is judged on its own history).
    pub enabled: bool,
    /// Sensors closer than this are neighbours, km.
    pub radius_km: f64,
    /// Fewer neighbours than this within the radius: the whole fleet is the neighbourhood.
    pub min_neighbours: usize,
    /// A neighbour's latest reading counts when it is at most this old, s.
    pub fresh_secs: i64,
    /// Offset in the log-ratio, ug/m3: keeps clean-air ratios (2 against 1) from looking
    /// extreme.
    pub offset_ugm3: f64,
    /// Log-ratios in the robust window of a sensor's usual offset from its neighbours.
    pub window: usize,
    /// Log-ratios a sensor needs before the spatial checks speak.
    pub min_history: usize,
    /// A temporal alert (outlier, shift, drift) stands only if the log-ratio is this many
    /// robust sigmas off in the same direction; otherwise the neighbours explain it.
    pub explain_z: f64,
    /// A rate-of-change spike stands only if the value is this many robust sigmas above
    /// its neighbours (a real plume arrives at one station first: more than `explain_z`).
    pub spike_z: f64,
    /// The log-ratio alone this many robust sigmas off is a fault (`inconsistent`).
    pub inconsistent_z: f64,
    /// ... and it must also be at least this far, as a ratio (1.5: reads 50 % more or less
    /// than its neighbours usually imply).
    pub inconsistent_ratio: f64,
    /// Gain drift: Page-Hinkley on the log-ratio against its slow level, in robust sigmas.
    pub drift_delta: f64,
    pub drift_threshold: f64,
    /// Smoothing of the slow level of the log-ratio, per reading.
    pub level_alpha: f64,
    /// PM2.5 above PM10 is a fault of this sensor only if its PM2.5/PM10 ratio exceeds the
    /// neighbours' median ratio by this much (a humid night raises every station's ratio).
    pub pm_ratio_margin: f64,
    /// ... and is more than this many times the neighbours' median ratio (in 2013 the
    /// Beijing stations' ratios spread from 1 to 2 on the same humid night).
    pub pm_ratio_factor: f64,
    /// ... and PM2.5 exceeds PM10 by at least this much, ug/m3 (the channels' noise).
    pub pm_excess_ugm3: f64,
    /// An exact 0 is a fault when the neighbours' median is at least this, ug/m3.
    pub zero_min_ugm3: f64,
    /// A pollution episode: at least this share of the fresh sensors (and two) at or above
    /// `episode_aqi` (US AQI, 151 = Unhealthy)...
    pub episode_share: f64,
    pub episode_aqi: u16,
    /// ... and it ends after this long below, s.
    pub episode_gap_secs: i64,
    /// A region: the sensors within this of its first sensor, km. Each region is its own
    /// timeline (its ticks, its pollution episodes).
    pub region_km: f64,
}

impl Default for SpatialConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            radius_km: 50.0,
            min_neighbours: 2,
            fresh_secs: 2 * 3600,
            offset_ugm3: 5.0,
            window: 168,
            min_history: 48,
            explain_z: 5.0,
            spike_z: 10.0,
            inconsistent_z: 12.0,
            inconsistent_ratio: 3.0,
            drift_delta: 1.0,
            drift_threshold: 60.0,
            level_alpha: 0.001,
            pm_ratio_margin: 0.35,
            pm_ratio_factor: 1.5,
            pm_excess_ugm3: 10.0,
            zero_min_ugm3: 10.0,
            episode_share: 0.5,
            episode_aqi: 151,
            episode_gap_secs: 3 * 3600,
            region_km: 150.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Latest {
    location: Location,
    ts: DateTime<Utc>,
    clean: Measurements,
    aqi: Option<u16>,
}

impl Latest {
    /// Read within `fresh_secs` of `ts`, before or after.
    fn is_fresh(&self, ts: DateTime<Utc>, cfg: &SpatialConfig) -> bool {
        fresh_at(self.ts, ts, cfg)
    }
}

/// Whether a reading of time `read` counts at `ts`: within `fresh_secs`, before or after.
fn fresh_at(read: DateTime<Utc>, ts: DateTime<Utc>, cfg: &SpatialConfig) -> bool {
    (ts - read).num_seconds().abs() <= cfg.fresh_secs
}

/// What a reading's neighbours read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// Fresh neighbours.
    pub count: usize,
    /// Whether they are the whole fleet (too few within the radius).
    pub fleet_wide: bool,
    /// Median clean value per pollutant (by [`Pollutant::index`]).
    pub median: [Option<f64>; 3],
    /// Median PM2.5/PM10 ratio.
    pub pm_ratio: Option<f64>,
}

/// The latest clean values of every sensor the detector has seen.
#[derive(Debug, Clone, Default)]
pub struct Neighbourhood {
    latest: HashMap<String, Latest>,
    /// How many sensors' latest readings are of each time: whether all are fresh at a time.
    times: BTreeMap<DateTime<Utc>, usize>,
    /// The whole fleet's values sorted, kept up to date reading by reading.
    whole: Whole,
}

/// The whole fleet as [`Sorted`] values, for the ticks at which every sensor is fresh.
#[derive(Debug, Clone, Default)]
enum Whole {
    /// To be sorted at the next tick that needs it: a sensor arrived, moved or was forgotten.
    #[default]
    Unsorted,
    /// Not within the radius of one another (only a sensor's arrival or move changes that).
    Sparse,
    Dense(Arc<Sorted>),
}

/// A tick with more readings than this sorts the fleet's copy again instead of moving each
/// reading's values in it: a move shifts the copy (linear), a sort is `n log n` once.
const RESORT_FROM: usize = 16;

impl Neighbourhood {
    /// Records the readings of a tick, as [`Neighbourhood::update`] does one by one.
    pub fn update_all(&mut self, readings: &[&ProcessedReading]) {
        if readings.len() > RESORT_FROM {
            self.whole = Whole::Unsorted;
        }
        readings.iter().for_each(|r| self.update(r));
    }

    /// Records a processed reading (after it was judged: a sensor is not its own neighbour).
    pub fn update(&mut self, r: &ProcessedReading) {
        let newer = self
            .latest
            .get(&r.sensor_id)
            .is_none_or(|l| l.ts <= r.timestamp);
        if !newer {
            return;
        }
        let new = Latest {
            location: r.location,
            ts: r.timestamp,
            clean: r.clean,
            aqi: r.metrics.us_aqi.map(|a| a.aqi),
        };
        *self.times.entry(new.ts).or_default() += 1;
        let old = self.latest.insert(r.sensor_id.clone(), new);
        if let Some(old) = old {
            self.untime(old.ts);
        }
        match (old, &mut self.whole) {
            (Some(old), Whole::Dense(sorted)) if old.location == new.location => {
                if !Arc::make_mut(sorted).replace(&old.clean, &new.clean) {
                    self.whole = Whole::Unsorted;
                }
            }
            (Some(old), Whole::Sparse) if old.location == new.location => {}
            _ => self.whole = Whole::Unsorted,
        }
    }

    pub fn forget(&mut self, sensor: &str) {
        if let Some(old) = self.latest.remove(sensor) {
            self.untime(old.ts);
            self.whole = Whole::Unsorted;
        }
    }

    fn untime(&mut self, ts: DateTime<Utc>) {
        if let Some(n) = self.times.get_mut(&ts) {
            *n -= 1;
            if *n == 0 {
                self.times.remove(&ts);
            }
        }
    }

    /// Whether every sensor's latest reading is fresh at `ts`.
    fn all_fresh(&self, ts: DateTime<Utc>, cfg: &SpatialConfig) -> bool {
        let fresh = |t: Option<(&DateTime<Utc>, _)>| t.is_none_or(|(t, _)| fresh_at(*t, ts, cfg));
        fresh(self.times.first_key_value()) && fresh(self.times.last_key_value())
    }

    /// The sensors read within `fresh_secs` before or at `ts` (or after it: a replay may
    /// hold a neighbour's next hour already), other than `sensor`.
    fn fresh<'a>(
        &'a self,
        sensor: &'a str,
        ts: DateTime<Utc>,
        cfg: &'a SpatialConfig,
    ) -> impl Iterator<Item = &'a Latest> + 'a {
        self.latest
            .iter()
            .filter(move |(id, l)| id.as_str() != sensor && l.is_fresh(ts, cfg))
            .map(|(_, l)| l)
    }

    /// The neighbours' view of a reading of `sensor` at `location` and `ts`.
    pub fn context(
        &self,
        sensor: &str,
        location: Location,
        ts: DateTime<Utc>,
        cfg: &SpatialConfig,
    ) -> Context {
        let near: Vec<&Latest> = self
            .fresh(sensor, ts, cfg)
            .filter(|l| distance_km(l.location, location) <= cfg.radius_km)
            .collect();
        let (chosen, fleet_wide) = if near.len() >= cfg.min_neighbours {
            (near, false)
        } else {
            (self.fresh(sensor, ts, cfg).collect(), true)
        };
        let mut ctx = Context {
            count: chosen.len(),
            fleet_wide,
            ..Context::default()
        };
        for p in Pollutant::ALL {
            let mut v: Vec<f64> = chosen.iter().filter_map(|l| l.clean.get(p)).collect();
            ctx.median[p.index()] = median(&mut v);
        }
        let mut ratios: Vec<f64> = chosen.iter().filter_map(|l| pm_ratio(&l.clean)).collect();
        ctx.pm_ratio = median(&mut ratios);
        ctx
    }

    /// The fresh sensors at `ts` when they are all within `radius_km` of one another (a
    /// city's fleet): then every reading's neighbours are all of them but itself, and one
    /// sorted copy of their values answers each. `None` otherwise. When every sensor is fresh
    /// at `ts` (a live fleet), that copy is the whole fleet's, kept sorted by
    /// [`Neighbourhood::update`]; otherwise it is sorted for this call.
    pub fn dense(&mut self, ts: DateTime<Utc>, cfg: &SpatialConfig) -> Option<Dense> {
        if !self.all_fresh(ts, cfg) {
            let fresh = self.latest.values().filter(|l| l.is_fresh(ts, cfg));
            let sorted = Sorted::of(fresh.map(|l| (l.location, &l.clean)), cfg)?;
            return Some(Dense {
                ts,
                sorted: Arc::new(sorted),
            });
        }
        if let Whole::Unsorted = self.whole {
            let all = self.latest.values().map(|l| (l.location, &l.clean));
            self.whole = Sorted::of(all, cfg).map_or(Whole::Sparse, |s| Whole::Dense(Arc::new(s)));
        }
        match &self.whole {
            Whole::Dense(sorted) => Some(Dense {
                ts,
                sorted: sorted.clone(),
            }),
            Whole::Unsorted | Whole::Sparse => None,
        }
    }

    /// [`Neighbourhood::context`], from `dense` when it applies to this reading.
    pub fn context_in(
        &self,
        dense: Option<&Dense>,
        sensor: &str,
        location: Location,
        ts: DateTime<Utc>,
        cfg: &SpatialConfig,
    ) -> Context {
        match dense {
            Some(d) if d.ts == ts && d.contains(location) => {
                let own = self.latest.get(sensor).filter(|l| l.is_fresh(ts, cfg));
                d.context(own.map(|l| &l.clean), cfg)
            }
            _ => self.context(sensor, location, ts, cfg),
        }
    }

    /// Of `sensors`, how many are fresh at `ts`, and which of those are at or above `aqi`.
    pub fn aqi_share<'a>(
        &self,
        sensors: &'a [String],
        ts: DateTime<Utc>,
        aqi: u16,
        cfg: &SpatialConfig,
    ) -> (usize, Vec<&'a str>) {
        let mut fresh = 0;
        let mut high = Vec::new();
        for id in sensors {
            let Some(l) = self.latest.get(id) else {
                continue;
            };
            if !l.is_fresh(ts, cfg) {
                continue;
            }
            fresh += 1;
            if l.aqi.is_some_and(|a| a >= aqi) {
                high.push(id.as_str());
            }
        }
        high.sort_unstable();
        (fresh, high)
    }

    /// The latest US AQI of a sensor.
    pub fn aqi_of(&self, sensor: &str) -> Option<u16> {
        self.latest.get(sensor).and_then(|l| l.aqi)
    }

    pub fn location_of(&self, sensor: &str) -> Option<Location> {
        self.latest.get(sensor).map(|l| l.location)
    }
}

/// Sensors grouped into regions: a sensor belongs to the first region whose first sensor is
/// within `region_km`, or starts one. Each region is its own timeline: a fleet replaying
/// Beijing's 2013 next to one that reports today must not hold or cut each other's ticks,
/// nor open or close each other's pollution episodes.
#[derive(Debug, Clone, Default)]
pub struct Areas {
    anchors: Vec<Location>,
    of_sensor: HashMap<String, usize>,
}

impl Areas {
    /// The region of `sensor`, and whether this call entered it (its first, at `location`).
    pub fn of(&mut self, sensor: &str, location: Location, region_km: f64) -> (usize, bool) {
        if let Some(&i) = self.of_sensor.get(sensor) {
            return (i, false);
        }
        let i = self
            .anchors
            .iter()
            .position(|a| distance_km(*a, location) <= region_km)
            .unwrap_or_else(|| {
                self.anchors.push(location);
                self.anchors.len() - 1
            });
        self.of_sensor.insert(sensor.to_owned(), i);
        (i, true)
    }
}

/// PM2.5/PM10 of a reading with both (PM10 at least 1 ug/m3).
pub fn pm_ratio(m: &Measurements) -> Option<f64> {
    match (m.pm2_5, m.pm10) {
        (Some(a), Some(b)) if b >= 1.0 => Some(a / b),
        _ => None,
    }
}

/// The log-ratio of a value to its neighbours' median.
pub fn log_ratio(x: f64, neighbours: f64, offset: f64) -> f64 {
    ((x.max(0.0) + offset) / (neighbours.max(0.0) + offset)).ln()
}

/// Great-circle distance, km.
pub fn distance_km(a: Location, b: Location) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

/// The median (the mean of the two middle values of an even count), by selection: O(n),
/// where a sort was O(n log n) for each reading's neighbours (the detector's hottest path
/// in a dense fleet, where every sensor is every other's neighbour).
fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let n = v.len();
    let (below, mid, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let upper = *mid;
    Some(if n % 2 == 1 {
        upper
    } else {
        // The largest of the lower half is the other middle value.
        let lower = below
            .iter()
            .copied()
            .max_by(f64::total_cmp)
            .unwrap_or(upper);
        (lower + upper) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(lat: f64, lon: f64) -> Location {
        Location { lat, lon }
    }

    #[test]
    fn beijing_to_paris_is_about_8200_km() {
        let d = distance_km(at(39.9, 116.4), at(48.86, 2.35));
        assert!((d - 8220.0).abs() < 30.0, "{d}");
    }

    #[test]
    fn a_log_ratio_is_zero_when_the_sensor_reads_its_neighbours() {
        assert_eq!(log_ratio(40.0, 40.0, 5.0), 0.0);
        assert!(log_ratio(95.0, 40.0, 5.0) > 0.69);
        // Clean air: 2 against 1 is not a factor of two.
        assert!(log_ratio(2.0, 1.0, 5.0) < 0.16);
    }

    /// Uniform numbers in [0, 1), reproducible (a linear congruential generator).
    fn lcg(seed: u64) -> impl FnMut() -> f64 {
        let mut x = seed;
        move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as f64 / (1u64 << 31) as f64
        }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut [5.0]), Some(5.0));
        assert_eq!(median(&mut [5.0, 5.0, 1.0, 9.0]), Some(5.0));
        assert_eq!(median(&mut []), None);
        // The same as the median of the sorted values, on many random sets (with ties).
        let mut rnd = lcg(7);
        for n in 1..200 {
            let mut v: Vec<f64> = (0..n).map(|_| (rnd() * 50.0).floor() / 4.0).collect();
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            let exact = if n % 2 == 1 {
                sorted[n / 2]
            } else {
                (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
            };
            assert_eq!(
                median(&mut v).map(f64::to_bits),
                Some(exact.to_bits()),
                "n {n}"
            );
        }
    }

    #[test]
    fn the_whole_fleets_sorted_values_follow_each_reading() {
        use airq_domain::sensor::Cleaner;
        let t0: DateTime<Utc> = "2024-01-15T00:00:00Z".parse().unwrap();
        let cfg = SpatialConfig::default();
        let mut rnd = lcg(5);
        let mut value = |missing: bool| (!missing).then(|| (rnd() * 40.0).round() / 2.0);
        let reading = |i: usize, s: i64, location: Location, m: Measurements| {
            Cleaner::default().process(airq_domain::Reading {
                sensor_id: format!("s{i:02}"),
                timestamp: t0 + chrono::Duration::seconds(s),
                location,
                measurements: m,
            })
        };
        let mut locations: Vec<Location> = (0..40)
            .map(|i| at(48.85 + 0.001 * i as f64, 2.35 - 0.001 * i as f64))
            .collect();
        let mut hood = Neighbourhood::default();
        let from_scratch = |hood: &Neighbourhood| {
            Sorted::of(hood.latest.values().map(|l| (l.location, &l.clean)), &cfg)
        };
        for step in 0..2_000_i64 {
            let i = (step as usize * 7) % 40;
            let m = Measurements {
                pm2_5: value(step % 5 == 1),
                pm10: value(step % 4 == 2),
                no2: value(step % 3 == 0),
            };
            match step {
                // A sensor moves, another is forgotten: the copy is sorted again.
                700 => locations[i] = at(48.9, 2.3),
                1_300 => hood.forget("s03"),
                _ => {}
            }
            // A known sensor, in place: its values move in the sorted copy.
            let incremental = matches!(hood.whole, Whole::Dense(_))
                && hood.latest.contains_key(&format!("s{i:02}"))
                && step != 700;
            hood.update(&reading(i, step, locations[i], m));
            if incremental {
                assert!(matches!(hood.whole, Whole::Dense(_)), "step {step}");
            }
            let ts = t0 + chrono::Duration::seconds(step);
            let dense = hood.dense(ts, &cfg).expect("a dense fleet");
            assert_eq!(
                Some(&*dense.sorted),
                from_scratch(&hood).as_ref(),
                "step {step}"
            );
        }
        // A tick of the whole fleet at once (sorted again), then one of two (moved in place).
        for (k, n) in [(2_000, 40), (2_001, 2)] {
            let tick: Vec<ProcessedReading> = (0..n)
                .map(|i| {
                    let m = Measurements {
                        pm2_5: value(false),
                        pm10: value(i % 3 == 0),
                        no2: value(false),
                    };
                    reading(i, k, locations[i], m)
                })
                .collect();
            hood.update_all(&tick.iter().collect::<Vec<_>>());
            let dense = hood.dense(t0 + chrono::Duration::seconds(k), &cfg);
            let dense = dense.expect("a dense fleet");
            assert_eq!(
                Some(&*dense.sorted),
                from_scratch(&hood).as_ref(),
                "tick of {n}"
            );
        }
        // A sensor out of the radius: the fleet is no longer dense, at once.
        hood.update(&reading(99, 2_000, at(40.0, 2.35), Measurements::default()));
        assert!(
            hood.dense(t0 + chrono::Duration::seconds(2_000), &cfg)
                .is_none()
        );
    }

    #[test]
    fn a_dense_fleet_gives_each_reading_the_context_it_gets_one_by_one() {
        use airq_domain::sensor::Cleaner;
        let t0: DateTime<Utc> = "2024-01-15T00:00:00Z".parse().unwrap();
        let cfg = SpatialConfig::default();
        let mut rnd = lcg(11);
        // (spread in degrees, sensors): a city (dense), tiny fleets, a country (not dense).
        for (spread, fleet) in [(0.1, 80), (0.1, 3), (0.1, 1), (3.0, 40)] {
            let mut hood = Neighbourhood::default();
            let mut readings = Vec::new();
            for i in 0..fleet {
                let v: [f64; 3] = std::array::from_fn(|_| (rnd() * 60.0).round() / 2.0 + 1.0);
                let location = at(
                    48.85 + spread * (rnd() - 0.5),
                    2.35 + spread * (rnd() - 0.5),
                );
                let r = Cleaner::default().process(airq_domain::Reading {
                    sensor_id: format!("s{i:03}"),
                    // Every seventh is stale (older than fresh_secs): no one's neighbour.
                    timestamp: t0 - chrono::Duration::hours(if i % 7 == 3 { 3 } else { 0 }),
                    location,
                    measurements: Measurements {
                        pm2_5: (i % 5 != 1).then_some(v[0]),
                        pm10: (i % 4 != 2).then_some(v[1]),
                        no2: (i % 3 != 0).then_some(v[2]),
                    },
                });
                hood.update(&r);
                readings.push(r);
            }
            let dense = hood.dense(t0, &cfg);
            assert_eq!(dense.is_some(), spread < 1.0, "spread {spread}");
            // A reading from outside the fleet's box is judged one by one.
            let mut outside = readings[0].clone();
            outside.location = at(49.5, 2.35);
            readings.push(outside);
            for r in &readings {
                let one_by_one = hood.context(&r.sensor_id, r.location, t0, &cfg);
                let got = hood.context_in(dense.as_ref(), &r.sensor_id, r.location, t0, &cfg);
                assert_eq!(got, one_by_one, "{} of {fleet}", r.sensor_id);
            }
        }
    }
}
