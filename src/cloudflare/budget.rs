//! The per-credential request budget: a token bucket (as GCRA) shared by every
//! caller using one credential, plus the block after a 429.
//!
//! Not `governor` (0.10), whose GCRA would replace only the few lines of
//! arithmetic in `allowed_at` and `reserve` (issue 14):
//! - it cannot reserve a future slot: `until_ready` loops on `check` and
//!   sleeps, so waiters race each other instead of being served in arrival
//!   order, and each wake-up costs another check; `acquire` reserves first;
//! - `defer` must read when a request made now could go without taking a
//!   cell, and governor's only question, `check`, takes one when it succeeds;
//! - its waits run on `futures-timer` and its own clocks, not tokio's timer,
//!   so tokio's paused clock (the tests below use it) would not drive them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

use super::credentials::{CredentialId, Credentials};

/// The request budget of one credential.
#[derive(Debug)]
pub struct CredentialBudget {
    /// Time one request "costs": 1 / rate.
    emission_interval: Duration,
    /// How far ahead of the steady rate a burst may run.
    burst_tolerance: Duration,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    /// GCRA's theoretical arrival time of the next request.
    next_arrival: Instant,
    /// After a 429: nobody calls before this.
    blocked_until: Option<Instant>,
    /// When the next deferred caller should come back.
    deferred_until: Instant,
}

impl CredentialBudget {
    /// A budget of `per_second` requests per second with bursts of `burst`.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let emission_interval = Duration::from_secs_f64(1.0 / per_second.max(1e-6));
        Self {
            emission_interval,
            burst_tolerance: emission_interval.saturating_mul(burst.max(1) - 1),
            state: Mutex::new(BucketState {
                next_arrival: Instant::now(),
                blocked_until: None,
                deferred_until: Instant::now(),
            }),
        }
    }

    /// Waits until this credential may make one more request, and returns how
    /// long it waited. Reserves the slot before sleeping, so waiters are served
    /// in arrival order without spinning.
    pub async fn acquire(&self) -> Duration {
        let started = Instant::now();
        let allowed_at = self.reserve(started);
        tokio::time::sleep_until(allowed_at).await;
        // A 429 may have arrived while we waited: honour it too.
        while let Some(until) = self.blocked_until().filter(|u| *u > Instant::now()) {
            tokio::time::sleep_until(until).await;
        }
        started.elapsed()
    }

    /// Blocks every caller of this credential for `wait` from now (after a 429).
    pub fn block_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut state = self.lock();
        state.blocked_until = Some(state.blocked_until.map_or(until, |b| b.max(until)));
    }

    /// When the current block ends, if any.
    pub fn blocked_until(&self) -> Option<Instant> {
        self.lock().blocked_until
    }

    /// When a request made now would wait longer than `max_wait` (the budget
    /// is reserved that far ahead, or a 429 blocks it): how long to put the
    /// work off instead of holding a worker that other credentials' policies
    /// could use. Deferred callers are spaced at the steady rate after the
    /// reserved slots, so they do not all come back at once. Reserves nothing.
    pub fn defer(&self, max_wait: Duration) -> Option<Duration> {
        let now = Instant::now();
        let mut state = self.lock();
        let allowed_at = self.allowed_at(&state, now);
        if allowed_at <= now + max_wait {
            return None;
        }
        let at = state.deferred_until.max(allowed_at);
        state.deferred_until = at + self.emission_interval;
        Some(at - now)
    }

    fn reserve(&self, now: Instant) -> Instant {
        let mut state = self.lock();
        let allowed_at = self.allowed_at(&state, now);
        state.next_arrival = state.next_arrival.max(allowed_at) + self.emission_interval;
        allowed_at
    }

    /// The earliest time a request arriving at `now` may go.
    fn allowed_at(&self, state: &BucketState, now: Instant) -> Instant {
        let base = state.next_arrival.max(now);
        let allowed_at = base
            .checked_sub(self.burst_tolerance)
            .unwrap_or(now)
            .max(now);
        state
            .blocked_until
            .map_or(allowed_at, |until| allowed_at.max(until))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BucketState> {
        // The state stays consistent even if a holder panicked: every write is one assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// All credentials' budgets; callers with the same credential get the same one.
#[derive(Debug)]
pub struct BudgetRegistry {
    per_second: f64,
    burst: u32,
    budgets: Mutex<HashMap<CredentialId, Arc<CredentialBudget>>>,
}

/// A credential's steady demand against its budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// Policies using the credential.
    pub policies: usize,
    /// Drift checks per second they need together.
    pub checks_per_second: f64,
    /// Requests per second the budget allows.
    pub capacity_per_second: f64,
}

impl Demand {
    /// Adds up `intervals` (one per policy using the credential) against `capacity_per_second`.
    pub fn of(intervals: impl IntoIterator<Item = Duration>, capacity_per_second: f64) -> Self {
        let (policies, checks_per_second) =
            intervals.into_iter().fold((0, 0.0), |(n, sum), interval| {
                (n + 1, sum + 1.0 / interval.as_secs_f64().max(1e-3))
            });
        Self {
            policies,
            checks_per_second,
            capacity_per_second,
        }
    }

    /// More checks are needed than the budget serves: checks will come late.
    pub fn overcommitted(&self) -> bool {
        self.checks_per_second > self.capacity_per_second
    }

    /// How often each policy is really checked when the budget is the limit.
    pub fn effective_interval(&self) -> Duration {
        Duration::from_secs_f64(self.policies as f64 / self.capacity_per_second.max(1e-9))
    }
}

impl BudgetRegistry {
    /// Every credential gets `requests` per `window`, in bursts of at most `burst`.
    pub fn new(requests: u32, window: Duration, burst: u32) -> Self {
        Self {
            per_second: f64::from(requests) / window.as_secs_f64().max(1e-3),
            burst,
            budgets: Mutex::new(HashMap::new()),
        }
    }

    /// [`CredentialBudget::defer`] for the credential `id`; `None` for a
    /// credential that has made no call yet.
    pub fn defer(&self, id: CredentialId, max_wait: Duration) -> Option<Duration> {
        let budget = self
            .budgets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)?
            .clone();
        budget.defer(max_wait)
    }

    /// The budget shared by every caller using `credentials`.
    pub fn for_credentials(&self, credentials: &Credentials) -> Arc<CredentialBudget> {
        let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        budgets
            .entry(credentials.id())
            .or_insert_with(|| Arc::new(CredentialBudget::new(self.per_second, self.burst)))
            .clone()
    }

    /// Steady rate per credential, requests per second.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }
}

