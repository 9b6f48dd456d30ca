//! Copies of a database for backups, taken while a server writes to it, and the checks a copy
//! passes before it is put back.
//!
//! A copy is made with SQLite's online backup API in one step: the step reads every page inside
//! one read transaction, which in WAL mode never blocks the server's writer, so the copy is the
//! database as of one commit (a snapshot). A stepped backup (some pages at a time) would start
//! over whenever another connection commits between two steps, and under a steady stream of
//! messages might never finish; `VACUUM INTO` would also give a snapshot but rebuilds every
//! table and index, several times the work of copying pages. While the step runs the server's
//! checkpoints cannot pass the snapshot, so its WAL grows by what is written meanwhile and
//! shrinks at the next checkpoint after.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use tidings_store::{Result, StoreError};

use crate::schema;

/// What a copy holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// The schema version of the database copied.
    pub version: usize,
    /// Its size in pages.
    pub pages: u64,
}

fn refused(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The schema version of a Tidings database, or why `conn` holds none.
fn tidings_version(conn: &Connection, path: &Path) -> Result<usize> {
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' \
             AND name IN ('messages', 'inbox', 'users')",
            [],
            |row| row.get(0),
        )
        .map_err(|e| refused(format!("{} is not a SQLite database: {e}", path.display())))?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(refused)?;
    if tables != 3 || version < 1 {
        return Err(refused(format!(
            "{} is not a Tidings database (no Tidings tables or schema version)",
            path.display()
        )));
    }
    Ok(version as usize)
}

/// Copies the database at `from` (which a server may be writing to) into a new file `to`, as
/// one snapshot. `to` must not exist or be empty (made beforehand with the permissions the
/// copy should have). The copy is a plain rollback-journal database with no
/// `-wal` file of its own; a server opening it switches it to WAL again.
pub fn copy(from: &Path, to: &Path) -> Result<Copied> {
    // Read-write without create: a missing database is an error, not a new empty one. The
    // connection reads only; it opens read-write because a read-only connection cannot
    // recover the WAL index of a database no server has open.
    let src = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| refused(format!("opening {}: {e}", from.display())))?;
    src.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(refused)?;
    let version = tidings_version(&src, from)?;
    if std::fs::metadata(to).is_ok_and(|m| m.len() > 0) {
        return Err(refused(format!("{} exists", to.display())));
    }
    let mut dst =
        Connection::open(to).map_err(|e| refused(format!("creating {}: {e}", to.display())))?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst).map_err(refused)?;
        // -1: every page in one step, one read transaction: a snapshot (see the module's
        // comment). Busy or locked only while another connection recovers the WAL; wait then.
        loop {
            match backup.step(-1).map_err(refused)? {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::Busy | rusqlite::backup::StepResult::Locked => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                rusqlite::backup::StepResult::More => {}
                other => return Err(refused(format!("backup step: {other:?}"))),
            }
        }
    }
    // The pages came with the source's WAL flag; one self-contained file is easier to move.
    dst.pragma_update(None, "journal_mode", "DELETE")
        .map_err(refused)?;
    let pages: i64 = dst
        .pragma_query_value(None, "page_count", |row| row.get(0))
        .map_err(refused)?;
    dst.close().map_err(|(_, e)| refused(e))?;
    let file = std::fs::File::open(to).map_err(refused)?;
    file.sync_all().map_err(refused)?;
    Ok(Copied {
        version,
        pages: pages as u64,
    })
}

/// Checks that `path` is a sound Tidings database this build can open: SQLite's
/// `integrity_check` passes, and its schema version is not newer than this build's. Returns
/// the version.
pub fn check(path: &Path) -> Result<usize> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| refused(format!("opening {}: {e}", path.display())))?;
    let version = tidings_version(&conn, path)?;
    if version > schema::VERSION {
        return Err(refused(format!(
            "{} has schema version {version}, newer than this build's {}: restore it with a \
             newer tidings",
            path.display(),
            schema::VERSION
        )));
    }
    let mut stmt = conn.prepare("PRAGMA integrity_check").map_err(refused)?;
    let problems: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .map_err(refused)?
        .collect::<rusqlite::Result<_>>()
        .map_err(refused)?;
    if problems != ["ok"] {
        return Err(refused(format!(
            "{} fails SQLite's integrity check: {}",
            path.display(),
            problems.join("; ")
        )));
    }
    Ok(version)
}
