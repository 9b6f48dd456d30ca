//! Inbox entries of large fan-outs, staged, then merged into blocks. A message with many
//! recipients (a group's) would write one `inbox` row per recipient, each on a page of its own
//! (the inbox is ordered by user), and every page a commit touches is written to the WAL whole
//! and synced: a 1,000-member group's message cost about 1,000 pages, and its commit 20–30 ms on
//! the reference machine. Instead its entries go into one `inbox_pending` row (in the same
//! transaction as the message: durable before it is acknowledged), which takes a few pages. The
//! writer merges staged rows when no request waits, many messages at a time and a range of users
//! per transaction.
//!
//! A merge takes every row staged when it starts (a merge is due once 64 rows wait, or the
//! oldest has waited half a second), sorts their entries by user, and writes each user's entries
//! as one `inbox_blocks` row (more if they do not fit in [`BLOCK_BYTES`]): the user's key, the
//! last seq of the block, and the entries as varint deltas of seq and message rowid, a few bytes
//! each. A 1,000-member group's 64 messages so become 1,000 rows of about 130 bytes instead of
//! 64,000 `inbox` rows. It writes them in transactions of about [`CHUNK_ENTRIES`] entries, one
//! at a time while no request waits, so a message that comes in meanwhile waits for one such
//! transaction at most. These are not synced: the staged rows still hold their entries, and the
//! transaction that finally deletes the staged rows is synced, which syncs every transaction
//! before it in the log too.
//!
//! Every read of a user's inbox reads all three (`inbox`, `inbox_blocks`, `inbox_pending`) in
//! one transaction; an entry may be both staged and in a block while a merge is under way (it
//! leaves `inbox_pending` only after its block is written), so reads drop repeated seqs. A merge
//! that stopped half-way (a crash) is redone, and skips what a user's blocks already hold: a
//! user's blocks never overlap, and come in seq order.
//!
//! A staged row's `entries` is a sequence of 16-byte records, `(user_key, inbox seq)` as
//! big-endian 64-bit integers, sorted by user key.

use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

/// Messages with at least this many recipients stage their inbox entries.
pub const STAGE_AT: usize = 64;
/// Staged messages that make a merge due at once.
const MERGE_ROWS: usize = 64;
/// How long staged entries wait at most for a merge while fewer messages than [`MERGE_ROWS`]
/// are staged.
const MERGE_AFTER: Duration = Duration::from_millis(500);
/// Entries one merge transaction writes into blocks, about (it ends at a user's last entry). A
/// message that comes in meanwhile waits for it.
const CHUNK_ENTRIES: usize = 4096;
/// The most bytes of entries one block holds: SQLite keeps an index b-tree's row of up to about
/// 1,000 bytes (4 KiB pages) on its page, and moves a longer one's rest to overflow pages.
pub const BLOCK_BYTES: usize = 900;

const RECORD: usize = 16;

/// The `entries` value of `(user_key, seq)` pairs (sorted here).
pub fn encode(entries: &mut [(i64, u64)]) -> Vec<u8> {
    entries.sort_unstable();
    let mut out = Vec::with_capacity(entries.len() * RECORD);
    for &(key, seq) in entries.iter() {
        out.extend_from_slice(&key.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
    }
    out
}

fn record(blob: &[u8], i: usize) -> (i64, u64) {
    let r = &blob[i * RECORD..(i + 1) * RECORD];
    let mut key = [0u8; 8];
    let mut seq = [0u8; 8];
    key.copy_from_slice(&r[..8]);
    seq.copy_from_slice(&r[8..]);
    (i64::from_be_bytes(key), u64::from_be_bytes(seq))
}

/// The seqs `key` has in one row's `entries`.
fn seqs_of(blob: &[u8], key: i64) -> impl Iterator<Item = u64> + '_ {
    let n = blob.len() / RECORD;
    // The first record whose key is not below `key`.
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if record(blob, mid).0 < key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    (lo..n)
        .map(move |i| record(blob, i))
        .take_while(move |(k, _)| *k == key)
        .map(|(_, seq)| seq)
}

