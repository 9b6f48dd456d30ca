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

pub mod batch;
pub mod conformance;
pub mod metrics;
pub mod rows;
pub mod rules;

use async_trait::async_trait;

/// A backend failure. The engine turns it into a server-error code; its text never reaches a
/// client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage backend error: {0}")]
    Backend(String),
    /// The database server could not be reached (its connection failed, timed out, or was
    /// refused): this node cannot store anything now, though another may.
    #[error("the database cannot be reached: {0}")]
    Unreachable(String),
    #[error("storage is closed")]
    Closed,
}

impl StoreError {
    /// The same failure again, for a second caller of one failed batch.
    pub fn again(&self) -> StoreError {
        match self {
            StoreError::Backend(e) => StoreError::Backend(e.clone()),
            StoreError::Unreachable(e) => StoreError::Unreachable(e.clone()),
            StoreError::Closed => StoreError::Closed,
        }
    }
}

/// The private conversation type (as in the protocol): the one type whose target depends on
/// who looks at it, so the store must know it.
pub const PRIVATE: u32 = 1;
/// The system conversation type: messages from a system account to one user, whose target
/// (as the user sees it) is the sender, as in a private conversation.
pub const SYSTEM: u32 = 6;

/// The group conversation type: its messages go to the group's members, whom the store knows.
pub const GROUP: u32 = 3;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A message as stored: conversation-wide, not relative to a viewer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// Recalled by its sender: `content` and `push_text` are emptied (`{}` and "").
    pub recalled: bool,
    /// Edited by its sender: `content` is the latest version.
    pub edited: bool,
    /// Reactions, by emoji, each with the users who reacted, in order.
    pub reactions: Vec<Reaction>,
    /// Users the message mentions (in a group), in the order given.
    pub mentions: Vec<String>,
    /// The message mentions everyone in the group.
    pub mention_all: bool,
    /// A directed group message: only these members (and the sender) see it. Empty: everyone.
    pub audience: Vec<String>,
}

/// One emoji's reactions to a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaction {
    pub emoji: String,
    pub users: Vec<String>,
}

/// A change to a stored message by a participant, recorded as a new message of the conversation
/// (`event`, whose type and content the store fills in) so every device converges through sync.
#[derive(Debug, Clone)]
pub struct Amend {
    /// The acting user.
    pub by: String,
    pub conversation_id: String,
    pub seq: u64,
    pub action: AmendAction,
    pub event: AppendMessage,
    /// The other participant, whose blocklist refuses the amend if it holds `by`.
    pub blocking_recipient: Option<String>,
    /// Made by the app server: in a group, `by` need not be a member who may send (the event
    /// goes to the members as they are).
    pub moderated: bool,
}

/// The message types of the events that record an amend (recall, edit, reaction) in the
/// conversation: they change another message, so they are never a conversation's `newest` or
/// `latest` (see [`ConversationRecord`]).
pub const AMEND_EVENT_TYPES: [&str; 3] = ["tidings:recall", "tidings:edit", "tidings:reaction"];

/// [`AMEND_EVENT_TYPES`] as a list of SQL string literals (`'a', 'b', 'c'`) for the backends'
/// queries (the types hold no quotes).
pub fn amend_event_types_sql() -> String {
    let quoted: Vec<String> = AMEND_EVENT_TYPES.iter().map(|t| format!("'{t}'")).collect();
    quoted.join(", ")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmendAction {
    /// The sender replaces the message with a tombstone, if it was sent at or after
    /// `not_before` (ms; 0: any time).
    Recall { not_before: i64 },
    /// The sender replaces the content (and the text search finds it by).
    Edit {
        content: String,
        search_text: String,
    },
    /// Any participant adds (or removes) a reaction.
    React { emoji: String, add: bool },
}

impl AmendAction {
    /// The message type of the event that records this amend (one of [`AMEND_EVENT_TYPES`]).
    pub fn event_type(&self) -> &'static str {
        match self {
            AmendAction::Recall { .. } => AMEND_EVENT_TYPES[0],
            AmendAction::Edit { .. } => AMEND_EVENT_TYPES[1],
            AmendAction::React { .. } => AMEND_EVENT_TYPES[2],
        }
    }
}

/// Why an amend was refused; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmendRefusal {
    /// No such message (or it is itself an event).
    NotFound,
    /// Only the sender may recall or edit.
    NotSender,
    /// The recall window has passed.
    TooLate,
    /// The message was recalled.
    Recalled,
    /// The other participant blocks the acting user.
    Blocked,
    /// The message has as many reactions as it may (see [`MAX_EMOJI_PER_MESSAGE`] and
    /// [`MAX_REACTIONS_PER_USER`]).
    TooManyReactions,
    /// In a group, the acting user may not send (see [`AppendMessage::to_group`]).
    Group(GroupRefusal),
    /// An edit or a reaction of an end-to-end encrypted message ([`MLS_TYPE`]): it would be in
    /// the clear. Members edit and react inside the encryption.
    Encrypted,
}

/// The most different emoji on one message.
pub const MAX_EMOJI_PER_MESSAGE: u64 = 20;
/// The most reactions one user may put on one message.
pub const MAX_REACTIONS_PER_USER: u64 = 5;
/// The most push tokens one user has: a token that would be one more is refused
/// ([`WriteResult::PushTokensFull`]), so that a client inventing tokens can neither grow the
/// store nor multiply the requests each of its messages makes.
pub const MAX_PUSH_TOKENS_PER_USER: u64 = 20;

