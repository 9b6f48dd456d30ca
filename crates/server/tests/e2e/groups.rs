//! Groups: managed through the HTTP API, used through the SDK. Every membership change is a
//! notification in the group's conversation; messages reach every member (and only members),
//! online by push and offline by sync. Discussions are groups users make and manage themselves
//! through their own queries; the app server manages every kind.

use serde_json::json;
use tidings_client::{ClientError, ConversationUpdate, HistoryStart, Message, Outgoing};
use tidings_proto::Code;

use crate::util::*;

const GROUP: u32 = 3;

fn refused_code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> u32 {
    match r {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// What a history holds, as `text` contents and `#operation` notifications.
fn summary(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| match m.group_notice() {
            Some(n) => format!("#{} {}", n.operation, n.user_ids.join(",")),
            None => serde_json::from_str::<serde_json::Value>(&m.content).unwrap()["text"]
                .as_str()
                .unwrap_or("?")
                .to_string(),
        })
        .collect()
}

/// The next message event of the group conversation `group`.
async fn next_in(events: &mut tidings_client::Events, group: &str) -> Message {
    loop {
        let m = next_message(events).await;
        if m.conversation_type == GROUP && m.target_id == group {
            return m;
        }
    }
}

#[tokio::test]
async fn group_messages_reach_every_member_and_a_late_joiner_sees_only_what_follows() {
    let server = TestServer::start().await;
    create_group(&server, "team", "alice", &["bob", "carol"]).await;
    let (alice, mut alice_events) = server.client("alice", "phone").await;
    let (bob, _bob_events) = server.client("bob", "phone").await;
    assert_eq!(
        next_in(&mut alice_events, "team")
            .await
            .group_notice()
            .unwrap()
            .operation,
        "create"
    );

    let sent = bob
        .send(Outgoing::group_text("team", "hello team"))
        .await
        .unwrap();
    let got = next_in(&mut alice_events, "team").await;
    assert_eq!((got.sender_id.as_str(), got.seq), ("bob", sent.seq));
    assert_eq!(summary(&[got]), ["hello team"]);

    // Dave joins while offline: his sync shows the notification, and nothing from before.
    let (status, body) = add_group_members(&server, "team", &["dave"]).await;
    assert_eq!(
        (status, body["group"]["memberCount"].as_u64()),
        (200, Some(4)),
        "{body}"
    );
    alice
        .send(Outgoing::group_text("team", "welcome dave"))
        .await
        .unwrap();
    let (dave, mut dave_events) = server.client("dave", "phone").await;
    let first = next_in(&mut dave_events, "team").await;
    let second = next_in(&mut dave_events, "team").await;
    assert_eq!(summary(&[first, second]), ["#add dave", "welcome dave"]);
    let history = dave
        .history(GROUP, "team", HistoryStart::Newest, 50)
        .await
        .unwrap();
    assert_eq!(summary(&history.messages), ["#add dave", "welcome dave"]);
    let entry = dave.conversation(GROUP, "team").await.unwrap().unwrap();
    assert_eq!(entry.unread, 1);

    // Carol, offline all along, syncs everything since the group was made.
    let (_carol, mut carol_events) = server.client("carol", "phone").await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next_in(&mut carol_events, "team").await);
    }
    assert_eq!(
        summary(&seen),
        [
            "#create alice,bob,carol",
            "hello team",
            "#add dave",
            "welcome dave"
        ]
    );
    let page = dave.group_members("team", 2, None).await.unwrap();
    let names: Vec<_> = page.members.iter().map(|m| m.user_id.as_str()).collect();
    assert_eq!(names, ["alice", "bob"], "members in the order they joined");
    let rest = dave
        .group_members("team", 0, page.next_page_token.as_deref())
        .await
        .unwrap();
    let names: Vec<_> = rest.members.iter().map(|m| m.user_id.as_str()).collect();
    assert_eq!(names, ["carol", "dave"]);
    assert_eq!(rest.next_page_token, None);
}

