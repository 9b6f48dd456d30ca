//! Delivery receipts for protocols that report them to the sender (seed 001's MESSAGE_REPLY):
//! a watch on one message — named by its sender and client message id, so it can be made
//! before the message is sent — hears every user one of whose devices acknowledges it. Only
//! acknowledgements of pushed messages are seen (a device that fetched the message by sync
//! confirms a position, not a message).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::mpsc;

use crate::Engine;

struct Watch {
    id: u64,
    tx: mpsc::UnboundedSender<String>,
}

/// The watches, by sender and client message id.
#[derive(Default)]
pub(crate) struct Watches {
    /// How many watches exist: acknowledgements look no further while it is 0.
    active: AtomicUsize,
    next: AtomicU64,
    by_key: Mutex<HashMap<String, Vec<Watch>>>,
}

impl Watches {
    pub(crate) fn any(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// A device of `user` acknowledged the message `message`.
    pub(crate) fn received(&self, message: &crate::Delivered, user: &str) {
        if message.client_msg_id().is_empty() {
            return;
        }
        let key = key(message.sender_id(), message.client_msg_id());
        let map = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        for w in map.get(&key).into_iter().flatten() {
            let _ = w.tx.send(user.to_string());
        }
    }

    fn remove(&self, key: &str, id: u64) {
        let mut map = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = map.get_mut(key) {
            let before = list.len();
            list.retain(|w| w.id != id);
            self.active
                .fetch_sub(before - list.len(), Ordering::Relaxed);
            if list.is_empty() {
                map.remove(key);
            }
        }
    }
}

/// Hears the users whose devices acknowledge one message; stops watching when dropped.
pub struct ReceiptWatch {
    engine: Engine,
    key: String,
    id: u64,
    rx: mpsc::UnboundedReceiver<String>,
}

impl ReceiptWatch {
    /// The next user one of whose devices acknowledged the message (a user may come more than
    /// once, one per device).
    pub async fn recv(&mut self) -> Option<String> {
        self.rx.recv().await
    }
}

impl Drop for ReceiptWatch {
    fn drop(&mut self) {
        self.engine.inner.receipts.remove(&self.key, self.id);
    }
}

fn key(sender: &str, client_msg_id: &str) -> String {
    format!("{sender}\n{client_msg_id}")
}

impl Engine {
    /// Watches the message `sender` sends (or sent) with `client_msg_id` reach its recipients'
    /// devices.
    pub fn watch_receipts(&self, sender: &str, client_msg_id: &str) -> ReceiptWatch {
        let key = key(sender, client_msg_id);
        let watches = &self.inner.receipts;
        let id = watches.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        watches
            .by_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .push(Watch { id, tx });
        watches.active.fetch_add(1, Ordering::Relaxed);
        ReceiptWatch {
            engine: self.clone(),
            key,
            id,
            rx,
        }
    }
}
