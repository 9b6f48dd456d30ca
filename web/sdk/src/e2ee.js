// End-to-end encryption (docs/e2ee.md) with MLS (RFC 9420), on ts-mls: one device's side of
// encrypted conversations. It mirrors the Rust SDK's `tidings_client::E2ee`: the device's state
// in a storage (IndexedDB in the browser), key packages in the server's directory, the groups'
// commits (the server takes the first of each epoch; a refused one is dropped and made again on
// the winner), Welcomes, and messages encrypted and decrypted.

// ts-mls and @noble/hashes, bundled (scripts/mls-entry.js, `npm run vendor`), so that a browser
// loads them from the server like the rest of the SDK.
import {
  createApplicationMessage,
  createCommit,
  createGroup,
  decodeGroupState,
  decodeKeyPackage,
  decodeMlsMessage,
  defaultCapabilities,
  defaultKeyPackageEqualityConfig,
  defaultLifetimeConfig,
  defaultPaddingConfig,
  emptyPskIndex,
  encodeGroupState,
  encodeKeyPackage,
  encodeMlsMessage,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  makeKeyPackageRef,
  processMessage,
  sha256,
  unprotectPrivateMessage,
  verifyKeyPackage,
  verifyLeafNodeSignatureKeyPackage,
} from './vendor/mls.js';

import { fromBase64, toBase64 } from './base64.js';
import { ConversationType, TidingsError } from './codes.js';
import { UnknownMessage } from './messages.js';

/** How many one-time key packages `publish` keeps in the directory. */
export const KEY_PACKAGE_SUPPLY = 30;
/** Below this many, `publish` uploads more. */
export const KEY_PACKAGE_LOW = 10;
/** How many of its own recent client message ids a device remembers. */
const SENT_KEPT = 1024;
/** How often, at most, a send looks for devices not in the group yet (ms). */
const DEVICE_CHECK_MS = 60_000;
/** How many times a send tries again after another member's commit came first. */
const COMMIT_TRIES = 5;
/** How many epochs back a member can still read a message from (openmls' max_past_epochs). */
const MAX_PAST_EPOCHS = 8;
/** Key packages are valid for this long (the server refuses more than 90 days). */
const KEY_PACKAGE_LIFETIME_S = 80 * 24 * 3600;
/** The `last_resort` key package extension (RFC 9420 §17.3's registry, 0x000A). */
const LAST_RESORT = 10;
/** PUBACK codes: another commit came first; not the conversation's group. */
const EPOCH_CONFLICT = 40037;
const NOT_THIS_GROUP = 40038;
/** The history refusal when this user is no longer in the group. */
const NOT_IN_GROUP = 22406;
const CIPHERSUITE = 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519';

/** Why an end-to-end encrypted operation failed: `kind` is `noDevices`, `busy` or `invalid`. */
export class E2eeError extends Error {
  /**
   * @param {'noDevices' | 'busy' | 'invalid'} kind
   * @param {string} message
   */
  constructor(kind, message) {
    super(message);
    this.name = 'E2eeError';
    this.kind = kind;
  }
}

// ------------------------------------------------------------------------------ storage

/**
 * Where a device's MLS state is kept: entries of text under keys, loaded by prefix, written in
 * batches that land all together or not at all.
 * @typedef {object} E2eeStorage
 * @property {(prefix: string) => Promise<Array<[string, string]>>} load every entry whose key starts with `prefix`
 * @property {(changes: Array<[string, string | null]>) => Promise<void>} write sets (or, with null, removes) entries
 */

/** Keeps the state in memory (shared by the `E2ee`s given the same instance): for tests and Node. */
export class MemoryE2eeStorage {
  constructor() {
    /** @type {Map<string, string>} */
    this.items = new Map();
  }

  /** @param {string} prefix */
  async load(prefix) {
    return /** @type {Array<[string, string]>} */ ([...this.items].filter(([k]) => k.startsWith(prefix)));
  }

  /** @param {Array<[string, string | null]>} changes */
  async write(changes) {
    for (const [k, v] of changes) {
      if (v === null) this.items.delete(k);
      else this.items.set(k, v);
    }
  }
}

/**
 * Keeps the state in IndexedDB (the browser's default): one object store, each batch in one
 * transaction.
 */
export class IndexedDbE2eeStorage {
  /**
   * @param {{ name?: string, indexedDB?: IDBFactory, IDBKeyRange?: typeof IDBKeyRange }} [options]
   *   the database's name (`tidings-e2ee`); the IndexedDB to use (the global one)
   */
  constructor(options = {}) {
    /** @type {any} */
    const g = globalThis;
    this.name = options.name ?? 'tidings-e2ee';
    /** @type {IDBFactory} */
    this.factory = options.indexedDB ?? g.indexedDB;
    /** @type {typeof IDBKeyRange} */
    this.keyRange = options.IDBKeyRange ?? g.IDBKeyRange;
    if (!this.factory || !this.keyRange) throw new TypeError('no IndexedDB here: use MemoryE2eeStorage');
    /** @type {Promise<IDBDatabase> | null} */
    this.db = null;
  }

