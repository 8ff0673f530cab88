//! Lock-free metric cells for the hot path, and a writer that renders them as Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// A count that only goes up: requests, failures, bytes.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    /// The count now.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down: open connections, requests in flight.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    /// Takes one away.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    /// Sets the value to `v`.
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }
    /// The value now.
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
    /// Adds one unless the value is `limit` or more already: whether it added.
    pub fn inc_below(&self, limit: i64) -> bool {
        self.0
            .fetch_update(Relaxed, Relaxed, |v| (v < limit).then_some(v + 1))
            .is_ok()
    }
}

/// Something that counts its open connections in a gauge: a listener's service.
pub trait CountsOpen {
    /// The gauge of connections open now.
    fn open_gauge(&self) -> &Gauge;
}

/// One open connection of `T`'s: counted in `T`'s gauge from [`Open::new`] until dropped,
/// however the connection ends; and the connection's handle on `T`.
pub struct Open<T: CountsOpen>(Arc<T>);

impl<T: CountsOpen> Open<T> {
    /// Counts one more open connection of `service`'s.
    pub fn new(service: Arc<T>) -> Self {
        service.open_gauge().inc();
        Open(service)
    }

    /// The service the connection belongs to.
    pub fn service(&self) -> &Arc<T> {
        &self.0
    }
}

impl<T: CountsOpen> Drop for Open<T> {
    fn drop(&mut self) {
        self.0.open_gauge().dec();
    }
}

/// Upper bounds, in seconds, of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with the fixed [`LATENCY_BUCKETS`]; one atomic add per observation.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per-bucket (not cumulative) counts; the last slot is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Counts one observation of `d` in its bucket and in the sum.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// The bucket counts now, to subtract from a later reading.
    pub fn buckets(&self) -> Buckets {
        Buckets(std::array::from_fn(|i| self.buckets[i].load(Relaxed)))
    }
}

/// A reading of a [`Histogram`]'s buckets (per bucket, not cumulative; the last is +Inf).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Buckets(pub [u64; LATENCY_BUCKETS.len() + 1]);

impl Buckets {
    /// Adds `other`'s counts (several servers' histograms read as one).
    pub fn add(&mut self, other: &Buckets) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// What was observed between `earlier` and this reading; `None` when a bucket went back (the
    /// histogram restarted, as after a reload, or a sum of several lost one of them, as when a
    /// pool's servers change): what was observed meanwhile can't be told.
    pub fn since(&self, earlier: &Buckets) -> Option<Buckets> {
        if self
            .0
            .iter()
            .zip(&earlier.0)
            .any(|(now, before)| now < before)
        {
            return None;
        }
        Some(Buckets(std::array::from_fn(|i| self.0[i] - earlier.0[i])))
    }

    /// Observations counted.
    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The `q` quantile in seconds, interpolated within its bucket as Prometheus's
    /// `histogram_quantile` does; `None` when nothing was observed. Past the last bound it is
    /// the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, n) in self.0.iter().enumerate() {
            if *n > 0 && (below + n) as f64 >= rank {
                let Some(upper) = LATENCY_BUCKETS.get(i) else {
                    return LATENCY_BUCKETS.last().copied();
                };
                let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
                let within = (rank - below as f64) / *n as f64;
                return Some(lower + (upper - lower) * within);
            }
            below += n;
        }
        LATENCY_BUCKETS.last().copied()
    }
}

/// What a listener has served so far, read for the dashboard's rate, error and latency
/// graphs: totals, so that two readings give a rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Requests, commands, transactions or connections: what the listener counts as work.
    pub requests: u64,
    /// Those that failed as the client saw it (5xx, an error reply, no server).
    pub errors: u64,
    /// How long they took, where the layer measures it.
    pub latency: Option<Buckets>,
}

struct Family {
    help: &'static str,
    kind: &'static str,
    samples: String,
}

/// Collects samples from every layer, then renders each family once with HELP and TYPE lines,
/// its samples together, as the text format requires.
#[derive(Default)]
pub struct MetricsWriter {
    families: BTreeMap<&'static str, Family>,
}

