//! The one error type of the crate.

use std::path::PathBuf;
use std::time::Duration;

/// Why starting, using or stopping a control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum TestEnvError {
    /// The kube-apiserver, etcd or kubectl binaries could not be located.
    #[error("cannot find the control-plane tools: {0}")]
    Tools(String),
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Generating the certificates or keys failed.
    #[error("generating certificates: {0}")]
    Pki(#[from] rcgen::Error),
    /// A server process died while the control plane was starting.
    #[error("{name} exited during startup{}", if *.port_taken { " because its port was taken" } else { "" })]
    ProcessExited {
        /// Which server.
        name: String,
        /// Its log says another process had bound its port (worth a retry).
        port_taken: bool,
    },
    /// Something did not become ready in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long was waited.
        after: Duration,
    },
    /// A request to the API server failed.
    #[error("{context}: {source}")]
    Kube {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },
    /// A kubeconfig could not be read or turned into a client configuration.
    #[error("using kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A CRD file could not be read or did not hold CustomResourceDefinitions.
    #[error("CRD file {path}: {reason}")]
    CrdFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The API server answered, but not as expected.
    #[error("unexpected answer from the API server: {0}")]
    Unexpected(String),
    /// A YAML document could not be produced.
    #[error("writing YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    /// The directory asked for already holds files.
    #[error("{0} is not empty; refusing to start a control plane there")]
    DirNotEmpty(PathBuf),
    /// A detached control plane is already running in the directory.
    #[error("a control plane is already running in {0}; stop it first")]
    AlreadyRunning(PathBuf),
    /// A detached control plane's state could not be read from the directory.
    #[error("no usable control-plane state in {dir}: {reason}")]
    NoState {
        /// The directory.
        dir: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// Every start attempt failed; carries the last failure and the servers' last log lines.
    #[error("starting the control plane failed after {attempts} attempt(s): {source}\n{logs}")]
    Start {
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's failure.
        #[source]
        source: Box<TestEnvError>,
        /// The tail of the etcd and kube-apiserver logs of the last attempt.
        logs: String,
    },
}

impl TestEnvError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps a kube error with what was being done.
    pub(crate) fn kube(context: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            context: context.into(),
            source,
        }
    }
}
