//! What an [`HttpStore`](super::HttpStore) has learned about pipelining
//! against its server, shared by all its pipelines (and its clones): the
//! smoothed round trip, and whether it fell back to one write at a time.
//!
//! A server or proxy that does not answer pipelined requests is recognised
//! by one of three signs, after which every pipeline of the store sends one
//! write at a time (still on keep-alive connections) for the rest of the
//! store's life:
//!
//! - it closes the connection after its first answer while more requests
//!   were outstanding, on two connections in a row (the writes after the
//!   close are sent again: the server processed none of them);
//! - it answers the first request on a connection and then nothing while
//!   more are outstanding, for the *stall timeout*: ten smoothed round
//!   trips, at least 1 s and at most the read timeout (the read timeout
//!   until a round trip was measured); those writes end with an
//!   unknown-outcome [`Timeout`](crate::TransportErrorKind::Timeout);
//! - it answers with HTTP/1.0.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::store::pipeline::PipelineStatus;

/// The shortest stall timeout.
const MIN_STALL: Duration = Duration::from_secs(1);
/// Round trips of silence that make a stall.
const STALL_RTTS: u32 = 10;

/// Whether an [`HttpStore`](super::HttpStore) keeps several writes in
/// flight on one connection; see [`HttpStore::pipelining`](super::HttpStore::pipelining).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pipelining {
    /// Writes of a pipeline go out back to back on one connection and
    /// their answers are read in order.
    On,
    /// The server, or a proxy in front of it, did not answer pipelined
    /// requests: every pipeline of the store sends one write at a time.
    OneAtATime {
        /// What gave it away.
        reason: String,
    },
}

/// The pipelining state of one store and its clones.
#[derive(Debug)]
pub(crate) struct PipeliningState {
    /// The store's base URL, for the log line.
    url: String,
    status: Arc<PipelineStatus>,
    one_at_a_time: AtomicBool,
    /// Smoothed round trip in nanoseconds; 0 before the first sample.
    srtt_nanos: AtomicU64,
    /// Connections in a row that ended after one answer with more
    /// requests outstanding.
    closes_in_a_row: AtomicU32,
}

impl PipeliningState {
    pub(crate) fn new(url: &str) -> Self {
        PipeliningState {
            url: url.to_string(),
            status: Arc::new(PipelineStatus::new()),
            one_at_a_time: AtomicBool::new(false),
            srtt_nanos: AtomicU64::new(0),
            closes_in_a_row: AtomicU32::new(0),
        }
    }

    /// The status every pipeline of the store shares.
    pub(crate) fn status(&self) -> &Arc<PipelineStatus> {
        &self.status
    }

    pub(crate) fn pipelining(&self) -> Pipelining {
        match self.status.fallback() {
            Some(reason) => Pipelining::OneAtATime { reason },
            None => Pipelining::On,
        }
    }

    /// Most requests a connection may have unanswered.
    pub(crate) fn depth(&self) -> usize {
        if self.one_at_a_time.load(Ordering::Acquire) {
            1
        } else {
            usize::MAX
        }
    }

    /// From now on one write at a time, because of `reason` (said once in
    /// the log, at warn).
    pub(crate) fn fall_back(&self, reason: &str) {
        if self.one_at_a_time.swap(true, Ordering::AcqRel) {
            return;
        }
        self.status.fall_back(reason);
        log::warn!(
            target: "eventodb_kit::store::http",
            "{} does not answer pipelined requests ({reason}): writing one at a time from now on",
            self.url
        );
    }

    /// A round trip measured on a request that had none ahead of it.
    pub(crate) fn rtt_sample(&self, sample: Duration) {
        let sample = u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX).max(1);
        let old = self.srtt_nanos.load(Ordering::Relaxed);
        // TCP's smoothing (RFC 6298): 7/8 of the old value, 1/8 of the sample.
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.srtt_nanos.store(new.max(1), Ordering::Relaxed);
    }

    pub(crate) fn smoothed_rtt(&self) -> Option<Duration> {
        match self.srtt_nanos.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// How long a connection that answered its first request may then say
    /// nothing while requests are outstanding: `clamp(10 × smoothed RTT,
    /// 1 s, read_timeout)`, or `read_timeout` before any round trip was
    /// measured.
    pub(crate) fn stall_timeout(&self, read_timeout: Duration) -> Duration {
        match self.smoothed_rtt() {
            Some(rtt) => (rtt * STALL_RTTS).max(MIN_STALL).min(read_timeout),
            None => read_timeout,
        }
    }

    /// A connection ended after `answered` answers with `outstanding`
    /// requests left (unanswered or handed back): two in a row that
    /// answered only one while more were waiting mean no pipelining.
    pub(crate) fn connection_ended(&self, answered: u64, outstanding: usize) {
        if answered == 1 && outstanding > 0 {
            let n = self.closes_in_a_row.fetch_add(1, Ordering::AcqRel) + 1;
            if n >= 2 {
                self.fall_back(
                    "it ended the connection after its first answer, twice in a row, \
                     with more requests sent",
                );
            }
        } else if answered > 1 {
            self.closes_in_a_row.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_timeout_follows_the_round_trip_within_bounds() {
        let state = PipeliningState::new("http://h");
        let read = Duration::from_secs(30);
        assert_eq!(state.stall_timeout(read), read, "nothing measured yet");
        state.rtt_sample(Duration::from_micros(300));
        assert_eq!(state.stall_timeout(read), MIN_STALL);
        for _ in 0..100 {
            state.rtt_sample(Duration::from_millis(500));
        }
        let t = state.stall_timeout(read);
        assert!(
            t > Duration::from_secs(4) && t <= Duration::from_secs(5),
            "{t:?}"
        );
        assert_eq!(
            state.stall_timeout(Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn two_single_answer_connections_in_a_row_fall_back() {
        let state = PipeliningState::new("http://h");
        state.connection_ended(1, 3);
        state.connection_ended(5, 0);
        state.connection_ended(1, 3);
        assert_eq!(state.pipelining(), Pipelining::On, "not in a row");
        state.connection_ended(1, 0);
        assert_eq!(state.depth(), usize::MAX, "nothing was outstanding");
        state.connection_ended(1, 2);
        assert_eq!(state.depth(), 1);
        assert!(matches!(state.pipelining(), Pipelining::OneAtATime { .. }));
        state.fall_back("another reason");
        match state.pipelining() {
            Pipelining::OneAtATime { reason } => assert!(reason.contains("twice in a row")),
            other => panic!("{other:?}"),
        }
    }
}
