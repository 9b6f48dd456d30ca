// Type declarations of @tidings/sdk, the browser SDK of the Tidings instant-messaging server.
// Written by hand; `types/conformance.ts` checks the JavaScript against them.

// ------------------------------------------------------------------ codes and enumerations

/** Connection statuses, as the status listener gets them (seed 004's values). */
export declare const ConnectionStatus: Readonly<{
  CONNECTED: 0;
  CONNECTING: 1;
  /** The application called `disconnect()`. */
  DISCONNECTED: 2;
  /** The connection was lost, or could not be made: the SDK reconnects. */
  NETWORK_UNAVAILABLE: 3;
  /** The server closed the connection and asked the client to come back: the SDK reconnects. */
  CONNECTION_CLOSED: 4;
  /** Another login of this user (same device id, or the single-device policy) took over. */
  KICKED_OFFLINE_BY_OTHER_CLIENT: 6;
  /** WebSocket failed; the SDK goes on over long-polling. */
  WEBSOCKET_UNAVAILABLE: 7;
  WEBSOCKET_ERROR: 8;
  DOMAIN_INCORRECT: 12;
  APPKEY_IS_FAKE: 20;
  ULTRALIMIT: 1101;
  REQUEST_NAVI: 201;
  RESPONSE_NAVI: 202;
  RESPONSE_NAVI_ERROR: 203;
  RESPONSE_NAVI_TIMEOUT: 204;
}>;

/** Which transport carries the connection (seed 004's values). */
export declare const TransportType: Readonly<{ XHR_POLLING: 0; WEBSOCKET: 1 }>;

export declare const ConversationType: Readonly<{
  /** User events (read positions, settings changes): never a conversation of their own. */
  NONE: 0;
  PRIVATE: 1;
  DISCUSSION: 2;
  GROUP: 3;
  CHATROOM: 4;
  CUSTOMER_SERVICE: 5;
  SYSTEM: 6;
  APP_PUBLIC_SERVICE: 7;
  PUBLIC_SERVICE: 8;
}>;

/** The local state of a message (the lineage's values). */
export declare const SentStatus: Readonly<{
  SENDING: 10;
  FAILED: 20;
  SENT: 30;
  RECEIVED: 40;
  READ: 50;
  DESTROYED: 60;
}>;

export declare const MessageDirection: Readonly<{ SEND: 1; RECEIVE: 2 }>;

export declare const MentionedType: Readonly<{ ALL: 1; PART: 2 }>;

/** A conversation's notifications (seed 004's values). */
export declare const ConversationNotificationStatus: Readonly<{ DO_NOT_DISTURB: 0; NOTIFY: 1 }>;

/**
 * Every code the server or the SDK reports: the server's codes (docs/protocol.md, "Errors"),
 * under seed 004's names where the seed has the same number and meaning; negative, 30xxx and
 * 33xxx codes are the SDK's own.
 */
export declare const ErrorCode: Readonly<{
  SUCCESS: 0;
  TIMEOUT: -1;
  UNKNOWN: -2;
  PARAMETER_ERROR: -3;
  RC_NET_CHANNEL_INVALID: 30001;
  RC_NET_UNAVAILABLE: 30002;
  RC_MSG_RESP_TIMEOUT: 30003;
  RC_HTTP_SEND_FAIL: 30004;
  RC_HTTP_REQ_TIMEOUT: 30005;
  RC_HTTP_RECV_FAIL: 30006;
  RC_NAVI_RESOURCE_ERROR: 30007;
  RC_NODE_NOT_FOUND: 30008;
  RC_SOCKET_NOT_CREATED: 30010;
  RC_SOCKET_DISCONNECTED: 30011;
  RC_PING_SEND_FAIL: 30012;
  RC_PONG_RECV_FAIL: 30013;
  RC_MSG_SEND_FAIL: 30014;
  RC_CONN_ACK_TIMEOUT: 31000;
  RC_QUERY_ACK_NO_DATA: 32001;
  RC_CONN_SERVER_UNAVAILABLE: 31003;
  BIZ_ERROR_CLIENT_NOT_INIT: 33001;
  BIZ_ERROR_INVALID_PARAMETER: 33003;
  BIZ_ERROR_NO_CHANNEL: 33004;
  BIZ_ERROR_CONNECTING: 33006;
  REJECTED_BY_BLACKLIST: 405;
  RC_MSG_UNAUTHORIZED: 20406;
  RC_DISCUSSION_GROUP_ID_INVALID: 20407;
  SEND_FREQUENCY_TOO_FAST: 20604;
  NOT_IN_GROUP: 22406;
  FORBIDDEN_IN_GROUP: 22408;
  JOIN_IN_DISCUSSION: 21407;
  SENSITIVE_SHIELD: 21501;
  SENSITIVE_REPLACE: 21502;
  NOT_IN_CHATROOM: 23406;
  FORBIDDEN_IN_CHATROOM: 23408;
  RC_CHATROOM_USER_KICKED: 23409;
  RC_CHATROOM_NOT_EXIST: 23410;
  RC_CHATROOM_IS_FULL: 23411;
  RC_CHATROOM_PATAMETER_INVALID: 23412;
  CHATROOM_KV_EXCEED: 23423;
  CHATROOM_KV_OVERWRITE_INVALID: 23424;
  CHATROOM_KEY_NOT_EXIST: 23427;
  GROUP_DISMISSED: 35001;
  RC_CONN_PROTO_VERSION_ERROR: 31001;
  RC_CONN_USER_OR_PASSWD_ERROR: 31004;
  RC_CONN_NOT_AUTHRORIZED: 31005;
  RC_CONN_USER_BLOCKED: 31009;
  RC_DISCONN_KICK: 31010;
  RC_DISCONN_EXCEPTION: 31011;
  TOKEN_EXPIRED: 31020;
  TOKEN_REVOKED: 31021;
  MALFORMED_FRAME: 40001;
  UNKNOWN_FRAME_KIND: 40002;
  FRAME_TOO_LARGE: 40003;
  CONNECT_NOT_FIRST: 40004;
  ALREADY_CONNECTED: 40005;
  CONTENT_EMPTY: 40006;
  CONTENT_TOO_LARGE: 40007;
  CONTENT_INVALID: 40008;
  CONVERSATION_TYPE_UNSUPPORTED: 40009;
  CLIENT_MSG_ID_CONFLICT: 40010;
  INVALID_TARGET_ID: 40011;
  INVALID_MESSAGE_TYPE: 40012;
  INVALID_CLIENT_MSG_ID: 40013;
  INVALID_DEVICE_ID: 40014;
  INVALID_QUERY: 40015;
  FRAME_NOT_ACCEPTED: 40016;
  MESSAGE_NOT_FOUND: 40017;
  NOT_MESSAGE_SENDER: 40018;
  RECALL_WINDOW_PASSED: 40019;
  MESSAGE_RECALLED: 40020;
  GROUP_EXISTS: 40021;
  GROUP_FULL: 40022;
  INVALID_MENTIONS: 40023;
  REJECTED_BY_APP_SERVER: 40024;
  REWRITTEN_BY_APP_SERVER: 40025;
  MODERATION_UNAVAILABLE: 40026;
  CHATROOM_EXISTS: 40027;
  CHATROOM_OVERLOADED: 40028;
  INVALID_PUSH_SUBSCRIPTION: 40029;
  PUSH_DISABLED: 40030;
  CHATROOM_JOINED_ELSEWHERE: 40031;
  CONTENT_TOO_DEEP: 40032;
  TOO_MANY_SESSIONS: 40034;
  HEARTBEAT_TIMEOUT: 41001;
  SLOW_CONSUMER: 41002;
  SERVER_SHUTTING_DOWN: 41003;
  HANDSHAKE_TIMEOUT: 41004;
  CLIENT_DISCONNECTED: 41005;
  SERVER_FULL: 41006;
  UNAUTHENTICATED_EVICTED: 41007;
  KICKED_BY_OPERATOR: 41008;
  SIGNATURE_MISSING: 42001;
  SIGNATURE_INVALID: 42002;
  TIMESTAMP_OUT_OF_WINDOW: 42003;
  NONCE_REUSED: 42004;
  APP_KEY_UNKNOWN: 42005;
  INVALID_USER_ID: 42006;
  BAD_REQUEST: 42007;
  NOT_FOUND: 42008;
  POLL_SESSION_UNKNOWN: 42009;
  REQUEST_TIMEOUT: 42015;
}>;

