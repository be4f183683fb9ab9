//! The `kubectl-keyrotor` plugin binary against the real API server, the
//! simulator and the operator process: exit codes, printed outcomes and what
//! the simulator saw.

mod support;

use std::{
    collections::BTreeSet,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use jiff::{SignedDuration, Timestamp};
use keyrotor::crd::{AccessKeyPolicy, PlannedRotationReason, RotateOutcome};
use keyrotor_cloudflare_sim::AccountSeed;
use serde_json::json;
use support::{ACCOUNT, FORCE, OTHER_ACCOUNT, ROTATE, Scenario, is_ready, last_handled_request};
use tokio::process::Command;

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-keyrotor");
const THIRD_ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

/// What a finished plugin run left behind.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

async fn finish(mut command: Command) -> Run {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("the plugin finishes within 90s")
        .expect("the plugin runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `kubectl-keyrotor ARGS` with `KUBECONFIG` pointing at `kubeconfig`.
async fn plugin_with(kubeconfig: &Path, args: &[&str]) -> Run {
    let mut command = Command::new(PLUGIN);
    command.args(args).env("KUBECONFIG", kubeconfig);
    finish(command).await
}

/// `kubectl-keyrotor ARGS` against the test control plane.
async fn plugin(s: &Scenario, args: &[&str]) -> Run {
    plugin_with(s.plane.kubeconfig_path(), args).await
}

/// `kubectl keyrotor ARGS`, kubectl finding the plugin on PATH.
async fn kubectl_keyrotor(s: &Scenario, args: &[&str]) -> Run {
    let plugin_dir = Path::new(PLUGIN)
        .parent()
        .expect("the plugin has a directory");
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        [plugin_dir.to_path_buf(), s.plane.tools_dir().to_path_buf()]
            .into_iter()
            .chain(std::env::split_paths(&inherited)),
    )
    .expect("PATH");
    let mut command = Command::new(s.plane.tools_dir().join("kubectl"));
    command
        .arg("keyrotor")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", s.plane.kubeconfig_path());
    finish(command).await
}

async fn ready_scenario(prefix: &str) -> Scenario {
    let mut s = Scenario::new(prefix).await;
    s.apply_token_secret().await;
    s.start_operator();
    s
}

fn annotation(policy: &AccessKeyPolicy, key: &str) -> Option<String> {
    policy.metadata.annotations.as_ref()?.get(key).cloned()
}

fn outcome(policy: &AccessKeyPolicy) -> Option<RotateOutcome> {
    policy.status.as_ref()?.last_rotate_outcome
}

fn posted_accounts(s: &Scenario) -> Vec<String> {
    s.calls("POST")
        .into_iter()
        .filter_map(|r| r.account_id)
        .collect()
}

async fn label(s: &Scenario, name: &str, labels: serde_json::Value) {
    s.policies()
        .patch(
            name,
            &Default::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await
        .expect("label policy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_wait_rotates_a_ready_policy_once_then_refuses_inside_the_cooldown() {
    let s = ready_scenario("plugin-rotate").await;
    // Last rotated ten days ago: outside the default 168h cooldown.
    let ten_days_ago = Timestamp::now()
        .checked_sub(SignedDuration::from_hours(240))
        .expect("time");
    s.sim()
        .upsert_account(AccountSeed::new(ACCOUNT).last_rotated_at(ten_days_ago));
    s.create_policy("p", json!({})).await;
    s.wait_for("p", "Ready", is_ready).await;

    let run = plugin(&s, &["rotate", "p", "-n", &s.namespace, "--wait"]).await;
    assert_eq!(run.code, 0, "{run}\n{}", s.operator_log());
    assert!(
        run.stdout.contains(&format!("{}/p: Rotated", s.namespace)),
        "{run}"
    );
    assert_eq!(posted_accounts(&s), vec![ACCOUNT.to_owned()]);
    let p = s.policy("p").await;
    let first = annotation(&p, ROTATE).expect("request annotation");
    let parsed: Timestamp = first.parse().expect("the request is an RFC 3339 timestamp");
    assert!(first.ends_with('Z') && first.split('.').nth(1).map(str::len) == Some(10));
    assert!(parsed > ten_days_ago);
    assert_eq!(last_handled_request(&p), Some(first.as_str()));
    assert_eq!(outcome(&p), Some(RotateOutcome::Rotated));
    assert_eq!(annotation(&p, FORCE), None);

    // Inside the cooldown now: refused, exit 3, no second POST.
    let run = plugin(&s, &["rotate", "p", "-n", &s.namespace, "--wait"]).await;
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stdout.contains("RefusedCooldown"), "{run}");
    assert!(run.stdout.contains("--force"), "{run}");
    assert_eq!(s.calls("POST").len(), 1);
    let p = s.policy("p").await;
    let second = annotation(&p, ROTATE).expect("request annotation");
    assert_ne!(first, second, "each call sends a fresh value");
    assert_eq!(last_handled_request(&p), Some(second.as_str()));
    assert_eq!(outcome(&p), Some(RotateOutcome::RefusedCooldown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_runs_the_plugin_and_force_skips_the_cooldown_once() {
    // The simulator's account was rotated just now: every plain request is inside the cooldown.
    let s = ready_scenario("plugin-force").await;
    s.create_policy("p", json!({})).await;
    s.wait_for("p", "Ready", is_ready).await;

    let run = kubectl_keyrotor(
        &s,
        &["rotate", "p", "-n", &s.namespace, "--force", "--wait"],
    )
    .await;
    assert_eq!(run.code, 0, "{run}\n{}", s.operator_log());
    assert!(run.stdout.contains("Rotated"), "{run}");
    assert_eq!(s.calls("POST").len(), 1);
    let p = s.policy("p").await;
    // The force is a token: the request's own value.
    let request = annotation(&p, ROTATE).expect("request annotation");
    assert_eq!(annotation(&p, FORCE), Some(request));
    assert_eq!(outcome(&p), Some(RotateOutcome::Rotated));

    // A plain request is refused (the plugin also removes the leftover token); kubectl passes exit 3 on.
    let run = kubectl_keyrotor(&s, &["rotate", "p", "-n", &s.namespace, "--wait"]).await;
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stdout.contains("RefusedCooldown"), "{run}");
    let p = s.policy("p").await;
    assert_eq!(annotation(&p, FORCE), None);
    assert_eq!(outcome(&p), Some(RotateOutcome::RefusedCooldown));
    assert_eq!(s.calls("POST").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_policy_is_an_error_that_names_it() {
    let s = Scenario::new("plugin-missing").await;
    let expected = format!(
        "AccessKeyPolicy \"ghost\" not found in namespace \"{}\"",
        s.namespace
    );
    for args in [
        vec!["rotate", "ghost", "-n", &s.namespace, "--wait"],
        vec!["status", "ghost", "-n", &s.namespace],
    ] {
        let run = plugin(&s, &args).await;
        assert_eq!(run.code, 1, "{args:?}: {run}");
        assert!(run.stderr.contains(&expected), "{args:?}: {run}");
        assert!(!run.stderr.contains("panicked"), "{run}");
        assert_eq!(run.stdout, "", "{args:?}: {run}");
    }
    // Nothing to rotate in an empty namespace is an error too; an empty status is not.
    let run = plugin(&s, &["rotate", "--all", "-n", &s.namespace]).await;
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("nothing was rotated"), "{run}");
    let run = plugin(&s, &["status", "-n", &s.namespace]).await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.stdout, "", "{run}");
    assert!(run.stderr.contains("No AccessKeyPolicy found"), "{run}");
    // A usage error is clap's exit 2.
    let run = plugin(&s, &["rotate", "p", "--all"]).await;
    assert_eq!(run.code, 2, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_times_out_when_no_operator_handles_the_request() {
    // No operator watches this namespace.
    let s = Scenario::new("plugin-timeout").await;
    s.create_policy("p", json!({})).await;
    let started = Instant::now();
    let run = plugin(
        &s,
        &[
            "rotate",
            "p",
            "-n",
            &s.namespace,
            "--wait",
            "--timeout",
            "2s",
        ],
    )
    .await;
    let took = started.elapsed();
    assert_eq!(run.code, 5, "{run}");
    assert!(run.stdout.contains("TimedOut"), "{run}");
    assert!(run.stdout.contains("within 2s"), "{run}");
    assert!(run.stdout.contains("is the operator running"), "{run}");
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    // The request stays on the object for the operator to pick up later.
    let p = s.policy("p").await;
    assert!(annotation(&p, ROTATE).is_some());
    assert_eq!(last_handled_request(&p), None);
    assert!(s.calls("POST").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_selector_rotates_only_the_matching_policies() {
    let s = ready_scenario("plugin-selector").await;
    s.sim().upsert_account(AccountSeed::new(THIRD_ACCOUNT));
    for (name, account, team) in [
        ("a", ACCOUNT, "x"),
        ("b", OTHER_ACCOUNT, "x"),
        ("c", THIRD_ACCOUNT, "y"),
    ] {
        s.create_policy(
            name,
            json!({"accountId": account, "rotationCooldown": "0s"}),
        )
        .await;
        label(&s, name, json!({"team": team, "suite": s.namespace})).await;
    }
    for name in ["a", "b", "c"] {
        s.wait_for(name, "Ready", is_ready).await;
    }

    let run = plugin(
        &s,
        &["rotate", "-n", &s.namespace, "-l", "team=x", "--wait"],
    )
    .await;
    assert_eq!(run.code, 0, "{run}\n{}", s.operator_log());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per selected policy: {run}");
    assert!(
        lines[0].starts_with(&format!("{}/a: Rotated", s.namespace)),
        "{run}"
    );
    assert!(
        lines[1].starts_with(&format!("{}/b: Rotated", s.namespace)),
        "{run}"
    );
    let posted: BTreeSet<String> = posted_accounts(&s).into_iter().collect();
    assert_eq!(
        posted,
        BTreeSet::from([ACCOUNT.to_owned(), OTHER_ACCOUNT.to_owned()])
    );
    assert_eq!(s.calls("POST").len(), 2);
    let a = annotation(&s.policy("a").await, ROTATE).expect("a requested");
    let b = annotation(&s.policy("b").await, ROTATE).expect("b requested");
    assert_ne!(a, b, "each policy gets its own value");
    assert_eq!(annotation(&s.policy("c").await, ROTATE), None);

    // Across namespaces, selected by label: only c.
    let selector = format!("suite={},team=y", s.namespace);
    let run = plugin(&s, &["rotate", "-A", "-l", &selector, "--wait"]).await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.stdout.lines().count(), 1, "{run}");
    assert!(
        run.stdout
            .starts_with(&format!("{}/c: Rotated", s.namespace)),
        "{run}"
    );
    assert_eq!(s.calls("POST").len(), 3);

    // --all: every policy in the namespace.
    let run = plugin(&s, &["rotate", "--all", "-n", &s.namespace, "--wait"]).await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.stdout.matches(": Rotated").count(), 3, "{run}");
    assert_eq!(s.calls("POST").len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_policys_account_interval_and_readiness() {
    let s = ready_scenario("plugin-status").await;
    s.create_policy("one", json!({})).await;
    s.create_policy(
        "two",
        json!({"accountId": OTHER_ACCOUNT, "managementPolicy": "Observe"}),
    )
    .await;
    s.wait_for("one", "Ready", is_ready).await;
    s.wait_for("two", "Ready", is_ready).await;

    let run = plugin(&s, &["status", "-n", &s.namespace]).await;
    assert_eq!(run.code, 0, "{run}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{run}");
    let header: Vec<&str> = lines[0]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "ACCOUNT",
            "INTERVAL",
            "LAST ROTATION",
            "NEXT ROTATION",
            "PLANNED",
            "READY",
            "LAST OUTCOME"
        ],
        "{run}"
    );
    assert!(lines[1].starts_with("one "), "{run}");
    assert!(lines[1].contains(ACCOUNT), "{run}");
    assert!(lines[1].contains(" 30d "), "{run}");
    assert!(lines[1].contains("True (Reconciled)"), "{run}");
    // No window: the account rotates on its own schedule.
    assert!(lines[1].contains(") cloudflare "), "{run}");
    assert!(lines[2].starts_with("two "), "{run}");
    assert!(lines[2].contains(OTHER_ACCOUNT), "{run}");
    // Observe never writes: the account keeps 42 days while the spec wants 30.
    assert!(lines[2].contains("30d (account 42d)"), "{run}");

    // One by name: the detail view of that one.
    let run = plugin(&s, &["status", "two", "-n", &s.namespace]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.starts_with("Name: two\n"), "{run}");
    assert!(
        run.stdout
            .contains("Observe (reads the account, never writes)"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("Key rotation interval: 42d (the spec wants 30d)"),
        "{run}"
    );
    assert!(!run.stdout.contains(ACCOUNT), "{run}");

    // Without -n: the kubeconfig context's namespace.
    let kubeconfig = s.plane.dir().join(format!("kubeconfig-{}", s.namespace));
    std::fs::copy(s.plane.kubeconfig_path(), &kubeconfig).expect("copy kubeconfig");
    let set = s
        .plane
        .kubectl()
        .arg("config")
        .arg("set-context")
        .arg("--current")
        .arg(format!("--namespace={}", s.namespace))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .output()
        .expect("kubectl config");
    assert!(set.status.success(), "{set:?}");
    let run = plugin_with(&kubeconfig, &["status"]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains(OTHER_ACCOUNT), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_across_namespaces_names_each_namespace() {
    let first = Scenario::new("plugin-all-a").await;
    let second = Scenario::new("plugin-all-b").await;
    first.create_policy("p", json!({})).await;
    second
        .create_policy("q", json!({"accountId": OTHER_ACCOUNT}))
        .await;

    let run = plugin(&first, &["status", "-A"]).await;
    assert_eq!(run.code, 0, "{run}");
    let header = run.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        header.split_whitespace().take(3).collect::<Vec<_>>(),
        ["NAMESPACE", "NAME", "ACCOUNT"],
        "{run}"
    );
    let row = |namespace: &str, name: &str| {
        run.stdout
            .lines()
            .find(|line| {
                let mut cells = line.split_whitespace();
                cells.next() == Some(namespace) && cells.next() == Some(name)
            })
            .map(str::to_owned)
    };
    let p = row(&first.namespace, "p").expect("first namespace's row");
    assert!(p.contains(ACCOUNT) && p.contains("Unknown"), "{p}");
    let q = row(&second.namespace, "q").expect("second namespace's row");
    assert!(q.contains(OTHER_ACCOUNT), "{q}");
}

/// `kubectl ARGS` with the plugin's directory, `completion_dir` (holding a
/// `kubectl_complete-keyrotor`) and the tools on PATH.
async fn kubectl_with_completion(s: &Scenario, completion_dir: &Path, args: &[&str]) -> Run {
    let plugin_dir = Path::new(PLUGIN)
        .parent()
        .expect("the plugin has a directory");
    let path = std::env::join_paths([
        completion_dir.to_path_buf(),
        plugin_dir.to_path_buf(),
        s.plane.tools_dir().to_path_buf(),
        "/usr/bin".into(),
        "/bin".into(),
    ])
    .expect("PATH");
    let mut command = Command::new(s.plane.tools_dir().join("kubectl"));
    command
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", s.plane.kubeconfig_path());
    finish(command).await
}

/// The candidates of a cobra `__complete` answer (without their help) and its directive.
fn candidates(run: &Run) -> (Vec<String>, String) {
    let mut lines: Vec<&str> = run.stdout.lines().filter(|l| !l.is_empty()).collect();
    let directive = lines.pop().unwrap_or_default().to_owned();
    let values = lines
        .iter()
        .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
        .collect();
    (values, directive)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_completes_subcommands_flags_and_policy_names_through_the_plugin() {
    let s = Scenario::new("plugin-complete").await;
    s.create_policy("alpha", json!({})).await;
    s.create_policy("beta", json!({"accountId": OTHER_ACCOUNT}))
        .await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));

    // kubectl finds the shipped script on PATH; the script runs the plugin
    // binary (from PATH here, as after `install` into a directory of its own).
    let script_dir = s
        .plane
        .dir()
        .join(format!("complete-script-{}", s.namespace));
    std::fs::create_dir_all(&script_dir).expect("dir");
    std::fs::copy(
        root.join("deploy/krew/kubectl_complete-keyrotor"),
        script_dir.join("kubectl_complete-keyrotor"),
    )
    .expect("copy the completion script");
    // The binary answers when it is itself called kubectl_complete-keyrotor (a symlink).
    let link_dir = s.plane.dir().join(format!("complete-link-{}", s.namespace));
    std::fs::create_dir_all(&link_dir).expect("dir");
    let link = link_dir.join("kubectl_complete-keyrotor");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(PLUGIN, &link).expect("symlink");

    for dir in [&script_dir, &link_dir] {
        let run = kubectl_with_completion(&s, dir, &["__complete", "keyrotor", ""]).await;
        assert_eq!(run.code, 0, "{run}");
        let (values, directive) = candidates(&run);
        for subcommand in ["rotate", "status", "completion"] {
            assert!(values.iter().any(|v| v == subcommand), "{dir:?}: {run}");
        }
        assert!(!values.iter().any(|v| v.starts_with('-')), "{run}");
        assert_eq!(directive, ":4", "no file names: {run}");
        assert!(
            run.stdout
                .contains("rotate\tAsk the operator for an on-demand key rotation"),
            "the help goes with each candidate: {run}"
        );

        // Flags of the subcommand, after a `-`.
        let run =
            kubectl_with_completion(&s, dir, &["__complete", "keyrotor", "rotate", "--f"]).await;
        assert_eq!(
            candidates(&run),
            (vec!["--force".to_owned()], ":4".to_owned()),
            "{run}"
        );
        let run =
            kubectl_with_completion(&s, dir, &["__complete", "keyrotor", "status", "--as"]).await;
        let (values, _) = candidates(&run);
        assert_eq!(values, ["--as", "--as-group", "--as-uid"], "{run}");

        // Policy names, read from the namespace typed with -n.
        let run = kubectl_with_completion(
            &s,
            dir,
            &["__complete", "keyrotor", "status", "-n", &s.namespace, ""],
        )
        .await;
        assert_eq!(
            candidates(&run),
            (vec!["alpha".to_owned(), "beta".to_owned()], ":4".to_owned()),
            "{run}"
        );
        let run = kubectl_with_completion(
            &s,
            dir,
            &[
                "__complete",
                "keyrotor",
                "--namespace",
                &s.namespace,
                "rotate",
                "b",
            ],
        )
        .await;
        assert_eq!(candidates(&run).0, ["beta"], "{run}");
        // Namespaces for -n.
        let run = kubectl_with_completion(
            &s,
            dir,
            &["__complete", "keyrotor", "status", "-n", "plugin-compl"],
        )
        .await;
        assert!(
            candidates(&run).0.contains(&s.namespace),
            "{}: {run}",
            s.namespace
        );
    }

    // Someone who may not list policies gets no names, and no error on the terminal.
    let run = kubectl_with_completion(
        &s,
        &script_dir,
        &[
            "__complete",
            "keyrotor",
            "status",
            "-n",
            &s.namespace,
            "--as",
            "nobody",
            "",
        ],
    )
    .await;
    assert_eq!(candidates(&run), (vec![], ":4".to_owned()), "{run}");

    // `completion SHELL` for the binary itself.
    for (shell, markers) in [
        ("bash", ["complete -F _kubectl__keyrotor", "--force"]),
        ("zsh", ["#compdef kubectl-keyrotor", "--force"]),
        ("fish", ["complete -c kubectl-keyrotor", "-l force"]),
    ] {
        let run = plugin(&s, &["completion", shell]).await;
        assert_eq!(run.code, 0, "{shell}: {run}");
        for marker in markers {
            assert!(run.stdout.contains(marker), "{shell} lacks {marker}: {run}");
        }
    }
}

/// Grants `subject` (a user or group RoleBinding subject) the plugin's rights
/// on policies in the scenario's namespace.
async fn grant_policy_rights(s: &Scenario, binding: &str, subject: serde_json::Value) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let params = kube::api::PostParams::default();
    let roles: kube::Api<Role> = kube::Api::namespaced(s.client.clone(), &s.namespace);
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": binding},
        "rules": [{
            "apiGroups": ["keyrotor.dev"],
            "resources": ["accesskeypolicies"],
            "verbs": ["get", "list", "watch", "patch"],
        }],
    }))
    .expect("role");
    roles.create(&params, &role).await.expect("create role");
    let bindings: kube::Api<RoleBinding> = kube::Api::namespaced(s.client.clone(), &s.namespace);
    let role_binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": binding},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": binding},
        "subjects": [subject],
    }))
    .expect("role binding");
    bindings
        .create(&params, &role_binding)
        .await
        .expect("create role binding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_and_as_group_act_as_that_user_and_a_user_without_rights_is_refused() {
    let s = Scenario::new("plugin-as").await;
    s.create_policy("p", json!({})).await;
    let ns = s.namespace.clone();
    grant_policy_rights(
        &s,
        "rotator",
        json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "jane"}),
    )
    .await;
    grant_policy_rights(
        &s,
        "rotators",
        json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "keyrotor-rotators"}),
    )
    .await;

    // A user without rights on policies: refused, and the error says who and what.
    for args in [
        vec!["status", "p", "-n", &ns, "--as", "mallory"],
        vec!["status", "-n", &ns, "--as", "mallory"],
        vec!["rotate", "p", "-n", &ns, "--as", "mallory"],
    ] {
        let run = plugin(&s, &args).await;
        assert_eq!(run.code, 1, "{args:?}: {run}");
        assert!(run.stderr.contains("forbidden"), "{args:?}: {run}");
        assert!(run.stderr.contains("\"mallory\""), "{args:?}: {run}");
        assert!(run.stderr.contains("HTTP 403"), "{args:?}: {run}");
    }
    assert_eq!(annotation(&s.policy("p").await, ROTATE), None);

    // A user with rights: works, as that user (the admin client would always work).
    let run = plugin(&s, &["status", "-n", &ns, "--as", "jane"]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains(ACCOUNT), "{run}");
    let run = plugin(&s, &["--as", "jane", "rotate", "p", "-n", &ns]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(annotation(&s.policy("p").await, ROTATE).is_some());

    // The rights come from a group: without it refused, with --as-group allowed.
    let run = plugin(&s, &["status", "p", "-n", &ns, "--as", "bob"]).await;
    assert_eq!(run.code, 1, "{run}");
    let run = plugin(
        &s,
        &[
            "status",
            "p",
            "-n",
            &ns,
            "--as",
            "bob",
            "--as-group",
            "keyrotor-rotators",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("Name: p"), "{run}");

    // Through kubectl too (kubectl hands the flags to the plugin).
    let run = kubectl_keyrotor(&s, &["status", "-n", &ns, "--as", "mallory"]).await;
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("forbidden"), "{run}");

    // A real user who may not impersonate cannot use --as to gain rights.
    let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(s.client.clone(), &ns);
    let account: k8s_openapi::api::core::v1::ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "plain"}})).expect("sa");
    accounts
        .create(&Default::default(), &account)
        .await
        .expect("create service account");
    let (kubeconfig, _) = support::service_account_kubeconfig(s.plane, &ns, "plain").await;
    let run = plugin_with(
        Path::new(&kubeconfig),
        &["status", "p", "-n", &ns, "--as", "jane"],
    )
    .await;
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("cannot impersonate"), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_name_shows_conditions_the_rotate_request_the_account_and_events() {
    let mut s = ready_scenario("plugin-detail").await;
    let ten_days_ago = Timestamp::now()
        .checked_sub(SignedDuration::from_hours(240))
        .expect("time");
    s.sim()
        .upsert_account(AccountSeed::new(ACCOUNT).last_rotated_at(ten_days_ago));
    s.create_policy("p", json!({})).await;
    s.wait_for("p", "Ready", is_ready).await;
    let run = plugin(&s, &["rotate", "p", "-n", &s.namespace, "--wait"]).await;
    assert_eq!(run.code, 0, "{run}\n{}", s.operator_log());
    let request = annotation(&s.policy("p").await, ROTATE).expect("request");

    let run = plugin(&s, &["status", "p", "-n", &s.namespace]).await;
    assert_eq!(run.code, 0, "{run}");
    let view = &run.stdout;
    let p = s.policy("p").await;
    let status = p.status.clone().expect("status");
    for wanted in [
        "Name: p\n".to_owned(),
        format!("Namespace: {}\n", s.namespace),
        format!("Spec:\n  Account: {ACCOUNT}\n  Key rotation interval: 30d\n"),
        "  Management policy: Manage\n".to_owned(),
        "  Credentials: Secret cloudflare-api\n".to_owned(),
        "  Rotation cooldown: 168h\n".to_owned(),
        format!(
            "Rotate request:\n  Requested: {request}\n  State: handled: Rotated: key rotated at "
        ),
        format!("  Last handled: {request}\n  Last outcome: Rotated\n"),
        "Account:\n  Key rotation interval: 30d (as the spec)\n".to_owned(),
        "Events:\n  Type ".to_owned(),
    ] {
        assert!(view.contains(&wanted), "{wanted:?} missing:\n{run}");
    }
    // Every condition of the status, whatever its name.
    assert!(!status.conditions.is_empty());
    for condition in &status.conditions {
        let line = format!(
            "  {}: {}, Reason: {}",
            condition.type_, condition.status, condition.reason
        );
        assert!(view.contains(&line), "{line:?} missing:\n{run}");
    }
    // The events the operator recorded for it, newest last.
    let events = s.events("p").await;
    assert!(!events.is_empty());
    let event_lines: Vec<&str> = view
        .split("Events:\n")
        .nth(1)
        .expect("events section")
        .lines()
        .skip(1)
        .collect();
    assert_eq!(event_lines.len(), events.len(), "{run}");
    for (reason, note) in &events {
        assert!(
            event_lines
                .iter()
                .any(|l| l.contains(reason.as_str()) && l.contains(note.as_str())),
            "{reason} {note}: {run}"
        );
    }
    assert!(
        event_lines.last().is_some_and(|l| l.contains("Rotated")),
        "{run}"
    );

    // No window: the plan is the account's own schedule.
    let next = status.next_key_rotation_at.expect("next rotation");
    assert!(
        view.contains(&format!(
            "Rotation plan:\n  Planned rotation: {next:.0} (in "
        )) && view
            .contains(", by Cloudflare, on the account's own schedule (no rotation window set)\n"),
        "{run}"
    );

    // A daily window: the key is planned to rotate in the last window before
    // the account's own rotation, and the view says when and why.
    s.patch_spec(
        "p",
        json!({"rotationWindow": {"schedule": "0 3 * * *", "duration": "2h"}}),
    )
    .await;
    let p = s
        .wait_for("p", "a window rotation planned", |p| {
            p.status
                .as_ref()
                .and_then(|s| s.planned_rotation.as_ref())
                .is_some_and(|r| r.reason == PlannedRotationReason::Window)
        })
        .await;
    let status = p.status.clone().expect("status");
    let planned = status.planned_rotation.expect("planned");
    let window_start = planned.window_start.expect("window start");
    let next_window = status.next_window_start.expect("next window start");
    let run = plugin(&s, &["status", "p", "-n", &s.namespace]).await;
    assert_eq!(run.code, 0, "{run}");
    let view = &run.stdout;
    for wanted in [
        "  Rotation window: 0 3 * * * for 2h (UTC)\n".to_owned(),
        format!("Rotation plan:\n  Next window start: {next_window:.0} ("),
        format!("  Planned rotation: {:.0} (in ", planned.at),
        format!(", by the operator, in the maintenance window starting {window_start:.0} (in "),
        "  Window: True, Reason: Planned, Message: the key rotates at ".to_owned(),
    ] {
        assert!(view.contains(&wanted), "{wanted:?} missing:\n{run}");
    }
    let run = plugin(&s, &["status", "-n", &s.namespace]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout.contains(&format!("{:.0} (in ", planned.at)) && run.stdout.contains(") window "),
        "{run}"
    );

    // With the operator gone, a new request shows as pending.
    s.operator.as_mut().expect("operator").kill();
    let run = plugin(&s, &["rotate", "p", "-n", &s.namespace, "--force"]).await;
    assert_eq!(run.code, 0, "{run}");
    let pending = annotation(&s.policy("p").await, ROTATE).expect("request");
    let run = plugin(&s, &["status", "p", "-n", &s.namespace]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout.contains(&format!(
            "  Requested: {pending} (forced)\n  State: pending: the operator has not handled it yet\n  Last handled: {request}\n"
        )),
        "{run}"
    );
}

