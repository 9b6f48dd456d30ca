// Delivery faults on a real connection: a message that arrives twice (by sync and by push, or
// pushed again), one that arrives above a gap, one whose push is lost, a send whose answer is
// lost. The client presents each message once, in order.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConnectionStatus, TextMessage } from '../src/index.js';
import { client, serverForFile } from '../test-support/server.js';
import { controlledWebSocket } from '../test-support/sockets.js';
import { recorder, until } from '../test-support/wait.js';

// A short acknowledgement timeout, so unacknowledged pushes are resent within the tests.
const server = serverForFile(['--send-rate', '0', '--ack-timeout-ms', '300']);

/**
 * A connected pair: alice on a plain WebSocket, bob on a controlled one.
 * @param {string} name
 * @param {import('../src/client.js').InitOptions} [bobOptions]
 */
async function pair(name, bobOptions = {}) {
  const alice = await client(server);
  await alice.connect(await server.token(`${name}-alice`));
  const { WebSocket, control } = controlledWebSocket();
  const bob = await client(server, { WebSocket, ...bobOptions });
  const b = recorder(bob);
  await bob.connect(await server.token(`${name}-bob`));
  /** @param {string} text */
  const send = (text) => alice.sendMessage(1, `${name}-bob`, new TextMessage({ content: text }));
  return { alice, bob, b, control, send };
}

/** @param {any} frame */
const textOf = (frame) => {
  const m = frame.publish?.message;
  return m ? JSON.parse(m.content).text : undefined;
};

test('a message delivered by sync and by push is presented once', async () => {
  const { alice, bob, b, control, send } = await pair('twice');
  control.hold();
  await send('m1');
  // The push of m1 reached bob's socket and is held there; a sync from bob's cursor, asked
  // now, returns m1 as well.
  await until(() => control.held.length >= 1, 'the push');
  const synced = bob.sync();
  await until(() => control.held.length >= 2, 'the push and the sync answer');
  control.release();
  await synced;
  await b.messagesAtLeast(1);
  await bob.sync();
  assert.deepEqual(b.texts, ['m1']);
  assert.ok(bob.stats.duplicatesDropped >= 1, `dropped ${bob.stats.duplicatesDropped}`);
  await alice.disconnect();
  await bob.disconnect();
});

test('a push above a gap is held until sync fills the gap, then both come in order', async () => {
  const { alice, bob, b, control, send } = await pair('gap');
  // m2's push is lost (its resends too): bob first sees m3, above the gap.
  control.drop = (frame) => textOf(frame) === 'm2';
  await send('m1');
  await b.messagesAtLeast(1);
  await send('m2');
  await send('m3');
  await b.messagesAtLeast(3);
  assert.deepEqual(b.texts, ['m1', 'm2', 'm3']);
  assert.deepEqual(
    b.messages.map((m) => m.inboxSeq),
    [1, 2, 3],
  );
  assert.ok(b.messages[1].offLineMessage, 'm2 came by the sync the gap started');
  const syncs = control.sent.filter((f) => f.query?.sync);
  assert.ok(syncs.length >= 1, 'the gap started a sync');
  await alice.disconnect();
  await bob.disconnect();
});

test('a push resent with dup (acknowledgement late) is presented once', async () => {
  const { alice, bob, b, send } = await pair('dup', { autoAck: false });
  await send('only once');
  await b.messagesAtLeast(1);
  // Unacknowledged, the server resends it after its 300 ms timeout, flagged dup.
  await until(() => bob.stats.dupFlagged >= 1, 'a resend flagged dup');
  assert.deepEqual(b.texts, ['only once']);
  bob.acknowledge(b.messages[0].inboxSeq);
  await alice.disconnect();
  await bob.disconnect();
});

test('a push lost for good comes by the periodic sync', async () => {
  const { alice, bob, b, control, send } = await pair('periodic', { syncIntervalMs: 200 });
  control.drop = (frame) => textOf(frame) === 'lost';
  await send('lost');
  // No later message shows the gap: only the periodic pull finds it.
  await b.messagesAtLeast(1);
  assert.deepEqual(b.texts, ['lost']);
  assert.equal(b.messages[0].offLineMessage, true);
  await alice.disconnect();
  await bob.disconnect();
});

test('a send whose answer was lost is resent after the reconnect with its id, stored once', async () => {
  const { WebSocket, control } = controlledWebSocket();
  const alice = await client(server, { WebSocket, reconnectRates: [50] });
  const a = recorder(alice);
  await alice.connect(await server.token('resend-alice'));
  const bob = await client(server);
  const b = recorder(bob);
  await bob.connect(await server.token('resend-bob'));

  // The server commits the message, and its PUBACK is lost with the connection.
  control.drop = (frame) => Boolean(frame.puback);
  const sending = alice.sendMessage(1, 'resend-bob', new TextMessage({ content: 'exactly once' }));
  await b.messagesAtLeast(1);
  control.drop = null;
  control.cut();

  const sent = await sending;
  assert.equal(sent.messageUId, b.messages[0].messageUId, 'the first commit’s answer');
  const publishes = control.sent.filter((f) => f.publish?.send);
  assert.equal(publishes.length, 2);
  assert.equal(publishes[1].publish.send.clientMsgId, publishes[0].publish.send.clientMsgId);
  assert.equal(publishes[1].dup, true);
  assert.equal(alice.stats.resentPublishes, 1);
  assert.equal(alice.stats.reconnects, 1);
  assert.ok(a.statuses.includes(ConnectionStatus.NETWORK_UNAVAILABLE), `statuses: ${a.statuses}`);
  assert.equal(alice.getCurrentConnectionStatus(), ConnectionStatus.CONNECTED);

  await bob.sync();
  assert.deepEqual(b.texts, ['exactly once']);
  const history = await bob.getHistoryMessages(1, 'resend-alice');
  assert.equal(history.messages.length, 1, 'stored once');
  await alice.disconnect();
  await bob.disconnect();
});
