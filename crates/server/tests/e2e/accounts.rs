//! Built-in accounts (`/v1/accounts`): registration, login, the profile, password changes,
//! logout and deletion, their rate limits, and the setting that turns them off.

use std::net::{IpAddr, SocketAddr};

use serde_json::{Value, json};
use tidings_client::{Client, ClientConfig, ClientError, Event, Outgoing};
use tidings_engine::auth::Origin;
use tidings_proto::Code;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::*;

const PASSWORD: &str = "correct horse battery";

/// An account request: `method` on `/v1/accounts{path}`, with a bearer token if given and a
/// JSON body unless it is `null`.
async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let body = (!body.is_null()).then(|| body.to_string());
    call_raw(server, method, path, token, body).await
}

/// An account request whose body is sent as it is.
async fn call_raw(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, Value) {
    let headers = token
        .map(|t| ("Authorization", format!("Bearer {t}")))
        .into_iter()
        .collect();
    http(
        server,
        method,
        &format!("/v1/accounts{path}"),
        headers,
        body,
    )
    .await
}

/// Asserts an error answer: its status and code, with the code's text.
fn assert_refused((status, body): (u16, Value), want_status: u16, code: Code) {
    assert_eq!(
        (status, body["code"].as_u64()),
        (want_status, Some(code.as_u32().into())),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().starts_with(code.text()),
        "{body}"
    );
}

/// A request about the token's user: `method` on `/v1/accounts/me`.
async fn me(server: &TestServer, method: &str, token: &str, body: Value) -> (u16, Value) {
    call(server, method, "/me", Some(token), body).await
}

/// `POST /v1/accounts{path}` with an account and a password: a registration or a login.
async fn with_password(
    server: &TestServer,
    path: &str,
    account: &str,
    password: &str,
) -> (u16, Value) {
    let body = json!({ "account": account, "password": password });
    call(server, "POST", path, None, body).await
}

async fn try_register(server: &TestServer, account: &str, password: &str) -> (u16, Value) {
    with_password(server, "/register", account, password).await
}

async fn login(server: &TestServer, account: &str, password: &str) -> (u16, Value) {
    with_password(server, "/login", account, password).await
}

/// The token of a successful registration or login of `account`.
fn token_of((status, body): (u16, Value), account: &str) -> String {
    assert_eq!((status, body["code"].as_u64()), (200, Some(0)), "{body}");
    assert_eq!(body["userId"], account);
    assert!(body["expiresAt"].as_i64().unwrap() > now_ms() / 1000);
    body["token"].as_str().unwrap().to_string()
}

/// Registers `account` with [`PASSWORD`]; returns its token.
async fn register(server: &TestServer, account: &str) -> String {
    token_of(try_register(server, account, PASSWORD).await, account)
}

/// The token of a successful login.
async fn login_token(server: &TestServer, account: &str, password: &str) -> String {
    token_of(login(server, account, password).await, account)
}

/// Connects with `token`; the user it connected as.
async fn connects_as(server: &TestServer, token: &str) -> String {
    let (client, _events) = Client::connect(ClientConfig::new(server.url(), token))
        .await
        .expect("the token connects");
    client.user_id().to_string()
}

/// Asserts that CONNECT with `token` is refused with `code`.
async fn connect_refused(server: &TestServer, token: &str, code: Code) {
    let err = Client::connect(ClientConfig::new(server.url(), token))
        .await
        .err()
        .expect("the token is refused");
    assert_eq!(
        err,
        ClientError::Refused {
            code: code.as_u32(),
            message: code.text().into()
        }
    );
}

