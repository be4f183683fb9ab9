//! Per-credential request budget, modelled on Cloudflare's "1200 requests per
//! five minutes; going over blocks every call for the next five minutes".
//!
//! Model (fixed window): a credential's window opens at its first request and
//! lasts `window`; up to `limit` requests pass in it. The request that would
//! be number `limit + 1` is refused with 429, and so is every request for the
//! next `window` from that moment. Refused requests do not count. When the
//! block ends a fresh window opens at the next request.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use jiff::{SignedDuration, Timestamp};

use crate::config::RateLimitConfig;
use crate::envelope::{ApiFailure, CODE_THROTTLED, ErrorItem};

/// Where one credential stands in its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    window_start: Timestamp,
    used: u32,
    blocked_until: Option<Timestamp>,
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Let through; `remaining` more fit before `reset_seconds` from now.
    Admitted { remaining: u32, reset_seconds: u64 },
    /// Refused; the block lifts in `retry_after_seconds`.
    Throttled { retry_after_seconds: u64 },
}

/// Counts one request against a budget (`None` for a credential not seen yet).
pub(crate) fn admit(
    budget: Option<Budget>,
    config: &RateLimitConfig,
    now: Timestamp,
) -> (Budget, Admission) {
    let window = SignedDuration::try_from(config.window).unwrap_or(SignedDuration::MAX);
    let fresh = Budget {
        window_start: now,
        used: 0,
        blocked_until: None,
    };
    if let Some(current) = budget
        && let Some(until) = current.blocked_until
        && now < until
    {
        let retry_after_seconds = ceil_seconds(until.duration_since(now)).max(1);
        return (
            current,
            Admission::Throttled {
                retry_after_seconds,
            },
        );
    }
    let mut budget = match budget {
        Some(current)
            if current.blocked_until.is_none()
                && now.duration_since(current.window_start) < window =>
        {
            current
        }
        // New credential, elapsed window, or lifted block: start over.
        _ => fresh,
    };
    if budget.used >= config.limit {
        let until = now.checked_add(window).unwrap_or(Timestamp::MAX);
        budget.blocked_until = Some(until);
        let retry_after_seconds = ceil_seconds(until.duration_since(now)).max(1);
        return (
            budget,
            Admission::Throttled {
                retry_after_seconds,
            },
        );
    }
    budget.used += 1;
    let window_end = budget
        .window_start
        .checked_add(window)
        .unwrap_or(Timestamp::MAX);
    let admission = Admission::Admitted {
        remaining: config.limit - budget.used,
        reset_seconds: ceil_seconds(window_end.duration_since(now)),
    };
    (budget, admission)
}

/// Whole seconds, rounded up, in a non-negative duration.
fn ceil_seconds(duration: SignedDuration) -> u64 {
    let nanos = duration.as_nanos();
    if nanos <= 0 {
        return 0;
    }
    u64::try_from((nanos + 999_999_999) / 1_000_000_000).unwrap_or(u64::MAX)
}

/// Every credential's budget under one configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct RateLimiter {
    config: RateLimitConfig,
    budgets: HashMap<String, Budget>,
}

impl RateLimiter {
    /// A limiter with no requests counted yet.
    pub(crate) fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            budgets: HashMap::new(),
        }
    }

    /// Counts a request by `credential_id`.
    pub(crate) fn check(&mut self, credential_id: &str, now: Timestamp) -> Admission {
        let previous = self.budgets.get(credential_id).copied();
        let (budget, admission) = admit(previous, &self.config, now);
        self.budgets.insert(credential_id.to_owned(), budget);
        admission
    }

    /// Response headers describing a verdict (`Ratelimit-Policy`,
    /// `Ratelimit`, and `Retry-After` only when refused, as Cloudflare does).
    pub(crate) fn headers(&self, admission: &Admission) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let policy = format!(
            "\"default\";q={};w={}",
            self.config.limit,
            self.config.window.as_secs()
        );
        let (remaining, reset) = match admission {
            Admission::Admitted {
                remaining,
                reset_seconds,
            } => (*remaining, *reset_seconds),
            Admission::Throttled {
                retry_after_seconds,
            } => {
                headers.insert("retry-after", HeaderValue::from(*retry_after_seconds));
                (0, *retry_after_seconds)
            }
        };
        let state = format!("\"default\";r={remaining};t={reset}");
        for (name, value) in [("ratelimit-policy", policy), ("ratelimit", state)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        headers
    }
}

