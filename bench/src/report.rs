//! The report: each figure beside its floor and the ratio, as markdown and JSON.

use std::{fmt::Write, time::Duration};

use serde::Serialize;

use crate::{BenchConfig, floors::Floors};

/// Cold convergence of N policies.
#[derive(Debug, Clone, Serialize)]
pub struct Convergence {
    /// Policies.
    pub policies: usize,
    /// Credentials they share.
    pub credentials: usize,
    /// Seconds from operator start until all are Ready.
    pub seconds: f64,
    /// max(N × 2 × RTT / concurrency, (N × 2 − credentials × burst) / (credentials × budget rate)):
    /// every policy needs a GET and a PUT; each credential may start with a burst.
    pub floor_seconds: f64,
    /// seconds / floor.
    pub ratio: f64,
    /// Cloudflare requests per policy.
    pub cloudflare_requests_per_policy: f64,
    /// Kubernetes writes per policy (watch events of the policies).
    pub kubernetes_writes_per_policy: f64,
    /// Operator CPU (user + system) from its start until all were Ready.
    pub cpu_seconds: f64,
    /// `cpu_seconds` per policy, in milliseconds.
    pub cpu_ms_per_policy: f64,
    /// From the operator's start to its first Cloudflare call.
    pub startup_ms: f64,
    /// Reconcile passes per policy, from the operator's /metrics.
    pub passes: Passes,
}

/// Reconcile passes per policy until all were Ready.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Passes {
    /// Passes that ended, per policy.
    pub per_policy: f64,
    /// Of those, passes put off (on a credential's budget, or until the
    /// operator's own last write was seen) to be taken up again, per policy.
    pub put_off_per_policy: f64,
}

/// The operator's own figures at the end of cold convergence.
#[derive(Debug, Clone, Copy)]
pub struct ConvergenceCost {
    /// CPU from its start.
    pub cpu: Duration,
    /// From its start to its first Cloudflare call.
    pub startup: Duration,
    /// Passes that ended, and passes put off, in total.
    pub passes: (f64, f64),
}

impl Convergence {
    /// Computes the floor and ratios.
    pub fn new(
        policies: usize,
        credentials: usize,
        seconds: f64,
        requests: usize,
        writes: u64,
        cost: ConvergenceCost,
        report: &Report,
    ) -> Self {
        let n = policies as f64;
        let by_latency =
            n * 2.0 * report.floors.cloudflare_rtt.as_secs_f64() / f64::from(report.concurrency);
        let burst = credentials as f64 * f64::from(report.budget_burst);
        let by_budget =
            (n * 2.0 - burst).max(0.0) / (credentials as f64 * report.budget_rate_per_credential);
        let floor = by_latency.max(by_budget);
        Self {
            policies,
            credentials,
            seconds,
            floor_seconds: floor,
            ratio: seconds / floor,
            cloudflare_requests_per_policy: requests as f64 / n,
            kubernetes_writes_per_policy: writes as f64 / n,
            cpu_seconds: cost.cpu.as_secs_f64(),
            cpu_ms_per_policy: cost.cpu.as_secs_f64() * 1e3 / n,
            startup_ms: ms(cost.startup),
            passes: Passes {
                per_policy: cost.passes.0 / n,
                put_off_per_policy: cost.passes.1 / n,
            },
        }
    }
}

/// Rotation latency.
#[derive(Debug, Clone, Serialize)]
pub struct Rotation {
    /// Requests sent.
    pub requests: usize,
    /// POSTs the simulator saw (must equal requests).
    pub posts: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// One Cloudflare round trip + one watch delivery + two status writes (pending, handled).
    pub floor_ms: f64,
    /// What the protocol really needs: two round trips (GET then POST), two watch deliveries, two status writes.
    pub protocol_floor_ms: f64,
}

