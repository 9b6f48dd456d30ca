//! The conformance suite: behaviour every [`Store`] backend must show. A backend's tests invoke
//! [`conformance_tests!`](crate::conformance_tests), which makes one test per case, each on a
//! fresh, empty store. Each check panics with a description on failure.

use crate::{
    Amend, AmendAction, AmendRefusal, AppendMessage, ConversationFilter, ConversationSettings,
    ConversationUpdate, GroupAction, GroupChange, GroupKind, GroupRefusal, HistoryFrom,
    HistoryQuery, Page, Participant, Permit, PushProvider, PushTokenRecord, SearchQuery, Store,
    WriteOp, WriteResult,
};

/// An append of a private message from `from` to `to`, for tests.
pub fn private_append(from: &str, to: &str, client_msg_id: &str, text: &str) -> AppendMessage {
    let (a, b) = if from <= to { (from, to) } else { (to, from) };
    let mut recipients = vec![from.to_string()];
    if to != from {
        recipients.push(to.to_string());
    }
    AppendMessage {
        uid: format!("uid-{from}-{client_msg_id}"),
        conversation_type: 1,
        conversation_id: format!("{a}|{b}"),
        sender: from.into(),
        target: to.into(),
        sent_time: 1_700_000_000_000,
        msg_type: "text".into(),
        content: format!(r#"{{"text":{text:?}}}"#),
        push_text: String::new(),
        client_msg_id: client_msg_id.into(),
        digest: format!("digest-{to}-{text}"),
        recipients,
        counted: true,
        participants: participants(from, to),
        blocking_recipient: None,
        search_text: text.into(),
        ..Default::default()
    }
}

/// Both sides of a private conversation (one side when a user writes to themself).
pub fn participants(from: &str, to: &str) -> Vec<Participant> {
    let mut p = vec![Participant {
        user: from.into(),
        target: to.into(),
    }];
    if from != to {
        p.push(Participant {
            user: to.into(),
            target: from.into(),
        });
    }
    p
}

/// A conversation update of `user`'s private chat with `target`, for tests: set what you need
/// on the result.
pub fn private_update(user: &str, target: &str, event_uid: &str) -> ConversationUpdate {
    let (a, b) = if user <= target {
        (user, target)
    } else {
        (target, user)
    };
    ConversationUpdate {
        user: user.into(),
        conversation_type: 1,
        target: target.into(),
        conversation_id: format!("{a}|{b}"),
        event: AppendMessage {
            uid: event_uid.into(),
            conversation_type: 0,
            conversation_id: format!("~{user}"),
            sender: String::new(),
            target: user.into(),
            sent_time: 1_700_000_000_000,
            msg_type: "tidings:conversation".into(),
            client_msg_id: event_uid.into(),
            recipients: vec![user.into()],
            ..Default::default()
        },
        ..Default::default()
    }
}

fn appended(r: &WriteResult) -> (&crate::StoredMessage, &[(String, u64)], bool) {
    match r {
        WriteResult::Appended {
            message,
            inbox,
            duplicate,
            ..
        } => (message, inbox, *duplicate),
        other => panic!("expected Appended, got {other:?}"),
    }
}

/// A fresh, empty store for one case of the suite, and whatever must live as long as it (a
/// temporary directory, a database made for the case).
pub trait Fixture {
    /// The store under test.
    fn store(&self) -> &dyn Store;

    /// Gives back what the fixture holds, once its case has passed and its store is closed.
    fn release(self) -> impl std::future::Future<Output = ()>;
}

/// Expands to one `#[tokio::test]` per case of the suite, so one failing case hides none of the
/// others. `$fresh` names an async function taking the case's name and returning
/// `Option<impl Fixture>`: a fresh, empty store, or `None` when the backend cannot run here (the
/// function says so on stderr) and the case passes without running. Each case runs on its own
/// store, closes it, and releases the fixture.
///
/// ```text
/// mod suite {
///     tidings_store::conformance_tests!(super::fresh);
/// }
/// ```
///
/// A new case is a `pub async fn(&dyn Store)` in [`conformance`](crate::conformance) and a name
/// in the list below.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::conformance_tests!(@cases $fresh;
            seqs_are_gapless_per_conversation_and_inbox,
            duplicates_return_the_first_message,
            conflicting_client_msg_id_is_refused,
            inbox_paging,
            cursors_only_move_forward,
            nonces_are_single_use,
            token_versions_increment,
            conversations_and_unread,
            conversation_updates,
            conversations_changed_since,
            history_pages_without_cleared_or_deleted,
            read_receipts_go_to_the_peer_when_the_position_moves,
            blocked_senders_are_refused,
            recall_edit_and_reactions,
            latest_is_the_newest_message_a_person_sees,
            search_finds_substrings_of_what_the_user_can_see,
            last_seen_only_moves_forward,
            a_batch_stores_what_its_writes_store_one_by_one,
            groups_membership_and_fan_out,
            open_groups_are_made_and_joined_by_naming_them,
            discussions_are_managed_by_their_members,
            profiles_and_bans,
            sensitive_words_are_kept_up_to_a_limit,
            kept_chatrooms_and_standings,
            accounts_keep_a_password_hash_and_revoke_tokens_when_it_changes,
            accounts_are_made_only_for_ids_without_a_trace,
            records_say_whether_an_id_is_an_accounts,
            push_tokens_are_one_per_provider_and_token,
            push_tokens_are_capped_per_user,
            key_packages_are_handed_out_once_except_the_last_resort,
            key_package_uploads_replace_and_are_capped,
            mls_commits_are_taken_one_per_epoch,
            notifications_due_are_written_with_their_message,
            operators_sessions_and_the_audit_log,
            an_open_store_answers_a_ping,
            a_closed_store_refuses_a_ping,
        );
    };
    (@cases $fresh:path; $($case:ident,)*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(fixture) = $fresh(stringify!($case)).await else {
                    return;
                };
                let store = $crate::conformance::Fixture::store(&fixture);
                $crate::conformance::$case(store).await;
                $crate::Store::close(store).await.expect("the store closes");
                $crate::conformance::Fixture::release(fixture).await;
            }
        )*
    };
}

/// An open store answers a ping.
pub async fn an_open_store_answers_a_ping(store: &dyn Store) {
    store.ping().await.expect("an open store answers a ping");
}

pub async fn operators_sessions_and_the_audit_log(store: &dyn Store) {
    use crate::{AdminOp, AdminResult, AdminSessionRecord, AuditEntry, OperatorRecord};
    let op = |name: &str, hash: &str| OperatorRecord {
        name: name.into(),
        password_hash: hash.into(),
        created: 1_000,
    };
    let session = |id: &str, operator: &str, expires: i64| AdminSessionRecord {
        id_hash: id.into(),
        operator: operator.into(),
        created: 1_000,
        expires,
    };
    assert_eq!(store.operator("root").await.unwrap(), None);
    assert_eq!(
        store
            .admin(AdminOp::CreateSession {
                session: session("s0", "root", 5_000),
                now: 1_000,
            })
            .await
            .unwrap(),
        AdminResult::SessionCreated { created: false },
        "no session for an operator who does not exist"
    );
    assert_eq!(store.admin_session("s0").await.unwrap(), None);
    assert_eq!(
        store
            .admin(AdminOp::SetOperator(op("root", "h1")))
            .await
            .unwrap(),
        AdminResult::OperatorSet { created: true }
    );
    store
        .admin(AdminOp::SetOperator(op("alice", "h2")))
        .await
        .unwrap();
    assert_eq!(
        store.operator("root").await.unwrap(),
        Some(op("root", "h1"))
    );
    // Operators are their own namespace: no user is made for them.
    assert_eq!(store.user_state("root").await.unwrap(), Default::default());
    assert!(store.account("root").await.unwrap().is_none());
    let names: Vec<String> = store
        .operators()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["alice", "root"], "in name order");

    for (id, who) in [("s1", "root"), ("s2", "root"), ("s3", "alice")] {
        assert_eq!(
            store
                .admin(AdminOp::CreateSession {
                    session: session(id, who, 5_000),
                    now: 1_000,
                })
                .await
                .unwrap(),
            AdminResult::SessionCreated { created: true }
        );
    }
    assert_eq!(
        store.admin_session("s1").await.unwrap(),
        Some(session("s1", "root", 5_000))
    );
    store
        .admin(AdminOp::TouchSession {
            id_hash: "s1".into(),
            expires: 9_000,
        })
        .await
        .unwrap();
    assert_eq!(
        store.admin_session("s1").await.unwrap().unwrap().expires,
        9_000
    );
    store
        .admin(AdminOp::EndSession {
            id_hash: "s2".into(),
        })
        .await
        .unwrap();
    assert_eq!(store.admin_session("s2").await.unwrap(), None, "ended");
    // A new sign-in forgets sessions that expired.
    store
        .admin(AdminOp::CreateSession {
            session: session("s4", "alice", 20_000),
            now: 6_000,
        })
        .await
        .unwrap();
    assert_eq!(store.admin_session("s3").await.unwrap(), None, "expired");
    assert!(store.admin_session("s1").await.unwrap().is_some());
    // A new password ends the operator's sessions; so does removing them.
    assert_eq!(
        store
            .admin(AdminOp::SetOperator(op("root", "h3")))
            .await
            .unwrap(),
        AdminResult::OperatorSet { created: false }
    );
    assert_eq!(
        store.operator("root").await.unwrap(),
        Some(op("root", "h3"))
    );
    assert_eq!(store.admin_session("s1").await.unwrap(), None);
    assert_eq!(
        store
            .admin(AdminOp::RemoveOperator {
                name: "alice".into()
            })
            .await
            .unwrap(),
        AdminResult::OperatorRemoved { removed: true }
    );
    assert_eq!(store.admin_session("s4").await.unwrap(), None);
    assert_eq!(store.operator("alice").await.unwrap(), None);
    assert_eq!(
        store
            .admin(AdminOp::RemoveOperator {
                name: "alice".into()
            })
            .await
            .unwrap(),
        AdminResult::OperatorRemoved { removed: false }
    );

    assert!(store.audit_log(0, 10).await.unwrap().is_empty());
    let mut ids = Vec::new();
    for i in 0..5 {
        let entry = AuditEntry {
            id: 0,
            time: 1_000 + i,
            operator: "root".into(),
            action: format!("act.{i}"),
            target: format!("t{i}"),
            details: format!(r#"{{"n":{i}}}"#),
        };
        match store.admin(AdminOp::Audit(entry)).await.unwrap() {
            AdminResult::Audited { id } => ids.push(id),
            other => panic!("expected Audited, got {other:?}"),
        }
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let page = store.audit_log(0, 3).await.unwrap();
    let actions: Vec<&str> = page.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["act.4", "act.3", "act.2"], "newest first");
    assert_eq!(page[0].id, ids[4]);
    assert_eq!(page[0].target, "t4");
    assert_eq!(page[0].details, r#"{"n":4}"#);
    assert_eq!(page[0].time, 1_004);
    assert_eq!(page[0].operator, "root");
    let rest = store.audit_log(page[2].id, 3).await.unwrap();
    let actions: Vec<&str> = rest.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["act.1", "act.0"], "the next page");
}

/// A closed store refuses a ping.
pub async fn a_closed_store_refuses_a_ping(store: &dyn Store) {
    store.close().await.expect("the store closes");
    assert!(
        matches!(store.ping().await, Err(crate::StoreError::Closed)),
        "a closed store answers a ping with Closed"
    );
}

fn push_token(user: &str, device: &str, provider: PushProvider, token: &str) -> PushTokenRecord {
    PushTokenRecord {
        user: user.into(),
        device: device.into(),
        provider,
        token: token.into(),
        app_id: "com.example.chat".into(),
        sandbox: provider == PushProvider::Apns,
        locale: "en-GB".into(),
        p256dh: if provider == PushProvider::WebPush {
            format!("p256dh-{token}")
        } else {
            String::new()
        },
        auth: String::new(),
    }
}

pub async fn push_tokens_are_one_per_provider_and_token(store: &dyn Store) {
    use PushProvider::{Apns, Fcm, WebPush};
    let users = |list: &[&str]| list.iter().map(|u| u.to_string()).collect::<Vec<_>>();
    assert!(
        store
            .push_tokens(&users(&["pt-a", "pt-b"]))
            .await
            .unwrap()
            .is_empty(),
        "no tokens before any is saved"
    );
    for token in [
        push_token("pt-a", "phone", Fcm, "f1"),
        push_token("pt-a", "", WebPush, "https://push.example/1"),
        push_token("pt-a", "tablet", Apns, "aa01"),
        push_token("pt-b", "phone", Fcm, "f2"),
        push_token("pt-c", "phone", Fcm, "f3"),
        // The same token text with another provider is another token.
        push_token("pt-b", "mac", Apns, "f1"),
    ] {
        store.save_push_token(token).await.unwrap();
    }
    assert_eq!(
        store
            .push_tokens(&users(&["pt-b", "pt-a", "pt-nobody"]))
            .await
            .unwrap(),
        vec![
            push_token("pt-a", "", WebPush, "https://push.example/1"),
            push_token("pt-a", "phone", Fcm, "f1"),
            push_token("pt-a", "tablet", Apns, "aa01"),
            push_token("pt-b", "phone", Fcm, "f2"),
            push_token("pt-b", "mac", Apns, "f1"),
        ],
        "a set of users' tokens, by user, provider then token, without other users'"
    );

    // A token registered again moves to its new owner; a device's new token of a provider
    // replaces its earlier one; another app on the device keeps its own.
    store
        .save_push_token(push_token("pt-b", "phone2", Fcm, "f1"))
        .await
        .unwrap();
    store
        .save_push_token(push_token("pt-b", "phone", Fcm, "f2-rotated"))
        .await
        .unwrap();
    let other_app = PushTokenRecord {
        app_id: "com.example.other".into(),
        ..push_token("pt-b", "phone", Fcm, "f4")
    };
    store.save_push_token(other_app.clone()).await.unwrap();
    assert_eq!(
        store.push_tokens(&users(&["pt-a", "pt-b"])).await.unwrap(),
        vec![
            push_token("pt-a", "", WebPush, "https://push.example/1"),
            push_token("pt-a", "tablet", Apns, "aa01"),
            push_token("pt-b", "phone2", Fcm, "f1"),
            push_token("pt-b", "phone", Fcm, "f2-rotated"),
            other_app,
            push_token("pt-b", "mac", Apns, "f1"),
        ],
        "one row per token, the last registration's; one per device, provider and app"
    );

    // Removal: only the owner's when a user is named; any when not.
    assert!(
        !store
            .remove_push_token(Fcm, "f1", Some("pt-a"))
            .await
            .unwrap(),
        "another user's token is not removed"
    );
    assert!(
        !store.remove_push_token(WebPush, "f1", None).await.unwrap(),
        "a token of another provider is another token"
    );
    assert!(
        store
            .remove_push_token(Fcm, "f1", Some("pt-b"))
            .await
            .unwrap()
    );
    assert!(store.remove_push_token(Fcm, "f3", None).await.unwrap());
    assert!(
        !store.remove_push_token(Fcm, "f3", None).await.unwrap(),
        "a second removal finds nothing"
    );
    assert!(
        store
            .push_tokens(&users(&["pt-c"]))
            .await
            .unwrap()
            .is_empty()
    );
}

