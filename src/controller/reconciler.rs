//! One reconcile, in the order the design fixes: deletion, suspend, Secret,
//! ownership, GET, PUT, rotate request, status. Decisions come from
//! [`crate::reconcile`]; this file only reads, calls and writes.

use std::{sync::Arc, time::Duration};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::controller::Action,
};
use rand::Rng;
use serde_json::json;
use tracing::{debug, info, warn};

use super::{
    context::Context,
    events::EventReason,
    pause::{PausePoint, pause_point},
};
use crate::{
    cloudflare::{CloudflareError, Credentials},
    crd::{
        AccessKeyPolicy, AccessKeyPolicyStatus, DeletionPolicy, FINALIZER, ManagementPolicy,
        PendingRotation, ReadyReason, RotateOutcome,
    },
    metrics::PolicySnapshot,
    reconcile::{
        AccountClaim, AccountClock, RotateRequest, RotationStep, SecretError, after_refusal,
        credentials_from_secret, owner_of, plan_account,
        status::{record_account, set_ready, set_synced},
        wait_after_refusal,
    },
};

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
}

impl ReconcileError {
    /// A stable reason for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoNamespace => "NoNamespace",
            Self::Kubernetes(_) => "KubernetesError",
            Self::Restore(_) => "RestoreFailed",
            Self::StaleCache => "StaleCache",
        }
    }

    /// A failed write: 409 means our copy was stale.
    fn from_write(err: kube::Error) -> Self {
        match err {
            kube::Error::Api(status) if status.code == 409 => Self::StaleCache,
            other => Self::Kubernetes(other),
        }
    }
}

/// Why the credentials could not be had.
enum CredentialsProblem {
    Missing(String),
    Invalid(SecretError),
}

/// Everything one pass decides to tell the user.
struct Pass<'a> {
    policy: &'a AccessKeyPolicy,
    ctx: &'a Context,
    api: Api<AccessKeyPolicy>,
    written: AccessKeyPolicyStatus,
    status: AccessKeyPolicyStatus,
    /// The version of the object the decisions were made on: every status write
    /// carries it, so a write based on a stale cache fails instead of landing.
    resource_version: Option<String>,
    /// The versions this pass's writes replaced.
    replaced: Vec<String>,
    events: Vec<(EventReason, String)>,
    now: Timestamp,
    /// A rotation held until the account's clock allows it: look again then.
    hold: Option<Duration>,
    /// The `resourceVersion` of the Secret this pass read credentials from.
    secret_version: Option<String>,
}

/// Reconciles one policy (only on the leader), recording metrics. Every log
/// line inside carries the policy's namespace and name.
#[tracing::instrument(name = "reconcile", skip_all, fields(namespace = policy.metadata.namespace.as_deref().unwrap_or_default(), name = policy.metadata.name.as_deref().unwrap_or_default()))]
pub async fn reconcile(
    policy: Arc<AccessKeyPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    if !ctx.is_leader() {
        // Standby: caches stay warm; becoming leader reconciles everything.
        return Ok(Action::await_change());
    }
    let started = std::time::Instant::now();
    match reconcile_policy(&policy, &ctx).await {
        Ok((action, reason)) => {
            ctx.metrics.reconciled(true, &reason, started.elapsed());
            Ok(action)
        }
        Err(err) => {
            ctx.metrics
                .reconciled(false, err.reason(), started.elapsed());
            Err(err)
        }
    }
}

/// Added to a rotation hold: the account's clock must have passed the
/// instant, and the `Date` header only shows whole seconds.
const HOLD_MARGIN: Duration = Duration::from_millis(100);

/// How soon to look again at a policy whose cached copy predates our last write.
const CACHE_CATCH_UP: Duration = Duration::from_millis(200);

