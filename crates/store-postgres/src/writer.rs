//! The writer task: one per process. It takes every write request queued (up to
//! [`MAX_BATCH_OPS`] ops), applies them in one transaction, commits once, and only then
//! answers each request (group commit).
//!
//! Seqs come from counter rows locked in the transaction. Before applying a batch the writer
//! collects every group, conversation and inbox the batch takes seqs from (reading the
//! members of the groups it touches, under the groups' row locks), and locks them in one
//! order — groups, then conversation counters, then inbox counters, each sorted by key — so
//! two nodes' batches wait for each other instead of deadlocking. The seqs are counted in
//! memory while the batch is applied and written back to the counter rows before the commit.
//! A counter the collection missed is locked when first needed; if that deadlocks (or a
//! serialization failure happens), the whole batch is rolled back and run again.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use tidings_store::batch::Gathered;
use tidings_store::rows::appended_event;
use tidings_store::rules::amend::{AmendSnapshot, Change, Reactions, Target};
use tidings_store::rules::conversations::UpdateSnapshot;
use tidings_store::rules::e2ee::GroupEpoch;
use tidings_store::rules::groups::Decision;
use tidings_store::rules::{self, lists};
use tidings_store::{
    Amend, AmendAction, AppendMessage, ConversationUpdate, GroupAction, GroupChange, Result,
    StoreError, StoredMessage, WriteOp, WriteResult,
};
use tokio::sync::{mpsc, oneshot};

use crate::{Db, Error, MESSAGE_COLUMNS, PgResult, big, message_from_row};

/// The most ops one transaction takes; more wait for the next commit.
pub const MAX_BATCH_OPS: usize = 8192;

/// How many times a batch that deadlocked (or failed to serialize) is run again.
const MAX_ATTEMPTS: usize = 20;

pub enum Request {
    Write {
        ops: Vec<WriteOp>,
        reply: Reply,
    },
    /// Commit what is queued, then stop.
    Close {
        reply: oneshot::Sender<()>,
    },
}

type Reply = oneshot::Sender<Result<Vec<WriteResult>>>;

pub fn spawn(pool: deadpool_postgres::Pool) -> mpsc::UnboundedSender<Request> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(pool, rx));
    tx
}

async fn run(pool: deadpool_postgres::Pool, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut conn = Conn { pool, held: None };
    let mut known = KnownConversations::default();
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => return,
            },
        };
        let mut batch = Gathered::default();
        let mut close = None;
        let mut request = Some(first);
        while let Some(r) = request.take() {
            match r {
                Request::Write { ops, reply } => batch.push(ops, reply),
                Request::Close { reply } => {
                    close = Some(reply);
                    break;
                }
            }
            if batch.is_full(MAX_BATCH_OPS) {
                break;
            }
            request = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            commit_batch(&mut conn, &mut known, batch.into_requests()).await;
        }
        if let Some(reply) = close {
            // Writes that raced with the close are committed too, so none is left unanswered.
            rx.close();
            let mut rest = Vec::new();
            while let Ok(r) = rx.try_recv() {
                match r {
                    Request::Write { ops, reply } => {
                        tidings_store::metrics::m().queue_depth.decrement(1);
                        rest.push((ops, reply))
                    }
                    Request::Close { reply } => {
                        let _ = reply.send(());
                    }
                }
            }
            if !rest.is_empty() {
                commit_batch(&mut conn, &mut known, rest).await;
            }
            // The caller may have stopped waiting; there is nobody else to tell.
            let _ = reply.send(());
            return;
        }
        if next.is_none() {
            next = rx.try_recv().ok();
        }
    }
}

/// The writer's connection: taken from the pool once and kept, so reads never leave the writer
/// waiting for one; given back (and replaced) after a failure, which may have been the
/// connection's.
struct Conn {
    pool: deadpool_postgres::Pool,
    held: Option<deadpool_postgres::Object>,
}

impl Conn {
    async fn get(&mut self) -> PgResult<&mut deadpool_postgres::Object> {
        if self.held.is_none() {
            self.held = Some(self.pool.get().await?);
        }
        Ok(self.held.as_mut().expect("just set"))
    }
}

async fn commit_batch(
    conn: &mut Conn,
    known: &mut KnownConversations,
    batch: Vec<(Vec<WriteOp>, Reply)>,
) {
    let (op_lists, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let metrics = tidings_store::metrics::m();
    let started = metrics.batch_started(&op_lists);
    let mut attempt = 1;
    let outcome = loop {
        let outcome = match conn.get().await {
            Ok(client) => try_batch(client, known, &op_lists).await,
            Err(e) => Err(e),
        };
        if outcome.as_ref().is_err_and(|e| !e.retryable()) {
            conn.held = None;
        }
        match outcome {
            Err(e) if e.retryable() && attempt < MAX_ATTEMPTS => {
                tracing::debug!(attempt, error = ?e, "storage transaction conflicted; running it again");
                attempt += 1;
                // Let the other transaction finish before trying again.
                tokio::time::sleep(std::time::Duration::from_millis(attempt as u64)).await;
            }
            other => break other,
        }
    };
    match outcome {
        Ok(all) => {
            metrics.committed(started);
            for (reply, results) in replies.into_iter().zip(all) {
                // A caller that gave up waiting still had its write committed; nothing to undo.
                let _ = reply.send(Ok(results));
            }
        }
        Err(e) => {
            metrics.commit_failures.increment(1);
            let e = StoreError::from(e);
            tracing::error!(error = %e, "storage transaction failed; batch rolled back");
            for reply in replies {
                let _ = reply.send(Err(e.again()));
            }
        }
    }
}

async fn try_batch(
    client: &mut deadpool_postgres::Object,
    known: &mut KnownConversations,
    op_lists: &[Vec<WriteOp>],
) -> PgResult<Vec<Vec<WriteResult>>> {
    if let Some(done) = try_pipelined(client, known, op_lists).await? {
        return Ok(done);
    }
    let tx = client.transaction().await?;
    let mut all = Vec::with_capacity(op_lists.len());
    {
        let mut b = Batch::new(Db::of_tx(&tx));
        b.lock_for(op_lists).await?;
        for ops in op_lists {
            let mut results = Vec::with_capacity(ops.len());
            for op in ops {
                results.push(apply(&mut b, op.clone()).await?);
            }
            all.push(results);
        }
        b.write_back().await?;
    }
    tx.commit().await?;
    Ok(all)
}

/// A batch of nothing but one-to-one (and system, and user-event) appends and writes that do
/// not depend on them (devices' cursors, last-seen times), with the appends' seqs counted up
/// front as if every one will be stored and their statements sent together, so the batch costs
/// a few round trips and statements instead of one per message. `None` (with nothing
/// committed) when the batch is of another kind, or when one append was not stored as counted
/// — a duplicate, or a blocked sender — for the one-at-a-time path to apply it.
async fn try_pipelined(
    client: &mut deadpool_postgres::Object,
    known: &mut KnownConversations,
    op_lists: &[Vec<WriteOp>],
) -> PgResult<Option<Vec<Vec<WriteResult>>>> {
    let simple = |op: &WriteOp| match op {
        WriteOp::Append(m) => !m.to_group && !m.only_if_stored && m.mls.is_none(),
        op => independent(op),
    };
    let appends = op_lists
        .iter()
        .flatten()
        .filter(|op| matches!(op, WriteOp::Append(_)))
        .count();
    let ops: usize = op_lists.iter().map(Vec::len).sum();
    if ops < 2 || !op_lists.iter().flatten().all(simple) {
        return Ok(None);
    }
    let tx = client.transaction().await?;
    let mut b = Batch::new(Db::of_tx(&tx));
    b.lock_for(op_lists).await?;
    let mut counted: Vec<Bound> = Vec::with_capacity(appends);
    for op in op_lists.iter().flatten() {
        let WriteOp::Append(m) = op else {
            continue;
        };
        let Some(conv) = b.convs.get_mut(&m.conversation_id) else {
            return Ok(None);
        };
        conv.now += 1;
        let seq = conv.now;
        let mut inbox_seqs = Vec::with_capacity(m.recipients.len());
        for u in &m.recipients {
            let Some(c) = b.inboxes.get_mut(u) else {
                return Ok(None);
            };
            c.now += 1;
            inbox_seqs.push(c.now as i64);
        }
        let state = if m.mention_all {
            crate::STATE_MENTION_ALL
        } else {
            0
        };
        counted.push(Bound::new(m, seq, state, inbox_seqs, false));
    }
    let db = b.db;
    let appended = Many::of(&counted, known);
    let params = appended.params();
    let ((stored, due), others) = tokio::try_join!(
        async {
            if counted.is_empty() {
                return Ok((0, HashSet::new()));
            }
            let row = db.query_one(APPEND_MANY_SQL, &params).await?;
            // The inbox entries the statement made notifications due for.
            let users: Vec<String> = row.get(1);
            let seqs: Vec<i64> = row.get(2);
            let due: HashSet<(String, i64)> = users.into_iter().zip(seqs).collect();
            Ok((row.get::<_, i64>(0) as usize, due))
        },
        futures_util::future::try_join_all(
            op_lists
                .iter()
                .flatten()
                .filter(|op| independent(op))
                .map(|op| apply_independent(db, op)),
        )
    )?;
    if stored != counted.len() {
        // A duplicate or a blocked sender: dropping the transaction rolls it back.
        return Ok(None);
    }
    b.write_back().await?;
    drop(b);
    tx.commit().await?;
    known.extend(appended.new_conversations);
    let mut counted = counted.into_iter();
    let mut others = others.into_iter();
    let results = op_lists
        .iter()
        .map(|ops| {
            ops.iter()
                .map(|op| {
                    if !matches!(op, WriteOp::Append(_)) {
                        return others.next().expect("one result per write");
                    }
                    let c = counted.next().expect("one seq per append");
                    let m = c.m.clone();
                    let inbox = m
                        .recipients
                        .iter()
                        .cloned()
                        .zip(c.inbox_seqs.iter().map(|s| *s as u64))
                        .collect();
                    let push_due =
                        c.m.recipients
                            .iter()
                            .zip(&c.inbox_seqs)
                            .any(|(u, s)| due.contains(&(u.clone(), *s)));
                    WriteResult::Appended {
                        message: m.into_stored(c.seq as u64),
                        inbox,
                        duplicate: false,
                        push_due,
                    }
                })
                .collect()
        })
        .collect();
    Ok(Some(results))
}

/// A user's key packages, as the directory's rules see them, locked until the transaction ends:
/// nodes claiming the same user's key packages at once take turns, so none is handed out twice.
async fn stored_key_packages(
    db: Db<'_>,
    user: &str,
) -> PgResult<Vec<rules::keys::StoredKeyPackage>> {
    let rows = db
        .query(
            "SELECT device_id, reference, last_resort, not_after, ord FROM key_packages \
             WHERE user_id = $1 FOR UPDATE",
            &[&user],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| rules::keys::StoredKeyPackage {
            device: r.get(0),
            reference: r.get(1),
            last_resort: r.get(2),
            not_after: r.get(3),
            order: r.get(4),
        })
        .collect())
}

