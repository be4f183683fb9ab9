//! Table tests of one pass: which events, which requeue, which messages and
//! which writes, without a cluster.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use jiff::Timestamp;

use super::*;
use crate::{
    cloudflare::TransportKind,
    decide::{fixtures::spec, status::set_ready},
};

const FLOOR: Duration = Duration::from_secs(60);
const TEN_MINUTES: Duration = Duration::from_secs(600);

fn ts(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

struct Case {
    spec: AccessKeyPolicySpec,
    written: AccessKeyPolicyStatus,
    secret: SecretRead,
    owner: Option<String>,
    demand: Option<Demand>,
    was_late: bool,
    refusal: Option<Refusal>,
    request: Option<RotateRequest>,
    instant: Instant,
}

impl Case {
    fn new() -> Self {
        Self {
            spec: spec(serde_json::json!({})),
            written: AccessKeyPolicyStatus::default(),
            secret: SecretRead::Valid {
                version: "7".into(),
            },
            owner: None,
            demand: None,
            was_late: false,
            refusal: None,
            request: None,
            instant: Instant::now(),
        }
    }

    fn input(&self) -> PassInput<'_> {
        PassInput {
            namespace: "team",
            spec: &self.spec,
            written: &self.written,
            generation: Some(2),
            request: self.request.clone(),
            secret: self.secret.clone(),
            owner: self.owner.clone(),
            demand: self.demand,
            was_late: self.was_late,
            refusal: self.refusal.clone(),
            now: ts("2026-12-02T10:00:00Z"),
            instant: self.instant,
            drift_check_floor: FLOOR,
            min_rotation_cooldown: Duration::ZERO,
        }
    }

    fn first(&self) -> PassDecision {
        pass(&self.input(), None)
    }

    fn read(&self, account: Result<AccountKeyConfig, CloudflareError>) -> PassDecision {
        pass(&self.input(), Some(account))
    }
}

fn account(days: i64, last: &str) -> AccountKeyConfig {
    AccountKeyConfig {
        key_rotation_interval_days: Some(days),
        days_until_next_rotation: Some(20.0),
        last_key_rotation_at: Some(ts(last)),
        served_at: Some(ts("2026-12-02T10:00:00Z")),
    }
}

fn ready(d: &PassDecision) -> (String, String) {
    d.status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

fn reasons(d: &PassDecision) -> Vec<&'static str> {
    d.events.iter().map(|(r, _)| r.as_str()).collect()
}

fn auth_error() -> CloudflareError {
    CloudflareError::Authentication {
        status: 403,
        code: Some(9109),
        message: "Invalid access token".into(),
    }
}

#[test]
fn early_ends_say_why_and_make_no_call() {
    let mut suspended = Case::new();
    suspended.spec = spec(serde_json::json!({"suspend": true}));
    let d = suspended.first();
    assert_eq!(ready(&d).0, "Suspended");
    assert_eq!(d.requeue, Requeue::AwaitChange);

    let mut missing = Case::new();
    missing.secret = SecretRead::Missing;
    let d = missing.first();
    assert_eq!(
        ready(&d),
        (
            "SecretNotFound".to_owned(),
            "Secret cf not found in namespace team; create it with key apiToken (or apiKey and email)".to_owned()
        )
    );
    assert_eq!(reasons(&d), ["CredentialsError"]);
    assert_eq!(d.requeue, Requeue::After(TEN_MINUTES));

    let mut conflict = Case::new();
    conflict.owner = Some("team/older".into());
    let d = conflict.first();
    assert_eq!(ready(&d).0, "Conflict");
    assert!(
        ready(&d)
            .1
            .contains("managed by policy older in this namespace"),
        "{}",
        ready(&d).1
    );
    let mut elsewhere = Case::new();
    elsewhere.owner = Some("other-team/prod".into());
    let message = ready(&elsewhere.first()).1;
    assert!(
        message.contains("managed by a policy in another namespace")
            && !message.contains("other-team"),
        "another namespace's owner is not named: {message}"
    );
    assert_eq!(reasons(&d), ["Conflict"]);
    assert_eq!(
        d.requeue,
        Requeue::After(FLOOR),
        "takes over soon after the owner goes"
    );

    for d in [suspended.first(), missing.first(), conflict.first()] {
        assert!(!d.read_account && d.writes.is_empty(), "{d:?}");
    }
}

