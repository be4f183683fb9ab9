//! `hack/release.sh VERSION` (issue 19, docs/release.md): run once for the
//! workspace version with the debug binaries cargo test has built (so it takes
//! seconds, not a release build), into a directory of its own; then every
//! artefact is checked. A version other than the workspace's is refused with
//! exit status 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const EPOCH: &str = "1700000000";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn release(version: &str, out: &Path) -> Output {
    Command::new(root().join("hack/release.sh"))
        .arg(version)
        .env("KEYROTOR_RELEASE_PROFILE", "debug")
        .env("KEYROTOR_RELEASE_KEYROTOR", env!("CARGO_BIN_EXE_keyrotor"))
        .env(
            "KEYROTOR_RELEASE_PLUGIN",
            env!("CARGO_BIN_EXE_kubectl-keyrotor"),
        )
        .env("KEYROTOR_RELEASE_OUT", out)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .stdin(Stdio::null())
        .output()
        .expect("start hack/release.sh")
}

fn run(command: &mut Command) -> String {
    let output = command.stderr(Stdio::inherit()).output().expect("start");
    assert!(output.status.success(), "{command:?} failed");
    String::from_utf8(output.stdout).expect("utf-8")
}

fn sha256(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    out.split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_owned()
}

/// One member of a (gzipped) tar archive.
fn member(archive: &Path, name: &str) -> Vec<u8> {
    let output = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(name)
        .output()
        .expect("tar");
    assert!(output.status.success(), "tar -xOf {archive:?} {name}");
    output.stdout
}

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).expect("yaml")
}

/// `## [VERSION]` of CHANGELOG.md up to the next `## [` heading, trimmed.
fn changelog_section(version: &str) -> String {
    let changelog = std::fs::read_to_string(root().join("CHANGELOG.md")).expect("CHANGELOG.md");
    let heading = format!("## [{version}]");
    let section: Vec<&str> = changelog
        .lines()
        .skip_while(|l| !l.starts_with(&heading))
        .skip(1)
        .take_while(|l| !l.starts_with("## ["))
        .collect();
    assert!(!section.is_empty(), "CHANGELOG.md has no section {heading}");
    section.join("\n").trim().to_owned()
}

