//! A rotate request: a fresh annotation value and the merge patch that carries it.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::crd::{ANNOTATION_ROTATE_FORCE, ANNOTATION_ROTATE_REQUESTED_AT};

/// Hands out request values: RFC 3339 UTC timestamps with nanoseconds, each
/// strictly later than the one before, so two requests never share a value
/// even when the system clock is coarse or steps back.
#[derive(Debug, Default)]
pub struct RequestClock {
    last: Option<Timestamp>,
}

impl RequestClock {
    /// The next value, read from the system clock.
    pub fn next_value(&mut self) -> String {
        self.next_value_at(Timestamp::now())
    }

    /// The next value given the current time (for tests).
    pub fn next_value_at(&mut self, now: Timestamp) -> String {
        let value = match self.last {
            Some(last) if now <= last => last
                .checked_add(SignedDuration::from_nanos(1))
                .unwrap_or(last),
            _ => now,
        };
        self.last = Some(value);
        format!("{value:.9}")
    }
}

/// The merge patch for one request. With `force` the force annotation gets
/// the request's own value (the operator forces a request only when the two
/// are equal, so the token cannot force a later request); without it the
/// force annotation is removed (`null`), which keeps the object tidy.
pub fn rotate_patch(value: &str, force: bool) -> Value {
    let force_value = if force { json!(value) } else { Value::Null };
    json!({
        "metadata": {
            "annotations": {
                ANNOTATION_ROTATE_REQUESTED_AT: value,
                ANNOTATION_ROTATE_FORCE: force_value,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn values_are_utc_with_nanoseconds() {
        let mut clock = RequestClock::default();
        assert_eq!(
            clock.next_value_at(at("2026-11-26T10:00:00Z")),
            "2026-11-26T10:00:00.000000000Z"
        );
        let value = clock.next_value();
        let parsed: Timestamp = value.parse().expect("RFC 3339");
        assert!(value.ends_with('Z'), "{value}");
        assert_eq!(value.split('.').nth(1).map(str::len), Some(10), "{value}");
        assert!(parsed > at("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn two_requests_in_the_same_instant_still_differ() {
        let mut clock = RequestClock::default();
        let now = at("2026-11-26T10:00:00.5Z");
        let first = clock.next_value_at(now);
        let second = clock.next_value_at(now);
        let third = clock.next_value_at(at("2026-11-26T09:00:00Z"));
        assert_eq!(first, "2026-11-26T10:00:00.500000000Z");
        assert_eq!(second, "2026-11-26T10:00:00.500000001Z");
        assert_eq!(third, "2026-11-26T10:00:00.500000002Z");
        let fresh: Vec<String> = (0..1000).map(|_| clock.next_value()).collect();
        let mut unique = fresh.clone();
        unique.dedup();
        assert_eq!(unique.len(), fresh.len());
    }

    #[test]
    fn a_forced_request_sets_force_to_its_own_value_and_a_plain_one_clears_it() {
        assert_eq!(
            rotate_patch("v1", true),
            json!({"metadata": {"annotations": {
                "keyrotor.dev/rotate-requested-at": "v1",
                "keyrotor.dev/rotate-force": "v1",
            }}})
        );
        assert_eq!(
            rotate_patch("v2", false),
            json!({"metadata": {"annotations": {
                "keyrotor.dev/rotate-requested-at": "v2",
                "keyrotor.dev/rotate-force": null,
            }}})
        );
    }
}
