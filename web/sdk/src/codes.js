// Enumerations and codes: the connection statuses, transports and conversation types of seed
// 004's web SDK, and one table of error codes covering both the server's codes
// (docs/protocol.md, "Errors") and the SDK's own.

/**
 * Connection statuses, as reported to the status listener (seed 004's ConnectionStatus). A
 * session ended by the server for a reason with no status of its own (a ban, a revoked token)
 * is reported with the server's code itself.
 */
export const ConnectionStatus = Object.freeze({
  CONNECTED: 0,
  CONNECTING: 1,
  /** The application called `disconnect()`. */
  DISCONNECTED: 2,
  /** The connection was lost (or could not be made): the SDK reconnects. */
  NETWORK_UNAVAILABLE: 3,
  /** The server closed the connection and asked the client to come back: the SDK reconnects. */
  CONNECTION_CLOSED: 4,
  /** Another login of this user (same device id, or the single-device policy) took over. */
  KICKED_OFFLINE_BY_OTHER_CLIENT: 6,
  /** WebSocket failed; the SDK goes on over long-polling. */
  WEBSOCKET_UNAVAILABLE: 7,
  WEBSOCKET_ERROR: 8,
  DOMAIN_INCORRECT: 12,
  APPKEY_IS_FAKE: 20,
  ULTRALIMIT: 1101,
  REQUEST_NAVI: 201,
  RESPONSE_NAVI: 202,
  RESPONSE_NAVI_ERROR: 203,
  RESPONSE_NAVI_TIMEOUT: 204,
});

/** Which transport carries the connection (seed 004's values). */
export const TransportType = Object.freeze({
  XHR_POLLING: 0,
  WEBSOCKET: 1,
});

export const ConversationType = Object.freeze({
  /** User events (read positions, settings changes): never a conversation of their own. */
  NONE: 0,
  PRIVATE: 1,
  DISCUSSION: 2,
  GROUP: 3,
  CHATROOM: 4,
  CUSTOMER_SERVICE: 5,
  SYSTEM: 6,
  APP_PUBLIC_SERVICE: 7,
  PUBLIC_SERVICE: 8,
});

/** The local state of a message this client sends (the values of the lineage's SDKs). */
export const SentStatus = Object.freeze({
  SENDING: 10,
  FAILED: 20,
  SENT: 30,
  RECEIVED: 40,
  READ: 50,
  DESTROYED: 60,
});

export const MessageDirection = Object.freeze({
  SEND: 1,
  RECEIVE: 2,
});

export const MentionedType = Object.freeze({
  ALL: 1,
  PART: 2,
});

/** A conversation's notifications (seed 004's values): muted, or not. */
export const ConversationNotificationStatus = Object.freeze({
  DO_NOT_DISTURB: 0,
  NOTIFY: 1,
});

/**
 * Every code the server or the SDK may report. Where seed 004's table has a code with the same
 * number and meaning, its name is used; the others are named after the server's meaning.
 * Negative codes and 30xxx/33xxx codes are the SDK's own.
 */