/** The name of a code in `ErrorCode`. */
export declare function errorName(code: number): string | undefined;

/** What every rejected Promise of the SDK carries. */
export declare class TidingsError extends Error {
  constructor(code: number, message?: string, serverCode?: number);
  /** A code of `ErrorCode`: the server's, or the seed's equivalent. */
  code: number;
  /** The server's own code, where it differs from `code` (41003 on a CONNACK is 31003). */
  serverCode: number;
}

// ------------------------------------------------------------------ message contents

export interface UserInfo {
  id?: string;
  name?: string;
  portrait?: string;
}

/** Seed 004's mention object. */
export interface MentionedInfo {
  /** `MentionedType.ALL` (1) or `PART` (2). */
  type: number;
  userIdList: string[];
}

/** The base of every message content. */
export declare class MessageContent {
  /** The protocol's `msgType`. */
  static objectName: string;
  /** The class name, as `message.messageType` reports it. */
  static messageType: string;
  /** Whether the message raises the recipient's unread count (app-defined types). */
  static isCounted: boolean;
  /** `false`: a status message, never stored. */
  static isPersited: boolean;
  constructor(data?: { extra?: string; user?: UserInfo });
  extra: string | undefined;
  user: UserInfo | undefined;
  readonly messageName: string;
  readonly objectName: string;
  /** The protocol's content object. */
  encode(): Record<string, unknown>;
  static decode(wire: Record<string, any>): MessageContent;
}

/** `text`: `{text}`. */
export declare class TextMessage extends MessageContent {
  constructor(data: { content: string; extra?: string; user?: UserInfo; mentionedInfo?: MentionedInfo });
  content: string;
  /** Mentions to send with it (group messages). */
  mentionedInfo: MentionedInfo | undefined;
  static decode(wire: Record<string, any>): TextMessage;
}

/** `image`: `{url, thumbnail?}`. */
export declare class ImageMessage extends MessageContent {
  constructor(data: { imageUri: string; content?: string; extra?: string; user?: UserInfo });
  imageUri: string;
  /** A small preview, for example base64 of a small JPEG. */
  content: string | undefined;
  static decode(wire: Record<string, any>): ImageMessage;
}

/** `file`: `{url, name, size, type?}`. */
export declare class FileMessage extends MessageContent {
  constructor(data: { fileUrl: string; name: string; size: number; type?: string; extra?: string; user?: UserInfo });
  fileUrl: string;
  name: string;
  size: number;
  type: string | undefined;
  static decode(wire: Record<string, any>): FileMessage;
}

/** `voice`: `{url, duration}` (seconds). */
export declare class VoiceMessage extends MessageContent {
  constructor(data: { remoteUrl: string; duration: number; type?: string; extra?: string; user?: UserInfo });
  remoteUrl: string;
  duration: number;
  type: string | undefined;
  static decode(wire: Record<string, any>): VoiceMessage;
}

/** `location`: `{lat, lng, name?, thumbnail?}`. */
export declare class LocationMessage extends MessageContent {
  constructor(data: {
    latitude: number;
    longitude: number;
    poi?: string;
    content?: string;
    extra?: string;
    user?: UserInfo;
  });
  latitude: number;
  longitude: number;
  poi: string | undefined;
  content: string | undefined;
  static decode(wire: Record<string, any>): LocationMessage;
}

