//! The Tidings native wire protocol: the generated frame types (one `.proto` schema), the two
//! encodings of every frame (protobuf in binary WebSocket messages, proto3 JSON in text ones),
//! and the closed set of numeric codes a client can see.
//!
//! Everything here is pure: bytes in, a typed frame or a typed error out. This crate must not
//! depend on any other Tidings crate, on I/O, or on a clock.
//!
//! Layout:
//! - [`v1`]: the generated types (`Frame`, `Connect`, `Publish`, ...).
//! - [`codec`]: [`codec::decode`] with a maximum frame size, and [`codec::encode`], which
//!   returns an error rather than bytes when a frame cannot be written.
//! - [`codes`]: [`codes::Code`], the numeric error and close codes with their fixed texts.

pub mod codec;
pub mod codes;

/// Generated protocol types. Field meanings are documented in `proto/tidings.proto` and
/// `docs/protocol.md`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/tidings.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/tidings.v1.serde.rs"));
}

pub use codec::{DecodeError, EncodeError, Encoding, FrameKind};
pub use codes::Code;

/// The message type of a user event that reports a conversation's new settings.
pub const CONVERSATION_EVENT_TYPE: &str = "tidings:conversation";

/// The message type of a user event that reports messages the user deleted for themself.
pub const DELETED_EVENT_TYPE: &str = "tidings:deleted";

/// The message type of a user event that tells a user how far the other participant of a private
/// conversation has read.
pub const READ_EVENT_TYPE: &str = "tidings:read";

/// The message type of the status message that reports a watched user going online or offline.
pub const PRESENCE_EVENT_TYPE: &str = "tidings:presence";

/// The message type of a user event that reports new quiet hours.
pub const QUIET_HOURS_EVENT_TYPE: &str = "tidings:quiet-hours";

/// The message type of group notifications (members joined or left, profile changes, …),
/// stored in the group's conversation by the server.
pub const GROUP_EVENT_TYPE: &str = "tidings:group";

/// The message type of chatroom notices (members joined, left or were kicked, entries changed,
/// mutes, the room destroyed), in the room's stream with a seq of their own.
pub const CHATROOM_EVENT_TYPE: &str = "tidings:chatroom";

/// The message type of a gap marker: the room's messages in a seq range that were dropped for
/// this connection (the room or the connection fell behind), with their count.
pub const GAP_EVENT_TYPE: &str = "tidings:gap";

/// The only protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Conversation types, numbered as in the product's lineage (seed 004).
pub mod conversation_type {
    /// Not a conversation: the user's own event stream (conversation changes made on another of
    /// the user's devices). Such messages carry a `tidings:` message type.
    pub const USER_EVENT: u32 = 0;
    pub const PRIVATE: u32 = 1;
    pub const GROUP: u32 = 3;
    pub const CHATROOM: u32 = 4;
    pub const SYSTEM: u32 = 6;
}