/// The staged entries of `key` after `after` and the first `limit` of its blocks' entries after
/// `after`: `(seq, message rowid)`, in seq order. An entry both staged and in a block (a merge
/// under way) is there twice.
pub fn entries_after(
    c: &Connection,
    key: i64,
    after: u64,
    limit: usize,
) -> rusqlite::Result<Vec<(u64, i64)>> {
    let mut stmt = c.prepare_cached("SELECT msg, entries FROM inbox_pending")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let msg: i64 = row.get(0)?;
        let blob = row.get_ref(1)?.as_blob()?;
        out.extend(seqs_of(blob, key).filter(|s| *s > after).map(|s| (s, msg)));
    }
    // A user's blocks do not overlap: the first blocks hold the first entries.
    let mut stmt = c.prepare_cached(
        "SELECT entries FROM inbox_blocks WHERE user_key = ?1 AND last_seq > ?2 ORDER BY last_seq",
    )?;
    let mut rows = stmt.query(params![key, after as i64])?;
    let mut from_blocks = 0;
    while from_blocks < limit {
        let Some(row) = rows.next()? else { break };
        for entry in decode_block(row.get_ref(0)?.as_blob()?)? {
            if entry.0 > after {
                out.push(entry);
                from_blocks += 1;
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The user's newest inbox seq, staged or merged (0 if none).
pub fn last_inbox_seq(c: &Connection, user: &str) -> rusqlite::Result<u64> {
    let Some(key) = user_key(c, user)? else {
        return Ok(0);
    };
    last_seq_of_key(c, key)
}

/// As [`last_inbox_seq`], by the user's key.
pub fn last_seq_of_key(c: &Connection, key: i64) -> rusqlite::Result<u64> {
    let merged: Option<i64> = c
        .prepare_cached("SELECT max(seq) FROM inbox WHERE user_key = ?1")?
        .query_row(params![key], |row| row.get(0))?;
    let blocked: Option<i64> = c
        .prepare_cached("SELECT max(last_seq) FROM inbox_blocks WHERE user_key = ?1")?
        .query_row(params![key], |row| row.get(0))?;
    let staged = entries_after(c, key, 0, 0)?.last().map_or(0, |(s, _)| *s);
    Ok((merged.unwrap_or(0).max(blocked.unwrap_or(0)) as u64).max(staged))
}

/// The user's inbox key, if the user has one.
pub fn user_key(c: &Connection, user: &str) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached("SELECT user_key FROM user_keys WHERE id = ?1")?
        .query_row(params![user], |row| row.get(0))
        .optional()
}

/// The staged entries of message `msg`, if they are staged.
pub fn staged(c: &Connection, msg: i64) -> rusqlite::Result<Option<Staged>> {
    c.prepare_cached("SELECT entries FROM inbox_pending WHERE msg = ?1")?
        .query_row(params![msg], |row| row.get(0))
        .optional()
        .map(|blob| blob.map(Staged))
}

/// One message's staged entries.
pub struct Staged(Vec<u8>);

impl Staged {
    /// The seq the message has in the inbox of `key`.
    pub fn seq_of(&self, key: i64) -> Option<u64> {
        seqs_of(&self.0, key).last()
    }
}

/// The seq message `msg` has in the blocks of `key`, looked for from the newest block back.
pub fn blocked_seq_of(c: &Connection, key: i64, msg: i64) -> rusqlite::Result<Option<u64>> {
    let mut stmt = c.prepare_cached(
        "SELECT entries FROM inbox_blocks WHERE user_key = ?1 ORDER BY last_seq DESC",
    )?;
    let mut rows = stmt.query(params![key])?;
    while let Some(row) = rows.next()? {
        if let Some((seq, _)) = decode_block(row.get_ref(0)?.as_blob()?)?
            .into_iter()
            .find(|(_, m)| *m == msg)
        {
            return Ok(Some(seq));
        }
    }
    Ok(None)
}

/// Appends `v` as a LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint at `*at`, moving past it.
fn get_varint(blob: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *blob.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// One user's entries `(seq, message rowid)`, in seq order, as blocks: `(last seq, entries)`,
/// each entry the varint differences of its seq and rowid from the entry before (zigzag for the
/// rowid), each block at most [`BLOCK_BYTES`] long.
pub fn encode_blocks(entries: &[(u64, i64)]) -> Vec<(u64, Vec<u8>)> {
    let mut blocks = Vec::new();
    let mut block = Vec::new();
    let (mut seq0, mut msg0, mut last) = (0u64, 0i64, 0u64);
    for &(seq, msg) in entries {
        let mut entry = Vec::with_capacity(20);
        put_varint(&mut entry, seq.wrapping_sub(seq0));
        let d = msg.wrapping_sub(msg0);
        put_varint(&mut entry, ((d << 1) ^ (d >> 63)) as u64);
        if !block.is_empty() && block.len() + entry.len() > BLOCK_BYTES {
            blocks.push((last, std::mem::take(&mut block)));
            // A block is read on its own: its first entry is relative to zero.
            entry.clear();
            put_varint(&mut entry, seq);
            put_varint(&mut entry, ((msg << 1) ^ (msg >> 63)) as u64);
        }
        block.extend_from_slice(&entry);
        (seq0, msg0, last) = (seq, msg, seq);
    }
    if !block.is_empty() {
        blocks.push((last, block));
    }
    blocks
}

/// The entries of one block (see [`encode_blocks`]).
pub fn decode_block(blob: &[u8]) -> rusqlite::Result<Vec<(u64, i64)>> {
    let mut out = Vec::with_capacity(blob.len() / 2);
    let (mut at, mut seq, mut msg) = (0, 0u64, 0i64);
    while at < blob.len() {
        let (Some(ds), Some(dm)) = (get_varint(blob, &mut at), get_varint(blob, &mut at)) else {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Blob,
                "a truncated inbox block".into(),
            ));
        };
        seq = seq.wrapping_add(ds);
        msg = msg.wrapping_add(((dm >> 1) as i64) ^ -((dm & 1) as i64));
        out.push((seq, msg));
    }
    Ok(out)
}

/// The writer's view of what is staged, and the merge under way.
#[derive(Default)]
pub struct Merger {
    /// Staged rows (`None`: not counted since the last failure or start).
    rows: Option<usize>,
    /// Since when the oldest staged row has waited (about: since it was first counted).
    since: Option<Instant>,
    merge: Option<Merge>,
    /// After a failed merge, none is tried before this.
    paused_until: Option<Instant>,
}

/// How long merging pauses after it failed.
const PAUSE: Duration = Duration::from_secs(1);

/// A merge of the rows staged up to message `upto`: their entries in inbox order, the first
/// `done` of them in `inbox` already.
struct Merge {
    upto: i64,
    todo: Vec<(i64, u64, i64)>,
    done: usize,
}

impl Merger {
    /// A row was staged by the transaction being built.
    pub fn staged(&mut self) {
        if let Some(n) = &mut self.rows {
            *n += 1;
        }
        self.since.get_or_insert_with(Instant::now);
    }

    /// Forgets what it knew (after a failed transaction); it is read again when needed.
    pub fn forget(&mut self) {
        *self = Merger::default();
    }

    fn count(&mut self, c: &Connection) -> rusqlite::Result<usize> {
        if let Some(n) = self.rows {
            return Ok(n);
        }
        let n: i64 = c
            .prepare_cached("SELECT count(*) FROM inbox_pending")?
            .query_row([], |row| row.get(0))?;
        let n = n as usize;
        self.rows = Some(n);
        if n > 0 {
            self.since.get_or_insert_with(Instant::now);
        }
        Ok(n)
    }

    /// Whether a merge step is due now; if not, how long until one is (`None`: nothing staged).
    pub fn due(&mut self, c: &Connection) -> rusqlite::Result<Result<(), Option<Duration>>> {
        if let Some(until) = self.paused_until {
            match until.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => return Ok(Err(Some(left))),
                _ => self.paused_until = None,
            }
        }
        if self.merge.is_some() {
            return Ok(Ok(()));
        }
        let n = self.count(c)?;
        if n == 0 {
            return Ok(Err(None));
        }
        if n >= MERGE_ROWS {
            return Ok(Ok(()));
        }
        let waited = self.since.map_or(MERGE_AFTER, |s| s.elapsed());
        match MERGE_AFTER.checked_sub(waited) {
            Some(left) if !left.is_zero() => Ok(Err(Some(left))),
            _ => Ok(Ok(())),
        }
    }

    /// One merge transaction: the staged entries of the next range of users into `inbox`, or,
    /// once every user is done, the removal of the merged rows.
    pub fn step(&mut self, conn: &mut Connection) -> rusqlite::Result<()> {
        let outcome = self.try_step(conn);
        if outcome.is_err() {
            self.forget();
            self.paused_until = Some(Instant::now() + PAUSE);
        }
        outcome
    }

    fn try_step(&mut self, conn: &mut Connection) -> rusqlite::Result<()> {
        let Some(merge) = &mut self.merge else {
            // Reading and sorting the staged entries is a step of its own: a request that
            // comes in meanwhile waits for it, not for it and a chunk.
            match Merge::start(conn)? {
                Some(merge) => self.merge = Some(merge),
                None => {
                    self.rows = Some(0);
                    self.since = None;
                }
            }
            return Ok(());
        };
        if merge.done == merge.todo.len() {
            let tx = crate::schema::write_transaction(conn)?;
            let removed = tx
                .prepare_cached("DELETE FROM inbox_pending WHERE msg <= ?1")?
                .execute(params![merge.upto])?;
            tx.commit()?;
            self.merge = None;
            self.rows = self.rows.map(|n| n.saturating_sub(removed));
            self.since = (self.rows != Some(0)).then(Instant::now);
            return Ok(());
        }
        // Whole users only: the chunk ends at the last entry of the user it reaches its size in.
        // The chunk is not synced: `inbox_pending` still holds it, and the commit that deletes
        // from there is synced, which also syncs every commit before it in the log. A chunk
        // lost in a crash is merged again.
        let synchronous: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", 0)?;
        let outcome = Self::chunk(conn, merge);
        conn.pragma_update(None, "synchronous", synchronous)?;
        outcome
    }

    /// Merges the next chunk of `merge` in one transaction: each user's entries as blocks,
    /// but those the user's blocks already hold (a merge redone after a crash).
    fn chunk(conn: &mut Connection, merge: &mut Merge) -> rusqlite::Result<()> {
        let tx = crate::schema::write_transaction(conn)?;
        let todo = &merge.todo;
        let mut end = todo.len().min(merge.done + CHUNK_ENTRIES);
        while end < todo.len() && todo[end].0 == todo[end - 1].0 {
            end += 1;
        }
        {
            let mut newest =
                tx.prepare_cached("SELECT max(last_seq) FROM inbox_blocks WHERE user_key = ?1")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO inbox_blocks (user_key, last_seq, entries) VALUES (?1, ?2, ?3)",
            )?;
            for user in todo[merge.done..end].chunk_by(|a, b| a.0 == b.0) {
                let key = user[0].0;
                let held: Option<i64> = newest.query_row(params![key], |row| row.get(0))?;
                let held = held.unwrap_or(0) as u64;
                let mut entries: Vec<(u64, i64)> = user
                    .iter()
                    .filter(|e| e.1 > held)
                    .map(|&(_, seq, msg)| (seq, msg))
                    .collect();
                entries.sort_unstable();
                for (last, blob) in encode_blocks(&entries) {
                    insert.execute(params![key, last as i64, blob])?;
                }
            }
        }
        tx.commit()?;
        merge.done = end;
        Ok(())
    }
}

