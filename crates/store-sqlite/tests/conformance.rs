//! The SQLite store passes the shared store conformance suite, and keeps what it committed across
//! a reopen.

use tidings_store::{Store, WriteOp, conformance};
use tidings_store_sqlite::{SqliteConfig, SqliteStore};

/// A fresh SQLite store in a directory of its own.
struct Fresh {
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

impl conformance::Fixture for Fresh {
    fn store(&self) -> &dyn Store {
        &self.store
    }

    async fn release(self) {}
}

async fn fresh(_case: &str) -> Option<Fresh> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteConfig::new(dir.path().join("t.db"))).unwrap();
    Some(Fresh { store, _dir: dir })
}

/// The shared conformance suite, one test per case.
mod suite {
    tidings_store::conformance_tests!(super::fresh);
}

#[tokio::test]
async fn committed_writes_survive_a_reopen_and_seqs_continue() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig::new(dir.path().join("t.db"));
    let store = SqliteStore::open(&config).unwrap();
    store
        .write(vec![WriteOp::Append(conformance::private_append(
            "a", "b", "1", "x",
        ))])
        .await
        .unwrap();
    store.close().await.unwrap();
    assert!(
        store.user_state("a").await.is_err(),
        "a closed store refuses calls"
    );

    let store = SqliteStore::open(&config).unwrap();
    let r = store
        .write(vec![WriteOp::Append(conformance::private_append(
            "a", "b", "2", "y",
        ))])
        .await
        .unwrap();
    match &r[0] {
        tidings_store::WriteResult::Appended { message, inbox, .. } => {
            assert_eq!(message.seq, 2);
            assert_eq!(inbox, &[("a".to_string(), 2), ("b".to_string(), 2)]);
        }
        other => panic!("unexpected {other:?}"),
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn concurrent_writers_share_commits_and_get_gapless_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        SqliteStore::open(&SqliteConfig::new(dir.path().join("t.db"))).unwrap(),
    );
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
        if let tidings_store::WriteResult::Appended { message, .. } = &t.await.unwrap()[0] {
            seqs.push(message.seq);
        }
    }
    seqs.sort();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    store.close().await.unwrap();
}

