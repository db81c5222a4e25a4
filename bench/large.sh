#!/usr/bin/env bash
# A database of several GiB: e2d beside etcd (Debian etcd-server, default
# settings), one server at a time since each fills the disk, fsync on for
# both, the same e2d-bench loads. For each server:
#
# 1. One member loads KEYS keys (default 2,000,000) of VAL_BYTES (2,200)
#    in key order, keys of 7 digits, so each 2-digit prefix holds 100,000
#    keys; then overwrites the first OVERWRITE (1,000,000) of them, so the
#    history holds that many superseded revisions. The data dir's size and
#    the server's peak RSS.
# 2. A full range of one prefix (100,000 keys, about 220 MB), then the
#    same keys only (etcdctl's --keys-only): the median of 5 each.
# 3. Cold start: SIGTERM, start again, time to the first answered get.
# 4. While ten clients put 256 B values at PUT_RATE a second (each
#    put's latency counted from when it was due, so a server that stops
#    writes is charged for every put it held back): the puts'
#    p99 and longest alone, during a compaction at the last revision
#    (which drops the OVERWRITE superseded revisions; `compact
#    --physical`, so it returns when they are gone) and during a defrag;
#    the compaction's and the defrag's own time.
# 5. Two members join one after another (member add, then the member
#    starts); the time each takes from its start to the leader's revision
#    (both from a snapshot: the log has long been compacted). The second
#    joins a cluster of three.
#
# Usage: bench/large.sh   (SCALE=0.1 for a quick run: KEYS and OVERWRITE
#        scaled; ROUNDS=N rounds, the first server alternating; OUT=FILE
#        keeps the JSON lines of the results; JOIN_TIMEOUT_S=N bounds a
#        member's catch-up, 600 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
KEYS="${KEYS:-$(n 2000000)}"
OVERWRITE="${OVERWRITE:-$(n 1000000)}"
VAL_BYTES="${VAL_BYTES:-2200}"
PUT_RATE="${PUT_RATE:-1000}"
# A joining member that has not caught up after this long stops the
# bench (a member that cannot store the snapshot retries it forever).
JOIN_TIMEOUT_S="${JOIN_TIMEOUT_S:-600}"
ROUNDS="${ROUNDS:-1}"
# Room for the history before compaction (the default quota of 2 GiB
# would refuse the load part way).
export QUOTA_BACKEND_BYTES="${QUOTA_BACKEND_BYTES:-17179869184}"
work=$(mktemp -d /var/tmp/e2d-large.XXXXXX)
cleanup() { { kill -9 "${pids[@]}"; wait; } 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
results="${OUT:-$work/results.jsonl}"
base=27300
leader="127.0.0.1:$base"

# step SERVER WHAT: progress on stderr; a run takes many minutes.
step() { echo "$(date +%T) $1: $2" >&2; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
revision() { # ENDPOINT: the store's revision as that member serves it
  local r
  r=$(etcdctl --endpoints "$1" --dial-timeout 500ms --command-timeout 2s endpoint status -w fields 2>/dev/null |
    awk '/^"Revision" :/ {print $3; exit}') || true
  echo "${r:-0}"
}
# bench_json ARGS...: an e2d-bench run's JSON report; a run with errors
# stops the bench.
bench_json() {
  local out
  out=$("$bin/e2d-bench" --endpoints "$leader" --json "$@")
  python3 -c 'import json, sys; r = json.loads(sys.argv[1]); sys.exit(r["errors"] > 0)' "$out" ||
    { echo "e2d-bench $* had errors: $out" >&2; exit 1; }
  echo "$out"
}
# puts_while COMMAND...: the paced puts' report (JSON) while COMMAND runs;
# prints COMMAND's time in ms on the first line.
puts_while() {
  local load=$work/load.json started took
  "$bin/e2d-bench" --endpoints "$leader" --conns 1 --clients 10 --json \
    put --rate "$PUT_RATE" --total 1000000000 --key-size 8 --val-size 256 --key-space-size 100000 >"$load" &
  local bench=$!
  sleep 2
  started=$(date +%s%N)
  "$@" >/dev/null
  took=$(ms_since "$started")
  sleep 1
  kill -TERM "$bench"; wait "$bench"
  echo "$took"; cat "$load"
}

one_server() {
  local server=$1 name=$1-large pid started cold range_json keys_json base_json
  rm -rf "$work/$name"-m*
  pids_at[$base]=""
  start_cluster "$server" "$name" $base 1
  pid=${pids[-1]}
  wait_for "$leader"
  step "$server" "loading $KEYS keys of $VAL_BYTES B, then overwriting $OVERWRITE"
  bench_json --conns 50 --clients 500 put --total "$KEYS" --key-size 7 --val-size "$VAL_BYTES" \
    --key-space-size "$KEYS" --sequential-keys >/dev/null
  bench_json --conns 50 --clients 500 put --total "$OVERWRITE" --key-size 7 --val-size "$VAL_BYTES" \
    --key-space-size "$OVERWRITE" --sequential-keys >/dev/null
  local rss_kib db_bytes
  rss_kib=$(rss_of "$pid")
  db_bytes=$(du -sb "$work/$name-m0" | cut -f1)
  step "$server" "full range of one prefix"
  range_json=$(bench_json range 00 01 --total 5)
  keys_json=$(bench_json range 00 01 --keys-only --total 5)
  step "$server" "cold start"

  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  pids_at[$base]=""
  started=$(date +%s%N)
  start_cluster "$server" "$name" $base 1
  pid=${pids[-1]}
  until etcdctl --endpoints "$leader" --dial-timeout 200ms get 0000001 >/dev/null 2>&1; do
    kill -0 "$pid" || { echo "$server exited on restart; see $work" >&2; exit 1; }
    sleep 0.01
  done
  cold=$(ms_since "$started")

  step "$server" "puts alone, then during compaction, then during defrag"
  base_json=$(bench_json --conns 1 --clients 10 \
    put --rate "$PUT_RATE" --total $((PUT_RATE * 5)) --key-size 8 --val-size 256 --key-space-size 100000)
  local compact_out defrag_out
  compact_out=$(puts_while etcdctl --endpoints "$leader" --command-timeout 30m compact --physical "$(revision "$leader")")
  defrag_out=$(puts_while etcdctl --endpoints "$leader" --command-timeout 30m defrag)
  local db_after
  db_after=$(du -sb "$work/$name-m0" | cut -f1)

  # Two members join, one after the other, from snapshots.
  local join=() i target joined
  for i in 1 2; do
    target=$(revision "$leader")
    step "$server" "member m$i joins"
    # etcd refuses a member while the last one added is new to it
    # ("unhealthy cluster"): the add is retried, not timed.
    local tries=0
    until etcdctl --endpoints "$leader" --command-timeout 5s member add "m$i" \
      --peer-urls "http://127.0.0.1:$((base + 10 + i))" >/dev/null 2>"$work/member-add.err"; do
      ((++tries < 120)) || { cat "$work/member-add.err" >&2; exit 1; }
      sleep 1
    done
    started=$(date +%s%N)
    start_member "$server" "$name" $base "$i" "$(peer_urls $base $((i + 1)))" existing
    # One poller process for the whole wait (`e2d-bench reaches`, a status
    # request every 20 ms on one connection): a client process started for
    # each poll would take CPU from the members it times.
    "$bin/e2d-bench" --endpoints "127.0.0.1:$((base + i))" reaches --revision "$target" \
      --timeout-s "$JOIN_TIMEOUT_S" >"$work/reached" 2>"$work/reaches.err" &
    local poller=$! member=${pids[-1]}
    while kill -0 "$poller" 2>/dev/null; do
      kill -0 "$member" || {
        kill "$poller"
        echo "$server member m$i exited while joining; see $work" >&2
        exit 1
      }
      sleep 0.2
    done
    if ! wait "$poller"; then
      echo "$server member m$i has not caught up after ${JOIN_TIMEOUT_S} s;" \
        "$(df -h --output=avail "$work" | tail -n 1 | tr -d ' ') free on the disk of $work" \
        "(three members hold the database each): $(cat "$work/reaches.err"); the end of its log," \
        "$work/$name-m$i.log:" >&2
      tail -n 3 "$work/$name-m$i.log" >&2
      exit 1
    fi
    # (The poller says when it saw the revision: this loop notices only
    # at its next turn.)
    joined=$((($(cat "$work/reached") - started) / 1000000))
    join+=("$joined")
  done
  python3 - "$server" "$rss_kib" "$db_bytes" "$db_after" "$cold" "${join[0]}" "${join[1]}" \
    "$range_json" "$keys_json" "$base_json" "$compact_out" "$defrag_out" >>"$results" <<'PY'
import json, sys
server, rss, db, db_after, cold, join2, join3, rng, keys, base, compact, defrag = sys.argv[1:]
def timed(out):
    took, report = out.split("\n", 1)
    return {"ms": int(took), "puts": json.loads(report)}
print(json.dumps({"server": server, "rss_kib": int(rss), "db_bytes": int(db), "db_bytes_after_defrag": int(db_after),
                  "cold_start_ms": int(cold), "join_second_ms": int(join2), "join_third_ms": int(join3),
                  "range": json.loads(rng), "keys_only_range": json.loads(keys), "puts_alone": json.loads(base),
                  "compaction": timed(compact), "defrag": timed(defrag)}))
PY
  for pid in ${pids_at[$base]}; do kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
  pids_at[$base]=""
  rm -rf "$work/$name"-m*
}

for ((round = 0; round < ROUNDS; round++)); do
  order="e2d etcd"; ((round % 2)) && order="etcd e2d"
  for server in $order; do one_server "$server"; done
done

python3 - "$results" "$KEYS" "$OVERWRITE" "$VAL_BYTES" "$PUT_RATE" <<'PY'
import json, statistics, sys
path, keys, overwrite, val, rate = sys.argv[1:]
by = {}
for line in open(path):
    r = json.loads(line)
    by.setdefault(r["server"], []).append(r)
def med(server, get): return statistics.median(map(get, by[server]))
def fmt(x): return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.3f}"
rows = [
    ("data dir after the load", "GiB", lambda r: r["db_bytes"] / 2**30),
    ("data dir after compaction and defrag", "GiB", lambda r: r["db_bytes_after_defrag"] / 2**30),
    ("peak RSS after the load", "MiB", lambda r: r["rss_kib"] / 1024),
    ("full range of one prefix (100,000 keys)", "ms p50", lambda r: r["range"]["latency_ms"]["p50"]),
    ("the same, keys only", "ms p50", lambda r: r["keys_only_range"]["latency_ms"]["p50"]),
    ("cold start to first served request", "ms", lambda r: r["cold_start_ms"]),
    (f"puts at {rate}/s, nothing else", "p99 ms", lambda r: r["puts_alone"]["latency_ms"]["p99"]),
    ("compaction", "ms", lambda r: r["compaction"]["ms"]),
    (f"puts at {rate}/s during compaction", "p99 ms", lambda r: r["compaction"]["puts"]["latency_ms"]["p99"]),
    (f"puts at {rate}/s during compaction", "max ms", lambda r: r["compaction"]["puts"]["latency_ms"]["max"]),
    ("defrag", "ms", lambda r: r["defrag"]["ms"]),
    (f"puts at {rate}/s during defrag", "p99 ms", lambda r: r["defrag"]["puts"]["latency_ms"]["p99"]),
    (f"puts at {rate}/s during defrag", "max ms", lambda r: r["defrag"]["puts"]["latency_ms"]["max"]),
    ("second member catches up (2 members)", "ms", lambda r: r["join_second_ms"]),
    ("third member catches up (3 members)", "ms", lambda r: r["join_third_ms"]),
]
print(f"| large: {int(keys):,} keys of {val} B, {int(overwrite):,} overwritten | measure | e2d | etcd | e2d / etcd |")
print("| --- | --- | --- | --- | --- |")
for name, unit, get in rows:
    a, b = med("e2d", get), med("etcd", get)
    print(f"| {name} | {unit} | {fmt(a)} | {fmt(b)} | {a / b if b else float('nan'):.2f} |")
errors = {s: sum(r[k]["puts"]["errors"] for r in by[s] for k in ("compaction", "defrag")) for s in by}
if any(errors.values()):
    print(f"| puts refused during compaction and defrag | count | {errors['e2d']} | {errors['etcd']} | |")
print(f"\nMedians of {len(by['e2d'])} round(s) per server.")
PY
