//! Device sessions: authentication, the per-device delivery state (in-flight pushes, the
//! acknowledged cursor) and the kernel's requests of a connected device (acknowledge, confirm,
//! sync, resend, end). A feature that keeps something per session (a chatroom's membership)
//! attaches it as an [`Attachment`], which the session lets go of when it ends; what a device
//! sends (`publish.rs`) and asks of the features lives with them.
//!
//! Architecture invariant: this module imports no feature module, nor the committer or the bus
//! routing (they import it); it writes through the crate root's `Engine::write_later`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidings_proto::Code;
use tidings_store::WriteOp;
use tokio::time::Instant;

use crate::validate::{self, Refusal};
use crate::{Delivered, Engine, Outbound, Outbox, QueryAckOut, SYNC_PAGE_DEFAULT, SYNC_PAGE_MAX};

/// What a client presents to connect.
#[derive(Debug, Clone, Default)]
pub struct ConnectRequest {
    pub token: String,
    pub device_id: String,
    pub platform: String,
}

/// What the engine tells a client that connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    pub user_id: String,
    pub session_id: String,
    pub heartbeat_ms: u32,
    pub server_time: i64,
    pub cursor: u64,
    pub inbox_seq: u64,
}

/// A message a client asks to send.
#[derive(Debug, Clone, Default)]
pub struct SendRequest {
    pub client_msg_id: String,
    pub conversation_type: u32,
    pub target_id: String,
    pub msg_type: String,
    pub content: String,
    pub push_text: String,
    /// Data for the app carried by the message's push notifications.
    pub push_data: String,
    /// An app-defined type that does not raise unread counts. Built-in types are always counted.
    pub uncounted: bool,
    /// Group messages only: the members mentioned, and whether everyone is.
    pub mentions: Vec<String>,
    pub mention_all: bool,
    /// Group messages only: a directed message's addressees (empty: every member).
    pub audience: Vec<String>,
    /// Chatroom messages only: the priority as numbered on the wire (0 NORMAL, 1 LOW, 2 HIGH;
    /// HIGH from the app server only).
    pub priority: u32,
}

pub(crate) struct SessionShared {
    pub id: u64,
    pub user: String,
    pub device: String,
    /// Anonymous devices (no device id) have no stored cursor and never replace each other.
    pub anonymous: bool,
    pub outbox: Outbox,
    state: Mutex<DeliveryState>,
    /// The users whose presence this connection watches.
    pub watching: Mutex<Vec<String>>,
    /// What features attached to this connection (the chatrooms it is in), let go of as it
    /// ends.
    attached: Mutex<Vec<Arc<dyn Attachment>>>,
    /// The platform the device named in its CONNECT, and when it connected (ms): for the admin
    /// console's list of a user's devices.
    pub platform: String,
    pub connected_at: i64,
    /// The app reported it is in the background (`setAppState`): its device gets push
    /// notifications as if it were not connected.
    background: std::sync::atomic::AtomicBool,
    /// Set once the connection's [`Session`] is dropped: its reader and writer are done, so its
    /// device acknowledges nothing more.
    released: tokio::sync::watch::Sender<bool>,
}

