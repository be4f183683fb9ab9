#!/usr/bin/env bash
# Usage: hack/demo.sh [--node]
# The main job on a fresh machine: builds everything, starts a local control
# plane (etcd + kube-apiserver), the Cloudflare simulator and the operator,
# applies examples/, waits for Ready, rotates the key with kubectl annotate,
# shows the result, and cleans up after itself.
# --node (root only): the same flow the way users run it, on a real node
# (kubelet, containerd, kube-proxy; hack/node.sh, docs/e2e.md): the operator's
# image (hack/image.sh), `helm install` of charts/keyrotor, the operator as a
# pod talking to the simulator inside the node's network namespace.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

node_demo() {
  [[ $(id -u) == 0 ]] || { echo "hack/demo.sh --node needs root (namespaces, cgroups)" >&2; exit 1; }
  local work account sim_port tag=kr.local/keyrotor:demo
  work=$(mktemp -d /tmp/keyrotor-node-demo.XXXXXX)
  account=023e105f4ecef8ad9ca31a8372d0c353
  say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
  # shellcheck disable=SC2064 # $work is fixed now
  trap "hack/node.sh down --dir '$work/node' || true; rm -rf '$work'" EXIT

  say "building the node's tools (kubelet, containerd, ...) from pinned Go modules"
  KEYROTOR_NODE_TOOLS_DIR=$(hack/install-tools.sh --node --print-dir)
  export KEYROTOR_NODE_TOOLS_DIR PATH="$KEYROTOR_NODE_TOOLS_DIR:$PATH"

  say "building keyrotor and the Cloudflare simulator; the operator's image ($tag)"
  cargo build -q -p keyrotor -p keyrotor-cloudflare-sim --bins
  hack/image.sh --binary target/debug/keyrotor --tag "$tag" --output "$work/image.tar" >/dev/null

  say "starting a real node in its own network namespace (hack/node.sh up)"
  local line
  hack/node.sh up --dir "$work/node" >"$work/node.env"
  while IFS= read -r line; do export "${line?}"; done <"$work/node.env"
  hack/node.sh import --dir "$work/node" "$work/image.tar"
  kubectl get nodes -o wide

  say "starting the Cloudflare simulator inside the node's network namespace ($NODE_IP:8081)"
  hack/node.sh spawn --dir "$work/node" cloudflare-sim -- "$root/target/debug/cloudflare-sim" \
    --listen 0.0.0.0:8081 --account "$account=42" --token demo=demo-token-change-me >/dev/null
  sim_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  hack/node.sh forward --dir "$work/node" "$sim_port" 8081
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$sim_port/__sim/requests" >/dev/null && break; sleep 0.2; done
  curl -sf -X PUT -H 'content-type: application/json' \
    -d "{\"lastKeyRotationAt\": \"$(date -u -d '20 days ago' +%FT%TZ)\"}" \
    "http://127.0.0.1:$sim_port/__sim/accounts/$account" >/dev/null

  say "helm install keyrotor charts/keyrotor (namespace keyrotor-system, Pod Security restricted)"
  kubectl create namespace keyrotor-system
  kubectl label namespace keyrotor-system pod-security.kubernetes.io/enforce=restricted
  helm install keyrotor charts/keyrotor -n keyrotor-system --wait --timeout 180s \
    --set image.repository="${tag%:*}" --set image.tag="${tag##*:}" --set image.pullPolicy=Never \
    --set cloudflare.apiUrl="http://$NODE_IP:8081/client/v4" --set cloudflare.allowInsecureApiUrl=true \
    --set driftCheckFloor=5s --set logging.format=text
  kubectl -n keyrotor-system get pods -o wide

  say "applying examples/ (namespace, Secret, AccessKeyPolicy)"
  kubectl apply -f examples/namespace.yaml
  kubectl apply -f examples/secret.yaml -f examples/policy.yaml
  kubectl -n security wait --for=condition=Ready akp/production --timeout=90s

  local request handled=""
  request=$(date -u +%FT%TZ)
  say "rotating the key: kubectl annotate ... keyrotor.dev/rotate-requested-at=$request"
  kubectl -n security annotate akp production "keyrotor.dev/rotate-requested-at=$request" --overwrite
  for _ in $(seq 120); do
    handled=$(kubectl -n security get akp production -o jsonpath='{.status.lastHandledRotateRequest}')
    [[ "$handled" == "$request" ]] && break
    sleep 0.5
  done
  [[ "$handled" == "$request" ]] || { echo "the rotate request was not handled in 60 s" >&2; exit 1; }
  echo "outcome: $(kubectl -n security get akp production -o jsonpath='{.status.lastRotateOutcome}')"
  kubectl -n security get akp -o wide
  say "the operator pod's log (tail)"
  kubectl -n keyrotor-system logs deploy/keyrotor --tail=10
  say "what the simulator saw (method, path, status)"
  curl -s "http://127.0.0.1:$sim_port/__sim/requests" | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    print(r["method"], r["path"], r["status"])'
  say "demo finished; tearing the node down"
}