#[tokio::test]
async fn commits_reach_the_database_file_by_background_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&SqliteConfig::new(&path)).unwrap();
    let ops = (0..10)
        .map(|i| WriteOp::Append(conformance::private_append("a", "b", &i.to_string(), "x")))
        .collect();
    store.write(ops).await.unwrap();
    // The writer never checkpoints; the checkpoint thread copies the log into the file soon.
    let copy = dir.path().join("copy.db");
    let mut rows = 0;
    for _ in 0..100 {
        std::fs::copy(&path, &copy).unwrap();
        let conn = rusqlite::Connection::open(&copy).unwrap();
        rows = conn
            .query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0))
            .unwrap_or(0);
        if rows == 10 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        rows, 10,
        "the database file alone holds the committed messages"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn upgrading_keeps_web_push_subscriptions_as_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let config = SqliteConfig::new(&path);
    SqliteStore::open(&config).unwrap().close().await.unwrap();
    // Back to the version before push tokens (and their push data, and the end-to-end
    // encryption tables after them), with one subscription.
    let c = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    c.execute_batch(&format!(
        "DROP TABLE push_tokens; DROP TABLE push_due; \
         DROP TABLE key_packages; DROP TABLE e2ee_groups; \
         CREATE TABLE push_subscriptions (endpoint TEXT PRIMARY KEY, user_id TEXT NOT NULL, \
             p256dh TEXT NOT NULL, auth TEXT NOT NULL) WITHOUT ROWID; \
         INSERT INTO push_subscriptions VALUES ('https://push.example/1', 'wu', 'k', 'a'); \
         PRAGMA user_version = {};",
        version - 3
    ))
    .unwrap();
    drop(c);
    let store = SqliteStore::open(&config).unwrap();
    let tokens = store.push_tokens(&["wu".to_string()]).await.unwrap();
    assert_eq!(
        tokens,
        vec![tidings_store::PushTokenRecord {
            user: "wu".into(),
            provider: tidings_store::PushProvider::WebPush,
            token: "https://push.example/1".into(),
            p256dh: "k".into(),
            auth: "a".into(),
            ..Default::default()
        }]
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn upgrading_a_database_lists_the_conversations_it_already_had() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let config = SqliteConfig::new(&path);
    let store = SqliteStore::open(&config).unwrap();
    let mut file = conformance::private_append("ua", "uc", "f", "");
    file.msg_type = "file".into();
    file.content = r#"{"url":"u","name":"report.pdf","size":1}"#.into();
    let mut image = conformance::private_append("ua", "uc", "i", "");
    image.msg_type = "image".into();
    image.content = r#"{"url":"u","text":"not searchable"}"#.into();
    store
        .write(vec![WriteOp::Append(file), WriteOp::Append(image)])
        .await
        .unwrap();
    for (from, to, id) in [("ua", "ub", "1"), ("ub", "ua", "2"), ("ua", "uc", "3")] {
        store
            .write(vec![WriteOp::Append(conformance::private_append(
                from, to, id, "x",
            ))])
            .await
            .unwrap();
    }
    store.close().await.unwrap();
    // Back to the first schema version, as a database written before conversations existed.
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "DROP TABLE conversations; DROP TABLE deleted_messages; DROP TABLE blocklist; \
         DROP TABLE message_text; DROP TABLE search_watermark; \
         DROP TABLE reactions; ALTER TABLE messages DROP COLUMN state; \
         ALTER TABLE users DROP COLUMN last_seen; ALTER TABLE users DROP COLUMN quiet_start; \
         ALTER TABLE users DROP COLUMN quiet_minutes; \
         ALTER TABLE users DROP COLUMN name; ALTER TABLE users DROP COLUMN portrait; \
         ALTER TABLE users DROP COLUMN extra; ALTER TABLE users DROP COLUMN banned; \
         ALTER TABLE users DROP COLUMN account; \
         ALTER TABLE messages DROP COLUMN counted; \
         DROP TABLE groups; DROP TABLE group_members; DROP TABLE message_audience; \
         DROP TABLE sensitive_words; DROP TABLE chatroom_users; DROP TABLE chatrooms; \
         DROP TABLE inbox_pending; DROP TABLE accounts; DROP TABLE push_tokens; \
         DROP TABLE push_due; DROP TABLE key_packages; DROP TABLE e2ee_groups; \
         DROP TABLE admin_operators; DROP TABLE admin_sessions; DROP TABLE admin_audit; \
         DROP TABLE inbox_blocks; \
         CREATE TABLE inbox_v1 (user_id TEXT NOT NULL, seq INTEGER NOT NULL, \
             msg INTEGER NOT NULL, PRIMARY KEY (user_id, seq)) WITHOUT ROWID; \
         INSERT INTO inbox_v1 SELECT k.id, i.seq, i.msg FROM inbox i \
             JOIN user_keys k ON k.user_key = i.user_key; \
         DROP TABLE inbox; ALTER TABLE inbox_v1 RENAME TO inbox; DROP TABLE user_keys; \
         ALTER TABLE messages DROP COLUMN mentions; \
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(c);

    let store = SqliteStore::open(&config).unwrap();
    let list = store
        .conversations("ua", tidings_store::ConversationFilter::default())
        .await
        .unwrap();
    let mut seen: Vec<_> = list
        .conversations
        .iter()
        .map(|c| (c.settings.target_id.as_str(), c.unread))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [("ub", 0), ("uc", 0)],
        "what came before the upgrade counts as read"
    );
    let list = store
        .conversations("uc", tidings_store::ConversationFilter::default())
        .await
        .unwrap();
    assert_eq!(list.conversations.len(), 1);
    assert_eq!(list.conversations[0].unread, 0);
    assert_eq!(list.conversations[0].settings.read_seq, 3);
    // The texts stored before search existed are found, by the same rules as new ones.
    let found = store
        .search("ua", tidings_store::SearchQuery::new("x", None, 0, 10))
        .await
        .unwrap();
    assert_eq!(found.messages.len(), 3);
    let found = store
        .search("ua", tidings_store::SearchQuery::new("report", None, 0, 10))
        .await
        .unwrap();
    assert_eq!(found.messages.len(), 1);
    assert!(
        store
            .search(
                "ua",
                tidings_store::SearchQuery::new("searchable", None, 0, 10)
            )
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    // Inboxes came through the change to integer user keys whole, and go on from there.
    let inbox = store.inbox_after("ua", 0, 100).await.unwrap();
    assert_eq!(
        inbox.iter().map(|e| e.inbox_seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(store.user_state("uc").await.unwrap().inbox_seq, 3);
    store
        .write(vec![WriteOp::Append(conformance::private_append(
            "uc", "ua", "after", "x",
        ))])
        .await
        .unwrap();
    assert_eq!(store.user_state("ua").await.unwrap().inbox_seq, 6);
    assert_eq!(store.user_state("uc").await.unwrap().inbox_seq, 4);
    store.close().await.unwrap();
}

#[tokio::test]
async fn texts_not_yet_indexed_at_a_crash_are_indexed_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig::new(dir.path().join("t.db"));
    let store = SqliteStore::open(&config).unwrap();
    let ops: Vec<_> = (0..20)
        .map(|i| {
            WriteOp::Append(conformance::private_append(
                "cr-a",
                "cr-b",
                &format!("m{i}"),
                &format!("crash survivor {i}"),
            ))
        })
        .collect();
    // A new writer indexes with its first commit; the second commit's texts wait for a batch.
    let (first, second): (Vec<_>, Vec<_>) = ops.into_iter().enumerate().partition(|(i, _)| *i < 10);
    store
        .write(first.into_iter().map(|(_, op)| op).collect())
        .await
        .unwrap();
    store
        .write(second.into_iter().map(|(_, op)| op).collect())
        .await
        .unwrap();
    // Dropped without close, as a crash would: texts waiting to be indexed are lost with it.
    drop(store);
    let store = SqliteStore::open(&config).unwrap();
    let found = store
        .search(
            "cr-b",
            tidings_store::SearchQuery::new("survivor", None, 0, 100),
        )
        .await
        .unwrap();
    assert_eq!(found.messages.len(), 20);
    store.close().await.unwrap();
}
