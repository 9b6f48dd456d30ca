//! The chatroom routes of the HTTP API. The app server creates, reads, destroys, kicks, bans,
//! mutes and sets entries through signed requests; members join, send and watch the room's
//! stream over raw JSON frames.

use std::collections::VecDeque;

use serde_json::{Value, json};
use tidings_proto::v1::{self, frame::Body};
use tidings_proto::{CHATROOM_EVENT_TYPE, Code, Encoding};

use crate::util::*;

const CHATROOM: u32 = 4;

/// Asserts that an API answer is the refusal `code` with HTTP status `status`.
fn assert_refused((status, body): (u16, Value), want_status: u16, code: Code) {
    assert_eq!(
        (status, body["code"].as_u64()),
        (want_status, Some(code.as_u32().into())),
        "{body}"
    );
}

/// Creates a kept room through the API; returns its `chatroom` object.
async fn create(server: &TestServer, body: Value) -> Value {
    let (status, answer) = api(server, "POST", "/api/v1/chatrooms", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["code"], 0);
    answer["chatroom"].clone()
}

/// A signed request that must succeed; returns the answer.
async fn ok(server: &TestServer, method: &str, path: &str, body: Value) -> Value {
    let (status, answer) = api(server, method, path, body).await;
    assert_eq!(
        (status, answer["code"].as_u64()),
        (200, Some(0)),
        "{answer}"
    );
    answer
}

/// A member's connection, speaking JSON frames. The room's items that arrive while it waits for
/// an answer are kept, in order, for [`Member::next_item`].
struct Member {
    raw: Raw,
    items: VecDeque<v1::Message>,
    next_id: u32,
}

impl Member {
    async fn connect(server: &TestServer, user: &str) -> Member {
        Member {
            raw: Raw::connected(server, user, Encoding::Json).await,
            items: VecDeque::new(),
            next_id: 0,
        }
    }

    async fn send_json(&mut self, frame: Value) {
        self.raw.send_raw(frame.to_string().into_bytes()).await;
    }

