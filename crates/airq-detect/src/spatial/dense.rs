//! A dense fleet's context: when every fresh sensor is within `radius_km` of every other (a
//! city's fleet), each reading's neighbours are all of them but itself, so one sorted copy of
//! their values answers every reading with a lookup.
//!
//! [`Sorted`] is that copy. A tick sorts it once for all of its readings. A fleet on its own
//! clocks makes each reading a tick of its own, and sorting a thousand sensors' values per
//! reading was the detector's largest cost there; so the neighbourhood also keeps the whole
//! fleet's copy and moves one sensor's values in it per reading ([`Sorted::replace`]), and a
//! tick at which every sensor is fresh uses it as it stands.

use std::sync::Arc;

use airq_domain::{Location, Measurements, Pollutant};
use chrono::{DateTime, Utc};

use super::{Context, SpatialConfig, distance_km, pm_ratio};

/// A lat/lon box.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bounds {
    south: f64,
    north: f64,
    west: f64,
    east: f64,
}

impl Bounds {
    fn around(mut points: impl Iterator<Item = Location>) -> Option<Self> {
        let first = points.next()?;
        let mut b = Bounds {
            south: first.lat,
            north: first.lat,
            west: first.lon,
            east: first.lon,
        };
        for l in points {
            b.south = b.south.min(l.lat);
            b.north = b.north.max(l.lat);
            b.west = b.west.min(l.lon);
            b.east = b.east.max(l.lon);
        }
        Some(b)
    }

    fn corner(&self, north: bool, east: bool) -> Location {
        Location {
            lat: if north { self.north } else { self.south },
            lon: if east { self.east } else { self.west },
        }
    }

    fn contains(&self, l: Location) -> bool {
        (self.south..=self.north).contains(&l.lat) && (self.west..=self.east).contains(&l.lon)
    }

    /// Whether any two points of the box are within `radius_km` of each other: at most its
    /// longer diagonal apart, with a margin for the rounding of the haversine.
    fn within(&self, radius_km: f64) -> bool {
        let sw_ne = distance_km(self.corner(false, false), self.corner(true, true));
        let nw_se = distance_km(self.corner(true, false), self.corner(false, true));
        sw_ne.max(nw_se) * 1.001 <= radius_km && self.east - self.west <= 90.0
    }
}

/// Sensors all within the radius of one another, their values sorted per pollutant.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sorted {
    bounds: Bounds,
    count: usize,
    values: [Vec<f64>; 3],
    ratios: Vec<f64>,
}

impl Sorted {
    /// The sensors at `locations` with values `clean`, if they are dense; `None` otherwise.
    pub(super) fn of<'a>(
        sensors: impl Iterator<Item = (Location, &'a Measurements)> + Clone,
        cfg: &SpatialConfig,
    ) -> Option<Self> {
        let bounds = Bounds::around(sensors.clone().map(|(l, _)| l))?;
        if !bounds.within(cfg.radius_km) {
            return None;
        }
        let mut s = Sorted {
            bounds,
            count: sensors.clone().count(),
            values: Default::default(),
            ratios: sensors.clone().filter_map(|(_, m)| pm_ratio(m)).collect(),
        };
        for p in Pollutant::ALL {
            s.values[p.index()] = sensors.clone().filter_map(|(_, m)| m.get(p)).collect();
            s.values[p.index()].sort_by(f64::total_cmp);
        }
        s.ratios.sort_by(f64::total_cmp);
        Some(s)
    }

    /// One sensor's values went from `old` to `new`, its location unchanged. `false` if a
    /// value of `old` was not there (then this copy is no longer the fleet's).
    pub(super) fn replace(&mut self, old: &Measurements, new: &Measurements) -> bool {
        let mut found = true;
        for p in Pollutant::ALL {
            found &= swap(&mut self.values[p.index()], old.get(p), new.get(p));
        }
        found & swap(&mut self.ratios, pm_ratio(old), pm_ratio(new))
    }
}

/// Takes one instance of `old` out of `sorted` and puts `new` in, keeping it sorted.
fn swap(sorted: &mut Vec<f64>, old: Option<f64>, new: Option<f64>) -> bool {
    let at = |s: &[f64], x: f64| s.partition_point(|v| v.total_cmp(&x).is_lt());
    if let Some(x) = old {
        let i = at(sorted, x);
        if sorted.get(i).is_none_or(|v| v.total_cmp(&x).is_ne()) {
            return false;
        }
        sorted.remove(i);
    }
    if let Some(x) = new {
        let i = at(sorted, x);
        sorted.insert(i, x);
    }
    true
}

/// The dense fleet of one timestamp.
#[derive(Debug, Clone)]
pub struct Dense {
    pub(super) ts: DateTime<Utc>,
    pub(super) sorted: Arc<Sorted>,
}

impl Dense {
    pub(super) fn contains(&self, l: Location) -> bool {
        self.sorted.bounds.contains(l)
    }

    /// The context of a reading whose sensor's own fresh values (if it has some) are `own`:
    /// the same as [`super::Neighbourhood::context`] computes from the other sensors one by
    /// one.
    pub(super) fn context(&self, own: Option<&Measurements>, cfg: &SpatialConfig) -> Context {
        let s = &self.sorted;
        let count = s.count - usize::from(own.is_some());
        let mut ctx = Context {
            count,
            // Fewer than `min_neighbours` within the radius: the fleet, the same sensors.
            fleet_wide: count < cfg.min_neighbours,
            ..Context::default()
        };
        for p in Pollutant::ALL {
            let x = own.and_then(|m| m.get(p));
            ctx.median[p.index()] = median_without(&s.values[p.index()], x);
        }
        ctx.pm_ratio = median_without(&s.ratios, own.and_then(pm_ratio));
        ctx
    }
}

/// The median of sorted values with one instance of `x` (one of them) left out.
fn median_without(sorted: &[f64], x: Option<f64>) -> Option<f64> {
    let skip = x.map(|x| sorted.partition_point(|v| v.total_cmp(&x).is_lt()));
    let n = sorted.len() - usize::from(skip.is_some());
    let at = |k: usize| match skip {
        Some(i) if k >= i => sorted[k + 1],
        _ => sorted[k],
    };
    match n {
        0 => None,
        n if n % 2 == 1 => Some(at(n / 2)),
        n => Some((at(n / 2 - 1) + at(n / 2)) / 2.0),
    }
}
