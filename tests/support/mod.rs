//! Shared harness for integration tests: the real control plane (one per test
//! binary), a Cloudflare simulator per test, and the operator binary as its own
//! process, scoped to the test's namespace.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Secret;
use keyrotor::crd::AccessKeyPolicy;
use keyrotor_cloudflare_sim::{
    AccountSeed, CredentialSeed, RateLimitConfig, RequestRecord, RunningSimulator, SimConfig,
    Simulator,
};
use keyrotor_testenv::ControlPlane;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    core::{ApiResource, DynamicObject},
    runtime::wait::await_condition,
};
use serde_json::{Value, json};

/// The account every scenario starts with (42-day interval).
pub const ACCOUNT: &str = "023e105f4ecef8ad9ca31a8372d0c353";
/// A second account.
pub const OTHER_ACCOUNT: &str = "fedcba9876543210fedcba9876543210";
/// The API token the simulator accepts.
pub const TOKEN: &str = "tok-SCENARIO-SECRET-7f3a";
/// A global key and its email the simulator accepts.
pub const API_KEY: &str = "globalkey-SCENARIO-SECRET-91c2";
/// The email of that key.
pub const EMAIL: &str = "keyholder-secret@example.com";
/// How long a test waits for the operator.
pub const WAIT: Duration = Duration::from_secs(30);
/// The annotation that asks for a rotation (written as a user would).
pub const ROTATE: &str = "keyrotor.dev/rotate-requested-at";
/// The annotation that skips the cooldown for the request whose value it
/// equals (set it to the same value as [`ROTATE`]).
pub const FORCE: &str = "keyrotor.dev/rotate-force";

/// One test's world: a namespace, a simulator and (once started) an operator.
pub struct Scenario {
    pub plane: &'static ControlPlane,
    pub namespace: String,
    pub client: kube::Client,
    pub sim: RunningSimulator,
    pub operator: Option<Operator>,
}

impl Scenario {
    /// A fresh namespace and simulator; the operator is not started yet.
    pub async fn new(prefix: &str) -> Self {
        let plane = keyrotor_testenv::shared().await;
        let namespace = plane.create_namespace(prefix).await.expect("namespace");
        let client = plane.admin_client().await.expect("admin client");
        let config = SimConfig {
            accounts: vec![
                AccountSeed::new(ACCOUNT).with_interval(42),
                AccountSeed::new(OTHER_ACCOUNT).with_interval(42),
            ],
            credentials: vec![
                CredentialSeed::token("scenario", TOKEN),
                CredentialSeed::global_key("legacy", API_KEY, EMAIL),
            ],
            rate_limit: RateLimitConfig::default(),
            timestamps: Default::default(),
        };
        let sim = Simulator::new(config)
            .serve("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("simulator starts");
        Self {
            plane,
            namespace,
            client,
            sim,
            operator: None,
        }
    }

    /// Another fresh namespace on the same control plane (another tenant's, an operator's).
    pub async fn other_namespace(&self, prefix: &str) -> String {
        self.plane
            .create_namespace(prefix)
            .await
            .expect("namespace")
    }

    /// The credential names the simulator saw, in order.
    pub fn credentials_used(&self) -> Vec<String> {
        self.sim()
            .requests()
            .into_iter()
            .map(|r| r.credential)
            .collect()
    }

    /// The simulator's state handle.
    pub fn sim(&self) -> &Simulator {
        self.sim.simulator()
    }

    /// The flags every test operator gets: this namespace (watched, and holding
    /// the account claims), the simulator, a 1 s drift floor, no rotation
    /// cooldown minimum (tests rotate within seconds), fast retries and a
    /// metrics port of its own.
    pub fn base_operator_args(&self) -> Vec<String> {
        [
            "run",
            "--cloudflare-api-url",
            &self.sim.base_url(),
            "--watch-namespaces",
            &self.namespace,
            // Account claims of its own: every scenario uses the same account ids.
            "--claims-namespace",
            &self.namespace,
            "--drift-check-floor",
            "1s",
            "--min-rotation-cooldown",
            "0s",
            "--retry-base-delay",
            "20ms",
            "--log-level",
            "keyrotor=debug,info",
            "--metrics-address",
            "127.0.0.1:0",
            // Plain, open /metrics on loopback for the scrapes of the tests;
            // tests/tenant_metrics.rs covers the secure default.
            "--metrics-auth",
            "none",
            "--metrics-tls",
            "false",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect()
    }

    /// Starts the operator watching this namespace, with extra flags and environment.
    pub fn start_operator_with(&mut self, extra_args: &[&str], env: &[(&str, &str)]) {
        let generation = self.operator.as_ref().map_or(0, |o| o.generation + 1);
        self.operator = Some(self.spawn_operator(&format!("{generation}"), extra_args, env));
    }

    /// Starts another operator process (not kept in `self.operator`).
    pub fn spawn_operator(
        &self,
        label: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        // A flag given in `extra_args` replaces the base one (clap refuses repeats).
        let base = self.base_operator_args();
        let mut args = vec![base[0].clone()];
        for pair in base[1..].chunks(2) {
            if !extra_args.contains(&pair[0].as_str()) {
                args.extend_from_slice(pair);
            }
        }
        args.extend(extra_args.iter().map(|a| (*a).to_owned()));
        Operator::start(self.plane, &self.namespace, label, &args, env)
    }

    /// Starts the operator with the default flags.
    pub fn start_operator(&mut self) {
        self.start_operator_with(&[], &[]);
    }

    /// The usual start: the token Secret, the operator, and policy "p" with
    /// `spec` merged into the defaults, waited for until Ready.
    pub async fn start_with_ready_policy(&mut self, spec: Value) {
        self.apply_token_secret().await;
        self.start_operator();
        self.create_policy("p", spec).await;
        self.wait_for("p", "Ready", is_ready).await;
    }

    /// Creates or replaces a Secret with string data.
    pub async fn apply_secret(&self, name: &str, data: &[(&str, &str)]) {
        let string_data: BTreeMap<&str, &str> = data.iter().copied().collect();
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": self.namespace},
            "stringData": string_data,
        });
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let _ = api.delete(name, &DeleteParams::default()).await;
        let secret: Secret = serde_json::from_value(secret).expect("secret");
        api.create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
    }

