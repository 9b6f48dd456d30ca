// Two users chat both ways, over each transport, through a real server.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  ConnectionStatus,
  FileMessage,
  ImageMessage,
  LocationMessage,
  MessageDirection,
  RichContentMessage,
  SentStatus,
  TextMessage,
  TransportType,
  VoiceMessage,
  registerMessageType,
} from '../src/index.js';
import { client, serverForFile } from '../test-support/server.js';
import { recorder, untilAsync } from '../test-support/wait.js';

const server = serverForFile(['--send-rate', '0']);

/** @param {string} url */
async function health(url) {
  const res = await fetch(`${url}/healthz`);
  return /** @type {{ sessions: number, pollSessions: number }} */ (await res.json());
}

for (const transport of /** @type {const} */ (['websocket', 'polling'])) {
  describe(`over ${transport}`, () => {
    test('two users chat both ways, in order, each message once', async () => {
      const alice = await client(server, { transport, deviceId: `alice-${transport}` });
      const bob = await client(server, { transport, deviceId: `bob-${transport}` });
      const a = recorder(alice);
      const b = recorder(bob);
      const peerA = `alice-${transport}`;
      const peerB = `bob-${transport}`;
      assert.equal(await alice.connect(await server.token(peerA)), peerA);
      assert.equal(await bob.connect(await server.token(peerB)), peerB);
      assert.equal(alice.getCurrentUserId(), peerA);
      assert.equal(alice.getCurrentConnectionStatus(), ConnectionStatus.CONNECTED);
      assert.equal(alice.transport, transport);
      assert.equal(
        bob.getTransportType(),
        transport === 'websocket' ? TransportType.WEBSOCKET : TransportType.XHR_POLLING,
      );
      assert.deepEqual(a.transports, [transport]);

      const sent = [];
      for (const text of ['one', 'two', 'three']) {
        sent.push(await alice.sendMessage(1, peerB, new TextMessage({ content: text })));
      }
      assert.deepEqual(
        sent.map((m) => m.seq),
        [1, 2, 3],
      );
      for (const m of sent) {
        assert.equal(m.sentStatus, SentStatus.SENT);
        assert.equal(m.messageUId.length, 26);
        assert.equal(m.messageDirection, MessageDirection.SEND);
        assert.ok(m.sentTime > 0);
      }
      await b.messagesAtLeast(3);
      assert.deepEqual(b.texts, ['one', 'two', 'three']);
      assert.deepEqual(
        b.messages.map((m) => m.messageUId),
        sent.map((m) => m.messageUId),
      );
      for (const m of b.messages) {
        assert.equal(m.senderUserId, peerA);
        assert.equal(m.targetId, peerA, 'a private conversation is named by the other user');
        assert.equal(m.messageDirection, MessageDirection.RECEIVE);
        assert.equal(m.messageType, 'TextMessage');
        assert.equal(m.offLineMessage, false);
      }

      await bob.sendMessage(1, peerA, new TextMessage({ content: 'hi alice' }));
      await bob.sendMessage(1, peerA, new TextMessage({ content: 'bye alice' }));
      await a.messagesAtLeast(2);
      assert.deepEqual(a.texts, ['hi alice', 'bye alice']);
      assert.deepEqual(
        a.messages.map((m) => m.seq),
        [4, 5],
        'both directions share the conversation seq',
      );

      // A sync now finds everything presented already: nothing comes twice.
      await bob.sync();
      await alice.sync();
      assert.equal(b.messages.length, 3);
      assert.equal(a.messages.length, 2);

      await alice.disconnect();
      await bob.disconnect();
      assert.equal(alice.getCurrentConnectionStatus(), ConnectionStatus.DISCONNECTED);
      // The goodbye ended both sessions on the server.
      await untilAsync(async () => {
        const h = await health(server.url);
        return h.sessions === 0 && h.pollSessions === 0;
      }, 'the sessions to end');
    });

    test('every built-in content type and an app-defined one arrive as their classes', async () => {
      const Poke = registerMessageType('PokeMessage', 'app:poke', { isCounted: false }, ['strength']);
      const alice = await client(server, { transport });
      const bob = await client(server, { transport });
      const b = recorder(bob);
      const peerA = `alice2-${transport}`;
      const peerB = `bob2-${transport}`;
      await alice.connect(await server.token(peerA));
      await bob.connect(await server.token(peerB));
      const contents = [
        new ImageMessage({ imageUri: 'https://img.example/1.png', content: 'dGh1bWI=' }),
        new FileMessage({ fileUrl: 'https://files.example/a.pdf', name: 'a.pdf', size: 1234, type: 'pdf' }),
        new VoiceMessage({ remoteUrl: 'https://voice.example/1.aac', duration: 7 }),
        new LocationMessage({ latitude: 31.23, longitude: 121.47, poi: 'The Bund' }),
        new RichContentMessage({ title: 'News', content: 'Something happened', url: 'https://news.example' }),
        new Poke({ strength: 3, ignored: true }),
      ];
      for (const c of contents) await alice.sendMessage(1, peerB, c);
      await b.messagesAtLeast(contents.length);
      const got = b.messages.map((m) => m.content);
      assert.deepEqual(
        b.messages.map((m) => [m.objectName, m.messageType]),
        [
          ['image', 'ImageMessage'],
          ['file', 'FileMessage'],
          ['voice', 'VoiceMessage'],
          ['location', 'LocationMessage'],
          ['rich', 'RichContentMessage'],
          ['app:poke', 'PokeMessage'],
        ],
      );
      assert.ok(got[0] instanceof ImageMessage);
      assert.equal(got[0].imageUri, 'https://img.example/1.png');
      assert.equal(got[0].content, 'dGh1bWI=');
      assert.ok(got[1] instanceof FileMessage);
      assert.deepEqual([got[1].fileUrl, got[1].name, got[1].size], ['https://files.example/a.pdf', 'a.pdf', 1234]);
      assert.ok(got[2] instanceof VoiceMessage);
      assert.equal(got[2].duration, 7);
      assert.ok(got[3] instanceof LocationMessage);
      assert.deepEqual([got[3].latitude, got[3].longitude, got[3].poi], [31.23, 121.47, 'The Bund']);
      assert.ok(got[4] instanceof RichContentMessage);
      assert.equal(got[4].title, 'News');
      assert.ok(got[5] instanceof Poke);
      assert.deepEqual(/** @type {any} */ (got[5]).fields, { strength: 3 }, 'only the registered fields travel');
      // The app type was sent uncounted: only the five built-in messages are unread.
      assert.equal(await bob.getUnreadCount(1, peerA), 5);
      await alice.disconnect();
      await bob.disconnect();
    });
  });
}

