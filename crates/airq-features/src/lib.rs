//! The forecasting features, one definition for the trainer and the prediction API (no
//! train/serve skew). The task: PM2.5 `h` hours ahead for a sensor (`h` = 1 by default, up
//! to 24 for the longer horizons' direct models), from its own hourly history (what the
//! sensors send: PM2.5, PM10, NO2; no weather) and what its nearest neighbours saw in the
//! same hours ([`Neighbours`]).
//!
//! A sensor's history is a map hour -> hourly means. The features for a forecast of hour
//! `t + h` use hours `t` and before only: nothing from the future leaks in. Only the
//! calendar features depend on `h` (they describe the target hour).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// Hourly means of one sensor for one hour (`None`: no valid value that hour).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Hourly {
    pub pm2_5: Option<f64>,
    pub pm10: Option<f64>,
    pub no2: Option<f64>,
}

type Getter = fn(&Hourly) -> Option<f64>;

/// One sensor's hourly history, keyed by the start of the hour (UTC).
pub type Series = BTreeMap<DateTime<Utc>, Hourly>;

/// The feature definition; stored with every model so that serving builds the same vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub version: u32,
    /// Hours of lagged values of each pollutant (hour `t`, `t-1`, ...).
    pub lags: usize,
    /// Window of the rolling PM2.5 mean, hours, and the fewest valid hours it needs.
    pub rolling_hours: usize,
    pub rolling_min: usize,
    /// The nearest other sensors whose values enter the neighbour features (0: none; absent
    /// in version 1 artifacts).
    #[serde(default)]
    pub neighbours: usize,
}

impl Default for FeatureSpec {
    fn default() -> Self {
        Self {
            version: 2,
            lags: 6,
            rolling_hours: 24,
            rolling_min: 12,
            neighbours: 8,
        }
    }
}

/// A sensor's location: latitude, longitude (degrees).
pub type Location = [f64; 2];

/// The sensors' locations, by id.
pub type Locations = BTreeMap<String, Location>;

/// The neighbour features' names, in vector order (after the calendar).
pub const NEIGHBOUR_FEATURES: [&str; 8] = [
    "nb_pm2_5_lag0",
    "nb_pm2_5_lag1",
    "nb_pm2_5_lag2",
    "nb_pm10_lag0",
    "nb_no2_lag0",
    "nb_change1",
    "nb_dev",
    "net_change1",
];

/// The other sensors a forecast looks at: each one's series and its weight (inverse squared
/// distance, km, at least 1 km).
#[derive(Debug, Clone, Default)]
pub struct Neighbours<'a> {
    pub others: Vec<(f64, &'a Series)>,
}

impl<'a> Neighbours<'a> {
    /// No neighbour: the neighbour features fall back on the sensor's own values.
    pub fn none() -> Self {
        Self::default()
    }

    /// The `k` sensors of `locations` nearest to `sensor` (itself excluded), with the series
    /// `series_of` gives them (a sensor without one is skipped). No neighbour when `sensor`'s
    /// own location is unknown.
    pub fn nearest(
        sensor: &str,
        k: usize,
        locations: &Locations,
        series_of: impl Fn(&str) -> Option<&'a Series>,
    ) -> Self {
        let others = nearest(sensor, k, locations)
            .into_iter()
            .filter_map(|(id, w)| series_of(id).map(|s| (w, s)))
            .collect();
        Self { others }
    }
}

/// The `k` sensors of `locations` nearest to `sensor` (itself excluded) with their weights,
/// nearest first (ties by id). Empty when `sensor`'s location is unknown.
pub fn nearest<'l>(sensor: &str, k: usize, locations: &'l Locations) -> Vec<(&'l str, f64)> {
    let Some(at) = locations.get(sensor) else {
        return Vec::new();
    };
    let mut all: Vec<(&str, f64)> = locations
        .iter()
        .filter(|(id, _)| id.as_str() != sensor)
        .map(|(id, loc)| (id.as_str(), km(*at, *loc)))
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)));
    all.truncate(k);
    all.into_iter()
        .map(|(id, d)| (id, 1.0 / d.max(1.0).powi(2)))
        .collect()
}

