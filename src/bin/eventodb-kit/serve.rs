//! `eventodb-kit serve`: the embedded store over HTTP(S) until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use eventodb_kit::server::{Server, ServerConfig, DATA_FILE};

use crate::output;

/// Options of `serve`; each also comes from an environment variable, as
/// EventoDB's own flags do.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to bind (0.0.0.0 for every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free one (printed at start).
    #[arg(long, env = "EVENTODB_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Token of the `default` namespace when it is created (else one is
    /// generated and printed once).
    #[arg(long, env = "EVENTODB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Directory for the data (one SQLite file); in memory when absent.
    #[arg(long, env = "EVENTODB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Relax authentication like EventoDB's test mode.
    #[arg(
        long,
        env = "EVENTODB_TEST_MODE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = parse_go_bool,
    )]
    pub test_mode: bool,
    /// Serve GET /metrics (the server's figures, Prometheus text format)
    /// without a token, for a scraper without credentials. Without it
    /// /metrics needs the default namespace's token (it names every
    /// namespace).
    #[arg(
        long,
        env = "EVENTODB_PUBLIC_METRICS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = parse_go_bool,
    )]
    pub public_metrics: bool,
    /// Serve HTTPS with this PEM certificate chain (server certificate first).
    #[arg(long, env = "EVENTODB_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "EVENTODB_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates issued by a CA in this PEM file (mutual
    /// TLS); needs --tls-cert and --tls-key.
    #[arg(long, env = "EVENTODB_TLS_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Most connections open at once. When all are taken, a new one takes
    /// the slot of the connection that has waited longest for a request; a
    /// client is refused (503) only when every connection is inside a
    /// request or an SSE stream.
    #[arg(long, env = "EVENTODB_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Largest request body accepted (413 beyond): bytes, or with KiB, MiB
    /// or GiB.
    #[arg(long, env = "EVENTODB_MAX_BODY", default_value = "100MiB", value_parser = parse_size)]
    pub max_body: usize,
    /// How long a client may take to send a request's head (request line
    /// and headers); 408 and close after. 0 = no limit.
    #[arg(long, env = "EVENTODB_HEAD_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub head_timeout: Duration,
    /// How long an idle keep-alive connection stays open. 0 = for ever.
    #[arg(long, env = "EVENTODB_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// How long a write may block on a client that does not read (the
    /// connection is then dropped). 0 = no limit.
    #[arg(long, env = "EVENTODB_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub write_timeout: Duration,
    /// Accepted for compatibility with EventoDB's flags; only `sqlite://`
    /// works (the data goes to --data-dir, or memory).
    #[arg(long, env = "EVENTODB_DB_URL", hide = true)]
    pub db_url: Option<String>,
    /// Accepted and ignored (EventoDB compatibility).
    #[arg(long, hide = true)]
    pub log_level: Option<String>,
    /// Accepted and ignored (EventoDB compatibility).
    #[arg(long, hide = true)]
    pub log_format: Option<String>,
}

/// A duration the humantime way (`500ms`, `10s`, `2m`, or `0`) as every
/// command reads one ([`output::parse_duration`]), spaces around it ignored.
fn parse_duration(s: &str) -> Result<Duration, String> {
    output::parse_duration(s.trim())
}

/// A size in bytes, or with a binary unit (`64KiB`, `100MiB`, `1GiB`).
fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let number: usize = number
        .parse()
        .map_err(|_| format!("invalid size {s:?} (e.g. 1048576, 64KiB, 100MiB)"))?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB or GiB)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(format!("invalid boolean {other:?}")),
    }
}

pub fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(url) = &args.db_url {
        if !url.starts_with("sqlite://") {
            return Err(format!(
                "eventodb-kit keeps its data in SQLite (--data-dir); --db-url {:?} is not supported",
                url.split("://").next().unwrap_or_default()
            )
            .into());
        }
    }
    let mut config = ServerConfig::new()
        .host(args.host)
        .port(args.port)
        .test_mode(args.test_mode)
        .public_metrics(args.public_metrics)
        .max_connections(args.max_connections)
        .max_body(args.max_body)
        .head_timeout(args.head_timeout)
        .idle_timeout(args.idle_timeout)
        .write_timeout(args.write_timeout);
    if let Some(token) = args.token {
        config = config.token(token);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config = config.tls_files(cert, key);
    }
    if let Some(ca) = &args.client_ca {
        config = config.client_ca_file(ca);
    }
    let storage = match &args.data_dir {
        Some(dir) => {
            config = config.data_dir(dir);
            format!("data in {}", dir.join(DATA_FILE).display())
        }
        None => "in memory".to_string(),
    };
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    })?;
    let server = Server::start(config)?;
    let mut mode = match (args.test_mode, args.public_metrics) {
        (true, true) => ", test mode, public /metrics",
        (true, false) => ", test mode",
        (false, true) => ", public /metrics",
        (false, false) => "",
    }
    .to_string();
    if args.client_ca.is_some() {
        mode.push_str(", client certificates required");
    }
    println!(
        "eventodb-kit serve: listening on {} ({storage}{mode})",
        server.url()
    );
    if server.generated_default_token() {
        if let Some(token) = server.default_token() {
            println!("DEFAULT NAMESPACE TOKEN:");
            println!("{}", token.expose_secret());
        }
    }
    let _ = stop_rx.recv();
    println!("eventodb-kit serve: shutting down");
    server.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("100 MiB"), Ok(100 << 20));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert!(parse_size("10MB").is_err());
        assert!(parse_size("MiB").is_err());
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("ten").is_err());
    }
}
