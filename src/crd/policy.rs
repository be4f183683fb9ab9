//! `AccessKeyPolicy` (`keyrotor.dev/v1alpha1`): what the cluster wants of one
//! Cloudflare account's Access signing-key rotation, and what the account looks like.

// Each `printcolumn(...)` repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::GoDuration;

/// Any new value of this annotation asks for exactly one on-demand rotation.
pub const ANNOTATION_ROTATE_REQUESTED_AT: &str = "keyrotor.dev/rotate-requested-at";
/// Equal to the `rotate-requested-at` value: that request (and only that one)
/// skips the cooldown, as Flux's `forceAt`. `"true"` does not force.
pub const ANNOTATION_ROTATE_FORCE: &str = "keyrotor.dev/rotate-force";
/// The longest rotate request value, in characters: a longer one is an
/// invalid request (outcome `Failed`, nothing rotated). The status fields
/// that record request values carry the same limit.
pub const MAX_ROTATE_REQUEST_CHARS: usize = 253;
/// The longest message or reason the operator writes into a status string.
pub const MAX_STATUS_MESSAGE_CHARS: usize = 32768;
/// Present only with `deletionPolicy: Restore`: the operator puts the original
/// interval back before the object goes away.
pub const FINALIZER: &str = "keyrotor.dev/restore";

/// Desired Access signing-key rotation settings of one Cloudflare account.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "keyrotor.dev",
    version = "v1alpha1",
    kind = "AccessKeyPolicy",
    plural = "accesskeypolicies",
    shortname = "akp",
    category = "keyrotor",
    namespaced,
    status = "AccessKeyPolicyStatus",
    derive = "PartialEq",
    doc = "AccessKeyPolicy keeps a Cloudflare account's Zero Trust Access signing-key rotation interval as declared, rotates the key once for each new value of the annotation keyrotor.dev/rotate-requested-at, and reports the account's state in its status (condition Ready, and AccountInSync for the interval).",
    printcolumn(name = "Account", type_ = "string", json_path = ".spec.accountId"),
    printcolumn(
        name = "Interval",
        type_ = "integer",
        json_path = ".spec.keyRotationIntervalDays",
        description = "Wanted rotation interval in days"
    ),
    printcolumn(
        name = "Last Rotation",
        type_ = "date",
        json_path = ".status.lastKeyRotationAt"
    ),
    // kubectl prints a future `date` as "<invalid>": show the timestamp itself.
    printcolumn(
        name = "Next Rotation",
        type_ = "string",
        json_path = ".status.nextKeyRotationAt"
    ),
    printcolumn(
        name = "Planned Rotation",
        type_ = "string",
        json_path = ".status.plannedRotation.at",
        description = "When the key next rotates: in a maintenance window, or on the account's own schedule"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = "1"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.managementPolicy",
        priority = "1"
    ),
    printcolumn(
        name = "Last Outcome",
        type_ = "string",
        json_path = ".status.lastRotateOutcome",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyPolicySpec {
    /// Cloudflare account identifier: 32 lowercase hexadecimal characters. Immutable.
    #[schemars(length(min = 32, max = 32), regex(pattern = r"^[0-9a-f]{32}$"))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("accountId is immutable; create a new AccessKeyPolicy for another account"))]
    pub account_id: String,

    /// Wanted interval between automatic key rotations, in days (21 to 365).
    #[schemars(range(min = 21, max = 365))]
    pub key_rotation_interval_days: i32,

    /// Secret in the same namespace holding the Cloudflare credentials: an API token under `apiToken`, or a global API key and its email under `apiKey` and `email` (other data keys may be named with `apiTokenKey`, `apiKeyKey`, `emailKey`).
    pub credentials_ref: CredentialsRef,

    /// `Manage` writes the account to match this spec; `Observe` only reads and reports.
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// When true the operator makes no Cloudflare call for this policy (no drift
    /// fix, no rotation) and reports `Ready` True with reason `Suspended`.
    #[serde(default)]
    pub suspend: bool,

    /// How often the account is re-read to find drift (Go duration, positive).
    /// The operator never checks more often than its own floor.
    #[serde(default = "default_drift_check_interval")]
    #[x_kube(validation = kube::core::Rule::new("self.matches('[1-9]')").message("driftCheckInterval must be a positive duration such as 10m"))]
    pub drift_check_interval: GoDuration,

    /// On-demand rotations closer than this to the last rotation are refused
    /// unless the request is forced (`keyrotor.dev/rotate-force` equal to the
    /// `keyrotor.dev/rotate-requested-at` value) (Go duration). The operator
    /// holds a lower value to its `--min-rotation-cooldown` (168h by default).
    #[serde(default = "default_rotation_cooldown")]
    pub rotation_cooldown: GoDuration,

    /// `Orphan` leaves the account as it is on deletion; `Restore` puts back the
    /// interval the account had before this policy adopted it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// A recurring maintenance window for rotations. When set, the operator
    /// rotates the key early, in the last window that starts before the
    /// account would rotate on its own, so that rotations happen while someone
    /// is watching; the account's interval stays the upper bound. Without it,
    /// the account rotates on its own schedule.
    // Boxed (here and `pendingRotation`): most policies have neither, and
    // inline they made every cached policy 144 bytes larger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_window: Option<Box<RotationWindow>>,
}

/// A recurring maintenance window: a cron schedule of window starts, a
/// duration and a time zone, as Kubernetes CronJobs write them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationWindow {
    /// When windows start: a five-field cron expression (minute, hour,
    /// day of month, month, day of week; names such as TUE and JAN allowed;
    /// day of week 0 or 7 is Sunday) or one of @yearly, @monthly, @weekly,
    /// @daily, @hourly. Restrict either the day of month or the day of week,
    /// not both. Example: `0 3 * * TUE` (Tuesdays at 03:00).
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(
        validation = kube::core::Rule::new(WINDOW_SCHEDULE_RULE).message("schedule must be five cron fields (minute hour day-of-month month day-of-week) such as '0 3 * * TUE', or @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly"),
        validation = kube::core::Rule::new(WINDOW_ONE_DAY_FIELD_RULE).message("restrict either the day of month or the day of week, not both (cron reads the two as either-or)")
    )]
    pub schedule: String,

    /// How long each window lasts (Go duration, at least 1m, at most 168h), e.g. `2h`.
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('1m') && duration(self) <= duration('168h')").message("duration must be a Go duration from 1m to 168h, such as 2h"))]
    pub duration: GoDuration,

    /// The IANA time zone the schedule is read in, e.g. `Europe/Berlin`. Default `UTC`.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64), regex(pattern = TIME_ZONE_PATTERN))]
    pub time_zone: String,
}