/// Something a feature keeps for a session while it lasts (a chatroom's membership). The
/// session holds it without knowing what it is, and lets go of it once, as the session ends:
/// an end hook, so the kernel names no feature.
pub(crate) trait Attachment: std::any::Any + Send + Sync {
    /// The session ended: undo what attaching did. Called once, outside the session's locks.
    fn detach(&self, engine: &Engine, session: &SessionShared);
    /// For the feature that attached it, to tell its own among a session's attachments.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// Status messages (typing) a user may send per second, and at once.
pub const STATUS_RATE: std::num::NonZeroU32 = std::num::NonZeroU32::new(10).unwrap();
pub const STATUS_BURST: std::num::NonZeroU32 = std::num::NonZeroU32::new(20).unwrap();

struct DeliveryState {
    /// Pushed, not yet acknowledged: inbox seq -> (last sent, message).
    inflight: BTreeMap<u64, (Instant, Arc<Delivered>)>,
    /// Every inbox entry up to here is acknowledged by this device.
    cursor: u64,
    /// Acknowledged entries above `cursor + 1`, waiting for the gap below them to close.
    acked_ahead: BTreeSet<u64>,
    /// The cursor last written to the store.
    stored_cursor: u64,
    /// The highest inbox seq this session knows exists; acknowledgements above it are ignored.
    max_known: u64,
    ended: bool,
}

impl SessionShared {
    /// Whether the app reported it is in the background.
    pub fn in_background(&self) -> bool {
        self.background.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_background(&self, background: bool) {
        self.background
            .store(background, std::sync::atomic::Ordering::Relaxed);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, DeliveryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What features attached to this connection. Locked after a feature's own locks (a
    /// room's state), never before. Once the session is ended ([`SessionShared::is_ended`],
    /// set before the list is drained), nothing may be attached: a feature checks it under
    /// this lock, so what it attaches is either refused or let go of by the end.
    pub(crate) fn attached(&self) -> std::sync::MutexGuard<'_, Vec<Arc<dyn Attachment>>> {
        self.attached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pushes a committed message to this device. Called by the committer in commit order.
    pub(crate) fn deliver(&self, engine: &Engine, message: Arc<Delivered>) {
        let overflow = {
            let mut st = self.state();
            if st.ended || message.inbox_seq() <= st.cursor {
                return;
            }
            st.max_known = st.max_known.max(message.inbox_seq());
            st.inflight
                .insert(message.inbox_seq(), (Instant::now(), message.clone()));
            st.inflight.len() > engine.inner.config.max_inflight
        };
        if overflow {
            tracing::info!(session = self.id, user = %self.user, "too many unacknowledged pushes");
            self.end(engine, Code::SlowConsumer);
            return;
        }
        if self
            .outbox
            .push(Outbound::Deliver {
                message,
                dup: false,
            })
            .is_err()
        {
            self.end(engine, Code::SlowConsumer);
            return;
        }
        crate::metrics::m().deliveries.increment(1);
    }

    /// The highest inbox seq this session knows exists.
    pub(crate) fn max_known(&self) -> u64 {
        self.state().max_known
    }

    /// Whether `other` is this device: the same session, or another connection of the same
    /// (non-anonymous) device.
    pub(crate) fn same_device(&self, other: &SessionShared) -> bool {
        self.id == other.id
            || (!self.anonymous && self.user == other.user && self.device == other.device)
    }

    /// Queues a reply; a full outbox ends the session as a slow consumer.
    pub(crate) fn reply(&self, engine: &Engine, item: Outbound) {
        if self.outbox.push(item).is_err() {
            self.end(engine, Code::SlowConsumer);
        }
    }

    /// Records that the sending device holds its own message at `inbox_seq` (from the commit,
    /// so trusted).
    pub(crate) fn own_entry(&self, inbox_seq: u64, max_ahead: usize) {
        {
            let mut st = self.state();
            st.max_known = st.max_known.max(inbox_seq);
        }
        self.acknowledge(inbox_seq, max_ahead);
    }

    /// Records that the device has the entry at `inbox_seq`. Positions this session has never
    /// seen exist are ignored: a client cannot move its cursor past what it was given.
    pub(crate) fn acknowledge(&self, inbox_seq: u64, max_ahead: usize) {
        let mut st = self.state();
        if inbox_seq > st.max_known {
            return;
        }
        st.inflight.remove(&inbox_seq);
        if inbox_seq == st.cursor + 1 {
            st.cursor = inbox_seq;
        } else if inbox_seq > st.cursor && st.acked_ahead.len() < max_ahead {
            st.acked_ahead.insert(inbox_seq);
        }
        st.advance();
    }

    fn confirm(&self, inbox_seq: u64) {
        let mut st = self.state();
        let inbox_seq = inbox_seq.min(st.max_known);
        if inbox_seq > st.cursor {
            st.cursor = inbox_seq;
        }
        let cursor = st.cursor;
        st.forget_confirmed(cursor);
        st.advance();
    }

    /// The store write that records this device's cursor, if it moved since the last one.
    pub(crate) fn cursor_op(&self) -> Option<WriteOp> {
        let mut st = self.state();
        if self.anonymous || st.cursor <= st.stored_cursor {
            return None;
        }
        st.stored_cursor = st.cursor;
        Some(WriteOp::SetCursor {
            user: self.user.clone(),
            device: self.device.clone(),
            cursor: st.cursor,
        })
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.state().ended
    }

    /// Ends the session: queues a DISCONNECT with `code` and removes it from routing. Idempotent.
    pub(crate) fn end(&self, engine: &Engine, code: Code) {
        {
            let mut st = self.state();
            if st.ended {
                return;
            }
            st.ended = true;
        }
        crate::metrics::disconnected(code);
        self.outbox.close(code);
        engine.unregister(self);
        // Taken out of the lock first: letting go of an attachment takes the feature's locks,
        // which come before this list's.
        let attached: Vec<Arc<dyn Attachment>> = self.attached().drain(..).collect();
        for a in attached {
            a.detach(engine, self);
        }
        if let Some(op) = self.cursor_op() {
            // If the committer has stopped, the update is lost, which only means the device
            // re-syncs a few entries.
            engine.write_later(op);
        }
        tracing::debug!(session = self.id, user = %self.user, code = code.as_u32(), "session ended");
    }
}

impl DeliveryState {
    /// Drops the in-flight entries up to `cursor`: oldest first, so this visits only those, not
    /// the whole window.
    fn forget_confirmed(&mut self, cursor: u64) {
        while self
            .inflight
            .first_key_value()
            .is_some_and(|(seq, _)| *seq <= cursor)
        {
            self.inflight.pop_first();
        }
    }

    /// Moves the cursor over the acknowledged entries right above it, and forgets those the
    /// cursor has passed. Lowest first, so this visits only those, not every entry ahead.
    fn advance(&mut self) {
        while let Some(&seq) = self.acked_ahead.first() {
            if seq > self.cursor + 1 {
                break;
            }
            self.acked_ahead.pop_first();
            self.cursor = self.cursor.max(seq);
        }
    }
}

/// One authenticated device connection. Dropping it ends the session.
pub struct Session {
    pub(crate) shared: Arc<SessionShared>,
    pub(crate) engine: Engine,
}

impl Engine {
    /// Authenticates a device and registers its session for delivery.
    pub async fn connect(&self, req: ConnectRequest) -> Result<(Session, ConnectInfo), Refusal> {
        let outcome = self.open_session(req).await;
        match &outcome {
            Ok(_) => crate::metrics::m().connects.increment(1),
            Err(refusal) => crate::metrics::connect_refused(refusal.code),
        }
        outcome
    }

    async fn open_session(&self, req: ConnectRequest) -> Result<(Session, ConnectInfo), Refusal> {
        // Checked again under the registry lock when registering; this spares the store reads.
        if !self.registry().accepting {
            return Err(Code::ServerShutdown.into());
        }
        let anonymous = req.device_id.is_empty();
        if !anonymous && !validate::is_user_id(&req.device_id) {
            return Err(Refusal::new(
                Code::InvalidDeviceId,
                "a device id is 1-64 of A-Z a-z 0-9 _ - . @",
            ));
        }
        let now = self.now_ms();
        let claims = crate::auth::verify(&self.inner.config.credentials, &req.token, now / 1000)?;
        let id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        let device = if anonymous {
            format!("anon-{id}")
        } else {
            req.device_id
        };
        let shared = Arc::new(SessionShared {
            id,
            user: claims.sub.clone(),
            device,
            anonymous,
            outbox: Outbox::new(self.inner.config.outbound_queue_bytes),
            state: Mutex::new(DeliveryState {
                inflight: BTreeMap::new(),
                cursor: 0,
                acked_ahead: BTreeSet::new(),
                stored_cursor: 0,
                max_known: 0,
                ended: false,
            }),
            watching: Mutex::new(Vec::new()),
            attached: Mutex::new(Vec::new()),
            platform: req.platform.clone(),
            connected_at: now,
            released: tokio::sync::watch::channel(false).0,
            background: std::sync::atomic::AtomicBool::new(false),
        });
        // Register before reading the user's state: an entry committed before the read is in
        // the inbox up to the read's inbox seq, and one committed after it is pushed here. So
        // this session knows of every entry up to `max_known`, and a sync from there needs no
        // store read. The sessions this one replaces are kicked only once it is accepted.
        let replaced = self.register(shared.clone(), claims.ver)?.replaced;
        // Likewise across nodes: events for the user reach this node from here on.
        self.cluster_connected(&shared).await;
        let device = (!anonymous).then_some(shared.device.as_str());
        let state = match self.inner.store.session_state(&claims.sub, device).await {
            Ok(state) => state,
            Err(e) => {
                tracing::error!(error = %e, "store read failed during connect");
                let code = crate::store_code(&e);
                shared.end(self, code);
                return Err(code.into());
            }
        };
        if let Err(code) = token_current(&claims, &state.user) {
            shared.end(self, code);
            return Err(code.into());
        }
        let stored = state.cursor;
        let cursor = if replaced.is_empty() {
            stored
        } else {
            stored.max(self.take_over(&replaced, &shared.device).await)
        };
        {
            let mut st = shared.state();
            st.cursor = st.cursor.max(cursor);
            st.stored_cursor = stored;
            st.max_known = st.max_known.max(cursor).max(state.user.inbox_seq);
            st.forget_confirmed(cursor);
            st.advance();
        }
        // Pushed here before the cursor was known, and since acknowledged by the replaced
        // connection.
        shared.outbox.forget_deliveries_through(cursor);
        tracing::debug!(session = id, user = %claims.sub, device = %shared.device, platform = %req.platform, "session started");
        let info = ConnectInfo {
            user_id: claims.sub,
            session_id: id.to_string(),
            heartbeat_ms: self.inner.config.heartbeat.as_millis() as u32,
            server_time: now,
            cursor,
            inbox_seq: state.user.inbox_seq,
        };
        Ok((
            Session {
                shared,
                engine: self.clone(),
            },
            info,
        ))
    }

    /// Checks a token exactly as [`Engine::connect`] does (signature, app, expiry, revocation,
    /// ban) without connecting, for requests that carry one (`Authorization: Bearer`). Returns
    /// the user id.
    pub async fn authenticate(&self, token: &str) -> Result<String, Refusal> {
        let claims =
            crate::auth::verify(&self.inner.config.credentials, token, self.now_ms() / 1000)?;
        self.registry().token_refusal(&claims.sub, claims.ver)?;
        let state = self
            .inner
            .store
            .user_state(&claims.sub)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "store read failed while checking a token");
                Refusal::from(crate::store_code(&e))
            })?;
        token_current(&claims, &state)?;
        Ok(claims.sub)
    }
}

