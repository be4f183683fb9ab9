//! The Argo CD health check and resource actions of
//! `deploy/argocd/keyrotor.dev/AccessKeyPolicy/`, laid out as in Argo CD's
//! `resource_customizations/<group>/<kind>/` and checked by their own
//! `health_test.yaml` and `actions/action_test.yaml`, run in a Lua 5.1 state
//! (Argo CD's gopher-lua is 5.1) cut down to what Argo CD's sandbox offers; the
//! `argocd-cm` patch that inlines the scripts; and, on the same test data, what
//! kstatus alone and the Flux `healthCheckExprs` of `docs/gitops.md` conclude.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use jiff::Timestamp;
use keyrotor::{
    crd::{AccessKeyPolicyStatus, ConditionType, ReadyReason, RotationWindowReason},
    decide::{status::set_ready, window::WindowError},
};
use kube::core::cel::cel;
use mlua::{Lua, LuaOptions, StdLib, Value as LuaValue};
use serde_json::{Value, json};

/// The directory Argo CD would know as `resource_customizations/keyrotor.dev/AccessKeyPolicy`.
const KIND_DIR: &str = "deploy/argocd/keyrotor.dev/AccessKeyPolicy";
const REQUEST: &str = "keyrotor.dev/rotate-requested-at";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_path(relative))
        .unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

