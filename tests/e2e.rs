//! End-to-end on a real node, the way users run keyrotor: `helm install` of
//! the real chart with the operator's image (`hack/image.sh`) on a
//! single-node cluster with a kubelet, containerd and runc, a pod network and
//! kube-proxy (`hack/node.sh`, docs/e2e.md). The Cloudflare simulator runs
//! inside the node's network namespace; the operator reaches it and the API
//! server (through the `kubernetes` Service) from its pod.
//!
//! One test runs the scenarios in order on one node and prints each phase's
//! time. Needs root; skipped (loudly) otherwise, or when `hack/image.sh` is
//! missing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keyrotor_testenv::node::{self, Node};
use keyrotor_testenv::workspace_root;
use serde_json::Value;

const ACCOUNT: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const TOKEN: &str = "tok-E2E-SECRET-5d1e";
const NAMESPACE: &str = "keyrotor-system";
const POLICIES: &str = "security";
const SIM_PORT: u16 = 8081;
const IMAGE: &str = "kr.local/keyrotor";
const WAIT: Duration = Duration::from_secs(60);

/// Everything one run needs.
struct World {
    node: Node,
    sim_port: u16,
    work: PathBuf,
    timings: Vec<(String, Duration)>,
}

fn skipped() -> bool {
    let why = match node::node_supported() {
        Err(why) => why,
        Ok(()) if !workspace_root().join("hack/image.sh").is_file() => {
            "hack/image.sh (the image builder) is not in this checkout".to_owned()
        }
        Ok(()) => return false,
    };
    eprintln!("\n!!!!!!!! SKIPPED: the real-node end-to-end tests did not run: {why} !!!!!!!!\n");
    true
}