async fn remove_key_packages(db: Db<'_>, references: Vec<Vec<u8>>) -> PgResult<()> {
    if !references.is_empty() {
        db.execute(
            "DELETE FROM key_packages WHERE reference = ANY($1)",
            &[&references],
        )
        .await?;
    }
    Ok(())
}

/// Whether `op` neither takes seqs nor reads what appends write, so that it may be applied
/// before or after the appends of its batch with the same results.
fn independent(op: &WriteOp) -> bool {
    matches!(op, WriteOp::SetCursor { .. } | WriteOp::SetLastSeen { .. })
}

/// Applies a write for which [`independent`] holds.
async fn apply_independent(db: Db<'_>, op: &WriteOp) -> PgResult<WriteResult> {
    match op {
        WriteOp::SetCursor {
            user,
            device,
            cursor,
        } => {
            db.execute(
                "INSERT INTO device_cursors (user_id, device_id, cursor) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, device_id) DO UPDATE \
                 SET cursor = greatest(device_cursors.cursor, excluded.cursor)",
                &[user, device, &big(*cursor)],
            )
            .await?;
            Ok(WriteResult::CursorSet)
        }
        WriteOp::SetLastSeen { user, time } => {
            db.execute(
                "INSERT INTO users (id, last_seen) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE \
                 SET last_seen = greatest(users.last_seen, excluded.last_seen)",
                &[user, time],
            )
            .await?;
            Ok(WriteResult::LastSeenSet)
        }
        other => Err(Error::Invalid(format!(
            "not an independent write: {other:?}"
        ))),
    }
}

/// Participants' conversation rows the writer committed or found (`user \0 type \0 target`),
/// so that the appends of a batch insert only those of new conversations. Rows of
/// `conversations` are never deleted, so what is known stays true; the set is emptied when it
/// reaches [`KnownConversations::MAX`] entries.
#[derive(Default)]
struct KnownConversations(HashSet<String>);

impl KnownConversations {
    const MAX: usize = 1 << 20;

    fn key(user: &str, conv_type: i32, target: &str) -> String {
        format!("{user}\0{conv_type}\0{target}")
    }

    fn extend(&mut self, keys: HashSet<String>) {
        if self.0.len() + keys.len() > Self::MAX {
            self.0.clear();
        }
        self.0.extend(keys);
    }
}

/// A counter row locked by this transaction: its value when locked, and now.
#[derive(Clone, Copy)]
struct Counter {
    locked: u64,
    now: u64,
}

/// The transaction being built: its connection, the counters it locked, and the member lists
/// of groups it read.
pub(crate) struct Batch<'a> {
    pub(crate) db: Db<'a>,
    convs: HashMap<String, Counter>,
    inboxes: HashMap<String, Counter>,
    members: crate::groups::MemberLists,
}

