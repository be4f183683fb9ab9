//! A watchdog that kills the servers and removes the control plane's directory
//! as soon as the process that started them goes away, however it goes away
//! (normal exit, panic, SIGKILL).
//!
//! The watchdog is a small `sh` whose standard input is a pipe from the owning
//! process. The owner writes each server PID to the pipe. The kernel closes the
//! pipe when the owner exits, so `read` sees end-of-file and the watchdog
//! SIGKILLs every PID it was given, waits until they are dead, and deletes the
//! directory. `stop()` simply closes the pipe early. Because the owner never
//! reaps a server before the watchdog has finished, a PID it kills cannot have
//! been reused by an unrelated process.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::TestEnvError;

/// Line that tells the watchdog to exit without killing anything (detach).
const RELEASE: &str = "release";

const SCRIPT: &str = r#"
dir=$1
shift
pids=
while read -r line; do
  if [ "$line" = release ]; then exit 0; fi
  pids="$pids $line"
done
for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
for pid in $pids; do
  tries=0
  while [ -e "/proc/$pid" ] && [ "$tries" -lt 500 ] &&
    ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; do
    sleep 0.01
    tries=$((tries + 1))
  done
done
if [ "$#" -gt 0 ]; then "$@" || true; fi
if [ -n "$dir" ]; then rm -rf -- "$dir"; fi
"#;

/// The owning side of the watchdog.
#[derive(Debug)]
pub(crate) struct Lifeline {
    watchdog: Child,
    pipe: Option<ChildStdin>,
}

impl Lifeline {
    /// Starts the watchdog; `remove_dir` is deleted after the servers die.
    pub(crate) fn start(remove_dir: Option<&Path>) -> Result<Self, TestEnvError> {
        Self::start_with_cleanup(remove_dir, &[], None)
    }

    /// Like [`Lifeline::start`], and once the servers are dead the watchdog
    /// runs `cleanup` (a program and its arguments, if not empty) before it
    /// deletes `remove_dir`; the cleanup's output goes to `cleanup_log`.
    pub(crate) fn start_with_cleanup(
        remove_dir: Option<&Path>,
        cleanup: &[&OsStr],
        cleanup_log: Option<&Path>,
    ) -> Result<Self, TestEnvError> {
        let output = || match cleanup_log {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .map_err(|e| TestEnvError::io(format!("opening {}", path.display()), e)),
            None => Ok(Stdio::null()),
        };
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("keyrotor-testenv-lifeline")
            .arg(remove_dir.map(Path::as_os_str).unwrap_or_default())
            .args(cleanup)
            .stdin(Stdio::piped())
            .stdout(output()?)
            .stderr(output()?)
            // Its own process group, so Ctrl-C on `cargo test` reaches the test
            // binary only; the watchdog then cleans up after it.
            .process_group(0)
            .spawn()
            .map_err(|e| TestEnvError::io("starting the lifeline watchdog (sh)", e))?;
        let pipe = watchdog.stdin.take();
        Ok(Self { watchdog, pipe })
    }

    /// Hands a server PID to the watchdog.
    pub(crate) fn watch(&mut self, pid: u32) -> Result<(), TestEnvError> {
        self.send(&pid.to_string())
    }

    /// Closes the pipe and waits until the watchdog has killed the servers and
    /// removed the directory.
    pub(crate) fn cut(&mut self) {
        self.pipe = None;
        let _ = self.watchdog.wait();
    }

    /// Lets the watchdog exit without killing anything, so the servers outlive
    /// this process.
    pub(crate) fn release(&mut self) -> Result<(), TestEnvError> {
        self.send(RELEASE)?;
        self.pipe = None;
        self.watchdog
            .wait()
            .map_err(|e| TestEnvError::io("waiting for the lifeline watchdog", e))?;
        Ok(())
    }

    fn send(&mut self, line: &str) -> Result<(), TestEnvError> {
        let pipe = self.pipe.as_mut().ok_or_else(|| {
            TestEnvError::io(
                "writing to the lifeline watchdog",
                std::io::Error::from(std::io::ErrorKind::BrokenPipe),
            )
        })?;
        writeln!(pipe, "{line}")
            .and_then(|()| pipe.flush())
            .map_err(|e| TestEnvError::io("writing to the lifeline watchdog", e))
    }
}
