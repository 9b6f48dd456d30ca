//! Built-in accounts: a password hash per user who signs in with one. The user's row in `users`
//! is made with the account and outlives it, so a deleted account's name stays taken.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tidings_store::{AccountRecord, WriteResult};

pub fn create(tx: &Transaction<'_>, a: AccountRecord) -> rusqlite::Result<WriteResult> {
    // Every account has a `users` row, so one probe finds both an account and a record.
    let inserted = tx
        .prepare_cached(
            "INSERT INTO users (id, token_version) VALUES (?1, 0) ON CONFLICT DO NOTHING",
        )?
        .execute(params![a.user])?;
    if inserted == 0 {
        return Ok(WriteResult::AccountCreated { fresh: false });
    }
    tx.prepare_cached("INSERT INTO accounts (user_id, password, created) VALUES (?1, ?2, ?3)")?
        .execute(params![a.user, a.password_hash, a.created])?;
    Ok(WriteResult::AccountCreated { fresh: true })
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
        Some(crate::writer::bump_token_version(tx, user)?)
    };
    Ok(WriteResult::AccountChanged { token_version })
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
