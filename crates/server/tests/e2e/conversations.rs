//! Conversations, read positions and unread counts, through the SDK: shared by all of a user's
//! devices, online and offline.

use tidings_client::{ClientError, ConversationUpdate, HistoryStart, Outgoing, QuietHours};
use tidings_proto::Code;

use crate::util::*;

const PRIVATE: u32 = 1;

fn custom(to: &str, counted: bool) -> Outgoing {
    Outgoing {
        msg_type: "app:status".into(),
        content: r#"{"state":"busy"}"#.into(),
        uncounted: !counted,
        ..Outgoing::text(to, "")
    }
}

fn refused_code(r: Result<impl std::fmt::Debug, ClientError>) -> u32 {
    match r {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn the_list_orders_pinned_then_newest_counts_unread_and_pages() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (carol, _c) = server.client("carol", "phone").await;
    let (dave, _d) = server.client("dave", "phone").await;
    let (bob, _b) = server.client("bob", "phone").await;
    for text in ["a1", "a2"] {
        alice.send(Outgoing::text("bob", text)).await.unwrap();
    }
    carol.send(Outgoing::text("bob", "c1")).await.unwrap();
    dave.send(Outgoing::text("bob", "d1")).await.unwrap();
    dave.send(custom("bob", false)).await.unwrap();
    dave.send(custom("bob", true)).await.unwrap();
    // Bob's own message does not count for him.
    bob.send(Outgoing::text("dave", "b1")).await.unwrap();

    let page = bob.conversations(&[], 0, None).await.unwrap();
    let order: Vec<_> = page
        .conversations
        .iter()
        .map(|c| c.target_id.as_str())
        .collect();
    assert_eq!(order, ["dave", "carol", "alice"], "newest message first");
    let unread: Vec<_> = page.conversations.iter().map(|c| c.unread).collect();
    assert_eq!(unread, [2, 1, 2], "uncounted and own messages do not count");
    let latest = page.conversations[0].latest.as_ref().unwrap();
    assert_eq!((latest.sender_id.as_str(), latest.seq), ("bob", 4));
    assert_eq!(page.next_page_token, None);
    assert_eq!(bob.unread(&[]).await.unwrap(), 5);
    assert_eq!(bob.unread(&[PRIVATE]).await.unwrap(), 5);
    assert_eq!(bob.unread(&[3]).await.unwrap(), 0);

    // Pinned first.
    let pinned = bob
        .update_conversation(ConversationUpdate::private("alice").pinned(true))
        .await
        .unwrap();
    assert!(pinned.pinned);
    assert_eq!(pinned.unread, 2);
    let first = bob.conversations(&[PRIVATE], 2, None).await.unwrap();
    let order: Vec<_> = first
        .conversations
        .iter()
        .map(|c| c.target_id.as_str())
        .collect();
    assert_eq!(order, ["alice", "dave"]);
    let token = first.next_page_token.expect("a second page");
    let second = bob
        .conversations(&[PRIVATE], 2, Some(&token))
        .await
        .unwrap();
    let order: Vec<_> = second
        .conversations
        .iter()
        .map(|c| c.target_id.as_str())
        .collect();
    assert_eq!(order, ["carol"]);
    assert_eq!(second.next_page_token, None);
    assert!(
        bob.conversations(&[3], 0, None)
            .await
            .unwrap()
            .conversations
            .is_empty(),
        "filtered by type"
    );

    // Alice's side of the same conversation.
    let mine = alice.conversation(PRIVATE, "bob").await.unwrap().unwrap();
    assert_eq!((mine.unread, mine.latest.unwrap().seq), (0, 2));
    assert_eq!(alice.conversation(PRIVATE, "nobody").await.unwrap(), None);
}

#[tokio::test]
async fn reading_on_one_device_clears_unread_on_the_other() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (phone, mut phone_events) = server.client("bob", "phone").await;
    let (laptop, mut laptop_events) = server.client("bob", "laptop").await;
    let mut last = 0;
    for i in 0..3 {
        last = alice
            .send(Outgoing::text("bob", &format!("m{i}")))
            .await
            .unwrap()
            .seq;
    }
    assert_eq!(laptop.unread(&[]).await.unwrap(), 3);

    let read = phone
        .update_conversation(ConversationUpdate::private("alice").read_up_to(last - 1))
        .await
        .unwrap();
    assert_eq!((read.read_seq, read.unread), (2, 1));
    // Both devices hear of it, the one that made the change included.
    for events in [&mut laptop_events, &mut phone_events] {
        let change = next_change(events).await;
        assert_eq!((change.target_id.as_str(), change.read_seq), ("alice", 2));
    }
    assert_eq!(laptop.unread(&[]).await.unwrap(), 1);

    // Reading never moves back; reading past the newest message stops at it.
    phone
        .update_conversation(ConversationUpdate::private("alice").read_up_to(1))
        .await
        .unwrap();
    let c = phone
        .update_conversation(ConversationUpdate::private("alice").read_up_to(99))
        .await
        .unwrap();
    assert_eq!((c.read_seq, c.unread), (3, 0));
    assert_eq!(laptop.unread(&[]).await.unwrap(), 0);

    // Pin and mute on the laptop reach the phone.
    laptop
        .update_conversation(
            ConversationUpdate::private("alice")
                .pinned(true)
                .muted(true),
        )
        .await
        .unwrap();
    let change = loop {
        let c = next_change(&mut phone_events).await;
        if c.pinned {
            break c;
        }
    };
    assert!(change.muted);
    let seen = phone.conversation(PRIVATE, "alice").await.unwrap().unwrap();
    assert!(seen.pinned && seen.muted);
}

