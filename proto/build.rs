//! Compiles the etcd v3 API protos (with the Lock and Election services),
//! the gRPC health protocol and e2d's peer protocol with prost, plus tonic
//! service stubs when the `grpc` feature is on.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");

    // Cargo sets CARGO_FEATURE_<NAME> for every enabled feature of this crate.
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();

    madsim_tonic_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .emit_rerun_if_changed(false)
        // Keys and values are shared, not copied, by every watcher and
        // response that carries them.
        .bytes([".mvccpb.KeyValue"])
        .compile_protos(
            &[
                "proto/etcd/mvcc/mvccpb/kv.proto",
                "proto/etcd/auth/authpb/auth.proto",
                "proto/etcd/etcdserver/etcdserverpb/rpc.proto",
                "proto/etcd/v3lock/v3lockpb/v3lock.proto",
                "proto/etcd/v3election/v3electionpb/v3election.proto",
                "proto/e2d/peer.proto",
                "proto/e2d/gossip.proto",
                "proto/grpc/health/v1/health.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
