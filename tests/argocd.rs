//! The Argo CD health check and resource actions in `deploy/argocd/`, run in a
//! Lua 5.4 state cut down to what Argo CD's sandbox offers, on fixture policies;
//! the `argocd-cm` patch that inlines them; and, on the same fixtures, what
//! kstatus alone and the Flux `healthCheckExprs` of `docs/gitops.md` conclude.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use jiff::Timestamp;
use keyrotor::{
    crd::{AccessKeyPolicyStatus, ReadyReason},
    reconcile::status::set_ready,
};
use kube::core::cel::cel;
use mlua::{Lua, LuaOptions, StdLib, Value as LuaValue};
use serde_json::{Value, json};

const REQUEST: &str = "keyrotor.dev/rotate-requested-at";
const FORCE: &str = "keyrotor.dev/rotate-force";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_path(relative))
        .unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

// ---------------------------------------------------------------------------
// Argo CD's Lua sandbox

/// A Lua state with what Argo CD gives a script: the base and table libraries,
/// `require`, and an `os` module with only `date` and `time` that is reachable
/// through `require("os")` alone. No `string`, `math` or `io`, and no string
/// methods (`("x"):sub(1)`), as with Argo CD's default `useOpenLibs: false`.
/// `fixed_time` (Unix seconds) pins the clock `os.date` reads.
fn argo_sandbox(fixed_time: Option<i64>) -> Lua {
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::PACKAGE | StdLib::OS,
        LuaOptions::default(),
    )
    .expect("a Lua 5.4 state");
    lua.load(
        r#"
        local real_date, real_time, fixed = os.date, os.time, ...
        package.loaded["os"] = nil
        package.preload["os"] = function()
          return {
            date = function(format)
              if fixed ~= nil then
                return real_date(format, fixed)
              end
              return real_date(format)
            end,
            time = real_time,
          }
        end
        os = nil
        "#,
    )
    .call::<()>(fixed_time)
    .expect("sandbox set-up");
    lua
}

/// JSON as Argo CD hands it to Lua: objects and arrays become tables (arrays
/// from index 1), `null` becomes an absent field, integers stay integers so
/// that `tostring(3)` is "3" as in gopher-lua.
fn to_lua(lua: &Lua, value: &Value) -> LuaValue {
    match value {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => LuaValue::Integer(i),
            None => LuaValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => LuaValue::String(lua.create_string(s).expect("Lua string")),
        Value::Array(items) => {
            let table = lua.create_table().expect("Lua table");
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, to_lua(lua, item)).expect("array item");
            }
            LuaValue::Table(table)
        }
        Value::Object(fields) => {
            let table = lua.create_table().expect("Lua table");
            for (key, item) in fields {
                table
                    .raw_set(key.as_str(), to_lua(lua, item))
                    .expect("field");
            }
            LuaValue::Table(table)
        }
    }
}

/// A Lua result back as JSON: a table with keys 1..n is an array, any other
/// table (also an empty one) an object.
fn from_lua(value: &LuaValue) -> Value {
    match value {
        LuaValue::Nil => Value::Null,
        LuaValue::Boolean(b) => json!(b),
        LuaValue::Integer(i) => json!(i),
        LuaValue::Number(n) => json!(n),
        LuaValue::String(s) => json!(s.to_str().expect("UTF-8 string").to_string()),
        LuaValue::Table(table) => {
            let pairs: Vec<(LuaValue, LuaValue)> = table
                .pairs::<LuaValue, LuaValue>()
                .collect::<mlua::Result<_>>()
                .expect("table pairs");
            let len = table.raw_len();
            if len > 0 && len == pairs.len() {
                let items = (1..=len)
                    .map(|i| from_lua(&table.raw_get::<LuaValue>(i).expect("array item")))
                    .collect();
                return Value::Array(items);
            }
            let mut object = serde_json::Map::new();
            for (key, item) in &pairs {
                let LuaValue::String(key) = key else {
                    panic!("a table mixing array and object keys: {key:?}")
                };
                object.insert(key.to_str().expect("UTF-8 key").to_string(), from_lua(item));
            }
            Value::Object(object)
        }
        other => panic!("a Lua value Argo CD could not encode: {other:?}"),
    }
}

