//! Maintenance windows on the real API server, with the simulator's clock
//! moved through months: rotations land inside the window before each of the
//! account's own rotations (across a daylight-saving change), Observe mode
//! never writes, a crash during a window's rotation rotates once, and a
//! window that cannot fit is reported and never rotated outside of.
//!
//! The operator's "now" is the account's clock (the `Date` header of every
//! answer), which the simulator's clock drives; the test moves that clock in
//! steps and waits for the operator to have read the account after each.

mod support;

use std::time::Duration;

use jiff::{SignedDuration, Timestamp, civil::Weekday, tz::TimeZone};
use keyrotor::crd::{AccessKeyPolicy, PlannedRotationReason, RotateOutcome};
use keyrotor_cloudflare_sim::AccountSeed;
use serde_json::{Value, json};
use support::{ACCOUNT, Scenario, condition, is_ready};

const DAY: i64 = 86_400;
/// The policy's rotation cooldown (the default); the test operator's own minimum is 0s.
const COOLDOWN: SignedDuration = SignedDuration::from_hours(168);
const PAUSE_AFTER_POST: [(&str, &str); 1] = [("KEYROTOR_TEST_PAUSE_AT", "rotate-after-post")];

/// Tuesdays 03:00 to 05:00 in Berlin.
fn tuesday_window() -> Value {
    json!({"schedule": "0 3 * * TUE", "duration": "2h", "timeZone": "Europe/Berlin"})
}

/// Whether `at` is inside a Tuesday 03:00-05:00 Berlin window, judged on the
/// wall clock in Berlin (independent of how the operator computes windows).
fn in_tuesday_window(at: Timestamp) -> bool {
    let berlin = at.to_zoned(TimeZone::get("Europe/Berlin").expect("zone"));
    berlin.weekday() == Weekday::Tuesday && (3..5).contains(&berlin.hour())
}

/// The account rotated `days_ago` days before the simulator's present.
fn seed_account(s: &Scenario, interval: i64, days_ago: i64) {
    let last = s
        .sim()
        .now()
        .checked_sub(SignedDuration::from_secs(days_ago * DAY))
        .expect("in range");
    s.sim().upsert_account(
        AccountSeed::new(ACCOUNT)
            .with_interval(interval)
            .last_rotated_at(last),
    );
}

