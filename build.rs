//! Generates the CSI gRPC bindings (proto/csi.proto) with tonic's prost
//! generator, using the protoc shipped by protoc-bin-vendored so a build
//! needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/csi.proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    // A build script runs on one thread: setting the variable races nothing.
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Its secrets map holds the pod's service-account token: no derived
        // Debug that could print it (a redacting one is in src/csi/proto.rs).
        .skip_debug(["csi.v1.NodePublishVolumeRequest"])
        .compile_protos(
            &[std::path::PathBuf::from("proto/csi.proto")],
            &[std::path::PathBuf::from("proto"), include],
        )?;
    Ok(())
}
