//! Properties of the pure decisions, over generated inputs: Observe mode never
//! plans a write, a rotate request value never leads to two POSTs whatever
//! crashes and lost answers happen, exactly one policy owns an account, and
//! what the pure plan does (and does not) decide about `suspend`.
//!
//! The exactly-once property runs the decision functions inside a model of the
//! reconciler (`src/controller/reconciler.rs`): a stored status (the API
//! server), a model account (Cloudflare) and a reconcile pass that can crash at
//! every point between its status writes and the POST. The model reads the
//! status it wrote last (a linearizable read); see
//! `a_stale_status_read_is_what_the_protocol_must_never_see` for why that
//! matters.

use std::{collections::BTreeMap, time::Duration};

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::{AccountClaim, RotateRequest, RotationStep, decide_rotation, owner_of, plan_account};
use crate::{
    cloudflare::AccountKeyConfig,
    crd::{
        AccessKeyPolicySpec, AccessKeyPolicyStatus, ManagementPolicy, PendingRotation,
        RotateOutcome,
    },
};

const DAY: i64 = 86_400;

fn base_time() -> Timestamp {
    Timestamp::from_second(1_790_000_000).expect("valid timestamp")
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
    serde_json::from_value(serde_json::json!({
        "accountId": "023e105f4ecef8ad9ca31a8372d0c353",
        "keyRotationIntervalDays": days,
        "credentialsRef": {"name": "cf"},
        "managementPolicy": mode,
        "rotationCooldown": format!("{cooldown_secs}s"),
        "suspend": suspend,
    }))
    .expect("valid spec")
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
            pending_rotation: pending.map(|(request, baseline_key_rotation_at)| PendingRotation {
                request,
                baseline_key_rotation_at,
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
        let plan = plan_account(&spec, &status, request.as_ref(), &account, now);
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
        let plan = plan_account(&spec, &status, request.as_ref(), &account, base_time());
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
        let active = plan_account(&spec(days, mode, cooldown, false), &status, request.as_ref(), &account, base_time());
        let suspended = plan_account(&spec(days, mode, cooldown, true), &status, request.as_ref(), &account, base_time());
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
        let step = decide_rotation(request.as_ref(), &status, mode, Duration::from_secs(cooldown), last, base_time());
        prop_assert_eq!(step, RotationStep::Idle);
    }

    /// Ownership: exactly one claim owns the account, whatever the order the
    /// claims are listed in and whoever asks; every policy decides the same
    /// owner, so exactly one of them writes. Removing the owner hands the
    /// account to the next oldest; a newer claim never takes it.
    #[test]
    fn exactly_one_policy_owns_an_account(
        raw in proptest::collection::btree_map(
            ("[ab]", "[xyz]{1,2}"),
            0i64..4,
            1..8,
        ),
        rotation in 0usize..8,
        newcomer in ("[ab]", "[xyz]{1,2}"),
    ) {
        // Creation times have a one-second resolution: ties are frequent.
        let claims: Vec<AccountClaim> = raw
            .iter()
            .map(|((namespace, name), second)| AccountClaim {
                created: at(second * 1_000_000),
                namespace: namespace.clone(),
                name: name.clone(),
            })
            .collect();
        let owner = owner_of(&claims).expect("non-empty").clone();
        prop_assert!(claims.contains(&owner));
        // Each policy sees the claims in its own order (cache order differs per process).
        let mut rotated = claims.clone();
        rotated.rotate_left(rotation % claims.len());
        rotated.reverse();
        prop_assert_eq!(owner_of(&rotated), Some(&owner));
        let writers = claims
            .iter()
            .filter(|me| owner_of(&claims).is_some_and(|o| o == *me))
            .count();
        prop_assert_eq!(writers, 1);
        // The owner is the minimum by (created, namespace, name).
        for claim in &claims {
            prop_assert!((owner.created, &owner.namespace, &owner.name) <= (claim.created, &claim.namespace, &claim.name));
        }
        // A newer policy never takes over.
        if !raw.contains_key(&newcomer) {
            let mut more = claims.clone();
            more.push(AccountClaim { created: at(10 * 1_000_000), namespace: newcomer.0.clone(), name: newcomer.1.clone() });
            prop_assert_eq!(owner_of(&more), Some(&owner));
        }
        // Deleting the owner hands the account to the next oldest.
        let rest: Vec<AccountClaim> = claims.iter().filter(|c| **c != owner).cloned().collect();
        let next = rest.iter().min_by_key(|c| (c.created, c.namespace.clone(), c.name.clone()));
        prop_assert_eq!(owner_of(&rest), next);
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
    Pass { crash: Crash, fate: PostFate },
}

fn event() -> impl Strategy<Value = Event> {
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
    ];
    prop_oneof![
        2 => any::<bool>().prop_map(|force| Event::NewRequest { force }),
        1 => Just(Event::ClearRequest),
        1 => mode().prop_map(Event::SetMode),
        1 => Just(Event::AutoRotate),
        2 => (1i64..3 * DAY * 1_000_000).prop_map(Event::Tick),
        8 => (crash, fate).prop_map(|(crash, fate)| Event::Pass { crash, fate }),
    ]
}

/// The model world: what the API server stores, what Cloudflare holds, and
/// the POSTs each request value led to.
struct World {
    now: Timestamp,
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
    fn new(mode: ManagementPolicy, cooldown_secs: u64, account_last: Option<Timestamp>) -> Self {
        Self {
            now: base_time(),
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
                self.annotations.insert(
                    crate::crd::ANNOTATION_ROTATE_REQUESTED_AT.to_owned(),
                    format!("request-{}", self.next_value),
                );
                let force = if *force { "true" } else { "false" };
                self.annotations.insert(
                    crate::crd::ANNOTATION_ROTATE_FORCE.to_owned(),
                    force.to_owned(),
                );
            }
            Event::ClearRequest => {
                self.annotations
                    .remove(crate::crd::ANNOTATION_ROTATE_REQUESTED_AT);
            }
            Event::SetMode(mode) => self.mode = *mode,
            Event::AutoRotate => self.account_last = Some(self.now),
            Event::Tick(micros) => self.tick(*micros),
            Event::Pass { crash, fate } => self.pass(*crash, *fate),
        }
        // Every event takes a little time: two rotations never share a microsecond.
        self.tick(1);
    }

    /// One reconcile, in the reconciler's order, from the status last stored.
    fn pass(&mut self, crash: Crash, fate: PostFate) {
        let mut status = self.stored.clone();
        let request = RotateRequest::from_annotations(&self.annotations);
        let account = AccountKeyConfig {
            key_rotation_interval_days: Some(30),
            days_until_next_rotation: None,
            last_key_rotation_at: self.account_last,
        };
        let spec = spec(30, self.mode, self.cooldown_secs, false);
        let plan = plan_account(&spec, &status, request.as_ref(), &account, self.now);
        match plan.rotation {
            RotationStep::Idle => {}
            RotationStep::Refuse {
                request, outcome, ..
            } => {
                handle(&mut status, request, outcome);
            }
            RotationStep::Confirmed { request } => {
                handle(&mut status, request, RotateOutcome::Rotated);
            }
            RotationStep::Begin { request, baseline } => {
                if crash == Crash::BeforePendingWrite {
                    return;
                }
                status.pending_rotation = Some(PendingRotation {
                    request: request.clone(),
                    baseline_key_rotation_at: baseline,
                });
                self.stored = status.clone();
                if crash == Crash::BeforePost {
                    return;
                }
                *self.posts.entry(request.clone()).or_default() += 1;
                self.tick(1);
                match fate {
                    PostFate::Ok | PostFate::LandedAnswerLost => {
                        self.account_last = Some(self.now);
                        *self.rotations.entry(request.clone()).or_default() += 1;
                    }
                    PostFate::NotLanded | PostFate::Refused => {
                        *self.not_landed.entry(request.clone()).or_default() += 1;
                    }
                }
                if crash == Crash::AfterPost {
                    return;
                }
                match fate {
                    PostFate::Ok => handle(&mut status, request, RotateOutcome::Rotated),
                    PostFate::Refused => handle(&mut status, request, RotateOutcome::Failed),
                    // Outcome unknown: stays pending; the next pass asks the account.
                    PostFate::LandedAnswerLost | PostFate::NotLanded => {}
                }
            }
        }
        if crash == Crash::None {
            self.stored = status;
        }
    }
}

