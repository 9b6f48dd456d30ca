// End-to-end encryption (docs/e2ee.md): JS devices on ts-mls talk among themselves, and with
// the Rust SDK (openmls) through the `tidings` CLI (`listen --e2ee`, `send --e2ee`), one to one
// and in a group where both commit.

import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { promisify } from 'node:util';

import { IDBKeyRange, indexedDB } from 'fake-indexeddb';

import { ConversationType, E2ee, IndexedDbE2eeStorage, MemoryE2eeStorage, MemoryStorage, safetyNumber } from '../src/index.js';
import { api } from '../test-support/api.js';
import { client, serverForFile } from '../test-support/server.js';
import { until } from '../test-support/wait.js';

const run = promisify(execFile);
const server = serverForFile(['--send-rate', '0']);
const PRIVATE = ConversationType.PRIVATE;
const GROUP = ConversationType.GROUP;

/**
 * A JS device: a client connected as `user` with `deviceId`, its E2ee (published), and what
 * its E2ee made of every message the client presented.
 * @param {string} user
 * @param {string} deviceId
 * @param {import('../src/e2ee.js').E2eeStorage | import('../src/storage.js').StorageProvider} [storage]
 * @param {boolean} [listen] give every message the client presents to the E2ee
 */
async function device(user, deviceId, storage = new MemoryE2eeStorage(), listen = true) {
  const c = await client(server, { deviceId });
  await c.connect(await server.token(user));
  const e2ee = await E2ee.open(c, { deviceId, storage });
  await e2ee.publish();
  /** @type {import('../src/e2ee.js').Received[]} */
  const got = [];
  /** @type {unknown[]} */
  const errors = [];
  /** @type {string[]} the object names of the messages the E2ee processed, in order */
  const processed = [];
  c.on('message', (m) => {
    if (!listen) return;
    e2ee.receive(m).then(
      (r) => {
        got.push(r);
        processed.push(m.objectName);
      },
      (e) => errors.push(e),
    );
  });
  /** The texts decrypted, in order. */
  const texts = () => got.flatMap((r) => (r.kind === 'message' && r.message.type === 'text' ? [r.message.content.text] : []));
  /** @param {string} text */
  const hasText = (text) => until(() => texts().includes(text), `${user}:${deviceId} to read "${text}" (read ${JSON.stringify(texts())}; errors ${errors.join('; ')})`);
  return { client: c, e2ee, got, errors, texts, hasText, storage, processed };
}

test('two JS devices talk encrypted both ways, agree on safety numbers, and keep their state', async () => {
  // Alice's state in a Web Storage-like provider, Bob's in IndexedDB (fake-indexeddb here).
  const alice = await device('e-alice', 'a1', new MemoryStorage());
  const bobStorage = new IndexedDbE2eeStorage({ name: 'bob-e2ee', indexedDB, IDBKeyRange });
  const bob = await device('e-bob', 'b1', bobStorage);

  const sent = await alice.e2ee.sendText(PRIVATE, 'e-bob', 'hello bob');
  assert.equal(sent.content.text, 'hello bob');
  await bob.hasText('hello bob');
  assert.ok(bob.got.some((r) => r.kind === 'joined'), 'bob joined from the Welcome');
  const message = bob.got.find((r) => r.kind === 'message');
  assert.equal(message?.kind === 'message' && message.message.senderDevice, 'a1');

  // What the server stored is ciphertext.
  const history = await bob.client.getHistoryMessages(PRIVATE, 'e-alice', { afterTime: 1, count: 100 });
  assert.ok(history.messages.length >= 2);
  for (const m of history.messages) {
    assert.equal(m.objectName, 'mls');
    assert.ok(!JSON.stringify(m.content).includes('hello bob'));
  }

  await bob.e2ee.sendText(PRIVATE, 'e-alice', 'hello alice');
  await alice.hasText('hello alice');

  // Safety numbers: each side sees the other's device as it sees itself.
  const seenByAlice = await alice.e2ee.members(PRIVATE, 'e-bob');
  const seenByBob = await bob.e2ee.members(PRIVATE, 'e-alice');
  assert.deepEqual(
    seenByAlice.map((m) => `${m.userId}:${m.deviceId}`).sort(),
    ['e-alice:a1', 'e-bob:b1'],
  );
  assert.deepEqual(seenByAlice, seenByBob);
  assert.equal(seenByAlice.find((m) => m.userId === 'e-bob')?.safetyNumber, bob.e2ee.safetyNumber());
  assert.equal(seenByBob.find((m) => m.userId === 'e-alice')?.safetyNumber, alice.e2ee.safetyNumber());
  assert.match(alice.e2ee.safetyNumber(), /^\d{5}( \d{5}){5}$/);
  assert.equal(safetyNumber(new Uint8Array()).split(' ')[0], '28312');
  assert.equal(await alice.e2ee.epoch(PRIVATE, 'e-bob'), await bob.e2ee.epoch(PRIVATE, 'e-alice'));

  // A message received again (history, a resync) answers what it answered the first time.
  const again = await bob.e2ee.receive(history.messages[history.messages.length - 1]);
  assert.equal(again.kind, 'message');

  // Both devices open their state again, on new connections.
  const epoch = await alice.e2ee.epoch(PRIVATE, 'e-bob');
  await alice.client.disconnect();
  await bob.client.disconnect();
  const alice2 = await device('e-alice', 'a1', alice.storage);
  const bob2 = await device('e-bob', 'b1', new IndexedDbE2eeStorage({ name: 'bob-e2ee', indexedDB, IDBKeyRange }));
  assert.equal(alice2.e2ee.safetyNumber(), alice.e2ee.safetyNumber());
  assert.equal(bob2.e2ee.safetyNumber(), bob.e2ee.safetyNumber());
  assert.equal(await alice2.e2ee.epoch(PRIVATE, 'e-bob'), epoch);
  await alice2.e2ee.sendText(PRIVATE, 'e-bob', 'after reopening');
  await bob2.hasText('after reopening');
  await bob2.e2ee.sendText(PRIVATE, 'e-alice', 'me too');
  await alice2.hasText('me too');
  assert.deepEqual(alice2.errors, []);
  assert.deepEqual(bob2.errors, []);
});

