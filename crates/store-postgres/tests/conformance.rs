//! The PostgreSQL store passes the shared store conformance suite, keeps what it committed
//! across a reconnect, and keeps seqs gapless with several nodes writing to one database.
//!
//! Every test needs a PostgreSQL server named by `TIDINGS_TEST_POSTGRES_URL` (`.ci/run` sets
//! it); without it each test says that it SKIPPED and passes. Each test works in a database of
//! its own, made for it and dropped at its end.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use tidings_store::{Store, WriteOp, WriteResult, conformance};
use tidings_store_postgres::testing::{TestDatabase, URL_VARIABLE, server_url};
use tidings_store_postgres::{PostgresConfig, PostgresStore};

/// A fresh database for `test`, or `None` (having said so) without a server to use.
async fn database(test: &str) -> Option<TestDatabase> {
    let Some(url) = server_url() else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: set {URL_VARIABLE} (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run it"
        );
        return None;
    };
    Some(
        TestDatabase::create(&url)
            .await
            .expect("create a test database"),
    )
}

async fn open(db: &TestDatabase) -> PostgresStore {
    PostgresStore::connect(&PostgresConfig::new(&db.url))
        .await
        .expect("connect")
}

/// A fresh PostgreSQL store on a database of its own.
struct Fresh {
    store: PostgresStore,
    db: TestDatabase,
}

impl conformance::Fixture for Fresh {
    fn store(&self) -> &dyn Store {
        &self.store
    }

    async fn release(self) {
        self.db.drop().await.unwrap();
    }
}

async fn fresh(case: &str) -> Option<Fresh> {
    let db = database(case).await?;
    let store = open(&db).await;
    Some(Fresh { store, db })
}

/// The shared conformance suite, one test per case.
mod suite {
    tidings_store::conformance_tests!(super::fresh);
}

#[tokio::test]
async fn committed_writes_survive_a_reconnect_and_seqs_continue() {
    let Some(db) = database("committed_writes_survive_a_reconnect_and_seqs_continue").await else {
        return;
    };
    let store = open(&db).await;
    store
        .write(vec![WriteOp::Append(conformance::private_append(
            "a", "b", "1", "x",
        ))])
        .await
        .unwrap();
    store.close().await.unwrap();
    assert!(
        store.user_state("a").await.is_err(),
        "a closed store refuses reads"
    );
    assert!(
        store.write(vec![]).await.is_err(),
        "a closed store refuses writes"
    );

    let store = open(&db).await;
    let r = store
        .write(vec![WriteOp::Append(conformance::private_append(
            "a", "b", "2", "y",
        ))])
        .await
        .unwrap();
    match &r[0] {
        WriteResult::Appended { message, inbox, .. } => {
            assert_eq!(message.seq, 2);
            assert_eq!(inbox, &[("a".to_string(), 2), ("b".to_string(), 2)]);
        }
        other => panic!("unexpected {other:?}"),
    }
    store.close().await.unwrap();
    db.drop().await.unwrap();
}

#[tokio::test]
async fn concurrent_writers_share_commits_and_get_gapless_seqs() {
    let Some(db) = database("concurrent_writers_share_commits_and_get_gapless_seqs").await else {
        return;
    };
    let store = Arc::new(open(&db).await);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .write(vec![WriteOp::Append(conformance::private_append(
                    "x",
                    "y",
                    &i.to_string(),
                    "m",
                ))])
                .await
                .unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        if let WriteResult::Appended { message, .. } = &t.await.unwrap()[0] {
            seqs.push(message.seq);
        }
    }
    seqs.sort();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    store.close().await.unwrap();
    db.drop().await.unwrap();
}