impl Default for BudgetRegistry {
    /// Half of Cloudflare's 1200 requests per 5 minutes, in bursts of 10.
    fn default() -> Self {
        Self::new(600, Duration::from_secs(300), 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_then_requests_follow_the_steady_rate() {
        let budget = CredentialBudget::new(2.0, 3);
        for _ in 0..3 {
            assert_eq!(budget.acquire().await, Duration::ZERO);
        }
        let start = Instant::now();
        for _ in 0..4 {
            budget.acquire().await;
        }
        // Four more at 2/s after the burst: the last one at 2 s.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_429_nobody_calls_until_the_wait_is_over() {
        let budget = Arc::new(CredentialBudget::new(100.0, 10));
        budget.acquire().await;
        budget.block_for(Duration::from_secs(30));
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let b = budget.clone();
                tokio::spawn(async move { b.acquire().await })
            })
            .collect();
        for waiter in waiters {
            let waited = waiter.await.expect("task");
            assert!(waited >= Duration::from_secs(30), "{waited:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_that_arrives_while_waiting_is_honoured() {
        let budget = Arc::new(CredentialBudget::new(1.0, 1));
        budget.acquire().await;
        let waiter = {
            let b = budget.clone();
            tokio::spawn(async move { b.acquire().await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        budget.block_for(Duration::from_secs(10));
        let waited = waiter.await.expect("task");
        assert!(waited >= Duration::from_millis(10_100), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn work_is_deferred_only_beyond_the_longest_wait_and_spaced_at_the_rate() {
        let budget = CredentialBudget::new(2.0, 2);
        let max_wait = Duration::from_millis(600);
        assert_eq!(
            budget.defer(max_wait),
            None,
            "an idle budget defers nothing"
        );
        // Burst of two, then 0.5 s, 1.0 s, 1.5 s: the next free slot is 2.0 s away.
        for _ in 0..2 {
            budget.acquire().await;
        }
        let reserved: Vec<_> = (0..3).map(|_| budget.reserve(Instant::now())).collect();
        assert_eq!(
            reserved.last().map(|at| *at - Instant::now()),
            Some(Duration::from_millis(1500))
        );
        // Three callers put off: after the reserved slots, half a second apart.
        let deferred: Vec<_> = (0..3).map(|_| budget.defer(max_wait)).collect();
        assert_eq!(
            deferred,
            [2000, 2500, 3000].map(|ms| Some(Duration::from_millis(ms)))
        );
        // Deferring reserved nothing: the next real request still goes at 2.0 s.
        assert_eq!(
            budget.reserve(Instant::now()) - Instant::now(),
            Duration::from_secs(2)
        );
        // Once the reserved slots have passed, nothing is deferred.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(budget.defer(max_wait), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_block_defers_work_until_it_ends() {
        let budget = CredentialBudget::new(100.0, 10);
        budget.block_for(Duration::from_secs(30));
        assert_eq!(
            budget.defer(Duration::from_secs(1)),
            Some(Duration::from_secs(30))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn credentials_without_a_budget_yet_are_never_deferred() {
        let registry = BudgetRegistry::new(1, Duration::from_secs(1), 1);
        let token = Credentials::api_token("busy");
        assert_eq!(registry.defer(token.id(), Duration::ZERO), None);
        registry
            .for_credentials(&token)
            .block_for(Duration::from_secs(60));
        assert_eq!(
            registry.defer(token.id(), Duration::ZERO),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn demand_beyond_the_budget_is_overcommitted() {
        let ten_minutes = Duration::from_secs(600);
        let demand = Demand::of(std::iter::repeat_n(ten_minutes, 1500), 2.0);
        assert_eq!(demand.policies, 1500);
        assert!((demand.checks_per_second - 2.5).abs() < 1e-9);
        assert!(demand.overcommitted());
        assert_eq!(demand.effective_interval(), Duration::from_secs(750));
        assert!(!Demand::of(std::iter::repeat_n(ten_minutes, 1000), 2.0).overcommitted());
    }

    #[test]
    fn callers_with_the_same_credential_share_one_budget() {
        let registry = BudgetRegistry::default();
        let a = registry.for_credentials(&Credentials::api_token("one"));
        let b = registry.for_credentials(&Credentials::api_token("one"));
        let c = registry.for_credentials(&Credentials::api_token("two"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert!((registry.per_second() - 2.0).abs() < 1e-9);
    }
}
