//! Reads CustomResourceDefinitions from files and installs them.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Deserialize;

use crate::TestEnvError;

/// Field manager for server-side apply of the CRDs.
const FIELD_MANAGER: &str = "keyrotor-testenv";

/// Expands directories to their `.yaml`, `.yml` and `.json` files (sorted);
/// files are kept as given.
pub(crate) fn crd_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, TestEnvError> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let entries = std::fs::read_dir(path)
            .map_err(|e| TestEnvError::io(format!("listing {}", path.display()), e))?;
        let mut found = Vec::new();
        for entry in entries {
            let file = entry
                .map_err(|e| TestEnvError::io(format!("listing {}", path.display()), e))?
                .path();
            let manifest = file
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json");
            if manifest && file.is_file() {
                found.push(file);
            }
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Every CustomResourceDefinition in the (multi-document) YAML file at `path`.
pub(crate) fn load(path: &Path) -> Result<Vec<CustomResourceDefinition>, TestEnvError> {
    let invalid = |reason: String| TestEnvError::CrdFile {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
    let mut crds = Vec::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let value =
            serde_norway::Value::deserialize(document).map_err(|e| invalid(e.to_string()))?;
        // A document holding only comments, such as a generated-file header.
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(serde_norway::Value::as_str);
        if kind != Some("CustomResourceDefinition") {
            return Err(invalid(format!(
                "expected kind CustomResourceDefinition, found {kind:?}"
            )));
        }
        let crd: CustomResourceDefinition =
            serde_norway::from_value(value).map_err(|e| invalid(e.to_string()))?;
        if crd.metadata.name.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(
                "a CustomResourceDefinition has no metadata.name".to_owned(),
            ));
        }
        crds.push(crd);
    }
    if crds.is_empty() {
        return Err(invalid("holds no CustomResourceDefinition".to_owned()));
    }
    Ok(crds)
}

/// Creates or updates `crd` by server-side apply; returns its name.
pub(crate) async fn apply(
    client: &kube::Client,
    crd: &CustomResourceDefinition,
) -> Result<String, TestEnvError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(crd),
    )
    .await
    .map_err(|e| TestEnvError::kube(format!("applying CRD {name}"), e))?;
    Ok(name)
}

/// True once the CRD `name` has condition Established=True.
pub(crate) async fn is_established(client: &kube::Client, name: &str) -> bool {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let Ok(crd) = api.get(name).await else {
        return false;
    };
    crd.status
        .and_then(|status| status.conditions)
        .unwrap_or_default()
        .iter()
        .any(|condition| condition.type_ == "Established" && condition.status == "True")
}
