// Search, the blocklist, presence, edits and reactions, quiet hours and notification status,
// Web Push registration:
// each checked against what the server keeps or sends.

import assert from 'node:assert/strict';
import { createECDH, randomBytes } from 'node:crypto';
import { test } from 'node:test';

import {
  ConversationNotificationStatus,
  ConversationType,
  ErrorCode,
  TextMessage,
} from '../src/index.js';
import { pair as pairOf } from '../test-support/pair.js';
import { client, serverForFile } from '../test-support/server.js';
import { controlledWebSocket } from '../test-support/sockets.js';
import { until } from '../test-support/wait.js';

const server = serverForFile(['--send-rate', '0']);

/** @param {string} name */
const pair = (name) => pairOf(server, name);

test('search finds a sent text, in every conversation or in one', async () => {
  const { alice, bob, b, send, A, B } = await pair('search');
  await send(alice, B, 'the quick brown fox');
  await send(alice, B, 'nothing to see');
  await b.messagesAtLeast(2);
  const found = await bob.searchMessages('brown');
  assert.deepEqual(
    found.messages.map((m) => /** @type {TextMessage} */ (m.content).content),
    ['the quick brown fox'],
  );
  assert.equal(found.messages[0].senderUserId, A);
  const inOne = await alice.searchMessages('QUICK', { conversationType: 1, targetId: B });
  assert.equal(inOne.messages.length, 1, 'either case');
  assert.equal((await alice.searchMessages('quick', { targetId: `${B}-other` })).messages.length, 0);
});

test('blocklist: a blocked user gets 405, and the lists say so', async () => {
  const { alice, bob, send, A, B } = await pair('block');
  assert.equal(await bob.addToBlacklist(A), true);
  assert.deepEqual(await bob.getBlacklist(), [A]);
  assert.equal(await bob.getBlacklistStatus(A), true);
  assert.equal(await alice.getBlacklistStatus(B), false, 'one way');
  await assert.rejects(send(alice, B, 'let me in'), (e) => /** @type {any} */ (e).code === ErrorCode.REJECTED_BY_BLACKLIST);
  await send(bob, A, 'I may still write');
  assert.equal(await bob.removeFromBlacklist(A), true);
  assert.deepEqual(await bob.getBlacklist(), []);
  await send(alice, B, 'thanks');
});

test('presence: a watched user coming online, and watched again after a reconnect', async () => {
  const { WebSocket, control } = controlledWebSocket();
  const watcher = await client(server, { WebSocket, reconnectRates: [50] });
  /** @type {import('../types/index.js').Presence[]} */
  const seen = [];
  watcher.on('presence', (p) => seen.push(p));
  await watcher.connect(await server.token('pres-watcher'));
  const now = await watcher.subscribeUserStatus(['pres-dana']);
  assert.deepEqual(now.map((p) => [p.userId, p.online]), [['pres-dana', false]]);

  const dana = await client(server);
  await dana.connect(await server.token('pres-dana'));
  await until(() => seen.some((p) => p.userId === 'pres-dana' && p.online), 'dana online');
  assert.deepEqual((await watcher.getUserStatus('pres-dana')).map((p) => p.online), [true]);
  await dana.disconnect();
  await until(() => seen.some((p) => p.userId === 'pres-dana' && !p.online && p.lastSeen > 0), 'dana offline');

  // A new connection watches again by itself.
  control.cut();
  await until(() => watcher.stats.reconnects >= 1 && watcher.getCurrentConnectionStatus() === 0, 'watcher back');
  await until(
    () => control.sent.filter((f) => f.query?.subscribePresence).length === 2,
    'the subscription sent again',
  );
  const count = seen.length;
  await dana.connect(await server.token('pres-dana'));
  await until(() => seen.slice(count).some((p) => p.userId === 'pres-dana' && p.online), 'dana online again');
});

