//! The closed set of numeric codes a client can see, in CONNACK, PUBACK, QUERYACK, DISCONNECT and
//! HTTP API error bodies. Codes from the product's lineage (seed 004's table) are reused where one
//! means the same thing; Tidings' own codes are 40xxx (requests), 41xxx (disconnects) and 42xxx
//! (HTTP API). docs/protocol.md lists them all; a test keeps the two in step.

/// A client-visible code with its fixed English text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Code {
    Ok = 0,
    /// Seed 004 REJECTED_BY_BLACKLIST: the recipient blocks the sender.
    RejectedByBlacklist = 405,
    /// Seed 004 RC_MSG_UNAUTHORIZED.
    Unauthorized = 20406,
    /// Seed 004 SEND_FREQUENCY_TOO_FAST.
    SendTooFast = 20604,
    GroupNotFound = 20407,
    NotInGroup = 22406,
    MutedInGroup = 22408,
    GroupDismissed = 35001,
    /// Seed 004 JOIN_IN_DISCUSSION: adding members to a discussion whose invitations are
    /// closed, by someone other than its owner.
    DiscussionInvitesClosed = 21407,
    /// Seed 004 NOT_IN_CHATROOM.
    NotInChatroom = 23406,
    /// Seed 004 FORBIDDEN_IN_CHATROOM.
    MutedInChatroom = 23408,
    /// Seed 004 RC_CHATROOM_USER_KICKED.
    KickedFromChatroom = 23409,
    /// Seed 004 RC_CHATROOM_NOT_EXIST.
    ChatroomNotFound = 23410,
    /// Seed 004 RC_CHATROOM_IS_FULL.
    ChatroomFull = 23411,
    /// Seed 004 RC_CHATROOM_PATAMETER_INVALID.
    ChatroomInvalid = 23412,
    /// Seed 004 CHATROOM_KV_EXCEED.
    ChatroomEntriesFull = 23423,
    /// Seed 004 CHATROOM_KV_OVERWRITE_INVALID.
    ChatroomEntryTaken = 23424,
    /// Seed 004 CHATROOM_KEY_NOT_EXIST.
    ChatroomEntryNotFound = 23427,
    SensitiveWordBlocked = 21501,
    SensitiveWordReplaced = 21502,
    /// Seed 004 RC_CONN_PROTO_VERSION_ERROR.
    UnsupportedProtocolVersion = 31001,
    /// Seed 004 RC_CONN_USER_OR_PASSWD_ERROR: the token is missing, malformed or forged.
    TokenInvalid = 31004,
    /// Seed 004 RC_CONN_NOT_AUTHRORIZED: the token belongs to another app.
    TokenWrongApp = 31005,
    /// Seed 004 RC_CONN_USER_BLOCKED.
    UserBanned = 31009,
    /// Seed 004 RC_DISCONN_KICK: the same user connected from another device (single policy).
    Kicked = 31010,
    /// Seed 004 RC_DISCONN_EXCEPTION: an internal server error.
    ServerError = 31011,
    TokenExpired = 31020,
    TokenRevoked = 31021,

    MalformedFrame = 40001,
    UnknownFrameKind = 40002,
    FrameTooLarge = 40003,
    NotConnected = 40004,
    AlreadyConnected = 40005,
    ContentEmpty = 40006,
    ContentTooLarge = 40007,
    ContentInvalid = 40008,
    UnknownConversationType = 40009,
    ClientMsgIdConflict = 40010,
    InvalidTarget = 40011,
    InvalidMessageType = 40012,
    InvalidClientMsgId = 40013,
    InvalidDeviceId = 40014,
    InvalidQuery = 40015,
    UnexpectedFrame = 40016,
    MessageNotFound = 40017,
    NotMessageSender = 40018,
    RecallWindowPassed = 40019,
    MessageRecalled = 40020,
    GroupExists = 40021,
    GroupFull = 40022,
    InvalidMentions = 40023,
    MessageRejected = 40024,
    MessageRewritten = 40025,
    ModerationUnavailable = 40026,
    ChatroomExists = 40027,
    ChatroomOverloaded = 40028,
    InvalidPushSubscription = 40029,
    PushDisabled = 40030,
    ChatroomJoinedElsewhere = 40031,
    /// Message content whose objects and arrays nest deeper than the engine allows.
    ContentTooDeep = 40032,
    /// The user has `max_sessions_per_user` connections open already.
    TooManySessions = 40034,
    /// An MLS key package the server does not take (the text says why).
    InvalidKeyPackage = 40035,
    /// The key package directory holds as many of this device's (or this user's devices') key
    /// packages as it keeps.
    KeyPackagesFull = 40036,
    /// An MLS commit (or proposal) for an epoch that another commit ended first.
    EpochConflict = 40037,
    /// An MLS message that is not of the conversation's MLS group (or it has none yet).
    NotThisGroup = 40038,

    HeartbeatTimeout = 41001,
    SlowConsumer = 41002,
    ServerShutdown = 41003,
    HandshakeTimeout = 41004,
    ClientDisconnect = 41005,
    /// Every connection the server allows is in use (HTTP 503 as the connection is accepted).
    ServerFull = 41006,
    /// Closed to make room: the oldest of too many connections that had not authenticated.
    UnauthenticatedEvicted = 41007,

    SignatureMissing = 42001,
    SignatureInvalid = 42002,
    TimestampOutOfWindow = 42003,
    NonceReused = 42004,
    AppKeyUnknown = 42005,
    InvalidUserId = 42006,
    BadRequest = 42007,
    NotFound = 42008,
    PollSessionUnknown = 42009,
    /// A request's body did not arrive within the request timeout (HTTP 408).
    RequestTimeout = 42015,
    FileTooLarge = 42020,
    FileTypeNotAllowed = 42021,
    FileInvalid = 42022,
    FileNotFound = 42023,
    /// A link to a file asked for by a user who is not its uploader, without naming a message
    /// they can see that carries it.
    FileLinkRefused = 42024,
    AccountTaken = 42010,
    BadCredentials = 42011,
    TooManyAttempts = 42012,
    InvalidPassword = 42013,
    /// A token of the app server's was asked for a self-registered account's user id.
    UserIsAccount = 42014,
    /// The device was disconnected by an operator from the admin console.
    KickedByOperator = 41008,
    /// This node cannot reach its database: nothing of the request was stored, and another
    /// node of the service may serve it.
    StoreUnreachable = 41009,
    /// An admin console request without a valid operator session (HTTP 401).
    OperatorSessionRequired = 42030,
    /// An admin console request that may come from another site (HTTP 403): no
    /// `X-Tidings-Admin` header, or an `Origin` that is not the server's.
    CrossSiteRefused = 42031,
}

