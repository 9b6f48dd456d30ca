//! The seed-002 dialect (rooms, `/ws/room?token=`), driven by a client written from the seed
//! document: JSON text frames `{msgType, textData: {dataType, data}, extendFields}`, answers
//! `{status, msg, resultBody}`.

use std::time::Duration;

use serde_json::{Value, json};
use tidings_client::Outgoing;
use tidings_proto::Code;

use crate::chatrooms::next_room_message;
use crate::util::{SeedGot, SeedWs, TestServer};

const REFUSED: &str = "连接被拒,您已在其他页面或客户端加入该房间,请先将其退出!";

async fn open(server: &TestServer, user: &str) -> SeedWs {
    let token = server.token(user).await;
    SeedWs::open(server, &format!("/ws/room?token={token}")).await
}

/// The seed's join, with `from` the Member the page holds for its user.
fn join(user: &str, room: &str) -> Value {
    json!({
        "msgType": 2,
        "textData": {
            "dataType": 1,
            "data": {
                "from": {"id": user, "personName": "张三", "personNum": "XS00001",
                         "nickName": "老三", "headImgUrl": "/abc/efg/h.jpg"},
                "roomNumber": room
            }
        }
    })
}

fn leave(user: &str, room: &str) -> Value {
    let mut frame = join(user, room);
    frame["textData"]["dataType"] = json!(2);
    frame
}

fn chat(user: &str, room: &str, content: &str) -> Value {
    json!({
        "msgType": 3,
        "textData": {
            "dataType": 3,
            "data": {"from": {"id": user}, "roomNumber": room, "content": content}
        }
    })
}

fn heartbeat() -> Value {
    json!({"msgType": 1, "textData": {"dataType": 0, "data": {}}})
}

/// The `data` of a status-1 answer with this dataType and msg.
fn data(frame: &Value, data_type: i64, msg: &str) -> Value {
    assert_eq!(frame["status"], 1, "{frame}");
    assert_eq!(frame["msg"], msg, "{frame}");
    assert_eq!(frame["resultBody"]["msgType"], 3, "{frame}");
    assert_eq!(
        frame["resultBody"]["textData"]["dataType"], data_type,
        "{frame}"
    );
    frame["resultBody"]["textData"]["data"].clone()
}

fn ids(members: &Value) -> Vec<&str> {
    members
        .as_array()
        .expect("members is a list")
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect()
}

/// A status-0 answer with this Tidings code.
fn refusal(frame: &Value, code: Code) {
    assert_eq!(frame["status"], 0, "{frame}");
    assert_eq!(frame["resultBody"], "", "{frame}");
    assert_eq!(frame["extendFields"]["code"], code.as_u32(), "{frame}");
    assert!(!frame["msg"].as_str().unwrap().is_empty(), "{frame}");
}

