//! The envelope events cross the bus in between processes: protobuf (`proto/bus.proto`,
//! package `tidings.bus.v1`) with a version number and the sending node. The generated types
//! stay in this module; [`BusEvent`] is converted to and from them by hand, so an internal type
//! can change without changing the wire. Decoding is a pure function: bytes in, an event or an
//! [`EnvelopeError`] out, never a panic. Must not depend on any transport.

use prost::Message;
use tidings_store::{Reaction, StoredMessage};

use crate::event::{BusEvent, RoomEntry, RoomPost, RoomSnapshot, RoomStanding};

/// The generated types of `proto/bus.proto`.
#[allow(clippy::all, missing_docs)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/tidings.bus.v1.rs"));
}

use pb::envelope::Event;

/// The envelope version this node writes and the only one it reads.
pub const VERSION: u32 = 2;

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Written by a node of another version (a cluster in the middle of an upgrade).
    #[error("envelope version {got}, this node speaks version {VERSION}")]
    Version { got: u32 },
    /// Not a protobuf envelope.
    #[error("malformed envelope: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A protobuf envelope without a part every event of its kind has (or with an event this
    /// version does not know).
    #[error("malformed envelope: no {0}")]
    Missing(&'static str),
}

/// An envelope's sender, read (with its version checked) without decoding the event.
pub fn sender(bytes: &[u8]) -> Result<String, EnvelopeError> {
    // Only the header's fields are read: the event's bytes are skipped over, not decoded.
    let header = pb::Header::decode(bytes)?;
    if header.version != VERSION {
        return Err(EnvelopeError::Version {
            got: header.version,
        });
    }
    Ok(header.from)
}

/// `event`, sent by node `from`, as the bytes that cross the bus: a batch of one.
pub fn encode(from: &str, event: BusEvent) -> Vec<u8> {
    batch(from, [encode_event(event).as_slice()])
}

/// One event's bytes, for a [`batch`]: an envelope holding the event alone (the batch holds the
/// version and the sender).
pub fn encode_event(event: BusEvent) -> Vec<u8> {
    pb::Envelope {
        version: 0,
        from: String::new(),
        event: Some(event_to_pb(event)),
    }
    .encode_to_vec()
}

/// The bytes of a batch of events that node `from` publishes on one subject, each encoded by
/// [`encode_event`], in order.
pub fn batch<'e>(from: &str, events: impl IntoIterator<Item = &'e [u8]>) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint};
    let mut bytes = pb::Header {
        version: VERSION,
        from: from.to_string(),
    }
    .encode_to_vec();
    for event in events {
        // Field 3, `events`: each an embedded message of its length.
        encode_key(3, WireType::LengthDelimited, &mut bytes);
        encode_varint(event.len() as u64, &mut bytes);
        bytes.extend_from_slice(event);
    }
    bytes
}

/// The sender and the events of a batch, in order. An event this node cannot read is refused
/// alone: the others of its batch are still answered.
pub fn decode(
    bytes: &[u8],
) -> Result<(String, Vec<Result<BusEvent, EnvelopeError>>), EnvelopeError> {
    // The version first, so that a newer layout is reported as a version, not as garbage.
    sender(bytes)?;
    let batch = pb::Batch::decode(bytes)?;
    let events = batch
        .events
        .into_iter()
        .map(|e| event_from_pb(e.event.ok_or(EnvelopeError::Missing("event"))?))
        .collect();
    Ok((batch.from, events))
}

