//! Finds the directory holding `kube-apiserver`, `etcd` and `kubectl`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TestEnvError;

/// Environment variable that names the tools directory directly.
pub const TOOLS_DIR_ENV: &str = "KEYROTOR_TOOLS_DIR";

/// The binaries a control plane needs.
const TOOLS: [&str; 3] = ["etcd", "kube-apiserver", "kubectl"];

/// The workspace root, known at compile time.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Returns `$KEYROTOR_TOOLS_DIR` if set, otherwise what
/// `hack/install-tools.sh --print-dir` prints (it builds the tools when missing),
/// after checking that every binary is there.
pub fn locate_tools() -> Result<PathBuf, TestEnvError> {
    let dir = match std::env::var_os(TOOLS_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => run_install_tools()?,
    };
    for tool in TOOLS {
        if !dir.join(tool).is_file() {
            return Err(TestEnvError::Tools(format!(
                "{} has no {tool}",
                dir.display()
            )));
        }
    }
    Ok(dir)
}

fn run_install_tools() -> Result<PathBuf, TestEnvError> {
    let script = workspace_root().join("hack/install-tools.sh");
    let output = Command::new(&script)
        .arg("--print-dir")
        .output()
        .map_err(|e| TestEnvError::io(format!("running {}", script.display()), e))?;
    if !output.status.success() {
        return Err(TestEnvError::Tools(format!(
            "{} --print-dir failed ({}): {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if dir.is_empty() {
        return Err(TestEnvError::Tools(format!(
            "{} --print-dir printed nothing",
            script.display()
        )));
    }
    Ok(PathBuf::from(dir))
}