/// Two stores on one database are two nodes: two pools, two writers. They append at once to the
/// same conversations (in both directions, so their batches lock the same counters) and a
/// group; every conversation's seqs and every inbox's seqs come out 1..n, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_appending_at_once_keep_seqs_gapless() {
    let Some(db) = database("two_nodes_appending_at_once_keep_seqs_gapless").await else {
        return;
    };
    // Both start at once: the migrations run once, under their lock.
    let (a, b) = tokio::join!(open(&db), open(&db));
    let nodes = [Arc::new(a), Arc::new(b)];
    let users = ["n-a", "n-b", "n-c", "n-d"];
    let members: Vec<String> = users.iter().map(|u| u.to_string()).collect();
    match &nodes[0]
        .write(vec![conformance::group_change(
            "n-g",
            "n-a",
            tidings_store::GroupAction::Create {
                kind: tidings_store::GroupKind::Managed,
                owner: "n-a".into(),
                name: "g".into(),
                portrait: String::new(),
                extra: String::new(),
                members: members.clone(),
            },
            "n-create",
        )])
        .await
        .unwrap()[0]
    {
        WriteResult::GroupChanged { .. } => {}
        other => panic!("unexpected {other:?}"),
    }
    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for t in 0..4 {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                let mut results = Vec::new();
                for i in 0..25 {
                    let from = users[(n + t + i) % users.len()];
                    let to = users[(n + t + i + 1 + i % 2) % users.len()];
                    let id = format!("{n}-{t}-{i}");
                    // Each request holds a private message and a group message, in an order
                    // that differs between the nodes.
                    let private = WriteOp::Append(conformance::private_append(
                        from,
                        to,
                        &format!("p{id}"),
                        "m",
                    ));
                    let group = WriteOp::Append(conformance::group_append(
                        from,
                        "n-g",
                        &format!("g{id}"),
                        "g",
                    ));
                    let ops = if n == 0 {
                        vec![private, group]
                    } else {
                        vec![group, private]
                    };
                    results.extend(node.write(ops).await.expect("write"));
                }
                results
            }));
        }
    }
    let mut conv_seqs: HashMap<String, Vec<u64>> = HashMap::new();
    let mut inbox_seqs: HashMap<String, Vec<u64>> = HashMap::new();
    for t in tasks {
        for r in t.await.unwrap() {
            let WriteResult::Appended {
                message,
                inbox,
                duplicate: false,
                ..
            } = r
            else {
                panic!("unexpected {r:?}");
            };
            conv_seqs
                .entry(message.conversation_id.clone())
                .or_default()
                .push(message.seq);
            for (user, seq) in inbox {
                inbox_seqs.entry(user).or_default().push(seq);
            }
        }
    }
    let group_conv = tidings_store::group_conversation_id("n-g");
    for (conv, mut seqs) in conv_seqs {
        seqs.sort();
        // The group's seq 1 is the notification of its creation.
        let first = if conv == group_conv { 2 } else { 1 };
        let expected: Vec<u64> = (first..first + seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "conversation {conv}");
    }
    for (user, mut seqs) in inbox_seqs {
        seqs.sort();
        let expected: Vec<u64> = (2..2 + seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "inbox of {user}");
        // What each node reads agrees with what the writers answered.
        for node in &nodes {
            let read = node.inbox_after(&user, 0, 10_000).await.unwrap();
            let read: Vec<u64> = read.iter().map(|e| e.inbox_seq).collect();
            assert_eq!(read, (1..=seqs.len() as u64 + 1).collect::<Vec<_>>());
            assert_eq!(
                node.user_state(&user).await.unwrap().inbox_seq,
                seqs.len() as u64 + 1
            );
        }
    }
    for node in &nodes {
        node.close().await.unwrap();
    }
    db.drop().await.unwrap();
}

/// A group's message reaches every member's inbox, readable as soon as the write returns,
/// however large the group.
#[tokio::test]
async fn a_large_group_message_is_in_every_inbox_at_once() {
    let Some(db) = database("a_large_group_message_is_in_every_inbox_at_once").await else {
        return;
    };
    let store = open(&db).await;
    let members: Vec<String> = (0..300).map(|i| format!("lg-{i:03}")).collect();
    let mut create = conformance::group_change(
        "lg",
        "lg-000",
        tidings_store::GroupAction::Create {
            kind: tidings_store::GroupKind::Managed,
            owner: "lg-000".into(),
            name: "large".into(),
            portrait: String::new(),
            extra: String::new(),
            members: members.clone(),
        },
        "lg-create",
    );
    if let WriteOp::Group(change) = &mut create {
        change.max_members = 1000;
    }
    match &store.write(vec![create]).await.unwrap()[0] {
        WriteResult::GroupChanged { group, .. } => assert_eq!(group.member_count, 300),
        other => panic!("unexpected {other:?}"),
    }
    let r = store
        .write(vec![WriteOp::Append(conformance::group_append(
            "lg-007",
            "lg",
            "m1",
            "hello all",
        ))])
        .await
        .unwrap();
    let WriteResult::Appended { inbox, .. } = &r[0] else {
        panic!("unexpected {r:?}");
    };
    assert_eq!(inbox.len(), 300);
    assert_eq!(inbox[0].0, "lg-007", "the sender first");
    for user in &members {
        let entries = store.inbox_after(user, 1, 10).await.unwrap();
        assert_eq!(entries.len(), 1, "{user}");
        assert_eq!(entries[0].inbox_seq, 2);
        assert_eq!(entries[0].message.seq, 2);
    }
    store.close().await.unwrap();
    db.drop().await.unwrap();
}

