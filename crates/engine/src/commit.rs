//! The committer: the one task that writes. It takes everything waiting in its queue, turns it
//! into one store batch (one transaction, one fsync), and after the commit, in commit order,
//! answers the senders and pushes each new message to the devices that should have it. Because
//! one task does both, every device sees pushes in commit order, and a sender's PUBACK is queued
//! before any later push to the same connection.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, UNIX_EPOCH};

use tidings_proto::{Code, conversation_type};
use tidings_store::{AppendMessage, Participant, StoreError, StoredMessage, WriteOp, WriteResult};
use tokio::sync::{mpsc, oneshot};

use crate::session::{SendRequest, SessionShared};
use crate::validate::Refusal;
use crate::{Delivered, Engine, Outbound, PubAckOut};

/// Requests waiting for the committer; senders wait (backpressure) when it is full.
pub const QUEUE_LEN: usize = 16 * 1024;
/// The most requests one commit takes.
const MAX_BATCH: usize = 4096;

/// A validated message waiting for its uid, time and seqs.
#[derive(Debug, Clone, Default)]
pub struct PendingPublish {
    pub conversation_type: u32,
    pub conversation_id: String,
    pub sender: String,
    pub target: String,
    pub msg_type: String,
    pub content: String,
    pub push_text: String,
    /// Data for the app carried by the message's notifications (kept after the commit is
    /// built, for the notifications).
    pub push_data: String,
    pub client_msg_id: String,
    pub digest: String,
    pub recipients: Vec<String>,
    pub counted: bool,
    pub participants: Vec<Participant>,
    pub blocking_recipient: Option<String>,
    pub search_text: String,
    /// Over the send limit: answer an earlier commit of the same message, store nothing new.
    pub only_if_stored: bool,
    /// A group message: the store adds the members to the recipients.
    pub to_group: bool,
    pub mentions: Vec<String>,
    pub mention_all: bool,
    pub audience: Vec<String>,
    /// An MLS message of an end-to-end encrypted conversation, stored only in its turn.
    pub mls: Option<tidings_store::MlsOrdering>,
}

/// A digest of everything the client chose for a message, to tell a resend from a reuse.
pub(crate) fn digest(send: &SendRequest) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        send.conversation_type.to_string().as_str(),
        &send.target_id,
        &send.msg_type,
        &send.content,
        &send.push_text,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    // Only when set, so digests stored before the flag existed still match their resends.
    if send.uncounted {
        h.update(b"uncounted");
    }
    if !send.push_data.is_empty() {
        h.update(b"push_data");
        h.update((send.push_data.len() as u64).to_le_bytes());
        h.update(send.push_data.as_bytes());
    }
    for (tag, users) in [(b"mentions", &send.mentions), (b"audience", &send.audience)] {
        if !users.is_empty() {
            h.update(tag);
            for u in users {
                h.update((u.len() as u64).to_le_bytes());
                h.update(u.as_bytes());
            }
        }
    }
    if send.mention_all {
        h.update(b"mention_all");
    }
    hex::encode(h.finalize())
}

/// Where the committer answers a write.
pub type CommitReply = oneshot::Sender<Result<Vec<WriteResult>, StoreError>>;

pub enum CommitRequest {
    Publish {
        session: Arc<SessionShared>,
        packet_id: u32,
        message: PendingPublish,
        /// Why the content stored is not what was sent (21502, 40025), for the PUBACK; 0 if it
        /// is.
        notice: u32,
        /// When the engine got the PUBLISH (for the latency metrics).
        received: std::time::Instant,
    },
    /// A message the app server sends on a user's behalf: answered with the append's result
    /// once committed and pushed (to every device of the participants).
    Post {
        message: PendingPublish,
        reply: oneshot::Sender<Result<WriteResult, StoreError>>,
    },
    Cursor(WriteOp),
    Write {
        ops: Vec<WriteOp>,
        reply: CommitReply,
    },
    /// Changes a user makes to their own state, each with a user event (a conversation update,
    /// or an append of conversation type 0). The committer gives each event its uid and time,
    /// and after the commit pushes each event to every device of the user.
    UserChange {
        ops: Vec<WriteOp>,
        reply: CommitReply,
    },
    /// Answered once everything queued before it is committed; the committer then exits.
    Stop {
        reply: oneshot::Sender<()>,
    },
}