impl<'a> Batch<'a> {
    fn new(db: Db<'a>) -> Batch<'a> {
        Batch {
            db,
            convs: HashMap::new(),
            inboxes: HashMap::new(),
            members: Default::default(),
        }
    }

    /// Locks everything the ops will take seqs from, in the one order every node uses.
    async fn lock_for(&mut self, op_lists: &[Vec<WriteOp>]) -> PgResult<()> {
        let mut groups = BTreeSet::new();
        let mut convs = BTreeSet::new();
        let mut users = BTreeSet::new();
        let append = |m: &AppendMessage,
                      groups: &mut BTreeSet<String>,
                      convs: &mut BTreeSet<String>,
                      users: &mut BTreeSet<String>| {
            if m.only_if_stored {
                return;
            }
            convs.insert(m.conversation_id.clone());
            users.extend(m.recipients.iter().cloned());
            if m.to_group {
                groups.insert(m.target.clone());
                users.insert(m.sender.clone());
            }
        };
        for op in op_lists.iter().flatten() {
            match op {
                WriteOp::Append(m) => append(m, &mut groups, &mut convs, &mut users),
                WriteOp::UpdateConversation(u) => {
                    append(&u.event, &mut groups, &mut convs, &mut users);
                    if let Some(r) = &u.receipt {
                        append(r, &mut groups, &mut convs, &mut users);
                    }
                }
                WriteOp::Amend(a) => {
                    append(&a.event, &mut groups, &mut convs, &mut users);
                    users.insert(a.by.clone());
                }
                WriteOp::Group(c) => {
                    groups.insert(c.group.clone());
                    convs.insert(c.notification.conversation_id.clone());
                    match &c.action {
                        GroupAction::Create { owner, members, .. } => {
                            users.insert(owner.clone());
                            users.extend(members.iter().cloned());
                        }
                        GroupAction::AddMembers(members) => users.extend(members.iter().cloned()),
                        GroupAction::Join(user) => {
                            users.insert(user.clone());
                        }
                        _ => {}
                    }
                }
                // A registration reads the id's inbox counter under its lock (see
                // `accounts::create`).
                WriteOp::CreateAccount(a) => {
                    users.insert(a.user.clone());
                }
                _ => {}
            }
        }
        if !groups.is_empty() {
            let keys: Vec<String> = groups.into_iter().collect();
            self.db
                .query(
                    "SELECT id FROM groups WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                    &[&keys],
                )
                .await?;
            // Under the groups' locks, their members cannot change until this commits.
            let rows = self
                .db
                .query(
                    "SELECT group_id, user_id FROM group_members WHERE group_id = ANY($1) \
                     ORDER BY group_id, id",
                    &[&keys],
                )
                .await?;
            let mut lists: HashMap<String, Vec<String>> =
                keys.into_iter().map(|k| (k, Vec::new())).collect();
            for r in &rows {
                let user: String = r.get(1);
                users.insert(user.clone());
                if let Some(list) = lists.get_mut(r.get::<_, &str>(0)) {
                    list.push(user);
                }
            }
            self.members = lists.into_iter().map(|(k, v)| (k, v.into())).collect();
        }
        self.lock_convs(convs.into_iter().collect()).await?;
        self.lock_inboxes(users.into_iter().collect()).await
    }

    /// Locks conversation counters (creating missing ones at 0), in key order.
    async fn lock_convs(&mut self, mut keys: Vec<String>) -> PgResult<()> {
        keys.retain(|k| !self.convs.contains_key(k));
        if keys.is_empty() {
            return Ok(());
        }
        keys.sort();
        // Pipelined: the insert of missing rows and the locking read go out together.
        let (_, rows) = self
            .db
            .pipeline(
                "INSERT INTO conversation_seqs (conv_id, seq) \
                 SELECT k, 0 FROM unnest($1::text[]) AS k ORDER BY k COLLATE \"C\" \
                 ON CONFLICT DO NOTHING",
                &[&keys],
                "SELECT conv_id, seq FROM conversation_seqs WHERE conv_id = ANY($1) \
                 ORDER BY conv_id FOR UPDATE",
                &[&keys],
            )
            .await?;
        for r in rows {
            let seq = r.get::<_, i64>(1) as u64;
            self.convs.insert(
                r.get(0),
                Counter {
                    locked: seq,
                    now: seq,
                },
            );
        }
        Ok(())
    }

    /// Locks inbox counters (creating missing ones at 0), in key order.
    async fn lock_inboxes(&mut self, mut keys: Vec<String>) -> PgResult<()> {
        keys.retain(|k| !self.inboxes.contains_key(k));
        if keys.is_empty() {
            return Ok(());
        }
        keys.sort();
        keys.dedup();
        let (_, rows) = self
            .db
            .pipeline(
                "INSERT INTO inbox_seqs (user_id, seq) \
                 SELECT k, 0 FROM unnest($1::text[]) AS k ORDER BY k COLLATE \"C\" \
                 ON CONFLICT DO NOTHING",
                &[&keys],
                "SELECT user_id, seq FROM inbox_seqs WHERE user_id = ANY($1) \
                 ORDER BY user_id FOR UPDATE",
                &[&keys],
            )
            .await?;
        for r in rows {
            let seq = r.get::<_, i64>(1) as u64;
            self.inboxes.insert(
                r.get(0),
                Counter {
                    locked: seq,
                    now: seq,
                },
            );
        }
        Ok(())
    }

    /// The user's newest inbox seq as this transaction sees it (0: no entry yet), with its
    /// counter locked.
    pub(crate) async fn inbox_seq(&mut self, user: &str) -> PgResult<u64> {
        if !self.inboxes.contains_key(user) {
            self.lock_inboxes(vec![user.to_string()]).await?;
        }
        Ok(self.inboxes.get(user).map_or(0, |c| c.now))
    }

    /// Writes the counters this batch moved back to their rows.
    async fn write_back(&mut self) -> PgResult<()> {
        let changed = |map: &HashMap<String, Counter>| -> (Vec<String>, Vec<i64>) {
            map.iter()
                .filter(|(_, c)| c.now != c.locked)
                .map(|(k, c)| (k.clone(), c.now as i64))
                .unzip()
        };
        let (conv_keys, conv_seqs) = changed(&self.convs);
        let (user_keys, user_seqs) = changed(&self.inboxes);
        tokio::try_join!(
            async {
                if conv_keys.is_empty() {
                    return Ok(0);
                }
                self.db
                    .execute(
                        "UPDATE conversation_seqs c SET seq = v.seq \
                         FROM unnest($1::text[], $2::bigint[]) AS v(k, seq) WHERE c.conv_id = v.k",
                        &[&conv_keys, &conv_seqs],
                    )
                    .await
            },
            async {
                if user_keys.is_empty() {
                    return Ok(0);
                }
                self.db
                    .execute(
                        "UPDATE inbox_seqs c SET seq = v.seq \
                         FROM unnest($1::text[], $2::bigint[]) AS v(k, seq) WHERE c.user_id = v.k",
                        &[&user_keys, &user_seqs],
                    )
                    .await
            },
        )?;
        Ok(())
    }

    /// The conversation's newest seq (0 if it has no messages), as this transaction sees it.
    pub(crate) async fn last_seq(&self, conversation_id: &str) -> PgResult<u64> {
        if let Some(c) = self.convs.get(conversation_id) {
            return Ok(c.now);
        }
        let row = self
            .db
            .query_one(
                "SELECT coalesce(max(seq), 0) FROM messages WHERE conv_id = $1",
                &[&conversation_id],
            )
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// The group's member ids in join order, read under the group's lock.
    pub(crate) async fn members(&mut self, group: &str) -> PgResult<Arc<[String]>> {
        self.members.get(self.db, group).await
    }

    /// Forgets a group's member list after a change to it.
    pub(crate) fn forget_members(&mut self, group: &str) {
        self.members.forget(group);
    }
}

async fn apply(b: &mut Batch<'_>, op: WriteOp) -> PgResult<WriteResult> {
    let db = b.db;
    match op {
        WriteOp::Append(m) => append(b, m).await,
        op @ (WriteOp::SetCursor { .. } | WriteOp::SetLastSeen { .. }) => {
            apply_independent(db, &op).await
        }
        WriteOp::UseNonce {
            nonce,
            now,
            expires_at,
        } => {
            let (_, inserted) = db
                .pipeline(
                    "DELETE FROM nonces WHERE expires_at <= $1",
                    &[&now],
                    "INSERT INTO nonces (nonce, expires_at) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING RETURNING 1",
                    &[&nonce, &expires_at],
                )
                .await?;
            Ok(WriteResult::Nonce {
                fresh: inserted.len() == 1,
            })
        }
        WriteOp::UpdateConversation(u) => update_conversation(b, *u).await,
        WriteOp::Amend(a) => amend(b, *a).await,
        WriteOp::Group(change) => change_group(b, *change).await,
        WriteOp::CreateChatroom(r) => {
            let inserted = db
                .execute(
                    "INSERT INTO chatrooms (id, name, extra, created, max_members, muted_until) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    &[
                        &r.id,
                        &r.name,
                        &r.extra,
                        &r.created,
                        &big(r.max_members),
                        &r.muted_until,
                    ],
                )
                .await?;
            Ok(WriteResult::ChatroomCreated {
                fresh: inserted == 1,
            })
        }
        WriteOp::SetChatroom(r) => {
            db.execute(
                "UPDATE chatrooms SET name = $2, extra = $3, max_members = $4, muted_until = $5 \
                 WHERE id = $1",
                &[
                    &r.id,
                    &r.name,
                    &r.extra,
                    &big(r.max_members),
                    &r.muted_until,
                ],
            )
            .await?;
            Ok(WriteResult::ChatroomSet)
        }
        WriteOp::DeleteChatroom { id } => {
            db.execute("DELETE FROM chatroom_users WHERE room_id = $1", &[&id])
                .await?;
            db.execute("DELETE FROM chatrooms WHERE id = $1", &[&id])
                .await?;
            Ok(WriteResult::ChatroomSet)
        }
        WriteOp::SetChatroomUser { room, standing: s } => {
            if s.banned_until == 0 && s.muted_until == 0 {
                db.execute(
                    "DELETE FROM chatroom_users WHERE room_id = $1 AND user_id = $2",
                    &[&room, &s.user],
                )
                .await?;
            } else {
                // Only for a kept room: the foreign key refuses others, so check instead of
                // failing the whole batch.
                db.execute(
                    "INSERT INTO chatroom_users (room_id, user_id, banned_until, muted_until) \
                     SELECT $1::text, $2::text, $3::bigint, $4::bigint \
                     WHERE EXISTS (SELECT 1 FROM chatrooms WHERE id = $1) \
                     ON CONFLICT (room_id, user_id) DO UPDATE SET \
                     banned_until = excluded.banned_until, muted_until = excluded.muted_until",
                    &[&room, &s.user, &s.banned_until, &s.muted_until],
                )
                .await?;
            }
            Ok(WriteResult::ChatroomSet)
        }
        WriteOp::SetQuietHours {
            user,
            start_minute,
            minutes,
        } => {
            db.execute(
                "INSERT INTO users (id, quiet_start, quiet_minutes) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET \
                 quiet_start = excluded.quiet_start, quiet_minutes = excluded.quiet_minutes",
                &[&user, &(start_minute as i32), &(minutes as i32)],
            )
            .await?;
            Ok(WriteResult::QuietHoursSet)
        }
        WriteOp::SetProfile {
            user,
            name,
            portrait,
            extra,
        } => {
            db.execute(
                "INSERT INTO users (id, name, portrait, extra) \
                 VALUES ($1, coalesce($2, ''), coalesce($3, ''), coalesce($4, '')) \
                 ON CONFLICT (id) DO UPDATE SET name = coalesce($2, users.name), \
                 portrait = coalesce($3, users.portrait), extra = coalesce($4, users.extra)",
                &[&user, &name, &portrait, &extra],
            )
            .await?;
            Ok(WriteResult::ProfileSet)
        }
        WriteOp::SetSensitiveWord {
            word,
            replacement,
            max,
        } => {
            let row = db
                .query_one(
                    "SELECT (SELECT count(*) FROM sensitive_words), \
                     EXISTS (SELECT 1 FROM sensitive_words WHERE word = $1)",
                    &[&word],
                )
                .await?;
            let (count, exists): (i64, bool) = (row.get(0), row.get(1));
            if lists::full(count as u64, exists, max) {
                return Ok(WriteResult::WordsFull);
            }
            db.execute(
                "INSERT INTO sensitive_words (word, replacement) VALUES ($1, $2) \
                 ON CONFLICT (word) DO UPDATE SET replacement = excluded.replacement",
                &[&word, &replacement],
            )
            .await?;
            Ok(WriteResult::WordsSet)
        }
        WriteOp::RemoveSensitiveWord { word } => {
            db.execute("DELETE FROM sensitive_words WHERE word = $1", &[&word])
                .await?;
            Ok(WriteResult::WordsSet)
        }
        WriteOp::SetBanned { user, banned } => {
            db.execute(
                "INSERT INTO users (id, banned) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET banned = excluded.banned",
                &[&user, &banned],
            )
            .await?;
            Ok(WriteResult::BannedSet)
        }
        WriteOp::SavePushToken(t) => {
            let row = db
                .query_one(
                    "SELECT count(*), coalesce(bool_or((provider = $2 AND token = $3) \
                     OR ($4 <> '' AND device_id = $4 AND provider = $2 AND app_id = $5)), false) \
                     FROM push_tokens WHERE user_id = $1",
                    &[
                        &t.user,
                        &t.provider.as_str(),
                        &t.token,
                        &t.device,
                        &t.app_id,
                    ],
                )
                .await?;
            let (len, present): (i64, bool) = (row.get(0), row.get(1));
            if lists::full(len as u64, present, tidings_store::MAX_PUSH_TOKENS_PER_USER) {
                return Ok(WriteResult::PushTokensFull);
            }
            if !t.device.is_empty() {
                db.execute(
                    "DELETE FROM push_tokens WHERE user_id = $1 AND device_id = $2 \
                     AND provider = $3 AND app_id = $4 AND token <> $5",
                    &[
                        &t.user,
                        &t.device,
                        &t.provider.as_str(),
                        &t.app_id,
                        &t.token,
                    ],
                )
                .await?;
            }
            db.execute(
                "INSERT INTO push_tokens (provider, token, user_id, device_id, app_id, sandbox, \
                 locale, p256dh, auth) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (provider, token) DO UPDATE SET user_id = excluded.user_id, \
                 device_id = excluded.device_id, app_id = excluded.app_id, \
                 sandbox = excluded.sandbox, locale = excluded.locale, \
                 p256dh = excluded.p256dh, auth = excluded.auth",
                &[
                    &t.provider.as_str(),
                    &t.token,
                    &t.user,
                    &t.device,
                    &t.app_id,
                    &t.sandbox,
                    &t.locale,
                    &t.p256dh,
                    &t.auth,
                ],
            )
            .await?;
            Ok(WriteResult::PushTokenSaved)
        }
        WriteOp::RemovePushToken {
            provider,
            token,
            user,
        } => {
            let removed = db
                .execute(
                    "DELETE FROM push_tokens \
                     WHERE provider = $1 AND token = $2 AND ($3::text IS NULL OR user_id = $3)",
                    &[&provider.as_str(), &token, &user],
                )
                .await?;
            Ok(WriteResult::PushTokenRemoved {
                removed: removed > 0,
            })
        }
        WriteOp::PublishKeyPackages(upload) => {
            let stored = stored_key_packages(db, &upload.user).await?;
            let (user, device) = (&upload.user, &upload.device);
            let effects = match rules::keys::publish(
                &stored,
                device,
                upload.packages,
                upload.replace,
                upload.now,
            ) {
                Ok(effects) => effects,
                Err(full) => return Ok(WriteResult::KeyPackagesRefused(full)),
            };
            remove_key_packages(db, effects.remove).await?;
            for k in effects.insert {
                db.execute(
                    "INSERT INTO key_packages (reference, user_id, device_id, last_resort, \
                     not_after, data) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (reference) DO NOTHING",
                    &[
                        &k.reference,
                        user,
                        device,
                        &k.last_resort,
                        &k.not_after,
                        &k.data,
                    ],
                )
                .await?;
            }
            Ok(WriteResult::KeyPackagesPublished {
                stored: effects.stored,
            })
        }
        WriteOp::ClaimKeyPackages { user, now, except } => {
            let effects = rules::keys::claim(&stored_key_packages(db, &user).await?, now, &except);
            let references: Vec<&[u8]> = effects
                .hand_out
                .iter()
                .map(|(_, r, _)| r.as_slice())
                .collect();
            let rows = db
                .query(
                    "SELECT reference, data FROM key_packages WHERE reference = ANY($1)",
                    &[&references],
                )
                .await?;
            let mut data: HashMap<Vec<u8>, Vec<u8>> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            let claimed = effects
                .hand_out
                .into_iter()
                .filter_map(|(device, reference, last_resort)| {
                    Some(tidings_store::ClaimedKeyPackage {
                        device,
                        data: data.remove(&reference)?,
                        last_resort,
                    })
                })
                .collect();
            remove_key_packages(db, effects.remove).await?;
            Ok(WriteResult::KeyPackagesClaimed(claimed))
        }
        WriteOp::PushDone { due } => {
            let (users, seqs): (Vec<String>, Vec<i64>) =
                due.into_iter().map(|(u, s)| (u, big(s))).unzip();
            db.execute(
                "DELETE FROM push_due d USING unnest($1::text[], $2::bigint[]) AS x(u, s) \
                 WHERE d.user_id = x.u AND d.inbox_seq = x.s",
                &[&users, &seqs],
            )
            .await?;
            Ok(WriteResult::PushDone)
        }
        WriteOp::SetBlocked {
            user,
            other,
            blocked,
            max,
        } => {
            if !blocked {
                db.execute(
                    "DELETE FROM blocklist WHERE user_id = $1 AND blocked_id = $2",
                    &[&user, &other],
                )
                .await?;
                return Ok(WriteResult::BlockSet);
            }
            let row = db
                .query_one(
                    "SELECT (SELECT count(*) FROM blocklist WHERE user_id = $1), \
                     EXISTS (SELECT 1 FROM blocklist WHERE user_id = $1 AND blocked_id = $2)",
                    &[&user, &other],
                )
                .await?;
            let (count, present): (i64, bool) = (row.get(0), row.get(1));
            if lists::full(count as u64, present, max) {
                return Ok(WriteResult::BlocklistFull);
            }
            if !present {
                db.execute(
                    "INSERT INTO blocklist (user_id, blocked_id) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                    &[&user, &other],
                )
                .await?;
            }
            Ok(WriteResult::BlockSet)
        }
        WriteOp::DeleteForUser {
            user,
            conversation_id,
            seqs,
        } => {
            let seqs: Vec<i64> = seqs.into_iter().map(big).collect();
            db.execute(
                "INSERT INTO deleted_messages (user_id, conv_id, seq) \
                 SELECT $1, $2, s FROM unnest($3::bigint[]) AS s ON CONFLICT DO NOTHING",
                &[&user, &conversation_id, &seqs],
            )
            .await?;
            Ok(WriteResult::Deleted)
        }
        WriteOp::BumpTokenVersion { user } => Ok(WriteResult::TokenVersion(
            crate::accounts::bump_token_version(db, &user).await?,
        )),
        WriteOp::CreateAccount(a) => {
            // Read from the counter the batch holds locked (see `accounts::create`).
            let inbox_seq = b.inbox_seq(&a.user).await?;
            crate::accounts::create(db, a, inbox_seq).await
        }
        WriteOp::Admin(op) => Ok(WriteResult::Admin(crate::admin::apply(db, op).await?)),
        WriteOp::RecordUser { user } => Ok(WriteResult::UserRecorded(
            crate::accounts::record(db, &user).await?,
        )),
        WriteOp::ChangeAccount {
            user,
            expected,
            password_hash,
        } => crate::accounts::change(db, &user, &expected, password_hash.as_deref()).await,
    }
}

/// Appends a message: one statement inserts it with its inbox entries, its audience and its
/// participants' conversation rows, unless the recipient blocks the sender or its
/// `(sender, client_msg_id)` was stored before.
/// One append: the blocklist check, the message (deduplicated on `(sender, client_msg_id)`),
/// its inbox entries, its participants' conversation rows and its audience. Answers whether the
/// sender is blocked and the new message's id (none for a duplicate).
const APPEND_SQL: &str = "WITH ok AS (SELECT $22::text IS NULL OR NOT EXISTS (SELECT 1 FROM blocklist \
                 WHERE user_id = $22 AND blocked_id = $5) AS ok), \
             m AS (INSERT INTO messages (conv_type, conv_id, seq, uid, sender, target, sent_time, \
                 msg_type, content, push_text, client_msg_id, digest, counted, state, mentions, \
                 search_text) \
               SELECT $1::integer, $2::text, $3::bigint, $4::text, $5::text, $6::text, \
                 $7::bigint, $8::text, $9::text, $10::text, $11::text, $12::text, $13::boolean, \
                 $14::integer, $15::text[], $16::text WHERE (SELECT ok FROM ok) \
               ON CONFLICT (sender, client_msg_id) DO NOTHING RETURNING id), \
             i AS (INSERT INTO inbox (user_id, seq, msg) \
               SELECT r.u, r.s, m.id FROM m, unnest($17::text[], $18::bigint[]) AS r(u, s)), \
             p AS (INSERT INTO conversations (user_id, conv_type, target, conv_id) \
               SELECT q.u, $1, q.t, $2 FROM m, unnest($19::text[], $20::text[]) AS q(u, t) \
               ON CONFLICT DO NOTHING), \
             a AS (INSERT INTO message_audience (msg, user_id) \
               SELECT m.id, a FROM m, unnest($21::text[]) AS a ON CONFLICT DO NOTHING), \
             d AS (INSERT INTO push_due (user_id, inbox_seq, msg, push_data) \
               SELECT r.u, r.s, m.id, $24::text FROM m, \
                 unnest($17::text[], $18::bigint[], $23::boolean[]) AS r(u, s, due) \
               WHERE r.due AND EXISTS (SELECT 1 FROM push_tokens t WHERE t.user_id = r.u) \
               RETURNING 1) \
             SELECT (SELECT ok FROM ok), (SELECT id FROM m), (SELECT count(*) FROM d)";

/// Appends many messages without audiences or group rules in one statement: what
/// [`APPEND_SQL`] does for one, with each column an array (one element per message; a
/// message's mentions, an array themselves, as a JSON array or NULL for none) and the inbox
/// entries and participants' rows as arrays keyed by their message's `(conv_id, seq)`.
/// A message is skipped if its recipient blocks its sender or its `(sender, client_msg_id)`
/// was stored before; answers how many were stored.
const APPEND_MANY_SQL: &str = "WITH v AS (SELECT * FROM unnest($1::integer[], $2::text[], \
                 $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[], \
                 $9::text[], $10::text[], $11::text[], $12::text[], $13::boolean[], \
                 $14::integer[], $15::text[], $16::text[], $25::text[]) WITH ORDINALITY \
                 AS v(conv_type, conv_id, seq, uid, sender, target, sent_time, msg_type, \
                 content, push_text, client_msg_id, digest, counted, state, search_text, \
                 blocker, mentions, n)), \
             m AS (INSERT INTO messages (conv_type, conv_id, seq, uid, sender, target, sent_time, \
                 msg_type, content, push_text, client_msg_id, digest, counted, state, \
                 search_text, mentions) \
               SELECT conv_type, conv_id, seq, uid, sender, target, sent_time, msg_type, \
                 content, push_text, client_msg_id, digest, counted, state, search_text, \
                 CASE WHEN v.mentions IS NULL THEN '{}'::text[] ELSE ARRAY(SELECT \
                   jsonb_array_elements_text(v.mentions::jsonb)) END \
               FROM v WHERE v.blocker IS NULL OR NOT EXISTS (SELECT 1 FROM blocklist \
                 WHERE user_id = v.blocker AND blocked_id = v.sender) ORDER BY v.n \
               ON CONFLICT (sender, client_msg_id) DO NOTHING RETURNING id, conv_type, conv_id, seq), \
             i AS (INSERT INTO inbox (user_id, seq, msg) \
               SELECT r.u, r.s, m.id FROM unnest($17::text[], $18::bigint[], $19::text[], \
                 $20::bigint[]) AS r(c, q, u, s) JOIN m ON m.conv_id = r.c AND m.seq = r.q), \
             p AS (INSERT INTO conversations (user_id, conv_type, target, conv_id) \
               SELECT q.u, m.conv_type, q.t, m.conv_id FROM unnest($21::text[], $22::bigint[], \
                 $23::text[], $24::text[]) AS q(c, s, u, t) JOIN m ON m.conv_id = q.c AND m.seq = q.s \
               ON CONFLICT DO NOTHING), \
             d AS (INSERT INTO push_due (user_id, inbox_seq, msg, push_data) \
               SELECT r.u, r.s, m.id, r.pd FROM unnest($17::text[], $18::bigint[], $19::text[], \
                 $20::bigint[], $26::boolean[], $27::text[]) AS r(c, q, u, s, due, pd) \
                 JOIN m ON m.conv_id = r.c AND m.seq = r.q \
               WHERE r.due AND EXISTS (SELECT 1 FROM push_tokens t WHERE t.user_id = r.u) \
               RETURNING user_id, inbox_seq) \
             SELECT (SELECT count(*) FROM m), \
               (SELECT coalesce(array_agg(user_id), '{}') FROM d), \
               (SELECT coalesce(array_agg(inbox_seq), '{}') FROM d)";

/// What [`APPEND_MANY_SQL`] binds for a batch of messages, in its parameters' order.
#[derive(Default)]
struct Many<'m> {
    conv_type: Vec<i32>,
    conv_id: Vec<&'m str>,
    seq: Vec<i64>,
    uid: Vec<&'m str>,
    sender: Vec<&'m str>,
    target: Vec<&'m str>,
    sent_time: Vec<i64>,
    msg_type: Vec<&'m str>,
    content: Vec<&'m str>,
    push_text: Vec<&'m str>,
    client_msg_id: Vec<&'m str>,
    digest: Vec<&'m str>,
    counted: Vec<bool>,
    state: Vec<i32>,
    search_text: Vec<Option<&'m str>>,
    blocker: Vec<Option<&'m str>>,
    inbox_conv: Vec<&'m str>,
    inbox_msg_seq: Vec<i64>,
    inbox_user: Vec<&'m str>,
    inbox_seq: Vec<i64>,
    /// Whether each inbox entry makes a notification due (`rules::push::push_due`), and the
    /// data its notification carries.
    inbox_due: Vec<bool>,
    inbox_push_data: Vec<&'m str>,
    part_conv: Vec<&'m str>,
    part_msg_seq: Vec<i64>,
    part_user: Vec<&'m str>,
    part_target: Vec<&'m str>,
    mentions: Vec<Option<String>>,
    /// The participants' conversation rows this batch inserts unless they exist.
    new_conversations: HashSet<String>,
}

