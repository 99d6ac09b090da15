//! Measurements the kit keeps while it runs: latency histograms and rates.

use std::time::Duration;

mod histogram;
mod rate;

pub(crate) use histogram::Histogram;
pub(crate) use rate::RateMeter;

/// Percentiles of a latency distribution (`None` until something was recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// How many durations were recorded.
    pub count: u64,
    /// Median.
    pub p50: Option<Duration>,
    /// 95th percentile.
    pub p95: Option<Duration>,
    /// 99th percentile.
    pub p99: Option<Duration>,
    /// Arithmetic mean.
    pub mean: Option<Duration>,
    /// Largest recorded.
    pub max: Option<Duration>,
}
