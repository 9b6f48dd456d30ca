// @tidings/sdk/rong: a RongCloud-compatible entry (seed 004's `RongIMLib` / `RongIMClient`),
// so that a Web app written for RongCloud's SDK ports to Tidings by changing its import. It
// wraps a TidingsClient (./client.js): the seed's callback style (`{onSuccess, onError}`) on
// every call, which also answers a Promise; the seed's `RC:` object names and content classes,
// mapped to and from Tidings' types; the seed's error codes; discussions (conversation type 2,
// groups of kind `discussion` on the wire); and a local message store. See ../README.md,
// "RongCloud compatibility".

import { TidingsClient } from './client.js';
import {
  ConnectionStatus,
  ConversationNotificationStatus,
  ConversationType,
  ErrorCode as NativeErrorCode,
  MentionedType,
  MessageDirection,
  SentStatus,
  TidingsError,
  TransportType,
} from './codes.js';
import {
  MentionedInfo,
  MessageClasses,
  MessageContent,
  MessageType,
  ReadReceiptMessage,
  RecallCommandMessage,
  TextMessage,
  TypingStatusMessage,
  classOf,
  contentFromFields,
  fromNative,
  nativeObjectName,
  registerMessageType as registerSeedType,
  searchableText,
  seedObjectName,
} from './rong-messages.js';
import { IndexedDBMessageStore, MemoryMessageStore } from './rong-store.js';
import { defaultStorage } from './storage.js';
import { conversationKey, conversationOf, int } from './wire.js';

export * from './rong-messages.js';
export { IndexedDBMessageStore, MemoryMessageStore } from './rong-store.js';

/**
 * @typedef {import('./types.js').Message} NativeMessage
 * @typedef {import('./types.js').Conversation} NativeConversation
 * @typedef {import('./rong-store.js').MessageStore} MessageStore
 * @typedef {import('./rong-store.js').StoredMessage} StoredMessage
 * @typedef {{ onSuccess?: (...values: any[]) => void, onError?: (code: number, detail?: any) => void }} Callback
 */

/** The entry's version, as `getSDKInfo` answers it. */
export const VERSION = '0.1.0';

/**
 * Every code this entry may report, by name: the Tidings SDK's table (which names the codes it
 * shares with seed 004 by the seed's names), and the rest of seed 004's table (六,
 * "通信过程中产生的各种错误码定义"), so that every one of its 103 names is here with its
 * number. `NEVER_PRODUCED` lists the seed's names this entry never reports.
 */
export const ErrorCode = Object.freeze({
  ...NativeErrorCode,
  RECALL_MESSAGE: 25101,
  NOT_IN_DISCUSSION: 21406,
  CHATROOM_GET_HISTORYMSG_ERROR: 23413,
  CHATROOM_NOT_OPEN_HISTORYMSG_STORE: 23414,
  CHATROOM_KV_STORE_NOT_OPEN: 23426,
  JOIN_IN_DISCUSSION: 21407,
  CREATE_DISCUSSION: 21408,
  INVITE_DICUSSION: 21409,
  GET_USERINFO_ERROR: 23407,
  RC_DOMAIN_NOT_RESOLVE: 30009,
  RC_CONN_ID_REJECT: 31002,
  RC_CONN_REDIRECTED: 31006,
  RC_CONN_PACKAGE_NAME_INVALID: 31007,
  RC_CONN_APP_BLOCKED_OR_DELETED: 31008,
  RC_MSG_DATA_INCOMPLETE: 32002,
  BIZ_ERROR_DATABASE_ERROR: 33002,
  BIZ_ERROR_RECONNECT_SUCCESS: 33005,
  MSG_INSERT_ERROR: 33008,
  MSG_DEL_ERROR: 33009,
  CONVER_REMOVE_ERROR: 34001,
  CONVER_GETLIST_ERROR: 34002,
  CONVER_SETOP_ERROR: 34003,
  CONVER_TOTAL_UNREAD_ERROR: 34004,
  CONVER_TYPE_UNREAD_ERROR: 34005,
  CONVER_ID_TYPE_UNREAD_ERROR: 34006,
  CONVER_CLEAR_ERROR: 34007,
  CLEAR_HIS_ERROR: 34010,
  CLEAR_HIS_TYPE_ERROR: 34008,
  CLEAR_HIS_TIME_ERROR: 34011,
  CONVER_GET_ERROR: 34009,
  GROUP_SYNC_ERROR: 35001,
  GROUP_MATCH_ERROR: 35002,
  CHATROOM_ID_ISNULL: 36001,
  CHARTOOM_JOIN_ERROR: 36002,
  CHATROOM_HISMESSAGE_ERROR: 36003,
  CHATROOM_KV_NOT_FOUND: 36004,
  BLACK_ADD_ERROR: 37001,
  BLACK_GETSTATUS_ERROR: 37002,
  BLACK_REMOVE_ERROR: 37003,
  DRAF_GET_ERROR: 38001,
  DRAF_SAVE_ERROR: 38002,
  DRAF_REMOVE_ERROR: 38003,
  SUBSCRIBE_ERROR: 39001,
  COOKIE_ENABLE: 51001,
  GET_MESSAGE_BY_ID_ERROR: 61001,
  HAVNODEVICEID: 24001,
  DEVICEIDISHAVE: 24002,
  FEILD: 24009,
  NULLCHANNELNAME: 24011,
  INTERNALERRROR: 24015,
  CLOSE_BEFORE_OPEN: 51001,
  ALREADY_IN_USE: 51002,
  INVALID_CHANNEL_NAME: 51003,
  DELETE_MESSAGE_ID_IS_NULL: 61001,
  REMOTE_ENGINE_UN_SUPPORTED: 16,
  REMOTE_NETWORK_ERROR: 17,
  /** This entry's own: the seed's function has no counterpart in Tidings (customer service, Agora, public services). */
  NOT_SUPPORTED: -4,
  /** This entry's own: what the call would change is the server's setting (offline retention). */
  SERVER_SETTING: -5,
});

/**
 * The seed's codes this entry never reports: RTC, public-service and IE-era codes, and
 * conditions Tidings does not have (a redirect, a package name, an app blocked, a chatroom
 * without history or entries, a reconnect reported as an error, a protocol-layer data error).
 */
export const NEVER_PRODUCED = Object.freeze([
  'CHATROOM_GET_HISTORYMSG_ERROR',
  'CHATROOM_NOT_OPEN_HISTORYMSG_STORE',
  'CHATROOM_KV_STORE_NOT_OPEN',
  'RC_NET_UNAVAILABLE',
  'RC_HTTP_RECV_FAIL',
  'RC_DOMAIN_NOT_RESOLVE',
  'RC_PING_SEND_FAIL',
  'RC_CONN_ID_REJECT',
  'RC_CONN_REDIRECTED',
  'RC_CONN_PACKAGE_NAME_INVALID',
  'RC_CONN_APP_BLOCKED_OR_DELETED',
  'RC_MSG_DATA_INCOMPLETE',
  'BIZ_ERROR_NO_CHANNEL',
  'BIZ_ERROR_RECONNECT_SUCCESS',
  'CLEAR_HIS_TYPE_ERROR',
  'GROUP_MATCH_ERROR',
  'SUBSCRIBE_ERROR',
  'COOKIE_ENABLE',
  'HAVNODEVICEID',
  'DEVICEIDISHAVE',
  'FEILD',
  'NULLCHANNELNAME',
  'INTERNALERRROR',
  'CLOSE_BEFORE_OPEN',
  'ALREADY_IN_USE',
  'INVALID_CHANNEL_NAME',
  'REMOTE_ENGINE_UN_SUPPORTED',
  'REMOTE_NETWORK_ERROR',
]);

/**
 * The connection states of a refused connect (seed 004's `ConnectionState`, as its `connect`
 * example reads them in `onError`).
 */
export const ConnectionState = Object.freeze({
  ACCEPTED: 0,
  UNACCEPTABLE_PAROTOCOL_VERSION: 1,
  IDENTIFIER_REJECTED: 2,
  SERVER_UNAVAILABLE: 3,
  TOKEN_INCORRECT: 4,
  NOT_AUTHORIZED: 5,
  REDIRECT: 6,
  PACKAGE_ERROR: 7,
  APP_BLOCK_OR_DELETE: 8,
  BLOCK: 9,
  TOKEN_EXPIRE: 10,
  DEVICE_ERROR: 11,
});

/** A received message's local state (seed 004's 消息状态 table; DOWNLOADED as RongCloud's 4). */
export const ReceivedStatus = Object.freeze({ UNREAD: 0, READ: 1, LISTENED: 2, DOWNLOADED: 4, RETRIEVED: 8 });
/** A discussion's invitations: open to every member, or to its creator only. */
export const DiscussionInviteStatus = Object.freeze({ OPENED: 0, CLOSED: 1 });
/** `getBlacklistStatus`'s answer (RongCloud's values). */
export const BlacklistStatus = Object.freeze({ IN_BLACK_LIST: 0, NOT_IN_BLACK_LIST: 1 });

export {
  ConnectionStatus,
  ConversationNotificationStatus,
  ConversationType,
  MentionedType,
  MessageDirection,
  SentStatus,
  TransportType,
};

/** Tidings codes that mean a token is no good (`onTokenIncorrect`). */
const TOKEN_CODES = new Set([31004, 31005, 31020, 31021]);

/**
 * What `connect`'s `onError` gets for a failed connect: the seed's ConnectionState of a
 * refusal, `ErrorCode.TIMEOUT` for a timeout, else the code itself.
 * @param {TidingsError} e
 */
export function connectErrorCode(e) {
  switch (e.serverCode) {
    case 31001:
      return ConnectionState.UNACCEPTABLE_PAROTOCOL_VERSION;
    case 41003:
    case 31003:
    case 40034:
      return ConnectionState.SERVER_UNAVAILABLE;
    case 31004:
    case 31021:
      return ConnectionState.TOKEN_INCORRECT;
    case 31005:
      return ConnectionState.NOT_AUTHORIZED;
    case 31009:
      return ConnectionState.BLOCK;
    case 31020:
      return ConnectionState.TOKEN_EXPIRE;
    case 40014:
      return ConnectionState.DEVICE_ERROR;
    default:
      break;
  }
  if (/** @type {number[]} */ ([ErrorCode.RC_CONN_ACK_TIMEOUT, ErrorCode.RC_MSG_RESP_TIMEOUT, ErrorCode.RC_HTTP_REQ_TIMEOUT]).includes(e.code)) {
    return ErrorCode.TIMEOUT;
  }
  return e.code;
}

/**
 * The error this entry reports: a code of the seed's table passes through; any other failure
 * of an operation the seed has a code for is reported with that code (the Tidings code stays
 * in `serverCode`).
 * @param {unknown} e
 * @param {number} [opCode]
 * @returns {TidingsError}
 */
export function seedError(e, opCode) {
  if (!(e instanceof TidingsError)) {
    return new TidingsError(opCode ?? ErrorCode.UNKNOWN, e instanceof Error ? e.message : String(e));
  }
  if (opCode === undefined || SEED_TABLE_NUMBERS.has(e.code)) return e;
  return new TidingsError(opCode, e.message, e.serverCode);
}

/** Every number of the seed's table (and this entry's own). */
const SEED_TABLE_NUMBERS = new Set([
  -1, -2, -3, -4, -5, 0, 16, 17, 405, 20406, 20407, 20604, 21406, 21407, 21408, 21409, 21501, 21502, 22406, 22408,
  23406, 23407, 23408, 23409, 23410, 23411, 23412, 23413, 23414, 23423, 23424, 23426, 23427, 24001, 24002, 24009,
  24011, 24015, 25101, 30001, 30002, 30003, 30004, 30005, 30006, 30007, 30008, 30009, 30010, 30011, 30012, 30013,
  30014, 31000, 31001, 31002, 31003, 31004, 31005, 31006, 31007, 31008, 31009, 31010, 31011, 32001, 32002, 33001,
  33002, 33003, 33004, 33005, 33006, 33008, 33009, 34001, 34002, 34003, 34004, 34005, 34006, 34007, 34008, 34009,
  34010, 34011, 35001, 35002, 36001, 36002, 36003, 36004, 37001, 37002, 37003, 38001, 38002, 38003, 39001, 51001,
  51002, 51003, 61001,
]);