impl<'m> Many<'m> {
    /// The batch's rows; a participant's conversation row only if it is not `known` and not
    /// already in the batch.
    fn of(bound: &'m [Bound<'m>], known: &KnownConversations) -> Many<'m> {
        let mut rows = Many::default();
        for b in bound {
            let m = b.m;
            rows.conv_type.push(b.conv_type);
            rows.conv_id.push(&m.conversation_id);
            rows.seq.push(b.seq);
            rows.uid.push(&m.uid);
            rows.sender.push(&m.sender);
            rows.target.push(&m.target);
            rows.sent_time.push(m.sent_time);
            rows.msg_type.push(&m.msg_type);
            rows.content.push(&m.content);
            rows.push_text.push(&m.push_text);
            rows.client_msg_id.push(&m.client_msg_id);
            rows.digest.push(&m.digest);
            rows.counted.push(m.counted);
            rows.state.push(b.state);
            rows.search_text.push(b.search_text);
            rows.blocker.push(b.blocker);
            rows.mentions.push(
                (!m.mentions.is_empty())
                    .then(|| serde_json::Value::from(m.mentions.clone()).to_string()),
            );
            for ((u, s), due) in m.recipients.iter().zip(&b.inbox_seqs).zip(&b.due) {
                rows.inbox_conv.push(&m.conversation_id);
                rows.inbox_msg_seq.push(b.seq);
                rows.inbox_user.push(u);
                rows.inbox_seq.push(*s);
                rows.inbox_due.push(*due);
                rows.inbox_push_data.push(&m.push_data);
            }
            for (u, t) in b.p_users.iter().zip(&b.p_targets) {
                let key = KnownConversations::key(u, b.conv_type, t);
                if known.0.contains(&key) || !rows.new_conversations.insert(key) {
                    continue;
                }
                rows.part_conv.push(&m.conversation_id);
                rows.part_msg_seq.push(b.seq);
                rows.part_user.push(u);
                rows.part_target.push(t);
            }
        }
        rows
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 27] {
        [
            &self.conv_type,
            &self.conv_id,
            &self.seq,
            &self.uid,
            &self.sender,
            &self.target,
            &self.sent_time,
            &self.msg_type,
            &self.content,
            &self.push_text,
            &self.client_msg_id,
            &self.digest,
            &self.counted,
            &self.state,
            &self.search_text,
            &self.blocker,
            &self.inbox_conv,
            &self.inbox_msg_seq,
            &self.inbox_user,
            &self.inbox_seq,
            &self.part_conv,
            &self.part_msg_seq,
            &self.part_user,
            &self.part_target,
            &self.mentions,
            &self.inbox_due,
            &self.inbox_push_data,
        ]
    }
}