/// Queues a write nobody waits for (a device's cursor as its session ends, a user's last-seen
/// time): at once when the committer has room, else from a task that waits for room, so a full
/// queue delays the write and never drops it. Only a committer that has stopped (the server is
/// stopping) loses it.
pub(crate) fn commit_later(commits: &mpsc::Sender<CommitRequest>, op: WriteOp) {
    match commits.try_send(CommitRequest::Cursor(op)) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(request)) => {
            let commits = commits.clone();
            tokio::spawn(async move {
                if commits.send(request).await.is_err() {
                    tracing::debug!("the committer stopped before a background write");
                }
            });
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            tracing::debug!("the committer has stopped: a background write is not made");
        }
    }
}

/// A store write's result, on its way.
type Writing<'a> = Pin<Box<dyn Future<Output = Result<Vec<WriteResult>, StoreError>> + Send + 'a>>;

/// A batch handed to the store, waiting for its commit.
struct InFlight<'a> {
    batch: Vec<CommitRequest>,
    /// For each request, the range of its ops in the write.
    spans: Vec<Range<usize>>,
    write: Writing<'a>,
}

/// A committed (or failed) batch on its way to the pusher.
struct Committed {
    batch: Vec<CommitRequest>,
    spans: Vec<Range<usize>>,
    outcome: Result<Vec<WriteResult>, StoreError>,
}

/// Committed batches waiting for the pusher; the committer waits when it is full.
const PUSHER_QUEUE: usize = 64;

/// The committer's loop. It pipelines twice: while the store commits one batch, the next is
/// already queued there; and a committed batch is answered and pushed by the pusher task
/// ([`push`]), so the next commits go on while a large fan-out is written. Batches are handed to
/// the store in order, and the pusher answers them in that order, so pushes keep the commit
/// order.
pub async fn run(engine: Engine, mut rx: mpsc::Receiver<CommitRequest>) {
    let mut uids = ulid::Generator::new();
    let (to_pusher, pushes) = mpsc::channel(PUSHER_QUEUE);
    let pusher = tokio::spawn(push(engine.clone(), pushes));
    let mut previous: Option<InFlight<'_>> = None;
    loop {
        // Wait for work only when nothing is in flight.
        let first = match &previous {
            Some(_) => rx.try_recv().ok(),
            None => match rx.recv().await {
                Some(r) => Some(r),
                None => break,
            },
        };
        let next = match first {
            Some(first) => {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                Some(start(&engine, &mut uids, batch).await)
            }
            None => None,
        };
        if let Some(done) = previous.take() {
            let stops = done
                .batch
                .iter()
                .any(|r| matches!(r, CommitRequest::Stop { .. }));
            finish(done, &to_pusher).await;
            if stops {
                // Refuse anything sent after the stop and commit what was; the pusher
                // answers the stop once it has answered everything before it.
                rx.close();
                if let Some(next) = next {
                    finish(next, &to_pusher).await;
                }
                let mut rest = Vec::new();
                while let Ok(r) = rx.try_recv() {
                    rest.push(r);
                }
                if !rest.is_empty() {
                    let rest = start(&engine, &mut uids, rest).await;
                    finish(rest, &to_pusher).await;
                }
                break;
            }
        }
        previous = next;
    }
    if let Some(done) = previous.take() {
        finish(done, &to_pusher).await;
    }
    drop(to_pusher);
    if let Err(e) = pusher.await {
        tracing::error!(error = %e, "the committer's pusher failed");
    }
}

