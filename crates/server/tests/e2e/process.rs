//! The `tidings` binary as a user runs it: serve with defaults, signals, the CLI tools, and a
//! crash (SIGKILL) in the middle of a stream of sends.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tidings_client::{Client, ClientConfig, Event, Outgoing, Sent, Status};
use tidings_proto::Code;

use crate::util::*;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_tidings");

pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) url: String,
    pub(crate) stdout_lines: Vec<String>,
}

impl ServerProcess {
    /// Starts `tidings serve` in `cwd` on a free port and waits for its listening line.
    pub(crate) fn start(cwd: &Path, extra: &[&str]) -> ServerProcess {
        ServerProcess::start_command(Command::new(BIN), "127.0.0.1:0", cwd, extra)
    }

    /// [`ServerProcess::start`] in network namespace `netns`, listening on `listen`.
    pub(crate) fn start_in_netns(
        netns: &str,
        listen: &str,
        cwd: &Path,
        extra: &[&str],
    ) -> ServerProcess {
        let mut ip = Command::new("ip");
        ip.args(["netns", "exec", netns, BIN]);
        ServerProcess::start_command(ip, listen, cwd, extra)
    }

    /// [`ServerProcess::start`] with the process's open-file limit lowered to `files` (by the
    /// shell's `ulimit`, which keeps the tests free of unsafe code).
    pub(crate) fn start_with_file_limit(cwd: &Path, files: u32, extra: &[&str]) -> ServerProcess {
        let mut shell = Command::new("sh");
        shell.args([
            "-c",
            &format!("ulimit -n {files} && exec \"$0\" \"$@\""),
            BIN,
        ]);
        ServerProcess::start_command(shell, "127.0.0.1:0", cwd, extra)
    }

    fn start_command(
        mut command: Command,
        listen: &str,
        cwd: &Path,
        extra: &[&str],
    ) -> ServerProcess {
        let child = command
            .arg("serve")
            .args(["--listen", listen])
            // Tests send faster than a person.
            .args(["--send-rate", "0"])
            .args(extra)
            .current_dir(cwd)
            .env("TIDINGS_LOG", "warn")
            // A metrics port of its own (a flag in `extra` wins over it).
            .env("TIDINGS_METRICS_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Owned from here on, so a failed start still kills and reaps the child.
        let mut server = ServerProcess {
            child,
            url: String::new(),
            stdout_lines: Vec::new(),
        };
        let mut reader = BufReader::new(server.child.stdout.take().unwrap());
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).unwrap();
            assert!(n > 0, "server exited early: {:?}", server.stdout_lines);
            let line = line.trim_end().to_string();
            let url = line
                .strip_prefix("tidings listening on ")
                .map(str::to_string);
            server.stdout_lines.push(line);
            if let Some(url) = url {
                server.url = url;
                // Keep draining stdout so the server never blocks on a full pipe.
                std::thread::spawn(move || for _ in reader.lines() {});
                return server;
            }
        }
    }

    /// The metrics URL the server printed (`metrics on URL`), if metrics are on.
    pub(crate) fn metrics_url(&self) -> Option<String> {
        self.stdout_lines
            .iter()
            .find_map(|l| l.strip_prefix("metrics on ").map(str::to_string))
    }

    /// How many of the server's threads have the name `name`.
    pub(crate) fn threads_named(&self, name: &str) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .unwrap()
            .filter(|t| {
                let comm = t.as_ref().unwrap().path().join("comm");
                std::fs::read_to_string(comm).is_ok_and(|c| c.trim_end() == name)
            })
            .count()
    }

    pub(crate) fn signal(&self, signal: i32) {
        send_signal(self.child.id(), signal);
    }

    pub(crate) fn wait(&mut self) -> std::process::ExitStatus {
        for _ in 0..(WAIT.as_millis() / 20) {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            // The back-off between checks: the loop ends when the process has exited.
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not exit");
    }
}

/// Signals a process through the `kill` command, which keeps the tests free of unsafe code.
fn send_signal(pid: u32, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn token(data_dir: &Path, user: &str) -> String {
    token_with(data_dir, user, &[])
}

/// A token `tidings token` mints for `user` from `data_dir`, with more of its arguments.
pub(crate) fn token_with(data_dir: &Path, user: &str, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["token", user])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<_> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "only the token is printed: {stdout:?}");
    lines[0].to_string()
}

