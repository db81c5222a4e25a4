#!/usr/bin/env bash
# Continuous backups: what deltas cost writes, and how long a restore of a
# full snapshot plus its deltas takes.
#
# 1. Put throughput of one e2d member (fsync on, 1000 clients, 256 B
#    values) without backups, with deltas every 10 s and every 1 s (a full
#    snapshot a minute for both, into a directory): ROUNDS rounds, the
#    order rotating, each mode's median and its cost against no backups.
# 2. A database of SIZE_MIB (4 KiB values) in a full snapshot, then
#    DELTA_MIB more written as deltas; the member stops, and `e2d snapshot
#    restore` brings both back into a new data dir: its time.
#
# Usage: bench/deltas.sh   (ROUNDS=N, TOTAL=N puts a run, SIZE_MIB, DELTA_MIB,
#        STORE_DIR: the file:// store, by default beside the data dir on
#        the same disk)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/e2d-target}"
cargo build --release -q -p e2d-shell -p e2d-bench
bin="$CARGO_TARGET_DIR/release"
ROUNDS="${ROUNDS:-3}"
TOTAL="${TOTAL:-1000000}"
SIZE_MIB="${SIZE_MIB:-1024}"
DELTA_MIB="${DELTA_MIB:-100}"
work=$(mktemp -d /var/tmp/e2d-deltas.XXXXXX)
store="${STORE_DIR:-$work/store}"
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work" "$store"; }
trap cleanup EXIT
endpoint=127.0.0.1:23990

# start DIR ARGS...: one member on $endpoint, until it answers.
start() {
  local dir=$1; shift
  "$bin/e2d" run --data-dir "$dir" --log-level warn --client-addr "$endpoint" \
    --peer-addr 127.0.0.1:23991 "$@" >>"$work/e2d.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    etcdctl --endpoints "$endpoint" --dial-timeout 1s endpoint health >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { tail -n 5 "$work/e2d.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "no answer from $endpoint" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

backup_flags() { # DELTA_INTERVAL
  echo --snapshot-backup-url "file://$store" --snapshot-interval 1m --snapshot-delta-interval "$1"
}

declare -A results
modes=(none 10s 1s)
for ((round = 0; round < ROUNDS; round++)); do
  for ((i = 0; i < ${#modes[@]}; i++)); do
    mode=${modes[$(((i + round) % ${#modes[@]}))]}
    rm -rf "$work/data" "$store"
    if [ "$mode" = none ]; then start "$work/data"; else start "$work/data" $(backup_flags "$mode"); fi
    ops=$("$bin/e2d-bench" --endpoints "$endpoint" --conns 100 --clients 1000 --json \
      put --total "$TOTAL" --key-size 8 --val-size 256 --key-space-size 100000 |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["throughput_ops_per_sec"])')
    results[$mode]+="$ops "
    stop
  done
done
echo "put, 1 member, 1000 clients, 256 B values, $ROUNDS rounds (median ops/s):"
median() { python3 -c 'import statistics, sys; print(statistics.median(map(float, sys.argv[1:])))' $1; }
none=$(median "${results[none]}")
for mode in "${modes[@]}"; do
  m=$(median "${results[$mode]}")
  python3 -c 'import sys; m, n = float(sys.argv[2]), float(sys.argv[3]); print(f"  {sys.argv[1]:>14}: {m:9.0f} ops/s  {100 * (n - m) / n:+5.1f}% cost")' \
    "$([ "$mode" = none ] && echo "no backups" || echo "deltas every $mode")" "$m" "$none"
done

# Restore: a SIZE_MIB full snapshot, then DELTA_MIB of deltas.
rm -rf "$work/data" "$store"
value_size=4096
start "$work/data"
"$bin/e2d-bench" --endpoints "$endpoint" --conns 16 --clients 256 --json put \
  --total $((SIZE_MIB * 256)) --key-size 16 --val-size $value_size \
  --key-space-size $((SIZE_MIB * 256)) --sequential-keys >/dev/null
stop
# With an empty store the leader takes a full snapshot at once.
start "$work/data" --snapshot-backup-url "file://$store" --snapshot-interval 1h --snapshot-delta-interval 1s
until ls "$store" 2>/dev/null | grep -q '\.snap$'; do sleep 0.5; done
# At 16 MB/s, so the deltas keep up (a delta goes every second, or once
# 32 MiB wait) and the chain holds all of it.
"$bin/e2d-bench" --endpoints "$endpoint" --conns 16 --clients 256 --json put \
  --total $((DELTA_MIB * 256)) --rate 4000 --key-size 24 --val-size $value_size \
  --key-space-size $((DELTA_MIB * 256)) --sequential-keys >/dev/null
revision=$(etcdctl --endpoints "$endpoint" endpoint status -w json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
until [ "$("$bin/e2d" snapshot list "file://$store" --json | python3 -c 'import json, sys; print(max((c["reaches_revision"] for c in json.load(sys.stdin)), default=0))')" -ge "$revision" ]; do
  sleep 0.5
done
stop
[ "$(find "$store" -name '*.snap' | wc -l)" = 1 ] || { echo "the chain broke: $(ls "$store")" >&2; exit 1; }
snapshot_bytes=$(find "$store" -name '*.snap' -printf '%s\n' | sort -n | tail -1)
delta_bytes=$(find "$store" -name '*.delta' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
started=$(date +%s.%N)
"$bin/e2d" snapshot restore "file://$store" --data-dir "$work/restored" >/dev/null
ended=$(date +%s.%N)
python3 -c 'import sys; s, d, t = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[4]) - float(sys.argv[3]); print(f"restore: a {s / 2**20:.0f} MiB snapshot and {d / 2**20:.0f} MiB of deltas in {t:.1f} s")' \
  "$snapshot_bytes" "$delta_bytes" "$started" "$ended"
