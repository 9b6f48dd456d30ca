//! What an operator sees and does: log lines (JSON or text), `/readyz`, the first start's
//! credentials, and `tidings backup` / `tidings restore` on a running server.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};

use tidings_client::{Client, ClientConfig, Outgoing};
use tidings_server::StoreSetting;
use tidings_store_postgres::testing::{TestDatabase, server_url};

use crate::process::{BIN, ServerProcess, token};
use crate::util::*;

/// `tidings serve` with its stderr read line by line: each line goes to `lines` as it comes.
struct LoggingServer {
    child: Child,
    url: String,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl LoggingServer {
    fn start(cwd: &Path, log: &str, extra: &[&str]) -> LoggingServer {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--send-rate", "0"])
            .args(extra)
            .current_dir(cwd)
            .env("TIDINGS_LOG", log)
            // A metrics port of its own: another server on the machine may hold the default.
            .env("TIDINGS_METRICS_LISTEN", "127.0.0.1:0")
            .env_remove("TIDINGS_LOG_FORMAT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let url = loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "server exited early"
            );
            if let Some(url) = line.trim_end().strip_prefix("tidings listening on ") {
                break url.to_string();
            }
        };
        std::thread::spawn(move || for _ in stdout.lines() {});
        LoggingServer {
            child,
            url,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads stderr lines until one satisfies `what`.
    fn until(&mut self, what: &str, f: impl Fn(&str) -> bool) {
        loop {
            let line = self
                .lines
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no log line {what}; got {:#?}", self.seen));
            let done = f(&line);
            self.seen.push(line);
            if done {
                return;
            }
        }
    }

    /// Stops the server (SIGTERM) and returns every stderr line it wrote.
    fn stop(mut self) -> Vec<String> {
        Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "SIGTERM exits 0");
        // The reader ends at the end of the pipe, after the last line.
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            self.seen.push(line);
        }
        std::mem::take(&mut self.seen)
    }
}

impl Drop for LoggingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client_config(url: &str, token: String, device: &str) -> ClientConfig {
    let mut c = ClientConfig::new(url, token);
    c.device_id = device.into();
    c.reconnect_delays = vec![std::time::Duration::from_millis(50)];
    c
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_connections_fields() {
    let cwd = tempfile::tempdir().unwrap();
    let mut server = LoggingServer::start(
        cwd.path(),
        "info,tidings_engine=debug",
        &["--log-format", "json"],
    );
    let t = token(&cwd.path().join("data"), "alice");
    let (alice, _events) = Client::connect(client_config(&server.url, t, "phone"))
        .await
        .unwrap();
    alice.close().await;
    // Logged inside the connection's span, once the client has gone.
    server.until("`session ended`", |l| l.contains("session ended"));
    let lines = server.stop();

    let mut ended = None;
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target"] {
            assert!(v.get(key).is_some(), "{key} in {line}");
        }
        assert!(v["fields"]["message"].is_string(), "a message in {line}");
        if v["fields"]["message"] == "session ended" {
            ended = Some(v);
        }
    }
    let ended = ended.expect("the session's end was logged");
    let span = &ended["span"];
    assert_eq!(span["name"], "conn", "{ended}");
    assert_eq!(span["user"], "alice", "{ended}");
    assert!(span["conn"].is_u64(), "a connection id: {ended}");
    assert!(span["session"].is_u64(), "a session id: {ended}");
    assert_eq!(ended["spans"][0]["user"], "alice", "{ended}");
    let schema: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("database schema at version"))
        .collect();
    assert_eq!(schema.len(), 1, "one migration summary: {schema:?}");
}

#[tokio::test]
async fn text_logs_to_a_pipe_have_no_colours_and_one_migration_line() {
    let cwd = tempfile::tempdir().unwrap();
    let mut server = LoggingServer::start(cwd.path(), "info", &[]);
    server.until("`serving`", |l| l.contains("serving"));
    let lines = server.stop();
    for line in &lines {
        assert!(!line.contains('\x1b'), "no escape codes: {line:?}");
    }
    let schema: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("database schema at version"))
        .collect();
    assert_eq!(schema.len(), 1, "one migration summary: {lines:#?}");
    let version = tidings_store_sqlite::SCHEMA_VERSION;
    assert!(
        schema[0].contains(&format!(
            "database schema at version {version} (applied {version} migrations)"
        )),
        "{}",
        schema[0]
    );
}

