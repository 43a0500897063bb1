//! akvfs: an Azure Key Vault as a read-only directory. Each secret is a file
//! whose contents are the secret's current value, fetched on first use with
//! the caller's Azure identity and kept in memory only.
//!
//! # Layout
//! - [`cli`]: the command line, parsed into [`config`] types.
//! - [`config`]: validated, typed configuration.
//! - [`service`]: the commands that serve: one mount's life (connect,
//!   read the vault, mount, refresh, stop) in [`service::mount`], the
//!   config file's mounts and reloads in [`service::supervisor`],
//!   `akvfs check` in [`service::check`], the vault client's set-up and
//!   error advice in [`service::connect`], the other vaults a mount's views
//!   read from in [`service::vaults`], typed failures in
//!   [`service::error`].
//! - [`daemon`]: the process around the mounts: hardening
//!   ([`daemon::harden`]), running in the background
//!   ([`daemon::background`]), signals ([`daemon::signals`]), systemd
//!   notification ([`daemon::notify`]) and the mount table
//!   ([`daemon::mounts`]).
//! - [`auth`]: which Azure identity to use, and building its credential.
//! - [`vault`]: the [`vault::Vault`] trait; [`vault::azure`] implements it
//!   with the Azure SDK, [`vault::memory`] in memory for tests.
//! - [`cache`]: memory-only LRU of values by byte budget, single-flight
//!   fetches, negative caching, wiping on eviction.
//! - [`fs`]: filesystem semantics without FUSE: inodes, attributes, reads,
//!   listings, extended attributes.
//! - [`error`]: the filesystem error type and its one mapping to errno.
//! - [`fuse`]: the thin `fuser` adapter; the only code that touches replies.
//! - [`objects`]: certificate and key material into PEM files (pure).
//! - [`secret`]: domain types, including the zeroizing value buffer.
//! - [`locked`]: memory locking: the whole process, or a locked region for
//!   secret values.
//! - [`metrics`]: per-mount counters and the metrics endpoint.
//! - [`refresh`]: the background refresher of listings and values.
//! - [`notice`]: change notices a mount follows (published by `akvfs watch`).
//! - [`csi`]: `akvfs csi`, the Kubernetes CSI node plugin: one mount per pod identity.
//! - [`watch`]: `akvfs watch`, the per-cluster watcher that publishes vault metadata.
//!
//! - [`sync`]: poison-tolerant locking, for every layer.
//! - [`text`]: an error and its causes on one line, for every layer.
//! - [`objects`]: certificate and key conversions (PKCS#12 to PEM, chain order,
//!   JWK to SPKI), pure and without I/O.
//!
//! # Dependencies
//! They point one way: each module uses only modules before it here, which
//! `tests/module_deps.rs` checks on every `cargo test`.
//! Order: `sync < locked < text < objects < secret < config < daemon < auth < vault < error < cache < metrics < fs < refresh < notice < fuse < service < watch < csi < cli`
//!
//! The data path reads down it (`fuse -> fs -> cache -> vault`, with
//! `vault::azure` using `auth` for credentials); the control path
//! (`service`, `daemon`) builds and drives it.

mod auth;
mod cache;
mod cli;
mod config;
mod csi;
mod daemon;
mod error;
mod fs;
mod fuse;
mod locked;
mod metrics;
mod notice;
mod objects;
mod refresh;
mod secret;
mod service;
mod sync;
mod text;
mod vault;
mod watch;

// What the binary uses.
pub use auth::take_client_secret_from_env;
pub use cli::{Cli, Command, LogFormat};
pub use csi::run as run_csi;
pub use daemon::mounts::unmount;
pub use locked::WipeOnFree;
pub use service::{check, mount, run_config_with, Error};
pub use watch::run as run_watch;

/// What the fleet simulation (benches/fleet) and the notice tests drive: the
/// real node-side code without FUSE.
#[doc(hidden)]
pub mod sim {
    pub use crate::cache::SecretCache;
    pub use crate::config::{MountConfig, MountOptions};
    pub use crate::fs::{FsCore, FsTimings, ROOT_INO};
    pub use crate::metrics::MountMetrics;
    pub use crate::notice::{
        kube::ConfigMapSource, start::begin as begin_start, Notice, NoticeError, NoticeNode,
        NoticeSource, NoticeStats, SecretMeta, SourceEvent,
    };
    pub use crate::refresh::{KernelCache, Refresher};
    pub use crate::secret::SecretName;
    pub use crate::service::connect::connect;
    pub use crate::sync::lock;
    pub use crate::vault::{PageCount, Vault};
}

/// The CSI protocol's generated types: the test harness plays kubelet with them.
pub mod csi_proto {
    pub use crate::csi::proto::*;
}

// What the integration tests reach directly: the metrics endpoint, and the
// parsers of untrusted input that tests/parsers.rs drives with proptest.
pub use auth::{classify_token_answer, is_key_vault_scope, TokenFailure, KEY_VAULT_SCOPES};
pub use config::{
    load_config_file, parse_duration, parse_mode, parse_mount_options, parse_size, ConfigFile,
};
pub use daemon::mounts::unescape as unescape_mountinfo;
pub use metrics::{serve as serve_metrics, MountMetrics, Registry};
pub use secret::unescape_json_string;
pub use vault::azure::parse_secret_bundle;
pub use vault::VaultError;