test('two JS devices that start the same group at once end in one group', async () => {
  const alice = await device('s-alice', 'a1');
  const bob = await device('s-bob', 'b1');
  await Promise.all([
    alice.e2ee.sendText(PRIVATE, 's-bob', 'from alice'),
    bob.e2ee.sendText(PRIVATE, 's-alice', 'from bob'),
  ]);
  await bob.hasText('from alice');
  await alice.hasText('from bob');
  assert.ok(alice.e2ee.conflicts() + bob.e2ee.conflicts() >= 1, 'one of the first commits lost');
  assert.equal(await alice.e2ee.epoch(PRIVATE, 's-bob'), await bob.e2ee.epoch(PRIVATE, 's-alice'));
});

test('a JS group: a new member is added, a member who left is removed and reads nothing after', async () => {
  const made = await api(server, 'POST', '/groups', { groupId: 'e-js', ownerId: 'j-alice', name: 'JS', memberIds: ['j-bob'] });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  const alice = await device('j-alice', 'a1');
  const bob = await device('j-bob', 'b1');
  const carol = await device('j-carol', 'c1');
  await alice.e2ee.sendText(GROUP, 'e-js', 'one');
  await bob.hasText('one');

  // The group notification makes Alice's next send look for new devices (no refreshDevices).
  const notices = () => alice.processed.filter((n) => n === 'tidings:group').length;
  const before = notices();
  const added = await api(server, 'POST', '/groups/e-js/members', { userIds: ['j-carol'] });
  assert.equal(added.status, 200, JSON.stringify(added.body));
  await until(() => notices() > before, "Alice's E2ee to take the group notification in");
  await alice.e2ee.sendText(GROUP, 'e-js', 'two');
  await carol.hasText('two');
  await bob.hasText('two');
  assert.ok(bob.got.some((r) => r.kind === 'changed' && r.added.includes('j-carol:c1')));

  const removed = await api(server, 'POST', '/groups/e-js/members/remove', { userIds: ['j-bob'] });
  assert.ok(removed.status === 200, JSON.stringify(removed.body));
  await carol.e2ee.sendText(GROUP, 'e-js', 'three');
  await alice.hasText('three');
  assert.deepEqual(
    (await alice.e2ee.members(GROUP, 'e-js')).map((m) => m.userId).sort(),
    ['j-alice', 'j-carol'],
  );
  assert.ok(!bob.texts().includes('three'));
});

