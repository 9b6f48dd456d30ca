//! Search indexing in batches, behind the commits. Indexing a message in its own commit would
//! write an index segment per commit, and at low rates (one message a commit) that and the
//! merges it causes were most of a commit's cost. So the writer keeps the texts of new messages
//! and adds them to the index together: at most [`DELAY`] after the first of them, when
//! [`BATCH`] have gathered, before anything that changes an indexed message, and before every
//! search (which asks the writer to flush first, so a search sees every committed message).
//!
//! The `search_watermark` row says up to which message rowid the index is complete. If texts
//! were lost (a failed transaction, a crash), the next flush indexes every message above the
//! watermark from the table itself, by the same rules as `validate::search_text`.

use std::time::{Duration, Instant};

use rusqlite::{Transaction, params};

/// The longest a committed message waits to be indexed.
pub const DELAY: Duration = Duration::from_millis(200);
/// Texts that are indexed together at once when this many have gathered.
pub const BATCH: usize = 512;

/// The messages above the watermark that have a text to find, by the rules of
/// `validate::search_text`.
const CATCH_UP: &str = "INSERT INTO message_text (rowid, text) \
    SELECT rowid, text FROM (SELECT rowid, CASE \
        WHEN msg_type IN ('image', 'voice') THEN NULL \
        WHEN msg_type IN ('file', 'location') THEN json_extract(content, '$.name') \
        WHEN msg_type = 'rich' THEN concat_ws(char(10), json_extract(content, '$.title'), \
                                              json_extract(content, '$.content')) \
        ELSE json_extract(content, '$.text') END AS text \
      FROM messages WHERE rowid > (SELECT rowid FROM search_watermark) \
        AND json_valid(content) AND msg_type NOT LIKE 'tidings:%' AND state & 1 = 0) \
    WHERE typeof(text) = 'text' AND text != ''";

pub struct Indexer {
    /// Texts of committed (or being committed) messages, not yet in the index.
    pending: Vec<(i64, String)>,
    /// When the oldest pending text arrived.
    since: Option<Instant>,
    /// Texts were lost: index from the messages table above the watermark instead.
    catch_up: bool,
    /// Texts written to the index in the transaction under way.
    written: usize,
}

impl Default for Indexer {
    fn default() -> Indexer {
        Indexer::new()
    }
}

impl Indexer {
    /// A new writer starts by catching up: a crash may have lost texts.
    pub fn new() -> Indexer {
        Indexer {
            pending: Vec::new(),
            since: None,
            catch_up: true,
            written: 0,
        }
    }

    pub fn add(&mut self, rowid: i64, text: String) {
        if self.pending.is_empty() {
            self.since = Some(Instant::now());
        }
        self.pending.push((rowid, text));
    }

    /// Whether anything waits to be indexed.
    pub fn waiting(&self) -> bool {
        self.catch_up || !self.pending.is_empty()
    }

    /// Whether the waiting texts should be indexed in the transaction under way.
    pub fn due(&self) -> bool {
        self.catch_up
            || self.pending.len() >= BATCH
            || self.since.is_some_and(|t| t.elapsed() >= DELAY)
    }

    /// How long the writer may sleep before a flush is due.
    pub fn time_left(&self) -> Option<Duration> {
        if self.catch_up {
            return Some(Duration::ZERO);
        }
        self.since.map(|t| DELAY.saturating_sub(t.elapsed()))
    }

    /// Adds what waits to the index, inside `tx`, and moves the watermark to the newest message.
    pub fn flush(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        if self.catch_up {
            // The table has everything the texts held, and more.
            tx.execute_batch(CATCH_UP)?;
            self.written = self.pending.len();
        } else {
            let mut insert =
                tx.prepare_cached("INSERT INTO message_text (rowid, text) VALUES (?1, ?2)")?;
            for (rowid, text) in &self.pending[self.written..] {
                insert.execute(params![rowid, text])?;
            }
            self.written = self.pending.len();
        }
        tx.prepare_cached(
            "UPDATE search_watermark SET rowid = (SELECT coalesce(max(rowid), 0) FROM messages)",
        )?
        .execute([])?;
        Ok(())
    }

    /// The transaction committed: what it indexed is done.
    pub fn committed(&mut self) {
        if self.written > 0 || self.catch_up {
            self.pending.drain(..self.written);
            self.catch_up = false;
            self.written = 0;
            self.since = (!self.pending.is_empty()).then(Instant::now);
        }
    }

    /// The transaction rolled back: the texts it held may be of messages that do not exist, and
    /// what it indexed is undone. Catch up from the table at the next flush.
    pub fn failed(&mut self) {
        self.pending.clear();
        self.since = None;
        self.written = 0;
        self.catch_up = true;
    }
}
