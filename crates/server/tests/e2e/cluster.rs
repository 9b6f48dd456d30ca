//! Several nodes as one service. The scenarios of the cluster's logic run twice (see
//! [`on_each_bus`]): over an in-process bus, always, and over a real NATS server
//! (`TIDINGS_TEST_NATS_URL`, e.g. `nats://127.0.0.1:4222`; those runs say SKIPPED without it).
//! The tests about NATS itself (cutting the connection to it, `tidings serve` processes) run
//! over NATS only. The nodes here run in one process and share one store, as they would share
//! one PostgreSQL database; everything between them goes over the bus. Each test is a cluster
//! of its own (a fresh hub, or a fresh cluster name on NATS).

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tidings_client::{Event, Outgoing};
use tidings_proto::Code;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use tidings_server::StoreSetting;
use tidings_store_postgres::testing::{TestDatabase, server_url};

use crate::util::{TestServer, api, eventually, http, next_message, next_terminal};

/// How the nodes of a cluster under test reach each other.
#[derive(Clone)]
enum Via {
    /// A bus in this process, which every node joins.
    InProcess(tidings_bus::MemoryHub),
    /// A NATS server, at this URL.
    Nats(String),
}

/// A cluster under test: its bus and name, and the PostgreSQL database its nodes share when
/// `TIDINGS_TEST_POSTGRES_URL` names a server (otherwise the nodes, all in this process, share
/// the first node's store).
struct Cluster {
    via: Via,
    name: String,
    db: Option<TestDatabase>,
}

/// Runs the scenario `async fn $name(cluster: Cluster)` as two tests: `$name::in_process`, over
/// an in-process bus, and `$name::nats`, over NATS (SKIPPED without `TIDINGS_TEST_NATS_URL`).
macro_rules! on_each_bus {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn in_process() {
                super::$name(super::Cluster::in_process().await).await;
            }

            #[tokio::test]
            async fn nats() {
                if let Some(cluster) = super::Cluster::new(stringify!($name)).await {
                    super::$name(cluster).await;
                }
            }
        }
    };
}

impl Cluster {
    /// A new cluster, or `None` (and a SKIPPED line) without a NATS server to test against.
    async fn new(test: &str) -> Option<Cluster> {
        let nats = match std::env::var("TIDINGS_TEST_NATS_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: set TIDINGS_TEST_NATS_URL (e.g. nats://127.0.0.1:4222) to test clusters"
                );
                return None;
            }
        };
        Some(Cluster::on(Via::Nats(nats)).await)
    }

    /// A new cluster on an in-process bus.
    async fn in_process() -> Cluster {
        Cluster::on(Via::InProcess(tidings_bus::MemoryHub::new())).await
    }

    async fn on(via: Via) -> Cluster {
        let db = match server_url() {
            Some(url) => Some(TestDatabase::create(&url).await.expect("a test database")),
            None => None,
        };
        Cluster {
            via,
            name: format!("test-{:016x}", rand::random::<u64>()),
            db,
        }
    }

    /// The NATS server's URL, in a test that runs over NATS only.
    fn nats(&self) -> &str {
        match &self.via {
            Via::Nats(url) => url,
            Via::InProcess(_) => panic!("this test runs over NATS only"),
        }
    }

    /// The settings of node `node`, reaching NATS at `nats`.
    fn tune(&self, node: &str, nats: &str) -> impl FnOnce(&mut tidings_server::Config) + use<> {
        self.tune_via(node, Via::Nats(nats.to_string()))
    }

    /// The settings of node `node`, on the bus `via`.
    fn tune_via(&self, node: &str, via: Via) -> impl FnOnce(&mut tidings_server::Config) + use<> {
        let (cluster, node) = (self.name.clone(), node.to_string());
        let store = self
            .db
            .as_ref()
            .map(|db| StoreSetting::Postgres(db.url.clone()));
        move |c| {
            match via {
                Via::InProcess(hub) => c.in_process_bus = Some(hub),
                Via::Nats(url) => c.nats = Some(url),
            }
            c.cluster = cluster;
            c.node_id = node;
            c.alive_interval = Duration::from_millis(100);
            if let Some(store) = store {
                c.store = store;
            }
        }
    }

    /// The NATS server's address, for a proxy in front of it.
    fn nats_addr(&self) -> SocketAddr {
        self.nats()
            .trim_start_matches("nats://")
            .parse()
            .expect("TIDINGS_TEST_NATS_URL is nats://IP:PORT")
    }

    /// The first node.
    async fn first(&self) -> TestServer {
        TestServer::start_with(self.tune_via("a", self.via.clone())).await
    }

    /// Another node, beside `first`.
    async fn next(&self, first: &TestServer, node: &str) -> TestServer {
        let tune = self.tune_via(node, self.via.clone());
        TestServer::start_beside(first, self.db.is_none(), tune).await
    }

    /// Another node, reaching NATS at `nats`.
    async fn next_via(&self, first: &TestServer, node: &str, nats: &str) -> TestServer {
        TestServer::start_beside(first, self.db.is_none(), self.tune(node, nats)).await
    }
}

async fn next_presence(events: &mut tidings_client::Events) -> tidings_client::Presence {
    loop {
        if let Event::Presence(p) = next_terminal(events).await {
            return p;
        }
    }
}

/// The next message from a person, past group notifications.
async fn next_people_message(events: &mut tidings_client::Events) -> tidings_client::Message {
    loop {
        let m = next_message(events).await;
        if m.group_notice().is_none() {
            return m;
        }
    }
}

