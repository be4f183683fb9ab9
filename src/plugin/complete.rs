//! Shell completion: kubectl's plugin completion convention (`kubectl
//! keyrotor <TAB>`) and the scripts of `kubectl-keyrotor completion SHELL`.
//!
//! kubectl 1.26 and later complete a plugin's words by running the executable
//! `kubectl_complete-<plugin>` found on PATH with the plugin's words so far,
//! the last one being the word under the cursor (empty for a new word), and
//! read cobra's `__complete` output: one candidate a line (`value<TAB>help`),
//! then `:<directive>`. The release archive ships `kubectl_complete-keyrotor`,
//! a script that runs `kubectl-keyrotor __complete WORDS...`; the binary
//! also answers when it is itself called `kubectl_complete-keyrotor`.
//!
//! The words are completed by clap_complete's engine over the same clap
//! command that parses them, so subcommands and flags cannot drift from what
//! the parser accepts. Policy names, namespaces and contexts are read at
//! completion time (one list call, with the `-n`, `--context`,
//! `--kubeconfig` and `--as` flags already typed).

use std::{
    ffi::{OsStr, OsString},
    path::Path,
    time::Duration,
};

use clap::{CommandFactory, FromArgMatches};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, api::ListParams, config::Kubeconfig};

use super::{
    args::{ConnectionArgs, PluginCli},
    connect::connect,
};
use crate::crd::AccessKeyPolicy;

/// The hidden first argument that asks the binary for completions (cobra's name for it).
pub const COMPLETE_COMMAND: &str = "__complete";
/// The executable name kubectl looks for to complete `kubectl keyrotor ...`.
pub const COMPLETION_EXECUTABLE: &str = "kubectl_complete-keyrotor";
/// The name the scripts of `completion SHELL` complete.
pub const BINARY: &str = "kubectl-keyrotor";
/// How long a completion may wait for the API server before it offers nothing.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Cobra's `ShellCompDirective`: what the shell does besides offering the candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// `0`: the shell's default, which falls back to file names.
    Default,
    /// `4`: no file-name completion (the candidates are all there is).
    NoFileComp,
}

impl Directive {
    /// The number cobra writes after the colon.
    pub fn code(self) -> u8 {
        match self {
            Self::Default => 0,
            Self::NoFileComp => 4,
        }
    }
}

/// Candidates for one word, and the directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completions {
    /// Each candidate with its one-line help, if any.
    pub candidates: Vec<(String, Option<String>)>,
    /// What the shell does besides.
    pub directive: Directive,
}

impl Completions {
    /// Cobra's `__complete` output: `value` or `value<TAB>help` per line, then `:<directive>`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (value, help) in &self.candidates {
            out.push_str(value);
            if let Some(help) = help {
                out.push('\t');
                out.push_str(help);
            }
            out.push('\n');
        }
        out.push_str(&format!(":{}\n", self.directive.code()));
        out
    }
}

/// The words to complete, when this run is a completion request: the binary
/// called as `kubectl_complete-keyrotor WORDS...` or as `kubectl-keyrotor __complete WORDS...`.
pub fn completion_request(args: &[OsString]) -> Option<Vec<OsString>> {
    let program = args.first()?;
    if Path::new(program).file_name() == Some(OsStr::new(COMPLETION_EXECUTABLE)) {
        return Some(args[1..].to_vec());
    }
    (args.get(1)? == COMPLETE_COMMAND).then(|| args[2..].to_vec())
}

