//! The writes that only set a record, one function each: cursors, nonces, quiet hours,
//! profiles, sensitive words, blocklists, deletions for one user and the MLS key package
//! directory. The writer applies them in its transaction; the capped lists' rule is
//! `tidings_store::rules::lists`, the directory's `tidings_store::rules::keys`.

use rusqlite::{Transaction, params};
use tidings_store::rules::{keys, lists};
use tidings_store::{
    ClaimedKeyPackage, KeyPackageUpload, PushProvider, PushTokenRecord, WriteResult,
};

/// Raises a device's confirmed cursor (never lowers it).
pub fn set_cursor(
    tx: &Transaction<'_>,
    user: String,
    device: String,
    cursor: u64,
) -> rusqlite::Result<WriteResult> {
    tx.prepare_cached(
        "INSERT INTO device_cursors (user_id, device_id, cursor) VALUES (?1, ?2, ?3) \
         ON CONFLICT (user_id, device_id) DO UPDATE SET cursor = max(cursor, excluded.cursor)",
    )?
    .execute(params![user, device, cursor as i64])?;
    Ok(WriteResult::CursorSet)
}

/// Records a single-use nonce, forgetting the expired ones.
pub fn use_nonce(
    tx: &Transaction<'_>,
    nonce: String,
    now: i64,
    expires_at: i64,
) -> rusqlite::Result<WriteResult> {
    tx.prepare_cached("DELETE FROM nonces WHERE expires_at <= ?1")?
        .execute(params![now])?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO nonces (nonce, expires_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?
        .execute(params![nonce, expires_at])?;
    Ok(WriteResult::Nonce {
        fresh: inserted == 1,
    })
}

/// Sets a user's quiet hours.
pub fn set_quiet_hours(
    tx: &Transaction<'_>,
    user: String,
    start_minute: u32,
    minutes: u32,
) -> rusqlite::Result<WriteResult> {
    tx.prepare_cached(
        "INSERT INTO users (id, token_version, quiet_start, quiet_minutes) \
         VALUES (?1, 0, ?2, ?3) ON CONFLICT (id) DO UPDATE SET \
         quiet_start = excluded.quiet_start, quiet_minutes = excluded.quiet_minutes",
    )?
    .execute(params![user, start_minute, minutes])?;
    Ok(WriteResult::QuietHoursSet)
}

/// Sets the profile fields given.
pub fn set_profile(
    tx: &Transaction<'_>,
    user: String,
    name: Option<String>,
    portrait: Option<String>,
    extra: Option<String>,
) -> rusqlite::Result<WriteResult> {
    tx.prepare_cached(
        "INSERT INTO users (id, token_version, name, portrait, extra) \
         VALUES (?1, 0, coalesce(?2, ''), coalesce(?3, ''), coalesce(?4, '')) \
         ON CONFLICT (id) DO UPDATE SET name = coalesce(?2, name), \
         portrait = coalesce(?3, portrait), extra = coalesce(?4, extra)",
    )?
    .execute(params![user, name, portrait, extra])?;
    Ok(WriteResult::ProfileSet)
}

/// Adds or changes a sensitive word, unless the list is full.
pub fn set_sensitive_word(
    tx: &Transaction<'_>,
    word: String,
    replacement: Option<String>,
    max: u64,
) -> rusqlite::Result<WriteResult> {
    let (count, exists): (i64, bool) = tx
        .prepare_cached(
            "SELECT (SELECT count(*) FROM sensitive_words), \
             EXISTS (SELECT 1 FROM sensitive_words WHERE word = ?1)",
        )?
        .query_row(params![word], |row| Ok((row.get(0)?, row.get(1)?)))?;
    if lists::full(count as u64, exists, max) {
        return Ok(WriteResult::WordsFull);
    }
    tx.prepare_cached(
        "INSERT INTO sensitive_words (word, replacement) VALUES (?1, ?2) \
         ON CONFLICT (word) DO UPDATE SET replacement = excluded.replacement",
    )?
    .execute(params![word, replacement])?;
    Ok(WriteResult::WordsSet)
}

/// Adds `other` to `user`'s blocklist (or removes it), unless the list is full.
pub fn set_blocked(
    tx: &Transaction<'_>,
    user: String,
    other: String,
    blocked: bool,
    max: u64,
) -> rusqlite::Result<WriteResult> {
    if !blocked {
        tx.prepare_cached("DELETE FROM blocklist WHERE user_id = ?1 AND blocked_id = ?2")?
            .execute(params![user, other])?;
        return Ok(WriteResult::BlockSet);
    }
    let (count, present): (i64, bool) = tx
        .prepare_cached(
            "SELECT (SELECT count(*) FROM blocklist WHERE user_id = ?1), \
             EXISTS (SELECT 1 FROM blocklist WHERE user_id = ?1 AND blocked_id = ?2)",
        )?
        .query_row(params![user, other], |row| Ok((row.get(0)?, row.get(1)?)))?;
    if lists::full(count as u64, present, max) {
        return Ok(WriteResult::BlocklistFull);
    }
    if !present {
        tx.prepare_cached(
            "INSERT INTO blocklist (user_id, blocked_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?
        .execute(params![user, other])?;
    }
    Ok(WriteResult::BlockSet)
}

/// Deletes messages of a conversation for one user.
pub fn delete_for_user(
    tx: &Transaction<'_>,
    user: String,
    conversation_id: String,
    seqs: Vec<u64>,
) -> rusqlite::Result<WriteResult> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO deleted_messages (user_id, conv_id, seq) VALUES (?1, ?2, ?3) \
         ON CONFLICT DO NOTHING",
    )?;
    for seq in seqs {
        stmt.execute(params![user, conversation_id, seq as i64])?;
    }
    Ok(WriteResult::Deleted)
}

