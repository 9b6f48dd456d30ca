//! Groups in SQL: the reads, the snapshot a change's rule decides on and the writing of the
//! effects it decides, the members a group message goes to, and a batch's member lists. The
//! rules themselves (who may change what, the notification's content, who may send) are
//! `tidings_store::rules::groups`; the writer sequences a change (decide, apply, then append
//! the notification). This module does not depend on the writer.
//!
//! A member's view of the group's conversation is their conversation row, as in the SQLite
//! store: joining sets `cleared_seq` and `read_seq` to the seq just before the join's
//! notification, leaving sets `until_seq` to the notification that records it.
//! `group_members.joined_seq` keeps where each member's view starts for read receipts.
//!
//! Every write that reads a group's state or members holds the group's row lock (taken when
//! the batch starts), so a message's fan-out and a membership change on another node apply
//! one after the other.

use std::collections::HashMap;
use std::sync::Arc;

use tidings_store::rules::groups::{
    self as rules, Decision, Effects, GroupRow, GroupSnapshot, Mute, stored_kind,
};
use tidings_store::{
    AppendMessage, GroupAction, GroupChange, GroupInfo, GroupKind, GroupMember, GroupMembers,
    GroupReceipt, GroupRefusal,
};
use tokio_postgres::Row;

use crate::{Db, PgResult, big, page_rows, read_snapshot};

const GROUP_COLUMNS: &str = "g.id, g.name, g.portrait, g.extra, g.owner, g.created, g.dismissed, \
     g.muted_until, (SELECT count(*) FROM group_members WHERE group_id = g.id), g.kind, \
     g.invite_open";

fn group_from_row(r: &Row) -> GroupInfo {
    GroupInfo {
        id: r.get(0),
        name: r.get(1),
        portrait: r.get(2),
        extra: r.get(3),
        owner: r.get(4),
        created: r.get(5),
        dismissed: r.get(6),
        muted_until: r.get(7),
        member_count: r.get::<_, i64>(8) as u64,
        kind: stored_kind(r.get(9)),
        invite_open: r.get(10),
    }
}

