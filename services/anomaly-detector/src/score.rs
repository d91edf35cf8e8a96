//! `score`: the streaming detectors over any univariate time series from a CSV file, for
//! backtesting on one's own data. Each row gets the robust z-score against the series'
//! hour-of-day baseline and a flag when any detector (robust z, EWMA, Page-Hinkley,
//! silence) fires on it.

use std::io::{Read, Write};

use airq_detect::{Detector, DetectorConfig};
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

/// Scores every row of `input` and writes `timestamp,value,robust_z,flag,detectors`.
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
    out.write_record(["timestamp", "value", "robust_z", "flag", "detectors"])?;
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
                "0".into(),
                String::new(),
            ])?;
            continue;
        };
        let step = det.step(&series_point(ts, value));
        let z = step.robust_z[Pollutant::Pm25.index()];
        let mut kinds: Vec<&str> = step.kinds.iter().map(|(_, k)| k.as_str()).collect();
        kinds.extend(
            step.events
                .iter()
                .filter(|e| e.kind == airq_detect::AnomalyKind::Silence)
                .map(|e| e.kind.as_str()),
        );
        kinds.sort_unstable();
        kinds.dedup();
        summary.flagged += usize::from(!kinds.is_empty());
        out.write_record([
            ts.to_rfc3339(),
            value.to_string(),
            z.map(|z| format!("{z:.3}")).unwrap_or_default(),
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