/// 429 `971 Please wait and consider throttling your request speed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Please wait and consider throttling your request speed")]
pub(crate) struct Throttled;

impl ApiFailure for Throttled {
    fn status(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }

    fn item(&self) -> ErrorItem {
        ErrorItem::new(CODE_THROTTLED, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config(limit: u32, window_seconds: u64) -> RateLimitConfig {
        RateLimitConfig {
            limit,
            window: Duration::from_secs(window_seconds),
        }
    }

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn run(config: &RateLimitConfig, times: &[i64]) -> Vec<Admission> {
        let mut budget = None;
        times
            .iter()
            .map(|second| {
                let (next, admission) = admit(budget, config, t(*second));
                budget = Some(next);
                admission
            })
            .collect()
    }

    #[test]
    fn requests_within_the_limit_count_down() {
        let verdicts = run(&config(3, 60), &[0, 10, 20]);
        assert_eq!(
            verdicts,
            vec![
                Admission::Admitted {
                    remaining: 2,
                    reset_seconds: 60
                },
                Admission::Admitted {
                    remaining: 1,
                    reset_seconds: 50
                },
                Admission::Admitted {
                    remaining: 0,
                    reset_seconds: 40
                },
            ]
        );
    }

    #[test]
    fn going_over_blocks_for_a_full_window_from_then() {
        let verdicts = run(&config(3, 60), &[0, 1, 2, 30, 31, 89, 90]);
        assert_eq!(
            verdicts[3],
            Admission::Throttled {
                retry_after_seconds: 60
            }
        );
        assert_eq!(
            verdicts[4],
            Admission::Throttled {
                retry_after_seconds: 59
            }
        );
        // The window that opened at 0 has ended at 60, but the block lasts until 90.
        assert_eq!(
            verdicts[5],
            Admission::Throttled {
                retry_after_seconds: 1
            }
        );
        assert_eq!(
            verdicts[6],
            Admission::Admitted {
                remaining: 2,
                reset_seconds: 60
            }
        );
    }

    #[test]
    fn an_elapsed_window_refills_the_budget() {
        let verdicts = run(&config(2, 60), &[0, 1, 60]);
        assert_eq!(
            verdicts[2],
            Admission::Admitted {
                remaining: 1,
                reset_seconds: 60
            }
        );
    }

    #[test]
    fn zero_limit_refuses_everything() {
        let verdicts = run(&config(0, 60), &[0]);
        assert_eq!(
            verdicts[0],
            Admission::Throttled {
                retry_after_seconds: 60
            }
        );
    }

    #[test]
    fn partial_seconds_round_up() {
        assert_eq!(ceil_seconds(SignedDuration::from_millis(1)), 1);
        assert_eq!(ceil_seconds(SignedDuration::from_millis(1000)), 1);
        assert_eq!(ceil_seconds(SignedDuration::from_millis(1001)), 2);
        assert_eq!(ceil_seconds(SignedDuration::from_secs(-5)), 0);
    }

    #[test]
    fn budgets_are_per_credential() {
        let mut limiter = RateLimiter::new(config(1, 60));
        assert!(matches!(
            limiter.check("a", t(0)),
            Admission::Admitted { .. }
        ));
        assert!(matches!(
            limiter.check("a", t(1)),
            Admission::Throttled { .. }
        ));
        assert!(matches!(
            limiter.check("b", t(1)),
            Admission::Admitted { .. }
        ));
    }

    #[test]
    fn headers_describe_the_budget() {
        let limiter = RateLimiter::new(config(1200, 300));
        let headers = limiter.headers(&Admission::Admitted {
            remaining: 1199,
            reset_seconds: 300,
        });
        assert_eq!(headers["ratelimit-policy"], "\"default\";q=1200;w=300");
        assert_eq!(headers["ratelimit"], "\"default\";r=1199;t=300");
        assert!(headers.get("retry-after").is_none());
        let headers = limiter.headers(&Admission::Throttled {
            retry_after_seconds: 42,
        });
        assert_eq!(headers["retry-after"], "42");
        assert_eq!(headers["ratelimit"], "\"default\";r=0;t=42");
    }
}
