// Waiting in tests: for a condition, or for the messages a client presents. The deadlines only
// keep a broken test from hanging; nothing here measures speed.

const DEADLINE_MS = 20_000;

/**
 * Resolves once `predicate()` is true; rejects after the deadline, naming `what`.
 * @param {() => boolean} predicate
 * @param {string} what
 * @param {number} [deadlineMs]
 */
export async function until(predicate, what, deadlineMs = DEADLINE_MS) {
  const end = Date.now() + deadlineMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Resolves once `predicate()` resolves true; rejects after the deadline, naming `what`.
 * @param {() => Promise<boolean>} predicate
 * @param {string} what
 */
export async function untilAsync(predicate, what) {
  const end = Date.now() + DEADLINE_MS;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Collects what a client presents: messages, statuses, other events.
 * @param {import('../src/client.js').TidingsClient} client
 */
export function recorder(client) {
  const rec = {
    /** @type {import('../src/types.js').Message[]} */
    messages: [],
    /** @type {number[]} */
    statuses: [],
    /** @type {{ status: number, detail: any }[]} */
    details: [],
    /** @type {string[]} */
    transports: [],
    /** @type {any[]} */
    typing: [],
    /** @type {any[]} */
    conversations: [],
    /** @type {any[]} */
    readReceipts: [],
    /** The texts of the text messages, in order. */
    get texts() {
      return rec.messages.map((m) => /** @type {any} */ (m.content).content);
    },
    /**
     * Waits until `n` messages were presented.
     * @param {number} n
     */
    messagesAtLeast(n) {
      return until(() => rec.messages.length >= n, `${n} messages (have ${rec.messages.length})`);
    },
    /**
     * Waits until the status was reported.
     * @param {number} status
     */
    status(status) {
      return until(() => rec.statuses.includes(status), `status ${status} (have ${rec.statuses})`);
    },
  };
  client.setOnReceiveMessageListener({ onReceived: (m) => rec.messages.push(m) });
  client.setConnectionStatusListener({
    onChanged: (status, detail) => {
      rec.statuses.push(status);
      rec.details.push({ status, detail });
    },
  });
  client.on('transport', (t) => rec.transports.push(t));
  client.on('typing', (t) => rec.typing.push(t));
  client.on('conversation', (c) => rec.conversations.push(c));
  client.on('readReceipt', (r) => rec.readReceipts.push(r));
  return rec;
}
