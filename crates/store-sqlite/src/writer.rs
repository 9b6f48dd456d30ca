//! The single writer thread. It takes every request waiting in its queue (up to
//! [`MAX_BATCH_OPS`] ops), applies them in one transaction, commits once, and only then answers
//! each request: one fsync covers many writers (group commit).

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tidings_store::batch::Gathered;
use tidings_store::rows::appended_event;
use tidings_store::rules;
use tidings_store::rules::amend::{AmendSnapshot, Change, Reactions, Target};
use tidings_store::rules::conversations::UpdateSnapshot;
use tidings_store::rules::e2ee::GroupEpoch;
use tidings_store::rules::groups::Decision;
use tidings_store::{
    Amend, AmendAction, AppendMessage, ConversationUpdate, GroupChange, Result, StoreError,
    StoredMessage, WriteOp, WriteResult,
};
use tokio::sync::oneshot;

use crate::{MESSAGE_COLUMNS, backend, message_from_row};

/// The most ops one transaction takes; more wait for the next commit.
pub const MAX_BATCH_OPS: usize = 8192;

pub enum Request {
    Write {
        ops: Vec<WriteOp>,
        reply: oneshot::Sender<Result<Vec<WriteResult>>>,
    },
    /// Once the transaction being gathered commits, checkpoint the WAL on this connection: no
    /// transaction can commit meanwhile, so every frame is copied and the next transaction
    /// starts the log again from its beginning.
    Checkpoint,
    /// Index every committed message's text for search before answering.
    FlushIndex { reply: oneshot::Sender<()> },
    /// Commit what is queued, checkpoint the WAL, and stop.
    Close { reply: oneshot::Sender<Result<()>> },
}

pub struct Handle {
    tx: mpsc::Sender<Request>,
    thread: JoinHandle<()>,
}

impl Handle {
    pub fn submit(&self, request: Request) -> Result<()> {
        // Counted before it is sent, so the writer's decrement never comes first.
        let depth = matches!(request, Request::Write { .. })
            .then(|| &tidings_store::metrics::m().queue_depth);
        if let Some(d) = depth {
            d.increment(1);
        }
        self.tx.send(request).map_err(|_| {
            if let Some(d) = depth {
                d.decrement(1);
            }
            StoreError::Closed
        })
    }

    /// A sender for requests from other threads (the checkpoint thread).
    pub fn sender(&self) -> mpsc::Sender<Request> {
        self.tx.clone()
    }

    pub fn join(self) {
        drop(self.tx);
        // The thread only ends by returning; a panic there is already logged by the runtime.
        let _ = self.thread.join();
    }
}