/// Distance in km (equirectangular: exact enough within a city or a region).
fn km(a: Location, b: Location) -> f64 {
    let (la, lb) = (a[0].to_radians(), b[0].to_radians());
    let dx = (b[1] - a[1]).to_radians() * ((la + lb) / 2.0).cos();
    6371.0 * dx.hypot(lb - la)
}

/// Why features could not be built for a forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct Missing {
    /// The first missing input, e.g. `pm10 at 2024-01-15T13:00:00Z`.
    pub what: String,
}

impl FeatureSpec {
    /// Names of the features, in vector order.
    pub fn names(&self) -> Vec<String> {
        let mut n = Vec::new();
        for p in ["pm2_5", "pm10", "no2"] {
            for k in 0..self.lags {
                n.push(format!("{p}_lag{k}"));
            }
        }
        n.push(format!("pm2_5_mean{}h", self.rolling_hours));
        n.extend(
            ["hour_sin", "hour_cos", "doy_sin", "doy_cos", "weekend"]
                .iter()
                .map(|s| (*s).to_owned()),
        );
        if self.neighbours > 0 {
            n.extend(NEIGHBOUR_FEATURES.iter().map(|s| (*s).to_owned()));
        }
        n
    }

    /// Hours of history a forecast needs, ending at `t`.
    pub fn history_hours(&self) -> usize {
        self.lags.max(self.rolling_hours)
    }

    /// The feature vector to forecast hour `t + 1` from `series` (hours up to `t` used).
    pub fn features(
        &self,
        series: &Series,
        t: DateTime<Utc>,
        nb: &Neighbours,
    ) -> Result<Vec<f64>, Missing> {
        self.features_ahead(series, t, 1, nb)
    }

    /// The feature vector to forecast hour `t + hours` from `series` and the neighbours'
    /// series (hours up to `t` used).
    pub fn features_ahead(
        &self,
        series: &Series,
        t: DateTime<Utc>,
        hours: u32,
        nb: &Neighbours,
    ) -> Result<Vec<f64>, Missing> {
        let mut x = Vec::with_capacity(3 * self.lags + 6 + NEIGHBOUR_FEATURES.len());
        let at = |k: usize| series.get(&(t - Duration::hours(k as i64)));
        let value = |name: &str, get: Getter, k: usize| {
            at(k).and_then(get).ok_or_else(|| Missing {
                what: format!("{name} at {}", (t - Duration::hours(k as i64)).to_rfc3339()),
            })
        };
        let pollutants: [(&str, Getter); 3] = [
            ("pm2_5", |h| h.pm2_5),
            ("pm10", |h| h.pm10),
            ("no2", |h| h.no2),
        ];
        for (name, get) in pollutants {
            for k in 0..self.lags {
                x.push(value(name, get, k)?);
            }
        }
        let window: Vec<f64> = (0..self.rolling_hours)
            .filter_map(|k| at(k).and_then(|h| h.pm2_5))
            .collect();
        if window.len() < self.rolling_min {
            return Err(Missing {
                what: format!(
                    "{} valid PM2.5 hours in the {} before {} (needs {})",
                    window.len(),
                    self.rolling_hours,
                    t.to_rfc3339(),
                    self.rolling_min
                ),
            });
        }
        x.push(window.iter().sum::<f64>() / window.len() as f64);
        x.extend(calendar(t + Duration::hours(i64::from(hours))));
        if self.neighbours > 0 {
            let [(pm2_5, p), (pm10, q), (no2, r)] = pollutants;
            let own = [
                value(pm2_5, p, 0)?,
                value(pm2_5, p, 1)?,
                value(pm2_5, p, 2)?,
                value(pm10, q, 0)?,
                value(no2, r, 0)?,
            ];
            x.extend(neighbour_features(own, nb, t));
        }
        Ok(x)
    }
}

