//! What the SQL backends store the same way, and how their rows become records: the bits of a
//! message's `state` column, the reactions read as JSON pairs, a user's conversation row.
//! No SQL: each backend keeps its own statements and reads its own rows into these.

use crate::{
    AppendMessage, ConversationFilter, ConversationRecord, ConversationSettings, Reaction,
    StoredMessage, WriteResult,
};

/// Bits of a stored message's `state` column.
pub const STATE_RECALLED: i32 = 1;
pub const STATE_EDITED: i32 = 2;
/// The message has reactions (read only then).
pub const STATE_REACTIONS: i32 = 4;
/// A directed group message: its audience is stored beside it.
pub const STATE_DIRECTED: i32 = 8;
pub const STATE_MENTION_ALL: i32 = 16;

/// The reactions of a message from `[[emoji, user], ...]` (as both backends' reactions column
/// reads), grouped by emoji, in order. Text that is not such a list reads as no reactions.
pub fn reactions_from_json(json: &str) -> Vec<Reaction> {
    let mut pairs: Vec<(String, String)> = serde_json::from_str(json).unwrap_or_default();
    pairs.sort();
    let mut out: Vec<Reaction> = Vec::new();
    for (emoji, user) in pairs {
        match out.last_mut() {
            Some(r) if r.emoji == emoji => r.users.push(user),
            _ => out.push(Reaction {
                emoji,
                users: vec![user],
            }),
        }
    }
    out
}

/// A user's conversation row: its key and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRow {
    pub settings: ConversationSettings,
    pub conversation_id: String,
    pub peer_read_seq: u64,
}

impl ConversationRow {
    /// The record of this conversation, with what the backend read of its messages.
    pub fn into_record(
        self,
        newest: Option<StoredMessage>,
        latest: Option<StoredMessage>,
        unread: u64,
        mentioned: u64,
    ) -> ConversationRecord {
        ConversationRecord {
            settings: self.settings,
            conversation_id: self.conversation_id,
            newest,
            latest,
            peer_read_seq: self.peer_read_seq,
            unread,
            mentioned,
        }
    }
}

impl AppendMessage {
    /// The message as stored, numbered `seq`, new: no reactions, neither recalled nor edited.
    /// Its fields move; nothing is copied.
    pub fn into_stored(self, seq: u64) -> StoredMessage {
        StoredMessage {
            uid: self.uid,
            conversation_type: self.conversation_type,
            conversation_id: self.conversation_id,
            sender: self.sender,
            target: self.target,
            seq,
            sent_time: self.sent_time,
            msg_type: self.msg_type,
            content: self.content,
            push_text: self.push_text,
            client_msg_id: self.client_msg_id,
            mentions: self.mentions,
            mention_all: self.mention_all,
            audience: self.audience,
            ..Default::default()
        }
    }
}

impl ConversationFilter {
    /// Whether a conversation of this type is among those asked for.
    pub fn admits(&self, conversation_type: u32) -> bool {
        self.types.is_empty() || self.types.contains(&conversation_type)
    }
}

/// An appended message and its inbox entries (`(user, inbox_seq)` for each recipient).
pub type Appended = (StoredMessage, Vec<(String, u64)>);

/// An event the store made (an amend's, a user event, a notification) and its inbox entries;
/// `Err` with the result if it was not appended as a new message: its uid, which the store
/// chose, was used before.
pub fn appended_event(result: WriteResult) -> Result<Appended, Box<WriteResult>> {
    match result {
        WriteResult::Appended { message, inbox, .. } => Ok((message, inbox)),
        other => Err(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactions_are_grouped_by_emoji_in_order() {
        let r = reactions_from_json(r#"[["b","u2"],["a","u3"],["b","u1"]]"#);
        assert_eq!(
            r,
            vec![
                Reaction {
                    emoji: "a".into(),
                    users: vec!["u3".into()]
                },
                Reaction {
                    emoji: "b".into(),
                    users: vec!["u1".into(), "u2".into()]
                },
            ]
        );
        assert!(reactions_from_json("not json").is_empty());
    }
}
