//! Chatrooms through the SDK: joining, the room's stream, history, entries, and what happens
//! under load.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tidings_client::{
    ChatroomEvent, ChatroomNotice, Client, ClientError, Event, Events, HistoryStart, Message,
    Outgoing, Priority,
};
use tidings_proto::{Code, Encoding, v1};

use crate::util::*;

/// The next chatroom event, skipping everything else.
pub async fn next_room_event(events: &mut Events) -> ChatroomEvent {
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(Event::Chatroom(e))) => return e,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event stream ended"),
            Err(_) => panic!("no chatroom event within {WAIT:?}"),
        }
    }
}

/// The next chatroom message, skipping notices and everything else.
pub async fn next_room_message(events: &mut Events) -> tidings_client::Message {
    loop {
        if let ChatroomEvent::Message(m) = next_room_event(events).await {
            return m;
        }
    }
}

#[tokio::test]
async fn members_get_the_rooms_messages_in_order_and_joiners_get_recent_ones() {
    let server = TestServer::start().await;
    let (alice, mut alice_events) = server.client("alice", "a1").await;
    let (bob, mut bob_events) = server.client("bob", "b1").await;
    let joined = alice.join_chatroom("lobby", 0).await.unwrap();
    assert_eq!(joined.chatroom.member_count, 1);
    assert!(!joined.chatroom.kept, "made by the join");
    bob.join_chatroom("lobby", 0).await.unwrap();
    for i in 1..=3 {
        let sent = alice
            .send(Outgoing::chatroom_text("lobby", &format!("hi {i}")))
            .await
            .unwrap();
        assert_eq!(sent.inbox_seq, 0, "chatroom messages are not inboxed");
    }
    let mut seqs = Vec::new();
    for i in 1..=3 {
        let m = next_room_message(&mut bob_events).await;
        assert_eq!(m.content, format!(r#"{{"text":"hi {i}"}}"#));
        assert_eq!((m.conversation_type, m.target_id.as_str()), (4, "lobby"));
        seqs.push(m.seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // The sender does not get its own messages back.
    let (carol, _carol_events) = server.client("carol", "c1").await;
    let joined = carol.join_chatroom("lobby", 2).await.unwrap();
    let recent: Vec<&str> = joined.recent.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(recent, [r#"{"text":"hi 2"}"#, r#"{"text":"hi 3"}"#]);
    assert_eq!(joined.chatroom.member_count, 3);
    drop(alice_events.try_recv());
}

#[tokio::test]
async fn a_slow_member_gets_a_gap_marker_and_does_not_slow_the_others() {
    let server = TestServer::start_with(|c| c.outbound_queue_bytes = 256 * 1024).await;
    let (alice, _a) = server.client("alice", "a1").await;
    let (bob, mut bob_events) = server.client("bob", "b1").await;
    alice.join_chatroom("busy", 0).await.unwrap();
    bob.join_chatroom("busy", 0).await.unwrap();
    // Carol joins by raw frames and then reads nothing for a while: her socket's buffers and
    // then her outbound queue fill.
    let mut carol = Raw::connected(&server, "carol", tidings_proto::Encoding::Json).await;
    carol
        .send_raw(br#"{"query":{"queryId":1,"joinChatroom":{"chatroomId":"busy"}}}"#.to_vec())
        .await;
    let n = 3000u64;
    // Bob reads all along, and gets every message, and no gap.
    let bob_reads = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            match next_room_event(&mut bob_events).await {
                ChatroomEvent::Message(_) => got += 1,
                ChatroomEvent::Notice(_) => {}
                other => panic!("bob got {other:?}"),
            }
        }
    });
    let text = "x".repeat(4000);
    for i in 0..n {
        let out = Outgoing::chatroom_text("busy", &format!("{i} {text}"));
        alice.send(out.with_priority(Priority::Low)).await.unwrap();
    }
    bob_reads.await.unwrap();
    // Carol, reading at last, gets messages and gap markers that account for every one.
    let (mut received, mut dropped, mut last) = (0u64, 0u64, 0u64);
    while received + dropped < n {
        let Got::Frame(f) = carol.recv().await else {
            panic!("carol's connection closed");
        };
        let Some(v1::frame::Body::Publish(p)) = f.body else {
            continue;
        };
        let Some(v1::publish::Body::Message(m)) = p.body else {
            continue;
        };
        match m.msg_type.as_str() {
            tidings_proto::GAP_EVENT_TYPE => {
                let g: serde_json::Value = serde_json::from_str(&m.content).unwrap();
                let from = g["fromSeq"].as_u64().unwrap();
                assert!(from > last, "a gap after what arrived: {g} after {last}");
                last = g["toSeq"].as_u64().unwrap();
                dropped += g["count"].as_u64().unwrap();
            }
            tidings_proto::CHATROOM_EVENT_TYPE => {}
            _ => {
                assert!(m.seq > last, "in seq order");
                last = m.seq;
                received += 1;
            }
        }
    }
    assert_eq!(received + dropped, n);
    assert!(dropped > 0, "the overload dropped messages");
    assert!(received > 0);
}

const CHATROOM: u32 = 4;

/// The refusal code of a failed call.
fn refused_code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> u32 {
    match r {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The `text` of a text message's content.
fn text_of(m: &Message) -> String {
    let content: Value = serde_json::from_str(&m.content).unwrap();
    content["text"].as_str().unwrap_or("?").to_string()
}

fn texts(messages: &[Message]) -> Vec<String> {
    messages.iter().map(text_of).collect()
}

/// The next notice with `operation`, skipping the room's other items.
async fn next_notice(events: &mut Events, operation: &str) -> ChatroomNotice {
    loop {
        if let ChatroomEvent::Notice(n) = next_room_event(events).await
            && n.operation == operation
        {
            return n;
        }
    }
}

/// The next message or chatroom event, skipping status and conversation events: what a device
/// gets next of what others send.
async fn next_delivery(events: &mut Events) -> Event {
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(e @ (Event::Message(_) | Event::Chatroom(_)))) => return e,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event stream ended"),
            Err(_) => panic!("no delivery within {WAIT:?}"),
        }
    }
}

/// Waits until a join notice naming `user` has arrived (so the join's notice is numbered
/// before whatever the test does next).
async fn saw_join(events: &mut Events, user: &str) {
    while !next_notice(events, "join")
        .await
        .user_ids
        .iter()
        .any(|u| u == user)
    {}
}

/// A client whose reconnect waits `delay`, long enough to act while it is away.
async fn slow_to_reconnect(server: &TestServer, user: &str, delay: Duration) -> (Client, Events) {
    let mut config = server.config(user, "phone").await;
    config.reconnect_delays = vec![delay];
    Client::connect(config).await.unwrap()
}

/// The member count of a room as the HTTP API reads it.
async fn api_member_count(server: &TestServer, room: &str) -> Option<u64> {
    let (status, body) = api(
        server,
        "GET",
        &format!("/api/v1/chatrooms/{room}"),
        Value::Null,
    )
    .await;
    (status == 200).then(|| body["chatroom"]["memberCount"].as_u64().unwrap())
}

/// A raw JSON join frame (its answer is read, or not, by the caller).
fn join_frame(room: &str) -> Vec<u8> {
    json!({ "query": { "queryId": 1, "joinChatroom": { "chatroomId": room } } })
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn a_user_counts_once_however_many_connections_and_quit_answers_the_room() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (alice_pad, _ap) = server.client("alice", "pad").await;
    let (bob, _b) = server.client("bob", "phone").await;
    let count = |j: tidings_client::ChatroomJoined| j.chatroom.member_count;
    assert_eq!(count(alice.join_chatroom("lobby", 0).await.unwrap()), 1);
    assert_eq!(
        count(alice_pad.join_chatroom("lobby", 0).await.unwrap()),
        1,
        "a second connection of a member counts once"
    );
    assert_eq!(count(bob.join_chatroom("lobby", 0).await.unwrap()), 2);
    assert_eq!(
        count(alice.join_chatroom("lobby", 0).await.unwrap()),
        2,
        "joining again on the same connection only answers again"
    );

    let left = alice_pad.quit_chatroom("lobby").await.unwrap();
    assert_eq!(
        (left.chatroom_id.as_str(), left.member_count),
        ("lobby", 2),
        "alice is still in by her phone"
    );
    let left = alice.quit_chatroom("lobby").await.unwrap();
    assert_eq!((left.chatroom_id.as_str(), left.member_count), ("lobby", 1));
    assert_eq!(bob.chatroom("lobby").await.unwrap().member_count, 1);

    let not_in = Code::NotInChatroom.as_u32();
    assert_eq!(refused_code(alice.quit_chatroom("lobby").await), not_in);
    assert_eq!(refused_code(bob.quit_chatroom("elsewhere").await), not_in);
    assert_eq!(refused_code(alice.chatroom("lobby").await), not_in);
}

#[tokio::test]
async fn a_user_in_several_rooms_gets_each_rooms_messages_tagged_with_that_room() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    for room in ["red", "blue"] {
        alice.join_chatroom(room, 0).await.unwrap();
        bob.join_chatroom(room, 0).await.unwrap();
    }
    // Carol, in blue only, reads raw frames: whatever the server pushes her shows.
    let mut carol = Raw::connected(&server, "carol", Encoding::Json).await;
    carol.send_raw(join_frame("blue")).await;
    match carol.recv().await {
        Got::Frame(v1::Frame {
            body: Some(v1::frame::Body::Queryack(q)),
            ..
        }) => assert_eq!(q.code, 0, "{}", q.message),
        other => panic!("expected carol's join answered, got {other:?}"),
    }
    for (room, text) in [("red", "r1"), ("blue", "b1"), ("red", "r2"), ("blue", "b2")] {
        alice
            .send(Outgoing::chatroom_text(room, text))
            .await
            .unwrap();
    }
    // Rooms fan out independently: order holds within a room, not across rooms.
    let mut by_room: Vec<(String, String)> = Vec::new();
    for _ in 0..4 {
        let m = next_room_message(&mut bob_events).await;
        assert_eq!(m.conversation_type, CHATROOM);
        by_room.push((m.target_id.clone(), text_of(&m)));
    }
    by_room.sort_by(|a, b| a.0.cmp(&b.0));
    let want = [("blue", "b1"), ("blue", "b2"), ("red", "r1"), ("red", "r2")];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(r, t)| (r.to_string(), t.to_string()))
        .collect();
    assert_eq!(by_room, want);
    // Red's messages have reached bob, so red's fan-out is past them; one more to blue marks
    // the end of what carol may get.
    alice
        .send(Outgoing::chatroom_text("blue", "end"))
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        let Got::Frame(f) = carol.recv().await else {
            panic!("carol's connection closed");
        };
        let Some(v1::frame::Body::Publish(p)) = f.body else {
            continue;
        };
        let Some(v1::publish::Body::Message(m)) = p.body else {
            continue;
        };
        assert_eq!(
            (m.conversation_type, m.target_id.as_str()),
            (CHATROOM, "blue"),
            "carol gets only the room she is in: {m:?}"
        );
        if m.msg_type == "text" {
            let text: Value = serde_json::from_str(&m.content).unwrap();
            got.push(text["text"].as_str().unwrap().to_string());
            if got.last().unwrap() == "end" {
                break;
            }
        }
    }
    assert_eq!(got, ["b1", "b2", "end"]);
}

