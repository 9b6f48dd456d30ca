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
 * @property {Message | null} latestMessage the newest message a person sees: never a recall, edit
 *   or reaction event; recalled (`isRecalled`) when it was recalled
 * @property {string} latestMessageId
 * @property {string} objectName the latest message's type
 * @property {number} sentTime the latest message's time (ms)
 * @property {number} sentStatus the latest message's `sentStatus`
 * @property {number} unreadMessageCount
 * @property {number} mentionedCount unread messages that mention this user
 * @property {number} readSeq read up to this conversation seq
 * @property {number} clearedSeq history cleared up to this seq
 * @property {number} peerReadSeq private chats: the other user has read up to this seq, as their
 *   read receipts told (0 otherwise)
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

/**
 * A chatroom's notice: a change the room reports (members joined or left, a kick, a mute, an
 * entry set or removed, the room destroyed). It has the room's seq, as messages do.
 * @typedef {object} ChatroomNotice
 * @property {'notice'} type
 * @property {string} chatroomId
 * @property {number} seq
 * @property {string} operation `join`, `leave`, `kick`, `mute`, `unmute`, `entry`,
 *   `entry-remove` or `destroy`
 * @property {string} operatorId who made the change (empty: the server or the app server)
 * @property {string[]} userIds the users it is about (for joins and leaves, at most 100)
 * @property {number} count how many users joined or left
 * @property {string} [key] entries: the key
 * @property {string} [value] entries: the value set
 * @property {number} until mutes and bans: until when (ms)
 * @property {boolean} all mutes: the whole room
 */

/**
 * Items of a chatroom dropped for this connection: `count` of them, with seqs from `fromSeq`
 * to `toSeq` (others in that range may have arrived). Read the history for what matters.
 * @typedef {object} ChatroomGap
 * @property {'gap'} type
 * @property {string} chatroomId
 * @property {number} count
 * @property {number} fromSeq
 * @property {number} toSeq
 */

/**
 * This client is out of a chatroom: kicked (23409), the room destroyed (23410), or joining it
 * again after a reconnect was refused (the refusal's code).
 * @typedef {object} ChatroomLeft
 * @property {'left'} type
 * @property {string} chatroomId
 * @property {number} code
 */

/** @typedef {ChatroomNotice | ChatroomGap | ChatroomLeft} ChatroomEvent */

/**
 * A chatroom's profile and state.
 * @typedef {object} Chatroom
 * @property {string} chatroomId
 * @property {string} name
 * @property {string} extra app-defined JSON object as text, or empty
 * @property {number} createdTime
 * @property {number} memberCount users with a connection in the room now
 * @property {number} maxMembers
 * @property {number} mutedUntil the whole room (ms; 0: not muted)
 * @property {number} seq the room's newest seq when read
 * @property {boolean} kept created by the app server, not by a first join
 */

/**
 * A group's profile.
 * @typedef {object} Group
 * @property {string} groupId
 * @property {string} name
 * @property {string} portrait
 * @property {string} extra app-defined JSON object as text, or empty
 * @property {string} ownerId
 * @property {number} createdTime
 * @property {number} dismissedTime 0 while it lives
 * @property {number} mutedUntil 0: not muted
 * @property {number} memberCount
 * @property {string} kind who makes and manages it: `managed` (the app server), `open` (made by
 *   a user naming it when connecting) or `discussion` (made and managed by its members)
 * @property {boolean} inviteOpen a discussion: whether any member may add members (true) or
 *   only its owner
 */

/**
 * A member of a group or a chatroom.
 * @typedef {object} Member
 * @property {string} userId
 * @property {number} joinedTime
 * @property {number} mutedUntil 0: not muted
 */

/**
 * A chatroom's key-value entry.
 * @typedef {object} ChatroomEntry
 * @property {string} key
 * @property {string} value
 * @property {string} userId who set it last
 * @property {number} updatedTime
 * @property {boolean} autoDelete removed when that user leaves the room
 */

/**
 * Who of a group message's audience has read it.
 * @typedef {object} GroupReadReceipt
 * @property {string[]} readUserIds by id
 * @property {string[]} unreadUserIds by id
 * @property {number} readCount
 * @property {number} unreadCount
 */

/**
 * A user's presence.
 * @typedef {object} Presence
 * @property {string} userId
 * @property {boolean} online
 * @property {number} lastSeen when last connected (ms; 0 if never recorded, 0 while online)
 */

/**
 * The server's answer to an upload.
 * @typedef {object} Upload
 * @property {{ id: string, kind: string, type: string, name: string, size: number, created: number, width?: number, height?: number }} file
 * @property {string} url a link that expires at `expiresAt` (after the server's maximum link
 *   lifetime, 7 days by default); ask `getFileUrl` for a fresh one
 * @property {string} [thumbnailUrl] images: their JPEG thumbnail
 * @property {number} expiresAt seconds since the epoch
 */

export {};

/**
 * A key package a claim handed out (docs/e2ee.md).
 * @typedef {object} ClaimedKeyPackage
 * @property {string} userId
 * @property {string} deviceId
 * @property {Uint8Array} keyPackage the TLS-serialized MLSMessage the device uploaded
 * @property {boolean} lastResort the device's last-resort key package, which others may have been handed too
 */
