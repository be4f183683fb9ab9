//! A control plane that outlives the command that started it, for local
//! development (`testenv up|env|down`, `hack/dev-cluster.sh`). Its directory
//! holds the kubeconfig, a `pids` file and an `env` file for `eval`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::server::{has_exited, program_name};
use crate::{ControlPlane, StartOptions, TestEnvError};

const PIDS_FILE: &str = "pids";
const ENV_FILE: &str = "env";
/// How long `down` waits after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

/// Starts a control plane in `dir` with `crds` installed and leaves it running.
/// Fails if one is already running there; a stale `dir` is replaced.
pub async fn up(dir: &Path, crds: Vec<PathBuf>) -> Result<ControlPlane, TestEnvError> {
    if dir.exists() {
        if !running_pids(dir).is_empty() {
            return Err(TestEnvError::AlreadyRunning(dir.to_owned()));
        }
        ensure_ours(dir)?;
        std::fs::remove_dir_all(dir)
            .map_err(|e| TestEnvError::io(format!("removing stale {}", dir.display()), e))?;
    }
    let plane = ControlPlane::start(StartOptions {
        crds,
        keep_dir: Some(dir.to_owned()),
        ..StartOptions::default()
    })
    .await?;
    // Written before detaching: if this fails, dropping `plane` stops the servers.
    let pids: String = plane
        .pids()
        .iter()
        .map(|(name, pid)| format!("{name} {pid}\n"))
        .collect();
    write(&plane.dir().join(PIDS_FILE), &pids)?;
    write(&plane.dir().join(ENV_FILE), &env_script(&plane))?;
    Ok(plane)
}

/// The `export` lines (KUBECONFIG, PATH with kubectl) for the cluster in `dir`.
pub fn env(dir: &Path) -> Result<String, TestEnvError> {
    let path = dir.join(ENV_FILE);
    std::fs::read_to_string(&path).map_err(|e| TestEnvError::NoState {
        dir: dir.to_owned(),
        reason: format!("cannot read {}: {e} (is the cluster up?)", path.display()),
    })
}

/// Stops the cluster in `dir` (each server SIGTERM, then SIGKILL after a grace period)
/// and removes `dir`. Does nothing when `dir` does not exist.
pub fn down(dir: &Path) -> Result<(), TestEnvError> {
    if !dir.exists() {
        return Ok(());
    }
    ensure_ours(dir)?;
    // The API server first: it shuts down in about a second while etcd runs,
    // but hangs for its whole grace period once etcd is gone.
    for pid in running_pids(dir).into_iter().rev() {
        if !signal_and_wait(pid, "TERM", GRACE) {
            signal_and_wait(pid, "KILL", GRACE);
        }
    }
    std::fs::remove_dir_all(dir)
        .map_err(|e| TestEnvError::io(format!("removing {}", dir.display()), e))
}

/// Sends `signal` to `pid` and waits up to `grace` for it to exit; true if it did.
fn signal_and_wait(pid: u32, signal: &str, grace: Duration) -> bool {
    // A failure means the process is already gone, which the wait below sees.
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
    let deadline = Instant::now() + grace;
    while !has_exited(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// PIDs (in start order) from the `pids` file that still run the program named next to them;
/// checking the name guards against PIDs reused since `up`.
fn running_pids(dir: &Path) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string(dir.join(PIDS_FILE)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .filter_map(|(name, pid)| Some((name, pid.trim().parse::<u32>().ok()?)))
        .filter(|(name, pid)| !has_exited(*pid) && program_name(*pid).as_deref() == Some(*name))
        .map(|(_, pid)| pid)
        .collect()
}

/// Refuses to delete a directory that does not look like a control plane's.
fn ensure_ours(dir: &Path) -> Result<(), TestEnvError> {
    if dir.join(PIDS_FILE).is_file() || dir.join("pki/ca.crt").is_file() {
        return Ok(());
    }
    Err(TestEnvError::NoState {
        dir: dir.to_owned(),
        reason:
            "it exists but holds no control plane (no pids file, no pki/ca.crt); not touching it"
                .to_owned(),
    })
}

fn env_script(plane: &ControlPlane) -> String {
    format!(
        "export KUBECONFIG={}\nexport PATH={}:\"$PATH\"\n",
        shell_quote(&plane.kubeconfig_path().to_string_lossy()),
        shell_quote(&plane.tools_dir().to_string_lossy()),
    )
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn write(path: &Path, text: &str) -> Result<(), TestEnvError> {
    std::fs::write(path, text)
        .map_err(|e| TestEnvError::io(format!("writing {}", path.display()), e))
}