/** `rich`: `{title, content?, imageUri?, url?}`. */
export declare class RichContentMessage extends MessageContent {
  constructor(data: { title: string; content?: string; imageUri?: string; url?: string; extra?: string; user?: UserInfo });
  title: string;
  content: string | undefined;
  imageUri: string | undefined;
  url: string | undefined;
  static decode(wire: Record<string, any>): RichContentMessage;
}

/** `typing`: a status message, never stored. */
export declare class TypingStatusMessage extends MessageContent {
  constructor(data?: { typingContentType?: string; data?: string });
  typingContentType: string;
  data: string | undefined;
  static decode(wire: Record<string, any>): TypingStatusMessage;
}

/** `tidings:recall`: the event a recall adds to the conversation. */
export declare class RecallCommandMessage extends MessageContent {
  constructor(data: { seq: number });
  /** The conversation seq of the recalled message. */
  seq: number;
  static decode(wire: Record<string, any>): RecallCommandMessage;
}

/** A content of a type this SDK does not know. */
export declare class UnknownMessage extends MessageContent {
  constructor(data: { objectName: string; content: unknown });
  unknownObjectName: string;
  /** The content as it came: a parsed JSON object, or the text if it did not parse. */
  content: unknown;
}

/** Seed 004's message tag. */
export declare class MessageTag {
  constructor(isCounted: boolean, isPersited: boolean);
  isCounted: boolean;
  isPersited: boolean;
}

/** A content of a registered app-defined type. */
export declare class RegisteredMessage extends MessageContent {
  static propNames: string[];
  constructor(data?: Record<string, unknown>);
  /** The content's fields (also set on the instance itself). */
  fields: Record<string, unknown>;
}

/**
 * Registers an app-defined message type; answers its class (also in `RegisteredMessages`).
 * `objectName` is the protocol's `msgType`: 1–32 of `A-Za-z0-9_-.:`, not `tidings:…`, not a
 * built-in type.
 */
export declare function registerMessageType(
  messageType: string,
  objectName: string,
  messageTag?: MessageTag | { isCounted?: boolean; isPersited?: boolean },
  propNames?: string[],
): typeof RegisteredMessage;

export declare const RegisteredMessages: Record<string, typeof RegisteredMessage>;

// ------------------------------------------------------------------ messages and conversations

export interface Reaction {
  emoji: string;
  userIds: string[];
}

/** A message as this user sees it. */
export interface Message {
  /** The server's id (a ULID); empty while sending. */
  messageUId: string;
  /** The sender's id for it, which deduplicates resends. */
  clientMsgId: string;
  conversationType: number;
  /** The conversation as this user sees it: for a private chat, the other user. */
  targetId: string;
  senderUserId: string;
  /** Position in the conversation (0 while sending, and for status messages). */
  seq: number;
  /** Position in this user's inbox (0 for history and status messages). */
  inboxSeq: number;
  /** The server's commit time (ms); while sending, the estimated server time. */
  sentTime: number;
  /** This client's clock when it got the message (ms). */
  receivedTime: number;
  /** The protocol's `msgType`. */
  objectName: string;
  /** The content's class name (`TextMessage`, …, `UnknownMessage`). */
  messageType: string;
  content: MessageContent;
  pushContent: string;
  /** `MessageDirection`. */
  messageDirection: number;
  /** `SentStatus`. */
  sentStatus: number;
  /** It came by sync: it was sent while this client was away. */
  offLineMessage: boolean;
  isRecalled: boolean;
  isEdited: boolean;
  reactions: Reaction[];
  mentionedInfo: MentionedInfo | null;
  directedUserIds: string[];
  /** For a sent message the server changed: 21502 (words replaced) or 40025 (rewritten). */
  notice?: number;
}

/** One conversation as this user sees it. */
export interface Conversation {
  conversationType: number;
  targetId: string;
  /** The newest message a person sees: never a recall, edit or reaction event; `isRecalled` once recalled. */
  latestMessage: Message | null;
  latestMessageId: string;
  objectName: string;
  sentTime: number;
  sentStatus: number;
  unreadMessageCount: number;
  /** Unread messages that mention this user. */
  mentionedCount: number;
  /** Read up to this conversation seq. */
  readSeq: number;
  /** History cleared up to this seq. */
  clearedSeq: number;
  /** Private chats: the other user has read up to this seq, as their read receipts told (0 otherwise). */
  peerReadSeq: number;
  /** Pinned. */
  isTop: boolean;
  isMuted: boolean;
  /** Only in `conversation` events: the conversation left the list. */
  removed?: boolean;
}

export interface TypingStatus {
  conversationType: number;
  targetId: string;
  /** Who is typing. */
  userId: string;
  typingContentType: string;
  sentTime: number;
}

export interface ReadReceipt {
  conversationType: number;
  /** The user who read. */
  targetId: string;
  /** They have read up to this conversation seq. */
  readSeq: number;
}

export interface MessagesDeleted {
  conversationType: number;
  targetId: string;
  seqs: number[];
}

export interface Presence {
  userId: string;
  online: boolean;
  lastSeen: number;
}

/** Another user's public profile (`getUsers`). */
export interface UserProfile {
  userId: string;
  /** Empty if never set. */
  name: string;
  /** A link to the user's picture; empty if never set. */
  portrait: string;
}

// ------------------------------------------------------------------ storage

