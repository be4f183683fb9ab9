//! A release installs on a real node (issue 19): `hack/release.sh VERSION`
//! (with the debug binaries cargo test has built, as tests/release.rs), the
//! release's image archive imported into the node's containerd, `helm install`
//! of the packaged chart `keyrotor-VERSION.tgz` with its default image
//! (`ghcr.io/keyrotor/keyrotor:VERSION`, never pulled: the node has no
//! registry), and the Deployment becomes Available in a Pod Security
//! `restricted` namespace. Needs root, as tests/e2e.rs; skipped loudly otherwise.

use std::process::{Command, Stdio};
use std::time::Instant;

use keyrotor_testenv::node::{self, Node};
use keyrotor_testenv::workspace_root;
use serde_json::Value;

const NAMESPACE: &str = "keyrotor-system";

fn run(command: &mut Command, what: &str) -> String {
    node::run(command, what).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_released_chart_installs_with_the_archived_image() {
    if let Err(why) = node::node_supported() {
        eprintln!("\n!!!!!!!! SKIPPED: the release end-to-end test did not run: {why} !!!!!!!!\n");
        return;
    }
    let version = env!("CARGO_PKG_VERSION");
    let t = Instant::now();
    let node = Node::start().expect("the node starts");
    println!(
        "[e2e-release] node Ready: {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let out = node.dir().join("release");
    run(
        Command::new(workspace_root().join("hack/release.sh"))
            .arg(version)
            .env("KEYROTOR_RELEASE_PROFILE", "debug")
            .env("KEYROTOR_RELEASE_KEYROTOR", env!("CARGO_BIN_EXE_keyrotor"))
            .env(
                "KEYROTOR_RELEASE_PLUGIN",
                env!("CARGO_BIN_EXE_kubectl-keyrotor"),
            )
            .env("KEYROTOR_RELEASE_OUT", &out)
            .stdin(Stdio::null())
            .stderr(Stdio::null()),
        "hack/release.sh",
    );
    println!(
        "[e2e-release] hack/release.sh: {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    node.import_image(&out.join(format!("keyrotor-image_{version}_linux_amd64.tar")))
        .expect("the release's image archive imports into containerd");
    run(
        node.kubectl().args(["create", "namespace", NAMESPACE]),
        "create namespace",
    );
    run(
        node.kubectl().args([
            "label",
            "namespace",
            NAMESPACE,
            "pod-security.kubernetes.io/enforce=restricted",
        ]),
        "label namespace",
    );
    let chart = out.join(format!("keyrotor-{version}.tgz"));
    run(
        node.helm()
            .args(["install", "keyrotor"])
            .arg(&chart)
            .args(["-n", NAMESPACE, "--wait", "--timeout", "180s"])
            // The archived image or nothing: a pull would fail on the node anyway.
            .args(["--set", "image.pullPolicy=Never"]),
        "helm install of the packaged chart",
    );
    run(
        node.kubectl().args([
            "-n",
            NAMESPACE,
            "wait",
            "--for=condition=Available",
            "deployment/keyrotor",
            "--timeout=60s",
        ]),
        "deployment available",
    );
    println!(
        "[e2e-release] import + helm install to Available: {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let deployment: Value = serde_json::from_str(&run(
        node.kubectl().args([
            "-n",
            NAMESPACE,
            "get",
            "deployment",
            "keyrotor",
            "-o",
            "json",
        ]),
        "get deployment",
    ))
    .expect("deployment JSON");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"].as_str(),
        Some(format!("ghcr.io/keyrotor/keyrotor:{version}").as_str()),
        "the chart's default image is the release's"
    );
    assert_eq!(
        deployment["metadata"]["labels"]["app.kubernetes.io/version"].as_str(),
        Some(version)
    );
    let crd = run(
        node.kubectl()
            .args(["get", "crd", "accesskeypolicies.keyrotor.dev", "-o", "name"]),
        "get crd",
    );
    assert!(crd.contains("accesskeypolicies.keyrotor.dev"), "{crd}");

    let leftovers = node.stop().expect("the node stops");
    assert!(leftovers.is_empty(), "the node left: {leftovers}");
}