impl Rotation {
    /// Percentiles of the latencies.
    pub fn new(mut latencies: Vec<Duration>, posts: usize, report: &Report) -> Self {
        latencies.sort();
        let pick = |q: f64| {
            let i = ((latencies.len() as f64 * q).ceil() as usize)
                .saturating_sub(1)
                .min(latencies.len().saturating_sub(1));
            latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        let f = &report.floors;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Self {
            requests: latencies.len(),
            posts,
            p50_ms: pick(0.50),
            p95_ms: pick(0.95),
            p99_ms: pick(0.99),
            floor_ms: ms(f.cloudflare_rtt) + ms(f.watch_delivery) + 2.0 * ms(f.kubernetes_write),
            protocol_floor_ms: 2.0 * ms(f.cloudflare_rtt)
                + 2.0 * ms(f.watch_delivery)
                + 2.0 * ms(f.kubernetes_write),
        }
    }
}

/// Steady state.
#[derive(Debug, Clone, Serialize)]
pub struct Steady {
    /// Policies.
    pub policies: usize,
    /// Their drift interval.
    pub interval_seconds: f64,
    /// How long it was watched.
    pub window_seconds: f64,
    /// Writes to the policies in that time (target 0).
    pub kubernetes_writes: u64,
    /// Cloudflare GETs per policy per check (target 1).
    pub gets_per_policy_per_check: f64,
    /// Operator CPU, seconds per hour.
    pub cpu_seconds_per_hour: f64,
    /// Operator CPU per drift check (policies × checks in the window), ms.
    pub cpu_ms_per_check: f64,
}

/// Peak memory.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// Policies.
    pub policies: usize,
    /// Unrelated Secrets in the cluster.
    pub unrelated_secrets: usize,
    /// Peak RSS (VmHWM), MiB.
    pub peak_rss_mib: f64,
}

/// One credential for many policies.
#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    /// Policies on the one credential.
    pub policies: usize,
    /// Seconds watched.
    pub window_seconds: f64,
    /// Requests the simulator saw from that credential.
    pub requests: usize,
    /// Most requests in any 10 s.
    pub max_requests_in_10s: usize,
    /// What the budget allows in 10 s: rate × (10 s + 1 s of arrival jitter) + burst.
    pub allowed_in_10s: f64,
    /// `keyrotor_drift_checks_late_total` at the end.
    pub late_checks_metric: f64,
    /// Policies whose Ready message says checks run late.
    pub policies_told_in_condition: usize,
}

/// What one operator did in every stage.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorRun {
    /// `keyrotor`, or `peer` for `--peer`.
    pub name: String,
    /// Its binary.
    pub binary: String,
    /// Peak RSS with no policies, after a few seconds, MiB.
    pub idle_rss_mib: Option<f64>,
    /// Per N.
    pub convergence: Vec<Convergence>,
    /// Rotation latency.
    pub rotation: Option<Rotation>,
    /// Steady state.
    pub steady: Option<Steady>,
    /// Memory.
    pub memory: Vec<Memory>,
    /// Budget stage.
    pub budget: Option<Budget>,
}

impl OperatorRun {
    /// Nothing measured yet.
    pub fn new(name: &str, binary: &std::path::Path) -> Self {
        Self {
            name: name.to_owned(),
            binary: binary.display().to_string(),
            idle_rss_mib: None,
            convergence: Vec::new(),
            rotation: None,
            steady: None,
            memory: Vec::new(),
            budget: None,
        }
    }
}

/// Everything.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Measured floors.
    pub floors: Floors,
    /// Operator concurrency.
    pub concurrency: u16,
    /// Budget per credential, requests/s.
    pub budget_rate_per_credential: f64,
    /// Budget burst per credential.
    pub budget_burst: u32,
    /// Simulator latency set.
    pub rtt_setting_ms: u128,
    /// keyrotor first, then the peer (`--peer`), stage by stage in turn.
    pub runs: Vec<OperatorRun>,
    /// Wall time of the run.
    pub total_seconds: f64,
    /// `nproc` and memory of the machine.
    pub machine: String,
}

