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
//!   error advice in [`service::connect`], typed failures in
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
//! - [`secret`]: domain types, including the zeroizing value buffer.
//! - [`locked`]: memory locking: the whole process, or a locked region for
//!   secret values.
//! - [`metrics`]: per-mount counters and the metrics endpoint.
//! - [`refresh`]: the background refresher of listings and values.
//! - [`csi`]: `akvfs csi`, the Kubernetes CSI node plugin: one mount per pod identity.
//!
//! Dependencies point one way: `fuse -> fs -> cache -> vault <- vault::azure`.

pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod csi;
pub mod daemon;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod locked;
pub mod metrics;
pub mod refresh;
pub mod secret;
pub mod service;
pub mod vault;

// Kept at the crate root for existing users of these paths.
pub use daemon::{harden, mounts};