#[tokio::test]
async fn a_registered_account_logs_in_and_its_tokens_connect() {
    let server = TestServer::start().await;
    let (status, body) = call(
        &server,
        "POST",
        "/register",
        None,
        json!({ "account": "alice", "password": PASSWORD, "name": "Alice" }),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (200, Some(0)), "{body}");
    assert_eq!(body["userId"], "alice");
    let registered = body["token"].as_str().unwrap().to_string();
    assert_eq!(connects_as(&server, &registered).await, "alice");

    let token = login_token(&server, "alice", PASSWORD).await;
    assert_eq!(connects_as(&server, &token).await, "alice");
    // Over a raw WebSocket too: it is an ordinary token.
    let mut raw = Raw::open(&server, tidings_proto::Encoding::Json).await;
    raw.send(connect(&token)).await;
    match raw.recv().await {
        Got::Frame(tidings_proto::v1::Frame {
            body: Some(tidings_proto::v1::frame::Body::Connack(ack)),
            ..
        }) => assert_eq!((ack.code, ack.user_id.as_str()), (0, "alice")),
        other => panic!("expected CONNACK, got {other:?}"),
    }

    // A wrong password and an account that does not exist get the same answer.
    let wrong = login(&server, "alice", "not the password").await;
    let nobody = login(&server, "nobody", PASSWORD).await;
    assert_eq!(wrong, nobody);
    assert_refused(wrong, 401, Code::BadCredentials);
    // The name given at registration is the user's profile name.
    let (status, body) = me(&server, "GET", &token, Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["name"], "Alice");

    // A user the app server banned logs in to be told so, and a token of theirs is refused
    // as CONNECT refuses it.
    let (status, _) = api(&server, "POST", "/api/v1/users/alice/ban", Value::Null).await;
    assert_eq!(status, 200);
    assert_refused(
        login(&server, "alice", PASSWORD).await,
        403,
        Code::UserBanned,
    );
    assert_refused(
        me(&server, "GET", &token, Value::Null).await,
        403,
        Code::UserBanned,
    );
    connect_refused(&server, &token, Code::UserBanned).await;
}

#[tokio::test]
async fn a_taken_account_name_is_refused_with_409() {
    let server = TestServer::start().await;
    register(&server, "bob").await;
    assert_refused(
        try_register(&server, "bob", "another password").await,
        409,
        Code::AccountTaken,
    );
    // The first registration's password is the one that logs in.
    login_token(&server, "bob", PASSWORD).await;
    assert_refused(
        login(&server, "bob", "another password").await,
        401,
        Code::BadCredentials,
    );
    // A user the app server already has is not given to an account.
    let (status, _) = api(
        &server,
        "PUT",
        "/api/v1/users/carol",
        json!({ "name": "Carol" }),
    )
    .await;
    assert_eq!(status, 200);
    let carol = try_register(&server, "carol", PASSWORD).await;
    assert_refused(carol, 409, Code::AccountTaken);
    // Nor is one connected with a token from elsewhere.
    let (_dave, _events) = server.client("dave", "phone").await;
    let dave = try_register(&server, "dave", PASSWORD).await;
    assert_refused(dave, 409, Code::AccountTaken);
}

