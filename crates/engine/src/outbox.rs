//! A connection's outbound queue: bounded in bytes, single consumer, and enqueueing never waits.
//! When a push would exceed the bound, the queue is emptied, a DISCONNECT with the slow-consumer
//! code takes its place, and the queue refuses everything after: the fan-out never blocks on a
//! slow socket, and the slow device later recovers what it missed from its inbox by sync.
//!
//! Chatroom messages are online-only, so they are not worth a disconnect: a LOW one is dropped
//! once the connection is [`LOW_LAG`] behind (its oldest waiting room item is that old) or the
//! queue holds a quarter of its bound, a NORMAL one at [`NORMAL_LAG`] or half the bound (so a
//! busy room never crowds out the connection's inbox deliveries), and a HIGH one counts like an
//! inbox delivery. Each drop is remembered per room, and the connection gets a gap marker
//! (`tidings:gap`: how many of the room's messages in which seq range it missed) before the
//! room's next message that fits, or once the queue drains: never a silent loss.
//!
//! A transport may give the queue a [`DirectWriter`]: then a room's items for a connection whose
//! writer is idle with nothing queued are written to its socket by the room's fan-out at once,
//! instead of queued and the writer woken for them (which, for a room of thousands, is a
//! wake-up of thousands of tasks per round), and so are other small items (a PUBACK, a
//! delivery) by whoever pushes them. The committer gathers the small items of a batch's answers
//! per connection and writes each connection's in one write at the end ([`gathered`]).
//! Anything queued, or a writer at work, sends them through the queue as before, so every item
//! keeps its place after what was queued earlier.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tidings_proto::{Code, GAP_EVENT_TYPE, conversation_type};
use tidings_store::StoredMessage;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::stream::{Priority, RoomItem, RoundWire};
use crate::{Delivered, Outbound};

/// How far behind a connection may be before the rooms' LOW items, and then their NORMAL
/// items, are dropped for it.
pub const LOW_LAG: Duration = Duration::from_secs(1);
pub const NORMAL_LAG: Duration = Duration::from_secs(4);

pub struct Outbox {
    shared: Arc<Shared>,
}

/// The outbox itself, shared with the committer's list of outboxes it gathered items in (see
/// [`gathered`]).
pub struct Shared {
    inner: Mutex<Inner>,
    notify: Notify,
    capacity_bytes: usize,
    direct_writer: OnceLock<Box<dyn DirectWriter>>,
}

impl std::ops::Deref for Outbox {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// Writes a connection's items to its socket without waiting (see the module's notes).
pub trait DirectWriter: Send + Sync {
    /// Writes `items` (of one room, in seq order) to the socket now if nothing is in the way:
    /// true if the connection took them all (the rest of what the socket did not take at once
    /// its writer finishes, before anything else), false if it took none. With `whole`, the
    /// items are all of a fan-out round's, and `whole` caches them as written for every member
    /// that gets all of them.
    fn write_room(
        &self,
        items: &mut dyn Iterator<Item = &Arc<RoomItem>>,
        whole: Option<&RoundWire>,
    ) -> bool;

    /// Writes one item to the socket now if nothing is in the way: true if the connection
    /// took it, false if it took none of it.
    fn write_item(&self, _item: &Outbound) -> bool {
        false
    }

    /// Writes `items` (in order) to the socket now, in one write, if nothing is in the way:
    /// true if the connection took them all, false if it took none of them.
    fn write_items(&self, _items: &mut dyn Iterator<Item = &Outbound>) -> bool {
        false
    }
}

struct Inner {
    queue: VecDeque<(Outbound, usize)>,
    bytes: usize,
    /// Set once a DISCONNECT is queued; nothing is queued after it.
    closed: bool,
    /// Chatroom messages dropped for this connection and not yet reported, per room.
    gaps: Vec<Gap>,
    /// When each queued room item was posted, in queue order.
    room_times: VecDeque<Instant>,
    /// The consumer has written everything it took and waits for more: a room's items may be
    /// written around the queue while it is empty.
    idle: bool,
    /// What is queued was gathered for one write at the end of the committer's answers, and
    /// the consumer has not been woken for it (see [`gathered`]).
    gathered: bool,
}

impl Inner {
    /// The consumer waits with nothing queued and no gap to report: an item written around
    /// the queue now overtakes nothing.
    fn writer_waits(&self) -> bool {
        self.idle && self.queue.is_empty() && self.gaps.is_empty()
    }

