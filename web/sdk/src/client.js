// TidingsClient: the connection, delivery and the Promise API (shaped after seed 004's
// RongIMClient). One client owns at most one live transport at a time; everything that must
// survive a reconnect (the inbox cursor, the reorder buffer, unanswered sends) lives on the
// client, not on the transport.
//
// What it guarantees is what the Rust SDK guarantees: every inbox entry is presented once, in
// inbox order, across reconnects and transports. Pushes that arrive above a gap are held until
// sync fills it; duplicates are dropped by inbox seq and uid; acknowledgements are cumulative
// (QUERYCON of the cursor); after every connect the client resends unanswered sends with their
// client message ids (flagged dup) and syncs from its cursor, page by page.

import {
  ConnectionStatus,
  ConversationNotificationStatus,
  ConversationType,
  ErrorCode,
  MessageDirection,
  SentStatus,
  TOKEN_CODES,
  TidingsError,
  TransportType,
  connackErrorCode,
  isRetryable,
  statusOfDisconnect,
} from './codes.js';
import { fromBase64, toBase64 } from './base64.js';
import { Emitter } from './emitter.js';
import { Inbox } from './inbox.js';
import { MessageContent, TypingStatusMessage, contentClass, decodeContent, registerMessageType } from './messages.js';
import { fetchNavigation, navigationOf, nodeOf } from './navi.js';
import { defaultStorage, readJson } from './storage.js';
import { PollTransport, WebSocketTransport, errorText, sleep } from './transport.js';
import {
  chatroomOf,
  conversationKey,
  conversationOf,
  entryOf,
  groupOf,
  int,
  memberOf,
  messageOf,
  presenceOf,
} from './wire.js';

/**
 * @typedef {import('./types.js').Message} Message
 * @typedef {import('./types.js').Conversation} Conversation
 * @typedef {import('./types.js').ConversationChange} ConversationChange
 * @typedef {import('./types.js').MentionedInfo} MentionedInfo
 * @typedef {import('./storage.js').StorageProvider} StorageProvider
 * @typedef {import('./transport.js').Frame} Frame
 * @typedef {import('./transport.js').Node} Node
 * @typedef {import('./navi.js').Navigation} Navigation
 * @typedef {WebSocketTransport | PollTransport} Transport
 * @typedef {'auto' | 'websocket' | 'polling'} TransportMode
 */

/**
 * @typedef {object} InitOptions
 * @property {string} [navi] the navigation URL (`https://chat.example.com` or its `/navi`);
 *   in a browser, the page's origin when neither this nor `servers` is given
 * @property {(string | Partial<Node>)[]} [servers] nodes to connect to, without navigation:
 *   base URLs (`http://127.0.0.1:9091`) or `{ws, poll, http}` objects
 * @property {any} [WebSocket] a WebSocket constructor; the global one by default (in Node,
 *   pass the `ws` package's); `null`: long-polling only
 * @property {typeof fetch} [fetch] the global `fetch` by default
 * @property {StorageProvider} [storage] `localStorage` when there is one, else memory
 * @property {number[]} [reconnectRates] delays between reconnect attempts (ms); the last repeats
 * @property {TransportMode} [transport] `auto` (WebSocket, falling back to long-polling), or one
 * @property {string} [deviceId] a stable id for this device; by default one generated and kept
 *   in the storage (so pages sharing a storage are one device: a second one kicks the first)
 * @property {string} [platform] `web` by default
 * @property {boolean} [autoReconnect] reconnect by itself after a connection is lost (default true)
 * @property {number} [websocketAttempts] failed WebSocket attempts in a row before `auto` falls
 *   back to long-polling (default 2)
 * @property {number} [connectTimeoutMs] for opening a transport, and again for the CONNACK (10 s)
 * @property {number} [naviTimeoutMs] 10 s
 * @property {number} [sendTimeoutMs] how long a send waits for its PUBACK, across reconnects (30 s)
 * @property {number} [queryTimeoutMs] 30 s
 * @property {number} [syncPageSize] inbox entries per sync page (1–500; 100)
 * @property {number} [syncIntervalMs] a sync runs this often while connected (180 s), besides
 *   after every connect and whenever a gap shows
 * @property {number} [pollWaitMs] how long a poll waits (the navigation's, else 25 s)
 * @property {boolean} [autoAck] acknowledge messages as they are presented (default true)
 */

/**
 * @typedef {object} Callback
 * @property {(value: any, extra?: any) => void} [onSuccess]
 * @property {(code: number, error: TidingsError) => void} [onError]
 */

/**
 * @typedef {object} ConnectCallback
 * @property {(userId: string) => void} [onSuccess]
 * @property {() => void} [onTokenIncorrect]
 * @property {(code: number, error: TidingsError) => void} [onError]
 */

/**
 * @typedef {object} SendOptions
 * @property {string} [pushContent] the text of push notifications (at most 512 bytes)
 * @property {string} [pushData] data for the app carried by its push notifications (at most 1,024 bytes)
 * @property {MentionedInfo} [mentionedInfo] group messages: whom it mentions (or the content's)
 * @property {string[]} [mentionedUserIds] group messages: the members it mentions
 * @property {boolean} [mentionAll] group messages: it mentions everyone
 * @property {string[]} [userIds] group messages: a directed message to these members only
 * @property {boolean} [isStatus] a status message: never stored, at most once (the content
 *   class's `isPersited: false` implies it)
 * @property {string} [clientMsgId] resend a message with the id it had
 * @property {'NORMAL' | 'LOW'} [priority] chatroom messages
 * @property {(message: Message) => void} [onBefore] called with the local message (status
 *   SENDING) before it goes out
 * @property {(message: Message) => void} [onSuccess]
 * @property {(code: number, error: TidingsError) => void} [onError]
 */

/**
 * @typedef {object} ChatroomEntryInput
 * @property {string} key 1–128 of `A-Za-z0-9_+=-.`
 * @property {string} value at most 4,096 bytes
 * @property {boolean} [isAutoDelete] removed when this user leaves the room (seed 004's name)
 * @property {boolean} [autoDelete] the same
 */

/**
 * @typedef {{ conversationType: number, targetId: string, seq: number }} MessageRef
 */

/**
 * @typedef {object} HistoryOptions
 * @property {number} [beforeSeq]
 * @property {number} [afterSeq]
 * @property {number} [beforeTime] ms
 * @property {number} [afterTime] ms
 * @property {number} [count] 1–100 (20)
 */

const DEFAULTS = Object.freeze({
  reconnectRates: [100, 1000, 3000, 6000, 10000],
  transport: /** @type {TransportMode} */ ('auto'),
  platform: 'web',
  autoReconnect: true,
  websocketAttempts: 2,
  connectTimeoutMs: 10_000,
  naviTimeoutMs: 10_000,
  sendTimeoutMs: 30_000,
  queryTimeoutMs: 30_000,
  syncPageSize: 100,
  syncIntervalMs: 180_000,
  autoAck: true,
});

/**
 * Delivered entries are acknowledged together, by one QUERYCON of the cursor, at most this long
 * after the first of them was presented, or once `CONFIRM_BATCH` wait: far below the server's
 * 10 s resend timeout, and one frame instead of one each.
 */
const CONFIRM_DELAY_MS = 50;
const CONFIRM_BATCH = 64;
/** Application queries are numbered from here; sync pages count up from 1. */
const FIRST_QUERY_ID = 2 ** 31;
/** Conversations kept in the storage's cache. */
const CACHED_CONVERSATIONS = 200;
const { DO_NOT_DISTURB, NOTIFY } = ConversationNotificationStatus;
/** A chatroom's notices, and its gap markers. */
const NOTICE_TYPE = 'tidings:chatroom';
const GAP_TYPE = 'tidings:gap';
/** Built-in types, which always count as unread. */
const BUILT_IN = new Set(['text', 'image', 'file', 'voice', 'location', 'rich']);

/** A connection attempt that failed. */
class ConnectError extends TidingsError {
  /**
   * @param {number} code
   * @param {string} message
   * @param {{ serverCode?: number, refused?: boolean, final?: boolean }} [how]
   */
  constructor(code, message, how = {}) {
    super(code, message, how.serverCode);
    /** The server answered (a refused CONNACK), rather than the transport failing. */
    this.refused = how.refused ?? false;
    /** Retrying would repeat the refusal. */
    this.final = how.final ?? false;
    /** The transport could not be opened or carried no CONNACK (not navigation, not a refusal). */
    this.carriage = false;
  }
}

/** @param {unknown} e */
function asConnectError(e) {
  if (e instanceof ConnectError) return e;
  if (e instanceof TidingsError) return new ConnectError(e.code, e.message, { serverCode: e.serverCode });
  return new ConnectError(ErrorCode.RC_SOCKET_NOT_CREATED, errorText(e));
}

/**
 * @typedef {object} Link one established connection
 * @property {Transport} transport
 * @property {string} sessionId
 * @property {number} heartbeatMs
 * @property {number} lastInbound
 * @property {string} http the node's HTTP base URL (files)
 * @property {ReturnType<typeof setInterval> | null} pingTimer
 * @property {ReturnType<typeof setInterval> | null} syncTimer
 */

/**
 * @typedef {object} PendingSend a send waiting for its PUBACK
 * @property {Record<string, unknown>} send the frame's `send` body
 * @property {Message} message
 * @property {(m: Message) => void} resolve
 * @property {(e: TidingsError) => void} reject
 * @property {ReturnType<typeof setTimeout>} timer
 */

/**
 * @typedef {{ wire: Record<string, any>, offline: boolean }} Entry an inbox entry to present
 */

/**
 * A fresh client message id: the time and 64 random bits, in hex (as the Rust SDK).
 */
function newClientMsgId() {
  return `${Date.now().toString(16)}-${randomHex(8)}`;
}