fn text_of(m: &tidings_client::Message) -> String {
    serde_json::from_str::<Value>(&m.content).unwrap()["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

on_each_bus!(one_to_one_and_group_messages_cross_nodes);

async fn one_to_one_and_group_messages_cross_nodes(cluster: Cluster) {
    let a = cluster.first().await;
    let b = cluster.next(&a, "b").await;

    let (alice, mut alice_events) = a.client("alice", "phone").await;
    let (bob, mut bob_events) = b.client("bob", "phone").await;
    alice
        .send(Outgoing::text("bob", "hi from a"))
        .await
        .unwrap();
    let got = next_message(&mut bob_events).await;
    assert_eq!(
        (got.sender_id.as_str(), text_of(&got)),
        ("alice", "hi from a".into())
    );
    bob.send(Outgoing::text("alice", "hi from b"))
        .await
        .unwrap();
    let got = next_message(&mut alice_events).await;
    assert_eq!(
        (got.sender_id.as_str(), text_of(&got)),
        ("bob", "hi from b".into())
    );

    // A group whose members are on both nodes (and a third node).
    let c = cluster.next(&a, "c").await;
    let (_carol, mut carol_events) = c.client("carol", "phone").await;
    let (status, body) = api(
        &a,
        "POST",
        "/api/v1/groups",
        json!({ "groupId": "spread", "ownerId": "alice", "name": "S", "memberIds": ["bob", "carol"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    bob.send(Outgoing::group_text("spread", "to everyone"))
        .await
        .unwrap();
    for events in [&mut alice_events, &mut carol_events] {
        let m = next_people_message(events).await;
        assert_eq!(
            (m.sender_id.as_str(), text_of(&m)),
            ("bob", "to everyone".into())
        );
    }
}

on_each_bus!(registering_an_id_ends_an_app_session_of_it_on_another_node);

async fn registering_an_id_ends_an_app_session_of_it_on_another_node(cluster: Cluster) {
    let a = cluster.first().await;
    let b = cluster.next(&a, "b").await;
    // An app token the store never recorded (as an older server or `tidings token` without the
    // database would have made it), connected on b: the id has no trace a registration on a
    // would find.
    let now = crate::util::now_ms() / 1000;
    let token =
        tidings_engine::auth::mint(&b.running().credentials, "late", 0, now, now + 600).unwrap();
    let mut config = tidings_client::ClientConfig::new(b.url(), token);
    config.reconnect_delays = vec![Duration::from_millis(50)];
    let (_late, mut events) = tidings_client::Client::connect(config).await.unwrap();
    let (status, body) = http(
        &a,
        "POST",
        "/v1/accounts/register",
        Vec::new(),
        Some(json!({ "account": "late", "password": "a long password" }).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The app's session ends, so it reads nothing the account's user is sent.
    match next_terminal(&mut events).await {
        Event::Kicked { code, .. } => assert_eq!(code, Code::TokenRevoked.as_u32()),
        other => panic!("expected the session to end, got {other:?}"),
    }
}

on_each_bus!(a_device_connecting_to_another_node_replaces_the_first);

async fn a_device_connecting_to_another_node_replaces_the_first(cluster: Cluster) {
    let a = cluster.first().await;
    let b = cluster.next(&a, "b").await;
    let (_first, mut first_events) = a.client("dave", "laptop").await;
    let (second, mut second_events) = b.client("dave", "laptop").await;
    match next_terminal(&mut first_events).await {
        Event::Kicked { code, .. } => assert_eq!(code, Code::Kicked.as_u32()),
        other => panic!("expected the kick, got {other:?}"),
    }
    // The newer connection works.
    let (eve, _eve_events) = a.client("eve", "phone").await;
    eve.send(Outgoing::text("dave", "still there?"))
        .await
        .unwrap();
    assert_eq!(
        text_of(&next_message(&mut second_events).await),
        "still there?"
    );
    drop(second);
}

on_each_bus!(a_user_online_on_another_node_gets_no_notification);

/// Web Push is for users offline everywhere: a recipient connected to another node gets the
/// message from there, and no notification from the node that stored it.
async fn a_user_online_on_another_node_gets_no_notification(cluster: Cluster) {
    let mut service = crate::push::PushService::start().await;
    let a = cluster.first().await;
    let b = cluster.next(&a, "b").await;
    let (bob, mut bob_events) = b.client("bob", "phone").await;
    let bob_device = crate::push::Device::new(&service, "/bob/1");
    bob.register_push(&bob_device.subscription()).await.unwrap();
    let (carol, _carol_events) = a.client("carol", "phone").await;
    let carol_device = crate::push::Device::new(&service, "/carol/1");
    carol
        .register_push(&carol_device.subscription())
        .await
        .unwrap();
    carol.close().await;
    crate::push::offline(&a, "carol").await;
    let engine_a = a.running().engine.clone();
    eventually("node a sees bob online on node b", || {
        let engine = engine_a.clone();
        async move { engine.users(&["bob".to_string()]).await.unwrap()[0].online }
    })
    .await;

    let (alice, _alice_events) = a.client("alice", "phone").await;
    alice.send(Outgoing::text("bob", "hi bob")).await.unwrap();
    assert_eq!(text_of(&next_message(&mut bob_events).await), "hi bob");
    // A node's notifications go out in order: one for bob would come before carol's.
    alice.send(Outgoing::text("carol", "probe")).await.unwrap();
    let seen = service.next().await;
    assert_eq!(seen.path, "/carol/1", "bob, online on node b, was notified");
}

on_each_bus!(presence_navigation_and_a_leaving_node_are_seen_across_nodes);

async fn presence_navigation_and_a_leaving_node_are_seen_across_nodes(cluster: Cluster) {
    let a = cluster.first().await;
    let mut b = cluster.next(&a, "b").await;
    let b_url = b.url();

    // A's navigation lists B once B said it is alive.
    eventually("node a lists node b", || async {
        let (_, navi) = http(&a, "GET", "/navi", Vec::new(), None).await;
        navi["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["http"] == b_url.as_str())
    })
    .await;

    // frank on A watches gina, who comes online on B, and hears of it.
    let (frank, mut frank_events) = a.client("frank", "phone").await;
    let now = frank.subscribe_presence(&["gina"]).await.unwrap();
    assert!(!now[0].online);
    let (gina, _gina_events) = b.client("gina", "phone").await;
    let p = next_presence(&mut frank_events).await;
    assert_eq!((p.user_id.as_str(), p.online), ("gina", true));
    let engine_a = a.running().engine.clone();
    assert!(engine_a.users(&["gina".to_string()]).await.unwrap()[0].online);
    // And when she leaves.
    gina.close().await;
    let p = next_presence(&mut frank_events).await;
    assert_eq!((p.user_id.as_str(), p.online), ("gina", false));
    let (_gina, _gina_events) = b.client("gina", "phone").await;
    assert!(next_presence(&mut frank_events).await.online);

    // B leaves: A forgets it and its users.
    b.shutdown().await;
    eventually("node a no longer lists node b", || async {
        let (_, navi) = http(&a, "GET", "/navi", Vec::new(), None).await;
        !navi["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["http"] == b_url.as_str())
    })
    .await;
    assert!(!engine_a.users(&["gina".to_string()]).await.unwrap()[0].online);
}

/// A TCP proxy to NATS that the test can cut: every connection through it drops, and new ones
/// are refused, until it is restored.
struct FaultProxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl FaultProxy {
    async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cut_rx) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if *cut_rx.borrow() {
                    let _ = client.shutdown().await;
                    continue;
                }
                let mut cut = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        FaultProxy { addr, cut }
    }
}

#[tokio::test]
async fn a_node_cut_off_from_nats_serves_its_users_and_catches_up() {
    let Some(cluster) =
        Cluster::new("a_node_cut_off_from_nats_serves_its_users_and_catches_up").await
    else {
        return;
    };
    let upstream = cluster.nats_addr();
    let proxy = FaultProxy::start(upstream).await;
    let a = cluster.first().await;
    // C reaches NATS through the proxy.
    let c = cluster
        .next_via(&a, "c", &format!("nats://{}", proxy.addr))
        .await;

    let (hana, mut hana_events) = c.client("hana", "phone").await;
    let (ivan, ivan_events) = c.client("ivan", "phone").await;
    let (jon, _jon_events) = a.client("jon", "phone").await;
    jon.send(Outgoing::text("hana", "before")).await.unwrap();
    assert_eq!(text_of(&next_message(&mut hana_events).await), "before");

    // Cut off: C still serves its own users, and what A's users send meanwhile is not lost.
    proxy.cut.send(true).unwrap();
    ivan.send(Outgoing::text("hana", "local while cut off"))
        .await
        .unwrap();
    assert_eq!(
        text_of(&next_message(&mut hana_events).await),
        "local while cut off"
    );
    for i in 0..3 {
        jon.send(Outgoing::text("hana", &format!("during {i}")))
            .await
            .unwrap();
    }
    proxy.cut.send(false).unwrap();

    // Back on NATS, C catches hana up from the store: each message once, in order.
    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(text_of(&next_message(&mut hana_events).await));
    }
    assert_eq!(got, ["during 0", "during 1", "during 2"]);
    jon.send(Outgoing::text("hana", "after")).await.unwrap();
    assert_eq!(text_of(&next_message(&mut hana_events).await), "after");
    drop((hana, ivan, ivan_events));
}

/// What one sender had acknowledged, and what its receiver was given.
struct Flow {
    acked: Arc<std::sync::Mutex<Vec<tidings_client::Sent>>>,
    stop: Arc<AtomicBool>,
    sender: tokio::task::JoinHandle<()>,
    received: Arc<std::sync::Mutex<Vec<tidings_client::Message>>>,
}

/// `from` sends numbered texts to `to` one after another until stopped; what `to` is given is
/// kept.
fn flow(from: tidings_client::Client, to: String, events: tidings_client::Events) -> Flow {
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let received = crate::util::collect_messages(events);
    let sender = {
        let (acked, stop) = (acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(sent) = from.send(Outgoing::text(&to, &format!("n{i}"))).await {
                    acked.lock().unwrap().push(sent);
                }
                i += 1;
            }
            from.close().await;
        })
    };
    Flow {
        acked,
        stop,
        sender,
        received,
    }
}

#[tokio::test]
async fn a_killed_node_loses_no_acknowledged_message() {
    let test = "a_killed_node_loses_no_acknowledged_message";
    let Some(cluster) = Cluster::new(test).await else {
        return;
    };
    let Some(db) = &cluster.db else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: set TIDINGS_TEST_POSTGRES_URL: separate processes share a database"
        );
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = |node: &'static str| {
        vec![
            "--store".to_string(),
            db.url.clone(),
            "--nats".into(),
            cluster.nats().to_string(),
            "--cluster".into(),
            cluster.name.clone(),
            "--node-id".into(),
            node.into(),
            "--alive-ms".into(),
            "100".into(),
            "--ack-timeout-ms".into(),
            "500".into(),
        ]
    };
    let args_a = args("a");
    let args_a: Vec<&str> = args_a.iter().map(String::as_str).collect();
    let mut a = crate::process::ServerProcess::start(dir_a.path(), &args_a);
    // B shares A's app credentials, as every node of a cluster does.
    std::fs::create_dir_all(dir_b.path().join("data")).unwrap();
    std::fs::copy(
        dir_a.path().join("data/credentials.toml"),
        dir_b.path().join("data/credentials.toml"),
    )
    .unwrap();
    let args_b = args("b");
    let args_b: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let b = crate::process::ServerProcess::start(dir_b.path(), &args_b);

    let client = |user: &str, first: &str, other: &str| {
        let mut c = tidings_client::ClientConfig::new(
            first,
            crate::process::token_with(&dir_a.path().join("data"), user, &["--store", &db.url]),
        );
        c.device_id = "phone".into();
        c.other_servers = vec![other.to_string()];
        c.reconnect_delays = vec![Duration::from_millis(50)];
        c.send_timeout = Duration::from_secs(20);
        c
    };
    // alice (on A) writes to bob (on B); carol (on B) writes to dave (on A).
    let (alice, _) = tidings_client::Client::connect(client("alice", &a.url, &b.url))
        .await
        .unwrap();
    let (_bob, bob_events) = tidings_client::Client::connect(client("bob", &b.url, &a.url))
        .await
        .unwrap();
    let (carol, _) = tidings_client::Client::connect(client("carol", &b.url, &a.url))
        .await
        .unwrap();
    let (_dave, dave_events) = tidings_client::Client::connect(client("dave", &a.url, &b.url))
        .await
        .unwrap();
    let flows = [
        flow(alice, "bob".into(), bob_events),
        flow(carol, "dave".into(), dave_events),
    ];
    eventually("traffic flows both ways", || async {
        flows.iter().all(|f| f.acked.lock().unwrap().len() >= 50)
    })
    .await;

    // SIGKILL A mid-traffic: its clients reconnect to B and sync.
    a.signal(9);
    a.wait();
    let at_kill: Vec<usize> = flows
        .iter()
        .map(|f| f.acked.lock().unwrap().len())
        .collect();
    eventually("traffic flows again after the kill", || async {
        flows
            .iter()
            .zip(&at_kill)
            .all(|(f, n)| f.acked.lock().unwrap().len() >= n + 50)
    })
    .await;
    for f in &flows {
        f.stop.store(true, Ordering::Relaxed);
    }
    eventually("the senders stopped", || async {
        flows.iter().all(|f| f.sender.is_finished())
    })
    .await;

    // Every acknowledged message arrives, once.
    for (f, who) in flows.iter().zip(["bob", "dave"]) {
        let acked: Vec<String> = f
            .acked
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.uid.clone())
            .collect();
        eventually(&format!("{who} has every acknowledged message"), || async {
            let got = f.received.lock().unwrap();
            acked.iter().all(|uid| got.iter().any(|m| &m.uid == uid))
        })
        .await;
        let got = f.received.lock().unwrap();
        let mut uids: Vec<&str> = got.iter().map(|m| m.uid.as_str()).collect();
        let n = uids.len();
        uids.sort();
        uids.dedup();
        assert_eq!(uids.len(), n, "{who} was given a message twice");
        let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{who}'s messages in order"
        );
    }
    drop(b);
}

/// Waits until every node lists every other as live (so they agree on each room's home).
async fn formed(nodes: &[&TestServer]) {
    for n in nodes {
        let engine = n.running().engine.clone();
        let others = nodes.len() - 1;
        eventually("the node lists every other node", || async {
            engine.cluster_nodes().len() == others
        })
        .await;
    }
}

/// What one member got of a room: every item's seq in the order it came, the messages by
/// uid with their seq, the notices, and the gap markers.
#[derive(Default)]
struct RoomLog {
    seqs: Vec<u64>,
    messages: Vec<(String, u64, String)>,
    notices: Vec<tidings_client::ChatroomNotice>,
    gaps: Vec<(u64, u64)>,
}

impl RoomLog {
    fn take(&mut self, e: tidings_client::ChatroomEvent) {
        use tidings_client::ChatroomEvent;
        match e {
            ChatroomEvent::Message(m) => {
                self.seqs.push(m.seq);
                self.messages.push((m.uid.clone(), m.seq, text_of(&m)));
            }
            ChatroomEvent::Notice(n) => {
                self.seqs.push(n.seq);
                self.notices.push(n);
            }
            ChatroomEvent::Gap(g) => self.gaps.push((g.from_seq, g.to_seq)),
            ChatroomEvent::Left { .. } => {}
        }
    }

    /// Reads events until `done` holds.
    async fn until(
        &mut self,
        events: &mut tidings_client::Events,
        done: impl Fn(&RoomLog) -> bool,
    ) {
        while !done(self) {
            let e = crate::chatrooms::next_room_event(events).await;
            self.take(e);
        }
    }

    fn has_text(&self, text: &str) -> bool {
        self.messages.iter().any(|(_, _, t)| t == text)
    }

    fn noticed(&self, operation: &str, user: &str) -> bool {
        self.notices
            .iter()
            .any(|n| n.operation == operation && n.user_ids.iter().any(|u| u == user))
    }

    /// Items came in increasing seq order, each once.
    fn assert_in_order(&self, who: &str) {
        assert!(
            self.seqs.windows(2).all(|w| w[0] < w[1]),
            "{who} got seqs out of order or twice: {:?}",
            self.seqs
        );
    }
}

on_each_bus!(a_chatroom_spans_nodes_in_one_order);

async fn a_chatroom_spans_nodes_in_one_order(cluster: Cluster) {
    let a = cluster.first().await;
    let b = cluster.next(&a, "b").await;
    let c = cluster.next(&a, "c").await;
    formed(&[&a, &b, &c]).await;

    let (alice, mut alice_events) = a.client("alice", "phone").await;
    let (bob, mut bob_events) = b.client("bob", "phone").await;
    let (carol, carol_events) = c.client("carol", "phone").await;
    let mut logs: [RoomLog; 3] = Default::default();

    // Joins on one node are announced on the others.
    alice.join_chatroom("plaza", 0).await.unwrap();
    bob.join_chatroom("plaza", 0).await.unwrap();
    logs[0]
        .until(&mut alice_events, |l| l.noticed("join", "bob"))
        .await;
    carol.join_chatroom("plaza", 0).await.unwrap();
    logs[0]
        .until(&mut alice_events, |l| l.noticed("join", "carol"))
        .await;
    logs[1]
        .until(&mut bob_events, |l| l.noticed("join", "carol"))
        .await;

    // Messages sent on each node reach every member on every node once.
    let members = [("alice", &alice), ("bob", &bob), ("carol", &carol)];
    let mut sent: Vec<(String, u64, String)> = Vec::new();
    for round in 0..4 {
        for (name, client) in members {
            let text = format!("{name} {round}");
            let s = client
                .send(Outgoing::chatroom_text("plaza", &text))
                .await
                .unwrap();
            assert!(s.seq > 0, "numbered by the room's home");
            sent.push((s.uid, s.seq, text));
        }
    }
    let (mut alice_events, mut bob_events, mut carol_events) =
        (alice_events, bob_events, carol_events);
    let streams = [&mut alice_events, &mut bob_events, &mut carol_events];
    for (i, events) in streams.into_iter().enumerate() {
        let me = members[i].0;
        let expected: Vec<&(String, u64, String)> =
            sent.iter().filter(|(_, _, t)| !t.starts_with(me)).collect();
        logs[i]
            .until(events, |l| expected.iter().all(|(_, _, t)| l.has_text(t)))
            .await;
        logs[i].assert_in_order(me);
        for (uid, seq, text) in &expected {
            let got: Vec<_> = logs[i].messages.iter().filter(|m| &m.0 == uid).collect();
            assert_eq!(got.len(), 1, "{me} got {text} {} times", got.len());
            assert_eq!(
                got[0].1, *seq,
                "{me} sees {text} at the seq its sender was told"
            );
        }
        assert!(logs[i].gaps.is_empty(), "{me} got gaps {:?}", logs[i].gaps);
    }
    // One order: the seqs of all messages, as each member knows them, agree.
    let mut all: Vec<u64> = sent.iter().map(|s| s.1).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), sent.len(), "every message has a seq of its own");

    // A leave on one node is announced on the others.
    bob.quit_chatroom("plaza").await.unwrap();
    logs[0]
        .until(&mut alice_events, |l| l.noticed("leave", "bob"))
        .await;
    logs[2]
        .until(&mut carol_events, |l| l.noticed("leave", "bob"))
        .await;
    for (i, log) in logs.iter().enumerate() {
        log.assert_in_order(members[i].0);
    }
    // Notices carry the same seq wherever they arrive.
    let seq_of = |log: &RoomLog, op: &str, user: &str| {
        log.notices
            .iter()
            .find(|n| n.operation == op && n.user_ids.iter().any(|u| u == user))
            .map(|n| n.seq)
    };
    assert_eq!(
        seq_of(&logs[0], "join", "carol"),
        seq_of(&logs[1], "join", "carol")
    );
    assert_eq!(
        seq_of(&logs[0], "leave", "bob"),
        seq_of(&logs[2], "leave", "bob")
    );
}