/// Refuses a token if the store's state of its user revokes it (a newer version, or another
/// origin) or bans the user.
fn token_current(
    claims: &crate::auth::Claims,
    state: &tidings_store::UserState,
) -> Result<(), Code> {
    if claims.ver != state.token_version {
        return Err(Code::TokenRevoked);
    }
    // A token opens only a user of its own origin: the app server's never opens a
    // self-registered account (one minted before the id was registered included), an
    // account's never opens one of the app server's users. Either is refused as revoked: it
    // was good for the id once, or for no user this server keeps.
    if claims.acct != state.account {
        return Err(Code::TokenRevoked);
    }
    if state.banned {
        return Err(Code::UserBanned);
    }
    Ok(())
}

impl Session {
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    pub fn user_id(&self) -> &str {
        &self.shared.user
    }

    /// The device id the connection named; empty for an anonymous device.
    pub fn device_id(&self) -> &str {
        if self.shared.anonymous {
            ""
        } else {
            &self.shared.device
        }
    }

    /// The queue the gateway drains to the socket.
    pub fn outbox(&self) -> &Outbox {
        &self.shared.outbox
    }

    /// The device acknowledges the pushed entry at `inbox_seq`.
    pub fn ack(&self, inbox_seq: u64) {
        let watched = self.engine.inner.receipts.any().then(|| {
            let st = self.shared.state();
            st.inflight.get(&inbox_seq).map(|(_, m)| m.clone())
        });
        self.shared
            .acknowledge(inbox_seq, self.engine.inner.config.max_inflight);
        if let Some(Some(m)) = watched {
            self.engine.inner.receipts.received(&m, &self.shared.user);
        }
    }

