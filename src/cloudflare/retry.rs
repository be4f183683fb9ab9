//! Bounded exponential backoff with jitter for idempotent calls: the settings,
//! turned into a `backon` backoff.

use std::time::Duration;

use backon::ExponentialBuilder;

/// How often and how patiently an idempotent call (GET, PUT) is retried after a
/// 5xx or transport error. Rotation (POST) is never retried blindly: the
/// reconciler checks the account instead (exactly-once protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Upper bound of the first delay.
    pub base_delay: Duration,
    /// Upper bound of any delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Like Cloudflare's own Go SDK: three retries, backoff from 1 s up to 30 s.
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the delay before retry number `retry` (1-based): base × 2^(retry-1), capped.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The delays between attempts: `max_retries` of them, each random in
    /// [ceiling/2, ceiling] ("equal jitter": spread out, never zero).
    ///
    /// backon's jitter adds up to 100 % to a delay, so its delays start at
    /// half our base and stop at half our cap.
    pub fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.base_delay / 2)
            .with_max_delay(self.max_delay / 2)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(usize::try_from(self.max_retries).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_and_stop_at_the_cap() {
        let policy = RetryPolicy::default();
        let ceilings: Vec<u64> = (1..=7).map(|r| policy.ceiling(r).as_secs()).collect();
        assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn delays_stay_between_half_and_the_ceiling() {
        use backon::BackoffBuilder as _;
        let policy = RetryPolicy {
            max_retries: 6,
            ..RetryPolicy::default()
        };
        for _ in 0..200 {
            let delays: Vec<Duration> = policy.backoff().build().collect();
            assert_eq!(delays.len(), 6, "one delay per retry");
            for (retry, d) in (1..).zip(delays) {
                let ceiling = policy.ceiling(retry);
                assert!(d >= ceiling / 2 && d <= ceiling, "retry {retry}: {d:?}");
            }
        }
    }

    #[test]
    fn no_retries_means_no_delays() {
        use backon::BackoffBuilder as _;
        let policy = RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff().build().count(), 0);
    }
}
