//! Running it in production: metrics, health and readiness, SIGTERM, leader
//! election across operator processes, label-selector scoping.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use keyrotor::crd::RotateOutcome;
use kube::Api;
use serde_json::json;
use support::{ACCOUNT, Operator, ROTATE, Scenario, has_handled, is_ready};

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

async fn get(url: &str) -> (u16, String) {
    match http().get(url).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(err) => (0, err.to_string()),
    }
}

/// The value of one sample line `name{labels} value` in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_scenario_count_what_happened_and_forget_deleted_policies() {
    let mut s = Scenario::new("metrics").await;
    s.start_with_ready_policy(json!({"rotationCooldown": "0s"}))
        .await;
    s.annotate("p", json!({ROTATE: "r1"})).await;
    s.wait_for("p", "r1 handled", |p| has_handled(p, "r1"))
        .await;
    let url = s.operator.as_ref().expect("operator").probe_url().await;
    let (status, scrape) = get(&format!("{url}/metrics")).await;
    assert_eq!(status, 200);
    let ns = s.namespace.clone();
    let labels = format!("{{namespace=\"{ns}\",name=\"p\"}}");
    assert_eq!(
        sample(
            &scrape,
            r#"keyrotor_cloudflare_requests_total{operation="update",status="200"}"#
        ),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        sample(
            &scrape,
            r#"keyrotor_cloudflare_requests_total{operation="rotate",status="200"}"#
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &scrape,
            r#"keyrotor_cloudflare_requests_total{operation="get",status="200"}"#
        )
        .is_some_and(|n| n >= 2.0)
    );
    assert_eq!(
        sample(&scrape, r#"keyrotor_rotations_total{outcome="Rotated"}"#),
        Some(1.0)
    );
    assert!(
        sample(
            &scrape,
            r#"keyrotor_reconciles_total{result="success",reason="Reconciled"}"#
        )
        .is_some_and(|n| n >= 2.0)
    );
    assert!(sample(&scrape, "keyrotor_reconcile_duration_seconds_count").is_some_and(|n| n >= 2.0));
    assert!(
        sample(
            &scrape,
            r#"keyrotor_cloudflare_request_duration_seconds_count{operation="get"}"#
        )
        .is_some_and(|n| n >= 2.0)
    );
    assert_eq!(
        sample(
            &scrape,
            &format!(
                "keyrotor_policy_condition{{namespace=\"{ns}\",name=\"p\",type=\"Ready\",status=\"True\",reason=\"Reconciled\"}}"
            )
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&scrape, &format!("keyrotor_policy_interval_days{labels}")),
        Some(30.0)
    );
    let last = s
        .sim()
        .account(ACCOUNT)
        .expect("account")
        .last_key_rotation_at
        .as_second() as f64;
    assert_eq!(
        sample(
            &scrape,
            &format!("keyrotor_policy_last_rotation_timestamp_seconds{labels}")
        ),
        Some(last)
    );
    assert_eq!(
        sample(
            &scrape,
            &format!("keyrotor_policy_next_rotation_timestamp_seconds{labels}")
        ),
        Some(last + 30.0 * 86_400.0)
    );
    // No maintenance window: the account's own schedule is the plan.
    assert_eq!(
        sample(
            &scrape,
            &format!(
                "keyrotor_policy_planned_rotation_timestamp_seconds{{namespace=\"{ns}\",name=\"p\",reason=\"CloudflareSchedule\"}}"
            )
        ),
        Some(last + 30.0 * 86_400.0),
        "{scrape}"
    );
    assert_eq!(sample(&scrape, "keyrotor_leader"), Some(1.0));
    for secret in [support::TOKEN, support::API_KEY, support::EMAIL] {
        assert!(!scrape.contains(secret));
    }

    s.policies()
        .delete("p", &Default::default())
        .await
        .expect("delete");
    s.wait_gone("p").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, scrape) = get(&format!("{url}/metrics")).await;
        if !scrape.contains(&labels) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "series of the deleted policy remain:\n{scrape}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_synced_caches_while_health_answers_at_once() {
    let s = Scenario::new("probes").await;
    // An API server that does not answer: the caches never sync.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let kubeconfig = s
        .plane
        .dir()
        .join(format!("{}-dead-kubeconfig", s.namespace));
    let original = std::fs::read_to_string(s.plane.kubeconfig_path()).expect("kubeconfig");
    let dead = original.replace(s.plane.server_url(), &format!("https://127.0.0.1:{port}"));
    std::fs::write(&kubeconfig, dead).expect("write kubeconfig");
    let kubeconfig_path = kubeconfig.to_string_lossy().into_owned();
    let stuck = s.spawn_operator("stuck", &[], &[("KUBECONFIG", &kubeconfig_path)]);
    let url = stuck.probe_url().await;
    assert_eq!(get(&format!("{url}/healthz")).await.0, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, body) = get(&format!("{url}/readyz")).await;
    assert_eq!(status, 503, "{body}");

    let healthy = s.spawn_operator("healthy", &[], &[]);
    let url = healthy.probe_url().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&format!("{url}/readyz")).await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready:\n{}", healthy.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy.log().contains("caches synced"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_within_ten_seconds_and_releases_the_lease() {
    let mut s = Scenario::new("sigterm").await;
    s.apply_token_secret().await;
    let ns = s.namespace.clone();
    s.start_operator_with(
        &[
            "--leader-election",
            "true",
            "--leader-election-namespace",
            &ns,
            // Named: the namespace also holds the account's claim Lease.
            "--leader-election-lease-name",
            "keyrotor-sigterm",
            "--identity",
            "solo",
        ],
        &[],
    );
    s.create_policy("p", json!({})).await;
    s.wait_for("p", "Ready", is_ready).await;
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), &ns);
    let operator = s.operator.as_mut().expect("operator");
    operator.terminate();
    let started = Instant::now();
    let code = operator.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "exit code after SIGTERM\n{}", operator.log());
    assert!(started.elapsed() < Duration::from_secs(10));
    let log = operator.log();
    assert!(
        log.contains("lease released") && log.contains("keyrotor stopped"),
        "{log}"
    );
    let lease = leases.get("keyrotor-sigterm").await.expect("lease");
    assert_eq!(
        lease.spec.and_then(|sp| sp.holder_identity),
        None,
        "the lease is free after SIGTERM"
    );
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("keyrotor-test")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|sp| sp.holder_identity)
}