#[test]
fn an_unchanged_failure_is_no_new_event() {
    let mut missing = Case::new();
    missing.secret = SecretRead::Missing;
    let (reason, message) = ready(&missing.first());
    set_ready(
        &mut missing.written,
        ReadyReason::SecretNotFound,
        &message,
        Some(2),
        ts("2026-12-02T09:00:00Z"),
    );
    assert_eq!(reason, "SecretNotFound");
    assert!(missing.first().events.is_empty());
}

#[test]
fn a_refused_token_is_remembered_and_not_asked_again_until_its_wait_is_over() {
    let case = Case::new();
    let d = case.read(Err(auth_error()));
    assert_eq!(ready(&d).0, "InvalidCredentials");
    assert!(
        ready(&d).1.starts_with("reading the account: "),
        "{}",
        ready(&d).1
    );
    assert_eq!(reasons(&d), ["CredentialsError"]);
    let CredentialMemory::Refused(refusal) = d.credentials.clone() else {
        panic!("not remembered: {:?}", d.credentials);
    };
    assert_eq!(d.requeue, Requeue::After(TEN_MINUTES));

    let mut again = Case::new();
    again.refusal = Some(refusal.clone());
    again.instant = case.instant + Duration::from_secs(60);
    let d = again.first();
    assert!(!d.read_account, "asked again inside the wait");
    assert_eq!(d.requeue, Requeue::After(Duration::from_secs(540)));
    assert_eq!(
        ready(&d),
        ("InvalidCredentials".to_owned(), refusal.message.clone())
    );

    again.secret = SecretRead::Valid {
        version: "8".into(),
    };
    assert!(
        again.first().read_account,
        "a changed Secret is asked about at once"
    );
    let d = again.read(Ok(account(30, "2026-11-20T00:00:00Z")));
    assert_eq!(d.credentials, CredentialMemory::Accepted);
}

#[test]
fn cloudflare_failures_requeue_by_their_kind() {
    let case = Case::new();
    let limited = case.read(Err(CloudflareError::RateLimited {
        retry_after: Duration::from_secs(90),
    }));
    assert_eq!(
        (ready(&limited).0.as_str(), limited.requeue),
        ("RateLimited", Requeue::After(Duration::from_secs(90)))
    );
    let down = case.read(Err(CloudflareError::Transport {
        kind: TransportKind::Connect,
        detail: "refused".into(),
        attempts: 4,
    }));
    assert_eq!(
        (ready(&down).0.as_str(), down.requeue),
        ("ApiError", Requeue::After(FLOOR))
    );
    assert_eq!(reasons(&down), ["ApiError"]);
}