pub fn spawn(conn: Connection) -> Result<Handle> {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || run(conn, rx))
        .map_err(backend)?;
    Ok(Handle { tx, thread })
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Request>) {
    let mut counters = Counters::default();
    let mut pending: Option<Request> = None;
    // A checkpoint asked for that did not copy the whole log yet.
    let mut checkpoint_wanted = false;
    loop {
        let first = match pending.take() {
            Some(r) => r,
            None => {
                // Staged inbox entries are merged while no request waits.
                let merge = counters.staged.due(&conn).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "reading the staged inbox entries failed");
                    Err(None)
                });
                if merge.is_ok() {
                    match rx.try_recv() {
                        Ok(r) => r,
                        Err(mpsc::TryRecvError::Empty) => {
                            // Texts due for the index go first: a merge may take many steps.
                            if counters.index.time_left().is_some_and(|l| l.is_zero()) {
                                flush_index(&mut conn, &mut counters);
                            } else if let Err(e) = counters.staged.step(&mut conn) {
                                tracing::error!(error = %e, "merging staged inbox entries failed");
                            }
                            continue;
                        }
                        Err(mpsc::TryRecvError::Disconnected) => return,
                    }
                } else {
                    // Texts wait to be indexed, staged entries to be merged: sleep no longer
                    // than either may wait.
                    let left = match (counters.index.time_left(), merge.err().flatten()) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    match left {
                        Some(left) => match rx.recv_timeout(left) {
                            Ok(r) => r,
                            Err(mpsc::RecvTimeoutError::Timeout) => {
                                if counters.index.time_left().is_some_and(|l| l.is_zero()) {
                                    flush_index(&mut conn, &mut counters);
                                }
                                continue;
                            }
                            Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        },
                        None => match rx.recv() {
                            Ok(r) => r,
                            Err(_) => return,
                        },
                    }
                }
            }
        };
        let mut batch = Gathered::default();
        let mut close = None;
        let mut checkpoint = false;
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                // A close ends the gathering: what is queued after it is drained below.
                Request::Close { reply } => {
                    close = Some(reply);
                    break;
                }
                Request::Write { ops, reply } => batch.push(ops, reply),
                Request::Checkpoint => checkpoint = true,
                Request::FlushIndex { reply } => flushes.push(reply),
            }
            if batch.is_full(MAX_BATCH_OPS) {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            commit_batch(&mut conn, &mut counters, batch.into_requests());
        }
        if !flushes.is_empty() || close.is_some() {
            if counters.index.waiting() {
                flush_index(&mut conn, &mut counters);
            }
            for reply in flushes {
                let _ = reply.send(());
            }
        }
        if (checkpoint || checkpoint_wanted) && close.is_none() {
            checkpoint_wanted = !crate::checkpoint::finish(&conn);
        }
        if let Some(reply) = close {
            // Drain writes that raced with the close request so none is left unanswered.
            let rest: Vec<_> = rx
                .try_iter()
                .filter_map(|r| match r {
                    Request::Write { ops, reply } => {
                        tidings_store::metrics::m().queue_depth.decrement(1);
                        Some((ops, reply))
                    }
                    Request::Checkpoint => None,
                    Request::FlushIndex { reply } => {
                        let _ = reply.send(());
                        None
                    }
                    Request::Close { reply } => {
                        let _ = reply.send(Ok(()));
                        None
                    }
                })
                .collect();
            if !rest.is_empty() {
                commit_batch(&mut conn, &mut counters, rest);
                if counters.index.waiting() {
                    flush_index(&mut conn, &mut counters);
                }
            }
            let result = conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(backend);
            // The caller may have stopped waiting; there is nobody else to tell.
            let _ = reply.send(result);
            return;
        }
        if pending.is_none() {
            pending = rx.try_recv().ok();
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<WriteResult>>>;

/// The newest conversation seqs and inbox seqs, cached by the only writer. A seq exists only
/// once its transaction commits, so after a failed transaction the cache is dropped and
/// reloaded from the tables (the maxima of their primary keys).
#[derive(Default)]
pub struct Counters {
    conversations: FastMap<String, u64>,
    /// Each user's inbox key and newest inbox seq.
    inboxes: FastMap<String, (i64, u64)>,
    /// The greatest user key given out, once read.
    last_user_key: Option<i64>,
    /// Conversation rows known to exist (`user \0 type \0 target`), so a conversation's
    /// messages after its first do not look its rows up again.
    participants: HashSet<String, foldhash::fast::RandomState>,
    /// Texts of new messages waiting to be indexed for search.
    index: crate::index::Indexer,
    /// Inbox entries staged by large fan-outs, and their merge.
    pub(crate) staged: crate::pending::Merger,
    /// Groups' member lists.
    pub(crate) members: crate::groups::MemberCache,
    /// Whether a user has a push token, once looked up; emptied when a token is saved or
    /// removed (rare), so it never answers from before the change.
    push_users: FastMap<String, bool>,
}

/// The caches' maps: looked up once per recipient of every message, so with a fast hasher.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Past this many cached entries a cache is emptied and refilled lazily, bounding its memory.
const MAX_CACHED: usize = 1_000_000;

impl Counters {
    /// The user's inbox key (given out now if the user has none) and next inbox seq.
    fn next_inbox(&mut self, tx: &Transaction<'_>, user: &str) -> rusqlite::Result<(i64, u64)> {
        if let Some((key, seq)) = self.inboxes.get_mut(user) {
            *seq += 1;
            return Ok((*key, *seq));
        }
        if self.inboxes.len() >= MAX_CACHED {
            self.inboxes.clear();
        }
        let known: Option<i64> = tx
            .prepare_cached("SELECT user_key FROM user_keys WHERE id = ?1")?
            .query_row(params![user], |row| row.get(0))
            .optional()?;
        let (key, last) = match known {
            Some(key) => (key, crate::pending::last_seq_of_key(tx, key)?),
            None => {
                let key = match self.last_user_key {
                    Some(k) => k + 1,
                    None => {
                        tx.prepare_cached("SELECT coalesce(max(user_key), 0) FROM user_keys")?
                            .query_row([], |row| row.get::<_, i64>(0))?
                            + 1
                    }
                };
                tx.prepare_cached("INSERT INTO user_keys (id, user_key) VALUES (?1, ?2)")?
                    .execute(params![user, key])?;
                self.last_user_key = Some(key);
                (key, 0)
            }
        };
        self.inboxes.insert(user.to_string(), (key, last + 1));
        Ok((key, last + 1))
    }

    /// Whether `user` has a push token (a notification due for them is worth a row).
    fn has_push_token(&mut self, tx: &Transaction<'_>, user: &str) -> rusqlite::Result<bool> {
        if let Some(has) = self.push_users.get(user) {
            return Ok(*has);
        }
        if self.push_users.len() >= MAX_CACHED {
            self.push_users.clear();
        }
        let has = tx
            .prepare_cached("SELECT 1 FROM push_tokens WHERE user_id = ?1 LIMIT 1")?
            .query_row(params![user], |_| Ok(()))
            .optional()?
            .is_some();
        self.push_users.insert(user.to_string(), has);
        Ok(has)
    }

    /// Writes the notifications due for `m`, stored as `rowid`, to the users of `inbox` (see
    /// [`rules::push::push_due`]) who have a push token; answers whether it wrote any.
    fn push_due(
        &mut self,
        tx: &Transaction<'_>,
        m: &AppendMessage,
        rowid: i64,
        inbox: &[(String, u64)],
    ) -> rusqlite::Result<bool> {
        let mut any = false;
        for (user, inbox_seq) in inbox {
            if rules::push::push_due(m, user) && self.has_push_token(tx, user)? {
                tx.prepare_cached(
                    "INSERT INTO push_due (user_id, inbox_seq, msg, push_data) \
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![user, *inbox_seq as i64, rowid, m.push_data])?;
                any = true;
            }
        }
        Ok(any)
    }

    fn forget(&mut self) {
        self.push_users.clear();
        self.conversations.clear();
        self.inboxes.clear();
        self.last_user_key = None;
        self.participants.clear();
        self.index.failed();
        self.staged.forget();
        self.members.clear();
    }

    /// The conversation's newest seq (0 if it has no messages).
    pub(crate) fn last_seq(
        &self,
        tx: &Transaction<'_>,
        conversation_id: &str,
    ) -> rusqlite::Result<u64> {
        if let Some(n) = self.conversations.get(conversation_id) {
            return Ok(*n);
        }
        let last: Option<i64> = tx
            .prepare_cached("SELECT max(seq) FROM messages WHERE conv_id = ?1")?
            .query_row(params![conversation_id], |row| row.get(0))?;
        Ok(last.unwrap_or(0) as u64)
    }
}

fn commit_batch(conn: &mut Connection, counters: &mut Counters, batch: Vec<(Vec<WriteOp>, Reply)>) {
    // The ops are consumed: their strings move into the results.
    let (op_lists, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let metrics = tidings_store::metrics::m();
    let started = metrics.batch_started(&op_lists);
    let outcome = (|| -> rusqlite::Result<Vec<Vec<WriteResult>>> {
        let tx = crate::schema::write_transaction(conn)?;
        let mut all = Vec::with_capacity(op_lists.len());
        for ops in op_lists {
            let mut results = Vec::with_capacity(ops.len());
            for op in ops {
                results.push(apply(&tx, counters, op)?);
            }
            all.push(results);
        }
        if counters.index.due() {
            counters.index.flush(&tx)?;
        }
        tx.commit()?;
        Ok(all)
    })();
    match outcome {
        Ok(all) => {
            metrics.committed(started);
            counters.index.committed();
            for (reply, results) in replies.into_iter().zip(all) {
                // A caller that gave up waiting still had its write committed; nothing to undo.
                let _ = reply.send(Ok(results));
            }
        }
        Err(e) => {
            metrics.commit_failures.increment(1);
            counters.forget();
            tracing::error!(error = %e, "storage transaction failed; batch rolled back");
            for reply in replies {
                let _ = reply.send(Err(backend(&e)));
            }
        }
    }
}

fn apply(
    tx: &Transaction<'_>,
    counters: &mut Counters,
    op: WriteOp,
) -> rusqlite::Result<WriteResult> {
    match op {
        WriteOp::Append(m) => append(tx, counters, m),
        WriteOp::SetCursor {
            user,
            device,
            cursor,
        } => crate::records::set_cursor(tx, user, device, cursor),
        WriteOp::UseNonce {
            nonce,
            now,
            expires_at,
        } => crate::records::use_nonce(tx, nonce, now, expires_at),
        WriteOp::UpdateConversation(u) => update_conversation(tx, counters, *u),
        WriteOp::Amend(a) => amend(tx, counters, *a),
        WriteOp::Group(change) => change_group(tx, counters, *change),
        WriteOp::CreateChatroom(r) => crate::chatrooms::create(tx, r),
        WriteOp::SetChatroom(r) => crate::chatrooms::set(tx, r),
        WriteOp::DeleteChatroom { id } => crate::chatrooms::delete(tx, &id),
        WriteOp::SetChatroomUser { room, standing } => {
            crate::chatrooms::set_user(tx, &room, standing)
        }
        WriteOp::SetQuietHours {
            user,
            start_minute,
            minutes,
        } => crate::records::set_quiet_hours(tx, user, start_minute, minutes),
        WriteOp::SetProfile {
            user,
            name,
            portrait,
            extra,
        } => crate::records::set_profile(tx, user, name, portrait, extra),
        WriteOp::SetSensitiveWord {
            word,
            replacement,
            max,
        } => crate::records::set_sensitive_word(tx, word, replacement, max),
        WriteOp::RemoveSensitiveWord { word } => crate::records::remove_sensitive_word(tx, word),
        WriteOp::SetBanned { user, banned } => crate::records::set_banned(tx, user, banned),
        WriteOp::SavePushToken(token) => {
            counters.push_users.clear();
            crate::records::save_push_token(tx, &token)
        }
        WriteOp::RemovePushToken {
            provider,
            token,
            user,
        } => {
            counters.push_users.clear();
            crate::records::remove_push_token(tx, provider, token, user)
        }
        WriteOp::PushDone { due } => crate::records::push_done(tx, due),
        WriteOp::PublishKeyPackages(upload) => crate::records::publish_key_packages(tx, upload),
        WriteOp::ClaimKeyPackages { user, now, except } => {
            crate::records::claim_key_packages(tx, &user, now, &except)
        }
        WriteOp::SetLastSeen { user, time } => crate::records::set_last_seen(tx, user, time),
        WriteOp::SetBlocked {
            user,
            other,
            blocked,
            max,
        } => crate::records::set_blocked(tx, user, other, blocked, max),
        WriteOp::DeleteForUser {
            user,
            conversation_id,
            seqs,
        } => crate::records::delete_for_user(tx, user, conversation_id, seqs),
        WriteOp::BumpTokenVersion { user } => Ok(WriteResult::TokenVersion(
            crate::accounts::bump_token_version(tx, &user)?,
        )),
        WriteOp::CreateAccount(account) => crate::accounts::create(tx, account),
        WriteOp::RecordUser { user } => Ok(WriteResult::UserRecorded(crate::accounts::record(
            tx, &user,
        )?)),
        WriteOp::ChangeAccount {
            user,
            expected,
            password_hash,
        } => crate::accounts::change(tx, &user, &expected, password_hash.as_deref()),
        WriteOp::Admin(op) => Ok(WriteResult::Admin(crate::admin::apply(tx, op)?)),
    }
}

/// Applies a group change: the group's rule decides on what `groups` reads, `groups` writes
/// the effects, and the notification that records them is appended here, where seqs are
/// given out.
fn change_group(
    tx: &Transaction<'_>,
    counters: &mut Counters,
    c: GroupChange,
) -> rusqlite::Result<WriteResult> {
    // Whatever the change, the members are read again on the group's next message.
    counters.members.forget(&c.group);
    let effects = match crate::groups::decide(tx, &c)? {
        Decision::Change(effects) => effects,
        Decision::Unchanged => {
            return Ok(WriteResult::GroupChanged {
                group: crate::groups::read_in(tx, &c.group)?,
                notification: None,
            });
        }
        Decision::Refused(refusal) => return Ok(WriteResult::GroupRefused(refusal)),
    };
    let seq = counters.last_seq(tx, &c.notification.conversation_id)? + 1;
    let recipients = crate::groups::apply(tx, &c.group, &effects, c.notification.sent_time, seq)?;
    let notification = effects.notification(c.notification, recipients);
    let (message, inbox) = match append(tx, counters, notification)? {
        WriteResult::Appended { message, inbox, .. } => (message, inbox),
        other => {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                format!("the notification's uid was used before: {other:?}").into(),
            ));
        }
    };
    debug_assert_eq!(message.seq, seq);
    Ok(WriteResult::GroupChanged {
        group: crate::groups::read_in(tx, &c.group)?,
        notification: Some((message, inbox)),
    })
}

pub(crate) fn append(
    tx: &Transaction<'_>,
    counters: &mut Counters,
    mut m: AppendMessage,
) -> rusqlite::Result<WriteResult> {
    if m.only_if_stored {
        return existing_or(tx, &m, WriteResult::NotStored);
    }
    let mut state = 0;
    if m.to_group {
        // A resend is answered before the members are read: its first answer needs only the
        // sender's entry.
        if is_stored(tx, &m)? {
            return existing(tx, &m);
        }
        match crate::groups::recipients(tx, &mut counters.members, &m)? {
            Ok((recipients, audience)) => {
                m.recipients = recipients;
                if !m.audience.is_empty() {
                    state |= crate::STATE_DIRECTED;
                }
                m.audience = audience;
            }
            // A resend of a message stored before the refusal still gets its first result.
            Err(refusal) => return existing_or(tx, &m, WriteResult::GroupRefused(refusal)),
        }
    }
    if m.mention_all {
        state |= crate::STATE_MENTION_ALL;
    }
    let mentions = if m.mentions.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&m.mentions)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?
    };
    if let Some(recipient) = &m.blocking_recipient {
        let blocked = tx
            .prepare_cached("SELECT 1 FROM blocklist WHERE user_id = ?1 AND blocked_id = ?2")?
            .query_row(params![recipient, m.sender], |_| Ok(()))
            .optional()?
            .is_some();
        if blocked {
            // A resend of a message stored before the block still gets its first result.
            return existing_or(tx, &m, WriteResult::Blocked);
        }
    }
    // An MLS group message is stored only in its turn; a resend of one stored before gets its
    // first result.
    let mut next_epoch = None;
    if let Some(mls) = &m.mls {
        if is_stored(tx, &m)? {
            return existing(tx, &m);
        }
        let state = tx
            .prepare_cached("SELECT group_id, epoch FROM e2ee_groups WHERE conv_id = ?1")?
            .query_row(params![m.conversation_id], |r| {
                Ok(GroupEpoch {
                    group_id: r.get(0)?,
                    epoch: r.get::<_, i64>(1)? as u64,
                })
            })
            .optional()?;
        match rules::e2ee::order(state.as_ref(), mls) {
            Ok(next) => next_epoch = next,
            Err(refusal) => return Ok(WriteResult::EpochRefused(refusal)),
        }
    }
    // The conversation's next seq, taken only if the insert below succeeds.
    let seq = counters.last_seq(tx, &m.conversation_id)? + 1;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO messages (conv_type, conv_id, seq, uid, sender, target, sent_time, \
             msg_type, content, push_text, client_msg_id, digest, counted, state, mentions) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
             ON CONFLICT (sender, client_msg_id) DO NOTHING",
        )?
        .execute(params![
            m.conversation_type,
            m.conversation_id,
            seq as i64,
            m.uid,
            m.sender,
            m.target,
            m.sent_time,
            m.msg_type,
            m.content,
            m.push_text,
            m.client_msg_id,
            m.digest,
            m.counted,
            state,
            mentions
        ])?;
    if inserted == 0 {
        return existing(tx, &m);
    }
    if let Some(next) = next_epoch {
        tx.prepare_cached(
            "INSERT INTO e2ee_groups (conv_id, group_id, epoch) VALUES (?1, ?2, ?3) \
             ON CONFLICT (conv_id) DO UPDATE SET group_id = excluded.group_id, \
             epoch = excluded.epoch",
        )?
        .execute(params![m.conversation_id, next.group_id, next.epoch as i64])?;
    }
    if counters.conversations.len() >= MAX_CACHED {
        counters.conversations.clear();
    }
    counters
        .conversations
        .insert(m.conversation_id.clone(), seq);
    let rowid = tx.last_insert_rowid();
    if state & crate::STATE_DIRECTED != 0 {
        let mut stmt =
            tx.prepare_cached("INSERT INTO message_audience (msg, user_id) VALUES (?1, ?2)")?;
        for user in &m.audience {
            stmt.execute(params![rowid, user])?;
        }
    }
    if !m.search_text.is_empty() {
        counters.index.add(rowid, m.search_text.clone());
    }
    for p in &m.participants {
        let key = format!("{}\0{}\0{}", p.user, m.conversation_type, p.target);
        if counters.participants.contains(&key) {
            continue;
        }
        tx.prepare_cached(
            "INSERT INTO conversations (user_id, conv_type, target, conv_id) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            p.user,
            m.conversation_type,
            p.target,
            m.conversation_id
        ])?;
        if counters.participants.len() >= MAX_CACHED {
            counters.participants.clear();
        }
        counters.participants.insert(key);
    }
    let recipients = std::mem::take(&mut m.recipients);
    let mut inbox = Vec::with_capacity(recipients.len());
    if recipients.len() >= crate::pending::STAGE_AT {
        // One row for all of them, merged into `inbox` later (see `pending`).
        let mut entries = Vec::with_capacity(recipients.len());
        for user in recipients {
            let (key, inbox_seq) = counters.next_inbox(tx, &user)?;
            entries.push((key, inbox_seq));
            inbox.push((user, inbox_seq));
        }
        tx.prepare_cached("INSERT INTO inbox_pending (msg, entries) VALUES (?1, ?2)")?
            .execute(params![rowid, crate::pending::encode(&mut entries)])?;
        counters.staged.staged();
    } else {
        let mut insert =
            tx.prepare_cached("INSERT INTO inbox (user_key, seq, msg) VALUES (?1, ?2, ?3)")?;
        for user in recipients {
            let (key, inbox_seq) = counters.next_inbox(tx, &user)?;
            insert.execute(params![key, inbox_seq as i64, rowid])?;
            inbox.push((user, inbox_seq));
        }
    }
    let push_due = counters.push_due(tx, &m, rowid, &inbox)?;
    Ok(WriteResult::Appended {
        message: m.into_stored(seq),
        inbox,
        duplicate: false,
        push_due,
    })
}

