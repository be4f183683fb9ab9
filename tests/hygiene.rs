//! Secret hygiene: the token, the global key and its email never reach a log
//! line (at trace level), an event, a condition, a metric or an error; Secret
//! data is read fresh on every reconcile and never kept; and no object can
//! point the operator at another API URL.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use keyrotor::{
    cloudflare::{BudgetRegistry, ClientSettings, CloudflareClient, Credentials, RetryPolicy},
    crd::{AccessKeyPolicy, RotateOutcome},
};
use keyrotor_cloudflare_sim::{AccountSeed, Faults, Force429};
use kube::{
    Api,
    api::{DeleteParams, PostParams},
    core::DynamicObject,
};
use rand::RngCore;
use serde_json::{Value, json};
use support::{
    ACCOUNT, API_KEY, EMAIL, OTHER_ACCOUNT, ROTATE, Scenario, TOKEN, condition, has_handled,
    is_ready,
};

/// A token the simulator does not know; as secret as the real one.
const WRONG_TOKEN: &str = "tok-WRONG-HYGIENE-SECRET-55e1";

fn extra_account(s: &Scenario, n: u32) -> String {
    let id = format!("{:032x}", 0xe000_0000_u64 + u64::from(n));
    s.sim()
        .upsert_account(AccountSeed::new(&id).with_interval(42));
    id
}