#[tokio::test]
async fn a_join_gets_the_newest_messages_asked_for_and_the_room_keeps_only_its_history_bound() {
    let server = TestServer::start_with(|c| c.chatrooms.history = 5).await;
    let (alice, mut alice_events) = server.client("alice", "phone").await;
    alice.join_chatroom("lobby", 0).await.unwrap();
    // Her join's notice comes first: then the newest item is the newest message.
    saw_join(&mut alice_events, "alice").await;
    for i in 1..=8 {
        alice
            .send(Outgoing::chatroom_text("lobby", &format!("m{i}")))
            .await
            .unwrap();
    }
    let (bob, _b) = server.client("bob", "phone").await;
    let joined = bob.join_chatroom("lobby", 3).await.unwrap();
    assert_eq!(
        texts(&joined.recent),
        ["m6", "m7", "m8"],
        "the newest, oldest first"
    );
    assert!(joined.recent.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(joined.chatroom.seq, joined.recent[2].seq);
    // The room keeps its newest five; asking for more gets those.
    let (carol, _c) = server.client("carol", "phone").await;
    let joined = carol.join_chatroom("lobby", 50).await.unwrap();
    assert_eq!(texts(&joined.recent), ["m4", "m5", "m6", "m7", "m8"]);
    let history = carol
        .history(CHATROOM, "lobby", HistoryStart::Newest, 100)
        .await
        .unwrap();
    assert_eq!(texts(&history.messages), ["m4", "m5", "m6", "m7", "m8"]);
    assert!(!history.has_more);

    let (dave, _d) = server.client("dave", "phone").await;
    assert_eq!(
        refused_code(dave.join_chatroom("lobby", 51).await),
        Code::ChatroomInvalid.as_u32()
    );
    assert_eq!(
        refused_code(dave.chatroom("lobby").await),
        Code::NotInChatroom.as_u32(),
        "a refused join does not make a member"
    );
    let joined = dave.join_chatroom("lobby", 0).await.unwrap();
    assert!(joined.recent.is_empty());
}

#[tokio::test]
async fn chatroom_messages_are_online_only_and_never_reach_the_inbox() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    // Bob's watch is online but not in the room; his pad is offline.
    let (_bob_watch, mut watch_events) = server.client("bob", "watch").await;
    let (bob_pad, _p) = server.client("bob", "pad").await;
    bob_pad.close().await;
    alice.join_chatroom("lobby", 0).await.unwrap();
    bob.join_chatroom("lobby", 0).await.unwrap();
    saw_join(&mut bob_events, "bob").await;

    let sent = alice
        .send(Outgoing::chatroom_text("lobby", "live only"))
        .await
        .unwrap();
    assert_eq!(sent.inbox_seq, 0, "not an inbox entry");
    let got = next_room_message(&mut bob_events).await;
    assert_eq!(
        (got.uid.as_str(), got.seq, got.inbox_seq),
        (sent.uid.as_str(), sent.seq, 0)
    );
    assert_eq!(
        alice.chatroom("lobby").await.unwrap().seq,
        sent.seq,
        "the PUBACK's seq is the room's"
    );

    // A private message after it: the first thing the watch gets, and the first thing the pad
    // syncs when it comes back (an inboxed room message would come before it).
    let marker = alice.send(Outgoing::text("bob", "marker")).await.unwrap();
    assert!(marker.inbox_seq > 0);
    match next_delivery(&mut watch_events).await {
        Event::Message(m) => assert_eq!(m.uid, marker.uid, "the watch got {m:?}"),
        other => panic!("the watch got {other:?}"),
    }
    let (bob_pad, mut pad_events) = server.client("bob", "pad").await;
    match next_delivery(&mut pad_events).await {
        Event::Message(m) => assert_eq!(m.uid, marker.uid, "the pad synced {m:?}"),
        other => panic!("the pad synced {other:?}"),
    }

    for (who, client) in [("alice", &alice), ("bob", &bob_pad)] {
        let list = client.conversations(&[], 0, None).await.unwrap();
        let listed: Vec<(u32, &str)> = list
            .conversations
            .iter()
            .map(|c| (c.conversation_type, c.target_id.as_str()))
            .collect();
        let peer = if who == "alice" { "bob" } else { "alice" };
        assert_eq!(listed, [(1, peer)], "{who}'s conversation list");
        let rooms = client.conversations(&[CHATROOM], 0, None).await.unwrap();
        assert!(rooms.conversations.is_empty(), "{who}: {rooms:?}");
    }
}

