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

/// The k8s.io/kubernetes version a tools module pins (`v1.33.13`).
fn pinned_kubernetes(module: &str) -> String {
    let go_mod =
        std::fs::read_to_string(root().join("tools").join(module).join("go.mod")).expect("go.mod");
    go_mod
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("k8s.io/kubernetes"))
                .then(|| words.next().unwrap_or_default().to_owned())
        })
        .expect("k8s.io/kubernetes in go.mod")
}

/// The chart's `kubeVersion` floor is the oldest minor the tests run on
/// (tools/kubernetes-oldest, which hack/test.sh runs this suite and the
/// controller's on), and this run's API server is the one it was asked for:
/// `KEYROTOR_EXPECT_KUBERNETES` names it in the oldest run, the current pin
/// otherwise.
#[tokio::test]
async fn the_kube_version_floor_is_the_oldest_minor_tested() {
    let plane = keyrotor_testenv::shared().await;
    let oldest = pinned_kubernetes("kubernetes-oldest");
    let minor = |version: &str| version.split('.').take(2).collect::<Vec<_>>().join(".");
    let chart_yaml = std::fs::read_to_string(chart().join("Chart.yaml")).expect("Chart.yaml");
    let floor = format!(
        "kubeVersion: \">={}.0-0\"",
        minor(&oldest).trim_start_matches('v')
    );
    assert!(chart_yaml.contains(&floor), "Chart.yaml lacks {floor}");
    let expected = std::env::var("KEYROTOR_EXPECT_KUBERNETES")
        .unwrap_or_else(|_| pinned_kubernetes("kubernetes"));
    assert_eq!(support::kube_version(plane), expected);
    // The server itself says so too.
    let info = plane
        .admin_client()
        .await
        .expect("client")
        .apiserver_version()
        .await
        .expect("version");
    assert_eq!(info.git_version, expected);
}

/// `helm template` in `namespace` with extra arguments.
fn render(plane: &ControlPlane, namespace: &str, extra: &[&str]) -> Output {
    let version = support::kube_version(plane);
    helm(plane)
        .args(["template", "kr"])
        .arg(chart())
        .args(["--namespace", namespace, "--kube-version", &version])
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
        lint.args([
            "lint",
            "--strict",
            "--kube-version",
            &support::kube_version(plane),
        ])
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

/// The Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule), Established.
fn install_monitoring_crds(plane: &ControlPlane) {
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
}

/// name, helm arguments, kinds that must be rendered, kinds that must not.
type RenderCase<'a> = (&'a str, Vec<String>, Vec<&'a str>, Vec<&'a str>);

#[tokio::test]
async fn every_value_set_renders_and_is_accepted_by_the_api_server() {
    let plane = keyrotor_testenv::shared().await;
    install_monitoring_crds(plane);

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

// ---- Issue 15: the values platform teams set by habit ----

/// The documents of a rendered manifest, parsed (empty ones left out).
fn documents(manifest: &str) -> Vec<serde_json::Value> {
    manifest
        .split("\n---")
        .filter_map(|doc| serde_norway::from_str::<serde_json::Value>(doc).ok())
        .filter(|doc| doc.is_object())
        .collect()
}

/// The one document of `kind` (named `name`, if given).
fn object<'a>(
    docs: &'a [serde_json::Value],
    kind: &str,
    name: Option<&str>,
) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| {
            d["kind"] == kind && name.is_none_or(|n| d["metadata"]["name"].as_str() == Some(n))
        })
        .unwrap_or_else(|| panic!("no {kind} {name:?} rendered"))
}

fn ci_values(name: &str) -> String {
    chart().join("ci").join(name).to_string_lossy().into_owned()
}

