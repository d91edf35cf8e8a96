//! The forecasting features, one definition for the trainer and the prediction API (no
//! train/serve skew). The task: PM2.5 `h` hours ahead for a sensor (`h` = 1 by default, up
//! to 24 for the longer horizons' direct models), from its own hourly history only (what the
//! sensors send: PM2.5, PM10, NO2; no weather).
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
}

impl Default for FeatureSpec {
    fn default() -> Self {
        Self {
            version: 1,
            lags: 6,
            rolling_hours: 24,
            rolling_min: 12,
        }
    }
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
        n
    }

    /// Hours of history a forecast needs, ending at `t`.
    pub fn history_hours(&self) -> usize {
        self.lags.max(self.rolling_hours)
    }

    /// The feature vector to forecast hour `t + 1` from `series` (hours up to `t` used).
    pub fn features(&self, series: &Series, t: DateTime<Utc>) -> Result<Vec<f64>, Missing> {
        self.features_ahead(series, t, 1)
    }

    /// The feature vector to forecast hour `t + hours` from `series` (hours up to `t` used).
    pub fn features_ahead(
        &self,
        series: &Series,
        t: DateTime<Utc>,
        hours: u32,
    ) -> Result<Vec<f64>, Missing> {
        let mut x = Vec::with_capacity(3 * self.lags + 6);
        let at = |k: usize| series.get(&(t - Duration::hours(k as i64)));
        let pollutants: [(&str, Getter); 3] = [
            ("pm2_5", |h| h.pm2_5),
            ("pm10", |h| h.pm10),
            ("no2", |h| h.no2),
        ];
        for (name, get) in pollutants {
            for k in 0..self.lags {
                let v = at(k).and_then(get).ok_or_else(|| Missing {
                    what: format!("{name} at {}", (t - Duration::hours(k as i64)).to_rfc3339()),
                })?;
                x.push(v);
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
        Ok(x)
    }
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

/// Every (features, next-hour PM2.5) pair of every sensor whose inputs and target exist,
/// ordered by target time then sensor (splits by time are then prefix/suffix cuts).
pub fn build_dataset(spec: &FeatureSpec, sensors: &BTreeMap<String, Series>) -> Dataset {
    build_dataset_ahead(spec, sensors, 1)
}

/// As [`build_dataset`], for PM2.5 `hours` ahead.
pub fn build_dataset_ahead(
    spec: &FeatureSpec,
    sensors: &BTreeMap<String, Series>,
    hours: u32,
) -> Dataset {
    let mut rows = Vec::new();
    for (sensor, series) in sensors {
        for (&t, h) in series {
            let target = t + Duration::hours(i64::from(hours));
            let (Some(y), Some(last)) = (series.get(&target).and_then(|n| n.pm2_5), h.pm2_5) else {
                continue;
            };
            if let Ok(x) = spec.features_ahead(series, t, hours) {
                rows.push((target, sensor.clone(), x, y, last));
            }
        }
    }
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
        let x = spec.features(&s, t).unwrap();
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
        assert_eq!(spec.features(&future, t).unwrap(), x);
    }

    #[test]
    fn says_which_input_is_missing() {
        let spec = FeatureSpec::default();
        let mut s = series(48);
        let t = t0() + Duration::hours(30);
        s.get_mut(&(t - Duration::hours(2))).unwrap().pm10 = None;
        let err = spec.features(&s, t).unwrap_err();
        assert_eq!(err.what, "pm10 at 2024-01-16T04:00:00+00:00");
    }

    #[test]
    fn the_dataset_is_in_time_order_with_next_hour_targets() {
        let spec = FeatureSpec::default();
        let sensors: BTreeMap<String, Series> =
            [("b".to_owned(), series(40)), ("a".to_owned(), series(40))].into();
        let d = build_dataset(&spec, &sensors);
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
        let one = build_dataset(&spec, &sensors);
        let six = build_dataset_ahead(&spec, &sensors, 6);
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
            six.x[0][cal..],
            spec.features(&series(40), t + Duration::hours(5)).unwrap()[cal..],
            "the calendar of hour t + 6"
        );
    }
}
