//! One reconcile: fetch the inputs, let [`crate::decide`] decide, perform the
//! account writes in the decided order, write the status. The decisions
//! (status, events, requeue, which writes) all come from `decide`.

use std::{sync::Arc, time::Duration};

use jiff::Timestamp;
use kube::{Api, Resource, ResourceExt, runtime::controller::Action};
use rand::Rng;
use tracing::{debug, info, warn};

pub use super::error::ReconcileError;
use super::{
    context::Context,
    fair_share::TURNED_AWAY_RETRY,
    finalize::{ensure_finalizer, finalize},
    inputs::read_credentials,
    pause::{PausePoint, pause_point},
    status_writer::StatusWriter,
};
use crate::{
    cloudflare::BUDGET_HOLD,
    crd::{AccessKeyPolicy, AccessKeyPolicyStatus, ManagementPolicy},
    crd::{ConditionType, PlannedRotationReason, ReadyReason},
    decide::{
        self, AccountWrite, PassDecision, PassInput, Requeue, RotateRequest, SecretRead,
        WriteOutcome, claim_duration,
    },
    metrics::{ConditionState, PolicySnapshot},
};

/// Reconciles one policy (only on the leader), recording metrics. Every log
/// line inside carries the policy's namespace and name.
#[tracing::instrument(name = "reconcile", skip_all, fields(namespace = policy.metadata.namespace.as_deref().unwrap_or_default(), policy = policy.metadata.name.as_deref().unwrap_or_default()))]
pub async fn reconcile(
    policy: Arc<AccessKeyPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let namespace = policy.namespace().unwrap_or_default();
    // A worker has it: it no longer waits (on a standby too, which returns at once).
    ctx.metrics.started(&namespace, &policy.name_any());
    if !ctx.is_leader() {
        // Standby: caches stay warm; becoming leader reconciles everything.
        return Ok(Action::await_change());
    }
    let started = std::time::Instant::now();
    // A namespace over its share of the workers waits (see `fair_share`).
    let _slot = match &ctx.fair_share {
        Some(share) => {
            let elsewhere = ctx.policies_elsewhere(&namespace);
            let Some(slot) = share.enter(&namespace, elsewhere, started) else {
                ctx.metrics.fair_share_deferral();
                ctx.metrics.queued(&namespace, &policy.name_any());
                debug!("the namespace holds its share of the workers; pass put off");
                return Ok(Action::requeue(TURNED_AWAY_RETRY));
            };
            Some(slot)
        }
        None => None,
    };
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

/// How soon to look again at a policy whose cached copy predates our last write.
const CACHE_CATCH_UP: Duration = Duration::from_millis(200);

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
        ctx.metrics.queued(&namespace, &policy.name_any());
        return Ok((Action::requeue(CACHE_CATCH_UP), "CacheBehind".to_owned()));
    }
    let secret = secret_key(&namespace, policy);
    // Decided from the credential the Secret was last seen holding.
    let deferral = ctx
        .secret_index
        .credential_of(&secret)
        .filter(|_| !policy.spec.suspend)
        .and_then(|id| ctx.cloudflare.budgets().defer(id, BUDGET_HOLD));
    if let Some(wait) = deferral {
        ctx.metrics.budget_deferral();
        ctx.metrics.queued(&namespace, &policy.name_any());
        debug!(
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "the credential's budget is reserved ahead; pass put off"
        );
        return Ok((Action::requeue(wait), "BudgetDeferred".to_owned()));
    }
    let mut writer = StatusWriter {
        api,
        name: policy.name_any(),
        field_manager: ctx.settings.field_manager.clone(),
        written: policy.status.clone().unwrap_or_default(),
        resource_version: policy.resource_version(),
        replaced: Vec::new(),
    };
    if let Some(patched) = ensure_finalizer(policy, &writer.api).await? {
        writer.replaced.extend(policy.resource_version());
        writer.resource_version = Some(patched);
    }
    let result = run_pass(policy, ctx, &namespace, &secret, &mut writer).await;
    // The versions this pass's writes replaced, so the next pass can tell a stale cache.
    ctx.own_writes
        .wrote(policy, std::mem::take(&mut writer.replaced));
    let decision = result?;
    if let Some(wait) = decision.put_off {
        // A Cloudflare call had no budget slot soon enough: nothing was sent,
        // the status stays; back at the slot, the worker free meanwhile.
        ctx.metrics.budget_deferral();
        ctx.metrics.queued(&namespace, &policy.name_any());
        debug!(
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "a Cloudflare call was put off on its budget; pass put off"
        );
        publish_events(ctx, policy, decision.events).await;
        return Ok((Action::requeue(wait), "BudgetDeferred".to_owned()));
    }

    let key = format!("{namespace}/{}", policy.name_any());
    ctx.memory
        .remember(&key, &decision.credentials, decision.late_reported);
    if decision.late {
        ctx.metrics.late_check();
    }
    for outcome in &decision.handled {
        // The contract's spelling of the outcome (its serde name).
        let label = serde_json::to_value(outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        ctx.metrics.rotation("annotation", &label);
    }
    let reason = record_metrics(ctx, &namespace, policy, &decision.status);
    publish_events(ctx, policy, decision.events).await;
    let name = policy.name_any();
    let action = match decision.requeue {
        // The next check waits in the operator's own timers (`drift_checks`).
        Requeue::Check(interval) => {
            ctx.drift_checks
                .check_after(&namespace, &name, jittered(interval));
            Action::await_change()
        }
        Requeue::After(wait) => Action::requeue(wait),
        Requeue::AwaitChange => {
            ctx.drift_checks.cancel(&namespace, &name);
            Action::await_change()
        }
    };
    Ok((action, reason))
}

