//! The window a rotation's GETs are spread over, and each node's place in
//! it. Every node computes both from the notice and its own name alone, so
//! the fleet spreads itself with no coordination.
//!
//! ```text
//! W = max(5, ceil(fleetSize * changed / (0.5 * limitPer10s / 10)))   seconds
//! delay(node, secret, updated) = u64_be(SHA-256(node "\n" secret "\n" updated)[0..8]) mod W
//! ```
//!
//! `updated` is written in decimal. Half the limit per second is the rate the
//! whole fleet may spend on one rotation; a uniform spread over `W` keeps it
//! there.

use sha2::{Digest, Sha256};

/// The shortest window, so a small fleet still spreads its GETs.
pub const MIN_WINDOW_SECS: u64 = 5;

/// `W` in seconds for `changed` secrets across `fleet_size` nodes sharing
/// `limit_per_10s` calls per 10 s. Saturates instead of overflowing.
pub fn window_secs(fleet_size: u32, changed: u32, limit_per_10s: u32) -> u64 {
    let calls = u64::from(fleet_size).saturating_mul(u64::from(changed.max(1)));
    // 0.5 * limit / 10 calls per second, i.e. limit / 20; ceil(calls / (limit / 20))
    // = ceil(20 * calls / limit), in integers.
    let limit = u64::from(limit_per_10s.max(1));
    let w = calls.saturating_mul(20).div_ceil(limit);
    w.max(MIN_WINDOW_SECS)
}

/// The node's delay in seconds (`0..W`) for the change of `secret` to
/// version time `updated`.
pub fn delay_for(node: &str, secret: &str, updated: i64, window: u64) -> u64 {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update(b"\n");
    h.update(secret.as_bytes());
    h.update(b"\n");
    h.update(updated.to_string().as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first) % window.max(1)
}
