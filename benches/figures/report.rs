//! Collects `figure:` lines and prints them as they come and again at the end.

use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Report {
    lines: Vec<String>,
}

impl Report {
    /// A throughput figure: the kit's rate, the raw limit's rate, their ratio.
    pub fn ratio(&mut self, name: &str, kit: f64, limit: f64) {
        self.line(format!(
            "figure: {name} kit={kit:.0} limit={limit:.0} ratio={:.2}",
            kit / limit
        ));
    }

    /// A free-form figure, e.g. `delivery_latency_ms p50=0.4 p99=1.2`.
    pub fn figure(&mut self, name: &str, values: &[(&str, f64)]) {
        let rendered: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v:.2}")).collect();
        self.line(format!("figure: {name} {}", rendered.join(" ")));
    }

    fn line(&mut self, line: String) {
        println!("{line}");
        self.lines.push(line);
    }

    pub fn print_summary(&self) {
        println!("\n== summary ({} figures)", self.lines.len());
        for line in &self.lines {
            println!("{line}");
        }
    }
}

/// Runs `op` (which does `batch` operations per call) for about `budget`
/// after a short warm-up, and returns operations per second.
pub fn rate(budget: Duration, batch: u64, mut op: impl FnMut()) -> f64 {
    let warm_until = Instant::now() + budget / 10;
    while Instant::now() < warm_until {
        op();
    }
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < budget {
        op();
        done += batch;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// Best of `rounds` measurements of `measure` (less noise on a busy machine).
pub fn best_of(rounds: usize, mut measure: impl FnMut() -> f64) -> f64 {
    (0..rounds).map(|_| measure()).fold(0.0, f64::max)
}

/// Best of `rounds` measurements of each side, alternating kit and limit so
/// that load from elsewhere on the machine falls on both alike.
pub fn best_of_pair(
    rounds: usize,
    mut kit: impl FnMut() -> f64,
    mut limit: impl FnMut() -> f64,
) -> (f64, f64) {
    let (mut best_kit, mut best_limit) = (0.0f64, 0.0f64);
    for _ in 0..rounds {
        best_kit = best_kit.max(kit());
        best_limit = best_limit.max(limit());
    }
    (best_kit, best_limit)
}