/**
 * Calls a seed-style callback when the promise settles and answers the promise (rejected with
 * the seed's error). `spread` turns the value into `onSuccess`'s arguments.
 * @template T
 * @param {Promise<T>} promise
 * @param {Callback | undefined | null} callback
 * @param {{ code?: number, spread?: (v: T) => any[] }} [how]
 * @returns {Promise<T>}
 */
function settle(promise, callback, how = {}) {
  const p = promise.catch((e) => {
    throw seedError(e, how.code);
  });
  if (callback && typeof callback === 'object') {
    p.then(
      (v) => callback.onSuccess?.(...(how.spread ? how.spread(v) : [v])),
      (e) => callback.onError?.(e.code, e),
    );
  }
  p.catch(() => {});
  return p;
}

/**
 * A rejected promise with a code (and the callback's `onError`).
 * @param {Callback | undefined | null} callback
 * @param {number} code
 * @param {string} message
 */
function fail(callback, code, message) {
  return settle(Promise.reject(new TidingsError(code, message)), callback);
}

/**
 * Whether `v` is a seed-style callback object.
 * @param {unknown} v
 * @returns {v is Callback}
 */
function isCallback(v) {
  return Boolean(v && typeof v === 'object' && ('onSuccess' in v || 'onError' in v));
}

/** The conversation type a seed type travels as: a discussion (2) is a group (3) on the wire. */
function wireType(/** @type {number} */ type) {
  return type === ConversationType.DISCUSSION ? ConversationType.GROUP : type;
}

/** @param {unknown} v */
function asArray(v) {
  return Array.isArray(v) ? v : v === undefined || v === null ? [] : [v];
}

/**
 * @typedef {object} RongInitOptions Tidings' `init` options (`navi`, `servers`, `WebSocket`,
 *   `storage`, …) and these:
 * @property {'memory' | 'indexeddb' | MessageStore | ((appKey: string, userId: string) => MessageStore)} [messageStore]
 *   the local message store: IndexedDB where there is one, else memory
 * @property {any} [indexedDB] the IndexedDB factory (`globalThis.indexedDB` by default)
 * @property {any} [protobuf] accepted and ignored (the seed's Protobuf: Tidings speaks JSON)
 */

/**
 * Seed 004's `RongIMClient`: the statics the seed calls on the class (`init`, `getInstance`,
 * `connect`, `reconnect`, the listeners, `registerMessageType`) and its 107 instance functions.
 */
export class RongIMClient {
  /** @type {RongIMClient | null} */
  static #instance = null;
  static MessageType = MessageType;
  /** Seed 004's `MessageParams`: every class by message name, with its object name and tags. */
  static MessageParams = MessageClasses;
  /** The classes `registerMessageType` made, by message type. @type {Record<string, typeof MessageContent>} */
  static RegisterMessage = {};

  /**
   * Sets the SDK up: `init(appKey, options?)`, or the seed's `init(appKey, dataAccessProvider,
   * options)` (the provider is ignored). Answers the instance `getInstance` returns.
   * @param {string} appKey
   * @param {RongInitOptions | null} [providerOrOptions]
   * @param {RongInitOptions} [options]
   */
  static init(appKey, providerOrOptions, options) {
    const client = new RongIMClient();
    client.init(appKey, providerOrOptions, options);
    RongIMClient.#instance = client;
    return client;
  }

  /** The instance `RongIMClient.init` made (33001 before it). */
  static getInstance() {
    if (!RongIMClient.#instance) {
      throw new TidingsError(ErrorCode.BIZ_ERROR_CLIENT_NOT_INIT, 'call RongIMClient.init first');
    }
    return RongIMClient.#instance;
  }

  /**
   * @param {string} token
   * @param {{ onSuccess?: (userId: string) => void, onTokenIncorrect?: () => void, onError?: (code: number, detail?: any) => void }} [callbacks]
   */
  static connect(token, callbacks) {
    return RongIMClient.getInstance().connect(token, callbacks);
  }

  /**
   * @param {any} [callback]
   * @param {{ auto?: boolean, url?: string, rate?: number[] }} [config]
   */
  static reconnect(callback, config) {
    return RongIMClient.getInstance().reconnect(callback, config);
  }

  /** @param {{ onChanged: (status: number) => void }} listener */
  static setConnectionStatusListener(listener) {
    RongIMClient.getInstance().setConnectionStatusListener(listener);
  }

  /** @param {{ onReceived: (message: any) => void }} listener */
  static setOnReceiveMessageListener(listener) {
    RongIMClient.getInstance().setOnReceiveMessageListener(listener);
  }

  /**
   * @param {string} messageType
   * @param {string} objectName
   * @param {{ isCounted?: boolean, isPersited?: boolean }} [messageTag]
   * @param {string[]} [propNames]
   */
  static registerMessageType(messageType, objectName, messageTag, propNames) {
    const cls = registerSeedType(messageType, objectName, messageTag, propNames);
    RongIMClient.RegisterMessage[messageType] = cls;
    return cls;
  }

  /** @type {TidingsClient} */
  #core = /** @type {any} */ (null);
  #appKey = '';
  /** @type {RongInitOptions & Record<string, any>} */
  #options = {};
  /** @type {import('./storage.js').StorageProvider} */
  #storage = /** @type {any} */ (null);
  #token = '';
  /** The token `login` got, when the session is an account's (logout revokes it). */
  #accountToken = '';
  /** @type {{ onChanged: (status: number) => void } | null} */
  #statusListener = null;
  /** @type {{ onReceived: (message: any) => void } | null} */
  #messageListener = null;
  /** Messages are presented one after another, each after its store write. */
  #queue = Promise.resolve();
  /** Group ids known to be discussions or groups. @type {Map<string, 'discussion' | 'group'>} */
  #kinds = new Map();
  /** @type {Map<string, MessageStore>} by user id */
  #stores = new Map();
  #storeUser = '';
  /** Object names of chatroom messages to drop (`setFilterMessages`). @type {Set<string>} */
  #filters = new Set();
  /** `setUnreadCount`'s counts, by conversation key. @type {Map<string, number>} */
  #unreadOverrides = new Map();
  /** Conversations added on this device (`addConversation`), by key. @type {Map<string, any>} */
  #added = new Map();
  /** Local fields of conversations (`conversationTitle`, …), by key. @type {Map<string, Record<string, any>>} */
  #overlays = new Map();
  /** `setUserStatus`'s text: this device's own. */
  #userStatus = '';
  /** `setChatroomHisMessageTimestamp`'s, by room. @type {Map<string, number>} */
  #roomHistoryFrom = new Map();
  /** @type {Record<string, unknown> | null} */
  #deviceInfo = null;
  /** @type {(() => void) | null} */
  #stopPresence = null;

