//! Partitions with real network isolation: two nodes, each in a network namespace of its own,
//! each on a NATS server of its own (the two NATS servers clustered by a route), both on one
//! PostgreSQL. Every link between them is a veth pair the test brings down to cut and up to heal:
//!
//! ```text
//!  test (host) ──front──▶ node a ──nats──▶ NATS a ──route──▶ NATS b ◀──nats── node b ◀──front── test
//!  PostgreSQL  ◀───pg──── node a                                      node b ────pg───▶ PostgreSQL
//! ```
//!
//! PostgreSQL listens on the host's loopback; the test forwards each node's `pg` link to it.
//! While a sender on each node writes to a user on each node, each scenario cuts a link (or
//! several, one after another), heals it under load, and then checks every message a sender had
//! acknowledged: in its recipient's inbox (read from the database) exactly once, inbox seqs
//! without a gap, given to the recipient's connected device, and synced by a new device.
//!
//! Needs root, `ip netns`, `nats-server` and PostgreSQL: runs when `TIDINGS_TEST_NETNS=1` and
//! `TIDINGS_TEST_POSTGRES_URL` are set (`.ci/run` sets both where it can), and says SKIPPED
//! otherwise. Each scenario prints one `PARTITION` line of figures.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tidings_client::{Client, ClientConfig, Event, Events, Message, Outgoing, Sent, Status};
use tidings_proto::Code;
use tidings_store_postgres::testing::{TestDatabase, server_url};

use crate::process::ServerProcess;
use crate::util::eventually_within;

/// The variable that lets these tests make network namespaces.
const GATE: &str = "TIDINGS_TEST_NETNS";
/// How long a cut or a heal may take to be noticed, and a flow to move on.
const SETTLE: Duration = Duration::from_secs(40);
/// Acknowledged messages each flow must add in each phase (before, during and after a cut).
const STEP: usize = 25;

// The links, numbered into their subnets `10.<scenario + 80>.<link>.0/30`; the side named
// first in each gets `.1`.
const FRONT_A: u8 = 0;
const FRONT_B: u8 = 1;
const PG_A: u8 = 2;
const PG_B: u8 = 3;
const NATS_A: u8 = 4;
const NATS_B: u8 = 5;
const ROUTE: u8 = 6;

/// Runs `ip` with `args`; panics with its error output when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces and links of one scenario. Dropping it deletes them (and the veths in them).
struct Net {
    tag: String,
    subnet: u8,
    /// Each link's two ends: (namespace or `None` for the host, interface).
    links: HashMap<u8, [(Option<String>, String); 2]>,
}

