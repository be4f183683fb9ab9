//! Wiring: one controller per watched scope (all namespaces, or each listed
//! one), policies filtered so the operator's own status writes do not
//! retrigger it, and metadata-only watches of Secrets.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    sync::Arc,
};

use futures::{StreamExt, future::join_all};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::Config as ControllerConfig,
        reflector,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tracing::{info, warn};

use super::{
    context::Context,
    reconciler::{error_policy, reconcile},
};
use crate::crd::{ANNOTATION_ROTATE_FORCE, ANNOTATION_ROTATE_REQUESTED_AT, AccessKeyPolicy};

/// What changes of a policy deserve a reconcile: the spec (generation), the
/// rotate annotations, finalizers and deletion. Status writes change none of them.
fn relevant_change(policy: &AccessKeyPolicy) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    policy.metadata.generation.hash(&mut hasher);
    policy
        .annotations()
        .get(ANNOTATION_ROTATE_REQUESTED_AT)
        .hash(&mut hasher);
    policy
        .annotations()
        .get(ANNOTATION_ROTATE_FORCE)
        .hash(&mut hasher);
    policy.finalizers().hash(&mut hasher);
    policy
        .metadata
        .deletion_timestamp
        .is_some()
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// Runs the controllers until shutdown (SIGTERM/SIGINT).
pub async fn run(
    client: kube::Client,
    namespaces: Vec<String>,
    concurrency: u16,
    make_context: impl FnOnce(Vec<Store<AccessKeyPolicy>>) -> Context,
) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let mut stores = Vec::new();
    let mut streams = Vec::new();
    for scope in &scopes {
        let api: Api<AccessKeyPolicy> = match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let (reader, writer) = reflector::store();
        let policies = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .reflect(writer)
            .applied_objects()
            .predicate_filter(relevant_change, Default::default());
        stores.push(reader.clone());
        streams.push((scope.clone(), reader, policies));
    }
    let ctx = Arc::new(make_context(stores));
    let controllers = streams.into_iter().map(|(scope, reader, policies)| {
        let secrets: Api<PartialObjectMeta<Secret>> = match &scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let secret_events = watcher(secrets, watcher::Config::default().any_semantic())
            .default_backoff()
            .touched_objects();
        let lookup = reader.clone();
        let ctx = ctx.clone();
        async move {
            info!(
                scope = scope.as_deref().unwrap_or("all namespaces"),
                "watching AccessKeyPolicies"
            );
            Controller::for_stream(policies, reader)
                .with_config(ControllerConfig::default().concurrency(concurrency))
                .watches_stream(secret_events, move |secret| {
                    // Policies in the Secret's namespace that reference it by name.
                    let namespace = secret.namespace();
                    let name = secret.name_any();
                    lookup
                        .state()
                        .into_iter()
                        .filter(|p| {
                            p.namespace() == namespace && p.spec.credentials_ref.name == name
                        })
                        .map(|p| ObjectRef::from(p.as_ref()))
                        .collect::<Vec<_>>()
                })
                .shutdown_on_signal()
                .run(reconcile, error_policy, ctx)
                .for_each(|result| async move {
                    if let Err(err) = result {
                        warn!(error = %err, "controller error");
                    }
                })
                .await;
        }
    });
    join_all(controllers).await;
}
