//! What to do with an account once it has been read (pure).

use std::time::Duration;

use jiff::Timestamp;

use super::{
    rotation::{RotateRequest, RotationStep, decide_rotation, duration_text},
    window::{AccountSchedule, WindowError, WindowPlan, WindowSchedule, plan_window},
    window_rotation::decide_window_rotation,
    witness::AccountClock,
};
use crate::{
    cloudflare::AccountKeyConfig,
    crd::{AccessKeyPolicySpec, AccessKeyPolicyStatus, ManagementPolicy, RotationWindow},
};

/// The writes one reconcile makes to the account, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountPlan {
    /// PUT this interval (Manage mode, when the account differs).
    pub update_interval: Option<i64>,
    /// The rotate request's step.
    pub rotation: RotationStep,
    /// Capture this as `originalKeyRotationIntervalDays` (first adoption only).
    pub capture_original: Option<i64>,
    /// A rotate request waits behind this pass's window rotation: look again soon.
    pub request_waits: bool,
}

/// Plans the account writes from the spec, what status recorded, the rotate
/// request, the account as just read, the account's clock and the operator's
/// minimum rotation cooldown.
pub fn plan_account(
    spec: &AccessKeyPolicySpec,
    status: &AccessKeyPolicyStatus,
    request: Option<&RotateRequest>,
    account: &AccountKeyConfig,
    clock: AccountClock,
    min_cooldown: Duration,
) -> AccountPlan {
    let wanted = i64::from(spec.key_rotation_interval_days);
    let update_interval = (spec.management_policy == ManagementPolicy::Manage
        && account.key_rotation_interval_days != Some(wanted))
    .then_some(wanted);
    let capture_original = if status.original_key_rotation_interval_days.is_none() {
        account.key_rotation_interval_days
    } else {
        None
    };
    let cooldown = effective_cooldown(spec, min_cooldown);
    let requested = decide_rotation(
        request,
        status,
        spec.management_policy,
        cooldown,
        account.last_key_rotation_at,
        clock,
    );
    // The interval the account has once this pass's writes are made.
    let interval_days = update_interval.or(account.key_rotation_interval_days);
    let window = window_plan(
        spec.rotation_window.as_deref(),
        cooldown,
        AccountSchedule {
            last_rotation: account.last_key_rotation_at,
            interval_days,
        },
        status,
        clock.now(),
    );
    let window_step = decide_window_rotation(
        window.as_ref().and_then(|plan| plan.as_ref().ok()),
        status,
        spec.management_policy,
        account.last_key_rotation_at,
        clock,
    );
    // A window rotation in flight is settled first; otherwise a rotate
    // request goes first (it rotates at once); then the window's own.
    let in_flight = status
        .pending_rotation
        .as_ref()
        .is_some_and(|p| p.window_start.is_some());
    let (rotation, request_waits) = match window_step {
        Some(step) if in_flight || requested == RotationStep::Idle => {
            (step, requested != RotationStep::Idle)
        }
        _ => (requested, false),
    };
    AccountPlan {
        update_interval,
        rotation,
        capture_original,
        request_waits,
    }
}

/// The window plan of a policy with `spec.rotationWindow`, from what the
/// account says (`None` without a window). A window already used for a
/// rotation plans no second one.
pub fn window_plan(
    window: Option<&RotationWindow>,
    cooldown: Duration,
    account: AccountSchedule,
    status: &AccessKeyPolicyStatus,
    now: Timestamp,
) -> Option<Result<WindowPlan, WindowError>> {
    let window = window?;
    let used = status.last_window_rotation.as_ref().map(|w| w.window_start);
    Some(
        WindowSchedule::parse(window)
            .and_then(|schedule| plan_window(&schedule, account, cooldown, used, now)),
    )
}

/// The rotation cooldown in force: the policy's, held to the operator's minimum.
pub fn effective_cooldown(spec: &AccessKeyPolicySpec, min_cooldown: Duration) -> Duration {
    spec.rotation_cooldown.as_duration().max(min_cooldown)
}

