//! WAL checkpoints off the commit path. The writer connection has automatic checkpoints turned
//! off, so a commit never stops to copy the log into the database file; this thread does it
//! every interval with a PASSIVE checkpoint, which never blocks the writer or readers.
//!
//! A PASSIVE checkpoint copies the frames that were in the log when it began, while the writer
//! keeps appending; under a load that never pauses it never catches up, and SQLite restarts the
//! log from its beginning only once every frame has been copied. So once the log has grown past
//! [`RESTART_FRAMES`] the writer finishes the job between two transactions: SQLite's automatic
//! checkpoint on the writer's connection, set to that size, runs right after the commit that
//! passes it, and this thread also asks the writer when it finds the log that long. What is
//! left is the few frames committed during this thread's last pass, and the writer's next
//! transaction then starts the log again. Without that the log file grows by every page ever
//! written, and each fdatasync of a growing file also writes its size.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tidings_store::Result;

use crate::{SqliteConfig, backend, writer};

/// How often the log is copied into the database file. Often enough that each pass writes a
/// small share of the database file: on a virtual disk a commit's fdatasync also waits for the
/// checkpoint's writes still in flight, so a large pass shows as a commit stall.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Frames in the log past which the writer finishes a checkpoint itself (about 32 MiB with
/// 4 KiB pages).
pub const RESTART_FRAMES: u64 = 8192;

pub struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    pub fn spawn(
        config: &SqliteConfig,
        writer: mpsc::Sender<writer::Request>,
    ) -> Result<Checkpointer> {
        let conn = Connection::open(&config.path).map_err(backend)?;
        crate::schema::configure(&conn, config.durability).map_err(backend)?;
        let (interval, restart_frames) = (config.checkpoint_interval, config.wal_restart_frames);
        // The log's size is reported after each pass (`tidings_sqlite_wal_bytes`).
        let mut wal = config.path.clone().into_os_string();
        wal.push("-wal");
        let wal = std::path::PathBuf::from(wal);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpt".into())
            .spawn(move || {
                yield_to_commits();
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    match passive(&conn) {
                        Ok(o) if o.log >= restart_frames => {
                            // The writer is gone only when the store is closing.
                            let _ = writer.send(writer::Request::Checkpoint);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                    }
                    if let Ok(meta) = std::fs::metadata(&wal) {
                        tidings_store::metrics::m().wal_bytes.set(meta.len() as f64);
                    }
                }
            })
            .map_err(backend)?;
        Ok(Checkpointer { stop, thread })
    }

    /// Stops the thread and waits for it.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// The calling thread's nice value: the lowest priority short of idle, so the writer and the
/// connections' threads take the CPU from a checkpoint pass the moment they wake. A pass runs
/// for 1–2 ms of CPU every [`INTERVAL`]; on a server with one CPU at normal priority, a message
/// arriving meanwhile waited for the rest of it (measured with `perf sched timehist`: see
/// docs/performance.md). The checkpoint cannot starve: past [`RESTART_FRAMES`] the writer does
/// it itself.
const NICE: i32 = 19;

/// Lowers the calling thread's priority to [`NICE`] (on Linux, a nice value is per thread).
/// Failing to is only logged: the checkpoints still run, at normal priority.
fn yield_to_commits() {
    let thread = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(thread), NICE) {
        tracing::warn!(error = %e, "the checkpoint thread keeps normal priority");
    }
}

/// What a checkpoint reported.
struct Outcome {
    /// Another connection was checkpointing, so this one did nothing.
    busy: bool,
    /// Frames in the log.
    log: u64,
    /// Frames copied into the database file.
    copied: u64,
}

/// Runs a PASSIVE checkpoint.
fn passive(conn: &Connection) -> rusqlite::Result<Outcome> {
    // The row is (busy, frames in the log, frames copied); -1s when the database is not in WAL.
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok(Outcome {
            busy: row.get::<_, i64>(0)? != 0,
            log: row.get::<_, i64>(1)?.max(0) as u64,
            copied: row.get::<_, i64>(2)?.max(0) as u64,
        })
    })
}

/// The writer's checkpoint, run between two of its transactions. Returns false if the log was
/// not copied whole (the checkpoint thread was in a pass, or a reader still needs old frames):
/// the writer tries again after its next transaction.
pub fn finish(conn: &Connection) -> bool {
    match passive(conn) {
        Ok(o) => !o.busy && o.copied >= o.log,
        Err(e) => {
            tracing::warn!(error = %e, "WAL checkpoint on the writer failed");
            false
        }
    }
}
