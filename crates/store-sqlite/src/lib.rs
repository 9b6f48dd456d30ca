//! The embedded SQLite store, Tidings' default backend: one database file in the data directory,
//! WAL journal, one dedicated writer thread that commits many batches per transaction (group
//! commit), a checkpoint thread that copies the log into the database file off the commit path,
//! and a small pool of read-only connections used from `spawn_blocking`.
//!
//! Durability: with [`Durability::Full`] (the default) SQLite runs `synchronous = FULL`, so every
//! commit is fsynced to the WAL before [`Store::write`] returns and the engine acknowledges it.
//! [`Durability::Process`] runs `synchronous = NORMAL`: a commit survives a crash of the process
//! but the newest commits can be lost if the machine loses power.
//!
//! This crate is the only one that knows SQL or rusqlite.

mod accounts;
mod admin;
pub mod backup;
mod chatrooms;
mod checkpoint;
mod conversations;
mod groups;
mod index;
mod pending;
mod records;
mod schema;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tidings_store::{
    AccountRecord, AdminOp, AdminResult, AdminSessionRecord, AuditEntry, ChatroomRecord,
    ChatroomUser, ConversationFilter, Conversations, GroupInfo, GroupMembers, GroupReceipt,
    History, HistoryQuery, InboxEntry, OperatorRecord, Page, PushDue, PushProvider,
    PushTokenRecord, Result, SearchPage, SearchQuery, SessionState, Store, StoreError,
    StoredMessage, UserProfile, UserRecord, UserState, WriteOp, WriteResult,
};
use tokio::sync::{Semaphore, oneshot};

use tidings_store::batch::to_writer;
use tidings_store::rows::{self, reactions_from_json};

// The bits of a message's `state` column (see `tidings_store::rows`), as SQLite reads them.
pub(crate) const STATE_RECALLED: i64 = rows::STATE_RECALLED as i64;
pub(crate) const STATE_EDITED: i64 = rows::STATE_EDITED as i64;
pub(crate) const STATE_REACTIONS: i64 = rows::STATE_REACTIONS as i64;
pub(crate) const STATE_DIRECTED: i64 = rows::STATE_DIRECTED as i64;
pub(crate) const STATE_MENTION_ALL: i64 = rows::STATE_MENTION_ALL as i64;

pub use schema::VERSION as SCHEMA_VERSION;
pub use writer::MAX_BATCH_OPS;

/// How far a commit is flushed before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync on every commit: survives power loss.
    #[default]
    Full,
    /// No fsync on commit: survives a process crash, not a power loss.
    Process,
}

#[derive(Debug, Clone)]
pub struct SqliteConfig {
    pub path: PathBuf,
    pub durability: Durability,
    /// Number of read-only connections.
    pub readers: usize,
    /// How often the checkpoint thread copies the WAL into the database file.
    pub checkpoint_interval: std::time::Duration,
    /// WAL frames (pages) past which the writer finishes a checkpoint itself between two
    /// transactions, so the log restarts from its beginning instead of growing under a load
    /// that never pauses.
    pub wal_restart_frames: u64,
}

impl SqliteConfig {
    pub fn new(path: impl Into<PathBuf>) -> SqliteConfig {
        SqliteConfig {
            path: path.into(),
            durability: Durability::Full,
            readers: 4,
            checkpoint_interval: checkpoint::INTERVAL,
            wal_restart_frames: checkpoint::RESTART_FRAMES,
        }
    }
}

