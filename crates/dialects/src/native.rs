//! The native protocol (`docs/protocol.md`): frames of `tidings_proto::v1`, protobuf in binary
//! WebSocket messages or JSON in text ones, in the encoding of the connection's CONNECT.
//!
//! A dialect like the seeds, with no I/O and no clock: a frame becomes at most one [`Step`] (an
//! engine request, or the end of the connection with a code), and an engine [`Outbound`] item
//! becomes its frame. Errors tied to a request are answered by the engine with that request's
//! reply frame and the connection stays usable (a refused PUBLISH gets a PUBACK with the code, a
//! bad QUERY a QUERYACK, a second CONNECT a CONNACK); frame-level errors (malformed bytes, an
//! unknown kind, an oversized frame, a frame before CONNECT, a kind a client may not send) end
//! the connection with a DISCONNECT carrying the code ([`Step::End`]).
//!
//! The long-poll transport carries the same frames (JSON only) and uses the functions here
//! directly: [`request`], [`outbound_frame`], [`connect_request`], [`connack_frame`],
//! [`disconnect_frame`], [`decode_error_code`].
//!
//! This module must not depend on the gateway, a WebSocket library or a socket.

use bytes::Bytes;
use tidings_engine::{
    AmendRequest, ChatroomQuery, ConnectInfo, ConnectRequest, ConversationQuery,
    ConversationUpdateRequest, GroupQuery, HistoryStart, Outbound, PushTokenRequest, Refusal,
    RoomItem, SendRequest,
};
use tidings_proto::v1::{self, frame::Body};
use tidings_proto::{Code, DecodeError, EncodeError, Encoding, PROTOCOL_VERSION, codec};

use crate::{Dialect, Profiles, Step, Steps, WireIn, WireOut};

/// One native connection. Once the session is open its state no longer changes, so the
/// connection's tasks may each hold a copy.
#[derive(Debug, Clone, Copy)]
pub struct Native {
    /// The encoding of the connection's frames: that of its CONNECT (JSON until then).
    encoding: Encoding,
    max_frame_bytes: usize,
    /// The CONNECT was accepted.
    open: bool,
}

impl Native {
    /// A connection whose frames may be at most `max_frame_bytes` long.
    pub fn new(max_frame_bytes: usize) -> Native {
        Native {
            encoding: Encoding::Json,
            max_frame_bytes,
            open: false,
        }
    }

    /// The encoding the connection's frames are written in.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// A frame of the server's own in the connection's encoding, or the step that ends the
    /// connection in its place: a frame the server cannot encode is the server's failure
    /// (logged), and is never sent empty or skipped.
    fn send(&self, frame: &v1::Frame) -> Step {
        match encode(frame, self.encoding) {
            Ok(wire) => Step::Send(wire),
            Err(e) => Step::End(encode_failed(e)),
        }
    }

    /// The first frame: a CONNECT opens the session; anything else ends the connection.
    fn handshake(&mut self, frame: WireIn<'_>) -> Steps {
        let (decoded, encoding) = decode(frame, self.max_frame_bytes);
        // A refusal is written in the encoding the client chose, even for a bad frame.
        self.encoding = encoding;
        match decoded {
            Ok(v1::Frame {
                body: Some(Body::Connect(connect)),
                ..
            }) => match connect_request(connect) {
                Ok(request) => Steps::One(Step::Connect(request)),
                // Refused before the engine is asked: the CONNACK, then the close.
                Err(code) => {
                    let connack = connack_frame(code, code.text().into(), None);
                    Steps::Many(vec![self.send(&connack), Step::Close(code)])
                }
            },
            Ok(_) => Steps::One(Step::End(Code::NotConnected)),
            Err(e) => Steps::One(Step::End(decode_error_code(&e))),
        }
    }
}

impl Dialect for Native {
    type Steps = Steps;

    fn open(&mut self) -> Vec<Step> {
        Vec::new()
    }

    fn connected(&mut self, outcome: Result<&ConnectInfo, &Refusal>) -> Vec<Step> {
        match outcome {
            Ok(info) => {
                self.open = true;
                vec![self.send(&connack_frame(Code::Ok, String::new(), Some(info)))]
            }
            Err(refusal) => {
                let connack = connack_frame(refusal.code, refusal.text(), None);
                vec![self.send(&connack), Step::Close(refusal.code)]
            }
        }
    }

    fn inbound(&mut self, frame: WireIn<'_>) -> Steps {
        if !self.open {
            return self.handshake(frame);
        }
        match decode(frame, self.max_frame_bytes).0 {
            Ok(frame) => request(frame).map_or(Steps::None, Steps::One),
            Err(e) => Steps::One(Step::End(decode_error_code(&e))),
        }
    }

    fn control(&mut self) -> Vec<Step> {
        // Only a CONNECT may come first; a WebSocket Ping is not one.
        if self.open {
            Vec::new()
        } else {
            vec![Step::End(Code::NotConnected)]
        }
    }

    fn outbound(&mut self, item: Outbound, _profiles: Profiles<'_>) -> Steps {
        Steps::One(match item {
            Outbound::Room(item) => match room_wire(&item, self.encoding) {
                Ok(wire) => Step::Send(wire),
                Err(e) => Step::End(encode_failed(e)),
            },
            other => self.send(&outbound_frame(other)),
        })
    }

    fn goodbye(&mut self, code: Code) -> Option<WireOut> {
        match encode(&disconnect_frame(code), self.encoding) {
            Ok(wire) => Some(wire),
            Err(e) => {
                encode_failed(e);
                None
            }
        }
    }
}

