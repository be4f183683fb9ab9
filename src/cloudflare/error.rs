//! Typed Cloudflare errors, each with a stable reason. No variant carries a
//! credential: only status codes, Cloudflare's error codes and messages.

use std::time::Duration;

/// What kind of transport failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Connect or whole-request timeout.
    Timeout,
    /// The connection was refused or could not be made.
    Connect,
    /// The connection broke while the request or response was in flight.
    Other,
    /// The server's TLS certificate was refused (untrusted issuer, such as a
    /// TLS-inspecting proxy's, expired, or for another name). Trying again
    /// cannot help: not retried.
    Tls,
}

/// A failed Cloudflare call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CloudflareError {
    /// Cloudflare did not accept the credentials (401/403, codes 9109, 9103, 10000, 10001, 6003).
    #[error("Cloudflare rejected the credentials (HTTP {status}{}): {message}", code_suffix(*code))]
    Authentication {
        /// HTTP status.
        status: u16,
        /// Cloudflare's error code.
        code: Option<i64>,
        /// Cloudflare's message.
        message: String,
    },
    /// The account does not exist or has no Access key configuration (404, 7003, 7000, 12109).
    #[error("Cloudflare does not know this account's Access key configuration (HTTP {status}{}): {message}", code_suffix(*code))]
    AccountNotFound {
        /// HTTP status.
        status: u16,
        /// Cloudflare's error code.
        code: Option<i64>,
        /// Cloudflare's message.
        message: String,
    },
    /// Cloudflare refused the request itself (other 4xx, or `success: false`).
    #[error("Cloudflare rejected the request (HTTP {status}{}): {message}{}", code_suffix(*code), pointer.as_ref().map(|p| format!(" at {p}")).unwrap_or_default())]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Cloudflare's error code.
        code: Option<i64>,
        /// Cloudflare's message.
        message: String,
        /// `source.pointer` of the first error, naming the offending field.
        pointer: Option<String>,
    },
    /// HTTP 429: no call with this credential until `retry_after` has passed.
    #[error("Cloudflare rate limit reached; retrying after {} s", retry_after.as_secs())]
    RateLimited {
        /// How long to wait before the next call with this credential.
        retry_after: Duration,
    },
    /// Not sent: the credential's budget (or the operator-wide ceiling) has
    /// no slot within the hold threshold, or a 429 blocks the credential.
    /// Nothing happened at Cloudflare; come back after `wait`.
    #[error("Cloudflare call put off for {} ms: the request budget has no slot sooner", wait.as_millis())]
    PutOff {
        /// How long until the budget has a slot.
        wait: Duration,
    },
    /// Cloudflare answered 5xx, after all retries.
    #[error("Cloudflare server error (HTTP {status}{}) after {attempts} attempt(s): {message}", code_suffix(*code))]
    Server {
        /// HTTP status.
        status: u16,
        /// Cloudflare's error code, if the body had one.
        code: Option<i64>,
        /// Cloudflare's message, or a summary of the body.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// No answer: timeout, refused or broken connection, after all retries.
    #[error("could not reach Cloudflare ({kind:?}) after {attempts} attempt(s): {detail}")]
    Transport {
        /// What failed.
        kind: TransportKind,
        /// A description without URL or headers.
        detail: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The answer could not be understood (HTML, truncated JSON, missing result, too large).
    #[error("malformed Cloudflare response (HTTP {status}): {detail}")]
    Malformed {
        /// HTTP status.
        status: u16,
        /// What was wrong with it.
        detail: String,
    },
}

fn code_suffix(code: Option<i64>) -> String {
    code.map(|c| format!(", code {c}")).unwrap_or_default()
}

impl CloudflareError {
    /// A stable reason for metrics labels and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Authentication { .. } => "InvalidCredentials",
            Self::AccountNotFound { .. } => "AccountNotFound",
            Self::Rejected { .. } => "RequestRejected",
            Self::RateLimited { .. } => "RateLimited",
            Self::PutOff { .. } => "BudgetDeferred",
            Self::Server { .. } => "ServerError",
            Self::Transport { .. } => "TransportError",
            Self::Malformed { .. } => "MalformedResponse",
        }
    }

    /// Whether trying the same idempotent call again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Server { .. } => true,
            Self::Transport { kind, .. } => *kind != TransportKind::Tls,
            _ => false,
        }
    }

    /// Whether the call was not sent at all (its budget put it off).
    pub fn is_put_off(&self) -> bool {
        matches!(self, Self::PutOff { .. })
    }

    /// Records how many attempts a retried call made.
    pub(crate) fn with_attempts(mut self, made: u32) -> Self {
        if let Self::Server { attempts, .. } | Self::Transport { attempts, .. } = &mut self {
            *attempts = made;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_certificate_is_not_retried_other_transport_failures_are() {
        let transport = |kind| CloudflareError::Transport {
            kind,
            detail: "x".into(),
            attempts: 1,
        };
        assert!(!transport(TransportKind::Tls).is_retryable());
        for kind in [
            TransportKind::Timeout,
            TransportKind::Connect,
            TransportKind::Other,
        ] {
            assert!(transport(kind).is_retryable(), "{kind:?}");
        }
    }
}
