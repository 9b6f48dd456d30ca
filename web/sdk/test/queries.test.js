// The conversation list, unread counts and read positions, history, recall and typing: thin
// wrappers over QUERY, checked against what the server keeps.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConversationType, ErrorCode, RecallCommandMessage, TextMessage } from '../src/index.js';
import { pair as pairOf } from '../test-support/pair.js';
import { client, serverForFile } from '../test-support/server.js';
import { until } from '../test-support/wait.js';

const server = serverForFile(['--send-rate', '0']);

/** @param {string} name */
const pair = (name) => pairOf(server, name);

test('conversation list, unread counts, read position and removal', async () => {
  const { alice, bob, a, b, send, A, B, C } = await pair('conv');
  const carol = await client(server);
  await carol.connect(await server.token(C));
  await send(alice, B, 'a1');
  await send(alice, B, 'a2');
  await send(carol, B, 'c1');
  await b.messagesAtLeast(3);

  const list = await bob.getConversationList();
  assert.deepEqual(
    list.map((c) => [c.targetId, c.unreadMessageCount]),
    [
      [C, 1],
      [A, 2],
    ],
    'newest first',
  );
  assert.equal(list[1].latestMessage?.objectName, 'text');
  assert.equal(/** @type {TextMessage} */ (list[1].latestMessage?.content).content, 'a2');
  // Seed style: (callback, types, count).
  const viaCallback = await new Promise((resolve) => bob.getConversationList({ onSuccess: resolve }, [1], 1));
  assert.equal(/** @type {any[]} */ (viaCallback).length, 1);

  assert.equal(await bob.getTotalUnreadCount(), 3);
  assert.equal(await bob.getConversationUnreadCount([ConversationType.GROUP]), 0);
  assert.equal(await bob.getUnreadCount(1, A), 2);
  assert.equal((await bob.getConversation(1, C))?.unreadMessageCount, 1);
  assert.equal(await bob.getConversation(1, `${A}-nobody`), null);

  // Reading the conversation with alice: counts drop, bob's devices hear of it, alice gets a receipt.
  assert.equal(await bob.clearUnreadCount(1, A), true);
  assert.equal(await bob.getUnreadCount(1, A), 0);
  assert.equal(await bob.getTotalUnreadCount(), 1);
  await until(() => b.conversations.some((c) => c.targetId === A && c.readSeq === 2), 'the change event');
  await until(() => a.readReceipts.length > 0, 'the read receipt');
  assert.deepEqual(a.readReceipts[0], { conversationType: 1, targetId: B, readSeq: 2 });

  const pinned = await bob.setConversationToTop(1, A, true);
  assert.equal(pinned?.isTop, true);
  assert.equal((await bob.getConversationList())[0].targetId, A, 'pinned first');

  assert.equal(await bob.removeConversation(1, C), true);
  assert.deepEqual(
    (await bob.getConversationList()).map((c) => c.targetId),
    [A],
  );
  assert.equal(await bob.getTotalUnreadCount(), 0, 'removal reads it');
  assert.deepEqual(
    bob.getCachedConversationList().map((c) => c.targetId),
    [A],
  );
  await Promise.all([alice.disconnect(), bob.disconnect(), carol.disconnect()]);
});

test('history pages, oldest first, by time or by seq', async () => {
  const { alice, bob, b, send, A, B } = await pair('hist');
  for (let i = 1; i <= 5; i++) await send(alice, B, `h${i}`);
  await b.messagesAtLeast(5);

  const newest = await bob.getHistoryMessages(1, A, 0, 3);
  assert.deepEqual(
    newest.messages.map((m) => /** @type {TextMessage} */ (m.content).content),
    ['h3', 'h4', 'h5'],
  );
  assert.equal(newest.hasMore, true);
  assert.equal(newest.messages[0].inboxSeq, 0, 'history is not the inbox');
  const older = await bob.getHistoryMessages(1, A, { beforeSeq: newest.messages[0].seq, count: 3 });
  assert.deepEqual(
    older.messages.map((m) => m.seq),
    [1, 2],
  );
  assert.equal(older.hasMore, false);
  const seedStyle = await new Promise((resolve) =>
    bob.getRemoteHistoryMessages(
      { conversationType: 1, targetId: A, timestamp: newest.messages[0].sentTime + 1, count: 1 },
      { onSuccess: (list, hasMore) => resolve({ list, hasMore }) },
    ),
  );
  assert.equal(/** @type {any} */ (seedStyle).list.length, 1);
  await Promise.all([alice.disconnect(), bob.disconnect()]);
});

