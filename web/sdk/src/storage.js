// Storage providers: where the SDK keeps what must outlive a page (the sync cursor, the
// conversation cache, the device id). The interface is the synchronous subset of the Web
// Storage API, so `window.localStorage` is a provider as it is (seed 004's storageProvider).

/**
 * @typedef {object} StorageProvider
 * @property {(key: string) => string | null} getItem
 * @property {(key: string, value: string) => void} setItem
 * @property {(key: string) => void} removeItem
 */

/** Keeps items in memory: lost with the page, shared by the clients given the same instance. */
export class MemoryStorage {
  constructor() {
    /** @type {Map<string, string>} */
    this.items = new Map();
  }

  /** @param {string} key */
  getItem(key) {
    return this.items.get(key) ?? null;
  }

  /**
   * @param {string} key
   * @param {string} value
   */
  setItem(key, value) {
    this.items.set(key, String(value));
  }

  /** @param {string} key */
  removeItem(key) {
    this.items.delete(key);
  }
}

/**
 * Keeps items in a Web Storage object (`localStorage` by default). A storage that refuses
 * (quota exceeded, disabled by the browser's privacy settings) does not break the client: what
 * it refuses is kept in memory instead, for this page.
 */
export class LocalStorageProvider {
  /** @param {StorageProvider} [storage] a Web Storage object; `globalThis.localStorage` by default */
  constructor(storage) {
    const found = storage ?? localStorageOrNull();
    if (!found) throw new TypeError('no localStorage here: use MemoryStorage');
    /** @type {StorageProvider} */
    this.storage = found;
    /** What the storage refused, so reads still see it. */
    this.fallback = new MemoryStorage();
  }

  /** @param {string} key */
  getItem(key) {
    const kept = this.fallback.getItem(key);
    if (kept !== null) return kept;
    try {
      return this.storage.getItem(key);
    } catch {
      return null;
    }
  }

  /**
   * @param {string} key
   * @param {string} value
   */
  setItem(key, value) {
    try {
      this.storage.setItem(key, value);
      this.fallback.removeItem(key);
    } catch {
      this.fallback.setItem(key, value);
    }
  }

  /** @param {string} key */
  removeItem(key) {
    this.fallback.removeItem(key);
    try {
      this.storage.removeItem(key);
    } catch {
      // Nothing to undo: it was never readable.
    }
  }
}

/**
 * `globalThis.localStorage` if this environment has a usable one (reading the property throws
 * in some browsers when storage is disabled).
 * @returns {StorageProvider | null}
 */
function localStorageOrNull() {
  try {
    /** @type {any} */
    const g = globalThis;
    const s = g.localStorage;
    if (s && typeof s.getItem === 'function' && typeof s.setItem === 'function') return s;
  } catch {
    // Disabled: fall through.
  }
  return null;
}

/**
 * The provider a client uses when none is given: `localStorage` when there is one, else memory.
 * @returns {StorageProvider}
 */
export function defaultStorage() {
  const local = localStorageOrNull();
  return local ? new LocalStorageProvider(local) : new MemoryStorage();
}

/**
 * Reads a JSON item, or `undefined` when it is missing or unreadable.
 * @param {StorageProvider} storage
 * @param {string} key
 * @returns {unknown}
 */
export function readJson(storage, key) {
  const text = storage.getItem(key);
  if (text === null || text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
