//! EPA NowCast for PM2.5 and PM10 (AirNow "The NowCast for PM2.5 and PM10").
//!
//! Given the hourly averages of the last 12 hours (index 0 = the current hour), with
//! `w* = c_min / c_max` and `w = max(w*, 0.5)`, the NowCast is
//! `sum(w^i c_i) / sum(w^i)` over the hours that have data. It needs 2 of the 3 most
//! recent hours; EPA computes it on raw hourly values (no truncation).

/// NowCast of up to 12 hourly averages, most recent first; `None` marks a missing hour.
pub fn nowcast_pm(hourly: &[Option<f64>]) -> Option<f64> {
    let hours = &hourly[..hourly.len().min(12)];
    let recent_valid = hours.iter().take(3).filter(|h| h.is_some()).count();
    if recent_valid < 2 {
        return None;
    }
    let present = || {
        hours
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.map(|c| (i, c)))
    };
    let (min, max) = present().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, c)| {
        (lo.min(c), hi.max(c))
    });
    let w = if max > 0.0 { (min / max).max(0.5) } else { 1.0 };
    let (num, den) = present().fold((0.0, 0.0), |(n, d), (i, c)| {
        let wi = w.powi(i as i32);
        (n + wi * c, d + wi)
    });
    Some(num / den)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn constant_air_gives_the_plain_average() {
        let h = vec![Some(20.0); 12];
        assert!(close(nowcast_pm(&h).unwrap(), 20.0));
    }

    #[test]
    fn rapid_change_clamps_the_weight_to_one_half() {
        // c = [40, 10, 10]: w* = 0.25 -> w = 0.5; (40 + 5 + 2.5) / (1 + 0.5 + 0.25) = 27.142857...
        let h = [Some(40.0), Some(10.0), Some(10.0)];
        assert!(close(nowcast_pm(&h).unwrap(), 47.5 / 1.75));
    }

    #[test]
    fn weights_by_min_over_max_when_above_one_half() {
        // c = [30, 24, 27]: w = 24/30 = 0.8; (30 + 0.8*24 + 0.64*27) / (1 + 0.8 + 0.64)
        let h = [Some(30.0), Some(24.0), Some(27.0)];
        let expected = (30.0 + 0.8 * 24.0 + 0.64 * 27.0) / 2.44;
        assert!(close(nowcast_pm(&h).unwrap(), expected));
    }

    #[test]
    fn missing_hours_are_skipped_but_keep_their_age() {
        // c = [30, None, 27]: w = 0.9; (30 + 0.81*27) / (1 + 0.81)
        let h = [Some(30.0), None, Some(27.0)];
        assert!(close(nowcast_pm(&h).unwrap(), (30.0 + 0.81 * 27.0) / 1.81));
    }

    #[test]
    fn needs_two_of_the_three_most_recent_hours() {
        assert_eq!(nowcast_pm(&[Some(30.0), None, None, Some(20.0)]), None);
        assert_eq!(nowcast_pm(&[]), None);
    }

    #[test]
    fn all_zero_hours_give_zero() {
        assert_eq!(nowcast_pm(&[Some(0.0), Some(0.0)]), Some(0.0));
    }
}