/** The synchronous subset of the Web Storage API: `localStorage` is one as it is. */
export interface StorageProvider {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Items in memory: lost with the page, shared by the clients given the same instance. */
export declare class MemoryStorage implements StorageProvider {
  constructor();
  items: Map<string, string>;
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Items in a Web Storage object (`localStorage` by default); what it refuses stays in memory. */
export declare class LocalStorageProvider implements StorageProvider {
  constructor(storage?: StorageProvider);
  storage: StorageProvider;
  fallback: MemoryStorage;
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** `localStorage` when there is one, else memory. */
export declare function defaultStorage(): StorageProvider;

// ------------------------------------------------------------------ the client

/** A server node's endpoints, as `GET /navi` lists them. */
export interface ServerNode {
  ws: string;
  poll: string;
  http: string;
}

export type TransportMode = 'auto' | 'websocket' | 'polling';

export interface InitOptions {
  /** The navigation URL (`https://chat.example.com` or its `/navi`); in a browser, the page's origin by default. */
  navi?: string;
  /** Nodes to connect to without navigation: base URLs, or `{ws, poll, http}` objects. */
  servers?: (string | Partial<ServerNode>)[];
  /** A WebSocket constructor: the global one by default (in Node, the `ws` package's); `null`: long-polling only. */
  WebSocket?: unknown;
  fetch?: typeof fetch;
  /** `localStorage` when there is one, else memory. */
  storage?: StorageProvider;
  /** Delays between reconnect attempts (ms); the last repeats. Default `[100, 1000, 3000, 6000, 10000]`. */
  reconnectRates?: number[];
  /** `auto` (default): WebSocket, falling back to long-polling after `websocketAttempts` failures. */
  transport?: TransportMode;
  /** A stable id for this device; by default one generated and kept in the storage. */
  deviceId?: string;
  platform?: string;
  /** Reconnect by itself after a connection is lost (default true). */
  autoReconnect?: boolean;
  /** Failed WebSocket attempts in a row before `auto` falls back (default 2). */
  websocketAttempts?: number;
  connectTimeoutMs?: number;
  naviTimeoutMs?: number;
  /** How long a send waits for its answer, across reconnects (30 s). */
  sendTimeoutMs?: number;
  queryTimeoutMs?: number;
  /** Inbox entries per sync page (1–500; 100). */
  syncPageSize?: number;
  /** A sync runs this often while connected (180 s). */
  syncIntervalMs?: number;
  /** How long a poll waits (the navigation's, else 25 s). */
  pollWaitMs?: number;
  /** Acknowledge messages as they are presented (default true); else call `acknowledge`. */
  autoAck?: boolean;
}

export interface Callback<T = unknown> {
  onSuccess?: (value: T, extra?: any) => void;
  onError?: (code: number, error: TidingsError) => void;
}

export interface ConnectCallback {
  onSuccess?: (userId: string) => void;
  /** The token was refused (31004, 31005, 31020, 31021). */
  onTokenIncorrect?: () => void;
  onError?: (code: number, error: TidingsError) => void;
}

export interface StatusDetail {
  code: number;
  message: string;
}

export interface ConnectionStatusListener {
  onChanged(status: number, detail?: StatusDetail): void;
}

export interface ReceiveMessageListener {
  onReceived(message: Message): void;
}

export interface ReconnectConfig {
  /** Attempt once per delay of `rate` (default false: one attempt now). */
  auto?: boolean;
  rate?: number[];
}

export interface SendOptions {
  /** The text of push notifications (at most 512 bytes). */
  pushContent?: string;
  /** Data for the app carried by its push notifications (at most 1,024 bytes). */
  pushData?: string;
  /** Group messages: whom it mentions (or the content's `mentionedInfo`). */
  mentionedInfo?: MentionedInfo;
  mentionedUserIds?: string[];
  mentionAll?: boolean;
  /** Group messages: a directed message to these members only. */
  userIds?: string[];
  /** A status message: never stored, at most once. */
  isStatus?: boolean;
  /** Resend a message with the id it had. */
  clientMsgId?: string;
  /** Chatroom messages. */
  priority?: 'NORMAL' | 'LOW';
  /** Called with the local message (status SENDING) before it goes out. */
  onBefore?: (message: Message) => void;
  onSuccess?: (message: Message) => void;
  onError?: (code: number, error: TidingsError) => void;
}

export interface HistoryOptions {
  beforeSeq?: number;
  afterSeq?: number;
  /** ms */
  beforeTime?: number;
  /** ms */
  afterTime?: number;
  /** 1–100 (20) */
  count?: number;
}

export interface HistoryPage {
  /** Oldest first. */
  messages: Message[];
  /** More exist beyond the page, in the direction read. */
  hasMore: boolean;
}

export interface ConversationPage {
  conversations: Conversation[];
  /** Empty on the last page. */
  nextPageToken: string;
  version: number;
}

export interface ConversationUpdate {
  readSeq?: number;
  readTime?: number;
  pinned?: boolean;
  muted?: boolean;
  remove?: boolean;
  clearBeforeTime?: number;
  /** No read receipt. */
  silent?: boolean;
}

/** A chatroom's profile and state. */
export interface Chatroom {
  chatroomId: string;
  name: string;
  /** App-defined JSON object as text, or empty. */
  extra: string;
  createdTime: number;
  /** Users with a connection in the room now. */
  memberCount: number;
  maxMembers: number;
  /** The whole room (ms; 0: not muted). */
  mutedUntil: number;
  /** The room's newest seq when read. */
  seq: number;
  /** Created by the app server, not by a first join. */
  kept: boolean;
}

export interface ChatroomJoined {
  chatroom: Chatroom;
  /** The recent messages asked for, oldest first (also presented as `message` events). */
  messages: Message[];
}

export interface ChatroomInfo {
  chatroom: Chatroom;
  /** Seed 004's names: the member count, and the page of members. */
  userTotalNums: number;
  userInfos: { id: string; time: number }[];
  members: Member[];
}

export interface ChatroomEntry {
  key: string;
  value: string;
  /** Who set it last. */
  userId: string;
  updatedTime: number;
  /** Removed when that user leaves the room. */
  autoDelete: boolean;
}

export interface ChatroomEntryInput {
  key: string;
  value: string;
  /** Removed when this user leaves the room (seed 004's name). */
  isAutoDelete?: boolean;
  autoDelete?: boolean;
}

export interface ChatroomNotice {
  type: 'notice';
  chatroomId: string;
  seq: number;
  /** `join`, `leave`, `kick`, `mute`, `unmute`, `entry`, `entry-remove` or `destroy`. */
  operation: string;
  /** Empty: the server or the app server. */
  operatorId: string;
  userIds: string[];
  count: number;
  key?: string;
  value?: string;
  until: number;
  all: boolean;
}

/** Items of a room dropped for this connection: `count`, with seqs from `fromSeq` to `toSeq`. */
export interface ChatroomGap {
  type: 'gap';
  chatroomId: string;
  count: number;
  fromSeq: number;
  toSeq: number;
}

/** Out of a room: kicked (23409), the room destroyed (23410), or a rejoin refused (its code). */
export interface ChatroomLeft {
  type: 'left';
  chatroomId: string;
  code: number;
}

export type ChatroomEvent = ChatroomNotice | ChatroomGap | ChatroomLeft;

export interface Group {
  groupId: string;
  name: string;
  portrait: string;
  /** App-defined JSON object as text, or empty. */
  extra: string;
  ownerId: string;
  createdTime: number;
  /** 0 while it lives. */
  dismissedTime: number;
  mutedUntil: number;
  memberCount: number;
  /** Who makes and manages it: the app server (`managed`), a user naming it when connecting (`open`), or its members (`discussion`). */
  kind: 'managed' | 'open' | 'discussion' | (string & {});
  /** A discussion: whether any member may add members (true) or only its owner. */
  inviteOpen: boolean;
}

/** A member of a group or a chatroom. */
export interface Member {
  userId: string;
  joinedTime: number;
  mutedUntil: number;
}

export interface MembersPage {
  members: Member[];
  /** Empty on the last page. */
  nextPageToken: string;
}

export interface GroupReadReceipt {
  readUserIds: string[];
  unreadUserIds: string[];
  readCount: number;
  unreadCount: number;
}

export interface SearchOptions {
  /** With `targetId`: one conversation (PRIVATE by default). */
  conversationType?: number;
  targetId?: string;
  /** 1–100 (20). */
  count?: number;
  pageToken?: string;
}

export interface SearchPage {
  /** Newest first. */
  messages: Message[];
  /** Empty on the last page. */
  nextPageToken: string;
}

/** A browser's `PushSubscription`, or what its `toJSON()` gives. */
export interface PushSubscriptionLike {
  endpoint?: string | null;
  keys?: Record<string, string>;
  toJSON?: () => unknown;
}

export interface PushToken {
  provider: 'fcm' | 'apns';
  /** FCM: the registration token; APNs: the device token, hex. */
  token: string;
  /** The app's bundle id (APNs topic) or package name; default: the server's. */
  appId?: string;
  /** APNs: a development build's token. */
  sandbox?: boolean;
  /** The device's language, a BCP 47 tag. */
  locale?: string;
}

export interface QuietHours {
  /** Minutes after midnight UTC. */
  startMinute: number;
  /** 0: none. */
  minutes: number;
}

export interface MessageRef {
  conversationType: number;
  targetId: string;
  seq: number;
}

export interface Upload {
  file: { id: string; kind: string; type: string; name: string; size: number; created: number; width?: number; height?: number };
  /** A link that expires at `expiresAt` (after the server's maximum link lifetime, 7 days by default). */
  url: string;
  thumbnailUrl?: string;
  /** Seconds since the epoch. */
  expiresAt: number;
}

export interface FileUrl {
  url: string;
  /** The same as `url` (seed 004's name). */
  downloadUrl: string;
  thumbnailUrl?: string;
  /** Seconds since the epoch. */
  expiresAt: number;
}

export interface ClientStats {
  /** Entries dropped because they had been presented already. */
  duplicatesDropped: number;
  /** Entries the server resent with the dup flag. */
  dupFlagged: number;
  reconnects: number;
  /** Sends written again after a reconnect. */
  resentPublishes: number;
}

export interface ClientEvents {
  message: (message: Message) => void;
  status: (status: number, detail?: StatusDetail) => void;
  /** A conversation of the cache after it changed (a message, or a settings change on any device). */
  conversation: (conversation: Conversation) => void;
  typing: (status: TypingStatus) => void;
  readReceipt: (receipt: ReadReceipt) => void;
  messagesDeleted: (deleted: MessagesDeleted) => void;
  quietHours: (hours: { startMinute: number; minutes: number }) => void;
  presence: (presence: Presence) => void;
  /** A chatroom's notice or gap marker, or this client being out of a room (its messages are `message` events). */
  chatroom: (event: ChatroomEvent) => void;
  transport: (transport: 'websocket' | 'polling') => void;
  /** A message this client sends changed its `sentStatus`. */
  sentStatus: (message: Message) => void;
  /** An error a listener threw. */
  error: (error: unknown) => void;
}

export declare class TidingsClient {
  /** Makes the default instance (seed 004's `RongIMClient.init`). */
  static init(appKey: string, options?: InitOptions): TidingsClient;
  static getInstance(): TidingsClient;
  static connect(token: string, callback?: ConnectCallback): Promise<string>;
  static setConnectionStatusListener(listener: ConnectionStatusListener): void;
  static setOnReceiveMessageListener(listener: ReceiveMessageListener): void;
  static reconnect(callbackOrConfig?: ConnectCallback | ReconnectConfig, config?: ReconnectConfig): Promise<string>;
  static registerMessageType: typeof registerMessageType;