/// A WebSocket message as a frame, and the encoding it came in.
fn decode(frame: WireIn<'_>, max: usize) -> (Result<v1::Frame, DecodeError>, Encoding) {
    match frame {
        WireIn::Binary(b) => (
            codec::decode(b, Encoding::Protobuf, max),
            Encoding::Protobuf,
        ),
        WireIn::Text(t) => (
            codec::decode(t.as_bytes(), Encoding::Json, max),
            Encoding::Json,
        ),
    }
}

/// A frame as a WebSocket message of the connection's encoding.
fn encode(frame: &v1::Frame, encoding: Encoding) -> Result<WireOut, EncodeError> {
    Ok(match encoding {
        Encoding::Protobuf => WireOut::Binary(codec::encode_protobuf(frame)),
        Encoding::Json => WireOut::Text(codec::encode_json(frame)?),
    })
}

/// Logs why a server frame could not be encoded; the code that ends the connection instead.
fn encode_failed(e: EncodeError) -> Code {
    tracing::error!(error = %e, "a server frame could not be encoded: ending the connection");
    Code::ServerError
}

/// The code a frame that does not decode ends the connection with.
pub fn decode_error_code(e: &DecodeError) -> Code {
    match e {
        DecodeError::TooLarge { .. } => Code::FrameTooLarge,
        DecodeError::Malformed(_) => Code::MalformedFrame,
        DecodeError::UnknownKind => Code::UnknownFrameKind,
    }
}

/// The DISCONNECT frame that ends a connection with `code`.
pub fn disconnect_frame(code: Code) -> v1::Frame {
    codec::frame(Body::Disconnect(v1::Disconnect {
        code: code.as_u32(),
        message: code.text().into(),
        reconnect: code.reconnect(),
    }))
}

/// A CONNACK frame: a refusal's code and text, or success with the session's details.
pub fn connack_frame(code: Code, message: String, info: Option<&ConnectInfo>) -> v1::Frame {
    let mut ack = v1::ConnAck {
        code: code.as_u32(),
        message,
        ..Default::default()
    };
    if let Some(info) = info {
        ack.user_id = info.user_id.clone();
        ack.session_id = info.session_id.clone();
        ack.heartbeat_ms = info.heartbeat_ms;
        ack.server_time = info.server_time;
        ack.cursor = info.cursor;
        ack.inbox_seq = info.inbox_seq;
    }
    codec::frame(Body::Connack(ack))
}

/// The engine's request for a CONNECT, or the code its CONNACK refuses it with (a protocol
/// version newer than the server's).
pub fn connect_request(connect: v1::Connect) -> Result<ConnectRequest, Code> {
    if connect.protocol_version > PROTOCOL_VERSION {
        return Err(Code::UnsupportedProtocolVersion);
    }
    Ok(ConnectRequest {
        token: connect.token,
        device_id: connect.device_id,
        platform: connect.platform,
    })
}

/// What a frame from a connected client asks for: the engine request, [`Step::End`] for a
/// frame that ends the connection, or nothing (an acknowledgement of nothing).
pub fn request(frame: v1::Frame) -> Option<Step> {
    Some(match frame.body {
        Some(Body::Publish(p)) => match p.body {
            Some(v1::publish::Body::Send(s)) => {
                let transient = s.transient;
                let send = SendRequest {
                    client_msg_id: s.client_msg_id,
                    conversation_type: s.conversation_type,
                    target_id: s.target_id,
                    msg_type: s.msg_type,
                    content: s.content,
                    push_text: s.push_text,
                    push_data: s.push_data,
                    uncounted: s.uncounted,
                    mentions: s.mentioned_user_ids,
                    mention_all: s.mention_all,
                    audience: s.directed_user_ids,
                    // The codec refused numbers the enum does not define; the engine checks which
                    // priorities a client may use where.
                    priority: u32::try_from(s.priority).unwrap_or(u32::MAX),
                };
                let packet_id = p.packet_id;
                // A status message (typing), never stored.
                if transient {
                    Step::PublishStatus { packet_id, send }
                } else {
                    Step::Publish { packet_id, send }
                }
            }
            // A PUBLISH without a message to send cannot be answered meaningfully.
            _ => Step::End(Code::UnexpectedFrame),
        },
        Some(Body::Puback(ack)) => {
            if ack.inbox_seq == 0 {
                return None;
            }
            Step::Ack(ack.inbox_seq)
        }
        Some(Body::Query(q)) => query(q.query_id, q.body),
        Some(Body::Querycon(c)) => Step::Confirm(c.inbox_seq),
        Some(Body::Pingreq(_)) => Step::Pong,
        // The session is open already: the engine answers with a refusing CONNACK.
        Some(Body::Connect(c)) => Step::Connect(ConnectRequest {
            token: c.token,
            device_id: c.device_id,
            platform: c.platform,
        }),
        Some(Body::Disconnect(_)) => Step::End(Code::ClientDisconnect),
        Some(Body::Connack(_) | Body::Queryack(_) | Body::Pingresp(_)) => {
            Step::End(Code::UnexpectedFrame)
        }
        None => Step::End(Code::UnknownFrameKind),
    })
}

/// The step of a QUERY.
fn query(query_id: u32, body: Option<v1::query::Body>) -> Step {
    use v1::query::Body as Q;
    match body {
        Some(Q::Sync(s)) => Step::Sync {
            query_id,
            after: s.after,
            limit: s.limit,
        },
        Some(Q::SubscribePresence(p)) => Step::Presence {
            query_id,
            users: p.user_ids,
            subscribe: true,
        },
        Some(Q::GetPresence(p)) => Step::Presence {
            query_id,
            users: p.user_ids,
            subscribe: false,
        },
        Some(Q::GetUsers(u)) => Step::UserQuery {
            query_id,
            users: u.user_ids,
        },
        Some(body) => match group_query(body) {
            Ok(query) => Step::Group { query_id, query },
            Err(body) => match chatroom_query(*body) {
                Ok(query) => Step::Chatroom { query_id, query },
                Err(body) => match conversation_query(*body) {
                    Some(query) => Step::Conversation { query_id, query },
                    None => Step::RejectQuery {
                        query_id,
                        reason: "unsupported query",
                    },
                },
            },
        },
        None => Step::RejectQuery {
            query_id,
            reason: "the query has no body",
        },
    }
}

