#!/usr/bin/env bash
# Usage: hack/install-tools.sh [--print-dir]
# Builds the pinned test tools (kube-apiserver, kubectl, etcd, helm) from the Go
# modules under tools/ into a cache outside the repository, keyed by the
# modules' go.mod/go.sum and the Go version. Does nothing when they are built.
# --print-dir prints the bin directory on stdout (building first if needed).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
quiet=false
[[ "${1:-}" == "--print-dir" ]] && quiet=true

# Progress goes to stderr, so --print-dir keeps stdout to the one path.
log() { echo "install-tools: $*" >&2; }

command -v go >/dev/null || { echo "install-tools: go is not installed" >&2; exit 1; }

key=$( (go version; cat "$root"/tools/*/go.mod "$root"/tools/*/go.sum "$root/hack/install-tools.sh") | sha256sum | cut -c1-16)
cache=${KEYROTOR_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keyrotor/tools}
bin="$cache/$key/bin"

k8s_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$root/tools/kubernetes/go.mod")
k8s_minor=$(echo "$k8s_version" | cut -d. -f2)
[[ "$k8s_version" =~ ^v1\.[0-9]+\.[0-9]+$ ]] || { echo "install-tools: cannot read the k8s.io/kubernetes version from tools/kubernetes/go.mod" >&2; exit 1; }

build() { # build MODULE_DIR PACKAGE OUTPUT [LDFLAGS]
  local dir=$1 pkg=$2 out=$3 ldflags=${4:-}
  if [[ -x "$bin/$out" ]]; then return; fi
  log "building $out from $pkg ..."
  local start=$SECONDS
  (cd "$root/tools/$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$bin/$out.tmp" "$pkg")
  mv "$bin/$out.tmp" "$bin/$out"
  log "built $out in $((SECONDS - start)) s ($(du -h "$bin/$out" | cut -f1))"
}

mkdir -p "$bin"
version_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_flags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
done
build kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$version_flags"
build kubernetes k8s.io/kubernetes/cmd/kubectl kubectl "$version_flags"
build etcd go.etcd.io/etcd/server/v3 etcd
helm_version=$(awk '$1 == "helm.sh/helm/v3" && $2 ~ /^v/ {print $2; exit}' "$root/tools/helm/go.mod")
build helm helm.sh/helm/v3/cmd/helm helm "-X helm.sh/helm/v3/internal/version.version=$helm_version"

log "tools are in $bin"
if $quiet; then echo "$bin"; fi
