//! Waiting for the operator to handle rotate requests: one watch over the
//! selection, and a pure state machine that turns what it sees into results.

use std::{
    collections::{BTreeMap, BTreeSet},
    pin::pin,
    time::Duration,
};

use futures::StreamExt;
use kube::{
    Client,
    runtime::{WatchStreamExt, watcher},
};
use tokio::time::Instant;

use super::{
    report::{PolicyKey, RotateResult},
    selection::Selection,
};
use crate::crd::{ANNOTATION_ROTATE_REQUESTED_AT, AccessKeyPolicy, GoDuration, RotateOutcome};

/// Watches the selection until every request is handled or `timeout` passes.
/// Transient watch errors are retried with backoff; the last one is reported
/// with a timeout.
pub async fn wait_for_requests(
    client: &Client,
    selection: &Selection,
    requests: impl IntoIterator<Item = (PolicyKey, String)>,
    timeout: &GoDuration,
) -> BTreeMap<PolicyKey, RotateResult> {
    let mut state = WaitState::new(requests);
    // A timeout too large for the clock (hundreds of years) means "wait a year".
    let deadline = Instant::now()
        .checked_add(timeout.as_duration())
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 86_400));
    let mut events =
        pin!(watcher(selection.api(client), selection.watcher_config()).default_backoff());
    let mut last_error = None;
    while !state.is_complete() {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Ok(event))) => state.observe(event),
            Ok(Some(Err(err))) => last_error = Some(err.to_string()),
        }
    }
    state.finish(|key, policy| timeout_detail(key, policy, timeout.as_str(), last_error.as_deref()))
}

/// Requests still waiting for the operator, and those already decided.
#[derive(Debug, Default)]
pub struct WaitState {
    pending: BTreeMap<PolicyKey, Pending>,
    finished: BTreeMap<PolicyKey, RotateResult>,
    /// Policies seen in the current initial list (to notice deletions missed during a relist).
    listed: BTreeSet<PolicyKey>,
}

#[derive(Debug)]
struct Pending {
    request: String,
    last_seen: Option<AccessKeyPolicy>,
}

impl WaitState {
    /// Waits for these requests.
    pub fn new(requests: impl IntoIterator<Item = (PolicyKey, String)>) -> Self {
        Self {
            pending: requests
                .into_iter()
                .map(|(key, request)| {
                    (
                        key,
                        Pending {
                            request,
                            last_seen: None,
                        },
                    )
                })
                .collect(),
            ..Self::default()
        }
    }

    /// Whether every request has a result.
    pub fn is_complete(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes in one watch event.
    pub fn observe(&mut self, event: watcher::Event<AccessKeyPolicy>) {
        match event {
            watcher::Event::Init => self.listed.clear(),
            watcher::Event::InitApply(policy) => {
                self.listed.insert(PolicyKey::of(&policy));
                self.update(policy);
            }
            watcher::Event::InitDone => {
                let gone: Vec<PolicyKey> = self
                    .pending
                    .keys()
                    .filter(|key| !self.listed.contains(key))
                    .cloned()
                    .collect();
                for key in gone {
                    self.abandon_deleted(key);
                }
            }
            watcher::Event::Apply(policy) => self.update(policy),
            watcher::Event::Delete(policy) => self.abandon_deleted(PolicyKey::of(&policy)),
        }
    }

    /// Every request's result; those still pending get `TimedOut` with the
    /// detail `timed_out` writes from the last state seen.
    pub fn finish(
        mut self,
        timed_out: impl Fn(&PolicyKey, Option<&AccessKeyPolicy>) -> String,
    ) -> BTreeMap<PolicyKey, RotateResult> {
        for (key, pending) in std::mem::take(&mut self.pending) {
            let detail = timed_out(&key, pending.last_seen.as_ref());
            self.finished.insert(key, RotateResult::TimedOut { detail });
        }
        self.finished
    }

    fn update(&mut self, policy: AccessKeyPolicy) {
        let key = PolicyKey::of(&policy);
        let Some(pending) = self.pending.get_mut(&key) else {
            return;
        };
        match judge(&policy, &pending.request) {
            Some(result) => {
                self.pending.remove(&key);
                self.finished.insert(key, result);
            }
            None => pending.last_seen = Some(policy),
        }
    }

    fn abandon_deleted(&mut self, key: PolicyKey) {
        if self.pending.remove(&key).is_some() {
            self.finished.insert(
                key,
                RotateResult::Abandoned {
                    detail: "the policy was deleted before the operator handled the request"
                        .to_owned(),
                },
            );
        }
    }
}

/// What one observed state of a policy says about our request: a result, or
/// `None` while the operator has not handled it yet.
pub fn judge(policy: &AccessKeyPolicy, request: &str) -> Option<RotateResult> {
    let status = policy.status.as_ref();
    if status.and_then(|s| s.last_handled_rotate_request.as_deref()) == Some(request) {
        return Some(match status.and_then(|s| s.last_rotate_outcome) {
            Some(outcome) => RotateResult::Handled {
                outcome,
                detail: outcome_detail(policy, outcome),
            },
            None => RotateResult::Error {
                detail: "the operator marked the request handled without an outcome".to_owned(),
            },
        });
    }
    let current = policy
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ROTATE_REQUESTED_AT));
    match current {
        Some(value) if value == request => None,
        // Our own patch is in every state we see (the first list is a quorum
        // read made after it), so a different value is a later request.
        Some(value) => Some(RotateResult::Abandoned {
            detail: format!(
                "a newer request ({value}) replaced this one before the operator handled it"
            ),
        }),
        None => Some(RotateResult::Abandoned {
            detail: format!(
                "the {ANNOTATION_ROTATE_REQUESTED_AT} annotation was removed before the operator handled the request"
            ),
        }),
    }
}

