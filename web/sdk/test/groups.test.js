// Groups made by the app server (the signed HTTP API): the profile, members, the user's groups,
// mentions and directed messages, read receipts, and quitting.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConversationType, ErrorCode, MentionedType, TextMessage } from '../src/index.js';
import { api } from '../test-support/api.js';
import { client, serverForFile } from '../test-support/server.js';
import { recorder, until } from '../test-support/wait.js';

const server = serverForFile(['--send-rate', '0']);

/** @param {ReturnType<typeof recorder>} rec @param {string} group */
const groupTexts = (rec, group) =>
  rec.messages
    .filter((m) => m.conversationType === ConversationType.GROUP && m.targetId === group && m.objectName === 'text')
    .map((m) => /** @type {TextMessage} */ (m.content).content);

test('a group: profile, members, mentions, a directed message, a read receipt, quitting', async () => {
  const made = await api(server, 'POST', '/groups', {
    groupId: 'team',
    ownerId: 'g-alice',
    name: 'The team',
    memberIds: ['g-bob', 'g-carol'],
  });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  const alice = await client(server);
  const bob = await client(server);
  const carol = await client(server);
  const b = recorder(bob);
  const c = recorder(carol);
  await alice.connect(await server.token('g-alice'));
  await bob.connect(await server.token('g-bob'));
  await carol.connect(await server.token('g-carol'));

  const info = await bob.getGroupInfo('team');
  assert.deepEqual([info.groupId, info.name, info.ownerId, info.memberCount], ['team', 'The team', 'g-alice', 3]);
  const page1 = await bob.getGroupMembers('team', { count: 2 });
  assert.deepEqual(
    page1.members.map((m) => m.userId),
    ['g-alice', 'g-bob'],
  );
  assert.ok(page1.nextPageToken);
  const page2 = await bob.getGroupMembers('team', { count: 2, pageToken: page1.nextPageToken });
  assert.deepEqual(
    page2.members.map((m) => m.userId),
    ['g-carol'],
  );
  assert.equal(page2.nextPageToken, '');
  assert.deepEqual(
    (await carol.getGroupList()).map((g) => g.groupId),
    ['team'],
  );

  const text = (/** @type {string} */ t) => new TextMessage({ content: t });
  const hi = await alice.sendMessage(ConversationType.GROUP, 'team', text('hi @bob'), { mentionedUserIds: ['g-bob'] });
  await alice.sendMessage(ConversationType.GROUP, 'team', text('hi all'), { mentionAll: true });
  await alice.sendMessage(ConversationType.GROUP, 'team', text('bob only'), { userIds: ['g-bob'] });
  await alice.sendMessage(ConversationType.GROUP, 'team', text('last'));
  await until(() => groupTexts(b, 'team').length === 4, 'bob has the four');
  await until(() => groupTexts(c, 'team').length === 3, 'carol has three');
  assert.deepEqual(groupTexts(c, 'team'), ['hi @bob', 'hi all', 'last'], 'the directed message is not hers');
  const bobHi = b.messages.find((m) => m.seq === hi.seq);
  assert.deepEqual(bobHi?.mentionedInfo, { type: MentionedType.PART, userIdList: ['g-bob'] });
  assert.deepEqual(b.messages.find((m) => m.objectName === 'text' && /** @type {any} */ (m.content).content === 'bob only')?.directedUserIds, ['g-bob']);

  const bobs = await bob.getConversation(ConversationType.GROUP, 'team');
  assert.equal(bobs?.unreadMessageCount, 4);
  assert.equal(bobs?.mentionedCount, 2, 'by id and @all');
  assert.equal((await carol.getConversation(ConversationType.GROUP, 'team'))?.mentionedCount, 1, '@all only');

  // Bob reads up to the first message: he is among its readers, carol is not.
  await bob.setReadPosition(ConversationType.GROUP, 'team', hi.seq);
  const receipt = await alice.getGroupMessageReadReceipt('team', hi);
  assert.deepEqual(receipt, { readUserIds: ['g-bob'], unreadUserIds: ['g-carol'], readCount: 1, unreadCount: 1 });
  await assert.rejects(
    bob.getGroupMessageReadReceipt('team', hi.seq),
    (e) => /** @type {any} */ (e).code === 40018,
    "only the sender asks for a message's receipt",
  );

  const leftBehind = await carol.quitGroup('team');
  assert.equal(leftBehind.memberCount, 2);
  assert.deepEqual(await carol.getGroupList(), []);
  await assert.rejects(carol.getGroupInfo('team'), (e) => /** @type {any} */ (e).code === ErrorCode.NOT_IN_GROUP);
  await assert.rejects(
    carol.sendMessage(ConversationType.GROUP, 'team', text('still here?')),
    (e) => /** @type {any} */ (e).code === ErrorCode.NOT_IN_GROUP,
  );
});
