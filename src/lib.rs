//! akvfs: an Azure Key Vault as a read-only directory. Each secret is a file
//! whose contents are the secret's current value, fetched on first use with
//! the caller's Azure identity and kept in memory only.
//!
//! # Layout
//! - [`cli`]: the command line, parsed into [`config`] types.
//! - [`config`]: validated, typed configuration.
//! - [`run`]: wiring (vault client, cache, filesystem, FUSE session),
//!   process hardening, daemonizing, signals and clean shutdown.
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
//! - [`harden`], [`locked`]: core dumps off, and memory locking: the whole
//!   process, or a locked region for secret values.
//!
//! Dependencies point one way: `fuse -> fs -> cache -> vault <- vault::azure`.

pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod harden;
pub mod locked;
pub mod metrics;
pub mod mounts;
pub mod refresh;
pub mod run;
pub mod secret;
pub mod vault;