fn run(command: &mut Command, what: &str) -> String {
    node::run(command, what).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `command` with `input` on its standard input.
fn run_with_stdin(command: &mut Command, input: &str, what: &str) -> String {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("stdin written");
    let output = child.wait_with_output().expect("output");
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Polls `check` every 250 ms until it returns `Some`, or panics after `limit`.
fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A binary cargo built next to this test (other packages' binaries are built
/// by `cargo test --workspace`; built here if missing).
fn sibling_binary(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned();
    let path = dir.join(name);
    if !path.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        run(
            Command::new(cargo)
                .current_dir(workspace_root())
                .args(["build", "--locked", "-p", package, "--bin", name]),
            "cargo build of a sibling binary",
        );
    }
    path
}

impl World {
    fn start() -> Self {
        let t = Instant::now();
        let node = Node::start().expect("the node starts");
        let mut world = Self {
            sim_port: 0,
            work: node.dir().join("e2e"),
            node,
            timings: Vec::new(),
        };
        world.mark("node Ready", t);
        std::fs::create_dir_all(&world.work).expect("work dir");

        let t = Instant::now();
        for tag in ["e2e-1", "e2e-2"] {
            let archive = world.work.join(format!("{tag}.tar"));
            run(
                Command::new(workspace_root().join("hack/image.sh"))
                    .arg("--binary")
                    .arg(env!("CARGO_BIN_EXE_keyrotor"))
                    .args(["--tag", &format!("{IMAGE}:{tag}"), "--version", tag])
                    .arg("--output")
                    .arg(&archive)
                    .stderr(Stdio::null()),
                "hack/image.sh",
            );
            world
                .node
                .import_image(&archive)
                .expect("image imported into containerd");
        }
        world.mark("images built and imported", t);

        let sim = sibling_binary("cloudflare-sim", "keyrotor-cloudflare-sim");
        world
            .node
            .spawn(
                "cloudflare-sim",
                &sim,
                &[
                    "--listen".into(),
                    format!("0.0.0.0:{SIM_PORT}").into(),
                    "--account".into(),
                    std::iter::once(format!("{ACCOUNT}=42"))
                        .chain((0..SCALE).map(scale_account))
                        .collect::<Vec<_>>()
                        .join(",")
                        .into(),
                    "--rate-limit".into(),
                    "1000000".into(),
                    "--token".into(),
                    format!("e2e={TOKEN}").into(),
                ],
            )
            .expect("simulator starts");
        world.sim_port = world.node.forward(SIM_PORT).expect("simulator forwarded");
        eventually("the simulator answers", WAIT, || {
            world.try_sim_get("/__sim/requests")
        });
        world
    }

    /// Prints a phase's time, and appends it to `target/tmp/e2e-timings.txt`,
    /// which the test command prints (cargo test captures the test's output).
    fn mark(&mut self, phase: &str, since: Instant) {
        use std::io::Write;
        let took = since.elapsed();
        let line = format!("[e2e] {phase}: {:.1} s", took.as_secs_f64());
        println!("{line}");
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-timings.txt");
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
        self.timings.push((phase.to_owned(), took));
    }

    fn kubectl(&self) -> Command {
        self.node.kubectl()
    }

    fn kubectl_json(&self, args: &[&str]) -> Value {
        let out = run(
            self.kubectl().args(args).args(["-o", "json"]),
            "kubectl get",
        );
        serde_json::from_str(&out).expect("kubectl JSON")
    }

    fn helm(&self, args: &[&str], values: &[String]) -> String {
        let mut command = self.node.helm();
        command.args(args);
        for value in values {
            command.args(["--set", value]);
        }
        run(&mut command, "helm")
    }

    /// The chart's values for this node and image tag.
    fn values(&self, tag: &str) -> Vec<String> {
        vec![
            format!("image.repository={IMAGE}"),
            format!("image.tag={tag}"),
            "image.pullPolicy=Never".to_owned(),
            format!(
                "cloudflare.apiUrl=http://{}:{SIM_PORT}/client/v4",
                self.node.node_ip()
            ),
            // The simulator speaks plain HTTP at the node's (non-loopback) address.
            "cloudflare.allowInsecureApiUrl=true".to_owned(),
            "driftCheckFloor=5s".to_owned(),
            // The scenarios rotate again within seconds (`rotationCooldown: 0s`).
            "minRotationCooldown=0s".to_owned(),
            // The scale scenario's 1,000 policies share one token.
            "budget.requests=100000".to_owned(),
            "budget.burst=100".to_owned(),
            "logging.format=text".to_owned(),
        ]
    }

    fn try_sim_get(&self, path: &str) -> Option<Value> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.sim_port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok()?;
        let response = String::from_utf8_lossy(&response);
        let (head, body) = response.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.1 200") {
            return None;
        }
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        serde_json::from_str(&body).ok()
    }

    /// POSTs (rotations) the simulator answered 200 for the account.
    fn rotations(&self) -> usize {
        let log = self
            .try_sim_get("/__sim/requests")
            .expect("the simulator's request log");
        log.as_array()
            .expect("request list")
            .iter()
            .filter(|r| {
                r["method"] == "POST"
                    && r["status"] == 200
                    && r["path"].as_str().is_some_and(|p| p.ends_with("/rotate"))
            })
            .count()
    }

    fn operator_pods(&self) -> Vec<Value> {
        let list = self.kubectl_json(&[
            "-n",
            NAMESPACE,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=keyrotor",
        ]);
        list["items"].as_array().cloned().unwrap_or_default()
    }

    fn ready_operator_pods(&self) -> Vec<Value> {
        self.operator_pods()
            .into_iter()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .collect()
    }

    /// Host PID of a container, from containerd's task list.
    fn container_pid(&self, pod: &Value) -> String {
        let id = pod["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .and_then(|id| id.strip_prefix("containerd://"))
            .expect("a containerd container ID")
            .to_owned();
        let tasks = run(
            self.node
                .command_inside(self.node.tools_dir().join("ctr"))
                .args([
                    "-a",
                    self.node.var("CONTAINERD_SOCK"),
                    "-n",
                    "k8s.io",
                    "tasks",
                    "ls",
                ]),
            "ctr tasks ls",
        );
        tasks
            .lines()
            .find(|l| l.starts_with(&id))
            .and_then(|l| l.split_whitespace().nth(1))
            .expect("the container's task")
            .to_owned()
    }

    fn policy(&self, name: &str) -> Value {
        self.kubectl_json(&["-n", POLICIES, "get", "akp", name])
    }

    /// Annotates a rotate request and waits until the policy says it handled it.
    fn rotate(&self, name: &str, value: &str) {
        run(
            self.kubectl().args([
                "-n",
                POLICIES,
                "annotate",
                "akp",
                name,
                &format!("keyrotor.dev/rotate-requested-at={value}"),
                "--overwrite",
            ]),
            "kubectl annotate",
        );
        self.wait_handled(name, value);
    }

    fn wait_handled(&self, name: &str, value: &str) {
        eventually(&format!("rotate request {value} handled"), WAIT, || {
            let policy = self.policy(name);
            (policy["status"]["lastHandledRotateRequest"] == value).then_some(())
        });
    }

    fn operator_logs(&self) -> String {
        let mut all = String::new();
        for pod in self.operator_pods() {
            let name = pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if let Ok(log) = node::run(
                self.kubectl().args(["-n", NAMESPACE, "logs", &name]),
                "kubectl logs",
            ) {
                all.push_str(&log);
            }
        }
        all
    }

    /// The simulated account's rotation interval in days.
    fn interval(&self) -> i64 {
        let account = self
            .try_sim_get(&format!("/__sim/accounts/{ACCOUNT}"))
            .expect("the simulated account");
        account["keyRotationIntervalDays"]
            .as_i64()
            .expect("keyRotationIntervalDays")
    }

    fn lease_holder(&self) -> Option<String> {
        let leases = self.kubectl_json(&["-n", NAMESPACE, "get", "leases"]);
        leases["items"]
            .as_array()?
            .iter()
            .find_map(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
            .filter(|h| !h.is_empty())
    }
}

fn chart_path() -> String {
    workspace_root()
        .join("charts/keyrotor")
        .to_str()
        .expect("chart path")
        .to_owned()
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

fn policy_manifest(name: &str, deletion: &str) -> String {
    format!(
        r#"{{"apiVersion": "keyrotor.dev/v1alpha1", "kind": "AccessKeyPolicy",
  "metadata": {{"name": "{name}", "namespace": "{POLICIES}"}},
  "spec": {{"accountId": "{ACCOUNT}", "keyRotationIntervalDays": 30,
    "credentialsRef": {{"name": "cloudflare-api"}}, "managementPolicy": "Manage",
    "rotationCooldown": "0s", "deletionPolicy": "{deletion}"}}}}"#
    )
}

/// 1. helm install in a Pod Security `restricted` namespace; the container
///    runs as 65532 without capabilities, read-only, under seccomp.
fn install(world: &mut World) {
    let t = Instant::now();
    run(
        world.kubectl().args(["create", "namespace", NAMESPACE]),
        "create namespace",
    );
    run(
        world.kubectl().args([
            "label",
            "namespace",
            NAMESPACE,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ]),
        "label namespace",
    );
    let chart = workspace_root().join("charts/keyrotor");
    let chart = chart.to_str().expect("chart path");
    let values = world.values("e2e-1");
    world.helm(
        &[
            "install",
            "keyrotor",
            chart,
            "-n",
            NAMESPACE,
            "--wait",
            "--timeout",
            "180s",
        ],
        &values,
    );
    run(
        world.kubectl().args([
            "-n",
            NAMESPACE,
            "wait",
            "--for=condition=Available",
            "deployment/keyrotor",
            "--timeout=60s",
        ]),
        "deployment available",
    );
    world.mark("1. helm install to Available", t);

    // `helm test`: the chart's test pod (the operator's image, `keyrotor
    // probe`, its own ServiceAccount bound to the metrics reader) reaches
    // /readyz and /metrics through the Service over TLS with a token review.
    let t = Instant::now();
    let tested = world.helm(
        &["test", "keyrotor", "-n", NAMESPACE, "--timeout", "120s"],
        &[],
    );
    assert!(
        tested.contains("Phase:") && tested.contains("Succeeded"),
        "helm test: {tested}"
    );
    world.mark("1b. helm test", t);

    let pods = world.ready_operator_pods();
    assert_eq!(pods.len(), 1, "one Ready operator pod");
    let pod = &pods[0];
    let container = &pod["spec"]["containers"][0];
    assert!(container["livenessProbe"].is_object(), "liveness probe set");
    assert!(
        container["readinessProbe"].is_object(),
        "readiness probe set"
    );
    // Liveness keeps passing: no restart a few periods later.
    std::thread::sleep(Duration::from_secs(5));
    let pod = &world.ready_operator_pods()[0];
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);

    let pid = world.container_pid(pod);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    println!(
        "[e2e] operator process {pid}: Uid {} CapEff {} NoNewPrivs {} Seccomp {}",
        field("Uid:"),
        field("CapEff:"),
        field("NoNewPrivs:"),
        field("Seccomp:")
    );
    assert!(
        field("Uid:").split_whitespace().all(|u| u == "65532"),
        "runs as 65532"
    );
    assert!(field("Gid:").split_whitespace().all(|g| g == "65532"));
    assert_eq!(field("CapEff:"), "0000000000000000", "no capabilities");
    assert_eq!(field("CapPrm:"), "0000000000000000");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2", "seccomp filter mode");
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let root = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .expect("root mount");
    let options = root.split_whitespace().nth(5).unwrap_or_default();
    assert!(
        options.split(',').any(|o| o == "ro"),
        "read-only root fs: {root}"
    );
}

