//! The per-credential request budget: a token bucket (as GCRA) shared by every
//! caller using one credential, plus the block after a 429; and the
//! operator-wide ceiling, one more bucket that every request also takes a slot
//! from.
//!
//! Not `governor` (0.10), whose GCRA would replace only the few lines of
//! arithmetic in `allowed_at` and `reserve` (issue 14):
//! - it cannot reserve a future slot: `until_ready` loops on `check` and
//!   sleeps, so waiters race each other instead of being served in arrival
//!   order, and each wake-up costs another check; `acquire` reserves first;
//! - `defer` must read when a request made now could go without taking a
//!   cell, and governor's only question, `check`, takes one when it succeeds;
//! - a request takes a cell of two buckets (its credential's and the
//!   ceiling) or of neither, which governor's separate limiters cannot do;
//! - its waits run on `futures-timer` and its own clocks, not tokio's timer,
//!   so tokio's paused clock (the tests below use it) would not drive them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

use super::credentials::{CredentialId, Credentials};

/// Longest a request may wait for its budget while the caller holds a
/// worker. Beyond it (the budget is reserved further ahead, or a 429 blocks
/// the credential) the request is not sent and the caller is told when to
/// come back ([`PutOff`]), so one busy or blocked credential cannot occupy
/// the workers that other credentials' policies need.
pub const BUDGET_HOLD: Duration = Duration::from_millis(250);

/// A request that was not sent: its budget has no free slot within the hold
/// threshold, or a 429 blocks its credential. Nothing was reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOff {
    /// How long from now until the budget has a slot.
    pub wait: Duration,
}

/// The request budget of one credential (or the operator-wide ceiling).
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
    /// When a request last took a slot or a 429 blocked the credential.
    last_used: Instant,
}