#[tokio::test]
async fn a_first_join_lists_every_member_and_the_others_get_only_the_new_one() {
    let server = TestServer::start().await;
    let engine = &server.running().engine;
    engine
        .set_profile(
            "alice",
            Some("张三".into()),
            Some("/abc/efg/h.jpg".into()),
            Some(r#"{"personNum":"XS00001"}"#.into()),
        )
        .await
        .unwrap();
    let mut alice = open(&server, "alice").await;
    alice.send_json(join("alice", "E00001")).await;
    let room = data(&alice.json().await, 1, "Join successfully");
    assert_eq!(room["number"], "E00001");
    assert_eq!(
        room["name"], "E00001",
        "a room made by a join is named by its number"
    );
    assert!(room["createTime"].as_i64().unwrap() > 1_600_000_000_000);
    let me = json!({"id": "alice", "personName": "张三", "personNum": "XS00001",
                    "nickName": "张三", "headImgUrl": "/abc/efg/h.jpg"});
    assert_eq!(room["members"], json!([me.clone()]));
    assert_eq!(room["newJoinMember"], me);

    let mut bob = open(&server, "bob").await;
    bob.send_json(join("", "E00001")).await;
    let room = data(&bob.json().await, 1, "Join successfully");
    assert_eq!(ids(&room["members"]), ["alice", "bob"]);
    assert_eq!(room["members"][0], me);
    let delta = data(&alice.json().await, 1, "Join successfully");
    assert!(delta["members"].is_null(), "{delta}");
    assert_eq!(delta["number"], "E00001");
    assert_eq!(
        delta["newJoinMember"],
        json!({"id": "bob", "personName": "bob", "personNum": "bob",
               "nickName": "bob", "headImgUrl": ""})
    );

    // Chat both ways: the sender gets its message back as the confirmation.
    alice.send_json(chat("alice", "E00001", "大家好")).await;
    for ws in [&mut alice, &mut bob] {
        let m = data(&ws.json().await, 3, "");
        assert_eq!(
            (m["from"]["id"].as_str(), m["content"].as_str()),
            (Some("alice"), Some("大家好"))
        );
        assert_eq!(m["roomNumber"], "E00001");
        assert!(m["sendTime"].as_i64().unwrap() > 1_600_000_000_000);
    }
    bob.send_json(chat("bob", "E00001", "hi")).await;
    for ws in [&mut bob, &mut alice] {
        let m = data(&ws.json().await, 3, "");
        assert_eq!(
            (m["from"]["id"].as_str(), m["content"].as_str()),
            (Some("bob"), Some("hi"))
        );
    }

    // A leave: the leaver and the others get the member who left, and no member list.
    bob.send_json(leave("bob", "E00001")).await;
    for ws in [&mut bob, &mut alice] {
        let left = data(&ws.json().await, 2, "Leave successfully");
        assert_eq!(left["newLeaveMember"]["id"], "bob", "{left}");
        assert_eq!(left["number"], "E00001");
        assert!(left.get("members").is_none(), "{left}");
        assert!(left.get("createTime").is_some() && left.get("owner").is_some());
    }

    // A page that closes leaves too.
    let mut carol = open(&server, "carol").await;
    carol.send_json(join("carol", "E00001")).await;
    let room = data(&carol.json().await, 1, "Join successfully");
    assert_eq!(ids(&room["members"]), ["alice", "carol"]);
    let delta = data(&alice.json().await, 1, "Join successfully");
    assert_eq!(delta["newJoinMember"]["id"], "carol");
    drop(carol);
    let left = data(&alice.json().await, 2, "Leave successfully");
    assert_eq!(left["newLeaveMember"]["id"], "carol");
}

#[tokio::test]
async fn a_room_the_app_server_made_shows_its_name_description_and_owner() {
    let server = TestServer::start().await;
    let engine = &server.running().engine;
    engine
        .set_profile("owner1", Some("王树明".into()), None, None)
        .await
        .unwrap();
    let made = engine
        .create_chatroom(
            "E00002",
            "房间名称".into(),
            json!({"desc": "房间描述", "owner": "owner1"}).to_string(),
            None,
        )
        .await
        .unwrap();
    let mut alice = open(&server, "alice").await;
    alice.send_json(join("alice", "E00002")).await;
    let room = data(&alice.json().await, 1, "Join successfully");
    assert_eq!(room["name"], "房间名称");
    assert_eq!(room["desc"], "房间描述");
    assert_eq!(room["createTime"], made.created);
    assert_eq!(room["owner"]["id"], "owner1");
    assert_eq!(room["owner"]["personName"], "王树明");
    assert_eq!(ids(&room["members"]), ["alice"]);
}

#[tokio::test]
async fn a_second_page_of_the_same_user_is_refused_and_the_first_stays() {
    let server = TestServer::start().await;
    let mut first = open(&server, "alice").await;
    first.send_json(join("alice", "E00003")).await;
    data(&first.json().await, 1, "Join successfully");

    let mut second = open(&server, "alice").await;
    second.send_json(join("alice", "E00003")).await;
    assert_eq!(
        second.json().await,
        json!({"status": 0, "msg": REFUSED, "resultBody": ""})
    );

    // The first page is still in the room: it sees bob arrive and gets his chat.
    let mut bob = open(&server, "bob").await;
    bob.send_json(join("bob", "E00003")).await;
    let room = data(&bob.json().await, 1, "Join successfully");
    assert_eq!(ids(&room["members"]), ["alice", "bob"]);
    assert_eq!(
        data(&first.json().await, 1, "Join successfully")["newJoinMember"]["id"],
        "bob"
    );
    bob.send_json(chat("bob", "E00003", "still there?")).await;
    data(&bob.json().await, 3, "");
    assert_eq!(data(&first.json().await, 3, "")["content"], "still there?");

    // Once the first page leaves, the second may join.
    first.send_json(leave("alice", "E00003")).await;
    data(&first.json().await, 2, "Leave successfully");
    second.send_json(join("alice", "E00003")).await;
    let room = data(&second.json().await, 1, "Join successfully");
    assert_eq!(ids(&room["members"]), ["bob", "alice"]);
}

#[tokio::test]
async fn a_page_that_keeps_its_heartbeat_stays_and_a_silent_one_is_dropped() {
    let server = TestServer::start_with(|c| c.room_heartbeat = Duration::from_millis(200)).await;
    let mut keeper = open(&server, "alice").await;
    let mut silent = open(&server, "bob").await;
    keeper.send_json(join("alice", "E00004")).await;
    data(&keeper.json().await, 1, "Join successfully");
    silent.send_json(join("bob", "E00004")).await;
    data(&silent.json().await, 1, "Join successfully");
    data(&keeper.json().await, 1, "Join successfully");
    // The silent page answers none of the server's WebSocket Pings either.
    silent.mute();

    // The keeper sends a heartbeat every 100 ms (never answered) until the silent page is
    // dropped: told why, then closed.
    let goodbye = loop {
        keeper.send_json(heartbeat()).await;
        tokio::select! {
            got = silent.recv() => break got,
            // Not a wait for a condition: the keeper's heartbeat pace.
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    };
    match goodbye {
        SeedGot::Text(frame) => refusal(&frame, Code::HeartbeatTimeout),
        other => panic!("expected the heartbeat timeout, got {other:?}"),
    }
    silent.expect_closed().await;
    // The keeper is still connected: it is told bob left, and is answered.
    let left = data(&keeper.json().await, 2, "Leave successfully");
    assert_eq!(left["newLeaveMember"]["id"], "bob");
    keeper.send_json(chat("alice", "E00004", "alone")).await;
    assert_eq!(data(&keeper.json().await, 3, "")["content"], "alone");
}

#[tokio::test]
async fn native_members_of_the_chatroom_and_seed_002_pages_talk() {
    let server = TestServer::start().await;
    let (bob, mut bob_events) = server.client("bob", "b1").await;
    bob.join_chatroom("E00005", 0).await.unwrap();
    let mut alice = open(&server, "alice").await;
    alice.send_json(join("alice", "E00005")).await;
    let room = data(&alice.json().await, 1, "Join successfully");
    assert_eq!(ids(&room["members"]), ["bob", "alice"]);

    alice
        .send_json(chat("alice", "E00005", "from the page"))
        .await;
    assert_eq!(data(&alice.json().await, 3, "")["content"], "from the page");
    let m = next_room_message(&mut bob_events).await;
    assert_eq!(
        (m.sender_id.as_str(), m.msg_type.as_str()),
        ("alice", "text")
    );
    assert_eq!(m.content, r#"{"text":"from the page"}"#);

    bob.send(Outgoing::chatroom_text("E00005", "from the app"))
        .await
        .unwrap();
    let m = data(&alice.json().await, 3, "");
    assert_eq!(m["from"]["id"], "bob");
    assert_eq!(m["content"], "from the app");
    assert_eq!(m["roomNumber"], "E00005");
}

#[tokio::test]
async fn bad_frames_get_a_status_0_answer_and_the_page_stays_usable() {
    let server = TestServer::start().await;
    let mut alice = open(&server, "alice").await;
    let cases: Vec<(&str, Code)> = vec![
        ("{", Code::MalformedFrame),
        ("[1,2]", Code::MalformedFrame),
        (r#"{"textData":{}}"#, Code::MalformedFrame),
        (r#"{"msgType":9}"#, Code::UnknownFrameKind),
        (
            r#"{"msgType":4,"textData":{"dataType":1,"data":{}}}"#,
            Code::UnknownFrameKind,
        ),
        (
            r#"{"msgType":5,"textData":{"dataType":1,"data":{}}}"#,
            Code::UnknownFrameKind,
        ),
        (
            r#"{"msgType":2,"textData":{"dataType":7,"data":{"roomNumber":"E1"}}}"#,
            Code::UnknownFrameKind,
        ),
        (
            r#"{"msgType":2,"textData":{"dataType":1,"data":{"from":{"id":"alice"}}}}"#,
            Code::MalformedFrame,
        ),
        (
            r#"{"msgType":3,"textData":{"dataType":3,"data":{"roomNumber":"E1"}}}"#,
            Code::MalformedFrame,
        ),
        (
            r#"{"msgType":2,"textData":{"dataType":1,"data":{"roomNumber":"bad room"}}}"#,
            Code::ChatroomInvalid,
        ),
    ];
    for (frame, code) in cases {
        alice.send_text(frame).await;
        let got = alice.json().await;
        assert_eq!(
            got["extendFields"]["code"],
            code.as_u32(),
            "{frame} -> {got}"
        );
        refusal(&got, code);
    }
    alice.send_json(join("mallory", "E00006")).await;
    refusal(&alice.json().await, Code::Unauthorized);
    alice
        .send_json(chat("alice", "nowhere", "to no room"))
        .await;
    refusal(&alice.json().await, Code::ChatroomNotFound);
    // Chat and leave before joining a room that exists.
    let mut bob = open(&server, "bob").await;
    bob.send_json(join("bob", "E00006")).await;
    data(&bob.json().await, 1, "Join successfully");
    alice
        .send_json(chat("alice", "E00006", "before joining"))
        .await;
    refusal(&alice.json().await, Code::NotInChatroom);
    alice.send_json(leave("alice", "E00006")).await;
    refusal(&alice.json().await, Code::NotInChatroom);
    alice.send_binary(vec![1, 2, 3]).await;
    refusal(&alice.json().await, Code::MalformedFrame);
    alice.send_json(join("alice", "E00006")).await;
    data(&alice.json().await, 1, "Join successfully");

    // Without a token there is no identity: refused, then closed.
    let mut nobody = SeedWs::open(&server, "/ws/room").await;
    refusal(&nobody.json().await, Code::TokenInvalid);
    nobody.expect_closed().await;
}