/// 2. A policy goes Ready; an annotation rotates exactly once; the kubectl
///    plugin works against the in-cluster operator; no RBAC denial.
fn rotate(world: &mut World) {
    let t = Instant::now();
    run(
        world.kubectl().args(["create", "namespace", POLICIES]),
        "create namespace",
    );
    run_with_stdin(
        world.kubectl().args(["apply", "-f", "-"]),
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Secret", "metadata": {{"name": "cloudflare-api", "namespace": "{POLICIES}"}},
  "stringData": {{"apiToken": "{TOKEN}"}}}}"#
        ),
        "secret",
    );
    run_with_stdin(
        world.kubectl().args(["apply", "-f", "-"]),
        &policy_manifest("production", "Restore"),
        "policy",
    );
    run(
        world.kubectl().args([
            "-n",
            POLICIES,
            "wait",
            "--for=condition=Ready",
            "akp/production",
            "--timeout=60s",
        ]),
        "policy Ready",
    );
    world.mark("2. policy Ready", t);

    let t = Instant::now();
    let before = world.rotations();
    world.rotate("production", "2026-12-02T00:00:01Z");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(world.rotations(), before + 1, "one annotation, one POST");
    assert_eq!(
        world.policy("production")["status"]["lastRotateOutcome"],
        "Rotated"
    );
    world.mark("2. annotate to rotated", t);

    let t = Instant::now();
    let plugin = PathBuf::from(env!("CARGO_BIN_EXE_kubectl-keyrotor"));
    let path = format!(
        "{}:{}:{}",
        plugin.parent().expect("plugin dir").display(),
        world.node.tools_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = run(
        world.kubectl().env("PATH", &path).args([
            "keyrotor",
            "rotate",
            "production",
            "-n",
            POLICIES,
            "--wait",
            "--timeout",
            "60s",
        ]),
        "kubectl keyrotor rotate --wait",
    );
    println!("[e2e] kubectl keyrotor rotate: {}", out.trim());
    assert_eq!(
        world.rotations(),
        before + 2,
        "the plugin's request: one POST"
    );
    world.mark("2. kubectl keyrotor rotate --wait", t);

    let logs = world.operator_logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "an RBAC denial in the operator log:\n{logs}"
    );
}

