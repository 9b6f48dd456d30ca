//! Conversation settings: how an update moves read, cleared and removed positions, and the
//! contents of the user event and the read receipt that report it. Also who a conversation's
//! target is as a user sees it, and how a message that records a change is made.
//!
//! Pure functions of their arguments: no SQL, no I/O (see the module above).

use crate::{AppendMessage, ConversationSettings, ConversationUpdate, PRIVATE, SYSTEM};

/// A user's side of a conversation as stored before an update (zeros and `false` for a row
/// the update creates).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettingsRow {
    pub read_seq: u64,
    pub pinned: bool,
    pub muted: bool,
    pub removed_seq: u64,
    pub cleared_seq: u64,
    pub until_seq: u64,
}

impl SettingsRow {
    /// The settings of the conversation of this type with this target.
    pub fn into_settings(self, conversation_type: u32, target_id: String) -> ConversationSettings {
        ConversationSettings {
            conversation_type,
            target_id,
            read_seq: self.read_seq,
            pinned: self.pinned,
            muted: self.muted,
            removed_seq: self.removed_seq,
            cleared_seq: self.cleared_seq,
            until_seq: self.until_seq,
        }
    }
}

/// What an update depends on, read under the conversation row's lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateSnapshot {
    pub row: SettingsRow,
    /// The conversation's newest seq (0 if it has no messages).
    pub last_seq: u64,
    /// For an update with a `read_time`: the newest seq above `row.read_seq` of a message sent
    /// at or before it, or `row.read_seq` if there is none. Not read otherwise.
    pub read_by_time: u64,
    /// For an update with a `clear_before_time`: the newest seq above `row.cleared_seq` of a
    /// message sent at or before it, or `row.cleared_seq` if there is none. Not read otherwise.
    pub cleared_by_time: u64,
}

/// What a conversation update writes: the settings (the row's new values), the user event
/// that reports them, and the read receipt for the other participant.
#[derive(Debug, Clone)]
pub struct ConversationChange {
    /// The user whose side of the conversation changed.
    pub user: String,
    /// The settings after the update; `target_id` is the update's target.
    pub settings: ConversationSettings,
    /// The user event for the user's inbox, its content the settings.
    pub event: AppendMessage,
    /// When the update asked for a receipt and the read position moved: the receipt for the
    /// other participant's inbox. The store also raises their side's `peer_read_seq` to
    /// `settings.read_seq`.
    pub receipt: Option<AppendMessage>,
}

/// Applies `u` to the conversation as `snapshot` has it.
///
/// The read position only moves forward: to `u.read_seq` (bounded by the newest message the
/// user sees), to the newest message sent by `u.read_time`, past the cleared history, and to
/// the newest message on a removal. A member who left a group (`until_seq`) sees nothing
/// after that seq.
pub fn update(
    u: ConversationUpdate,
    snapshot: &UpdateSnapshot,
) -> Result<ConversationChange, serde_json::Error> {
    let row = snapshot.row;
    let mut read_seq = row.read_seq;
    let mut cleared_seq = row.cleared_seq;
    let mut removed_seq = row.removed_seq;
    let mut last = snapshot.last_seq;
    if row.until_seq > 0 {
        last = last.min(row.until_seq);
    }
    if u.read_seq > 0 {
        read_seq = read_seq.max(u.read_seq.min(last));
    }
    if u.read_time > 0 {
        read_seq = read_seq.max(snapshot.read_by_time);
    }
    if u.clear_before_time > 0 {
        cleared_seq = cleared_seq.max(snapshot.cleared_by_time);
        read_seq = read_seq.max(cleared_seq);
    }
    if u.remove {
        removed_seq = last;
        read_seq = read_seq.max(last);
    }
    let settings = SettingsRow {
        read_seq,
        pinned: u.pinned.unwrap_or(row.pinned),
        muted: u.muted.unwrap_or(row.muted),
        removed_seq,
        cleared_seq,
        until_seq: row.until_seq,
    }
    .into_settings(u.conversation_type, u.target);
    let event = recording_event(u.event, serde_json::to_string(&settings)?);
    let receipt = match u.receipt {
        Some(r) if read_seq > row.read_seq => {
            let content = serde_json::json!({
                "conversationType": u.conversation_type,
                "targetId": u.user,
                "readSeq": read_seq,
            });
            Some(recording_event(r, content.to_string()))
        }
        _ => None,
    };
    Ok(ConversationChange {
        user: u.user,
        settings,
        event,
        receipt,
    })
}