#[tokio::test]
async fn an_offline_device_catches_up_by_sync_and_by_changes_since_its_version() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (carol, _c) = server.client("carol", "phone").await;
    let (dave, _d) = server.client("dave", "phone").await;
    for (who, c) in [("alice", &alice), ("carol", &carol), ("dave", &dave)] {
        c.send(Outgoing::text("bob", who)).await.unwrap();
    }
    let (laptop, mut laptop_events) = server.client("bob", "laptop").await;
    for _ in 0..3 {
        next_message(&mut laptop_events).await;
    }
    let version = laptop.conversations(&[], 0, None).await.unwrap().version;
    laptop.close().await;

    // While the laptop is away: the phone pins Alice and removes Dave; Carol writes again.
    let (phone, _p) = server.client("bob", "phone").await;
    phone
        .update_conversation(ConversationUpdate::private("alice").pinned(true))
        .await
        .unwrap();
    phone
        .update_conversation(ConversationUpdate::private("dave").remove())
        .await
        .unwrap();
    carol.send(Outgoing::text("bob", "again")).await.unwrap();

    let (laptop, mut laptop_events) = server.client("bob", "laptop").await;
    let mut changes = Vec::new();
    while changes.len() < 2 {
        changes.push(next_change(&mut laptop_events).await);
    }
    assert!(changes[0].pinned && changes[0].target_id == "alice");
    assert!(changes[1].removed_seq > 0 && changes[1].target_id == "dave");
    assert_eq!(
        next_message(&mut laptop_events).await.content,
        r#"{"text":"again"}"#
    );

    let changed = laptop.conversations_changed(version).await.unwrap();
    let mut got: Vec<_> = changed
        .conversations
        .iter()
        .map(|c| (c.target_id.as_str(), c.pinned, c.removed, c.unread))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("alice", true, false, 1),
            ("carol", false, false, 2),
            ("dave", false, true, 0)
        ]
    );
    assert!(changed.version > version);
    assert!(
        laptop
            .conversations_changed(changed.version)
            .await
            .unwrap()
            .conversations
            .is_empty()
    );
}

#[tokio::test]
async fn removal_hides_a_conversation_until_its_next_message() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (carol, _c) = server.client("carol", "phone").await;
    let (bob, _b) = server.client("bob", "phone").await;
    let first = alice.send(Outgoing::text("bob", "one")).await.unwrap();
    carol.send(Outgoing::text("bob", "two")).await.unwrap();

    let removed = bob
        .update_conversation(ConversationUpdate::private("alice").remove())
        .await
        .unwrap();
    assert_eq!((removed.read_seq, removed.unread), (first.seq, 0));
    let targets = |page: tidings_client::ConversationPage| {
        page.conversations
            .into_iter()
            .map(|c| c.target_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        targets(bob.conversations(&[], 0, None).await.unwrap()),
        ["carol"]
    );

    alice.send(Outgoing::text("bob", "back")).await.unwrap();
    let list = bob.conversations(&[], 0, None).await.unwrap();
    assert_eq!(list.conversations[0].target_id, "alice");
    assert_eq!(
        list.conversations[0].unread, 1,
        "only what came after the removal"
    );

    // By type: everything private goes, and nothing is left unread.
    assert_eq!(bob.remove_conversations(&[PRIVATE]).await.unwrap(), 2);
    assert!(
        bob.conversations(&[], 0, None)
            .await
            .unwrap()
            .conversations
            .is_empty()
    );
    assert_eq!(bob.unread(&[]).await.unwrap(), 0);
    assert_eq!(bob.remove_conversations(&[]).await.unwrap(), 0);
}

#[tokio::test]
async fn reading_until_a_time_reads_what_was_sent_by_then() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, _b) = server.client("bob", "phone").await;
    let first = alice.send(Outgoing::text("bob", "early")).await.unwrap();
    // Sent times are milliseconds: make sure the next message has a later one. Not a wait for a
    // condition: wall-clock time must pass.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    alice.send(Outgoing::text("bob", "late")).await.unwrap();
    let c = bob
        .update_conversation(ConversationUpdate::private("alice").read_until(first.sent_time))
        .await
        .unwrap();
    assert_eq!((c.read_seq, c.unread), (1, 1));
}

#[tokio::test]
async fn bad_conversation_queries_are_refused_with_their_codes() {
    let server = TestServer::start().await;
    let (bob, _b) = server.client("bob", "phone").await;
    let chatroom = ConversationUpdate {
        conversation_type: 4,
        ..ConversationUpdate::private("room1").pinned(true)
    };
    assert_eq!(
        refused_code(bob.update_conversation(chatroom).await),
        Code::UnknownConversationType.as_u32()
    );
    assert_eq!(
        refused_code(
            bob.update_conversation(ConversationUpdate::private("not valid").pinned(true))
                .await
        ),
        Code::InvalidTarget.as_u32()
    );
    assert_eq!(
        refused_code(
            bob.update_conversation(ConversationUpdate::private("alice"))
                .await
        ),
        Code::InvalidQuery.as_u32(),
        "an update that changes nothing"
    );
    assert_eq!(
        refused_code(bob.conversations(&[], 101, None).await),
        Code::InvalidQuery.as_u32()
    );
    assert_eq!(
        refused_code(bob.conversations(&[], 0, Some("not-a-token")).await),
        Code::InvalidQuery.as_u32()
    );
    assert_eq!(
        refused_code(bob.conversation(PRIVATE, "").await),
        Code::InvalidTarget.as_u32()
    );
    // The connection survives refusals.
    assert_eq!(bob.unread(&[]).await.unwrap(), 0);
}

