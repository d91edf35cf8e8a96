//! Offline evaluation: a labelled stream from the simulator goes through the same cleaning
//! and detection code as production, and the alerts are scored against the ground truth.
//!
//! Scored faults are the sensor faults: spike, stuck, drift, dropout, out of range,
//! negative, PM2.5 > PM10. Malformed messages are dead-lettered before detection, and
//! duplicates and late deliveries are transport faults the cleaner flags; none of them is
//! a sensor anomaly. A fault episode is detected when an alert of the same sensor overlaps
//! it in time; an alert is a true positive when it overlaps a fault episode of its sensor.

use std::collections::{BTreeMap, BTreeSet};

use airq_detect::{AnomalyEvent, AnomalyKind, DetectorConfig};
use airq_domain::Reading;
use airq_domain::qc::QcConfig;
use airq_domain::validate::{ValidationConfig, decode};
use airq_sim::faults::{FaultKind, GroundTruth};
use airq_sim::sim::{FleetSpec, Simulator};
use chrono::{DateTime, Utc};

/// Whether a fault kind is a sensor anomaly the detector is scored on.
pub fn is_sensor_fault(kind: FaultKind) -> bool {
    !matches!(
        kind,
        FaultKind::MalformedJson | FaultKind::MissingField | FaultKind::Duplicate | FaultKind::Late
    )
}

/// The production cleaning and detection over `readings`, in order; returns the final
/// state of every alert (one per anomaly id), open ones closed at the end of the stream.
pub fn detect(
    readings: impl IntoIterator<Item = Reading>,
    detector: DetectorConfig,
) -> Vec<AnomalyEvent> {
    crate::backtest::run(readings, QcConfig::default(), detector).alerts
}

/// Runs the simulator, then [`detect`] on the messages the cleaner accepts; returns the
/// ground truth and the alerts.
pub fn run_pipeline(
    spec: FleetSpec,
    ticks: u64,
    detector: DetectorConfig,
) -> (Vec<GroundTruth>, Vec<AnomalyEvent>) {
    let stream = Simulator::new(spec).run(ticks);
    let validation = ValidationConfig::default();
    // The stream must be historical (the caller picks a start in the past).
    let now = Utc::now();
    let readings = stream
        .messages
        .iter()
        .filter_map(|m| decode(&m.payload, now, &validation).ok());
    let alerts = detect(readings, detector);
    (stream.truth, alerts)
}

/// The alerts of one kind on a fault-free stream.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct KindAlerts {
    pub alerts: usize,
    /// PM2.5 > PM10 alerts whose span holds a reading where the source itself reports raw
    /// PM2.5 above raw PM10: impossible (PM2.5 is a part of PM10), so a fault of the source's
    /// instruments that the alert rightly reports, not a false alert.
    pub impossible_in_source: usize,
}

/// Alert rates of a fault-free stream (the Beijing replay, where no fault was injected).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AlertRates {
    pub sensor_days: f64,
    pub by_kind: BTreeMap<String, KindAlerts>,
}

impl AlertRates {
    pub fn alerts(&self) -> usize {
        self.by_kind.values().map(|k| k.alerts).sum()
    }

    /// Alerts the source's own values do not show as faults: the false alerts, at most
    /// (some are real faults no rule can verify from the data alone, e.g. a gain drift).
    pub fn unverified(&self) -> usize {
        self.by_kind
            .values()
            .map(|k| k.alerts - k.impossible_in_source)
            .sum()
    }

    pub fn per_sensor_day(&self, n: usize) -> f64 {
        n as f64 / self.sensor_days
    }
}

/// Alert rates of a fault-free stream by kind, with the stream's sensor-days. Used on the
/// Beijing replay, where every alert is a real-air event or a real sensor problem, never
/// an injected fault.
pub fn alert_rates(readings: Vec<Reading>, detector: DetectorConfig) -> AlertRates {
    let (first, last) = (
        readings.first().map(|r| r.timestamp),
        readings.last().map(|r| r.timestamp),
    );
    let sensors: BTreeSet<&str> = readings.iter().map(|r| r.sensor_id.as_str()).collect();
    let days = match (first, last) {
        (Some(a), Some(b)) => ((b - a).num_seconds() as f64 / 86_400.0).max(1.0 / 24.0),
        _ => 0.0,
    };
    let sensor_days = days * sensors.len() as f64;
    let impossible = impossible_readings(&readings);
    // A reading without any value is dead-lettered by the cleaner: it never reaches detection.
    let has_value = |r: &Reading| {
        r.measurements.pm2_5.is_some()
            || r.measurements.pm10.is_some()
            || r.measurements.no2.is_some()
    };
    let mut by_kind: BTreeMap<String, KindAlerts> = BTreeMap::new();
    for a in detect(readings.into_iter().filter(has_value), detector) {
        let k = by_kind.entry(a.kind.as_str().to_owned()).or_default();
        k.alerts += 1;
        if a.kind == AnomalyKind::Pm25AbovePm10 && shows_impossible(&impossible, &a) {
            k.impossible_in_source += 1;
        }
    }
    AlertRates {
        sensor_days,
        by_kind,
    }
}