    /// The usual token Secret named `cloudflare-api`.
    pub async fn apply_token_secret(&self) {
        self.apply_secret("cloudflare-api", &[("apiToken", TOKEN)])
            .await;
    }

    /// Creates a policy from a spec (merged over sensible test defaults).
    pub async fn create_policy(&self, name: &str, spec: Value) -> AccessKeyPolicy {
        let mut full = json!({
            "accountId": ACCOUNT,
            "keyRotationIntervalDays": 30,
            "credentialsRef": {"name": "cloudflare-api"},
            "driftCheckInterval": "1s",
        });
        merge(&mut full, spec);
        let policy = json!({
            "apiVersion": "keyrotor.dev/v1alpha1", "kind": "AccessKeyPolicy",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": full,
        });
        let policy: AccessKeyPolicy = serde_json::from_value(policy).expect("policy");
        self.policies()
            .create(&PostParams::default(), &policy)
            .await
            .expect("create policy")
    }

    /// Merge-patches a policy's spec.
    pub async fn patch_spec(&self, name: &str, spec: Value) {
        self.policies()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .expect("patch spec");
    }

    /// Sets annotations (a `null` value removes one).
    pub async fn annotate(&self, name: &str, annotations: Value) {
        self.policies()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
            )
            .await
            .expect("annotate");
    }

    /// The policy API of this namespace.
    pub fn policies(&self) -> Api<AccessKeyPolicy> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Reads a policy.
    pub async fn policy(&self, name: &str) -> AccessKeyPolicy {
        self.policies().get(name).await.expect("get policy")
    }

    /// Waits (by watching) until `check` holds for the policy; on timeout
    /// fails with the object and the operator's log.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&AccessKeyPolicy) -> bool,
    ) -> AccessKeyPolicy {
        let holds = |p: Option<&AccessKeyPolicy>| p.is_some_and(&check);
        match tokio::time::timeout(WAIT, await_condition(self.policies(), name, holds)).await {
            Ok(Ok(Some(policy))) => policy,
            outcome => {
                let current = self.policies().get_opt(name).await.ok().flatten();
                panic!(
                    "waiting for {what} on {}/{name}: {outcome:?}\nobject: {}\noperator log:\n{}",
                    self.namespace,
                    serde_json::to_string_pretty(&current).unwrap_or_default(),
                    self.operator_log()
                );
            }
        }
    }

    /// Waits for the Ready condition with this reason.
    pub async fn wait_ready_reason(&self, name: &str, reason: &str) -> AccessKeyPolicy {
        self.wait_for(name, &format!("Ready reason {reason}"), |p| {
            condition(p, "Ready").is_some_and(|c| c.reason == reason)
        })
        .await
    }

    /// Waits (by watching) until the policy is gone.
    pub async fn wait_gone(&self, name: &str) {
        let gone = |p: Option<&AccessKeyPolicy>| p.is_none();
        let outcome =
            tokio::time::timeout(WAIT, await_condition(self.policies(), name, gone)).await;
        assert!(
            matches!(outcome, Ok(Ok(_))),
            "{name} was not deleted: {outcome:?}\n{}",
            self.operator_log()
        );
    }

    /// Simulator requests for the account, by method (`GET`, `PUT`, `POST`).
    pub fn calls(&self, method: &str) -> Vec<RequestRecord> {
        self.sim()
            .requests()
            .into_iter()
            .filter(|r| r.method == method)
            .collect()
    }

    /// The operator's log so far.
    pub fn operator_log(&self) -> String {
        self.operator
            .as_ref()
            .map_or_else(String::new, Operator::log)
    }

    /// Waits (10 s at most) until an event with `reason` is recorded for the
    /// policy; returns all its events. Events are published after the status
    /// write, so a test that saw the status may not see the event yet.
    pub async fn wait_for_event(&self, name: &str, reason: &str) -> Vec<(String, String)> {
        for _ in 0..100 {
            let events = self.events(name).await;
            if events.iter().any(|(r, _)| r == reason) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no {reason} event; events: {:?}", self.events(name).await);
    }

    /// Events recorded for a policy, as (reason, note).
    pub async fn events(&self, name: &str) -> Vec<(String, String)> {
        self.event_counts(name)
            .await
            .into_iter()
            .map(|(reason, note, _)| (reason, note))
            .collect()
    }

    /// Events recorded for a policy, as (reason, first note, times seen): the
    /// recorder folds repeats of one reason into a series on the first event.
    pub async fn event_counts(&self, name: &str) -> Vec<(String, String, i32)> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let mut events: Vec<_> = api
            .list(&Default::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        events.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        events
            .into_iter()
            .map(|e| {
                let count = e.series.as_ref().map_or(1, |s| s.count);
                (
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                    count,
                )
            })
            .collect()
    }

    /// Fails if the operator wrote a secret to its log.
    pub fn assert_log_has_no_secret(&self) {
        let log = self.operator_log();
        for secret in [TOKEN, API_KEY, EMAIL] {
            assert!(!log.contains(secret), "the operator log contains a secret");
        }
    }
}

