# Helpers of the benchmark scripts: servers started on loopback ports,
# e2d and etcd side by side, waited for, measured. Sourced from the
# project's root: builds the release binaries into bin; the script then
# sets work (a scratch directory). pids keeps every server started, for
# cleanup.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/e2d-target}"
cargo build --release -q -p e2d-shell -p e2d-bench
bin="$CARGO_TARGET_DIR/release"
pids=()
# SCALE shrinks (or grows) a run: n COUNT is COUNT scaled, at least 1.
SCALE="${SCALE:-1}"
n() { python3 -c "print(max(1, int($1 * $SCALE)))"; }

wait_for() { # host:port
  local pid
  for _ in $(seq 1 600); do
    etcdctl --endpoints "$1" --dial-timeout 1s endpoint health >/dev/null 2>&1 && return 0
    for pid in ${pids_at[*]}; do
      kill -0 "$pid" 2>/dev/null && continue
      echo "a server (pid $pid) exited while starting; its log:" >&2
      grep -l . "$work"/*.log | xargs tail -n 3 >&2; exit 1
    done
    sleep 0.05
  done
  echo "no answer from $1" >&2; return 1
}

# Server pids by client port base, for the CPU each workload costs them.
declare -A pids_at
# cpu_ticks BASE: user + system clock ticks of the servers on BASE so far.
cpu_ticks() {
  local total=0 pid
  for pid in ${pids_at[$1]}; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
clk_tck=$(getconf CLK_TCK)

# peer_urls BASE SIZE: the name=peer-url list of members m0..m(SIZE-1).
peer_urls() {
  local base=$1 size=$2 out="" i
  for ((i = 0; i < size; i++)); do out+="${out:+,}m$i=http://127.0.0.1:$((base + 10 + i))"; done
  echo "$out"
}

# start_member e2d|etcd NAME PORT_BASE I CLUSTER [new|existing]: member mI
# of CLUSTER (a peer_urls list), on PORT_BASE+I (client) and PORT_BASE+10+I
# (peer), its data in $work/NAME-mI. QUOTA_BACKEND_BYTES, when set, is
# both servers' --quota-backend-bytes.
start_member() {
  local server=$1 name=$2 base=$3 i=$4 cluster=$5 state=${6:-new}
  local client="127.0.0.1:$((base + i))" peer="127.0.0.1:$((base + 10 + i))"
  local quota=(${QUOTA_BACKEND_BYTES:+--quota-backend-bytes "$QUOTA_BACKEND_BYTES"})
  if [ "$server" = e2d ]; then
    "$bin/e2d" run --name "m$i" --data-dir "$work/$name-m$i" --log-level "${LOG_LEVEL:-warn}" "${quota[@]}" \
      --client-addr "$client" --peer-addr "$peer" \
      --initial-cluster "$cluster" --initial-cluster-state "$state" >"$work/$name-m$i.log" 2>&1 &
  else
    etcd --name "m$i" --data-dir "$work/$name-m$i" --log-level warn --logger zap "${quota[@]}" \
      --listen-client-urls "http://$client" --advertise-client-urls "http://$client" \
      --listen-peer-urls "http://$peer" --initial-advertise-peer-urls "http://$peer" \
      --initial-cluster "$cluster" --initial-cluster-state "$state" >"$work/$name-m$i.log" 2>&1 &
  fi
  pids+=($!); pids_at[$base]+=" $!"
}

# start_cluster e2d|etcd NAME PORT_BASE MEMBERS: a new static cluster.
start_cluster() {
  local i
  for ((i = 0; i < $4; i++)); do start_member "$1" "$2" "$3" "$i" "$(peer_urls "$3" "$4")"; done
}
endpoints() { local base=$1 size=$2 out="" i; for ((i = 0; i < size; i++)); do out+="${out:+,}127.0.0.1:$((base + i))"; done; echo "$out"; }

# member_endpoint BASE SIZE leader|follower: one member's endpoint, by role.
member_endpoint() {
  etcdctl --endpoints "$(endpoints "$1" "$2")" endpoint status -w json | python3 -c '
import json, sys
want_leader = sys.argv[1] == "leader"
for e in json.load(sys.stdin):
    s = e["Status"]
    if (s["leader"] == s["header"]["member_id"]) == want_leader:
        print(e["Endpoint"]); break' "$3"
}
# rss_of PID: the process's peak resident set, KiB.
rss_of() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
