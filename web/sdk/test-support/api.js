// The server's signed HTTP API (docs/protocol.md, "HTTP API"), as an app server calls it: the
// app key and secret come from `credentials.toml` in the server's data directory.

import { createHmac, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Reads a string value of `credentials.toml`.
 * @param {string} text
 * @param {string} name
 */
function tomlString(text, name) {
  const m = new RegExp(`^${name}\\s*=\\s*"([^"]*)"`, 'm').exec(text);
  if (!m) throw new Error(`credentials.toml has no ${name}`);
  return m[1];
}

/**
 * A signed request to the server's HTTP API; answers the status and the JSON body.
 * @param {{ url: string, dir: string }} server
 * @param {string} method
 * @param {string} path under `/api/v1`, for example `/groups`
 * @param {unknown} [body]
 * @returns {Promise<{ status: number, body: any }>}
 */
export async function api(server, method, path, body) {
  const text = await readFile(join(server.dir, 'credentials.toml'), 'utf8');
  const appKey = tomlString(text, 'app_key');
  const secret = tomlString(text, 'app_secret');
  const nonce = randomBytes(12).toString('hex');
  const timestamp = String(Date.now());
  /** @type {Record<string, string>} */
  const headers = {
    'App-Key': appKey,
    Nonce: nonce,
    Timestamp: timestamp,
    Signature: createHmac('sha256', secret).update(nonce + timestamp).digest('hex'),
  };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${server.url}/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}