fn key_package(r: u8, last_resort: bool, not_after: i64) -> crate::KeyPackageRecord {
    crate::KeyPackageRecord {
        reference: vec![r; 32],
        data: vec![r; 300],
        last_resort,
        not_after,
    }
}

async fn publish(
    store: &dyn Store,
    user: &str,
    device: &str,
    packages: Vec<crate::KeyPackageRecord>,
    replace: bool,
) -> WriteResult {
    let op = WriteOp::PublishKeyPackages(crate::KeyPackageUpload {
        user: user.into(),
        device: device.into(),
        packages,
        replace,
        now: 1_000,
    });
    store.write(vec![op]).await.unwrap().remove(0)
}

async fn claim(store: &dyn Store, user: &str, now: i64) -> Vec<crate::ClaimedKeyPackage> {
    let op = WriteOp::ClaimKeyPackages {
        user: user.into(),
        now,
        except: Vec::new(),
    };
    match store.write(vec![op]).await.unwrap().remove(0) {
        WriteResult::KeyPackagesClaimed(claimed) => claimed,
        other => panic!("a claim answers {other:?}"),
    }
}

pub async fn key_packages_are_handed_out_once_except_the_last_resort(store: &dyn Store) {
    let phone = vec![
        key_package(1, false, 5_000),
        key_package(2, false, 5_000),
        key_package(3, true, 5_000),
    ];
    assert_eq!(
        publish(store, "kp", "phone", phone, false).await,
        WriteResult::KeyPackagesPublished { stored: 2 }
    );
    // One that expires at 2,000, on another device.
    let laptop = vec![key_package(4, false, 2_000), key_package(5, true, 5_000)];
    assert_eq!(
        publish(store, "kp", "laptop", laptop, false).await,
        WriteResult::KeyPackagesPublished { stored: 1 }
    );
    let handed = |claimed: Vec<crate::ClaimedKeyPackage>| -> Vec<(String, u8, bool)> {
        claimed
            .into_iter()
            .map(|c| (c.device, c.data[0], c.last_resort))
            .collect()
    };
    // Oldest first, one per device, in device order.
    assert_eq!(
        handed(claim(store, "kp", 1_500).await),
        vec![("laptop".into(), 4, false), ("phone".into(), 1, false)]
    );
    assert_eq!(
        handed(claim(store, "kp", 1_500).await),
        vec![("laptop".into(), 5, true), ("phone".into(), 2, false)]
    );
    // Only last resorts are left, and they are handed out again and again.
    for _ in 0..2 {
        assert_eq!(
            handed(claim(store, "kp", 1_500).await),
            vec![("laptop".into(), 5, true), ("phone".into(), 3, true)]
        );
    }
    assert_eq!(claim(store, "nobody", 1_500).await, vec![]);
    // Expired key packages are never handed out.
    assert_eq!(claim(store, "kp", 5_000).await, vec![]);
    // Claims made at once hand out each one-time key package once.
    let many: Vec<_> = (10..40).map(|r| key_package(r, false, 5_000)).collect();
    assert_eq!(
        publish(store, "kp", "tablet", many, false).await,
        WriteResult::KeyPackagesPublished { stored: 30 }
    );
    let claims = (0..30).map(|_| claim(store, "kp", 1_500));
    let mut seen: Vec<u8> = futures_util::future::join_all(claims)
        .await
        .into_iter()
        .flatten()
        .map(|c| c.data[0])
        .collect();
    seen.sort();
    assert_eq!(seen, (10..40).collect::<Vec<u8>>());
}

pub async fn key_package_uploads_replace_and_are_capped(store: &dyn Store) {
    let max = crate::MAX_KEY_PACKAGES_PER_DEVICE as u8;
    let batch = |from: u8, n: u8| -> Vec<_> {
        (from..from + n)
            .map(|r| key_package(r, false, 5_000))
            .collect()
    };
    assert_eq!(
        publish(store, "cap", "phone", batch(0, max), false).await,
        WriteResult::KeyPackagesPublished { stored: max as u64 }
    );
    assert_eq!(
        publish(store, "cap", "phone", batch(max, 1), false).await,
        WriteResult::KeyPackagesRefused(crate::KeyPackagesFull::Device)
    );
    // Uploading the same ones again adds nothing and is taken.
    assert_eq!(
        publish(store, "cap", "phone", batch(0, 3), false).await,
        WriteResult::KeyPackagesPublished { stored: max as u64 }
    );
    // Replacing the device's key packages leaves only the new ones.
    assert_eq!(
        publish(store, "cap", "phone", batch(200, 2), true).await,
        WriteResult::KeyPackagesPublished { stored: 2 }
    );
    let first: Vec<u8> = claim(store, "cap", 1_500)
        .await
        .into_iter()
        .map(|c| c.data[0])
        .collect();
    assert_eq!(first, vec![200]);
    // An empty upload that replaces takes the device out of the directory.
    assert_eq!(
        publish(store, "cap", "phone", vec![], true).await,
        WriteResult::KeyPackagesPublished { stored: 0 }
    );
    assert_eq!(claim(store, "cap", 1_500).await, vec![]);
    // At most MAX_KEY_PACKAGE_DEVICES devices.
    for d in 0..crate::MAX_KEY_PACKAGE_DEVICES as u8 {
        let one = vec![key_package(100 + d, true, 5_000)];
        assert_eq!(
            publish(store, "cap", &format!("d{d}"), one, false).await,
            WriteResult::KeyPackagesPublished { stored: 0 }
        );
    }
    assert_eq!(
        publish(
            store,
            "cap",
            "extra",
            vec![key_package(150, true, 5_000)],
            false
        )
        .await,
        WriteResult::KeyPackagesRefused(crate::KeyPackagesFull::Devices)
    );
    assert_eq!(
        claim(store, "cap", 1_500).await.len() as u64,
        crate::MAX_KEY_PACKAGE_DEVICES
    );
}

fn mls(mut m: AppendMessage, group: u8, epoch: u64, kind: crate::MlsKind) -> WriteOp {
    m.msg_type = "mls".into();
    m.content = format!(r#"{{"mls":"{group}-{epoch}-{kind:?}"}}"#);
    m.search_text = String::new();
    m.mls = Some(crate::MlsOrdering {
        group_id: vec![group],
        epoch,
        kind,
    });
    WriteOp::Append(m)
}

pub async fn mls_commits_are_taken_one_per_epoch(store: &dyn Store) {
    use crate::{EpochRefusal, MlsKind::*};
    let private = |cmid: &str| private_append("mls-a", "mls-b", cmid, "x");
    let refused = |r: WriteResult| match r {
        WriteResult::EpochRefused(why) => why,
        other => panic!("expected a refusal, got {other:?}"),
    };
    // Nothing but the commit that starts a group is taken before there is one.
    assert_eq!(
        refused(one_write(store, mls(private("c0"), 1, 0, Application)).await),
        EpochRefusal::NoGroup
    );
    // Two devices start a group at once: in one transaction, and one after the other.
    let results = store
        .write(vec![
            mls(private("c1"), 1, 0, Commit),
            mls(private("c2"), 2, 0, Commit),
        ])
        .await
        .unwrap();
    let (first, _, _) = appended(&results[0]);
    assert_eq!(first.seq, 1);
    assert_eq!(refused(results[1].clone()), EpochRefusal::OtherGroup);
    assert_eq!(
        refused(one_write(store, mls(private("c3"), 1, 0, Commit)).await),
        EpochRefusal::Stale { current: 1 }
    );
    // A resend of the commit taken gets its first answer.
    let again = one_write(store, mls(private("c1"), 1, 0, Commit)).await;
    let (message, _, duplicate) = appended(&again);
    assert!(duplicate);
    assert_eq!(message.seq, 1);
    // Epoch 1: an application message and a proposal, then two commits; the first wins.
    appended(&one_write(store, mls(private("a1"), 1, 1, Application)).await);
    appended(&one_write(store, mls(private("p1"), 1, 1, Proposal)).await);
    let results = store
        .write(vec![
            mls(private("c4"), 1, 1, Commit),
            mls(private("c5"), 1, 1, Commit),
        ])
        .await
        .unwrap();
    appended(&results[0]);
    assert_eq!(
        refused(results[1].clone()),
        EpochRefusal::Stale { current: 2 }
    );
    // A message sent just before the commit is still taken; one of an epoch to come is not.
    appended(&one_write(store, mls(private("a2"), 1, 1, Application)).await);
    assert_eq!(
        refused(one_write(store, mls(private("a3"), 1, 3, Application)).await),
        EpochRefusal::Stale { current: 2 }
    );
    let last = one_write(store, mls(private("c6"), 1, 2, Commit)).await;
    assert_eq!(appended(&last).0.seq, 6, "refused messages took no seq");
    // Conversations are ordered apart: a group's conversation starts its own group.
    let create = GroupAction::Create {
        kind: GroupKind::Managed,
        owner: "mls-a".into(),
        name: "E".into(),
        portrait: String::new(),
        extra: String::new(),
        members: vec!["mls-a".into(), "mls-b".into()],
    };
    group_changed(store, group_change("mls-g", "mls-a", create, "mls-g1")).await;
    let group = |cmid: &str| group_append("mls-a", "mls-g", cmid, "x");
    let results = store
        .write(vec![
            mls(group("g1"), 7, 0, Commit),
            mls(group("g2"), 7, 0, Commit),
            mls(group("g3"), 7, 1, Application),
        ])
        .await
        .unwrap();
    let (_, inbox, _) = appended(&results[0]);
    assert_eq!(users_of(inbox), ["mls-a", "mls-b"]);
    assert_eq!(
        refused(results[1].clone()),
        EpochRefusal::Stale { current: 1 }
    );
    appended(&results[2]);
}

pub async fn push_tokens_are_capped_per_user(store: &dyn Store) {
    let max = crate::MAX_PUSH_TOKENS_PER_USER;
    for i in 0..max {
        let t = push_token("cap", &format!("d{i}"), PushProvider::Fcm, &format!("t{i}"));
        assert!(store.save_push_token(t).await.unwrap());
    }
    let one_more = push_token("cap", "extra", PushProvider::Fcm, "t-extra");
    assert!(
        !store.save_push_token(one_more.clone()).await.unwrap(),
        "a token past the cap is refused"
    );
    let users = vec!["cap".to_string()];
    assert_eq!(store.push_tokens(&users).await.unwrap().len() as u64, max);
    // Saving a token the user has again, or a device's new token in place of its old one, adds
    // nothing and is taken.
    assert!(
        store
            .save_push_token(push_token("cap", "d0", PushProvider::Fcm, "t0"))
            .await
            .unwrap()
    );
    assert!(
        store
            .save_push_token(push_token("cap", "d1", PushProvider::Fcm, "t1-rotated"))
            .await
            .unwrap()
    );
    let tokens = store.push_tokens(&users).await.unwrap();
    assert_eq!(tokens.len() as u64, max);
    assert!(tokens.iter().any(|t| t.token == "t1-rotated"));
    // Another user is not held back by this one's tokens, and one removal makes room.
    assert!(
        store
            .save_push_token(push_token("cap-other", "d", PushProvider::Fcm, "o"))
            .await
            .unwrap()
    );
    assert!(
        store
            .remove_push_token(PushProvider::Fcm, "t2", None)
            .await
            .unwrap()
    );
    assert!(store.save_push_token(one_more).await.unwrap());
}

pub async fn notifications_due_are_written_with_their_message(store: &dyn Store) {
    // pd-b has a token, pd-c has none.
    store
        .save_push_token(push_token("pd-b", "phone", PushProvider::Fcm, "t-b"))
        .await
        .unwrap();
    assert!(store.push_due(100).await.unwrap().is_empty());
    let uncounted = AppendMessage {
        counted: false,
        ..private_append("pd-a", "pd-b", "m2", "quiet")
    };
    let r = store
        .write(vec![
            WriteOp::Append(AppendMessage {
                push_data: r#"{"screen":"chat"}"#.into(),
                ..private_append("pd-a", "pd-b", "m1", "hello")
            }),
            WriteOp::Append(uncounted),
            WriteOp::Append(private_append("pd-a", "pd-c", "m3", "no token")),
            WriteOp::Append(private_append("pd-b", "pd-a", "m4", "own")),
        ])
        .await
        .unwrap();
    let (first, inbox, _) = appended(&r[0]);
    let b_seq = inbox.iter().find(|(u, _)| u == "pd-b").unwrap().1;
    let says_due = |r: &WriteResult| matches!(r, WriteResult::Appended { push_due: true, .. });
    assert!(says_due(&r[0]), "an append that made one due says so");
    assert!(
        !says_due(&r[1]),
        "an append the rule makes nothing due for says none is"
    );
    assert!(!says_due(&r[2]), "nor one to a user without a token");
    let due = store.push_due(100).await.unwrap();
    assert_eq!(
        due.iter()
            .map(|d| (d.user.as_str(), d.inbox_seq, d.message.uid.as_str()))
            .collect::<Vec<_>>(),
        vec![("pd-b", b_seq, first.uid.as_str())],
        "due: a counted message to a user with a token; not an uncounted one, not to a user \
         without a token, not to the sender"
    );
    assert_eq!(&due[0].message, first, "the message as stored");
    assert_eq!(
        due[0].push_data, r#"{"screen":"chat"}"#,
        "with the sender's data for the notification"
    );

    // A resend stores nothing new, so makes nothing due again.
    store
        .write(vec![WriteOp::Append(private_append(
            "pd-a", "pd-b", "m1", "hello",
        ))])
        .await
        .unwrap();
    assert_eq!(store.push_due(100).await.unwrap().len(), 1);

    // The recall of the message makes its withdrawal due.
    let recall = private_amend(
        "pd-a",
        "pd-b",
        first.seq,
        AmendAction::Recall { not_before: 0 },
        "pd-recall",
    );
    store.write(vec![recall]).await.unwrap();
    let due = store.push_due(100).await.unwrap();
    assert_eq!(due.len(), 2, "{due:?}");
    assert_eq!(due[1].message.msg_type, crate::rules::push::RECALL_EVENT);
    assert_eq!(due[1].user, "pd-b");

    // Done: forgotten (and forgetting twice, or what is not due, is no error).
    let done = WriteOp::PushDone {
        due: vec![("pd-b".into(), b_seq), ("pd-c".into(), 1)],
    };
    store.write(vec![done.clone(), done]).await.unwrap();
    let due = store.push_due(100).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].message.msg_type, crate::rules::push::RECALL_EVENT);

    // A user whose last token was removed gets nothing due any more.
    store
        .remove_push_token(PushProvider::Fcm, "t-b", None)
        .await
        .unwrap();
    store
        .write(vec![WriteOp::Append(private_append(
            "pd-a", "pd-b", "m5", "after",
        ))])
        .await
        .unwrap();
    assert_eq!(store.push_due(100).await.unwrap().len(), 1);
}

