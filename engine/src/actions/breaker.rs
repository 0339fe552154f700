//! Circuit-breaker state: per breaker, a rolling window of request and failure counts split
//! into buckets, and the closed → open → half-open cycle; behind a trait so that the runtime can
//! share or replace it.
//!
//! - **Closed**: every request is admitted. When the window holds at least `volume_threshold`
//!   reported requests and the failed fraction is at least `error_threshold` (and not zero), the
//!   breaker opens.
//! - **Open**: requests are refused (the action answers 503, `ERR_NGROK_3202`) for
//!   `tripped_duration`.
//! - **Half-open**: after that, one request (the probe) is admitted and the others refused; a
//!   successful probe closes the breaker with an empty window, a failed one opens it again. A
//!   probe never reported is given up after `tripped_duration` and another one admitted.
//!
//! A failure is an upstream response with a 5xx status or a request that got no response
//! ([`Upstream::Failed`]) **[inferred: the spec leaves "error" undefined]**. Reports carry the
//! [`Ticket`] of their admission: a report from before the last state change is ignored, so
//! requests admitted before a trip do not count in the next closed period.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The settings of one `circuit-breaker` action.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// Failed fraction (0.0–1.0) at or above which the breaker trips.
    pub error_threshold: f64,
    /// Reported requests the window must hold before the breaker can trip.
    pub volume_threshold: u64,
    /// The rolling window.
    pub window: Duration,
    /// How long the breaker stays open before probing.
    pub tripped: Duration,
    /// Buckets the window is split into.
    pub buckets: u32,
}

impl Default for BreakerConfig {
    /// The spec's defaults: 0.5, 10 requests, 10 s window, 10 s open, 10 buckets.
    fn default() -> Self {
        Self {
            error_threshold: 0.5,
            volume_threshold: 10,
            window: Duration::from_secs(10),
            tripped: Duration::from_secs(10),
            buckets: 10,
        }
    }
}

/// An admission: which state period it belongs to and whether it is the half-open probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The breaker's state period at admission.
    pub generation: u64,
    /// Whether the request is the half-open probe.
    pub probe: bool,
}

/// The verdict for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerVerdict {
    /// The request may go upstream; report its result with this ticket.
    Allowed(Ticket),
    /// The breaker is open: refuse the request.
    Open {
        /// Time until the breaker probes again (at least one second).
        retry_after: Duration,
    },
}

/// What became of an admitted request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// The upstream answered with this status (5xx counts as a failure).
    Response(u16),
    /// The request reached no response (connection or tunnel failure, timeout): a failure.
    Failed,
    /// The request was not sent upstream after all (a later action answered it): not counted;
    /// a probe's slot is freed.
    NotSent,
}

impl Upstream {
    fn failed(self) -> Option<bool> {
        match self {
            Upstream::Response(status) => Some(status >= 500),
            Upstream::Failed => Some(true),
            Upstream::NotSent => None,
        }
    }
}

/// Storage of circuit-breaker state.
pub trait CircuitBreakerStore: Send + Sync + fmt::Debug {
    /// Asks breaker `breaker` whether a request may go upstream.
    fn admit(&self, breaker: &str, config: &BreakerConfig) -> BreakerVerdict;
    /// Reports what became of a request admitted with `ticket`.
    fn report(&self, breaker: &str, config: &BreakerConfig, ticket: Ticket, result: Upstream);
}

/// A source of the current instant (replaceable in tests).
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        since: Instant,
    },
    /// `probe`: when the probe in flight was admitted (`None`: none in flight).
    HalfOpen {
        probe: Option<Instant>,
    },
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// The bucket period (time since the breaker's epoch / bucket length) counted here.
    slot: u64,
    total: u64,
    failures: u64,
}

#[derive(Debug)]
struct Breaker {
    state: State,
    generation: u64,
    epoch: Instant,
    buckets: Vec<Bucket>,
    last_used: Instant,
}

impl Breaker {
    fn new(config: &BreakerConfig, now: Instant) -> Self {
        Self {
            state: State::Closed,
            generation: 0,
            epoch: now,
            buckets: vec![Bucket::default(); config.buckets.max(1) as usize],
            last_used: now,
        }
    }

    fn bucket_len(config: &BreakerConfig) -> u128 {
        (config.window.as_nanos() / u128::from(config.buckets.max(1))).max(1)
    }

    fn slot(&self, config: &BreakerConfig, now: Instant) -> u64 {
        let slot = now.duration_since(self.epoch).as_nanos() / Self::bucket_len(config);
        // Slots start at 1 so that an unused bucket (slot 0) never counts.
        u64::try_from(slot).unwrap_or(u64::MAX - 1) + 1
    }