  init(appKey: string, options?: InitOptions): this;
  setConnectionStatusListener(listener: ConnectionStatusListener): void;
  setOnReceiveMessageListener(listener: ReceiveMessageListener): void;
  on<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): () => void;
  off<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): void;

  /** Connects and authenticates; resolves with the user id. */
  connect(token: string, callback?: ConnectCallback): Promise<string>;
  /** Says goodbye and stops; sends still waiting fail. */
  disconnect(): Promise<void>;
  /** Without `auto`, one attempt now; with it, one per delay of `rate`. */
  reconnect(callbackOrConfig?: ConnectCallback | ReconnectConfig, config?: ReconnectConfig): Promise<string>;
  getCurrentUserId(): string;
  getCurrentConnectionStatus(): number;
  /** `TransportType.WEBSOCKET` or `XHR_POLLING`: the transport in use, or to be used next. */
  getTransportType(): number;
  readonly transport: 'websocket' | 'polling';
  readonly deviceId: string;
  /** Server time minus this clock (ms). */
  getDeltaTime(): number;
  /** The server's clock now, as estimated (ms). */
  getServerTime(): number;
  readonly stats: ClientStats;
  /** The highest inbox seq presented with nothing missing below (null before a connection). */
  readonly cursor: number | null;

  /** Resolves with the message as stored once the server committed it; rejects with its code. */
  sendMessage(
    conversationType: number,
    targetId: string,
    content: MessageContent,
    options?: SendOptions,
  ): Promise<Message>;
  /** Sends a failed message again with the client message id it had. */
  resendMessage(message: Message, options?: SendOptions): Promise<Message>;
  /** A typing status (at most once; dropped when not connected: answers false). */
  sendTypingStatusMessage(conversationType: number, targetId: string, typingContentType?: string): boolean;
  /** Acknowledges an entry (with `autoAck: false`). */
  acknowledge(inboxSeq: number): void;
  /** Pulls what the inbox holds past the cursor now. */
  sync(): Promise<void>;
  /** A raw QUERY: resolves with its QUERYACK, or rejects with the refusal. */
  query(body: Record<string, unknown>): Promise<Record<string, any>>;

