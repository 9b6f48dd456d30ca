//! Records the revision the binary is built from, so that a benchmark record names the code that
//! ran rather than whatever tree the tool happens to run in: `TIDINGS_BUILD_REVISION`, the
//! commit's 12-digit hash with `-dirty` when the workspace's code (`crates/`, `Cargo.toml`,
//! `Cargo.lock`) differs from it, or empty outside a git working tree.

use std::path::Path;

#[path = "src/revision.rs"]
mod revision;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let root = Path::new(&manifest).join("../..");
    // Run again when the code or the commit changes; a missing path would make every build
    // run this again, so only those that exist are named.
    for watched in [
        "crates",
        "Cargo.toml",
        "Cargo.lock",
        ".git/HEAD",
        ".git/index",
        ".git/refs/heads",
        ".git/packed-refs",
    ] {
        let path = root.join(watched);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!(
        "cargo:rustc-env=TIDINGS_BUILD_REVISION={}",
        revision(&root).unwrap_or_default()
    );
}

/// The code's revision: `-dirty` only for changes to what the binary is built from.
fn revision(root: &Path) -> Option<String> {
    revision::revision_of(Some(root), &["crates", "Cargo.toml", "Cargo.lock"])
}