test('edits and reactions reach the other user', async () => {
  const { alice, bob, a, b, send, A, B } = await pair('edit');
  const sent = await send(alice, B, 'helo');
  await b.messagesAtLeast(1);
  const edited = await alice.editMessage(sent, new TextMessage({ content: 'hello' }));
  assert.equal(edited.isEdited, true);
  assert.equal(/** @type {TextMessage} */ (edited.content).content, 'hello');
  await until(() => b.messages.some((m) => m.objectName === 'tidings:edit'), 'the edit event');
  const edit = /** @type {any} */ (b.messages.find((m) => m.objectName === 'tidings:edit')?.content).content;
  assert.equal(edit.seq, sent.seq);
  assert.equal(JSON.parse(edit.content).text, 'hello');

  const reacted = await bob.addReaction(b.messages[0], '👍');
  assert.deepEqual(reacted.reactions, [{ emoji: '👍', userIds: [B] }]);
  await until(() => a.messages.some((m) => m.objectName === 'tidings:reaction'), 'the reaction event');
  const reaction = /** @type {any} */ (a.messages.find((m) => m.objectName === 'tidings:reaction')?.content).content;
  assert.deepEqual(reaction, { action: 'react', seq: sent.seq, emoji: '👍', userId: B, added: true });
  const unreacted = await bob.removeReaction(b.messages[0], '👍');
  assert.deepEqual(unreacted.reactions, []);
  await assert.rejects(
    bob.editMessage(b.messages[0], new TextMessage({ content: 'mine now' })),
    (e) => /** @type {any} */ (e).code === ErrorCode.NOT_MESSAGE_SENDER,
  );
  const history = await bob.getHistoryMessages(1, A);
  assert.equal(/** @type {TextMessage} */ (history.messages[0].content).content, 'hello');
});

test('quiet hours and a conversation notification status', async () => {
  const { alice, bob, send, B, A } = await pair('quiet');
  /** @type {any[]} */
  const events = [];
  alice.on('quietHours', (q) => events.push(q));
  assert.deepEqual(await alice.setNotificationQuietHours('22:00', 480), { startMinute: 1320, minutes: 480 });
  assert.deepEqual(await alice.getNotificationQuietHours(), { startMinute: 1320, minutes: 480 });
  await until(() => events.some((q) => q.minutes === 480), 'the quiet-hours event');
  assert.equal(await alice.removeNotificationQuietHours(), true);
  assert.equal((await alice.getNotificationQuietHours()).minutes, 0);

  await send(bob, A, 'hello');
  const { DO_NOT_DISTURB, NOTIFY } = ConversationNotificationStatus;
  assert.equal(await alice.getConversationNotificationStatus(1, B), NOTIFY);
  assert.equal(await alice.setConversationNotificationStatus(1, B, DO_NOT_DISTURB), DO_NOT_DISTURB);
  assert.equal(await alice.getConversationNotificationStatus(1, B), DO_NOT_DISTURB);
  assert.equal((await alice.getConversation(1, B))?.isMuted, true);
  assert.equal(await alice.setConversationNotificationStatus(1, B, NOTIFY), NOTIFY);
  assert.equal(await alice.getConversationNotificationStatus(1, B), NOTIFY);
});

test('a Web Push subscription registers, answered with the key the navigation gives', async () => {
  const { alice } = await pair('webpush');
  const navi = await (await fetch(`${server.url}/navi`)).json();
  assert.match(navi.vapidPublicKey, /^[A-Za-z0-9_-]{87}$/);
  const subscription = {
    endpoint: 'https://push.example/send/1',
    keys: {
      p256dh: createECDH('prime256v1').generateKeys().toString('base64url'),
      auth: randomBytes(16).toString('base64url'),
    },
    toJSON() {
      return { endpoint: this.endpoint, keys: this.keys };
    },
  };
  assert.equal(await alice.registerPush(subscription), navi.vapidPublicKey);
  await assert.rejects(
    alice.registerPush({ endpoint: 'not a url', keys: subscription.keys }),
    (e) => /** @type {any} */ (e).code === ErrorCode.INVALID_PUSH_SUBSCRIPTION,
  );
  assert.equal(await alice.unregisterPush(subscription.endpoint), true);
});