/// Applies a group change: the group's rule decides on what `groups` reads, `groups` writes
/// the effects, and the notification that records them is appended here, where seqs are
/// given out.
async fn change_group(b: &mut Batch<'_>, c: GroupChange) -> PgResult<WriteResult> {
    let db = b.db;
    // Whatever the change, the members are read again on the group's next message.
    b.forget_members(&c.group);
    let effects = match crate::groups::decide(db, &c).await? {
        Decision::Change(effects) => effects,
        Decision::Refused(refusal) => return Ok(WriteResult::GroupRefused(refusal)),
        Decision::Unchanged => {
            let group = crate::groups::read_in(db, &c.group).await?;
            return Ok(WriteResult::GroupChanged {
                group,
                notification: None,
            });
        }
    };
    let seq = b.last_seq(&c.notification.conversation_id).await? + 1;
    let now = c.notification.sent_time;
    let recipients = match crate::groups::apply(db, &c.group, &effects, now, seq).await? {
        Ok(recipients) => recipients,
        Err(refusal) => return Ok(WriteResult::GroupRefused(refusal)),
    };
    let notification = effects.notification(c.notification, recipients);
    let (message, inbox) = match append(b, notification).await? {
        WriteResult::Appended { message, inbox, .. } => (message, inbox),
        other => {
            return Err(Error::Invalid(format!(
                "the notification's uid was used before: {other:?}"
            )));
        }
    };
    debug_assert_eq!(message.seq, seq);
    let group = crate::groups::read_in(db, &c.group).await?;
    Ok(WriteResult::GroupChanged {
        group,
        notification: Some((message, inbox)),
    })
}

