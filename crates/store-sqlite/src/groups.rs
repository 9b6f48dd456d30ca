//! Groups in SQL: the reads, the snapshot a change's rule decides on and the writing of the
//! effects it decides, the members a group message goes to, and the cache of member lists.
//! The rules themselves (who may change what, the notification's content, who may send) are
//! `tidings_store::rules::groups`; the writer sequences a change (decide, apply, then append
//! the notification). This module does not depend on the writer.
//!
//! A member's view of the group's conversation is their conversation row: joining sets its
//! `cleared_seq` and `read_seq` to the seq just before the join's notification (nothing from
//! before shows, nothing is unread), and leaving sets `until_seq` to the notification that
//! records it (nothing after shows). `group_members.joined_seq` keeps where each member's view
//! starts for read receipts, independent of what the member clears later.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tidings_store::rules::groups::{
    self as rules, Decision, Effects, GroupRow, GroupSnapshot, Mute, stored_kind,
};
use tidings_store::{
    AppendMessage, GroupChange, GroupInfo, GroupMember, GroupMembers, GroupReceipt, GroupRefusal,
};

const GROUP_COLUMNS: &str = "g.id, g.name, g.portrait, g.extra, g.owner, g.created, g.dismissed, \
     g.muted_until, (SELECT count(*) FROM group_members WHERE group_id = g.id), g.kind, \
     g.invite_open";

fn group_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GroupInfo> {
    Ok(GroupInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        portrait: r.get(2)?,
        extra: r.get(3)?,
        owner: r.get(4)?,
        created: r.get(5)?,
        dismissed: r.get(6)?,
        muted_until: r.get(7)?,
        member_count: r.get::<_, i64>(8)? as u64,
        kind: stored_kind(&r.get::<_, String>(9)?),
        invite_open: r.get(10)?,
    })
}

pub fn group(c: &Connection, id: &str) -> rusqlite::Result<Option<GroupInfo>> {
    c.prepare_cached(&format!(
        "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = ?1"
    ))?
    .query_row(params![id], group_from_row)
    .optional()
}

