//! Condition types and reasons of `AccessKeyPolicy`, as the public contract names them.

/// The two condition types a policy carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// The last reconcile of the current generation succeeded.
    Ready,
    /// The account's interval equals the spec.
    Synced,
}

impl ConditionType {
    /// The `type` string in the condition list.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Synced => "Synced",
        }
    }
}

/// Reasons of the `Ready` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadyReason {
    /// True: the account matches the spec (Manage) or has been read (Observe).
    Reconciled,
    /// The referenced Secret does not exist.
    SecretNotFound,
    /// The Secret is malformed, or Cloudflare refused the credentials.
    InvalidCredentials,
    /// Cloudflare does not know the account, or Access keys are not enabled on it.
    AccountNotFound,
    /// Another Manage-mode policy owns the same account.
    Conflict,
    /// Cloudflare asked us to slow down.
    RateLimited,
    /// Any other Cloudflare failure.
    ApiError,
    /// `spec.suspend` is true.
    Suspended,
    /// Work is in progress.
    Reconciling,
}

impl ReadyReason {
    /// The `reason` string, also used as event reason and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reconciled => "Reconciled",
            Self::SecretNotFound => "SecretNotFound",
            Self::InvalidCredentials => "InvalidCredentials",
            Self::AccountNotFound => "AccountNotFound",
            Self::Conflict => "Conflict",
            Self::RateLimited => "RateLimited",
            Self::ApiError => "ApiError",
            Self::Suspended => "Suspended",
            Self::Reconciling => "Reconciling",
        }
    }
}

/// Reasons of the `Synced` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncedReason {
    /// The account's interval equals the spec.
    InSync,
    /// The account's interval differs from the spec.
    Drifted,
}

impl SyncedReason {
    /// The `reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InSync => "InSync",
            Self::Drifted => "Drifted",
        }
    }
}
