//! The Helm chart and the kustomize install: lint, render with several value
//! sets, server-side dry-run apply on the real API server, schema rejections,
//! Pod Security `restricted`, and the CRD copies.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use keyrotor_testenv::{ControlPlane, workspace_root};
use support::kubectl_with_input;

mod support;

fn root() -> PathBuf {
    workspace_root()
}

fn chart() -> PathBuf {
    root().join("charts/keyrotor")
}

fn helm(plane: &ControlPlane) -> Command {
    Command::new(plane.tools_dir().join("helm"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `helm template` in `namespace` with extra arguments.
fn render(plane: &ControlPlane, namespace: &str, extra: &[&str]) -> Output {
    helm(plane)
        .args(["template", "kr"])
        .arg(chart())
        .args(["--namespace", namespace, "--kube-version", "1.36.3"])
        .args(extra)
        .output()
        .expect("helm runs")
}

fn rendered(plane: &ControlPlane, namespace: &str, extra: &[&str]) -> String {
    let output = render(plane, namespace, extra);
    assert!(
        output.status.success(),
        "helm template {extra:?} failed: {}",
        text(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `kubectl apply --server-side --dry-run=server` of a manifest on the real server.
fn dry_run_apply(plane: &ControlPlane, manifest: &str) -> Output {
    kubectl_with_input(
        plane,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            "-",
        ],
        manifest,
    )
}

fn kinds(manifest: &str) -> Vec<String> {
    manifest
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_crd_copies_are_byte_identical_to_crds() {
    let source =
        std::fs::read(root().join("crds/accesskeypolicies.keyrotor.dev.yaml")).expect("crds/");
    for copy in [
        "charts/keyrotor/files/crds/accesskeypolicies.keyrotor.dev.yaml",
        "deploy/crd.yaml",
    ] {
        let bytes = std::fs::read(root().join(copy)).expect(copy);
        assert!(
            bytes == source,
            "{copy} differs from crds/: run hack/gen-manifests.sh"
        );
    }
}

#[tokio::test]
async fn helm_lint_passes_for_every_value_set() {
    let plane = keyrotor_testenv::shared().await;
    let mut sets = vec![None];
    for entry in std::fs::read_dir(chart().join("ci")).expect("ci values") {
        sets.push(Some(entry.expect("entry").path()));
    }
    assert!(sets.len() >= 5, "default plus at least four value sets");
    for set in sets {
        let mut lint = helm(plane);
        lint.args(["lint", "--strict", "--kube-version", "1.36.3"])
            .arg(chart());
        if let Some(values) = &set {
            lint.arg("-f").arg(values);
        }
        let output = lint.output().expect("helm runs");
        assert!(
            output.status.success(),
            "helm lint {set:?}: {}",
            text(&output)
        );
    }
}

/// name, helm arguments, kinds that must be rendered, kinds that must not.
type RenderCase<'a> = (&'a str, Vec<String>, Vec<&'a str>, Vec<&'a str>);

#[tokio::test]
async fn every_value_set_renders_and_is_accepted_by_the_api_server() {
    let plane = keyrotor_testenv::shared().await;
    let install = plane
        .kubectl()
        .args(["apply", "--server-side", "-f"])
        .arg(root().join("tests/fixtures/monitoring-crds.yaml"))
        .output()
        .expect("kubectl runs");
    assert!(install.status.success(), "{}", text(&install));
    let wait = plane
        .kubectl()
        .args([
            "wait",
            "--for=condition=Established",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
            "--timeout=30s",
        ])
        .output()
        .expect("kubectl runs");
    assert!(wait.status.success(), "{}", text(&wait));

    let release_ns = plane.create_namespace("chart").await.expect("namespace");
    let team_a = plane.create_namespace("team-a").await.expect("namespace");
    let team_b = plane.create_namespace("team-b").await.expect("namespace");
    let watch = format!("watchNamespaces={{{team_a},{team_b}}}");
    let ci = |name: &str| chart().join("ci").join(name).to_string_lossy().into_owned();
    let cases: Vec<RenderCase> = vec![
        (
            "default",
            vec![],
            vec![
                "CustomResourceDefinition",
                "ClusterRole",
                "ClusterRoleBinding",
                "Deployment",
                "Service",
                "ServiceAccount",
                // Leases in the release namespace: the account claims.
                "Role",
                "RoleBinding",
            ],
            vec!["PodDisruptionBudget", "ServiceMonitor"],
        ),
        (
            "namespaced, open metrics",
            vec![
                "--set".into(),
                watch.clone(),
                "--set".into(),
                "metrics.auth=none".into(),
            ],
            vec!["Role", "RoleBinding"],
            vec!["ClusterRole", "ClusterRoleBinding"],
        ),
        // Reviewing /metrics callers needs cluster-scoped tokenreviews and
        // subjectaccessreviews: their ClusterRole is the only cluster-wide grant.
        (
            "namespaced",
            vec!["--set".into(), watch.clone()],
            vec!["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"],
            vec![],
        ),
        (
            "ha",
            vec!["-f".into(), ci("ha-values.yaml")],
            vec!["PodDisruptionBudget", "Role", "RoleBinding"],
            vec![],
        ),
        (
            "monitoring",
            vec!["-f".into(), ci("monitoring-values.yaml")],
            vec!["ServiceMonitor", "PrometheusRule", "NetworkPolicy"],
            vec![],
        ),
        (
            "crds-off",
            vec!["-f".into(), ci("crds-off-values.yaml")],
            vec!["Deployment"],
            vec!["CustomResourceDefinition"],
        ),
    ];
    for (name, args, must, must_not) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let manifest = rendered(plane, &release_ns, &args);
        let found = kinds(&manifest);
        for kind in must {
            assert!(
                found.iter().any(|k| k == kind),
                "{name}: no {kind} in {found:?}"
            );
        }
        for kind in must_not {
            assert!(
                !found.iter().any(|k| k == kind),
                "{name}: unexpected {kind} in {found:?}"
            );
        }
        let applied = dry_run_apply(plane, &manifest);
        assert!(
            applied.status.success(),
            "{name}: server-side dry-run failed: {}",
            text(&applied)
        );
    }
    // HA turns leader election on.
    let ha = rendered(plane, &release_ns, &["--set", "replicaCount=2"]);
    assert!(ha.contains("--leader-election=true"));
    assert!(rendered(plane, &release_ns, &[]).contains("--leader-election=false"));
}

#[tokio::test]
async fn monitoring_objects_need_their_api_or_force() {
    let plane = keyrotor_testenv::shared().await;
    let without = rendered(
        plane,
        "ns",
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "prometheusRule.enabled=true",
        ],
    );
    assert!(
        !kinds(&without)
            .iter()
            .any(|k| k == "ServiceMonitor" || k == "PrometheusRule")
    );
    let with_api = rendered(
        plane,
        "ns",
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "prometheusRule.enabled=true",
            "--api-versions",
            "monitoring.coreos.com/v1",
        ],
    );
    assert!(kinds(&with_api).iter().any(|k| k == "ServiceMonitor"));
    assert!(kinds(&with_api).iter().any(|k| k == "PrometheusRule"));
    assert!(with_api.contains("+ 86400 < time()"));
}

#[tokio::test]
async fn bad_values_are_rejected_by_the_schema_naming_the_value() {
    let plane = keyrotor_testenv::shared().await;
    for (set, field) in [
        ("replicaCount=two", "replicaCount"),
        ("logging.format=xml", "logging.format"),
        ("resources.limits.memory=-1Gi", "resources.limits.memory"),
        ("resources.requests.cpu=-5", "resources.requests.cpu"),
        ("driftCheckFloor=soon", "driftCheckFloor"),
        ("minRotationCooldown=a-week", "minRotationCooldown"),
        ("concurrency=0", "concurrency"),
        ("watchNamespaces[0]=Not_A_Namespace", "watchNamespaces"),
        ("unknownValue=1", "unknownValue"),
    ] {
        let args: Vec<&str> = if set == "replicaCount=two" || set == "resources.requests.cpu=-5" {
            vec!["--set-string", set]
        } else {
            vec!["--set", set]
        };
        let output = render(plane, "ns", &args);
        assert!(!output.status.success(), "{set} was accepted");
        let message = text(&output);
        assert!(
            message.contains("values don't meet the specifications of the schema"),
            "{set}: {message}"
        );
        // helm names the value by its JSON pointer, e.g. /logging/format.
        // An unknown key is named in quotes at the parent's pointer.
        let pointer = format!("/{}", field.replace('.', "/"));
        let quoted = format!("'{field}'");
        assert!(
            message.contains(&pointer) || message.contains(&quoted),
            "{set}: message does not name {field}: {message}"
        );
    }
}

#[tokio::test]
async fn the_pod_template_is_admitted_under_pod_security_restricted() {
    let plane = keyrotor_testenv::shared().await;
    let namespace = plane
        .create_namespace("restricted")
        .await
        .expect("namespace");
    let label = plane
        .kubectl()
        .args([
            "label",
            "namespace",
            &namespace,
            "pod-security.kubernetes.io/enforce=restricted",
            "--overwrite",
        ])
        .output()
        .expect("kubectl runs");
    assert!(label.status.success(), "{}", text(&label));
    let manifest = rendered(plane, &namespace, &["--set", "crds.enabled=false"]);
    let deployment = manifest
        .split("\n---")
        .find(|doc| doc.contains("\nkind: Deployment"))
        .expect("a Deployment");
    let deployment: serde_json::Value = serde_norway::from_str(deployment).expect("yaml");
    let template = &deployment["spec"]["template"];
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "keyrotor-from-template", "namespace": namespace, "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    });
    let admitted = create_pod(plane, &pod);
    assert!(
        admitted.status.success(),
        "the chart's pod was refused: {}",
        text(&admitted)
    );

    // The namespace really enforces: a privileged pod is refused.
    let mut bad = pod.clone();
    bad["metadata"]["name"] = "privileged".into();
    bad["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = true.into();
    let refused = create_pod(plane, &bad);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("violates PodSecurity \"restricted"),
        "{}",
        text(&refused)
    );
}

fn create_pod(plane: &ControlPlane, pod: &serde_json::Value) -> Output {
    kubectl_with_input(plane, &["create", "-f", "-"], &pod.to_string())
}

#[tokio::test]
async fn kubectl_apply_k_deploy_is_accepted_by_the_api_server() {
    let plane = keyrotor_testenv::shared().await;
    // Namespaced objects need their namespace to exist even in a dry run.
    let namespace = plane
        .kubectl()
        .args(["apply", "--server-side", "-f"])
        .arg(root().join("deploy/namespace.yaml"))
        .output()
        .expect("kubectl runs");
    assert!(namespace.status.success(), "{}", text(&namespace));
    let output = plane
        .kubectl()
        .args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-k",
        ])
        .arg(root().join("deploy"))
        .output()
        .expect("kubectl runs");
    assert!(output.status.success(), "{}", text(&output));
    let out = text(&output);
    for object in [
        "namespace/keyrotor-system",
        "customresourcedefinition.apiextensions.k8s.io/accesskeypolicies.keyrotor.dev",
        "deployment.apps/keyrotor",
        "clusterrole.rbac.authorization.k8s.io/keyrotor",
    ] {
        assert!(out.contains(object), "{object} missing from: {out}");
    }
    assert!(Path::new(&root().join("deploy/operator.yaml")).exists());
}
