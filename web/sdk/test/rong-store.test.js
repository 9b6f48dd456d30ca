// The RongCloud-compatible entry's local message store (memory, and IndexedDB through the
// fake-indexeddb package) and the calls built on it, against a real server: insert, read,
// change, send, search, delete and clear local messages.

import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { indexedDB as fakeIndexedDB } from 'fake-indexeddb';
import WebSocket from 'ws';

import { MemoryStorage } from '../src/index.js';
import {
  ConversationType,
  ErrorCode,
  MessageDirection,
  ReceivedStatus,
  RongIMClient,
  SentStatus,
  TextMessage,
} from '../src/rong.js';
import { api } from '../test-support/api.js';
import { serverForFile } from '../test-support/server.js';
import { until } from '../test-support/wait.js';

const server = serverForFile(['--send-rate', '0']);
const PRIVATE = ConversationType.PRIVATE;

/** @type {Set<RongIMClient>} */
const made = new Set();
afterEach(async () => {
  const all = [...made];
  made.clear();
  await Promise.all(all.map((c) => c.disconnect()));
});

/**
 * A connected client of `user`, with the given store, recording what it receives.
 * @param {string} user
 * @param {Record<string, unknown>} [extra]
 */
async function connected(user, extra = {}) {
  const storage = new MemoryStorage();
  const client = new RongIMClient().init('store', { navi: server.url, WebSocket, storage, ...extra });
  made.add(client);
  /** @type {any[]} */
  const received = [];
  client.setOnReceiveMessageListener({ onReceived: (m) => received.push(m) });
  await client.connect(await server.token(user));
  return { client, received, storage };
}

/**
 * What a failing call reports: the code `onError` got (the Promise rejects with the same).
 * @param {(cb: any) => Promise<unknown>} call
 */
async function errorCode(call) {
  /** @type {number[]} */
  const codes = [];
  const err = await call({ onError: (/** @type {number} */ c) => codes.push(c) }).then(
    () => null,
    (e) => e,
  );
  assert.ok(err, 'the call failed');
  assert.deepEqual(codes, [err.code], 'onError got the code the Promise rejected with');
  return err.code;
}

const stores = {
  memory: { messageStore: 'memory' },
  indexeddb: { indexedDB: fakeIndexedDB },
};

