//! What can go wrong in the plugin, each variant with a message a user can act on.

/// An error that stops a plugin command (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("cannot load the Kubernetes configuration: {0}")]
    Config(String),
    /// The named policy does not exist.
    #[error("AccessKeyPolicy \"{name}\" not found in namespace \"{namespace}\"")]
    NotFound {
        /// Namespace that was searched.
        namespace: String,
        /// Name that was asked for.
        name: String,
    },
    /// A selection (`--all`, `-l`) found nothing to rotate.
    #[error("no AccessKeyPolicy found {0}; nothing was rotated")]
    NoneMatched(String),
    /// The cluster does not serve `accesskeypolicies.keyrotor.dev`.
    #[error(
        "the cluster does not serve accesskeypolicies.keyrotor.dev; is the keyrotor CRD installed?"
    )]
    ApiMissing,
    /// Writing the output failed (e.g. a closed pipe).
    #[error("cannot write the output: {0}")]
    Output(String),
    /// Any other API failure, with what the plugin was doing.
    #[error("{action}: {reason}")]
    Api {
        /// What the plugin was doing, e.g. `listing AccessKeyPolicies in namespace "a"`.
        action: String,
        /// The server's or the transport's explanation.
        reason: String,
    },
}

impl PluginError {
    /// Maps an API error; a 404 on a collection means the CRD is missing.
    pub fn api(action: impl Into<String>, err: &kube::Error) -> Self {
        if let kube::Error::Api(status) = err
            && status.code == 404
            && status.details.as_ref().is_none_or(|d| d.name.is_empty())
        {
            return Self::ApiMissing;
        }
        Self::Api {
            action: action.into(),
            reason: describe(err),
        }
    }
}

/// A kube error in one line, without the `Debug` dump kube appends to API errors.
pub fn describe(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => format!(
            "{} ({}, HTTP {})",
            status.message, status.reason, status.code
        ),
        other => other.to_string(),
    }
}

/// Whether the server answered 404 for a named object that does not exist
/// (as opposed to a resource type it does not serve, which has no name in the details).
pub fn is_missing_object(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status)
        if status.code == 404 && status.details.as_ref().is_some_and(|d| !d.name.is_empty()))
}
