//! The seed-001 dialect (`{cmd, data}` JSON packets at `/json/ws`, and `POST /json/message`),
//! driven by a client written from the seed document.

use std::time::Duration;

use serde_json::{Value, json};
use tidings_proto::Code;

use crate::util::{
    SeedWs, TestServer, api, create_group, eventually, http, next_message, now_ms, signed,
    stored_cursor,
};

/// A seed-001 client.
pub(crate) struct Client {
    pub(crate) ws: SeedWs,
}

impl Client {
    async fn open(server: &TestServer) -> Client {
        Client {
            ws: SeedWs::open(server, "/json/ws").await,
        }
    }

    /// Opens and authenticates as `user` (with that name and `group`); returns the AUTH data.
    pub(crate) async fn auth(server: &TestServer, user: &str, group: &str) -> (Client, Value) {
        let (c, auth) = Client::try_auth(server, user, group).await;
        assert_eq!(auth["code"], 200, "{auth}");
        (c, auth)
    }

    /// Opens and sends AUTH as `user` (with that name and `group`); returns the AUTH answer.
    async fn try_auth(server: &TestServer, user: &str, group: &str) -> (Client, Value) {
        let mut c = Client::open(server).await;
        let token = server.token(user).await;
        c.send(
            "AUTH",
            json!({ "token": token, "name": user, "group": group }),
        )
        .await;
        let auth = c.packet("AUTH").await;
        (c, auth)
    }

    /// The next delivered MESSAGE, passing over the reports of this client's own messages;
    /// confirms it.
    async fn delivered(&mut self) -> Value {
        loop {
            let p = self.ws.json().await;
            match p["cmd"].as_str() {
                Some("MESSAGE_REPLY") => continue,
                Some("MESSAGE") => {
                    let data = p["data"].clone();
                    self.send("MESSAGE_CALLBACK", json!({ "mid": data["mid"] }))
                        .await;
                    return data;
                }
                _ => panic!("expected a MESSAGE: {p}"),
            }
        }
    }

    pub(crate) async fn send(&mut self, cmd: &str, data: Value) {
        self.ws.send_json(json!({ "cmd": cmd, "data": data })).await;
    }

    /// The next packet, which must be `cmd`; returns its data.
    pub(crate) async fn packet(&mut self, cmd: &str) -> Value {
        let p = self.ws.json().await;
        assert_eq!(p["cmd"], cmd, "{p}");
        p["data"].clone()
    }

    pub(crate) async fn message(&mut self, send_type: &str, target: &str, text: &str) {
        self.send(
            "MESSAGE",
            json!({
                "sendType": send_type,
                "target": target,
                "message": { "text": text, "desp": "", "extra": {} }
            }),
        )
        .await;
    }
}

#[tokio::test]
async fn a_message_is_delivered_resent_until_its_callback_and_replied_ok() {
    let server = TestServer::start_with(|c| c.ack_timeout = Duration::from_millis(200)).await;
    let (mut a, auth) = Client::auth(&server, "2001", "").await;
    assert_eq!(auth["msg"], "Successful authentication");
    assert!(!auth["auth"].as_str().unwrap().is_empty());
    let (mut b, _) = Client::auth(&server, "2002", "").await;

    a.send(
        "MESSAGE",
        json!({
            "sendType": "personal",
            "target": "2002",
            "message": { "text": "hi", "desp": "a greeting", "extra": { "k": 1 } }
        }),
    )
    .await;
    let got = b.packet("MESSAGE").await;
    assert_eq!(got["sendType"], "personal");
    assert_eq!(got["target"], "2002");
    assert_eq!(
        got["from"],
        json!({ "method": "websocket", "name": "2001" })
    );
    assert_eq!(
        got["message"],
        json!({ "text": "hi", "desp": "a greeting", "extra": { "k": 1 } })
    );
    let mid = got["mid"].as_str().unwrap().to_string();
    // No callback yet: it comes again.
    assert_eq!(b.packet("MESSAGE").await["mid"], mid.as_str());
    b.send("MESSAGE_CALLBACK", json!({ "mid": mid })).await;

    let reply = a.packet("MESSAGE_REPLY").await;
    assert_eq!(reply["mid"], mid.as_str());
    assert_eq!(reply["status"], json!({ "2002": "ok" }));

    // A second message comes; the first is not resent once confirmed (it was due first).
    a.message("personal", "2002", "again").await;
    let mut texts = Vec::new();
    while texts.len() < 2 {
        let m = b.packet("MESSAGE").await;
        assert_ne!(m["mid"], mid.as_str(), "resent after its callback");
        texts.push(m["message"]["text"].as_str().unwrap().to_string());
    }
    assert_eq!(texts, ["again", "again"]);
}

