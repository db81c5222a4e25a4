# e2d's everyday recipes. Builds go to $CARGO_TARGET_DIR (default below) so
# repeated runs reuse them.

export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") + "/.cache/e2d-target")

# Build the e2d binary, then run every test (unit, property, black-box),
# then the simulator's own tests: a bounded batch of seeds, replay, and the
# planted bugs it must catch.
test:
    cargo build -p e2d-shell --bins
    cargo test --workspace
    RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$CARGO_TARGET_DIR/madsim" cargo test --release -p e2d-sim

# Simulated clusters under faults: N seeds (default 200) from --seed S
# (default 1) on every core. Prints a summary and, for each failed seed,
# the command that replays it; see `just sim 1 --help` for more flags.
sim N="200" *ARGS:
    RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$CARGO_TARGET_DIR/madsim" cargo run --release -q -p e2d-sim -- {{N}} {{ARGS}}

# Start a single-node server with the default settings.
run *ARGS:
    cargo run --release -p e2d-shell --bin e2d -- run {{ARGS}}

# Formatting and lints, as CI wants them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# e2d beside etcd: the same e2d-bench workloads on 1 and 3 nodes, peak RSS
# with 1M keys, cold start; one table. SCALE=0.1 just bench for a quick run.
bench:
    bench/compare.sh

# Snapshot throughput (plain, gzip, gzip + encryption) on a SIZE_MIB
# database, beside sha512sum of the same bytes, with peak RSS.
bench-snapshot SIZE_MIB="1024":
    bench/snapshot.sh {{SIZE_MIB}}

# Long runs of the core property tests (gossip, manager, snapshot schedule):
# CASES random schedules each.
soak CASES="10000":
    PROPTEST_CASES={{CASES}} cargo test -p e2d-core --test swim --test manager_world --test schedule_props