test('a device whose key changed is reported (trust on first use), and a forged sender is unreadable', async () => {
  const alice = await device('k-alice', 'a1');
  const bob = await device('k-bob', 'b1');
  await alice.e2ee.sendText(PRIVATE, 'k-bob', 'first');
  await bob.hasText('first');

  // Bob's device loses its state and starts again under the same device id: a new key.
  await bob.client.disconnect();
  const reset = await device('k-bob', 'b1');
  assert.notEqual(reset.e2ee.safetyNumber(), bob.e2ee.safetyNumber());
  // A second device of Alice's, whose messages the test hands over itself.
  const quiet = await device('k-alice', 'a2', new MemoryE2eeStorage(), false);
  const made = await api(server, 'POST', '/groups', { groupId: 'e-tofu', ownerId: 'k-bob', name: 'TOFU', memberIds: ['k-alice'] });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  await reset.e2ee.sendText(GROUP, 'e-tofu', 'new key, who dis');
  await alice.hasText('new key, who dis');
  const joined = alice.got.find((r) => r.kind === 'joined' && r.keysChanged.length > 0);
  assert.deepEqual(joined?.kind === 'joined' && joined.keysChanged, ['k-bob:b1']);
  const seen = await alice.e2ee.members(GROUP, 'e-tofu');
  assert.equal(seen.find((m) => m.userId === 'k-bob')?.safetyNumber, reset.e2ee.safetyNumber());

  // A message whose MLS sender is not the user the server names is not taken.
  const history = await alice.client.getHistoryMessages(GROUP, 'e-tofu', { afterTime: 1, count: 100 });
  const last = history.messages[history.messages.length - 1];
  const r = await quiet.e2ee.receive({ ...last, senderUserId: 'k-mallory' });
  assert.deepEqual(r, { kind: 'unreadable', uid: last.messageUId, reason: "the MLS sender is not the message's sender" });
  assert.equal(await quiet.e2ee.epoch(GROUP, 'e-tofu'), await alice.e2ee.epoch(GROUP, 'e-tofu'));
});

// ------------------------------------------------------------------ with the Rust SDK

function binary() {
  const bin = process.env.TIDINGS_BIN;
  if (!bin) throw new Error('TIDINGS_BIN must name the tidings binary');
  return bin;
}

/** @type {Set<import('node:child_process').ChildProcess>} */
const children = new Set();
after(async () => {
  await Promise.all([...children].map(stop));
});

/** @param {import('node:child_process').ChildProcess} child */
async function stop(child) {
  children.delete(child);
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/**
 * `tidings listen --e2ee` as `user` on `deviceId`: its JSON lines, once it published its key
 * packages.
 * @param {string} user
 * @param {string} deviceId
 * @param {string} stateDir
 */
async function rustListener(user, deviceId, stateDir) {
  const token = await server.token(user);
  const child = spawn(
    binary(),
    ['listen', '--e2ee', '--server', server.url, '--token', token, '--device', deviceId, '--state-dir', stateDir],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } },
  );
  children.add(child);
  /** @type {any[]} */
  const lines = [];
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  createInterface({ input: /** @type {import('node:stream').Readable} */ (child.stdout) }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line));
    } catch {
      lines.push({ unparsed: line });
    }
  });
  const texts = () => lines.flatMap((l) => (l.encrypted && l.msgType === 'text' ? [l.content?.text] : []));
  await until(() => lines.some((l) => l.e2ee) || child.exitCode !== null, `${user}:${deviceId} to publish`, 60_000);
  assert.ok(lines[0]?.e2ee, `listen --e2ee's first line: ${JSON.stringify(lines)}\n${stderr}`);
  return {
    child,
    lines,
    texts,
    /** @param {string} text */
    hasText: (text) =>
      until(() => texts().includes(text), `${user}:${deviceId} (Rust) to print "${text}" (lines ${JSON.stringify(lines)}; stderr ${stderr})`, 60_000),
    e2ee: lines[0].e2ee,
    stop: () => stop(child),
  };
}

/**
 * `tidings send --e2ee` as `user` on `deviceId`: its answer.
 * @param {string} user
 * @param {string} deviceId
 * @param {string} stateDir
 * @param {string[]} to `['--to', USER]` or `['--group', GROUP]`
 * @param {string} text
 */
