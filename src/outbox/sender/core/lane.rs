//! One lane: a pipeline's window of writes in flight, and the breaks of
//! its connections (one per connection, however many writes each fails).

use super::window::Window;
use super::Tag;

/// One lane (one pipeline).
#[derive(Debug)]
pub(super) struct Lane {
    pub(super) window: Window,
    /// The first tag sent after the last broken connection was noticed:
    /// a failure of a write sent before it is that same break (one broken
    /// connection fails all its writes in flight: one event, not many),
    /// of a write sent after it a new one.
    pub(super) broke_at: Option<Tag>,
}

impl Lane {
    /// The write `tag` failed with a broken connection (`next_tag` is the
    /// tag the next write will get): whether that is a new break — the
    /// first failure of a connection — rather than another write of one
    /// already counted. A new break shrinks the window.
    pub(super) fn broke(&mut self, tag: Tag, next_tag: Tag) -> bool {
        if self.broke_at.is_some_and(|first_after| tag < first_after) {
            return false;
        }
        self.broke_at = Some(next_tag);
        self.window.link_broke();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_breaks_once_however_many_writes_it_fails() {
        let mut lane = Lane {
            window: Window::new(64),
            broke_at: None,
        };
        // Writes 0..3 in flight when the connection breaks.
        assert!(lane.broke(0, 3), "the first failure is the break");
        assert!(!lane.broke(1, 3), "the rest of its writes");
        assert!(!lane.broke(2, 4), "even after a resend went out");
        // Write 3 went out on the next connection: its failure is a new
        // break, and so is the next one's.
        assert!(lane.broke(3, 5));
        assert!(lane.broke(5, 6));
    }
}
