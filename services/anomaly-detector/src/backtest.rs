//! `backtest`: the production cleaning and detection over a file of raw readings.
//!
//! Input: JSON lines in the `raw_data` shape (validated as the cleaner validates them), or a
//! CSV with `timestamp,sensor_id,lat,lon,pm2_5,pm10,no2` (empty cells are absent values),
//! many sensors, in time order. The readings go through the same `Cleaner` and `Detector`
//! as the services, one at a time, neighbours included. Output: one JSON line per alert (its
//! final state) and one per pollution episode.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use airq_detect::{AnomalyEvent, Detector, DetectorConfig, PollutionEpisode};
use airq_domain::qc::QcConfig;
use airq_domain::sensor::Cleaner;
use airq_domain::validate::{ValidationConfig, decode};
use airq_domain::{Location, Measurements, Reading};
use anyhow::Context;
use chrono::Utc;

use crate::score::parse_timestamp;

/// What a backtest found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every alert's final state, by id.
    pub alerts: Vec<AnomalyEvent>,
    pub episodes: Vec<PollutionEpisode>,
    pub readings: usize,
    /// Temporal alerts the neighbours explained (not raised).
    pub explained: usize,
}

/// Cleans and judges `readings` in order.
pub fn run(
    readings: impl IntoIterator<Item = Reading>,
    qc: QcConfig,
    detect: DetectorConfig,
) -> Outcome {
    let mut cleaner = Cleaner::new(qc);
    let mut det = Detector::new(detect);
    let mut alerts: BTreeMap<String, AnomalyEvent> = BTreeMap::new();
    let mut episodes: BTreeMap<String, PollutionEpisode> = BTreeMap::new();
    let mut out = Outcome::default();
    for r in readings {
        out.readings += 1;
        let step = det.step(&cleaner.process(r));
        out.explained += step.explained;
        for e in step.events {
            alerts.insert(e.id.clone(), e);
        }
        if let Some(e) = step.episode {
            episodes.insert(e.id.clone(), e);
        }
    }
    for e in det.flush() {
        alerts.insert(e.id.clone(), e);
    }
    if let Some(e) = det.flush_episode() {
        episodes.insert(e.id.clone(), e);
    }
    out.alerts = alerts.into_values().collect();
    out.episodes = episodes.into_values().collect();
    out
}

/// A line or row that is not a reading, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// 1-based line (JSON lines) or data row (CSV).
    pub line: usize,
    pub reason: String,
}

/// Reads a backtest input: CSV when the file name ends in `.csv`, JSON lines otherwise.
pub fn read(path: &Path) -> anyhow::Result<(Vec<Reading>, Vec<Rejected>)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        read_csv(file)
    } else {
        read_jsonl(std::io::BufReader::new(file))
    }
}

/// JSON lines in the `raw_data` shape; blank lines are skipped.
pub fn read_jsonl(input: impl BufRead) -> anyhow::Result<(Vec<Reading>, Vec<Rejected>)> {
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    let (now, v) = (Utc::now(), ValidationConfig::default());
    for (i, line) in input.lines().enumerate() {
        let line = line.context("reading the input")?;
        if line.trim().is_empty() {
            continue;
        }
        match decode(line.as_bytes(), now, &v) {
            Ok(r) => ok.push(r),
            Err(e) => bad.push(Rejected {
                line: i + 1,
                reason: e.to_string(),
            }),
        }
    }
    Ok((ok, bad))
}

const CSV_COLUMNS: [&str; 7] = [
    "timestamp",
    "sensor_id",
    "lat",
    "lon",
    "pm2_5",
    "pm10",
    "no2",
];

/// A CSV with the columns `timestamp,sensor_id,lat,lon,pm2_5,pm10,no2` (any order).
pub fn read_csv(input: impl std::io::Read) -> anyhow::Result<(Vec<Reading>, Vec<Rejected>)> {
    let mut rdr = csv::Reader::from_reader(input);
    let headers = rdr.headers().context("reading the CSV header")?.clone();
    let mut col = [0usize; 7];
    for (k, name) in CSV_COLUMNS.iter().enumerate() {
        col[k] = headers
            .iter()
            .position(|h| h.trim() == *name)
            .with_context(|| {
                format!(
                    "the CSV has no `{name}` column (needs {})",
                    CSV_COLUMNS.join(",")
                )
            })?;
    }
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for (i, row) in rdr.records().enumerate() {
        let parsed = row
            .map_err(|e| e.to_string())
            .and_then(|row| csv_reading(&row, &col));
        match parsed {
            Ok(r) => ok.push(r),
            Err(reason) => bad.push(Rejected {
                line: i + 1,
                reason,
            }),
        }
    }
    Ok((ok, bad))
}

