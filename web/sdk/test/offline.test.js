// Messages sent while a user was away arrive by the pull after connect: in order, once, and
// acknowledged, so the next connection of the device does not get them again.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TextMessage } from '../src/index.js';
import { client, serverForFile } from '../test-support/server.js';
import { recorder, untilAsync } from '../test-support/wait.js';

const server = serverForFile(['--send-rate', '0']);

/**
 * @param {import('../src/index.js').TidingsClient} sender
 * @param {string} to
 * @param {string[]} texts
 */
async function sendAll(sender, to, texts) {
  for (const text of texts) await sender.sendMessage(1, to, new TextMessage({ content: text }));
}

for (const transport of /** @type {const} */ (['websocket', 'polling'])) {
  test(`offline messages come by the pull after connect, in order, once (${transport})`, async () => {
    const alice = await client(server, { transport });
    await alice.connect(await server.token(`off-alice-${transport}`));
    const bobName = `off-bob-${transport}`;
    const bobToken = await server.token(bobName);

    // Bob's device was here once, then left.
    const first = await client(server, { transport, deviceId: 'bob-laptop' });
    await first.connect(bobToken);
    await first.disconnect();

    const texts = Array.from({ length: 7 }, (_, i) => `while away ${i + 1}`);
    await sendAll(alice, bobName, texts);

    // A new page on the same device: small sync pages, so the pull takes several.
    const bob = await client(server, { transport, deviceId: 'bob-laptop', syncPageSize: 3 });
    const b = recorder(bob);
    await bob.connect(bobToken);
    await b.messagesAtLeast(texts.length);
    assert.deepEqual(b.texts, texts);
    assert.ok(b.messages.every((m) => m.offLineMessage), 'they came by sync');
    assert.deepEqual(
      b.messages.map((m) => m.inboxSeq),
      [1, 2, 3, 4, 5, 6, 7],
    );
    assert.equal(bob.cursor, 7);
    assert.equal(await bob.getUnreadCount(1, `off-alice-${transport}`), 7);

    // Pushed from now on, and nothing of the pull comes again.
    await sendAll(alice, bobName, ['now online']);
    await b.messagesAtLeast(texts.length + 1);
    assert.equal(b.messages.at(-1)?.offLineMessage, false);
    await bob.sync();
    assert.equal(b.messages.length, texts.length + 1);
    await bob.disconnect();

    // The acknowledgements reached the server. It stores a device's cursor when the session
    // ends, behind the goodbye, so ask (without acknowledging anything) until it has.
    await untilAsync(async () => {
      const probe = await client(server, { transport, deviceId: 'bob-laptop', autoAck: false });
      await probe.connect(bobToken);
      // Right after connect, before any sync answer: the CONNACK's cursor.
      const stored = probe.cursor;
      await probe.disconnect();
      return stored === 8;
    }, 'the device cursor 8 on the server');
    // So the device's next page, with a fresh storage, gets nothing old.
    const again = await client(server, { transport, deviceId: 'bob-laptop' });
    const g = recorder(again);
    await again.connect(bobToken);
    await again.sync();
    assert.deepEqual(g.messages, []);
    assert.equal(again.cursor, 8);
    await again.disconnect();
    await alice.disconnect();
  });
}
