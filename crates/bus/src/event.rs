//! What nodes tell each other: the events that cross the bus. These are internal types, not a
//! wire format: `envelope` converts them to and from the versioned protobuf envelope by hand.
//! Must not depend on any transport.

use tidings_store::StoredMessage;

/// A chatroom item as it crosses the bus: the message (seq 0 until the home numbered it), its
/// priority (as on the wire), the sender's digest, and the node and session that made it with
/// the token its sender's answer waits on (0: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPost {
    pub message: StoredMessage,
    pub priority: u32,
    pub digest: String,
    pub node: String,
    pub session: u64,
    pub token: u64,
}

/// What a chatroom holds beyond its stream, as its home tells a node that just took the room
/// in: the room's mute (ms; 0: none), its users' bans and mutes, its key-value entries, and the
/// newest messages of its history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomSnapshot {
    pub muted_until: i64,
    pub standings: Vec<RoomStanding>,
    pub entries: Vec<RoomEntry>,
    pub history: Vec<RoomPost>,
    /// The room's member count on each node the home knows of (its own included).
    pub member_counts: Vec<(String, u64)>,
}

/// A user's ban and mute in a room (ms; 0: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomStanding {
    pub user: String,
    pub banned_until: i64,
    pub muted_until: i64,
}

/// A room's key-value entry: who set it, when (ms), and whether it goes with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEntry {
    pub key: String,
    pub value: String,
    pub user: String,
    pub updated: i64,
    pub auto_delete: bool,
}

/// What nodes tell each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A committed message or user event, to push to the devices of these users (each with
    /// their inbox seq), except the sender's device `except_device`.
    Deliver {
        message: StoredMessage,
        inbox: Vec<(String, u64)>,
        except_device: Option<String>,
    },
    /// A status message (typing): never stored, at most once, to the devices of `users`.
    Status {
        message: StoredMessage,
        users: Vec<String>,
        except_device: Option<String>,
    },
    /// A device of `user` connected to `node`: the same device elsewhere is replaced (every
    /// device of the user, under the single-device policy).
    Connected {
        node: String,
        user: String,
        device: String,
        anonymous: bool,
    },
    /// `user` has (or no longer has) sessions on `node`.
    Presence {
        node: String,
        user: String,
        online: bool,
    },
    /// Every user with a session on `node`, in answer to a `Hello`.
    Snapshot { node: String, users: Vec<String> },
    /// `node` started: the others answer with their snapshots.
    Hello { node: String },
    /// `node` is alive, reachable at `urls` (a navigation lists them).
    Alive { node: String, urls: Vec<String> },
    /// `node` is stopping.
    Leaving { node: String },
    /// The user's tokens below `version` are revoked: their sessions end.
    Revoked { user: String, version: u64 },
    /// The user is banned (or unbanned).
    Banned { user: String, banned: bool },
    /// Events may have been lost (a node was cut off from the bus): every node catches its
    /// sessions up from the store.
    Resync { node: String },
    /// A chatroom item made on another node, for `home` to number; `known` is the room's seq
    /// as the sender's node knows it.
    RoomForward {
        home: String,
        known: u64,
        post: RoomPost,
    },
    /// A chatroom item numbered by the room's home, to every node with members of the room.
    RoomItem { post: RoomPost },
    /// The room `room` is at least at `seq` (a node got an item its home numbered again):
    /// for `home`, which continues from there.
    RoomSeq {
        home: String,
        room: String,
        seq: u64,
    },
    /// A chatroom send forwarded to the room's home that the home had numbered already (a
    /// resend): the item as the home numbered it, for `node`, which forwarded the resend and
    /// whose sender waits on `post.token` (`post`'s node and session are the resend's).
    RoomRepeat { node: String, post: RoomPost },
    /// `node`, which just took chatroom `room` in, asks `home` what the room holds; the answer
    /// goes back with `token`.
    RoomStateAsk {
        home: String,
        room: String,
        node: String,
        token: u64,
    },
    /// The home's answer to a `RoomStateAsk` of `node` (`None`: the home does not have the
    /// room).
    RoomStateIs {
        node: String,
        token: u64,
        state: Option<RoomSnapshot>,
    },
    /// Chatroom `room` has `count` members on `node` now: for every node with the room, and
    /// its home.
    RoomCount {
        home: String,
        room: String,
        node: String,
        count: u64,
    },
    /// `node` asks every node with chatroom `room` for its members past member key `after`
    /// (at most `limit`), answered with `token`.
    RoomMembersAsk {
        room: String,
        node: String,
        token: u64,
        after: u64,
        limit: u32,
    },
    /// Node `from`'s answer to a `RoomMembersAsk` of `node`: users and when they joined (ms).
    RoomMembersAre {
        node: String,
        token: u64,
        from: String,
        members: Vec<(String, i64)>,
    },
    /// An operator kicked the user's device (every device with `None`).
    Kick {
        user: String,
        device: Option<String>,
    },
}