#[tokio::test]
async fn history_pages_and_hides_what_the_user_deleted_or_cleared() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (phone, _p) = server.client("bob", "phone").await;
    let (laptop, mut laptop_events) = server.client("bob", "laptop").await;
    let mut sent = Vec::new();
    for i in 0..25 {
        sent.push(
            alice
                .send(Outgoing::text("bob", &format!("m{i}")))
                .await
                .unwrap(),
        );
    }
    let seqs = |page: &tidings_client::HistoryPage| {
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>()
    };
    let page = phone
        .history(PRIVATE, "alice", HistoryStart::Newest, 10)
        .await
        .unwrap();
    assert_eq!((seqs(&page), page.has_more), ((16..=25).collect(), true));
    assert_eq!(page.messages[0].target_id, "alice", "as bob sees it");
    let page = phone
        .history(PRIVATE, "alice", HistoryStart::BeforeSeq(16), 10)
        .await
        .unwrap();
    assert_eq!((seqs(&page), page.has_more), ((6..=15).collect(), true));
    let page = phone
        .history(PRIVATE, "alice", HistoryStart::BeforeSeq(6), 10)
        .await
        .unwrap();
    assert_eq!((seqs(&page), page.has_more), ((1..=5).collect(), false));
    let page = phone
        .history(PRIVATE, "alice", HistoryStart::AfterSeq(20), 0)
        .await
        .unwrap();
    assert_eq!((seqs(&page), page.has_more), ((21..=25).collect(), false));
    // By time: exactly the messages sent after it, however many share a millisecond.
    let t = sent[12].sent_time;
    let page = phone
        .history(PRIVATE, "alice", HistoryStart::AfterTime(t), 100)
        .await
        .unwrap();
    let expected: Vec<u64> = sent
        .iter()
        .filter(|s| s.sent_time > t)
        .map(|s| s.seq)
        .collect();
    assert_eq!(seqs(&page), expected);

    // Deleted on the phone: gone from Bob's history on every device, not from Alice's.
    phone
        .delete_messages(PRIVATE, "alice", &[3, 25])
        .await
        .unwrap();
    let deleted = loop {
        match tokio::time::timeout(WAIT, laptop_events.recv()).await {
            Ok(Some(tidings_client::Event::MessagesDeleted(d))) => break d,
            Ok(Some(_)) => continue,
            other => panic!("no deletion event: {other:?}"),
        }
    };
    assert_eq!(
        (deleted.target_id.as_str(), deleted.seqs.clone()),
        ("alice", vec![3, 25])
    );
    let all = laptop
        .history(PRIVATE, "alice", HistoryStart::AfterSeq(0), 100)
        .await
        .unwrap();
    assert_eq!(seqs(&all), (1..=24).filter(|s| *s != 3).collect::<Vec<_>>());
    let theirs = alice
        .history(PRIVATE, "bob", HistoryStart::AfterSeq(0), 100)
        .await
        .unwrap();
    assert_eq!(theirs.messages.len(), 25);
    let c = laptop
        .conversation(PRIVATE, "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        c.latest.unwrap().seq,
        24,
        "the newest message Bob still has"
    );

    // Cleared on the laptop up to what was sent by message 10's time.
    let cleared = laptop
        .update_conversation(
            ConversationUpdate::private("alice").clear_history_until(sent[9].sent_time),
        )
        .await
        .unwrap();
    let upto = sent
        .iter()
        .filter(|s| s.sent_time <= sent[9].sent_time)
        .map(|s| s.seq)
        .max();
    assert_eq!(Some(cleared.cleared_seq), upto);
    let rest = phone
        .history(PRIVATE, "alice", HistoryStart::AfterSeq(0), 100)
        .await
        .unwrap();
    assert_eq!(rest.messages[0].seq, cleared.cleared_seq + 1);
    assert_eq!(
        alice
            .history(PRIVATE, "bob", HistoryStart::AfterSeq(0), 100)
            .await
            .unwrap()
            .messages
            .len(),
        25
    );

    // Bad requests.
    assert_eq!(
        refused_code(
            phone
                .history(PRIVATE, "alice", HistoryStart::Newest, 101)
                .await
        ),
        Code::InvalidQuery.as_u32()
    );
    assert_eq!(
        refused_code(phone.delete_messages(PRIVATE, "alice", &[]).await),
        Code::InvalidQuery.as_u32()
    );
    assert_eq!(
        refused_code(phone.delete_messages(PRIVATE, "alice", &[0]).await),
        Code::InvalidQuery.as_u32()
    );
}

