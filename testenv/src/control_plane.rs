//! Starting, using and stopping one etcd + kube-apiserver pair.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::time::Instant;

use crate::TestEnvError;
use crate::crds;
use crate::kubeconfig::{Credentials, client_from_kubeconfig, write_kubeconfig};
use crate::pki::{self, PkiFiles};
use crate::ports::free_ports;
use crate::processes::Processes;
use crate::readiness::{etcd_healthy, wait_until};
use crate::server::rss_kib;
use crate::tools::locate_tools;

/// How often a start is tried when a server dies during startup because
/// another process took one of the chosen ports first.
const START_ATTEMPTS: u32 = 3;

/// How to start a control plane.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// CRD files, or directories of `.yaml`/`.yml`/`.json` CRD files, to install.
    pub crds: Vec<PathBuf>,
    /// Use this directory (absent or empty) instead of a temporary one, and
    /// leave it in place on stop. `testenv up` uses it for the dev cluster.
    pub keep_dir: Option<PathBuf>,
    /// Where `etcd`, `kube-apiserver` and `kubectl` are; located with
    /// [`locate_tools`](crate::locate_tools) when `None`.
    pub tools_dir: Option<PathBuf>,
    /// Budget for one start attempt, from spawning etcd to the last CRD Established.
    pub timeout: Duration,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            crds: Vec::new(),
            keep_dir: None,
            tools_dir: None,
            timeout: Duration::from_secs(60),
        }
    }
}

