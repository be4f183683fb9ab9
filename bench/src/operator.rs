//! The operator under test, as its own process, with its memory and CPU read
//! from /proc.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A running operator.
pub struct OperatorProcess {
    child: Child,
    log: std::path::PathBuf,
}

impl OperatorProcess {
    /// Starts `binary run` against the simulator, limited to one stage's policies.
    pub fn start(
        binary: &Path,
        kubeconfig: &Path,
        api_url: &str,
        stage: usize,
        concurrency: u16,
        log: std::path::PathBuf,
    ) -> anyhow::Result<Self> {
        let out = std::fs::File::create(&log)?;
        // KEYROTOR_BENCH_WRAP runs the operator under a profiler, e.g.
        // "heaptrack -o target/bench/heap" (docs/benchmarks.md).
        let wrap = std::env::var("KEYROTOR_BENCH_WRAP").unwrap_or_default();
        let mut command = match wrap.split_whitespace().collect::<Vec<_>>().split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let child = command
            .args(["run", "--cloudflare-api-url", api_url])
            .args(["--label-selector", &format!("keyrotor-bench/stage={stage}")])
            .args([
                "--drift-check-floor",
                "1s",
                // The bench's policies rotate with `rotationCooldown: 0s`.
                "--min-rotation-cooldown",
                "0s",
                "--metrics-address",
                "127.0.0.1:0",
                // The benchmark scrapes plain, open /metrics on loopback.
                "--metrics-auth",
                "none",
                "--metrics-tls",
                "false",
            ])
            .args([
                "--concurrency",
                &concurrency.to_string(),
                "--log-level",
                "info",
            ])
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(Self { child, log })
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM:")
    }

    /// CPU time used so far (user + system).
    pub fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name; USER_HZ is 100.
        Duration::from_millis((ticks(11) + ticks(12)) * 10)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The /metrics URL, from the log.
    pub fn metrics_url(&self) -> Option<String> {
        let marker = "serving /metrics, /healthz and /readyz address=";
        self.log()
            .lines()
            .find_map(|line| line.split(marker).nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .map(|address| format!("http://{address}/metrics"))
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