pub struct SqliteStore {
    writer: Mutex<Option<writer::Handle>>,
    checkpointer: Mutex<Option<checkpoint::Checkpointer>>,
    readers: ReaderPool,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Records `user` in the database at `path` as [`WriteOp::RecordUser`] does (creating and
/// migrating the database first if need be) and returns the record, through one connection of
/// its own. For minting tokens offline while a server may be running on the database: opening
/// a [`SqliteStore`] would start a second writer on it, whose search index catch-up and
/// checkpoints would change the database behind the server's writer, which keeps state (the
/// texts waiting to be indexed, seqs and user keys) on the understanding that it is the only
/// one. This writes one `users` row, which that writer keeps nothing of in memory, in a
/// transaction that waits for the write lock as the writer's own transactions do (see
/// `schema::write_transaction`), so neither makes the other fail.
pub fn record_user(path: &std::path::Path, user: &str) -> Result<UserRecord> {
    let mut conn = open_beside(path)?;
    let tx = schema::write_transaction(&mut conn).map_err(backend)?;
    let record = accounts::record(&tx, user).map_err(backend)?;
    tx.commit().map_err(backend)?;
    Ok(record)
}

/// One connection of its own to the database at `path`, created and migrated if need be, for
/// the command line beside a running server (see [`record_user`]).
fn open_beside(path: &std::path::Path) -> Result<Connection> {
    let mut conn = Connection::open(path).map_err(backend)?;
    schema::configure(&conn, Durability::Full).map_err(backend)?;
    schema::migrate(&mut conn).map_err(backend)?;
    Ok(conn)
}

/// Applies admin writes (operators, the audit log) to the database at `path` in one
/// transaction, through a connection of its own as [`record_user`] does: for `tidings admin`
/// beside a running server, whose writer caches nothing of these tables.
pub fn admin_beside(path: &std::path::Path, ops: Vec<AdminOp>) -> Result<Vec<AdminResult>> {
    let mut conn = open_beside(path)?;
    let tx = schema::write_transaction(&mut conn).map_err(backend)?;
    let results = ops
        .into_iter()
        .map(|op| admin::apply(&tx, op))
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)?;
    tx.commit().map_err(backend)?;
    Ok(results)
}

/// The operators in the database at `path`, in name order (see [`admin_beside`]).
pub fn operators_beside(path: &std::path::Path) -> Result<Vec<OperatorRecord>> {
    admin::operators(&open_beside(path)?).map_err(backend)
}

impl SqliteStore {
    /// Opens (creating if needed) the database and runs pending migrations.
    pub fn open(config: &SqliteConfig) -> Result<SqliteStore> {
        let mut conn = Connection::open(&config.path).map_err(backend)?;
        schema::configure(&conn, config.durability).map_err(backend)?;
        schema::migrate(&mut conn).map_err(backend)?;
        // The writer checkpoints by itself right after the commit that takes the log past the
        // restart size, rather than when the checkpoint thread next notices (which, on busy
        // cores, let the log grow to 27–48 MiB in the `wal` test against its limit of 16).
        conn.pragma_update(None, "wal_autocheckpoint", config.wal_restart_frames as i64)
            .map_err(backend)?;
        let writer = writer::spawn(conn)?;
        let checkpointer = checkpoint::Checkpointer::spawn(config, writer.sender())?;
        let mut readers = Vec::with_capacity(config.readers.max(1));
        for _ in 0..config.readers.max(1) {
            let conn = Connection::open_with_flags(
                &config.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(backend)?;
            schema::configure_reader(&conn).map_err(backend)?;
            readers.push(conn);
        }
        Ok(SqliteStore {
            writer: Mutex::new(Some(writer)),
            checkpointer: Mutex::new(Some(checkpointer)),
            readers: ReaderPool {
                permits: Arc::new(Semaphore::new(readers.len())),
                conns: Arc::new(Mutex::new(readers)),
            },
        })
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.readers.run(f).await
    }
}

/// A pool of read-only connections. A semaphore permit guarantees a connection is free.
struct ReaderPool {
    permits: Arc<Semaphore>,
    conns: Arc<Mutex<Vec<Connection>>>,
}

impl ReaderPool {
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        // The permit moves into the blocking task: if the caller stops waiting, the connection
        // stays accounted for until the task puts it back.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let conns = self.conns.clone();
        // A poisoned lock only means another reader panicked; the Vec itself is intact.
        let conn = conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .ok_or(StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let result = f(&conn);
            conns.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            drop(permit);
            result.map_err(backend)
        })
        .await
        .map_err(backend)?
    }
}

