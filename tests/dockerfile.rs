//! What can be checked about the image without a container engine (there is
//! none on the build machines): the Dockerfile parses into stages; the file
//! the final stage copies is the one its build stage's `cargo build` produces
//! for a binary of the root package; the build context holds every file cargo
//! reads and none of `target/`; the final stage runs that binary as a numeric
//! non-root user, needs no shell, and its libc matches the build's; the
//! default command is one the binary accepts. Each rule also has a test that
//! breaks the Dockerfile on purpose and expects the rule to say so.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

// ---------------------------------------------------------------------------
// Dockerfile

/// One instruction: keyword (upper case) and its argument text.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

#[derive(Debug, Clone)]
struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, keyword: &str) -> impl Iterator<Item = &Instruction> {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
    }

    fn last(&self, keyword: &str) -> Option<&Instruction> {
        self.all(keyword).last()
    }

    /// The working directory after every WORKDIR (relative ones stack).
    fn workdir(&self) -> String {
        let mut dir = String::from("/");
        for instruction in self.all("WORKDIR") {
            dir = join(&dir, instruction.args.trim());
        }
        dir
    }

    /// `ENV` values of the stage (`KEY=value` and the legacy `KEY value` form).
    fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for instruction in self.all("ENV") {
            let args = instruction.args.trim();
            if args.contains('=') {
                for pair in split_words(args) {
                    if let Some((key, value)) = pair.split_once('=') {
                        env.insert(key.to_owned(), value.to_owned());
                    }
                }
            } else if let Some((key, value)) = args.split_once(char::is_whitespace) {
                env.insert(key.to_owned(), value.trim().to_owned());
            }
        }
        env
    }
}

fn join(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        normalize(path)
    } else {
        normalize(&format!("{base}/{path}"))
    }
}

fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Words of a shell-form argument, quotes removed (no expansion).
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The JSON (exec) form of an instruction, if it is one.
fn exec_form(args: &str) -> Option<Vec<String>> {
    let args = args.trim();
    if !args.starts_with('[') {
        return None;
    }
    serde_json::from_str(args).ok()
}

/// Replaces `$NAME`, `${NAME}` and `${NAME:-default}` with the global ARGs.
fn substitute(text: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, default, used) = if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').unwrap_or(inner.len());
            let body = &inner[..end];
            let (name, default) = match body.split_once(":-") {
                Some((name, default)) => (name, default),
                None => (body, ""),
            };
            (name.to_owned(), default.to_owned(), end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (after[..end].to_owned(), String::new(), end)
        };
        out.push_str(args.get(&name).map_or(default.as_str(), String::as_str));
        rest = &after[used.min(after.len())..];
    }
    out.push_str(rest);
    out
}

/// Parses a Dockerfile into its stages (comments, parser directives and line
/// continuations as BuildKit handles them).
fn parse_dockerfile(text: &str) -> Result<Vec<Stage>, String> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') {
            continue; // also inside a continued instruction, as BuildKit does
        }
        if let Some(body) = line.trim_end().strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        if !current.trim().is_empty() {
            logical.push(std::mem::take(&mut current));
        }
        current.clear();
    }
    if !current.trim().is_empty() {
        return Err("the last instruction ends with a line continuation".into());
    }

    let mut global_args = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let line = line.trim();
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let args = args.trim().to_owned();
        if keyword == "FROM" {
            let words: Vec<String> = split_words(&substitute(&args, &global_args))
                .into_iter()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let (image, name) = match words.as_slice() {
                [image] => (image.clone(), None),
                [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    (image.clone(), Some(name.clone()))
                }
                _ => return Err(format!("cannot read `FROM {args}`")),
            };
            stages.push(Stage {
                image,
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(Instruction { keyword, args });
        } else if keyword == "ARG" {
            let (name, default) = args.split_once('=').unwrap_or((&args, ""));
            global_args.insert(
                name.trim().to_owned(),
                default.trim().trim_matches('"').to_owned(),
            );
        } else {
            return Err(format!("`{keyword}` before the first FROM"));
        }
    }
    if stages.is_empty() {
        return Err("no FROM".into());
    }
    Ok(stages)
}

/// A COPY: flags, sources, destination.
#[derive(Debug)]
struct Copy {
    from: Option<String>,
    sources: Vec<String>,
    dest: String,
}

