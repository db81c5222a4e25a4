#!/usr/bin/env bash
# e2d beside etcd (Debian etcd-server, default settings), on loopback and on
# disk with fsync on for both: the same e2d-bench workloads against each,
# in alternation, then one table: workload, e2d, etcd, ratio. Also the
# disk's fsync time (before each one-client round on 1 node, whose p50 is
# set against it, and at the end), server peak RSS after loading KEYS
# (default 1M) keys of 256 B, and cold start to the first served request.
# Each workload runs ROUNDS times (default 3) per server, which one goes
# first alternating, and the table shows each server's median: the
# machine's speed drifts while the bench runs, and one pair of runs can
# land on either side of it.
#
# Usage: bench/compare.sh          (SCALE=0.1 for a quick run, KEYS=N, ROUNDS=N)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
KEYS="${KEYS:-1000000}"
ROUNDS="${ROUNDS:-3}"
work=$(mktemp -d /var/tmp/e2d-bench.XXXXXX)
cleanup() { { kill -9 "${pids[@]}"; wait; } 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start_cluster e2d e2d1 21300 1; start_cluster etcd etcd1 22300 1
start_cluster e2d e2d3 23300 3; start_cluster etcd etcd3 24300 3
for base in 21300 22300; do wait_for "127.0.0.1:$base"; done
for base in 23300 24300; do for i in 0 1 2; do wait_for "127.0.0.1:$((base + i))"; done; done
# Client and peer ports sit below the kernel's ephemeral range (32768 on),
# so no outgoing connection holds one when a server starts.
for base in 21300 22300; do etcdctl --endpoints "127.0.0.1:$base" put bench-key bench-value >/dev/null; done

results="$work/results.jsonl"
# fsync_probe: the disk's sync time now, in ms: the median of 200 4 KiB
# writes, each synced.
fsync_probe() {
  python3 - "$work" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
times = []
for _ in range(200):
    os.write(fd, b"x" * 4096)
    start = time.perf_counter(); os.fsync(fd); times.append(time.perf_counter() - start)
times.sort()
print(f"{times[len(times) // 2] * 1000:.3f}")
PY
}

# run_at LABEL SHAPE E2D_BASE ETCD_BASE E2D_ENDPOINTS ETCD_ENDPOINTS ARGS...:
# ROUNDS rounds of the same load, e2d and etcd in turn, the first of each
# round alternating. With PROBE_FSYNC set, the disk's sync time is taken
# just before each run and kept with it: the disk's speed moves within
# minutes, and a latency set beside a probe taken elsewhere in the run
# says more about that than about the server.
run_at() {
  local label=$1 shape=$2 e2d_base=$3 etcd_base=$4 e2d_endpoints=$5 etcd_endpoints=$6; shift 6
  local round order server
  for ((round = 0; round < ROUNDS; round++)); do
    order="e2d etcd"; ((round % 2)) && order="etcd e2d"
    for server in $order; do
      local base=$e2d_base endpoints=$e2d_endpoints
      [ "$server" = etcd ] && base=$etcd_base endpoints=$etcd_endpoints
      local out before after probe=null
      [ -n "${PROBE_FSYNC:-}" ] && probe=$(fsync_probe)
      before=$(cpu_ticks "$base")
      out=$("$bin/e2d-bench" --endpoints "$endpoints" --json "$@") ||
        { echo "$label ($shape) failed on $server" >&2; exit 1; }
      after=$(cpu_ticks "$base")
      echo "{\"label\": \"$label\", \"shape\": \"$shape\", \"server\": \"$server\", \"server_cpu_s\": $(python3 -c "print(($after - $before) / $clk_tck)"), \"fsync_ms\": $probe, \"result\": $out}" >>"$results"
    done
  done
}
# run LABEL SHAPE E2D_BASE ETCD_BASE SIZE ARGS...: every member's endpoint.
run() {
  local label=$1 shape=$2 e2d_base=$3 etcd_base=$4 size=$5; shift 5
  run_at "$label" "$shape" "$e2d_base" "$etcd_base" "$(endpoints "$e2d_base" "$size")" "$(endpoints "$etcd_base" "$size")" "$@"
}
big=(--conns 100 --clients 1000)
run "put, 1000 clients" "1 node" 21300 22300 1 "${big[@]}" put --total "$(n 100000)" --key-size 8 --val-size 256 --key-space-size 100000
PROBE_FSYNC=1 run "put, 1 client" "1 node" 21300 22300 1 put --total "$(n 3000)" --key-size 8 --val-size 256 --key-space-size 100000
run "range linearizable" "1 node" 21300 22300 1 "${big[@]}" range bench-key --total "$(n 100000)"
run "range serializable" "1 node" 21300 22300 1 "${big[@]}" range bench-key --consistency s --total "$(n 100000)"
run "txn-put" "1 node" 21300 22300 1 "${big[@]}" txn-put --total "$(n 50000)" --key-size 8 --val-size 256 --key-space-size 100000
run "watch, 1000 watchers" "1 node" 21300 22300 1 --conns 10 watch --watchers 1000 --total "$(n 500)"
run "lease-keepalive" "1 node" 21300 22300 1 "${big[@]}" lease-keepalive --total "$(n 100000)"
run "put, 1000 clients" "3 nodes" 23300 24300 3 "${big[@]}" put --total "$(n 100000)" --key-size 8 --val-size 256 --key-space-size 100000
# kube-apiserver's traffic on 3 members, with 10,000 and 100,000 objects.
for objects in 10000 100000; do
  run "kube mix, $(python3 -c "print(f'{$objects:,}')") objects" "3 nodes" 23300 24300 3 "${big[@]}" \
    kube --objects "$objects" --total "$(n 30000)"
done
# One client's latency depends on whether its member leads: both, so
# neither server gets the luckier member.
for role in leader follower; do
  run_at "put, 1 client, to the $role" "3 nodes" 23300 24300 \
    "$(member_endpoint 23300 3 $role)" "$(member_endpoint 24300 3 $role)" \
    put --total "$(n 3000)" --key-size 8 --val-size 256 --key-space-size 100000
done

# The disk's fsync time at the end of the run.
fsync_ms=$(fsync_probe)

# Peak RSS after KEYS keys of 256 B, then cold start of each server on
# its loaded data dir.
declare -A rss cold
for server in e2d etcd; do
  base=25300; [ "$server" = etcd ] && base=26300
  pids_at[$base]=""
  start_cluster "$server" "$server-load" $base 1
  pid=${pids[-1]}
  wait_for "127.0.0.1:$base"
  "$bin/e2d-bench" --endpoints "127.0.0.1:$base" --conns 50 --clients 500 --json \
    put --total "$KEYS" --key-size 16 --val-size 256 --key-space-size "$KEYS" --sequential-keys >/dev/null
  rss[$server]=$(rss_of "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pids_at[$base]=""
  started=$(date +%s%N)
  start_cluster "$server" "$server-load" $base 1
  until etcdctl --endpoints "127.0.0.1:$base" --dial-timeout 200ms get bench-key >/dev/null 2>&1; do
    kill -0 "${pids[-1]}" || { echo "$server exited on restart; see $work" >&2; exit 1; }
    sleep 0.01
  done
  cold[$server]=$(( ($(date +%s%N) - started) / 1000000 ))
done

python3 - "$results" "$fsync_ms" "${rss[e2d]}" "${rss[etcd]}" "${cold[e2d]}" "${cold[etcd]}" "$KEYS" "$ROUNDS" <<'PY'
import json, statistics, sys
path, fsync_ms, rss_e2d, rss_etcd, cold_e2d, cold_etcd, keys, rounds = sys.argv[1:]
rows = {}
for line in open(path):
    r = json.loads(line)
    # Server CPU (all members) per operation the bench counted.
    r["result"]["server_cpu_us_per_op"] = r["server_cpu_s"] * 1e6 / max(1, r["result"]["total"])
    # The load generator's own, on the same cores and counted the same way.
    r["result"]["client_cpu_us_per_op"] = r["result"].get("client_cpu_s", float("nan")) * 1e6 / max(1, r["result"]["total"])
    r["result"]["fsync_ms"] = r.get("fsync_ms")
    rows.setdefault((r["label"], r["shape"]), {}).setdefault(r["server"], []).append(r["result"])
def fmt(x): return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.3f}"
print(f"| workload | shape | measure | e2d | etcd | e2d / etcd |")
print(f"| --- | --- | --- | --- | --- | --- |")
for (label, shape), by in rows.items():
    e, c = by["e2d"], by["etcd"]
    for name, get in [("ops/s", lambda r: r["throughput_ops_per_sec"]),
                      ("p50 ms", lambda r: r["latency_ms"]["p50"]),
                      ("p99 ms", lambda r: r["latency_ms"]["p99"]),
                      ("server CPU µs/op", lambda r: r["server_cpu_us_per_op"]),
                      ("load generator CPU µs/op", lambda r: r["client_cpu_us_per_op"])]:
        # Each server's median over the rounds.
        a, b = statistics.median(map(get, e)), statistics.median(map(get, c))
        ratio = a / b if b else float("nan")
        print(f"| {label} | {shape} | {name} | {fmt(a)} | {fmt(b)} | {ratio:.2f} |")
    # A mixed workload's operations, each on its own.
    for op in e[0].get("operations", {}):
        for q in ["p50", "p99"]:
            get = lambda r: r["operations"][op]["latency_ms"][q]
            a, b = statistics.median(map(get, e)), statistics.median(map(get, c))
            print(f"| {label}: {op} | {shape} | {q} ms | {fmt(a)} | {fmt(b)} | {a / b if b else float('nan'):.2f} |")
    # A lone client's latency against the disk's sync time taken just
    # before the same run: each round's ratio, then their median.
    if e[0]["fsync_ms"] is not None:
        get = lambda r: r["latency_ms"]["p50"] / r["fsync_ms"]
        a, b = statistics.median(map(get, e)), statistics.median(map(get, c))
        print(f"| {label} | {shape} | p50 / fsync just before | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    if "watch_catch_up_ms" in e[0]:
        get = lambda r: r["watch_catch_up_ms"]
        a, b = statistics.median(map(get, e)), statistics.median(map(get, c))
        print(f"| {label}: watches at the last revision after the load | {shape} | ms | {fmt(a)} | {fmt(b)} | |")
    errors_e, errors_c = sum(r["errors"] for r in e), sum(r["errors"] for r in c)
    if errors_e or errors_c:
        print(f"| {label} | {shape} | errors (all rounds) | {errors_e} | {errors_c} | |")
print(f"| peak RSS after {int(keys):,} keys of 256 B | 1 node | MiB | {int(rss_e2d)/1024:.0f} | {int(rss_etcd)/1024:.0f} | {int(rss_e2d)/int(rss_etcd):.2f} |")
print(f"| cold start to first served request | 1 node | ms | {cold_e2d} | {cold_etcd} | {int(cold_e2d)/max(1,int(cold_etcd)):.2f} |")
print(f"\nMedians of {rounds} rounds per workload and server.")
print(f"fsync of 4 KiB on this disk: median {fsync_ms} ms")
PY
