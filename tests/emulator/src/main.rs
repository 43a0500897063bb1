//! `akvfs-emulator`: flags, start, the ready line on stdout, serve until a signal.
//!
//! `akvfs-emulator`: parse flags, start the emulator, print the ready line on stdout, serve until
//! SIGTERM or SIGINT. Logs go to stderr (`RUST_LOG` controls the level).

use akvfs_emulator::{config, Emulator, EmulatorConfig, Seed};
use clap::Parser;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// HTTPS emulator of Azure Key Vault secrets, Entra ID tokens and managed identity, for tests and
/// local development. Prints one JSON line with the URLs and credentials when ready.
#[derive(Debug, Parser)]
#[command(name = "akvfs-emulator", version)]
struct Cli {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0", help_heading = "Network")]
    listen: SocketAddr,
    /// Extra DNS name or IP address for the server certificate (repeatable).
    #[arg(long = "hostname", value_name = "NAME", help_heading = "Network")]
    hostnames: Vec<String>,
    /// Host name for vault_url, e.g. myvault.vault.azure.net (make it resolve to the listen address).
    #[arg(long, value_name = "NAME", help_heading = "Network")]
    vault_host: Option<String>,
    /// Host name for the Entra ID endpoints, e.g. login.microsoftonline.com: used in authority_host,
    /// the vault's 401 challenge and the discovery documents (make it resolve to the listen address).
    #[arg(long, value_name = "NAME", help_heading = "Network")]
    authority_host: Option<String>,
    /// Directory for ca.pem and federated-token (default: a temporary directory removed at exit).
    #[arg(long, value_name = "DIR", help_heading = "Network")]
    state_dir: Option<PathBuf>,

    /// Tenant id.
    #[arg(long, default_value = config::DEFAULT_TENANT_ID, help_heading = "Identity")]
    tenant_id: String,
    /// Client id of the default identity.
    #[arg(long, default_value = config::DEFAULT_CLIENT_ID, help_heading = "Identity")]
    client_id: String,
    /// Client secret of the default identity.
    #[arg(long, default_value = config::DEFAULT_CLIENT_SECRET, help_heading = "Identity",
          conflicts_with = "no_client_secret")]
    client_secret: String,
    /// Refuse client secret authentication for the default identity.
    #[arg(long, help_heading = "Identity")]
    no_client_secret: bool,
    /// Subject accepted in federated tokens of the default identity.
    #[arg(long, default_value = config::DEFAULT_FEDERATED_SUBJECT, help_heading = "Identity")]
    federated_subject: String,
    /// Issuer of federated tokens.
    #[arg(long, default_value = config::DEFAULT_FEDERATED_ISSUER, help_heading = "Identity")]
    federated_issuer: String,
    /// Lifetime in seconds of the token written to federated-token.
    #[arg(long, default_value_t = 86_400, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=31_536_000), help_heading = "Identity")]
    federated_token_lifetime: u64,
    /// Value required in X-IDENTITY-HEADER by the managed identity endpoint (default: random).
    #[arg(long, value_name = "VALUE", help_heading = "Identity")]
    identity_header: Option<String>,

    /// Lifetime in seconds of issued access tokens (the SDKs refresh 300 s before expiry).
    #[arg(long, default_value_t = 3600, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=31_536_000), help_heading = "Behaviour")]
    token_lifetime: u64,
    /// Authenticated vault requests allowed per sliding 10 s window before 429 Throttled.
    #[arg(long = "requests-per-10s", default_value_t = 4000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..), help_heading = "Behaviour")]
    requests_per_10s: u32,
    /// JSON seed file with secrets and identities (see docs/EMULATOR.md).
    #[arg(long, value_name = "FILE", help_heading = "Behaviour")]
    seed: Option<PathBuf>,

    /// Serve the Instance Metadata Service token endpoint over HTTP here (a VM's is 169.254.169.254:80).
    #[arg(long, value_name = "ADDR", help_heading = "Metadata endpoints")]
    imds_listen: Option<SocketAddr>,
    /// Serve the Azure Arc token endpoint over HTTP here (the Arc agent's is 127.0.0.1:40342).
    #[arg(long, value_name = "ADDR", help_heading = "Metadata endpoints")]
    arc_listen: Option<SocketAddr>,
    /// Directory for the Arc challenge key files (default: arc-tokens in the state directory).
    #[arg(long, value_name = "DIR", help_heading = "Metadata endpoints")]
    arc_key_dir: Option<PathBuf>,

    /// Serve one more vault on this address (repeatable; port 0: any free port). Each has its own
    /// secrets, permissions and admin API and accepts the same tokens; the ready line lists them.
    #[arg(
        long = "extra-vault-listen",
        value_name = "ADDR",
        help_heading = "Network"
    )]
    extra_vaults: Vec<SocketAddr>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("akvfs-emulator: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let seed = match &cli.seed {
        Some(path) => Some(Seed::from_file(path)?),
        None => None,
    };
    let cfg = EmulatorConfig {
        listen: cli.listen,
        state_dir: cli.state_dir,
        hostnames: cli.hostnames,
        vault_host: cli.vault_host,
        authority_host: cli.authority_host,
        tenant_id: cli.tenant_id,
        client_id: cli.client_id,
        client_secret: (!cli.no_client_secret).then_some(cli.client_secret),
        federated_subject: cli.federated_subject,
        federated_issuer: cli.federated_issuer,
        federated_token_lifetime: Duration::from_secs(cli.federated_token_lifetime),
        identity_header: cli.identity_header,
        token_lifetime: Duration::from_secs(cli.token_lifetime),
        requests_per_10s: cli.requests_per_10s,
        seed,
        imds_listen: cli.imds_listen,
        arc_listen: cli.arc_listen,
        arc_key_dir: cli.arc_key_dir,
        extra_vaults: cli.extra_vaults,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        // Signal handlers go in before the ready line, so a client that stops the emulator right
        // after reading it gets a clean exit.
        let signals = Signals::install()?;
        let emulator = Emulator::start(cfg).await.map_err(|e| e.to_string())?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", emulator.info().to_json_line())
            .and_then(|_| out.flush())
            .map_err(|e| format!("cannot write the ready line: {e}"))?;
        drop(out);
        signals.wait().await;
        tracing::info!("stopping");
        emulator.shutdown();
        Ok(())
    })
}

/// SIGTERM and SIGINT listeners.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, String> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?,
            int: signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