pub(crate) async fn append(b: &mut Batch<'_>, mut m: AppendMessage) -> PgResult<WriteResult> {
    if m.only_if_stored {
        return existing_or(b.db, &m, WriteResult::NotStored).await;
    }
    let mut state = 0;
    if m.to_group {
        // A resend is answered before the members are read: its first answer needs only the
        // sender's entry.
        if let Some(found) = existing_if_stored(b.db, &m).await? {
            return Ok(found);
        }
        match crate::groups::recipients(b.db, &mut b.members, &m).await? {
            Ok((recipients, audience)) => {
                m.recipients = recipients;
                if !m.audience.is_empty() {
                    state |= crate::STATE_DIRECTED;
                }
                m.audience = audience;
            }
            // A resend of a message stored before the refusal still gets its first result.
            Err(refusal) => {
                return existing_or(b.db, &m, WriteResult::GroupRefused(refusal)).await;
            }
        }
    }
    if m.mention_all {
        state |= crate::STATE_MENTION_ALL;
    }
    // The conversation's next seq and each recipient's, taken only if the insert succeeds.
    if !b.convs.contains_key(&m.conversation_id) {
        b.lock_convs(vec![m.conversation_id.clone()]).await?;
    }
    // An MLS group message is stored only in its turn. The conversation's seq row is locked
    // (above), so nodes appending to the conversation at once take turns here.
    let mut next_epoch = None;
    if let Some(mls) = &m.mls {
        if let Some(found) = existing_if_stored(b.db, &m).await? {
            return Ok(found);
        }
        let state =
            b.db.query_opt(
                "SELECT group_id, epoch FROM e2ee_groups WHERE conv_id = $1",
                &[&m.conversation_id],
            )
            .await?
            .map(|r| GroupEpoch {
                group_id: r.get(0),
                epoch: r.get::<_, i64>(1) as u64,
            });
        match rules::e2ee::order(state.as_ref(), mls) {
            Ok(next) => next_epoch = next,
            Err(refusal) => return Ok(WriteResult::EpochRefused(refusal)),
        }
    }
    b.lock_inboxes(m.recipients.clone()).await?;
    let seq = b.convs[&m.conversation_id].now + 1;
    let mut taken: HashMap<&str, u64> = HashMap::with_capacity(m.recipients.len());
    let inbox_seqs: Vec<i64> = m
        .recipients
        .iter()
        .map(|u| {
            let n = taken.entry(u.as_str()).or_insert_with(|| b.inboxes[u].now);
            *n += 1;
            *n as i64
        })
        .collect();
    let directed = state & crate::STATE_DIRECTED != 0;
    let bound = Bound::new(&m, seq, state, inbox_seqs, directed);
    let row = b.db.query_one(APPEND_SQL, &bound.params()).await?;
    let inbox_seqs = bound.inbox_seqs;
    let (ok, id): (bool, Option<i64>) = (row.get(0), row.get(1));
    let push_due = row.get::<_, i64>(2) > 0;
    if !ok {
        // A resend of a message stored before the block still gets its first result.
        return existing_or(b.db, &m, WriteResult::Blocked).await;
    }
    if id.is_none() {
        return existing(b.db, &m).await;
    }
    if let Some(next) = next_epoch {
        b.db.execute(
            "INSERT INTO e2ee_groups (conv_id, group_id, epoch) VALUES ($1, $2, $3) \
             ON CONFLICT (conv_id) DO UPDATE SET group_id = excluded.group_id, \
             epoch = excluded.epoch",
            &[&m.conversation_id, &next.group_id, &big(next.epoch)],
        )
        .await?;
    }
    if let Some(c) = b.convs.get_mut(&m.conversation_id) {
        c.now = seq;
    }
    for (user, n) in taken {
        if let Some(c) = b.inboxes.get_mut(user) {
            c.now = n;
        }
    }
    let recipients = std::mem::take(&mut m.recipients);
    let inbox = recipients
        .into_iter()
        .zip(inbox_seqs)
        .map(|(u, s)| (u, s as u64))
        .collect();
    Ok(WriteResult::Appended {
        message: m.into_stored(seq),
        inbox,
        duplicate: false,
        push_due,
    })
}