fn parse_copy(args: &str) -> Option<Copy> {
    let mut words = split_words(args);
    let mut from = None;
    while words.first().is_some_and(|w| w.starts_with("--")) {
        let flag = words.remove(0);
        if let Some(stage) = flag.strip_prefix("--from=") {
            from = Some(stage.to_owned());
        }
    }
    let rest = words.join(" ");
    let mut paths = exec_form(&rest).unwrap_or(words);
    let dest = paths.pop()?;
    if paths.is_empty() {
        return None;
    }
    Some(Copy {
        from,
        sources: paths,
        dest,
    })
}

/// The cargo invocation of a RUN: its arguments after `cargo build`, and any
/// `NAME=value` assignments in front of it.
struct CargoBuild {
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

fn cargo_build_in(run_args: &str) -> Option<CargoBuild> {
    let words = match exec_form(run_args) {
        Some(words) => words,
        None => split_words(run_args)
            .into_iter()
            .skip_while(|w| w.starts_with("--")) // RUN's own --mount/--network flags
            .collect(),
    };
    let mut env = BTreeMap::new();
    for (i, word) in words.iter().enumerate() {
        if word == "cargo" && words.get(i + 1).is_some_and(|w| w == "build") {
            let args = words[i + 2..]
                .iter()
                .take_while(|w| !matches!(w.as_str(), "&&" | "||" | ";" | "|"))
                .cloned()
                .collect();
            return Some(CargoBuild { args, env });
        }
        match word.split_once('=') {
            Some((key, value)) if key.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
                env.insert(key.to_owned(), value.to_owned());
            }
            _ => env.clear(),
        }
    }
    None
}

/// `--flag value` or `--flag=value`.
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let prefix = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, arg)| {
        if arg == flag {
            args.get(i + 1).cloned()
        } else {
            arg.strip_prefix(&prefix).map(str::to_owned)
        }
    })
}

// ---------------------------------------------------------------------------
// Cargo manifests (the few keys this test needs; no TOML crate in the tree)

#[derive(Debug, Default)]
struct Section {
    name: String,
    entries: BTreeMap<String, String>,
}

fn parse_manifest(text: &str) -> Vec<Section> {
    let mut sections = vec![Section::default()];
    let mut pending: Option<(String, String)> = None;
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or_default().trim();
        if let Some((key, mut value)) = pending.take() {
            value.push(' ');
            value.push_str(line);
            if value.matches('[').count() > value.matches(']').count() {
                pending = Some((key, value));
            } else if let Some(section) = sections.last_mut() {
                section.entries.insert(key, value);
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            sections.push(Section {
                name: line.trim_matches(['[', ']']).trim().to_owned(),
                entries: BTreeMap::new(),
            });
        } else if let Some((key, value)) = line.split_once('=') {
            let (key, value) = (key.trim().to_owned(), value.trim().to_owned());
            if value.matches('[').count() > value.matches(']').count() {
                pending = Some((key, value));
            } else if let Some(section) = sections.last_mut() {
                section.entries.insert(key, value);
            }
        }
    }
    sections
}

