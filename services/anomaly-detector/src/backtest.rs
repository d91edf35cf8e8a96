//! `backtest`: the production cleaning and detection over a file of raw readings.
//!
//! Input: JSON lines in the `raw_data` shape (validated as the cleaner validates them), or a
//! CSV with `timestamp,sensor_id,lat,lon,pm2_5,pm10,no2` (empty cells are absent values),
//! many sensors, in time order. The readings go through the same `Cleaner` and `Detector`
//! as the services, neighbours included: each reading is cleaned, held until its
//! timestamp's tick closes, and judged with the tick (as the service does). Output: one
//! JSON line per alert (its final state) and one per pollution episode.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use airq_detect::{AnomalyEvent, Detector, DetectorConfig, PollutionEpisode, Tick, Ticks};
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
    let mut bt = Backtest::new(qc, detect);
    readings.into_iter().for_each(|r| bt.push(r));
    bt.finish()
}

/// The production cleaning and detection over readings pushed one at a time: each is
/// cleaned at once, then judged when its tick closes ([`airq_detect::ticks`]), as the
/// streaming service judges it.
pub struct Backtest {
    cleaner: Cleaner,
    det: Detector,
    ticks: Ticks<()>,
    /// Every event in the order it was raised (as the service publishes them).
    pub events: Vec<AnomalyEvent>,
    /// Every pollution episode opened or closed, in order.
    pub episodes: Vec<PollutionEpisode>,
    readings: usize,
    explained: usize,
}

impl Backtest {
    pub fn new(qc: QcConfig, detect: DetectorConfig) -> Self {
        Self {
            cleaner: Cleaner::new(qc),
            ticks: Ticks::sorted(&detect.spatial),
            det: Detector::new(detect),
            events: Vec::new(),
            episodes: Vec::new(),
            readings: 0,
            explained: 0,
        }
    }

    pub fn push(&mut self, r: Reading) {
        self.readings += 1;
        self.ticks.push(self.cleaner.process(r), (), 0);
        let ready = self.ticks.ready();
        self.judge(ready);
    }

    /// Judges the ticks still open, as the service does once they waited long enough.
    pub fn close_ticks(&mut self) {
        let rest = self.ticks.drain();
        self.judge(rest);
    }

    fn judge(&mut self, ticks: Vec<Tick<()>>) {
        for tick in ticks {
            for step in self.det.judge_tick(tick.readings.iter().map(|(r, _)| r)) {
                self.explained += step.explained;
                self.events.extend(step.events);
                self.episodes.extend(step.episode);
            }
        }
    }

    /// Closes every tick, alert and episode: each alert's and episode's final state.
    pub fn finish(mut self) -> Outcome {
        self.close_ticks();
        self.events.extend(self.det.flush());
        self.episodes.extend(self.det.flush_episodes());
        let alerts: BTreeMap<String, AnomalyEvent> =
            self.events.into_iter().map(|e| (e.id.clone(), e)).collect();
        let episodes: BTreeMap<String, PollutionEpisode> = self
            .episodes
            .into_iter()
            .map(|e| (e.id.clone(), e))
            .collect();
        Outcome {
            alerts: alerts.into_values().collect(),
            episodes: episodes.into_values().collect(),
            readings: self.readings,
            explained: self.explained,
        }
    }
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

/// An alert's line: its fields in this order whatever serde_json's map order (a workspace
/// build turns on `preserve_order`), so the output is the same byte for byte in every build.
#[derive(serde::Serialize)]
struct AlertLine<'a> {
    #[serde(rename = "type")]
    line: &'static str,
    id: &'a str,
    sensor_id: &'a str,
    pollutant: Option<airq_domain::Pollutant>,
    kind: airq_detect::AnomalyKind,
    start: String,
    end: String,
    points: u32,
    score: f64,
    severity: airq_detect::Severity,
    observed: Option<f64>,
    expected: Option<f64>,
    explanation: &'a str,
}

/// A pollution episode's line: `type`, then the episode's own fields.
#[derive(serde::Serialize)]
struct EpisodeLine<'a> {
    #[serde(rename = "type")]
    line: &'static str,
    #[serde(flatten)]
    episode: &'a PollutionEpisode,
}

/// One JSON line per alert, then one per pollution episode.
pub fn write_jsonl(mut out: impl Write, outcome: &Outcome) -> std::io::Result<()> {
    for a in &outcome.alerts {
        let line = AlertLine {
            line: "alert",
            id: &a.id,
            sensor_id: &a.sensor_id,
            pollutant: a.pollutant,
            kind: a.kind,
            start: a.start.to_rfc3339(),
            end: a.end.to_rfc3339(),
            points: a.points,
            score: a.score,
            severity: a.severity,
            observed: a.observed,
            expected: a.expected,
            explanation: &a.explanation,
        };
        serde_json::to_writer(&mut out, &line)?;
        writeln!(out)?;
    }
    for e in &outcome.episodes {
        let line = EpisodeLine {
            line: "pollution_episode",
            episode: e,
        };
        serde_json::to_writer(&mut out, &line)?;
        writeln!(out)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_line_has_its_fields_in_one_order_in_every_build() {
        let t: chrono::DateTime<Utc> = "2024-01-15T14:00:00Z".parse().unwrap();
        let alert = AnomalyEvent {
            schema_version: 1,
            id: "00000000000000ab".into(),
            sensor_id: "s1".into(),
            pollutant: Some(airq_domain::Pollutant::Pm25),
            kind: airq_detect::AnomalyKind::Outlier,
            detector: "zscore".into(),
            status: airq_detect::Status::Open,
            start: t,
            end: t,
            points: 1,
            score: 12.5,
            severity: airq_detect::Severity::Warning,
            observed: Some(80.0),
            expected: None,
            explanation: "why".into(),
        };
        let outcome = Outcome {
            alerts: vec![alert],
            episodes: Vec::new(),
            readings: 1,
            explained: 0,
        };
        let mut out = Vec::new();
        write_jsonl(&mut out, &outcome).unwrap();
        // Not serde_json's map order: that one depends on the features of the build.
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"{"type":"alert","id":"00000000000000ab","sensor_id":"s1","pollutant":"pm2_5","#,
                r#""kind":"outlier","start":"2024-01-15T14:00:00+00:00","end":"2024-01-15T14:00:00+00:00","#,
                r#""points":1,"score":12.5,"severity":"warning","observed":80.0,"expected":null,"#,
                r#""explanation":"why"}"#,
                "\n"
            )
        );
    }

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