/// Moves the simulator's clock to `target` (never back) and waits until the
/// operator has read the account twice on the new clock, so the pass that
/// saw it has finished and written its status.
async fn move_clock_to(s: &Scenario, target: Timestamp) {
    let now = s.sim().now();
    if target > now {
        let by = Duration::try_from(target.duration_since(now)).expect("forward");
        s.sim().advance_clock(by);
    }
    let seen = || s.calls("GET").iter().filter(|r| r.time >= target).count();
    let deadline = std::time::Instant::now() + support::WAIT;
    while seen() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the operator did not read the account after the clock moved to {target}\n{}",
            s.operator_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn plus(at: Timestamp, seconds: i64) -> Timestamp {
    at.checked_add(SignedDuration::from_secs(seconds))
        .expect("in range")
}

fn planned(p: &AccessKeyPolicy) -> Option<(Timestamp, PlannedRotationReason)> {
    p.status
        .as_ref()
        .and_then(|st| st.planned_rotation.as_ref())
        .map(|planned| (planned.at, planned.reason))
}

fn window_condition(p: &AccessKeyPolicy) -> (String, String, String) {
    let c = condition(p, "RotationWindow").expect("a RotationWindow condition");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// The simulator's POSTs so far, by their time on its clock.
fn post_times(s: &Scenario) -> Vec<Timestamp> {
    s.calls("POST").iter().map(|r| r.time).collect()
}

/// Six simulated months of a weekly window and a 30-day interval: the clock
/// moves in steps of 3 to 5 days (to varying times of day), and into each
/// planned window at a random minute of it. Every rotation is a POST inside a
/// Tuesday 03:00-05:00 Berlin window (the March change to summer time
/// included), a week or more after the one before, one per 30-day cycle,
/// and the account never rotates on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_window_takes_every_rotation_for_six_months() {
    let mut s = Scenario::new("window").await;
    seed_account(&s, 30, 10);
    s.start_with_ready_policy(json!({"rotationWindow": tuesday_window()}))
        .await;
    let rotations_before = s.sim().account(ACCOUNT).expect("account").rotations;
    let start = s.sim().now();
    let end = plus(start, 183 * DAY);
    let mut step = 0i64;
    loop {
        let now = s.sim().now();
        if now >= end {
            break;
        }
        let p = s.policy("p").await;
        let (at, reason) = planned(&p).expect("a planned rotation");
        assert_eq!(
            reason,
            PlannedRotationReason::Window,
            "at {now}: {:?}",
            window_condition(&p)
        );
        // 3 to 5 days, never past the planned rotation: that
        // one is entered at some minute of its window.
        step += 1;
        let stride = 3 * DAY + (step * 7919 % (2 * DAY));
        let posts_before = s.calls("POST").len();
        if plus(now, stride) >= at {
            let into_window = (step * 997) % 6600;
            move_clock_to(&s, plus(at, into_window)).await;
            let rotated = s.calls("POST").len();
            assert_eq!(
                rotated,
                posts_before + 1,
                "one rotation in the window planned at {at} (entered {into_window}s in)\n{}",
                s.operator_log()
            );
        } else {
            move_clock_to(&s, plus(now, stride)).await;
            assert_eq!(
                s.calls("POST").len(),
                posts_before,
                "a rotation outside the planned window, at {}",
                s.sim().now()
            );
        }
    }
    let posts = post_times(&s);
    eprintln!("window rotations: {posts:?}");
    // 183 days of a 30-day interval, rotated about every four weeks.
    assert!(
        (6..=7).contains(&posts.len()),
        "{} rotations: {posts:?}",
        posts.len()
    );
    for at in &posts {
        assert!(
            in_tuesday_window(*at),
            "{at} is outside Tuesday 03:00-05:00 Berlin"
        );
    }
    for pair in posts.windows(2) {
        assert!(
            pair[1].duration_since(pair[0]) >= COOLDOWN,
            "two rotations within the cooldown: {pair:?}"
        );
    }
    // Both sides of the change to summer time (2027-03-28): 03:00 Berlin is 02:00Z, then 01:00Z.
    let offsets: std::collections::BTreeSet<i32> = posts
        .iter()
        .map(|at| {
            at.to_zoned(TimeZone::get("Europe/Berlin").expect("zone"))
                .offset()
                .seconds()
        })
        .collect();
    assert_eq!(
        offsets.into_iter().collect::<Vec<_>>(),
        vec![3600, 7200],
        "{posts:?}"
    );
    let account = s.sim().account(ACCOUNT).expect("account");
    assert_eq!(
        account.rotations - rotations_before,
        posts.len() as u64,
        "the account rotated on its own"
    );
    let p = s.policy("p").await;
    let status = p.status.expect("status");
    let last_window = status.last_window_rotation.expect("a window rotation");
    assert_eq!(last_window.outcome, RotateOutcome::Rotated);
    assert_eq!(
        status.last_handled_rotate_request, None,
        "window rotations are not annotation requests"
    );
    let events = s.wait_for_event("p", "Rotated").await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "Rotated" && note.contains("maintenance window")),
        "a Rotated event names the window: {events:?}"
    );
    s.assert_log_has_no_secret();
}