impl World {
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

fn handle(status: &mut AccessKeyPolicyStatus, request: String, outcome: RotateOutcome) {
    status.last_handled_rotate_request = Some(request);
    status.last_rotate_outcome = Some(outcome);
    status.pending_rotation = None;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the interleaving of requests, crashes at each point of the
    /// protocol, lost answers, refusals, automatic rotations and mode
    /// switches: no request value rotates the key twice, and a value is
    /// POSTed a second time only after a POST of it that Cloudflare did not
    /// act on (a 5xx or a connection that never reached it: the account did
    /// not move, so asking again is the only way to honour the request).
    /// Once crashes stop, the current request is handled within two passes.
    #[test]
    fn no_request_value_is_ever_posted_twice(
        initial_mode in mode(),
        cooldown in prop_oneof![Just(0u64), 1u64..14 * 86_400],
        never_rotated in any::<bool>(),
        events in proptest::collection::vec(event(), 1..60),
    ) {
        let last = (!never_rotated).then(|| at(-40 * DAY * 1_000_000));
        let mut world = World::new(initial_mode, cooldown, last);
        for event in &events {
            world.apply(event);
            world.check()?;
        }
        // Liveness: with no more crashes and Cloudflare answering, the request is handled.
        world.pass(Crash::None, PostFate::Ok);
        world.pass(Crash::None, PostFate::Ok);
        if let Some(request) = RotateRequest::from_annotations(&world.annotations) {
            prop_assert_eq!(world.stored.last_handled_rotate_request.as_deref(), Some(request.value.as_str()));
            prop_assert_eq!(world.stored.pending_rotation.as_ref(), None);
        }
        world.check()?;
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
    let mut world = World::new(ManagementPolicy::Manage, 0, Some(at(-40 * DAY * 1_000_000)));
    world.apply(&Event::NewRequest { force: true });
    let before = world.stored.clone();
    world.apply(&Event::Pass {
        crash: Crash::None,
        fate: PostFate::Ok,
    });
    assert_eq!(world.posts.get("request-1"), Some(&1));
    // A second pass that reads the status from before the first one wrote.
    world.stored = before;
    world.apply(&Event::Pass {
        crash: Crash::None,
        fate: PostFate::Ok,
    });
    assert_eq!(
        world.posts.get("request-1"),
        Some(&2),
        "a stale read POSTs twice: the operator must never decide from a status older than its own last write"
    );
}
