// Starts a real `tidings serve` (the binary named by TIDINGS_BIN) on a free port with a fresh
// data directory, and stops it; `api` makes signed requests to its HTTP API.
import { spawn } from 'node:child_process';
import { createHash, createHmac, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

/** Starts a server, with extra `tidings serve` flags. */
export async function startServer(flags = []) {
  const bin = process.env.TIDINGS_BIN;
  if (!bin) throw new Error('set TIDINGS_BIN to the tidings binary');
  const dir = mkdtempSync(join(tmpdir(), 'tidings-demo-'));
  const port = await freePort();
  const child = spawn(bin, ['serve', '--data-dir', dir, '--listen', `127.0.0.1:${port}`, ...flags], {
    stdio: ['ignore', 'ignore', 'pipe'],
    // A metrics port of its own (the default one is shared by every server on the machine).
    env: { ...process.env, RUST_LOG: 'warn', TIDINGS_METRICS_LISTEN: '127.0.0.1:0' },
  });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error(`the server did not start:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const credentials = readFileSync(join(dir, 'credentials.toml'), 'utf8');
  const field = (name) => credentials.match(new RegExp(`^${name}\\s*=\\s*"([^"]*)"`, 'm'))?.[1] ?? '';
  const appKey = field('app_key');
  const appSecret = field('app_secret');
  return {
    url,
    dataDir: dir,
    /**
     * A signed `/api/v1` request (docs/protocol.md, "HTTP API"); answers the JSON, or throws with it.
     * @param {string} method
     * @param {string} path
     * @param {unknown} [body]
     */
    async api(method, path, body) {
      const nonce = randomUUID();
      const timestamp = String(Date.now());
      const target = new URL(`${url}/api/v1${path}`);
      const payload = body === undefined ? '' : JSON.stringify(body);
      // Signed over the nonce, the timestamp, the method, the path and query fetch sends, and
      // the body's SHA-256, joined by newlines.
      const sent = target.href.slice(target.origin.length).split('#')[0];
      const bodyHash = createHash('sha256').update(payload).digest('hex');
      const signed = [nonce, timestamp, method.toUpperCase(), sent, bodyHash].join('\n');
      const r = await fetch(target, {
        method: method.toUpperCase(),
        headers: {
          'App-Key': appKey,
          Nonce: nonce,
          Timestamp: timestamp,
          Signature: createHmac('sha256', appSecret).update(signed).digest('hex'),
          ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        },
        body: body === undefined ? undefined : payload,
      });
      const answer = await r.json();
      if (!r.ok || answer.code) throw new Error(`${method} ${path}: ${JSON.stringify(answer)}`);
      return answer;
    },
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
