//! The storage boundary of Tidings: one narrow async trait, [`Store`], the records that cross it,
//! and [`conformance`], the suite every backend must pass.
//!
//! Architecture invariant: nothing backend-specific crosses this trait. No SQL, no driver types,
//! no transaction handles. The engine sees only these records, so the embedded SQLite store and
//! the PostgreSQL store are interchangeable. This crate depends on no other Tidings crate.
//!
//! Writes go through [`Store::write`], which applies a batch of [`WriteOp`]s in one transaction
//! and returns one [`WriteResult`] per op, in order. The engine uses it for group commit: many
//! commands, one durable commit. A `WriteResult` is returned only after the commit is durable
//! under the backend's configured durability.

pub mod conformance;

use async_trait::async_trait;

/// A backend failure. The engine turns it into a server-error code; its text never reaches a
/// client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage backend error: {0}")]
    Backend(String),
    #[error("storage is closed")]
    Closed,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A message as stored: conversation-wide, not relative to a viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub uid: String,
    pub conversation_type: u32,
    /// Canonical conversation id, chosen by the engine (for PRIVATE, both user ids in order).
    pub conversation_id: String,
    pub sender: String,
    /// The target the sender addressed.
    pub target: String,
    pub seq: u64,
    pub sent_time: i64,
    pub msg_type: String,
    pub content: String,
    pub push_text: String,
    pub client_msg_id: String,
}

/// A new message to append. `uid` and `sent_time` are proposed by the engine; if the
/// `(sender, client_msg_id)` pair already exists, the stored message is returned instead.
#[derive(Debug, Clone)]
pub struct AppendMessage {
    pub uid: String,
    pub conversation_type: u32,
    pub conversation_id: String,
    pub sender: String,
    pub target: String,
    pub sent_time: i64,
    pub msg_type: String,
    pub content: String,
    pub push_text: String,
    pub client_msg_id: String,
    /// A digest of everything the client chose (target, type, content, push text): a resend with
    /// the same client message id is a duplicate only if its digest matches.
    pub digest: String,
    /// Users who get an inbox entry for this message (each once), in the order results report.
    pub recipients: Vec<String>,
}

/// One write in a batch.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Append a message: assign the conversation's next seq and an inbox seq per recipient.
    Append(AppendMessage),
    /// Raise a device's confirmed cursor (never lowers it).
    SetCursor {
        user: String,
        device: String,
        cursor: u64,
    },
    /// Record a single-use nonce that is remembered until `expires_at` (ms).
    UseNonce {
        nonce: String,
        now: i64,
        expires_at: i64,
    },
    /// Increment a user's token version, revoking every token minted before.
    BumpTokenVersion { user: String },
}

/// The outcome of one [`WriteOp`].
// Results are short-lived and nearly all are `Appended`; boxing it would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteResult {
    /// The message is stored. `duplicate` is true when it was stored by an earlier op with the
    /// same `(sender, client_msg_id)`; then `message` is that earlier message.
    Appended {
        message: StoredMessage,
        /// `(user, inbox_seq)` for each recipient.
        inbox: Vec<(String, u64)>,
        duplicate: bool,
    },
    /// The `(sender, client_msg_id)` pair exists with a different digest. Nothing was written.
    ClientMsgIdConflict,
    CursorSet,
    /// `fresh` is false if the nonce was already used and has not expired.
    Nonce {
        fresh: bool,
    },
    TokenVersion(u64),
}

/// One entry of a user's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub inbox_seq: u64,
    pub message: StoredMessage,
}

/// What the store knows of a user. Unknown users have all-zero state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserState {
    pub token_version: u64,
    /// The newest inbox seq (0 if the inbox is empty).
    pub inbox_seq: u64,
}

/// What a connecting device needs: its user's state and its own confirmed cursor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionState {
    pub user: UserState,
    /// The device's confirmed cursor; 0 without a device or a stored cursor.
    pub cursor: u64,
}

/// The storage trait. Implementations are cheap to share (`Arc<dyn Store>`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies `ops` in one transaction and returns one result per op. Either the whole batch is
    /// durable when this returns `Ok`, or nothing of it is.
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>>;

    /// Inbox entries of `user` with `inbox_seq > after`, ascending, at most `limit`.
    async fn inbox_after(&self, user: &str, after: u64, limit: usize) -> Result<Vec<InboxEntry>>;

    /// Messages of a conversation with `seq > after`, ascending, at most `limit`.
    async fn conversation_after(
        &self,
        conversation_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>>;

    async fn user_state(&self, user: &str) -> Result<UserState>;

    /// The user's state and, if `device` is given, that device's cursor, in one read.
    async fn session_state(&self, user: &str, device: Option<&str>) -> Result<SessionState>;

    /// The device's confirmed cursor, 0 if none was stored.
    async fn device_cursor(&self, user: &str, device: &str) -> Result<u64>;

    /// Flushes and releases the backend. Later calls fail with [`StoreError::Closed`].
    async fn close(&self) -> Result<()>;
}