pub(crate) fn message_from_row(
    row: &rusqlite::Row<'_>,
    offset: usize,
) -> rusqlite::Result<StoredMessage> {
    let state: i64 = row.get(offset + 11)?;
    let reactions: Option<String> = row.get(offset + 12)?;
    Ok(StoredMessage {
        uid: row.get(offset)?,
        conversation_type: row.get(offset + 1)?,
        conversation_id: row.get(offset + 2)?,
        sender: row.get(offset + 3)?,
        target: row.get(offset + 4)?,
        seq: row.get::<_, i64>(offset + 5)? as u64,
        sent_time: row.get(offset + 6)?,
        msg_type: row.get(offset + 7)?,
        content: row.get(offset + 8)?,
        push_text: row.get(offset + 9)?,
        client_msg_id: row.get(offset + 10)?,
        recalled: state & STATE_RECALLED != 0,
        edited: state & STATE_EDITED != 0,
        reactions: reactions
            .map(|json| reactions_from_json(&json))
            .unwrap_or_default(),
        mentions: user_list(&row.get::<_, String>(offset + 13)?),
        mention_all: state & STATE_MENTION_ALL != 0,
        audience: user_list(
            &row.get::<_, Option<String>>(offset + 14)?
                .unwrap_or_default(),
        ),
    })
}

/// A JSON array of user ids as stored ('' for none).
fn user_list(json: &str) -> Vec<String> {
    if json.is_empty() {
        return Vec::new();
    }
    serde_json::from_str(json).unwrap_or_default()
}

/// The columns `message_from_row` reads, from `messages m`. Reactions are read only for
/// messages that have some.
pub(crate) const MESSAGE_COLUMNS: &str = "m.uid, m.conv_type, m.conv_id, m.sender, m.target, m.seq, \
     m.sent_time, m.msg_type, m.content, m.push_text, m.client_msg_id, m.state, \
     CASE WHEN m.state & 4 THEN (SELECT json_group_array(json_array(emoji, user_id)) \
     FROM reactions WHERE conv_id = m.conv_id AND seq = m.seq) END, m.mentions, \
     CASE WHEN m.state & 8 THEN (SELECT json_group_array(user_id) \
     FROM message_audience WHERE msg = m.rowid) END";

/// The inbox key of the user `?1` (NULL, matching no entry, for a user without one).
pub(crate) const USER_KEY: &str = "(SELECT user_key FROM user_keys WHERE id = ?1)";

/// How many columns [`MESSAGE_COLUMNS`] has.
pub(crate) const MESSAGE_COLUMN_COUNT: usize = 15;

