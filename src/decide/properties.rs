//! Properties of the pure decisions, over generated inputs: Observe mode never
//! plans a write, a rotate request value never leads to two POSTs whatever
//! crashes and lost answers happen, only verified policies own an account, and
//! what the pure plan does (and does not) decide about `suspend`.
//!
//! The exactly-once property drives the shipped decision functions
//! ([`super::pass`] and [`super::after_write`]) the way the controller does,
//! against a model world: a stored status (the API server), a model account
//! (Cloudflare) with its own clock, and passes that can crash at every point
//! between their status writes and the POST. The model reads the status it
//! wrote last (a linearizable read); see
//! `a_stale_status_read_is_what_the_protocol_must_never_see` for why that
//! matters.

use std::{collections::BTreeMap, time::Duration};

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::{
    AccountClock, AccountWrite, ClaimRecord, ClaimStep, Holder, PassInput, RotateRequest,
    RotationStep, SecretRead, WriteOutcome, after_write, claim_step, decide_rotation,
    must_ask_holder, pass as decide_pass, plan_account, witness::CLOCK_SKEW_ALLOWANCE,
};
use crate::{
    cloudflare::{AccountKeyConfig, CloudflareError, TransportKind},
    crd::{
        AccessKeyPolicySpec, AccessKeyPolicyStatus, ManagementPolicy, PendingRotation,
        RotateOutcome,
    },
};

const DAY: i64 = 86_400;

fn base_time() -> Timestamp {
    Timestamp::from_second(1_790_000_000).expect("valid timestamp")
}

/// The account's clock and ours agree, and the account sent no `Date`.
fn ours(now: Timestamp) -> AccountClock {
    AccountClock {
        served_at: None,
        operator_now: now,
    }
}

fn at(offset_micros: i64) -> Timestamp {
    base_time()
        .checked_add(SignedDuration::from_micros(offset_micros))
        .expect("in range")
}

fn spec(
    days: i32,
    mode: ManagementPolicy,
    cooldown_secs: u64,
    suspend: bool,
) -> AccessKeyPolicySpec {
    super::fixtures::spec(serde_json::json!({
        "keyRotationIntervalDays": days,
        "managementPolicy": mode,
        "rotationCooldown": format!("{cooldown_secs}s"),
        "suspend": suspend,
    }))
}

fn mode() -> impl Strategy<Value = ManagementPolicy> {
    prop_oneof![
        Just(ManagementPolicy::Manage),
        Just(ManagementPolicy::Observe)
    ]
}

/// A timestamp within ±60 days of the base, or none.
fn maybe_time() -> impl Strategy<Value = Option<Timestamp>> {
    proptest::option::of((-60 * DAY * 1_000_000..60 * DAY * 1_000_000).prop_map(at))
}

/// Request values from a small alphabet, so that status and request often agree.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("r1".to_owned()),
        Just("r2".to_owned()),
        "[a-z0-9:-]{1,12}"
    ]
}

fn request() -> impl Strategy<Value = Option<RotateRequest>> {
    proptest::option::of(
        (value(), any::<bool>()).prop_map(|(value, force)| RotateRequest { value, force }),
    )
}

/// Any status the operator (or a user with status access) may have left.
fn status() -> impl Strategy<Value = AccessKeyPolicyStatus> {
    (
        proptest::option::of(value()),
        proptest::option::of((value(), maybe_time())),
        proptest::option::of(21i64..=365),
        maybe_time(),
    )
        .prop_map(|(handled, pending, original, last)| AccessKeyPolicyStatus {
            last_handled_rotate_request: handled,
            pending_rotation: pending.map(|(request, baseline_key_rotation_at)| {
                Box::new(PendingRotation {
                    request,
                    baseline_key_rotation_at,
                    window_start: None,
                })
            }),
            original_key_rotation_interval_days: original,
            last_key_rotation_at: last,
            ..Default::default()
        })
}