/// Removes a sensitive word.
pub fn remove_sensitive_word(tx: &Transaction<'_>, word: String) -> rusqlite::Result<WriteResult> {
    tx.prepare_cached("DELETE FROM sensitive_words WHERE word = ?1")?
        .execute(params![word])?;
    Ok(WriteResult::WordsSet)
}

/// Bans a user (or lifts the ban).
pub fn set_banned(
    tx: &Transaction<'_>,
    user: String,
    banned: bool,
) -> rusqlite::Result<WriteResult> {
    tx.prepare_cached(
        "INSERT INTO users (id, token_version, banned) VALUES (?1, 0, ?2) \
         ON CONFLICT (id) DO UPDATE SET banned = excluded.banned",
    )?
    .execute(params![user, banned])?;
    Ok(WriteResult::BannedSet)
}

/// Saves a push token (see [`WriteOp::SavePushToken`](tidings_store::WriteOp)): replaces the
/// row of the same `(provider, token)`, and a named device's earlier token of the same
/// provider and app.
pub fn save_push_token(tx: &Transaction<'_>, t: &PushTokenRecord) -> rusqlite::Result<WriteResult> {
    let (len, present): (i64, bool) = tx
        .prepare_cached(
            "SELECT count(*), coalesce(max((provider = ?2 AND token = ?3) \
             OR (?4 <> '' AND device_id = ?4 AND provider = ?2 AND app_id = ?5)), 0) \
             FROM push_tokens WHERE user_id = ?1",
        )?
        .query_row(
            params![t.user, t.provider.as_str(), t.token, t.device, t.app_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
    if lists::full(len as u64, present, tidings_store::MAX_PUSH_TOKENS_PER_USER) {
        return Ok(WriteResult::PushTokensFull);
    }
    if !t.device.is_empty() {
        tx.prepare_cached(
            "DELETE FROM push_tokens WHERE user_id = ?1 AND device_id = ?2 AND provider = ?3 \
             AND app_id = ?4 AND token <> ?5",
        )?
        .execute(params![
            t.user,
            t.device,
            t.provider.as_str(),
            t.app_id,
            t.token
        ])?;
    }
    tx.prepare_cached(
        "INSERT INTO push_tokens (provider, token, user_id, device_id, app_id, sandbox, locale, \
         p256dh, auth) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (provider, token) DO UPDATE SET user_id = excluded.user_id, \
         device_id = excluded.device_id, app_id = excluded.app_id, sandbox = excluded.sandbox, \
         locale = excluded.locale, p256dh = excluded.p256dh, auth = excluded.auth",
    )?
    .execute(params![
        t.provider.as_str(),
        t.token,
        t.user,
        t.device,
        t.app_id,
        t.sandbox,
        t.locale,
        t.p256dh,
        t.auth
    ])?;
    Ok(WriteResult::PushTokenSaved)
}

/// A user's key packages, as the directory's rules see them.
fn stored_key_packages(
    tx: &Transaction<'_>,
    user: &str,
) -> rusqlite::Result<Vec<keys::StoredKeyPackage>> {
    tx.prepare_cached(
        "SELECT device_id, reference, last_resort, not_after, ord FROM key_packages \
         WHERE user_id = ?1",
    )?
    .query_map(params![user], |r| {
        Ok(keys::StoredKeyPackage {
            device: r.get(0)?,
            reference: r.get(1)?,
            last_resort: r.get(2)?,
            not_after: r.get(3)?,
            order: r.get(4)?,
        })
    })?
    .collect()
}

fn remove_key_packages(tx: &Transaction<'_>, references: &[Vec<u8>]) -> rusqlite::Result<()> {
    let mut delete = tx.prepare_cached("DELETE FROM key_packages WHERE reference = ?1")?;
    for reference in references {
        delete.execute(params![reference])?;
    }
    Ok(())
}

/// Uploads a device's key packages (see [`keys::publish`]).
pub fn publish_key_packages(
    tx: &Transaction<'_>,
    upload: KeyPackageUpload,
) -> rusqlite::Result<WriteResult> {
    let KeyPackageUpload {
        user,
        device,
        packages,
        replace,
        now,
    } = upload;
    let stored = stored_key_packages(tx, &user)?;
    let effects = match keys::publish(&stored, &device, packages, replace, now) {
        Ok(effects) => effects,
        Err(full) => return Ok(WriteResult::KeyPackagesRefused(full)),
    };
    remove_key_packages(tx, &effects.remove)?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO key_packages (reference, user_id, device_id, last_resort, not_after, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (reference) DO NOTHING",
    )?;
    for k in effects.insert {
        insert.execute(params![
            k.reference,
            user,
            device,
            k.last_resort,
            k.not_after,
            k.data
        ])?;
    }
    Ok(WriteResult::KeyPackagesPublished {
        stored: effects.stored,
    })
}

/// Hands out one key package per device of `user` (see [`keys::claim`]).
pub fn claim_key_packages(
    tx: &Transaction<'_>,
    user: &str,
    now: i64,
    except: &[String],
) -> rusqlite::Result<WriteResult> {
    let effects = keys::claim(&stored_key_packages(tx, user)?, now, except);
    let mut read = tx.prepare_cached("SELECT data FROM key_packages WHERE reference = ?1")?;
    let mut claimed = Vec::with_capacity(effects.hand_out.len());
    for (device, reference, last_resort) in effects.hand_out {
        let data: Vec<u8> = read.query_row(params![reference], |r| r.get(0))?;
        claimed.push(ClaimedKeyPackage {
            device,
            data,
            last_resort,
        });
    }
    remove_key_packages(tx, &effects.remove)?;
    Ok(WriteResult::KeyPackagesClaimed(claimed))
}

/// Removes a push token (only if it is `user`'s, when given).
pub fn remove_push_token(
    tx: &Transaction<'_>,
    provider: PushProvider,
    token: String,
    user: Option<String>,
) -> rusqlite::Result<WriteResult> {
    let removed = tx
        .prepare_cached(
            "DELETE FROM push_tokens \
             WHERE provider = ?1 AND token = ?2 AND (?3 IS NULL OR user_id = ?3)",
        )?
        .execute(params![provider.as_str(), token, user])?;
    Ok(WriteResult::PushTokenRemoved {
        removed: removed > 0,
    })
}

/// Forgets notifications due (sent, or decided against).
pub fn push_done(tx: &Transaction<'_>, due: Vec<(String, u64)>) -> rusqlite::Result<WriteResult> {
    let mut stmt =
        tx.prepare_cached("DELETE FROM push_due WHERE user_id = ?1 AND inbox_seq = ?2")?;
    for (user, seq) in due {
        stmt.execute(params![user, seq as i64])?;
    }
    Ok(WriteResult::PushDone)
}

/// Records when a user was last connected; never moves back.
pub fn set_last_seen(
    tx: &Transaction<'_>,
    user: String,
    time: i64,
) -> rusqlite::Result<WriteResult> {
    tx.prepare_cached(
        "INSERT INTO users (id, token_version, last_seen) VALUES (?1, 0, ?2) \
         ON CONFLICT (id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)",
    )?
    .execute(params![user, time])?;
    Ok(WriteResult::LastSeenSet)
}
