//! A message with many recipients stages its inbox entries in one row and the writer merges them
//! into blocks later: every read sees each entry exactly once before, during and after the merge,
//! inbox seqs continue from staged and merged entries across a reopen, and a merge redone after
//! a crash adds nothing.

use std::time::{Duration, Instant};

use tidings_store::{ConversationFilter, Store, WriteOp, WriteResult, conformance};
use tidings_store_sqlite::{SqliteConfig, SqliteStore};

/// Past the staging threshold and past one merge transaction's size with two messages.
const MEMBERS: usize = 3000;

fn fan_out(id: &str, members: &[String]) -> WriteOp {
    let mut m = conformance::private_append("sender", "room", id, id);
    m.recipients = members.to_vec();
    WriteOp::Append(m)
}

async fn inbox_seqs(store: &SqliteStore, id: &str, members: &[String]) -> Vec<u64> {
    match store
        .write(vec![fan_out(id, members)])
        .await
        .unwrap()
        .remove(0)
    {
        WriteResult::Appended { inbox, .. } => {
            let users: Vec<&str> = inbox.iter().map(|(u, _)| u.as_str()).collect();
            let wanted: Vec<&str> = members.iter().map(String::as_str).collect();
            assert_eq!(users, wanted, "one entry per recipient, in order");
            inbox.into_iter().map(|(_, seq)| seq).collect()
        }
        other => panic!("not appended: {other:?}"),
    }
}

/// What every member's inbox holds after seq 0: (seq, the message's client id), and its newest
/// inbox seq as the user's state reports it.
async fn inboxes(store: &SqliteStore, members: &[String]) -> Vec<(Vec<(u64, String)>, u64)> {
    let mut all = Vec::with_capacity(members.len());
    for m in members {
        let entries = store
            .inbox_after(m, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.inbox_seq, e.message.client_msg_id))
            .collect();
        let state = store.user_state(m).await.unwrap();
        all.push((entries, state.inbox_seq));
    }
    all
}

fn count(path: &std::path::Path, table: &str) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn staged_rows(path: &std::path::Path) -> i64 {
    count(path, "inbox_pending")
}

