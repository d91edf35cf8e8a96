//! Longer horizons and prediction intervals.
//!
//! - [`Interval`]: a split-conformal prediction interval, calibrated on rows no fit saw (the
//!   validation window). PM2.5 errors grow with the level (a smog hour moves by tens of
//!   ug/m3, a clean one by a few), so the residuals are calibrated relative to the last hour's
//!   level: `(y - prediction) / (last + offset)`. The interval is narrow in clean air and wide
//!   in smog, with the same coverage overall.
//! - [`Horizon`]: a direct model for PM2.5 `hours` ahead (its features are
//!   `FeatureSpec::features_ahead` of the same hours).
//! - [`Anchors`]: the horizons of an artifact laid out for serving. A horizon between two
//!   trained ones is interpolated linearly between their forecasts. Every hour ahead served,
//!   trained or interpolated, has an interval of its own, calibrated through this same path.

use serde::{Deserialize, Serialize};

use crate::{Model, Predictor};

/// Added to the last hour's PM2.5 to scale residuals: an hour at 0 ug/m3 still has errors.
pub const SCALE_OFFSET: f64 = 10.0;

/// A prediction interval: `[p + s * lower, p + s * upper]` for a prediction `p` made when
/// the last hour's PM2.5 was `last`, with `s = last + offset`; the lower bound is at least 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The coverage it was calibrated for, e.g. 0.9.
    pub coverage: f64,
    pub lower: f64,
    pub upper: f64,
    pub offset: f64,
    /// Rows of the calibration window.
    pub calibration_rows: usize,
}

impl Interval {
    /// The split-conformal interval of the given coverage from a model's predictions on
    /// calibration rows: the `(1 - coverage) / 2` and `(1 + coverage) / 2` quantiles of the
    /// scaled residuals, with the finite-sample correction (rank `ceil((n + 1) q)`).
    /// `None` without enough rows for that coverage.
    pub fn calibrate(
        truth: &[f64],
        predicted: &[f64],
        last: &[f64],
        coverage: f64,
    ) -> Option<Self> {
        let mut r: Vec<f64> = truth
            .iter()
            .zip(predicted)
            .zip(last)
            .map(|((y, p), l)| (y - p) / scale(*l, SCALE_OFFSET))
            .filter(|v| v.is_finite())
            .collect();
        let n = r.len();
        let tail = (1.0 - coverage) / 2.0;
        // Ranks (1-based) of the bounds; both must lie inside the sample.
        let hi = ((n as f64 + 1.0) * (1.0 - tail)).ceil() as usize;
        let lo = ((n as f64 + 1.0) * tail).floor() as usize;
        if !(0.0..1.0).contains(&coverage) || lo < 1 || hi > n {
            return None;
        }
        r.sort_by(f64::total_cmp);
        Some(Self {
            coverage,
            lower: r[lo - 1],
            upper: r[hi - 1],
            offset: SCALE_OFFSET,
            calibration_rows: n,
        })
    }

    pub fn bounds(&self, predicted: f64, last: f64) -> (f64, f64) {
        let s = scale(last, self.offset);
        (
            (predicted + s * self.lower).max(0.0),
            predicted + s * self.upper,
        )
    }

    /// The share of rows whose truth lies inside its interval.
    pub fn coverage_of(&self, truth: &[f64], predicted: &[f64], last: &[f64]) -> f64 {
        let n = truth.len().min(predicted.len()).min(last.len());
        if n == 0 {
            return f64::NAN;
        }
        let inside = (0..n)
            .filter(|&i| {
                let (lo, hi) = self.bounds(predicted[i], last[i]);
                (lo..=hi).contains(&truth[i])
            })
            .count();
        inside as f64 / n as f64
    }
}

fn scale(last: f64, offset: f64) -> f64 {
    last.abs() + offset
}

/// A direct model for PM2.5 `hours` ahead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Horizon {
    pub hours: u32,
    pub model: Model,
}

/// One trained horizon, ready to predict.
#[derive(Debug, Clone, PartialEq)]
pub struct Anchor {
    pub hours: u32,
    pub predictor: Predictor,
}

/// How a horizon is served: by one anchor, or between two (`weight` of the later one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    At(usize),
    Between {
        before: usize,
        after: usize,
        weight: f64,
    },
}

impl Plan {
    /// The anchors it reads.
    pub fn uses(self) -> impl Iterator<Item = usize> {
        let (a, b) = match self {
            Plan::At(i) => (i, None),
            Plan::Between { before, after, .. } => (before, Some(after)),
        };
        std::iter::once(a).chain(b)
    }

    /// The forecast from the anchors' forecasts (`values[i]`: anchor `i`'s).
    pub fn value(self, values: &[f64]) -> f64 {
        match self {
            Plan::At(i) => values[i],
            Plan::Between {
                before,
                after,
                weight,
            } => values[before] + weight * (values[after] - values[before]),
        }
    }
}