/// Longest a pass may wait for its credential's budget while holding a worker.
/// Beyond it the pass is put off until its turn, so one busy credential (or
/// one blocked by a 429) cannot occupy every worker while other credentials'
/// policies wait in the queue.
const BUDGET_HOLD: Duration = Duration::from_millis(250);

/// How long to put off a pass whose credential's budget is reserved beyond
/// [`BUDGET_HOLD`]; decided from the credential its Secret was last seen holding.
fn budget_deferral(policy: &AccessKeyPolicy, ctx: &Context, namespace: &str) -> Option<Duration> {
    if policy.spec.suspend {
        return None;
    }
    let secret = format!("{namespace}/{}", policy.spec.credentials_ref.name);
    ctx.cloudflare.budgets().defer_secret(&secret, BUDGET_HOLD)
}

/// Runs one pass; returns the requeue action and the Ready reason it left.
async fn reconcile_policy(
    policy: &Arc<AccessKeyPolicy>,
    ctx: &Arc<Context>,
) -> Result<(Action, String), ReconcileError> {
    let namespace = policy.namespace().ok_or(ReconcileError::NoNamespace)?;
    let api: Api<AccessKeyPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    if policy.metadata.deletion_timestamp.is_some() {
        let action = finalize(policy, ctx, &api, &namespace).await?;
        return Ok((action, "Finalized".to_owned()));
    }
    if ctx.own_writes.cache_is_behind(policy) {
        // Our own write has not come back through the watch yet.
        debug!("the cache is behind this replica's last write; pass put off");
        return Ok((Action::requeue(CACHE_CATCH_UP), "CacheBehind".to_owned()));
    }
    if let Some(wait) = budget_deferral(policy, ctx, &namespace) {
        ctx.metrics.budget_deferral();
        debug!(
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "the credential's budget is reserved ahead; pass put off"
        );
        return Ok((Action::requeue(wait), "BudgetDeferred".to_owned()));
    }
    // The versions this pass's writes replace, so the next pass can tell a stale cache.
    let mut replaced = Vec::new();
    let resource_version = match ensure_finalizer(policy, ctx, &api).await? {
        Some(patched) => {
            replaced.extend(policy.resource_version());
            Some(patched)
        }
        None => policy.resource_version(),
    };

    let written = policy.status.clone().unwrap_or_default();
    let mut pass = Pass {
        policy,
        ctx,
        api,
        status: written.clone(),
        written,
        resource_version,
        replaced,
        events: Vec::new(),
        now: Timestamp::now(),
        hold: None,
        secret_version: None,
    };
    let result = match pass.run(&namespace).await {
        Ok(action) => pass.write_status().await.map(|()| action),
        Err(err) => Err(err),
    };
    ctx.own_writes
        .wrote(policy, std::mem::take(&mut pass.replaced));
    let action = result?;
    let reason = pass.record_metrics(&namespace);
    pass.publish_events().await;
    Ok((action, reason))
}