pub fn members(
    c: &Connection,
    id: &str,
    after: u64,
    limit: usize,
) -> rusqlite::Result<GroupMembers> {
    let rows: Vec<(i64, GroupMember)> = c
        .prepare_cached(
            "SELECT id, user_id, joined, muted_until FROM group_members \
             WHERE group_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?
        .query_map(
            params![id, after.min(i64::MAX as u64) as i64, limit as i64 + 1],
            |r| {
                Ok((
                    r.get(0)?,
                    GroupMember {
                        user: r.get(1)?,
                        joined: r.get(2)?,
                        muted_until: r.get(3)?,
                    },
                ))
            },
        )?
        .collect::<rusqlite::Result<_>>()?;
    let more = rows.len() > limit;
    let rows = &rows[..rows.len().min(limit)];
    Ok(GroupMembers {
        next: if more {
            rows.last().map(|(id, _)| *id as u64)
        } else {
            None
        },
        members: rows.iter().map(|(_, m)| m.clone()).collect(),
    })
}

pub fn is_member(c: &Connection, id: &str, user: &str) -> rusqlite::Result<bool> {
    Ok(member_row(c, id, user)?.is_some())
}

pub fn user_groups(c: &Connection, user: &str) -> rusqlite::Result<Vec<GroupInfo>> {
    c.prepare_cached(&format!(
        "SELECT {GROUP_COLUMNS} FROM group_members gm JOIN groups g ON g.id = gm.group_id \
         WHERE gm.user_id = ?1 ORDER BY g.id"
    ))?
    .query_map(params![user], group_from_row)?
    .collect()
}

pub fn receipt(c: &Connection, id: &str, seq: u64) -> rusqlite::Result<Option<GroupReceipt>> {
    let tx = c.unchecked_transaction()?;
    let conv = tidings_store::group_conversation_id(id);
    let message: Option<(String, i64, i64)> = tx
        .prepare_cached(
            "SELECT sender, state, rowid FROM messages WHERE conv_id = ?1 AND seq = ?2 \
             AND msg_type NOT LIKE 'tidings:%'",
        )?
        .query_row(params![conv, seq as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((sender, state, rowid)) = message else {
        return Ok(None);
    };
    // The members who joined before the message and, for a directed one, are its audience.
    let rows: Vec<(String, bool)> = tx
        .prepare_cached(
            "SELECT gm.user_id, coalesce(c.read_seq >= ?3, 0) FROM group_members gm \
             LEFT JOIN conversations c ON c.user_id = gm.user_id AND c.conv_type = 3 \
                 AND c.target = gm.group_id \
             WHERE gm.group_id = ?1 AND gm.joined_seq < ?3 AND gm.user_id != ?2 \
             AND (?4 = 0 OR EXISTS (SELECT 1 FROM message_audience a \
                                    WHERE a.msg = ?5 AND a.user_id = gm.user_id)) \
             ORDER BY gm.user_id",
        )?
        .query_map(
            params![id, sender, seq as i64, state & crate::STATE_DIRECTED, rowid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    tx.finish()?;
    let (read, unread): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(_, read)| *read);
    Ok(Some(GroupReceipt {
        sender,
        read: read.into_iter().map(|(u, _)| u).collect(),
        unread: unread.into_iter().map(|(u, _)| u).collect(),
    }))
}

/// A member's row: `(join order, muted_until)`.
fn member_row(c: &Connection, id: &str, user: &str) -> rusqlite::Result<Option<(i64, i64)>> {
    c.prepare_cached(
        "SELECT id, muted_until FROM group_members WHERE group_id = ?1 AND user_id = ?2",
    )?
    .query_row(params![id, user], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()
}

/// A group's row, as the rules read it.
fn row(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<Option<GroupRow>> {
    tx.prepare_cached(
        "SELECT owner, dismissed, muted_until, kind, invite_open FROM groups WHERE id = ?1",
    )?
    .query_row(params![id], |r| {
        Ok(GroupRow {
            owner: r.get(0)?,
            dismissed: r.get(1)?,
            muted_until: r.get(2)?,
            kind: stored_kind(&r.get::<_, String>(3)?),
            invite_open: r.get(4)?,
        })
    })
    .optional()
}

pub(crate) fn member_ids(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<Vec<String>> {
    tx.prepare_cached("SELECT user_id FROM group_members WHERE group_id = ?1 ORDER BY id")?
        .query_map(params![id], |r| r.get(0))?
        .collect()
}

/// Groups' member lists, as the writer read them last: a group message's fan-out reads its
/// group's members, and reading 1,000 rows cost about a third of a millisecond of the only
/// writer's time per message. Only the writer changes members, and it forgets a group's list
/// whenever it changes the group (and every list after a failed transaction).
#[derive(Default)]
pub struct MemberCache {
    lists: HashMap<String, Arc<[String]>, foldhash::fast::RandomState>,
    /// Member ids held over all lists; past [`MAX_CACHED_MEMBERS`] the cache is emptied.
    held: usize,
}

/// Member ids the cache holds at most (about 30 MB with 20-byte ids).
const MAX_CACHED_MEMBERS: usize = 1_000_000;

impl MemberCache {
    /// The group's member ids, in join order.
    pub(crate) fn get(
        &mut self,
        tx: &Transaction<'_>,
        id: &str,
    ) -> rusqlite::Result<Arc<[String]>> {
        if let Some(list) = self.lists.get(id) {
            return Ok(list.clone());
        }
        let list: Arc<[String]> = member_ids(tx, id)?.into();
        if self.held + list.len() > MAX_CACHED_MEMBERS {
            self.clear();
        }
        self.held += list.len();
        self.lists.insert(id.to_string(), list.clone());
        Ok(list)
    }

    pub(crate) fn forget(&mut self, id: &str) {
        if let Some(list) = self.lists.remove(id) {
            self.held -= list.len();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.lists.clear();
        self.held = 0;
    }
}

/// Who a group message goes to: `(recipients, audience)`.
type Fanout = (Vec<String>, Vec<String>);

/// The recipients of a group message (the sender first, then every member, or only the
/// audience's members) and its audience as stored (only members), or why it is refused.
pub(crate) fn recipients(
    tx: &Transaction<'_>,
    cache: &mut MemberCache,
    m: &AppendMessage,
) -> rusqlite::Result<Result<Fanout, GroupRefusal>> {
    let row = row(tx, &m.target)?;
    // The sender's membership matters only to a live group.
    let muted = match &row {
        Some(r) if r.live() => member_row(tx, &m.target, &m.sender)?.map(|(_, muted)| muted),
        _ => None,
    };
    if let Err(refusal) = rules::may_send(row.as_ref(), &m.sender, muted, m.sent_time) {
        return Ok(Err(refusal));
    }
    let members = cache.get(tx, &m.target)?;
    Ok(Ok(rules::fanout(&m.sender, &members, &m.audience)))
}

/// Reads what the group's rule needs for a change, and decides it.
pub(crate) fn decide(tx: &Transaction<'_>, c: &GroupChange) -> rusqlite::Result<Decision> {
    let id = c.group.as_str();
    let row = row(tx, id)?;
    let needs = rules::needs(c, row.as_ref());
    let mut snapshot = GroupSnapshot::default();
    for user in needs.members {
        if member_row(tx, id, user)?.is_some() {
            snapshot.members.insert(user.to_string());
        }
    }
    if needs.count {
        snapshot.member_count = tx
            .prepare_cached("SELECT count(*) FROM group_members WHERE group_id = ?1")?
            .query_row(params![id], |r| r.get::<_, i64>(0))? as u64;
    }
    if let Some(leaving) = needs.leaving {
        // Members in join order, until the first who stays: usually the first row.
        let mut stmt =
            tx.prepare_cached("SELECT user_id FROM group_members WHERE group_id = ?1 ORDER BY id")?;
        let mut rows = stmt.query(params![id])?;
        while let Some(r) = rows.next()? {
            let user: String = r.get(0)?;
            if !leaving.contains(&user.as_str()) {
                snapshot.successor = Some(user);
                break;
            }
        }
    }
    snapshot.row = row;
    Ok(rules::decide(c, &snapshot))
}

/// Writes a change's effects with its notification's `seq`: members who join see the
/// notification and nothing before it; members who leave see up to it. Returns the
/// notification's recipients: the members after the change, then those who left.
pub(crate) fn apply(
    tx: &Transaction<'_>,
    id: &str,
    e: &Effects,
    now: i64,
    seq: u64,
) -> rusqlite::Result<Vec<String>> {
    if let Some(g) = &e.insert {
        tx.prepare_cached(
            "INSERT INTO groups (id, name, portrait, extra, owner, created, kind) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            id,
            g.name,
            g.portrait,
            g.extra,
            g.owner,
            now,
            g.kind.as_str()
        ])?;
    }
    if let Some(u) = &e.update {
        tx.prepare_cached(
            "UPDATE groups SET name = coalesce(?2, name), \
             portrait = coalesce(?3, portrait), extra = coalesce(?4, extra), \
             invite_open = coalesce(?5, invite_open) WHERE id = ?1",
        )?
        .execute(params![id, u.name, u.portrait, u.extra, u.invite_open])?;
    }
    if let Some(owner) = &e.owner {
        tx.prepare_cached("UPDATE groups SET owner = ?2 WHERE id = ?1")?
            .execute(params![id, owner])?;
    }
    match &e.mute {
        Some(Mute::Member { user, until }) => {
            tx.prepare_cached(
                "UPDATE group_members SET muted_until = ?3 WHERE group_id = ?1 AND user_id = ?2",
            )?
            .execute(params![id, user, until])?;
        }
        Some(Mute::Group { until }) => {
            tx.prepare_cached("UPDATE groups SET muted_until = ?2 WHERE id = ?1")?
                .execute(params![id, until])?;
        }
        None => {}
    }
    let conv = tidings_store::group_conversation_id(id);
    for user in &e.joined {
        tx.prepare_cached(
            "INSERT INTO group_members (group_id, user_id, joined, joined_seq) \
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![id, user, now, seq as i64 - 1])?;
        tx.prepare_cached(
            "INSERT INTO conversations (user_id, conv_type, target, conv_id, read_seq, cleared_seq) \
             VALUES (?1, 3, ?2, ?3, ?4, ?4) ON CONFLICT (user_id, conv_type, target) DO UPDATE SET \
             read_seq = max(read_seq, ?4), cleared_seq = max(cleared_seq, ?4), until_seq = 0, \
             removed_seq = 0",
        )?
        .execute(params![user, id, conv, seq as i64 - 1])?;
    }
    let mut left = e.left.clone();
    if e.dismiss {
        // Everyone still a member leaves with the group.
        for user in member_ids(tx, id)? {
            if !left.contains(&user) {
                left.push(user);
            }
        }
    }
    for user in &left {
        tx.prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2")?
            .execute(params![id, user])?;
        tx.prepare_cached(
            "UPDATE conversations SET until_seq = ?3 \
             WHERE user_id = ?1 AND conv_type = 3 AND target = ?2",
        )?
        .execute(params![user, id, seq as i64])?;
    }
    if e.dismiss {
        tx.prepare_cached("UPDATE groups SET dismissed = ?2 WHERE id = ?1")?
            .execute(params![id, now])?;
    }
    let mut recipients = member_ids(tx, id)?;
    recipients.extend(left);
    Ok(recipients)
}

/// The group as it is in the write's transaction.
pub(crate) fn read_in(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<GroupInfo> {
    tx.prepare_cached(&format!(
        "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = ?1"
    ))?
    .query_row(params![id], group_from_row)
}
