// The local message store of the RongCloud-compatible entry (./rong.js): the messages this
// device sent, received, read from history or inserted itself, each with a local `messageId`
// and the fields only this device has (`extra`, `receivedStatus`, the search field). Two
// implementations: IndexedDB in a browser, memory elsewhere; any object with the same methods
// will do (`init(appKey, {messageStore})`).

/**
 * A message as the store keeps it: plain data, the content as its fields.
 * @typedef {object} StoredMessage
 * @property {number} messageId the local id (given by `add`)
 * @property {number} conversationType the seed's (a discussion is 2)
 * @property {string} targetId
 * @property {string} senderUserId
 * @property {string} objectName the seed's (`RC:TxtMsg`, …)
 * @property {Record<string, any>} content the content's fields
 * @property {number} messageDirection
 * @property {string} messageUId empty for a message only this device has
 * @property {string} clientMsgId
 * @property {number} seq
 * @property {number} sentTime
 * @property {number} receivedTime
 * @property {number} sentStatus
 * @property {number} receivedStatus
 * @property {string} [extra] local extra (`setMessageExtra`)
 * @property {string} [searchField] extra text searches find (`setMessageSearchField`)
 * @property {boolean} isLocalMessage inserted on this device, never sent
 */

/**
 * @typedef {object} MessageStore
 * @property {(m: Omit<StoredMessage, 'messageId'>) => Promise<number>} add stores a new message; answers its id
 * @property {(m: StoredMessage) => Promise<void>} put replaces the message with its `messageId`
 * @property {(messageId: number) => Promise<StoredMessage | null>} get
 * @property {(messageUId: string) => Promise<StoredMessage | null>} getByUId
 * @property {(messageIds: number[]) => Promise<number>} remove answers how many it removed
 * @property {(filter?: StoreFilter) => Promise<StoredMessage[]>} list oldest first (by sentTime, then id)
 * @property {(filter?: StoreFilter) => Promise<number>} clear removes what the filter matches; answers how many
 */

/**
 * @typedef {object} StoreFilter
 * @property {number} [conversationType]
 * @property {string} [targetId]
 * @property {number} [beforeTime] sent at or before this time (ms)
 */

/**
 * @param {StoredMessage} m
 * @param {StoreFilter | undefined} f
 */
export function matches(m, f) {
  if (!f) return true;
  if (f.conversationType !== undefined && m.conversationType !== f.conversationType) return false;
  if (f.targetId !== undefined && m.targetId !== f.targetId) return false;
  if (f.beforeTime !== undefined && m.sentTime > f.beforeTime) return false;
  return true;
}

/** @param {StoredMessage} a @param {StoredMessage} b */
function byTime(a, b) {
  return a.sentTime - b.sentTime || a.messageId - b.messageId;
}

/**
 * Keeps messages in memory, for this page (the default where there is no IndexedDB). Beyond
 * `limit` messages the oldest stored are dropped.
 * @implements {MessageStore}
 */
export class MemoryMessageStore {
  /** @param {{ limit?: number }} [options] */
  constructor(options = {}) {
    this.limit = options.limit ?? 10_000;
    /** @type {Map<number, StoredMessage>} */
    this.messages = new Map();
    /** @type {Map<string, number>} */
    this.byUId = new Map();
    this.nextId = 1;
  }

  /** @param {Omit<StoredMessage, 'messageId'>} m */
  async add(m) {
    const messageId = this.nextId++;
    const stored = /** @type {StoredMessage} */ ({ ...structuredClone(m), messageId });
    this.messages.set(messageId, stored);
    if (stored.messageUId) this.byUId.set(stored.messageUId, messageId);
    while (this.messages.size > this.limit) {
      const oldest = this.messages.keys().next().value;
      if (oldest === undefined) break;
      await this.remove([oldest]);
    }
    return messageId;
  }

  /** @param {StoredMessage} m */
  async put(m) {
    const before = this.messages.get(m.messageId);
    if (!before) return;
    if (before.messageUId && before.messageUId !== m.messageUId) this.byUId.delete(before.messageUId);
    const stored = structuredClone(m);
    this.messages.set(m.messageId, stored);
    if (stored.messageUId) this.byUId.set(stored.messageUId, stored.messageId);
  }