async fn next_receipt(events: &mut tidings_client::Events) -> tidings_client::ReadReceipt {
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(tidings_client::Event::ReadReceipt(r))) => return r,
            Ok(Some(_)) => continue,
            other => panic!("no read receipt: {other:?}"),
        }
    }
}

#[tokio::test]
async fn reading_sends_the_other_user_a_receipt_unless_silent() {
    let server = TestServer::start().await;
    let (alice, mut alice_events) = server.client("alice", "phone").await;
    let (bob, _b) = server.client("bob", "phone").await;
    for i in 0..3 {
        alice
            .send(Outgoing::text("bob", &format!("m{i}")))
            .await
            .unwrap();
    }
    bob.update_conversation(
        ConversationUpdate::private("alice")
            .read_up_to(1)
            .silently(),
    )
    .await
    .unwrap();
    bob.update_conversation(ConversationUpdate::private("alice").read_up_to(2))
        .await
        .unwrap();
    // Events come in order: the first receipt is the second read, so the silent one sent none.
    let r = next_receipt(&mut alice_events).await;
    assert_eq!((r.target_id.as_str(), r.read_seq), ("bob", 2));
    // A removal reads everything; reading nothing new sends nothing.
    bob.update_conversation(ConversationUpdate::private("alice").remove())
        .await
        .unwrap();
    bob.update_conversation(ConversationUpdate::private("alice").read_up_to(2))
        .await
        .unwrap();
    bob.update_conversation(ConversationUpdate::private("alice").pinned(true))
        .await
        .unwrap();
    assert_eq!(next_receipt(&mut alice_events).await.read_seq, 3);

    // A device that was offline gets the receipts by sync, and nothing more.
    let (laptop, mut laptop_events) = server.client("alice", "laptop").await;
    assert_eq!(next_receipt(&mut laptop_events).await.read_seq, 2);
    assert_eq!(next_receipt(&mut laptop_events).await.read_seq, 3);
    alice.send(Outgoing::text("bob", "after")).await.unwrap();
    loop {
        match tokio::time::timeout(WAIT, laptop_events.recv()).await {
            Ok(Some(tidings_client::Event::Message(m))) if m.content.contains("after") => break,
            Ok(Some(tidings_client::Event::ReadReceipt(r))) => panic!("an extra receipt: {r:?}"),
            Ok(Some(_)) => continue,
            other => panic!("no message: {other:?}"),
        }
    }
    // The conversation itself says how far bob has read, as his receipts told: a page loaded
    // afresh shows read ticks without having seen the receipts.
    let c = laptop.conversation(PRIVATE, "bob").await.unwrap().unwrap();
    assert_eq!(c.peer_read_seq, 3);
    let page = laptop.conversations(&[], 0, None).await.unwrap();
    assert_eq!(page.conversations[0].peer_read_seq, 3);
    assert_eq!(
        bob.conversation(PRIVATE, "alice")
            .await
            .unwrap()
            .unwrap()
            .peer_read_seq,
        0,
        "alice read nothing"
    );
}

