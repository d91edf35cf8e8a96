//! The pure part: requests' readings to hourly series, series to a forecast.

use std::collections::BTreeMap;

use airq_domain::Pollutant;
use airq_domain::aqi::{AqiCategory, sub_index};
use airq_features::{FeatureSpec, Hourly, Missing, Neighbours, Series};
use airq_model::Anchors;
use airq_model::horizon::Plan;
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};

/// One recent reading sent with a request (ug/m3; `null` or absent: not measured).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputReading {
    #[serde(deserialize_with = "timestamp")]
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub pm2_5: Option<f64>,
    #[serde(default)]
    pub pm10: Option<f64>,
    #[serde(default)]
    pub no2: Option<f64>,
}

/// A reading's time as chrono's `DateTime<Utc>` accepts it (RFC 3339, relaxed), with
/// `airq_domain::time`'s fast path for the usual shape: 30 readings a request made chrono's
/// parser a tenth of the server's CPU.
fn timestamp<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = DateTime<Utc>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an RFC 3339 formatted date and time string")
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            match airq_domain::time::parse_fast(s) {
                Some(t) => Ok(t),
                None => s
                    .parse::<DateTime<chrono::FixedOffset>>()
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(E::custom),
            }
        }
    }
    d.deserialize_str(Visitor)
}

