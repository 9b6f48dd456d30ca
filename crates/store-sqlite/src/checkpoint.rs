//! WAL checkpoints off the commit path. The writer connection has automatic checkpoints turned
//! off, so a commit never stops to copy the log into the database file; this thread does it
//! every interval with a PASSIVE checkpoint, which never blocks the writer or readers.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tidings_store::Result;

use crate::backend;

/// How often the log is copied into the database file.
pub const INTERVAL: Duration = Duration::from_millis(500);

pub struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    pub fn spawn(path: &Path, durability: crate::Durability) -> Result<Checkpointer> {
        let conn = Connection::open(path).map_err(backend)?;
        crate::schema::configure(&conn, durability).map_err(backend)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tidings-sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
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
