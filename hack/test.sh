#!/usr/bin/env bash
# Usage: hack/test.sh
# The project's one test command (README and .ci/run call exactly this): installs
# what a fresh machine lacks, then runs format, lint, the dependency policy
# (cargo deny, deny.toml) and every test.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

step "prerequisites"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
if ! command -v shellcheck >/dev/null; then
  apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null
fi
# bash-completion: tests/plugin.rs completes `kubectl keyrotor ...` in a real
# bash with kubectl's completion script, which needs its functions.
if [[ ! -f /usr/share/bash-completion/bash_completion ]]; then
  apt-get update -qq && apt-get install -y -qq bash-completion >/dev/null
fi
# Prometheus and promtool for tests/monitoring.rs (Debian bookworm: 2.42). The
# package's service must not start: a policy-rc.d that denies every start is in
# place during the install (where the machine has none of its own), and
# --no-install-recommends leaves out node-exporter.
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  (
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  )
fi
cargo_deny_version=0.20.2
if [[ $(cargo deny --version 2>/dev/null) != "cargo-deny $cargo_deny_version" ]]; then
  cargo install --locked --quiet cargo-deny --version "$cargo_deny_version"
fi

step "test tools (kube-apiserver, etcd, kubectl, helm) from pinned Go modules"
KEYROTOR_TOOLS_DIR=$(hack/install-tools.sh --print-dir)
export KEYROTOR_TOOLS_DIR

step "the oldest supported kube-apiserver (tools/kubernetes-oldest: the chart's kubeVersion floor)"
oldest_tools_dir=$(hack/install-tools.sh --oldest --print-dir)
oldest_kubernetes=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' tools/kubernetes-oldest/go.mod)

if [[ $(id -u) == 0 ]]; then
  step "real-node tools (kubelet, kube-controller-manager, kube-scheduler, kube-proxy, containerd, pause; runc, CNI plugins)"
  KEYROTOR_NODE_TOOLS_DIR=$(hack/install-tools.sh --node --print-dir)
  export KEYROTOR_NODE_TOOLS_DIR
else
  echo "!!! not root: the real-node end-to-end tests (tests/e2e.rs, tests/e2e_teardown.rs) will be SKIPPED" >&2
fi

step "shellcheck"
shellcheck hack/*.sh .ci/run deploy/krew/kubectl_complete-keyrotor

step "actionlint (.github/workflows; runs shellcheck on their scripts too)"
actionlint_version=1.7.12
actionlint=$HOME/.cache/keyrotor/actionlint-$actionlint_version/actionlint
if [[ ! -x "$actionlint" ]]; then
  GOBIN=$(dirname "$actionlint") go install "github.com/rhysd/actionlint/cmd/actionlint@v$actionlint_version"
fi
"$actionlint" .github/workflows/*.yml

step "generated manifests are current (crds/, chart copy, deploy/)"
hack/gen-manifests.sh --check

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked --features keyrotor/failpoints -- -D warnings

step "cargo deny check bans sources licenses (deny.toml says why not advisories)"
cargo deny --workspace --locked check bans sources licenses

step "cargo test (with the failpoints the crash tests pause at)"
rm -f target/tmp/e2e-timings.txt
cargo test --workspace --locked --features keyrotor/failpoints

step "the chart, admission and controller suites again on Kubernetes $oldest_kubernetes (the oldest supported)"
KEYROTOR_TOOLS_DIR=$oldest_tools_dir KEYROTOR_EXPECT_KUBERNETES=$oldest_kubernetes \
  cargo test --locked --features keyrotor/failpoints --test chart --test admission --test controller

if [[ -f target/tmp/e2e-timings.txt ]]; then
  step "real-node end-to-end phase timings"
  cat target/tmp/e2e-timings.txt
fi
