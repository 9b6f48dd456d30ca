//! Compiles `proto/tidings.proto` with protox (pure Rust, no `protoc` needed), generating prost
//! types and their proto3 JSON mapping (pbjson).

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/tidings.proto");
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(["tidings.proto"], ["proto"])?;
    let descriptor_bytes = fds.encode_to_vec();
    std::fs::write(out_dir.join("tidings_descriptor.bin"), &descriptor_bytes)?;
    prost_build::Config::new().compile_fds(fds)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .ignore_unknown_fields()
        .build(&[".tidings.v1"])?;
    Ok(())
}