#[tokio::test]
async fn chatroom_history_is_for_members_pages_like_the_recent_list_and_leaves_out_notices() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    alice.join_chatroom("lobby", 0).await.unwrap();
    bob.join_chatroom("lobby", 0).await.unwrap();
    for i in 1..=3 {
        alice
            .send(Outgoing::chatroom_text("lobby", &format!("m{i}")))
            .await
            .unwrap();
    }
    alice
        .set_chatroom_entry("lobby", "topic", "rust", false, false)
        .await
        .unwrap();
    for i in 4..=6 {
        alice
            .send(Outgoing::chatroom_text("lobby", &format!("m{i}")))
            .await
            .unwrap();
    }
    // The entry's notice is an item of the stream, between m3 and m4.
    let mut stream = Vec::new();
    while stream.len() < 7 {
        match next_room_event(&mut bob_events).await {
            ChatroomEvent::Message(m) => stream.push((m.seq, text_of(&m))),
            ChatroomEvent::Notice(n) if n.operation == "entry" => {
                stream.push((n.seq, "#entry".into()))
            }
            _ => {}
        }
    }
    let order: Vec<&str> = stream.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(order, ["m1", "m2", "m3", "#entry", "m4", "m5", "m6"]);
    let notice_seq = stream[3].0;

    let (eve, _e) = server.client("eve", "phone").await;
    assert_eq!(
        refused_code(
            eve.history(CHATROOM, "lobby", HistoryStart::Newest, 10)
                .await
        ),
        Code::NotInChatroom.as_u32()
    );

    let (carol, _c) = server.client("carol", "phone").await;
    let recent = carol.join_chatroom("lobby", 6).await.unwrap().recent;
    assert_eq!(texts(&recent), ["m1", "m2", "m3", "m4", "m5", "m6"]);
    let key = |ms: &[Message]| -> Vec<(String, u64)> {
        ms.iter().map(|m| (m.uid.clone(), m.seq)).collect()
    };
    let all = bob
        .history(CHATROOM, "lobby", HistoryStart::Newest, 100)
        .await
        .unwrap();
    assert_eq!(key(&all.messages), key(&recent));
    assert!(
        all.messages.iter().all(|m| m.seq != notice_seq),
        "notices are not in the history"
    );

    // Backwards from the newest, and forwards from the oldest, in pages.
    let newest = bob
        .history(CHATROOM, "lobby", HistoryStart::Newest, 4)
        .await
        .unwrap();
    assert!(newest.has_more);
    let older = bob
        .history(
            CHATROOM,
            "lobby",
            HistoryStart::BeforeSeq(newest.messages[0].seq),
            4,
        )
        .await
        .unwrap();
    assert!(!older.has_more);
    assert_eq!(
        key(&[older.messages, newest.messages].concat()),
        key(&recent)
    );
    let mut forward = vec![recent[0].clone()];
    loop {
        let after = forward.last().unwrap().seq;
        let page = bob
            .history(CHATROOM, "lobby", HistoryStart::AfterSeq(after), 2)
            .await
            .unwrap();
        forward.extend(page.messages);
        if !page.has_more {
            break;
        }
    }
    assert_eq!(key(&forward), key(&recent));

    // A member who quits may not read it any more.
    bob.quit_chatroom("lobby").await.unwrap();
    assert_eq!(
        refused_code(
            bob.history(CHATROOM, "lobby", HistoryStart::Newest, 10)
                .await
        ),
        Code::NotInChatroom.as_u32()
    );
}

