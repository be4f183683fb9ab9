//! Reading what a pass decides on besides the policy itself: the Secret's
//! credentials (the account's owner is settled in `claims`).

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::{context::Context, error::ReconcileError};
use crate::{
    cloudflare::Credentials,
    crd::CredentialsRef,
    decide::{SecretRead, credentials_from_secret},
};

/// Reads and validates the referenced Secret under its data keys. Secret data is read on demand and
/// dropped after the pass: never cached.
pub(super) async fn read_credentials(
    ctx: &Context,
    namespace: &str,
    reference: &CredentialsRef,
) -> Result<(SecretRead, Option<Credentials>), ReconcileError> {
    let name = reference.name.as_str();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(secret) = secrets.get_opt(name).await? else {
        return Ok((SecretRead::Missing, None));
    };
    let version = secret.resource_version().unwrap_or_default();
    let data = secret.data.unwrap_or_default();
    Ok(
        match credentials_from_secret(name, reference.keys(), &data) {
            Ok(credentials) => (SecretRead::Valid { version }, Some(credentials)),
            Err(err) => (SecretRead::Invalid(err), None),
        },
    )
}