/// Applies a conversation update and appends the user event that reports it.
fn update_conversation(
    tx: &Transaction<'_>,
    counters: &mut Counters,
    u: ConversationUpdate,
) -> rusqlite::Result<WriteResult> {
    tx.prepare_cached(
        "INSERT INTO conversations (user_id, conv_type, target, conv_id) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        u.user,
        u.conversation_type,
        u.target,
        u.conversation_id
    ])?;
    let row = tx
        .prepare_cached(
            "SELECT read_seq, pinned, muted, removed_seq, cleared_seq, until_seq FROM conversations \
             WHERE user_id = ?1 AND conv_type = ?2 AND target = ?3",
        )?
        .query_row(params![u.user, u.conversation_type, u.target], |r| {
            crate::conversations::settings_row(r, 0)
        })?;
    let conv = u.conversation_id.as_str();
    let snapshot = UpdateSnapshot {
        row,
        last_seq: counters.last_seq(tx, conv)?,
        read_by_time: sent_by(tx, conv, row.read_seq, u.read_time)?,
        cleared_by_time: sent_by(tx, conv, row.cleared_seq, u.clear_before_time)?,
    };
    let change = rules::conversations::update(u, &snapshot)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let s = &change.settings;
    let (event, inbox) = appended_event(append(tx, counters, change.event)?).map_err(reused)?;
    let inbox_seq = inbox.first().map_or(0, |(_, seq)| *seq);
    let receipt = match change.receipt {
        Some(r) => {
            let (receipt, inbox) = appended_event(append(tx, counters, r)?).map_err(reused)?;
            let peer_inbox_seq = inbox.first().map_or(0, |(_, seq)| *seq);
            // The other participant's side learns how far this user has read (and a list
            // read with `changedSince` reports it).
            tx.prepare_cached(
                "UPDATE conversations SET peer_read_seq = max(peer_read_seq, ?4), version = ?5 \
                 WHERE user_id = ?1 AND conv_type = ?2 AND target = ?3",
            )?
            .execute(params![
                s.target_id,
                s.conversation_type,
                change.user,
                s.read_seq as i64,
                peer_inbox_seq as i64
            ])?;
            Some((receipt, peer_inbox_seq))
        }
        None => None,
    };
    tx.prepare_cached(
        "UPDATE conversations SET read_seq = ?4, pinned = ?5, muted = ?6, removed_seq = ?7, \
         version = ?8, cleared_seq = ?9 WHERE user_id = ?1 AND conv_type = ?2 AND target = ?3",
    )?
    .execute(params![
        change.user,
        s.conversation_type,
        s.target_id,
        s.read_seq as i64,
        s.pinned,
        s.muted,
        s.removed_seq as i64,
        inbox_seq as i64,
        s.cleared_seq as i64
    ])?;
    Ok(WriteResult::ConversationUpdated {
        settings: change.settings,
        event,
        inbox_seq,
        receipt,
    })
}