#[async_trait]
impl Store for SqliteStore {
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>> {
        let (reply, rx) = oneshot::channel();
        to_writer(&self.writer, |h| {
            h.submit(writer::Request::Write { ops, reply })
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn inbox_after(&self, user: &str, after: u64, limit: usize) -> Result<Vec<InboxEntry>> {
        let user = user.to_string();
        self.read(move |c| {
            // One snapshot of the inbox's rows, blocks and staged entries (see `pending`).
            let tx = c.unchecked_transaction()?;
            let Some(key) = pending::user_key(&tx, &user)? else {
                return Ok(Vec::new());
            };
            let sql = format!(
                "SELECT i.seq, {MESSAGE_COLUMNS} FROM inbox i JOIN messages m ON m.rowid = i.msg \
                 WHERE i.user_key = ?1 AND i.seq > ?2 ORDER BY i.seq LIMIT ?3"
            );
            let mut entries = tx
                .prepare_cached(&sql)?
                .query_map(params![key, after as i64, limit as i64], |row| {
                    Ok(InboxEntry {
                        inbox_seq: row.get::<_, i64>(0)? as u64,
                        message: message_from_row(row, 1)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let staged = pending::entries_after(&tx, key, after, limit)?;
            if staged.is_empty() {
                return Ok(entries);
            }
            // The first `limit` seqs of both; an entry being merged is in both.
            let mut seqs: Vec<(u64, Option<i64>)> = entries
                .iter()
                .map(|e| (e.inbox_seq, None))
                .chain(staged.into_iter().map(|(seq, msg)| (seq, Some(msg))))
                .collect();
            seqs.sort_unstable_by_key(|(seq, msg)| (*seq, msg.is_some()));
            seqs.dedup_by_key(|(seq, _)| *seq);
            seqs.truncate(limit);
            let mut merged = entries.drain(..).peekable();
            let mut message = tx.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.rowid = ?1"
            ))?;
            let mut out = Vec::with_capacity(seqs.len());
            for (seq, msg) in seqs {
                match msg {
                    None => out.extend(merged.next_if(|e| e.inbox_seq == seq)),
                    Some(msg) => out.push(InboxEntry {
                        inbox_seq: seq,
                        message: message.query_row(params![msg], |row| message_from_row(row, 0))?,
                    }),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn conversation_after(
        &self,
        conversation_id: &str,
        page: Page,
    ) -> Result<Vec<StoredMessage>> {
        let (conv, Page { after, limit }) = (conversation_id.to_string(), page);
        self.read(move |c| {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conv_id = ?1 AND m.seq > ?2 \
                 ORDER BY m.seq LIMIT ?3"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![conv, after as i64, limit as i64], |row| {
                message_from_row(row, 0)
            })?;
            rows.collect()
        })
        .await
    }

    async fn user_state(&self, user: &str) -> Result<UserState> {
        let user = user.to_string();
        self.read(move |c| read_user_state(c, &user)).await
    }

    async fn session_state(&self, user: &str, device: Option<&str>) -> Result<SessionState> {
        let (user, device) = (user.to_string(), device.map(str::to_string));
        self.read(move |c| {
            let state = read_user_state(c, &user)?;
            let cursor = match device {
                Some(device) => read_cursor(c, &user, &device)?,
                None => 0,
            };
            Ok(SessionState {
                user: state,
                cursor,
            })
        })
        .await
    }

    async fn device_cursor(&self, user: &str, device: &str) -> Result<u64> {
        let (user, device) = (user.to_string(), device.to_string());
        self.read(move |c| read_cursor(c, &user, &device)).await
    }

    async fn conversations(&self, user: &str, filter: ConversationFilter) -> Result<Conversations> {
        let user = user.to_string();
        self.read(move |c| conversations::read(c, &user, &filter))
            .await
    }

    async fn group(&self, id: &str) -> Result<Option<GroupInfo>> {
        let id = id.to_string();
        self.read(move |c| groups::group(c, &id)).await
    }

    async fn group_members(&self, id: &str, after: u64, limit: usize) -> Result<GroupMembers> {
        let id = id.to_string();
        self.read(move |c| groups::members(c, &id, after, limit))
            .await
    }

    async fn is_group_member(&self, id: &str, user: &str) -> Result<bool> {
        let (id, user) = (id.to_string(), user.to_string());
        self.read(move |c| groups::is_member(c, &id, &user)).await
    }

    async fn user_groups(&self, user: &str) -> Result<Vec<GroupInfo>> {
        let user = user.to_string();
        self.read(move |c| groups::user_groups(c, &user)).await
    }

    async fn group_receipt(&self, id: &str, seq: u64) -> Result<Option<GroupReceipt>> {
        let id = id.to_string();
        self.read(move |c| groups::receipt(c, &id, seq)).await
    }

    async fn chatroom(&self, id: &str) -> Result<Option<(ChatroomRecord, Vec<ChatroomUser>)>> {
        let id = id.to_string();
        self.read(move |c| chatrooms::chatroom(c, &id)).await
    }

    async fn account(&self, user: &str) -> Result<Option<AccountRecord>> {
        let user = user.to_string();
        self.read(move |c| accounts::account(c, &user)).await
    }

    async fn operator(&self, name: &str) -> Result<Option<OperatorRecord>> {
        let name = name.to_string();
        self.read(move |c| admin::operator(c, &name)).await
    }

    async fn operators(&self) -> Result<Vec<OperatorRecord>> {
        self.read(admin::operators).await
    }

    async fn admin_session(&self, id_hash: &str) -> Result<Option<AdminSessionRecord>> {
        let id_hash = id_hash.to_string();
        self.read(move |c| admin::session(c, &id_hash)).await
    }

    async fn audit_log(&self, before: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        self.read(move |c| admin::audit_log(c, before, limit)).await
    }

    async fn blocklist(&self, user: &str) -> Result<Vec<String>> {
        let user = user.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT blocked_id FROM blocklist WHERE user_id = ?1 ORDER BY blocked_id",
            )?
            .query_map(params![user], |row| row.get(0))?
            .collect()
        })
        .await
    }

    async fn quiet_hours(&self, user: &str) -> Result<(u32, u32)> {
        let user = user.to_string();
        self.read(move |c| {
            c.prepare_cached("SELECT quiet_start, quiet_minutes FROM users WHERE id = ?1")?
                .query_row(params![user], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
                .map(Option::unwrap_or_default)
        })
        .await
    }

    async fn push_tokens(&self, users: &[String]) -> Result<Vec<PushTokenRecord>> {
        let users = users.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT device_id, provider, token, app_id, sandbox, locale, p256dh, auth \
                 FROM push_tokens WHERE user_id = ?1 ORDER BY provider, token",
            )?;
            let mut sorted = users;
            sorted.sort();
            sorted.dedup();
            let mut out = Vec::new();
            for user in sorted {
                let rows = stmt.query_map(params![user], |row| {
                    let provider: String = row.get(1)?;
                    Ok(PushTokenRecord {
                        user: user.clone(),
                        device: row.get(0)?,
                        provider: PushProvider::parse(&provider).unwrap_or_default(),
                        token: row.get(2)?,
                        app_id: row.get(3)?,
                        sandbox: row.get(4)?,
                        locale: row.get(5)?,
                        p256dh: row.get(6)?,
                        auth: row.get(7)?,
                    })
                })?;
                for row in rows {
                    out.push(row?);
                }
            }
            // Ordered by user, then provider (in the enum's order), then token.
            out.sort_by(|a, b| {
                (&a.user, a.provider, &a.token).cmp(&(&b.user, b.provider, &b.token))
            });
            Ok(out)
        })
        .await
    }

    async fn push_due(&self, limit: usize) -> Result<Vec<PushDue>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT d.user_id, d.inbox_seq, d.push_data, {MESSAGE_COLUMNS} FROM push_due d \
                 JOIN messages m ON m.rowid = d.msg ORDER BY d.msg, d.user_id LIMIT ?1"
            ))?;
            let rows = stmt.query_map(params![limit as i64], |row| {
                Ok(PushDue {
                    user: row.get(0)?,
                    inbox_seq: row.get::<_, i64>(1)? as u64,
                    push_data: row.get(2)?,
                    message: message_from_row(row, 3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn sensitive_words(&self) -> Result<Vec<(String, Option<String>)>> {
        self.read(move |c| {
            c.prepare_cached("SELECT word, replacement FROM sensitive_words ORDER BY word")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .await
    }

    async fn user_ids_after(&self, after: &str, limit: usize) -> Result<Vec<String>> {
        let after = after.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id FROM user_keys WHERE id > ?1 UNION SELECT id FROM users WHERE id > ?1 \
                 ORDER BY 1 LIMIT ?2",
            )?
            .query_map(params![after, limit as i64], |row| row.get(0))?
            .collect()
        })
        .await
    }

    async fn profiles(&self, users: &[String]) -> Result<Vec<UserProfile>> {
        let users = users.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, portrait, extra, banned, last_seen FROM users WHERE id = ?1",
            )?;
            users
                .iter()
                .map(|u| {
                    stmt.query_row(params![u], |row| {
                        Ok(UserProfile {
                            name: row.get(0)?,
                            portrait: row.get(1)?,
                            extra: row.get(2)?,
                            banned: row.get(3)?,
                            last_seen: row.get(4)?,
                        })
                    })
                    .optional()
                    .map(Option::unwrap_or_default)
                })
                .collect()
        })
        .await
    }

    async fn last_seen(&self, users: &[String]) -> Result<Vec<i64>> {
        let users = users.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT last_seen FROM users WHERE id = ?1")?;
            users
                .iter()
                .map(|u| {
                    stmt.query_row(params![u], |row| row.get(0))
                        .optional()
                        .map(|t| t.unwrap_or(0))
                })
                .collect()
        })
        .await
    }

