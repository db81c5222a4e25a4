#!/usr/bin/env bash
# Starts a 3-member e2d cluster and a 3-member etcd cluster on loopback and
# runs the same put load (e2d-bench) against each; prints one line per run.
# Usage: bench/compare.sh [e2d-bench flags...]   (builds in release first)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/e2d-target}"
cargo build --release -q -p e2d-shell -p e2d-bench
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
pids=()
cleanup() { { kill -9 "${pids[@]}"; wait; } 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_for() { # url
  for _ in $(seq 1 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.05; done
  echo "no answer from $1" >&2; return 1
}

e2d_cluster="m0=http://127.0.0.1:41380,m1=http://127.0.0.1:41381,m2=http://127.0.0.1:41382"
for i in 0 1 2; do
  "$bin/e2d" run --name "m$i" --data-dir "$work/e2d-m$i" --log-level warn \
    --client-addr "127.0.0.1:4137$i" --peer-addr "127.0.0.1:4138$i" \
    --gossip-addr "127.0.0.1:4139$i" \
    --initial-cluster "$e2d_cluster" >"$work/e2d-m$i.log" 2>&1 &
  pids+=($!)
done
etcd_cluster="m0=http://127.0.0.1:42380,m1=http://127.0.0.1:42381,m2=http://127.0.0.1:42382"
for i in 0 1 2; do
  etcd --name "m$i" --data-dir "$work/etcd-m$i" --log-level warn --logger zap \
    --listen-client-urls "http://127.0.0.1:4237$i" --advertise-client-urls "http://127.0.0.1:4237$i" \
    --listen-peer-urls "http://127.0.0.1:4238$i" --initial-advertise-peer-urls "http://127.0.0.1:4238$i" \
    --initial-cluster "$etcd_cluster" >"$work/etcd-m$i.log" 2>&1 &
  pids+=($!)
done
for i in 0 1 2; do wait_for "http://127.0.0.1:4137$i/health"; wait_for "http://127.0.0.1:4237$i/health"; done

"$bin/e2d-bench" --label e2d --endpoints 127.0.0.1:41370,127.0.0.1:41371,127.0.0.1:41372 "$@"
"$bin/e2d-bench" --label etcd --endpoints 127.0.0.1:42370,127.0.0.1:42371,127.0.0.1:42372 "$@"