impl Pass<'_> {
    async fn run(&mut self, namespace: &str) -> Result<Action, ReconcileError> {
        let spec = &self.policy.spec;
        let generation = self.policy.metadata.generation;
        self.status.observed_generation = generation;

        if spec.suspend {
            self.ready(
                ReadyReason::Suspended,
                "spec.suspend is true: no Cloudflare calls are made",
            );
            return Ok(Action::await_change());
        }

        let credentials = match read_credentials(self.ctx, namespace, &spec.credentials_ref.name)
            .await?
        {
            Ok((credentials, version)) => {
                self.secret_version = Some(version);
                credentials
            }
            Err(problem) => {
                let (reason, message) = match problem {
                    CredentialsProblem::Missing(name) => (
                        ReadyReason::SecretNotFound,
                        format!(
                            "Secret {name} not found in namespace {namespace}; create it with key apiToken (or apiKey and email)"
                        ),
                    ),
                    CredentialsProblem::Invalid(err) => {
                        (ReadyReason::InvalidCredentials, err.to_string())
                    }
                };
                self.fail(reason, EventReason::CredentialsError, &message);
                return Ok(Action::requeue(self.check_interval()));
            }
        };

        if spec.management_policy == ManagementPolicy::Manage
            && let Some(owner) = self.other_owner()
        {
            let message = format!(
                "account {} is managed by {owner} (the oldest Manage-mode policy for it); this policy makes no Cloudflare calls",
                spec.account_id
            );
            self.fail(ReadyReason::Conflict, EventReason::Conflict, &message);
            return Ok(Action::requeue(self.ctx.settings.drift_check_floor));
        }

        let cloudflare = &self.ctx.cloudflare;
        let account_id = spec.account_id.as_str();
        // More checks on this credential than its budget serves: say so (metric,
        // Ready message, one event); the budget then spreads the checks out.
        let secret_key = format!("{namespace}/{}", spec.credentials_ref.name);
        if cloudflare
            .budgets()
            .record_secret(&secret_key, &credentials)
        {
            // Who uses which credential changed: demands computed before are stale.
            self.ctx.forget_demand();
        }
        let demand = self.ctx.credential_demand(&credentials);
        let late = demand.overcommitted().then(|| {
            self.ctx.metrics.late_check();
            format!(
                "; drift checks run late: {} policies share this credential, needing {:.2} checks/s where its budget allows {:.2} requests/s, so each is checked about every {}s instead of every {}s; spread policies over more tokens or raise --budget-requests",
                demand.policies,
                demand.checks_per_second,
                demand.capacity_per_second,
                demand.effective_interval().as_secs(),
                self.check_interval().as_secs()
            )
        });
        // Credentials Cloudflare refused: ask again only once their wait is over.
        let last_refusal = self.ctx.refusals.get(&self.policy_key());
        if let Some(version) = &self.secret_version
            && let Some(wait) =
                wait_after_refusal(last_refusal.as_ref(), version, std::time::Instant::now())
        {
            debug!(
                wait_s = wait.as_secs(),
                "credentials refused before and unchanged; not asking again yet"
            );
            let message = last_refusal.map(|r| r.message).unwrap_or_default();
            self.ready(ReadyReason::InvalidCredentials, &message);
            return Ok(Action::requeue(wait));
        }
        let mut account = match cloudflare.get_config(&credentials, account_id).await {
            Ok(account) => {
                if last_refusal.is_some() {
                    self.ctx.refusals.forget(&self.policy_key());
                }
                account
            }
            Err(err) => return Ok(self.cloudflare_failed(&err, "reading the account")),
        };
        let request = RotateRequest::from_annotations(self.policy.annotations());
        let clock = AccountClock {
            served_at: account.served_at,
            operator_now: self.now,
        };
        let plan = plan_account(spec, &self.status, request.as_ref(), &account, clock);
        if let Some(original) = plan.capture_original {
            self.status.original_key_rotation_interval_days = Some(original);
        }

        if let Some(days) = plan.update_interval {
            match cloudflare
                .update_interval(&credentials, account_id, days)
                .await
            {
                Ok(updated) => {
                    let spec_changed = self.written.observed_generation != generation;
                    let (reason, message) = if spec_changed
                        || self.written.account_key_rotation_interval_days.is_none()
                    {
                        (
                            EventReason::IntervalUpdated,
                            format!(
                                "set the account's rotation interval to {days} days (was {})",
                                describe_days(account.key_rotation_interval_days)
                            ),
                        )
                    } else {
                        (
                            EventReason::DriftCorrected,
                            format!(
                                "the account's interval had drifted to {}; set it back to {days} days",
                                describe_days(account.key_rotation_interval_days)
                            ),
                        )
                    };
                    info!(days, "rotation interval updated");
                    self.events.push((reason, message));
                    account = merge_account(account, updated);
                }
                Err(err) => return Ok(self.cloudflare_failed(&err, "setting the interval")),
            }
        }
        record_account(&mut self.status, &account);

        if let Some(action) = self.rotate(plan.rotation, &credentials, account_id).await? {
            return Ok(action);
        }

        let wanted = i64::from(spec.key_rotation_interval_days);
        let actual = self.status.account_key_rotation_interval_days;
        set_synced(&mut self.status, wanted, actual, generation, self.now);
        let mut message = match spec.management_policy {
            ManagementPolicy::Manage => format!("the account rotates its key every {wanted} days"),
            ManagementPolicy::Observe => {
                "the account was read (Observe mode: no writes)".to_owned()
            }
        };
        if spec.drift_check_interval.as_duration() < self.ctx.settings.drift_check_floor {
            message.push_str(&format!(
                "; checked every {}s, the operator's floor, not every {}",
                self.ctx.settings.drift_check_floor.as_secs(),
                spec.drift_check_interval
            ));
        }
        if let Some(late) = late {
            let was_late = self
                .written
                .conditions
                .iter()
                .any(|c| c.message.contains("drift checks run late"));
            if !was_late {
                self.events.push((
                    EventReason::BudgetExhausted,
                    late.trim_start_matches("; ").to_owned(),
                ));
            }
            message.push_str(&late);
        }
        self.ready(ReadyReason::Reconciled, &message);
        Ok(Action::requeue(
            self.hold.unwrap_or_else(|| jittered(self.check_interval())),
        ))
    }

    /// Handles the rotate request. Returns an action when the reconcile must stop here.
    async fn rotate(
        &mut self,
        step: RotationStep,
        credentials: &Credentials,
        account_id: &str,
    ) -> Result<Option<Action>, ReconcileError> {
        match step {
            RotationStep::Idle => Ok(None),
            RotationStep::Hold { request, wait } => {
                // Read the account again once its clock has left the last
                // rotation's second behind (a few seconds at most).
                debug!(
                    request,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "rotation held: the last rotation is too recent to tell a new one from it"
                );
                self.hold = Some(wait + HOLD_MARGIN);
                Ok(None)
            }
            RotationStep::Refuse {
                request,
                outcome,
                message,
            } => {
                self.handled(request, outcome);
                self.events.push((EventReason::RotationRefused, message));
                Ok(None)
            }
            RotationStep::Confirmed { request } => {
                self.events.push((EventReason::Rotated, format!("rotation for request {request:?} confirmed: the account's last rotation is {}", describe_time(self.status.last_key_rotation_at))));
                self.handled(request, RotateOutcome::Rotated);
                Ok(None)
            }
            RotationStep::Begin { request, baseline } => {
                // Record the request and its baseline before the POST, so a crash
                // after it cannot lead to a second one.
                self.status.pending_rotation = Some(PendingRotation {
                    request: request.clone(),
                    baseline_key_rotation_at: baseline,
                });
                self.write_status().await?;
                pause_point(PausePoint::RotateBeforePost).await;
                let result = self.ctx.cloudflare.rotate(credentials, account_id).await;
                pause_point(PausePoint::RotateAfterPost).await;
                match result {
                    Ok(rotated) => {
                        let merged = merge_account(account_from_status(&self.status), rotated);
                        record_account(&mut self.status, &merged);
                        info!(request, "key rotated");
                        self.events.push((
                            EventReason::Rotated,
                            format!("rotated the signing key for request {request:?}"),
                        ));
                        self.handled(request, RotateOutcome::Rotated);
                        Ok(None)
                    }
                    // Refused outright: nothing happened, the request is done.
                    Err(
                        err @ (CloudflareError::Authentication { .. }
                        | CloudflareError::AccountNotFound { .. }
                        | CloudflareError::Rejected { .. }),
                    ) => {
                        self.handled(request, RotateOutcome::Failed);
                        Ok(Some(self.cloudflare_failed(&err, "rotating the key")))
                    }
                    // Unknown whether it happened: keep it pending; the next pass asks the account.
                    Err(err) => Ok(Some(self.cloudflare_failed(&err, "rotating the key"))),
                }
            }
        }
    }

    fn handled(&mut self, request: String, outcome: RotateOutcome) {
        let outcome_label = serde_json::to_value(outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.ctx.metrics.rotation("annotation", &outcome_label);
        self.status.last_handled_rotate_request = Some(request);
        self.status.last_rotate_outcome = Some(outcome);
        self.status.pending_rotation = None;
    }

    fn ready(&mut self, reason: ReadyReason, message: &str) {
        set_ready(
            &mut self.status,
            reason,
            message,
            self.policy.metadata.generation,
            self.now,
        );
    }

    /// Sets a failing Ready and queues an event if the reason is new.
    fn fail(&mut self, reason: ReadyReason, event: EventReason, message: &str) {
        let previous = self
            .written
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| (c.reason.clone(), c.message.clone()));
        if previous != Some((reason.as_str().to_owned(), message.to_owned())) {
            self.events.push((event, message.to_owned()));
        }
        self.ready(reason, message);
    }

    fn cloudflare_failed(&mut self, err: &CloudflareError, doing: &str) -> Action {
        warn!(reason = err.reason(), error = %err, "Cloudflare call failed while {doing}");
        let event = if err.ready_reason() == ReadyReason::InvalidCredentials {
            EventReason::CredentialsError
        } else {
            EventReason::ApiError
        };
        let hint = match err.ready_reason() {
            ReadyReason::InvalidCredentials => {
                "; check the token and its permission \"Access: Organizations, Identity Providers, and Groups Write\""
            }
            ReadyReason::AccountNotFound => {
                "; check spec.accountId and that Access is enabled on the account"
            }
            _ => "",
        };
        let message = format!("{doing}: {err}{hint}");
        self.fail(err.ready_reason(), event, &message);
        if err.ready_reason() == ReadyReason::InvalidCredentials
            && let Some(version) = &self.secret_version
        {
            // Back off while the Secret stays the same (see `reconcile::refusal`).
            let key = self.policy_key();
            let refusal = after_refusal(
                self.ctx.refusals.get(&key).as_ref(),
                version,
                std::time::Instant::now(),
                self.check_interval(),
                &message,
            );
            let wait = refusal
                .retry_at
                .saturating_duration_since(std::time::Instant::now());
            self.ctx.refusals.put(&key, refusal);
            return Action::requeue(wait);
        }
        match err {
            CloudflareError::RateLimited { retry_after } => Action::requeue(*retry_after),
            _ if err.is_retryable() || matches!(err, CloudflareError::Malformed { .. }) => {
                Action::requeue(self.ctx.settings.drift_check_floor)
            }
            _ => Action::requeue(self.check_interval()),
        }
    }

    /// The owner of this policy's account, when it is another policy.
    fn other_owner(&self) -> Option<String> {
        let spec = &self.policy.spec;
        let claims: Vec<AccountClaim> = self
            .ctx
            .policies
            .iter()
            .flat_map(|store| store.state())
            .filter(|p| {
                p.spec.account_id == spec.account_id
                    && p.spec.management_policy == ManagementPolicy::Manage
                    && p.metadata.deletion_timestamp.is_none()
            })
            .chain(std::iter::once(Arc::new(self.policy.clone())))
            .filter_map(|p| {
                Some(AccountClaim {
                    created: p.metadata.creation_timestamp.as_ref()?.0,
                    namespace: p.namespace()?,
                    name: p.name_any(),
                })
            })
            .collect();
        let owner = owner_of(&claims)?;
        let me = (
            self.policy.namespace().unwrap_or_default(),
            self.policy.name_any(),
        );
        (owner.namespace != me.0 || owner.name != me.1)
            .then(|| format!("{}/{}", owner.namespace, owner.name))
    }

    /// `namespace/name`, the key of per-policy memory.
    fn policy_key(&self) -> String {
        format!(
            "{}/{}",
            self.policy.namespace().unwrap_or_default(),
            self.policy.name_any()
        )
    }

    fn check_interval(&self) -> Duration {
        self.policy
            .spec
            .drift_check_interval
            .as_duration()
            .max(self.ctx.settings.drift_check_floor)
    }

    /// Server-side apply of the status, only when it differs from what is stored.
    async fn write_status(&mut self) -> Result<(), ReconcileError> {
        if self.status == self.written {
            return Ok(());
        }
        let patch = json!({
            "apiVersion": "keyrotor.dev/v1alpha1",
            "kind": "AccessKeyPolicy",
            "metadata": {"resourceVersion": self.resource_version},
            "status": self.status,
        });
        let params = PatchParams::apply(&self.ctx.settings.field_manager).force();
        let updated = self
            .api
            .patch_status(&self.policy.name_any(), &params, &Patch::Apply(&patch))
            .await
            .map_err(ReconcileError::from_write)?;
        let before = std::mem::replace(&mut self.resource_version, updated.resource_version());
        self.replaced.extend(before);
        self.written = self.status.clone();
        Ok(())
    }

    /// Sets the per-policy gauges; returns the Ready reason.
    fn record_metrics(&self, namespace: &str) -> String {
        let ready = self.status.conditions.iter().find(|c| c.type_ == "Ready");
        self.ctx.metrics.policy(
            namespace,
            &self.policy.name_any(),
            PolicySnapshot {
                ready: ready.is_some_and(|c| c.status == "True"),
                interval_days: self.status.account_key_rotation_interval_days,
                last_rotation: self.status.last_key_rotation_at.map(|t| t.as_second()),
                next_rotation: self.status.next_key_rotation_at.map(|t| t.as_second()),
            },
        );
        ready.map_or_else(|| "Unknown".to_owned(), |c| c.reason.clone())
    }

    async fn publish_events(&mut self) {
        let reference = self.policy.object_ref(&());
        for (reason, note) in self.events.drain(..) {
            if let Err(err) = self.ctx.events.publish(reason, &note, &reference).await {
                warn!(reason = reason.as_str(), error = %err, "could not publish event");
            }
        }
    }
}