/// The CEL rule on a window's schedule: five fields of cron characters, or a macro.
const WINDOW_SCHEDULE_RULE: &str = "self.matches('^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$') || self.matches('^[0-9A-Za-z*?,/-]+( +[0-9A-Za-z*?,/-]+){4}$')";

/// The CEL rule that refuses restricting both day fields: the third and the
/// fifth field must not both be other than `*` or `?` (RE2 has no lookahead,
/// hence the two alternatives for "a field other than `*` and `?`").
const WINDOW_ONE_DAY_FIELD_RULE: &str =
    "!self.matches('^[^ ]+ +[^ ]+ +([^*? ][^ ]*|[*?][^ ]+) +[^ ]+ +([^*? ][^ ]*|[*?][^ ]+)$')";

/// The shape of an IANA time zone name (whether it exists is the operator's check).
pub const TIME_ZONE_PATTERN: &str = r"^[A-Za-z][-+_A-Za-z0-9]*(/[-+_A-Za-z0-9]+)*$";

fn default_time_zone() -> String {
    "UTC".to_owned()
}

fn default_drift_check_interval() -> GoDuration {
    GoDuration::from_parts("10m", Duration::from_secs(600))
}

fn default_rotation_cooldown() -> GoDuration {
    GoDuration::from_parts("168h", Duration::from_secs(168 * 3600))
}

/// A Kubernetes object name (DNS-1123 subdomain): lowercase letters, digits,
/// `-` and `.`, starting and ending with a letter or digit.
pub const DNS_1123_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A Secret data key's syntax (Kubernetes: letters, digits, `-`, `_`, `.`).
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

/// The Secret in the policy's own namespace that holds the Cloudflare
/// credentials: an API token (data key `apiToken` unless `apiTokenKey` names
/// another), or a legacy global API key and its account email (`apiKey` and
/// `email` unless `apiKeyKey`/`emailKey` name others). Exactly one of the two
/// kinds must be present.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRef {
    /// Name of the Secret (a DNS-1123 subdomain, as every Secret name).
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_1123_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Data key of the API token. Default `apiToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub api_token_key: Option<String>,
    /// Data key of the legacy global API key. Default `apiKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub api_key_key: Option<String>,
    /// Data key of the email that goes with the global API key. Default `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub email_key: Option<String>,
}

