// Chatrooms: joining with recent messages, the room's stream as `message` and `chatroom`
// events, members, history, key-value entries and their refusals, and joining again after a
// reconnect or a server restart.

import assert from 'node:assert/strict';
import { after, afterEach, test } from 'node:test';

import { ConversationType, ErrorCode, TextMessage } from '../src/index.js';
import { api } from '../test-support/api.js';
import { client, closeClients, startServer } from '../test-support/server.js';
import { controlledWebSocket } from '../test-support/sockets.js';
import { recorder, until, untilAsync } from '../test-support/wait.js';

afterEach(closeClients);

/** @type {import('../test-support/server.js').TestServer[]} */
const servers = [];
after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

async function server() {
  const s = await startServer(['--send-rate', '0']);
  servers.push(s);
  return s;
}

/**
 * @param {import('../src/index.js').TidingsClient} from
 * @param {string} room
 * @param {string} text
 */
const say = (from, room, text) => from.sendMessage(ConversationType.CHATROOM, room, new TextMessage({ content: text }));

/** @param {ReturnType<typeof recorder>} rec @param {string} room */
const roomTexts = (rec, room) =>
  rec.messages
    .filter((m) => m.conversationType === ConversationType.CHATROOM && m.targetId === room)
    .map((m) => /** @type {TextMessage} */ (m.content).content);

/** @param {import('../src/index.js').TidingsClient} c */
function chatroomEvents(c) {
  /** @type {import('../types/index.js').ChatroomEvent[]} */
  const events = [];
  c.on('chatroom', (e) => events.push(e));
  return events;
}