export const ErrorCode = Object.freeze({
  SUCCESS: 0,

  // The SDK's own.
  TIMEOUT: -1,
  UNKNOWN: -2,
  PARAMETER_ERROR: -3,
  /** A request needs a connection, and there is none. */
  RC_NET_CHANNEL_INVALID: 30001,
  RC_NET_UNAVAILABLE: 30002,
  /** No answer in time (a send after `sendTimeoutMs`, a query after `queryTimeoutMs`). */
  RC_MSG_RESP_TIMEOUT: 30003,
  /** The navigation request failed. */
  RC_HTTP_SEND_FAIL: 30004,
  /** The navigation request timed out. */
  RC_HTTP_REQ_TIMEOUT: 30005,
  RC_HTTP_RECV_FAIL: 30006,
  /** The navigation answer was not a 200 with code 0. */
  RC_NAVI_RESOURCE_ERROR: 30007,
  /** The navigation answer listed no usable node. */
  RC_NODE_NOT_FOUND: 30008,
  /** No transport could be opened to any node. */
  RC_SOCKET_NOT_CREATED: 30010,
  /** The connection was lost before the answer came. */
  RC_SOCKET_DISCONNECTED: 30011,
  RC_PING_SEND_FAIL: 30012,
  /** Nothing came from the server for three heartbeat intervals. */
  RC_PONG_RECV_FAIL: 30013,
  RC_MSG_SEND_FAIL: 30014,
  /** No CONNACK in time. */
  RC_CONN_ACK_TIMEOUT: 31000,
  /** An answer lacked what the request asks for. */
  RC_QUERY_ACK_NO_DATA: 32001,
  /** The server is shutting down (its 41003 on a CONNACK). */
  RC_CONN_SERVER_UNAVAILABLE: 31003,
  BIZ_ERROR_CLIENT_NOT_INIT: 33001,
  BIZ_ERROR_INVALID_PARAMETER: 33003,
  BIZ_ERROR_NO_CHANNEL: 33004,
  /** `connect` while a connection is being made. */
  BIZ_ERROR_CONNECTING: 33006,

  // The server's (docs/protocol.md, "Errors").
  REJECTED_BY_BLACKLIST: 405,
  RC_MSG_UNAUTHORIZED: 20406,
  RC_DISCUSSION_GROUP_ID_INVALID: 20407,
  SEND_FREQUENCY_TOO_FAST: 20604,
  NOT_IN_GROUP: 22406,
  FORBIDDEN_IN_GROUP: 22408,
  /** Adding members to a discussion whose invitations are closed, by other than its owner. */
  JOIN_IN_DISCUSSION: 21407,
  SENSITIVE_SHIELD: 21501,
  SENSITIVE_REPLACE: 21502,
  NOT_IN_CHATROOM: 23406,
  FORBIDDEN_IN_CHATROOM: 23408,
  RC_CHATROOM_USER_KICKED: 23409,
  RC_CHATROOM_NOT_EXIST: 23410,
  RC_CHATROOM_IS_FULL: 23411,
  RC_CHATROOM_PATAMETER_INVALID: 23412,
  CHATROOM_KV_EXCEED: 23423,
  CHATROOM_KV_OVERWRITE_INVALID: 23424,
  CHATROOM_KEY_NOT_EXIST: 23427,
  GROUP_DISMISSED: 35001,
  RC_CONN_PROTO_VERSION_ERROR: 31001,
  RC_CONN_USER_OR_PASSWD_ERROR: 31004,
  RC_CONN_NOT_AUTHRORIZED: 31005,
  RC_CONN_USER_BLOCKED: 31009,
  RC_DISCONN_KICK: 31010,
  RC_DISCONN_EXCEPTION: 31011,
  TOKEN_EXPIRED: 31020,
  TOKEN_REVOKED: 31021,
  MALFORMED_FRAME: 40001,
  UNKNOWN_FRAME_KIND: 40002,
  FRAME_TOO_LARGE: 40003,
  CONNECT_NOT_FIRST: 40004,
  ALREADY_CONNECTED: 40005,
  CONTENT_EMPTY: 40006,
  CONTENT_TOO_LARGE: 40007,
  CONTENT_INVALID: 40008,
  CONVERSATION_TYPE_UNSUPPORTED: 40009,
  CLIENT_MSG_ID_CONFLICT: 40010,
  INVALID_TARGET_ID: 40011,
  INVALID_MESSAGE_TYPE: 40012,
  INVALID_CLIENT_MSG_ID: 40013,
  INVALID_DEVICE_ID: 40014,
  INVALID_QUERY: 40015,
  FRAME_NOT_ACCEPTED: 40016,
  MESSAGE_NOT_FOUND: 40017,
  NOT_MESSAGE_SENDER: 40018,
  RECALL_WINDOW_PASSED: 40019,
  MESSAGE_RECALLED: 40020,
  GROUP_EXISTS: 40021,
  GROUP_FULL: 40022,
  INVALID_MENTIONS: 40023,
  REJECTED_BY_APP_SERVER: 40024,
  REWRITTEN_BY_APP_SERVER: 40025,
  MODERATION_UNAVAILABLE: 40026,
  CHATROOM_EXISTS: 40027,
  CHATROOM_OVERLOADED: 40028,
  INVALID_PUSH_SUBSCRIPTION: 40029,
  PUSH_DISABLED: 40030,
  CHATROOM_JOINED_ELSEWHERE: 40031,
  CONTENT_TOO_DEEP: 40032,
  TOO_MANY_SESSIONS: 40034,
  HEARTBEAT_TIMEOUT: 41001,
  SLOW_CONSUMER: 41002,
  SERVER_SHUTTING_DOWN: 41003,
  HANDSHAKE_TIMEOUT: 41004,
  CLIENT_DISCONNECTED: 41005,
  SERVER_FULL: 41006,
  UNAUTHENTICATED_EVICTED: 41007,
  KICKED_BY_OPERATOR: 41008,
  SIGNATURE_MISSING: 42001,
  SIGNATURE_INVALID: 42002,
  TIMESTAMP_OUT_OF_WINDOW: 42003,
  NONCE_REUSED: 42004,
  APP_KEY_UNKNOWN: 42005,
  INVALID_USER_ID: 42006,
  BAD_REQUEST: 42007,
  NOT_FOUND: 42008,
  POLL_SESSION_UNKNOWN: 42009,
  REQUEST_TIMEOUT: 42015,
});

