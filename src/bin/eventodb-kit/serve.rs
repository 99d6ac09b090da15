//! `eventodb-kit serve`: the embedded store over HTTP(S) until SIGINT/SIGTERM.

use std::path::PathBuf;

use clap::Args;
use eventodb_kit::server::{Server, ServerConfig, DATA_FILE};

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
        .public_metrics(args.public_metrics);
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