pub async fn accounts_keep_a_password_hash_and_revoke_tokens_when_it_changes(store: &dyn Store) {
    let account = |user: &str, hash: &str| {
        WriteOp::CreateAccount(crate::AccountRecord {
            user: user.into(),
            password_hash: hash.into(),
            created: 1000,
        })
    };
    let change = |expected: &str, hash: Option<&str>| WriteOp::ChangeAccount {
        user: "ac-a".into(),
        expected: expected.into(),
        password_hash: hash.map(String::from),
    };
    let version = |r: WriteResult| match r {
        WriteResult::AccountChanged { token_version } => token_version,
        other => panic!("expected AccountChanged, got {other:?}"),
    };
    // The account's hash (if it has one) and the user's token version.
    let state = || async {
        let hash = store.account("ac-a").await.expect("read");
        let version = store.user_state("ac-a").await.expect("read").token_version;
        (hash.map(|a| a.password_hash), version)
    };
    assert_eq!(store.account("ac-a").await.expect("read"), None);
    let results = store
        .write(vec![
            account("ac-a", "h1"),
            account("ac-a", "h2"),
            // A user the store has a record of (here: a profile the app server set) is not
            // given to an account.
            WriteOp::SetProfile {
                user: "ac-app".into(),
                name: Some("App".into()),
                portrait: None,
                extra: None,
            },
            account("ac-app", "h3"),
        ])
        .await
        .expect("write");
    assert_eq!(results[0], WriteResult::AccountCreated { fresh: true });
    assert_eq!(results[1], WriteResult::AccountCreated { fresh: false });
    assert_eq!(results[3], WriteResult::AccountCreated { fresh: false });
    assert_eq!(store.account("ac-app").await.expect("read"), None);
    assert_eq!(
        store.account("ac-a").await.expect("read"),
        Some(crate::AccountRecord {
            user: "ac-a".into(),
            password_hash: "h1".into(),
            created: 1000,
        })
    );
    // The account's user is recorded, at token version 1: no token minted before the account
    // (at version 0, a user without a record's) is current.
    let known = store.user_ids_after("ac-", 10).await.expect("read");
    assert!(known.contains(&"ac-a".to_string()));
    assert_eq!(state().await, (Some("h1".into()), 1));

    // A change that expects another hash (one that changed meanwhile) writes nothing.
    assert_eq!(
        version(one_write(store, change("h0", Some("h9"))).await),
        None
    );
    assert_eq!(state().await, (Some("h1".into()), 1));
    // The right one replaces the hash and revokes the tokens, in one transaction.
    assert_eq!(
        version(one_write(store, change("h1", Some("h2"))).await),
        Some(2)
    );
    assert_eq!(state().await, (Some("h2".into()), 2));

    // Deleting works the same way; the user's record stays, so the name is not given again.
    assert_eq!(version(one_write(store, change("h1", None)).await), None);
    assert_eq!(state().await, (Some("h2".into()), 2));
    assert_eq!(version(one_write(store, change("h2", None)).await), Some(3));
    assert_eq!(state().await, (None, 3));
    assert_eq!(
        version(one_write(store, change("h2", Some("h3"))).await),
        None
    );
    assert_eq!(
        one_write(store, account("ac-a", "h4")).await,
        WriteResult::AccountCreated { fresh: false }
    );
    assert_eq!(state().await, (None, 3));
}

fn create_account(user: &str) -> WriteOp {
    WriteOp::CreateAccount(crate::AccountRecord {
        user: user.into(),
        password_hash: format!("hash-{user}"),
        created: 1000,
    })
}

/// A message to `to` alone from `from`, who gets no inbox entry or conversation row: a system
/// account's message.
fn system_append(from: &str, to: &str, client_msg_id: &str) -> AppendMessage {
    AppendMessage {
        conversation_type: crate::SYSTEM,
        conversation_id: format!("6:{from}|{to}"),
        recipients: vec![to.into()],
        participants: vec![Participant {
            user: to.into(),
            target: from.into(),
        }],
        ..private_append(from, to, client_msg_id, "notice")
    }
}

pub async fn accounts_are_made_only_for_ids_without_a_trace(store: &dyn Store) {
    let room = crate::ChatroomRecord {
        id: "tr-room".into(),
        name: "Room".into(),
        extra: String::new(),
        created: 1000,
        max_members: 10,
        muted_until: 0,
    };
    let created = |r: &WriteResult| match r {
        WriteResult::AccountCreated { fresh } => *fresh,
        other => panic!("expected AccountCreated, got {other:?}"),
    };
    // Traces of ids in the store, each made as the app server, a token or a message makes it.
    let traces = vec![
        WriteOp::RecordUser {
            user: "tr-token".into(),
        },
        WriteOp::SetProfile {
            user: "tr-profile".into(),
            name: Some("P".into()),
            portrait: None,
            extra: None,
        },
        WriteOp::SetBanned {
            user: "tr-ban".into(),
            banned: true,
        },
        WriteOp::BumpTokenVersion {
            user: "tr-revoked".into(),
        },
        WriteOp::SetLastSeen {
            user: "tr-seen".into(),
            time: 5,
        },
        WriteOp::Append(system_append("tr-system", "tr-inbox", "tr-1")),
        // A conversation row with no inbox entry.
        WriteOp::Append(AppendMessage {
            recipients: Vec::new(),
            participants: vec![Participant {
                user: "tr-conversation".into(),
                target: "tr-peer".into(),
            }],
            ..private_append("tr-peer", "tr-peer", "tr-2", "to self")
        }),
        group_change(
            "tr-group",
            "tr-owner",
            GroupAction::Create {
                kind: GroupKind::Managed,
                owner: "tr-owner".into(),
                name: "G".into(),
                portrait: String::new(),
                extra: String::new(),
                members: vec!["tr-member".into()],
            },
            "tr-n1",
        ),
        WriteOp::SetCursor {
            user: "tr-cursor".into(),
            device: "d".into(),
            cursor: 1,
        },
        WriteOp::DeleteForUser {
            user: "tr-deleted".into(),
            conversation_id: "tr-a|tr-b".into(),
            seqs: vec![1],
        },
        WriteOp::SetBlocked {
            user: "tr-blocker".into(),
            other: "tr-blocked".into(),
            blocked: true,
            max: 10,
        },
        WriteOp::CreateChatroom(room),
        WriteOp::SetChatroomUser {
            room: "tr-room".into(),
            standing: crate::ChatroomUser {
                user: "tr-standing".into(),
                banned_until: i64::MAX,
                muted_until: 0,
            },
        },
        WriteOp::SavePushToken(push_token(
            "tr-push",
            "",
            PushProvider::WebPush,
            "https://push.example/tr",
        )),
    ];
    store.write(traces).await.expect("write");
    let traced = [
        ("tr-token", "a token minted"),
        ("tr-profile", "a profile"),
        ("tr-ban", "a ban"),
        ("tr-revoked", "a revocation"),
        ("tr-seen", "a recorded connection"),
        ("tr-inbox", "an inbox entry"),
        ("tr-system", "a message sent"),
        ("tr-conversation", "a conversation"),
        ("tr-peer", "a message sent"),
        ("tr-owner", "a group owned"),
        ("tr-member", "a group membership"),
        ("tr-cursor", "a device cursor"),
        ("tr-deleted", "messages deleted for the user"),
        ("tr-blocker", "a blocklist"),
        ("tr-standing", "a chatroom standing"),
        ("tr-push", "a push subscription"),
    ];
    let results = store
        .write(traced.iter().map(|(id, _)| create_account(id)).collect())
        .await
        .expect("write");
    for ((id, trace), r) in traced.iter().zip(&results) {
        assert!(!created(r), "{id}, with {trace}, was given to an account");
        assert_eq!(store.account(id).await.expect("read"), None);
        assert!(!store.user_state(id).await.expect("read").account, "{id}");
    }
    // Being on someone else's blocklist is that user's data, not a trace of one's own.
    assert!(created(
        &one_write(store, create_account("tr-blocked")).await
    ));

    // Within one transaction: a trace written before the account is seen, one after is made
    // for the account's user.
    let results = store
        .write(vec![
            WriteOp::Append(system_append("tr-system", "tr-same", "tr-3")),
            create_account("tr-same"),
            create_account("tr-first"),
            WriteOp::Append(system_append("tr-system", "tr-first", "tr-4")),
        ])
        .await
        .expect("write");
    assert!(!created(&results[1]), "an inbox entry written before");
    assert!(created(&results[2]));
    let first = store.inbox_after("tr-first", 0, 10).await.expect("read");
    assert_eq!(first.len(), 1, "a message to an account's user is theirs");
}

pub async fn records_say_whether_an_id_is_an_accounts(store: &dyn Store) {
    let record = |token_version, account| crate::UserRecord {
        token_version,
        account,
    };
    // An id nobody used: recorded now, at version 0.
    assert_eq!(
        store
            .user_state("rec-app")
            .await
            .expect("read")
            .token_version,
        0
    );
    assert_eq!(
        store.record_user("rec-app").await.expect("write"),
        record(0, false)
    );
    assert_eq!(
        store.record_user("rec-app").await.expect("write"),
        record(0, false)
    );
    one_write(
        store,
        WriteOp::BumpTokenVersion {
            user: "rec-app".into(),
        },
    )
    .await;
    assert_eq!(
        store.record_user("rec-app").await.expect("write"),
        record(1, false)
    );
    let state = store.user_state("rec-app").await.expect("read");
    assert_eq!((state.token_version, state.account), (1, false));
    let session = store.session_state("rec-app", None).await.expect("read");
    assert!(!session.user.account);

    // An account's id is one for good, even once the account is deleted.
    one_write(store, create_account("rec-acct")).await;
    assert_eq!(
        store.record_user("rec-acct").await.expect("write"),
        record(1, true)
    );
    assert!(store.user_state("rec-acct").await.expect("read").account);
    let session = store
        .session_state("rec-acct", Some("d"))
        .await
        .expect("read");
    assert!(session.user.account);
    one_write(
        store,
        WriteOp::ChangeAccount {
            user: "rec-acct".into(),
            expected: "hash-rec-acct".into(),
            password_hash: None,
        },
    )
    .await;
    assert_eq!(store.account("rec-acct").await.expect("read"), None);
    assert_eq!(
        store.record_user("rec-acct").await.expect("write"),
        record(2, true)
    );
    assert!(store.user_state("rec-acct").await.expect("read").account);
}

pub async fn kept_chatrooms_and_standings(store: &dyn Store) {
    let room = |name: &str| crate::ChatroomRecord {
        id: "cr-1".into(),
        name: name.into(),
        extra: r#"{"k":1}"#.into(),
        created: 1000,
        max_members: 50,
        muted_until: 0,
    };
    let standing = |user: &str, banned_until: i64, muted_until: i64| WriteOp::SetChatroomUser {
        room: "cr-1".into(),
        standing: crate::ChatroomUser {
            user: user.into(),
            banned_until,
            muted_until,
        },
    };
    assert_eq!(store.chatroom("cr-1").await.expect("read"), None);
    // A standing in a room that is not kept is not recorded (and fails nothing).
    let results = store
        .write(vec![
            standing("u1", 5, 0),
            WriteOp::CreateChatroom(room("Lobby")),
            WriteOp::CreateChatroom(room("Other")),
        ])
        .await
        .expect("write");
    assert_eq!(
        results[1..],
        [
            WriteResult::ChatroomCreated { fresh: true },
            WriteResult::ChatroomCreated { fresh: false }
        ]
    );
    let (kept, users) = store.chatroom("cr-1").await.expect("read").expect("kept");
    assert_eq!(kept, room("Lobby"), "a second create changes nothing");
    assert!(users.is_empty());
    store
        .write(vec![
            standing("u2", 0, 9000),
            standing("u1", 7000, 0),
            standing("u3", 1, 1),
            standing("u3", 0, 0),
            WriteOp::SetChatroom(crate::ChatroomRecord {
                muted_until: i64::MAX,
                ..room("Renamed")
            }),
        ])
        .await
        .expect("write");
    let (kept, users) = store.chatroom("cr-1").await.expect("read").expect("kept");
    assert_eq!(
        (kept.name.as_str(), kept.muted_until),
        ("Renamed", i64::MAX)
    );
    assert_eq!(kept.created, 1000, "the creation time stays");
    assert_eq!(
        users,
        [
            crate::ChatroomUser {
                user: "u1".into(),
                banned_until: 7000,
                muted_until: 0
            },
            crate::ChatroomUser {
                user: "u2".into(),
                banned_until: 0,
                muted_until: 9000
            },
        ]
    );
    store
        .write(vec![WriteOp::DeleteChatroom { id: "cr-1".into() }])
        .await
        .expect("write");
    assert_eq!(store.chatroom("cr-1").await.expect("read"), None);
    // A room kept again under the id starts without the old standings.
    store
        .write(vec![WriteOp::CreateChatroom(room("Again"))])
        .await
        .expect("write");
    let (_, users) = store.chatroom("cr-1").await.expect("read").expect("kept");
    assert!(users.is_empty());
}