/// The most one-time MLS key packages one device keeps in the directory
/// ([`KeyPackagesFull::Device`] past it).
pub const MAX_KEY_PACKAGES_PER_DEVICE: u64 = 100;
/// The most devices of one user with key packages in the directory
/// ([`KeyPackagesFull::Devices`] past it).
pub const MAX_KEY_PACKAGE_DEVICES: u64 = 20;

/// An MLS key package a device uploaded, checked by the engine (see `tidings-mls`): the store
/// keeps its bytes and the few facts the directory's rules need ([`rules::keys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPackageRecord {
    /// Its `KeyPackageRef` (RFC 9420 §5.2): unique per key package.
    pub reference: Vec<u8>,
    /// The TLS-serialized `MLSMessage`.
    pub data: Vec<u8>,
    pub last_resort: bool,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
}

/// An upload of a device's key packages (see [`WriteOp::PublishKeyPackages`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPackageUpload {
    pub user: String,
    pub device: String,
    pub packages: Vec<KeyPackageRecord>,
    /// Remove the device's earlier key packages first.
    pub replace: bool,
    /// Seconds since the Unix epoch.
    pub now: i64,
}

/// A key package a claim handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedKeyPackage {
    pub device: String,
    pub data: Vec<u8>,
    pub last_resort: bool,
}

/// Why an upload of key packages was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPackagesFull {
    /// The device would have more than [`MAX_KEY_PACKAGES_PER_DEVICE`] one-time key packages.
    Device,
    /// The user has key packages on [`MAX_KEY_PACKAGE_DEVICES`] other devices.
    Devices,
}

/// A new message to append. `uid` and `sent_time` are proposed by the engine; if the
/// `(sender, client_msg_id)` pair already exists, the stored message is returned instead.
#[derive(Debug, Clone, Default)]
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
    /// Data for the app carried by the message's notifications: kept with what is due (see
    /// [`rules::push::push_due`]), not with the message.
    pub push_data: String,
    pub client_msg_id: String,
    /// A digest of everything the client chose (target, type, content, push text): a resend with
    /// the same client message id is a duplicate only if its digest matches.
    pub digest: String,
    /// Users who get an inbox entry for this message (each once), in the order results report.
    pub recipients: Vec<String>,
    /// Whether the message raises its recipients' unread counts.
    pub counted: bool,
    /// A recipient whose blocklist refuses the message if it holds the sender.
    pub blocking_recipient: Option<String>,
    /// The text search finds the message by; empty: not searchable.
    pub search_text: String,
    /// Store nothing new: answer an earlier append of the same `(sender, client_msg_id)` if
    /// there is one, [`WriteResult::NotStored`] otherwise.
    pub only_if_stored: bool,
    /// Users for whom this message's conversation is in their conversation list, with the
    /// conversation's target as each of them sees it. Their conversation rows are created on
    /// the conversation's first message.
    pub participants: Vec<Participant>,
    /// A group message: the store checks that the sender may send to the group `target`
    /// (a member, not muted) and adds every member to `recipients` — only the `audience`'s
    /// members, if one is given — in the same transaction.
    pub to_group: bool,
    pub mentions: Vec<String>,
    pub mention_all: bool,
    /// Members who see a directed group message (the sender always does). Empty: everyone.
    pub audience: Vec<String>,
    /// An MLS group message of an end-to-end encrypted conversation: stored only in its turn
    /// ([`rules::e2ee::order`]), decided in the append's transaction.
    pub mls: Option<MlsOrdering>,
}

/// The message type of an end-to-end encrypted conversation's messages: an MLS message
/// (docs/e2ee.md) that the server orders and delivers but cannot read.
pub const MLS_TYPE: &str = "mls";

/// What a message of an end-to-end encrypted conversation says of its MLS group, read from the
/// MLS message's public header: all the store orders it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlsOrdering {
    pub group_id: Vec<u8>,
    pub epoch: u64,
    pub kind: MlsKind,
}

/// The content type of an MLS group message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlsKind {
    Application,
    Proposal,
    Commit,
}

/// Why an MLS group message was not stored (see [`rules::e2ee::order`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochRefusal {
    /// The conversation has no MLS group yet, and the message is not the commit that starts it.
    NoGroup,
    /// The conversation's MLS group is another one.
    OtherGroup,
    /// Another commit came first: `current` is the group's epoch now.
    Stale { current: u64 },
}

/// The canonical conversation id of a group's conversation.
pub fn group_conversation_id(group: &str) -> String {
    format!("{GROUP}:{group}")
}

/// Who makes and manages a group. Every kind lives in one table with one id space and takes
/// the same paths (fan-out, history, membership views, receipts, notifications); the kind only
/// decides who may change the group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum GroupKind {
    /// Made and managed by the app server (the HTTP API).
    #[default]
    Managed,
    /// Made by a user naming it when connecting (seed 001's AUTH); any user may join it so.
    Open,
    /// Made and managed by its users (seed 004's discussions).
    Discussion,
}

