// Refusals reach the caller as rejected Promises carrying the server's code (named in
// ErrorCode), and the connection carries on.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ConnectionStatus,
  ErrorCode,
  SentStatus,
  TextMessage,
  TidingsError,
  registerMessageType,
} from '../src/index.js';
import { client, serverForFile } from '../test-support/server.js';
import { recorder } from '../test-support/wait.js';

const server = serverForFile(['--send-rate', '1', '--send-burst', '2']);

/**
 * @param {Promise<unknown>} p
 * @param {number} code
 */
async function rejectsWith(p, code) {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof TidingsError, String(e));
    assert.equal(e.code, code, `${e.code} ${e.message}`);
    return true;
  });
}

for (const transport of /** @type {const} */ (['websocket', 'polling'])) {
  test(`a refused send rejects with the server's code, and the client goes on (${transport})`, async () => {
    const alice = await client(server, { transport });
    const a = recorder(alice);
    await alice.connect(await server.token(`refuse-alice-${transport}`));

    /** @type {import('../src/types.js').Message[]} */
    const before = [];
    const blank = alice.sendMessage(1, 'someone', new TextMessage({ content: '   ' }), {
      onBefore: (m) => before.push(m),
    });
    await rejectsWith(blank, ErrorCode.CONTENT_EMPTY);
    assert.equal(before.length, 1);
    assert.equal(before[0].sentStatus, SentStatus.FAILED, 'the local message is marked failed');

    await rejectsWith(alice.sendMessage(1, 'not a user id!', new TextMessage({ content: 'hi' })), ErrorCode.INVALID_TARGET_ID);

    // Callbacks, seed style, get the code too.
    const code = await new Promise((resolve) => {
      alice.sendMessage(9, 'someone', new TextMessage({ content: 'hi' }), {
        onSuccess: () => resolve(-1),
        onError: (c) => resolve(c),
      });
    });
    assert.equal(code, ErrorCode.CONVERSATION_TYPE_UNSUPPORTED);

    // The send limit (1 a second, a burst of 2): the seed's SEND_FREQUENCY_TOO_FAST.
    const burst = await Promise.allSettled(
      [1, 2, 3, 4].map((i) => alice.sendMessage(1, 'someone', new TextMessage({ content: `burst ${i}` }))),
    );
    const refused = burst.filter((r) => r.status === 'rejected');
    assert.ok(refused.length >= 1, 'at least one send beyond the burst is refused');
    for (const r of refused) {
      assert.equal(/** @type {any} */ (r).reason.code, ErrorCode.SEND_FREQUENCY_TOO_FAST);
    }

    assert.equal(alice.getCurrentConnectionStatus(), ConnectionStatus.CONNECTED);
    assert.deepEqual(a.statuses.filter((s) => s !== ConnectionStatus.CONNECTING && s >= 200), [201, 202]);
    await alice.disconnect();
  });
}

test('a bad token: connect rejects with 31004, onTokenIncorrect is called, no reconnecting', async () => {
  const alice = await client(server);
  const a = recorder(alice);
  let incorrect = 0;
  const p = alice.connect('not-a-token', { onTokenIncorrect: () => (incorrect += 1) });
  await rejectsWith(p, ErrorCode.RC_CONN_USER_OR_PASSWD_ERROR);
  assert.equal(incorrect, 1);
  assert.equal(alice.getCurrentConnectionStatus(), ErrorCode.RC_CONN_USER_OR_PASSWD_ERROR);
  assert.equal(a.statuses.at(-1), ErrorCode.RC_CONN_USER_OR_PASSWD_ERROR);
});

test('the navigation endpoint unreachable: connect rejects with the seed’s navigation code', async () => {
  const alice = await client(server, { navi: 'http://127.0.0.1:1' });
  const a = recorder(alice);
  await rejectsWith(alice.connect(await server.token('navi-alice')), ErrorCode.RC_HTTP_SEND_FAIL);
  assert.ok(a.statuses.includes(ConnectionStatus.RESPONSE_NAVI_ERROR));
});

test('app-defined type names the server would refuse are refused at registration', () => {
  assert.throws(() => registerMessageType('X', 'tidings:fake'), TypeError);
  assert.throws(() => registerMessageType('X', 'has space'), TypeError);
  assert.throws(() => registerMessageType('X', 'text'), TypeError);
});
