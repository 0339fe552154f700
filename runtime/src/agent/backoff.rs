//! Reconnect backoff: exponential with full jitter, capped.

use std::time::Duration;

/// Exponential backoff with full jitter: the n-th delay is uniform in `[0, min(cap, base·2ⁿ)]`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The ceiling for the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay, with `jitter` in `[0, 1]` scaling the ceiling.
    pub fn next_with(&mut self, jitter: f64) -> Duration {
        let d = self.ceiling().mul_f64(jitter.clamp(0.0, 1.0));
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// The next delay with random jitter.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(rand::random::<f64>())
    }

    /// Starts over after a healthy session.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(30));
        let ceilings: Vec<u128> = (0..12)
            .map(|_| {
                let c = b.ceiling().as_millis();
                b.next_with(1.0);
                c
            })
            .collect();
        assert_eq!(&ceilings[..4], &[50, 100, 200, 400]);
        assert_eq!(*ceilings.last().unwrap(), 30_000);
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
        b.reset();
        assert_eq!(b.next_with(0.5), Duration::from_millis(25));
    }
}
