//! Who is calling: the authentication headers checked in Cloudflare's order,
//! and what an authenticated credential may do.

use axum::http::{HeaderMap, StatusCode};

use crate::config::{CredentialSecret, CredentialSeed};
use crate::envelope::{ApiFailure, ErrorItem};

const AUTHORIZATION: &str = "authorization";
const X_AUTH_KEY: &str = "x-auth-key";
const X_AUTH_EMAIL: &str = "x-auth-email";

/// Log label for a request that sent no credentials at all.
pub(crate) const ANONYMOUS: &str = "anonymous";
/// Log label for a request whose credentials matched nothing or were malformed.
pub(crate) const UNKNOWN: &str = "unknown";

/// The authentication headers of one request (values as sent; empty counts as absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AuthHeaders {
    authorization: Option<String>,
    api_key: Option<String>,
    email: Option<String>,
}

impl AuthHeaders {
    /// Picks the three headers out of a request.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let get = |name: &str| {
            headers
                .get(name)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        Self {
            authorization: get(AUTHORIZATION),
            api_key: get(X_AUTH_KEY),
            email: get(X_AUTH_EMAIL),
        }
    }
}

/// Why a request is not authenticated, with Cloudflare's code for each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    /// Both a bearer token and global-key headers.
    #[error("Invalid request headers")]
    BothSchemes,
    /// No authentication headers.
    #[error("Unable to authenticate request")]
    NoCredentials,
    /// `Authorization` present but not `Bearer <token>`.
    #[error("Invalid request headers")]
    MalformedAuthorization,
    /// `X-Auth-Email` sent without `X-Auth-Key`.
    #[error("Invalid request headers")]
    MissingApiKey,
    /// `X-Auth-Key` sent without `X-Auth-Email`.
    #[error("Invalid request headers")]
    MissingEmail,
    /// A well-formed bearer token that no credential has.
    #[error("Invalid access token")]
    InvalidToken,
    /// A key and email pair that no credential has.
    #[error("Unknown X-Auth-Key or X-Auth-Email")]
    UnknownGlobalKey,
}

fn authorization_format() -> ErrorItem {
    ErrorItem::new(6111, "Invalid format for Authorization header")
}

fn email_format() -> ErrorItem {
    ErrorItem::new(6102, "Invalid format for X-Auth-Email header")
}

fn key_format() -> ErrorItem {
    ErrorItem::new(6103, "Invalid format for X-Auth-Key header")
}

impl ApiFailure for AuthError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BothSchemes
            | Self::NoCredentials
            | Self::MalformedAuthorization
            | Self::MissingApiKey
            | Self::MissingEmail => StatusCode::BAD_REQUEST,
            // Cloudflare answers 9109 with 401 or 403 depending on the route; 403 here.
            Self::InvalidToken | Self::UnknownGlobalKey => StatusCode::FORBIDDEN,
        }
    }

    fn item(&self) -> ErrorItem {
        let message = self.to_string();
        match self {
            Self::BothSchemes => {
                ErrorItem::new(6003, message).with_chain(vec![authorization_format(), key_format()])
            }
            Self::NoCredentials => ErrorItem::new(10001, message),
            Self::MalformedAuthorization => {
                ErrorItem::new(6003, message).with_chain(vec![authorization_format()])
            }
            Self::MissingApiKey => ErrorItem::new(6003, message).with_chain(vec![key_format()]),
            Self::MissingEmail => ErrorItem::new(6003, message).with_chain(vec![email_format()]),
            Self::InvalidToken => ErrorItem::new(9109, message),
            Self::UnknownGlobalKey => ErrorItem::new(9103, message),
        }
    }
}

/// Decides who is calling, checking in Cloudflare's order: mixed schemes,
/// nothing sent, malformed headers, then unknown secrets.
pub(crate) fn authenticate<'a>(
    headers: &AuthHeaders,
    credentials: &'a [CredentialSeed],
) -> Result<&'a CredentialSeed, AuthError> {
    let global_key_sent = headers.api_key.is_some() || headers.email.is_some();
    match (&headers.authorization, global_key_sent) {
        (Some(_), true) => Err(AuthError::BothSchemes),
        (None, false) => Err(AuthError::NoCredentials),
        (Some(authorization), false) => {
            let token = bearer_token(authorization).ok_or(AuthError::MalformedAuthorization)?;
            credentials
                .iter()
                .find(
                    |seed| matches!(&seed.secret, CredentialSecret::Token(known) if known == token),
                )
                .ok_or(AuthError::InvalidToken)
        }
        (None, true) => {
            let api_key = headers.api_key.as_deref().ok_or(AuthError::MissingApiKey)?;
            let email = headers.email.as_deref().ok_or(AuthError::MissingEmail)?;
            credentials
                .iter()
                .find(|seed| {
                    matches!(&seed.secret, CredentialSecret::GlobalKey { api_key: known_key, email: known_email }
                        if known_key == api_key && known_email == email)
                })
                .ok_or(AuthError::UnknownGlobalKey)
        }
    }
}

/// The token of `Bearer <token>`; `None` for any other shape.
fn bearer_token(authorization: &str) -> Option<&str> {
    let token = authorization.strip_prefix("Bearer ")?.trim();
    (!token.is_empty() && !token.contains(char::is_whitespace)).then_some(token)
}

/// Whether a credential may touch an account, and write to it if asked.
pub(crate) fn permits(credential: &CredentialSeed, account_id: &str, writes: bool) -> bool {
    let account_allowed =
        credential.accounts.is_empty() || credential.accounts.iter().any(|id| id == account_id);
    account_allowed && !(writes && credential.read_only)
}