    /// An item pushed now may be gathered for the end of the committer's answers: the
    /// consumer waits, and nothing is queued but what was gathered.
    fn may_gather(&self) -> bool {
        self.idle && self.gaps.is_empty() && (self.queue.is_empty() || self.gathered)
    }

    fn pop(&mut self) -> Option<Outbound> {
        let (item, size) = self.queue.pop_front()?;
        self.bytes -= size;
        if matches!(item, Outbound::Room(_)) {
            self.room_times.pop_front();
        }
        Some(item)
    }
}

/// Messages of one room dropped for one connection: `count` of them, with seqs from `from` to
/// `to` (others in that range may have been delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub room: Arc<str>,
    pub count: u64,
    pub from: u64,
    pub to: u64,
}

impl Gap {
    fn add(&mut self, count: u64, from: u64, to: u64) {
        self.count += count;
        self.from = self.from.min(from);
        self.to = self.to.max(to);
    }

    /// The marker that reports the gap: a status message of the room.
    fn marker(&self) -> Outbound {
        crate::metrics::m().gap_markers.increment(1);
        let content = serde_json::json!({
            "count": self.count,
            "fromSeq": self.from,
            "toSeq": self.to,
        })
        .to_string();
        let message = StoredMessage {
            uid: ulid::Ulid::new().to_string(),
            conversation_type: conversation_type::CHATROOM,
            conversation_id: format!("{}:{}", conversation_type::CHATROOM, self.room),
            target: self.room.to_string(),
            msg_type: GAP_EVENT_TYPE.into(),
            content,
            ..Default::default()
        };
        Outbound::Status(Arc::new(Delivered::for_viewer("", Arc::new(message), 0)))
    }
}

