//! Records the revision the binary is built from, so that a benchmark record names the code that
//! ran rather than whatever tree the tool happens to run in: `TIDINGS_BUILD_REVISION`, the
//! commit's 12-digit hash with `-dirty` when the workspace's code (`crates/`, `Cargo.toml`,
//! `Cargo.lock`) differs from it, or empty outside a git working tree.

use std::path::Path;
use std::process::Command;

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

fn revision(root: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = git(&["rev-parse", "--short=12", "HEAD"])?;
    let changes = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "crates",
        "Cargo.toml",
        "Cargo.lock",
    ])?;
    Some(if changes.is_empty() {
        rev
    } else {
        format!("{rev}-dirty")
    })
}