    /// Requests and failures in the window ending now.
    fn totals(&self, config: &BreakerConfig, now: Instant) -> (u64, u64) {
        let current = self.slot(config, now);
        let n = self.buckets.len() as u64;
        self.buckets
            .iter()
            .filter(|b| b.slot != 0 && b.slot <= current && current - b.slot < n)
            .fold((0, 0), |(t, f), b| (t + b.total, f + b.failures))
    }

    fn count(&mut self, config: &BreakerConfig, now: Instant, failed: bool) {
        let slot = self.slot(config, now);
        let n = self.buckets.len() as u64;
        let Some(b) = self.buckets.get_mut((slot % n) as usize) else {
            return;
        };
        if b.slot != slot {
            *b = Bucket {
                slot,
                total: 0,
                failures: 0,
            };
        }
        b.total += 1;
        b.failures += u64::from(failed);
    }

    fn change(&mut self, state: State, now: Instant) {
        self.state = state;
        self.generation += 1;
        self.epoch = now;
        self.buckets.fill(Bucket::default());
    }

    fn ticket(&self, probe: bool) -> BreakerVerdict {
        BreakerVerdict::Allowed(Ticket {
            generation: self.generation,
            probe,
        })
    }

    fn admit(&mut self, config: &BreakerConfig, now: Instant) -> BreakerVerdict {
        self.last_used = now;
        let open_until = |since: Instant| {
            let elapsed = now.duration_since(since);
            (elapsed < config.tripped).then(|| BreakerVerdict::Open {
                retry_after: (config.tripped - elapsed).max(Duration::from_secs(1)),
            })
        };
        match self.state {
            State::Closed => self.ticket(false),
            State::Open { since } | State::HalfOpen { probe: Some(since) } => {
                if let Some(refused) = open_until(since) {
                    return refused;
                }
                // Open long enough, or the probe was never reported: probe (again).
                self.state = State::HalfOpen { probe: Some(now) };
                self.ticket(true)
            }
            State::HalfOpen { probe: None } => {
                self.state = State::HalfOpen { probe: Some(now) };
                self.ticket(true)
            }
        }
    }

    fn report(&mut self, config: &BreakerConfig, ticket: Ticket, result: Upstream, now: Instant) {
        if ticket.generation != self.generation {
            return;
        }
        self.last_used = now;
        let failed = result.failed();
        if ticket.probe {
            if !matches!(self.state, State::HalfOpen { .. }) {
                return;
            }
            match failed {
                None => self.state = State::HalfOpen { probe: None },
                Some(true) => self.change(State::Open { since: now }, now),
                Some(false) => self.change(State::Closed, now),
            }
            return;
        }
        let (State::Closed, Some(failed)) = (self.state, failed) else {
            return;
        };
        self.count(config, now, failed);
        if !failed {
            return;
        }
        let (total, failures) = self.totals(config, now);
        #[expect(
            clippy::cast_precision_loss,
            reason = "request counts are far below 2^52"
        )]
        let ratio = failures as f64 / total.max(1) as f64;
        if total >= config.volume_threshold && ratio >= config.error_threshold {
            self.change(State::Open { since: now }, now);
        }
    }

    /// Whether the breaker holds nothing worth keeping (closed with an empty window).
    fn is_idle(&self, config_window: Duration, now: Instant) -> bool {
        self.state == State::Closed && now.duration_since(self.last_used) >= config_window
    }
}

/// An in-memory store holding at most `max_breakers` breakers; when room is needed, closed
/// breakers unused for a window (two minutes, the longest allowed) are evicted, and failing
/// that the least recently used one.
#[derive(Debug)]
pub struct MemoryCircuitBreakers {
    breakers: Mutex<HashMap<String, Breaker>>,
    max_breakers: usize,
    clock: Box<dyn Clock>,
}

impl MemoryCircuitBreakers {
    /// A store of at most `max_breakers` breakers on the system clock.
    #[must_use]
    pub fn new(max_breakers: usize) -> Self {
        Self::with_clock(max_breakers, Box::new(SystemClock))
    }

    /// A store of at most `max_breakers` breakers on `clock`.
    #[must_use]
    pub fn with_clock(max_breakers: usize, clock: Box<dyn Clock>) -> Self {
        Self {
            breakers: Mutex::new(HashMap::new()),
            max_breakers: max_breakers.max(1),
            clock,
        }
    }

