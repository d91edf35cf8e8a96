//! Prometheus text exposition of the service's counters, without a metrics library.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Latency bucket bounds, seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Debug, Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// (route, status) -> latency histogram.
    requests: Mutex<BTreeMap<(String, u16), Series>>,
}

impl Metrics {
    pub fn observe(&self, route: &str, status: u16, seconds: f64) {
        let Ok(mut m) = self.requests.lock() else {
            return;
        };
        let s = m.entry((route.to_owned(), status)).or_default();
        s.count += 1;
        s.sum += seconds;
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    pub fn render(&self, model_version: Option<&str>) -> String {
        let mut out = String::new();
        out.push_str("# HELP airq_predict_requests_total Requests by route and status.\n# TYPE airq_predict_requests_total counter\n");
        let m = match self.requests.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        for ((route, status), s) in m.iter() {
            out.push_str(&format!(
                "airq_predict_requests_total{{route=\"{route}\",status=\"{status}\"}} {}\n",
                s.count
            ));
        }
        out.push_str("# HELP airq_predict_request_seconds Request latency.\n# TYPE airq_predict_request_seconds histogram\n");
        for ((route, status), s) in m.iter() {
            let l = format!("route=\"{route}\",status=\"{status}\"");
            for (i, b) in BUCKETS.iter().enumerate() {
                out.push_str(&format!(
                    "airq_predict_request_seconds_bucket{{{l},le=\"{b}\"}} {}\n",
                    s.buckets[i]
                ));
            }
            out.push_str(&format!(
                "airq_predict_request_seconds_bucket{{{l},le=\"+Inf\"}} {}\n",
                s.count
            ));
            out.push_str(&format!("airq_predict_request_seconds_sum{{{l}}} {}\nairq_predict_request_seconds_count{{{l}}} {}\n", s.sum, s.count));
        }
        out.push_str("# HELP airq_predict_model_loaded 1 when a model is loaded; its version as a label.\n# TYPE airq_predict_model_loaded gauge\n");
        match model_version {
            Some(v) => out.push_str(&format!("airq_predict_model_loaded{{version=\"{v}\"}} 1\n")),
            None => out.push_str("airq_predict_model_loaded 0\n"),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = super::Metrics::default();
        m.observe("/predict", 200, 0.002);
        m.observe("/predict", 200, 0.02);
        let text = m.render(Some("3"));
        assert!(text.contains("airq_predict_requests_total{route=\"/predict\",status=\"200\"} 2"));
        assert!(text.contains("le=\"0.0025\"} 1\n"));
        assert!(text.contains("le=\"0.025\"} 2\n"));
        assert!(text.contains("airq_predict_model_loaded{version=\"3\"} 1"));
    }
}