#[test]
fn a_new_spec_updates_the_interval_and_later_drift_is_corrected() {
    let case = Case::new();
    assert!(case.first().read_account);
    let d = case.read(Ok(account(42, "2026-11-20T00:00:00Z")));
    assert_eq!(d.writes, [AccountWrite::PutInterval(30)]);
    assert_eq!(d.status.original_key_rotation_interval_days, Some(42));
    let d = after_write(
        d,
        WriteOutcome::Put(Ok(account(30, "2026-11-20T00:00:00Z"))),
    );
    assert!(d.writes.is_empty());
    assert_eq!(reasons(&d), ["IntervalUpdated"]);
    assert_eq!(
        d.events[0].1,
        "set the account's rotation interval to 30 days (was 42 days)"
    );
    assert_eq!(
        ready(&d),
        (
            "Reconciled".to_owned(),
            "the account rotates its key every 30 days".to_owned()
        )
    );
    assert_eq!(d.requeue, Requeue::Check(TEN_MINUTES));
    assert_eq!(d.status.account_key_rotation_interval_days, Some(30));

    // The stored status saw this generation and the account: now it is drift.
    let mut later = Case::new();
    later.written = d.status.clone();
    let d = later.read(Ok(account(90, "2026-11-20T00:00:00Z")));
    let d = after_write(
        d,
        WriteOutcome::Put(Ok(account(30, "2026-11-20T00:00:00Z"))),
    );
    assert_eq!(reasons(&d), ["DriftCorrected"]);

    let failed = after_write(
        later.read(Ok(account(90, "2026-11-20T00:00:00Z"))),
        WriteOutcome::Put(Err(CloudflareError::Rejected {
            status: 400,
            code: Some(12001),
            message: "no".into(),
            pointer: Some("/key_rotation_interval_days".into()),
        })),
    );
    assert_eq!(ready(&failed).0, "ApiError");
    assert!(ready(&failed).1.starts_with("setting the interval: "));
}

#[test]
fn observe_mode_and_the_floor_and_a_late_budget_show_in_the_ready_message() {
    let mut case = Case::new();
    case.spec =
        spec(serde_json::json!({"managementPolicy": "Observe", "driftCheckInterval": "10s"}));
    case.demand = Some(Demand {
        policies: 900,
        checks_per_second: 15.0,
        capacity_per_second: 2.0,
    });
    let d = case.read(Ok(account(42, "2026-11-20T00:00:00Z")));
    assert!(d.writes.is_empty(), "Observe never writes");
    let (_, message) = ready(&d);
    assert!(message.starts_with("the account was read (Observe mode: no writes); checked every 60s, the operator's floor, not every 10s; drift checks run late: 900 policies"), "{message}");
    assert_eq!(reasons(&d), ["BudgetExhausted"]);
    assert!(d.late && d.late_reported);
    // A late pass that fails reports nothing: the next good one still tells.
    let failed = case.read(Err(auth_error()));
    assert!(failed.late && !failed.late_reported);
    case.was_late = true;
    assert!(
        case.read(Ok(account(42, "2026-11-20T00:00:00Z")))
            .events
            .is_empty(),
        "one event, not one per pass"
    );
    assert_eq!(
        d.status
            .conditions
            .iter()
            .find(|c| c.type_ == "AccountInSync")
            .map(|c| c.reason.as_str()),
        Some("Drifted")
    );
}

#[test]
fn a_rotation_is_written_pending_then_posted_and_its_outcome_recorded() {
    let mut case = Case::new();
    case.request = Some(RotateRequest {
        value: "r1".into(),
        force: false,
    });
    let d = case.read(Ok(account(30, "2026-11-01T00:00:00Z")));
    assert_eq!(
        d.writes,
        [AccountWrite::PendingStatus, AccountWrite::PostRotate]
    );
    assert_eq!(
        d.status
            .pending_rotation
            .as_ref()
            .map(|p| (p.request.as_str(), p.baseline_key_rotation_at)),
        Some(("r1", Some(ts("2026-11-01T00:00:00Z"))))
    );
    let pending = after_write(d, WriteOutcome::PendingStatusWritten);
    assert_eq!(pending.writes, [AccountWrite::PostRotate]);

    let done = after_write(
        pending.clone(),
        WriteOutcome::Post(Ok(account(30, "2026-12-02T10:00:01.5Z"))),
    );
    assert_eq!(reasons(&done), ["Rotated"]);
    assert_eq!(
        done.status.last_handled_rotate_request.as_deref(),
        Some("r1")
    );
    assert_eq!(
        done.status.last_key_rotation_at,
        Some(ts("2026-12-02T10:00:01Z"))
    );
    assert!(done.status.pending_rotation.is_none());
    assert_eq!(done.handled, [RotateOutcome::Rotated]);

    let unknown = after_write(
        pending.clone(),
        WriteOutcome::Post(Err(CloudflareError::Transport {
            kind: TransportKind::Timeout,
            detail: "timed out".into(),
            attempts: 1,
        })),
    );
    assert!(
        unknown.status.pending_rotation.is_some(),
        "unknown outcome stays pending"
    );
    assert!(unknown.handled.is_empty());
    assert!(ready(&unknown).1.starts_with("rotating the key: "));

    let refused = after_write(pending, WriteOutcome::Post(Err(auth_error())));
    assert_eq!(
        refused.status.last_rotate_outcome,
        Some(RotateOutcome::Failed)
    );
    assert!(refused.status.pending_rotation.is_none());
}