on_each_bus!(a_chatroom_outlives_its_home_node_with_gaps_named_never_duplicates);

async fn a_chatroom_outlives_its_home_node_with_gaps_named_never_duplicates(cluster: Cluster) {
    let a = cluster.first().await;
    let b = cluster.next(&a, "b").await;
    let mut c = cluster.next(&a, "c").await;
    formed(&[&a, &b, &c]).await;
    // A room whose home is node c.
    let engine_a = a.running().engine.clone();
    let room = (0..)
        .map(|i| format!("relay-{i}"))
        .find(|r| engine_a.chatroom_home(r).as_deref() == Some("c"))
        .unwrap();

    let (alice, mut alice_events) = a.client("alice", "phone").await;
    let (bob, mut bob_events) = b.client("bob", "phone").await;
    let (carol, _carol_events) = c.client("carol", "phone").await;
    for m in [&alice, &bob, &carol] {
        m.join_chatroom(&room, 0).await.unwrap();
    }

    // Alice and bob take turns sending; node c (the home) shuts down midway. A send that fails
    // meanwhile is simply not counted.
    let mut acked: Vec<(&str, String, u64, String)> = Vec::new();
    for i in 0..30 {
        if i == 10 {
            c.shutdown().await;
        }
        for (name, client) in [("alice", &alice), ("bob", &bob)] {
            let text = format!("{name} {i}");
            if let Ok(s) = client.send(Outgoing::chatroom_text(&room, &text)).await {
                acked.push((name, s.uid, s.seq, text));
            }
        }
    }
    drop(carol);
    // Once a and b agree on the new home, a last message from each.
    formed(&[&a, &b]).await;
    for (name, client) in [("alice", &alice), ("bob", &bob)] {
        let text = format!("{name} end");
        let s = client
            .send(Outgoing::chatroom_text(&room, &text))
            .await
            .unwrap();
        acked.push((name, s.uid, s.seq, text));
    }
    assert!(
        acked.iter().filter(|a| a.3.ends_with(" 29")).count() == 2,
        "sends work again after the home change"
    );

    for (me, other, events) in [
        ("alice", "bob", &mut alice_events),
        ("bob", "alice", &mut bob_events),
    ] {
        let mut log = RoomLog::default();
        let end = format!("{other} end");
        log.until(events, |l| l.has_text(&end)).await;
        log.assert_in_order(me);
        for (_, uid, seq, text) in acked.iter().filter(|a| a.0 == other) {
            let times = log.messages.iter().filter(|m| &m.0 == uid).count();
            let named = log.gaps.iter().any(|(from, to)| from <= seq && seq <= to);
            assert!(
                times == 1 || (times == 0 && named),
                "{me} got {text} (seq {seq}) {times} times; gaps {:?}",
                log.gaps
            );
        }
    }
}

