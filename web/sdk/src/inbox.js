// The reorder buffer: presents the user's inbox entries once each, in inbox order, whatever way
// and however often they arrive (pushed, synced, pushed again with `dup`). The same rules as
// the Rust SDK's driver.

/** How many presented uids are remembered for deduplication. */
const DEDUPE_CAPACITY = 16_384;

/**
 * @template M
 */
export class Inbox {
  /** @param {number | null} cursor the highest inbox seq presented with nothing missing below */
  constructor(cursor = null) {
    /** @type {number | null} null until the first connection says where to start */
    this.cursor = cursor;
    /**
     * Entries above a gap, by inbox seq; `null` marks this device's own message (already
     * known to it through its PUBACK), which fills its place without being presented.
     * @type {Map<number, M | null>}
     */
    this.ahead = new Map();
    /** @type {Set<string>} */
    this.seen = new Set();
    /** @type {string[]} */
    this.seenOrder = [];
    /** Entries dropped because they had been presented already. */
    this.duplicatesDropped = 0;
  }

  /**
   * Remembers a presented uid; answers false if it was already.
   * @param {string} uid
   */
  remember(uid) {
    if (!uid) return true;
    if (this.seen.has(uid)) return false;
    this.seen.add(uid);
    this.seenOrder.push(uid);
    if (this.seenOrder.length > DEDUPE_CAPACITY) {
      const old = this.seenOrder.shift();
      if (old !== undefined) this.seen.delete(old);
    }
    return true;
  }

  /**
   * Takes an entry at inbox position `seq`; one at or below the cursor, or already held, is a
   * duplicate.
   * @param {number} seq
   * @param {M | null} message
   */
  offer(seq, message) {
    if (seq <= 0) return;
    if (seq <= (this.cursor ?? 0) || this.ahead.has(seq)) {
      if (message !== null) this.duplicatesDropped += 1;
      return;
    }
    this.ahead.set(seq, message);
  }

  /**
   * Takes every entry that continues the cursor without a gap.
   * @param {(m: M) => string} uidOf
   * @returns {{ seq: number, message: M | null }[]} the entries to present, in order (`message`
   *   null: this device's own, or a repeat of a uid already presented; nothing to show)
   */
  flush(uidOf) {
    /** @type {{ seq: number, message: M | null }[]} */
    const out = [];
    for (;;) {
      const next = (this.cursor ?? 0) + 1;
      if (!this.ahead.has(next)) break;
      const entry = /** @type {M | null} */ (this.ahead.get(next));
      this.ahead.delete(next);
      this.cursor = next;
      if (entry === null) continue;
      if (this.remember(uidOf(entry))) {
        out.push({ seq: next, message: entry });
      } else {
        this.duplicatesDropped += 1;
        out.push({ seq: next, message: null });
      }
    }
    return out;
  }

  /** Whether entries wait above a gap. */
  get gapped() {
    return this.ahead.size > 0;
  }
}