/// (sensor, time) of every reading with raw PM2.5 above raw PM10.
fn impossible_readings(readings: &[Reading]) -> BTreeSet<(String, DateTime<Utc>)> {
    readings
        .iter()
        .filter(|r| {
            let m = &r.measurements;
            m.pm2_5.zip(m.pm10).is_some_and(|(a, b)| a > b)
        })
        .map(|r| (r.sensor_id.clone(), r.timestamp))
        .collect()
}

fn shows_impossible(impossible: &BTreeSet<(String, DateTime<Utc>)>, a: &AnomalyEvent) -> bool {
    let from = (a.sensor_id.clone(), a.start);
    let to = (a.sensor_id.clone(), a.end);
    impossible.range(from..=to).next().is_some()
}

/// Counts of one kind.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    pub episodes: usize,
    pub detected: usize,
    pub alerts: usize,
    pub true_alerts: usize,
}

impl Counts {
    pub fn recall(&self) -> f64 {
        ratio(self.detected, self.episodes)
    }

    pub fn precision(&self) -> f64 {
        ratio(self.true_alerts, self.alerts)
    }

    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// The evaluation report.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Recall per fault kind (episodes, detected).
    pub by_fault: BTreeMap<String, Counts>,
    /// Precision per alert kind (alerts, true alerts).
    pub by_alert: BTreeMap<String, Counts>,
    pub overall: Counts,
    /// Seconds from a fault's start to the first overlapping alert's start, sorted.
    pub delays: Vec<f64>,
}

impl Report {
    pub fn delay_quantile(&self, q: f64) -> Option<f64> {
        if self.delays.is_empty() {
            return None;
        }
        let i = ((self.delays.len() - 1) as f64 * q).round() as usize;
        Some(self.delays[i])
    }
}

