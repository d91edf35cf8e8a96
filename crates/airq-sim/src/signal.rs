//! A realistic synthetic signal for one city's sensors.
//!
//! Per sensor: a base level, a PM2.5/PM10 ratio and an NO2 level. Over time: diurnal
//! cycles in local solar time (NO2 rush-hour peaks at about 08:00 and 18:30, PM evening
//! build-up), lower weekend traffic, slow city-wide "weather" episodes (a log-AR(1)
//! process with a ~36 h time constant) and measurement noise.

use airq_domain::{Location, Measurements};
use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// Time constant of weather episodes, hours.
const EPISODE_TAU_HOURS: f64 = 36.0;
/// Standard deviation of the episode multiplier on log scale.
const EPISODE_SIGMA: f64 = 0.45;

/// Static character of one sensor.
#[derive(Debug, Clone)]
pub struct SensorProfile {
    pub sensor_id: String,
    pub location: Location,
    pm2_5_base: f64,
    /// PM10 / PM2.5, typically 1.5-2.2 in urban air.
    pm10_ratio: f64,
    no2_base: f64,
}

impl SensorProfile {
    /// `n` sensors scattered within ~5 km of `center`, named `CAP_001`...
    pub fn fleet(n: usize, center: Location, rng: &mut impl Rng) -> Vec<SensorProfile> {
        (1..=n)
            .map(|i| SensorProfile {
                sensor_id: format!("CAP_{i:03}"),
                location: Location {
                    lat: round_to(center.lat + rng.random_range(-0.045..0.045), 4),
                    lon: round_to(center.lon + rng.random_range(-0.065..0.065), 4),
                },
                pm2_5_base: rng.random_range(8.0..20.0),
                pm10_ratio: rng.random_range(1.5..2.2),
                no2_base: rng.random_range(20.0..45.0),
            })
            .collect()
    }
}

/// The shared weather state, advanced once per tick.
#[derive(Debug, Clone, Default)]
pub struct Weather {
    log_level: f64,
}

impl Weather {
    pub fn advance(&mut self, dt_secs: f64, rng: &mut impl Rng) {
        let phi = (-dt_secs / (EPISODE_TAU_HOURS * 3600.0)).exp();
        let z: f64 = StandardNormal.sample(rng);
        self.log_level = self.log_level * phi + EPISODE_SIGMA * (1.0 - phi * phi).sqrt() * z;
    }

    pub fn multiplier(&self) -> f64 {
        self.log_level.exp()
    }
}

fn gauss(x: f64, mu: f64, sigma: f64) -> f64 {
    (-(x - mu).powi(2) / (2.0 * sigma * sigma)).exp()
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

/// Local solar hour (0..24) from UTC and longitude.
pub fn local_hour(t: DateTime<Utc>, lon: f64) -> f64 {
    let utc = f64::from(t.hour()) + f64::from(t.minute()) / 60.0 + f64::from(t.second()) / 3600.0;
    (utc + lon / 15.0).rem_euclid(24.0)
}

/// Expected (noise-free) concentrations of a sensor at time `t`.
pub fn expected(p: &SensorProfile, t: DateTime<Utc>, weather: &Weather) -> Measurements {
    let h = local_hour(t, p.location.lon);
    let weekend = matches!(t.weekday(), Weekday::Sat | Weekday::Sun);
    let traffic = if weekend { 0.7 } else { 1.0 };
    let no2_diurnal = 0.65 + traffic * (0.8 * gauss(h, 8.0, 1.5) + 0.7 * gauss(h, 18.5, 1.8));
    let pm_diurnal = 0.85 + 0.2 * gauss(h, 8.5, 2.0) + 0.35 * gauss(h, 21.0, 3.0);
    let w = weather.multiplier();
    let pm2_5 = p.pm2_5_base * pm_diurnal * if weekend { 0.9 } else { 1.0 } * w;
    Measurements {
        pm2_5: Some(pm2_5),
        pm10: Some(pm2_5 * p.pm10_ratio),
        no2: Some(p.no2_base * no2_diurnal * w.sqrt()),
    }
}

/// One noisy measurement around [`expected`], rounded to 0.1 ug/m3.
pub fn sample(
    p: &SensorProfile,
    t: DateTime<Utc>,
    weather: &Weather,
    rng: &mut impl Rng,
) -> Measurements {
    let e = expected(p, t, weather);
    let mut noisy = |v: Option<f64>, rel: f64| {
        v.map(|v| {
            let z: f64 = StandardNormal.sample(rng);
            let a: f64 = StandardNormal.sample(rng);
            round_to((v * (1.0 + rel * z) + 0.3 * a).max(0.0), 1)
        })
    };
    let pm2_5 = noisy(e.pm2_5, 0.06);
    // PM10 noise is partly shared with PM2.5 (same particles), so keep it >= PM2.5.
    let pm10 = noisy(e.pm10, 0.05)
        .zip(pm2_5)
        .map(|(pm10, pm25)| pm10.max(pm25));
    Measurements {
        pm2_5,
        pm10,
        no2: noisy(e.no2, 0.07),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn profile() -> SensorProfile {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        SensorProfile::fleet(
            1,
            Location {
                lat: 48.8566,
                lon: 2.3522,
            },
            &mut rng,
        )
        .remove(0)
    }

    #[test]
    fn no2_peaks_at_rush_hour_on_weekdays() {
        let p = profile();
        let w = Weather::default();
        let at = |s: &str| expected(&p, s.parse().unwrap(), &w).no2.unwrap();
        // Monday 2024-01-15, Paris solar time ~ UTC + 9 min.
        assert!(at("2024-01-15T08:00:00Z") > 1.5 * at("2024-01-15T03:00:00Z"));
        assert!(at("2024-01-15T08:00:00Z") > at("2024-01-13T08:00:00Z")); // Saturday
    }

    #[test]
    fn pm25_stays_below_pm10() {
        let p = profile();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut w = Weather::default();
        let t0: DateTime<Utc> = "2024-01-15T00:00:00Z".parse().unwrap();
        for k in 0..2000 {
            w.advance(60.0, &mut rng);
            let m = sample(&p, t0 + chrono::Duration::minutes(k), &w, &mut rng);
            assert!(m.pm2_5.unwrap() <= m.pm10.unwrap());
            assert!(m.pm2_5.unwrap() >= 0.0);
        }
    }

    #[test]
    fn same_seed_same_signal() {
        let run = || {
            let mut rng = ChaCha8Rng::seed_from_u64(42);
            let mut w = Weather::default();
            w.advance(3600.0, &mut rng);
            sample(
                &profile(),
                "2024-01-15T12:00:00Z".parse().unwrap(),
                &w,
                &mut rng,
            )
        };
        assert_eq!(run(), run());
    }
}