impl Report {
    /// An empty report for `config`.
    pub fn new(config: &BenchConfig, floors: Floors, budget_rate_per_credential: f64) -> Self {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .next()
                    .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
            })
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024 / 1024);
        let mut runs = vec![OperatorRun::new("keyrotor", &config.operator)];
        if let Some(peer) = &config.peer {
            runs.push(OperatorRun::new("peer", peer));
        }
        Self {
            floors,
            concurrency: config.concurrency,
            budget_rate_per_credential,
            budget_burst: 10,
            rtt_setting_ms: config.rtt.as_millis(),
            runs,
            total_seconds: 0.0,
            machine: format!("{cores} cores, {mem} GiB"),
        }
    }

    /// keyrotor's figures.
    pub fn keyrotor(&self) -> &OperatorRun {
        &self.runs[0]
    }

    /// The markdown tables: the side-by-side comparison when a peer ran,
    /// then each operator's own tables.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let f = &self.floors;
        let _ = writeln!(
            out,
            "Machine: {}. Simulator latency {} ms; measured: Cloudflare round trip {:.1} ms, Kubernetes write {:.1} ms, watch delivery {:.1} ms. Operator concurrency {}, budget {:.1} requests/s per credential. Run took {:.0} s.\n",
            self.machine,
            self.rtt_setting_ms,
            ms(f.cloudflare_rtt),
            ms(f.kubernetes_write),
            ms(f.watch_delivery),
            self.concurrency,
            self.budget_rate_per_credential,
            self.total_seconds
        );
        if let [ours, peer] = self.runs.as_slice() {
            side_by_side(&mut out, ours, peer);
        }
        for run in &self.runs {
            if self.runs.len() > 1 {
                let _ = writeln!(out, "\n## {} ({})\n", run.name, run.binary);
            }
            self.run_tables(&mut out, run);
        }
        out
    }

    fn run_tables(&self, out: &mut String, run: &OperatorRun) {
        if let Some(idle) = run.idle_rss_mib {
            let _ = writeln!(out, "Idle (no policies) peak RSS: {idle:.1} MiB.\n");
        }
        let _ = writeln!(
            out,
            "### Cold convergence\n\n| N | credentials | seconds to all Ready | floor (s) | ratio | Cloudflare requests / policy | Kubernetes writes / policy | CPU s | CPU ms / policy | passes / policy (put off) | start-up to first call (ms) |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for c in &run.convergence {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} ({:.2}) | {:.0} |",
                c.policies,
                c.credentials,
                c.seconds,
                c.floor_seconds,
                c.ratio,
                c.cloudflare_requests_per_policy,
                c.kubernetes_writes_per_policy,
                c.cpu_seconds,
                c.cpu_ms_per_policy,
                c.passes.per_policy,
                c.passes.put_off_per_policy,
                c.startup_ms
            );
        }
        out.push_str("\nFloor = max(N × 2 × RTT / concurrency, (N × 2 − credentials × burst) / (credentials × budget rate)): each policy needs one GET and one PUT, and each credential may start with a burst of 10. Passes are the operator's own count of ended reconciles (`keyrotor_reconciles_total`, put off: reasons `BudgetDeferred` and `CacheBehind`; the peer: `controller_runtime_reconcile_total`, whose workers wait for the budget instead of putting a pass off).\n");
        if let Some(r) = &run.rotation {
            let _ = writeln!(
                out,
                "\n### Rotation latency\n\n| requests | POSTs seen | p50 (ms) | p95 (ms) | p99 (ms) | floor (ms) | p99 − floor (ms) | protocol floor (ms) | p99 − protocol floor (ms) |\n|---|---|---|---|---|---|---|---|---|\n| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                r.requests,
                r.posts,
                r.p50_ms,
                r.p95_ms,
                r.p99_ms,
                r.floor_ms,
                r.p99_ms - r.floor_ms,
                r.protocol_floor_ms,
                r.p99_ms - r.protocol_floor_ms
            );
            out.push_str("\nFloor = one Cloudflare round trip + one watch delivery + two status writes (pending, handled). The protocol floor adds the GET that must precede the POST and the watch delivery back to the client.\n");
        }
        if let Some(s) = &run.steady {
            let _ = writeln!(
                out,
                "\n### Steady state\n\n| N | drift interval (s) | window (s) | Kubernetes writes (target 0) | GETs / policy / check (target 1) | operator CPU s / hour | CPU ms / drift check |\n|---|---|---|---|---|---|---|\n| {} | {:.0} | {:.0} | {} | {:.2} | {:.1} | {:.3} |",
                s.policies,
                s.interval_seconds,
                s.window_seconds,
                s.kubernetes_writes,
                s.gets_per_policy_per_check,
                s.cpu_seconds_per_hour,
                s.cpu_ms_per_check
            );
        }
        let _ = writeln!(
            out,
            "\n### Memory\n\n| N | unrelated Secrets | peak RSS (MiB) | target (MiB) |\n|---|---|---|---|"
        );
        for m in &run.memory {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {} |",
                m.policies,
                m.unrelated_secrets,
                m.peak_rss_mib,
                if m.policies >= 10_000 { "40" } else { "-" }
            );
        }
        if let Some(b) = &run.budget {
            let _ = writeln!(
                out,
                "\n### All {} policies on one credential\n\n| window (s) | requests seen | most in any 10 s | allowed in 10 s | late-check metric | policies told in Ready |\n|---|---|---|---|---|---|\n| {:.0} | {} | {} | {:.0} | {:.0} | {} |",
                b.policies,
                b.window_seconds,
                b.requests,
                b.max_requests_in_10s,
                b.allowed_in_10s,
                b.late_checks_metric,
                b.policies_told_in_condition
            );
        }
    }
}

