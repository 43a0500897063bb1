//! SIGTERM, SIGINT and SIGHUP: handlers created once per process, and what ended a wait.

use std::time::Duration;

use tokio::runtime::Runtime;

/// Why the wait ended.
pub enum Wake {
    Term,
    Int,
    Hup,
    Gone,
}

impl Wake {
    pub fn describe(&self) -> &'static str {
        match self {
            Wake::Term => "received SIGTERM",
            Wake::Int => "received SIGINT",
            Wake::Hup => "received SIGHUP",
            Wake::Gone => "the mount was unmounted",
        }
    }
}

/// The process's handlers for SIGTERM, SIGINT and SIGHUP, created once and
/// kept: a signal that arrives while a mount is being started is delivered
/// to the next wait instead of being lost (or ending the process with a
/// dead mount, which is what SIGHUP's default action does).
pub struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub fn new(rt: &Runtime) -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let _in_runtime = rt.enter();
        let make = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot handle {name}: {e}");
                None
            }
        };
        Signals {
            term: make(SignalKind::terminate(), "SIGTERM"),
            int: make(SignalKind::interrupt(), "SIGINT"),
            hup: make(SignalKind::hangup(), "SIGHUP"),
        }
    }

    /// Waits for a signal, or for `check()` turning true (polled every
    /// 200 ms), which answers [`Wake::Gone`].
    pub async fn wait(&mut self, check: impl Fn() -> bool) -> Wake {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let Signals { term, int, hup } = self;
        loop {
            tokio::select! {
                Some(_) = async { term.as_mut()?.recv().await } => return Wake::Term,
                Some(_) = async { int.as_mut()?.recv().await } => return Wake::Int,
                Some(_) = async { hup.as_mut()?.recv().await } => return Wake::Hup,
                _ = tick.tick() => {
                    if check() {
                        return Wake::Gone;
                    }
                }
            }
        }
    }
}
