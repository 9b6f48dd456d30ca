// Native push tokens through the browser SDK (hybrid apps pass the token of their native shell):
// registered for the device, moved, refused for a provider the server does not serve, and
// removed; checked against what the server keeps, through its HTTP API.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { ErrorCode } from '../src/index.js';
import { api } from '../test-support/api.js';
import { client, serverForFile } from '../test-support/server.js';

// FCM is configured with a service account whose key is the push fakes' test key; nothing is
// sent in these tests, so its token endpoint is never reached.
const files = mkdtempSync(join(tmpdir(), 'tidings-fcm-'));
const account = join(files, 'service-account.json');
writeFileSync(
  account,
  JSON.stringify({
    type: 'service_account',
    project_id: 'tidings-test',
    client_email: 'push@tidings-test.iam.gserviceaccount.com',
    private_key: readFileSync(
      new URL('../../../crates/push-fakes/keys/fcm-test-account.key.pem', import.meta.url),
      'utf8',
    ),
    token_uri: 'http://127.0.0.1:9/token',
  }),
);
const server = serverForFile(['--send-rate', '0', '--push-fcm-credentials', account]);

/** @param {string} user */
const tokensOf = async (user) => (await api(server, 'GET', `/users/${user}/push-tokens`)).body.tokens;

test('a native token registers for the device, moves, and is removed', async () => {
  const phone = await client(server, { deviceId: 'hybrid-phone' });
  await phone.connect(await server.token('pt-alice'));
  const token = { provider: /** @type {const} */ ('fcm'), token: 'dGVzdA:APA91b-x', appId: 'com.example.chat', locale: 'en-GB' };
  assert.equal(await phone.registerPushToken(token), true);
  assert.deepEqual(await tokensOf('pt-alice'), [
    { provider: 'fcm', token: token.token, deviceId: 'hybrid-phone', appId: 'com.example.chat', sandbox: false, locale: 'en-GB' },
  ]);
  assert.equal(await phone.setAppState(true), true);
  assert.equal(await phone.setAppState(false), true);

  // The same token, signed in as another user on the same phone, is theirs now.
  const other = await client(server, { deviceId: 'hybrid-phone' });
  await other.connect(await server.token('pt-bob'));
  await other.registerPushToken(token);
  assert.deepEqual(await tokensOf('pt-alice'), []);
  assert.equal((await tokensOf('pt-bob')).length, 1);

  await assert.rejects(
    other.registerPushToken({ provider: 'apns', token: 'ab'.repeat(32) }),
    (e) => /** @type {any} */ (e).code === ErrorCode.PUSH_DISABLED,
    'APNs is not configured',
  );
  await assert.rejects(
    other.registerPushToken({ provider: /** @type {any} */ ('gcm'), token: 'x' }),
    (e) => /** @type {any} */ (e).code === ErrorCode.INVALID_PUSH_SUBSCRIPTION,
  );
  assert.equal(await other.unregisterPushToken('fcm', token.token), true);
  assert.deepEqual(await tokensOf('pt-bob'), []);
});

test("seed 004's sendMessage sends its pushData for the message's notifications", async () => {
  const { RongIMClient, TextMessage: RongText, ConversationType } = await import('../src/rong.js');
  const { MemoryStorage } = await import('../src/index.js');
  const { controlledWebSocket } = await import('../test-support/sockets.js');
  const { WebSocket, control } = controlledWebSocket();
  const rong = new RongIMClient().init('appkey', {
    navi: server.url,
    WebSocket,
    storage: new MemoryStorage(),
    messageStore: /** @type {const} */ ('memory'),
  });
  const token = await server.token('pd-alice');
  try {
    await new Promise((resolve, reject) => {
      rong.connect(token, {
        onSuccess: resolve,
        onTokenIncorrect: () => reject(new Error('token incorrect')),
        onError: (/** @type {number} */ code) => reject(new Error(`connect failed: ${code}`)),
      });
    });
    await new Promise((resolve, reject) => {
      rong.sendMessage(
        ConversationType.PRIVATE,
        'pd-bob',
        new RongText({ content: 'hi' }),
        { onSuccess: resolve, onError: (/** @type {number} */ code) => reject(new Error(`send failed: ${code}`)) },
        false,
        'Alice: hi',
        '{"screen":"chat"}',
      );
    });
    const send = control.sent.find((f) => f.publish?.send)?.publish.send;
    assert.equal(send?.pushText, 'Alice: hi');
    assert.equal(send?.pushData, '{"screen":"chat"}');
  } finally {
    await rong.disconnect();
  }
});