#[tokio::test]
async fn the_profile_is_read_and_changed_through_me() {
    let server = TestServer::start().await;
    let token = register(&server, "erin").await;
    let (status, body) = me(&server, "GET", &token, Value::Null).await;
    assert_eq!((status, body["code"].as_u64()), (200, Some(0)), "{body}");
    assert_eq!(body["user"]["userId"], "erin");
    assert_eq!(body["user"]["name"], "");

    let (status, body) = me(
        &server,
        "PATCH",
        &token,
        json!({ "name": "Erin", "portrait": "https://example.com/e.png", "extra": { "team": 7 } }),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (200, Some(0)), "{body}");
    assert_eq!(body["user"]["name"], "Erin");
    // Only the fields given change.
    let (status, body) = me(&server, "PATCH", &token, json!({ "name": "Erin E." })).await;
    assert_eq!(status, 200, "{body}");
    let (_, mine) = me(&server, "GET", &token, Value::Null).await;
    assert_eq!(mine["user"]["name"], "Erin E.");
    assert_eq!(mine["user"]["portrait"], "https://example.com/e.png");
    assert_eq!(mine["user"]["extra"], json!({ "team": 7 }));
    // It is the profile the app server's API reads and writes.
    let (_, user) = api(&server, "GET", "/api/v1/users/erin", Value::Null).await;
    assert_eq!(user["user"], mine["user"]);

    // Only with a valid token.
    assert_refused(
        call(&server, "GET", "/me", None, Value::Null).await,
        401,
        Code::TokenInvalid,
    );
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert_refused(
        me(&server, "GET", &forged, Value::Null).await,
        401,
        Code::TokenInvalid,
    );
    assert_refused(
        me(&server, "PATCH", &forged, json!({ "name": "Mallory" })).await,
        401,
        Code::TokenInvalid,
    );
    let (_, mine) = me(&server, "GET", &token, Value::Null).await;
    assert_eq!(mine["user"]["name"], "Erin E.");
    // A token of another app is refused as CONNECT refuses it.
    let other_app = tidings_engine::AppCredentials {
        app_key: "another-app".into(),
        ..server.running().credentials.clone()
    };
    let foreign = tidings_engine::auth::mint(&other_app, "erin", 0, 0, i64::MAX).unwrap();
    assert_refused(
        me(&server, "GET", &foreign, Value::Null).await,
        401,
        Code::TokenWrongApp,
    );
    let expired = tidings_engine::auth::mint(
        &server.running().credentials,
        "erin",
        0,
        0,
        now_ms() / 1000 - 1,
    )
    .unwrap();
    assert_refused(
        me(&server, "GET", &expired, Value::Null).await,
        401,
        Code::TokenExpired,
    );
}

#[tokio::test]
async fn changing_the_password_revokes_earlier_tokens() {
    let server = TestServer::start().await;
    let old_token = register(&server, "frank").await;
    let (_client, mut events) = Client::connect(ClientConfig::new(server.url(), &old_token))
        .await
        .unwrap();

    let change = |old: &str, new: &str| json!({ "oldPassword": old, "newPassword": new });
    assert_refused(
        call(
            &server,
            "POST",
            "/me/password",
            Some(&old_token),
            change("not the password", "new password 1"),
        )
        .await,
        401,
        Code::BadCredentials,
    );
    assert_refused(
        call(
            &server,
            "POST",
            "/me/password",
            Some(&old_token),
            change(PASSWORD, "short"),
        )
        .await,
        400,
        Code::InvalidPassword,
    );
    // Nothing changed yet: the connection is up, the old password logs in.
    connects_as(&server, &old_token).await;
    login_token(&server, "frank", PASSWORD).await;

    let (status, body) = call(
        &server,
        "POST",
        "/me/password",
        Some(&old_token),
        change(PASSWORD, "new password 1"),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (200, Some(0)), "{body}");
    let new_token = body["token"].as_str().unwrap().to_string();

    // The live connection is ended, and the old token is refused everywhere.
    match next_terminal(&mut events).await {
        Event::Kicked { code, .. } => assert_eq!(code, Code::TokenRevoked.as_u32()),
        other => panic!("{other:?}"),
    }
    connect_refused(&server, &old_token, Code::TokenRevoked).await;
    assert_refused(
        me(&server, "GET", &old_token, Value::Null).await,
        401,
        Code::TokenRevoked,
    );
    assert_eq!(connects_as(&server, &new_token).await, "frank");
    assert_refused(
        login(&server, "frank", PASSWORD).await,
        401,
        Code::BadCredentials,
    );
    let token = login_token(&server, "frank", "new password 1").await;
    assert_eq!(connects_as(&server, &token).await, "frank");
}

