//! Groups: their changes (applied by the writer, each with the notification message that records
//! it in the group's conversation), the members a group message goes to, and the reads.
//!
//! A member's view of the group's conversation is their conversation row, as in the SQLite
//! store: joining sets `cleared_seq` and `read_seq` to the seq just before the join's
//! notification, leaving sets `until_seq` to the notification that records it.
//! `group_members.joined_seq` keeps where each member's view starts for read receipts.
//!
//! Every write that reads a group's state or members holds the group's row lock (taken when
//! the batch starts), so a message's fan-out and a membership change on another node apply
//! one after the other.

use tidings_store::{
    AppendMessage, GroupAction, GroupChange, GroupInfo, GroupKind, GroupMember, GroupMembers,
    GroupReceipt, GroupRefusal, WriteResult,
};
use tokio_postgres::Row;

use crate::writer::{Batch, append};
use crate::{Db, Error, PgResult, big, page_rows, read_snapshot};

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
        kind: kind_of(r.get(9)),
        invite_open: r.get(10),
    }
}

/// A stored kind; one this build does not know is treated as the most closed.
fn kind_of(stored: &str) -> GroupKind {
    GroupKind::parse(stored).unwrap_or_default()
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

/// A group's state as the writer needs it.
struct State {
    owner: String,
    dismissed: i64,
    muted_until: i64,
    kind: GroupKind,
    invite_open: bool,
}

const STATE: &str =
    "SELECT owner, dismissed, muted_until, kind, invite_open FROM groups WHERE id = $1";

fn state_from_row(r: &Row) -> State {
    State {
        owner: r.get(0),
        dismissed: r.get(1),
        muted_until: r.get(2),
        kind: kind_of(r.get(3)),
        invite_open: r.get(4),
    }
}

async fn state(db: Db<'_>, id: &str) -> PgResult<Option<State>> {
    Ok(db
        .query_opt(STATE, &[&id])
        .await?
        .as_ref()
        .map(state_from_row))
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

/// Who a group message goes to: `(recipients, audience)`.
type Fanout = (Vec<String>, Vec<String>);

/// The recipients of a group message (the sender first, then every member, or only the
/// audience's members) and its audience as stored (only members), or why it is refused.
pub(crate) async fn recipients(
    b: &mut Batch<'_>,
    m: &AppendMessage,
) -> PgResult<Result<Fanout, GroupRefusal>> {
    let (group_state, member) = tokio::try_join!(
        state(b.db, &m.target),
        member_row(b.db, &m.target, &m.sender)
    )?;
    let Some(State {
        owner,
        dismissed,
        muted_until: group_muted,
        ..
    }) = group_state
    else {
        return Ok(Err(GroupRefusal::NotFound));
    };
    if dismissed != 0 {
        return Ok(Err(GroupRefusal::Dismissed));
    }
    let Some((_, muted)) = member else {
        return Ok(Err(GroupRefusal::NotMember));
    };
    let now = m.sent_time;
    if muted > now || (group_muted > now && m.sender != owner) {
        return Ok(Err(GroupRefusal::Muted));
    }
    let members = b.members(&m.target).await?;
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
pub(crate) async fn change(b: &mut Batch<'_>, c: GroupChange) -> PgResult<WriteResult> {
    let db = b.db;
    let refused = |r| Ok(WriteResult::GroupRefused(r));
    let now = c.notification.sent_time;
    let id = c.group.as_str();
    // Whatever the change, the members are read again on the group's next message.
    b.forget_members(id);
    let conv = c.notification.conversation_id.clone();
    let mut existing = state(db, id).await?;
    // A join of a group that is not there makes it. Another node may be making it at the same
    // time: the insert then waits for that node's commit, finds the row, and this joins it
    // under its lock instead.
    let mut made_open = false;
    if let (GroupAction::Join(user), None) = (&c.action, &existing) {
        made_open = db
            .execute(
                "INSERT INTO groups (id, owner, created, kind) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
                &[&id, user, &now, &GroupKind::Open.as_str()],
            )
            .await?
            == 1;
        if !made_open {
            existing = db
                .query_opt(&format!("{STATE} FOR UPDATE"), &[&id])
                .await?
                .as_ref()
                .map(state_from_row);
        }
    }
    // A user's own change is checked against the group as it is now; the app server's need none.
    if let Some(st) = existing
        .as_ref()
        .filter(|st| st.dismissed == 0 && c.permit != tidings_store::Permit::App)
    {
        let member = member_row(db, id, &c.by).await?.is_some();
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
            // Another node may have created it meanwhile: then it exists.
            let inserted = db
                .execute(
                    "INSERT INTO groups (id, name, portrait, extra, owner, created, kind) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                    &[&id, name, portrait, extra, owner, &now, &kind.as_str()],
                )
                .await?;
            if inserted == 0 {
                return refused(GroupRefusal::Exists);
            }
            tidings_store::created_content(&mut content, *kind, owner, name, &joined);
        }
        (GroupAction::Join(user), None) if made_open => {
            joined.push(user.clone());
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
                db.execute(
                    "UPDATE groups SET name = coalesce($2, name), \
                     portrait = coalesce($3, portrait), extra = coalesce($4, extra), \
                     invite_open = coalesce($5, invite_open) WHERE id = $1",
                    &[&id, name, portrait, extra, invite_open],
                )
                .await?;
                tidings_store::updated_content(&mut content, action);
            }
            GroupAction::Join(user) => {
                let current = member_ids(db, id).await?;
                if current.contains(user) {
                    return unchanged(db, id).await;
                }
                if kind != GroupKind::Open {
                    return refused(GroupRefusal::NotMember);
                }
                if current.len() as u64 + 1 > c.max_members {
                    return refused(GroupRefusal::Full);
                }
                joined.push(user.clone());
                content["operation"] = "add".into();
                content["userIds"] = joined.clone().into();
            }
            GroupAction::AddMembers(users) => {
                let current = member_ids(db, id).await?;
                for u in users {
                    if !joined.contains(u) && !current.contains(u) {
                        joined.push(u.clone());
                    }
                }
                if joined.is_empty() {
                    return unchanged(db, id).await;
                }
                if current.len() as u64 + joined.len() as u64 > c.max_members {
                    return refused(GroupRefusal::Full);
                }
                content["operation"] = "add".into();
                content["userIds"] = joined.clone().into();
            }
            GroupAction::RemoveMembers(users) => {
                let current = member_ids(db, id).await?;
                for u in users {
                    if !left.contains(u) && current.contains(u) {
                        left.push(u.clone());
                    }
                }
                if left.is_empty() {
                    return unchanged(db, id).await;
                }
                content["operation"] = "remove".into();
                content["userIds"] = left.clone().into();
                dismiss = hand_over(db, id, &owner, &left, &mut content).await?;
            }
            GroupAction::Quit(user) => {
                if member_row(db, id, user).await?.is_none() {
                    return refused(GroupRefusal::NotMember);
                }
                left.push(user.clone());
                content["operation"] = "quit".into();
                content["userIds"] = left.clone().into();
                dismiss = hand_over(db, id, &owner, &left, &mut content).await?;
            }
            GroupAction::TransferOwner(user) => {
                if member_row(db, id, user).await?.is_none() {
                    return refused(GroupRefusal::NotMember);
                }
                if *user == owner {
                    return unchanged(db, id).await;
                }
                db.execute("UPDATE groups SET owner = $2 WHERE id = $1", &[&id, user])
                    .await?;
                content["operation"] = "transfer".into();
                content["ownerId"] = user.as_str().into();
            }
            GroupAction::Mute { user, until } => {
                match user {
                    Some(u) => {
                        let updated = db
                            .execute(
                                "UPDATE group_members SET muted_until = $3 \
                                 WHERE group_id = $1 AND user_id = $2",
                                &[&id, u, until],
                            )
                            .await?;
                        if updated == 0 {
                            return refused(GroupRefusal::NotMember);
                        }
                        content["userIds"] = vec![u.clone()].into();
                    }
                    None => {
                        db.execute(
                            "UPDATE groups SET muted_until = $2 WHERE id = $1",
                            &[&id, until],
                        )
                        .await?;
                        content["all"] = true.into();
                    }
                }
                content["operation"] = if *until > now { "mute" } else { "unmute" }.into();
                content["until"] = (*until).into();
            }
            GroupAction::Dismiss => {
                left = member_ids(db, id).await?;
                content["operation"] = "dismiss".into();
                dismiss = true;
            }
        },
    }
    // The seq of the notification: members who join see it and nothing before it; members who
    // leave see up to it.
    let seq = b.last_seq(&conv).await? + 1;
    let before = big(seq - 1);
    if !joined.is_empty() {
        db.execute(
            "INSERT INTO group_members (group_id, user_id, joined, joined_seq) \
             SELECT $1, u, $3, $4 FROM unnest($2::text[]) WITH ORDINALITY AS j(u, n) ORDER BY n",
            &[&id, &joined, &now, &before],
        )
        .await?;
        db.execute(
            "INSERT INTO conversations (user_id, conv_type, target, conv_id, read_seq, cleared_seq) \
             SELECT u, 3, $2, $3, $4, $4 FROM unnest($1::text[]) AS u \
             ON CONFLICT (user_id, conv_type, target) DO UPDATE SET \
             read_seq = greatest(conversations.read_seq, $4), \
             cleared_seq = greatest(conversations.cleared_seq, $4), until_seq = 0, removed_seq = 0",
            &[&joined, &id, &conv, &before],
        )
        .await?;
    }
    if dismiss {
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
    if dismiss {
        db.execute(
            "UPDATE groups SET dismissed = $2 WHERE id = $1",
            &[&id, &now],
        )
        .await?;
        content["dismissed"] = true.into();
    }
    let mut notification = c.notification;
    notification.content = content.to_string();
    notification.digest = notification.uid.clone();
    notification.counted = false;
    notification.to_group = false;
    notification.participants.clear();
    notification.recipients = member_ids(db, id).await?;
    notification.recipients.extend(left);
    let (message, inbox) = match append(b, notification).await? {
        WriteResult::Appended { message, inbox, .. } => (message, inbox),
        other => {
            return Err(Error::Invalid(format!(
                "the notification's uid was used before: {other:?}"
            )));
        }
    };
    debug_assert_eq!(message.seq, seq);
    let group = read_in(db, id).await?;
    Ok(WriteResult::GroupChanged {
        group,
        notification: Some((message, inbox)),
    })
}

/// After members leave: if the owner is one of them, the longest-standing remaining member
/// becomes the owner; if nobody remains, the group is dismissed (returns true).
async fn hand_over(
    db: Db<'_>,
    id: &str,
    owner: &str,
    left: &[String],
    content: &mut serde_json::Value,
) -> PgResult<bool> {
    let remaining: Vec<String> = member_ids(db, id)
        .await?
        .into_iter()
        .filter(|u| !left.contains(u))
        .collect();
    let Some(heir) = remaining.first() else {
        return Ok(true);
    };
    if left.iter().any(|u| u == owner) {
        db.execute("UPDATE groups SET owner = $2 WHERE id = $1", &[&id, heir])
            .await?;
        content["ownerId"] = heir.as_str().into();
    }
    Ok(false)
}

async fn read_in(db: Db<'_>, id: &str) -> PgResult<GroupInfo> {
    let row = db
        .query_one(
            &format!("SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = $1"),
            &[&id],
        )
        .await?;
    Ok(group_from_row(&row))
}

/// The answer to a change that changes nothing.
async fn unchanged(db: Db<'_>, id: &str) -> PgResult<WriteResult> {
    Ok(WriteResult::GroupChanged {
        group: read_in(db, id).await?,
        notification: None,
    })
}