/// What the request log shows for a caller: the credential's id, never its secret.
pub(crate) fn log_label(outcome: &Result<CredentialSeed, AuthError>) -> String {
    match outcome {
        Ok(credential) => credential.id.clone(),
        Err(AuthError::NoCredentials) => ANONYMOUS.to_owned(),
        Err(_) => UNKNOWN.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: Option<&str>, key: Option<&str>, email: Option<&str>) -> AuthHeaders {
        AuthHeaders {
            authorization: authorization.map(str::to_owned),
            api_key: key.map(str::to_owned),
            email: email.map(str::to_owned),
        }
    }

    fn known() -> Vec<CredentialSeed> {
        vec![
            CredentialSeed::token("ci", "good-token"),
            CredentialSeed::global_key("legacy", "good-key", "ops@example.com"),
        ]
    }

    fn decide(
        authorization: Option<&str>,
        key: Option<&str>,
        email: Option<&str>,
    ) -> Result<String, AuthError> {
        authenticate(&headers(authorization, key, email), &known()).map(|seed| seed.id.clone())
    }

    #[test]
    fn decisions_follow_cloudflare_order() {
        // (Authorization, X-Auth-Key, X-Auth-Email, expected credential id)
        type Case = (
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            Result<&'static str, AuthError>,
        );
        let cases: &[Case] = &[
            (
                Some("Bearer good-token"),
                Some("good-key"),
                Some("ops@example.com"),
                Err(AuthError::BothSchemes),
            ),
            (
                Some("Bearer good-token"),
                None,
                Some("ops@example.com"),
                Err(AuthError::BothSchemes),
            ),
            (None, None, None, Err(AuthError::NoCredentials)),
            (
                Some("Basic abc"),
                None,
                None,
                Err(AuthError::MalformedAuthorization),
            ),
            (
                Some("Bearer "),
                None,
                None,
                Err(AuthError::MalformedAuthorization),
            ),
            (
                Some("bearer good-token"),
                None,
                None,
                Err(AuthError::MalformedAuthorization),
            ),
            (
                None,
                None,
                Some("ops@example.com"),
                Err(AuthError::MissingApiKey),
            ),
            (None, Some("good-key"), None, Err(AuthError::MissingEmail)),
            (
                Some("Bearer other"),
                None,
                None,
                Err(AuthError::InvalidToken),
            ),
            (
                None,
                Some("good-key"),
                Some("other@example.com"),
                Err(AuthError::UnknownGlobalKey),
            ),
            (
                None,
                Some("other"),
                Some("ops@example.com"),
                Err(AuthError::UnknownGlobalKey),
            ),
            (Some("Bearer good-token"), None, None, Ok("ci")),
            (
                None,
                Some("good-key"),
                Some("ops@example.com"),
                Ok("legacy"),
            ),
        ];
        for (authorization, key, email, expected) in cases {
            let expected = expected.clone().map(str::to_owned);
            assert_eq!(
                decide(*authorization, *key, *email),
                expected,
                "{authorization:?} {key:?} {email:?}"
            );
        }
    }

    #[test]
    fn a_global_key_is_not_a_token() {
        assert_eq!(
            decide(Some("Bearer good-key"), None, None),
            Err(AuthError::InvalidToken)
        );
    }

    #[test]
    fn each_error_has_its_code_and_status() {
        let cases = [
            (AuthError::BothSchemes, 400, 6003, vec![6111, 6103]),
            (AuthError::NoCredentials, 400, 10001, vec![]),
            (AuthError::MalformedAuthorization, 400, 6003, vec![6111]),
            (AuthError::MissingApiKey, 400, 6003, vec![6103]),
            (AuthError::MissingEmail, 400, 6003, vec![6102]),
            (AuthError::InvalidToken, 403, 9109, vec![]),
            (AuthError::UnknownGlobalKey, 403, 9103, vec![]),
        ];
        for (error, status, code, chain) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            let item = serde_json::to_value(error.item()).unwrap_or_default();
            assert_eq!(item["code"], code, "{error:?}");
            let chain_codes: Vec<u64> = item["error_chain"]
                .as_array()
                .map(|links| {
                    links
                        .iter()
                        .filter_map(|link| link["code"].as_u64())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(chain_codes, chain, "{error:?}");
        }
    }

    #[test]
    fn permissions_respect_account_list_and_read_only() {
        let everywhere = CredentialSeed::token("a", "t");
        let scoped = CredentialSeed::token("b", "t").for_accounts(["acc1"]);
        let reader = CredentialSeed::token("c", "t").read_only();
        assert!(permits(&everywhere, "any", true));
        assert!(permits(&scoped, "acc1", true));
        assert!(!permits(&scoped, "acc2", false));
        assert!(permits(&reader, "any", false));
        assert!(!permits(&reader, "any", true));
    }

    #[test]
    fn log_labels_never_show_secrets() {
        let seed = CredentialSeed::token("ci", "good-token");
        assert_eq!(log_label(&Ok(seed)), "ci");
        assert_eq!(log_label(&Err(AuthError::NoCredentials)), ANONYMOUS);
        assert_eq!(log_label(&Err(AuthError::InvalidToken)), UNKNOWN);
    }

    #[test]
    fn headers_are_read_case_insensitively_and_empty_means_absent() {
        let mut map = HeaderMap::new();
        map.insert(
            "Authorization",
            axum::http::HeaderValue::from_static("Bearer x"),
        );
        map.insert("X-Auth-Email", axum::http::HeaderValue::from_static(""));
        assert_eq!(
            AuthHeaders::from_headers(&map),
            headers(Some("Bearer x"), None, None)
        );
    }
}
