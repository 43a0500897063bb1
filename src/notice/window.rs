//! The window a rotation's GETs are spread over, and each node's place in
//! it. Every node (and the watcher, which logs it) computes both from the
//! notice and the node's own name alone, so the fleet spreads itself with no
//! coordination.
//!
//! ```text
//! B = floor(0.4 * limitPer10s)                    the fleet's share per 10 s
//! m = floor((isqrt(9 + 4 B) - 3)^2 / 4)           the planned mean per 10 s: m + 3 sqrt(m) <= B
//! W = max(5, ceil(10 * fleetSize * changed / m))  seconds
//! delay(node, secret, updated) = u64_be(SHA-256(node "\n" secret "\n" updated)[0..8]) mod (1000 W)   ms
//! ```
//!
//! Nodes pick their place by hash, each on its own, so the number of GETs in
//! any 10 s of the window is binomial around its mean: the busiest 10 s of a
//! rotation lies a few standard deviations above it. The mean is therefore
//! planned three standard deviations (`3 sqrt(m)`) under 40% of the limit,
//! so the busiest window stays under 40% and the watcher's listing, cold
//! reads and other clients fit beside it without crossing half the limit.
//! Large limits plan close to 40% (37% of 4,000); small ones lower (30% of
//! 400). Delays are in milliseconds so the GETs of one second are spread too.

use sha2::{Digest, Sha256};

/// The shortest window, so a small fleet still spreads its GETs.
pub const MIN_WINDOW_SECS: u64 = 5;

/// The share of the limit the busiest 10 s of a notice's GETs may reach, in
/// percent.
pub const SHARE_PERCENT: u64 = 40;

/// The planned mean number of notice GETs per 10 s for a vault limit of
/// `limit_per_10s`: the largest `m` with `m + 3 sqrt(m) <= 0.4 * limit`
/// (in integers, so every node gets the same answer). At least 1.
pub fn planned_per_10s(limit_per_10s: u32) -> u64 {
    let share = u64::from(limit_per_10s) * SHARE_PERCENT / 100;
    let root = (9 + 4 * share).isqrt();
    (root.saturating_sub(3).pow(2) / 4).max(1)
}

/// `W` in seconds for `changed` secrets across `fleet_size` nodes sharing
/// `limit_per_10s` calls per 10 s. Saturates instead of overflowing.
pub fn window_secs(fleet_size: u32, changed: u32, limit_per_10s: u32) -> u64 {
    let calls = u64::from(fleet_size).saturating_mul(u64::from(changed.max(1)));
    let w = calls
        .saturating_mul(10)
        .div_ceil(planned_per_10s(limit_per_10s));
    w.max(MIN_WINDOW_SECS)
}

/// The node's delay in milliseconds (`0..1000 W`) for the change of
/// `secret` to version time `updated`.
pub fn delay_ms_for(node: &str, secret: &str, updated: i64, window: u64) -> u64 {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update(b"\n");
    h.update(secret.as_bytes());
    h.update(b"\n");
    h.update(updated.to_string().as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first) % window.saturating_mul(1000).max(1)
}
