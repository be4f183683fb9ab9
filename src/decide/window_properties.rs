//! Properties of maintenance-window planning over generated schedules, time
//! zones (daylight saving included), intervals, cooldowns and clocks: a
//! rotation is never planned outside a window, never closer than the
//! cooldown to the last one, never later than the account's own rotation,
//! and never missed when some window before that rotation could hold it. A
//! model run over months checks the same of whole sequences of rotations.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::window::{
    AUTOMATIC_ROTATION_MARGIN, AccountSchedule, NoFit, Verdict, WindowSchedule, plan_window,
};
use crate::crd::{GoDuration, RotationWindow};

const DAY: i64 = 86_400;

const ZONES: [&str; 7] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/Santiago",
];

/// Schedules with a bounded number of starts a day, so a forward scan over
/// a year stays cheap: a minute and an hour (or an hour step), and a day rule.
fn schedule() -> impl Strategy<Value = String> {
    let hour = prop_oneof![
        (0u32..24).prop_map(|h| h.to_string()),
        (6u32..=12).prop_map(|step| format!("*/{step}")),
        (0u32..12, 12u32..24).prop_map(|(a, b)| format!("{a},{b}")),
    ];
    let days = prop_oneof![
        Just("* * *".to_owned()),
        (0u32..=7).prop_map(|d| format!("* * {d}")),
        (1u32..=5).prop_map(|d| format!("* * {d}-{}", d + 2)),
        proptest::sample::select(vec!["MON", "TUE,THU", "SAT,SUN", "FRI"])
            .prop_map(|d| format!("* * {d}")),
        (1u32..=28).prop_map(|d| format!("{d} * *")),
        (1u32..=28).prop_map(|d| format!("{d} */2 *")),
    ];
    (0u32..60, hour, days).prop_map(|(m, h, d)| format!("{m} {h} {d}"))
}

fn window() -> impl Strategy<Value = WindowSchedule> {
    (
        schedule(),
        1u64..=48 * 60,
        proptest::sample::select(ZONES.to_vec()),
    )
        .prop_map(|(schedule, minutes, zone)| {
            WindowSchedule::parse(&RotationWindow {
                schedule,
                duration: format!("{minutes}m")
                    .parse::<GoDuration>()
                    .expect("duration"),
                time_zone: zone.to_owned(),
            })
            .expect("generated windows are valid")
        })
}

fn time(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).expect("in range")
}

/// 2027-01-01 to 2030-12-31.
fn clock() -> impl Strategy<Value = i64> {
    1_798_761_600i64..1_924_905_600
}

fn plus(at: Timestamp, d: SignedDuration) -> Timestamp {
    at.checked_add(d).expect("in range")
}

/// Every window start from `from` up to `until`, scanning forwards.
fn starts_between(window: &WindowSchedule, from: Timestamp, until: Timestamp) -> Vec<Timestamp> {
    let mut starts = Vec::new();
    let mut at = from;
    while let Some(next) = window.next_start_after(at) {
        if next >= until {
            break;
        }
        starts.push(next);
        at = next;
    }
    starts
}

