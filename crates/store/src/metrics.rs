//! The metrics every store's writer reports under the same names (see docs/operations.md), made
//! once on first use so a commit only adds to atomics. The binary calls [`register`] right
//! after installing the recorder.

use std::sync::LazyLock;

use ::metrics::{Counter, Gauge, Histogram, counter, describe_counter, describe_gauge};
use ::metrics::{describe_histogram, gauge, histogram};

pub const COMMIT_SECONDS: &str = "tidings_store_commit_seconds";
pub const BATCH_OPS: &str = "tidings_store_batch_ops";
pub const QUEUE_DEPTH: &str = "tidings_store_queue_depth";
pub const COMMIT_FAILURES: &str = "tidings_store_commit_failures_total";
pub const WAL_BYTES: &str = "tidings_sqlite_wal_bytes";

pub struct StoreMetrics {
    /// One writer transaction, from its start to its durable commit.
    pub commit_seconds: Histogram,
    /// Ops in one writer transaction.
    pub batch_ops: Histogram,
    /// Write requests waiting for the writer.
    pub queue_depth: Gauge,
    pub commit_failures: Counter,
    /// The SQLite write-ahead log file's size.
    pub wal_bytes: Gauge,
}

static METRICS: LazyLock<StoreMetrics> = LazyLock::new(|| {
    describe_histogram!(
        COMMIT_SECONDS,
        ::metrics::Unit::Seconds,
        "A store writer transaction, from its start to its durable commit."
    );
    describe_histogram!(
        BATCH_OPS,
        "Ops in one store writer transaction (group commit)."
    );
    describe_gauge!(QUEUE_DEPTH, "Write requests waiting for the store writer.");
    describe_counter!(
        COMMIT_FAILURES,
        "Store writer transactions that failed and were rolled back."
    );
    describe_gauge!(
        WAL_BYTES,
        ::metrics::Unit::Bytes,
        "Size of the SQLite write-ahead log file."
    );
    StoreMetrics {
        commit_seconds: histogram!(COMMIT_SECONDS),
        batch_ops: histogram!(BATCH_OPS),
        queue_depth: gauge!(QUEUE_DEPTH),
        commit_failures: counter!(COMMIT_FAILURES),
        wal_bytes: gauge!(WAL_BYTES),
    }
});

/// Makes the handles with the recorder installed now. Call it once, after installing it.
pub fn register() {
    LazyLock::force(&METRICS);
}

impl StoreMetrics {
    /// A writer transaction of these ops starts: records how many, and returns when.
    pub fn batch_started<T>(&self, op_lists: &[Vec<T>]) -> std::time::Instant {
        self.batch_ops
            .record(op_lists.iter().map(Vec::len).sum::<usize>() as f64);
        std::time::Instant::now()
    }

    /// The writer transaction begun at `started` is committed.
    pub fn committed(&self, started: std::time::Instant) {
        self.commit_seconds.record(started.elapsed().as_secs_f64());
    }
}

pub fn m() -> &'static StoreMetrics {
    &METRICS
}
