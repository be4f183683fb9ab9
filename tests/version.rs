//! One version for everything (issue 19): the root Cargo.toml's
//! `[workspace.package] version` is the source; the chart's `version` and
//! `appVersion`, `deploy/`'s image tag and labels, `keyrotor --version`,
//! `kubectl keyrotor --version`, the image's `org.opencontainers.image.version`
//! label (an image built by hack/image.sh from the debug binary) and
//! CHANGELOG.md's sections agree with it. See docs/release.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `[workspace.package] version` of the root Cargo.toml, read as text (the
/// table's `version = "..."` line).
fn workspace_version() -> String {
    let manifest = read("Cargo.toml");
    let mut in_table = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_table = line == "[workspace.package]";
            continue;
        }
        if in_table && let Some(value) = line.strip_prefix("version = ") {
            return value.trim_matches('"').to_owned();
        }
    }
    panic!("no version in [workspace.package] of Cargo.toml");
}

fn version_output(binary: &str) -> String {
    let output = Command::new(binary)
        .arg("--version")
        .stderr(Stdio::inherit())
        .output()
        .expect("start");
    assert!(output.status.success(), "{binary} --version failed");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    text.split_whitespace()
        .last()
        .unwrap_or_else(|| panic!("{binary} --version printed nothing"))
        .to_owned()
}

#[test]
fn cargo_chart_deploy_binaries_and_changelog_carry_one_version() {
    let version = workspace_version();
    assert_eq!(
        env!("CARGO_PKG_VERSION"),
        version,
        "the keyrotor crate must inherit the workspace version"
    );

    let chart: serde_json::Value =
        serde_norway::from_str(&read("charts/keyrotor/Chart.yaml")).expect("Chart.yaml");
    assert_eq!(
        chart["version"].as_str(),
        Some(version.as_str()),
        "Chart.yaml version"
    );
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(version.as_str()),
        "Chart.yaml appVersion"
    );
    let values: serde_json::Value =
        serde_norway::from_str(&read("charts/keyrotor/values.yaml")).expect("values.yaml");
    assert_eq!(
        values["image"]["tag"].as_str(),
        Some(""),
        "values.yaml image.tag must stay empty so the image follows appVersion"
    );

    let operator = read("deploy/operator.yaml");
    assert!(
        operator.contains(&format!("image: \"ghcr.io/keyrotor/keyrotor:{version}\"")),
        "deploy/operator.yaml does not pin the image to {version}; run hack/gen-manifests.sh"
    );
    for line in operator
        .lines()
        .filter(|l| l.contains("app.kubernetes.io/version:"))
    {
        assert!(
            line.ends_with(&format!("\"{version}\"")),
            "deploy/operator.yaml: {line}"
        );
    }

    assert_eq!(
        version_output(env!("CARGO_BIN_EXE_keyrotor")),
        version,
        "keyrotor --version"
    );
    assert_eq!(
        version_output(env!("CARGO_BIN_EXE_kubectl-keyrotor")),
        version,
        "kubectl-keyrotor --version"
    );

    let changelog = read("CHANGELOG.md");
    assert!(
        changelog
            .lines()
            .any(|l| l.starts_with(&format!("## [{version}]"))),
        "CHANGELOG.md has no section for {version}"
    );
}

#[test]
fn the_image_label_carries_the_binary_version() {
    let version = workspace_version();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("version-test");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let archive = dir.join("image.tar");
    // No --version: hack/image.sh reads it from `keyrotor --version`, as a
    // release does through `hack/image.sh --version VERSION`.
    let output = Command::new(root().join("hack/image.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_keyrotor")])
        .args(["--tag", "keyrotor.test/keyrotor:version"])
        .arg("--output")
        .arg(&archive)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("KEYROTOR_IMAGE_REVISION", "test")
        .stderr(Stdio::inherit())
        .output()
        .expect("hack/image.sh");
    assert!(output.status.success(), "hack/image.sh failed");

    let member = |name: &str| -> Value {
        let out = Command::new("tar")
            .arg("-xOf")
            .arg(&archive)
            .arg(name)
            .output()
            .expect("tar");
        assert!(out.status.success(), "tar -xOf {archive:?} {name}");
        serde_json::from_slice(&out.stdout).expect(name)
    };
    let blob = |digest: &Value| {
        let digest = digest.as_str().expect("digest");
        format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
    };
    let index = member("index.json");
    let manifest = member(&blob(&index["manifests"][0]["digest"]));
    let config = member(&blob(&manifest["config"]["digest"]));
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.version"].as_str(),
        Some(version.as_str()),
        "image label org.opencontainers.image.version"
    );
}
