// WebSocket unavailable: the client falls back to long-polling, says so, and keeps working.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConnectionStatus, ErrorCode, TextMessage, TransportType } from '../src/index.js';
import { client, serverForFile } from '../test-support/server.js';
import { WebSocket, failingWebSocket } from '../test-support/sockets.js';
import { recorder } from '../test-support/wait.js';

const server = serverForFile();

/**
 * Chats both ways between `alice` (as given) and a WebSocket bob; answers what bob got.
 * @param {import('../src/index.js').TidingsClient} alice
 * @param {string} name
 */
async function chat(alice, name) {
  const bob = await client(server, { WebSocket });
  const a = recorder(alice);
  const b = recorder(bob);
  await bob.connect(await server.token(`${name}-bob`));
  const sent = await alice.sendMessage(1, `${name}-bob`, new TextMessage({ content: `hello from ${name}` }));
  assert.equal(sent.seq, 1);
  await b.messagesAtLeast(1);
  assert.deepEqual(b.texts, [`hello from ${name}`]);
  await bob.sendMessage(1, `${name}-alice`, new TextMessage({ content: `hello back, ${name}` }));
  await a.messagesAtLeast(1);
  assert.deepEqual(a.texts, [`hello back, ${name}`]);
  await bob.disconnect();
}

test('a WebSocket that never opens: two attempts, then long-polling, reported', async () => {
  const { WebSocket: Failing, counter } = failingWebSocket();
  const alice = await client(server, { WebSocket: Failing, reconnectRates: [10] });
  const a = recorder(alice);
  assert.equal(alice.transport, 'websocket');
  assert.equal(await alice.connect(await server.token('fail-alice')), 'fail-alice');
  assert.equal(counter.attempts, 2, 'websocketAttempts (2) WebSocket attempts before falling back');
  assert.ok(a.statuses.includes(ConnectionStatus.WEBSOCKET_UNAVAILABLE), `statuses: ${a.statuses}`);
  assert.equal(a.statuses.at(-1), ConnectionStatus.CONNECTED);
  assert.equal(alice.transport, 'polling');
  assert.equal(alice.getTransportType(), TransportType.XHR_POLLING);
  assert.deepEqual(a.transports, ['polling', 'polling'], 'the switch, then the connection');
  await chat(alice, 'fail');
  await alice.disconnect();
});

test('a wrong WebSocket URL: falls back to the node’s long-poll endpoint', async () => {
  const alice = await client(server, {
    navi: undefined,
    // Port 1 refuses connections: the WebSocket fails, the long-poll URL is the real one.
    servers: [{ ws: 'ws://127.0.0.1:1/v1/ws', poll: `${server.url}/v1/poll`, http: server.url }],
    reconnectRates: [10],
  });
  const a = recorder(alice);
  await alice.connect(await server.token('wrong-alice'));
  assert.ok(a.statuses.includes(ConnectionStatus.WEBSOCKET_UNAVAILABLE));
  assert.equal(alice.getTransportType(), TransportType.XHR_POLLING);
  await chat(alice, 'wrong');
  await alice.disconnect();
});

test('no WebSocket at all: long-polling from the start, reported', async () => {
  const alice = await client(server, { WebSocket: null });
  const a = recorder(alice);
  await alice.connect(await server.token('none-alice'));
  assert.equal(a.statuses[0], ConnectionStatus.WEBSOCKET_UNAVAILABLE);
  assert.equal(alice.transport, 'polling');
  await chat(alice, 'none');
  await alice.disconnect();
});

test('WebSocket forced: no fallback, connect rejects', async () => {
  const { WebSocket: Failing, counter } = failingWebSocket();
  const alice = await client(server, { WebSocket: Failing, transport: 'websocket' });
  const a = recorder(alice);
  await assert.rejects(alice.connect(await server.token('forced-alice')), (e) => {
    assert.equal(/** @type {any} */ (e).code, ErrorCode.RC_SOCKET_NOT_CREATED);
    return true;
  });
  assert.equal(counter.attempts, 1);
  assert.equal(alice.transport, 'websocket');
  assert.ok(!a.statuses.includes(ConnectionStatus.WEBSOCKET_UNAVAILABLE));
  assert.equal(alice.getCurrentConnectionStatus(), ConnectionStatus.NETWORK_UNAVAILABLE);
});