/// Runs one script as Argo CD does: `obj` global, the chunk's return value is the answer.
fn run_script(lua: &Lua, relative: &str, object: &Value) -> Value {
    lua.globals()
        .set("obj", to_lua(lua, object))
        .expect("set obj");
    let result: LuaValue = lua
        .load(read(relative))
        .set_name(relative)
        .call(())
        .unwrap_or_else(|e| panic!("{relative} failed: {e}"));
    from_lua(&result)
}

fn argo_health(object: &Value) -> (String, String) {
    let hs = run_script(&argo_sandbox(None), "deploy/argocd/health.lua", object);
    let fields = hs.as_object().expect("health.lua returns a table");
    assert!(
        fields.keys().all(|k| k == "status" || k == "message"),
        "only status and message: {hs}"
    );
    let text = |key: &str| {
        hs[key]
            .as_str()
            .unwrap_or_else(|| panic!("hs.{key} is a string: {hs}"))
            .to_owned()
    };
    (text("status"), text("message"))
}

#[test]
fn sandbox_offers_only_what_argo_cd_offers() {
    let lua = argo_sandbox(None);
    let missing: bool = lua
        .load(
            r#"return string == nil and math == nil and io == nil and os == nil
                and getmetatable("") == nil and require("os").date ~= nil
                and require("os").execute == nil"#,
        )
        .eval()
        .expect("probe");
    assert!(missing, "the sandbox must be as poor as Argo CD's");
}

// ---------------------------------------------------------------------------
// Fixtures

fn policy(generation: i64) -> Value {
    json!({
        "apiVersion": "keyrotor.dev/v1alpha1",
        "kind": "AccessKeyPolicy",
        "metadata": {
            "name": "production",
            "namespace": "security",
            "generation": generation,
            "uid": "6f1c2a8e-2b1d-4c55-9d1e-3f0c3c1b2a10",
            "creationTimestamp": "2026-11-01T09:00:00Z",
        },
        "spec": {
            "accountId": "023e105f4ecef8ad9ca31a8372d0c353",
            "keyRotationIntervalDays": 30,
            "credentialsRef": {"name": "cloudflare-api"},
            "managementPolicy": "Manage",
            "suspend": false,
            "driftCheckInterval": "10m",
            "rotationCooldown": "168h",
            "deletionPolicy": "Orphan",
        },
    })
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, generation: i64) -> Value {
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": "2026-11-26T09:00:00Z",
    })
}

/// A policy at `generation` whose status was written for `observed`.
fn observed(generation: i64, observed: i64, conditions: Vec<Value>) -> Value {
    let mut object = policy(generation);
    object["status"] = json!({
        "observedGeneration": observed,
        "conditions": conditions,
        "accountKeyRotationIntervalDays": 30,
        "daysUntilNextRotation": 12,
        "lastKeyRotationAt": "2026-11-14T09:12:44.5Z",
        "nextKeyRotationAt": "2026-12-14T09:12:44.5Z",
        "originalKeyRotationIntervalDays": 42,
    });
    object
}

const READY_MESSAGE: &str = "the account rotates every 30 days, as the spec says";

fn healthy() -> Value {
    observed(
        2,
        2,
        vec![
            condition("Ready", "True", "Reconciled", READY_MESSAGE, 2),
            condition("Synced", "True", "InSync", READY_MESSAGE, 2),
        ],
    )
}

