//! One server process (etcd or kube-apiserver) and what can be read about it
//! from `/proc` without reaping it.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::TestEnvError;

/// A running server whose output goes to a log file.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `program` with `args`, stdout and stderr appended to `log`.
    pub(crate) fn spawn(
        name: &str,
        program: &Path,
        args: &[OsString],
        log: &Path,
    ) -> Result<Self, TestEnvError> {
        let out = File::create(log)
            .map_err(|e| TestEnvError::io(format!("creating {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| TestEnvError::io(format!("opening {}", log.display()), e))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Ctrl-C in the terminal must not reach the servers directly: the
            // lifeline watchdog (or `testenv down`) owns their end.
            .process_group(0)
            .spawn()
            .map_err(|e| TestEnvError::io(format!("starting {}", program.display()), e))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    /// The process ID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines of the log, under a header naming the server.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log.display()));
        let all: Vec<&str> = text.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        format!("--- {} ({}) ---\n{tail}\n", self.name, self.log.display())
    }
}

/// True when `pid` is gone or a zombie. Reads `/proc` so that the caller does
/// not reap the process (see the lifeline module for why that matters).
pub fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|state| matches!(state, 'Z' | 'X' | 'x')),
        Err(_) => true,
    }
}

/// The resident set size of `pid` in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The program name `pid` was started with (argv\[0\]'s file name), if it runs.
pub fn program_name(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv0 = cmdline.split(|b| *b == 0).next()?;
    let argv0 = String::from_utf8_lossy(argv0);
    Path::new(argv0.as_ref())
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
}