/// A chatroom item in the connection's encoding, encoded once per encoding for all the room's
/// members: the bytes are cached in the item and shared.
pub fn room_wire(item: &RoomItem, encoding: Encoding) -> Result<WireOut, EncodeError> {
    let slot = match encoding {
        Encoding::Protobuf => 0,
        Encoding::Json => 1,
    };
    let cache = item.wire(slot);
    let bytes = match cache.and_then(|c| c.get()) {
        Some(bytes) => bytes.clone(),
        None => {
            let bytes = Bytes::from(codec::encode(&room_frame(item), encoding)?);
            if let Some(cache) = cache {
                // Another member's writer may have filled it meanwhile, with the same bytes.
                let _ = cache.set(bytes.clone());
            }
            bytes
        }
    };
    Ok(match encoding {
        Encoding::Protobuf => WireOut::SharedBinary(bytes),
        Encoding::Json => WireOut::SharedText(bytes),
    })
}

/// The frame of a chatroom item: a QoS 0 PUBLISH.
fn room_frame(item: &RoomItem) -> v1::Frame {
    message_frame(item.message(), 0, false)
}

/// A PUBLISH carrying a message to the client.
fn message_frame(message: &tidings_engine::Delivered, qos: u32, dup: bool) -> v1::Frame {
    v1::Frame {
        body: Some(Body::Publish(v1::Publish {
            packet_id: 0,
            body: Some(v1::publish::Body::Message(wire_message(message))),
        })),
        qos,
        dup,
    }
}

/// The frame of an outbound item.
pub fn outbound_frame(item: Outbound) -> v1::Frame {
    match item {
        Outbound::Room(item) => room_frame(&item),
        Outbound::PubAck(p) => codec::frame(Body::Puback(v1::PubAck {
            packet_id: p.packet_id,
            code: p.code,
            message: p.text,
            uid: p.uid,
            seq: p.seq,
            sent_time: p.sent_time,
            inbox_seq: p.inbox_seq,
            notice: p.notice,
            content: p.content,
        })),
        Outbound::Status(message) => message_frame(&message, 0, false),
        Outbound::Deliver { message, dup } => message_frame(&message, 1, dup),
        Outbound::QueryAck(q) => {
            let q = *q;
            codec::frame(Body::Queryack(v1::QueryAck {
                query_id: q.query_id,
                code: q.code,
                message: q.text,
                messages: q.messages.iter().map(wire_message).collect(),
                has_more: q.has_more,
                conversations: q.conversations.iter().map(wire_conversation).collect(),
                version: q.version,
                next_page_token: q.next_page_token,
                unread: q.unread,
                user_ids: q.user_ids,
                presence: q
                    .presence
                    .into_iter()
                    .map(|p| v1::Presence {
                        user_id: p.user,
                        online: p.online,
                        last_seen: p.last_seen,
                    })
                    .collect(),
                users: q
                    .users
                    .into_iter()
                    .map(|u| v1::User {
                        user_id: u.user,
                        name: u.name,
                        portrait: u.portrait,
                    })
                    .collect(),
                quiet_hours: q.quiet_hours.map(|(start_minute, minutes)| v1::QuietHours {
                    start_minute,
                    minutes,
                }),
                groups: q.groups.into_iter().map(wire_group).collect(),
                members: q
                    .members
                    .into_iter()
                    .map(|m| v1::GroupMember {
                        user_id: m.user,
                        joined_time: m.joined,
                        muted_until: m.muted_until,
                    })
                    .collect(),
                receipt: q.receipt.map(|r| v1::GroupReceipt {
                    read_user_ids: r.read,
                    unread_user_ids: r.unread,
                }),
                chatrooms: q.chatrooms.into_iter().map(wire_chatroom).collect(),
                entries: q
                    .entries
                    .into_iter()
                    .map(|e| v1::ChatroomEntry {
                        key: e.key,
                        value: e.value,
                        user_id: e.user,
                        updated_time: e.updated,
                        auto_delete: e.auto_delete,
                    })
                    .collect(),
                vapid_public_key: q.vapid_public_key,
                key_package_count: q.key_package_count,
                key_packages: q
                    .key_packages
                    .into_iter()
                    .map(|k| v1::DeviceKeyPackage {
                        user_id: k.user,
                        device_id: k.device,
                        key_package: k.key_package,
                        last_resort: k.last_resort,
                    })
                    .collect(),
            }))
        }
        Outbound::ConnAck { code, text } => codec::frame(Body::Connack(v1::ConnAck {
            code,
            message: text,
            ..Default::default()
        })),
        Outbound::Pong => codec::frame(Body::Pingresp(v1::PingResp {})),
        Outbound::Disconnect(code) => disconnect_frame(code),
    }
}

/// The engine's form of a group QUERY; the body back for the other kinds.
fn group_query(body: v1::query::Body) -> Result<GroupQuery, Box<v1::query::Body>> {
    use v1::query::Body as Q;
    Ok(match body {
        Q::GetGroup(g) => GroupQuery::Get { group: g.group_id },
        Q::GetGroupMembers(g) => GroupQuery::Members {
            group: g.group_id,
            limit: g.limit,
            page_token: g.page_token,
        },
        Q::QuitGroup(g) => GroupQuery::Quit { group: g.group_id },
        Q::ListGroups(_) => GroupQuery::List,
        Q::GetGroupReceipt(g) => GroupQuery::Receipt {
            group: g.group_id,
            seq: g.seq,
        },
        Q::CreateDiscussion(c) => GroupQuery::CreateDiscussion {
            name: c.name,
            users: c.user_ids,
        },
        Q::AddDiscussionMembers(a) => GroupQuery::AddDiscussionMembers {
            group: a.group_id,
            users: a.user_ids,
        },
        Q::RemoveDiscussionMember(r) => GroupQuery::RemoveDiscussionMember {
            group: r.group_id,
            user: r.user_id,
        },
        Q::UpdateDiscussion(u) => GroupQuery::UpdateDiscussion {
            group: u.group_id,
            name: u.name,
            invite_open: u.invite_open,
        },
        other => return Err(Box::new(other)),
    })
}