/// A YAML file of the kind directory, as JSON.
fn yaml(relative: &str) -> Value {
    let path = format!("{KIND_DIR}/{relative}");
    serde_norway::from_str(&read(&path)).unwrap_or_else(|e| panic!("{path} does not parse: {e}"))
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
    .expect("a Lua 5.1 state");
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
    let hs = run_script(
        &argo_sandbox(None),
        &format!("{KIND_DIR}/health.lua"),
        object,
    );
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
// Health: health_test.yaml

/// `health_test.yaml`'s cases: the test data file and the expected status and message.
fn health_tests() -> Vec<(String, String, String)> {
    let tests = yaml("health_test.yaml");
    tests["tests"]
        .as_array()
        .expect("health_test.yaml has tests")
        .iter()
        .map(|test| {
            let text = |value: &Value| value.as_str().expect("a string").to_owned();
            (
                text(&test["inputPath"]),
                text(&test["healthStatus"]["status"]),
                text(&test["healthStatus"]["message"]),
            )
        })
        .collect()
}

#[test]
fn health_check_gives_every_health_test_its_status_and_message() {
    let mut wrong = String::new();
    for (input, want_status, want_message) in health_tests() {
        let (status, message) = argo_health(&yaml(&input));
        if (&status, &message) != (&want_status, &want_message) {
            let _ = writeln!(
                wrong,
                "{input}: got {status} {message:?}, want {want_status} {want_message:?}"
            );
        }
    }
    assert!(wrong.is_empty(), "health.lua:\n{wrong}");
}

/// A Ready False condition in the test data is what the operator writes for
/// that reason (with kstatus' Stalled or Reconciling beside it), so the health
/// check is tested on the operator's real output.
#[test]
fn health_test_data_carries_the_conditions_the_operator_writes() {
    for (input, _, _) in health_tests() {
        let object = yaml(&input);
        let conditions = object
            .pointer("/status/conditions")
            .cloned()
            .unwrap_or_default();
        let Some(ready) = conditions.as_array().into_iter().flatten().find(|c| {
            c["type"] == "Ready" && (c["status"] == "False" || c["reason"] == "Suspended")
        }) else {
            continue;
        };
        let Some(reason) = ReadyReason::ALL
            .iter()
            .find(|r| Some(r.as_str()) == ready["reason"].as_str())
        else {
            continue; // a reason the operator does not know: Ready alone
        };
        // Conditions set_ready does not write (AccountInSync, RotationWindow)
        // stay as they are; the order of the list is not the point.
        let mut status = AccessKeyPolicyStatus {
            conditions: serde_json::from_value(json!(
                conditions
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| !["Ready", "Reconciling", "Stalled"]
                        .contains(&c["type"].as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
            ))
            .expect("conditions"),
            ..AccessKeyPolicyStatus::default()
        };
        let at = ready["lastTransitionTime"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("lastTransitionTime");
        let message = ready["message"].as_str().unwrap_or_default();
        set_ready(
            &mut status,
            *reason,
            message,
            ready["observedGeneration"].as_i64(),
            at,
        );
        let by_type = |mut list: Vec<Value>| {
            list.sort_by_key(|c| c["type"].as_str().unwrap_or_default().to_owned());
            list
        };
        let written: Vec<Value> = status
            .conditions
            .iter()
            .map(|c| serde_json::to_value(c).expect("condition serializes"))
            .collect();
        let given = conditions.as_array().cloned().unwrap_or_default();
        assert_eq!(by_type(given), by_type(written), "{input}");
    }
}

/// A RotationWindow condition in the test data is one the operator writes:
/// a known reason, True only when Planned; an invalid window goes with Ready
/// False, InvalidSpec and the same message, which is the operator's own text
/// for the window's error.
#[test]
fn health_test_data_carries_the_window_conditions_the_operator_writes() {
    let mut seen = 0;
    for (input, _, _) in health_tests() {
        let object = yaml(&input);
        let conditions = object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let of_type = |kind: ConditionType| {
            conditions
                .iter()
                .find(|c| c["type"] == kind.as_str())
                .cloned()
        };
        let Some(window) = of_type(ConditionType::RotationWindow) else {
            continue;
        };
        seen += 1;
        let reason = [
            RotationWindowReason::Planned,
            RotationWindowReason::NoWindowFits,
            RotationWindowReason::InvalidWindow,
        ]
        .into_iter()
        .find(|r| window["reason"] == r.as_str())
        .unwrap_or_else(|| panic!("{input}: unknown RotationWindow reason"));
        let want_status = if reason == RotationWindowReason::Planned {
            "True"
        } else {
            "False"
        };
        assert_eq!(window["status"], want_status, "{input}");
        assert!(
            object.pointer("/spec/rotationWindow").is_some(),
            "{input}: a RotationWindow condition without spec.rotationWindow"
        );
        let ready = of_type(ConditionType::Ready).expect("Ready");
        if reason == RotationWindowReason::InvalidWindow {
            assert_eq!(
                ready["reason"],
                ReadyReason::InvalidSpec.as_str(),
                "{input}"
            );
            assert_eq!(ready["message"], window["message"], "{input}");
            let zone = object
                .pointer("/spec/rotationWindow/timeZone")
                .and_then(Value::as_str)
                .expect("timeZone")
                .to_owned();
            let error = WindowError::UnknownZone { zone };
            assert_eq!(
                window["message"],
                format!(
                    "{error}; the account rotates on its own schedule until the window is fixed"
                ),
                "{input}"
            );
        } else {
            assert_ne!(
                ready["reason"],
                ReadyReason::InvalidSpec.as_str(),
                "{input}"
            );
        }
    }
    assert!(
        seen >= 2,
        "the test data has an invalid and an unfitting window"
    );
}

// ---------------------------------------------------------------------------
// The same test data through kstatus alone and Flux's healthCheckExprs

/// What kstatus alone (`wait: true` without expressions) and Flux with the
/// documented `healthCheckExprs` conclude for each health test data file.
/// "Waiting" means the expressions cannot be evaluated yet (no status), and
/// Flux keeps waiting.
const OTHER_TOOLS: [(&str, &str, &str); 28] = [
    (
        "testdata/progressing_fresh-object-no-status.yaml",
        "Current",
        "Waiting",
    ),
    (
        "testdata/progressing_status-written-for-an-older-generation.yaml",
        "InProgress",
        "InProgress",
    ),
    (
        "testdata/progressing_ready-condition-older-than-the-status-observedgeneration.yaml",
        "Current",
        "InProgress",
    ),
    ("testdata/healthy_ready-true.yaml", "Current", "Current"),
    (
        "testdata/healthy_ready-true-in-observe-mode-with-drift.yaml",
        "Current",
        "Current",
    ),
    ("testdata/degraded_secretnotfound.yaml", "Failed", "Failed"),
    (
        "testdata/degraded_invalidcredentials.yaml",
        "Failed",
        "Failed",
    ),
    ("testdata/degraded_accountnotfound.yaml", "Failed", "Failed"),
    ("testdata/degraded_conflict.yaml", "Failed", "Failed"),
    ("testdata/degraded_apierror.yaml", "InProgress", "Failed"),
    (
        "testdata/degraded_a-reason-this-script-does-not-know.yaml",
        "Current",
        "Failed",
    ),
    (
        "testdata/progressing_ratelimited.yaml",
        "InProgress",
        "InProgress",
    ),
    (
        "testdata/progressing_reconciling.yaml",
        "InProgress",
        "InProgress",
    ),
    ("testdata/suspended_suspended.yaml", "Current", "Current"),
    (
        "testdata/progressing_ready-unknown.yaml",
        "Current",
        "InProgress",
    ),
    (
        "testdata/progressing_status-without-conditions.yaml",
        "Current",
        "InProgress",
    ),
    (
        "testdata/progressing_rotate-request-pending.yaml",
        "Current",
        "InProgress",
    ),
    (
        "testdata/progressing_first-rotate-request-pending-nothing-handled-before.yaml",
        "Current",
        "InProgress",
    ),
    (
        "testdata/healthy_rotate-request-handled.yaml",
        "Current",
        "Current",
    ),
    (
        "testdata/healthy_rotate-request-refused-by-the-cooldown.yaml",
        "Current",
        "Current",
    ),
    (
        "testdata/healthy_empty-rotate-annotation-is-no-request.yaml",
        "Current",
        "Current",
    ),
    (
        "testdata/degraded_broken-credentials-win-over-a-pending-request.yaml",
        "Failed",
        "Failed",
    ),
    (
        "testdata/suspended_suspended-wins-over-a-pending-request.yaml",
        "Current",
        "Current",
    ),
    (
        "testdata/progressing_rate-limited-while-a-request-is-pending.yaml",
        "InProgress",
        "InProgress",
    ),
    (
        "testdata/progressing_no-generation.yaml",
        "Current",
        "Waiting",
    ),
    (
        "testdata/degraded_overlong-rotate-request-refused.yaml",
        "Current",
        "Failed",
    ),
    (
        "testdata/degraded_invalid-rotation-window.yaml",
        "Failed",
        "Failed",
    ),
    (
        "testdata/healthy_no-window-fits-ready-decides.yaml",
        "Current",
        "Current",
    ),
];

#[test]
fn every_health_test_says_what_kstatus_and_flux_conclude() {
    let mut inputs: Vec<String> = health_tests()
        .into_iter()
        .map(|(input, _, _)| input)
        .collect();
    let mut listed: Vec<String> = OTHER_TOOLS
        .iter()
        .map(|(input, _, _)| input.to_string())
        .collect();
    inputs.sort();
    listed.sort();
    assert_eq!(inputs, listed);
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
    for (input, want, _) in OTHER_TOOLS {
        let got = kstatus(&yaml(input));
        if got != want {
            let _ = writeln!(wrong, "{input}: got {got}, want {want}");
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
    for (input, _, want) in OTHER_TOOLS {
        let got = match flux_status(&exprs, &yaml(input)) {
            Ok(status) => status.to_owned(),
            Err(error) => format!("Waiting ({error})"),
        };
        if !got.starts_with(want) {
            let _ = writeln!(wrong, "{input}: got {got}, want {want}");
        }
    }
    assert!(
        wrong.is_empty(),
        "healthCheckExprs of docs/gitops.md:\n{wrong}"
    );
}

// ---------------------------------------------------------------------------
// Actions: actions/action_test.yaml

/// The clock of the action tests: 2026-11-18T11:06:40Z, the second the
/// "requested-this-second" test data already holds.
const ACTION_CLOCK: i64 = 1_795_000_000;

fn action_dirs() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_path(&format!("{KIND_DIR}/actions")))
        .expect("the actions directory")
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

fn run_action(name: &str, object: &Value, fixed_time: Option<i64>) -> Value {
    run_script(
        &argo_sandbox(fixed_time),
        &format!("{KIND_DIR}/actions/{name}/action.lua"),
        object,
    )
}

/// What discovery.lua offers, as Argo CD lists it: one entry per action, by name.
fn discovered(object: &Value) -> Vec<Value> {
    let offered = run_script(
        &argo_sandbox(None),
        &format!("{KIND_DIR}/actions/discovery.lua"),
        object,
    );
    let mut actions: Vec<Value> = offered
        .as_object()
        .expect("discovery returns a table")
        .iter()
        .map(|(name, settings)| {
            let mut action = settings.clone();
            action["name"] = json!(name);
            action
        })
        .collect();
    actions.sort_by_key(|a| a["name"].as_str().unwrap_or_default().to_owned());
    actions
}

#[test]
fn discovery_offers_what_action_test_yaml_lists_and_each_has_a_script() {
    let tests = yaml("actions/action_test.yaml");
    for test in tests["discoveryTests"].as_array().expect("discoveryTests") {
        let input = test["inputPath"].as_str().expect("inputPath");
        let offered = discovered(&yaml(&format!("actions/{input}")));
        assert_eq!(json!(offered), test["result"], "{input}");
        let names: Vec<&str> = offered.iter().filter_map(|a| a["name"].as_str()).collect();
        assert_eq!(
            names,
            action_dirs(),
            "every offered action has an action.lua"
        );
    }
}

#[test]
fn every_action_test_turns_its_input_into_its_expected_output() {
    let tests = yaml("actions/action_test.yaml");
    let mut wrong = String::new();
    for test in tests["actionTests"].as_array().expect("actionTests") {
        let action = test["action"].as_str().expect("action");
        let input = test["inputPath"].as_str().expect("inputPath");
        let expected = test["expectedOutputPath"]
            .as_str()
            .expect("expectedOutputPath");
        let got = run_action(
            action,
            &yaml(&format!("actions/{input}")),
            Some(ACTION_CLOCK),
        );
        if got != yaml(&format!("actions/{expected}")) {
            let _ = writeln!(
                wrong,
                "{action} on {input}: got\n{}",
                serde_norway::to_string(&got).unwrap_or_default()
            );
        }
    }
    assert!(wrong.is_empty(), "{wrong}");
}

#[test]
fn actions_stamp_the_request_with_the_current_utc_time() {
    for name in action_dirs() {
        let after = run_action(&name, &yaml("actions/testdata/policy.yaml"), None);
        let value = after["metadata"]["annotations"][REQUEST]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: request annotation set"));
        assert!(value.ends_with('Z'), "{value} is UTC");
        let at: Timestamp = value
            .parse()
            .unwrap_or_else(|e| panic!("{value:?} is not RFC 3339: {e}"));
        let drift = (Timestamp::now().as_second() - at.as_second()).abs();
        assert!(drift < 120, "{name}: {value} is the current time");
        // The force is a token: the request's own value, never "true".
        let force = after["metadata"]["annotations"]["keyrotor.dev/rotate-force"].as_str();
        match name.as_str() {
            "rotate-force" => assert_eq!(force, Some(value), "{name}"),
            _ => assert_eq!(force, None, "{name}"),
        }
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
    let health = read(&format!("{KIND_DIR}/health.lua"));
    let discovery = read(&format!("{KIND_DIR}/actions/discovery.lua"));
    let mut out = String::from(
        "# Generated from the .lua files of keyrotor.dev/AccessKeyPolicy/ by tests/argocd.rs:\n\
         # edit those (and their health_test.yaml / action_test.yaml),\n\
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
        let script = read(&format!("{KIND_DIR}/actions/{name}/action.lua"));
        let _ = writeln!(out, "      - name: {name}\n        action.lua: |");
        out += &indent(&script, 10);
    }
    out
}

#[test]
fn argocd_cm_patch_inlines_the_lua_files_exactly() {
    let mut scripts = vec![
        format!("{KIND_DIR}/health.lua"),
        format!("{KIND_DIR}/actions/discovery.lua"),
    ];
    scripts.extend(
        action_dirs()
            .iter()
            .map(|name| format!("{KIND_DIR}/actions/{name}/action.lua")),
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
        Some(read(&format!("{KIND_DIR}/health.lua")).as_str()),
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
        Some(read(&format!("{KIND_DIR}/actions/discovery.lua")).as_str()),
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
            Some(read(&format!("{KIND_DIR}/actions/{name}/action.lua")).as_str()),
            "action {name} differs"
        );
    }

    assert!(
        committed == generated,
        "{ARGOCD_CM} is stale: run `KEYROTOR_REGENERATE=1 cargo test --test argocd`"
    );
}
