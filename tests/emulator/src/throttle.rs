//! The sliding-window request budget of a vault's authenticated requests (429 Throttled past it).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Length of the throttling window.
pub(crate) const THROTTLE_WINDOW: Duration = Duration::from_secs(10);

/// Sliding-window request budget for authenticated vault requests.
pub(crate) struct Throttle {
    pub budget: u32,
    window: VecDeque<Instant>,
}

impl Throttle {
    pub(crate) fn new(budget: u32) -> Self {
        Throttle {
            budget,
            window: VecDeque::new(),
        }
    }

    /// Admits a request at `now`, or says how long until one would be admitted.
    pub(crate) fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        while let Some(front) = self.window.front() {
            if now.saturating_duration_since(*front) >= THROTTLE_WINDOW {
                self.window.pop_front();
            } else {
                break;
            }
        }
        if self.window.len() >= self.budget as usize {
            let wait = self
                .window
                .front()
                .map(|f| THROTTLE_WINDOW.saturating_sub(now.saturating_duration_since(*f)))
                .unwrap_or(THROTTLE_WINDOW);
            return Err(wait);
        }
        self.window.push_back(now);
        Ok(())
    }

    pub(crate) fn set_budget(&mut self, budget: u32) {
        self.budget = budget.max(1);
        self.window.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_window() {
        let mut t = Throttle::new(2);
        let start = Instant::now();
        assert!(t.admit(start).is_ok());
        assert!(t.admit(start).is_ok());
        let wait = t.admit(start + Duration::from_secs(3)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(7));
        assert!(t.admit(start + THROTTLE_WINDOW).is_ok());
    }
}
