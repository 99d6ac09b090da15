//! A lock-free latency histogram with log-linear buckets (16 per power of
//! two, so any reported percentile is within about 6 % of the true value).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::LatencySummary;

const SUB_BUCKETS: u64 = 16;
const SUB_BITS: u32 = 4;
/// Values below 16 µs get one bucket each; above, 16 per power of two up to 2^64.
const BUCKETS: usize = (SUB_BUCKETS + (64 - SUB_BITS as u64) * SUB_BUCKETS) as usize;

/// Counts durations (in microseconds) into buckets; `record` is a couple of
/// atomic adds, safe from any number of threads.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB_BUCKETS {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // ≥ SUB_BITS
    let sub = (v >> (exp - SUB_BITS)) & (SUB_BUCKETS - 1);
    (SUB_BUCKETS + (exp - SUB_BITS) as u64 * SUB_BUCKETS + sub) as usize
}

/// The middle of bucket `i` (its representative value).
fn midpoint(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB_BUCKETS {
        return i;
    }
    let exp = (i - SUB_BUCKETS) / SUB_BUCKETS + SUB_BITS as u64;
    let sub = (i - SUB_BUCKETS) % SUB_BUCKETS;
    let shift = exp - SUB_BITS as u64;
    let low = (SUB_BUCKETS + sub) << shift;
    low.saturating_add((1u64 << shift) / 2)
}

impl Histogram {
    /// Records one duration.
    pub(crate) fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.buckets[index(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Number of recorded durations.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The value at quantile `q` (0..=1), `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let v = midpoint(i).min(self.max_us.load(Ordering::Relaxed));
                return Some(Duration::from_micros(v));
            }
        }
        Some(Duration::from_micros(self.max_us.load(Ordering::Relaxed)))
    }

    /// Adds every duration recorded in `other` to this histogram.
    pub(crate) fn absorb(&self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter().zip(other.buckets.iter()) {
            let n = theirs.load(Ordering::Relaxed);
            if n > 0 {
                mine.fetch_add(n, Ordering::Relaxed);
            }
        }
        self.count
            .fetch_add(other.count.load(Ordering::Relaxed), Ordering::Relaxed);
        self.sum_us
            .fetch_add(other.sum_us.load(Ordering::Relaxed), Ordering::Relaxed);
        self.max_us
            .fetch_max(other.max_us.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The summary of several histograms taken together.
    pub(crate) fn merged_summary<'a>(
        all: impl IntoIterator<Item = &'a Histogram>,
    ) -> LatencySummary {
        let merged = Histogram::default();
        for h in all {
            merged.absorb(h);
        }
        merged.summary()
    }

    /// p50/p95/p99, mean and max.
    pub(crate) fn summary(&self) -> LatencySummary {
        let count = self.count();
        LatencySummary {
            count,
            p50: self.quantile(0.50),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
            mean: (count > 0)
                .then(|| Duration::from_micros(self.sum_us.load(Ordering::Relaxed) / count)),
            max: (count > 0).then(|| Duration::from_micros(self.max_us.load(Ordering::Relaxed))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 2, u64::MAX]) {
            let i = index(v);
            assert!(i >= last && i < BUCKETS);
            last = i;
            if v >= 16 {
                let mid = midpoint(i) as f64;
                assert!((mid - v as f64).abs() / v as f64 <= 0.07, "{v} -> {mid}");
            }
        }
    }

    #[test]
    fn percentiles() {
        let h = Histogram::default();
        assert!(h.quantile(0.5).is_none());
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.count, 100);
        let close = |d: Option<Duration>, ms: f64| {
            let got = d.unwrap().as_secs_f64() * 1000.0;
            assert!((got - ms).abs() / ms < 0.07, "{got} vs {ms}");
        };
        close(s.p50, 50.0);
        close(s.p95, 95.0);
        close(s.p99, 99.0);
        assert_eq!(s.max, Some(Duration::from_millis(100)));
        close(s.mean, 50.5);
    }

    #[test]
    fn merged_histograms_add_up() {
        let (a, b) = (Histogram::default(), Histogram::default());
        for ms in 1..=50u64 {
            a.record(Duration::from_millis(ms));
        }
        for ms in 51..=100u64 {
            b.record(Duration::from_millis(ms));
        }
        let s = Histogram::merged_summary([&a, &b]);
        assert_eq!(s.count, 100);
        let p50 = s.p50.unwrap().as_secs_f64() * 1000.0;
        assert!((p50 - 50.0).abs() / 50.0 < 0.07, "{p50}");
        assert_eq!(s.max, Some(Duration::from_millis(100)));
    }
}
