//! The witness of the exactly-once protocol, made independent of the
//! precision in which the account reports time (pure).
//!
//! Cloudflare promises RFC 3339 for `last_key_rotation_at` and nothing about
//! its precision or offset style: one instant may read `…:25.27713Z`,
//! `…:25Z` or `…:25+00:00`, and a coarser form is the finer one cut short.
//! Two rules keep "the account's last rotation moved past the baseline" true
//! exactly when a rotation happened, at any precision down to one second
//! (the argument is written out in docs/reliability.md, "Exactly-once at any
//! precision"):
//!
//! 1. Rotation times are compared by their whole second only
//!    ([`rotated_since`]), so two forms of one instant never differ.
//! 2. A rotation is begun only once the account's own clock reads at least
//!    [`SAFE_GAP`] past the whole second of the last rotation
//!    ([`hold_before_rotating`]). The POST is served after the GET whose
//!    `Date` header showed that clock, so the new rotation's whole second is
//!    later than the old one's, and rule 1 can tell them apart.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// How far past the last rotation's whole second the account's clock must be
/// before a new rotation may begin: one second for the two rotations to fall
/// in different seconds, one more for the account's servers to disagree
/// (the `Date` header and the rotation time may come from different machines).
pub const SAFE_GAP: SignedDuration = SignedDuration::from_secs(2);

/// Without a `Date` header the operator's clock stands in for the account's,
/// trusted to be within this much of it (NTP keeps nodes well inside).
pub const CLOCK_SKEW_ALLOWANCE: SignedDuration = SignedDuration::from_secs(60);

/// What a pass knows of the account's present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountClock {
    /// The `Date` header of the account read this pass (whole seconds).
    pub served_at: Option<Timestamp>,
    /// The operator's own clock when the pass started.
    pub operator_now: Timestamp,
}

impl AccountClock {
    /// The account's present as best known: its `Date` header, else our clock.
    pub fn now(&self) -> Timestamp {
        self.served_at.unwrap_or(self.operator_now)
    }
}

/// The whole second `at` falls in (floor, also before 1970).
pub fn whole_second(at: Timestamp) -> i64 {
    let nanos = at.as_nanosecond();
    i64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or(i64::MIN)
}

/// `at` cut to its whole second: the one form the status stores, so a finer
/// or coarser report of the same rotation is never a change.
pub fn canonical(at: Timestamp) -> Timestamp {
    Timestamp::from_second(whole_second(at)).unwrap_or(at)
}

/// Whether the account's last rotation (`now_at`) is a rotation after
/// `baseline`, compared at one-second precision. A rotation where there was
/// none counts; no rotation reported never does.
pub fn rotated_since(baseline: Option<Timestamp>, now_at: Option<Timestamp>) -> bool {
    match (now_at, baseline) {
        (Some(now_at), Some(before)) => whole_second(now_at) > whole_second(before),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// How long to wait before a rotation may begin, or `None` when it may begin
/// now: a rotation begun sooner could carry a time indistinguishable from
/// `last` at one-second precision.
pub fn hold_before_rotating(last: Option<Timestamp>, clock: AccountClock) -> Option<Duration> {
    let last = last?;
    let (now, gap) = match clock.served_at {
        Some(served_at) => (served_at, SAFE_GAP),
        None => (
            clock.operator_now,
            SAFE_GAP.saturating_add(CLOCK_SKEW_ALLOWANCE),
        ),
    };
    let earliest = Timestamp::from_second(whole_second(last))
        .ok()?
        .checked_add(gap)
        .unwrap_or(Timestamp::MAX);
    (now < earliest)
        .then(|| Duration::try_from(earliest.duration_since(now)).unwrap_or(Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("valid timestamp")
    }

    fn clock(served_at: Option<&str>, operator_now: &str) -> AccountClock {
        AccountClock {
            served_at: served_at.map(ts),
            operator_now: ts(operator_now),
        }
    }

    #[test]
    fn every_form_of_one_second_is_the_same_second() {
        let forms = [
            "2026-12-02T06:12:25.27713Z",
            "2026-12-02T06:12:25Z",
            "2026-12-02T06:12:25+00:00",
            "2026-12-02T06:12:25.999999999Z",
            "2026-12-02T07:12:25.5+01:00",
        ];
        for form in forms {
            assert_eq!(canonical(ts(form)), ts("2026-12-02T06:12:25Z"), "{form}");
            assert!(!rotated_since(Some(ts(forms[0])), Some(ts(form))), "{form}");
            assert!(!rotated_since(Some(ts(form)), Some(ts(forms[1]))), "{form}");
        }
        assert_eq!(
            whole_second(ts("1969-12-31T23:59:59.5Z")),
            -1,
            "floor, not toward zero"
        );
    }

    #[test]
    fn a_later_second_is_a_rotation_and_a_missing_one_is_not() {
        let before = Some(ts("2026-12-02T06:12:25.9Z"));
        assert!(rotated_since(before, Some(ts("2026-12-02T06:12:26Z"))));
        assert!(!rotated_since(before, Some(ts("2026-12-02T06:12:25.1Z"))));
        assert!(rotated_since(None, Some(ts("2026-12-02T06:12:26Z"))));
        assert!(!rotated_since(before, None));
        assert!(!rotated_since(None, None));
    }

    #[test]
    fn rotation_waits_for_the_accounts_clock_to_leave_the_last_seconds_behind() {
        let last = Some(ts("2026-12-02T06:12:25.27713Z"));
        // Same second, by the account's Date header: wait until :27.
        assert_eq!(
            hold_before_rotating(
                last,
                clock(Some("2026-12-02T06:12:25Z"), "2026-12-02T06:12:25Z")
            ),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            hold_before_rotating(
                last,
                clock(Some("2026-12-02T06:12:26Z"), "2026-12-02T06:12:26Z")
            ),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            hold_before_rotating(
                last,
                clock(Some("2026-12-02T06:12:27Z"), "2026-12-02T06:12:27Z")
            ),
            None
        );
        // The operator's clock does not count while the account's Date is known.
        assert_eq!(
            hold_before_rotating(
                last,
                clock(Some("2026-12-02T06:12:25Z"), "2026-12-02T09:00:00Z")
            ),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            hold_before_rotating(
                last,
                clock(Some("2026-12-02T06:13:00Z"), "2026-12-02T06:00:00Z")
            ),
            None
        );
        // Never rotated: nothing to tell apart.
        assert_eq!(
            hold_before_rotating(None, clock(None, "2026-12-02T06:12:25Z")),
            None
        );
    }

    #[test]
    fn without_a_date_header_our_clock_counts_with_the_skew_allowance() {
        let last = Some(ts("2026-12-02T06:12:25.5Z"));
        assert_eq!(
            hold_before_rotating(last, clock(None, "2026-12-02T06:12:26Z")),
            Some(Duration::from_secs(61))
        );
        assert_eq!(
            hold_before_rotating(last, clock(None, "2026-12-02T06:13:27Z")),
            None
        );
    }
}
