//! A message with many recipients stages its inbox entries in one row and the writer merges them
//! into the inbox later: every read sees each entry exactly once before, during and after the
//! merge, and inbox seqs continue from staged entries across a reopen.

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

fn staged_rows(path: &std::path::Path) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("SELECT count(*) FROM inbox_pending", [], |r| r.get(0))
        .unwrap()
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
    match store
        .write(vec![fan_out("first", &members)])
        .await
        .unwrap()
        .remove(0)
    {
        WriteResult::Appended {
            inbox, duplicate, ..
        } => {
            assert!(duplicate);
            assert_eq!(inbox.into_iter().map(|(_, s)| s).collect::<Vec<_>>(), first);
        }
        other => panic!("not appended: {other:?}"),
    }
    let expected_rest = (vec![(1, "first".to_string()), (2, "second".to_string())], 2);
    let seen = inboxes(&store, &members).await;
    assert_eq!(seen[0].1, 3);
    assert!(seen[1..].iter().all(|s| *s == expected_rest));

    // The writer merges what is staged while it has nothing else to do.
    let deadline = Instant::now() + Duration::from_secs(10);
    while staged_rows(&path) > 0 {
        assert!(
            Instant::now() < deadline,
            "the staged entries were never merged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let merged = inboxes(&store, &members).await;
    assert_eq!(merged, seen, "the merge changed what the inboxes hold");
    let third = inbox_seqs(&store, "third", &members).await;
    assert!(third[1..].iter().all(|s| *s == 3));
    store.close().await.unwrap();
}