if [[ ${1:-} == --node ]]; then
  node_demo
  exit 0
fi
work=$(mktemp -d /tmp/keyrotor-demo.XXXXXX)
export KEYROTOR_DEV_CLUSTER_DIR="$work/cluster"
pids=()

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
cleanup() {
  local status=$?
  say "cleaning up"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  hack/dev-cluster.sh down >/dev/null 2>&1 || true
  if [[ $status -ne 0 ]]; then
    echo "demo failed (exit $status); operator log:" >&2
    tail -n 40 "$work/operator.log" >&2 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say "building the test tools (kube-apiserver, etcd, kubectl) from pinned Go modules"
tools=$(hack/install-tools.sh --print-dir)
export PATH="$tools:$PATH"

say "building keyrotor and the Cloudflare simulator"
cargo build -q -p keyrotor -p keyrotor-cloudflare-sim -p keyrotor-testenv --bins

say "starting the local control plane"
hack/dev-cluster.sh up
eval "$(hack/dev-cluster.sh env)"

account=023e105f4ecef8ad9ca31a8372d0c353
say "starting the Cloudflare simulator (account $account at 42 days, one API token)"
target/debug/cloudflare-sim --listen 127.0.0.1:0 --account "$account=42" \
  --token demo=demo-token-change-me >"$work/sim.out" 2>"$work/sim.log" &
pids+=($!)
for _ in $(seq 50); do grep -q '^listening on ' "$work/sim.out" 2>/dev/null && break; sleep 0.1; done
sim_url=$(sed -n 's/^listening on //p' "$work/sim.out")
echo "simulator at $sim_url"
# A realistic account: it last rotated its key 20 days ago, outside the 7-day cooldown.
last_rotation=$(date -u -d '20 days ago' +%FT%TZ)
curl -sf -X PUT -H 'content-type: application/json' \
  -d "{\"lastKeyRotationAt\": \"$last_rotation\"}" "$sim_url/__sim/accounts/$account" >/dev/null

say "starting the operator"
target/debug/keyrotor run --cloudflare-api-url "$sim_url/client/v4" \
  --drift-check-floor 5s --metrics-address 127.0.0.1:0 >"$work/operator.log" 2>&1 &
pids+=($!)

say "applying examples/ (namespace, Secret, AccessKeyPolicy)"
kubectl apply -f examples/namespace.yaml
kubectl apply -f examples/secret.yaml -f examples/policy.yaml
kubectl -n security wait --for=condition=Ready akp/production --timeout=60s
kubectl -n security get akp -o wide

request=$(date -u +%FT%TZ)
say "rotating the key: kubectl annotate ... keyrotor.dev/rotate-requested-at=$request"
kubectl -n security annotate akp production "keyrotor.dev/rotate-requested-at=$request" --overwrite
for _ in $(seq 120); do
  handled=$(kubectl -n security get akp production -o jsonpath='{.status.lastHandledRotateRequest}')
  [[ "$handled" == "$request" ]] && break
  sleep 0.5
done
[[ "$handled" == "$request" ]] || { echo "the rotate request was not handled in 60 s" >&2; exit 1; }
echo "outcome: $(kubectl -n security get akp production -o jsonpath='{.status.lastRotateOutcome}')"

say "kubectl get akp -o wide"
kubectl -n security get akp -o wide
say "status"
kubectl -n security get akp production -o jsonpath='{.status}' | python3 -m json.tool
say "events"
kubectl -n security get events --field-selector involvedObject.name=production \
  -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message --sort-by=.metadata.creationTimestamp
say "what the simulator saw (method, path, status)"
curl -s "$sim_url/__sim/requests" | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    print(r["method"], r["path"], r["status"])'
say "demo finished"