/// Observe mode plans the same rotation and reports it, and writes nothing:
/// through the planned window (in New York, across its own change to summer
/// time on 2027-03-14) and past the account's own rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_mode_reports_the_window_and_never_writes() {
    let mut s = Scenario::new("window-observe").await;
    // Rotated around 2027-02-20: its own rotation falls after the change.
    s.sim().advance_clock(Duration::from_secs(80 * DAY as u64));
    seed_account(&s, 30, 0);
    s.start_with_ready_policy(json!({
        "managementPolicy": "Observe",
        "rotationWindow": {"schedule": "30 9 * * 1-5", "duration": "90m", "timeZone": "America/New_York"},
    }))
    .await;
    let p = s.policy("p").await;
    let (at, reason) = planned(&p).expect("a planned rotation");
    assert_eq!(reason, PlannedRotationReason::Window);
    let (status, why, message) = window_condition(&p);
    assert_eq!((status.as_str(), why.as_str()), ("True", "Planned"));
    assert!(message.contains("Observe mode"), "{message}");
    let ny = at.to_zoned(TimeZone::get("America/New_York").expect("zone"));
    assert_eq!(
        (ny.hour(), ny.minute()),
        (9, 30),
        "planned at 09:30 New York: {ny}"
    );
    let rotations_before = s.sim().account(ACCOUNT).expect("account").rotations;
    move_clock_to(&s, plus(at, 600)).await;
    // Past the window: what it would have done, not a failure to fit.
    move_clock_to(&s, plus(at, 6 * 3600)).await;
    let (status, why, message) = window_condition(&s.policy("p").await);
    assert_eq!(
        (status.as_str(), why.as_str()),
        ("True", "Planned"),
        "{message}"
    );
    assert!(message.contains("would have rotated"), "{message}");
    assert!(
        !s.events("p")
            .await
            .iter()
            .any(|(reason, _)| reason == "NoWindowFits"),
        "Observe mode letting a window pass is no warning"
    );
    let automatic = p
        .status
        .as_ref()
        .and_then(|st| st.next_key_rotation_at)
        .expect("the account's own rotation");
    move_clock_to(&s, plus(automatic, 3600)).await;
    let writes: Vec<String> = s
        .sim()
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {} at {}", r.method, r.path, r.time))
        .collect();
    assert_eq!(writes, Vec::<String>::new(), "Observe mode wrote");
    assert_eq!(
        s.sim().account(ACCOUNT).expect("account").rotations - rotations_before,
        1,
        "only the account's own rotation"
    );
    let p = s.policy("p").await;
    assert!(is_ready(&p));
    assert_eq!(p.status.and_then(|st| st.last_window_rotation), None);
}

/// Killed after its POST, inside the window: the restarted operator (also
/// stopped at any POST) sees the rotation on the account and records it
/// without a second POST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_during_a_window_rotation_rotates_once() {
    let mut s = Scenario::new("window-crash").await;
    seed_account(&s, 30, 25);
    s.apply_token_secret().await;
    s.start_operator_with(&[], &PAUSE_AFTER_POST);
    s.create_policy(
        "p",
        json!({"rotationWindow": {"schedule": "0 12 * * *", "duration": "2h"}}),
    )
    .await;
    let p = s.wait_for("p", "Ready", is_ready).await;
    let (at, _) = planned(&p).expect("a planned rotation");
    s.sim().advance_clock(
        Duration::try_from(plus(at, 1800).duration_since(s.sim().now())).expect("forward"),
    );
    s.operator
        .as_ref()
        .expect("operator")
        .wait_for_log("pause point reached")
        .await;
    assert_eq!(s.calls("POST").len(), 1);
    let pending = s
        .policy("p")
        .await
        .status
        .and_then(|st| st.pending_rotation)
        .expect("the pending rotation was recorded before the POST");
    assert!(pending.window_start.is_some(), "{pending:?}");
    s.operator.as_mut().expect("operator").kill();
    s.start_operator_with(&[], &PAUSE_AFTER_POST);
    let p = s
        .wait_for("p", "the window's rotation recorded", |p| {
            p.status
                .as_ref()
                .and_then(|st| st.last_window_rotation.as_ref())
                .is_some()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.calls("POST").len(), 1, "POSTed again after the crash");
    assert!(
        !s.operator_log().contains("pause point reached"),
        "the restarted operator POSTed"
    );
    let status = p.status.expect("status");
    assert_eq!(
        status.last_window_rotation.map(|w| w.outcome),
        Some(RotateOutcome::Rotated)
    );
    assert_eq!(status.pending_rotation, None);
}