    async fn search(&self, user: &str, query: SearchQuery) -> Result<SearchPage> {
        // Texts are indexed in batches behind the commits: have the writer index what waits, so
        // the search sees every committed message.
        let (reply, indexed) = oneshot::channel();
        to_writer(&self.writer, |h| {
            h.submit(writer::Request::FlushIndex { reply })
        })?;
        indexed.await.map_err(|_| StoreError::Closed)?;
        let user = user.to_string();
        self.read(move |c| conversations::search(c, &user, &query))
            .await
    }

    async fn is_blocked(&self, user: &str, other: &str) -> Result<bool> {
        let (user, other) = (user.to_string(), other.to_string());
        self.read(move |c| {
            c.prepare_cached("SELECT 1 FROM blocklist WHERE user_id = ?1 AND blocked_id = ?2")?
                .query_row(params![user, other], |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
        })
        .await
    }

    async fn history(&self, user: &str, query: HistoryQuery) -> Result<History> {
        let user = user.to_string();
        self.read(move |c| conversations::history(c, &user, &query))
            .await
    }

    async fn close(&self) -> Result<()> {
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(handle) = handle else {
            return Ok(());
        };
        let checkpointer = self
            .checkpointer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(c) = checkpointer {
            tokio::task::spawn_blocking(move || c.stop())
                .await
                .map_err(backend)?;
        }
        let (reply, rx) = oneshot::channel();
        handle.submit(writer::Request::Close { reply })?;
        rx.await.map_err(|_| StoreError::Closed)??;
        tokio::task::spawn_blocking(move || handle.join())
            .await
            .map_err(backend)?;
        self.readers.permits.close();
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        if self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
        {
            return Err(StoreError::Closed);
        }
        // Reads the first page of the database file, as every query does.
        self.read(|c| c.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())))
            .await
    }
}

fn read_user_state(c: &Connection, user: &str) -> rusqlite::Result<UserState> {
    let (token_version, banned, account): (i64, bool, bool) = c
        .prepare_cached("SELECT token_version, banned, account FROM users WHERE id = ?1")?
        .query_row(params![user], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?
        .unwrap_or((0, false, false));
    let inbox_seq = {
        let tx = c.unchecked_transaction()?;
        pending::last_inbox_seq(&tx, user)?
    };
    Ok(UserState {
        token_version: token_version as u64,
        banned,
        inbox_seq,
        account,
    })
}

fn read_cursor(c: &Connection, user: &str, device: &str) -> rusqlite::Result<u64> {
    let cursor: Option<i64> = c
        .prepare_cached("SELECT cursor FROM device_cursors WHERE user_id = ?1 AND device_id = ?2")?
        .query_row(params![user, device], |row| row.get(0))
        .optional()?;
    Ok(cursor.unwrap_or(0) as u64)
}