  /** @param {number} messageId */
  async get(messageId) {
    const m = this.messages.get(messageId);
    return m ? structuredClone(m) : null;
  }

  /** @param {string} messageUId */
  async getByUId(messageUId) {
    const id = this.byUId.get(messageUId);
    return id === undefined ? null : this.get(id);
  }

  /** @param {number[]} messageIds */
  async remove(messageIds) {
    let n = 0;
    for (const id of messageIds) {
      const m = this.messages.get(id);
      if (!m) continue;
      this.messages.delete(id);
      if (m.messageUId) this.byUId.delete(m.messageUId);
      n += 1;
    }
    return n;
  }

  /** @param {StoreFilter} [filter] */
  async list(filter) {
    return [...this.messages.values()].filter((m) => matches(m, filter)).sort(byTime).map((m) => structuredClone(m));
  }

  /** @param {StoreFilter} [filter] */
  async clear(filter) {
    const ids = [...this.messages.values()].filter((m) => matches(m, filter)).map((m) => m.messageId);
    return this.remove(ids);
  }
}

/**
 * Keeps messages in IndexedDB (one database per app key and user), so they outlive the page.
 * @implements {MessageStore}
 */
export class IndexedDBMessageStore {
  /**
   * @param {string} name the database's name
   * @param {{ indexedDB?: any }} [options] `globalThis.indexedDB` by default
   */
  constructor(name, options = {}) {
    /** @type {any} */
    const g = globalThis;
    this.factory = options.indexedDB ?? g.indexedDB;
    if (!this.factory) throw new TypeError('no IndexedDB here: use MemoryMessageStore');
    this.name = name;
    /** @type {Promise<any> | null} */
    this.opening = null;
  }

  /** @returns {Promise<any>} */
  db() {
    if (!this.opening) {
      this.opening = new Promise((resolve, reject) => {
        const req = this.factory.open(this.name, 1);
        req.onupgradeneeded = () => {
          const store = req.result.createObjectStore('messages', { keyPath: 'messageId', autoIncrement: true });
          store.createIndex('uid', 'messageUId', { unique: false });
        };
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
    }
    return this.opening;
  }

  /**
   * Runs `fn` on the object store in one transaction; answers what `fn`'s last request gave.
   * @param {'readonly' | 'readwrite'} mode
   * @param {(store: any) => any} fn answers a request, or nothing
   * @returns {Promise<any>}
   */
  async run(mode, fn) {
    const db = await this.db();
    return new Promise((resolve, reject) => {
      const tx = db.transaction('messages', mode);
      const req = fn(tx.objectStore('messages'));
      tx.oncomplete = () => resolve(req ? req.result : undefined);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }

  /** @param {Omit<StoredMessage, 'messageId'>} m */
  async add(m) {
    const { messageId: _drop, ...rest } = /** @type {any} */ (m);
    return Number(await this.run('readwrite', (s) => s.add(rest)));
  }

  /** @param {StoredMessage} m */
  async put(m) {
    await this.run('readwrite', (s) => s.put(m));
  }

  /** @param {number} messageId */
  async get(messageId) {
    return (await this.run('readonly', (s) => s.get(messageId))) ?? null;
  }

  /** @param {string} messageUId */
  async getByUId(messageUId) {
    if (!messageUId) return null;
    return (await this.run('readonly', (s) => s.index('uid').get(messageUId))) ?? null;
  }

  /** @param {number[]} messageIds */
  async remove(messageIds) {
    let n = 0;
    for (const id of messageIds) {
      if (await this.get(id)) {
        await this.run('readwrite', (s) => s.delete(id));
        n += 1;
      }
    }
    return n;
  }

  /** @param {StoreFilter} [filter] */
  async list(filter) {
    /** @type {StoredMessage[]} */
    const all = await this.run('readonly', (s) => s.getAll());
    return all.filter((m) => matches(m, filter)).sort(byTime);
  }

  /** @param {StoreFilter} [filter] */
  async clear(filter) {
    const ids = (await this.list(filter)).map((m) => m.messageId);
    return this.remove(ids);
  }

  /** Closes the database. */
  async close() {
    if (this.opening) (await this.opening).close();
    this.opening = null;
  }
}
