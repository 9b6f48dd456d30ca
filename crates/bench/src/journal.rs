//! The durable relay's journal: every 1:1 message the relay forwards is first appended to one
//! file and synced (`fdatasync`), many messages per sync (group commit), as the least any server
//! that keeps the delivery contract must do before it answers PUBACK. The relay with a journal
//! measures that floor on a machine: the protocol's cost plus one durable append per batch, and
//! nothing else (no rows, no indexes, no reads).
//!
//! One thread owns the file. It takes every record waiting in its queue, writes them in one
//! `write`, syncs, and only then answers each; a failed write or sync is answered as the error,
//! and the relay closes the connection that asked.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc;

use tokio::sync::oneshot;

type Entry = (Vec<u8>, oneshot::Sender<std::io::Result<()>>);

/// A handle to the journal's thread; cloned per connection.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Entry>,
}

impl Journal {
    /// Creates (or empties) the file at `path` and starts the thread that appends to it.
    pub fn open(path: &Path) -> std::io::Result<Journal> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        let (tx, rx) = mpsc::channel::<Entry>();
        std::thread::Builder::new()
            .name("relay-journal".into())
            .spawn(move || run(file, rx))?;
        Ok(Journal { tx })
    }

    /// Queues `record` for appending at once (records are written in the order of these calls);
    /// the future resolves once it is synced to the disk.
    pub fn append(
        &self,
        record: Vec<u8>,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send + 'static {
        let (reply, done) = oneshot::channel();
        let sent = self.tx.send((record, reply));
        let closed = || std::io::Error::other("the relay's journal thread is gone");
        async move {
            sent.map_err(|_| closed())?;
            done.await.map_err(|_| closed())?
        }
    }
}

fn run(mut file: std::fs::File, rx: mpsc::Receiver<Entry>) {
    let mut bytes = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut replies = Vec::new();
        let mut next = Some(first);
        while let Some((record, reply)) = next.take() {
            bytes.extend_from_slice(&(record.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&record);
            replies.push(reply);
            next = rx.try_recv().ok();
        }
        let result = file.write_all(&bytes).and_then(|()| file.sync_data());
        bytes.clear();
        for reply in replies {
            let answer = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            };
            // A connection that is gone no longer waits for its answer.
            let _ = reply.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each record is in the file, length-prefixed, once its append returns.
    #[tokio::test]
    async fn an_appended_record_is_in_the_file_when_the_append_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let journal = Journal::open(&path).unwrap();
        journal.append(b"first".to_vec()).await.unwrap();
        journal.append(b"second".to_vec()).await.unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut expected = Vec::new();
        for record in [&b"first"[..], b"second"] {
            expected.extend_from_slice(&(record.len() as u32).to_le_bytes());
            expected.extend_from_slice(record);
        }
        assert_eq!(bytes, expected);
    }
}