/// The trained horizons of an artifact (the 1-hour model first, ascending), and the interval
/// of each hour ahead they serve (`intervals[h - 1]`; empty: no intervals).
#[derive(Debug, Clone, PartialEq)]
pub struct Anchors {
    pub anchors: Vec<Anchor>,
    pub intervals: Vec<Interval>,
}

impl Anchors {
    pub fn new(one_hour: &Model, longer: &[Horizon], intervals: &[Interval]) -> Self {
        let mut v = vec![Anchor {
            hours: 1,
            predictor: Predictor::new(one_hour),
        }];
        v.extend(longer.iter().filter(|h| h.hours > 1).map(|h| Anchor {
            hours: h.hours,
            predictor: Predictor::new(&h.model),
        }));
        v.sort_by_key(|a| a.hours);
        v.dedup_by_key(|a| a.hours);
        Self {
            anchors: v,
            intervals: intervals.to_vec(),
        }
    }

    /// The longest horizon served.
    pub fn max_hours(&self) -> u32 {
        self.anchors.last().map_or(1, |a| a.hours)
    }

    /// How `hours` is served; `None` outside `1..=max_hours`.
    pub fn plan(&self, hours: u32) -> Option<Plan> {
        let after = self.anchors.iter().position(|a| a.hours >= hours)?;
        if self.anchors[after].hours == hours {
            return Some(Plan::At(after));
        }
        if after == 0 {
            return None;
        }
        let (b, a) = (self.anchors[after - 1].hours, self.anchors[after].hours);
        Some(Plan::Between {
            before: after - 1,
            after,
            weight: f64::from(hours - b) / f64::from(a - b),
        })
    }

    /// Anchor `i`'s forecast from its feature vector (never below 0).
    pub fn value(&self, i: usize, x: &[f64]) -> f64 {
        self.anchors[i].predictor.predict(x).max(0.0)
    }

    /// The interval of `hours` ahead, if calibrated.
    pub fn interval(&self, hours: u32) -> Option<&Interval> {
        self.intervals.get((hours as usize).checked_sub(1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calibrated_interval_covers_its_share_of_fresh_rows() {
        // Residuals proportional to the level: truth = p + (last + 10) * e, e uniform in
        // [-0.5, 0.5] (truth stays positive).
        let n = 10_000;
        let e = |i: usize| ((i * 7919) % 2001) as f64 / 2000.0 - 0.5;
        let last: Vec<f64> = (0..n).map(|i| (i % 300) as f64).collect();
        let p: Vec<f64> = last.iter().map(|l| l + 10.0).collect();
        let truth: Vec<f64> = (0..n).map(|i| p[i] + (last[i] + 10.0) * e(i)).collect();
        let iv = Interval::calibrate(&truth, &p, &last, 0.9).unwrap();
        assert!(
            (iv.lower + 0.45).abs() < 0.01 && (iv.upper - 0.45).abs() < 0.01,
            "{iv:?}"
        );
        // Other rows of the same law: about 90 % inside.
        let shifted: Vec<f64> = (0..n)
            .map(|i| p[i] + (last[i] + 10.0) * e(i + 17))
            .collect();
        let c = iv.coverage_of(&shifted, &p, &last);
        assert!((c - 0.9).abs() < 0.02, "coverage {c}");
        // Narrow in clean air, wide in smog; never below 0.
        let (lo, hi) = iv.bounds(5.0, 5.0);
        assert!(lo < 5.0 && hi > 5.0);
        assert_eq!(iv.bounds(1.0, 30.0).0, 0.0);
        assert!(hi - lo < iv.bounds(250.0, 250.0).1 - iv.bounds(250.0, 250.0).0);
        assert!(Interval::calibrate(&truth[..5], &p[..5], &last[..5], 0.9).is_none());
    }

    #[test]
    fn horizons_between_anchors_are_interpolated_and_others_refused() {
        let h = |hours, v| Horizon {
            hours,
            model: Model::Linear {
                mean: vec![0.0],
                scale: vec![1.0],
                weights: vec![0.0],
                intercept: v,
            },
        };
        let a = Anchors::new(&Model::Persistence, &[h(24, 40.0), h(6, 20.0)], &[]);
        assert_eq!(a.max_hours(), 24);
        assert_eq!(a.plan(1), Some(Plan::At(0)));
        assert_eq!(a.plan(6), Some(Plan::At(1)));
        let mid = a.plan(15).unwrap();
        assert_eq!(
            mid,
            Plan::Between {
                before: 1,
                after: 2,
                weight: 0.5
            }
        );
        assert_eq!(mid.uses().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(a.plan(0), None);
        assert_eq!(a.plan(25), None);
        let values: Vec<f64> = (0..3).map(|i| a.value(i, &[7.0])).collect();
        assert_eq!(values, [7.0, 20.0, 40.0]);
        assert_eq!(mid.value(&values), 30.0);
        assert!(a.interval(1).is_none());
    }
}