#[tokio::test]
async fn logout_revokes_the_users_tokens() {
    let server = TestServer::start().await;
    let first = register(&server, "gina").await;
    let second = login_token(&server, "gina", PASSWORD).await;
    let (status, body) = call(&server, "POST", "/logout", Some(&second), Value::Null).await;
    assert_eq!((status, &body), (204, &Value::Null));
    for token in [&first, &second] {
        connect_refused(&server, token, Code::TokenRevoked).await;
        assert_refused(
            call(&server, "POST", "/logout", Some(token), Value::Null).await,
            401,
            Code::TokenRevoked,
        );
    }
    // Logging in again gives a token that works.
    let token = login_token(&server, "gina", PASSWORD).await;
    assert_eq!(connects_as(&server, &token).await, "gina");
}

#[tokio::test]
async fn a_deleted_account_cannot_log_in_and_its_messages_stay() {
    let server = TestServer::start().await;
    let token = register(&server, "hank").await;
    let (hank, _events) = Client::connect(ClientConfig::new(server.url(), &token))
        .await
        .unwrap();
    hank.send(Outgoing::text("ivy", "before I go"))
        .await
        .unwrap();

    let delete = |password: &str| json!({ "password": password });
    assert_refused(
        me(&server, "DELETE", &token, delete("not the password")).await,
        401,
        Code::BadCredentials,
    );
    login_token(&server, "hank", PASSWORD).await;

    let (status, body) = me(&server, "DELETE", &token, delete(PASSWORD)).await;
    assert_eq!((status, &body), (204, &Value::Null));
    assert_refused(
        login(&server, "hank", PASSWORD).await,
        401,
        Code::BadCredentials,
    );
    connect_refused(&server, &token, Code::TokenRevoked).await;
    // The name is not given to anyone else.
    assert_refused(
        try_register(&server, "hank", PASSWORD).await,
        409,
        Code::AccountTaken,
    );
    // What hank sent stays with its recipient.
    let (_ivy, mut ivy_events) = server.client("ivy", "phone").await;
    let m = next_message(&mut ivy_events).await;
    assert_eq!(
        (m.sender_id.as_str(), m.target_id.as_str()),
        ("hank", "hank")
    );
    assert!(m.content.contains("before I go"));
}

#[tokio::test]
async fn accounts_and_revocations_outlive_a_restart() {
    let server = TestServer::start().await;
    let revoked = register(&server, "sam").await;
    let (status, _) = call(&server, "POST", "/logout", Some(&revoked), Value::Null).await;
    assert_eq!(status, 204);
    let gone = register(&server, "tom").await;
    let (status, _) = me(&server, "DELETE", &gone, json!({ "password": PASSWORD })).await;
    assert_eq!(status, 204);

    // The restarted server knows of the revocations only from the store.
    let server = server.restart().await;
    for token in [&revoked, &gone] {
        assert_refused(
            me(&server, "GET", token, Value::Null).await,
            401,
            Code::TokenRevoked,
        );
        connect_refused(&server, token, Code::TokenRevoked).await;
    }
    let token = login_token(&server, "sam", PASSWORD).await;
    assert_eq!(connects_as(&server, &token).await, "sam");
    assert_refused(
        login(&server, "tom", PASSWORD).await,
        401,
        Code::BadCredentials,
    );
}

#[tokio::test]
async fn password_checks_are_limited_per_account() {
    let server = TestServer::start().await;
    register(&server, "jack").await;
    // Five wrong passwords are answered as such; then the account is limited.
    for _ in 0..5 {
        assert_refused(
            login(&server, "jack", "not the password").await,
            401,
            Code::BadCredentials,
        );
    }
    let mut attempts = 5;
    loop {
        let (status, body) = login(&server, "jack", "not the password").await;
        if status == 429 {
            assert_refused((status, body), 429, Code::TooManyAttempts);
            break;
        }
        // One attempt a minute comes back; only a machine slower than that gets here often.
        attempts += 1;
        assert!(attempts < 20, "no limit after {attempts} wrong passwords");
    }
    // Even the right password is refused while the account is limited.
    assert_refused(
        login(&server, "jack", PASSWORD).await,
        429,
        Code::TooManyAttempts,
    );
    // Other accounts are not limited by it.
    register(&server, "kate").await;
    login_token(&server, "kate", PASSWORD).await;
}

