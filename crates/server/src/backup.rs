//! `tidings backup` and `tidings restore` for the SQLite store, and the lock a server holds on
//! its database so that a restore never replaces the file under it.
//!
//! The lock is an advisory lock (`flock`) on `<database>.lock` beside the database, held by
//! `tidings serve` for as long as it runs and by `tidings restore` while it works; the kernel
//! drops it when the process ends, however it ends, so a crash leaves nothing to clean up.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::DB_FILE;

/// The SQLite database a command works on: `store` (a path, as `serve --store` takes it), or
/// `tidings.db` in `data_dir`. A PostgreSQL store is refused: it has its own tools.
pub fn database(data_dir: &Path, store: Option<&str>) -> anyhow::Result<PathBuf> {
    match store {
        None => Ok(data_dir.join(DB_FILE)),
        Some(url) if tidings_store_postgres::is_postgres_url(url) => bail!(
            "the store is a PostgreSQL database: back it up with pg_dump and put it back with \
             pg_restore (see docs/operations.md, \"Backups\")"
        ),
        Some(path) if path.trim().is_empty() => {
            bail!("store must be a postgres:// URL or a SQLite file path, not empty")
        }
        Some(path) => Ok(PathBuf::from(path)),
    }
}

/// The lock file of the database at `db`.
fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    db.with_file_name(name)
}

/// Takes the lock on the database at `db` without waiting; it is held until the file returned
/// is dropped (or the process ends). Fails if another process holds it.
pub fn lock(db: &Path) -> anyhow::Result<File> {
    let path = lock_path(db);
    // Opened for reading when it exists (a lock needs no more), so that a lock file another
    // user made (root, restoring for the service's user) does not keep the server out.
    let file = match File::open(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path),
        opened => opened,
    }
    .with_context(|| format!("opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use: a tidings server (or a restore) is running on this database; stop \
             it first",
            db.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// A name beside `path` for a file being written, to be renamed to `path` once complete.
fn temporary(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".tmp-{:08x}", rand::random::<u32>()));
    path.with_file_name(name)
}

/// Gives `path` to the owner of `like`, if it is not theirs already (which takes root).
fn give(path: &Path, like: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let now = std::fs::metadata(path)?;
    if (now.uid(), now.gid()) == (like.uid(), like.gid()) {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(like.uid()), Some(like.gid()))
}

/// Owner read and write only.
fn private() -> std::fs::Permissions {
    std::os::unix::fs::PermissionsExt::from_mode(0o600)
}

/// Creates the empty file `path` (which must not exist), readable by its owner only.
fn private_file(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok(())
}

/// Removes a file that may not exist.
fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// `path` with `suffix` appended to its file name (`tidings.db` → `tidings.db-wal`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Makes a rename in `file`'s directory durable.
fn sync_parent(file: &Path) -> anyhow::Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Copies the database at `db` (a server may be writing to it) to `to`, as one snapshot (see
/// `tidings_store_sqlite::backup`). The copy is written under a temporary name and renamed
/// into place once complete; an existing `to` is replaced only with `force`.
pub fn backup(
    db: &Path,
    to: &Path,
    force: bool,
) -> anyhow::Result<tidings_store_sqlite::backup::Copied> {
    if !db.is_file() {
        bail!("there is no database at {}", db.display());
    }
    if to.is_dir() {
        bail!("{} is a directory: name the backup file", to.display());
    }
    if to.exists() && !force {
        bail!("{} exists: pass --force to replace it", to.display());
    }
    let tmp = temporary(to);
    // Readable by its owner only, as the database is: it holds every message.
    private_file(&tmp)?;
    let copied = tidings_store_sqlite::backup::copy(db, &tmp);
    let copied = match copied {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(with_suffix(&tmp, "-journal"));
            return Err(anyhow::anyhow!(e)).context(format!("backing up {}", db.display()));
        }
    };
    std::fs::rename(&tmp, to)
        .with_context(|| format!("renaming {} to {}", tmp.display(), to.display()))?;
    sync_parent(to)?;
    Ok(copied)
}

/// Puts the backup `from` back as the database at `db`: checks that it is a sound Tidings
/// database no newer than this build, refuses while a server runs on `db` (its lock) or when
/// `db` exists without `force`, then copies it in under a temporary name and renames it into
/// place, removing the old database's WAL files first. Returns the restored schema version.
pub fn restore(from: &Path, db: &Path, force: bool) -> anyhow::Result<usize> {
    if !from.is_file() {
        bail!("there is no backup file at {}", from.display());
    }
    if std::fs::canonicalize(from).ok() == std::fs::canonicalize(db).ok() {
        bail!(
            "{} is the database itself: restore from a backup",
            from.display()
        );
    }
    let version = tidings_store_sqlite::backup::check(from).map_err(|e| anyhow::anyhow!(e))?;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating directory {}", dir.display()))?;
    }
    let _lock = lock(db)?;
    if db.exists() && !force {
        bail!(
            "{} exists: pass --force to replace it with the backup",
            db.display()
        );
    }
    // The restored file belongs to whoever owned the database it replaces, or else the
    // directory it goes in: the server's user, when root restores for it.
    let owner = std::fs::metadata(db)
        .or_else(|_| {
            std::fs::metadata(
                db.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
            )
        })
        .with_context(|| format!("reading the owner of {}", db.display()))?;
    let tmp = temporary(db);
    private_file(&tmp)?;
    let copied = std::fs::copy(from, &tmp)
        .and_then(|_| std::fs::set_permissions(&tmp, private()))
        .and_then(|_| give(&tmp, &owner))
        .and_then(|_| File::open(&tmp)?.sync_all())
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()));
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The old database's log would be replayed onto the new file: it goes first.
    for suffix in ["-wal", "-shm", "-journal"] {
        remove_if_present(&with_suffix(db, suffix))?;
    }
    std::fs::rename(&tmp, db)
        .with_context(|| format!("renaming {} to {}", tmp.display(), db.display()))?;
    sync_parent(db)?;
    Ok(version)
}