for (const [kind, storeOptions] of Object.entries(stores)) {
  describe(`the local store in ${kind}`, () => {
    test('insert, read, change, send, search, delete and clear local messages', async () => {
      const alice = `store-${kind}-alice`;
      const bob = `store-${kind}-bob`;
      const a = await connected(alice, storeOptions);
      const b = await connected(bob, storeOptions);

      // insertMessage: only this device has it.
      const inserted = await a.client.insertMessage(PRIVATE, bob, {
        senderUserId: alice,
        content: TextMessage.obtain('a local note'),
        messageDirection: MessageDirection.SEND,
        sentStatus: SentStatus.FAILED,
      });
      assert.ok(inserted.messageId > 0);
      assert.equal(inserted.isLocalMessage, true);
      const read = await a.client.getMessage(inserted.messageId);
      assert.equal(read.content.content, 'a local note');
      assert.equal(read.objectName, 'RC:TxtMsg');
      assert.equal(read.sentStatus, SentStatus.FAILED);
      assert.equal(read.messageUId, '');

      // The setters.
      await a.client.setMessageExtra(inserted.messageId, 'extra!');
      await a.client.setMessageReceivedStatus(inserted.messageId, ReceivedStatus.LISTENED);
      await a.client.setMessageSentStatus(inserted.messageId, SentStatus.SENDING);
      await a.client.setMessageContent(inserted.messageId, TextMessage.obtain('a local note, changed'));
      await a.client.setMessageSearchField(inserted.messageId, null, ['findme']);
      let now = await a.client.getMessage(inserted.messageId);
      assert.equal(now.extra, 'extra!');
      assert.equal(now.receivedStatus, ReceivedStatus.LISTENED);
      assert.equal(now.sentStatus, SentStatus.SENDING);
      assert.equal(now.content.content, 'a local note, changed');
      await a.client.updateMessage({ ...now, extra: 'updated' });
      await a.client.setMessageStatus(inserted.messageId, ReceivedStatus.READ);
      now = await a.client.getMessage(inserted.messageId);
      assert.equal(now.receivedStatus, ReceivedStatus.READ);
      assert.equal(now.extra, 'updated');

      // Search finds it by its search field, and a server message by its text.
      /** @type {any[]} */
      const found = await new Promise((resolve) =>
        a.client.searchMessageByContent(PRIVATE, bob, 'FINDME', 0, 10, 0, { onSuccess: (list, n) => resolve([list, n]) }),
      );
      assert.deepEqual(found[0].map((/** @type {any} */ m) => m.messageId), [inserted.messageId]);
      assert.equal(found[1], 1);

      // sendLocalMessage: it goes out, and its record gets the server's fields.
      const sent = await a.client.sendLocalMessage(now);
      assert.equal(sent.messageId, inserted.messageId);
      assert.equal(sent.messageUId.length, 26);
      const afterSend = await a.client.getMessage(inserted.messageId);
      assert.equal(afterSend.messageUId, sent.messageUId);
      assert.equal(afterSend.sentStatus, SentStatus.SENT);
      assert.equal(afterSend.isLocalMessage, false);
      assert.equal(afterSend.extra, 'updated', 'local fields stay');
      await until(() => b.received.length >= 1, 'bob receives the local message sent');
      const got = b.received[0];
      assert.equal(got.content.content, 'a local note, changed');
      assert.ok(got.messageId > 0);
      assert.equal((await b.client.getMessage(got.messageId)).messageUId, sent.messageUId);

      // A message bob sends; each side searches it once (the server's match and the store's are one).
      const hello = await b.client.sendMessage(PRIVATE, alice, TextMessage.obtain('hello searchable world'));
      await until(() => a.received.length >= 1, 'alice receives');
      const { list: both } = await a.client.searchMessageByContent(PRIVATE, bob, 'searchable', 0, 10, 0);
      assert.deepEqual(both.map((/** @type {any} */ m) => m.messageUId), [hello.messageUId]);
      const convs = await a.client.searchConversationByContent('searchable');
      assert.deepEqual(convs.map((/** @type {any} */ c) => [c.conversationType, c.targetId]), [[PRIVATE, bob]]);

      // deleteMessages: gone from the store and from the user's history on the server.
      await a.client.deleteMessages(PRIVATE, bob, [a.received[0].messageId]);
      assert.equal(await errorCode((cb) => a.client.getMessage(a.received[0].messageId, cb)), ErrorCode.GET_MESSAGE_BY_ID_ERROR);
      const { list: history } = await a.client.getHistoryMessages(PRIVATE, bob, 0, 20);
      assert.deepEqual(history.map((/** @type {any} */ m) => m.messageUId), [sent.messageUId]);
      assert.equal(await errorCode((cb) => a.client.deleteMessages(PRIVATE, bob, [], cb)), ErrorCode.DELETE_MESSAGE_ID_IS_NULL);

      // deleteLocalMessages: gone from the store only.
      await a.client.deleteLocalMessages(PRIVATE, bob, [inserted.messageId]);
      assert.equal(await errorCode((cb) => a.client.getMessage(inserted.messageId, cb)), ErrorCode.GET_MESSAGE_BY_ID_ERROR);
      assert.equal((await a.client.getHistoryMessages(PRIVATE, bob, 0, 20)).list.length, 1, 'the server keeps it');

      // clearMessagesUnreadStatus marks bob's stored messages read; clearMessages empties the conversation.
      await b.client.clearMessagesUnreadStatus(PRIVATE, alice);
      assert.equal((await b.client.getMessage(got.messageId)).receivedStatus, ReceivedStatus.READ);
      await b.client.clearMessages(PRIVATE, alice);
      assert.equal(await errorCode((cb) => b.client.getMessage(got.messageId, cb)), ErrorCode.GET_MESSAGE_BY_ID_ERROR);

      // clearData empties the store; clearLocalStorage the SDK's items of the storage too.
      const again = await a.client.insertMessage(PRIVATE, bob, TextMessage.obtain('x'));
      assert.equal(await a.client.clearData(), true);
      assert.equal(await errorCode((cb) => a.client.getMessage(again.messageId, cb)), ErrorCode.GET_MESSAGE_BY_ID_ERROR);
      a.client.saveTextMessageDraft(PRIVATE, bob, 'draft');
      assert.equal(a.client.getTextMessageDraft(PRIVATE, bob), 'draft');
      await a.client.clearLocalStorage();
      assert.equal(a.client.getTextMessageDraft(PRIVATE, bob), null);
      assert.deepEqual(
        [...a.storage.items.keys()].filter((k) => k.startsWith('tidings:store:') && k.includes(':draft:')),
        [],
      );

      // A content that is not a message class: MSG_INSERT_ERROR.
      assert.equal(await errorCode((cb) => a.client.insertMessage(PRIVATE, bob, { content: 'text' }, cb)), ErrorCode.MSG_INSERT_ERROR);
    });
  });
}

