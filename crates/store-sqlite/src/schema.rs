//! Connection settings and versioned migrations (tracked in `PRAGMA user_version`).

use rusqlite::Connection;

use crate::Durability;

/// Each entry migrates from version `index` to `index + 1`. Never edit a released entry: append.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    token_version INTEGER NOT NULL DEFAULT 0,
    inbox_seq     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE conversations (
    id        TEXT PRIMARY KEY,
    conv_type INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE messages (
    uid           TEXT PRIMARY KEY,
    conv_type     INTEGER NOT NULL,
    conv_id       TEXT NOT NULL,
    seq           INTEGER NOT NULL,
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

CREATE TABLE inbox (
    user_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    uid     TEXT NOT NULL,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;
CREATE INDEX inbox_by_uid ON inbox (uid);

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
"#];

pub fn configure(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Process => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize =
        conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied storage migration");
    }
    Ok(())
}