    /// The number of breakers held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.breakers.lock().map_or(0, |b| b.len())
    }

    /// Whether no breaker is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryCircuitBreakers {
    fn default() -> Self {
        Self::new(10_000)
    }
}

impl CircuitBreakerStore for MemoryCircuitBreakers {
    fn admit(&self, breaker: &str, config: &BreakerConfig) -> BreakerVerdict {
        let now = self.clock.now();
        let Ok(mut breakers) = self.breakers.lock() else {
            // A poisoned lock means a panic elsewhere; fail closed.
            return BreakerVerdict::Open {
                retry_after: config.tripped.max(Duration::from_secs(1)),
            };
        };
        if let Some(b) = breakers.get_mut(breaker) {
            if b.buckets.len() == config.buckets.max(1) as usize {
                return b.admit(config, now);
            }
            // The same breaker with another bucket count (a shared store across policy
            // versions): start afresh.
            *b = Breaker::new(config, now);
            return b.admit(config, now);
        }
        if breakers.len() >= self.max_breakers {
            let idle_after = Duration::from_secs(120);
            breakers.retain(|_, b| !b.is_idle(idle_after, now));
            if breakers.len() >= self.max_breakers {
                let stalest = breakers
                    .iter()
                    .min_by_key(|(_, b)| b.last_used)
                    .map(|(k, _)| k.clone());
                if let Some(k) = stalest {
                    breakers.remove(&k);
                }
            }
        }
        let b = breakers
            .entry(breaker.to_owned())
            .or_insert_with(|| Breaker::new(config, now));
        b.admit(config, now)
    }

