#!/usr/bin/env bash
# Usage: hack/install-tools.sh [--node | --oldest] [--print-dir]
# Builds the pinned test tools (kube-apiserver, kubectl, etcd, helm) from the Go
# modules under tools/ into a cache outside the repository. Does nothing when
# they are built.
# --node also builds what the real-node end-to-end tests need (docs/e2e.md):
#   kubelet, kube-controller-manager, kube-scheduler, kube-proxy
#   (tools/kubernetes-node), containerd, containerd-shim-runc-v2, ctr
#   (tools/containerd) and the sandbox image's pause program (tools/pause),
#   and, as root, installs runc, the CNI plugins, iptables and socat from Debian.
# --oldest builds the kube-apiserver of the oldest supported Kubernetes minor
#   (tools/kubernetes-oldest) and prints a set where it replaces the current
#   one (etcd, kubectl and helm stay): the chart and controller suites run on it
#   too (hack/test.sh), so the chart's kubeVersion floor is tested.
# --print-dir prints the bin directory on stdout (building first if needed).
#
# Each module under tools/ is cached on its own, keyed by its go.mod/go.sum,
# its build recipe and the Go version, so adding or changing one module never
# rebuilds the others. The printed directory holds symlinks to the binaries.
set -euo pipefail
shopt -s inherit_errexit

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
quiet=false
node=false
oldest=false
for arg in "$@"; do
  case $arg in
    --print-dir) quiet=true ;;
    --node) node=true ;;
    --oldest) oldest=true ;;
    *) echo "usage: $0 [--node | --oldest] [--print-dir]" >&2; exit 2 ;;
  esac
done
if $node && $oldest; then echo "install-tools: --node and --oldest are separate sets" >&2; exit 2; fi

# Progress goes to stderr, so --print-dir keeps stdout to the one path.
log() { echo "install-tools: $*" >&2; }

command -v go >/dev/null || { echo "install-tools: go is not installed" >&2; exit 1; }

cache=${KEYROTOR_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keyrotor/tools}
go_version=$(go version)

# The k8s.io/kubernetes version a tools module pins, and the -X flags that
# make its binaries report it (as release builds do).
k8s_version_of() { # k8s_version_of MODULE
  local v
  v=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$root/tools/$1/go.mod")
  [[ "$v" =~ ^v1\.[0-9]+\.[0-9]+$ ]] || { echo "install-tools: cannot read the k8s.io/kubernetes version from tools/$1/go.mod" >&2; exit 1; }
  echo "$v"
}
k8s_flags_for() { # k8s_flags_for VERSION
  local pkg flags="" minor
  minor=$(echo "$1" | cut -d. -f2)
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$1 -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "$flags"
}
k8s_version=$(k8s_version_of kubernetes)
k8s_flags=$(k8s_flags_for "$k8s_version")

# The recipe of each module: "OUTPUT PACKAGE" lines; TAGS and LDFLAGS apply to
# every binary of the module. The recipe is part of the module's cache key.
declare -A recipe tags ldflags
recipe[kubernetes]="kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
kubectl k8s.io/kubernetes/cmd/kubectl"
ldflags[kubernetes]=$k8s_flags
recipe[etcd]="etcd go.etcd.io/etcd/server/v3"
helm_version=$(awk '$1 == "helm.sh/helm/v3" && $2 ~ /^v/ {print $2; exit}' "$root/tools/helm/go.mod")
recipe[helm]="helm helm.sh/helm/v3/cmd/helm"
ldflags[helm]="-X helm.sh/helm/v3/internal/version.version=$helm_version"
modules=(kubernetes etcd helm)

if $oldest; then
  # Listed last: its kube-apiserver replaces the current one in the set.
  recipe[kubernetes-oldest]="kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver"
  ldflags[kubernetes-oldest]=$(k8s_flags_for "$(k8s_version_of kubernetes-oldest)")
  modules+=(kubernetes-oldest)
fi

if $node; then
  node_k8s=$(k8s_version_of kubernetes-node)
  [[ $node_k8s == "$k8s_version" ]] || { echo "install-tools: tools/kubernetes-node pins k8s.io/kubernetes $node_k8s, tools/kubernetes $k8s_version" >&2; exit 1; }
  recipe[kubernetes-node]="kubelet k8s.io/kubernetes/cmd/kubelet
kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
kube-proxy k8s.io/kubernetes/cmd/kube-proxy"
  ldflags[kubernetes-node]=$k8s_flags
  containerd_version=$(awk '$1 == "github.com/containerd/containerd/v2" && $2 ~ /^v/ {print $2; exit}' "$root/tools/containerd/go.mod")
  recipe[containerd]="containerd github.com/containerd/containerd/v2/cmd/containerd
containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
ctr github.com/containerd/containerd/v2/cmd/ctr"
  # No btrfs/devmapper/zfs snapshotters (cgo or kernel features we do not use).
  tags[containerd]="no_btrfs no_devmapper no_zfs no_dynamic_plugins"
  ldflags[containerd]="-X github.com/containerd/containerd/v2/version.Version=$containerd_version"
  recipe[pause]="pause ."
  modules+=(kubernetes-node containerd pause)
fi

# Builds every binary of one module into its own cache directory and prints
# that directory.
build_module() { # build_module MODULE
  local m=$1 key dir out pkg start
  local sums=("$root/tools/$m/go.mod")
  [[ -f "$root/tools/$m/go.sum" ]] && sums+=("$root/tools/$m/go.sum")
  key=$( (echo "$go_version"; cat "${sums[@]}"
    printf '%s\n' "${recipe[$m]}" "${tags[$m]:-}" "${ldflags[$m]:-}") | sha256sum | cut -c1-16)
  dir="$cache/modules/$m-$key"
  mkdir -p "$dir"
  while read -r out pkg; do
    [[ -x "$dir/$out" ]] && continue
    log "building $out from $pkg ..."
    start=$SECONDS
    (cd "$root/tools/$m" && CGO_ENABLED=0 go build -trimpath -tags "${tags[$m]:-}" \
      -ldflags "-s -w ${ldflags[$m]:-}" -o "$dir/$out.tmp" "$pkg")
    mv "$dir/$out.tmp" "$dir/$out"
    log "built $out in $((SECONDS - start)) s ($(du -h "$dir/$out" | cut -f1))"
  done <<<"${recipe[$m]}"
  echo "$dir"
}

dirs=()
for m in "${modules[@]}"; do
  d=$(build_module "$m")
  dirs+=("$d")
done

# One directory of symlinks per set of module builds.
set_key=$(printf '%s\n' "${dirs[@]}" | sha256sum | cut -c1-16)
bin="$cache/sets/$set_key/bin"
if [[ ! -d $bin ]]; then
  mkdir -p "$bin.tmp.$$"
  for d in "${dirs[@]}"; do
    for f in "$d"/*; do
      [[ $f == *.tmp ]] || ln -sf "$f" "$bin.tmp.$$/$(basename "$f")"
    done
  done
  mv -T "$bin.tmp.$$" "$bin" 2>/dev/null || rm -rf "$bin.tmp.$$"
fi

if $node && [[ $(id -u) == 0 ]]; then
  missing=()
  for p in runc containernetworking-plugins iptables socat; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
fi

log "tools are in $bin"
if $quiet; then echo "$bin"; fi
