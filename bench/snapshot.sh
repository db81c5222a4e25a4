#!/usr/bin/env bash
# Snapshot throughput on a database of SIZE_MIB (default 1024) MiB: the
# snapshot written plain, gzipped, and gzipped + encrypted, straight from a
# stopped member's data dir (`e2d snapshot save --data-dir`, the leader's
# own path: a point-in-time read through the envelope into a file), next to
# `sha512sum` of the plain snapshot as the yardstick of reading and hashing
# as many bytes; then etcd's format: the export (`--format etcd`, the bbolt
# database etcd's tools read), its import (`e2d snapshot restore`) beside
# etcd's own import of the same file (`etcdctl snapshot restore`). Prints
# wall time, MB/s and the peak RSS of each.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB="${1:-1024}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/e2d-target}"
cargo build --release -q -p e2d-shell
E2D="$CARGO_TARGET_DIR/release/e2d"
WORK="$(mktemp -d /var/tmp/e2d-snapshot-bench.XXXXXX)"
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$((20000 + RANDOM % 20000))

# Load: 1 MiB values of base64 text (compressible as real data often is).
"$E2D" run --data-dir "$WORK/data" --client-addr "127.0.0.1:$PORT" --peer-addr "127.0.0.1:$((PORT + 1))" \
  --quota-backend-bytes $((8 * 1024 * 1024 * 1024)) --log-level warn > "$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do etcdctl --endpoints "127.0.0.1:$PORT" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
for v in 0 1 2 3 4 5 6 7; do head -c 786432 /dev/urandom | base64 -w0 > "$WORK/value-$v"; done
echo "loading $SIZE_MIB MiB..." >&2
for i in $(seq 0 $((SIZE_MIB - 1))); do
  etcdctl --endpoints "127.0.0.1:$PORT" put "key-$i" < "$WORK/value-$((i % 8))" > /dev/null
done
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/ca.key" 2>/dev/null

# Runs a command; prints "seconds peak_rss_kib".
measure() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
start = time.monotonic()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
elapsed = time.monotonic() - start
print(f"{elapsed:.3f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
PY
}

printf '%-22s %10s %10s %12s %12s\n' "what" "seconds" "MB/s" "out MB" "peak RSS MB"
row() { # name seconds rss_kib out_bytes payload_bytes
  awk -v n="$1" -v s="$2" -v r="$3" -v o="$4" -v p="$5" \
    'BEGIN { printf "%-22s %10.2f %10.1f %12.1f %12.1f\n", n, s, p / 1e6 / s, o / 1e6, r / 1024 }'
}
read -r secs rss < <(measure "$E2D" snapshot save "$WORK/plain.snap" --data-dir "$WORK/data")
PAYLOAD=$(stat -c %s "$WORK/plain.snap")
row "plain" "$secs" "$rss" "$PAYLOAD" "$PAYLOAD"
read -r secs rss < <(measure "$E2D" snapshot save "$WORK/gzip.snap" --data-dir "$WORK/data" --snapshot-compression)
row "gzip" "$secs" "$rss" "$(stat -c %s "$WORK/gzip.snap")" "$PAYLOAD"
read -r secs rss < <(measure "$E2D" snapshot save "$WORK/sealed.snap" --data-dir "$WORK/data" \
  --snapshot-compression --snapshot-encryption --ca-key "$WORK/ca.key")
row "gzip + encryption" "$secs" "$rss" "$(stat -c %s "$WORK/sealed.snap")" "$PAYLOAD"
read -r secs rss < <(measure "$E2D" snapshot save "$WORK/enc.snap" --data-dir "$WORK/data" \
  --snapshot-encryption --ca-key "$WORK/ca.key")
row "encryption" "$secs" "$rss" "$(stat -c %s "$WORK/enc.snap")" "$PAYLOAD"
read -r secs rss < <(measure sha512sum "$WORK/plain.snap")
row "sha512sum (yardstick)" "$secs" "$rss" 0 "$PAYLOAD"
read -r secs rss < <(measure "$E2D" snapshot inspect "$WORK/sealed.snap" --ca-key "$WORK/ca.key")
row "verify sealed" "$secs" "$rss" 0 "$PAYLOAD"
read -r secs rss < <(measure "$E2D" snapshot save "$WORK/etcd.db" --data-dir "$WORK/data" --format etcd)
ETCD_DB=$(stat -c %s "$WORK/etcd.db")
row "etcd format: export" "$secs" "$rss" "$ETCD_DB" "$ETCD_DB"
read -r secs rss < <(measure "$E2D" snapshot restore "$WORK/etcd.db" --data-dir "$WORK/imported")
row "etcd format: import" "$secs" "$rss" 0 "$ETCD_DB"
read -r secs rss < <(measure env ETCDCTL_API=3 etcdctl snapshot restore "$WORK/etcd.db" --data-dir "$WORK/etcd-imported")
row "etcdctl restore (etcd)" "$secs" "$rss" 0 "$ETCD_DB"