/// Runs the plane's kubectl with `args`, feeding `input` on stdin.
pub fn kubectl_with_input(
    plane: &ControlPlane,
    args: &[&str],
    input: &str,
) -> std::process::Output {
    use std::io::Write;
    let mut child = plane
        .kubectl()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("kubectl finishes")
}

/// A condition of a policy by type.
pub fn condition<'a>(
    policy: &'a AccessKeyPolicy,
    kind: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    policy
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
}

/// Whether Ready is True for the current generation.
pub fn is_ready(policy: &AccessKeyPolicy) -> bool {
    condition(policy, "Ready")
        .is_some_and(|c| c.status == "True" && c.observed_generation == policy.metadata.generation)
}

/// The Ready condition's message ("" before there is one).
pub fn ready_message(policy: &AccessKeyPolicy) -> String {
    condition(policy, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The last rotate request the operator handled (`status.lastHandledRotateRequest`).
pub fn last_handled_request(policy: &AccessKeyPolicy) -> Option<&str> {
    policy
        .status
        .as_ref()?
        .last_handled_rotate_request
        .as_deref()
}

/// Whether the operator has handled the rotate request `value` (it is the last one handled).
pub fn has_handled(policy: &AccessKeyPolicy, value: &str) -> bool {
    last_handled_request(policy) == Some(value)
}

/// A spec the API server accepts: the scenario account, 30 days, Secret `cloudflare-api`.
pub fn valid_spec() -> Value {
    json!({
        "accountId": ACCOUNT,
        "keyRotationIntervalDays": 30,
        "credentialsRef": {"name": "cloudflare-api"},
    })
}

/// [`valid_spec`] with one field set to `value`.
pub fn spec_with(field: &str, value: Value) -> Value {
    let mut spec = valid_spec();
    spec[field] = value;
    spec
}

/// A raw AccessKeyPolicy object, for what the typed API cannot express.
pub fn policy_object(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "keyrotor.dev/v1alpha1",
        "kind": "AccessKeyPolicy",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// The AccessKeyPolicy API of a namespace, untyped: objects the Rust types
/// could not hold still reach the API server.
pub fn dynamic_api(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<AccessKeyPolicy>(&());
    Api::namespaced_with(client, namespace, &resource)
}

/// The API server's message of a refusal.
pub fn api_message(err: kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    }
}

fn merge(base: &mut Value, over: Value) {
    if let (Value::Object(base), Value::Object(over)) = (base, over) {
        for (k, v) in over {
            base.insert(k, v);
        }
    }
}

/// The operator binary as a child process; killed (SIGKILL) when dropped.
pub struct Operator {
    child: Child,
    log_path: PathBuf,
    generation: u32,
}

impl Operator {
    fn start(
        plane: &ControlPlane,
        namespace: &str,
        label: &str,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Self {
        let log_path = plane
            .dir()
            .join(format!("operator-{namespace}-{label}.log"));
        let log = std::fs::File::create(&log_path).expect("operator log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyrotor"));
        command
            .args(args)
            .env("KUBECONFIG", plane.kubeconfig_path())
            .env_remove("KEYROTOR_TEST_PAUSE_AT")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("operator starts");
        Self {
            child,
            log_path,
            generation: label.parse().unwrap_or(0),
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit, at most `timeout`; its exit code, or `None` on timeout.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `http(s)://127.0.0.1:PORT` of its /metrics, /healthz and /readyz, from its log.
    pub async fn probe_url(&self) -> String {
        let marker = "serving /metrics, /healthz and /readyz address=";
        self.wait_for_log(marker).await;
        let log = self.log();
        let fields: Vec<String> = log
            .lines()
            .find_map(|line| line.split(marker).nth(1))
            .expect("address in the log")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let scheme = fields
            .iter()
            .find_map(|f| f.strip_prefix("scheme="))
            .unwrap_or("http");
        format!("{scheme}://{}", fields[0])
    }

    /// Its /metrics scrape.
    pub async fn scrape(&self) -> String {
        let url = format!("{}/metrics", self.probe_url().await);
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client")
            .get(url)
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("scrape body")
    }

    /// Everything the process has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the log contains `text`.
    pub async fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "operator never logged {text:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- The metrics endpoint's access control (tests/tenant_metrics.rs) ----

/// GET `url` with an optional bearer token, trusting any certificate (the
/// operator's is self-signed); the status and body, or the transport error.
pub async fn get_with_token(url: &str, token: Option<&str>) -> Result<(u16, String), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .tls_danger_accept_invalid_certs(true)
        .no_proxy()
        .build()
        .expect("client");
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.unwrap_or_default()))
}

/// The test API server's version (`v1.36.3`), from its binary: the chart is
/// rendered for the cluster it is applied to (hack/test.sh also runs the
/// chart and controller suites on the oldest supported minor).
pub fn kube_version(plane: &ControlPlane) -> String {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION
        .get_or_init(|| {
            let output = Command::new(plane.tools_dir().join("kube-apiserver"))
                .arg("--version")
                .output()
                .expect("kube-apiserver --version");
            let text = String::from_utf8_lossy(&output.stdout);
            text.split_whitespace()
                .find(|word| word.starts_with("v1."))
                .unwrap_or_else(|| panic!("no version in {text:?}"))
                .to_owned()
        })
        .clone()
}

/// `helm template` of the chart (no CRDs) for a release in `release_ns`, with `extra` flags.
pub fn render_chart(plane: &ControlPlane, release_ns: &str, extra: &[&str]) -> String {
    let output = Command::new(plane.tools_dir().join("helm"))
        .args(["template", "kr"])
        .arg(keyrotor_testenv::workspace_root().join("charts/keyrotor"))
        .args([
            "--namespace",
            release_ns,
            "--kube-version",
            &kube_version(plane),
        ])
        .args(["--set", "crds.enabled=false"])
        .args(extra)
        .output()
        .expect("helm runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Applies (server-side) the documents of `manifest` of the given kinds; returns them.
pub fn apply_kinds(plane: &ControlPlane, manifest: &str, kinds: &[&str]) -> String {
    let docs = manifest
        .split("\n---")
        .filter(|doc| {
            kinds
                .iter()
                .any(|k| doc.contains(&format!("\nkind: {k}\n")))
        })
        .collect::<Vec<_>>()
        .join("\n---");
    let applied = kubectl_with_input(plane, &["apply", "--server-side", "-f", "-"], &docs);
    assert!(
        applied.status.success(),
        "{}\n{docs}",
        String::from_utf8_lossy(&applied.stderr)
    );
    docs
}

/// Renders the chart with `extra` flags and applies only its ServiceAccount and
/// RBAC objects (server-side); returns what was applied.
pub fn apply_chart_rbac_objects(plane: &ControlPlane, release_ns: &str, extra: &[&str]) -> String {
    let manifest = render_chart(plane, release_ns, extra);
    apply_kinds(
        plane,
        &manifest,
        &[
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
        ],
    )
}

/// A kubeconfig holding only the token of ServiceAccount `namespace/name`,
/// and a client built from it.
pub async fn service_account_kubeconfig(
    plane: &ControlPlane,
    namespace: &str,
    name: &str,
) -> (String, kube::Client) {
    let token = plane
        .service_account_token(namespace, name, Duration::from_secs(3600))
        .await
        .expect("token");
    let path = plane.dir().join(format!("{namespace}-{name}-kubeconfig"));
    plane
        .kubeconfig_for_token(&token, &path)
        .expect("kubeconfig");
    let client = keyrotor_testenv::client_from_kubeconfig(&path)
        .await
        .expect("client");
    (path.to_string_lossy().into_owned(), client)
}

/// The operator flags of a chart install in `release_ns` (its Leases live
/// there, where the chart's Role allows them), as replica `identity`.
pub fn chart_operator_args<'a>(release_ns: &'a str, identity: &'a str) -> [&'a str; 8] {
    [
        "--leader-election",
        "true",
        "--leader-election-namespace",
        release_ns,
        "--claims-namespace",
        release_ns,
        "--identity",
        identity,
    ]
}

/// Why a log line is not one strict JSON object.
#[derive(Debug)]
pub struct StrictJsonError(pub String);

/// Parses `text` as JSON and rejects any object that names a key twice.
/// serde_json keeps the last of duplicate keys without a word (as jq and Loki
/// do) while Elasticsearch rejects the document, so the check is a visitor of
/// our own: no maintained crate offers a strict whole-document mode.
pub fn parse_strict_json(text: &str) -> Result<Value, StrictJsonError> {
    use serde::de::{self, Deserializer as _, MapAccess, SeqAccess, Visitor};

    struct Strict;
    impl<'de> Visitor<'de> for Strict {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(StrictSeed)? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut object = serde_json::Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let value = map.next_value_seed(StrictSeed)?;
                if object.insert(key.clone(), value).is_some() {
                    return Err(de::Error::custom(format!("duplicate key {key:?}")));
                }
            }
            Ok(Value::Object(object))
        }
    }
    struct StrictSeed;
    impl<'de> de::DeserializeSeed<'de> for StrictSeed {
        type Value = Value;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(Strict)
        }
    }

    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = deserializer
        .deserialize_any(Strict)
        .map_err(|e| StrictJsonError(e.to_string()))?;
    deserializer
        .end()
        .map_err(|e| StrictJsonError(e.to_string()))?;
    Ok(value)
}