#[tokio::test]
async fn every_new_value_reaches_the_object_it_configures() {
    let plane = keyrotor_testenv::shared().await;
    let all = ci_values("all-values.yaml");
    let manifest = rendered(plane, "ns", &["-f", &all]);
    let docs = documents(&manifest);

    // commonLabels on every object the chart makes (the extraObjects are the user's own).
    for doc in &docs {
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        if name == "corporate-ca" || name == "kr-keyrotor-extra" {
            continue;
        }
        assert_eq!(
            doc["metadata"]["labels"]["team"], "platform",
            "commonLabels missing on {} {name}",
            doc["kind"]
        );
    }

    let deployment = object(&docs, "Deployment", None);
    assert_eq!(
        deployment["metadata"]["annotations"]["example.com/owner"],
        "platform"
    );
    assert_eq!(deployment["spec"]["revisionHistoryLimit"], 3);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let pod = &deployment["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["team"], "platform");
    let spec = &pod["spec"];
    assert_eq!(
        spec["imagePullSecrets"],
        serde_json::json!([{"name": "global-pull"}, {"name": "chart-pull"}]),
        "global.imagePullSecrets first, then imagePullSecrets"
    );
    assert_eq!(spec["securityContext"]["runAsUser"], 1000);
    assert_eq!(spec["securityContext"]["fsGroup"], 2000);
    let spread = &spec["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(
        spread["labelSelector"]["matchLabels"],
        serde_json::json!({"app.kubernetes.io/name": "keyrotor", "app.kubernetes.io/instance": "kr"}),
        "a constraint without labelSelector selects the release's pods"
    );
    assert_eq!(spec["volumes"][0]["configMap"]["name"], "corporate-ca");
    let container = &spec["containers"][0];
    assert_eq!(
        container["image"],
        "registry.example.com/mirror/keyrotor@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "registry prepended, digest instead of the tag"
    );
    assert_eq!(
        container["volumeMounts"][0]["mountPath"],
        "/etc/keyrotor/ca"
    );
    assert_eq!(container["securityContext"]["runAsUser"], 1000);
    assert_eq!(container["livenessProbe"]["periodSeconds"], 31);
    assert_eq!(container["livenessProbe"]["initialDelaySeconds"], 7);
    assert_eq!(container["livenessProbe"]["timeoutSeconds"], 3);
    assert_eq!(container["livenessProbe"]["failureThreshold"], 4);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(
        container["readinessProbe"].is_null(),
        "readinessProbe.enabled=false"
    );
    let env: Vec<&str> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(env.contains(&"SSL_CERT_DIR"), "{env:?}");

    let policy = &object(&docs, "NetworkPolicy", None)["spec"]["egress"];
    let api_ports: Vec<i64> = policy[1]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(|p| p["port"].as_i64())
        .collect();
    assert_eq!(api_ports, [443, 6443, 8443, 16443]);
    assert_eq!(policy[1]["to"][0]["ipBlock"]["cidr"], "10.0.0.1/32");
    assert_eq!(policy[2]["to"][0]["ipBlock"]["except"][0], "10.0.0.0/8");
    assert_eq!(policy[3]["ports"][0]["port"], 3128, "extraRules appended");

    let monitor = object(&docs, "ServiceMonitor", None);
    assert_eq!(
        monitor["metadata"]["annotations"]["example.com/owner"],
        "platform"
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["honorLabels"], true);
    assert_eq!(endpoint["scrapeTimeout"], "10s");
    assert_eq!(endpoint["relabelings"][0]["targetLabel"], "cluster");
    assert_eq!(endpoint["metricRelabelings"][0]["action"], "drop");

    // extraObjects, maps and strings, both through tpl.
    let ca = object(&docs, "ConfigMap", Some("corporate-ca"));
    assert_eq!(ca["metadata"]["namespace"], "ns");
    assert_eq!(ca["data"]["ca.crt"], "placeholder for kr");
    object(&docs, "ConfigMap", Some("kr-keyrotor-extra"));

    let test_pod = object(&docs, "Pod", Some("kr-keyrotor-test"));
    assert_eq!(
        test_pod["spec"]["containers"][0]["image"],
        "registry.example.com/mirror/keyrotor:test"
    );

    // The whole set is accepted by the API server.
    install_monitoring_crds(plane);
    let namespace = plane
        .create_namespace("chart-all")
        .await
        .expect("namespace");
    let manifest = rendered(plane, &namespace, &["-f", &all]);
    let applied = dry_run_apply(plane, &manifest);
    assert!(
        applied.status.success(),
        "all values: server-side dry-run failed: {}",
        text(&applied)
    );
}

#[tokio::test]
async fn global_image_pull_secrets_reach_the_pod_spec() {
    let plane = keyrotor_testenv::shared().await;
    let docs = documents(&rendered(
        plane,
        "ns",
        &["--set", "global.imagePullSecrets[0].name=from-global"],
    ));
    let spec = &object(&docs, "Deployment", None)["spec"]["template"]["spec"];
    assert_eq!(
        spec["imagePullSecrets"],
        serde_json::json!([{"name": "from-global"}])
    );
    // The same secret in both lists is listed once.
    let docs = documents(&rendered(
        plane,
        "ns",
        &[
            "--set",
            "global.imagePullSecrets[0].name=same",
            "--set",
            "imagePullSecrets[0].name=same",
        ],
    ));
    let spec = &object(&docs, "Deployment", None)["spec"]["template"]["spec"];
    assert_eq!(
        spec["imagePullSecrets"],
        serde_json::json!([{"name": "same"}])
    );
}

/// Without leader election a rolling update would run the old and the new
/// operator side by side, both reconciling: one replica without it is
/// replaced with Recreate; with leader election (two replicas) the new pod
/// waits as a standby, so the rolling update stays; `strategy` overrides both.
#[tokio::test]
async fn two_operators_without_leader_election_never_overlap_in_a_rollout() {
    let plane = keyrotor_testenv::shared().await;
    let strategy = |extra: &[&str]| {
        let docs = documents(&rendered(plane, "ns", extra));
        object(&docs, "Deployment", None)["spec"]["strategy"].clone()
    };
    assert_eq!(strategy(&[]), serde_json::json!({"type": "Recreate"}));
    assert_eq!(
        strategy(&["--set", "replicaCount=2"]),
        serde_json::Value::Null
    );
    assert_eq!(
        strategy(&["--set", "leaderElection.enabled=true"]),
        serde_json::Value::Null
    );
    assert_eq!(
        strategy(&["--set", "strategy.type=RollingUpdate"]),
        serde_json::json!({"type": "RollingUpdate"})
    );
}

/// Every runAsUser/runAsGroup in the rendered Deployment and test Pod.
fn fixed_ids(docs: &[serde_json::Value]) -> Vec<String> {
    let mut found = Vec::new();
    for doc in docs
        .iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "Pod")
    {
        let spec = if doc["kind"] == "Deployment" {
            &doc["spec"]["template"]["spec"]
        } else {
            &doc["spec"]
        };
        let mut contexts = vec![&spec["securityContext"]];
        contexts.extend(
            spec["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| &c["securityContext"]),
        );
        for context in contexts {
            for key in ["runAsUser", "runAsGroup", "fsGroup"] {
                if !context[key].is_null() {
                    found.push(format!(
                        "{} {key}={}",
                        doc["kind"].as_str().unwrap_or_default(),
                        context[key]
                    ));
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn security_contexts_can_leave_the_fixed_ids_out_for_openshift() {
    let plane = keyrotor_testenv::shared().await;
    // The default keeps 65532 (the image's user) off OpenShift.
    let defaults = documents(&rendered(plane, "ns", &[]));
    assert_eq!(
        fixed_ids(&defaults),
        [
            "Deployment runAsUser=65532",
            "Deployment runAsGroup=65532",
            "Pod runAsUser=65532",
            "Pod runAsGroup=65532"
        ]
    );
    for (case, args) in [
        (
            "nulls",
            vec![
                "--set",
                "podSecurityContext.runAsUser=null",
                "--set",
                "podSecurityContext.runAsGroup=null",
            ],
        ),
        (
            "force",
            vec![
                "--set",
                "global.compatibility.openshift.adaptSecurityContext=force",
            ],
        ),
        (
            "auto on OpenShift",
            vec!["--api-versions", "security.openshift.io/v1"],
        ),
    ] {
        let docs = documents(&rendered(plane, "ns", &args));
        assert_eq!(fixed_ids(&docs), Vec::<String>::new(), "{case}");
        let pod = &object(&docs, "Deployment", None)["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{case}");
        assert_eq!(
            pod["containers"][0]["securityContext"]["capabilities"]["drop"][0], "ALL",
            "{case}"
        );
    }
    // `disabled` keeps them even on OpenShift.
    let docs = documents(&rendered(
        plane,
        "ns",
        &[
            "--api-versions",
            "security.openshift.io/v1",
            "--set",
            "global.compatibility.openshift.adaptSecurityContext=disabled",
        ],
    ));
    assert_eq!(fixed_ids(&docs).len(), 4);

    // Without the fixed ids the pod is still admitted under Pod Security
    // `restricted` (the image's numeric user satisfies runAsNonRoot).
    let namespace = plane
        .create_namespace("restricted-noids")
        .await
        .expect("namespace");
    let label = plane
        .kubectl()
        .args([
            "label",
            "namespace",
            &namespace,
            "pod-security.kubernetes.io/enforce=restricted",
        ])
        .output()
        .expect("kubectl runs");
    assert!(label.status.success(), "{}", text(&label));
    let docs = documents(&rendered(
        plane,
        &namespace,
        &[
            "--set",
            "global.compatibility.openshift.adaptSecurityContext=force",
        ],
    ));
    let template = &object(&docs, "Deployment", None)["spec"]["template"];
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "keyrotor-no-ids", "namespace": namespace},
        "spec": template["spec"],
    });
    let admitted = create_pod(plane, &pod);
    assert!(admitted.status.success(), "{}", text(&admitted));
}

#[tokio::test]
async fn rbac_create_false_renders_no_rbac_object() {
    let plane = keyrotor_testenv::shared().await;
    for extra in [
        vec![],
        vec!["--set", "watchNamespaces={a,b}"],
        vec![
            "--set",
            "metrics.readers[0].kind=Group",
            "--set",
            "metrics.readers[0].name=g",
        ],
    ] {
        let with = kinds(&rendered(plane, "ns", &extra));
        assert!(
            with.iter().any(|k| k.ends_with("Role")),
            "{extra:?}: {with:?}"
        );
        let mut args = extra.clone();
        args.extend(["--set", "rbac.create=false"]);
        let without = kinds(&rendered(plane, "ns", &args));
        let rbac: Vec<&String> = without
            .iter()
            .filter(|k| {
                ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"].contains(&k.as_str())
            })
            .collect();
        assert!(rbac.is_empty(), "{extra:?}: {rbac:?}");
        assert!(without.iter().any(|k| k == "Deployment"));
    }
}

#[tokio::test]
async fn monitoring_render_modes_skip_fail_or_render() {
    let plane = keyrotor_testenv::shared().await;
    for (value, kind) in [
        ("serviceMonitor", "ServiceMonitor"),
        ("prometheusRule", "PrometheusRule"),
    ] {
        let enabled = format!("{value}.enabled=true");
        let mode = |m: &str| format!("{value}.renderMode={m}");
        let has = |manifest: &str| kinds(manifest).iter().any(|k| k == kind);

        // skipIfMissing (the default): nothing without the API, rendered with it.
        assert!(
            !has(&rendered(plane, "ns", &["--set", &enabled])),
            "{value}"
        );
        assert!(has(&rendered(
            plane,
            "ns",
            &[
                "--set",
                &enabled,
                "--api-versions",
                "monitoring.coreos.com/v1"
            ]
        )));

        // failIfMissing: the install fails and says why.
        let failed = render(
            plane,
            "ns",
            &["--set", &enabled, "--set", &mode("failIfMissing")],
        );
        assert!(!failed.status.success(), "{value}: failIfMissing rendered");
        let message = text(&failed);
        assert!(
            message.contains(&format!("{value}.enabled is true"))
                && message.contains("monitoring.coreos.com/v1"),
            "{message}"
        );
        assert!(has(&rendered(
            plane,
            "ns",
            &[
                "--set",
                &enabled,
                "--set",
                &mode("failIfMissing"),
                "--api-versions",
                "monitoring.coreos.com/v1"
            ]
        )));

        // alwaysRender: rendered without the API.
        assert!(has(&rendered(
            plane,
            "ns",
            &["--set", &enabled, "--set", &mode("alwaysRender")]
        )));
        // Not enabled: never, whatever the mode.
        assert!(!has(&rendered(
            plane,
            "ns",
            &["--set", &mode("alwaysRender")]
        )));
        // `force` is gone (v1alpha1): the schema names it.
        let old = render(plane, "ns", &["--set", &format!("{value}.force=true")]);
        assert!(!old.status.success(), "{value}.force accepted");
    }
    // honorLabels defaults to true, so the policies' `namespace` label survives.
    let docs = documents(&rendered(
        plane,
        "ns",
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "serviceMonitor.renderMode=alwaysRender",
        ],
    ));
    assert_eq!(
        object(&docs, "ServiceMonitor", None)["spec"]["endpoints"][0]["honorLabels"],
        true
    );
}

#[tokio::test]
async fn the_helm_test_pod_probes_readyz_and_metrics_through_the_service() {
    let plane = keyrotor_testenv::shared().await;
    let docs = documents(&rendered(plane, "ns", &[]));
    let pod = object(&docs, "Pod", Some("kr-keyrotor-test"));
    assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    assert_eq!(pod["spec"]["serviceAccountName"], "kr-keyrotor-test");
    assert_eq!(pod["spec"]["enableServiceLinks"], true);
    assert_ne!(
        pod["metadata"]["labels"]["app.kubernetes.io/name"], "keyrotor",
        "the operator's ReplicaSet would adopt a pod with its selector labels"
    );
    let container = &pod["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        format!("ghcr.io/keyrotor/keyrotor:{}", env!("CARGO_PKG_VERSION")),
        "the operator's own image by default"
    );
    assert_eq!(
        container["args"],
        serde_json::json!([
            "probe",
            "--insecure-skip-tls-verify",
            "--bearer-token-file=/var/run/secrets/kubernetes.io/serviceaccount/token",
            // The kubelet expands the Service's variables (no DNS needed).
            "https://$(KR_KEYROTOR_METRICS_SERVICE_HOST):$(KR_KEYROTOR_METRICS_SERVICE_PORT)/readyz",
            "https://$(KR_KEYROTOR_METRICS_SERVICE_HOST):$(KR_KEYROTOR_METRICS_SERVICE_PORT)/metrics",
        ])
    );
    let binding = object(&docs, "ClusterRoleBinding", Some("kr-keyrotor-test"));
    assert_eq!(binding["roleRef"]["name"], "kr-keyrotor-metrics-reader");
    assert_eq!(binding["subjects"][0]["name"], "kr-keyrotor-test");

    // Open, plain metrics: no ServiceAccount, no token, http.
    let docs = documents(&rendered(
        plane,
        "ns",
        &[
            "--set",
            "metrics.auth=none",
            "--set",
            "metrics.tls.enabled=false",
        ],
    ));
    let pod = object(&docs, "Pod", Some("kr-keyrotor-test"));
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    assert_eq!(
        pod["spec"]["containers"][0]["args"],
        serde_json::json!([
            "probe",
            "http://$(KR_KEYROTOR_METRICS_SERVICE_HOST):$(KR_KEYROTOR_METRICS_SERVICE_PORT)/readyz",
            "http://$(KR_KEYROTOR_METRICS_SERVICE_HOST):$(KR_KEYROTOR_METRICS_SERVICE_PORT)/metrics",
        ])
    );
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "ServiceAccount" && d["metadata"]["name"] == "kr-keyrotor-test")
    );
}