on_each_bus!(a_chatrooms_mutes_bans_and_destroy_hold_on_every_node);

/// The refusal code of a failed call.
fn refused<T: std::fmt::Debug>(r: Result<T, tidings_client::ClientError>) -> u32 {
    match r {
        Err(tidings_client::ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The app server's calls go to node a; the members who feel them are on node b. Once a member
/// on b has the notice, node b has applied it. Run for a room whose home is a (node b learns of
/// the change from the home) and one whose home is b (node a forwards the notice to the home,
/// which applies it as it numbers it).
async fn a_chatrooms_mutes_bans_and_destroy_hold_on_every_node(cluster: Cluster) {
    let (a, b) = two_nodes(&cluster).await;
    let engine_a = a.running().engine.clone();
    let (alice, mut alice_events) = a.client("alice", "phone").await;
    let (bob, mut bob_events) = b.client("bob", "phone").await;
    let (carol, mut carol_events) = b.client("carol", "phone").await;
    let users = |names: &[&str]| -> Vec<String> { names.iter().map(|n| n.to_string()).collect() };
    for home in ["a", "b"] {
        let room = room_at_home(&a, "forum", home);
        let (mut alice_log, mut bob_log, mut carol_log) =
            (RoomLog::default(), RoomLog::default(), RoomLog::default());
        // A notice of this room (the streams still hold the previous room's last items).
        let noticed = |l: &RoomLog, operation: &str, user: Option<&str>, all: bool| {
            l.notices.iter().any(|n| {
                n.chatroom_id == room
                    && n.operation == operation
                    && n.all == all
                    && user.is_none_or(|u| n.user_ids.iter().any(|x| x == u))
            })
        };
        alice.join_chatroom(&room, 0).await.unwrap();
        bob.join_chatroom(&room, 0).await.unwrap();
        carol.join_chatroom(&room, 0).await.unwrap();
        alice_log
            .until(&mut alice_events, |l| {
                noticed(l, "join", Some("bob"), false) && noticed(l, "join", Some("carol"), false)
            })
            .await;

        // A muted member on b may not send; unmuted, she may.
        engine_a
            .chatroom_mute(&room, Some(&users(&["bob"])), i64::MAX)
            .await
            .unwrap();
        bob_log
            .until(&mut bob_events, |l| noticed(l, "mute", Some("bob"), false))
            .await;
        let muted = bob.send(Outgoing::chatroom_text(&room, "muted")).await;
        assert_eq!(
            refused(muted),
            Code::MutedInChatroom.as_u32(),
            "home {home}"
        );
        engine_a
            .chatroom_mute(&room, Some(&users(&["bob"])), 0)
            .await
            .unwrap();
        bob_log
            .until(&mut bob_events, |l| {
                noticed(l, "unmute", Some("bob"), false)
            })
            .await;
        bob.send(Outgoing::chatroom_text(&room, "unmuted"))
            .await
            .unwrap();

        // The whole room muted: no member on b may send.
        engine_a.chatroom_mute(&room, None, i64::MAX).await.unwrap();
        carol_log
            .until(&mut carol_events, |l| noticed(l, "mute", None, true))
            .await;
        let muted = carol
            .send(Outgoing::chatroom_text(&room, "all muted"))
            .await;
        assert_eq!(
            refused(muted),
            Code::MutedInChatroom.as_u32(),
            "home {home}"
        );
        engine_a.chatroom_mute(&room, None, 0).await.unwrap();
        carol_log
            .until(&mut carol_events, |l| noticed(l, "unmute", None, true))
            .await;

        // A ban takes bob's connection on b out, and b refuses his joins until it is lifted.
        engine_a
            .chatroom_kick(&room, &users(&["bob"]), Some(i64::MAX))
            .await
            .unwrap();
        bob_log
            .until(&mut bob_events, |l| noticed(l, "kick", Some("bob"), false))
            .await;
        let rejoin = bob.join_chatroom(&room, 0).await;
        assert_eq!(
            refused(rejoin),
            Code::KickedFromChatroom.as_u32(),
            "home {home}"
        );
        let out = bob.send(Outgoing::chatroom_text(&room, "kicked")).await;
        assert_eq!(refused(out), Code::NotInChatroom.as_u32(), "home {home}");
        engine_a
            .chatroom_kick(&room, &users(&["bob"]), Some(0))
            .await
            .unwrap();
        carol_log
            .until(&mut carol_events, |l| {
                noticed(l, "unban", Some("bob"), false)
            })
            .await;
        bob.join_chatroom(&room, 0).await.unwrap();

        // Destroyed on a: the members on b are out of it.
        engine_a.destroy_chatroom(&room).await.unwrap();
        carol_log
            .until(&mut carol_events, |l| noticed(l, "destroy", None, false))
            .await;
        let gone = carol.send(Outgoing::chatroom_text(&room, "gone")).await;
        assert_eq!(
            refused(gone),
            Code::ChatroomNotFound.as_u32(),
            "home {home}"
        );
    }
}

/// Nodes a and b of `cluster`, each listing the other as live.
async fn two_nodes(cluster: &Cluster) -> (TestServer, TestServer) {
    let a = cluster.first().await;
    let b = cluster.next(&a, "b").await;
    formed(&[&a, &b]).await;
    (a, b)
}

/// A room named `prefix-N` whose home is node `home`, as node `a` sees it.
fn room_at_home(a: &TestServer, prefix: &str, home: &str) -> String {
    let engine = a.running().engine.clone();
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|r| engine.chatroom_home(r).as_deref() == Some(home))
        .unwrap()
}

/// An item node b forwarded to a room's home before the destroy of the room reached b, arriving
/// at the home after the destroy, does not make the room again there (with none of its
/// members, so that b's members would be told 23406 instead of 23410): the home drops it. A
/// room made again by a join elsewhere, whose forwards start from seq 0, is numbered afresh.
/// Over the in-process bus, which the test joins as a node of its own to publish the late
/// forward.
#[tokio::test]
async fn a_forward_that_reaches_the_home_after_the_destroy_does_not_make_the_room_again() {
    use tidings_bus::{Bus as _, BusEvent, RoomPost};
    let cluster = Cluster::in_process().await;
    let Via::InProcess(hub) = cluster.via.clone() else {
        unreachable!("an in-process cluster")
    };
    let (a, b) = two_nodes(&cluster).await;
    let engine_a = a.running().engine.clone();
    let room = room_at_home(&a, "late", "a");
    let (carol, mut carol_events) = b.client("carol", "phone").await;
    carol.join_chatroom(&room, 0).await.unwrap();
    carol
        .send(Outgoing::chatroom_text(&room, "before"))
        .await
        .unwrap();
    engine_a.destroy_chatroom(&room).await.unwrap();
    let mut log = RoomLog::default();
    log.until(&mut carol_events, |l| {
        l.notices
            .iter()
            .any(|n| n.chatroom_id == room && n.operation == "destroy")
    })
    .await;

    let (x, mut x_events) = hub.join("x").unwrap();
    x.room_interest(&room).await;
    let forward = |text: &str, known: u64| BusEvent::RoomForward {
        home: "a".into(),
        known,
        post: RoomPost {
            message: tidings_store::StoredMessage {
                uid: format!("uid-{text}"),
                conversation_type: tidings_proto::conversation_type::CHATROOM,
                conversation_id: format!("4:{room}"),
                sender: "carol".into(),
                target: room.clone(),
                msg_type: "text".into(),
                content: json!({ "text": text }).to_string(),
                client_msg_id: format!("cm-{text}"),
                ..Default::default()
            },
            priority: 1,
            digest: format!("digest-{text}"),
            node: "x".into(),
            session: 1,
            token: 0,
        },
    };
    // Sent before the destroy reached its node, which knew the room up to seq 2.
    x.publish(forward("late", 2));
    let gone = carol.send(Outgoing::chatroom_text(&room, "gone")).await;
    assert_eq!(refused(gone), Code::ChatroomNotFound.as_u32());

    // A join elsewhere made the room again: its items are numbered from 1, and the late item
    // is not among them.
    let mut numbered = Vec::new();
    for (text, known) in [("first", 0), ("second", 1)] {
        x.publish(forward(text, known));
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), x_events.recv())
                .await
                .expect("the home numbers the item in time")
                .expect("the hub is open");
            if let BusEvent::RoomItem { post } = event {
                let got = serde_json::from_str::<Value>(&post.message.content).unwrap()["text"]
                    .as_str()
                    .unwrap()
                    .to_string();
                numbered.push((got.clone(), post.message.seq));
                if got == text {
                    break;
                }
            }
        }
    }
    assert_eq!(
        numbered,
        [("first".to_string(), 1), ("second".to_string(), 2)]
    );
}

