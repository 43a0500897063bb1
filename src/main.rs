//! akvfs entry point: parse the command line, set up logging, run.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use akvfs::cli::{Cli, Command};
use akvfs::run::{self, Failure};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage(e),
    };
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

/// Help and version go to stdout; a usage error is one line on stderr, exit 2.
fn usage(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) {
        let _ = e.print();
        std::process::exit(if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { 2 } else { 0 });
    }
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ");
    let mut line = first.to_string();
    // clap lists the missing arguments on the following lines.
    if e.kind() == ErrorKind::MissingRequiredArgument {
        let missing: Vec<&str> = rendered
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| l.starts_with('<') || l.starts_with("--"))
            .collect();
        if !missing.is_empty() {
            line = format!("{} {}", line.trim_end_matches(':'), missing.join(" "));
        }
    }
    usage_error(&format!("{line} (see akvfs --help)"))
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
        // fuser warns about requests we deliberately leave unimplemented and
        // about unmounting an already unmounted session; that is noise.
        format!("warn,fuser=error,akvfs={level}")
    };
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("akvfs: error: --log-level {level:?} is not a valid filter: {e}");
        std::process::exit(2);
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
