//! Cloudflare credentials: an API token, or a legacy global key with its email.
//! The secret parts never reach `Debug`, `Display`, logs or errors.

use std::{
    fmt,
    hash::{BuildHasher, Hash, Hasher},
    sync::OnceLock,
};

use secrecy::{ExposeSecret, SecretString};

/// How requests authenticate.
#[derive(Clone)]
pub enum Credentials {
    /// Sent as `Authorization: Bearer <token>`.
    ApiToken(SecretString),
    /// Sent as `X-Auth-Key` and `X-Auth-Email`.
    GlobalKey {
        /// The global API key.
        api_key: SecretString,
        /// The account email the key belongs to.
        email: SecretString,
    },
}

/// A process-local fingerprint of a credential: equal credentials share a
/// request budget. Derived with a per-process random key, so it reveals nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CredentialId(u64);

impl Credentials {
    /// A Bearer token credential.
    pub fn api_token(token: impl Into<String>) -> Self {
        Self::ApiToken(SecretString::from(token.into()))
    }

    /// A global key credential.
    pub fn global_key(api_key: impl Into<String>, email: impl Into<String>) -> Self {
        Self::GlobalKey {
            api_key: SecretString::from(api_key.into()),
            email: SecretString::from(email.into()),
        }
    }

    /// The kind, for logs: `apiToken` or `globalKey`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ApiToken(_) => "apiToken",
            Self::GlobalKey { .. } => "globalKey",
        }
    }

    /// The fingerprint used to share one budget between callers.
    pub fn id(&self) -> CredentialId {
        static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
        let mut hasher = KEYS.get_or_init(Default::default).build_hasher();
        match self {
            Self::ApiToken(token) => ("token", token.expose_secret()).hash(&mut hasher),
            Self::GlobalKey { api_key, email } => {
                ("key", api_key.expose_secret(), email.expose_secret()).hash(&mut hasher)
            }
        }
        CredentialId(hasher.finish())
    }

    /// Adds the authentication headers, marked sensitive so HTTP tracing hides them.
    pub(crate) fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::ApiToken(token) => request.header(
                reqwest::header::AUTHORIZATION,
                sensitive(&format!("Bearer {}", token.expose_secret())),
            ),
            Self::GlobalKey { api_key, email } => request
                .header("X-Auth-Key", sensitive(api_key.expose_secret()))
                .header("X-Auth-Email", sensitive(email.expose_secret())),
        }
    }
}

/// A header value the HTTP stack will not print. Invalid header bytes (a newline
/// in a token) become an empty value, which Cloudflare rejects as unauthenticated.
fn sensitive(value: &str) -> reqwest::header::HeaderValue {
    let mut header = reqwest::header::HeaderValue::from_str(value)
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
    header.set_sensitive(true);
    header
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials::{}(<redacted>)", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_secret() {
        let token = Credentials::api_token("tok-SECRET-123");
        let key = Credentials::global_key("key-SECRET-456", "ops@example.com");
        let printed = format!("{token:?} {key:?} {:?} {:?}", token.id(), key.id());
        assert!(!printed.contains("SECRET"), "{printed}");
        assert!(!printed.contains("ops@example.com"), "{printed}");
        assert!(printed.contains("apiToken") && printed.contains("globalKey"));
    }

    #[test]
    fn equal_credentials_share_an_id_and_different_ones_do_not() {
        assert_eq!(
            Credentials::api_token("a").id(),
            Credentials::api_token("a").id()
        );
        assert_ne!(
            Credentials::api_token("a").id(),
            Credentials::api_token("b").id()
        );
        assert_ne!(
            Credentials::global_key("a", "x@y").id(),
            Credentials::global_key("a", "z@y").id()
        );
    }
}
