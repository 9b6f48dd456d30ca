// Two connected users for a test: `${name}-alice` and `${name}-bob`, each with a recorder, and
// a helper that sends a private text.

import { ConversationType, TextMessage } from '../src/index.js';
import { client } from './server.js';
import { recorder } from './wait.js';

/**
 * @param {import('./server.js').TestServer} server
 * @param {string} name
 */
export async function pair(server, name) {
  const alice = await client(server);
  const bob = await client(server);
  const a = recorder(alice);
  const b = recorder(bob);
  await alice.connect(await server.token(`${name}-alice`));
  await bob.connect(await server.token(`${name}-bob`));
  /**
   * @param {import('../src/index.js').TidingsClient} from
   * @param {string} to
   * @param {string} text
   */
  const send = (from, to, text) => from.sendMessage(ConversationType.PRIVATE, to, new TextMessage({ content: text }));
  return { alice, bob, a, b, send, A: `${name}-alice`, B: `${name}-bob`, C: `${name}-carol` };
}
