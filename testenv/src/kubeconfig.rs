//! Writes kubeconfig files and builds clients from them.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use crate::TestEnvError;

/// How a kubeconfig user authenticates.
pub(crate) enum Credentials<'a> {
    /// A client certificate and its key (PEM files).
    ClientCertificate { cert: &'a Path, key: &'a Path },
    /// A bearer token.
    Token(&'a str),
}

/// Writes a single-context kubeconfig for `server` trusting `ca_cert`.
pub(crate) fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_cert: &Path,
    credentials: Credentials<'_>,
) -> Result<(), TestEnvError> {
    let user = match credentials {
        Credentials::ClientCertificate { cert, key } => json!({
            "client-certificate": cert,
            "client-key": key,
        }),
        Credentials::Token(token) => json!({ "token": token }),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "keyrotor-testenv",
            "cluster": { "server": server, "certificate-authority": ca_cert },
        }],
        "users": [{ "name": "keyrotor-testenv", "user": user }],
        "contexts": [{
            "name": "keyrotor-testenv",
            "context": { "cluster": "keyrotor-testenv", "user": "keyrotor-testenv" },
        }],
        "current-context": "keyrotor-testenv",
    });
    std::fs::write(path, serde_norway::to_string(&config)?)
        .map_err(|e| TestEnvError::io(format!("writing {}", path.display()), e))
}

/// A client for the current context of the kubeconfig at `path`.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, TestEnvError> {
    let kubeconfig_error = |source| TestEnvError::Kubeconfig {
        path: path.to_owned(),
        source,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(kubeconfig_error)?;
    kube::Client::try_from(config)
        .map_err(|e| TestEnvError::kube(format!("building a client from {}", path.display()), e))
}
