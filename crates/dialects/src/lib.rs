//! The protocols Tidings speaks: its own ([`native`], `docs/protocol.md`) and the seed dialects,
//! the wire protocols of four other IM systems, spoken so that clients written against them
//! work unchanged and talk to users on any protocol.
//!
//! Each dialect is a pure translator, with no I/O and no clock: [`Dialect::inbound`] turns a
//! frame the client sent into [`Step`]s (engine commands, or frames to send back), and
//! [`Dialect::outbound`] turns an engine event for the connection into frames. The gateway runs
//! the steps against the engine session and the socket, with one connection driver for every
//! dialect. `docs/dialects.md` says how each seed maps to Tidings and which readings of the
//! seeds were chosen.
//!
//! This crate must not depend on the gateway, a WebSocket or HTTP library, or a socket; it sees
//! the engine only through its request and event types.
//!
//! - [`native`]: the native protocol's frames (`tidings_proto::v1`, protobuf or JSON) at
//!   `/v1/ws`, and its JSON frames over long-polling at `/v1/poll`.
//! - [`seed000`]: protobuf frames (`docs/dialects/seed000.proto`) at `/ws`.
//! - [`seed001`]: JSON `{cmd, data}` packets at `/json/ws`, and sending at `POST /json/message`.
//! - [`seed002`]: rooms (Tidings chatrooms) as JSON at `/ws/room?token=TOKEN`.
//! - [`seed003`]: the private-message JSON protocol at `/imserver/{token}`.

pub mod native;
pub mod seed000;
pub mod seed001;
pub mod seed002;
pub mod seed003;

use tidings_engine::{
    ChatroomQuery, ConnectInfo, ConnectRequest, ConversationQuery, Delivered, GroupQuery, Outbound,
    Refusal, SendRequest, UserOut,
};
use tidings_proto::Code;

/// A frame from the client.
#[derive(Debug, Clone, Copy)]
pub enum WireIn<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// A frame to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireOut {
    Text(String),
    Binary(Vec<u8>),
    /// Text (UTF-8) shared with other connections: a chatroom item encoded once for its room.
    SharedText(bytes::Bytes),
    /// Binary shared with other connections.
    SharedBinary(bytes::Bytes),
}

/// What the gateway does for a dialect, in the order given.
#[derive(Debug, Clone)]
pub enum Step {
    /// Write a frame to the client, after those already queued.
    Send(WireOut),
    /// Open the engine session (once per connection); the outcome goes to
    /// [`Dialect::connected`].
    Connect(ConnectRequest),
    /// Send a message; the engine's PUBACK for `packet_id` comes back through `outbound`.
    Publish { packet_id: u32, send: SendRequest },
    /// Send a status message (typing): never stored; its PUBACK comes as a publish's.
    PublishStatus { packet_id: u32, send: SendRequest },
    /// The device has the inbox entry at this seq.
    Ack(u64),
    /// The device has every inbox entry up to this seq (after a sync).
    Confirm(u64),
    /// Answer a ping (the engine queues the answer).
    Pong,
    /// A page of the inbox after `after`; the QUERYACK for `query_id` comes through `outbound`.
    Sync {
        query_id: u32,
        after: u64,
        limit: u32,
    },
    /// A chatroom request; its QUERYACK comes through `outbound`.
    Chatroom { query_id: u32, query: ChatroomQuery },
    /// A group request; its QUERYACK comes through `outbound`.
    Group { query_id: u32, query: GroupQuery },
    /// A conversation request; its QUERYACK comes through `outbound`.
    Conversation {
        query_id: u32,
        query: ConversationQuery,
    },
    /// The presence of these users, and with `subscribe`, their changes from now on; the
    /// QUERYACK comes through `outbound`.
    Presence {
        query_id: u32,
        users: Vec<String>,
        subscribe: bool,
    },
    /// These users' profiles, answered by a QUERYACK through `outbound`.
    UserQuery { query_id: u32, users: Vec<String> },
    /// Refuse the query `query_id` (a QUERYACK with the reason comes through `outbound`).
    RejectQuery { query_id: u32, reason: &'static str },
    /// Mark read the messages at these seqs of the user's own inbox.
    ReadInbox(Vec<u64>),
    /// Look these users up (profiles, presence); the answer goes to [`Dialect::users`].
    Users { tag: u64, users: Vec<String> },
    /// Register the browser push subscription of the connection's user; the outcome goes to
    /// [`Dialect::push_registered`].
    RegisterPush {
        endpoint: String,
        p256dh: String,
        auth: String,
    },
    /// The connection's user names this group (seed 001's AUTH): a member of it, or of an open
    /// group joined now (made if it does not exist; see `Session::join_named_group`). The
    /// outcome goes to [`Dialect::group_joined`].
    JoinGroup(String),
    /// Start hearing which recipients' devices acknowledge the message about to be published
    /// with this client message id (before the [`Step::Publish`], so no acknowledgement is
    /// missed).
    Watch { client_msg_id: String },
    /// Report how the watched message reaches its recipients — the user `target`, or the
    /// members of the group `target` — through [`Dialect::receipts`], once every one has it or
    /// the report wait has passed.
    Track {
        client_msg_id: String,
        uid: String,
        conversation_type: u32,
        target: String,
    },
    /// End the connection with this code, after the frames already queued are written; the
    /// dialect has said why itself, so no [`Dialect::goodbye`] follows.
    Close(Code),
    /// End the connection with this code, telling the client with the dialect's
    /// [`Dialect::goodbye`] as when the server ends it (after the frames already queued).
    End(Code),
}

/// What [`Dialect::inbound`] and [`Dialect::outbound`] of a dialect that answers most frames
/// with one step return: nothing, one step (no allocation), or several.
#[derive(Debug)]
pub enum Steps {
    None,
    One(Step),
    Many(Vec<Step>),
}

impl IntoIterator for Steps {
    type Item = Step;
    type IntoIter = StepsIter;