/// A batch that deadlocks with another transaction (here a session holding an inbox counter and
/// then asking for the conversation counter the batch holds) is rolled back and run again, and
/// answers as if nothing had happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_deadlocks_is_run_again() {
    let Some(db) = database("a_batch_that_deadlocks_is_run_again").await else {
        return;
    };
    let store = Arc::new(open(&db).await);
    // The first message makes the counter rows.
    store
        .write(vec![WriteOp::Append(conformance::private_append(
            "dl-a", "dl-b", "1", "x",
        ))])
        .await
        .unwrap();
    let (other, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    other
        .batch_execute("BEGIN; SELECT seq FROM inbox_seqs WHERE user_id = 'dl-b' FOR UPDATE")
        .await
        .unwrap();
    // The batch locks the conversation's counter, then waits for dl-b's.
    let write = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .write(vec![WriteOp::Append(conformance::private_append(
                    "dl-a", "dl-b", "2", "y",
                ))])
                .await
        }
    });
    let waiting = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                   WHERE NOT l.granted AND a.application_name = 'tidings' \
                   AND a.datname = current_database()";
    let mut polls = 0;
    while other
        .query_one(waiting, &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        polls += 1;
        assert!(polls < 1000, "the batch never waited for the inbox counter");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Closing the cycle. The batch has waited longer, so its deadlock check runs first and
    // breaks the cycle by rolling the batch back; this session then gets the row.
    other
        .batch_execute("SELECT seq FROM conversation_seqs WHERE conv_id = 'dl-a|dl-b' FOR UPDATE")
        .await
        .expect("the batch, not this session, is rolled back");
    other.batch_execute("COMMIT").await.unwrap();
    match &write.await.unwrap().expect("the batch ran again")[0] {
        WriteResult::Appended {
            message,
            inbox,
            duplicate: false,
            ..
        } => {
            assert_eq!(message.seq, 2);
            assert_eq!(inbox, &[("dl-a".to_string(), 2), ("dl-b".to_string(), 2)]);
        }
        other => panic!("unexpected {other:?}"),
    }
    let seqs: Vec<u64> = store
        .conversation_after(
            "dl-a|dl-b",
            tidings_store::Page {
                after: 0,
                limit: 10,
            },
        )
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, [1, 2]);
    drop(other);
    connection.await.unwrap().unwrap();
    store.close().await.unwrap();
    db.drop().await.unwrap();
}