/// Ready False with `reason`, with the conditions the operator itself writes
/// for it (kstatus's `Stalled` or `Reconciling` beside `Ready`); a reason the
/// operator does not know gets the Ready condition alone.
fn ready_false(reason: &str, message: &str) -> Value {
    let conditions = match ReadyReason::ALL.iter().find(|r| r.as_str() == reason) {
        Some(known) => {
            let mut status = AccessKeyPolicyStatus::default();
            let at = "2026-11-26T09:00:00Z".parse().expect("timestamp");
            set_ready(&mut status, *known, message, Some(2), at);
            status
                .conditions
                .iter()
                .map(|c| serde_json::to_value(c).expect("condition serializes"))
                .collect()
        }
        None => vec![condition("Ready", "False", reason, message, 2)],
    };
    observed(2, 2, conditions)
}

/// Sets the rotate annotation, and optionally what the operator recorded for it.
fn request(mut object: Value, value: &str, handled: Option<(&str, &str)>) -> Value {
    object["metadata"]["annotations"] = json!({ REQUEST: value });
    if let Some((last, outcome)) = handled {
        object["status"]["lastHandledRotateRequest"] = json!(last);
        object["status"]["lastRotateOutcome"] = json!(outcome);
    }
    object
}

/// One fixture and what each tool must conclude about it.
struct Case {
    name: &'static str,
    policy: Value,
    /// Argo CD health status and a fragment of its message.
    argo: (&'static str, &'static str),
    /// Upstream kstatus rules alone (what `wait: true` sees without expressions).
    kstatus: &'static str,
    /// Flux with the documented `healthCheckExprs`; "Waiting" means the
    /// expressions cannot be evaluated yet (no status), and Flux keeps waiting.
    flux: &'static str,
}