fn client_config(url: &str, token: String) -> ClientConfig {
    let mut c = ClientConfig::new(url, token);
    c.reconnect_delays = vec![Duration::from_millis(50)];
    c
}

#[tokio::test]
async fn serve_with_no_config_uses_data_and_sigterm_shuts_down_cleanly() {
    let cwd = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(cwd.path(), &[]);
    assert!(
        server.stdout_lines.iter().any(|l| l.contains("appKey:")),
        "credentials printed at first start"
    );
    assert!(cwd.path().join("data/credentials.toml").exists());
    assert!(cwd.path().join("data/tidings.db").exists());
    let t = token(&cwd.path().join("data"), "alice");
    let (client, mut events) = Client::connect(client_config(&server.url, t))
        .await
        .unwrap();
    client
        .send(Outgoing::text("bob", "before shutdown"))
        .await
        .unwrap();
    server.signal(15);
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await.unwrap() {
            Some(Event::Status(Status::Disconnected { code, .. })) => {
                assert_eq!(code, Code::ServerShutdown.as_u32());
                break;
            }
            Some(_) => continue,
            None => panic!("stream ended"),
        }
    }
    assert_eq!(server.wait().code(), Some(0), "SIGTERM exits 0");
    client.close().await;

    // The second start prints no credentials and keeps the data.
    let server = ServerProcess::start(cwd.path(), &[]);
    assert!(!server.stdout_lines.iter().any(|l| l.contains("appKey:")));
    let t = token(&cwd.path().join("data"), "bob");
    let (_bob, mut events) = Client::connect(client_config(&server.url, t))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut events).await.content,
        r#"{"text":"before shutdown"}"#
    );
    server.signal(2);
}

/// `--worker-threads` sizes the runtime; with one thread the connections' writers share it
/// (no writers' runtime), and a message still goes from one client to another.
#[tokio::test]
async fn worker_threads_size_the_runtime_and_one_thread_serves_alone() {
    let cwd = tempfile::tempdir().unwrap();
    let refused = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--worker-threads", "0"])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("worker_threads must be greater than 0"),
        "{stderr}"
    );

    for (threads, writers) in [("3", 3), ("1", 0)] {
        let cwd = tempfile::tempdir().unwrap();
        let server = ServerProcess::start(cwd.path(), &["--worker-threads", threads]);
        let data = cwd.path().join("data");
        let (alice, _alice_events) =
            Client::connect(client_config(&server.url, token(&data, "alice")))
                .await
                .unwrap();
        let (_bob, mut bob_events) =
            Client::connect(client_config(&server.url, token(&data, "bob")))
                .await
                .unwrap();
        let text = format!("on {threads} threads");
        alice.send(Outgoing::text("bob", &text)).await.unwrap();
        assert_eq!(
            next_message(&mut bob_events).await.content,
            serde_json::json!({ "text": text }).to_string()
        );
        // Counted once connections are served (the writers' runtime starts with the listener).
        assert_eq!(server.threads_named("tidings-egress"), writers, "{threads}");
        assert!(server.threads_named("tokio-rt-worker") >= threads.parse().unwrap());
    }
}