impl Code {
    /// Every code, for documentation checks and lookups.
    pub const ALL: &'static [Code] = &[
        Code::Ok,
        Code::RejectedByBlacklist,
        Code::Unauthorized,
        Code::SendTooFast,
        Code::GroupNotFound,
        Code::NotInGroup,
        Code::MutedInGroup,
        Code::GroupDismissed,
        Code::DiscussionInvitesClosed,
        Code::NotInChatroom,
        Code::MutedInChatroom,
        Code::KickedFromChatroom,
        Code::ChatroomNotFound,
        Code::ChatroomFull,
        Code::ChatroomInvalid,
        Code::ChatroomEntriesFull,
        Code::ChatroomEntryTaken,
        Code::ChatroomEntryNotFound,
        Code::SensitiveWordBlocked,
        Code::SensitiveWordReplaced,
        Code::UnsupportedProtocolVersion,
        Code::TokenInvalid,
        Code::TokenWrongApp,
        Code::UserBanned,
        Code::Kicked,
        Code::ServerError,
        Code::TokenExpired,
        Code::TokenRevoked,
        Code::MalformedFrame,
        Code::UnknownFrameKind,
        Code::FrameTooLarge,
        Code::NotConnected,
        Code::AlreadyConnected,
        Code::ContentEmpty,
        Code::ContentTooLarge,
        Code::ContentInvalid,
        Code::UnknownConversationType,
        Code::ClientMsgIdConflict,
        Code::InvalidTarget,
        Code::InvalidMessageType,
        Code::InvalidClientMsgId,
        Code::InvalidDeviceId,
        Code::InvalidQuery,
        Code::UnexpectedFrame,
        Code::MessageNotFound,
        Code::NotMessageSender,
        Code::RecallWindowPassed,
        Code::MessageRecalled,
        Code::GroupExists,
        Code::GroupFull,
        Code::InvalidMentions,
        Code::MessageRejected,
        Code::MessageRewritten,
        Code::ModerationUnavailable,
        Code::ChatroomExists,
        Code::ChatroomOverloaded,
        Code::InvalidPushSubscription,
        Code::PushDisabled,
        Code::ChatroomJoinedElsewhere,
        Code::ContentTooDeep,
        Code::TooManySessions,
        Code::InvalidKeyPackage,
        Code::KeyPackagesFull,
        Code::EpochConflict,
        Code::NotThisGroup,
        Code::HeartbeatTimeout,
        Code::SlowConsumer,
        Code::ServerShutdown,
        Code::HandshakeTimeout,
        Code::ClientDisconnect,
        Code::ServerFull,
        Code::UnauthenticatedEvicted,
        Code::SignatureMissing,
        Code::SignatureInvalid,
        Code::TimestampOutOfWindow,
        Code::NonceReused,
        Code::AppKeyUnknown,
        Code::InvalidUserId,
        Code::BadRequest,
        Code::NotFound,
        Code::PollSessionUnknown,
        Code::RequestTimeout,
        Code::FileTooLarge,
        Code::FileTypeNotAllowed,
        Code::FileInvalid,
        Code::FileNotFound,
        Code::FileLinkRefused,
        Code::AccountTaken,
        Code::BadCredentials,
        Code::TooManyAttempts,
        Code::InvalidPassword,
        Code::UserIsAccount,
        Code::KickedByOperator,
        Code::StoreUnreachable,
        Code::OperatorSessionRequired,
        Code::CrossSiteRefused,
    ];

    pub fn as_u32(self) -> u32 {
        self as u32
    }

    pub fn from_u32(n: u32) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_u32() == n)
    }

    /// The fixed text sent with the code.
    pub fn text(self) -> &'static str {
        match self {
            Code::Ok => "ok",
            Code::RejectedByBlacklist => "the recipient blocks the sender",
            Code::Unauthorized => "not authorized for this operation",
            Code::SendTooFast => "sending too fast",
            Code::GroupNotFound => "no such group",
            Code::NotInGroup => "not a member of the group",
            Code::MutedInGroup => "muted in this group",
            Code::GroupDismissed => "the group was dismissed",
            Code::DiscussionInvitesClosed => "the discussion's invitations are closed",
            Code::NotInChatroom => "not a member of the chatroom",
            Code::MutedInChatroom => "muted in this chatroom",
            Code::KickedFromChatroom => "kicked or banned from the chatroom",
            Code::ChatroomNotFound => "no such chatroom",
            Code::ChatroomFull => "the chatroom is full",
            Code::ChatroomInvalid => "invalid chatroom parameter",
            Code::ChatroomEntriesFull => "the chatroom has its maximum of entries",
            Code::ChatroomEntryTaken => "the entry belongs to another user",
            Code::ChatroomEntryNotFound => "no such chatroom entry",
            Code::SensitiveWordBlocked => "the message holds a blocked word",
            Code::SensitiveWordReplaced => "sensitive words in the message were replaced",
            Code::UnsupportedProtocolVersion => "unsupported protocol version",
            Code::TokenInvalid => "token is missing, malformed or forged",
            Code::TokenWrongApp => "token was issued for another app",
            Code::UserBanned => "user is banned",
            Code::Kicked => "logged in on another device",
            Code::ServerError => "internal server error",
            Code::TokenExpired => "token has expired",
            Code::TokenRevoked => "token has been revoked",
            Code::MalformedFrame => "malformed frame",
            Code::UnknownFrameKind => "unknown frame kind",
            Code::FrameTooLarge => "frame too large",
            Code::NotConnected => "CONNECT must be the first frame",
            Code::AlreadyConnected => "already connected",
            Code::ContentEmpty => "message content is empty",
            Code::ContentTooLarge => "message content too large",
            Code::ContentInvalid => "message content is invalid",
            Code::UnknownConversationType => "unknown or unsupported conversation type",
            Code::ClientMsgIdConflict => "client message id was already used for another message",
            Code::InvalidTarget => "invalid target id",
            Code::InvalidMessageType => "invalid message type",
            Code::InvalidClientMsgId => "invalid client message id",
            Code::InvalidDeviceId => "invalid device id",
            Code::InvalidQuery => "invalid query",
            Code::UnexpectedFrame => "frame kind not accepted from a client",
            Code::MessageNotFound => "no such message",
            Code::NotMessageSender => "only the message's sender may do this",
            Code::RecallWindowPassed => "too late to recall this message",
            Code::MessageRecalled => "the message was recalled",
            Code::GroupExists => "a group with this id exists",
            Code::GroupFull => "the group has its maximum of members",
            Code::InvalidMentions => "invalid mentioned or directed users",
            Code::MessageRejected => "rejected by the app server",
            Code::MessageRewritten => "the app server rewrote the message",
            Code::ModerationUnavailable => "message moderation is unavailable",
            Code::ChatroomExists => "a chatroom with this id exists",
            Code::ChatroomOverloaded => "the chatroom is overloaded: try again",
            Code::InvalidPushSubscription => "invalid push subscription",
            Code::PushDisabled => "push notifications are off on this server",
            Code::ChatroomJoinedElsewhere => "already in the chatroom from another connection",
            Code::ContentTooDeep => "content nested too deeply",
            Code::TooManySessions => "too many connections of this user",
            Code::InvalidKeyPackage => "key package refused",
            Code::KeyPackagesFull => "too many key packages",
            Code::EpochConflict => "another commit came first",
            Code::NotThisGroup => "not the conversation's MLS group",
            Code::HeartbeatTimeout => "heartbeat timeout",
            Code::SlowConsumer => "slow consumer: outbound queue overflow",
            Code::ServerShutdown => "server shutting down",
            Code::HandshakeTimeout => "no CONNECT within the handshake timeout",
            Code::ClientDisconnect => "client disconnected",
            Code::ServerFull => "the server has no room for more connections: try again later",
            Code::UnauthenticatedEvicted => {
                "closed to make room: too many connections had not authenticated"
            }
            Code::SignatureMissing => "missing App-Key, Nonce, Timestamp or Signature header",
            Code::SignatureInvalid => "signature does not match",
            Code::TimestampOutOfWindow => "timestamp outside the allowed window",
            Code::NonceReused => "nonce already used",
            Code::AppKeyUnknown => "unknown app key",
            Code::InvalidUserId => "invalid user id",
            Code::BadRequest => "bad request",
            Code::NotFound => "not found",
            Code::PollSessionUnknown => "no such long-poll session",
            Code::RequestTimeout => "the request did not arrive in time",
            Code::FileTooLarge => "the file is too large",
            Code::FileTypeNotAllowed => "files of this type are not accepted",
            Code::FileInvalid => "the file is empty, or not what its type says",
            Code::FileNotFound => "no such file, or the link has expired",
            Code::FileLinkRefused => "this file is not in a message you can see",
            Code::AccountTaken => "the account name is taken",
            Code::BadCredentials => "wrong account or password",
            Code::TooManyAttempts => "too many attempts: try again later",
            Code::InvalidPassword => "a password is 8-256 bytes",
            Code::UserIsAccount => "the user id belongs to a self-registered account",
            Code::KickedByOperator => "disconnected by an operator",
            Code::StoreUnreachable => {
                "this server cannot reach its database: connect to another node or try again"
            }
            Code::OperatorSessionRequired => "sign in to the admin console",
            Code::CrossSiteRefused => "refused: the request may come from another site",
        }
    }

    /// For DISCONNECT codes: whether a client should reconnect after it.
    pub fn reconnect(self) -> bool {
        !matches!(
            self,
            Code::Kicked
                | Code::TokenInvalid
                | Code::TokenWrongApp
                | Code::TokenExpired
                | Code::TokenRevoked
                | Code::UserBanned
                | Code::UnsupportedProtocolVersion
                | Code::ClientDisconnect
                | Code::KickedByOperator
        )
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.as_u32(), self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_u32()), "duplicate code {}", c.as_u32());
            assert_eq!(Code::from_u32(c.as_u32()), Some(*c));
        }
    }
}
