//! akvfs entry point: parse the command line, set up logging, run.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use akvfs::{Cli, Command, Error, LogFormat};

/// Wipes freed heap blocks once memory locking chose the secret region (see
/// akvfs::locked).
#[global_allocator]
static ALLOC: akvfs::WipeOnFree = akvfs::WipeOnFree;

fn main() {
    reset_process_state();
    // While the process has one thread: out of the environment, into memory
    // that is wiped.
    akvfs::take_client_secret_from_env();
    // A bug must still end in one line, with no backtrace and nothing from
    // memory beyond the panic's own message and location.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("akvfs: internal error{at}: {msg} (please report this)");
    }));
    let cli = match Cli::try_parse_from(helper_args(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(e) => usage(e),
    };
    // A background daemon's stderr becomes a log file or the journal later:
    // no terminal colours there.
    let background = matches!(&cli.command, Command::Mount(a) if !a.foreground);
    init_logging(&cli.log_level, cli.log_format, background);
    let result = match cli.command {
        Command::Mount(args) => match args.to_config() {
            Ok(cfg) => akvfs::mount(cfg, args.metrics_listen),
            Err(e) => usage_error(&e.to_string()),
        },
        Command::Run(args) => akvfs::run_config_with(
            &args.config,
            args.metrics_listen,
            Some(args.ready_timeout).filter(|t| !t.is_zero()),
        ),
        Command::Unmount(args) => {
            akvfs::unmount(&args.mountpoint, args.lazy).map_err(Error::Mountpoint)
        }
        Command::Watch(args) => match args.to_config() {
            Ok(cfg) => {
                if let Err(e) = akvfs::run_watch(cfg) {
                    eprintln!("akvfs: error: {e}");
                    std::process::exit(1);
                }
                Ok(())
            }
            Err(e) => usage_error(&e.to_string()),
        },
        Command::Check(args) => match args.to_config() {
            Ok((vault, auth, timeout)) => akvfs::check(vault, auth, timeout),
            Err(e) => usage_error(&e.to_string()),
        },
        Command::Csi(args) => akvfs::run_csi(args),
    };
    if let Err(e) = result {
        eprintln!("akvfs: error: {e}");
        std::process::exit(1);
    }
}

/// A daemon must answer SIGTERM whatever its parent blocked, and keep its
/// locked memory small: glibc reserves a 64 MiB arena per thread, which
/// counts against the locked-memory limit even with MCL_ONFAULT.
fn reset_process_state() {
    // SAFETY: sigprocmask with a valid, empty set; mallopt takes plain ints.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Invoked as `mount.fuse.akvfs` (mount(8) for `-t fuse.akvfs`, as from
/// fstab): `mount.fuse.akvfs VAULT MOUNTPOINT [-sfnv] [-o OPTIONS]` becomes
/// `akvfs mount VAULT MOUNTPOINT -o OPTIONS`.
fn helper_args(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let invoked = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !invoked.starts_with("mount.fuse.akvfs") && !invoked.starts_with("mount.akvfs") {
        return args;
    }
    let mut out: Vec<std::ffi::OsString> = vec!["akvfs".into(), "mount".into()];
    let mut rest = args.into_iter().skip(1);
    while let Some(a) = rest.next() {
        match a.to_str() {
            // sloppy, fake, no-mtab, verbose: nothing for us to do.
            Some("-s" | "-f" | "-n" | "-v") => {}
            Some("-o") => {
                out.push("-o".into());
                out.extend(rest.next());
            }
            Some(o) if o.starts_with("-o") => {
                out.push("-o".into());
                out.push(o[2..].into());
            }
            _ => out.push(a),
        }
    }
    out
}

/// Help and version go to stdout; a usage error is one line on stderr, exit 2.
fn usage(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        std::process::exit(
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                2
            } else {
                0
            },
        );
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

/// Logs go to stderr (which a background `akvfs mount` points at the journal,
/// syslog or a log file once it serves). A bare level applies to akvfs; the SDK and FUSE
/// libraries log at warn unless the filter names them.
fn init_logging(level: &str, format: LogFormat, background: bool) {
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(!background && std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}
