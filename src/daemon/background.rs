//! Running in the background: fork, report readiness to the waiting parent, then send logs to the journal, syslog or a file.

use std::fmt::Display;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

/// Why going to the background failed, as the waiting parent reports it.
#[derive(Debug, thiserror::Error)]
pub enum BackgroundError {
    #[error("cannot create a pipe: {0}")]
    Pipe(#[source] nix::Error),
    #[error("cannot fork into the background: {0}")]
    Fork(#[source] nix::Error),
    #[error("the background process exited before the mount was ready; run with --foreground to see why")]
    Died,
    /// The background process's own error message. It stays text: it arrives
    /// already rendered through a pipe from the child, which had the typed error.
    #[error("{0}")]
    Failed(String),
}

/// The write end of the pipe the parent waits on, held by the background
/// process until it serves.
pub struct ReadyPipe(std::fs::File);

impl ReadyPipe {
    /// Reports readiness: the parent exits on it. Then points stdin and
    /// stdout at /dev/null and stderr at the log destination, which it
    /// returns, described for the user.
    pub fn ready(self) -> String {
        let mut pipe = self.0;
        let sink = open_log_sink();
        let said = match &sink {
            Ok(LogSink::Fd(_, how)) | Ok(LogSink::Syslog(_, how)) => how.clone(),
            Err(e) => format!("none ({e})"),
        };
        let _ = write!(pipe, "ok {said}");
        // Closing the pipe is what lets the waiting parent exit.
        drop(pipe);
        detach_stdio(sink.as_ref().ok());
        said
    }
}

/// Forks. The child starts a new session and runs `serve`, which calls
/// [`ReadyPipe::ready`] once serving, and exits with its status; an error
/// goes to the waiting parent, or to the log once the parent has gone. The
/// parent waits until the child is serving (or failed) and returns the
/// child's pid and log destination.
///
/// Must be called before any thread exists.
pub fn fork_and_wait<E: Display>(
    serve: impl FnOnce(&mut Option<ReadyPipe>) -> Result<(), E>,
) -> Result<(nix::unistd::Pid, String), BackgroundError> {
    let (read_end, write_end) = nix::unistd::pipe().map_err(BackgroundError::Pipe)?;
    // SAFETY: the caller guarantees no other thread exists yet (no runtime,
    // no FUSE session), so the child may run arbitrary code after fork.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(BackgroundError::Fork(e)),
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(write_end);
            let mut status = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut status);
            match status.strip_prefix("ok ") {
                Some(logs) => Ok((child, logs.to_string())),
                None if status.is_empty() => Err(BackgroundError::Died),
                None => Err(BackgroundError::Failed(
                    status.trim_start_matches("err ").to_string(),
                )),
            }
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(read_end);
            let _ = nix::unistd::setsid();
            let mut pipe = Some(ReadyPipe(std::fs::File::from(write_end)));
            match serve(&mut pipe) {
                Ok(()) => std::process::exit(0),
                Err(e) => {
                    // The waiting parent prints it; once it has gone, the
                    // log destination holds it.
                    match pipe {
                        Some(ReadyPipe(mut p)) => {
                            let _ = write!(p, "err {e}");
                        }
                        None => tracing::error!("{e}"),
                    }
                    std::process::exit(1)
                }
            }
        }
    }
}

/// Where a background daemon's log lines go, once its stderr is no longer
/// the terminal: the systemd journal, else syslog, else a file under the
/// user's state directory. Logs never hold secret values, so a file is
/// allowed.
enum LogSink {
    /// A stream to journald (what `systemd-cat` uses), or a file.
    Fd(OwnedFd, String),
    /// A pipe whose lines a thread forwards to syslog as datagrams.
    Syslog(OwnedFd, String),
}

const JOURNAL_STREAM: &str = "/run/systemd/journal/stdout";
const SYSLOG_SOCKET: &str = "/dev/log";

/// Why no log destination could be opened for a background daemon.
#[derive(Debug, thiserror::Error)]
pub enum LogSinkError {
    #[error("cannot create a pipe for syslog: {0}")]
    Pipe(#[source] nix::Error),
    #[error("cannot start the syslog thread: {0}")]
    SyslogThread(#[source] std::io::Error),
    #[error("cannot find a directory for the log file: set XDG_STATE_HOME or HOME")]
    NoStateDir,
    #[error("cannot create the log directory {}: {source}; check its parent's permissions, or set XDG_STATE_HOME", dir.display())]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the log file {}: {source}; check its permissions, or set XDG_STATE_HOME", file.display())]
    File {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn open_log_sink() -> Result<LogSink, LogSinkError> {
    if let Ok(mut s) = std::os::unix::net::UnixStream::connect(JOURNAL_STREAM) {
        // identifier, unit id, priority (info), level prefix, and no
        // forwarding to syslog, kmsg or the console.
        if s.write_all(b"akvfs\n\n6\n0\n0\n0\n0\n").is_ok() {
            let how = if nix::unistd::geteuid().is_root() {
                "the systemd journal (journalctl -t akvfs)"
            } else {
                "the systemd journal (journalctl --user -t akvfs, or journalctl -t akvfs)"
            };
            return Ok(LogSink::Fd(s.into(), how.into()));
        }
    }
    if let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() {
        // A stuck syslog daemon drops lines instead of blocking the writers
        // (FUSE request threads log too).
        if sock.connect(SYSLOG_SOCKET).is_ok() && sock.set_nonblocking(true).is_ok() {
            let (read, write) = nix::unistd::pipe().map_err(LogSinkError::Pipe)?;
            let pid = std::process::id();
            std::thread::Builder::new()
                .name("akvfs-syslog".into())
                .spawn(move || {
                    use std::io::BufRead;
                    let lines = std::io::BufReader::new(std::fs::File::from(read));
                    for line in lines.lines().map_while(Result::ok) {
                        // facility daemon (3), severity info (6)
                        let _ = sock.send(format!("<30>akvfs[{pid}]: {line}").as_bytes());
                    }
                })
                .map_err(LogSinkError::SyslogThread)?;
            return Ok(LogSink::Syslog(
                write,
                "syslog (identifier akvfs, e.g. /var/log/syslog)".into(),
            ));
        }
    }
    let dir = state_dir().ok_or(LogSinkError::NoStateDir)?.join("akvfs");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| LogSinkError::Dir {
            dir: dir.clone(),
            source,
        })?;
    let file = dir.join("akvfs.log");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&file)
        .map_err(|source| LogSinkError::File {
            file: file.clone(),
            source,
        })?;
    Ok(LogSink::Fd(f.into(), file.display().to_string()))
}

/// $XDG_STATE_HOME, else ~/.local/state (the XDG base directory default).
fn state_dir() -> Option<PathBuf> {
    let var = |n: &str| {
        std::env::var_os(n)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("XDG_STATE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| var("HOME").map(|h| h.join(".local/state")))
}

/// Points stdin and stdout at /dev/null and stderr (where the log lines go)
/// at `sink`, once a background daemon is serving, so it holds no terminal
/// or pipe of its parent open.
fn detach_stdio(sink: Option<&LogSink>) {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let null: OwnedFd = null.into();
        let err = match sink {
            Some(LogSink::Fd(fd, _)) | Some(LogSink::Syslog(fd, _)) => fd.as_raw_fd(),
            None => null.as_raw_fd(),
        };
        for (fd, from) in [(0, null.as_raw_fd()), (1, null.as_raw_fd()), (2, err)] {
            // SAFETY: dup2 onto the standard descriptors, which we own.
            unsafe { libc::dup2(from, fd) };
        }
    }
}