/// The pusher's loop: answers committed batches and pushes what they stored, in commit order.
/// Batches committed while it was busy are answered together, their items for idle
/// connections gathered and written once per connection (see `outbox::gathered`). Stops are
/// answered once everything committed before them is.
async fn push(engine: Engine, mut rx: mpsc::Receiver<Committed>) {
    let mut stops = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut ready = vec![first];
        while let Ok(more) = rx.try_recv() {
            ready.push(more);
        }
        // With one answered request there is nothing to gather: its items are written as
        // they are made, the first ones without waiting for the rest. Devices' cursors
        // (acknowledgements) are answered by nothing.
        let answered = ready
            .iter()
            .flat_map(|c| &c.batch)
            .filter(|r| !matches!(r, CommitRequest::Cursor(_)))
            .count();
        let answer_all = || {
            for c in ready {
                stops.extend(answer(&engine, c.batch, c.spans, c.outcome));
            }
        };
        if answered > 1 {
            crate::outbox::gathered(answer_all);
        } else {
            answer_all();
        }
    }
    for stop in stops {
        let _ = stop.send(());
    }
}

/// Turns a batch into one store write and hands it to the store (polled once, which queues it
/// there: a later batch is queued after it).
async fn start<'a>(
    engine: &'a Engine,
    uids: &mut ulid::Generator,
    mut batch: Vec<CommitRequest>,
) -> InFlight<'a> {
    let (ops, spans) = prepare(engine, uids, &mut batch);
    let mut write: Writing<'a> = if ops.is_empty() {
        Box::pin(std::future::ready(Ok(Vec::new())))
    } else {
        engine.inner.store.write(ops)
    };
    let early = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
    if let Poll::Ready(result) = early {
        write = Box::pin(std::future::ready(result));
    }
    InFlight {
        batch,
        spans,
        write,
    }
}

/// The store ops of a batch (its payloads move into them), with each request's range of ops.
fn prepare(
    engine: &Engine,
    uids: &mut ulid::Generator,
    batch: &mut [CommitRequest],
) -> (Vec<WriteOp>, Vec<Range<usize>>) {
    let now = engine.now_ms();
    let mut ops = Vec::with_capacity(batch.len());
    // For each request, the range of its ops in `ops`.
    let mut spans = Vec::with_capacity(batch.len());
    // The batch's payloads move into the ops; only the reply handles (and whether a message is
    // counted) are used afterwards.
    for request in batch.iter_mut() {
        let start = ops.len();
        match request {
            CommitRequest::Publish { message, .. } | CommitRequest::Post { message, .. } => {
                let taken = std::mem::take(message);
                // Kept for the answer: whether the message makes notifications due, and what
                // they carry.
                message.counted = taken.counted;
                message.push_data = taken.push_data.clone();
                let message = taken;
                ops.push(WriteOp::Append(AppendMessage {
                    uid: next_uid(uids, now),
                    conversation_type: message.conversation_type,
                    conversation_id: message.conversation_id,
                    sender: message.sender,
                    target: message.target,
                    sent_time: now,
                    msg_type: message.msg_type,
                    content: message.content,
                    push_text: message.push_text,
                    push_data: message.push_data,
                    client_msg_id: message.client_msg_id,
                    digest: message.digest,
                    recipients: message.recipients,
                    counted: message.counted,
                    participants: message.participants,
                    blocking_recipient: message.blocking_recipient,
                    search_text: message.search_text,
                    only_if_stored: message.only_if_stored,
                    to_group: message.to_group,
                    mentions: message.mentions,
                    mention_all: message.mention_all,
                    audience: message.audience,
                    mls: message.mls,
                }));
            }
            CommitRequest::UserChange { ops: more, .. } => {
                for mut op in more.drain(..) {
                    let events: Vec<&mut AppendMessage> = match &mut op {
                        WriteOp::UpdateConversation(u) => std::iter::once(&mut u.event)
                            .chain(u.receipt.as_mut())
                            .collect(),
                        WriteOp::Amend(a) => vec![&mut a.event],
                        WriteOp::Group(g) => vec![&mut g.notification],
                        WriteOp::Append(m)
                            if m.conversation_type == conversation_type::USER_EVENT =>
                        {
                            vec![m]
                        }
                        _ => Vec::new(),
                    };
                    for e in events {
                        e.uid = next_uid(uids, now);
                        e.client_msg_id = e.uid.clone();
                        e.digest = e.uid.clone();
                        e.sent_time = now;
                    }
                    ops.push(op);
                }
            }
            CommitRequest::Cursor(op) => ops.push(op.clone()),
            CommitRequest::Write { ops: more, .. } => ops.append(more),
            CommitRequest::Stop { .. } => {}
        }
        spans.push(start..ops.len());
    }
    (ops, spans)
}