    fn report(&self, breaker: &str, config: &BreakerConfig, ticket: Ticket, result: Upstream) {
        let now = self.clock.now();
        let Ok(mut breakers) = self.breakers.lock() else {
            return;
        };
        if let Some(b) = breakers.get_mut(breaker) {
            b.report(config, ticket, result, now);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;

    /// A clock moved by hand.
    #[derive(Debug, Clone)]
    pub(crate) struct ManualClock(pub Arc<Mutex<Instant>>);

    impl ManualClock {
        pub(crate) fn new() -> Self {
            Self(Arc::new(Mutex::new(Instant::now())))
        }
        pub(crate) fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn ticket(v: BreakerVerdict) -> Ticket {
        match v {
            BreakerVerdict::Allowed(t) => t,
            BreakerVerdict::Open { .. } => panic!("expected an admission, got {v:?}"),
        }
    }

    fn store() -> (MemoryCircuitBreakers, ManualClock) {
        let clock = ManualClock::new();
        (
            MemoryCircuitBreakers::with_clock(10, Box::new(clock.clone())),
            clock,
        )
    }

    fn config() -> BreakerConfig {
        BreakerConfig {
            volume_threshold: 4,
            ..BreakerConfig::default()
        }
    }

    #[test]
    fn trips_at_the_threshold_once_the_volume_is_reached() {
        let (s, _clock) = store();
        let c = config();
        // Three failures: under the volume threshold, still closed.
        for _ in 0..3 {
            let t = ticket(s.admit("b", &c));
            s.report("b", &c, t, Upstream::Response(500));
        }
        let t = ticket(s.admit("b", &c));
        // The fourth request fails (transport): 4 of 4 failed, the breaker opens.
        s.report("b", &c, t, Upstream::Failed);
        assert_eq!(
            s.admit("b", &c),
            BreakerVerdict::Open {
                retry_after: Duration::from_secs(10)
            }
        );
        // Other breakers are independent.
        assert!(matches!(s.admit("other", &c), BreakerVerdict::Allowed(_)));
    }

    #[test]
    fn stays_closed_under_the_error_threshold() {
        let (s, _clock) = store();
        let c = config();
        for status in [200, 500, 200, 200, 503, 204, 502] {
            let t = ticket(s.admit("b", &c));
            s.report("b", &c, t, Upstream::Response(status));
        }
        // 3 of 7 failed < 0.5.
        assert!(matches!(s.admit("b", &c), BreakerVerdict::Allowed(_)));
        // Requests not sent upstream do not count.
        for _ in 0..10 {
            let t = ticket(s.admit("b", &c));
            s.report("b", &c, t, Upstream::NotSent);
        }
        let t = ticket(s.admit("b", &c));
        s.report("b", &c, t, Upstream::Response(500));
        // 4 of 8.
        assert!(matches!(s.admit("b", &c), BreakerVerdict::Open { .. }));
    }

    #[test]
    fn old_failures_leave_the_rolling_window() {
        let (s, clock) = store();
        let c = config();
        for _ in 0..3 {
            let t = ticket(s.admit("b", &c));
            s.report("b", &c, t, Upstream::Response(500));
        }
        // A window later the three failures no longer count.
        clock.advance(Duration::from_secs(11));
        let t = ticket(s.admit("b", &c));
        s.report("b", &c, t, Upstream::Response(500));
        assert!(matches!(s.admit("b", &c), BreakerVerdict::Allowed(_)));
        // Within the window (buckets of 1 s), they accumulate.
        for _ in 0..3 {
            clock.advance(Duration::from_millis(900));
            let t = ticket(s.admit("b", &c));
            s.report("b", &c, t, Upstream::Response(500));
        }
        assert!(matches!(s.admit("b", &c), BreakerVerdict::Open { .. }));
    }

    #[test]
    fn half_open_admits_one_probe_and_closes_on_success() {
        let (s, clock) = store();
        let c = config();
        for _ in 0..4 {
            let t = ticket(s.admit("b", &c));
            s.report("b", &c, t, Upstream::Response(500));
        }
        clock.advance(Duration::from_secs(4));
        assert_eq!(
            s.admit("b", &c),
            BreakerVerdict::Open {
                retry_after: Duration::from_secs(6)
            }
        );
        clock.advance(Duration::from_secs(6));
        let probe = ticket(s.admit("b", &c));
        assert!(probe.probe);
        // While the probe is in flight, others are refused.
        assert!(matches!(s.admit("b", &c), BreakerVerdict::Open { .. }));
        s.report("b", &c, probe, Upstream::Response(200));
        let t = ticket(s.admit("b", &c));
        assert!(!t.probe);
        // The window starts empty: one failure does not reopen it.
        s.report("b", &c, t, Upstream::Response(500));
        assert!(matches!(s.admit("b", &c), BreakerVerdict::Allowed(_)));
    }

    #[test]
    fn a_failed_probe_reopens_and_stale_reports_are_ignored() {
        let (s, clock) = store();
        let c = config();
        let early = ticket(s.admit("b", &c));
        for _ in 0..4 {
            let t = ticket(s.admit("b", &c));
            s.report("b", &c, t, Upstream::Response(500));
        }
        clock.advance(Duration::from_secs(10));
        let probe = ticket(s.admit("b", &c));
        // A report from before the trip changes nothing.
        s.report("b", &c, early, Upstream::Response(200));
        assert!(matches!(s.admit("b", &c), BreakerVerdict::Open { .. }));
        s.report("b", &c, probe, Upstream::Response(502));
        assert_eq!(
            s.admit("b", &c),
            BreakerVerdict::Open {
                retry_after: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn an_unreported_or_unsent_probe_is_replaced() {
        let (s, clock) = store();
        let c = config();
        for _ in 0..4 {
            let t = ticket(s.admit("b", &c));
            s.report("b", &c, t, Upstream::Failed);
        }
        clock.advance(Duration::from_secs(10));
        let probe = ticket(s.admit("b", &c));
        s.report("b", &c, probe, Upstream::NotSent);
        // The slot is free again at once.
        let probe = ticket(s.admit("b", &c));
        assert!(probe.probe);
        // Never reported: given up after the tripped duration.
        clock.advance(Duration::from_secs(10));
        assert!(ticket(s.admit("b", &c)).probe);
    }

    #[test]
    fn a_zero_threshold_needs_a_failure() {
        let (s, _clock) = store();
        let c = BreakerConfig {
            error_threshold: 0.0,
            volume_threshold: 1,
            ..BreakerConfig::default()
        };
        for _ in 0..5 {
            let t = ticket(s.admit("b", &c));
            s.report("b", &c, t, Upstream::Response(200));
        }
        assert!(matches!(s.admit("b", &c), BreakerVerdict::Allowed(_)));
    }

    #[test]
    fn holds_a_bounded_number_of_breakers() {
        let clock = ManualClock::new();
        let s = MemoryCircuitBreakers::with_clock(2, Box::new(clock.clone()));
        let c = config();
        for _ in 0..4 {
            let t = ticket(s.admit("a", &c));
            s.report("a", &c, t, Upstream::Failed);
        }
        s.admit("b", &c);
        clock.advance(Duration::from_secs(1));
        s.admit("a", &c);
        // Full: `b` (least recently used) goes, open `a` stays.
        s.admit("c", &c);
        assert_eq!(s.len(), 2);
        assert!(matches!(s.admit("a", &c), BreakerVerdict::Open { .. }));
    }
}
