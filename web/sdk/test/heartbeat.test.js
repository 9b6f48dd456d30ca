// Heartbeats: the client keeps the interval the CONNACK gives, so the server, which drops a
// connection silent for three intervals (41001), never drops an idle client.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConnectionStatus, TextMessage } from '../src/index.js';
import { client, serverForFile } from '../test-support/server.js';
import { recorder } from '../test-support/wait.js';

const server = serverForFile(['--heartbeat-ms', '200']);

for (const transport of /** @type {const} */ (['websocket', 'polling'])) {
  test(`an idle client over ${transport} stays connected through many heartbeat intervals`, async () => {
    const alice = await client(server, { transport, pollWaitMs: 150 });
    const a = recorder(alice);
    await alice.connect(await server.token(`hb-${transport}-alice`));
    // Ten intervals with nothing to say: a client that sent no heartbeats would have been
    // dropped three times over.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    assert.equal(alice.getCurrentConnectionStatus(), ConnectionStatus.CONNECTED);
    // Nothing changed after it connected.
    const since = a.statuses.slice(a.statuses.indexOf(ConnectionStatus.CONNECTED) + 1);
    assert.deepEqual(since, [], `statuses: ${a.statuses}`);
    assert.equal(alice.stats.reconnects, 0);
    // And the connection still carries messages.
    const sent = await alice.sendMessage(1, `hb-${transport}-bob`, new TextMessage({ content: 'still here' }));
    assert.equal(sent.seq, 1);
  });
}