impl Net {
    fn new(scenario: u8) -> Net {
        let tag = format!("tdp{scenario}");
        // What a run that was killed left behind.
        for ns in ["a", "b", "na", "nb"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("{tag}{ns}")])
                .stderr(Stdio::null())
                .status();
        }
        for link in 0..7 {
            let _ = Command::new("ip")
                .args(["link", "del", &format!("{tag}l{link}x")])
                .stderr(Stdio::null())
                .status();
        }
        let mut net = Net {
            tag,
            subnet: 80 + scenario,
            links: HashMap::new(),
        };
        for ns in ["a", "b", "na", "nb"] {
            let name = net.ns(ns);
            ip(&["netns", "add", &name]);
            ip(&["-n", &name, "link", "set", "lo", "up"]);
        }
        net.link(FRONT_A, None, Some("a"));
        net.link(FRONT_B, None, Some("b"));
        net.link(PG_A, None, Some("a"));
        net.link(PG_B, None, Some("b"));
        net.link(NATS_A, Some("a"), Some("na"));
        net.link(NATS_B, Some("b"), Some("nb"));
        net.link(ROUTE, Some("na"), Some("nb"));
        net
    }

    fn ns(&self, short: &str) -> String {
        format!("{}{short}", self.tag)
    }

    /// The address of end `side` (1 or 2) of `link`.
    fn addr(&self, link: u8, side: u8) -> String {
        format!("10.{}.{link}.{side}", self.subnet)
    }

    fn link(&mut self, link: u8, first: Option<&str>, second: Option<&str>) {
        let names = [
            format!("{}l{link}x", self.tag),
            format!("{}l{link}y", self.tag),
        ];
        ip(&[
            "link", "add", &names[0], "type", "veth", "peer", "name", &names[1],
        ]);
        let mut ends = Vec::new();
        for (i, (side, name)) in [first, second].into_iter().zip(&names).enumerate() {
            let ns = side.map(|s| self.ns(s));
            let addr = format!("{}/30", self.addr(link, i as u8 + 1));
            match &ns {
                Some(ns) => {
                    ip(&["link", "set", name, "netns", ns]);
                    ip(&["-n", ns, "addr", "add", &addr, "dev", name]);
                    ip(&["-n", ns, "link", "set", name, "up"]);
                }
                None => {
                    ip(&["addr", "add", &addr, "dev", name]);
                    ip(&["link", "set", name, "up"]);
                }
            }
            ends.push((ns, name.clone()));
        }
        self.links.insert(link, [ends[0].clone(), ends[1].clone()]);
    }

    /// Brings the first end of `link` down (`up = false`) or up: a cut the far end only sees
    /// as silence.
    fn set(&self, link: u8, up: bool) {
        let (ns, name) = &self.links[&link][0];
        let state = if up { "up" } else { "down" };
        match ns {
            Some(ns) => ip(&["-n", ns, "link", "set", name, state]),
            None => ip(&["link", "set", name, state]),
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in ["a", "b", "na", "nb"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(ns)])
                .status();
        }
    }
}

/// Forwards connections to `listen` (an address on the host's end of a node's `pg` link) to
/// PostgreSQL at `upstream`.
async fn forward_postgres(listen: String, upstream: String) {
    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
}

/// A NATS server in namespace `ns`, clustered with the one at `peer`.
struct NatsServer {
    child: Child,
}

impl NatsServer {
    fn start(dir: &std::path::Path, ns: &str, name: &str, peer: &str) -> NatsServer {
        let conf = dir.join(format!("{name}.conf"));
        // Pings every second, two unanswered end a connection: a cut route is found in seconds.
        std::fs::write(
            &conf,
            format!(
                "server_name: {name}\nlisten: 0.0.0.0:4222\nhttp_port: 8222\nping_interval: \"1s\"\nping_max: 2\nwrite_deadline: \"2s\"\n\
                 cluster {{\n  name: tidings\n  listen: 0.0.0.0:6222\n  routes: [\"nats://{peer}:6222\"]\n}}\n"
            ),
        )
        .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "nats-server", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        NatsServer { child }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `host:port` of a `postgres://` URL (port 5432 when it names none).
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest);
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5432")
    }
}

/// How many routes the NATS server in namespace `ns` has to other servers (from its monitoring
/// port), if it answers.
fn nats_routes(ns: &str) -> Option<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "bash", "-c"])
        .arg(
            "exec 3<>/dev/tcp/127.0.0.1/8222 && printf 'GET /routez HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3",
        )
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let body = text.split_once("\r\n\r\n")?.1;
    serde_json::from_str::<Value>(body).ok()?["num_routes"].as_u64()
}

/// Whether something in namespace `ns` accepts connections on `addr:port`.
fn listening(ns: &str, addr: &str, port: u16) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{addr}/{port}"))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The two nodes and what they run on.
struct Rig {
    name: &'static str,
    // Dropped in this order: nodes, NATS servers, then the namespaces.
    nodes: Vec<ServerProcess>,
    _nats: Vec<NatsServer>,
    net: Net,
    db: Option<TestDatabase>,
    dirs: Vec<tempfile::TempDir>,
}

