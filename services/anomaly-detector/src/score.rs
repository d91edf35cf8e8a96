//! `score`: the streaming detectors over any univariate time series from a CSV file, for
//! backtesting on one's own data. Each row gets:
//! - the robust z-score against the series' hour-of-day baseline;
//! - a continuous anomaly score in [0, 1) ([`anomaly_score`]): 0.5 where the strongest
//!   detector is exactly at its threshold, towards 1 far beyond it, so a user can pick a
//!   threshold of their own;
//! - a flag on the row where an event *starts*: a detector (robust z, EWMA shift,
//!   Page-Hinkley drift, silence) that fires there and did not on the row before. A series
//!   that sits at a new level is one event at its onset, not a flag on every row that
//!   follows; its rows keep their score.

use std::io::{Read, Write};

use airq_detect::{AnomalyKind, Detector, DetectorConfig};
use airq_domain::processed::{Metrics, PROCESSED_SCHEMA_VERSION};
use airq_domain::{Location, Measurements, Pollutant, ProcessedReading};
use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDateTime, Utc};

/// Which columns to read.
#[derive(Debug, Clone)]
pub struct Columns {
    pub value: String,
    /// Without it, rows are `interval_secs` apart from 2000-01-01T00:00:00Z.
    pub timestamp: Option<String>,
    pub interval_secs: i64,
}

/// Counts of a scoring run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub rows: usize,
    pub missing: usize,
    pub flagged: usize,
}

/// A detector statistic over its threshold (`strength`, 1 = at the threshold) as a score
/// in [0, 1): `s^2 / (1 + s^2)`, 0.5 at the threshold, 0.8 at twice it, 0.9 at three times.
pub fn anomaly_score(strength: f64) -> f64 {
    let s2 = strength * strength;
    s2 / (1.0 + s2)
}

/// Parses RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` / `YYYY-MM-DDTHH:MM[:SS]` taken as UTC.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .map(|t| t.and_utc())
}

/// Scores every row of `input` and writes `timestamp,value,robust_z,score,flag,detectors`
/// (`detectors`: the events that start on the row).
/// An empty or non-numeric value (`NA`) is written with empty score and flag 0.
pub fn score_csv(
    input: impl Read,
    output: impl Write,
    columns: &Columns,
    cfg: DetectorConfig,
) -> anyhow::Result<Summary> {
    let mut rdr = csv::Reader::from_reader(input);
    let headers = rdr.headers().context("reading the CSV header")?.clone();
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .with_context(|| format!("no column {name:?} in the header {headers:?}"))
    };
    let value_at = find(&columns.value)?;
    let ts_at = columns.timestamp.as_deref().map(find).transpose()?;
    let start: DateTime<Utc> = DateTime::UNIX_EPOCH + chrono::Duration::days(10_957);
    let mut det = Detector::new(cfg);
    let mut out = csv::Writer::from_writer(output);
    out.write_record([
        "timestamp",
        "value",
        "robust_z",
        "score",
        "flag",
        "detectors",
    ])?;
    // The detectors firing on the previous scored row: a run of rows is one event.
    let mut ongoing: Vec<AnomalyKind> = Vec::new();
    let mut summary = Summary::default();
    for (i, row) in rdr.records().enumerate() {
        let row = row.with_context(|| format!("reading CSV row {}", i + 2))?;
        let ts = match ts_at {
            Some(at) => {
                let raw = row.get(at).unwrap_or_default();
                match parse_timestamp(raw) {
                    Some(t) => t,
                    None => bail!("row {}: timestamp {raw:?} is not a date-time", i + 2),
                }
            }
            None => start + chrono::Duration::seconds(columns.interval_secs * i as i64),
        };
        summary.rows += 1;
        let value = row
            .get(value_at)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite());
        let Some(value) = value else {
            summary.missing += 1;
            out.write_record([
                ts.to_rfc3339(),
                String::new(),
                String::new(),
                String::new(),
                "0".into(),
                String::new(),
            ])?;
            continue;
        };
        let step = det.step(&series_point(ts, value));
        let z = step.robust_z[Pollutant::Pm25.index()];
        let now: Vec<AnomalyKind> = step.kinds.iter().map(|(_, k)| *k).collect();
        let mut kinds: Vec<&str> = now
            .iter()
            .filter(|k| !ongoing.contains(k))
            .map(|k| k.as_str())
            .collect();
        ongoing = now;
        kinds.extend(
            step.events
                .iter()
                .filter(|e| e.kind == AnomalyKind::Silence)
                .map(|e| e.kind.as_str()),
        );
        kinds.sort_unstable();
        kinds.dedup();
        let score = step.strength[Pollutant::Pm25.index()].map(anomaly_score);
        summary.flagged += usize::from(!kinds.is_empty());
        out.write_record([
            ts.to_rfc3339(),
            value.to_string(),
            z.map(|z| format!("{z:.3}")).unwrap_or_default(),
            score.map(|s| format!("{s:.4}")).unwrap_or_default(),
            u8::from(!kinds.is_empty()).to_string(),
            kinds.join(";"),
        ])?;
    }
    out.flush()?;
    Ok(summary)
}

