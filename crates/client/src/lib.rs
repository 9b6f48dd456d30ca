//! The Tidings Rust client SDK.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tidings_client::ClientError> {
//! use tidings_client::{Client, ClientConfig, Event, Outgoing};
//! let (client, mut events) = Client::connect(ClientConfig::new("http://127.0.0.1:9091", "TOKEN")).await?;
//! let sent = client.send(Outgoing::text("bob", "hi")).await?;
//! println!("committed as seq {}", sent.seq);
//! while let Some(event) = events.recv().await {
//!     if let Event::Message(m) = event { println!("{}: {}", m.sender_id, m.content); }
//! }
//! # Ok(()) }
//! ```
//!
//! What the SDK guarantees: every message committed to the user's inbox is presented once, in
//! inbox order (so in per-conversation order), across reconnects. It achieves that with the
//! protocol's at-least-once delivery: it holds pushes that arrive ahead of a gap until sync fills
//! it, drops duplicates by inbox position and message uid, acknowledges each message after it is
//! handed to the event stream, and syncs from its cursor after every (re)connect.
//! Sends are retried on reconnect with the same client message id, so a send is committed at most
//! once and `send` returns the first commit's result.
//!
//! This crate depends on `tidings-proto` and `tidings-mls` (end-to-end encryption, [`E2ee`])
//! only among Tidings crates.

mod chatrooms;
mod conversations;
mod driver;
mod e2ee;
mod groups;
pub mod tls;

use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

pub use chatrooms::{
    Chatroom, ChatroomEntry, ChatroomEvent, ChatroomGap, ChatroomJoined, ChatroomNotice,
};
pub use conversations::{
    Conversation, ConversationChange, ConversationPage, ConversationUpdate, HistoryPage,
    HistoryStart, MessagesDeleted, Presence, PushSubscription, PushToken, QuietHours, ReadReceipt,
    SearchResults, UserProfile,
};
pub use e2ee::{
    Decrypted, DeviceKeyPackage, E2ee, E2eeError, EDIT_TYPE, KEY_PACKAGE_LOW, KEY_PACKAGE_SUPPLY,
    MemberDevice, PLAINTEXT_KEPT, REACTION_TYPE, RECALL_TYPE, Received,
};
pub use groups::{Group, GroupMember, GroupMembersPage, GroupNotice, GroupReceipt};
/// The TLS library [`ClientConfig::tls`] is configured with.
pub use rustls;
pub use tidings_proto::Encoding;

/// The reconnect schedule of the lineage's web SDK (seed 004): 100 ms, 1 s, 3 s, 6 s, 10 s; the
/// last delay repeats.
pub const DEFAULT_RECONNECT_MS: [u64; 5] = [100, 1000, 3000, 6000, 10000];

/// The base URL of a server started on this machine without settings (`tidings serve` listens
/// on 127.0.0.1:9091): where the command-line tools built on this SDK connect by default.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:9091";

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host:port` or `https://host:port` (the server's base URL), or a full
    /// `ws://.../v1/ws` or `wss://.../v1/ws` URL.
    pub server: String,
    pub token: String,
    /// A stable id for this device; the server keeps its sync cursor. Empty for an anonymous
    /// device that always syncs from `initial_cursor`.
    pub device_id: String,
    pub platform: String,
    pub encoding: Encoding,
    /// Delays between reconnect attempts; the last one repeats.
    pub reconnect_delays: Vec<Duration>,
    /// Where to start syncing; `None` uses the device cursor the server stored.
    pub initial_cursor: Option<u64>,
    /// Entries per sync page (1-500).
    pub sync_page: u32,
    /// How long `send` waits for its PUBACK, across reconnects.
    pub send_timeout: Duration,
    /// Time allowed for the WebSocket connect and for the CONNACK.
    pub connect_timeout: Duration,
    /// Capacity of the event stream. A full stream holds the connection's reading back.
    pub event_capacity: usize,
    /// Acknowledge each message as it enters the event stream (the default). With `false` the
    /// application calls [`Client::ack`] once it has processed a message, and the server keeps
    /// resending (and the next sync returns) whatever it has not acknowledged.
    pub auto_ack: bool,
    /// Connect from this local address; `None` lets the system choose.
    pub local_addr: Option<std::net::IpAddr>,
    /// Other nodes of the same service (as `server`): when a connection cannot be opened, the
    /// next reconnect tries the next of `server` and these, in turn.
    pub other_servers: Vec<String>,
    /// TLS settings for `https://`/`wss://` servers; `None`: the public CAs
    /// ([`tls::public_roots`]). [`tls::with_extra_ca`] also trusts a private CA.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl ClientConfig {
    pub fn new(server: impl Into<String>, token: impl Into<String>) -> ClientConfig {
        ClientConfig {
            server: server.into(),
            token: token.into(),
            device_id: String::new(),
            platform: "rust".into(),
            encoding: Encoding::Protobuf,
            reconnect_delays: DEFAULT_RECONNECT_MS
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            initial_cursor: None,
            sync_page: 100,
            send_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            event_capacity: 1024,
            auto_ack: true,
            local_addr: None,
            other_servers: Vec::new(),
            tls: None,
        }
    }

    /// The WebSocket URL of the native endpoint.
    pub fn ws_url(&self) -> String {
        ws_url_of(&self.server)
    }

    /// The WebSocket URL of the `n`th of `server` and `other_servers` (wrapping around).
    pub fn ws_url_at(&self, n: usize) -> String {
        let count = 1 + self.other_servers.len();
        match n % count {
            0 => ws_url_of(&self.server),
            i => ws_url_of(&self.other_servers[i - 1]),
        }
    }
}

