//! `wan_drain_streams_100` and `wan_drain_stream_1`: an outbox backlog
//! drained by a sender with default settings to `serve` through a proxy
//! that delays each direction by 25 ms (a 50 ms round trip, an ordinary
//! cellular or cross-region link), against the same drain through the same
//! proxy with no delay. The ratio says how much of the round trip the
//! pipelined sender hides. Every drain is checked afterwards: every
//! message in the store exactly once, in commit order per stream.

use std::path::Path;
use std::time::{Duration, Instant};

use eventodb_kit::outbox::{OutboxEntry, SenderConfig};
use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{HttpStore, Kit};

use crate::delay_proxy::DelayProxy;
use crate::outbox::{check_store, message, write_backlog};
use crate::report::{best_of_pair, Report};

const ROWS: usize = 50_000;
const ONE_WAY: Duration = Duration::from_millis(25);

pub fn run(report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    for (name, streams) in [("wan_drain_streams_100", 100), ("wan_drain_stream_1", 1)] {
        let round = std::cell::Cell::new(0);
        let next = || {
            round.set(round.get() + 1);
            round.get()
        };
        let (kit, limit) = best_of_pair(
            2,
            || drain(dir.path(), streams, ONE_WAY, next()),
            || drain(dir.path(), streams, Duration::ZERO, next()),
        );
        report.ratio(name, kit, limit);
    }
}

/// Drains `ROWS` messages over `streams` streams through a proxy delaying
/// each direction by `one_way`; messages per second.
fn drain(dir: &Path, streams: usize, one_way: Duration, round: usize) -> f64 {
    let server = Server::start(ServerConfig::new()).unwrap();
    let proxy = DelayProxy::start(server.addr(), one_way);
    let token = server.default_token().unwrap();
    let store = HttpStore::new(&proxy.url(), token.expose_secret()).unwrap();
    let kit = Kit::builder()
        .database(dir.join(format!("wan-{streams}-{}-{round}.db", one_way.as_millis())))
        .store(store)
        .build()
        .unwrap();
    let entries: Vec<OutboxEntry> = (0..ROWS)
        .map(|n| OutboxEntry::new(format!("reading-{}", n % streams), message(n)))
        .collect();
    let ids = write_backlog(&kit, &entries);
    let start = Instant::now();
    let sender = kit.spawn_sender(SenderConfig::new()).unwrap();
    sender.wait_until_drained(Duration::from_secs(600)).unwrap();
    let rate = ROWS as f64 / start.elapsed().as_secs_f64();
    let stats = sender.stats().unwrap();
    sender.shutdown();
    assert_eq!(stats.sent, ROWS as u64, "every message sent once");
    assert_eq!(stats.dead_lettered, 0);
    check_store(server.store(), "reading", &ids);
    drop(proxy);
    server.shutdown();
    rate
}
