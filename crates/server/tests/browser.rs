//! The demo page's and the admin console's tests in a real browser (`web/demo/test`, Node's
//! test runner driving Debian's Chromium with playwright-core) against this build's `tidings`
//! binary. They need Node, the page's npm packages (`npm ci --prefix web/demo`) and Chromium
//! (`apt-get install chromium`, or `CHROMIUM=/path`); without them each test says it skipped
//! and why. `.ci/run` provides them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Why the browser tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed".into());
    }
    let demo = repo().join("web/demo");
    if !demo.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "playwright-core is not installed: run npm ci --prefix {}",
            demo.display()
        ));
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "no browser at {chromium}: apt-get install chromium, or set CHROMIUM"
        ));
    }
    None
}

#[test]
fn the_demo_page_works_in_a_real_browser() {
    run("the demo page", "test/demo.test.js");
}

#[test]
fn the_admin_console_works_in_a_real_browser() {
    run("the admin console", "test/admin.test.js");
}

/// `tidings_gateway::ADMIN_ROUTES` as JSON: `[[method, path], ...]`.
fn admin_routes() -> String {
    let routes: Vec<[&str; 2]> = tidings_gateway::ADMIN_ROUTES
        .iter()
        .map(|(method, path, _)| [*method, *path])
        .collect();
    serde_json::to_string(&routes).expect("routes encode")
}

/// Runs one of `web/demo/test`'s files with Node's test runner, or says why it cannot.
fn run(what: &str, file: &str) {
    if let Some(why) = missing() {
        // Straight to the terminal: the test harness captures eprintln! of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the browser tests of {what}: {why}"
        );
        return;
    }
    let demo = repo().join("web/demo");
    let artifacts = repo().join("target/browser-artifacts");
    let output = Command::new("node")
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg(file)
        .current_dir(&demo)
        .env("TIDINGS_BIN", env!("CARGO_BIN_EXE_tidings"))
        // The admin console's routes, for its test to try every one without a session.
        .env("TIDINGS_ADMIN_ROUTES", admin_routes())
        .env("BROWSER_ARTIFACTS", &artifacts)
        .output()
        .expect("node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{report}");
    assert!(
        output.status.success(),
        "the browser tests of {what} failed:\n{report}"
    );
    eprintln!("screenshots: {}", artifacts.display());
}