on_each_bus!(a_chatroom_resend_forwarded_before_its_first_came_back_is_numbered_once);

/// Bob on node b sends twice with one client message id, the second before the first came back
/// from the room's home (node a): the home answers the second with the first, and alice (on
/// a) gets the message once. The same id for another message is refused.
async fn a_chatroom_resend_forwarded_before_its_first_came_back_is_numbered_once(cluster: Cluster) {
    let (a, b) = two_nodes(&cluster).await;
    let room = room_at_home(&a, "echo", "a");
    let (alice, mut alice_events) = a.client("alice", "phone").await;
    let (bob, _bob_events) = b.client("bob", "phone").await;
    alice.join_chatroom(&room, 0).await.unwrap();
    bob.join_chatroom(&room, 0).await.unwrap();

    let once = Outgoing {
        client_msg_id: Some("once".into()),
        ..Outgoing::chatroom_text(&room, "hello")
    };
    let reused = Outgoing {
        client_msg_id: Some("once".into()),
        ..Outgoing::chatroom_text(&room, "another")
    };
    let (first, second, third) =
        tokio::join!(bob.send(once.clone()), bob.send(once), bob.send(reused));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!((&first.uid, first.seq), (&second.uid, second.seq));
    assert_eq!(refused(third), Code::ClientMsgIdConflict.as_u32());
    bob.send(Outgoing::chatroom_text(&room, "marker"))
        .await
        .unwrap();
    let mut log = RoomLog::default();
    log.until(&mut alice_events, |l| l.has_text("marker")).await;
    let hellos = log.messages.iter().filter(|m| m.2 == "hello").count();
    assert_eq!(hellos, 1, "alice got the message {hellos} times");
    assert!(!log.has_text("another"));
}

