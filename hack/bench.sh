#!/usr/bin/env bash
# Usage: hack/bench.sh [--smoke] [--sizes N,N,...] [--convergence-only] [--peer PATH]
# Builds the operator in release mode and runs the benchmark (real control plane,
# Cloudflare simulator with 50 ms round trips, the operator as a process).
# Writes target/bench/benchmark.md and benchmark.json; the full run takes
# several minutes and is not part of the test command (the smoke run is).
# --peer PATH runs a second operator binary (same command line) through every
# stage in turn with keyrotor and sets both side by side (docs/benchmarks.md).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
KEYROTOR_TOOLS_DIR=$(hack/install-tools.sh --print-dir)
export KEYROTOR_TOOLS_DIR
cargo build --release --locked -p keyrotor -p keyrotor-bench --bins
target/release/keyrotor-bench --operator target/release/keyrotor --out target/bench "$@"
