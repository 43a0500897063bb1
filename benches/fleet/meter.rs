//! Calls the vault answered, sampled from the emulator's counters every 100 ms, and the
//! busiest 10-second window of any stretch of the run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use akvfs::sim::lock;
use akvfs_emulator::Emulator;

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    /// GETs and list pages answered.
    calls: u64,
    /// Requests answered 429.
    throttled: u64,
}

pub struct Meter {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
}

/// What one stretch of the run cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub secs: f64,
    pub calls: u64,
    pub throttled: u64,
    /// The most calls in any 10 s inside the stretch.
    pub max_10s: u64,
}

fn sample(emu: &Emulator) -> Sample {
    let c = emu.counts();
    Sample {
        at: Instant::now(),
        calls: c.get("get_secret") + c.get("list_secrets"),
        throttled: c.get("throttled"),
    }
}

impl Meter {
    pub fn start(emu: Arc<Emulator>) -> Meter {
        let samples = Arc::new(Mutex::new(vec![sample(&emu)]));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&samples), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                lock(&s).push(sample(&emu));
            }
        });
        Meter { samples, stop }
    }

    /// Usage from `from` to now.
    pub fn since(&self, from: Instant) -> Usage {
        let s = lock(&self.samples);
        let inside: Vec<Sample> = s.iter().copied().filter(|x| x.at >= from).collect();
        // The last sample before `from` is the baseline.
        let base = s
            .iter()
            .rev()
            .find(|x| x.at < from)
            .copied()
            .or(inside.first().copied());
        let (Some(base), Some(last)) = (base, inside.last().copied()) else {
            return Usage::default();
        };
        let mut max_10s = 0;
        let mut all = vec![base];
        all.extend(inside.iter().copied());
        let mut j = 0;
        for i in 0..all.len() {
            while all[i].at.duration_since(all[j].at) > Duration::from_secs(10) {
                j += 1;
            }
            max_10s = max_10s.max(all[i].calls - all[j].calls);
        }
        Usage {
            secs: last.at.duration_since(base.at).as_secs_f64(),
            calls: last.calls - base.calls,
            throttled: last.throttled - base.throttled,
            max_10s,
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