#[tokio::test]
async fn sending_needs_membership_and_joining_a_missing_room_without_auto_create_is_refused() {
    let server = TestServer::start_with(|c| c.chatrooms.auto_create = false).await;
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/chatrooms",
        json!({ "chatroomId": "hall" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    bob.join_chatroom("hall", 0).await.unwrap();
    let refused = alice
        .send(Outgoing::chatroom_text("hall", "let me in"))
        .await;
    assert_eq!(refused_code(refused), Code::NotInChatroom.as_u32());

    let gone = Code::ChatroomNotFound.as_u32();
    assert_eq!(refused_code(alice.join_chatroom("nowhere", 0).await), gone);
    assert_eq!(
        refused_code(alice.send(Outgoing::chatroom_text("nowhere", "hi")).await),
        gone
    );
    assert_eq!(
        api_member_count(&server, "nowhere").await,
        None,
        "the join made no room"
    );
    // Once a member, alice may send; bob gets that, and nothing of the refused one.
    alice.join_chatroom("hall", 0).await.unwrap();
    alice
        .send(Outgoing::chatroom_text("hall", "now in"))
        .await
        .unwrap();
    assert_eq!(text_of(&next_room_message(&mut bob_events).await), "now in");
}

#[tokio::test]
async fn a_full_room_refuses_another_user_but_not_another_device_of_a_member() {
    let server = TestServer::start_with(|c| c.chatrooms.max_members = 2).await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (alice_pad, _ap) = server.client("alice", "pad").await;
    let (bob, _b) = server.client("bob", "phone").await;
    let (carol, _c) = server.client("carol", "phone").await;
    alice.join_chatroom("small", 0).await.unwrap();
    bob.join_chatroom("small", 0).await.unwrap();
    assert_eq!(
        refused_code(carol.join_chatroom("small", 0).await),
        Code::ChatroomFull.as_u32()
    );
    let joined = alice_pad.join_chatroom("small", 0).await.unwrap();
    assert_eq!(
        (joined.chatroom.member_count, joined.chatroom.max_members),
        (2, 2)
    );
    // A place freed is a place taken.
    bob.quit_chatroom("small").await.unwrap();
    carol.join_chatroom("small", 0).await.unwrap();
}

#[tokio::test]
async fn invalid_room_ids_and_a_21st_room_on_one_connection_are_refused() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (alice_pad, _ap) = server.client("alice", "pad").await;
    let invalid = Code::ChatroomInvalid.as_u32();
    for id in ["", "a room", "room/1", "ŝambro", &"x".repeat(65)] {
        assert_eq!(
            refused_code(alice.join_chatroom(id, 0).await),
            invalid,
            "{id:?}"
        );
        assert_eq!(
            refused_code(alice.send(Outgoing::chatroom_text(id, "hi")).await),
            invalid,
            "{id:?}"
        );
    }
    alice
        .join_chatroom(&"x".repeat(64), 0)
        .await
        .expect("64 characters are fine");
    alice.quit_chatroom(&"x".repeat(64)).await.unwrap();

    // The rooms exist already (made by the app server): a user making 21 rooms by joining
    // within a second would meet the limit on making rooms first.
    for i in 0..=20 {
        let body = json!({ "chatroomId": format!("room{i}") });
        let (status, answer) = api(&server, "POST", "/api/v1/chatrooms", body).await;
        assert_eq!(status, 200, "{answer}");
    }
    for i in 0..20 {
        alice.join_chatroom(&format!("room{i}"), 0).await.unwrap();
    }
    assert_eq!(
        refused_code(alice.join_chatroom("room20", 0).await),
        invalid
    );
    alice
        .join_chatroom("room0", 0)
        .await
        .expect("joining a room it is in again is no 21st room");
    // The limit is per connection, not per user.
    alice_pad.join_chatroom("room20", 0).await.unwrap();
    // A place freed on the connection is a place taken.
    alice.quit_chatroom("room0").await.unwrap();
    alice.join_chatroom("room20", 0).await.unwrap();
}

#[tokio::test]
async fn a_client_may_not_send_high_priority_and_only_chatroom_messages_take_a_priority() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    alice.join_chatroom("lobby", 0).await.unwrap();
    bob.join_chatroom("lobby", 0).await.unwrap();
    let high = Outgoing::chatroom_text("lobby", "me first").with_priority(Priority::High);
    assert_eq!(
        refused_code(alice.send(high).await),
        Code::Unauthorized.as_u32()
    );
    let private = Outgoing::text("bob", "quietly").with_priority(Priority::Low);
    assert_eq!(
        refused_code(alice.send(private).await),
        Code::ChatroomInvalid.as_u32()
    );
    let low = Outgoing::chatroom_text("lobby", "a like").with_priority(Priority::Low);
    alice.send(low).await.unwrap();
    // Only the LOW one reached the room; nothing private was stored.
    assert_eq!(text_of(&next_room_message(&mut bob_events).await), "a like");
    let history = bob
        .history(1, "alice", HistoryStart::Newest, 10)
        .await
        .unwrap();
    assert!(history.messages.is_empty(), "{history:?}");
    let room = bob
        .history(CHATROOM, "lobby", HistoryStart::Newest, 10)
        .await
        .unwrap();
    assert_eq!(texts(&room.messages), ["a like"]);
}