/// A running etcd and kube-apiserver on loopback, with an admin kubeconfig.
///
/// Dropping it (or [`stop`](Self::stop)) kills both servers and removes the
/// temporary directory; if the process dies first, a watchdog does the same.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    tools_dir: PathBuf,
    kubeconfig: PathBuf,
    ca_cert: PathBuf,
    server_url: String,
    processes: Processes,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver on free loopback ports, waits for
    /// `/readyz` and namespace `default`, installs `opts.crds` and waits until
    /// each is Established. Retries with new ports when a server finds its
    /// port taken. Prints the phase timings and memory to stderr.
    pub async fn start(opts: StartOptions) -> Result<ControlPlane, TestEnvError> {
        let tools_dir = match &opts.tools_dir {
            Some(dir) => dir.clone(),
            None => locate_tools()?,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(&opts, &tools_dir, attempt).await {
                Ok(plane) => return Ok(plane),
                Err((
                    TestEnvError::ProcessExited {
                        name,
                        port_taken: true,
                    },
                    _,
                )) if attempt < START_ATTEMPTS => {
                    eprintln!(
                        "keyrotor-testenv: {name} found its port taken; retrying with new ports"
                    );
                }
                Err((source, logs)) => {
                    return Err(TestEnvError::Start {
                        attempts: attempt,
                        source: Box::new(source),
                        logs,
                    });
                }
            }
        }
    }

    async fn start_once(
        opts: &StartOptions,
        tools_dir: &Path,
        attempt: u32,
    ) -> Result<ControlPlane, (TestEnvError, String)> {
        let no_logs = |e| (e, String::new());
        let (dir, owned) = prepare_dir(opts.keep_dir.as_deref(), attempt).map_err(no_logs)?;
        let processes = match Processes::new(owned.then_some(dir.as_path())) {
            Ok(processes) => processes,
            Err(e) => {
                if owned {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Err(no_logs(e));
            }
        };
        // From here on, dropping `processes` cleans up.
        let [etcd_port, etcd_peer_port, api_port] = free_ports().map_err(no_logs)?;
        let pki = pki::generate(&dir.join("pki")).map_err(no_logs)?;
        let server_url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = dir.join("kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &server_url,
            &pki.ca_cert,
            Credentials::ClientCertificate {
                cert: &pki.admin_cert,
                key: &pki.admin_key,
            },
        )
        .map_err(no_logs)?;
        let mut plane = ControlPlane {
            dir,
            tools_dir: tools_dir.to_owned(),
            kubeconfig,
            ca_cert: pki.ca_cert.clone(),
            server_url,
            processes,
        };
        let ports = Ports {
            etcd: etcd_port,
            etcd_peer: etcd_peer_port,
            api: api_port,
        };
        match plane.boot(opts, &ports, &pki, attempt).await {
            Ok(()) => Ok(plane),
            Err(e) => {
                let logs = plane.logs();
                drop(plane);
                Err((e, logs))
            }
        }
    }

    async fn boot(
        &mut self,
        opts: &StartOptions,
        ports: &Ports,
        pki: &PkiFiles,
        attempt: u32,
    ) -> Result<(), TestEnvError> {
        let started = Instant::now();
        let deadline = started + opts.timeout;
        let budget = opts.timeout;

        self.processes.spawn(
            "etcd",
            &self.tools_dir.join("etcd"),
            &etcd_args(&self.dir, ports),
            &self.dir.join("etcd.log"),
        )?;
        wait_until(
            "etcd /health",
            deadline,
            budget,
            &self.processes,
            || async { etcd_healthy(ports.etcd).await.then_some(()) },
        )
        .await?;
        let etcd_ready = started.elapsed();

        self.processes.spawn(
            "kube-apiserver",
            &self.tools_dir.join("kube-apiserver"),
            &apiserver_args(&self.dir, ports, pki),
            &self.dir.join("kube-apiserver.log"),
        )?;
        let client = self.admin_client().await?;
        wait_until(
            "kube-apiserver /readyz",
            deadline,
            budget,
            &self.processes,
            || {
                let client = client.clone();
                async move {
                    let request = http::Request::get("/readyz").body(Vec::new()).ok()?;
                    client.request_text(request).await.ok()
                }
            },
        )
        .await?;
        let apiserver_ready = started.elapsed();

        let namespaces: Api<Namespace> = Api::all(client.clone());
        wait_until(
            "namespace default",
            deadline,
            budget,
            &self.processes,
            || {
                let namespaces = namespaces.clone();
                async move { namespaces.get_opt("default").await.ok().flatten() }
            },
        )
        .await?;
        let default_ready = started.elapsed();

        let crd_count = self
            .install_crds_until(&client, &opts.crds, deadline, budget)
            .await?;
        let total = started.elapsed();

        let memory: Vec<String> = self
            .memory_kib()
            .iter()
            .map(|(name, kib)| format!("{name} {} MiB", kib / 1024))
            .collect();
        eprintln!(
            "keyrotor-testenv: control plane at {} ready in {:.2} s (attempt {attempt}): \
             etcd healthy {:.2} s, kube-apiserver ready {:.2} s, namespace default {:.2} s, \
             {crd_count} CRD(s) Established {:.2} s; RSS {}",
            self.server_url,
            total.as_secs_f64(),
            etcd_ready.as_secs_f64(),
            apiserver_ready.as_secs_f64(),
            default_ready.as_secs_f64(),
            total.as_secs_f64(),
            memory.join(", "),
        );
        Ok(())
    }

    /// Installs the CRDs in `paths` (files or directories) and waits until each
    /// is Established, for at most `timeout`.
    pub async fn install_crds(
        &self,
        paths: &[PathBuf],
        timeout: Duration,
    ) -> Result<usize, TestEnvError> {
        let client = self.admin_client().await?;
        self.install_crds_until(&client, paths, Instant::now() + timeout, timeout)
            .await
    }

    async fn install_crds_until(
        &self,
        client: &kube::Client,
        paths: &[PathBuf],
        deadline: Instant,
        budget: Duration,
    ) -> Result<usize, TestEnvError> {
        let mut names = Vec::new();
        for file in crds::crd_files(paths)? {
            for crd in crds::load(&file)? {
                names.push(crds::apply(client, &crd).await?);
            }
        }
        for name in &names {
            let what = format!("CRD {name} to be Established");
            wait_until(&what, deadline, budget, &self.processes, || async {
                crds::is_established(client, name).await.then_some(())
            })
            .await?;
        }
        Ok(names.len())
    }

    /// The admin kubeconfig (client certificate CN=admin, O=system:masters).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client with the admin identity. Build one per tokio runtime: a client
    /// is bound to the runtime it was created in.
    pub async fn admin_client(&self) -> Result<kube::Client, TestEnvError> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The directory holding `kubectl`, `etcd` and `kube-apiserver`.
    pub fn tools_dir(&self) -> &Path {
        &self.tools_dir
    }

    /// The directory holding the PKI, etcd data, logs and kubeconfig.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates a namespace named `<prefix>-<random suffix>` and returns its
    /// name. Use a fresh one per test: without a controller-manager, deleted
    /// namespaces stay Terminating forever.
    pub async fn create_namespace(&self, prefix: &str) -> Result<String, TestEnvError> {
        let namespaces: Api<Namespace> = Api::all(self.admin_client().await?);
        let namespace = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(|e| TestEnvError::kube(format!("creating a namespace {prefix}-*"), e))?;
        created.metadata.name.ok_or_else(|| {
            TestEnvError::Unexpected(format!("namespace {prefix}-* was created without a name"))
        })
    }

    /// Mints a token for ServiceAccount `namespace/name` through the
    /// TokenRequest API, creating the ServiceAccount if it is missing. The API
    /// server rejects a `ttl` under 10 minutes.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<String, TestEnvError> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.admin_client().await?, namespace);
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match accounts.create(&PostParams::default(), &account).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => {
                return Err(TestEnvError::kube(
                    format!("creating ServiceAccount {namespace}/{name}"),
                    e,
                ));
            }
        }
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let minted = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                TestEnvError::kube(format!("requesting a token for {namespace}/{name}"), e)
            })?;
        minted
            .status
            .and_then(|status| status.token)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                TestEnvError::Unexpected(format!(
                    "TokenRequest for {namespace}/{name} returned no token"
                ))
            })
    }

    /// Writes to `path` a kubeconfig that authenticates with bearer `token`
    /// (for RBAC tests).
    pub fn kubeconfig_for_token(&self, token: &str, path: &Path) -> Result<(), TestEnvError> {
        write_kubeconfig(
            path,
            &self.server_url,
            &self.ca_cert,
            Credentials::Token(token),
        )
    }

    /// `kubectl --kubeconfig <admin kubeconfig>`, ready for more arguments.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.tools_dir.join("kubectl"));
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        command
    }

    /// Name and PID of each server.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.processes.pids()
    }

    /// Resident memory of each server in KiB (from `/proc/<pid>/status`).
    pub fn memory_kib(&self) -> Vec<(String, u64)> {
        self.processes
            .pids()
            .into_iter()
            .map(|(name, pid)| (name, rss_kib(pid).unwrap_or(0)))
            .collect()
    }

    /// The last lines of the etcd and kube-apiserver logs, for failure reports.
    pub fn logs(&self) -> String {
        self.processes.log_tail()
    }

    /// Kills both servers, waits for them and removes the temporary directory.
    pub async fn stop(self) {
        // Teardown blocks for a few milliseconds while the watchdog works.
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }

    /// Lets the servers outlive this process (for `testenv up`): nothing kills
    /// them any more; stop them with [`dev_cluster::down`](crate::dev_cluster::down).
    pub fn detach(mut self) -> Result<(), TestEnvError> {
        self.processes.release()
    }
}

