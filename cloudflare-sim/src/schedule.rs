//! Rotation schedule arithmetic: when the next automatic rotation is due and
//! how many have been missed since the last look.
//!
//! Pure functions of (last rotation, interval, now); the state module calls
//! them on every access, which is what makes automatic rotation lazy.

use jiff::Timestamp;

const NANOS_PER_DAY: i128 = 86_400 * 1_000_000_000;

/// Length of an interval in nanoseconds; `None` for intervals that never elapse.
fn period_nanos(interval_days: i64) -> Option<i128> {
    (interval_days > 0).then(|| i128::from(interval_days) * NANOS_PER_DAY)
}

/// Result of bringing an account's rotation up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CatchUp {
    /// Time of the most recent rotation, automatic ones included.
    pub(crate) last_rotation: Timestamp,
    /// Automatic rotations that fell due since the previous `last_rotation`.
    pub(crate) rotations: u64,
}

/// Applies every automatic rotation due by `now`: the last rotation moves to
/// the most recent due time (not to `now`), as a scheduler that never misses
/// would have left it.
pub(crate) fn catch_up(last_rotation: Timestamp, interval_days: i64, now: Timestamp) -> CatchUp {
    let unchanged = CatchUp {
        last_rotation,
        rotations: 0,
    };
    let Some(period) = period_nanos(interval_days) else {
        return unchanged;
    };
    let elapsed = now.duration_since(last_rotation).as_nanos();
    if elapsed < period {
        return unchanged;
    }
    let due = elapsed / period;
    let moved = Timestamp::from_nanosecond(last_rotation.as_nanosecond() + due * period);
    match (moved, u64::try_from(due)) {
        (Ok(last_rotation), Ok(rotations)) => CatchUp {
            last_rotation,
            rotations,
        },
        _ => unchanged,
    }
}

/// Whole days until the next rotation, rounded down and never negative.
pub(crate) fn days_until_next_rotation(
    last_rotation: Timestamp,
    interval_days: i64,
    now: Timestamp,
) -> i64 {
    let Some(period) = period_nanos(interval_days) else {
        return 0;
    };
    let remaining = period - now.duration_since(last_rotation).as_nanos();
    if remaining <= 0 {
        return 0;
    }
    i64::try_from(remaining / NANOS_PER_DAY).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn nothing_due_before_the_interval_elapses() {
        let last = at("2026-01-01T00:00:00Z");
        let result = catch_up(last, 30, at("2026-01-30T23:59:59Z"));
        assert_eq!(
            result,
            CatchUp {
                last_rotation: last,
                rotations: 0
            }
        );
    }

    #[test]
    fn one_rotation_lands_on_the_due_time() {
        let last = at("2026-01-01T00:00:00.25Z");
        let result = catch_up(last, 30, at("2026-02-05T12:00:00Z"));
        assert_eq!(result.last_rotation, at("2026-01-31T00:00:00.25Z"));
        assert_eq!(result.rotations, 1);
    }

    #[test]
    fn several_missed_rotations_are_counted() {
        let last = at("2026-01-01T00:00:00Z");
        let result = catch_up(last, 21, at("2026-03-20T00:00:00Z"));
        // Due on Jan 22, Feb 12, Mar 5; the next would be Mar 26.
        assert_eq!(result.rotations, 3);
        assert_eq!(result.last_rotation, at("2026-03-05T00:00:00Z"));
    }

    #[test]
    fn exactly_due_rotates() {
        let last = at("2026-01-01T00:00:00Z");
        let result = catch_up(last, 21, at("2026-01-22T00:00:00Z"));
        assert_eq!(result.rotations, 1);
    }

    #[test]
    fn non_positive_interval_never_rotates() {
        let last = at("2000-01-01T00:00:00Z");
        assert_eq!(catch_up(last, 0, at("2026-01-01T00:00:00Z")).rotations, 0);
        assert_eq!(
            days_until_next_rotation(last, -3, at("2026-01-01T00:00:00Z")),
            0
        );
    }

    #[test]
    fn days_until_rounds_down() {
        let last = at("2026-01-01T00:00:00Z");
        assert_eq!(days_until_next_rotation(last, 42, last), 42);
        assert_eq!(
            days_until_next_rotation(last, 42, at("2026-01-01T00:00:01Z")),
            41
        );
        assert_eq!(
            days_until_next_rotation(last, 42, at("2026-02-11T23:59:59Z")),
            0
        );
    }

    #[test]
    fn days_until_is_never_negative() {
        let last = at("2026-01-01T00:00:00Z");
        assert_eq!(
            days_until_next_rotation(last, 21, at("2027-01-01T00:00:00Z")),
            0
        );
    }

    #[test]
    fn future_last_rotation_counts_from_then() {
        let last = at("2026-03-01T00:00:00Z");
        assert_eq!(
            days_until_next_rotation(last, 21, at("2026-02-01T00:00:00Z")),
            49
        );
        assert_eq!(catch_up(last, 21, at("2026-02-01T00:00:00Z")).rotations, 0);
    }
}
