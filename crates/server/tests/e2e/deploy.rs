//! The files in `deploy/` start the server with settings it has: every flag and `TIDINGS_*`
//! variable the Dockerfile, the compose file and the systemd unit pass is one `tidings serve
//! --help` lists; and the unit passes `systemd-analyze verify` where it is installed. (No
//! container engine runs here: the images themselves are not built by these tests.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

use crate::process::BIN;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

/// What `tidings serve --help` lists: its flags and its environment variables.
struct ServeOptions {
    flags: BTreeSet<String>,
    variables: BTreeSet<String>,
}

impl ServeOptions {
    fn read() -> ServeOptions {
        let out = Command::new(BIN)
            .args(["serve", "--help"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        let words = |prefix: &str| -> BTreeSet<String> {
            help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .filter(|w| w.starts_with(prefix) && w.len() > prefix.len())
                .map(str::to_string)
                .collect()
        };
        let options = ServeOptions {
            flags: words("--"),
            variables: words("TIDINGS_"),
        };
        assert!(options.flags.contains("--data-dir"), "{help}");
        assert!(options.variables.contains("TIDINGS_STORE"), "{help}");
        options
    }

    /// Checks a `serve` command line: its flags exist, each followed by a value.
    fn check_args(&self, source: &str, args: &[String]) {
        assert_eq!(
            args.first().map(String::as_str),
            Some("serve"),
            "{source}: {args:?}"
        );
        let mut flags = 0;
        for (i, arg) in args.iter().enumerate() {
            if arg.starts_with("--") {
                assert!(self.flags.contains(arg), "{source}: serve has no {arg}");
                let value = args.get(i + 1);
                assert!(
                    value.is_some_and(|v| !v.starts_with("--")),
                    "{source}: {arg} has a value"
                );
                flags += 1;
            }
        }
        assert!(flags > 0, "{source}: {args:?}");
    }

    fn check_variable(&self, source: &str, name: &str) {
        if name.starts_with("TIDINGS_") && name != "TIDINGS_LOG" {
            assert!(
                self.variables.contains(name),
                "{source}: serve reads no {name}"
            );
        }
    }
}

/// The JSON array of a Dockerfile instruction (`CMD ["a", "b"]`).
fn exec_form(dockerfile: &str, instruction: &str) -> Vec<String> {
    let line = dockerfile
        .lines()
        .find(|l| l.starts_with(&format!("{instruction} [")))
        .unwrap_or_else(|| panic!("a {instruction} in exec form"));
    serde_json::from_str(&line[instruction.len() + 1..]).unwrap()
}

#[test]
fn the_dockerfile_runs_serve_with_its_flags_as_a_user_with_data_in_a_volume() {
    let options = ServeOptions::read();
    let dockerfile = read("Dockerfile");
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert_eq!(stages, 2, "a build stage and a runtime stage");
    assert_eq!(
        exec_form(&dockerfile, "ENTRYPOINT"),
        ["/usr/local/bin/tidings"]
    );
    let cmd = exec_form(&dockerfile, "CMD");
    options.check_args("Dockerfile CMD", &cmd);
    assert!(
        cmd.windows(2).any(|w| w == ["--data-dir", "/data"]),
        "{cmd:?}"
    );
    assert!(
        cmd.windows(2).any(|w| w == ["--listen", "0.0.0.0:9091"]),
        "{cmd:?}"
    );
    assert!(dockerfile.contains("VOLUME [\"/data\"]"));
    assert!(dockerfile.contains("EXPOSE 9091"));
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "{user}"
    );
    assert!(
        dockerfile.contains("http://127.0.0.1:9091/readyz"),
        "the health check"
    );
    for line in dockerfile.lines().filter(|l| l.starts_with("ENV ")) {
        let name = line[4..].split('=').next().unwrap();
        options.check_variable("Dockerfile ENV", name);
    }
    for continued in dockerfile.lines().filter(|l| l.starts_with("    TIDINGS_")) {
        options.check_variable(
            "Dockerfile ENV",
            continued.trim().split('=').next().unwrap(),
        );
    }
}

#[test]
fn the_compose_file_runs_two_nodes_on_postgres_and_nats_with_flags_serve_takes() {
    let options = ServeOptions::read();
    let docs = YamlLoader::load_from_str(&read("docker-compose.yml")).expect("valid YAML");
    let services = docs[0]["services"].as_hash().expect("services");
    let mut nodes = BTreeSet::new();
    let mut images = BTreeSet::new();
    for (name, service) in services {
        let name = name.as_str().unwrap();
        if let Some(image) = service["image"].as_str() {
            images.insert(image.split(':').next().unwrap().to_string());
        }
        let Some(command) = service["command"].as_vec() else {
            continue;
        };
        let args: Vec<String> = command
            .iter()
            .map(|a| a.as_str().expect("a string argument").to_string())
            .collect();
        if args.first().map(String::as_str) != Some("serve") {
            continue;
        }
        options.check_args(&format!("compose {name}"), &args);
        let environment = service["environment"].as_hash().expect("environment");
        for key in environment.keys() {
            options.check_variable(&format!("compose {name}"), key.as_str().unwrap());
        }
        let setting = |flag: &str, variable: &str| -> Option<String> {
            let from_args = args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
            from_args.or_else(|| {
                environment
                    .get(&Yaml::String(variable.into()))
                    .and_then(|v| v.as_str().map(str::to_string))
            })
        };
        let store = setting("--store", "TIDINGS_STORE").expect("a store");
        assert!(store.starts_with("postgres://"), "{name}: {store}");
        assert!(store.contains("@postgres:5432/"), "{name}: {store}");
        assert_eq!(
            setting("--nats", "TIDINGS_NATS").as_deref(),
            Some("nats://nats:4222")
        );
        assert!(setting("--cluster", "TIDINGS_CLUSTER").is_some(), "{name}");
        nodes.insert(setting("--node-id", "TIDINGS_NODE_ID").expect("a node id"));
    }
    assert_eq!(nodes.len(), 2, "two nodes, each its own id: {nodes:?}");
    for image in ["postgres", "nats", "tidings"] {
        assert!(images.contains(image), "{image} in {images:?}");
    }
}

#[test]
fn the_systemd_unit_runs_serve_with_its_flags_in_a_sandbox() {
    let options = ServeOptions::read();
    let unit = read("tidings.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart");
    let words: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
    assert!(words[0].ends_with("/tidings"), "{exec}");
    options.check_args("ExecStart", &words[1..]);
    for line in unit.lines().filter_map(|l| l.strip_prefix("Environment=")) {
        options.check_variable("Environment", line.split('=').next().unwrap());
    }
    for setting in [
        "DynamicUser=yes",
        "StateDirectory=tidings",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service",
        "LimitNOFILE=",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(setting)),
            "{setting} in the unit"
        );
    }

    // systemd's own check, on a copy that names the binary built here.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("tidings.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/tidings", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    // It warns about unknown or misspelt settings without failing.
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");
}
