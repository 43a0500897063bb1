//! Why a command failed: what failed (vault, mountpoint, file, cause), rendered as one line with what to check.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::AuthError;
use crate::daemon::background::BackgroundError;
use crate::daemon::harden::HardenError;
use crate::daemon::mounts::MountpointError;
use crate::metrics::MetricsError;
use crate::vault::azure::SetupError;
use crate::vault::VaultError;

use super::connect::hint;

/// A failure that ends the command (or, under the supervisor, one attempt
/// to start a mount). Its message is the one line the user sees.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
    #[error("cannot read --ca-file {}: {source}", path.display())]
    CaFile { path: PathBuf, source: io::Error },
    /// The HTTPS transport could not be built (`ca_file`'s contents, or the
    /// system's trust store).
    #[error("{}{detail}", ca_file.as_ref().map(|p| format!("--ca-file {}: ", p.display())).unwrap_or_default())]
    Transport {
        ca_file: Option<PathBuf>,
        #[source]
        detail: SetupError,
    },
    /// The configured identity cannot be used (missing settings, unreadable
    /// files).
    #[error(transparent)]
    Identity(#[from] AuthError),
    /// The vault client could not be built from the URL.
    #[error(transparent)]
    Client(SetupError),
    #[error("cannot list secrets in {vault}: {source}{}", hint(source))]
    List { vault: String, source: VaultError },
    #[error("cannot read secrets in {vault}: {source}{}", hint(source))]
    Read { vault: String, source: VaultError },
    /// The identity's token could not be obtained (`akvfs check`).
    #[error("{mode} authentication failed: {source}")]
    Token {
        mode: &'static str,
        #[source]
        source: AuthError,
    },
    /// The mountpoint is unusable, or unmounting it failed.
    #[error(transparent)]
    Mountpoint(#[from] MountpointError),
    #[error("cannot mount on {}: {source}{}", mountpoint.display(), mount_advice(source))]
    Mount {
        mountpoint: PathBuf,
        source: io::Error,
    },
    #[error("cannot start the FUSE session: {0}")]
    Session(#[source] io::Error),
    /// Core dumps or memory locking could not be set up.
    #[error(transparent)]
    Harden(#[from] HardenError),
    /// The config file cannot be read or is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The CSI plugin's `--endpoint` is not a unix socket.
    #[error("--endpoint {endpoint}: only unix:// endpoints are served")]
    Endpoint { endpoint: String },
    /// The CSI plugin's socket cannot be bound.
    #[error("cannot listen on {}: {source}; check that its directory exists and no other plugin serves it", socket.display())]
    Listen { socket: PathBuf, source: io::Error },
    /// `--state-dir` cannot be created or resolved.
    #[error("cannot {action} the state directory {}: {source}", dir.display())]
    StateDir {
        dir: PathBuf,
        /// `create` or `resolve`.
        action: &'static str,
        source: io::Error,
    },
    /// A declared view cannot be served.
    #[error("{}", view_failure(view, source))]
    View {
        view: String,
        source: crate::error::FsError,
    },
    /// Another vault a view reads from cannot be used: `view` is the first
    /// view naming it.
    #[error("view {view}: vault {vault}: {}", view_vault_failure(source))]
    ViewVault {
        view: String,
        vault: String,
        source: VaultError,
    },
    /// The metrics endpoint cannot listen.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Background(#[from] BackgroundError),
    #[error("not every mount could start within the ready timeout ({} s): {why}", timeout.as_secs())]
    NotReady { timeout: Duration, why: String },
}

/// A view that cannot be served at start: its path, the object and what to
/// check (a view's own error already names the view).
fn view_failure(view: &str, source: &crate::error::FsError) -> String {
    match source {
        crate::error::FsError::View { .. } => source.to_string(),
        _ => format!(
            "view {view}: {source}; check that the object exists and the identity may read it, or mark the view optional = true"
        ),
    }
}

/// Why another vault of the views cannot be used, and what to check.
fn view_vault_failure(source: &VaultError) -> String {
    match source {
        VaultError::NotFound => {
            "no vault answers at this URL (listing it answered 404); check the view's vault setting"
                .into()
        }
        _ => format!(
            "{source}{}; check the view's vault setting, and that the identity may read that vault",
            super::connect::hint(source)
        ),
    }
}

/// What to check when the kernel refuses a mount.
fn mount_advice(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EPERM) {
        "; mounting needs root, or fusermount3 (package fuse3) for other users; allow_other and allow_root also need user_allow_other in /etc/fuse.conf"
    } else if e.kind() == io::ErrorKind::NotFound {
        "; is /dev/fuse present and fuse3 installed?"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthError, Required, TokenFailure};
    use crate::daemon::background::LogSinkError;

    #[test]
    fn wrapped_layer_errors_render_what_failed_and_what_to_check() {
        let e = Error::from(AuthError::Missing {
            mode: "client-secret",
            setting: Required::TenantId,
        });
        assert_eq!(
            e.to_string(),
            "--auth client-secret needs --tenant-id or AZURE_TENANT_ID"
        );
        let e = Error::Token {
            mode: "azure-cli",
            source: AuthError::Token {
                failure: TokenFailure::Other("AADSTS700082: expired".into()),
                sign_in_expired: true,
            },
        };
        let shown = e.to_string();
        assert!(
            shown.starts_with(
                "azure-cli authentication failed: cannot obtain an access token: AADSTS700082"
            ),
            "{shown}"
        );
        assert!(shown.ends_with(crate::auth::CLI_SIGN_IN_EXPIRED), "{shown}");
        let e = Error::Transport {
            ca_file: Some(PathBuf::from("/etc/ca.pem")),
            detail: SetupError::CaEmpty,
        };
        assert!(e
            .to_string()
            .starts_with("--ca-file /etc/ca.pem: the CA file holds no PEM certificate; check"));
        let e = Error::from(MetricsError::Listen {
            addr: ([127, 0, 0, 1], 9464).into(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        });
        let shown = e.to_string();
        assert!(
            shown.starts_with("cannot listen for metrics on 127.0.0.1:9464: "),
            "{shown}"
        );
        assert!(shown.contains("choose another --metrics-listen"), "{shown}");
        let e = LogSinkError::Dir {
            dir: PathBuf::from("/nope/akvfs"),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert!(e
            .to_string()
            .starts_with("cannot create the log directory /nope/akvfs: "));
        let e = Error::from(HardenError::from(crate::locked::RegionError::Lock {
            bytes: 1 << 20,
            source: io::Error::from_raw_os_error(libc::ENOMEM),
        }));
        let shown = e.to_string();
        assert!(
            shown.starts_with("cannot lock 1 MiB for secret values (mlock): "),
            "{shown}"
        );
        assert!(shown.contains("--no-mlock"), "{shown}");
    }
}
