//! Test helpers: a server on port 0 in a temp dir, SDK clients, a raw WebSocket client, signed
//! HTTP requests.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tidings_client::{Client, ClientConfig, Event, Events, Message};
use tidings_proto::v1::{self, frame::Body};
use tidings_proto::{Encoding, codec};
use tidings_server::{Config, Running};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Long enough for anything on a loaded 2-core machine; only reached when a test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_with_clock(tune, tidings_engine::system_clock()).await
    }

    /// A server whose time comes from `clock`.
    pub async fn start_with_clock(
        tune: impl FnOnce(&mut Config),
        clock: tidings_engine::Clock,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::with_data_dir(dir.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        // Tests send faster than a person; the limit has its own test.
        config.send_rate = 0;
        // The tests' push services listen on 127.0.0.1; the default refusal has its own test.
        config.mobile_push.allow_private_endpoints = true;
        tune(&mut config);
        let running = tidings_server::start_with_clock(&config, clock)
            .await
            .unwrap();
        TestServer {
            running: Some(running),
            dir,
        }
    }

    /// Another node of `first`'s cluster: a data directory with a copy of its app credentials
    /// and VAPID key (as the nodes of a cluster share them), and its own connection to the
    /// store `tune` sets, or, with `share_store`, `first`'s store itself.
    pub async fn start_beside(
        first: &TestServer,
        share_store: bool,
        tune: impl FnOnce(&mut Config),
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        for file in ["credentials.toml", "vapid.key"] {
            let from = first.dir.path().join(file);
            if from.exists() {
                std::fs::copy(&from, dir.path().join(file)).unwrap();
            }
        }
        let mut config = Config::with_data_dir(dir.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.send_rate = 0;
        config.mobile_push.allow_private_endpoints = true;
        tune(&mut config);
        let running = if share_store {
            let store = first.running().store.clone();
            tidings_server::start_with_store(&config, store).await
        } else {
            tidings_server::start(&config).await
        };
        TestServer {
            running: Some(running.unwrap()),
            dir,
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.running().addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.running().addr)
    }

    pub async fn token(&self, user: &str) -> String {
        self.running()
            .engine
            .mint_token(user, None)
            .await
            .unwrap()
            .0
    }

    pub async fn config(&self, user: &str, device: &str) -> ClientConfig {
        let mut c = ClientConfig::new(self.url(), self.token(user).await);
        c.device_id = device.into();
        c.reconnect_delays = vec![Duration::from_millis(50)];
        c
    }

    pub async fn client(&self, user: &str, device: &str) -> (Client, Events) {
        Client::connect(self.config(user, device).await)
            .await
            .unwrap()
    }

    pub async fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.unwrap();
        }
    }

    /// Shuts down and starts again on the same data directory, with the default settings.
    pub async fn restart(mut self) -> TestServer {
        self.shutdown().await;
        let mut config = Config::with_data_dir(self.dir.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.send_rate = 0;
        config.mobile_push.allow_private_endpoints = true;
        TestServer {
            running: Some(tidings_server::start(&config).await.unwrap()),
            dir: self.dir,
        }
    }
}

/// The next message event, skipping status events.
pub async fn next_message(events: &mut Events) -> Message {
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(Event::Message(m))) => return m,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event stream ended"),
            Err(_) => panic!("no message within {WAIT:?}"),
        }
    }
}

/// The next event that is not a message or a status change.
pub async fn next_terminal(events: &mut Events) -> Event {
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(Event::Message(_) | Event::Status(_) | Event::Conversation(_))) => continue,
            Ok(Some(e)) => return e,
            Ok(None) => panic!("event stream ended"),
            Err(_) => panic!("no event within {WAIT:?}"),
        }
    }
}

/// The next conversation change event, skipping messages and status events.
pub async fn next_change(events: &mut Events) -> tidings_client::ConversationChange {
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(Event::Conversation(c))) => return c,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event stream ended"),
            Err(_) => panic!("no conversation event within {WAIT:?}"),
        }
    }
}

/// Messages already waiting in the stream, without waiting for more.
pub fn drain_messages(events: &mut Events) -> Vec<Message> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::Message(m) = e {
            out.push(m);
        }
    }
    out
}

/// Keeps every message `events` gives from now on, in a list a test reads as it fills.
pub fn collect_messages(mut events: Events) -> Arc<std::sync::Mutex<Vec<Message>>> {
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let got = received.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let Event::Message(m) = e {
                got.lock().unwrap().push(m);
            }
        }
    });
    received
}