/// Any account answer, including the odd ones the lenient envelope lets through.
fn account() -> impl Strategy<Value = AccountKeyConfig> {
    (
        proptest::option::of(prop_oneof![21i64..=365, any::<i64>()]),
        proptest::option::of(prop_oneof![0.0f64..400.0, any::<f64>()]),
        maybe_time(),
    )
        .prop_map(|(interval, days, last)| AccountKeyConfig {
            key_rotation_interval_days: interval,
            days_until_next_rotation: days,
            last_key_rotation_at: last,
            served_at: None,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Observe mode: no PUT, and no Begin (so no POST), whatever status,
    /// request, account and time. A Confirmed step is no write: it records a
    /// rotation the account already shows.
    #[test]
    fn observe_mode_never_plans_a_write(
        days in 21i32..=365,
        cooldown in 0u64..30 * 86_400,
        status in status(),
        request in request(),
        account in account(),
        now in (-60 * DAY * 1_000_000..60 * DAY * 1_000_000).prop_map(at),
    ) {
        let spec = spec(days, ManagementPolicy::Observe, cooldown, false);
        let plan = plan_account(&spec, &status, request.as_ref(), &account, ours(now), Duration::ZERO);
        prop_assert_eq!(plan.update_interval, None);
        prop_assert!(!matches!(plan.rotation, RotationStep::Begin { .. }), "{:?}", plan.rotation);
        if let RotationStep::Refuse { outcome, .. } = &plan.rotation {
            prop_assert_eq!(*outcome, RotateOutcome::RefusedObserveOnly);
        }
    }

    /// Manage mode writes the interval exactly when the account differs from the spec.
    #[test]
    fn manage_mode_puts_exactly_when_the_account_differs(
        days in 21i32..=365,
        status in status(),
        request in request(),
        account in account(),
    ) {
        let spec = spec(days, ManagementPolicy::Manage, 0, false);
        let plan = plan_account(&spec, &status, request.as_ref(), &account, ours(base_time()), Duration::ZERO);
        let differs = account.key_rotation_interval_days != Some(i64::from(days));
        prop_assert_eq!(plan.update_interval, differs.then_some(i64::from(days)));
    }

    /// The pure plan does not look at `suspend` (the controller returns before
    /// reading the Secret, see `Pass::run`): a suspended and an active spec
    /// plan the same, so "suspend never calls" rests on that early return and
    /// on the integration tests, not on this function.
    #[test]
    fn the_plan_is_blind_to_suspend(
        days in 21i32..=365,
        mode in mode(),
        cooldown in 0u64..30 * 86_400,
        status in status(),
        request in request(),
        account in account(),
    ) {
        let active = plan_account(&spec(days, mode, cooldown, false), &status, request.as_ref(), &account, ours(base_time()), Duration::ZERO);
        let suspended = plan_account(&spec(days, mode, cooldown, true), &status, request.as_ref(), &account, ours(base_time()), Duration::ZERO);
        prop_assert_eq!(active, suspended);
    }

    /// A handled request value is never begun again, and a request without a
    /// value change never leads anywhere but Idle.
    #[test]
    fn a_handled_value_is_idle(
        mode in mode(),
        cooldown in 0u64..30 * 86_400,
        mut status in status(),
        request in request(),
        last in maybe_time(),
    ) {
        if let Some(request) = &request {
            status.last_handled_rotate_request = Some(request.value.clone());
        }
        let step = decide_rotation(request.as_ref(), &status, mode, Duration::from_secs(cooldown), last, ours(base_time()));
        prop_assert_eq!(step, RotationStep::Idle);
    }

    /// Ownership: the claim protocol driven by the shipped step function over
    /// random passes of up to five policies (some with credentials that never
    /// read the account, some that stop working, some that go away) at random
    /// times. A policy whose credentials never read the account never owns
    /// it; at every moment at most one policy owns it; an owner that keeps
    /// renewing is never displaced, whatever the others do.
    #[test]
    fn only_verified_policies_own_an_account_and_a_renewing_owner_keeps_it(
        policies in proptest::collection::vec((any::<bool>(), 0u32..100), 2..6),
        passes in proptest::collection::vec((0usize..5, 0u64..1_500, any::<bool>()), 1..60),
    ) {
        let duration = Duration::from_secs(3_600);
        let names: Vec<String> = (0..policies.len()).map(|i| format!("ns{}/p{i}", i % 2)).collect();
        // (credentials read the account, after which pass they stop working)
        let mut record: Option<ClaimRecord> = None;
        let mut now = base_time();
        let mut gone = vec![false; policies.len()];
        for (n, (who, seconds, leave)) in passes.into_iter().enumerate() {
            now += SignedDuration::from_secs(i64::try_from(seconds).unwrap_or(0));
            let i = who % policies.len();
            let (verified, stops_after) = policies[i];
            let reads = verified && u32::try_from(n).unwrap_or(u32::MAX) < stops_after && !gone[i];
            if leave && n % 3 == 0 {
                // Deleted, switched to Observe or suspended: no more passes.
                gone[i] = true;
            }
            if !reads {
                continue;
            }
            let me = &names[i];
            let holder = if must_ask_holder(me, record.as_ref(), now) {
                let idx = names.iter().position(|h| Some(h) == record.as_ref().map(|r| &r.holder));
                if idx.is_some_and(|h| gone[h]) { Holder::Gone } else { Holder::Active }
            } else {
                Holder::NotAsked
            };
            let before = record.clone();
            match claim_step(me, record.as_ref(), holder, now, duration) {
                ClaimStep::Create | ClaimStep::TakeOver => {
                    record = Some(ClaimRecord { holder: me.clone(), acquired: now, renewed: now, duration });
                }
                ClaimStep::Renew => {
                    if let Some(r) = record.as_mut() { r.renewed = now; r.duration = duration; }
                }
                ClaimStep::Keep => prop_assert_eq!(record.as_ref().map(|r| &r.holder), Some(me)),
                ClaimStep::Lost { holder } => {
                    prop_assert_eq!(Some(&holder), before.as_ref().map(|r| &r.holder));
                    prop_assert!(&holder != me);
                }
            }
            // Only a policy whose credentials just read the account can hold it.
            let holder_now = record.as_ref().map(|r| r.holder.clone());
            let verified_holder = holder_now
                .as_ref()
                .is_none_or(|h| names.iter().position(|x| x == h).is_some_and(|k| policies[k].0));
            prop_assert!(verified_holder, "a policy that never read the account holds it");
            // A renewing, present owner is never displaced.
            if let (Some(prev), Some(now_holder)) = (before.as_ref(), holder_now.as_ref()) {
                let prev_idx = names.iter().position(|x| *x == prev.holder);
                if prev.holder != *now_holder && !prev.expired(now) {
                    prop_assert!(prev_idx.is_some_and(|k| gone[k]), "an active owner lost a live claim");
                }
            }
        }
    }
}

// ---- The exactly-once model ---------------------------------------------------

/// Where a pass may die (SIGKILL, node loss, lease lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crash {
    None,
    /// After the decision, before the pending status reached the API server.
    BeforePendingWrite,
    /// Pending status stored, POST not sent (`rotate-before-post`).
    BeforePost,
    /// POST answered, outcome not stored (`rotate-after-post`).
    AfterPost,
}

/// What Cloudflare does with one POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PostFate {
    /// Rotated, answered 200.
    Ok,
    /// Rotated, but the answer was lost (timeout, truncated body, 5xx from a proxy).
    LandedAnswerLost,
    /// Not rotated, answered 5xx or timed out before reaching Cloudflare.
    NotLanded,
    /// Refused with a 4xx.
    Refused,
    /// Not sent: the credential's budget put it off (a 429 block, or no
    /// slot soon); the pass ends without writing the status.
    PutOff,
}

