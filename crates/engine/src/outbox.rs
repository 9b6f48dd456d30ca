//! A connection's outbound queue: bounded in bytes, single consumer, and enqueueing never waits.
//! When a push would exceed the bound, the queue is emptied, a DISCONNECT with the slow-consumer
//! code takes its place, and the queue refuses everything after: the fan-out never blocks on a
//! slow socket, and the slow device later recovers what it missed from its inbox by sync.

use std::collections::VecDeque;
use std::sync::Mutex;

use tidings_proto::Code;
use tokio::sync::Notify;

use crate::Outbound;

pub struct Outbox {
    inner: Mutex<Inner>,
    notify: Notify,
    capacity_bytes: usize,
}

struct Inner {
    queue: VecDeque<(Outbound, usize)>,
    bytes: usize,
    /// Set once a DISCONNECT is queued; nothing is queued after it.
    closed: bool,
}

/// The item was not queued because the outbox is closed.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

impl Outbox {
    pub fn new(capacity_bytes: usize) -> Outbox {
        Outbox {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                bytes: 0,
                closed: false,
            }),
            notify: Notify::new(),
            capacity_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The queue stays consistent under every panic point (push/pop are single calls).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`. On overflow the queue is replaced by a slow-consumer DISCONNECT and
    /// `Err(Closed)` is returned; the caller must treat the session as gone.
    pub fn push(&self, item: Outbound) -> Result<(), Closed> {
        let size = item.approx_bytes();
        let mut inner = self.lock();
        if inner.closed {
            return Err(Closed);
        }
        if inner.bytes + size > self.capacity_bytes {
            inner.queue.clear();
            inner.bytes = 0;
            inner.closed = true;
            inner
                .queue
                .push_back((Outbound::Disconnect(Code::SlowConsumer), 0));
            drop(inner);
            self.notify.notify_one();
            return Err(Closed);
        }
        inner.bytes += size;
        inner.queue.push_back((item, size));
        drop(inner);
        self.notify.notify_one();
        Ok(())
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

    /// Queues a DISCONNECT after everything already queued, and closes the queue. Returns false
    /// if it was already closed.
    pub fn close(&self, code: Code) -> bool {
        let mut inner = self.lock();
        if inner.closed {
            return false;
        }
        inner.closed = true;
        inner.queue.push_back((Outbound::Disconnect(code), 0));
        drop(inner);
        self.notify.notify_one();
        true
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The next item if one is queued now.
    pub fn try_pop(&self) -> Option<Outbound> {
        let mut inner = self.lock();
        let (item, size) = inner.queue.pop_front()?;
        inner.bytes -= size;
        Some(item)
    }

    /// The next item; `None` once the queue is closed and drained.
    pub async fn pop(&self) -> Option<Outbound> {
        loop {
            {
                let mut inner = self.lock();
                if let Some((item, size)) = inner.queue.pop_front() {
                    inner.bytes -= size;
                    return Some(item);
                }
                if inner.closed {
                    return None;
                }
            }
            // notify_one stores a permit when nobody waits, so a push between the check above and
            // this await is not missed.
            self.notify.notified().await;
        }
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
}
