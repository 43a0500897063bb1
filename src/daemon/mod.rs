//! The process around the mounts: hardening, running in the background, signals, systemd and the mount table.

pub mod background;
mod error;
pub mod harden;
pub mod mounts;
pub mod notify;
pub mod signals;

#[cfg(test)]
mod tests;