/// How one answer of the account writes `last_key_rotation_at`: fractional
/// digits kept (the rest cut off, as a coarser RFC 3339 form does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precision {
    Seconds,
    Millis,
    Micros,
}

impl Precision {
    fn cut(self, at: Timestamp) -> Timestamp {
        let unit: i128 = match self {
            Self::Seconds => 1_000_000_000,
            Self::Millis => 1_000_000,
            Self::Micros => 1_000,
        };
        let nanos = at.as_nanosecond();
        Timestamp::from_nanosecond(nanos - nanos.rem_euclid(unit)).expect("in range")
    }
}

/// One reconcile pass and what the account's answers look like during it.
#[derive(Debug, Clone, Copy)]
struct PassShape {
    crash: Crash,
    fate: PostFate,
    /// Precision of the GET's `last_key_rotation_at`.
    precision: Precision,
    /// Whether the GET carried a `Date` header.
    dated: bool,
    /// Account time between the GET's answer and the POST being served (µs, > 0).
    latency: i64,
    /// How far behind the `Date` clock the server stamping the rotation is (µs, < 1 s).
    stamp_lag: i64,
}

/// One thing that happens in the world between or during passes.
#[derive(Debug, Clone)]
enum Event {
    /// The user sets a new, never used request value (with or without force).
    NewRequest { force: bool },
    /// The user removes the request annotation.
    ClearRequest,
    /// The user switches the management policy.
    SetMode(ManagementPolicy),
    /// The account rotates by itself.
    AutoRotate,
    /// Time passes (microseconds, at least one).
    Tick(i64),
    /// One reconcile pass.
    Pass(PassShape),
}

