// From the protocol's JSON frames to the SDK's objects. The JSON mapping omits default values
// and writes 64-bit integers as decimal strings; these read both.

import { MentionedType, MessageDirection, SentStatus } from './codes.js';
import { decodeContent } from './messages.js';

/**
 * @typedef {import('./types.js').Message} Message
 * @typedef {import('./types.js').Conversation} Conversation
 */

/**
 * A protocol integer (a number, a decimal string, or absent) as a number. Positions and times
 * stay far below 2^53, where numbers are exact.
 * @param {unknown} v
 */
export function int(v) {
  if (v === undefined || v === null || v === '') return 0;
  const n = Number(v);
  return Number.isFinite(n) ? n : 0;
}

/**
 * @param {unknown} v
 * @returns {string[]}
 */
function strings(v) {
  return Array.isArray(v) ? v.map(String) : [];
}

/**
 * A delivered, synced or historical message, as `me` sees it.
 * @param {Record<string, any>} m the protocol's Message
 * @param {string} me
 * @param {{ offline?: boolean }} [how]
 * @returns {Message}
 */
export function messageOf(m, me, how = {}) {
  const objectName = String(m.msgType ?? '');
  const content = decodeContent(objectName, String(m.content ?? '{}'));
  const mentioned = strings(m.mentionedUserIds);
  const mine = m.senderId === me;
  return {
    messageUId: String(m.uid ?? ''),
    clientMsgId: String(m.clientMsgId ?? ''),
    conversationType: int(m.conversationType),
    targetId: String(m.targetId ?? ''),
    senderUserId: String(m.senderId ?? ''),
    seq: int(m.seq),
    inboxSeq: int(m.inboxSeq),
    sentTime: int(m.sentTime),
    receivedTime: Date.now(),
    objectName,
    messageType: content.messageName,
    content,
    pushContent: String(m.pushText ?? ''),
    messageDirection: mine ? MessageDirection.SEND : MessageDirection.RECEIVE,
    sentStatus: mine ? SentStatus.SENT : SentStatus.RECEIVED,
    offLineMessage: how.offline ?? false,
    isRecalled: Boolean(m.recalled),
    isEdited: Boolean(m.edited),
    reactions: Array.isArray(m.reactions)
      ? m.reactions.map((/** @type {any} */ r) => ({ emoji: String(r.emoji ?? ''), userIds: strings(r.userIds) }))
      : [],
    mentionedInfo: m.mentionAll
      ? { type: MentionedType.ALL, userIdList: mentioned }
      : mentioned.length > 0
        ? { type: MentionedType.PART, userIdList: mentioned }
        : null,
    directedUserIds: strings(m.directedUserIds),
  };
}

/**
 * A conversation of the server's list, as `me` sees it.
 * @param {Record<string, any>} c the protocol's Conversation
 * @param {string} me
 * @returns {Conversation}
 */
export function conversationOf(c, me) {
  const latest = c.latest ? messageOf(c.latest, me) : null;
  /** @type {Conversation} */
  const out = {
    conversationType: int(c.conversationType),
    targetId: String(c.targetId ?? ''),
    latestMessage: latest,
    latestMessageId: latest?.messageUId ?? '',
    objectName: latest?.objectName ?? '',
    sentTime: latest?.sentTime ?? 0,
    sentStatus: latest?.sentStatus ?? 0,
    unreadMessageCount: int(c.unread),
    mentionedCount: int(c.mentioned),
    readSeq: int(c.readSeq),
    clearedSeq: int(c.clearedSeq),
    peerReadSeq: int(c.peerReadSeq),
    isTop: Boolean(c.pinned),
    isMuted: Boolean(c.muted),
  };
  if (c.removed) out.removed = true;
  return out;
}

/** The key of a conversation in maps and storage. */
/**
 * @param {number} conversationType
 * @param {string} targetId
 */
export function conversationKey(conversationType, targetId) {
  return `${conversationType}:${targetId}`;
}

/**
 * A chatroom's profile and state.
 * @param {Record<string, any>} c the protocol's Chatroom
 */
export function chatroomOf(c) {
  return {
    chatroomId: String(c.chatroomId ?? ''),
    name: String(c.name ?? ''),
    extra: String(c.extra ?? ''),
    createdTime: int(c.createdTime),
    memberCount: int(c.memberCount),
    maxMembers: int(c.maxMembers),
    mutedUntil: int(c.mutedUntil),
    seq: int(c.seq),
    kept: Boolean(c.kept),
  };
}

/**
 * A group's profile.
 * @param {Record<string, any>} g the protocol's Group
 */
export function groupOf(g) {
  return {
    groupId: String(g.groupId ?? ''),
    name: String(g.name ?? ''),
    portrait: String(g.portrait ?? ''),
    extra: String(g.extra ?? ''),
    ownerId: String(g.ownerId ?? ''),
    createdTime: int(g.createdTime),
    dismissedTime: int(g.dismissedTime),
    mutedUntil: int(g.mutedUntil),
    memberCount: int(g.memberCount),
    kind: String(g.kind ?? ''),
    inviteOpen: Boolean(g.inviteOpen),
  };
}

/**
 * A member of a group or a chatroom.
 * @param {Record<string, any>} m
 */
export function memberOf(m) {
  return { userId: String(m.userId ?? ''), joinedTime: int(m.joinedTime), mutedUntil: int(m.mutedUntil) };
}

/**
 * A chatroom's key-value entry.
 * @param {Record<string, any>} e
 */
export function entryOf(e) {
  return {
    key: String(e.key ?? ''),
    value: String(e.value ?? ''),
    userId: String(e.userId ?? ''),
    updatedTime: int(e.updatedTime),
    autoDelete: Boolean(e.autoDelete),
  };
}

/**
 * A user's presence.
 * @param {Record<string, any>} p
 */
export function presenceOf(p) {
  return { userId: String(p.userId ?? ''), online: Boolean(p.online), lastSeen: int(p.lastSeen) };
}
