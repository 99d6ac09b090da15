//! How many writes a lane keeps in flight: a window that grows while
//! answers come back without failure and halves on a failure, as TCP's
//! congestion window does, within the configured depth and a byte budget.
//!
//! A broken connection takes every write in flight on it with it (their
//! outcome unknown: each costs a resend or a read), so when connections
//! break the window shrinks to what they carry: twice the answers the
//! broken one gave. A link that drops a connection every few requests
//! keeps a few in flight; one that drops a long-lived connection now and
//! then loses little, and the window grows back by doubling per round trip.
//!
//! The round trip is hidden when the window holds at least the store's
//! rate times the round trip (20 000 writes/s × 50 ms = 1 000 writes), so
//! the window starts at a quarter of the depth and doubles every round trip
//! that succeeds (one more per answer) up to the depth.

/// Bytes of message data a lane keeps in flight at most (the memory cap
/// documented on [`SenderConfig::pipeline_depth`](crate::SenderConfig::pipeline_depth)).
pub(crate) const MAX_BYTES_IN_FLIGHT: usize = 16 * 1024 * 1024;

/// The smallest window a failure shrinks to (while pipelining at all).
const MIN_WINDOW: usize = 4;

/// One lane's window.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    /// The configured depth: the window never exceeds it.
    depth: usize,
    /// Writes allowed in flight now.
    size: usize,
    /// Writes in flight.
    in_flight: usize,
    /// Bytes of data and metadata in flight.
    bytes: usize,
    /// Answers since the last connection broke.
    carried: usize,
}

impl Window {
    pub(crate) fn new(depth: usize) -> Self {
        let depth = depth.max(1);
        Window {
            depth,
            size: (depth / 4).max(depth.min(MIN_WINDOW)).max(1),
            in_flight: 0,
            bytes: 0,
            carried: 0,
        }
    }

    /// Whether one more write of `bytes` fits. A lane with nothing in flight
    /// always takes one (however large).
    pub(crate) fn has_room(&self, bytes: usize) -> bool {
        self.in_flight == 0
            || (self.in_flight < self.size && self.bytes + bytes <= MAX_BYTES_IN_FLIGHT)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    pub(crate) fn sent(&mut self, bytes: usize) {
        self.in_flight += 1;
        self.bytes += bytes;
    }

    /// A write of `bytes` came back.
    pub(crate) fn answered(&mut self, bytes: usize) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    /// An answer without failure: one more in flight (doubling per round trip).
    pub(crate) fn grow(&mut self) {
        if self.size < self.depth {
            self.size += 1;
        }
    }

    /// The connection gave an answer (any: a refusal too).
    pub(crate) fn carried_one(&mut self) {
        self.carried += 1;
    }

    /// The connection broke: no more in flight than twice what it carried.
    pub(crate) fn link_broke(&mut self) {
        let carried = std::mem::take(&mut self.carried);
        self.size = self
            .size
            .min(carried.saturating_mul(2))
            .max(self.depth.min(MIN_WINDOW))
            .max(1);
    }

    /// The store failed a write it may take later (a 5xx): half as many in
    /// flight.
    pub(crate) fn shrink(&mut self) {
        self.size = (self.size / 2).max(self.depth.min(MIN_WINDOW)).max(1);
    }

    /// Forgets everything in flight (the lease was lost; answers are ignored).
    pub(crate) fn clear(&mut self) {
        self.in_flight = 0;
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_depth_and_halves_on_failure() {
        let mut w = Window::new(64);
        assert_eq!(w.size(), 16);
        for _ in 0..100 {
            w.grow();
        }
        assert_eq!(w.size(), 64, "capped at the depth");
        w.shrink();
        assert_eq!(w.size(), 32);
        for _ in 0..10 {
            w.shrink();
        }
        assert_eq!(w.size(), MIN_WINDOW);
    }

    #[test]
    fn a_broken_connection_leaves_twice_what_it_carried() {
        let mut w = Window::new(16_384);
        assert_eq!(w.size(), 4_096);
        for _ in 0..5 {
            w.carried_one();
        }
        w.link_broke();
        assert_eq!(w.size(), 10, "five answers, then the break");
        w.link_broke();
        assert_eq!(w.size(), MIN_WINDOW, "nothing carried: the least");
        for _ in 0..1_000 {
            w.carried_one();
            w.grow();
        }
        w.link_broke();
        assert_eq!(w.size(), 1_004, "a long-lived connection costs nothing");
        let mut one = Window::new(1);
        one.link_broke();
        assert_eq!(one.size(), 1);
    }

    #[test]
    fn depth_one_is_one_at_a_time() {
        let mut w = Window::new(1);
        assert!(w.has_room(10));
        w.sent(10);
        assert!(!w.has_room(10));
        w.grow();
        assert!(!w.has_room(10));
        w.answered(10);
        assert!(w.has_room(10));
    }

    #[test]
    fn bytes_cap_the_window_but_one_write_always_goes() {
        let mut w = Window::new(1024);
        w.sent(MAX_BYTES_IN_FLIGHT + 1);
        assert!(!w.has_room(1), "over the byte budget");
        w.answered(MAX_BYTES_IN_FLIGHT + 1);
        assert!(
            w.has_room(MAX_BYTES_IN_FLIGHT * 2),
            "an empty lane takes any write"
        );
    }
}