fn quoted_strings(value: &str) -> Vec<String> {
    value
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn string_value(value: &str) -> Option<String> {
    quoted_strings(value).into_iter().next()
}

/// What the workspace offers the Dockerfile.
struct Workspace {
    root: PathBuf,
    package: String,
    /// Binary targets of the root package (explicit and auto-discovered).
    bins: Vec<String>,
    /// Workspace members, relative to the root ("." for the root package).
    members: Vec<String>,
}

impl Workspace {
    fn load(root: &Path) -> Workspace {
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
        let sections = parse_manifest(&manifest);
        let section = |name: &str| sections.iter().find(|s| s.name == name);
        let package = section("package")
            .and_then(|s| s.entries.get("name"))
            .and_then(|v| string_value(v))
            .expect("[package] name");
        let members = section("workspace")
            .and_then(|s| s.entries.get("members"))
            .map(|v| quoted_strings(v))
            .unwrap_or_else(|| vec![".".to_owned()]);
        let mut bins: Vec<String> = sections
            .iter()
            .filter(|s| s.name == "bin")
            .filter_map(|s| s.entries.get("name").and_then(|v| string_value(v)))
            .collect();
        let autobins = section("package")
            .and_then(|s| s.entries.get("autobins"))
            .is_none_or(|v| v != "false");
        if autobins {
            if root.join("src/main.rs").is_file() {
                bins.push(package.clone());
            }
            if let Ok(entries) = std::fs::read_dir(root.join("src/bin")) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "rs") {
                        bins.extend(path.file_stem().map(|s| s.to_string_lossy().into_owned()));
                    } else if path.join("main.rs").is_file() {
                        bins.push(entry.file_name().to_string_lossy().into_owned());
                    }
                }
            }
        }
        Workspace {
            root: root.to_owned(),
            package,
            bins,
            members,
        }
    }

    /// Files cargo reads to build any member: manifests, lock file, sources,
    /// and whatever the sources `include_str!`/`include_bytes!`.
    fn files_cargo_reads(&self) -> Vec<String> {
        let mut files = vec!["Cargo.toml".to_owned(), "Cargo.lock".to_owned()];
        for member in &self.members {
            let dir = if member == "." {
                String::new()
            } else {
                format!("{member}/")
            };
            files.push(format!("{dir}Cargo.toml"));
            let mut sources = Vec::new();
            walk(&self.root, &format!("{dir}src"), &mut sources);
            for source in &sources {
                files.extend(self.included_by(source));
            }
            files.extend(sources);
        }
        files.sort();
        files.dedup();
        files
    }

    fn included_by(&self, source: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.root.join(source)).unwrap_or_default();
        let dir = Path::new(source).parent().unwrap_or(Path::new(""));
        let mut found = Vec::new();
        for marker in ["include_str!(\"", "include_bytes!(\""] {
            for piece in text.split(marker).skip(1) {
                if let Some(path) = piece.split('"').next() {
                    let joined = normalize(&format!("/{}/{path}", dir.display()));
                    found.push(joined.trim_start_matches('/').to_owned());
                }
            }
        }
        found
    }
}

fn walk(root: &Path, relative: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(root.join(relative)) else {
        return;
    };
    for entry in entries.flatten() {
        let path = format!("{relative}/{}", entry.file_name().to_string_lossy());
        if entry.path().is_dir() {
            walk(root, &path, out);
        } else {
            out.push(path);
        }
    }
}

// ---------------------------------------------------------------------------
// .dockerignore (Docker's rules: last matching pattern wins, `!` re-includes,
// a pattern matching a directory excludes everything below it)

fn ignored(dockerignore: &str, path: &str) -> bool {
    let mut verdict = false;
    for line in dockerignore.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (negated, pattern) = match line.strip_prefix('!') {
            Some(pattern) => (true, pattern),
            None => (false, line),
        };
        let pattern = normalize(pattern);
        let pattern: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let matches = (1..=segments.len()).any(|n| glob(&pattern, &segments[..n]));
        if matches {
            verdict = !negated;
        }
    }
    verdict
}

fn glob(pattern: &[&str], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(&"**"), _) => {
            glob(&pattern[1..], path) || (!path.is_empty() && glob(pattern, &path[1..]))
        }
        (Some(p), Some(s)) => {
            wildcard(p.as_bytes(), s.as_bytes()) && glob(&pattern[1..], &path[1..])
        }
        _ => false,
    }
}

fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard(&pattern[1..], text) || (!text.is_empty() && wildcard(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) => p == t && wildcard(&pattern[1..], &text[1..]),
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// The rules

/// The image's command line and where its binary comes from.
#[derive(Debug)]
struct Image {
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

/// Every broken rule, each as a sentence; empty means the image is as it should be.
fn problems(
    dockerfile: &str,
    dockerignore: &str,
    workspace: &Workspace,
) -> (Vec<String>, Option<Image>) {
    let mut problems = Vec::new();
    let stages = match parse_dockerfile(dockerfile) {
        Ok(stages) => stages,
        Err(e) => return (vec![format!("the Dockerfile does not parse: {e}")], None),
    };
    if stages.len() < 2 {
        problems.push("a multi-stage build: the toolchain stays out of the image".to_owned());
    }
    let last = stages.len() - 1;
    let runtime = &stages[last];

    // The final stage: runs without a shell, as a numeric non-root user.
    if runtime.all("RUN").next().is_some() {
        problems.push("the final stage has a RUN: distroless images have no shell".to_owned());
    }
    match runtime.last("USER").map(|u| u.args.trim().to_owned()) {
        None => problems.push("the final stage sets no USER, so it runs as root".to_owned()),
        Some(user) => {
            let (uid, gid) = user.split_once(':').unwrap_or((&user, "0"));
            match uid.parse::<u32>() {
                Err(_) => problems.push(format!(
                    "USER {user}: the user must be numeric, or Kubernetes' runAsNonRoot cannot verify it"
                )),
                Ok(0) => problems.push(format!("USER {user} is root")),
                Ok(_) => {}
            }
            if gid.parse::<u32>().is_err() {
                problems.push(format!("USER {user}: the group must be numeric"));
            }
        }
    }
    let entrypoint = runtime.last("ENTRYPOINT").and_then(|e| exec_form(&e.args));
    let cmd = runtime
        .last("CMD")
        .map(|c| exec_form(&c.args).unwrap_or_default())
        .unwrap_or_default();
    let Some(entrypoint) = entrypoint.filter(|e| !e.is_empty()) else {
        problems.push(
            "ENTRYPOINT in exec form (a JSON array): the shell form needs /bin/sh".to_owned(),
        );
        return (problems, None);
    };
    if runtime
        .last("CMD")
        .is_some_and(|c| exec_form(&c.args).is_none())
    {
        problems.push("CMD in exec form (a JSON array): the shell form needs /bin/sh".to_owned());
    }
    let image = Image {
        entrypoint: entrypoint.clone(),
        cmd,
    };

    // The binary the ENTRYPOINT runs is copied from a build stage.
    let binary = join(&runtime.workdir(), &entrypoint[0]);
    let copy = runtime
        .all("COPY")
        .filter_map(|c| parse_copy(&c.args))
        .find(|copy| {
            copy.sources.iter().any(|source| {
                let dest = if copy.dest.ends_with('/') {
                    join(&join(&runtime.workdir(), &copy.dest), basename(source))
                } else {
                    join(&runtime.workdir(), &copy.dest)
                };
                dest == binary
            })
        });
    let Some(copy) = copy else {
        problems.push(format!(
            "nothing in the final stage puts {binary} (the ENTRYPOINT) there"
        ));
        return (problems, Some(image));
    };
    let Some(from) = copy.from.clone() else {
        problems.push(format!(
            "{binary} is copied from the build context, not built"
        ));
        return (problems, Some(image));
    };
    let build = stages[..last]
        .iter()
        .enumerate()
        .find(|(i, s)| s.name.as_deref() == Some(from.as_str()) || from == i.to_string())
        .map(|(_, s)| s);
    let Some(build) = build else {
        problems.push(format!("COPY --from={from}: no earlier stage of that name"));
        return (problems, Some(image));
    };

    // That stage's cargo build, and where it puts the binary.
    let Some(cargo) = build.all("RUN").find_map(|r| cargo_build_in(&r.args)) else {
        problems.push(format!("stage {from} runs no `cargo build`"));
        return (problems, Some(image));
    };
    let args = &cargo.args;
    if !args.iter().any(|a| a == "--locked") {
        problems.push("cargo build --locked: the image builds exactly Cargo.lock".to_owned());
    }
    if let Some(package) = flag_value(args, "-p").or_else(|| flag_value(args, "--package"))
        && package != workspace.package
    {
        problems.push(format!(
            "cargo build -p {package}: the operator is package {}",
            workspace.package
        ));
    }
    let bin = flag_value(args, "--bin");
    match &bin {
        None => problems
            .push("cargo build --bin <name>: build the one binary the image runs".to_owned()),
        Some(bin) if !workspace.bins.contains(bin) => problems.push(format!(
            "--bin {bin} is not a binary of package {} (it has {:?})",
            workspace.package, workspace.bins
        )),
        Some(_) => {}
    }
    let mut env = build.env();
    env.extend(cargo.env.clone());
    let profile_dir = match flag_value(args, "--profile") {
        Some(profile) if profile == "dev" || profile == "test" => "debug".to_owned(),
        Some(profile) if profile == "bench" => "release".to_owned(),
        Some(profile) => profile,
        None if args.iter().any(|a| a == "--release" || a == "-r") => "release".to_owned(),
        None => "debug".to_owned(),
    };
    if profile_dir == "debug" {
        problems.push("cargo build --release: a debug binary is slow and large".to_owned());
    }
    let target = flag_value(args, "--target").or_else(|| env.get("CARGO_BUILD_TARGET").cloned());
    let target_dir = flag_value(args, "--target-dir")
        .or_else(|| env.get("CARGO_TARGET_DIR").cloned())
        .unwrap_or_else(|| "target".to_owned());
    let mut produced = join(&build.workdir(), &target_dir);
    if let Some(target) = &target {
        produced = join(&produced, target);
    }
    produced = join(
        &join(&produced, &profile_dir),
        bin.as_deref().unwrap_or("?"),
    );
    let copied: Vec<String> = copy.sources.iter().map(|s| join("/", s)).collect();
    if !copied.contains(&produced) {
        problems.push(format!(
            "the final stage copies {copied:?} from {from}, but `cargo build {}` there produces {produced}",
            args.join(" ")
        ));
    }

    // The libc the binary was linked against exists in the final image.
    let musl = target.as_deref().is_some_and(|t| t.contains("musl"));
    if !musl {
        let debian = |image: &str| -> Option<&'static str> {
            [
                ("bookworm", "12"),
                ("debian12", "12"),
                ("trixie", "13"),
                ("debian13", "13"),
            ]
            .into_iter()
            .find(|(name, _)| image.contains(name))
            .map(|(_, version)| version)
        };
        let runtime_has_glibc =
            runtime.image.contains("distroless/cc") || runtime.image.contains("distroless/base");
        if !runtime_has_glibc {
            problems.push(format!(
                "{} has no glibc for a {} build: use distroless/cc, or build for a musl target",
                runtime.image,
                target.as_deref().unwrap_or("glibc")
            ));
        } else if debian(&build.image).is_none() || debian(&build.image) != debian(&runtime.image) {
            problems.push(format!(
                "build on {} and run on {}: the same Debian release on both sides, or the binary may need a newer glibc",
                build.image, runtime.image
            ));
        }
    }

    // The build context: everything cargo reads, and not target/.
    let context_sources: Vec<String> = build
        .all("COPY")
        .filter_map(|c| parse_copy(&c.args))
        .filter(|c| c.from.is_none())
        .flat_map(|c| c.sources)
        .map(|s| normalize(&s).trim_start_matches('/').to_owned())
        .collect();
    for file in workspace.files_cargo_reads() {
        let copied = context_sources
            .iter()
            .any(|s| s.is_empty() || file == *s || file.starts_with(&format!("{s}/")));
        if !copied {
            problems.push(format!(
                "stage {from} does not COPY {file}, which cargo reads"
            ));
        } else if ignored(dockerignore, &file) {
            problems.push(format!(".dockerignore excludes {file}, which cargo reads"));
        }
    }
    for big in ["target/release/keyrotor", ".git/HEAD"] {
        if !ignored(dockerignore, big) {
            problems.push(format!(
                ".dockerignore must exclude {big} (build output and history)"
            ));
        }
    }
    (problems, Some(image))
}

fn basename(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

fn workspace() -> Workspace {
    Workspace::load(&root())
}

fn problems_of(dockerfile: &str, dockerignore: &str) -> Vec<String> {
    problems(dockerfile, dockerignore, &workspace()).0
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn the_dockerfile_builds_runs_and_ships_what_it_should() {
    let (problems, image) = problems(&read("Dockerfile"), &read(".dockerignore"), &workspace());
    assert!(
        problems.is_empty(),
        "Dockerfile:\n- {}",
        problems.join("\n- ")
    );
    let image = image.expect("an image");
    assert_eq!(image.entrypoint, ["/keyrotor"]);
    assert_eq!(image.cmd, ["run"]);
}

#[test]
fn the_default_command_is_one_the_binary_accepts() {
    // ENTRYPOINT ["/keyrotor"] + CMD ["run"]: the keyrotor binary must take `run`.
    let (_, image) = problems(&read("Dockerfile"), &read(".dockerignore"), &workspace());
    let image = image.expect("an image");
    let output = Command::new(env!("CARGO_BIN_EXE_keyrotor"))
        .args(image.entrypoint.iter().skip(1).chain(&image.cmd))
        .arg("--help")
        .env_remove("RUST_LOG")
        .output()
        .expect("run keyrotor");
    assert!(
        output.status.success(),
        "keyrotor {:?} --help: {}",
        image.cmd,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_workspace_reading_finds_the_operator_binary() {
    let workspace = workspace();
    assert_eq!(workspace.package, "keyrotor");
    assert!(
        workspace.bins.contains(&"keyrotor".to_owned()),
        "{:?}",
        workspace.bins
    );
    assert!(workspace.members.contains(&"cloudflare-sim".to_owned()));
    let files = workspace.files_cargo_reads();
    for expected in [
        "Cargo.lock",
        "src/main.rs",
        "cloudflare-sim/Cargo.toml",
        "testenv/Cargo.toml",
    ] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} in {files:?}"
        );
    }
}

/// The build command as the Dockerfile spells it; mutations edit this line, not comments.
const CARGO_LINE: &str = "cargo build --release --locked --bin keyrotor";

/// `original` with the first `from` outside a comment replaced, insisting
/// that there is one (so a mutation test cannot pass by changing nothing, or
/// by editing a comment).
fn mutate(original: &str, from: &str, to: &str) -> String {
    let at = original
        .match_indices(from)
        .map(|(at, _)| at)
        .find(|&at| {
            let line_start = original[..at].rfind('\n').map_or(0, |i| i + 1);
            !original[line_start..].trim_start().starts_with('#')
        })
        .unwrap_or_else(|| panic!("no instruction contains {from:?}"));
    format!("{}{to}{}", &original[..at], &original[at + from.len()..])
}

fn assert_caught(dockerfile: &str, dockerignore: &str, fragment: &str) {
    let problems = problems_of(dockerfile, dockerignore);
    assert!(
        problems.iter().any(|p| p.contains(fragment)),
        "expected a problem mentioning {fragment:?}, got {problems:#?}"
    );
}

#[test]
fn copying_another_path_is_caught() {
    let (dockerfile, ignore) = (read("Dockerfile"), read(".dockerignore"));
    let debug = mutate(
        &dockerfile,
        "/src/target/release/keyrotor",
        "/src/target/debug/keyrotor",
    );
    assert_caught(&debug, &ignore, "produces /src/target/release/keyrotor");
    let other_bin = mutate(
        &dockerfile,
        CARGO_LINE,
        "cargo build --release --locked --bin cloudflare-sim",
    );
    assert_caught(
        &other_bin,
        &ignore,
        "--bin cloudflare-sim is not a binary of package keyrotor",
    );
    let moved = mutate(&dockerfile, "WORKDIR /src", "WORKDIR /build");
    assert_caught(&moved, &ignore, "produces /build/target/release/keyrotor");
    let musl = mutate(
        &dockerfile,
        CARGO_LINE,
        "cargo build --release --locked --bin keyrotor --target x86_64-unknown-linux-musl",
    );
    assert_caught(
        &musl,
        &ignore,
        "produces /src/target/x86_64-unknown-linux-musl/release/keyrotor",
    );
    let elsewhere = mutate(
        &dockerfile,
        "ENTRYPOINT [\"/keyrotor\"]",
        "ENTRYPOINT [\"/usr/bin/keyrotor\"]",
    );
    assert_caught(
        &elsewhere,
        &ignore,
        "nothing in the final stage puts /usr/bin/keyrotor",
    );
}

#[test]
fn a_musl_build_copied_from_its_own_path_may_run_on_a_static_image() {
    let dockerfile = read("Dockerfile");
    let musl = mutate(
        &dockerfile,
        CARGO_LINE,
        "cargo build --release --locked --bin keyrotor --target x86_64-unknown-linux-musl",
    );
    let musl = mutate(
        &musl,
        "/src/target/release/keyrotor",
        "/src/target/x86_64-unknown-linux-musl/release/keyrotor",
    );
    let musl = mutate(
        &musl,
        "distroless/cc-debian12",
        "distroless/static-debian12",
    );
    assert_eq!(
        problems_of(&musl, &read(".dockerignore")),
        Vec::<String>::new()
    );
}

#[test]
fn running_as_root_is_caught() {
    let (dockerfile, ignore) = (read("Dockerfile"), read(".dockerignore"));
    assert_caught(
        &mutate(&dockerfile, "USER 65532:65532", "USER 0"),
        &ignore,
        "is root",
    );
    assert_caught(
        &mutate(&dockerfile, "USER 65532:65532", "USER root"),
        &ignore,
        "must be numeric",
    );
    assert_caught(
        &mutate(&dockerfile, "USER 65532:65532", "USER nonroot"),
        &ignore,
        "must be numeric",
    );
    assert_caught(
        &mutate(&dockerfile, "USER 65532:65532\n", ""),
        &ignore,
        "runs as root",
    );
    let later_root = mutate(&dockerfile, "ENTRYPOINT", "USER 0:0\nENTRYPOINT");
    assert_caught(&later_root, &ignore, "is root");
}

#[test]
fn a_shell_in_the_final_stage_is_caught() {
    let (dockerfile, ignore) = (read("Dockerfile"), read(".dockerignore"));
    let run = mutate(
        &dockerfile,
        "USER 65532:65532",
        "RUN chmod 0555 /keyrotor\nUSER 65532:65532",
    );
    assert_caught(&run, &ignore, "has a RUN");
    let shell_entrypoint = mutate(
        &dockerfile,
        "ENTRYPOINT [\"/keyrotor\"]",
        "ENTRYPOINT /keyrotor",
    );
    assert_caught(&shell_entrypoint, &ignore, "ENTRYPOINT in exec form");
    let shell_cmd = mutate(&dockerfile, "CMD [\"run\"]", "CMD run");
    assert_caught(&shell_cmd, &ignore, "CMD in exec form");
}

#[test]
fn a_glibc_binary_on_an_image_without_that_glibc_is_caught() {
    let (dockerfile, ignore) = (read("Dockerfile"), read(".dockerignore"));
    let static_image = mutate(
        &dockerfile,
        "distroless/cc-debian12",
        "distroless/static-debian12",
    );
    assert_caught(&static_image, &ignore, "has no glibc");
    let newer_builder = mutate(&dockerfile, "-bookworm AS build", "-trixie AS build");
    assert_caught(
        &newer_builder,
        &ignore,
        "the same Debian release on both sides",
    );
}

#[test]
fn build_flags_and_context_are_checked() {
    let (dockerfile, ignore) = (read("Dockerfile"), read(".dockerignore"));
    let unlocked = mutate(
        &dockerfile,
        CARGO_LINE,
        "cargo build --release --bin keyrotor",
    );
    assert_caught(&unlocked, &ignore, "--locked");
    let debug = mutate(
        &dockerfile,
        CARGO_LINE,
        "cargo build --locked --bin keyrotor",
    );
    assert_caught(&debug, &ignore, "--release");
    let every_bin = mutate(&dockerfile, CARGO_LINE, "cargo build --release --locked");
    assert_caught(&every_bin, &ignore, "--bin <name>");
    assert_caught(
        &mutate(&dockerfile, "COPY . .", "COPY src src"),
        &ignore,
        "does not COPY Cargo.lock",
    );
    assert_caught(
        &dockerfile,
        &mutate(&ignore, "target/\n", "").replace("**/target/\n", ""),
        "must exclude target/release/keyrotor",
    );
    assert_caught(
        &dockerfile,
        &format!("{ignore}src/\n"),
        ".dockerignore excludes src/main.rs",
    );
    assert_caught(
        &dockerfile,
        &format!("{ignore}*.lock\n"),
        ".dockerignore excludes Cargo.lock",
    );
    assert_caught(
        &dockerfile,
        &format!("{ignore}testenv\n"),
        ".dockerignore excludes testenv/Cargo.toml",
    );
    // A re-include after an exclusion is honoured.
    assert_eq!(
        problems_of(&dockerfile, &format!("{ignore}src/\n!src/\n")),
        Vec::<String>::new()
    );
}

#[test]
fn the_dockerfile_parser_reads_continuations_comments_and_global_args() {
    let stages = parse_dockerfile(
        "# syntax=docker/dockerfile:1\nARG V=1.2\nFROM img:${V}-x AS b\nRUN a \\\n  # note\n  b\nFROM --platform=$BUILDPLATFORM scratch\nCOPY --from=b /x /y\n",
    )
    .expect("parses");
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0].image, "img:1.2-x");
    assert_eq!(stages[0].name.as_deref(), Some("b"));
    assert_eq!(split_words(&stages[0].instructions[0].args), ["a", "b"]);
    assert_eq!(stages[1].image, "scratch");
    assert!(parse_dockerfile("RUN x\n").is_err(), "RUN before FROM");
}
