//! The browser SDK's own tests (`web/sdk/test/`, on Node's test runner, each against a real
//! `tidings serve` it starts) and its type check, run against this build's `tidings` binary so
//! that `cargo test --workspace` covers the SDK too.
//!
//! They need Node (18 or newer) and the SDK's devDependencies (`npm ci --prefix web/sdk`, which
//! `.ci/run` does). Where either is missing, each test says that it SKIPPED and why, and passes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The SDK's directory.
fn sdk_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/sdk");
    dir.canonicalize().unwrap_or(dir)
}

/// Why the SDK's tests cannot run here, if they cannot.
fn missing(dir: &Path) -> Option<String> {
    let version = match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => return Some("`node` is not on PATH".into()),
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 18 {
        return Some(format!(
            "node {version} is older than 18 (the SDK needs fetch)"
        ));
    }
    if !dir.join("node_modules").is_dir() {
        return Some(format!(
            "{} is missing: run `npm ci --prefix web/sdk`",
            dir.join("node_modules").display()
        ));
    }
    None
}

/// Says on stderr that a test skipped and why. Written to the stream itself rather than with
/// `eprintln!`, which the test harness captures (and shows only for failures): a skip should
/// be seen.
fn skipped(what: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {what}: {why}");
}

/// Fails with everything the command printed unless it succeeded.
fn check(what: &str, out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

#[test]
fn the_browser_sdk_tests_pass_against_this_build() {
    let dir = sdk_dir();
    if let Some(why) = missing(&dir) {
        skipped("the browser SDK's tests (web/sdk/test)", &why);
        return;
    }
    let out = Command::new("node")
        .args(["--test", "test/"])
        .current_dir(&dir)
        .env("TIDINGS_BIN", env!("CARGO_BIN_EXE_tidings"))
        .output()
        .expect("running node");
    let stdout = check("node --test web/sdk/test/", out);
    // The runner's own totals, for the log.
    let totals: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("# tests") || l.starts_with("# pass") || l.starts_with("# fail"))
        .collect();
    let _ = writeln!(std::io::stderr(), "web/sdk/test: {}", totals.join(", "));
}

#[test]
fn the_browser_sdk_type_checks() {
    let dir = sdk_dir();
    if let Some(why) = missing(&dir) {
        skipped(
            "the browser SDK's type check (tsc --noEmit -p web/sdk)",
            &why,
        );
        return;
    }
    let out = Command::new(dir.join("node_modules/.bin/tsc"))
        .args(["--noEmit", "-p", "."])
        .current_dir(&dir)
        .output()
        .expect("running tsc");
    check("tsc --noEmit -p web/sdk", out);
}