#[tokio::test]
async fn who_may_send_is_checked_with_the_documented_codes() {
    let server = TestServer::start().await;
    create_group(&server, "club", "alice", &["bob"]).await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, _b) = server.client("bob", "phone").await;
    let (eve, _e) = server.client("eve", "phone").await;
    let send = |c: &tidings_client::Client, group: &str| {
        let c = c.clone();
        let m = Outgoing::group_text(group, "hi");
        async move { c.send(m).await }
    };
    assert_eq!(
        refused_code(send(&eve, "club").await),
        Code::NotInGroup.as_u32()
    );
    assert_eq!(
        refused_code(send(&eve, "nowhere").await),
        Code::GroupNotFound.as_u32()
    );
    assert_eq!(
        refused_code(eve.group("club").await),
        Code::NotInGroup.as_u32()
    );
    assert!(
        eve.history(GROUP, "club", HistoryStart::Newest, 10)
            .await
            .unwrap()
            .messages
            .is_empty(),
        "a non-member sees no history"
    );
    assert_eq!(
        refused_code(
            eve.update_conversation(ConversationUpdate::group("club").pinned(true))
                .await
        ),
        Code::NotInGroup.as_u32()
    );

    // One member muted, then everyone but the owner.
    let (status, _) = api(
        &server,
        "POST",
        "/api/v1/groups/club/mute",
        json!({ "userId": "bob", "minutes": 10 }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        refused_code(send(&bob, "club").await),
        Code::MutedInGroup.as_u32()
    );
    api(
        &server,
        "POST",
        "/api/v1/groups/club/mute",
        json!({ "userId": "bob", "minutes": 0 }),
    )
    .await;
    send(&bob, "club").await.unwrap();
    api(&server, "POST", "/api/v1/groups/club/mute", json!({})).await;
    assert_eq!(
        refused_code(send(&bob, "club").await),
        Code::MutedInGroup.as_u32()
    );
    send(&alice, "club").await.unwrap();
    api(
        &server,
        "POST",
        "/api/v1/groups/club/mute",
        json!({ "minutes": 0 }),
    )
    .await;
    send(&bob, "club").await.unwrap();

    // Mentions and directed messages are for groups.
    assert_eq!(
        refused_code(
            bob.send(Outgoing::text("alice", "x").mentioning(&["alice"]))
                .await
        ),
        Code::InvalidMentions.as_u32()
    );

    // Bob leaves through the protocol; then he may not send.
    let left = bob.quit_group("club").await.unwrap();
    assert_eq!(left.member_count, 1);
    assert_eq!(
        refused_code(send(&bob, "club").await),
        Code::NotInGroup.as_u32()
    );
    assert!(bob.groups().await.unwrap().is_empty());

    // A dismissed group refuses everything.
    let (status, body) = api(
        &server,
        "DELETE",
        "/api/v1/groups/club",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["group"]["dismissedTime"].as_i64().unwrap() > 0);
    assert_eq!(
        refused_code(send(&alice, "club").await),
        Code::GroupDismissed.as_u32()
    );
    let (status, body) = add_group_members(&server, "club", &["eve"]).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(Code::GroupDismissed.as_u32().into()))
    );
}

