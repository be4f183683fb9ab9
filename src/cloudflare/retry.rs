//! Bounded exponential backoff with full jitter for idempotent calls.

use std::time::Duration;

use rand::Rng;

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

    /// A random delay in [ceiling/2, ceiling] ("equal jitter"): spread out, never zero.
    pub fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(retry);
        let half = ceiling / 2;
        half + ceiling.saturating_sub(half).mul_f64(rng.random::<f64>())
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
        let policy = RetryPolicy::default();
        let mut rng = rand::rng();
        for retry in 1..=6 {
            for _ in 0..200 {
                let d = policy.delay(retry, &mut rng);
                assert!(
                    d >= policy.ceiling(retry) / 2 && d <= policy.ceiling(retry),
                    "{d:?}"
                );
            }
        }
    }
}