/// `tidings serve` in `cwd` on an address another socket holds: its address, that socket, and
/// what the server wrote before it exited.
fn serve_on_a_taken_port(cwd: &Path, extra: &[&str]) -> (String, std::net::TcpListener, Output) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["serve", "--listen", &addr])
        .args(extra)
        .current_dir(cwd)
        .env("TIDINGS_LOG", "warn")
        // A metrics port of its own: another server on the machine may hold the default.
        .env("TIDINGS_METRICS_LISTEN", "127.0.0.1:0")
        .env_remove("TIDINGS_LOG_FORMAT")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a port in use is an error");
    (addr, taken, out)
}

#[tokio::test]
async fn postgres_migrations_log_one_line() {
    let Some(url) = server_url() else {
        eprintln!("SKIPPED postgres_migrations_log_one_line: set TIDINGS_TEST_POSTGRES_URL");
        return;
    };
    let db = TestDatabase::create(&url).await.unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut server = LoggingServer::start(cwd.path(), "info", &["--store", &db.url]);
    server.until("`serving`", |l| l.contains("serving"));
    let lines = server.stop();
    let schema: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("database schema at version"))
        .collect();
    assert_eq!(schema.len(), 1, "one migration summary: {lines:#?}");
    assert!(schema[0].contains("migrations)"), "{}", schema[0]);
    db.drop().await.unwrap();
}

#[tokio::test]
async fn a_second_server_on_the_same_sqlite_database_is_refused() {
    let cwd = tempfile::tempdir().unwrap();
    let _first = ServerProcess::start(cwd.path(), &[]);
    let mut second = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(cwd.path())
        .env("TIDINGS_LOG", "warn")
        // A metrics port of its own: another server on the machine may hold the default.
        .env("TIDINGS_METRICS_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Were it to start, it would serve until killed: wait for its exit, bounded.
    let deadline = std::time::Instant::now() + WAIT;
    while second.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second server started on the same database");
        }
        // The back-off between checks: the loop ends when the process has exited.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    failed_saying(
        &second.wait_with_output().unwrap(),
        "is in use: a tidings server (or a restore) is running on this database",
    );
}

#[tokio::test]
async fn a_first_start_that_cannot_listen_still_prints_the_credentials_it_made() {
    let cwd = tempfile::tempdir().unwrap();
    let (addr, taken, out) = serve_on_a_taken_port(cwd.path(), &[]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("binding {addr}")), "{stderr}");
    let data = cwd.path().join("data");
    let stored = std::fs::read_to_string(tidings_server::credentials::path(&data)).unwrap();
    let stored: toml::Value = toml::from_str(&stored).unwrap();
    let key = stored["app_key"].as_str().unwrap();
    let secret = stored["app_secret"].as_str().unwrap();
    assert!(
        stdout.contains(&format!("appKey:    {key}")),
        "the key printed: {stdout}"
    );
    assert!(
        stdout.contains(&format!("appSecret: {secret}")),
        "the secret printed: {stdout}"
    );

    // The next start, which works, made nothing and prints nothing of them.
    drop(taken);
    let server = ServerProcess::start(cwd.path(), &[]);
    assert!(
        !server.stdout_lines.iter().any(|l| l.contains("appKey")),
        "{:?}",
        server.stdout_lines
    );
}

#[tokio::test]
async fn in_json_a_failed_start_says_why_in_json_too() {
    let cwd = tempfile::tempdir().unwrap();
    let (addr, _taken, out) = serve_on_a_taken_port(cwd.path(), &["--log-format", "json"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    let mut errors = Vec::new();
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {line}"));
        if v["level"] == "ERROR" {
            errors.push(v["fields"]["error"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(&format!("binding {addr}")), "{errors:?}");
}

#[tokio::test]
async fn readyz_answers_ready_while_the_store_answers() {
    let server = TestServer::start().await;
    let (status, body) = http(&server, "GET", "/readyz", Vec::new(), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"status": "ready", "store": "ok"}),
        "no bus outside a cluster"
    );
    let (status, body) = http(&server, "GET", "/healthz", Vec::new(), None).await;
    assert_eq!((status, &body["status"]), (200, &serde_json::json!("ok")));
}

#[tokio::test]
async fn readyz_answers_503_once_the_database_is_gone() {
    let Some(url) = server_url() else {
        eprintln!(
            "SKIPPED readyz_answers_503_once_the_database_is_gone: set TIDINGS_TEST_POSTGRES_URL"
        );
        return;
    };
    let db = TestDatabase::create(&url).await.unwrap();
    let store = StoreSetting::Postgres(db.url.clone());
    let server = TestServer::start_with(move |c| c.store = store).await;
    let (status, body) = http(&server, "GET", "/readyz", Vec::new(), None).await;
    assert_eq!((status, &body["store"]), (200, &serde_json::json!("ok")));
    // Every connection to it is ended and it is dropped.
    db.drop().await.unwrap();
    let (status, body) = http(&server, "GET", "/readyz", Vec::new(), None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"status": "not ready", "store": "unavailable"})
    );
    // Alive all the same.
    let (status, _) = http(&server, "GET", "/healthz", Vec::new(), None).await;
    assert_eq!(status, 200);
}

