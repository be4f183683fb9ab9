#!/usr/bin/env bash
# Usage: hack/dev-cluster.sh up|down|env
# Runs a local etcd + kube-apiserver with the workspace CRDs installed, in
# ${KEYROTOR_DEV_CLUSTER_DIR:-/tmp/keyrotor-dev-cluster}; it keeps running
# until `down`. Point kubectl and the operator at it with:
#   eval "$(hack/dev-cluster.sh env)"
set -euo pipefail

usage() { sed -n 2p "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2; }
[[ $# -eq 1 ]] || usage

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${KEYROTOR_DEV_CLUSTER_DIR:-/tmp/keyrotor-dev-cluster}

cargo build -q --manifest-path "$root/Cargo.toml" -p keyrotor-testenv --bin testenv
testenv="${CARGO_TARGET_DIR:-$root/target}/debug/testenv"

case $1 in
  up)
    "$testenv" up --dir "$dir" --crds "$root/crds"
    echo "dev-cluster: use it with: eval \"\$(hack/dev-cluster.sh env)\"" >&2
    ;;
  down) "$testenv" down --dir "$dir" ;;
  env) "$testenv" env --dir "$dir" ;;
  *) usage ;;
esac
