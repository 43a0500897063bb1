//! The process around the mounts: hardening, running in the background, signals, systemd and the mount table.

pub mod background;
pub mod harden;
pub mod mounts;
pub mod notify;
pub mod signals;