fn cases() -> Vec<Case> {
    let secret_missing = "Secret security/cloudflare-api not found";
    vec![
        Case {
            name: "fresh object, no status",
            policy: policy(1),
            argo: (
                "Progressing",
                "waiting for the operator to observe generation 1",
            ),
            kstatus: "Current",
            flux: "Waiting",
        },
        Case {
            name: "status written for an older generation",
            policy: observed(
                3,
                2,
                vec![condition("Ready", "True", "Reconciled", READY_MESSAGE, 2)],
            ),
            argo: (
                "Progressing",
                "waiting for the operator to observe generation 3",
            ),
            kstatus: "InProgress",
            flux: "InProgress",
        },
        Case {
            name: "Ready condition older than the status' observedGeneration",
            policy: observed(
                3,
                3,
                vec![condition("Ready", "True", "Reconciled", READY_MESSAGE, 2)],
            ),
            argo: (
                "Progressing",
                "waiting for the operator to observe generation 3",
            ),
            kstatus: "Current",
            flux: "InProgress",
        },
        Case {
            name: "Ready True",
            policy: healthy(),
            argo: ("Healthy", READY_MESSAGE),
            kstatus: "Current",
            flux: "Current",
        },
        Case {
            name: "Ready True in Observe mode with drift",
            policy: observed(
                2,
                2,
                vec![
                    condition(
                        "Ready",
                        "True",
                        "Reconciled",
                        "read the account (Observe)",
                        2,
                    ),
                    condition(
                        "Synced",
                        "False",
                        "Drifted",
                        "the account's interval is 42 days, the spec wants 30 days",
                        2,
                    ),
                ],
            ),
            argo: ("Healthy", "read the account (Observe)"),
            kstatus: "Current",
            flux: "Current",
        },
        Case {
            name: "SecretNotFound",
            policy: ready_false("SecretNotFound", secret_missing),
            argo: (
                "Degraded",
                "SecretNotFound: Secret security/cloudflare-api not found",
            ),
            kstatus: "Failed",
            flux: "Failed",
        },
        Case {
            name: "InvalidCredentials",
            policy: ready_false("InvalidCredentials", "Cloudflare refused the token (10000)"),
            argo: (
                "Degraded",
                "InvalidCredentials: Cloudflare refused the token (10000)",
            ),
            kstatus: "Failed",
            flux: "Failed",
        },
        Case {
            name: "AccountNotFound",
            policy: ready_false("AccountNotFound", "account 023e... not found"),
            argo: ("Degraded", "AccountNotFound: account 023e... not found"),
            kstatus: "Failed",
            flux: "Failed",
        },
        Case {
            name: "Conflict",
            policy: ready_false("Conflict", "the account is owned by security/older"),
            argo: (
                "Degraded",
                "Conflict: the account is owned by security/older",
            ),
            kstatus: "Failed",
            flux: "Failed",
        },
        Case {
            name: "ApiError",
            policy: ready_false("ApiError", "Cloudflare answered 502 three times"),
            argo: ("Degraded", "ApiError: Cloudflare answered 502 three times"),
            kstatus: "InProgress",
            flux: "Failed",
        },
        Case {
            name: "a reason this script does not know",
            policy: ready_false("SomethingNew", ""),
            argo: ("Degraded", "SomethingNew"),
            kstatus: "Current",
            flux: "Failed",
        },
        Case {
            name: "RateLimited",
            policy: ready_false("RateLimited", "Cloudflare asked to wait 300s"),
            argo: ("Progressing", "RateLimited: Cloudflare asked to wait 300s"),
            kstatus: "InProgress",
            flux: "InProgress",
        },
        Case {
            name: "Reconciling",
            policy: ready_false("Reconciling", "rotating the key"),
            argo: ("Progressing", "Reconciling: rotating the key"),
            kstatus: "InProgress",
            flux: "InProgress",
        },
        Case {
            name: "Suspended",
            policy: ready_false("Suspended", "spec.suspend is true"),
            argo: ("Suspended", "spec.suspend is true"),
            kstatus: "Current",
            flux: "Current",
        },
        Case {
            name: "Ready Unknown",
            policy: observed(
                2,
                2,
                vec![condition("Ready", "Unknown", "Reconciling", "", 2)],
            ),
            argo: ("Progressing", "Reconciling"),
            kstatus: "Current",
            flux: "InProgress",
        },
        Case {
            name: "status without conditions",
            policy: observed(2, 2, vec![]),
            argo: (
                "Progressing",
                "waiting for the operator to report the Ready condition",
            ),
            kstatus: "Current",
            flux: "InProgress",
        },
        Case {
            name: "rotate request pending",
            policy: request(
                healthy(),
                "2026-11-26T10:00:00Z",
                Some(("2026-11-20T08:00:00Z", "Rotated")),
            ),
            argo: (
                "Progressing",
                "rotation requested (keyrotor.dev/rotate-requested-at=2026-11-26T10:00:00Z)",
            ),
            kstatus: "Current",
            flux: "InProgress",
        },
        Case {
            name: "first rotate request pending, nothing handled before",
            policy: request(healthy(), "2026-11-26T10:00:00Z", None),
            argo: ("Progressing", "rotation requested"),
            kstatus: "Current",
            flux: "InProgress",
        },
        Case {
            name: "rotate request handled",
            policy: request(
                healthy(),
                "2026-11-26T10:00:00Z",
                Some(("2026-11-26T10:00:00Z", "Rotated")),
            ),
            argo: ("Healthy", READY_MESSAGE),
            kstatus: "Current",
            flux: "Current",
        },
        Case {
            name: "rotate request refused by the cooldown",
            policy: request(
                healthy(),
                "2026-11-26T10:00:00Z",
                Some(("2026-11-26T10:00:00Z", "RefusedCooldown")),
            ),
            argo: (
                "Healthy",
                "; rotate request 2026-11-26T10:00:00Z: RefusedCooldown",
            ),
            kstatus: "Current",
            flux: "Current",
        },
        Case {
            name: "empty rotate annotation is no request",
            policy: request(healthy(), "", None),
            argo: ("Healthy", READY_MESSAGE),
            kstatus: "Current",
            flux: "Current",
        },
        Case {
            name: "broken credentials win over a pending request",
            policy: request(
                ready_false(
                    "InvalidCredentials",
                    "the Secret has both apiToken and apiKey",
                ),
                "2026-11-26T10:00:00Z",
                None,
            ),
            argo: (
                "Degraded",
                "InvalidCredentials: the Secret has both apiToken and apiKey",
            ),
            kstatus: "Failed",
            flux: "Failed",
        },
        Case {
            name: "suspended wins over a pending request",
            policy: request(
                ready_false("Suspended", "spec.suspend is true"),
                "2026-11-26T10:00:00Z",
                None,
            ),
            argo: ("Suspended", "spec.suspend is true"),
            kstatus: "Current",
            flux: "Current",
        },
        Case {
            name: "rate limited while a request is pending",
            policy: request(
                ready_false("RateLimited", "Cloudflare asked to wait 300s"),
                "2026-11-26T10:00:00Z",
                None,
            ),
            argo: ("Progressing", "rotation requested"),
            kstatus: "InProgress",
            flux: "InProgress",
        },
    ]
}

