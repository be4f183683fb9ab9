//! Which policy owns an account (pure). A Manage-mode policy claims its
//! account only after its own credentials have read the account; the first
//! verified claim owns it. The claim is held in a record tenants cannot
//! write (a Lease in the operator's namespace, `crate::controller::claims`),
//! renewed by the owner's successful reads, and lost when the owner stops
//! renewing (its credentials keep failing, it is suspended) for the claim's
//! duration, or when the owner is gone (deleted, switched to Observe).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// The stored claim on one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRecord {
    /// The owner, `namespace/name`.
    pub holder: String,
    /// When the owner's credentials first read the account (the claim's order).
    pub acquired: Timestamp,
    /// When they last did.
    pub renewed: Timestamp,
    /// How long after `renewed` the claim lapses.
    pub duration: Duration,
}

impl ClaimRecord {
    /// The claim has lapsed at `now`: its owner stopped renewing.
    pub fn expired(&self, now: Timestamp) -> bool {
        now >= self.renewed + signed(self.duration)
    }
}

/// Whether the policy holding another's claim still wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Not asked: the claim is ours, absent or lapsed.
    NotAsked,
    /// It exists, is not being deleted, is in Manage mode and not suspended
    /// (or the operator may not read it, which counts as active).
    Active,
    /// Deleted, being deleted, in Observe mode or suspended.
    Gone,
}

/// What to do with the claim after this policy's credentials read the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimStep {
    /// No claim exists: create ours (atomically; a lost race reads again).
    Create,
    /// Ours, and old enough to renew (or its duration changed).
    Renew,
    /// Ours and fresh: no write.
    Keep,
    /// Another's claim lapsed or its holder is gone: take it over.
    TakeOver,
    /// Another policy owns the account.
    Lost {
        /// The owner, `namespace/name`.
        holder: String,
    },
}

/// A claim is renewed once a third of its duration has passed, so a claim
/// costs one write per third of its duration, not one per drift check.
const RENEW_FRACTION: u32 = 3;

/// The claim's duration for a policy checked every `check_interval`: three
/// checks, and never less than `floor`, so one late or failed check does not
/// lose it, and a policy whose credentials keep failing loses it within
/// `max(floor, 3 x interval)`.
pub fn claim_duration(check_interval: Duration, floor: Duration) -> Duration {
    floor.max(check_interval.saturating_mul(3))
}

/// Whether the holder of `record` must be looked up before deciding: only
/// when another policy holds a claim that has not lapsed.
pub fn must_ask_holder(me: &str, record: Option<&ClaimRecord>, now: Timestamp) -> bool {
    record.is_some_and(|r| r.holder != me && !r.expired(now))
}

/// The step for policy `me` (`namespace/name`), whose credentials have just
/// read the account, given the stored claim and, when [`must_ask_holder`]
/// said so, the holder's state.
pub fn claim_step(
    me: &str,
    record: Option<&ClaimRecord>,
    holder: Holder,
    now: Timestamp,
    duration: Duration,
) -> ClaimStep {
    let Some(record) = record else {
        return ClaimStep::Create;
    };
    if record.holder == me {
        let renew_after = record.duration / RENEW_FRACTION;
        return if record.duration != duration || now >= record.renewed + signed(renew_after) {
            ClaimStep::Renew
        } else {
            ClaimStep::Keep
        };
    }
    if record.expired(now) || holder == Holder::Gone {
        return ClaimStep::TakeOver;
    }
    ClaimStep::Lost {
        holder: record.holder.clone(),
    }
}

/// How a Conflict message names the owner `holder` (`namespace/name`) to a
/// policy in `namespace`: by name only in the same namespace, so nobody learns
/// who manages an account by guessing its id.
pub fn owner_as_seen_from(namespace: &str, holder: &str) -> String {
    match holder.split_once('/') {
        Some((ns, name)) if ns == namespace => format!("policy {name} in this namespace"),
        _ => "a policy in another namespace".to_owned(),
    }
}

fn signed(duration: Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn record(holder: &str, renewed: &str) -> ClaimRecord {
        ClaimRecord {
            holder: holder.into(),
            acquired: at("2026-01-01T00:00:00Z"),
            renewed: at(renewed),
            duration: HOUR,
        }
    }

    #[test]
    fn the_first_verified_policy_creates_the_claim() {
        let now = at("2026-01-01T10:00:00Z");
        assert!(!must_ask_holder("a/p", None, now));
        assert_eq!(
            claim_step("a/p", None, Holder::NotAsked, now, HOUR),
            ClaimStep::Create
        );
    }

    #[test]
    fn the_owner_renews_once_a_third_of_the_duration_has_passed() {
        let mine = record("a/p", "2026-01-01T10:00:00Z");
        let step = |now: &str, duration| {
            claim_step("a/p", Some(&mine), Holder::NotAsked, at(now), duration)
        };
        assert_eq!(step("2026-01-01T10:19:59Z", HOUR), ClaimStep::Keep);
        assert_eq!(step("2026-01-01T10:20:00Z", HOUR), ClaimStep::Renew);
        // A lapsed claim of our own is simply renewed: nobody took it.
        assert_eq!(step("2026-01-01T12:00:00Z", HOUR), ClaimStep::Renew);
        // A changed check interval changes the duration at once.
        assert_eq!(step("2026-01-01T10:01:00Z", 2 * HOUR), ClaimStep::Renew);
        assert!(!must_ask_holder(
            "a/p",
            Some(&mine),
            at("2026-01-01T10:01:00Z")
        ));
    }

    #[test]
    fn another_policy_loses_while_the_owner_renews_and_takes_over_when_it_stops() {
        let theirs = record("b/owner", "2026-01-01T10:00:00Z");
        let fresh = at("2026-01-01T10:59:59Z");
        assert!(must_ask_holder("a/p", Some(&theirs), fresh));
        assert_eq!(
            claim_step("a/p", Some(&theirs), Holder::Active, fresh, HOUR),
            ClaimStep::Lost {
                holder: "b/owner".into()
            }
        );
        let lapsed = at("2026-01-01T11:00:00Z");
        assert!(!must_ask_holder("a/p", Some(&theirs), lapsed));
        assert_eq!(
            claim_step("a/p", Some(&theirs), Holder::NotAsked, lapsed, HOUR),
            ClaimStep::TakeOver
        );
    }

    #[test]
    fn a_gone_holder_frees_the_claim_at_once() {
        let theirs = record("b/owner", "2026-01-01T10:00:00Z");
        let now = at("2026-01-01T10:05:00Z");
        assert_eq!(
            claim_step("a/p", Some(&theirs), Holder::Gone, now, HOUR),
            ClaimStep::TakeOver
        );
    }

    #[test]
    fn the_duration_is_three_checks_and_never_below_the_floor() {
        assert_eq!(claim_duration(Duration::from_secs(60), HOUR), HOUR);
        assert_eq!(
            claim_duration(Duration::from_secs(86_400), HOUR),
            Duration::from_secs(3 * 86_400)
        );
    }

    #[test]
    fn the_owner_is_named_only_inside_its_own_namespace() {
        assert_eq!(
            owner_as_seen_from("team-a", "team-a/prod"),
            "policy prod in this namespace"
        );
        assert_eq!(
            owner_as_seen_from("team-a", "team-b/prod"),
            "a policy in another namespace"
        );
        assert_eq!(
            owner_as_seen_from("team-a", "garbled"),
            "a policy in another namespace"
        );
    }
}