/// Reads and validates the Secret, returning the credentials and the
/// Secret's `resourceVersion`. `Ok(Err(..))` is a user problem; `Err` a Kubernetes one.
async fn read_credentials(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Result<(Credentials, String), CredentialsProblem>, ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    // Read on demand and dropped after this pass: Secret data is never cached.
    let Some(secret) = secrets.get_opt(name).await? else {
        return Ok(Err(CredentialsProblem::Missing(name.to_owned())));
    };
    let version = secret.resource_version().unwrap_or_default();
    let data = secret.data.unwrap_or_default();
    Ok(credentials_from_secret(name, &data)
        .map(|credentials| (credentials, version))
        .map_err(CredentialsProblem::Invalid))
}

/// Adds the finalizer for `Restore`, removes it for `Orphan`; returns the
/// object's new resourceVersion when it changed it.
async fn ensure_finalizer(
    policy: &AccessKeyPolicy,
    ctx: &Context,
    api: &Api<AccessKeyPolicy>,
) -> Result<Option<String>, ReconcileError> {
    let want = policy.spec.deletion_policy == DeletionPolicy::Restore;
    let has = policy.finalizers().iter().any(|f| f == FINALIZER);
    if want == has {
        return Ok(None);
    }
    let mut finalizers: Vec<String> = policy
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if want {
        finalizers.push(FINALIZER.to_owned());
    }
    set_finalizers(policy, ctx, api, finalizers).await.map(Some)
}

