//! What the daily batch shows a person (the Airflow task log) and tells a program (the
//! completeness check's JSON). Pure formatting.

use airq_store::daily::{Completeness, Quality};
use chrono::NaiveDate;

/// The day's quality summary as a fixed-width table, one line per sensor, then the fleet.
pub fn quality_table(day: NaiveDate, rows: &[Quality]) -> String {
    let mut out = format!(
        "data quality {day}: {} sensors\n{:<24} {:>8} {:>6} {:>8} {:>8} {:>9}  flags\n",
        rows.len(),
        "sensor",
        "readings",
        "hours",
        "coverage",
        "flagged",
        "anomalies"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<24} {:>8} {:>6} {:>7.1}% {:>8} {:>9}  {}\n",
            r.sensor_id,
            r.n_readings,
            r.hours_covered,
            r.coverage * 100.0,
            r.n_flagged,
            r.n_anomalies,
            r.flag_counts
        ));
    }
    let readings: i64 = rows.iter().map(|r| i64::from(r.n_readings)).sum();
    let flagged: i64 = rows.iter().map(|r| i64::from(r.n_flagged)).sum();
    let anomalies: i64 = rows.iter().map(|r| i64::from(r.n_anomalies)).sum();
    let silent = rows.iter().filter(|r| r.n_readings == 0).count();
    let coverage = if rows.is_empty() {
        0.0
    } else {
        rows.iter().map(|r| r.coverage).sum::<f64>() / rows.len() as f64
    };
    out.push_str(&format!(
        "fleet: {readings} readings, mean coverage {:.1}%, {flagged} flagged, {anomalies} anomalies, {silent} silent sensors\n",
        coverage * 100.0
    ));
    out
}

/// The completeness check's answer: `{"day", "complete", "active", "late": [{"sensor_id",
/// "last"}]}`.
pub fn completeness_json(day: NaiveDate, c: &Completeness) -> serde_json::Value {
    serde_json::json!({
        "day": day.to_string(),
        "complete": c.is_complete(),
        "active": c.active,
        "late": c.late.iter().map(|(id, last)| serde_json::json!({
            "sensor_id": id,
            "last": last.map(|t| t.to_rfc3339()),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, n: i32, hours: i32) -> Quality {
        Quality {
            sensor_id: id.into(),
            n_readings: n,
            hours_covered: hours,
            coverage: f64::from(hours) / 24.0,
            n_flagged: 1,
            flag_counts: r#"{"spike": 1}"#.into(),
            n_anomalies: 2,
            n_critical: 0,
        }
    }

    #[test]
    fn the_table_has_a_line_per_sensor_and_the_fleet_totals() {
        let day = NaiveDate::from_ymd_opt(2013, 3, 2).unwrap();
        let t = quality_table(day, &[row("bj_a", 24, 24), row("bj_b", 0, 0)]);
        assert!(t.starts_with("data quality 2013-03-02: 2 sensors\n"));
        assert!(t.contains("bj_a") && t.contains("100.0%") && t.contains(r#"{"spike": 1}"#));
        assert!(t.ends_with(
            "fleet: 24 readings, mean coverage 50.0%, 2 flagged, 4 anomalies, 1 silent sensors\n"
        ));
    }

    #[test]
    fn the_completeness_answer_names_each_late_sensor() {
        let day = NaiveDate::from_ymd_opt(2013, 3, 2).unwrap();
        let c = Completeness {
            active: 2,
            late: vec![("bj_b".into(), None)],
        };
        let j = completeness_json(day, &c);
        assert_eq!(j["complete"], false);
        assert_eq!(j["late"][0]["sensor_id"], "bj_b");
        assert_eq!(j["active"], 2);
    }
}