/// Polls `check` until it holds or `WAIT` passes.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, WAIT, check).await
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually_within<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        // The back-off between checks, not a wait in itself: the loop ends when `check` holds.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A client's TCP stream whose writes can be stopped: a client that still reads but answers
/// nothing, not even the server's WebSocket Pings (which the WebSocket layer sends by itself).
pub struct Mutable {
    inner: tokio::net::TcpStream,
    muted: Arc<AtomicBool>,
}

impl tokio::io::AsyncRead for Mutable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Mutable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.muted.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub type TestWs = tokio_tungstenite::WebSocketStream<Mutable>;

/// Opens a WebSocket to `path` on the server, over a stream that `mute` can silence.
async fn ws_open(server: &TestServer, path: &str) -> (TestWs, Arc<AtomicBool>) {
    let addr = server.running().addr;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let muted = Arc::new(AtomicBool::new(false));
    let stream = Mutable {
        inner: tcp,
        muted: muted.clone(),
    };
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    (ws, muted)
}

/// A raw native-protocol connection, for what the SDK never sends.
pub struct Raw {
    ws: TestWs,
    muted: Arc<AtomicBool>,
    pub encoding: Encoding,
}

/// What a raw read got.
#[allow(clippy::large_enum_variant)] // boxing would make every pattern in the tests clumsier
#[derive(Debug)]
pub enum Got {
    Frame(v1::Frame),
    Closed,
}

impl Raw {
    pub async fn open(server: &TestServer, encoding: Encoding) -> Raw {
        let (ws, muted) = ws_open(server, "/v1/ws").await;
        Raw {
            ws,
            muted,
            encoding,
        }
    }

    /// From now on nothing this client writes reaches the server: it reads on, but answers no
    /// WebSocket Ping.
    pub fn mute(&self) {
        self.muted.store(true, Ordering::Relaxed);
    }

    /// Opens and completes a CONNECT for `user`.
    pub async fn connected(server: &TestServer, user: &str, encoding: Encoding) -> Raw {
        let mut raw = Raw::open(server, encoding).await;
        raw.log_in(&server.token(user).await).await;
        raw
    }

    /// Sends a CONNECT with `token` and expects it accepted.
    pub async fn log_in(&mut self, token: &str) {
        self.send(connect(token)).await;
        match self.recv().await {
            Got::Frame(v1::Frame {
                body: Some(Body::Connack(ack)),
                ..
            }) => assert_eq!(ack.code, 0, "{}", ack.message),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, frame: v1::Frame) {
        let bytes = codec::encode(&frame, self.encoding).expect("a test frame encodes");
        self.send_raw(bytes).await;
    }

    /// Sends bytes as a message of this connection's encoding (binary or text).
    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        let msg = match self.encoding {
            Encoding::Protobuf => WsMessage::Binary(bytes.into()),
            Encoding::Json => WsMessage::Text(String::from_utf8(bytes).unwrap().into()),
        };
        self.ws.send(msg).await.unwrap();
    }

    pub async fn recv(&mut self) -> Got {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time");
            let decoded = match msg {
                None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return Got::Closed,
                Some(Ok(WsMessage::Binary(b))) => {
                    assert_eq!(
                        self.encoding,
                        Encoding::Protobuf,
                        "answered in the client's encoding"
                    );
                    codec::decode(&b, Encoding::Protobuf, 1 << 20)
                }
                Some(Ok(WsMessage::Text(t))) => {
                    assert_eq!(
                        self.encoding,
                        Encoding::Json,
                        "answered in the client's encoding"
                    );
                    codec::decode(t.as_bytes(), Encoding::Json, 1 << 20)
                }
                Some(Ok(_)) => continue,
            };
            return Got::Frame(decoded.expect("server frames decode"));
        }
    }

    /// Reads until the server sends a WebSocket Ping (answered by the WebSocket layer, as a
    /// browser's is); any other frame is a failure.
    pub async fn expect_ping(&mut self) {
        let msg = tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("a Ping in time");
        assert!(
            matches!(msg, Some(Ok(WsMessage::Ping(_)))),
            "expected a Ping, got {msg:?}"
        );
    }

    /// Expects a DISCONNECT with `code`, then the close.
    pub async fn expect_disconnect(&mut self, code: tidings_proto::Code) {
        match self.recv().await {
            Got::Frame(v1::Frame {
                body: Some(Body::Disconnect(d)),
                ..
            }) => {
                assert_eq!(d.code, code.as_u32(), "{}", d.message);
                assert_eq!(d.message, code.text());
            }
            other => panic!("expected DISCONNECT {code}, got {other:?}"),
        }
        assert!(
            matches!(self.recv().await, Got::Closed),
            "closed after DISCONNECT"
        );
    }
}

pub fn connect(token: &str) -> v1::Frame {
    codec::frame(Body::Connect(v1::Connect {
        protocol_version: 1,
        token: token.into(),
        device_id: String::new(),
        platform: "raw".into(),
    }))
}

