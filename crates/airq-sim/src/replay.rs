//! Replay of the Beijing Multi-Site Air-Quality Data (UCI #501, CC BY 4.0; Zhang et al.
//! 2017, doi:10.1098/rspa.2017.0457): 12 stations, hourly, 2013-03-01..2017-02-28.
//!
//! Times in the files are Beijing local time (UTC+8); `NA` is a missing value. Every
//! row becomes one reading, in time order across stations; a row with all three
//! pollutants missing is still sent (the cleaner dead-letters it as `no_measurements`).

use std::collections::HashMap;
use std::path::Path;

use airq_domain::{Location, Measurements, Reading};
use anyhow::{Context, bail};
use chrono::{FixedOffset, NaiveDate, TimeZone, Utc};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct StationRow {
    station: String,
    sensor_id: String,
    lat: f64,
    lon: f64,
}

#[derive(Debug, Deserialize)]
struct DataRow {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    #[serde(rename = "PM2.5")]
    pm2_5: String,
    #[serde(rename = "PM10")]
    pm10: String,
    #[serde(rename = "NO2")]
    no2: String,
    station: String,
}

fn value(s: &str) -> anyhow::Result<Option<f64>> {
    if s == "NA" || s.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        s.parse().with_context(|| format!("not a number: {s:?}"))?,
    ))
}

/// Reads `stations.csv`: station name -> (sensor_id, location).
fn load_stations(dir: &Path) -> anyhow::Result<HashMap<String, (String, Location)>> {
    let path = dir.join("stations.csv");
    let mut rdr =
        csv::Reader::from_path(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = HashMap::new();
    for row in rdr.deserialize::<StationRow>() {
        let r = row.with_context(|| format!("reading {}", path.display()))?;
        out.insert(
            r.station,
            (
                r.sensor_id,
                Location {
                    lat: r.lat,
                    lon: r.lon,
                },
            ),
        );
    }
    Ok(out)
}

/// Loads every station file under `dir/raw` (or only `limit` rows in total, earliest
/// first), sorted by time then sensor.
pub fn load(dir: &Path, limit: Option<usize>) -> anyhow::Result<Vec<Reading>> {
    let stations = load_stations(dir)?;
    let beijing = FixedOffset::east_opt(8 * 3600).context("UTC+8 offset")?;
    let raw = dir.join("raw");
    let mut files: Vec<_> = std::fs::read_dir(&raw)
        .with_context(|| format!("listing {}", raw.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no CSV file in {}", raw.display());
    }
    let mut readings = Vec::new();
    for file in files {
        let mut rdr =
            csv::Reader::from_path(&file).with_context(|| format!("opening {}", file.display()))?;
        for (line, row) in rdr.deserialize::<DataRow>().enumerate() {
            let r = row.with_context(|| format!("{} row {}", file.display(), line + 2))?;
            let (sensor_id, location) = stations
                .get(&r.station)
                .with_context(|| format!("station {} not in stations.csv", r.station))?;
            let local = NaiveDate::from_ymd_opt(r.year, r.month, r.day)
                .and_then(|d| d.and_hms_opt(r.hour, 0, 0))
                .with_context(|| format!("{} row {}: bad date", file.display(), line + 2))?;
            let timestamp = beijing
                .from_local_datetime(&local)
                .single()
                .context("fixed offsets are unambiguous")?
                .with_timezone(&Utc);
            readings.push(Reading {
                sensor_id: sensor_id.clone(),
                timestamp,
                location: *location,
                measurements: Measurements {
                    pm2_5: value(&r.pm2_5)?,
                    pm10: value(&r.pm10)?,
                    no2: value(&r.no2)?,
                },
            });
        }
    }
    readings.sort_by(|a, b| (a.timestamp, &a.sensor_id).cmp(&(b.timestamp, &b.sensor_id)));
    if let Some(n) = limit {
        readings.truncate(n);
    }
    Ok(readings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/beijing_prsa")
    }

    #[test]
    fn loads_the_fixture_in_time_order_in_utc() {
        let r = load(&fixture(), None).unwrap();
        assert!(!r.is_empty());
        assert!(r.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        // 2013-03-01 00:00 Beijing time is 2013-02-28 16:00 UTC.
        assert_eq!(
            r[0].timestamp,
            "2013-02-28T16:00:00Z"
                .parse::<chrono::DateTime<Utc>>()
                .unwrap()
        );
        assert!(r[0].sensor_id.starts_with("bj_"));
    }

    #[test]
    fn na_becomes_a_missing_value() {
        let r = load(&fixture(), None).unwrap();
        assert!(r.iter().any(|x| x.measurements.no2.is_none()));
    }
}
