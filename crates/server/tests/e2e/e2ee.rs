//! End-to-end encryption (docs/e2ee.md): the MLS key package directory, with key packages that
//! openmls makes for each device.

use tidings_client::{Client, ClientError, Decrypted, E2ee, Events, Received};
use tidings_mls::device::Device;
use tidings_proto::Code;

use crate::util::*;

fn refused_with(result: Result<impl std::fmt::Debug, ClientError>, code: Code) -> String {
    match result {
        Err(ClientError::Refused { code: got, message }) if got == code.as_u32() => message,
        other => panic!("expected code {}, got {other:?}", code.as_u32()),
    }
}

async fn publish(client: &Client, device: &Device, n: usize) -> u64 {
    let mut packages: Vec<Vec<u8>> = (0..n).map(|_| device.key_package(false).unwrap()).collect();
    packages.push(device.key_package(true).unwrap());
    client.publish_key_packages(packages, false).await.unwrap()
}

#[tokio::test]
async fn key_packages_are_checked_and_each_is_handed_out_once_but_the_last_resort() {
    let server = TestServer::start().await;
    let (alice_phone, _e1) = server.client("alice", "phone").await;
    let (alice_laptop, _e2) = server.client("alice", "laptop").await;
    let (bob, _e3) = server.client("bob", "desk").await;
    let phone = Device::create("alice", "phone").unwrap();
    let laptop = Device::create("alice", "laptop").unwrap();

    assert_eq!(publish(&alice_phone, &phone, 3).await, 3);
    assert_eq!(publish(&alice_laptop, &laptop, 1).await, 1);
    // An empty upload asks how many are left.
    assert_eq!(
        alice_phone
            .publish_key_packages(vec![], false)
            .await
            .unwrap(),
        3
    );

    let mut handed = std::collections::BTreeSet::new();
    for round in 0..6 {
        let claimed = bob.claim_key_packages(&["alice"]).await.unwrap();
        let devices: Vec<_> = claimed.iter().map(|k| k.device_id.as_str()).collect();
        assert_eq!(devices, ["laptop", "phone"], "round {round}");
        for k in &claimed {
            assert_eq!(k.user_id, "alice");
            let info = tidings_mls::ds::check_key_package(
                &k.key_package,
                "alice",
                &k.device_id,
                tidings_mls::ds::now_secs(),
            )
            .expect("a claimed key package is the device's own");
            assert_eq!(info.last_resort, k.last_resort);
            if !k.last_resort {
                assert!(
                    handed.insert(info.reference),
                    "a key package was handed out twice"
                );
            }
        }
        let expect_last_resort = [round >= 1, round >= 3];
        assert_eq!(
            claimed.iter().map(|k| k.last_resort).collect::<Vec<_>>(),
            expect_last_resort,
            "round {round}"
        );
    }
    assert_eq!(handed.len(), 4);
    assert_eq!(
        alice_phone
            .publish_key_packages(vec![], false)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn a_key_package_must_name_the_uploading_user_and_device() {
    let server = TestServer::start().await;
    let (alice, _e) = server.client("alice", "phone").await;
    let other_device = Device::create("alice", "laptop").unwrap();
    let other_user = Device::create("mallory", "phone").unwrap();
    let own = Device::create("alice", "phone").unwrap();

    let text = refused_with(
        alice
            .publish_key_packages(vec![other_device.key_package(false).unwrap()], false)
            .await,
        Code::InvalidKeyPackage,
    );
    assert!(text.contains("alice:laptop"), "{text}");
    let text = refused_with(
        alice
            .publish_key_packages(
                vec![
                    own.key_package(false).unwrap(),
                    other_user.key_package(false).unwrap(),
                ],
                false,
            )
            .await,
        Code::InvalidKeyPackage,
    );
    assert!(
        text.contains("key package 1") && text.contains("mallory:phone"),
        "{text}"
    );
    let mut tampered = own.key_package(false).unwrap();
    let at = tampered.len() - 5;
    tampered[at] ^= 0x40;
    refused_with(
        alice.publish_key_packages(vec![tampered], false).await,
        Code::InvalidKeyPackage,
    );
    refused_with(
        alice
            .publish_key_packages(vec![b"not mls".to_vec()], false)
            .await,
        Code::InvalidKeyPackage,
    );
    // Nothing of a refused upload was stored.
    assert_eq!(alice.publish_key_packages(vec![], false).await.unwrap(), 0);
    let (bob, _e) = server.client("bob", "desk").await;
    assert!(bob.claim_key_packages(&["alice"]).await.unwrap().is_empty());
    // A connection without a device id has no key packages.
    let (anonymous, _e) = server.client("carol", "").await;
    let carol = Device::create("carol", "x").unwrap();
    let text = refused_with(
        anonymous
            .publish_key_packages(vec![carol.key_package(false).unwrap()], false)
            .await,
        Code::InvalidKeyPackage,
    );
    assert!(text.contains("device id"), "{text}");
}

#[tokio::test]
async fn claims_are_limited_and_skip_users_who_block_the_claimer() {
    let server = TestServer::start().await;
    let (alice, _e) = server.client("alice", "phone").await;
    let (bob, _e2) = server.client("bob", "desk").await;
    publish(&alice, &Device::create("alice", "phone").unwrap(), 2).await;
    alice.block("bob").await.unwrap();
    assert!(bob.claim_key_packages(&["alice"]).await.unwrap().is_empty());
    alice.unblock("bob").await.unwrap();
    assert_eq!(bob.claim_key_packages(&["alice"]).await.unwrap().len(), 1);
    refused_with(bob.claim_key_packages(&[]).await, Code::InvalidQuery);
    let eleven: Vec<String> = (0..11).map(|i| format!("u{i}")).collect();
    let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
    refused_with(bob.claim_key_packages(&eleven).await, Code::InvalidQuery);
    refused_with(
        bob.claim_key_packages(&["no:colon"]).await,
        Code::InvalidTarget,
    );
}

/// A device of a user with end-to-end encryption: its connection, events and MLS state.
struct Member {
    client: Client,
    events: Events,
    e2ee: E2ee,
    /// Where its MLS state lives.
    state: tempfile::TempDir,
}

impl Member {
    async fn join(server: &TestServer, user: &str, device: &str) -> Member {
        let state = tempfile::tempdir().unwrap();
        Member::join_with(server, user, device, state).await
    }

    async fn join_with(
        server: &TestServer,
        user: &str,
        device: &str,
        state: tempfile::TempDir,
    ) -> Member {
        let (client, events) = server.client(user, device).await;
        let e2ee = E2ee::open(&client, device, state.path()).unwrap();
        assert!(e2ee.publish().await.unwrap() >= tidings_client::KEY_PACKAGE_LOW);
        Member {
            client,
            events,
            e2ee,
            state,
        }
    }

    /// Processes messages as they come until one decrypts to `text` (from anyone).
    async fn read(&mut self, text: &str) -> Decrypted {
        loop {
            let m = next_message(&mut self.events).await;
            if let Received::Message(d) = self.e2ee.receive(&m).await.unwrap()
                && text_of(&d) == text
            {
                return d;
            }
        }
    }

    /// Processes messages as they come until the `marker` text; answers what each of the
    /// encrypted ones before it was.
    async fn read_until(&mut self, marker: &str) -> Vec<Received> {
        let mut seen = Vec::new();
        loop {
            let m = next_message(&mut self.events).await;
            let r = self.e2ee.receive(&m).await.unwrap();
            if let Received::Message(d) = &r
                && text_of(d) == marker
            {
                return seen;
            }
            seen.push(r);
        }
    }
}

/// The text of a decrypted text message.
fn text_of(d: &Decrypted) -> String {
    let content: serde_json::Value = serde_json::from_str(&d.content).unwrap();
    content["text"].as_str().unwrap_or_default().to_string()
}

fn texts(seen: &[Received]) -> Vec<String> {
    seen.iter()
        .filter_map(|r| match r {
            Received::Message(d) => Some(text_of(d)),
            _ => None,
        })
        .collect()
}

const PRIVATE: u32 = 1;
const GROUP: u32 = 3;

/// Whether `needle` is anywhere in `haystack`.
fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn devices_exchange_encrypted_messages_and_the_server_keeps_no_plaintext() {
    let server = TestServer::start().await;
    let mut alice = Member::join(&server, "alice", "phone").await;
    let mut desk = Member::join(&server, "bob", "desk").await;
    let mut laptop = Member::join(&server, "bob", "laptop").await;

    let sent = alice
        .e2ee
        .send_text(PRIVATE, "bob", "plaintext-one: meet at the pier")
        .await
        .unwrap();
    for bob in [&mut desk, &mut laptop] {
        let d = bob.read("plaintext-one: meet at the pier").await;
        assert_eq!(
            (d.uid.as_str(), d.sender_id.as_str()),
            (sent.uid.as_str(), "alice")
        );
        assert_eq!(d.sender_device, "phone");
    }
    desk.e2ee
        .send_text(PRIVATE, "alice", "plaintext-two: noted")
        .await
        .unwrap();
    assert_eq!(
        alice.read("plaintext-two: noted").await.sender_device,
        "desk"
    );
    // Bob's other device reads what his desk sent too.
    laptop.read("plaintext-two: noted").await;
    // Every device agrees on the group: the same epoch, the same members and safety numbers.
    let members = alice.e2ee.members(PRIVATE, "bob").await.unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(members, desk.e2ee.members(PRIVATE, "alice").await.unwrap());
    let mine = members.iter().find(|m| m.device_id == "phone").unwrap();
    assert_eq!(mine.safety_number, alice.e2ee.safety_number().await);
    assert_eq!(
        alice.e2ee.epoch(PRIVATE, "bob").await,
        laptop.e2ee.epoch(PRIVATE, "alice").await
    );
    // What the server stored is ciphertext: an mls message.
    let page = alice
        .client
        .history(PRIVATE, "bob", tidings_client::HistoryStart::Newest, 10)
        .await
        .unwrap();
    assert!(page.messages.iter().all(|m| m.msg_type == "mls"));
    // The server cannot search them; a plain message with the same word it finds.
    alice
        .client
        .send(tidings_client::Outgoing::text(
            "bob",
            "the pier, in the clear",
        ))
        .await
        .unwrap();
    let found = alice.client.search("pier", None, 10, None).await.unwrap();
    assert_eq!(found.messages.len(), 1);
    assert_eq!(found.messages[0].msg_type, "text");
    // The history export gives the ciphertext as stored.
    let (status, export) = api(
        &server,
        "GET",
        "/api/v1/history?conversationType=1&userId=alice&targetId=bob",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{export}");
    let exported = export["messages"].as_array().unwrap();
    assert_eq!(
        exported.iter().filter(|m| m["msgType"] == "mls").count(),
        page.messages.len()
    );
    assert!(
        exported
            .iter()
            .all(|m| m["msgType"] != "mls" || m["content"]["mls"].is_string())
    );

    // Neither the database file nor its WAL holds any plaintext.
    let db = server.dir.path().join(tidings_server::DB_FILE);
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    for file in [db, wal.into()] {
        let bytes = std::fs::read(&file).unwrap_or_default();
        for secret in [
            "plaintext-one",
            "meet at the pier",
            "plaintext-two",
            "noted",
        ] {
            assert!(
                !holds(&bytes, secret),
                "{} holds {secret:?}",
                file.display()
            );
        }
    }
}

#[tokio::test]
async fn a_member_added_later_reads_only_what_follows_and_a_removed_one_reads_nothing_more() {
    let server = TestServer::start().await;
    create_group(&server, "crew", "alice", &["alice", "bob"]).await;
    let mut alice = Member::join(&server, "alice", "phone").await;
    let mut bob = Member::join(&server, "bob", "desk").await;
    let mut carol = Member::join(&server, "carol", "tablet").await;
    alice
        .e2ee
        .send_text(GROUP, "crew", "before carol")
        .await
        .unwrap();
    bob.read("before carol").await;

    let (status, body) = add_group_members(&server, "crew", &["carol"]).await;
    assert_eq!(status, 200, "{body}");
    // Bob's next send adds Carol's device first (he saw the group change).
    bob.read_until_group_change().await;
    bob.e2ee
        .send_text(GROUP, "crew", "carol is in")
        .await
        .unwrap();
    let seen = carol.read_until("carol is in").await;
    assert!(
        seen.iter()
            .any(|r| matches!(r, Received::Joined { epoch: 2, .. })),
        "{seen:?}"
    );
    assert!(
        texts(&seen).is_empty(),
        "nothing from before her join: {seen:?}"
    );
    // What was sent before she joined stays unreadable to her, from the history too.
    let old = carol
        .client
        .history(GROUP, "crew", tidings_client::HistoryStart::Newest, 20)
        .await
        .unwrap();
    let first = old.messages.iter().find(|m| m.msg_type == "mls").unwrap();
    assert!(matches!(
        carol.e2ee.receive(first).await.unwrap(),
        Received::Nothing | Received::Unreadable { .. }
    ));
    alice.read("carol is in").await;

    // Carol leaves the group; Alice's next send removes her devices first.
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/groups/crew/members/remove",
        serde_json::json!({ "userIds": ["carol"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    alice.read_until_group_change().await;
    alice
        .e2ee
        .send_text(GROUP, "crew", "after carol")
        .await
        .unwrap();
    let after = bob.read("after carol").await;
    let members = bob.e2ee.members(GROUP, "crew").await.unwrap();
    assert!(members.iter().all(|m| m.user_id != "carol"), "{members:?}");
    // Carol's device is handed the ciphertext all the same, and cannot read it.
    let stored = bob
        .client
        .history(GROUP, "crew", tidings_client::HistoryStart::Newest, 1)
        .await
        .unwrap();
    let ciphertext = &stored.messages[0];
    assert_eq!(ciphertext.uid, after.uid);
    assert!(matches!(
        carol.e2ee.receive(ciphertext).await.unwrap(),
        Received::Unreadable { .. }
    ));
}

impl Member {
    /// Processes messages until a group notification (which it passes to the E2EE state).
    async fn read_until_group_change(&mut self) {
        loop {
            let m = next_message(&mut self.events).await;
            self.e2ee.receive(&m).await.unwrap();
            if m.msg_type == tidings_proto::GROUP_EVENT_TYPE {
                return;
            }
        }
    }
}

#[tokio::test]
async fn members_committing_in_the_same_epoch_end_in_one_epoch_with_every_message_readable() {
    let server = TestServer::start().await;
    let mut alice = Member::join(&server, "alice", "phone").await;
    let mut bob = Member::join(&server, "bob", "desk").await;
    alice.e2ee.send_text(PRIVATE, "bob", "hello").await.unwrap();
    bob.read("hello").await;
    let mut tablets = Vec::new();
    for round in 0..5 {
        // A new device of each user: both Alice and Bob add them on their next send, at once.
        tablets.push(Member::join(&server, "alice", &format!("tablet{round}")).await);
        tablets.push(Member::join(&server, "bob", &format!("tablet{round}")).await);
        alice.e2ee.refresh_devices(PRIVATE, "bob").await;
        bob.e2ee.refresh_devices(PRIVATE, "alice").await;
        let (to_bob, to_alice) = (format!("from alice {round}"), format!("from bob {round}"));
        let (a, b) = tokio::join!(
            alice.e2ee.send_text(PRIVATE, "bob", &to_bob),
            bob.e2ee.send_text(PRIVATE, "alice", &to_alice),
        );
        a.unwrap();
        b.unwrap();
        alice.read(&format!("from bob {round}")).await;
        bob.read(&format!("from alice {round}")).await;
        assert_eq!(
            alice.e2ee.epoch(PRIVATE, "bob").await,
            bob.e2ee.epoch(PRIVATE, "alice").await
        );
        if alice.e2ee.conflicts() + bob.e2ee.conflicts() > 0 {
            break;
        }
    }
    assert!(
        alice.e2ee.conflicts() + bob.e2ee.conflicts() > 0,
        "two commits for one epoch met at least once"
    );
    // Every device, the new ones too, ends in the same epoch with both of the last messages.
    let epoch = alice.e2ee.epoch(PRIVATE, "bob").await;
    alice.e2ee.send_text(PRIVATE, "bob", "last").await.unwrap();
    bob.read("last").await;
    let members = alice.e2ee.members(PRIVATE, "bob").await.unwrap();
    assert_eq!(members.len(), 2 + tablets.len());
    for tablet in &mut tablets {
        tablet.read("last").await;
        let peer = if tablet.client.user_id() == "alice" {
            "bob"
        } else {
            "alice"
        };
        assert_eq!(tablet.e2ee.epoch(PRIVATE, peer).await, epoch);
    }
}

#[tokio::test]
async fn key_state_survives_a_client_restart() {
    let server = TestServer::start().await;
    let mut alice = Member::join(&server, "alice", "phone").await;
    let bob = Member::join(&server, "bob", "desk").await;
    bob.e2ee.send_text(PRIVATE, "alice", "one").await.unwrap();
    alice.read("one").await;
    let number = bob.e2ee.safety_number().await;
    let epoch = bob.e2ee.epoch(PRIVATE, "alice").await;
    // Two processes never hold one device's state at once.
    assert!(matches!(
        E2ee::open(&bob.client, "desk", bob.state.path()),
        Err(tidings_client::E2eeError::Invalid(why)) if why.contains("in use")
    ));
    bob.client.close().await;
    let Member {
        state,
        e2ee,
        events,
        client,
    } = bob;
    // Its state file is free once the old one is gone.
    drop((e2ee, events, client));
    // The same device, a new process's worth of client: its state comes from the file.
    let mut bob = Member::join_with(&server, "bob", "desk", state).await;
    assert_eq!(bob.e2ee.safety_number().await, number);
    assert_eq!(bob.e2ee.epoch(PRIVATE, "alice").await, epoch);
    alice.e2ee.send_text(PRIVATE, "bob", "two").await.unwrap();
    bob.read("two").await;
    bob.e2ee.send_text(PRIVATE, "alice", "three").await.unwrap();
    alice.read("three").await;
    assert_eq!(
        bob.e2ee.epoch(PRIVATE, "alice").await,
        epoch,
        "no new group was made"
    );
}

#[tokio::test]
async fn the_server_refuses_mls_messages_it_cannot_order() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let device = Device::create("alice", "phone").unwrap();
    let send = |content: String| {
        let alice = alice.clone();
        async move {
            alice
                .send(tidings_client::Outgoing {
                    conversation_type: PRIVATE,
                    target_id: "bob".into(),
                    msg_type: "mls".into(),
                    content,
                    ..Default::default()
                })
                .await
        }
    };
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    refused_with(
        send(r#"{"mls":"not base64!"}"#.into()).await,
        Code::ContentInvalid,
    );
    refused_with(
        send(format!(r#"{{"mls":"{}","text":"leak"}}"#, b64(b"x"))).await,
        Code::ContentInvalid,
    );
    // A key package is not a group message.
    let kp = device.key_package(false).unwrap();
    refused_with(
        send(format!(r#"{{"mls":"{}"}}"#, b64(&kp))).await,
        Code::ContentInvalid,
    );
    // An application message for a group the conversation does not have.
    device.create_group(b"g").unwrap();
    let app = device.encrypt(b"g", b"{}").unwrap();
    refused_with(
        send(format!(r#"{{"mls":"{}"}}"#, b64(&app))).await,
        Code::NotThisGroup,
    );
    // A welcome rides only on a commit.
    refused_with(
        send(format!(
            r#"{{"mls":"{}","welcome":"{}"}}"#,
            b64(&app),
            b64(&app)
        ))
        .await,
        Code::ContentInvalid,
    );
    // The app server cannot write into an encrypted conversation.
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/messages",
        serde_json::json!({
            "fromUserId": "alice", "conversationType": 1, "targetId": "bob",
            "msgType": "mls", "content": {"mls": b64(&app)},
        }),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(Code::InvalidMessageType.as_u32() as u64)),
        "{body}"
    );
}

#[tokio::test]
async fn on_postgres_the_tables_hold_no_plaintext() {
    use tidings_store_postgres::testing::{TestDatabase, URL_VARIABLE, server_url};
    let Some(url) = server_url() else {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!(
                "SKIPPED on_postgres_the_tables_hold_no_plaintext: set {URL_VARIABLE} \
                 (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run it\n"
            )
            .as_bytes(),
        );
        return;
    };
    let db = TestDatabase::create(&url).await.unwrap();
    let store = tidings_server::StoreSetting::Postgres(db.url.clone());
    let server = TestServer::start_with(|c| c.store = store).await;
    create_group(&server, "pg-crew", "alice", &["alice", "bob"]).await;
    let mut alice = Member::join(&server, "alice", "phone").await;
    let mut bob = Member::join(&server, "bob", "desk").await;
    alice
        .e2ee
        .send_text(PRIVATE, "bob", "postgres-secret-one")
        .await
        .unwrap();
    bob.read("postgres-secret-one").await;
    bob.e2ee
        .send_text(GROUP, "pg-crew", "postgres-secret-two")
        .await
        .unwrap();
    alice.read("postgres-secret-two").await;

    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let tables = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
            &[],
        )
        .await
        .unwrap();
    assert!(tables.len() > 10);
    for t in tables {
        let table: String = t.get(0);
        let rows = client
            .query(&format!("SELECT t::text FROM \"{table}\" t"), &[])
            .await
            .unwrap();
        for row in rows {
            let text: String = row.get(0);
            for secret in ["postgres-secret", "secret-one", "secret-two"] {
                assert!(!text.contains(secret), "{table} holds {secret:?}: {text}");
            }
        }
    }
}

#[tokio::test]
async fn recalls_edits_and_reactions_travel_inside_the_encryption() {
    let server = TestServer::start().await;
    let mut alice = Member::join(&server, "alice", "phone").await;
    let mut bob = Member::join(&server, "bob", "desk").await;
    let sent = alice.e2ee.send_text(PRIVATE, "bob", "draft").await.unwrap();
    bob.read("draft").await;
    // The server's own edit and reaction would be in the clear: refused.
    refused_with(
        alice
            .client
            .edit(PRIVATE, "bob", sent.seq, r#"{"text":"x"}"#)
            .await,
        Code::InvalidMessageType,
    );
    refused_with(
        bob.client
            .react(PRIVATE, "alice", sent.seq, "👍", false)
            .await,
        Code::InvalidMessageType,
    );
    alice
        .e2ee
        .edit(PRIVATE, "bob", &sent.uid, r#"{"text":"final"}"#)
        .await
        .unwrap();
    bob.e2ee
        .react(PRIVATE, "alice", &sent.uid, "👍", false)
        .await
        .unwrap();
    alice.e2ee.recall(PRIVATE, "bob", &sent.uid).await.unwrap();
    alice
        .e2ee
        .send_text(PRIVATE, "bob", "marker")
        .await
        .unwrap();
    let seen = bob.read_until("marker").await;
    let inner: Vec<(String, serde_json::Value)> = seen
        .iter()
        .filter_map(|r| match r {
            Received::Message(d) => Some((
                d.msg_type.clone(),
                serde_json::from_str(&d.content).unwrap(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        inner,
        vec![
            (
                tidings_client::EDIT_TYPE.to_string(),
                serde_json::json!({"uid": sent.uid, "content": {"text": "final"}})
            ),
            (
                tidings_client::RECALL_TYPE.to_string(),
                serde_json::json!({"uid": sent.uid})
            ),
        ]
    );
    // Alice's device reads Bob's reaction.
    let reaction = loop {
        let m = next_message(&mut alice.events).await;
        if let Received::Message(d) = alice.e2ee.receive(&m).await.unwrap()
            && d.msg_type == tidings_client::REACTION_TYPE
        {
            break d;
        }
    };
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&reaction.content).unwrap(),
        serde_json::json!({"uid": sent.uid, "emoji": "👍", "remove": false})
    );
    // Only a message's sender recalls it: Bob's "recall" of Alice's message is not taken.
    bob.e2ee.recall(PRIVATE, "alice", &sent.uid).await.unwrap();
    bob.e2ee
        .send_text(PRIVATE, "alice", "marker 2")
        .await
        .unwrap();
    let seen = alice.read_until("marker 2").await;
    assert!(
        seen.iter()
            .any(|r| matches!(r, Received::Unreadable { reason, .. } if reason.contains("recall"))),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_device_added_long_ago_finds_its_welcome_before_it_first_sends() {
    let server = TestServer::start().await;
    let mut alice = Member::join(&server, "alice", "phone").await;
    let bob = Member::join(&server, "bob", "desk").await;
    bob.e2ee.send_text(PRIVATE, "alice", "hi").await.unwrap();
    alice.read("hi").await;
    // Bob's tablet publishes, and is added by Alice's next send; it reads nothing yet.
    let tablet = Member::join(&server, "bob", "tablet").await;
    alice.e2ee.refresh_devices(PRIVATE, "bob").await;
    alice
        .e2ee
        .send_text(PRIVATE, "bob", "tablet in")
        .await
        .unwrap();
    // More than a history page of messages after the Welcome.
    for i in 0..120 {
        alice
            .client
            .send(tidings_client::Outgoing::text("bob", &format!("plain {i}")))
            .await
            .unwrap();
    }
    // The tablet's first act is a send: it catches up from the conversation's first message,
    // finds the Welcome and joins, then encrypts.
    tablet
        .e2ee
        .send_text(PRIVATE, "alice", "from the tablet")
        .await
        .unwrap();
    assert_eq!(alice.read("from the tablet").await.sender_device, "tablet");
    // A device that no member has added cannot send into the group, and says why.
    let (phone2, _e) = server.client("bob", "phone2").await;
    let state = tempfile::tempdir().unwrap();
    let stranger = E2ee::open(&phone2, "phone2", state.path()).unwrap();
    assert!(matches!(
        stranger.send_text(PRIVATE, "alice", "let me in").await,
        Err(tidings_client::E2eeError::NotAdded)
    ));
}