/// `event` made into the message that records a change (a user event, an amend's event):
/// with `content`, its uid as its digest (the store made it, so a resend cannot), not counted
/// as unread, and creating nobody's conversation row.
pub fn recording_event(mut event: AppendMessage, content: String) -> AppendMessage {
    event.content = content;
    event.digest = event.uid.clone();
    event.counted = false;
    event.participants.clear();
    event
}

/// The target of a conversation a message was sent in, as `user` sees it: in a private or
/// system conversation, a message from the other participant is seen under its sender.
pub fn target_seen_by(
    user: &str,
    conversation_type: u32,
    sender: String,
    target: String,
) -> String {
    if matches!(conversation_type, PRIVATE | SYSTEM) && sender != user {
        sender
    } else {
        target
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Participant;

    fn request() -> ConversationUpdate {
        ConversationUpdate {
            user: "alice".into(),
            conversation_type: PRIVATE,
            target: "bob".into(),
            conversation_id: "alice:bob".into(),
            event: AppendMessage {
                uid: "ev1".into(),
                counted: true,
                participants: vec![Participant {
                    user: "alice".into(),
                    target: "bob".into(),
                }],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn with_receipt() -> ConversationUpdate {
        ConversationUpdate {
            receipt: Some(AppendMessage {
                uid: "rc1".into(),
                ..Default::default()
            }),
            ..request()
        }
    }

    fn snapshot(read_seq: u64, last_seq: u64) -> UpdateSnapshot {
        UpdateSnapshot {
            row: SettingsRow {
                read_seq,
                ..Default::default()
            },
            last_seq,
            ..Default::default()
        }
    }

    #[test]
    fn reading_is_bounded_by_the_newest_message_and_never_moves_back() {
        let up = |read_seq, snap: &UpdateSnapshot| {
            let u = ConversationUpdate {
                read_seq,
                ..request()
            };
            update(u, snap).unwrap().settings.read_seq
        };
        assert_eq!(up(7, &snapshot(2, 10)), 7);
        assert_eq!(up(70, &snapshot(2, 10)), 10);
        assert_eq!(up(1, &snapshot(5, 10)), 5);
        // Zero leaves the position.
        assert_eq!(up(0, &snapshot(5, 10)), 5);
    }

    #[test]
    fn a_member_who_left_reads_and_removes_only_up_to_the_leave() {
        let snap = UpdateSnapshot {
            row: SettingsRow {
                until_seq: 6,
                ..Default::default()
            },
            last_seq: 10,
            ..Default::default()
        };
        let u = ConversationUpdate {
            read_seq: 9,
            ..request()
        };
        assert_eq!(update(u, &snap).unwrap().settings.read_seq, 6);
        let u = ConversationUpdate {
            remove: true,
            ..request()
        };
        let s = update(u, &snap).unwrap().settings;
        assert_eq!((s.removed_seq, s.read_seq, s.until_seq), (6, 6, 6));
    }

    #[test]
    fn reading_by_time_takes_the_seq_the_store_resolved() {
        let mut snap = snapshot(3, 10);
        snap.read_by_time = 8;
        let u = ConversationUpdate {
            read_time: 1_000,
            ..request()
        };
        assert_eq!(update(u, &snap).unwrap().settings.read_seq, 8);
        // Without a read time, the resolved seq is not looked at.
        assert_eq!(update(request(), &snap).unwrap().settings.read_seq, 3);
    }

    #[test]
    fn clearing_moves_the_cleared_position_and_reads_up_to_it() {
        let mut snap = snapshot(2, 10);
        snap.row.cleared_seq = 1;
        snap.cleared_by_time = 4;
        let u = ConversationUpdate {
            clear_before_time: 1_000,
            ..request()
        };
        let s = update(u, &snap).unwrap().settings;
        assert_eq!((s.cleared_seq, s.read_seq), (4, 4));
        // A cleared position already past the time stays.
        snap.row.cleared_seq = 7;
        let u = ConversationUpdate {
            clear_before_time: 1_000,
            ..request()
        };
        let s = update(u, &snap).unwrap().settings;
        assert_eq!((s.cleared_seq, s.read_seq), (7, 7));
    }

    #[test]
    fn removing_reads_everything_and_records_the_newest_seq() {
        let u = ConversationUpdate {
            remove: true,
            ..request()
        };
        let s = update(u, &snapshot(2, 10)).unwrap().settings;
        assert_eq!((s.removed_seq, s.read_seq), (10, 10));
    }

    #[test]
    fn pin_and_mute_change_only_when_given() {
        let mut snap = snapshot(0, 0);
        snap.row.pinned = true;
        snap.row.muted = true;
        let s = update(request(), &snap).unwrap().settings;
        assert!(s.pinned && s.muted);
        let u = ConversationUpdate {
            pinned: Some(false),
            muted: Some(false),
            ..request()
        };
        let s = update(u, &snap).unwrap().settings;
        assert!(!s.pinned && !s.muted);
    }

    #[test]
    fn the_event_reports_the_settings_as_json() {
        let u = ConversationUpdate {
            read_seq: 4,
            pinned: Some(true),
            ..request()
        };
        let change = update(u, &snapshot(1, 9)).unwrap();
        assert_eq!(change.user, "alice");
        assert_eq!(
            change.event.content,
            r#"{"conversationType":1,"targetId":"bob","readSeq":4,"pinned":true,"muted":false,"removedSeq":0,"clearedSeq":0}"#
        );
        assert_eq!(change.event.digest, "ev1");
        assert!(!change.event.counted);
        assert!(change.event.participants.is_empty());
        // A member who left: the bound is in the content too.
        let snap = UpdateSnapshot {
            row: SettingsRow {
                until_seq: 3,
                ..Default::default()
            },
            last_seq: 9,
            ..Default::default()
        };
        let change = update(request(), &snap).unwrap();
        assert!(
            change
                .event
                .content
                .ends_with(r#""clearedSeq":0,"untilSeq":3}"#)
        );
    }

    #[test]
    fn a_receipt_goes_out_only_when_asked_for_and_the_read_position_moved() {
        let u = ConversationUpdate {
            read_seq: 4,
            ..with_receipt()
        };
        let receipt = update(u, &snapshot(1, 9)).unwrap().receipt.unwrap();
        assert_eq!(
            receipt.content,
            r#"{"conversationType":1,"readSeq":4,"targetId":"alice"}"#
        );
        assert_eq!(receipt.digest, "rc1");
        assert!(!receipt.counted);
        // The position did not move.
        let u = ConversationUpdate {
            read_seq: 1,
            ..with_receipt()
        };
        assert!(update(u, &snapshot(1, 9)).unwrap().receipt.is_none());
        // Not asked for.
        let u = ConversationUpdate {
            read_seq: 4,
            ..request()
        };
        assert!(update(u, &snapshot(1, 9)).unwrap().receipt.is_none());
    }

    #[test]
    fn a_private_or_system_message_from_the_other_side_is_seen_under_its_sender() {
        let seen = |t, sender: &str, target: &str| {
            target_seen_by("alice", t, sender.into(), target.into())
        };
        assert_eq!(seen(PRIVATE, "bob", "alice"), "bob");
        assert_eq!(seen(PRIVATE, "alice", "bob"), "bob");
        assert_eq!(seen(SYSTEM, "sys", "alice"), "sys");
        assert_eq!(seen(crate::GROUP, "bob", "g1"), "g1");
    }
}