/// Fetches the inputs, decides, performs the decided writes in order.
async fn run_pass(
    policy: &AccessKeyPolicy,
    ctx: &Context,
    namespace: &str,
    secret: &str,
    writer: &mut StatusWriter,
) -> Result<PassDecision, ReconcileError> {
    let spec = &policy.spec;
    let (secret_read, credentials) = if spec.suspend {
        (SecretRead::Missing, None)
    } else {
        read_credentials(ctx, namespace, &spec.credentials_ref).await?
    };
    let demand = credentials.as_ref().map(|credentials| {
        if ctx.secret_index.record(secret, credentials) {
            // Who uses which credential changed: demands computed before are stale.
            ctx.demand_changed();
        }
        ctx.credential_demand(credentials)
    });
    let key = format!("{namespace}/{}", policy.name_any());
    let memory = ctx.memory.get(&key);
    let mut input = PassInput {
        namespace,
        spec,
        written: &writer.written,
        generation: policy.metadata.generation,
        request: RotateRequest::from_annotations(policy.annotations()),
        secret: secret_read,
        // Known once this policy's credentials have read the account.
        owner: None,
        demand,
        was_late: memory.late,
        refusal: memory.refusal,
        now: Timestamp::now(),
        instant: std::time::Instant::now(),
        drift_check_floor: ctx.settings.drift_check_floor,
        min_rotation_cooldown: ctx.settings.min_rotation_cooldown,
    };
    let mut decision = decide::pass(&input, None);
    let Some(credentials) = credentials else {
        writer.write(&decision.status).await?;
        return Ok(decision);
    };
    let cloudflare = &ctx.cloudflare;
    let account = spec.account_id.as_str();
    if decision.read_account {
        let read = cloudflare.get_config(&credentials, account).await;
        if let Err(err) = &read
            && !err.is_put_off()
        {
            warn!(reason = err.reason(), error = %err, "Cloudflare call failed while reading the account");
        }
        if read.is_ok() && spec.management_policy == ManagementPolicy::Manage {
            // The credentials read the account: claim it, or learn who owns it.
            let duration = claim_duration(
                spec.drift_check_interval
                    .as_duration()
                    .max(ctx.settings.drift_check_floor),
                ctx.claims.floor(),
            );
            input.owner = ctx.claims.claim(account, &key, duration).await?;
            if let Some(owner) = &input.owner {
                info!(account, %owner, "the account is managed by another policy; no changes made");
            }
        }
        decision = decide::pass(&input, Some(read));
    }
    while let Some(write) = decision.writes.front().copied() {
        let outcome = match write {
            AccountWrite::PutInterval(days) => WriteOutcome::Put(
                cloudflare
                    .update_interval(&credentials, account, days)
                    .await,
            ),
            AccountWrite::PendingStatus => {
                writer.write(&decision.status).await?;
                pause_point(PausePoint::RotateBeforePost).await;
                WriteOutcome::PendingStatusWritten
            }
            AccountWrite::PostRotate => {
                let result = cloudflare.rotate(&credentials, account).await;
                pause_point(PausePoint::RotateAfterPost).await;
                WriteOutcome::Post(result)
            }
        };
        match (&outcome, write) {
            (WriteOutcome::Put(Err(err)) | WriteOutcome::Post(Err(err)), _)
                if !err.is_put_off() =>
            {
                warn!(reason = err.reason(), error = %err, ?write, "Cloudflare call failed");
            }
            (WriteOutcome::Put(Ok(_)), AccountWrite::PutInterval(days)) => {
                info!(days, "rotation interval updated");
            }
            (WriteOutcome::Post(Ok(_)), _) => {
                let request = decision
                    .status
                    .pending_rotation
                    .as_ref()
                    .map(|p| p.request.as_str());
                info!(request, "key rotated");
            }
            _ => {}
        }
        decision = decide::after_write(decision, outcome);
    }
    if decision.put_off.is_none() {
        writer.write(&decision.status).await?;
    }
    Ok(decision)
}