/// The engine's form of a chatroom QUERY; the body back for the other kinds.
fn chatroom_query(body: v1::query::Body) -> Result<ChatroomQuery, Box<v1::query::Body>> {
    use v1::query::Body as Q;
    Ok(match body {
        Q::JoinChatroom(j) => ChatroomQuery::Join {
            room: j.chatroom_id,
            recent: j.recent,
            after_seq: j.after_seq,
        },
        Q::QuitChatroom(q) => ChatroomQuery::Quit {
            room: q.chatroom_id,
        },
        Q::GetChatroom(g) => ChatroomQuery::Get {
            room: g.chatroom_id,
        },
        Q::GetChatroomMembers(m) => ChatroomQuery::Members {
            room: m.chatroom_id,
            limit: m.limit,
            page_token: m.page_token,
        },
        Q::SetChatroomEntry(e) => ChatroomQuery::SetEntry {
            room: e.chatroom_id,
            key: e.key,
            value: e.value,
            force: e.force,
            auto_delete: e.auto_delete,
        },
        Q::RemoveChatroomEntry(e) => ChatroomQuery::RemoveEntry {
            room: e.chatroom_id,
            key: e.key,
            force: e.force,
        },
        Q::GetChatroomEntries(e) => ChatroomQuery::Entries {
            room: e.chatroom_id,
            keys: e.keys,
        },
        other => return Err(Box::new(other)),
    })
}

/// The wire form of a chatroom.
pub fn wire_chatroom(c: tidings_engine::ChatroomOut) -> v1::Chatroom {
    v1::Chatroom {
        chatroom_id: c.id,
        name: c.name,
        extra: c.extra,
        created_time: c.created,
        member_count: c.member_count,
        max_members: c.max_members,
        muted_until: c.muted_until,
        seq: c.seq,
        kept: c.kept,
    }
}

/// The wire form of a group.
pub fn wire_group(g: tidings_engine::GroupInfo) -> v1::Group {
    v1::Group {
        group_id: g.id,
        name: g.name,
        portrait: g.portrait,
        extra: g.extra,
        owner_id: g.owner,
        created_time: g.created,
        dismissed_time: g.dismissed,
        muted_until: g.muted_until,
        member_count: g.member_count,
        kind: g.kind.as_str().into(),
        invite_open: g.invite_open,
    }
}

/// The engine's form of a conversation QUERY; `None` for the other kinds.
fn conversation_query(body: v1::query::Body) -> Option<ConversationQuery> {
    use v1::query::Body as Q;
    Some(match body {
        Q::ListConversations(l) => ConversationQuery::List {
            types: l.types,
            limit: l.limit,
            page_token: l.page_token,
            changed_since: l.changed_since,
        },
        Q::GetConversation(g) => ConversationQuery::Get {
            conversation_type: g.conversation_type,
            target: g.target_id,
        },
        Q::UpdateConversation(u) => ConversationQuery::Update(ConversationUpdateRequest {
            conversation_type: u.conversation_type,
            target: u.target_id,
            read_seq: u.read_seq,
            read_time: u.read_time,
            pinned: u.pinned,
            muted: u.muted,
            remove: u.remove,
            clear_before_time: u.clear_before_time,
            silent: u.silent,
        }),
        Q::RemoveConversations(r) => ConversationQuery::RemoveAll { types: r.types },
        Q::GetUnread(g) => ConversationQuery::Unread { types: g.types },
        Q::GetHistory(h) => ConversationQuery::History {
            conversation_type: h.conversation_type,
            target: h.target_id,
            from: HistoryStart {
                before_seq: h.before_seq,
                after_seq: h.after_seq,
                before_time: h.before_time,
                after_time: h.after_time,
            },
            count: h.count,
        },
        Q::SetBlocked(b) => ConversationQuery::SetBlocked {
            user: b.user_id,
            blocked: b.blocked,
        },
        Q::GetBlocklist(_) => ConversationQuery::Blocklist,
        Q::GetBlockStatus(b) => ConversationQuery::BlockStatus { user: b.user_id },
        Q::SetQuietHours(q) => ConversationQuery::SetQuietHours {
            start_minute: q.start_minute,
            minutes: q.minutes,
        },
        Q::GetQuietHours(_) => ConversationQuery::QuietHours,
        Q::RegisterPush(r) => {
            let web = matches!(r.provider.as_str(), "" | "webpush");
            ConversationQuery::RegisterPush(PushTokenRequest {
                provider: r.provider,
                token: if web { r.endpoint } else { r.token },
                p256dh: r.p256dh,
                auth: r.auth,
                app_id: r.app_id,
                sandbox: r.sandbox,
                locale: r.locale,
            })
        }
        Q::UnregisterPush(u) => {
            let web = matches!(u.provider.as_str(), "" | "webpush");
            ConversationQuery::UnregisterPush {
                provider: u.provider,
                token: if web { u.endpoint } else { u.token },
            }
        }
        Q::SetAppState(a) => ConversationQuery::SetAppState {
            background: a.background,
        },
        Q::PublishKeyPackages(p) => ConversationQuery::PublishKeyPackages {
            key_packages: p.key_packages,
            replace: p.replace,
        },
        Q::ClaimKeyPackages(c) => ConversationQuery::ClaimKeyPackages {
            users: c.user_ids,
            except: c.except,
        },
        Q::SearchMessages(q) => ConversationQuery::Search {
            query: q.query,
            conversation: (!q.target_id.is_empty()).then_some((q.conversation_type, q.target_id)),
            limit: q.limit,
            page_token: q.page_token,
        },
        Q::RecallMessage(r) => ConversationQuery::Amend {
            conversation_type: r.conversation_type,
            target: r.target_id,
            seq: r.seq,
            action: AmendRequest::Recall,
        },
        Q::EditMessage(e) => ConversationQuery::Amend {
            conversation_type: e.conversation_type,
            target: e.target_id,
            seq: e.seq,
            action: AmendRequest::Edit { content: e.content },
        },
        Q::ReactToMessage(r) => ConversationQuery::Amend {
            conversation_type: r.conversation_type,
            target: r.target_id,
            seq: r.seq,
            action: AmendRequest::React {
                emoji: r.emoji,
                remove: r.remove,
            },
        },
        Q::DeleteMessages(d) => ConversationQuery::Delete {
            conversation_type: d.conversation_type,
            target: d.target_id,
            seqs: d.seqs,
        },
        Q::Sync(_)
        | Q::SubscribePresence(_)
        | Q::GetPresence(_)
        | Q::GetUsers(_)
        | Q::GetGroup(_)
        | Q::GetGroupMembers(_)
        | Q::QuitGroup(_)
        | Q::ListGroups(_)
        | Q::GetGroupReceipt(_)
        | Q::CreateDiscussion(_)
        | Q::AddDiscussionMembers(_)
        | Q::RemoveDiscussionMember(_)
        | Q::UpdateDiscussion(_)
        | Q::JoinChatroom(_)
        | Q::QuitChatroom(_)
        | Q::GetChatroom(_)
        | Q::GetChatroomMembers(_)
        | Q::SetChatroomEntry(_)
        | Q::RemoveChatroomEntry(_)
        | Q::GetChatroomEntries(_) => return None,
    })
}