#[tokio::test]
async fn send_and_listen_in_two_terminals() {
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(cwd.path(), &[]);
    let data = cwd.path().join("data");
    let mut listen = Command::new(BIN)
        .args([
            "listen",
            "--server",
            &server.url,
            "--token",
            &token(&data, "bob"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let alice = token(&data, "alice");
    let sent: Vec<serde_json::Value> = ["first", "second"]
        .iter()
        .map(|text| {
            let out = Command::new(BIN)
                .args([
                    "send",
                    "--server",
                    &server.url,
                    "--token",
                    &alice,
                    "--to",
                    "bob",
                    text,
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let mut reader = BufReader::new(listen.stdout.take().unwrap());
    for expected in &sent {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let got: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(got["uid"], expected["uid"]);
        assert_eq!(got["senderId"], "alice");
        // The content is the JSON object it is, not that object written as a string.
        assert!(got["content"]["text"].is_string(), "{got}");
    }
    listen.kill().unwrap();
    listen.wait().unwrap();
    // The conversation list as Bob sees it: one conversation, its newest message, and both
    // messages unread (acknowledging a delivery is not reading it).
    let out = Command::new(BIN)
        .args([
            "conversations",
            "--server",
            &server.url,
            "--token",
            &token(&data, "bob"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["targetId"], "alice");
    assert_eq!(lines[0]["unread"], 2);
    assert_eq!(lines[0]["latest"]["uid"], sent[1]["uid"]);
    assert_eq!(lines[0]["latest"]["content"]["text"], "second");
}

/// Reads lines from a `listen` until one satisfies `check`.
fn line_where(
    reader: &mut BufReader<std::process::ChildStdout>,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "listen ended");
        let got: serde_json::Value = serde_json::from_str(&line).unwrap();
        if check(&got) {
            return got;
        }
    }
}

#[tokio::test]
async fn send_and_listen_encrypted_end_to_end_keep_their_state_in_the_state_dir() {
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(cwd.path(), &[]);
    let data = cwd.path().join("data");
    let states = cwd.path().join("states");
    let mut listen = Command::new(BIN)
        .args([
            "listen",
            "--e2ee",
            "--device",
            "desk",
            "--server",
            &server.url,
        ])
        .args(["--token", &token(&data, "bob")])
        .env("TIDINGS_STATE_DIR", &states)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(listen.stdout.take().unwrap());
    // Its first line comes once its key packages are published.
    let first = line_where(&mut reader, |_| true);
    assert_eq!(first["e2ee"]["identity"], "bob:desk");
    let number = first["e2ee"]["safetyNumber"].as_str().unwrap().to_string();
    assert_eq!(number.len(), 35, "{number}");
    let alice = token(&data, "alice");
    let send = |text: &str| {
        let out = Command::new(BIN)
            .args(["send", "--e2ee", "--server", &server.url, "--token", &alice])
            .args(["--state-dir", states.to_str().unwrap(), "--to", "bob", text])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first_sent = send("sealed one");
    let joined = line_where(&mut reader, |v| v["e2ee"]["joined"].is_object());
    let members = joined["e2ee"]["joined"]["members"].as_array().unwrap();
    assert!(members.iter().any(|m| m["safetyNumber"] == number.as_str()));
    let got = line_where(&mut reader, |v| v["encrypted"] == true);
    assert_eq!(
        (&got["uid"], &got["content"]["text"]),
        (&first_sent["uid"], &"sealed one".into())
    );
    assert_eq!(got["senderDevice"], "cli-send");
    // A second run of `send` is the same device, from its state: no new group.
    let second = send("sealed two");
    let got = line_where(&mut reader, |v| v["encrypted"] == true);
    assert_eq!(
        (&got["uid"], &got["content"]["text"]),
        (&second["uid"], &"sealed two".into())
    );
    assert_eq!(
        second["seq"].as_u64(),
        Some(first_sent["seq"].as_u64().unwrap() + 1)
    );
    listen.kill().unwrap();
    listen.wait().unwrap();
    // The state files are the owner's alone.
    use std::os::unix::fs::PermissionsExt as _;
    for file in ["alice.cli-send.mls", "bob.desk.mls"] {
        let mode = std::fs::metadata(states.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

#[tokio::test]
async fn listen_with_a_refused_token_exits_non_zero_with_the_servers_text() {
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(cwd.path(), &[]);
    let out = Command::new(BIN)
        .args(["listen", "--server", &server.url, "--token", "forged"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("31004") && stderr.contains(Code::TokenInvalid.text()),
        "{stderr}"
    );
}

#[tokio::test]
async fn send_to_a_group_goes_to_the_group() {
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(cwd.path(), &[]);
    let alice = token(&cwd.path().join("data"), "alice");
    let send = |args: &[&str]| {
        let mut all = vec!["send", "--server", &server.url, "--token", &alice];
        all.extend_from_slice(args);
        Command::new(BIN).args(all).output().unwrap()
    };
    // A group the user is not in (here: none) is refused with the group codes, so the message
    // was addressed to a group, not to a user of that name.
    let out = send(&["--group", "nosuch", "hello"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("20407") && stderr.contains(Code::GroupNotFound.text()),
        "{stderr}"
    );
    let out = send(&["--to", "nosuch", "hello"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = send(&["--to", "bob", "--group", "g", "hello"]);
    assert!(
        !out.status.success(),
        "--to and --group together are refused"
    );
}

#[tokio::test]
async fn send_and_listen_in_a_chatroom() {
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(cwd.path(), &[]);
    let data = cwd.path().join("data");
    let mut listen = Command::new(BIN)
        .args(["listen", "--server", &server.url, "--token"])
        .arg(token(&data, "bob"))
        .args(["--chatroom", "lobby"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(listen.stdout.take().unwrap());
    let mut next_line = || {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        serde_json::from_str::<serde_json::Value>(&line).unwrap()
    };
    // Bob is in the room once his own join is noticed.
    let joined = next_line();
    assert_eq!(joined["chatroomNotice"]["operation"], "join", "{joined}");
    assert_eq!(joined["chatroomNotice"]["userIds"][0], "bob");
    let out = Command::new(BIN)
        .args(["send", "--server", &server.url, "--token"])
        .arg(token(&data, "alice"))
        .args(["--chatroom", "lobby", "hello, room"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // A room's message is a line of the same shape as any message, marked as the room's.
    let message = loop {
        let line = next_line();
        if line["chatroom"] == true {
            break line;
        }
    };
    assert_eq!(message["uid"], sent["uid"]);
    assert_eq!(message["senderId"], "alice");
    assert_eq!(message["targetId"], "lobby");
    assert_eq!(
        message["content"],
        serde_json::json!({"text": "hello, room"})
    );
    listen.kill().unwrap();
    listen.wait().unwrap();
}

/// Tasks that send from one client, one message after another each, until stopped, and the
/// sends the server acknowledged.
struct Senders {
    acked: Arc<std::sync::Mutex<Vec<Sent>>>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Senders {
    /// Alice's client on the server at `url` (a 2 s send timeout, so sends end once the server
    /// is gone), its events, and `n` tasks on it, task `w` sending `message(w, i)` for i = 0, 1, …
    async fn connect(
        url: &str,
        data: &Path,
        n: usize,
        message: fn(usize, u64) -> Outgoing,
    ) -> (Arc<Client>, tidings_client::Events, Senders) {
        let mut config = client_config(url, token(data, "alice"));
        config.send_timeout = Duration::from_secs(2);
        let (alice, events) = Client::connect(config).await.unwrap();
        let alice = Arc::new(alice);
        (alice.clone(), events, Senders::start(alice, n, message))
    }

    fn start(client: Arc<Client>, n: usize, message: fn(usize, u64) -> Outgoing) -> Senders {
        let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..n)
            .map(|w| {
                let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(sent) = client.send(message(w, i)).await {
                            acked.lock().unwrap().push(sent);
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        Senders {
            acked,
            stop,
            workers,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Stops the tasks once their sends in flight end; the acknowledged sends.
    async fn stop(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}

/// SIGKILL the server while a sender has many sends in flight; restart on the same data dir;
/// every send that got a PUBACK is stored exactly once and the conversation's seqs are gapless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_no_acknowledged_message_and_breaks_no_sequence() {
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("data");
    let mut server = ServerProcess::start(cwd.path(), &[]);
    let (alice, _events, senders) = Senders::connect(&server.url, &data, 8, |w, i| {
        Outgoing::text("bob", &format!("w{w}-{i}"))
    })
    .await;
    eventually("some sends are acknowledged", || {
        let n = senders.acked();
        async move { n >= 200 }
    })
    .await;
    server.signal(9);
    server.wait();
    let acked = senders.stop().await;
    alice.close().await;
    assert!(acked.len() >= 200);

    let server = ServerProcess::start(cwd.path(), &[]);
    let mut config = client_config(&server.url, token(&data, "bob"));
    config.initial_cursor = Some(0);
    config.sync_page = 500;
    let (_bob, mut events) = Client::connect(config).await.unwrap();
    // Read everything the store has: at least the acknowledged sends.
    let mut stored = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(1500), events.recv()).await {
            Ok(Some(Event::Message(m))) => stored.push(m),
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended"),
            Err(_) => break,
        }
    }
    holds_each_once(&stored, &acked, "bob");
}

/// `stored`, a conversation read from its start as `reader` got it, holds gapless seqs, no
/// message twice, and every send of `acked` with its seq.
fn holds_each_once(stored: &[tidings_client::Message], acked: &[Sent], reader: &str) {
    let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "{reader}: gapless seqs"
    );
    let uids: std::collections::HashMap<&str, u64> =
        stored.iter().map(|m| (m.uid.as_str(), m.seq)).collect();
    assert_eq!(
        uids.len(),
        stored.len(),
        "{reader}: no message stored twice"
    );
    for a in acked {
        assert_eq!(
            uids.get(a.uid.as_str()),
            Some(&a.seq),
            "{reader}: acknowledged send {} is stored with its seq",
            a.uid
        );
    }
}

/// A large group's messages stage their members' inbox entries, which the store merges into
/// blocks while it has nothing else to do: a crash while both are under way loses no
/// acknowledged message from a member's inbox and repeats none.
#[tokio::test]
async fn a_crash_amid_a_large_groups_merges_loses_and_repeats_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("data");
    let db = data.join(tidings_server::DB_FILE);
    let mut server = ServerProcess::start(cwd.path(), &[]);
    // More members than the store stages entries for (64).
    let members: Vec<String> = (0..70).map(|i| format!("m{i:02}")).collect();
    let everyone: Vec<&str> = std::iter::once("alice")
        .chain(members.iter().map(String::as_str))
        .collect();
    let (status, body) = post_signed(
        &data,
        &server.url,
        "/api/v1/groups",
        serde_json::json!({ "groupId": "crowd", "ownerId": "alice", "memberIds": everyone }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (alice, _events, senders) = Senders::connect(&server.url, &data, 4, |w, i| {
        Outgoing::group_text("crowd", &format!("w{w}-{i}"))
    })
    .await;
    // Killed once some entries are merged into blocks while others are still staged.
    let blocks_and_staged = || {
        let c =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let count = |table: &str| -> i64 {
            c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        count("inbox_blocks") > 0 && count("inbox_pending") > 0
    };
    eventually("entries are both merged and staged", || {
        let ready = senders.acked() >= 200 && blocks_and_staged();
        async move { ready }
    })
    .await;
    server.signal(9);
    server.wait();
    let acked = senders.stop().await;
    alice.close().await;

    let server = ServerProcess::start(cwd.path(), &[]);
    // A marker after everything, so each reader knows when it has read all there is.
    let (alice, _events) = Client::connect(client_config(&server.url, token(&data, "alice")))
        .await
        .unwrap();
    let marker = alice
        .send(Outgoing::group_text("crowd", "marker"))
        .await
        .unwrap();
    for member in ["m00", "m35", "m69"] {
        let mut config = client_config(&server.url, token(&data, member));
        config.initial_cursor = Some(0);
        config.sync_page = 500;
        let (_client, mut events) = Client::connect(config).await.unwrap();
        let mut stored = Vec::new();
        loop {
            let m = next_message(&mut events).await;
            let last = m.uid == marker.uid;
            stored.push(m);
            if last {
                break;
            }
        }
        let inbox: Vec<u64> = stored.iter().map(|m| m.inbox_seq).collect();
        assert_eq!(
            inbox,
            (1..=stored.len() as u64).collect::<Vec<_>>(),
            "{member}: a gapless inbox"
        );
        // The group's seqs: its creation, then each message once.
        holds_each_once(&stored, &acked, member);
    }
}

/// A short run of every bench scenario: the tool works end to end and finds no loss.
#[test]
fn bench_smoke_runs_of_every_scenario_find_no_loss() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("records.jsonl");
    let runs: [&[&str]; 7] = [
        // As the metrics' cost is measured: the spawned server with metrics off.
        &[
            "pairs",
            "--pairs",
            "3",
            "--window",
            "4",
            "--secs",
            "1",
            "--relay",
            "--serve-arg=--metrics-listen=off",
        ],
        &["rate", "--rate", "300", "--pairs", "3", "--secs", "1"],
        &[
            "connections",
            "--n",
            "40",
            "--hold-secs",
            "1",
            "--sources",
            "4",
        ],
        &["sync", "--messages", "400", "--page", "50"],
        &[
            "group",
            "--members",
            "20",
            "--senders",
            "3",
            "--rate",
            "60",
            "--secs",
            "1",
        ],
        &[
            "chatroom",
            "--members",
            "20",
            "--senders",
            "2",
            "--rate",
            "50",
            "--secs",
            "2",
            "--relay",
        ],
        &[
            "chatroom",
            "--members",
            "20",
            "--senders",
            "2",
            "--rate",
            "50",
            "--secs",
            "1",
            "--relay-only",
            "--raw",
        ],
    ];
    for args in runs {
        let out = Command::new(BIN)
            .arg("bench")
            .args(args)
            .args(["--spawn", "--json"])
            .arg(&json)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("reproduce"), "{stdout}");
    }
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let scenarios: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["scenario"].as_str().unwrap(),
                r["target"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        scenarios,
        vec![
            ("pairs", "relay"),
            ("pairs", "tidings"),
            ("rate", "tidings"),
            ("connections", "tidings"),
            ("sync", "tidings"),
            ("group", "tidings"),
            ("chatroom", "relay"),
            ("chatroom", "tidings"),
            ("chatroom", "relay-raw"),
        ]
    );
    for r in &records {
        assert!(r["command"].as_str().unwrap().starts_with("tidings bench "));
        assert!(r["revision"].is_string());
        if let Some(v) = r.get("verdict").filter(|v| !v.is_null()) {
            assert_eq!(v["lost"], 0, "{r}");
            assert_eq!(v["duplicated"], 0, "{r}");
            assert_eq!(v["outOfOrder"], 0, "{r}");
            assert!(v["acked"].as_u64().unwrap() > 0, "{r}");
        }
    }
    let figure = |i: usize, k: &str| records[i]["figures"][k].as_f64().unwrap();
    assert_eq!(figure(3, "opened"), 40.0);
    assert_eq!(figure(3, "failed"), 0.0);
    assert_eq!(figure(4, "synced"), 400.0);
    // 60 messages, each to the 19 members other than its sender.
    assert_eq!(figure(5, "expected"), 60.0 * 19.0);
    assert_eq!(figure(5, "received"), 60.0 * 19.0);
    // 100 messages, each to the 19 members other than its sender; a light room drops nothing.
    assert_eq!(figure(6, "expected"), 100.0 * 19.0);
    assert_eq!(figure(6, "received"), 100.0 * 19.0);
    assert_eq!(figure(6, "gapMarkers"), 0.0);
    assert!(records[6].get("failures").is_none(), "{}", records[6]);
    assert!(records[1]["figures"]["relayRatio"].as_f64().unwrap() > 0.0);
    let svg = dir.path().join("chart.svg");
    let out = Command::new(BIN)
        .args(["bench", "chart", "--out"])
        .arg(&svg)
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));
}

#[test]
fn serve_takes_its_settings_from_the_environment() {
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("elsewhere");
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("TIDINGS_LISTEN", "127.0.0.1:0")
        .env("TIDINGS_METRICS_LISTEN", "127.0.0.1:0")
        .env("TIDINGS_DATA_DIR", &data)
        .env("TIDINGS_LOG", "warn")
        .current_dir(cwd.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut listening = None;
    let mut metrics = None;
    for _ in 0..10 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(url) = line.trim().strip_prefix("metrics on ") {
            metrics = Some(url.to_string());
        }
        if let Some(url) = line.trim().strip_prefix("tidings listening on ") {
            listening = Some(url.to_string());
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let url = listening.expect("a listening line");
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":9091"),
        "{url}"
    );
    let metrics = metrics.expect("a metrics line before the listening line");
    assert!(
        metrics.starts_with("http://127.0.0.1:") && !metrics.ends_with(":9092/metrics"),
        "{metrics}"
    );
    assert!(
        data.join("credentials.toml").exists(),
        "the data directory came from the environment"
    );
    assert!(!cwd.path().join("data").exists());
}

/// `tidings token` records the user in the database of a server that may be running on it (as
/// in the README's tour). It must write nothing else: a second writer on the database (its
/// search-index catch-up) would index the server's newest messages behind its back, and the
/// server's own indexing of them would then fail, failing the next write that flushes the
/// index (here a recall) with 31011.
#[tokio::test]
async fn minting_a_token_beside_a_running_server_writes_only_the_users_record() {
    let server = TestServer::start().await;
    let (alice, _events) = server.client("alice", "phone").await;
    let sent = alice.send(Outgoing::text("bob", "findable")).await.unwrap();
    // At once, well within the server's index delay (200 ms).
    tidings_server::cli::mint_token(server.dir.path(), "carol", None)
        .await
        .unwrap();
    let recalled = alice.recall(1, "bob", sent.seq).await.unwrap();
    assert!(recalled.recalled);
    let found = alice.search("findable", None, 0, None).await.unwrap();
    assert!(found.messages.is_empty(), "a recalled message is not found");

    // What it reads is the user's token version: after a revocation, a token minted offline
    // carries the new one and is accepted.
    let (status, _) = api(
        &server,
        "POST",
        "/api/v1/users/carol/revoke",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    let token = tidings_server::cli::mint_token(server.dir.path(), "carol", None)
        .await
        .unwrap();
    let (carol, _events) = Client::connect(client_config(&server.url(), token))
        .await
        .unwrap();
    assert_eq!(carol.user_id(), "carol");
}
