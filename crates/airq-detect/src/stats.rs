//! Streaming statistics, each small and pure.

use std::collections::VecDeque;

/// 1.4826 * MAD estimates the standard deviation of normal data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// Hour-of-day profile: the typical level at each local hour relative to the all-day level,
/// so that the rush-hour peak is expected, not anomalous.
/// Time-based: means with a memory of `tau_days`, whatever the sensor's reporting interval.
#[derive(Debug, Clone)]
pub struct HourProfile {
    hour_mean: [Option<f64>; 24],
    day_mean: Option<f64>,
    tau_days: f64,
}

impl HourProfile {
    pub fn new(tau_days: f64) -> Self {
        Self {
            hour_mean: [None; 24],
            day_mean: None,
            tau_days,
        }
    }

    /// The multiplicative factor of `hour` (1.0 until learnt), clamped to [0.2, 5].
    pub fn factor(&self, hour: usize) -> f64 {
        match (self.hour_mean[hour % 24], self.day_mean) {
            (Some(h), Some(d)) if d > 1e-6 => (h / d).clamp(0.2, 5.0),
            _ => 1.0,
        }
    }

    /// Whether every hour of the day has been seen: before that, a normal daily peak
    /// would look like an anomaly.
    pub fn is_warm(&self) -> bool {
        self.hour_mean.iter().all(Option::is_some)
    }

    /// Adds value `x` seen at local `hour`, `dt_secs` after the sensor's previous reading.
    pub fn update(&mut self, hour: usize, x: f64, dt_secs: f64) {
        let ewma = |old: Option<f64>, a: f64| Some(old.map_or(x, |o| o + a * (x - o)));
        let day = self.tau_days * 86_400.0;
        // An hour bucket only sees its hour: 1/24 of the points, so a 24x larger step.
        self.hour_mean[hour % 24] =
            ewma(self.hour_mean[hour % 24], (24.0 * dt_secs / day).min(1.0));
        self.day_mean = ewma(self.day_mean, (dt_secs / day).min(1.0));
    }
}

/// A window of the last `cap` values with its median and robust sigma.
#[derive(Debug, Clone)]
pub struct RobustWindow {
    values: VecDeque<f64>,
    cap: usize,
}

impl RobustWindow {
    pub fn new(cap: usize) -> Self {
        Self {
            values: VecDeque::with_capacity(cap),
            cap,
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn push(&mut self, x: f64) {
        if self.values.len() == self.cap {
            self.values.pop_front();
        }
        self.values.push_back(x);
    }

    /// (median, robust sigma). Sigma has a floor, `abs_floor` or `rel_floor` times the
    /// median, whichever is larger, so that a quiet series is not infinitely sensitive.
    pub fn median_sigma(&self, abs_floor: f64, rel_floor: f64) -> Option<(f64, f64)> {
        if self.values.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.values.iter().copied().collect();
        let med = median(&mut v);
        let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
        let mad = median(&mut dev);
        Some((
            med,
            (MAD_TO_SIGMA * mad)
                .max(abs_floor)
                .max(rel_floor * med.abs()),
        ))
    }
}

fn median(v: &mut [f64]) -> f64 {
    let n = v.len();
    let mid = n / 2;
    v.select_nth_unstable_by(mid, f64::total_cmp);
    let hi = v[mid];
    if n % 2 == 1 {
        hi
    } else {
        let lo = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo + hi) / 2.0
    }
}

/// EWMA control chart on standardised residuals: fires on a sustained shift that single
/// points do not reveal.
#[derive(Debug, Clone, Default)]
pub struct Ewma {
    value: f64,
}

impl Ewma {
    /// Feeds residual `r` (in sigmas); returns the EWMA statistic in units of its own sigma.
    pub fn update(&mut self, r: f64, lambda: f64) -> f64 {
        self.value = lambda * r + (1.0 - lambda) * self.value;
        self.value / (lambda / (2.0 - lambda)).sqrt()
    }

    pub fn reset(&mut self) {
        self.value = 0.0;
    }
}

/// Two-sided Page-Hinkley test for a change in mean of standardised residuals.
#[derive(Debug, Clone, Default)]
pub struct PageHinkley {
    up: f64,
    up_min: f64,
    down: f64,
    down_max: f64,
}

impl PageHinkley {
    /// Feeds residual `r`; returns the test statistic (alarm when above the threshold).
    pub fn update(&mut self, r: f64, delta: f64) -> f64 {
        self.up += r - delta;
        self.up_min = self.up_min.min(self.up);
        self.down += r + delta;
        self.down_max = self.down_max.max(self.down);
        (self.up - self.up_min).max(self.down_max - self.down)
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad_ignore_one_outlier() {
        let mut w = RobustWindow::new(9);
        for x in [10.0, 11.0, 9.0, 10.0, 12.0, 8.0, 10.0, 11.0, 500.0] {
            w.push(x);
        }
        let (med, sigma) = w.median_sigma(0.0, 0.0).unwrap();
        assert_eq!(med, 10.0);
        assert!((sigma - 1.4826).abs() < 1e-9);
    }

    #[test]
    fn window_keeps_only_the_last_values() {
        let mut w = RobustWindow::new(3);
        for x in [1.0, 2.0, 3.0, 100.0, 100.0] {
            w.push(x);
        }
        assert_eq!(w.median_sigma(0.0, 0.0).unwrap().0, 100.0);
    }

    #[test]
    fn hour_profile_learns_a_rush_hour_peak() {
        let mut p = HourProfile::new(3.0);
        for _day in 0..10 {
            for h in 0..24 {
                p.update(h, if h == 8 { 60.0 } else { 20.0 }, 3600.0);
            }
        }
        assert!(p.factor(8) > 2.0 && p.factor(3) < 1.2);
    }

    #[test]
    fn page_hinkley_fires_on_a_shift_not_on_noise() {
        let mut ph = PageHinkley::default();
        let quiet = (0..500)
            .map(|i| ph.update(if i % 2 == 0 { 1.0 } else { -1.0 }, 0.5))
            .fold(0.0, f64::max);
        assert!(quiet < 5.0);
        let shifted = (0..50).map(|_| ph.update(3.0, 0.5)).fold(0.0, f64::max);
        assert!(shifted > 100.0);
    }

    #[test]
    fn ewma_accumulates_a_sustained_shift() {
        let mut e = Ewma::default();
        let one = e.update(3.0, 0.2);
        let many = (0..20).map(|_| e.update(3.0, 0.2)).last().unwrap();
        assert!(many > 2.0 * one);
    }
}