/// A page limit too large for PostgreSQL's `bigint` (`usize::MAX`) reads everything, as it does
/// in SQLite.
#[tokio::test]
async fn reads_take_any_page_limit() {
    let Some(db) = database("reads_take_any_page_limit").await else {
        return;
    };
    let store = open(&db).await;
    store
        .write(vec![
            WriteOp::Append(conformance::private_append("lim-a", "lim-b", "1", "one")),
            WriteOp::Append(conformance::private_append("lim-b", "lim-a", "2", "two")),
        ])
        .await
        .unwrap();
    let all = usize::MAX;
    assert_eq!(store.inbox_after("lim-a", 0, all).await.unwrap().len(), 2);
    assert_eq!(
        store
            .conversation_after(
                "lim-a|lim-b",
                tidings_store::Page {
                    after: 0,
                    limit: all
                }
            )
            .await
            .unwrap()
            .len(),
        2
    );
    let page = store
        .history(
            "lim-a",
            tidings_store::HistoryQuery::new(
                "lim-a|lim-b",
                tidings_store::HistoryFrom::BeforeSeq(u64::MAX),
                all,
            ),
        )
        .await
        .unwrap();
    assert_eq!((page.messages.len(), page.has_more), (2, false));
    let found = store
        .search("lim-a", tidings_store::SearchQuery::new("o", None, 0, all))
        .await
        .unwrap();
    assert_eq!((found.messages.len(), found.next), (2, None));
    assert_eq!(
        store.user_ids_after("", all).await.unwrap(),
        ["lim-a", "lim-b"]
    );
    let members = store.group_members("no-such-group", 0, all).await.unwrap();
    assert!(members.members.is_empty() && members.next.is_none());
    store.close().await.unwrap();
    db.drop().await.unwrap();
}

/// A batch of one-to-one appends goes out pipelined, its seqs counted up front; one that turns
/// out a duplicate sends the batch down the one-at-a-time path, which stays gapless.
#[tokio::test]
async fn a_duplicate_inside_a_pipelined_batch_keeps_seqs_gapless() {
    let Some(db) = database("a_duplicate_inside_a_pipelined_batch_keeps_seqs_gapless").await else {
        return;
    };
    let store = open(&db).await;
    let append = |id: &str| WriteOp::Append(conformance::private_append("p", "q", id, id));
    let first = store.write(vec![append("1"), append("2")]).await.unwrap();
    let seqs = |results: &[WriteResult]| -> Vec<(u64, bool)> {
        results
            .iter()
            .map(|r| match r {
                WriteResult::Appended {
                    message, duplicate, ..
                } => (message.seq, *duplicate),
                other => panic!("not an append: {other:?}"),
            })
            .collect()
    };
    assert_eq!(seqs(&first), [(1, false), (2, false)]);
    // "2" again, between two new ones: it answers as the first time, and the new ones take 3, 4.
    let second = store
        .write(vec![append("3"), append("2"), append("4")])
        .await
        .unwrap();
    assert_eq!(seqs(&second), [(3, false), (2, true), (4, false)]);
    let inbox = store.inbox_after("q", 0, 100).await.unwrap();
    let inbox_seqs: Vec<u64> = inbox.iter().map(|e| e.inbox_seq).collect();
    assert_eq!(inbox_seqs, [1, 2, 3, 4]);
    let conv: Vec<u64> = inbox.iter().map(|e| e.message.seq).collect();
    assert_eq!(conv, [1, 2, 3, 4]);
    store.close().await.unwrap();
    db.drop().await.unwrap();
}

/// Two nodes making the same open groups at once (two users naming each new group when
/// connecting, each on another node): one makes it, the other joins it, and neither is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_naming_a_new_group_at_once_both_join_it() {
    let Some(db) = database("two_nodes_naming_a_new_group_at_once_both_join_it").await else {
        return;
    };
    let (a, b) = tokio::join!(open(&db), open(&db));
    let nodes = [Arc::new(a), Arc::new(b)];
    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            let user = format!("r-{n}");
            let mut results = Vec::new();
            for i in 0..20 {
                let op = conformance::group_change(
                    &format!("race-{i}"),
                    &user,
                    tidings_store::GroupAction::Join(user.clone()),
                    &format!("r-{n}-{i}"),
                );
                results.extend(node.write(vec![op]).await.expect("write"));
            }
            results
        }));
    }
    for t in tasks {
        for r in t.await.unwrap() {
            assert!(
                matches!(r, WriteResult::GroupChanged { .. }),
                "a join was refused: {r:?}"
            );
        }
    }
    for i in 0..20 {
        let id = format!("race-{i}");
        let group = nodes[0].group(&id).await.unwrap().expect("made");
        assert_eq!(
            (group.kind, group.member_count),
            (tidings_store::GroupKind::Open, 2),
            "{id}"
        );
    }
    for node in &nodes {
        node.close().await.unwrap();
    }
    db.drop().await.unwrap();
}