    fn into_iter(self) -> StepsIter {
        match self {
            Steps::None => StepsIter::One(None),
            Steps::One(step) => StepsIter::One(Some(step)),
            Steps::Many(steps) => StepsIter::Many(steps.into_iter()),
        }
    }
}

/// The steps of [`Steps`], in order.
#[derive(Debug)]
pub enum StepsIter {
    One(Option<Step>),
    Many(std::vec::IntoIter<Step>),
}

impl Iterator for StepsIter {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        match self {
            StepsIter::One(step) => step.take(),
            StepsIter::Many(steps) => steps.next(),
        }
    }
}

/// How a message reached one of its recipients, for [`Dialect::receipts`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    pub user: String,
    /// The user had a device connected when the message was sent.
    pub online: bool,
    /// A device of the user acknowledged the message.
    pub received: bool,
    /// The user has a push subscription (and push is on).
    pub subscribed: bool,
    /// The outcome of the push notification of the message to the user, if one was sent:
    /// whether the push service accepted it.
    pub pushed: Option<bool>,
}

/// The users an event needs to be translated (their profiles), looked up by the gateway
/// before [`Dialect::outbound`].
pub type Profiles<'a> = &'a [UserOut];

/// A dialect's state for one connection.
pub trait Dialect: Send + 'static {
    /// What [`Dialect::inbound`] and [`Dialect::outbound`] return: `Vec<Step>`, or [`Steps`]
    /// for a dialect on a hot path whose frames mostly make one step each.
    type Steps: IntoIterator<Item = Step, IntoIter: Send> + Send;
    /// Steps to take as the connection opens, before any frame arrives (dialects whose
    /// token is in the URL connect here).
    fn open(&mut self) -> Vec<Step>;
    /// The outcome of [`Step::Connect`]. A refusal's steps should end with [`Step::Close`].
    fn connected(&mut self, outcome: Result<&ConnectInfo, &Refusal>) -> Vec<Step>;
    /// A frame from the client.
    fn inbound(&mut self, frame: WireIn<'_>) -> Self::Steps;
    /// A WebSocket control frame (a Ping or a Pong) from the client before the session opened.
    fn control(&mut self) -> Vec<Step> {
        Vec::new()
    }
    /// The users whose profiles translating `item` needs.
    fn profiles_for(&self, _item: &Outbound) -> Vec<String> {
        Vec::new()
    }
    /// An engine event for this connection (never [`Outbound::Disconnect`]: see
    /// [`Dialect::goodbye`]).
    fn outbound(&mut self, item: Outbound, profiles: Profiles<'_>) -> Self::Steps;
    /// The answer to [`Step::Users`].
    fn users(&mut self, _tag: u64, _users: &[UserOut]) -> Vec<Step> {
        Vec::new()
    }
    /// The outcome of [`Step::RegisterPush`].
    fn push_registered(&mut self, _outcome: Result<(), &Refusal>) -> Vec<Step> {
        Vec::new()
    }
    /// The outcome of [`Step::JoinGroup`].
    fn group_joined(&mut self, _group: &str, _outcome: Result<(), &Refusal>) -> Vec<Step> {
        Vec::new()
    }
    /// The report a [`Step::Track`] asked for; only its [`Step::Send`]s are run.
    fn receipts(&mut self, _client_msg_id: &str, _receipts: &[Receipt]) -> Vec<Step> {
        Vec::new()
    }
    /// The frame, if any, that tells the client the server is ending the connection.
    fn goodbye(&mut self, code: Code) -> Option<WireOut>;
    /// Time without a frame from the client after which the connection is dropped, when the
    /// dialect has its own heartbeat; `None`: three of the server's heartbeat intervals.
    fn silence_limit_ms(&self) -> Option<u64> {
        None
    }
}

/// A user id as a seed's numeric id: the decimal number it is, or 0.
pub fn numeric_id(id: &str) -> i64 {
    if id.len() > 1 && id.starts_with('0') {
        return 0;
    }
    id.parse::<i64>().ok().filter(|n| *n > 0).unwrap_or(0)
}

/// A message's text for a protocol that only carries text: a text message's text, otherwise
/// what the message is found by (a file's name, a rich message's title), or its type.
pub fn plain_text(message: &Delivered) -> String {
    if message.msg_type() == "text" {
        #[derive(serde::Deserialize)]
        struct Text {
            text: String,
        }
        if let Ok(t) = serde_json::from_str::<Text>(message.content()) {
            return t.text;
        }
    }
    let text = tidings_engine::validate::search_text(message.msg_type(), message.content());
    if text.is_empty() {
        format!("[{}]", message.msg_type())
    } else {
        text
    }
}

/// Text content, as the engine stores a text message.
pub fn text_content(text: &str) -> String {
    serde_json::json!({ "text": text }).to_string()
}

/// Whether a dialect that knows only people's messages shows this one: the server's own
/// events (conversation changes, recalls, group notifications) are not shown, and are
/// acknowledged at once so they are not resent.
pub fn is_event(message: &Delivered) -> bool {
    message.msg_type().starts_with("tidings:") || message.conversation_type() == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids() {
        assert_eq!(numeric_id("42"), 42);
        assert_eq!(numeric_id("042"), 0);
        assert_eq!(numeric_id("0"), 0);
        assert_eq!(numeric_id("-3"), 0);
        assert_eq!(numeric_id("alice"), 0);
        assert_eq!(numeric_id("99999999999999999999"), 0);
    }
}