/// The WebSocket URL of the native endpoint of `server`.
fn ws_url_of(server: &str) -> String {
    let s = server.trim_end_matches('/');
    let s = if let Some(rest) = s.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = s.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if s.starts_with("ws://") || s.starts_with("wss://") {
        s.to_string()
    } else {
        format!("ws://{s}")
    };
    let after_scheme = s.split_once("://").map(|(_, r)| r).unwrap_or(&s);
    if after_scheme.contains('/') {
        s
    } else {
        format!("{s}/v1/ws")
    }
}

/// A message as this user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub uid: String,
    pub conversation_type: u32,
    /// The conversation from this user's side: for a private chat, the other user.
    pub target_id: String,
    pub sender_id: String,
    pub seq: u64,
    pub sent_time: i64,
    pub msg_type: String,
    /// The content, a JSON object as text.
    pub content: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub push_text: String,
    pub client_msg_id: String,
    pub inbox_seq: u64,
    /// Recalled by its sender: the content is `{}`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recalled: bool,
    /// Edited by its sender: the content is the latest version.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub edited: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
    /// Group messages: the members mentioned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mentioned_user_ids: Vec<String>,
    /// Group messages: everyone is mentioned.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mention_all: bool,
    /// A directed group message: the members it was addressed to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub directed_user_ids: Vec<String>,
}

impl Message {
    /// Whether the message mentions `user` (by name, or everyone).
    pub fn mentions(&self, user: &str) -> bool {
        self.mention_all || self.mentioned_user_ids.iter().any(|u| u == user)
    }
}

/// One emoji's reactions to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    pub emoji: String,
    pub user_ids: Vec<String>,
}

impl From<tidings_proto::v1::Message> for Message {
    fn from(m: tidings_proto::v1::Message) -> Message {
        Message {
            uid: m.uid,
            conversation_type: m.conversation_type,
            target_id: m.target_id,
            sender_id: m.sender_id,
            seq: m.seq,
            sent_time: m.sent_time,
            msg_type: m.msg_type,
            content: m.content,
            push_text: m.push_text,
            client_msg_id: m.client_msg_id,
            inbox_seq: m.inbox_seq,
            recalled: m.recalled,
            edited: m.edited,
            reactions: m
                .reactions
                .into_iter()
                .map(|r| Reaction {
                    emoji: r.emoji,
                    user_ids: r.user_ids,
                })
                .collect(),
            mentioned_user_ids: m.mentioned_user_ids,
            mention_all: m.mention_all,
            directed_user_ids: m.directed_user_ids,
        }
    }
}

/// Connection states, reported as they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Connected {
        user_id: String,
        session_id: String,
    },
    /// The connection was lost or closed by the server; the SDK reconnects.
    Disconnected {
        code: u32,
        reason: String,
    },
}

/// What the event stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Message(Message),
    /// One of this user's conversations changed (on this device or another): its new settings.
    Conversation(ConversationChange),
    /// This user deleted messages for themself (on this device or another).
    MessagesDeleted(MessagesDeleted),
    /// The other participant of a private conversation read up to a seq.
    ReadReceipt(ReadReceipt),
    /// A status message (typing) from another user: not stored, not in the inbox, at most once.
    Transient(Message),
    /// A watched user came online or went offline (at most once; see `subscribe_presence`).
    Presence(Presence),
    /// An item of a chatroom this connection is in, or news of it (at most once, in the room's
    /// seq order; see [`Client::join_chatroom`]).
    Chatroom(ChatroomEvent),
    /// This user's quiet hours changed (on this device or another). `inbox_seq`: acknowledge it
    /// like a message's.
    QuietHours {
        hours: QuietHours,
        inbox_seq: u64,
    },
    Status(Status),
    /// The session ended for good: kicked by another device, token revoked or expired, user
    /// banned. The SDK does not reconnect; the stream ends after this.
    Kicked {
        code: u32,
        reason: String,
    },
}

