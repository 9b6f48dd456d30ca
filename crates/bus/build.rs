//! Compiles `proto/bus.proto` with protox (pure Rust, no `protoc` needed) into prost types.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/bus.proto");
    let fds = protox::compile(["bus.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
