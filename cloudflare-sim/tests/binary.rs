//! The `cloudflare-sim` binary: flags, env vars, config file, the
//! "listening on" line, and a clean stop on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Running {
    child: Child,
    base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only if a test failed before stopping it; kill by our own child's id.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(command: &mut Command) -> Running {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("reads first line");
    let base = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Running { child, base }
}

fn simulator() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloudflare-sim"));
    command.env_remove("CLOUDFLARE_SIM_LISTEN");
    command
}

fn terminate(running: &mut Running) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = running.child.try_wait().expect("wait works") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "simulator did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn flags_configure_and_sigterm_stops_cleanly() {
    let mut running = start(simulator().args([
        "--listen",
        "127.0.0.1:0",
        "--account",
        "acc1=30",
        "--token",
        "ci=bin-secret",
        "--rate-limit",
        "2",
        "--rate-window",
        "60",
    ]));
    assert!(
        running.base.starts_with("http://127.0.0.1:"),
        "{}",
        running.base
    );
    assert!(!running.base.ends_with(":0"));
    let http = common::http_client();
    let url = format!("{}/client/v4/accounts/acc1/access/keys", running.base);
    let answer = http
        .get(&url)
        .bearer_auth("bin-secret")
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["ratelimit-policy"].to_str().ok(),
        Some("\"default\";q=2;w=60")
    );
    let body: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(body["result"]["key_rotation_interval_days"], 30);
    drop(http);

    let status = terminate(&mut running);
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn config_file_and_env_vars_are_read() {
    let dir = std::env::temp_dir().join(format!("cloudflare-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("sim.json");
    std::fs::write(
        &file,
        r#"{"accounts": [{"id": "fileacc", "keyRotationIntervalDays": 100}],
            "credentials": [{"id": "legacy", "apiKey": "file-key", "email": "f@example.com"}],
            "rateLimit": {"limit": 5, "windowSeconds": 30}}"#,
    )
    .expect("config written");
    let mut running = start(
        simulator()
            .env("CLOUDFLARE_SIM_LISTEN", "127.0.0.1:0")
            .env("CLOUDFLARE_SIM_CONFIG", &file)
            .env("CLOUDFLARE_SIM_TOKEN", "envtok=env-secret"),
    );
    let http = common::http_client();
    let url = format!("{}/client/v4/accounts/fileacc/access/keys", running.base);
    let answer = http
        .get(&url)
        .header("x-auth-key", "file-key")
        .header("x-auth-email", "f@example.com")
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["ratelimit-policy"].to_str().ok(),
        Some("\"default\";q=5;w=30")
    );
    let answer = http
        .get(&url)
        .bearer_auth("env-secret")
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 200);
    drop(http);
    assert!(terminate(&mut running).success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_config_fails_at_start() {
    let output = simulator()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--config",
            "/nonexistent/sim.json",
        ])
        .output()
        .expect("binary runs");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no listening line on failure");
}