impl CredentialsRef {
    /// The data keys to read, defaults filled in.
    pub fn keys(&self) -> SecretKeys<'_> {
        SecretKeys {
            api_token: (self.api_token_key.as_deref()).unwrap_or(SecretKeys::DEFAULT.api_token),
            api_key: (self.api_key_key.as_deref()).unwrap_or(SecretKeys::DEFAULT.api_key),
            email: (self.email_key.as_deref()).unwrap_or(SecretKeys::DEFAULT.email),
        }
    }
}

/// The Secret data keys a policy's credentials are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretKeys<'a> {
    /// The API token's key.
    pub api_token: &'a str,
    /// The global API key's key.
    pub api_key: &'a str,
    /// The email's key.
    pub email: &'a str,
}

impl SecretKeys<'static> {
    /// The keys when the policy names none.
    pub const DEFAULT: Self = Self {
        api_token: "apiToken",
        api_key: "apiKey",
        email: "email",
    };
}

/// Whether the operator may write to the account.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ManagementPolicy {
    /// Read the account, fix drift, perform requested rotations.
    #[default]
    Manage,
    /// Read and report only; never write.
    Observe,
}

/// What happens to the account when the policy is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the account as it is.
    #[default]
    Orphan,
    /// Put back `status.originalKeyRotationIntervalDays`.
    Restore,
}

/// How a rotate request ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RotateOutcome {
    /// The key was rotated.
    Rotated,
    /// Refused: the last rotation is younger than `rotationCooldown` and the request was not forced.
    RefusedCooldown,
    /// Refused: the policy is in `Observe` mode.
    RefusedObserveOnly,
    /// Not rotated: Cloudflare refused the rotation, or the request value was
    /// invalid (longer than 253 characters).
    Failed,
}

/// A rotate request that has been started but whose outcome is not yet recorded.
/// The account's `last_key_rotation_at` moving past `baselineKeyRotationAt`
/// proves the POST landed, so a restarted operator never rotates twice.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingRotation {
    /// The annotation value being handled (for a window's rotation:
    /// `window/` and the window's start).
    #[schemars(length(max = 253))]
    pub request: String,
    /// The account's last rotation time just before the POST (absent if the account never rotated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_key_rotation_at: Option<Timestamp>,
    /// Set when the rotation is a maintenance window's (not an annotation's):
    /// the window's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<Timestamp>,
}

/// Why the key rotates when `plannedRotation.at` says.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PlannedRotationReason {
    /// The operator rotates it in a maintenance window (`spec.rotationWindow`).
    Window,
    /// The account rotates it on its own schedule: no window is set, or none
    /// fits before the account's own rotation (see the `RotationWindow` condition).
    CloudflareSchedule,
}

/// The next rotation as planned, and why then.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedRotation {
    /// When the key is planned to rotate.
    pub at: Timestamp,
    /// `Window` (the operator rotates in a maintenance window) or
    /// `CloudflareSchedule` (the account rotates on its own).
    pub reason: PlannedRotationReason,
    /// The start of the window the rotation is planned in (reason `Window`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<Timestamp>,
}

/// The last rotation a maintenance window asked for, and how it ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowRotation {
    /// The start of the window.
    pub window_start: Timestamp,
    /// How it ended.
    pub outcome: RotateOutcome,
}

/// What the operator last saw and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyPolicyStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `AccountInSync`, and `Reconciling` or `Stalled` while True; a
    /// map list keyed by `type`, so conditions other tools add (with their own
    /// field manager) stay when the operator applies its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "bounded_conditions")]
    pub conditions: Vec<Condition>,
    /// The interval as read from the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_key_rotation_interval_days: Option<i64>,
    /// Days until the account rotates on its own, as Cloudflare reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_until_next_rotation: Option<i64>,
    /// When the key was last rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key_rotation_at: Option<Timestamp>,
    /// When the account will rotate on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_key_rotation_at: Option<Timestamp>,
    /// The last `keyrotor.dev/rotate-requested-at` value that was handled
    /// (for a value longer than 253 characters: its first characters and a note).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub last_handled_rotate_request: Option<String>,
    /// How that request ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotate_outcome: Option<RotateOutcome>,
    /// The account's interval when this policy first adopted it (used by `deletionPolicy: Restore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_key_rotation_interval_days: Option<i64>,
    /// A rotate request in flight: recorded before the rotate call, so that after a
    /// crash the operator compares the account's last rotation time with the
    /// baseline and never rotates twice for one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_rotation: Option<Box<PendingRotation>>,
    /// With `spec.rotationWindow`: the start of the next window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window_start: Option<Timestamp>,
    /// When the key will next rotate and why: in a window, or on the account's own schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_rotation: Option<PlannedRotation>,
    /// The last window rotation and its outcome (kept apart from
    /// `lastHandledRotateRequest`, which records annotation requests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_window_rotation: Option<WindowRotation>,
}

