//! The status write of a pass: server-side apply, only when it changed,
//! conditional on the version the pass decided on.

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;

use super::error::ReconcileError;
use crate::crd::{AccessKeyPolicy, AccessKeyPolicyStatus, ConditionType};

/// Writes the status by server-side apply, only when it differs from what is
/// stored, conditional on the version the pass decided on.
pub(super) struct StatusWriter {
    pub(super) api: Api<AccessKeyPolicy>,
    pub(super) name: String,
    pub(super) field_manager: String,
    pub(super) written: AccessKeyPolicyStatus,
    /// Every write carries it, so a write based on a stale cache fails instead of landing.
    pub(super) resource_version: Option<String>,
    /// The versions this pass's writes replaced.
    pub(super) replaced: Vec<String>,
}

impl StatusWriter {
    pub(super) async fn write(
        &mut self,
        status: &AccessKeyPolicyStatus,
    ) -> Result<(), ReconcileError> {
        if *status == self.written {
            return Ok(());
        }
        // Only the operator's own conditions: the list is a map keyed by
        // type, and applying another tool's condition would make the operator
        // its co-owner (that tool could then no longer remove it).
        let mut own = status.clone();
        own.conditions.retain(|c| ConditionType::is_own(&c.type_));
        let patch = json!({
            "apiVersion": "keyrotor.dev/v1alpha1",
            "kind": "AccessKeyPolicy",
            "metadata": {"resourceVersion": self.resource_version},
            "status": own,
        });
        let params = PatchParams::apply(&self.field_manager).force();
        let updated = self
            .api
            .patch_status(&self.name, &params, &Patch::Apply(&patch))
            .await
            .map_err(ReconcileError::from_write)?;
        let before = std::mem::replace(&mut self.resource_version, updated.resource_version());
        self.replaced.extend(before);
        self.written = status.clone();
        Ok(())
    }
}