impl MetricsWriter {
    /// A writer with no samples yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn family(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
    ) -> &mut String {
        &mut self
            .families
            .entry(name)
            .or_insert_with(|| Family {
                help,
                kind,
                samples: String::new(),
            })
            .samples
    }

    /// Adds a counter sample to family `name`; the first sample of a family sets its `help`.
    pub fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: u64,
    ) {
        let out = self.family(name, help, "counter");
        sample(out, name, "", labels, None, value as f64);
    }

    /// Adds a gauge sample to family `name`; the first sample of a family sets its `help`.
    pub fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let out = self.family(name, help, "gauge");
        sample(out, name, "", labels, None, value);
    }

    /// Adds the buckets, sum (in seconds) and count of `h` to family `name`; the first sample of a
    /// family sets its `help`.
    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        h: &Histogram,
    ) {
        let out = self.family(name, help, "histogram");
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i].load(Relaxed);
            sample(
                out,
                name,
                "_bucket",
                labels,
                Some(&bound.to_string()),
                cumulative as f64,
            );
        }
        cumulative += h.buckets[LATENCY_BUCKETS.len()].load(Relaxed);
        sample(
            out,
            name,
            "_bucket",
            labels,
            Some("+Inf"),
            cumulative as f64,
        );
        let sum = h.sum_micros.load(Relaxed) as f64 / 1e6;
        sample(out, name, "_sum", labels, None, sum);
        sample(out, name, "_count", labels, None, cumulative as f64);
    }

    /// The whole exposition, families in name order.
    pub fn finish(self) -> String {
        let mut out = String::new();
        for (name, f) in self.families {
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {}", f.kind);
            out.push_str(&f.samples);
        }
        out
    }
}

fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<&str>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let le = le.map(|v| ("le", v));
        for (i, (k, v)) in labels.iter().copied().chain(le).enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"");
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_once_with_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut w = MetricsWriter::new();
        w.counter("strata_x_total", "X.", &[("listener", "a")], 1);
        w.histogram(
            "strata_lat_seconds",
            "Latency.",
            &[("listener", "a\"b")],
            &h,
        );
        w.counter("strata_x_total", "X.", &[("listener", "b")], 2);
        let text = w.finish();
        assert_eq!(text.matches("# TYPE strata_x_total counter").count(), 1);
        assert!(
            text.contains("strata_x_total{listener=\"a\"} 1\nstrata_x_total{listener=\"b\"} 2\n")
        );
        assert!(text.contains("strata_lat_seconds_bucket{listener=\"a\\\"b\",le=\"0.0005\"} 1\n"));
        assert!(text.contains("strata_lat_seconds_bucket{listener=\"a\\\"b\",le=\"0.005\"} 2\n"));
        assert!(text.contains("strata_lat_seconds_bucket{listener=\"a\\\"b\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("strata_lat_seconds_count{listener=\"a\\\"b\"} 3\n"));
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_like_prometheus() {
        let h = Histogram::default();
        for _ in 0..90 {
            h.observe(Duration::from_micros(700)); // (0.0005, 0.001]
        }
        for _ in 0..10 {
            h.observe(Duration::from_millis(20)); // (0.01, 0.025]
        }
        let before = Buckets::default();
        let b = h.buckets().since(&before).unwrap();
        assert_eq!(b.count(), 100);
        // rank 50 of the 90 in (0.5 ms, 1 ms]: 0.5 + 0.5 * 50/90 ms
        let p50 = b.quantile(0.5).unwrap();
        assert!(
            (p50 - (0.0005 + 0.0005 * 50.0 / 90.0)).abs() < 1e-12,
            "{p50}"
        );
        // rank 99 is the 9th of 10 in (10 ms, 25 ms]
        let p99 = b.quantile(0.99).unwrap();
        assert!((p99 - (0.01 + 0.015 * 0.9)).abs() < 1e-12, "{p99}");
        assert_eq!(Buckets::default().quantile(0.5), None);
        h.observe(Duration::from_secs(60));
        let later = h.buckets().since(&h.buckets()).unwrap();
        assert_eq!(later.count(), 0);
        let only_slow = h.buckets().since(&b).unwrap();
        assert_eq!(
            only_slow.quantile(0.5),
            Some(10.0),
            "past the last bound: the last bound"
        );
        // a histogram that restarted (or a sum that lost a part) tells nothing of the interval
        assert_eq!(Buckets::default().since(&b), None);
    }
}