test('two members: recent messages on join, the stream, members, history and entries', async () => {
  const s = await server();
  const alice = await client(s);
  const bob = await client(s);
  const b = recorder(bob);
  const aliceEvents = chatroomEvents(alice);
  const bobEvents = chatroomEvents(bob);
  await alice.connect(await s.token('room-alice'));
  await bob.connect(await s.token('room-bob'));

  const first = await alice.joinChatRoom('lobby', 0);
  assert.equal(first.chatroom.chatroomId, 'lobby');
  assert.deepEqual(alice.chatrooms, ['lobby']);
  for (const t of ['m1', 'm2', 'm3']) await say(alice, 'lobby', t);

  const joined = await bob.joinChatRoom('lobby', 2);
  assert.deepEqual(
    joined.messages.map((m) => /** @type {TextMessage} */ (m.content).content),
    ['m2', 'm3'],
  );
  assert.equal(joined.chatroom.memberCount, 2);
  assert.deepEqual(roomTexts(b, 'lobby'), ['m2', 'm3'], 'the recent messages are presented too');
  await until(
    () => aliceEvents.some((e) => e.type === 'notice' && e.operation === 'join' && e.userIds.includes('room-bob')),
    "alice hears of bob's join",
  );

  await say(alice, 'lobby', 'm4');
  await until(() => roomTexts(b, 'lobby').length === 3, 'm4 reaches bob');
  const m4 = b.messages[b.messages.length - 1];
  assert.equal(m4.conversationType, ConversationType.CHATROOM);
  assert.equal(m4.senderUserId, 'room-alice');
  assert.equal(m4.targetId, 'lobby');

  const info = await bob.getChatRoomInfo('lobby', { count: 10 });
  assert.equal(info.userTotalNums, 2);
  assert.deepEqual(
    info.userInfos.map((u) => u.id),
    ['room-alice', 'room-bob'],
  );
  const newestFirst = await bob.getChatRoomInfo('lobby', { count: 1, order: 2 });
  assert.deepEqual(
    newestFirst.userInfos.map((u) => u.id),
    ['room-bob'],
  );
  const history = await bob.getChatRoomHistoryMessages('lobby', 10);
  assert.deepEqual(
    history.messages.map((m) => /** @type {TextMessage} */ (m.content).content),
    ['m1', 'm2', 'm3', 'm4'],
  );

  // Entries: one user's key is theirs unless forced.
  const set = await alice.setChatroomEntry('lobby', { key: 'topic', value: 'cats' });
  assert.deepEqual([set.key, set.value, set.userId], ['topic', 'cats', 'room-alice']);
  await until(
    () => bobEvents.some((e) => e.type === 'notice' && e.operation === 'entry' && e.key === 'topic' && e.value === 'cats'),
    'the entry notice',
  );
  await assert.rejects(
    bob.setChatroomEntry('lobby', { key: 'topic', value: 'dogs' }),
    (e) => /** @type {any} */ (e).code === ErrorCode.CHATROOM_KV_OVERWRITE_INVALID,
  );
  const forced = await bob.forceSetChatroomEntry('lobby', { key: 'topic', value: 'dogs' });
  assert.equal(forced.userId, 'room-bob');
  assert.equal(await alice.getChatroomEntry('lobby', 'topic'), 'dogs');
  await bob.setChatroomEntry('lobby', { key: 'mood', value: 'calm', isAutoDelete: true });
  assert.deepEqual(await bob.getAllChatroomEntries('lobby'), { mood: 'calm', topic: 'dogs' });
  await assert.rejects(
    alice.removeChatroomEntry('lobby', 'topic'),
    (e) => /** @type {any} */ (e).code === ErrorCode.CHATROOM_KV_OVERWRITE_INVALID,
  );
  assert.equal(await alice.forceRemoveChatroomEntry('lobby', 'topic'), true);
  assert.equal(await bob.getChatroomEntry('lobby', 'topic'), null);
  await assert.rejects(
    alice.removeChatroomEntry('lobby', { key: 'topic' }),
    (e) => /** @type {any} */ (e).code === ErrorCode.CHATROOM_KEY_NOT_EXIST,
  );

  // Leaving: out of the list of rooms, and of the room's members.
  const left = await bob.quitChatRoom('lobby');
  assert.equal(left.memberCount, 1);
  assert.deepEqual(bob.chatrooms, []);
  assert.equal((await alice.getChatRoomInfo('lobby')).userTotalNums, 1);
  await assert.rejects(bob.getChatRoomInfo('lobby'), (e) => /** @type {any} */ (e).code === ErrorCode.NOT_IN_CHATROOM);
  // Bob's auto-delete entry went with him.
  assert.equal(await alice.getChatroomEntry('lobby', 'mood'), null);
});

test('a lost connection: joined again, the messages missed meanwhile presented once', async () => {
  const s = await server();
  const { WebSocket, control } = controlledWebSocket();
  const alice = await client(s);
  // Bob reconnects when told to, so that messages are sent while he is away.
  const bob = await client(s, { WebSocket, reconnectRates: [60_000] });
  const b = recorder(bob);
  await alice.connect(await s.token('lost-alice'));
  await bob.connect(await s.token('lost-bob'));
  await alice.joinChatRoom('den');
  await bob.joinChatRoom('den');
  await say(alice, 'den', 'before');
  await until(() => roomTexts(b, 'den').length === 1, 'the first message');

  control.cut();
  await until(() => bob.getCurrentConnectionStatus() !== 0, 'bob notices');
  await say(alice, 'den', 'while-away-1');
  await say(alice, 'den', 'while-away-2');
  await bob.reconnect();
  await until(() => roomTexts(b, 'den').length === 3, 'the missed messages');
  await say(alice, 'den', 'after');
  await until(() => roomTexts(b, 'den').length === 4, 'the next message');
  assert.deepEqual(roomTexts(b, 'den'), ['before', 'while-away-1', 'while-away-2', 'after']);
  const rejoin = control.sent.find((f) => f.query?.joinChatroom?.afterSeq);
  assert.ok(rejoin, 'the rejoin asks for what came after');
});

