//! One reconcile pass, decided (pure). The controller reads the inputs,
//! calls [`pass`], reads the account when the decision asks for it and calls
//! [`pass`] again with the answer, then performs the decision's account
//! writes in order, folding each outcome back in with [`after_write`]; what
//! is left is the status to write, the events, the requeue and what to
//! remember about the credentials.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use jiff::Timestamp;

use super::{
    failure,
    ownership::owner_as_seen_from,
    plan::{cooldown_note, effective_cooldown, plan_account},
    refusal::{Refusal, after_refusal, wait_after_refusal},
    rotation::{RotateRequest, RotationStep},
    secret::SecretError,
    status::{record_account, set_account_in_sync, set_ready},
    window::window_request,
    window_report::{WindowReport, report_window},
    witness::AccountClock,
};
use crate::{
    cloudflare::{AccountKeyConfig, CloudflareError, Demand},
    controller::EventReason,
    crd::{
        AccessKeyPolicySpec, AccessKeyPolicyStatus, ConditionType, ManagementPolicy,
        PendingRotation, ReadyReason, RotateOutcome, RotationWindow, WindowRotation,
    },
};

/// Added to a rotation hold: the account's clock must have passed the
/// instant, and its `Date` header only shows whole seconds.
pub const HOLD_MARGIN: Duration = Duration::from_millis(100);

/// What the pass found in the policy's Secret.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretRead {
    /// Valid credentials; the Secret's `resourceVersion`.
    Valid {
        /// The Secret's `resourceVersion`.
        version: String,
    },
    /// No such Secret.
    Missing,
    /// A Secret the credentials cannot be read from.
    Invalid(SecretError),
}

/// Everything one pass read, and the operator's settings.
#[derive(Debug, Clone)]
pub struct PassInput<'a> {
    /// The policy's namespace.
    pub namespace: &'a str,
    /// The spec.
    pub spec: &'a AccessKeyPolicySpec,
    /// The status as stored.
    pub written: &'a AccessKeyPolicyStatus,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The rotate request in the annotations.
    pub request: Option<RotateRequest>,
    /// The Secret.
    pub secret: SecretRead,
    /// Another policy that owns the account (`namespace/name`): known only
    /// after this policy's credentials read the account (see `ownership`).
    pub owner: Option<String>,
    /// The steady demand on the policy's credential.
    pub demand: Option<Demand>,
    /// Whether the last pass already found the checks running late.
    pub was_late: bool,
    /// The last refusal of this policy's credentials.
    pub refusal: Option<Refusal>,
    /// The operator's clock.
    pub now: Timestamp,
    /// The monotonic clock, for waits.
    pub instant: Instant,
    /// No account is checked more often than this.
    pub drift_check_floor: Duration,
    /// No policy's rotation cooldown is shorter than this.
    pub min_rotation_cooldown: Duration,
}

/// How far a [`Requeue::Check`] is spread either way: the controller waits
/// the interval times a random factor in `1 ± CHECK_JITTER`.
pub const CHECK_JITTER: f64 = 0.1;

/// When to look at the policy again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// After the drift interval, spread by [`CHECK_JITTER`].
    Check(Duration),
    /// After exactly this long.
    After(Duration),
    /// Only when the policy changes.
    AwaitChange,
}

/// A write to the account or the status that must happen before the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountWrite {
    /// PUT this interval.
    PutInterval(i64),
    /// Write the status (it now holds the pending request and its baseline).
    PendingStatus,
    /// POST a rotation, once.
    PostRotate,
}

/// How a write went.
#[derive(Debug, Clone)]
pub enum WriteOutcome {
    /// The PUT's answer.
    Put(Result<AccountKeyConfig, CloudflareError>),
    /// The pending status is stored.
    PendingStatusWritten,
    /// The POST's answer.
    Post(Result<AccountKeyConfig, CloudflareError>),
}