#[test]
fn release_builds_every_artefact_and_refuses_another_version() {
    let version = env!("CARGO_PKG_VERSION");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("release-test");

    // A version that is not the workspace's is refused before anything is built.
    for wrong in ["0.0.1", "v0.2.0", "9.9.9"] {
        let refused = release(wrong, &out);
        assert_eq!(
            refused.status.code(),
            Some(2),
            "hack/release.sh {wrong} must exit 2: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&refused.stderr).is_empty(),
            "no message for {wrong}"
        );
    }
    let usage = release("", &out);
    assert_eq!(
        usage.status.code(),
        Some(2),
        "hack/release.sh without VERSION"
    );

    let output = release(version, &out);
    assert!(
        output.status.success(),
        "hack/release.sh {version} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let image = format!("keyrotor-image_{version}_linux_amd64.tar");
    let chart = format!("keyrotor-{version}.tgz");
    let plugin = format!("kubectl-keyrotor_{version}_linux_amd64.tar.gz");
    let sbom = format!("keyrotor_{version}_sbom.cdx.json");
    let artefacts = [
        image.as_str(),
        chart.as_str(),
        "install.yaml",
        "crds.yaml",
        plugin.as_str(),
        "keyrotor.yaml",
        sbom.as_str(),
        "RELEASE_NOTES.md",
        "SHA256SUMS",
    ];
    for name in artefacts {
        let meta = std::fs::metadata(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(meta.len() > 0, "{name} is empty");
    }

    // SHA256SUMS covers every other artefact, and the sums hold.
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).expect("SHA256SUMS");
    let mut listed: Vec<&str> = sums
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = artefacts
        .iter()
        .copied()
        .filter(|n| *n != "SHA256SUMS")
        .collect();
    expected.sort_unstable();
    assert_eq!(listed, expected, "SHA256SUMS lists:\n{sums}");
    run(Command::new("sha256sum")
        .args(["--strict", "-c", "SHA256SUMS"])
        .current_dir(&out));

    // The plugin archive: the binary, kubectl's completion hook and LICENSE,
    // owned by 0/0, dated SOURCE_DATE_EPOCH.
    let listing = run(Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tvzf"])
        .arg(out.join(&plugin))
        .env("TZ", "UTC"));
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(
        names,
        ["LICENSE", "kubectl-keyrotor", "kubectl_complete-keyrotor"],
        "{listing}"
    );
    for line in listing.lines() {
        assert!(line.contains(" 0/0 "), "not owned by 0/0: {line}");
        assert!(
            line.contains("2023-11-14 22:13:20"),
            "mtime is not SOURCE_DATE_EPOCH: {line}"
        );
    }
    for line in listing.lines().filter(|l| l.contains("kubectl")) {
        assert!(line.starts_with("-rwxr-xr-x"), "not executable: {line}");
    }
    assert_eq!(
        member(&out.join(&plugin), "kubectl_complete-keyrotor"),
        std::fs::read(root().join("deploy/krew/kubectl_complete-keyrotor")).expect("script")
    );
    assert_eq!(
        member(&out.join(&plugin), "kubectl-keyrotor"),
        std::fs::read(env!("CARGO_BIN_EXE_kubectl-keyrotor")).expect("plugin binary")
    );

    // The krew manifest names the archive at the release's URL with its sha256.
    let krew = yaml(&std::fs::read_to_string(out.join("keyrotor.yaml")).expect("keyrotor.yaml"));
    assert_eq!(
        krew["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(krew["kind"], "Plugin");
    assert_eq!(krew["metadata"]["name"], "keyrotor");
    assert_eq!(
        krew["spec"]["version"].as_str(),
        Some(format!("v{version}").as_str())
    );
    let platforms = krew["spec"]["platforms"].as_array().expect("platforms");
    assert!(!platforms.is_empty());
    for platform in platforms {
        let uri = platform["uri"].as_str().expect("uri");
        let prefix = format!("https://github.com/keyrotor/keyrotor/releases/download/v{version}/");
        let file = uri
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("uri {uri}"));
        assert_eq!(
            platform["sha256"].as_str(),
            Some(sha256(&out.join(file)).as_str()),
            "{file}"
        );
        assert_eq!(platform["bin"], "kubectl-keyrotor");
        let files: Vec<&str> = platform["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(|f| f["from"].as_str())
            .collect();
        assert_eq!(
            files,
            ["kubectl-keyrotor", "kubectl_complete-keyrotor", "LICENSE"]
        );
    }
    // Only the platforms built here (this machine's), each with its archive.
    let built: Vec<String> = platforms
        .iter()
        .map(|p| {
            let labels = &p["selector"]["matchLabels"];
            format!(
                "{}/{}",
                labels["os"].as_str().unwrap_or_default(),
                labels["arch"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(built, ["linux/amd64"]);
    assert!(
        krew["spec"]["caveats"]
            .as_str()
            .is_some_and(|c| c.contains("kubectl_complete-keyrotor"))
    );

    // The packaged chart carries the version and appVersion.
    let chart_yaml =
        String::from_utf8(member(&out.join(&chart), "keyrotor/Chart.yaml")).expect("utf-8");
    let chart_yaml = yaml(&chart_yaml);
    assert_eq!(chart_yaml["version"].as_str(), Some(version));
    assert_eq!(chart_yaml["appVersion"].as_str(), Some(version));

    // install.yaml: namespace, CRD and operator with the image pinned; crds.yaml the CRD alone.
    let install = std::fs::read_to_string(out.join("install.yaml")).expect("install.yaml");
    assert!(install.contains(&format!("image: \"ghcr.io/keyrotor/keyrotor:{version}\"")));
    let kinds: Vec<String> = serde_norway::Deserializer::from_str(&install)
        .map(|doc| {
            let doc: Value = serde::Deserialize::deserialize(doc).expect("document");
            doc["kind"].as_str().unwrap_or_default().to_owned()
        })
        .filter(|kind| !kind.is_empty())
        .collect();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "Deployment",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "install.yaml has no {kind}: {kinds:?}"
        );
    }
    assert!(!install.contains("managed-by: Helm"));
    assert_eq!(
        std::fs::read_to_string(out.join("crds.yaml")).expect("crds.yaml"),
        std::fs::read_to_string(root().join("crds/accesskeypolicies.keyrotor.dev.yaml"))
            .expect("crd")
    );

    // The image archive: tagged with the version, labelled with it.
    let index: Value =
        serde_json::from_slice(&member(&out.join(&image), "index.json")).expect("index");
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"].as_str(),
        Some(format!("ghcr.io/keyrotor/keyrotor:{version}").as_str())
    );

    // The SBOM is CycloneDX JSON naming the dependency tree.
    let sbom: Value =
        serde_json::from_slice(&std::fs::read(out.join(&sbom)).expect("sbom")).expect("SBOM JSON");
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    let components: Vec<&str> = sbom["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for name in ["kube", "tokio", "rustls"] {
        assert!(components.contains(&name), "SBOM has no component {name}");
    }

    // The release notes hold CHANGELOG.md's section.
    let notes = std::fs::read_to_string(out.join("RELEASE_NOTES.md")).expect("RELEASE_NOTES.md");
    assert!(
        notes.starts_with(&format!("# keyrotor {version}\n")),
        "{notes}"
    );
    assert!(
        notes.contains(&changelog_section(version)),
        "RELEASE_NOTES.md lacks the CHANGELOG section"
    );
}
