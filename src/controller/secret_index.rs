//! Which credential each Secret was last seen holding. Kubernetes knowledge
//! kept out of the Cloudflare client: the controller uses it to put off a
//! pass on its credential's budget before reading the Secret, and to add up
//! the steady demand of every policy sharing a credential.
//!
//! With the Secret watch on, the watch forgets a Secret as soon as it
//! changes, so an entry is the truth until then. Without it (the default:
//! the operator may only `get` Secrets) nothing tells the index of a change,
//! and an entry could keep putting passes off on the budget of a token the
//! Secret no longer holds; every pass that goes ahead reads the Secret and
//! records what it holds, but a put-off pass reads nothing. So an unwatched
//! entry puts passes off only while it is younger than [`UNWATCHED_TRUST`]:
//! after that the next pass reads the Secret, and a changed token is used at
//! worst `UNWATCHED_TRUST` plus one put-off on the old token's budget after
//! the change.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

use crate::cloudflare::{CredentialId, Credentials};

/// Without a Secret watch, how long after a pass read a Secret the passes of
/// its policies may be put off on the credential it held then, unread. At
/// most one pass per Secret per this time reads it although its budget would
/// have put it off.
pub const UNWATCHED_TRUST: Duration = Duration::from_secs(30);

/// What a Secret held when a pass last read it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    credential: CredentialId,
    read_at: Instant,
}

/// Secret (`namespace/name`) to the credential it held when last read.
#[derive(Debug)]
pub struct SecretIndex {
    /// How long an entry may put passes off: `None` while a Secret watch
    /// forgets every changed Secret.
    trust: Option<Duration>,
    seen: Mutex<HashMap<String, Seen>>,
}

impl Default for SecretIndex {
    /// Without a Secret watch, as the operator runs by default.
    fn default() -> Self {
        Self::new(false)
    }
}

impl SecretIndex {
    /// An index for an operator that watches Secrets (`watched`) or not.
    pub fn new(watched: bool) -> Self {
        Self {
            trust: (!watched).then_some(UNWATCHED_TRUST),
            seen: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        // One insert or remove per call: consistent even after a panic elsewhere.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers that a pass just read `credentials` from `secret`; returns
    /// whether that is news (a new Secret, or a changed credential).
    pub fn record(&self, secret: &str, credentials: &Credentials) -> bool {
        let seen = Seen {
            credential: credentials.id(),
            read_at: Instant::now(),
        };
        self.lock()
            .insert(secret.to_owned(), seen)
            .map(|before| before.credential)
            != Some(seen.credential)
    }

    /// Forgets what `secret` holds (it changed; the next read tells).
    pub fn forget(&self, secret: &str) {
        self.lock().remove(secret);
    }

    /// The credential `secret` was last seen holding, if it may still put a
    /// pass off unread (always with the watch; without it, for
    /// [`UNWATCHED_TRUST`] after the read).
    pub fn credential_of(&self, secret: &str) -> Option<CredentialId> {
        let seen = self.lock().get(secret).copied()?;
        match self.trust {
            Some(trust) if seen.read_at.elapsed() > trust => None,
            _ => Some(seen.credential),
        }
    }

    /// Hands `walk` a lookup from a Secret to the credential it was last seen
    /// holding (however long ago: for adding up demand, the last read is the
    /// best knowledge there is), for many Secrets under one lock.
    pub fn last_seen<R>(&self, walk: impl FnOnce(&dyn Fn(&str) -> Option<CredentialId>) -> R) -> R {
        let seen = self.lock();
        walk(&|secret| seen.get(secret).map(|s| s.credential))
    }

    /// Whether `secret` was last seen holding `credentials`.
    #[cfg(test)]
    fn holds(&self, secret: &str, credentials: &Credentials) -> bool {
        self.last_seen(|held| held(secret) == Some(credentials.id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_map_to_the_credential_they_held_last() {
        let index = SecretIndex::new(true);
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

    #[tokio::test(start_paused = true)]
    async fn with_the_watch_an_entry_holds_until_the_watch_forgets_it() {
        let index = SecretIndex::new(true);
        let token = Credentials::api_token("old");
        index.record("ns/a", &token);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(index.credential_of("ns/a"), Some(token.id()));
    }

    #[tokio::test(start_paused = true)]
    async fn without_the_watch_an_entry_puts_passes_off_only_for_a_while_after_its_read() {
        let index = SecretIndex::new(false);
        let old = Credentials::api_token("old");
        index.record("ns/a", &old);
        tokio::time::advance(UNWATCHED_TRUST).await;
        assert_eq!(index.credential_of("ns/a"), Some(old.id()));
        // The Secret may hold another token by now: the next pass reads it.
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(index.credential_of("ns/a"), None);
        // Demand still counts the last credential read.
        assert!(index.holds("ns/a", &old));
        // The pass that reads it records what it holds now, and is trusted again.
        let new = Credentials::api_token("new");
        assert!(index.record("ns/a", &new));
        assert_eq!(index.credential_of("ns/a"), Some(new.id()));
        // Reading the same credential again renews the trust.
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(!index.record("ns/a", &new));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(index.credential_of("ns/a"), Some(new.id()));
    }
}
