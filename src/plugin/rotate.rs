//! `kubectl keyrotor rotate`: one fresh request per selected policy, then
//! (with `--wait`) the operator's answer to each.

use kube::{
    Api,
    api::{Patch, PatchParams},
};

use super::{
    args::RotateArgs,
    connect::Connection,
    error::{PluginError, describe, is_missing_object},
    report::{PolicyKey, RotateReport, RotateResult},
    request::{RequestClock, rotate_patch},
    selection::Selection,
    wait::wait_for_requests,
};
use crate::crd::AccessKeyPolicy;

/// The field manager recorded on the annotation patches.
pub const FIELD_MANAGER: &str = "kubectl-keyrotor";

/// Annotates every selected policy with its own fresh request value and, with
/// `--wait`, waits for all of them; one report per policy, sorted by namespace and name.
pub async fn rotate(
    connection: &Connection,
    args: &RotateArgs,
) -> Result<Vec<RotateReport>, PluginError> {
    let selection = Selection::new(
        args.name.as_deref(),
        args.selector.as_deref(),
        args.all_namespaces,
        &connection.namespace,
    );
    let policies = selection.fetch(&connection.client).await?;
    if policies.is_empty() {
        return Err(PluginError::NoneMatched(selection.describe()));
    }
    let mut clock = RequestClock::default();
    let mut reports = Vec::with_capacity(policies.len());
    for policy in &policies {
        let key = PolicyKey::of(policy);
        let request = clock.next_value();
        let result = request_rotation(connection, &key, &request, args.force).await;
        reports.push(RotateReport {
            key,
            request,
            result,
        });
    }
    if args.wait {
        let requested = reports
            .iter()
            .filter(|r| matches!(r.result, RotateResult::Requested { .. }))
            .map(|r| (r.key.clone(), r.request.clone()));
        let mut results =
            wait_for_requests(&connection.client, &selection, requested, &args.timeout).await;
        for report in &mut reports {
            if let Some(result) = results.remove(&report.key) {
                report.result = result;
            }
        }
    }
    Ok(reports)
}

/// Sets the request annotation (and sets or clears the force annotation).
async fn request_rotation(
    connection: &Connection,
    key: &PolicyKey,
    request: &str,
    force: bool,
) -> RotateResult {
    let api: Api<AccessKeyPolicy> = Api::namespaced(connection.client.clone(), &key.namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    match api
        .patch(
            &key.name,
            &params,
            &Patch::Merge(rotate_patch(request, force)),
        )
        .await
    {
        Ok(_) => RotateResult::Requested { forced: force },
        Err(err) if is_missing_object(&err) => RotateResult::Error {
            detail: PluginError::NotFound {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
            }
            .to_string(),
        },
        Err(err) => RotateResult::Error {
            detail: format!("cannot annotate the policy: {}", describe(&err)),
        },
    }
}