pub async fn sensitive_words_are_kept_up_to_a_limit(store: &dyn Store) {
    let set = |word: &str, replacement: Option<&str>| WriteOp::SetSensitiveWord {
        word: word.into(),
        replacement: replacement.map(String::from),
        max: 2,
    };
    let results = store
        .write(vec![
            set("bad", None),
            set("worse", Some("***")),
            set("third", None),
            // Changing a word already there is not adding one.
            set("bad", Some("b*d")),
        ])
        .await
        .expect("write");
    assert_eq!(
        results,
        [
            WriteResult::WordsSet,
            WriteResult::WordsSet,
            WriteResult::WordsFull,
            WriteResult::WordsSet
        ]
    );
    assert_eq!(
        store.sensitive_words().await.expect("read"),
        [
            ("bad".to_string(), Some("b*d".to_string())),
            ("worse".to_string(), Some("***".to_string()))
        ]
    );
    store
        .write(vec![
            WriteOp::RemoveSensitiveWord { word: "bad".into() },
            WriteOp::RemoveSensitiveWord {
                word: "worse".into(),
            },
        ])
        .await
        .expect("write");
    assert!(store.sensitive_words().await.expect("read").is_empty());
}

async fn updated(store: &dyn Store, update: ConversationUpdate) -> (ConversationSettings, u64) {
    let r = store
        .write(vec![WriteOp::UpdateConversation(Box::new(update))])
        .await
        .expect("update");
    match &r[0] {
        WriteResult::ConversationUpdated {
            settings,
            event,
            inbox_seq,
            ..
        } => {
            let content: ConversationSettings =
                serde_json::from_str(&event.content).expect("event content is the settings");
            assert_eq!(&content, settings, "the event reports the new settings");
            assert_eq!(event.conversation_type, 0);
            (settings.clone(), *inbox_seq)
        }
        other => panic!("expected ConversationUpdated, got {other:?}"),
    }
}

async fn one(store: &dyn Store, user: &str, target: &str) -> crate::ConversationRecord {
    let c = store
        .conversations(
            user,
            ConversationFilter {
                one: Some((1, target.into())),
                ..Default::default()
            },
        )
        .await
        .expect("read conversation");
    assert_eq!(
        c.conversations.len(),
        1,
        "{user} has a conversation with {target}"
    );
    c.conversations.into_iter().next().unwrap()
}

