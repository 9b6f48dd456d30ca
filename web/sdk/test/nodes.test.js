// Several nodes: the client asks the navigation for the nodes, tries every one, and keeps the
// first whose CONNECT succeeds. (The nodes of one service share their keys, so a token one
// refuses, every one refuses: a refusal ends the attempt rather than moving on.)

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';

import { TextMessage } from '../src/index.js';
import { client, closeClients, startServer } from '../test-support/server.js';
import { recorder } from '../test-support/wait.js';

/** A node that takes connections and never answers; closed by the returned function. */
async function silentNode() {
  /** @type {import('node:net').Socket[]} */
  const held = [];
  const s = createServer((socket) => held.push(socket));
  await new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(undefined)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (s.address());
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      for (const socket of held) socket.destroy();
      s.close();
    },
  };
}

/** An address nothing listens on. */
async function deadAddress() {
  const s = createServer();
  await new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(undefined)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (s.address());
  await new Promise((resolve) => s.close(() => resolve(undefined)));
  return `http://127.0.0.1:${port}`;
}

test('of the nodes the navigation lists, the first that completes CONNECT is kept', async () => {
  // The navigation, served by one node, lists a dead address, a node that never answers, then
  // the node that works.
  const home = await startServer();
  const dead = await deadAddress();
  const silent = await silentNode();
  const navi = await startServer(['--public-urls', `${dead},${silent.url},${home.url}`]);
  try {
    const listed = await (await fetch(`${navi.url}/navi`)).json();
    assert.deepEqual(
      listed.nodes.map((/** @type {{ http: string }} */ n) => n.http),
      [dead, silent.url, home.url],
    );
    const alice = await client(navi, { navi: navi.url, reconnectRates: [10] });
    assert.equal(await alice.connect(await home.token('alice')), 'alice');
    // Connected to `home`: a user there gets alice's message, and answers it.
    const bob = await client(home);
    const b = recorder(bob);
    const a = recorder(alice);
    await bob.connect(await home.token('bob'));
    await alice.sendMessage(1, 'bob', new TextMessage({ content: 'which node is this?' }));
    await b.messagesAtLeast(1);
    assert.deepEqual(b.texts, ['which node is this?']);
    await bob.sendMessage(1, 'alice', new TextMessage({ content: 'home' }));
    await a.messagesAtLeast(1);
    assert.deepEqual(a.texts, ['home']);
  } finally {
    await closeClients();
    silent.close();
    await Promise.all([home.stop(), navi.stop()]);
  }
});