/// The neighbours' PM2.5 at `t`, `t-1`, `t-2`, PM10 and NO2 at `t` (weighted means over the
/// neighbours that have all five; the sensor's own `own` when none has), their last change,
/// their deviation from the sensor, and the mean last change of the sensor and every neighbour
/// with PM2.5 at `t` and `t-1` (the whole area rising or falling).
fn neighbour_features(own: [f64; 5], nb: &Neighbours, t: DateTime<Utc>) -> [f64; 8] {
    let (mut sum, mut total) = ([0.0; 5], 0.0);
    let (mut changes, mut n) = (own[0] - own[1], 1.0);
    for (w, s) in &nb.others {
        let at = |k: i64| s.get(&(t - Duration::hours(k)));
        let (Some(h0), Some(h1)) = (at(0), at(1)) else {
            continue;
        };
        if let (Some(a), Some(b)) = (h0.pm2_5, h1.pm2_5) {
            changes += a - b;
            n += 1.0;
        }
        let values = [
            h0.pm2_5,
            h1.pm2_5,
            at(2).and_then(|h| h.pm2_5),
            h0.pm10,
            h0.no2,
        ];
        if values.iter().all(Option::is_some) {
            for (acc, v) in sum.iter_mut().zip(values) {
                *acc += w * v.unwrap_or_default();
            }
            total += w;
        }
    }
    let m = if total > 0.0 {
        sum.map(|v| v / total)
    } else {
        own
    };
    [
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[0] - m[1],
        m[0] - own[0],
        changes / n,
    ]
}

/// Hour-of-day and day-of-year on the circle, and a weekend flag, of the target hour.
fn calendar(target: DateTime<Utc>) -> [f64; 5] {
    use std::f64::consts::TAU;
    let h = f64::from(target.hour()) / 24.0;
    let d = f64::from(target.ordinal0()) / 365.25;
    let weekend = matches!(
        target.weekday(),
        chrono::Weekday::Sat | chrono::Weekday::Sun
    );
    [
        (TAU * h).sin(),
        (TAU * h).cos(),
        (TAU * d).sin(),
        (TAU * d).cos(),
        f64::from(u8::from(weekend)),
    ]
}

/// A supervised data set: row `i` forecasts `y[i]` (PM2.5 at `target[i]`) from `x[i]`.
/// `target[i]` is `hours` after the last hour its features use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    pub x: Vec<Vec<f64>>,
    pub y: Vec<f64>,
    pub target: Vec<DateTime<Utc>>,
    pub sensor: Vec<String>,
    /// PM2.5 at the last hour seen (the persistence forecast).
    pub last: Vec<f64>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The rows whose target hour satisfies `keep`, in order.
    pub fn filter(&self, keep: impl Fn(DateTime<Utc>) -> bool) -> Dataset {
        let mut d = Dataset::default();
        for i in (0..self.len()).filter(|&i| keep(self.target[i])) {
            d.x.push(self.x[i].clone());
            d.y.push(self.y[i]);
            d.target.push(self.target[i]);
            d.sensor.push(self.sensor[i].clone());
            d.last.push(self.last[i]);
        }
        d
    }
}

/// A possible row of a data set `hours` ahead: a sensor's hour `t` with a PM2.5, whose target
/// hour `t + hours` has one too (its features may still be missing).
pub struct Target<'a> {
    pub sensor: &'a str,
    pub series: &'a Series,
    pub neighbours: &'a Neighbours<'a>,
    pub t: DateTime<Utc>,
    /// PM2.5 at the target hour, and at `t` (the persistence forecast).
    pub y: f64,
    pub last: f64,
}

/// Calls `row` for every [`Target`] `hours` ahead whose target hour is in `[from, to)`, sensor
/// by sensor, in time order: the rows of [`build_dataset_ahead`], and of any scoring that
/// builds its own features.
pub fn each_target(
    spec: &FeatureSpec,
    net: &Network,
    hours: u32,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    mut row: impl FnMut(Target),
) {
    let ahead = Duration::hours(i64::from(hours));
    let shift = |t: DateTime<Utc>| {
        t.checked_sub_signed(ahead)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    let (first, end) = (shift(from), shift(to));
    if first >= end {
        return;
    }
    for (sensor, series) in &net.series {
        let neighbours = net.neighbours(spec, sensor);
        for (&t, h) in series.range(first..end) {
            let (Some(y), Some(last)) = (series.get(&(t + ahead)).and_then(|n| n.pm2_5), h.pm2_5)
            else {
                continue;
            };
            row(Target {
                sensor,
                series,
                neighbours: &neighbours,
                t,
                y,
                last,
            });
        }
    }
}

/// Every sensor's hourly series and location: what the features of any sensor read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Network {
    pub series: BTreeMap<String, Series>,
    pub locations: Locations,
}

impl Network {
    /// Series without locations: no sensor has neighbours.
    pub fn alone(series: BTreeMap<String, Series>) -> Self {
        Self {
            series,
            locations: Locations::new(),
        }
    }