impl GroupKind {
    /// The name on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::Managed => "managed",
            GroupKind::Open => "open",
            GroupKind::Discussion => "discussion",
        }
    }

    /// The kind named `s`, if any.
    pub fn parse(s: &str) -> Option<GroupKind> {
        match s {
            "managed" => Some(GroupKind::Managed),
            "open" => Some(GroupKind::Open),
            "discussion" => Some(GroupKind::Discussion),
            _ => None,
        }
    }
}

/// A group's profile and state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupInfo {
    pub id: String,
    pub kind: GroupKind,
    pub name: String,
    pub portrait: String,
    /// App-defined profile data: a JSON object as text, or empty.
    pub extra: String,
    pub owner: String,
    /// When it was created (ms).
    pub created: i64,
    /// When it was dismissed (ms); 0 while it lives.
    pub dismissed: i64,
    /// Until when (ms) only the owner may send; 0: not muted, `i64::MAX`: until unmuted.
    pub muted_until: i64,
    pub member_count: u64,
    /// A discussion: whether any member may add members (true, the default) or only its owner.
    /// Stored for every kind; only discussions use it.
    pub invite_open: bool,
}

/// A member of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMember {
    pub user: String,
    /// When the user joined (ms).
    pub joined: i64,
    /// Until when (ms) the member may not send; 0: not muted, `i64::MAX`: until unmuted.
    pub muted_until: i64,
}

/// A change to a group, made by the app server or by a member (see [`Permit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupAction {
    /// Creates the group with its owner and first members (the owner is always one).
    Create {
        kind: GroupKind,
        owner: String,
        name: String,
        portrait: String,
        extra: String,
        members: Vec<String>,
    },
    /// Changes the profile fields given.
    Update {
        name: Option<String>,
        portrait: Option<String>,
        extra: Option<String>,
        invite_open: Option<bool>,
    },
    AddMembers(Vec<String>),
    RemoveMembers(Vec<String>),
    /// A member leaves. An owner who leaves hands the group to the longest-standing member;
    /// the last member to leave dismisses it.
    Quit(String),
    TransferOwner(String),
    /// Mutes one member (or, with `None`, everyone but the owner) until a time (ms; 0 unmutes).
    Mute {
        user: Option<String>,
        until: i64,
    },
    Dismiss,
    /// A user names the group when connecting (seed 001): a group that does not exist is made
    /// as [`GroupKind::Open`] with the user as owner and only member; an open group is joined;
    /// a group of another kind is answered unchanged for a member and refused
    /// ([`GroupRefusal::NotMember`]) to anyone else.
    Join(String),
}

/// Who may make a change. It is checked in the change's transaction, against the group as it
/// is then ([`rules::groups::decide`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Permit {
    /// The app server: any change to a group of any kind. (A member's `Quit` and a user's
    /// `Join` carry their own rules and use this too.)
    #[default]
    App,
    /// A user managing a discussion: the group must be a [`GroupKind::Discussion`] and `by` a
    /// member of it.
    Member,
    /// As [`Permit::Member`], and `by` must be the discussion's owner.
    Owner,
    /// As [`Permit::Member`], and while the discussion's invitations are closed `by` must be
    /// its owner.
    Inviter,
}

/// A change to a group, with the notification message that records it in the group's
/// conversation.
#[derive(Debug, Clone)]
pub struct GroupChange {
    pub group: String,
    /// Who made the change (the notification's sender).
    pub by: String,
    pub action: GroupAction,
    /// Who may make it.
    pub permit: Permit,
    /// The most members the group may have; an add (or create) beyond it is refused whole.
    pub max_members: u64,
    /// The notification: conversation and sender set by the engine; the store fills its
    /// content and recipients (the members after the change, and those who just left).
    pub notification: AppendMessage,
}

/// Why a group change or a group message was refused; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRefusal {
    NotFound,
    Dismissed,
    /// Create: the id is taken.
    Exists,
    /// The user is not a member.
    NotMember,
    /// The sender is muted, or the group is.
    Muted,
    /// The group would have more than its maximum of members.
    Full,
    /// A user's change ([`Permit::Member`] and the like) to a group that is not a discussion.
    NotDiscussion,
    /// Only the discussion's owner may make this change.
    NotOwner,
    /// The discussion's invitations are closed: only its owner may add members.
    InvitesClosed,
}

/// A page of a group's members, in the order they joined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMembers {
    pub members: Vec<GroupMember>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<u64>,
}

/// Who of a group message's audience has read it (their read position is at or past it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupReceipt {
    pub sender: String,
    /// In id order.
    pub read: Vec<String>,
    pub unread: Vec<String>,
}

/// A user's side of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub user: String,
    /// The conversation's target as this user sees it (for a private chat, the other user).
    pub target: String,
}

/// A user's settings for one conversation. It is also the content (JSON, camelCase) of the
/// user event that reports a change to the user's other devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSettings {
    pub conversation_type: u32,
    pub target_id: String,
    /// The user has read up to this conversation seq.
    pub read_seq: u64,
    pub pinned: bool,
    pub muted: bool,
    /// The conversation is out of the list while its newest seq is at most this.
    pub removed_seq: u64,
    /// History up to this seq is cleared for this user.
    #[serde(default)]
    pub cleared_seq: u64,
    /// The user sees the conversation only up to this seq (0: no bound): they left the group.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub until_seq: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A change to one of a user's conversations (created if the user has none yet).
