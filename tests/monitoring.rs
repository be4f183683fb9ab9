//! Monitoring, for real: `promtool test rules` runs the chart's alert rules
//! against tests/fixtures/monitoring/rules-test.yaml; a Prometheus server
//! scrapes a live operator with the chart's ServiceMonitor settings and
//! evaluates the chart's rules while policies break, pause and the operator
//! stops; the chart's Grafana dashboard queries only metrics the operator
//! exports. promtool and prometheus come from Debian's `prometheus` package
//! (hack/test.sh installs it); without them these tests fail, they never skip.

mod support;

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use keyrotor::{
    cloudflare::{Operation, RequestObserver},
    crd::ReadyReason,
    metrics::Metrics,
};
use serde_json::{Value, json};
use support::{
    ACCOUNT, OTHER_ACCOUNT, ROTATE, Scenario, get_with_token, has_handled, render_chart,
};

/// The release namespace the chart is rendered for (its Service, hence the
/// `job` of the operator's series, is `kr-keyrotor-metrics`).
const RELEASE_NS: &str = "keyrotor-system";
const JOB: &str = "kr-keyrotor-metrics";

/// A program of Debian's `prometheus` package; fails the test when missing.
fn prometheus_tool(name: &str) -> Command {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{name} is not installed: `apt-get install prometheus` (hack/test.sh does)"
    );
    Command::new(name)
}

/// A scratch directory removed on drop (every exit path, panics included).
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "keyrotor-{label}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The documents of a rendered manifest of one kind, as JSON.
fn rendered_kind(manifest: &str, kind: &str) -> Vec<Value> {
    manifest
        .split("\n---")
        .filter(|doc| doc.contains(&format!("\nkind: {kind}\n")))
        .map(|doc| serde_norway::from_str::<Value>(doc).expect("rendered YAML"))
        .collect()
}

/// The chart's alert rules (the PrometheusRule's `spec`, i.e. `groups:`) as
/// a Prometheus rule file, rendered with `extra` values.
fn rendered_rules(plane: &keyrotor_testenv::ControlPlane, extra: &[&str]) -> String {
    let mut args = vec![
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.renderMode=alwaysRender",
    ];
    args.extend_from_slice(extra);
    let manifest = render_chart(plane, RELEASE_NS, &args);
    let rules = rendered_kind(&manifest, "PrometheusRule");
    assert_eq!(rules.len(), 1, "{manifest}");
    serde_norway::to_string(&rules[0]["spec"]).expect("rules YAML")
}

