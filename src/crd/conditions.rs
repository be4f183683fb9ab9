//! Condition types and reasons of `AccessKeyPolicy`, as the public contract names them.
//! Each string is the variant's name (strum's `IntoStaticStr`); the tests below
//! pin them, since renaming a variant would change the contract.

/// The condition types a policy carries: `Ready` and `Synced` always, and
/// kstatus's abnormal-true `Reconciling` or `Stalled` only while they are True,
/// so that kstatus (Flux `wait`, `kubectl wait`-style tools) reads the same
/// verdict as `Ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
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
        self.into()
    }
}

/// Reasons of the `Ready` condition.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::EnumCount,
)]
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
    /// Every reason, in declaration order (strum's `VARIANTS` as an array,
    /// so callers can iterate by value).
    pub const ALL: [Self; <ReadyReason as strum::EnumCount>::COUNT] = {
        let variants = <ReadyReason as strum::VariantArray>::VARIANTS;
        let mut all = [Self::Reconciled; <ReadyReason as strum::EnumCount>::COUNT];
        let mut i = 0;
        while i < all.len() {
            all[i] = variants[i];
            i += 1;
        }
        all
    };

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
        self.into()
    }
}

/// Reasons of the `Synced` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
pub enum SyncedReason {
    /// The account's interval equals the spec.
    InSync,
    /// The account's interval differs from the spec.
    Drifted,
}

impl SyncedReason {
    /// The `reason` string.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_the_public_contract() {
        let ready: Vec<&str> = ReadyReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            ready,
            [
                "Reconciled",
                "SecretNotFound",
                "InvalidCredentials",
                "AccountNotFound",
                "Conflict",
                "RateLimited",
                "ApiError",
                "Suspended",
                "Reconciling",
            ]
        );
        let types = [
            ConditionType::Ready,
            ConditionType::Synced,
            ConditionType::Reconciling,
            ConditionType::Stalled,
        ]
        .map(ConditionType::as_str);
        assert_eq!(types, ["Ready", "Synced", "Reconciling", "Stalled"]);
        let synced = [SyncedReason::InSync, SyncedReason::Drifted].map(SyncedReason::as_str);
        assert_eq!(synced, ["InSync", "Drifted"]);
    }
}
