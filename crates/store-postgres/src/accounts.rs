//! Built-in accounts and the records that keep them apart from the app server's users: an
//! account is only made for an id the database has no trace of ([`CREATE`]), and a token for
//! an app server's user is only minted once its id is recorded ([`record`]), which no later
//! registration gets past. The `users` row of an account is marked as an account's and
//! outlives the account.

use tidings_store::{AccountRecord, UserRecord, WriteResult};

use crate::{Db, PgResult};

/// Makes an account's `users` row (token version 1: no token minted before it is current)
/// unless the id `$1` has a trace in the database. The traces are every table that holds data
/// of or for a user, each looked up by an index: a record (`users`: accounts, deleted ones
/// too, profiles, bans, revocations, minted tokens, connections), conversations, group
/// memberships, messages sent (a system account's are its only trace), device cursors,
/// messages deleted for the user, a blocklist, chatroom bans and mutes, push subscriptions —
/// and an inbox, which [`create`] reads from the inbox counter it holds locked. Not looked up,
/// because only a user found by one of these can have them: reactions, mentions and directed
/// messages' audiences (of participants and members), a group's owner (a member). Nor is being
/// on someone else's blocklist: that is the other user's data.
const CREATE: &str = "INSERT INTO users (id, token_version, account) SELECT $1, 1, true \
    WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = $1) \
    AND NOT EXISTS (SELECT 1 FROM conversations WHERE user_id = $1) \
    AND NOT EXISTS (SELECT 1 FROM group_members WHERE user_id = $1) \
    AND NOT EXISTS (SELECT 1 FROM messages WHERE sender = $1) \
    AND NOT EXISTS (SELECT 1 FROM device_cursors WHERE user_id = $1) \
    AND NOT EXISTS (SELECT 1 FROM deleted_messages WHERE user_id = $1) \
    AND NOT EXISTS (SELECT 1 FROM blocklist WHERE user_id = $1) \
    AND NOT EXISTS (SELECT 1 FROM chatroom_users WHERE user_id = $1) \
    AND NOT EXISTS (SELECT 1 FROM push_tokens WHERE user_id = $1) \
    ON CONFLICT DO NOTHING";

/// Creates an account unless its id has a trace. `inbox_seq` is the id's newest inbox seq, read
/// from the inbox counter the writer's batch holds locked (see `Batch::lock_for` in `writer`),
/// as every write that gives the user an inbox entry, a conversation or a group membership
/// does: such a write on another node either committed before (and its rows are seen here) or
/// waits for this one to commit.
pub(crate) async fn create(db: Db<'_>, a: AccountRecord, inbox_seq: u64) -> PgResult<WriteResult> {
    if inbox_seq > 0 {
        return Ok(WriteResult::AccountCreated { fresh: false });
    }
    // A concurrent insert of the same `users` row (a token minted on another node) makes this
    // one wait for it, then do nothing.
    if db.execute(CREATE, &[&a.user]).await? == 0 {
        return Ok(WriteResult::AccountCreated { fresh: false });
    }
    db.execute(
        "INSERT INTO accounts (user_id, password, created) VALUES ($1, $2, $3)",
        &[&a.user, &a.password_hash, &a.created],
    )
    .await?;
    Ok(WriteResult::AccountCreated { fresh: true })
}

/// Records `user` (a `users` row, if it has none) and returns what the record says.
pub(crate) async fn record(db: Db<'_>, user: &str) -> PgResult<UserRecord> {
    let (_, rows) = db
        .pipeline(
            "INSERT INTO users (id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&user],
            "SELECT token_version, account FROM users WHERE id = $1",
            &[&user],
        )
        .await?;
    let row = rows.first().ok_or_else(|| {
        crate::Error::Invalid(format!("no users row for {user} after its insert"))
    })?;
    Ok(UserRecord {
        token_version: row.get::<_, i64>(0) as u64,
        account: row.get(1),
    })
}

/// If `user`'s account has the password hash `expected`: replaces it with `password_hash`, or
/// deletes the account (`None`), and increments the user's token version.
pub(crate) async fn change(
    db: Db<'_>,
    user: &str,
    expected: &str,
    password_hash: Option<&str>,
) -> PgResult<WriteResult> {
    let changed = match password_hash {
        Some(hash) => {
            db.execute(
                "UPDATE accounts SET password = $3 WHERE user_id = $1 AND password = $2",
                &[&user, &expected, &hash],
            )
            .await?
        }
        None => {
            db.execute(
                "DELETE FROM accounts WHERE user_id = $1 AND password = $2",
                &[&user, &expected],
            )
            .await?
        }
    };
    let token_version = if changed == 0 {
        None
    } else {
        Some(bump_token_version(db, user).await?)
    };
    Ok(WriteResult::AccountChanged { token_version })
}

/// Increments a user's token version (from 0 if the user has no row) and returns the new one.
pub(crate) async fn bump_token_version(db: Db<'_>, user: &str) -> PgResult<u64> {
    let row = db
        .query_one(
            "INSERT INTO users (id, token_version) VALUES ($1, 1) ON CONFLICT (id) \
             DO UPDATE SET token_version = users.token_version + 1 RETURNING token_version",
            &[&user],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}
