//! Compiles the etcd v3 API protos (with the Lock and Election services),
//! the gRPC health protocol and e2d's peer protocol with prost, plus tonic
//! service stubs when the `grpc` feature is on and serde implementations
//! of the etcd API's JSON mapping when the `json` feature is.

const PROTOS: &[&str] = &[
    "proto/etcd/mvcc/mvccpb/kv.proto",
    "proto/etcd/auth/authpb/auth.proto",
    "proto/etcd/etcdserver/etcdserverpb/rpc.proto",
    "proto/etcd/v3lock/v3lockpb/v3lock.proto",
    "proto/etcd/v3election/v3electionpb/v3election.proto",
    "proto/e2d/peer.proto",
    "proto/e2d/gossip.proto",
    "proto/grpc/health/v1/health.proto",
];

/// Fields generated as shared `Bytes` rather than `Vec<u8>`, by both code
/// generators alike: keys and values are shared, not copied, by every
/// watcher and response that carries them; a snapshot chunk's bytes are
/// taken from the connection's buffer as they are.
const SHARED_BYTES: &[&str] = &[".mvccpb.KeyValue", ".e2d.peer.SnapshotChunk.data"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");

    // Cargo sets CARGO_FEATURE_<NAME> for every enabled feature of this crate.
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    let json = std::env::var_os("CARGO_FEATURE_JSON").is_some();
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors_path = out_dir.join("descriptors.bin");

    madsim_tonic_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .emit_rerun_if_changed(false)
        .file_descriptor_set_path(&descriptors_path)
        .bytes(SHARED_BYTES)
        .compile_protos(PROTOS, &["proto"])?;

    if grpc && std::env::var_os("CARGO_CFG_MADSIM").is_none() {
        // The stubs for the real network again, over those above, with a
        // codec that sizes its buffer for each message before encoding it
        // (see `codec.rs`).
        SHARED_BYTES
            .iter()
            .fold(tonic_prost_build::configure(), |config, path| {
                config.bytes(path)
            })
            .build_server(true)
            .build_client(true)
            .emit_rerun_if_changed(false)
            .codec_path("crate::codec::SizedCodec")
            .compile_protos(PROTOS, &["proto"])?;
    }

    if json {
        // The protobuf JSON mapping with the names the .proto files give
        // (`cluster_id`, `ID`, `peerURLs`), as etcd's gateway (grpc-gateway
        // with `OrigName`) writes them; reading takes both name styles,
        // enums by name or number, and skips unknown fields, as it does.
        // Every package but e2d's own, so one added to the etcd API has
        // its JSON too (each is included by `generated_json!`).
        pbjson_build::Builder::new()
            .register_descriptors(&std::fs::read(&descriptors_path)?)?
            .preserve_proto_field_names()
            .ignore_unknown_fields()
            .exclude([".e2d"])
            .build(&["."])?;
    }
    Ok(())
}