/// A message to send.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub conversation_type: u32,
    pub target_id: String,
    pub msg_type: String,
    /// A JSON object as text.
    pub content: String,
    pub push_text: String,
    /// Data for the app carried by the message's push notifications (at most 1,024 bytes).
    pub push_data: String,
    /// Chosen by the SDK when `None`.
    pub client_msg_id: Option<String>,
    /// For app-defined types: the message does not raise the recipient's unread count.
    pub uncounted: bool,
    /// Group messages: members to mention.
    pub mentions: Vec<String>,
    /// Group messages: mention everyone.
    pub mention_all: bool,
    /// Group messages: only these members (and the sender) get it. Empty: every member.
    pub directed_to: Vec<String>,
    /// Chatroom messages: how the message fares when the room falls behind.
    pub priority: Priority,
}

/// The priority class of a chatroom message: when the room's fan-out, or a member's connection,
/// falls behind, LOW messages are dropped first, then NORMAL ones; HIGH ones (the app server's
/// only) never are. Members learn of drops from gap markers ([`ChatroomEvent::Gap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    #[default]
    Normal,
    Low,
    High,
}

impl Priority {
    pub(crate) fn wire(self) -> i32 {
        match self {
            Priority::Normal => tidings_proto::v1::Priority::Normal as i32,
            Priority::Low => tidings_proto::v1::Priority::Low as i32,
            Priority::High => tidings_proto::v1::Priority::High as i32,
        }
    }
}

impl Outgoing {
    /// A private text message.
    pub fn text(to: &str, text: &str) -> Outgoing {
        Outgoing {
            conversation_type: tidings_proto::conversation_type::PRIVATE,
            target_id: to.into(),
            msg_type: "text".into(),
            content: serde_text(text),
            ..Default::default()
        }
    }

    /// A text message to a group.
    pub fn group_text(group: &str, text: &str) -> Outgoing {
        Outgoing {
            conversation_type: tidings_proto::conversation_type::GROUP,
            target_id: group.into(),
            msg_type: "text".into(),
            content: serde_text(text),
            ..Default::default()
        }
    }

    /// Mentions these members (group messages).
    pub fn mentioning(mut self, users: &[&str]) -> Outgoing {
        self.mentions = users.iter().map(|u| u.to_string()).collect();
        self
    }

    /// Mentions everyone (group messages).
    pub fn mentioning_all(mut self) -> Outgoing {
        self.mention_all = true;
        self
    }

    /// Addresses the message to these members only (group messages).
    pub fn directed_to(mut self, users: &[&str]) -> Outgoing {
        self.directed_to = users.iter().map(|u| u.to_string()).collect();
        self
    }
}

fn serde_text(text: &str) -> String {
    serde_json::json!({ "text": text }).to_string()
}

/// The server's answer to a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub uid: String,
    pub seq: u64,
    pub sent_time: i64,
    pub inbox_seq: u64,
    pub client_msg_id: String,
    /// The content as stored, when the server changed it (what the recipients get): sensitive
    /// words replaced (`notice` 21502), or rewritten by the app server (40025).
    pub replaced_content: Option<String>,
    /// Why the content stored differs from what was sent; 0 if it does not.
    pub notice: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The request needs a connection, and there is none (the SDK is reconnecting), or it was
    /// lost before the answer came. Sends are not affected: they wait and are resent.
    #[error("not connected")]
    NotConnected,
    /// The server refused the connection or the request (a protocol code and its text).
    #[error("{code}: {message}")]
    Refused { code: u32, message: String },
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("client is closed")]
    Closed,
    /// The server's answer lacked what the request asks for.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The request cannot be written in the connection's encoding (a field value the JSON
    /// mapping cannot express); it was not sent.
    #[error("cannot be encoded: {0}")]
    Unencodable(String),
    /// The TLS settings could not be made (an unreadable CA certificate).
    #[error("TLS: {0}")]
    Tls(String),
}

/// Counters, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Pushed or synced entries dropped because they had been presented already.
    pub duplicates_dropped: u64,
    /// Entries received with the dup flag.
    pub dup_flagged: u64,
    pub reconnects: u64,
    /// PUBLISH frames sent again after a reconnect.
    pub resent_publishes: u64,
    /// Chatroom items dropped because their seq had been presented already.
    pub chatroom_repeats: u64,
}

pub(crate) enum Command {
    Send(Outgoing, oneshot::Sender<Result<Sent, ClientError>>),
    /// A status message (typing), sent at most once, unanswered.
    SendStatus(tidings_proto::v1::Send),
    /// Remember the users whose presence to watch again after a reconnect.
    Watch(Vec<String>),
    /// A QUERY other than sync; answered with its QUERYACK (code 0) or the refusal.
    Query(
        tidings_proto::v1::query::Body,
        oneshot::Sender<Result<tidings_proto::v1::QueryAck, ClientError>>,
    ),
    SetAutoAck(bool),
    Ack(u64),
    Stats(oneshot::Sender<Stats>),
    /// Drop the current connection without a goodbye (as a network failure would).
    Drop,
    Close(oneshot::Sender<()>),
}