#[test]
fn a_rotation_too_close_to_the_last_one_is_held_without_writing() {
    let mut case = Case::new();
    case.request = Some(RotateRequest {
        value: "r1".into(),
        force: true,
    });
    let d = case.read(Ok(account(30, "2026-12-02T09:59:59.9Z")));
    assert!(d.writes.is_empty());
    assert_eq!(
        d.requeue,
        Requeue::After(Duration::from_secs(1) + HOLD_MARGIN)
    );
    assert!(d.status.pending_rotation.is_none());
}

#[test]
fn a_call_the_budget_put_off_ends_the_pass_without_a_status_change() {
    let put_off = || CloudflareError::PutOff {
        wait: Duration::from_secs(300),
    };
    let mut case = Case::new();
    case.written = AccessKeyPolicyStatus::default();
    set_ready(
        &mut case.written,
        ReadyReason::Reconciled,
        "the account rotates its key every 30 days",
        Some(2),
        ts("2026-12-01T10:00:00Z"),
    );
    // The read put off: nothing to write, no event, back when the budget has a slot.
    let d = case.read(Err(put_off()));
    assert_eq!(d.put_off, Some(Duration::from_secs(300)));
    assert_eq!(d.requeue, Requeue::After(Duration::from_secs(300)));
    assert!(d.events.is_empty() && d.writes.is_empty() && !d.read_account);
    assert_eq!(d.status.conditions, case.written.conditions);

    // The interval PUT put off: the same.
    let d = case.read(Ok(account(42, "2026-11-01T00:00:00Z")));
    assert_eq!(d.writes, [AccountWrite::PutInterval(30)]);
    let d = after_write(d, WriteOutcome::Put(Err(put_off())));
    assert_eq!(d.put_off, Some(Duration::from_secs(300)));
    assert!(d.events.is_empty() && d.writes.is_empty());

    // The POST put off after the pending write: the request stays pending
    // (the next pass asks the account and POSTs then), nothing is handled.
    case.request = Some(RotateRequest {
        value: "r1".into(),
        force: false,
    });
    let d = case.read(Ok(account(30, "2026-11-01T00:00:00Z")));
    let pending = after_write(d, WriteOutcome::PendingStatusWritten);
    let d = after_write(pending, WriteOutcome::Post(Err(put_off())));
    assert_eq!(d.put_off, Some(Duration::from_secs(300)));
    assert!(d.handled.is_empty() && d.events.is_empty() && d.writes.is_empty());
    assert_eq!(
        d.status
            .pending_rotation
            .as_ref()
            .map(|p| p.request.as_str()),
        Some("r1")
    );
    assert_eq!(d.status.last_rotate_outcome, None);
}

/// A daily 10:00-12:00 UTC window; the account (30 days, last rotated
/// 2026-11-04 09:00) is due on 2026-12-04 09:00, so its deadline is
/// 2026-12-03 09:00 and the last window before it is today's, open at 10:00.
fn window_case() -> Case {
    let mut case = Case::new();
    case.spec = spec(serde_json::json!({
        "keyRotationIntervalDays": 30,
        "rotationWindow": {"schedule": "0 10 * * *", "duration": "2h"},
    }));
    case
}

