//! Prometheus metrics for the edge, rendered in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Requests by status and the latency histogram of one endpoint.
#[derive(Debug, Default)]
struct EndpointStats {
    by_status: BTreeMap<u16, u64>,
    latency: Histogram,
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Edge metrics. Label sets are bounded by the number of bound endpoints.
#[derive(Debug, Default)]
pub struct Metrics {
    /// One lock per request, and an allocation only the first time an endpoint is seen.
    endpoints: Mutex<BTreeMap<String, EndpointStats>>,
    /// Live tunnel sessions.
    pub sessions_active: AtomicI64,
    /// Open tunnel streams.
    pub streams_active: AtomicI64,
    /// Public TCP/TLS connections accepted.
    pub connections_total: AtomicU64,
    /// Refused tunnel handshakes.
    pub handshakes_refused: AtomicU64,
}

impl Metrics {
    /// Records one HTTP request for `endpoint` (its URL, or `-` for none).
    pub fn record_request(&self, endpoint: &str, status: u16, elapsed: Duration) {
        let Ok(mut m) = self.endpoints.lock() else {
            return;
        };
        if !m.contains_key(endpoint) {
            m.insert(endpoint.to_owned(), EndpointStats::default());
        }
        let Some(e) = m.get_mut(endpoint) else {
            return;
        };
        *e.by_status.entry(status).or_default() += 1;
        let h = &mut e.latency;
        let secs = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// Renders all metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP wicket_http_requests_total HTTP requests handled by the edge.\n");
        out.push_str("# TYPE wicket_http_requests_total counter\n");
        let stats = self.endpoints.lock();
        if let Ok(m) = &stats {
            for (ep, e) in m.iter() {
                let ep = label(ep);
                for (status, n) in &e.by_status {
                    let _ = writeln!(
                        out,
                        "wicket_http_requests_total{{endpoint=\"{ep}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }
        out.push_str("# HELP wicket_http_request_duration_seconds Time to response headers.\n");
        out.push_str("# TYPE wicket_http_request_duration_seconds histogram\n");
        if let Ok(m) = &stats {
            for (ep, e) in m.iter() {
                let ep = label(ep);
                let h = &e.latency;
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "wicket_http_request_duration_seconds_bucket{{endpoint=\"{ep}\",le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "wicket_http_request_duration_seconds_bucket{{endpoint=\"{ep}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "wicket_http_request_duration_seconds_sum{{endpoint=\"{ep}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "wicket_http_request_duration_seconds_count{{endpoint=\"{ep}\"}} {}",
                    h.count
                );
            }
        }
        drop(stats);
        for (name, help, kind, v) in [
            (
                "wicket_sessions_active",
                "Connected agent sessions.",
                "gauge",
                self.sessions_active.load(Ordering::Relaxed),
            ),
            (
                "wicket_streams_active",
                "Open tunnel streams.",
                "gauge",
                self.streams_active.load(Ordering::Relaxed),
            ),
            (
                "wicket_tcp_connections_total",
                "Public TCP and TLS connections accepted.",
                "counter",
                i64::try_from(self.connections_total.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
            ),
            (
                "wicket_handshakes_refused_total",
                "Tunnel handshakes refused.",
                "counter",
                i64::try_from(self.handshakes_refused.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        out
    }
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.record_request("https://a.test", 200, Duration::from_millis(3));
        m.record_request("https://a.test", 200, Duration::from_millis(30));
        m.sessions_active.fetch_add(1, Ordering::Relaxed);
        let text = m.render();
        assert!(
            text.contains(
                r#"wicket_http_requests_total{endpoint="https://a.test",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"le="0.005"} 1"#), "{text}");
        assert!(text.contains(r#"le="+Inf"} 2"#), "{text}");
        assert!(text.contains("wicket_sessions_active 1"), "{text}");
    }
}