/// The failure of a store-made event whose uid was used before.
fn reused(other: Box<WriteResult>) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(
        format!("the event's uid was used before: {other:?}").into(),
    )
}

/// Recalls, edits or reacts to a message, and appends the event that records it.
fn amend(tx: &Transaction<'_>, counters: &mut Counters, a: Amend) -> rusqlite::Result<WriteResult> {
    let (conv, seq) = (a.conversation_id.as_str(), a.seq as i64);
    let target = tx
        .prepare_cached(
            "SELECT sender, sent_time, state, msg_type, rowid FROM messages \
             WHERE conv_id = ?1 AND seq = ?2",
        )?
        .query_row(params![conv, seq], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })
        .optional()?;
    // In a group, only a member who may send changes a message (checked before anything is
    // written, as the event's append would check it after); the app server's change goes to
    // the members as they are.
    let (mut group, mut members) = (None, None);
    if a.event.to_group && target.is_some() {
        if a.moderated {
            members = Some(crate::groups::member_ids(tx, &a.event.target)?);
        } else {
            group = crate::groups::recipients(tx, &mut counters.members, &a.event)?.err();
        }
    }
    let blocked = match &a.blocking_recipient {
        Some(other) => tx
            .prepare_cached("SELECT 1 FROM blocklist WHERE user_id = ?1 AND blocked_id = ?2")?
            .query_row(params![other, a.by], |_| Ok(()))
            .optional()?
            .is_some(),
        None => false,
    };
    let reactions = match &a.action {
        AmendAction::React { emoji, add: true } => tx
            .prepare_cached(
                "SELECT count(DISTINCT emoji), count(*) FILTER (WHERE user_id = ?3), \
                 count(*) FILTER (WHERE user_id = ?3 AND emoji = ?4), \
                 count(*) FILTER (WHERE emoji = ?4) \
                 FROM reactions WHERE conv_id = ?1 AND seq = ?2",
            )?
            .query_row(params![conv, seq, a.by, emoji], |row| {
                Ok(Reactions {
                    emoji: row.get::<_, i64>(0)? as u64,
                    mine: row.get::<_, i64>(1)? as u64,
                    present: row.get::<_, i64>(2)? > 0,
                    emoji_used: row.get::<_, i64>(3)? > 0,
                })
            })?,
        _ => Reactions::default(),
    };
    let snapshot = AmendSnapshot {
        target: target
            .as_ref()
            .map(|(sender, sent_time, state, msg_type, _)| Target {
                sender,
                sent_time: *sent_time,
                msg_type,
                recalled: state & crate::STATE_RECALLED != 0,
            }),
        group,
        blocked,
        reactions,
    };
    let change = match rules::amend::decide(&a, &snapshot) {
        Ok(change) => change,
        Err(refusal) => return Ok(WriteResult::AmendRefused(refusal)),
    };
    let rowid = target.map_or(0, |t| t.4);
    // The message's text must be in the index before it is changed or taken out of it.
    if counters.index.waiting() {
        counters.index.flush(tx)?;
    }
    match change {
        Change::Unchanged => return amended(tx, conv, a.seq, None),
        Change::Recall => {
            tx.prepare_cached(
                "UPDATE messages SET content = '{}', push_text = '', counted = 0, \
                 state = state | ?3 WHERE conv_id = ?1 AND seq = ?2",
            )?
            .execute(params![conv, seq, crate::STATE_RECALLED])?;
            tx.prepare_cached("DELETE FROM message_text WHERE rowid = ?1")?
                .execute(params![rowid])?;
        }
        Change::Edit {
            content,
            search_text,
        } => {
            tx.prepare_cached(
                "UPDATE messages SET content = ?3, state = state | ?4 \
                 WHERE conv_id = ?1 AND seq = ?2",
            )?
            .execute(params![conv, seq, content, crate::STATE_EDITED])?;
            tx.prepare_cached("DELETE FROM message_text WHERE rowid = ?1")?
                .execute(params![rowid])?;
            if !search_text.is_empty() {
                tx.prepare_cached("INSERT INTO message_text (rowid, text) VALUES (?1, ?2)")?
                    .execute(params![rowid, search_text])?;
            }
        }
        Change::React { emoji, add } => {
            let sql = if add {
                "INSERT INTO reactions (conv_id, seq, emoji, user_id) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM reactions WHERE conv_id = ?1 AND seq = ?2 AND emoji = ?3 \
                 AND user_id = ?4"
            };
            if tx
                .prepare_cached(sql)?
                .execute(params![conv, seq, emoji, a.by])?
                == 0
            {
                return amended(tx, conv, a.seq, None);
            }
            tx.prepare_cached(
                "UPDATE messages SET state = CASE WHEN EXISTS (SELECT 1 FROM reactions \
                 WHERE conv_id = ?1 AND seq = ?2) THEN state | ?3 ELSE state & ~?3 END \
                 WHERE conv_id = ?1 AND seq = ?2",
            )?
            .execute(params![conv, seq, crate::STATE_REACTIONS])?;
        }
    }
    let conv = a.conversation_id.clone();
    let seq = a.seq;
    let event = rules::amend::event(a, members.as_deref());
    let event = appended_event(append(tx, counters, event)?).map_err(reused)?;
    amended(tx, &conv, seq, Some(event))
}