#[tokio::test]
async fn a_blocked_sensitive_word_refuses_a_chatroom_message_and_a_replaced_one_reaches_members() {
    let server = TestServer::start().await;
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/sensitive-words",
        json!({ "words": [{ "word": "forbidden" }, { "word": "darn", "replacement": "d**n" }] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    alice.join_chatroom("lobby", 0).await.unwrap();
    bob.join_chatroom("lobby", 0).await.unwrap();
    let refused = alice
        .send(Outgoing::chatroom_text("lobby", "this is FORBIDDEN"))
        .await;
    assert_eq!(refused_code(refused), Code::SensitiveWordBlocked.as_u32());
    let sent = alice
        .send(Outgoing::chatroom_text("lobby", "darn"))
        .await
        .unwrap();
    assert_eq!(sent.replaced_content.as_deref(), Some(r#"{"text":"d**n"}"#));
    // The first message bob gets is the replaced one: the refused one went nowhere.
    assert_eq!(text_of(&next_room_message(&mut bob_events).await), "d**n");
    let room = bob
        .history(CHATROOM, "lobby", HistoryStart::Newest, 10)
        .await
        .unwrap();
    assert_eq!(texts(&room.messages), ["d**n"]);
}

/// The next entry change a member was told of: (operation, key, value, who).
async fn next_entry_change(events: &mut Events) -> (String, String, Option<String>, String) {
    loop {
        if let ChatroomEvent::Notice(n) = next_room_event(events).await
            && n.operation.starts_with("entry")
        {
            return (
                n.operation,
                n.key.unwrap_or_default(),
                n.value,
                n.operator_id,
            );
        }
    }
}

#[tokio::test]
async fn entries_are_changed_by_their_setter_or_by_force_and_every_member_is_told() {
    let server = TestServer::start().await;
    let (alice, mut alice_events) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    let (carol, mut carol_events) = server.client("carol", "phone").await;
    for c in [&alice, &bob, &carol] {
        c.join_chatroom("lobby", 0).await.unwrap();
    }
    let e = alice
        .set_chatroom_entry("lobby", "k1", "v1", false, false)
        .await
        .unwrap();
    assert_eq!(
        (
            e.key.as_str(),
            e.value.as_str(),
            e.user_id.as_str(),
            e.auto_delete
        ),
        ("k1", "v1", "alice", false)
    );
    alice
        .set_chatroom_entry("lobby", "k2", "v2", false, false)
        .await
        .unwrap();
    let one = bob
        .chatroom_entries("lobby", &["k1", "missing"])
        .await
        .unwrap();
    assert_eq!(one, std::slice::from_ref(&e));
    let all = bob.chatroom_entries("lobby", &[]).await.unwrap();
    let keys: Vec<&str> = all.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["k1", "k2"]);

    // Alice's entries are hers: bob needs force to change them.
    let taken = Code::ChatroomEntryTaken.as_u32();
    assert_eq!(
        refused_code(
            bob.set_chatroom_entry("lobby", "k1", "mine", false, false)
                .await
        ),
        taken
    );
    assert_eq!(
        refused_code(bob.remove_chatroom_entry("lobby", "k1", false).await),
        taken
    );
    assert_eq!(
        bob.chatroom_entries("lobby", &["k1"]).await.unwrap(),
        [e],
        "unchanged"
    );
    let forced = bob
        .set_chatroom_entry("lobby", "k1", "mine", true, false)
        .await
        .unwrap();
    assert_eq!(
        (forced.value.as_str(), forced.user_id.as_str()),
        ("mine", "bob")
    );
    bob.remove_chatroom_entry("lobby", "k2", true)
        .await
        .unwrap();
    let all = carol.chatroom_entries("lobby", &[]).await.unwrap();
    assert_eq!(all, [forced]);

    let missing = Code::ChatroomEntryNotFound.as_u32();
    assert_eq!(
        refused_code(bob.remove_chatroom_entry("lobby", "k2", true).await),
        missing
    );
    assert_eq!(
        refused_code(alice.remove_chatroom_entry("lobby", "never", false).await),
        missing
    );
    let (eve, _e) = server.client("eve", "phone").await;
    assert_eq!(
        refused_code(
            eve.set_chatroom_entry("lobby", "k3", "x", false, false)
                .await
        ),
        Code::NotInChatroom.as_u32()
    );

    // Every member, the one who acted included, was told of each change, in order.
    let s = |v: &str| Some(v.to_string());
    let want = [
        ("entry", "k1", s("v1"), "alice"),
        ("entry", "k2", s("v2"), "alice"),
        ("entry", "k1", s("mine"), "bob"),
        ("entry-remove", "k2", None, "bob"),
    ];
    for (who, events) in [
        ("alice", &mut alice_events),
        ("bob", &mut bob_events),
        ("carol", &mut carol_events),
    ] {
        for (op, key, value, by) in &want {
            let got = next_entry_change(events).await;
            assert_eq!(
                got,
                (
                    op.to_string(),
                    key.to_string(),
                    value.clone(),
                    by.to_string()
                ),
                "told to {who}"
            );
        }
    }
}

#[tokio::test]
async fn a_room_holds_at_most_100_entries() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    alice.join_chatroom("lobby", 0).await.unwrap();
    for i in 0..100 {
        alice
            .set_chatroom_entry("lobby", &format!("k{i}"), "v", false, false)
            .await
            .unwrap();
    }
    let full = Code::ChatroomEntriesFull.as_u32();
    assert_eq!(
        refused_code(
            alice
                .set_chatroom_entry("lobby", "k100", "v", false, false)
                .await
        ),
        full
    );
    alice
        .set_chatroom_entry("lobby", "k5", "changed", false, false)
        .await
        .expect("changing an entry adds none");
    assert_eq!(
        alice.chatroom_entries("lobby", &[]).await.unwrap().len(),
        100
    );
    alice
        .remove_chatroom_entry("lobby", "k5", false)
        .await
        .unwrap();
    alice
        .set_chatroom_entry("lobby", "k100", "v", false, false)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_auto_delete_entry_goes_with_its_setter_on_quit_or_disconnect() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    let (carol, _c) = server.client("carol", "phone").await;
    for c in [&alice, &bob, &carol] {
        c.join_chatroom("lobby", 0).await.unwrap();
    }
    let set = |c: &Client, key: &'static str, auto_delete: bool| {
        let c = c.clone();
        async move {
            c.set_chatroom_entry("lobby", key, "x", false, auto_delete)
                .await
                .unwrap()
        }
    };
    assert!(set(&alice, "alice-seat", true).await.auto_delete);
    set(&alice, "alice-note", false).await;
    set(&carol, "carol-seat", true).await;
    let keys = |c: Client| async move {
        let entries = c.chatroom_entries("lobby", &[]).await.unwrap();
        entries.into_iter().map(|e| e.key).collect::<Vec<_>>()
    };
    assert_eq!(
        keys(bob.clone()).await,
        ["alice-note", "alice-seat", "carol-seat"]
    );

    alice.quit_chatroom("lobby").await.unwrap();
    let n = next_notice(&mut bob_events, "entry-remove").await;
    assert_eq!(
        (n.key.as_deref(), n.operator_id.as_str()),
        (Some("alice-seat"), "alice")
    );
    assert_eq!(keys(bob.clone()).await, ["alice-note", "carol-seat"]);

    carol.close().await;
    let n = next_notice(&mut bob_events, "entry-remove").await;
    assert_eq!(
        (n.key.as_deref(), n.operator_id.as_str()),
        (Some("carol-seat"), "carol")
    );
    assert_eq!(keys(bob.clone()).await, ["alice-note"]);
}

#[tokio::test]
async fn in_a_small_room_each_join_and_leave_is_a_notice_naming_the_user() {
    let server = TestServer::start().await;
    let (alice, mut events) = server.client("alice", "phone").await;
    let (bob, _b) = server.client("bob", "phone").await;
    let (carol, _c) = server.client("carol", "phone").await;
    // Each step waits for its notice, so no two fall together.
    let mut expect = async |operation: &str, user: &str| match next_room_event(&mut events).await {
        ChatroomEvent::Notice(n) => assert_eq!(
            (
                n.operation.as_str(),
                n.user_ids.as_slice(),
                n.count,
                n.operator_id.as_str()
            ),
            (operation, [user.to_string()].as_slice(), 1, ""),
            "{n:?}"
        ),
        other => panic!("expected a {operation} notice, got {other:?}"),
    };
    alice.join_chatroom("lobby", 0).await.unwrap();
    expect("join", "alice").await;
    bob.join_chatroom("lobby", 0).await.unwrap();
    expect("join", "bob").await;
    carol.join_chatroom("lobby", 0).await.unwrap();
    expect("join", "carol").await;
    bob.quit_chatroom("lobby").await.unwrap();
    expect("leave", "bob").await;
    carol.close().await;
    expect("leave", "carol").await;
}

#[tokio::test]
async fn a_join_storm_in_a_large_room_is_gathered_into_a_few_notices() {
    use futures_util::future::join_all;
    let server = TestServer::start().await;
    let (watcher, mut events) = server.client("watcher", "phone").await;
    watcher.join_chatroom("stadium", 0).await.unwrap();
    /// Adds join notices' counts until they reach `n`; returns the notices and who they name.
    async fn joins(events: &mut Events, n: u64) -> (usize, BTreeSet<String>) {
        let (mut notices, mut counted, mut named) = (0, 0, BTreeSet::new());
        while counted < n {
            let notice = next_notice(events, "join").await;
            notices += 1;
            counted += notice.count;
            named.extend(notice.user_ids);
        }
        assert_eq!(counted, n, "the counts add up to the joins");
        (notices, named)
    }
    // 99 more fill the room to 100 members (raw connections: they need not read).
    let server = &server;
    let connect = |names: Vec<String>| {
        join_all(
            names
                .into_iter()
                .map(|u| async move { Raw::connected(server, &u, Encoding::Json).await }),
        )
    };
    let fans: Vec<String> = (0..99).map(|i| format!("fan{i}")).collect();
    let mut members = connect(fans.clone()).await;
    join_all(
        members
            .iter_mut()
            .map(|m| m.send_raw(join_frame("stadium"))),
    )
    .await;
    let (_, named) = joins(&mut events, 100).await;
    assert_eq!(named.len(), 100);

    // Now the storm: 50 joins one after another, each answered before the next, so that a
    // room noticing each join at once would make a notice for each.
    let storm: Vec<String> = (0..50).map(|i| format!("storm{i}")).collect();
    let mut late = connect(storm.clone()).await;
    for m in &mut late {
        m.send_raw(join_frame("stadium")).await;
        match m.recv().await {
            Got::Frame(v1::Frame {
                body: Some(v1::frame::Body::Queryack(q)),
                ..
            }) => assert_eq!(q.code, 0, "{}", q.message),
            other => panic!("expected the join answered, got {other:?}"),
        }
    }
    let (notices, named) = joins(&mut events, 50).await;
    assert!(notices <= 3, "{notices} notices for 50 joins");
    assert_eq!(named, storm.into_iter().collect::<BTreeSet<_>>());
    assert_eq!(watcher.chatroom("stadium").await.unwrap().member_count, 150);
    drop((members, late));
}

#[tokio::test]
async fn after_a_reconnect_the_sdk_rejoins_and_presents_what_was_missed_once_in_order() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = slow_to_reconnect(&server, "bob", Duration::from_millis(500)).await;
    alice.join_chatroom("lobby", 0).await.unwrap();
    bob.join_chatroom("lobby", 0).await.unwrap();
    alice
        .send(Outgoing::chatroom_text("lobby", "before"))
        .await
        .unwrap();
    assert_eq!(text_of(&next_room_message(&mut bob_events).await), "before");

    bob.drop_connection().await;
    eventually("the server took bob out of the room", || {
        let alice = alice.clone();
        async move { alice.chatroom("lobby").await.unwrap().member_count == 1 }
    })
    .await;
    let mut missed = Vec::new();
    for i in 1..=3 {
        let sent = alice
            .send(Outgoing::chatroom_text("lobby", &format!("missed {i}")))
            .await
            .unwrap();
        missed.push((sent.seq, format!("missed {i}")));
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = next_room_message(&mut bob_events).await;
        got.push((m.seq, text_of(&m)));
    }
    assert_eq!(got, missed, "each once, in seq order");
    assert_eq!(alice.chatroom("lobby").await.unwrap().member_count, 2);
    // What follows is the next message, not a repeat of what was missed.
    alice
        .send(Outgoing::chatroom_text("lobby", "after"))
        .await
        .unwrap();
    assert_eq!(text_of(&next_room_message(&mut bob_events).await), "after");
    assert!(bob.stats().await.reconnects >= 1);
}