/// What to remember about the policy's credentials after the pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialMemory {
    /// Nothing new.
    Keep,
    /// Cloudflare refused them.
    Refused(Refusal),
    /// Cloudflare accepted them: forget any refusal.
    Accepted,
}

/// What the policy's settings make of this pass, kept for its later steps.
#[derive(Debug, Clone, PartialEq)]
struct Settled {
    wanted: i64,
    mode: ManagementPolicy,
    generation: Option<i64>,
    now: Timestamp,
    instant: Instant,
    check_interval: Duration,
    floor: Duration,
    /// "; checked every …s, the operator's floor" when the spec asks for less.
    floor_note: Option<String>,
    /// "; drift checks run late: …" when the credential is overcommitted.
    late_note: Option<String>,
    /// The previous pass reported them late already (its event was published).
    was_late: bool,
    secret_version: Option<String>,
    refusal: Option<Refusal>,
    /// The stored status described the current generation and had read the
    /// account: a PUT now corrects drift rather than applying a spec change.
    spec_seen: bool,
    /// The Ready condition as stored, so an unchanged failure is not an event again.
    written_ready: Option<(String, String)>,
    /// The RotationWindow condition as stored, for the same reason.
    written_window: Option<(String, String)>,
    /// `spec.rotationWindow`.
    window: Option<RotationWindow>,
    /// The rotation cooldown in force.
    cooldown: Duration,
}

/// The decision, as far as the pass has got.
#[derive(Debug, Clone, PartialEq)]
pub struct PassDecision {
    /// The status to write.
    pub status: AccessKeyPolicyStatus,
    /// Events to publish.
    pub events: Vec<(EventReason, String)>,
    /// When to look again.
    pub requeue: Requeue,
    /// The account must be read, and [`pass`] called again with the answer.
    pub read_account: bool,
    /// Writes still to perform, in order.
    pub writes: VecDeque<AccountWrite>,
    /// What to remember about the credentials.
    pub credentials: CredentialMemory,
    /// The drift checks of this credential run late (counted by a metric).
    pub late: bool,
    /// The Ready message says so (its event is published): the next pass
    /// must not publish it again.
    pub late_reported: bool,
    /// Rotate requests handled this pass, by outcome (for metrics).
    pub handled: Vec<RotateOutcome>,
    /// The budget put a Cloudflare call off (not sent): the pass ends
    /// without writing the status and comes back after this long.
    pub put_off: Option<Duration>,
    settled: Settled,
    /// The account as read (and as the writes left it).
    account: Option<AccountKeyConfig>,
    /// The account's clock when it was read.
    account_now: Option<Timestamp>,
    /// How long to hold a rotation, if it was held.
    hold: Option<Duration>,
    /// The rotation step, waiting for the PUT before it.
    rotation_step: Option<RotationStep>,
    /// A rotate request waits behind this pass's window rotation.
    request_waits: bool,
}