/// The answer to an amend: the message as it now is, and the event if one was appended.
fn amended(
    tx: &Transaction<'_>,
    conversation_id: &str,
    seq: u64,
    event: Option<(StoredMessage, Vec<(String, u64)>)>,
) -> rusqlite::Result<WriteResult> {
    let message = tx
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conv_id = ?1 AND m.seq = ?2"
        ))?
        .query_row(params![conversation_id, seq as i64], |row| {
            message_from_row(row, 0)
        })?;
    Ok(WriteResult::Amended { message, event })
}

/// The newest seq above `after` of a message sent at or before `time` (or `after` if none);
/// `after`, without a read, for a time of 0 (none asked).
fn sent_by(
    tx: &Transaction<'_>,
    conversation_id: &str,
    after: u64,
    time: i64,
) -> rusqlite::Result<u64> {
    if time <= 0 {
        return Ok(after);
    }
    let upto: Option<i64> = tx
        .prepare_cached(
            "SELECT max(seq) FROM messages WHERE conv_id = ?1 AND seq > ?2 AND sent_time <= ?3",
        )?
        .query_row(params![conversation_id, after as i64, time], |row| {
            row.get(0)
        })?;
    Ok(upto.map_or(after, |s| s as u64))
}

/// Indexes the waiting texts in a transaction of their own.
fn flush_index(conn: &mut Connection, counters: &mut Counters) {
    let outcome = (|| -> rusqlite::Result<()> {
        let tx = crate::schema::write_transaction(conn)?;
        counters.index.flush(&tx)?;
        tx.commit()
    })();
    match outcome {
        Ok(()) => counters.index.committed(),
        Err(e) => {
            tracing::error!(error = %e, "search indexing failed; it is retried from the table");
            counters.index.failed();
        }
    }
}