#[tokio::test]
async fn a_removed_member_is_told_and_gets_nothing_after() {
    let server = TestServer::start().await;
    create_group(&server, "crew", "alice", &["bob", "carol"]).await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (_carol, mut carol_events) = server.client("carol", "phone").await;
    next_in(&mut carol_events, "crew").await; // create
    alice
        .send(Outgoing::group_text("crew", "before"))
        .await
        .unwrap();
    assert_eq!(
        summary(&[next_in(&mut carol_events, "crew").await]),
        ["before"]
    );
    let (status, _) = api(
        &server,
        "POST",
        "/api/v1/groups/crew/members/remove",
        json!({ "userIds": ["carol"] }),
    )
    .await;
    assert_eq!(status, 200);
    let notice = next_in(&mut carol_events, "crew")
        .await
        .group_notice()
        .unwrap();
    assert_eq!(
        (notice.operation.as_str(), notice.user_ids.as_slice()),
        ("remove", &["carol".to_string()][..])
    );
    alice
        .send(Outgoing::group_text("crew", "after"))
        .await
        .unwrap();
    // A later private message shows that nothing of the group came first.
    alice.send(Outgoing::text("carol", "direct")).await.unwrap();
    let next = next_message(&mut carol_events).await;
    assert_eq!(
        (next.conversation_type, summary(std::slice::from_ref(&next))),
        (1, vec!["direct".to_string()])
    );
    let (carol2, _c2) = server.client("carol", "laptop").await;
    let history = carol2
        .history(GROUP, "crew", HistoryStart::Newest, 50)
        .await
        .unwrap();
    assert_eq!(
        summary(&history.messages),
        ["#create alice,bob,carol", "before", "#remove carol"]
    );
    let entry = carol2.conversation(GROUP, "crew").await.unwrap().unwrap();
    assert_eq!(
        entry.unread, 1,
        "\"before\" is unread, \"after\" is not hers"
    );
    assert_eq!(summary(&[entry.latest.unwrap()]), ["#remove carol"]);
}

#[tokio::test]
async fn mentions_directed_messages_and_read_receipts() {
    let server = TestServer::start().await;
    create_group(&server, "desk", "alice", &["bob", "carol"]).await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    let (carol, mut carol_events) = server.client("carol", "phone").await;

    let sent = alice
        .send(Outgoing::group_text("desk", "@carol please").mentioning(&["carol"]))
        .await
        .unwrap();
    let got = next_in(&mut carol_events, "desk").await;
    let got = if got.group_notice().is_some() {
        next_in(&mut carol_events, "desk").await
    } else {
        got
    };
    assert!(got.mentions("carol") && !got.mentions("bob"));
    let entry = carol.conversation(GROUP, "desk").await.unwrap().unwrap();
    assert_eq!((entry.unread, entry.mentioned), (1, 1));
    let entry = bob.conversation(GROUP, "desk").await.unwrap().unwrap();
    assert_eq!((entry.unread, entry.mentioned), (1, 0));

    // Who read it comes from the members' read positions; only the sender may ask.
    let receipt = alice.group_receipt("desk", sent.seq).await.unwrap();
    assert_eq!(
        (receipt.read.len(), receipt.unread),
        (0, vec!["bob".to_string(), "carol".into()])
    );
    let read = carol
        .update_conversation(ConversationUpdate::group("desk").read_up_to(sent.seq))
        .await
        .unwrap();
    assert_eq!((read.unread, read.mentioned), (0, 0));
    let receipt = alice.group_receipt("desk", sent.seq).await.unwrap();
    assert_eq!(
        (receipt.read, receipt.unread),
        (vec!["carol".to_string()], vec!["bob".to_string()])
    );
    assert_eq!(
        refused_code(bob.group_receipt("desk", sent.seq).await),
        Code::NotMessageSender.as_u32()
    );
    assert_eq!(
        refused_code(alice.group_receipt("desk", 999).await),
        Code::MessageNotFound.as_u32()
    );

    // A directed message reaches only its audience.
    let directed = alice
        .send(Outgoing::group_text("desk", "just bob").directed_to(&["bob"]))
        .await
        .unwrap();
    let mut got = next_in(&mut bob_events, "desk").await;
    while got.seq != directed.seq {
        got = next_in(&mut bob_events, "desk").await;
    }
    assert_eq!(got.directed_user_ids, ["bob"]);
    alice
        .send(Outgoing::group_text("desk", "everyone"))
        .await
        .unwrap();
    let next = next_in(&mut carol_events, "desk").await;
    assert_eq!(
        summary(&[next]),
        ["everyone"],
        "carol never got the directed message"
    );
    let history = carol
        .history(GROUP, "desk", HistoryStart::Newest, 50)
        .await
        .unwrap();
    assert!(!summary(&history.messages).contains(&"just bob".to_string()));
}

