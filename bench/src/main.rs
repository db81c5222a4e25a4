//! `e2d-bench`: measures e2d and etcd alike. Filled by the performance
//! milestone.

fn main() {
    eprintln!("e2d-bench: no workloads yet; see the performance milestone");
    std::process::exit(2);
}