test('unread counts set on this device, hidden and added conversations, the user status, filters and failures', async () => {
  const alice = 'misc-alice';
  const bob = 'misc-bob';
  const carol = 'misc-carol';
  const a = await connected(alice, { messageStore: 'memory' });
  const b = await connected(bob, { messageStore: 'memory' });
  await a.client.sendMessage(PRIVATE, bob, TextMessage.obtain('one'));
  await a.client.sendMessage(PRIVATE, bob, TextMessage.obtain('two'));
  await until(() => b.received.length >= 2, 'bob receives two');

  // setUnreadCount: answered in place of the server's until a message arrives.
  assert.equal(await b.client.getUnreadCount(PRIVATE, alice), 2);
  await b.client.setUnreadCount(PRIVATE, alice, 7);
  assert.equal(await b.client.getUnreadCount(PRIVATE, alice), 7);
  assert.equal(await b.client.getTotalUnreadCount(), 7);
  assert.equal((await b.client.getConversationList(undefined, [PRIVATE]))[0].unreadMessageCount, 7);
  assert.equal(await errorCode((cb) => b.client.setUnreadCount(PRIVATE, alice, -1, cb)), ErrorCode.BIZ_ERROR_INVALID_PARAMETER);
  assert.equal(await b.client.hasRemoteUnreadMessages('token'), true);
  await a.client.sendMessage(PRIVATE, bob, TextMessage.obtain('three'));
  await until(() => b.received.length >= 3, 'bob receives the third');
  assert.equal(await b.client.getUnreadCount(PRIVATE, alice), 3);

  // clearUnreadCountByTimestamp reads up to a time; clearTotalUnreadCount reads everything.
  await b.client.clearUnreadCountByTimestamp(PRIVATE, alice, b.received[0].sentTime);
  assert.equal(await b.client.getUnreadCount(PRIVATE, alice), 2);
  await b.client.clearTotalUnreadCount();
  assert.equal(await b.client.getTotalUnreadCount(), 0);
  assert.equal(await b.client.hasRemoteUnreadMessages('token'), false);

  // A conversation added on this device is listed after the server's; hiding one removes it.
  const made = b.client.createConversation(PRIVATE, carol, 'Carol');
  assert.equal(made.conversationTitle, 'Carol');
  let list = await b.client.getConversationList(undefined, null);
  assert.deepEqual(list.map((/** @type {any} */ c) => c.targetId), [alice, carol]);
  await b.client.setConversationHidden(PRIVATE, alice, true);
  list = await b.client.getConversationList(undefined, null);
  assert.deepEqual(list.map((/** @type {any} */ c) => c.targetId), [carol]);
  await b.client.setConversationHidden(PRIVATE, alice, false);
  list = await b.client.getConversationList(undefined, null);
  assert.deepEqual(list.map((/** @type {any} */ c) => c.targetId).sort(), [alice, carol]);
  await b.client.removeConversation(PRIVATE, carol);
  await b.client.addConversation({ conversationType: PRIVATE, targetId: 'misc-dave' });
  const updated = await b.client.updateConversation({ conversationType: PRIVATE, targetId: alice, isTop: true, conversationTitle: 'Alice' });
  assert.equal(updated.isTop, true);
  assert.equal(updated.conversationTitle, 'Alice');
  list = await b.client.getConversationList(undefined, null);
  assert.deepEqual(list.map((/** @type {any} */ c) => c.targetId), [alice, 'misc-dave']);

  // setUserStatus: kept on this device, answered with its own presence.
  await a.client.setUserStatus('in a meeting');
  const own = await a.client.getUserStatus(alice);
  assert.deepEqual([own.online, own.status], [true, 'in a meeting']);
  const seen = await b.client.getUserStatus(alice);
  assert.deepEqual([seen.online, seen.status], [true, '']);

  // setUserStatusListener: bob hears carol come online.
  /** @type {any[]} */
  const statuses = [];
  await b.client.setUserStatusListener({ userIds: [carol] }, (s) => statuses.push(s));
  await connected(carol, { messageStore: 'memory' });
  await until(() => statuses.some((s) => s.userId === carol && s.online), 'carol online');

  // setFilterMessages: chatroom messages of the listed object names are dropped.
  await a.client.joinChatRoom('misc-room', 0);
  await b.client.joinChatRoom('misc-room', 0);
  b.client.setFilterMessages(['RC:TxtMsg']);
  const before = b.received.length;
  await a.client.sendMessage(ConversationType.CHATROOM, 'misc-room', TextMessage.obtain('filtered'));
  await a.client.sendMessage(ConversationType.CHATROOM, 'misc-room', new (await import('../src/rong.js')).ImageMessage({ imageUri: 'https://x/y.png' }));
  await until(() => b.received.length > before, 'the image arrives');
  assert.deepEqual(b.received.slice(before).map((m) => m.objectName), ['RC:ImgMsg']);

  // Typing: bob hears alice's, as RC:TypSts through the message listener; groups are refused.
  const typed = b.received.length;
  await a.client.sendTypingStatusMessage(PRIVATE, bob, 'RC:TxtMsg');
  await until(() => b.received.length > typed, 'the typing status arrives');
  const typing = b.received[typed];
  assert.deepEqual([typing.objectName, typing.content.typingContentType, typing.senderUserId], ['RC:TypSts', 'RC:TxtMsg', alice]);
  assert.equal(await errorCode((cb) => a.client.sendTypingStatusMessage(ConversationType.GROUP, 'g', 'RC:TxtMsg', cb)), 40009);

  // Seed codes for what fails.
  assert.equal(await errorCode((cb) => b.client.joinChatRoom('', 0, cb)), ErrorCode.CHATROOM_ID_ISNULL);
  assert.equal(await errorCode((cb) => b.client.getChatroomEntry('misc-room', 'nothing', cb)), ErrorCode.CHATROOM_KV_NOT_FOUND);
  assert.equal(await errorCode((cb) => b.client.setDeviceInfo({ id: 'another' }, cb)), ErrorCode.BIZ_ERROR_INVALID_PARAMETER);
  await b.client.addToBlacklist(alice);
  assert.equal(await b.client.getBlacklistStatus(alice), 0);
  assert.equal(await errorCode((cb) => a.client.sendMessage(PRIVATE, bob, TextMessage.obtain('blocked'), cb)), ErrorCode.REJECTED_BY_BLACKLIST);
  assert.equal(await errorCode((cb) => a.client.sendRecallMessage({ conversationType: PRIVATE, targetId: bob, seq: 999 }, cb)), ErrorCode.RECALL_MESSAGE);
  assert.equal(await errorCode((cb) => a.client.getUserInfo('not a user id!', cb)), ErrorCode.GET_USERINFO_ERROR);

  // getUserInfo of another user: the profile the app server set.
  await api(server, 'put', `/users/${carol}`, { name: 'Carol C', portrait: 'https://example.com/c.png' });
  const info = await a.client.getUserInfo(carol);
  assert.deepEqual([info.id, info.name, info.portrait], [carol, 'Carol C', 'https://example.com/c.png']);
});