/// Completes the last of `words` (the plugin's arguments; the last one is the
/// word under the cursor, empty for a new word).
pub fn complete(words: &[OsString], current_dir: Option<&Path>) -> Completions {
    let (current, typed) = match words.split_last() {
        Some((current, typed)) => (current.clone(), typed),
        None => (OsString::new(), &[][..]),
    };
    // A kubeconfig path: the shell's own file-name completion does it best.
    if typed.last().is_some_and(|w| w == "--kubeconfig") {
        return Completions {
            candidates: Vec::new(),
            directive: Directive::Default,
        };
    }
    let mut command = completion_command(connection_args(typed));
    let args: Vec<OsString> = std::iter::once(OsString::from(BINARY))
        .chain(typed.iter().cloned())
        .chain(std::iter::once(current))
        .collect();
    let index = args.len() - 1;
    let typing_a_flag = args[index].to_string_lossy().starts_with('-');
    let mut candidates: Vec<(String, Option<String>)> =
        clap_complete::engine::complete(&mut command, args, index, current_dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !c.is_hide_set())
            .map(|c| {
                let help = c
                    .get_help()
                    .map(|h| h.to_string())
                    .and_then(|h| h.lines().next().map(str::to_owned))
                    .filter(|h| !h.is_empty());
                (c.get_value().to_string_lossy().into_owned(), help)
            })
            .collect();
    // As cobra (kubectl's own completion) does: flags only once a `-` is typed.
    if !typing_a_flag {
        candidates.retain(|(v, _)| !v.starts_with('-'));
    }
    Completions {
        candidates,
        directive: Directive::NoFileComp,
    }
}

/// The script `kubectl-keyrotor completion SHELL` prints (completes the
/// binary's own name; it offers subcommands and flags).
pub fn script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut command = PluginCli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, BINARY, &mut script);
    script
}

/// The connection flags among the words typed so far (`-n`, `--context`,
/// `--kubeconfig`, `--as`...), wherever they stand; the rest may be incomplete.
fn connection_args(typed: &[OsString]) -> ConnectionArgs {
    PluginCli::command()
        .ignore_errors(true)
        .try_get_matches_from(std::iter::once(OsString::from(BINARY)).chain(typed.iter().cloned()))
        .ok()
        .and_then(|matches| ConnectionArgs::from_arg_matches(&matches).ok())
        .unwrap_or_default()
}

/// The parsing command with value lookups on the policy names, `-n` and `--context`.
fn completion_command(connection: ConnectionArgs) -> clap::Command {
    let names = {
        let connection = connection.clone();
        ArgValueCandidates::new(move || policy_names(&connection))
    };
    let namespaces = {
        let connection = connection.clone();
        ArgValueCandidates::new(move || namespaces(&connection))
    };
    let kubeconfig = connection.kubeconfig.clone();
    PluginCli::command()
        .mut_arg("namespace", |arg| arg.add(namespaces))
        .mut_arg("context", |arg| {
            arg.add(ArgValueCandidates::new(move || {
                contexts(kubeconfig.as_deref())
            }))
        })
        .mut_subcommand("rotate", |c| {
            c.mut_arg("name", |arg| arg.add(names.clone()))
        })
        .mut_subcommand("status", |c| c.mut_arg("name", |arg| arg.add(names)))
}