async fn wait_holder(
    leases: &Api<Lease>,
    want: &str,
    within: Duration,
    logs: &[&Operator],
) -> Duration {
    let started = Instant::now();
    while holder(leases).await.as_deref() != Some(want) {
        if started.elapsed() > within {
            let logs: Vec<String> = logs.iter().map(|o| o.log()).collect();
            panic!(
                "{want} did not take the lease within {within:?}; holder {:?}\n{}",
                holder(leases).await,
                logs.join("\n-----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_after_a_crash_and_at_once_after_sigterm_without_duplicate_calls() {
    let s = Scenario::new("leader").await;
    s.apply_token_secret().await;
    let ns = s.namespace.clone();
    let election = |identity: &'static str| -> Vec<String> {
        [
            "--leader-election",
            "true",
            "--leader-election-namespace",
            ns.as_str(),
            "--leader-election-lease-name",
            "keyrotor-test",
            "--leader-election-lease-duration",
            "4s",
            "--leader-election-renew-deadline",
            "3s",
            "--leader-election-retry-period",
            "500ms",
            "--identity",
            identity,
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect()
    };
    let spawn = |name: &'static str| {
        let flags = election(name);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        s.spawn_operator(name, &flags, &[])
    };
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), &ns);
    let mut a = spawn("a");
    wait_holder(&leases, "a", Duration::from_secs(10), &[&a]).await;
    let mut b = spawn("b");
    s.create_policy("p", json!({"rotationCooldown": "0s"}))
        .await;
    s.wait_for("p", "Ready", is_ready).await;
    s.annotate("p", json!({ROTATE: "r1"})).await;
    s.wait_for("p", "r1 handled", |p| has_handled(p, "r1"))
        .await;
    assert!(
        b.log().lines().all(|l| !l.contains("Cloudflare call")),
        "the standby called Cloudflare"
    );

    // The leader crashes: the standby takes over within the lease duration.
    a.kill();
    s.annotate("p", json!({ROTATE: "r2"})).await;
    let took = wait_holder(&leases, "b", Duration::from_secs(8), &[&a, &b]).await;
    assert!(
        took <= Duration::from_secs(6),
        "takeover after a crash took {took:?}"
    );
    let p = s
        .wait_for("p", "r2 handled by the new leader", |p| {
            has_handled(p, "r2")
        })
        .await;
    assert_eq!(
        p.status.and_then(|st| st.last_rotate_outcome),
        Some(RotateOutcome::Rotated)
    );

    // A clean stop releases the lease: the next standby takes over at its next poll.
    let c = spawn("c");
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.terminate();
    assert_eq!(
        b.wait_exit(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        b.log()
    );
    let took = wait_holder(&leases, "c", Duration::from_secs(3), &[&b, &c]).await;
    assert!(
        took < Duration::from_secs(2),
        "takeover after SIGTERM took {took:?}"
    );
    s.annotate("p", json!({ROTATE: "r3"})).await;
    s.wait_for("p", "r3 handled", |p| has_handled(p, "r3"))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_eq!(
        s.calls("PUT").len(),
        1,
        "no duplicate PUT: {:?}",
        s.sim().requests()
    );
    assert_eq!(
        s.calls("POST").len(),
        3,
        "one POST per request: {:?}",
        s.sim().requests()
    );
    assert_eq!(s.sim().account(ACCOUNT).expect("account").rotations, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_selector_splits_policies_between_deployments() {
    let s = Scenario::new("shards").await;
    s.apply_token_secret().await;
    let shard_a = s.spawn_operator("shard-a", &["--label-selector", "shard=a"], &[]);
    s.create_policy("in-a", json!({})).await;
    s.policies()
        .patch(
            "in-a",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"shard": "a"}}})),
        )
        .await
        .expect("label");
    s.create_policy("in-b", json!({"accountId": support::OTHER_ACCOUNT}))
        .await;
    s.wait_for("in-a", "Ready", is_ready).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        s.policy("in-b").await.status.is_none(),
        "the shard=a operator touched an unlabelled policy"
    );
    assert!(
        s.calls("PUT")
            .iter()
            .all(|r| r.account_id.as_deref() == Some(ACCOUNT))
    );
    drop(shard_a);
}

