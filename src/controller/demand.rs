//! The steady demand on each credential: the drift checks per second of every
//! cached policy whose Secret was last seen holding it. One walk over the
//! policy cache adds up every credential at once, and its table is reused: a
//! walk per pass would cost O(N) per pass and O(N²) to converge N policies
//! (it was half the operator's CPU at 10,000 policies).
//!
//! A table is recomputed when it is [`DEMAND_TTL`] old; sooner, but at most
//! once per [`DEMAND_REFRESH`], when a Secret was seen holding another
//! credential since, or when it lacks the credential asked for. While one
//! pass walks, the others read the table it replaces.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

use crate::cloudflare::{CredentialId, Demand};

/// How long a table is reused at most.
pub const DEMAND_TTL: Duration = Duration::from_secs(5);

/// The shortest time between two walks: how long a demand may miss a Secret
/// that was just seen holding another credential.
pub const DEMAND_REFRESH: Duration = Duration::from_secs(1);

/// Demand per credential from the last walk.
#[derive(Debug, Default)]
pub struct CredentialDemands(Mutex<Table>);

#[derive(Debug, Default)]
struct Table {
    /// When the last walk started, and the demands it found.
    computed: Option<(Instant, HashMap<CredentialId, Demand>)>,
    /// Changes of who uses which credential seen so far ...
    changes: u64,
    /// ... and how many of them the last walk knew of.
    changes_walked: u64,
    /// A walk is under way.
    walking: bool,
}

impl Table {
    /// The demand on `id` from this table, or `None` when it is time to walk.
    fn lookup(&self, id: CredentialId, capacity_per_second: f64, now: Instant) -> Option<Demand> {
        let (at, demands) = self.computed.as_ref()?;
        let found = demands.get(&id).copied();
        let age = now.saturating_duration_since(*at);
        let behind = self.changes != self.changes_walked || found.is_none();
        let outdated = age >= DEMAND_TTL || (behind && age >= DEMAND_REFRESH);
        if outdated && !self.walking {
            return None;
        }
        Some(found.unwrap_or_else(|| Demand::none(capacity_per_second)))
    }
}

impl CredentialDemands {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Each call leaves the table whole: consistent even after a panic elsewhere.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A Secret was seen holding another credential: the demands are behind.
    pub fn changed(&self) {
        self.lock().changes += 1;
    }

    /// Drops the table: the next lookup walks the cache again (a walk under
    /// way now counts as behind, so it is not kept for long either).
    pub fn forget(&self) {
        let mut table = self.lock();
        table.computed = None;
        table.changes += 1;
    }

