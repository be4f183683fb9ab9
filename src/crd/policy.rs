//! `AccessKeyPolicy` (`keyrotor.dev/v1alpha1`): what the cluster wants of one
//! Cloudflare account's Access signing-key rotation, and what the account looks like.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::GoDuration;

/// Any new value of this annotation asks for exactly one on-demand rotation.
pub const ANNOTATION_ROTATE_REQUESTED_AT: &str = "keyrotor.dev/rotate-requested-at";
/// `"true"` lets the current rotate request skip the cooldown.
pub const ANNOTATION_ROTATE_FORCE: &str = "keyrotor.dev/rotate-force";
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
    doc = "AccessKeyPolicy keeps a Cloudflare account's Access signing-key rotation interval as declared, rotates the key on demand, and reports the account's state.",
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
    printcolumn(
        name = "Next Rotation",
        type_ = "date",
        json_path = ".status.nextKeyRotationAt"
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

    /// Secret in the same namespace holding `apiToken`, or `apiKey` and `email`.
    pub credentials_ref: CredentialsRef,

    /// `Manage` writes the account to match this spec; `Observe` only reads and reports.
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// When true the operator makes no Cloudflare call for this policy and reports `Suspended`.
    #[serde(default)]
    pub suspend: bool,

    /// How often the account is re-read to find drift (Go duration, positive).
    /// The operator never checks more often than its own floor.
    #[serde(default = "default_drift_check_interval")]
    #[x_kube(validation = kube::core::Rule::new("self.matches('[1-9]')").message("driftCheckInterval must be a positive duration such as 10m"))]
    pub drift_check_interval: GoDuration,

    /// On-demand rotations closer than this to the last rotation are refused
    /// unless `keyrotor.dev/rotate-force: "true"` is set (Go duration).
    #[serde(default = "default_rotation_cooldown")]
    pub rotation_cooldown: GoDuration,

    /// `Orphan` leaves the account as it is on deletion; `Restore` puts back the
    /// interval the account had before this policy adopted it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_drift_check_interval() -> GoDuration {
    GoDuration::from_parts("10m", Duration::from_secs(600))
}

fn default_rotation_cooldown() -> GoDuration {
    GoDuration::from_parts("168h", Duration::from_secs(168 * 3600))
}

/// Reference to a Secret in the policy's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct CredentialsRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
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
    /// Cloudflare refused the rotation.
    Failed,
}

/// A rotate request that has been started but whose outcome is not yet recorded.
/// The account's `last_key_rotation_at` moving past `baselineKeyRotationAt`
/// proves the POST landed, so a restarted operator never rotates twice.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingRotation {
    /// The annotation value being handled.
    pub request: String,
    /// The account's last rotation time just before the POST (absent if the account never rotated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_key_rotation_at: Option<Timestamp>,
}

/// What the operator last saw and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyPolicyStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `Synced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
    /// The last `keyrotor.dev/rotate-requested-at` value that was handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_rotate_request: Option<String>,
    /// How that request ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotate_outcome: Option<RotateOutcome>,
    /// The account's interval when this policy first adopted it (used by `deletionPolicy: Restore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_key_rotation_interval_days: Option<i64>,
    /// A rotate request in flight (see the exactly-once protocol in the docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_rotation: Option<PendingRotation>,
}