// ---------------------------------------------------------------------------
// Health

#[test]
fn health_check_reports_every_fixture_as_documented() {
    let cases = cases();
    assert!(cases.len() >= 10, "at least ten fixtures");
    let mut wrong = String::new();
    for case in &cases {
        let (status, message) = argo_health(&case.policy);
        let (want_status, want_fragment) = case.argo;
        if status != want_status || !message.contains(want_fragment) {
            let _ = writeln!(
                wrong,
                "{}: got {status} {message:?}, want {want_status} containing {want_fragment:?}",
                case.name
            );
        }
    }
    assert!(wrong.is_empty(), "health.lua:\n{wrong}");
}

#[test]
fn health_check_survives_an_object_without_metadata_generation() {
    let mut object = policy(1);
    object["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("generation");
    assert_eq!(
        argo_health(&object),
        (
            "Progressing".to_owned(),
            "waiting for the operator to observe the policy".to_owned()
        )
    );
}

/// kstatus' generic rules for a custom resource (`checkGenericProperties` in
/// sigs.k8s.io/cli-utils/pkg/kstatus/status/generic.go, then "Current").
fn kstatus(object: &Value) -> &'static str {
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating";
    }
    let generation = object.pointer("/metadata/generation");
    let observed = object.pointer("/status/observedGeneration");
    if let (Some(generation), Some(observed)) = (generation, observed)
        && generation != observed
    {
        return "InProgress";
    }
    let conditions = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in &conditions {
        match (c["type"].as_str(), c["status"].as_str()) {
            (Some("Reconciling"), Some("True")) => return "InProgress",
            (Some("Stalled"), Some("True")) => return "Failed",
            _ => {}
        }
    }
    "Current"
}

#[test]
fn kstatus_alone_reads_the_operators_kstatus_conditions() {
    let mut wrong = String::new();
    for case in cases() {
        let got = kstatus(&case.policy);
        if got != case.kstatus {
            let _ = writeln!(wrong, "{}: got {got}, want {}", case.name, case.kstatus);
        }
    }
    assert!(wrong.is_empty(), "kstatus:\n{wrong}");
}

/// The `healthCheckExprs` entry for AccessKeyPolicy in docs/gitops.md.
struct FluxExprs {
    in_progress: String,
    failed: String,
    current: String,
}

fn documented_flux_exprs() -> FluxExprs {
    let doc = read("docs/gitops.md");
    let mut found = Vec::new();
    for block in doc.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        for document in serde_norway::Deserializer::from_str(block) {
            let value: Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("a YAML block of docs/gitops.md does not parse: {e}"));
            if value["kind"] != "Kustomization" {
                continue;
            }
            for check in value["spec"]["healthCheckExprs"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if check["kind"] == "AccessKeyPolicy" {
                    assert_eq!(check["apiVersion"], "keyrotor.dev/v1alpha1");
                    let text = |key: &str| check[key].as_str().unwrap_or_default().to_owned();
                    found.push(FluxExprs {
                        in_progress: text("inProgress"),
                        failed: text("failed"),
                        current: text("current"),
                    });
                }
            }
            for check in value["spec"]["healthChecks"]
                .as_array()
                .into_iter()
                .flatten()
            {
                assert_eq!(check["apiVersion"], "keyrotor.dev/v1alpha1", "{check}");
                assert_eq!(check["kind"], "AccessKeyPolicy", "{check}");
            }
        }
    }
    assert_eq!(
        found.len(),
        1,
        "docs/gitops.md shows one healthCheckExprs entry"
    );
    found.remove(0)
}