pub fn publish(packet_id: u32, cmid: &str, to: &str, content: &str) -> v1::Frame {
    v1::Frame {
        body: Some(Body::Publish(v1::Publish {
            packet_id,
            body: Some(v1::publish::Body::Send(v1::Send {
                client_msg_id: cmid.into(),
                conversation_type: 1,
                target_id: to.into(),
                msg_type: "text".into(),
                content: content.into(),
                ..Default::default()
            })),
        })),
        qos: 1,
        dup: false,
    }
}

/// An HTTP agent that returns error statuses as answers.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// A signed API request; returns (status, JSON body).
pub async fn api_post(
    server: &TestServer,
    path: &str,
    headers: Vec<(&'static str, String)>,
) -> (u16, serde_json::Value) {
    api_post_body(server, path, headers, "").await
}

/// A signed API request with a JSON body.
pub async fn api_post_body(
    server: &TestServer,
    path: &str,
    headers: Vec<(&'static str, String)>,
    body: &str,
) -> (u16, serde_json::Value) {
    let url = format!("{}{path}", server.url());
    let body = body.to_string();
    tokio::task::spawn_blocking(move || {
        let agent = agent();
        let mut req = agent.post(&url);
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let mut resp = if body.is_empty() {
            req.send_empty().unwrap()
        } else {
            req.header("Content-Type", "application/json")
                .send(body.as_bytes())
                .unwrap()
        };
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.body_mut().read_json().unwrap();
        (status, body)
    })
    .await
    .unwrap()
}

/// Valid signature headers for `server`, with the given nonce and timestamp (ms), for the
/// request `method` on `target` (its path and query, as sent) with `body` (empty for none).
pub fn signed(
    server: &TestServer,
    nonce: &str,
    timestamp_ms: i64,
    method: &str,
    target: &str,
    body: &str,
) -> Vec<(&'static str, String)> {
    let creds = &server.running().credentials;
    let ts = timestamp_ms.to_string();
    let signature = tidings_engine::auth::sign_request(
        &creds.app_secret,
        nonce,
        &ts,
        method,
        target,
        body.as_bytes(),
    );
    vec![
        ("App-Key", creds.app_key.clone()),
        ("Nonce", nonce.to_string()),
        ("Timestamp", ts),
        ("Signature", signature),
    ]
}

/// A signed `POST` of `body` to `path` on the server at `base_url`, with the app credentials in
/// `data_dir` (a server running as a process of its own); returns (status, JSON body).
pub async fn post_signed(
    data_dir: &std::path::Path,
    base_url: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let creds = tidings_server::credentials::load(data_dir).unwrap();
    let url = format!("{base_url}{path}");
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let nonce = format!("n-{:016x}", rand::random::<u64>());
        let ts = now_ms().to_string();
        let body = body.to_string();
        let signature = tidings_engine::auth::sign_request(
            &creds.app_secret,
            &nonce,
            &ts,
            "POST",
            &path,
            body.as_bytes(),
        );
        let mut resp = agent()
            .post(&url)
            .header("App-Key", &creds.app_key)
            .header("Nonce", &nonce)
            .header("Timestamp", &ts)
            .header("Signature", signature)
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .unwrap();
        let status = resp.status().as_u16();
        (
            status,
            resp.body_mut()
                .read_json()
                .unwrap_or(serde_json::Value::Null),
        )
    })
    .await
    .unwrap()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Creates the group `group` of `owner` and `members` through the HTTP API.
pub async fn create_group(server: &TestServer, group: &str, owner: &str, members: &[&str]) {
    let (status, body) = api(
        server,
        "POST",
        "/api/v1/groups",
        serde_json::json!({ "groupId": group, "ownerId": owner, "name": "Team", "memberIds": members }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Adds `users` to the group `group` through the HTTP API: (status, answer).
pub async fn add_group_members(
    server: &TestServer,
    group: &str,
    users: &[&str],
) -> (u16, serde_json::Value) {
    let path = format!("/api/v1/groups/{group}/members");
    api(
        server,
        "POST",
        &path,
        serde_json::json!({ "userIds": users }),
    )
    .await
}

/// A signed API request with a fresh nonce: `method` on `path`, with a JSON body unless it is
/// empty; returns (status, JSON body).
pub async fn api(
    server: &TestServer,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let body = (!body.is_null()).then(|| body.to_string());
    let nonce = format!("api-{n}-{}", now_ms());
    let headers = signed(
        server,
        &nonce,
        now_ms(),
        method,
        path,
        body.as_deref().unwrap_or(""),
    );
    http(server, method, path, headers, body).await
}

/// An HTTP request: `method` on `path` with `headers`, and `body` as JSON unless it is `None`;
/// returns (status, JSON body). An empty answer (204) reads as `null`; any other answer must be
/// JSON.
pub async fn http(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
) -> (u16, serde_json::Value) {
    let (status, text, _) = http_text(server, method, path, headers, body).await;
    let body = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, body)
}

/// An HTTP request as [`http`] makes it; returns (status, the body as text, the `Set-Cookie`
/// header).
pub async fn http_text(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
) -> (u16, String, Option<String>) {
    http_text_at(&server.url(), method, path, headers, body).await
}

/// [`http_text`] to the server at `base` (`http://host:port`), e.g. a server process.
pub async fn http_text_at(
    base: &str,
    method: &str,
    path: &str,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
) -> (u16, String, Option<String>) {
    let url = format!("{base}{path}");
    let method = method.to_string();
    tokio::task::spawn_blocking(move || {
        let agent = agent();
        let mut req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url);
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let mut resp = match body {
            None => agent.run(req.body(()).unwrap()).unwrap(),
            Some(body) => {
                let req = req
                    .header("Content-Type", "application/json")
                    .body(body)
                    .unwrap();
                agent.run(req).unwrap()
            }
        };
        let cookie = resp
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_string());
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        (status, text, cookie)
    })
    .await
    .unwrap()
}

/// A raw WebSocket client for the seed dialects: frames exactly as a seed's document shows
/// them, nothing of the native protocol.
pub struct SeedWs {
    ws: TestWs,
    muted: Arc<AtomicBool>,
    /// WebSocket Pings the server sent so far (answered by the WebSocket layer).
    pings: u64,
}

/// What a seed client read.
#[derive(Debug)]
pub enum SeedGot {
    Text(serde_json::Value),
    Binary(Vec<u8>),
    Closed,
}

impl SeedWs {
    /// Opens `path` (with its query) on the server.
    pub async fn open(server: &TestServer, path: &str) -> SeedWs {
        let (ws, muted) = ws_open(server, path).await;
        SeedWs {
            ws,
            muted,
            pings: 0,
        }
    }

    /// From now on nothing this client writes reaches the server: it reads on, but answers no
    /// WebSocket Ping.
    pub fn mute(&self) {
        self.muted.store(true, Ordering::Relaxed);
    }

    /// Reads until the server has sent `n` WebSocket Pings in all (each answered by the
    /// WebSocket layer, as a browser's is); any other frame is a failure.
    pub async fn until_pinged(&mut self, n: u64) {
        while self.pings < n {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a Ping in time");
            match msg {
                Some(Ok(WsMessage::Ping(_))) => self.pings += 1,
                other => panic!("expected a Ping, got {other:?}"),
            }
        }
    }

    pub async fn send_json(&mut self, v: serde_json::Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, t: &str) {
        self.ws.send(WsMessage::Text(t.into())).await.unwrap();
    }

    pub async fn send_binary(&mut self, b: Vec<u8>) {
        self.ws.send(WsMessage::Binary(b.into())).await.unwrap();
    }

    pub async fn recv(&mut self) -> SeedGot {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time");
            return match msg {
                None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => SeedGot::Closed,
                Some(Ok(WsMessage::Text(t))) => {
                    SeedGot::Text(serde_json::from_str(&t).expect("server text frames are JSON"))
                }
                Some(Ok(WsMessage::Binary(b))) => SeedGot::Binary(b.to_vec()),
                Some(Ok(WsMessage::Ping(_))) => {
                    self.pings += 1;
                    continue;
                }
                Some(Ok(_)) => continue,
            };
        }
    }

    /// The next frame, which must be JSON text.
    pub async fn json(&mut self) -> serde_json::Value {
        match self.recv().await {
            SeedGot::Text(v) => v,
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }

    /// The next frame, which must be binary.
    pub async fn binary(&mut self) -> Vec<u8> {
        match self.recv().await {
            SeedGot::Binary(b) => b,
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// The connection closes next.
    pub async fn expect_closed(&mut self) {
        match self.recv().await {
            SeedGot::Closed => {}
            other => panic!("expected the close, got {other:?}"),
        }
    }
}

/// The cursor the server holds for a device of `user`, as a native CONNECT of that device id
/// reports it (the CONNECT replaces whatever connection the device has).
pub async fn stored_cursor(server: &TestServer, user: &str, device: &str) -> u64 {
    let mut raw = Raw::open(server, Encoding::Json).await;
    let mut frame = connect(&server.token(user).await);
    if let Some(Body::Connect(c)) = &mut frame.body {
        c.device_id = device.into();
    }
    raw.send(frame).await;
    match raw.recv().await {
        Got::Frame(v1::Frame {
            body: Some(Body::Connack(ack)),
            ..
        }) => ack.cursor,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}