#[tokio::test]
async fn the_list_shows_the_newest_message_a_person_sees() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, _b) = server.client("bob", "phone").await;
    let (carol, _c) = server.client("carol", "phone").await;
    let older = alice.send(Outgoing::text("bob", "older")).await.unwrap();
    let newest = alice.send(Outgoing::text("bob", "newest")).await.unwrap();
    carol
        .send(Outgoing::text("bob", "from carol"))
        .await
        .unwrap();
    let list = |c: &tidings_client::Client| {
        let c = c.clone();
        async move {
            let page = c.conversations(&[], 0, None).await.unwrap();
            page.conversations
                .into_iter()
                .map(|c| {
                    let m = c.latest.unwrap();
                    (c.target_id, m.seq, m.content, m.recalled)
                })
                .collect::<Vec<_>>()
        }
    };
    let before = list(&bob).await;
    assert_eq!(before[0].0, "carol");
    assert_eq!(before[1].1, newest.seq);
    // A reaction and an edit to the older message neither replace the preview nor move the
    // conversation up.
    bob.react(PRIVATE, "alice", older.seq, "👍", false)
        .await
        .unwrap();
    alice
        .edit(PRIVATE, "bob", older.seq, r#"{"text":"older!"}"#)
        .await
        .unwrap();
    assert_eq!(list(&bob).await, before);
    assert_eq!(
        alice
            .conversation(PRIVATE, "bob")
            .await
            .unwrap()
            .unwrap()
            .latest
            .unwrap()
            .seq,
        newest.seq
    );
    // An edit of the newest message shows in it.
    alice
        .edit(PRIVATE, "bob", newest.seq, r#"{"text":"newest!"}"#)
        .await
        .unwrap();
    let after = list(&bob).await;
    assert_eq!(after[1].2, r#"{"text":"newest!"}"#);
    // A recall of the newest message: it stays the preview, recalled.
    alice.recall(PRIVATE, "bob", newest.seq).await.unwrap();
    let after = list(&bob).await;
    assert_eq!(
        (after[1].0.as_str(), after[1].1, after[1].3),
        ("alice", newest.seq, true)
    );
}

#[tokio::test]
async fn users_read_each_others_names_and_portraits() {
    let server = TestServer::start().await;
    api(
        &server,
        "PUT",
        "/api/v1/users/ann",
        serde_json::json!({ "name": "Ann", "portrait": "https://x/ann.png", "extra": {"secret": 1} }),
    )
    .await;
    let (bob, _b) = server.client("bob", "phone").await;
    let users = bob.users(&["ann", "nobody", "ann"]).await.unwrap();
    let got: Vec<_> = users
        .iter()
        .map(|u| (u.user_id.as_str(), u.name.as_str(), u.portrait.as_str()))
        .collect();
    assert_eq!(
        got,
        [("ann", "Ann", "https://x/ann.png"), ("nobody", "", "")],
        "each once, in the order asked; an unknown user has no profile"
    );
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        refused_code(bob.users(&many).await),
        Code::InvalidQuery.as_u32()
    );
    assert_eq!(
        refused_code(bob.users(&[]).await),
        Code::InvalidQuery.as_u32()
    );
    assert_eq!(
        refused_code(bob.users(&["not an id"]).await),
        Code::InvalidTarget.as_u32()
    );
    assert_eq!(bob.users(&many[..100]).await.unwrap().len(), 100);
}

#[tokio::test]
async fn a_user_sending_faster_than_the_limit_is_refused_over_all_devices() {
    let server = TestServer::start_with(|c| {
        c.send_rate = 1;
        c.send_burst = 3;
    })
    .await;
    let (phone, _p) = server.client("alice", "phone").await;
    let (laptop, _l) = server.client("alice", "laptop").await;
    // The burst is shared by the user's devices.
    let mut sent = Vec::new();
    for (i, c) in [&phone, &laptop, &phone].into_iter().enumerate() {
        sent.push(
            c.send(Outgoing::text("bob", &format!("m{i}")))
                .await
                .unwrap(),
        );
    }
    let refused = laptop.send(Outgoing::text("bob", "one too many")).await;
    assert_eq!(refused_code(refused), Code::SendTooFast.as_u32());
    // A resend of a message already stored (its PUBACK was lost) still gets its first answer.
    let resend = Outgoing {
        client_msg_id: Some(sent[1].client_msg_id.clone()),
        ..Outgoing::text("bob", "m1")
    };
    assert_eq!(laptop.send(resend).await.unwrap().uid, sent[1].uid);
    // Connecting again does not start a fresh allowance.
    phone.close().await;
    laptop.close().await;
    let (again, _g) = server.client("alice", "tablet").await;
    let refused = again.send(Outgoing::text("bob", "still too many")).await;
    assert_eq!(refused_code(refused), Code::SendTooFast.as_u32());
    // Nothing refused was stored; another user is not affected.
    let (bob, _b) = server.client("bob", "phone").await;
    let history = bob
        .history(PRIVATE, "alice", HistoryStart::Newest, 100)
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 3);
    bob.send(Outgoing::text("alice", "hi")).await.unwrap();
    // The allowance comes back at the configured rate. Not a wait for a condition: the 1-second
    // window is wall-clock time, and it must pass.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    again.send(Outgoing::text("bob", "later")).await.unwrap();
}

#[tokio::test]
async fn a_blocked_sender_is_refused_until_unblocked() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, _b) = server.client("bob", "phone").await;
    alice.send(Outgoing::text("bob", "before")).await.unwrap();
    bob.block("alice").await.unwrap();
    bob.block("alice").await.unwrap();
    bob.block("carol").await.unwrap();
    assert_eq!(bob.blocklist().await.unwrap(), ["alice", "carol"]);
    assert!(bob.is_blocked("alice").await.unwrap());
    assert!(
        !alice.is_blocked("bob").await.unwrap(),
        "blocking is one way"
    );

    let refused = alice.send(Outgoing::text("bob", "blocked")).await;
    assert_eq!(refused_code(refused), Code::RejectedByBlacklist.as_u32());
    // Nor can she react to (or otherwise change) what is in their conversation.
    let reacted = alice.react(PRIVATE, "bob", 1, "👍", false).await;
    assert_eq!(refused_code(reacted), Code::RejectedByBlacklist.as_u32());
    // Blocking is one way: Bob can still write to Alice.
    bob.send(Outgoing::text("alice", "one way")).await.unwrap();
    let history = bob
        .history(PRIVATE, "alice", HistoryStart::Newest, 100)
        .await
        .unwrap();
    let texts: Vec<_> = history
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(texts, [r#"{"text":"before"}"#, r#"{"text":"one way"}"#]);

    bob.unblock("alice").await.unwrap();
    assert_eq!(bob.blocklist().await.unwrap(), ["carol"]);
    alice.send(Outgoing::text("bob", "after")).await.unwrap();

    assert_eq!(
        refused_code(bob.block("bob").await),
        Code::InvalidTarget.as_u32()
    );
    assert_eq!(
        refused_code(bob.block("no spaces").await),
        Code::InvalidTarget.as_u32()
    );
}

#[tokio::test]
async fn typing_reaches_connected_devices_only_and_is_never_stored() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (_phone, mut phone_events) = server.client("bob", "phone").await;
    let (_laptop, mut laptop_events) = server.client("bob", "laptop").await;
    alice.typing("bob");
    for events in [&mut phone_events, &mut laptop_events] {
        let m = loop {
            match tokio::time::timeout(WAIT, events.recv()).await {
                Ok(Some(tidings_client::Event::Transient(m))) => break m,
                Ok(Some(_)) => continue,
                other => panic!("no typing status: {other:?}"),
            }
        };
        assert_eq!(
            (
                m.msg_type.as_str(),
                m.sender_id.as_str(),
                m.target_id.as_str()
            ),
            ("typing", "alice", "alice")
        );
        assert_eq!((m.seq, m.inbox_seq), (0, 0));
    }
    // Nothing stored: no history, nothing unread, nothing for a device that connects later.
    alice
        .send(Outgoing::text("bob", "a message"))
        .await
        .unwrap();
    let (bob, mut later) = server.client("bob", "tablet").await;
    assert_eq!(
        next_message(&mut later).await.content,
        r#"{"text":"a message"}"#
    );
    let history = bob
        .history(PRIVATE, "alice", HistoryStart::Newest, 100)
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 1);
    assert_eq!(bob.unread(&[]).await.unwrap(), 1);
}