/// 5. The container SIGKILLed through the runtime: the kubelet restarts it and
///    it converges again.
fn runtime_kill(world: &mut World) {
    let t = Instant::now();
    let pod = world.ready_operator_pods().remove(0);
    let name = pod["metadata"]["name"].as_str().expect("name").to_owned();
    let id = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .and_then(|id| id.strip_prefix("containerd://"))
        .expect("container ID")
        .to_owned();
    run(
        world
            .node
            .command_inside(world.node.tools_dir().join("ctr"))
            .args([
                "-a",
                world.node.var("CONTAINERD_SOCK"),
                "-n",
                "k8s.io",
                "tasks",
                "kill",
                "-s",
                "SIGKILL",
                &id,
            ]),
        "ctr tasks kill",
    );
    eventually(
        "the kubelet restarted the container",
        Duration::from_secs(90),
        || {
            let pod = world.kubectl_json(&["-n", NAMESPACE, "get", "pod", &name]);
            let status = &pod["status"]["containerStatuses"][0];
            (status["restartCount"].as_u64() >= Some(1) && status["ready"] == true).then_some(())
        },
    );
    let pod = world.kubectl_json(&["-n", NAMESPACE, "get", "pod", &name]);
    assert_eq!(
        pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 137,
        "killed by SIGKILL"
    );
    world.mark("5. SIGKILL to restarted and Ready", t);
    let before = world.rotations();
    world.rotate("production", "2026-12-02T00:05:00Z");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(world.rotations(), before + 1, "converged: one POST");
    world.mark("5. converged again", t);
}

