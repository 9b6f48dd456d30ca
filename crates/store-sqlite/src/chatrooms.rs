//! Kept chatrooms: the rooms the app server created, and the bans and mutes of their users. A
//! room's members, messages and entries are the engine's, in memory: chatrooms are online-only.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tidings_store::{ChatroomRecord, ChatroomUser, WriteResult};

pub fn create(tx: &Transaction<'_>, r: ChatroomRecord) -> rusqlite::Result<WriteResult> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO chatrooms (id, name, extra, created, max_members, muted_until) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            r.id,
            r.name,
            r.extra,
            r.created,
            r.max_members as i64,
            r.muted_until
        ])?;
    Ok(WriteResult::ChatroomCreated {
        fresh: inserted == 1,
    })
}

pub fn set(tx: &Transaction<'_>, r: ChatroomRecord) -> rusqlite::Result<WriteResult> {
    tx.prepare_cached(
        "UPDATE chatrooms SET name = ?2, extra = ?3, max_members = ?4, muted_until = ?5 \
         WHERE id = ?1",
    )?
    .execute(params![
        r.id,
        r.name,
        r.extra,
        r.max_members as i64,
        r.muted_until
    ])?;
    Ok(WriteResult::ChatroomSet)
}

pub fn delete(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<WriteResult> {
    tx.prepare_cached("DELETE FROM chatroom_users WHERE room_id = ?1")?
        .execute(params![id])?;
    tx.prepare_cached("DELETE FROM chatrooms WHERE id = ?1")?
        .execute(params![id])?;
    Ok(WriteResult::ChatroomSet)
}

pub fn set_user(
    tx: &Transaction<'_>,
    room: &str,
    s: ChatroomUser,
) -> rusqlite::Result<WriteResult> {
    if s.banned_until == 0 && s.muted_until == 0 {
        tx.prepare_cached("DELETE FROM chatroom_users WHERE room_id = ?1 AND user_id = ?2")?
            .execute(params![room, s.user])?;
    } else {
        // Only for a kept room: the foreign key refuses others, so check instead of failing the
        // whole batch.
        tx.prepare_cached(
            "INSERT INTO chatroom_users (room_id, user_id, banned_until, muted_until) \
             SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM chatrooms WHERE id = ?1) \
             ON CONFLICT (room_id, user_id) DO UPDATE SET \
             banned_until = excluded.banned_until, muted_until = excluded.muted_until",
        )?
        .execute(params![room, s.user, s.banned_until, s.muted_until])?;
    }
    Ok(WriteResult::ChatroomSet)
}

pub fn chatroom(
    c: &Connection,
    id: &str,
) -> rusqlite::Result<Option<(ChatroomRecord, Vec<ChatroomUser>)>> {
    let Some(record) = c
        .prepare_cached(
            "SELECT id, name, extra, created, max_members, muted_until FROM chatrooms \
             WHERE id = ?1",
        )?
        .query_row(params![id], |r| {
            Ok(ChatroomRecord {
                id: r.get(0)?,
                name: r.get(1)?,
                extra: r.get(2)?,
                created: r.get(3)?,
                max_members: r.get::<_, i64>(4)? as u64,
                muted_until: r.get(5)?,
            })
        })
        .optional()?
    else {
        return Ok(None);
    };
    let users = c
        .prepare_cached(
            "SELECT user_id, banned_until, muted_until FROM chatroom_users WHERE room_id = ?1 \
             ORDER BY user_id",
        )?
        .query_map(params![id], |r| {
            Ok(ChatroomUser {
                user: r.get(0)?,
                banned_until: r.get(1)?,
                muted_until: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some((record, users)))
}