    /// The device confirms it holds every entry up to `inbox_seq` (after a sync page).
    pub fn confirm(&self, inbox_seq: u64) {
        let watched: Vec<Arc<Delivered>> = if self.engine.inner.receipts.any() {
            let st = self.shared.state();
            st.inflight
                .range(..=inbox_seq)
                .map(|(_, (_, m))| m.clone())
                .collect()
        } else {
            Vec::new()
        };
        self.shared.confirm(inbox_seq);
        for m in watched {
            self.engine.inner.receipts.received(&m, &self.shared.user);
        }
    }

    /// Answers a sync query: inbox entries after `after`. The QUERYACK arrives through the outbox.
    pub async fn sync(&self, query_id: u32, after: u64, limit: u32) {
        let reply = |out: QueryAckOut| {
            if out.code == 0 {
                crate::metrics::m().sync_pages.increment(1);
            }
            self.shared
                .reply(&self.engine, Outbound::QueryAck(Box::new(out)))
        };
        if limit > SYNC_PAGE_MAX {
            let r = Refusal::new(
                Code::InvalidQuery,
                format!("limit must be at most {SYNC_PAGE_MAX}"),
            );
            return reply(QueryAckOut::refused(query_id, r));
        }
        let limit = if limit == 0 { SYNC_PAGE_DEFAULT } else { limit } as usize;
        // Nothing beyond what this session knows of exists without being pushed here (see
        // `connect`), so a sync from there is answered without reading the store.
        if after >= self.shared.state().max_known {
            return reply(QueryAckOut {
                query_id,
                ..Default::default()
            });
        }
        match self
            .engine
            .inner
            .store
            .inbox_after(&self.shared.user, after, limit + 1)
            .await
        {
            Ok(mut entries) => {
                let mut has_more = entries.len() > limit;
                entries.truncate(limit);
                // Keep a page well inside the outbound queue: at least one message, then stop
                // before the byte budget.
                let budget = self.page_budget();
                let mut bytes = 0;
                let mut messages = Vec::with_capacity(entries.len());
                for e in entries {
                    let m =
                        Delivered::for_viewer(&self.shared.user, Arc::new(e.message), e.inbox_seq);
                    bytes += m.approx_bytes();
                    if !messages.is_empty() && bytes > budget {
                        has_more = true;
                        break;
                    }
                    messages.push(m);
                }
                if let Some(last) = messages.last() {
                    let mut st = self.shared.state();
                    st.max_known = st.max_known.max(last.inbox_seq());
                }
                reply(QueryAckOut {
                    query_id,
                    messages,
                    has_more,
                    ..Default::default()
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "sync read failed");
                reply(QueryAckOut::refused(query_id, Code::ServerError));
            }
        }
    }

    /// The most bytes of messages one QUERYACK or one resend pass may queue: a quarter of the
    /// outbound queue, so replies never overflow it by themselves.
    pub(crate) fn page_budget(&self) -> usize {
        self.engine.inner.config.outbound_queue_bytes / 4
    }

    /// Answers a QUERY the engine cannot read.
    pub fn reject_query(&self, query_id: u32, detail: &str) {
        let r = Refusal::new(Code::InvalidQuery, detail);
        self.shared.reply(
            &self.engine,
            Outbound::QueryAck(Box::new(QueryAckOut::refused(query_id, r))),
        );
    }

    /// Answers a second CONNECT on this connection; the session carries on.
    pub fn already_connected(&self) {
        self.shared.reply(
            &self.engine,
            Outbound::ConnAck {
                code: Code::AlreadyConnected.as_u32(),
                text: Code::AlreadyConnected.text().into(),
            },
        );
    }

    /// Answers a heartbeat.
    pub fn pong(&self) {
        self.shared.reply(&self.engine, Outbound::Pong);
    }

    /// Resends pushes unacknowledged for longer than the ack timeout (with the dup flag), and
    /// stores the device cursor if it moved. The gateway calls this periodically.
    pub fn resend_due(&self) {
        let timeout = self.engine.inner.config.ack_timeout;
        let budget = self.page_budget();
        let now = Instant::now();
        let due: Vec<Arc<Delivered>> = {
            let mut st = self.shared.state();
            if st.ended {
                return;
            }
            // Oldest first, and no more than the budget per pass: the rest go next tick.
            let mut bytes = 0;
            let mut due = Vec::new();
            for (sent, m) in st.inflight.values_mut() {
                if now.duration_since(*sent) < timeout {
                    continue;
                }
                bytes += m.approx_bytes();
                if !due.is_empty() && bytes > budget {
                    break;
                }
                *sent = now;
                due.push(m.clone());
            }
            due
        };
        if !due.is_empty() {
            crate::metrics::m().resends.increment(due.len() as u64);
        }
        for message in due {
            if self
                .shared
                .outbox
                .push(Outbound::Deliver { message, dup: true })
                .is_err()
            {
                self.shared.end(&self.engine, Code::SlowConsumer);
                return;
            }
        }
        if let Some(op) = self.shared.cursor_op() {
            // If the committer is full, the cursor is stored at a later tick or at the end.
            if !self.engine.try_write_soon(op) {
                self.shared.state().stored_cursor = 0;
            }
        }
    }

    /// Ends the session with `code` (a DISCONNECT is queued unless one already was).
    pub fn end(&self, code: Code) {
        self.shared.end(&self.engine, code);
    }

    /// The number of pushes awaiting acknowledgement.
    pub fn inflight(&self) -> usize {
        self.shared.state().inflight.len()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.end(&self.engine, Code::ClientDisconnect);
        self.shared.released.send_replace(true);
    }
}

/// How long a connection that replaces a device's earlier ones waits for them to finish.
pub const REPLACED_WAIT: Duration = Duration::from_secs(1);

impl Engine {
    /// Ends the connections a new one replaces; of those of the same `device`, waits (at most
    /// [`REPLACED_WAIT`]) for them to finish writing, and returns the furthest position they
    /// acknowledged. The store's cursor can be behind it: a cursor is stored now and then, and a
    /// dialect without acknowledgements (seed 003) counts a message written to the socket as
    /// delivered, so the new connection must start after what the old ones showed.
    async fn take_over(&self, replaced: &[Arc<SessionShared>], device: &str) -> u64 {
        for old in replaced {
            old.end(self, Code::Kicked);
        }
        let deadline = tokio::time::Instant::now() + REPLACED_WAIT;
        let mut cursor = 0;
        for old in replaced.iter().filter(|old| old.device == device) {
            let mut released = old.released.subscribe();
            if tokio::time::timeout_at(deadline, released.wait_for(|r| *r))
                .await
                .is_err()
            {
                tracing::debug!(session = old.id, "a replaced connection is still writing");
            }
            cursor = cursor.max(old.state().cursor);
        }
        cursor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(cursor: u64, max_known: u64) -> DeliveryState {
        DeliveryState {
            inflight: BTreeMap::new(),
            cursor,
            acked_ahead: BTreeSet::new(),
            stored_cursor: cursor,
            max_known,
            ended: false,
        }
    }

    /// Acknowledgements past a gap wait; the one that closes the gap moves the cursor over all
    /// of them, and no further than the next gap.
    #[test]
    fn acknowledgements_ahead_of_a_gap_move_the_cursor_once_it_closes() {
        let mut st = state(10, 100);
        for seq in [12, 13, 15] {
            st.acked_ahead.insert(seq);
            st.advance();
            assert_eq!(st.cursor, 10, "entry 11 is still missing");
        }
        st.cursor = 11;
        st.advance();
        assert_eq!(st.cursor, 13, "12 and 13 follow 11; 14 is missing");
        assert_eq!(st.acked_ahead.iter().copied().collect::<Vec<_>>(), [15]);
    }

    /// A cumulative confirmation that passes acknowledged entries forgets them, and continues
    /// over those right above it.
    #[test]
    fn a_cursor_moved_past_entries_acknowledged_ahead_forgets_them() {
        let mut st = state(10, 100);
        st.acked_ahead.extend([12, 14, 21, 23]);
        st.cursor = 20;
        st.advance();
        assert_eq!(st.cursor, 21);
        assert_eq!(st.acked_ahead.iter().copied().collect::<Vec<_>>(), [23]);
    }

    /// Confirmed entries leave the in-flight window; those above the cursor stay.
    #[test]
    fn confirmed_entries_leave_the_in_flight_window() {
        let mut st = state(0, 100);
        let message = Arc::new(tidings_store::StoredMessage::default());
        let delivered = |seq| Arc::new(Delivered::for_viewer("u", message.clone(), seq));
        for seq in 1..=5 {
            st.inflight.insert(seq, (Instant::now(), delivered(seq)));
        }
        st.forget_confirmed(3);
        assert_eq!(st.inflight.keys().copied().collect::<Vec<_>>(), [4, 5]);
    }
}
