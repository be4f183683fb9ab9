//! Test fixtures of the decisions: a valid spec with the fields a test
//! cares about set on top.

use serde_json::{Value, json};

use crate::crd::AccessKeyPolicySpec;

/// A valid spec (account, 30 days, Secret `cf`) with `extra` fields merged in.
pub(crate) fn spec(extra: Value) -> AccessKeyPolicySpec {
    let mut base = json!({
        "accountId": "023e105f4ecef8ad9ca31a8372d0c353",
        "keyRotationIntervalDays": 30,
        "credentialsRef": {"name": "cf"},
    });
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    serde_json::from_value(base).expect("a valid spec")
}