fn pass_shape() -> impl Strategy<Value = PassShape> {
    let crash = prop_oneof![
        3 => Just(Crash::None),
        1 => Just(Crash::BeforePendingWrite),
        1 => Just(Crash::BeforePost),
        1 => Just(Crash::AfterPost),
    ];
    let fate = prop_oneof![
        4 => Just(PostFate::Ok),
        1 => Just(PostFate::LandedAnswerLost),
        1 => Just(PostFate::NotLanded),
        1 => Just(PostFate::Refused),
        1 => Just(PostFate::PutOff),
    ];
    let precision = prop_oneof![
        Just(Precision::Seconds),
        Just(Precision::Millis),
        Just(Precision::Micros),
    ];
    (
        crash,
        fate,
        precision,
        prop_oneof![4 => Just(true), 1 => Just(false)],
        1i64..400_000,
        0i64..1_000_000,
    )
        .prop_map(
            |(crash, fate, precision, dated, latency, stamp_lag)| PassShape {
                crash,
                fate,
                precision,
                dated,
                latency,
                stamp_lag,
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        2 => any::<bool>().prop_map(|force| Event::NewRequest { force }),
        1 => Just(Event::ClearRequest),
        1 => mode().prop_map(Event::SetMode),
        1 => Just(Event::AutoRotate),
        // Mostly sub-second steps, so that requests and rotations share seconds.
        2 => (1i64..1_500_000).prop_map(Event::Tick),
        1 => (1i64..3 * DAY * 1_000_000).prop_map(Event::Tick),
        8 => pass_shape().prop_map(Event::Pass),
    ]
}

/// The model world: what the API server stores, what Cloudflare holds, the
/// two clocks, and the POSTs each request value led to.
struct World {
    /// The account's clock (the truth; Cloudflare stamps rotations with it).
    now: Timestamp,
    /// The operator's clock minus the account's.
    skew: SignedDuration,
    annotations: BTreeMap<String, String>,
    mode: ManagementPolicy,
    cooldown_secs: u64,
    stored: AccessKeyPolicyStatus,
    account_last: Option<Timestamp>,
    next_value: u32,
    /// POSTs sent, per request value.
    posts: BTreeMap<String, u32>,
    /// POSTs that rotated the key, per request value.
    rotations: BTreeMap<String, u32>,
    /// POSTs that Cloudflare did not act on (4xx, 5xx, lost on the way), per value.
    not_landed: BTreeMap<String, u32>,
}

impl World {
    fn new(
        mode: ManagementPolicy,
        cooldown_secs: u64,
        account_last: Option<Timestamp>,
        skew: SignedDuration,
    ) -> Self {
        Self {
            now: base_time(),
            skew,
            annotations: BTreeMap::new(),
            mode,
            cooldown_secs,
            stored: AccessKeyPolicyStatus::default(),
            account_last,
            next_value: 0,
            posts: BTreeMap::new(),
            rotations: BTreeMap::new(),
            not_landed: BTreeMap::new(),
        }
    }

    fn tick(&mut self, micros: i64) {
        self.now = self
            .now
            .checked_add(SignedDuration::from_micros(micros.max(1)))
            .expect("in range");
    }

    fn apply(&mut self, event: &Event) {
        match event {
            Event::NewRequest { force } => {
                self.next_value += 1;
                let value = format!("request-{}", self.next_value);
                self.annotations.insert(
                    crate::crd::ANNOTATION_ROTATE_REQUESTED_AT.to_owned(),
                    value.clone(),
                );
                // A forced request carries its own value as the force token;
                // a plain one leaves the earlier token in place (as Git would),
                // which must not force it.
                if *force {
                    self.annotations
                        .insert(crate::crd::ANNOTATION_ROTATE_FORCE.to_owned(), value);
                }
            }
            Event::ClearRequest => {
                self.annotations
                    .remove(crate::crd::ANNOTATION_ROTATE_REQUESTED_AT);
            }
            Event::SetMode(mode) => self.mode = *mode,
            Event::AutoRotate => self.account_last = Some(self.now),
            Event::Tick(micros) => self.tick(*micros),
            Event::Pass(shape) => self.pass(*shape),
        }
        // Every event takes a little time: two rotations never share a microsecond.
        self.tick(1);
    }

    /// One reconcile as the controller runs it, from the status last stored:
    /// the shipped [`pass`] decides (once to ask for the account, once with
    /// the GET's answer at the pass's precision, with or without `Date`), and
    /// its writes are performed in order and folded back with [`after_write`],
    /// with the crash and the POST's fate the pass was drawn with.
    fn pass(&mut self, shape: PassShape) {
        let stored = self.stored.clone();
        let spec = spec(30, self.mode, self.cooldown_secs, false);
        let served_at = shape.dated.then(|| Precision::Seconds.cut(self.now));
        let input = PassInput {
            namespace: "ns",
            spec: &spec,
            written: &stored,
            generation: Some(1),
            request: RotateRequest::from_annotations(&self.annotations),
            secret: SecretRead::Valid {
                version: "1".to_owned(),
            },
            owner: None,
            demand: None,
            was_late: false,
            refusal: None,
            now: self.now.checked_add(self.skew).expect("in range"),
            instant: std::time::Instant::now(),
            drift_check_floor: Duration::from_secs(1),
            min_rotation_cooldown: Duration::ZERO,
        };
        let first = decide_pass(&input, None);
        assert!(
            first.read_account,
            "an active Manage or Observe pass reads the account"
        );
        let account = AccountKeyConfig {
            key_rotation_interval_days: Some(30),
            days_until_next_rotation: None,
            last_key_rotation_at: self.account_last.map(|at| shape.precision.cut(at)),
            served_at,
        };
        let mut decision = decide_pass(&input, Some(Ok(account)));
        while let Some(write) = decision.writes.front().copied() {
            let outcome = match write {
                AccountWrite::PutInterval(_) => {
                    unreachable!("the model account has the spec's interval")
                }
                AccountWrite::PendingStatus => {
                    if shape.crash == Crash::BeforePendingWrite {
                        return;
                    }
                    self.stored = decision.status.clone();
                    WriteOutcome::PendingStatusWritten
                }
                AccountWrite::PostRotate => {
                    if shape.crash == Crash::BeforePost {
                        return;
                    }
                    let request = decision
                        .status
                        .pending_rotation
                        .as_ref()
                        .map(|p| p.request.clone())
                        .expect("a POST follows a pending write");
                    if shape.fate == PostFate::PutOff {
                        decision = after_write(
                            decision,
                            WriteOutcome::Post(Err(CloudflareError::PutOff {
                                wait: Duration::from_secs(1),
                            })),
                        );
                        continue;
                    }
                    *self.posts.entry(request.clone()).or_default() += 1;
                    self.tick(shape.latency);
                    match shape.fate {
                        PostFate::Ok | PostFate::LandedAnswerLost => {
                            let stamp = self
                                .now
                                .checked_sub(SignedDuration::from_micros(shape.stamp_lag))
                                .expect("in range");
                            self.account_last = Some(stamp);
                            *self.rotations.entry(request).or_default() += 1;
                        }
                        PostFate::NotLanded | PostFate::Refused => {
                            *self.not_landed.entry(request).or_default() += 1;
                        }
                        PostFate::PutOff => unreachable!("a put-off POST is not sent"),
                    }
                    if shape.crash == Crash::AfterPost {
                        return;
                    }
                    WriteOutcome::Post(match shape.fate {
                        PostFate::Ok => Ok(AccountKeyConfig {
                            key_rotation_interval_days: Some(30),
                            days_until_next_rotation: Some(30.0),
                            last_key_rotation_at: self
                                .account_last
                                .map(|at| shape.precision.cut(at)),
                            served_at: Some(Precision::Seconds.cut(self.now)),
                        }),
                        PostFate::LandedAnswerLost => Err(CloudflareError::Transport {
                            kind: TransportKind::Timeout,
                            detail: "answer lost".to_owned(),
                            attempts: 1,
                        }),
                        PostFate::NotLanded => Err(CloudflareError::Server {
                            status: 502,
                            code: None,
                            message: "bad gateway".to_owned(),
                            attempts: 1,
                        }),
                        PostFate::Refused => Err(CloudflareError::Rejected {
                            status: 400,
                            code: Some(10000),
                            message: "refused".to_owned(),
                            pointer: None,
                        }),
                        PostFate::PutOff => unreachable!("a put-off POST is not sent"),
                    })
                }
            };
            decision = after_write(decision, outcome);
        }
        // A pass put off on its budget writes no status (the controller skips it).
        if shape.crash == Crash::None && decision.put_off.is_none() {
            self.stored = decision.status;
        }
    }

    /// At most one rotation per request value; a value is POSTed again only
    /// after a POST of it that Cloudflare did not act on.
    fn check(&self) -> Result<(), TestCaseError> {
        for (value, posts) in &self.posts {
            let rotations = self.rotations.get(value).copied().unwrap_or(0);
            let lost = self.not_landed.get(value).copied().unwrap_or(0);
            prop_assert!(rotations <= 1, "{value} rotated the key {rotations} times");
            prop_assert!(
                *posts <= 1 + lost,
                "{value}: {posts} POSTs, only {lost} of them not acted on"
            );
        }
        Ok(())
    }
}

/// A pass that does not crash, gets Cloudflare's answer and sees a `Date`.
fn clean_pass(precision: Precision) -> PassShape {
    PassShape {
        crash: Crash::None,
        fate: PostFate::Ok,
        precision,
        dated: true,
        latency: 1_000,
        stamp_lag: 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Whatever the interleaving of requests (forced ones in the same second
    /// as the previous rotation included), crashes at each point of the
    /// protocol, lost answers, refusals, automatic rotations, mode switches,
    /// the precision of each answer (seconds, millis, micros), a `Date`
    /// header or none, the account's servers disagreeing by up to a second,
    /// and any clock skew between the operator and the account (within
    /// [`CLOCK_SKEW_ALLOWANCE`] when some answers have no `Date`, unbounded
    /// when all do): no request value rotates the key twice, and a value is
    /// POSTed a second time only after a POST of it that Cloudflare did not
    /// act on (the account did not move, so asking again is the only way to
    /// honour the request). Once crashes stop, the current request is handled.
    #[test]
    fn no_request_value_is_ever_posted_twice(
        initial_mode in mode(),
        cooldown in prop_oneof![Just(0u64), 1u64..14 * 86_400],
        never_rotated in any::<bool>(),
        always_dated in any::<bool>(),
        skew_secs in prop_oneof![-86_400i64..86_400, -5i64..5],
        events in proptest::collection::vec(event(), 1..80),
    ) {
        let allowance = CLOCK_SKEW_ALLOWANCE.as_secs() - 1;
        let skew = if always_dated { skew_secs } else { skew_secs.clamp(-allowance, allowance) };
        let last = (!never_rotated).then(|| at(-40 * DAY * 1_000_000));
        let mut world = World::new(initial_mode, cooldown, last, SignedDuration::from_secs(skew));
        for event in &events {
            let event = match event {
                Event::Pass(shape) if always_dated => Event::Pass(PassShape { dated: true, ..*shape }),
                other => other.clone(),
            };
            world.apply(&event);
            world.check()?;
        }
        // Liveness: with no more crashes, Cloudflare answering and the account's
        // clock past any hold, the request is handled.
        for _ in 0..2 {
            world.tick((CLOCK_SKEW_ALLOWANCE.as_secs() + 3) * 1_000_000);
            world.pass(clean_pass(Precision::Seconds));
        }
        if let Some(request) = RotateRequest::from_annotations(&world.annotations) {
            prop_assert_eq!(world.stored.last_handled_rotate_request.as_deref(), Some(request.value.as_str()));
            prop_assert_eq!(world.stored.pending_rotation.as_ref(), None);
        }
        world.check()?;
    }
}

/// The double rotation an independent Cloudflare fake found, replayed on the
/// model: a rotation, a forced request right after it in the same second, the
/// POST answered but the operator killed before recording it, every answer
/// in whole seconds. The restarted pass must see the rotation and not POST.
#[test]
fn a_forced_request_in_the_same_second_as_the_last_rotation_rotates_once() {
    for precision in [Precision::Seconds, Precision::Millis, Precision::Micros] {
        let mut world = World::new(
            ManagementPolicy::Manage,
            0,
            Some(at(-40 * DAY * 1_000_000)),
            SignedDuration::ZERO,
        );
        world.apply(&Event::NewRequest { force: true });
        world.apply(&Event::Pass(clean_pass(precision)));
        assert_eq!(world.rotations.get("request-1"), Some(&1));
        world.apply(&Event::NewRequest { force: true });
        // Within the same second: held, nothing posted.
        world.apply(&Event::Pass(PassShape {
            crash: Crash::AfterPost,
            ..clean_pass(precision)
        }));
        assert_eq!(world.posts.get("request-2"), None, "{precision:?}");
        // Seconds later: begun, posted, killed before the outcome was stored.
        world.tick(3_000_000);
        world.apply(&Event::Pass(PassShape {
            crash: Crash::AfterPost,
            ..clean_pass(precision)
        }));
        assert_eq!(world.posts.get("request-2"), Some(&1), "{precision:?}");
        // The restarted operator reads the rotation at one-second precision.
        world.apply(&Event::Pass(clean_pass(Precision::Seconds)));
        assert_eq!(world.posts.get("request-2"), Some(&1), "{precision:?}");
        assert_eq!(
            world.stored.last_handled_rotate_request.as_deref(),
            Some("request-2")
        );
    }
}

/// The protocol's one assumption, shown on the model: a pass must start from
/// the status the previous pass wrote. A pass that reads an older status (a
/// cache that has not yet seen the pending write) POSTs the same value again
/// when nothing else stops it (`rotationCooldown: 0s`, or `rotate-force`).
/// The reconciler reads the policy from the watch cache, so a reconcile that
/// starts before the watch delivered its own last status write is this case;
/// see docs/reliability.md ("Known limits").
#[test]
fn a_stale_status_read_is_what_the_protocol_must_never_see() {
    let mut world = World::new(
        ManagementPolicy::Manage,
        0,
        Some(at(-40 * DAY * 1_000_000)),
        SignedDuration::ZERO,
    );
    world.apply(&Event::NewRequest { force: true });
    let before = world.stored.clone();
    world.apply(&Event::Pass(clean_pass(Precision::Micros)));
    assert_eq!(world.posts.get("request-1"), Some(&1));
    // A second pass that reads the status from before the first one wrote.
    world.stored = before;
    world.tick(3_000_000);
    world.apply(&Event::Pass(clean_pass(Precision::Micros)));
    assert_eq!(
        world.posts.get("request-1"),
        Some(&2),
        "a stale read POSTs twice: the operator must never decide from a status older than its own last write"
    );
}
