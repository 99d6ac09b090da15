//! The Prometheus text exposition format (version 0.0.4): a small writer
//! (`# HELP` / `# TYPE` headers, escaped labels, counters, gauges and
//! summaries), and [`render_prometheus`] for a kit's [`Metrics`].

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::snapshot::Metrics;
use super::LatencySummary;
use crate::consumer::ConsumerHealth;
use crate::disposition::PauseReason;

/// The `Content-Type` to serve [`render_prometheus`]'s text with (the
/// Prometheus text exposition format, version 0.0.4).
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Summary,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
        }
    }
}

/// Builds a text exposition. Write a family's header, then its samples;
/// every family once, its samples together.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    out: String,
}

impl Exposition {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// `# HELP name help` and `# TYPE name kind`.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self
    }

    /// One sample: `name{labels} value`.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                escape_label(&mut self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        push_value(&mut self.out, value);
        self.out.push('\n');
        self
    }

    /// The samples of a summary in seconds: `quantile` 0.5, 0.95 and 0.99
    /// (when known), `_sum` and `_count`.
    pub(crate) fn summary(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        summary: &LatencySummary,
    ) -> &mut Self {
        for (q, v) in [
            ("0.5", summary.p50),
            ("0.95", summary.p95),
            ("0.99", summary.p99),
        ] {
            if let Some(v) = v {
                let mut with_q = labels.to_vec();
                with_q.push(("quantile", q));
                self.sample(name, &with_q, v.as_secs_f64());
            }
        }
        let sum = summary.mean.unwrap_or_default().as_secs_f64() * summary.count as f64;
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, summary.count as f64);
        self
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// Renders a metrics snapshot in the Prometheus text exposition format
/// (version 0.0.4; serve it with `Content-Type: text/plain; version=0.0.4`).
///
/// Every series carries a `namespace` label; consumer series also
/// `category` and `consumer`. Series of live components (the sender's
/// counters, a consumer's handler figures) appear only while this kit runs
/// them. The sender's pause (`eventodb_kit_outbox_sender_paused{reason}`,
/// `eventodb_kit_outbox_sender_paused_seconds`) is always there: it comes
/// from the lease row when the sender runs in another process (see
/// [`OutboxMetrics::sender_pause`](crate::metrics::OutboxMetrics::sender_pause)).
/// Durations are in seconds; latencies are summaries with the 0.5, 0.95
/// and 0.99 quantiles.
///
/// ```
/// let kit = eventodb_kit::Kit::builder().build()?;
/// let text = eventodb_kit::render_prometheus(&kit.metrics()?);
/// assert!(text.contains("# TYPE eventodb_kit_outbox_backlog gauge"));
/// assert!(text.contains("eventodb_kit_outbox_backlog{namespace=\"default\"} 0"));
/// # Ok::<(), eventodb_kit::Error>(())
/// ```
pub fn render_prometheus(m: &Metrics) -> String {
    let mut e = Exposition::new();
    let ns: &[(&str, &str)] = &[("namespace", &m.namespace)];

    e.family(
        "eventodb_kit_store_up",
        Kind::Gauge,
        "1 when the store answered the snapshot's reads, 0 when it failed.",
    )
    .sample("eventodb_kit_store_up", ns, flag(m.store_error.is_none()));

    let o = &m.outbox;
    e.family(
        "eventodb_kit_outbox_backlog",
        Kind::Gauge,
        "Outbox messages waiting to be delivered (dead letters not counted).",
    )
    .sample("eventodb_kit_outbox_backlog", ns, o.backlog as f64);
    e.family(
        "eventodb_kit_outbox_oldest_unsent_age_seconds",
        Kind::Gauge,
        "How long the oldest unsent outbox message has been waiting (0 when none).",
    )
    .sample(
        "eventodb_kit_outbox_oldest_unsent_age_seconds",
        ns,
        o.oldest_unsent_age.unwrap_or_default().as_secs_f64(),
    );
    e.family(
        "eventodb_kit_outbox_dead_letters",
        Kind::Gauge,
        "Outbox messages in the dead-letter queue.",
    )
    .sample(
        "eventodb_kit_outbox_dead_letters",
        ns,
        o.dead_letters as f64,
    );
    e.family(
        "eventodb_kit_sender_lease_held",
        Kind::Gauge,
        "1 when some sender holds the namespace's sender lease.",
    )
    .sample(
        "eventodb_kit_sender_lease_held",
        ns,
        flag(o.lease.as_ref().is_some_and(|l| l.held)),
    );
    let pause = o.sender_pause();
    e.family(
        "eventodb_kit_outbox_sender_paused",
        Kind::Gauge,
        "1 for the reason the namespace's sender is paused (unreachable, auth_refused, \
         tls_refused), 0 for the others; all 0 when it is not paused.",
    );
    for reason in PauseReason::ALL {
        e.sample(
            "eventodb_kit_outbox_sender_paused",
            &[("namespace", &m.namespace), ("reason", reason.label())],
            flag(pause.is_some_and(|p| p.reason == reason)),
        );
    }
    e.family(
        "eventodb_kit_outbox_sender_paused_seconds",
        Kind::Gauge,
        "How long the namespace's sender has been paused (0 when it is not).",
    )
    .sample(
        "eventodb_kit_outbox_sender_paused_seconds",
        ns,
        pause.map_or(0.0, |p| p.duration_at(m.taken_at).as_secs_f64()),
    );
    if let Some(s) = &o.sender {
        e.family(
            "eventodb_kit_sender_running",
            Kind::Gauge,
            "1 when a sender thread of this process runs.",
        )
        .sample("eventodb_kit_sender_running", ns, flag(s.running));
        e.family(
            "eventodb_kit_sender_active",
            Kind::Gauge,
            "1 when a sender of this process holds the lease and sends.",
        )
        .sample("eventodb_kit_sender_active", ns, flag(s.active));
        for (name, help, value) in [
            (
                "eventodb_kit_outbox_sent_total",
                "Messages delivered by this process's senders (resends included).",
                s.sent,
            ),
            (
                "eventodb_kit_outbox_already_delivered_total",
                "Resends the store already had, recognised by id.",
                s.already_delivered,
            ),
            (
                "eventodb_kit_outbox_retried_total",
                "Failed delivery attempts that will be retried.",
                s.retried,
            ),
            (
                "eventodb_kit_outbox_dead_lettered_total",
                "Messages the senders moved to the dead-letter queue.",
                s.dead_lettered,
            ),
        ] {
            e.family(name, Kind::Counter, help)
                .sample(name, ns, value as f64);
        }
        e.family(
            "eventodb_kit_outbox_delivery_latency_seconds",
            Kind::Summary,
            "From the write to the outbox until the store accepted the message.",
        )
        .summary(
            "eventodb_kit_outbox_delivery_latency_seconds",
            ns,
            &s.latency,
        );
        e.family(
            "eventodb_kit_outbox_throughput_per_second",
            Kind::Gauge,
            "Messages delivered per second over the last 10 seconds.",
        )
        .sample(
            "eventodb_kit_outbox_throughput_per_second",
            ns,
            s.throughput,
        );
    }

    let consumer_labels: Vec<[(&str, &str); 3]> = m
        .consumers
        .iter()
        .map(|c| {
            [
                ("namespace", m.namespace.as_str()),
                ("category", c.category.as_str()),
                ("consumer", c.consumer_id.as_str()),
            ]
        })
        .collect();
    let consumers = || m.consumers.iter().zip(consumer_labels.iter());
    type Gauge = fn(&crate::metrics::ConsumerMetrics) -> Option<f64>;
    let gauges: [(&str, &str, Gauge); 7] = [
        (
            "eventodb_kit_consumer_position",
            "Global position of the last message the consumer handled or passed over.",
            |c| Some(c.position as f64),
        ),
        (
            "eventodb_kit_consumer_lag_messages",
            "Messages after the consumer's position it has still to handle (counted up to a limit).",
            |c| c.lag.as_ref().map(|l| l.messages as f64),
        ),
        (
            "eventodb_kit_consumer_lag_at_least",
            "1 when the lag count stopped at its limit (the lag is at least the count).",
            |c| c.lag.as_ref().map(|l| flag(l.at_least)),
        ),
        (
            "eventodb_kit_consumer_lag_seconds",
            "Age of the oldest message the consumer has not handled yet (0 when caught up).",
            |c| c.lag.as_ref().map(|l| l.seconds.as_secs_f64()),
        ),
        (
            "eventodb_kit_consumer_last_progress_timestamp_seconds",
            "When the consumer's position last moved (Unix time).",
            |c| c.last_progress_at.map(unix_seconds),
        ),
        (
            "eventodb_kit_consumer_stalled",
            "1 when the consumer lags and has made no progress for the stall threshold.",
            |c| Some(flag(c.stalled)),
        ),
        (
            "eventodb_kit_consumer_dead_letters",
            "The consumer's messages in the dead-letter queue.",
            |c| Some(c.dead_letters as f64),
        ),
    ];
    if !m.consumers.is_empty() {
        for (name, help, value) in gauges {
            e.family(name, Kind::Gauge, help);
            for (c, labels) in consumers() {
                if let Some(v) = value(c) {
                    e.sample(name, labels, v);
                }
            }
        }
    }
    if m.consumers.iter().any(|c| c.live.is_some()) {
        type Live = fn(&crate::metrics::LiveConsumerMetrics) -> f64;
        let live: [(&str, Kind, &str, Live); 6] = [
            (
                "eventodb_kit_consumer_up",
                Kind::Gauge,
                "1 while the consumer runs in this process (0 once halted or stopped).",
                |l| {
                    flag(!matches!(
                        l.health,
                        ConsumerHealth::Halted { .. } | ConsumerHealth::Stopped
                    ))
                },
            ),
            (
                "eventodb_kit_consumer_processed_total",
                Kind::Counter,
                "Messages the handler processed (committed).",
                |l| l.processed as f64,
            ),
            (
                "eventodb_kit_consumer_failed_attempts_total",
                Kind::Counter,
                "Handler runs that failed (errors and panics).",
                |l| l.failed_attempts as f64,
            ),
            (
                "eventodb_kit_consumer_retried_total",
                Kind::Counter,
                "Failed handler runs that were tried again.",
                |l| l.retried as f64,
            ),
            (
                "eventodb_kit_consumer_dead_lettered_total",
                Kind::Counter,
                "Messages the consumer moved to the dead-letter queue.",
                |l| l.dead_lettered as f64,
            ),
            (
                "eventodb_kit_consumer_processed_per_second",
                Kind::Gauge,
                "Processed messages per second over the last 10 seconds.",
                |l| l.processed_per_second,
            ),
        ];
        for (name, kind, help, value) in live {
            e.family(name, kind, help);
            for (c, labels) in consumers() {
                if let Some(l) = &c.live {
                    e.sample(name, labels, value(l));
                }
            }
        }
        let name = "eventodb_kit_consumer_handler_seconds";
        e.family(
            name,
            Kind::Summary,
            "How long successful handler runs took.",
        );
        for (c, labels) in consumers() {
            if let Some(l) = &c.live {
                e.summary(name, labels, &l.handler_time);
            }
        }
    }

    let d = &m.dead_letters;
    e.family(
        "eventodb_kit_dead_letters",
        Kind::Gauge,
        "Dead letters of the namespace by source.",
    )
    .sample(
        "eventodb_kit_dead_letters",
        &[("namespace", &m.namespace), ("source", "outbox")],
        d.outbox as f64,
    )
    .sample(
        "eventodb_kit_dead_letters",
        &[("namespace", &m.namespace), ("source", "consumer")],
        d.consumer as f64,
    );
    e.family(
        "eventodb_kit_dead_letters_requeued",
        Kind::Gauge,
        "Consumer dead letters requeued and waiting for their consumer.",
    )
    .sample("eventodb_kit_dead_letters_requeued", ns, d.requeued as f64);
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_help_are_escaped() {
        let mut e = Exposition::new();
        e.family("x_total", Kind::Counter, "a \\ b\nc")
            .sample("x_total", &[("k", "a\"b\\c\nd")], 3.0)
            .sample("x_total", &[], f64::INFINITY)
            .sample("x_total", &[], 0.25);
        assert_eq!(
            e.finish(),
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\n\
             x_total{k=\"a\\\"b\\\\c\\nd\"} 3\nx_total +Inf\nx_total 0.25\n"
        );
    }

    #[test]
    fn summaries_have_quantiles_sum_and_count() {
        let s = LatencySummary {
            count: 4,
            p50: Some(Duration::from_millis(2)),
            p95: Some(Duration::from_millis(5)),
            p99: None,
            mean: Some(Duration::from_millis(3)),
            max: Some(Duration::from_millis(5)),
        };
        let mut e = Exposition::new();
        e.summary("lat_seconds", &[("a", "b")], &s);
        let text = e.finish();
        assert!(
            text.contains("lat_seconds{a=\"b\",quantile=\"0.5\"} 0.002\n"),
            "{text}"
        );
        assert!(
            !text.contains("0.99"),
            "unknown quantiles are left out: {text}"
        );
        assert!(text.contains("lat_seconds_sum{a=\"b\"} 0.012\n"), "{text}");
        assert!(text.contains("lat_seconds_count{a=\"b\"} 4\n"), "{text}");
    }
}
