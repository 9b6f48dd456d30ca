//! Amends (recall, edit, reactions): who may make them, when, and the event that records them.
//!
//! Pure functions of their arguments: no SQL, no I/O (see the module above).

use crate::rules::conversations::recording_event;
use crate::{
    Amend, AmendAction, AmendRefusal, AppendMessage, GroupRefusal, MAX_EMOJI_PER_MESSAGE,
    MAX_REACTIONS_PER_USER,
};

/// The amended message as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub sender: &'a str,
    pub sent_time: i64,
    pub msg_type: &'a str,
    pub recalled: bool,
}

/// The reactions on the message, as they bear on one user adding one emoji.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reactions {
    /// How many different emoji the message has.
    pub emoji: u64,
    /// How many reactions the acting user put on it.
    pub mine: u64,
    /// The acting user reacted with this emoji already.
    pub present: bool,
    /// Someone reacted with this emoji already.
    pub emoji_used: bool,
}

/// What an amend depends on, read under the store's lock before anything is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AmendSnapshot<'a> {
    /// The message at the amend's seq, if there is one.
    pub target: Option<Target<'a>>,
    /// In a group, and not made by the app server: why the acting user may not send there,
    /// if they may not.
    pub group: Option<GroupRefusal>,
    /// The other participant (`Amend::blocking_recipient`) blocks the acting user.
    pub blocked: bool,
    /// For an added reaction: the reactions already there. Not read otherwise.
    pub reactions: Reactions,
}

/// What an accepted amend changes in the stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// Nothing (a second recall): no event is appended.
    Unchanged,
    /// Replace the message with a tombstone: content `{}`, no push text, not counted, out of
    /// the search index.
    Recall,
    /// Replace its content, and what the search finds it by (empty: nothing).
    Edit {
        content: &'a str,
        search_text: &'a str,
    },
    /// Add the acting user's reaction (or take it away). If that changes nothing (the reaction
    /// was there, or was not), nothing else is written and no event is appended.
    React { emoji: &'a str, add: bool },
}

/// Decides an amend: a refusal, or the change to make.
///
/// In order: the message must exist and not be an event itself; in a group, the acting user
/// must be one who may send there; the other participant must not block them. Only the sender
/// recalls or edits; a recall must come within its window (`not_before`); nothing changes a
/// recalled message, and recalling it again changes nothing. A user adds a reaction only while
/// they have fewer than [`MAX_REACTIONS_PER_USER`] on the message, and a new emoji only while
/// it has fewer than [`MAX_EMOJI_PER_MESSAGE`]; adding one that is there already is allowed.
pub fn decide<'a>(a: &'a Amend, snapshot: &AmendSnapshot<'_>) -> Result<Change<'a>, AmendRefusal> {
    let Some(target) = snapshot
        .target
        .filter(|t| !t.msg_type.starts_with("tidings:"))
    else {
        return Err(AmendRefusal::NotFound);
    };
    if let Some(r) = snapshot.group {
        return Err(AmendRefusal::Group(r));
    }
    if snapshot.blocked {
        return Err(AmendRefusal::Blocked);
    }
    if target.msg_type == crate::MLS_TYPE && !matches!(a.action, AmendAction::Recall { .. }) {
        return Err(AmendRefusal::Encrypted);
    }
    let by_sender = target.sender == a.by;
    match &a.action {
        AmendAction::Recall { not_before } => {
            if !by_sender {
                Err(AmendRefusal::NotSender)
            } else if target.recalled {
                Ok(Change::Unchanged)
            } else if *not_before > 0 && target.sent_time < *not_before {
                Err(AmendRefusal::TooLate)
            } else {
                Ok(Change::Recall)
            }
        }
        AmendAction::Edit {
            content,
            search_text,
        } => {
            if !by_sender {
                Err(AmendRefusal::NotSender)
            } else if target.recalled {
                Err(AmendRefusal::Recalled)
            } else {
                Ok(Change::Edit {
                    content,
                    search_text,
                })
            }
        }
        AmendAction::React { emoji, add } => {
            let r = snapshot.reactions;
            let too_many = !r.present
                && (r.mine >= MAX_REACTIONS_PER_USER
                    || (!r.emoji_used && r.emoji >= MAX_EMOJI_PER_MESSAGE));
            if target.recalled {
                Err(AmendRefusal::Recalled)
            } else if *add && too_many {
                Err(AmendRefusal::TooManyReactions)
            } else {
                Ok(Change::React { emoji, add: *add })
            }
        }
    }
}