impl PassDecision {
    /// The Ready reason the decision leaves (for metrics), if any.
    pub fn ready_reason(&self) -> Option<&str> {
        self.status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.reason.as_str())
    }

    fn ready(&mut self, reason: ReadyReason, message: &str) {
        set_ready(
            &mut self.status,
            reason,
            message,
            self.settled.generation,
            self.settled.now,
        );
    }

    /// A failing Ready, with an event when the reason or message is new.
    fn fail(&mut self, reason: ReadyReason, event: EventReason, message: &str) {
        if self.settled.written_ready.as_ref()
            != Some(&(reason.as_str().to_owned(), message.to_owned()))
        {
            self.events.push((event, message.to_owned()));
        }
        self.ready(reason, message);
        self.writes.clear();
        self.read_account = false;
    }

    /// A failed Cloudflare call ends the pass.
    fn cloudflare_failed(&mut self, err: &CloudflareError, doing: &str) {
        if let Some(wait) = failure::put_off(err) {
            // Nothing was sent: no status change, no event; a pending
            // rotation stays pending and its POST is sent by a later pass.
            self.put_off = Some(wait);
            self.writes.clear();
            self.read_account = false;
            self.requeue = Requeue::After(wait);
            return;
        }
        let message = failure::message(err, doing);
        self.fail(failure::ready_reason(err), failure::event(err), &message);
        let settled = &self.settled;
        self.requeue = Requeue::After(failure::retry_after(
            err,
            settled.floor,
            settled.check_interval,
        ));
        if failure::ready_reason(err) == ReadyReason::InvalidCredentials
            && let Some(version) = &settled.secret_version
        {
            // Back off while the Secret stays the same (see `refusal`).
            let refusal = after_refusal(
                settled.refusal.as_ref(),
                version,
                settled.instant,
                settled.check_interval,
                &message,
            );
            self.requeue =
                Requeue::After(refusal.retry_at.saturating_duration_since(settled.instant));
            self.credentials = CredentialMemory::Refused(refusal);
        }
    }

    fn handle(&mut self, request: String, outcome: RotateOutcome) {
        self.status.last_handled_rotate_request = Some(request);
        self.status.last_rotate_outcome = Some(outcome);
        self.status.pending_rotation = None;
        self.handled.push(outcome);
    }

    fn handle_window(&mut self, window_start: jiff::Timestamp, outcome: RotateOutcome) {
        self.status.last_window_rotation = Some(WindowRotation {
            window_start,
            outcome,
        });
        self.status.pending_rotation = None;
        self.handled.push(outcome);
    }

    /// Applies the rotation step; a `Begin` queues the pending write and the POST.
    fn rotation(&mut self, step: RotationStep) {
        match step {
            RotationStep::Idle => {}
            RotationStep::WindowBegin {
                window_start,
                baseline,
            } => {
                self.status.pending_rotation = Some(Box::new(PendingRotation {
                    request: window_request(window_start),
                    baseline_key_rotation_at: baseline,
                    window_start: Some(window_start),
                }));
                self.writes.push_back(AccountWrite::PendingStatus);
                self.writes.push_back(AccountWrite::PostRotate);
            }
            RotationStep::WindowConfirmed { window_start } => {
                self.events.push((
                    EventReason::Rotated,
                    format!(
                        "rotation in the maintenance window starting {window_start} confirmed: the account's last rotation is {}",
                        describe_time(self.status.last_key_rotation_at)
                    ),
                ));
                self.handle_window(window_start, RotateOutcome::Rotated);
            }
            RotationStep::WindowEnded {
                window_start,
                outcome,
                message,
            } => {
                self.events.push((EventReason::RotationRefused, message));
                self.handle_window(window_start, outcome);
            }
            RotationStep::Hold { wait, .. } => self.hold = Some(wait + HOLD_MARGIN),
            RotationStep::Refuse {
                request,
                outcome,
                message,
            } => {
                self.handle(request, outcome);
                self.events.push((EventReason::RotationRefused, message));
            }
            RotationStep::Confirmed { request } => {
                self.events.push((
                    EventReason::Rotated,
                    format!(
                        "rotation for request {request:?} confirmed: the account's last rotation is {}",
                        describe_time(self.status.last_key_rotation_at)
                    ),
                ));
                self.handle(request, RotateOutcome::Rotated);
            }
            RotationStep::Begin { request, baseline } => {
                // Recorded before the POST, so a crash after it cannot lead to a second one.
                self.status.pending_rotation = Some(Box::new(PendingRotation {
                    request,
                    baseline_key_rotation_at: baseline,
                    window_start: None,
                }));
                self.writes.push_back(AccountWrite::PendingStatus);
                self.writes.push_back(AccountWrite::PostRotate);
            }
        }
    }

    /// The pass went through: AccountInSync, Ready and the drift requeue.
    fn finish(&mut self) {
        let settled = self.settled.clone();
        let actual = self.status.account_key_rotation_interval_days;
        set_account_in_sync(
            &mut self.status,
            settled.wanted,
            actual,
            settled.generation,
            settled.now,
        );
        let mut message = match settled.mode {
            ManagementPolicy::Manage => {
                format!("the account rotates its key every {} days", settled.wanted)
            }
            ManagementPolicy::Observe => {
                "the account was read (Observe mode: no writes)".to_owned()
            }
        };
        message.push_str(settled.floor_note.as_deref().unwrap_or_default());
        let report = report_window(
            &mut self.status,
            settled.window.as_ref(),
            settled.cooldown,
            settled.mode,
            self.account_now,
            settled.generation,
            settled.now,
        );
        if let Some((reason, text)) = self.window_condition()
            && reason == "NoWindowFits"
            && settled.written_window.as_ref() != Some(&(reason.clone(), text.clone()))
        {
            self.events.push((EventReason::NoWindowFits, text));
        }
        if let Some(late) = &settled.late_note {
            if !settled.was_late {
                self.events.push((
                    EventReason::BudgetExhausted,
                    late.trim_start_matches("; ").to_owned(),
                ));
            }
            message.push_str(late);
            self.late_reported = true;
        }
        match &report {
            WindowReport::Invalid(problem) => {
                if settled.written_ready.as_ref()
                    != Some(&(
                        ReadyReason::InvalidSpec.as_str().to_owned(),
                        problem.clone(),
                    ))
                {
                    self.events
                        .push((EventReason::InvalidSpec, problem.clone()));
                }
                self.ready(ReadyReason::InvalidSpec, problem);
            }
            _ => self.ready(ReadyReason::Reconciled, &message),
        }
        let wake = match report {
            WindowReport::Wake(wait) => Some(wait + HOLD_MARGIN),
            _ => None,
        };
        self.requeue = match (self.hold, wake) {
            (Some(wait), _) => Requeue::After(wait),
            // A rotate request that waited behind a window rotation: at once.
            _ if self.request_waits => Requeue::After(HOLD_MARGIN),
            // A planned rotation the jittered check could overshoot: wake for it.
            (None, Some(wake)) if wake < settled.check_interval.mul_f64(1.0 + CHECK_JITTER) => {
                Requeue::After(wake)
            }
            _ => Requeue::Check(settled.check_interval),
        };
    }

    /// The RotationWindow condition's reason and message, if present.
    fn window_condition(&self) -> Option<(String, String)> {
        self.status
            .conditions
            .iter()
            .find(|c| c.type_ == ConditionType::RotationWindow.as_str())
            .map(|c| (c.reason.clone(), c.message.clone()))
    }
}

