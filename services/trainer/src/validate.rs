//! The data-quality gate: a snapshot passes only if every check does.

use std::collections::BTreeMap;

use airq_features::Series;
use serde::Serialize;

use crate::config::ValidateSettings;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// The measured value (rows, worst completeness, values out of range, duplicates).
    pub value: f64,
    pub detail: String,
}

/// Runs every check. `duplicates` is the number of repeated (sensor, hour) keys seen while
/// reading the snapshot (a map cannot hold them).
pub fn checks(
    data: &BTreeMap<String, Series>,
    duplicates: usize,
    cfg: &ValidateSettings,
) -> Vec<Check> {
    let rows: usize = data.values().map(BTreeMap::len).sum();
    let mut out = vec![Check {
        name: "row_count".into(),
        passed: rows >= cfg.min_rows,
        value: rows as f64,
        detail: format!("{rows} sensor-hours (at least {} needed)", cfg.min_rows),
    }];
    // Completeness: hours with a PM2.5 value over the hours of the whole snapshot span.
    let first = data.values().filter_map(|s| s.keys().next()).min();
    let last = data.values().filter_map(|s| s.keys().next_back()).max();
    let span_hours = match (first, last) {
        (Some(a), Some(b)) => ((*b - *a).num_hours() + 1).max(1) as f64,
        _ => 1.0,
    };
    let mut worst: Option<(String, f64)> = None;
    let mut incomplete = Vec::new();
    for (sensor, s) in data {
        let c = s.values().filter(|h| h.pm2_5.is_some()).count() as f64 / span_hours;
        if c < cfg.min_completeness {
            incomplete.push(format!("{sensor} {:.0} %", 100.0 * c));
        }
        if worst.as_ref().is_none_or(|(_, w)| c < *w) {
            worst = Some((sensor.clone(), c));
        }
    }
    let (worst_sensor, worst_c) = worst.unwrap_or_default();
    out.push(Check {
        name: "completeness".into(),
        passed: incomplete.is_empty() && !data.is_empty(),
        value: worst_c,
        detail: if incomplete.is_empty() {
            format!(
                "every sensor >= {:.0} % (lowest {worst_sensor} {:.1} %)",
                100.0 * cfg.min_completeness,
                100.0 * worst_c
            )
        } else {
            format!(
                "below {:.0} %: {}",
                100.0 * cfg.min_completeness,
                incomplete.join(", ")
            )
        },
    });
    let mut bad = 0usize;
    for s in data.values() {
        for h in s.values() {
            let out_of = |v: Option<f64>, max: f64| v.is_some_and(|v| !(0.0..=max).contains(&v));
            bad += usize::from(
                out_of(h.pm2_5, cfg.max_pm2_5)
                    || out_of(h.pm10, cfg.max_pm10)
                    || out_of(h.no2, cfg.max_no2),
            );
        }
    }
    out.push(Check {
        name: "ranges".into(),
        passed: bad == 0,
        value: bad as f64,
        detail: format!("{bad} sensor-hours with a value outside [0, max]"),
    });
    out.push(Check {
        name: "duplicate_keys".into(),
        passed: duplicates == 0,
        value: duplicates as f64,
        detail: format!("{duplicates} repeated (sensor_id, hour) keys"),
    });
    out
}

/// Repeated (sensor, hour) keys in a snapshot CSV.
pub fn duplicate_keys(csv: &[u8]) -> usize {
    let mut seen = std::collections::HashSet::new();
    let mut r = csv::Reader::from_reader(csv);
    r.records()
        .flatten()
        .filter(|rec| {
            !seen.insert((
                rec.get(0).unwrap_or_default().to_owned(),
                rec.get(1).unwrap_or_default().to_owned(),
            ))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use airq_features::Hourly;
    use chrono::{DateTime, Duration, Utc};

    use super::*;

    fn cfg() -> ValidateSettings {
        ValidateSettings {
            min_rows: 10,
            min_completeness: 0.75,
            max_pm2_5: 1000.0,
            max_pm10: 2000.0,
            max_no2: 2000.0,
        }
    }

    fn sensor(hours: i64, every: i64) -> Series {
        let t0: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
        (0..hours)
            .filter(|h| h % every == 0)
            .map(|h| {
                (
                    t0 + Duration::hours(h),
                    Hourly {
                        pm2_5: Some(10.0),
                        pm10: Some(20.0),
                        no2: Some(30.0),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_complete_clean_snapshot_passes() {
        let data: BTreeMap<String, Series> = [("a".to_owned(), sensor(48, 1))].into();
        assert!(checks(&data, 0, &cfg()).iter().all(|c| c.passed));
    }

    #[test]
    fn each_failure_is_named_with_its_reason() {
        let mut data: BTreeMap<String, Series> = [
            ("a".to_owned(), sensor(48, 1)),
            ("b".to_owned(), sensor(48, 2)),
        ]
        .into();
        data.get_mut("a")
            .unwrap()
            .values_mut()
            .next()
            .unwrap()
            .pm2_5 = Some(-5.0);
        let c = checks(&data, 3, &cfg());
        let failed: Vec<&str> = c
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failed, ["completeness", "ranges", "duplicate_keys"]);
        assert_eq!(c[1].detail, "below 75 %: b 50 %");
        let tiny: BTreeMap<String, Series> = [("a".to_owned(), sensor(5, 1))].into();
        assert!(!checks(&tiny, 0, &cfg())[0].passed);
    }

    #[test]
    fn counts_repeated_keys() {
        let csv = b"sensor_id,hour,pm2_5,pm10,no2\na,h1,1,,\na,h1,2,,\nb,h1,1,,\n";
        assert_eq!(duplicate_keys(csv), 1);
    }
}