    /// The next frame: a room item (checked to be one: QoS 0, conversation type 4), or the body
    /// of anything else.
    async fn frame(&mut self) -> Result<v1::Message, Body> {
        match self.raw.recv().await {
            Got::Frame(v1::Frame {
                body:
                    Some(Body::Publish(v1::Publish {
                        body: Some(v1::publish::Body::Message(m)),
                        ..
                    })),
                qos,
                ..
            }) => {
                assert_eq!(
                    (qos, m.conversation_type),
                    (0, CHATROOM),
                    "room items are QoS 0 PUBLISH frames of conversation type 4: {m:?}"
                );
                Ok(m)
            }
            Got::Frame(v1::Frame { body: Some(b), .. }) => Err(b),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame that is not a room item.
    async fn answer(&mut self) -> Body {
        loop {
            match self.frame().await {
                Ok(item) => self.items.push_back(item),
                Err(body) => return body,
            }
        }
    }

    /// The next item of the room's stream.
    async fn next_item(&mut self) -> v1::Message {
        if let Some(item) = self.items.pop_front() {
            return item;
        }
        match self.frame().await {
            Ok(item) => item,
            Err(body) => panic!("expected a room item, got {body:?}"),
        }
    }

    /// The next notice with `operation`, skipping the room's other items; its content.
    async fn notice(&mut self, operation: &str) -> Value {
        loop {
            let item = self.next_item().await;
            if item.msg_type != CHATROOM_EVENT_TYPE {
                continue;
            }
            let content: Value = serde_json::from_str(&item.content).unwrap();
            if content["operation"] == operation {
                return content;
            }
        }
    }

    /// The next message (not a notice), skipping notices.
    async fn message(&mut self) -> v1::Message {
        loop {
            let item = self.next_item().await;
            if item.msg_type != CHATROOM_EVENT_TYPE {
                return item;
            }
        }
    }

    /// Sends a QUERY with `body` (the query's oneof field and its value) and waits for its
    /// QUERYACK.
    async fn query(&mut self, body: Value) -> v1::QueryAck {
        self.next_id += 1;
        let id = self.next_id;
        let mut query = body;
        query["queryId"] = id.into();
        self.send_json(json!({ "query": query })).await;
        match self.answer().await {
            Body::Queryack(q) if q.query_id == id => q,
            other => panic!("expected QUERYACK {id}, got {other:?}"),
        }
    }

    async fn join(&mut self, room: &str, recent: u32) -> v1::QueryAck {
        self.query(json!({ "joinChatroom": { "chatroomId": room, "recent": recent } }))
            .await
    }

    /// Joins, which must succeed; the room as the join answered it.
    async fn joined(&mut self, room: &str) -> v1::Chatroom {
        let ack = self.join(room, 0).await;
        assert_eq!(ack.code, 0, "{}", ack.message);
        ack.chatrooms[0].clone()
    }

    async fn quit(&mut self, room: &str) -> v1::QueryAck {
        self.query(json!({ "quitChatroom": { "chatroomId": room } }))
            .await
    }

    /// Sends a text message to a room; the PUBACK.
    async fn send(&mut self, room: &str, text: &str) -> v1::PubAck {
        self.next_id += 1;
        let id = self.next_id;
        self.send_json(json!({
            "publish": {
                "packetId": id,
                "send": {
                    "clientMsgId": format!("c-{id}"),
                    "conversationType": CHATROOM,
                    "targetId": room,
                    "msgType": "text",
                    "content": json!({ "text": text }).to_string(),
                },
            },
            "qos": 1,
        }))
        .await;
        match self.answer().await {
            Body::Puback(p) if p.packet_id == id => p,
            other => panic!("expected PUBACK {id}, got {other:?}"),
        }
    }
}

fn text_of(m: &v1::Message) -> String {
    let content: Value = serde_json::from_str(&m.content).unwrap();
    content["text"].as_str().unwrap_or("?").to_string()
}

fn user_ids(members: &Value) -> Vec<String> {
    members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_app_server_creates_and_reads_a_chatroom_and_a_second_create_conflicts() {
    let server = TestServer::start().await;
    let before = now_ms();
    let room = create(
        &server,
        json!({ "chatroomId": "lobby", "name": "Lobby", "extra": { "topic": "rust" }, "maxMembers": 50 }),
    )
    .await;
    assert_eq!(
        (
            room["chatroomId"].as_str(),
            room["name"].as_str(),
            room["extra"]["topic"].as_str(),
            room["maxMembers"].as_u64(),
            room["memberCount"].as_u64(),
            room["mutedUntil"].as_i64(),
            room["seq"].as_u64(),
            room["kept"].as_bool(),
        ),
        (
            Some("lobby"),
            Some("Lobby"),
            Some("rust"),
            Some(50),
            Some(0),
            Some(0),
            Some(0),
            Some(true)
        ),
        "{room}"
    );
    assert!(room["createdTime"].as_i64().unwrap() >= before, "{room}");
    let got = ok(&server, "GET", "/api/v1/chatrooms/lobby", Value::Null).await;
    assert_eq!(got["chatroom"], room);

    // A second create of a kept room conflicts, and changes nothing.
    assert_refused(
        api(
            &server,
            "POST",
            "/api/v1/chatrooms",
            json!({ "chatroomId": "lobby", "name": "Other" }),
        )
        .await,
        409,
        Code::ChatroomExists,
    );
    let got = ok(&server, "GET", "/api/v1/chatrooms/lobby", Value::Null).await;
    assert_eq!(got["chatroom"]["name"], "Lobby");

    assert_refused(
        api(&server, "GET", "/api/v1/chatrooms/nowhere", Value::Null).await,
        404,
        Code::ChatroomNotFound,
    );
    // A room a join made is not kept, until the app server creates it (which is no conflict).
    let mut alice = Member::connect(&server, "alice").await;
    let made = alice.joined("adhoc").await;
    assert!(!made.kept);
    let got = ok(&server, "GET", "/api/v1/chatrooms/adhoc", Value::Null).await;
    assert_eq!(
        (
            got["chatroom"]["kept"].as_bool(),
            got["chatroom"]["extra"].is_null()
        ),
        (Some(false), true)
    );
    let kept = create(&server, json!({ "chatroomId": "adhoc", "name": "Ad hoc" })).await;
    assert_eq!(
        (kept["kept"].as_bool(), kept["memberCount"].as_u64()),
        (Some(true), Some(1))
    );

    let refusals = [
        (json!({ "chatroomId": "x", "extra": [1] }), Code::BadRequest),
        (json!({ "chatroomId": "x", "owner": "a" }), Code::BadRequest),
        (json!({ "name": "no id" }), Code::BadRequest),
        (json!({ "chatroomId": "a b" }), Code::ChatroomInvalid),
        (
            json!({ "chatroomId": "x", "maxMembers": 0 }),
            Code::ChatroomInvalid,
        ),
    ];
    for (body, code) in refusals {
        assert_refused(
            api(&server, "POST", "/api/v1/chatrooms", body).await,
            400,
            code,
        );
    }
}

#[tokio::test]
async fn max_members_is_enforced_on_join_and_members_are_paged_in_join_order() {
    let server = TestServer::start().await;
    create(&server, json!({ "chatroomId": "small", "maxMembers": 3 })).await;
    let mut members = Vec::new();
    for user in ["carol", "alice", "bob"] {
        let mut m = Member::connect(&server, user).await;
        m.joined("small").await;
        members.push(m);
    }
    let mut dave = Member::connect(&server, "dave").await;
    let full = dave.join("small", 0).await;
    assert_eq!(full.code, Code::ChatroomFull.as_u32(), "{}", full.message);
    // A second connection of a member takes no place.
    let mut alice_laptop = Member::connect(&server, "alice").await;
    alice_laptop.joined("small").await;

    let first = ok(
        &server,
        "GET",
        "/api/v1/chatrooms/small/members?limit=2",
        Value::Null,
    )
    .await;
    assert_eq!(user_ids(&first["members"]), ["carol", "alice"]);
    assert!(first["members"][0]["joinedTime"].as_i64().unwrap() > 0);
    assert_eq!(first["members"][0]["mutedUntil"], 0);
    let token = first["nextPageToken"].as_str().unwrap();
    assert!(!token.is_empty());
    let rest = ok(
        &server,
        "GET",
        &format!("/api/v1/chatrooms/small/members?limit=2&pageToken={token}"),
        Value::Null,
    )
    .await;
    assert_eq!(
        (user_ids(&rest["members"]), rest["nextPageToken"].as_str()),
        (vec!["bob".to_string()], Some(""))
    );

    // A member who quits frees a place; who joins then comes last.
    let quit = members[0].quit("small").await;
    assert_eq!(quit.code, 0, "{}", quit.message);
    dave.joined("small").await;
    let all = ok(
        &server,
        "GET",
        "/api/v1/chatrooms/small/members",
        Value::Null,
    )
    .await;
    assert_eq!(user_ids(&all["members"]), ["alice", "bob", "dave"]);

    assert_refused(
        api(
            &server,
            "GET",
            "/api/v1/chatrooms/small/members?limit=501",
            Value::Null,
        )
        .await,
        400,
        Code::ChatroomInvalid,
    );
    assert_refused(
        api(
            &server,
            "GET",
            "/api/v1/chatrooms/small/members?page=2",
            Value::Null,
        )
        .await,
        400,
        Code::BadRequest,
    );
    assert_refused(
        api(
            &server,
            "GET",
            "/api/v1/chatrooms/nowhere/members",
            Value::Null,
        )
        .await,
        404,
        Code::ChatroomNotFound,
    );
}

#[tokio::test]
async fn a_kicked_member_gets_the_notice_and_is_out_but_may_join_again() {
    let server = TestServer::start().await;
    create(&server, json!({ "chatroomId": "den" })).await;
    let mut alice = Member::connect(&server, "alice").await;
    let mut bob = Member::connect(&server, "bob").await;
    alice.joined("den").await;
    bob.joined("den").await;

    let answer = ok(
        &server,
        "POST",
        "/api/v1/chatrooms/den/kick",
        json!({ "userIds": ["bob"] }),
    )
    .await;
    assert_eq!(answer["chatroom"]["memberCount"], 1, "{answer}");
    for member in [&mut bob, &mut alice] {
        let kick = member.notice("kick").await;
        assert_eq!(
            (kick["userIds"].clone(), kick["bannedUntil"].as_i64()),
            (json!(["bob"]), Some(0))
        );
    }
    let refused = bob.send("den", "still here?").await;
    assert_eq!(
        refused.code,
        Code::NotInChatroom.as_u32(),
        "{}",
        refused.message
    );
    let members = ok(&server, "GET", "/api/v1/chatrooms/den/members", Value::Null).await;
    assert_eq!(user_ids(&members["members"]), ["alice"]);
    // A kick is no ban.
    bob.joined("den").await;
    assert_eq!(bob.send("den", "back").await.code, 0);

    assert_refused(
        api(
            &server,
            "POST",
            "/api/v1/chatrooms/den/kick",
            json!({ "userIds": [] }),
        )
        .await,
        400,
        Code::BadRequest,
    );
    assert_refused(
        api(
            &server,
            "POST",
            "/api/v1/chatrooms/nowhere/kick",
            json!({ "userIds": ["bob"] }),
        )
        .await,
        404,
        Code::ChatroomNotFound,
    );
}

#[tokio::test]
async fn a_banned_user_is_refused_until_a_ban_of_zero_minutes_lifts_it() {
    let server = TestServer::start().await;
    create(&server, json!({ "chatroomId": "stage" })).await;
    let mut alice = Member::connect(&server, "alice").await;
    let mut eve = Member::connect(&server, "eve").await;
    alice.joined("stage").await;

    // Until lifted: she is taken out, told so, and her joins are refused.
    ok(
        &server,
        "POST",
        "/api/v1/chatrooms/stage/ban",
        json!({ "userIds": ["alice"] }),
    )
    .await;
    let kick = alice.notice("kick").await;
    assert_eq!(
        (kick["userIds"].clone(), kick["bannedUntil"].as_i64()),
        (json!(["alice"]), Some(i64::MAX))
    );
    let refused = alice.join("stage", 0).await;
    assert_eq!(refused.code, Code::KickedFromChatroom.as_u32());
    // A timed ban of someone who is not in the room refuses their first join.
    let answer = ok(
        &server,
        "POST",
        "/api/v1/chatrooms/stage/ban",
        json!({ "userIds": ["eve"], "minutes": 10 }),
    )
    .await;
    assert_eq!(answer["chatroom"]["memberCount"], 0);
    assert_eq!(
        eve.join("stage", 0).await.code,
        Code::KickedFromChatroom.as_u32()
    );

    ok(
        &server,
        "POST",
        "/api/v1/chatrooms/stage/ban",
        json!({ "userIds": ["alice"], "minutes": 0 }),
    )
    .await;
    alice.joined("stage").await;
    // Lifting one ban leaves the other.
    assert_eq!(
        eve.join("stage", 0).await.code,
        Code::KickedFromChatroom.as_u32()
    );
    // Lifting a ban kicks no one.
    ok(
        &server,
        "POST",
        "/api/v1/chatrooms/stage/ban",
        json!({ "userIds": ["alice"], "minutes": 0 }),
    )
    .await;
    // It is noticed (which is how the other nodes of a cluster learn of it).
    assert_eq!(alice.notice("unban").await["userIds"], json!(["alice"]));
    assert_eq!(alice.send("stage", "still in").await.code, 0);

    for body in [
        json!({ "userIds": ["alice"], "minutes": 366 * 24 * 60 + 1 }),
        json!({ "minutes": 5 }),
        json!({ "userIds": ["alice"], "minutes": -1 }),
    ] {
        assert_refused(
            api(&server, "POST", "/api/v1/chatrooms/stage/ban", body).await,
            400,
            Code::BadRequest,
        );
    }
}

#[tokio::test]
async fn a_muted_member_and_then_a_muted_room_may_not_send() {
    let server = TestServer::start().await;
    create(&server, json!({ "chatroomId": "talk" })).await;
    let mut alice = Member::connect(&server, "alice").await;
    let mut bob = Member::connect(&server, "bob").await;
    alice.joined("talk").await;
    bob.joined("talk").await;

    let before = now_ms();
    ok(
        &server,
        "POST",
        "/api/v1/chatrooms/talk/mute",
        json!({ "userIds": ["bob"], "minutes": 10 }),
    )
    .await;
    for member in [&mut alice, &mut bob] {
        let mute = member.notice("mute").await;
        assert_eq!(mute["userIds"], json!(["bob"]));
        let until = mute["until"].as_i64().unwrap();
        assert!((before + 10 * 60_000..=now_ms() + 10 * 60_000).contains(&until));
    }
    let members = ok(
        &server,
        "GET",
        "/api/v1/chatrooms/talk/members",
        Value::Null,
    )
    .await;
    assert_eq!(members["members"][0]["mutedUntil"], 0);
    assert!(members["members"][1]["mutedUntil"].as_i64().unwrap() > before);
    let refused = bob.send("talk", "let me speak").await;
    assert_eq!(refused.code, Code::MutedInChatroom.as_u32());
    assert_eq!(alice.send("talk", "only me").await.code, 0);
    assert_eq!(text_of(&bob.message().await), "only me");

    ok(
        &server,
        "POST",
        "/api/v1/chatrooms/talk/mute",
        json!({ "userIds": ["bob"], "minutes": 0 }),
    )
    .await;
    assert_eq!(alice.notice("unmute").await["userIds"], json!(["bob"]));
    assert_eq!(bob.send("talk", "thanks").await.code, 0);
    assert_eq!(text_of(&alice.message().await), "thanks");

    // The whole room, until unmuted: no member may send, the app server still may.
    let answer = ok(&server, "POST", "/api/v1/chatrooms/talk/mute", json!({})).await;
    assert_eq!(answer["chatroom"]["mutedUntil"], i64::MAX);
    let mute = alice.notice("mute").await;
    assert_eq!(
        (mute["all"].as_bool(), mute["until"].as_i64()),
        (Some(true), Some(i64::MAX))
    );
    for member in [&mut alice, &mut bob] {
        assert_eq!(
            member.send("talk", "hello?").await.code,
            Code::MutedInChatroom.as_u32()
        );
    }
    ok(
        &server,
        "POST",
        "/api/v1/messages",
        json!({ "fromUserId": "host", "conversationType": CHATROOM, "targetId": "talk",
                "content": { "text": "the host speaks" } }),
    )
    .await;
    assert_eq!(text_of(&bob.message().await), "the host speaks");
    let answer = ok(
        &server,
        "POST",
        "/api/v1/chatrooms/talk/mute",
        json!({ "minutes": 0 }),
    )
    .await;
    assert_eq!(answer["chatroom"]["mutedUntil"], 0);
    assert_eq!(alice.send("talk", "free again").await.code, 0);

    assert_refused(
        api(
            &server,
            "POST",
            "/api/v1/chatrooms/talk/mute",
            json!({ "userIds": [], "minutes": 5 }),
        )
        .await,
        400,
        Code::BadRequest,
    );
    assert_refused(
        api(
            &server,
            "POST",
            "/api/v1/chatrooms/talk/mute",
            json!({ "userId": "bob" }),
        )
        .await,
        400,
        Code::BadRequest,
    );
}

#[tokio::test]
async fn entries_set_and_removed_through_the_api_are_noticed_by_members() {
    let server = TestServer::start().await;
    create(&server, json!({ "chatroomId": "quiz" })).await;
    let mut alice = Member::connect(&server, "alice").await;
    let mut bob = Member::connect(&server, "bob").await;
    alice.joined("quiz").await;
    bob.joined("quiz").await;

    let set = ok(
        &server,
        "POST",
        "/api/v1/chatrooms/quiz/entries",
        json!({ "key": "question", "value": "2+2?", "userId": "host" }),
    )
    .await;
    let entry = &set["entry"];
    assert_eq!(
        (
            entry["key"].as_str(),
            entry["value"].as_str(),
            entry["userId"].as_str(),
            entry["autoDelete"].as_bool()
        ),
        (Some("question"), Some("2+2?"), Some("host"), Some(false)),
        "{set}"
    );
    assert!(entry["updatedTime"].as_i64().unwrap() > 0);
    for member in [&mut alice, &mut bob] {
        let notice = member.notice("entry").await;
        assert_eq!(
            (
                notice["key"].as_str(),
                notice["value"].as_str(),
                notice["userId"].as_str()
            ),
            (Some("question"), Some("2+2?"), Some("host"))
        );
    }
    // Set as the host: a member does not overwrite it without forcing.
    let taken = alice
        .query(json!({ "setChatroomEntry": { "chatroomId": "quiz", "key": "question", "value": "mine" } }))
        .await;
    assert_eq!(taken.code, Code::ChatroomEntryTaken.as_u32());
    // One set as alice, to go when she leaves.
    ok(
        &server,
        "POST",
        "/api/v1/chatrooms/quiz/entries",
        json!({ "key": "answer.alice", "value": "4", "userId": "alice", "autoDelete": true }),
    )
    .await;

    let all = ok(
        &server,
        "GET",
        "/api/v1/chatrooms/quiz/entries",
        Value::Null,
    )
    .await;
    let keys: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["answer.alice", "question"]);
    assert_eq!(all["entries"][0]["autoDelete"], true);
    let some = ok(
        &server,
        "GET",
        "/api/v1/chatrooms/quiz/entries?keys=question,missing",
        Value::Null,
    )
    .await;
    assert_eq!(some["entries"].as_array().unwrap().len(), 1);
    assert_eq!(some["entries"][0]["value"], "2+2?");

    let removed = ok(
        &server,
        "POST",
        "/api/v1/chatrooms/quiz/entries/remove",
        json!({ "key": "question", "userId": "quizmaster" }),
    )
    .await;
    assert_eq!(removed, json!({ "code": 0 }));
    for member in [&mut alice, &mut bob] {
        let notice = member.notice("entry-remove").await;
        assert_eq!(
            (notice["key"].as_str(), notice["userId"].as_str()),
            (Some("question"), Some("quizmaster"))
        );
    }
    assert_refused(
        api(
            &server,
            "POST",
            "/api/v1/chatrooms/quiz/entries/remove",
            json!({ "key": "question", "userId": "host" }),
        )
        .await,
        400,
        Code::ChatroomEntryNotFound,
    );

    // Alice leaves: her auto-delete entry goes, and bob is told.
    assert_eq!(alice.quit("quiz").await.code, 0);
    let notice = bob.notice("entry-remove").await;
    assert_eq!(notice["key"], "answer.alice");
    let all = ok(
        &server,
        "GET",
        "/api/v1/chatrooms/quiz/entries",
        Value::Null,
    )
    .await;
    assert_eq!(all["entries"], json!([]));

    let refusals = [
        (
            json!({ "key": "bad key", "value": "x", "userId": "host" }),
            400,
            Code::ChatroomInvalid,
        ),
        (
            json!({ "key": "k", "value": "x".repeat(4097), "userId": "host" }),
            400,
            Code::ChatroomInvalid,
        ),
        (json!({ "key": "k", "value": "x" }), 400, Code::BadRequest),
        (
            json!({ "key": "k", "value": "x", "userId": "a b" }),
            400,
            Code::InvalidUserId,
        ),
    ];
    for (body, status, code) in refusals {
        assert_refused(
            api(&server, "POST", "/api/v1/chatrooms/quiz/entries", body).await,
            status,
            code,
        );
    }
    assert_refused(
        api(
            &server,
            "POST",
            "/api/v1/chatrooms/nowhere/entries",
            json!({ "key": "k", "value": "x", "userId": "host" }),
        )
        .await,
        404,
        Code::ChatroomNotFound,
    );
}

#[tokio::test]
async fn an_api_message_of_high_priority_reaches_every_member_and_the_history() {
    let server = TestServer::start().await;
    create(&server, json!({ "chatroomId": "live" })).await;
    let mut alice = Member::connect(&server, "alice").await;
    let mut bob = Member::connect(&server, "bob").await;
    alice.joined("live").await;
    bob.joined("live").await;

    let sent = ok(
        &server,
        "POST",
        "/api/v1/messages",
        json!({ "fromUserId": "host", "conversationType": CHATROOM, "targetId": "live",
                "content": { "text": "welcome" }, "priority": "high", "clientMsgId": "w-1" }),
    )
    .await;
    assert_eq!(sent["duplicate"], false);
    for member in [&mut alice, &mut bob] {
        let got = member.message().await;
        assert_eq!(
            (
                got.uid.as_str(),
                got.target_id.as_str(),
                got.sender_id.as_str(),
                got.seq,
                got.inbox_seq
            ),
            (
                sent["uid"].as_str().unwrap(),
                "live",
                "host",
                sent["seq"].as_u64().unwrap(),
                0
            )
        );
        assert_eq!(text_of(&got), "welcome");
    }
    // A later member finds it in the room's recent history.
    let mut carol = Member::connect(&server, "carol").await;
    let joined = carol.join("live", 5).await;
    assert_eq!(joined.code, 0);
    let uids: Vec<&str> = joined.messages.iter().map(|m| m.uid.as_str()).collect();
    assert_eq!(uids, [sent["uid"].as_str().unwrap()]);

    assert_refused(
        api(
            &server,
            "POST",
            "/api/v1/messages",
            json!({ "fromUserId": "host", "conversationType": CHATROOM, "targetId": "live",
                    "content": { "text": "x" }, "priority": "urgent" }),
        )
        .await,
        400,
        Code::BadRequest,
    );
    assert_refused(
        api(
            &server,
            "POST",
            "/api/v1/messages",
            json!({ "fromUserId": "host", "conversationType": CHATROOM, "targetId": "nowhere",
                    "content": { "text": "x" } }),
        )
        .await,
        404,
        Code::ChatroomNotFound,
    );
}

#[tokio::test]
async fn destroying_a_chatroom_tells_its_members_and_forgets_it() {
    let server = TestServer::start().await;
    create(&server, json!({ "chatroomId": "party", "name": "Party" })).await;
    let mut alice = Member::connect(&server, "alice").await;
    let mut bob = Member::connect(&server, "bob").await;
    alice.joined("party").await;
    bob.joined("party").await;

    let gone = ok(&server, "DELETE", "/api/v1/chatrooms/party", Value::Null).await;
    assert_eq!(gone["chatroom"]["name"], "Party");
    for member in [&mut alice, &mut bob] {
        member.notice("destroy").await;
    }
    assert_refused(
        api(&server, "GET", "/api/v1/chatrooms/party", Value::Null).await,
        404,
        Code::ChatroomNotFound,
    );
    assert_refused(
        api(&server, "DELETE", "/api/v1/chatrooms/party", Value::Null).await,
        404,
        Code::ChatroomNotFound,
    );
    let refused = alice.send("party", "anyone?").await;
    assert_eq!(refused.code, Code::ChatroomNotFound.as_u32());
}

#[tokio::test]
async fn a_kept_chatroom_and_its_bans_and_mutes_survive_a_restart() {
    let mut server = TestServer::start().await;
    create(&server, json!({ "chatroomId": "hall", "name": "Hall" })).await;
    ok(
        &server,
        "POST",
        "/api/v1/chatrooms/hall/ban",
        json!({ "userIds": ["eve"] }),
    )
    .await;
    ok(
        &server,
        "POST",
        "/api/v1/chatrooms/hall/mute",
        json!({ "userIds": ["bob"], "minutes": 60 }),
    )
    .await;
    server.shutdown().await;

    let mut config = tidings_server::Config::with_data_dir(server.dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let restarted = TestServer {
        running: Some(tidings_server::start(&config).await.unwrap()),
        dir: tempfile::tempdir().unwrap(),
    };
    let got = ok(&restarted, "GET", "/api/v1/chatrooms/hall", Value::Null).await;
    assert_eq!(
        (
            got["chatroom"]["name"].as_str(),
            got["chatroom"]["kept"].as_bool()
        ),
        (Some("Hall"), Some(true))
    );
    let mut eve = Member::connect(&restarted, "eve").await;
    assert_eq!(
        eve.join("hall", 0).await.code,
        Code::KickedFromChatroom.as_u32(),
        "the ban outlived the restart"
    );
    let mut bob = Member::connect(&restarted, "bob").await;
    bob.joined("hall").await;
    assert_eq!(
        bob.send("hall", "hi").await.code,
        Code::MutedInChatroom.as_u32(),
        "the mute outlived the restart"
    );
    let mut alice = Member::connect(&restarted, "alice").await;
    alice.joined("hall").await;
    assert_eq!(alice.send("hall", "hi").await.code, 0);
}

#[tokio::test]
async fn a_room_made_by_a_join_keeps_its_bans_and_mute_once_the_app_server_creates_it() {
    let mut server = TestServer::start().await;
    let mut alice = Member::connect(&server, "alice").await;
    alice.joined("adhoc").await;
    let ban = json!({ "userIds": ["eve"] });
    ok(&server, "POST", "/api/v1/chatrooms/adhoc/ban", ban).await;
    ok(&server, "POST", "/api/v1/chatrooms/adhoc/mute", json!({})).await;
    let kept = create(&server, json!({ "chatroomId": "adhoc", "name": "Adhoc" })).await;
    assert_eq!(kept["mutedUntil"], i64::MAX);
    server.shutdown().await;

    let mut config = tidings_server::Config::with_data_dir(server.dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let restarted = TestServer {
        running: Some(tidings_server::start(&config).await.unwrap()),
        dir: tempfile::tempdir().unwrap(),
    };
    let got = ok(&restarted, "GET", "/api/v1/chatrooms/adhoc", Value::Null).await;
    assert_eq!(
        got["chatroom"]["mutedUntil"],
        i64::MAX,
        "the room's mute is kept"
    );
    let mut eve = Member::connect(&restarted, "eve").await;
    assert_eq!(
        eve.join("adhoc", 0).await.code,
        Code::KickedFromChatroom.as_u32(),
        "the ban made before the room was kept is kept"
    );
}
