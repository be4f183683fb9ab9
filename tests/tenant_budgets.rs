//! Tenants sharing one operator: a namespace whose token Cloudflare answers
//! 429 must not hold the workers that other namespaces' policies need.
//!
//! The operator runs as in the default install: one controller for all
//! namespaces (four workers), here narrowed to this test's policies by a
//! label selector so that tests running side by side do not see each other.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use keyrotor::crd::{AccessKeyPolicy, RotateOutcome};
use keyrotor_cloudflare_sim::{AccountSeed, Faults, Force429};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
    runtime::wait::await_condition,
};
use serde_json::{Value, json};
use support::{ROTATE, Scenario, condition, has_handled, is_ready};

/// The blocked tenant's token (the simulator answers 429 before looking at it).
const BLOCKED_TOKEN: &str = "tok-TENANT-A-BLOCKED-5d1e";
/// Tenant `b`'s account.
const B_ACCOUNT: &str = "0000000000000000000000000000b000";
/// How soon the other tenant's request must be handled.
const HANDLED_WITHIN: Duration = Duration::from_secs(5);
/// The label that scopes this test's operator to this test's policies.
const LABEL: &str = "keyrotor-test/tenants";

/// Creates a policy in `s`'s namespace carrying the test's label.
async fn create_labelled(s: &Scenario, name: &str, label: &str, spec: Value) {
    let policy = json!({
        "apiVersion": "keyrotor.dev/v1alpha1", "kind": "AccessKeyPolicy",
        "metadata": {"name": name, "namespace": s.namespace, "labels": {LABEL: label}},
        "spec": spec,
    });
    let policy: AccessKeyPolicy = serde_json::from_value(policy).expect("policy");
    s.policies()
        .create(&PostParams::default(), &policy)
        .await
        .expect("create policy");
}

