//! What a failed Cloudflare call means for the policy (pure): the Ready
//! reason, the event, the hint for the user, and when to look again. The
//! client's errors say what happened; this says what it means here.

use std::time::Duration;

use crate::{cloudflare::CloudflareError, controller::EventReason, crd::ReadyReason};

/// The Ready reason a failed call leaves.
pub fn ready_reason(err: &CloudflareError) -> ReadyReason {
    match err {
        CloudflareError::Authentication { .. } => ReadyReason::InvalidCredentials,
        CloudflareError::AccountNotFound { .. } => ReadyReason::AccountNotFound,
        // A put-off call never reaches the status (see `put_off`); were it
        // to, it is the budget's doing, as a 429 is Cloudflare's.
        CloudflareError::RateLimited { .. } | CloudflareError::PutOff { .. } => {
            ReadyReason::RateLimited
        }
        CloudflareError::Rejected { .. }
        | CloudflareError::Server { .. }
        | CloudflareError::Transport { .. }
        | CloudflareError::Malformed { .. } => ReadyReason::ApiError,
    }
}

/// The event a failed call publishes (when its message is new).
pub fn event(err: &CloudflareError) -> EventReason {
    match ready_reason(err) {
        ReadyReason::InvalidCredentials => EventReason::CredentialsError,
        _ => EventReason::ApiError,
    }
}

/// The Ready message: what was being done, the error, and what to check.
pub fn message(err: &CloudflareError, doing: &str) -> String {
    let hint = match ready_reason(err) {
        ReadyReason::InvalidCredentials => {
            "; check the token and its permission \"Access: Organizations, Identity Providers, and Groups Write\""
        }
        ReadyReason::AccountNotFound => {
            "; check spec.accountId and that Access is enabled on the account"
        }
        _ => "",
    };
    format!("{doing}: {err}{hint}")
}

/// When to look again: at `Retry-After` after a 429; at the operator's floor
/// after an error that may pass (5xx, transport, malformed answer); at the
/// policy's own check interval after a refusal that will not pass by itself.
pub fn retry_after(err: &CloudflareError, floor: Duration, check_interval: Duration) -> Duration {
    match err {
        CloudflareError::RateLimited { retry_after } => *retry_after,
        CloudflareError::PutOff { wait } => *wait,
        CloudflareError::Server { .. }
        | CloudflareError::Transport { .. }
        | CloudflareError::Malformed { .. } => floor,
        CloudflareError::Authentication { .. }
        | CloudflareError::AccountNotFound { .. }
        | CloudflareError::Rejected { .. } => check_interval,
    }
}

/// A call the budget put off (not sent): how long until its slot. The pass
/// ends there, leaves the status as it was and comes back then; nothing is
/// reported, as nothing went wrong.
pub fn put_off(err: &CloudflareError) -> Option<Duration> {
    match err {
        CloudflareError::PutOff { wait } => Some(*wait),
        _ => None,
    }
}

/// Whether a failed rotate POST certainly did not rotate (refused outright),
/// so the request is done as `Failed`; otherwise its outcome is unknown and
/// it stays pending for the account to tell.
pub fn post_refused(err: &CloudflareError) -> bool {
    matches!(
        err,
        CloudflareError::Authentication { .. }
            | CloudflareError::AccountNotFound { .. }
            | CloudflareError::Rejected { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudflare::TransportKind;

    fn errors() -> Vec<CloudflareError> {
        vec![
            CloudflareError::Authentication {
                status: 403,
                code: Some(9109),
                message: "Invalid access token".into(),
            },
            CloudflareError::AccountNotFound {
                status: 404,
                code: Some(7003),
                message: "Could not route".into(),
            },
            CloudflareError::RateLimited {
                retry_after: Duration::from_secs(42),
            },
            CloudflareError::Rejected {
                status: 400,
                code: Some(12001),
                message: "bad".into(),
                pointer: None,
            },
            CloudflareError::Server {
                status: 502,
                code: None,
                message: "bad gateway".into(),
                attempts: 4,
            },
            CloudflareError::Transport {
                kind: TransportKind::Timeout,
                detail: "timed out".into(),
                attempts: 4,
            },
            CloudflareError::Malformed {
                status: 200,
                detail: "no result".into(),
            },
            CloudflareError::PutOff {
                wait: Duration::from_secs(7),
            },
        ]
    }

    /// reason, event, requeue (floor 1 s, interval 10 s), refused POST, hint
    #[test]
    fn each_failure_class_has_its_reason_event_requeue_and_hint() {
        let floor = Duration::from_secs(1);
        let interval = Duration::from_secs(10);
        let seen: Vec<(&str, &str, u64, bool, bool)> = errors()
            .iter()
            .map(|e| {
                (
                    ready_reason(e).as_str(),
                    event(e).as_str(),
                    retry_after(e, floor, interval).as_secs(),
                    post_refused(e),
                    message(e, "reading the account").contains("; check"),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("InvalidCredentials", "CredentialsError", 10, true, true),
                ("AccountNotFound", "ApiError", 10, true, true),
                ("RateLimited", "ApiError", 42, false, false),
                ("ApiError", "ApiError", 10, true, false),
                ("ApiError", "ApiError", 1, false, false),
                ("ApiError", "ApiError", 1, false, false),
                ("ApiError", "ApiError", 1, false, false),
                ("RateLimited", "ApiError", 7, false, false),
            ]
        );
    }

    #[test]
    fn only_a_call_the_budget_put_off_is_put_off() {
        let put_off: Vec<_> = errors().iter().map(put_off).collect();
        let mut expected = vec![None; put_off.len() - 1];
        expected.push(Some(Duration::from_secs(7)));
        assert_eq!(put_off, expected);
    }

    #[test]
    fn the_message_says_what_was_being_done() {
        let err = &errors()[0];
        let text = message(err, "rotating the key");
        assert!(text.starts_with("rotating the key: "), "{text}");
        assert!(text.contains("9109"), "{text}");
    }
}