impl Rig {
    async fn start(scenario: u8, name: &'static str) -> Option<Rig> {
        let skip = |why: &str| {
            let _ = writeln!(std::io::stderr(), "SKIPPED {name}: {why}");
            None
        };
        if std::env::var(GATE).ok().as_deref() != Some("1") {
            return skip(&format!(
                "set {GATE}=1 (needs root, `ip netns` and nats-server) to cut real links"
            ));
        }
        let Some(pg) = server_url() else {
            return skip("set TIDINGS_TEST_POSTGRES_URL: the nodes share a database");
        };
        let net = Net::new(scenario);
        let db = TestDatabase::create(&pg).await.expect("a test database");
        // `postgres://user@host:port/database`: the forwarders go to host:port.
        let upstream = authority(&pg);
        for link in [PG_A, PG_B] {
            forward_postgres(format!("{}:5432", net.addr(link, 1)), upstream.clone()).await;
        }
        let conf = tempfile::tempdir().unwrap();
        let nats = vec![
            NatsServer::start(conf.path(), &net.ns("na"), "na", &net.addr(ROUTE, 2)),
            NatsServer::start(conf.path(), &net.ns("nb"), "nb", &net.addr(ROUTE, 1)),
        ];
        for (ns, link) in [("na", NATS_A), ("nb", NATS_B)] {
            let (ns, addr) = (net.ns(ns), net.addr(link, 2));
            eventually_within("NATS listens", SETTLE, || async {
                listening(&ns, &addr, 4222)
            })
            .await;
        }
        let db_name = db.url.rsplit_once('/').unwrap().1.to_string();
        let mut rig = Rig {
            name,
            nodes: Vec::new(),
            _nats: nats,
            db: None,
            dirs: vec![conf],
            net,
        };
        for (node, front, pg, nats) in [("a", FRONT_A, PG_A, NATS_A), ("b", FRONT_B, PG_B, NATS_B)]
        {
            let dir = tempfile::tempdir().unwrap();
            if let Some(first) = rig.dirs.get(1) {
                // Every node of a cluster has the same app credentials.
                std::fs::create_dir_all(dir.path().join("data")).unwrap();
                std::fs::copy(
                    first.path().join("data/credentials.toml"),
                    dir.path().join("data/credentials.toml"),
                )
                .unwrap();
            }
            let store = format!("postgres://postgres@{}:5432/{db_name}", rig.net.addr(pg, 1));
            let nats = format!("nats://{}:4222", rig.net.addr(nats, 2));
            let args = [
                "--store",
                &store,
                "--nats",
                &nats,
                "--cluster",
                "partition",
                "--node-id",
                node,
                "--alive-ms",
                "250",
            ];
            let listen = format!("{}:0", rig.net.addr(front, 2));
            rig.nodes.push(ServerProcess::start_in_netns(
                &rig.net.ns(node),
                &listen,
                dir.path(),
                &args,
            ));
            rig.dirs.push(dir);
        }
        rig.db = Some(db);
        for node in 0..2 {
            rig.wait_nodes_listed(node, 2).await;
        }
        Some(rig)
    }

    /// Stops the nodes and drops the test's database.
    async fn finish(mut self) {
        self.nodes.clear();
        if let Some(db) = self.db.take() {
            db.drop().await.expect("drop the test database");
        }
    }

    fn url(&self, node: usize) -> &str {
        &self.nodes[node].url
    }

    fn db_url(&self) -> &str {
        &self.db.as_ref().unwrap().url
    }

    /// A client of `user` (device `device`) on node `node`, with the other node to fall back
    /// on.
    async fn client(&self, node: usize, user: &str, device: &str) -> (Client, Events) {
        let token = crate::process::token_with(
            &self.dirs[1].path().join("data"),
            user,
            &["--store", self.db_url()],
        );
        let mut c = ClientConfig::new(self.url(node), token);
        c.device_id = device.into();
        c.other_servers = vec![self.url(1 - node).to_string()];
        c.reconnect_delays = vec![Duration::from_millis(100)];
        c.send_timeout = Duration::from_secs(60);
        Client::connect(c).await.unwrap()
    }