/// The explanation printed with a handled request.
fn outcome_detail(policy: &AccessKeyPolicy, outcome: RotateOutcome) -> String {
    let status = policy.status.as_ref();
    let last = status.and_then(|s| s.last_key_rotation_at);
    match outcome {
        RotateOutcome::Rotated => {
            let mut detail = match last {
                Some(at) => format!("key rotated at {at:.0}"),
                None => "key rotated".to_owned(),
            };
            if let Some(next) = status.and_then(|s| s.next_key_rotation_at) {
                detail.push_str(&format!("; next automatic rotation at {next:.0}"));
            }
            detail
        }
        RotateOutcome::RefusedCooldown => {
            let cooldown = &policy.spec.rotation_cooldown;
            let allowed = last.and_then(|at| at.checked_add(cooldown.as_duration()).ok());
            match (last, allowed) {
                (Some(at), Some(allowed)) => format!(
                    "the last rotation ({at:.0}) is within rotationCooldown {cooldown}; allowed after {allowed:.0}, or retry with --force"
                ),
                _ => format!(
                    "the last rotation is within rotationCooldown {cooldown}; retry with --force"
                ),
            }
        }
        RotateOutcome::RefusedObserveOnly => {
            "the policy has managementPolicy Observe and never writes to the account".to_owned()
        }
        RotateOutcome::Failed => match ready_condition(policy) {
            Some(ready) if ready.status != "True" && !ready.message.is_empty() => {
                format!("the rotation failed: {} ({})", ready.message, ready.reason)
            }
            _ => "the rotation failed; the policy's events say why".to_owned(),
        },
    }
}

/// The explanation printed when the operator did not answer in time.
fn timeout_detail(
    key: &PolicyKey,
    policy: Option<&AccessKeyPolicy>,
    waited: &str,
    last_error: Option<&str>,
) -> String {
    let mut detail = format!("the operator did not handle the request within {waited}");
    match policy.and_then(ready_condition) {
        Some(ready) if ready.status != "True" => detail.push_str(&format!(
            "; Ready is {} ({}): {}",
            ready.status, ready.reason, ready.message
        )),
        _ => detail.push_str(&format!(
            "; is the operator running and watching namespace \"{}\"?",
            key.namespace
        )),
    }
    if let Some(error) = last_error {
        detail.push_str(&format!("; last watch error: {error}"));
    }
    detail
}