/// One row of the comparison: both figures, keyrotor's over the peer's, and the target.
fn row(out: &mut String, figure: &str, ours: Option<f64>, peer: Option<f64>, target: &str) {
    let cell = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    let ratio = match (ours, peer) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".to_owned(),
    };
    let _ = writeln!(
        out,
        "| {figure} | {} | {} | {ratio} | {target} |",
        cell(ours),
        cell(peer)
    );
}

/// The comparison table: the same stages, run in turn, on the same machine.
fn side_by_side(out: &mut String, ours: &OperatorRun, peer: &OperatorRun) {
    let _ = writeln!(
        out,
        "### Side by side: {} and {}\n\n| figure | {} | {} | ratio | target |\n|---|---|---|---|---|",
        ours.name, peer.name, ours.name, peer.name
    );
    row(
        out,
        "peak RSS idle (MiB)",
        ours.idle_rss_mib,
        peer.idle_rss_mib,
        "ratio ≤ 0.5",
    );
    let at =
        |run: &OperatorRun, n: usize| run.convergence.iter().find(|c| c.policies == n).cloned();
    for c in &ours.convergence {
        let n = c.policies;
        let p = at(peer, n);
        let big = n >= 10_000;
        row(
            out,
            &format!("N={n}: seconds to all Ready (floor {:.1})", c.floor_seconds),
            Some(c.seconds),
            p.as_ref().map(|p| p.seconds),
            "≤ 1.2 × floor",
        );
        row(
            out,
            &format!("N={n}: CPU ms per converged policy"),
            Some(c.cpu_ms_per_policy),
            p.as_ref().map(|p| p.cpu_ms_per_policy),
            if big { "ratio ≤ 0.5" } else { "-" },
        );
        row(
            out,
            &format!("N={n}: passes per policy"),
            Some(c.passes.per_policy),
            p.as_ref().map(|p| p.passes.per_policy),
            "-",
        );
        row(
            out,
            &format!("N={n}: start-up to first Cloudflare call (ms)"),
            Some(c.startup_ms),
            p.as_ref().map(|p| p.startup_ms),
            "< 100",
        );
    }
    for m in &ours.memory {
        let p = peer
            .memory
            .iter()
            .find(|p| p.policies == m.policies && p.unrelated_secrets == m.unrelated_secrets);
        let target = if m.policies >= 10_000 {
            "ratio ≤ 0.5, < 40"
        } else {
            "ratio ≤ 0.5"
        };
        row(
            out,
            &format!(
                "N={}, {} unrelated Secrets: peak RSS (MiB)",
                m.policies, m.unrelated_secrets
            ),
            Some(m.peak_rss_mib),
            p.map(|p| p.peak_rss_mib),
            target,
        );
    }
    if let Some(r) = &ours.rotation {
        let p = peer.rotation.as_ref();
        row(
            out,
            "rotation p50 (ms)",
            Some(r.p50_ms),
            p.map(|p| p.p50_ms),
            "-",
        );
        row(
            out,
            &format!(
                "rotation p99 (ms; protocol floor {:.0})",
                r.protocol_floor_ms
            ),
            Some(r.p99_ms),
            p.map(|p| p.p99_ms),
            "≤ protocol floor + 25",
        );
    }
    if let Some(s) = &ours.steady {
        let p = peer.steady.as_ref();
        row(
            out,
            &format!("steady, N={}: CPU s / hour", s.policies),
            Some(s.cpu_seconds_per_hour),
            p.map(|p| p.cpu_seconds_per_hour),
            "-",
        );
        row(
            out,
            &format!("steady, N={}: CPU ms per drift check", s.policies),
            Some(s.cpu_ms_per_check),
            p.map(|p| p.cpu_ms_per_check),
            "ratio ≤ 0.5",
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