impl Merge {
    /// A merge of everything staged now, if anything is.
    fn start(c: &Connection) -> rusqlite::Result<Option<Merge>> {
        let upto: Option<i64> = c
            .prepare_cached("SELECT max(msg) FROM inbox_pending")?
            .query_row([], |row| row.get(0))?;
        let Some(upto) = upto else {
            return Ok(None);
        };
        let mut todo = Vec::new();
        let mut stmt =
            c.prepare_cached("SELECT msg, entries FROM inbox_pending WHERE msg <= ?1")?;
        let mut rows = stmt.query(params![upto])?;
        while let Some(row) = rows.next()? {
            let msg: i64 = row.get(0)?;
            let blob = row.get_ref(1)?.as_blob()?;
            todo.extend(
                (0..blob.len() / RECORD)
                    .map(|i| record(blob, i))
                    .map(|(k, s)| (k, s, msg)),
            );
        }
        // Each row's entries are sorted by user already, and the rows come in message order,
        // which is each user's seq order: a stable sort by user merges the runs.
        todo.sort_by_key(|&(key, _, _)| key);
        Ok(Some(Merge {
            upto,
            todo,
            done: 0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_by_key_whatever_the_order_given() {
        let mut entries = vec![(9, 3), (2, 7), (5, 1), (2, 8), (100, 40)];
        let blob = encode(&mut entries);
        assert_eq!(blob.len(), 5 * RECORD);
        assert_eq!(seqs_of(&blob, 2).collect::<Vec<_>>(), vec![7, 8]);
        assert_eq!(seqs_of(&blob, 100).collect::<Vec<_>>(), vec![40]);
        assert_eq!(seqs_of(&blob, 5).collect::<Vec<_>>(), vec![1]);
        assert!(seqs_of(&blob, 1).next().is_none());
        assert!(seqs_of(&blob, 6).next().is_none());
        assert!(seqs_of(&blob, 101).next().is_none());
        assert!(seqs_of(&[], 1).next().is_none());
    }

    #[test]
    fn blocks_give_back_their_entries_and_stay_within_their_size() {
        let entries: Vec<(u64, i64)> = (1..=3000u64)
            .map(|s| (s * 3, (s * s) as i64 % 100_000 - 50_000))
            .chain([(u64::MAX - 1, i64::MIN), (u64::MAX, i64::MAX)])
            .collect();
        let blocks = encode_blocks(&entries);
        assert!(blocks.len() > 1, "more than one block's worth");
        assert!(blocks.iter().all(|(_, b)| b.len() <= BLOCK_BYTES));
        let mut back = Vec::new();
        for (last, blob) in &blocks {
            let got = decode_block(blob).unwrap();
            assert_eq!(
                got.last().unwrap().0,
                *last,
                "a block's key is its last seq"
            );
            back.extend(got);
        }
        assert_eq!(back, entries);
        assert!(encode_blocks(&[]).is_empty());
    }

    #[test]
    fn a_truncated_block_is_an_error() {
        let (_, blob) = encode_blocks(&[(5, 300)]).remove(0);
        assert!(decode_block(&blob[..blob.len() - 1]).is_err());
        assert!(decode_block(&[0x80]).is_err());
    }
}
