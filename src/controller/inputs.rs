//! Reading what a pass decides on besides the policy itself: the Secret's
//! credentials and the account's owner among the watched policies.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::{context::Context, error::ReconcileError};
use crate::{
    cloudflare::Credentials,
    crd::{AccessKeyPolicy, ManagementPolicy},
    decide::{AccountClaim, SecretRead, credentials_from_secret, owner_of},
};

/// Reads and validates the Secret. Secret data is read on demand and
/// dropped after the pass: never cached.
pub(super) async fn read_credentials(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<(SecretRead, Option<Credentials>), ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(secret) = secrets.get_opt(name).await? else {
        return Ok((SecretRead::Missing, None));
    };
    let version = secret.resource_version().unwrap_or_default();
    let data = secret.data.unwrap_or_default();
    Ok(match credentials_from_secret(name, &data) {
        Ok(credentials) => (SecretRead::Valid { version }, Some(credentials)),
        Err(err) => (SecretRead::Invalid(err), None),
    })
}

/// The owner of this policy's account, when it is another policy.
pub(super) fn other_owner(policy: &AccessKeyPolicy, ctx: &Context) -> Option<String> {
    let spec = &policy.spec;
    let claims: Vec<AccountClaim> = ctx
        .policies
        .iter()
        .flat_map(|store| {
            store.state_filter(|p| {
                p.spec.account_id == spec.account_id
                    && p.spec.management_policy == ManagementPolicy::Manage
                    && p.metadata.deletion_timestamp.is_none()
            })
        })
        .chain(std::iter::once(Arc::new(policy.clone())))
        .filter_map(|p| {
            Some(AccountClaim {
                created: p.metadata.creation_timestamp.as_ref()?.0,
                namespace: p.namespace()?,
                name: p.name_any(),
            })
        })
        .collect();
    let owner = owner_of(&claims)?;
    let me = (policy.namespace().unwrap_or_default(), policy.name_any());
    (owner.namespace != me.0 || owner.name != me.1)
        .then(|| format!("{}/{}", owner.namespace, owner.name))
}
