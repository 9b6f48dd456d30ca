// Discussions: groups users make and manage themselves (docs/protocol.md, "Discussions"), made,
// grown, renamed, closed to invitations and left through the SDK, with the `tidings:group`
// notifications their members get.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConversationType, ErrorCode, TextMessage } from '../src/index.js';
import { api } from '../test-support/api.js';
import { client, serverForFile } from '../test-support/server.js';
import { recorder, until } from '../test-support/wait.js';

const server = serverForFile(['--send-rate', '0']);

/**
 * The operations of the group notifications a client was given for `groupId`, in order.
 * @param {ReturnType<typeof recorder>} rec
 * @param {string} groupId
 */
const notices = (rec, groupId) =>
  rec.messages
    .filter((m) => m.conversationType === ConversationType.GROUP && m.targetId === groupId && m.objectName === 'tidings:group')
    .map((m) => /** @type {any} */ (m.content).content);

/** @param {unknown} e */
const code = (e) => /** @type {any} */ (e).code;

test('a discussion: made, joined, renamed, closed to invitations, a refusal, and left', async () => {
  const ann = await client(server);
  const ben = await client(server);
  const cat = await client(server);
  const b = recorder(ben);
  const c = recorder(cat);
  await ann.connect(await server.token('d-ann'));
  await ben.connect(await server.token('d-ben'));
  await cat.connect(await server.token('d-cat'));

  // Made: its owner is its maker, its id the server's, its invitations open.
  const made = await ann.createDiscussion('Lunch', ['d-ben']);
  assert.match(made.groupId, /^d-/);
  assert.deepEqual(
    [made.kind, made.name, made.ownerId, made.memberCount, made.inviteOpen],
    ['discussion', 'Lunch', 'd-ann', 2, true],
  );
  const id = made.groupId;
  await until(() => notices(b, id).some((n) => n.operation === 'create'), 'ben is told it was made');
  assert.equal(notices(b, id)[0].kind, 'discussion');
  assert.deepEqual(
    (await ben.getGroupList()).map((g) => [g.groupId, g.kind]),
    [[id, 'discussion']],
  );

  // Invitations are open: a member who is not the owner invites.
  const grown = await ben.addDiscussionMembers(id, ['d-cat']);
  assert.equal(grown.memberCount, 3);
  await until(() => notices(c, id).some((n) => n.operation === 'add'), 'cat is told she joined');
  assert.deepEqual(notices(c, id).find((n) => n.operation === 'add').userIds, ['d-cat']);

  // Any member renames it; everyone sees the name.
  const renamed = await cat.updateDiscussion(id, { name: 'Lunch on Friday' });
  assert.equal(renamed.name, 'Lunch on Friday');
  await until(() => notices(b, id).some((n) => n.operation === 'update' && n.name === 'Lunch on Friday'), 'ben sees the rename');
  assert.equal((await ben.getGroupInfo(id)).name, 'Lunch on Friday');

  // Only the owner closes the invitations; then only the owner invites.
  await assert.rejects(ben.updateDiscussion(id, { name: 'Not this', inviteOpen: false }), (e) => code(e) === ErrorCode.RC_MSG_UNAUTHORIZED);
  assert.equal((await ann.getGroupInfo(id)).name, 'Lunch on Friday', 'a refused update changes nothing');
  const closed = await ann.updateDiscussion(id, { inviteOpen: false });
  assert.equal(closed.inviteOpen, false);
  await until(() => notices(b, id).some((n) => n.operation === 'update' && n.inviteOpen === false), 'ben is told invitations closed');
  await assert.rejects(ben.addDiscussionMembers(id, ['d-dan']), (e) => code(e) === ErrorCode.JOIN_IN_DISCUSSION);

  // Only the owner removes members; the callback form gets the refusal too.
  const refusal = await new Promise((resolve) =>
    ben.removeDiscussionMember(id, 'd-cat', { onSuccess: () => resolve(0), onError: (e) => resolve(e) }),
  );
  assert.equal(refusal, ErrorCode.RC_MSG_UNAUTHORIZED);
  assert.equal((await ann.getGroupInfo(id)).memberCount, 3, 'the refused removal changed nothing');
  const removed = await ann.removeDiscussionMember(id, 'd-cat');
  assert.equal(removed.memberCount, 2);
  await until(() => notices(c, id).some((n) => n.operation === 'remove'), 'cat is told she was removed');
  await assert.rejects(cat.getGroupInfo(id), (e) => code(e) === ErrorCode.NOT_IN_GROUP);

  // Messages go through; the owner leaves and hands it to ben; the last to leave ends it.
  await ann.sendMessage(ConversationType.GROUP, id, new TextMessage({ content: 'noon?' }));
  await until(() => b.messages.some((m) => m.targetId === id && /** @type {any} */ (m.content).content === 'noon?'), 'ben gets the message');
  const left = await ann.quitGroup(id);
  assert.deepEqual([left.ownerId, left.memberCount], ['d-ben', 1]);
  await until(() => notices(b, id).some((n) => n.operation === 'quit'), 'ben is told ann left');
  assert.deepEqual(notices(b, id).find((n) => n.operation === 'quit').userIds, ['d-ann']);
  assert.equal((await ben.getGroupInfo(id)).ownerId, 'd-ben');
  const ended = await ben.quitGroup(id);
  assert.ok(ended.dismissedTime > 0, 'the last member to leave ends it');
  assert.deepEqual(await ben.getGroupList(), []);
});

test('the discussion bodies refuse a group that is not a discussion, and bad input', async () => {
  const eve = await client(server);
  await eve.connect(await server.token('d-eve'));
  await assert.rejects(eve.updateDiscussion('no-such-group', { name: 'x' }), (e) => code(e) === ErrorCode.RC_DISCUSSION_GROUP_ID_INVALID);
  // A group the app server made is managed by it alone, even for its owner.
  const made = await api(server, 'POST', '/groups', { groupId: 'managed', ownerId: 'd-eve', name: 'Managed', memberIds: [] });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  assert.equal((await eve.getGroupInfo('managed')).kind, 'managed');
  await assert.rejects(eve.updateDiscussion('managed', { name: 'Mine' }), (e) => code(e) === ErrorCode.RC_DISCUSSION_GROUP_ID_INVALID);
  await assert.rejects(eve.addDiscussionMembers('managed', ['d-ann']), (e) => code(e) === ErrorCode.RC_DISCUSSION_GROUP_ID_INVALID);
  await assert.rejects(eve.createDiscussion('x'.repeat(129), []), (e) => code(e) === ErrorCode.BAD_REQUEST);
  const own = await eve.createDiscussion('Alone', []);
  assert.equal(own.memberCount, 1);
  await assert.rejects(eve.updateDiscussion(own.groupId, {}), (e) => code(e) === ErrorCode.BAD_REQUEST, 'nothing to change');
});
