//! Deletion with `deletionPolicy: Restore` (pure): whether to put the
//! original interval back, and what the answer means for the finalizer.

use crate::{
    cloudflare::{AccountKeyConfig, CloudflareError},
    controller::EventReason,
    crd::{AccessKeyPolicySpec, AccessKeyPolicyStatus, ManagementPolicy},
};

/// The interval to put back, if any: only a Manage-mode policy that is not
/// suspended and captured the account's original interval restores it.
pub fn interval_to_restore(
    spec: &AccessKeyPolicySpec,
    status: Option<&AccessKeyPolicyStatus>,
) -> Option<i64> {
    if spec.suspend || spec.management_policy != ManagementPolicy::Manage {
        return None;
    }
    status.and_then(|s| s.original_key_rotation_interval_days)
}

/// What to do with the finalizer after trying to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Keep it and try again (the failure may pass).
    Retry,
    /// Drop it, publishing this event.
    Now(EventReason, String),
}

/// The finalizer's fate from the restore's outcome. A failure that may pass
/// (5xx, transport, 429, a call put off on its budget) keeps the finalizer; any other releases the object
/// with a Warning, so a namespace deletion can never hang forever.
pub fn after_restore(
    days: i64,
    account_id: &str,
    result: Result<AccountKeyConfig, CloudflareError>,
) -> Release {
    match result {
        Ok(_) => Release::Now(
            EventReason::Restored,
            format!(
                "put the original rotation interval of {days} days back on account {account_id}"
            ),
        ),
        Err(err)
            if err.is_retryable()
                || matches!(
                    err,
                    CloudflareError::RateLimited { .. } | CloudflareError::PutOff { .. }
                ) =>
        {
            Release::Retry
        }
        Err(err) => Release::Now(
            EventReason::ApiError,
            format!("could not restore the original interval ({err}); releasing the object anyway"),
        ),
    }
}

/// The event when the Secret needed to restore is missing or invalid.
pub fn without_credentials() -> Release {
    Release::Now(
        EventReason::CredentialsError,
        "could not restore the original interval: the Secret is missing or invalid; releasing the object anyway".to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{cloudflare::TransportKind, decide::fixtures::spec};

    #[test]
    fn only_an_active_manage_policy_with_a_captured_interval_restores() {
        let captured = AccessKeyPolicyStatus {
            original_key_rotation_interval_days: Some(42),
            ..Default::default()
        };
        assert_eq!(
            interval_to_restore(&spec(serde_json::json!({})), Some(&captured)),
            Some(42)
        );
        assert_eq!(
            interval_to_restore(&spec(serde_json::json!({})), None),
            None
        );
        assert_eq!(
            interval_to_restore(&spec(serde_json::json!({"suspend": true})), Some(&captured)),
            None
        );
        assert_eq!(
            interval_to_restore(
                &spec(serde_json::json!({"managementPolicy": "Observe"})),
                Some(&captured)
            ),
            None
        );
    }

    #[test]
    fn passing_failures_keep_the_finalizer_and_others_release_with_a_warning() {
        let ok = after_restore(42, "acc", Ok(AccountKeyConfig::default()));
        assert!(matches!(ok, Release::Now(EventReason::Restored, ref m) if m.contains("42 days")));
        let transient = CloudflareError::Transport {
            kind: TransportKind::Timeout,
            detail: "t".into(),
            attempts: 4,
        };
        assert_eq!(after_restore(42, "acc", Err(transient)), Release::Retry);
        let limited = CloudflareError::RateLimited {
            retry_after: Duration::from_secs(5),
        };
        assert_eq!(after_restore(42, "acc", Err(limited)), Release::Retry);
        let put_off = CloudflareError::PutOff {
            wait: Duration::from_secs(300),
        };
        assert_eq!(after_restore(42, "acc", Err(put_off)), Release::Retry);
        let refused = CloudflareError::Authentication {
            status: 403,
            code: Some(9109),
            message: "Invalid access token".into(),
        };
        assert!(matches!(
            after_restore(42, "acc", Err(refused)),
            Release::Now(EventReason::ApiError, _)
        ));
        assert!(matches!(
            without_credentials(),
            Release::Now(EventReason::CredentialsError, _)
        ));
    }
}