#[test]
fn an_open_window_rotates_through_the_exactly_once_writes() {
    let case = window_case();
    let d = case.read(Ok(account(30, "2026-11-04T09:00:00Z")));
    assert_eq!(
        d.writes,
        VecDeque::from([AccountWrite::PendingStatus, AccountWrite::PostRotate])
    );
    let start = ts("2026-12-02T10:00:00Z");
    let pending = d.status.pending_rotation.clone().expect("pending first");
    assert_eq!(pending.window_start, Some(start));
    assert_eq!(pending.request, "window/2026-12-02T10:00:00Z");
    let d = after_write(d, WriteOutcome::PendingStatusWritten);
    let d = after_write(
        d,
        WriteOutcome::Post(Ok(account(30, "2026-12-02T10:00:01Z"))),
    );
    assert!(d.writes.is_empty());
    assert_eq!(
        d.status.last_window_rotation,
        Some(WindowRotation {
            window_start: start,
            outcome: RotateOutcome::Rotated,
        })
    );
    assert_eq!(d.status.pending_rotation, None);
    assert_eq!(d.status.last_handled_rotate_request, None);
    assert_eq!(reasons(&d), ["Rotated"]);
    // The next plan starts from the new rotation: a later window, with its reason.
    let planned = d.status.planned_rotation.clone().expect("planned");
    assert_eq!(planned.reason, crate::crd::PlannedRotationReason::Window);
    assert!(planned.at > ts("2026-12-30T00:00:00Z"), "{planned:?}");
}

#[test]
fn a_request_waiting_behind_a_window_rotation_comes_back_at_once() {
    let mut case = window_case();
    case.written.pending_rotation = Some(Box::new(PendingRotation {
        request: "window/2026-12-02T10:00:00Z".into(),
        baseline_key_rotation_at: Some(ts("2026-11-04T09:00:00Z")),
        window_start: Some(ts("2026-12-02T10:00:00Z")),
    }));
    case.request = Some(RotateRequest {
        value: "r1".into(),
        force: true,
    });
    // The account shows the window's rotation: it is confirmed, and the
    // annotation's request is handled by a pass right after.
    let d = case.read(Ok(account(30, "2026-12-02T10:00:01Z")));
    assert!(d.writes.is_empty());
    assert_eq!(
        d.status.last_window_rotation.map(|w| w.outcome),
        Some(RotateOutcome::Rotated)
    );
    assert_eq!(d.status.last_handled_rotate_request, None);
    assert_eq!(d.requeue, Requeue::After(HOLD_MARGIN));
}

#[test]
fn a_window_later_than_the_next_check_is_woken_for() {
    let mut case = window_case();
    case.spec = spec(serde_json::json!({
        "keyRotationIntervalDays": 30,
        "driftCheckInterval": "24h",
        "rotationWindow": {"schedule": "0 10 * * *", "duration": "2h"},
    }));
    // Due 2026-12-04 12:00: the deadline is 2026-12-03 12:00, and the last
    // window before it opens on 2026-12-03 at 10:00, 24 h from now: the
    // check, jittered up to 26.4 h, could miss it, so the pass wakes for it.
    let d = case.read(Ok(account(30, "2026-11-04T12:00:00Z")));
    assert!(d.writes.is_empty());
    assert_eq!(
        d.requeue,
        Requeue::After(Duration::from_secs(24 * 3600) + HOLD_MARGIN)
    );
    let (reason, _) = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "RotationWindow")
        .map(|c| (c.reason.clone(), c.message.clone()))
        .expect("condition");
    assert_eq!(reason, "Planned");
    // A week away, the check comes first.
    let d = case.read(Ok(account(30, "2026-11-10T12:00:00Z")));
    assert_eq!(d.requeue, Requeue::Check(Duration::from_secs(24 * 3600)));
}