/// Hourly means, as the trainer's extract computes them from PostgreSQL.
pub fn hourly(readings: &[InputReading]) -> Series {
    let mut acc: BTreeMap<DateTime<Utc>, [(f64, u32); 3]> = BTreeMap::new();
    for r in readings {
        let hour = r
            .timestamp
            .duration_trunc(Duration::hours(1))
            .unwrap_or(r.timestamp);
        let a = acc.entry(hour).or_default();
        for (i, v) in [r.pm2_5, r.pm10, r.no2].into_iter().enumerate() {
            if let Some(v) = v {
                a[i].0 += v;
                a[i].1 += 1;
            }
        }
    }
    let mean = |(s, n): (f64, u32)| (n > 0).then(|| s / f64::from(n));
    acc.into_iter()
        .map(|(h, a)| {
            (
                h,
                Hourly {
                    pm2_5: mean(a[0]),
                    pm10: mean(a[1]),
                    no2: mean(a[2]),
                },
            )
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aqi {
    /// US AQI of the forecast concentration (PM2.5 sub-index, EPA 2024 breakpoints).
    pub aqi: u16,
    pub category: String,
}

/// A prediction interval of PM2.5 (ug/m3) meant to hold the value `coverage` of the time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bounds {
    pub lower: f64,
    pub upper: f64,
    pub coverage: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// The hour forecast (start of the hour, UTC).
    pub forecast_for: DateTime<Utc>,
    /// The last hour of data the forecast is made from.
    pub based_on_hour: DateTime<Utc>,
    pub pm2_5: f64,
    /// Absent when the model was trained without intervals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Bounds>,
    pub us_aqi: Option<Aqi>,
}

/// The forecast of one horizon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ahead {
    pub hours: u32,
    #[serde(flatten)]
    pub forecast: Forecast,
    /// Interpolated between the two nearest horizons with a model of their own.
    pub interpolated: bool,
}

/// The last hour of `series`, which forecasts start from.
fn last_hour(series: &Series) -> Result<DateTime<Utc>, Missing> {
    series
        .last_key_value()
        .map(|(t, _)| *t)
        .ok_or_else(|| Missing {
            what: "any reading".into(),
        })
}

/// The next hour's forecast, and the forecast of each of `hours` ahead (each in
/// `1..=anchors.max_hours()`, checked by the caller; another is skipped), from the last hour
/// of `series`. Each trained horizon predicts once, however many hours it serves.
pub fn forecast(
    spec: &FeatureSpec,
    anchors: &Anchors,
    series: &Series,
    nb: &Neighbours,
    hours: &[u32],
) -> Result<(Forecast, Vec<Ahead>), Missing> {
    let t = last_hour(series)?;
    let x = spec.features(series, t, nb)?;
    // `pm2_5_lag0`, which the features need: the level the intervals scale with.
    let last = x[0];
    // Each trained horizon's forecast once computed; NaN before (a forecast is at least 0).
    let mut values = vec![f64::NAN; anchors.anchors.len()];
    values[0] = anchors.value(0, &x);
    let next = at(anchors, t, 1, values[0], last);
    let mut out = Vec::with_capacity(hours.len());
    for &h in hours {
        let Some(plan) = anchors.plan(h) else {
            continue;
        };
        for a in plan.uses() {
            if values[a].is_nan() {
                let x = spec.features_ahead(series, t, anchors.anchors[a].hours, nb)?;
                values[a] = anchors.value(a, &x);
            }
        }
        out.push(Ahead {
            hours: h,
            forecast: at(anchors, t, h, plan.value(&values), last),
            interpolated: matches!(plan, Plan::Between { .. }),
        });
    }
    Ok((next, out))
}

/// The forecast of `value` for `hours` after `t`, with that hour's interval and AQI.
fn at(anchors: &Anchors, t: DateTime<Utc>, hours: u32, value: f64, last: f64) -> Forecast {
    let us_aqi = sub_index(Pollutant::Pm25, value).map(|aqi| Aqi {
        aqi,
        category: AqiCategory::from_aqi(aqi).as_str().to_owned(),
    });
    Forecast {
        forecast_for: t + Duration::hours(i64::from(hours)),
        based_on_hour: t,
        pm2_5: value,
        interval: anchors.interval(hours).map(|iv| {
            let (lower, upper) = iv.bounds(value, last);
            Bounds {
                lower,
                upper,
                coverage: iv.coverage,
            }
        }),
        us_aqi,
    }
}

#[cfg(test)]
mod tests {
    use airq_model::{Horizon, Interval, Model};

    use super::*;

    fn readings(hours: i64) -> Vec<InputReading> {
        let t0: DateTime<Utc> = "2024-01-15T00:00:00Z".parse().unwrap();
        (0..hours * 2)
            .map(|k| InputReading {
                timestamp: t0 + Duration::minutes(30 * k),
                pm2_5: Some(10.0 + k as f64),
                pm10: Some(20.0),
                no2: None.or(Some(5.0)),
            })
            .collect()
    }

    #[test]
    fn reads_timestamps_as_chrono_does() {
        for text in [
            "2024-01-15T14:30:00Z",
            "2024-01-15T14:30:00.25+02:00",
            "2024-01-15 14:30:00Z",
            "2024-01-15T14:30:00+0200",
            "2024-01-15T14:30:00",
            "yesterday",
        ] {
            let json = format!(r#"{{"timestamp":"{text}","pm2_5":1}}"#);
            let ours = serde_json::from_str::<InputReading>(&json).map(|r| r.timestamp);
            let chrono = serde_json::from_str::<DateTime<Utc>>(&format!("{text:?}"));
            match (ours, chrono) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string()[..20], b.to_string()[..20], "{text}"),
                (a, b) => panic!("{text}: {a:?} against chrono's {b:?}"),
            }
        }
    }

    #[test]
    fn hourly_means_match_the_extract() {
        let s = hourly(&readings(2));
        assert_eq!(s.len(), 2);
        assert_eq!(s.values().next().unwrap().pm2_5, Some(10.5));
    }

    #[test]
    fn persistence_forecasts_the_last_hour_with_its_aqi() {
        let (spec, p) = (
            FeatureSpec::default(),
            Anchors::new(&Model::Persistence, &[], &[]),
        );
        let (f, _) = forecast(&spec, &p, &hourly(&readings(30)), &Neighbours::none(), &[]).unwrap();
        assert_eq!(f.pm2_5, 68.5, "mean of the last hour's two readings");
        assert_eq!(
            f.forecast_for,
            "2024-01-16T06:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let aqi = f.us_aqi.unwrap();
        assert_eq!(aqi.category, "unhealthy");
        let short =
            forecast(&spec, &p, &hourly(&readings(3)), &Neighbours::none(), &[]).unwrap_err();
        assert!(short.what.starts_with("pm2_5 at"), "{}", short.what);
    }

    #[test]
    fn longer_horizons_use_their_models_and_interpolate_between_them() {
        let spec = FeatureSpec::default();
        let constant = |v: f64| Model::Linear {
            mean: vec![0.0],
            scale: vec![1.0],
            weights: vec![0.0],
            intercept: v,
        };
        // Wider with each hour ahead.
        let intervals: Vec<Interval> = (1..=5)
            .map(|h| Interval {
                coverage: 0.9,
                lower: -0.1 * f64::from(h),
                upper: 0.1 * f64::from(h),
                offset: 10.0,
                calibration_rows: 100,
            })
            .collect();
        let longer = [Horizon {
            hours: 5,
            model: constant(20.0),
        }];
        let anchors = Anchors::new(&Model::Persistence, &longer, &intervals);
        let series = hourly(&readings(30));
        let (next, out) =
            forecast(&spec, &anchors, &series, &Neighbours::none(), &[1, 3, 5, 9]).unwrap();
        let hours: Vec<u32> = out.iter().map(|a| a.hours).collect();
        assert_eq!(hours, [1, 3, 5], "9 is past the longest");
        let last = 68.5;
        assert_eq!(out[0].forecast, next, "1 h asked is the next hour");
        assert_eq!(out[0].forecast.pm2_5, last);
        assert_eq!(out[2].forecast.pm2_5, 20.0);
        assert!(out[1].interpolated && !out[2].interpolated);
        assert_eq!(out[1].forecast.pm2_5, last + (20.0 - last) * 0.5);
        let scale = last + 10.0;
        let b = out[2].forecast.interval.unwrap();
        assert_eq!(
            (b.lower, b.upper, b.coverage),
            (0.0, 20.0 + 0.5 * scale, 0.9),
            "5 h: its own interval, never below 0"
        );
        let b = out[1].forecast.interval.unwrap();
        assert_eq!(
            b.upper,
            out[1].forecast.pm2_5 + 0.1 * 3.0 * scale,
            "3 h: its own"
        );
        assert_eq!(
            out[1].forecast.forecast_for,
            out[0].forecast.based_on_hour + Duration::hours(3)
        );
    }
}
