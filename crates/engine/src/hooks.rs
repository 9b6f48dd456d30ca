//! Callbacks to the app server, behind a trait so the engine stays free of HTTP: the before-send
//! moderation hook (which may accept, reject or rewrite a client's message before it is
//! stored) and the after-send notification of every stored message. An implementation must
//! never make delivery wait on the app server: `sent` only queues.

use std::future::Future;
use std::pin::Pin;

use tidings_store::StoredMessage;

/// A client's message before it is stored, as the moderation hook sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposed {
    pub conversation_type: u32,
    pub target_id: String,
    pub sender_id: String,
    pub msg_type: String,
    /// A JSON object as text.
    pub content: String,
    pub push_text: String,
    pub client_msg_id: String,
    pub mentions: Vec<String>,
    pub mention_all: bool,
    pub audience: Vec<String>,
}

/// The moderation hook's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moderation {
    Accept,
    /// Refused (PUBACK 40024), with the app server's reason.
    Reject {
        reason: String,
    },
    /// Stored with this content (a JSON object as text) instead.
    Rewrite {
        content: String,
    },
    /// No verdict (timeout, error, unreadable answer): the configured choice applies.
    Unavailable,
}

/// A boxed future, for the trait's async method.
pub type Moderating<'a> = Pin<Box<dyn Future<Output = Moderation> + Send + 'a>>;

/// The app server's callbacks.
pub trait Hooks: Send + Sync + 'static {
    /// Whether clients' messages go to the moderation hook before they are stored.
    fn moderates(&self) -> bool;
    /// The verdict on a message (only called when [`Hooks::moderates`]).
    fn moderate<'a>(&'a self, message: &'a Proposed) -> Moderating<'a>;
    /// A message was stored. Must return at once (queue the callback).
    fn sent(&self, message: &StoredMessage);
    /// When moderation is unavailable: true to store the message anyway (fail open), false to
    /// refuse it (40026).
    fn fail_open(&self) -> bool;
}