  /** @returns {Promise<IDBDatabase>} */
  #open() {
    if (!this.db) {
      this.db = new Promise((resolve, reject) => {
        const req = this.factory.open(this.name, 1);
        req.onupgradeneeded = () => req.result.createObjectStore('state');
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
    }
    return this.db;
  }

  /** @param {string} prefix */
  async load(prefix) {
    const db = await this.#open();
    return new Promise((resolve, reject) => {
      /** @type {Array<[string, string]>} */
      const out = [];
      const tx = db.transaction('state', 'readonly');
      const req = tx.objectStore('state').openCursor(this.keyRange.bound(prefix, `${prefix}\uffff`));
      req.onsuccess = () => {
        const cursor = req.result;
        if (!cursor) return;
        out.push([String(cursor.key), String(cursor.value)]);
        cursor.continue();
      };
      tx.oncomplete = () => resolve(out);
      tx.onerror = () => reject(tx.error);
    });
  }

  /** @param {Array<[string, string | null]>} changes */
  async write(changes) {
    const db = await this.#open();
    await new Promise((resolve, reject) => {
      const tx = db.transaction('state', 'readwrite');
      const store = tx.objectStore('state');
      for (const [k, v] of changes) {
        if (v === null) store.delete(k);
        else store.put(v, k);
      }
      tx.oncomplete = () => resolve(undefined);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }
}

/**
 * Keeps the state in a Web Storage-like provider (`getItem`/`setItem`, as the client's
 * `storage` option): the whole state of a device as one item.
 */
export class WebStorageE2eeStorage {
  /** @param {import('./storage.js').StorageProvider} provider */
  constructor(provider) {
    this.provider = provider;
    /** @type {Map<string, Record<string, string>>} the items loaded, by prefix */
    this.loaded = new Map();
  }

  /** @param {string} prefix */
  async load(prefix) {
    let all = /** @type {Record<string, string>} */ ({});
    try {
      all = JSON.parse(this.provider.getItem(prefix) ?? '{}') ?? {};
    } catch {
      all = {};
    }
    this.loaded.set(prefix, all);
    return /** @type {Array<[string, string]>} */ (Object.entries(all));
  }

  /** @param {Array<[string, string | null]>} changes */
  async write(changes) {
    for (const [prefix, all] of this.loaded) {
      let touched = false;
      for (const [k, v] of changes) {
        if (!k.startsWith(prefix)) continue;
        touched = true;
        if (v === null) delete all[k];
        else all[k] = v;
      }
      if (touched) this.provider.setItem(prefix, JSON.stringify(all));
    }
  }
}

/**
 * @param {unknown} storage
 * @returns {E2eeStorage}
 */
function storageOf(storage) {
  /** @type {any} */
  const s = storage;
  if (s && typeof s.load === 'function' && typeof s.write === 'function') return s;
  if (s && typeof s.getItem === 'function' && typeof s.setItem === 'function') return new WebStorageE2eeStorage(s);
  if (s) throw new TypeError('storage must be an E2eeStorage or a Web Storage-like provider');
  /** @type {any} */
  const g = globalThis;
  return g.indexedDB && g.IDBKeyRange ? new IndexedDbE2eeStorage() : new MemoryE2eeStorage();
}

// ------------------------------------------------------------------------------ helpers

/** @param {Uint8Array} bytes */
function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** @param {string} s */
function unhex(s) {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i += 1) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * A device's safety number: six groups of five digits from the SHA-256 of its Ed25519
 * signature public key; group `i` is bytes `5i`..`5i+4` as a big-endian number, modulo 100,000
 * (`tidings_mls::safety_number`).
 * @param {Uint8Array} signatureKey
 * @returns {string}
 */
export function safetyNumber(signatureKey) {
  const digest = sha256(signatureKey);
  const groups = [];
  for (let i = 0; i < 6; i += 1) {
    let n = 0;
    // At most 2^40: exact in a double.
    for (let j = 0; j < 5; j += 1) n = n * 256 + digest[5 * i + j];
    groups.push(String(n % 100_000).padStart(5, '0'));
  }
  return groups.join(' ');
}

/**
 * `user:device` split, or null when it is not one (neither contains a colon).
 * @param {string} identity
 */
function splitIdentity(identity) {
  const parts = identity.split(':');
  if (parts.length !== 2 || !parts[0] || !parts[1]) return null;
  return { user: parts[0], device: parts[1] };
}

const textDecoder = new TextDecoder('utf-8', { fatal: true });
const textEncoder = new TextEncoder();

/**
 * The identity (`user:device`) of a basic credential; '' for anything else.
 * @param {any} credential
 */
function identityOf(credential) {
  if (credential?.credentialType !== 'basic') return '';
  try {
    return textDecoder.decode(credential.identity);
  } catch {
    return '';
  }
}

/**
 * Members of a group state, in leaf order: their leaf index, identity and signature key.
 * @param {any} state
 * @returns {Array<{ leaf: number, identity: string, signatureKey: Uint8Array }>}
 */
function membersOf(state) {
  /** @type {Array<{ leaf: number, identity: string, signatureKey: Uint8Array }>} */
  const out = [];
  state.ratchetTree.forEach((/** @type {any} */ node, /** @type {number} */ i) => {
    if (node?.nodeType === 'leaf') {
      out.push({ leaf: i / 2, identity: identityOf(node.leaf.credential), signatureKey: node.leaf.signaturePublicKey });
    }
  });
  return out;
}

/**
 * The `{mls, welcome}` content of a message, or null.
 * @param {any} message
 * @returns {{ mls: string, welcome?: string } | null}
 */
function mlsContentOf(message) {
  let c = message?.content;
  if (c instanceof UnknownMessage) c = c.content;
  else if (c && typeof c === 'object' && 'content' in c && !('mls' in c)) c = c.content;
  if (typeof c === 'string') {
    try {
      c = JSON.parse(c);
    } catch {
      return null;
    }
  }
  if (!c || typeof c !== 'object' || typeof c.mls !== 'string') return null;
  if (c.welcome !== undefined && typeof c.welcome !== 'string') return null;
  return c;
}

/** Leaves only basic credentials naming `user:device` in a group. */
const authService = {
  /** @param {any} credential */
  async validateCredential(credential) {
    return splitIdentity(identityOf(credential)) !== null;
  },
};

const clientConfig = {
  keyRetentionConfig: { retainKeysForGenerations: 10, retainKeysForEpochs: MAX_PAST_EPOCHS, maximumForwardRatchetSteps: 200 },
  lifetimeConfig: defaultLifetimeConfig,
  keyPackageEqualityConfig: defaultKeyPackageEqualityConfig,
  paddingConfig: defaultPaddingConfig,
  authService,
};

/** @type {Promise<any> | null} */
let suite = null;
function cipherSuite() {
  suite ??= getCiphersuiteImpl(getCiphersuiteFromName(CIPHERSUITE));
  return suite;
}

/** @param {number} conversationType @param {string} target */
function conversationKey(conversationType, target) {
  return `conv/${conversationType}:${target}`;
}

/**
 * @typedef {object} Decrypted
 * @property {string} uid
 * @property {number} conversationType
 * @property {string} targetId
 * @property {string} senderId
 * @property {string} senderDevice the device that sent it, as its MLS credential says
 * @property {number} seq
 * @property {number} sentTime
 * @property {string} type the type inside the encryption
 * @property {any} content the content inside the encryption (a JSON object)
 */

/**
 * @typedef {{ kind: 'plain' }
 *   | { kind: 'message', message: Decrypted }
 *   | { kind: 'joined', epoch: number, keysChanged: string[] }
 *   | { kind: 'changed', epoch: number, added: string[], removed: string[], keysChanged: string[] }
 *   | { kind: 'removed' }
 *   | { kind: 'nothing' }
 *   | { kind: 'unreadable', uid: string, reason: string }} Received
 */

/**
 * End-to-end encryption for one device (docs/e2ee.md). Give it every message that arrives
 * (`receive`), in the order they come; send with `send` / `sendText`.
 */
export class E2ee {
  /** @type {import('./client.js').TidingsClient} */
  #client;
  /** @type {E2eeStorage} */
  #storage;
  #user = '';
  #device = '';
  #prefix = '';
  /** @type {Map<string, string>} */
  #values = new Map();
  /** @type {Map<string, string | null>} */
  #dirty = new Map();
  /** @type {Map<string, any>} decoded group states, by hex group id */
  #groups = new Map();
  /** @type {Set<string>} groups whose state changed since the last save */
  #dirtyGroups = new Set();
  /** @type {{ publicKey: Uint8Array, signKey: Uint8Array }} */
  #signer = { publicKey: new Uint8Array(), signKey: new Uint8Array() };
  /** @type {Map<string, number>} when each conversation was last checked for new devices */
  #checked = new Map();
  #conflicts = 0;
  /** @type {Promise<unknown>} */
  #lock = Promise.resolve();

  /**
   * Use `E2ee.open`.
   * @param {import('./client.js').TidingsClient} client
   * @param {E2eeStorage} storage
   */
  constructor(client, storage) {
    this.#client = client;
    this.#storage = storage;
  }

  /**
   * Opens this device's MLS state (made when it has none). The client must be connected, with
   * the device id given (the server takes key packages for the connection's device only).
   * @param {import('./client.js').TidingsClient} client
   * @param {{ deviceId?: string, storage?: E2eeStorage | import('./storage.js').StorageProvider }} [options]
   *   `storage`: IndexedDB in the browser, memory elsewhere, unless given
   * @returns {Promise<E2ee>}
   */
  static async open(client, options = {}) {
    const user = client.getCurrentUserId();
    if (!user) throw new E2eeError('invalid', 'connect the client first');
    const device = options.deviceId ?? client.deviceId;
    if (!device) throw new E2eeError('invalid', 'end-to-end encryption needs a device id');
    if (splitIdentity(`${user}:${device}`) === null) throw new E2eeError('invalid', 'user and device ids must not contain a colon');
    if (client.deviceId && client.deviceId !== device) {
      throw new E2eeError('invalid', `the client connects as device ${client.deviceId}, not ${device}`);
    }
    const e = new E2ee(client, storageOf(options.storage));
    e.#user = user;
    e.#device = device;
    e.#prefix = `tidings-e2ee/${user}:${device}/`;
    for (const [k, v] of await e.#storage.load(e.#prefix)) e.#values.set(k.slice(e.#prefix.length), v);
    const signer = e.#json('signer');
    if (signer) {
      e.#signer = { publicKey: fromBase64(signer.publicKey), signKey: fromBase64(signer.signKey) };
    } else {
      const cs = await cipherSuite();
      e.#signer = await cs.signature.keygen();
      e.#set('identity', `${user}:${device}`);
      e.#setJson('signer', { publicKey: toBase64(e.#signer.publicKey), signKey: toBase64(e.#signer.signKey) });
      await e.#save();
    }
    return e;
  }

  /** `user:device` of this device. */
  get identity() {
    return `${this.#user}:${this.#device}`;
  }

  /** How many times another member's commit came before one of this device's commits or messages. */
  conflicts() {
    return this.#conflicts;
  }

  /** This device's safety number. */
  safetyNumber() {
    return safetyNumber(this.#signer.publicKey);
  }

  // ---------------------------------------------------------------- state

  /** @param {string} key */
  #json(key) {
    const v = this.#values.get(key);
    if (v === undefined) return undefined;
    try {
      return JSON.parse(v);
    } catch {
      return undefined;
    }
  }

  /** @param {string} key @param {string | null} value */
  #set(key, value) {
    if (value === null) this.#values.delete(key);
    else this.#values.set(key, value);
    this.#dirty.set(key, value);
  }

  /** @param {string} key @param {unknown} value */
  #setJson(key, value) {
    this.#set(key, JSON.stringify(value));
  }

  async #save() {
    for (const id of this.#dirtyGroups) {
      const state = this.#groups.get(id);
      this.#set(`group/${id}`, state ? toBase64(encodeGroupState(state)) : null);
    }
    this.#dirtyGroups.clear();
    if (this.#dirty.size === 0) return;
    const changes = /** @type {Array<[string, string | null]>} */ ([...this.#dirty].map(([k, v]) => [this.#prefix + k, v]));
    this.#dirty.clear();
    await this.#storage.write(changes);
  }

  /** @param {string} id hex @returns {any} the group's state, or undefined */
  #group(id) {
    if (!id) return undefined;
    let state = this.#groups.get(id);
    if (state) return state;
    const stored = this.#values.get(`group/${id}`);
    if (!stored) return undefined;
    const decoded = decodeGroupState(fromBase64(stored), 0);
    if (!decoded) return undefined;
    state = { ...decoded[0], clientConfig };
    this.#groups.set(id, state);
    return state;
  }

  /** @param {string} id @param {any} state or undefined to forget the group */
  #setGroup(id, state) {
    if (state) this.#groups.set(id, state);
    else {
      this.#groups.delete(id);
      this.#values.delete(`group/${id}`);
    }
    this.#dirtyGroups.add(id);
  }

  /** @param {number} type @param {string} target @returns {{ group: string, seq: number }} */
  #conversation(type, target) {
    const c = this.#json(conversationKey(type, target));
    return { group: String(c?.group ?? ''), seq: Number(c?.seq ?? 0) };
  }

  /** @param {number} type @param {string} target @param {{ group: string, seq: number }} c */
  #setConversation(type, target, c) {
    this.#setJson(conversationKey(type, target), c);
  }

