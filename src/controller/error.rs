//! Why a reconcile could not finish: Kubernetes failed (the policy's own
//! problems are conditions, not errors).

use super::claims::ClaimError;
use crate::cloudflare::CloudflareError;

/// A reconcile that could not finish because Kubernetes failed; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The object has no namespace (the CRD is namespaced, so this is a bug).
    #[error("AccessKeyPolicy has no namespace")]
    NoNamespace,
    /// Reading or writing Kubernetes failed.
    #[error("Kubernetes API error: {0}")]
    Kubernetes(#[from] kube::Error),
    /// Restoring the interval on deletion failed in a way worth retrying.
    #[error("restoring the original interval failed: {0}")]
    Restore(CloudflareError),
    /// The object changed since the cached copy the pass decided on (409):
    /// nothing was written; the pass runs again on the fresh object.
    #[error("the cached AccessKeyPolicy was stale; retrying on the current one")]
    StaleCache,
    /// The account's claim could not be read or written.
    #[error(transparent)]
    Claim(#[from] ClaimError),
}

impl ReconcileError {
    /// A stable reason for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoNamespace => "NoNamespace",
            Self::Kubernetes(_) => "KubernetesError",
            Self::Restore(_) => "RestoreFailed",
            Self::StaleCache => "StaleCache",
            Self::Claim(err) => err.reason(),
        }
    }

    /// A failed write: 409 means our copy was stale.
    pub(super) fn from_write(err: kube::Error) -> Self {
        match err {
            kube::Error::Api(status) if status.code == 409 => Self::StaleCache,
            other => Self::Kubernetes(other),
        }
    }
}
