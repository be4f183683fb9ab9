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
    let config = impersonate(config, args);
    let client = Client::try_from(config).map_err(|err| PluginError::Config(err.to_string()))?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    Ok(Connection { client, namespace })
}

/// `--as`, `--as-group` and `--as-uid` replace whatever impersonation the
/// kubeconfig names, as kubectl's flags do; without `--as` the kubeconfig's
/// own settings stay. kube sends them as `Impersonate-*` headers, so the API
/// server authorizes each request as that user (and refuses it when the real
/// user may not impersonate).
fn impersonate(mut config: Config, args: &ConnectionArgs) -> Config {
    if let Some(user) = &args.as_user {
        config.auth_info.impersonate = Some(user.clone());
        config.auth_info.impersonate_groups =
            (!args.as_group.is_empty()).then(|| args.as_group.clone());
        config.auth_info.impersonate_uid = args.as_uid.clone();
        config.auth_info.impersonate_user_extra = None;
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig_config() -> Config {
        let mut config = Config::new("https://127.0.0.1:6443".parse().expect("url"));
        config.auth_info.impersonate = Some("from-kubeconfig".into());
        config.auth_info.impersonate_groups = Some(vec!["kubeconfig-group".into()]);
        config
    }

    #[test]
    fn as_flags_replace_the_kubeconfigs_impersonation() {
        let args = ConnectionArgs {
            as_user: Some("system:serviceaccount:a:b".into()),
            as_group: vec!["g1".into(), "g2".into()],
            ..ConnectionArgs::default()
        };
        let config = impersonate(kubeconfig_config(), &args);
        assert_eq!(
            config.auth_info.impersonate.as_deref(),
            Some("system:serviceaccount:a:b")
        );
        assert_eq!(
            config.auth_info.impersonate_groups,
            Some(vec!["g1".to_owned(), "g2".to_owned()])
        );
        let args = ConnectionArgs {
            as_user: Some("jane".into()),
            ..ConnectionArgs::default()
        };
        assert_eq!(
            impersonate(kubeconfig_config(), &args)
                .auth_info
                .impersonate_groups,
            None
        );
    }

    #[test]
    fn without_as_the_kubeconfig_settings_stay() {
        let config = impersonate(kubeconfig_config(), &ConnectionArgs::default());
        assert_eq!(
            config.auth_info.impersonate.as_deref(),
            Some("from-kubeconfig")
        );
        assert_eq!(
            config.auth_info.impersonate_groups,
            Some(vec!["kubeconfig-group".to_owned()])
        );
    }
}