fn cel_bool(expression: &str, object: &Value) -> Result<bool, String> {
    let program = cel::Program::compile(expression).map_err(|e| format!("{e}"))?;
    let mut context = cel::Context::default();
    // As in Flux: the object's top-level fields are the variables.
    for (key, value) in object.as_object().expect("an object") {
        context
            .add_variable(key.as_str(), value.clone())
            .map_err(|e| format!("{e}"))?;
    }
    match program.execute(&context) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("not a boolean: {other:?}")),
        Err(e) => Err(format!("{e}")),
    }
}

/// kustomize-controller's CEL status reader: the generation check, then
/// inProgress, failed, current in that order; none true is InProgress.
fn flux_status(exprs: &FluxExprs, object: &Value) -> Result<&'static str, String> {
    let generation = object.pointer("/metadata/generation");
    if let Some(observed) = object.pointer("/status/observedGeneration")
        && Some(observed) != generation
    {
        return Ok("InProgress");
    }
    for (expression, status) in [
        (&exprs.in_progress, "InProgress"),
        (&exprs.failed, "Failed"),
        (&exprs.current, "Current"),
    ] {
        if cel_bool(expression, object)? {
            return Ok(status);
        }
    }
    Ok("InProgress")
}

#[test]
fn flux_health_check_exprs_in_the_docs_read_ready_and_the_rotate_request() {
    let exprs = documented_flux_exprs();
    for expression in [&exprs.in_progress, &exprs.failed, &exprs.current] {
        assert!(!expression.is_empty(), "all three expressions are given");
        cel::Program::compile(expression)
            .unwrap_or_else(|e| panic!("CEL does not parse: {e}\n{expression}"));
    }
    let mut wrong = String::new();
    for case in cases() {
        let got = match flux_status(&exprs, &case.policy) {
            Ok(status) => status.to_owned(),
            Err(error) => format!("Waiting ({error})"),
        };
        if !got.starts_with(case.flux) {
            let _ = writeln!(wrong, "{}: got {got}, want {}", case.name, case.flux);
        }
    }
    assert!(
        wrong.is_empty(),
        "healthCheckExprs of docs/gitops.md:\n{wrong}"
    );
}

// ---------------------------------------------------------------------------
// Actions