/// Issues rotate requests one after another (each waits until handled) until
/// `stop` is set and at least `min` were made; returns how many.
fn requests_until(world: &World, prefix: &str, min: usize, stop: &AtomicBool) -> usize {
    let mut n = 0;
    while n < min || !stop.load(Ordering::SeqCst) {
        world.rotate(
            "production",
            &format!("2026-12-03T{prefix}:{:02}:{:02}Z", n / 60, n % 60),
        );
        n += 1;
        assert!(n < 600, "too many requests");
    }
    n
}

/// Sets the flag when dropped, so a requester thread ends when its scope panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// 3. Two replicas: one leader; the leader pod deleted while rotate requests
///    keep arriving. The other takes over, every request is handled exactly
///    once, the deleted pod exits on SIGTERM within its grace period and
///    releases the lease.
fn failover(world: &mut World) {
    let t = Instant::now();
    let chart = chart_path();
    let mut values = world.values("e2e-1");
    values.push("replicaCount=2".to_owned());
    world.helm(
        &[
            "upgrade",
            "keyrotor",
            &chart,
            "-n",
            NAMESPACE,
            "--wait",
            "--timeout",
            "180s",
        ],
        &values,
    );
    let pods = eventually("two Ready replicas", WAIT, || {
        let pods = world.ready_operator_pods();
        (pods.len() == 2).then_some(pods)
    });
    let names: Vec<String> = pods
        .iter()
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let leader = eventually("a leader among the two", WAIT, || {
        world.lease_holder().filter(|h| names.contains(h))
    });
    let standby = names
        .iter()
        .find(|n| **n != leader)
        .expect("standby")
        .clone();
    world.mark("3. two replicas, leader elected", t);

    let t = Instant::now();
    let grace = pods[0]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace period");
    // The leader's log and its container's last state, followed until it ends.
    let log_follower = world
        .kubectl()
        .args(["-n", NAMESPACE, "logs", "-f", &leader])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let mut watcher = world
        .kubectl()
        .args([
            "-n",
            NAMESPACE,
            "get",
            "pod",
            &leader,
            "-w",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let before = world.rotations();
    let stop = AtomicBool::new(false);
    let (requests, deleted_in, takeover) = std::thread::scope(|scope| {
        let _stop_on_panic = StopOnDrop(&stop);
        let requester = scope.spawn(|| requests_until(world, "03", 6, &stop));
        std::thread::sleep(Duration::from_secs(2));
        let deleting = Instant::now();
        run(
            world
                .kubectl()
                .args(["-n", NAMESPACE, "delete", "pod", &leader, "--wait=true"]),
            "delete the leader pod",
        );
        let deleted_in = deleting.elapsed();
        // The standby, or the pod the ReplicaSet starts in the deleted one's place.
        let takeover = eventually("another replica leads", WAIT, || {
            world
                .lease_holder()
                .filter(|h| *h != leader)
                .map(|h| (h, deleting.elapsed()))
        });
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::SeqCst);
        (requester.join().expect("requests"), deleted_in, takeover)
    });
    std::thread::sleep(Duration::from_secs(2));
    let _ = watcher.kill();
    let watched = watcher.wait_with_output().expect("watch output");
    let log = log_follower.wait_with_output().expect("leader log");
    let log = String::from_utf8_lossy(&log.stdout);
    let exit_codes = String::from_utf8_lossy(&watched.stdout);
    println!(
        "[e2e] leader {leader} deleted in {:.1} s (grace {grace} s), {} ({}) leads after {:.1} s, {requests} requests; exit codes seen: {:?}",
        deleted_in.as_secs_f64(),
        takeover.0,
        if takeover.0 == standby {
            "the standby"
        } else {
            "its replacement"
        },
        takeover.1.as_secs_f64(),
        exit_codes.split_whitespace().collect::<Vec<_>>()
    );
    assert_eq!(
        world.rotations(),
        before + requests,
        "every request handled exactly once across the failover"
    );
    assert!(
        deleted_in < Duration::from_secs(grace),
        "the leader exited on SIGTERM before its {grace} s grace period ended"
    );
    assert!(
        exit_codes.split_whitespace().any(|c| c == "0"),
        "the leader exited 0 on SIGTERM: {exit_codes:?}"
    );
    assert!(
        log.contains("lease released"),
        "the leader released its lease; its log:\n{log}"
    );
    assert!(
        takeover.1 < Duration::from_secs(10),
        "a released lease is taken at the next poll, not after the lease duration"
    );
    world.mark("3. leader deleted under requests, handed over", t);
}

/// 4. helm upgrade to a second image tag while requests arrive: the rollout
///    completes and no request is lost or doubled.
fn upgrade(world: &mut World) {
    let t = Instant::now();
    let chart = chart_path();
    let mut values = world.values("e2e-2");
    values.push("replicaCount=2".to_owned());
    let before = world.rotations();
    let stop = AtomicBool::new(false);
    let requests = std::thread::scope(|scope| {
        let _stop_on_panic = StopOnDrop(&stop);
        let requester = scope.spawn(|| requests_until(world, "04", 4, &stop));
        std::thread::sleep(Duration::from_secs(1));
        world.helm(
            &[
                "upgrade",
                "keyrotor",
                &chart,
                "-n",
                NAMESPACE,
                "--wait",
                "--timeout",
                "180s",
            ],
            &values,
        );
        run(
            world.kubectl().args([
                "-n",
                NAMESPACE,
                "rollout",
                "status",
                "deployment/keyrotor",
                "--timeout=120s",
            ]),
            "rollout status",
        );
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::SeqCst);
        requester.join().expect("requests")
    });
    let pods = eventually("two Ready pods of the new image", WAIT, || {
        let pods = world.ready_operator_pods();
        (pods.len() == 2
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == format!("{IMAGE}:e2e-2")))
        .then_some(pods)
    });
    assert_eq!(pods.len(), 2);
    assert_eq!(
        world.rotations(),
        before + requests,
        "{requests} requests during the upgrade, each handled exactly once"
    );
    println!("[e2e] upgrade: {requests} requests during the rollout");
    world.mark("4. helm upgrade under requests", t);
}