/// Tenant `a` has `blocked_policies` policies on one token that Cloudflare
/// answered 429 with `Retry-After: 300`, and touches its Secret every second;
/// tenant `b` asks for rotations. Returns how long each of `b`'s requests took
/// to be handled (at most [`HANDLED_WITHIN`] each, or the test fails).
async fn other_tenant_latency_while_blocked(blocked_policies: usize) -> Vec<Duration> {
    let mut a = Scenario::new("tenant-a").await;
    let b = Scenario::new("tenant-b").await;
    let label = a.namespace.clone();
    a.apply_secret("blocked", &[("apiToken", BLOCKED_TOKEN)])
        .await;
    b.apply_token_secret().await;
    // All namespaces, as the default install: one controller, four workers;
    // with the Secret watch on (chart value), so a touched Secret starts a
    // pass of every policy using it at once. (Off, one pass per Secret every
    // 30 s reads it anyway: the same pin, four times slower to build.)
    let selector = format!("{LABEL}={label}");
    a.start_operator_with(
        &[
            "--watch-namespaces",
            "",
            "--label-selector",
            &selector,
            "--watch-secrets",
            "true",
        ],
        &[],
    );
    // `b`'s account last rotated 20 days ago (past the cooldown, within the
    // 30-day interval the policy sets): its first request rotates.
    let rotated = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 20);
    a.sim().upsert_account(
        AccountSeed::new(B_ACCOUNT)
            .with_interval(42)
            .last_rotated_at(rotated),
    );
    create_labelled(
        &b,
        "p",
        &label,
        json!({
            "accountId": B_ACCOUNT, "keyRotationIntervalDays": 30,
            "credentialsRef": {"name": "cloudflare-api"}, "driftCheckInterval": "1h",
        }),
    )
    .await;
    b.wait_for("p", "Ready", is_ready).await;
    // Let `b`'s follow-up pass (after its own status write) go by.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // `b` is idle (hourly checks): every call from now on is `a`'s, and each
    // is answered 429 until all of `a`'s policies have been told.
    a.sim().set_faults(Faults {
        force_429: Some(Force429 {
            count: 1000,
            retry_after_seconds: Some(300),
        }),
        ..Faults::default()
    });
    // One account each: policies sharing an account would sit in Conflict
    // behind the oldest and make no calls at all.
    let accounts: Vec<String> = (0..blocked_policies)
        .map(|n| format!("{:032x}", 0xa000_u64 + n as u64))
        .collect();
    for (n, account) in accounts.iter().enumerate() {
        create_labelled(
            &a,
            &format!("a{n}"),
            &label,
            json!({
                "accountId": account, "keyRotationIntervalDays": 30,
                "credentialsRef": {"name": "blocked"}, "driftCheckInterval": "1s",
            }),
        )
        .await;
    }
    // At least one 429, and then no answer to `a` for five minutes: the
    // operator blocks the token itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a.sim().requests().iter().any(|r| r.status == 429) {
        assert!(Instant::now() < deadline, "no 429 happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.sim().set_faults(Faults::default());
    let limited: Vec<_> = a
        .sim()
        .requests()
        .into_iter()
        .filter(|r| r.status == 429)
        .collect();
    assert!(
        limited.iter().all(|r| r.credential != "scenario"),
        "tenant b was answered 429 too: {limited:?}"
    );

    // `a` touches its Secret every second for the rest of the test (an
    // annotation: its data stays): every policy using it is reconciled again,
    // and the operator forgets which token it held.
    let toucher = {
        let client = a.client.clone();
        let namespace = a.namespace.clone();
        tokio::spawn(async move {
            let api: Api<Secret> = Api::namespaced(client, &namespace);
            for n in 0.. {
                let _ = api
                    .patch(
                        "blocked",
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"annotations": {"example.com/touched": n.to_string()}}})),
                    )
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    // Long enough for every worker to have met a touched Secret.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let mut latencies = Vec::new();
    for n in 0..4 {
        let request = format!("r{n}");
        let asked = Instant::now();
        b.annotate("p", json!({ROTATE: request})).await;
        let wanted = request.clone();
        let handled = tokio::time::timeout(
            HANDLED_WITHIN,
            await_condition(b.policies(), "p", move |p: Option<&AccessKeyPolicy>| {
                p.is_some_and(|p| has_handled(p, &wanted))
            }),
        )
        .await;
        if handled.is_err() {
            toucher.abort();
            let p = b.policy("p").await;
            panic!(
                "tenant b's request {request} was not handled within {HANDLED_WITHIN:?} while tenant a ({blocked_policies} policies) was blocked; status: {}\noperator log:\n{}",
                serde_json::to_string_pretty(&p.status).unwrap_or_default(),
                a.operator_log()
            );
        }
        latencies.push(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    toucher.abort();
    eprintln!(
        "tenant b's request latencies with {blocked_policies} blocked policies in a: {latencies:?}"
    );
    if let Ok(path) = std::env::var("KEYROTOR_TEST_KEEP_LOG") {
        let _ = std::fs::write(path, a.operator_log());
    }
    let p = b.policy("p").await;
    assert!(is_ready(&p), "{:?}", condition(&p, "Ready"));
    // The first request rotated; the later ones met the cooldown.
    let rotations = a
        .calls("POST")
        .into_iter()
        .filter(|r| r.account_id.as_deref() == Some(B_ACCOUNT) && r.status == 200)
        .count();
    assert_eq!(rotations, 1, "{:?}", a.calls("POST"));
    assert_eq!(
        p.status.as_ref().and_then(|s| s.last_rotate_outcome),
        Some(RotateOutcome::RefusedCooldown)
    );
    // Nothing was sent with `a`'s token after its 429 (the block holds).
    let after_block: Vec<_> = a
        .sim()
        .requests()
        .into_iter()
        .filter(|r| {
            r.account_id
                .as_ref()
                .is_some_and(|id| accounts.contains(id))
                && r.status != 429
        })
        .collect();
    assert!(after_block.is_empty(), "{after_block:?}");
    a.assert_log_has_no_secret();
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_blocked_policy_does_not_delay_another_tenant() {
    other_tenant_latency_while_blocked(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_blocked_policies_on_one_token_do_not_pin_the_workers() {
    other_tenant_latency_while_blocked(8).await;
}

/// A gate in front of the simulator: requests whose path names one of
/// `held` accounts are never answered (the connection stays open), the others
/// are passed on, one request per connection. Stands for a Cloudflare that
/// hangs on one tenant's accounts only, which the simulator's faults (drawn
/// per call, whoever makes it) cannot do.
async fn gate(upstream: std::net::SocketAddr, held: Vec<String>) -> String {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut parked = Vec::new();
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 8192];
            // The head, then as much body as Content-Length says.
            let head_end = loop {
                let Ok(n) = client.read(&mut buf).await else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                request.extend_from_slice(&buf[..n]);
                if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(at + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&request[..head_end]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                })
                .unwrap_or(0);
            while request.len() < head_end + length {
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
            if held.iter().any(|a| path.contains(a.as_str())) {
                parked.push(client);
                continue;
            }
            // One request per connection: ask the server to close after it.
            let mut forwarded = head[..head.len() - 2].to_owned();
            forwarded.push_str("Connection: close\r\n\r\n");
            let mut bytes = forwarded.into_bytes();
            bytes.extend_from_slice(&request[head_end..]);
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                if server.write_all(&bytes).await.is_ok() {
                    let mut answer = Vec::new();
                    let _ = server.read_to_end(&mut answer).await;
                    let _ = client.write_all(&answer).await;
                }
                let _ = client.shutdown().await;
            });
        }
    });
    format!("http://{addr}/client/v4")
}