/** @param {number} bytes */
function randomHex(bytes) {
  const b = new Uint8Array(bytes);
  /** @type {any} */
  const g = globalThis;
  if (g.crypto?.getRandomValues) g.crypto.getRandomValues(b);
  else for (let i = 0; i < bytes; i++) b[i] = Math.floor(Math.random() * 256);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * Whether `v` is a seed-style callback object.
 * @param {unknown} v
 * @returns {v is Callback}
 */
function isCallback(v) {
  if (!v || typeof v !== 'object') return false;
  const o = /** @type {Record<string, unknown>} */ (v);
  return typeof o.onSuccess === 'function' || typeof o.onError === 'function';
}

/**
 * Calls a seed-style callback when the promise settles, and answers the promise. A rejection
 * that the callback handles is not an unhandled rejection.
 * @template T
 * @param {Promise<T>} promise
 * @param {Callback | undefined} cb
 * @returns {Promise<T>}
 */
function withCallback(promise, cb) {
  if (!cb) return promise;
  promise.then(
    (v) => cb.onSuccess?.(v),
    (e) => cb.onError?.(e instanceof TidingsError ? e.code : ErrorCode.UNKNOWN, e),
  );
  promise.catch(() => {});
  return promise;
}

export class TidingsClient {
  /** @type {TidingsClient | null} */
  static #instance = null;

  /**
   * Seed 004's `RongIMClient.init`: makes the default instance (see `getInstance`).
   * @param {string} appKey
   * @param {InitOptions} [options]
   */
  static init(appKey, options) {
    const client = new TidingsClient();
    client.init(appKey, options);
    TidingsClient.#instance = client;
    return client;
  }

  /** The instance `TidingsClient.init` made. */
  static getInstance() {
    if (!TidingsClient.#instance) {
      throw new TidingsError(ErrorCode.BIZ_ERROR_CLIENT_NOT_INIT, 'call TidingsClient.init first');
    }
    return TidingsClient.#instance;
  }

  /**
   * @param {string} token
   * @param {ConnectCallback} [callback]
   */
  static connect(token, callback) {
    return TidingsClient.getInstance().connect(token, callback);
  }

  /** @param {{ onChanged: (status: number, detail?: { code: number, message: string }) => void }} listener */
  static setConnectionStatusListener(listener) {
    TidingsClient.getInstance().setConnectionStatusListener(listener);
  }

  /** @param {{ onReceived: (message: Message) => void }} listener */
  static setOnReceiveMessageListener(listener) {
    TidingsClient.getInstance().setOnReceiveMessageListener(listener);
  }

  /**
   * @param {ConnectCallback | { auto?: boolean, rate?: number[] }} [callbackOrConfig]
   * @param {{ auto?: boolean, rate?: number[] }} [config]
   */
  static reconnect(callbackOrConfig, config) {
    return TidingsClient.getInstance().reconnect(callbackOrConfig, config);
  }

  static registerMessageType = registerMessageType;

  /** @type {string} */
  #appKey = '';
  /** @type {Required<Omit<InitOptions, 'navi' | 'servers' | 'deviceId' | 'pollWaitMs' | 'WebSocket'>> & { navi?: string, servers?: Node[], deviceId: string, pollWaitMs?: number, WebSocket: any }} */
  #options = /** @type {any} */ (null);
  #events = new Emitter();
  /** @type {{ onChanged: (status: number, detail?: { code: number, message: string }) => void } | null} */
  #statusListener = null;
  /** @type {{ onReceived: (message: Message) => void } | null} */
  #messageListener = null;

  #status = /** @type {number} */ (ConnectionStatus.DISCONNECTED);
  /** @type {string | null} */
  #token = null;
  #userId = '';
  /** @type {Link | null} */
  #link = null;
  /** The transport this client uses now (`auto` falls back from WebSocket to polling). */
  /** @type {'websocket' | 'polling'} */
  #kind = 'websocket';
  #wsFailures = 0;
  #reportedNoWebSocket = false;
  /** The application wants to be connected: reconnect after a loss. */
  #wantOnline = false;
  /** @type {Promise<string> | null} */
  #attempting = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #reconnectTimer = null;
  #attempt = 0;
  #everConnected = false;
  /** @type {Navigation | null} */
  #navigation = null;
  #deltaTime = 0;

  /** @type {Inbox<Entry>} */
  #inbox = new Inbox(null);
  /** @type {Map<number, PendingSend>} */
  #pending = new Map();
  #nextPacketId = 0;
  /** @type {Map<number, { resolve: (q: Record<string, any>) => void, reject: (e: TidingsError) => void, timer: ReturnType<typeof setTimeout> }>} */
  #queries = new Map();
  #nextQueryId = FIRST_QUERY_ID;
  #syncing = false;
  #syncQueryId = 0;
  /** @type {(() => void)[]} */
  #syncWaiters = [];
  /** @type {ReturnType<typeof setTimeout> | null} */
  #confirmTimer = null;
  #unconfirmed = 0;
  #stats = { duplicatesDropped: 0, dupFlagged: 0, reconnects: 0, resentPublishes: 0 };

  /** @type {Map<string, Conversation>} */
  #conversations = new Map();
  /** The user whose conversations and cursor are loaded. */
  #loadedFor = '';
  #saveQueued = false;
  /** @type {(() => void) | null} */
  #onlineHandler = null;
  /**
   * The chatrooms this client is in, each with the newest seq presented of it: joined again
   * after a reconnect, asking for what came after.
   * @type {Map<string, number>}
   */
  #rooms = new Map();
  /** Chatroom queries whose answers change `#rooms`, by query id. @type {Map<number, { kind: 'join' | 'quit' | 'rejoin', room: string }>} */
  #roomQueries = new Map();
  /** The HTTP base URL of the last node connected to (files). */
  #lastHttp = '';
  /** The users whose presence this client watches, to watch again after a reconnect. @type {string[]} */
  #watching = [];

  /**
   * Sets the client up (seed 004's `init`). Call once, before `connect`.
   * @param {string} appKey the app's key (namespaces what is kept in the storage)
   * @param {InitOptions} [options]
   * @returns {this}
   */
  init(appKey, options = {}) {
    /** @type {any} */
    const g = globalThis;
    const storage = options.storage ?? defaultStorage();
    const deviceId = options.deviceId ?? this.#storedDeviceId(appKey, storage);
    this.#appKey = appKey;
    this.#options = {
      ...DEFAULTS,
      ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
      storage,
      deviceId,
      // `null` says there is none (long-polling only), even where a global one exists.
      WebSocket: options.WebSocket === undefined ? (g.WebSocket ?? null) : options.WebSocket,
      fetch: options.fetch ?? g.fetch?.bind(g),
      servers: options.servers?.map(nodeOf),
      navi: options.navi ?? (options.servers ? undefined : g.location?.origin),
    };
    if (this.#options.reconnectRates.length === 0) this.#options.reconnectRates = [...DEFAULTS.reconnectRates];
    const mode = this.#options.transport;
    this.#kind = mode === 'polling' || (mode === 'auto' && !this.#options.WebSocket) ? 'polling' : 'websocket';
    return this;
  }

  /**
   * @param {string} appKey
   * @param {StorageProvider} storage
   */
  #storedDeviceId(appKey, storage) {
    const key = `tidings:${appKey}:deviceId`;
    const kept = storage.getItem(key);
    if (kept) return kept;
    const id = `web-${randomHex(8)}`;
    storage.setItem(key, id);
    return id;
  }

  #requireInit() {
    if (!this.#options) throw new TidingsError(ErrorCode.BIZ_ERROR_CLIENT_NOT_INIT, 'call init first');
  }

  // ---------------------------------------------------------------- listeners and state

  /**
   * Seed 004's status listener: `onChanged(status)` with a `ConnectionStatus` (or, for a
   * session the server ended for a reason with no status of its own, the server's code).
   * @param {{ onChanged: (status: number, detail?: { code: number, message: string }) => void }} listener
   */
  setConnectionStatusListener(listener) {
    this.#statusListener = listener;
  }

  /**
   * Seed 004's message listener: `onReceived(message)` for every message presented, in order,
   * once.
   * @param {{ onReceived: (message: Message) => void }} listener
   */
  setOnReceiveMessageListener(listener) {
    this.#messageListener = listener;
  }

  /**
   * Listens to an event: `message` (Message), `status` (status, detail), `conversation`
   * (Conversation, from the cache, after it changed), `typing`, `readReceipt`,
   * `messagesDeleted`, `quietHours`, `presence`, `chatroom`, `transport` ('websocket' |
   * 'polling'), `sentStatus` (Message), `error` (an error a listener threw).
   * @param {string} event
   * @param {(...args: any[]) => void} listener
   * @returns {() => void} removes the listener
   */
  on(event, listener) {
    return this.#events.on(event, listener);
  }

  /**
   * @param {string} event
   * @param {(...args: any[]) => void} listener
   */
  off(event, listener) {
    this.#events.off(event, listener);
  }

  getCurrentUserId() {
    return this.#userId;
  }

  getCurrentConnectionStatus() {
    return this.#status;
  }

  /** The transport in use (or to be used next): `TransportType.WEBSOCKET` or `XHR_POLLING`. */
  getTransportType() {
    return this.#kind === 'websocket' ? TransportType.WEBSOCKET : TransportType.XHR_POLLING;
  }

  /** `websocket` or `polling`: the transport in use (or to be used next). */
  get transport() {
    return this.#kind;
  }

  /** The device id this client connects as. */
  get deviceId() {
    this.#requireInit();
    return this.#options.deviceId;
  }

  /** Server time minus this clock (ms), from the last CONNACK (or navigation). */
  getDeltaTime() {
    return this.#deltaTime;
  }

  /** The server's clock now, as estimated from this one (ms). */
  getServerTime() {
    return Date.now() + this.#deltaTime;
  }

  /** Counters, for diagnostics and tests. */
  get stats() {
    return { ...this.#stats, duplicatesDropped: this.#stats.duplicatesDropped + this.#inbox.duplicatesDropped };
  }

  /** The highest inbox seq presented with nothing missing below (null before a connection). */
  get cursor() {
    return this.#inbox.cursor;
  }

  /**
   * @param {number} status
   * @param {{ code: number, message: string }} [detail]
   */
  #setStatus(status, detail) {
    this.#status = status;
    this.#report(status, detail);
  }

  /**
   * Reports a status without making it the current one (navigation progress, fallback).
   * @param {number} status
   * @param {{ code: number, message: string }} [detail]
   */
  #report(status, detail) {
    if (this.#statusListener) {
      try {
        this.#statusListener.onChanged(status, detail);
      } catch (e) {
        this.#events.report(e);
      }
    }
    this.#events.emit('status', status, detail);
  }

  // ---------------------------------------------------------------- connecting

  /**
   * Connects and authenticates; resolves with the user id. In `auto` transport mode a
   * WebSocket that fails `websocketAttempts` times in a row gives way to long-polling, within
   * this call. Once connected, a lost connection is made again by itself (see `reconnectRates`).
   * @param {string} token
   * @param {ConnectCallback} [callback]
   * @returns {Promise<string>}
   */
  connect(token, callback) {
    const p = this.#connect(token);
    if (callback) {
      p.then(
        (id) => callback.onSuccess?.(id),
        (e) => {
          if (TOKEN_CODES.has(e.serverCode) && callback.onTokenIncorrect) callback.onTokenIncorrect();
          else callback.onError?.(e.code, e);
        },
      );
      p.catch(() => {});
    }
    return p;
  }

  /** @param {string} token */
  async #connect(token) {
    this.#requireInit();
    if (this.#attempting) throw new TidingsError(ErrorCode.BIZ_ERROR_CONNECTING, 'already connecting');
    if (this.#link && this.#token === token) return this.#userId;
    if (this.#link) await this.#closeLink();
    this.#cancelReconnect();
    this.#token = token;
    this.#wantOnline = true;
    this.#attempt = 0;
    this.#watchOnline(true);
    if (this.#options.transport === 'auto' && !this.#options.WebSocket && !this.#reportedNoWebSocket) {
      this.#reportedNoWebSocket = true;
      this.#report(ConnectionStatus.WEBSOCKET_UNAVAILABLE, {
        code: ErrorCode.RC_SOCKET_NOT_CREATED,
        message: 'no WebSocket here: using long-polling',
      });
    }
    for (;;) {
      const kind = this.#kind;
      try {
        return await this.#attemptOnce();
      } catch (e) {
        const err = asConnectError(e);
        if (!this.#wantOnline) throw err;
        // Within connect, only the WebSocket → long-polling fallback is retried: other
        // failures are the caller's to see.
        const fellBack = kind === 'websocket' && this.#kind === 'polling';
        const retryWs = kind === 'websocket' && this.#options.transport === 'auto' && err.carriage;
        if (!err.final && (fellBack || retryWs)) {
          if (!fellBack) await sleep(this.#options.reconnectRates[0]);
          if (this.#wantOnline) continue;
        }
        this.#wantOnline = false;
        this.#watchOnline(false);
        this.#failPending(err.code, err.message);
        this.#setStatus(this.#statusOfFailure(err), { code: err.serverCode, message: err.message });
        throw err;
      }
    }
  }

  /**
   * The status a failed attempt leaves: a refusal's own, else the network is unavailable.
   * @param {ConnectError} err
   */
  #statusOfFailure(err) {
    if (err.refused) return statusOfDisconnect(err.serverCode, !err.final);
    return ConnectionStatus.NETWORK_UNAVAILABLE;
  }

  /**
   * Reconnects (seed 004's `reconnect`). Without `auto`, one attempt now; with it, one after
   * each delay of `rate`, rejecting with `NETWORK_UNAVAILABLE` (3) when they run out. A refusal
   * that retrying would repeat (a bad token) rejects at once.
   * @param {ConnectCallback | { auto?: boolean, rate?: number[] }} [callbackOrConfig]
   * @param {{ auto?: boolean, rate?: number[] }} [config]
   * @returns {Promise<string>}
   */
  reconnect(callbackOrConfig, config) {
    /** @type {ConnectCallback | undefined} */
    let callback;
    if (isCallback(callbackOrConfig)) callback = /** @type {ConnectCallback} */ (callbackOrConfig);
    else config = config ?? /** @type {{ auto?: boolean, rate?: number[] }} */ (callbackOrConfig);
    return withCallback(this.#reconnect(config ?? {}), callback);
  }

  /** @param {{ auto?: boolean, rate?: number[] }} config */
  async #reconnect(config) {
    this.#requireInit();
    if (!this.#token) throw new TidingsError(ErrorCode.BIZ_ERROR_CLIENT_NOT_INIT, 'connect first');
    if (this.#link) return this.#userId;
    this.#cancelReconnect();
    this.#wantOnline = true;
    this.#watchOnline(true);
    const delays = config.auto ? (config.rate ?? this.#options.reconnectRates) : [0];
    /** @type {ConnectError | null} */
    let last = null;
    for (const delay of delays) {
      if (delay > 0) await sleep(delay);
      if (!this.#wantOnline) break;
      if (this.#link) return this.#userId;
      try {
        return await this.#attemptOnce();
      } catch (e) {
        last = asConnectError(e);
        if (last.final) {
          this.#endForGood(last.serverCode, last.message);
          throw last;
        }
      }
    }
    if (this.#wantOnline && this.#options.autoReconnect) this.#scheduleReconnect();
    throw new TidingsError(
      config.auto ? ConnectionStatus.NETWORK_UNAVAILABLE : (last?.code ?? ConnectionStatus.NETWORK_UNAVAILABLE),
      last?.message ?? 'not connected',
    );
  }

  /**
   * One attempt: navigation, then a race over the nodes; the winner becomes the link.
   * @returns {Promise<string>}
   */
  #attemptOnce() {
    if (!this.#attempting) {
      this.#attempting = this.#attemptUnguarded().finally(() => {
        this.#attempting = null;
      });
    }
    return this.#attempting;
  }

  async #attemptUnguarded() {
    this.#setStatus(ConnectionStatus.CONNECTING);
    const nav = await this.#navigate();
    const kind = this.#kind;
    let won;
    try {
      won = await this.#race(nav, kind);
    } catch (e) {
      const err = asConnectError(e);
      // The next attempt asks the navigation again: the nodes may have changed.
      if (this.#options.navi) this.#navigation = null;
      err.carriage = !err.refused;
      if (kind === 'websocket' && err.carriage) this.#websocketFailed();
      throw err;
    }
    if (!this.#wantOnline) {
      // Disconnected while connecting.
      won.transport.close({ disconnect: { code: ErrorCode.CLIENT_DISCONNECTED } });
      throw new ConnectError(ErrorCode.CLIENT_DISCONNECTED, 'disconnected while connecting', { final: true });
    }
    if (kind === 'websocket') this.#wsFailures = 0;
    this.#established(won.transport, won.connack, won.node);
    return this.#userId;
  }

  /** Counts a failed WebSocket attempt; in `auto` mode, enough of them switch to polling. */
  #websocketFailed() {
    this.#wsFailures += 1;
    if (this.#options.transport === 'auto' && this.#wsFailures >= this.#options.websocketAttempts) {
      this.#kind = 'polling';
      this.#report(ConnectionStatus.WEBSOCKET_UNAVAILABLE, {
        code: ErrorCode.RC_SOCKET_NOT_CREATED,
        message: `WebSocket failed ${this.#wsFailures} times: falling back to long-polling`,
      });
      this.#events.emit('transport', this.#kind);
    }
  }

  /**
   * Where to connect: the configured servers, or the navigation's nodes (fetched once and kept
   * in the storage, which also answers when the navigation cannot be reached).
   * @returns {Promise<Navigation>}
   */
  async #navigate() {
    const o = this.#options;
    if (o.servers && o.servers.length > 0) return { nodes: o.servers };
    if (this.#navigation) return this.#navigation;
    if (!o.navi) {
      throw new ConnectError(ErrorCode.BIZ_ERROR_INVALID_PARAMETER, 'init needs `navi` or `servers`', { final: true });
    }
    const key = `tidings:${this.#appKey}:navi`;
    this.#report(ConnectionStatus.REQUEST_NAVI);
    try {
      const nav = await fetchNavigation(o.navi, o.fetch, o.naviTimeoutMs);
      this.#report(ConnectionStatus.RESPONSE_NAVI);
      o.storage.setItem(key, JSON.stringify(nav));
      if (nav.serverTime) this.#deltaTime = nav.serverTime - (nav.receivedAt ?? Date.now());
      this.#navigation = nav;
      return nav;
    } catch (e) {
      const err = asConnectError(e);
      this.#report(
        err.code === ErrorCode.RC_HTTP_REQ_TIMEOUT
          ? ConnectionStatus.RESPONSE_NAVI_TIMEOUT
          : ConnectionStatus.RESPONSE_NAVI_ERROR,
        { code: err.code, message: err.message },
      );
      // The last answer kept, if any, still says where the nodes were.
      const kept = readJson(o.storage, key);
      if (kept) {
        try {
          return navigationOf(kept, Date.now());
        } catch {
          // Unusable: report the navigation's own failure.
        }
      }
      throw err;
    }
  }

  /**
   * Opens a transport to every node at once. CONNECTs go one at a time, on the transports in
   * the order they opened, and the first accepted wins: CONNECTs of one device on two nodes
   * at once would kick each other (same device id), so they are never concurrent.
   * @param {Navigation} nav
   * @param {'websocket' | 'polling'} kind
   * @returns {Promise<{ transport: Transport, connack: Record<string, any>, node: Node }>}
   */
  #race(nav, kind) {
    const o = this.#options;
    const frame = {
      connect: { protocolVersion: 1, token: this.#token, deviceId: o.deviceId, platform: o.platform },
    };
    const waitMs = o.pollWaitMs ?? nav.pollWaitMs ?? 25_000;
    /** @type {Transport[]} */
    const transports = nav.nodes.map((n) =>
      kind === 'websocket'
        ? new WebSocketTransport(n.ws, o.WebSocket)
        : new PollTransport(n, o.fetch, { waitMs, probe: nav.nodes.length > 1 }),
    );
    return new Promise((resolve, reject) => {
      let settled = false;
      let busy = false;
      let alive = transports.length;
      /** @type {Transport[]} */
      const ready = [];
      /** @type {ConnectError[]} */
      const errors = [];
      /** @param {Transport | null} keep */
      const closeAll = (keep) => {
        for (const t of transports) if (t !== keep) t.close();
      };
      const giveUp = () => {
        if (settled || alive > 0) return;
        settled = true;
        reject(errors.find((e) => e.refused) ?? errors[0] ?? new ConnectError(ErrorCode.RC_NODE_NOT_FOUND, 'no node'));
      };
      const next = () => {
        if (settled || busy) return;
        const t = ready.shift();
        if (!t) return giveUp();
        busy = true;
        t.connect(frame, o.connectTimeoutMs).then(
          (first) => {
            busy = false;
            if (settled) return void t.close();
            const ack = first.connack;
            if (ack && int(ack.code) === 0) {
              settled = true;
              closeAll(t);
              resolve({ transport: t, connack: ack, node: nav.nodes[transports.indexOf(t)] });
              return;
            }
            t.close();
            alive -= 1;
            const err = ack
              ? new ConnectError(connackErrorCode(int(ack.code)), String(ack.message ?? ''), {
                  serverCode: int(ack.code),
                  refused: true,
                  final: !isRetryable(int(ack.code)),
                })
              : first.disconnect
                ? new ConnectError(int(first.disconnect.code), String(first.disconnect.message ?? ''), {
                    refused: true,
                    final: !first.disconnect.reconnect,
                  })
                : new ConnectError(ErrorCode.RC_SOCKET_NOT_CREATED, 'unexpected frame during the handshake');
            errors.push(err);
            if (err.final) {
              settled = true;
              closeAll(null);
              reject(err);
              return;
            }
            next();
          },
          (e) => {
            busy = false;
            t.close();
            alive -= 1;
            errors.push(asConnectError(e));
            next();
          },
        );
      };
      for (const t of transports) {
        t.open(o.connectTimeoutMs).then(
          () => {
            if (settled) return void t.close();
            ready.push(t);
            next();
          },
          (e) => {
            alive -= 1;
            errors.push(asConnectError(e));
            if (!busy) next();
            else giveUp();
          },
        );
      }
    });
  }

  /**
   * Takes an accepted connection into use: what the Rust SDK does after its handshake.
   * @param {Transport} transport
   * @param {Record<string, any>} connack
   * @param {Node} node
   */
  #established(transport, connack, node) {
    const userId = String(connack.userId ?? '');
    if (this.#userId && this.#userId !== userId) this.#forgetUser();
    this.#userId = userId;
    this.#loadUser();
    const heartbeatMs = Math.max(100, int(connack.heartbeatMs) || 30_000);
    /** @type {Link} */
    const link = {
      transport,
      sessionId: String(connack.sessionId ?? ''),
      heartbeatMs,
      lastInbound: Date.now(),
      http: node.http,
      pingTimer: null,
      syncTimer: null,
    };
    this.#link = link;
    this.#lastHttp = node.http;
    const serverTime = int(connack.serverTime);
    if (serverTime > 0) this.#deltaTime = serverTime - Date.now();
    const serverCursor = int(connack.cursor);
    if (this.#inbox.cursor === null) {
      // Where this storage got to, or where the server says this device got to, whichever is
      // further: both were presented here.
      this.#inbox.cursor = Math.max(this.#storedCursor() ?? 0, serverCursor);
    }
    transport.start(
      (f) => this.#onFrame(link, f),
      (reason) => this.#linkEnded(link, { ...reason, reconnect: true, fromServer: false }),
    );
    if (this.#link !== link) return;
    // Chatrooms are joined again first (the server handles a connection's frames in order), so
    // resent chatroom messages find their sender a member.
    for (const [room, afterSeq] of [...this.#rooms].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const queryId = this.#newQueryId();
      this.#roomQueries.set(queryId, { kind: 'rejoin', room });
      this.#send({ query: { queryId, joinChatroom: { chatroomId: room, afterSeq: String(afterSeq) } } });
    }
    // Sends still waiting for a PUBACK go again, flagged dup, with their client message ids.
    for (const id of [...this.#pending.keys()].sort((a, b) => a - b)) this.#writePublish(id, true);
    const cursor = this.#inbox.cursor ?? 0;
    // The server's record of this device is behind (an acknowledgement was lost with the last
    // connection): bring it up to date.
    if (this.#options.autoAck && cursor > serverCursor) {
      this.#send({ querycon: { queryId: 0, inboxSeq: String(cursor) } });
    }
    // The CONNACK's inbox seq was read after the server registered this connection: anything
    // newer is pushed. So a client already that far along has nothing to sync.
    if (!this.#syncing && (cursor < int(connack.inboxSeq) || this.#inbox.gapped)) this.#startSync();
    // Watch again what the last connection watched; the answer is not awaited.
    if (this.#watching.length > 0) {
      this.#send({ query: { queryId: this.#newQueryId(), subscribePresence: { userIds: this.#watching } } });
    }
    link.pingTimer = setInterval(() => this.#heartbeat(link), heartbeatMs);
    link.syncTimer = setInterval(() => {
      if (this.#link === link && !this.#syncing) this.#startSync();
    }, this.#options.syncIntervalMs);
    this.#attempt = 0;
    if (this.#everConnected) this.#stats.reconnects += 1;
    this.#everConnected = true;
    this.#events.emit('transport', this.#kind);
    this.#setStatus(ConnectionStatus.CONNECTED);
  }

  /** @param {Link} link */
  #heartbeat(link) {
    if (this.#link !== link) return;
    if (Date.now() - link.lastInbound >= 3 * link.heartbeatMs) {
      this.#linkEnded(link, {
        code: ErrorCode.RC_PONG_RECV_FAIL,
        message: 'nothing from the server for 3 heartbeat intervals',
        reconnect: true,
        fromServer: false,
      });
      return;
    }
    this.#send({ pingreq: {} });
  }

  /**
   * A connection ended: by the server's DISCONNECT, or by the transport.
   * @param {Link} link
   * @param {{ code: number, message: string, reconnect: boolean, fromServer: boolean }} end
   */
  #linkEnded(link, end) {
    if (this.#link !== link) return;
    this.#dropLink();
    link.transport.close();
    if (!end.reconnect) {
      this.#endForGood(end.code, end.message);
      return;
    }
    const status = end.fromServer ? ConnectionStatus.CONNECTION_CLOSED : ConnectionStatus.NETWORK_UNAVAILABLE;
    this.#setStatus(status, { code: end.code, message: end.message });
    if (this.#wantOnline && this.#options.autoReconnect) this.#scheduleReconnect();
  }

  /**
   * The session is over and reconnecting would repeat the refusal (kicked, banned, token revoked).
   * @param {number} code
   * @param {string} message
   */
  #endForGood(code, message) {
    this.#wantOnline = false;
    this.#cancelReconnect();
    this.#watchOnline(false);
    this.#failPending(code, message);
    this.#setStatus(statusOfDisconnect(code, false), { code, message });
  }

  /** Forgets the current link: timers, waiting queries, the sync in progress. */
  #dropLink() {
    const link = this.#link;
    if (!link) return;
    this.#link = null;
    if (link.pingTimer) clearInterval(link.pingTimer);
    if (link.syncTimer) clearInterval(link.syncTimer);
    if (this.#confirmTimer) clearTimeout(this.#confirmTimer);
    this.#confirmTimer = null;
    this.#unconfirmed = 0;
    this.#syncing = false;
    // Their answers cannot come on another connection.
    this.#roomQueries.clear();
    for (const [id, q] of this.#queries) {
      clearTimeout(q.timer);
      q.reject(new TidingsError(ErrorCode.RC_SOCKET_DISCONNECTED, 'the connection was lost'));
      this.#queries.delete(id);
    }
    this.#wakeSyncWaiters();
    this.#saveCursor();
  }

  #scheduleReconnect() {
    if (this.#reconnectTimer) return;
    const rates = this.#options.reconnectRates;
    const delay = rates[Math.min(this.#attempt, rates.length - 1)];
    this.#attempt += 1;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      this.#backgroundAttempt();
    }, delay);
  }

  async #backgroundAttempt() {
    if (!this.#wantOnline || this.#link) return;
    try {
      await this.#attemptOnce();
    } catch (e) {
      const err = asConnectError(e);
      if (!this.#wantOnline) return;
      if (err.final) {
        this.#endForGood(err.serverCode, err.message);
        return;
      }
      this.#setStatus(ConnectionStatus.NETWORK_UNAVAILABLE, { code: err.code, message: err.message });
      this.#scheduleReconnect();
    }
  }

  #cancelReconnect() {
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
  }

  /**
   * In a browser, reconnect at once when the network comes back.
   * @param {boolean} on
   */
  #watchOnline(on) {
    /** @type {any} */
    const g = globalThis;
    if (typeof g.window === 'undefined' || typeof g.window.addEventListener !== 'function') return;
    if (on && !this.#onlineHandler) {
      this.#onlineHandler = () => {
        if (this.#wantOnline && !this.#link && this.#reconnectTimer) {
          this.#cancelReconnect();
          this.#backgroundAttempt();
        }
      };
      g.window.addEventListener('online', this.#onlineHandler);
    } else if (!on && this.#onlineHandler) {
      g.window.removeEventListener('online', this.#onlineHandler);
      this.#onlineHandler = null;
    }
  }

  /**
   * Says goodbye and stops; sends still waiting fail. Resolves once the goodbye went out.
   * @returns {Promise<void>}
   */
  async disconnect() {
    this.#wantOnline = false;
    this.#cancelReconnect();
    this.#watchOnline(false);
    await this.#closeLink();
    // The server took the connection out of its rooms; a later connect does not rejoin them.
    this.#rooms.clear();
    this.#failPending(ErrorCode.CLIENT_DISCONNECTED, 'the client disconnected');
    this.#saveConversations();
    this.#setStatus(ConnectionStatus.DISCONNECTED);
  }

  /** Acknowledges what waits, says goodbye and closes the current link. */
  async #closeLink() {
    const link = this.#link;
    if (!link) return;
    if (this.#confirmTimer || this.#unconfirmed > 0) this.#confirm();
    this.#dropLink();
    await link.transport.close({ disconnect: { code: ErrorCode.CLIENT_DISCONNECTED } });
  }

  // ---------------------------------------------------------------- frames in

  /**
   * @param {Link} link
   * @param {Frame} frame
   */
  #onFrame(link, frame) {
    if (this.#link !== link) return;
    link.lastInbound = Date.now();
    if (frame.publish) this.#onPublish(frame);
    else if (frame.puback) this.#onPuback(frame.puback);
    else if (frame.queryack) this.#onQueryAck(frame.queryack);
    else if (frame.disconnect) {
      const d = frame.disconnect;
      this.#linkEnded(link, {
        code: int(d.code),
        message: String(d.message ?? ''),
        reconnect: Boolean(d.reconnect),
        fromServer: true,
      });
    }
    // PINGRESP: the activity is what counts. A stray CONNACK changes nothing.
  }

  /** @param {Frame} frame */
  #onPublish(frame) {
    const m = frame.publish.message;
    if (!m) return;
    const type = int(m.conversationType);
    if (int(frame.qos) === 0) {
      this.#onStatusMessage(m, type);
      return;
    }
    if (frame.dup) this.#stats.dupFlagged += 1;
    const seq = int(m.inboxSeq);
    const repeat = seq <= (this.#inbox.cursor ?? 0);
    this.#offer(m, false);
    const presented = this.#flush();
    // Acknowledge what was presented, and again a repeat of something presented earlier (its
    // first acknowledgement may have been lost): the cursor covers both.
    this.#toConfirm(presented + (repeat ? 1 : 0));
    // A gap below what arrived: fetch it.
    if (this.#inbox.gapped && !this.#syncing) this.#startSync();
  }

  /**
   * A message that is not an inbox entry: typing and other status messages, presence, chatroom
   * items. At most once; nothing to acknowledge.
   * @param {Record<string, any>} m
   * @param {number} type
   */
  #onStatusMessage(m, type) {
    if (type === ConversationType.CHATROOM) {
      this.#roomItem(messageOf(m, this.#userId));
      return;
    }
    if (type === ConversationType.NONE && m.msgType === 'tidings:presence') {
      const p = /** @type {any} */ (safeJson(m.content));
      if (p) this.#events.emit('presence', { userId: String(p.userId ?? ''), online: Boolean(p.online), lastSeen: int(p.lastSeen) });
      return;
    }
    const message = messageOf(m, this.#userId);
    if (message.content instanceof TypingStatusMessage) {
      this.#events.emit('typing', {
        conversationType: message.conversationType,
        targetId: message.targetId,
        userId: message.senderUserId,
        typingContentType: message.content.typingContentType,
        sentTime: message.sentTime,
      });
      return;
    }
    this.#presentMessage(message);
  }

  /**
   * Presents an item of a chatroom's stream once, in seq order: a message as a `message`
   * event, a notice or a gap marker as a `chatroom` event. Items of rooms this client is not in
   * (any more) are dropped.
   * @param {Message} m
   */
  #roomItem(m) {
    const room = m.targetId;
    const last = this.#rooms.get(room);
    if (last === undefined) return;
    const wire = /** @type {any} */ (m.content).content;
    if (m.objectName === GAP_TYPE) {
      // A gap marker's range may hold items that were kept and come after it: it does not move
      // the position.
      const g = wire && typeof wire === 'object' ? wire : {};
      this.#events.emit('chatroom', {
        type: 'gap',
        chatroomId: room,
        count: int(g.count),
        fromSeq: int(g.fromSeq),
        toSeq: int(g.toSeq),
      });
      return;
    }
    if (m.seq !== 0) {
      if (m.seq <= last) return;
      this.#rooms.set(room, m.seq);
    }
    if (m.objectName !== NOTICE_TYPE) {
      this.#presentMessage(m);
      return;
    }
    const c = wire && typeof wire === 'object' ? wire : {};
    const userIds = Array.isArray(c.userIds) ? c.userIds.map(String) : [];
    /** @type {import('./types.js').ChatroomNotice} */
    const notice = {
      type: 'notice',
      chatroomId: room,
      seq: m.seq,
      operation: String(c.operation ?? ''),
      operatorId: m.senderUserId,
      userIds,
      count: int(c.count) || userIds.length,
      until: Math.max(int(c.until), int(c.bannedUntil)),
      all: Boolean(c.all),
    };
    if (c.key !== undefined) notice.key = String(c.key);
    if (c.value !== undefined) notice.value = String(c.value);
    this.#events.emit('chatroom', notice);
    // Kicked, or the room is gone: this connection is out of it.
    const out =
      notice.operation === 'kick' && userIds.includes(this.#userId)
        ? ErrorCode.RC_CHATROOM_USER_KICKED
        : notice.operation === 'destroy'
          ? ErrorCode.RC_CHATROOM_NOT_EXIST
          : 0;
    if (out) {
      this.#rooms.delete(room);
      this.#events.emit('chatroom', { type: 'left', chatroomId: room, code: out });
    }
  }

  /**
   * A join answered: the recent messages it asked for are presented (before anything pushed
   * after the answer), and the room's stream starts after its seq.
   * @param {string} room
   * @param {Record<string, any>} q
   */
  #joined(room, q) {
    this.#rooms.set(room, Math.max(this.#rooms.get(room) ?? 0, int(q.chatrooms?.[0]?.seq)));
    for (const m of q.messages ?? []) this.#presentMessage(messageOf(m, this.#userId));
  }

  /**
   * The answer to joining a room again after a reconnect: the messages after the last seq
   * presented are presented; a refusal takes the room out.
   * @param {string} room
   * @param {Record<string, any>} q
   */
  #rejoined(room, q) {
    const code = int(q.code);
    if (code !== 0) {
      if (this.#rooms.delete(room)) this.#events.emit('chatroom', { type: 'left', chatroomId: room, code });
      return;
    }
    const seq = int(q.chatrooms?.[0]?.seq);
    // A room made anew (the server restarted, or the room ended and a join made it again)
    // numbers its items from 1 again: follow it from where it is.
    if ((this.#rooms.get(room) ?? 0) > seq) this.#rooms.set(room, seq);
    for (const m of q.messages ?? []) this.#roomItem(messageOf(m, this.#userId));
    if (this.#rooms.has(room)) this.#rooms.set(room, Math.max(this.#rooms.get(room) ?? 0, seq));
  }

  /**
   * Takes an entry from a push or a sync. This device's own message, still waiting for its
   * PUBACK, completes that send instead of being presented.
   * @param {Record<string, any>} m
   * @param {boolean} offline
   */
  #offer(m, offline) {
    const seq = int(m.inboxSeq);
    if (m.senderId === this.#userId && m.clientMsgId) {
      for (const [id, p] of this.#pending) {
        if (p.send.clientMsgId !== m.clientMsgId) continue;
        this.#pending.delete(id);
        this.#inbox.remember(String(m.uid ?? ''));
        this.#completeSend(p, {
          uid: m.uid,
          seq: m.seq,
          sentTime: m.sentTime,
          inboxSeq: m.inboxSeq,
        });
        this.#inbox.offer(seq, null);
        return;
      }
    }
    this.#inbox.offer(seq, { wire: m, offline });
  }

  /**
   * Presents every entry that continues the cursor; answers how many entries it took that
   * need acknowledging.
   */
  #flush() {
    const out = this.#inbox.flush((e) => String(e.wire.uid ?? ''));
    for (const { message } of out) if (message) this.#present(message);
    return out.length;
  }

  /** @param {Entry} entry */
  #present(entry) {
    const m = entry.wire;
    if (int(m.conversationType) === ConversationType.NONE) {
      this.#presentUserEvent(m);
      return;
    }
    const message = messageOf(m, this.#userId, { offline: entry.offline });
    this.#noteMessage(message);
    this.#presentMessage(message);
  }

  /** @param {Message} message */
  #presentMessage(message) {
    if (this.#messageListener) {
      try {
        this.#messageListener.onReceived(message);
      } catch (e) {
        this.#events.report(e);
      }
    }
    this.#events.emit('message', message);
  }

  /**
   * A user event: a change this user made (on any device), or a read receipt.
   * @param {Record<string, any>} m
   */
  #presentUserEvent(m) {
    const c = /** @type {any} */ (safeJson(m.content));
    if (!c) return;
    const where = { conversationType: int(c.conversationType), targetId: String(c.targetId ?? '') };
    switch (m.msgType) {
      case 'tidings:conversation':
        this.#noteConversationChange({
          ...where,
          readSeq: int(c.readSeq),
          pinned: Boolean(c.pinned),
          muted: Boolean(c.muted),
          removedSeq: int(c.removedSeq),
          clearedSeq: int(c.clearedSeq),
        });
        break;
      case 'tidings:read': {
        // The conversation's `peerReadSeq`, as the server keeps it.
        const conv = this.#conversations.get(conversationKey(where.conversationType, where.targetId));
        if (conv && int(c.readSeq) > (conv.peerReadSeq ?? 0)) {
          conv.peerReadSeq = int(c.readSeq);
          this.#queueSave();
        }
        this.#events.emit('readReceipt', { ...where, readSeq: int(c.readSeq) });
        break;
      }
      case 'tidings:deleted':
        this.#events.emit('messagesDeleted', { ...where, seqs: Array.isArray(c.seqs) ? c.seqs.map(int) : [] });
        break;
      case 'tidings:quiet-hours':
        this.#events.emit('quietHours', { startMinute: int(c.startMinute), minutes: int(c.minutes) });
        break;
      default:
        break;
    }
  }

  /** @param {Record<string, any>} ack */
  #onPuback(ack) {
    const id = int(ack.packetId);
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    const code = int(ack.code);
    if (code !== 0) {
      clearTimeout(p.timer);
      p.message.sentStatus = SentStatus.FAILED;
      this.#events.emit('sentStatus', p.message);
      p.reject(new TidingsError(code, String(ack.message ?? '')));
      return;
    }
    this.#inbox.remember(String(ack.uid ?? ''));
    const inboxSeq = int(ack.inboxSeq);
    if (inboxSeq > 0) {
      // The sending device holds its own message: its place in the inbox is filled.
      this.#inbox.offer(inboxSeq, null);
      this.#toConfirm(this.#flush());
    }
    this.#completeSend(p, ack);
  }

  /**
   * @param {PendingSend} p
   * @param {Record<string, any>} ack the PUBACK, or the stored message itself
   */
  #completeSend(p, ack) {
    clearTimeout(p.timer);
    const m = p.message;
    m.messageUId = String(ack.uid ?? '');
    m.seq = int(ack.seq);
    m.sentTime = int(ack.sentTime);
    m.inboxSeq = int(ack.inboxSeq);
    m.sentStatus = SentStatus.SENT;
    const notice = int(ack.notice);
    if (notice !== 0) {
      m.notice = notice;
      if (ack.content) m.content = decodeContent(m.objectName, String(ack.content));
    }
    this.#noteMessage(m);
    this.#events.emit('sentStatus', m);
    p.resolve(m);
  }

  /** @param {Record<string, any>} q */
  #onQueryAck(q) {
    const id = int(q.queryId);
    const roomQuery = this.#roomQueries.get(id);
    if (roomQuery) {
      // Followed here, as the answer arrives, so that the room's next pushed item is measured
      // against the position the answer sets.
      this.#roomQueries.delete(id);
      if (roomQuery.kind === 'rejoin') return this.#rejoined(roomQuery.room, q);
      if (int(q.code) === 0 && roomQuery.kind === 'join') this.#joined(roomQuery.room, q);
      if (int(q.code) === 0 && roomQuery.kind === 'quit') this.#rooms.delete(roomQuery.room);
    }
    const waiting = this.#queries.get(id);
    if (waiting) {
      this.#queries.delete(id);
      clearTimeout(waiting.timer);
      const code = int(q.code);
      if (code === 0) waiting.resolve(q);
      else waiting.reject(new TidingsError(code, String(q.message ?? '')));
      return;
    }
    if (!this.#syncing || id !== this.#syncQueryId) return;
    const link = this.#link;
    if (int(q.code) !== 0) {
      // Reconnecting retries the sync after the backoff.
      if (link) {
        this.#linkEnded(link, {
          code: int(q.code),
          message: `sync failed: ${q.message ?? ''}`,
          reconnect: true,
          fromServer: false,
        });
      }
      return;
    }
    for (const m of Array.isArray(q.messages) ? q.messages : []) this.#offer(m, true);
    this.#flush();
    // Confirm after every page, even an empty one: it also tells a new connection how far this
    // device got, if an acknowledgement was lost with the previous connection.
    if (this.#options.autoAck) this.#confirm(id);
    if (q.hasMore) {
      this.#startSync();
    } else {
      this.#syncing = false;
      // Whatever is still held ahead is above the newest entry the server had when it
      // answered; pushes will fill it, or the next push starts another sync.
      this.#wakeSyncWaiters();
    }
  }

  #startSync() {
    this.#syncing = true;
    this.#syncQueryId = this.#syncQueryId + 1 >= FIRST_QUERY_ID ? 1 : this.#syncQueryId + 1;
    const limit = Math.min(500, Math.max(1, this.#options.syncPageSize));
    this.#send({
      query: { queryId: this.#syncQueryId, sync: { after: String(this.#inbox.cursor ?? 0), limit } },
    });
  }

  #wakeSyncWaiters() {
    const waiters = this.#syncWaiters;
    this.#syncWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * Counts entries to acknowledge; acknowledges them soon, or now if many wait.
   * @param {number} n
   */
  #toConfirm(n) {
    if (n <= 0 || !this.#options.autoAck) return;
    this.#unconfirmed += n;
    if (this.#unconfirmed >= CONFIRM_BATCH) this.#confirm();
    else if (!this.#confirmTimer) this.#confirmTimer = setTimeout(() => this.#confirm(), CONFIRM_DELAY_MS);
  }

  /**
   * Acknowledges every entry up to the cursor with one QUERYCON, and keeps the cursor.
   * @param {number} [queryId]
   */
  #confirm(queryId = 0) {
    if (this.#confirmTimer) clearTimeout(this.#confirmTimer);
    this.#confirmTimer = null;
    this.#unconfirmed = 0;
    const cursor = this.#inbox.cursor;
    if (cursor === null) return;
    this.#send({ querycon: { queryId, inboxSeq: String(cursor) } });
    this.#saveCursor();
  }

  /** @param {Frame} frame */
  #send(frame) {
    this.#link?.transport.send(frame);
  }

  // ---------------------------------------------------------------- sending

  /**
   * Sends a message and resolves with it as stored (its `messageUId`, `seq`, `sentTime`) once
   * the server committed it, or rejects with the server's code. A send made while the client
   * reconnects waits for the connection; one whose answer was lost is sent again after the
   * reconnect with the same client message id, so it is stored once.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {MessageContent} content
   * @param {SendOptions} [options]
   * @returns {Promise<Message>}
   */
  sendMessage(conversationType, targetId, content, options = {}) {
    return withCallback(
      this.#sendMessage(conversationType, targetId, content, options),
      isCallback(options) ? options : undefined,
    );
  }

  /**
   * @param {number} conversationType
   * @param {string} targetId
   * @param {MessageContent} content
   * @param {SendOptions} options
   * @returns {Promise<Message>}
   */
  async #sendMessage(conversationType, targetId, content, options) {
    this.#requireInit();
    if (!(content instanceof MessageContent) || !content.objectName) {
      throw new TidingsError(ErrorCode.BIZ_ERROR_INVALID_PARAMETER, 'content must be a message class instance');
    }
    const cls = /** @type {typeof MessageContent} */ (content.constructor);
    const transient = options.isStatus ?? !cls.isPersited;
    const mention =
      options.mentionedInfo ?? ('mentionedInfo' in content ? /** @type {any} */ (content).mentionedInfo : undefined);
    const mentionAll = options.mentionAll ?? mention?.type === 1;
    const mentioned = options.mentionedUserIds ?? (mention && mention.type !== 1 ? mention.userIdList : undefined);
    const clientMsgId = options.clientMsgId ?? newClientMsgId();
    /** @type {Record<string, unknown>} */
    const send = { clientMsgId, conversationType, targetId, msgType: content.objectName };
    send.content = JSON.stringify(content.encode());
    if (options.pushContent) send.pushText = options.pushContent;
    if (options.pushData) send.pushData = options.pushData;
    if (transient) send.transient = true;
    if (!cls.isCounted && !BUILT_IN.has(content.objectName)) send.uncounted = true;
    if (mentioned?.length) send.mentionedUserIds = mentioned;
    if (mentionAll) send.mentionAll = true;
    if (options.userIds?.length) send.directedUserIds = options.userIds;
    if (options.priority) send.priority = options.priority;

    /** @type {Message} */
    const message = {
      messageUId: '',
      clientMsgId,
      conversationType,
      targetId,
      senderUserId: this.#userId,
      seq: 0,
      inboxSeq: 0,
      sentTime: this.getServerTime(),
      receivedTime: Date.now(),
      objectName: content.objectName,
      messageType: content.messageName,
      content,
      pushContent: options.pushContent ?? '',
      messageDirection: MessageDirection.SEND,
      sentStatus: SentStatus.SENDING,
      offLineMessage: false,
      isRecalled: false,
      isEdited: false,
      reactions: [],
      mentionedInfo: mentionAll
        ? { type: 1, userIdList: [] }
        : mentioned?.length
          ? { type: 2, userIdList: [...mentioned] }
          : null,
      directedUserIds: options.userIds ? [...options.userIds] : [],
    };
    options.onBefore?.(message);
    this.#events.emit('sentStatus', message);
    const fail = (/** @type {TidingsError} */ e) => {
      message.sentStatus = SentStatus.FAILED;
      this.#events.emit('sentStatus', message);
      throw e;
    };
    if (!this.#link && !this.#wantOnline) {
      return fail(new TidingsError(ErrorCode.RC_NET_CHANNEL_INVALID, 'not connected'));
    }
    if (transient) {
      // At most once and unanswered (packet id 0): nothing to wait for.
      if (!this.#link) return fail(new TidingsError(ErrorCode.RC_NET_CHANNEL_INVALID, 'not connected'));
      this.#send({ publish: { packetId: 0, send }, qos: 0 });
      message.sentStatus = SentStatus.SENT;
      this.#events.emit('sentStatus', message);
      return message;
    }
    return new Promise((resolve, reject) => {
      const id = this.#newPacketId();
      const timer = setTimeout(() => {
        if (this.#pending.get(id)?.message !== message) return;
        this.#pending.delete(id);
        message.sentStatus = SentStatus.FAILED;
        this.#events.emit('sentStatus', message);
        reject(new TidingsError(ErrorCode.RC_MSG_RESP_TIMEOUT, 'no answer from the server in time'));
      }, this.#options.sendTimeoutMs);
      this.#pending.set(id, {
        send,
        message,
        resolve,
        reject: (e) => {
          message.sentStatus = SentStatus.FAILED;
          reject(e);
        },
        timer,
      });
      if (this.#link) this.#writePublish(id, false);
    });
  }

  /**
   * Sends a message again with the client message id it had (a failed one): if the server had
   * stored it after all, it answers with the first commit and stores nothing new.
   * @param {Message} message
   * @param {SendOptions} [options]
   */
  resendMessage(message, options = {}) {
    return this.sendMessage(message.conversationType, message.targetId, message.content, {
      pushContent: message.pushContent || undefined,
      mentionedInfo: message.mentionedInfo ?? undefined,
      userIds: message.directedUserIds.length > 0 ? message.directedUserIds : undefined,
      ...options,
      clientMsgId: message.clientMsgId,
    });
  }

  #newPacketId() {
    for (;;) {
      this.#nextPacketId = (this.#nextPacketId % 65_535) + 1;
      if (!this.#pending.has(this.#nextPacketId)) return this.#nextPacketId;
    }
  }

  /**
   * @param {number} id
   * @param {boolean} resend
   */
  #writePublish(id, resend) {
    const p = this.#pending.get(id);
    if (!p) return;
    if (resend) this.#stats.resentPublishes += 1;
    this.#send({ publish: { packetId: id, send: p.send }, qos: 1, dup: resend });
  }

  /**
   * @param {number} code
   * @param {string} message
   */
  #failPending(code, message) {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.message.sentStatus = SentStatus.FAILED;
      this.#events.emit('sentStatus', p.message);
      p.reject(new TidingsError(code, message));
    }
  }

  /**
   * Tells the other user this user is typing (a status message: at most once, never stored;
   * dropped when not connected). Private conversations only.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {string} [typingContentType] the object name being typed (`text`)
   */
  sendTypingStatusMessage(conversationType, targetId, typingContentType = 'text') {
    if (!this.#link) return false;
    const content = new TypingStatusMessage({ typingContentType });
    this.#send({
      publish: {
        packetId: 0,
        send: {
          conversationType,
          targetId,
          msgType: TypingStatusMessage.objectName,
          content: JSON.stringify(content.encode()),
          transient: true,
        },
      },
      qos: 0,
    });
    return true;
  }

  // ---------------------------------------------------------------- queries

  /**
   * Sends a QUERY and resolves with its QUERYACK (code 0), or rejects with the refusal.
   * @param {Record<string, unknown>} body the query's body, for example `{ getUnread: {} }`
   * @returns {Promise<Record<string, any>>}
   */
  query(body) {
    this.#requireInit();
    if (!this.#link) {
      return Promise.reject(new TidingsError(ErrorCode.RC_NET_CHANNEL_INVALID, 'not connected'));
    }
    const queryId = this.#newQueryId();
    const join = /** @type {any} */ (body.joinChatroom);
    const quit = /** @type {any} */ (body.quitChatroom);
    if (join) this.#roomQueries.set(queryId, { kind: 'join', room: String(join.chatroomId ?? '') });
    if (quit) this.#roomQueries.set(queryId, { kind: 'quit', room: String(quit.chatroomId ?? '') });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#queries.delete(queryId);
        reject(new TidingsError(ErrorCode.RC_MSG_RESP_TIMEOUT, 'no answer from the server in time'));
      }, this.#options.queryTimeoutMs);
      this.#queries.set(queryId, { resolve, reject, timer });
      this.#send({ query: { queryId, ...body } });
    });
  }

  #newQueryId() {
    this.#nextQueryId = this.#nextQueryId >= 2 ** 32 - 1 ? FIRST_QUERY_ID : this.#nextQueryId + 1;
    return this.#nextQueryId;
  }

  /**
   * Pulls what the inbox holds past the cursor now (it also happens after every connect, every
   * `syncIntervalMs`, and whenever a gap shows). Resolves once the last page is in.
   * @returns {Promise<void>}
   */
  sync() {
    if (!this.#link) return Promise.reject(new TidingsError(ErrorCode.RC_NET_CHANNEL_INVALID, 'not connected'));
    return new Promise((resolve) => {
      this.#syncWaiters.push(resolve);
      if (!this.#syncing) this.#startSync();
    });
  }

  /**
   * Acknowledges the message at `inboxSeq` (with `autoAck: false`; the server resends, and the
   * next sync returns, whatever is not acknowledged).
   * @param {number} inboxSeq
   */
  acknowledge(inboxSeq) {
    if (inboxSeq > 0) this.#send({ puback: { inboxSeq: String(inboxSeq) } });
  }

  /**
   * The conversation list (pinned first, then by newest message), up to `count`, of the given
   * types (all by default). Seed 004's form `(callback, types, count)` works too.
   * @param {number[] | null | Callback} [typesOrCallback]
   * @param {number | number[] | null} [countOrTypes]
   * @param {number} [count]
   * @returns {Promise<Conversation[]>}
   */
  getConversationList(typesOrCallback, countOrTypes, count) {
    if (isCallback(typesOrCallback)) {
      return withCallback(
        this.#conversationList(/** @type {number[] | null} */ (countOrTypes ?? null), count),
        typesOrCallback,
      );
    }
    return this.#conversationList(
      /** @type {number[] | null} */ (typesOrCallback ?? null),
      typeof countOrTypes === 'number' ? countOrTypes : undefined,
    );
  }

  /**
   * @param {number[] | null} types
   * @param {number} [count]
   */
  async #conversationList(types, count = 100) {
    /** @type {Conversation[]} */
    const out = [];
    let pageToken = '';
    for (;;) {
      const page = await this.getConversationPage({ types: types ?? [], limit: Math.min(100, count - out.length), pageToken });
      out.push(...page.conversations);
      pageToken = page.nextPageToken;
      if (!pageToken || out.length >= count) break;
    }
    // The whole list was read: the cache holds exactly it.
    if (!pageToken && (!types || types.length === 0)) this.#replaceConversations(out);
    return out;
  }

  /**
   * One page of the conversation list.
   * @param {{ types?: number[], limit?: number, pageToken?: string }} [page]
   * @returns {Promise<{ conversations: Conversation[], nextPageToken: string, version: number }>}
   */
  async getConversationPage(page = {}) {
    const q = await this.query({
      listConversations: { types: page.types ?? [], limit: page.limit ?? 0, pageToken: page.pageToken ?? '' },
    });
    const conversations = (q.conversations ?? []).map((/** @type {any} */ c) => conversationOf(c, this.#userId));
    for (const c of conversations) this.#conversations.set(conversationKey(c.conversationType, c.targetId), c);
    this.#queueSave();
    return { conversations, nextPageToken: String(q.nextPageToken ?? ''), version: int(q.version) };
  }

  /**
   * One conversation, or null if this user has none such.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {Callback} [callback]
   * @returns {Promise<Conversation | null>}
   */
  getConversation(conversationType, targetId, callback) {
    return withCallback(this.#getConversation(conversationType, targetId), callback);
  }

  /**
   * @param {number} conversationType
   * @param {string} targetId
   */
  async #getConversation(conversationType, targetId) {
    const q = await this.query({ getConversation: { conversationType, targetId } });
    const c = q.conversations?.[0];
    const key = conversationKey(conversationType, targetId);
    if (!c) {
      this.#conversations.delete(key);
      return null;
    }
    const conv = conversationOf(c, this.#userId);
    this.#conversations.set(key, conv);
    this.#queueSave();
    return conv;
  }

  /**
   * Changes one conversation (read position, pin, mute, removal, clearing): the raw update.
   * Every device of the user gets the change (as a `conversation` event).
   * @param {number} conversationType
   * @param {string} targetId
   * @param {{ readSeq?: number, readTime?: number, pinned?: boolean, muted?: boolean, remove?: boolean, clearBeforeTime?: number, silent?: boolean }} change
   * @returns {Promise<Conversation | null>}
   */
  async updateConversation(conversationType, targetId, change) {
    /** @type {Record<string, unknown>} */
    const body = { conversationType, targetId };
    if (change.readSeq) body.readSeq = String(change.readSeq);
    if (change.readTime) body.readTime = String(change.readTime);
    if (change.pinned !== undefined) body.pinned = change.pinned;
    if (change.muted !== undefined) body.muted = change.muted;
    if (change.remove) body.remove = true;
    if (change.clearBeforeTime) body.clearBeforeTime = String(change.clearBeforeTime);
    if (change.silent) body.silent = true;
    const q = await this.query({ updateConversation: body });
    const c = q.conversations?.[0];
    return c ? conversationOf(c, this.#userId) : null;
  }

  /**
   * Takes a conversation out of the list until its next message, reading it.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {Callback} [callback]
   * @returns {Promise<boolean>}
   */
  removeConversation(conversationType, targetId, callback) {
    return withCallback(
      this.updateConversation(conversationType, targetId, { remove: true }).then(() => {
        this.#conversations.delete(conversationKey(conversationType, targetId));
        this.#queueSave();
        return true;
      }),
      callback,
    );
  }

  /**
   * Removes every conversation of the given types (all by default); answers how many.
   * Seed 004's form `(callback, types)` works too.
   * @param {number[] | null | Callback} [typesOrCallback]
   * @param {number[] | null} [types]
   * @returns {Promise<number>}
   */
  clearConversations(typesOrCallback, types) {
    if (isCallback(typesOrCallback)) return withCallback(this.#clearConversations(types ?? null), typesOrCallback);
    return this.#clearConversations(/** @type {number[] | null} */ (typesOrCallback ?? null));
  }

  /** @param {number[] | null} types */
  async #clearConversations(types) {
    let removed = 0;
    for (;;) {
      // The server removes a bounded number per request and says when more remain.
      const q = await this.query({ removeConversations: { types: types ?? [] } });
      for (const c of q.conversations ?? []) {
        removed += 1;
        this.#conversations.delete(conversationKey(int(c.conversationType), String(c.targetId ?? '')));
      }
      if (!q.hasMore) break;
    }
    this.#queueSave();
    return removed;
  }

  /**
   * Reads a conversation up to its newest message (its unread count becomes 0), on every
   * device; the other participant of a private chat gets a read receipt.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {Callback} [callback]
   * @returns {Promise<boolean>}
   */
  clearUnreadCount(conversationType, targetId, callback) {
    // The server never moves a read position past the newest message.
    return withCallback(
      this.updateConversation(conversationType, targetId, { readSeq: Number.MAX_SAFE_INTEGER }).then(() => true),
      callback,
    );
  }

  /**
   * Reads a conversation up to a seq (never backwards).
   * @param {number} conversationType
   * @param {string} targetId
   * @param {number} seq
   * @param {{ silent?: boolean }} [options] `silent`: no read receipt
   * @returns {Promise<Conversation | null>}
   */
  setReadPosition(conversationType, targetId, seq, options = {}) {
    return this.updateConversation(conversationType, targetId, { readSeq: seq, silent: options.silent });
  }

  /**
   * Pins a conversation (or unpins it).
   * @param {number} conversationType
   * @param {string} targetId
   * @param {boolean} isTop
   * @param {Callback} [callback]
   * @returns {Promise<Conversation | null>}
   */
  setConversationToTop(conversationType, targetId, isTop, callback) {
    return withCallback(this.updateConversation(conversationType, targetId, { pinned: isTop }), callback);
  }

  /**
   * Unread messages over every conversation (seed 004's `getTotalUnreadCount(callback)`), of
   * some types if given.
   * @param {Callback | number[]} [callbackOrTypes]
   * @param {number[]} [types]
   * @returns {Promise<number>}
   */
  getTotalUnreadCount(callbackOrTypes, types) {
    if (Array.isArray(callbackOrTypes)) return this.#unread(callbackOrTypes);
    return withCallback(this.#unread(types ?? []), callbackOrTypes);
  }

  /**
   * Unread messages over the conversations of some types.
   * @param {number[]} types
   * @param {Callback} [callback]
   * @returns {Promise<number>}
   */
  getConversationUnreadCount(types, callback) {
    return withCallback(this.#unread(types), callback);
  }

  /** @param {number[]} types */
  async #unread(types) {
    const q = await this.query({ getUnread: { types } });
    return int(q.unread);
  }

  /**
   * One conversation's unread count.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {Callback} [callback]
   * @returns {Promise<number>}
   */
  getUnreadCount(conversationType, targetId, callback) {
    return withCallback(
      this.#getConversation(conversationType, targetId).then((c) => c?.unreadMessageCount ?? 0),
      callback,
    );
  }

  /**
   * A page of a conversation's history as this user sees it, oldest first. `timestamp`: the
   * messages sent before it (0 or absent: the newest); or an object choosing where to start.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {number | HistoryOptions | null} [timestampOrOptions]
   * @param {number} [count] 1–100 (20)
   * @param {Callback} [callback] `onSuccess(messages, hasMore)`
   * @returns {Promise<{ messages: Message[], hasMore: boolean }>}
   */
  getHistoryMessages(conversationType, targetId, timestampOrOptions, count, callback) {
    /** @type {HistoryOptions} */
    const start =
      timestampOrOptions && typeof timestampOrOptions === 'object'
        ? timestampOrOptions
        : { beforeTime: timestampOrOptions || undefined, count };
    const p = this.#history(conversationType, targetId, start);
    if (callback) {
      p.then(
        (page) => callback.onSuccess?.(page.messages, page.hasMore),
        (e) => callback.onError?.(e.code, e),
      );
      p.catch(() => {});
    }
    return p;
  }

  /**
   * Seed 004's `getRemoteHistoryMessages({conversationType, targetId, timestamp, count}, callback)`.
   * @param {{ conversationType: number, targetId: string, timestamp?: number, count?: number }} params
   * @param {Callback} [callback]
   */
  getRemoteHistoryMessages(params, callback) {
    return this.getHistoryMessages(params.conversationType, params.targetId, params.timestamp, params.count, callback);
  }

  /**
   * @param {number} conversationType
   * @param {string} targetId
   * @param {HistoryOptions} start
   */
  async #history(conversationType, targetId, start) {
    /** @type {Record<string, unknown>} */
    const body = { conversationType, targetId, count: start.count ?? 0 };
    if (start.beforeSeq) body.beforeSeq = String(start.beforeSeq);
    if (start.afterSeq) body.afterSeq = String(start.afterSeq);
    if (start.beforeTime) body.beforeTime = String(start.beforeTime);
    if (start.afterTime) body.afterTime = String(start.afterTime);
    const q = await this.query({ getHistory: body });
    return {
      messages: (q.messages ?? []).map((/** @type {any} */ m) => messageOf(m, this.#userId)),
      hasMore: Boolean(q.hasMore),
    };
  }

  /**
   * Clears this user's history of a conversation up to a time (seed 004's
   * `clearRemoteHistoryMessages({conversationType, targetId, timestamp})`); the other
   * participant keeps theirs.
   * @param {{ conversationType: number, targetId: string, timestamp: number }} params
   * @param {Callback} [callback]
   * @returns {Promise<boolean>}
   */
  clearRemoteHistoryMessages(params, callback) {
    return withCallback(
      this.updateConversation(params.conversationType, params.targetId, { clearBeforeTime: params.timestamp }).then(
        () => true,
      ),
      callback,
    );
  }

  /**
   * Deletes messages (by seq, or the messages themselves) for this user only.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {(number | Message)[]} messages
   * @param {Callback} [callback]
   * @returns {Promise<boolean>}
   */
  deleteRemoteMessages(conversationType, targetId, messages, callback) {
    const seqs = messages.map((m) => String(typeof m === 'number' ? m : m.seq));
    return withCallback(
      this.query({ deleteMessages: { conversationType, targetId, seqs } }).then(() => true),
      callback,
    );
  }

  /**
   * Recalls one of this user's messages (within the server's recall window): it becomes a
   * tombstone everywhere. Resolves with the message as it now is.
   * @param {Message | { conversationType: number, targetId: string, seq: number }} message
   * @param {Callback} [callback]
   * @returns {Promise<Message>}
   */
  recallMessage(message, callback) {
    return withCallback(this.#recall(message), callback);
  }

  /**
   * Seed 004's name for `recallMessage`.
   * @param {Message | { conversationType: number, targetId: string, seq: number }} message
   * @param {Callback} [callback]
   */
  sendRecallMessage(message, callback) {
    return this.recallMessage(message, callback);
  }

  /** @param {Message | { conversationType: number, targetId: string, seq: number }} message */
  async #recall(message) {
    const q = await this.query({
      recallMessage: {
        conversationType: message.conversationType,
        targetId: message.targetId,
        seq: String(message.seq),
      },
    });
    const m = q.messages?.[0];
    if (!m) throw new TidingsError(ErrorCode.RC_QUERY_ACK_NO_DATA, 'the answer held no message');
    return messageOf(m, this.#userId);
  }

  // ---------------------------------------------------------------- chatrooms

  /**
   * Joins a chatroom (made by this join if it does not exist and the server allows it), with
   * up to `recentCount` (0–50) of its newest messages, which are also presented as `message`
   * events, oldest first (seed 004 delivers them to the message listener). The room's later
   * messages come as `message` events (conversation type 4), its notices and gap markers as
   * `chatroom` events, while this client is in it; after a reconnect the client joins again by
   * itself and presents what it missed that the room's history still holds.
   * @param {string} roomId
   * @param {number} [recentCount]
   * @param {Callback} [callback]
   * @returns {Promise<{ chatroom: import('./types.js').Chatroom, messages: Message[] }>}
   */
  joinChatRoom(roomId, recentCount = 0, callback) {
    return withCallback(
      this.query({ joinChatroom: { chatroomId: roomId, recent: recentCount } }).then((q) => {
        const messages = (q.messages ?? []).map((/** @type {any} */ m) => messageOf(m, this.#userId));
        return { chatroom: chatroomOf(q.chatrooms?.[0] ?? {}), messages };
      }),
      callback,
    );
  }

  /**
   * Leaves a chatroom; answers the room as left behind.
   * @param {string} roomId
   * @param {Callback} [callback]
   * @returns {Promise<import('./types.js').Chatroom>}
   */
  quitChatRoom(roomId, callback) {
    return withCallback(
      this.query({ quitChatroom: { chatroomId: roomId } }).then((q) => chatroomOf(q.chatrooms?.[0] ?? {})),
      callback,
    );
  }

  /**
   * A chatroom's profile, member count and a page of its members (seed 004's
   * `getChatRoomInfo`): `order` 1 (default) the first to join first, 2 the newest first (which
   * reads the whole member list). Members only.
   * @param {string} roomId
   * @param {{ count?: number, order?: number }} [options] `count`: members (0–500; 10)
   * @param {Callback} [callback]
   */
  getChatRoomInfo(roomId, options = {}, callback) {
    return withCallback(this.#chatRoomInfo(roomId, options.count ?? 10, options.order ?? 1), callback);
  }

  /**
   * @param {string} roomId
   * @param {number} count
   * @param {number} order
   */
  async #chatRoomInfo(roomId, count, order) {
    const q = await this.query({ getChatroom: { chatroomId: roomId } });
    const chatroom = chatroomOf(q.chatrooms?.[0] ?? {});
    /** @type {import('./types.js').Member[]} */
    let members = [];
    if (count > 0) {
      let pageToken = '';
      for (;;) {
        const limit = order === 2 ? 500 : Math.min(500, count - members.length);
        const page = await this.query({ getChatroomMembers: { chatroomId: roomId, limit, pageToken } });
        members.push(...(page.members ?? []).map(memberOf));
        pageToken = String(page.nextPageToken ?? '');
        if (!pageToken || (order !== 2 && members.length >= count)) break;
      }
      members = order === 2 ? members.slice(-count).reverse() : members.slice(0, count);
    }
    return {
      chatroom,
      userTotalNums: chatroom.memberCount,
      userInfos: members.map((m) => ({ id: m.userId, time: m.joinedTime })),
      members,
    };
  }

  /**
   * A page of a chatroom's history (the messages the room still keeps in memory), oldest
   * first: the newest `count`, or from where `options` says. Members only.
   * @param {string} roomId
   * @param {number | HistoryOptions} [countOrOptions]
   * @param {Callback} [callback] `onSuccess(messages, hasMore)`
   * @returns {Promise<{ messages: Message[], hasMore: boolean }>}
   */
  getChatRoomHistoryMessages(roomId, countOrOptions, callback) {
    const start = typeof countOrOptions === 'object' ? countOrOptions : { count: countOrOptions };
    return this.getHistoryMessages(ConversationType.CHATROOM, roomId, start, undefined, callback);
  }

  /**
   * Sets a key-value entry of a chatroom; refused with 23424 if another user set the key (see
   * `forceSetChatroomEntry`). With `isAutoDelete` it goes when this user leaves the room. Every
   * member gets an `entry` notice.
   * @param {string} roomId
   * @param {ChatroomEntryInput} entry
   * @param {Callback} [callback]
   * @returns {Promise<import('./types.js').ChatroomEntry>}
   */
  setChatroomEntry(roomId, entry, callback) {
    return withCallback(this.#setEntry(roomId, entry, false), callback);
  }

  /**
   * Sets a key-value entry of a chatroom, whoever set it before.
   * @param {string} roomId
   * @param {ChatroomEntryInput} entry
   * @param {Callback} [callback]
   * @returns {Promise<import('./types.js').ChatroomEntry>}
   */
  forceSetChatroomEntry(roomId, entry, callback) {
    return withCallback(this.#setEntry(roomId, entry, true), callback);
  }

  /**
   * @param {string} roomId
   * @param {ChatroomEntryInput} entry
   * @param {boolean} force
   */
  async #setEntry(roomId, entry, force) {
    const q = await this.query({
      setChatroomEntry: {
        chatroomId: roomId,
        key: entry.key,
        value: entry.value,
        force,
        autoDelete: Boolean(entry.isAutoDelete ?? entry.autoDelete),
      },
    });
    const e = q.entries?.[0];
    if (!e) throw new TidingsError(ErrorCode.RC_QUERY_ACK_NO_DATA, 'the answer held no entry');
    return entryOf(e);
  }

  /**
   * Removes a key-value entry this user set (23424 if another user set it; 23427 if there is
   * none).
   * @param {string} roomId
   * @param {string | { key: string }} key
   * @param {Callback} [callback]
   * @returns {Promise<boolean>}
   */
  removeChatroomEntry(roomId, key, callback) {
    return withCallback(this.#removeEntry(roomId, key, false), callback);
  }

  /**
   * Removes a key-value entry, whoever set it (23427 if there is none).
   * @param {string} roomId
   * @param {string | { key: string }} key
   * @param {Callback} [callback]
   * @returns {Promise<boolean>}
   */
  forceRemoveChatroomEntry(roomId, key, callback) {
    return withCallback(this.#removeEntry(roomId, key, true), callback);
  }

  /**
   * @param {string} roomId
   * @param {string | { key: string }} key
   * @param {boolean} force
   */
  async #removeEntry(roomId, key, force) {
    const k = typeof key === 'string' ? key : key.key;
    await this.query({ removeChatroomEntry: { chatroomId: roomId, key: k, force } });
    return true;
  }

  /**
   * One entry's value, or null if the room has no such key.
   * @param {string} roomId
   * @param {string} key
   * @param {Callback} [callback]
   * @returns {Promise<string | null>}
   */
  getChatroomEntry(roomId, key, callback) {
    return withCallback(
      this.getChatroomEntries(roomId, [key]).then((list) => list.find((e) => e.key === key)?.value ?? null),
      callback,
    );
  }

  /**
   * Every entry of a room, as seed 004 answers it: an object of key → value.
   * @param {string} roomId
   * @param {Callback} [callback]
   * @returns {Promise<Record<string, string>>}
   */
  getAllChatroomEntries(roomId, callback) {
    return withCallback(
      this.getChatroomEntries(roomId).then((list) => Object.fromEntries(list.map((e) => [e.key, e.value]))),
      callback,
    );
  }

  /**
   * A room's entries in full (who set each, when, `autoDelete`), by key: those of `keys`, or
   * all.
   * @param {string} roomId
   * @param {string[]} [keys]
   * @returns {Promise<import('./types.js').ChatroomEntry[]>}
   */
  async getChatroomEntries(roomId, keys = []) {
    const q = await this.query({ getChatroomEntries: { chatroomId: roomId, keys } });
    return (q.entries ?? []).map(entryOf);
  }

  /** The chatrooms this client is in (and joins again after a reconnect). */
  get chatrooms() {
    return [...this.#rooms.keys()];
  }

  // ---------------------------------------------------------------- groups

  /**
   * A group's profile (members only: 22406; a dismissed group 35001).
   * @param {string} groupId
   * @param {Callback} [callback]
   * @returns {Promise<import('./types.js').Group>}
   */
  getGroupInfo(groupId, callback) {
    return withCallback(
      this.query({ getGroup: { groupId } }).then((q) => groupOf(q.groups?.[0] ?? {})),
      callback,
    );
  }

  /**
   * A page of a group's members in the order they joined.
   * @param {string} groupId
   * @param {{ count?: number, pageToken?: string }} [page] `count`: 1–500 (100)
   * @param {Callback} [callback]
   * @returns {Promise<{ members: import('./types.js').Member[], nextPageToken: string }>}
   */
  getGroupMembers(groupId, page = {}, callback) {
    return withCallback(
      this.query({ getGroupMembers: { groupId, limit: page.count ?? 0, pageToken: page.pageToken ?? '' } }).then(
        (q) => ({ members: (q.members ?? []).map(memberOf), nextPageToken: String(q.nextPageToken ?? '') }),
      ),
      callback,
    );
  }

  /**
   * Leaves a group; answers the group as left behind.
   * @param {string} groupId
   * @param {Callback} [callback]
   * @returns {Promise<import('./types.js').Group>}
   */
  quitGroup(groupId, callback) {
    return withCallback(
      this.query({ quitGroup: { groupId } }).then((q) => groupOf(q.groups?.[0] ?? {})),
      callback,
    );
  }

  /**
   * The live groups this user is in, by id.
   * @param {Callback} [callback]
   * @returns {Promise<import('./types.js').Group[]>}
   */
  getGroupList(callback) {
    return withCallback(
      this.query({ listGroups: {} }).then((q) => (q.groups ?? []).map(groupOf)),
      callback,
    );
  }

  /**
   * Who of a group message's audience has read it (this user's own messages only: 40018
   * otherwise): the members whose read position is at or past it, and those whose is not.
   * @param {string} groupId
   * @param {number | Message} seqOrMessage
   * @param {Callback} [callback]
   * @returns {Promise<import('./types.js').GroupReadReceipt>}
   */
  getGroupMessageReadReceipt(groupId, seqOrMessage, callback) {
    const seq = typeof seqOrMessage === 'number' ? seqOrMessage : seqOrMessage.seq;
    return withCallback(
      this.query({ getGroupReceipt: { groupId, seq: String(seq) } }).then((q) => {
        const readUserIds = (q.receipt?.readUserIds ?? []).map(String);
        const unreadUserIds = (q.receipt?.unreadUserIds ?? []).map(String);
        return { readUserIds, unreadUserIds, readCount: readUserIds.length, unreadCount: unreadUserIds.length };
      }),
      callback,
    );
  }

  /**
   * Makes a discussion (a group its members manage, docs/protocol.md "Discussions") owned by
   * this user, with these other members; answers it, its id chosen by the server.
   * @param {string} name at most 128 bytes (42007)
   * @param {string[]} userIds the other members
   * @param {Callback} [callback]
   * @returns {Promise<import('./types.js').Group>}
   */
  createDiscussion(name, userIds, callback) {
    return this.#discussion({ createDiscussion: { name, userIds } }, callback);
  }

  /**
   * Adds members to a discussion: any member while its invitations are open, else only its
   * owner (21407); members already in are skipped. Answers the discussion after the change.
   * @param {string} groupId
   * @param {string[]} userIds at least one
   * @param {Callback} [callback]
   * @returns {Promise<import('./types.js').Group>}
   */
  addDiscussionMembers(groupId, userIds, callback) {
    return this.#discussion({ addDiscussionMembers: { groupId, userIds } }, callback);
  }

  /**
   * Removes a member from a discussion (its owner only: 20406); naming a non-member changes
   * nothing. Answers the discussion after the change.
   * @param {string} groupId
   * @param {string} userId
   * @param {Callback} [callback]
   * @returns {Promise<import('./types.js').Group>}
   */
  removeDiscussionMember(groupId, userId, callback) {
    return this.#discussion({ removeDiscussionMember: { groupId, userId } }, callback);
  }

  /**
   * Renames a discussion (any member) and/or opens or closes its invitations (its owner only:
   * 20406, and then nothing changes); at least one of the two (42007). Answers the discussion
   * after the change.
   * @param {string} groupId
   * @param {{ name?: string, inviteOpen?: boolean }} change
   * @param {Callback} [callback]
   * @returns {Promise<import('./types.js').Group>}
   */
  updateDiscussion(groupId, change, callback) {
    /** @type {Record<string, unknown>} */
    const body = { groupId };
    if (change?.name !== undefined) body.name = change.name;
    if (change?.inviteOpen !== undefined) body.inviteOpen = change.inviteOpen;
    return this.#discussion({ updateDiscussion: body }, callback);
  }

  /**
   * A discussion body's query, answered with the discussion.
   * @param {Record<string, unknown>} body
   * @param {Callback | undefined} callback
   */
  #discussion(body, callback) {
    return withCallback(
      this.query(body).then((q) => groupOf(q.groups?.[0] ?? {})),
      callback,
    );
  }

  // ---------------------------------------------------------------- search, edits, reactions

  /**
   * Finds the messages this user can see whose text contains `keyword`, newest first: in every
   * conversation, or in one.
   * @param {string} keyword 1–100 characters
   * @param {{ conversationType?: number, targetId?: string, count?: number, pageToken?: string }} [options]
   * @param {Callback} [callback]
   * @returns {Promise<{ messages: Message[], nextPageToken: string }>}
   */
  searchMessages(keyword, options = {}, callback) {
    /** @type {Record<string, unknown>} */
    const body = { query: keyword, limit: options.count ?? 0, pageToken: options.pageToken ?? '' };
    if (options.targetId) {
      body.conversationType = options.conversationType ?? ConversationType.PRIVATE;
      body.targetId = options.targetId;
    }
    return withCallback(
      this.query({ searchMessages: body }).then((q) => ({
        messages: (q.messages ?? []).map((/** @type {any} */ m) => messageOf(m, this.#userId)),
        nextPageToken: String(q.nextPageToken ?? ''),
      })),
      callback,
    );
  }

  /**
   * Replaces the content of one of this user's messages; resolves with the message as it now
   * is. The conversation gets a `tidings:edit` message saying so.
   * @param {Message | MessageRef} message
   * @param {MessageContent} content of the message's type
   * @param {Callback} [callback]
   * @returns {Promise<Message>}
   */
  editMessage(message, content, callback) {
    return withCallback(
      this.#changeMessage('editMessage', message, { content: JSON.stringify(content.encode()) }),
      callback,
    );
  }

  /**
   * Adds this user's reaction (an emoji, 1–32 bytes) to a message; resolves with the message
   * as it now is. The conversation gets a `tidings:reaction` message saying so.
   * @param {Message | MessageRef} message
   * @param {string} emoji
   * @param {Callback} [callback]
   * @returns {Promise<Message>}
   */
  addReaction(message, emoji, callback) {
    return withCallback(this.#changeMessage('reactToMessage', message, { emoji }), callback);
  }

  /**
   * Takes this user's reaction off a message.
   * @param {Message | MessageRef} message
   * @param {string} emoji
   * @param {Callback} [callback]
   * @returns {Promise<Message>}
   */
  removeReaction(message, emoji, callback) {
    return withCallback(this.#changeMessage('reactToMessage', message, { emoji, remove: true }), callback);
  }

  /**
   * @param {string} kind the query
   * @param {Message | MessageRef} message
   * @param {Record<string, unknown>} fields
   */
  async #changeMessage(kind, message, fields) {
    const q = await this.query({
      [kind]: {
        conversationType: message.conversationType,
        targetId: message.targetId,
        seq: String(message.seq),
        ...fields,
      },
    });
    const m = q.messages?.[0];
    if (!m) throw new TidingsError(ErrorCode.RC_QUERY_ACK_NO_DATA, 'the answer held no message');
    return messageOf(m, this.#userId);
  }

  // ---------------------------------------------------------------- blocklist, presence, quiet hours

  /**
   * Blocks a user: their messages to this user are refused (405). One way only.
   * @param {string} userId
   * @param {Callback} [callback]
   * @returns {Promise<boolean>}
   */
  addToBlacklist(userId, callback) {
    return withCallback(this.query({ setBlocked: { userId, blocked: true } }).then(() => true), callback);
  }

  /**
   * @param {string} userId
   * @param {Callback} [callback]
   * @returns {Promise<boolean>}
   */
  removeFromBlacklist(userId, callback) {
    return withCallback(this.query({ setBlocked: { userId, blocked: false } }).then(() => true), callback);
  }

  /**
   * The users this user blocks, in id order.
   * @param {Callback} [callback]
   * @returns {Promise<string[]>}
   */
  getBlacklist(callback) {
    return withCallback(
      this.query({ getBlocklist: {} }).then((q) => (q.userIds ?? []).map(String)),
      callback,
    );
  }

  /**
   * Whether this user blocks `userId`.
   * @param {string} userId
   * @param {Callback} [callback]
   * @returns {Promise<boolean>}
   */
  getBlacklistStatus(userId, callback) {
    return withCallback(
      this.query({ getBlockStatus: { userId } }).then((q) => (q.userIds ?? []).map(String).includes(userId)),
      callback,
    );
  }

  /**
   * Watches these users (at most 200; replaces the last list; empty stops watching): each one
   * coming online or going offline is a `presence` event. The client watches them again after
   * every reconnect. Answers their presence now.
   * @param {string[]} userIds
   * @param {Callback} [callback]
   * @returns {Promise<import('./types.js').Presence[]>}
   */
  subscribeUserStatus(userIds, callback) {
    this.#watching = [...userIds];
    return withCallback(
      this.query({ subscribePresence: { userIds } }).then((q) => (q.presence ?? []).map(presenceOf)),
      callback,
    );
  }

  /**
   * These users' presence now (1–200 of them).
   * @param {string | string[]} userIds
   * @param {Callback} [callback]
   * @returns {Promise<import('./types.js').Presence[]>}
   */
  getUserStatus(userIds, callback) {
    const ids = typeof userIds === 'string' ? [userIds] : userIds;
    return withCallback(
      this.query({ getPresence: { userIds: ids } }).then((q) => (q.presence ?? []).map(presenceOf)),
      callback,
    );
  }

  /**
   * These users' names and portraits (1–100 ids), each once, in the order asked; a user the
   * server does not know has an empty name and portrait.
   * @param {string | string[]} userIds
   * @param {Callback} [callback]
   * @returns {Promise<{ userId: string, name: string, portrait: string }[]>}
   */
  getUsers(userIds, callback) {
    const ids = typeof userIds === 'string' ? [userIds] : userIds;
    return withCallback(
      this.query({ getUsers: { userIds: ids } }).then((q) =>
        (q.users ?? []).map((/** @type {any} */ u) => ({
          userId: String(u.userId ?? ''),
          name: String(u.name ?? ''),
          portrait: String(u.portrait ?? ''),
        })),
      ),
      callback,
    );
  }

  /**
   * Sets this user's quiet hours (no push notifications), every day from `startMinute` after
   * midnight UTC (or a `HH:MM` time, UTC) for `minutes` (1–1440). Every device of the user gets
   * a `quietHours` event.
   * @param {number | string} start
   * @param {number} minutes
   * @param {Callback} [callback]
   * @returns {Promise<{ startMinute: number, minutes: number }>}
   */
  setNotificationQuietHours(start, minutes, callback) {
    return withCallback(this.#setQuietHours(minuteOf(start), minutes), callback);
  }

  /**
   * This user's quiet hours (`minutes` 0: none).
   * @param {Callback} [callback]
   * @returns {Promise<{ startMinute: number, minutes: number }>}
   */
  getNotificationQuietHours(callback) {
    return withCallback(
      this.query({ getQuietHours: {} }).then((q) => ({
        startMinute: int(q.quietHours?.startMinute),
        minutes: int(q.quietHours?.minutes),
      })),
      callback,
    );
  }

  /**
   * Turns quiet hours off.
   * @param {Callback} [callback]
   * @returns {Promise<boolean>}
   */
  removeNotificationQuietHours(callback) {
    return withCallback(this.#setQuietHours(0, 0).then(() => true), callback);
  }

  /**
   * Registers this browser's Web Push subscription, so the user gets notifications while none
   * of their devices is connected (docs/protocol.md, "Push notifications"). Takes a
   * `PushSubscription` from `pushManager.subscribe` (made with the server's VAPID key as its
   * `applicationServerKey`: `vapidPublicKey` of `GET /navi`), or what its `toJSON()` gives.
   * Resolves with the server's VAPID public key.
   * @param {{ endpoint?: string | null, keys?: Record<string, string>, toJSON?: () => any }} subscription
   * @param {Callback} [callback]
   * @returns {Promise<string>}
   */
  registerPush(subscription, callback) {
    const json = typeof subscription?.toJSON === 'function' ? subscription.toJSON() : subscription;
    const keys = json?.keys ?? {};
    return withCallback(
      this.query({
        registerPush: {
          endpoint: String(json?.endpoint ?? ''),
          p256dh: String(keys.p256dh ?? ''),
          auth: String(keys.auth ?? ''),
        },
      }).then((q) => String(q.vapidPublicKey ?? '')),
      callback,
    );
  }

  /**
   * Registers a phone's native push token for this device (hybrid apps: the token the
   * platform gave the native shell), so the device gets notifications while it is not
   * connected or is in the background (docs/protocol.md, "Push notifications"). One token per
   * device, provider and app: a new token replaces the device's earlier one, and a token
   * registered by another user moves to this one.
   * @param {{ provider: 'fcm' | 'apns', token: string, appId?: string, sandbox?: boolean, locale?: string }} token
   * @param {Callback} [callback]
   * @returns {Promise<boolean>}
   */
  registerPushToken(token, callback) {
    return withCallback(
      this.query({
        registerPush: {
          provider: String(token?.provider ?? ''),
          token: String(token?.token ?? ''),
          appId: String(token?.appId ?? ''),
          sandbox: Boolean(token?.sandbox),
          locale: String(token?.locale ?? ''),
        },
      }).then(() => true),
      callback,
    );
  }

  // ------------------------------------------------------- end-to-end encryption

  /**
   * Uploads this device's MLS key packages (each a TLS-serialized `MLSMessage` holding a
   * `KeyPackage` whose credential names this user and device; at most 100). With `replace`,
   * the device's earlier ones are removed first. Answers how many one-time key packages the
   * device has in the directory; upload none to just ask. See docs/e2ee.md; `E2ee` does this
   * for you.
   * @param {Uint8Array[]} keyPackages
   * @param {boolean} [replace]
   * @returns {Promise<number>}
   */
  publishKeyPackages(keyPackages, replace = false) {
    return this.query({
      publishKeyPackages: { keyPackages: (keyPackages ?? []).map((k) => toBase64(k)), replace: Boolean(replace) },
    }).then((q) => int(q.keyPackageCount));
  }

  /**
   * Claims one key package of each device of each user named (1–10), leaving out the devices
   * in `except` (`user:device`, those already in a group): by user in the order asked, then by
   * device id.
   * @param {string[]} userIds
   * @param {string[]} [except]
   * @returns {Promise<import('./types.js').ClaimedKeyPackage[]>}
   */
  claimKeyPackages(userIds, except = []) {
    return this.query({ claimKeyPackages: { userIds: [...userIds], except: [...except] } }).then((q) =>
      (q.keyPackages ?? []).map((/** @type {any} */ k) => ({
        userId: String(k.userId ?? ''),
        deviceId: String(k.deviceId ?? ''),
        keyPackage: fromBase64(String(k.keyPackage ?? '')),
        lastResort: Boolean(k.lastResort),
      })),
    );
  }

  /**
   * Removes one of this user's native push tokens.
   * @param {'fcm' | 'apns'} provider
   * @param {string} token
   * @param {Callback} [callback]
   * @returns {Promise<boolean>}
   */
  unregisterPushToken(provider, token, callback) {
    return withCallback(
      this.query({ unregisterPush: { provider: String(provider), token: String(token) } }).then(() => true),
      callback,
    );
  }

  /**
   * Tells the server whether the app is in the background: while it is, this device gets push
   * notifications as if it were not connected (messages still arrive on the connection).
   * @param {boolean} background
   * @param {Callback} [callback]
   * @returns {Promise<boolean>}
   */
  setAppState(background, callback) {
    return withCallback(
      this.query({ setAppState: { background: Boolean(background) } }).then(() => true),
      callback,
    );
  }

  /**
   * Removes one of this user's Web Push subscriptions, by its endpoint.
   * @param {string} endpoint
   * @param {Callback} [callback]
   * @returns {Promise<boolean>}
   */
  unregisterPush(endpoint, callback) {
    return withCallback(
      this.query({ unregisterPush: { endpoint: String(endpoint) } }).then(() => true),
      callback,
    );
  }

  /**
   * @param {number} startMinute
   * @param {number} minutes
   */
  async #setQuietHours(startMinute, minutes) {
    const q = await this.query({ setQuietHours: { startMinute, minutes } });
    return { startMinute: int(q.quietHours?.startMinute), minutes: int(q.quietHours?.minutes) };
  }

  /**
   * Mutes a conversation's notifications (`ConversationNotificationStatus.DO_NOT_DISTURB`, 0)
   * or unmutes them (`NOTIFY`, 1), on every device of the user.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {number} status
   * @param {Callback} [callback]
   * @returns {Promise<number>}
   */
  setConversationNotificationStatus(conversationType, targetId, status, callback) {
    return withCallback(
      this.updateConversation(conversationType, targetId, { muted: status === DO_NOT_DISTURB }).then((c) =>
        c?.isMuted ? DO_NOT_DISTURB : NOTIFY,
      ),
      callback,
    );
  }

  /**
   * A conversation's notification status: `DO_NOT_DISTURB` (0) or `NOTIFY` (1).
   * @param {number} conversationType
   * @param {string} targetId
   * @param {Callback} [callback]
   * @returns {Promise<number>}
   */
  getConversationNotificationStatus(conversationType, targetId, callback) {
    return withCallback(
      this.#getConversation(conversationType, targetId).then((c) => (c?.isMuted ? DO_NOT_DISTURB : NOTIFY)),
      callback,
    );
  }

  // ---------------------------------------------------------------- drafts

  /**
   * Keeps a draft of a conversation in the storage, for the connected user (seed 004's
   * `saveTextMessageDraft`; synchronous, as there). Needs a user: after `connect`.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {string} text
   * @returns {boolean}
   */
  saveTextMessageDraft(conversationType, targetId, text) {
    this.#options.storage.setItem(this.#draftKey(conversationType, targetId), String(text));
    return true;
  }

  /**
   * The draft kept for a conversation, or null.
   * @param {number} conversationType
   * @param {string} targetId
   * @returns {string | null}
   */
  getTextMessageDraft(conversationType, targetId) {
    return this.#options.storage.getItem(this.#draftKey(conversationType, targetId));
  }

  /**
   * @param {number} conversationType
   * @param {string} targetId
   * @returns {boolean}
   */
  clearTextMessageDraft(conversationType, targetId) {
    this.#options.storage.removeItem(this.#draftKey(conversationType, targetId));
    return true;
  }

  /**
   * @param {number} conversationType
   * @param {string} targetId
   */
  #draftKey(conversationType, targetId) {
    this.#requireInit();
    if (!this.#userId) throw new TidingsError(ErrorCode.BIZ_ERROR_CLIENT_NOT_INIT, 'drafts are per user: connect first');
    return this.#keyOf(`draft:${conversationKey(conversationType, targetId)}`);
  }

  // ---------------------------------------------------------------- files

  /**
   * What an upload needs: the URL to `POST` the file to (add `?name=`) and the headers that
   * authenticate it (the session's token; add the file's `Content-Type`). `fileType` is
   * accepted for seed 004's signature; the server tells the kind from the content type.
   * @param {number} [fileType]
   * @param {Callback} [callback]
   * @returns {Promise<{ url: string, headers: Record<string, string>, token: string }>}
   */
  getFileToken(fileType, callback) {
    void fileType;
    return withCallback(
      (async () => {
        const { base, token } = this.#fileAccess();
        return { url: `${base}/v1/files`, headers: { Authorization: `Bearer ${token}` }, token };
      })(),
      callback,
    );
  }

  /**
   * Uploads a file (a Blob, an ArrayBuffer, a typed array or a string) with the session's
   * token; resolves with the server's answer: `{file: {id, kind, type, name, size, …}, url,
   * thumbnailUrl?, expiresAt}` (links that expire after the server's maximum link lifetime,
   * 7 days by default).
   * @param {any} data
   * @param {{ name?: string, type?: string }} [options] `type`: the content type (the Blob's
   *   by default, else `application/octet-stream`)
   * @param {Callback} [callback]
   * @returns {Promise<import('./types.js').Upload>}
   */
  uploadFile(data, options = {}, callback) {
    return withCallback(
      (async () => {
        const { base, token } = this.#fileAccess();
        const type = options.type || data?.type || 'application/octet-stream';
        const name = options.name ?? data?.name ?? 'file';
        const res = await this.#options.fetch(`${base}/v1/files?name=${encodeURIComponent(name)}`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${token}`, 'Content-Type': type },
          body: data,
        });
        return /** @type {import('./types.js').Upload} */ (await httpAnswer(res));
      })(),
      callback,
    );
  }

  /**
   * Fresh links to a file, that stop working after `ttlSecs` (default 3,600; the server gives
   * at most its maximum link lifetime, 7 days by default: see `expiresAt`). The file's uploader
   * may ask with the file alone: `getFileUrl(file, ttlSecs?, callback?)`. Anyone else names the
   * message they see the file in, `getFileUrl(file, message, ttlSecs?, callback?)`: a
   * `Message`, or `{conversationType, targetId, seq}` (a chatroom's id and the item's seq for a
   * chatroom); the server answers only if this user can see that message now and its content
   * holds the file (42024 otherwise).
   * @param {string | { file: { id: string } }} file a file id, one of the file's links (as a
   *   message's content holds it), or `uploadFile`'s answer
   * @param {Message | MessageRef | number} [messageOrTtl]
   * @param {number | Callback} [ttlOrCallback]
   * @param {Callback} [callback]
   * @returns {Promise<{ url: string, downloadUrl: string, thumbnailUrl?: string, expiresAt: number }>}
   */
  getFileUrl(file, messageOrTtl, ttlOrCallback, callback) {
    // The message is an object; the uploader's call has a number, nothing, or the callback in
    // its place.
    const named = typeof messageOrTtl === 'object' && messageOrTtl !== null && !isCallback(messageOrTtl);
    const message = named ? /** @type {MessageRef} */ (messageOrTtl) : undefined;
    const ttlSecs = named ? ttlOrCallback : messageOrTtl;
    const done = /** @type {Callback | undefined} */ (
      named ? callback : isCallback(messageOrTtl) ? messageOrTtl : ttlOrCallback
    );
    return withCallback(
      (async () => {
        const { base, token } = this.#fileAccess();
        const id = typeof file === 'string' ? fileIdOf(file) : file.file.id;
        /** @type {Record<string, unknown>} */
        const body = {};
        if (typeof ttlSecs === 'number' && ttlSecs) body.ttlSecs = ttlSecs;
        if (message) {
          body.conversationType = message.conversationType;
          body.targetId = message.targetId;
          body.seq = Number(message.seq);
        }
        const res = await this.#options.fetch(`${base}/v1/files/${encodeURIComponent(id)}/url`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
          body: JSON.stringify(body),
        });
        const a = await httpAnswer(res);
        /** @type {{ url: string, downloadUrl: string, thumbnailUrl?: string, expiresAt: number }} */
        const out = { url: String(a.url), downloadUrl: String(a.url), expiresAt: int(a.expiresAt) };
        if (a.thumbnailUrl) out.thumbnailUrl = String(a.thumbnailUrl);
        return out;
      })(),
      done,
    );
  }

  /** The HTTP base of the node this client is (or was last) connected to, and the token. */
  #fileAccess() {
    this.#requireInit();
    const base = this.#link?.http ?? this.#lastHttp;
    if (!this.#token || !base) throw new TidingsError(ErrorCode.BIZ_ERROR_CLIENT_NOT_INIT, 'connect first');
    return { base, token: this.#token };
  }

  // ---------------------------------------------------------------- the local cache

  /**
   * The conversation list as this client last knew it, from the storage's cache (kept up to
   * date by the messages and changes it sees): for showing something before `connect`
   * resolves. `getConversationList` asks the server.
   * @returns {Conversation[]}
   */
  getCachedConversationList() {
    return [...this.#conversations.values()].sort(
      (a, b) => Number(b.isTop) - Number(a.isTop) || b.sentTime - a.sentTime,
    );
  }

  #keyOf(/** @type {string} */ what) {
    return `tidings:${this.#appKey}:${this.#userId}:${what}`;
  }

  /** @returns {number | null} */
  #storedCursor() {
    const v = Number(this.#options.storage.getItem(this.#keyOf('cursor')));
    return Number.isFinite(v) && v > 0 ? v : null;
  }

  #saveCursor() {
    const c = this.#inbox.cursor;
    if (c !== null && this.#userId) this.#options.storage.setItem(this.#keyOf('cursor'), String(c));
  }

  /** A different user connected with this client: nothing of the last one applies. */
  #forgetUser() {
    this.#saveCursor();
    this.#saveConversations();
    this.#inbox = new Inbox(null);
    this.#conversations = new Map();
    this.#loadedFor = '';
    this.#rooms.clear();
    this.#watching = [];
    this.#failPending(ErrorCode.CLIENT_DISCONNECTED, 'another user connected');
  }

  /** Loads this user's conversation cache, once. */
  #loadUser() {
    if (this.#loadedFor === this.#userId) return;
    this.#loadedFor = this.#userId;
    const kept = readJson(this.#options.storage, this.#keyOf('conversations'));
    if (!Array.isArray(kept)) return;
    for (const c of kept) {
      if (!c || typeof c !== 'object') continue;
      const latest = c.latestMessage;
      if (latest && typeof latest === 'object') {
        latest.content = decodeContent(String(latest.objectName ?? ''), JSON.stringify(latest.content ?? {}));
      }
      this.#conversations.set(conversationKey(int(c.conversationType), String(c.targetId ?? '')), c);
    }
  }

  #queueSave() {
    if (this.#saveQueued) return;
    this.#saveQueued = true;
    queueMicrotask(() => {
      this.#saveQueued = false;
      this.#saveConversations();
    });
  }

  #saveConversations() {
    if (!this.#userId || this.#loadedFor !== this.#userId) return;
    const list = this.getCachedConversationList()
      .slice(0, CACHED_CONVERSATIONS)
      .map((c) => ({
        ...c,
        latestMessage: c.latestMessage ? { ...c.latestMessage, content: c.latestMessage.content.encode() } : null,
      }));
    this.#options.storage.setItem(this.#keyOf('conversations'), JSON.stringify(list));
  }

  /** @param {Conversation[]} list */
  #replaceConversations(list) {
    this.#conversations = new Map(list.map((c) => [conversationKey(c.conversationType, c.targetId), c]));
    this.#queueSave();
  }

  /**
   * A message of a conversation was presented or sent: the cache's newest message and count.
   * @param {Message} m
   */
  #noteMessage(m) {
    /** @type {number[]} */
    const listed = [ConversationType.PRIVATE, ConversationType.GROUP, ConversationType.SYSTEM];
    if (!listed.includes(m.conversationType)) {
      return;
    }
    const key = conversationKey(m.conversationType, m.targetId);
    if (AMEND_EVENTS.has(m.objectName)) {
      // A recall, edit or reaction changes the message it names: the conversation's latest
      // message only if it is that one, and it never moves the conversation.
      this.#noteAmend(key, m);
      return;
    }
    const conv = this.#conversations.get(key) ?? blankConversation(m.conversationType, m.targetId);
    if (m.seq >= (conv.latestMessage?.seq ?? 0)) {
      conv.latestMessage = m;
      conv.latestMessageId = m.messageUId;
      conv.objectName = m.objectName;
      conv.sentTime = m.sentTime;
      conv.sentStatus = m.sentStatus;
    }
    if (m.messageDirection === MessageDirection.RECEIVE && m.seq > conv.readSeq && counted(m.objectName)) {
      conv.unreadMessageCount += 1;
      const mention = m.mentionedInfo;
      if (mention && (mention.type === 1 || mention.userIdList.includes(this.#userId))) conv.mentionedCount += 1;
    }
    delete conv.removed;
    this.#conversations.set(key, conv);
    this.#queueSave();
    this.#events.emit('conversation', conv);
  }

  /**
   * An amend event of a conversation: its latest message, if that is the one changed, shows the
   * change (docs/protocol.md, "The latest message").
   * @param {string} key
   * @param {Message} event
   */
  #noteAmend(key, event) {
    const conv = this.#conversations.get(key);
    const latest = conv?.latestMessage;
    const c = /** @type {any} */ (event.content);
    const change = c?.content ?? c ?? {};
    if (!conv || !latest || int(change.seq) !== latest.seq) return;
    if (event.objectName === 'tidings:recall') {
      conv.latestMessage = { ...latest, isRecalled: true };
    } else if (event.objectName === 'tidings:edit' && typeof change.content === 'string') {
      conv.latestMessage = { ...latest, isEdited: true, content: decodeContent(latest.objectName, change.content) };
    } else {
      return;
    }
    this.#queueSave();
    this.#events.emit('conversation', conv);
  }

  /**
   * This user changed a conversation's settings (here or on another device).
   * @param {ConversationChange} change
   */
  #noteConversationChange(change) {
    const key = conversationKey(change.conversationType, change.targetId);
    const conv = this.#conversations.get(key);
    const latestSeq = conv?.latestMessage?.seq ?? 0;
    if (conv) {
      conv.readSeq = change.readSeq;
      conv.isTop = change.pinned;
      conv.isMuted = change.muted;
      conv.clearedSeq = change.clearedSeq;
      if (change.readSeq >= latestSeq) {
        conv.unreadMessageCount = 0;
        conv.mentionedCount = 0;
      }
    }
    if (conv && change.removedSeq > 0 && change.removedSeq >= latestSeq) {
      this.#conversations.delete(key);
      this.#queueSave();
      this.#events.emit('conversation', { ...conv, removed: true });
      return;
    }
    this.#queueSave();
    this.#events.emit(
      'conversation',
      conv ?? {
        ...blankConversation(change.conversationType, change.targetId),
        readSeq: change.readSeq,
        clearedSeq: change.clearedSeq,
        isTop: change.pinned,
        isMuted: change.muted,
      },
    );
  }
}

/**
 * A conversation with nothing in it yet.
 * @param {number} conversationType
 * @param {string} targetId
 * @returns {Conversation}
 */
function blankConversation(conversationType, targetId) {
  return {
    conversationType,
    targetId,
    latestMessage: null,
    latestMessageId: '',
    objectName: '',
    sentTime: 0,
    sentStatus: 0,
    unreadMessageCount: 0,
    mentionedCount: 0,
    readSeq: 0,
    clearedSeq: 0,
    peerReadSeq: 0,
    isTop: false,
    isMuted: false,
  };
}

/** The types of the events that change another message (recall, edit, reaction). */
const AMEND_EVENTS = new Set(['tidings:recall', 'tidings:edit', 'tidings:reaction']);

/**
 * Whether messages of a type raise the unread count, as far as this client can tell.
 * @param {string} objectName
 */
function counted(objectName) {
  if (BUILT_IN.has(objectName)) return true;
  if (objectName.startsWith('tidings:')) return false;
  return contentClass(objectName)?.isCounted ?? true;
}

/** @param {unknown} text */
function safeJson(text) {
  try {
    return JSON.parse(String(text ?? ''));
  } catch {
    return null;
  }
}

/**
 * A time of day as minutes after midnight: a number as it is, or `HH:MM` (`HH:MM:SS`).
 * @param {number | string} start
 */
function minuteOf(start) {
  if (typeof start === 'number') return start;
  const m = /^(\d{1,2}):(\d{2})(?::\d{2})?$/.exec(start);
  if (!m) throw new TidingsError(ErrorCode.BIZ_ERROR_INVALID_PARAMETER, `not a time of day: ${start}`);
  return Number(m[1]) * 60 + Number(m[2]);
}

/**
 * A file's id: the string itself, or the id in a link to the file (`…/v1/files/{id}…`).
 * @param {string} idOrLink
 */
function fileIdOf(idOrLink) {
  return /\/v1\/files\/([0-9a-f]{32})/.exec(idOrLink)?.[1] ?? idOrLink;
}

/**
 * The JSON answer of one of the server's HTTP endpoints, or its refusal as an error.
 * @param {Response} res
 * @returns {Promise<Record<string, any>>}
 */
async function httpAnswer(res) {
  const text = await res.text();
  const body = /** @type {any} */ (safeJson(text));
  if (res.ok && body && int(body.code) === 0) return body;
  const code = int(body?.code) || res.status;
  throw new TidingsError(code, String(body?.message ?? `HTTP ${res.status}`), code);
}