  /** @param {string} clientMsgId */
  #rememberSent(clientMsgId) {
    const sent = /** @type {string[]} */ (this.#json('sent') ?? []);
    sent.push(clientMsgId);
    this.#setJson('sent', sent.slice(-SENT_KEPT));
  }

  /** @param {string} clientMsgId */
  #wasSent(clientMsgId) {
    return clientMsgId !== '' && /** @type {string[]} */ (this.#json('sent') ?? []).includes(clientMsgId);
  }

  /** @param {string} uid @returns {Decrypted | undefined} */
  #cached(uid) {
    return this.#json(`plain/${uid}`);
  }

  /** @param {Decrypted} d */
  #cache(d) {
    this.#setJson(`plain/${d.uid}`, d);
  }

  /**
   * Records the members' signature keys; answers the identities whose key changed.
   * @param {any} state
   */
  #noteKeys(state) {
    const changed = [];
    for (const m of membersOf(state)) {
      const key = `key/${m.identity}`;
      const seen = this.#values.get(key);
      const now = hex(m.signatureKey);
      if (seen === now) continue;
      if (seen !== undefined) changed.push(m.identity);
      this.#set(key, now);
    }
    return changed;
  }

  /**
   * Runs `fn` alone (the state is not shared between operations).
   * @template T
   * @param {() => Promise<T>} fn
   * @returns {Promise<T>}
   */
  #exclusive(fn) {
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => {});
    return run;
  }

  // ---------------------------------------------------------------- key packages

  /**
   * A new key package of this device: the MLSMessage to upload; its private keys are kept
   * (save before uploading).
   * @param {boolean} lastResort
   */
  async #newKeyPackage(lastResort) {
    const cs = await cipherSuite();
    const { publicPackage, privatePackage } = await this.#makeKeyPackage(lastResort);
    const ref = hex(await makeKeyPackageRef(publicPackage, cs.hash));
    this.#setJson(`kp/${ref}`, {
      keyPackage: toBase64(encodeKeyPackage(publicPackage)),
      init: toBase64(privatePackage.initPrivateKey),
      hpke: toBase64(privatePackage.hpkePrivateKey),
      lastResort,
    });
    return encodeMlsMessage({ version: 'mls10', wireformat: 'mls_key_package', keyPackage: publicPackage });
  }

  /** @param {boolean} lastResort */
  async #makeKeyPackage(lastResort) {
    const cs = await cipherSuite();
    const capabilities = defaultCapabilities();
    capabilities.extensions = [...new Set([...capabilities.extensions, LAST_RESORT])];
    const now = BigInt(Math.floor(Date.now() / 1000));
    const lifetime = { notBefore: now - 3600n, notAfter: now + BigInt(KEY_PACKAGE_LIFETIME_S) };
    const extensions = lastResort ? [{ extensionType: LAST_RESORT, extensionData: new Uint8Array() }] : [];
    const credential = /** @type {const} */ ({ credentialType: 'basic', identity: textEncoder.encode(this.identity) });
    return generateKeyPackageWithKey(credential, capabilities, lifetime, extensions, this.#signer, cs);
  }

  /**
   * Tops up this device's key packages in the directory (to 30 when fewer than 10 are left;
   * the first time, with a last-resort one too). Answers how many one-time key packages the
   * device has there.
   * @returns {Promise<number>}
   */
  publish() {
    return this.#exclusive(async () => {
      // The first time, whatever the directory holds for this device id is not this state's
      // (a state lost, the same id reused): it is replaced, so that nobody is handed a key
      // package whose private keys are gone.
      const first = !this.#values.has('published');
      const count = first ? 0 : await this.#client.publishKeyPackages([], false);
      if (count >= KEY_PACKAGE_LOW) return count;
      const packages = [];
      for (let i = count; i < KEY_PACKAGE_SUPPLY; i += 1) packages.push(await this.#newKeyPackage(false));
      if (first) packages.push(await this.#newKeyPackage(true));
      this.#set('published', '1');
      // The private halves are saved before the public ones are handed to anyone.
      await this.#save();
      return this.#client.publishKeyPackages(packages, first);
    });
  }

  /**
   * Joins a group from a Welcome: its hex id, or null when the Welcome is for other devices.
   * @param {Uint8Array} bytes
   */
  async #join(bytes) {
    const cs = await cipherSuite();
    const decoded = decodeMlsMessage(bytes, 0)?.[0];
    if (!decoded || decoded.wireformat !== 'mls_welcome') throw new Error('not a Welcome');
    const welcome = decoded.welcome;
    for (const secret of welcome.secrets) {
      const ref = hex(secret.newMember);
      const kp = this.#json(`kp/${ref}`);
      if (!kp) continue;
      const keyPackage = decodeKeyPackage(fromBase64(kp.keyPackage), 0)?.[0];
      if (!keyPackage) throw new Error('a stored key package is damaged');
      const state = await joinGroup(
        welcome,
        keyPackage,
        {
          initPrivateKey: fromBase64(kp.init),
          hpkePrivateKey: fromBase64(kp.hpke),
          signaturePrivateKey: this.#signer.signKey,
        },
        emptyPskIndex,
        cs,
        undefined,
        undefined,
        clientConfig,
      );
      // A one-time key package is used once; the last-resort one stays.
      if (!kp.lastResort) this.#set(`kp/${ref}`, null);
      const id = hex(state.groupContext.groupId);
      this.#setGroup(id, state);
      return id;
    }
    return null;
  }

  // ---------------------------------------------------------------- queries

  /**
   * The devices in the conversation's group, with their safety numbers.
   * @param {number} conversationType
   * @param {string} targetId
   * @returns {Promise<Array<{ userId: string, deviceId: string, safetyNumber: string }>>}
   */
  members(conversationType, targetId) {
    return this.#exclusive(async () => {
      const state = this.#group(this.#conversation(conversationType, targetId).group);
      if (!state) return [];
      return membersOf(state).flatMap((m) => {
        const s = splitIdentity(m.identity);
        return s ? [{ userId: s.user, deviceId: s.device, safetyNumber: safetyNumber(m.signatureKey) }] : [];
      });
    });
  }

  /**
   * The conversation's group epoch, or null when this device is not in its group.
   * @param {number} conversationType
   * @param {string} targetId
   * @returns {Promise<number | null>}
   */
  epoch(conversationType, targetId) {
    return this.#exclusive(async () => {
      const state = this.#group(this.#conversation(conversationType, targetId).group);
      return state ? Number(state.groupContext.epoch) : null;
    });
  }

  /**
   * Makes the next send to the conversation look for devices of its users that are not in its
   * group yet (sends do on their own at most once a minute, and after a change to a group's
   * members).
   * @param {number} conversationType
   * @param {string} targetId
   */
  refreshDevices(conversationType, targetId) {
    return this.#exclusive(async () => {
      this.#checked.delete(conversationKey(conversationType, targetId));
    });
  }

  // ---------------------------------------------------------------- receiving

  /**
   * Processes a message (one the client presents, or from history), catching up first on the
   * conversation's earlier messages this device has not processed. A message processed before
   * answers what it answered then, for application messages (MLS keys are used once, so the
   * plaintext is kept in the state).
   * @param {import('./types.js').Message} message
   * @returns {Promise<Received>}
   */
  receive(message) {
    return this.#exclusive(async () => {
      const type = message.conversationType;
      const target = message.targetId;
      if (message.objectName !== 'mls') {
        // The group's members changed: the next send looks for devices to add.
        if (message.objectName === 'tidings:group') this.#checked.delete(conversationKey(type, target));
        return { kind: 'plain' };
      }
      const c = this.#conversation(type, target);
      if (message.seq <= c.seq) {
        const d = this.#cached(message.messageUId);
        return d ? { kind: 'message', message: d } : { kind: 'nothing' };
      }
      await this.#catchUp(type, target, message.seq - 1);
      const received = await this.#apply(message);
      const after = this.#conversation(type, target);
      after.seq = Math.max(after.seq, message.seq);
      this.#setConversation(type, target, after);
      await this.#save();
      return received;
    });
  }

  /**
   * Processes the conversation's messages after the last one this device processed, up to
   * `until` (inclusive), from its history.
   * @param {number} type
   * @param {string} target
   * @param {number} until
   */
  async #catchUp(type, target, until) {
    for (;;) {
      let c = this.#conversation(type, target);
      if (c.seq >= until) return;
      /** @type {{ messages: import('./types.js').Message[], hasMore: boolean }} */
      let page;
      try {
        // afterSeq 0 would be "the newest page": from the start, read after the first
        // millisecond instead.
        const start = c.seq > 0 ? { afterSeq: c.seq, count: 100 } : { afterTime: 1, count: 100 };
        page = await this.#client.getHistoryMessages(type, target, start);
      } catch (e) {
        // No longer a member of the group: there is nothing more to read.
        if (e instanceof TidingsError && e.serverCode === NOT_IN_GROUP) return;
        throw e;
      }
      let moved = false;
      const after = c.seq;
      for (const m of page.messages) {
        if (m.seq > until || m.seq <= after) continue;
        if (m.objectName === 'mls') await this.#apply(m);
        // #apply may have joined the group: read the state again.
        c = this.#conversation(type, target);
        c.seq = m.seq;
        this.#setConversation(type, target, c);
        moved = true;
      }
      if (!moved || !page.hasMore) {
        // Nothing more to read up to `until` (the rest is not visible to this user).
        if (Number.isFinite(until)) {
          const last = this.#conversation(type, target);
          last.seq = Math.max(last.seq, until);
          this.#setConversation(type, target, last);
        }
        await this.#save();
        return;
      }
    }
  }

  /**
   * What one `mls` message does to this device's state.
   * @param {import('./types.js').Message} m
   * @returns {Promise<Received>}
   */
  async #apply(m) {
    /** @param {string} reason @returns {Received} */
    const unreadable = (reason) => ({ kind: 'unreadable', uid: m.messageUId, reason });
    if (m.senderUserId === this.#user && this.#wasSent(m.clientMsgId)) {
      const d = this.#cached(m.messageUId);
      return d ? { kind: 'message', message: d } : { kind: 'nothing' };
    }
    const content = mlsContentOf(m);
    if (!content) return unreadable("not an MLS message's content");
    let bytes;
    try {
      bytes = fromBase64(content.mls);
    } catch {
      return unreadable('not base64');
    }
    let decoded;
    try {
      decoded = decodeMlsMessage(bytes, 0)?.[0];
    } catch {
      decoded = undefined;
    }
    /** @type {{ groupId: Uint8Array, epoch: bigint, kind: string } | null} */
    let header = null;
    if (decoded?.wireformat === 'mls_public_message') {
      const fc = decoded.publicMessage.content;
      header = { groupId: fc.groupId, epoch: fc.epoch, kind: fc.contentType };
    } else if (decoded?.wireformat === 'mls_private_message') {
      const pm = decoded.privateMessage;
      header = { groupId: pm.groupId, epoch: pm.epoch, kind: pm.contentType };
    }
    if (!decoded || !header) return unreadable('not an MLS group message');
    const type = m.conversationType;
    const target = m.targetId;
    const c = this.#conversation(type, target);
    let state = this.#group(c.group);
    if (!state || c.group !== hex(header.groupId)) {
      // Not in this group: a Welcome may be for this device.
      if (content.welcome) {
        let joined = null;
        try {
          joined = await this.#join(fromBase64(content.welcome));
        } catch (e) {
          return unreadable(`the Welcome: ${/** @type {Error} */ (e).message}`);
        }
        if (joined) {
          c.group = joined;
          this.#setConversation(type, target, c);
          const s = this.#group(joined);
          const keysChanged = this.#noteKeys(s);
          return { kind: 'joined', epoch: Number(s.groupContext.epoch), keysChanged };
        }
      }
      return header.kind === 'application'
        ? unreadable("this device is not in the conversation's group")
        : { kind: 'nothing' };
    }
    const epoch = state.groupContext.epoch;
    if (header.kind !== 'application' && header.epoch < epoch) {
      // A change from before this device joined, or one already in effect.
      return { kind: 'nothing' };
    }
    const cs = await cipherSuite();
    if (decoded.wireformat === 'mls_private_message' && header.kind === 'application') {
      let result;
      let sender;
      try {
        ({ result, sender } = await this.#decrypt(state, decoded.privateMessage, cs));
      } catch (e) {
        return unreadable(/** @type {Error} */ (e).message || 'cannot decrypt');
      }
      this.#setGroup(c.group, result.newState);
      const who = splitIdentity(sender);
      if (!who) return unreadable("the sender's credential names no user:device");
      if (who.user !== m.senderUserId) return unreadable("the MLS sender is not the message's sender");
      let inner;
      try {
        inner = JSON.parse(textDecoder.decode(result.message));
      } catch {
        inner = null;
      }
      if (!inner || typeof inner.type !== 'string' || !('content' in inner)) {
        return unreadable('the plaintext is not a message');
      }
      /** @type {Decrypted} */
      const d = {
        uid: m.messageUId,
        conversationType: type,
        targetId: target,
        senderId: m.senderUserId,
        senderDevice: who.device,
        seq: m.seq,
        sentTime: m.sentTime,
        type: inner.type,
        content: inner.content,
      };
      this.#cache(d);
      return { kind: 'message', message: d };
    }
    // A handshake: a commit (or a proposal, kept for the next commit).
    const before = membersOf(state);
    /** @type {string[]} */
    let added = [];
    /** @type {number[]} */
    let removedLeaves = [];
    let refusal = '';
    /** @type {import('ts-mls').IncomingMessageCallback} */
    const check = (incoming) => {
      if (incoming.kind !== 'commit') return 'accept';
      for (const p of incoming.proposals) {
        if (p.proposal.proposalType === 'add') {
          const id = identityOf(p.proposal.add.keyPackage.leafNode.credential);
          if (!splitIdentity(id)) refusal = 'the commit adds a member whose credential names no user:device';
          added.push(id);
        } else if (p.proposal.proposalType === 'remove') {
          removedLeaves.push(p.proposal.remove.removed);
        }
      }
      return refusal ? 'reject' : 'accept';
    };
    let result;
    try {
      result = await processMessage(/** @type {any} */ (decoded), state, emptyPskIndex, check, cs);
    } catch (e) {
      return unreadable(/** @type {Error} */ (e).message || 'cannot process');
    }
    if (result.kind !== 'newState') return { kind: 'nothing' };
    if (result.actionTaken === 'reject') return unreadable(refusal || 'refused');
    if (header.kind === 'proposal') {
      this.#setGroup(c.group, result.newState);
      return { kind: 'nothing' };
    }
    const next = result.newState;
    if (next.groupActiveState.kind === 'removedFromGroup') {
      this.#setGroup(c.group, undefined);
      c.group = '';
      this.#setConversation(type, target, c);
      return { kind: 'removed' };
    }
    this.#setGroup(c.group, next);
    const removed = before.filter((b) => removedLeaves.includes(b.leaf)).map((b) => b.identity);
    const keysChanged = this.#noteKeys(next);
    return { kind: 'changed', epoch: Number(next.groupContext.epoch), added, removed, keysChanged };
  }

  /**
   * Decrypts an application message (of this epoch, or of one of the past epochs whose keys
   * are kept), answering the new state, the plaintext and the sender's identity (ts-mls'
   * `processPrivateMessage` does not say who sent it).
   * @param {any} state
   * @param {any} pm
   * @param {any} cs
   */
  async #decrypt(state, pm, cs) {
    const current = pm.epoch === state.groupContext.epoch;
    if (pm.epoch > state.groupContext.epoch) throw new Error('a message for an epoch still to come');
    const data = current
      ? {
          senderDataSecret: state.keySchedule.senderDataSecret,
          secretTree: state.secretTree,
          ratchetTree: state.ratchetTree,
          groupContext: state.groupContext,
        }
      : state.historicalReceiverData.get(pm.epoch);
    if (!data) throw new Error('a message of an epoch whose keys are gone');
    const out = await unprotectPrivateMessage(
      data.senderDataSecret,
      pm,
      data.secretTree,
      data.ratchetTree,
      data.groupContext,
      state.clientConfig.keyRetentionConfig,
      cs,
    );
    const content = out.content.content;
    if (content.contentType !== 'application') throw new Error('not an application message');
    if (content.sender.senderType !== 'member') throw new Error('not sent by a member');
    const node = data.ratchetTree[content.sender.leafIndex * 2];
    if (node?.nodeType !== 'leaf') throw new Error('the sender is not in the group');
    const newState = current
      ? { ...state, secretTree: out.tree }
      : {
          ...state,
          historicalReceiverData: new Map([...state.historicalReceiverData, [pm.epoch, { ...data, secretTree: out.tree }]]),
        };
    return {
      result: { newState, message: /** @type {Uint8Array} */ (content.applicationData) },
      sender: identityOf(node.leaf.credential),
    };
  }

  // ---------------------------------------------------------------- sending

  /**
   * Sends a text message to the encrypted conversation.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {string} text
   * @returns {Promise<Decrypted>}
   */
  sendText(conversationType, targetId, text) {
    return this.send(conversationType, targetId, 'text', { text });
  }

  /**
   * Sends a message of any type (its content a JSON object) inside the encryption: the server
   * sees an `mls` message. The conversation's group is made on first use, with every device of
   * its users that has key packages; devices that are new since are added first (looked for at
   * most once a minute, and after a change to a group's members), and the devices of users who
   * left are removed.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {string} type
   * @param {Record<string, unknown>} content
   * @returns {Promise<Decrypted>}
   */
  send(conversationType, targetId, type, content) {
    if (!content || typeof content !== 'object' || Array.isArray(content)) {
      return Promise.reject(new E2eeError('invalid', 'content is a JSON object'));
    }
    const inner = textEncoder.encode(JSON.stringify({ type, content }));
    return this.#exclusive(async () => {
      const group = await this.#prepare(conversationType, targetId);
      const cs = await cipherSuite();
      for (let i = 0; i < COMMIT_TRIES; i += 1) {
        const state = this.#group(group);
        if (!state) throw new E2eeError('invalid', "this device left the conversation's group");
        const made = await createApplicationMessage(state, inner, cs);
        this.#setGroup(group, made.newState);
        const bytes = encodeMlsMessage({ version: 'mls10', wireformat: 'mls_private_message', privateMessage: made.privateMessage });
        const result = await this.#sendMls(conversationType, targetId, bytes, undefined);
        if (result.sent) {
          /** @type {Decrypted} */
          const d = {
            uid: result.sent.messageUId,
            conversationType,
            targetId,
            senderId: this.#user,
            senderDevice: this.#device,
            seq: result.sent.seq,
            sentTime: result.sent.sentTime,
            type,
            content,
          };
          this.#cache(d);
          await this.#save();
          return d;
        }
        // A commit came first: take it in and encrypt again for the new epoch.
        await this.#catchUp(conversationType, targetId, Infinity);
      }
      throw new E2eeError('busy', "the conversation's group kept changing: try again");
    });
  }

  /**
   * Removes every device of these users from the conversation's group (mirroring their leaving
   * a group), in one commit.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {string[]} userIds
   * @returns {Promise<void>}
   */
  removeUsers(conversationType, targetId, userIds) {
    return this.#exclusive(async () => {
      const group = await this.#prepare(conversationType, targetId);
      for (let i = 0; i < COMMIT_TRIES; i += 1) {
        const state = this.#group(group);
        if (!state) return;
        const leaving = membersOf(state).filter((mem) => {
          const s = splitIdentity(mem.identity);
          return s !== null && userIds.includes(s.user);
        });
        if (leaving.length === 0) return;
        const proposals = leaving.map((mem) => ({ proposalType: /** @type {const} */ ('remove'), remove: { removed: mem.leaf } }));
        if (await this.#commit(conversationType, targetId, group, proposals)) return;
      }
      throw new E2eeError('busy', "the conversation's group kept changing: try again");
    });
  }

  /**
   * Catches up on the conversation, makes its group if it has none, removes the devices of
   * users no longer in the conversation, and adds the devices of its users that are not in it
   * yet. Answers the group's id (hex).
   * @param {number} type
   * @param {string} target
   * @returns {Promise<string>}
   */
  async #prepare(type, target) {
    await this.#catchUp(type, target, Infinity);
    const users = await this.#usersOf(type, target);
    for (let i = 0; i < COMMIT_TRIES; i += 1) {
      const c = this.#conversation(type, target);
      const state = this.#group(c.group);
      if (!state) {
        if (!(await this.#start(type, target, users))) {
          // Another device started the group first: its Welcome is in the history.
          await this.#catchUp(type, target, Infinity);
        }
        continue;
      }
      const members = membersOf(state);
      const gone = members.filter((mem) => {
        const s = splitIdentity(mem.identity);
        return s !== null && !users.includes(s.user);
      });
      if (gone.length > 0) {
        const proposals = gone.map((mem) => ({ proposalType: /** @type {const} */ ('remove'), remove: { removed: mem.leaf } }));
        await this.#commit(type, target, c.group, proposals);
        continue;
      }
      const key = conversationKey(type, target);
      const at = this.#checked.get(key);
      if (at !== undefined && Date.now() - at < DEVICE_CHECK_MS) return c.group;
      const claimed = await this.#claim(
        users,
        members.map((mem) => mem.identity),
      );
      if (claimed.length === 0) {
        this.#checked.set(key, Date.now());
        return c.group;
      }
      const proposals = claimed.map((keyPackage) => ({ proposalType: /** @type {const} */ ('add'), add: { keyPackage } }));
      if (await this.#commit(type, target, c.group, proposals)) {
        this.#checked.set(key, Date.now());
        return c.group;
      }
    }
    throw new E2eeError('busy', "the conversation's group kept changing: try again");
  }

  /**
   * Makes the conversation's group with every device of `users` (this one aside); false if
   * another device's group came first.
   * @param {number} type
   * @param {string} target
   * @param {string[]} users
   */
  async #start(type, target, users) {
    const cs = await cipherSuite();
    const claimed = await this.#claim(users, [this.identity]);
    for (const user of users) {
      if (user === this.#user) continue;
      if (!claimed.some((kp) => splitIdentity(identityOf(kp.leafNode.credential))?.user === user)) {
        throw new E2eeError('noDevices', `${user} has no device that takes encrypted messages`);
      }
    }
    const id = cs.rng.randomBytes(16);
    const own = await this.#makeKeyPackage(false);
    const state = await createGroup(id, own.publicPackage, own.privatePackage, [], cs, clientConfig);
    const made = await createCommit(
      { state, cipherSuite: cs },
      {
        extraProposals: claimed.map((keyPackage) => ({ proposalType: /** @type {const} */ ('add'), add: { keyPackage } })),
        ratchetTreeExtension: true,
        wireAsPublicMessage: true,
      },
    );
    const result = await this.#sendMls(type, target, encodeMlsMessage(made.commit), this.#welcomeBytes(made.welcome));
    if (!result.sent) return false;
    const group = hex(id);
    this.#setGroup(group, made.newState);
    const c = this.#conversation(type, target);
    c.group = group;
    this.#setConversation(type, target, c);
    this.#noteKeys(made.newState);
    await this.#save();
    return true;
  }

  /** @param {any} welcome @returns {Uint8Array | undefined} */
  #welcomeBytes(welcome) {
    return welcome ? encodeMlsMessage({ version: 'mls10', wireformat: 'mls_welcome', welcome }) : undefined;
  }

  /**
   * Makes and sends a commit of these proposals; puts it in effect if the server took it
   * (true), or drops it and takes in the commit that came first (false).
   * @param {number} type
   * @param {string} target
   * @param {string} group
   * @param {any[]} proposals
   */
  async #commit(type, target, group, proposals) {
    const cs = await cipherSuite();
    const state = this.#group(group);
    const made = await createCommit(
      { state, cipherSuite: cs },
      { extraProposals: proposals, ratchetTreeExtension: true, wireAsPublicMessage: true },
    );
    const result = await this.#sendMls(type, target, encodeMlsMessage(made.commit), this.#welcomeBytes(made.welcome));
    if (result.sent) {
      this.#setGroup(group, made.newState);
      this.#noteKeys(made.newState);
      await this.#save();
      return true;
    }
    // The pending commit is dropped (the state before it is kept as it was).
    await this.#catchUp(type, target, Infinity);
    return false;
  }

  /**
   * Sends an `mls` message; `code` when the server refused it because another commit or group
   * came first.
   * @param {number} type
   * @param {string} target
   * @param {Uint8Array} message
   * @param {Uint8Array | undefined} welcome
   * @returns {Promise<{ sent?: import('./types.js').Message, code?: number }>}
   */
  async #sendMls(type, target, message, welcome) {
    /** @type {Record<string, string>} */
    const content = { mls: toBase64(message) };
    if (welcome) content.welcome = toBase64(welcome);
    const clientMsgId = `mls-${hex(crypto.getRandomValues(new Uint8Array(16)))}`;
    this.#rememberSent(clientMsgId);
    await this.#save();
    try {
      const sent = await this.#client.sendMessage(type, target, new UnknownMessage({ objectName: 'mls', content }), {
        clientMsgId,
      });
      return { sent };
    } catch (e) {
      if (e instanceof TidingsError && (e.serverCode === EPOCH_CONFLICT || e.serverCode === NOT_THIS_GROUP)) {
        this.#conflicts += 1;
        return { code: e.serverCode };
      }
      throw e;
    }
  }

  /**
   * The users whose devices belong in the conversation's group.
   * @param {number} type
   * @param {string} target
   * @returns {Promise<string[]>}
   */
  async #usersOf(type, target) {
    if (type === ConversationType.GROUP || type === ConversationType.DISCUSSION) {
      const users = [];
      let pageToken = '';
      for (;;) {
        const page = await this.#client.getGroupMembers(target, { count: 500, pageToken });
        users.push(...page.members.map((mem) => mem.userId));
        if (!page.nextPageToken) return users;
        pageToken = page.nextPageToken;
      }
    }
    return target === this.#user ? [target] : [target, this.#user];
  }

  /**
   * Claims key packages of the devices of `users` not in `except`, ten users a query, each
   * checked: it verifies, is of the ciphersuite, and names the `user:device` it was handed out
   * for.
   * @param {string[]} users
   * @param {string[]} except
   */
  async #claim(users, except) {
    const cs = await cipherSuite();
    const out = [];
    for (let i = 0; i < users.length; i += 10) {
      for (const k of await this.#client.claimKeyPackages(users.slice(i, i + 10), except)) {
        const decoded = decodeMlsMessage(k.keyPackage, 0)?.[0];
        if (decoded?.wireformat !== 'mls_key_package') {
          throw new E2eeError('invalid', `the key package handed out for ${k.userId}:${k.deviceId} is not one`);
        }
        const kp = decoded.keyPackage;
        if (kp.cipherSuite !== CIPHERSUITE) {
          throw new E2eeError('invalid', `the key package handed out for ${k.userId}:${k.deviceId} is of another ciphersuite`);
        }
        const valid =
          (await verifyKeyPackage(kp, cs.signature)) && (await verifyLeafNodeSignatureKeyPackage(kp.leafNode, cs.signature));
        if (!valid) throw new E2eeError('invalid', `the key package handed out for ${k.userId}:${k.deviceId} does not verify`);
        const named = identityOf(kp.leafNode.credential);
        if (named !== `${k.userId}:${k.deviceId}`) {
          throw new E2eeError('invalid', `the key package handed out for ${k.userId}:${k.deviceId} names ${named}`);
        }
        out.push(kp);
      }
    }
    return out;
  }
}

