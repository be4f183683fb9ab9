//! Everything the simulator remembers, behind one lock: clock, accounts,
//! credentials, rate-limit budgets, faults and the request log.
//!
//! One lock keeps each API call atomic (authenticate, count, rotate, log)
//! without any ordering rules between several locks. It is never held across
//! an `.await`.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use crate::accounts::{Account, AccountPatch, AccountView};
use crate::auth::{AuthError, AuthHeaders, authenticate};
use crate::clock::{SimClock, to_micros};
use crate::config::{AccountSeed, CredentialSeed, RateLimitConfig, SimConfig};
use crate::faults::Faults;
use crate::log::RequestLog;
use crate::rate_limit::RateLimiter;
use crate::timestamps::TimestampStyle;

/// The simulator's mutable state.
#[derive(Debug, Clone)]
pub(crate) struct World {
    clock: SimClock,
    pub(crate) accounts: BTreeMap<String, Account>,
    credentials: Vec<CredentialSeed>,
    pub(crate) rate_limiter: RateLimiter,
    rate_limit: RateLimitConfig,
    pub(crate) faults: Faults,
    pub(crate) log: RequestLog,
    /// The form of times in answers, and how many answers carried one.
    pub(crate) timestamps: TimestampStyle,
    answers: u64,
}

impl World {
    /// The state a configuration describes, on an unshifted clock.
    pub(crate) fn new(config: &SimConfig) -> Self {
        let clock = SimClock::default();
        let now = to_micros(clock.now());
        let accounts = config
            .accounts
            .iter()
            .map(|seed| (seed.id.clone(), Account::from_seed(seed, now)))
            .collect();
        Self {
            clock,
            accounts,
            credentials: config.credentials.clone(),
            rate_limiter: RateLimiter::new(config.rate_limit),
            rate_limit: config.rate_limit,
            faults: Faults::default(),
            log: RequestLog::default(),
            timestamps: config.timestamps,
            answers: 0,
        }
    }

    /// Writes a time the way the next answer shows it (styles may alternate).
    pub(crate) fn render_time(&mut self, at: Timestamp) -> String {
        let text = self.timestamps.render(at, self.answers);
        self.answers = self.answers.wrapping_add(1);
        text
    }

    /// The simulated present, at the microsecond precision Cloudflare shows.
    pub(crate) fn now(&self) -> Timestamp {
        to_micros(self.clock.now())
    }

    /// Moves the simulated clock forward.
    pub(crate) fn advance_clock(&mut self, by: Duration) {
        self.clock.advance(by);
    }

    /// Who a request's headers identify.
    pub(crate) fn authenticate(&self, headers: &AuthHeaders) -> Result<CredentialSeed, AuthError> {
        authenticate(headers, &self.credentials).cloned()
    }

    /// An account brought up to date with its automatic rotations.
    pub(crate) fn account_mut(&mut self, id: &str) -> Option<&mut Account> {
        let now = self.now();
        let account = self.accounts.get_mut(id)?;
        account.catch_up(now);
        Some(account)
    }

    /// The control view of an account, after automatic rotations.
    pub(crate) fn account_view(&mut self, id: &str) -> Option<AccountView> {
        let now = self.now();
        self.account_mut(id).map(|account| account.view(id, now))
    }

    /// Creates an account from a seed, or reseeds an existing one.
    pub(crate) fn upsert_account(&mut self, seed: &AccountSeed) {
        let now = self.now();
        match self.account_mut(&seed.id) {
            Some(account) => account.reseed(seed),
            None => {
                self.accounts
                    .insert(seed.id.clone(), Account::from_seed(seed, now));
            }
        }
    }

    /// Changes an account's fields, creating it with defaults if missing.
    pub(crate) fn patch_account(&mut self, id: &str, patch: AccountPatch) -> Option<AccountView> {
        match self.account_mut(id) {
            Some(account) => account.patch(&patch),
            None => self.upsert_account(&patch.into_seed(id)),
        }
        self.account_view(id)
    }

    /// Changes an account's interval; false if there is no such account.
    pub(crate) fn set_interval(&mut self, id: &str, days: i64) -> bool {
        match self.account_mut(id) {
            Some(account) => {
                account.set_interval(days);
                true
            }
            None => false,
        }
    }

    /// Adds a credential or replaces the one with the same id.
    pub(crate) fn upsert_credential(&mut self, seed: CredentialSeed) {
        self.credentials.retain(|known| known.id != seed.id);
        self.credentials.push(seed);
    }

    /// Removes a credential; false if there was none with that id.
    pub(crate) fn remove_credential(&mut self, id: &str) -> bool {
        let before = self.credentials.len();
        self.credentials.retain(|known| known.id != id);
        self.credentials.len() != before
    }

    /// The current rate limit.
    pub(crate) fn rate_limit(&self) -> RateLimitConfig {
        self.rate_limit
    }

    /// Changes the rate limit; every credential starts a fresh window.
    pub(crate) fn set_rate_limit(&mut self, config: RateLimitConfig) {
        self.rate_limit = config;
        self.rate_limiter = RateLimiter::new(config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> World {
        World::new(&SimConfig {
            accounts: vec![AccountSeed::new("a").with_interval(21)],
            credentials: vec![CredentialSeed::token("ci", "t")],
            ..SimConfig::default()
        })
    }

    #[test]
    fn clock_advance_triggers_automatic_rotation() {
        let mut world = world();
        let before = world.account_view("a");
        world.advance_clock(Duration::from_secs(22 * 86_400));
        let after = world.account_view("a");
        assert_eq!(before.as_ref().map(|view| view.rotations), Some(0));
        assert_eq!(after.as_ref().map(|view| view.rotations), Some(1));
        assert_eq!(after.map(|view| view.days_until_next_rotation), Some(19));
    }

    #[test]
    fn patching_a_missing_account_creates_it_with_defaults() {
        let mut world = world();
        let view = world.patch_account(
            "new",
            AccountPatch {
                access_keys_enabled: Some(false),
                ..AccountPatch::default()
            },
        );
        assert_eq!(
            view.as_ref().map(|view| view.key_rotation_interval_days),
            Some(42)
        );
        assert_eq!(view.map(|view| view.access_keys_enabled), Some(false));
    }

    #[test]
    fn upserting_keeps_rotation_count() {
        let mut world = world();
        world.advance_clock(Duration::from_secs(22 * 86_400));
        world.upsert_account(&AccountSeed::new("a").with_interval(90));
        let view = world.account_view("a");
        assert_eq!(view.as_ref().map(|view| view.rotations), Some(1));
        assert_eq!(view.map(|view| view.key_rotation_interval_days), Some(90));
    }

    #[test]
    fn set_interval_reports_unknown_accounts() {
        let mut world = world();
        assert!(world.set_interval("a", 30));
        assert!(!world.set_interval("nope", 30));
    }

    #[test]
    fn credentials_are_replaced_by_id() {
        let mut world = world();
        world.upsert_credential(CredentialSeed::token("ci", "new"));
        let old = AuthHeaders::from_headers(&bearer("t"));
        let new = AuthHeaders::from_headers(&bearer("new"));
        assert_eq!(world.authenticate(&old), Err(AuthError::InvalidToken));
        assert_eq!(
            world.authenticate(&new).map(|seed| seed.id),
            Ok("ci".to_owned())
        );
        assert!(world.remove_credential("ci"));
        assert!(!world.remove_credential("ci"));
    }

    fn bearer(token: &str) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        if let Ok(value) = format!("Bearer {token}").parse() {
            headers.insert("authorization", value);
        }
        headers
    }
}