on_each_bus!(a_chatrooms_entries_are_the_same_on_every_node);

/// Alice (node a) and bob (node b) in a room whose home is b: an entry set or removed on one
/// node is seen on the other, its owner's rule holds there, and one key set on both nodes at
/// once ends the same on both.
async fn a_chatrooms_entries_are_the_same_on_every_node(cluster: Cluster) {
    let (a, b) = two_nodes(&cluster).await;
    let room = room_at_home(&a, "board", "b");
    let (alice, mut alice_events) = a.client("alice", "phone").await;
    let (bob, mut bob_events) = b.client("bob", "phone").await;
    alice.join_chatroom(&room, 0).await.unwrap();
    bob.join_chatroom(&room, 0).await.unwrap();
    let (mut alice_log, mut bob_log) = (RoomLog::default(), RoomLog::default());
    let entries = |l: &RoomLog, operation: &str, key: &str| {
        l.notices
            .iter()
            .filter(|n| n.operation == operation && n.key.as_deref() == Some(key))
            .count()
    };
    let view = |entries: Vec<tidings_client::ChatroomEntry>| -> Vec<(String, String, String)> {
        entries
            .into_iter()
            .map(|e| (e.key, e.value, e.user_id))
            .collect()
    };

    alice
        .set_chatroom_entry(&room, "topic", "rust", false, false)
        .await
        .unwrap();
    bob_log
        .until(&mut bob_events, |l| entries(l, "entry", "topic") == 1)
        .await;
    assert_eq!(
        view(bob.chatroom_entries(&room, &[]).await.unwrap()),
        [("topic".into(), "rust".into(), "alice".into())]
    );
    let taken = bob
        .set_chatroom_entry(&room, "topic", "go", false, false)
        .await;
    assert_eq!(refused(taken), Code::ChatroomEntryTaken.as_u32());

    // One key set on both nodes at once: both end with the one the home numbered last.
    let (x, y) = tokio::join!(
        alice.set_chatroom_entry(&room, "score", "1", true, false),
        bob.set_chatroom_entry(&room, "score", "2", true, false)
    );
    x.unwrap();
    y.unwrap();
    alice_log
        .until(&mut alice_events, |l| entries(l, "entry", "score") == 2)
        .await;
    bob_log
        .until(&mut bob_events, |l| entries(l, "entry", "score") == 2)
        .await;
    let last = |l: &RoomLog| {
        l.notices
            .iter()
            .filter(|n| n.operation == "entry" && n.key.as_deref() == Some("score"))
            .max_by_key(|n| n.seq)
            .and_then(|n| n.value.clone())
    };
    assert_eq!(last(&alice_log), last(&bob_log), "one order of notices");
    let score = |entries: Vec<tidings_client::ChatroomEntry>| {
        entries.into_iter().map(|e| e.value).collect::<Vec<_>>()
    };
    let on_a = score(alice.chatroom_entries(&room, &["score"]).await.unwrap());
    let on_b = score(bob.chatroom_entries(&room, &["score"]).await.unwrap());
    assert_eq!(on_a, on_b, "the nodes agree on the entry");
    assert_eq!(on_a, [last(&alice_log).unwrap()]);

    alice
        .remove_chatroom_entry(&room, "topic", false)
        .await
        .unwrap();
    bob_log
        .until(&mut bob_events, |l| {
            entries(l, "entry-remove", "topic") == 1
        })
        .await;
    assert!(
        bob.chatroom_entries(&room, &["topic"])
            .await
            .unwrap()
            .is_empty()
    );
}

on_each_bus!(a_node_that_takes_a_chatroom_in_learns_what_it_holds_from_the_home);

/// A room made by joins on node a (its home), with a ban, a mute, an entry and messages made
/// there while node b did not have the room: b asks the home when it takes the room in, so the
/// ban and the mute hold there, and the entry and the recent messages are seen.
async fn a_node_that_takes_a_chatroom_in_learns_what_it_holds_from_the_home(cluster: Cluster) {
    let (a, b) = two_nodes(&cluster).await;
    let room = room_at_home(&a, "lobby", "a");
    let engine_a = a.running().engine.clone();
    let (alice, _alice_events) = a.client("alice", "phone").await;
    alice.join_chatroom(&room, 0).await.unwrap();
    engine_a
        .chatroom_kick(&room, &["eve".to_string()], Some(i64::MAX))
        .await
        .unwrap();
    engine_a
        .chatroom_mute(&room, Some(&["bob".to_string()]), i64::MAX)
        .await
        .unwrap();
    alice
        .set_chatroom_entry(&room, "topic", "rust", false, false)
        .await
        .unwrap();
    for text in ["one", "two", "three"] {
        alice
            .send(Outgoing::chatroom_text(&room, text))
            .await
            .unwrap();
    }

    let (eve, _eve_events) = b.client("eve", "phone").await;
    assert_eq!(
        refused(eve.join_chatroom(&room, 0).await),
        Code::KickedFromChatroom.as_u32()
    );
    let (bob, _bob_events) = b.client("bob", "phone").await;
    // The room's recent messages, from before node b had the room.
    let joined = bob.join_chatroom(&room, 10).await.unwrap();
    assert_eq!(
        joined.recent.iter().map(text_of).collect::<Vec<_>>(),
        ["one", "two", "three"]
    );
    assert_eq!(
        refused(bob.send(Outgoing::chatroom_text(&room, "hi")).await),
        Code::MutedInChatroom.as_u32()
    );
    let entries = bob.chatroom_entries(&room, &[]).await.unwrap();
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.user_id.as_str()))
            .collect::<Vec<_>>(),
        [("topic", "rust", "alice")]
    );
}

on_each_bus!(a_chatrooms_member_count_and_its_limit_span_the_nodes);

