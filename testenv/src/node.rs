//! A real single-node cluster (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, containerd + runc, kubelet, kube-proxy), started by
//! `hack/node.sh` inside a network namespace and a private mount namespace of
//! its own (docs/e2e.md).
//!
//! [`Node::start`] puts `hack/node.sh down` under the lifeline watchdog before
//! anything starts, so the node is torn down however the test process ends:
//! [`Node::stop`], drop, panic or SIGKILL.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::TestEnvError;
use crate::lifeline::Lifeline;
use crate::tools::workspace_root;

/// Environment variable naming the directory with the node's binaries
/// (`hack/install-tools.sh --node --print-dir`).
pub const NODE_TOOLS_DIR_ENV: &str = "KEYROTOR_NODE_TOOLS_DIR";

/// Whether this process may start a node (it must be root).
pub fn node_supported() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("");
    if euid == "0" {
        Ok(())
    } else {
        Err(format!(
            "a real node needs root (network and mount namespaces, cgroups); euid is {euid:?}"
        ))
    }
}

/// A running node. Dropping it tears it down.
#[derive(Debug)]
pub struct Node {
    base: PathBuf,
    dir: PathBuf,
    env: BTreeMap<String, String>,
    lifeline: Option<Lifeline>,
    started_in: Duration,
}