fn event_to_pb(event: BusEvent) -> Event {
    match event {
        BusEvent::Deliver {
            message,
            inbox,
            except_device,
        } => Event::Deliver(pb::Deliver {
            message: Some(message_to_pb(message)),
            inbox: inbox
                .into_iter()
                .map(|(user, inbox_seq)| pb::InboxEntry { user, inbox_seq })
                .collect(),
            except_device,
        }),
        BusEvent::Status {
            message,
            users,
            except_device,
        } => Event::Status(pb::Status {
            message: Some(message_to_pb(message)),
            users,
            except_device,
        }),
        BusEvent::Connected {
            node,
            user,
            device,
            anonymous,
        } => Event::Connected(pb::Connected {
            node,
            user,
            device,
            anonymous,
        }),
        BusEvent::Presence { node, user, online } => {
            Event::Presence(pb::Presence { node, user, online })
        }
        BusEvent::Snapshot { node, users } => Event::Snapshot(pb::Snapshot { node, users }),
        BusEvent::Hello { node } => Event::Hello(pb::Hello { node }),
        BusEvent::Alive { node, urls } => Event::Alive(pb::Alive { node, urls }),
        BusEvent::Leaving { node } => Event::Leaving(pb::Leaving { node }),
        BusEvent::Revoked { user, version } => Event::Revoked(pb::Revoked { user, version }),
        BusEvent::Banned { user, banned } => Event::Banned(pb::Banned { user, banned }),
        BusEvent::Resync { node } => Event::Resync(pb::Resync { node }),
        BusEvent::RoomForward { home, known, post } => Event::RoomForward(pb::RoomForward {
            home,
            known,
            post: Some(post_to_pb(post)),
        }),
        BusEvent::RoomItem { post } => Event::RoomItem(pb::RoomItem {
            post: Some(post_to_pb(post)),
        }),
        BusEvent::RoomSeq { home, room, seq } => Event::RoomSeq(pb::RoomSeq { home, room, seq }),
        BusEvent::RoomRepeat { node, post } => Event::RoomRepeat(pb::RoomRepeat {
            node,
            post: Some(post_to_pb(post)),
        }),
        BusEvent::RoomStateAsk {
            home,
            room,
            node,
            token,
        } => Event::RoomStateAsk(pb::RoomStateAsk {
            home,
            room,
            node,
            token,
        }),
        BusEvent::RoomStateIs { node, token, state } => Event::RoomStateIs(pb::RoomStateIs {
            node,
            token,
            state: state.map(snapshot_to_pb),
        }),
        BusEvent::RoomCount {
            home,
            room,
            node,
            count,
        } => Event::RoomCount(pb::RoomCount {
            home,
            room,
            node,
            count,
        }),
        BusEvent::RoomMembersAsk {
            room,
            node,
            token,
            after,
            limit,
        } => Event::RoomMembersAsk(pb::RoomMembersAsk {
            room,
            node,
            token,
            after,
            limit,
        }),
        BusEvent::RoomMembersAre {
            node,
            token,
            from,
            members,
        } => Event::RoomMembersAre(pb::RoomMembersAre {
            node,
            token,
            from,
            members: members
                .into_iter()
                .map(|(user, joined)| pb::RoomMember { user, joined })
                .collect(),
        }),
        BusEvent::Kick { user, device } => Event::Kick(pb::Kick { user, device }),
    }
}

fn event_from_pb(event: Event) -> Result<BusEvent, EnvelopeError> {
    Ok(match event {
        Event::Deliver(d) => BusEvent::Deliver {
            message: message_from_pb(d.message)?,
            inbox: d.inbox.into_iter().map(|e| (e.user, e.inbox_seq)).collect(),
            except_device: d.except_device,
        },
        Event::Status(s) => BusEvent::Status {
            message: message_from_pb(s.message)?,
            users: s.users,
            except_device: s.except_device,
        },
        Event::Connected(c) => BusEvent::Connected {
            node: c.node,
            user: c.user,
            device: c.device,
            anonymous: c.anonymous,
        },
        Event::Presence(p) => BusEvent::Presence {
            node: p.node,
            user: p.user,
            online: p.online,
        },
        Event::Snapshot(s) => BusEvent::Snapshot {
            node: s.node,
            users: s.users,
        },
        Event::Hello(h) => BusEvent::Hello { node: h.node },
        Event::Alive(a) => BusEvent::Alive {
            node: a.node,
            urls: a.urls,
        },
        Event::Leaving(l) => BusEvent::Leaving { node: l.node },
        Event::Revoked(r) => BusEvent::Revoked {
            user: r.user,
            version: r.version,
        },
        Event::Banned(b) => BusEvent::Banned {
            user: b.user,
            banned: b.banned,
        },
        Event::Resync(r) => BusEvent::Resync { node: r.node },
        Event::RoomForward(f) => BusEvent::RoomForward {
            home: f.home,
            known: f.known,
            post: post_from_pb(f.post)?,
        },
        Event::RoomItem(i) => BusEvent::RoomItem {
            post: post_from_pb(i.post)?,
        },
        Event::RoomSeq(s) => BusEvent::RoomSeq {
            home: s.home,
            room: s.room,
            seq: s.seq,
        },
        Event::RoomRepeat(r) => BusEvent::RoomRepeat {
            node: r.node,
            post: post_from_pb(r.post)?,
        },
        Event::RoomStateAsk(a) => BusEvent::RoomStateAsk {
            home: a.home,
            room: a.room,
            node: a.node,
            token: a.token,
        },
        Event::RoomStateIs(i) => BusEvent::RoomStateIs {
            node: i.node,
            token: i.token,
            state: i.state.map(snapshot_from_pb).transpose()?,
        },
        Event::RoomCount(c) => BusEvent::RoomCount {
            home: c.home,
            room: c.room,
            node: c.node,
            count: c.count,
        },
        Event::RoomMembersAsk(a) => BusEvent::RoomMembersAsk {
            room: a.room,
            node: a.node,
            token: a.token,
            after: a.after,
            limit: a.limit,
        },
        Event::RoomMembersAre(a) => BusEvent::RoomMembersAre {
            node: a.node,
            token: a.token,
            from: a.from,
            members: a.members.into_iter().map(|m| (m.user, m.joined)).collect(),
        },
        Event::Kick(k) => BusEvent::Kick {
            user: k.user,
            device: k.device,
        },
    })
}