fn action_dirs() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_path("deploy/argocd/actions"))
        .expect("deploy/argocd/actions")
        .filter_map(|entry| {
            let entry = entry.expect("directory entry");
            entry
                .path()
                .join("action.lua")
                .is_file()
                .then(|| entry.file_name().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}

#[test]
fn discovery_offers_rotate_and_rotate_force_and_nothing_without_a_script() {
    let actions = run_script(
        &argo_sandbox(None),
        "deploy/argocd/actions/discovery.lua",
        &healthy(),
    );
    let actions = actions.as_object().expect("discovery returns a table");
    let mut offered: Vec<String> = actions.keys().cloned().collect();
    offered.sort();
    assert_eq!(offered, ["rotate", "rotate-force"]);
    assert_eq!(
        offered,
        action_dirs(),
        "every offered action has an action.lua"
    );
    for (name, settings) in actions {
        assert_ne!(settings["disabled"], json!(true), "{name} is enabled");
    }
}

fn run_action(name: &str, object: &Value, fixed_time: Option<i64>) -> Value {
    run_script(
        &argo_sandbox(fixed_time),
        &format!("deploy/argocd/actions/{name}/action.lua"),
        object,
    )
}

/// The object with its annotations removed, to compare what an action must not touch.
fn without_annotations(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object["metadata"].as_object_mut() {
        metadata.remove("annotations");
    }
    object
}

#[test]
fn rotate_sets_a_new_rfc3339_request_drops_force_and_touches_nothing_else() {
    let old = "2026-11-20T08:00:00Z";
    let mut before = request(healthy(), old, Some((old, "Rotated")));
    before["metadata"]["annotations"][FORCE] = json!("true");
    before["metadata"]["annotations"]["team"] = json!("security");

    let after = run_action("rotate", &before, None);

    let value = after["metadata"]["annotations"][REQUEST]
        .as_str()
        .expect("the request annotation is a string");
    assert_ne!(value, old, "a new value is a new request");
    let at: Timestamp = value
        .parse()
        .unwrap_or_else(|e| panic!("{value:?} is not RFC 3339: {e}"));
    let drift = (Timestamp::now().as_second() - at.as_second()).abs();
    assert!(drift < 120, "{value} is the current UTC time");
    assert!(value.ends_with('Z'), "{value} is UTC");
    assert_eq!(
        after["metadata"]["annotations"].get(FORCE),
        None,
        "a force left by an earlier request is removed"
    );
    assert_eq!(after["metadata"]["annotations"]["team"], "security");
    assert_eq!(without_annotations(&after), without_annotations(&before));
}

#[test]
fn rotate_force_sets_the_force_annotation_too() {
    let before = request(healthy(), "2026-11-20T08:00:00Z", None);
    let after = run_action("rotate-force", &before, None);
    let annotations = &after["metadata"]["annotations"];
    assert_eq!(annotations[FORCE], "true");
    let value = annotations[REQUEST].as_str().expect("request value");
    assert_ne!(value, "2026-11-20T08:00:00Z");
    value.parse::<Timestamp>().expect("RFC 3339");
    assert_eq!(without_annotations(&after), without_annotations(&before));
}

#[test]
fn actions_create_the_annotations_when_the_object_has_none() {
    for name in action_dirs() {
        let after = run_action(&name, &healthy(), None);
        let value = after["metadata"]["annotations"][REQUEST]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: request annotation set"));
        value.parse::<Timestamp>().expect("RFC 3339");
    }
}

#[test]
fn a_second_request_within_the_same_second_still_gets_a_new_value() {
    let now = 1_795_000_000; // 2026-11-18T11:06:40Z
    let same_second = Timestamp::from_second(now)
        .expect("timestamp")
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for name in action_dirs() {
        let first = run_action(&name, &request(healthy(), &same_second, None), Some(now));
        let value = first["metadata"]["annotations"][REQUEST]
            .as_str()
            .expect("request value")
            .to_owned();
        assert_ne!(value, same_second, "{name}");
        let at: Timestamp = value.parse().expect("RFC 3339");
        assert_eq!(at.as_second(), now, "{name}: {value} is still that second");

        let second = run_action(&name, &first, Some(now));
        assert_ne!(
            second["metadata"]["annotations"][REQUEST],
            json!(value),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------
// argocd-cm

const ARGOCD_CM: &str = "deploy/argocd/argocd-cm-patch.yaml";
const HEALTH_KEY: &str = "resource.customizations.health.keyrotor.dev_AccessKeyPolicy";
const ACTIONS_KEY: &str = "resource.customizations.actions.keyrotor.dev_AccessKeyPolicy";

/// A Lua file survives a YAML literal block (`|`, clip chomping) unchanged
/// only if it ends in exactly one newline and has no tabs, carriage returns,
/// trailing spaces or indented first line.
fn assert_embeddable(relative: &str, script: &str) {
    assert!(
        script.ends_with('\n') && !script.ends_with("\n\n"),
        "{relative} ends with one newline"
    );
    assert!(
        !script.starts_with([' ', '\n']),
        "{relative} starts at column 0"
    );
    for (i, line) in script.lines().enumerate() {
        assert!(
            !line.contains(['\t', '\r']) && !line.ends_with(' '),
            "{relative}:{}: no tabs, carriage returns or trailing spaces",
            i + 1
        );
    }
}

fn indent(script: &str, by: usize) -> String {
    script
        .lines()
        .map(|line| {
            if line.is_empty() {
                "\n".to_owned()
            } else {
                format!("{:by$}{line}\n", "")
            }
        })
        .collect()
}

/// `argocd-cm-patch.yaml` as generated from the Lua files.
fn render_argocd_cm() -> String {
    let health = read("deploy/argocd/health.lua");
    let discovery = read("deploy/argocd/actions/discovery.lua");
    let mut out = String::from(
        "# Generated from the .lua files next to this one by tests/argocd.rs: edit those,\n\
         # then run `KEYROTOR_REGENERATE=1 cargo test --test argocd`.\n\
         # A merge patch for Argo CD's argocd-cm (see docs/gitops.md):\n\
         #   kubectl -n argocd patch configmap argocd-cm --type merge \\\n\
         #     --patch-file deploy/argocd/argocd-cm-patch.yaml\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n  name: argocd-cm\n\
         data:\n",
    );
    let _ = writeln!(out, "  {HEALTH_KEY}: |");
    out += &indent(&health, 4);
    let _ = writeln!(out, "  {ACTIONS_KEY}: |");
    out += "    discovery.lua: |\n";
    out += &indent(&discovery, 6);
    out += "    definitions:\n";
    for name in action_dirs() {
        let script = read(&format!("deploy/argocd/actions/{name}/action.lua"));
        let _ = writeln!(out, "      - name: {name}\n        action.lua: |");
        out += &indent(&script, 10);
    }
    out
}

#[test]
fn argocd_cm_patch_inlines_the_lua_files_exactly() {
    let mut scripts = vec![
        "deploy/argocd/health.lua".to_owned(),
        "deploy/argocd/actions/discovery.lua".to_owned(),
    ];
    scripts.extend(
        action_dirs()
            .iter()
            .map(|name| format!("deploy/argocd/actions/{name}/action.lua")),
    );
    for relative in &scripts {
        assert_embeddable(relative, &read(relative));
    }

    let generated = render_argocd_cm();
    if std::env::var_os("KEYROTOR_REGENERATE").is_some() {
        std::fs::write(repo_path(ARGOCD_CM), &generated).expect("write argocd-cm-patch.yaml");
    }
    let committed = read(ARGOCD_CM);

    // Independent of the layout: what Argo CD will read is byte-identical to the files.
    let cm: Value = serde_norway::from_str(&committed).expect("argocd-cm-patch.yaml parses");
    assert_eq!(
        (&cm["apiVersion"], &cm["kind"]),
        (&json!("v1"), &json!("ConfigMap"))
    );
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    assert_eq!(
        cm["data"][HEALTH_KEY].as_str(),
        Some(read("deploy/argocd/health.lua").as_str()),
        "the health check in argocd-cm differs from health.lua"
    );
    let actions: Value = serde_norway::from_str(
        cm["data"][ACTIONS_KEY]
            .as_str()
            .expect("the actions key is a string"),
    )
    .expect("the actions value parses");
    assert_eq!(
        actions["discovery.lua"].as_str(),
        Some(read("deploy/argocd/actions/discovery.lua").as_str()),
        "discovery.lua differs"
    );
    let definitions = actions["definitions"].as_array().expect("definitions");
    let names: Vec<&str> = definitions
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, action_dirs(), "one definition per action directory");
    for definition in definitions {
        let name = definition["name"].as_str().unwrap_or_default();
        assert_eq!(
            definition["action.lua"].as_str(),
            Some(read(&format!("deploy/argocd/actions/{name}/action.lua")).as_str()),
            "action {name} differs"
        );
    }

    assert!(
        committed == generated,
        "{ARGOCD_CM} is stale: run `KEYROTOR_REGENERATE=1 cargo test --test argocd`"
    );
}
