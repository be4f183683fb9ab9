//! Condition types and reasons of `AccessKeyPolicy`, as the public contract names them.
//! Each string is the variant's name (strum's `IntoStaticStr`); the tests below
//! pin them, since renaming a variant would change the contract.

/// The condition types a policy carries, named as kstatus and Flux name them:
/// `Ready` always, `AccountInSync` once the account has been read, and
/// kstatus's abnormal-true `Reconciling` or `Stalled` only while they are True,
/// so that kstatus (Flux `wait`, `kubectl wait`-style tools) reads the same
/// verdict as `Ready`. (Crossplane's `Synced` is not used: there it means "the
/// last reconcile succeeded", which is `Ready` here.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
pub enum ConditionType {
    /// The policy is in the state its spec asks for: the last reconcile of
    /// the current generation succeeded (the account matches the spec, or in
    /// Observe mode has been read), or the policy is suspended as asked.
    Ready,
    /// The account's interval equals the spec's.
    AccountInSync,
    /// kstatus: the operator is still working (or retrying a transient failure).
    Reconciling,
    /// kstatus: the operator cannot progress until a person fixes something.
    Stalled,
    /// Present with `spec.rotationWindow`: True when the next rotation is
    /// planned inside a window, False when no window fits before the account
    /// rotates on its own or the window is invalid.
    RotationWindow,
}

impl ConditionType {
    /// Every type the operator writes.
    pub const ALL: [Self; 5] = [
        Self::Ready,
        Self::AccountInSync,
        Self::Reconciling,
        Self::Stalled,
        Self::RotationWindow,
    ];

    /// Whether a condition of this `type` is the operator's own (others are
    /// other tools', which the operator neither writes nor removes).
    pub fn is_own(type_: &str) -> bool {
        Self::ALL.iter().any(|kind| kind.as_str() == type_)
    }

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
    /// True: `spec.suspend` is true, so nothing is to be done (`Ready` is True
    /// so that `kubectl wait --for=condition=Ready` does not hang on it).
    Suspended,
    /// Work is in progress.
    Reconciling,
    /// The spec holds a value the API server's rules could not refuse but the
    /// operator cannot use (a `rotationWindow` in an unknown time zone, or
    /// one that never occurs); the rest of the spec is still applied.
    InvalidSpec,
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
            | Self::Conflict
            | Self::InvalidSpec => Some(ConditionType::Stalled),
            Self::RateLimited | Self::ApiError | Self::Reconciling => {
                Some(ConditionType::Reconciling)
            }
            Self::Reconciled | Self::Suspended => None,
        }
    }

    /// Whether `Ready` is True with this reason: the policy is as its spec
    /// asks (reconciled, or suspended on purpose).
    pub fn is_ready(self) -> bool {
        matches!(self, Self::Reconciled | Self::Suspended)
    }

    /// The `reason` string, also used as metric label.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Reasons of the `RotationWindow` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
pub enum RotationWindowReason {
    /// True: the next rotation is planned inside a window.
    Planned,
    /// False: no window fits between the cooldown after the last rotation and
    /// the account's own rotation (or the operator missed it); the account
    /// rotates on its own schedule and the operator does not rotate outside a window.
    NoWindowFits,
    /// False: the window cannot be used (unknown time zone, unreadable schedule,
    /// a schedule that never occurs).
    InvalidWindow,
}

impl RotationWindowReason {
    /// The `reason` string.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Reasons of the `AccountInSync` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
pub enum AccountInSyncReason {
    /// The account's interval equals the spec.
    InSync,
    /// The account's interval differs from the spec.
    Drifted,
}

impl AccountInSyncReason {
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
                "InvalidSpec",
            ]
        );
        let types = ConditionType::ALL.map(ConditionType::as_str);
        assert_eq!(
            types,
            [
                "Ready",
                "AccountInSync",
                "Reconciling",
                "Stalled",
                "RotationWindow"
            ]
        );
        let window = [
            RotationWindowReason::Planned,
            RotationWindowReason::NoWindowFits,
            RotationWindowReason::InvalidWindow,
        ]
        .map(RotationWindowReason::as_str);
        assert_eq!(window, ["Planned", "NoWindowFits", "InvalidWindow"]);
        let in_sync = [AccountInSyncReason::InSync, AccountInSyncReason::Drifted]
            .map(AccountInSyncReason::as_str);
        assert_eq!(in_sync, ["InSync", "Drifted"]);
    }
}
