//! Which credential each Secret was last seen holding. Kubernetes knowledge
//! kept out of the Cloudflare client: the controller uses it to put off a
//! pass on its credential's budget before reading the Secret, and to add up
//! the steady demand of every policy sharing a credential.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use crate::cloudflare::{CredentialId, Credentials};

/// Secret (`namespace/name`) to the credential it held when last read.
#[derive(Debug, Default)]
pub struct SecretIndex(Mutex<HashMap<String, CredentialId>>);

impl SecretIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CredentialId>> {
        // One insert or remove per call: consistent even after a panic elsewhere.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers that `secret` holds `credentials`; returns whether that is
    /// news (a new Secret, or a changed credential).
    pub fn record(&self, secret: &str, credentials: &Credentials) -> bool {
        self.lock().insert(secret.to_owned(), credentials.id()) != Some(credentials.id())
    }

    /// Forgets what `secret` holds (it changed; the next read tells).
    pub fn forget(&self, secret: &str) {
        self.lock().remove(secret);
    }

    /// The credential `secret` was last seen holding.
    pub fn credential_of(&self, secret: &str) -> Option<CredentialId> {
        self.lock().get(secret).copied()
    }

    /// Whether `secret` was last seen holding `credentials`.
    pub fn holds(&self, secret: &str, credentials: &Credentials) -> bool {
        self.credential_of(secret) == Some(credentials.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_map_to_the_credential_they_held_last() {
        let index = SecretIndex::default();
        let token = Credentials::api_token("shared");
        let other = Credentials::api_token("other");
        assert!(index.record("ns/a", &token), "a new Secret is news");
        assert!(!index.record("ns/a", &token), "the same credential is not");
        assert!(index.holds("ns/a", &token));
        assert!(index.record("ns/a", &other), "another credential is news");
        assert!(!index.holds("ns/a", &token));
        index.forget("ns/a");
        assert_eq!(index.credential_of("ns/a"), None);
    }
}