/// 7. helm uninstall keeps the CRD and the policies (docs/install.md); a
///    reinstall adopts them without rotating again; deleting a `Restore`
///    policy then puts the account's original interval back.
fn reinstall(world: &mut World) {
    let t = Instant::now();
    let chart = chart_path();
    let before = world.rotations();
    let original = world.interval();
    assert_eq!(original, 30, "the policy set the interval");
    world.helm(&["uninstall", "keyrotor", "-n", NAMESPACE, "--wait"], &[]);
    eventually("the operator pods are gone", WAIT, || {
        world.operator_pods().is_empty().then_some(())
    });
    run(
        world
            .kubectl()
            .args(["get", "crd", "accesskeypolicies.keyrotor.dev"]),
        "the CRD is kept",
    );
    let policy = world.policy("production");
    assert!(
        policy["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "keyrotor.dev/restore")),
        "the Restore policy keeps its finalizer while no operator runs"
    );
    world.mark("7. helm uninstall", t);

    let t = Instant::now();
    world.helm(
        &[
            "install",
            "keyrotor",
            &chart,
            "-n",
            NAMESPACE,
            "--wait",
            "--timeout",
            "180s",
        ],
        &world.values("e2e-2"),
    );
    run(
        world.kubectl().args([
            "-n",
            POLICIES,
            "wait",
            "--for=condition=Ready",
            "akp/production",
            "--timeout=60s",
        ]),
        "policy Ready after the reinstall",
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        world.rotations(),
        before,
        "a handled request is not rotated again"
    );
    world.mark("7. reinstall over the kept CRD", t);

    let t = Instant::now();
    run(
        world.kubectl().args([
            "-n",
            POLICIES,
            "delete",
            "akp",
            "production",
            "--timeout=60s",
        ]),
        "delete the Restore policy",
    );
    assert_eq!(
        world.interval(),
        42,
        "Restore put the original interval back"
    );
    world.mark("7. Restore on delete", t);
}

/// The extra accounts of the scale scenario.
const SCALE: usize = 1000;

fn scale_account(i: usize) -> String {
    format!("{:032x}", 0xe2e0_0000_usize + i)
}

/// Bytes in a cgroup v1 memory file of the operator pod's cgroup.
fn pod_memory(world: &World, pod: &Value, file: &str) -> u64 {
    let uid = pod["metadata"]["uid"].as_str().expect("pod uid");
    let root = Path::new("/sys/fs/cgroup/memory").join(world.node.var("CGROUP"));
    let dir = ["kubepods/burstable", "kubepods/besteffort", "kubepods"]
        .iter()
        .map(|qos| root.join(qos).join(format!("pod{uid}")))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| panic!("no memory cgroup for pod {uid} under {}", root.display()));
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// 6. The chart's memory limit holds under a real cgroup with 1,000
///    policies: every policy goes Ready and the container is never killed.
fn scale(world: &mut World) {
    let t = Instant::now();
    let pod = world.ready_operator_pods().remove(0);
    let name = pod["metadata"]["name"].as_str().expect("name").to_owned();
    let restarts = pod["status"]["containerStatuses"][0]["restartCount"].clone();
    let limit = pod["spec"]["containers"][0]["resources"]["limits"]["memory"]
        .as_str()
        .expect("the chart sets a memory limit")
        .to_owned();
    run(
        world.kubectl().args(["create", "namespace", "scale"]),
        "create namespace",
    );
    let mut items = vec![serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "cloudflare-api", "namespace": "scale"},
        "stringData": {"apiToken": TOKEN},
    })];
    for i in 0..SCALE {
        items.push(serde_json::json!({
            "apiVersion": "keyrotor.dev/v1alpha1", "kind": "AccessKeyPolicy",
            "metadata": {"name": format!("p{i:04}"), "namespace": "scale"},
            "spec": {"accountId": scale_account(i), "keyRotationIntervalDays": 30,
                     "credentialsRef": {"name": "cloudflare-api"}},
        }));
    }
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    run_with_stdin(
        world.kubectl().args(["apply", "-f", "-"]),
        &list.to_string(),
        "1,000 policies",
    );
    world.mark("6. 1,000 policies created", t);
    let t = Instant::now();
    let mut peak = 0;
    eventually("1,000 policies Ready", Duration::from_secs(300), || {
        peak = peak.max(pod_memory(world, &pod, "memory.max_usage_in_bytes"));
        let list = world.kubectl_json(&["-n", "scale", "get", "akp"]);
        let ready = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count();
        (ready == SCALE).then_some(())
    });
    world.mark("6. 1,000 policies Ready", t);
    std::thread::sleep(Duration::from_secs(5));
    peak = peak.max(pod_memory(world, &pod, "memory.max_usage_in_bytes"));
    let usage = pod_memory(world, &pod, "memory.usage_in_bytes");
    let cgroup_limit = pod_memory(world, &pod, "memory.limit_in_bytes");
    let failcnt = pod_memory(world, &pod, "memory.failcnt");
    let rss = std::fs::read_to_string(format!("/proc/{}/status", world.container_pid(&pod)))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    println!(
        "[e2e] 1,000 policies: pod cgroup peak {:.1} MiB, now {:.1} MiB, limit {:.1} MiB (chart: {limit}), failcnt {failcnt}, operator RSS {rss}",
        peak as f64 / 1048576.0,
        usage as f64 / 1048576.0,
        cgroup_limit as f64 / 1048576.0,
    );
    assert!(
        peak > 0 && peak <= cgroup_limit,
        "peak within the cgroup's limit"
    );
    let after = world.kubectl_json(&["-n", NAMESPACE, "get", "pod", &name]);
    assert_eq!(
        after["status"]["containerStatuses"][0]["restartCount"], restarts,
        "the operator was not OOM-killed: {}",
        after["status"]["containerStatuses"][0]
    );
    world.mark("6. memory checked", t);
}