/// The event that records an accepted amend in the conversation, with its type and content.
/// `members`: for the app server's amend in a group, the group's members as they are, who get
/// it with the acting user (first) instead of the group's check and fan-out.
pub fn event(a: Amend, members: Option<&[String]>) -> AppendMessage {
    let content = match &a.action {
        AmendAction::Recall { .. } => serde_json::json!({ "action": "recall", "seq": a.seq }),
        AmendAction::Edit { content, .. } => {
            serde_json::json!({ "action": "edit", "seq": a.seq, "content": content })
        }
        AmendAction::React { emoji, add } => serde_json::json!({
            "action": "react", "seq": a.seq, "emoji": emoji, "userId": a.by, "added": add,
        }),
    };
    let mut event = recording_event(a.event, content.to_string());
    event.msg_type = a.action.event_type().to_string();
    if let Some(members) = members {
        event.recipients = moderated_recipients(a.by, members);
        event.to_group = false;
    }
    event
}

/// Who gets the event of the app server's amend in a group: the acting user, then the members
/// but them, in the members' order.
fn moderated_recipients(by: String, members: &[String]) -> Vec<String> {
    let mut recipients = Vec::with_capacity(members.len() + 1);
    recipients.extend(members.iter().filter(|u| **u != by).cloned());
    recipients.insert(0, by);
    recipients
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: i64 = 1_000;

    fn amend(by: &str, action: AmendAction) -> Amend {
        Amend {
            by: by.into(),
            conversation_id: "alice:bob".into(),
            seq: 7,
            action,
            event: AppendMessage {
                uid: "ev1".into(),
                counted: true,
                to_group: true,
                recipients: vec!["x".into()],
                ..Default::default()
            },
            blocking_recipient: None,
            moderated: false,
        }
    }

    fn recall(by: &str, not_before: i64) -> Amend {
        amend(by, AmendAction::Recall { not_before })
    }

    fn edit(by: &str) -> Amend {
        amend(
            by,
            AmendAction::Edit {
                content: "new".into(),
                search_text: "new text".into(),
            },
        )
    }

    fn react(by: &str, add: bool) -> Amend {
        amend(
            by,
            AmendAction::React {
                emoji: "👍".into(),
                add,
            },
        )
    }

    fn found(recalled: bool) -> AmendSnapshot<'static> {
        AmendSnapshot {
            target: Some(Target {
                sender: "alice",
                sent_time: SENT,
                msg_type: "text",
                recalled,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_message_or_an_event_is_not_found() {
        let missing = AmendSnapshot::default();
        assert_eq!(
            decide(&recall("alice", 0), &missing),
            Err(AmendRefusal::NotFound)
        );
        let mut event = found(false);
        event.target = event.target.map(|t| Target {
            msg_type: "tidings:edit",
            ..t
        });
        assert_eq!(
            decide(&react("bob", true), &event),
            Err(AmendRefusal::NotFound)
        );
    }

    #[test]
    fn an_encrypted_message_is_recalled_but_never_edited_or_reacted_to_in_the_clear() {
        let mut snap = found(false);
        snap.target = snap.target.map(|t| Target {
            msg_type: crate::MLS_TYPE,
            ..t
        });
        assert_eq!(decide(&edit("alice"), &snap), Err(AmendRefusal::Encrypted));
        assert_eq!(
            decide(&react("bob", true), &snap),
            Err(AmendRefusal::Encrypted)
        );
        assert_eq!(decide(&recall("alice", 0), &snap), Ok(Change::Recall));
    }

    #[test]
    fn the_group_refusal_comes_after_the_message_and_before_the_blocklist() {
        let mut snap = found(false);
        snap.group = Some(GroupRefusal::NotMember);
        snap.blocked = true;
        assert_eq!(
            decide(&recall("alice", 0), &snap),
            Err(AmendRefusal::Group(GroupRefusal::NotMember))
        );
        snap.target = None;
        assert_eq!(
            decide(&recall("alice", 0), &snap),
            Err(AmendRefusal::NotFound)
        );
    }

    #[test]
    fn a_blocked_user_changes_nothing() {
        let mut snap = found(false);
        snap.blocked = true;
        for a in [recall("bob", 0), edit("alice"), react("bob", true)] {
            assert_eq!(decide(&a, &snap), Err(AmendRefusal::Blocked));
        }
    }

    #[test]
    fn only_the_sender_recalls_or_edits() {
        let snap = found(false);
        assert_eq!(
            decide(&recall("bob", 0), &snap),
            Err(AmendRefusal::NotSender)
        );
        assert_eq!(decide(&edit("bob"), &snap), Err(AmendRefusal::NotSender));
        assert_eq!(decide(&recall("alice", 0), &snap), Ok(Change::Recall));
        assert_eq!(
            decide(&edit("alice"), &snap),
            Ok(Change::Edit {
                content: "new",
                search_text: "new text"
            })
        );
        // Anyone reacts.
        assert_eq!(
            decide(&react("bob", true), &snap),
            Ok(Change::React {
                emoji: "👍",
                add: true
            })
        );
    }

    #[test]
    fn a_recall_comes_within_its_window() {
        let snap = found(false);
        assert_eq!(decide(&recall("alice", SENT), &snap), Ok(Change::Recall));
        assert_eq!(
            decide(&recall("alice", SENT + 1), &snap),
            Err(AmendRefusal::TooLate)
        );
    }

    #[test]
    fn a_recalled_message_is_recalled_again_without_change_and_nothing_else() {
        let snap = found(true);
        // Even after the window: nothing changes, so nothing is late.
        assert_eq!(
            decide(&recall("alice", SENT + 1), &snap),
            Ok(Change::Unchanged)
        );
        assert_eq!(
            decide(&recall("bob", 0), &snap),
            Err(AmendRefusal::NotSender)
        );
        assert_eq!(decide(&edit("alice"), &snap), Err(AmendRefusal::Recalled));
        assert_eq!(
            decide(&react("bob", true), &snap),
            Err(AmendRefusal::Recalled)
        );
        assert_eq!(
            decide(&react("bob", false), &snap),
            Err(AmendRefusal::Recalled)
        );
    }

    #[test]
    fn reactions_are_limited_per_user_and_per_message() {
        let with = |reactions| AmendSnapshot {
            reactions,
            ..found(false)
        };
        let full_user = Reactions {
            mine: MAX_REACTIONS_PER_USER,
            emoji: 1,
            ..Default::default()
        };
        assert_eq!(
            decide(&react("bob", true), &with(full_user)),
            Err(AmendRefusal::TooManyReactions)
        );
        let full_message = Reactions {
            emoji: MAX_EMOJI_PER_MESSAGE,
            ..Default::default()
        };
        assert_eq!(
            decide(&react("bob", true), &with(full_message)),
            Err(AmendRefusal::TooManyReactions)
        );
        // An emoji already on the message adds no emoji.
        let used = Reactions {
            emoji_used: true,
            ..full_message
        };
        assert!(decide(&react("bob", true), &with(used)).is_ok());
        // A reaction already there is no new one.
        let present = Reactions {
            present: true,
            emoji_used: true,
            ..full_user
        };
        assert!(decide(&react("bob", true), &with(present)).is_ok());
        // Taking one away is never limited.
        assert_eq!(
            decide(&react("bob", false), &with(full_user)),
            Ok(Change::React {
                emoji: "👍",
                add: false
            })
        );
    }

    #[test]
    fn the_events_record_each_amend() {
        let e = event(recall("alice", 0), None);
        assert_eq!(e.msg_type, "tidings:recall");
        assert_eq!(e.content, r#"{"action":"recall","seq":7}"#);
        assert_eq!((e.digest.as_str(), e.counted), ("ev1", false));
        // A member's amend in a group goes through the group's check and fan-out.
        assert!(e.to_group);
        let e = event(edit("alice"), None);
        assert_eq!(e.msg_type, "tidings:edit");
        assert_eq!(e.content, r#"{"action":"edit","content":"new","seq":7}"#);
        let e = event(react("bob", true), None);
        assert_eq!(e.msg_type, "tidings:reaction");
        assert_eq!(
            e.content,
            r#"{"action":"react","added":true,"emoji":"👍","seq":7,"userId":"bob"}"#
        );
        let e = event(react("bob", false), None);
        assert!(e.content.contains(r#""added":false"#));
    }

    #[test]
    fn the_app_servers_event_goes_to_the_members_as_they_are_and_the_acting_user_first() {
        let members = ["m1".to_string(), "admin".into(), "m2".into()];
        let e = event(recall("admin", 0), Some(&members));
        assert_eq!(e.recipients, ["admin", "m1", "m2"]);
        assert!(!e.to_group);
        let e = event(recall("op", 0), Some(&members));
        assert_eq!(e.recipients, ["op", "m1", "admin", "m2"]);
    }
}