/// One value of the series as a reading of one sensor (the detectors are per pollutant;
/// the series takes the PM2.5 slot, with no quality flag: rules do not apply to it).
fn series_point(ts: DateTime<Utc>, value: f64) -> ProcessedReading {
    let m = Measurements {
        pm2_5: Some(value),
        pm10: None,
        no2: None,
    };
    ProcessedReading {
        schema_version: PROCESSED_SCHEMA_VERSION,
        sensor_id: "series".into(),
        timestamp: ts,
        location: Location { lat: 0.0, lon: 0.0 },
        raw: m,
        clean: m,
        flags: Default::default(),
        flag_details: Vec::new(),
        metrics: Metrics::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(hours: usize, spike_at: usize) -> String {
        let mut s = String::from("when,level\n");
        for h in 0..hours {
            let t = start() + chrono::Duration::hours(h as i64);
            let daily = 10.0 * (std::f64::consts::TAU * (h % 24) as f64 / 24.0).sin();
            let v = if h == spike_at {
                400.0
            } else {
                50.0 + daily + (h * 7 % 5) as f64
            };
            s.push_str(&format!("{},{v}\n", t.format("%Y-%m-%d %H:%M:%S")));
        }
        s.push_str(&format!(
            "{},NA\n",
            (start() + chrono::Duration::hours(hours as i64)).to_rfc3339()
        ));
        s
    }

    fn start() -> DateTime<Utc> {
        "2024-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn flags_the_spike_and_only_it_with_its_robust_z() {
        let input = series(24 * 5, 24 * 4 + 3);
        let mut out = Vec::new();
        let cols = Columns {
            value: "level".into(),
            timestamp: Some("when".into()),
            interval_secs: 3600,
        };
        let summary =
            score_csv(input.as_bytes(), &mut out, &cols, DetectorConfig::default()).unwrap();
        assert_eq!(
            summary,
            Summary {
                rows: 121,
                missing: 1,
                flagged: 1
            }
        );
        let text = String::from_utf8(out).unwrap();
        let flagged: Vec<&str> = text.lines().filter(|l| l.contains(",1,")).collect();
        assert_eq!(flagged.len(), 1, "{text}");
        assert!(
            flagged[0].starts_with("2024-01-05T03:00:00+00:00,400,"),
            "{}",
            flagged[0]
        );
        assert!(flagged[0].ends_with("outlier"), "{}", flagged[0]);
    }

    #[test]
    fn a_new_level_is_one_event_at_its_onset_and_the_score_grows_with_the_deviation() {
        // Five quiet days at 50, then the series sits at 150 for five days.
        let mut input = String::from("when,level\n");
        for h in 0..240_i64 {
            let t = start() + chrono::Duration::hours(h);
            let v = if h < 120 { 50.0 } else { 150.0 } + (h * 7 % 5) as f64;
            input.push_str(&format!("{},{v}\n", t.to_rfc3339()));
        }
        let cols = Columns {
            value: "level".into(),
            timestamp: Some("when".into()),
            interval_secs: 3600,
        };
        let mut out = Vec::new();
        score_csv(input.as_bytes(), &mut out, &cols, DetectorConfig::default()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect())
            .collect();
        let score = |r: &Vec<&str>| r[3].parse::<f64>().ok();
        for r in &rows {
            assert!(score(r).is_none_or(|s| (0.0..1.0).contains(&s)), "{r:?}");
        }
        for kind in ["outlier", "shift", "drift"] {
            let onsets = rows.iter().filter(|r| r[5].contains(kind)).count();
            assert!(onsets <= 1, "{kind} reported {onsets} times:\n{text}");
        }
        let flagged_after: Vec<_> = rows[120..].iter().filter(|r| r[4] == "1").collect();
        assert!(
            !flagged_after.is_empty() && flagged_after.len() <= 3,
            "the new level is an event at its onset: {flagged_after:?}"
        );
        let quiet: Vec<f64> = rows[60..120].iter().filter_map(score).collect();
        let quiet_max = quiet.iter().copied().fold(0.0, f64::max);
        let at_step = score(&rows[120]).unwrap();
        assert!(quiet_max < 0.2, "quiet rows score low: {quiet_max}");
        assert!(
            at_step >= 0.5,
            "the step scores at least its threshold: {at_step}"
        );
    }

    #[test]
    fn the_score_is_half_at_the_threshold_and_rises_towards_one() {
        assert_eq!(anomaly_score(0.0), 0.0);
        assert!((anomaly_score(1.0) - 0.5).abs() < 1e-12);
        assert!((anomaly_score(3.0) - 0.9).abs() < 1e-12);
        assert!(anomaly_score(100.0) < 1.0 && anomaly_score(100.0) > anomaly_score(3.0));
    }

    #[test]
    fn says_which_column_is_missing() {
        let cols = Columns {
            value: "pm".into(),
            timestamp: None,
            interval_secs: 60,
        };
        let err = score_csv(
            "a,b\n1,2\n".as_bytes(),
            Vec::new(),
            &cols,
            DetectorConfig::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no column \"pm\""), "{err}");
    }

    #[test]
    fn parses_the_usual_timestamp_shapes() {
        let t = start();
        assert_eq!(parse_timestamp("2024-01-01T00:00:00Z"), Some(t));
        assert_eq!(parse_timestamp("2024-01-01T01:00:00+01:00"), Some(t));
        assert_eq!(parse_timestamp("2024-01-01 00:00"), Some(t));
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
