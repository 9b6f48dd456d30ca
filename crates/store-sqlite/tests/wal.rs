//! The write-ahead log stays bounded under a write load that never pauses.

use std::sync::Arc;
use std::time::Duration;

use tidings_store::{Store, WriteOp, conformance};
use tidings_store_sqlite::{Durability, SqliteConfig, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_restarts_while_writes_never_pause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut config = SqliteConfig::new(&path);
    config.durability = Durability::Process;
    config.checkpoint_interval = Duration::from_millis(5);
    config.wal_restart_frames = 64;
    let store = Arc::new(SqliteStore::open(&config).unwrap());

    // Four writers, each with its next write queued as soon as the last one commits, so the
    // writer thread is never idle long enough for a background checkpoint to catch up alone.
    const PER_WRITER: usize = 1500;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                let from = format!("w{w}");
                let to = format!("r{}", i % 50);
                let op = conformance::private_append(&from, &to, &i.to_string(), &"x".repeat(200));
                store.write(vec![WriteOp::Append(op)]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let wal = std::fs::metadata(dir.path().join("t.db-wal"))
        .unwrap()
        .len();
    // 6,000 commits of several 4 KiB pages each: a log that never restarted holds about 100 MiB.
    // Restarting after 64 frames keeps it to what the largest few transactions write between
    // two restarts (one that indexes a batch of texts for search writes a few MiB).
    assert!(wal < 16 << 20, "the WAL grew to {wal} bytes");

    // Nothing was lost on the way: every writer's inbox holds all of its messages.
    for w in 0..4 {
        let entries = store
            .inbox_after(&format!("w{w}"), 0, 10_000)
            .await
            .unwrap();
        assert_eq!(entries.len(), PER_WRITER);
        assert!(
            entries
                .windows(2)
                .all(|p| p[1].inbox_seq == p[0].inbox_seq + 1)
        );
    }
    store.close().await.unwrap();
}

/// The nice values of this process's threads named `name` (Linux: per thread).
fn nice_of_threads(name: &str) -> Vec<i64> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| {
            let t = t.unwrap().path();
            let comm = std::fs::read_to_string(t.join("comm")).ok()?;
            (comm.trim_end() == name).then_some(())?;
            let stat = std::fs::read_to_string(t.join("stat")).ok()?;
            // Fields after the command's closing parenthesis start at field 3; nice is 19.
            let rest = &stat[stat.rfind(')')? + 2..];
            rest.split(' ').nth(16)?.parse().ok()
        })
        .collect()
}

/// Checkpoint passes yield the CPU to commits: the checkpoint thread runs at the lowest
/// priority short of idle, the writer at the normal one.
#[test]
fn the_checkpoint_thread_yields_to_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteConfig::new(dir.path().join("t.db"))).unwrap();
    // The thread lowers its own priority as it starts, and a thread's name is set as it starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !nice_of_threads("sqlite-checkpt").contains(&19)
        || nice_of_threads("sqlite-writer").is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "checkpoint threads: {:?}",
            nice_of_threads("sqlite-checkpt")
        );
        std::thread::yield_now();
    }
    assert!(nice_of_threads("sqlite-checkpt").iter().all(|&n| n == 19));
    let writers = nice_of_threads("sqlite-writer");
    assert!(
        !writers.is_empty() && writers.iter().all(|&n| n == 0),
        "{writers:?}"
    );
    drop(store);
}
