//! How often to ask Cloudflare again with credentials it refused (pure).
//!
//! Repeated authentication failures from one address can get it blocked, and
//! a wrong token does not become right by asking. So after a refusal a policy
//! asks again at most once per drift check, and while its Secret stays the
//! same the wait doubles with every further refusal, up to the longer of its
//! own check interval and [`REFUSAL_BACKOFF_CAP`]. A changed Secret is asked
//! about at once.

use std::time::{Duration, Instant};

/// The longest wait between two attempts with refused credentials, unless the
/// policy's own check interval is longer: the default `driftCheckInterval`.
pub const REFUSAL_BACKOFF_CAP: Duration = Duration::from_secs(600);

/// The last refusal of a policy's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The Secret's `resourceVersion` when Cloudflare refused it.
    pub secret_version: String,
    /// Refusals in a row of that version.
    pub consecutive: u32,
    /// No attempt with that version before this.
    pub retry_at: Instant,
    /// The Ready message the refusal left, repeated while waiting.
    pub message: String,
}

/// The wait after the `consecutive`-th refusal in a row: the check interval,
/// doubled for each refusal after the first, capped.
pub fn refusal_delay(consecutive: u32, check_interval: Duration) -> Duration {
    let cap = check_interval.max(REFUSAL_BACKOFF_CAP);
    let doublings = consecutive.saturating_sub(1).min(16);
    check_interval.saturating_mul(1 << doublings).min(cap)
}

/// How long this pass must wait before asking Cloudflare again, if the Secret
/// is still the one refused last and its wait is not over.
pub fn wait_after_refusal(
    last: Option<&Refusal>,
    secret_version: &str,
    now: Instant,
) -> Option<Duration> {
    let last = last.filter(|r| r.secret_version == secret_version)?;
    (now < last.retry_at).then(|| last.retry_at - now)
}

/// The record after Cloudflare refused `secret_version` at `now`.
pub fn after_refusal(
    last: Option<&Refusal>,
    secret_version: &str,
    now: Instant,
    check_interval: Duration,
    message: &str,
) -> Refusal {
    let consecutive = last
        .filter(|r| r.secret_version == secret_version)
        .map_or(1, |r| r.consecutive.saturating_add(1));
    Refusal {
        secret_version: secret_version.to_owned(),
        consecutive,
        retry_at: now + refusal_delay(consecutive, check_interval),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn the_wait_doubles_from_the_check_interval_up_to_the_cap() {
        let waits: Vec<u64> = (1..=7)
            .map(|n| refusal_delay(n, MINUTE).as_secs() / 60)
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10, 10]);
        // A long own interval is never shortened, and never grows past itself.
        let hour = Duration::from_secs(3600);
        assert_eq!(refusal_delay(1, hour), hour);
        assert_eq!(refusal_delay(9, hour), hour);
        assert_eq!(refusal_delay(u32::MAX, MINUTE), REFUSAL_BACKOFF_CAP);
    }

    #[test]
    fn an_unchanged_secret_waits_and_a_changed_one_is_asked_at_once() {
        let start = Instant::now();
        let first = after_refusal(None, "v1", start, MINUTE, "refused");
        assert_eq!(first.consecutive, 1);
        assert_eq!(
            wait_after_refusal(Some(&first), "v1", start + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(wait_after_refusal(Some(&first), "v1", start + MINUTE), None);
        assert_eq!(wait_after_refusal(Some(&first), "v2", start), None);
        assert_eq!(wait_after_refusal(None, "v1", start), None);

        let second = after_refusal(Some(&first), "v1", start + MINUTE, MINUTE, "refused");
        assert_eq!(second.consecutive, 2);
        assert_eq!(second.retry_at, start + 3 * MINUTE);
        // A new Secret version starts over.
        let other = after_refusal(Some(&second), "v2", start + MINUTE, MINUTE, "refused");
        assert_eq!(other.consecutive, 1);
        assert_eq!(other.retry_at, start + 2 * MINUTE);
    }
}
