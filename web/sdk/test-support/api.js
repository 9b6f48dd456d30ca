// The server's signed HTTP API (docs/protocol.md, "HTTP API"), as an app server calls it: the
// app key and secret come from `credentials.toml` in the server's data directory.

import { createHash, createHmac, randomBytes } from 'node:crypto';
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
 * The `Signature` of a request (docs/protocol.md, "HTTP API"): HMAC-SHA256 keyed with the app
 * secret over the nonce, the timestamp, the method, the path and query as sent, and the hex
 * SHA-256 of the body, joined by newlines.
 * @param {string} secret
 * @param {string} nonce
 * @param {string} timestamp
 * @param {string} method
 * @param {URL} url
 * @param {string} body the bytes sent, as text; empty for none
 */
export function signRequest(secret, nonce, timestamp, method, url, body) {
  // The request target fetch sends: the serialised URL's path and query, without a fragment.
  const target = url.href.slice(url.origin.length).split('#')[0];
  const bodyHash = createHash('sha256').update(body).digest('hex');
  return createHmac('sha256', secret)
    .update([nonce, timestamp, method.toUpperCase(), target, bodyHash].join('\n'))
    .digest('hex');
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
  const url = new URL(`${server.url}/api/v1${path}`);
  const payload = body === undefined ? '' : JSON.stringify(body);
  /** @type {Record<string, string>} */
  const headers = {
    'App-Key': appKey,
    Nonce: nonce,
    Timestamp: timestamp,
    Signature: signRequest(secret, nonce, timestamp, method, url, payload),
  };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(url, {
    method: method.toUpperCase(),
    headers,
    body: body === undefined ? undefined : payload,
  });
  return { status: res.status, body: await res.json() };
}