fn snapshot_to_pb(s: RoomSnapshot) -> pb::RoomSnapshot {
    pb::RoomSnapshot {
        history: s.history.into_iter().map(post_to_pb).collect(),
        member_counts: s
            .member_counts
            .into_iter()
            .map(|(node, count)| pb::NodeCount { node, count })
            .collect(),
        muted_until: s.muted_until,
        standings: s
            .standings
            .into_iter()
            .map(|s| pb::RoomStanding {
                user: s.user,
                banned_until: s.banned_until,
                muted_until: s.muted_until,
            })
            .collect(),
        entries: s
            .entries
            .into_iter()
            .map(|e| pb::RoomEntry {
                key: e.key,
                value: e.value,
                user: e.user,
                updated: e.updated,
                auto_delete: e.auto_delete,
            })
            .collect(),
    }
}

fn snapshot_from_pb(s: pb::RoomSnapshot) -> Result<RoomSnapshot, EnvelopeError> {
    Ok(RoomSnapshot {
        history: s
            .history
            .into_iter()
            .map(|p| post_from_pb(Some(p)))
            .collect::<Result<_, _>>()?,
        member_counts: s
            .member_counts
            .into_iter()
            .map(|c| (c.node, c.count))
            .collect(),
        muted_until: s.muted_until,
        standings: s
            .standings
            .into_iter()
            .map(|s| RoomStanding {
                user: s.user,
                banned_until: s.banned_until,
                muted_until: s.muted_until,
            })
            .collect(),
        entries: s
            .entries
            .into_iter()
            .map(|e| RoomEntry {
                key: e.key,
                value: e.value,
                user: e.user,
                updated: e.updated,
                auto_delete: e.auto_delete,
            })
            .collect(),
    })
}

fn post_to_pb(post: RoomPost) -> pb::RoomPost {
    pb::RoomPost {
        message: Some(message_to_pb(post.message)),
        priority: post.priority,
        digest: post.digest,
        node: post.node,
        session: post.session,
        token: post.token,
    }
}

fn post_from_pb(post: Option<pb::RoomPost>) -> Result<RoomPost, EnvelopeError> {
    let post = post.ok_or(EnvelopeError::Missing("chatroom item"))?;
    Ok(RoomPost {
        message: message_from_pb(post.message)?,
        priority: post.priority,
        digest: post.digest,
        node: post.node,
        session: post.session,
        token: post.token,
    })
}

fn message_to_pb(m: StoredMessage) -> pb::StoredMessage {
    pb::StoredMessage {
        uid: m.uid,
        conversation_type: m.conversation_type,
        conversation_id: m.conversation_id,
        sender: m.sender,
        target: m.target,
        seq: m.seq,
        sent_time: m.sent_time,
        msg_type: m.msg_type,
        content: m.content,
        push_text: m.push_text,
        client_msg_id: m.client_msg_id,
        recalled: m.recalled,
        edited: m.edited,
        reactions: m
            .reactions
            .into_iter()
            .map(|r| pb::Reaction {
                emoji: r.emoji,
                users: r.users,
            })
            .collect(),
        mentions: m.mentions,
        mention_all: m.mention_all,
        audience: m.audience,
    }
}

