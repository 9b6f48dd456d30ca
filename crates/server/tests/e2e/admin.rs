//! The admin console's API (`/admin/api`): operators added with `tidings admin`, sign-in and
//! its rate limits, the session cookie, the refusal of requests without a session or from
//! another site on every route, and operators' actions with their audit log.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tidings_client::{Client, ClientError, Event};
use tidings_gateway::{ADMIN_COOKIE, ADMIN_LOGIN_PATH, ADMIN_ROUTES};
use tidings_proto::Code;

use crate::process::BIN;
use crate::util::*;

pub(crate) const PASSWORD: &str = "operator password";

/// Runs `tidings admin ARGS` on the server's data directory, the password on stdin; returns
/// whether it succeeded and its output.
fn admin_cli(server: &TestServer, args: &[&str], stdin: &str) -> (bool, String) {
    admin_cli_in(server.dir.path(), args, stdin)
}

/// [`admin_cli`] on the data directory `data_dir`.
fn admin_cli_in(data_dir: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(BIN)
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("TIDINGS_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn add_operator(server: &TestServer, name: &str) {
    let (ok, out) = admin_cli(
        server,
        &["add", name, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "{out}");
    assert!(out.contains(&format!("added operator {name}")), "{out}");
}

/// An admin request as the console's page makes it (the header, the session cookie if given)
/// plus `extra` headers; returns (status, JSON body, the Set-Cookie header).
pub(crate) async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    session: Option<&str>,
    extra: &[(&'static str, &str)],
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut headers: Vec<(&'static str, String)> = vec![("X-Tidings-Admin", "1".into())];
    if let Some(id) = session {
        headers.push(("Cookie", format!("{ADMIN_COOKIE}={id}")));
    }
    raw_call(server, method, path, headers, extra, body).await
}

/// An admin request with exactly `headers` and `extra`.
async fn raw_call(
    server: &TestServer,
    method: &str,
    path: &str,
    mut headers: Vec<(&'static str, String)>,
    extra: &[(&'static str, &str)],
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    headers.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let body = body.map(|b| b.to_string());
    let (status, text, cookie) = http_text(server, method, path, headers, body).await;
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json, cookie)
}

/// Signs `name` in; returns the session id from the cookie.
pub(crate) async fn login(server: &TestServer, name: &str) -> String {
    let (status, body, cookie) = call(
        server,
        "POST",
        ADMIN_LOGIN_PATH,
        None,
        &[],
        Some(json!({ "name": name, "password": PASSWORD })),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (200, Some(0)), "{body}");
    assert_eq!(body["operator"], name);
    let cookie = cookie.expect("a session cookie");
    for part in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(cookie.split("; ").any(|p| p == part), "{part} in {cookie}");
    }
    let (pair, _) = cookie.split_once(';').unwrap();
    let (cookie_name, id) = pair.split_once('=').unwrap();
    assert_eq!(cookie_name, ADMIN_COOKIE);
    assert_eq!(id.len(), 43, "256 random bits in base64url");
    id.to_string()
}

fn assert_code((status, body, _): &(u16, Value, Option<String>), want: u16, code: Code) {
    assert_eq!(
        (*status, body["code"].as_u64()),
        (want, Some(code.as_u32().into())),
        "{body}"
    );
}

/// A route's path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{user_id}", "someone")
        .replace("{group_id}", "some-group")
        .replace("{chatroom_id}", "some-room")
}

#[tokio::test]
async fn every_admin_route_refuses_a_request_without_a_current_session() {
    let server = TestServer::start().await;
    add_operator(&server, "root");
    let made_up = "A".repeat(43);
    let ended = login(&server, "root").await;
    let (status, ..) = call(
        &server,
        "POST",
        "/admin/api/logout",
        Some(&ended),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200);
    for (method, path, _) in ADMIN_ROUTES {
        let path = concrete(path);
        for session in [None, Some(made_up.as_str()), Some(ended.as_str())] {
            let body = (*method != "GET").then(|| json!({}));
            let answer = call(&server, method, &path, session, &[], body).await;
            assert_code(&answer, 401, Code::OperatorSessionRequired);
        }
    }
    // Nothing was done: no user was banned, no token minted.
    let user = server
        .running()
        .engine
        .users(&["someone".into()])
        .await
        .unwrap();
    assert!(!user[0].profile.banned);
}

#[tokio::test]
async fn requests_that_may_come_from_another_site_are_refused_even_with_a_session() {
    let server = TestServer::start().await;
    add_operator(&server, "root");
    let host = server.running().addr.to_string();
    let cookie = (
        "Cookie",
        format!("{ADMIN_COOKIE}={}", login(&server, "root").await),
    );
    // No header: what a cross-site form sends (SameSite=Strict aside).
    for (method, path, _) in ADMIN_ROUTES {
        let body = (*method != "GET").then(|| json!({}));
        let answer = raw_call(
            &server,
            method,
            &concrete(path),
            vec![cookie.clone()],
            &[],
            body,
        )
        .await;
        assert_code(&answer, 403, Code::CrossSiteRefused);
    }
    let ban = "/admin/api/users/victim/ban";
    let evil = [("Origin", "https://evil.example")];
    let answer = raw_call(
        &server,
        "POST",
        ban,
        vec![cookie.clone(), ("X-Tidings-Admin", "1".into())],
        &evil,
        None,
    )
    .await;
    assert_code(&answer, 403, Code::CrossSiteRefused);
    let fetch_site = [("Sec-Fetch-Site", "cross-site")];
    let answer = raw_call(
        &server,
        "POST",
        ban,
        vec![cookie.clone(), ("X-Tidings-Admin", "1".into())],
        &fetch_site,
        None,
    )
    .await;
    assert_code(&answer, 403, Code::CrossSiteRefused);
    // A sign-in without the header is refused too.
    let answer = raw_call(
        &server,
        "POST",
        ADMIN_LOGIN_PATH,
        Vec::new(),
        &[],
        Some(json!({ "name": "root", "password": PASSWORD })),
    )
    .await;
    assert_code(&answer, 403, Code::CrossSiteRefused);
    let user = server
        .running()
        .engine
        .users(&["victim".into()])
        .await
        .unwrap();
    assert!(!user[0].profile.banned, "nothing refused was done");
    // The page's own request: the header, and its origin.
    let origin = format!("http://{host}");
    let (status, body, _) = raw_call(
        &server,
        "POST",
        ban,
        vec![cookie, ("X-Tidings-Admin", "1".into())],
        &[
            ("Origin", origin.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        None,
    )
    .await;
    assert_eq!(
        (status, body["banned"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
}

#[tokio::test]
async fn wrong_passwords_are_refused_alike_and_rate_limited() {
    let server = TestServer::start().await;
    add_operator(&server, "root");
    let attempt = |name: &str, password: &'static str| {
        let name = name.to_string();
        let server = &server;
        async move {
            call(
                server,
                "POST",
                ADMIN_LOGIN_PATH,
                None,
                &[],
                Some(json!({ "name": name, "password": password })),
            )
            .await
        }
    };
    let unknown = attempt("nobody", PASSWORD).await;
    assert_code(&unknown, 401, Code::BadCredentials);
    assert!(unknown.2.is_none(), "no cookie");
    // Five checks a minute per operator.
    for _ in 0..5 {
        assert_code(
            &attempt("root", "wrong password").await,
            401,
            Code::BadCredentials,
        );
    }
    assert_code(&attempt("root", PASSWORD).await, 429, Code::TooManyAttempts);
    // Per address too: 20 sign-ins a minute, whatever the names.
    for i in 0..13 {
        assert_code(
            &attempt(&format!("nobody{i}"), "wrong password").await,
            401,
            Code::BadCredentials,
        );
    }
    assert_code(
        &attempt("someone", "wrong password").await,
        429,
        Code::TooManyAttempts,
    );
}

#[tokio::test]
async fn an_operators_actions_work_through_the_engine_and_are_in_the_audit_log() {
    let server = TestServer::start().await;
    add_operator(&server, "root");
    let (ok, listed) = admin_cli(&server, &["list"], "");
    assert!(ok && listed.starts_with("root\t"), "{listed}");
    let id = login(&server, "root").await;
    let s = Some(id.as_str());
    let (_, me, _) = call(&server, "GET", "/admin/api/me", s, &[], None).await;
    assert_eq!(me["operator"], "root");

    let mut ann_config = server.config("ann", "phone").await;
    ann_config.platform = "ios".into();
    let (_ann, mut ann_events) = Client::connect(ann_config).await.unwrap();
    let (_bob, mut bob_events) = server.client("bob", "laptop").await;

    let (_, overview, _) = call(&server, "GET", "/admin/api/overview", s, &[], None).await;
    assert_eq!(overview["connections"], 2, "{overview}");
    assert_eq!(overview["usersOnline"], 2, "{overview}");
    assert_eq!(overview["nodes"].as_array().unwrap().len(), 1);

    let (_, found, _) = call(&server, "GET", "/admin/api/users?prefix=an", s, &[], None).await;
    let ids: Vec<&str> = found["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ann"], "{found}");
    assert_eq!(found["users"][0]["online"], true);

    let (_, devices, _) = call(&server, "GET", "/admin/api/users/ann/devices", s, &[], None).await;
    assert_eq!(devices["devices"][0]["deviceId"], "phone", "{devices}");
    assert_eq!(devices["devices"][0]["platform"], "ios", "{devices}");

    let (status, kicked, _) = call(
        &server,
        "POST",
        "/admin/api/users/ann/kick",
        s,
        &[],
        Some(json!({ "deviceId": "phone" })),
    )
    .await;
    assert_eq!(
        (status, kicked["kicked"].as_u64()),
        (200, Some(1)),
        "{kicked}"
    );
    match next_terminal(&mut ann_events).await {
        Event::Kicked { code, .. } => assert_eq!(code, Code::KickedByOperator.as_u32()),
        other => panic!("{other:?}"),
    }

    let (status, banned, _) = call(&server, "POST", "/admin/api/users/ann/ban", s, &[], None).await;
    assert_eq!((status, banned["banned"].as_bool()), (200, Some(true)));
    let refused = Client::connect(server.config("ann", "phone").await)
        .await
        .err();
    assert!(
        matches!(refused, Some(ClientError::Refused { code, .. }) if code == Code::UserBanned.as_u32()),
        "{refused:?}"
    );

    let (status, sent, _) = call(
        &server,
        "POST",
        "/admin/api/messages/system",
        s,
        &[],
        Some(json!({
            "fromUserId": "system",
            "toUserIds": ["bob"],
            "content": { "text": "maintenance at noon" },
        })),
    )
    .await;
    assert_eq!((status, sent["code"].as_u64()), (200, Some(0)), "{sent}");
    let m = next_message(&mut bob_events).await;
    assert_eq!((m.sender_id.as_str(), m.conversation_type), ("system", 6));
    assert!(m.content.contains("maintenance at noon"));

    // A refused action is audited with its code.
    let (status, ..) = call(
        &server,
        "POST",
        "/admin/api/groups/nope/mute",
        s,
        &[],
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 404);

    let (_, log, _) = call(&server, "GET", "/admin/api/audit?limit=10", s, &[], None).await;
    let entries = log["entries"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("group.mute", "nope"),
            ("message.system", ""),
            ("user.ban", "ann"),
            ("user.kick", "ann"),
            ("login", ""),
            ("operator.add", "root"),
        ],
        "newest first: {log}"
    );
    assert!(entries[..5].iter().all(|e| e["operator"] == "root"));
    assert_eq!(entries[5]["operator"], "cli");
    assert_eq!(entries[0]["details"]["code"], Code::GroupNotFound.as_u32());
    assert_eq!(entries[1]["details"]["code"], 0);
    assert_eq!(
        entries[1]["details"]["request"]["toUserIds"],
        json!(["bob"])
    );
    assert_eq!(entries[3]["details"]["request"]["deviceId"], "phone");
    // Paged by id.
    let before = entries[1]["id"].as_u64().unwrap();
    let (_, page, _) = call(
        &server,
        "GET",
        &format!("/admin/api/audit?before={before}&limit=2"),
        s,
        &[],
        None,
    )
    .await;
    let actions: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["user.ban", "user.kick"]);

    // Signing out ends the session.
    let (status, _, cookie) = call(&server, "POST", "/admin/api/logout", s, &[], None).await;
    assert_eq!(status, 200);
    assert!(
        cookie.unwrap().contains("Max-Age=0"),
        "the cookie is cleared"
    );
    let answer = call(&server, "GET", "/admin/api/me", s, &[], None).await;
    assert_code(&answer, 401, Code::OperatorSessionRequired);
}

#[tokio::test]
async fn removing_an_operator_or_setting_their_password_ends_their_sessions() {
    let server = TestServer::start().await;
    add_operator(&server, "root");
    add_operator(&server, "ops");
    let root = login(&server, "root").await;
    let ops = login(&server, "ops").await;
    let (ok, out) = admin_cli(
        &server,
        &["add", "root", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok && out.contains("set a new password"), "{out}");
    let (ok, out) = admin_cli(&server, &["remove", "ops"], "");
    assert!(ok, "{out}");
    for id in [&root, &ops] {
        let answer = call(&server, "GET", "/admin/api/me", Some(id), &[], None).await;
        assert_code(&answer, 401, Code::OperatorSessionRequired);
    }
    let (ok, out) = admin_cli(&server, &["remove", "ops"], "");
    assert!(!ok && out.contains("no operator ops"), "{out}");
    let (ok, out) = admin_cli(
        &server,
        &["add", "bad name!", "--password-stdin"],
        "long enough\n",
    );
    assert!(!ok && out.contains("invalid operator name"), "{out}");
    let (ok, out) = admin_cli(&server, &["add", "x"], "");
    assert!(!ok && out.contains("--password-stdin"), "{out}");
}

#[tokio::test]
async fn the_console_page_has_a_strict_policy_and_answers_are_not_cached() {
    let server = TestServer::start().await;
    let (status, _, _) = raw_call(&server, "GET", "/admin", Vec::new(), &[], None).await;
    assert_eq!(status, 200);
    let policy = tokio::task::spawn_blocking({
        let url = format!("{}/admin", server.url());
        move || {
            let resp = agent().get(&url).call().unwrap();
            resp.headers()
                .get("content-security-policy")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        }
    })
    .await
    .unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");

    // The API's answers are never cached: a minted token is one of them.
    add_operator(&server, "root");
    let id = login(&server, "root").await;
    let url = format!("{}/admin/api/users/someone/token", server.url());
    let cache = tokio::task::spawn_blocking(move || {
        let resp = agent()
            .post(&url)
            .header("X-Tidings-Admin", "1")
            .header("Cookie", &format!("{ADMIN_COOKIE}={id}"))
            .send_empty()
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_string())
    })
    .await
    .unwrap();
    assert_eq!(cache.as_deref(), Some("no-store"));
}

#[tokio::test]
async fn tidings_admin_adds_operators_to_a_postgres_store() {
    let Some(url) = tidings_store_postgres::testing::server_url() else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED tidings_admin_adds_operators_to_a_postgres_store: set {} to run it",
            tidings_store_postgres::testing::URL_VARIABLE
        );
        return;
    };
    let db = tidings_store_postgres::testing::TestDatabase::create(&url)
        .await
        .expect("create a test database");
    let store = tidings_server::StoreSetting::Postgres(db.url.clone());
    let mut server = TestServer::start_with(|c| c.store = store).await;
    let (ok, out) = admin_cli(
        &server,
        &["add", "root", "--password-stdin", "--store", &db.url],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "{out}");
    let id = login(&server, "root").await;
    let (ok, out) = admin_cli(&server, &["list", "--store", &db.url], "");
    assert!(ok && out.starts_with("root\t"), "{out}");
    let (ok, out) = admin_cli(&server, &["remove", "root", "--store", &db.url], "");
    assert!(ok, "{out}");
    let answer = call(&server, "GET", "/admin/api/me", Some(&id), &[], None).await;
    assert_code(&answer, 401, Code::OperatorSessionRequired);
    server.shutdown().await;
    db.drop().await.unwrap();
}

/// Runs `tidings admin add NAME --password-stdin` on `data_dir`.
fn add_operator_in(data_dir: &std::path::Path, name: &str) {
    let (ok, out) = admin_cli_in(
        data_dir,
        &["add", name, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "{out}");
}

/// Signs `name` in at the server process `base`; returns the headers of a console request.
async fn console_headers(base: &str, name: &str) -> Vec<(&'static str, String)> {
    let header = ("X-Tidings-Admin", "1".to_string());
    let body = json!({ "name": name, "password": PASSWORD }).to_string();
    let (status, text, cookie) = http_text_at(
        base,
        "POST",
        ADMIN_LOGIN_PATH,
        vec![header.clone()],
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let cookie = cookie.expect("a session cookie");
    let (pair, _) = cookie.split_once(';').unwrap();
    vec![header, ("Cookie", pair.to_string())]
}

async fn overview_at(base: &str, headers: &[(&'static str, String)]) -> Value {
    let (status, text, _) =
        http_text_at(base, "GET", "/admin/api/overview", headers.to_vec(), None).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// The overview's rates, latency percentiles and drops come from the process's metrics: with
/// messages flowing they show a rate and finite percentiles; with the metrics off they are
/// `null` and the overview says the metrics are off.
#[tokio::test]
async fn the_overview_shows_rates_latencies_and_drops_from_the_metrics() {
    use crate::process::{ServerProcess, token};
    use tidings_client::{ClientConfig, Outgoing};

    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(cwd.path(), &[]);
    let data = cwd.path().join("data");
    add_operator_in(&data, "root");
    let headers = console_headers(&server.url, "root").await;
    let (kim, _kim_events) = Client::connect(ClientConfig::new(&server.url, token(&data, "kim")))
        .await
        .unwrap();
    let (_lee, _lee_events) = Client::connect(ClientConfig::new(&server.url, token(&data, "lee")))
        .await
        .unwrap();
    // Messages keep flowing until a reading of the metrics has seen some.
    let mut sent = 0;
    let figures = loop {
        kim.send(Outgoing::text("lee", &format!("m{sent}")))
            .await
            .unwrap();
        sent += 1;
        let o = overview_at(&server.url, &headers).await;
        let rate = o["messagesPerSecond"].as_f64();
        if o["metrics"] == "on"
            && rate.is_some_and(|r| r > 0.0)
            && !o["latencyMs"]["publishToPuback"].is_null()
        {
            break o;
        }
        assert!(sent < 20_000, "no figures after {sent} messages: {o}");
    };
    for latency in ["publishToPuback", "publishToDelivery"] {
        for p in ["p50", "p90", "p99"] {
            let ms = figures["latencyMs"][latency][p].as_f64();
            assert!(ms.is_some_and(f64::is_finite), "{latency} {p}: {figures}");
        }
    }
    for drop in ["slowConsumersCut", "chatroomItemsDropped", "gapMarkers"] {
        assert_eq!(figures["drops"]["total"][drop], 0.0, "{figures}");
    }
    assert_eq!(figures["connections"], 2, "{figures}");

    let off_dir = tempfile::tempdir().unwrap();
    let off = ServerProcess::start(off_dir.path(), &["--metrics-listen", "off"]);
    add_operator_in(&off_dir.path().join("data"), "root");
    let headers = console_headers(&off.url, "root").await;
    let o = overview_at(&off.url, &headers).await;
    assert_eq!(o["metrics"], "off", "{o}");
    for field in ["messagesPerSecond", "latencyMs", "drops"] {
        assert_eq!(o[field], Value::Null, "{field}: {o}");
    }
}