/// Every alert in a rule file: (name, its runbook_url).
fn alerts_of(rules: &str) -> Vec<(String, String)> {
    let rules: Value = serde_norway::from_str(rules).expect("rules");
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .filter_map(|r| {
            let alert = r["alert"].as_str()?.to_owned();
            let url = r["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Some((alert, url))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_proves_every_alert_fires_when_it_should_and_only_then() {
    let plane = keyrotor_testenv::shared().await;
    let rules = rendered_rules(
        plane,
        &[
            "--set",
            "prometheusRule.runbookBaseUrl=https://runbooks.test/troubleshooting.md",
        ],
    );
    let dir = ScratchDir::new("promtool");
    std::fs::write(dir.0.join("rules.yaml"), &rules).expect("rules file");
    let cases =
        keyrotor_testenv::workspace_root().join("tests/fixtures/monitoring/rules-test.yaml");
    let cases_text = std::fs::read_to_string(&cases).expect("rule tests");
    std::fs::write(dir.0.join("rules-test.yaml"), &cases_text).expect("copy");

    let check = prometheus_tool("promtool")
        .args(["check", "rules", "rules.yaml"])
        .current_dir(&dir.0)
        .output()
        .expect("promtool runs");
    assert!(
        check.status.success(),
        "{}{}\n{rules}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = prometheus_tool("promtool")
        .args(["test", "rules", "rules-test.yaml"])
        .current_dir(&dir.0)
        .output()
        .expect("promtool runs");
    assert!(
        test.status.success(),
        "{}{}\n{rules}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );

    // Every alert waits before it fires, and the cases cover every alert.
    let parsed: Value = serde_norway::from_str(&rules).expect("rules");
    for rule in parsed["groups"][0]["rules"].as_array().expect("rules") {
        let name = rule["alert"].as_str().expect("alert name");
        assert!(rule["for"].as_str().is_some(), "{name} has no for:");
        assert!(
            cases_text.contains(&format!("alertname: {name}\n")),
            "no promtool case for {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_runbook_url_names_a_section_of_the_troubleshooting_page() {
    let plane = keyrotor_testenv::shared().await;
    let rules = rendered_rules(plane, &[]);
    let page =
        std::fs::read_to_string(keyrotor_testenv::workspace_root().join("docs/troubleshooting.md"))
            .expect("troubleshooting page");
    // GitHub's anchors of the page's headings: lower-cased, punctuation
    // dropped, spaces as dashes (`### No window fits` is `#no-window-fits`).
    let anchors: BTreeSet<String> = page
        .lines()
        .filter_map(|l| {
            l.trim_start_matches('#')
                .strip_prefix(' ')
                .filter(|_| l.starts_with('#'))
        })
        .map(|h| {
            h.trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    let alerts = alerts_of(&rules);
    assert!(alerts.len() >= 6, "{rules}");
    let version = env!("CARGO_PKG_VERSION");
    for (alert, url) in alerts {
        let (base, anchor) = url.split_once('#').expect("an anchor");
        assert_eq!(
            base,
            format!("https://github.com/keyrotor/keyrotor/blob/v{version}/docs/troubleshooting.md"),
            "{alert}"
        );
        assert!(
            anchors.contains(anchor),
            "{alert}: docs/troubleshooting.md has no section #{anchor}"
        );
        // An alert with a section of its own under Alerts links to that one.
        if anchors.contains(&alert.to_lowercase()) {
            assert_eq!(anchor, alert.to_lowercase(), "{alert}");
        }
    }
}

// ---- The Grafana dashboard ----

fn dashboard() -> Value {
    let path =
        keyrotor_testenv::workspace_root().join("charts/keyrotor/files/grafana-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard file"))
        .expect("the dashboard is JSON")
}

/// Every query of the dashboard (panel targets and variable queries).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            queries.push((title, expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(query) = variable["query"]["query"].as_str() {
            let name = variable["name"].as_str().unwrap_or_default();
            queries.push((format!("${name}"), query.to_owned()));
        }
    }
    queries
}

/// The metric names a PromQL expression reads: identifiers starting with
/// `keyrotor_` or `process_` (the only families the operator exports).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'))
            && (expr[i..].starts_with("keyrotor_") || expr[i..].starts_with("process_"));
        if starts {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |n| i + n);
            names.push(expr[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// The sample names a text exposition declares (`# TYPE` lines), with the
/// suffixes of counters and histograms.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (Some(name), Some(kind)) = (fields.next(), fields.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{}_total", name.trim_end_matches("_total")));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// Fails unless every query of the dashboard reads only names in `exported`.
fn assert_dashboard_reads_only(exported: &BTreeSet<String>, source: &str) {
    for (panel, expr) in dashboard_queries(&dashboard()) {
        let names = metric_names(&expr);
        assert!(
            !names.is_empty(),
            "{panel}: {expr} reads no keyrotor metric"
        );
        for name in names {
            assert!(
                exported.contains(&name),
                "{panel}: {expr} reads {name}, which {source} does not export: {exported:?}"
            );
        }
    }
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_on_a_prometheus_data_source() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "keyrotor");
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    let schema = dashboard["schemaVersion"].as_u64().expect("schemaVersion");
    assert!(
        schema >= 36,
        "schemaVersion {schema}: datasource refs need 36+"
    );
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let datasource = variables
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data source variable");
    assert_eq!(datasource["query"], "prometheus");
    let data_source_ref = json!({"type": "prometheus", "uid": format!("${{{}}}", datasource["name"].as_str().expect("name"))});
    let mut ids = BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("id")),
            "{title}: id reused"
        );
        let grid = &panel["gridPos"];
        for key in ["x", "y", "w", "h"] {
            assert!(grid[key].as_u64().is_some(), "{title}: gridPos.{key}");
        }
        assert!(
            grid["x"].as_u64().unwrap_or(0) + grid["w"].as_u64().unwrap_or(0) <= 24,
            "{title}: wider than the 24-column grid"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            ["stat", "table", "timeseries"].contains(&panel["type"].as_str().unwrap_or_default()),
            "{title}: a core panel type"
        );
        assert_eq!(panel["datasource"], data_source_ref, "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for target in targets {
            assert_eq!(target["datasource"], data_source_ref, "{title}");
            assert!(
                refs.insert(target["refId"].as_str().expect("refId").to_owned()),
                "{title}: refId reused"
            );
            let expr = target["expr"].as_str().expect("expr");
            assert!(
                expr.contains("job=\"$job\""),
                "{title}: {expr} ignores $job"
            );
        }
    }
    assert!(panels.len() >= 10);
}

#[test]
fn every_dashboard_query_reads_a_metric_the_operator_exports() {
    // Labelled families appear once they have a child: one of each.
    let metrics = Metrics::new();
    metrics.set_leader(true);
    metrics.reconciled(true, "Reconciled", Duration::from_millis(5));
    metrics.rotation("annotation", "Rotated");
    metrics.request(Operation::Get, Some(200), Duration::from_millis(5));
    let exported = exported_names(&metrics.render().expect("renders"));
    assert!(
        exported.contains("keyrotor_policy_condition"),
        "{exported:?}"
    );
    assert_dashboard_reads_only(&exported, "the metrics registry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_ships_the_dashboard_in_a_configmap_for_the_grafana_sidecar() {
    let plane = keyrotor_testenv::shared().await;
    let manifest = render_chart(plane, RELEASE_NS, &[]);
    assert!(
        rendered_kind(&manifest, "ConfigMap").is_empty(),
        "off by default"
    );
    let manifest = render_chart(
        plane,
        RELEASE_NS,
        &[
            "--set",
            "grafanaDashboard.enabled=true",
            "--set",
            "grafanaDashboard.namespace=monitoring",
            "--set",
            "grafanaDashboard.annotations.grafana_folder=Operators",
        ],
    );
    let maps = rendered_kind(&manifest, "ConfigMap");
    assert_eq!(maps.len(), 1, "{manifest}");
    let map = &maps[0];
    assert_eq!(map["metadata"]["namespace"], "monitoring");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        map["metadata"]["annotations"]["grafana_folder"],
        "Operators"
    );
    let shipped: Value =
        serde_json::from_str(map["data"]["keyrotor.json"].as_str().expect("data")).expect("JSON");
    assert_eq!(shipped, dashboard());

    // Another sidecar label replaces the default one.
    let manifest = render_chart(
        plane,
        RELEASE_NS,
        &[
            "--set",
            "grafanaDashboard.enabled=true",
            "--set-json",
            r#"grafanaDashboard.labels={"grafana_dashboard":null,"team-dashboards":"keyrotor"}"#,
        ],
    );
    let map = &rendered_kind(&manifest, "ConfigMap")[0];
    assert_eq!(map["metadata"]["namespace"], RELEASE_NS);
    assert_eq!(map["metadata"]["labels"]["team-dashboards"], "keyrotor");
    assert!(map["metadata"]["labels"].get("grafana_dashboard").is_none());
}

// ---- A live Prometheus ----

/// A Prometheus server on loopback; killed and its data removed when dropped.
struct PrometheusServer {
    child: Child,
    url: String,
    _dir: ScratchDir,
}

impl PrometheusServer {
    fn start(config: &str, rules: &str) -> Self {
        let dir = ScratchDir::new("prometheus");
        std::fs::write(dir.0.join("prometheus.yml"), config).expect("config");
        std::fs::write(dir.0.join("rules.yaml"), rules).expect("rules");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("address")
            .port();
        let log = std::fs::File::create(dir.0.join("prometheus.log")).expect("log");
        let child = prometheus_tool("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.0.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.0.join("prometheus.log")).unwrap_or_default()
    }

    async fn api(&self, path: &str) -> Option<Value> {
        let (status, body) = get_with_token(&format!("{}{path}", self.url), None)
            .await
            .ok()?;
        (status == 200).then(|| serde_json::from_str::<Value>(&body).ok())?
    }

    /// The alerts (pending and firing) Prometheus holds now.
    async fn alerts(&self) -> Vec<Value> {
        self.api("/api/v1/alerts")
            .await
            .and_then(|v| v["data"]["alerts"].as_array().cloned())
            .unwrap_or_default()
    }

    /// An instant query's result vector.
    async fn query(&self, promql: &str) -> Vec<Value> {
        let query: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        self.api(&format!("/api/v1/query?query={query}"))
            .await
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Waits until `check` holds for the alerts; fails with what there was.
    async fn wait_alerts(&self, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let alerts = self.alerts().await;
            if check(&alerts) {
                return alerts;
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {what}; alerts: {alerts:#?}\nprometheus log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Alerts named `name` in `state`, as (namespace, name) of their labels.
fn alerts_named(alerts: &[Value], alert: &str, state: &str) -> BTreeSet<(String, String)> {
    alerts
        .iter()
        .filter(|a| a["labels"]["alertname"] == alert && a["state"] == state)
        .map(|a| {
            let label = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_owned();
            (label("namespace"), label("name"))
        })
        .collect()
}

/// A Prometheus scrape job equivalent to what Prometheus Operator makes of the
/// chart's rendered ServiceMonitor endpoint, aimed at `target` (a loopback
/// host:port) with the target labels the Operator adds.
fn scrape_job_from_service_monitor(monitor: &Value, target: &str) -> Value {
    let endpoints = monitor["spec"]["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 1, "{monitor}");
    let endpoint = &endpoints[0];
    assert!(
        endpoint.get("bearerTokenFile").is_none() && endpoint.get("tlsConfig").is_none(),
        "rendered for plain loopback scraping: {endpoint}"
    );
    json!({
        "job_name": JOB,
        "honor_labels": endpoint["honorLabels"].as_bool().unwrap_or(false),
        "scrape_interval": endpoint["interval"].as_str().expect("interval"),
        "metrics_path": endpoint["path"].as_str().unwrap_or("/metrics"),
        "scheme": endpoint["scheme"].as_str().unwrap_or("http"),
        "static_configs": [{
            "targets": [target],
            "labels": {
                "namespace": RELEASE_NS,
                "service": JOB,
                "endpoint": endpoint["port"].as_str().expect("port"),
                "pod": "kr-keyrotor-0",
            }
        }],
        "relabel_configs": relabel_configs(endpoint.get("relabelings")),
        "metric_relabel_configs": relabel_configs(endpoint.get("metricRelabelings")),
    })
}

/// A ServiceMonitor's `relabelings` as Prometheus' `relabel_configs`: the
/// same rules, the Operator's camelCase keys in Prometheus' snake_case.
fn relabel_configs(relabelings: Option<&Value>) -> Value {
    let rules = relabelings
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    rules
        .iter()
        .map(|rule| {
            let fields = rule.as_object().expect("a relabeling is a map");
            fields
                .iter()
                .map(|(key, value)| {
                    let snake: String = key
                        .chars()
                        .flat_map(|c| {
                            let lower = c.to_ascii_lowercase();
                            if c.is_ascii_uppercase() {
                                vec!['_', lower]
                            } else {
                                vec![lower]
                            }
                        })
                        .collect();
                    let value = match (snake.as_str(), value.as_str()) {
                        ("action", Some(action)) => json!(action.to_lowercase()),
                        _ => value.clone(),
                    };
                    (snake, value)
                })
                .collect::<serde_json::Map<String, Value>>()
                .into()
        })
        .collect::<Vec<Value>>()
        .into()
}

#[test]
fn service_monitor_relabelings_become_prometheus_relabel_configs() {
    let rules = json!([{"sourceLabels": ["__meta_x"], "targetLabel": "pod", "action": "Replace"}]);
    assert_eq!(
        relabel_configs(Some(&rules)),
        json!([{"source_labels": ["__meta_x"], "target_label": "pod", "action": "replace"}])
    );
    assert_eq!(relabel_configs(None), json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_with_the_charts_settings_alerts_on_the_broken_policy_only_then_on_the_missing_operator()
 {
    let mut s = Scenario::new("monitoring").await;
    s.apply_token_secret().await;
    s.start_operator();
    s.create_policy("healthy", json!({})).await;
    s.create_policy(
        "broken",
        json!({"accountId": OTHER_ACCOUNT, "credentialsRef": {"name": "no-such-secret"}}),
    )
    .await;
    s.create_policy(
        "paused",
        json!({"accountId": "00000000000000000000000000000000", "suspend": true}),
    )
    .await;
    assert_ne!(ACCOUNT, OTHER_ACCOUNT);
    s.wait_ready_reason("healthy", ReadyReason::Reconciled.as_str())
        .await;
    s.wait_ready_reason("broken", ReadyReason::SecretNotFound.as_str())
        .await;
    s.wait_ready_reason("paused", ReadyReason::Suspended.as_str())
        .await;
    // A handled rotate request, so that the live scrape has every family.
    s.annotate("healthy", json!({ROTATE: "r1"})).await;
    s.wait_for("healthy", "r1 handled", |p| has_handled(p, "r1"))
        .await;

    // The chart's scrape settings and rules, with short waits so the test is quick.
    let monitor_manifest = render_chart(
        s.plane,
        RELEASE_NS,
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "serviceMonitor.renderMode=alwaysRender",
            "--set",
            "serviceMonitor.interval=1s",
            "--set",
            "metrics.tls.enabled=false",
            "--set",
            "metrics.auth=none",
        ],
    );
    let monitors = rendered_kind(&monitor_manifest, "ServiceMonitor");
    assert_eq!(monitors.len(), 1, "{monitor_manifest}");
    let url = s.operator.as_ref().expect("operator").probe_url().await;
    let target = url.trim_start_matches("http://").to_owned();
    let job = scrape_job_from_service_monitor(&monitors[0], &target);
    let config = json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [job],
    });
    let short = [
        "notReadyFor",
        "rotationOverdueFor",
        "operatorAbsentFor",
        "noLeaderFor",
        "reconcileErrorsFor",
        "rateLimitedFor",
        "noWindowFitsFor",
    ]
    .map(|key| format!("prometheusRule.{key}=3s"));
    let mut values: Vec<&str> = Vec::new();
    for setting in &short {
        values.extend(["--set", setting]);
    }
    values.extend(["--set", "prometheusRule.rateWindow=1m"]);
    let rules = rendered_rules(s.plane, &values);
    let prometheus =
        PrometheusServer::start(&serde_norway::to_string(&config).expect("config"), &rules);

    // The broken policy fires, under its own namespace (honorLabels), once.
    let ns = s.namespace.clone();
    let alerts = prometheus
        .wait_alerts("KeyrotorPolicyNotReady firing for broken", |alerts| {
            !alerts_named(alerts, "KeyrotorPolicyNotReady", "firing").is_empty()
        })
        .await;
    assert_eq!(
        alerts_named(&alerts, "KeyrotorPolicyNotReady", "firing"),
        BTreeSet::from([(ns.clone(), "broken".to_owned())]),
        "{alerts:#?}"
    );
    // Give the suspended and healthy policies time to fire if they were going to.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let alerts = prometheus.alerts().await;
    let not_ready: BTreeSet<_> = alerts
        .iter()
        .filter(|a| a["labels"]["alertname"] == "KeyrotorPolicyNotReady")
        .map(|a| a["labels"]["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        not_ready,
        BTreeSet::from(["broken".to_owned()]),
        "{alerts:#?}"
    );
    let others: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["labels"]["alertname"] != "KeyrotorPolicyNotReady")
        .collect();
    assert!(
        others.is_empty(),
        "only the broken policy alerts: {others:#?}"
    );
    let broken = alerts
        .iter()
        .find(|a| a["labels"]["name"] == "broken")
        .expect("broken");
    let description = broken["annotations"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        description.contains("(reason now: SecretNotFound)"),
        "{description}"
    );
    assert!(
        broken["annotations"]["runbook_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/docs/troubleshooting.md#keyrotorpolicynotready")),
        "{broken:#}"
    );
    // The state-set names the reason, and the scrape carries the process metrics.
    let paused = prometheus
        .query(&format!(
            "keyrotor_policy_condition{{job=\"{JOB}\",name=\"paused\",type=\"Ready\"}}"
        ))
        .await;
    assert_eq!(paused.len(), 1, "{paused:#?}");
    assert_eq!(
        paused[0]["metric"]["reason"],
        ReadyReason::Suspended.as_str()
    );
    assert_eq!(paused[0]["metric"]["namespace"], ns.as_str());
    for metric in [
        "keyrotor_build_info",
        "keyrotor_workqueue_depth",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        let found = prometheus
            .query(&format!(
                "{metric}{{job=\"{JOB}\",namespace=\"{RELEASE_NS}\"}}"
            ))
            .await;
        assert_eq!(found.len(), 1, "{metric}: {found:#?}");
    }
    // What the live operator exports covers every query of the dashboard.
    let scrape = s.operator.as_ref().expect("operator").scrape().await;
    assert_dashboard_reads_only(&exported_names(&scrape), "the live operator");

    // The operator goes: its per-policy series go with it, and only the
    // operator-absent alert is left to say so.
    s.operator.as_mut().expect("operator").kill();
    let alerts = prometheus
        .wait_alerts("KeyrotorOperatorAbsent firing", |alerts| {
            alerts.iter().any(|a| {
                a["labels"]["alertname"] == "KeyrotorOperatorAbsent" && a["state"] == "firing"
            })
        })
        .await;
    let absent = alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "KeyrotorOperatorAbsent")
        .expect("absent");
    assert_eq!(absent["labels"]["namespace"], RELEASE_NS);
    assert_eq!(absent["labels"]["job"], JOB);
    assert_eq!(absent["labels"]["severity"], "critical");
}

/// The value of the sample `name` (with its labels, exactly) in a scrape.
fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_exports_per_policy_series_and_the_standby_takes_them_over() {
    let s = Scenario::new("mon-leader").await;
    let ns = s.namespace.clone();
    let spawn = |identity: &'static str| {
        let flags = [
            "--leader-election",
            "true",
            "--leader-election-namespace",
            ns.as_str(),
            "--leader-election-lease-name",
            "keyrotor-monitoring",
            "--leader-election-lease-duration",
            "4s",
            "--leader-election-renew-deadline",
            "3s",
            "--leader-election-retry-period",
            "500ms",
            "--identity",
            identity,
        ];
        s.spawn_operator(identity, &flags, &[])
    };
    let mut a = spawn("a");
    a.wait_for_log("became the leader").await;
    let b = spawn("b");
    b.wait_for_log("caches synced").await;
    s.create_policy("p", json!({"credentialsRef": {"name": "no-such-secret"}}))
        .await;
    s.wait_ready_reason("p", ReadyReason::SecretNotFound.as_str())
        .await;
    let series = format!(
        "keyrotor_policy_condition{{namespace=\"{ns}\",name=\"p\",type=\"Ready\",status=\"False\",reason=\"SecretNotFound\"}}"
    );
    // Nothing is left waiting once the pass is done (the queue does not leak).
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        let scrape = a.scrape().await;
        if sample(&scrape, "keyrotor_workqueue_depth") == Some(0.0) {
            break scrape;
        }
        assert!(
            Instant::now() < deadline,
            "the queue never drained: {scrape}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(sample(&leader, &series), Some(1.0), "{leader}");
    assert_eq!(sample(&leader, "keyrotor_leader"), Some(1.0));
    let standby = b.scrape().await;
    assert_eq!(sample(&standby, "keyrotor_leader"), Some(0.0), "{standby}");
    assert!(
        !standby.contains("name=\"p\""),
        "the standby exports per-policy series: {standby}"
    );
    assert_eq!(sample(&standby, "keyrotor_workqueue_depth"), Some(0.0));

    // The leader goes; the standby takes over and reports the policy itself.
    a.kill();
    b.wait_for_log("became the leader").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let scrape = b.scrape().await;
        if sample(&scrape, &series) == Some(1.0) {
            assert_eq!(sample(&scrape, "keyrotor_leader"), Some(1.0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new leader never reported p: {scrape}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