test('recall: a tombstone for both, and the recall event reaches the recipient', async () => {
  const { alice, bob, b, send, A, B } = await pair('recall');
  const sent = await send(alice, B, 'oops');
  await b.messagesAtLeast(1);
  const tombstone = await alice.recallMessage(sent);
  assert.equal(tombstone.isRecalled, true);
  assert.equal(tombstone.seq, sent.seq);
  await b.messagesAtLeast(2);
  const event = b.messages[1];
  assert.ok(event.content instanceof RecallCommandMessage);
  assert.equal(event.content.seq, sent.seq);
  const history = await bob.getHistoryMessages(1, A);
  assert.equal(history.messages[0].isRecalled, true);
  // Only the sender may recall.
  await assert.rejects(bob.recallMessage(b.messages[0]), (e) => /** @type {any} */ (e).code === ErrorCode.NOT_MESSAGE_SENDER);
  await Promise.all([alice.disconnect(), bob.disconnect()]);
});

test('typing status reaches the other user, and is not a message', async () => {
  const { alice, bob, b, A, B } = await pair('typing');
  assert.equal(alice.sendTypingStatusMessage(1, B), true);
  await until(() => b.typing.length > 0, 'the typing status');
  assert.deepEqual(
    { ...b.typing[0], sentTime: 0 },
    { conversationType: 1, targetId: A, userId: A, typingContentType: 'text', sentTime: 0 },
  );
  assert.equal(b.messages.length, 0);
  assert.equal(await bob.getTotalUnreadCount(), 0);
  await Promise.all([alice.disconnect(), bob.disconnect()]);
  assert.equal(alice.sendTypingStatusMessage(1, B), false, 'dropped when not connected');
});

test("the list's latest message: reactions and edits to older messages leave it, a recall marks it", async () => {
  const { alice, bob, b, send, A, B } = await pair('latest');
  const older = await send(alice, B, 'older');
  const newest = await send(alice, B, 'newest');
  await b.messagesAtLeast(2);
  const latestOf = (/** @type {any[]} */ list) => list.find((c) => c.targetId === A);
  const before = latestOf(await bob.getConversationList());
  assert.equal(before.latestMessage.seq, newest.seq);
  const where = { conversationType: 1, targetId: A, seq: String(older.seq) };
  await bob.query({ reactToMessage: { ...where, emoji: '👍' } });
  await alice.query({ editMessage: { ...where, targetId: B, content: JSON.stringify({ text: 'older!' }) } });
  await b.messagesAtLeast(4);
  // The server's list and this client's own cache agree: the same latest message, the same time.
  for (const conv of [latestOf(await bob.getConversationList()), latestOf(bob.getCachedConversationList())]) {
    assert.equal(conv.latestMessage.seq, newest.seq);
    assert.equal(conv.latestMessage.content.content, 'newest');
    assert.equal(conv.sentTime, before.sentTime);
  }
  await alice.recallMessage(newest);
  await b.messagesAtLeast(5);
  for (const conv of [latestOf(await bob.getConversationList()), latestOf(bob.getCachedConversationList())]) {
    assert.equal(conv.latestMessage.seq, newest.seq);
    assert.equal(conv.latestMessage.isRecalled, true);
  }
  await Promise.all([alice.disconnect(), bob.disconnect()]);
});

test("a private conversation carries how far the other user read; getUsers answers names and portraits", async () => {
  const { alice, bob, a, send, A, B } = await pair('peer-read');
  const sent = await send(alice, B, 'read me');
  await bob.clearUnreadCount(1, A);
  await until(() => a.readReceipts.length > 0, 'the read receipt');
  assert.equal(alice.getCachedConversationList().find((c) => c.targetId === B)?.peerReadSeq, sent.seq);
  // A client that never saw the receipt reads it from the server.
  const fresh = await client(server);
  await fresh.connect(await server.token(A));
  assert.equal((await fresh.getConversation(1, B))?.peerReadSeq, sent.seq);
  assert.equal((await bob.getConversation(1, A))?.peerReadSeq, 0);

  // Names: an account registered with one.
  const r = await fetch(`${server.url}/v1/accounts/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ account: 'peer-read-dora', password: 'correct horse', name: 'Dora' }),
  });
  assert.equal(r.status, 200);
  assert.deepEqual(await fresh.getUsers(['peer-read-dora', B]), [
    { userId: 'peer-read-dora', name: 'Dora', portrait: '' },
    { userId: B, name: '', portrait: '' },
  ]);
  await assert.rejects(fresh.getUsers([]), (e) => /** @type {any} */ (e).code === 40015);
  await Promise.all([alice.disconnect(), bob.disconnect(), fresh.disconnect()]);
});