fn csv_reading(row: &csv::StringRecord, col: &[usize; 7]) -> Result<Reading, String> {
    let cell = |k: usize| row.get(col[k]).unwrap_or("").trim();
    let number = |k: usize| -> Result<Option<f64>, String> {
        match cell(k) {
            "" => Ok(None),
            s => s
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(|| format!("{} is not a number: {s:?}", CSV_COLUMNS[k])),
        }
    };
    let timestamp =
        parse_timestamp(cell(0)).ok_or_else(|| format!("bad timestamp {:?}", cell(0)))?;
    let sensor_id = match cell(1) {
        "" => return Err("empty sensor_id".into()),
        s => s.to_owned(),
    };
    let (lat, lon) = (number(2)?, number(3)?);
    let (Some(lat), Some(lon)) = (lat, lon) else {
        return Err("lat and lon are required".into());
    };
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(format!("location {lat},{lon} is off the globe"));
    }
    let measurements = Measurements {
        pm2_5: number(4)?,
        pm10: number(5)?,
        no2: number(6)?,
    };
    if measurements == Measurements::default() {
        return Err("no pollutant value".into());
    }
    Ok(Reading {
        sensor_id,
        timestamp,
        location: Location { lat, lon },
        measurements,
    })
}

/// One JSON line per alert, then one per pollution episode.
pub fn write_jsonl(mut out: impl Write, outcome: &Outcome) -> std::io::Result<()> {
    for a in &outcome.alerts {
        let line = serde_json::json!({
            "type": "alert",
            "id": a.id,
            "sensor_id": a.sensor_id,
            "pollutant": a.pollutant,
            "kind": a.kind,
            "start": a.start.to_rfc3339(),
            "end": a.end.to_rfc3339(),
            "points": a.points,
            "score": a.score,
            "severity": a.severity,
            "observed": a.observed,
            "expected": a.expected,
            "explanation": a.explanation,
        });
        writeln!(out, "{line}")?;
    }
    for e in &outcome.episodes {
        let mut line = serde_json::to_value(e).unwrap_or_default();
        if let Some(obj) = line.as_object_mut() {
            obj.insert("type".into(), "pollution_episode".into());
        }
        writeln!(out, "{line}")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_seed_shape_and_says_why_a_line_is_rejected() {
        let input = concat!(
            r#"{"sensor_id":"CAP_001","timestamp":"2024-01-15T14:30:00Z","location":{"lat":48.8566,"lon":2.3522},"measurements":{"pm2_5":12.5,"pm10":25.3,"no2":40.2}}"#,
            "\n\n",
            r#"{"sensor_id":"CAP_001","timestamp":"yesterday"}"#,
            "\n"
        );
        let (ok, bad) = read_jsonl(input.as_bytes()).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].measurements.pm10, Some(25.3));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 3);
        assert!(!bad[0].reason.is_empty());
    }

    #[test]
    fn reads_the_csv_shape_with_empty_cells_and_names_a_missing_column() {
        let input = "timestamp,sensor_id,lat,lon,pm2_5,pm10,no2\n\
                     2024-01-15T14:00:00Z,a,48.85,2.35,12.5,,40\n\
                     2024-01-15T15:00:00Z,a,48.85,2.35,,,\n\
                     2024-01-15 16:00:00,a,48.85,2.35,x,1,2\n";
        let (ok, bad) = read_csv(input.as_bytes()).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].measurements.pm10, None);
        assert_eq!(
            bad.iter().map(|b| b.reason.as_str()).collect::<Vec<_>>(),
            ["no pollutant value", "pm2_5 is not a number: \"x\""]
        );
        let err = read_csv("timestamp,sensor_id,lat\n".as_bytes()).unwrap_err();
        assert!(err.to_string().contains("no `lon` column"), "{err}");
    }
}
