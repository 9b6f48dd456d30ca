//! Group commit as both SQL backends' writers do it: the write requests waiting in the queue
//! are gathered into one transaction, up to a number of ops.

use std::sync::Mutex;

use crate::{Result, StoreError, WriteOp};

/// Hands a request to a backend's writer with `send`, or answers [`StoreError::Closed`] once
/// the store was closed (its writer's slot emptied). The slot's lock is held only while `send`
/// queues the request, never while it is applied.
pub fn to_writer<W, T>(slot: &Mutex<Option<W>>, send: impl FnOnce(&W) -> Result<T>) -> Result<T> {
    let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
    let writer = guard.as_ref().ok_or(StoreError::Closed)?;
    send(writer)
}

/// Write requests gathered for one transaction, each with where its results go.
pub struct Gathered<R> {
    requests: Vec<(Vec<WriteOp>, R)>,
    ops: usize,
}

impl<R> Default for Gathered<R> {
    fn default() -> Gathered<R> {
        Gathered {
            requests: Vec::new(),
            ops: 0,
        }
    }
}

impl<R> Gathered<R> {
    /// Takes a write request off the queue (counted out of its depth) into the transaction.
    pub fn push(&mut self, ops: Vec<WriteOp>, reply: R) {
        crate::metrics::m().queue_depth.decrement(1);
        self.ops += ops.len();
        self.requests.push((ops, reply));
    }

    /// Whether the transaction holds `max` ops or more: the rest wait for the next one.
    pub fn is_full(&self, max: usize) -> bool {
        self.ops >= max
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    pub fn into_requests(self) -> Vec<(Vec<WriteOp>, R)> {
        self.requests
    }
}

#[cfg(test)]
mod tests {
    use super::Gathered;
    use crate::WriteOp;

    #[test]
    fn a_batch_is_full_at_its_number_of_ops() {
        let mut batch = Gathered::default();
        assert!(batch.is_empty());
        let op = || WriteOp::RecordUser { user: "u".into() };
        batch.push(vec![op(), op()], 1);
        assert!(!batch.is_full(3));
        batch.push(vec![op()], 2);
        assert!(batch.is_full(3));
        let replies: Vec<i32> = batch.into_requests().into_iter().map(|(_, r)| r).collect();
        assert_eq!(replies, [1, 2]);
    }
}