#[test]
fn bad_settings_exit_2_naming_the_setting() {
    for (args, name) in [
        (vec!["run", "--concurrency", "0"], "--concurrency"),
        (
            vec!["run", "--drift-check-floor", "5x"],
            "--drift-check-floor",
        ),
        (
            vec!["run", "--metrics-address", "nowhere"],
            "--metrics-address",
        ),
        (vec!["run", "--log-format", "xml"], "--log-format"),
        (
            vec!["run", "--leader-election-renew-deadline", "20s"],
            "--leader-election-renew-deadline",
        ),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyrotor"))
            .args(&args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{args:?}: {stderr}");
    }
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_keyrotor"))
        .args(["run", "--help"])
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&help.stdout);
    for setting in [
        "KEYROTOR_CLOUDFLARE_API_URL",
        "KEYROTOR_WATCH_NAMESPACES",
        "KEYROTOR_METRICS_ADDRESS",
        "KEYROTOR_LEADER_ELECTION",
        "KEYROTOR_CONCURRENCY",
        "KEYROTOR_BUDGET_REQUESTS",
        "KEYROTOR_LOG_FORMAT",
        "KEYROTOR_LOG_LEVEL",
        "KEYROTOR_LABEL_SELECTOR",
    ] {
        assert!(help.contains(setting), "--help does not list {setting}");
    }
}

/// JSON logs feed pipelines that reject a line naming a key twice
/// (Elasticsearch) or silently keep one of them (jq, Loki): every line, at
/// trace level for every target, is one strict JSON object with the event's
/// fields at the top, and a reconcile's lines name their policy under
/// `policy`, apart from the span's own `name`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_policy_on_every_reconcile_line_and_no_secret() {
    let s = Scenario::new("jsonlogs").await;
    s.apply_token_secret().await;
    let operator = s.spawn_operator(
        "json",
        &["--log-format", "json", "--log-level", "trace"],
        &[],
    );
    s.create_policy("p", json!({})).await;
    s.create_policy("lost", json!({"credentialsRef": {"name": "missing"}}))
        .await;
    s.wait_for("p", "Ready", is_ready).await;
    s.wait_ready_reason("lost", "SecretNotFound").await;
    operator.wait_for_log("rotation interval updated").await;
    let log = operator.log();
    let mut reconcile_lines = 0;
    for (number, line) in log.lines().enumerate() {
        let value = support::parse_strict_json(line)
            .unwrap_or_else(|e| panic!("line {}: {}: {line}", number + 1, e.0));
        assert!(
            value.get("timestamp").is_some() && value.get("message").is_some(),
            "event not flattened: {line}"
        );
        if value["span"]["name"] == "reconcile" {
            reconcile_lines += 1;
            assert_eq!(value["span"]["namespace"], s.namespace.as_str(), "{line}");
            let policy = value["span"]["policy"].as_str().unwrap_or_default();
            assert!(["p", "lost"].contains(&policy), "{line}");
        }
    }
    assert!(reconcile_lines > 0, "no reconcile lines in:\n{log}");
    let reconciles: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("account written"))
        .collect();
    assert!(
        reconciles
            .iter()
            .all(|l| l.contains("\"namespace\"") && l.contains("\"p\"")),
        "{reconciles:?}"
    );
    for secret in [support::TOKEN, support::API_KEY, support::EMAIL] {
        assert!(
            !log.contains(secret),
            "a secret reached the trace-level log"
        );
    }
}
