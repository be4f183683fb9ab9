//! Wiring: one controller per watched scope (all namespaces, or each listed
//! one), policies filtered so the operator's own status writes do not
//! retrigger it, metadata-only watches of Secrets (when asked for), a full
//! pass whenever this replica becomes the leader, and graceful shutdown.

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use futures::{Stream, StreamExt, TryStreamExt, future::join_all, stream::BoxStream};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::ObjectMeta,
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
    cached::{ChangeFilter, slim},
    context::Context,
    drift_checks::DriftChecks,
    finalize::release_claim,
    first_list,
    reconciler::{error_policy, reconcile},
    secret_index::SecretIndex,
};
use crate::crd::AccessKeyPolicy;

/// Policies per page of the initial list (and of every relist). A page costs
/// about five times its JSON while it is decoded (measured: 400 policies
/// padded to 256 KiB, pages of 50: 82-87 MiB peak; pages of 10: 36-37 MiB,
/// 22 MiB without them), and an object can be as large as the API server's
/// 1.5 MiB request limit (labels and finalizers have no total limit): ten
/// such objects still fit well under the chart's 128 MiB.
pub const POLICY_PAGE_SIZE: u32 = 10;

/// What to watch and how.
pub struct RunOptions<S, G, R> {
    /// Namespaces to watch; empty watches all.
    pub namespaces: Vec<String>,
    /// Only policies matching this label selector.
    pub label_selector: Option<String>,
    /// Watch Secrets (metadata only) so a changed Secret starts a pass at once;
    /// otherwise it is read at each policy's next pass.
    pub watch_secrets: bool,
    /// Reconciles at once, per scope.
    pub concurrency: u16,
    /// Completes when the operator should stop taking work.
    pub shutdown: S,
    /// Yields each time this replica becomes the leader.
    pub leadership_gained: G,
    /// Called once every cache has synced.
    pub on_ready: R,
}

