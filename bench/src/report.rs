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
}

impl Convergence {
    /// Computes the floor and ratios.
    pub fn new(
        policies: usize,
        credentials: usize,
        seconds: f64,
        requests: usize,
        writes: u64,
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
        Self {
            floors,
            concurrency: config.concurrency,
            budget_rate_per_credential,
            budget_burst: 10,
            rtt_setting_ms: config.rtt.as_millis(),
            convergence: Vec::new(),
            rotation: None,
            steady: None,
            memory: Vec::new(),
            budget: None,
            total_seconds: 0.0,
            machine: format!("{cores} cores, {mem} GiB"),
        }
    }

    /// The markdown tables.
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
        let _ = writeln!(
            out,
            "### Cold convergence\n\n| N | credentials | seconds to all Ready | floor (s) | ratio | Cloudflare requests / policy | Kubernetes writes / policy |\n|---|---|---|---|---|---|---|"
        );
        for c in &self.convergence {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} |",
                c.policies,
                c.credentials,
                c.seconds,
                c.floor_seconds,
                c.ratio,
                c.cloudflare_requests_per_policy,
                c.kubernetes_writes_per_policy
            );
        }
        out.push_str("\nFloor = max(N × 2 × RTT / concurrency, (N × 2 − credentials × burst) / (credentials × budget rate)): each policy needs one GET and one PUT, and each credential may start with a burst of 10.\n");
        if let Some(r) = &self.rotation {
            let _ = writeln!(
                out,
                "\n### Rotation latency\n\n| requests | POSTs seen | p50 (ms) | p95 (ms) | p99 (ms) | floor (ms) | p99 − floor (ms) | protocol floor (ms) |\n|---|---|---|---|---|---|---|---|\n| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                r.requests,
                r.posts,
                r.p50_ms,
                r.p95_ms,
                r.p99_ms,
                r.floor_ms,
                r.p99_ms - r.floor_ms,
                r.protocol_floor_ms
            );
            out.push_str("\nFloor = one Cloudflare round trip + one watch delivery + two status writes (pending, handled). The protocol floor adds the GET that must precede the POST and the watch delivery back to the client.\n");
        }
        if let Some(s) = &self.steady {
            let _ = writeln!(
                out,
                "\n### Steady state\n\n| N | drift interval (s) | window (s) | Kubernetes writes (target 0) | GETs / policy / check (target 1) | operator CPU s / hour |\n|---|---|---|---|---|---|\n| {} | {:.0} | {:.0} | {} | {:.2} | {:.1} |",
                s.policies,
                s.interval_seconds,
                s.window_seconds,
                s.kubernetes_writes,
                s.gets_per_policy_per_check,
                s.cpu_seconds_per_hour
            );
        }
        let _ = writeln!(
            out,
            "\n### Memory\n\n| N | unrelated Secrets | peak RSS (MiB) | target (MiB) |\n|---|---|---|---|"
        );
        for m in &self.memory {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {} |",
                m.policies,
                m.unrelated_secrets,
                m.peak_rss_mib,
                if m.policies >= 10_000 { "64" } else { "-" }
            );
        }
        if let Some(b) = &self.budget {
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
        out
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
