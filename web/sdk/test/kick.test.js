// Another login of the same device, or of the same user under the single-device policy, takes
// over: the old client reports KICKED_OFFLINE_BY_OTHER_CLIENT and stays offline.

import assert from 'node:assert/strict';
import { after, afterEach, test } from 'node:test';

import { ConnectionStatus, ErrorCode, TextMessage } from '../src/index.js';
import { client, closeClients, startServer } from '../test-support/server.js';
import { recorder } from '../test-support/wait.js';

afterEach(closeClients);

/** @type {import('../test-support/server.js').TestServer[]} */
const servers = [];
after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

/**
 * Connects `first`, then `second` as the same user; checks that `first` was kicked for good
 * and `second` works.
 * @param {import('../test-support/server.js').TestServer} server
 * @param {'websocket' | 'polling'} transport
 * @param {string} firstDevice
 * @param {string} secondDevice
 */
async function kicked(server, transport, firstDevice, secondDevice) {
  const token = await server.token('kick-bob');
  const first = await client(server, { transport, deviceId: firstDevice });
  const f = recorder(first);
  await first.connect(token);
  const second = await client(server, { transport, deviceId: secondDevice });
  await second.connect(token);

  await f.status(ConnectionStatus.KICKED_OFFLINE_BY_OTHER_CLIENT);
  const kick = f.details.find((d) => d.status === ConnectionStatus.KICKED_OFFLINE_BY_OTHER_CLIENT);
  assert.equal(kick?.detail.code, ErrorCode.RC_DISCONN_KICK);
  assert.equal(first.getCurrentConnectionStatus(), ConnectionStatus.KICKED_OFFLINE_BY_OTHER_CLIENT);
  // Not reconnecting: a send has nowhere to wait.
  await assert.rejects(first.sendMessage(1, 'kick-alice', new TextMessage({ content: 'x' })), (e) => {
    assert.equal(/** @type {any} */ (e).code, ErrorCode.RC_NET_CHANNEL_INVALID);
    return true;
  });
  assert.ok(!f.statuses.slice(f.statuses.indexOf(ConnectionStatus.KICKED_OFFLINE_BY_OTHER_CLIENT)).includes(ConnectionStatus.CONNECTING));

  const sent = await second.sendMessage(1, 'kick-alice', new TextMessage({ content: 'still here' }));
  assert.equal(sent.seq, 1);
  await second.disconnect();
}

for (const transport of /** @type {const} */ (['websocket', 'polling'])) {
  test(`the same device connecting again kicks the first (${transport})`, async () => {
    const server = await startServer();
    servers.push(server);
    await kicked(server, transport, 'tab', 'tab');
  });
}

test('the single-device policy: a second device kicks the first', async () => {
  const server = await startServer(['--device-policy', 'single']);
  servers.push(server);
  await kicked(server, 'websocket', 'phone', 'laptop');
});