/// What [`APPEND_SQL`] binds for one message, in its parameters' order.
struct Bound<'m> {
    m: &'m AppendMessage,
    conv_type: i32,
    seq: i64,
    state: i32,
    search_text: Option<&'m str>,
    inbox_seqs: Vec<i64>,
    /// Whether each recipient's entry makes a notification due (`rules::push::push_due`).
    due: Vec<bool>,
    p_users: Vec<&'m str>,
    p_targets: Vec<&'m str>,
    /// The addressees of a directed group message; empty otherwise.
    audience: &'m [String],
    blocker: Option<&'m str>,
}

impl<'m> Bound<'m> {
    fn new(
        m: &'m AppendMessage,
        seq: u64,
        state: i32,
        inbox_seqs: Vec<i64>,
        directed: bool,
    ) -> Bound<'m> {
        let (p_users, p_targets) = m
            .participants
            .iter()
            .map(|p| (p.user.as_str(), p.target.as_str()))
            .unzip();
        Bound {
            m,
            conv_type: m.conversation_type as i32,
            seq: big(seq),
            state,
            search_text: (!m.search_text.is_empty()).then_some(m.search_text.as_str()),
            inbox_seqs,
            due: m
                .recipients
                .iter()
                .map(|u| rules::push::push_due(m, u))
                .collect(),
            p_users,
            p_targets,
            audience: if directed { &m.audience } else { &[] },
            blocker: m.blocking_recipient.as_deref(),
        }
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 24] {
        let m = self.m;
        [
            &self.conv_type,
            &m.conversation_id,
            &self.seq,
            &m.uid,
            &m.sender,
            &m.target,
            &m.sent_time,
            &m.msg_type,
            &m.content,
            &m.push_text,
            &m.client_msg_id,
            &m.digest,
            &m.counted,
            &self.state,
            &m.mentions,
            &self.search_text,
            &m.recipients,
            &self.inbox_seqs,
            &self.p_users,
            &self.p_targets,
            &self.audience,
            &self.blocker,
            &self.due,
            &m.push_data,
        ]
    }
}

/// The answer to an earlier append of `m`'s `(sender, client_msg_id)` if there is one,
/// `refusal` (with nothing written) if not.
async fn existing_or(db: Db<'_>, m: &AppendMessage, refusal: WriteResult) -> PgResult<WriteResult> {
    Ok(existing_if_stored(db, m).await?.unwrap_or(refusal))
}

/// The answer to an append whose `(sender, client_msg_id)` exists.
async fn existing(db: Db<'_>, m: &AppendMessage) -> PgResult<WriteResult> {
    existing_if_stored(db, m).await?.ok_or_else(|| {
        Error::Invalid(format!(
            "the message ({}, {}) was neither stored nor found",
            m.sender, m.client_msg_id
        ))
    })
}