/// Runs the `tidings` binary with `args` in `cwd`.
fn tidings(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("TIDINGS_LOG", "warn")
        // A metrics port of its own: another server on the machine may hold the default.
        .env("TIDINGS_METRICS_LISTEN", "127.0.0.1:0")
        .env_remove("TIDINGS_DATA_DIR")
        .env_remove("TIDINGS_STORE")
        .output()
        .unwrap()
}

fn failed_saying(out: &Output, text: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {stderr}");
    assert!(stderr.contains(text), "{text:?} in {stderr}");
}

#[tokio::test]
async fn a_backup_taken_while_writing_restores_every_message_acknowledged_before_it() {
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(cwd.path(), &[]);
    let data = cwd.path().join("data");
    let (alice, _a) = Client::connect(client_config(&server.url, token(&data, "alice"), "phone"))
        .await
        .unwrap();
    // Alice writes to bob without a pause, before, during and after the backup.
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sent = alice
                    .send(Outgoing::text("bob", &format!("m{i}")))
                    .await
                    .unwrap();
                acked.lock().unwrap().push((sent.uid, sent.seq));
                i += 1;
            }
            alice.close().await;
        })
    };
    let count = |acked: &Arc<Mutex<Vec<(String, u64)>>>| acked.lock().unwrap().len();
    eventually("50 messages acknowledged", || async { count(&acked) >= 50 }).await;
    let before: Vec<(String, u64)> = acked.lock().unwrap().clone();
    let backup = cwd.path().join("backup.db");
    let out = {
        let (cwd, backup) = (cwd.path().to_path_buf(), backup.clone());
        tokio::task::spawn_blocking(move || {
            tidings(
                &cwd,
                &[
                    "backup",
                    "--to",
                    backup.to_str().unwrap(),
                    "--data-dir",
                    "data",
                ],
            )
        })
        .await
        .unwrap()
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server went on taking messages.
    let after = before.len() + 20;
    eventually("more messages acknowledged", || async {
        count(&acked) >= after
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();

    // Restored into a new data directory, with the credentials copied as the procedure says.
    let fresh = tempfile::tempdir().unwrap();
    let out = tidings(
        fresh.path(),
        &[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--data-dir",
            "data",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(
        data.join("credentials.toml"),
        fresh.path().join("data/credentials.toml"),
    )
    .unwrap();
    let restored = ServerProcess::start(fresh.path(), &[]);
    let t = token(&fresh.path().join("data"), "bob");
    let (_bob, mut events) = Client::connect(client_config(&restored.url, t, "new-laptop"))
        .await
        .unwrap();
    // A device that never synced gets bob's whole inbox: every message acknowledged before
    // the backup began, with its seq.
    let mut got: HashMap<String, u64> = HashMap::new();
    while !before.iter().all(|(uid, _)| got.contains_key(uid)) {
        let m = next_message(&mut events).await;
        got.insert(m.uid, m.seq);
    }
    for (uid, seq) in &before {
        assert_eq!(got.get(uid), Some(seq), "message {uid} keeps its seq");
    }
}

#[tokio::test]
async fn backup_and_restore_refuse_what_would_lose_data() {
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(cwd.path(), &[]);
    let path = |name: &str| cwd.path().join(name).to_str().unwrap().to_string();
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        )
    };

    ok(tidings(cwd.path(), &["backup", "--to", &path("b.db")]));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(cwd.path().join("b.db"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "only its owner reads a backup");
    failed_saying(
        &tidings(cwd.path(), &["backup", "--to", &path("b.db")]),
        "exists: pass --force",
    );
    ok(tidings(
        cwd.path(),
        &["backup", "--to", &path("b.db"), "--force"],
    ));
    failed_saying(
        &tidings(
            cwd.path(),
            &[
                "backup",
                "--to",
                &path("pg.db"),
                "--store",
                "postgres://u@db/tidings",
            ],
        ),
        "pg_dump",
    );
    failed_saying(
        &tidings(
            cwd.path(),
            &["backup", "--to", &path("c.db"), "--data-dir", "nowhere"],
        ),
        "there is no database",
    );

    // Not over a running server's database, even with --force.
    failed_saying(
        &tidings(cwd.path(), &["restore", "--from", &path("b.db"), "--force"]),
        "a tidings server (or a restore) is running on this database",
    );
    drop(server);
    // Not over an existing database without --force; with it, yes.
    failed_saying(
        &tidings(cwd.path(), &["restore", "--from", &path("b.db")]),
        "exists: pass --force",
    );
    ok(tidings(
        cwd.path(),
        &["restore", "--from", &path("b.db"), "--force"],
    ));
    failed_saying(
        &tidings(
            cwd.path(),
            &["restore", "--from", "data/tidings.db", "--force"],
        ),
        "is the database itself",
    );

    // Not a file that is not a Tidings database, a damaged one, or one from a newer build.
    std::fs::write(
        cwd.path().join("notes.txt"),
        "not a database at all\n".repeat(100),
    )
    .unwrap();
    failed_saying(
        &tidings(
            cwd.path(),
            &["restore", "--from", &path("notes.txt"), "--data-dir", "x"],
        ),
        "not a SQLite database",
    );
    let mut bytes = std::fs::read(cwd.path().join("b.db")).unwrap();
    let version = u32::from_be_bytes(bytes[60..64].try_into().unwrap());
    assert_eq!(version as usize, tidings_store_sqlite::SCHEMA_VERSION);
    // The header's user_version (offset 60, big-endian), one past this build's.
    bytes[60..64].copy_from_slice(&(version + 1).to_be_bytes());
    std::fs::write(cwd.path().join("newer.db"), &bytes).unwrap();
    failed_saying(
        &tidings(
            cwd.path(),
            &["restore", "--from", &path("newer.db"), "--data-dir", "x"],
        ),
        "newer than this build's",
    );
    let mut damaged = std::fs::read(cwd.path().join("b.db")).unwrap();
    let page = u16::from_be_bytes(damaged[16..18].try_into().unwrap()) as usize;
    // Every page after the schema's, overwritten.
    for b in &mut damaged[2 * page..] {
        *b = 0x5a;
    }
    std::fs::write(cwd.path().join("damaged.db"), &damaged).unwrap();
    failed_saying(
        &tidings(
            cwd.path(),
            &["restore", "--from", &path("damaged.db"), "--data-dir", "x"],
        ),
        "damaged.db",
    );
    assert!(
        !cwd.path().join("x/tidings.db").exists(),
        "nothing restored from a refused file"
    );
}

#[tokio::test]
async fn a_database_root_restores_belongs_to_the_data_directorys_owner_who_can_serve_it() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let cwd = tempfile::tempdir().unwrap();
    if std::fs::metadata(cwd.path()).unwrap().uid() != 0 {
        eprintln!(
            "SKIPPED a_database_root_restores_belongs_to_the_data_directorys_owner_who_can_serve_it: \
             it takes root to restore for another user"
        );
        return;
    }
    let server = ServerProcess::start(cwd.path(), &[]);
    let backup = cwd.path().join("b.db");
    let out = tidings(cwd.path(), &["backup", "--to", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server);

    // The service's data directory, owned by its user, as systemd's StateDirectory makes it.
    const SERVICE: u32 = 54_321;
    std::fs::set_permissions(cwd.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let svc = cwd.path().join("svc");
    std::fs::create_dir(&svc).unwrap();
    std::os::unix::fs::chown(&svc, Some(SERVICE), Some(SERVICE)).unwrap();
    let out = tidings(
        cwd.path(),
        &[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--data-dir",
            "svc",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = std::fs::metadata(svc.join("tidings.db")).unwrap();
    assert_eq!((db.uid(), db.gid()), (SERVICE, SERVICE));
    assert_eq!(db.mode() & 0o777, 0o600);

    // The service's user serves it, though root made the lock file.
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", "svc"])
        .current_dir(cwd.path())
        .env("TIDINGS_LOG", "warn")
        // A metrics port of its own: another server on the machine may hold the default.
        .env("TIDINGS_METRICS_LISTEN", "127.0.0.1:0")
        .uid(SERVICE)
        .gid(SERVICE)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut listening = false;
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        if line.starts_with("tidings listening on ") {
            listening = true;
            break;
        }
        line.clear();
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        listening,
        "the service's user serves the restored database: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