test('a server restart: a kept room is joined again and followed from its new numbering; a room that is gone is left', async () => {
  const s = await server();
  const created = await api(s, 'POST', '/chatrooms', { chatroomId: 'hall', name: 'Hall' });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const alice = await client(s, { reconnectRates: [50, 200] });
  const bob = await client(s, { reconnectRates: [50, 200] });
  const b = recorder(bob);
  const bobEvents = chatroomEvents(bob);
  await alice.connect(await s.token('hall-alice'));
  await bob.connect(await s.token('hall-bob'));
  await alice.joinChatRoom('hall');
  await bob.joinChatRoom('hall');
  await bob.joinChatRoom('pop-up');
  await say(alice, 'hall', 'h1');
  await say(alice, 'hall', 'h2');
  const h3 = await say(alice, 'hall', 'h3');
  await until(() => roomTexts(b, 'hall').length === 3, 'the messages before');

  await s.halt();
  await s.resume();
  await until(() => bob.stats.reconnects >= 1 && alice.stats.reconnects >= 1, 'both back');
  await until(
    () => bobEvents.some((e) => e.type === 'left' && e.chatroomId === 'pop-up'),
    'the room a join made is gone',
  );
  const gone = bobEvents.find((e) => e.type === 'left');
  assert.equal(/** @type {any} */ (gone).code, ErrorCode.RC_CHATROOM_NOT_EXIST);
  assert.deepEqual(bob.chatrooms, ['hall']);
  await untilAsync(
    async () => (await alice.getChatRoomInfo('hall').catch(() => null))?.userTotalNums === 2,
    'both in the hall again',
  );
  // The room numbers from 1 again: its first new message is below the last seq bob saw.
  const next = await say(alice, 'hall', 'h4');
  assert.ok(next.seq <= h3.seq, `renumbered (seq ${next.seq}, before the restart ${h3.seq})`);
  await until(() => roomTexts(b, 'hall').length === 4, 'the message after the restart');
  assert.deepEqual(roomTexts(b, 'hall'), ['h1', 'h2', 'h3', 'h4']);
});

test('kicked, or the room destroyed: a notice, then out of the room', async () => {
  const s = await server();
  const alice = await client(s);
  const bob = await client(s);
  const aliceEvents = chatroomEvents(alice);
  const bobEvents = chatroomEvents(bob);
  await alice.connect(await s.token('out-alice'));
  await bob.connect(await s.token('out-bob'));
  await alice.joinChatRoom('stage');
  await bob.joinChatRoom('stage');

  const kicked = await api(s, 'POST', '/chatrooms/stage/kick', { userIds: ['out-bob'] });
  assert.equal(kicked.status, 200, JSON.stringify(kicked.body));
  await until(() => bobEvents.some((e) => e.type === 'left'), 'bob out');
  const kick = bobEvents.find((e) => e.type === 'notice' && e.operation === 'kick');
  assert.deepEqual(/** @type {any} */ (kick).userIds, ['out-bob']);
  assert.deepEqual(bobEvents[bobEvents.length - 1], { type: 'left', chatroomId: 'stage', code: ErrorCode.RC_CHATROOM_USER_KICKED });
  assert.deepEqual(bob.chatrooms, []);
  assert.deepEqual(alice.chatrooms, ['stage'], 'the others stay');

  const destroyed = await api(s, 'DELETE', '/chatrooms/stage');
  assert.equal(destroyed.status, 200, JSON.stringify(destroyed.body));
  await until(() => aliceEvents.some((e) => e.type === 'left'), 'alice out');
  assert.ok(aliceEvents.some((e) => e.type === 'notice' && e.operation === 'destroy'));
  assert.deepEqual(aliceEvents[aliceEvents.length - 1], { type: 'left', chatroomId: 'stage', code: ErrorCode.RC_CHATROOM_NOT_EXIST });
  assert.deepEqual(alice.chatrooms, []);
});