/// The status of a login from `local`, an address of this machine's loopback interface,
/// over a hand-written HTTP request (the test's HTTP client cannot choose its address).
async fn login_from(server: &TestServer, local: IpAddr, account: &str) -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    let mut stream = socket.connect(server.running().addr).await.unwrap();
    let body = json!({ "account": account, "password": PASSWORD }).to_string();
    let request = format!(
        "POST /v1/accounts/login HTTP/1.1\r\nHost: tidings\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"))
}

#[tokio::test]
async fn logins_are_limited_per_client_address() {
    let server = TestServer::start().await;
    register(&server, "liam").await;
    let here: IpAddr = "127.0.0.1".parse().unwrap();
    // Twenty logins a minute from one address, whichever accounts they try.
    for i in 0..20 {
        assert_eq!(login_from(&server, here, &format!("guess-{i}")).await, 401);
    }
    let mut attempts = 20;
    loop {
        let status = login_from(&server, here, &format!("guess-{attempts}")).await;
        if status == 429 {
            break;
        }
        assert_eq!(status, 401);
        // One attempt comes back every 3 s; only a machine slower than that gets here often.
        attempts += 1;
        assert!(attempts < 60, "no limit after {attempts} logins");
    }
    assert_eq!(login_from(&server, here, "liam").await, 429);
    // Another address is not limited by it.
    let elsewhere: IpAddr = "127.0.0.2".parse().unwrap();
    assert_eq!(login_from(&server, elsewhere, "liam").await, 200);
}

#[tokio::test]
async fn registrations_are_limited_per_client_address() {
    let server = TestServer::start().await;
    register(&server, "mia").await;
    // Ten at once from one address, taken names included; then one every two minutes.
    for _ in 1..10 {
        assert_refused(
            try_register(&server, "mia", PASSWORD).await,
            409,
            Code::AccountTaken,
        );
    }
    assert_refused(
        try_register(&server, "noah", PASSWORD).await,
        429,
        Code::TooManyAttempts,
    );
    // Logins are limited apart.
    login_token(&server, "mia", PASSWORD).await;
}

#[tokio::test]
async fn accounts_turned_off_are_not_found() {
    let server = TestServer::start_with(|c| c.accounts = false).await;
    let token = server.token("olga").await;
    for (method, path, body) in [
        (
            "POST",
            "/register",
            json!({ "account": "olga", "password": PASSWORD }),
        ),
        (
            "POST",
            "/login",
            json!({ "account": "olga", "password": PASSWORD }),
        ),
        ("GET", "/me", Value::Null),
        ("POST", "/logout", Value::Null),
    ] {
        assert_refused(
            call(&server, method, path, Some(&token), body).await,
            404,
            Code::NotFound,
        );
    }
    // The token still works: logout did not revoke it.
    assert_eq!(connects_as(&server, &token).await, "olga");
}

