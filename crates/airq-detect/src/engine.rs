//! Per-sensor detection state and the step that turns a processed reading into events.

use std::collections::HashMap;

use airq_domain::Pollutant;
use airq_domain::processed::ProcessedReading;
use airq_domain::qc::Flag;
use chrono::{DateTime, Timelike, Utc};

use crate::config::DetectorConfig;
use crate::episode::{AnomalyEvent, AnomalyKind, Episode, Firing, Severity, Status};
use crate::pollution::{PollutionEpisode, Regions};
use crate::spatial::{Context, Dense, Neighbourhood, SpatialConfig, log_ratio, pm_ratio};
use crate::stats::{Ewma, HourProfile, PageHinkley, RobustWindow};

#[derive(Debug, Clone)]
struct PollutantState {
    profile: HourProfile,
    window: RobustWindow,
    level: Option<f64>,
    ewma: Ewma,
    ph: PageHinkley,
    /// Log-ratios to the neighbours' median: the usual offset...
    spatial: RobustWindow,
    /// ... its slow level, and the gain-drift test against it.
    spatial_level: Option<f64>,
    spatial_ph: PageHinkley,
}

impl PollutantState {
    fn new(cfg: &DetectorConfig) -> Self {
        Self {
            profile: HourProfile::new(cfg.profile_tau_days),
            window: RobustWindow::new(cfg.window),
            level: None,
            ewma: Ewma::default(),
            ph: PageHinkley::default(),
            spatial: RobustWindow::new(cfg.spatial.window),
            spatial_level: None,
            spatial_ph: PageHinkley::default(),
        }
    }
}

#[derive(Debug, Clone)]
struct SensorState {
    last_ts: Option<DateTime<Utc>>,
    /// Typical seconds between readings (EWMA of normal gaps).
    interval: Option<f64>,
    pollutants: [PollutantState; 3],
    open: HashMap<(Option<Pollutant>, AnomalyKind), Episode>,
}

impl SensorState {
    fn new(cfg: &DetectorConfig) -> Self {
        Self {
            last_ts: None,
            interval: None,
            pollutants: [
                PollutantState::new(cfg),
                PollutantState::new(cfg),
                PollutantState::new(cfg),
            ],
            open: HashMap::new(),
        }
    }
}

fn pollutant_label(p: Pollutant) -> &'static str {
    match p {
        Pollutant::Pm25 => "PM2.5",
        Pollutant::Pm10 => "PM10",
        Pollutant::No2 => "NO2",
    }
}

/// Local solar hour of a reading (0..24) from UTC and longitude.
fn local_hour(ts: DateTime<Utc>, lon: f64) -> usize {
    let h = f64::from(ts.hour()) + f64::from(ts.minute()) / 60.0 + lon / 15.0;
    (h.rem_euclid(24.0).floor() as usize) % 24
}

fn severity_of_z(z: f64) -> Severity {
    match z.abs() {
        a if a >= 20.0 => Severity::Critical,
        a if a >= 12.0 => Severity::Warning,
        _ => Severity::Info,
    }
}

/// What one reading did.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// Anomalies opened or closed by this reading.
    pub events: Vec<AnomalyEvent>,
    /// The detectors that fired on this reading (pollutant, kind).
    pub kinds: Vec<(Option<Pollutant>, AnomalyKind)>,
    /// Robust z-score per pollutant (by [`Pollutant::index`]), once the baseline is warm.
    pub robust_z: [Option<f64>; 3],
    /// Robust z-score of the log-ratio to the neighbours, once the spatial baseline is warm.
    pub spatial_z: [Option<f64>; 3],
    /// How far this point is from the sensor's usual level, per pollutant, once the
    /// baseline is warm: the larger of |robust z| / `z_threshold` and |EWMA| /
    /// `ewma_limit` (1 = at the threshold). Page-Hinkley is left out: it accumulates
    /// evidence since a change and stays high long after the point itself is ordinary.
    pub strength: [Option<f64>; 3],
    /// A pollution episode opened or closed at this reading.
    pub episode: Option<PollutionEpisode>,
    /// Temporal alerts the neighbours explained (not raised).
    pub explained: usize,
}