/// `keyrotor probe`, as the helm test pod runs it, against a real operator
/// serving metrics as the chart does (TLS, TokenReview + SubjectAccessReview),
/// with the token of the chart's test ServiceAccount and its binding applied
/// on the real API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyrotor_probe_passes_with_the_test_service_account_and_fails_without_rights() {
    let mut s = support::Scenario::new("chartprobe").await;
    let release_ns = s.other_namespace("chartprobe-release").await;
    let fullname = format!("fullnameOverride=kp-{release_ns}");
    let applied = support::apply_chart_rbac_objects(s.plane, &release_ns, &["--set", &fullname]);
    let test_sa = format!("kp-{release_ns}-test");
    assert!(applied.contains(&test_sa), "{applied}");
    s.apply_token_secret().await;
    s.start_operator_with(
        &["--metrics-auth", "kubernetes", "--metrics-tls", "true"],
        &[],
    );
    let url = s.operator.as_ref().expect("operator").probe_url().await;
    assert!(url.starts_with("https://"), "{url}");

    let token_file = |name: &str, token: String| {
        let path = s.plane.dir().join(format!("{release_ns}-{name}.token"));
        std::fs::write(&path, token).expect("token file");
        path
    };
    let test_token = token_file(
        "test",
        s.plane
            .service_account_token(&release_ns, &test_sa, std::time::Duration::from_secs(600))
            .await
            .expect("token"),
    );
    let stranger_token = token_file(
        "stranger",
        s.plane
            .service_account_token(&release_ns, "stranger", std::time::Duration::from_secs(600))
            .await
            .expect("token"),
    );
    let probe = |token: &Path| {
        Command::new(env!("CARGO_BIN_EXE_keyrotor"))
            .args(["probe", "--insecure-skip-tls-verify", "--bearer-token-file"])
            .arg(token)
            .arg(format!("{url}/readyz"))
            .arg(format!("{url}/metrics"))
            .output()
            .expect("keyrotor probe runs")
    };
    // /readyz turns ready once the caches have synced.
    let deadline = std::time::Instant::now() + support::WAIT;
    let passed = loop {
        let output = probe(&test_token);
        if output.status.success() || std::time::Instant::now() > deadline {
            break output;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(passed.status.success(), "{}", text(&passed));
    let out = text(&passed);
    assert!(
        out.contains("/readyz: HTTP 200") && out.contains("/metrics: HTTP 200"),
        "{out}"
    );

    let refused = probe(&stranger_token);
    assert!(
        !refused.status.success(),
        "a token without get /metrics passed"
    );
    assert!(
        text(&refused).contains("/metrics: HTTP 403"),
        "{}",
        text(&refused)
    );
}

#[test]
fn chart_yaml_carries_artifact_hub_metadata_that_follows_the_version() {
    let chart: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(chart().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("yaml");
    let annotations = &chart["annotations"];
    assert_eq!(annotations["artifacthub.io/license"], "Apache-2.0");
    assert_eq!(annotations["artifacthub.io/prerelease"], "true", "v1alpha1");
    for key in ["sources", "maintainers"] {
        assert!(
            chart[key].as_array().is_some_and(|a| !a.is_empty()),
            "Chart.yaml {key}"
        );
    }
    assert!(
        chart["icon"]
            .as_str()
            .is_some_and(|i| i.starts_with("https://"))
    );
    let icon = chart["icon"].as_str().unwrap_or_default();
    let local = icon.rsplit("/main/").next().unwrap_or_default();
    assert!(
        root().join(local).exists(),
        "the icon {local} is in the repository"
    );
    let images: serde_json::Value = serde_norway::from_str(
        annotations["artifacthub.io/images"]
            .as_str()
            .expect("images"),
    )
    .expect("images yaml");
    let app_version = chart["appVersion"].as_str().expect("appVersion");
    assert_eq!(
        images[0]["image"],
        format!("ghcr.io/keyrotor/keyrotor:{app_version}"),
        "artifacthub.io/images must name the appVersion's image"
    );
    for key in [
        "artifacthub.io/crds",
        "artifacthub.io/links",
        "artifacthub.io/crdsExamples",
    ] {
        let value: serde_json::Value =
            serde_norway::from_str(annotations[key].as_str().expect(key)).expect(key);
        assert!(value.as_array().is_some_and(|a| !a.is_empty()), "{key}");
    }
}

/// Every value in values.yaml has a schema entry with a description and
/// every schema entry is a value (helm-docs writes the README from the
/// values' `# --` comments; `hack/gen-manifests.sh --check` keeps it current).
#[test]
fn values_schema_and_readme_describe_every_value() {
    let values: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(chart().join("values.yaml")).expect("values.yaml"),
    )
    .expect("yaml");
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(chart().join("values.schema.json")).expect("schema"),
    )
    .expect("json");
    let definitions = &schema["definitions"];
    // A schema node with its $ref followed (descriptions may sit on either).
    let resolve = |node: &serde_json::Value| -> serde_json::Value {
        match node["$ref"].as_str() {
            Some(r) => {
                let mut merged = definitions[r.trim_start_matches("#/definitions/")].clone();
                if let (Some(m), Some(n)) = (merged.as_object_mut(), node.as_object()) {
                    for (k, v) in n {
                        m.insert(k.clone(), v.clone());
                    }
                }
                merged
            }
            None => node.clone(),
        }
    };
    let mut problems = Vec::new();
    fn walk(
        path: &str,
        value: &serde_json::Value,
        node: &serde_json::Value,
        resolve: &dyn Fn(&serde_json::Value) -> serde_json::Value,
        problems: &mut Vec<String>,
    ) {
        let Some(properties) = node["properties"].as_object() else {
            return; // A free-form object (podSecurityContext, tlsConfig...).
        };
        let keys = value.as_object().cloned().unwrap_or_default();
        for key in keys.keys() {
            if !properties.contains_key(key) {
                problems.push(format!("{path}{key}: in values.yaml, not in the schema"));
            }
        }
        for (key, child) in properties {
            let child = resolve(child);
            let child_path = format!("{path}{key}");
            if !keys.contains_key(key) {
                problems.push(format!("{child_path}: in the schema, not in values.yaml"));
                continue;
            }
            if child["description"].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{child_path}: no description in the schema"));
            }
            walk(
                &format!("{child_path}."),
                &keys[key],
                &child,
                resolve,
                problems,
            );
        }
    }
    walk("", &values, &schema, &resolve, &mut problems);
    let readme = std::fs::read_to_string(chart().join("README.md")).expect("chart README");
    for row in readme
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Key"))
    {
        if row.trim_end().ends_with("|  |") || row.trim_end().ends_with("| |") {
            problems.push(format!("README row without a description: {row}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What docs/install.md ("A corporate CA") tells users: with the chart's
/// `volumes`/`volumeMounts` and `SSL_CERT_FILE` (the image's bundle) plus
/// `SSL_CERT_DIR` (the mounted CA), the Cloudflare client and `keyrotor probe`
/// trust a server whose certificate a private CA signed; without them they
/// refuse it. The server is the operator's own metrics endpoint on loopback,
/// serving a certificate of a CA made here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_ca_in_ssl_cert_dir_is_trusted_next_to_the_system_store() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

    let mut s = support::Scenario::new("chartca").await;
    let dir = s.plane.dir().join(format!("{}-ca", s.namespace));
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir).expect("ca dir");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "keyrotor test corporate CA");
    let ca_key = KeyPair::generate().expect("key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf");
    let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_file, leaf.pem()).expect("cert");
    std::fs::write(&key_file, leaf_key.serialize_pem()).expect("key");
    // As a ConfigMap mount looks: the file, plus Kubernetes' `..data` links.
    std::fs::write(ca_dir.join("ca.crt"), ca_cert.pem()).expect("ca.crt");

    s.start_operator_with(
        &[
            "--metrics-tls",
            "true",
            "--metrics-tls-cert-file",
            &cert_file.to_string_lossy(),
            "--metrics-tls-key-file",
            &key_file.to_string_lossy(),
        ],
        &[],
    );
    let url = s.operator.as_ref().expect("operator").probe_url().await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let run = |args: &[String], with_ca: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyrotor"));
        command
            .args(args)
            .env("CLOUDFLARE_API_TOKEN", "not-a-real-token");
        for var in [
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
        ] {
            command.env_remove(var);
        }
        if with_ca {
            command
                .env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
                .env("SSL_CERT_DIR", &ca_dir);
        }
        command.output().expect("keyrotor runs")
    };
    let probe = vec!["probe".to_owned(), format!("{url}/readyz")];
    // /readyz may need a moment; the TLS verdict does not.
    let deadline = std::time::Instant::now() + support::WAIT;
    let trusted = loop {
        let output = run(&probe, true);
        if output.status.success() || std::time::Instant::now() > deadline {
            break output;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(trusted.status.success(), "with the CA: {}", text(&trusted));
    let refused = run(&probe, false);
    assert!(!refused.status.success(), "trusted without the CA");
    let refusal = format!("{:?}", text(&refused));
    assert!(
        refusal.contains("certificate") || refusal.contains("UnknownIssuer"),
        "without the CA: {refusal}"
    );

    // The Cloudflare client (`keyrotor account get`, built as the operator
    // builds it): with the CA the TLS handshake passes and the failure is the
    // endpoint's HTTP answer; without it, the certificate is refused.
    let account = vec![
        "account".to_owned(),
        "get".to_owned(),
        "--account-id".to_owned(),
        support::ACCOUNT.to_owned(),
        "--api-url".to_owned(),
        format!("{url}/client/v4"),
    ];
    let with_ca = text(&run(&account, true));
    let without_ca = text(&run(&account, false));
    assert!(with_ca.contains("(HTTP 404)"), "with the CA: {with_ca}");
    // A refused certificate says so, at once (retrying cannot help), and
    // says where the CA goes.
    assert!(
        without_ca.contains("could not reach Cloudflare (Tls) after 1 attempt(s)")
            && without_ca.contains("UnknownIssuer")
            && without_ca.contains("SSL_CERT_DIR"),
        "without the CA: {without_ca}"
    );
}
