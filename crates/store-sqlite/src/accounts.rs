//! Built-in accounts: a password hash per user who signs in with one. The user's row in `users`
//! is made with the account, marked as an account's, and outlives it, so a deleted account's
//! name stays taken and its id stays an account's.
//!
//! Accounts and the app server's users never share an id: an account is only made for an id
//! the store has no trace of ([`CREATE`]), and a token for an app server's user is only minted
//! once its id is recorded ([`record`]), which no later registration gets past.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tidings_store::{AccountRecord, UserRecord, WriteResult};

/// Makes an account's `users` row (token version 1: no token minted before it is current)
/// unless the id `?1` has a trace in the store. The traces are every table that holds data of
/// or for a user, each looked up by an index: a record (`users`: accounts, deleted ones too,
/// profiles, bans, revocations, minted tokens, connections), an inbox (`user_keys`: every user
/// who ever had an inbox entry, staged or merged, has a key), conversations, group
/// memberships, messages sent (a system account's are its only trace), device cursors,
/// messages deleted for the user, a blocklist, chatroom bans and mutes, push subscriptions.
/// Not looked up, because only a user found by one of these can have them: reactions,
/// mentions and directed messages' audiences (of participants and members), a group's owner
/// (a member). Nor is being on someone else's blocklist: that is the other user's data.
const CREATE: &str = "INSERT INTO users (id, token_version, account) SELECT ?1, 1, 1 \
    WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = ?1) \
    AND NOT EXISTS (SELECT 1 FROM user_keys WHERE id = ?1) \
    AND NOT EXISTS (SELECT 1 FROM conversations WHERE user_id = ?1) \
    AND NOT EXISTS (SELECT 1 FROM group_members WHERE user_id = ?1) \
    AND NOT EXISTS (SELECT 1 FROM messages WHERE sender = ?1) \
    AND NOT EXISTS (SELECT 1 FROM device_cursors WHERE user_id = ?1) \
    AND NOT EXISTS (SELECT 1 FROM deleted_messages WHERE user_id = ?1) \
    AND NOT EXISTS (SELECT 1 FROM blocklist WHERE user_id = ?1) \
    AND NOT EXISTS (SELECT 1 FROM chatroom_users WHERE user_id = ?1) \
    AND NOT EXISTS (SELECT 1 FROM push_tokens WHERE user_id = ?1)";

pub fn create(tx: &Transaction<'_>, a: AccountRecord) -> rusqlite::Result<WriteResult> {
    // Decided in the writer's transaction, so nothing written to the id before is missed.
    if tx.prepare_cached(CREATE)?.execute(params![a.user])? == 0 {
        return Ok(WriteResult::AccountCreated { fresh: false });
    }
    tx.prepare_cached("INSERT INTO accounts (user_id, password, created) VALUES (?1, ?2, ?3)")?
        .execute(params![a.user, a.password_hash, a.created])?;
    Ok(WriteResult::AccountCreated { fresh: true })
}

/// Records `user` (a `users` row, if it has none) and returns what the record says.
pub fn record(tx: &Transaction<'_>, user: &str) -> rusqlite::Result<UserRecord> {
    tx.prepare_cached(
        "INSERT INTO users (id, token_version) VALUES (?1, 0) ON CONFLICT DO NOTHING",
    )?
    .execute(params![user])?;
    tx.prepare_cached("SELECT token_version, account FROM users WHERE id = ?1")?
        .query_row(params![user], |row| {
            Ok(UserRecord {
                token_version: row.get::<_, i64>(0)? as u64,
                account: row.get(1)?,
            })
        })
}

pub fn change(
    tx: &Transaction<'_>,
    user: &str,
    expected: &str,
    password_hash: Option<&str>,
) -> rusqlite::Result<WriteResult> {
    let changed = match password_hash {
        Some(hash) => tx
            .prepare_cached(
                "UPDATE accounts SET password = ?3 WHERE user_id = ?1 AND password = ?2",
            )?
            .execute(params![user, expected, hash])?,
        None => tx
            .prepare_cached("DELETE FROM accounts WHERE user_id = ?1 AND password = ?2")?
            .execute(params![user, expected])?,
    };
    let token_version = if changed == 0 {
        None
    } else {
        Some(bump_token_version(tx, user)?)
    };
    Ok(WriteResult::AccountChanged { token_version })
}

/// Increments a user's token version (from 0 if the user has no row) and returns the new one.
pub fn bump_token_version(tx: &Transaction<'_>, user: &str) -> rusqlite::Result<u64> {
    let version: i64 = tx
        .prepare_cached(
            "INSERT INTO users (id, token_version) VALUES (?1, 1) ON CONFLICT (id) \
             DO UPDATE SET token_version = token_version + 1 RETURNING token_version",
        )?
        .query_row(params![user], |row| row.get(0))?;
    Ok(version as u64)
}

pub fn account(c: &Connection, user: &str) -> rusqlite::Result<Option<AccountRecord>> {
    c.prepare_cached("SELECT password, created FROM accounts WHERE user_id = ?1")?
        .query_row(params![user], |row| {
            Ok(AccountRecord {
                user: user.to_string(),
                password_hash: row.get(0)?,
                created: row.get(1)?,
            })
        })
        .optional()
}
