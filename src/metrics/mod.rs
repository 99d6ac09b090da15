//! Measurements the kit keeps while it runs (latency histograms and rates),
//! the snapshot [`Kit::metrics`](crate::Kit::metrics) takes of a namespace,
//! and its Prometheus rendering ([`render_prometheus`]).

use std::time::Duration;

use serde::Serialize;

mod collect;
mod histogram;
pub(crate) mod prometheus;
mod rate;
pub(crate) mod registry;
mod reporter;
mod snapshot;
pub(crate) mod units;

pub(crate) use histogram::Histogram;
pub use prometheus::{render_prometheus, PROMETHEUS_CONTENT_TYPE};
pub(crate) use rate::RateMeter;
pub use reporter::ReporterHandle;
pub use snapshot::{
    ConsumerLag, ConsumerMetrics, DeadLetterMetrics, LeaseMetrics, LiveConsumerMetrics, Metrics,
    OutboxMetrics, SenderMetrics,
};

/// Percentiles of a latency distribution (`None` until something was recorded).
///
/// Serializes every duration as seconds (a float).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    /// How many durations were recorded.
    pub count: u64,
    /// Median.
    #[serde(serialize_with = "units::opt_secs")]
    pub p50: Option<Duration>,
    /// 95th percentile.
    #[serde(serialize_with = "units::opt_secs")]
    pub p95: Option<Duration>,
    /// 99th percentile.
    #[serde(serialize_with = "units::opt_secs")]
    pub p99: Option<Duration>,
    /// Arithmetic mean.
    #[serde(serialize_with = "units::opt_secs")]
    pub mean: Option<Duration>,
    /// Largest recorded.
    #[serde(serialize_with = "units::opt_secs")]
    pub max: Option<Duration>,
}