/// Runs the controllers until `shutdown` completes and in-flight reconciles finish.
pub async fn run<S, G, R>(
    client: kube::Client,
    options: RunOptions<S, G, R>,
    make_context: impl FnOnce(Vec<Store<AccessKeyPolicy>>, DriftChecks) -> Context,
) where
    S: Future<Output = ()> + Send + Sync + Clone + 'static,
    G: Stream<Item = ()> + Send + 'static,
    R: FnOnce() + Send + 'static,
{
    let scopes: Vec<Option<String>> = if options.namespaces.is_empty() {
        vec![None]
    } else {
        options.namespaces.iter().cloned().map(Some).collect()
    };
    // Paged consistent lists, never `any_semantic()`: a resourceVersion=0 list
    // is served whole from the watch cache, ignoring `limit` (seen on 1.36.3),
    // so one tenant's padded policies would all be decoded at once. (Streaming
    // lists would bound it too, but need the WatchList feature, which 1.33,
    // the oldest supported version, may lack.)
    let mut config = watcher::Config::default().page_size(POLICY_PAGE_SIZE);
    if let Some(selector) = &options.label_selector {
        config = config.labels(selector);
    }
    let (make_context_stores, mut per_scope) = (Vec::new(), Vec::new());
    let mut stores = make_context_stores;
    let mut drift_checks = DriftChecks::default();
    for scope in &scopes {
        let api: Api<AccessKeyPolicy> = scoped_api(&client, scope);
        let (reader, writer) = reflector::store();
        stores.push(reader.clone());
        let due = drift_checks.add_scope(scope.clone());
        per_scope.push((scope.clone(), reader, api, writer, due));
    }
    let ctx = Arc::new(make_context(stores.clone(), drift_checks));

    // Readiness: every scope's policy watch has delivered its first full list.
    // (Counted from the watch events: `Store::wait_until_ready` wakes only one
    // of several waiters, and the controller itself is one.)
    let unsynced = Arc::new(AtomicUsize::new(scopes.len()));
    let on_ready = Arc::new(Mutex::new(Some(options.on_ready)));
    let synced_ctx = ctx.clone();
    let synced = move || {
        if unsynced.fetch_sub(1, Ordering::AcqRel) == 1 {
            info!("caches synced");
            // Passes ran while the lists came; what they read of the whole
            // cache (namespaces, demands) saw part of it.
            synced_ctx.cache_complete();
            if let Some(ready) = on_ready.lock().ok().and_then(|mut r| r.take()) {
                ready();
            }
        }
    };

    // One "became leader" stream, fanned out to every scope.
    let (gained_tx, _) = tokio::sync::broadcast::channel::<()>(4);
    let fan_out = gained_tx.clone();
    let (gained_metrics, gained_stores) = (ctx.metrics.clone(), stores.clone());
    tokio::spawn(options.leadership_gained.for_each(move |()| {
        // Every cached policy now waits for the pass the new leader gives it.
        for policy in gained_stores.iter().flat_map(Store::state) {
            gained_metrics.queued(&policy.namespace().unwrap_or_default(), &policy.name_any());
        }
        let _ = fan_out.send(());
        async {}
    }));

    let controllers = per_scope
        .into_iter()
        .map(|(scope, reader, api, writer, due)| {
            let secret_metrics = ctx.metrics.clone();
            let watch_ctx = ctx.clone();
            let synced = synced.clone();
            let first_list_seen = AtomicBool::new(false);
            let listed = watcher(api, config.clone())
                .default_backoff()
                // Only what the reconcile reads is cached (managedFields alone are most of an object).
                .modify(slim)
                .inspect(move |event| {
                    if matches!(event, Ok(watcher::Event::InitDone))
                        && !first_list_seen.swap(true, Ordering::AcqRel)
                    {
                        synced()
                    }
                });
            // Passes start as the first list's pages come, not after its last one.
            let policies = first_list::incremental(listed)
                .reflect(writer)
                // What deserves a pass triggers one, by reference (see `by_name`).
                .filter_map({
                    let mut changes = ChangeFilter::default();
                    let cached = reader.clone();
                    move |event| {
                        futures::future::ready(policy_event(
                            &watch_ctx,
                            &mut changes,
                            &cached,
                            event,
                        ))
                    }
                });
            let secret_events = if options.watch_secrets {
                secret_changes(scoped_api(&client, &scope), ctx.secret_index.clone())
            } else {
                futures::stream::empty().boxed()
            };
            let lookup = reader.clone();
            let became_leader =
                futures::stream::unfold(gained_tx.subscribe(), |mut rx| async move {
                    loop {
                        match rx.recv().await {
                            Ok(()) => return Some(((), rx)),
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                });
            let ctx = ctx.clone();
            let shutdown = options.shutdown.clone();
            let concurrency = options.concurrency;
            async move {
                info!(
                    scope = scope.as_deref().unwrap_or("all namespaces"),
                    "watching AccessKeyPolicies"
                );
                let no_objects =
                    futures::stream::empty::<Result<AccessKeyPolicy, watcher::Error>>();
                Controller::for_stream(no_objects, reader)
                    .reconcile_on(policies)
                    .reconcile_on(due)
                    .with_config(ControllerConfig::default().concurrency(concurrency))
                    .watches_stream(secret_events, move |secret| {
                        // Policies in the Secret's namespace that reference it by name.
                        let namespace = secret.namespace();
                        let name = secret.name_any();
                        // Filtered under the store's lock: an unrelated Secret copies nothing.
                        lookup
                            .state_filter(|p| {
                                p.metadata.namespace == namespace
                                    && p.spec.credentials_ref.name == name
                            })
                            .iter()
                            .map(|p| {
                                secret_metrics
                                    .queued(&p.namespace().unwrap_or_default(), &p.name_any());
                                by_name(p)
                            })
                            .collect::<Vec<_>>()
                    })
                    .reconcile_all_on(became_leader)
                    .graceful_shutdown_on(shutdown)
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

/// One event of a scope's policy watch, after the cache took it: the
/// bookkeeping it asks for, and the pass it triggers, if any.
fn policy_event(
    ctx: &Arc<Context>,
    changes: &mut ChangeFilter,
    cached: &Store<AccessKeyPolicy>,
    event: Result<watcher::Event<AccessKeyPolicy>, watcher::Error>,
) -> Option<ObjectRef<AccessKeyPolicy>> {
    match event {
        Ok(watcher::Event::Apply(policy) | watcher::Event::InitApply(policy)) => {
            ctx.own_writes.seen(&policy);
            if !changes.changed(&policy) {
                return None;
            }
            let namespace = policy.namespace().unwrap_or_default();
            ctx.metrics.queued(&namespace, &policy.name_any());
            Some(by_name(&policy))
        }
        // A deleted policy leaves no per-policy series, record or timer behind.
        Ok(watcher::Event::Delete(policy)) => {
            let (namespace, name) = (policy.namespace().unwrap_or_default(), policy.name_any());
            ctx.metrics.forget_policy(&namespace, &name);
            ctx.own_writes.forget(&policy);
            ctx.drift_checks.cancel(&namespace, &name);
            changes.forget(&policy);
            if ctx.is_leader() {
                // Gone (without a finalizer to run): free its account claim.
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    release_claim(&ctx, &policy, &namespace).await;
                });
            }
            None
        }
        // A relist ended: policies deleted meanwhile left the cache silently.
        Ok(watcher::Event::InitDone) => {
            changes.keep_only(&cached.state());
            None
        }
        Ok(watcher::Event::Init) => None,
        Err(err) => {
            warn!(error = %err, "policy watch error");
            None
        }
    }
}

/// A policy's reference by namespace and name only. kube's scheduler keeps
/// each pending pass's reference twice (its queue and its index), one pass
/// per policy; a reference built from the object itself also carries its uid
/// and resourceVersion, which every lookup ignores, about 130 bytes more per
/// policy at rest (docs/benchmarks.md). The pass itself reads the cached
/// object, found by namespace and name.
fn by_name(policy: &AccessKeyPolicy) -> ObjectRef<AccessKeyPolicy> {
    let name = policy.metadata.name.as_deref().unwrap_or_default();
    match policy.metadata.namespace.as_deref() {
        Some(namespace) => ObjectRef::new(name).within(namespace),
        None => ObjectRef::new(name),
    }
}

/// Changed Secrets, as their name and namespace only. The watch is
/// metadata-only (no Secret data crosses the wire), and each object is cut
/// down to its name and namespace as soon as it is decoded: nothing else is
/// used, and annotations such as `kubectl.kubernetes.io/last-applied-configuration`
/// hold the data of Secrets written with `kubectl apply`.
fn secret_changes(
    secrets: Api<PartialObjectMeta<Secret>>,
    secret_index: Arc<SecretIndex>,
) -> BoxStream<'static, Result<PartialObjectMeta<Secret>, watcher::Error>> {
    // `Api<PartialObjectMeta<_>>` asks the API server for metadata only.
    watcher(secrets, watcher::Config::default().any_semantic())
        .default_backoff()
        .touched_objects()
        .map_ok(slim_secret)
        // A changed Secret may hold another token: until a pass reads it,
        // no pass is put off on the budget of the token it held before.
        .inspect_ok(move |secret| {
            secret_index.forget(&format!(
                "{}/{}",
                secret.namespace().unwrap_or_default(),
                secret.name_any()
            ));
        })
        .boxed()
}

/// A Secret's metadata cut down to what the watch uses: name and namespace.
fn slim_secret(secret: PartialObjectMeta<Secret>) -> PartialObjectMeta<Secret> {
    PartialObjectMeta {
        types: None,
        metadata: ObjectMeta {
            name: secret.metadata.name,
            namespace: secret.metadata.namespace,
            ..ObjectMeta::default()
        },
        _phantom: std::marker::PhantomData,
    }
}

fn scoped_api<K>(client: &kube::Client, scope: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_secret_keeps_only_its_name_and_namespace() {
        let secret: PartialObjectMeta<Secret> = serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": {
                "name": "cloudflare-api",
                "namespace": "team-a",
                "resourceVersion": "7",
                "labels": {"app": "x"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration":
                        "{\"data\":{\"apiToken\":\"dG9rZW4=\"}}"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            }
        }))
        .expect("metadata");
        let slim = slim_secret(secret);
        assert_eq!(
            serde_json::to_value(&slim.metadata).expect("json"),
            serde_json::json!({"name": "cloudflare-api", "namespace": "team-a"})
        );
        assert!(slim.types.is_none());
    }
}