pub async fn conversations_and_unread(store: &dyn Store) {
    let mut ops = Vec::new();
    for i in 0..3 {
        ops.push(WriteOp::Append(private_append(
            "cu-a",
            "cu-b",
            &format!("a{i}"),
            "hi",
        )));
    }
    let mut uncounted = private_append("cu-a", "cu-b", "a-status", "typing");
    uncounted.counted = false;
    ops.push(WriteOp::Append(uncounted));
    ops.push(WriteOp::Append(private_append("cu-b", "cu-a", "b0", "yo")));
    store.write(ops).await.expect("write");

    let b = one(store, "cu-b", "cu-a").await;
    assert_eq!(b.latest.as_ref().map(|m| m.seq), Some(5));
    assert_eq!(
        b.unread, 3,
        "counted messages from the peer; not uncounted, not own"
    );
    assert!(!b.removed());
    let a = one(store, "cu-a", "cu-b").await;
    assert_eq!(a.unread, 1);
    assert_eq!(a.settings.target_id, "cu-b");

    let all = store
        .conversations("cu-a", ConversationFilter::default())
        .await
        .expect("list");
    assert_eq!(all.conversations.len(), 1);
    let none = store
        .conversations(
            "cu-a",
            ConversationFilter {
                types: vec![3],
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert!(none.conversations.is_empty(), "type filter");
    let nobody = store
        .conversations("cu-nobody", ConversationFilter::default())
        .await
        .expect("list");
    assert!(nobody.conversations.is_empty());
}

pub async fn conversation_updates(store: &dyn Store) {
    let ops = (0..4)
        .map(|i| {
            let mut m = private_append("up-a", "up-b", &format!("m{i}"), "x");
            m.sent_time = 1_700_000_000_000 + i * 1000;
            WriteOp::Append(m)
        })
        .collect();
    store.write(ops).await.expect("write");
    assert_eq!(one(store, "up-b", "up-a").await.unread, 4);

    let mut u = private_update("up-b", "up-a", "ev1");
    u.read_seq = 2;
    let (s, v1) = updated(store, u).await;
    assert_eq!(s.read_seq, 2);
    assert_eq!(one(store, "up-b", "up-a").await.unread, 2);

    // Never backwards, never past the newest message.
    let mut u = private_update("up-b", "up-a", "ev2");
    u.read_seq = 1;
    let (s, v2) = updated(store, u).await;
    assert_eq!(s.read_seq, 2);
    assert!(v2 > v1, "each change is a new inbox entry");
    let mut u = private_update("up-b", "up-a", "ev3");
    u.read_seq = 99;
    assert_eq!(updated(store, u).await.0.read_seq, 4);
    assert_eq!(one(store, "up-b", "up-a").await.unread, 0);

    // By time: up to the newest message sent at or before it.
    store
        .write(vec![WriteOp::Append({
            let mut m = private_append("up-a", "up-b", "m4", "x");
            m.sent_time = 1_700_000_010_000;
            m
        })])
        .await
        .expect("write");
    let mut u = private_update("up-b", "up-a", "ev4");
    u.read_time = 1_700_000_009_999;
    assert_eq!(updated(store, u).await.0.read_seq, 4);
    let mut u = private_update("up-b", "up-a", "ev5");
    u.read_time = 1_700_000_010_000;
    assert_eq!(updated(store, u).await.0.read_seq, 5);

    // Pin and mute are set, and kept by later updates that leave them.
    let mut u = private_update("up-b", "up-a", "ev6");
    u.pinned = Some(true);
    u.muted = Some(true);
    let (s, _) = updated(store, u).await;
    assert!(s.pinned && s.muted);
    let (s, _) = updated(store, private_update("up-b", "up-a", "ev7")).await;
    assert!(s.pinned && s.muted);

    // Removal hides the conversation until its next message, and reads everything.
    store
        .write(vec![WriteOp::Append(private_append(
            "up-a", "up-b", "m5", "x",
        ))])
        .await
        .expect("write");
    let mut u = private_update("up-b", "up-a", "ev8");
    u.remove = true;
    let (s, _) = updated(store, u).await;
    assert_eq!((s.removed_seq, s.read_seq), (6, 6));
    let c = one(store, "up-b", "up-a").await;
    assert!(c.removed());
    assert_eq!(c.unread, 0);
    store
        .write(vec![WriteOp::Append(private_append(
            "up-a", "up-b", "m6", "x",
        ))])
        .await
        .expect("write");
    let c = one(store, "up-b", "up-a").await;
    assert!(!c.removed(), "a new message brings it back");
    assert_eq!(c.unread, 1);

    // An update of a conversation without messages creates its row.
    let mut u = private_update("up-c", "up-d", "ev9");
    u.pinned = Some(true);
    assert!(updated(store, u).await.0.pinned);
    let c = one(store, "up-c", "up-d").await;
    assert!(c.latest.is_none() && c.removed());

    // The events are the user's own inbox entries, in order.
    let inbox = store.inbox_after("up-b", 0, 100).await.expect("inbox");
    let events: Vec<_> = inbox
        .iter()
        .filter(|e| e.message.conversation_type == 0)
        .map(|e| e.message.uid.as_str())
        .collect();
    assert_eq!(
        events,
        ["ev1", "ev2", "ev3", "ev4", "ev5", "ev6", "ev7", "ev8"]
    );
}

pub async fn conversations_changed_since(store: &dyn Store) {
    for peer in ["cs-b", "cs-c", "cs-d"] {
        store
            .write(vec![WriteOp::Append(private_append(
                "cs-a", peer, peer, "x",
            ))])
            .await
            .expect("write");
    }
    let all = store
        .conversations("cs-a", ConversationFilter::default())
        .await
        .expect("list");
    assert_eq!(all.conversations.len(), 3, "{all:?}");
    let version = all.version;

    // A message in one, a setting in another; the third is untouched.
    store
        .write(vec![WriteOp::Append(private_append(
            "cs-b", "cs-a", "m1", "x",
        ))])
        .await
        .expect("write");
    let mut u = private_update("cs-a", "cs-c", "cs-ev1");
    u.remove = true;
    updated(store, u).await;
    let changed = store
        .conversations(
            "cs-a",
            ConversationFilter {
                changed_since: Some(version),
                ..Default::default()
            },
        )
        .await
        .expect("changed");
    let mut targets: Vec<_> = changed
        .conversations
        .iter()
        .map(|c| (c.settings.target_id.as_str(), c.removed()))
        .collect();
    targets.sort();
    assert_eq!(targets, [("cs-b", false), ("cs-c", true)]);
    assert!(changed.version > version);
    let nothing = store
        .conversations(
            "cs-a",
            ConversationFilter {
                changed_since: Some(changed.version),
                ..Default::default()
            },
        )
        .await
        .expect("changed");
    assert!(nothing.conversations.is_empty());
}

pub async fn seqs_are_gapless_per_conversation_and_inbox(store: &dyn Store) {
    let ops = (0..5)
        .map(|i| WriteOp::Append(private_append("s1", "r1", &format!("m{i}"), "x")))
        .chain(std::iter::once(WriteOp::Append(private_append(
            "s2", "r1", "m0", "y",
        ))))
        .collect();
    let results = store.write(ops).await.expect("write");
    for (i, r) in results[..5].iter().enumerate() {
        let (m, inbox, dup) = appended(r);
        assert!(!dup);
        assert_eq!(m.seq, i as u64 + 1, "conversation seq");
        assert_eq!(
            inbox,
            &[
                ("s1".to_string(), i as u64 + 1),
                ("r1".to_string(), i as u64 + 1)
            ]
        );
    }
    let (m, inbox, _) = appended(&results[5]);
    assert_eq!(m.seq, 1, "a second conversation starts at seq 1");
    assert_eq!(inbox, &[("s2".to_string(), 1), ("r1".to_string(), 6)]);
    let state = store.user_state("r1").await.expect("user_state");
    assert_eq!(state.inbox_seq, 6);
    let conv = store
        .conversation_after(
            "r1|s1",
            Page {
                after: 0,
                limit: 100,
            },
        )
        .await
        .expect("conv");
    assert_eq!(
        conv.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
}

pub async fn duplicates_return_the_first_message(store: &dyn Store) {
    let first = store
        .write(vec![WriteOp::Append(private_append("d1", "d2", "c", "hi"))])
        .await
        .expect("write");
    let mut again = private_append("d1", "d2", "c", "hi");
    again.uid = "another-uid".into();
    again.sent_time += 5;
    let second = store
        .write(vec![WriteOp::Append(again)])
        .await
        .expect("write");
    let (m1, inbox1, dup1) = appended(&first[0]);
    let (m2, inbox2, dup2) = appended(&second[0]);
    assert!(!dup1 && dup2);
    assert_eq!(m1, m2, "a duplicate returns the stored message");
    assert_eq!(inbox1, inbox2);
    assert_eq!(store.user_state("d2").await.expect("state").inbox_seq, 1);
    // A duplicate within one batch is found too.
    let results = store
        .write(vec![
            WriteOp::Append(private_append("d1", "d2", "same", "a")),
            WriteOp::Append(private_append("d1", "d2", "same", "a")),
        ])
        .await
        .expect("write");
    let (a, _, dup_a) = appended(&results[0]);
    let (b, _, dup_b) = appended(&results[1]);
    assert!(!dup_a && dup_b);
    assert_eq!(a.seq, b.seq);
}

pub async fn conflicting_client_msg_id_is_refused(store: &dyn Store) {
    store
        .write(vec![WriteOp::Append(private_append(
            "k1", "k2", "c", "one",
        ))])
        .await
        .expect("write");
    let r = store
        .write(vec![WriteOp::Append(private_append(
            "k1", "k2", "c", "two",
        ))])
        .await
        .expect("write");
    assert_eq!(r, vec![WriteResult::ClientMsgIdConflict]);
    assert_eq!(store.user_state("k2").await.expect("state").inbox_seq, 1);
}

pub async fn inbox_paging(store: &dyn Store) {
    let ops = (0..25)
        .map(|i| WriteOp::Append(private_append("p1", "p2", &format!("n{i}"), "z")))
        .collect();
    store.write(ops).await.expect("write");
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = store.inbox_after("p2", after, 10).await.expect("inbox");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        for e in &page {
            assert_eq!(e.inbox_seq, after + 1, "inbox pages are gapless");
            after = e.inbox_seq;
            seen.push(e.message.client_msg_id.clone());
        }
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(seen[0], "n0");
    assert_eq!(seen[24], "n24");
    assert!(
        store
            .inbox_after("nobody", 0, 10)
            .await
            .expect("inbox")
            .is_empty()
    );
}

pub async fn cursors_only_move_forward(store: &dyn Store) {
    assert_eq!(store.device_cursor("c1", "phone").await.expect("cursor"), 0);
    let set = |cursor| WriteOp::SetCursor {
        user: "c1".into(),
        device: "phone".into(),
        cursor,
    };
    store.write(vec![set(7)]).await.expect("write");
    store.write(vec![set(3)]).await.expect("write");
    assert_eq!(store.device_cursor("c1", "phone").await.expect("cursor"), 7);
    assert_eq!(
        store.device_cursor("c1", "laptop").await.expect("cursor"),
        0
    );
}

pub async fn nonces_are_single_use(store: &dyn Store) {
    let op = |nonce: &str, now| WriteOp::UseNonce {
        nonce: nonce.into(),
        now,
        expires_at: now + 1000,
    };
    let r = store
        .write(vec![op("n-1", 10), op("n-1", 20), op("n-2", 20)])
        .await
        .expect("write");
    assert_eq!(
        r,
        vec![
            WriteResult::Nonce { fresh: true },
            WriteResult::Nonce { fresh: false },
            WriteResult::Nonce { fresh: true }
        ]
    );
    // Once expired, a nonce is forgotten.
    let r = store.write(vec![op("n-1", 5000)]).await.expect("write");
    assert_eq!(r, vec![WriteResult::Nonce { fresh: true }]);
}

pub async fn token_versions_increment(store: &dyn Store) {
    assert_eq!(
        store.user_state("t1").await.expect("state").token_version,
        0
    );
    let bump = || WriteOp::BumpTokenVersion { user: "t1".into() };
    let r = store.write(vec![bump(), bump()]).await.expect("write");
    assert_eq!(
        r,
        vec![WriteResult::TokenVersion(1), WriteResult::TokenVersion(2)]
    );
    assert_eq!(
        store.user_state("t1").await.expect("state").token_version,
        2
    );
}

pub async fn history_pages_without_cleared_or_deleted(store: &dyn Store) {
    const T0: i64 = 1_700_000_100_000;
    // Ten messages, one a second, except that 5 and 6 share a millisecond.
    let time = |seq: u64| T0 + 1000 * seq.min(5).max(seq.saturating_sub(1)) as i64;
    let ops = (1..=10)
        .map(|seq| {
            let mut m = private_append("h-a", "h-b", &format!("h{seq}"), "x");
            m.sent_time = time(seq);
            WriteOp::Append(m)
        })
        .collect();
    store.write(ops).await.expect("write");
    let conv = "h-a|h-b";
    let page = |user: &'static str, from: HistoryFrom, limit: usize| async move {
        let h = store
            .history(user, HistoryQuery::new(conv, from, limit))
            .await
            .expect("history");
        (
            h.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
            h.has_more,
        )
    };
    assert_eq!(
        page("h-b", HistoryFrom::BeforeSeq(u64::MAX), 4).await,
        (vec![7, 8, 9, 10], true)
    );
    assert_eq!(
        page("h-b", HistoryFrom::BeforeSeq(7), 4).await,
        (vec![3, 4, 5, 6], true)
    );
    assert_eq!(
        page("h-b", HistoryFrom::BeforeSeq(3), 4).await,
        (vec![1, 2], false)
    );
    assert_eq!(
        page("h-b", HistoryFrom::AfterSeq(0), 4).await,
        (vec![1, 2, 3, 4], true)
    );
    assert_eq!(
        page("h-b", HistoryFrom::AfterSeq(8), 4).await,
        (vec![9, 10], false)
    );
    assert_eq!(time(5), time(6), "two messages share a millisecond");
    assert_eq!(
        page("h-b", HistoryFrom::BeforeTime(time(6)), 10).await,
        (vec![1, 2, 3, 4], false),
        "both messages of that millisecond are after it"
    );
    assert_eq!(
        page("h-b", HistoryFrom::AfterTime(time(4)), 10).await,
        (vec![5, 6, 7, 8, 9, 10], false)
    );

    // Deleted for h-b only.
    let r = store
        .write(vec![WriteOp::DeleteForUser {
            user: "h-b".into(),
            conversation_id: conv.into(),
            seqs: vec![2, 9, 10],
        }])
        .await
        .expect("delete");
    assert_eq!(r, vec![WriteResult::Deleted]);
    assert_eq!(
        page("h-b", HistoryFrom::AfterSeq(0), 20).await.0,
        vec![1, 3, 4, 5, 6, 7, 8]
    );
    assert_eq!(
        page("h-a", HistoryFrom::AfterSeq(0), 20).await.0,
        (1..=10).collect::<Vec<_>>()
    );
    let b = one(store, "h-b", "h-a").await;
    assert_eq!(b.unread, 7, "deleted messages are not unread");
    assert_eq!(
        b.latest.as_ref().map(|m| m.seq),
        Some(8),
        "the newest message left"
    );
    assert_eq!(b.newest.as_ref().map(|m| m.seq), Some(10));

    // Cleared for h-b up to what was sent by the time of message 3: gone, and read.
    let mut u = private_update("h-b", "h-a", "h-ev1");
    u.clear_before_time = time(3);
    let (settings, _) = updated(store, u).await;
    assert_eq!((settings.cleared_seq, settings.read_seq), (3, 3));
    assert_eq!(
        page("h-b", HistoryFrom::BeforeSeq(u64::MAX), 20).await.0,
        vec![4, 5, 6, 7, 8]
    );
    assert_eq!(one(store, "h-b", "h-a").await.unread, 5);
    assert_eq!(page("h-a", HistoryFrom::AfterSeq(0), 20).await.0.len(), 10);
}

/// A read receipt template for `peer`, as the engine makes it.
pub fn receipt_for(peer: &str, uid: &str) -> AppendMessage {
    AppendMessage {
        uid: uid.into(),
        conversation_type: 0,
        conversation_id: format!("~{peer}"),
        target: peer.into(),
        sent_time: 1_700_000_000_000,
        msg_type: "tidings:read".into(),
        client_msg_id: uid.into(),
        recipients: vec![peer.into()],
        ..Default::default()
    }
}

pub async fn read_receipts_go_to_the_peer_when_the_position_moves(store: &dyn Store) {
    let ops = (0..3)
        .map(|i| WriteOp::Append(private_append("rr-a", "rr-b", &format!("m{i}"), "x")))
        .collect();
    store.write(ops).await.expect("write");
    let read = |seq: u64, n: u32| {
        let mut u = private_update("rr-b", "rr-a", &format!("rr-ev{n}"));
        u.read_seq = seq;
        u.receipt = Some(receipt_for("rr-a", &format!("rr-rc{n}")));
        WriteOp::UpdateConversation(Box::new(u))
    };
    let receipt = |r: &WriteResult| match r {
        WriteResult::ConversationUpdated { receipt, .. } => receipt.clone(),
        other => panic!("expected ConversationUpdated, got {other:?}"),
    };
    let r = store.write(vec![read(2, 1)]).await.expect("read");
    let (message, inbox_seq) = receipt(&r[0]).expect("a receipt when the position moves");
    let content: serde_json::Value = serde_json::from_str(&message.content).expect("json");
    assert_eq!(
        content,
        serde_json::json!({"conversationType": 1, "targetId": "rr-b", "readSeq": 2})
    );
    let inbox = store.inbox_after("rr-a", 0, 100).await.expect("inbox");
    assert_eq!(
        inbox.last().map(|e| (e.inbox_seq, e.message.uid.as_str())),
        Some((inbox_seq, "rr-rc1"))
    );
    // Not moving (backwards, or the same) sends nothing.
    let r = store
        .write(vec![read(1, 2), read(2, 3)])
        .await
        .expect("read");
    assert!(receipt(&r[0]).is_none() && receipt(&r[1]).is_none());
    assert_eq!(
        store
            .inbox_after("rr-a", inbox_seq, 100)
            .await
            .expect("inbox")
            .len(),
        0
    );
    // The reader's side of the conversation carries how far the other has read, as told; and a
    // list read with `changedSince` from before the receipt reports the conversation.
    let a = one(store, "rr-a", "rr-b").await;
    assert_eq!(a.peer_read_seq, 2, "as the receipt told");
    assert_eq!(one(store, "rr-b", "rr-a").await.peer_read_seq, 0);
    let changed = store
        .conversations(
            "rr-a",
            ConversationFilter {
                changed_since: Some(inbox_seq - 1),
                ..Default::default()
            },
        )
        .await
        .expect("changes");
    assert!(
        changed
            .conversations
            .iter()
            .any(|c| c.settings.target_id == "rr-b" && c.peer_read_seq == 2),
        "{changed:?}"
    );
    // A silent read (no receipt) moves the reader's position but not what the other side knows.
    let mut u = private_update("rr-b", "rr-a", "rr-ev4");
    u.read_seq = 3;
    updated(store, u).await;
    assert_eq!(one(store, "rr-b", "rr-a").await.settings.read_seq, 3);
    assert_eq!(one(store, "rr-a", "rr-b").await.peer_read_seq, 2);
}

pub async fn latest_is_the_newest_message_a_person_sees(store: &dyn Store) {
    let r = store
        .write(vec![
            WriteOp::Append(private_append("lt-a", "lt-b", "m1", "one")),
            WriteOp::Append(private_append("lt-a", "lt-b", "m2", "two")),
        ])
        .await
        .expect("write");
    let newest = appended(&r[1]).0.clone();
    let latest = |c: &crate::ConversationRecord| {
        let (n, l) = (c.newest.clone(), c.latest.clone());
        (
            n.map(|m| (m.seq, m.recalled)),
            l.map(|m| (m.seq, m.recalled)),
        )
    };
    let both = Some((newest.seq, false));
    // A reaction and an edit to the older message: events of the conversation with seqs of
    // their own, yet neither is its newest or latest message.
    let react = AmendAction::React {
        emoji: "👍".into(),
        add: true,
    };
    let edit = AmendAction::Edit {
        content: r#"{"text":"one!"}"#.into(),
        search_text: "one!".into(),
    };
    store
        .write(vec![
            private_amend("lt-b", "lt-a", 1, react, "lt-e1"),
            private_amend("lt-a", "lt-b", 1, edit, "lt-e2"),
        ])
        .await
        .expect("amend");
    for (user, other) in [("lt-a", "lt-b"), ("lt-b", "lt-a")] {
        let c = one(store, user, other).await;
        assert_eq!(latest(&c), (both, both), "{user}");
        assert_eq!(
            c.latest.as_ref().map(|m| m.content.as_str()),
            Some(newest.content.as_str())
        );
    }
    // A recall of the newest message: still the latest, shown recalled.
    let recall = AmendAction::Recall { not_before: 0 };
    store
        .write(vec![private_amend("lt-a", "lt-b", 2, recall, "lt-e3")])
        .await
        .expect("recall");
    let recalled = Some((newest.seq, true));
    assert_eq!(
        latest(&one(store, "lt-b", "lt-a").await),
        (recalled, recalled)
    );
    // An event after a removal does not bring the conversation back.
    let mut u = private_update("lt-b", "lt-a", "lt-ev1");
    u.remove = true;
    updated(store, u).await;
    let react = AmendAction::React {
        emoji: "🎉".into(),
        add: true,
    };
    store
        .write(vec![private_amend("lt-a", "lt-b", 1, react, "lt-e4")])
        .await
        .expect("amend");
    assert!(one(store, "lt-b", "lt-a").await.removed());
}

pub async fn blocked_senders_are_refused(store: &dyn Store) {
    let send = |cmid: &str| {
        let mut m = private_append("bl-a", "bl-b", cmid, "x");
        m.blocking_recipient = Some("bl-b".into());
        WriteOp::Append(m)
    };
    let block = |blocked: bool, other: &str| WriteOp::SetBlocked {
        user: "bl-b".into(),
        other: other.into(),
        blocked,
        max: 2,
    };
    store.write(vec![send("m1")]).await.expect("write");
    let r = store
        .write(vec![block(true, "bl-a"), send("m2"), send("m1")])
        .await
        .expect("write");
    assert_eq!(r[0], WriteResult::BlockSet);
    assert_eq!(r[1], WriteResult::Blocked, "a new message is refused");
    assert!(
        matches!(
            &r[2],
            WriteResult::Appended {
                duplicate: true,
                ..
            }
        ),
        "a resend of a message stored before the block keeps its first result"
    );
    assert_eq!(
        store.inbox_after("bl-b", 0, 10).await.expect("inbox").len(),
        1
    );
    // Bounded, idempotent, listed in order.
    let r = store
        .write(vec![
            block(true, "bl-a"),
            block(true, "bl-c"),
            block(true, "bl-d"),
        ])
        .await
        .expect("write");
    assert_eq!(
        r,
        [
            WriteResult::BlockSet,
            WriteResult::BlockSet,
            WriteResult::BlocklistFull
        ]
    );
    assert_eq!(
        store.blocklist("bl-b").await.expect("list"),
        ["bl-a", "bl-c"]
    );
    assert!(store.is_blocked("bl-b", "bl-a").await.expect("read"));
    assert!(
        !store.is_blocked("bl-a", "bl-b").await.expect("read"),
        "one way"
    );
    store
        .write(vec![block(false, "bl-a")])
        .await
        .expect("write");
    assert!(matches!(
        store.write(vec![send("m3")]).await.expect("write")[0],
        WriteResult::Appended {
            duplicate: false,
            ..
        }
    ));
    assert_eq!(store.blocklist("bl-b").await.expect("list"), ["bl-c"]);
    // Over a send limit: an earlier message is answered again, a new one is not stored.
    let mut again = private_append("bl-a", "bl-b", "m3", "x");
    again.only_if_stored = true;
    let mut new = private_append("bl-a", "bl-b", "m4", "x");
    new.only_if_stored = true;
    let r = store
        .write(vec![WriteOp::Append(again), WriteOp::Append(new)])
        .await
        .expect("write");
    assert!(matches!(
        r[0],
        WriteResult::Appended {
            duplicate: true,
            ..
        }
    ));
    assert_eq!(r[1], WriteResult::NotStored);
}

/// An amend of message `seq` of the private chat between `by` and `other`, for tests.
pub fn private_amend(by: &str, other: &str, seq: u64, action: AmendAction, uid: &str) -> WriteOp {
    let (a, b) = if by <= other {
        (by, other)
    } else {
        (other, by)
    };
    WriteOp::Amend(Box::new(Amend {
        by: by.into(),
        conversation_id: format!("{a}|{b}"),
        seq,
        action,
        event: AppendMessage {
            uid: uid.into(),
            conversation_type: 1,
            conversation_id: format!("{a}|{b}"),
            sender: by.into(),
            target: other.into(),
            sent_time: 1_700_000_000_000,
            client_msg_id: uid.into(),
            recipients: vec![by.into(), other.into()],
            ..Default::default()
        },
        blocking_recipient: Some(other.into()),
        moderated: false,
    }))
}

pub async fn recall_edit_and_reactions(store: &dyn Store) {
    let r = store
        .write(vec![
            WriteOp::Append(private_append("am-a", "am-b", "m1", "one")),
            WriteOp::Append(private_append("am-a", "am-b", "m2", "two")),
        ])
        .await
        .expect("write");
    let sent_time = appended(&r[1]).0.sent_time;
    let react = |by: &str, emoji: &str, add: bool, uid: &str| {
        let other = if by == "am-a" { "am-b" } else { "am-a" };
        let action = AmendAction::React {
            emoji: emoji.into(),
            add,
        };
        private_amend(by, other, 1, action, uid)
    };
    let one = |op: WriteOp| async move {
        let mut r = store.write(vec![op]).await.expect("amend");
        r.remove(0)
    };
    let amended = |r: WriteResult| match r {
        WriteResult::Amended { message, event } => (message, event),
        other => panic!("expected Amended, got {other:?}"),
    };
    let reactions = |m: &crate::StoredMessage| {
        m.reactions
            .iter()
            .map(|r| (r.emoji.clone(), r.users.clone()))
            .collect::<Vec<_>>()
    };

    let (m, event) = amended(one(react("am-b", "👍", true, "am-e1")).await);
    assert_eq!(
        reactions(&m),
        [("👍".to_string(), vec!["am-b".to_string()])]
    );
    let (event, inbox) = event.expect("an event");
    assert_eq!(
        (event.seq, event.msg_type.as_str()),
        (3, "tidings:reaction")
    );
    assert_eq!(inbox.len(), 2, "both participants get the event");
    let content: serde_json::Value = serde_json::from_str(&event.content).expect("json");
    assert_eq!(
        content,
        serde_json::json!({"action": "react", "seq": 1, "emoji": "👍", "userId": "am-b", "added": true})
    );
    let (m, _) = amended(one(react("am-a", "👍", true, "am-e2")).await);
    assert_eq!(
        reactions(&m),
        [(
            "👍".to_string(),
            vec!["am-a".to_string(), "am-b".to_string()]
        )]
    );
    let (_, event) = amended(one(react("am-b", "👍", true, "am-e3")).await);
    assert!(event.is_none(), "a reaction already there changes nothing");
    let (m, event) = amended(one(react("am-b", "👍", false, "am-e4")).await);
    assert!(event.is_some());
    assert_eq!(
        reactions(&m),
        [("👍".to_string(), vec!["am-a".to_string()])]
    );

    // Only the sender edits and recalls.
    let edit = |by: &str, seq: u64, uid: &str| {
        let other = if by == "am-a" { "am-b" } else { "am-a" };
        let action = AmendAction::Edit {
            content: r#"{"text":"1!"}"#.into(),
            search_text: "1!".into(),
        };
        private_amend(by, other, seq, action, uid)
    };
    let recall = |by: &str, seq: u64, not_before: i64, uid: &str| {
        let other = if by == "am-a" { "am-b" } else { "am-a" };
        private_amend(by, other, seq, AmendAction::Recall { not_before }, uid)
    };
    assert_eq!(
        one(edit("am-b", 1, "am-e5")).await,
        WriteResult::AmendRefused(AmendRefusal::NotSender)
    );
    let (m, _) = amended(one(edit("am-a", 1, "am-e6")).await);
    assert!(m.edited && m.content == r#"{"text":"1!"}"#);
    assert_eq!(
        one(recall("am-b", 2, 0, "am-e7")).await,
        WriteResult::AmendRefused(AmendRefusal::NotSender)
    );
    assert_eq!(
        one(recall("am-a", 2, sent_time + 1, "am-e8")).await,
        WriteResult::AmendRefused(AmendRefusal::TooLate)
    );
    assert_eq!(one_unread(store, "am-b", "am-a").await, 2);
    let (m, event) = amended(one(recall("am-a", 2, sent_time, "am-e9")).await);
    assert!(m.recalled && m.content == "{}" && event.is_some());
    assert_eq!(
        one_unread(store, "am-b", "am-a").await,
        1,
        "a recalled message is not unread"
    );
    let (_, event) = amended(one(recall("am-a", 2, 0, "am-e10")).await);
    assert!(event.is_none(), "recalling twice changes nothing");
    assert_eq!(
        one(edit("am-a", 2, "am-e11")).await,
        WriteResult::AmendRefused(AmendRefusal::Recalled)
    );
    let react_2 = private_amend(
        "am-b",
        "am-a",
        2,
        AmendAction::React {
            emoji: "👍".into(),
            add: true,
        },
        "am-e12",
    );
    assert_eq!(
        one(react_2).await,
        WriteResult::AmendRefused(AmendRefusal::Recalled)
    );
    // Events and missing messages cannot be amended.
    assert_eq!(
        one(edit("am-b", 3, "am-e13")).await,
        WriteResult::AmendRefused(AmendRefusal::NotFound)
    );
    assert_eq!(
        one(edit("am-a", 99, "am-e14")).await,
        WriteResult::AmendRefused(AmendRefusal::NotFound)
    );

    // Reactions are bounded per user, and a blocked user cannot react.
    for (i, emoji) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let (_, event) = amended(one(react("am-b", emoji, true, &format!("am-c{i}"))).await);
        assert!(event.is_some());
    }
    let (m, _) = amended(one(react("am-b", "e", true, "am-c4")).await);
    assert_eq!(
        m.reactions
            .iter()
            .filter(|r| r.users.contains(&"am-b".to_string()))
            .count(),
        5
    );
    assert_eq!(
        one(react("am-b", "f", true, "am-c5")).await,
        WriteResult::AmendRefused(AmendRefusal::TooManyReactions)
    );
    assert!(
        matches!(
            one(react("am-b", "e", true, "am-c6")).await,
            WriteResult::Amended { event: None, .. }
        ),
        "one already there is not another"
    );
    store
        .write(vec![WriteOp::SetBlocked {
            user: "am-a".into(),
            other: "am-b".into(),
            blocked: true,
            max: 10,
        }])
        .await
        .expect("block");
    assert_eq!(
        one(react("am-b", "a", false, "am-c7")).await,
        WriteResult::AmendRefused(AmendRefusal::Blocked)
    );

    // Sync shows the final state.
    let inbox = store.inbox_after("am-b", 0, 100).await.expect("inbox");
    let first = &inbox[0].message;
    assert!(
        first.edited && first.reactions.len() == 6,
        "👍 and five more"
    );
    assert!(inbox[1].message.recalled);
}

async fn one_unread(store: &dyn Store, user: &str, target: &str) -> u64 {
    one(store, user, target).await.unread
}

pub async fn search_finds_substrings_of_what_the_user_can_see(store: &dyn Store) {
    store
        .write(vec![
            WriteOp::Append(private_append("s-a", "s-b", "m1", "你好世界")),
            WriteOp::Append(private_append("s-a", "s-b", "m2", "hello world")),
            WriteOp::Append(private_append("s-a", "s-b", "m3", "Hello again")),
            WriteOp::Append(private_append("s-c", "s-b", "m1", "你好")),
            WriteOp::DeleteForUser {
                user: "s-b".into(),
                conversation_id: "s-a|s-b".into(),
                seqs: vec![2],
            },
        ])
        .await
        .expect("write");
    let texts = |page: &crate::SearchPage| {
        page.messages
            .iter()
            .map(|m| {
                let v: serde_json::Value = serde_json::from_str(&m.content).expect("json");
                v["text"].as_str().unwrap_or_default().to_string()
            })
            .collect::<Vec<_>>()
    };
    let find = |user: &'static str, q: &'static str, conv: Option<&'static str>, before, limit| async move {
        store
            .search(user, SearchQuery::new(q, conv, before, limit))
            .await
            .expect("search")
    };
    // Two characters (no trigram): found by scanning; newest first; both conversations.
    assert_eq!(
        texts(&find("s-b", "你好", None, 0, 10).await),
        ["你好", "你好世界"]
    );
    assert_eq!(
        texts(&find("s-b", "好世界", None, 0, 10).await),
        ["你好世界"]
    );
    // Case-insensitive for ASCII; what the user deleted is not found, the other side still has it.
    assert_eq!(
        texts(&find("s-b", "HELLO", None, 0, 10).await),
        ["Hello again"]
    );
    assert_eq!(
        texts(&find("s-a", "hello", None, 0, 10).await),
        ["Hello again", "hello world"]
    );
    assert_eq!(
        texts(&find("s-b", "你好", Some("s-a|s-b"), 0, 10).await),
        ["你好世界"]
    );
    assert!(
        find("s-x", "你好", None, 0, 10).await.messages.is_empty(),
        "not a participant"
    );
    assert!(
        find("s-b", "%", None, 0, 10).await.messages.is_empty(),
        "LIKE patterns are literal"
    );
    // Pages.
    let first = find("s-b", "你好", None, 0, 1).await;
    assert_eq!(texts(&first), ["你好"]);
    let next = first.next.expect("a second page");
    let second = find("s-b", "你好", None, next, 1).await;
    assert_eq!(
        (texts(&second), second.next),
        (vec!["你好世界".to_string()], None)
    );
    // A recalled message is gone from search.
    store
        .write(vec![private_amend(
            "s-a",
            "s-b",
            3,
            AmendAction::Recall { not_before: 0 },
            "s-e1",
        )])
        .await
        .expect("recall");
    assert_eq!(
        texts(&find("s-a", "hello", None, 0, 10).await),
        ["hello world"]
    );
}

pub async fn last_seen_only_moves_forward(store: &dyn Store) {
    let set = |user: &str, time| WriteOp::SetLastSeen {
        user: user.into(),
        time,
    };
    store
        .write(vec![set("ls-a", 2_000), set("ls-a", 1_000), set("ls-b", 5)])
        .await
        .expect("write");
    let users = ["ls-a", "ls-b", "ls-nobody"].map(String::from);
    assert_eq!(store.last_seen(&users).await.expect("read"), [2_000, 5, 0]);
    // A user's token version is untouched by it.
    assert_eq!(
        store.user_state("ls-a").await.expect("read").token_version,
        0
    );

    assert_eq!(store.quiet_hours("ls-a").await.expect("read"), (0, 0));
    store
        .write(vec![WriteOp::SetQuietHours {
            user: "ls-a".into(),
            start_minute: 22 * 60,
            minutes: 480,
        }])
        .await
        .expect("write");
    assert_eq!(store.quiet_hours("ls-a").await.expect("read"), (1320, 480));
    assert_eq!(
        store.last_seen(&users[..1]).await.expect("read"),
        [2_000],
        "kept"
    );
}

/// The writes of one batch store what they store one per batch: appends (with and without
/// mentions or search text, counted or not, to oneself), devices' cursors and last-seen times
/// mixed among them, and a batch in which one append is refused. A store may apply a batch
/// differently (PostgreSQL sends its appends as one statement); what it stores may not differ.
pub async fn a_batch_stores_what_its_writes_store_one_by_one(store: &dyn Store) {
    let batches = |p: &str| -> Vec<Vec<WriteOp>> {
        let u = |s: &str| format!("{p}-{s}");
        let send =
            |from: &str, to: &str, id: &str, text: &str| private_append(&u(from), &u(to), id, text);
        let mut mentions = send("a", "c", "3", "with a mention");
        mentions.mentions = vec![u("c")];
        let mut quiet = send("c", "a", "4", "");
        quiet.counted = false;
        quiet.mention_all = true;
        let mut refused = send("a", "d", "7", "refused");
        refused.blocking_recipient = Some(u("d"));
        vec![
            vec![WriteOp::SetBlocked {
                user: u("d"),
                other: u("a"),
                blocked: true,
                max: 10,
            }],
            vec![
                WriteOp::Append(send("a", "b", "1", "hello one")),
                WriteOp::SetCursor {
                    user: u("a"),
                    device: "phone".into(),
                    cursor: 5,
                },
                WriteOp::Append(send("b", "a", "2", "second")),
                WriteOp::Append(mentions),
                WriteOp::SetLastSeen {
                    user: u("b"),
                    time: 7,
                },
                WriteOp::Append(quiet),
                WriteOp::Append(send("a", "a", "5", "to myself")),
                WriteOp::Append(send("b", "a", "6", "one more")),
            ],
            vec![
                WriteOp::Append(send("a", "b", "8", "before")),
                WriteOp::Append(refused),
                WriteOp::Append(send("b", "a", "9", "after")),
            ],
        ]
    };
    // Everything the store answers and reads back, with the user ids' prefix taken out.
    let seen = |p: &'static str, results: Vec<WriteResult>| async move {
        let mut seen = vec![format!("{results:?}")];
        for user in ["a", "b", "c", "d"] {
            let user = format!("{p}-{user}");
            seen.push(format!(
                "{:?}",
                store.inbox_after(&user, 0, 100).await.expect("inbox")
            ));
            let mut list = store
                .conversations(&user, ConversationFilter::default())
                .await
                .expect("conversations")
                .conversations;
            list.sort_by(|x, y| format!("{x:?}").cmp(&format!("{y:?}")));
            seen.push(format!("{list:?}"));
            let found = store
                .search(&user, SearchQuery::new("o", None, 0, 100))
                .await
                .expect("search");
            seen.push(format!("{:?}", found.messages));
        }
        seen.push(format!(
            "{:?}",
            store.device_cursor(&format!("{p}-a"), "phone").await
        ));
        seen.push(format!(
            "{:?}",
            store
                .last_seen(&[format!("{p}-b")])
                .await
                .expect("last seen")
        ));
        seen.into_iter()
            .map(|s| s.replace(p, "P"))
            .collect::<Vec<_>>()
    };
    let mut one_by_one = Vec::new();
    for batch in batches("bw1") {
        for op in batch {
            one_by_one.extend(store.write(vec![op]).await.expect("write"));
        }
    }
    let mut batched = Vec::new();
    for batch in batches("bw2") {
        batched.extend(store.write(batch).await.expect("write"));
    }
    assert!(
        batched.contains(&WriteResult::Blocked),
        "the refused append is refused: {batched:?}"
    );
    let (one_by_one, batched) = (seen("bw1", one_by_one).await, seen("bw2", batched).await);
    for (one, all) in one_by_one.iter().zip(&batched) {
        assert_eq!(one, all);
    }
}

