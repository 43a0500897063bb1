//! Locks that order the node's publishes: one per identity key, so a slow first mount of
//! one identity (a vault that answers slowly) never holds up another identity's publishes,
//! while two publishes of one identity still run one after the other and make one mount;
//! and one claim per target path, so two calls for one target never interleave.
//!
//! A publish waits for the vault while it holds its identity's lock; these are std mutexes
//! because the calls run on blocking threads, never on the runtime's workers.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// A value per key, each behind its own lock; a key whose value is gone leaves the map.
pub struct KeyedSlots<T> {
    map: Mutex<HashMap<String, Arc<Mutex<Option<T>>>>>,
}

impl<T> Default for KeyedSlots<T> {
    fn default() -> Self {
        KeyedSlots {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> KeyedSlots<T> {
    /// Runs `f` on `key`'s value (None when there is none) with that key's lock held; calls
    /// for other keys run meanwhile. A value left at None is removed with its key.
    pub fn with<R>(&self, key: &str, f: impl FnOnce(&mut Option<T>) -> R) -> R {
        // The map's lock is only ever taken alone or inside a slot's, never
        // the other way round.
        let slot = Arc::clone(lock(&self.map).entry(key.to_string()).or_default());
        let mut value = lock(&slot);
        let out = f(&mut value);
        if value.is_none() {
            let mut map = lock(&self.map);
            // Clones are only made under the map's lock: with none but the
            // map's and ours, no call is waiting for this slot. (When two calls
            // finish together the empty slot may stay; the next call reuses it.)
            if Arc::strong_count(&slot) == 2 {
                map.remove(key);
            }
        }
        out
    }
}

/// Target paths with a call in progress.
#[derive(Default)]
pub struct Claims {
    busy: Mutex<HashSet<PathBuf>>,
}

/// A target claimed until dropped.
pub struct Claim<'a> {
    claims: &'a Claims,
    target: PathBuf,
}

impl Claims {
    /// Claims `target`, or None while another call holds it.
    pub fn claim(&self, target: &Path) -> Option<Claim<'_>> {
        lock(&self.busy)
            .insert(target.to_path_buf())
            .then(|| Claim {
                claims: self,
                target: target.to_path_buf(),
            })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(&self.claims.busy).remove(&self.target);
    }
}

#[cfg(test)]
impl<T> KeyedSlots<T> {
    fn keys(&self) -> usize {
        lock(&self.map).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_held_key_does_not_hold_up_another_and_one_key_runs_in_order() {
        let slots = Arc::new(KeyedSlots::<u32>::default());
        let (entered, wait_entered) = mpsc::channel();
        let (release, held) = mpsc::channel::<()>();
        let a = {
            let slots = Arc::clone(&slots);
            std::thread::spawn(move || {
                slots.with("a", |v| {
                    entered.send(()).unwrap();
                    held.recv().unwrap();
                    *v = Some(1);
                })
            })
        };
        wait_entered.recv().unwrap();
        // "a" is held: "b" goes ahead.
        slots.with("b", |v| *v = Some(2));
        assert_eq!(slots.with("b", |v| *v), Some(2));
        // A second call for "a" waits for the first and sees its value.
        let second = {
            let slots = Arc::clone(&slots);
            std::thread::spawn(move || slots.with("a", |v| v.map(|x| x + 10)))
        };
        release.send(()).unwrap();
        a.join().unwrap();
        assert_eq!(second.join().unwrap(), Some(11));
    }

    #[test]
    fn an_emptied_key_leaves_the_map() {
        let slots = KeyedSlots::<u32>::default();
        slots.with("a", |v| *v = Some(1));
        slots.with("b", |_| ());
        assert_eq!(slots.keys(), 1, "a key that never held a value is not kept");
        assert_eq!(slots.with("a", |v| v.take()), Some(1));
        assert_eq!(slots.keys(), 0);
        assert_eq!(slots.with("a", |v| *v), None);
    }

    #[test]
    fn a_target_is_claimed_once_until_released() {
        let claims = Claims::default();
        let t = Path::new("/pods/x/mount");
        let first = claims.claim(t).expect("free");
        assert!(claims.claim(t).is_none());
        assert!(claims.claim(Path::new("/pods/y/mount")).is_some());
        drop(first);
        assert!(claims.claim(t).is_some());
    }
}
