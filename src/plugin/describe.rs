//! `kubectl keyrotor status NAME`: one policy in detail, laid out as
//! `cmctl status certificate` lays out a Certificate: the spec in short, every
//! condition, the rotate request and how far the operator got with it, the
//! account as last read, and the policy's recent events.

use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use kube::{Api, api::ListParams};

use super::{
    connect::Connection,
    error::{PluginError, describe},
    report::{RotateResult, outcome_name},
    selection::Selection,
    status::moment,
    wait::judge,
};
use crate::crd::{
    ANNOTATION_ROTATE_FORCE, ANNOTATION_ROTATE_REQUESTED_AT, AccessKeyPolicy, DeletionPolicy,
    ManagementPolicy,
};

/// How many of the newest events the view lists.
pub const MAX_EVENTS: usize = 10;

/// The policy's events as far as they could be read.
#[derive(Debug, Clone, PartialEq)]
pub enum Events {
    /// The events regarding the policy, oldest first.
    Listed(Vec<Event>),
    /// Listing them failed (e.g. no `list` on events); the rest of the view still shows.
    Unavailable(String),
}

/// Reads the policy and its events.
pub async fn detail(
    connection: &Connection,
    name: &str,
) -> Result<(AccessKeyPolicy, Events), PluginError> {
    let selection = Selection::new(Some(name), None, false, &connection.namespace);
    let policy = selection
        .fetch(&connection.client)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| PluginError::NotFound {
            namespace: connection.namespace.clone(),
            name: name.to_owned(),
        })?;
    let events = events(connection, &policy).await;
    Ok((policy, events))
}

/// The `events.k8s.io/v1` Events whose `regarding` is this very object (by
/// UID, so events of an earlier policy of the same name are left out).
async fn events(connection: &Connection, policy: &AccessKeyPolicy) -> Events {
    let Some(uid) = policy.metadata.uid.as_deref() else {
        return Events::Listed(Vec::new());
    };
    let api: Api<Event> = Api::namespaced(connection.client.clone(), &connection.namespace);
    let params = ListParams::default().fields(&format!("regarding.uid={uid}"));
    match api.list(&params).await {
        Ok(list) => {
            let mut events = list.items;
            events.sort_by_key(last_seen);
            Events::Listed(events)
        }
        Err(err) => Events::Unavailable(describe(&err)),
    }
}

