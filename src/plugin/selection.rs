//! Which policies a command acts on, and reading them from the API server.

use kube::{Api, Client, api::ListParams, runtime::watcher};

use super::error::{PluginError, is_missing_object};
use crate::crd::AccessKeyPolicy;

/// Where to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One namespace.
    Namespace(String),
    /// Every namespace (`-A`).
    AllNamespaces,
}

/// Which policies a command acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One policy by name.
    Named {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Every policy in the scope, or only those matching a label selector.
    Matching {
        /// Where to look.
        scope: Scope,
        /// A label selector, or none for all.
        labels: Option<String>,
    },
}

impl Selection {
    /// Builds the selection from the flags; `-A` wins over the namespace, as in kubectl.
    pub fn new(
        name: Option<&str>,
        labels: Option<&str>,
        all_namespaces: bool,
        namespace: &str,
    ) -> Self {
        match name {
            Some(name) => Self::Named {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            None => Self::Matching {
                scope: if all_namespaces {
                    Scope::AllNamespaces
                } else {
                    Scope::Namespace(namespace.to_owned())
                },
                labels: labels.map(str::to_owned),
            },
        }
    }

    /// Whether the results span namespaces (the output then names them).
    pub fn spans_namespaces(&self) -> bool {
        matches!(
            self,
            Self::Matching {
                scope: Scope::AllNamespaces,
                ..
            }
        )
    }

    /// The selection in words, for "nothing found" messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Named { namespace, name } => {
                format!("named \"{name}\" in namespace \"{namespace}\"")
            }
            Self::Matching { scope, labels } => {
                let place = match scope {
                    Scope::Namespace(namespace) => format!("in namespace \"{namespace}\""),
                    Scope::AllNamespaces => "in any namespace".to_owned(),
                };
                match labels {
                    Some(labels) => format!("matching \"{labels}\" {place}"),
                    None => place,
                }
            }
        }
    }

    /// The API to list and watch the selection with.
    pub fn api(&self, client: &Client) -> Api<AccessKeyPolicy> {
        match self {
            Self::Named { namespace, .. }
            | Self::Matching {
                scope: Scope::Namespace(namespace),
                ..
            } => Api::namespaced(client.clone(), namespace),
            Self::Matching {
                scope: Scope::AllNamespaces,
                ..
            } => Api::all(client.clone()),
        }
    }

    /// A watcher configuration that sees exactly the selected policies, with
    /// a quorum read first so the initial list already holds our own writes.
    pub fn watcher_config(&self) -> watcher::Config {
        let config = watcher::Config::default().list_semantic(watcher::ListSemantic::MostRecent);
        match self {
            Self::Named { name, .. } => config.fields(&format!("metadata.name={name}")),
            Self::Matching {
                labels: Some(labels),
                ..
            } => config.labels(labels),
            Self::Matching { labels: None, .. } => config,
        }
    }

    /// The selected policies, sorted by namespace and name. A missing named
    /// policy is an error; an empty selection is an empty list.
    pub async fn fetch(&self, client: &Client) -> Result<Vec<AccessKeyPolicy>, PluginError> {
        let api = self.api(client);
        let mut policies = match self {
            Self::Named { namespace, name } => match api.get(name).await {
                Ok(policy) => vec![policy],
                Err(err) if is_missing_object(&err) => {
                    return Err(PluginError::NotFound {
                        namespace: namespace.clone(),
                        name: name.clone(),
                    });
                }
                Err(err) => {
                    return Err(PluginError::api(
                        format!("reading AccessKeyPolicy {namespace}/{name}"),
                        &err,
                    ));
                }
            },
            Self::Matching { labels, .. } => {
                let params = match labels {
                    Some(labels) => ListParams::default().labels(labels),
                    None => ListParams::default(),
                };
                api.list(&params)
                    .await
                    .map_err(|err| {
                        PluginError::api(
                            format!("listing AccessKeyPolicies {}", self.describe()),
                            &err,
                        )
                    })?
                    .items
            }
        };
        policies.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        Ok(policies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_selects_one_policy_in_the_namespace() {
        let selection = Selection::new(Some("prod"), None, false, "security");
        assert_eq!(
            selection,
            Selection::Named {
                namespace: "security".into(),
                name: "prod".into()
            }
        );
        assert!(!selection.spans_namespaces());
        assert_eq!(
            selection.describe(),
            "named \"prod\" in namespace \"security\""
        );
    }

    #[test]
    fn all_namespaces_wins_over_the_namespace_like_kubectl() {
        let selection = Selection::new(None, Some("team=a"), true, "security");
        assert_eq!(
            selection,
            Selection::Matching {
                scope: Scope::AllNamespaces,
                labels: Some("team=a".into())
            }
        );
        assert!(selection.spans_namespaces());
        assert_eq!(selection.describe(), "matching \"team=a\" in any namespace");
        let selection = Selection::new(None, None, false, "default");
        assert_eq!(selection.describe(), "in namespace \"default\"");
    }
}
