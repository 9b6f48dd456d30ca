// Shapes shared by the modules, as JSDoc types (this module exports no values). The public
// declarations are in ../types/index.d.ts.

/**
 * @typedef {{ type: number, userIdList: string[] }} MentionedInfo seed 004's mention object:
 *   `type` 1 everyone (ALL), 2 the listed users (PART)
 */

/**
 * @typedef {{ emoji: string, userIds: string[] }} Reaction
 */

/**
 * A message as this user sees it (seed 004's Message, with the protocol's positions).
 * @typedef {object} Message
 * @property {string} messageUId the server's id (a ULID); empty while sending
 * @property {string} clientMsgId the id the sender chose, which deduplicates resends
 * @property {number} conversationType
 * @property {string} targetId the conversation as this user sees it: for a private chat, the other user
 * @property {string} senderUserId
 * @property {number} seq position in the conversation (0 while sending, and for status messages)
 * @property {number} inboxSeq position in this user's inbox (0 for history and status messages)
 * @property {number} sentTime the server's commit time (ms); while sending, the estimated server time
 * @property {number} receivedTime this client's clock when it got the message (ms)
 * @property {string} objectName the protocol's `msgType`
 * @property {string} messageType the content's class name (`TextMessage`, …, `UnknownMessage`)
 * @property {import('./messages.js').MessageContent} content
 * @property {string} pushContent
 * @property {number} messageDirection 1 sent by this user, 2 received
 * @property {number} sentStatus see `SentStatus`
 * @property {boolean} offLineMessage it came by sync (it was sent while this client was away)
 * @property {boolean} isRecalled
 * @property {boolean} isEdited
 * @property {Reaction[]} reactions
 * @property {MentionedInfo | null} mentionedInfo
 * @property {string[]} directedUserIds
 * @property {number} [notice] for a sent message the server changed: 21502 (sensitive words
 *   replaced) or 40025 (rewritten by the app server); `content` is then what was stored
 */

/**
 * One conversation as this user sees it (seed 004's Conversation).
 * @typedef {object} Conversation
 * @property {number} conversationType
 * @property {string} targetId
 * @property {Message | null} latestMessage
 * @property {string} latestMessageId
 * @property {string} objectName the latest message's type
 * @property {number} sentTime the latest message's time (ms)
 * @property {number} sentStatus the latest message's `sentStatus`
 * @property {number} unreadMessageCount
 * @property {number} mentionedCount unread messages that mention this user
 * @property {number} readSeq read up to this conversation seq
 * @property {number} clearedSeq history cleared up to this seq
 * @property {boolean} isTop pinned
 * @property {boolean} isMuted no notifications
 * @property {boolean} [removed] only in change lists: the conversation left the list
 */

/**
 * A change of one of this user's conversations, made on this device or another.
 * @typedef {object} ConversationChange
 * @property {number} conversationType
 * @property {string} targetId
 * @property {number} readSeq
 * @property {boolean} pinned
 * @property {boolean} muted
 * @property {number} removedSeq out of the list while its newest seq is at most this
 * @property {number} clearedSeq
 */

export {};