/// A connected client. Cloning shares the connection.
#[derive(Clone)]
pub struct Client {
    // Unbounded so that an application blocked on a full event stream can still acknowledge and
    // close: every command is one application call, and sends wait for their answers.
    commands: mpsc::UnboundedSender<Command>,
    /// Set by `close`, so the driver stops waiting on a full event stream.
    closing: std::sync::Arc<watch::Sender<bool>>,
    user_id: String,
    send_timeout: Duration,
}

/// The event stream of a client.
pub type Events = mpsc::Receiver<Event>;

impl Client {
    /// Connects, authenticates and starts syncing. Fails if the first attempt fails; after that
    /// the SDK reconnects by itself.
    pub async fn connect(config: ClientConfig) -> Result<(Client, Events), ClientError> {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events, event_rx) = mpsc::channel(config.event_capacity.max(1));
        let (ready, ready_rx) = oneshot::channel();
        let (closing, closing_rx) = watch::channel(false);
        let send_timeout = config.send_timeout;
        tokio::spawn(driver::run(config, command_rx, events, closing_rx, ready));
        let user_id = ready_rx.await.map_err(|_| ClientError::Closed)??;
        Ok((
            Client {
                commands,
                closing: std::sync::Arc::new(closing),
                user_id,
                send_timeout,
            },
            event_rx,
        ))
    }

    /// The authenticated user.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// Sends a message and waits until the server has committed it (its PUBACK).
    pub async fn send(&self, message: Outgoing) -> Result<Sent, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Send(message, reply))
            .map_err(|_| ClientError::Closed)?;
        self.answer(rx).await
    }

    /// Waits for the driver's answer to a command, at most the send timeout.
    pub(crate) async fn answer<T>(
        &self,
        rx: oneshot::Receiver<Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        match tokio::time::timeout(self.send_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// Sends a status message (never stored; only the target's connected devices get it, as
    /// [`Event::Transient`]). At most once: nothing tells whether it arrived, and one made while
    /// the SDK is reconnecting is dropped. Status messages are limited to 10 a second per user.
    pub fn send_status(&self, message: Outgoing) {
        let _ = self
            .commands
            .send(Command::SendStatus(tidings_proto::v1::Send {
                client_msg_id: String::new(),
                conversation_type: message.conversation_type,
                target_id: message.target_id,
                msg_type: message.msg_type,
                content: message.content,
                push_text: String::new(),
                uncounted: true,
                transient: true,
                ..Default::default()
            }));
    }

    /// Tells `user` this user is typing (a `typing` status message).
    pub fn typing(&self, user: &str) {
        self.send_status(Outgoing {
            msg_type: "typing".into(),
            content: serde_json::json!({ "typingContentType": "text" }).to_string(),
            ..Outgoing::text(user, "")
        });
    }

    /// Turns automatic acknowledgement off or on. With it off, messages are still presented but
    /// the server is not told, so it resends them.
    pub async fn set_auto_ack(&self, on: bool) {
        let _ = self.commands.send(Command::SetAutoAck(on));
    }

    /// Acknowledges the message at `inbox_seq` (for clients without automatic acknowledgement).
    pub async fn ack(&self, inbox_seq: u64) {
        let _ = self.commands.send(Command::Ack(inbox_seq));
    }

    pub async fn stats(&self) -> Stats {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Stats(reply)).is_err() {
            return Stats::default();
        }
        rx.await.unwrap_or_default()
    }

    /// Drops the connection abruptly, as a network failure would; the SDK then reconnects.
    pub async fn drop_connection(&self) {
        let _ = self.commands.send(Command::Drop);
    }

    /// Says goodbye to the server and stops. The event stream ends.
    pub async fn close(&self) {
        self.closing.send_replace(true);
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Close(reply)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// A fresh client message id: milliseconds and 64 random bits, in hex.
pub(crate) fn new_client_msg_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{ms:x}-{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_urls() {
        let url = |s: &str| ClientConfig::new(s, "").ws_url();
        assert_eq!(url("http://127.0.0.1:9091"), "ws://127.0.0.1:9091/v1/ws");
        assert_eq!(url("https://x.example/"), "wss://x.example/v1/ws");
        assert_eq!(url("127.0.0.1:1"), "ws://127.0.0.1:1/v1/ws");
        assert_eq!(url("ws://h:1/v1/ws"), "ws://h:1/v1/ws");
    }

    #[test]
    fn text_content_is_json() {
        assert_eq!(
            Outgoing::text("b", "say \"hi\"").content,
            r#"{"text":"say \"hi\""}"#
        );
    }
}