fn ready_condition(
    policy: &AccessKeyPolicy,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    policy
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == crate::crd::ConditionType::Ready.as_str())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const REQUEST: &str = "2026-11-26T10:00:00.000000001Z";

    fn policy(name: &str, annotation: Option<&str>, status: Value) -> AccessKeyPolicy {
        let annotations = match annotation {
            Some(value) => json!({ ANNOTATION_ROTATE_REQUESTED_AT: value }),
            None => json!({}),
        };
        serde_json::from_value(json!({
            "apiVersion": "keyrotor.dev/v1alpha1",
            "kind": "AccessKeyPolicy",
            "metadata": {"name": name, "namespace": "security", "annotations": annotations},
            "spec": {
                "accountId": "023e105f4ecef8ad9ca31a8372d0c353",
                "keyRotationIntervalDays": 30,
                "credentialsRef": {"name": "cloudflare-api"},
            },
            "status": status,
        }))
        .expect("fixture")
    }

    fn key(name: &str) -> PolicyKey {
        PolicyKey {
            namespace: "security".into(),
            name: name.into(),
        }
    }

    fn handled(outcome: &str) -> Value {
        json!({
            "lastHandledRotateRequest": REQUEST,
            "lastRotateOutcome": outcome,
            "lastKeyRotationAt": "2026-11-20T08:00:00.25Z",
            "nextKeyRotationAt": "2026-12-20T08:00:00.25Z",
            "conditions": [{
                "type": "Ready", "status": "False", "reason": "ApiError",
                "message": "Cloudflare error 10000: Authentication error",
                "lastTransitionTime": "2026-11-26T10:00:01Z",
            }],
        })
    }

    #[test]
    fn a_pending_request_keeps_waiting() {
        let p = policy(
            "p",
            Some(REQUEST),
            json!({"lastHandledRotateRequest": "older", "lastRotateOutcome": "Rotated"}),
        );
        assert_eq!(judge(&p, REQUEST), None);
        assert_eq!(judge(&policy("p", Some(REQUEST), json!({})), REQUEST), None);
    }

    #[test]
    fn a_handled_request_reports_its_outcome_with_what_to_do_next() {
        let rotated = judge(&policy("p", Some(REQUEST), handled("Rotated")), REQUEST);
        assert_eq!(
            rotated,
            Some(RotateResult::Handled {
                outcome: RotateOutcome::Rotated,
                detail: "key rotated at 2026-11-20T08:00:00Z; next automatic rotation at 2026-12-20T08:00:00Z".into()
            })
        );
        let refused = judge(
            &policy("p", Some(REQUEST), handled("RefusedCooldown")),
            REQUEST,
        );
        assert_eq!(
            refused,
            Some(RotateResult::Handled {
                outcome: RotateOutcome::RefusedCooldown,
                detail: "the last rotation (2026-11-20T08:00:00Z) is within rotationCooldown 168h; allowed after 2026-11-27T08:00:00Z, or retry with --force".into()
            })
        );
        let failed = judge(&policy("p", Some(REQUEST), handled("Failed")), REQUEST);
        let Some(RotateResult::Handled { outcome, detail }) = failed else {
            panic!("expected handled: {failed:?}")
        };
        assert_eq!(outcome, RotateOutcome::Failed);
        assert!(detail.contains("Authentication error"), "{detail}");
    }

    #[test]
    fn a_replaced_or_removed_request_is_abandoned() {
        let replaced = judge(&policy("p", Some("someone-else"), json!({})), REQUEST);
        assert!(
            matches!(&replaced, Some(RotateResult::Abandoned { detail }) if detail.contains("someone-else")),
            "{replaced:?}"
        );
        let removed = judge(&policy("p", None, json!({})), REQUEST);
        assert!(
            matches!(removed, Some(RotateResult::Abandoned { .. })),
            "{removed:?}"
        );
    }

    #[test]
    fn the_state_finishes_each_request_once_and_times_out_the_rest() {
        let mut state = WaitState::new([
            (key("a"), REQUEST.to_owned()),
            (key("b"), REQUEST.to_owned()),
            (key("c"), REQUEST.to_owned()),
        ]);
        state.observe(watcher::Event::Init);
        state.observe(watcher::Event::InitApply(policy(
            "a",
            Some(REQUEST),
            json!({}),
        )));
        state.observe(watcher::Event::InitApply(policy(
            "b",
            Some(REQUEST),
            json!({}),
        )));
        state.observe(watcher::Event::InitApply(policy("other", None, json!({}))));
        state.observe(watcher::Event::InitDone);
        // c was not in the list: deleted.
        assert!(!state.is_complete());
        state.observe(watcher::Event::Apply(policy(
            "a",
            Some(REQUEST),
            handled("Rotated"),
        )));
        assert!(!state.is_complete());
        let results = state.finish(|key, seen| format!("{key} seen={}", seen.is_some()));
        assert!(matches!(
            results.get(&key("a")),
            Some(RotateResult::Handled {
                outcome: RotateOutcome::Rotated,
                ..
            })
        ));
        assert_eq!(
            results.get(&key("b")),
            Some(&RotateResult::TimedOut {
                detail: "security/b seen=true".into()
            })
        );
        assert!(matches!(
            results.get(&key("c")),
            Some(RotateResult::Abandoned { .. })
        ));
        assert_eq!(results.len(), 3);
    }

    #[test]
    fn a_timeout_says_what_the_status_shows_or_suggests_the_operator() {
        let silent = timeout_detail(&key("p"), None, "2m", None);
        assert_eq!(
            silent,
            "the operator did not handle the request within 2m; is the operator running and watching namespace \"security\"?"
        );
        let suspended = policy(
            "p",
            Some(REQUEST),
            json!({"conditions": [{
                "type": "Ready", "status": "False", "reason": "Suspended",
                "message": "spec.suspend is true", "lastTransitionTime": "2026-11-26T10:00:01Z",
            }]}),
        );
        let detail = timeout_detail(&key("p"), Some(&suspended), "90s", Some("boom"));
        assert!(detail.contains("Ready is False (Suspended)"), "{detail}");
        assert!(detail.ends_with("last watch error: boom"), "{detail}");
    }
}
