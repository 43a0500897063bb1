//! A sliding 10-second window of upstream calls, shared by the refresher's
//! budget and the budget of cold fetches that lookups may trigger.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::lock;

const WINDOW: Duration = Duration::from_secs(10);

/// At most `limit` calls in any 10 seconds.
#[derive(Debug)]
pub struct Budget {
    limit: u32,
    calls: Mutex<VecDeque<Instant>>,
}

impl Budget {
    pub fn new(limit: u32) -> Budget {
        Budget {
            limit: limit.max(1),
            calls: Mutex::new(VecDeque::new()),
        }
    }

    /// Takes one call from the budget if there is room.
    pub fn try_take(&self) -> bool {
        let mut calls = lock(&self.calls);
        let now = Instant::now();
        while calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            calls.pop_front();
        }
        if calls.len() < self.limit as usize {
            calls.push_back(now);
            true
        } else {
            false
        }
    }

    /// Time until a call will be available.
    pub fn wait_hint(&self) -> Duration {
        let calls = lock(&self.calls);
        calls
            .front()
            .map(|t| WINDOW.saturating_sub(t.elapsed()))
            .unwrap_or_default()
    }
}
