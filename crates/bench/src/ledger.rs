//! The delivery accounting of a run: every message a sender got a PUBACK for must reach its
//! receiver exactly once, in conversation order.

use std::collections::{HashMap, HashSet};

/// What one receiver saw of one conversation.
#[derive(Debug, Default)]
struct Conversation {
    /// The last seq presented.
    last_seq: u64,
    received: HashSet<String>,
}

/// Losses, duplicates and reorderings across all conversations of a run.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Acknowledged sends: uid -> (conversation, seq).
    acked: HashMap<String, (u32, u64)>,
    conversations: HashMap<u32, Conversation>,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub received: u64,
}

/// The verdict of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub acked: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
}

impl Verdict {
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.out_of_order == 0
    }
}

impl Ledger {
    /// A sender got the PUBACK for `uid`, committed at `seq` in `conversation`.
    pub fn acked(&mut self, conversation: u32, uid: String, seq: u64) {
        self.acked.insert(uid, (conversation, seq));
    }

    /// A receiver was presented `uid` at `seq` in `conversation`. Conversations start empty, so
    /// the first message must be seq 1 and each next one the previous seq plus one.
    pub fn received(&mut self, conversation: u32, uid: &str, seq: u64) {
        self.received += 1;
        let c = self.conversations.entry(conversation).or_default();
        if !c.received.insert(uid.to_string()) {
            self.duplicated += 1;
            return;
        }
        if seq != c.last_seq + 1 {
            self.out_of_order += 1;
        }
        c.last_seq = c.last_seq.max(seq);
    }

    /// Whether every acknowledged message has been received.
    pub fn complete(&self) -> bool {
        self.acked.iter().all(|(uid, (conv, _))| {
            self.conversations
                .get(conv)
                .is_some_and(|c| c.received.contains(uid))
        })
    }

    pub fn verdict(&self) -> Verdict {
        let lost = self
            .acked
            .iter()
            .filter(|(uid, (conv, _))| {
                !self
                    .conversations
                    .get(conv)
                    .is_some_and(|c| c.received.contains(*uid))
            })
            .count() as u64;
        Verdict {
            acked: self.acked.len() as u64,
            received: self.received,
            lost,
            duplicated: self.duplicated,
            out_of_order: self.out_of_order,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_run() {
        let mut l = Ledger::default();
        for seq in 1..=3 {
            l.acked(0, format!("u{seq}"), seq);
        }
        for seq in 1..=3 {
            l.received(0, &format!("u{seq}"), seq);
        }
        assert!(l.complete());
        let v = l.verdict();
        assert!(v.clean());
        assert_eq!((v.acked, v.received), (3, 3));
    }

    #[test]
    fn loss_duplication_and_reordering_are_counted() {
        let mut l = Ledger::default();
        for seq in 1..=4 {
            l.acked(7, format!("u{seq}"), seq);
        }
        l.received(7, "u1", 1);
        l.received(7, "u3", 3); // u2 skipped: out of order
        l.received(7, "u3", 3); // twice
        l.received(7, "u2", 2); // late: out of order
        assert!(!l.complete());
        let v = l.verdict();
        assert_eq!((v.lost, v.duplicated, v.out_of_order), (1, 1, 2));
        assert!(!v.clean());
    }

    #[test]
    fn messages_of_other_conversations_do_not_count() {
        let mut l = Ledger::default();
        l.acked(1, "a".into(), 1);
        l.received(2, "a", 1);
        assert_eq!(l.verdict().lost, 1);
    }
}
