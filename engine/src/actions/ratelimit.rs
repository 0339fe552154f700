//! Rate-limit state: a sliding-window counter per bucket, behind a trait so that the runtime
//! can share or replace it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The verdict for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateVerdict {
    /// Under the limit; the request was counted.
    Allowed,
    /// Over the limit: retry after this long.
    Limited {
        /// Time until the window has room again.
        retry_after: Duration,
    },
}

/// Storage of rate-limit counters.
pub trait RateLimitStore: Send + Sync + fmt::Debug {
    /// Counts one request in `bucket` against `capacity` requests per `window`.
    fn hit(&self, bucket: &str, capacity: u64, window: Duration) -> RateVerdict;
}

#[derive(Debug)]
struct Bucket {
    window_start: Instant,
    previous: u64,
    current: u64,
    window: Duration,
}

/// An in-memory sliding-window store holding at most `max_buckets` buckets; buckets idle for
/// two windows are evicted when room is needed (and, failing that, the stalest one).
#[derive(Debug)]
pub struct MemoryRateLimits {
    buckets: Mutex<HashMap<String, Bucket>>,
    max_buckets: usize,
}

impl MemoryRateLimits {
    /// A store of at most `max_buckets` buckets.
    #[must_use]
    pub fn new(max_buckets: usize) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            max_buckets: max_buckets.max(1),
        }
    }

    /// The number of buckets held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.buckets.lock().map_or(0, |b| b.len())
    }

    /// Whether no bucket is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn hit_at(&self, bucket: &str, capacity: u64, window: Duration, now: Instant) -> RateVerdict {
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock means a panic elsewhere; fail closed.
            return RateVerdict::Limited {
                retry_after: window,
            };
        };
        if !buckets.contains_key(bucket) && buckets.len() >= self.max_buckets {
            buckets.retain(|_, b| now.duration_since(b.window_start) < b.window.saturating_mul(2));
            if buckets.len() >= self.max_buckets {
                let stalest = buckets
                    .iter()
                    .min_by_key(|(_, b)| b.window_start)
                    .map(|(k, _)| k.clone());
                if let Some(k) = stalest {
                    buckets.remove(&k);
                }
            }
        }
        let b = buckets.entry(bucket.to_owned()).or_insert(Bucket {
            window_start: now,
            previous: 0,
            current: 0,
            window,
        });
        let mut elapsed = now.duration_since(b.window_start);
        if elapsed >= window {
            let windows = elapsed.as_nanos() / window.as_nanos().max(1);
            b.previous = if windows == 1 { b.current } else { 0 };
            b.current = 0;
            let advance = window.saturating_mul(u32::try_from(windows).unwrap_or(u32::MAX));
            b.window_start += advance;
            elapsed = now.duration_since(b.window_start);
        }
        let weight = 1.0 - elapsed.as_secs_f64() / window.as_secs_f64().max(f64::MIN_POSITIVE);
        #[expect(
            clippy::cast_precision_loss,
            reason = "request counts are far below 2^52"
        )]
        let estimate = b.previous as f64 * weight + b.current as f64;
        #[expect(clippy::cast_precision_loss, reason = "capacities are at most 2e9")]
        if estimate + 1.0 > capacity as f64 {
            RateVerdict::Limited {
                retry_after: window.saturating_sub(elapsed).max(Duration::from_secs(1)),
            }
        } else {
            b.current += 1;
            RateVerdict::Allowed
        }
    }
}

impl Default for MemoryRateLimits {
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl RateLimitStore for MemoryRateLimits {
    fn hit(&self, bucket: &str, capacity: u64, window: Duration) -> RateVerdict {
        self.hit_at(bucket, capacity, window, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_within_a_window_and_slides() {
        let store = MemoryRateLimits::new(10);
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(store.hit_at("k", 3, w, t0), RateVerdict::Allowed);
        }
        assert!(matches!(
            store.hit_at("k", 3, w, t0),
            RateVerdict::Limited { .. }
        ));
        assert_eq!(store.hit_at("other", 3, w, t0), RateVerdict::Allowed);
        // Two windows later the old counts no longer weigh.
        assert_eq!(store.hit_at("k", 3, w, t0 + w * 2), RateVerdict::Allowed);
    }

    #[test]
    fn evicts_when_full() {
        let store = MemoryRateLimits::new(2);
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        store.hit_at("a", 1, w, t0);
        store.hit_at("b", 1, w, t0);
        store.hit_at("c", 1, w, t0 + w * 3);
        assert_eq!(store.len(), 1);
        store.hit_at("d", 1, w, t0 + w * 3);
        store.hit_at("e", 1, w, t0 + w * 3);
        assert_eq!(store.len(), 2);
    }
}