/// Runs one lookup on a runtime of its own (completion runs outside any), for
/// at most [`LOOKUP_TIMEOUT`]; any failure offers nothing, as kubectl's own
/// completion does (an error on the terminal would garble the prompt).
fn lookup<F>(work: F) -> Vec<CompletionCandidate>
where
    F: std::future::Future<Output = Option<Vec<String>>>,
{
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    runtime
        .block_on(async { tokio::time::timeout(LOOKUP_TIMEOUT, work).await })
        .ok()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

/// The names of the policies in the namespace the typed flags point at.
fn policy_names(connection: &ConnectionArgs) -> Vec<CompletionCandidate> {
    lookup(async {
        let connection = connect(connection).await.ok()?;
        let api: Api<AccessKeyPolicy> =
            Api::namespaced(connection.client.clone(), &connection.namespace);
        let list = api.list_metadata(&ListParams::default()).await.ok()?;
        Some(
            list.items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect(),
        )
    })
}

/// The cluster's namespaces (nothing when the user may not list them).
fn namespaces(connection: &ConnectionArgs) -> Vec<CompletionCandidate> {
    lookup(async {
        let connection = connect(connection).await.ok()?;
        let api: Api<Namespace> = Api::all(connection.client.clone());
        let list = api.list_metadata(&ListParams::default()).await.ok()?;
        Some(
            list.items
                .into_iter()
                .filter_map(|n| n.metadata.name)
                .collect(),
        )
    })
}

/// The kubeconfig's context names (read locally, no API call).
fn contexts(kubeconfig: Option<&Path>) -> Vec<CompletionCandidate> {
    let config = match kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    };
    config
        .map(|config| {
            config
                .contexts
                .into_iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn values(words_: &[&str]) -> Vec<String> {
        complete(&words(words_), None)
            .candidates
            .into_iter()
            .map(|(value, _)| value)
            .collect()
    }

    #[test]
    fn subcommands_complete_with_their_help() {
        let completions = complete(&words(&[""]), None);
        let names: Vec<&str> = completions
            .candidates
            .iter()
            .map(|(v, _)| v.as_str())
            .collect();
        for subcommand in ["rotate", "status", "completion"] {
            assert!(names.contains(&subcommand), "{names:?}");
        }
        assert_eq!(completions.directive, Directive::NoFileComp);
        let (_, help) = completions
            .candidates
            .iter()
            .find(|(v, _)| v == "rotate")
            .expect("rotate");
        assert!(
            help.as_deref()
                .is_some_and(|h| h.starts_with("Ask the operator")),
            "{help:?}"
        );
        assert_eq!(values(&["st"]), ["status"]);
        // Flags wait for a `-`, as in kubectl.
        assert!(!names.iter().any(|v| v.starts_with('-')), "{names:?}");
        assert!(values(&["-"]).iter().any(|v| v == "-n"));
    }

    #[test]
    fn flags_complete_per_subcommand_and_after_global_flags() {
        let rotate = values(&["rotate", "--"]);
        for flag in [
            "--force",
            "--wait",
            "--timeout",
            "--all",
            "--selector",
            "--as",
            "--as-group",
            "--namespace",
        ] {
            assert!(rotate.iter().any(|f| f == flag), "{flag}: {rotate:?}");
        }
        assert_eq!(values(&["-n", "ns", "rotate", "--fo"]), ["--force"]);
        let status = values(&["status", "--"]);
        assert!(!status.iter().any(|f| f == "--force"), "{status:?}");
        assert!(status.iter().any(|f| f == "--all-namespaces"), "{status:?}");
        assert_eq!(values(&["completion", "fi"]), ["fish"]);
    }

    #[test]
    fn a_kubeconfig_path_is_left_to_the_shell() {
        let completions = complete(&words(&["status", "--kubeconfig", ""]), None);
        assert_eq!(completions.render(), ":0\n");
    }

    #[test]
    fn the_output_is_cobras() {
        let completions = Completions {
            candidates: vec![("a".into(), Some("the a".into())), ("b".into(), None)],
            directive: Directive::NoFileComp,
        };
        assert_eq!(completions.render(), "a\tthe a\nb\n:4\n");
    }

    #[test]
    fn the_typed_connection_flags_are_read_wherever_they_stand() {
        let args = connection_args(&words(&[
            "-n",
            "security",
            "rotate",
            "--context",
            "prod",
            "--as",
            "jane",
            "--as-group",
            "ops",
        ]));
        assert_eq!(args.namespace.as_deref(), Some("security"));
        assert_eq!(args.context.as_deref(), Some("prod"));
        assert_eq!(args.as_user.as_deref(), Some("jane"));
        assert_eq!(args.as_group, ["ops"]);
        // Incomplete lines still yield what is there.
        let args = connection_args(&words(&["rotate", "--namespace=x", "--wait", "--timeout"]));
        assert_eq!(args.namespace.as_deref(), Some("x"));
    }

    #[test]
    fn a_completion_request_is_recognised_by_name_or_first_argument() {
        assert_eq!(
            completion_request(&words(&["/usr/bin/kubectl_complete-keyrotor", "st"])),
            Some(words(&["st"]))
        );
        assert_eq!(
            completion_request(&words(&["kubectl-keyrotor", "__complete", "rotate", ""])),
            Some(words(&["rotate", ""]))
        );
        assert_eq!(
            completion_request(&words(&["kubectl-keyrotor", "status"])),
            None
        );
    }

    #[test]
    fn the_scripts_complete_the_binarys_own_name() {
        let bash = String::from_utf8(script(clap_complete::Shell::Bash)).expect("utf-8");
        assert!(bash.contains("kubectl-keyrotor"), "{bash}");
        assert!(bash.contains("rotate") && bash.contains("--force"));
        let fish = String::from_utf8(script(clap_complete::Shell::Fish)).expect("utf-8");
        assert!(fish.contains("complete -c kubectl-keyrotor"), "{fish}");
    }
}
