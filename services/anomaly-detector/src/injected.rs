//! The evaluation on real data: faults injected into the Beijing replay's last year
//! (`airq_sim::inject`), the detector warmed on the years before, scored event by event.
//!
//! A fault is found when an alert of its sensor overlaps it (and names its pollutant, when
//! both name one); an alert in the scored window that overlaps no fault is a false alert,
//! whatever it is about (a real problem of the source counts against the detector too).

use airq_detect::AnomalyEvent;
use airq_sim::inject::Injected;
use chrono::{DateTime, Utc};

use crate::evaluate::tally;

/// The report of one seed: the event-by-event counts and the sensor-days scored.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub counts: crate::evaluate::Report,
    pub sensor_days: f64,
}

impl Report {
    pub fn false_alerts(&self) -> usize {
        self.counts.overall.alerts - self.counts.overall.true_alerts
    }

    pub fn false_per_sensor_day(&self) -> f64 {
        if self.sensor_days > 0.0 {
            self.false_alerts() as f64 / self.sensor_days
        } else {
            0.0
        }
    }
}

fn matches(a: &AnomalyEvent, f: &Injected) -> bool {
    a.sensor_id == f.sensor_id
        && (a.pollutant.is_none() || f.pollutant.is_none() || a.pollutant == f.pollutant)
        && a.start <= f.end
        && f.start <= a.end
}

/// Scores the alerts that reach into `[from, to)` against the injected faults; `sensors`
/// is the number of sensors reporting in the window.
pub fn score(
    truth: &[Injected],
    alerts: &[AnomalyEvent],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    sensors: usize,
) -> Report {
    let scored: Vec<&AnomalyEvent> = alerts
        .iter()
        .filter(|a| a.end >= from && a.start < to)
        .collect();
    Report {
        counts: tally(
            truth,
            &scored,
            |f| f.kind.as_str().to_owned(),
            |f| f.start,
            matches,
        ),
        sensor_days: (to - from).num_seconds() as f64 / 86_400.0 * sensors as f64,
    }
}

/// `evaluate-real`: loads the Beijing data, injects faults from `test_from` on, runs the
/// backtest over everything and prints the report.
pub fn run_cli(
    data_dir: &std::path::Path,
    seed: u64,
    test_from: chrono::NaiveDate,
    per_sensor_month: usize,
    truth_out: Option<&std::path::Path>,
    qc: airq_domain::qc::QcConfig,
    detect: airq_detect::DetectorConfig,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;

    let mut readings = airq_sim::replay::load(data_dir, None)?;
    let from = test_from.and_time(chrono::NaiveTime::MIN).and_utc();
    let to = readings
        .last()
        .map_or(from, |r| r.timestamp + chrono::Duration::hours(1));
    let spec = airq_sim::inject::InjectSpec {
        from,
        to,
        per_sensor_month,
        seed,
    };
    let truth = airq_sim::inject::inject(&mut readings, &spec);
    if let Some(p) = truth_out {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        );
        for t in &truth {
            writeln!(f, "{}", serde_json::to_string(t)?)?;
        }
    }
    let sensors = readings
        .iter()
        .filter(|r| r.timestamp >= from)
        .map(|r| r.sensor_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let has_value =
        |r: &airq_domain::Reading| r.measurements != airq_domain::Measurements::default();
    let started = std::time::Instant::now();
    let outcome = crate::backtest::run(readings.into_iter().filter(has_value), qc, detect);
    let secs = started.elapsed().as_secs_f64();
    let report = score(&truth, &outcome.alerts, from, to, sensors);
    let r = &report.counts;
    println!(
        "seed {seed}: {} faults injected from {test_from}, {} readings in {secs:.1} s, {:.0} sensor-days scored",
        truth.len(),
        outcome.readings,
        report.sensor_days
    );
    println!(
        "{:<16} {:>7} {:>6} {:>7}",
        "fault kind", "faults", "found", "recall"
    );
    for (k, c) in &r.by_fault {
        println!(
            "{k:<16} {:>7} {:>6} {:>7.3}",
            c.episodes,
            c.detected,
            c.recall()
        );
    }
    println!(
        "\n{:<16} {:>7} {:>6} {:>9}",
        "alert kind", "alerts", "true", "precision"
    );
    for (k, c) in &r.by_alert {
        println!(
            "{k:<16} {:>7} {:>6} {:>9.3}",
            c.alerts,
            c.true_alerts,
            c.precision()
        );
    }
    let o = &r.overall;
    println!(
        "\noverall: precision {:.3}  recall {:.3}  F1 {:.3}  delay median {:.1} h  p95 {:.1} h  false alerts {} ({:.3} per sensor-day)  pollution episodes {}",
        o.precision(),
        o.recall(),
        o.f1(),
        r.delay_quantile(0.5).unwrap_or(f64::NAN) / 3600.0,
        r.delay_quantile(0.95).unwrap_or(f64::NAN) / 3600.0,
        report.false_alerts(),
        report.false_per_sensor_day(),
        outcome.episodes.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use airq_detect::{AnomalyKind, Severity, Status};
    use airq_domain::Pollutant;
    use airq_sim::inject::RealFault;

    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        "2016-06-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::hours(h)
    }

    fn alert(sensor: &str, p: Option<Pollutant>, a: i64, b: i64) -> AnomalyEvent {
        AnomalyEvent {
            schema_version: 1,
            id: format!("{sensor}{a}"),
            sensor_id: sensor.into(),
            pollutant: p,
            kind: AnomalyKind::Inconsistent,
            detector: "spatial".into(),
            status: Status::Closed,
            start: t(a),
            end: t(b),
            points: 1,
            score: 1.0,
            severity: Severity::Warning,
            observed: None,
            expected: None,
            explanation: String::new(),
        }
    }

    #[test]
    fn an_alert_must_name_the_faults_sensor_pollutant_and_time() {
        let truth = [Injected {
            sensor_id: "a".into(),
            pollutant: Some(Pollutant::Pm10),
            kind: RealFault::Noisy,
            start: t(10),
            end: t(20),
            readings: 11,
        }];
        let alerts = [
            alert("a", Some(Pollutant::Pm25), 12, 13), // other pollutant: false
            alert("b", Some(Pollutant::Pm10), 12, 13), // other sensor: false
            alert("a", Some(Pollutant::Pm10), 30, 31), // later: false
            alert("a", Some(Pollutant::Pm10), 15, 16), // found, 5 h late
            alert("a", None, 19, 25),                  // no pollutant named: true
        ];
        let r = score(&truth, &alerts, t(0), t(48), 2);
        assert_eq!(
            (r.counts.overall.detected, r.counts.overall.episodes),
            (1, 1)
        );
        assert_eq!(
            (r.counts.overall.true_alerts, r.counts.overall.alerts),
            (2, 5)
        );
        assert_eq!(r.false_alerts(), 3);
        assert_eq!(r.sensor_days, 4.0);
        assert_eq!(r.false_per_sensor_day(), 0.75);
        assert_eq!(r.counts.delays, [5.0 * 3600.0]);
    }
}