/// The condition list's schema with the limits upstream `metav1.Condition`
/// declares in Go (kubebuilder markers) but k8s-openapi's schema leaves out:
/// lengths of type, reason and message, the status values, and a bound on
/// the list (a policy carries up to 4 of its own).
fn bounded_conditions(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <Vec<Condition> as JsonSchema>::json_schema(generator);
    // Room for other tools' conditions besides the operator's five types.
    schema.insert("maxItems".to_owned(), 16.into());
    schema.insert("x-kubernetes-list-type".to_owned(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".to_owned(),
        serde_json::json!(["type"]),
    );
    if let Some(properties) = schema
        .get_mut("items")
        .and_then(|items| items.get_mut("properties"))
        .and_then(serde_json::Value::as_object_mut)
    {
        let limits = [
            ("type", 316),
            ("reason", 1024),
            ("message", MAX_STATUS_MESSAGE_CHARS),
        ];
        for (field, max) in limits {
            if let Some(field) = properties.get_mut(field).and_then(|f| f.as_object_mut()) {
                field.insert("maxLength".to_owned(), max.into());
            }
        }
        if let Some(status) = properties.get_mut("status").and_then(|f| f.as_object_mut()) {
            status.insert(
                "enum".to_owned(),
                serde_json::json!(["True", "False", "Unknown"]),
            );
        }
    }
    schema
}

#[cfg(test)]
mod tests {
    use kube::{CustomResourceExt, core::cel::Validator};
    use serde_json::{Value, json};

    use super::*;

    fn schema() -> Value {
        let crd = AccessKeyPolicy::crd();
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("the derived CRD has a schema");
        serde_json::to_value(schema).expect("schema serializes")
    }

    fn policy(spec: Value) -> Value {
        json!({
            "apiVersion": "keyrotor.dev/v1alpha1",
            "kind": "AccessKeyPolicy",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": spec,
        })
    }

    fn valid_spec() -> Value {
        json!({
            "accountId": "023e105f4ecef8ad9ca31a8372d0c353",
            "keyRotationIntervalDays": 30,
            "credentialsRef": {"name": "cloudflare-api"},
            "driftCheckInterval": "10m",
        })
    }

    fn cel_errors(new: &Value, old: Option<&Value>) -> Vec<String> {
        match Validator::new().validate(&schema(), new, old) {
            Ok(()) => vec![],
            Err(errors) => errors
                .into_vec()
                .into_iter()
                .map(|e| format!("{}: {}", e.field_path, e.message))
                .collect(),
        }
    }

    #[test]
    fn a_valid_policy_passes_every_rule() {
        assert_eq!(
            cel_errors(&policy(valid_spec()), None),
            Vec::<String>::new()
        );
    }

    #[test]
    fn changing_the_account_id_is_refused_and_names_the_field() {
        let old = policy(valid_spec());
        let mut spec = valid_spec();
        spec["accountId"] = json!("ffffffffffffffffffffffffffffffff");
        let errors = cel_errors(&policy(spec), Some(&old));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("accountId"), "{errors:?}");
        assert!(errors[0].contains("immutable"), "{errors:?}");
        // The same object as an update without a change passes.
        assert!(cel_errors(&old, Some(&old)).is_empty());
    }

    #[test]
    fn a_zero_drift_interval_is_refused() {
        for zero in ["0s", "0m0s", "0.0h", "00ms"] {
            let mut spec = valid_spec();
            spec["driftCheckInterval"] = json!(zero);
            let errors = cel_errors(&policy(spec), None);
            assert_eq!(errors.len(), 1, "{zero}: {errors:?}");
            assert!(errors[0].contains("driftCheckInterval"), "{errors:?}");
        }
        let mut spec = valid_spec();
        spec["driftCheckInterval"] = json!("90s");
        assert!(cel_errors(&policy(spec), None).is_empty());
    }

    #[test]
    fn a_rotation_window_is_checked_where_cel_can() {
        let with_window = |window: Value| {
            let mut spec = valid_spec();
            spec["rotationWindow"] = window;
            cel_errors(&policy(spec), None)
        };
        for schedule in [
            "0 3 * * TUE",
            "30 2 1 * *",
            "*/15 1-4 * * 1-5",
            "@weekly",
            "@midnight",
            "0 3 * JAN,JUL MON",
            "0 3 ? * 2",
        ] {
            let errors = with_window(json!({"schedule": schedule, "duration": "2h"}));
            assert!(errors.is_empty(), "{schedule}: {errors:?}");
        }
        for schedule in [
            "0 3 * *",
            "0 3 * * TUE 2027",
            "@fortnightly",
            "0 3 * * TUE;rm",
        ] {
            let errors = with_window(json!({"schedule": schedule, "duration": "2h"}));
            assert_eq!(errors.len(), 1, "{schedule}: {errors:?}");
            assert!(
                errors[0].contains("schedule must be five cron fields"),
                "{errors:?}"
            );
        }
        for schedule in ["0 3 1 * TUE", "0 3 */2 * 1-5", "0 3 15 * ?1"] {
            let errors = with_window(json!({"schedule": schedule, "duration": "2h"}));
            assert_eq!(errors.len(), 1, "{schedule}: {errors:?}");
            assert!(errors[0].contains("not both"), "{errors:?}");
        }
        for duration in ["30s", "169h", "0s"] {
            let errors = with_window(json!({"schedule": "0 3 * * TUE", "duration": duration}));
            assert_eq!(errors.len(), 1, "{duration}: {errors:?}");
            assert!(errors[0].contains("from 1m to 168h"), "{errors:?}");
        }
    }

    #[test]
    fn the_schema_carries_the_contract() {
        let schema = schema();
        let spec = &schema["properties"]["spec"];
        assert_eq!(
            spec["properties"]["keyRotationIntervalDays"]["type"],
            "integer"
        );
        assert_eq!(
            spec["properties"]["keyRotationIntervalDays"]["minimum"],
            21.0
        );
        assert_eq!(
            spec["properties"]["keyRotationIntervalDays"]["maximum"],
            365.0
        );
        assert_eq!(spec["properties"]["accountId"]["pattern"], "^[0-9a-f]{32}$");
        assert_eq!(spec["properties"]["managementPolicy"]["default"], "Manage");
        assert_eq!(spec["properties"]["deletionPolicy"]["default"], "Orphan");
        assert_eq!(spec["properties"]["driftCheckInterval"]["default"], "10m");
        assert_eq!(spec["properties"]["rotationCooldown"]["default"], "168h");
        let required: Vec<&str> = spec["required"]
            .as_array()
            .expect("required list")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            required,
            vec!["accountId", "credentialsRef", "keyRotationIntervalDays"]
        );
    }

    #[test]
    fn names_printer_columns_and_subresources_follow_the_contract() {
        let crd = AccessKeyPolicy::crd();
        assert_eq!(crd.spec.names.short_names, Some(vec!["akp".to_owned()]));
        assert_eq!(crd.spec.names.categories, Some(vec!["keyrotor".to_owned()]));
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<String> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .filter(|c| c.priority.unwrap_or(0) == 0)
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(
            columns,
            vec![
                "Account",
                "Interval",
                "Last Rotation",
                "Next Rotation",
                "Planned Rotation",
                "Ready",
                "Age"
            ]
        );
    }

    #[test]
    fn defaults_fill_in_when_a_manifest_omits_them() {
        let parsed: AccessKeyPolicySpec = serde_json::from_value(json!({
            "accountId": "023e105f4ecef8ad9ca31a8372d0c353",
            "keyRotationIntervalDays": 30,
            "credentialsRef": {"name": "cloudflare-api"},
        }))
        .expect("parses");
        assert_eq!(parsed.management_policy, ManagementPolicy::Manage);
        assert_eq!(parsed.deletion_policy, DeletionPolicy::Orphan);
        assert_eq!(
            parsed.drift_check_interval.as_duration(),
            Duration::from_secs(600)
        );
        assert_eq!(
            parsed.rotation_cooldown.as_duration(),
            Duration::from_secs(604_800)
        );
        assert!(!parsed.suspend);
    }
}