    async fn get(&self, node: usize, path: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.url(node));
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(3)))
                .build()
                .into();
            match agent.get(&url).call() {
                Ok(mut r) => (
                    r.status().as_u16(),
                    r.body_mut().read_json().unwrap_or(Value::Null),
                ),
                Err(_) => (0, Value::Null),
            }
        })
        .await
        .unwrap()
    }

    /// Waits until node `node` lists `n` nodes (itself included) as live.
    async fn wait_nodes_listed(&self, node: usize, n: usize) {
        eventually_within(&format!("node {node} lists {n} nodes"), SETTLE, || async {
            let (status, navi) = self.get(node, "/navi").await;
            status == 200 && navi["nodes"].as_array().is_some_and(|a| a.len() == n)
        })
        .await;
    }

    /// Waits until both NATS servers have a route to the other (`routed`), or none.
    async fn wait_routes(&self, routed: bool) {
        for ns in ["na", "nb"] {
            let ns = self.net.ns(ns);
            eventually_within(&format!("{ns} routed: {routed}"), SETTLE, || async {
                nats_routes(&ns).is_some_and(|n| (n > 0) == routed)
            })
            .await;
        }
    }

    /// Waits until node `node`'s `/readyz` answers `part` with `value`.
    async fn wait_ready_part(&self, node: usize, part: &str, value: &str) {
        eventually_within(
            &format!("node {node}'s readyz says {part}: {value}"),
            SETTLE,
            || async { self.get(node, "/readyz").await.1[part] == value },
        )
        .await;
    }
}

/// One sender writing numbered texts to one recipient, and what each side saw.
struct Flow {
    from: String,
    to: String,
    /// The node the recipient is on.
    to_node: usize,
    acked: Arc<Mutex<Vec<Sent>>>,
    /// Codes the sender's connection was lost with.
    lost_with: Arc<Mutex<Vec<u32>>>,
    received: Arc<Mutex<Vec<Message>>>,
    stop: Arc<AtomicBool>,
    sender: tokio::task::JoinHandle<()>,
    _clients: (Client, Client),
}

impl Flow {
    async fn start(rig: &Rig, from: (usize, &str), to: (usize, &str)) -> Flow {
        let (sender_client, mut sender_events) = rig.client(from.0, from.1, "phone").await;
        let (recipient, events) = rig.client(to.0, to.1, "phone").await;
        let acked = Arc::new(Mutex::new(Vec::new()));
        let lost_with = Arc::new(Mutex::new(Vec::new()));
        let received = crate::util::collect_messages(events);
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (acked, stop, client, to) = (
                acked.clone(),
                stop.clone(),
                sender_client.clone(),
                to.1.to_string(),
            );
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(sent) = client.send(Outgoing::text(&to, &format!("n{i}"))).await {
                        acked.lock().unwrap().push(sent);
                    }
                    i += 1;
                }
            })
        };
        let lost = lost_with.clone();
        tokio::spawn(async move {
            while let Some(e) = sender_events.recv().await {
                if let Event::Status(Status::Disconnected { code, .. }) = e {
                    lost.lock().unwrap().push(code);
                }
            }
        });
        Flow {
            from: from.1.into(),
            to: to.1.into(),
            to_node: to.0,
            acked,
            lost_with,
            received,
            stop,
            sender,
            _clients: (sender_client, recipient),
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
}

/// The four flows: a user on each node writing to a user on each node.
async fn flows(rig: &Rig) -> Vec<Flow> {
    let mut flows = Vec::new();
    for (i, (from, to)) in [(0, 1), (1, 0), (0, 0), (1, 1)].into_iter().enumerate() {
        flows.push(Flow::start(rig, (from, &format!("s{i}")), (to, &format!("r{i}"))).await);
    }
    flows
}

