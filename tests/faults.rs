//! Faults on the real API server, the simulator and the operator process:
//! kube-apiserver killed and restarted, Cloudflare unreachable, 5xx, 429
//! storms, hanging answers, SIGKILL at random moments and a leader killed
//! during rotations. Every rotate request must lead to exactly one rotation.

mod support;

use std::{
    ffi::OsString,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::api::{coordination::v1::Lease, core::v1::Namespace};
use keyrotor::crd::{AccessKeyPolicy, RotateOutcome};
use keyrotor_cloudflare_sim::{AccountSeed, Faults, Force429, SimConfig, Simulator};
use keyrotor_testenv::{ControlPlane, StartOptions};
use kube::Api;
use rand::Rng;
use serde_json::json;
use support::{
    ACCOUNT, API_KEY, EMAIL, OTHER_ACCOUNT, Operator, ROTATE, Scenario, is_ready,
    last_handled_request, ready_message,
};

fn posts_for(s: &Simulator, account: &str) -> usize {
    s.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.account_id.as_deref() == Some(account))
        .count()
}

/// An account of its own for index `n`.
fn extra_account(s: &Scenario, n: u32) -> String {
    let id = format!("{:032x}", 0xf000_0000_u64 + u64::from(n));
    s.sim()
        .upsert_account(AccountSeed::new(&id).with_interval(42));
    id
}