test('discussions: create, invite, rename, invite status, remove, quit; messages of type 2', async () => {
  const alice = 'disc-alice';
  const bob = 'disc-bob';
  const carol = 'disc-carol';
  const a = await connected(alice, { messageStore: 'memory' });
  const b = await connected(bob, { messageStore: 'memory' });
  const [id] = await new Promise((resolve, reject) =>
    a.client.createDiscussion('plans', [bob], { onSuccess: (/** @type {string} */ d) => resolve([d]), onError: reject }),
  );
  await a.client.addMemberToDiscussion(id, [carol]);
  await a.client.setDiscussionName(id, 'new plans');
  await a.client.setDiscussionInviteStatus(id, 1);
  let d = await a.client.getDiscussion(id);
  assert.deepEqual([d.name, d.creatorId, d.isOpen, [...d.memberIdList].sort()], ['new plans', alice, false, [alice, bob, carol]]);
  const sent = await a.client.sendMessage(ConversationType.DISCUSSION, id, TextMessage.obtain('hi all'));
  assert.equal(sent.conversationType, ConversationType.DISCUSSION);
  await until(() => b.received.some((m) => m.objectName === 'RC:TxtMsg'), 'bob receives');
  const got = b.received.find((m) => m.objectName === 'RC:TxtMsg');
  assert.equal(got.conversationType, ConversationType.DISCUSSION);
  assert.equal(got.targetId, id);
  const list = await b.client.getConversationList(undefined, [ConversationType.DISCUSSION]);
  assert.deepEqual(list.map((/** @type {any} */ c) => [c.conversationType, c.targetId]), [[2, id]]);
  assert.deepEqual(await b.client.getConversationList(undefined, [ConversationType.GROUP]), []);
  await a.client.removeMemberFromDiscussion(id, carol);
  await b.client.quitDiscussion(id);
  d = await a.client.getDiscussion(id);
  assert.deepEqual(d.memberIdList, [alice]);
  assert.equal(await errorCode((cb) => b.client.sendMessage(ConversationType.DISCUSSION, id, TextMessage.obtain('x'), cb)), ErrorCode.NOT_IN_DISCUSSION);
});