/// Each node of a cluster sends what its own commits made due, also after it restarts with the
/// same id: another node's notifications due are not its to read.
#[tokio::test]
async fn notifications_due_belong_to_the_node_that_committed_them() {
    let Some(db) = database("notifications_due_belong_to_the_node_that_committed_them").await
    else {
        return;
    };
    let node = |name: &str| PostgresConfig {
        node: name.into(),
        ..PostgresConfig::new(&db.url)
    };
    let a = PostgresStore::connect(&node("node-a")).await.unwrap();
    let b = PostgresStore::connect(&node("node-b")).await.unwrap();
    a.save_push_token(tidings_store::PushTokenRecord {
        user: "nb".into(),
        provider: tidings_store::PushProvider::Fcm,
        token: "t-nb".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    for (store, id) in [(&a, "1"), (&b, "2"), (&b, "3")] {
        store
            .write(vec![WriteOp::Append(conformance::private_append(
                "na", "nb", id, "x",
            ))])
            .await
            .unwrap();
    }
    let ids = |due: Vec<tidings_store::PushDue>| -> Vec<String> {
        due.into_iter().map(|d| d.message.client_msg_id).collect()
    };
    assert_eq!(ids(a.push_due(10).await.unwrap()), ["1"]);
    assert_eq!(ids(b.push_due(10).await.unwrap()), ["2", "3"]);
    a.close().await.unwrap();
    let a = PostgresStore::connect(&node("node-a")).await.unwrap();
    assert_eq!(
        ids(a.push_due(10).await.unwrap()),
        ["1"],
        "the same node id, after a restart"
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
    db.drop().await.unwrap();
}

/// Nodes of a cluster that claim the same user's key packages at once hand each one-time key
/// package out once, and of commits for one epoch made on two nodes at once one is taken.
#[tokio::test]
async fn nodes_at_once_hand_out_a_key_package_once_and_take_one_commit_per_epoch() {
    let Some(db) = database("nodes_at_once_hand_out_a_key_package_once").await else {
        return;
    };
    let a = PostgresStore::connect(&PostgresConfig::new(&db.url))
        .await
        .unwrap();
    let b = PostgresStore::connect(&PostgresConfig::new(&db.url))
        .await
        .unwrap();
    let packages: Vec<_> = (0..40u8)
        .map(|r| tidings_store::KeyPackageRecord {
            reference: vec![r; 32],
            data: vec![r; 10],
            last_resort: false,
            not_after: i64::MAX,
        })
        .collect();
    a.write(vec![WriteOp::PublishKeyPackages(
        tidings_store::KeyPackageUpload {
            user: "kp".into(),
            device: "phone".into(),
            packages,
            replace: false,
            now: 0,
        },
    )])
    .await
    .unwrap();
    let claim_op = || WriteOp::ClaimKeyPackages {
        user: "kp".into(),
        now: 0,
        except: Vec::new(),
    };
    let claims = (0..20).flat_map(|_| [a.write(vec![claim_op()]), b.write(vec![claim_op()])]);
    let mut handed: Vec<u8> = futures_util::future::join_all(claims)
        .await
        .into_iter()
        .flat_map(|r| match r.unwrap().remove(0) {
            WriteResult::KeyPackagesClaimed(c) => c,
            other => panic!("{other:?}"),
        })
        .map(|c| c.data[0])
        .collect();
    handed.sort();
    assert_eq!(handed, (0..40).collect::<Vec<u8>>());

    let commit = |cmid: &str| {
        let mut m = conformance::private_append("ea", "eb", cmid, "x");
        m.msg_type = "mls".into();
        m.mls = Some(tidings_store::MlsOrdering {
            group_id: vec![1],
            epoch: 0,
            kind: tidings_store::MlsKind::Commit,
        });
        WriteOp::Append(m)
    };
    let (ra, rb) = tokio::join!(a.write(vec![commit("on-a")]), b.write(vec![commit("on-b")]));
    let taken = [ra.unwrap().remove(0), rb.unwrap().remove(0)]
        .iter()
        .filter(|r| matches!(r, WriteResult::Appended { .. }))
        .count();
    assert_eq!(taken, 1, "one commit of epoch 0 is taken");
    a.close().await.unwrap();
    b.close().await.unwrap();
    db.drop().await.unwrap();
}