/// A kept room of at most 3 members, homed on node a: the member count read on either node
/// counts the members on both, a join past the limit is refused on the node that has room
/// for it alone, and the members of a node that stops are no longer counted.
async fn a_chatrooms_member_count_and_its_limit_span_the_nodes(cluster: Cluster) {
    let (a, mut b) = two_nodes(&cluster).await;
    let room = room_at_home(&a, "hall", "a");
    let engine_a = a.running().engine.clone();
    engine_a
        .create_chatroom(&room, "Hall".into(), String::new(), Some(3))
        .await
        .unwrap();
    let (alice, _alice_events) = a.client("alice", "phone").await;
    let (carol, _carol_events) = a.client("carol", "phone").await;
    let (bob, _bob_events) = b.client("bob", "phone").await;
    let (dave, _dave_events) = b.client("dave", "phone").await;
    alice.join_chatroom(&room, 0).await.unwrap();
    bob.join_chatroom(&room, 0).await.unwrap();
    let count = |client: &tidings_client::Client| {
        let (client, room) = (client.clone(), room.clone());
        async move { client.chatroom(&room).await.unwrap().member_count }
    };
    eventually("both nodes count alice and bob", || async {
        count(&alice).await == 2 && count(&bob).await == 2
    })
    .await;
    carol.join_chatroom(&room, 0).await.unwrap();
    eventually("node b counts carol", || async { count(&bob).await == 3 }).await;
    // Node b has one member of its own, but the room is full.
    assert_eq!(
        refused(dave.join_chatroom(&room, 0).await),
        Code::ChatroomFull.as_u32()
    );
    bob.quit_chatroom(&room).await.unwrap();
    eventually("node a no longer counts bob", || async {
        count(&alice).await == 2
    })
    .await;
    dave.join_chatroom(&room, 0).await.unwrap();
    eventually("node a counts dave", || async { count(&alice).await == 3 }).await;

    // Node b stops: its members are not counted any more.
    drop((bob, dave));
    b.shutdown().await;
    formed(&[&a]).await;
    eventually("node a counts only its own", || async {
        count(&alice).await == 2
    })
    .await;
}

on_each_bus!(a_chatrooms_member_pages_list_the_members_of_every_node);

/// Three members on node a and two on node b: pages of two, read on either node, list all five
/// once each, in the order they joined.
async fn a_chatrooms_member_pages_list_the_members_of_every_node(cluster: Cluster) {
    let (a, b) = two_nodes(&cluster).await;
    let room = room_at_home(&a, "court", "a");
    let mut clients = Vec::new();
    for (name, node) in [
        ("alice", &a),
        ("bob", &b),
        ("carol", &a),
        ("dave", &b),
        ("erin", &a),
    ] {
        let (client, events) = node.client(name, "phone").await;
        client.join_chatroom(&room, 0).await.unwrap();
        clients.push((client, events));
    }
    let count = |client: &tidings_client::Client| {
        let (client, room) = (client.clone(), room.clone());
        async move { client.chatroom(&room).await.unwrap().member_count }
    };
    eventually("both nodes count all five", || async {
        count(&clients[0].0).await == 5 && count(&clients[1].0).await == 5
    })
    .await;
    for (reader, _) in [&clients[0], &clients[1]] {
        let mut listed = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = reader
                .chatroom_members(&room, 2, token.as_deref())
                .await
                .unwrap();
            assert!(page.members.len() <= 2);
            listed.extend(page.members);
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        let mut users: Vec<&str> = listed.iter().map(|m| m.user_id.as_str()).collect();
        assert!(
            listed
                .windows(2)
                .all(|w| w[0].joined_time <= w[1].joined_time),
            "in the order they joined: {listed:?}"
        );
        users.sort();
        assert_eq!(users, ["alice", "bob", "carol", "dave", "erin"]);
    }
}

on_each_bus!(the_app_servers_calls_reach_a_chatroom_on_a_node_that_does_not_have_it);

/// A room made by joins on node a (its home): node b, which has no member of it, takes the
/// app server's calls for it (read, mute, kick) instead of answering that it does not exist.
async fn the_app_servers_calls_reach_a_chatroom_on_a_node_that_does_not_have_it(cluster: Cluster) {
    let (a, b) = two_nodes(&cluster).await;
    let room = room_at_home(&a, "stage", "a");
    let (alice, mut alice_events) = a.client("alice", "phone").await;
    alice.join_chatroom(&room, 0).await.unwrap();
    let engine_b = b.running().engine.clone();
    assert_eq!(engine_b.chatroom(&room).await.unwrap().member_count, 1);
    assert!(
        engine_b.chatroom("no-such-room").await.is_err(),
        "a room no node has is still not found"
    );

    engine_b
        .chatroom_mute(&room, Some(&["alice".to_string()]), i64::MAX)
        .await
        .unwrap();
    let mut log = RoomLog::default();
    log.until(&mut alice_events, |l| l.noticed("mute", "alice"))
        .await;
    assert_eq!(
        refused(alice.send(Outgoing::chatroom_text(&room, "hi")).await),
        Code::MutedInChatroom.as_u32()
    );
    engine_b
        .chatroom_kick(&room, &["alice".to_string()], None)
        .await
        .unwrap();
    log.until(&mut alice_events, |l| l.noticed("kick", "alice"))
        .await;
}

/// `tidings serve` processes of one cluster on the test's PostgreSQL database and NATS server:
/// the first makes the app credentials, the others get a copy.
struct Processes {
    dirs: Vec<tempfile::TempDir>,
    nodes: Vec<crate::process::ServerProcess>,
    store: String,
}

impl Processes {
    fn start(cluster: &Cluster, db: &TestDatabase, names: &[&str]) -> Processes {
        let mut p = Processes {
            dirs: Vec::new(),
            nodes: Vec::new(),
            store: db.url.clone(),
        };
        for name in names {
            let dir = tempfile::tempdir().unwrap();
            if let Some(first) = p.dirs.first() {
                std::fs::create_dir_all(dir.path().join("data")).unwrap();
                std::fs::copy(
                    first.path().join("data/credentials.toml"),
                    dir.path().join("data/credentials.toml"),
                )
                .unwrap();
            }
            let args = [
                "--store",
                &db.url,
                "--nats",
                cluster.nats(),
                "--cluster",
                &cluster.name,
                "--node-id",
                name,
                "--alive-ms",
                "100",
            ];
            p.nodes
                .push(crate::process::ServerProcess::start(dir.path(), &args));
            p.dirs.push(dir);
        }
        p
    }

    fn url(&self, node: usize) -> &str {
        &self.nodes[node].url
    }

    async fn client(
        &self,
        node: usize,
        user: &str,
    ) -> (tidings_client::Client, tidings_client::Events) {
        let token = crate::process::token_with(
            &self.dirs[0].path().join("data"),
            user,
            &["--store", &self.store],
        );
        let mut c = tidings_client::ClientConfig::new(self.url(node), token);
        c.device_id = "phone".into();
        c.reconnect_delays = vec![Duration::from_millis(50)];
        tidings_client::Client::connect(c).await.unwrap()
    }

    /// A signed HTTP API request to node `node`.
    async fn api(&self, node: usize, path: &str, body: Value) -> (u16, Value) {
        crate::util::post_signed(
            &self.dirs[0].path().join("data"),
            self.url(node),
            path,
            body,
        )
        .await
    }
}