#[derive(Debug, Clone, Default)]
pub struct ConversationUpdate {
    pub user: String,
    pub conversation_type: u32,
    pub target: String,
    pub conversation_id: String,
    /// Raise the read position to this seq (bounded by the newest message); 0 leaves it.
    pub read_seq: u64,
    /// Raise the read position to the newest message sent at or before this time; 0 leaves it.
    pub read_time: i64,
    pub pinned: Option<bool>,
    pub muted: Option<bool>,
    /// Remove from the list until the next message, and read everything up to now.
    pub remove: bool,
    /// Clear the history sent at or before this time (ms) for this user, reading it; 0 leaves it.
    pub clear_before_time: i64,
    /// The user event that reports the change: the store appends it to the user's inbox with
    /// the resulting settings as its content (which it fills in).
    pub event: AppendMessage,
    /// A read receipt for the other participant: if the read position moved, the store appends
    /// it to their inbox with `{"conversationType","targetId" (this user),"readSeq"}` as its
    /// content, and raises their side's `peer_read_seq` to it.
    pub receipt: Option<AppendMessage>,
}

/// One of a user's conversations as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRecord {
    pub settings: ConversationSettings,
    pub conversation_id: String,
    /// The newest message in the conversation, not counting amend events (see
    /// [`AMEND_EVENT_TYPES`]): it places the conversation in the list.
    pub newest: Option<StoredMessage>,
    /// The newest message the user still sees (not cleared or deleted for them), not counting
    /// amend events: a reaction or an edit to an older message neither replaces it nor moves the
    /// conversation, and a recall of this message leaves it here, recalled.
    pub latest: Option<StoredMessage>,
    /// In a private conversation, how far the other participant has read (a conversation seq),
    /// as their read receipts told this user: a silent read is not in it. 0 otherwise.
    pub peer_read_seq: u64,
    /// Counted messages from others after the read position (and not deleted for the user).
    pub unread: u64,
    /// Of the messages from others after the read position, those that mention the user (or
    /// everyone).
    pub mentioned: u64,
}

impl ConversationRecord {
    /// Whether the conversation is out of the list (removed, and nothing arrived since).
    pub fn removed(&self) -> bool {
        self.newest
            .as_ref()
            .is_none_or(|m| m.seq <= self.settings.removed_seq)
    }
}

/// Where a page of history starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryFrom {
    /// Messages with a seq below this (`u64::MAX`: the newest), newest first.
    BeforeSeq(u64),
    /// Messages with a seq above this, oldest first.
    AfterSeq(u64),
    /// Messages sent before this time (ms), newest first.
    BeforeTime(i64),
    /// Messages sent after this time (ms), oldest first.
    AfterTime(i64),
}

/// A page of one conversation's messages in seq order: those with a seq above `after`, at most
/// `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub after: u64,
    pub limit: usize,
}

/// A search of the messages a user can see: those whose search text contains `text`
/// (case-insensitive for ASCII), in `conversation_id` if given, newest first, at most `limit`,
/// starting below the `before` position of an earlier page (0: from the newest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub text: String,
    pub conversation_id: Option<String>,
    pub before: u64,
    pub limit: usize,
}

/// A page of a conversation's history as a user sees it: at most `limit` messages from
/// `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub conversation_id: String,
    pub from: HistoryFrom,
    pub limit: usize,
}

impl SearchQuery {
    pub fn new(text: &str, conversation_id: Option<&str>, before: u64, limit: usize) -> Self {
        SearchQuery {
            text: text.to_string(),
            conversation_id: conversation_id.map(str::to_string),
            before,
            limit,
        }
    }
}

impl HistoryQuery {
    pub fn new(conversation_id: &str, from: HistoryFrom, limit: usize) -> Self {
        HistoryQuery {
            conversation_id: conversation_id.to_string(),
            from,
            limit,
        }
    }
}

/// A page of search results.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchPage {
    /// Newest first.
    pub messages: Vec<StoredMessage>,
    /// Each message's position: pass one as `before` to continue after that message.
    pub positions: Vec<u64>,
    /// Pass as `before` for the next page; `None` on the last page.
    pub next: Option<u64>,
}

/// A page of one conversation's history as a user sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// In increasing seq order.
    pub messages: Vec<StoredMessage>,
    /// More of the user's messages exist beyond the page, in the direction it was read.
    pub has_more: bool,
}

/// Which of a user's conversations to read.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    /// Only these types; empty means all.
    pub types: Vec<u32>,
    /// Only this one `(type, target)`.
    pub one: Option<(u32, String)>,
    /// Only those whose settings changed or that got a message after this inbox seq.
    pub changed_since: Option<u64>,
}

/// The answer to a conversation read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversations {
    /// In no particular order.
    pub conversations: Vec<ConversationRecord>,
    /// The user's newest inbox seq, read in the same snapshot: a later `changed_since` read
    /// from here reports every change after this answer.
    pub version: u64,
}

/// A chatroom the app server created, as the store keeps it until the app server destroys it. A
/// room made by a first join lives in the engine's memory only, and so do every room's members,
/// messages and entries: chatrooms are online-only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatroomRecord {
    pub id: String,
    pub name: String,
    /// App-defined: a JSON object as text, or empty.
    pub extra: String,
    /// When it was created (ms).
    pub created: i64,
    pub max_members: u64,
    /// Until when (ms) only the app server may send; 0: not muted.
    pub muted_until: i64,
}