/// Waits until every flow has `STEP` more messages acknowledged than now.
async fn progress(flows: &[Flow], what: &str) {
    let from: Vec<usize> = flows.iter().map(Flow::acked).collect();
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !flows.iter().zip(&from).all(|(f, n)| f.acked() >= n + STEP) {
        if tokio::time::Instant::now() > deadline {
            let state: Vec<String> = flows
                .iter()
                .zip(&from)
                .map(|(f, n)| {
                    format!(
                        "{}->{}: {n} then {}, lost its connection with {:?}",
                        f.from,
                        f.to,
                        f.acked(),
                        f.lost_with.lock().unwrap()
                    )
                })
                .collect();
            panic!("timed out waiting for: {what}: {state:?}");
        }
        // The back-off between checks: the loop ends once every flow has moved on.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops the flows' senders and waits until each has had its last send answered.
async fn stop(flows: &[Flow]) {
    for f in flows {
        f.stop.store(true, Ordering::Relaxed);
    }
    eventually_within("the senders stopped", SETTLE, || async {
        flows.iter().all(|f| f.sender.is_finished())
    })
    .await;
}

/// Stops the flows and checks every acknowledged message (see the module's text); prints the
/// scenario's figures and returns how many messages were acknowledged.
async fn verify(rig: &Rig, flows: &[Flow]) -> usize {
    stop(flows).await;
    let (db, connection) = tokio_postgres::connect(rig.db_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut total = 0;
    for f in flows {
        let acked: Vec<Sent> = f.acked.lock().unwrap().clone();
        total += acked.len();
        // The recipient's inbox as stored: seqs 1..n without a gap, each message once.
        let rows = db
            .query(
                "SELECT i.seq, m.uid, m.content, m.seq FROM inbox i JOIN messages m ON m.id = i.msg \
                 WHERE i.user_id = $1 ORDER BY i.seq",
                &[&f.to],
            )
            .await
            .unwrap();
        let inbox: Vec<(i64, String, String, i64)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        for (i, (seq, ..)) in inbox.iter().enumerate() {
            assert_eq!(*seq, i as i64 + 1, "{}'s inbox seqs have a gap", f.to);
        }
        let mut contents: Vec<&str> = inbox.iter().map(|e| e.2.as_str()).collect();
        contents.sort();
        let n = contents.len();
        contents.dedup();
        let duplicated = n - contents.len();
        let stored: HashMap<&str, usize> =
            inbox
                .iter()
                .map(|e| e.1.as_str())
                .fold(HashMap::new(), |mut m, uid| {
                    *m.entry(uid).or_default() += 1;
                    m
                });
        let lost = acked
            .iter()
            .filter(|s| stored.get(s.uid.as_str()) != Some(&1))
            .count();
        let _ = writeln!(
            std::io::stderr(),
            "PARTITION {} {}->{}: acked {} stored {} lost {lost} duplicated {duplicated} (sender lost its connection with {:?})",
            rig.name,
            f.from,
            f.to,
            acked.len(),
            inbox.len(),
            f.lost_with.lock().unwrap()
        );
        assert_eq!(lost, 0, "{}: acknowledged messages not stored once", f.to);
        assert_eq!(duplicated, 0, "{}: a message stored twice", f.to);
        // The conversation's seqs are gapless too.
        let mut conversation: Vec<i64> = inbox.iter().map(|e| e.3).collect();
        conversation.sort();
        assert!(
            conversation
                .iter()
                .enumerate()
                .all(|(i, s)| *s == i as i64 + 1),
            "{}: conversation seqs {conversation:?}",
            f.to
        );

        // The device connected all along was given every one, once, in order.
        eventually_within(
            &format!("{} was given every acknowledged message", f.to),
            SETTLE,
            || async {
                let got = f.received.lock().unwrap();
                let uids: std::collections::HashSet<&str> =
                    got.iter().map(|m| m.uid.as_str()).collect();
                acked.iter().all(|s| uids.contains(s.uid.as_str()))
            },
        )
        .await;
        {
            let got = f.received.lock().unwrap();
            assert!(
                got.windows(2).all(|w| w[0].seq < w[1].seq),
                "{}'s device was given messages twice or out of order",
                f.to
            );
        }

        // A new device syncs them all.
        let (laptop, mut events) = rig.client(f.to_node, &f.to, "laptop").await;
        let mut synced = std::collections::HashSet::new();
        let want: std::collections::HashSet<String> = acked.iter().map(|s| s.uid.clone()).collect();
        tokio::time::timeout(SETTLE, async {
            while !want.is_subset(&synced) {
                match events.recv().await {
                    Some(Event::Message(m)) => {
                        synced.insert(m.uid);
                    }
                    Some(_) => {}
                    None => panic!("the new device's stream ended"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{}'s new device did not sync everything", f.to));
        laptop.close().await;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_from_nats_catches_up_and_loses_nothing() {
    let Some(rig) = Rig::start(1, "a_node_cut_from_nats_catches_up_and_loses_nothing").await else {
        return;
    };
    let flows = flows(&rig).await;
    progress(&flows, "traffic flows").await;
    rig.net.set(NATS_A, false);
    rig.wait_ready_part(0, "bus", "disconnected").await;
    // Node a still serves its own users, and stores what they send to b's.
    progress(&flows, "traffic flows while a is cut from NATS").await;
    rig.net.set(NATS_A, true);
    rig.wait_ready_part(0, "bus", "ok").await;
    progress(&flows, "traffic flows after the heal").await;
    verify(&rig, &flows).await;
    drop(flows);
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_from_postgres_refuses_sends_and_its_clients_move() {
    let Some(rig) = Rig::start(
        2,
        "a_node_cut_from_postgres_refuses_sends_and_its_clients_move",
    )
    .await
    else {
        return;
    };
    let flows = flows(&rig).await;
    progress(&flows, "traffic flows").await;
    rig.net.set(PG_A, false);
    rig.wait_ready_part(0, "store", "unavailable").await;
    // a's senders were refused with 41009 and went on from b.
    progress(&flows, "traffic flows while a is cut from PostgreSQL").await;
    for f in flows.iter().filter(|f| f.from == "s0" || f.from == "s2") {
        assert!(
            f.lost_with
                .lock()
                .unwrap()
                .contains(&Code::StoreUnreachable.as_u32()),
            "{} was told its node cannot reach the database",
            f.from
        );
    }
    rig.net.set(PG_A, true);
    rig.wait_ready_part(0, "store", "ok").await;
    progress(&flows, "traffic flows after the heal").await;
    verify(&rig, &flows).await;
    drop(flows);
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_cut_from_each_other_deliver_everything_once_healed() {
    let Some(rig) = Rig::start(
        3,
        "nodes_cut_from_each_other_deliver_everything_once_healed",
    )
    .await
    else {
        return;
    };
    let flows = flows(&rig).await;
    progress(&flows, "traffic flows").await;
    // The route between the NATS servers: both nodes keep their NATS and PostgreSQL.
    rig.net.set(ROUTE, false);
    rig.wait_nodes_listed(0, 1).await;
    rig.wait_nodes_listed(1, 1).await;
    // Apart for NATS too, so what is published from here on is dropped, not held in a socket.
    rig.wait_routes(false).await;
    progress(&flows, "traffic flows while the nodes are apart").await;
    // No message follows the heal: what each node published while apart must reach the
    // devices on the other without a later message revealing the gap.
    stop(&flows).await;
    rig.net.set(ROUTE, true);
    rig.wait_routes(true).await;
    rig.wait_nodes_listed(0, 2).await;
    rig.wait_nodes_listed(1, 2).await;
    verify(&rig, &flows).await;
    drop(flows);
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_healed_under_load_lose_nothing() {
    let Some(rig) = Rig::start(4, "cuts_healed_under_load_lose_nothing").await else {
        return;
    };
    let flows = flows(&rig).await;
    progress(&flows, "traffic flows").await;
    // Each link cut and healed while the flows go on, one after another, without waiting for
    // the cut to be noticed: a short cut is the one nobody reports.
    for link in [ROUTE, NATS_B, PG_B, ROUTE, NATS_A] {
        rig.net.set(link, false);
        progress(&flows, "traffic flows during a cut").await;
        rig.net.set(link, true);
    }
    progress(&flows, "traffic flows after the last heal").await;
    verify(&rig, &flows).await;
    drop(flows);
    rig.finish().await;
}
