//! Poison-tolerant locking: a mutex whose holder panicked still hands out its data.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, recovering the data if a panicking thread poisoned it. Every
/// critical section in akvfs leaves its data whole at each step (single
/// assignments, inserts, removals), so one panicked request must not take the
/// lock, and with it the whole mount, down too.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