/// Annotates and waits until the request is handled, through an `Api` only
/// (usable from spawned tasks); panics after `within`.
async fn request_and_wait(api: &Api<AccessKeyPolicy>, name: &str, value: &str, within: Duration) {
    let patch = json!({"metadata": {"annotations": {ROTATE: value}}});
    let deadline = Instant::now() + within;
    loop {
        // The API server itself may be briefly away in some tests: retry the write.
        match api
            .patch(name, &Default::default(), &kube::api::Patch::Merge(&patch))
            .await
        {
            Ok(_) => break,
            Err(err) if Instant::now() < deadline => {
                eprintln!("annotate {name}: {err}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("annotate {name}: {err}"),
        }
    }
    loop {
        if let Ok(p) = api.get(name).await
            && last_handled_request(&p) == Some(value)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: request {value} not handled within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- kube-apiserver stopped and restarted ---------------------------------------

/// A kube-apiserver this test started itself, killed when dropped.
struct Apiserver(Child);

impl Drop for Apiserver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kill_pid(pid: u32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -KILL {pid}");
}

/// The exact command line of a running process.
fn command_line(pid: u32) -> Vec<OsString> {
    use std::os::unix::ffi::OsStrExt;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    raw.split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| std::ffi::OsStr::from_bytes(part).to_owned())
        .collect()
}

async fn wait_until_api_answers(plane: &ControlPlane, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(client) = plane.admin_client().await {
            let namespaces: Api<Namespace> = Api::all(client);
            if namespaces
                .get_opt("default")
                .await
                .is_ok_and(|n| n.is_some())
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "kube-apiserver did not come back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A scenario on a control plane of its own (the shared one serves the other
/// tests), so that its kube-apiserver can be killed.
async fn scenario_on_own_plane(prefix: &str) -> (Scenario, &'static ControlPlane) {
    let plane = ControlPlane::start(StartOptions {
        crds: vec![keyrotor_testenv::workspace_root().join("crds")],
        ..StartOptions::default()
    })
    .await
    .expect("control plane");
    let plane: &'static ControlPlane = Box::leak(Box::new(plane));
    let mut s = Scenario::new(prefix).await;
    s.plane = plane;
    s.namespace = plane.create_namespace(prefix).await.expect("ns");
    s.client = plane.admin_client().await.expect("client");
    (s, plane)
}

/// The running kube-apiserver's pid and exact command line.
fn apiserver_process(plane: &ControlPlane) -> (u32, Vec<OsString>) {
    let (_, pid) = plane
        .pids()
        .into_iter()
        .find(|(name, _)| name == "kube-apiserver")
        .expect("apiserver pid");
    (pid, command_line(pid))
}

/// Starts kube-apiserver again with the same command line (same port, certificates, etcd).
async fn restart_apiserver(plane: &ControlPlane, args: &[OsString]) -> Apiserver {
    let log = std::fs::File::create(plane.dir().join("kube-apiserver-restarted.log")).expect("log");
    let restarted = Apiserver(
        Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("kube-apiserver restarts"),
    );
    wait_until_api_answers(plane, Duration::from_secs(60)).await;
    restarted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_kube_apiserver_loses_no_rotation_and_is_reconnected_to() {
    let (mut s, plane) = scenario_on_own_plane("faults-apiserver").await;
    s.start_with_ready_policy(json!({"rotationCooldown": "0s"}))
        .await;
    let api = s.policies();
    request_and_wait(&api, "p", "r1", Duration::from_secs(30)).await;

    // Slow Cloudflare a little, so the kill lands inside the rotation of r2.
    s.sim().set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let (pid, args) = apiserver_process(plane);
    s.annotate("p", json!({ROTATE: "r2"})).await;
    // Kill it the moment the pending request is stored: the POST is then in
    // flight (300 ms), and the write of its outcome meets a dead API server.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = api.get("p").await.expect("policy");
        let pending = p
            .status
            .and_then(|st| st.pending_rotation)
            .map(|pr| pr.request);
        if pending.as_deref() == Some("r2") {
            break;
        }
        assert!(Instant::now() < deadline, "r2 never became pending");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Long enough for the operator's own watch to deliver that write, well
    // inside the POST's 300 ms.
    tokio::time::sleep(Duration::from_millis(100)).await;
    kill_pid(pid);
    let killed_at = Instant::now();
    // Down for a while: the operator's watches and writes fail meanwhile.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restarted = restart_apiserver(plane, &args).await;
    eprintln!("kube-apiserver was away for {:?}", killed_at.elapsed());
    s.client = plane.admin_client().await.expect("client");
    let api = s.policies();
    // r2 is confirmed after the restart, and stays done while the operator's
    // watches recover (its passes meanwhile decide from the cache it had).
    let deadline = Instant::now() + Duration::from_secs(60);
    while api
        .get("p")
        .await
        .ok()
        .as_ref()
        .and_then(last_handled_request)
        != Some("r2")
    {
        assert!(Instant::now() < deadline, "r2 lost\n{}", s.operator_log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("r2 handled {:?} after the kill", killed_at.elapsed());
    s.sim().set_faults(Faults::default());
    tokio::time::sleep(Duration::from_secs(15)).await;
    // r2's POST landed while the API server was down and the write of its
    // outcome failed; a later pass found the account moved and confirmed it.
    let log = s.operator_log();
    let posted = log
        .find("key rotated request=\"r2\"")
        .unwrap_or_else(|| panic!("r2 was not POSTed by the first pass:\n{log}"));
    assert!(
        log[posted..].contains("reconcile failed reason=\"KubernetesError\""),
        "the outcome write did not fail:\n{log}"
    );
    // (Neither a request made right after the restart nor the Rotated events
    // are counted here: the operator decides from its stale cache until its
    // watch has relisted; the ignored test below shows both going wrong.)
    let p = api.get("p").await.expect("policy");
    assert_eq!(
        p.status.as_ref().and_then(|st| st.last_rotate_outcome),
        Some(RotateOutcome::Rotated)
    );
    assert_eq!(s.calls("POST").len(), 2, "{:?}", s.sim().requests());
    assert_eq!(s.sim().account(ACCOUNT).expect("account").rotations, 2);
    let operator = s.operator.as_mut().expect("operator");
    assert_eq!(
        operator.wait_exit(Duration::ZERO).await,
        None,
        "the operator exited instead of reconnecting:\n{}",
        operator.log()
    );
    s.operator = None;
    drop(restarted);
}

/// After a kube-apiserver restart the operator's watches must relist
/// ("too old resource version"), which takes several seconds of backoff; the
/// reconciler meanwhile runs from its cache, which no longer matches what it
/// wrote. A request whose pending write failed (API server down) is begun
/// again after the restart, POSTed, recorded as handled, and then the next
/// pass, still deciding from the stale cached status (neither pending nor
/// handled), POSTs it a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cache_after_an_apiserver_restart_never_rotates_twice() {
    let (mut s, plane) = scenario_on_own_plane("faults-stale").await;
    s.start_with_ready_policy(json!({"rotationCooldown": "0s"}))
        .await;
    let api = s.policies();
    request_and_wait(&api, "p", "r1", Duration::from_secs(30)).await;
    // The next pass reads the account slowly: the API server dies while it does,
    // so its pending write fails and nothing is POSTed.
    s.sim().set_faults(Faults {
        latency_ms: 1500,
        ..Faults::default()
    });
    let (pid, args) = apiserver_process(plane);
    s.annotate("p", json!({ROTATE: "r2"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill_pid(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        posts_for(s.sim(), ACCOUNT),
        1,
        "r2 was not POSTed while the API server was down"
    );
    s.sim().set_faults(Faults::default());
    let restarted = restart_apiserver(plane, &args).await;
    s.client = plane.admin_client().await.expect("client");
    let api = s.policies();
    let deadline = Instant::now() + Duration::from_secs(60);
    while api
        .get("p")
        .await
        .ok()
        .as_ref()
        .and_then(last_handled_request)
        != Some("r2")
    {
        assert!(Instant::now() < deadline, "r2 lost\n{}", s.operator_log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the watches recover and every pass in between run.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let posts = s.calls("POST").len();
    let rotated: i32 = s
        .event_counts("p")
        .await
        .iter()
        .filter(|(reason, _, _)| reason == "Rotated")
        .map(|(_, _, count)| count)
        .sum();
    s.operator = None;
    drop(restarted);
    assert_eq!(posts, 2, "r1 and r2 once each: {:?}", s.sim().requests());
    assert_eq!(rotated, 2, "one Rotated event per rotation");
}

// ---- Cloudflare unreachable, then back ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cloudflare_is_api_error_then_recovers_without_losing_the_request() {
    let mut s = Scenario::new("faults-unreachable").await;
    s.start_with_ready_policy(json!({"rotationCooldown": "0s"}))
        .await;

    // Stop the simulator; its state lives on in the `Simulator` handle.
    let addr: SocketAddr = s.sim.addr();
    let simulator = s.sim().clone();
    let placeholder = Simulator::new(SimConfig::default())
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("placeholder");
    std::mem::replace(&mut s.sim, placeholder).shutdown().await;
    let p = s.wait_ready_reason("p", "ApiError").await;
    assert!(
        ready_message(&p).starts_with(
            "reading the account: could not reach Cloudflare (Connect) after 4 attempt(s)"
        ),
        "{}",
        ready_message(&p)
    );
    // A request made during the outage waits for Cloudflare.
    s.annotate("p", json!({ROTATE: "during-outage"})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(last_handled_request(&s.policy("p").await), None);

    // Back on the same address.
    s.sim = simulator.serve(addr).await.expect("simulator back");
    s.wait_for("p", "request handled after recovery", |p| {
        is_ready(p) && last_handled_request(p) == Some("during-outage")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.calls("POST").len(), 1);
    assert_eq!(s.sim().account(ACCOUNT).expect("account").rotations, 1);
}

// ---- 5xx -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_of_all_calls_failing_still_rotates_once_per_request() {
    let mut s = Scenario::new("faults-5xx").await;
    s.start_with_ready_policy(json!({"rotationCooldown": "0s"}))
        .await;
    s.sim().clear_requests();
    s.sim().set_faults(Faults {
        error_rate: 0.5,
        ..Faults::default()
    });
    let api = s.policies();
    for n in 1..=6 {
        request_and_wait(&api, "p", &format!("r{n}"), Duration::from_secs(60)).await;
    }
    s.sim().set_faults(Faults::default());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let posts = s.calls("POST");
    let landed = posts.iter().filter(|r| r.status == 200).count();
    let failed = posts.iter().filter(|r| r.status >= 500).count();
    eprintln!(
        "{} POSTs: {landed} landed, {failed} injected 5xx",
        posts.len()
    );
    assert_eq!(landed, 6, "one rotation per request");
    assert_eq!(landed + failed, posts.len());
    assert_eq!(s.sim().account(ACCOUNT).expect("account").rotations, 6);
    let p = s.wait_for("p", "Ready", is_ready).await;
    assert_eq!(
        p.status.and_then(|st| st.last_rotate_outcome),
        Some(RotateOutcome::Rotated)
    );
}

// ---- 429 ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_with_retry_after_is_waited_out_call_by_call() {
    let mut s = Scenario::new("faults-429").await;
    s.start_with_ready_policy(json!({})).await;
    s.sim().clear_requests();
    s.sim().set_faults(Faults {
        force_429: Some(Force429 {
            count: 6,
            retry_after_seconds: Some(1),
        }),
        ..Faults::default()
    });
    let p = s.wait_ready_reason("p", "RateLimited").await;
    assert_eq!(
        ready_message(&p),
        "reading the account: Cloudflare rate limit reached; retrying after 1 s"
    );
    s.wait_for("p", "Ready after the storm", is_ready).await;
    let requests = s.sim().requests();
    let limited: Vec<_> = requests.iter().filter(|r| r.status == 429).collect();
    assert_eq!(limited.len(), 6, "{requests:?}");
    // No call came sooner than Retry-After after a 429.
    for pair in requests.windows(2) {
        if pair[0].status == 429 {
            let gap = pair[1].time.duration_since(pair[0].time);
            assert!(
                gap >= jiff::SignedDuration::from_millis(950),
                "called {gap:?} after a 429: {requests:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_without_retry_after_blocks_only_that_credential_for_five_minutes() {
    let mut s = Scenario::new("faults-429-bare").await;
    s.apply_token_secret().await;
    s.apply_secret(
        "legacy",
        &[("apiKey", support::API_KEY), ("email", support::EMAIL)],
    )
    .await;
    s.start_operator();
    s.create_policy("token", json!({})).await;
    s.create_policy(
        "legacy",
        json!({"accountId": OTHER_ACCOUNT, "credentialsRef": {"name": "legacy"}}),
    )
    .await;
    s.wait_for("token", "Ready", is_ready).await;
    s.wait_for("legacy", "Ready", is_ready).await;
    // The next call, whichever credential makes it, gets a bare 429.
    s.sim().set_faults(Faults {
        force_429: Some(Force429 {
            count: 1,
            retry_after_seconds: None,
        }),
        ..Faults::default()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let limited = loop {
        if let Some(r) = s.sim().requests().into_iter().find(|r| r.status == 429) {
            break r;
        }
        assert!(Instant::now() < deadline, "no 429 happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (blocked_policy, other_policy, blocked_credential) = if limited.credential == "scenario" {
        ("token", "legacy", "scenario")
    } else {
        ("legacy", "token", "legacy")
    };
    let p = s.wait_ready_reason(blocked_policy, "RateLimited").await;
    assert_eq!(
        ready_message(&p),
        "reading the account: Cloudflare rate limit reached; retrying after 300 s"
    );
    s.sim().clear_requests();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = s.sim().requests();
    assert!(
        after.iter().all(|r| r.credential != blocked_credential),
        "the blocked credential was used within its 300 s: {after:?}"
    );
    assert!(
        after
            .iter()
            .filter(|r| r.credential != blocked_credential)
            .count()
            >= 3,
        "the other credential stopped too: {after:?}"
    );
    assert!(is_ready(&s.policy(other_policy).await));
}

// ---- One credential out of budget ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_out_of_budget_does_not_hold_up_another_credentials_policies() {
    let mut s = Scenario::new("fair").await;
    s.apply_token_secret().await;
    s.apply_secret("legacy", &[("apiKey", API_KEY), ("email", EMAIL)])
        .await;
    // One request per 2 s per credential and two workers: eight policies on
    // the token need 16 requests, about 30 s of its budget.
    s.start_operator_with(
        &[
            "--concurrency",
            "2",
            "--budget-requests",
            "1",
            "--budget-window",
            "2s",
            "--budget-burst",
            "1",
        ],
        &[],
    );
    let busy: Vec<String> = (0..8).map(|i| format!("busy-{i}")).collect();
    for (i, name) in busy.iter().enumerate() {
        let account = extra_account(&s, 100 + i as u32);
        s.create_policy(
            name,
            json!({"accountId": account, "driftCheckInterval": "1h"}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.create_policy(
        "quiet",
        json!({"accountId": OTHER_ACCOUNT, "credentialsRef": {"name": "legacy"}, "driftCheckInterval": "1h"}),
    )
    .await;
    s.wait_for("quiet", "Ready", is_ready).await;
    let policies = s.policies().list(&Default::default()).await.expect("list");
    let busy_ready = policies
        .items
        .iter()
        .filter(|p| p.metadata.name.as_deref() != Some("quiet") && is_ready(p))
        .count();
    // Workers are not left waiting on the busy credential: the quiet policy,
    // created last, was served while most busy ones still waited for budget.
    assert!(
        busy_ready <= 3,
        "{busy_ready} busy policies were Ready before the quiet one\n{}",
        s.operator_log()
    );
    // And the busy ones all get there, at the budget's pace, never faster.
    for name in &busy {
        s.wait_for(name, "Ready", is_ready).await;
    }
    let token_calls: Vec<_> = s
        .sim()
        .requests()
        .into_iter()
        .filter(|r| r.account_id.as_deref() != Some(OTHER_ACCOUNT))
        .collect();
    // One PUT each; a start-up pass may read an account once more.
    let puts = token_calls.iter().filter(|r| r.method == "PUT").count();
    assert_eq!(puts, busy.len(), "{token_calls:?}");
    // Never faster than the budget: one request per 2 s (1.9 s allows for
    // the arrival jitter the simulator's clock sees).
    for pair in token_calls.windows(2) {
        let gap = pair[1].time.duration_since(pair[0].time);
        assert!(
            gap >= jiff::SignedDuration::from_millis(1900),
            "{gap:?} between {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
    let scrape = s.operator.as_ref().expect("operator").scrape().await;
    assert!(
        scrape
            .lines()
            .any(|l| l.starts_with("keyrotor_budget_deferrals_total ") && !l.ends_with(" 0")),
        "{scrape}"
    );
}

// ---- Hanging answers -------------------------------------------------------------

/// The simulator behind a front that never answers calls for one account.
async fn hanging_front(simulator: &Simulator, account: &'static str) -> (String, Arc<AtomicUsize>) {
    let hung = Arc::new(AtomicUsize::new(0));
    let counter = hung.clone();
    let app = simulator.router().layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let counter = counter.clone();
            async move {
                if request.uri().path().contains(account) {
                    counter.fetch_add(1, Ordering::Relaxed);
                    std::future::pending::<()>().await;
                }
                next.run(request).await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/client/v4"), hung)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_account_times_out_and_does_not_stall_the_others() {
    let mut s = Scenario::new("faults-hang").await;
    s.apply_token_secret().await;
    let (url, hung) = hanging_front(s.sim(), OTHER_ACCOUNT).await;
    s.start_operator_with(
        &["--cloudflare-api-url", &url, "--request-timeout", "1s"],
        &[],
    );
    s.create_policy("hangs", json!({"accountId": OTHER_ACCOUNT}))
        .await;
    s.create_policy("healthy", json!({"rotationCooldown": "0s"}))
        .await;
    let started = Instant::now();
    let p = s.wait_ready_reason("hangs", "ApiError").await;
    assert!(
        ready_message(&p).starts_with(
            "reading the account: could not reach Cloudflare (Timeout) after 4 attempt(s)"
        ),
        "{}",
        ready_message(&p)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    s.wait_for("healthy", "Ready", is_ready).await;
    // While the other account keeps hanging, this one is checked and rotated.
    let api = s.policies();
    s.sim().clear_requests();
    for n in 1..=3 {
        request_and_wait(&api, "healthy", &format!("r{n}"), Duration::from_secs(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let gets = s.calls("GET").len();
    assert_eq!(s.calls("POST").len(), 3);
    assert!(
        gets >= 3,
        "the healthy policy stopped being checked: {gets} GETs"
    );
    assert!(
        hung.load(Ordering::Relaxed) >= 4,
        "every attempt on the hanging account timed out and was retried"
    );
    assert_eq!(
        s.wait_ready_reason("hangs", "ApiError")
            .await
            .metadata
            .name
            .as_deref(),
        Some("hangs")
    );
}

// ---- 100 rotate requests through random SIGKILLs --------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_requests_through_random_sigkills_rotate_exactly_a_hundred_times() {
    const POLICIES: u32 = 5;
    const PER_POLICY: u32 = 20;
    let mut s = Scenario::new("faults-kill").await;
    s.apply_token_secret().await;
    s.start_operator();
    let mut accounts = Vec::new();
    for n in 0..POLICIES {
        let account = extra_account(&s, n);
        s.create_policy(
            &format!("p{n}"),
            json!({"accountId": account, "rotationCooldown": "0s"}),
        )
        .await;
        accounts.push(account);
    }
    for n in 0..POLICIES {
        s.wait_for(&format!("p{n}"), "Ready", is_ready).await;
    }
    s.sim().clear_requests();
    // A little latency widens the windows between status write, POST and status write.
    s.sim().set_faults(Faults {
        latency_ms: 60,
        ..Faults::default()
    });
    let started = Instant::now();
    let drivers: Vec<_> = accounts
        .iter()
        .enumerate()
        .map(|(n, account)| {
            let api = s.policies();
            let simulator = s.sim().clone();
            let account = account.clone();
            tokio::spawn(async move {
                let name = format!("p{n}");
                for i in 1..=PER_POLICY {
                    let value = format!("kill-{n}-{i}");
                    request_and_wait(&api, &name, &value, Duration::from_secs(60)).await;
                    // Exactly one more rotation of this account per request, none later.
                    assert_eq!(
                        posts_for(&simulator, &account),
                        i as usize,
                        "{name} after {value}"
                    );
                }
            })
        })
        .collect();
    let mut kills = 0;
    while drivers.iter().any(|d| !d.is_finished()) {
        let wait = rand::rng().random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        s.operator.as_mut().expect("operator").kill();
        kills += 1;
        let pause = rand::rng().random_range(0..300);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        s.start_operator();
        assert!(started.elapsed() < Duration::from_secs(150), "too slow");
    }
    for driver in drivers {
        driver.await.expect("driver");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let posts = s.calls("POST");
    eprintln!(
        "{} POSTs, {kills} SIGKILLs, {:?}",
        posts.len(),
        started.elapsed()
    );
    assert!(kills >= 10, "only {kills} kills");
    assert_eq!(posts.len(), (POLICIES * PER_POLICY) as usize);
    assert!(posts.iter().all(|r| r.status == 200));
    for account in &accounts {
        assert_eq!(
            s.sim().account(account).expect("account").rotations,
            u64::from(PER_POLICY)
        );
    }
}

// ---- Leader killed during rotations --------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_during_rotations_never_rotates_twice() {
    let s = Scenario::new("faults-leader").await;
    s.apply_token_secret().await;
    let ns = s.namespace.clone();
    let spawn = |identity: String| -> (String, Operator) {
        let flags: Vec<String> = [
            "--leader-election",
            "true",
            "--leader-election-namespace",
            ns.as_str(),
            "--leader-election-lease-name",
            "keyrotor-faults",
            "--leader-election-lease-duration",
            "4s",
            "--leader-election-renew-deadline",
            "3s",
            "--leader-election-retry-period",
            "500ms",
            "--identity",
            identity.as_str(),
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let operator = s.spawn_operator(&identity, &flags, &[]);
        (identity, operator)
    };
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), &ns);
    let holder = || async {
        leases
            .get_opt("keyrotor-faults")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|sp| sp.holder_identity)
    };
    let mut replicas = vec![spawn("replica-0".into()), spawn("replica-1".into())];
    let mut next_identity = 2;
    s.create_policy("p", json!({"rotationCooldown": "0s"}))
        .await;
    s.wait_for("p", "Ready", is_ready).await;
    s.sim().set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    let api = s.policies();
    let requests = 12;
    let mut kills = 0;
    for i in 1..=requests {
        let value = format!("lead-{i}");
        if i % 3 == 0 {
            // Kill the leader a random moment after the request, while it rotates.
            s.annotate("p", json!({ROTATE: value.clone()})).await;
            tokio::time::sleep(Duration::from_millis(rand::rng().random_range(0..500))).await;
            let leader = holder().await.expect("a leader");
            let index = replicas
                .iter()
                .position(|(identity, _)| *identity == leader)
                .expect("the leader is one of ours");
            let (_, mut operator) = replicas.remove(index);
            operator.kill();
            kills += 1;
            replicas.push(spawn(format!("replica-{next_identity}")));
            next_identity += 1;
        }
        request_and_wait(&api, "p", &value, Duration::from_secs(30)).await;
        assert_eq!(posts_for(s.sim(), ACCOUNT), i, "after {value}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(kills, 4);
    assert_eq!(s.calls("POST").len(), requests);
    assert_eq!(
        s.sim().account(ACCOUNT).expect("account").rotations,
        requests as u64
    );
    assert_eq!(
        s.calls("PUT").len(),
        1,
        "one PUT, no duplicate after take-overs"
    );
}
