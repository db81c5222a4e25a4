# e2d's everyday recipes. Builds go to $CARGO_TARGET_DIR (default below) so
# repeated runs reuse them.

export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") + "/.cache/e2d-target")

# The lints first (they fail in a minute where the tests take many), then
# build the e2d binary, run every test (unit, property, black-box), then
# the simulator's own tests: a bounded batch of seeds, replay, and the
# planted bugs it must catch.
test: lint
    cargo build -p e2d-shell --bins
    cargo test --workspace --no-fail-fast
    RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$CARGO_TARGET_DIR/madsim" cargo test --release -p e2d-sim

# Simulated clusters under faults: N seeds (default 200) from --seed S
# (default 1) on every core. Prints a summary and, for each failed seed,
# the command that replays it; see `just sim 1 --help` for more flags.
sim N="200" *ARGS:
    RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$CARGO_TARGET_DIR/madsim" cargo run --release -q -p e2d-sim -- {{N}} {{ARGS}}

# The binary to ship, in dist/: e2d without its debug info (about 60 MB),
# e2d.debug (the line tables, found by gdb and perf through the binary's
# debug link) and e2d.dwp (the rest of the DWARF, which the release build
# keeps apart). Backtraces name functions either way.
release:
    cargo build --release -p e2d-shell --bin e2d
    mkdir -p dist
    objcopy --only-keep-debug "$CARGO_TARGET_DIR/release/e2d" dist/e2d.debug
    cp "$CARGO_TARGET_DIR/release/e2d.dwp" dist/e2d.dwp
    objcopy --strip-debug --add-gnu-debuglink=dist/e2d.debug "$CARGO_TARGET_DIR/release/e2d" dist/e2d
    ls -l dist

# Start a single-node server with the default settings.
run *ARGS:
    cargo run --release -p e2d-shell --bin e2d -- run {{ARGS}}

# Formatting, lints (of the real build and of the simulator's) and the
# dependency rules, as CI wants them.
lint: deps
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$CARGO_TARGET_DIR/madsim" cargo clippy -p e2d-sim -p e2d-shell --all-targets -- -D warnings

# The dependency rules of ARCHITECTURE.md ("Dependencies"): the server
# links one HTTP and TLS stack (hyper 1, rustls 0.23) with one crypto
# provider (aws-lc-rs), and e2d-bench does not link the server.
deps:
    #!/usr/bin/env bash
    set -euo pipefail
    # Fails when the normal dependencies of crate $1 include a package
    # whose "name vX.Y.Z" starts with a match of the regex $2; $3 says why
    # it must not.
    refuse() {
      local tree found
      tree=$(cargo tree -q -p "$1" -e normal --prefix none)
      found=$(grep -E "^($2)" <<<"$tree" | cut -d' ' -f1,2 | sort -u || true)
      if [ -n "$found" ]; then
        echo "$1 depends on $(echo $found): $3." >&2
        echo "'cargo tree -p $1 -e normal -i <name>@<version>' shows what brings each in." >&2
        return 1
      fi
    }
    broken=0
    refuse e2d-shell 'hyper v0\.14\.|rustls v0\.21\.|h2 v0\.3\.|http v0\.2\.' \
      "a second HTTP stack beside hyper 1 and rustls 0.23; turn off the default features of the crate that brings it" || broken=1
    refuse e2d-shell 'ring v' \
      "a second crypto provider beside aws-lc-rs; choose the aws-lc-rs feature of the crate that brings it" || broken=1
    # The server's storage and cloud SDKs (aws-lc-rs is etcd-client's TLS).
    refuse e2d-bench 'e2d-shell v|fjall v|aws-(config|sdk-|smithy-)' \
      "the load generator must not link the server; move what it shares into a small crate of its own" || broken=1
    exit $broken

# e2d beside etcd: the same e2d-bench workloads on 1 and 3 nodes (the
# kube-apiserver mix with 10,000 and 100,000 objects among them), peak RSS
# with 1M keys, cold start; then the multi-GiB database of bench-large.
# SCALE=0.1 just bench for a quick run.
bench: && bench-large
    bench/compare.sh

# e2d beside etcd on a database of about 4.5 GiB: size, peak RSS, a
# 100,000-key range, cold start, puts during compaction and defrag, two
# members joining. SCALE=0.1 for a quick run.
bench-large:
    bench/large.sh

# What applying a put costs the state machine alone (key index, encoding,
# events), with keys of 8 and 48 bytes; no server, no disk.
bench-apply:
    cargo bench -p e2d-core --bench apply_put

# Snapshot throughput (plain, gzip, gzip + encryption) on a SIZE_MIB
# database, beside sha512sum of the same bytes, with peak RSS.
bench-snapshot SIZE_MIB="1024":
    bench/snapshot.sh {{SIZE_MIB}}

# Continuous backups: the put throughput cost of deltas every 10 s and
# every 1 s, and the restore time of a SIZE_MIB snapshot plus DELTA_MIB of
# deltas.
bench-deltas SIZE_MIB="1024" DELTA_MIB="100":
    SIZE_MIB={{SIZE_MIB}} DELTA_MIB={{DELTA_MIB}} bench/deltas.sh

# Long runs of the core property tests (gossip, manager, snapshot schedule):
# CASES random schedules each.
soak CASES="10000":
    PROPTEST_CASES={{CASES}} cargo test -p e2d-core --test swim --test manager_world --test schedule_props