/// If `m`'s `(sender, client_msg_id)` was stored: the stored message and its inbox entries if
/// the digest matches, a conflict otherwise.
async fn existing_if_stored(db: Db<'_>, m: &AppendMessage) -> PgResult<Option<WriteResult>> {
    let Some(row) = db
        .query_opt(
            &format!(
                "SELECT m.id, m.digest, {MESSAGE_COLUMNS} FROM messages m \
                 WHERE m.sender = $1 AND m.client_msg_id = $2"
            ),
            &[&m.sender, &m.client_msg_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let (id, digest): (i64, String) = (row.get(0), row.get(1));
    if digest != m.digest {
        return Ok(Some(WriteResult::ClientMsgIdConflict));
    }
    let message = message_from_row(&row, 2);
    // Resends come soon after the original, so each recipient's entry is found by walking the
    // inbox back from its newest entry.
    let rows = db
        .query(
            "SELECT q.u, (SELECT i.seq FROM inbox i WHERE i.user_id = q.u AND i.msg = $1 \
                          ORDER BY i.seq DESC LIMIT 1) \
             FROM unnest($2::text[]) WITH ORDINALITY AS q(u, n) ORDER BY q.n",
            &[&id, &m.recipients],
        )
        .await?;
    let inbox = rows
        .iter()
        .filter_map(|r| {
            r.get::<_, Option<i64>>(1)
                .map(|s| (r.get::<_, String>(0), s as u64))
        })
        .collect();
    Ok(Some(WriteResult::Appended {
        message,
        inbox,
        duplicate: true,
        push_due: false,
    }))
}

/// Applies a conversation update and appends the user event that reports it.
async fn update_conversation(b: &mut Batch<'_>, u: ConversationUpdate) -> PgResult<WriteResult> {
    let db = b.db;
    let conv_type = u.conversation_type as i32;
    let (_, rows) = db
        .pipeline(
            "INSERT INTO conversations (user_id, conv_type, target, conv_id) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&u.user, &conv_type, &u.target, &u.conversation_id],
            "SELECT read_seq, pinned, muted, removed_seq, cleared_seq, until_seq \
             FROM conversations WHERE user_id = $1 AND conv_type = $2 AND target = $3 \
             FOR UPDATE",
            &[&u.user, &conv_type, &u.target],
        )
        .await?;
    let row = rows
        .first()
        .map(|r| crate::conversations::settings_row(r, 0))
        .ok_or_else(|| Error::Invalid("the conversation row was not made".into()))?;
    let conv = u.conversation_id.as_str();
    let snapshot = UpdateSnapshot {
        row,
        last_seq: b.last_seq(conv).await?,
        read_by_time: sent_by(db, conv, row.read_seq, u.read_time).await?,
        cleared_by_time: sent_by(db, conv, row.cleared_seq, u.clear_before_time).await?,
    };
    let change =
        rules::conversations::update(u, &snapshot).map_err(|e| Error::Invalid(e.to_string()))?;
    let s = &change.settings;
    let (event, inbox) = appended_event(append(b, change.event).await?).map_err(reused)?;
    let inbox_seq = inbox.first().map_or(0, |(_, seq)| *seq);
    let receipt = match change.receipt {
        Some(r) => {
            let (receipt, inbox) = appended_event(append(b, r).await?).map_err(reused)?;
            let peer_inbox_seq = inbox.first().map_or(0, |(_, seq)| *seq);
            // The other participant's side learns how far this user has read (and a list
            // read with `changedSince` reports it).
            db.execute(
                "UPDATE conversations SET peer_read_seq = greatest(peer_read_seq, $4), \
                 version = $5 WHERE user_id = $1 AND conv_type = $2 AND target = $3",
                &[
                    &s.target_id,
                    &conv_type,
                    &change.user,
                    &big(s.read_seq),
                    &big(peer_inbox_seq),
                ],
            )
            .await?;
            Some((receipt, peer_inbox_seq))
        }
        None => None,
    };
    db.execute(
        "UPDATE conversations SET read_seq = $4, pinned = $5, muted = $6, removed_seq = $7, \
         version = $8, cleared_seq = $9 WHERE user_id = $1 AND conv_type = $2 AND target = $3",
        &[
            &change.user,
            &conv_type,
            &s.target_id,
            &big(s.read_seq),
            &s.pinned,
            &s.muted,
            &big(s.removed_seq),
            &big(inbox_seq),
            &big(s.cleared_seq),
        ],
    )
    .await?;
    Ok(WriteResult::ConversationUpdated {
        settings: change.settings,
        event,
        inbox_seq,
        receipt,
    })
}

/// The failure of a store-made event whose uid was used before.
fn reused(other: Box<WriteResult>) -> Error {
    Error::Invalid(format!("the event's uid was used before: {other:?}"))
}

/// Recalls, edits or reacts to a message, and appends the event that records it.
async fn amend(b: &mut Batch<'_>, a: Amend) -> PgResult<WriteResult> {
    let db = b.db;
    let seq = big(a.seq);
    let conv = a.conversation_id.clone();
    // Locked: amends of one message from several nodes apply one after the other.
    let target = db
        .query_opt(
            "SELECT sender, sent_time, state, msg_type FROM messages \
             WHERE conv_id = $1 AND seq = $2 FOR UPDATE",
            &[&conv, &seq],
        )
        .await?;
    // In a group, only a member who may send changes a message (checked before anything is
    // written, as the event's append would check it after); the app server's change goes to
    // the members as they are.
    let (mut group, mut members) = (None, None);
    if a.event.to_group && target.is_some() {
        if a.moderated {
            members = Some(b.members(&a.event.target).await?);
        } else {
            group = crate::groups::recipients(b.db, &mut b.members, &a.event)
                .await?
                .err();
        }
    }
    let blocked = match &a.blocking_recipient {
        Some(other) => db
            .query_opt(
                "SELECT 1 FROM blocklist WHERE user_id = $1 AND blocked_id = $2",
                &[other, &a.by],
            )
            .await?
            .is_some(),
        None => false,
    };
    let reactions = match &a.action {
        AmendAction::React { emoji, add: true } => {
            let row = db
                .query_one(
                    "SELECT count(DISTINCT emoji), count(*) FILTER (WHERE user_id = $3), \
                     count(*) FILTER (WHERE user_id = $3 AND emoji = $4), \
                     count(*) FILTER (WHERE emoji = $4) \
                     FROM reactions WHERE conv_id = $1 AND seq = $2",
                    &[&conv, &seq, &a.by, emoji],
                )
                .await?;
            let counts: [i64; 4] = [row.get(0), row.get(1), row.get(2), row.get(3)];
            Reactions {
                emoji: counts[0] as u64,
                mine: counts[1] as u64,
                present: counts[2] > 0,
                emoji_used: counts[3] > 0,
            }
        }
        _ => Reactions::default(),
    };
    let decided = rules::amend::decide(
        &a,
        &AmendSnapshot {
            target: target.as_ref().map(|t| Target {
                sender: t.get(0),
                sent_time: t.get(1),
                recalled: t.get::<_, i32>(2) & crate::STATE_RECALLED != 0,
                msg_type: t.get(3),
            }),
            group,
            blocked,
            reactions,
        },
    );
    let change = match decided {
        Ok(change) => change,
        Err(refusal) => return Ok(WriteResult::AmendRefused(refusal)),
    };
    match change {
        Change::Unchanged => return amended(db, &conv, seq, None).await,
        Change::Recall => {
            db.execute(
                "UPDATE messages SET content = '{}', push_text = '', counted = false, \
                 state = state | $3, search_text = NULL WHERE conv_id = $1 AND seq = $2",
                &[&conv, &seq, &crate::STATE_RECALLED],
            )
            .await?;
        }
        Change::Edit {
            content,
            search_text,
        } => {
            let search = (!search_text.is_empty()).then_some(search_text);
            db.execute(
                "UPDATE messages SET content = $3, state = state | $4, search_text = $5 \
                 WHERE conv_id = $1 AND seq = $2",
                &[&conv, &seq, &content, &crate::STATE_EDITED, &search],
            )
            .await?;
        }
        Change::React { emoji, add } => {
            let sql = if add {
                "INSERT INTO reactions (conv_id, seq, emoji, user_id) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM reactions WHERE conv_id = $1 AND seq = $2 AND emoji = $3 \
                 AND user_id = $4"
            };
            if db.execute(sql, &[&conv, &seq, &emoji, &a.by]).await? == 0 {
                return amended(db, &conv, seq, None).await;
            }
            db.execute(
                "UPDATE messages SET state = CASE WHEN EXISTS (SELECT 1 FROM reactions \
                 WHERE conv_id = $1 AND seq = $2) THEN state | $3 ELSE state & ~$3 END \
                 WHERE conv_id = $1 AND seq = $2",
                &[&conv, &seq, &crate::STATE_REACTIONS],
            )
            .await?;
        }
    }
    let event = rules::amend::event(a, members.as_deref());
    let event = appended_event(append(b, event).await?).map_err(reused)?;
    amended(db, &conv, seq, Some(event)).await
}

/// The answer to an amend: the message as it now is, and the event if one was appended.
async fn amended(
    db: Db<'_>,
    conversation_id: &str,
    seq: i64,
    event: Option<(StoredMessage, Vec<(String, u64)>)>,
) -> PgResult<WriteResult> {
    let row = db
        .query_one(
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conv_id = $1 AND m.seq = $2"
            ),
            &[&conversation_id, &seq],
        )
        .await?;
    Ok(WriteResult::Amended {
        message: message_from_row(&row, 0),
        event,
    })
}

/// The newest seq above `after` of a message sent at or before `time` (or `after` if none);
/// `after`, without a read, for a time of 0 (none asked).
async fn sent_by(db: Db<'_>, conversation_id: &str, after: u64, time: i64) -> PgResult<u64> {
    if time <= 0 {
        return Ok(after);
    }
    let row = db
        .query_one(
            "SELECT max(seq) FROM messages WHERE conv_id = $1 AND seq > $2 AND sent_time <= $3",
            &[&conversation_id, &big(after), &time],
        )
        .await?;
    Ok(row.get::<_, Option<i64>>(0).map_or(after, |s| s as u64))
}
