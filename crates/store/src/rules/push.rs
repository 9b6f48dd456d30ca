//! Which appended messages make a push notification due.
//!
//! A notification due is written in the same transaction as the message's inbox entries, for
//! each recipient that has a push token, so that a server killed right after the commit still
//! sends it when it starts again. Whether it is then sent (the device is connected, the
//! conversation is muted, quiet hours) is decided when it is sent; this rule only says which
//! entries are worth keeping a row for.

use crate::{AMEND_EVENT_TYPES, AppendMessage, GROUP, PRIVATE, SYSTEM};

/// The message type of the event that records a recall: a notification of the recalled
/// message is withdrawn by a follow-up.
pub const RECALL_EVENT: &str = AMEND_EVENT_TYPES[0];

/// Whether `m`, appended to `recipient`'s inbox, makes a notification due for `recipient` (see
/// [`due`]).
pub fn push_due(m: &AppendMessage, recipient: &str) -> bool {
    due(
        m.conversation_type,
        &m.msg_type,
        m.counted,
        &m.sender,
        recipient,
    )
}

/// Whether a message makes a notification due for `recipient`: a counted private, group or
/// system message from someone else (not a user event, group notification, read receipt or
/// other `tidings:` message), or the recall of one. Chatroom and status messages are never
/// appended, so never due.
pub fn due(
    conversation_type: u32,
    msg_type: &str,
    counted: bool,
    sender: &str,
    recipient: &str,
) -> bool {
    if recipient == sender || !matches!(conversation_type, PRIVATE | GROUP | SYSTEM) {
        return false;
    }
    if msg_type == RECALL_EVENT {
        return true;
    }
    counted && !msg_type.starts_with("tidings:")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(conversation_type: u32, msg_type: &str, counted: bool) -> AppendMessage {
        AppendMessage {
            conversation_type,
            sender: "alice".into(),
            msg_type: msg_type.into(),
            counted,
            ..Default::default()
        }
    }

    #[test]
    fn counted_messages_from_others_are_due() {
        let text = message(PRIVATE, "text", true);
        assert!(push_due(&text, "bob"));
        assert!(!push_due(&text, "alice"), "never the sender's own devices");
        assert!(push_due(&message(GROUP, "image", true), "bob"));
        assert!(push_due(&message(SYSTEM, "text", true), "bob"));
        assert!(!push_due(&message(PRIVATE, "text", false), "bob"));
        assert!(!push_due(&message(4, "text", true), "bob"));
        assert!(!push_due(&message(PRIVATE, "tidings:read", true), "bob"));
        assert!(push_due(&message(GROUP, RECALL_EVENT, false), "bob"));
        assert!(!push_due(&message(GROUP, RECALL_EVENT, false), "alice"));
    }
}
