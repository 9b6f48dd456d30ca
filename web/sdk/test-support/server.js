// A real `tidings serve` for the tests: started from the binary `TIDINGS_BIN` names, on a port
// the system picks, with a data directory of its own, and stopped with SIGTERM.

import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** How long the server may take to start listening: a failure guard, not a measurement. */
const START_TIMEOUT_MS = 30_000;

/**
 * @typedef {object} TestServer
 * @property {string} url the server's base URL, `http://127.0.0.1:PORT`
 * @property {string} dir its data directory
 * @property {(user: string) => Promise<string>} token mints a token for `user`
 * @property {() => Promise<void>} stop
 * @property {() => string} log what the server wrote to stderr so far
 * @property {() => Promise<void>} halt stops the server (SIGTERM), keeping its data
 * @property {() => Promise<void>} resume starts it again, on the same address and data
 */

/**
 * Starts a server with extra `tidings serve` flags.
 * @param {string[]} [flags]
 * @returns {Promise<TestServer>}
 */
export async function startServer(flags = []) {
  const dir = await mkdtemp(join(tmpdir(), 'tidings-sdk-'));
  // Port 0: the server binds a free port and prints it, so tests never race for one.
  const first = await spawnServer(dir, '127.0.0.1:0', flags);
  let current = first;
  return {
    get url() {
      return current.url;
    },
    dir,
    log: () => current.log(),
    async token(user) {
      const { stdout } = await run(binary(), ['token', user, '--data-dir', dir]);
      return stdout.trim();
    },
    async stop() {
      await current.stop();
      await rm(dir, { recursive: true, force: true });
    },
    async halt() {
      await current.stop();
    },
    async resume() {
      current = await spawnServer(dir, current.url.replace(/^http:\/\//, ''), flags);
    },
  };
}

function binary() {
  const bin = process.env.TIDINGS_BIN;
  if (!bin) throw new Error('TIDINGS_BIN must name the tidings binary (cargo build -p tidings-server)');
  return bin;
}

/**
 * Runs `tidings serve` until it says where it listens.
 * @param {string} dir
 * @param {string} listen
 * @param {string[]} flags
 */
async function spawnServer(dir, listen, flags) {
  const bin = binary();
  const child = spawn(bin, ['serve', '--data-dir', dir, '--listen', listen, ...flags], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      NO_COLOR: '1',
      RUST_LOG: process.env.RUST_LOG ?? 'warn',
      // A metrics port of its own (the default one is shared by every server on the machine).
      TIDINGS_METRICS_LISTEN: '127.0.0.1:0',
    },
  });
  let log = '';
  child.stderr.on('data', (d) => {
    log += d;
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the server did not start:\n${out}${log}`)), START_TIMEOUT_MS);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /tidings listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited with ${code}:\n${out}${log}`));
    });
  });
  return {
    /** @type {string} */
    url,
    log: () => log,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * A client of `server`, initialised for the tests: memory storage unless given, the `ws`
 * package as WebSocket unless given.
 * @param {TestServer} server
 * @param {import('../src/client.js').InitOptions} [options]
 */
export async function client(server, options = {}) {
  const { TidingsClient, MemoryStorage } = await import('../src/index.js');
  const { default: WebSocket } = await import('ws');
  const c = new TidingsClient().init('test', {
    navi: server.url,
    WebSocket,
    storage: new MemoryStorage(),
    ...options,
  });
  made.add(c);
  return c;
}

/** Every client `client` made since the last `closeClients`. @type {Set<import('../src/client.js').TidingsClient>} */
const made = new Set();

/**
 * Disconnects every client the test made, so a failed test leaves no connection (nor its
 * timers) keeping the test process alive. For `afterEach`.
 */
export async function closeClients() {
  const all = [...made];
  made.clear();
  await Promise.all(all.map((c) => c.disconnect()));
}

/**
 * One server for a test file: started before its tests, stopped after them; every client made
 * is disconnected after each test. Answers the server (usable once the tests run).
 * @param {string[]} [flags]
 * @returns {TestServer}
 */
export function serverForFile(flags = []) {
  /** @type {TestServer | null} */
  let server = null;
  before(async () => {
    server = await startServer(flags);
  });
  afterEach(closeClients);
  after(async () => {
    await server?.stop();
  });
  const current = () => {
    if (!server) throw new Error('the server starts before the tests');
    return server;
  };
  return {
    get url() {
      return current().url;
    },
    get dir() {
      return current().dir;
    },
    log: () => current().log(),
    token: (user) => current().token(user),
    stop: () => current().stop(),
    halt: () => current().halt(),
    resume: () => current().resume(),
  };
}
