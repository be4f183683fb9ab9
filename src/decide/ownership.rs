//! Which policy owns an account (pure): among the Manage-mode policies naming
//! the same account, the oldest (creation time, then namespace/name) owns it.

use jiff::Timestamp;

/// One Manage-mode policy's claim on an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountClaim {
    /// When the policy was created.
    pub created: Timestamp,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl AccountClaim {
    fn order_key(&self) -> (Timestamp, &str, &str) {
        (self.created, &self.namespace, &self.name)
    }
}

/// The owner among `claims` (which include the asking policy's own claim).
pub fn owner_of(claims: &[AccountClaim]) -> Option<&AccountClaim> {
    claims
        .iter()
        .min_by(|a, b| a.order_key().cmp(&b.order_key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(created: &str, namespace: &str, name: &str) -> AccountClaim {
        AccountClaim {
            created: created.parse().expect("timestamp"),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn the_oldest_claim_owns_the_account_and_ties_break_by_namespace_then_name() {
        let a = claim("2026-01-02T00:00:00Z", "a", "x");
        let b = claim("2026-01-01T00:00:00Z", "z", "y");
        let c = claim("2026-01-01T00:00:00Z", "m", "b");
        let d = claim("2026-01-01T00:00:00Z", "m", "a");
        assert_eq!(owner_of(&[a.clone(), b.clone()]), Some(&b));
        assert_eq!(owner_of(&[a.clone(), b.clone(), c.clone()]), Some(&c));
        assert_eq!(owner_of(&[c.clone(), d.clone(), b]), Some(&d));
        assert_eq!(owner_of(&[]), None);
    }
}