  getConversationList(types?: number[] | null, count?: number): Promise<Conversation[]>;
  getConversationList(callback: Callback<Conversation[]>, types?: number[] | null, count?: number): Promise<Conversation[]>;
  getConversationPage(page?: { types?: number[]; limit?: number; pageToken?: string }): Promise<ConversationPage>;
  getConversation(conversationType: number, targetId: string, callback?: Callback<Conversation | null>): Promise<Conversation | null>;
  updateConversation(conversationType: number, targetId: string, change: ConversationUpdate): Promise<Conversation | null>;
  removeConversation(conversationType: number, targetId: string, callback?: Callback<boolean>): Promise<boolean>;
  clearConversations(types?: number[] | null): Promise<number>;
  clearConversations(callback: Callback<number>, types?: number[] | null): Promise<number>;
  clearUnreadCount(conversationType: number, targetId: string, callback?: Callback<boolean>): Promise<boolean>;
  setReadPosition(conversationType: number, targetId: string, seq: number, options?: { silent?: boolean }): Promise<Conversation | null>;
  setConversationToTop(conversationType: number, targetId: string, isTop: boolean, callback?: Callback<Conversation | null>): Promise<Conversation | null>;
  getTotalUnreadCount(callback?: Callback<number>, types?: number[]): Promise<number>;
  getTotalUnreadCount(types: number[]): Promise<number>;
  getConversationUnreadCount(types: number[], callback?: Callback<number>): Promise<number>;
  getUnreadCount(conversationType: number, targetId: string, callback?: Callback<number>): Promise<number>;
  getHistoryMessages(
    conversationType: number,
    targetId: string,
    timestampOrOptions?: number | HistoryOptions | null,
    count?: number,
    callback?: Callback<Message[]>,
  ): Promise<HistoryPage>;
  getRemoteHistoryMessages(
    params: { conversationType: number; targetId: string; timestamp?: number; count?: number },
    callback?: Callback<Message[]>,
  ): Promise<HistoryPage>;
  clearRemoteHistoryMessages(
    params: { conversationType: number; targetId: string; timestamp: number },
    callback?: Callback<boolean>,
  ): Promise<boolean>;
  deleteRemoteMessages(
    conversationType: number,
    targetId: string,
    messages: (number | Message)[],
    callback?: Callback<boolean>,
  ): Promise<boolean>;
  recallMessage(
    message: Message | { conversationType: number; targetId: string; seq: number },
    callback?: Callback<Message>,
  ): Promise<Message>;
  sendRecallMessage(
    message: Message | { conversationType: number; targetId: string; seq: number },
    callback?: Callback<Message>,
  ): Promise<Message>;
  /** The conversation list as this client last knew it, from the storage's cache. */
  getCachedConversationList(): Conversation[];

  joinChatRoom(roomId: string, recentCount?: number, callback?: Callback<ChatroomJoined>): Promise<ChatroomJoined>;
  quitChatRoom(roomId: string, callback?: Callback<Chatroom>): Promise<Chatroom>;
  getChatRoomInfo(roomId: string, options?: { count?: number; order?: number }, callback?: Callback<ChatroomInfo>): Promise<ChatroomInfo>;
  getChatRoomHistoryMessages(roomId: string, countOrOptions?: number | HistoryOptions, callback?: Callback<Message[]>): Promise<HistoryPage>;
  setChatroomEntry(roomId: string, entry: ChatroomEntryInput, callback?: Callback<ChatroomEntry>): Promise<ChatroomEntry>;
  forceSetChatroomEntry(roomId: string, entry: ChatroomEntryInput, callback?: Callback<ChatroomEntry>): Promise<ChatroomEntry>;
  removeChatroomEntry(roomId: string, key: string | { key: string }, callback?: Callback<boolean>): Promise<boolean>;
  forceRemoveChatroomEntry(roomId: string, key: string | { key: string }, callback?: Callback<boolean>): Promise<boolean>;
  getChatroomEntry(roomId: string, key: string, callback?: Callback<string | null>): Promise<string | null>;
  getAllChatroomEntries(roomId: string, callback?: Callback<Record<string, string>>): Promise<Record<string, string>>;
  getChatroomEntries(roomId: string, keys?: string[]): Promise<ChatroomEntry[]>;
  /** The rooms this client is in (and joins again after a reconnect). */
  readonly chatrooms: string[];