#[tokio::test]
async fn bad_bodies_get_400_with_their_codes() {
    let server = TestServer::start().await;
    let token = register(&server, "pia").await;
    let bad_bodies = [
        "",
        "not json",
        "[]",
        "{}",
        r#"{"account": 7, "password": "long enough"}"#,
        r#"{"account": "x", "password": "long enough", "admin": true}"#,
        r#"{"account": "x", "password": null}"#,
    ];
    for body in bad_bodies {
        for path in ["/register", "/login"] {
            assert_refused(
                call_raw(&server, "POST", path, None, Some(body.into())).await,
                400,
                Code::BadRequest,
            );
        }
    }
    for (method, path) in [
        ("PATCH", "/me"),
        ("POST", "/me/password"),
        ("DELETE", "/me"),
    ] {
        for body in ["", "not json", "[]", r#"{"name": 1, "password": 2}"#] {
            assert_refused(
                call_raw(&server, method, path, Some(&token), Some(body.into())).await,
                400,
                Code::BadRequest,
            );
        }
    }
    // Profile fields as the API's rules have them.
    for profile in [json!({ "extra": [1] }), json!({ "name": "n".repeat(200) })] {
        assert_refused(
            me(&server, "PATCH", &token, profile).await,
            400,
            Code::BadRequest,
        );
    }
    // Too large a body is refused before it is read whole.
    let huge = json!({ "account": "pia", "password": "p".repeat(100_000) }).to_string();
    assert_refused(
        call_raw(&server, "POST", "/login", None, Some(huge)).await,
        413,
        Code::BadRequest,
    );
    // Rules of names and passwords.
    for account in ["", "has space", "ä", &"a".repeat(65)] {
        assert_refused(
            try_register(&server, account, PASSWORD).await,
            400,
            Code::InvalidUserId,
        );
    }
    for password in ["", "7 bytes", &"p".repeat(257)] {
        assert_refused(
            try_register(&server, "quinn", password).await,
            400,
            Code::InvalidPassword,
        );
    }
    // 8 and 256 bytes are both fine (ä is two bytes).
    for (account, password) in [("quinn", "ääää"), ("ruth", &"p".repeat(256))] {
        let (status, body) = try_register(&server, account, password).await;
        assert_eq!(status, 200, "{body}");
        login_token(&server, account, password).await;
    }
    // A method a path does not take.
    assert_refused(
        call(&server, "GET", "/login", None, Value::Null).await,
        405,
        Code::BadRequest,
    );
    // The server is still well.
    login_token(&server, "pia", PASSWORD).await;
}

/// Asserts that registering `id` is refused as a taken name and made no account: the password
/// it was tried with logs in to nothing, so the registrant holds no token of the user's.
pub(crate) async fn not_registered(server: &TestServer, id: &str) {
    assert_refused(
        try_register(server, id, PASSWORD).await,
        409,
        Code::AccountTaken,
    );
    assert_refused(login(server, id, PASSWORD).await, 401, Code::BadCredentials);
}

/// The user's current token version, as the server's store has it.
async fn token_version(server: &TestServer, user: &str) -> u64 {
    server
        .running()
        .store
        .user_state(user)
        .await
        .unwrap()
        .token_version
}

/// A token of `origin` for `user` at `version`, made with the server's key outside the server.
fn forged(server: &TestServer, user: &str, version: u64, origin: Origin) -> String {
    let now = now_ms() / 1000;
    let creds = &server.running().credentials;
    tidings_engine::auth::mint_for(origin, creds, user, version, (now, now + 3600)).unwrap()
}

/// Asserts that `token` opens nothing: CONNECT and the bearer-authenticated routes refuse it as
/// revoked, and it changes nothing.
async fn opens_nothing(server: &TestServer, token: &str) {
    connect_refused(server, token, Code::TokenRevoked).await;
    assert_refused(
        me(server, "GET", token, Value::Null).await,
        401,
        Code::TokenRevoked,
    );
    assert_refused(
        me(server, "PATCH", token, json!({ "name": "Mallory" })).await,
        401,
        Code::TokenRevoked,
    );
    assert_refused(
        call(server, "POST", "/logout", Some(token), Value::Null).await,
        401,
        Code::TokenRevoked,
    );
}