  /**
   * Sets this instance up (the seed's `init`; see the static one).
   * @param {string} appKey
   * @param {RongInitOptions | null} [providerOrOptions]
   * @param {RongInitOptions} [options]
   * @returns {this}
   */
  init(appKey, providerOrOptions, options) {
    const opts = options ?? (providerOrOptions && typeof providerOrOptions === 'object' ? providerOrOptions : {});
    const { messageStore: _store, indexedDB: _idb, protobuf: _pb, ...native } = /** @type {any} */ (opts);
    this.#appKey = appKey;
    this.#storage = native.storage ?? defaultStorage();
    this.#options = opts;
    this.#core = new TidingsClient().init(appKey, { ...native, storage: this.#storage });
    this.#core.setOnReceiveMessageListener({ onReceived: (m) => this.#incoming(m) });
    this.#core.setConnectionStatusListener({
      onChanged: (status) => {
        try {
          this.#statusListener?.onChanged(status);
        } catch (e) {
          queueMicrotask(() => {
            throw e;
          });
        }
      },
    });
    this.#core.on('typing', (t) =>
      this.#enqueue(async () => {
        this.#deliver(
          this.#localShape({
            conversationType: this.#seedType(t.conversationType, t.targetId),
            targetId: t.targetId,
            senderUserId: t.userId,
            content: new TypingStatusMessage({ typingContentType: seedObjectName(t.typingContentType) }),
            messageDirection: MessageDirection.RECEIVE,
            sentTime: t.sentTime,
          }),
        );
      }),
    );
    this.#core.on('readReceipt', (r) => this.#enqueue(() => this.#readReceipt(r)));
    return this;
  }

  /**
   * The seed's `initApp`: `init`, then the callback.
   * @param {string} appKey
   * @param {RongInitOptions | null} [options]
   * @param {() => void} [callback]
   */
  initApp(appKey, options, callback) {
    this.init(appKey, options);
    callback?.();
    return this;
  }

  /** The TidingsClient underneath, for what only it has (edits, reactions, files, …). */
  get client() {
    return this.#requireInit();
  }

  #requireInit() {
    if (!this.#core) throw new TidingsError(ErrorCode.BIZ_ERROR_CLIENT_NOT_INIT, 'call init first');
    return this.#core;
  }

  // ---------------------------------------------------------------- connection

  /** @param {{ onChanged: (status: number) => void }} listener */
  setConnectionStatusListener(listener) {
    this.#statusListener = listener;
  }

  /** @param {{ onReceived: (message: any) => void }} listener */
  setOnReceiveMessageListener(listener) {
    this.#messageListener = listener;
  }

  /**
   * Connects: `onSuccess(userId)`, `onTokenIncorrect()` (a token missing, forged, of another
   * app, expired or revoked), `onError(code)` (a `ConnectionState` for a refusal,
   * `ErrorCode.TIMEOUT`, or the code). Also answers a Promise of the user id.
   * @param {string} token
   * @param {{ onSuccess?: (userId: string) => void, onTokenIncorrect?: () => void, onError?: (code: number, detail?: any) => void }} [callbacks]
   * @returns {Promise<string>}
   */
  connect(token, callbacks) {
    const core = this.#requireInit();
    this.#token = token;
    const p = core.connect(token).then(async (userId) => {
      await this.#openStore(userId);
      return userId;
    });
    const mapped = p.catch((e) => {
      const err = e instanceof TidingsError ? e : new TidingsError(ErrorCode.UNKNOWN, String(e));
      throw new TidingsError(connectErrorCode(err), err.message, err.serverCode);
    });
    mapped.then(
      (id) => callbacks?.onSuccess?.(id),
      (e) => {
        if (TOKEN_CODES.has(e.serverCode) && callbacks?.onTokenIncorrect) callbacks.onTokenIncorrect();
        else callbacks?.onError?.(e.code, e);
      },
    );
    mapped.catch(() => {});
    return mapped;
  }

  /**
   * Reconnects with the last token: at once, or with `config.auto` one attempt per delay of
   * `config.rate` (the seed's `url`, a page to sniff the network with, is not needed).
   * @param {any} [callback] `{onSuccess, onTokenIncorrect, onError}`
   * @param {{ auto?: boolean, url?: string, rate?: number[] }} [config]
   * @returns {Promise<string>}
   */
  reconnect(callback, config) {
    const core = this.#requireInit();
    const p = core.reconnect(config ? { auto: config.auto, rate: config.rate } : undefined);
    return settle(p, callback);
  }

  /**
   * Disconnects (the connection, not the session: `connect` again resumes).
   * @returns {Promise<void>}
   */
  disconnect() {
    return this.#requireInit().disconnect();
  }

  /**
   * Seed 004's `logout`: disconnects and forgets the session (the token, the user). A session
   * that began with this entry's `login` is also ended on the server (`POST /v1/accounts/logout`,
   * which revokes the account's tokens on every device).
   * @param {Callback} [callback]
   * @returns {Promise<boolean>}
   */
  logout(callback) {
    const run = async () => {
      await this.disconnect();
      if (this.#accountToken) {
        await this.#http('POST', '/v1/accounts/logout', undefined, this.#accountToken);
        this.#accountToken = '';
      }
      this.#token = '';
      return true;
    };
    return settle(run(), callback);
  }

  getCurrentConnectionStatus() {
    return this.#requireInit().getCurrentConnectionStatus();
  }

  /** The transport: `TransportType.WEBSOCKET` (1) or `XHR_POLLING` (0), as the seed's table has them. */
  getConnectionChannel() {
    return this.#requireInit().getTransportType();
  }

  /** The storage provider the SDK keeps its items in (`localStorage`, or memory). */
  getStorageProvider() {
    this.#requireInit();
    return this.#storage;
  }

  getCurrentUserId() {
    return this.#requireInit().getCurrentUserId();
  }

  getDeltaTime() {
    return this.#requireInit().getDeltaTime();
  }

  /**
   * What the client knows of pulling: it pulls after every connect, whenever a gap shows, and
   * every `syncIntervalMs`; how long the server keeps offline messages is the server's setting
   * (`offlineMessageDuration` null: not told to clients).
   * @param {Callback} [callback]
   */
  getPullSetting(callback) {
    const o = /** @type {any} */ (this.#options);
    return settle(
      Promise.resolve({
        pullOnConnect: true,
        syncIntervalMs: o.syncIntervalMs ?? 180_000,
        syncPageSize: o.syncPageSize ?? 100,
        offlineMessageDuration: null,
      }),
      callback,
    );
  }

  /**
   * Fails with `ErrorCode.SERVER_SETTING` (-5): how long offline messages are kept is the
   * server's setting, not a client's.
   * @param {number} _duration
   * @param {Callback} [callback]
   */
  setOfflineMessageDuration(_duration, callback) {
    return fail(callback, ErrorCode.SERVER_SETTING, 'the offline message retention is a server setting');
  }

  /** @param {Callback} [callback] */
  getAppInfo(callback) {
    const core = this.#requireInit();
    return settle(
      Promise.resolve({ appKey: this.#appKey, server: this.#httpBase(), deviceId: core.deviceId, transport: core.transport }),
      callback,
    );
  }

  /** @param {Callback} [callback] */
  getSDKInfo(callback) {
    return settle(Promise.resolve({ name: '@tidings/sdk/rong', version: VERSION, compatibleWith: 'RongIMLib 2.x' }), callback);
  }

  /**
   * Records this device's information. The device id itself is given to `init` (`deviceId`):
   * a different `id` here fails with 33003.
   * @param {{ id?: string, [k: string]: unknown }} device
   * @param {Callback} [callback]
   */
  setDeviceInfo(device, callback) {
    const core = this.#requireInit();
    if (device?.id && device.id !== core.deviceId) {
      return fail(callback, ErrorCode.BIZ_ERROR_INVALID_PARAMETER, 'the device id is set at init (deviceId)');
    }
    this.#deviceInfo = { ...device, id: core.deviceId };
    return settle(Promise.resolve(this.#deviceInfo), callback);
  }

  /**
   * Chatroom messages whose object names are listed are dropped before the message listener.
   * @param {string[]} objectNames the seed's (`RC:TxtMsg`, …) or registered names
   */
  setFilterMessages(objectNames) {
    this.#filters = new Set(asArray(objectNames).map(String));
  }

  // ---------------------------------------------------------------- not in Tidings

  /**
   * @param {Callback | undefined} callback
   * @param {string} what
   */
  #unsupported(callback, what) {
    return fail(callback, ErrorCode.NOT_SUPPORTED, `${what} has no counterpart in Tidings`);
  }

  /** Fails with `NOT_SUPPORTED` (-4): Tidings has no customer service. @param {...any} args */
  startCustomService(...args) {
    return this.#unsupported(args.find(isCallback), 'customer service');
  }

  /** @param {...any} args */
  stopCustomeService(...args) {
    return this.#unsupported(args.find(isCallback), 'customer service');
  }

  /** @param {...any} args */
  switchToHumanMode(...args) {
    return this.#unsupported(args.find(isCallback), 'customer service');
  }

  /** @param {...any} args */
  evaluateRebotCustomService(...args) {
    return this.#unsupported(args.find(isCallback), 'customer service');
  }

  /** @param {...any} args */
  evaluateHumanCustomService(...args) {
    return this.#unsupported(args.find(isCallback), 'customer service');
  }

  /** Fails with `NOT_SUPPORTED` (-4): Tidings has no Agora integration. @param {...any} args */
  getAgoraDynamicKey(...args) {
    return this.#unsupported(args.find(isCallback), 'Agora keys');
  }

  // ---------------------------------------------------------------- receiving

  /**
   * @param {() => Promise<void> | void} fn
   */
  #enqueue(fn) {
    this.#queue = this.#queue.then(fn).catch((e) => {
      queueMicrotask(() => {
        throw e;
      });
    });
    return this.#queue;
  }

  /** @param {NativeMessage} m */
  #incoming(m) {
    this.#enqueue(async () => {
      if (m.conversationType === ConversationType.CHATROOM && this.#filters.has(seedObjectName(m.objectName))) return;
      if (m.conversationType === ConversationType.GROUP) await this.#resolveKinds([m.targetId]);
      const msg = this.#fromNative(m);
      if (msg.content instanceof RecallCommandMessage) await this.#noteRecall(msg);
      await this.#remember(msg);
      if (msg.messageDirection === MessageDirection.RECEIVE) {
        this.#unreadOverrides.delete(conversationKey(msg.conversationType, msg.targetId));
      }
      this.#deliver(msg);
    });
  }

  /** @param {any} msg */
  #deliver(msg) {
    if (!this.#messageListener) return;
    try {
      this.#messageListener.onReceived(msg);
    } catch (e) {
      queueMicrotask(() => {
        throw e;
      });
    }
  }

  /**
   * A read receipt of Tidings (the other user read a private conversation up to `readSeq`),
   * presented as the seed's `RC:ReadNtf` message.
   * @param {{ conversationType: number, targetId: string, readSeq: number }} r
   */
  async #readReceipt(r) {
    const known =
      (await this.#storeOrNull()
        ?.list({ conversationType: r.conversationType, targetId: r.targetId })
        .catch(() => null)) ?? [];
    const read = known.find((s) => s.seq === r.readSeq);
    this.#deliver(
      this.#localShape({
        conversationType: r.conversationType,
        targetId: r.targetId,
        senderUserId: r.targetId,
        content: new ReadReceiptMessage({
          readSeq: r.readSeq,
          messageUId: read?.messageUId,
          lastMessageSendTime: read?.sentTime,
          type: 1,
        }),
        messageDirection: MessageDirection.RECEIVE,
        sentTime: this.#core.getServerTime(),
      }),
    );
  }

  /**
   * Fills a recall command's `messageUId` and `sentTime` from the store, and marks the stored
   * message recalled.
   * @param {any} msg
   */
  async #noteRecall(msg) {
    const store = this.#storeOrNull();
    if (!store) return;
    const c = msg.content;
    c.conversationType = msg.conversationType;
    c.targetId = msg.targetId;
    try {
      const list = await store.list({ conversationType: msg.conversationType, targetId: msg.targetId });
      const target = list.find((s) => s.seq === c.seq);
      if (!target) return;
      c.messageUId = target.messageUId;
      c.sentTime = target.sentTime;
      await store.put({ ...target, objectName: RecallCommandMessage.objectName, content: c.encode() });
    } catch {
      // A store that fails leaves the command without the recalled message's UId; it is still delivered.
    }
  }

  /**
   * Learns whether these groups are discussions (`getGroup` answers a `kind`); a group whose
   * kind cannot be read is taken as a group, and asked again next time.
   * @param {string[]} groupIds
   */
  async #resolveKinds(groupIds) {
    const core = this.#requireInit();
    for (const id of new Set(groupIds)) {
      if (this.#kinds.has(id)) continue;
      try {
        const q = await core.query({ getGroup: { groupId: id } });
        this.#kinds.set(id, q.groups?.[0]?.kind === 'discussion' ? 'discussion' : 'group');
      } catch {
        // Not readable now (not a member any more, or the server is away): a group, this time.
      }
    }
  }

  /**
   * The seed's conversation type of a wire type and target.
   * @param {number} type
   * @param {string} targetId
   */
  #seedType(type, targetId) {
    return type === ConversationType.GROUP && this.#kinds.get(targetId) === 'discussion'
      ? ConversationType.DISCUSSION
      : type;
  }

  /**
   * The seed's Message of a Tidings one.
   * @param {NativeMessage} m
   * @returns {any}
   */
  #fromNative(m) {
    const content = fromNative(m.content, m.objectName);
    const incoming = m.messageDirection === MessageDirection.RECEIVE;
    return {
      conversationType: this.#seedType(m.conversationType, m.targetId),
      targetId: m.targetId,
      senderUserId: m.senderUserId,
      content,
      objectName: content.objectName,
      messageType: content.messageName,
      messageDirection: m.messageDirection,
      messageId: undefined,
      messageUId: m.messageUId,
      clientMsgId: m.clientMsgId,
      seq: m.seq,
      inboxSeq: m.inboxSeq,
      sentTime: m.sentTime,
      receivedTime: m.receivedTime,
      sentStatus: m.sentStatus,
      receivedStatus: incoming ? ReceivedStatus.UNREAD : ReceivedStatus.READ,
      offLineMessage: m.offLineMessage,
      isLocalMessage: false,
      extra: undefined,
      pushContent: m.pushContent,
      isRecalled: m.isRecalled,
      isEdited: m.isEdited,
      reactions: m.reactions,
      mentionedInfo: m.mentionedInfo ? new MentionedInfo(m.mentionedInfo) : null,
      directedUserIds: m.directedUserIds,
    };
  }

  /**
   * A seed Message made on this device (inserted, a receipt, a typing status).
   * @param {{ conversationType: number, targetId: string, senderUserId?: string, content: MessageContent, messageDirection?: number, sentTime?: number, sentStatus?: number, receivedStatus?: number, messageUId?: string, seq?: number }} f
   * @returns {any}
   */
  #localShape(f) {
    const direction = f.messageDirection ?? MessageDirection.SEND;
    return {
      conversationType: f.conversationType,
      targetId: f.targetId,
      senderUserId: f.senderUserId ?? this.#core.getCurrentUserId(),
      content: f.content,
      objectName: f.content.objectName,
      messageType: f.content.messageName,
      messageDirection: direction,
      messageId: undefined,
      messageUId: f.messageUId ?? '',
      clientMsgId: '',
      seq: f.seq ?? 0,
      inboxSeq: 0,
      sentTime: f.sentTime ?? this.#core.getServerTime(),
      receivedTime: Date.now(),
      sentStatus: f.sentStatus ?? (direction === MessageDirection.SEND ? SentStatus.SENT : SentStatus.RECEIVED),
      receivedStatus: f.receivedStatus ?? (direction === MessageDirection.RECEIVE ? ReceivedStatus.UNREAD : ReceivedStatus.READ),
      offLineMessage: false,
      isLocalMessage: true,
      extra: undefined,
      pushContent: '',
      isRecalled: false,
      isEdited: false,
      reactions: [],
      mentionedInfo: null,
      directedUserIds: [],
    };
  }

  // ---------------------------------------------------------------- the local store

  /** @param {string} userId */
  async #openStore(userId) {
    this.#storeUser = userId;
    if (this.#stores.has(userId)) return;
    const choice = this.#options.messageStore;
    /** @type {any} */
    const g = globalThis;
    const idb = this.#options.indexedDB ?? g.indexedDB;
    /** @type {MessageStore} */
    let store;
    if (typeof choice === 'function') store = choice(this.#appKey, userId);
    else if (choice && typeof choice === 'object') store = choice;
    else if (choice === 'memory' || (!choice && !idb)) store = new MemoryMessageStore();
    else store = new IndexedDBMessageStore(`tidings-rong:${this.#appKey}:${userId}`, { indexedDB: idb });
    this.#stores.set(userId, store);
  }

  #storeOrNull() {
    return this.#stores.get(this.#storeUser) ?? null;
  }

  /** The store of the current user (33001 before a first connect: the store is per user). */
  #store() {
    const s = this.#storeOrNull();
    if (!s) throw new TidingsError(ErrorCode.BIZ_ERROR_CLIENT_NOT_INIT, 'connect first: the local store is per user');
    return s;
  }

  /**
   * Runs a store operation, reporting a store failure as 33002.
   * @template T
   * @param {(store: MessageStore) => Promise<T>} fn
   * @returns {Promise<T>}
   */
  async #withStore(fn) {
    const store = this.#store();
    try {
      return await fn(store);
    } catch (e) {
      if (e instanceof TidingsError) throw e;
      throw new TidingsError(ErrorCode.BIZ_ERROR_DATABASE_ERROR, e instanceof Error ? e.message : String(e));
    }
  }

  /**
   * The store's record of a seed Message.
   * @param {any} msg
   * @returns {Omit<StoredMessage, 'messageId'> & { messageId?: number }}
   */
  #recordOf(msg) {
    return {
      conversationType: msg.conversationType,
      targetId: msg.targetId,
      senderUserId: msg.senderUserId,
      objectName: msg.objectName,
      content: msg.content.encode(),
      messageDirection: msg.messageDirection,
      messageUId: msg.messageUId ?? '',
      clientMsgId: msg.clientMsgId ?? '',
      seq: msg.seq ?? 0,
      sentTime: msg.sentTime ?? 0,
      receivedTime: msg.receivedTime ?? Date.now(),
      sentStatus: msg.sentStatus ?? SentStatus.SENT,
      receivedStatus: msg.receivedStatus ?? ReceivedStatus.UNREAD,
      extra: msg.extra,
      searchField: msg.searchField,
      isLocalMessage: Boolean(msg.isLocalMessage),
    };
  }

  /**
   * The seed Message of a stored record.
   * @param {StoredMessage} r
   */
  #fromRecord(r) {
    const content = contentFromFields(r.objectName, r.content);
    return {
      ...this.#localShape({
        conversationType: r.conversationType,
        targetId: r.targetId,
        senderUserId: r.senderUserId,
        content,
        messageDirection: r.messageDirection,
        sentTime: r.sentTime,
        sentStatus: r.sentStatus,
        receivedStatus: r.receivedStatus,
        messageUId: r.messageUId,
        seq: r.seq,
      }),
      objectName: r.objectName,
      messageId: r.messageId,
      clientMsgId: r.clientMsgId,
      receivedTime: r.receivedTime,
      extra: r.extra,
      searchField: r.searchField,
      isLocalMessage: r.isLocalMessage,
    };
  }

  /**
   * Keeps a message in the store (a stored message's server fields are refreshed, its local
   * ones kept) and gives it its `messageId`. Status messages and chatroom messages are not kept.
   * @param {any} msg
   */
  async #remember(msg) {
    const store = this.#storeOrNull();
    const cls = /** @type {any} */ (msg.content.constructor);
    if (!store || cls.isPersited === false || msg.conversationType === ConversationType.CHATROOM) return msg;
    try {
      const existing = msg.messageUId ? await store.getByUId(msg.messageUId) : null;
      if (existing) {
        const rec = this.#recordOf(msg);
        await store.put({
          ...existing,
          ...rec,
          messageId: existing.messageId,
          extra: existing.extra,
          searchField: existing.searchField,
          receivedStatus: existing.receivedStatus,
          isLocalMessage: false,
        });
        msg.messageId = existing.messageId;
        msg.extra = existing.extra;
        msg.receivedStatus = existing.receivedStatus;
      } else {
        msg.messageId = await store.add(this.#recordOf(msg));
      }
    } catch {
      // A store that fails does not stop delivery: the message goes out without a messageId.
    }
    return msg;
  }

  /**
   * Changes a stored message.
   * @param {number} messageId
   * @param {(r: StoredMessage) => StoredMessage} change
   * @param {Callback} [callback]
   */
  #changeStored(messageId, change, callback) {
    const run = this.#withStore(async (store) => {
      const r = await store.get(Number(messageId));
      if (!r) throw new TidingsError(ErrorCode.GET_MESSAGE_BY_ID_ERROR, `no local message ${messageId}`);
      const next = change(r);
      await store.put(next);
      return true;
    });
    return settle(run, callback);
  }

  /**
   * A message of the local store, by its `messageId` (61001 if there is none).
   * @param {number} messageId
   * @param {Callback} [callback]
   */
  getMessage(messageId, callback) {
    const run = this.#withStore(async (store) => {
      const r = await store.get(Number(messageId));
      if (!r) throw new TidingsError(ErrorCode.GET_MESSAGE_BY_ID_ERROR, `no local message ${messageId}`);
      return this.#fromRecord(r);
    });
    return settle(run, callback);
  }

  /**
   * Puts a message into the local store only (nothing is sent): a Message-like object
   * (`{senderUserId, content, messageDirection, sentStatus, receivedStatus, sentTime}`) or a
   * content. Answers the Message with its `messageId`.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {any} content
   * @param {Callback} [callback]
   */
  insertMessage(conversationType, targetId, content, callback) {
    const run = this.#withStore(async (store) => {
      const f = content instanceof MessageContent ? { content } : content ?? {};
      if (!(f.content instanceof MessageContent)) {
        throw new TidingsError(ErrorCode.MSG_INSERT_ERROR, 'insertMessage needs a message content');
      }
      const msg = this.#localShape({ ...f, conversationType, targetId });
      msg.messageId = await store.add(this.#recordOf(msg));
      return msg;
    });
    return settle(run, callback, { code: ErrorCode.MSG_INSERT_ERROR });
  }

  /**
   * Sends a message of the local store (an inserted one, or one that failed) and updates its
   * record with what the server answered.
   * @param {any} message a Message with a `messageId`
   * @param {Callback} [callback]
   */
  sendLocalMessage(message, callback) {
    const run = async () => {
      const store = this.#store();
      const r = await store.get(Number(message?.messageId));
      if (!r) throw new TidingsError(ErrorCode.GET_MESSAGE_BY_ID_ERROR, `no local message ${message?.messageId}`);
      const local = this.#fromRecord(r);
      try {
        const sent = await this.#send(local.conversationType, local.targetId, local.content, {});
        const next = { ...r, ...this.#recordOf(sent), messageId: r.messageId, isLocalMessage: false, extra: r.extra, searchField: r.searchField };
        await store.put(next);
        return { ...sent, messageId: r.messageId, extra: r.extra };
      } catch (e) {
        await store.put({ ...r, sentStatus: SentStatus.FAILED });
        throw e;
      }
    };
    return settle(run(), callback);
  }

  /**
   * Replaces a stored message's fields with the Message's (its `messageId` names it).
   * @param {any} message
   * @param {Callback} [callback]
   */
  updateMessage(message, callback) {
    return this.#changeStored(
      message?.messageId,
      (r) => ({ ...r, ...this.#recordOf({ ...this.#fromRecord(r), ...message }), messageId: r.messageId }),
      callback,
    );
  }

  /**
   * Deletes messages from the local store only.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {number[]} messageIds
   * @param {Callback} [callback]
   */
  deleteLocalMessages(conversationType, targetId, messageIds, callback) {
    const run = this.#withStore(async (store) => {
      const ids = [];
      for (const id of asArray(messageIds)) {
        const r = await store.get(Number(id));
        if (r && r.conversationType === conversationType && r.targetId === targetId) ids.push(r.messageId);
      }
      await store.remove(ids);
      return true;
    });
    return settle(run, callback, { code: ErrorCode.MSG_DEL_ERROR });
  }

  /**
   * Deletes messages for this user: from the local store and, for those the server has, from
   * the user's history (`deleteMessages` of Tidings). `messages`: local ids, message UIds, or
   * Messages. An empty list fails with 61001 (DELETE_MESSAGE_ID_IS_NULL).
   * @param {number} conversationType
   * @param {string} targetId
   * @param {any[]} messages
   * @param {Callback} [callback]
   */
  deleteMessages(conversationType, targetId, messages, callback) {
    const list = asArray(messages);
    if (list.length === 0) return fail(callback, ErrorCode.DELETE_MESSAGE_ID_IS_NULL, 'no messages to delete');
    const run = async () => {
      const store = this.#store();
      const records = await this.#resolveRecords(store, list);
      const seqs = records.map((r) => r.seq).filter((s) => s > 0);
      for (const m of list) if (m && typeof m === 'object' && m.seq > 0 && !seqs.includes(m.seq)) seqs.push(m.seq);
      if (seqs.length > 0) await this.#requireInit().deleteRemoteMessages(wireType(conversationType), targetId, seqs);
      await store.remove(records.map((r) => r.messageId));
      return true;
    };
    return settle(run(), callback, { code: ErrorCode.MSG_DEL_ERROR });
  }

  /**
   * The stored records of local ids, message UIds or Messages.
   * @param {MessageStore} store
   * @param {any[]} refs
   */
  async #resolveRecords(store, refs) {
    /** @type {StoredMessage[]} */
    const out = [];
    for (const ref of refs) {
      const r =
        typeof ref === 'number'
          ? await store.get(ref)
          : typeof ref === 'string'
            ? await store.getByUId(ref)
            : ref?.messageId !== undefined
              ? await store.get(Number(ref.messageId))
              : ref?.messageUId
                ? await store.getByUId(ref.messageUId)
                : null;
      if (r) out.push(r);
    }
    return out;
  }

  /**
   * @param {number} messageId
   * @param {MessageContent} content
   * @param {string} [objectName]
   * @param {Callback} [callback]
   */
  setMessageContent(messageId, content, objectName, callback) {
    const cb = isCallback(objectName) ? objectName : callback;
    const name = typeof objectName === 'string' ? objectName : content?.objectName;
    const fields = content instanceof MessageContent ? content.encode() : content;
    return this.#changeStored(messageId, (r) => ({ ...r, objectName: name ?? r.objectName, content: /** @type {any} */ (fields) }), cb);
  }

  /**
   * Sets the text searches find for a stored message (besides its content's).
   * @param {number} messageId
   * @param {unknown} _content
   * @param {string | string[]} searchFiles
   * @param {Callback} [callback]
   */
  setMessageSearchField(messageId, _content, searchFiles, callback) {
    const text = asArray(searchFiles).map(String).join('\n');
    return this.#changeStored(messageId, (r) => ({ ...r, searchField: text }), callback);
  }

  /**
   * @param {number} messageId
   * @param {string} value
   * @param {Callback} [callback]
   */
  setMessageExtra(messageId, value, callback) {
    return this.#changeStored(messageId, (r) => ({ ...r, extra: value }), callback);
  }

  /**
   * @param {number} messageId
   * @param {number} receivedStatus see `ReceivedStatus`
   * @param {Callback} [callback]
   */
  setMessageReceivedStatus(messageId, receivedStatus, callback) {
    return this.#changeStored(messageId, (r) => ({ ...r, receivedStatus }), callback);
  }

  /**
   * The seed's 消息状态 (READ, LISTENED, DOWNLOADED, UNREAD) is the received status: as
   * `setMessageReceivedStatus`.
   * @param {number} messageId
   * @param {number} status
   * @param {Callback} [callback]
   */
  setMessageStatus(messageId, status, callback) {
    return this.setMessageReceivedStatus(messageId, status, callback);
  }

  /**
   * @param {number} messageId
   * @param {number} sentStatus see `SentStatus`
   * @param {Callback} [callback]
   */
  setMessageSentStatus(messageId, sentStatus, callback) {
    return this.#changeStored(messageId, (r) => ({ ...r, sentStatus }), callback);
  }

  /**
   * Clears this device's data of the current user: the local store, `setUnreadCount`'s counts,
   * added conversations and their local fields. Server data stays.
   * @param {Callback} [callback]
   */
  clearData(callback) {
    const run = this.#withStore(async (store) => {
      await store.clear();
      this.clearCache();
      return true;
    });
    return settle(run, callback);
  }

  /**
   * Clears one conversation's messages from the local store.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {Callback} [callback]
   */
  clearMessages(conversationType, targetId, callback) {
    return settle(this.#withStore((store) => store.clear({ conversationType, targetId }).then(() => true)), callback, {
      code: ErrorCode.MSG_DEL_ERROR,
    });
  }

  /**
   * Marks a conversation's stored messages read on this device and drops its `setUnreadCount`
   * count; the server's read position is `clearUnreadCount`'s.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {Callback} [callback]
   */
  clearMessagesUnreadStatus(conversationType, targetId, callback) {
    const run = this.#withStore(async (store) => {
      this.#unreadOverrides.delete(conversationKey(conversationType, targetId));
      for (const r of await store.list({ conversationType, targetId })) {
        if (r.receivedStatus === ReceivedStatus.UNREAD) await store.put({ ...r, receivedStatus: ReceivedStatus.READ });
      }
      return true;
    });
    return settle(run, callback);
  }

  /** Forgets what this entry keeps in memory (unread counts set, added conversations, kinds). */
  clearCache() {
    this.#unreadOverrides.clear();
    this.#added.clear();
    this.#overlays.clear();
    this.#kinds.clear();
    return true;
  }

  /**
   * Clears what the SDK keeps in the storage provider for this app key (drafts, the sync cursor,
   * the conversation cache, the device id) and the local message store.
   * @param {Callback} [callback]
   */
  clearLocalStorage(callback) {
    const run = async () => {
      const storage = /** @type {any} */ (this.getStorageProvider());
      const prefix = `tidings:${this.#appKey}:`;
      /** @type {string[]} */
      const keys = [];
      const inner = storage?.storage ?? storage;
      if (storage?.items instanceof Map) keys.push(...storage.items.keys());
      else if (inner && typeof inner.length === 'number' && typeof inner.key === 'function') {
        for (let i = 0; i < inner.length; i++) keys.push(inner.key(i));
      }
      for (const k of keys) if (k && k.startsWith(prefix)) storage.removeItem(k);
      await this.#storeOrNull()?.clear();
      this.clearCache();
      return true;
    };
    return settle(run(), callback);
  }

  /**
   * Finds messages of a conversation whose text contains `keyword`: the server's search (what
   * the user can see) and the local store's (inserted messages, search fields), one list by
   * UId, newest first. `timestamp` > 0: sent before it. `onSuccess(messages, matchedCount)`; the
   * Promise answers `{list, matched}`.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {string} keyword
   * @param {number} timestamp
   * @param {number} count
   * @param {number} _total
   * @param {Callback} [callback]
   */
  searchMessageByContent(conversationType, targetId, keyword, timestamp, count, _total, callback) {
    const run = async () => {
      const all = await this.#search(keyword, { conversationType, targetId });
      const before = all.filter((m) => !timestamp || m.sentTime < timestamp);
      return { list: before.slice(0, count || 20), matched: before.length };
    };
    return settle(run(), callback, { spread: (v) => [v.list, v.matched] });
  }

  /**
   * @param {string} keyword
   * @param {{ conversationType?: number, targetId?: string }} where
   * @returns {Promise<any[]>}
   */
  async #search(keyword, where) {
    const core = this.#requireInit();
    /** @type {any[]} */
    let remote = [];
    try {
      const opts = where.targetId ? { conversationType: wireType(where.conversationType ?? 1), targetId: where.targetId, count: 100 } : { count: 100 };
      const page = await core.searchMessages(keyword, opts);
      const groups = page.messages.filter((m) => m.conversationType === ConversationType.GROUP).map((m) => m.targetId);
      await this.#resolveKinds(groups);
      remote = page.messages.map((m) => this.#fromNative(m));
    } catch (e) {
      // A server with search off (40015) leaves the local store's matches.
      if (!(e instanceof TidingsError) || e.serverCode !== 40015) throw e;
    }
    const store = this.#storeOrNull();
    const lower = keyword.toLowerCase();
    const filter = where.targetId ? { conversationType: where.conversationType, targetId: where.targetId } : undefined;
    const local = store
      ? (await store.list(filter))
          .filter((r) => {
            const text = `${searchableText(contentFromFields(r.objectName, r.content))}\n${r.searchField ?? ''}`;
            return text.toLowerCase().includes(lower);
          })
          .map((r) => this.#fromRecord(r))
      : [];
    const byUid = new Map();
    /** @type {any[]} */
    const out = [];
    for (const m of local) {
      if (m.messageUId) byUid.set(m.messageUId, m);
      out.push(m);
    }
    for (const m of remote) {
      if (m.messageUId && byUid.has(m.messageUId)) continue;
      await this.#remember(m);
      out.push(m);
    }
    return out.sort((a, b) => b.sentTime - a.sentTime);
  }

  /**
   * The conversations holding a message whose text contains `keyword` (server and local store).
   * @param {string} keyword
   * @param {Callback} [callback]
   * @param {number[]} [conversationTypes]
   */
  searchConversationByContent(keyword, callback, conversationTypes) {
    const run = async () => {
      const found = await this.#search(keyword, {});
      const types = asArray(conversationTypes);
      /** @type {Map<string, any>} */
      const convs = new Map();
      for (const m of found) {
        if (types.length && !types.includes(m.conversationType)) continue;
        const key = conversationKey(m.conversationType, m.targetId);
        if (convs.has(key)) continue;
        const c = await this.#requireInit().getConversation(wireType(m.conversationType), m.targetId);
        convs.set(key, c ? this.pottingConversation(c) : this.createConversation(m.conversationType, m.targetId, ''));
      }
      return [...convs.values()];
    };
    return settle(run(), callback);
  }

  // ---------------------------------------------------------------- sending

  /**
   * Sends through Tidings and answers the seed's Message.
   * @param {number} conversationType the seed's
   * @param {string} targetId
   * @param {MessageContent} content
   * @param {import('./client.js').SendOptions} options
   */
  async #send(conversationType, targetId, content, options) {
    const core = this.#requireInit();
    if (!(content instanceof MessageContent)) {
      throw new TidingsError(ErrorCode.BIZ_ERROR_INVALID_PARAMETER, 'msg must be a message class of RongIMLib');
    }
    if (conversationType === ConversationType.DISCUSSION) this.#kinds.set(targetId, 'discussion');
    try {
      const sent = await core.sendMessage(wireType(conversationType), targetId, content.toNative(), options);
      const msg = this.#fromNative(sent);
      msg.content = content;
      msg.objectName = content.objectName;
      msg.messageType = content.messageName;
      return msg;
    } catch (e) {
      if (e instanceof TidingsError && e.code === ErrorCode.NOT_IN_GROUP && conversationType === ConversationType.DISCUSSION) {
        throw new TidingsError(ErrorCode.NOT_IN_DISCUSSION, e.message, e.serverCode);
      }
      throw e;
    }
  }

  /**
   * Seed 004's `sendMessage(conversationType, targetId, msg, callback, isMentioned, pushContent,
   * pushData, methodType, config)`: `onSuccess(message)` with the stored message (its
   * `messageUId`, `sentTime`, local `messageId`), `onError(code, message)`. `config.userIds`: a
   * directed group message; `config.isStatus`: a status message. A `ReadReceiptMessage` moves
   * this user's read position instead of being sent (Tidings sends the receipt).
   * @param {number} conversationType
   * @param {string} targetId
   * @param {MessageContent} msg
   * @param {any} [callback]
   * @param {boolean} [isMentioned]
   * @param {string} [pushContent]
   * @param {string} [pushData]
   * @param {unknown} [_methodType]
   * @param {{ userIds?: string[], isStatus?: boolean }} [config]
   * @returns {Promise<any>}
   */
  sendMessage(conversationType, targetId, msg, callback, isMentioned, pushContent, pushData, _methodType, config) {
    if (msg instanceof ReadReceiptMessage) return settle(this.#sendReadReceipt(conversationType, targetId, msg), callback);
    const cls = /** @type {any} */ (msg?.constructor);
    const keep = cls?.isPersited !== false && conversationType !== ConversationType.CHATROOM && !config?.isStatus;
    const run = async () => {
      const store = keep ? this.#storeOrNull() : null;
      /** @type {any} */
      let local = null;
      if (store && msg instanceof MessageContent) {
        local = this.#localShape({ conversationType, targetId, content: msg, sentStatus: SentStatus.SENDING });
        local.messageId = await store.add({ ...this.#recordOf(local), isLocalMessage: false });
        callback?.onBefore?.(local);
      }
      /** @type {import('./client.js').SendOptions} */
      const options = {};
      const mention = /** @type {any} */ (msg)?.mentionedInfo;
      if (isMentioned && mention) options.mentionedInfo = { type: mention.type, userIdList: mention.userIdList ?? [] };
      if (pushContent) options.pushContent = pushContent;
      if (pushData) options.pushData = pushData;
      if (config?.userIds?.length) options.userIds = config.userIds;
      if (config?.isStatus) options.isStatus = true;
      try {
        const sent = await this.#send(conversationType, targetId, msg, options);
        if (local && store) {
          const r = await store.get(local.messageId);
          if (r) await store.put({ ...r, ...this.#recordOf(sent), messageId: r.messageId, extra: r.extra });
          sent.messageId = local.messageId;
        }
        return sent;
      } catch (e) {
        if (local && store) {
          const r = await store.get(local.messageId);
          if (r) await store.put({ ...r, sentStatus: SentStatus.FAILED });
        }
        if (e instanceof TidingsError) /** @type {any} */ (e).failedMessage = local && { ...local, sentStatus: SentStatus.FAILED };
        throw e;
      }
    };
    const p = run();
    if (callback) {
      p.then(
        (m) => callback.onSuccess?.(m),
        (e) => callback.onError?.(e instanceof TidingsError ? e.code : ErrorCode.UNKNOWN, e?.failedMessage ?? e),
      );
    }
    p.catch(() => {});
    return p;
  }

  /**
   * Moves this user's read position to what a ReadReceiptMessage names (the time of the last
   * message read, or its UId through the store); the other user gets Tidings' read receipt.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {ReadReceiptMessage} msg
   */
  async #sendReadReceipt(conversationType, targetId, msg) {
    const core = this.#requireInit();
    const c = /** @type {any} */ (msg);
    let readTime = Number(c.lastMessageSendTime) || 0;
    if (!readTime && c.messageUId) readTime = (await this.#storeOrNull()?.getByUId(c.messageUId))?.sentTime ?? 0;
    if (!readTime) throw new TidingsError(ErrorCode.BIZ_ERROR_INVALID_PARAMETER, 'a read receipt names lastMessageSendTime');
    await core.updateConversation(wireType(conversationType), targetId, { readTime });
    return this.#localShape({ conversationType, targetId, content: msg });
  }

  /**
   * @param {number} conversationType
   * @param {string} targetId
   * @param {string} content
   * @param {any} [callback]
   */
  sendTextMessage(conversationType, targetId, content, callback) {
    return this.sendMessage(conversationType, targetId, TextMessage.obtain(content), callback);
  }

  /**
   * @param {number} conversationType
   * @param {string} targetId
   * @param {string | Callback} [typingContentType] an object name (`RC:TxtMsg`)
   * @param {Callback} [callback]
   */
  sendTypingStatusMessage(conversationType, targetId, typingContentType, callback) {
    const core = this.#requireInit();
    const name = typeof typingContentType === 'string' && typingContentType ? typingContentType : TextMessage.objectName;
    const cb = isCallback(typingContentType) ? typingContentType : callback;
    // The server refuses status messages to groups, and answers none.
    if (conversationType !== ConversationType.PRIVATE) {
      return fail(cb, ErrorCode.CONVERSATION_TYPE_UNSUPPORTED, 'typing status is for private conversations');
    }
    if (!core.sendTypingStatusMessage(wireType(conversationType), targetId, nativeObjectName(name))) {
      return fail(cb, ErrorCode.RC_NET_CHANNEL_INVALID, 'not connected');
    }
    return settle(Promise.resolve(true), cb);
  }

  /**
   * Seed 004's group read-receipt response: in Tidings, reading the conversation (moving the
   * read position to its newest message) is what `getGroupMessageReadReceipt` counts.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {Callback} [callback]
   */
  sendReceiptResponse(conversationType, targetId, callback) {
    return this.clearUnreadCount(conversationType, targetId, callback);
  }

  /**
   * Recalls one of this user's messages (a Message with its `seq`, or a stored one by
   * `messageUId`); answers the `RC:RcCmd` message. Refusals are 25101 (RECALL_MESSAGE), with
   * Tidings' code (40017–40020) in `serverCode`.
   * @param {any} message
   * @param {Callback} [callback]
   */
  sendRecallMessage(message, callback) {
    const run = async () => {
      const core = this.#requireInit();
      let seq = Number(message?.seq) || 0;
      if (!seq && message?.messageUId) seq = (await this.#storeOrNull()?.getByUId(message.messageUId))?.seq ?? 0;
      if (!seq) throw new TidingsError(ErrorCode.RECALL_MESSAGE, 'the message to recall has no seq the server knows');
      const type = Number(message.conversationType);
      const recalled = await core.recallMessage({ conversationType: wireType(type), targetId: message.targetId, seq });
      const content = new RecallCommandMessage({
        messageUId: recalled.messageUId,
        conversationType: type,
        targetId: message.targetId,
        sentTime: recalled.sentTime,
        seq,
      });
      const stored = recalled.messageUId ? await this.#storeOrNull()?.getByUId(recalled.messageUId) : null;
      if (stored) await this.#storeOrNull()?.put({ ...stored, objectName: RecallCommandMessage.objectName, content: content.encode() });
      return this.#localShape({ conversationType: type, targetId: message.targetId, content, messageUId: recalled.messageUId, seq });
    };
    return settle(run(), callback, { code: ErrorCode.RECALL_MESSAGE });
  }

  // ---------------------------------------------------------------- history

  /**
   * A page of history before `timestamp` (0: the newest), oldest first: `onSuccess(list,
   * hasMore)`, and the Promise answers `{list, hasMore}`. `order` 1 reads after `timestamp`
   * instead. The messages are kept in the store.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {number} timestamp
   * @param {number} count
   * @param {Callback} [callback]
   * @param {string} [_objectName]
   * @param {number} [order]
   */
  getHistoryMessages(conversationType, targetId, timestamp, count, callback, _objectName, order) {
    const run = async () => {
      const core = this.#requireInit();
      const start = order === 1 ? { afterTime: timestamp || undefined, count } : { beforeTime: timestamp || undefined, count };
      if (conversationType === ConversationType.DISCUSSION) this.#kinds.set(targetId, 'discussion');
      const page = await core.getHistoryMessages(wireType(conversationType), targetId, start);
      const list = [];
      for (const m of page.messages) list.push(await this.#remember(this.#fromNative(m)));
      return { list, hasMore: page.hasMore };
    };
    return settle(run(), callback, { spread: (v) => [v.list, v.hasMore] });
  }

  /**
   * The seed's `getRemoteHistoryMessages(params, callback)` (`{conversationType, targetId,
   * timestamp, count, order}`), or the older `(conversationType, targetId, timestamp, count,
   * callback)`.
   * @param {any} params
   * @param {...any} rest
   */
  getRemoteHistoryMessages(params, ...rest) {
    if (params && typeof params === 'object') {
      return this.getHistoryMessages(params.conversationType, params.targetId, params.timestamp, params.count ?? 20, rest[0], undefined, params.order);
    }
    const [targetId, timestamp, count, callback] = rest;
    return this.getHistoryMessages(params, targetId, timestamp, count, callback);
  }

  /**
   * Clears a conversation's history up to `timestamp` (now if absent): in the local store and
   * on the server, for this user.
   * @param {{ conversationType: number, targetId: string, timestamp?: number }} params
   * @param {Callback} [callback]
   */
  clearHistoryMessages(params, callback) {
    const run = async () => {
      const timestamp = params.timestamp || this.#requireInit().getServerTime();
      await this.#storeOrNull()?.clear({ conversationType: params.conversationType, targetId: params.targetId, beforeTime: timestamp });
      await this.#requireInit().clearRemoteHistoryMessages({ ...params, conversationType: wireType(params.conversationType), timestamp });
      return true;
    };
    return settle(run(), callback, { code: ErrorCode.CLEAR_HIS_ERROR });
  }

  /**
   * @param {{ conversationType: number, targetId: string, timestamp: number }} params
   * @param {Callback} [callback]
   */
  clearRemoteHistoryMessages(params, callback) {
    const core = this.#requireInit();
    return settle(
      core.clearRemoteHistoryMessages({ ...params, conversationType: wireType(params.conversationType) }),
      callback,
      { code: ErrorCode.CLEAR_HIS_TIME_ERROR },
    );
  }

  /**
   * Deletes messages from this user's history on the server (`delMsgs`: Messages with their
   * `seq`, or with a `messageUId` the store knows).
   * @param {number} conversationType
   * @param {string} targetId
   * @param {any[]} delMsgs
   * @param {Callback} [callback]
   */
  deleteRemoteMessages(conversationType, targetId, delMsgs, callback) {
    const run = async () => {
      /** @type {number[]} */
      const seqs = [];
      for (const m of asArray(delMsgs)) {
        let seq = Number(m?.seq) || 0;
        if (!seq && m?.messageUId) seq = (await this.#storeOrNull()?.getByUId(m.messageUId))?.seq ?? 0;
        if (seq) seqs.push(seq);
      }
      if (seqs.length === 0) throw new TidingsError(ErrorCode.DELETE_MESSAGE_ID_IS_NULL, 'no messages the server knows');
      return this.#requireInit().deleteRemoteMessages(wireType(conversationType), targetId, seqs);
    };
    return settle(run(), callback, { code: ErrorCode.MSG_DEL_ERROR });
  }

  // ---------------------------------------------------------------- conversations

  /**
   * The seed's Conversation of a Tidings one (or of the protocol's, with `latest`).
   * @param {any} tempConver
   * @returns {any}
   */
  pottingConversation(tempConver) {
    /** @type {NativeConversation} */
    const c = 'latest' in (tempConver ?? {}) || 'unread' in (tempConver ?? {}) ? conversationOf(tempConver, this.#core?.getCurrentUserId() ?? '') : tempConver;
    const type = this.#seedType(c.conversationType, c.targetId);
    const key = conversationKey(type, c.targetId);
    const latest = c.latestMessage ? this.#fromNative(c.latestMessage) : null;
    const override = this.#unreadOverrides.get(key);
    return {
      conversationType: type,
      targetId: c.targetId,
      conversationTitle: '',
      latestMessage: latest,
      latestMessageId: latest?.messageUId ?? '',
      objectName: latest?.objectName ?? '',
      sentTime: latest?.sentTime ?? 0,
      sentStatus: latest?.sentStatus ?? 0,
      senderUserId: latest?.senderUserId ?? '',
      receivedStatus: latest?.receivedStatus ?? 0,
      receivedTime: latest?.receivedTime ?? 0,
      unreadMessageCount: override ?? c.unreadMessageCount,
      hasUnreadMention: c.mentionedCount > 0,
      mentionedCount: c.mentionedCount,
      isTop: c.isTop,
      notificationStatus: c.isMuted ? ConversationNotificationStatus.DO_NOT_DISTURB : ConversationNotificationStatus.NOTIFY,
      readSeq: c.readSeq,
      ...(this.#overlays.get(key) ?? {}),
    };
  }

  /**
   * @param {NativeConversation[]} list
   * @param {number[] | null | undefined} types
   */
  async #seedConversations(list, types) {
    await this.#resolveKinds(list.filter((c) => c.conversationType === ConversationType.GROUP).map((c) => c.targetId));
    const wanted = asArray(types);
    const out = list.map((c) => this.pottingConversation(c)).filter((c) => !wanted.length || wanted.includes(c.conversationType));
    for (const [key, c] of this.#added) {
      if (out.some((o) => conversationKey(o.conversationType, o.targetId) === key)) this.#added.delete(key);
      else if (!wanted.length || wanted.includes(c.conversationType)) out.push({ ...c, ...(this.#overlays.get(key) ?? {}) });
    }
    return out;
  }

  /**
   * @param {number[] | null | undefined} types
   * @returns {number[]}
   */
  #wireTypes(types) {
    return [...new Set(asArray(types).map(wireType))];
  }

  /**
   * The conversation list (the server's, with the conversations added on this device after it),
   * `onSuccess(list)`.
   * @param {Callback} [callback]
   * @param {number[] | null} [conversationTypes]
   * @param {number} [count]
   */
  getConversationList(callback, conversationTypes, count) {
    const run = async () => {
      const list = await this.#requireInit().getConversationList(this.#wireTypes(conversationTypes), count ?? 100);
      return this.#seedConversations(list, conversationTypes);
    };
    return settle(run(), callback, { code: ErrorCode.CONVER_GETLIST_ERROR });
  }

  /**
   * The server's list (the same as `getConversationList`: the list always comes from the server).
   * @param {Callback} [callback]
   * @param {number[] | null} [conversationTypes]
   * @param {number} [count]
   */
  getRemoteConversationList(callback, conversationTypes, count) {
    return this.getConversationList(callback, conversationTypes, count);
  }

  /**
   * One conversation, or null.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {Callback} [callback]
   */
  getConversation(conversationType, targetId, callback) {
    const run = async () => {
      if (conversationType === ConversationType.DISCUSSION) this.#kinds.set(targetId, 'discussion');
      const c = await this.#requireInit().getConversation(wireType(conversationType), targetId);
      const key = conversationKey(conversationType, targetId);
      if (!c) return this.#added.get(key) ?? null;
      return this.pottingConversation(c);
    };
    return settle(run(), callback, { code: ErrorCode.CONVER_GET_ERROR });
  }

  /**
   * Adds a conversation to this device's list (the server lists a conversation once it has a
   * message; until then it is listed here, after the server's).
   * @param {any} conversation
   * @param {Callback} [callback]
   */
  addConversation(conversation, callback) {
    const key = conversationKey(conversation.conversationType, conversation.targetId);
    this.#added.set(key, { ...this.createConversationShape(conversation.conversationType, conversation.targetId, ''), ...conversation });
    return settle(Promise.resolve(true), callback);
  }

  /**
   * A new Conversation object, added to this device's list.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {string} converTitle
   */
  createConversation(conversationType, targetId, converTitle) {
    const c = this.createConversationShape(conversationType, targetId, converTitle);
    this.#added.set(conversationKey(conversationType, targetId), c);
    if (converTitle) this.#overlays.set(conversationKey(conversationType, targetId), { conversationTitle: converTitle });
    return c;
  }

  /**
   * @param {number} conversationType
   * @param {string} targetId
   * @param {string} title
   */
  createConversationShape(conversationType, targetId, title) {
    return {
      conversationType,
      targetId,
      conversationTitle: title ?? '',
      latestMessage: null,
      latestMessageId: '',
      objectName: '',
      sentTime: 0,
      sentStatus: 0,
      senderUserId: '',
      receivedStatus: 0,
      receivedTime: 0,
      unreadMessageCount: 0,
      hasUnreadMention: false,
      mentionedCount: 0,
      isTop: false,
      notificationStatus: ConversationNotificationStatus.NOTIFY,
      readSeq: 0,
    };
  }

  /**
   * Applies a Conversation's settings: `isTop` and `notificationStatus` go to the server (shared
   * by the user's devices), the other fields (`conversationTitle`, …) stay on this device.
   * @param {any} conversation
   * @param {Callback} [callback]
   */
  updateConversation(conversation, callback) {
    const run = async () => {
      const { conversationType, targetId, isTop, notificationStatus, ...rest } = conversation;
      const change = /** @type {Record<string, unknown>} */ ({});
      if (isTop !== undefined) change.pinned = Boolean(isTop);
      if (notificationStatus !== undefined) change.muted = notificationStatus === ConversationNotificationStatus.DO_NOT_DISTURB;
      const key = conversationKey(conversationType, targetId);
      const local = Object.fromEntries(
        Object.entries(rest).filter(([k]) => ['conversationTitle', 'conversationPortrait', 'draft', 'extra'].includes(k)),
      );
      this.#overlays.set(key, { ...(this.#overlays.get(key) ?? {}), ...local });
      if (Object.keys(change).length) await this.#requireInit().updateConversation(wireType(conversationType), targetId, change);
      const c = await this.#requireInit().getConversation(wireType(conversationType), targetId);
      return c ? this.pottingConversation(c) : { ...this.createConversationShape(conversationType, targetId, ''), ...this.#overlays.get(key) };
    };
    return settle(run(), callback);
  }

  /**
   * Removes a conversation from the list (it comes back with its next message).
   * @param {number} conversationType
   * @param {string} targetId
   * @param {Callback} [callback]
   */
  removeConversation(conversationType, targetId, callback) {
    const key = conversationKey(conversationType, targetId);
    this.#added.delete(key);
    return settle(this.#requireInit().removeConversation(wireType(conversationType), targetId), callback, {
      code: ErrorCode.CONVER_REMOVE_ERROR,
    });
  }

  /**
   * Hides a conversation (Tidings' removal: out of the list, on every device, until its next
   * message); `isHidden` false lists it again on this device (`addConversation`).
   * @param {number} conversationType
   * @param {string} targetId
   * @param {boolean} isHidden
   * @param {Callback} [callback]
   */
  setConversationHidden(conversationType, targetId, isHidden, callback) {
    if (isHidden) return this.removeConversation(conversationType, targetId, callback);
    const run = async () => {
      // Listed here until the server lists it again (with its next message).
      const c = await this.getConversation(conversationType, targetId);
      this.#added.set(conversationKey(conversationType, targetId), c ?? this.createConversationShape(conversationType, targetId, ''));
      return true;
    };
    return settle(run(), callback);
  }

  /**
   * @param {Callback} [callback]
   * @param {number[]} [conversationTypes]
   */
  clearConversations(callback, conversationTypes) {
    const run = async () => {
      await this.#requireInit().clearConversations(this.#wireTypes(conversationTypes));
      this.#added.clear();
      return true;
    };
    return settle(run(), callback, { code: ErrorCode.CONVER_CLEAR_ERROR });
  }

  /**
   * @param {number} conversationType
   * @param {string} targetId
   * @param {boolean} isTop
   * @param {Callback} [callback]
   */
  setConversationToTop(conversationType, targetId, isTop, callback) {
    return settle(
      this.#requireInit().setConversationToTop(wireType(conversationType), targetId, isTop).then(() => true),
      callback,
      { code: ErrorCode.CONVER_SETOP_ERROR },
    );
  }

  /**
   * @param {number} conversationType
   * @param {string} targetId
   * @param {Callback} [callback]
   */
  getConversationNotificationStatus(conversationType, targetId, callback) {
    return settle(this.#requireInit().getConversationNotificationStatus(wireType(conversationType), targetId), callback);
  }

  /**
   * @param {number} conversationType
   * @param {string} targetId
   * @param {number} notificationStatus see `ConversationNotificationStatus`
   * @param {Callback} [callback]
   */
  setConversationNotificationStatus(conversationType, targetId, notificationStatus, callback) {
    return settle(
      this.#requireInit().setConversationNotificationStatus(wireType(conversationType), targetId, notificationStatus),
      callback,
    );
  }

  /** @param {Callback} [callback] */
  getNotificationQuietHours(callback) {
    return settle(this.#requireInit().getNotificationQuietHours(), callback);
  }

  // ---------------------------------------------------------------- drafts

  /**
   * @template T
   * @param {() => T} fn
   * @param {number} code
   * @returns {T}
   */
  #draft(fn, code) {
    try {
      return fn();
    } catch (e) {
      throw seedError(e, code);
    }
  }

  /** @param {number} conversationType @param {string} targetId @param {string} value */
  saveTextMessageDraft(conversationType, targetId, value) {
    return this.#draft(() => this.#requireInit().saveTextMessageDraft(conversationType, targetId, value), ErrorCode.DRAF_SAVE_ERROR);
  }

  /** @param {number} conversationType @param {string} targetId */
  getTextMessageDraft(conversationType, targetId) {
    return this.#draft(() => this.#requireInit().getTextMessageDraft(conversationType, targetId), ErrorCode.DRAF_GET_ERROR);
  }

  /** @param {number} conversationType @param {string} targetId */
  clearTextMessageDraft(conversationType, targetId) {
    return this.#draft(() => this.#requireInit().clearTextMessageDraft(conversationType, targetId), ErrorCode.DRAF_REMOVE_ERROR);
  }

  // ---------------------------------------------------------------- unread counts

  /**
   * One conversation's unread count (`setUnreadCount`'s, if set).
   * @param {number} conversationType
   * @param {string} targetId
   * @param {Callback} [callback]
   */
  getUnreadCount(conversationType, targetId, callback) {
    const run = async () => {
      const override = this.#unreadOverrides.get(conversationKey(conversationType, targetId));
      if (override !== undefined) return override;
      return this.#requireInit().getUnreadCount(wireType(conversationType), targetId);
    };
    return settle(run(), callback, { code: ErrorCode.CONVER_ID_TYPE_UNREAD_ERROR });
  }

  /**
   * The total over the given types (all by default), `setUnreadCount`'s counts in place of the
   * server's.
   * @param {number[] | undefined | null} types
   */
  async #total(types) {
    const core = this.#requireInit();
    const wanted = asArray(types);
    const split = wanted.includes(ConversationType.GROUP) !== wanted.includes(ConversationType.DISCUSSION);
    if (split || this.#unreadOverrides.size > 0) {
      const list = await this.getConversationList(undefined, wanted.length ? wanted : null, 10_000);
      return list.reduce((n, c) => n + c.unreadMessageCount, 0);
    }
    return core.getTotalUnreadCount(this.#wireTypes(wanted));
  }

  /**
   * @param {Callback} [callback]
   * @param {number[]} [conversationTypes]
   */
  getTotalUnreadCount(callback, conversationTypes) {
    return settle(this.#total(conversationTypes), callback, { code: ErrorCode.CONVER_TOTAL_UNREAD_ERROR });
  }

  /**
   * @param {number[]} conversationTypes
   * @param {Callback} [callback]
   */
  getConversationUnreadCount(conversationTypes, callback) {
    return settle(this.#total(conversationTypes), callback, { code: ErrorCode.CONVER_TYPE_UNREAD_ERROR });
  }

  /**
   * Sets the unread count this device shows for a conversation. Tidings derives unread counts
   * from read positions on the server, which only move forward: the count set here is kept by
   * this entry (in memory) and answered in place of the server's until a new message arrives
   * in the conversation or its unread is cleared.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {number} count
   * @param {Callback} [callback]
   */
  setUnreadCount(conversationType, targetId, count, callback) {
    if (!Number.isInteger(count) || count < 0) {
      return fail(callback, ErrorCode.BIZ_ERROR_INVALID_PARAMETER, 'count is a non-negative integer');
    }
    this.#unreadOverrides.set(conversationKey(conversationType, targetId), count);
    return settle(Promise.resolve(true), callback);
  }

  /**
   * Reads a conversation up to its newest message, on every device (the other user gets a read
   * receipt).
   * @param {number} conversationType
   * @param {string} targetId
   * @param {Callback} [callback]
   */
  clearUnreadCount(conversationType, targetId, callback) {
    this.#unreadOverrides.delete(conversationKey(conversationType, targetId));
    return settle(this.#requireInit().clearUnreadCount(wireType(conversationType), targetId), callback);
  }

  /**
   * Reads what was sent at or before `timestamp`.
   * @param {number} conversationType
   * @param {string} targetId
   * @param {number} timestamp
   * @param {Callback} [callback]
   */
  clearUnreadCountByTimestamp(conversationType, targetId, timestamp, callback) {
    this.#unreadOverrides.delete(conversationKey(conversationType, targetId));
    return settle(
      this.#requireInit().updateConversation(wireType(conversationType), targetId, { readTime: timestamp }).then(() => true),
      callback,
    );
  }

  /**
   * Reads every conversation with unread messages.
   * @param {Callback} [callback]
   */
  clearTotalUnreadCount(callback) {
    const run = async () => {
      this.#unreadOverrides.clear();
      const core = this.#requireInit();
      const list = await core.getConversationList([], 10_000);
      for (const c of list) if (c.unreadMessageCount > 0) await core.clearUnreadCount(c.conversationType, c.targetId);
      return true;
    };
    return settle(run(), callback);
  }

  /**
   * Whether the user has unread messages (connected: the server's total; the seed asks before
   * connecting, with the token: Tidings needs the connection, 30001 without one).
   * @param {string} _token
   * @param {Callback} [callback]
   */
  hasRemoteUnreadMessages(_token, callback) {
    const run = async () => (await this.#requireInit().getTotalUnreadCount([])) > 0;
    return settle(run(), callback);
  }

  // ---------------------------------------------------------------- discussions

  /**
   * Runs a discussion query; 22406 on a discussion is the seed's NOT_IN_DISCUSSION (21406).
   * @param {Record<string, unknown>} body
   */
  async #discussionQuery(body) {
    try {
      return await this.#requireInit().query(body);
    } catch (e) {
      if (e instanceof TidingsError && e.code === ErrorCode.NOT_IN_GROUP) {
        throw new TidingsError(ErrorCode.NOT_IN_DISCUSSION, e.message, e.serverCode);
      }
      throw e;
    }
  }

  /**
   * Makes a discussion of this user and `userIdList`; `onSuccess(discussionId)`.
   * @param {string} name
   * @param {string[]} userIdList
   * @param {Callback} [callback]
   */
  createDiscussion(name, userIdList, callback) {
    const run = async () => {
      const q = await this.#discussionQuery({ createDiscussion: { name, userIds: asArray(userIdList) } });
      const id = String(q.groups?.[0]?.groupId ?? '');
      if (!id) throw new TidingsError(ErrorCode.RC_QUERY_ACK_NO_DATA, 'the answer held no discussion');
      this.#kinds.set(id, 'discussion');
      return id;
    };
    return settle(run(), callback, { code: ErrorCode.CREATE_DISCUSSION });
  }

  /**
   * @param {string} discussionId
   * @param {string[]} userIdList
   * @param {Callback} [callback]
   */
  addMemberToDiscussion(discussionId, userIdList, callback) {
    return settle(
      this.#discussionQuery({ addDiscussionMembers: { groupId: discussionId, userIds: asArray(userIdList) } }).then(() => true),
      callback,
      { code: ErrorCode.JOIN_IN_DISCUSSION },
    );
  }

  /**
   * @param {string} discussionId
   * @param {string} userId
   * @param {Callback} [callback]
   */
  removeMemberFromDiscussion(discussionId, userId, callback) {
    return settle(this.#discussionQuery({ removeDiscussionMember: { groupId: discussionId, userId } }).then(() => true), callback);
  }

  /**
   * @param {string} discussionId
   * @param {Callback} [callback]
   */
  quitDiscussion(discussionId, callback) {
    return settle(this.#discussionQuery({ quitGroup: { groupId: discussionId } }).then(() => true), callback);
  }

  /**
   * @param {string} discussionId
   * @param {string} name
   * @param {Callback} [callback]
   */
  setDiscussionName(discussionId, name, callback) {
    return settle(this.#discussionQuery({ updateDiscussion: { groupId: discussionId, name } }).then(() => true), callback);
  }

  /**
   * Whether every member may invite (`DiscussionInviteStatus.OPENED`), or only the creator.
   * @param {string} discussionId
   * @param {number} status
   * @param {Callback} [callback]
   */
  setDiscussionInviteStatus(discussionId, status, callback) {
    const inviteOpen = status === DiscussionInviteStatus.OPENED;
    return settle(
      this.#discussionQuery({ updateDiscussion: { groupId: discussionId, inviteOpen } }).then(() => true),
      callback,
      { code: ErrorCode.INVITE_DICUSSION },
    );
  }

  /**
   * `{id, name, creatorId, memberIdList, isOpen}`.
   * @param {string} discussionId
   * @param {Callback} [callback]
   */
  getDiscussion(discussionId, callback) {
    const run = async () => {
      const q = await this.#discussionQuery({ getGroup: { groupId: discussionId } });
      const g = q.groups?.[0];
      if (!g) throw new TidingsError(ErrorCode.RC_DISCUSSION_GROUP_ID_INVALID, 'no such discussion');
      if (g.kind !== 'discussion') throw new TidingsError(ErrorCode.RC_DISCUSSION_GROUP_ID_INVALID, 'a group, not a discussion');
      this.#kinds.set(discussionId, 'discussion');
      /** @type {string[]} */
      const memberIdList = [];
      let pageToken = '';
      for (;;) {
        const page = await this.#requireInit().getGroupMembers(discussionId, { count: 500, pageToken });
        memberIdList.push(...page.members.map((m) => m.userId));
        pageToken = page.nextPageToken;
        if (!pageToken) break;
      }
      return {
        id: discussionId,
        name: String(g.name ?? ''),
        creatorId: String(g.ownerId ?? ''),
        memberIdList,
        // The protocol's JSON leaves false out.
        isOpen: Boolean(g.inviteOpen),
      };
    };
    return settle(run(), callback);
  }

  // ---------------------------------------------------------------- chatrooms

  /**
   * @param {string} chatroomId
   * @param {Callback | undefined} callback
   */
  #roomId(chatroomId, callback) {
    if (!chatroomId) return fail(callback, ErrorCode.CHATROOM_ID_ISNULL, 'no chatroom id');
    return null;
  }

  /**
   * Joins a chatroom with up to `messageCount` (0–50) recent messages, which come to the
   * message listener.
   * @param {string} chatroomId
   * @param {number} messageCount
   * @param {Callback} [callback]
   */
  joinChatRoom(chatroomId, messageCount, callback) {
    return (
      this.#roomId(chatroomId, callback) ??
      settle(this.#requireInit().joinChatRoom(chatroomId, messageCount ?? 0).then(() => true), callback, {
        code: ErrorCode.CHARTOOM_JOIN_ERROR,
      })
    );
  }

  /**
   * @param {string} chatroomId
   * @param {Callback} [callback]
   */
  quitChatRoom(chatroomId, callback) {
    return this.#roomId(chatroomId, callback) ?? settle(this.#requireInit().quitChatRoom(chatroomId).then(() => true), callback);
  }

  /**
   * `{userTotalNums, userInfos: [{id, time}]}` (and Tidings' `chatroom`, `members`).
   * @param {string} chatroomId
   * @param {number} count
   * @param {number} order 1 the first to join first, 2 the newest first
   * @param {Callback} [callback]
   */
  getChatRoomInfo(chatroomId, count, order, callback) {
    return this.#roomId(chatroomId, callback) ?? settle(this.#requireInit().getChatRoomInfo(chatroomId, { count, order }), callback);
  }

  /**
   * Where `getChatRoomHistoryMessages` starts reading a room (ms; 0: the newest).
   * @param {string} chatroomId
   * @param {number} timestamp
   */
  setChatroomHisMessageTimestamp(chatroomId, timestamp) {
    this.#roomHistoryFrom.set(chatroomId, Number(timestamp) || 0);
  }

  /**
   * A page of a room's history (what the room keeps): before the timestamp set with
   * `setChatroomHisMessageTimestamp` (`order` 0, or absent) or after it (`order` 1);
   * `onSuccess(list, hasMore)`.
   * @param {string} chatroomId
   * @param {number} count
   * @param {number} [order]
   * @param {Callback} [callback]
   */
  getChatRoomHistoryMessages(chatroomId, count, order, callback) {
    const cb = isCallback(order) ? order : callback;
    const from = this.#roomHistoryFrom.get(chatroomId) ?? 0;
    const start = order === 1 ? { afterTime: from || undefined, count } : { beforeTime: from || undefined, count };
    const run = async () => {
      const page = await this.#requireInit().getChatRoomHistoryMessages(chatroomId, start);
      return { list: page.messages.map((m) => this.#fromNative(m)), hasMore: page.hasMore };
    };
    return (
      this.#roomId(chatroomId, cb) ??
      settle(run(), cb, { code: ErrorCode.CHATROOM_HISMESSAGE_ERROR, spread: (v) => [v.list, v.hasMore] })
    );
  }

  /**
   * @param {string} chatroomId
   * @param {{ key: string, value: string, isAutoDelete?: boolean }} entry
   * @param {Callback} [callback]
   */
  setChatroomEntry(chatroomId, entry, callback) {
    return settle(this.#requireInit().setChatroomEntry(chatroomId, entry).then(() => true), callback);
  }

  /**
   * @param {string} chatroomId
   * @param {{ key: string, value: string, isAutoDelete?: boolean }} entry
   * @param {Callback} [callback]
   */
  forceSetChatroomEntry(chatroomId, entry, callback) {
    return settle(this.#requireInit().forceSetChatroomEntry(chatroomId, entry).then(() => true), callback);
  }

  /**
   * An entry's value; 36004 (CHATROOM_KV_NOT_FOUND) if the room has no such key.
   * @param {string} chatroomId
   * @param {string} key
   * @param {Callback} [callback]
   */
  getChatroomEntry(chatroomId, key, callback) {
    const run = async () => {
      const v = await this.#requireInit().getChatroomEntry(chatroomId, key);
      if (v === null || v === undefined) throw new TidingsError(ErrorCode.CHATROOM_KV_NOT_FOUND, `no entry ${key}`);
      return v;
    };
    return settle(run(), callback);
  }

  /**
   * `{key: value}` of every entry.
   * @param {string} chatroomId
   * @param {Callback} [callback]
   */
  getAllChatroomEntries(chatroomId, callback) {
    return settle(this.#requireInit().getAllChatroomEntries(chatroomId), callback);
  }

  /**
   * @param {string} chatroomId
   * @param {string | { key: string }} entry
   * @param {Callback} [callback]
   */
  removeChatroomEntry(chatroomId, entry, callback) {
    const key = typeof entry === 'string' ? entry : entry.key;
    return settle(this.#requireInit().removeChatroomEntry(chatroomId, key).then(() => true), callback);
  }

  /**
   * @param {string} chatroomId
   * @param {string | { key: string }} entry
   * @param {Callback} [callback]
   */
  forceRemoveChatroomEntry(chatroomId, entry, callback) {
    const key = typeof entry === 'string' ? entry : entry.key;
    return settle(this.#requireInit().forceRemoveChatroomEntry(chatroomId, key).then(() => true), callback);
  }

  // ---------------------------------------------------------------- blacklist

  /** @param {string} userId @param {Callback} [callback] */
  addToBlacklist(userId, callback) {
    return settle(this.#requireInit().addToBlacklist(userId).then(() => true), callback, { code: ErrorCode.BLACK_ADD_ERROR });
  }

  /** @param {string} userId @param {Callback} [callback] */
  removeFromBlacklist(userId, callback) {
    return settle(this.#requireInit().removeFromBlacklist(userId).then(() => true), callback, {
      code: ErrorCode.BLACK_REMOVE_ERROR,
    });
  }

  /** @param {Callback} [callback] */
  getBlacklist(callback) {
    return settle(this.#requireInit().getBlacklist(), callback);
  }

  /**
   * `BlacklistStatus.IN_BLACK_LIST` (0) if this user blocks `userId`, else `NOT_IN_BLACK_LIST` (1).
   * @param {string} userId
   * @param {Callback} [callback]
   */
  getBlacklistStatus(userId, callback) {
    return settle(
      this.#requireInit()
        .getBlacklistStatus(userId)
        .then((b) => (b ? BlacklistStatus.IN_BLACK_LIST : BlacklistStatus.NOT_IN_BLACK_LIST)),
      callback,
      { code: ErrorCode.BLACK_GETSTATUS_ERROR },
    );
  }

  // ---------------------------------------------------------------- files

  /**
   * `{url, headers, token}`: what an upload to the server needs.
   * @param {number} fileType
   * @param {Callback} [callback]
   */
  getFileToken(fileType, callback) {
    return settle(this.#requireInit().getFileToken(fileType), callback);
  }

  /**
   * A fresh link of a file: `onSuccess({downloadUrl, url, expiresAt})`. `fileName` is the
   * file's id or one of its links; someone other than the uploader names the message it is in
   * (`message`).
   * @param {number} _fileType
   * @param {string} fileName
   * @param {string} [_oriName]
   * @param {Callback} [callback]
   * @param {any} [message]
   */
  getFileUrl(_fileType, fileName, _oriName, callback, message) {
    const core = this.#requireInit();
    const where = message ? { conversationType: wireType(message.conversationType), targetId: message.targetId, seq: message.seq } : undefined;
    return settle(where ? core.getFileUrl(fileName, where) : core.getFileUrl(fileName), callback);
  }

  // ---------------------------------------------------------------- users

  /**
   * A user's presence: `{userId, online, lastSeen, status}`. `status` is the text this device
   * set with `setUserStatus` for its own user (Tidings has no place for it on the server), else
   * empty.
   * @param {string} userId
   * @param {Callback} [callback]
   */
  getUserStatus(userId, callback) {
    const run = async () => {
      const core = this.#requireInit();
      const [p] = await core.getUserStatus([userId]);
      return { ...p, status: userId === core.getCurrentUserId() ? this.#userStatus : '' };
    };
    return settle(run(), callback);
  }

  /**
   * A custom status text. Tidings keeps presence (online, last seen) on the server but has no
   * place for a text: it is kept by this entry, in memory, and only `getUserStatus` of this
   * user on this device answers it.
   * @param {string} status
   * @param {Callback} [callback]
   */
  setUserStatus(status, callback) {
    this.#userStatus = String(status ?? '');
    return settle(Promise.resolve(true), callback);
  }

  /**
   * Watches users' presence: `listener({userId, online, lastSeen})` when one comes online or
   * goes offline. `config.userIds`: whom (at most 200; replaces the last list).
   * @param {{ userIds: string[] }} config
   * @param {(status: { userId: string, online: boolean, lastSeen: number }) => void} listener
   * @param {Callback} [callback]
   */
  setUserStatusListener(config, listener, callback) {
    const core = this.#requireInit();
    this.#stopPresence?.();
    this.#stopPresence = core.on('presence', (p) => listener(p));
    return settle(core.subscribeUserStatus(asArray(config?.userIds)), callback);
  }

  /** The HTTP base URL of the server, from `init`'s options. */
  #httpBase() {
    const o = /** @type {any} */ (this.#options);
    const s = o.servers?.[0];
    if (typeof s === 'string') return s.replace(/\/$/, '');
    if (s && typeof s === 'object' && s.http) return String(s.http).replace(/\/$/, '');
    /** @type {any} */
    const g = globalThis;
    const navi = o.navi ?? g.location?.origin ?? '';
    return String(navi).replace(/\/navi\/?$/, '').replace(/\/$/, '');
  }

  /**
   * A request to the server's accounts endpoints; answers the JSON body (null for 204).
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   * @param {string} [bearer]
   */
  async #http(method, path, body, bearer) {
    /** @type {any} */
    const g = globalThis;
    const f = /** @type {any} */ (this.#options).fetch ?? g.fetch?.bind(g);
    /** @type {Record<string, string>} */
    const headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    let res;
    try {
      res = await f(`${this.#httpBase()}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new TidingsError(ErrorCode.RC_HTTP_SEND_FAIL, e instanceof Error ? e.message : String(e));
    }
    if (res.status === 204) return null;
    const json = await res.json().catch(() => null);
    if (!res.ok || !json || int(json.code) !== 0) {
      const code = json ? int(json.code) : ErrorCode.RC_NAVI_RESOURCE_ERROR;
      throw new TidingsError(code || ErrorCode.UNKNOWN, String(json?.message ?? `HTTP ${res.status}`));
    }
    return json;
  }

  /**
   * Seed 004's `login({account, password})` (七, 用户信息相关操作): Tidings' account login
   * (`POST /v1/accounts/login`); `onSuccess({account, token, userId})`. Connect with the token.
   * @param {{ account: string, password: string }} params
   * @param {Callback} [callback]
   */
  login(params, callback) {
    const run = async () => {
      const json = await this.#http('POST', '/v1/accounts/login', { account: params?.account, password: params?.password });
      this.#accountToken = String(json.token);
      return { account: params.account, token: String(json.token), userId: String(json.userId) };
    };
    return settle(run(), callback);
  }

  /**
   * A user's profile, `{id, name, portrait}`: this user's from `GET /v1/accounts/me`, another's
   * from the server's `getUsers` query; 23407 (GET_USERINFO_ERROR) when the server cannot say.
   * @param {string} userId
   * @param {Callback} [callback]
   */
  getUserInfo(userId, callback) {
    const run = async () => {
      const core = this.#requireInit();
      /** @type {any} */
      let user;
      if (!userId || userId === core.getCurrentUserId()) {
        const token = this.#token || this.#accountToken;
        if (!token) throw new TidingsError(ErrorCode.GET_USERINFO_ERROR, 'connect or log in first');
        user = (await this.#http('GET', '/v1/accounts/me', undefined, token)).user;
      } else {
        const q = await core.query({ getUsers: { userIds: [userId] } });
        user = q.users?.[0];
      }
      if (!user) throw new TidingsError(ErrorCode.GET_USERINFO_ERROR, `no profile of ${userId}`);
      return { id: String(user.userId ?? userId), name: String(user.name ?? ''), portrait: String(user.portrait ?? ''), extra: user.extra };
    };
    return settle(run(), callback, { code: ErrorCode.GET_USERINFO_ERROR });
  }

  /**
   * Seed 004's "注销账户" (`revoked`): deletes this user's account (`DELETE /v1/accounts/me`,
   * which needs the password) and revokes its tokens; the connection ends (31021).
   * @param {{ password: string }} params
   * @param {Callback} [callback]
   */
  revoked(params, callback) {
    const run = async () => {
      const token = this.#accountToken || this.#token;
      if (!token) throw new TidingsError(ErrorCode.RC_CONN_USER_OR_PASSWD_ERROR, 'log in first');
      await this.#http('DELETE', '/v1/accounts/me', { password: params?.password }, token);
      this.#accountToken = '';
      await this.disconnect();
      return true;
    };
    return settle(run(), callback);
  }

  /**
   * Registers an app-defined type (also `RongIMClient.registerMessageType`).
   * @param {string} messageType
   * @param {string} objectName
   * @param {{ isCounted?: boolean, isPersited?: boolean }} [messageTag]
   * @param {string[]} [propNames]
   */
  registerMessageType(messageType, objectName, messageTag, propNames) {
    return RongIMClient.registerMessageType(messageType, objectName, messageTag, propNames);
  }
}

/** Seed 004's `RongIMLib`: the client, the classes and the enumerations. */
export const RongIMLib = Object.freeze({
  RongIMClient,
  ...MessageClasses,
  MessageContent,
  MentionedInfo,
  MessageType,
  ConnectionStatus,
  ConnectionState,
  ConversationType,
  ConversationNotificationStatus,
  ErrorCode,
  MentionedType,
  MessageDirection,
  SentStatus,
  ReceivedStatus,
  DiscussionInviteStatus,
  BlacklistStatus,
  TransportType,
  MemoryMessageStore,
  IndexedDBMessageStore,
  classOf,
});

export default RongIMLib;

