//! Connecting to the cluster the way kubectl would, and picking the namespace.

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

use super::{args::ConnectionArgs, error::PluginError};

/// A client and the namespace commands default to.
pub struct Connection {
    /// The API client.
    pub client: Client,
    /// `-n`, else the kubeconfig context's namespace, else `default`.
    pub namespace: String,
}

/// Loads `--kubeconfig` (else `KUBECONFIG`, `~/.kube/config`, in-cluster) with
/// `--context` (else the current context) and builds a client.
pub async fn connect(args: &ConnectionArgs) -> Result<Connection, PluginError> {
    // The program's one rustls provider (kube and reqwest both use ring); a
    // second call, or one made by someone else first, changes nothing.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|err| PluginError::Config(format!("reading {}: {err}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|err| PluginError::Config(err.to_string()))?
        }
        (None, Some(_)) => Config::from_kubeconfig(&options)
            .await
            .map_err(|err| PluginError::Config(err.to_string()))?,
        (None, None) => Config::infer()
            .await
            .map_err(|err| PluginError::Config(err.to_string()))?,
    };
    let client = Client::try_from(config).map_err(|err| PluginError::Config(err.to_string()))?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    Ok(Connection { client, namespace })
}
