//! The servers of one control plane together with their lifeline watchdog;
//! dropping it tears everything down.

use std::ffi::OsString;
use std::path::Path;

use crate::TestEnvError;
use crate::lifeline::Lifeline;
use crate::server::{ServerProcess, has_exited};

/// How many log lines of each server go into errors and `logs()`.
pub(crate) const LOG_TAIL_LINES: usize = 40;

/// Servers started by this process and the watchdog that kills them.
#[derive(Debug)]
pub(crate) struct Processes {
    lifeline: Option<Lifeline>,
    servers: Vec<ServerProcess>,
}

impl Processes {
    /// Starts the watchdog; with `remove_dir` it also deletes that directory
    /// once the servers are dead.
    pub(crate) fn new(remove_dir: Option<&Path>) -> Result<Self, TestEnvError> {
        Ok(Self {
            lifeline: Some(Lifeline::start(remove_dir)?),
            servers: Vec::new(),
        })
    }

    /// Starts a server and puts it under the watchdog.
    pub(crate) fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[OsString],
        log: &Path,
    ) -> Result<u32, TestEnvError> {
        let server = ServerProcess::spawn(name, program, args, log)?;
        let pid = server.pid();
        self.servers.push(server);
        if let Some(lifeline) = self.lifeline.as_mut() {
            lifeline.watch(pid)?;
        }
        Ok(pid)
    }

    /// The error for the first server that is no longer running, if any.
    pub(crate) fn first_exited(&self) -> Option<TestEnvError> {
        let server = self
            .servers
            .iter()
            .find(|server| has_exited(server.pid()))?;
        let log = std::fs::read_to_string(&server.log).unwrap_or_default();
        Some(TestEnvError::ProcessExited {
            name: server.name.clone(),
            port_taken: log.contains("address already in use"),
        })
    }

    /// Name and PID of every server.
    pub(crate) fn pids(&self) -> Vec<(String, u32)> {
        self.servers
            .iter()
            .map(|server| (server.name.clone(), server.pid()))
            .collect()
    }

    /// The last lines of every server's log.
    pub(crate) fn log_tail(&self) -> String {
        self.servers
            .iter()
            .map(|server| server.log_tail(LOG_TAIL_LINES))
            .collect()
    }

    /// Kills the servers, removes the directory (if the watchdog owns it) and
    /// reaps the servers. Idempotent.
    pub(crate) fn shutdown(&mut self) {
        if let Some(mut lifeline) = self.lifeline.take() {
            lifeline.cut();
        }
        for mut server in self.servers.drain(..) {
            // Normally dead already; this covers a watchdog that was killed.
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
    }

    /// Leaves the servers running after this process exits.
    pub(crate) fn release(&mut self) -> Result<(), TestEnvError> {
        if let Some(mut lifeline) = self.lifeline.take() {
            lifeline.release()?;
        }
        // Dropping a `Child` neither kills nor waits for it.
        self.servers.clear();
        Ok(())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.shutdown();
    }
}