/// Debian's bash-completion, which kubectl's bash completion script needs
/// (hack/test.sh installs it).
const BASH_COMPLETION: &str = "/usr/share/bash-completion/bash_completion";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bash_completes_kubectl_keyrotor_words_with_kubectls_own_completion_script() {
    assert!(
        Path::new(BASH_COMPLETION).is_file(),
        "{BASH_COMPLETION} is missing: apt-get install bash-completion (hack/test.sh does)"
    );
    let s = Scenario::new("plugin-bash").await;
    s.create_policy("production", json!({})).await;
    // As a user sets it up: the plugin on PATH and kubectl_complete-keyrotor a
    // symlink to it (what the krew caveat says to do).
    let dir = s.plane.dir().join(format!("bash-path-{}", s.namespace));
    std::fs::create_dir_all(&dir).expect("dir");
    for name in ["kubectl-keyrotor", "kubectl_complete-keyrotor"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    std::os::unix::fs::symlink(PLUGIN, dir.join("kubectl-keyrotor")).expect("symlink");
    std::os::unix::fs::symlink("kubectl-keyrotor", dir.join("kubectl_complete-keyrotor"))
        .expect("symlink");
    let path = std::env::join_paths([
        dir.clone(),
        s.plane.tools_dir().to_path_buf(),
        "/usr/bin".into(),
        "/bin".into(),
    ])
    .expect("PATH");
    // Each line: the words on the command line; bash completes the last one
    // the way <TAB> would, and the script prints COMPREPLY.
    let script = format!(
        r#"
source {BASH_COMPLETION}
source <(kubectl completion bash)
try() {{
  COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}
  COMPREPLY=()
  __start_kubectl kubectl "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD - 1]}}" 2>/dev/null
  echo "$*=>${{COMPREPLY[*]}}"
}}
try kubectl keyrotor sta
try kubectl keyrotor rotate --fo
try kubectl keyrotor status -n {ns} prod
try kubectl keyrotor rotate -n {ns} --force ""
"#,
        ns = s.namespace
    );
    let mut command = Command::new("bash");
    command
        .arg("--norc")
        .arg("-c")
        .arg(script)
        .env("PATH", path)
        .env("KUBECONFIG", s.plane.kubeconfig_path());
    let run = finish(command).await;
    assert_eq!(run.code, 0, "{run}");
    let ns = &s.namespace;
    let expected = format!(
        "kubectl keyrotor sta=>status\n\
         kubectl keyrotor rotate --fo=>--force\n\
         kubectl keyrotor status -n {ns} prod=>production\n\
         kubectl keyrotor rotate -n {ns} --force =>production\n"
    );
    assert_eq!(run.stdout, expected, "{run}");
}