#[tokio::test]
async fn three_processes_serve_one_to_one_groups_chatrooms_and_kicks() {
    let test = "three_processes_serve_one_to_one_groups_chatrooms_and_kicks";
    let Some(cluster) = Cluster::new(test).await else {
        return;
    };
    let Some(db) = &cluster.db else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: set TIDINGS_TEST_POSTGRES_URL: separate processes share a database"
        );
        return;
    };
    let p = Processes::start(&cluster, db, &["a", "b", "c"]);
    // Every node lists the other two before rooms pick their home.
    for node in 0..3 {
        let url = p.url(node).to_string();
        eventually("the node lists all three", || async {
            let url = url.clone();
            tokio::task::spawn_blocking(move || {
                let mut r = crate::util::agent()
                    .get(format!("{url}/navi"))
                    .call()
                    .unwrap();
                let navi: Value = r.body_mut().read_json().unwrap();
                navi["nodes"].as_array().unwrap().len() == 3
            })
            .await
            .unwrap()
        })
        .await;
    }

    // One-to-one across processes.
    let (kim, mut kim_events) = p.client(0, "kim").await;
    let (lee, mut lee_events) = p.client(1, "lee").await;
    let (moe, mut moe_events) = p.client(2, "moe").await;
    kim.send(Outgoing::text("lee", "a to b")).await.unwrap();
    assert_eq!(text_of(&next_message(&mut lee_events).await), "a to b");
    lee.send(Outgoing::text("kim", "b to a")).await.unwrap();
    assert_eq!(text_of(&next_message(&mut kim_events).await), "b to a");

    // A group spread over the three.
    let (status, body) = p
        .api(
            1,
            "/api/v1/groups",
            json!({ "groupId": "three", "ownerId": "kim", "name": "T", "memberIds": ["lee", "moe"] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    moe.send(Outgoing::group_text("three", "from c"))
        .await
        .unwrap();
    for events in [&mut kim_events, &mut lee_events] {
        let m = next_people_message(events).await;
        assert_eq!(
            (m.sender_id.as_str(), text_of(&m)),
            ("moe", "from c".into())
        );
    }

    // A chatroom across the three: each member gets the others' messages (a sender is answered
    // by its PUBACK, not its own item), each with the one seq the room gave it.
    for c in [&kim, &lee, &moe] {
        c.join_chatroom("hall", 0).await.unwrap();
    }
    let k = kim
        .send(tidings_client::Outgoing::chatroom_text("hall", "k"))
        .await
        .unwrap();
    let m = moe
        .send(tidings_client::Outgoing::chatroom_text("hall", "m"))
        .await
        .unwrap();
    let mut seen = HashMap::new();
    for (who, events, expect) in [
        ("kim", &mut kim_events, 1),
        ("lee", &mut lee_events, 2),
        ("moe", &mut moe_events, 1),
    ] {
        let mut got = Vec::new();
        while got.len() < expect {
            if let tidings_client::ChatroomEvent::Message(msg) =
                crate::chatrooms::next_room_event(events).await
            {
                got.push((text_of(&msg), msg.seq));
            }
        }
        assert!(got.windows(2).all(|w| w[0].1 < w[1].1), "{who}: {got:?}");
        for (text, seq) in got {
            assert_eq!(
                *seen.entry(text).or_insert(seq),
                seq,
                "{who} saw another seq"
            );
        }
    }
    assert_eq!(seen.get("k"), Some(&k.seq));
    assert_eq!(seen.get("m"), Some(&m.seq));

    // A kick across processes: the same device connecting to another node replaces the first.
    let (_kim_again, _e) = p.client(2, "kim").await;
    loop {
        match next_terminal(&mut kim_events).await {
            Event::Kicked { code, .. } => {
                assert_eq!(code, Code::Kicked.as_u32());
                break;
            }
            _ => continue,
        }
    }
}

#[tokio::test]
async fn readyz_says_when_the_bus_is_cut_off() {
    let Some(cluster) = Cluster::new("readyz_says_when_the_bus_is_cut_off").await else {
        return;
    };
    let upstream = cluster.nats_addr();
    let proxy = FaultProxy::start(upstream).await;
    let node = TestServer::start_with(cluster.tune("a", &format!("nats://{}", proxy.addr))).await;
    let readyz = || async { http(&node, "GET", "/readyz", Vec::new(), None).await };
    let (status, body) = readyz().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"status": "ready", "store": "ok", "bus": "ok"})
    );

    proxy.cut.send(true).unwrap();
    eventually("not ready while cut off", || async {
        let (status, body) = readyz().await;
        status == 503
            && body
                == serde_json::json!({"status": "not ready", "store": "ok", "bus": "disconnected"})
    })
    .await;
    proxy.cut.send(false).unwrap();
    eventually("ready once back", || async { readyz().await.0 == 200 }).await;
}

/// The bus and the PostgreSQL writer report their metrics: a message from one process's user
/// to another's is published on the bus by the first and received by the second, and both
/// commit through their PostgreSQL writers.
#[tokio::test]
async fn two_processes_report_bus_and_postgres_writer_metrics() {
    let test = "two_processes_report_bus_and_postgres_writer_metrics";
    let Some(cluster) = Cluster::new(test).await else {
        return;
    };
    let Some(db) = &cluster.db else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: set TIDINGS_TEST_POSTGRES_URL: separate processes share a database"
        );
        return;
    };
    let p = Processes::start(&cluster, db, &["a", "b"]);
    let (kim, _kim_events) = p.client(0, "kim").await;
    let (_lee, mut lee_events) = p.client(1, "lee").await;
    kim.send(Outgoing::text("lee", "a to b")).await.unwrap();
    assert_eq!(text_of(&next_message(&mut lee_events).await), "a to b");
    let metrics = |node: usize| p.nodes[node].metrics_url().expect("a metrics line");
    let moved = |checks: Vec<(&'static str, bool)>| match checks.iter().find(|(_, ok)| !ok) {
        Some((what, _)) => Err(what.to_string()),
        None => Ok(()),
    };
    crate::metrics::scrape_until(&metrics(0), |s| {
        moved(vec![
            (
                "published",
                s.sum("tidings_bus_publishes_total", &[("outcome", "sent")]) >= 1.0,
            ),
            (
                "committed",
                s.sum("tidings_store_commit_seconds_count", &[]) >= 1.0,
            ),
            ("batched", s.sum("tidings_store_batch_ops_sum", &[]) >= 1.0),
        ])
    })
    .await;
    crate::metrics::scrape_until(&metrics(1), |s| {
        moved(vec![(
            "received",
            s.sum("tidings_bus_received_total", &[]) >= 1.0,
        )])
    })
    .await;
}

on_each_bus!(an_operators_session_holds_on_every_node_and_a_kick_reaches_another_nodes_device);

async fn an_operators_session_holds_on_every_node_and_a_kick_reaches_another_nodes_device(
    cluster: Cluster,
) {
    use tidings_store::{AdminOp, OperatorRecord};
    let a = cluster.first().await;
    let b = cluster.next(&a, "b").await;
    a.running()
        .store
        .admin(AdminOp::SetOperator(OperatorRecord {
            name: "root".into(),
            password_hash: tidings_engine::hash_password(crate::admin::PASSWORD).unwrap(),
            created: 0,
        }))
        .await
        .unwrap();
    let id = crate::admin::login(&a, "root").await;
    let s = Some(id.as_str());
    let (status, me, _) = crate::admin::call(&b, "GET", "/admin/api/me", s, &[], None).await;
    assert_eq!(
        (status, me["operator"].as_str()),
        (200, Some("root")),
        "{me}"
    );

    let (_ann, mut ann_events) = b.client("ann", "phone").await;
    eventually("node a sees ann online on node b", || async {
        let (_, d, _) =
            crate::admin::call(&a, "GET", "/admin/api/users/ann/devices", s, &[], None).await;
        d["onlineElsewhere"] == true && d["devices"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    let (status, kicked, _) = crate::admin::call(
        &a,
        "POST",
        "/admin/api/users/ann/kick",
        s,
        &[],
        Some(json!({ "deviceId": "phone" })),
    )
    .await;
    assert_eq!(status, 200, "{kicked}");
    match next_terminal(&mut ann_events).await {
        Event::Kicked { code, .. } => assert_eq!(code, Code::KickedByOperator.as_u32()),
        other => panic!("{other:?}"),
    }

    // Signed out on one node, out on every node.
    let (status, ..) = crate::admin::call(&b, "POST", "/admin/api/logout", s, &[], None).await;
    assert_eq!(status, 200);
    let (status, ..) = crate::admin::call(&a, "GET", "/admin/api/me", s, &[], None).await;
    assert_eq!(status, 401);
}