/// Bob in a kept room "party" with alice; his connection drops and, while he is away (his SDK
/// waits half a second to reconnect), the app server destroys the room. Returns bob.
async fn destroyed_while_away(server: &TestServer) -> (Client, Events) {
    let (status, body) = api(
        server,
        "POST",
        "/api/v1/chatrooms",
        json!({ "chatroomId": "party" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = slow_to_reconnect(server, "bob", Duration::from_millis(500)).await;
    alice.join_chatroom("party", 0).await.unwrap();
    bob.join_chatroom("party", 0).await.unwrap();
    saw_join(&mut bob_events, "bob").await;

    bob.drop_connection().await;
    eventually("the server took bob out of the room", || async {
        api_member_count(server, "party").await == Some(1)
    })
    .await;
    let (status, body) = api(server, "DELETE", "/api/v1/chatrooms/party", Value::Null).await;
    assert_eq!(status, 200, "{body}");
    (bob, bob_events)
}

#[tokio::test]
async fn a_member_whose_room_was_destroyed_while_away_is_told_it_left_with_23410() {
    let server = TestServer::start_with(|c| c.chatrooms.auto_create = false).await;
    let (_bob, mut bob_events) = destroyed_while_away(&server).await;
    match next_room_event(&mut bob_events).await {
        ChatroomEvent::Left { chatroom_id, code } => assert_eq!(
            (chatroom_id.as_str(), code),
            ("party", Code::ChatroomNotFound.as_u32())
        ),
        other => panic!("expected Left, got {other:?}"),
    }
}

#[tokio::test]
async fn a_rejoin_after_a_reconnect_does_not_make_a_destroyed_room_again() {
    // Joins make rooms (the default): the SDK's rejoin must still not bring a destroyed room
    // back, as a fresh room the member silently finds itself in.
    let server = TestServer::start().await;
    let (_bob, mut bob_events) = destroyed_while_away(&server).await;
    match next_room_event(&mut bob_events).await {
        ChatroomEvent::Left { chatroom_id, code } => assert_eq!(
            (chatroom_id.as_str(), code),
            ("party", Code::ChatroomNotFound.as_u32())
        ),
        other => panic!("expected Left 23410; the rejoin made the room again: {other:?}"),
    }
    assert_eq!(api_member_count(&server, "party").await, None);
}

#[tokio::test]
async fn an_empty_room_made_by_a_join_ends_after_the_idle_time_but_a_kept_room_stays() {
    let server = TestServer::start_with(|c| c.chatrooms.idle = Duration::from_millis(300)).await;
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/chatrooms",
        json!({ "chatroomId": "hall" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (alice, _a) = server.client("alice", "phone").await;
    // The kept room empties first, so it has been empty the longer.
    for room in ["hall", "pop-up"] {
        alice.join_chatroom(room, 0).await.unwrap();
        alice
            .send(Outgoing::chatroom_text(room, &format!("in {room}")))
            .await
            .unwrap();
        alice.quit_chatroom(room).await.unwrap();
    }
    eventually("the pop-up room ends", || async {
        api_member_count(&server, "pop-up").await.is_none()
    })
    .await;
    let fresh = alice.join_chatroom("pop-up", 10).await.unwrap();
    assert_eq!(
        (fresh.chatroom.seq, fresh.recent.len(), fresh.chatroom.kept),
        (0, 0, false),
        "a new room"
    );
    // The hall is the same room as before: its history lives in memory only.
    let hall = alice.join_chatroom("hall", 10).await.unwrap();
    assert_eq!(texts(&hall.recent), ["in hall"]);
    assert!(hall.chatroom.kept);
}

/// A PUBLISH of a room item (QoS 0) as a server sends it.
fn room_item_frame(room: &str, seq: u64, msg_type: &str, content: &str) -> v1::Frame {
    v1::Frame {
        body: Some(v1::frame::Body::Publish(v1::Publish {
            packet_id: 0,
            body: Some(v1::publish::Body::Message(v1::Message {
                uid: format!("u{seq}-{msg_type}"),
                conversation_type: 4,
                target_id: room.into(),
                sender_id: if seq == 0 {
                    String::new()
                } else {
                    "bob".into()
                },
                seq,
                msg_type: msg_type.into(),
                content: content.into(),
                ..Default::default()
            })),
        })),
        qos: 0,
        dup: false,
    }
}

/// The server's fan-out may drop LOW items of a round and keep the others: the gap marker then
/// comes first and its range holds items that follow it. The SDK presents those items, and
/// still drops a true repeat. Played by a stand-in server speaking the protocol's frames, so
/// the order of frames is exactly this one.
#[tokio::test]
async fn the_sdk_presents_items_a_gap_markers_range_holds_after_it() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Ws;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let send = |f: v1::Frame| Ws::Binary(tidings_proto::codec::encode_protobuf(&f).into());
        // The handshake, then the join, answered by hand.
        let Some(Ok(Ws::Binary(_connect))) = ws.next().await else {
            panic!("no CONNECT")
        };
        let connack = v1::ConnAck {
            user_id: "alice".into(),
            session_id: "1".into(),
            heartbeat_ms: 30_000,
            ..Default::default()
        };
        ws.send(send(tidings_proto::codec::frame(v1::frame::Body::Connack(
            connack,
        ))))
        .await
        .unwrap();
        let query = loop {
            let Some(Ok(Ws::Binary(b))) = ws.next().await else {
                panic!("client went away")
            };
            let f = tidings_proto::codec::decode(&b, Encoding::Protobuf, 1 << 20).unwrap();
            if let Some(v1::frame::Body::Query(q)) = f.body {
                break q;
            }
        };
        let ack = v1::QueryAck {
            query_id: query.query_id,
            chatrooms: vec![v1::Chatroom {
                chatroom_id: "r".into(),
                seq: 4,
                ..Default::default()
            }],
            ..Default::default()
        };
        ws.send(send(tidings_proto::codec::frame(
            v1::frame::Body::Queryack(ack),
        )))
        .await
        .unwrap();
        // Seqs 5, 7 and 9 (LOW) were dropped; 6 and 8 kept: the marker first, then 6 and 8, then
        // a repeat of 8, then 10.
        let gap = r#"{"count":3,"fromSeq":5,"toSeq":9}"#;
        for f in [
            room_item_frame("r", 0, tidings_proto::GAP_EVENT_TYPE, gap),
            room_item_frame("r", 6, "text", r#"{"text":"six"}"#),
            room_item_frame("r", 8, "text", r#"{"text":"eight"}"#),
            room_item_frame("r", 8, "text", r#"{"text":"eight"}"#),
            room_item_frame("r", 10, "text", r#"{"text":"ten"}"#),
        ] {
            ws.send(send(f)).await.unwrap();
        }
        // Keep the connection until the client is done.
        while let Some(Ok(_)) = ws.next().await {}
    });
    let mut config = tidings_client::ClientConfig::new(format!("http://{addr}"), "token");
    config.reconnect_delays = vec![Duration::from_secs(60)];
    let (client, mut events) = Client::connect(config).await.unwrap();
    client.join_chatroom("r", 0).await.unwrap();
    match next_room_event(&mut events).await {
        ChatroomEvent::Gap(g) => assert_eq!((g.count, g.from_seq, g.to_seq), (3, 5, 9)),
        other => panic!("expected the gap marker, got {other:?}"),
    }
    let seqs = [
        next_room_message(&mut events).await.seq,
        next_room_message(&mut events).await.seq,
        next_room_message(&mut events).await.seq,
    ];
    assert_eq!(
        seqs,
        [6, 8, 10],
        "kept items in the gap's range are presented; a repeat is not"
    );
    assert_eq!(client.stats().await.chatroom_repeats, 1);
    client.close().await;
    server.abort();
}

#[tokio::test]
async fn making_rooms_by_joining_is_limited_like_status_messages() {
    let server = TestServer::start().await;
    // Two connections of one user, 20 rooms each (the most a connection holds), all at once:
    // 40 rooms made within far less than the two seconds the limit (10 a second after a burst
    // of 20) would need to allow them all.
    let (a, _a_events) = server.client("maker", "a").await;
    let (b, _b_events) = server.client("maker", "b").await;
    let mut joins = Vec::new();
    for i in 0..40 {
        let client = if i % 2 == 0 { a.clone() } else { b.clone() };
        joins.push(tokio::spawn(async move {
            let room = format!("new-{i}");
            (room.clone(), client.join_chatroom(&room, 0).await)
        }));
    }
    let mut refused = Vec::new();
    for j in joins {
        let (room, result) = j.await.unwrap();
        match result {
            Ok(_) => {}
            Err(ClientError::Refused { code, .. }) if code == Code::SendTooFast.as_u32() => {
                refused.push(room)
            }
            Err(e) => panic!("{room}: {e}"),
        }
    }
    assert!(!refused.is_empty(), "40 rooms made at once by one user");
    // A refused join made nothing.
    for room in &refused {
        assert_eq!(api_member_count(&server, room).await, None, "{room}");
    }
    // Joining rooms that exist is not limited: another user joins all the made ones at once.
    let (c, _c_events) = server.client("joiner", "c").await;
    let made: Vec<String> = (0..40)
        .map(|i| format!("new-{i}"))
        .filter(|r| !refused.contains(r))
        .take(20)
        .collect();
    for room in &made {
        c.join_chatroom(room, 0).await.unwrap();
    }
}

/// A room's items go straight to the sockets of members whose writers are idle (the metric
/// counts them), in both encodings, and arrive whole, once and in seq order among the same
/// members' inbox deliveries, which go straight to the socket too when the writer is idle,
/// and through it when not.
#[tokio::test]
async fn items_written_straight_to_idle_members_arrive_whole_and_in_order() {
    use crate::metrics::scrape_until;
    use crate::process::{ServerProcess, token};
    use tidings_client::ClientConfig;

    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(cwd.path(), &[]);
    let metrics_url = server.metrics_url().expect("a metrics line");
    let data = cwd.path().join("data");
    let connect = |user: &'static str, encoding: Encoding| {
        let mut config = ClientConfig::new(&server.url, token(&data, user));
        config.device_id = format!("{user}-phone");
        config.encoding = encoding;
        Client::connect(config)
    };
    let (alice, _alice_events) = connect("alice", Encoding::Protobuf).await.unwrap();
    let (bob, mut bob_events) = connect("bob", Encoding::Protobuf).await.unwrap();
    let (carol, mut carol_events) = connect("carol", Encoding::Json).await.unwrap();
    for member in [&alice, &bob, &carol] {
        member.join_chatroom("hall", 0).await.unwrap();
    }
    let n = 200;
    for i in 0..n {
        alice
            .send(Outgoing::chatroom_text("hall", &format!("room {i}")))
            .await
            .unwrap();
        if i % 10 == 0 {
            alice
                .send(Outgoing::text("bob", &format!("private {i}")))
                .await
                .unwrap();
        }
    }
    // Each member's events in the order they arrived: the room's in seq order, bob's private
    // messages in the order sent.
    for (events, privates) in [(&mut bob_events, n / 10), (&mut carol_events, 0)] {
        let (mut room, mut private, mut last) = (0, 0, 0);
        while room < n || private < privates {
            match tokio::time::timeout(WAIT, events.recv()).await {
                Ok(Some(Event::Chatroom(ChatroomEvent::Message(m)))) => {
                    assert_eq!(m.content, format!(r#"{{"text":"room {room}"}}"#));
                    assert!(m.seq > last, "in seq order");
                    last = m.seq;
                    room += 1;
                }
                Ok(Some(Event::Message(m))) => {
                    let i = private * 10;
                    assert_eq!(m.content, format!(r#"{{"text":"private {i}"}}"#));
                    private += 1;
                }
                Ok(Some(_)) => {}
                other => panic!("after {room} room and {private} private messages: {other:?}"),
            }
        }
    }
    // More items were written directly than one member got: both members (one protobuf, one
    // JSON) were idle for some of them at least.
    scrape_until(&metrics_url, |s| {
        let direct = s.sum("tidings_chatroom_items_direct_total", &[]);
        // Alice's PUBACKs (she sends one message at a time) and bob's private messages.
        let items = s.sum("tidings_outbound_items_direct_total", &[]);
        if direct > f64::from(n) && items > f64::from(n) {
            Ok(())
        } else {
            Err(format!(
                "{direct} room items and {items} other items written directly"
            ))
        }
    })
    .await;
}