async function rustSend(user, deviceId, stateDir, to, text) {
  const token = await server.token(user);
  try {
    const { stdout } = await run(
      binary(),
      ['send', '--e2ee', '--server', server.url, '--token', token, '--device', deviceId, '--state-dir', stateDir, ...to, text],
      { env: { ...process.env, NO_COLOR: '1' } },
    );
    return JSON.parse(stdout.trim().split('\n').pop() ?? '{}');
  } catch (e) {
    const err = /** @type {any} */ (e);
    throw new Error(`tidings send --e2ee failed: ${err.stderr ?? err.message}`);
  }
}

test('a JS device and the Rust CLI talk encrypted both ways', async () => {
  const state = mkdtempSync(join(tmpdir(), 'tidings-e2ee-rust-'));
  const alice = await device('r-alice', 'js1');
  const bob = await rustListener('r-bob', 'rust1', state);
  assert.equal(bob.e2ee.identity, 'r-bob:rust1');

  // JS (ts-mls) starts the group, with the Rust device in it; Rust reads.
  await alice.e2ee.sendText(PRIVATE, 'r-bob', 'hello from JS');
  await bob.hasText('hello from JS');
  const fromJs = bob.lines.find((l) => l.encrypted);
  assert.equal(fromJs.senderId, 'r-alice');
  assert.equal(fromJs.senderDevice, 'js1');
  // Safety numbers: the JS side computes the Rust device's as the Rust side does.
  const members = await alice.e2ee.members(PRIVATE, 'r-bob');
  assert.equal(members.find((m) => m.deviceId === 'rust1')?.safetyNumber, bob.e2ee.safetyNumber);

  // A second Rust device of Bob's publishes; Alice's next send adds it.
  const second = await rustListener('r-bob', 'rust2', state);
  await alice.e2ee.refreshDevices(PRIVATE, 'r-bob');
  await alice.e2ee.sendText(PRIVATE, 'r-bob', 'to both of your devices');
  await second.hasText('to both of your devices');
  await bob.hasText('to both of your devices');
  await second.stop();

  // Rust (openmls) encrypts; JS reads.
  const answer = await rustSend('r-bob', 'rust2', state, ['--to', 'r-alice'], 'hello from Rust');
  assert.ok(answer.uid, JSON.stringify(answer));
  await alice.hasText('hello from Rust');
  const fromRust = alice.got.find((r) => r.kind === 'message' && r.message.content.text === 'hello from Rust');
  assert.equal(fromRust?.kind === 'message' && fromRust.message.senderDevice, 'rust2');
  assert.deepEqual(alice.errors, []);
  await bob.stop();
});

test('a group of a JS member and Rust members: both encrypt, and a Rust commit adds a JS device', async () => {
  const state = mkdtempSync(join(tmpdir(), 'tidings-e2ee-group-'));
  const made = await api(server, 'POST', '/groups', {
    groupId: 'e-mixed',
    ownerId: 'm-alice',
    name: 'Mixed',
    memberIds: ['m-bob', 'm-carol'],
  });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  const alice = await device('m-alice', 'js1');
  const bob = await rustListener('m-bob', 'rust1', state);
  const carol = await rustListener('m-carol', 'rust1', state);

  await alice.e2ee.sendText(GROUP, 'e-mixed', 'hello group');
  await bob.hasText('hello group');
  await carol.hasText('hello group');

  // A JS user joins the group; Carol's Rust send adds his device (an openmls commit with a
  // Welcome that ts-mls joins from), and Alice's JS device takes the commit in.
  const dave = await device('m-dave', 'js1');
  const added = await api(server, 'POST', '/groups/e-mixed/members', { userIds: ['m-dave'] });
  assert.equal(added.status, 200, JSON.stringify(added.body));
  await carol.stop();
  const answer = await rustSend('m-carol', 'rust1', state, ['--group', 'e-mixed'], 'hello from Rust carol');
  assert.ok(answer.uid, JSON.stringify(answer));
  await alice.hasText('hello from Rust carol');
  await dave.hasText('hello from Rust carol');
  await bob.hasText('hello from Rust carol');
  assert.ok(dave.got.some((r) => r.kind === 'joined'));
  assert.ok(alice.got.some((r) => r.kind === 'changed' && r.added.includes('m-dave:js1')));

  // And JS again, on the epoch Rust's commit made.
  await dave.e2ee.sendText(GROUP, 'e-mixed', 'hello from JS dave');
  await bob.hasText('hello from JS dave');
  await alice.hasText('hello from JS dave');
  assert.deepEqual(alice.errors, []);
  assert.deepEqual(dave.errors, []);
  await bob.stop();
});