/// The anomaly detector over all sensors.
#[derive(Debug, Clone)]
pub struct Detector {
    cfg: DetectorConfig,
    sensors: HashMap<String, SensorState>,
    neighbours: Neighbourhood,
    pollution: Regions,
}

impl Detector {
    pub fn new(cfg: DetectorConfig) -> Self {
        Self {
            cfg,
            sensors: HashMap::new(),
            neighbours: Neighbourhood::default(),
            pollution: Regions::default(),
        }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Whether this detector holds state for `sensor`.
    pub fn knows(&self, sensor: &str) -> bool {
        self.sensors.contains_key(sensor)
    }

    /// Drops a sensor's state (its partition moved to another instance): the state must be
    /// rebuilt from history before the sensor's next reading.
    pub fn forget(&mut self, sensor: &str) {
        self.sensors.remove(sensor);
        self.neighbours.forget(sensor);
    }

    /// Number of sensors with state.
    pub fn sensors(&self) -> usize {
        self.sensors.len()
    }

    /// Processes one reading; returns the events to publish (opened or closed anomalies).
    pub fn process(&mut self, r: &ProcessedReading) -> Vec<AnomalyEvent> {
        self.step(r).events
    }

    /// Judges the readings of one timestamp (a closed [`crate::Tick`], sorted by sensor):
    /// their values enter the neighbourhood first, so each is judged against what its
    /// neighbours read at that same time, whatever order they arrived in.
    pub fn judge_tick<'a>(
        &mut self,
        readings: impl IntoIterator<Item = &'a ProcessedReading> + Clone,
    ) -> Vec<Step> {
        if self.cfg.spatial.enabled {
            let fresh: Vec<_> = readings
                .clone()
                .into_iter()
                .filter(|r| !self.is_stale(r))
                .collect();
            self.neighbours.update_all(&fresh);
        }
        // The neighbourhood is fixed while the tick is judged: a dense fleet's context is
        // sorted once per timestamp instead of once per reading, and a fleet that is not
        // dense is found so once per timestamp too.
        let mut dense: Option<(DateTime<Utc>, Option<Dense>)> = None;
        readings
            .into_iter()
            .map(|r| {
                if self.cfg.spatial.enabled
                    && dense.as_ref().is_none_or(|(ts, _)| *ts != r.timestamp)
                {
                    let d = self.neighbours.dense(r.timestamp, &self.cfg.spatial);
                    dense = Some((r.timestamp, d));
                }
                self.step_in(r, dense.as_ref().and_then(|(_, d)| d.as_ref()))
            })
            .collect()
    }

    /// Whether `r` says nothing new: flagged a duplicate or late by the cleaner, or not
    /// after the last reading judged for its sensor. A cleaner that lost its state (a
    /// takeover, a restart) cleans a redelivered reading again without those flags; judged
    /// twice, it would count twice in an episode, and by where the copy lands in the stream.
    fn is_stale(&self, r: &ProcessedReading) -> bool {
        r.flags.contains(Flag::Duplicate)
            || r.flags.contains(Flag::Late)
            || self
                .sensors
                .get(&r.sensor_id)
                .and_then(|s| s.last_ts)
                .is_some_and(|last| r.timestamp <= last)
    }

    /// Processes one reading; returns the events and every detector's score for it.
    pub fn step(&mut self, r: &ProcessedReading) -> Step {
        self.step_in(r, None)
    }