    /// The demand on `id`, from the table, or from a new `walk` over every
    /// cached policy that adds each one's interval to its credential's demand.
    pub fn get(
        &self,
        id: CredentialId,
        capacity_per_second: f64,
        walk: impl FnOnce(&mut dyn FnMut(CredentialId, Duration)),
    ) -> Demand {
        let (started, changes) = {
            let mut table = self.lock();
            let now = Instant::now();
            if let Some(demand) = table.lookup(id, capacity_per_second, now) {
                return demand;
            }
            table.walking = true;
            (now, table.changes)
        };
        // Without the lock: other passes read the old table meanwhile.
        let mut demands: HashMap<CredentialId, Demand> = HashMap::new();
        walk(&mut |credential, interval| {
            demands
                .entry(credential)
                .or_insert_with(|| Demand::none(capacity_per_second))
                .count(interval);
        });
        let demand = demands
            .get(&id)
            .copied()
            .unwrap_or_else(|| Demand::none(capacity_per_second));
        let mut table = self.lock();
        table.computed = Some((started, demands));
        table.changes_walked = changes;
        table.walking = false;
        demand
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::cloudflare::Credentials;

    const CAPACITY: f64 = 2.0;

    /// A walk over `policies` (credential, interval in seconds) that counts its calls.
    fn walker<'a>(
        policies: &'a [(CredentialId, u64)],
        walks: &'a Cell<u32>,
    ) -> impl FnOnce(&mut dyn FnMut(CredentialId, Duration)) + 'a {
        move |count| {
            walks.set(walks.get() + 1);
            for (id, seconds) in policies {
                count(*id, Duration::from_secs(*seconds));
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_walk_serves_every_credential_until_it_is_old() {
        let (a, b) = (
            Credentials::api_token("a").id(),
            Credentials::api_token("b").id(),
        );
        let policies = [(a, 10), (a, 10), (b, 20)];
        let demands = CredentialDemands::default();
        let walks = Cell::new(0);
        let of_a = demands.get(a, CAPACITY, walker(&policies, &walks));
        assert_eq!((of_a.policies, of_a.checks_per_second), (2, 0.2));
        let of_b = demands.get(b, CAPACITY, walker(&policies, &walks));
        assert_eq!((of_b.policies, of_b.checks_per_second), (1, 0.05));
        assert_eq!(walks.get(), 1, "b came from a's walk");
        tokio::time::advance(DEMAND_TTL).await;
        demands.get(b, CAPACITY, walker(&policies, &walks));
        assert_eq!(walks.get(), 2, "an old table is walked again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_is_counted_at_the_next_refresh_not_at_every_pass() {
        let (a, b) = (
            Credentials::api_token("a").id(),
            Credentials::api_token("b").id(),
        );
        let demands = CredentialDemands::default();
        let walks = Cell::new(0);
        demands.get(a, CAPACITY, walker(&[(a, 10)], &walks));
        // Another policy's Secret turns out to hold `a` too.
        demands.changed();
        let now_two = [(a, 10), (a, 10)];
        let seen = demands.get(a, CAPACITY, walker(&now_two, &walks));
        assert_eq!(
            (seen.policies, walks.get()),
            (1, 1),
            "within the refresh time"
        );
        tokio::time::advance(DEMAND_REFRESH).await;
        let seen = demands.get(a, CAPACITY, walker(&now_two, &walks));
        assert_eq!((seen.policies, walks.get()), (2, 2), "after it");
        // Caught up: no walk until the table is old.
        tokio::time::advance(DEMAND_REFRESH).await;
        demands.get(a, CAPACITY, walker(&now_two, &walks));
        assert_eq!(walks.get(), 2);
        // A credential the table lacks is looked for once the refresh time is up.
        let found = demands.get(b, CAPACITY, walker(&[(a, 10), (b, 10)], &walks));
        assert_eq!((found.policies, walks.get()), (1, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_table_walked_while_the_cache_filled_is_walked_again_once_it_is_whole() {
        let a = Credentials::api_token("a").id();
        let demands = CredentialDemands::default();
        let walks = Cell::new(0);
        let partial = demands.get(a, CAPACITY, walker(&[(a, 10)], &walks));
        assert_eq!(partial.policies, 1);
        demands.forget();
        let whole = demands.get(a, CAPACITY, walker(&[(a, 10), (a, 10)], &walks));
        assert_eq!(
            (whole.policies, walks.get()),
            (2, 2),
            "walked again at once, not after the refresh time"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn while_one_pass_walks_the_others_read_the_last_table() {
        let a = Credentials::api_token("a").id();
        let demands = CredentialDemands::default();
        let walks = Cell::new(0);
        demands.get(a, CAPACITY, walker(&[(a, 10)], &walks));
        tokio::time::advance(DEMAND_TTL).await;
        let inner = demands.get(a, CAPACITY, |count| {
            // A second pass arrives during the walk.
            let during = demands.get(a, CAPACITY, walker(&[], &walks));
            assert_eq!(during.policies, 1, "the last table");
            count(a, Duration::from_secs(10));
            count(a, Duration::from_secs(10));
        });
        assert_eq!((inner.policies, walks.get()), (2, 1));
        assert_eq!(demands.get(a, CAPACITY, walker(&[], &walks)).policies, 2);
    }
}
