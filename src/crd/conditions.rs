//! Condition types and reasons of `AccessKeyPolicy`, as the public contract names them.

/// The condition types a policy carries: `Ready` and `Synced` always, and
/// kstatus's abnormal-true `Reconciling` or `Stalled` only while they are True,
/// so that kstatus (Flux `wait`, `kubectl wait`-style tools) reads the same
/// verdict as `Ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// The last reconcile of the current generation succeeded.
    Ready,
    /// The account's interval equals the spec.
    Synced,
    /// kstatus: the operator is still working (or retrying a transient failure).
    Reconciling,
    /// kstatus: the operator cannot progress until a person fixes something.
    Stalled,
}

impl ConditionType {
    /// The `type` string in the condition list.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Synced => "Synced",
            Self::Reconciling => "Reconciling",
            Self::Stalled => "Stalled",
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
    /// Every reason.
    pub const ALL: [Self; 9] = [
        Self::Reconciled,
        Self::SecretNotFound,
        Self::InvalidCredentials,
        Self::AccountNotFound,
        Self::Conflict,
        Self::RateLimited,
        Self::ApiError,
        Self::Suspended,
        Self::Reconciling,
    ];

    /// The kstatus condition that is True alongside this reason, if any:
    /// `Stalled` when a person must act, `Reconciling` while the operator
    /// retries or works; none when Ready or suspended (kstatus: Current).
    pub fn kstatus_condition(self) -> Option<ConditionType> {
        match self {
            Self::SecretNotFound
            | Self::InvalidCredentials
            | Self::AccountNotFound
            | Self::Conflict => Some(ConditionType::Stalled),
            Self::RateLimited | Self::ApiError | Self::Reconciling => {
                Some(ConditionType::Reconciling)
            }
            Self::Reconciled | Self::Suspended => None,
        }
    }

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