async fn merged(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while staged_rows(path) > 0 {
        assert!(
            Instant::now() < deadline,
            "the staged entries were never merged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A resend of message `id` to `members`: the inbox seqs it reports.
async fn resent_seqs(store: &SqliteStore, id: &str, members: &[String]) -> Vec<u64> {
    match store
        .write(vec![fan_out(id, members)])
        .await
        .unwrap()
        .remove(0)
    {
        WriteResult::Appended {
            inbox, duplicate, ..
        } => {
            assert!(duplicate);
            inbox.into_iter().map(|(_, s)| s).collect()
        }
        other => panic!("not appended: {other:?}"),
    }
}

#[tokio::test]
async fn a_large_fan_out_reaches_every_inbox_once_across_merges_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let config = SqliteConfig::new(&path);
    let members: Vec<String> = (0..MEMBERS).map(|i| format!("m{i:04}")).collect();

    let store = SqliteStore::open(&config).unwrap();
    // The first member already has an entry of its own, merged as usual.
    store
        .write(vec![WriteOp::Append(conformance::private_append(
            "sender", "m0000", "direct", "hi",
        ))])
        .await
        .unwrap();
    let first = inbox_seqs(&store, "first", &members).await;
    assert_eq!(first[0], 2);
    assert!(first[1..].iter().all(|s| *s == 1));
    // Read at once: the entries are staged (a merge waits for more, or for half a second).
    let seen = inboxes(&store, &members).await;
    assert_eq!(
        seen[0],
        (vec![(1, "direct".into()), (2, "first".into())], 2)
    );
    assert!(
        seen[1..]
            .iter()
            .all(|s| *s == (vec![(1, "first".into())], 1))
    );
    let conversations = store
        .conversations("m0001", ConversationFilter::default())
        .await
        .unwrap();
    assert_eq!(
        conversations.version, 1,
        "the list's version counts staged entries"
    );
    store.close().await.unwrap();

    // Reopened, whether or not the merge ran: seqs continue after the staged ones.
    let store = SqliteStore::open(&config).unwrap();
    let second = inbox_seqs(&store, "second", &members).await;
    assert_eq!(second[0], 3);
    assert!(second[1..].iter().all(|s| *s == 2));
    // A resend finds the same entries, staged or merged.
    assert_eq!(resent_seqs(&store, "first", &members).await, first);
    let expected_rest = (vec![(1, "first".to_string()), (2, "second".to_string())], 2);
    let seen = inboxes(&store, &members).await;
    assert_eq!(seen[0].1, 3);
    assert!(seen[1..].iter().all(|s| *s == expected_rest));
    // The writer merges what is staged while it has nothing else to do, into blocks.
    merged(&path).await;
    assert_eq!(
        count(&path, "inbox"),
        2,
        "the direct message's entries (its sender's and m0000's) only"
    );
    let blocks = count(&path, "inbox_blocks");
    // One block per member per merge: the two messages were merged together or apart.
    assert!(
        blocks == MEMBERS as i64 || blocks == 2 * MEMBERS as i64,
        "{blocks} blocks"
    );
    let after_merge = inboxes(&store, &members).await;
    assert_eq!(after_merge, seen, "the merge changed what the inboxes hold");
    assert_eq!(resent_seqs(&store, "first", &members).await, first);
    let page = store.inbox_after("m0001", 1, 1).await.unwrap();
    assert_eq!(
        page.iter()
            .map(|e| (e.inbox_seq, e.message.client_msg_id.as_str()))
            .collect::<Vec<_>>(),
        vec![(2, "second")],
        "a page starts after the seq asked for and holds at most its limit"
    );
    let third = inbox_seqs(&store, "third", &members).await;
    assert!(third[1..].iter().all(|s| *s == 3));
    store.close().await.unwrap();

    // The staged rows back, as if the merge had stopped before deleting them: merged again, they
    // add nothing; and seqs continue from the blocks after a reopen.
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        for (id, seqs) in [("first", &first), ("second", &second)] {
            let msg: i64 = c
                .query_row(
                    "SELECT rowid FROM messages WHERE client_msg_id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .unwrap();
            let mut entries: Vec<(i64, u64)> = members
                .iter()
                .zip(seqs.iter())
                .map(|(m, seq)| {
                    let key: i64 = c
                        .query_row("SELECT user_key FROM user_keys WHERE id = ?1", [m], |r| {
                            r.get(0)
                        })
                        .unwrap();
                    (key, *seq)
                })
                .collect();
            // A staged row's layout: (user key, seq) as big-endian 64-bit pairs, by user key.
            entries.sort_unstable();
            let blob: Vec<u8> = entries
                .iter()
                .flat_map(|(k, s)| k.to_be_bytes().into_iter().chain(s.to_be_bytes()))
                .collect();
            c.execute(
                "INSERT INTO inbox_pending (msg, entries) VALUES (?1, ?2)",
                rusqlite::params![msg, blob],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&config).unwrap();
    merged(&path).await;
    assert_eq!(
        count(&path, "inbox_blocks"),
        blocks + MEMBERS as i64,
        "the third message's blocks, and nothing more"
    );
    let expected = (
        vec![
            (1, "first".to_string()),
            (2, "second".to_string()),
            (3, "third".to_string()),
        ],
        3,
    );
    let seen = inboxes(&store, &members).await;
    assert!(seen[1..].iter().all(|s| *s == expected));
    let fourth = inbox_seqs(&store, "fourth", &members).await;
    assert_eq!(fourth[0], 5);
    assert!(fourth[1..].iter().all(|s| *s == 4));
    store.close().await.unwrap();
}
