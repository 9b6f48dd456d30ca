//! The user and message routes of the HTTP API: profiles, bans, online status, messages sent on
//! a user's behalf and from a system account.

use serde_json::{Value, json};
use tidings_client::{Client, ClientConfig, ClientError, Event, HistoryStart, Outgoing};
use tidings_proto::Code;

use crate::util::*;

const SYSTEM: u32 = 6;

fn code_of(body: &Value) -> Option<u64> {
    body["code"].as_u64()
}

#[tokio::test]
async fn profiles_are_set_read_and_show_who_is_online() {
    let server = TestServer::start().await;
    let (status, body) = api(
        &server,
        "PUT",
        "/api/v1/users/ann",
        json!({ "name": "Ann", "portrait": "https://x/ann.png", "extra": { "level": 3 } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["name"], "Ann");
    assert_eq!(body["user"]["extra"]["level"], 3);
    assert_eq!(body["user"]["online"], false);
    // Only the fields given change.
    let (_, body) = api(
        &server,
        "PUT",
        "/api/v1/users/ann",
        json!({ "name": "Annie" }),
    )
    .await;
    assert_eq!(
        (
            body["user"]["name"].as_str(),
            body["user"]["portrait"].as_str()
        ),
        (Some("Annie"), Some("https://x/ann.png"))
    );
    let (_ann, _events) = server.client("ann", "phone").await;
    let (_, body) = api(&server, "GET", "/api/v1/users/ann", Value::Null).await;
    assert_eq!(body["user"]["online"], true);
    let (_, body) = api(
        &server,
        "POST",
        "/api/v1/users/query",
        json!({ "userIds": ["ann", "nobody"] }),
    )
    .await;
    let users = body["users"].as_array().unwrap();
    assert_eq!(
        (users[0]["userId"].as_str(), users[0]["online"].as_bool()),
        (Some("ann"), Some(true))
    );
    assert_eq!(
        (users[1]["name"].as_str(), users[1]["online"].as_bool()),
        (Some(""), Some(false))
    );

    let bad = [
        (
            "PUT",
            "/api/v1/users/ann",
            json!({ "extra": [1] }),
            Code::BadRequest,
        ),
        (
            "PUT",
            "/api/v1/users/a%20b",
            json!({ "name": "x" }),
            Code::InvalidUserId,
        ),
        (
            "PUT",
            "/api/v1/users/ann",
            json!({ "nick": "x" }),
            Code::BadRequest,
        ),
        (
            "POST",
            "/api/v1/users/query",
            json!({ "userIds": [] }),
            Code::BadRequest,
        ),
    ];
    for (method, path, body, code) in bad {
        let (status, answer) = api(&server, method, path, body).await;
        assert_eq!(
            (status, code_of(&answer)),
            (400, Some(code.as_u32().into())),
            "{path}: {answer}"
        );
    }
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let (status, _) = api(
        &server,
        "POST",
        "/api/v1/users/query",
        json!({ "userIds": many }),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_banned_user_is_disconnected_and_refused_until_unbanned() {
    let server = TestServer::start().await;
    let token = server.token("mallory").await;
    let (_client, mut events) = Client::connect(ClientConfig::new(server.url(), token.clone()))
        .await
        .unwrap();
    let (status, body) = api(&server, "POST", "/api/v1/users/mallory/ban", Value::Null).await;
    assert_eq!((status, body["banned"].as_bool()), (200, Some(true)));
    match next_terminal(&mut events).await {
        Event::Kicked { code, .. } => assert_eq!(code, Code::UserBanned.as_u32()),
        other => panic!("{other:?}"),
    }
    let err = Client::connect(ClientConfig::new(server.url(), token.clone()))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err,
        ClientError::Refused {
            code: Code::UserBanned.as_u32(),
            message: Code::UserBanned.text().into()
        }
    );
    let (_, body) = api(&server, "GET", "/api/v1/users/mallory", Value::Null).await;
    assert_eq!(body["user"]["banned"], true);
    api(&server, "POST", "/api/v1/users/mallory/unban", Value::Null).await;
    Client::connect(ClientConfig::new(server.url(), token))
        .await
        .expect("connects again once unbanned");
}

#[tokio::test]
async fn the_app_server_sends_as_a_user_to_a_user_and_to_a_group() {
    let server = TestServer::start().await;
    let (_alice, mut alice_events) = server.client("alice", "phone").await;
    let (_bob, mut bob_events) = server.client("bob", "phone").await;
    let message = json!({
        "fromUserId": "alice", "conversationType": 1, "targetId": "bob",
        "content": { "text": "from the app" }, "clientMsgId": "app-1",
    });
    let (status, body) = api(&server, "POST", "/api/v1/messages", message.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duplicate"], false);
    let got = next_message(&mut bob_events).await;
    assert_eq!(
        (got.sender_id.as_str(), got.uid.as_str()),
        ("alice", body["uid"].as_str().unwrap())
    );
    // Sent on alice's behalf: her own devices get it too.
    let own = next_message(&mut alice_events).await;
    assert_eq!(
        (own.target_id.as_str(), own.uid.as_str()),
        ("bob", got.uid.as_str())
    );
    // A retry of the same call stores nothing new.
    let (_, again) = api(&server, "POST", "/api/v1/messages", message).await;
    assert_eq!(
        (again["uid"].clone(), again["duplicate"].clone()),
        (body["uid"].clone(), json!(true))
    );

    let (status, _) = api(
        &server,
        "POST",
        "/api/v1/groups",
        json!({ "groupId": "crew", "ownerId": "alice", "memberIds": ["bob"] }),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/messages",
        json!({ "fromUserId": "bob", "conversationType": 3, "targetId": "crew",
                "content": { "text": "to the crew" }, "mentionedUserIds": ["alice"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut got = next_message(&mut alice_events).await;
    while got.msg_type != "text" {
        got = next_message(&mut alice_events).await;
    }
    assert_eq!(
        (got.target_id.as_str(), got.mentions("alice")),
        ("crew", true)
    );

    let refusals = [
        (
            json!({ "fromUserId": "carol", "conversationType": 3, "targetId": "crew", "content": { "text": "x" } }),
            Code::NotInGroup,
        ),
        (
            json!({ "fromUserId": "carol", "conversationType": 1, "targetId": "bob", "content": "x" }),
            Code::BadRequest,
        ),
        (
            json!({ "fromUserId": "carol", "conversationType": 6, "targetId": "bob", "content": { "text": "x" } }),
            Code::UnknownConversationType,
        ),
        (
            json!({ "fromUserId": "carol", "conversationType": 1, "targetId": "bob", "content": { "text": "" } }),
            Code::ContentInvalid,
        ),
    ];
    for (message, code) in refusals {
        let (status, body) = api(&server, "POST", "/api/v1/messages", message).await;
        assert_eq!(
            (status, code_of(&body)),
            (400, Some(code.as_u32().into())),
            "{body}"
        );
    }
}

#[tokio::test]
async fn system_messages_reach_each_user_in_a_system_conversation() {
    let server = TestServer::start().await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    let notice = json!({ "fromUserId": "notices", "toUserIds": ["bob", "carol"],
                         "content": { "text": "maintenance at noon" }, "clientMsgId": "n-1" });
    let (status, body) = api(&server, "POST", "/api/v1/messages/system", notice.clone()).await;
    assert_eq!(status, 200, "{body}");
    let sent = body["messages"].as_array().unwrap();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1]["userId"], "carol");
    let got = next_message(&mut bob_events).await;
    assert_eq!(
        (
            got.conversation_type,
            got.target_id.as_str(),
            got.sender_id.as_str()
        ),
        (SYSTEM, "notices", "notices")
    );
    let entry = bob.conversation(SYSTEM, "notices").await.unwrap().unwrap();
    assert_eq!(entry.unread, 1);
    let history = bob
        .history(SYSTEM, "notices", HistoryStart::Newest, 10)
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 1);
    // Carol, offline, syncs hers.
    let (_carol, mut carol_events) = server.client("carol", "phone").await;
    assert_eq!(next_message(&mut carol_events).await.target_id, "notices");
    // The same call again stores nothing new.
    let (_, again) = api(&server, "POST", "/api/v1/messages/system", notice).await;
    assert_eq!(again["messages"][0]["duplicate"], true);
    // Clients do not send system messages.
    let refused = bob
        .send(Outgoing {
            conversation_type: SYSTEM,
            ..Outgoing::text("notices", "hi")
        })
        .await;
    assert!(
        matches!(refused, Err(ClientError::Refused { code, .. }) if code == Code::UnknownConversationType.as_u32())
    );
}

#[tokio::test]
async fn every_route_of_the_openapi_document_is_served() {
    let server = TestServer::start().await;
    let url = format!("{}/api/v1/openapi.json", server.url());
    let doc: Value = tokio::task::spawn_blocking(move || {
        ureq::get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut checked = 0;
    for (path, methods) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{user_id}", "probe")
            .replace("{group_id}", "probe-group")
            .replace("{chatroom_id}", "probe-room");
        for method in methods.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let body = if method == "GET" || method == "DELETE" {
                Value::Null
            } else {
                json!({})
            };
            let (status, answer) = api(&server, &method, &concrete, body).await;
            // Served: answered by its handler, never by the fallback (42008) or as a method
            // the path does not take.
            assert_ne!(
                code_of(&answer),
                Some(Code::NotFound.as_u32().into()),
                "{method} {path}"
            );
            assert_ne!(status, 405, "{method} {path}");
            checked += 1;
        }
    }
    assert_eq!(checked, 41);
    // A method a path does not take is refused with a clear error.
    let (status, answer) = api(&server, "DELETE", "/api/v1/messages", Value::Null).await;
    assert_eq!(
        (status, code_of(&answer)),
        (405, Some(Code::BadRequest.as_u32().into()))
    );
    // And a path that is not in it is not served.
    let (status, answer) = api(&server, "GET", "/api/v1/nothing", Value::Null).await;
    assert_eq!(
        (status, code_of(&answer)),
        (404, Some(Code::NotFound.as_u32().into()))
    );
}

#[tokio::test]
async fn the_app_server_keeps_blocklists_exports_history_and_broadcasts() {
    let server = TestServer::start().await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/users/bob/blocklist",
        json!({ "userIds": ["spam1", "spam2"], "blocked": true }),
    )
    .await;
    assert_eq!(
        (status, body["userIds"].clone()),
        (200, json!(["spam1", "spam2"]))
    );
    assert_eq!(bob.blocklist().await.unwrap(), ["spam1", "spam2"]);
    let (_, body) = api(
        &server,
        "POST",
        "/api/v1/users/bob/blocklist",
        json!({ "userIds": ["spam2"], "blocked": false }),
    )
    .await;
    assert_eq!(body["userIds"], json!(["spam1"]));
    let (_, body) = api(&server, "GET", "/api/v1/users/bob/blocklist", Value::Null).await;
    assert_eq!(body["userIds"], json!(["spam1"]));
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/users/bob/blocklist",
        json!({ "userIds": ["bob"], "blocked": true }),
    )
    .await;
    assert_eq!(
        (status, code_of(&body)),
        (400, Some(Code::BadRequest.as_u32().into()))
    );

    // Three messages, exported in pages of two.
    let (alice, _a) = server.client("alice", "phone").await;
    for text in ["one", "two", "three"] {
        alice.send(Outgoing::text("bob", text)).await.unwrap();
    }
    let page = |after: u64| {
        format!(
            "/api/v1/history?conversationType=1&userId=bob&targetId=alice&afterSeq={after}&limit=2"
        )
    };
    let (status, first) = api(&server, "GET", &page(0), Value::Null).await;
    assert_eq!(status, 200, "{first}");
    let texts = |b: &Value| -> Vec<String> {
        b["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"]["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(texts(&first), ["one", "two"]);
    assert_eq!(first["messages"][0]["targetId"], "alice");
    let next = first["nextAfterSeq"].as_u64().unwrap();
    let (_, second) = api(&server, "GET", &page(next), Value::Null).await;
    assert_eq!(
        (texts(&second), second["nextAfterSeq"].as_u64()),
        (vec!["three".to_string()], Some(0))
    );
    let (status, body) = api(
        &server,
        "GET",
        "/api/v1/history?conversationType=4&targetId=x",
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, code_of(&body)),
        (400, Some(Code::UnknownConversationType.as_u32().into()))
    );

    // A broadcast reaches every user the server knows, but its sender.
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/messages/broadcast",
        json!({ "fromUserId": "alice", "content": { "text": "to everyone" } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The users known are alice (the sender) and bob; the blocked ids were never users here.
    assert_eq!(body["recipients"], 1, "{body}");
    let mut got = next_message(&mut bob_events).await;
    while got.conversation_type != SYSTEM {
        got = next_message(&mut bob_events).await;
    }
    assert_eq!(
        (got.target_id.as_str(), got.sender_id.as_str()),
        ("alice", "alice")
    );
}

#[tokio::test]
async fn sensitive_words_refuse_or_replace_before_storage() {
    let server = TestServer::start().await;
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/sensitive-words",
        json!({ "words": [{ "word": "darn", "replacement": "d**n" }, { "word": "forbidden" }] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["words"],
        json!([{ "word": "darn", "replacement": "d**n" }, { "word": "forbidden", "replacement": null }])
    );
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;

    let sent = alice
        .send(Outgoing::text("bob", "Darn, it rains"))
        .await
        .unwrap();
    let stored = sent.replaced_content.expect("the sender is told");
    assert_eq!(stored, r#"{"text":"d**n, it rains"}"#);
    let got = next_message(&mut bob_events).await;
    assert_eq!(got.content, stored);

    let refused = alice.send(Outgoing::text("bob", "this is FORBIDDEN")).await;
    assert!(
        matches!(refused, Err(ClientError::Refused { code, .. }) if code == Code::SensitiveWordBlocked.as_u32()),
        "{refused:?}"
    );
    let clean = alice.send(Outgoing::text("bob", "all fine")).await.unwrap();
    assert_eq!(clean.replaced_content, None);
    // Nothing of the refused message was stored.
    let history = bob
        .history(1, "alice", HistoryStart::Newest, 10)
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 2);
    // Edits are filtered too.
    let edited = alice
        .edit(1, "bob", clean.seq, r#"{"text":"darn again"}"#)
        .await
        .unwrap();
    assert_eq!(edited.content, r#"{"text":"d**n again"}"#);

    let (_, body) = api(
        &server,
        "POST",
        "/api/v1/sensitive-words/remove",
        json!({ "words": ["forbidden"] }),
    )
    .await;
    assert_eq!(body["words"].as_array().unwrap().len(), 1);
    alice
        .send(Outgoing::text("bob", "this is FORBIDDEN"))
        .await
        .expect("removed words no longer refuse");
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/sensitive-words",
        json!({ "words": [{ "word": "x".repeat(33) }] }),
    )
    .await;
    assert_eq!(
        (status, code_of(&body)),
        (400, Some(Code::BadRequest.as_u32().into()))
    );
}

#[tokio::test]
async fn the_app_server_recalls_any_message_even_from_a_member_who_left() {
    let server =
        TestServer::start_with(|c| c.recall_window = std::time::Duration::from_millis(1)).await;
    let (alice, mut alice_events) = server.client("alice", "phone").await;
    let (bob, _b) = server.client("bob", "phone").await;
    let private = bob.send(Outgoing::text("alice", "oops")).await.unwrap();
    // Not a wait for a condition: the recall window is wall-clock time, and it must pass.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // Past the window for bob himself.
    assert!(matches!(
        bob.recall(1, "alice", private.seq).await,
        Err(ClientError::Refused { code, .. }) if code == Code::RecallWindowPassed.as_u32()
    ));
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/messages/recall",
        json!({ "fromUserId": "bob", "conversationType": 1, "targetId": "alice", "seq": private.seq }),
    )
    .await;
    assert_eq!(
        (status, body["recalled"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let history = alice
        .history(1, "bob", HistoryStart::Newest, 10)
        .await
        .unwrap();
    let first = history
        .messages
        .iter()
        .find(|m| m.seq == private.seq)
        .unwrap();
    assert!(first.recalled);

    // A spammer's group message, recalled after the spammer was removed.
    api(
        &server,
        "POST",
        "/api/v1/groups",
        json!({ "groupId": "room", "ownerId": "alice", "memberIds": ["bob"] }),
    )
    .await;
    let spam = bob
        .send(Outgoing::group_text("room", "buy now"))
        .await
        .unwrap();
    api(
        &server,
        "POST",
        "/api/v1/groups/room/members/remove",
        json!({ "userIds": ["bob"] }),
    )
    .await;
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/messages/recall",
        json!({ "fromUserId": "bob", "conversationType": 3, "targetId": "room", "seq": spam.seq }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The members get the recall event.
    let mut got = next_message(&mut alice_events).await;
    while got.msg_type != "tidings:recall" || got.target_id != "room" {
        got = next_message(&mut alice_events).await;
    }
    let history = alice
        .history(3, "room", HistoryStart::Newest, 10)
        .await
        .unwrap();
    assert!(
        history
            .messages
            .iter()
            .any(|m| m.seq == spam.seq && m.recalled)
    );
    // Only as their sender: alice did not send bob's message, and events are not messages.
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/messages/recall",
        json!({ "fromUserId": "alice", "conversationType": 1, "targetId": "bob", "seq": private.seq }),
    )
    .await;
    assert_eq!(
        (status, code_of(&body)),
        (400, Some(Code::NotMessageSender.as_u32().into())),
        "{body}"
    );
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/messages/recall",
        json!({ "fromUserId": "alice", "conversationType": 3, "targetId": "room", "seq": 1 }),
    )
    .await;
    assert_eq!(
        (status, code_of(&body)),
        (400, Some(Code::MessageNotFound.as_u32().into())),
        "{body}"
    );
}

/// A system message is recalled by its system account, for its one recipient: the recipient
/// gets the recall event and history shows the message recalled.
#[tokio::test]
async fn the_app_server_recalls_a_system_message() {
    recall_a_system_message(&TestServer::start().await).await;
}

/// The same on PostgreSQL.
#[tokio::test]
async fn the_app_server_recalls_a_system_message_on_postgres() {
    use tidings_store_postgres::testing::{TestDatabase, URL_VARIABLE, server_url};
    let Some(url) = server_url() else {
        eprintln!(
            "SKIPPED the_app_server_recalls_a_system_message_on_postgres: set {URL_VARIABLE}"
        );
        return;
    };
    let db = TestDatabase::create(&url).await.expect("a test database");
    let store = tidings_server::StoreSetting::Postgres(db.url.clone());
    let mut server = TestServer::start_with(|c| c.store = store).await;
    recall_a_system_message(&server).await;
    server.shutdown().await;
    db.drop().await.unwrap();
}

async fn recall_a_system_message(server: &TestServer) {
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    let (status, body) = api(
        server,
        "POST",
        "/api/v1/messages/system",
        json!({ "fromUserId": "notice", "toUserIds": ["bob"], "content": { "text": "wrong notice" } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let m = next_message(&mut bob_events).await;
    assert_eq!((m.sender_id.as_str(), m.conversation_type), ("notice", 6));
    let (status, body) = api(
        server,
        "POST",
        "/api/v1/messages/recall",
        json!({ "fromUserId": "notice", "conversationType": 6, "targetId": "bob", "seq": m.seq }),
    )
    .await;
    assert_eq!(
        (status, body["recalled"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let event = next_message(&mut bob_events).await;
    assert_eq!(
        (
            event.msg_type.as_str(),
            event.conversation_type,
            event.target_id.as_str()
        ),
        ("tidings:recall", 6, "notice"),
        "{event:?}"
    );
    let history = bob
        .history(6, "notice", HistoryStart::Newest, 10)
        .await
        .unwrap();
    assert!(
        history
            .messages
            .iter()
            .any(|h| h.seq == m.seq && h.recalled),
        "{history:?}"
    );
    // Only by the account that sent it.
    let (status, body) = api(
        server,
        "POST",
        "/api/v1/messages/recall",
        json!({ "fromUserId": "other", "conversationType": 6, "targetId": "bob", "seq": m.seq }),
    )
    .await;
    assert!(status >= 400, "{status} {body}");
}