/// A user's standing in a kept chatroom: banned (may not join) or muted (may not send) until a
/// time (ms; 0: not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatroomUser {
    pub user: String,
    pub banned_until: i64,
    pub muted_until: i64,
}

/// A built-in account: a user who signs in with a password instead of a token from an app
/// server. The account's name is the user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub user: String,
    /// The password's hash as a PHC string (`$argon2id$v=19$...`); the store only compares it.
    pub password_hash: String,
    /// When it was created (ms).
    pub created: i64,
}

/// An operator of the admin console. Operators are a namespace of their own: an operator's name
/// is never a user id or an account's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    pub name: String,
    /// The password's hash as a PHC string (`$argon2id$v=19$...`); the store only keeps it.
    pub password_hash: String,
    /// When it was created or its password last set (ms).
    pub created: i64,
}

/// A signed-in operator's session. The store keeps only a hash of the session's secret id, so
/// what it holds cannot be used as a cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSessionRecord {
    /// The hex SHA-256 of the session id the operator's cookie carries.
    pub id_hash: String,
    pub operator: String,
    /// When the operator signed in (ms).
    pub created: i64,
    /// When the session ends unless used before (ms).
    pub expires: i64,
}

/// One entry of the admin console's audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEntry {
    /// Increasing with each entry; set by the store (ignored when appending).
    pub id: u64,
    /// When it happened (ms).
    pub time: i64,
    /// Who did it: an operator's name, or `cli` for the command line.
    pub operator: String,
    /// What was done (`user.ban`, `operator.add`, ...).
    pub action: String,
    /// What it was done to (a user, group or chatroom id, an operator's name), or empty.
    pub target: String,
    /// The request and its outcome: a JSON object as text.
    pub details: String,
}

/// A write of the admin console's (see [`WriteOp::Admin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminOp {
    /// Create an operator, or replace an existing one's password hash, ending their sessions.
    SetOperator(OperatorRecord),
    /// Remove an operator and end their sessions.
    RemoveOperator { name: String },
    /// Start a session, if its operator exists; sessions that expired before `now` are
    /// forgotten meanwhile.
    CreateSession {
        session: AdminSessionRecord,
        now: i64,
    },
    /// Move a session's expiry (never past its operator's removal).
    TouchSession { id_hash: String, expires: i64 },
    /// End a session.
    EndSession { id_hash: String },
    /// Append an entry to the audit log.
    Audit(AuditEntry),
}

/// The outcome of an [`AdminOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminResult {
    /// `created` is false if the operator existed (their password was replaced).
    OperatorSet {
        created: bool,
    },
    OperatorRemoved {
        removed: bool,
    },
    /// `created` is false if the operator does not exist: nothing was written.
    SessionCreated {
        created: bool,
    },
    SessionTouched,
    SessionEnded,
    /// The appended entry's id.
    Audited {
        id: u64,
    },
}