fn message_from_pb(m: Option<pb::StoredMessage>) -> Result<StoredMessage, EnvelopeError> {
    let m = m.ok_or(EnvelopeError::Missing("message"))?;
    Ok(StoredMessage {
        uid: m.uid,
        conversation_type: m.conversation_type,
        conversation_id: m.conversation_id,
        sender: m.sender,
        target: m.target,
        seq: m.seq,
        sent_time: m.sent_time,
        msg_type: m.msg_type,
        content: m.content,
        push_text: m.push_text,
        client_msg_id: m.client_msg_id,
        recalled: m.recalled,
        edited: m.edited,
        reactions: m
            .reactions
            .into_iter()
            .map(|r| Reaction {
                emoji: r.emoji,
                users: r.users,
            })
            .collect(),
        mentions: m.mentions,
        mention_all: m.mention_all,
        audience: m.audience,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message with every field set to something other than its default, so a field the
    /// conversion forgot shows as a difference.
    fn message(seq: u64) -> StoredMessage {
        StoredMessage {
            uid: "01J0000000000000000000000A".into(),
            conversation_type: 2,
            conversation_id: "g:team".into(),
            sender: "alice".into(),
            target: "team".into(),
            seq,
            sent_time: 1_764_000_000_123,
            msg_type: "text".into(),
            content: r#"{"text":"hello"}"#.into(),
            push_text: "hello".into(),
            client_msg_id: "c-1".into(),
            recalled: true,
            edited: true,
            reactions: vec![Reaction {
                emoji: "👍".into(),
                users: vec!["bob".into(), "carol".into()],
            }],
            mentions: vec!["bob".into()],
            mention_all: true,
            audience: vec!["carol".into()],
        }
    }

    fn post() -> RoomPost {
        RoomPost {
            message: message(0),
            priority: 3,
            digest: "d1g3st".into(),
            node: "b".into(),
            session: 17,
            token: 42,
        }
    }

    /// One event of every kind (the match makes a new kind fail to compile here until it is
    /// added).
    fn every_event() -> Vec<BusEvent> {
        let events = vec![
            BusEvent::Deliver {
                message: message(9),
                inbox: vec![("bob".into(), 5), ("carol".into(), 7)],
                except_device: Some("phone".into()),
            },
            BusEvent::Deliver {
                message: message(10),
                inbox: vec![("bob".into(), 6)],
                except_device: None,
            },
            BusEvent::Status {
                message: message(0),
                users: vec!["bob".into()],
                except_device: Some(String::new()),
            },
            BusEvent::Connected {
                node: "a".into(),
                user: "bob".into(),
                device: "laptop".into(),
                anonymous: true,
            },
            BusEvent::Presence {
                node: "a".into(),
                user: "bob".into(),
                online: true,
            },
            BusEvent::Snapshot {
                node: "a".into(),
                users: vec!["bob".into(), "carol".into()],
            },
            BusEvent::Hello { node: "a".into() },
            BusEvent::Alive {
                node: "a".into(),
                urls: vec!["https://a.example".into()],
            },
            BusEvent::Leaving { node: "a".into() },
            BusEvent::Revoked {
                user: "bob".into(),
                version: 3,
            },
            BusEvent::Banned {
                user: "bob".into(),
                banned: true,
            },
            BusEvent::Resync { node: "a".into() },
            BusEvent::RoomForward {
                home: "c".into(),
                known: 11,
                post: post(),
            },
            BusEvent::RoomItem { post: post() },
            BusEvent::RoomSeq {
                home: "c".into(),
                room: "plaza".into(),
                seq: 12,
            },
            BusEvent::RoomRepeat {
                node: "b".into(),
                post: post(),
            },
            BusEvent::RoomStateAsk {
                home: "c".into(),
                room: "plaza".into(),
                node: "b".into(),
                token: 7,
            },
            BusEvent::RoomStateIs {
                node: "b".into(),
                token: 7,
                state: Some(RoomSnapshot {
                    muted_until: 5,
                    standings: vec![RoomStanding {
                        user: "eve".into(),
                        banned_until: i64::MAX,
                        muted_until: 0,
                    }],
                    entries: vec![RoomEntry {
                        key: "topic".into(),
                        value: "rust".into(),
                        user: "alice".into(),
                        updated: 9,
                        auto_delete: true,
                    }],
                    history: vec![post()],
                    member_counts: vec![("a".into(), 3), ("c".into(), 0)],
                }),
            },
            BusEvent::RoomMembersAsk {
                room: "plaza".into(),
                node: "b".into(),
                token: 9,
                after: 1 << 40,
                limit: 101,
            },
            BusEvent::RoomMembersAre {
                node: "b".into(),
                token: 9,
                from: "a".into(),
                members: vec![("alice".into(), 1_764_000_000_000)],
            },
            BusEvent::RoomCount {
                home: "c".into(),
                room: "plaza".into(),
                node: "b".into(),
                count: 12,
            },
            BusEvent::RoomStateIs {
                node: "b".into(),
                token: 8,
                state: None,
            },
            BusEvent::Kick {
                user: "bob".into(),
                device: Some("phone".into()),
            },
            BusEvent::Kick {
                user: "bob".into(),
                device: None,
            },
        ];
        for e in &events {
            match e {
                BusEvent::Deliver { .. }
                | BusEvent::Status { .. }
                | BusEvent::Connected { .. }
                | BusEvent::Presence { .. }
                | BusEvent::Snapshot { .. }
                | BusEvent::Hello { .. }
                | BusEvent::Alive { .. }
                | BusEvent::Leaving { .. }
                | BusEvent::Revoked { .. }
                | BusEvent::Banned { .. }
                | BusEvent::Resync { .. }
                | BusEvent::RoomForward { .. }
                | BusEvent::RoomItem { .. }
                | BusEvent::RoomSeq { .. }
                | BusEvent::RoomRepeat { .. }
                | BusEvent::RoomStateAsk { .. }
                | BusEvent::RoomStateIs { .. }
                | BusEvent::RoomCount { .. }
                | BusEvent::RoomMembersAsk { .. }
                | BusEvent::RoomMembersAre { .. }
                | BusEvent::Kick { .. } => {}
            }
        }
        events
    }

    #[test]
    fn every_event_round_trips() {
        for event in every_event() {
            let bytes = encode("node-a", event.clone());
            assert_eq!(sender(&bytes).unwrap(), "node-a");
            let (from, back) = decode(&bytes).unwrap();
            let back: Vec<BusEvent> = back.into_iter().map(Result::unwrap).collect();
            assert_eq!((from.as_str(), back), ("node-a", vec![event]));
        }
    }

    #[test]
    fn a_batch_keeps_its_events_in_order_and_refuses_one_it_cannot_read_alone() {
        let events = every_event();
        let mut parts: Vec<Vec<u8>> = events.iter().cloned().map(encode_event).collect();
        // An event of a kind this version does not know (a field number it does not read).
        parts.insert(1, vec![0xf8, 0x07, 0x01]);
        let bytes = batch("node-b", parts.iter().map(Vec::as_slice));
        assert_eq!(sender(&bytes).unwrap(), "node-b");
        let (from, mut back) = decode(&bytes).unwrap();
        assert_eq!(from, "node-b");
        assert!(matches!(
            back.remove(1),
            Err(EnvelopeError::Missing("event"))
        ));
        let back: Vec<BusEvent> = back.into_iter().map(Result::unwrap).collect();
        assert_eq!(back, events);
        let (_, none) = decode(&batch("node-b", [])).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn garbage_is_a_malformed_envelope() {
        for bytes in [
            &b"\xff\xff\xff\xff\xff"[..],
            // A truncated envelope.
            &encode("a", BusEvent::Hello { node: "a".into() })[..6],
        ] {
            assert!(
                matches!(decode(bytes), Err(EnvelopeError::Decode(_))),
                "{bytes:?}"
            );
        }
        // What a node of the JSON bus sent is refused too, one way or the other.
        let json = br#"{"from":"a","event":{"Hello":{"node":"a"}}}"#;
        assert!(matches!(
            decode(json),
            Err(EnvelopeError::Decode(_) | EnvelopeError::Version { got: 0 })
        ));
    }

    #[test]
    fn an_envelope_without_its_event_or_message_is_malformed() {
        let bare = pb::Envelope {
            version: 0,
            from: String::new(),
            event: None,
        };
        let no_message = pb::Envelope {
            version: 0,
            from: String::new(),
            event: Some(Event::Deliver(pb::Deliver::default())),
        };
        let parts = [bare.encode_to_vec(), no_message.encode_to_vec()];
        let (_, back) = decode(&batch("a", parts.iter().map(Vec::as_slice))).unwrap();
        assert!(matches!(
            back.as_slice(),
            [
                Err(EnvelopeError::Missing("event")),
                Err(EnvelopeError::Missing("message"))
            ]
        ));
    }

    #[test]
    fn a_version_1_envelope_is_refused() {
        // What the release before sent: one event per message, version 1.
        let old = pb::Envelope {
            version: 1,
            from: "a".into(),
            event: Some(event_to_pb(BusEvent::Hello { node: "a".into() })),
        }
        .encode_to_vec();
        assert!(matches!(
            decode(&old),
            Err(EnvelopeError::Version { got: 1 })
        ));
    }

    #[test]
    fn another_version_is_refused_before_its_event_is_read() {
        let mut future = pb::Envelope {
            version: VERSION + 1,
            from: "a".into(),
            event: Some(event_to_pb(BusEvent::Hello { node: "a".into() })),
        }
        .encode_to_vec();
        // A field this version reads as a message (10, `deliver`) written as a number: this
        // version could not decode the rest, and still reports the version.
        future.extend_from_slice(&[0x50, 0x01]);
        assert!(matches!(
            decode(&future),
            Err(EnvelopeError::Version { got }) if got == VERSION + 1
        ));
        assert!(matches!(
            sender(&future),
            Err(EnvelopeError::Version { .. })
        ));
    }
}