async fn set_finalizers(
    policy: &AccessKeyPolicy,
    _ctx: &Context,
    api: &Api<AccessKeyPolicy>,
    finalizers: Vec<String>,
) -> Result<String, ReconcileError> {
    // The resourceVersion makes this fail rather than overwrite someone else's finalizer change.
    let patch = json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": policy.resource_version(),
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

/// Deletion: with `Restore`, put the original interval back, then release the object.
async fn finalize(
    policy: &AccessKeyPolicy,
    ctx: &Context,
    api: &Api<AccessKeyPolicy>,
    namespace: &str,
) -> Result<Action, ReconcileError> {
    if !policy.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let spec = &policy.spec;
    let original = policy
        .status
        .as_ref()
        .and_then(|s| s.original_key_rotation_interval_days);
    let reference = policy.object_ref(&());
    let mut event = None;
    if let (false, ManagementPolicy::Manage, Some(days)) =
        (spec.suspend, spec.management_policy, original)
    {
        match read_credentials(ctx, namespace, &spec.credentials_ref.name).await? {
            Ok((credentials, _)) => match ctx.cloudflare.update_interval(&credentials, &spec.account_id, days).await {
                Ok(_) => event = Some((EventReason::Restored, format!("put the original rotation interval of {days} days back on account {}", spec.account_id))),
                Err(err) if err.is_retryable() || matches!(err, CloudflareError::RateLimited { .. }) => {
                    return Err(ReconcileError::Restore(err));
                }
                Err(err) => event = Some((EventReason::ApiError, format!("could not restore the original interval ({err}); releasing the object anyway"))),
            },
            Err(_) => event = Some((EventReason::CredentialsError, "could not restore the original interval: the Secret is missing or invalid; releasing the object anyway".to_owned())),
        }
    }
    let finalizers: Vec<String> = policy
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(policy, ctx, api, finalizers).await?;
    if let Some((reason, note)) = event
        && let Err(err) = ctx.events.publish(reason, &note, &reference).await
    {
        warn!(error = %err, "could not publish event");
    }
    Ok(Action::await_change())
}

/// A write's response may omit fields; keep what the read said for those.
fn merge_account(
    before: crate::cloudflare::AccountKeyConfig,
    after: crate::cloudflare::AccountKeyConfig,
) -> crate::cloudflare::AccountKeyConfig {
    crate::cloudflare::AccountKeyConfig {
        key_rotation_interval_days: after
            .key_rotation_interval_days
            .or(before.key_rotation_interval_days),
        days_until_next_rotation: after
            .days_until_next_rotation
            .or(before.days_until_next_rotation),
        last_key_rotation_at: after.last_key_rotation_at.or(before.last_key_rotation_at),
        served_at: after.served_at.or(before.served_at),
    }
}

fn account_from_status(status: &AccessKeyPolicyStatus) -> crate::cloudflare::AccountKeyConfig {
    crate::cloudflare::AccountKeyConfig {
        key_rotation_interval_days: status.account_key_rotation_interval_days,
        days_until_next_rotation: status.days_until_next_rotation.map(|d| d as f64),
        last_key_rotation_at: status.last_key_rotation_at,
        served_at: None,
    }
}

fn describe_days(days: Option<i64>) -> String {
    days.map_or("unknown".to_owned(), |d| format!("{d} days"))
}

fn describe_time(at: Option<Timestamp>) -> String {
    at.map_or("unknown".to_owned(), |t| t.to_string())
}

/// ±10 % so that many policies created together do not check in lockstep.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::rng().random_range(0.9..=1.1))
}

/// Requeue after a Kubernetes failure.
pub fn error_policy(
    _policy: Arc<AccessKeyPolicy>,
    err: &ReconcileError,
    _ctx: Arc<Context>,
) -> Action {
    if matches!(err, ReconcileError::StaleCache) {
        // The watch brings the current object soon; try again shortly.
        tracing::debug!("stale cache, retrying");
        return Action::requeue(Duration::from_secs(1));
    }
    warn!(reason = err.reason(), error = %err, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}