pub async fn group(db: Db<'_>, id: &str) -> PgResult<Option<GroupInfo>> {
    Ok(db
        .query_opt(
            &format!("SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = $1"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(group_from_row))
}

pub async fn members(db: Db<'_>, id: &str, after: u64, limit: usize) -> PgResult<GroupMembers> {
    let rows = db
        .query(
            "SELECT id, user_id, joined, muted_until FROM group_members \
             WHERE group_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            &[&id, &big(after), &page_rows(limit)],
        )
        .await?;
    let more = rows.len() > limit;
    let rows = &rows[..rows.len().min(limit)];
    Ok(GroupMembers {
        next: if more {
            rows.last().map(|r| r.get::<_, i64>(0) as u64)
        } else {
            None
        },
        members: rows
            .iter()
            .map(|r| GroupMember {
                user: r.get(1),
                joined: r.get(2),
                muted_until: r.get(3),
            })
            .collect(),
    })
}

pub async fn user_groups(db: Db<'_>, user: &str) -> PgResult<Vec<GroupInfo>> {
    Ok(db
        .query(
            &format!(
                "SELECT {GROUP_COLUMNS} FROM group_members gm JOIN groups g ON g.id = gm.group_id \
                 WHERE gm.user_id = $1 ORDER BY g.id"
            ),
            &[&user],
        )
        .await?
        .iter()
        .map(group_from_row)
        .collect())
}

pub async fn receipt(
    client: &mut deadpool_postgres::Client,
    id: &str,
    seq: u64,
) -> PgResult<Option<GroupReceipt>> {
    let tx = read_snapshot(client).await?;
    let db = Db::of_tx(&tx);
    let conv = tidings_store::group_conversation_id(id);
    let Some(message) = db
        .query_opt(
            "SELECT sender, state, id FROM messages WHERE conv_id = $1 AND seq = $2 \
             AND msg_type NOT LIKE 'tidings:%'",
            &[&conv, &big(seq)],
        )
        .await?
    else {
        return Ok(None);
    };
    let (sender, state, msg): (String, i32, i64) = (message.get(0), message.get(1), message.get(2));
    // The members who joined before the message and, for a directed one, are its audience.
    let rows = db
        .query(
            "SELECT gm.user_id, coalesce(c.read_seq >= $3, false) FROM group_members gm \
             LEFT JOIN conversations c ON c.user_id = gm.user_id AND c.conv_type = 3 \
                 AND c.target = gm.group_id \
             WHERE gm.group_id = $1 AND gm.joined_seq < $3 AND gm.user_id <> $2 \
             AND (NOT $4 OR EXISTS (SELECT 1 FROM message_audience a \
                                    WHERE a.msg = $5 AND a.user_id = gm.user_id)) \
             ORDER BY gm.user_id",
            &[
                &id,
                &sender,
                &big(seq),
                &(state & crate::STATE_DIRECTED != 0),
                &msg,
            ],
        )
        .await?;
    tx.commit().await?;
    let (mut read, mut unread) = (Vec::new(), Vec::new());
    for r in &rows {
        if r.get::<_, bool>(1) {
            read.push(r.get(0));
        } else {
            unread.push(r.get(0));
        }
    }
    Ok(Some(GroupReceipt {
        sender,
        read,
        unread,
    }))
}

/// A member's row: `(join order, muted_until)`.
pub async fn member_row(db: Db<'_>, id: &str, user: &str) -> PgResult<Option<(i64, i64)>> {
    Ok(db
        .query_opt(
            "SELECT id, muted_until FROM group_members WHERE group_id = $1 AND user_id = $2",
            &[&id, &user],
        )
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

/// A group's row, as the rules read it.
const ROW: &str =
    "SELECT owner, dismissed, muted_until, kind, invite_open FROM groups WHERE id = $1";

fn row_from(r: &Row) -> GroupRow {
    GroupRow {
        owner: r.get(0),
        dismissed: r.get(1),
        muted_until: r.get(2),
        kind: stored_kind(r.get(3)),
        invite_open: r.get(4),
    }
}

async fn row(db: Db<'_>, id: &str) -> PgResult<Option<GroupRow>> {
    Ok(db.query_opt(ROW, &[&id]).await?.as_ref().map(row_from))
}

pub(crate) async fn member_ids(db: Db<'_>, id: &str) -> PgResult<Vec<String>> {
    Ok(db
        .query(
            "SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The member lists of the groups a batch read, under the groups' row locks: a change to a
/// group forgets its list, so the next message reads it again.
#[derive(Default)]
pub(crate) struct MemberLists(HashMap<String, Arc<[String]>>);

impl FromIterator<(String, Arc<[String]>)> for MemberLists {
    fn from_iter<I: IntoIterator<Item = (String, Arc<[String]>)>>(lists: I) -> MemberLists {
        MemberLists(lists.into_iter().collect())
    }
}

impl MemberLists {
    /// The group's member ids in join order.
    pub(crate) async fn get(&mut self, db: Db<'_>, group: &str) -> PgResult<Arc<[String]>> {
        if let Some(list) = self.0.get(group) {
            return Ok(list.clone());
        }
        let list: Arc<[String]> = member_ids(db, group).await?.into();
        self.0.insert(group.to_string(), list.clone());
        Ok(list)
    }

    pub(crate) fn forget(&mut self, group: &str) {
        self.0.remove(group);
    }
}

/// Who a group message goes to: `(recipients, audience)`.
type Fanout = (Vec<String>, Vec<String>);

/// The recipients of a group message (the sender first, then every member, or only the
/// audience's members) and its audience as stored (only members), or why it is refused.
pub(crate) async fn recipients(
    db: Db<'_>,
    lists: &mut MemberLists,
    m: &AppendMessage,
) -> PgResult<Result<Fanout, GroupRefusal>> {
    let (row, member) = tokio::try_join!(row(db, &m.target), member_row(db, &m.target, &m.sender))?;
    let muted = member.map(|(_, muted)| muted);
    if let Err(refusal) = rules::may_send(row.as_ref(), &m.sender, muted, m.sent_time) {
        return Ok(Err(refusal));
    }
    let members = lists.get(db, &m.target).await?;
    Ok(Ok(rules::fanout(&m.sender, &members, &m.audience)))
}

/// Reads what the group's rule needs for a change, and decides it.
pub(crate) async fn decide(db: Db<'_>, c: &GroupChange) -> PgResult<Decision> {
    let id = c.group.as_str();
    let mut row = row(db, id).await?;
    // A join of a group that is not there makes it. Another node may be making it at the same
    // time: the insert then waits for that node's commit, finds the row, and this joins it
    // under its lock instead.
    let mut made_open = false;
    if let (GroupAction::Join(user), None) = (&c.action, &row) {
        made_open = db
            .execute(
                "INSERT INTO groups (id, owner, created, kind) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
                &[
                    &id,
                    user,
                    &c.notification.sent_time,
                    &GroupKind::Open.as_str(),
                ],
            )
            .await?
            == 1;
        if !made_open {
            row = db
                .query_opt(&format!("{ROW} FOR UPDATE"), &[&id])
                .await?
                .as_ref()
                .map(row_from);
        }
    }
    let needs = rules::needs(c, row.as_ref());
    let leaving = needs.leaving.unwrap_or_default();
    let (members, count, successor) = tokio::try_join!(
        async {
            if needs.members.is_empty() {
                return Ok(Vec::new());
            }
            db.query(
                "SELECT user_id FROM group_members WHERE group_id = $1 AND user_id = ANY($2)",
                &[&id, &needs.members],
            )
            .await
        },
        async {
            if !needs.count {
                return Ok(None);
            }
            db.query_opt(
                "SELECT count(*) FROM group_members WHERE group_id = $1",
                &[&id],
            )
            .await
        },
        async {
            if leaving.is_empty() {
                return Ok(None);
            }
            db.query_opt(
                "SELECT user_id FROM group_members WHERE group_id = $1 AND user_id <> ALL($2) \
                 ORDER BY id LIMIT 1",
                &[&id, &leaving],
            )
            .await
        },
    )?;
    let snapshot = GroupSnapshot {
        row,
        members: members.iter().map(|r| r.get(0)).collect(),
        member_count: count.map_or(0, |r| r.get::<_, i64>(0) as u64),
        successor: successor.map(|r| r.get(0)),
    };
    let mut decision = rules::decide(c, &snapshot);
    if let (Decision::Change(effects), true) = (&mut decision, made_open) {
        // The row this join makes is in already.
        effects.insert = None;
    }
    Ok(decision)
}

/// Writes a change's effects with its notification's `seq`: members who join see the
/// notification and nothing before it; members who leave see up to it. Returns the
/// notification's recipients (the members after the change, then those who left), or
/// [`GroupRefusal::Exists`] with nothing written when another node created the group first.
pub(crate) async fn apply(
    db: Db<'_>,
    id: &str,
    e: &Effects,
    now: i64,
    seq: u64,
) -> PgResult<Result<Vec<String>, GroupRefusal>> {
    if let Some(g) = &e.insert {
        let inserted = db
            .execute(
                "INSERT INTO groups (id, name, portrait, extra, owner, created, kind) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                &[
                    &id,
                    &g.name,
                    &g.portrait,
                    &g.extra,
                    &g.owner,
                    &now,
                    &g.kind.as_str(),
                ],
            )
            .await?;
        if inserted == 0 {
            return Ok(Err(GroupRefusal::Exists));
        }
    }
    if let Some(u) = &e.update {
        db.execute(
            "UPDATE groups SET name = coalesce($2, name), \
             portrait = coalesce($3, portrait), extra = coalesce($4, extra), \
             invite_open = coalesce($5, invite_open) WHERE id = $1",
            &[&id, &u.name, &u.portrait, &u.extra, &u.invite_open],
        )
        .await?;
    }
    if let Some(owner) = &e.owner {
        db.execute("UPDATE groups SET owner = $2 WHERE id = $1", &[&id, owner])
            .await?;
    }
    match &e.mute {
        Some(Mute::Member { user, until }) => {
            db.execute(
                "UPDATE group_members SET muted_until = $3 WHERE group_id = $1 AND user_id = $2",
                &[&id, user, until],
            )
            .await?;
        }
        Some(Mute::Group { until }) => {
            db.execute(
                "UPDATE groups SET muted_until = $2 WHERE id = $1",
                &[&id, until],
            )
            .await?;
        }
        None => {}
    }
    let conv = tidings_store::group_conversation_id(id);
    let before = big(seq - 1);
    if !e.joined.is_empty() {
        db.execute(
            "INSERT INTO group_members (group_id, user_id, joined, joined_seq) \
             SELECT $1, u, $3, $4 FROM unnest($2::text[]) WITH ORDINALITY AS j(u, n) ORDER BY n",
            &[&id, &e.joined, &now, &before],
        )
        .await?;
        db.execute(
            "INSERT INTO conversations (user_id, conv_type, target, conv_id, read_seq, cleared_seq) \
             SELECT u, 3, $2, $3, $4, $4 FROM unnest($1::text[]) AS u \
             ON CONFLICT (user_id, conv_type, target) DO UPDATE SET \
             read_seq = greatest(conversations.read_seq, $4), \
             cleared_seq = greatest(conversations.cleared_seq, $4), until_seq = 0, removed_seq = 0",
            &[&e.joined, &id, &conv, &before],
        )
        .await?;
    }
    let mut left = e.left.clone();
    if e.dismiss {
        // Everyone still a member leaves with the group.
        for user in member_ids(db, id).await? {
            if !left.contains(&user) {
                left.push(user);
            }
        }
    }
    if !left.is_empty() {
        db.execute(
            "DELETE FROM group_members WHERE group_id = $1 AND user_id = ANY($2)",
            &[&id, &left],
        )
        .await?;
        db.execute(
            "UPDATE conversations SET until_seq = $3 \
             WHERE user_id = ANY($1) AND conv_type = 3 AND target = $2",
            &[&left, &id, &big(seq)],
        )
        .await?;
    }
    if e.dismiss {
        db.execute(
            "UPDATE groups SET dismissed = $2 WHERE id = $1",
            &[&id, &now],
        )
        .await?;
    }
    let mut recipients = member_ids(db, id).await?;
    recipients.extend(left);
    Ok(Ok(recipients))
}

/// The group as it is in the write's transaction.
pub(crate) async fn read_in(db: Db<'_>, id: &str) -> PgResult<GroupInfo> {
    let row = db
        .query_one(
            &format!("SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = $1"),
            &[&id],
        )
        .await?;
    Ok(group_from_row(&row))
}
