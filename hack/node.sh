#!/usr/bin/env bash
# Usage: hack/node.sh COMMAND --dir DIR [ARGS]
# A real single-node Kubernetes cluster, contained (docs/e2e.md):
#   up [--api-port PORT]   etcd, kube-apiserver, kube-controller-manager,
#                          kube-scheduler, containerd + runc, kubelet and
#                          kube-proxy in a network namespace of their own and a
#                          private mount namespace; waits until the node is
#                          Ready. The API server is forwarded to
#                          127.0.0.1:PORT on the host (default: a free port).
#                          Prints KEY=VALUE lines (KUBECONFIG, NODE_IP, ...).
#   down                   stops and removes everything `up` made, whatever
#                          state it is in: processes, containers, cgroups, the
#                          namespaces, the sysctls the kubelet changed, DIR.
#   spawn NAME -- CMD...   runs CMD in the background inside the node's
#                          namespaces (log in DIR/logs/NAME.log); prints its PID.
#   run -- CMD...          runs CMD inside the node's namespaces.
#   forward PORT TARGET    forwards 127.0.0.1:PORT on the host to
#                          127.0.0.1:TARGET inside the node's network namespace.
#   import FILE            imports an image archive into containerd (k8s.io).
#   leftovers              prints what a node left on the host; exit 1 if any.
# Environment: KEYROTOR_NODE_TOOLS_DIR (the binaries; default: what
# `hack/install-tools.sh --node --print-dir` prints). Needs root.
#
# Containment: every server runs in a network namespace of its own (a veth pair
# with both ends inside carries the node IP 10.254.254.1; no route leaves it)
# and in a private mount namespace whose /run, /var/lib and /var/log are bind
# mounts of directories under DIR (the kubelet and containerd use fixed paths
# there). Containers' cgroups live under /krnode-ID in every hierarchy. The
# host's own network namespace only gets a socat listening on 127.0.0.1.
set -euo pipefail
shopt -s inherit_errexit

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmd=${1:-}
[[ -n $cmd ]] && shift
dir="" api_port=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    --api-port) api_port=$2; shift 2 ;;
    *) break ;;
  esac