/// `namespace/secret-name` of the policy's Secret.
fn secret_key(namespace: &str, policy: &AccessKeyPolicy) -> String {
    format!("{namespace}/{}", policy.spec.credentials_ref.name)
}

/// Sets the per-policy series; returns the Ready reason.
fn record_metrics(
    ctx: &Context,
    namespace: &str,
    policy: &AccessKeyPolicy,
    status: &AccessKeyPolicyStatus,
) -> String {
    let ready_type = ConditionType::Ready.as_str();
    let mut conditions: Vec<ConditionState> = status
        .conditions
        .iter()
        .map(|c| ConditionState {
            type_: c.type_.as_str().into(),
            status: c.status.as_str().into(),
            reason: c.reason.as_str().into(),
        })
        .collect();
    if !conditions.iter().any(|c| &*c.type_ == ready_type) {
        // No verdict written yet: the state-set still has its Ready series.
        conditions.push(ConditionState {
            type_: ready_type.into(),
            status: "Unknown".into(),
            reason: ReadyReason::Reconciling.as_str().into(),
        });
    }
    let reason = conditions
        .iter()
        .find(|c| &*c.type_ == ready_type)
        .map_or_else(|| "Unknown".to_owned(), |c| c.reason.to_string());
    ctx.metrics.policy(
        namespace,
        &policy.name_any(),
        PolicySnapshot {
            conditions,
            interval_days: status.account_key_rotation_interval_days,
            last_rotation: status.last_key_rotation_at.map(|t| t.as_second()),
            next_rotation: status.next_key_rotation_at.map(|t| t.as_second()),
            planned_rotation: status
                .planned_rotation
                .as_ref()
                .map(|p| (p.at.as_second(), planned_reason(p.reason))),
        },
    );
    reason
}