test('history, chatrooms, conversation settings and files through the entry', async () => {
  const alice = 'more-alice';
  const bob = 'more-bob';
  const a = await connected(alice, { messageStore: 'memory' });
  const b = await connected(bob, { messageStore: 'memory' });
  /** @type {any[]} */
  const sent = [];
  for (const text of ['m1', 'm2', 'm3']) sent.push(await a.client.sendMessage(PRIVATE, bob, TextMessage.obtain(text)));
  await until(() => b.received.length >= 3, 'bob receives three');

  // getHistoryMessages: before a time (order 0), after it (order 1); onSuccess(list, hasMore).
  /** @type {any[]} */
  const older = await new Promise((resolve) =>
    b.client.getHistoryMessages(PRIVATE, alice, sent[2].sentTime, 1, { onSuccess: (list, more) => resolve([list, more]) }),
  );
  assert.deepEqual([older[0].map((/** @type {any} */ m) => m.content.content), older[1]], [['m2'], true]);
  const newer = await b.client.getHistoryMessages(PRIVATE, alice, sent[0].sentTime, 10, undefined, undefined, 1);
  assert.deepEqual(newer.list.map((/** @type {any} */ m) => m.content.content), ['m2', 'm3']);

  // deleteRemoteMessages by the message (its seq); clearHistoryMessages clears the store and the server.
  await b.client.deleteRemoteMessages(PRIVATE, alice, [b.received[0]]);
  assert.deepEqual(
    (await b.client.getHistoryMessages(PRIVATE, alice, 0, 10)).list.map((/** @type {any} */ m) => m.content.content),
    ['m2', 'm3'],
  );
  await b.client.clearHistoryMessages({ conversationType: PRIVATE, targetId: alice, timestamp: sent[1].sentTime });
  assert.deepEqual(
    (await b.client.getHistoryMessages(PRIVATE, alice, 0, 10)).list.map((/** @type {any} */ m) => m.content.content),
    ['m3'],
  );
  assert.equal(await errorCode((cb) => b.client.getMessage(b.received[1].messageId, cb)), ErrorCode.GET_MESSAGE_BY_ID_ERROR);

  // Conversation settings, shared through the server.
  await b.client.setConversationToTop(PRIVATE, alice, true);
  await b.client.setConversationNotificationStatus(PRIVATE, alice, 0);
  const c = await b.client.getConversation(PRIVATE, alice);
  assert.deepEqual([c.isTop, c.notificationStatus], [true, 0]);
  assert.equal(await b.client.getConversationNotificationStatus(PRIVATE, alice), 0);
  await b.client.sendReceiptResponse(PRIVATE, alice);
  assert.equal(await b.client.getUnreadCount(PRIVATE, alice), 0);
  assert.equal(b.client.pottingConversation({ conversationType: 1, targetId: alice, unread: '4' }).unreadMessageCount, 4);

  // Chatrooms: history with the seed's names, info, entries.
  await a.client.joinChatRoom('more-room', 0);
  await b.client.joinChatRoom('more-room', 0);
  await a.client.sendMessage(ConversationType.CHATROOM, 'more-room', TextMessage.obtain('room hello'));
  /** @type {any[]} */
  const roomHistory = await new Promise((resolve) =>
    b.client.getChatRoomHistoryMessages('more-room', 10, 0, { onSuccess: (list, more) => resolve([list, more]) }),
  );
  assert.deepEqual(roomHistory[0].filter((/** @type {any} */ m) => m.objectName === 'RC:TxtMsg').map((/** @type {any} */ m) => m.content.content), ['room hello']);
  const info = await b.client.getChatRoomInfo('more-room', 10, 1);
  assert.equal(info.userTotalNums, 2);
  await b.client.setChatroomEntry('more-room', { key: 'topic', value: 'tea' });
  assert.equal(await a.client.getChatroomEntry('more-room', 'topic'), 'tea');
  assert.deepEqual(await a.client.getAllChatroomEntries('more-room'), { topic: 'tea' });
  assert.equal(await errorCode((cb) => a.client.removeChatroomEntry('more-room', { key: 'topic' }, cb)), ErrorCode.CHATROOM_KV_OVERWRITE_INVALID);
  await a.client.forceRemoveChatroomEntry('more-room', 'topic');
  assert.deepEqual(await a.client.getAllChatroomEntries('more-room'), {});
  await b.client.quitChatRoom('more-room');

  // Files: what an upload needs.
  const token = /** @type {any} */ (await a.client.getFileToken(1));
  assert.ok(String(token.url).endsWith('/v1/files'));
});