/// One write in a batch.
// Nearly all ops are appends; boxing them would add an allocation per message.
#[allow(clippy::large_enum_variant)]
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
    BumpTokenVersion {
        user: String,
    },
    /// Set the profile fields given.
    SetProfile {
        user: String,
        name: Option<String>,
        portrait: Option<String>,
        extra: Option<String>,
    },
    /// Ban a user (or lift the ban).
    SetBanned {
        user: String,
        banned: bool,
    },
    /// Add a sensitive word (or change it): messages holding it are refused, or, with a
    /// replacement, stored with the word replaced. At most `max` words are kept.
    SetSensitiveWord {
        word: String,
        replacement: Option<String>,
        max: u64,
    },
    RemoveSensitiveWord {
        word: String,
    },
    /// Change a user's conversation settings and append the event that reports it.
    UpdateConversation(Box<ConversationUpdate>),
    /// Record when a user was last connected (ms); never moves back.
    SetLastSeen {
        user: String,
        time: i64,
    },
    /// Save a device's push token: one row per `(provider, token)`, so saving a token again
    /// replaces it, even another user's (a phone or a browser profile that signed in as someone
    /// else). A token saved for a named device also replaces that device's earlier token of the
    /// same provider and app (a provider that rotates tokens hands out a new one). A token that
    /// replaces none of the user's is refused once they have [`MAX_PUSH_TOKENS_PER_USER`]
    /// (`rules::lists::full`).
    SavePushToken(PushTokenRecord),
    /// Upload MLS key packages of `user`'s `device` (the directory's rule is
    /// [`rules::keys::publish`]); with `replace`, the device's earlier ones are removed first
    /// (an empty upload with `replace` removes the device from the directory). `now` is in
    /// seconds.
    PublishKeyPackages(KeyPackageUpload),
    /// Hand out one key package of each of `user`'s devices ([`rules::keys::claim`]).
    ClaimKeyPackages {
        user: String,
        now: i64,
        /// Devices of the user whose key packages are not handed out.
        except: Vec<String>,
    },
    /// Remove the token; only if it is `user`'s when `user` is given.
    RemovePushToken {
        provider: PushProvider,
        token: String,
        user: Option<String>,
    },
    /// Forget the notifications due for these `(user, inbox_seq)` entries: sent, or decided
    /// against (see [`rules::push_due`]).
    PushDone {
        due: Vec<(String, u64)>,
    },
    /// Set a user's quiet hours: `minutes` (0: none) from `start_minute` after midnight UTC.
    SetQuietHours {
        user: String,
        start_minute: u32,
        minutes: u32,
    },
    /// Recall, edit or react to a message.
    Amend(Box<Amend>),
    /// Add `other` to `user`'s blocklist (or remove it), unless the list holds `max` already.
    SetBlocked {
        user: String,
        other: String,
        blocked: bool,
        max: u64,
    },
    /// Create, change or dismiss a group, or change its members.
    Group(Box<GroupChange>),
    /// Delete messages of a conversation for one user only (others keep them).
    DeleteForUser {
        user: String,
        conversation_id: String,
        seqs: Vec<u64>,
    },
    /// Keep a chatroom, unless one with its id is kept already.
    CreateChatroom(ChatroomRecord),
    /// Replace a kept chatroom's record (nothing if it is not kept).
    SetChatroom(ChatroomRecord),
    /// Forget a kept chatroom and its users' standings.
    DeleteChatroom {
        id: String,
    },
    /// Set a user's standing in a kept chatroom (both times 0: forget it).
    SetChatroomUser {
        room: String,
        standing: ChatroomUser,
    },
    /// Create an account and record its user as an account's (`UserState::account`; as a
    /// profile would, `user_ids_after` lists it), with token version 1, so that no token minted
    /// before (at version 0, a user without a record's) is current. Refused (`fresh: false`,
    /// nothing written) if the id has any trace in the store: a record (an account, living or
    /// deleted, a profile, a ban, a token revocation, a token minted for it, a recorded
    /// connection), an inbox, a conversation, a group membership, a message it sent, a device
    /// cursor, messages it deleted, a blocklist, a chatroom standing or a push subscription.
    /// The check is made in the write's transaction, so nothing written to the id before the
    /// account is given to it. An id an app server, a token or an earlier account used is never
    /// given to a new account.
    CreateAccount(AccountRecord),
    /// Record `user` (a `users` row, if it has none) and answer what the record says of tokens
    /// for it: done before a token is minted for an app server's user, so the id is never
    /// given to an account afterwards, and an account's id is known as such.
    RecordUser {
        user: String,
    },
    /// If `user`'s account has the password hash `expected`: replace the hash with
    /// `password_hash`, or delete the account (`None`), and increment the user's token version
    /// in the same transaction, revoking every earlier token.
    ChangeAccount {
        user: String,
        expected: String,
        password_hash: Option<String>,
    },
    /// A change to the admin console's operators, their sessions or its audit log.
    Admin(AdminOp),
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
        /// Whether the append made notifications due (see [`rules::push`]): wrote a row for
        /// a recipient with a push token. False: nobody need look for any.
        push_due: bool,
    },
    /// The `(sender, client_msg_id)` pair exists with a different digest. Nothing was written.
    ClientMsgIdConflict,
    CursorSet,
    /// `fresh` is false if the nonce was already used and has not expired.
    Nonce {
        fresh: bool,
    },
    TokenVersion(u64),
    ProfileSet,
    BannedSet,
    /// The sensitive word list changed (or already was as asked).
    WordsSet,
    /// The sensitive word list is full: nothing was written.
    WordsFull,
    Deleted,
    LastSeenSet,
    QuietHoursSet,
    PushTokenSaved,
    /// The user has [`MAX_PUSH_TOKENS_PER_USER`] tokens and this one replaces none of them:
    /// nothing was written.
    PushTokensFull,
    /// The device's key packages are stored: `stored` one-time ones.
    KeyPackagesPublished {
        stored: u64,
    },
    /// Nothing was stored.
    KeyPackagesRefused(KeyPackagesFull),
    /// An MLS group message that was not stored, as it is out of turn.
    EpochRefused(EpochRefusal),
    /// One key package per device of the user that has one, in device order.
    KeyPackagesClaimed(Vec<ClaimedKeyPackage>),
    /// Whether a token was removed.
    PushTokenRemoved {
        removed: bool,
    },
    PushDone,
    /// The recipient blocks the sender: nothing was written.
    Blocked,
    /// An `only_if_stored` append found no earlier one: nothing was written.
    NotStored,
    /// The message in its new state, and the event appended with its inbox entries (none when
    /// nothing changed: a second recall, a reaction already there).
    Amended {
        message: StoredMessage,
        event: Option<(StoredMessage, Vec<(String, u64)>)>,
    },
    AmendRefused(AmendRefusal),
    /// The group as it now is, and the notification with its inbox entries (none when nothing
    /// changed: adding members already there).
    GroupChanged {
        group: GroupInfo,
        notification: Option<(StoredMessage, Vec<(String, u64)>)>,
    },
    GroupRefused(GroupRefusal),
    /// The blocklist changed (or already was as asked).
    BlockSet,
    /// `fresh` is false if a chatroom with the id was kept already; nothing was written then.
    ChatroomCreated {
        fresh: bool,
    },
    ChatroomSet,
    /// The blocklist is full: nothing was written.
    BlocklistFull,
    /// The conversation's settings after the update, and the appended user event with the
    /// user's inbox seq for it.
    ConversationUpdated {
        settings: ConversationSettings,
        event: StoredMessage,
        inbox_seq: u64,
        /// The read receipt appended for the other participant, with its inbox seq there.
        receipt: Option<(StoredMessage, u64)>,
    },
    /// `fresh` is false if the id has a trace in the store (see [`WriteOp::CreateAccount`]);
    /// nothing was written then.
    AccountCreated {
        fresh: bool,
    },
    /// The user's record, after [`WriteOp::RecordUser`].
    UserRecorded(UserRecord),
    /// The user's new token version; `None` if the account does not exist or its hash was not
    /// the one expected (it changed meanwhile), and nothing was written.
    AccountChanged {
        token_version: Option<u64>,
    },
    /// The outcome of a [`WriteOp::Admin`].
    Admin(AdminResult),
}

