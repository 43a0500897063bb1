//! akvfs entry point: parse the command line, set up logging, run.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use akvfs::cli::{Cli, Command};
use akvfs::run::{self, Failure};

fn main() {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    let result = match cli.command {
        Command::Mount(args) => match args.to_config() {
            Ok(cfg) => run::mount(cfg),
            Err(msg) => usage_error(&msg),
        },
        Command::Unmount(args) => {
            akvfs::mounts::unmount(&args.mountpoint, args.lazy).map_err(Failure)
        }
        Command::Check(args) => {
            let vault = akvfs::config::VaultConfig {
                url: args.vault.vault.clone(),
                ca_file: args.vault.ca_file.clone(),
                verify_challenge_resource: !args.vault.disable_challenge_resource_verification,
            };
            run::check(vault, args.auth.to_config())
        }
    };
    if let Err(Failure(msg)) = result {
        eprintln!("akvfs: error: {msg}");
        std::process::exit(1);
    }
}

fn usage_error(msg: &str) -> ! {
    eprintln!("akvfs: error: {msg}");
    std::process::exit(2);
}

/// Logs go to stderr. A bare level applies to akvfs; the SDK and FUSE
/// libraries log at warn unless the filter names them.
fn init_logging(level: &str) {
    let spec = if level.contains('=') || level.contains(',') {
        level.to_string()
    } else {
        format!("warn,akvfs={level}")
    };
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("akvfs: error: --log-level {level:?} is not a valid filter: {e}");
        std::process::exit(2);
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