impl Node {
    /// Starts a node and waits until it is Ready. Blocking.
    pub fn start() -> Result<Self, TestEnvError> {
        node_supported().map_err(TestEnvError::Tools)?;
        let started = Instant::now();
        let base = tempfile::Builder::new()
            .prefix("keyrotor-node-")
            .tempdir()
            .map_err(|e| TestEnvError::io("creating the node's directory", e))?
            .keep();
        let dir = base.join("node");
        let script = node_script();
        let cleanup: Vec<&OsStr> = vec![
            script.as_os_str(),
            OsStr::new("down"),
            OsStr::new("--dir"),
            dir.as_os_str(),
        ];
        // The watchdog's log goes into the directory it finally removes.
        let lifeline =
            Lifeline::start_with_cleanup(Some(&base), &cleanup, Some(&base.join("down.log")))?;
        let mut node = Self {
            base,
            dir,
            env: BTreeMap::new(),
            lifeline: Some(lifeline),
            started_in: Duration::ZERO,
        };
        let output = node
            .script("up")
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| TestEnvError::io("running hack/node.sh up", e))?;
        if !output.status.success() {
            let logs = node.log_tails();
            return Err(TestEnvError::Unexpected(format!(
                "hack/node.sh up failed ({}); last log lines:\n{logs}",
                output.status
            )));
        }
        node.env = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        node.started_in = started.elapsed();
        Ok(node)
    }

    /// How long [`Node::start`] took (nothing to node Ready).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The node's state directory (removed on teardown).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A value `hack/node.sh up` printed (`KUBECONFIG`, `NODE_IP`, `NETNS`,
    /// `CGROUP`, `HOLDER_PID`, `CONTAINERD_SOCK`, `TOOLS`, `API_PORT`).
    pub fn var(&self, key: &str) -> &str {
        self.env.get(key).map_or("", String::as_str)
    }

    /// The admin kubeconfig (through a forwarder on the host's loopback).
    pub fn kubeconfig(&self) -> PathBuf {
        PathBuf::from(self.var("KUBECONFIG"))
    }

    /// The node's IP address inside its network namespace.
    pub fn node_ip(&self) -> &str {
        self.var("NODE_IP")
    }

    /// The directory with kubectl, ctr, the node's servers and helm.
    pub fn tools_dir(&self) -> PathBuf {
        PathBuf::from(self.var("TOOLS"))
    }

    /// `kubectl` of the node's tools with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.tools_dir().join("kubectl"));
        command
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(Stdio::null());
        command
    }

    /// `helm` of the node's tools with the admin kubeconfig.
    pub fn helm(&self) -> Command {
        let mut command = Command::new(self.tools_dir().join("helm"));
        command
            .env("KUBECONFIG", self.kubeconfig())
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"))
            .stdin(Stdio::null());
        command
    }

    /// An admin client.
    pub async fn client(&self) -> Result<kube::Client, TestEnvError> {
        crate::client_from_kubeconfig(&self.kubeconfig()).await
    }

    /// `hack/node.sh SUBCOMMAND --dir DIR` for this node.
    pub fn script(&self, subcommand: &str) -> Command {
        let mut command = Command::new(node_script());
        command
            .arg(subcommand)
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null());
        command
    }

    /// A command that runs `program` inside the node's namespaces.
    pub fn command_inside(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = self.script("run");
        command.arg("--").arg(program);
        command
    }

    /// Starts `program` in the background inside the node's namespaces (log in
    /// the node's `logs/NAME.log`); it is killed on teardown. Returns its PID.
    pub fn spawn(
        &self,
        name: &str,
        program: &Path,
        args: &[OsString],
    ) -> Result<u32, TestEnvError> {
        let output = self
            .script("spawn")
            .arg(name)
            .arg("--")
            .arg(program)
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| TestEnvError::io("running hack/node.sh spawn", e))?;
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .map_err(|_| TestEnvError::Unexpected(format!("hack/node.sh spawn {name} failed")))
    }

    /// Forwards a free port on the host's loopback to `target` on 127.0.0.1
    /// inside the node's network namespace; returns the host port.
    pub fn forward(&self, target: u16) -> Result<u16, TestEnvError> {
        let [port] = crate::ports::free_ports::<1>()?;
        let status = self
            .script("forward")
            .arg(port.to_string())
            .arg(target.to_string())
            .status()
            .map_err(|e| TestEnvError::io("running hack/node.sh forward", e))?;
        if !status.success() {
            return Err(TestEnvError::Unexpected(format!(
                "hack/node.sh forward {port} {target} failed"
            )));
        }
        Ok(port)
    }

    /// Imports an image archive into the node's containerd (namespace k8s.io).
    pub fn import_image(&self, archive: &Path) -> Result<(), TestEnvError> {
        let output = self
            .script("import")
            .arg(archive)
            .output()
            .map_err(|e| TestEnvError::io("running hack/node.sh import", e))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(TestEnvError::Unexpected(format!(
                "importing {} failed: {}",
                archive.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    /// The last lines of every server log of the node.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(self.dir.join("logs")) else {
            return out;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!("--- {}\n{}\n", path.display(), tail.join("\n")));
        }
        out
    }

    /// Tears the node down (`hack/node.sh down`) and waits for it; what the
    /// node left on the host afterwards (empty when nothing) is returned.
    pub fn stop(mut self) -> Result<String, TestEnvError> {
        self.teardown();
        let output = self
            .script("leftovers")
            .output()
            .map_err(|e| TestEnvError::io("running hack/node.sh leftovers", e))?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    fn teardown(&mut self) {
        if let Some(mut lifeline) = self.lifeline.take() {
            let _ = self.script("down").stderr(Stdio::inherit()).status();
            lifeline.cut();
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Runs `command`; its stdout when it succeeds, otherwise an error with
/// `what`, the status and stderr.
pub fn run(command: &mut Command, what: &str) -> Result<String, TestEnvError> {
    let output = command
        .output()
        .map_err(|e| TestEnvError::io(what.to_owned(), e))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(TestEnvError::Unexpected(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// `hack/node.sh` of this workspace.
pub fn node_script() -> PathBuf {
    workspace_root().join("hack/node.sh")
}

/// What a node with state directory `dir` left on the host (`hack/node.sh
/// leftovers`); empty when nothing.
pub fn leftovers(dir: &Path) -> String {
    let output = Command::new(node_script())
        .arg("leftovers")
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .output();
    output
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("running hack/node.sh leftovers: {e}"))
}
