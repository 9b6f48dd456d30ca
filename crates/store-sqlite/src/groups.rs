//! Groups: their changes (applied by the writer, each with the notification message that records
//! it in the group's conversation), the members a group message goes to, and the reads.
//!
//! A member's view of the group's conversation is their conversation row: joining sets its
//! `cleared_seq` and `read_seq` to the seq just before the join's notification (nothing from
//! before shows, nothing is unread), and leaving sets `until_seq` to the notification that
//! records it (nothing after shows). `group_members.joined_seq` keeps where each member's view
//! starts for read receipts, independent of what the member clears later.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tidings_store::{
    AppendMessage, GroupAction, GroupChange, GroupInfo, GroupKind, GroupMember, GroupMembers,
    GroupReceipt, GroupRefusal, WriteResult,
};

use crate::writer::{Counters, append};

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
        kind: kind_of(&r.get::<_, String>(9)?),
        invite_open: r.get(10)?,
    })
}

/// A stored kind; one this build does not know is treated as the most closed.
fn kind_of(stored: &str) -> GroupKind {
    GroupKind::parse(stored).unwrap_or_default()
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

/// A group's state as the writer needs it.
struct State {
    owner: String,
    dismissed: i64,
    muted_until: i64,
    kind: GroupKind,
    invite_open: bool,
}

fn state(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<Option<State>> {
    tx.prepare_cached(
        "SELECT owner, dismissed, muted_until, kind, invite_open FROM groups WHERE id = ?1",
    )?
    .query_row(params![id], |r| {
        Ok(State {
            owner: r.get(0)?,
            dismissed: r.get(1)?,
            muted_until: r.get(2)?,
            kind: kind_of(&r.get::<_, String>(3)?),
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
    counters: &mut Counters,
    m: &AppendMessage,
) -> rusqlite::Result<Result<Fanout, GroupRefusal>> {
    let Some(State {
        owner,
        dismissed,
        muted_until: group_muted,
        ..
    }) = state(tx, &m.target)?
    else {
        return Ok(Err(GroupRefusal::NotFound));
    };
    if dismissed != 0 {
        return Ok(Err(GroupRefusal::Dismissed));
    }
    let Some((_, muted)) = member_row(tx, &m.target, &m.sender)? else {
        return Ok(Err(GroupRefusal::NotMember));
    };
    let now = m.sent_time;
    if muted > now || (group_muted > now && m.sender != owner) {
        return Ok(Err(GroupRefusal::Muted));
    }
    let members = counters.members.get(tx, &m.target)?;
    let mut recipients = Vec::with_capacity(members.len());
    recipients.push(m.sender.clone());
    let mut audience = Vec::new();
    if m.audience.is_empty() {
        recipients.extend(members.iter().filter(|u| **u != m.sender).cloned());
    } else {
        let members: std::collections::HashSet<&String> = members.iter().collect();
        for user in &m.audience {
            if *user != m.sender && members.contains(user) && !audience.contains(user) {
                audience.push(user.clone());
                recipients.push(user.clone());
            }
        }
    }
    Ok(Ok((recipients, audience)))
}

/// Applies a group change and appends its notification.
pub(crate) fn change(
    tx: &Transaction<'_>,
    counters: &mut Counters,
    c: GroupChange,
) -> rusqlite::Result<WriteResult> {
    let refused = |r| Ok(WriteResult::GroupRefused(r));
    let now = c.notification.sent_time;
    let id = c.group.as_str();
    // Whatever the change, the members are read again on the group's next message.
    counters.members.forget(id);
    let conv = c.notification.conversation_id.clone();
    let existing = state(tx, id)?;
    // A user's own change is checked against the group as it is now; the app server's need none.
    if let Some(st) = existing
        .as_ref()
        .filter(|st| st.dismissed == 0 && c.permit != tidings_store::Permit::App)
    {
        let member = member_row(tx, id, &c.by)?.is_some();
        if let Err(r) = c
            .permit
            .check(st.kind, st.invite_open, &st.owner, &c.by, member)
        {
            return refused(r);
        }
    }
    // What changes, for the notification; joined and left members.
    let mut content = serde_json::json!({ "operatorId": c.by });
    let mut joined: Vec<String> = Vec::new();
    let mut left: Vec<String> = Vec::new();
    let mut dismiss = false;
    match (&c.action, existing) {
        (
            GroupAction::Create {
                kind,
                owner,
                name,
                portrait,
                extra,
                members,
            },
            None,
        ) => {
            joined.push(owner.clone());
            for u in members {
                if !joined.contains(u) {
                    joined.push(u.clone());
                }
            }
            if joined.len() as u64 > c.max_members {
                return refused(GroupRefusal::Full);
            }
            tx.prepare_cached(
                "INSERT INTO groups (id, name, portrait, extra, owner, created, kind) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                id,
                name,
                portrait,
                extra,
                owner,
                now,
                kind.as_str()
            ])?;
            tidings_store::created_content(&mut content, *kind, owner, name, &joined);
        }
        (GroupAction::Join(user), None) => {
            joined.push(user.clone());
            tx.prepare_cached(
                "INSERT INTO groups (id, owner, created, kind) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, user, now, GroupKind::Open.as_str()])?;
            tidings_store::created_content(&mut content, GroupKind::Open, user, "", &joined);
        }
        (GroupAction::Create { .. }, Some(_)) => return refused(GroupRefusal::Exists),
        (_, None) => return refused(GroupRefusal::NotFound),
        (_, Some(st)) if st.dismissed != 0 => return refused(GroupRefusal::Dismissed),
        (action, Some(State { owner, kind, .. })) => match action {
            // Creates were answered above; an existing group cannot be created again.
            GroupAction::Create { .. } => return refused(GroupRefusal::Exists),
            GroupAction::Update {
                name,
                portrait,
                extra,
                invite_open,
            } => {
                tx.prepare_cached(
                    "UPDATE groups SET name = coalesce(?2, name), \
                     portrait = coalesce(?3, portrait), extra = coalesce(?4, extra), \
                     invite_open = coalesce(?5, invite_open) WHERE id = ?1",
                )?
                .execute(params![id, name, portrait, extra, invite_open])?;
                tidings_store::updated_content(&mut content, action);
            }
            GroupAction::Join(user) => {
                if member_row(tx, id, user)?.is_some() {
                    return unchanged(tx, id);
                }
                if kind != GroupKind::Open {
                    return refused(GroupRefusal::NotMember);
                }
                if member_count(tx, id)? + 1 > c.max_members {
                    return refused(GroupRefusal::Full);
                }
                joined.push(user.clone());
                content["operation"] = "add".into();
                content["userIds"] = joined.clone().into();
            }
            GroupAction::AddMembers(users) => {
                for u in users {
                    if !joined.contains(u) && member_row(tx, id, u)?.is_none() {
                        joined.push(u.clone());
                    }
                }
                if joined.is_empty() {
                    return unchanged(tx, id);
                }
                let count = member_count(tx, id)?;
                if count + joined.len() as u64 > c.max_members {
                    return refused(GroupRefusal::Full);
                }
                content["operation"] = "add".into();
                content["userIds"] = joined.clone().into();
            }
            GroupAction::RemoveMembers(users) => {
                for u in users {
                    if !left.contains(u) && member_row(tx, id, u)?.is_some() {
                        left.push(u.clone());
                    }
                }
                if left.is_empty() {
                    return unchanged(tx, id);
                }
                content["operation"] = "remove".into();
                content["userIds"] = left.clone().into();
                dismiss = hand_over(tx, id, &owner, &left, &mut content)?;
            }
            GroupAction::Quit(user) => {
                if member_row(tx, id, user)?.is_none() {
                    return refused(GroupRefusal::NotMember);
                }
                left.push(user.clone());
                content["operation"] = "quit".into();
                content["userIds"] = left.clone().into();
                dismiss = hand_over(tx, id, &owner, &left, &mut content)?;
            }
            GroupAction::TransferOwner(user) => {
                if member_row(tx, id, user)?.is_none() {
                    return refused(GroupRefusal::NotMember);
                }
                if *user == owner {
                    return unchanged(tx, id);
                }
                tx.prepare_cached("UPDATE groups SET owner = ?2 WHERE id = ?1")?
                    .execute(params![id, user])?;
                content["operation"] = "transfer".into();
                content["ownerId"] = user.as_str().into();
            }
            GroupAction::Mute { user, until } => {
                match user {
                    Some(u) => {
                        let updated = tx
                            .prepare_cached(
                                "UPDATE group_members SET muted_until = ?3 \
                                 WHERE group_id = ?1 AND user_id = ?2",
                            )?
                            .execute(params![id, u, until])?;
                        if updated == 0 {
                            return refused(GroupRefusal::NotMember);
                        }
                        content["userIds"] = vec![u.clone()].into();
                    }
                    None => {
                        tx.prepare_cached("UPDATE groups SET muted_until = ?2 WHERE id = ?1")?
                            .execute(params![id, until])?;
                        content["all"] = true.into();
                    }
                }
                content["operation"] = if *until > now { "mute" } else { "unmute" }.into();
                content["until"] = (*until).into();
            }
            GroupAction::Dismiss => {
                left = member_ids(tx, id)?;
                content["operation"] = "dismiss".into();
                dismiss = true;
            }
        },
    }
    // The seq of the notification: members who join see it and nothing before it; members who
    // leave see up to it.
    let seq = counters.last_seq(tx, &conv)? + 1;
    for user in &joined {
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
    for user in &left {
        tx.prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2")?
            .execute(params![id, user])?;
        tx.prepare_cached(
            "UPDATE conversations SET until_seq = ?3 \
             WHERE user_id = ?1 AND conv_type = 3 AND target = ?2",
        )?
        .execute(params![user, id, seq as i64])?;
    }
    if dismiss {
        // Everyone still a member leaves with the group.
        for user in member_ids(tx, id)? {
            tx.prepare_cached(
                "UPDATE conversations SET until_seq = ?3 \
                 WHERE user_id = ?1 AND conv_type = 3 AND target = ?2",
            )?
            .execute(params![user, id, seq as i64])?;
            left.push(user);
        }
        tx.prepare_cached("DELETE FROM group_members WHERE group_id = ?1")?
            .execute(params![id])?;
        tx.prepare_cached("UPDATE groups SET dismissed = ?2 WHERE id = ?1")?
            .execute(params![id, now])?;
        content["dismissed"] = true.into();
    }
    let mut notification = c.notification;
    notification.content = content.to_string();
    notification.digest = notification.uid.clone();
    notification.counted = false;
    notification.to_group = false;
    notification.participants.clear();
    notification.recipients = member_ids(tx, id)?;
    notification.recipients.extend(left);
    let (message, inbox) = match append(tx, counters, notification)? {
        WriteResult::Appended { message, inbox, .. } => (message, inbox),
        other => {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                format!("the notification's uid was used before: {other:?}").into(),
            ));
        }
    };
    debug_assert_eq!(message.seq, seq);
    let group = read_in(tx, id)?;
    Ok(WriteResult::GroupChanged {
        group,
        notification: Some((message, inbox)),
    })
}

/// After members leave: if the owner is one of them, the longest-standing remaining member
/// becomes the owner; if nobody remains, the group is dismissed (returns true).
fn hand_over(
    tx: &Transaction<'_>,
    id: &str,
    owner: &str,
    left: &[String],
    content: &mut serde_json::Value,
) -> rusqlite::Result<bool> {
    let remaining: Vec<String> = member_ids(tx, id)?
        .into_iter()
        .filter(|u| !left.contains(u))
        .collect();
    let Some(heir) = remaining.first() else {
        return Ok(true);
    };
    if left.iter().any(|u| u == owner) {
        tx.prepare_cached("UPDATE groups SET owner = ?2 WHERE id = ?1")?
            .execute(params![id, heir])?;
        content["ownerId"] = heir.as_str().into();
    }
    Ok(false)
}

fn member_count(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<u64> {
    tx.prepare_cached("SELECT count(*) FROM group_members WHERE group_id = ?1")?
        .query_row(params![id], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

fn read_in(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<GroupInfo> {
    tx.prepare_cached(&format!(
        "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = ?1"
    ))?
    .query_row(params![id], group_from_row)
}

/// The answer to a change that changes nothing.
fn unchanged(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<WriteResult> {
    Ok(WriteResult::GroupChanged {
        group: read_in(tx, id)?,
        notification: None,
    })
}
