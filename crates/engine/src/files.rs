//! Who may have a link to an uploaded file. The files themselves are the gateway's
//! (`tidings-files`); what the engine knows is who sees which message. A file's uploader needs
//! no message; anyone else names a message they see the file in, and gets a link only if they
//! can see that message now, by the same rules as a history query, and its content names the
//! file.

use tidings_proto::{Code, conversation_type};
use tidings_store::HistoryFrom;

use crate::Engine;
use crate::validate::Refusal;

/// A message by its place, as a history query names it: the conversation from the viewer's
/// side (for PRIVATE, the other participant) and the message's seq; for a chatroom, the room's
/// id and the item's seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    pub conversation_type: u32,
    pub target_id: String,
    pub seq: u64,
}

impl Engine {
    /// Whether `user` may have a link to the file `file_id` because they see it in `message`:
    /// they can see the message now (not cleared, deleted for them or recalled; in a group,
    /// sent while they were a member; a directed message, addressed to them; in a chatroom,
    /// they are in the room and the item is in the history this node keeps of it), and its
    /// content holds the file's id (as the file's link in it does, in any message type).
    ///
    /// Refusals: 42007 for a reference that cannot name a message (saying what one is), 42024
    /// for a message the user cannot see or that does not carry the file.
    pub async fn can_see_file(
        &self,
        user: &str,
        file_id: &str,
        message: &MessageRef,
    ) -> Result<(), Refusal> {
        let malformed = |r: Refusal| Refusal::new(Code::BadRequest, r.detail);
        if message.seq == 0 {
            return Err(Refusal::new(Code::BadRequest, "seq is at least 1"));
        }
        // An empty id is in every content: it must never count as named.
        let names_file = |content: &str| !file_id.is_empty() && content.contains(file_id);
        let carries = if message.conversation_type == conversation_type::CHATROOM {
            crate::chatrooms::check_id(&message.target_id).map_err(malformed)?;
            match self.member_room(&message.target_id, user).await {
                Ok(room) => room
                    .lock()
                    .history()
                    .any(|i| i.seq() == message.seq && names_file(i.message().content())),
                Err(r) if r.code == Code::ServerError => return Err(r),
                // No such room, or the user is not in it.
                Err(_) => false,
            }
        } else {
            crate::conversations::check_key(message.conversation_type, &message.target_id)
                .map_err(malformed)?;
            let page = self
                .user_history(
                    user,
                    message.conversation_type,
                    &message.target_id,
                    HistoryFrom::AfterSeq(message.seq - 1),
                    1,
                )
                .await?;
            page.messages
                .first()
                .is_some_and(|m| m.seq == message.seq && names_file(&m.content))
        };
        if carries {
            Ok(())
        } else {
            Err(Refusal::new(
                Code::FileLinkRefused,
                "name a message you can see that carries this file \
                 (its conversationType, targetId and seq)",
            ))
        }
    }
}
