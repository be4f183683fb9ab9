//! The finalizer: added for `deletionPolicy: Restore`, removed for `Orphan`;
//! on deletion the original interval is put back (as `decide::restore`
//! decides), then the object is released.

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::controller::Action,
};
use serde_json::json;
use tracing::warn;

use super::{
    context::Context, error::ReconcileError, inputs::read_credentials, reconciler::publish_events,
};
use crate::{
    crd::{AccessKeyPolicy, DeletionPolicy, FINALIZER},
    decide::restore::{self, Release},
};

/// Adds the finalizer for `Restore`, removes it for `Orphan`; returns the
/// object's new resourceVersion when it changed it.
pub(super) async fn ensure_finalizer(
    policy: &AccessKeyPolicy,
    api: &Api<AccessKeyPolicy>,
) -> Result<Option<String>, ReconcileError> {
    let want = policy.spec.deletion_policy == DeletionPolicy::Restore;
    let has = policy.finalizers().iter().any(|f| f == FINALIZER);
    if want == has {
        return Ok(None);
    }
    set_finalizer(policy, api, want).await.map(Some)
}

/// Deletion: with `Restore`, put the original interval back, then release the object.
pub(super) async fn finalize(
    policy: &AccessKeyPolicy,
    ctx: &Context,
    api: &Api<AccessKeyPolicy>,
    namespace: &str,
) -> Result<Action, ReconcileError> {
    if !policy.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let spec = &policy.spec;
    let mut release = None;
    if let Some(days) = restore::interval_to_restore(spec, policy.status.as_ref()) {
        release = Some(
            match read_credentials(ctx, namespace, &spec.credentials_ref).await? {
                (_, Some(credentials)) => {
                    let result = ctx
                        .cloudflare
                        .update_interval(&credentials, &spec.account_id, days)
                        .await;
                    let release = restore::after_restore(days, &spec.account_id, result.clone());
                    if let (Release::Retry, Err(err)) = (&release, result) {
                        return Err(ReconcileError::Restore(err));
                    }
                    release
                }
                (_, None) => restore::without_credentials(),
            },
        );
    }
    set_finalizer(policy, api, false).await?;
    release_claim(ctx, policy, namespace).await;
    if let Some(Release::Now(reason, note)) = release {
        publish_events(ctx, policy, vec![(reason, note)]).await;
    }
    Ok(Action::await_change())
}

/// Gives up the policy's account claim, if it holds it, so another policy
/// may take the account at once; a failure only leaves the claim to lapse.
pub(super) async fn release_claim(ctx: &Context, policy: &AccessKeyPolicy, namespace: &str) {
    let me = format!("{namespace}/{}", policy.name_any());
    if let Err(err) = ctx.claims.release(&policy.spec.account_id, &me).await {
        warn!(reason = err.reason(), error = %err, "could not release the account's claim");
    }
}

/// Sets our finalizer's presence on the stored object. The cache keeps only
/// our finalizer (`cached::slim`), so the full list is read fresh; the write
/// carries that read's resourceVersion, and a read newer than the cached copy
/// the pass decided on is a stale cache (the pass runs again on the new one).
async fn set_finalizer(
    policy: &AccessKeyPolicy,
    api: &Api<AccessKeyPolicy>,
    ours: bool,
) -> Result<String, ReconcileError> {
    let stored = api.get(&policy.name_any()).await?;
    if stored.resource_version() != policy.resource_version() {
        return Err(ReconcileError::StaleCache);
    }
    let mut finalizers: Vec<String> = stored
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if ours {
        finalizers.push(FINALIZER.to_owned());
    }
    // The resourceVersion makes this fail rather than overwrite someone else's finalizer change.
    let patch = json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": stored.resource_version(),
        }
    });
    let updated = api
        .patch(
            &policy.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(ReconcileError::from_write)?;
    Ok(updated.resource_version().unwrap_or_default())
}