#[tokio::test]
async fn an_id_with_only_a_group_membership_is_not_registered() {
    let server = TestServer::start().await;
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/groups",
        json!({ "groupId": "club", "ownerId": "founder", "name": "Club", "memberIds": ["grouped"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    not_registered(&server, "grouped").await;
    let (_, body) = api(&server, "GET", "/api/v1/users/grouped/groups", Value::Null).await;
    assert_eq!(body["groups"][0]["groupId"], "club", "{body}");
}

#[tokio::test]
async fn an_id_with_only_a_token_minted_by_the_api_is_not_registered() {
    let server = TestServer::start().await;
    let (status, body) = api(&server, "POST", "/api/v1/users/minted/token", Value::Null).await;
    assert_eq!(status, 200, "{body}");
    not_registered(&server, "minted").await;
    // The app server's token still opens its user.
    let token = body["token"].as_str().unwrap();
    assert_eq!(connects_as(&server, token).await, "minted");
}

#[tokio::test]
async fn an_id_with_only_a_token_minted_by_tidings_token_is_not_registered() {
    let server = TestServer::start().await;
    // Minted offline beside the running server, on its database.
    let token = tidings_server::cli::mint_token(server.dir.path(), "offline", None)
        .await
        .unwrap();
    not_registered(&server, "offline").await;
    assert_eq!(connects_as(&server, &token).await, "offline");
}

#[tokio::test]
async fn no_token_of_the_app_servers_opens_an_account() {
    let server = TestServer::start().await;
    let token = register(&server, "selfmade").await;
    // Neither the API nor `tidings token` mints one.
    assert_refused(
        api(&server, "POST", "/api/v1/users/selfmade/token", Value::Null).await,
        409,
        Code::UserIsAccount,
    );
    let offline = tidings_server::cli::mint_token(server.dir.path(), "selfmade", None)
        .await
        .unwrap_err();
    assert!(
        format!("{offline:#}").contains("self-registered account"),
        "{offline:#}"
    );
    // One made anyway with the server's key — at the account's token version, or before the
    // account was registered (version 0) — opens nothing.
    let version = token_version(&server, "selfmade").await;
    for version in [version, 0] {
        opens_nothing(
            &server,
            &forged(&server, "selfmade", version, Origin::AppServer),
        )
        .await;
    }
    let (_, mine) = me(&server, "GET", &token, Value::Null).await;
    assert_eq!(mine["user"]["name"], "");
    assert_eq!(connects_as(&server, &token).await, "selfmade");

    // The app server is still the admin of the account's user: it sets the profile, adds the
    // user to a group and sends as the user.
    let (status, body) = api(
        &server,
        "PUT",
        "/api/v1/users/selfmade",
        json!({ "name": "Self Made" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/groups",
        json!({ "groupId": "mixed", "ownerId": "appuser", "name": "Mixed", "memberIds": ["selfmade"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/messages",
        json!({ "fromUserId": "selfmade", "conversationType": 3, "targetId": "mixed", "content": { "text": "hello" } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The id stays an account's once the account is deleted.
    let (status, _) = me(&server, "DELETE", &token, json!({ "password": PASSWORD })).await;
    assert_eq!(status, 204);
    assert_refused(
        api(&server, "POST", "/api/v1/users/selfmade/token", Value::Null).await,
        409,
        Code::UserIsAccount,
    );
}

#[tokio::test]
async fn no_token_of_an_accounts_opens_an_app_servers_user() {
    let server = TestServer::start().await;
    let (_app, _events) = server.client("appuser", "phone").await;
    let version = token_version(&server, "appuser").await;
    opens_nothing(
        &server,
        &forged(&server, "appuser", version, Origin::Account),
    )
    .await;
}

#[tokio::test]
async fn tokens_minted_before_an_id_was_registered_are_not_current() {
    let server = TestServer::start().await;
    // Made where the id could not be recorded (as by an older server), so the id has no
    // trace and is registered.
    let app = forged(&server, "early", 0, Origin::AppServer);
    let account = forged(&server, "early", 0, Origin::Account);
    let token = register(&server, "early").await;
    for before in [&app, &account] {
        opens_nothing(&server, before).await;
    }
    assert_eq!(connects_as(&server, &token).await, "early");
}
