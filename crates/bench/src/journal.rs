//! The durable relay's journal: every 1:1 message the relay forwards is first appended to one
//! file and synced (`fdatasync`), many messages per sync (group commit), as the least any server
//! that keeps the delivery contract must do before it answers PUBACK. The relay with a journal
//! measures that floor on a machine: the protocol's cost plus one durable append per batch, and
//! nothing else (no rows, no indexes, no reads).
//!
//! One thread owns the file. It takes every record waiting in its queue, writes them in one
//! `write`, syncs, and only then answers each; a failed write or sync is answered as the error,
//! and the relay closes the connection that asked.
//!
//! The file is written full of zeros and synced when it opens, and records then overwrite it from
//! its start, going round to the start again at its end: a sync of a file whose size and blocks
//! do not change flushes only the data (a log that grows makes every `fdatasync` also commit the
//! file system's journal, which on the reference machine cost about as much CPU as the rest of
//! the relay). A relay forgets a message once it is delivered, so records may be overwritten; a
//! server's log would be recycled the same way once its records are applied.

use std::io::Write;
use std::os::unix::fs::FileExt;
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
    /// Creates (or empties) the file at `path`, writes `size` zero bytes to it and syncs them, and
    /// starts the thread that writes records into it.
    pub fn open(path: &Path, size: u64) -> std::io::Result<Journal> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        let zeros = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
        let (tx, rx) = mpsc::channel::<Entry>();
        std::thread::Builder::new()
            .name("relay-journal".into())
            .spawn(move || run(file, size, rx))?;
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

fn run(file: std::fs::File, size: u64, rx: mpsc::Receiver<Entry>) {
    let mut bytes = Vec::new();
    let mut at = 0u64;
    while let Ok(first) = rx.recv() {
        let mut replies = Vec::new();
        let mut next = Some(first);
        while let Some((record, reply)) = next.take() {
            bytes.extend_from_slice(&(record.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&record);
            replies.push(reply);
            next = rx.try_recv().ok();
        }
        if at + bytes.len() as u64 > size {
            at = 0;
        }
        let result = if bytes.len() as u64 > size {
            Err(std::io::Error::other(format!(
                "{} bytes of records do not fit in a journal of {size}",
                bytes.len()
            )))
        } else {
            file.write_all_at(&bytes, at)
                .and_then(|()| file.sync_data())
        };
        at += bytes.len() as u64;
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

    fn framed(records: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for record in records {
            out.extend_from_slice(&(record.len() as u32).to_le_bytes());
            out.extend_from_slice(record);
        }
        out
    }

    /// Each record is in the file, length-prefixed, once its append returns; the file keeps
    /// its size.
    #[tokio::test]
    async fn an_appended_record_is_in_the_file_when_the_append_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let journal = Journal::open(&path, 64).unwrap();
        journal.append(b"first".to_vec()).await.unwrap();
        journal.append(b"second".to_vec()).await.unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let written = framed(&[b"first", b"second"]);
        assert_eq!(bytes.len(), 64);
        assert_eq!(&bytes[..written.len()], &written[..]);
        assert!(bytes[written.len()..].iter().all(|b| *b == 0));
    }

    /// Records that would pass the file's end start again at its beginning; a batch larger than
    /// the whole file is refused, not cut.
    #[tokio::test]
    async fn records_go_round_to_the_start_and_one_too_large_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let journal = Journal::open(&path, 16).unwrap();
        journal.append(b"abcdefgh".to_vec()).await.unwrap();
        journal.append(b"xyz".to_vec()).await.unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..7], &framed(&[b"xyz"])[..]);
        assert_eq!(
            &bytes[7..12],
            &b"defgh"[..],
            "the older record's rest is left"
        );
        let refused = journal.append(vec![1; 13]).await.unwrap_err();
        assert!(refused.to_string().contains("do not fit"), "{refused}");
    }
}