/// Waits for a batch's commit, then hands it to the pusher.
async fn finish(done: InFlight<'_>, pusher: &mpsc::Sender<Committed>) {
    let InFlight {
        batch,
        spans,
        write,
    } = done;
    let outcome = write.await;
    if pusher
        .send(Committed {
            batch,
            spans,
            outcome,
        })
        .await
        .is_err()
    {
        tracing::error!("the committer's pusher has stopped: a committed batch is not answered");
    }
}

/// Answers a committed (or failed) batch and pushes what it stored, in commit order. Returns
/// the reply of a stop request found in the batch.
fn answer(
    engine: &Engine,
    mut batch: Vec<CommitRequest>,
    spans: Vec<Range<usize>>,
    outcome: Result<Vec<WriteResult>, StoreError>,
) -> Option<oneshot::Sender<()>> {
    let mut stop = None;
    match outcome {
        Ok(results) => {
            let mut results = results.into_iter();
            for (request, span) in batch.drain(..).zip(spans) {
                let mut mine: Vec<WriteResult> = results.by_ref().take(span.len()).collect();
                match request {
                    CommitRequest::Publish {
                        session,
                        packet_id,
                        message,
                        notice,
                        received,
                    } => match mine.pop() {
                        Some(result) => answer_publish(
                            engine,
                            &session,
                            packet_id,
                            result,
                            (notice, &message),
                            received,
                        ),
                        None => session.reply(
                            engine,
                            Outbound::PubAck(PubAckOut::refused(packet_id, Code::ServerError)),
                        ),
                    },
                    CommitRequest::Post {
                        reply,
                        message: pending,
                    } => {
                        let result = mine.pop();
                        if let Some(WriteResult::Appended {
                            message,
                            inbox,
                            duplicate: false,
                            push_due,
                        }) = &result
                        {
                            if let Some(hooks) = &engine.inner.hooks {
                                hooks.sent(message);
                            }
                            crate::metrics::m().accepted(message.conversation_type);
                            let message = Arc::new(message.clone());
                            fan_out(engine, &message, inbox, None);
                            if *push_due {
                                engine.push_offline(&message, inbox, &pending);
                            }
                        }
                        let _ =
                            reply.send(result.ok_or_else(|| {
                                StoreError::Backend("no result for an append".into())
                            }));
                    }
                    CommitRequest::Cursor(_) => {}
                    CommitRequest::Write { reply, .. } => {
                        let _ = reply.send(Ok(mine));
                    }
                    CommitRequest::UserChange { reply, .. } => {
                        push_events(engine, &mine);
                        let _ = reply.send(Ok(mine));
                    }
                    CommitRequest::Stop { reply } => stop = Some(reply),
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, requests = batch.len(), "commit failed; nothing in the batch was stored");
            for request in batch.drain(..) {
                match request {
                    CommitRequest::Publish {
                        session, packet_id, ..
                    } => session.reply(
                        engine,
                        Outbound::PubAck(PubAckOut::refused(packet_id, crate::store_code(&e))),
                    ),
                    CommitRequest::Cursor(_) => {}
                    CommitRequest::Post { reply, .. } => {
                        let _ = reply.send(Err(e.again()));
                    }
                    CommitRequest::Write { reply, .. }
                    | CommitRequest::UserChange { reply, .. } => {
                        let _ = reply.send(Err(e.again()));
                    }
                    CommitRequest::Stop { reply } => stop = Some(reply),
                }
            }
        }
    }
    stop
}

/// A fresh ULID for a message committed at `now` (ms).
fn next_uid(uids: &mut ulid::Generator, now: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(now.max(0) as u64);
    // The generator only fails when 2^80 ids are made within one millisecond.
    uids.generate_from_datetime(time)
        .unwrap_or_else(|_| ulid::Ulid::new())
        .to_string()
}

/// Pushes each committed user event to every device of its user (for a change, the device that
/// made it included: all devices converge the same way; for a read receipt, the other user).
fn push_events(engine: &Engine, results: &[WriteResult]) {
    for r in results {
        let events: Vec<(&StoredMessage, u64)> = match r {
            WriteResult::ConversationUpdated {
                event,
                inbox_seq,
                receipt,
                ..
            } => std::iter::once((event, *inbox_seq))
                .chain(receipt.as_ref().map(|(m, seq)| (m, *seq)))
                .collect(),
            WriteResult::Appended {
                message,
                inbox,
                duplicate: false,
                ..
            } if message.conversation_type == conversation_type::USER_EVENT => inbox
                .first()
                .map(|(_, seq)| (message, *seq))
                .into_iter()
                .collect(),
            WriteResult::Amended {
                event: Some((message, inbox)),
                ..
            } => {
                // A recall's event withdraws the notification of what it recalled.
                let message = Arc::new(message.clone());
                fan_out(engine, &message, inbox, None);
                engine.push_offline(&message, inbox, &PendingPublish::default());
                continue;
            }
            WriteResult::GroupChanged {
                notification: Some((message, inbox)),
                ..
            } => {
                fan_out(engine, &Arc::new(message.clone()), inbox, None);
                continue;
            }
            _ => continue,
        };
        for (event, inbox_seq) in events {
            let view = Arc::new(Delivered::for_viewer(
                &event.target,
                Arc::new(event.clone()),
                inbox_seq,
            ));
            for session in engine.sessions_of(&event.target) {
                session.deliver(engine, view.clone());
            }
            engine.bus_publish(crate::cluster::BusEvent::Deliver {
                message: event.clone(),
                inbox: vec![(event.target.clone(), inbox_seq)],
                except_device: None,
            });
        }
    }
}

/// Pushes `message` to every connected device of the users of `inbox` (each with their inbox
/// seq), except the device `origin`. The registry is locked once for all of them, and nothing is
/// made for users who are offline.
fn fan_out(
    engine: &Engine,
    message: &Arc<StoredMessage>,
    inbox: &[(String, u64)],
    origin: Option<&SessionShared>,
) {
    let mut pushed = 0u32;
    for (i, session) in engine.sessions_of_each(inbox.iter().map(|(u, _)| u.as_str())) {
        if origin.is_some_and(|o| session.same_device(o)) {
            continue;
        }
        let (user, inbox_seq) = &inbox[i];
        let view = Arc::new(Delivered::for_viewer(user, message.clone(), *inbox_seq));
        session.deliver(engine, view);
        pushed += 1;
    }
    crate::metrics::m().fanout_sessions.record(pushed);
    // Devices on other nodes: the origin's device is on this one (a newer connection of it
    // elsewhere would have replaced this one).
    if engine.cluster().is_some() {
        engine.bus_publish(crate::cluster::BusEvent::Deliver {
            message: (**message).clone(),
            inbox: inbox.to_vec(),
            except_device: origin.filter(|o| !o.anonymous).map(|o| o.device.clone()),
        });
    }
}

fn answer_publish(
    engine: &Engine,
    origin: &Arc<SessionShared>,
    packet_id: u32,
    result: WriteResult,
    (notice, pending): (u32, &PendingPublish),
    received: std::time::Instant,
) {
    let metrics = crate::metrics::m();
    metrics
        .publish_to_puback
        .record(crate::metrics::Metrics::since(received));
    match result {
        WriteResult::Appended {
            message,
            inbox,
            duplicate,
            push_due,
        } => {
            let sender_inbox_seq = inbox
                .iter()
                .find(|(user, _)| *user == message.sender)
                .map(|(_, seq)| *seq)
                .unwrap_or(0);
            origin.reply(
                engine,
                Outbound::PubAck(PubAckOut {
                    packet_id,
                    code: 0,
                    text: String::new(),
                    uid: message.uid.clone(),
                    seq: message.seq,
                    sent_time: message.sent_time,
                    inbox_seq: sender_inbox_seq,
                    notice,
                    content: if notice != 0 {
                        message.content.clone()
                    } else {
                        String::new()
                    },
                }),
            );
            // The sending device has its own message: its PUBACK stands for the push.
            origin.own_entry(sender_inbox_seq, engine.inner.config.max_inflight);
            if duplicate {
                // The first commit pushed it already; devices that missed that push sync it.
                return;
            }
            if let Some(hooks) = &engine.inner.hooks {
                hooks.sent(&message);
            }
            metrics.accepted(message.conversation_type);
            // Not to the sending device, even on a newer connection of it.
            let message = Arc::new(message);
            fan_out(engine, &message, &inbox, Some(origin));
            metrics
                .publish_to_delivery
                .record(crate::metrics::Metrics::since(received));
            // Devices not connected get a notification (queued: nothing waits).
            if push_due {
                engine.push_offline(&message, &inbox, pending);
            }
        }
        WriteResult::ClientMsgIdConflict => origin.reply(
            engine,
            Outbound::PubAck(PubAckOut::refused(packet_id, Code::ClientMsgIdConflict)),
        ),
        WriteResult::NotStored => {
            let rate = engine.inner.config.send_rate;
            let refusal = Refusal::new(
                Code::SendTooFast,
                format!("at most {rate} messages a second"),
            );
            origin.reply(
                engine,
                Outbound::PubAck(PubAckOut::refused(packet_id, refusal)),
            )
        }
        WriteResult::Blocked => origin.reply(
            engine,
            Outbound::PubAck(PubAckOut::refused(packet_id, Code::RejectedByBlacklist)),
        ),
        WriteResult::GroupRefused(r) => origin.reply(
            engine,
            Outbound::PubAck(PubAckOut::refused(
                packet_id,
                crate::validate::group_refusal_code(r),
            )),
        ),
        WriteResult::EpochRefused(r) => origin.reply(
            engine,
            Outbound::PubAck(PubAckOut::refused(packet_id, crate::e2ee::epoch_refusal(r))),
        ),
        other => {
            tracing::error!(?other, "unexpected store result for an append");
            origin.reply(
                engine,
                Outbound::PubAck(PubAckOut::refused(packet_id, Code::ServerError)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_seen(time: i64) -> WriteOp {
        WriteOp::SetLastSeen {
            user: "u".into(),
            time,
        }
    }

    fn time_of(request: Option<CommitRequest>) -> i64 {
        match request {
            Some(CommitRequest::Cursor(WriteOp::SetLastSeen { time, .. })) => time,
            _ => panic!("a background write"),
        }
    }

    #[tokio::test]
    async fn a_background_write_waits_for_room_in_a_full_queue() {
        let (commits, mut queue) = mpsc::channel(1);
        commit_later(&commits, last_seen(1));
        // The queue is full now: the next one waits instead of being dropped.
        commit_later(&commits, last_seen(2));
        assert_eq!(time_of(queue.recv().await), 1);
        let second = tokio::time::timeout(Duration::from_secs(10), queue.recv()).await;
        assert_eq!(time_of(second.expect("the second write arrives")), 2);
    }
}
