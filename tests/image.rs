//! The image hack/image.sh builds (without a container engine) against the
//! Dockerfile's final stage: same user, entrypoint, command, port, binary path
//! and labels; the build is reproducible; the layer holds what the config says.
//! Uses the debug binary cargo test builds; KEYROTOR_IMAGE_BINARY picks another
//! (e.g. target/release/keyrotor). See docs/image.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(command: &mut Command) -> String {
    let output = command.stderr(Stdio::inherit()).output().expect("start");
    assert!(output.status.success(), "{command:?} failed");
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Builds the image into `dir/name`, returns (digest, archive path).
fn build(dir: &Path, name: &str) -> (String, PathBuf) {
    let binary = std::env::var("KEYROTOR_IMAGE_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_keyrotor").to_owned());
    let output = dir.join(name);
    let stdout = run(Command::new(root().join("hack/image.sh"))
        .args(["--binary", &binary, "--tag", "keyrotor.test/keyrotor:check"])
        .arg("--output")
        .arg(&output)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("KEYROTOR_IMAGE_REVISION", "test"));
    let digest = stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{stdout}"
    );
    (digest, output)
}

/// One member of a tar archive (`tar -xO`), gzip-compressed or not.
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

fn json(archive: &Path, name: &str) -> Value {
    serde_json::from_slice(&member(archive, name)).expect(name)
}

fn blob(digest: &Value) -> String {
    let digest = digest.as_str().expect("digest");
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// The last stage's value of a Dockerfile instruction, e.g. `USER`.
fn instruction<'a>(final_stage: &'a [&str], keyword: &str) -> &'a str {
    let prefix = format!("{keyword} ");
    let line = final_stage
        .iter()
        .rev()
        .find(|line| line.starts_with(&prefix));
    line.unwrap_or_else(|| panic!("no {keyword} in the final stage"))[prefix.len()..].trim()
}

#[test]
fn the_built_image_matches_the_dockerfile_and_is_reproducible() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-test");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let (digest, archive) = build(&dir, "a.tar");
    let (again, archive_again) = build(&dir, "b.tar");
    assert_eq!(digest, again, "two builds of the same inputs differ");
    let bytes = std::fs::read(&archive).expect("read");
    assert!(bytes == std::fs::read(&archive_again).expect("read"));

    // OCI layout with the ref annotations, plus Docker's manifest.json.
    assert_eq!(json(&archive, "oci-layout")["imageLayoutVersion"], "1.0.0");
    let index = &json(&archive, "index.json")["manifests"][0];
    assert_eq!(index["digest"], digest.as_str());
    let annotations = &index["annotations"];
    assert_eq!(
        annotations["io.containerd.image.name"],
        "keyrotor.test/keyrotor:check"
    );
    assert_eq!(annotations["org.opencontainers.image.ref.name"], "check");
    let manifest = json(&archive, &blob(&index["digest"]));
    let config_path = blob(&manifest["config"]["digest"]);
    let layer_path = blob(&manifest["layers"][0]["digest"]);
    let docker = &json(&archive, "manifest.json")[0];
    assert_eq!(docker["Config"], config_path.as_str());
    assert_eq!(docker["Layers"][0], layer_path.as_str());
    assert_eq!(docker["RepoTags"][0], "keyrotor.test/keyrotor:check");

    // The Dockerfile's final stage and the image's config agree.
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("FROM");
    let stage = &lines[from..];
    let config = &json(&archive, &config_path)["config"];
    assert_eq!(config["User"], instruction(stage, "USER"));
    let exec_form =
        |keyword| serde_json::from_str::<Value>(instruction(stage, keyword)).expect(keyword);
    assert_eq!(config["Entrypoint"], exec_form("ENTRYPOINT"));
    assert_eq!(config["Cmd"], exec_form("CMD"));
    let port = format!("{}/tcp", instruction(stage, "EXPOSE"));
    let ports: Vec<&String> = config["ExposedPorts"]
        .as_object()
        .expect("ports")
        .keys()
        .collect();
    assert_eq!(ports, [&port]);
    let copy = instruction(stage, "COPY");
    assert!(
        copy.starts_with("--from=build /src/target/release/keyrotor "),
        "{copy}"
    );
    let entrypoint = config["Entrypoint"][0].as_str().expect("entrypoint");
    assert_eq!(copy.rsplit(' ').next(), Some(entrypoint));
    let labels = stage.join("\n");
    for label in labels.split("org.opencontainers.image.").skip(1) {
        let (key, value) = label.split_once("=\"").expect("LABEL key=\"value\"");
        let value = value.split('"').next().unwrap_or_default();
        assert_eq!(
            config["Labels"][format!("org.opencontainers.image.{key}")],
            value
        );
    }

    // The layer: the entrypoint binary 0755 root-owned, nonroot in /etc/passwd.
    let layer = dir.join("layer.tar.gz");
    std::fs::write(&layer, member(&archive, &layer_path)).expect("write layer");
    let listing = run(Command::new("tar")
        .arg("-tvzf")
        .arg(&layer)
        .arg("--numeric-owner"));
    let binary_entry = listing
        .lines()
        .find(|l| l.ends_with(&format!(" {}", &entrypoint[1..])));
    let binary_entry = binary_entry.unwrap_or_else(|| panic!("no {entrypoint} in\n{listing}"));
    assert!(
        binary_entry.starts_with("-rwxr-xr-x 0/0 "),
        "{binary_entry}"
    );
    let passwd = String::from_utf8(member(&layer, "etc/passwd")).expect("passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:")),
        "{passwd}"
    );
}

#[test]
fn dockerignore_keeps_what_cargo_reads() {
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    let ignored: Vec<&str> = ignored.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        ignored.contains(&"target/") && ignored.contains(&".git/"),
        "{ignored:?}"
    );
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let members = manifest
        .lines()
        .find(|l| l.starts_with("members = "))
        .expect("members");
    let members = members.split('"').skip(1).step_by(2).filter(|m| *m != ".");
    for needed in members.chain(["src", "Cargo.toml", "Cargo.lock"]) {
        let excluded = ignored
            .iter()
            .any(|l| l.trim_start_matches("**/").trim_end_matches('/') == needed);
        assert!(
            !excluded,
            ".dockerignore excludes {needed}, which cargo reads"
        );
    }
}