/// The `reason` label of `keyrotor_policy_planned_rotation_timestamp_seconds`:
/// the status' own spelling (the enum has no `as_str`, and the crd module is
/// not this file's to change; the test below holds the two together).
fn planned_reason(reason: PlannedRotationReason) -> &'static str {
    match reason {
        PlannedRotationReason::Window => "Window",
        PlannedRotationReason::CloudflareSchedule => "CloudflareSchedule",
    }
}

/// Publishes the pass's events; a failure to publish is logged, not retried.
pub(super) async fn publish_events(
    ctx: &Context,
    policy: &AccessKeyPolicy,
    events: Vec<(super::EventReason, String)>,
) {
    let reference = policy.object_ref(&());
    for (reason, note) in events {
        if let Err(err) = ctx.events.publish(reason, &note, &reference).await {
            warn!(reason = reason.as_str(), error = %err, "could not publish event");
        }
    }
}

/// ±10 % so that many policies created together do not check in lockstep,
/// then on to the next tick (see [`on_tick`]).
fn jittered(interval: Duration) -> Duration {
    let delay = interval
        .mul_f64(rand::rng().random_range(1.0 - decide::CHECK_JITTER..=1.0 + decide::CHECK_JITTER));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    on_tick(delay, now, interval)
}

/// The tick drift checks are due on: a hundredth of their interval, within
/// 10 ms and 1 s.
fn check_tick(interval: Duration) -> Duration {
    (interval / 100).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// `delay` from `now` (time since a fixed origin), lengthened to end on a
/// multiple of the interval's [`check_tick`]. With many policies, the checks
/// due in one tick start on one wake-up of the operator's thread, and their
/// answers tend to come back together; each on its own time cost the thread
/// a sleep and a wake-up per step, most of a drift check's CPU on a virtual
/// machine (docs/benchmarks.md). The jitter is 20 ticks wide, so checks still spread.
fn on_tick(delay: Duration, now: Duration, interval: Duration) -> Duration {
    let tick = check_tick(interval).as_nanos();
    let due = now.as_nanos().saturating_add(delay.as_nanos());
    let short = (tick - due % tick) % tick;
    delay.saturating_add(Duration::from_nanos(u64::try_from(short).unwrap_or(0)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_checks_end_on_their_intervals_tick() {
        let twenty = Duration::from_secs(20);
        assert_eq!(check_tick(twenty), Duration::from_millis(200));
        assert_eq!(
            check_tick(Duration::from_secs(1)),
            Duration::from_millis(10)
        );
        assert_eq!(
            check_tick(Duration::from_secs(3600)),
            Duration::from_secs(1)
        );
        let now = Duration::from_millis(1_000_070);
        // Due at 1,020,070 ms: on to 1,020,200.
        let delay = on_tick(twenty, now, twenty);
        assert_eq!(delay, Duration::from_millis(20_130));
        // Already on a tick: unchanged.
        assert_eq!(on_tick(delay, now, twenty), delay);
        // Two checks due within one tick share it; the next tick is another.
        let a = now + on_tick(Duration::from_millis(19_931), now, twenty);
        let b = now + on_tick(Duration::from_millis(20_099), now, twenty);
        let c = now + on_tick(Duration::from_millis(20_131), now, twenty);
        assert_eq!(a, Duration::from_millis(1_020_200));
        assert_eq!(a, b);
        assert_eq!(c, Duration::from_millis(1_020_400));
        // Never shorter, and at most one tick longer, than asked.
        for ms in [0_u64, 1, 199, 200, 12_345, 22_000] {
            let asked = Duration::from_millis(ms);
            let got = on_tick(asked, now, twenty);
            assert!(
                got >= asked && got < asked + check_tick(twenty),
                "{ms}: {got:?}"
            );
        }
    }

    #[test]
    fn the_planned_rotation_reason_label_is_the_status_spelling() {
        for reason in [
            PlannedRotationReason::Window,
            PlannedRotationReason::CloudflareSchedule,
        ] {
            assert_eq!(
                serde_json::to_value(reason).expect("serializes"),
                planned_reason(reason)
            );
        }
    }
}
