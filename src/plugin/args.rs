//! Command line of `kubectl keyrotor`: flags named and shaped like kubectl's own.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::crd::GoDuration;

/// kubectl keyrotor: rotate Cloudflare Access signing keys and show AccessKeyPolicy status.
#[derive(Debug, Parser)]
#[command(name = "kubectl-keyrotor", bin_name = "kubectl keyrotor", version)]
pub struct PluginCli {
    /// Which cluster and namespace to talk to.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// Where to connect; kubectl passes none of its own flags to a plugin, so the
/// plugin reads `KUBECONFIG` like kubectl does and accepts the same flags.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectionArgs {
    /// Namespace of the policies (default: the kubeconfig context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Path to a kubeconfig file (default: `KUBECONFIG`, else `~/.kube/config`, else in-cluster).
    #[arg(long, global = true, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Username to impersonate for the operation (kubectl's `--as`): a user or
    /// a service account, e.g. `system:serviceaccount:NAMESPACE:NAME`.
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,
    /// Group to impersonate (kubectl's `--as-group`); repeat it for several groups. Needs `--as`.
    #[arg(long, global = true, value_name = "GROUP", requires = "as_user")]
    pub as_group: Vec<String>,
    /// UID to impersonate (kubectl's `--as-uid`). Needs `--as`.
    #[arg(long, global = true, value_name = "UID", requires = "as_user")]
    pub as_uid: Option<String>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Ask the operator for an on-demand key rotation (sets keyrotor.dev/rotate-requested-at).
    Rotate(RotateArgs),
    /// Show one policy in detail (conditions, pending request, account, events), or policies as a table.
    Status(StatusArgs),
    /// Print a shell completion script for `kubectl-keyrotor` (bash, zsh, fish, ...).
    ///
    /// For `kubectl keyrotor <TAB>` put the `kubectl_complete-keyrotor`
    /// executable of the release archive on PATH instead (kubectl 1.26 and later).
    Completion(CompletionArgs),
}

/// `kubectl keyrotor completion SHELL`.
#[derive(Debug, Clone, Args)]
pub struct CompletionArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `kubectl keyrotor rotate`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["name", "all", "selector"])))]
pub struct RotateArgs {
    /// The policy to rotate.
    pub name: Option<String>,
    /// Rotate every policy in the namespace (with -A: in every namespace).
    #[arg(long)]
    pub all: bool,
    /// Rotate the policies matching this label selector, e.g. `team=payments`.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// With --all or -l: look in every namespace.
    #[arg(short = 'A', long, conflicts_with = "name")]
    pub all_namespaces: bool,
    /// Skip the policy's rotationCooldown for this request only (sets
    /// keyrotor.dev/rotate-force to the request's value).
    #[arg(long)]
    pub force: bool,
    /// Wait until the operator has handled the request and print its outcome.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how long to wait, as a Go duration (`90s`, `5m`).
    #[arg(long, default_value = "2m", requires = "wait", value_name = "DURATION")]
    pub timeout: GoDuration,
}

/// `kubectl keyrotor status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// One policy, shown in detail (default: a table of all in the namespace).
    pub name: Option<String>,
    /// Only the policies matching this label selector.
    #[arg(short = 'l', long, value_name = "SELECTOR", conflicts_with = "name")]
    pub selector: Option<String>,
    /// List the policies of every namespace (adds a NAMESPACE column).
    #[arg(short = 'A', long, conflicts_with = "name")]
    pub all_namespaces: bool,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<PluginCli, clap::Error> {
        PluginCli::try_parse_from(std::iter::once("kubectl-keyrotor").chain(args.iter().copied()))
    }

    fn rotate(args: &[&str]) -> RotateArgs {
        match parse(args).expect("parses").command {
            PluginCommand::Rotate(rotate) => rotate,
            _ => panic!("expected rotate"),
        }
    }

    #[test]
    fn rotate_takes_kubectl_style_flags_in_any_order() {
        let cli =
            parse(&["rotate", "prod", "-n", "security", "--force", "--wait"]).expect("parses");
        assert_eq!(cli.connection.namespace.as_deref(), Some("security"));
        let PluginCommand::Rotate(args) = cli.command else {
            panic!("expected rotate")
        };
        assert_eq!(args.name.as_deref(), Some("prod"));
        assert!(args.force && args.wait && !args.all);
        assert_eq!(args.timeout.as_duration(), Duration::from_secs(120));
        // The namespace may also come before the subcommand, as with kubectl.
        let cli = parse(&["-n", "security", "status"]).expect("parses");
        assert_eq!(cli.connection.namespace.as_deref(), Some("security"));
    }

    #[test]
    fn timeout_reads_go_durations_and_needs_wait() {
        let args = rotate(&["rotate", "p", "--wait", "--timeout", "90s"]);
        assert_eq!(args.timeout.as_duration(), Duration::from_secs(90));
        let err = parse(&["rotate", "p", "--timeout", "90s"]).expect_err("needs --wait");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let err = parse(&["rotate", "p", "--wait", "--timeout", "2"]).expect_err("no unit");
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn rotate_needs_exactly_one_target() {
        let err = parse(&["rotate"]).expect_err("no target");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let err = parse(&["rotate", "p", "--all"]).expect_err("two targets");
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        let err = parse(&["rotate", "--all", "-l", "a=b"]).expect_err("two targets");
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        let err = parse(&["rotate", "p", "-A"]).expect_err("a name is per namespace");
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        let args = rotate(&["rotate", "-A", "-l", "team=a"]);
        assert!(args.all_namespaces);
        assert_eq!(args.selector.as_deref(), Some("team=a"));
        assert!(rotate(&["rotate", "--all"]).all);
    }

    #[test]
    fn status_takes_a_name_or_a_selection() {
        assert!(parse(&["status"]).is_ok());
        assert!(parse(&["status", "p", "-n", "a"]).is_ok());
        assert!(parse(&["status", "-A", "-l", "team=a"]).is_ok());
        let err = parse(&["status", "p", "-A"]).expect_err("a name is per namespace");
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        let err = parse(&["status", "p", "-l", "a=b"]).expect_err("name or selector");
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn impersonation_flags_read_like_kubectls() {
        let cli = parse(&[
            "status",
            "p",
            "--as",
            "system:serviceaccount:a:b",
            "--as-group",
            "g1",
            "--as-group=g2",
        ])
        .expect("parses");
        assert_eq!(
            cli.connection.as_user.as_deref(),
            Some("system:serviceaccount:a:b")
        );
        assert_eq!(cli.connection.as_group, ["g1", "g2"]);
        // Before the subcommand too, as the other connection flags.
        let cli = parse(&["--as", "jane", "status"]).expect("parses");
        assert_eq!(cli.connection.as_user.as_deref(), Some("jane"));
        // A group or uid alone is refused, as the API server would.
        let err = parse(&["status", "--as-group", "g"]).expect_err("needs --as");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let err = parse(&["status", "--as-uid", "1"]).expect_err("needs --as");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn completion_takes_a_shell() {
        let cli = parse(&["completion", "bash"]).expect("parses");
        assert!(matches!(
            cli.command,
            PluginCommand::Completion(CompletionArgs {
                shell: clap_complete::Shell::Bash
            })
        ));
        let err = parse(&["completion", "tcsh"]).expect_err("unknown shell");
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        PluginCli::command().debug_assert();
    }
}