/// An append of a group message, for tests.
pub fn group_append(from: &str, group: &str, client_msg_id: &str, text: &str) -> AppendMessage {
    AppendMessage {
        uid: format!("uid-{from}-{client_msg_id}"),
        conversation_type: crate::GROUP,
        conversation_id: crate::group_conversation_id(group),
        sender: from.into(),
        target: group.into(),
        sent_time: 1_700_000_000_000,
        msg_type: "text".into(),
        content: format!(r#"{{"text":{text:?}}}"#),
        client_msg_id: client_msg_id.into(),
        digest: format!("digest-{group}-{text}"),
        recipients: vec![from.into()],
        counted: true,
        to_group: true,
        search_text: text.into(),
        ..Default::default()
    }
}

/// A group change by `by`, with its notification, for tests.
pub fn group_change(group: &str, by: &str, action: GroupAction, uid: &str) -> WriteOp {
    permitted_change(group, by, action, Permit::App, uid)
}

/// A group change by `by` under `permit`, with its notification, for tests.
pub fn permitted_change(
    group: &str,
    by: &str,
    action: GroupAction,
    permit: Permit,
    uid: &str,
) -> WriteOp {
    WriteOp::Group(Box::new(GroupChange {
        group: group.into(),
        by: by.into(),
        action,
        permit,
        max_members: 5,
        notification: AppendMessage {
            uid: uid.into(),
            conversation_type: crate::GROUP,
            conversation_id: crate::group_conversation_id(group),
            sender: by.into(),
            target: group.into(),
            sent_time: 1_700_000_000_000,
            msg_type: "tidings:group".into(),
            client_msg_id: uid.into(),
            ..Default::default()
        },
    }))
}

/// The users of inbox entries, sorted.
fn users_of(inbox: &[(String, u64)]) -> Vec<&str> {
    let mut users: Vec<&str> = inbox.iter().map(|(u, _)| u.as_str()).collect();
    users.sort();
    users
}

async fn one_write(store: &dyn Store, op: WriteOp) -> WriteResult {
    store
        .write(vec![op])
        .await
        .expect("write")
        .pop()
        .expect("a result")
}

/// The notification of a group change: its content and the users it went to.
async fn group_changed(store: &dyn Store, op: WriteOp) -> (serde_json::Value, Vec<String>) {
    match one_write(store, op).await {
        WriteResult::GroupChanged {
            notification: Some((message, inbox)),
            ..
        } => (
            serde_json::from_str(&message.content).expect("notification content is JSON"),
            users_of(&inbox).into_iter().map(String::from).collect(),
        ),
        other => panic!("expected a group change with a notification, got {other:?}"),
    }
}

async fn group_record(store: &dyn Store, user: &str, group: &str) -> crate::ConversationRecord {
    let mut list = store
        .conversations(
            user,
            ConversationFilter {
                one: Some((crate::GROUP, group.into())),
                ..Default::default()
            },
        )
        .await
        .expect("read");
    list.conversations
        .pop()
        .expect("the member has the group's conversation")
}

async fn group_history(store: &dyn Store, user: &str, group: &str) -> Vec<String> {
    store
        .history(
            user,
            HistoryQuery::new(
                &crate::group_conversation_id(group),
                HistoryFrom::AfterSeq(0),
                100,
            ),
        )
        .await
        .expect("history")
        .messages
        .into_iter()
        .map(|m| {
            if m.msg_type == "tidings:group" {
                let v: serde_json::Value = serde_json::from_str(&m.content).expect("JSON");
                format!("#{}", v["operation"].as_str().unwrap_or("?"))
            } else {
                m.content
            }
        })
        .collect()
}

pub async fn groups_membership_and_fan_out(store: &dyn Store) {
    let create = GroupAction::Create {
        kind: GroupKind::Managed,
        owner: "g-a".into(),
        name: "Team".into(),
        portrait: String::new(),
        extra: String::new(),
        members: vec!["g-b".into(), "g-c".into(), "g-a".into()],
    };
    let (content, to) =
        group_changed(store, group_change("g1", "g-a", create.clone(), "g-n1")).await;
    assert_eq!(content["operation"], "create");
    assert_eq!(content["userIds"], serde_json::json!(["g-a", "g-b", "g-c"]));
    assert_eq!(to, ["g-a", "g-b", "g-c"]);
    assert_eq!(
        one_write(store, group_change("g1", "g-a", create, "g-n1b")).await,
        WriteResult::GroupRefused(GroupRefusal::Exists)
    );
    let info = store.group("g1").await.expect("read").expect("the group");
    assert_eq!(
        (info.owner.as_str(), info.member_count, info.dismissed),
        ("g-a", 3, 0)
    );

    // One message, one inbox entry per member.
    let r = one_write(
        store,
        WriteOp::Append(group_append("g-b", "g1", "m1", "hello")),
    )
    .await;
    let (message, inbox, duplicate) = appended(&r);
    assert_eq!((message.seq, duplicate), (2, false));
    assert_eq!(users_of(inbox), ["g-a", "g-b", "g-c"]);
    // A resend is answered with the sender's first entry.
    let again = one_write(
        store,
        WriteOp::Append(group_append("g-b", "g1", "m1", "hello")),
    )
    .await;
    let (_, again_inbox, duplicate) = appended(&again);
    assert!(duplicate);
    assert_eq!(
        again_inbox,
        inbox
            .iter()
            .filter(|(u, _)| u == "g-b")
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(
        one_write(
            store,
            WriteOp::Append(group_append("g-d", "g1", "m2", "hi"))
        )
        .await,
        WriteResult::GroupRefused(GroupRefusal::NotMember)
    );
    assert_eq!(
        one_write(
            store,
            WriteOp::Append(group_append("g-d", "nogroup", "m3", "hi"))
        )
        .await,
        WriteResult::GroupRefused(GroupRefusal::NotFound)
    );

    // A member who joins sees the group from their join on, with nothing unread.
    let (content, to) = group_changed(
        store,
        group_change(
            "g1",
            "g-a",
            GroupAction::AddMembers(vec!["g-d".into(), "g-b".into()]),
            "g-n2",
        ),
    )
    .await;
    assert_eq!(content["userIds"], serde_json::json!(["g-d"]));
    assert_eq!(to, ["g-a", "g-b", "g-c", "g-d"]);
    assert_eq!(group_history(store, "g-d", "g1").await, ["#add"]);
    assert_eq!(group_record(store, "g-d", "g1").await.unread, 0);
    assert_eq!(
        group_history(store, "g-c", "g1").await,
        ["#create", r#"{"text":"hello"}"#, "#add"]
    );
    // Adding members already there changes nothing.
    assert!(matches!(
        one_write(
            store,
            group_change(
                "g1",
                "g-a",
                GroupAction::AddMembers(vec!["g-d".into()]),
                "g-n3"
            )
        )
        .await,
        WriteResult::GroupChanged {
            notification: None,
            ..
        }
    ));
    // The member cap (5 here) refuses an add that would pass it, whole.
    assert_eq!(
        one_write(
            store,
            group_change(
                "g1",
                "g-a",
                GroupAction::AddMembers(vec!["g-e".into(), "g-f".into()]),
                "g-n4"
            )
        )
        .await,
        WriteResult::GroupRefused(GroupRefusal::Full)
    );

    // Mentions show in the mentioned members' entries until they read.
    let mut m = group_append("g-a", "g1", "m4", "@c look");
    m.mentions = vec!["g-c".into()];
    appended(&one_write(store, WriteOp::Append(m)).await);
    let mut m = group_append("g-b", "g1", "m5", "@all");
    m.mention_all = true;
    appended(&one_write(store, WriteOp::Append(m)).await);
    let c = group_record(store, "g-c", "g1").await;
    assert_eq!((c.unread, c.mentioned), (3, 2));
    let d = group_record(store, "g-d", "g1").await;
    assert_eq!((d.unread, d.mentioned), (2, 1));
    let a = group_record(store, "g-a", "g1").await;
    assert_eq!(
        (a.unread, a.mentioned),
        (2, 1),
        "one's own messages are not unread"
    );
    assert_eq!(a.latest.as_ref().map(|m| m.mention_all), Some(true));

    // A directed message reaches only its audience (members among them) and the sender.
    let mut m = group_append("g-a", "g1", "m6", "psst");
    m.audience = vec!["g-b".into(), "g-nobody".into()];
    let r = one_write(store, WriteOp::Append(m)).await;
    let (message, inbox, _) = appended(&r);
    assert_eq!(users_of(inbox), ["g-a", "g-b"]);
    assert_eq!(message.audience, ["g-b"]);
    assert!(
        group_history(store, "g-b", "g1")
            .await
            .contains(&r#"{"text":"psst"}"#.to_string())
    );
    assert!(
        !group_history(store, "g-c", "g1")
            .await
            .contains(&r#"{"text":"psst"}"#.to_string())
    );
    let c = group_record(store, "g-c", "g1").await;
    assert_eq!(c.unread, 3, "a message directed to others is not unread");
    assert_ne!(c.latest.as_ref().map(|m| m.seq), Some(message.seq));

    // Read receipts come from read positions.
    let seq = message.seq - 1; // the @all message
    let receipt = store
        .group_receipt("g1", seq)
        .await
        .expect("read")
        .expect("message");
    assert_eq!(receipt.sender, "g-b");
    assert_eq!(
        (receipt.read.len(), receipt.unread),
        (0, vec!["g-a".to_string(), "g-c".into(), "g-d".into()])
    );
    let mut read = private_update("g-c", "g1", "g-read-1");
    read.conversation_type = crate::GROUP;
    read.conversation_id = crate::group_conversation_id("g1");
    read.read_seq = seq;
    updated(store, read).await;
    let receipt = store
        .group_receipt("g1", seq)
        .await
        .expect("read")
        .expect("message");
    assert_eq!(
        (receipt.read, receipt.unread),
        (
            vec!["g-c".to_string()],
            vec!["g-a".to_string(), "g-d".into()]
        )
    );
    // The directed message's receipt counts only its audience.
    let receipt = store
        .group_receipt("g1", message.seq)
        .await
        .expect("read")
        .expect("message");
    assert_eq!(
        (receipt.read.len(), receipt.unread),
        (0, vec!["g-b".to_string()])
    );
    assert_eq!(store.group_receipt("g1", 999).await.expect("read"), None);

    // Muting one member, then everyone but the owner.
    let forever = i64::MAX;
    group_changed(
        store,
        group_change(
            "g1",
            "g-a",
            GroupAction::Mute {
                user: Some("g-b".into()),
                until: forever,
            },
            "g-n5",
        ),
    )
    .await;
    assert_eq!(
        one_write(store, WriteOp::Append(group_append("g-b", "g1", "m7", "x"))).await,
        WriteResult::GroupRefused(GroupRefusal::Muted)
    );
    appended(&one_write(store, WriteOp::Append(group_append("g-c", "g1", "m8", "x"))).await);
    group_changed(
        store,
        group_change(
            "g1",
            "g-a",
            GroupAction::Mute {
                user: None,
                until: forever,
            },
            "g-n6",
        ),
    )
    .await;
    assert_eq!(
        one_write(store, WriteOp::Append(group_append("g-c", "g1", "m9", "x"))).await,
        WriteResult::GroupRefused(GroupRefusal::Muted)
    );
    appended(
        &one_write(
            store,
            WriteOp::Append(group_append("g-a", "g1", "m10", "owner speaks")),
        )
        .await,
    );
    group_changed(
        store,
        group_change(
            "g1",
            "g-a",
            GroupAction::Mute {
                user: None,
                until: 0,
            },
            "g-n7",
        ),
    )
    .await;
    appended(
        &one_write(
            store,
            WriteOp::Append(group_append("g-c", "g1", "m11", "x")),
        )
        .await,
    );

    // A removed member gets the notification, and nothing after it.
    let (content, to) = group_changed(
        store,
        group_change(
            "g1",
            "g-a",
            GroupAction::RemoveMembers(vec!["g-c".into()]),
            "g-n8",
        ),
    )
    .await;
    assert_eq!(content["operation"], "remove");
    assert!(to.contains(&"g-c".to_string()));
    let r = one_write(
        store,
        WriteOp::Append(group_append("g-a", "g1", "m12", "after")),
    )
    .await;
    let (after, inbox, _) = appended(&r);
    assert_eq!(users_of(inbox), ["g-a", "g-b", "g-d"]);
    assert_eq!(
        group_history(store, "g-c", "g1")
            .await
            .last()
            .map(String::as_str),
        Some("#remove")
    );
    let c = group_record(store, "g-c", "g1").await;
    assert!(c.latest.as_ref().is_some_and(|m| m.seq < after.seq));
    assert_eq!(c.settings.until_seq, after.seq - 1);
    assert!(!store.is_group_member("g1", "g-c").await.expect("read"));
    assert!(store.is_group_member("g1", "g-d").await.expect("read"));

    // The owner quits: the longest-standing member takes over.
    let (content, _) = group_changed(
        store,
        group_change("g1", "g-a", GroupAction::Quit("g-a".into()), "g-n9"),
    )
    .await;
    assert_eq!(
        (content["operation"].as_str(), content["ownerId"].as_str()),
        (Some("quit"), Some("g-b"))
    );
    assert_eq!(
        store.group("g1").await.expect("read").expect("group").owner,
        "g-b"
    );
    assert_eq!(
        one_write(
            store,
            group_change("g1", "g-a", GroupAction::Quit("g-a".into()), "g-n10")
        )
        .await,
        WriteResult::GroupRefused(GroupRefusal::NotMember)
    );

    // Members page in the order they joined.
    let page = store.group_members("g1", 0, 1).await.expect("read");
    assert_eq!(
        page.members
            .iter()
            .map(|m| m.user.as_str())
            .collect::<Vec<_>>(),
        ["g-b"]
    );
    let rest = store
        .group_members("g1", page.next.expect("more"), 10)
        .await
        .expect("read");
    assert_eq!(
        rest.members
            .iter()
            .map(|m| m.user.as_str())
            .collect::<Vec<_>>(),
        ["g-d"]
    );
    assert_eq!(rest.next, None);
    assert_eq!(
        store
            .user_groups("g-d")
            .await
            .expect("read")
            .iter()
            .map(|g| g.id.as_str())
            .collect::<Vec<_>>(),
        ["g1"]
    );

    // Dismissing tells every member, ends their views, and refuses what follows.
    let (content, to) = group_changed(
        store,
        group_change("g1", "g-b", GroupAction::Dismiss, "g-n11"),
    )
    .await;
    assert_eq!(content["operation"], "dismiss");
    assert_eq!(to, ["g-b", "g-d"]);
    assert_eq!(
        one_write(
            store,
            WriteOp::Append(group_append("g-b", "g1", "m13", "x"))
        )
        .await,
        WriteResult::GroupRefused(GroupRefusal::Dismissed)
    );
    assert_eq!(
        one_write(
            store,
            group_change(
                "g1",
                "g-b",
                GroupAction::AddMembers(vec!["g-c".into()]),
                "g-n12"
            )
        )
        .await,
        WriteResult::GroupRefused(GroupRefusal::Dismissed)
    );
    assert!(store.user_groups("g-d").await.expect("read").is_empty());
    assert!(
        store
            .group("g1")
            .await
            .expect("read")
            .expect("group")
            .dismissed
            > 0
    );
}

/// A group created by the app server, of `kind`, for tests.
fn create_group(kind: GroupKind, owner: &str, members: &[&str]) -> GroupAction {
    GroupAction::Create {
        kind,
        owner: owner.into(),
        name: String::new(),
        portrait: String::new(),
        extra: String::new(),
        members: members.iter().map(|m| m.to_string()).collect(),
    }
}

/// The answer to a change that changed nothing: the group as it is.
fn unchanged(r: WriteResult) -> crate::GroupInfo {
    match r {
        WriteResult::GroupChanged {
            group,
            notification: None,
        } => group,
        other => panic!("expected an unchanged group, got {other:?}"),
    }
}

pub async fn open_groups_are_made_and_joined_by_naming_them(store: &dyn Store) {
    let join = |user: &str, group: &str, uid: &str| {
        group_change(group, user, GroupAction::Join(user.into()), uid)
    };
    // Naming a group that does not exist makes it, open, with the user as owner and member.
    let (content, to) = group_changed(store, join("o-a", "o1", "o-n1")).await;
    assert_eq!(content["operation"], "create");
    assert_eq!(content["kind"], "open");
    assert_eq!(content["ownerId"], "o-a");
    assert_eq!(to, ["o-a"]);
    let info = store.group("o1").await.expect("read").expect("made");
    assert_eq!(
        (info.kind, info.owner.as_str(), info.member_count),
        (GroupKind::Open, "o-a", 1)
    );
    // Another user naming it joins it.
    let (content, to) = group_changed(store, join("o-b", "o1", "o-n2")).await;
    assert_eq!(content["operation"], "add");
    assert_eq!(content["userIds"], serde_json::json!(["o-b"]));
    assert_eq!(to, ["o-a", "o-b"]);
    // A member naming it again changes nothing.
    let again = unchanged(one_write(store, join("o-b", "o1", "o-n3")).await);
    assert_eq!((again.kind, again.member_count), (GroupKind::Open, 2));
    // Its messages reach every member, as any group's do.
    let r = one_write(
        store,
        WriteOp::Append(group_append("o-b", "o1", "o-m1", "hi")),
    )
    .await;
    assert_eq!(users_of(appended(&r).1), ["o-a", "o-b"]);
    // One id space: no group of any kind can be made with its id.
    assert_eq!(
        one_write(
            store,
            group_change(
                "o1",
                "o-x",
                create_group(GroupKind::Managed, "o-x", &[]),
                "o-n4"
            )
        )
        .await,
        WriteResult::GroupRefused(GroupRefusal::Exists)
    );

    // A managed group or a discussion is closed to non-members naming it; a member naming it
    // is answered with it, unchanged.
    for (id, kind) in [("o-m", GroupKind::Managed), ("o-d", GroupKind::Discussion)] {
        group_changed(
            store,
            group_change(
                id,
                "o-a",
                create_group(kind, "o-a", &[]),
                &format!("{id}-n1"),
            ),
        )
        .await;
        assert_eq!(
            one_write(store, join("o-c", id, &format!("{id}-n2"))).await,
            WriteResult::GroupRefused(GroupRefusal::NotMember)
        );
        assert!(!store.is_group_member(id, "o-c").await.expect("read"));
        let own = unchanged(one_write(store, join("o-a", id, &format!("{id}-n3"))).await);
        assert_eq!((own.kind, own.member_count), (kind, 1));
    }

    // An open group has the same maximum of members.
    for (i, user) in ["o-c", "o-d", "o-e"].into_iter().enumerate() {
        group_changed(store, join(user, "o1", &format!("o-n1{i}"))).await;
    }
    assert_eq!(
        one_write(store, join("o-f", "o1", "o-n20")).await,
        WriteResult::GroupRefused(GroupRefusal::Full)
    );
    // A dismissed group stays dismissed: naming it does not make it again.
    group_changed(
        store,
        group_change("o1", "o-a", GroupAction::Dismiss, "o-n21"),
    )
    .await;
    assert_eq!(
        one_write(store, join("o-a", "o1", "o-n22")).await,
        WriteResult::GroupRefused(GroupRefusal::Dismissed)
    );
}

pub async fn discussions_are_managed_by_their_members(store: &dyn Store) {
    let change = |by: &str, action: GroupAction, permit: Permit, uid: &str| {
        permitted_change("d1", by, action, permit, uid)
    };
    let add =
        |users: &[&str]| GroupAction::AddMembers(users.iter().map(|u| u.to_string()).collect());
    let invites = |open: bool| GroupAction::Update {
        name: None,
        portrait: None,
        extra: None,
        invite_open: Some(open),
    };
    let (content, _) = group_changed(
        store,
        group_change(
            "d1",
            "d-a",
            create_group(GroupKind::Discussion, "d-a", &["d-b"]),
            "d-n1",
        ),
    )
    .await;
    assert_eq!(content["kind"], "discussion");
    let info = store.group("d1").await.expect("read").expect("made");
    assert_eq!((info.kind, info.invite_open), (GroupKind::Discussion, true));

    // While invitations are open, any member adds members.
    let (content, to) =
        group_changed(store, change("d-b", add(&["d-c"]), Permit::Inviter, "d-n2")).await;
    assert_eq!(content["operation"], "add");
    assert_eq!(to, ["d-a", "d-b", "d-c"]);
    // Only the owner closes them.
    assert_eq!(
        one_write(store, change("d-b", invites(false), Permit::Owner, "d-n3")).await,
        WriteResult::GroupRefused(GroupRefusal::NotOwner)
    );
    let (content, _) =
        group_changed(store, change("d-a", invites(false), Permit::Owner, "d-n4")).await;
    assert_eq!(
        (&content["operation"], &content["inviteOpen"]),
        (&"update".into(), &false.into())
    );
    assert!(
        !store
            .group("d1")
            .await
            .expect("read")
            .expect("d1")
            .invite_open
    );
    // Closed: only the owner adds.
    assert_eq!(
        one_write(store, change("d-b", add(&["d-d"]), Permit::Inviter, "d-n5")).await,
        WriteResult::GroupRefused(GroupRefusal::InvitesClosed)
    );
    assert!(!store.is_group_member("d1", "d-d").await.expect("read"));
    group_changed(store, change("d-a", add(&["d-d"]), Permit::Inviter, "d-n6")).await;
    // Only the owner removes.
    let remove = GroupAction::RemoveMembers(vec!["d-c".into()]);
    assert_eq!(
        one_write(store, change("d-b", remove.clone(), Permit::Owner, "d-n7")).await,
        WriteResult::GroupRefused(GroupRefusal::NotOwner)
    );
    let (content, to) = group_changed(store, change("d-a", remove, Permit::Owner, "d-n8")).await;
    assert_eq!(content["operation"], "remove");
    assert_eq!(to, ["d-a", "d-b", "d-c", "d-d"]);
    // Any member renames it; a non-member changes nothing.
    let rename = GroupAction::Update {
        name: Some("Plans".into()),
        portrait: None,
        extra: None,
        invite_open: None,
    };
    let (content, _) =
        group_changed(store, change("d-b", rename.clone(), Permit::Member, "d-n9")).await;
    assert_eq!(content["name"], "Plans");
    assert_eq!(
        one_write(
            store,
            change("d-c", rename.clone(), Permit::Member, "d-n10")
        )
        .await,
        WriteResult::GroupRefused(GroupRefusal::NotMember)
    );
    assert_eq!(
        one_write(
            store,
            change("d-c", add(&["d-e"]), Permit::Inviter, "d-n11")
        )
        .await,
        WriteResult::GroupRefused(GroupRefusal::NotMember)
    );
    // The app server still manages it: it adds while invitations are closed.
    group_changed(store, change("d-a", add(&["d-e"]), Permit::App, "d-n12")).await;
    // An owner who quits hands it over, as in any group.
    let (content, _) = group_changed(
        store,
        change("d-a", GroupAction::Quit("d-a".into()), Permit::App, "d-n13"),
    )
    .await;
    assert_eq!(content["ownerId"], "d-b");

    // Users cannot manage a group of another kind, member or not, nor one that is not there.
    group_changed(
        store,
        group_change(
            "d-m",
            "d-a",
            create_group(GroupKind::Managed, "d-a", &["d-b"]),
            "d-m1",
        ),
    )
    .await;
    for (i, (action, permit)) in [
        (add(&["d-x"]), Permit::Inviter),
        (
            GroupAction::RemoveMembers(vec!["d-b".into()]),
            Permit::Owner,
        ),
        (rename, Permit::Member),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            one_write(
                store,
                permitted_change("d-m", "d-a", action.clone(), permit, &format!("d-m2{i}"))
            )
            .await,
            WriteResult::GroupRefused(GroupRefusal::NotDiscussion)
        );
        assert_eq!(
            one_write(
                store,
                permitted_change("d-none", "d-a", action, permit, &format!("d-m3{i}"))
            )
            .await,
            WriteResult::GroupRefused(GroupRefusal::NotFound)
        );
    }
    assert_eq!(
        store
            .group("d-m")
            .await
            .expect("read")
            .expect("d-m")
            .member_count,
        2
    );
}

pub async fn profiles_and_bans(store: &dyn Store) {
    let profile = |user: &str, name: Option<&str>, extra: Option<&str>| WriteOp::SetProfile {
        user: user.into(),
        name: name.map(String::from),
        portrait: None,
        extra: extra.map(String::from),
    };
    store
        .write(vec![
            profile("pr-a", Some("Ann"), Some(r#"{"team":1}"#)),
            // Only the fields given change.
            profile("pr-a", None, Some("")),
            WriteOp::SetBanned {
                user: "pr-b".into(),
                banned: true,
            },
        ])
        .await
        .expect("write");
    let users = ["pr-a", "pr-b", "pr-nobody"].map(String::from);
    let got = store.profiles(&users).await.expect("read");
    assert_eq!((got[0].name.as_str(), got[0].extra.as_str()), ("Ann", ""));
    assert!(!got[0].banned && got[1].banned);
    assert_eq!(got[2], crate::UserProfile::default());
    assert!(store.user_state("pr-b").await.expect("read").banned);
    store
        .write(vec![WriteOp::SetBanned {
            user: "pr-b".into(),
            banned: false,
        }])
        .await
        .expect("write");
    assert!(!store.user_state("pr-b").await.expect("read").banned);
    assert!(!store.user_state("pr-nobody").await.expect("read").banned);
    // Users with a record and users with an inbox, each once, in id order.
    let all = store.user_ids_after("pr-", 100).await.expect("read");
    let mine: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|u| u.starts_with("pr-"))
        .collect();
    assert_eq!(mine, ["pr-a", "pr-b"]);
    let page = store.user_ids_after("", 2).await.expect("read");
    assert_eq!(page.len(), 2);
    assert!(page[0] < page[1]);
    let next = store.user_ids_after(&page[1], 1).await.expect("read");
    assert!(next.iter().all(|u| *u > page[1]));
    store
        .write(vec![WriteOp::Append(private_append(
            "pb-sender",
            "pb-reader",
            "1",
            "hi",
        ))])
        .await
        .expect("write");
    assert!(
        store
            .user_ids_after("", 1000)
            .await
            .expect("read")
            .contains(&"pb-reader".to_string()),
        "a user known only by their inbox is listed"
    );
}