/// When an event (or the last of its series) happened.
fn last_seen(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(event.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or(event.event_time.as_ref().map(|t| t.0))
        .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The detail view as text, times relative to `now`.
pub fn render(policy: &AccessKeyPolicy, events: &Events, now: Timestamp) -> String {
    let mut out = Text::default();
    let meta = &policy.metadata;
    let spec = &policy.spec;
    let status = policy.status.clone().unwrap_or_default();
    out.line(0, "Name", meta.name.as_deref().unwrap_or_default());
    out.line(
        0,
        "Namespace",
        meta.namespace.as_deref().unwrap_or_default(),
    );
    if let Some(created) = &meta.creation_timestamp {
        out.line(0, "Created at", &moment(created.0, now));
    }

    out.heading("Spec");
    out.line(1, "Account", &spec.account_id);
    out.line(
        1,
        "Key rotation interval",
        &format!("{}d", spec.key_rotation_interval_days),
    );
    out.line(
        1,
        "Management policy",
        match spec.management_policy {
            ManagementPolicy::Manage => "Manage",
            ManagementPolicy::Observe => "Observe (reads the account, never writes)",
        },
    );
    out.line(1, "Suspended", if spec.suspend { "yes" } else { "no" });
    out.line(
        1,
        "Credentials",
        &format!("Secret {}", spec.credentials_ref.name),
    );
    out.line(
        1,
        "Drift check interval",
        spec.drift_check_interval.as_str(),
    );
    out.line(1, "Rotation cooldown", spec.rotation_cooldown.as_str());
    out.line(
        1,
        "Deletion policy",
        match spec.deletion_policy {
            DeletionPolicy::Orphan => "Orphan",
            DeletionPolicy::Restore => "Restore",
        },
    );

    out.heading("Conditions");
    match (status.observed_generation, meta.generation) {
        (Some(observed), Some(current)) if observed < current => out.line(
            1,
            "Observed generation",
            &format!(
                "{observed} (the spec is at generation {current}: the operator has not caught up)"
            ),
        ),
        (Some(observed), _) => out.line(1, "Observed generation", &observed.to_string()),
        (None, _) => {}
    }
    if status.conditions.is_empty() {
        out.text(
            1,
            "No conditions yet: the operator has not reconciled this policy.",
        );
    }
    // Every condition the status carries, in its order: the view does not
    // need to know their names.
    for condition in &status.conditions {
        let mut line = format!(
            "{}: {}, Reason: {}",
            condition.type_, condition.status, condition.reason
        );
        if !condition.message.is_empty() {
            line.push_str(&format!(", Message: {}", condition.message));
        }
        out.text(1, &line);
        out.text(
            2,
            &format!(
                "Last transition: {}",
                moment(condition.last_transition_time.0, now)
            ),
        );
    }

    out.heading("Rotate request");
    let annotations = meta.annotations.clone().unwrap_or_default();
    match annotations.get(ANNOTATION_ROTATE_REQUESTED_AT) {
        None => out.line(1, "Requested", "<none>"),
        Some(request) => {
            let forced = annotations.get(ANNOTATION_ROTATE_FORCE) == Some(request);
            out.line(
                1,
                "Requested",
                &format!("{request}{}", if forced { " (forced)" } else { "" }),
            );
            let state = match judge(policy, request) {
                Some(RotateResult::Handled { outcome, detail }) => {
                    format!("handled: {}: {detail}", outcome_name(outcome))
                }
                Some(
                    RotateResult::Error { detail }
                    | RotateResult::Abandoned { detail }
                    | RotateResult::TimedOut { detail },
                ) => detail,
                Some(RotateResult::Requested { .. }) | None => match &status.pending_rotation {
                    Some(pending) if &pending.request == request => {
                        "in progress: the operator has started this rotation and has not recorded its outcome yet".to_owned()
                    }
                    _ => "pending: the operator has not handled it yet".to_owned(),
                },
            };
            out.line(1, "State", &state);
        }
    }
    if let Some(pending) = &status.pending_rotation
        && annotations.get(ANNOTATION_ROTATE_REQUESTED_AT) != Some(&pending.request)
    {
        out.line(1, "In flight", &pending.request);
    }
    out.line(
        1,
        "Last handled",
        status
            .last_handled_rotate_request
            .as_deref()
            .unwrap_or("<none>"),
    );
    out.line(
        1,
        "Last outcome",
        status.last_rotate_outcome.map_or("<none>", outcome_name),
    );

    out.heading("Account");
    match status.account_key_rotation_interval_days {
        None => out.line(1, "Key rotation interval", "<not read yet>"),
        Some(days) if days == i64::from(spec.key_rotation_interval_days) => {
            out.line(
                1,
                "Key rotation interval",
                &format!("{days}d (as the spec)"),
            );
        }
        Some(days) => out.line(
            1,
            "Key rotation interval",
            &format!(
                "{days}d (the spec wants {}d)",
                spec.key_rotation_interval_days
            ),
        ),
    }
    let at = |t: Option<Timestamp>| t.map_or_else(|| "<none>".to_owned(), |t| moment(t, now));
    out.line(1, "Last rotation", &at(status.last_key_rotation_at));
    out.line(1, "Next rotation", &at(status.next_key_rotation_at));
    if let Some(days) = status.days_until_next_rotation {
        out.line(1, "Days until next rotation", &days.to_string());
    }
    if let Some(days) = status.original_key_rotation_interval_days {
        out.line(1, "Interval before adoption", &format!("{days}d"));
    }

    out.heading("Events");
    match events {
        Events::Unavailable(reason) => out.text(1, &format!("<cannot list events: {reason}>")),
        Events::Listed(events) if events.is_empty() => out.text(1, "<none>"),
        Events::Listed(events) => {
            let skip = events.len().saturating_sub(MAX_EVENTS);
            let mut rows = vec![[
                "Type".to_owned(),
                "Reason".to_owned(),
                "Age".to_owned(),
                "From".to_owned(),
                "Message".to_owned(),
            ]];
            for event in &events[skip..] {
                let age = last_seen(event).map_or_else(
                    || "<unknown>".to_owned(),
                    |t| super::status::short_age(now.duration_since(t).as_secs().max(0)),
                );
                let age = match event.series.as_ref().map(|s| s.count) {
                    Some(count) if count > 1 => format!("{age} (x{count})"),
                    _ => age,
                };
                rows.push([
                    event.type_.clone().unwrap_or_default(),
                    event.reason.clone().unwrap_or_default(),
                    age,
                    event.reporting_controller.clone().unwrap_or_default(),
                    event.note.clone().unwrap_or_default(),
                ]);
            }
            for line in columns(&rows) {
                out.text(1, &line);
            }
        }
    }
    out.0
}

/// Rows padded into columns two spaces apart (kubectl describe's event table).
fn columns<const N: usize>(rows: &[[String; N]]) -> Vec<String> {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                line.push_str(&format!("{cell:<width$}  "));
            }
            line.trim_end().to_owned()
        })
        .collect()
}

