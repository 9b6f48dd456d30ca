// Navigation: where to connect. Either `GET /navi` (docs/protocol.md, "Navigation"), or the
// servers the application names.

import { ErrorCode, TidingsError } from './codes.js';
import { errorText } from './transport.js';

/**
 * @typedef {import('./transport.js').Node} Node
 * @typedef {object} Navigation
 * @property {Node[]} nodes
 * @property {number} [heartbeatMs]
 * @property {number} [pollWaitMs]
 * @property {number} [maxContentBytes]
 * @property {number} [serverTime] the server's clock when it answered (ms)
 * @property {number} [receivedAt] this clock when the answer came (ms)
 */

/**
 * A node's endpoints from a base URL (`http(s)://host:port`, `ws(s)://host:port`, or a
 * `host:port`), or from an object naming some of them.
 * @param {string | Partial<Node>} server
 * @returns {Node}
 */
export function nodeOf(server) {
  if (typeof server === 'string') return nodeOfBase(server);
  const base = server.http ?? (server.poll && stripPath(server.poll)) ?? (server.ws && httpOf(stripPath(server.ws)));
  if (!base) throw new TypeError('a server needs at least one of http, ws, poll');
  const derived = nodeOfBase(base);
  return { ws: server.ws ?? derived.ws, poll: server.poll ?? derived.poll, http: server.http ?? derived.http };
}

/** @param {string} base */
function nodeOfBase(base) {
  let b = base.trim().replace(/\/+$/, '');
  if (!/^[a-z]+:\/\//i.test(b)) b = `http://${b}`;
  b = httpOf(stripPath(b));
  const ws = b.replace(/^http/i, 'ws');
  return { ws: `${ws}/v1/ws`, poll: `${b}/v1/poll`, http: b };
}

/** @param {string} url */
function stripPath(url) {
  const m = /^([a-z]+:\/\/[^/]+)/i.exec(url);
  return m ? m[1] : url;
}

/** @param {string} url */
function httpOf(url) {
  return url.replace(/^ws(s?):\/\//i, 'http$1://');
}

/**
 * The navigation URL: `url` itself if it names a path, else its `/navi`.
 * @param {string} url
 */
export function naviUrl(url) {
  let u = url.trim();
  if (!/^[a-z]+:\/\//i.test(u)) u = `http://${u}`;
  u = httpOf(u);
  return /^[a-z]+:\/\/[^/]+\/?$/i.test(u) ? `${u.replace(/\/$/, '')}/navi` : u;
}

/**
 * Asks the navigation endpoint where to connect.
 * @param {string} url
 * @param {typeof fetch} fetchImpl
 * @param {number} timeoutMs
 * @returns {Promise<Navigation>}
 * @throws {TidingsError} 30005 on a timeout, 30004 when the request fails, 30007 for an answer
 *   that is not a 200 with code 0, 30008 when it lists no node
 */
export async function fetchNavigation(url, fetchImpl, timeoutMs) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  let res;
  let body;
  try {
    res = await fetchImpl(naviUrl(url), { signal: abort.signal });
    body = await res.json().catch(() => null);
  } catch (e) {
    if (abort.signal.aborted) throw new TidingsError(ErrorCode.RC_HTTP_REQ_TIMEOUT, 'navigation timed out');
    throw new TidingsError(ErrorCode.RC_HTTP_SEND_FAIL, `navigation failed: ${errorText(e)}`);
  } finally {
    clearTimeout(timer);
  }
  if (!res.ok || !body || Number(body.code ?? 0) !== 0) {
    throw new TidingsError(ErrorCode.RC_NAVI_RESOURCE_ERROR, `navigation answered ${res.status}`);
  }
  return navigationOf(body, Date.now());
}

/**
 * Reads a navigation answer (also one kept in storage).
 * @param {any} body
 * @param {number} receivedAt
 * @returns {Navigation}
 */
export function navigationOf(body, receivedAt) {
  const nodes = Array.isArray(body?.nodes)
    ? body.nodes.filter((/** @type {any} */ n) => n && (n.ws || n.poll || n.http)).map(nodeOf)
    : [];
  if (nodes.length === 0) throw new TidingsError(ErrorCode.RC_NODE_NOT_FOUND, 'navigation listed no node');
  return {
    nodes,
    heartbeatMs: optionalNumber(body.heartbeatMs),
    pollWaitMs: optionalNumber(body.pollWaitMs),
    maxContentBytes: optionalNumber(body.maxContentBytes),
    serverTime: optionalNumber(body.serverTime),
    receivedAt: optionalNumber(body.receivedAt) ?? receivedAt,
  };
}

/** @param {unknown} v */
function optionalNumber(v) {
  if (v === undefined || v === null || v === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}