impl CredentialBudget {
    /// A budget of `per_second` requests per second with bursts of `burst`.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let emission_interval = Duration::from_secs_f64(1.0 / per_second.max(1e-6));
        let now = Instant::now();
        Self {
            emission_interval,
            burst_tolerance: emission_interval.saturating_mul(burst.max(1) - 1),
            state: Mutex::new(BucketState {
                next_arrival: now,
                blocked_until: None,
                deferred_until: now,
                last_used: now,
            }),
        }
    }

    /// Takes a slot for one request, in this budget and in `ceiling` (if
    /// any), when both have one within `hold`; waits for it (at most `hold`)
    /// and returns how long it waited. Otherwise reserves nothing, sleeps not
    /// at all, and says when to come back. Reserving before sleeping serves
    /// waiters in arrival order without spinning.
    pub async fn acquire(
        &self,
        ceiling: Option<&CredentialBudget>,
        hold: Duration,
    ) -> Result<Duration, PutOff> {
        let started = Instant::now();
        let allowed_at = self
            .reserve(ceiling, started, hold)
            .map_err(|at| PutOff { wait: at - started })?;
        tokio::time::sleep_until(allowed_at).await;
        // A 429 may have arrived while we waited: honour it, without waiting it out.
        let now = Instant::now();
        if let Some(until) = self.blocked_until().filter(|u| *u > now) {
            return Err(PutOff { wait: until - now });
        }
        Ok(started.elapsed())
    }

    /// Blocks every caller of this credential for `wait` from now (after a 429).
    pub fn block_for(&self, wait: Duration) {
        let now = Instant::now();
        let until = now + wait;
        let mut state = self.lock();
        state.blocked_until = Some(state.blocked_until.map_or(until, |b| b.max(until)));
        state.last_used = now;
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

    /// Reserves the slot of a request arriving at `now` in this budget and in
    /// `ceiling` when it is at most `hold` away in both; otherwise reserves
    /// nothing and returns when the slot would be.
    fn reserve(
        &self,
        ceiling: Option<&CredentialBudget>,
        now: Instant,
        hold: Duration,
    ) -> Result<Instant, Instant> {
        // Lock order: a credential's budget, then the ceiling (never the other way).
        let mut state = self.lock();
        let mut shared = ceiling.map(CredentialBudget::lock);
        let own = self.allowed_at(&state, now);
        let allowed_at = match (ceiling, shared.as_deref()) {
            (Some(ceiling), Some(shared)) => own.max(ceiling.allowed_at(shared, now)),
            _ => own,
        };
        if allowed_at > now + hold {
            return Err(allowed_at);
        }
        state.next_arrival = state.next_arrival.max(allowed_at) + self.emission_interval;
        state.last_used = now;
        if let (Some(ceiling), Some(shared)) = (ceiling, shared.as_deref_mut()) {
            shared.next_arrival = shared.next_arrival.max(allowed_at) + ceiling.emission_interval;
            shared.last_used = now;
        }
        Ok(allowed_at)
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

    /// Unused for `idle` and neither blocked nor reserved ahead: forgetting it
    /// loses nothing (a new budget would start from the same full bucket).
    fn is_idle(&self, now: Instant, idle: Duration) -> bool {
        let state = self.lock();
        now.saturating_duration_since(state.last_used) >= idle
            && state.blocked_until.is_none_or(|until| until <= now)
            && state.next_arrival <= now
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BucketState> {
        // The state stays consistent even if a holder panicked: every write is one assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// All credentials' budgets; callers with the same credential get the same
/// one. A credential unused for a whole window (and not blocked) is
/// forgotten, so Secrets flipping through tokens do not grow memory.
#[derive(Debug)]
pub struct BudgetRegistry {
    per_second: f64,
    burst: u32,
    window: Duration,
    /// What all credentials together may send; `None` for no ceiling.
    ceiling: Option<CredentialBudget>,
    budgets: Mutex<Budgets>,
}

#[derive(Debug)]
struct Budgets {
    by_credential: HashMap<CredentialId, Arc<CredentialBudget>>,
    /// When idle budgets were last looked for.
    swept: Instant,
}

/// Idle budgets are looked for at most this often (each look walks them all).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

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
        let mut demand = Self::none(capacity_per_second);
        for interval in intervals {
            demand.count(interval);
        }
        demand
    }

    /// No policy uses the credential.
    pub fn none(capacity_per_second: f64) -> Self {
        Self {
            policies: 0,
            checks_per_second: 0.0,
            capacity_per_second,
        }
    }

    /// Adds one more policy checked every `interval`.
    pub fn count(&mut self, interval: Duration) {
        self.policies += 1;
        self.checks_per_second += 1.0 / interval.as_secs_f64().max(1e-3);
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

/// The default operator-wide ceiling per budget window: 200 requests per
/// second over 5 minutes, Cloudflare's limit per client IP. The benchmark's
/// 10,000 policies over 100 credentials need at most 100 × 2 = 200 per second.
pub const DEFAULT_TOTAL_REQUESTS: u32 = 60_000;

impl BudgetRegistry {
    /// Every credential gets `requests` per `window`, in bursts of at most
    /// `burst`; no ceiling (see [`Self::with_ceiling`]).
    pub fn new(requests: u32, window: Duration, burst: u32) -> Self {
        let window = window.max(Duration::from_millis(1));
        Self {
            per_second: f64::from(requests) / window.as_secs_f64(),
            burst,
            window,
            ceiling: None,
            budgets: Mutex::new(Budgets {
                by_credential: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// All credentials together get at most `total` requests per window, in
    /// bursts of a sixtieth of that (5 s of a 5-minute window), and at least
    /// one credential's burst.
    pub fn with_ceiling(mut self, total: u32) -> Self {
        let per_second = f64::from(total) / self.window.as_secs_f64();
        self.ceiling = Some(CredentialBudget::new(
            per_second,
            (total / 60).max(self.burst).max(1),
        ));
        self
    }

    /// [`CredentialBudget::defer`] for the credential `id`, and for the
    /// ceiling; `None` for a credential that has made no call yet (unless the
    /// ceiling itself is reserved ahead).
    pub fn defer(&self, id: CredentialId, max_wait: Duration) -> Option<Duration> {
        let budget = self.lock().by_credential.get(&id).cloned();
        let own = budget.and_then(|b| b.defer(max_wait));
        let shared = self.ceiling.as_ref().and_then(|c| c.defer(max_wait));
        own.max(shared)
    }

    /// The budget shared by every caller using `credentials`.
    pub fn for_credentials(&self, credentials: &Credentials) -> Arc<CredentialBudget> {
        let mut budgets = self.lock();
        let now = Instant::now();
        if now.saturating_duration_since(budgets.swept) >= SWEEP_EVERY {
            budgets.swept = now;
            let window = self.window;
            // A budget someone still holds (a call in flight) stays.
            budgets
                .by_credential
                .retain(|_, budget| Arc::strong_count(budget) > 1 || !budget.is_idle(now, window));
        }
        budgets
            .by_credential
            .entry(credentials.id())
            .or_insert_with(|| Arc::new(CredentialBudget::new(self.per_second, self.burst)))
            .clone()
    }

    /// Takes a slot for one request with `budget`'s credential (and from the
    /// ceiling), waiting at most [`BUDGET_HOLD`] for a pass's first call; see
    /// [`CredentialBudget::acquire`]. A `follow_up` call (a PUT or POST after
    /// the pass's GET) may also wait for the next two steady slots: were it
    /// put off whenever the budget's steady interval exceeds the hold, a
    /// pass needing two calls would spend its GET and be put off again at
    /// every try, and never get to its PUT.
    pub async fn acquire(
        &self,
        budget: &CredentialBudget,
        follow_up: bool,
    ) -> Result<Duration, PutOff> {
        let hold = if follow_up {
            BUDGET_HOLD + budget.emission_interval.saturating_mul(2)
        } else {
            BUDGET_HOLD
        };
        budget.acquire(self.ceiling.as_ref(), hold).await
    }

    /// Credentials with a budget (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().by_credential.len()
    }

    /// Whether no credential has a budget.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Steady rate per credential, requests per second.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Budgets> {
        // One lookup, insert or retain per call: consistent even after a panic elsewhere.
        self.budgets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for BudgetRegistry {
    /// Half of Cloudflare's 1200 requests per 5 minutes, in bursts of 10,
    /// under the default ceiling.
    fn default() -> Self {
        Self::new(600, Duration::from_secs(300), 10).with_ceiling(DEFAULT_TOTAL_REQUESTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Longer than any wait below: the caller always waits.
    const FOREVER: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_then_requests_follow_the_steady_rate() {
        let budget = CredentialBudget::new(2.0, 3);
        for _ in 0..3 {
            assert_eq!(budget.acquire(None, FOREVER).await, Ok(Duration::ZERO));
        }
        let start = Instant::now();
        for _ in 0..4 {
            budget.acquire(None, FOREVER).await.expect("slot");
        }
        // Four more at 2/s after the burst: the last one at 2 s.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_429_every_caller_is_put_off_until_the_block_ends_without_waiting() {
        let budget = CredentialBudget::new(100.0, 10);
        budget.acquire(None, BUDGET_HOLD).await.expect("slot");
        budget.block_for(Duration::from_secs(30));
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(
                budget.acquire(None, BUDGET_HOLD).await,
                Err(PutOff {
                    wait: Duration::from_secs(30)
                })
            );
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "nobody slept");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(budget.acquire(None, BUDGET_HOLD).await, Ok(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_that_arrives_while_waiting_puts_the_waiter_off() {
        let budget = Arc::new(CredentialBudget::new(4.0, 1));
        budget.acquire(None, BUDGET_HOLD).await.expect("slot");
        let waiter = {
            let b = budget.clone();
            tokio::spawn(async move { b.acquire(None, BUDGET_HOLD).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        budget.block_for(Duration::from_secs(10));
        let put_off = waiter.await.expect("task").expect_err("put off");
        // Woken at its slot (250 ms), told to come back at the block's end.
        assert_eq!(put_off.wait, Duration::from_millis(9_850));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_further_than_the_hold_is_not_waited_for_nor_reserved() {
        let budget = CredentialBudget::new(2.0, 1);
        let hold = Duration::from_millis(600);
        assert_eq!(budget.acquire(None, hold).await, Ok(Duration::ZERO));
        // The next slot is 0.5 s away: within the hold, waited for.
        assert_eq!(
            budget.acquire(None, hold).await,
            Ok(Duration::from_millis(500))
        );
        // Reserve two more ahead (1.0 s and 1.5 s from the start): the next free one is 1.5 s away.
        let now = Instant::now();
        for _ in 0..2 {
            budget.reserve(None, now, FOREVER).expect("reserved");
        }
        assert_eq!(
            budget.acquire(None, hold).await,
            Err(PutOff {
                wait: Duration::from_millis(1500)
            })
        );
        // Putting off reserved nothing: it is still 1.5 s away.
        assert_eq!(
            budget.reserve(None, Instant::now(), FOREVER),
            Ok(Instant::now() + Duration::from_millis(1500))
        );
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
            budget.acquire(None, FOREVER).await.expect("slot");
        }
        let reserved: Vec<_> = (0..3)
            .map(|_| budget.reserve(None, Instant::now(), FOREVER))
            .collect();
        assert_eq!(
            reserved.last().map(|at| at.map(|at| at - Instant::now())),
            Some(Ok(Duration::from_millis(1500)))
        );
        // Three callers put off: after the reserved slots, half a second apart.
        let deferred: Vec<_> = (0..3).map(|_| budget.defer(max_wait)).collect();
        assert_eq!(
            deferred,
            [2000, 2500, 3000].map(|ms| Some(Duration::from_millis(ms)))
        );
        // Deferring reserved nothing: the next real request still goes at 2.0 s.
        assert_eq!(
            budget.reserve(None, Instant::now(), FOREVER),
            Ok(Instant::now() + Duration::from_secs(2))
        );
        // Once the reserved slots have passed, nothing is deferred.
        tokio::time::advance(Duration::from_secs(3)).await;
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

    #[tokio::test(start_paused = true)]
    async fn the_ceiling_caps_all_credentials_together() {
        // 100 per credential per second, 10 per second for all, bursts of 10.
        let registry = BudgetRegistry::new(100, Duration::from_secs(1), 10).with_ceiling(10);
        let tokens: Vec<_> = (0..4)
            .map(|n| registry.for_credentials(&Credentials::api_token(format!("t{n}"))))
            .collect();
        // The ceiling's burst of 10, shared: ten requests over four tokens go at once.
        for n in 0..10 {
            assert_eq!(
                registry.acquire(&tokens[n % 4], false).await,
                Ok(Duration::ZERO)
            );
        }
        // The eleventh waits for the ceiling (0.1 s, within the hold) whatever its token.
        assert_eq!(
            registry.acquire(&tokens[3], false).await,
            Ok(Duration::from_millis(100))
        );
        // Reserve the ceiling ahead (slots at 0.2 to 0.6 s): a token that
        // never called is put off too, until 0.7 s.
        let now = Instant::now();
        for _ in 0..5 {
            tokens[0]
                .reserve(registry.ceiling.as_ref(), now, FOREVER)
                .expect("reserved");
        }
        let fresh = registry.for_credentials(&Credentials::api_token("fresh"));
        let put_off = registry.acquire(&fresh, false).await.expect_err("put off");
        assert_eq!(put_off.wait, Duration::from_millis(600));
        assert_eq!(
            registry.defer(Credentials::api_token("fresh").id(), BUDGET_HOLD),
            Some(Duration::from_millis(600)),
            "the pre-pass deferral sees the ceiling too"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_flipping_secret_gets_no_more_than_the_ceiling() {
        // Each new token brings a fresh burst of 10; the ceiling (60 per
        // minute, bursts of 10) still bounds what they send together.
        let registry = BudgetRegistry::new(600, Duration::from_secs(60), 10).with_ceiling(60);
        let start = Instant::now();
        let mut sent = 0;
        for n in 0..1000 {
            let budget = registry.for_credentials(&Credentials::api_token(format!("flip-{n}")));
            match registry.acquire(&budget, false).await {
                Ok(_) => sent += 1,
                Err(put_off) => tokio::time::advance(put_off.wait).await,
            }
            if start.elapsed() >= Duration::from_secs(60) {
                break;
            }
        }
        // One burst of 10, then one per second.
        assert!((60..=71).contains(&sent), "{sent} requests in a minute");
    }

    #[tokio::test(start_paused = true)]
    async fn budgets_unused_for_a_window_are_forgotten_unless_blocked_or_in_use() {
        let window = Duration::from_secs(60);
        let registry = BudgetRegistry::new(60, window, 10);
        let idle = Credentials::api_token("idle");
        let blocked = Credentials::api_token("blocked");
        let held = Credentials::api_token("held");
        let budget = registry.for_credentials(&idle);
        registry.acquire(&budget, false).await.expect("slot");
        drop(budget);
        registry
            .for_credentials(&blocked)
            .block_for(Duration::from_secs(600));
        let in_flight = registry.for_credentials(&held);
        assert_eq!(registry.len(), 3);
        // Within the window nothing is forgotten.
        tokio::time::advance(Duration::from_secs(30)).await;
        registry.for_credentials(&Credentials::api_token("other"));
        assert_eq!(registry.len(), 4);
        // After it, the idle ones go; the blocked one and the one in use stay.
        tokio::time::advance(Duration::from_secs(31)).await;
        registry.for_credentials(&Credentials::api_token("newest"));
        let mut kept: Vec<_> = ["idle", "blocked", "held", "other", "newest"]
            .into_iter()
            .filter(|t| {
                registry
                    .lock()
                    .by_credential
                    .contains_key(&Credentials::api_token(*t).id())
            })
            .collect();
        kept.sort_unstable();
        // ("other" was created 31 s ago: not yet a window.)
        assert_eq!(kept, ["blocked", "held", "newest", "other"]);
        assert!(Arc::strong_count(&in_flight) > 1);
        // The blocked one keeps its block: forgetting it would have lifted it.
        assert!(registry.defer(blocked.id(), BUDGET_HOLD).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_follow_up_call_waits_for_the_next_steady_slot() {
        // One request per 2 s: a pass's PUT after its GET is 2 s away, far
        // beyond the hold, yet it waits for it instead of being put off.
        let registry = BudgetRegistry::new(1, Duration::from_secs(2), 1);
        let budget = registry.for_credentials(&Credentials::api_token("slow"));
        assert_eq!(registry.acquire(&budget, false).await, Ok(Duration::ZERO));
        assert_eq!(
            registry.acquire(&budget, true).await,
            Ok(Duration::from_secs(2))
        );
        // A first call that far out is put off.
        assert_eq!(
            registry.acquire(&budget, false).await,
            Err(PutOff {
                wait: Duration::from_secs(2)
            })
        );
        // A 429 puts off follow-ups too.
        budget.block_for(Duration::from_secs(60));
        assert!(registry.acquire(&budget, true).await.is_err());
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
