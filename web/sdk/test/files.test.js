// Files: an upload with the session's token, and fresh expiring links to it: for the uploader,
// and for those who can see a message carrying the file.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { FileMessage } from '../src/index.js';
import { client, serverForFile } from '../test-support/server.js';
import { recorder } from '../test-support/wait.js';

const server = serverForFile();

/** @param {unknown} e */
const code = (e) => /** @type {any} */ (e).code;

test('files: an upload, and a fresh expiring link that downloads the same bytes', async () => {
  const c = await client(server);
  await c.connect(await server.token('file-hal'));
  const bytes = new TextEncoder().encode('col1,col2\n1,2\n');
  const token = await c.getFileToken(2);
  assert.equal(token.url, `${server.url}/v1/files`);
  assert.match(token.headers.Authorization, /^Bearer /);

  const upload = await c.uploadFile(bytes, { name: 'table.csv', type: 'text/csv' });
  assert.equal(upload.file.name, 'table.csv');
  assert.equal(upload.file.size, bytes.length);
  assert.equal(upload.file.kind, 'file');
  assert.ok(upload.expiresAt > Date.now() / 1000, 'the upload\'s own link expires');
  const link = await c.getFileUrl(upload, 60);
  assert.ok(link.expiresAt > Date.now() / 1000);
  assert.notEqual(link.url, upload.url);
  const res = await fetch(link.url);
  assert.equal(res.status, 200);
  assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
  const byId = await c.getFileUrl(upload.file.id);
  assert.equal((await fetch(byId.url)).status, 200);

  await assert.rejects(c.uploadFile('<html></html>', { name: 'x.html', type: 'text/html' }), (e) => code(e) === 42021);
});

test('files: the recipient gets a fresh link by naming the message, and not without it', async () => {
  const alice = await client(server);
  const bob = await client(server);
  await alice.connect(await server.token('file-alice'));
  await bob.connect(await server.token('file-bob'));
  const b = recorder(bob);
  const upload = await alice.uploadFile('the plan', { name: 'plan.txt', type: 'text/plain' });
  const content = new FileMessage({ fileUrl: upload.url, name: 'plan.txt', size: 8, type: 'text/plain' });
  await alice.sendMessage(1, 'file-bob', content);
  await b.messagesAtLeast(1);
  const message = b.messages[0];

  await assert.rejects(bob.getFileUrl(upload.file.id), (e) => code(e) === 42024);
  // The message itself, with the file named by the link its content holds.
  const fresh = await bob.getFileUrl(/** @type {any} */ (message.content).fileUrl, message, 120);
  assert.ok(fresh.expiresAt <= Date.now() / 1000 + 121);
  assert.equal(await (await fetch(fresh.url)).text(), 'the plan');
  // Or its place, with a callback.
  const place = { conversationType: 1, targetId: 'file-alice', seq: message.seq };
  const viaCallback = await new Promise((resolve, reject) => {
    bob.getFileUrl(upload, place, undefined, { onSuccess: resolve, onError: (_code, e) => reject(e) });
  });
  assert.equal((await fetch(/** @type {any} */ (viaCallback).url)).status, 200);
  // A message that does not carry the file gives nothing.
  await assert.rejects(bob.getFileUrl(upload, { ...place, seq: message.seq + 1 }), (e) => code(e) === 42024);
});
