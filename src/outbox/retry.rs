//! Delivery back-off: exponential with jitter, per channel.

use std::time::Duration;

use crate::config::RetryConfig;

/// The wait before retry `n` (0-based) is `initial · 2ⁿ`, capped at `max`,
/// times a random factor in [0.8, 1.2] so that channels (and daemons) that
/// failed together do not retry in lock-step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// 0.5 s doubling to 60 s.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

/// Jitter: ±20%.
const JITTER: f64 = 0.2;

impl Backoff {
    /// From a channel's `retry:` setting; `None` when it is not usable
    /// (zero, or `max` below `initial`).
    pub fn from_config(c: &RetryConfig) -> Option<Backoff> {
        if c.initial.0 <= 0 || c.max.0 < c.initial.0 {
            return None;
        }
        Some(Backoff {
            initial: Duration::from_millis(c.initial.0 as u64),
            max: Duration::from_millis(c.max.0 as u64),
        })
    }

    /// The wait before retry `attempt` (0 for the first retry), without jitter.
    pub fn base(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry `attempt`, with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let f = rand::random_range((1.0 - JITTER)..=(1.0 + JITTER));
        self.base(attempt).mul_f64(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_bounded_jitter() {
        let b = Backoff::default();
        assert_eq!(b.base(0), Duration::from_millis(500));
        assert_eq!(b.base(1), Duration::from_secs(1));
        assert_eq!(b.base(6), Duration::from_secs(32));
        assert_eq!(b.base(7), Duration::from_secs(60));
        assert_eq!(b.base(1000), Duration::from_secs(60));
        for attempt in 0..10 {
            let d = b.delay(attempt);
            let base = b.base(attempt);
            assert!(
                d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2),
                "{d:?} vs {base:?}"
            );
        }
    }
}
