// The server goes away and comes back: the client reports the close, reconnects by itself on
// its backoff schedule, and picks up where it was.

import assert from 'node:assert/strict';
import { after, afterEach, test } from 'node:test';

import { ConnectionStatus, ErrorCode, TextMessage } from '../src/index.js';
import { client, closeClients, startServer } from '../test-support/server.js';
import { recorder, until } from '../test-support/wait.js';

afterEach(closeClients);

/** @type {import('../test-support/server.js').TestServer[]} */
const servers = [];
after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

for (const transport of /** @type {const} */ (['websocket', 'polling'])) {
  test(`a server restart: CONNECTION_CLOSED, then back by itself, nothing lost (${transport})`, async () => {
    const server = await startServer();
    servers.push(server);
    const bob = await client(server, { transport, reconnectRates: [50, 200] });
    const b = recorder(bob);
    const alice = await client(server, { transport, reconnectRates: [50, 200] });
    await bob.connect(await server.token('restart-bob'));
    await alice.connect(await server.token('restart-alice'));
    await alice.sendMessage(1, 'restart-bob', new TextMessage({ content: 'before' }));
    await b.messagesAtLeast(1);

    await server.halt();
    // The server says goodbye with 41003 and asks clients to come back.
    await b.status(ConnectionStatus.CONNECTION_CLOSED);
    const closed = b.details.find((d) => d.status === ConnectionStatus.CONNECTION_CLOSED);
    assert.equal(closed?.detail.code, ErrorCode.SERVER_SHUTTING_DOWN);
    await until(() => b.statuses.includes(ConnectionStatus.NETWORK_UNAVAILABLE), 'attempts failing while it is down');

    await server.resume();
    await until(() => bob.stats.reconnects >= 1 && alice.stats.reconnects >= 1, 'both back');
    assert.equal(bob.getCurrentConnectionStatus(), ConnectionStatus.CONNECTED);
    assert.equal(bob.transport, transport);
    await alice.sendMessage(1, 'restart-bob', new TextMessage({ content: 'after' }));
    await b.messagesAtLeast(2);
    await bob.sync();
    assert.deepEqual(b.texts, ['before', 'after']);
  });
}
