//! The stages: cold convergence and memory per N, rotation latency, steady
//! state, and one credential's budget under 10,000 policies.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use keyrotor::crd::AccessKeyPolicy;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::watcher,
};
use serde_json::json;

use crate::{
    BenchConfig, floors,
    operator::OperatorProcess,
    report::{Budget, Convergence, ConvergenceCost, Memory, Report, Rotation, Steady},
    world::{World, is_ready},
};

/// Counts the stage's policy writes seen on a watch, which policies are
/// Ready, and when each rotate request was first seen handled. One watch
/// instead of polling lists, so measuring adds little load to the API server.
struct Observer {
    writes: Arc<AtomicU64>,
    ready: Arc<Mutex<HashSet<String>>>,
    handled: Arc<Mutex<HashMap<String, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    async fn start(world: &World, namespace: &str) -> Self {
        let writes = Arc::new(AtomicU64::new(0));
        let ready = Arc::new(Mutex::new(HashSet::new()));
        let handled = Arc::new(Mutex::new(HashMap::new()));
        let api: Api<AccessKeyPolicy> = Api::namespaced(world.client.clone(), namespace);
        let (w, r, h) = (writes.clone(), ready.clone(), handled.clone());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut events = watcher(api, watcher::Config::default()).boxed();
            let mut listed = false;
            while let Some(event) = events.next().await {
                if let Ok(watcher::Event::Apply(policy) | watcher::Event::InitApply(policy)) =
                    &event
                    && let Ok(mut ready) = r.lock()
                {
                    if is_ready(policy) {
                        ready.insert(policy.name_any());
                    } else {
                        ready.remove(&policy.name_any());
                    }
                }
                match event {
                    Ok(watcher::Event::InitDone) => {
                        listed = true;
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(watcher::Event::Apply(policy)) if listed => {
                        w.fetch_add(1, Ordering::Relaxed);
                        if let Some(request) =
                            policy.status.and_then(|s| s.last_handled_rotate_request)
                            && let Ok(mut map) = h.lock()
                        {
                            map.entry(request).or_insert_with(Instant::now);
                        }
                    }
                    _ => {}
                }
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(30), ready_rx).await;
        Self {
            writes,
            ready,
            handled,
            task,
        }
    }

    fn ready_count(&self) -> usize {
        self.ready.lock().map_or(0, |r| r.len())
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    fn handled_at(&self, request: &str) -> Option<Instant> {
        self.handled
            .lock()
            .ok()
            .and_then(|m| m.get(request).copied())
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs everything in order: each stage for keyrotor, then for the peer
/// (`--peer`), each on policies of its own.
pub async fn run_all(config: &BenchConfig) -> anyhow::Result<Report> {
    let started = Instant::now();
    let world = World::start(config.rtt).await?;
    let floors = floors::measure(&world).await?;
    eprintln!("bench: floors {floors:?}");
    let budget_rate = 600.0 / 300.0; // the operator's default budget per credential
    let mut report = Report::new(config, floors, budget_rate);
    let binaries: Vec<PathBuf> = std::iter::once(config.operator.clone())
        .chain(config.peer.clone())
        .collect();
    let largest = config.sizes.iter().copied().max().unwrap_or(0);

    if !config.convergence_only {
        for (run, binary) in binaries.iter().enumerate() {
            report.runs[run].idle_rss_mib = Some(idle(&world, config, binary).await?);
        }
    }
    for &n in &config.sizes {
        let turns: Vec<Turn> = binaries
            .iter()
            .enumerate()
            .map(|(run, binary)| Turn::new(run, binary, n))
            .collect();
        let mut namespaces = Vec::new();
        for turn in &turns {
            namespaces.push(size_stage(&world, config, &mut report, turn).await?);
        }
        if n == largest && config.noise_secrets > 0 && !config.convergence_only {
            eprintln!("bench: creating {} unrelated Secrets", config.noise_secrets);
            world.create_noise(config.noise_secrets).await?;
            for (turn, namespace) in turns.iter().zip(&namespaces) {
                noise_stage(&world, config, &mut report, turn, namespace).await?;
            }
        }
    }
    report.total_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// One operator's turn at one size.
struct Turn<'a> {
    /// Index into the report's runs (keyrotor first).
    run: usize,
    binary: &'a Path,
    /// Policies.
    n: usize,
    /// Its stage: accounts, policies and label of its own, never another
    /// operator's (N × 10 + run; stage 0 has no policies).
    stage: usize,
}

impl<'a> Turn<'a> {
    fn new(run: usize, binary: &'a Path, n: usize) -> Self {
        Self {
            run,
            binary,
            n,
            stage: n * 10 + run,
        }
    }

    /// The credentials the stage's policies are spread over.
    fn credentials(&self, config: &BenchConfig) -> usize {
        config.credentials.min(self.n).max(1)
    }
}

/// Peak RSS of an operator that has no policies, a few seconds after its start.
async fn idle(world: &World, config: &BenchConfig, binary: &Path) -> anyhow::Result<f64> {
    // Stage 0 has no policies (stages are N × 10 + run).
    let mut operator = start_operator(world, config, binary, 0, "idle")?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    anyhow::ensure!(operator.alive(), "the operator exited:\n{}", operator.log());
    Ok(operator.peak_rss_kib() as f64 / 1024.0)
}

/// Cold convergence of `n` policies, then (at the rotation size) rotation
/// latency and steady state; the operator's memory at the end. Returns the
/// stage's namespace.
async fn size_stage(
    world: &World,
    config: &BenchConfig,
    report: &mut Report,
    turn: &Turn<'_>,
) -> anyhow::Result<String> {
    let &Turn {
        run,
        binary,
        n,
        stage,
    } = turn;
    let rotation_size = config
        .sizes
        .iter()
        .copied()
        .filter(|n| *n <= 1_000)
        .max()
        .unwrap_or(config.sizes[0]);
    let measured = n == rotation_size && !config.convergence_only;
    let interval = if measured {
        config.steady_interval
    } else {
        Duration::from_secs(600)
    };
    let name = report.runs[run].name.clone();
    let credentials = turn.credentials(config);
    eprintln!("bench: {name} N={n}: creating {n} policies over {credentials} credentials");
    let namespace = world.create_stage(stage, n, credentials, interval).await?;
    let observer = Observer::start(world, &namespace).await;
    let spawned = jiff::Timestamp::now();
    let mut operator = start_operator(world, config, binary, stage, "cold")?;
    let start = Instant::now();
    loop {
        if observer.ready_count() == n {
            break;
        }
        anyhow::ensure!(operator.alive(), "the operator exited:\n{}", operator.log());
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(1800),
            "N={n} did not converge in 30 min"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = operator.cpu();
    let passes = passes_settled(&operator, n).await;
    let listed = world.policies(&namespace).await?;
    anyhow::ensure!(
        listed.iter().filter(|p| is_ready(p)).count() == n,
        "the watch saw every policy Ready, a list does not"
    );
    let prefix = format!("{stage:08x}");
    let requests = world.sim.simulator().requests();
    let ours = requests.iter().filter(|r| {
        r.account_id
            .as_deref()
            .is_some_and(|a| a.starts_with(&prefix))
    });
    let first_call = ours.clone().map(|r| r.time).min().unwrap_or(spawned);
    let cost = ConvergenceCost {
        cpu,
        startup: first_call.duration_since(spawned).unsigned_abs(),
        passes,
    };
    let convergence = Convergence::new(
        n,
        credentials,
        seconds,
        ours.count(),
        observer.writes(),
        cost,
        report,
    );
    report.runs[run].convergence.push(convergence);
    eprintln!("bench: {name} N={n} converged in {seconds:.1} s");
    // For profiling: the simulator's request log (time, credential, method,
    // status) and the operator's log of this stage.
    if let Ok(path) = std::env::var("KEYROTOR_BENCH_DUMP") {
        let lines: Vec<String> = requests
            .iter()
            .map(|r| format!("{} {} {} {}", r.time, r.credential, r.method, r.status))
            .collect();
        std::fs::write(format!("{path}-{name}-{n}.txt"), lines.join("\n"))?;
        std::fs::write(format!("{path}-{name}-{n}.log"), operator.log())?;
    }

    if measured {
        let rotation = rotations(world, &namespace, &observer, config, report).await?;
        report.runs[run].rotation = Some(rotation);
        report.runs[run].steady =
            Some(steady(world, &observer, &operator, n, config, stage).await?);
    }
    report.runs[run].memory.push(Memory {
        policies: n,
        unrelated_secrets: 0,
        peak_rss_mib: operator.peak_rss_kib() as f64 / 1024.0,
    });
    Ok(namespace)
}

/// The same policies, a fresh operator, and many Secrets it must ignore; then
/// all policies on one credential.
async fn noise_stage(
    world: &World,
    config: &BenchConfig,
    report: &mut Report,
    turn: &Turn<'_>,
    namespace: &str,
) -> anyhow::Result<()> {
    let &Turn {
        run,
        binary,
        n,
        stage,
    } = turn;
    let budget_rate = report.budget_rate_per_credential;
    let credentials = turn.credentials(config);
    let mut noisy = start_operator(world, config, binary, stage, "noise")?;
    // Long enough to list everything and re-check every policy once.
    let settle =
        Duration::from_secs_f64((n as f64 / (credentials as f64 * budget_rate)).clamp(5.0, 120.0));
    tokio::time::sleep(settle).await;
    anyhow::ensure!(noisy.alive(), "the operator exited:\n{}", noisy.log());
    report.runs[run].memory.push(Memory {
        policies: n,
        unrelated_secrets: config.noise_secrets,
        peak_rss_mib: noisy.peak_rss_kib() as f64 / 1024.0,
    });
    drop(noisy);
    if !config.budget_window.is_zero() {
        report.runs[run].budget =
            Some(budget(world, namespace, binary, n, credentials, stage, config).await?);
    }
    Ok(())
}

/// The passes of a converged stage. The last policies' statuses reach the
/// watch before their passes end and are counted, so this reads until every
/// policy's pass is counted, for at most two seconds.
async fn passes_settled(operator: &OperatorProcess, n: usize) -> (f64, f64) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let counted = passes(operator).await;
        if counted.0 >= n as f64 || Instant::now() >= deadline {
            return counted;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reconcile passes ended and put off so far, from the operator's /metrics:
/// keyrotor's `keyrotor_reconciles_total` (put off: `BudgetDeferred`,
/// `CacheBehind`), or controller-runtime's `controller_runtime_reconcile_total`.
async fn passes(operator: &OperatorProcess) -> (f64, f64) {
    let metrics = match operator.metrics_url() {
        Some(url) => fetch(&url).await.unwrap_or_default(),
        None => String::new(),
    };
    let mut ended = 0.0;
    let mut put_off = 0.0;
    for line in metrics.lines() {
        let counted = line.starts_with("keyrotor_reconciles_total{")
            || line.starts_with("controller_runtime_reconcile_total{");
        let Some(value) = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|_| counted)
        else {
            continue;
        };
        ended += value;
        if line.contains("reason=\"BudgetDeferred\"") || line.contains("reason=\"CacheBehind\"") {
            put_off += value;
        }
    }
    (ended, put_off)
}

/// An operator for one stage, logging into the control plane's directory.
fn start_operator(
    world: &World,
    config: &BenchConfig,
    binary: &Path,
    stage: usize,
    label: &str,
) -> anyhow::Result<OperatorProcess> {
    let name = binary
        .file_name()
        .map_or("operator".into(), |f| f.to_string_lossy());
    OperatorProcess::start(
        binary,
        world.plane.kubeconfig_path(),
        &world.sim.base_url(),
        stage,
        config.concurrency,
        world
            .plane
            .dir()
            .join(format!("{name}-{stage}-{label}.log")),
    )
}

async fn rotations(
    world: &World,
    namespace: &str,
    observer: &Observer,
    config: &BenchConfig,
    report: &Report,
) -> anyhow::Result<Rotation> {
    let api: Api<AccessKeyPolicy> = Api::namespaced(world.client.clone(), namespace);
    let mut sent = Vec::new();
    for i in 0..config.rotations {
        let request = format!("bench-{i}-{}", jiff::Timestamp::now().as_nanosecond());
        let patch =
            json!({"metadata": {"annotations": {"keyrotor.dev/rotate-requested-at": request}}});
        api.patch(
            &format!("p-{i}"),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
        sent.push((request, Instant::now()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut latencies = Vec::new();
    for (request, at) in &sent {
        loop {
            if let Some(seen) = observer.handled_at(request) {
                latencies.push(seen.saturating_duration_since(*at));
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "rotate request {request} was not handled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let posts = world
        .sim
        .simulator()
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    Ok(Rotation::new(latencies, posts, report))
}

async fn steady(
    world: &World,
    observer: &Observer,
    operator: &OperatorProcess,
    n: usize,
    config: &BenchConfig,
    stage: usize,
) -> anyhow::Result<Steady> {
    // Let the rotations' follow-up checks pass first.
    tokio::time::sleep(config.steady_interval * 2).await;
    let prefix = format!("{stage:08x}");
    let count_gets = || {
        world
            .sim
            .simulator()
            .requests()
            .iter()
            .filter(|r| {
                r.method == "GET"
                    && r.account_id
                        .as_deref()
                        .is_some_and(|a| a.starts_with(&prefix))
            })
            .count()
    };
    let (writes0, gets0, cpu0, t0) = (
        observer.writes(),
        count_gets(),
        operator.cpu(),
        Instant::now(),
    );
    tokio::time::sleep(config.steady_interval * config.steady_checks).await;
    let elapsed = t0.elapsed();
    let checks = elapsed.as_secs_f64() / config.steady_interval.as_secs_f64();
    let cpu = operator.cpu().saturating_sub(cpu0);
    Ok(Steady {
        policies: n,
        interval_seconds: config.steady_interval.as_secs_f64(),
        window_seconds: elapsed.as_secs_f64(),
        kubernetes_writes: observer.writes() - writes0,
        gets_per_policy_per_check: (count_gets() - gets0) as f64 / (n as f64 * checks),
        cpu_seconds_per_hour: cpu.as_secs_f64() * 3600.0 / elapsed.as_secs_f64(),
        cpu_ms_per_check: cpu.as_secs_f64() * 1e3 / (n as f64 * checks),
    })
}

/// Points every Secret of the stage at one token, then starts an operator
/// (which checks every policy once on its start, now all on that credential)
/// and watches the credential's requests and what the operator says.
async fn budget(
    world: &World,
    namespace: &str,
    binary: &Path,
    n: usize,
    credentials: usize,
    stage: usize,
    config: &BenchConfig,
) -> anyhow::Result<Budget> {
    // Every Secret now holds the same token: one credential for all N policies.
    let shared = World::token(stage, 0);
    let secrets: Api<Secret> = Api::namespaced(world.client.clone(), namespace);
    world.sim.simulator().clear_requests();
    let started = jiff::Timestamp::now();
    for c in 1..credentials {
        let patch = json!({"stringData": {"apiToken": shared}});
        secrets
            .patch(
                &format!("cf-{c}"),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
    }
    // A running operator would only find out at each policy's next check (10
    // minutes at N = 10,000); a fresh one checks every policy at once, all of
    // them against the one credential's budget.
    let operator = start_operator(world, config, binary, stage, "budget")?;
    tokio::time::sleep(config.budget_window).await;
    let times: Vec<jiff::Timestamp> = world
        .sim
        .simulator()
        .requests()
        .iter()
        .filter(|r| r.credential == format!("s{stage}-c0") && r.time >= started)
        .map(|r| r.time)
        .collect();
    // Largest number of requests in any 10 s window.
    let window = jiff::SignedDuration::from_secs(10);
    let mut max_in_window = 0;
    let mut first = 0;
    for last in 0..times.len() {
        while times[last].duration_since(times[first]) > window {
            first += 1;
        }
        max_in_window = max_in_window.max(last - first + 1);
    }
    let metrics = match operator.metrics_url() {
        Some(url) => fetch(&url).await.unwrap_or_default(),
        None => String::new(),
    };
    let late_checks = metrics
        .lines()
        .find(|l| l.starts_with("keyrotor_drift_checks_late_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let policies = world.policies(namespace).await?;
    let told = policies
        .iter()
        .filter(|p| {
            p.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.message.contains("drift checks run late"))
            })
        })
        .count();
    Ok(Budget {
        policies: n,
        window_seconds: config.budget_window.as_secs_f64(),
        requests: times.len(),
        max_requests_in_10s: max_in_window,
        // rate × (10 s + 1 s of arrival jitter at the simulator) + burst
        allowed_in_10s: 2.0 * 11.0 + 10.0,
        late_checks_metric: late_checks,
        policies_told_in_condition: told,
    })
}

async fn fetch(url: &str) -> anyhow::Result<String> {
    use http_body_util::BodyExt;
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    // Scraped as Prometheus scrapes, gzip accepted: both operators compress
    // then, and the memory a scrape takes is the memory a user's scrape takes.
    let client =
        Client::builder(TokioExecutor::new()).build_http::<http_body_util::Empty<bytes::Bytes>>();
    let request = http::Request::get(url)
        .header(http::header::ACCEPT_ENCODING, "gzip")
        .body(http_body_util::Empty::new())?;
    let response = client.request(request).await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let gzipped = response
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|coding| coding == "gzip");
    let body = response.into_body().collect().await?.to_bytes();
    if !gzipped {
        return Ok(String::from_utf8(body.to_vec())?);
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text)?;
    Ok(text)
}