  getGroupInfo(groupId: string, callback?: Callback<Group>): Promise<Group>;
  getGroupMembers(groupId: string, page?: { count?: number; pageToken?: string }, callback?: Callback<MembersPage>): Promise<MembersPage>;
  quitGroup(groupId: string, callback?: Callback<Group>): Promise<Group>;
  getGroupList(callback?: Callback<Group[]>): Promise<Group[]>;
  getGroupMessageReadReceipt(groupId: string, seqOrMessage: number | Message, callback?: Callback<GroupReadReceipt>): Promise<GroupReadReceipt>;
  /** Makes a discussion owned by this user with these other members; resolves with it (its id chosen by the server). */
  createDiscussion(name: string, userIds: string[], callback?: Callback<Group>): Promise<Group>;
  /** Any member while its invitations are open, else its owner (21407); members already in are skipped. */
  addDiscussionMembers(groupId: string, userIds: string[], callback?: Callback<Group>): Promise<Group>;
  /** Its owner only (20406); a non-member named changes nothing. */
  removeDiscussionMember(groupId: string, userId: string, callback?: Callback<Group>): Promise<Group>;
  /** `name`: any member; `inviteOpen`: its owner only (20406). At least one of them. */
  updateDiscussion(groupId: string, change: { name?: string; inviteOpen?: boolean }, callback?: Callback<Group>): Promise<Group>;

  searchMessages(keyword: string, options?: SearchOptions, callback?: Callback<SearchPage>): Promise<SearchPage>;
  editMessage(message: Message | MessageRef, content: MessageContent, callback?: Callback<Message>): Promise<Message>;
  addReaction(message: Message | MessageRef, emoji: string, callback?: Callback<Message>): Promise<Message>;
  removeReaction(message: Message | MessageRef, emoji: string, callback?: Callback<Message>): Promise<Message>;

  addToBlacklist(userId: string, callback?: Callback<boolean>): Promise<boolean>;
  removeFromBlacklist(userId: string, callback?: Callback<boolean>): Promise<boolean>;
  getBlacklist(callback?: Callback<string[]>): Promise<string[]>;
  getBlacklistStatus(userId: string, callback?: Callback<boolean>): Promise<boolean>;
  subscribeUserStatus(userIds: string[], callback?: Callback<Presence[]>): Promise<Presence[]>;
  getUserStatus(userIds: string | string[], callback?: Callback<Presence[]>): Promise<Presence[]>;
  getUsers(userIds: string | string[], callback?: Callback<UserProfile[]>): Promise<UserProfile[]>;
  /** `start`: minutes after midnight UTC, or `HH:MM` (UTC). */
  setNotificationQuietHours(start: number | string, minutes: number, callback?: Callback<QuietHours>): Promise<QuietHours>;
  getNotificationQuietHours(callback?: Callback<QuietHours>): Promise<QuietHours>;
  removeNotificationQuietHours(callback?: Callback<boolean>): Promise<boolean>;
  /** Registers a Web Push subscription (a `PushSubscription`, or its `toJSON()`); resolves with the server's VAPID public key. */
  registerPush(subscription: PushSubscriptionLike, callback?: Callback<string>): Promise<string>;
  unregisterPush(endpoint: string, callback?: Callback<boolean>): Promise<boolean>;
  /** Registers a native FCM or APNs token for this device (hybrid apps). */
  registerPushToken(token: PushToken, callback?: Callback<boolean>): Promise<boolean>;
  unregisterPushToken(provider: 'fcm' | 'apns', token: string, callback?: Callback<boolean>): Promise<boolean>;
  /**
   * Uploads this device's MLS key packages (TLS-serialized `MLSMessage`s; at most 100); with
   * `replace`, the device's earlier ones go first. Resolves with how many one-time key packages
   * the device has in the directory (upload none to just ask). `E2ee.publish` does this.
   */
  publishKeyPackages(keyPackages: Uint8Array[], replace?: boolean): Promise<number>;
  /** Claims one key package of each device of each user named (1–10), but the devices in `except` (`user:device`). */
  claimKeyPackages(userIds: string[], except?: string[]): Promise<ClaimedKeyPackage[]>;
  /** While `background` is true, this device gets push notifications as if it were not connected. */
  setAppState(background: boolean, callback?: Callback<boolean>): Promise<boolean>;
  setConversationNotificationStatus(conversationType: number, targetId: string, status: number, callback?: Callback<number>): Promise<number>;
  getConversationNotificationStatus(conversationType: number, targetId: string, callback?: Callback<number>): Promise<number>;

  /** Drafts, kept in the storage per user and conversation (synchronous; after `connect`). */
  saveTextMessageDraft(conversationType: number, targetId: string, text: string): boolean;
  getTextMessageDraft(conversationType: number, targetId: string): string | null;
  clearTextMessageDraft(conversationType: number, targetId: string): boolean;