#[tokio::test]
async fn the_api_manages_groups_with_clear_errors() {
    let server = TestServer::start_with(|c| c.max_group_members = 3).await;
    create_group(&server, "g1", "alice", &["bob"]).await;
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/groups",
        json!({ "groupId": "g1", "ownerId": "x" }),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (409, Some(Code::GroupExists.as_u32().into()))
    );
    let (status, body) = add_group_members(&server, "g1", &["c", "d"]).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(Code::GroupFull.as_u32().into())),
        "{body}"
    );
    let (status, body) = api(
        &server,
        "GET",
        "/api/v1/groups/nope",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (404, Some(Code::GroupNotFound.as_u32().into()))
    );
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/groups",
        json!({ "groupId": "g2" }),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(Code::BadRequest.as_u32().into())),
        "{body}"
    );
    let (status, body) = api(
        &server,
        "PATCH",
        "/api/v1/groups/g1",
        json!({ "extra": [1] }),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(Code::BadRequest.as_u32().into()))
    );

    let (status, body) = api(
        &server,
        "PATCH",
        "/api/v1/groups/g1",
        json!({ "name": "Renamed", "extra": { "topic": "x" } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["group"]["name"].as_str(),
            body["group"]["extra"]["topic"].as_str()
        ),
        (Some("Renamed"), Some("x"))
    );
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/groups/g1/owner",
        json!({ "userId": "bob" }),
    )
    .await;
    assert_eq!(
        (status, body["group"]["ownerId"].as_str()),
        (200, Some("bob"))
    );
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/groups/g1/owner",
        json!({ "userId": "zed" }),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(Code::NotInGroup.as_u32().into()))
    );
    let (_, body) = api(
        &server,
        "GET",
        "/api/v1/groups/g1/members?limit=1",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(body["members"][0]["userId"], "alice");
    let token = body["nextPageToken"].as_str().unwrap().to_string();
    let (_, body) = api(
        &server,
        "GET",
        &format!("/api/v1/groups/g1/members?limit=1&pageToken={token}"),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(
        (
            body["members"][0]["userId"].as_str(),
            body["nextPageToken"].as_str()
        ),
        (Some("bob"), Some(""))
    );
    let (status, body) = api(
        &server,
        "GET",
        "/api/v1/groups/g1/members?limit=x",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(Code::BadRequest.as_u32().into()))
    );
    let (_, body) = api(
        &server,
        "GET",
        "/api/v1/users/bob/groups",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(body["groups"][0]["groupId"], "g1");

    // Every change above is in the conversation, in order.
    let (bob, _b) = server.client("bob", "phone").await;
    let history = bob
        .history(GROUP, "g1", HistoryStart::Newest, 50)
        .await
        .unwrap();
    let ops: Vec<_> = history
        .messages
        .iter()
        .map(|m| m.group_notice().unwrap().operation)
        .collect();
    assert_eq!(ops, ["create", "update", "transfer"]);
    let group = bob.group("g1").await.unwrap();
    assert_eq!(
        (
            group.name.as_str(),
            group.owner_id.as_str(),
            group.member_count
        ),
        ("Renamed", "bob", 2)
    );
}

/// A group of 100: its messages' inbox entries are staged by the store and merged later (see
/// `crates/store-sqlite/src/pending.rs`). Members online get them pushed; a member offline all
/// along gets each once by sync, with the right unread count, before and after the merge.
#[tokio::test]
async fn a_large_group_reaches_online_and_offline_members_once() {
    let server = TestServer::start().await;
    let others: Vec<String> = (0..97).map(|i| format!("member{i:02}")).collect();
    let mut members: Vec<&str> = vec!["bob", "carol"];
    members.extend(others.iter().map(String::as_str));
    create_group(&server, "crowd", "alice", &members).await;
    let (_alice, mut alice_events) = server.client("alice", "phone").await;
    let (bob, _bob_events) = server.client("bob", "phone").await;
    assert_eq!(
        next_in(&mut alice_events, "crowd")
            .await
            .group_notice()
            .unwrap()
            .operation,
        "create"
    );
    for text in ["one", "two", "three"] {
        bob.send(Outgoing::group_text("crowd", text)).await.unwrap();
    }
    let mut pushed = Vec::new();
    for _ in 0..3 {
        pushed.push(next_in(&mut alice_events, "crowd").await);
    }
    assert_eq!(summary(&pushed), ["one", "two", "three"]);

    // Carol was offline: her sync has everything once, whether merged yet or not.
    let (carol, mut carol_events) = server.client("carol", "phone").await;
    let mut synced = Vec::new();
    for _ in 0..4 {
        synced.push(next_in(&mut carol_events, "crowd").await);
    }
    let got = summary(&synced);
    assert!(
        got[0].starts_with("#create alice,bob,carol,member00,"),
        "{}",
        got[0]
    );
    assert_eq!(got[1..], ["one", "two", "three"]);
    let entry = carol.conversation(GROUP, "crowd").await.unwrap().unwrap();
    assert_eq!(entry.unread, 3);
    carol.close().await;

    // Once the store has merged (it does within half a second of going idle), a fresh device
    // syncs the same entries, and nothing is repeated to the first.
    let db = server.dir.path().join(tidings_server::DB_FILE);
    eventually("the store merged the staged inbox entries", || async {
        let c =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        c.query_row("SELECT count(*) FROM inbox_pending", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
            == 0
    })
    .await;
    let (_carol_tablet, mut tablet_events) = server.client("carol", "tablet").await;
    let mut again = Vec::new();
    for _ in 0..4 {
        again.push(next_in(&mut tablet_events, "crowd").await);
    }
    assert_eq!(summary(&again), got);
    let (_carol_phone, mut phone_events) = server.client("carol", "phone").await;
    bob.send(Outgoing::group_text("crowd", "four"))
        .await
        .unwrap();
    assert_eq!(
        summary(&[next_in(&mut phone_events, "crowd").await]),
        ["four"]
    );
}

#[tokio::test]
async fn users_make_and_manage_discussions_and_each_change_is_a_notification() {
    let server = TestServer::start().await;
    let (ann, mut ann_events) = server.client("ann", "phone").await;
    let (ben, mut ben_events) = server.client("ben", "phone").await;
    let (cat, mut cat_events) = server.client("cat", "phone").await;

    // Ann makes one with Ben: she owns it, its invitations are open, and Ben hears of it.
    let d = ann.create_discussion("Plans", &["ben"]).await.unwrap();
    assert_eq!(
        (
            d.kind.as_str(),
            d.owner_id.as_str(),
            d.name.as_str(),
            d.member_count,
            d.invite_open
        ),
        ("discussion", "ann", "Plans", 2, true)
    );
    assert!(d.group_id.starts_with("d-"), "{}", d.group_id);
    let id = d.group_id.clone();
    for events in [&mut ann_events, &mut ben_events] {
        let created = next_in(events, &id).await.group_notice().unwrap();
        assert_eq!(
            (
                created.operation.as_str(),
                created.operator_id.as_str(),
                created.kind.as_deref()
            ),
            ("create", "ann", Some("discussion"))
        );
    }
    // The app server sees it, with its kind.
    let (_, body) = api(&server, "GET", &format!("/api/v1/groups/{id}"), json!(null)).await;
    assert_eq!(body["group"]["kind"], "discussion");

    // While invitations are open, any member adds members.
    let d = ben.add_discussion_members(&id, &["cat"]).await.unwrap();
    assert_eq!(d.member_count, 3);
    let added = next_in(&mut ann_events, &id).await.group_notice().unwrap();
    assert_eq!(
        (
            added.operation.as_str(),
            added.operator_id.as_str(),
            added.user_ids
        ),
        ("add", "ben", vec!["cat".to_string()])
    );
    // Messages reach every member, as in any group.
    let sent = cat.send(Outgoing::group_text(&id, "hi all")).await.unwrap();
    let got = next_in(&mut ann_events, &id).await;
    assert_eq!((got.sender_id.as_str(), got.seq), ("cat", sent.seq));

    // Any member renames it; only the owner opens or closes invitations.
    let d = cat.set_discussion_name(&id, "Trip").await.unwrap();
    assert_eq!(d.name, "Trip");
    let renamed = next_in(&mut ann_events, &id).await.group_notice().unwrap();
    assert_eq!(
        (renamed.operation.as_str(), renamed.name.as_deref()),
        ("update", Some("Trip"))
    );
    assert_eq!(
        refused_code(ben.set_discussion_invite_open(&id, false).await),
        Code::Unauthorized.as_u32()
    );
    let d = ann.set_discussion_invite_open(&id, false).await.unwrap();
    assert!(!d.invite_open);
    // Ben hears of it (after the changes before it).
    let closed = loop {
        let m = next_in(&mut ben_events, &id).await;
        if let Some(n) = m.group_notice().filter(|n| n.invite_open.is_some()) {
            break n;
        }
    };
    assert_eq!(
        (closed.operation.as_str(), closed.invite_open),
        ("update", Some(false))
    );
    // Closed: a member's invitation is refused, the owner's goes through.
    assert_eq!(
        refused_code(ben.add_discussion_members(&id, &["dan"]).await),
        Code::DiscussionInvitesClosed.as_u32()
    );
    assert_eq!(
        ann.add_discussion_members(&id, &["dan"])
            .await
            .unwrap()
            .member_count,
        4
    );

    // Only the owner removes; the removed member is told and sees nothing after.
    assert_eq!(
        refused_code(ben.remove_discussion_member(&id, "cat").await),
        Code::Unauthorized.as_u32()
    );
    let d = ann.remove_discussion_member(&id, "cat").await.unwrap();
    assert_eq!(d.member_count, 3);
    let removed = loop {
        let n = next_in(&mut cat_events, &id).await;
        if let Some(n) = n.group_notice().filter(|n| n.operation == "remove") {
            break n;
        }
    };
    assert_eq!(removed.user_ids, ["cat"]);
    assert_eq!(
        refused_code(cat.set_discussion_name(&id, "mine").await),
        Code::NotInGroup.as_u32()
    );
    assert_eq!(
        refused_code(cat.send(Outgoing::group_text(&id, "still here?")).await),
        Code::NotInGroup.as_u32()
    );

    // The owner quits: Ben, the longest-standing member after her, owns it now.
    let d = ann.quit_group(&id).await.unwrap();
    assert_eq!((d.owner_id.as_str(), d.member_count), ("ben", 2));
    assert!(ben.remove_discussion_member(&id, "dan").await.is_ok());
}

#[tokio::test]
async fn users_cannot_manage_a_group_that_is_not_a_discussion() {
    let server = TestServer::start().await;
    create_group(&server, "crew", "amy", &["bob"]).await;
    let (amy, _amy_events) = server.client("amy", "phone").await;
    // Even its owner cannot change an app-managed group through the discussion bodies.
    for refusal in [
        amy.add_discussion_members("crew", &["zed"]).await,
        amy.remove_discussion_member("crew", "bob").await,
        amy.set_discussion_name("crew", "ours").await,
        amy.set_discussion_invite_open("crew", false).await,
    ] {
        assert_eq!(refused_code(refusal), Code::GroupNotFound.as_u32());
    }
    let (_, body) = api(&server, "GET", "/api/v1/groups/crew", json!(null)).await;
    assert_eq!(
        (
            &body["group"]["name"],
            &body["group"]["memberCount"],
            &body["group"]["kind"]
        ),
        (&json!("Team"), &json!(2), &json!("managed"))
    );
    // A discussion's bodies check their input like any group's.
    assert_eq!(
        refused_code(amy.create_discussion(&"n".repeat(129), &[]).await),
        Code::BadRequest.as_u32()
    );
    assert_eq!(
        refused_code(amy.create_discussion("x", &["not a user"]).await),
        Code::InvalidUserId.as_u32()
    );
    assert_eq!(
        refused_code(amy.add_discussion_members("no-such", &["bob"]).await),
        Code::GroupNotFound.as_u32()
    );
}

#[tokio::test]
async fn a_user_who_blocks_another_is_not_put_in_their_discussions() {
    let server = TestServer::start().await;
    let (amy, _amy_events) = server.client("amy", "phone").await;
    let (bob, _bob_events) = server.client("bob", "phone").await;
    bob.block("amy").await.unwrap();
    assert_eq!(
        refused_code(amy.create_discussion("plans", &["cat", "bob"]).await),
        Code::RejectedByBlacklist.as_u32()
    );
    let d = amy.create_discussion("plans", &["cat"]).await.unwrap();
    assert_eq!(
        refused_code(amy.add_discussion_members(&d.group_id, &["bob"]).await),
        Code::RejectedByBlacklist.as_u32()
    );
    assert!(bob.groups().await.unwrap().is_empty(), "bob is in nothing");
    // Someone bob does not block may still invite him.
    let (cat, _cat_events) = server.client("cat", "phone").await;
    let d = cat
        .add_discussion_members(&d.group_id, &["bob"])
        .await
        .unwrap();
    assert_eq!(d.member_count, 3);
}

#[tokio::test]
async fn a_discussion_has_the_maximum_of_members_of_any_group() {
    let server = TestServer::start_with(|c| c.max_group_members = 3).await;
    let (amy, _events) = server.client("amy", "phone").await;
    assert_eq!(
        refused_code(amy.create_discussion("big", &["b", "c", "d"]).await),
        Code::GroupFull.as_u32()
    );
    let d = amy.create_discussion("small", &["b", "c"]).await.unwrap();
    assert_eq!(
        refused_code(amy.add_discussion_members(&d.group_id, &["d"]).await),
        Code::GroupFull.as_u32()
    );
}

#[tokio::test]
async fn making_discussions_counts_against_the_send_rate() {
    let server = TestServer::start_with(|c| {
        c.send_rate = 1;
        c.send_burst = 1;
    })
    .await;
    let (amy, _events) = server.client("amy", "phone").await;
    amy.create_discussion("one", &["bob"]).await.unwrap();
    assert_eq!(
        refused_code(amy.create_discussion("two", &["bob"]).await),
        Code::SendTooFast.as_u32()
    );
    assert_eq!(amy.groups().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_app_server_makes_and_manages_groups_of_every_kind() {
    let server = TestServer::start().await;
    let create = |id: &str, kind: Option<&str>| {
        let mut body = json!({ "groupId": id, "ownerId": "amy", "memberIds": ["bob"] });
        if let Some(kind) = kind {
            body["kind"] = kind.into();
        }
        body
    };
    let (status, body) = api(&server, "POST", "/api/v1/groups", create("k1", None)).await;
    assert_eq!((status, &body["group"]["kind"]), (200, &json!("managed")));
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/groups",
        create("k2", Some("discussion")),
    )
    .await;
    assert_eq!(
        (status, &body["group"]["kind"], &body["group"]["inviteOpen"]),
        (200, &json!("discussion"), &json!(true))
    );
    // One id space: an id of any kind is taken for every kind.
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/groups",
        create("k2", Some("open")),
    )
    .await;
    assert_eq!((status, &body["code"]), (409, &json!(40021)));
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/groups",
        create("k3", Some("public")),
    )
    .await;
    assert_eq!((status, &body["code"]), (400, &json!(42007)));
    // The app server closes a discussion's invitations, and its members see it.
    let (status, body) = api(
        &server,
        "PATCH",
        "/api/v1/groups/k2",
        json!({ "inviteOpen": false }),
    )
    .await;
    assert_eq!((status, &body["group"]["inviteOpen"]), (200, &json!(false)));
    let (bob, _events) = server.client("bob", "phone").await;
    assert!(!bob.group("k2").await.unwrap().invite_open);
    assert_eq!(
        refused_code(bob.add_discussion_members("k2", &["cat"]).await),
        Code::DiscussionInvitesClosed.as_u32()
    );
}
