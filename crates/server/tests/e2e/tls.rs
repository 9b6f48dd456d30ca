//! TLS on the listener: the delivery exchange over WSS with a private CA, HTTPS for the API and
//! `/navi`, the certificate reloaded (on a file change and on SIGHUP) without dropping
//! connections, the handshake under the request deadline and the connection caps, the plain
//! health listener, and the CLI and bench with `--ca-file`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tidings_client::{ChatroomEvent, Client, ClientConfig, Event, Outgoing, Status};
use tidings_server::config::TlsFiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::process::{BIN, ServerProcess, token};
use crate::util::*;

/// A private CA.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, as PEM, and the certificate as DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for 127.0.0.1 and localhost, with a key of its own.
    fn leaf(&self, name: &str) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// The certificate and key files of a server, in a directory of their own.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(leaf: &Leaf) -> Files {
        let files = Files {
            dir: tempfile::tempdir().unwrap(),
        };
        files.write(leaf);
        files
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// Replaces both files, each whole at once (written aside, then renamed over), as a
    /// renewal should.
    fn write(&self, leaf: &Leaf) {
        for (path, text) in [(self.key(), &leaf.key_pem), (self.cert(), &leaf.cert_pem)] {
            let aside = path.with_extension("new");
            std::fs::write(&aside, text).unwrap();
            std::fs::rename(&aside, &path).unwrap();
        }
    }

    fn settings(&self, watch: Duration) -> TlsFiles {
        TlsFiles {
            cert: self.cert(),
            key: self.key(),
            watch,
        }
    }
}

fn trusting(ca: &Ca) -> Arc<tidings_client::rustls::ClientConfig> {
    tidings_client::tls::with_extra_ca(ca.pem().as_bytes()).unwrap()
}

async fn tls_server(files: &Files, tune: impl FnOnce(&mut tidings_server::Config)) -> TestServer {
    TestServer::start_with(|c| {
        // Checked often, so a test waits little for a change to be seen.
        c.tls = Some(files.settings(Duration::from_millis(50)));
        tune(c);
    })
    .await
}

async fn tls_config(server: &TestServer, ca: &Ca, user: &str, device: &str) -> ClientConfig {
    let mut c = ClientConfig::new(server.running().url(), server.token(user).await);
    c.device_id = device.into();
    c.reconnect_delays = vec![Duration::from_millis(50)];
    c.tls = Some(trusting(ca));
    c
}

/// The certificate a new TLS connection to `addr` is served, for a client trusting `ca`; an
/// error if the handshake fails.
async fn served_certificate(addr: std::net::SocketAddr, ca: &Ca) -> Result<Vec<u8>, String> {
    let connector = tokio_rustls::TlsConnector::from(trusting(ca));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
    Ok(session.peer_certificates().unwrap()[0].to_vec())
}

/// The certificate new connections are served once a client trusting `ca` completes a
/// handshake (waiting for a reload to take effect).
async fn certificate_once_trusted(addr: std::net::SocketAddr, ca: &Ca) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match served_certificate(addr, ca).await {
            Ok(der) => return der,
            Err(e) if tokio::time::Instant::now() > deadline => {
                panic!("no handshake trusting the CA succeeded: {e}")
            }
            // The back-off between handshakes: the loop ends when one succeeds.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn https_client(ca: &Ca) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls((*trusting(ca)).clone())
        .build()
        .unwrap()
}