#[tokio::test]
async fn replies_say_ready_for_offline_and_wait_for_unconfirmed_targets() {
    let server = TestServer::start_with(|c| c.receipt_wait = Duration::from_millis(300)).await;
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/groups",
        json!({ "groupId": "g1", "ownerId": "2101", "name": "G", "memberIds": ["2102", "2103"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (mut a, _) = Client::auth(&server, "2101", "g1").await;
    let (mut b, _) = Client::auth(&server, "2102", "").await;

    // 2102 is online and does not confirm; 2103 is offline. The group is the bound one.
    a.message("group", "", "to the group").await;
    let got = b.packet("MESSAGE").await;
    assert_eq!(
        (got["sendType"].clone(), got["target"].clone()),
        (json!("group"), json!("g1"))
    );
    let reply = a.packet("MESSAGE_REPLY").await;
    assert_eq!(reply["status"], json!({ "2102": "wait", "2103": "ready" }));

    // 2103 comes online later and gets it.
    let (mut c, _) = Client::auth(&server, "2103", "").await;
    assert_eq!(c.packet("MESSAGE").await["message"]["text"], "to the group");
}

#[tokio::test]
async fn offline_messages_arrive_on_auth_and_once_confirmed_not_again() {
    let server = TestServer::start().await;
    let (mut a, _) = Client::auth(&server, "2201", "").await;
    a.message("personal", "2202", "while away").await;
    let (mut b, _) = Client::auth(&server, "2202", "").await;
    let got = b.packet("MESSAGE").await;
    assert_eq!(got["message"]["text"], "while away");
    b.send("MESSAGE_CALLBACK", json!({ "mid": got["mid"] }))
        .await;
    drop(b);
    // The device's position is stored as the session ends; a native CONNECT of the same
    // device id reports it.
    eventually("the seed-001 device's cursor is stored", || async {
        stored_cursor(&server, "2202", "seed001").await >= 1
    })
    .await;
    let (mut b, _) = Client::auth(&server, "2202", "").await;
    a.message("personal", "2202", "newer").await;
    assert_eq!(b.packet("MESSAGE").await["message"]["text"], "newer");
}

#[tokio::test]
async fn auth_refusals() {
    let server = TestServer::start().await;
    // Anything but AUTH and PING first: 401, and the connection stays.
    let mut c = Client::open(&server).await;
    c.send("PING", Value::Null).await;
    assert_eq!(c.ws.json().await, json!({ "cmd": "PONG" }));
    c.message("personal", "x", "too early").await;
    assert_eq!(c.packet("AUTH").await["code"], 401);
    let token = server.token("2301").await;
    c.send(
        "AUTH",
        json!({ "token": token, "name": "2301", "group": "" }),
    )
    .await;
    assert_eq!(c.packet("AUTH").await["code"], 200);

    // A forged token, a name that is not the token's user, a malformed group id: 403, then the
    // connection closes.
    for data in [
        json!({ "token": "forged", "name": "", "group": "" }),
        json!({ "token": server.token("2302").await, "name": "someone-else", "group": "" }),
        json!({ "token": server.token("2302").await, "name": "2302", "group": "not a group id" }),
    ] {
        let mut c = Client::open(&server).await;
        c.send("AUTH", data.clone()).await;
        let auth = c.packet("AUTH").await;
        assert_eq!(auth["code"], 403, "{data}: {auth}");
        assert!(!auth["msg"].as_str().unwrap().is_empty());
        c.ws.expect_closed().await;
    }
}

#[tokio::test]
async fn bad_packets_get_info_with_the_code() {
    let server = TestServer::start().await;
    let (mut a, _) = Client::auth(&server, "2401", "").await;
    let code_of = |v: &Value| -> u32 {
        v.as_str()
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("INFO starts with a code: {v}"))
    };

    a.ws.send_text("{nope").await;
    assert_eq!(
        code_of(&a.packet("INFO").await),
        Code::MalformedFrame.as_u32()
    );
    a.send("LAUNCH", json!({})).await;
    assert_eq!(
        code_of(&a.packet("INFO").await),
        Code::UnknownFrameKind.as_u32()
    );
    a.message("broadcast", "2402", "x").await;
    assert_eq!(
        code_of(&a.packet("INFO").await),
        Code::UnknownConversationType.as_u32()
    );
    a.send("MESSAGE_CALLBACK", json!({ "mid": "no-such" }))
        .await;
    assert_eq!(
        code_of(&a.packet("INFO").await),
        Code::MessageNotFound.as_u32()
    );

    // A refused message: INFO with the code, and a reply saying the target gets nothing.
    a.message("group", "not-mine", "x").await;
    assert_eq!(
        code_of(&a.packet("INFO").await),
        Code::GroupNotFound.as_u32()
    );
    let reply = a.packet("MESSAGE_REPLY").await;
    assert_eq!(reply["status"], json!({ "not-mine": "no" }));

    // Still usable.
    a.send("PING", Value::Null).await;
    assert_eq!(a.ws.json().await, json!({ "cmd": "PONG" }));
}

#[tokio::test]
async fn messages_sent_over_http_arrive_with_method_http() {
    let server = TestServer::start().await;
    let (mut b, _) = Client::auth(&server, "2502", "").await;
    let (_a, auth) = Client::auth(&server, "2501", "").await;
    let body = json!({
        "sendType": "personal",
        "target": "2502",
        "message": { "text": "by http", "desp": "", "extra": {} }
    });

    // With the `auth` the AUTH answer gave.
    let bearer = vec![(
        "Authorization",
        format!("Bearer {}", auth["auth"].as_str().unwrap()),
    )];
    let (status, answer) = http(
        &server,
        "POST",
        "/json/message",
        bearer,
        Some(body.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let got = b.packet("MESSAGE").await;
    assert_eq!(got["from"], json!({ "method": "http", "name": "2501" }));
    assert_eq!(got["mid"], answer["mid"]);

    // Signed like the HTTP API, naming the sender.
    let mut signed_body = body.clone();
    signed_body["from"] = json!({ "name": "2503" });
    let (status, answer) = api(&server, "POST", "/json/message", signed_body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let got = b.packet("MESSAGE").await;
    assert_eq!(got["from"], json!({ "method": "http", "name": "2503" }));
    // The signature covers the body: headers signed for 2503's message cannot send as 2504.
    let mut forged = signed_body.clone();
    forged["from"] = json!({ "name": "2504" });
    let for_2503 = signed(
        &server,
        "seed001-body",
        now_ms(),
        "POST",
        "/json/message",
        &signed_body.to_string(),
    );
    let (status, answer) = http(
        &server,
        "POST",
        "/json/message",
        for_2503,
        Some(forged.to_string()),
    )
    .await;
    assert_eq!(
        (status, answer["code"].clone()),
        (401, json!(Code::SignatureInvalid.as_u32())),
        "{answer}"
    );

    // Signed without a sender, unsigned, and a bad body.
    let (status, answer) = api(&server, "POST", "/json/message", body.clone()).await;
    assert_eq!(
        (status, answer["code"].clone()),
        (400, json!(Code::BadRequest.as_u32()))
    );
    let (status, answer) = http(
        &server,
        "POST",
        "/json/message",
        vec![],
        Some(body.to_string()),
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    let bearer = vec![(
        "Authorization",
        format!("Bearer {}", server.token("2501").await),
    )];
    let (status, _) = http(&server, "POST", "/json/message", bearer, Some("[1]".into())).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_newer_connection_of_a_name_takes_over() {
    let server = TestServer::start().await;
    let (mut first, _) = Client::auth(&server, "2601", "").await;
    let (mut second, _) = Client::auth(&server, "2601", "").await;
    let info = first.packet("INFO").await;
    assert!(
        info.as_str()
            .unwrap()
            .starts_with(&Code::Kicked.as_u32().to_string()),
        "{info}"
    );
    first.ws.expect_closed().await;
    let (mut other, _) = Client::auth(&server, "2602", "").await;
    other.message("personal", "2601", "to the newer one").await;
    assert_eq!(
        second.packet("MESSAGE").await["message"]["text"],
        "to the newer one"
    );
}

/// A server with push on, reporting after `wait`, and the test's push service.
async fn with_push(wait: Duration) -> (TestServer, crate::push::PushService, String) {
    let service = crate::push::PushService::start().await;
    let server = TestServer::start_with(|c| {
        c.push_retry = Duration::from_millis(10);
        c.receipt_wait = wait;
    })
    .await;
    let key = server.running().engine.vapid_public_key().unwrap();
    (server, service, key)
}

#[tokio::test]
async fn register_fcm_gets_offline_targets_notified_and_replies_say_so() {
    let (server, mut service, key) = with_push(Duration::from_secs(2)).await;
    let (mut a, auth) = Client::auth(&server, "2701", "").await;
    // AUTH gives the key a browser passes to pushManager.subscribe.
    assert_eq!(auth["fcmServerKey"], key.as_str());

    // 2702 and 2703 register their browsers' subscriptions, then go away. 2703's push service
    // never answers.
    let devices = [
        crate::push::Device::new(&service, "/sub/2702"),
        crate::push::Device::new(&service, "/sub/2703"),
    ];
    service.script("/sub/2703", &[crate::push::Answer::Hang]);
    for (user, device) in ["2702", "2703"].iter().zip(&devices) {
        let (mut c, _) = Client::auth(&server, user, "").await;
        let sub = device.subscription();
        c.send(
            "REGISTER_FCM",
            json!({
                "endpoint": sub.endpoint,
                "expirationTime": null,
                "keys": { "auth": sub.auth, "p256dh": sub.p256dh }
            }),
        )
        .await;
        // No answer to a registration that worked: a PING's PONG comes next.
        c.send("PING", Value::Null).await;
        assert_eq!(c.ws.json().await, json!({ "cmd": "PONG" }));
        drop(c);
        crate::push::offline(&server, user).await;
    }

    a.message("personal", "2702", "are you there?").await;
    let seen = service.next().await;
    let notification = devices[0].open(&seen, &key, &service.origin);
    assert_eq!(notification["text"], "are you there?");
    assert_eq!(notification["senderId"], "2701");
    let reply = a.packet("MESSAGE_REPLY").await;
    assert_eq!(reply["status"], json!({ "2702": "fcm-ok" }));

    a.message("personal", "2703", "and you?").await;
    assert_eq!(service.next().await.path, "/sub/2703");
    let reply = a.packet("MESSAGE_REPLY").await;
    assert_eq!(reply["status"], json!({ "2703": "fcm-wait" }));
}

#[tokio::test]
async fn register_fcm_refusals() {
    let (server, _service, _key) = with_push(Duration::from_secs(1)).await;
    let (mut a, _) = Client::auth(&server, "2801", "").await;
    let code_of = |v: &Value| v.as_str().unwrap().split(' ').next().unwrap().to_string();
    a.send(
        "REGISTER_FCM",
        json!({ "endpoint": "https://push.example/x" }),
    )
    .await;
    assert_eq!(
        code_of(&a.packet("INFO").await),
        Code::InvalidPushSubscription.as_u32().to_string()
    );
    a.send(
        "REGISTER_FCM",
        json!({ "endpoint": "not a url", "keys": { "auth": "x", "p256dh": "y" } }),
    )
    .await;
    assert_eq!(
        code_of(&a.packet("INFO").await),
        Code::InvalidPushSubscription.as_u32().to_string()
    );

    // With push off, AUTH has no key and a registration is told there is no push.
    let server = TestServer::start_with(|c| c.push = false).await;
    let (mut a, auth) = Client::auth(&server, "2802", "").await;
    assert!(auth.get("fcmServerKey").is_none(), "{auth}");
    a.send(
        "REGISTER_FCM",
        json!({ "endpoint": "https://push.example/x" }),
    )
    .await;
    assert!(
        a.packet("INFO").await.as_str().unwrap().contains("push"),
        "an INFO about push"
    );
}

#[tokio::test]
async fn a_group_named_at_auth_is_made_on_first_use_and_joined_by_the_next() {
    let server = TestServer::start().await;
    // Two unchanged seed clients name a group nobody made: the first makes it, the second joins.
    let (mut a, _) = Client::auth(&server, "2701", "lobby-1").await;
    let (mut b, _) = Client::auth(&server, "2702", "lobby-1").await;
    let (status, body) = api(&server, "GET", "/api/v1/groups/lobby-1", Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["group"]["kind"],
            &body["group"]["ownerId"],
            &body["group"]["memberCount"]
        ),
        (&json!("open"), &json!("2701"), &json!(2))
    );
    // A native member (added by the app server, which manages every kind) hears it too.
    let (status, body) = crate::util::add_group_members(&server, "lobby-1", &["2703"]).await;
    assert_eq!(status, 200, "{body}");
    let (_c, mut c_events) = server.client("2703", "d").await;

    a.message("group", "lobby-1", "from a").await;
    let got = b.delivered().await;
    assert_eq!(
        (&got["sendType"], &got["target"], &got["from"]["name"]),
        (&json!("group"), &json!("lobby-1"), &json!("2701"))
    );
    assert_eq!(got["message"]["text"], "from a");
    let native = loop {
        let m = next_message(&mut c_events).await;
        if m.msg_type == "text" {
            break m;
        }
    };
    assert_eq!(
        (native.sender_id.as_str(), native.target_id.as_str()),
        ("2701", "lobby-1")
    );
    // The bound group is where a group MESSAGE without a target goes.
    b.message("group", "", "from b").await;
    let got = a.delivered().await;
    assert_eq!(
        (
            &got["target"],
            &got["from"]["name"],
            &got["message"]["text"]
        ),
        (&json!("lobby-1"), &json!("2702"), &json!("from b"))
    );
    // Naming it again, on a new connection, changes nothing.
    drop(b);
    let (_b, _) = Client::auth(&server, "2702", "lobby-1").await;
    let (_, body) = api(&server, "GET", "/api/v1/groups/lobby-1", Value::Null).await;
    assert_eq!(body["group"]["memberCount"], 3);
}

#[tokio::test]
async fn an_app_managed_group_is_named_only_by_its_members() {
    let server = TestServer::start().await;
    create_group(&server, "staff", "2801", &["2802"]).await;
    // A user not in it is refused, with the code, and joins nothing.
    let (mut c, auth) = Client::try_auth(&server, "2803", "staff").await;
    assert_eq!(auth["code"], 403, "{auth}");
    assert!(
        auth["msg"].as_str().unwrap().starts_with("22406 "),
        "{auth}"
    );
    c.ws.expect_closed().await;
    let (_, body) = api(&server, "GET", "/api/v1/groups/staff", Value::Null).await;
    assert_eq!(
        (&body["group"]["kind"], &body["group"]["memberCount"]),
        (&json!("managed"), &json!(2))
    );
    // A member names it and sends to it.
    let (mut owner, _) = Client::auth(&server, "2801", "").await;
    let (mut member, _) = Client::auth(&server, "2802", "staff").await;
    member.message("group", "", "hello staff").await;
    let got = owner.delivered().await;
    assert_eq!(
        (&got["target"], &got["message"]["text"]),
        (&json!("staff"), &json!("hello staff"))
    );
    // A malformed group id is refused with its code.
    let (_, auth) = Client::try_auth(&server, "2803", "no such/id").await;
    assert_eq!(auth["code"], 403);
    assert!(
        auth["msg"].as_str().unwrap().starts_with("20407 "),
        "{auth}"
    );
}

#[tokio::test]
async fn making_or_joining_groups_at_auth_counts_against_the_send_rate() {
    let server = TestServer::start_with(|c| {
        c.send_rate = 1;
        c.send_burst = 1;
    })
    .await;
    let (_a, _) = Client::auth(&server, "2901", "made-1").await;
    // Naming it again, as a member, is not counted.
    let (_a, _) = Client::auth(&server, "2901", "made-1").await;
    // The next group made within the second is refused; nothing is made.
    let (_, auth) = Client::try_auth(&server, "2901", "made-2").await;
    assert_eq!(auth["code"], 403);
    assert!(
        auth["msg"].as_str().unwrap().starts_with("20604 "),
        "{auth}"
    );
    let (status, _) = api(&server, "GET", "/api/v1/groups/made-2", Value::Null).await;
    assert_eq!(status, 404);
    // Joining is counted for the user who joins.
    let (_b, _) = Client::auth(&server, "2902", "made-1").await;
    let (_, auth) = Client::try_auth(&server, "2902", "made-3").await;
    assert!(
        auth["msg"].as_str().unwrap().starts_with("20604 "),
        "{auth}"
    );
    let (_, body) = api(&server, "GET", "/api/v1/groups/made-1", Value::Null).await;
    assert_eq!(body["group"]["memberCount"], 2);
}
