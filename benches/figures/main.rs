//! `cargo bench` — the kit's figures next to the raw limit measured in the
//! same run, and their ratio.
//!
//! Every figure is printed as
//! `figure: <name> kit=<x> limit=<y> ratio=<kit/limit>` (rates per second) or
//! `figure: <name> <key>=<value> …` (latencies, memory), and all of them are
//! repeated in a summary at the end. Ratios, not absolute numbers, are what
//! compare across machines.
//!
//! Run a subset by naming groups: `cargo bench -- embedded`. The `http`
//! group needs the server: `cargo bench --features server -- http`.

mod consumer;
#[cfg(feature = "server")]
mod delay_proxy;
mod embedded;
#[cfg(feature = "server")]
#[allow(dead_code)]
#[path = "../../tests/common/proxy.rs"]
mod fault_proxy;
#[cfg(feature = "server")]
mod faults;
#[cfg(feature = "server")]
mod http;
mod ops;
mod outbox;
mod outbox_embedded;
#[cfg(feature = "server")]
mod outbox_http;
mod report;
#[cfg(feature = "server")]
mod wan;

use report::Report;

type Group = (&'static str, fn(&mut Report));

const GROUPS: &[Group] = &[
    ("embedded", embedded::run),
    ("consumer", consumer::run),
    #[cfg(feature = "server")]
    ("http", http::run),
    ("outbox", outbox::run),
    #[cfg(feature = "server")]
    ("wan", wan::run),
    #[cfg(feature = "server")]
    ("faults", faults::run),
    ("ops", ops::run),
];

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut report = Report::default();
    for (name, run) in GROUPS {
        if filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())) {
            println!("== {name}");
            run(&mut report);
        }
    }
    report.print_summary();
}