/// Alice sends to Bob: the PUBACK, then Bob's copy, which Bob acknowledges: the server stores
/// his device's cursor past it.
async fn exchange(server: &TestServer, ca: &Ca, alice: &str, bob: &str, text: &str) {
    let (alice_client, _a) = Client::connect(tls_config(server, ca, alice, "phone").await)
        .await
        .unwrap();
    let mut bob_config = tls_config(server, ca, bob, "phone").await;
    bob_config.auto_ack = false;
    let (bob_client, mut bob_events) = Client::connect(bob_config).await.unwrap();
    let sent = alice_client.send(Outgoing::text(bob, text)).await.unwrap();
    let got = next_message(&mut bob_events).await;
    assert_eq!((got.uid.as_str(), got.seq), (sent.uid.as_str(), sent.seq));
    assert_eq!(got.content, serde_json::json!({ "text": text }).to_string());
    bob_client.ack(got.inbox_seq).await;
    let store = server.running().store.clone();
    eventually("the server records Bob's acknowledgement", || {
        let store = store.clone();
        async move { store.device_cursor(bob, "phone").await.unwrap() >= got.inbox_seq }
    })
    .await;
    bob_client.close().await;
    alice_client.close().await;
}

#[tokio::test]
async fn delivery_navi_and_the_api_over_tls() {
    let ca = Ca::new("Tidings test CA");
    let files = Files::new(&ca.leaf("first"));
    let server = tls_server(&files, |_| {}).await;
    let base = server.running().url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");

    exchange(&server, &ca, "alice", "bob", "over wss").await;

    let https = https_client(&ca);
    // `/navi` names the node as the request reached it, with TLS's schemes.
    let navi: serde_json::Value = https
        .get(format!("{base}/navi"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let addr = server.running().addr;
    assert_eq!(navi["nodes"][0]["http"], format!("https://{addr}"));
    assert_eq!(navi["nodes"][0]["ws"], format!("wss://{addr}/v1/ws"));
    assert_eq!(navi["nodes"][0]["poll"], format!("https://{addr}/v1/poll"));

    // A signed API call: Bob's profile.
    let path = "/api/v1/users/bob";
    let mut request = https.get(format!("{base}{path}"));
    for (name, value) in signed(&server, "tls-1", now_ms(), "GET", path, "") {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], 0, "{body}");

    // Configured public URLs are listed as they are.
    let other = tls_server(&files, |c| {
        c.public_urls = vec!["https://chat.example.com".into()];
    })
    .await;
    let navi: serde_json::Value = https
        .get(format!("{}/navi", other.running().url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(navi["nodes"][0]["ws"], "wss://chat.example.com/v1/ws");
}

/// A room's items reach members over TLS whole and in order: a room's fan-out writes to plain
/// sockets directly, and must never do so to a TLS one (its bytes would break the stream).
#[tokio::test]
async fn chatroom_items_reach_members_over_tls() {
    let ca = Ca::new("Tidings test CA");
    let files = Files::new(&ca.leaf("first"));
    let server = tls_server(&files, |_| {}).await;
    let (alice, _alice_events) = Client::connect(tls_config(&server, &ca, "alice", "phone").await)
        .await
        .unwrap();
    let (bob, mut bob_events) = Client::connect(tls_config(&server, &ca, "bob", "phone").await)
        .await
        .unwrap();
    alice.join_chatroom("hall", 0).await.unwrap();
    bob.join_chatroom("hall", 0).await.unwrap();
    for i in 0..50 {
        alice
            .send(Outgoing::chatroom_text("hall", &format!("room {i}")))
            .await
            .unwrap();
    }
    // On one connection: a broken stream would make the SDK reconnect and rejoin, and present
    // the missed items from the room's history, hiding the break but for the status events.
    let mut i = 0;
    while i < 50 {
        match tokio::time::timeout(WAIT, bob_events.recv()).await {
            Ok(Some(Event::Chatroom(ChatroomEvent::Message(m)))) => {
                assert_eq!(m.content, format!(r#"{{"text":"room {i}"}}"#));
                i += 1;
            }
            Ok(Some(Event::Status(Status::Disconnected { code, reason }))) => {
                panic!("bob's connection broke after {i} items: {code} {reason}")
            }
            Ok(Some(_)) => {}
            other => panic!("after {i} items: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_client_without_the_ca_or_without_tls_is_refused_not_left_hanging() {
    let ca = Ca::new("Tidings test CA");
    let files = Files::new(&ca.leaf("first"));
    let server = tls_server(&files, |_| {}).await;
    let addr = server.running().addr;

    // The public CAs alone do not vouch for a private CA's certificate.
    let mut config = tls_config(&server, &ca, "alice", "phone").await;
    config.tls = None;
    let refused = Client::connect(config).await;
    assert!(refused.is_err(), "connected without trusting the CA");

    // Plain HTTP to the TLS port: a plain 400 that says so, then the connection closes.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("speaks HTTPS"), "{answer}");

    // A plain WebSocket client to the TLS port fails at once.
    let mut config = tls_config(&server, &ca, "alice", "phone").await;
    config.server = format!("ws://{addr}/v1/ws");
    assert!(Client::connect(config).await.is_err());
}

/// Reads until the server closes the socket; true if it did within [`WAIT`].
async fn closed_by_server(tcp: &mut tokio::net::TcpStream) -> bool {
    let mut scratch = [0u8; 256];
    loop {
        match tokio::time::timeout(WAIT, tcp.read(&mut scratch)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_handshake_that_never_comes_is_closed_by_the_request_deadline() {
    let ca = Ca::new("Tidings test CA");
    let files = Files::new(&ca.leaf("first"));
    let server = tls_server(&files, |c| {
        c.request_timeout = Duration::from_millis(300);
    })
    .await;
    let addr = server.running().addr;
    // One sends nothing at all; one starts a TLS record and stops.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    assert!(
        closed_by_server(&mut silent).await,
        "the silent socket stays open"
    );
    assert!(
        closed_by_server(&mut stalled).await,
        "the stalled handshake stays open"
    );
    // The server still serves.
    assert!(served_certificate(addr, &ca).await.is_ok());
}

#[tokio::test]
async fn a_socket_in_its_handshake_counts_against_the_unauthenticated_caps() {
    let ca = Ca::new("Tidings test CA");
    let files = Files::new(&ca.leaf("first"));
    // A deadline far past the test's wait: only making room can close the silent socket.
    let server = tls_server(&files, |c| {
        c.max_unauthenticated_per_address = 1;
        c.request_timeout = Duration::from_secs(600);
    })
    .await;
    let addr = server.running().addr;
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    eventually(
        "a newcomer from the same address closes the silent socket",
        || {
            let (silent, ca) = (&silent, &ca);
            async move {
                // Each newcomer is the newest; whichever was older was closed for it.
                let _ = served_certificate(addr, ca).await;
                let mut scratch = [0u8; 64];
                !matches!(silent.try_read(&mut scratch), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_full_server_refuses_with_503_over_tls() {
    let ca = Ca::new("Tidings test CA");
    let files = Files::new(&ca.leaf("first"));
    let server = tls_server(&files, |c| c.max_connections = Some(1)).await;
    // The one connection authenticates, so there is nothing to close to make room.
    let (_alice, _a) = Client::connect(tls_config(&server, &ca, "alice", "phone").await)
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(trusting(&ca));
    let tcp = tokio::net::TcpStream::connect(server.running().addr)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut answer = Vec::new();
    // The answer ends with TLS's close_notify; a reset after it is not an error here.
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut answer))
        .await
        .expect("the refusal completes");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("41006"), "{answer}");
}

#[tokio::test]
async fn a_changed_certificate_serves_new_handshakes_and_keeps_open_connections() {
    let old_ca = Ca::new("Old CA");
    let old = old_ca.leaf("old");
    let files = Files::new(&old);
    let server = tls_server(&files, |_| {}).await;
    let addr = server.running().addr;
    assert_eq!(served_certificate(addr, &old_ca).await.unwrap(), old.der);

    // Connections opened before the change.
    let (alice, _a) = Client::connect(tls_config(&server, &old_ca, "alice", "phone").await)
        .await
        .unwrap();
    let (bob, mut bob_events) = Client::connect(tls_config(&server, &old_ca, "bob", "phone").await)
        .await
        .unwrap();

    // A renewal by another CA, with a new key, written over the same files.
    let new_ca = Ca::new("New CA");
    let new = new_ca.leaf("new");
    files.write(&new);
    assert_eq!(certificate_once_trusted(addr, &new_ca).await, new.der);
    assert_eq!(
        server.running().tls.as_ref().unwrap().certificate(),
        new.der
    );

    // The connections from before still exchange, never having reconnected.
    let sent = alice
        .send(Outgoing::text("bob", "after renewal"))
        .await
        .unwrap();
    assert_eq!(next_message(&mut bob_events).await.uid, sent.uid);
    assert_eq!(alice.stats().await.reconnects, 0);
    assert_eq!(bob.stats().await.reconnects, 0);

    // A new client that trusts only the old CA is refused; one that trusts the new one works.
    assert!(
        Client::connect(tls_config(&server, &old_ca, "carol", "phone").await)
            .await
            .is_err()
    );
    exchange(
        &server,
        &new_ca,
        "carol",
        "dave",
        "with the new certificate",
    )
    .await;

    // Files that do not hold a certificate and its key leave the one in service.
    let tls = server.running().tls.clone().unwrap();
    std::fs::write(files.cert(), "not a certificate").unwrap();
    let e = tls.reload().unwrap_err().to_string();
    assert!(e.contains("no PEM certificate"), "{e}");
    let other = new_ca.leaf("mismatched");
    std::fs::write(files.cert(), &other.cert_pem).unwrap();
    let e = tls.reload().unwrap_err().to_string();
    assert!(e.contains("does not belong to the certificate"), "{e}");
    assert_eq!(served_certificate(addr, &new_ca).await.unwrap(), new.der);
}

#[test]
fn serve_refuses_half_or_bad_tls_settings_at_start() {
    let cwd = tempfile::tempdir().unwrap();
    let ca = Ca::new("Tidings test CA");
    let files = Files::new(&ca.leaf("first"));
    let start = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(cwd.path())
            .env("TIDINGS_LOG", "warn")
            // A metrics port of its own: another server on the machine may hold the default.
            .env("TIDINGS_METRICS_LISTEN", "127.0.0.1:0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let cert = files.cert();
    let key = files.key();
    let cert = cert.to_str().unwrap();
    let key = key.to_str().unwrap();
    let e = start(&["--tls-cert", cert]);
    assert!(e.contains("tls_cert is set without tls_key"), "{e}");
    let e = start(&["--tls-key", key]);
    assert!(e.contains("tls_key is set without tls_cert"), "{e}");
    let e = start(&["--tls-cert", key, "--tls-key", key]);
    assert!(e.contains("holds no PEM certificate"), "{e}");
    let e = start(&["--tls-cert", cert, "--tls-key", cert]);
    assert!(e.contains("holds no PEM private key"), "{e}");
    let missing = cwd.path().join("missing.pem");
    let e = start(&["--tls-cert", missing.to_str().unwrap(), "--tls-key", key]);
    assert!(e.contains("missing.pem"), "{e}");
}

/// `tidings serve` in `cwd` with TLS from `leaf`'s files (returned, to be rewritten), and the
/// path of `ca`'s certificate, written to `ca.pem` in `cwd`.
fn serve_tls(cwd: &Path, ca: &Ca, leaf: &Leaf, extra: &[&str]) -> (ServerProcess, Files, PathBuf) {
    let files = Files::new(leaf);
    let ca_file = cwd.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (cert, key) = (files.cert(), files.key());
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    (ServerProcess::start(cwd, &args), files, ca_file)
}

fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_binary_reloads_on_sighup_and_its_tools_take_a_ca_file() {
    let cwd = tempfile::tempdir().unwrap();
    let old_ca = Ca::new("Old CA");
    let old = old_ca.leaf("old");
    // The files are not watched within the test's time: only SIGHUP reloads.
    let (server, files, ca_file) =
        serve_tls(cwd.path(), &old_ca, &old, &["--tls-watch-ms", "3600000"]);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let addr: std::net::SocketAddr = server.url.trim_start_matches("https://").parse().unwrap();
    let data = cwd.path().join("data");

    // The CLI with the CA file: send, then the conversation list.
    let alice = token(&data, "alice");
    let bob = token(&data, "bob");
    let ca = ca_file.to_str().unwrap();
    let sent: serde_json::Value = serde_json::from_str(&run_ok(Command::new(BIN).args([
        "send",
        "--server",
        &server.url,
        "--token",
        &alice,
        "--ca-file",
        ca,
        "--to",
        "bob",
        "hi",
    ])))
    .unwrap();
    let listed = run_ok(
        Command::new(BIN)
            .args(["conversations", "--server", &server.url, "--token", &bob])
            .env("TIDINGS_CA_FILE", ca),
    );
    let first: serde_json::Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(first["latest"]["uid"], sent["uid"]);
    // Without it, the private CA's certificate is not trusted.
    let out = Command::new(BIN)
        .args([
            "send",
            "--server",
            &server.url,
            "--token",
            &alice,
            "--to",
            "bob",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());

    // A connection from before the reload.
    let mut config = ClientConfig::new(server.url.clone(), token(&data, "carol"));
    config.tls = Some(trusting(&old_ca));
    let (carol, _c) = Client::connect(config).await.unwrap();

    let new_ca = Ca::new("New CA");
    let new = new_ca.leaf("new");
    files.write(&new);
    // Nothing reloads until the signal: the old certificate is still served.
    assert_eq!(served_certificate(addr, &old_ca).await.unwrap(), old.der);
    server.signal(1);
    assert_eq!(certificate_once_trusted(addr, &new_ca).await, new.der);
    // The old connection still sends.
    carol
        .send(Outgoing::text("bob", "still here"))
        .await
        .unwrap();
    assert_eq!(carol.stats().await.reconnects, 0);
}

#[tokio::test]
async fn the_health_listener_serves_health_only_in_plain_http() {
    let ca = Ca::new("Tidings test CA");
    let files = Files::new(&ca.leaf("first"));
    let server = tls_server(&files, |c| {
        c.health_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let health = server.running().health_addr.expect("a health listener");
    let get = |path: &str| {
        let url = format!("http://{health}{path}");
        tokio::task::spawn_blocking(move || {
            let mut answer = agent().get(&url).call().unwrap();
            let status = answer.status().as_u16();
            (status, answer.body_mut().read_to_string().unwrap())
        })
    };
    let (status, body) = get("/healthz").await.unwrap();
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "ok");
    let (status, body) = get("/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "ready");
    for path in ["/navi", "/", "/api/v1/openapi.json", "/v1/ws"] {
        assert_eq!(get(path).await.unwrap().0, 404, "{path}");
    }
    // Without the setting there is none.
    let plain = TestServer::start().await;
    assert_eq!(plain.running().health_addr, None);
}

#[test]
fn the_bench_loads_an_https_server_with_a_ca_file() {
    let cwd = tempfile::tempdir().unwrap();
    let ca = Ca::new("Tidings test CA");
    let (server, _files, ca_file) = serve_tls(
        cwd.path(),
        &ca,
        &ca.leaf("first"),
        &["--max-unauthenticated-per-address", "1000"],
    );
    let runs: [&[&str]; 2] = [
        &["pairs", "--pairs", "2", "--window", "2", "--secs", "1"],
        // From several source addresses: the SDK's own sockets, also over TLS.
        &[
            "connections",
            "--n",
            "8",
            "--hold-secs",
            "1",
            "--sources",
            "2",
        ],
    ];
    for args in runs {
        let out = run_ok(
            Command::new(BIN)
                .arg("bench")
                .args(args)
                .args(["--server", &server.url, "--ca-file"])
                .arg(&ca_file)
                .current_dir(cwd.path()),
        );
        assert!(out.contains("reproduce"), "{out}");
    }
}
