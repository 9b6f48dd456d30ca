//! Connection settings and versioned migrations (tracked in `PRAGMA user_version`).

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::Durability;

/// Each entry migrates from version `index` to `index + 1`. Never edit a released entry: append.
const MIGRATIONS: &[&str] = &[
    r#"
-- Token versions. Users without a row have version 0.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    token_version INTEGER NOT NULL
) WITHOUT ROWID;

-- Messages, conversation-wide. A conversation's last seq and a user's last inbox seq are not
-- stored as counters: they are the maxima of these tables, which the writer caches.
CREATE TABLE messages (
    conv_type     INTEGER NOT NULL,
    conv_id       TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    uid           TEXT NOT NULL,
    sender        TEXT NOT NULL,
    target        TEXT NOT NULL,
    sent_time     INTEGER NOT NULL,
    msg_type      TEXT NOT NULL,
    content       TEXT NOT NULL,
    push_text     TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    digest        TEXT NOT NULL,
    UNIQUE (conv_id, seq),
    UNIQUE (sender, client_msg_id)
);

-- One entry per user per message the user can see; `msg` is the message's rowid.
CREATE TABLE inbox (
    user_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    msg     INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;

CREATE TABLE device_cursors (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    cursor    INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;

CREATE TABLE nonces (
    nonce      TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX nonces_by_expiry ON nonces (expires_at);
"#,
    r#"
-- Whether a message raises its recipients' unread counts.
ALTER TABLE messages ADD COLUMN counted INTEGER NOT NULL DEFAULT 1;

-- A user's side of a conversation: its settings and read position. The newest message and the
-- unread count are not stored: they are read from messages, so they cannot drift.
CREATE TABLE conversations (
    user_id     TEXT NOT NULL,
    conv_type   INTEGER NOT NULL,
    target      TEXT NOT NULL,
    conv_id     TEXT NOT NULL,
    read_seq    INTEGER NOT NULL DEFAULT 0,
    pinned      INTEGER NOT NULL DEFAULT 0,
    muted       INTEGER NOT NULL DEFAULT 0,
    -- Out of the list while the conversation's newest seq is at most this.
    removed_seq INTEGER NOT NULL DEFAULT 0,
    -- The user's inbox seq of the event that reported the last change of these settings.
    version     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, conv_type, target)
) WITHOUT ROWID;

-- Conversations of messages stored before this table existed, read up to their newest message
-- (nothing from before the upgrade shows as unread).
INSERT INTO conversations (user_id, conv_type, target, conv_id, read_seq)
    SELECT p.user_id, 1, p.target, p.conv_id,
           (SELECT max(seq) FROM messages m WHERE m.conv_id = p.conv_id)
    FROM (SELECT DISTINCT sender AS user_id, target, conv_id FROM messages WHERE conv_type = 1
          UNION
          SELECT DISTINCT target, sender, conv_id FROM messages WHERE conv_type = 1) p
    WHERE true
    ON CONFLICT DO NOTHING;
"#,
    r#"
-- History a user cleared: messages up to this seq are gone for them.
ALTER TABLE conversations ADD COLUMN cleared_seq INTEGER NOT NULL DEFAULT 0;

-- Messages a user deleted for themself.
CREATE TABLE deleted_messages (
    user_id TEXT NOT NULL,
    conv_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (user_id, conv_id, seq)
) WITHOUT ROWID;
"#,
    r#"
-- Users a user blocks: their messages to the user are refused.
CREATE TABLE blocklist (
    user_id    TEXT NOT NULL,
    blocked_id TEXT NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
) WITHOUT ROWID;
"#,
    r#"
-- Bits: 1 recalled, 2 edited, 4 has reactions.
ALTER TABLE messages ADD COLUMN state INTEGER NOT NULL DEFAULT 0;

CREATE TABLE reactions (
    conv_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    emoji   TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (conv_id, seq, emoji, user_id)
) WITHOUT ROWID;
"#,
    r#"
-- The text search finds messages by (rowid = the message's rowid), indexed by trigrams so any
-- substring of three or more characters, CJK included, is found through the index by LIKE
-- (which checks each candidate against the text, so the index needs no positions).
CREATE VIRTUAL TABLE message_text USING fts5(text, tokenize = 'trigram', detail = none);
-- Merge index segments less eagerly than the defaults (4 and 16): each commit adds a segment,
-- and merging them is most of what indexing costs the writer.
INSERT INTO message_text (message_text, rank) VALUES ('automerge', 16);
INSERT INTO message_text (message_text, rank) VALUES ('crisismerge', 64);

-- A user's conversations by conversation id, for search.
CREATE INDEX conversations_by_conv ON conversations (user_id, conv_id);

-- Messages stored before search existed, by the rules of `validate::search_text`.
INSERT INTO message_text (rowid, text)
    SELECT rowid, text FROM (
        SELECT rowid, CASE
            WHEN msg_type IN ('image', 'voice') THEN NULL
            WHEN msg_type IN ('file', 'location') THEN json_extract(content, '$.name')
            WHEN msg_type = 'rich' THEN concat_ws(char(10), json_extract(content, '$.title'),
                                                  json_extract(content, '$.content'))
            ELSE json_extract(content, '$.text')
        END AS text
        FROM messages
        WHERE json_valid(content) AND msg_type NOT LIKE 'tidings:%' AND state & 1 = 0)
    WHERE typeof(text) = 'text' AND text != '';
"#,
    r#"
-- When the user was last connected, in ms (0: never recorded).
ALTER TABLE users ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- Quiet hours: `quiet_minutes` (0: none) from `quiet_start` minutes after midnight UTC.
ALTER TABLE users ADD COLUMN quiet_start INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN quiet_minutes INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- Every message up to this rowid is in the search index (or has no text to find); texts of
-- newer ones are indexed in batches behind the commits.
CREATE TABLE search_watermark (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    rowid INTEGER NOT NULL
);
INSERT INTO search_watermark (id, rowid) SELECT 1, coalesce(max(rowid), 0) FROM messages;
"#,
    r#"
-- Groups. Their messages are conversation type 3 with conv_id '3:' || id.
CREATE TABLE groups (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL DEFAULT '',
    portrait    TEXT NOT NULL DEFAULT '',
    extra       TEXT NOT NULL DEFAULT '',
    owner       TEXT NOT NULL,
    created     INTEGER NOT NULL,
    -- When it was dismissed (ms); 0 while it lives.
    dismissed   INTEGER NOT NULL DEFAULT 0,
    -- Until when only the owner may send (ms); 0: not muted.
    muted_until INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Members; the rowid orders them by when they joined (a member who rejoins gets a new one).
CREATE TABLE group_members (
    id          INTEGER PRIMARY KEY,
    group_id    TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    joined      INTEGER NOT NULL,
    -- The group conversation's seq just before the member joined.
    joined_seq  INTEGER NOT NULL,
    muted_until INTEGER NOT NULL DEFAULT 0,
    UNIQUE (group_id, user_id)
);
CREATE INDEX group_members_in_order ON group_members (group_id, id);
CREATE INDEX group_members_by_user ON group_members (user_id, group_id);

-- A member who left sees the group's conversation only up to this seq (0: no bound).
ALTER TABLE conversations ADD COLUMN until_seq INTEGER NOT NULL DEFAULT 0;

-- Users a message mentions, as a JSON array ('' for none); state bit 16 mentions everyone.
ALTER TABLE messages ADD COLUMN mentions TEXT NOT NULL DEFAULT '';

-- The members who see a directed group message (state bit 8), besides its sender.
CREATE TABLE message_audience (
    msg     INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (msg, user_id)
) WITHOUT ROWID;
"#,
    r#"
-- Users as small integers for the inbox, the table a message writes most rows to: a group
-- message writes one per member, and integer keys compare and store in a fraction of the cost
-- of text ones. `user_key` is a user's key in this database only.
CREATE TABLE user_keys (
    id       TEXT PRIMARY KEY,
    user_key INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO user_keys (id, user_key)
    SELECT user_id, row_number() OVER (ORDER BY user_id) FROM (SELECT DISTINCT user_id FROM inbox);

CREATE TABLE inbox_by_key (
    user_key INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    msg      INTEGER NOT NULL,
    PRIMARY KEY (user_key, seq)
) WITHOUT ROWID;
INSERT INTO inbox_by_key (user_key, seq, msg)
    SELECT k.user_key, i.seq, i.msg FROM inbox i JOIN user_keys k ON k.id = i.user_id;
DROP TABLE inbox;
ALTER TABLE inbox_by_key RENAME TO inbox;
"#,
    r#"
-- Profiles the app server sets, and bans.
ALTER TABLE users ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN portrait TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN extra TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN banned INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- Words messages may not hold: refused, or (with a replacement) replaced before storage.
CREATE TABLE sensitive_words (
    word        TEXT PRIMARY KEY,
    replacement TEXT
) WITHOUT ROWID;
"#,
    r#"
-- Chatrooms the app server created, and the bans and mutes of their users. Members, messages
-- and entries are the engine's, in memory.
CREATE TABLE chatrooms (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    extra       TEXT NOT NULL,
    created     INTEGER NOT NULL,
    max_members INTEGER NOT NULL,
    muted_until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE chatroom_users (
    room_id      TEXT NOT NULL REFERENCES chatrooms (id),
    user_id      TEXT NOT NULL,
    banned_until INTEGER NOT NULL,
    muted_until  INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
"#,
    r#"
-- The inbox entries of a message with many recipients, staged as one row and merged into
-- `inbox` later (see `pending.rs`): `entries` holds (user_key, seq) pairs, 16 bytes each.
CREATE TABLE inbox_pending (
    msg     INTEGER PRIMARY KEY,
    entries BLOB NOT NULL
);
"#,
    r#"
-- Built-in accounts: users who sign in with a password, kept as an Argon2id PHC string. The
-- account's user has a row in `users` from its creation on, which outlives the account.
CREATE TABLE accounts (
    user_id  TEXT PRIMARY KEY,
    password TEXT NOT NULL,
    created  INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    r#"
-- Web Push subscriptions: one per endpoint (the push service's URL for one browser profile),
-- read by user when a message reaches a user with no device online.
CREATE TABLE push_subscriptions (
    endpoint TEXT PRIMARY KEY,
    user_id  TEXT NOT NULL,
    p256dh   TEXT NOT NULL,
    auth     TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id, endpoint);
"#,
    r#"
-- Whether the id was made by registering an account; it stays set after the account is
-- deleted. Tokens of the app server are refused for such a user, and account tokens for every
-- other. Accounts deleted before this column existed are not known as such.
ALTER TABLE users ADD COLUMN account INTEGER NOT NULL DEFAULT 0;
UPDATE users SET account = 1 WHERE id IN (SELECT user_id FROM accounts);

-- A registration looks for the id in every table that holds a user's data, by an index.
CREATE INDEX chatroom_users_by_user ON chatroom_users (user_id);
"#,
    r#"
-- The admin console: its operators (a namespace of their own, apart from users and accounts),
-- their sessions (by the SHA-256 of the cookie's secret id) and the audit log of their actions.
CREATE TABLE admin_operators (
    name     TEXT PRIMARY KEY,
    password TEXT NOT NULL,
    created  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE admin_sessions (
    id_hash  TEXT PRIMARY KEY,
    operator TEXT NOT NULL,
    created  INTEGER NOT NULL,
    expires  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX admin_sessions_by_operator ON admin_sessions (operator);
CREATE TABLE admin_audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    time     INTEGER NOT NULL,
    operator TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    details  TEXT NOT NULL
);
"#,
    r#"
-- Who makes and manages a group: 'managed' (the app server), 'open' (made by a user naming it
-- when connecting, joined the same way) or 'discussion' (made and managed by its members).
-- `invite_open`: whether any member of a discussion may add members, or only its owner.
ALTER TABLE groups ADD COLUMN kind TEXT NOT NULL DEFAULT 'managed';
ALTER TABLE groups ADD COLUMN invite_open INTEGER NOT NULL DEFAULT 1;
"#,
    r#"
-- How far the other participant of a private conversation has read, as their read receipts
-- told this user. Not filled in from their read_seq: a silent read must stay unknown, so
-- conversations read before this column existed show no position until the next receipt.
ALTER TABLE conversations ADD COLUMN peer_read_seq INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- The merged inbox entries of large fan-outs (see `pending.rs`): one row per user per merge
-- (more if long), `entries` the (seq, message rowid) pairs as varint deltas, in seq order, and
-- `last_seq` the last of them. A user's blocks do not overlap.
CREATE TABLE inbox_blocks (
    user_key INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    entries  BLOB NOT NULL,
    PRIMARY KEY (user_key, last_seq)
) WITHOUT ROWID;
"#,
    r#"
-- Push tokens of every provider (Web Push, FCM, APNs), replacing the Web Push subscriptions:
-- one row per (provider, token), owned by one device (`device_id`, '' when none was named) of
-- one user. For Web Push `token` is the endpoint and `p256dh`, `auth` its keys.
CREATE TABLE push_tokens (
    provider  TEXT NOT NULL,
    token     TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    app_id    TEXT NOT NULL,
    sandbox   INTEGER NOT NULL,
    locale    TEXT NOT NULL,
    p256dh    TEXT NOT NULL,
    auth      TEXT NOT NULL,
    PRIMARY KEY (provider, token)
) WITHOUT ROWID;
CREATE INDEX push_tokens_user ON push_tokens (user_id, device_id);
INSERT INTO push_tokens (provider, token, user_id, device_id, app_id, sandbox, locale, p256dh, auth)
    SELECT 'webpush', endpoint, user_id, '', '', 0, '', p256dh, auth FROM push_subscriptions;
DROP TABLE push_subscriptions;

-- Notifications due: written in the commit that appends a message to the inbox of a user with
-- a push token (the rule is `tidings_store::rules::push::push_due`), deleted once sent or
-- decided against. What a crash leaves here is sent at the next start.
CREATE TABLE push_due (
    user_id   TEXT NOT NULL,
    inbox_seq INTEGER NOT NULL,
    msg       INTEGER NOT NULL,
    PRIMARY KEY (user_id, inbox_seq)
) WITHOUT ROWID;
"#,
    r#"
-- The sender's data for the app that a notification carries (seed 004's pushData): kept with
-- what is due, as only notifications need it.
ALTER TABLE push_due ADD COLUMN push_data TEXT NOT NULL DEFAULT '';
"#,
    r#"
-- The MLS key package directory: key packages devices uploaded for others to add them to
-- encrypted groups (the rules are `tidings_store::rules::keys`). `ord` is the upload order.
CREATE TABLE key_packages (
    ord         INTEGER PRIMARY KEY,
    reference   BLOB NOT NULL UNIQUE,
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    last_resort INTEGER NOT NULL,
    not_after   INTEGER NOT NULL,
    data        BLOB NOT NULL
);
CREATE INDEX key_packages_user ON key_packages (user_id, device_id);

-- End-to-end encrypted conversations: each one's MLS group and its current epoch, which the
-- next commit must name (the rule is `tidings_store::rules::e2ee::order`).
CREATE TABLE e2ee_groups (
    conv_id  TEXT PRIMARY KEY,
    group_id BLOB NOT NULL,
    epoch    INTEGER NOT NULL
) WITHOUT ROWID;
"#,
];

/// Page cache per connection, in KiB.
const CACHE_KIB: i64 = 32 * 1024;
/// The size the WAL file is cut back to when the log restarts, if it grew past it.
const WAL_FILE_LIMIT_BYTES: i64 = 64 << 20;
/// No memory-mapped I/O. With `mmap_size` at 1 GiB on every connection, the store's `wal` test
/// run six at a time on two cores (so that its threads are often preempted) ended with
/// `database disk image is malformed`, found again by `PRAGMA integrity_check` on a new
/// connection, or with acknowledged writes missing: 3 runs of 48 (and 1 of 36 on the code
/// before this change); with it off, none of 108. SQLite's default, spelled out.
const MMAP_BYTES: i64 = 0;

pub fn configure(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Process => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A larger page cache keeps hot b-tree pages out of read() calls.
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "journal_size_limit", WAL_FILE_LIMIT_BYTES)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// Settings of a read-only connection.
pub fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "cache_size", -(CACHE_KIB / 4))?;
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    Ok(())
}

/// The schema version this build migrates a database to.
pub const VERSION: usize = MIGRATIONS.len();

/// Applies the pending migrations and logs one line saying where the schema stands.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let mut applied = 0;
    loop {
        // The version is read under the write lock, so that two processes opening the database
        // at once (a server starting, `tidings token` recording a user) apply each migration
        // once: the second waits, then reads the version the first wrote.
        let tx = write_transaction(conn)?;
        let version =
            tx.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))? as usize;
        let Some(sql) = MIGRATIONS.get(version) else {
            tracing::info!(
                version,
                applied,
                "database schema at version {version} (applied {applied} migrations)"
            );
            return Ok(());
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (version + 1) as i64)?;
        tx.commit()?;
        applied += 1;
    }
}

/// A transaction that takes the database's write lock as it begins, waiting for it (up to the
/// busy timeout) while another connection holds it. Every write transaction is one: a
/// transaction that read first and took the lock only at its first write would fail at once,
/// without waiting, if another process (`tidings token`) had committed in between.
pub fn write_transaction(conn: &mut Connection) -> rusqlite::Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write transaction holds the write lock from its start: another process's write waits
    /// for it instead of committing between this transaction's reads and its writes, which
    /// would make its first write fail at once (`SQLITE_BUSY_SNAPSHOT`, no busy wait).
    #[test]
    fn a_write_transaction_holds_the_write_lock_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        configure(&conn, Durability::Full).unwrap();
        migrate(&mut conn).unwrap();
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();

        let tx = write_transaction(&mut conn).unwrap();
        let users: i64 = tx
            .query_row("SELECT count(*) FROM users", [], |row| row.get(0))
            .unwrap();
        assert_eq!(users, 0);
        let refused = other.execute_batch("BEGIN IMMEDIATE; COMMIT;").unwrap_err();
        assert_eq!(
            refused.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy),
            "{refused}"
        );
        tx.execute("INSERT INTO users (id, token_version) VALUES ('a', 0)", [])
            .unwrap();
        tx.commit().unwrap();
        // Once it commits, the other connection writes.
        other
            .execute("INSERT INTO users (id, token_version) VALUES ('b', 0)", [])
            .unwrap();
    }
}