fn status(packet_id: u32, to: &str) -> tidings_proto::v1::Frame {
    use tidings_proto::v1::{self, frame::Body};
    let mut frame = publish(packet_id, "", to, r#"{"typingContentType":"text"}"#);
    if let Some(Body::Publish(v1::Publish {
        body: Some(v1::publish::Body::Send(s)),
        ..
    })) = &mut frame.body
    {
        s.msg_type = "typing".into();
        s.transient = true;
    }
    frame.qos = 0;
    frame
}

/// The next frame's PUBACK code, or None if the next frame is the PINGRESP sent after `ping`.
async fn puback_before_pong(raw: &mut Raw) -> Option<u32> {
    use tidings_proto::v1::{self, frame::Body};
    raw.send(tidings_proto::codec::frame(Body::Pingreq(v1::PingReq {})))
        .await;
    match raw.recv().await {
        Got::Frame(v1::Frame {
            body: Some(Body::Puback(p)),
            ..
        }) => Some(p.code),
        Got::Frame(v1::Frame {
            body: Some(Body::Pingresp(_)),
            ..
        }) => None,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn status_messages_are_answered_only_when_refused() {
    let server = TestServer::start().await;
    let (bob, _b) = server.client("bob", "phone").await;
    let mut raw = Raw::connected(&server, "alice", tidings_client::Encoding::Json).await;
    raw.send(status(1, "bob")).await;
    assert_eq!(
        puback_before_pong(&mut raw).await,
        None,
        "accepted: no answer"
    );
    raw.send(status(2, "not valid")).await;
    assert_eq!(
        puback_before_pong(&mut raw).await,
        Some(Code::InvalidTarget.as_u32())
    );
    let _pong = raw.recv().await;
    bob.block("alice").await.unwrap();
    raw.send(status(3, "bob")).await;
    assert_eq!(
        puback_before_pong(&mut raw).await,
        Some(Code::RejectedByBlacklist.as_u32())
    );
    let _pong = raw.recv().await;
    // More than the burst at once: the rest are refused as too fast.
    for id in 10..40 {
        raw.send(status(id, "carol")).await;
    }
    let mut codes = Vec::new();
    while codes.len() < 10 {
        match raw.recv().await {
            Got::Frame(tidings_proto::v1::Frame {
                body: Some(tidings_proto::v1::frame::Body::Puback(p)),
                ..
            }) => codes.push(p.code),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        codes.iter().all(|c| *c == Code::SendTooFast.as_u32()),
        "{codes:?}"
    );
}

#[tokio::test]
async fn recall_edit_and_reactions_reach_online_and_offline_devices_in_their_final_state() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    let first = alice.send(Outgoing::text("bob", "hello")).await.unwrap();
    let second = alice.send(Outgoing::text("bob", "oops")).await.unwrap();
    for _ in 0..2 {
        next_message(&mut bob_events).await;
    }
    assert_eq!(bob.unread(&[]).await.unwrap(), 2);

    let edited = alice
        .edit(PRIVATE, "bob", first.seq, r#"{"text":"hello!"}"#)
        .await
        .unwrap();
    assert!(edited.edited && edited.content == r#"{"text":"hello!"}"#);
    let reacted = bob
        .react(PRIVATE, "alice", first.seq, "👍", false)
        .await
        .unwrap();
    assert_eq!(reacted.reactions.len(), 1);
    assert_eq!(reacted.reactions[0].user_ids, ["bob"]);
    let recalled = alice.recall(PRIVATE, "bob", second.seq).await.unwrap();
    assert!(recalled.recalled && recalled.content == "{}");
    assert_eq!(
        bob.unread(&[]).await.unwrap(),
        1,
        "a recalled message is not unread"
    );

    // Online: each change arrives as a new message of the conversation.
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let m = next_message(&mut bob_events).await;
        kinds.push(m.msg_type);
    }
    assert_eq!(
        kinds,
        ["tidings:edit", "tidings:reaction", "tidings:recall"]
    );

    // Offline: a new device syncs the messages in their final state, then the events.
    let (_tablet, mut tablet_events) = server.client("bob", "tablet").await;
    let m1 = next_message(&mut tablet_events).await;
    assert!(m1.edited && m1.reactions.len() == 1 && m1.content == r#"{"text":"hello!"}"#);
    assert!(next_message(&mut tablet_events).await.recalled);
    let history = bob
        .history(PRIVATE, "alice", HistoryStart::AfterSeq(0), 10)
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 5);
    assert!(history.messages[0].edited && history.messages[1].recalled);

    // Who may do what.
    assert_eq!(
        refused_code(bob.recall(PRIVATE, "alice", first.seq).await),
        Code::NotMessageSender.as_u32()
    );
    assert_eq!(
        refused_code(
            bob.edit(PRIVATE, "alice", first.seq, r#"{"text":"x"}"#)
                .await
        ),
        Code::NotMessageSender.as_u32()
    );
    assert_eq!(
        refused_code(
            alice
                .edit(PRIVATE, "bob", second.seq, r#"{"text":"x"}"#)
                .await
        ),
        Code::MessageRecalled.as_u32()
    );
    assert_eq!(
        refused_code(
            alice
                .edit(PRIVATE, "bob", first.seq, r#"{"no":"text"}"#)
                .await
        ),
        Code::ContentInvalid.as_u32(),
        "edited content follows the message type's rules"
    );
    assert_eq!(
        refused_code(alice.recall(PRIVATE, "bob", 99).await),
        Code::MessageNotFound.as_u32()
    );
    assert_eq!(
        refused_code(bob.react(PRIVATE, "alice", first.seq, "", false).await),
        Code::InvalidQuery.as_u32()
    );
    let removed = bob
        .react(PRIVATE, "alice", first.seq, "👍", true)
        .await
        .unwrap();
    assert!(removed.reactions.is_empty());
}

#[tokio::test]
async fn recalling_is_refused_after_the_window() {
    let server =
        TestServer::start_with(|c| c.recall_window = std::time::Duration::from_secs(1)).await;
    let (alice, _a) = server.client("alice", "phone").await;
    let sent = alice.send(Outgoing::text("bob", "too late")).await.unwrap();
    // Not a wait for a condition: the recall window is wall-clock time, and it must pass.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        refused_code(alice.recall(PRIVATE, "bob", sent.seq).await),
        Code::RecallWindowPassed.as_u32()
    );
}

#[tokio::test]
async fn search_finds_cjk_and_latin_substrings_in_the_users_own_messages() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (carol, _c) = server.client("carol", "phone").await;
    let (bob, _b) = server.client("bob", "phone").await;
    alice
        .send(Outgoing::text("bob", "明天一起吃饭吗？"))
        .await
        .unwrap();
    alice
        .send(Outgoing::text("bob", "Lunch tomorrow?"))
        .await
        .unwrap();
    carol.send(Outgoing::text("bob", "吃饭了")).await.unwrap();
    carol
        .send(Outgoing::text("dave", "吃饭 with Dave"))
        .await
        .unwrap();
    let texts = |r: &tidings_client::SearchResults| {
        r.messages
            .iter()
            .map(|m| m.content.clone())
            .collect::<Vec<_>>()
    };
    let found = bob.search("吃饭", None, 0, None).await.unwrap();
    assert_eq!(
        texts(&found),
        [r#"{"text":"吃饭了"}"#, r#"{"text":"明天一起吃饭吗？"}"#],
        "Bob's messages only, newest first"
    );
    let found = bob
        .search("一起吃", Some((PRIVATE, "alice")), 0, None)
        .await
        .unwrap();
    assert_eq!(found.messages.len(), 1);
    assert_eq!(found.messages[0].target_id, "alice");
    let found = bob.search("TOMORROW", None, 0, None).await.unwrap();
    assert_eq!(texts(&found), [r#"{"text":"Lunch tomorrow?"}"#]);
    // Pages.
    let first = bob.search("吃饭", None, 1, None).await.unwrap();
    let token = first.next_page_token.expect("a second page");
    let second = bob.search("吃饭", None, 1, Some(&token)).await.unwrap();
    assert_eq!(texts(&second), [r#"{"text":"明天一起吃饭吗？"}"#]);
    assert_eq!(second.next_page_token, None);
    // Edits are found by their new text.
    let lunch = alice.search("Lunch", None, 0, None).await.unwrap().messages[0].seq;
    alice
        .edit(PRIVATE, "bob", lunch, r#"{"text":"Dinner tonight?"}"#)
        .await
        .unwrap();
    assert!(
        bob.search("Lunch", None, 0, None)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    assert_eq!(
        bob.search("dinner", None, 0, None)
            .await
            .unwrap()
            .messages
            .len(),
        1
    );
    // Bad queries.
    assert_eq!(
        refused_code(bob.search("", None, 0, None).await),
        Code::InvalidQuery.as_u32()
    );
    assert_eq!(
        refused_code(bob.search("x", None, 0, Some("nope")).await),
        Code::InvalidQuery.as_u32()
    );
}

#[tokio::test]
async fn with_search_off_searching_is_refused() {
    let server = TestServer::start_with(|c| c.search = false).await;
    let (alice, _a) = server.client("alice", "phone").await;
    alice
        .send(Outgoing::text("bob", "findable?"))
        .await
        .unwrap();
    match alice.search("findable", None, 0, None).await {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, Code::InvalidQuery.as_u32());
            assert!(message.contains("search is turned off"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn next_presence(events: &mut tidings_client::Events) -> tidings_client::Presence {
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(tidings_client::Event::Presence(p))) => return p,
            Ok(Some(_)) => continue,
            other => panic!("no presence event: {other:?}"),
        }
    }
}

#[tokio::test]
async fn watched_users_going_online_and_offline_are_reported() {
    let server = TestServer::start().await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    let now = bob.subscribe_presence(&["alice", "carol"]).await.unwrap();
    let seen: Vec<_> = now
        .iter()
        .map(|p| (p.user_id.as_str(), p.online, p.last_seen))
        .collect();
    assert_eq!(seen, [("alice", false, 0), ("carol", false, 0)]);

    let (phone, _p) = server.client("alice", "phone").await;
    let p = next_presence(&mut bob_events).await;
    assert_eq!((p.user_id.as_str(), p.online), ("alice", true));
    // A second device changes nothing; the last one leaving does.
    let (laptop, _l) = server.client("alice", "laptop").await;
    phone.close().await;
    laptop.close().await;
    let p = next_presence(&mut bob_events).await;
    assert_eq!((p.user_id.as_str(), p.online), ("alice", false));
    assert!(p.last_seen > 0);
    eventually("alice's last-seen time is stored", || async {
        bob.presence(&["alice"]).await.unwrap()[0].last_seen > 0
    })
    .await;

    // After a reconnect the SDK watches again.
    bob.drop_connection().await;
    eventually("bob is back", || async {
        bob.presence(&["bob"]).await.is_ok()
    })
    .await;
    let (_carol, _c) = server.client("carol", "phone").await;
    let p = next_presence(&mut bob_events).await;
    assert_eq!((p.user_id.as_str(), p.online), ("carol", true));
    assert!(bob.presence(&["carol"]).await.unwrap()[0].online);

    let many: Vec<String> = (0..201).map(|i| format!("u{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        refused_code(bob.presence(&many).await),
        Code::InvalidQuery.as_u32()
    );
    assert_eq!(
        refused_code(bob.presence(&[]).await),
        Code::InvalidQuery.as_u32()
    );
    assert_eq!(
        refused_code(bob.presence(&["no way"]).await),
        Code::InvalidTarget.as_u32()
    );
}

#[tokio::test]
async fn quiet_hours_set_on_one_device_reach_the_others() {
    let server = TestServer::start().await;
    let (phone, _p) = server.client("bob", "phone").await;
    let (laptop, mut laptop_events) = server.client("bob", "laptop").await;
    assert_eq!(laptop.quiet_hours().await.unwrap(), QuietHours::default());
    let night = QuietHours {
        start_minute: 22 * 60,
        minutes: 8 * 60,
    };
    assert_eq!(phone.set_quiet_hours(night).await.unwrap(), night);
    let got = loop {
        match tokio::time::timeout(WAIT, laptop_events.recv()).await {
            Ok(Some(tidings_client::Event::QuietHours { hours, .. })) => break hours,
            Ok(Some(_)) => continue,
            other => panic!("no quiet hours event: {other:?}"),
        }
    };
    assert_eq!(got, night);
    assert_eq!(laptop.quiet_hours().await.unwrap(), night);
    let bad = QuietHours {
        start_minute: 1440,
        minutes: 10,
    };
    assert_eq!(
        refused_code(phone.set_quiet_hours(bad).await),
        Code::InvalidQuery.as_u32()
    );
}

#[tokio::test]
async fn last_seen_of_users_online_at_shutdown_survives_a_restart() {
    let mut server = TestServer::start().await;
    let (_alice, _a) = server.client("alice", "phone").await;
    server.shutdown().await;
    let mut config = tidings_server::Config::with_data_dir(server.dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let restarted = TestServer {
        running: Some(tidings_server::start(&config).await.unwrap()),
        dir: tempfile::tempdir().unwrap(),
    };
    let (bob, _b) = restarted.client("bob", "phone").await;
    let p = bob.presence(&["alice"]).await.unwrap();
    assert!(!p[0].online);
    assert!(p[0].last_seen > 0, "recorded at shutdown");
}

#[tokio::test]
async fn large_answers_are_cut_to_fit_the_connection_and_say_there_is_more() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    // 40 messages of 15 KB: 600 KB, more than a quarter of the 1 MiB outbound queue.
    let big = "字".repeat(5000);
    for _ in 0..40 {
        alice.send(Outgoing::text("bob", &big)).await.unwrap();
    }
    let page = bob
        .history(PRIVATE, "alice", HistoryStart::Newest, 100)
        .await
        .unwrap();
    assert!(page.has_more && !page.messages.is_empty() && page.messages.len() < 40);
    assert_eq!(page.messages.last().unwrap().seq, 40, "the newest are kept");
    let older = bob
        .history(
            PRIVATE,
            "alice",
            HistoryStart::BeforeSeq(page.messages[0].seq),
            100,
        )
        .await
        .unwrap();
    assert_eq!(older.messages.last().unwrap().seq + 1, page.messages[0].seq);
    let found = bob.search("字字字", None, 100, None).await.unwrap();
    assert!(found.next_page_token.is_some() && found.messages.len() < 40);
    // The connection is still up: nothing was cut off as a slow consumer.
    assert_eq!(bob.unread(&[]).await.unwrap(), 40);
    while let Ok(e) = bob_events.try_recv() {
        assert!(
            !matches!(
                e,
                tidings_client::Event::Status(tidings_client::Status::Disconnected { .. })
            ),
            "{e:?}"
        );
    }
}