/// The answer to an earlier append of `m`'s `(sender, client_msg_id)` if there is one, `refusal`
/// (with nothing written) if not.
fn existing_or(
    tx: &Transaction<'_>,
    m: &AppendMessage,
    refusal: WriteResult,
) -> rusqlite::Result<WriteResult> {
    if is_stored(tx, m)? {
        existing(tx, m)
    } else {
        Ok(refusal)
    }
}

/// Whether `m`'s `(sender, client_msg_id)` was stored before.
fn is_stored(tx: &Transaction<'_>, m: &AppendMessage) -> rusqlite::Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM messages WHERE sender = ?1 AND client_msg_id = ?2")?
        .query_row(params![m.sender, m.client_msg_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The answer to an append whose `(sender, client_msg_id)` exists: the stored message and its
/// inbox entries if the digest matches, a conflict otherwise.
fn existing(tx: &Transaction<'_>, m: &AppendMessage) -> rusqlite::Result<WriteResult> {
    let (rowid, digest, message) = tx
        .prepare_cached(&format!(
            "SELECT m.rowid, m.digest, {MESSAGE_COLUMNS} FROM messages m \
             WHERE m.sender = ?1 AND m.client_msg_id = ?2"
        ))?
        .query_row(params![m.sender, m.client_msg_id], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                message_from_row(row, 2)?,
            ))
        })?;
    if digest != m.digest {
        return Ok(WriteResult::ClientMsgIdConflict);
    }
    // Resends come soon after the original, so each recipient's entry is found by walking the
    // inbox back from its newest entry.
    let mut inbox = Vec::with_capacity(m.recipients.len());
    // A large fan-out's entries are staged, or merged into blocks.
    let staged = crate::pending::staged(tx, rowid)?;
    for user in &m.recipients {
        let Some(key) = crate::pending::user_key(tx, user)? else {
            continue;
        };
        let seq: Option<i64> = tx
            .prepare_cached(
                "SELECT seq FROM inbox WHERE user_key = ?1 AND msg = ?2 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row(params![key, rowid], |row| row.get(0))
            .optional()?;
        let seq = match seq.map(|s| s as u64) {
            Some(seq) => Some(seq),
            None => match staged.as_ref().and_then(|s| s.seq_of(key)) {
                Some(seq) => Some(seq),
                None => crate::pending::blocked_seq_of(tx, key, rowid)?,
            },
        };
        if let Some(seq) = seq {
            inbox.push((user.clone(), seq));
        }
    }
    Ok(WriteResult::Appended {
        message,
        inbox,
        duplicate: true,
        push_due: false,
    })
}