    /// The neighbours of `sensor`, as `spec` wants them.
    pub fn neighbours(&self, spec: &FeatureSpec, sensor: &str) -> Neighbours<'_> {
        Neighbours::nearest(sensor, spec.neighbours, &self.locations, |id| {
            self.series.get(id)
        })
    }
}

/// Every (features, next-hour PM2.5) pair of every sensor whose inputs and target exist,
/// ordered by target time then sensor (splits by time are then prefix/suffix cuts).
pub fn build_dataset(spec: &FeatureSpec, net: &Network) -> Dataset {
    build_dataset_ahead(spec, net, 1)
}

/// As [`build_dataset`], for PM2.5 `hours` ahead.
pub fn build_dataset_ahead(spec: &FeatureSpec, net: &Network, hours: u32) -> Dataset {
    let mut rows = Vec::new();
    let all = (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
    each_target(spec, net, hours, all, |row| {
        if let Ok(x) = spec.features_ahead(row.series, row.t, hours, row.neighbours) {
            rows.push((
                row.t + Duration::hours(i64::from(hours)),
                row.sensor.to_owned(),
                x,
                row.y,
                row.last,
            ));
        }
    });
    rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut d = Dataset::default();
    for (target, sensor, x, y, last) in rows {
        d.x.push(x);
        d.y.push(y);
        d.target.push(target);
        d.sensor.push(sensor);
        d.last.push(last);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        "2024-01-15T00:00:00Z".parse().unwrap()
    }

    fn series(hours: i64) -> Series {
        (0..hours)
            .map(|h| {
                let v = h as f64;
                (
                    t0() + Duration::hours(h),
                    Hourly {
                        pm2_5: Some(v),
                        pm10: Some(2.0 * v),
                        no2: Some(100.0 + v),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn features_use_only_the_past_and_match_their_names() {
        let spec = FeatureSpec::default();
        let s = series(48);
        let t = t0() + Duration::hours(30);
        let x = spec.features(&s, t, &Neighbours::none()).unwrap();
        assert_eq!(x.len(), spec.names().len());
        assert_eq!(&x[0..3], &[30.0, 29.0, 28.0], "pm2_5 lags from hour t back");
        assert_eq!(x[6], 60.0, "pm10 at t");
        assert_eq!(x[12], 130.0, "no2 at t");
        assert_eq!(
            x[18],
            (7..=30).sum::<i64>() as f64 / 24.0,
            "24 h mean up to t"
        );
        // Changing the future changes nothing.
        let mut future = s.clone();
        future.insert(
            t + Duration::hours(1),
            Hourly {
                pm2_5: Some(1e6),
                ..Default::default()
            },
        );
        assert_eq!(spec.features(&future, t, &Neighbours::none()).unwrap(), x);
    }

    #[test]
    fn says_which_input_is_missing() {
        let spec = FeatureSpec::default();
        let mut s = series(48);
        let t = t0() + Duration::hours(30);
        s.get_mut(&(t - Duration::hours(2))).unwrap().pm10 = None;
        let err = spec.features(&s, t, &Neighbours::none()).unwrap_err();
        assert_eq!(err.what, "pm10 at 2024-01-16T04:00:00+00:00");
    }

    #[test]
    fn the_dataset_is_in_time_order_with_next_hour_targets() {
        let spec = FeatureSpec::default();
        let sensors: BTreeMap<String, Series> =
            [("b".to_owned(), series(40)), ("a".to_owned(), series(40))].into();
        let d = build_dataset(&spec, &Network::alone(sensors.clone()));
        // Hours 11..=38 have 6 lags, 12 valid hours of the rolling mean and a next hour.
        assert_eq!(d.len(), 2 * 28);
        assert!(d.target.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!((d.sensor[0].as_str(), d.sensor[1].as_str()), ("a", "b"));
        assert_eq!(d.y[0], d.last[0] + 1.0, "target is the next hour");
        let late = d.filter(|t| t >= t0() + Duration::hours(35));
        assert_eq!(late.len(), 2 * 5, "targets 35..=39");
    }

    #[test]
    fn a_longer_horizon_targets_later_hours_with_the_same_inputs() {
        let spec = FeatureSpec::default();
        let sensors: BTreeMap<String, Series> = [("a".to_owned(), series(40))].into();
        let one = build_dataset(&spec, &Network::alone(sensors.clone()));
        let six = build_dataset_ahead(&spec, &Network::alone(sensors), 6);
        // Inputs at hours 11..=33 have a target 6 hours later inside the 40 hours.
        assert_eq!(six.len(), 23);
        assert_eq!(six.y[0], six.last[0] + 6.0, "target is 6 hours after t");
        assert_eq!(six.target[0], one.target[0] + Duration::hours(5));
        // The same history, the calendar of the later target hour.
        let names = spec.names();
        let cal = names.iter().position(|n| n == "hour_sin").unwrap();
        assert_eq!(six.x[0][..cal], one.x[0][..cal]);
        let t = t0() + Duration::hours(11);
        assert_eq!(
            six.x[0][cal..cal + 5],
            spec.features(&series(40), t + Duration::hours(5), &Neighbours::none())
                .unwrap()[cal..cal + 5],
            "the calendar of hour t + 6"
        );
    }

    #[test]
    fn neighbour_features_are_the_nearest_sensors_values_at_the_same_hours() {
        let spec = FeatureSpec::default();
        let names = spec.names();
        let nb0 = names.iter().position(|n| n == "nb_pm2_5_lag0").unwrap();
        assert_eq!(&names[nb0..], NEIGHBOUR_FEATURES);
        // a at the origin; b 2 km north, 10 ug/m3 above a; c 20 km east, 100 above.
        let locations: Locations = [
            ("a".to_owned(), [40.0, 116.0]),
            ("b".to_owned(), [40.018, 116.0]),
            ("c".to_owned(), [40.0, 116.235]),
        ]
        .into();
        let shifted = |by: f64| -> Series {
            series(48)
                .into_iter()
                .map(|(t, h)| {
                    (
                        t,
                        Hourly {
                            pm2_5: h.pm2_5.map(|v| v + by),
                            ..h
                        },
                    )
                })
                .collect()
        };
        let net = Network {
            series: [
                ("a".to_owned(), series(48)),
                ("b".to_owned(), shifted(10.0)),
                ("c".to_owned(), shifted(100.0)),
            ]
            .into(),
            locations,
        };
        let near = nearest("a", 1, &net.locations);
        assert_eq!(near.len(), 1);
        assert_eq!(near[0].0, "b");
        assert!(
            (near[0].1 - 1.0 / 4.0).abs() < 0.01,
            "1 / (2 km)^2: {near:?}"
        );
        let t = t0() + Duration::hours(30);
        let x = spec
            .features(&net.series["a"], t, &net.neighbours(&spec, "a"))
            .unwrap();
        // Weights 1/4 and 1/400: b's values, pulled 1 % of the way to c's.
        let w = (0.25 * 10.0 + 100.0 / 400.0) / (0.25 + 1.0 / 400.0);
        let close = |a: f64, b: f64| (a - b).abs() < 0.05;
        assert!(close(x[nb0], 30.0 + w), "{}", x[nb0]);
        assert!(close(x[nb0 + 1], 29.0 + w));
        assert!(close(x[nb0 + 5], 1.0), "their last change");
        assert!(close(x[nb0 + 6], w), "their deviation from a");
        assert_eq!(x[nb0 + 7], 1.0, "every series rises by 1 an hour");
        // Nothing from the neighbours' future; nothing without a location.
        let mut future = net.clone();
        let b = future.series.get_mut("b").unwrap();
        b.insert(
            t + Duration::hours(1),
            Hourly {
                pm2_5: Some(1e6),
                ..Default::default()
            },
        );
        let nb = future.neighbours(&spec, "a");
        assert_eq!(spec.features(&future.series["a"], t, &nb).unwrap(), x);
        let alone = spec
            .features(&net.series["a"], t, &Neighbours::none())
            .unwrap();
        assert_eq!((alone[nb0], alone[nb0 + 6]), (30.0, 0.0), "its own values");
        assert!(net.neighbours(&spec, "z").others.is_empty(), "no location");
        // A version 1 spec (no `neighbours` key) has none.
        let v1: FeatureSpec =
            serde_json::from_str(r#"{"version":1,"lags":6,"rolling_hours":24,"rolling_min":12}"#)
                .unwrap();
        assert_eq!((v1.neighbours, v1.names().len()), (0, 24));
    }
}