fn wire_conversation(c: &tidings_engine::ConversationOut) -> v1::Conversation {
    v1::Conversation {
        conversation_type: c.settings.conversation_type,
        target_id: c.settings.target_id.clone(),
        latest: c.latest.as_ref().map(wire_message),
        unread: c.unread,
        read_seq: c.settings.read_seq,
        pinned: c.settings.pinned,
        muted: c.settings.muted,
        removed: c.removed,
        cleared_seq: c.settings.cleared_seq,
        mentioned: c.mentioned,
        peer_read_seq: c.peer_read_seq,
    }
}

fn wire_message(m: &tidings_engine::Delivered) -> v1::Message {
    v1::Message {
        uid: m.uid().into(),
        conversation_type: m.conversation_type(),
        target_id: m.target_id().into(),
        sender_id: m.sender_id().into(),
        seq: m.seq(),
        sent_time: m.sent_time(),
        msg_type: m.msg_type().into(),
        content: m.content().into(),
        push_text: m.push_text().into(),
        client_msg_id: m.client_msg_id().into(),
        inbox_seq: m.inbox_seq(),
        recalled: m.recalled(),
        edited: m.edited(),
        reactions: m
            .reactions()
            .iter()
            .map(|r| v1::Reaction {
                emoji: r.emoji.clone(),
                user_ids: r.users.clone(),
            })
            .collect(),
        mentioned_user_ids: m.mentions().to_vec(),
        mention_all: m.mention_all(),
        directed_user_ids: m.audience().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tidings_engine::{Delivered, PubAckOut, QueryAckOut};
    use tidings_store::StoredMessage;

    use super::*;

    const MAX: usize = 64 * 1024;

    fn json(body: Body) -> String {
        codec::encode_json(&codec::frame(body)).unwrap()
    }

    fn steps(s: Steps) -> Vec<Step> {
        s.into_iter().collect()
    }

    /// The frame a step sends, decoded from the encoding it is written in.
    fn sent(step: &Step) -> v1::Frame {
        match step {
            Step::Send(WireOut::Text(t)) => codec::decode(t.as_bytes(), Encoding::Json, MAX),
            Step::Send(WireOut::Binary(b)) => codec::decode(b, Encoding::Protobuf, MAX),
            Step::Send(WireOut::SharedText(b)) => codec::decode(b, Encoding::Json, MAX),
            Step::Send(WireOut::SharedBinary(b)) => codec::decode(b, Encoding::Protobuf, MAX),
            other => panic!("not a frame: {other:?}"),
        }
        .unwrap()
    }

    fn connect_body(version: u32) -> Body {
        Body::Connect(v1::Connect {
            token: "tok".into(),
            device_id: "phone".into(),
            platform: "ios".into(),
            protocol_version: version,
        })
    }

    fn info() -> ConnectInfo {
        ConnectInfo {
            user_id: "alice".into(),
            session_id: "s1".into(),
            heartbeat_ms: 30_000,
            server_time: 5,
            cursor: 3,
            inbox_seq: 9,
        }
    }

    /// A connection past its CONNECT, in JSON.
    fn connected() -> Native {
        let mut d = Native::new(MAX);
        let first = steps(d.inbound(WireIn::Text(&json(connect_body(1)))));
        assert!(matches!(&first[..], [Step::Connect(_)]), "{first:?}");
        d.connected(Ok(&info()));
        d
    }

    fn message(conversation_type: u32, sender: &str, target: &str) -> Arc<StoredMessage> {
        Arc::new(StoredMessage {
            uid: "u1".into(),
            conversation_type,
            conversation_id: format!("{sender}:{target}"),
            sender: sender.into(),
            target: target.into(),
            seq: 7,
            sent_time: 1_000,
            msg_type: "text".into(),
            content: r#"{"text":"hi"}"#.into(),
            push_text: String::new(),
            client_msg_id: "c1".into(),
            recalled: false,
            edited: false,
            reactions: Vec::new(),
            mentions: Vec::new(),
            mention_all: false,
            audience: Vec::new(),
        })
    }

    fn one(s: Steps) -> Step {
        let mut all = steps(s);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    #[test]
    fn a_connect_opens_the_session_in_the_encoding_it_came_in() {
        let mut d = Native::new(MAX);
        let bytes = codec::encode_protobuf(&codec::frame(connect_body(1)));
        let Step::Connect(request) = one(d.inbound(WireIn::Binary(&bytes))) else {
            panic!("not a connect");
        };
        assert_eq!(
            (
                &request.token[..],
                &request.device_id[..],
                &request.platform[..]
            ),
            ("tok", "phone", "ios")
        );
        assert_eq!(d.encoding(), Encoding::Protobuf);
        let answer = d.connected(Ok(&info()));
        assert!(matches!(&answer[..], [Step::Send(WireOut::Binary(_))]));
        let Some(Body::Connack(ack)) = sent(&answer[0]).body else {
            panic!("not a CONNACK");
        };
        assert_eq!(ack.code, 0);
        assert_eq!(
            (&ack.user_id[..], ack.cursor, ack.inbox_seq),
            ("alice", 3, 9)
        );
        assert_eq!(ack.heartbeat_ms, 30_000);
    }

    #[test]
    fn a_refused_connect_is_answered_by_a_connack_and_a_close() {
        let mut d = Native::new(MAX);
        d.inbound(WireIn::Text(&json(connect_body(1))));
        let refusal = Refusal::from(Code::TokenExpired);
        let answer = d.connected(Err(&refusal));
        assert!(matches!(
            answer[..],
            [
                Step::Send(WireOut::Text(_)),
                Step::Close(Code::TokenExpired)
            ]
        ));
        let Some(Body::Connack(ack)) = sent(&answer[0]).body else {
            panic!("not a CONNACK");
        };
        assert_eq!(ack.code, Code::TokenExpired.as_u32());

        // A newer protocol version is refused without asking the engine.
        let mut d = Native::new(MAX);
        let answer = steps(d.inbound(WireIn::Text(&json(connect_body(PROTOCOL_VERSION + 1)))));
        let code = Code::UnsupportedProtocolVersion;
        assert!(matches!(answer[..], [Step::Send(_), Step::Close(c)] if c == code));
        let Some(Body::Connack(ack)) = sent(&answer[0]).body else {
            panic!("not a CONNACK");
        };
        assert_eq!(ack.code, code.as_u32());
    }

    #[test]
    fn anything_before_a_connect_ends_the_connection_with_its_code() {
        let ping = json(Body::Pingreq(v1::PingReq {}));
        for (frame, code) in [
            (WireIn::Text(&ping), Code::NotConnected),
            (WireIn::Text("{"), Code::MalformedFrame),
            (WireIn::Text(r#"{"subscribe":{}}"#), Code::UnknownFrameKind),
            (WireIn::Binary(&[0xff, 0xff]), Code::MalformedFrame),
        ] {
            let mut d = Native::new(MAX);
            assert!(
                matches!(one(d.inbound(frame)), Step::End(c) if c == code),
                "{frame:?}"
            );
        }
        let mut d = Native::new(MAX);
        assert!(matches!(d.control()[..], [Step::End(Code::NotConnected)]));
        // The goodbye is a DISCONNECT in the encoding of what the client sent.
        let mut d = Native::new(MAX);
        d.inbound(WireIn::Binary(&[0xff, 0xff]));
        let bye = d.goodbye(Code::MalformedFrame).unwrap();
        let Some(Body::Disconnect(dis)) = sent(&Step::Send(bye)).body else {
            panic!("not a DISCONNECT");
        };
        assert_eq!(dis.code, Code::MalformedFrame.as_u32());
    }

    #[test]
    fn frames_above_the_limit_and_bad_ones_end_a_connected_connection() {
        let mut d = connected();
        let big = json(Body::Pingreq(v1::PingReq {})) + &" ".repeat(MAX);
        assert!(matches!(
            one(d.inbound(WireIn::Text(&big))),
            Step::End(Code::FrameTooLarge)
        ));
        assert!(matches!(
            one(d.inbound(WireIn::Text("[1"))),
            Step::End(Code::MalformedFrame)
        ));
        assert!(matches!(
            one(d.inbound(WireIn::Text(r#"{"subscribe":{}}"#))),
            Step::End(Code::UnknownFrameKind)
        ));
        for body in [
            Body::Connack(v1::ConnAck::default()),
            Body::Queryack(v1::QueryAck::default()),
            Body::Pingresp(v1::PingResp {}),
            Body::Publish(v1::Publish::default()),
        ] {
            assert!(matches!(
                one(d.inbound(WireIn::Text(&json(body)))),
                Step::End(Code::UnexpectedFrame)
            ));
        }
        let bye = json(Body::Disconnect(v1::Disconnect::default()));
        assert!(matches!(
            one(d.inbound(WireIn::Text(&bye))),
            Step::End(Code::ClientDisconnect)
        ));
        // The connection's control frames are the driver's business once it is open.
        assert!(d.control().is_empty());
    }

    #[test]
    fn a_publish_sends_and_a_transient_one_is_a_status_message() {
        let mut d = connected();
        let publish = |transient| {
            Body::Publish(v1::Publish {
                packet_id: 4,
                body: Some(v1::publish::Body::Send(v1::Send {
                    client_msg_id: "c-4".into(),
                    conversation_type: 1,
                    target_id: "bob".into(),
                    msg_type: "text".into(),
                    content: r#"{"text":"hi"}"#.into(),
                    mentioned_user_ids: vec!["carol".into()],
                    transient,
                    ..Default::default()
                })),
            })
        };
        let Step::Publish { packet_id, send } = one(d.inbound(WireIn::Text(&json(publish(false)))))
        else {
            panic!("not a publish");
        };
        assert_eq!(packet_id, 4);
        assert_eq!(
            (
                &send.client_msg_id[..],
                &send.target_id[..],
                send.conversation_type
            ),
            ("c-4", "bob", 1)
        );
        assert_eq!(send.mentions, ["carol"]);
        assert!(matches!(
            one(d.inbound(WireIn::Text(&json(publish(true))))),
            Step::PublishStatus { packet_id: 4, .. }
        ));
    }

    #[test]
    fn pubacks_carry_the_engines_result_or_refusal() {
        let mut d = connected();
        let stored = PubAckOut {
            packet_id: 4,
            uid: "u1".into(),
            seq: 7,
            sent_time: 1_000,
            inbox_seq: 12,
            ..Default::default()
        };
        let Some(Body::Puback(ack)) = sent(&one(d.outbound(Outbound::PubAck(stored), &[]))).body
        else {
            panic!("not a PUBACK");
        };
        assert_eq!(
            (ack.packet_id, ack.code, ack.seq, ack.inbox_seq),
            (4, 0, 7, 12)
        );
        assert_eq!(ack.uid, "u1");
        let refused = PubAckOut::refused(5, Code::ContentEmpty);
        let Some(Body::Puback(ack)) = sent(&one(d.outbound(Outbound::PubAck(refused), &[]))).body
        else {
            panic!("not a PUBACK");
        };
        assert_eq!((ack.packet_id, ack.code), (5, Code::ContentEmpty.as_u32()));
        assert!(!ack.message.is_empty());
    }

    #[test]
    fn acknowledgements_confirmations_and_pings() {
        let mut d = connected();
        let puback = |inbox_seq| {
            json(Body::Puback(v1::PubAck {
                inbox_seq,
                ..Default::default()
            }))
        };
        assert!(matches!(
            one(d.inbound(WireIn::Text(&puback(8)))),
            Step::Ack(8)
        ));
        assert!(steps(d.inbound(WireIn::Text(&puback(0)))).is_empty());
        let querycon = json(Body::Querycon(v1::QueryCon {
            query_id: 0,
            inbox_seq: 9,
        }));
        assert!(matches!(
            one(d.inbound(WireIn::Text(&querycon))),
            Step::Confirm(9)
        ));
        let ping = json(Body::Pingreq(v1::PingReq {}));
        assert!(matches!(one(d.inbound(WireIn::Text(&ping))), Step::Pong));
        let Some(Body::Pingresp(_)) = sent(&one(d.outbound(Outbound::Pong, &[]))).body else {
            panic!("not a PINGRESP");
        };
        // A second CONNECT goes to the engine, which refuses it.
        assert!(matches!(
            one(d.inbound(WireIn::Text(&json(connect_body(1))))),
            Step::Connect(_)
        ));
        let refusal = Outbound::ConnAck {
            code: Code::AlreadyConnected.as_u32(),
            text: "x".into(),
        };
        let Some(Body::Connack(ack)) = sent(&one(d.outbound(refusal, &[]))).body else {
            panic!("not a CONNACK");
        };
        assert_eq!(ack.code, Code::AlreadyConnected.as_u32());
    }

    #[test]
    fn each_query_becomes_its_engine_request() {
        use v1::query::Body as Q;
        let mut d = connected();
        let mut ask = |body: Option<Q>| {
            let frame = json(Body::Query(v1::Query { query_id: 3, body }));
            one(d.inbound(WireIn::Text(&frame)))
        };
        assert!(matches!(
            ask(Some(Q::Sync(v1::SyncInbox {
                after: 5,
                limit: 50
            }))),
            Step::Sync {
                query_id: 3,
                after: 5,
                limit: 50
            }
        ));
        let users = vec!["bob".to_string()];
        assert!(matches!(
            ask(Some(Q::SubscribePresence(v1::SubscribePresence { user_ids: users.clone() }))),
            Step::Presence { query_id: 3, subscribe: true, ref users } if users == &["bob"]
        ));
        assert!(matches!(
            ask(Some(Q::GetPresence(v1::GetPresence {
                user_ids: users.clone()
            }))),
            Step::Presence {
                subscribe: false,
                ..
            }
        ));
        assert!(matches!(
            ask(Some(Q::GetUsers(v1::GetUsers { user_ids: users }))),
            Step::UserQuery { query_id: 3, .. }
        ));
        assert!(matches!(
            ask(Some(Q::GetGroup(v1::GetGroup { group_id: "g".into() }))),
            Step::Group { query_id: 3, query: GroupQuery::Get { ref group } } if group == "g"
        ));
        assert!(matches!(
            ask(Some(Q::ListGroups(v1::ListGroups {}))),
            Step::Group {
                query: GroupQuery::List,
                ..
            }
        ));
        assert!(matches!(
            ask(Some(Q::JoinChatroom(v1::JoinChatroom {
                chatroom_id: "r".into(),
                recent: 10,
                after_seq: 0,
            }))),
            Step::Chatroom {
                query_id: 3,
                query: ChatroomQuery::Join { recent: 10, .. }
            }
        ));
        assert!(matches!(
            ask(Some(Q::GetHistory(v1::GetHistory {
                conversation_type: 1,
                target_id: "bob".into(),
                before_seq: 9,
                count: 20,
                ..Default::default()
            }))),
            Step::Conversation {
                query_id: 3,
                query: ConversationQuery::History {
                    count: 20,
                    from: HistoryStart { before_seq: 9, .. },
                    ..
                }
            }
        ));
        assert!(matches!(
            ask(Some(Q::RecallMessage(v1::RecallMessage {
                conversation_type: 1,
                target_id: "bob".into(),
                seq: 4,
            }))),
            Step::Conversation {
                query: ConversationQuery::Amend {
                    seq: 4,
                    action: AmendRequest::Recall,
                    ..
                },
                ..
            }
        ));
        assert!(matches!(
            ask(Some(Q::SearchMessages(v1::SearchMessages {
                query: "hi".into(),
                ..Default::default()
            }))),
            Step::Conversation {
                query: ConversationQuery::Search {
                    conversation: None,
                    ..
                },
                ..
            }
        ));
        assert!(matches!(
            ask(None),
            Step::RejectQuery {
                query_id: 3,
                reason: "the query has no body"
            }
        ));
    }

    #[test]
    fn a_queryack_carries_the_answer() {
        let mut d = connected();
        let viewer = Delivered::for_viewer("bob", message(1, "alice", "bob"), 12);
        let answer = QueryAckOut {
            query_id: 3,
            messages: vec![viewer],
            has_more: true,
            user_ids: vec!["carol".into()],
            ..Default::default()
        };
        let step = one(d.outbound(Outbound::QueryAck(Box::new(answer)), &[]));
        let Some(Body::Queryack(ack)) = sent(&step).body else {
            panic!("not a QUERYACK");
        };
        assert_eq!((ack.query_id, ack.code, ack.has_more), (3, 0, true));
        assert_eq!(ack.user_ids, ["carol"]);
        // A private message to the viewer names the sender as the conversation's target.
        let m = &ack.messages[0];
        assert_eq!((&m.target_id[..], m.inbox_seq, m.seq), ("alice", 12, 7));
        let refused = QueryAckOut {
            query_id: 4,
            code: Code::BadRequest.as_u32(),
            text: "no".into(),
            ..Default::default()
        };
        let step = one(d.outbound(Outbound::QueryAck(Box::new(refused)), &[]));
        let Some(Body::Queryack(ack)) = sent(&step).body else {
            panic!("not a QUERYACK");
        };
        assert_eq!(
            (ack.query_id, ack.code, &ack.message[..]),
            (4, Code::BadRequest.as_u32(), "no")
        );
    }

    #[test]
    fn deliveries_and_status_messages_are_publishes() {
        let mut d = connected();
        let delivered = Arc::new(Delivered::for_viewer("bob", message(1, "alice", "bob"), 12));
        let item = Outbound::Deliver {
            message: delivered.clone(),
            dup: true,
        };
        let frame = sent(&one(d.outbound(item, &[])));
        assert_eq!((frame.qos, frame.dup), (1, true));
        let Some(Body::Publish(v1::Publish {
            body: Some(v1::publish::Body::Message(m)),
            ..
        })) = frame.body
        else {
            panic!("not a message");
        };
        assert_eq!(
            (&m.uid[..], &m.sender_id[..], m.inbox_seq),
            ("u1", "alice", 12)
        );
        assert_eq!(m.content, r#"{"text":"hi"}"#);
        let frame = sent(&one(d.outbound(Outbound::Status(delivered), &[])));
        assert_eq!((frame.qos, frame.dup), (0, false));
        // An event of the server's (a user event) goes out as any message does.
        let mut event = (*message(0, "alice", "alice")).clone();
        event.msg_type = "tidings:conversation".into();
        let event = Delivered::for_viewer("alice", Arc::new(event), 13);
        let item = Outbound::Deliver {
            message: Arc::new(event),
            dup: false,
        };
        let Some(Body::Publish(v1::Publish {
            body: Some(v1::publish::Body::Message(m)),
            ..
        })) = sent(&one(d.outbound(item, &[]))).body
        else {
            panic!("not a message");
        };
        assert_eq!((&m.msg_type[..], m.inbox_seq), ("tidings:conversation", 13));
    }

    #[test]
    fn a_room_item_is_encoded_once_per_encoding_and_shared() {
        let room: Arc<str> = Arc::from("r");
        let item = Arc::new(RoomItem::new(
            room,
            (*message(4, "alice", "r")).clone(),
            tidings_engine::Priority::Normal,
            0,
            String::new(),
        ));
        let mut json_conn = connected();
        let first = one(json_conn.outbound(Outbound::Room(item.clone()), &[]));
        let second = one(json_conn.outbound(Outbound::Room(item.clone()), &[]));
        let (Step::Send(WireOut::SharedText(a)), Step::Send(WireOut::SharedText(b))) =
            (&first, &second)
        else {
            panic!("not shared text: {first:?}");
        };
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same bytes, not a copy");
        let frame = sent(&first);
        assert_eq!(frame.qos, 0);
        let mut pb_conn = Native::new(MAX);
        let bytes = codec::encode_protobuf(&codec::frame(connect_body(1)));
        pb_conn.inbound(WireIn::Binary(&bytes));
        pb_conn.connected(Ok(&info()));
        let step = one(pb_conn.outbound(Outbound::Room(item), &[]));
        assert!(matches!(step, Step::Send(WireOut::SharedBinary(_))));
        assert_eq!(sent(&step), frame);
    }

    #[test]
    fn the_goodbye_is_a_disconnect_with_the_code() {
        let mut d = connected();
        let bye = d.goodbye(Code::SlowConsumer).unwrap();
        let Some(Body::Disconnect(dis)) = sent(&Step::Send(bye)).body else {
            panic!("not a DISCONNECT");
        };
        assert_eq!(dis.code, Code::SlowConsumer.as_u32());
        assert_eq!(dis.reconnect, Code::SlowConsumer.reconnect());
    }
}
