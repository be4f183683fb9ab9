//! [`Simulator`]: the cheap, cloneable handle that tests, the HTTP handlers
//! and the binary share.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use crate::accounts::{AccountPatch, AccountView};
use crate::config::{AccountSeed, CredentialSeed, RateLimitConfig, SimConfig};
use crate::faults::Faults;
use crate::log::RequestRecord;
use crate::state::World;
use crate::timestamps::TimestampStyle;

/// A simulated Cloudflare API. Clones share the same state.
#[derive(Debug, Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    initial: SimConfig,
    world: Mutex<World>,
    // Each bump wakes every hanging request; see `release_hangs`.
    hang_release: watch::Sender<u64>,
}

impl Simulator {
    /// A simulator seeded from `config`; accounts without a last rotation
    /// were rotated "now".
    pub fn new(config: SimConfig) -> Self {
        let world = World::new(&config);
        Self {
            shared: Arc::new(Shared {
                initial: config,
                world: Mutex::new(world),
                hang_release: watch::Sender::new(0),
            }),
        }
    }

    /// Runs `f` on the state under the lock. A panic elsewhere while holding
    /// the lock leaves plain data behind, so a poisoned lock is still used.
    pub(crate) fn with_world<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let mut world = self
            .shared
            .world
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut world)
    }

    /// Every `/client/v4` request so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.with_world(|world| world.log.records())
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.with_world(|world| world.log.clear());
    }

    /// The faults in force, with counters as far as they have run down.
    pub fn faults(&self) -> Faults {
        self.with_world(|world| world.faults.clone())
    }

    /// Replaces the faults in force.
    pub fn set_faults(&self, faults: Faults) {
        self.with_world(|world| world.faults = faults);
    }

    /// Moves the simulated clock forward; automatic rotations and rate-limit
    /// windows follow it.
    pub fn advance_clock(&self, by: Duration) {
        self.with_world(|world| world.advance_clock(by));
    }

    /// The simulated present.
    pub fn now(&self) -> Timestamp {
        self.with_world(|world| world.now())
    }

    /// An account, after any automatic rotations that fell due.
    pub fn account(&self, id: &str) -> Option<AccountView> {
        self.with_world(|world| world.account_view(id))
    }

    /// Creates an account, or replaces an existing one's interval, enabled
    /// flag and (if given) last rotation; the rotation count is kept.
    pub fn upsert_account(&self, seed: AccountSeed) {
        self.with_world(|world| world.upsert_account(&seed));
    }

    /// Changes fields of an account, creating it if missing (control API).
    pub(crate) fn patch_account(&self, id: &str, patch: AccountPatch) -> Option<AccountView> {
        self.with_world(|world| world.patch_account(id, patch))
    }

    /// Changes an account's interval without the API's 21..=365 check (to
    /// make drift); false if there is no such account.
    pub fn set_interval(&self, id: &str, days: i64) -> bool {
        self.with_world(|world| world.set_interval(id, days))
    }

    /// Adds a credential, or replaces the one with the same id.
    pub fn upsert_credential(&self, seed: CredentialSeed) {
        self.with_world(|world| world.upsert_credential(seed));
    }

    /// Removes a credential; false if there was none with that id.
    pub fn remove_credential(&self, id: &str) -> bool {
        self.with_world(|world| world.remove_credential(id))
    }

    /// The rate limit in force.
    pub fn rate_limit(&self) -> RateLimitConfig {
        self.with_world(|world| world.rate_limit())
    }

    /// Changes the rate limit; every credential starts a fresh window.
    pub fn set_rate_limit(&self, config: RateLimitConfig) {
        self.with_world(|world| world.set_rate_limit(config));
    }

    /// The form of times in the API's answers.
    pub fn timestamp_style(&self) -> TimestampStyle {
        self.with_world(|world| world.timestamps)
    }

    /// Changes the form of times in the API's answers from the next answer on.
    pub fn set_timestamp_style(&self, style: TimestampStyle) {
        self.with_world(|world| world.timestamps = style);
    }

    /// Returns to the configured accounts and credentials, and clears the
    /// log, faults, rate-limit budgets and clock offset. Hanging requests
    /// are let go.
    pub fn reset(&self) {
        let fresh = World::new(&self.shared.initial);
        self.with_world(|world| *world = fresh);
        self.release_hangs();
    }

    /// Wakes every request held by a hang fault.
    pub(crate) fn release_hangs(&self) {
        self.shared
            .hang_release
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// A receiver that changes when hanging requests should be let go.
    pub(crate) fn hang_release(&self) -> watch::Receiver<u64> {
        self.shared.hang_release.subscribe()
    }
}
