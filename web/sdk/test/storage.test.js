// The storage provider keeps the sync cursor, the conversation cache and drafts across client
// instances: a new page sharing the storage starts where the last one stopped.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConversationType, LocalStorageProvider, MemoryStorage, TextMessage, defaultStorage } from '../src/index.js';
import { client, serverForFile } from '../test-support/server.js';
import { recorder } from '../test-support/wait.js';

const server = serverForFile(['--send-rate', '0']);

/** A stand-in for `window.localStorage`: the Web Storage calls over a plain object. */
function fakeLocalStorage() {
  /** @type {Record<string, string>} */
  const data = {};
  return {
    data,
    /** @param {string} k */
    getItem: (k) => (k in data ? data[k] : null),
    /** @param {string} k @param {string} v */
    setItem: (k, v) => {
      data[k] = String(v);
    },
    /** @param {string} k */
    removeItem: (k) => {
      delete data[k];
    },
  };
}

/**
 * Bob reads three messages on one client, leaves; alice sends two more; a new client on the
 * same storage — and a device id the server has never seen, so only the storage knows how far
 * bob got — presents only the two.
 * @param {string} name
 * @param {() => import('../src/storage.js').StorageProvider | undefined} storage
 */
async function cursorSurvives(name, storage) {
  const alice = await client(server);
  await alice.connect(await server.token(`${name}-alice`));
  const bobToken = await server.token(`${name}-bob`);
  /** @param {string} text */
  const send = (text) => alice.sendMessage(1, `${name}-bob`, new TextMessage({ content: text }));

  const first = await client(server, { storage: storage(), deviceId: `${name}-one` });
  const f = recorder(first);
  await first.connect(bobToken);
  for (const t of ['a', 'b', 'c']) await send(t);
  await f.messagesAtLeast(3);
  await first.disconnect();

  await send('d');
  await send('e');

  const second = await client(server, { storage: storage(), deviceId: `${name}-two` });
  const s = recorder(second);
  await second.connect(bobToken);
  await second.sync();
  assert.deepEqual(s.texts, ['d', 'e']);
  assert.equal(second.cursor, 5);

  // The conversation cache came along too, with the newest message decoded.
  const cached = second.getCachedConversationList();
  assert.equal(cached.length, 1);
  assert.equal(cached[0].targetId, `${name}-alice`);
  assert.ok(cached[0].latestMessage?.content instanceof TextMessage);
  assert.equal(/** @type {TextMessage} */ (cached[0].latestMessage.content).content, 'e');
  await second.disconnect();
  await alice.disconnect();
}

test('a shared memory provider keeps the cursor across client instances', async () => {
  const shared = new MemoryStorage();
  await cursorSurvives('mem', () => shared);
  assert.equal(shared.getItem('tidings:test:mem-bob:cursor'), '5');
});

test('a localStorage keeps the cursor across client instances', async () => {
  const local = fakeLocalStorage();
  await cursorSurvives('local', () => new LocalStorageProvider(local));
  assert.equal(local.data['tidings:test:local-bob:cursor'], '5');
  assert.ok(JSON.parse(local.data['tidings:test:local-bob:conversations']).length === 1);
});

test('without a storage option, the global localStorage is used when there is one', async () => {
  const local = fakeLocalStorage();
  /** @type {any} */
  const g = globalThis;
  g.localStorage = local;
  try {
    assert.ok(defaultStorage() instanceof LocalStorageProvider);
    await cursorSurvives('global', () => undefined);
    assert.equal(local.data['tidings:test:global-bob:cursor'], '5');
  } finally {
    delete g.localStorage;
  }
  assert.ok(defaultStorage() instanceof MemoryStorage, 'memory when there is none');
});

test('a localStorage that refuses writes falls back to memory for them', () => {
  const refusing = fakeLocalStorage();
  refusing.setItem = () => {
    throw new Error('QuotaExceededError');
  };
  const provider = new LocalStorageProvider(refusing);
  provider.setItem('k', 'v');
  assert.equal(provider.getItem('k'), 'v');
  provider.removeItem('k');
  assert.equal(provider.getItem('k'), null);
});

test('drafts are kept per user and conversation, and survive a new client over the same storage', async () => {
  const storage = new MemoryStorage();
  const first = await client(server, { storage });
  await first.connect(await server.token('draft-erin'));
  assert.equal(first.getTextMessageDraft(1, 'frank'), null);
  assert.equal(first.saveTextMessageDraft(1, 'frank', 'half a thought'), true);
  first.saveTextMessageDraft(ConversationType.GROUP, 'frank', 'another');
  await first.disconnect();

  const second = await client(server, { storage });
  await second.connect(await server.token('draft-erin'));
  assert.equal(second.getTextMessageDraft(1, 'frank'), 'half a thought');
  assert.equal(second.getTextMessageDraft(ConversationType.GROUP, 'frank'), 'another');
  const other = await client(server, { storage });
  await other.connect(await server.token('draft-gus'));
  assert.equal(other.getTextMessageDraft(1, 'frank'), null, 'per user');
  assert.equal(second.clearTextMessageDraft(1, 'frank'), true);
  assert.equal(second.getTextMessageDraft(1, 'frank'), null);
});