done
[[ -n $dir ]] || { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 2; }
[[ $cmd != up ]] || mkdir -p "$dir"
[[ $dir == /* ]] || dir=$PWD/$dir

t0=$SECONDS
log() { printf 'node [%3ds]: %s\n' $((SECONDS - t0)) "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

id=$(printf '%s' "$dir" | sha256sum | cut -c1-8)
netns=krnode-$id
cgroup=krnode-$id
node_name=krnode
node_ip=10.254.254.1
pod_cidr=10.88.0.0/24
service_cidr=10.0.0.0/24
# Saved before the node starts, restored by `down`: the kubelet sets these
# (protectKernelDefaults: false).
sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Host paths that mount(8) or iptables may create; removed by `down` when they
# did not exist before.
host_paths=(/run/mount /run/xtables.lock)

holder_pid() { cat "$dir/holder.pid" 2>/dev/null || true; }
# Runs a command in the node's network and mount namespaces.
inside() {
  local holder; holder=$(holder_pid)
  [[ -n $holder && -d /proc/$holder ]] || die "the node's namespaces are gone (no holder process)"
  nsenter --target "$holder" --net --mount -- "$@"
}

tools_dir() {
  if [[ -n ${KEYROTOR_NODE_TOOLS_DIR:-} ]]; then echo "$KEYROTOR_NODE_TOOLS_DIR"; return; fi
  "$root/hack/install-tools.sh" --node --print-dir
}

spawn() { # spawn NAME CMD... : in the node's namespaces, own session, PID recorded
  local name=$1; shift
  mkdir -p "$dir/logs"
  nsenter --target "$(holder_pid)" --net --mount -- setsid "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
  echo "$name $!" >>"$dir/pids"
  echo $!
}

wait_for() { # wait_for WHAT SECONDS CMD...
  local what=$1 n=$2 i; shift 2
  for ((i = 0; i < n * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what not reached in ${n}s (logs in $dir/logs)"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

forward() { # forward HOSTPORT TARGETPORT : socat on the host's loopback
  local port=$1 target=$2
  # Each connection: a socat that enters the node's network namespace.
  printf '#!/bin/sh\nexec nsenter --target %s --net socat STDIO TCP:127.0.0.1:%s\n' "$(holder_pid)" "$target" >"$dir/forward-$port.sh"
  chmod +x "$dir/forward-$port.sh"
  setsid socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" "EXEC:$dir/forward-$port.sh" \
    >>"$dir/logs/forward-$port.log" 2>&1 </dev/null &
  echo "forward-$port $!" >>"$dir/pids"
}

# ------------------------------------------------------------------ pki
pki() {
  local p=$dir/pki
  mkdir -p "$p"
  (
    cd "$p"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj /CN=krnode-ca -keyout ca.key -out ca.crt 2>/dev/null
    cert() { # cert NAME SUBJECT [SAN]
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
      local ext="basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=${3:+serverAuth,}clientAuth${3:+
subjectAltName=$3}"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile <(echo "$ext") -out "$1.crt" 2>/dev/null
      rm "$1.csr"
    }
    cert apiserver /CN=kube-apiserver \
      "IP:127.0.0.1,IP:$node_ip,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    cert admin "/O=system:masters/CN=krnode-admin"
    cert kubelet "/O=system:nodes/CN=system:node:$node_name"
    cert kcm /CN=system:kube-controller-manager
    cert scheduler /CN=system:kube-scheduler
    cert proxy /CN=system:kube-proxy
    cert apiserver-kubelet "/O=system:masters/CN=kube-apiserver-kubelet-client"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  local u
  for u in kubelet kcm scheduler proxy; do kubeconfig "$dir/$u.kubeconfig" 6443 "$p/$u.crt" "$p/$u.key"; done
}

kubeconfig() { # kubeconfig FILE PORT CERT KEY
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: krnode
  cluster: {server: "https://127.0.0.1:$2", certificate-authority: "$dir/pki/ca.crt"}
users:
- name: u
  user: {client-certificate: "$3", client-key: "$4"}
contexts:
- name: krnode
  context: {cluster: krnode, user: u}
current-context: krnode
EOF
}

# A one-layer OCI archive holding the pause program, as the CRI's sandbox
# image (no registry can be reached here).
pause_image() { # pause_image BINARY OUT
  python3 - "$1" "$2" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile

binary, out = sys.argv[1:]
binary = os.path.realpath(binary)  # the tools directory holds symlinks
layer_tar = io.BytesIO()
with tarfile.open(fileobj=layer_tar, mode="w", format=tarfile.PAX_FORMAT) as t:
    info = t.gettarinfo(binary, arcname="pause")
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755
    info.mtime = 0
    with open(binary, "rb") as f:
        t.addfile(info, f)
raw = layer_tar.getvalue()
layer = gzip.compress(raw, mtime=0)
blobs = {}

def blob(data, media_type):
    digest = hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

layer_desc = blob(layer, "application/vnd.oci.image.layer.v1.tar+gzip")
config = blob(json.dumps({
    "architecture": "amd64", "os": "linux",
    "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
}).encode(), "application/vnd.oci.image.config.v1+json")
manifest = blob(json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": config, "layers": [layer_desc],
}).encode(), "application/vnd.oci.image.manifest.v1+json")
manifest["annotations"] = {"io.containerd.image.name": "kr.local/pause:1",
                           "org.opencontainers.image.ref.name": "1"}
files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
         "index.json": json.dumps({"schemaVersion": 2, "manifests": [manifest]}).encode()}
for digest, data in blobs.items():
    files["blobs/sha256/" + digest] = data
with tarfile.open(out, "w") as t:
    for name, data in files.items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
PY
}

# ------------------------------------------------------------------ up
do_up() {
  [[ $(id -u) == 0 ]] || die "needs root"
  [[ ! -e $dir/pids ]] || die "$dir already holds a node: run down first"
  local tools; tools=$(tools_dir)
  local b
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet containerd containerd-shim-runc-v2 ctr pause kubectl; do
    [[ -x $tools/$b ]] || die "$tools has no $b (hack/install-tools.sh --node)"
  done
  for b in runc socat nsenter unshare iptables openssl python3; do
    command -v "$b" >/dev/null || die "$b is not installed"
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
    die "no CNI plugins in /usr/lib/cni (apt-get install containernetworking-plugins)"
  : >"$dir/pids"
  echo $$ >"$dir/up.pid"
  mkdir -p "$dir/logs"
  # What down restores or removes.
  local s p
  # Another node of ours already changed them: take its saved originals.
  local other
  for other in $(other_nodes); do
    if [[ -f $other/sysctls.saved ]]; then cp "$other/sysctls.saved" "$dir/sysctls.saved"; break; fi
  done
  if [[ ! -f $dir/sysctls.saved ]]; then
    for s in "${sysctls[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$dir/sysctls.saved"
  fi
  for p in "${host_paths[@]}"; do [[ -e $p ]] || echo "$p"; done >"$dir/created-paths"
  echo "$netns" >"$dir/netns"
  echo "$cgroup" >"$dir/cgroup"
  log "network namespace $netns, cgroup root /$cgroup, state in $dir"

  # --- a new network namespace and a private mount namespace, held by a
  # sleeping process whose working directory is DIR. They have no name on the
  # host (no `ip netns add`, so no /run/netns mount): they vanish with their
  # last process.
  mkdir -p "$dir/fs/run" "$dir/fs/var-lib" "$dir/fs/var-log"
  # shellcheck disable=SC2016 # $1 is expanded by the inner sh
  unshare --net --mount --propagation private -- \
    setsid sh -c 'cd "$1" && mount --bind "$1/fs/run" /run && mount --bind "$1/fs/var-lib" /var/lib &&
      mount --bind "$1/fs/var-log" /var/log && touch "$1/holder.ready" && exec sleep infinity' \
    holder "$dir" >"$dir/logs/holder.log" 2>&1 </dev/null &
  echo $! >"$dir/holder.pid"
  echo "holder $!" >>"$dir/pids"
  wait_for "private mount namespace" 10 test -e "$dir/holder.ready"
  readlink "/proc/$(holder_pid)/ns/net" >"$dir/netns-id"
  # lo and a veth pair whose both ends are inside carry the node IP.
  inside ip link set lo up
  inside ip link add name kn0 type veth peer name kn1
  inside ip addr add "$node_ip/24" dev kn0
  inside ip link set kn0 up
  inside ip link set kn1 up

  # --- cgroup root in every hierarchy (the kubelet wants it to exist).
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -L ${h%/} ]] && continue
    mkdir -p "$h$cgroup"
    if [[ -f $h/cpuset.cpus ]]; then
      cat "$h/cpuset.cpus" >"$h$cgroup/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h$cgroup/cpuset.mems"
    fi
  done

  pki
  log "pki written"
  local pk=$dir/pki
  export PATH="$tools:$PATH"

  spawn etcd "$tools/etcd" --data-dir="$dir/etcd" --unsafe-no-fsync=true \
    --listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 \
    --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
    --initial-cluster=default=http://127.0.0.1:2380 --listen-metrics-urls="" >/dev/null
  spawn kube-apiserver "$tools/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --advertise-address="$node_ip" --secure-port=6443 \
    --cert-dir="$dir/apiserver-certs" --tls-cert-file="$pk/apiserver.crt" --tls-private-key-file="$pk/apiserver.key" \
    --client-ca-file="$pk/ca.crt" --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-cluster-ip-range="$service_cidr" --allow-privileged=false \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pk/sa.pub" --service-account-signing-key-file="$pk/sa.key" \
    --kubelet-client-certificate="$pk/apiserver-kubelet.crt" --kubelet-client-key="$pk/apiserver-kubelet.key" \
    --kubelet-preferred-address-types=InternalIP --endpoint-reconciler-type=lease >/dev/null
  [[ -n $api_port ]] || api_port=$(free_port)
  forward "$api_port" 6443
  kubeconfig "$dir/admin.kubeconfig" "$api_port" "$pk/admin.crt" "$pk/admin.key"
  kubeconfig "$dir/admin-inside.kubeconfig" 6443 "$pk/admin.crt" "$pk/admin.key"
  echo "$api_port" >"$dir/api-port"
  export KUBECONFIG=$dir/admin.kubeconfig
  wait_for "kube-apiserver /readyz" 90 kubectl get --raw /readyz
  log "kube-apiserver ready"

  spawn kube-controller-manager "$tools/kube-controller-manager" --kubeconfig="$dir/kcm.kubeconfig" \
    --authentication-kubeconfig="$dir/kcm.kubeconfig" --authorization-kubeconfig="$dir/kcm.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10257 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$pk/sa.key" --root-ca-file="$pk/ca.crt" \
    --cluster-signing-cert-file="$pk/ca.crt" --cluster-signing-key-file="$pk/ca.key" \
    --allocate-node-cidrs=false --controllers='*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle' >/dev/null
  spawn kube-scheduler "$tools/kube-scheduler" --kubeconfig="$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig="$dir/scheduler.kubeconfig" --authorization-kubeconfig="$dir/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false >/dev/null

  # --- containerd: private root, state and socket; CNI config of our own.
  local c=$dir/containerd
  mkdir -p "$c" "$dir/cni/net.d" "$dir/cni/ipam"
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "kr.local/pause:1"
  stream_server_address = "127.0.0.1"
  disable_apparmor = true
  # Root here has no CAP_SYS_RESOURCE: nothing may lower an oom_score_adj
  # below 0 (runc would die setting the sandbox's -998).
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$dir/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
EOF
  # The pod network: a bridge inside the node's namespace. Pods get routes to
  # the node and to Service addresses only; no default route, no masquerade.
  cat >"$dir/cni/net.d/10-krnode.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "krnode", "plugins": [
  {"type": "bridge", "bridge": "krbr0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pod_cidr", "gateway": "10.88.0.1"}]],
            "routes": [{"dst": "$node_ip/32"}, {"dst": "$service_cidr"}], "dataDir": "$dir/cni/ipam"}},
  {"type": "loopback"}]}
EOF
  # containerd finds its shim on PATH.
  spawn containerd env PATH="$tools:$PATH" "$tools/containerd" --config "$c/config.toml" >/dev/null
  wait_for "containerd" 30 inside "$tools/ctr" -a "$c/containerd.sock" version
  pause_image "$tools/pause" "$dir/pause.tar"
  inside "$tools/ctr" -a "$c/containerd.sock" -n k8s.io images import "$dir/pause.tar" >/dev/null
  log "containerd up, pause image imported"

  mkdir -p "$dir/kubelet"
  cat >"$dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 (hybrid) host: Kubernetes >= 1.35 refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$cgroup
containerRuntimeEndpoint: unix://$c/containerd.sock
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
podLogsDir: $dir/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $pk/ca.crt}
authorization: {mode: AlwaysAllow}
failSwapOn: false
# No CAP_SYS_RESOURCE here (see containerd's restrict_oom_score_adj).
oomScoreAdj: 0
makeIPTablesUtilChains: false
clusterDomain: cluster.local
resolvConf: ""
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
serializeImagePulls: false
EOF
  spawn kubelet "$tools/kubelet" --config="$dir/kubelet/config.yaml" --kubeconfig="$dir/kubelet.kubeconfig" \
    --root-dir="$dir/kubelet/root" --cert-dir="$dir/kubelet/pki" --volume-plugin-dir="$dir/kubelet/volume-plugins" \
    --hostname-override="$node_name" --node-ip="$node_ip" --v=1 >/dev/null

  cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/proxy.kubeconfig}
mode: iptables
clusterCIDR: $pod_cidr
hostnameOverride: $node_name
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0
# Zero: leave the (partly host-wide) conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false, masqueradeAll: false}
EOF
  spawn kube-proxy "$tools/kube-proxy" --config="$dir/kube-proxy.yaml" --v=1 >/dev/null

  wait_for "node $node_name Ready" 120 node_ready
  # Pods need their namespace's default ServiceAccount (kube-controller-manager).
  wait_for "serviceaccount default/default" 60 kubectl -n default get serviceaccount default
  log "node Ready"
  cat <<EOF
KUBECONFIG=$dir/admin.kubeconfig
API_PORT=$api_port
NODE_IP=$node_ip
NETNS=$netns
CGROUP=$cgroup
HOLDER_PID=$(holder_pid)
CONTAINERD_SOCK=$c/containerd.sock
TOOLS=$tools
EOF
}

node_ready() {
  [[ $(kubectl get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

# ------------------------------------------------------------------ down
alive() { [[ -n $1 && -d /proc/$1 ]]; }

# PIDs of every process in the node's cgroups.
cgroup_pids() {
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -d $h$cgroup ]] && find "$h$cgroup" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -u
}

# PIDs of every process in the node's network namespace.
netns_pids() {
  local id p
  id=$(cat "$dir/netns-id" 2>/dev/null) || return 0
  [[ -n $id ]] || return 0
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/ns/net" 2>/dev/null) == "$id" ]] && echo "${p#/proc/}"
  done
  true
}

# State directories of the other nodes running now (their holders' working
# directories).
other_nodes() {
  local p d
  for p in /proc/[0-9]*; do
    d=$(readlink "$p/cwd" 2>/dev/null) || continue
    [[ $d != "$dir" && -f $d/holder.pid && $(cat "$d/holder.pid" 2>/dev/null) == "${p#/proc/}" ]] && echo "$d"
  done
  true
}

do_down() {
  [[ -e $dir/pids ]] || { log "nothing to stop in $dir"; rm -rf "$dir"; return 0; }
  local name pid i pids=""
  # 0. An `up` still running (its caller died) must not start anything more.
  pid=$(cat "$dir/up.pid" 2>/dev/null || true)
  if alive "$pid" && grep -q node.sh "/proc/$pid/cmdline" 2>/dev/null; then kill -9 "$pid" 2>/dev/null; fi
  # 1. Forwarders and recorded processes: SIGTERM first, so servers flush.
  while read -r name pid; do
    [[ $name == forward-* ]] && kill -- "-$pid" 2>/dev/null
    alive "$pid" && kill "$pid" 2>/dev/null
  done <"$dir/pids" || true
  for ((i = 0; i < 10; i++)); do
    pids=$(while read -r name pid; do if alive "$pid"; then echo "$pid"; fi; done <"$dir/pids" 2>/dev/null || true)
    [[ -z $pids ]] && break
    sleep 0.1
  done
  # 2. Everything in the namespace (shims, host-network containers, helpers)
  #    and in the cgroups (containers): SIGKILL until nothing is left.
  for ((i = 0; i < 100; i++)); do
    pids=$( { netns_pids; cgroup_pids; while read -r name pid; do if alive "$pid"; then echo "$pid"; fi; done <"$dir/pids"; } 2>/dev/null | sort -u)
    [[ -z $pids ]] && break
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null
    sleep 0.1
  done
  [[ -z $pids ]] || log "processes still alive: $pids"
  # 3. The network and mount namespaces died with their last process, taking
  #    every mount (overlays, pod volumes, pod netns files) and link with them.
  # 4. Cgroups, deepest first.
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -d $h$cgroup && ! -L ${h%/} ]] || continue
    for ((i = 0; i < 50; i++)); do
      find "$h$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null
      [[ -d $h$cgroup ]] || break
      sleep 0.1
    done
    [[ -d $h$cgroup ]] && log "could not remove $h$cgroup"
  done
  # 5. Sysctls and host paths.
  local k v p
  if [[ -n $(other_nodes) ]]; then
    log "another node runs: it restores the sysctls when it stops"
  elif [[ -f $dir/sysctls.saved ]]; then
    while IFS="=" read -r k v; do
      [[ $(sysctl -n "$k") == "$v" ]] || sysctl -qw "$k=$v"
    done <"$dir/sysctls.saved"
  fi
  if [[ -f $dir/created-paths ]]; then
    while read -r p; do
      [[ -n $p ]] || continue
      rm -rf "$p"
    done <"$dir/created-paths"
  fi
  rm -rf "$dir"
  log "down: node in $dir removed"
}

# What a node left on the host (for tests; exit 1 when anything is left).
do_leftovers() {
  local left=0 h
  local p d
  for p in /proc/[0-9]*; do
    d=$(readlink "$p/cwd" 2>/dev/null) || continue
    if [[ $d == "$dir" || $d == "$dir"/* ]]; then echo "process ${p#/proc/} in $d"; left=1; fi
  done
  for h in /sys/fs/cgroup/*/; do
    if [[ -d $h$cgroup ]]; then echo "cgroup $h$cgroup"; left=1; fi
  done
  if grep -F "$dir" /proc/self/mountinfo; then left=1; fi
  if pgrep -a -f "$dir" | grep -v -e "$$" -e leftovers; then left=1; fi
  if [[ -e $dir ]]; then echo "directory $dir"; left=1; fi
  return $left
}

case $cmd in
  up) do_up ;;
  down) do_down ;;
  spawn)
    name=${1:?spawn NAME -- CMD}; shift
    [[ ${1:-} == -- ]] && shift
    spawn "$name" "$@"
    ;;
  run)
    [[ ${1:-} == -- ]] && shift
    inside "$@"
    ;;
  forward) forward "${1:?forward PORT TARGET}" "${2:?forward PORT TARGET}" ;;
  import)
    file=${1:?import FILE}
    inside "$(tools_dir)/ctr" -a "$dir/containerd/containerd.sock" -n k8s.io images import "$file" >&2
    ;;
  leftovers) do_leftovers ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