/// Decides the pass from its inputs; `account` is the answer to the account
/// read once the first decision asked for it (`None` before).
pub fn pass(
    input: &PassInput<'_>,
    account: Option<Result<AccountKeyConfig, CloudflareError>>,
) -> PassDecision {
    let spec = input.spec;
    let check_interval = spec
        .drift_check_interval
        .as_duration()
        .max(input.drift_check_floor);
    let floor_note =
        (spec.drift_check_interval.as_duration() < input.drift_check_floor).then(|| {
            format!(
                "; checked every {}s, the operator's floor, not every {}",
                input.drift_check_floor.as_secs(),
                spec.drift_check_interval
            )
        });
    let floor_note = match (floor_note, cooldown_note(spec, input.min_rotation_cooldown)) {
        (Some(drift), Some(cooldown)) => Some(drift + &cooldown),
        (drift, cooldown) => drift.or(cooldown),
    };
    let late = input.demand.filter(Demand::overcommitted);
    let late_note = late.map(|demand| {
        format!(
            "; drift checks run late: {} policies share this credential, needing {:.2} checks/s where its budget allows {:.2} requests/s, so each is checked about every {}s instead of every {}s; spread policies over more tokens or raise --budget-requests",
            demand.policies,
            demand.checks_per_second,
            demand.capacity_per_second,
            demand.effective_interval().as_secs(),
            check_interval.as_secs()
        )
    });
    let secret_version = match &input.secret {
        SecretRead::Valid { version } => Some(version.clone()),
        _ => None,
    };
    let mut status = input.written.clone();
    status.observed_generation = input.generation;
    let mut d = PassDecision {
        status,
        events: Vec::new(),
        requeue: Requeue::Check(check_interval),
        read_account: false,
        writes: VecDeque::new(),
        credentials: CredentialMemory::Keep,
        late: false,
        late_reported: false,
        handled: Vec::new(),
        put_off: None,
        settled: Settled {
            wanted: i64::from(spec.key_rotation_interval_days),
            mode: spec.management_policy,
            generation: input.generation,
            now: input.now,
            instant: input.instant,
            check_interval,
            floor: input.drift_check_floor,
            floor_note,
            late_note,
            was_late: input.was_late,
            secret_version,
            refusal: input.refusal.clone(),
            spec_seen: input.written.observed_generation == input.generation
                && input.written.account_key_rotation_interval_days.is_some(),
            written_ready: input
                .written
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| (c.reason.clone(), c.message.clone())),
            written_window: input
                .written
                .conditions
                .iter()
                .find(|c| c.type_ == ConditionType::RotationWindow.as_str())
                .map(|c| (c.reason.clone(), c.message.clone())),
            window: spec.rotation_window.as_deref().cloned(),
            cooldown: effective_cooldown(spec, input.min_rotation_cooldown),
        },
        account: None,
        account_now: None,
        hold: None,
        rotation_step: None,
        request_waits: false,
    };

    if spec.suspend {
        d.ready(
            ReadyReason::Suspended,
            "spec.suspend is true: no Cloudflare calls are made",
        );
        d.requeue = Requeue::AwaitChange;
        return d;
    }
    let version = match &input.secret {
        SecretRead::Valid { version } => version,
        SecretRead::Missing => {
            let keys = spec.credentials_ref.keys();
            let message = format!(
                "Secret {} not found in namespace {}; create it with key {} (or {} and {})",
                spec.credentials_ref.name,
                input.namespace,
                keys.api_token,
                keys.api_key,
                keys.email
            );
            d.fail(
                ReadyReason::SecretNotFound,
                EventReason::CredentialsError,
                &message,
            );
            d.requeue = Requeue::After(check_interval);
            return d;
        }
        SecretRead::Invalid(err) => {
            d.fail(
                ReadyReason::InvalidCredentials,
                EventReason::CredentialsError,
                &err.to_string(),
            );
            d.requeue = Requeue::After(check_interval);
            return d;
        }
    };
    if spec.management_policy == ManagementPolicy::Manage
        && let Some(owner) = &input.owner
    {
        let message = format!(
            "account {} is managed by {} (the first policy whose credentials read it); this policy makes no changes to the account",
            spec.account_id,
            owner_as_seen_from(input.namespace, owner)
        );
        d.fail(ReadyReason::Conflict, EventReason::Conflict, &message);
        d.requeue = Requeue::After(input.drift_check_floor);
        return d;
    }
    d.late = late.is_some();
    // Credentials Cloudflare refused: ask again only once their wait is over.
    if let Some(wait) = wait_after_refusal(input.refusal.as_ref(), version, input.instant) {
        let message = input
            .refusal
            .as_ref()
            .map(|r| r.message.clone())
            .unwrap_or_default();
        d.ready(ReadyReason::InvalidCredentials, &message);
        d.requeue = Requeue::After(wait);
        return d;
    }
    let account = match account {
        None => {
            d.read_account = true;
            return d;
        }
        Some(Err(err)) => {
            d.cloudflare_failed(&err, "reading the account");
            return d;
        }
        Some(Ok(account)) => account,
    };
    if input.refusal.is_some() {
        d.credentials = CredentialMemory::Accepted;
    }
    let clock = AccountClock {
        served_at: account.served_at,
        operator_now: input.now,
    };
    let plan = plan_account(
        spec,
        &d.status,
        input.request.as_ref(),
        &account,
        clock,
        input.min_rotation_cooldown,
    );
    if let Some(original) = plan.capture_original {
        d.status.original_key_rotation_interval_days = Some(original);
    }
    d.request_waits = plan.request_waits;
    d.account_now = Some(clock.now());
    d.account = Some(account);
    match plan.update_interval {
        Some(days) => {
            // The rest waits for the PUT's answer.
            d.writes.push_back(AccountWrite::PutInterval(days));
            d.rotation_step = Some(plan.rotation);
        }
        None => account_settled(&mut d, plan.rotation),
    }
    d
}