thread_local! {
    /// While the committer answers a batch: the outboxes it gathered items in (see
    /// [`gathered`]); `None` otherwise.
    static GATHERED: std::cell::RefCell<Option<Vec<Arc<Shared>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with the small items it pushes to idle connections (a PUBACK, a delivery) gathered
/// per connection, then writes each connection's gathered items to its socket in one write:
/// a connection that gets several items of a batch (several messages of a group, a PUBACK and
/// the deliveries after it) gets them in one system call, and nobody's writer task is woken for
/// them. A connection whose socket does not take them gets them through its writer, in the same
/// order. `f` must not await (the gathering is the thread's).
pub(crate) fn gathered<R>(f: impl FnOnce() -> R) -> R {
    /// Writes what was gathered even if `f` unwinds, so that no item waits for a wake-up.
    struct Flush(Option<Vec<Arc<Shared>>>);
    impl Drop for Flush {
        fn drop(&mut self) {
            let outer = self.0.take();
            if let Some(outboxes) = GATHERED.with(|g| g.replace(outer)) {
                for outbox in outboxes {
                    outbox.flush_gathered();
                }
            }
        }
    }
    let outer = GATHERED.with(|g| g.replace(Some(Vec::new())));
    let _flush = Flush(outer);
    f()
}

/// Whether the committer is gathering items on this thread.
fn gathering() -> bool {
    GATHERED.with(|g| g.borrow().is_some())
}

/// The item was not queued because the outbox is closed.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

impl Outbox {
    pub fn new(capacity_bytes: usize) -> Outbox {
        Outbox {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    queue: VecDeque::new(),
                    bytes: 0,
                    closed: false,
                    gaps: Vec::new(),
                    room_times: VecDeque::new(),
                    idle: false,
                    gathered: false,
                }),
                notify: Notify::new(),
                capacity_bytes,
                direct_writer: OnceLock::new(),
            }),
        }
    }

    /// Lets rooms and pushers write to the connection's socket directly while its writer is
    /// idle. Set once, by the transport, after what the session's opening wrote.
    pub fn set_direct_writer(&self, writer: Box<dyn DirectWriter>) {
        if self.direct_writer.set(writer).is_err() {
            tracing::error!("a connection's room writer was set twice");
        }
    }

    /// Queues `item`. On overflow the queue is replaced by a slow-consumer DISCONNECT and
    /// `Err(Closed)` is returned; the caller must treat the session as gone.
    pub fn push(&self, item: Outbound) -> Result<(), Closed> {
        let size = item.approx_bytes();
        let mut inner = self.lock();
        if inner.closed {
            return Err(Closed);
        }
        let direct = item.is_small() && self.direct_writer.get().is_some();
        if direct && gathering() && inner.may_gather() {
            if inner.bytes + size > self.capacity_bytes {
                self.overflow(inner);
                return Err(Closed);
            }
            inner.bytes += size;
            inner.queue.push_back((item, size));
            if !inner.gathered {
                inner.gathered = true;
                GATHERED.with(|g| {
                    if let Some(list) = g.borrow_mut().as_mut() {
                        list.push(self.shared.clone());
                    }
                });
            }
            return Ok(());
        }
        if direct
            && inner.writer_waits()
            && let Some(writer) = self.direct_writer.get()
            && writer.write_item(&item)
        {
            crate::metrics::m().outbound_direct.increment(1);
            return Ok(());
        }
        if inner.bytes + size > self.capacity_bytes {
            self.overflow(inner);
            return Err(Closed);
        }
        inner.bytes += size;
        inner.queue.push_back((item, size));
        drop(inner);
        self.notify.notify_one();
        Ok(())
    }

    /// Replaces the queue with a slow-consumer DISCONNECT.
    fn overflow(&self, mut inner: std::sync::MutexGuard<'_, Inner>) {
        crate::metrics::m().outbound_overflows.increment(1);
        inner.queue.clear();
        inner.gaps.clear();
        inner.room_times.clear();
        inner.bytes = 0;
        inner.closed = true;
        inner
            .queue
            .push_back((Outbound::Disconnect(Code::SlowConsumer), 0));
        drop(inner);
        self.notify.notify_one();
    }

    /// Queues an item that may be lost (a QoS 0 status message): dropped, without closing the
    /// queue, when the queue is half full. Returns whether it was queued.
    pub fn push_droppable(&self, item: Outbound) -> bool {
        let size = item.approx_bytes();
        let mut inner = self.lock();
        if inner.closed || inner.bytes + size > self.capacity_bytes / 2 {
            return false;
        }
        inner.bytes += size;
        inner.queue.push_back((item, size));
        drop(inner);
        self.notify.notify_one();
        true
    }

    /// Queues chatroom items (of one room, in seq order) by their priorities: each that does
    /// not fit its priority's share of the queue is dropped and will be reported by a gap
    /// marker. `Err(Closed)` if the queue is closed, or a HIGH item overflowed it (the caller
    /// must treat the session as gone).
    ///
    /// `whole`: the items are all of a fan-out round's (see [`DirectWriter::write_room`]).
    pub fn push_room<'a, I>(&self, items: I, whole: Option<&RoundWire>) -> Result<(), Closed>
    where
        I: IntoIterator<Item = &'a Arc<RoomItem>>,
        I::IntoIter: Clone,
    {
        let items = items.into_iter();
        let mut inner = self.lock();
        if inner.closed {
            return Err(Closed);
        }
        // Under the lock, so that nothing is queued meanwhile that these would overtake.
        if inner.writer_waits()
            && let Some(writer) = self.direct_writer.get()
            && writer.write_room(&mut items.clone(), whole)
        {
            let written = items.count() as u64;
            crate::metrics::m().chatroom_direct.increment(written);
            return Ok(());
        }
        let mut queued = false;
        let now = Instant::now();
        for item in items {
            let size = item.approx_bytes();
            let behind = inner
                .room_times
                .front()
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(*t));
            let (limit, lag) = match item.priority() {
                Priority::Low => (self.capacity_bytes / 4, LOW_LAG),
                Priority::Normal => (self.capacity_bytes / 2, NORMAL_LAG),
                Priority::High => (self.capacity_bytes, Duration::MAX),
            };
            if inner.bytes + size > limit || behind > lag {
                if item.priority() == Priority::High {
                    self.overflow(inner);
                    return Err(Closed);
                }
                let seq = item.seq();
                note_gap(&mut inner, item.room(), 1, seq, seq);
                continue;
            }
            // What was dropped of this room before comes first.
            if let Some(i) = inner.gaps.iter().position(|g| g.room == *item.room()) {
                let marker = inner.gaps.swap_remove(i).marker();
                let marker_size = marker.approx_bytes();
                inner.bytes += marker_size;
                inner.queue.push_back((marker, marker_size));
            }
            inner.bytes += size;
            inner.queue.push_back((Outbound::Room(item.clone()), size));
            inner.room_times.push_back(item.posted());
            queued = true;
        }
        let waiting = !inner.gaps.is_empty();
        drop(inner);
        if queued || waiting {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Records that `count` messages of `room` with seqs from `from` to `to` will not come (the
    /// room's fan-out fell behind and dropped them): the gap marker follows what is queued.
    pub fn note_gap(&self, room: &Arc<str>, count: u64, from: u64, to: u64) {
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        note_gap(&mut inner, room, count, from, to);
        drop(inner);
        self.notify.notify_one();
    }

    /// Queues a DISCONNECT after everything already queued, and closes the queue. Returns false
    /// if it was already closed.
    pub fn close(&self, code: Code) -> bool {
        let mut inner = self.lock();
        if inner.closed {
            return false;
        }
        inner.closed = true;
        // Gaps not yet reported go out before the goodbye.
        let markers: Vec<Outbound> = inner.gaps.drain(..).map(|g| g.marker()).collect();
        for m in markers {
            inner.queue.push_back((m, 0));
        }
        inner.queue.push_back((Outbound::Disconnect(code), 0));
        drop(inner);
        self.notify.notify_one();
        true
    }

    /// Drops the queued deliveries of inbox entries up to `inbox_seq`, which the device already
    /// holds.
    pub fn forget_deliveries_through(&self, inbox_seq: u64) {
        let mut inner = self.lock();
        let mut freed = 0;
        inner.queue.retain(|(item, size)| match item {
            Outbound::Deliver { message, .. } if message.inbox_seq() <= inbox_seq => {
                freed += size;
                false
            }
            _ => true,
        });
        inner.bytes -= freed;
    }

    /// Bytes waiting in the queue.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The next item if one is queued now: a pending gap marker once the queue is empty.
    pub fn try_pop(&self) -> Option<Outbound> {
        let mut inner = self.lock();
        if let Some(item) = inner.pop() {
            return Some(item);
        }
        inner.gaps.pop().map(|g| g.marker())
    }

    /// The next item; `None` once the queue is closed and drained. The caller must have
    /// written everything it took before: while this waits, a room's items may be written
    /// around the queue (see [`Outbox::set_direct_writer`]).
    pub async fn pop(&self) -> Option<Outbound> {
        loop {
            {
                let mut inner = self.lock();
                if let Some(item) = inner.pop() {
                    inner.idle = false;
                    return Some(item);
                }
                if let Some(gap) = inner.gaps.pop() {
                    inner.idle = false;
                    return Some(gap.marker());
                }
                if inner.closed {
                    return None;
                }
                inner.idle = true;
            }
            // notify_one stores a permit when nobody waits, so a push between the check above and
            // this await is not missed.
            self.notify.notified().await;
        }
    }
}

impl Shared {
    /// Writes the items gathered here (see [`gathered`]) in one write if the consumer still
    /// waits, or wakes it for them.
    fn flush_gathered(&self) {
        let mut inner = self.lock();
        if !std::mem::take(&mut inner.gathered) || inner.queue.is_empty() {
            return;
        }
        if inner.idle
            && inner.gaps.is_empty()
            && let Some(writer) = self.direct_writer.get()
            && writer.write_items(&mut inner.queue.iter().map(|(item, _)| item))
        {
            crate::metrics::m()
                .outbound_direct
                .increment(inner.queue.len() as u64);
            inner.queue.clear();
            inner.room_times.clear();
            inner.bytes = 0;
            return;
        }
        drop(inner);
        self.notify.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The queue stays consistent under every panic point (push/pop are single calls).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn note_gap(inner: &mut Inner, room: &Arc<str>, count: u64, from: u64, to: u64) {
    crate::metrics::m().chatroom_dropped.increment(count);
    match inner.gaps.iter_mut().find(|g| g.room == *room) {
        Some(g) => g.add(count, from, to),
        None => inner.gaps.push(Gap {
            room: room.clone(),
            count,
            from,
            to,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overflow_replaces_the_queue_with_a_slow_consumer_disconnect() {
        let outbox = Outbox::new(100);
        assert!(outbox.push(Outbound::Pong).is_ok());
        let big = Outbound::Deliver {
            message: std::sync::Arc::new(crate::Delivered::for_viewer(
                "bob",
                std::sync::Arc::new(tidings_store::StoredMessage {
                    uid: "u".into(),
                    conversation_type: 1,
                    conversation_id: "1:alice|bob".into(),
                    sender: "alice".into(),
                    target: "bob".into(),
                    seq: 1,
                    sent_time: 0,
                    msg_type: "text".into(),
                    content: "x".repeat(200),
                    push_text: String::new(),
                    client_msg_id: "c".into(),
                    ..Default::default()
                }),
                1,
            )),
            dup: false,
        };
        assert_eq!(outbox.push(big), Err(Closed));
        assert_eq!(outbox.push(Outbound::Pong), Err(Closed));
        assert!(matches!(
            outbox.pop().await,
            Some(Outbound::Disconnect(Code::SlowConsumer))
        ));
        assert!(outbox.pop().await.is_none());
    }

    #[tokio::test]
    async fn close_keeps_queued_items_before_the_disconnect() {
        let outbox = Outbox::new(1000);
        outbox.push(Outbound::Pong).unwrap();
        assert!(outbox.close(Code::ServerShutdown));
        assert!(!outbox.close(Code::Kicked));
        assert!(matches!(outbox.pop().await, Some(Outbound::Pong)));
        assert!(matches!(
            outbox.pop().await,
            Some(Outbound::Disconnect(Code::ServerShutdown))
        ));
        assert!(outbox.pop().await.is_none());
    }

    fn item(room: &Arc<str>, seq: u64, priority: Priority, bytes: usize) -> Arc<RoomItem> {
        let message = StoredMessage {
            uid: format!("u{seq}"),
            conversation_type: conversation_type::CHATROOM,
            target: room.to_string(),
            sender: "alice".into(),
            seq,
            msg_type: "text".into(),
            content: "x".repeat(bytes),
            ..Default::default()
        };
        Arc::new(RoomItem::new(
            room.clone(),
            message,
            priority,
            0,
            String::new(),
        ))
    }

    /// What the outbox yields now, as (seq of a room item) or (gap count, from, to).
    fn drain(outbox: &Outbox) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(o) = outbox.try_pop() {
            out.push(match o {
                Outbound::Room(i) => format!("{}", i.seq()),
                Outbound::Status(m) if m.msg_type() == GAP_EVENT_TYPE => {
                    let v: serde_json::Value = serde_json::from_str(m.content()).unwrap();
                    format!("gap {} {}-{}", v["count"], v["fromSeq"], v["toSeq"])
                }
                other => format!("{other:?}"),
            });
        }
        out
    }

    #[test]
    fn low_priority_room_items_drop_first_and_are_reported_by_a_gap_marker() {
        let room: Arc<str> = Arc::from("r");
        // Each item costs about 210 bytes (a marker about 170) of a 1,900-byte queue: LOW items
        // fit until 475 bytes are queued, NORMAL ones until 950, HIGH ones until 1,900.
        let outbox = Outbox::new(1900);
        let items: Vec<_> = (1..=9)
            .map(|seq| {
                let p = match seq {
                    1..=3 => Priority::Low,
                    4..=6 => Priority::Normal,
                    _ => Priority::High,
                };
                item(&room, seq, p, 100)
            })
            .collect();
        outbox.push_room(&items, None).unwrap();
        // 1 and 2 fit, 3 is dropped (LOW over a quarter); 4 fits but 5 and 6 do not (NORMAL
        // over half); 7, 8, 9 are HIGH. The gap marker comes before the next item that fits.
        assert_eq!(
            drain(&outbox),
            ["1", "2", "gap 1 3-3", "4", "gap 2 5-6", "7", "8", "9"]
        );
    }

    #[test]
    fn a_gap_with_nothing_after_it_is_reported_when_the_queue_drains() {
        let room: Arc<str> = Arc::from("r");
        let outbox = Outbox::new(1000);
        outbox.push(Outbound::Pong).unwrap();
        outbox.note_gap(&room, 4, 10, 13);
        outbox
            .push_room(&[item(&room, 14, Priority::Low, 1000)], None)
            .unwrap();
        // Merged into one marker, after what was queued before.
        assert_eq!(drain(&outbox), ["Pong", "gap 5 10-14"]);
        assert!(outbox.try_pop().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_far_behind_gets_no_low_items_then_no_normal_ones() {
        let room: Arc<str> = Arc::from("r");
        let outbox = Outbox::new(1 << 20);
        outbox
            .push_room(&[item(&room, 1, Priority::Normal, 10)], None)
            .unwrap();
        tokio::time::advance(LOW_LAG + Duration::from_millis(1)).await;
        let later = [
            item(&room, 2, Priority::Low, 10),
            item(&room, 3, Priority::Normal, 10),
        ];
        outbox.push_room(&later, None).unwrap();
        tokio::time::advance(NORMAL_LAG).await;
        let last = [
            item(&room, 4, Priority::Normal, 10),
            item(&room, 5, Priority::High, 10),
        ];
        outbox.push_room(&last, None).unwrap();
        assert_eq!(drain(&outbox), ["1", "gap 1 2-2", "3", "gap 1 4-4", "5"]);
        // Caught up: the queue is empty, so nothing is behind.
        outbox
            .push_room(&[item(&room, 6, Priority::Low, 10)], None)
            .unwrap();
        assert_eq!(drain(&outbox), ["6"]);
    }

    /// Counts the items it is asked to write, and writes them.
    #[derive(Default)]
    struct Written(std::sync::atomic::AtomicUsize);

    impl DirectWriter for Arc<Written> {
        fn write_room(
            &self,
            items: &mut dyn Iterator<Item = &Arc<RoomItem>>,
            _whole: Option<&RoundWire>,
        ) -> bool {
            let n = items.count();
            self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            true
        }
        fn write_item(&self, _item: &Outbound) -> bool {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            true
        }
    }

    #[tokio::test]
    async fn items_go_around_the_queue_only_to_an_idle_writer_with_nothing_queued() {
        let room: Arc<str> = Arc::from("r");
        let outbox = Outbox::new(1 << 20);
        let written = Arc::new(Written::default());
        outbox.set_direct_writer(Box::new(written.clone()));
        let count = || written.0.load(std::sync::atomic::Ordering::Relaxed);
        // The writer has not waited yet (the session's opening is still being written).
        outbox.push(Outbound::Pong).unwrap();
        assert_eq!((count(), drain(&outbox)), (0, vec!["Pong".to_string()]));
        // Waiting with nothing queued: written at once.
        let _ = tokio::time::timeout(Duration::ZERO, outbox.pop()).await;
        outbox.push(Outbound::Pong).unwrap();
        outbox
            .push_room(&[item(&room, 1, Priority::Normal, 10)], None)
            .unwrap();
        assert_eq!((count(), drain(&outbox).len()), (2, 0));
        // Anything queued, and what follows it queues behind it.
        outbox
            .push(Outbound::ConnAck {
                code: 0,
                text: String::new(),
            })
            .unwrap();
        outbox
            .push_room(&[item(&room, 2, Priority::Normal, 10)], None)
            .unwrap();
        outbox.push(Outbound::Pong).unwrap();
        assert_eq!(count(), 2);
        assert_eq!(&drain(&outbox)[1..], ["2", "Pong"]);
        // So is what comes while a gap waits to be reported.
        let _ = tokio::time::timeout(Duration::ZERO, outbox.pop()).await;
        outbox.note_gap(&room, 1, 3, 3);
        outbox.push(Outbound::Pong).unwrap();
        assert_eq!(count(), 2);
    }

    /// Records each batch of items it is asked to write; refuses them while `refuse` is set.
    #[derive(Default)]
    struct Batches {
        written: Mutex<Vec<Vec<String>>>,
        refuse: std::sync::atomic::AtomicBool,
    }

    impl DirectWriter for Arc<Batches> {
        fn write_room(
            &self,
            _items: &mut dyn Iterator<Item = &Arc<RoomItem>>,
            _whole: Option<&RoundWire>,
        ) -> bool {
            false
        }
        fn write_items(&self, items: &mut dyn Iterator<Item = &Outbound>) -> bool {
            if self.refuse.load(std::sync::atomic::Ordering::Relaxed) {
                return false;
            }
            let batch = items.map(describe).collect();
            self.written.lock().unwrap().push(batch);
            true
        }
    }

    fn describe(item: &Outbound) -> String {
        match item {
            Outbound::Room(i) => format!("room {}", i.seq()),
            Outbound::Deliver { message, .. } => format!("deliver {}", message.inbox_seq()),
            other => format!("{other:?}"),
        }
    }

    fn delivery(inbox_seq: u64) -> Outbound {
        Outbound::Deliver {
            message: Arc::new(crate::Delivered::for_viewer(
                "bob",
                Arc::new(StoredMessage::default()),
                inbox_seq,
            )),
            dup: false,
        }
    }

    #[tokio::test]
    async fn a_batchs_items_for_an_idle_writer_are_written_together_after_it() {
        let room: Arc<str> = Arc::from("r");
        let outbox = Outbox::new(1 << 20);
        let batches = Arc::new(Batches::default());
        outbox.set_direct_writer(Box::new(batches.clone()));
        let written = || batches.written.lock().unwrap().clone();
        let _ = tokio::time::timeout(Duration::ZERO, outbox.pop()).await;
        gathered(|| {
            outbox.push(Outbound::Pong).unwrap();
            outbox.push(delivery(1)).unwrap();
            // Nothing is written while the batch is answered.
            assert!(written().is_empty());
            // A room's items meanwhile queue behind what was gathered, and what is gathered
            // after them follows them.
            outbox
                .push_room(&[item(&room, 7, Priority::Normal, 10)], None)
                .unwrap();
            outbox.push(delivery(2)).unwrap();
        });
        assert_eq!(
            written(),
            [["Pong", "deliver 1", "room 7", "deliver 2"].map(String::from)]
        );
        assert!(outbox.try_pop().is_none());
        // A socket that takes nothing: the writer is woken for the items, in their order.
        batches
            .refuse
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::ZERO, outbox.pop()).await;
        gathered(|| {
            outbox.push(delivery(3)).unwrap();
            outbox.push(Outbound::Pong).unwrap();
        });
        let woken = tokio::time::timeout(Duration::from_secs(5), outbox.pop()).await;
        assert_eq!(
            woken.ok().flatten().as_ref().map(describe).as_deref(),
            Some("deliver 3")
        );
        assert_eq!(drain(&outbox), ["Pong"]);
        assert_eq!(written().len(), 1);
    }

    #[test]
    fn a_high_item_that_cannot_fit_disconnects_as_a_slow_consumer() {
        let room: Arc<str> = Arc::from("r");
        let outbox = Outbox::new(500);
        assert_eq!(
            outbox.push_room(&[item(&room, 1, Priority::High, 1000)], None),
            Err(Closed)
        );
        assert!(matches!(
            outbox.try_pop(),
            Some(Outbound::Disconnect(Code::SlowConsumer))
        ));
    }
}