/// Ports chosen for one start attempt.
struct Ports {
    etcd: u16,
    etcd_peer: u16,
    api: u16,
}

/// Returns the directory for this attempt and whether the watchdog owns it
/// (removes it at the end).
fn prepare_dir(keep_dir: Option<&Path>, attempt: u32) -> Result<(PathBuf, bool), TestEnvError> {
    let Some(dir) = keep_dir else {
        let dir = tempfile::Builder::new()
            .prefix("keyrotor-testenv-")
            .tempdir()
            .map_err(|e| TestEnvError::io("creating a temporary directory", e))?
            .keep();
        return Ok((dir, true));
    };
    let create = |dir: &Path| {
        std::fs::create_dir_all(dir)
            .map_err(|e| TestEnvError::io(format!("creating {}", dir.display()), e))
    };
    if attempt > 1 {
        // Left by our own failed attempt.
        std::fs::remove_dir_all(dir)
            .map_err(|e| TestEnvError::io(format!("clearing {}", dir.display()), e))?;
    } else if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .map_err(|e| TestEnvError::io(format!("listing {}", dir.display()), e))?;
        if entries.next().is_some() {
            return Err(TestEnvError::DirNotEmpty(dir.to_owned()));
        }
    }
    create(dir)?;
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| TestEnvError::io(format!("resolving {}", dir.display()), e))?;
    Ok((dir, false))
}

fn etcd_args(dir: &Path, ports: &Ports) -> Vec<OsString> {
    let client_url = format!("http://127.0.0.1:{}", ports.etcd);
    let mut data_dir = OsString::from("--data-dir=");
    data_dir.push(dir.join("etcd-data"));
    vec![
        data_dir,
        format!("--listen-client-urls={client_url}").into(),
        format!("--advertise-client-urls={client_url}").into(),
        format!("--listen-peer-urls=http://127.0.0.1:{}", ports.etcd_peer).into(),
        "--unsafe-no-fsync=true".into(),
    ]
}

fn apiserver_args(dir: &Path, ports: &Ports, pki: &PkiFiles) -> Vec<OsString> {
    let path_flag = |flag: &str, path: &Path| {
        let mut arg = OsString::from(format!("--{flag}="));
        arg.push(path);
        arg
    };
    vec![
        format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd).into(),
        "--bind-address=127.0.0.1".into(),
        // Without a default route the server cannot pick an address itself.
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={}", ports.api).into(),
        path_flag("cert-dir", &dir.join("apiserver-certs")),
        path_flag("tls-cert-file", &pki.serving_cert),
        path_flag("tls-private-key-file", &pki.serving_key),
        path_flag("client-ca-file", &pki.ca_cert),
        "--authorization-mode=RBAC".into(),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--allow-privileged=true".into(),
        // No controller-manager creates default ServiceAccounts.
        "--disable-admission-plugins=ServiceAccount".into(),
        format!("--service-account-issuer=https://127.0.0.1:{}/", ports.api).into(),
        path_flag("service-account-key-file", &pki.service_account_public_key),
        path_flag(
            "service-account-signing-key-file",
            &pki.service_account_private_key,
        ),
    ]
}