/// The days the clocks change, where the cron crate's own iterators lose
/// starts: 2029-03-25 in Berlin (00:00 CET, then 06:00, 12:00, 18:00 CEST).
#[test]
fn starts_on_the_day_the_clocks_change_are_all_found() {
    let w = WindowSchedule::parse(&RotationWindow {
        schedule: "0 */6 25 */2 *".into(),
        duration: "1m".parse::<GoDuration>().expect("duration"),
        time_zone: "Europe/Berlin".into(),
    })
    .expect("valid");
    let at = |text: &str| text.parse::<Timestamp>().expect("timestamp");
    let found = starts_between(&w, at("2029-01-25T17:00:00Z"), at("2029-05-01T00:00:00Z"));
    let expected = [
        "2029-03-24T23:00:00Z",
        "2029-03-25T04:00:00Z",
        "2029-03-25T10:00:00Z",
        "2029-03-25T16:00:00Z",
    ]
    .map(at);
    assert_eq!(found, expected);
    assert_eq!(
        w.last_start_before(at("2029-03-25T01:00:00Z")),
        Some(expected[0])
    );
    // The autumn change: 02:30 comes twice in Berlin on 2029-10-28; a start there counts once, the first.
    let fold = WindowSchedule::parse(&RotationWindow {
        schedule: "30 2 * * *".into(),
        duration: "1h".parse::<GoDuration>().expect("duration"),
        time_zone: "Europe/Berlin".into(),
    })
    .expect("valid");
    assert_eq!(
        starts_between(
            &fold,
            at("2029-10-27T12:00:00Z"),
            at("2029-10-29T12:00:00Z")
        ),
        ["2029-10-28T00:30:00Z", "2029-10-29T01:30:00Z"].map(at)
    );
    // The spring change: 02:30 does not exist on 2029-03-25; the start moves past the gap (03:30 CEST).
    assert_eq!(
        starts_between(
            &fold,
            at("2029-03-24T12:00:00Z"),
            at("2029-03-26T12:00:00Z")
        ),
        ["2029-03-25T01:30:00Z", "2029-03-26T00:30:00Z"].map(at)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn a_planned_rotation_is_in_a_window_after_the_cooldown_and_before_the_account_rotates(
        window in window(),
        interval in 21i64..=365,
        cooldown_days in 0u64..=30,
        since_last in 0i64..=400 * DAY,
        now in clock(),
    ) {
        let now = time(now);
        let last = time(now.as_second() - since_last);
        let cooldown = Duration::from_secs(cooldown_days * DAY as u64);
        let account = AccountSchedule { last_rotation: Some(last), interval_days: Some(interval) };
        let plan = plan_window(&window, account, cooldown, None, now).expect("plans");
        let automatic = plus(last, SignedDuration::from_hours(24 * interval));
        prop_assert_eq!(plan.automatic, Some(automatic));
        let deadline = plus(automatic, -AUTOMATIC_ROTATION_MARGIN);
        let earliest = plus(last, SignedDuration::try_from(cooldown).expect("fits"));
        // The reference: every window that could hold the rotation, found by
        // scanning forwards from the earliest start whose window reaches past
        // the cooldown's end.
        let fitting: Vec<Timestamp> = starts_between(&window, plus(earliest.min(deadline), -window.length()), deadline)
            .into_iter()
            .filter(|start| (*start).max(earliest) < plus(*start, window.length()).min(deadline))
            .collect();
        match plan.verdict {
            Verdict::InWindow { window_start, at, until, open } => {
                prop_assert!(at >= window_start && at < plus(window_start, window.length()), "not inside its window");
                prop_assert!(window.contains(at), "{at} is outside every window");
                prop_assert!(at >= earliest, "inside the cooldown");
                prop_assert!(at < deadline && until <= deadline, "not before the account's own rotation");
                prop_assert_eq!(fitting.last().copied(), Some(window_start), "not the last window that fits");
                prop_assert_eq!(open, now >= at);
                if open {
                    prop_assert!(window.contains(now) && now < until, "open outside the window");
                }
            }
            Verdict::NoFit(NoFit::Missed { window_start }) => {
                prop_assert_eq!(fitting.last().copied(), Some(window_start));
                prop_assert!(now >= plus(window_start, window.length()).min(deadline));
            }
            Verdict::NoFit(NoFit::NoWindow { .. } | NoFit::CooldownTooLong { .. }) => {
                prop_assert!(fitting.is_empty(), "a window fits: {fitting:?}");
            }
            Verdict::NoFit(NoFit::Used { .. }) | Verdict::Unknown => {
                prop_assert!(false, "unexpected verdict {:?}", plan.verdict);
            }
        }
    }

    /// Months of a model account: the operator looks at random times and at
    /// each planned rotation (it wakes for it), rotating whenever the plan
    /// says the window is open; the account rotates on its own when its
    /// interval runs out. Every rotation the operator makes is in a window
    /// and at least the cooldown after the one before; whenever the plan
    /// found a window, the account never rotated on its own first.
    #[test]
    fn months_of_rotations_land_in_windows(
        window in window(),
        interval in 21i64..=90,
        cooldown_days in 0u64..=14,
        start in clock(),
        gaps in proptest::collection::vec(600i64..=12 * 3600, 400..800),
    ) {
        let cooldown = Duration::from_secs(cooldown_days * DAY as u64);
        let mut now = time(start);
        let end = plus(now, SignedDuration::from_hours(24 * 183));
        let mut last = plus(now, SignedDuration::from_hours(-24 * (interval / 2)));
        let mut used = None;
        let mut ours = Vec::new();
        let mut automatic_rotations = 0;
        let mut gaps = gaps.into_iter().cycle();
        while now < end {
            let account = AccountSchedule { last_rotation: Some(last), interval_days: Some(interval) };
            let plan = plan_window(&window, account, cooldown, used, now).expect("plans");
            let mut wake = None;
            match plan.verdict {
                Verdict::InWindow { window_start, at, open: true, .. } => {
                    prop_assert!(window.contains(now), "rotating outside a window at {now}");
                    prop_assert!(now >= at);
                    if let Some(previous) = ours.last() {
                        prop_assert!(now.duration_since(*previous) >= SignedDuration::try_from(cooldown).expect("fits"), "two rotations within the cooldown");
                    }
                    ours.push(now);
                    last = now;
                    used = Some(window_start);
                }
                Verdict::InWindow { at, .. } => wake = Some(at),
                Verdict::NoFit(NoFit::Missed { window_start }) => {
                    // Only a window from before the operator started can be missed.
                    prop_assert!(window_start < time(start), "the operator looked at every planned time yet missed the window at {window_start}");
                }
                _ => {}
            }
            let next = plus(now, SignedDuration::from_secs(gaps.next().unwrap_or(3600)));
            let next = wake.map_or(next, |wake| wake.min(next));
            // The account rotates on its own once its interval has run out.
            let automatic = plus(last, SignedDuration::from_hours(24 * interval));
            if automatic <= next {
                let fitted = matches!(plan.verdict, Verdict::InWindow { .. });
                prop_assert!(!fitted, "the account rotated on its own at {automatic} although a window was planned");
                automatic_rotations += 1;
                last = automatic;
            }
            now = next;
        }
        prop_assert!(ours.len() + automatic_rotations >= 2, "six months of a <=90 day interval rotate at least twice");
    }
}