/// Prints the resident memory of the node's servers and the operator pods.
fn print_rss(world: &World) {
    let rss = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib / 1024)
    };
    let pids = std::fs::read_to_string(world.node.dir().join("pids")).unwrap_or_default();
    let mut line = String::new();
    for (name, pid) in pids.lines().filter_map(|l| l.split_once(' ')) {
        if let Some(mib) = rss(pid) {
            line.push_str(&format!(" {name} {mib}"));
        }
    }
    for pod in world.operator_pods() {
        if let Some(mib) = rss(&world.container_pid(&pod)) {
            line.push_str(&format!(" keyrotor {mib}"));
        }
    }
    println!("[e2e] RSS (MiB):{line}");
}

#[test]
fn the_operator_runs_on_a_real_node_as_users_run_it() {
    if skipped() {
        return;
    }
    let all = Instant::now();
    let mut world = World::start();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        install(&mut world);
        rotate(&mut world);
        runtime_kill(&mut world);
        failover(&mut world);
        upgrade(&mut world);
        reinstall(&mut world);
        scale(&mut world);
        print_rss(&world);
    }));
    if result.is_err() {
        eprintln!("--- node logs\n{}", world.node.log_tails());
        eprintln!("--- operator logs\n{}", world.operator_logs());
    }
    println!("[e2e] phase timings:");
    for (phase, took) in &world.timings {
        println!("[e2e]   {phase:<45} {:>6.1} s", took.as_secs_f64());
    }
    let t = Instant::now();
    let leftovers = world.node.stop().expect("teardown");
    println!("[e2e] teardown: {:.1} s", t.elapsed().as_secs_f64());
    println!("[e2e] total: {:.1} s", all.elapsed().as_secs_f64());
    assert!(leftovers.is_empty(), "the node left: {leftovers}");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