/// What the Ready message adds when the policy asks for a shorter cooldown
/// than the operator allows.
pub fn cooldown_note(spec: &AccessKeyPolicySpec, min_cooldown: Duration) -> Option<String> {
    (spec.rotation_cooldown.as_duration() < min_cooldown).then(|| {
        format!(
            "; rotationCooldown {} is below the operator's minimum, so on-demand rotations are held to {} (--min-rotation-cooldown)",
            spec.rotation_cooldown,
            duration_text(min_cooldown)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::fixtures;

    fn spec(days: i32, mode: ManagementPolicy) -> AccessKeyPolicySpec {
        fixtures::spec(
            serde_json::json!({"keyRotationIntervalDays": days, "managementPolicy": mode}),
        )
    }

    fn account(days: Option<i64>) -> AccountKeyConfig {
        AccountKeyConfig {
            key_rotation_interval_days: days,
            days_until_next_rotation: Some(10.0),
            last_key_rotation_at: Some("2026-10-01T00:00:00Z".parse().expect("ts")),
            served_at: None,
        }
    }

    #[test]
    fn manage_mode_puts_only_when_the_account_differs() {
        let now = AccountClock {
            served_at: None,
            operator_now: "2026-11-26T00:00:00Z".parse().expect("ts"),
        };
        let status = AccessKeyPolicyStatus::default();
        let differs = plan_account(
            &spec(30, ManagementPolicy::Manage),
            &status,
            None,
            &account(Some(42)),
            now,
            Duration::ZERO,
        );
        assert_eq!(differs.update_interval, Some(30));
        assert_eq!(differs.capture_original, Some(42));
        let same = plan_account(
            &spec(30, ManagementPolicy::Manage),
            &status,
            None,
            &account(Some(30)),
            now,
            Duration::ZERO,
        );
        assert_eq!(same.update_interval, None);
        let unknown = plan_account(
            &spec(30, ManagementPolicy::Manage),
            &status,
            None,
            &account(None),
            now,
            Duration::ZERO,
        );
        assert_eq!(
            unknown.update_interval,
            Some(30),
            "an unreadable interval is rewritten"
        );
    }

    #[test]
    fn observe_mode_never_writes() {
        let now = AccountClock {
            served_at: None,
            operator_now: "2026-11-26T00:00:00Z".parse().expect("ts"),
        };
        let request = RotateRequest {
            value: "r1".into(),
            force: true,
        };
        let plan = plan_account(
            &spec(30, ManagementPolicy::Observe),
            &AccessKeyPolicyStatus::default(),
            Some(&request),
            &account(Some(42)),
            now,
            Duration::ZERO,
        );
        assert_eq!(plan.update_interval, None);
        assert!(matches!(plan.rotation, RotationStep::Refuse { .. }));
    }

    #[test]
    fn the_original_interval_is_captured_once() {
        let now = AccountClock {
            served_at: None,
            operator_now: "2026-11-26T00:00:00Z".parse().expect("ts"),
        };
        let status = AccessKeyPolicyStatus {
            original_key_rotation_interval_days: Some(42),
            ..Default::default()
        };
        let plan = plan_account(
            &spec(30, ManagementPolicy::Manage),
            &status,
            None,
            &account(Some(30)),
            now,
            Duration::ZERO,
        );
        assert_eq!(plan.capture_original, None);
    }

    #[test]
    fn a_cooldown_below_the_operators_minimum_is_held_to_it() {
        let now = AccountClock {
            served_at: None,
            operator_now: "2026-10-02T00:00:00Z".parse().expect("ts"),
        };
        let week = Duration::from_secs(168 * 3600);
        let asking = |cooldown: &str| {
            fixtures::spec(
                serde_json::json!({"keyRotationIntervalDays": 30, "rotationCooldown": cooldown}),
            )
        };
        let request = RotateRequest {
            value: "r1".into(),
            force: false,
        };
        let plan = |spec: &AccessKeyPolicySpec, min| {
            plan_account(
                spec,
                &AccessKeyPolicyStatus::default(),
                Some(&request),
                &account(Some(30)),
                now,
                min,
            )
            .rotation
        };
        // A day after the last rotation: `0s` would rotate, the minimum refuses.
        assert!(matches!(
            plan(&asking("0s"), Duration::ZERO),
            RotationStep::Begin { .. }
        ));
        let held = plan(&asking("0s"), week);
        let RotationStep::Refuse { message, .. } = &held else {
            panic!("expected a refusal, got {held:?}");
        };
        assert!(message.contains("cooldown of 168h"), "{message}");
        assert_eq!(effective_cooldown(&asking("1h"), week), week);
        assert_eq!(
            effective_cooldown(&asking("720h"), week),
            30 * 24 * Duration::from_secs(3600)
        );
        let note = cooldown_note(&asking("1h"), week).expect("a note");
        assert!(
            note.contains("rotationCooldown 1h") && note.contains("168h"),
            "{note}"
        );
        assert_eq!(cooldown_note(&asking("168h"), week), None);
        assert_eq!(cooldown_note(&asking("0s"), Duration::ZERO), None);
    }
}