  /** The upload URL and the headers that authenticate it (add `?name=` and the `Content-Type`). */
  getFileToken(fileType?: number, callback?: Callback<{ url: string; headers: Record<string, string>; token: string }>): Promise<{ url: string; headers: Record<string, string>; token: string }>;
  uploadFile(data: Blob | ArrayBuffer | ArrayBufferView | string, options?: { name?: string; type?: string }, callback?: Callback<Upload>): Promise<Upload>;
  /** The uploader's call: fresh links to its own file. `file`: a file id, one of its links, or `uploadFile`'s answer. */
  getFileUrl(file: string | { file: { id: string } }, ttlSecs?: number, callback?: Callback<FileUrl>): Promise<FileUrl>;
  /** Anyone's call: fresh links to a file carried by `message`, which this user can see (42024 otherwise). */
  getFileUrl(file: string | { file: { id: string } }, message: Message | MessageRef, ttlSecs?: number, callback?: Callback<FileUrl>): Promise<FileUrl>;
}

// ------------------------------------------------------------------ end-to-end encryption

/** A key package a claim handed out (docs/e2ee.md). */
export interface ClaimedKeyPackage {
  userId: string;
  deviceId: string;
  /** The TLS-serialized `MLSMessage` the device uploaded. */
  keyPackage: Uint8Array;
  /** The device's last-resort key package, which others may have been handed too. */
  lastResort: boolean;
}

/**
 * Where a device's MLS state is kept: text entries under keys, loaded by prefix, written in
 * batches that land all together or not at all.
 */
export interface E2eeStorage {
  load(prefix: string): Promise<Array<[string, string]>>;
  /** Sets, or with `null` removes, entries. */
  write(changes: Array<[string, string | null]>): Promise<void>;
}

/** The state in memory: for tests and Node; lost with the process. */
export declare class MemoryE2eeStorage implements E2eeStorage {
  constructor();
  items: Map<string, string>;
  load(prefix: string): Promise<Array<[string, string]>>;
  write(changes: Array<[string, string | null]>): Promise<void>;
}

/** The state in IndexedDB (the browser's default): database `tidings-e2ee` unless named. */
export declare class IndexedDbE2eeStorage implements E2eeStorage {
  constructor(options?: { name?: string; indexedDB?: IDBFactory; IDBKeyRange?: typeof IDBKeyRange });
  load(prefix: string): Promise<Array<[string, string]>>;
  write(changes: Array<[string, string | null]>): Promise<void>;
}

/** The state in a Web Storage-like provider, one item per device. */
export declare class WebStorageE2eeStorage implements E2eeStorage {
  constructor(provider: StorageProvider);
  load(prefix: string): Promise<Array<[string, string]>>;
  write(changes: Array<[string, string | null]>): Promise<void>;
}

/** Why an end-to-end encrypted operation failed. */
export declare class E2eeError extends Error {
  constructor(kind: 'noDevices' | 'busy' | 'invalid', message: string);
  /**
   * `noDevices`: a user of the conversation has no device with key packages; `busy`: other
   * members kept committing first, try again; `invalid`: anything else (a key package handed
   * out for a device that it does not name, no device id, ...).
   */
  kind: 'noDevices' | 'busy' | 'invalid';
}

/** A message of an encrypted conversation, decrypted. */
export interface Decrypted {
  uid: string;
  conversationType: number;
  targetId: string;
  senderId: string;
  /** The device that sent it, as its MLS credential says. */
  senderDevice: string;
  seq: number;
  sentTime: number;
  /** The type inside the encryption (`text`, ...). */
  type: string;
  /** The content inside the encryption: a JSON object (`{"text": "hi"}`). */
  content: any;
}

/** What a message was to this device. */
export type Received =
  /** Not an `mls` message: not encrypted. */
  | { kind: 'plain' }
  | { kind: 'message'; message: Decrypted }
  /** This device joined the conversation's group from a Welcome; `keysChanged`: member devices whose signature key differs from the one this device saw before, in another conversation. */
  | { kind: 'joined'; epoch: number; keysChanged: string[] }
  /** The group changed: devices added and removed (`user:device`), and devices whose signature key differs from the one seen before (verify their safety numbers again). */
  | { kind: 'changed'; epoch: number; added: string[]; removed: string[]; keysChanged: string[] }
  /** This device was removed from the group. */
  | { kind: 'removed' }
  /** A handshake of no concern to this device, or its own message back. */
  | { kind: 'nothing' }
  /** Sent before this device joined, after it was removed, or not what the server claims. */
  | { kind: 'unreadable'; uid: string; reason: string };

/** A member device of an encrypted conversation. */
export interface MemberDevice {
  userId: string;
  deviceId: string;
  safetyNumber: string;
}

/**
 * End-to-end encryption (MLS, RFC 9420) for one device: see docs/e2ee.md. Give it every message
 * the client presents (`receive`), in order; send with `sendText` / `send`.
 */
export declare class E2ee {
  private constructor(client: TidingsClient, storage: E2eeStorage);
  /**
   * Opens this device's state (made the first time). The client must be connected, with this
   * device id (`init`'s `deviceId`). `storage`: IndexedDB in the browser, memory elsewhere,
   * unless given (an `E2eeStorage`, or a Web Storage-like provider).
   */
  static open(client: TidingsClient, options?: { deviceId?: string; storage?: E2eeStorage | StorageProvider }): Promise<E2ee>;
  /** `user:device`. */
  readonly identity: string;
  /** Tops up the key packages in the directory (to 30 when fewer than 10; a last-resort one the first time); resolves with the count there. */
  publish(): Promise<number>;
  receive(message: Message): Promise<Received>;
  sendText(conversationType: number, targetId: string, text: string): Promise<Decrypted>;
  send(conversationType: number, targetId: string, type: string, content: Record<string, unknown>): Promise<Decrypted>;
  /** Removes every device of these users from the conversation's group, in one commit. */
  removeUsers(conversationType: number, targetId: string, userIds: string[]): Promise<void>;
  /** The next send looks for devices of the conversation's users not in its group yet. */
  refreshDevices(conversationType: number, targetId: string): Promise<void>;
  members(conversationType: number, targetId: string): Promise<MemberDevice[]>;
  /** This device's safety number. */
  safetyNumber(): string;
  /** The conversation's group epoch; null when this device is not in its group. */
  epoch(conversationType: number, targetId: string): Promise<number | null>;
  /** How many times another member's commit came before one of this device's. */
  conflicts(): number;
}

/** Six groups of five digits from the SHA-256 of an Ed25519 signature public key (`tidings_mls::safety_number`). */
export declare function safetyNumber(signatureKey: Uint8Array): string;