/** Codes by number, for messages. @type {Map<number, string>} */
const NAMES = new Map(Object.entries(ErrorCode).map(([name, code]) => [code, name]));

/**
 * The name of a code in `ErrorCode`, or `undefined`.
 * @param {number} code
 * @returns {string | undefined}
 */
export function errorName(code) {
  return NAMES.get(code);
}

/**
 * The error every rejected Promise of the SDK carries.
 */
export class TidingsError extends Error {
  /**
   * @param {number} code a code of `ErrorCode` (the server's code, or the seed's equivalent)
   * @param {string} [message]
   * @param {number} [serverCode] the server's own code, when it differs from `code`
   */
  constructor(code, message, serverCode) {
    super(message || errorName(code) || `error ${code}`);
    this.name = 'TidingsError';
    /** @type {number} */
    this.code = code;
    /** @type {number} */
    this.serverCode = serverCode ?? code;
  }
}

/**
 * Codes of a DISCONNECT or a refused CONNECT after which reconnecting would only repeat the
 * refusal (as in the Rust SDK, plus an invalid device id, which no retry changes).
 */
/** @type {Set<number>} */
const FINAL_CODES = new Set([
  ErrorCode.RC_DISCONN_KICK,
  ErrorCode.RC_CONN_USER_OR_PASSWD_ERROR,
  ErrorCode.RC_CONN_NOT_AUTHRORIZED,
  ErrorCode.TOKEN_EXPIRED,
  ErrorCode.TOKEN_REVOKED,
  ErrorCode.RC_CONN_USER_BLOCKED,
  ErrorCode.RC_CONN_PROTO_VERSION_ERROR,
  ErrorCode.CLIENT_DISCONNECTED,
  ErrorCode.INVALID_DEVICE_ID,
]);

/**
 * Whether a refused CONNECT's code is worth retrying with backoff.
 * @param {number} code
 */
export function isRetryable(code) {
  return !FINAL_CODES.has(code);
}

/** Refusals that mean the token is no good (seed 004's `onTokenIncorrect`). */
/** @type {Set<number>} */
export const TOKEN_CODES = new Set([
  ErrorCode.RC_CONN_USER_OR_PASSWD_ERROR,
  ErrorCode.RC_CONN_NOT_AUTHRORIZED,
  ErrorCode.TOKEN_EXPIRED,
  ErrorCode.TOKEN_REVOKED,
]);

/**
 * The error code the SDK reports for a refused CONNECT: the seed's where one means the same.
 * @param {number} serverCode
 */
export function connackErrorCode(serverCode) {
  if (serverCode === ErrorCode.SERVER_SHUTTING_DOWN) return ErrorCode.RC_CONN_SERVER_UNAVAILABLE;
  return serverCode;
}

/**
 * The connection status a DISCONNECT from the server stands for.
 * @param {number} code
 * @param {boolean} reconnect
 */
export function statusOfDisconnect(code, reconnect) {
  if (code === ErrorCode.RC_DISCONN_KICK) return ConnectionStatus.KICKED_OFFLINE_BY_OTHER_CLIENT;
  if (reconnect) return ConnectionStatus.CONNECTION_CLOSED;
  return code;
}