    /// [`Detector::step`], with the dense fleet's context of its timestamp if there is one.
    fn step_in(&mut self, r: &ProcessedReading, dense: Option<&Dense>) -> Step {
        let mut step = Step::default();
        if self.is_stale(r) {
            return step;
        }
        let cfg = &self.cfg;
        let state = self
            .sensors
            .entry(r.sensor_id.clone())
            .or_insert_with(|| SensorState::new(cfg));
        let mut firings = Vec::new();
        let mut events = Vec::new();

        // Silence: a gap much longer than this sensor's usual interval.
        if let Some(last) = state.last_ts {
            let gap = (r.timestamp - last).num_milliseconds() as f64 / 1000.0;
            let usual = state.interval.unwrap_or(gap);
            if state.interval.is_some()
                && gap > (cfg.silence_factor * usual).max(cfg.silence_min_secs as f64)
            {
                let mut e = Episode::start(
                    &r.sensor_id,
                    Firing {
                        pollutant: None,
                        kind: AnomalyKind::Silence,
                        ts: last,
                        score: gap / usual,
                        severity: Severity::Warning,
                        observed: Some(gap),
                        expected: Some(usual),
                        explanation: format!(
                            "no reading for {:.0} s, {:.1} times the usual {:.0} s",
                            gap,
                            gap / usual,
                            usual
                        ),
                    },
                );
                e.event.end = r.timestamp;
                e.event.status = Status::Closed;
                events.push(e.event);
            } else if gap > 0.0 {
                state.interval = Some(state.interval.map_or(gap, |i| i + 0.1 * (gap - i)));
            }
        }
        state.last_ts = Some(r.timestamp);

        // What the neighbours read meanwhile (nothing when the spatial checks are off).
        let sp = &cfg.spatial;
        let ctx = sp.enabled.then(|| {
            self.neighbours
                .context_in(dense, &r.sensor_id, r.location, r.timestamp, sp)
        });
        // Each value against its neighbours first: the flag rules below use the verdict.
        if let Some(c) = ctx.as_ref() {
            for p in Pollutant::ALL {
                if let (Some(x), Some(m)) = (r.clean.get(p), c.median[p.index()]) {
                    let ps = &mut state.pollutants[p.index()];
                    step.spatial_z[p.index()] =
                        spatial_step(ps, p, x, m, c, r.timestamp, sp, &mut firings);
                }
            }
        }
        let spatial_z = step.spatial_z;

        // Rules carried from the cleaner's flags.
        for d in &r.flag_details {
            let (kind, severity) = match d.flag {
                Flag::OutOfRange => (AnomalyKind::OutOfRange, Severity::Critical),
                Flag::Negative => (AnomalyKind::Negative, Severity::Warning),
                Flag::Pm25AbovePm10 => (AnomalyKind::Pm25AbovePm10, Severity::Warning),
                Flag::Flatline => (AnomalyKind::Flatline, Severity::Warning),
                Flag::Spike => (AnomalyKind::Spike, Severity::Warning),
                _ => continue,
            };
            let observed = d.pollutant.and_then(|p| r.raw.get(p));
            let what = d.pollutant.map_or("reading", pollutant_label);
            let mut explanation = match observed {
                Some(v) => format!(
                    "{what} {v} ug/m3 flagged {} by the cleaner",
                    d.flag.as_str()
                ),
                None => format!("{what} flagged {} by the cleaner", d.flag.as_str()),
            };
            // A jump the neighbours make too is the air changing, not the sensor.
            if d.flag == Flag::Spike
                && d.pollutant
                    .and_then(|p| spatial_z[p.index()])
                    .is_some_and(|z| z.abs() <= sp.spike_z)
            {
                step.explained += 1;
                continue;
            }
            if d.flag == Flag::Pm25AbovePm10 {
                match pm_ratio_verdict(&r.clean, ctx.as_ref(), sp) {
                    PmVerdict::Explained => {
                        step.explained += 1;
                        continue;
                    }
                    PmVerdict::Fault(why) => explanation = format!("{explanation}; {why}"),
                }
            }
            firings.push(Firing {
                pollutant: d.pollutant,
                kind,
                ts: r.timestamp,
                score: 1.0,
                severity,
                observed,
                expected: None,
                explanation,
            });
        }

        // Statistics per pollutant, on valid values, against the hour-of-day baseline and
        // against the neighbours.
        let hour = local_hour(r.timestamp, r.location.lon);
        for p in Pollutant::ALL {
            let Some(x) = r.clean.get(p) else { continue };
            let ps = &mut state.pollutants[p.index()];
            let label = pollutant_label(p);
            let neighbours = ctx
                .as_ref()
                .and_then(|c| c.median[p.index()].map(|m| (m, c)));
            let spatial_z = spatial_z[p.index()];
            // A temporal deviation stands unless the neighbours explain it: the sensor is
            // about as far from them as usual, or off the other way.
            let mut explained = |dev: f64| {
                let yes = spatial_z
                    .is_some_and(|z| !(z.abs() > sp.explain_z && z.signum() == dev.signum()));
                step.explained += usize::from(yes);
                yes
            };
            let factor = ps.profile.factor(hour);
            let y = x / factor;
            if ps.window.len() >= cfg.min_history
                && ps.profile.is_warm()
                && let Some((med, sigma)) = ps.window.median_sigma(0.5, 0.05)
            {
                let z = (y - med) / sigma;
                step.robust_z[p.index()] = Some(z);
                let expected = med * factor;
                if z.abs() > cfg.z_threshold && !explained(z) {
                    firings.push(Firing {
                            pollutant: Some(p),
                            kind: AnomalyKind::Outlier,
                            ts: r.timestamp,
                            score: z.abs(),
                            severity: severity_of_z(z),
                            observed: Some(x),
                            expected: Some(expected),
                            explanation: format!(
                                "{label} {x:.0} ug/m3 is {:.1} robust sigmas {} this sensor's usual {hour:02}:00 level ({expected:.0}){}",
                                z.abs(),
                                if z > 0.0 { "above" } else { "below" },
                                neighbour_note(neighbours.map(|(m, c)| (m, c.count)))
                            ),
                        });
                }
                let level = *ps.level.get_or_insert(med);
                let rr = ((y - level) / sigma).clamp(-cfg.residual_clip, cfg.residual_clip);
                let ph = ps.ph.update(rr, cfg.ph_delta);
                // With neighbours, drift is judged on the ratio to them (gain drift) above.
                if ph > cfg.ph_threshold && neighbours.is_none() {
                    firings.push(Firing {
                            pollutant: Some(p),
                            kind: AnomalyKind::Drift,
                            ts: r.timestamp,
                            score: ph / cfg.ph_threshold,
                            severity: Severity::Warning,
                            observed: Some(x),
                            expected: Some(level * factor),
                            explanation: format!(
                                "{label} has drifted from this sensor's level: {x:.0} ug/m3 against {:.0} expected (Page-Hinkley {ph:.0})",
                                level * factor
                            ),
                        });
                }
                let ew = ps.ewma.update(rr, cfg.ewma_lambda);
                step.strength[p.index()] =
                    Some((z.abs() / cfg.z_threshold).max(ew.abs() / cfg.ewma_limit));
                if ew.abs() > cfg.ewma_limit && !explained(ew) {
                    firings.push(Firing {
                        pollutant: Some(p),
                        kind: AnomalyKind::Shift,
                        ts: r.timestamp,
                        score: ew.abs(),
                        severity: severity_of_z(ew),
                        observed: Some(x),
                        expected: Some(level * factor),
                        explanation: format!(
                            "{label} has shifted {} its usual level: EWMA at {:.1} sigmas{}",
                            if ew > 0.0 { "above" } else { "below" },
                            ew.abs(),
                            neighbour_note(neighbours.map(|(m, c)| (m, c.count)))
                        ),
                    });
                }
                ps.level = Some(level + cfg.level_alpha * (y - level));
            }
            ps.profile.update(hour, x, state.interval.unwrap_or(60.0));
            ps.window.push(y);
        }

        step.kinds = firings.iter().map(|f| (f.pollutant, f.kind)).collect();
        events.extend(merge(state, &r.sensor_id, r.timestamp, firings, cfg));
        step.events = events;
        if sp.enabled {
            self.neighbours.update(r);
            step.episode =
                self.pollution
                    .observe(&r.sensor_id, r.location, r.timestamp, &self.neighbours, sp);
        }
        step
    }