fn overlaps(a: (DateTime<Utc>, DateTime<Utc>), b: (DateTime<Utc>, DateTime<Utc>)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

/// Scores alerts against the ground truth.
pub fn score(truth: &[GroundTruth], alerts: &[AnomalyEvent]) -> Report {
    let faults: Vec<&GroundTruth> = truth.iter().filter(|t| is_sensor_fault(t.kind)).collect();
    let alerts: Vec<&AnomalyEvent> = alerts.iter().collect();
    tally(
        &faults,
        &alerts,
        |f| format!("{:?}", f.kind),
        |f| f.start,
        |a, f| a.sensor_id == f.sensor_id && overlaps((a.start, a.end), (f.start, f.end)),
    )
}

/// Event-by-event scoring, whatever the ground truth's type: a fault is detected when an
/// alert `hit`s it (the first one gives the delay), an alert is true when it hits a fault.
pub fn tally<F>(
    faults: &[F],
    alerts: &[&AnomalyEvent],
    kind: impl Fn(&F) -> String,
    start: impl Fn(&F) -> DateTime<Utc>,
    hit: impl Fn(&AnomalyEvent, &F) -> bool,
) -> Report {
    let mut r = Report::default();
    for f in faults {
        let first = alerts.iter().filter(|a| hit(a, f)).map(|a| a.start).min();
        let c = r.by_fault.entry(kind(f)).or_default();
        c.episodes += 1;
        r.overall.episodes += 1;
        if let Some(first) = first {
            c.detected += 1;
            r.overall.detected += 1;
            r.delays
                .push(((first - start(f)).num_milliseconds() as f64 / 1000.0).max(0.0));
        }
    }
    for a in alerts {
        let true_alert = faults.iter().any(|f| hit(a, f));
        let c = r.by_alert.entry(a.kind.as_str().to_owned()).or_default();
        c.alerts += 1;
        r.overall.alerts += 1;
        if true_alert {
            c.true_alerts += 1;
            r.overall.true_alerts += 1;
        }
    }
    r.delays.sort_by(f64::total_cmp);
    r
}

#[cfg(test)]
mod tests {
    use airq_detect::{AnomalyKind, Severity, Status};

    use super::*;

    fn t(m: i64) -> DateTime<Utc> {
        "2024-01-15T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(m)
    }

    fn fault(kind: FaultKind, a: i64, b: i64) -> GroundTruth {
        GroundTruth {
            sensor_id: "s".into(),
            kind,
            start: t(a),
            end: t(b),
            pollutant: None,
            invalid_message: false,
        }
    }

    fn alert(a: i64, b: i64) -> AnomalyEvent {
        AnomalyEvent {
            schema_version: 1,
            id: format!("{a}-{b}"),
            sensor_id: "s".into(),
            pollutant: None,
            kind: AnomalyKind::Outlier,
            detector: "robust_z".into(),
            status: Status::Closed,
            start: t(a),
            end: t(b),
            points: 1,
            score: 7.0,
            severity: Severity::Info,
            observed: None,
            expected: None,
            explanation: String::new(),
        }
    }

    #[test]
    fn an_overlapping_alert_detects_an_episode() {
        let r = score(
            &[
                fault(FaultKind::Stuck, 10, 20),
                fault(FaultKind::Spike, 50, 50),
            ],
            &[alert(12, 13), alert(80, 80)],
        );
        assert_eq!((r.overall.episodes, r.overall.detected), (2, 1));
        assert_eq!((r.overall.alerts, r.overall.true_alerts), (2, 1));
        assert_eq!(r.delays, vec![120.0]);
        assert!((r.overall.f1() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn the_detector_scores_above_f1_0_9_on_two_simulated_days() {
        let spec = FleetSpec {
            sensors: 20,
            center: airq_domain::Location {
                lat: 48.8566,
                lon: 2.3522,
            },
            start: "2026-01-05T00:00:00Z".parse().unwrap(),
            interval: chrono::Duration::minutes(1),
            seed: 3,
            faults: airq_sim::faults::FaultRates::default(),
        };
        let (truth, alerts) = run_pipeline(spec, 2 * 1440, DetectorConfig::default());
        let r = score(&truth, &alerts);
        assert!(r.overall.episodes > 100, "{} episodes", r.overall.episodes);
        assert!(r.overall.f1() >= 0.9, "{:?}", r.overall);
    }

    #[test]
    fn alert_rates_are_per_sensor_day_of_the_replay() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/beijing_prsa");
        let readings = airq_sim::replay::load(&fixture, None).unwrap();
        let rates = alert_rates(readings.clone(), DetectorConfig::default());
        // 3 stations x 71 hours from the first to the last reading.
        assert!(
            (rates.sensor_days - 3.0 * 71.0 / 24.0).abs() < 1e-9,
            "{}",
            rates.sensor_days
        );
        assert!(rates.alerts() > 0);
        // Same data, same alerts: ids and counts are deterministic.
        assert_eq!(alert_rates(readings, DetectorConfig::default()), rates);
    }

    #[test]
    fn a_pm25_above_pm10_alert_is_verified_by_an_impossible_reading_of_its_span() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/beijing_prsa");
        let mut readings = airq_sim::replay::load(&fixture, None).unwrap();
        // One station reads PM2.5 at three times its PM10 for 3 hours; its neighbours do not.
        let sensor = readings[0].sensor_id.clone();
        let mut hit = 0;
        for r in readings
            .iter_mut()
            .filter(|r| r.sensor_id == sensor)
            .skip(40)
            .take(3)
        {
            if let Some(pm10) = r.measurements.pm10 {
                r.measurements.pm2_5 = Some(3.0 * pm10 + 20.0);
                hit += 1;
            }
        }
        assert_eq!(hit, 3, "the fixture has PM10 there");
        let rates = alert_rates(readings, DetectorConfig::default());
        let pm = &rates.by_kind["pm25_above_pm10"];
        assert!(pm.alerts >= 1, "{rates:?}");
        assert_eq!(pm.impossible_in_source, pm.alerts, "{rates:?}");
        assert!(rates.unverified() < rates.alerts());
    }

    #[test]
    fn transport_faults_are_not_scored() {
        let r = score(
            &[
                fault(FaultKind::Duplicate, 10, 10),
                fault(FaultKind::MalformedJson, 11, 11),
            ],
            &[],
        );
        assert_eq!(r.overall.episodes, 0);
    }
}