/// A window that never comes before the account's own rotation (New Year's
/// Day only, with the account due within three weeks), and one that passed
/// while the operator was away: both are reported (condition, event), and the
/// operator lets the account rotate on its own rather than rotate outside a
/// window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_cannot_fit_is_reported_and_nothing_rotates_outside_it() {
    let mut s = Scenario::new("window-nofit").await;
    seed_account(&s, 21, 1);
    s.start_with_ready_policy(json!({
        "keyRotationIntervalDays": 21,
        "rotationWindow": {"schedule": "0 0 1 1 *", "duration": "1h"},
    }))
    .await;
    let p = s
        .wait_for("p", "RotationWindow False", |p| {
            condition(p, "RotationWindow").is_some_and(|c| c.status == "False")
        })
        .await;
    let (_, reason, message) = window_condition(&p);
    assert_eq!(reason, "NoWindowFits");
    assert!(message.contains("no window of"), "{message}");
    assert!(is_ready(&p), "the account itself is as the spec says");
    let (automatic, why) = planned(&p).expect("the account's own rotation");
    assert_eq!(why, PlannedRotationReason::CloudflareSchedule);
    s.wait_for_event("p", "NoWindowFits").await;
    let rotations_before = s.sim().account(ACCOUNT).expect("account").rotations;
    move_clock_to(&s, plus(automatic, 3600)).await;
    assert!(s.calls("POST").is_empty(), "rotated outside a window");
    assert_eq!(
        s.sim().account(ACCOUNT).expect("account").rotations - rotations_before,
        1,
        "the account rotated on its own"
    );

    // A weekly window whose last start before the account's own rotation
    // was two days ago, while no operator ran.
    seed_account(&s, 30, 28);
    let missed = plus(s.sim().now(), -2 * DAY)
        .to_zoned(TimeZone::UTC)
        .round(jiff::Unit::Hour)
        .expect("round");
    let weekday = missed.weekday().to_sunday_zero_offset();
    s.patch_spec(
        "p",
        json!({
            "keyRotationIntervalDays": 30,
            "rotationWindow": {"schedule": format!("0 {} * * {weekday}", missed.hour()), "duration": "1h"},
        }),
    )
    .await;
    let p = s
        .wait_for("p", "the missed window reported", |p| {
            condition(p, "RotationWindow").is_some_and(|c| c.message.contains("passed without"))
        })
        .await;
    let (status, reason, _) = window_condition(&p);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "NoWindowFits")
    );
    move_clock_to(&s, plus(s.sim().now(), 3 * DAY)).await;
    assert!(s.calls("POST").is_empty(), "rotated outside a window");
}

/// What the API server cannot check, the operator reports: an unknown zone
/// is Ready False (InvalidSpec) with the zone named, while the interval is
/// still managed; the shape of the schedule is refused at admission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_window_is_refused_or_reported() {
    let mut s = Scenario::new("window-invalid").await;
    s.apply_token_secret().await;
    s.start_operator();
    let refused = s
        .policies()
        .create(
            &Default::default(),
            &serde_json::from_value(support::policy_object(
                "shape",
                support::spec_with(
                    "rotationWindow",
                    json!({"schedule": "0 3 * *", "duration": "2h"}),
                ),
            ))
            .expect("policy"),
        )
        .await
        .expect_err("four fields are refused");
    let message = support::api_message(refused);
    assert!(
        message.contains("schedule must be five cron fields"),
        "{message}"
    );
    s.create_policy(
        "p",
        json!({"rotationWindow": {"schedule": "0 3 * * TUE", "duration": "2h", "timeZone": "Europe/Berlinn"}}),
    )
    .await;
    let p = s.wait_ready_reason("p", "InvalidSpec").await;
    let ready = condition(&p, "Ready").expect("Ready");
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("Europe/Berlinn"),
        "{}",
        ready.message
    );
    let (status, reason, _) = window_condition(&p);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "InvalidWindow")
    );
    assert_eq!(
        s.sim()
            .account(ACCOUNT)
            .expect("account")
            .key_rotation_interval_days,
        30,
        "the interval is still managed"
    );
    s.wait_for_event("p", "InvalidSpec").await;
    // Fixed, it is Ready again.
    s.patch_spec(
        "p",
        json!({"rotationWindow": {"timeZone": "Europe/Berlin"}}),
    )
    .await;
    s.wait_for("p", "Ready", is_ready).await;
}