/// The push service that reaches a device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PushProvider {
    /// Web Push (RFC 8030): a browser's subscription.
    #[default]
    WebPush,
    /// Firebase Cloud Messaging (HTTP v1).
    Fcm,
    /// Apple Push Notification service.
    Apns,
}

impl PushProvider {
    /// The name stored and spoken on the wire: `webpush`, `fcm` or `apns`.
    pub fn as_str(self) -> &'static str {
        match self {
            PushProvider::WebPush => "webpush",
            PushProvider::Fcm => "fcm",
            PushProvider::Apns => "apns",
        }
    }

    /// The provider of a name [`PushProvider::as_str`] gives.
    pub fn parse(name: &str) -> Option<PushProvider> {
        match name {
            "webpush" => Some(PushProvider::WebPush),
            "fcm" => Some(PushProvider::Fcm),
            "apns" => Some(PushProvider::Apns),
            _ => None,
        }
    }
}

/// A device's push token: how one push service reaches one device of one user while the device
/// is not connected (or its app is in the background).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushTokenRecord {
    pub user: String,
    /// The device id it was registered for; empty when none was named (an anonymous
    /// connection, or an app server that did not say).
    pub device: String,
    pub provider: PushProvider,
    /// An FCM registration token, an APNs device token (hex), or a Web Push endpoint URL.
    pub token: String,
    /// The app's bundle id (the APNs topic) or package name; empty for the server's default.
    pub app_id: String,
    /// An APNs token of a development build: sent through the sandbox environment.
    pub sandbox: bool,
    /// The device's language (a BCP 47 tag), for localised texts; empty if not given.
    pub locale: String,
    /// Web Push only: the browser's P-256 public key, base64url as the client sent it.
    pub p256dh: String,
    /// Web Push only: the 16-byte authentication secret, base64url.
    pub auth: String,
}

/// A notification due for one user, written in the commit that stored its message (see
/// [`rules::push_due`]) and forgotten by [`WriteOp::PushDone`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushDue {
    pub user: String,
    /// The message's entry in the user's inbox.
    pub inbox_seq: u64,
    pub message: StoredMessage,
    /// The sender's data for the app (see [`AppendMessage::push_data`]).
    pub push_data: String,
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
    /// Banned by the app server: the user may not connect.
    pub banned: bool,
    /// The newest inbox seq (0 if the inbox is empty).
    pub inbox_seq: u64,
    /// The id was made by registering an account (deleted since or not): only an account's
    /// tokens are good for it, and an account's tokens for no other user.
    pub account: bool,
}

/// What a user's record says of tokens for the user (see [`WriteOp::RecordUser`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserRecord {
    pub token_version: u64,
    /// The id is a self-registered account's (see [`UserState::account`]).
    pub account: bool,
}