/// The view being written: `Key: value` lines indented two spaces a level.
#[derive(Default)]
struct Text(String);

impl Text {
    fn heading(&mut self, name: &str) {
        self.0.push_str(name);
        self.0.push_str(":\n");
    }

    fn line(&mut self, level: usize, key: &str, value: &str) {
        self.text(level, &format!("{key}: {value}"));
    }

    fn text(&mut self, level: usize, text: &str) {
        for _ in 0..level {
            self.0.push_str("  ");
        }
        self.0.push_str(text);
        self.0.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn policy(annotations: Value, status: Value) -> AccessKeyPolicy {
        serde_json::from_value(json!({
            "apiVersion": "keyrotor.dev/v1alpha1",
            "kind": "AccessKeyPolicy",
            "metadata": {
                "name": "production", "namespace": "security", "generation": 2,
                "uid": "u-1", "creationTimestamp": "2026-11-01T00:00:00Z",
                "annotations": annotations,
            },
            "spec": {
                "accountId": "023e105f4ecef8ad9ca31a8372d0c353",
                "keyRotationIntervalDays": 30,
                "credentialsRef": {"name": "cloudflare-api"},
            },
            "status": status,
        }))
        .expect("fixture")
    }

    fn event(reason: &str, note: &str, time: &str, count: Option<i32>) -> Event {
        let mut event: Event = serde_json::from_value(json!({
            "metadata": {"name": format!("production.{reason}"), "namespace": "security"},
            "eventTime": time,
            "type": "Normal",
            "reason": reason,
            "note": note,
            "reportingController": "keyrotor.dev/operator",
            "reportingInstance": "keyrotor-0",
            "action": "Reconcile",
        }))
        .expect("event");
        if let Some(count) = count {
            event.series = serde_json::from_value(
                json!({"count": count, "lastObservedTime": "2026-11-26T09:59:00.000000Z"}),
            )
            .expect("series");
        }
        event
    }

    const NOW: &str = "2026-11-26T10:00:00Z";

    #[test]
    fn a_handled_request_and_every_condition_show() {
        let p = policy(
            json!({ANNOTATION_ROTATE_REQUESTED_AT: "r1"}),
            json!({
                "observedGeneration": 2,
                "accountKeyRotationIntervalDays": 30,
                "lastKeyRotationAt": "2026-11-14T09:12:44Z",
                "nextKeyRotationAt": "2026-12-14T09:12:44Z",
                "daysUntilNextRotation": 17,
                "lastHandledRotateRequest": "r1",
                "lastRotateOutcome": "Rotated",
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Reconciled",
                     "message": "", "lastTransitionTime": "2026-11-14T09:12:45Z"},
                    {"type": "SomethingNew", "status": "False", "reason": "Whatever",
                     "message": "a message", "lastTransitionTime": "2026-11-26T09:00:00Z"},
                ],
            }),
        );
        let events = Events::Listed(vec![
            event(
                "Rotated",
                "key rotated",
                "2026-11-14T09:12:45.000000Z",
                None,
            ),
            event(
                "DriftCorrected",
                "interval 42d -> 30d",
                "2026-11-20T00:00:00.000000Z",
                Some(3),
            ),
        ]);
        let view = render(&p, &events, at(NOW));
        let expected = "\
Name: production
Namespace: security
Created at: 2026-11-01T00:00:00Z (25d ago)
Spec:
  Account: 023e105f4ecef8ad9ca31a8372d0c353
  Key rotation interval: 30d
  Management policy: Manage
  Suspended: no
  Credentials: Secret cloudflare-api
  Drift check interval: 10m
  Rotation cooldown: 168h
  Deletion policy: Orphan
Conditions:
  Observed generation: 2
  Ready: True, Reason: Reconciled
    Last transition: 2026-11-14T09:12:45Z (12d ago)
  SomethingNew: False, Reason: Whatever, Message: a message
    Last transition: 2026-11-26T09:00:00Z (60m ago)
Rotate request:
  Requested: r1
  State: handled: Rotated: key rotated at 2026-11-14T09:12:44Z; next automatic rotation at 2026-12-14T09:12:44Z
  Last handled: r1
  Last outcome: Rotated
Account:
  Key rotation interval: 30d (as the spec)
  Last rotation: 2026-11-14T09:12:44Z (12d ago)
  Next rotation: 2026-12-14T09:12:44Z (in 17d)
  Days until next rotation: 17
Events:
  Type    Reason          Age       From                   Message
  Normal  Rotated         12d       keyrotor.dev/operator  key rotated
  Normal  DriftCorrected  60s (x3)  keyrotor.dev/operator  interval 42d -> 30d
";
        assert_eq!(view, expected);
    }

    #[test]
    fn a_pending_forced_request_drift_and_a_stale_generation_show() {
        let p = policy(
            json!({ANNOTATION_ROTATE_REQUESTED_AT: "r2", ANNOTATION_ROTATE_FORCE: "r2"}),
            json!({
                "observedGeneration": 1,
                "accountKeyRotationIntervalDays": 42,
                "lastHandledRotateRequest": "r1",
                "lastRotateOutcome": "RefusedCooldown",
            }),
        );
        let view = render(&p, &Events::Unavailable("forbidden".into()), at(NOW));
        for wanted in [
            "  Observed generation: 1 (the spec is at generation 2: the operator has not caught up)\n",
            "  No conditions yet",
            "  Requested: r2 (forced)\n  State: pending: the operator has not handled it yet\n",
            "  Last handled: r1\n  Last outcome: RefusedCooldown\n",
            "  Key rotation interval: 42d (the spec wants 30d)\n",
            "  Last rotation: <none>\n",
            "Events:\n  <cannot list events: forbidden>\n",
        ] {
            assert!(view.contains(wanted), "{wanted:?} missing in:\n{view}");
        }
        // In flight: the operator started it.
        let p = policy(
            json!({ANNOTATION_ROTATE_REQUESTED_AT: "r2"}),
            json!({"pendingRotation": {"request": "r2"}}),
        );
        let view = render(&p, &Events::Listed(vec![]), at(NOW));
        assert!(view.contains("State: in progress"), "{view}");
        assert!(view.contains("Events:\n  <none>\n"), "{view}");
        assert!(
            view.contains("Key rotation interval: <not read yet>"),
            "{view}"
        );
    }

    #[test]
    fn only_the_newest_events_are_listed() {
        let p = policy(json!({}), json!({}));
        let events: Vec<Event> = (0..15)
            .map(|i| {
                event(
                    &format!("R{i:02}"),
                    "n",
                    &format!("2026-11-26T09:{i:02}:00.000000Z"),
                    None,
                )
            })
            .collect();
        let view = render(&p, &Events::Listed(events), at(NOW));
        assert!(view.contains("Requested: <none>"), "{view}");
        assert!(!view.contains("R04"), "{view}");
        assert!(view.contains("R05") && view.contains("R14"), "{view}");
    }
}
