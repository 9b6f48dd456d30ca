//! Compiles the seed-000 dialect's schema, shipped to client authors as
//! `docs/dialects/seed000.proto`, with protox (no `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../docs/dialects/seed000.proto");
    let fds = protox::compile(["seed000.proto"], ["../../docs/dialects"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