/// Folds the outcome of the decision's next write back in.
pub fn after_write(mut d: PassDecision, outcome: WriteOutcome) -> PassDecision {
    d.writes.pop_front();
    match outcome {
        WriteOutcome::Put(Ok(updated)) => {
            let before = d.account.take().unwrap_or_default();
            let days = d.settled.wanted;
            let (reason, message) = if d.settled.spec_seen {
                (
                    EventReason::DriftCorrected,
                    format!(
                        "the account's interval had drifted to {}; set it back to {days} days",
                        describe_days(before.key_rotation_interval_days)
                    ),
                )
            } else {
                (
                    EventReason::IntervalUpdated,
                    format!(
                        "set the account's rotation interval to {days} days (was {})",
                        describe_days(before.key_rotation_interval_days)
                    ),
                )
            };
            d.events.push((reason, message));
            d.account = Some(merge_account(before, updated));
            let step = d.rotation_step.take().unwrap_or(RotationStep::Idle);
            account_settled(&mut d, step);
        }
        WriteOutcome::Put(Err(err)) => d.cloudflare_failed(&err, "setting the interval"),
        WriteOutcome::PendingStatusWritten => {}
        WriteOutcome::Post(result) => {
            let (request, window_start) = d
                .status
                .pending_rotation
                .as_ref()
                .map(|p| (p.request.clone(), p.window_start))
                .unwrap_or_default();
            let done = |d: &mut PassDecision, request: String, outcome| match window_start {
                Some(start) => d.handle_window(start, outcome),
                None => d.handle(request, outcome),
            };
            match result {
                Ok(rotated) => {
                    let merged = merge_account(account_from_status(&d.status), rotated);
                    record_account(&mut d.status, &merged);
                    let message = match window_start {
                        Some(start) => format!(
                            "rotated the signing key in the maintenance window starting {start}"
                        ),
                        None => format!("rotated the signing key for request {request:?}"),
                    };
                    d.events.push((EventReason::Rotated, message));
                    done(&mut d, request, RotateOutcome::Rotated);
                    d.finish();
                }
                Err(err) => {
                    if failure::post_refused(&err) {
                        // Refused outright: nothing happened, the request is done.
                        done(&mut d, request, RotateOutcome::Failed);
                    }
                    // Otherwise unknown whether it happened: it stays pending and
                    // the next pass asks the account.
                    d.cloudflare_failed(&err, "rotating the key");
                }
            }
        }
    }
    d
}

/// The account as the interval writes left it: record it, take the rotation
/// step, and finish unless a rotation is still to be written.
fn account_settled(d: &mut PassDecision, step: RotationStep) {
    if let Some(account) = &d.account {
        record_account(&mut d.status, account);
    }
    d.rotation(step);
    if d.writes.is_empty() {
        d.finish();
    }
}

/// A write's answer may omit fields; keep what the read said for those.
fn merge_account(before: AccountKeyConfig, after: AccountKeyConfig) -> AccountKeyConfig {
    AccountKeyConfig {
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

fn account_from_status(status: &AccessKeyPolicyStatus) -> AccountKeyConfig {
    AccountKeyConfig {
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

#[cfg(test)]
#[path = "pass_tests.rs"]
mod tests;