    /// Closes every open anomaly (end of a finite stream).
    pub fn flush(&mut self) -> Vec<AnomalyEvent> {
        let mut out = Vec::new();
        for s in self.sensors.values_mut() {
            for (_, mut e) in s.open.drain() {
                if e.published {
                    e.event.status = Status::Closed;
                    out.push(e.event);
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Closes the open pollution episodes (end of a finite stream).
    pub fn flush_episodes(&mut self) -> Vec<PollutionEpisode> {
        self.pollution.flush(&self.cfg.spatial)
    }
}

/// Whether a PM2.5 > PM10 reading is this sensor's fault or what its neighbours see too.
enum PmVerdict {
    Explained,
    Fault(String),
}

fn pm_ratio_verdict(
    clean: &airq_domain::Measurements,
    ctx: Option<&Context>,
    sp: &SpatialConfig,
) -> PmVerdict {
    let (Some(mine), Some(theirs)) = (pm_ratio(clean), ctx.and_then(|c| c.pm_ratio)) else {
        return PmVerdict::Fault("no neighbour to compare with".into());
    };
    let excess = clean.pm2_5.zip(clean.pm10).map_or(0.0, |(a, b)| a - b);
    if mine <= theirs + sp.pm_ratio_margin
        || mine <= theirs * sp.pm_ratio_factor
        || excess < sp.pm_excess_ugm3
    {
        PmVerdict::Explained
    } else {
        PmVerdict::Fault(format!(
            "PM2.5/PM10 {mine:.2} against {theirs:.2} at the neighbours (median)"
        ))
    }
}

/// ", while N neighbours read M (median)" for an explanation.
fn neighbour_note(n: Option<(f64, usize)>) -> String {
    match n {
        Some((m, count)) => format!(", while its {count} neighbours read {m:.0} (median)"),
        None => String::new(),
    }
}

/// The spatial checks of one value against its neighbours' median `m`: an inconsistent
/// value, and gain drift (Page-Hinkley on the log-ratio against its slow level). Returns
/// the log-ratio's robust z once the sensor's spatial baseline is warm.
#[allow(clippy::too_many_arguments)]
fn spatial_step(
    ps: &mut PollutantState,
    p: Pollutant,
    x: f64,
    m: f64,
    ctx: &Context,
    ts: DateTime<Utc>,
    sp: &SpatialConfig,
    firings: &mut Vec<Firing>,
) -> Option<f64> {
    let lr = log_ratio(x, m, sp.offset_ugm3);
    let scope = if ctx.fleet_wide { "the fleet's" } else { "its" };
    let label = pollutant_label(p);
    // Exact zeros while the neighbours read real air: a dropout filled with zeros.
    if x == 0.0 && m >= sp.zero_min_ugm3 {
        firings.push(Firing {
            pollutant: Some(p),
            kind: AnomalyKind::Inconsistent,
            ts,
            score: m / sp.zero_min_ugm3,
            severity: Severity::Warning,
            observed: Some(0.0),
            expected: Some(m),
            explanation: format!(
                "{label} reads exactly 0 while {scope} {} sensors read {m:.0} (median)",
                ctx.count
            ),
        });
    }
    let warm = ps.spatial.len() >= sp.min_history;
    let stats = if warm {
        ps.spatial.median_sigma(0.05, 0.0)
    } else {
        None
    };
    let Some((med, sigma)) = stats else {
        ps.spatial.push(lr);
        return None;
    };
    let z = (lr - med) / sigma;
    let pollutant = Some(p);
    let usual = med.exp();
    let now =
        ((x.max(0.0) + sp.offset_ugm3) / (m.max(0.0) + sp.offset_ugm3)).max(f64::MIN_POSITIVE);
    let expected = (m + sp.offset_ugm3) * usual - sp.offset_ugm3;
    // Only reading too high: a sensor reading far less than its neighbours is most often
    // at the edge of an air mass (a front clears the suburbs first); zeros are above.
    if z > sp.inconsistent_z && lr - med > sp.inconsistent_ratio.ln() {
        firings.push(Firing {
            pollutant,
            kind: AnomalyKind::Inconsistent,
            ts,
            score: z.abs(),
            severity: severity_of_z(z),
            observed: Some(x),
            expected: Some(expected.max(0.0)),
            explanation: format!(
                "{label} {x:.0} ug/m3 while {scope} {} sensors read {m:.0} (median): {now:.2}x them, against {usual:.2}x usually ({:.1} robust sigmas)",
                ctx.count,
                z.abs()
            ),
        });
    }
    let level = *ps.spatial_level.get_or_insert(med);
    let rr = ((lr - level) / sigma).clamp(-10.0, 10.0);
    let ph = ps.spatial_ph.update(rr, sp.drift_delta);
    if ph > sp.drift_threshold {
        firings.push(Firing {
            pollutant,
            kind: AnomalyKind::Drift,
            ts,
            score: ph / sp.drift_threshold,
            severity: Severity::Warning,
            observed: Some(x),
            expected: Some(((m + sp.offset_ugm3) * level.exp() - sp.offset_ugm3).max(0.0)),
            explanation: format!(
                "{label} gain has drifted against {scope} {} neighbours: {now:.2}x their median, against {:.2}x before (Page-Hinkley {ph:.0})",
                ctx.count,
                level.exp()
            ),
        });
    } else {
        // The slow level stays where it was while the drift test fires.
        ps.spatial_level = Some(level + sp.level_alpha * (lr - level));
    }
    ps.spatial.push(lr);
    Some(z)
}

fn min_points(kind: AnomalyKind, cfg: &DetectorConfig) -> u32 {
    match kind {
        AnomalyKind::Flatline => cfg.flatline_min_points,
        AnomalyKind::Pm25AbovePm10 => cfg.pm25_above_pm10_min_points,
        _ => 1,
    }
}

/// Adds this reading's firings to the sensor's episodes; closes the ones that went quiet.
fn merge(
    state: &mut SensorState,
    sensor: &str,
    ts: DateTime<Utc>,
    firings: Vec<Firing>,
    cfg: &DetectorConfig,
) -> Vec<AnomalyEvent> {
    let gap_secs = cfg.episode_gap_factor * state.interval.unwrap_or(60.0);
    let mut out = Vec::new();
    let mut touched = Vec::new();
    for f in firings {
        let key = (f.pollutant, f.kind);
        touched.push(key);
        match state.open.get_mut(&key) {
            Some(ep) if ((f.ts - ep.event.end).num_milliseconds() as f64) / 1000.0 <= gap_secs => {
                ep.extend(f)
            }
            _ => {
                if let Some(mut old) = state.open.remove(&key)
                    && old.published
                {
                    old.event.status = Status::Closed;
                    out.push(old.event);
                }
                state.open.insert(key, Episode::start(sensor, f));
            }
        }
        if let Some(ep) = state.open.get_mut(&key)
            && !ep.published
            && ep.event.points >= min_points(key.1, cfg)
        {
            ep.published = true;
            out.push(ep.event.clone());
        }
    }
    let mut quiet: Vec<_> = state
        .open
        .iter()
        .filter(|(k, ep)| {
            !touched.contains(k)
                && ((ts - ep.event.end).num_milliseconds() as f64) / 1000.0 > gap_secs
        })
        .map(|(k, _)| *k)
        .collect();
    // Deterministic event order: the same input publishes the same sequence.
    quiet.sort_by_key(|(p, k)| (p.map(Pollutant::index), *k));
    for k in quiet {
        if let Some(mut ep) = state.open.remove(&k)
            && ep.published
        {
            ep.event.status = Status::Closed;
            out.push(ep.event);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use airq_domain::qc::QcConfig;
    use airq_domain::sensor::Cleaner;
    use airq_domain::{Location, Measurements, Reading};
    use chrono::Duration;

    use super::*;

    /// A clean sensor with a strong NO2 rush-hour cycle, one reading a minute.
    fn diurnal(minute: i64) -> Measurements {
        let h = f64::from((t0() + Duration::minutes(minute)).hour());
        let rush = 40.0 * (-(h - 8.0).powi(2) / 4.0).exp();
        let wiggle = ((minute * 7919) % 13) as f64 / 13.0; // deterministic noise in [0, 1)
        Measurements {
            pm2_5: Some(12.0 + wiggle),
            pm10: Some(24.0 + 2.0 * wiggle),
            no2: Some(25.0 + rush + 2.0 * wiggle),
        }
    }

    /// Sensor `s1`'s reading `m` minutes after the start.
    fn reading(m: i64, measurements: Measurements) -> Reading {
        Reading {
            sensor_id: "s1".into(),
            timestamp: t0() + Duration::minutes(m),
            location: Location {
                lat: 48.85,
                lon: 0.0,
            },
            measurements,
        }
    }

    fn t0() -> DateTime<Utc> {
        "2024-01-15T00:00:00Z".parse().unwrap()
    }

    fn run(minutes: i64, mut tweak: impl FnMut(i64, &mut Measurements)) -> Vec<AnomalyEvent> {
        let mut cleaner = Cleaner::new(QcConfig::default());
        let mut det = Detector::new(DetectorConfig::default());
        let mut out = Vec::new();
        for m in 0..minutes {
            let mut meas = diurnal(m);
            tweak(m, &mut meas);
            out.extend(det.process(&cleaner.process(reading(m, meas))));
        }
        out.extend(det.flush());
        out
    }

    #[test]
    fn stays_quiet_on_normal_diurnal_data() {
        let events = run(3 * 24 * 60, |_, _| {});
        assert!(events.is_empty(), "{:?}", events.first());
    }

    #[test]
    fn fires_on_a_spike_and_explains_it() {
        let events = run(2 * 24 * 60, |m, meas| {
            if m == 2000 {
                meas.pm2_5 = Some(312.0);
            }
        });
        let outlier = events
            .iter()
            .find(|e| e.kind == AnomalyKind::Outlier)
            .expect("an outlier");
        assert_eq!(outlier.pollutant, Some(Pollutant::Pm25));
        assert!(
            outlier.explanation.starts_with("PM2.5 312 ug/m3 is"),
            "{}",
            outlier.explanation
        );
        assert!(events.iter().any(|e| e.kind == AnomalyKind::Spike));
    }

    #[test]
    fn merges_an_episode_into_one_anomaly_opened_then_closed() {
        let events = run(2 * 24 * 60, |m, meas| {
            if (2000..2010).contains(&m) {
                meas.no2 = Some(400.0);
            }
        });
        let no2: Vec<_> = events
            .iter()
            .filter(|e| e.kind == AnomalyKind::Outlier && e.pollutant == Some(Pollutant::No2))
            .collect();
        assert_eq!(no2.len(), 2, "opened and closed: {no2:?}");
        assert_eq!(
            (no2[0].status, no2[1].status),
            (Status::Open, Status::Closed)
        );
        assert_eq!(no2[0].id, no2[1].id);
        assert_eq!(no2[1].points, 10);
    }

    #[test]
    fn a_redelivered_reading_the_cleaner_did_not_flag_counts_once() {
        // A cleaner that lost its state cleans redelivered readings again without the
        // duplicate flag: right after the original, or after the readings that followed it.
        let with_copies = |copies: &dyn Fn(i64) -> Vec<i64>| {
            let mut cleaner = Cleaner::new(QcConfig::default());
            let mut det = Detector::new(DetectorConfig::default());
            let cleaned: Vec<_> = (0..2 * 24 * 60)
                .map(|m| {
                    let mut meas = diurnal(m);
                    if (2000..2010).contains(&m) {
                        meas.no2 = Some(400.0);
                    }
                    cleaner.process(reading(m, meas))
                })
                .collect();
            let mut out = Vec::new();
            for m in 0..cleaned.len() as i64 {
                for c in copies(m) {
                    out.extend(det.process(&cleaned[c as usize]));
                }
            }
            out.extend(det.flush());
            out
        };
        let once = with_copies(&|m| vec![m]);
        let adjacent = with_copies(&|m| vec![m, m]);
        let rewound = with_copies(&|m| {
            if m == 2008 {
                vec![2003, 2004, 2005, 2006, 2007, 2008]
            } else {
                vec![m]
            }
        });
        let no2_points = once
            .iter()
            .rfind(|e| e.kind == AnomalyKind::Outlier && e.pollutant == Some(Pollutant::No2))
            .map(|e| e.points);
        assert_eq!(no2_points, Some(10));
        assert_eq!(adjacent, once);
        assert_eq!(rewound, once);
    }

    #[test]
    fn fires_on_a_slow_drift() {
        let events = run(2 * 24 * 60, |m, meas| {
            if m >= 1500 {
                meas.pm2_5 = meas.pm2_5.map(|v| v + 0.3 * (m - 1500) as f64);
            }
        });
        assert!(
            events.iter().any(|e| e.kind == AnomalyKind::Drift),
            "{events:?}"
        );
    }

    #[test]
    fn reports_a_silent_sensor() {
        let mut cleaner = Cleaner::new(QcConfig::default());
        let mut det = Detector::new(DetectorConfig::default());
        let mut events = Vec::new();
        for m in (0..100).chain(160..200) {
            events.extend(det.process(&cleaner.process(reading(m, diurnal(m)))));
        }
        let silence = events
            .iter()
            .find(|e| e.kind == AnomalyKind::Silence)
            .expect("a silence");
        assert_eq!(
            (silence.start, silence.end),
            (t0() + Duration::minutes(99), t0() + Duration::minutes(160))
        );
    }
}
