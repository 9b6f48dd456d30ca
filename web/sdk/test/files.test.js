// Files: an upload with the session's token, and fresh expiring links to it.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { client, serverForFile } from '../test-support/server.js';

const server = serverForFile();

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
  const link = await c.getFileUrl(upload, 60);
  assert.ok(link.expiresAt > Date.now() / 1000);
  assert.notEqual(link.url, upload.url);
  const res = await fetch(link.url);
  assert.equal(res.status, 200);
  assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
  const byId = await c.getFileUrl(upload.file.id);
  assert.equal((await fetch(byId.url)).status, 200);

  await assert.rejects(c.uploadFile('<html></html>', { name: 'x.html', type: 'text/html' }), (e) => /** @type {any} */ (e).code === 42021);
});