fn base64(text: &str) -> String {
    // Standard alphabet with padding, as the API server encodes Secret data.
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every form in which a secret could leak: as is, and base64 as Secret data travels.
fn forbidden() -> Vec<(String, &'static str)> {
    let mut all = Vec::new();
    for (secret, what) in [
        (TOKEN, "token"),
        (API_KEY, "global key"),
        (EMAIL, "email"),
        (WRONG_TOKEN, "wrong token"),
    ] {
        all.push((secret.to_owned(), what));
        // Without padding: the value may sit inside a longer encoded string.
        let encoded = base64(secret);
        all.push((encoded.trim_end_matches('=').to_owned(), what));
    }
    all
}

fn assert_clean(what: &str, text: &str) {
    for (secret, kind) in forbidden() {
        if let Some(at) = text.find(&secret) {
            let start = at.saturating_sub(120);
            panic!(
                "the {kind} appears in {what} at byte {at}: ...{}...",
                // Show the context with the secret itself masked.
                text[start..at].to_owned() + "<SECRET>"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_event_condition_metric_or_error() {
    let mut s = Scenario::new("hygiene").await;
    s.apply_token_secret().await;
    s.apply_secret("legacy", &[("apiKey", API_KEY), ("email", EMAIL)])
        .await;
    s.apply_secret("wrong", &[("apiToken", WRONG_TOKEN)]).await;
    let broken = format!("{TOKEN} {TOKEN}");
    s.apply_secret("broken", &[("apiToken", &broken)]).await;
    s.start_operator_with(&["--log-level", "trace"], &[]);

    let cool = extra_account(&s, 1);
    let wrong = extra_account(&s, 2);
    let broken_account = extra_account(&s, 3);
    s.create_policy("token", json!({"rotationCooldown": "0s"}))
        .await;
    s.create_policy(
        "legacy",
        json!({"accountId": OTHER_ACCOUNT, "credentialsRef": {"name": "legacy"}, "managementPolicy": "Observe"}),
    )
    .await;
    s.create_policy("cooldown", json!({"accountId": cool}))
        .await;
    s.create_policy(
        "wrong",
        json!({"accountId": wrong, "credentialsRef": {"name": "wrong"}}),
    )
    .await;
    s.create_policy(
        "broken",
        json!({"accountId": broken_account, "credentialsRef": {"name": "broken"}}),
    )
    .await;
    for name in ["token", "legacy", "cooldown"] {
        s.wait_for(name, "Ready", is_ready).await;
    }
    s.wait_ready_reason("wrong", "InvalidCredentials").await;
    s.wait_ready_reason("broken", "InvalidCredentials").await;

    // Create, rotate, refusals.
    for name in ["token", "legacy", "cooldown"] {
        s.annotate(name, json!({ROTATE: "hygiene-1"})).await;
    }
    for (name, outcome) in [
        ("token", RotateOutcome::Rotated),
        ("legacy", RotateOutcome::RefusedObserveOnly),
        ("cooldown", RotateOutcome::RefusedCooldown),
    ] {
        let p = s
            .wait_for(name, "request handled", |p| has_handled(p, "hygiene-1"))
            .await;
        assert_eq!(
            p.status.and_then(|st| st.last_rotate_outcome),
            Some(outcome)
        );
    }
    // 429 and 5xx.
    // (The forced 429s go to whichever calls come first, any policy's.)
    s.sim().set_faults(Faults {
        force_429: Some(Force429 {
            count: 6,
            retry_after_seconds: Some(2),
        }),
        ..Faults::default()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let policies = s.policies().list(&Default::default()).await.expect("list");
        if policies
            .items
            .iter()
            .any(|p| condition(p, "Ready").is_some_and(|c| c.reason == "RateLimited"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no policy was ever RateLimited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.sim().set_faults(Faults::default());
    s.wait_for("token", "Ready after 429", is_ready).await;
    s.sim().set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    s.wait_ready_reason("token", "ApiError").await;
    s.sim().set_faults(Faults::default());
    s.wait_for("token", "Ready after 5xx", is_ready).await;

    // Conditions and the whole status of every policy.
    let policies = s.policies().list(&Default::default()).await.expect("list");
    let mut conditions = 0;
    for p in &policies.items {
        let status = serde_json::to_string(&p.status).expect("json");
        assert_clean("a policy status", &status);
        conditions += p.status.as_ref().map_or(0, |st| st.conditions.len());
    }
    assert!(conditions >= 8, "{conditions} conditions");
    // Every event in the namespace.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(s.client.clone(), &s.namespace);
    let events = events.list(&Default::default()).await.expect("events");
    assert!(events.items.len() >= 6, "{} events", events.items.len());
    for event in &events.items {
        assert_clean("an event", &serde_json::to_string(event).expect("json"));
    }
    // The metrics scrape.
    let scrape = s.operator.as_ref().expect("operator").scrape().await;
    assert!(scrape.contains("keyrotor_cloudflare_requests_total"));
    assert_clean("the metrics scrape", &scrape);
    // Errors from the client, as displayed and as debugged.
    let client = CloudflareClient::new(
        &ClientSettings {
            base_url: s.sim.base_url(),
            retry: RetryPolicy {
                max_retries: 1,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(10),
            },
            ..ClientSettings::default()
        },
        Arc::new(BudgetRegistry::default()),
    )
    .expect("client");
    let mut errors = Vec::new();
    for credentials in [
        Credentials::api_token(WRONG_TOKEN),
        Credentials::global_key(API_KEY, "not-the-email@example.com"),
        Credentials::global_key("not-the-key", EMAIL),
        Credentials::api_token(format!("{TOKEN}\n")),
    ] {
        errors.push(format!("{credentials:?}"));
        if let Err(err) = client.get_config(&credentials, ACCOUNT).await {
            errors.push(format!("{err} {err:?}"));
        }
    }
    s.sim().set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let err = client
        .rotate(&Credentials::api_token(TOKEN), ACCOUNT)
        .await
        .expect_err("5xx");
    errors.push(format!("{err} {err:?}"));
    s.sim().set_faults(Faults::default());
    assert!(errors.len() >= 8);
    assert_clean("a Cloudflare error", &errors.join("\n"));
    // Every log line, at trace level for every target.
    let log = s.operator_log();
    let lines = log.lines().count();
    assert!(
        lines > 500 && log.contains("TRACE"),
        "{lines} lines: not a trace log"
    );
    assert_clean("the operator log", &log);
    eprintln!(
        "scanned {lines} log lines, {} events, {conditions} conditions, {} bytes of metrics, {} errors",
        events.items.len(),
        scrape.len(),
        errors.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_is_read_fresh_on_every_reconcile() {
    let mut s = Scenario::new("hygiene-fresh").await;
    // With the Secret watch (off by default), so a change starts a pass at once.
    s.apply_token_secret().await;
    s.start_operator_with(&["--watch-secrets", "true"], &[]);
    s.create_policy("p", json!({"driftCheckInterval": "1h"}))
        .await;
    s.wait_for("p", "Ready", is_ready).await;
    let credentials_since = |s: &Scenario, from: u64| -> Vec<String> {
        s.sim()
            .requests()
            .into_iter()
            .filter(|r| r.seq > from)
            .map(|r| r.credential)
            .collect()
    };
    let last_seq = |s: &Scenario| s.sim().requests().last().map_or(0, |r| r.seq);
    // The Secret watch's first list starts one more pass, which may come after
    // Ready: let it finish (the drift check is an hour away).
    let mut seen = last_seq(&s);
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = last_seq(&s);
        if now == seen {
            break;
        }
        seen = now;
    }

    // A wrong token: the very next reconcile (started by the Secret watch) uses it.
    let mark = last_seq(&s);
    s.apply_secret("cloudflare-api", &[("apiToken", WRONG_TOKEN)])
        .await;
    let p = s.wait_ready_reason("p", "InvalidCredentials").await;
    assert!(condition(&p, "Ready").is_some_and(|c| c.message.contains("9109")));
    let used = credentials_since(&s, mark);
    assert!(
        !used.is_empty() && used.iter().all(|c| c == "unknown"),
        "{used:?}"
    );

    // Back to the right token, then to a global key: each is used at once.
    let mark = last_seq(&s);
    s.apply_token_secret().await;
    s.wait_for("p", "Ready", is_ready).await;
    assert_eq!(
        credentials_since(&s, mark).last().map(String::as_str),
        Some("scenario")
    );
    let mark = last_seq(&s);
    s.apply_secret("cloudflare-api", &[("apiKey", API_KEY), ("email", EMAIL)])
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !credentials_since(&s, mark).iter().any(|c| c == "legacy") {
        assert!(Instant::now() < deadline, "the global key was never used");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Deleted: no call at all, SecretNotFound, although it was used a moment ago.
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), &s.namespace);
    secrets
        .delete("cloudflare-api", &DeleteParams::default())
        .await
        .expect("delete");
    s.wait_ready_reason("p", "SecretNotFound").await;
    let mark = last_seq(&s);
    s.patch_spec("p", json!({"keyRotationIntervalDays": 60}))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        credentials_since(&s, mark).is_empty(),
        "called without a Secret"
    );
    s.assert_log_has_no_secret();
}

/// Bytes received so far on each of a process's TCP sockets (by local
/// address), from the kernel's `tcp_info` as `ss -tinp` prints it.
fn bytes_received_by(pid: u32) -> std::collections::HashMap<String, u64> {
    let output = std::process::Command::new("ss")
        .args(["-tinpH"])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut sockets = std::collections::HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            current = line.contains(&format!("pid={pid},")).then(|| {
                line.split_whitespace()
                    .nth(3)
                    .unwrap_or_default()
                    .to_owned()
            });
        } else if let Some(local) = current.take() {
            let received = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("bytes_received:"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            sockets.insert(local, received);
        }
    }
    sockets
}

/// The operator's watch on Secrets must carry metadata only: Secrets that no
/// policy references (TLS keys, other apps' passwords) must never cross the
/// wire into the operator. Measured on the process's sockets (kernel
/// `bytes_received`) while 4 unrelated Secrets of 900 KB of random data are
/// created in its namespace.
/// A control shows the measurement sees data: a 200 KB annotation on the
/// policy (whose watch carries whole objects) does arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrelated_secret_data_never_reaches_the_operator() {
    let mut s = Scenario::new("hygiene-meta").await;
    s.start_with_ready_policy(json!({"driftCheckInterval": "1h"}))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = s.operator.as_ref().expect("operator").pid();
    let before = bytes_received_by(pid);
    assert!(!before.is_empty(), "no sockets found for the operator");
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), &s.namespace);
    for n in 0..4 {
        let mut data = vec![0u8; 900 * 1024];
        rand::rng().fill_bytes(&mut data);
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("unrelated-{n}")),
                ..Default::default()
            },
            data: Some([("tls.key".to_owned(), ByteString(data))].into()),
            ..Default::default()
        };
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received_since = |before: &std::collections::HashMap<String, u64>| -> u64 {
        bytes_received_by(pid)
            .iter()
            .map(|(socket, now)| now.saturating_sub(before.get(socket).copied().unwrap_or(0)))
            .sum()
    };
    let read = received_since(&before);
    // The control: a large annotation on the watched policy reaches the operator.
    let before = bytes_received_by(pid);
    s.annotate("p", json!({"example.com/blob": "b".repeat(200 * 1024)}))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let control = received_since(&before);
    eprintln!(
        "the operator received {read} bytes while 3.6 MB of unrelated Secrets were created, \
         and {control} bytes for a 200 KB annotation on its policy"
    );
    assert!(
        control > 200 * 1024,
        "the measurement misses data: {control} bytes"
    );
    assert!(
        read < 64 * 1024,
        "the operator received {read} bytes: unrelated Secret data reached it"
    );
}

/// Every property name in a schema, recursively.
fn property_names(schema: &Value, out: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            out.push(name.clone());
            property_names(child, out);
        }
    }
    if let Some(items) = schema.get("items") {
        property_names(items, out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_object_can_point_the_operator_at_another_url() {
    let root = keyrotor_testenv::workspace_root();
    let text = std::fs::read_to_string(root.join("crds/accesskeypolicies.keyrotor.dev.yaml"))
        .expect("crd file");
    let crd: Value = serde_norway::from_str(&text).expect("yaml");
    let mut names = Vec::new();
    for version in crd["spec"]["versions"].as_array().expect("versions") {
        property_names(&version["schema"]["openAPIV3Schema"], &mut names);
    }
    assert!(names.len() > 20, "{names:?}");
    for name in &names {
        let lower = name.to_lowercase();
        for word in ["url", "endpoint", "host", "address", "server"] {
            assert!(
                !lower.contains(word),
                "schema property {name} looks like a URL"
            );
        }
    }

    // Sent anyway, such fields are pruned, and the token goes to the operator-wide URL only.
    let mut s = Scenario::new("hygiene-url").await;
    s.apply_token_secret().await;
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let trap_url = format!("http://{}/client/v4", trap.local_addr().expect("addr"));
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = trap.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            drop(socket);
        }
    });
    s.start_operator();
    let resource = kube::core::ApiResource::erase::<AccessKeyPolicy>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(s.client.clone(), &s.namespace, &resource);
    let mut spec = json!({
        "accountId": ACCOUNT,
        "keyRotationIntervalDays": 30,
        "credentialsRef": {"name": "cloudflare-api", "url": trap_url},
        "driftCheckInterval": "1s",
    });
    for field in [
        "apiUrl",
        "url",
        "endpoint",
        "host",
        "baseUrl",
        "cloudflareApiUrl",
    ] {
        spec[field] = json!(trap_url);
    }
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "keyrotor.dev/v1alpha1",
        "kind": "AccessKeyPolicy",
        "metadata": {"name": "p", "annotations": {"keyrotor.dev/api-url": trap_url}},
        "spec": spec,
    }))
    .expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("created (with the unknown fields pruned)");
    let stored = serde_json::to_value(api.get("p").await.expect("get")).expect("json");
    let stored_spec = stored["spec"].as_object().expect("spec");
    for field in [
        "apiUrl",
        "url",
        "endpoint",
        "host",
        "baseUrl",
        "cloudflareApiUrl",
    ] {
        assert!(
            !stored_spec.contains_key(field),
            "{field} was kept: {stored}"
        );
    }
    assert_eq!(
        stored["spec"]["credentialsRef"],
        json!({"name": "cloudflare-api"})
    );
    s.wait_for("p", "Ready", is_ready).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!s.calls("GET").is_empty(), "the operator-wide URL was used");
    assert_eq!(
        connections.load(Ordering::Relaxed),
        0,
        "the operator connected to a URL taken from the object"
    );
}
