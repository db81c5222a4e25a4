//! `e2d-core` decides and never does: its normal dependency tree holds no
//! async runtime, no networking and no file-system crates.

use std::process::Command;

/// Crates whose presence would mean core can reach sockets, files, clocks
/// or threads on its own.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "async-std",
    "smol",
    "hyper",
    "tonic",
    "reqwest",
    "fjall",
    "lsm-tree",
    "tempfile",
    "rand",
    "getrandom",
    "libc",
    "chrono",
    "time",
];

#[test]
fn core_depends_on_no_io_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "e2d-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(e2d_tests::tests_crate_dir())
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).expect("utf-8 output");
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"e2d-core"), "unexpected output: {tree}");
    assert!(crates.contains(&"prost"), "unexpected output: {tree}");
    let found: Vec<&&str> = FORBIDDEN.iter().filter(|c| crates.contains(c)).collect();
    assert!(found.is_empty(), "e2d-core depends on {found:?}:\n{tree}");
}
