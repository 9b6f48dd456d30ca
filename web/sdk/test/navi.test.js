// Where a client connects, from the URLs it is given or the navigation lists: an `https://`
// service is reached over `wss://`, a plain one over `ws://`, each at the same host and port.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { naviUrl, navigationOf, nodeOf } from '../src/navi.js';

test('an https:// server is reached over wss://, and an http:// one over ws://', () => {
  assert.deepEqual(nodeOf('https://chat.example.com'), {
    ws: 'wss://chat.example.com/v1/ws',
    poll: 'https://chat.example.com/v1/poll',
    http: 'https://chat.example.com',
  });
  assert.deepEqual(nodeOf('http://127.0.0.1:9091/'), {
    ws: 'ws://127.0.0.1:9091/v1/ws',
    poll: 'http://127.0.0.1:9091/v1/poll',
    http: 'http://127.0.0.1:9091',
  });
  // Named by its WebSocket URL, a TLS node's HTTP endpoints are https://.
  assert.deepEqual(nodeOf({ ws: 'wss://chat.example.com:8443/v1/ws' }), {
    ws: 'wss://chat.example.com:8443/v1/ws',
    poll: 'https://chat.example.com:8443/v1/poll',
    http: 'https://chat.example.com:8443',
  });
});

test('the navigation URL keeps the scheme of the page or of the URL given', () => {
  // A page served over HTTPS passes its origin (`location.origin`), so navigation is HTTPS too.
  assert.equal(naviUrl('https://chat.example.com'), 'https://chat.example.com/navi');
  assert.equal(naviUrl('wss://chat.example.com/'), 'https://chat.example.com/navi');
  assert.equal(naviUrl('ws://127.0.0.1:9091'), 'http://127.0.0.1:9091/navi');
});

test('nodes a TLS server lists are used as listed', () => {
  const navigation = navigationOf(
    {
      code: 0,
      nodes: [{ ws: 'wss://a.example/v1/ws', poll: 'https://a.example/v1/poll', http: 'https://a.example' }],
    },
    0,
  );
  assert.equal(navigation.nodes[0].ws, 'wss://a.example/v1/ws');
  assert.equal(navigation.nodes[0].poll, 'https://a.example/v1/poll');
});