/// A user's profile as the app server set it (empty for a user it never set), and what the
/// server records of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserProfile {
    pub name: String,
    pub portrait: String,
    /// App-defined: a JSON object as text, or empty.
    pub extra: String,
    pub banned: bool,
    /// When the user was last connected (ms; 0: never recorded).
    pub last_seen: i64,
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
    ///
    /// Order: a write is queued by the first poll of its future, and writes commit in the order
    /// they were queued (the engine hands the next batch to the store while it answers the
    /// last, and relies on this for seq order).
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>>;

    /// Inbox entries of `user` with `inbox_seq > after`, ascending, at most `limit`.
    async fn inbox_after(&self, user: &str, after: u64, limit: usize) -> Result<Vec<InboxEntry>>;

    /// Messages of a conversation with `seq > page.after`, ascending, at most `page.limit`.
    async fn conversation_after(
        &self,
        conversation_id: &str,
        page: Page,
    ) -> Result<Vec<StoredMessage>>;

    async fn user_state(&self, user: &str) -> Result<UserState>;

    /// The user's state and, if `device` is given, that device's cursor, in one read.
    async fn session_state(&self, user: &str, device: Option<&str>) -> Result<SessionState>;

    /// The device's confirmed cursor, 0 if none was stored.
    async fn device_cursor(&self, user: &str, device: &str) -> Result<u64>;

    /// A user's conversations matching `filter`, with their newest messages and unread counts,
    /// all from one snapshot.
    async fn conversations(&self, user: &str, filter: ConversationFilter) -> Result<Conversations>;

    /// The messages `user` can see that `query` finds ([`SearchQuery`]).
    async fn search(&self, user: &str, query: SearchQuery) -> Result<SearchPage>;

    /// The users `user` blocks, in id order.
    async fn blocklist(&self, user: &str) -> Result<Vec<String>>;

    /// Whether `user` blocks `other`.
    async fn is_blocked(&self, user: &str, other: &str) -> Result<bool>;

    /// A user's quiet hours: `(start_minute, minutes)`, `(0, 0)` if none.
    async fn quiet_hours(&self, user: &str) -> Result<(u32, u32)>;

    /// Saves a device's push token (see [`WriteOp::SavePushToken`]); false if the user has
    /// too many and nothing was saved.
    async fn save_push_token(&self, token: PushTokenRecord) -> Result<bool> {
        let results = self.write(vec![WriteOp::SavePushToken(token)]).await?;
        Ok(!matches!(
            results.first(),
            Some(WriteResult::PushTokensFull)
        ))
    }

    /// Removes a push token (only if it is `user`'s, when given). Returns whether one was
    /// removed.
    async fn remove_push_token(
        &self,
        provider: PushProvider,
        token: &str,
        user: Option<&str>,
    ) -> Result<bool> {
        let results = self
            .write(vec![WriteOp::RemovePushToken {
                provider,
                token: token.to_string(),
                user: user.map(str::to_string),
            }])
            .await?;
        Ok(matches!(
            results.first(),
            Some(WriteResult::PushTokenRemoved { removed: true })
        ))
    }

    /// Records `user` (see [`WriteOp::RecordUser`]) and returns the record.
    async fn record_user(&self, user: &str) -> Result<UserRecord> {
        let results = self
            .write(vec![WriteOp::RecordUser {
                user: user.to_string(),
            }])
            .await?;
        match results.first() {
            Some(WriteResult::UserRecorded(record)) => Ok(*record),
            other => Err(StoreError::Backend(format!(
                "recording a user answered {other:?}"
            ))),
        }
    }

    /// The push tokens of `users`, ordered by user, provider, then token.
    async fn push_tokens(&self, users: &[String]) -> Result<Vec<PushTokenRecord>>;

    /// The notifications due (see [`rules::push_due`]) that this store's commits wrote and no
    /// [`WriteOp::PushDone`] forgot yet, in commit order, at most `limit`: what a server that
    /// stopped before sending them sends when it starts.
    async fn push_due(&self, limit: usize) -> Result<Vec<PushDue>>;

    /// Users the store knows (with an inbox or a record), in id order, after `after`, at most
    /// `limit`.
    async fn user_ids_after(&self, after: &str, limit: usize) -> Result<Vec<String>>;

    /// The sensitive words, in order, each with its replacement (`None`: messages holding it are
    /// refused).
    async fn sensitive_words(&self) -> Result<Vec<(String, Option<String>)>>;

    /// The profiles of `users`, in the order asked.
    async fn profiles(&self, users: &[String]) -> Result<Vec<UserProfile>>;

    /// When each of `users` was last connected (ms; 0 if never recorded), in the order asked.
    async fn last_seen(&self, users: &[String]) -> Result<Vec<i64>>;

    /// A page of a conversation's messages, as `user` sees its history (without what they
    /// cleared or deleted).
    async fn history(&self, user: &str, query: HistoryQuery) -> Result<History>;

    /// A group, dismissed or not; `None` if it never existed.
    async fn group(&self, id: &str) -> Result<Option<GroupInfo>>;

    /// A page of at most `limit` members of a group in the order they joined, after the
    /// position `after` of an earlier page (0: from the first).
    async fn group_members(&self, id: &str, after: u64, limit: usize) -> Result<GroupMembers>;

    /// Whether `user` is a member of the group.
    async fn is_group_member(&self, id: &str, user: &str) -> Result<bool>;

    /// The live groups `user` is a member of, in id order.
    async fn user_groups(&self, user: &str) -> Result<Vec<GroupInfo>>;

    /// Who of the members who can see message `seq` of the group has read it; `None` if there
    /// is no such message.
    async fn group_receipt(&self, id: &str, seq: u64) -> Result<Option<GroupReceipt>>;

    /// A kept chatroom and the standings of its banned or muted users (expired ones included).
    async fn chatroom(&self, id: &str) -> Result<Option<(ChatroomRecord, Vec<ChatroomUser>)>>;

    /// A user's built-in account; `None` if the user has none.
    async fn account(&self, user: &str) -> Result<Option<AccountRecord>>;

    /// An operator of the admin console; `None` if there is none of that name.
    async fn operator(&self, name: &str) -> Result<Option<OperatorRecord>>;

    /// Every operator, in name order.
    async fn operators(&self) -> Result<Vec<OperatorRecord>>;

    /// The admin session whose id hashes to `id_hash`, expired or not; `None` if there is none.
    async fn admin_session(&self, id_hash: &str) -> Result<Option<AdminSessionRecord>>;

    /// At most `limit` entries of the audit log with an id below `before` (0: from the
    /// newest), newest first.
    async fn audit_log(&self, before: u64, limit: usize) -> Result<Vec<AuditEntry>>;

    /// Applies one admin write in a transaction of its own and returns its outcome.
    async fn admin(&self, op: AdminOp) -> Result<AdminResult> {
        match self.write(vec![WriteOp::Admin(op)]).await?.first() {
            Some(WriteResult::Admin(result)) => Ok(*result),
            other => Err(StoreError::Backend(format!(
                "an admin write answered {other:?}"
            ))),
        }
    }

    /// Flushes and releases the backend. Later calls fail with [`StoreError::Closed`].
    async fn close(&self) -> Result<()>;

    /// Answers a cheap query, for readiness checks: `Ok` while the backend can serve reads,
    /// [`StoreError::Closed`] once closed.
    async fn ping(&self) -> Result<()>;
}