/// Tenant `a`'s Cloudflare calls hang (each pass holds its worker until the
/// request timeout, four times with retries); tenant `b` asks for rotations.
/// Watching all namespaces, `a` may hold all workers but one while `b` has
/// none running, so `b`'s passes start at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_whose_calls_hang_leaves_a_worker_to_another() {
    let mut a = Scenario::new("share-a").await;
    let b = Scenario::new("share-b").await;
    let label = a.namespace.clone();
    let accounts: Vec<String> = (0..8).map(|n| format!("{:032x}", 0xa100_u64 + n)).collect();
    let upstream: std::net::SocketAddr = a
        .sim
        .base_url()
        .trim_start_matches("http://")
        .trim_end_matches("/client/v4")
        .parse()
        .expect("simulator address");
    let url = gate(upstream, accounts.clone()).await;
    a.apply_token_secret().await;
    b.apply_token_secret().await;
    let rotated = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 20);
    a.sim().upsert_account(
        AccountSeed::new(B_ACCOUNT)
            .with_interval(42)
            .last_rotated_at(rotated),
    );
    let selector = format!("{LABEL}={label}");
    a.start_operator_with(
        &[
            "--watch-namespaces",
            "",
            "--label-selector",
            &selector,
            "--cloudflare-api-url",
            &url,
        ],
        &[],
    );
    create_labelled(
        &b,
        "p",
        &label,
        json!({
            "accountId": B_ACCOUNT, "keyRotationIntervalDays": 30,
            "credentialsRef": {"name": "cloudflare-api"}, "driftCheckInterval": "1h",
        }),
    )
    .await;
    b.wait_for("p", "Ready", is_ready).await;
    for (n, account) in accounts.iter().enumerate() {
        create_labelled(
            &a,
            &format!("a{n}"),
            &label,
            json!({
                "accountId": account, "keyRotationIntervalDays": 30,
                "credentialsRef": {"name": "cloudflare-api"}, "driftCheckInterval": "1s",
            }),
        )
        .await;
    }
    // Every worker `a` may take is hanging by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut latencies = Vec::new();
    for n in 0..3 {
        let request = format!("r{n}");
        let asked = Instant::now();
        b.annotate("p", json!({ROTATE: request})).await;
        let wanted = request.clone();
        let handled = tokio::time::timeout(
            HANDLED_WITHIN,
            await_condition(b.policies(), "p", move |p: Option<&AccessKeyPolicy>| {
                p.is_some_and(|p| has_handled(p, &wanted))
            }),
        )
        .await;
        assert!(
            handled.is_ok(),
            "tenant b's request {request} was not handled within {HANDLED_WITHIN:?} while tenant a's calls hung\noperator log:\n{}",
            a.operator_log()
        );
        latencies.push(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("tenant b's request latencies while tenant a's calls hang: {latencies:?}");
    let metrics = a.operator.as_ref().expect("operator").scrape().await;
    let turned_away = metrics
        .lines()
        .find_map(|l| l.strip_prefix("keyrotor_fair_share_deferrals_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    eprintln!("passes of tenant a turned away by the fair share: {turned_away}");
    assert!(turned_away > 0.0, "the share never turned a pass away");
    let p = b.policy("p").await;
    assert_eq!(
        p.status.as_ref().and_then(|s| s.last_rotate_outcome),
        Some(RotateOutcome::RefusedCooldown)
    );
}
