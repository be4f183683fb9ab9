//! Teardown: `stop()`, the dev cluster's detach/down, and the shared instance
//! dying with its test binary however that binary ends.

use std::error::Error;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyrotor_testenv::{
    ControlPlane, StartOptions, TestEnvError, dev_cluster, shared, workspace_root,
};

type TestResult = Result<(), Box<dyn Error>>;

/// Set in the child test process; its value says how the child should end.
const CHILD_ENV: &str = "KEYROTOR_TESTENV_TEARDOWN_CHILD";
/// Prefix of the line in which the child reports what it started.
const MARKER: &str = "TESTENV-CHILD";

fn workspace_crds() -> Vec<PathBuf> {
    vec![workspace_root().join("crds")]
}

/// True when `pid` no longer runs: gone, or a zombie nobody has reaped yet.
fn process_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Waits up to 15 s until every PID is gone and `dir` no longer exists.
fn wait_until_gone(pids: &[u32], dir: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if pids.iter().all(|pid| process_is_gone(*pid)) && !dir.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn pids_of(plane: &ControlPlane) -> Vec<u32> {
    plane.pids().into_iter().map(|(_, pid)| pid).collect()
}

#[tokio::test]
async fn stop_kills_both_servers_and_removes_the_directory() -> TestResult {
    let plane = ControlPlane::start(StartOptions {
        crds: workspace_crds(),
        ..StartOptions::default()
    })
    .await?;
    let pids = pids_of(&plane);
    let dir = plane.dir().to_owned();
    assert_eq!(pids.len(), 2);
    assert!(
        pids.iter().all(|pid| !process_is_gone(*pid)),
        "{}",
        plane.logs()
    );
    assert!(dir.join("kubeconfig").is_file());

    plane.stop().await;
    for pid in &pids {
        // Reaped by stop(), so not even a zombie is left.
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} survived stop()"
        );
    }
    assert!(!dir.exists(), "{} survived stop()", dir.display());
    Ok(())
}

#[tokio::test]
async fn dev_cluster_outlives_its_control_plane_value_until_down() -> TestResult {
    let parent = tempfile::tempdir()?;
    let dir = parent.path().join("cluster");
    let plane = dev_cluster::up(&dir, workspace_crds()).await?;
    let pids = pids_of(&plane);
    plane.detach()?;

    std::thread::sleep(Duration::from_millis(300));
    assert!(
        pids.iter().all(|pid| !process_is_gone(*pid)),
        "detached servers died"
    );
    let env = dev_cluster::env(&dir)?;
    assert!(env.contains("export KUBECONFIG="), "{env}");
    assert!(env.contains("export PATH="), "{env}");
    match dev_cluster::up(&dir, workspace_crds()).await {
        Err(TestEnvError::AlreadyRunning(_)) => {}
        other => panic!("a second up should fail, got {other:?}"),
    }

    dev_cluster::down(&dir)?;
    assert!(
        wait_until_gone(&pids, &dir),
        "down left {pids:?} or {}",
        dir.display()
    );
    Ok(())
}

/// Runs `child_starts_the_shared_instance` in a new test process and returns
/// it with the PIDs and directory it reported.
fn spawn_child(mode: &str, stderr: &Path) -> Result<(Child, Vec<u32>, PathBuf), Box<dyn Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "child_starts_the_shared_instance",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(File::create(stderr)?)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let Some(report) = line.strip_prefix(MARKER) else {
            continue;
        };
        let (pids, dir) = report
            .trim()
            .strip_prefix("pids=")
            .and_then(|rest| rest.split_once(" dir="))
            .ok_or_else(|| format!("bad report {line:?}"))?;
        let pids = pids
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<u32>, _>>()?;
        return Ok((child, pids, PathBuf::from(dir)));
    }
    let _ = child.wait();
    Err(format!(
        "child reported nothing:\n{}",
        std::fs::read_to_string(stderr)?
    )
    .into())
}

#[test]
fn shared_instance_dies_with_a_panicking_test_binary() -> TestResult {
    let logs = tempfile::NamedTempFile::new()?;
    let (mut child, pids, dir) = spawn_child("panic", logs.path())?;
    let status = child.wait()?;
    assert!(!status.success(), "the child test should have failed");
    assert_eq!(pids.len(), 2);
    assert!(
        wait_until_gone(&pids, &dir),
        "left {pids:?} or {}",
        dir.display()
    );
    Ok(())
}

#[test]
fn shared_instance_dies_with_a_sigkilled_test_binary() -> TestResult {
    let logs = tempfile::NamedTempFile::new()?;
    let (mut child, pids, dir) = spawn_child("hang", logs.path())?;
    assert!(
        pids.iter().all(|pid| !process_is_gone(*pid)),
        "servers died early"
    );
    assert!(dir.is_dir());
    child.kill()?;
    child.wait()?;
    assert!(
        wait_until_gone(&pids, &dir),
        "left {pids:?} or {}",
        dir.display()
    );
    Ok(())
}

/// Not a test of its own: the two tests above run it in a child process.
#[tokio::test]
#[ignore = "run in a child process by the shared_instance_dies_* tests"]
async fn child_starts_the_shared_instance() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let plane = shared().await;
    let pids: Vec<String> = pids_of(plane).iter().map(u32::to_string).collect();
    println!(
        "{MARKER} pids={} dir={}",
        pids.join(","),
        plane.dir().display()
    );
    let _ = std::io::stdout().flush();
    if mode == "panic" {
        panic!("deliberate panic with the shared control plane running");
    }
    tokio::time::sleep(Duration::from_secs(600)).await;
}
