//! The last five minutes of each listener's traffic, kept in memory for the dashboard's
//! sparklines: every [`INTERVAL`] the running layers' totals are read, and the difference from
//! the reading before becomes one point (rate, error rate, latency percentiles).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use strata_metrics::Traffic;
use strata_net::lock;

/// How often the totals are read.
pub(crate) const INTERVAL: Duration = Duration::from_secs(2);
/// How much history is kept.
const WINDOW: Duration = Duration::from_secs(300);
const POINTS: usize = (WINDOW.as_secs() / INTERVAL.as_secs()) as usize;

/// One interval of one listener.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    /// When the interval ended, in seconds since the epoch.
    at: f64,
    per_second: f64,
    errors_per_second: f64,
    /// p50, p95, p99 in milliseconds; `None` when nothing was timed in the interval.
    latency_ms: Option<[f64; 3]>,
}

struct Series {
    last: Traffic,
    /// When `last` was read, on the monotonic clock (a wall clock stepped back by NTP must not
    /// freeze the graphs).
    last_at: Instant,
    points: VecDeque<Point>,
    /// Whether the last reading saw this listener (one that went away is dropped).
    seen: bool,
}

/// Every listener's recent points, keyed by (layer, listener).
#[derive(Default)]
pub(crate) struct History {
    series: Mutex<BTreeMap<(String, String), Series>>,
}

impl History {
    /// Takes one reading of every listener's totals at `now`; `at` is the same moment on the
    /// wall clock, what the points are labelled with.
    pub(crate) fn record(
        &self,
        at: SystemTime,
        now: Instant,
        readings: Vec<(&'static str, String, Traffic)>,
    ) {
        let mut all = lock(&self.series);
        for s in all.values_mut() {
            s.seen = false;
        }
        for (layer, listener, t) in readings {
            let key = (layer.to_string(), listener);
            let Some(s) = all.get_mut(&key) else {
                all.insert(
                    key,
                    Series {
                        last: t,
                        last_at: now,
                        points: VecDeque::with_capacity(POINTS),
                        seen: true,
                    },
                );
                continue;
            };
            s.seen = true;
            let secs = now.saturating_duration_since(s.last_at).as_secs_f64();
            if secs <= 0.0 {
                continue;
            }
            // a listener replaced by a reload counts from zero again, and a pool whose servers
            // changed sums other histograms: no latency point for that interval
            let latency = match (t.latency, s.last.latency) {
                (Some(now), Some(before)) => now.since(&before),
                (Some(now), None) => Some(now),
                _ => None,
            };
            let ms = |q| latency.and_then(|b| b.quantile(q)).map(|s| s * 1000.0);
            let point = Point {
                at: at
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64(),
                per_second: t.requests.saturating_sub(s.last.requests) as f64 / secs,
                errors_per_second: t.errors.saturating_sub(s.last.errors) as f64 / secs,
                latency_ms: match (ms(0.5), ms(0.95), ms(0.99)) {
                    (Some(a), Some(b), Some(c)) => Some([a, b, c]),
                    _ => None,
                },
            };
            if s.points.len() == POINTS {
                s.points.pop_front();
            }
            s.points.push_back(point);
            s.last = t;
            s.last_at = now;
        }
        all.retain(|_, s| s.seen);
    }

    /// The points of every listener, oldest first, as `GET /history` answers.
    pub(crate) fn to_json(&self) -> Value {
        let all = lock(&self.series);
        let series: Vec<Value> = all
            .iter()
            .map(|((layer, listener), s)| {
                let points: Vec<Value> = s
                    .points
                    .iter()
                    .map(|p| {
                        let [p50, p95, p99] = p.latency_ms.map_or([None; 3], |l| l.map(Some));
                        json!([
                            round(p.at),
                            round(p.per_second),
                            round(p.errors_per_second),
                            p50.map(round),
                            p95.map(round),
                            p99.map(round)
                        ])
                    })
                    .collect();
                json!({ "layer": layer, "listener": listener, "points": points })
            })
            .collect();
        json!({
            "interval_seconds": INTERVAL.as_secs(),
            "window_seconds": WINDOW.as_secs(),
            "columns": ["at", "per_second", "errors_per_second", "p50_ms", "p95_ms", "p99_ms"],
            "series": series,
        })
    }
}

/// Three decimals are enough for a graph and keep the JSON short.
fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_metrics::Histogram;

    fn reading(requests: u64, errors: u64, h: &Histogram) -> Vec<(&'static str, String, Traffic)> {
        vec![(
            "http",
            "web".to_string(),
            Traffic {
                requests,
                errors,
                latency: Some(h.buckets()),
            },
        )]
    }

    #[test]
    fn points_are_rates_and_percentiles_of_each_interval() {
        let h = Histogram::default();
        let history = History::default();
        let (t0, i0) = (UNIX_EPOCH + Duration::from_secs(1_000), Instant::now());
        history.record(t0, i0, reading(100, 0, &h));
        for _ in 0..10 {
            h.observe(Duration::from_millis(20));
        }
        let two = Duration::from_secs(2);
        history.record(t0 + two, i0 + two, reading(120, 4, &h));
        // the wall clock stepped back: the interval is still measured on the monotonic one
        history.record(t0 - two, i0 + 2 * two, reading(120, 4, &h));
        let v = history.to_json();
        let points = v["series"][0]["points"].as_array().unwrap();
        assert_eq!(v["series"][0]["listener"], "web");
        assert_eq!(points.len(), 2, "the first reading only sets the start");
        assert_eq!(points[0][0], 1002.0);
        assert_eq!(points[0][1], 10.0, "20 requests in 2 s");
        assert_eq!(points[0][2], 2.0);
        let p99 = points[0][5].as_f64().unwrap();
        assert!((10.0..=25.0).contains(&p99), "{p99}");
        assert_eq!(points[1][0], 998.0, "labelled with the wall clock");
        assert_eq!(points[1][1], 0.0);
        assert!(points[1][3].is_null(), "nothing timed: no percentile");
    }

    #[test]
    fn keeps_five_minutes_and_forgets_listeners_that_went_away() {
        let h = Histogram::default();
        let history = History::default();
        let (t0, i0) = (UNIX_EPOCH + Duration::from_secs(1_000), Instant::now());
        for i in 0..(POINTS as u32 + 20) {
            history.record(
                t0 + INTERVAL * i,
                i0 + INTERVAL * i,
                reading(u64::from(i), 0, &h),
            );
        }
        let v = history.to_json();
        assert_eq!(v["series"][0]["points"].as_array().unwrap().len(), POINTS);
        history.record(t0, i0 + Duration::from_secs(10_000), Vec::new());
        assert!(history.to_json()["series"].as_array().unwrap().is_empty());
    }

    #[test]
    fn a_listener_that_restarted_counts_from_zero_without_wrapping() {
        let h = Histogram::default();
        let history = History::default();
        let (t0, i0) = (UNIX_EPOCH + Duration::from_secs(1_000), Instant::now());
        history.record(t0, i0, reading(500, 50, &h));
        let two = Duration::from_secs(2);
        history.record(t0 + two, i0 + two, reading(10, 0, &Histogram::default()));
        let v = history.to_json();
        assert_eq!(v["series"][0]["points"][0][1], 0.0);
    }
}
