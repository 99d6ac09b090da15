//! Events per second over a sliding window of one-second slots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SLOTS: usize = 64;

/// Counts events into one-second slots; `rate` averages the last full
/// seconds. `record` is lock-free.
#[derive(Debug)]
pub(crate) struct RateMeter {
    start: Instant,
    /// Second (since `start`) each slot currently counts, plus one (0 = unused).
    slot_second: [AtomicU64; SLOTS],
    slot_count: [AtomicU64; SLOTS],
    total: AtomicU64,
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter {
            start: Instant::now(),
            slot_second: std::array::from_fn(|_| AtomicU64::new(0)),
            slot_count: std::array::from_fn(|_| AtomicU64::new(0)),
            total: AtomicU64::new(0),
        }
    }
}

impl RateMeter {
    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_secs()
    }

    /// Counts `n` events now.
    pub(crate) fn record(&self, n: u64) {
        self.record_at(Instant::now(), n);
    }

    fn record_at(&self, at: Instant, n: u64) {
        let sec = self.second(at);
        let slot = (sec % SLOTS as u64) as usize;
        let tag = sec + 1;
        let old = self.slot_second[slot].load(Ordering::Acquire);
        if old != tag
            && self.slot_second[slot]
                .compare_exchange(old, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.slot_count[slot].store(0, Ordering::Release);
        }
        self.slot_count[slot].fetch_add(n, Ordering::AcqRel);
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    /// Events counted since the meter was created.
    #[allow(dead_code)] // for metrics snapshots
    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Average events per second over the last `window` (whole seconds, at
    /// most 60), not counting the second in progress.
    pub(crate) fn rate(&self, window: Duration) -> f64 {
        self.rate_at(Instant::now(), window)
    }

    fn rate_at(&self, at: Instant, window: Duration) -> f64 {
        let now = self.second(at);
        let secs = window.as_secs().clamp(1, SLOTS as u64 - 4).min(now.max(1));
        let mut sum = 0;
        for back in 1..=secs {
            let Some(sec) = now.checked_sub(back) else {
                break;
            };
            let slot = (sec % SLOTS as u64) as usize;
            if self.slot_second[slot].load(Ordering::Acquire) == sec + 1 {
                sum += self.slot_count[slot].load(Ordering::Acquire);
            }
        }
        sum as f64 / secs as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_full_seconds() {
        let m = RateMeter::default();
        let t0 = m.start;
        for s in 0..10u64 {
            m.record_at(t0 + Duration::from_secs(s) + Duration::from_millis(10), 100);
        }
        // At second 10, the last 5 full seconds (5..=9) had 100 each.
        let at = t0 + Duration::from_secs(10) + Duration::from_millis(500);
        assert_eq!(m.rate_at(at, Duration::from_secs(5)), 100.0);
        assert_eq!(m.total(), 1000);
        // Much later, the window is empty.
        let later = t0 + Duration::from_secs(200);
        assert_eq!(m.rate_at(later, Duration::from_secs(10)), 0.0);
    }
}
