// Type declarations of @tidings/sdk/rong, the RongCloud-compatible entry (seed 004's RongIMLib
// and RongIMClient). Written by hand; `types/rong-conformance.ts` checks the JavaScript against
// them. See ../README.md, "RongCloud compatibility".

import type {
  ConnectionStatus,
  ConversationNotificationStatus,
  ConversationType,
  ErrorCode as NativeErrorCode,
  InitOptions,
  MentionedType,
  MessageDirection,
  SentStatus,
  StorageProvider,
  TidingsClient,
  TidingsError,
  TransportType,
  UserInfo,
} from './index.js';

export {
  ConnectionStatus,
  ConversationNotificationStatus,
  ConversationType,
  MentionedType,
  MessageDirection,
  SentStatus,
  TransportType,
};

export declare const VERSION: string;

/** Every code the entry reports: the Tidings table and every name of seed 004's. */
export declare const ErrorCode: Readonly<
  typeof NativeErrorCode & {
    RECALL_MESSAGE: 25101;
    NOT_IN_DISCUSSION: 21406;
    CHATROOM_GET_HISTORYMSG_ERROR: 23413;
    CHATROOM_NOT_OPEN_HISTORYMSG_STORE: 23414;
    CHATROOM_KV_STORE_NOT_OPEN: 23426;
    JOIN_IN_DISCUSSION: 21407;
    CREATE_DISCUSSION: 21408;
    INVITE_DICUSSION: 21409;
    GET_USERINFO_ERROR: 23407;
    RC_DOMAIN_NOT_RESOLVE: 30009;
    RC_CONN_ID_REJECT: 31002;
    RC_CONN_REDIRECTED: 31006;
    RC_CONN_PACKAGE_NAME_INVALID: 31007;
    RC_CONN_APP_BLOCKED_OR_DELETED: 31008;
    RC_MSG_DATA_INCOMPLETE: 32002;
    BIZ_ERROR_DATABASE_ERROR: 33002;
    BIZ_ERROR_RECONNECT_SUCCESS: 33005;
    MSG_INSERT_ERROR: 33008;
    MSG_DEL_ERROR: 33009;
    CONVER_REMOVE_ERROR: 34001;
    CONVER_GETLIST_ERROR: 34002;
    CONVER_SETOP_ERROR: 34003;
    CONVER_TOTAL_UNREAD_ERROR: 34004;
    CONVER_TYPE_UNREAD_ERROR: 34005;
    CONVER_ID_TYPE_UNREAD_ERROR: 34006;
    CONVER_CLEAR_ERROR: 34007;
    CLEAR_HIS_ERROR: 34010;
    CLEAR_HIS_TYPE_ERROR: 34008;
    CLEAR_HIS_TIME_ERROR: 34011;
    CONVER_GET_ERROR: 34009;
    GROUP_SYNC_ERROR: 35001;
    GROUP_MATCH_ERROR: 35002;
    CHATROOM_ID_ISNULL: 36001;
    CHARTOOM_JOIN_ERROR: 36002;
    CHATROOM_HISMESSAGE_ERROR: 36003;
    CHATROOM_KV_NOT_FOUND: 36004;
    BLACK_ADD_ERROR: 37001;
    BLACK_GETSTATUS_ERROR: 37002;
    BLACK_REMOVE_ERROR: 37003;
    DRAF_GET_ERROR: 38001;
    DRAF_SAVE_ERROR: 38002;
    DRAF_REMOVE_ERROR: 38003;
    SUBSCRIBE_ERROR: 39001;
    COOKIE_ENABLE: 51001;
    GET_MESSAGE_BY_ID_ERROR: 61001;
    HAVNODEVICEID: 24001;
    DEVICEIDISHAVE: 24002;
    FEILD: 24009;
    NULLCHANNELNAME: 24011;
    INTERNALERRROR: 24015;
    CLOSE_BEFORE_OPEN: 51001;
    ALREADY_IN_USE: 51002;
    INVALID_CHANNEL_NAME: 51003;
    DELETE_MESSAGE_ID_IS_NULL: 61001;
    REMOTE_ENGINE_UN_SUPPORTED: 16;
    REMOTE_NETWORK_ERROR: 17;
    /** The seed's function has no counterpart in Tidings. */
    NOT_SUPPORTED: -4;
    /** What the call would change is a server setting. */
    SERVER_SETTING: -5;
  }
>;

/** The seed's names this entry never reports. */
export declare const NEVER_PRODUCED: readonly string[];

export declare const ConnectionState: Readonly<{
  ACCEPTED: 0;
  UNACCEPTABLE_PAROTOCOL_VERSION: 1;
  IDENTIFIER_REJECTED: 2;
  SERVER_UNAVAILABLE: 3;
  TOKEN_INCORRECT: 4;
  NOT_AUTHORIZED: 5;
  REDIRECT: 6;
  PACKAGE_ERROR: 7;
  APP_BLOCK_OR_DELETE: 8;
  BLOCK: 9;
  TOKEN_EXPIRE: 10;
  DEVICE_ERROR: 11;
}>;
export declare const ReceivedStatus: Readonly<{ UNREAD: 0; READ: 1; LISTENED: 2; DOWNLOADED: 4; RETRIEVED: 8 }>;
export declare const DiscussionInviteStatus: Readonly<{ OPENED: 0; CLOSED: 1 }>;
export declare const BlacklistStatus: Readonly<{ IN_BLACK_LIST: 0; NOT_IN_BLACK_LIST: 1 }>;

export declare function connectErrorCode(e: TidingsError): number;
export declare function seedError(e: unknown, opCode?: number): TidingsError;

// ------------------------------------------------------------------ message classes

export declare class MentionedInfo {
  constructor(data?: { type?: number; userIdList?: string[]; mentionedContent?: string });
  type: number;
  userIdList: string[];
  mentionedContent: string | undefined;
}

export declare class MessageContent {
  static objectName: string;
  static messageName: string;
  static fields: string[];
  static isCounted: boolean;
  static isPersited: boolean;
  constructor(data?: Record<string, any>);
  messageName: string;
  extra?: string;
  user?: UserInfo;
  readonly objectName: string;
  encode(): Record<string, any>;
  toNative(): import('./index.js').MessageContent;
  [field: string]: any;
}

type ContentClass = typeof MessageContent & { obtain?: (...args: any[]) => MessageContent };

export declare class TextMessage extends MessageContent {
  static obtain(text: string): TextMessage;
}
export declare class ImageMessage extends MessageContent {
  static obtain(content: string, imageUri: string): ImageMessage;
}
export declare class HQVoiceMessage extends MessageContent {
  static obtain(remoteUrl: string, duration: number, type?: string): HQVoiceMessage;
}
export declare class VoiceMessage extends MessageContent {
  static obtain(base64: string, duration: number): VoiceMessage;
}
export declare class FileMessage extends MessageContent {
  static obtain(file: { name: string; size: number; type?: string; fileUrl: string }): FileMessage;
}
export declare class LocationMessage extends MessageContent {
  static obtain(latitude: number, longitude: number, poi?: string, content?: string): LocationMessage;
}
export declare class RichContentMessage extends MessageContent {
  static obtain(title: string, content: string, imageUri?: string, url?: string): RichContentMessage;
}
export declare class TypingStatusMessage extends MessageContent {
  static obtain(typingContentType?: string, data?: string): TypingStatusMessage;
}
export declare class RecallCommandMessage extends MessageContent {}
export declare class ReadReceiptMessage extends MessageContent {
  static obtain(messageUId: string, lastMessageSendTime: number, type?: string | number): ReadReceiptMessage;
}
export declare class UnknownMessage extends MessageContent {
  constructor(data: { objectName: string; message: unknown });
  unknownObjectName: string;
  message: unknown;
}
export declare const GIFMessage: ContentClass;
export declare const SightMessage: ContentClass;
export declare const PublicServiceRichContentMessage: ContentClass;
export declare const PublicServiceMultiRichContentMessage: ContentClass;
export declare const ContactNotificationMessage: ContentClass;
export declare const ProfileNotificationMessage: ContentClass;
export declare const CommandNotificationMessage: ContentClass;
export declare const InformationNotificationMessage: ContentClass;
export declare const GroupNotificationMessage: ContentClass;
export declare const CommandMessage: ContentClass;
export declare const PublicServiceCommandMessage: ContentClass;
export declare const ReadReceiptRequestMessage: ContentClass;
export declare const ReadReceiptResponseMessage: ContentClass;

export declare const MessageClasses: Record<string, typeof MessageContent>;
export declare const MessageType: Record<string, string>;
export declare function seedObjectName(native: string): string;
export declare function nativeObjectName(seed: string): string;
export declare function classOf(objectName: string): typeof MessageContent | undefined;
export declare function contentFromFields(objectName: string, fields: Record<string, any>): MessageContent;
export declare function fromNative(native: import('./index.js').MessageContent, nativeType: string): MessageContent;
export declare function registerMessageType(
  messageType: string,
  objectName: string,
  messageTag?: { isCounted?: boolean; isPersited?: boolean },
  propNames?: string[],
): typeof MessageContent;
export declare function searchableText(content: MessageContent): string;

// ------------------------------------------------------------------ messages and conversations

/** Seed 004's Message, with Tidings' positions. */
export interface RongMessage {
  conversationType: number;
  targetId: string;
  senderUserId: string;
  content: MessageContent;
  objectName: string;
  messageType: string;
  messageDirection: number;
  /** The local store's id (absent for messages not kept: status and chatroom messages). */
  messageId: number | undefined;
  messageUId: string;
  clientMsgId: string;
  seq: number;
  inboxSeq: number;
  sentTime: number;
  receivedTime: number;
  sentStatus: number;
  receivedStatus: number;
  offLineMessage: boolean;
  isLocalMessage: boolean;
  extra: string | undefined;
  pushContent: string;
  isRecalled: boolean;
  isEdited: boolean;
  reactions: { emoji: string; userIds: string[] }[];
  mentionedInfo: MentionedInfo | null;
  directedUserIds: string[];
  searchField?: string;
}

/** Seed 004's Conversation. */
export interface RongConversation {
  conversationType: number;
  targetId: string;
  conversationTitle: string;
  latestMessage: RongMessage | null;
  latestMessageId: string;
  objectName: string;
  sentTime: number;
  sentStatus: number;
  senderUserId: string;
  receivedStatus: number;
  receivedTime: number;
  unreadMessageCount: number;
  hasUnreadMention: boolean;
  mentionedCount: number;
  isTop: boolean;
  notificationStatus: number;
  readSeq: number;
  [local: string]: unknown;
}

// ------------------------------------------------------------------ the local store

export interface StoredMessage {
  messageId: number;
  conversationType: number;
  targetId: string;
  senderUserId: string;
  objectName: string;
  content: Record<string, any>;
  messageDirection: number;
  messageUId: string;
  clientMsgId: string;
  seq: number;
  sentTime: number;
  receivedTime: number;
  sentStatus: number;
  receivedStatus: number;
  extra?: string;
  searchField?: string;
  isLocalMessage: boolean;
}

export interface StoreFilter {
  conversationType?: number;
  targetId?: string;
  beforeTime?: number;
}

export interface MessageStore {
  add(m: Omit<StoredMessage, 'messageId'>): Promise<number>;
  put(m: StoredMessage): Promise<void>;
  get(messageId: number): Promise<StoredMessage | null>;
  getByUId(messageUId: string): Promise<StoredMessage | null>;
  remove(messageIds: number[]): Promise<number>;
  list(filter?: StoreFilter): Promise<StoredMessage[]>;
  clear(filter?: StoreFilter): Promise<number>;
}

export interface MemoryMessageStore extends MessageStore {}
export declare class MemoryMessageStore {
  constructor(options?: { limit?: number });
  limit: number;
}

export interface IndexedDBMessageStore extends MessageStore {}
export declare class IndexedDBMessageStore {
  constructor(name: string, options?: { indexedDB?: any });
  name: string;
  close(): Promise<void>;
}

// ------------------------------------------------------------------ the client

/** Seed-style callbacks: every call also answers a Promise. */
export interface Callback<T = any> {
  onSuccess?: (value: T, ...more: any[]) => void;
  onError?: (code: number, detail?: any) => void;
}

export interface RongConnectCallback {
  onSuccess?: (userId: string) => void;
  onTokenIncorrect?: () => void;
  onError?: (code: number, detail?: any) => void;
}

export interface RongInitOptions extends InitOptions {
  messageStore?: 'memory' | 'indexeddb' | MessageStore | ((appKey: string, userId: string) => MessageStore);
  indexedDB?: any;
  protobuf?: unknown;
}

export declare class RongIMClient {
  static MessageType: Record<string, string>;
  static MessageParams: Record<string, typeof MessageContent>;
  static RegisterMessage: Record<string, typeof MessageContent>;
  static init(appKey: string, providerOrOptions?: RongInitOptions | null, options?: RongInitOptions): RongIMClient;
  static getInstance(): RongIMClient;
  static connect(token: string, callbacks?: RongConnectCallback): Promise<string>;
  static reconnect(callback?: RongConnectCallback, config?: { auto?: boolean; url?: string; rate?: number[] }): Promise<string>;
  static setConnectionStatusListener(listener: { onChanged: (status: number) => void }): void;
  static setOnReceiveMessageListener(listener: { onReceived: (message: RongMessage) => void }): void;
  static registerMessageType(
    messageType: string,
    objectName: string,
    messageTag?: { isCounted?: boolean; isPersited?: boolean },
    propNames?: string[],
  ): typeof MessageContent;

  init(appKey: string, providerOrOptions?: RongInitOptions | null, options?: RongInitOptions): this;
  initApp(appKey: string, options?: RongInitOptions | null, callback?: () => void): this;
  readonly client: TidingsClient;

  // connection
  setConnectionStatusListener(listener: { onChanged: (status: number) => void }): void;
  setOnReceiveMessageListener(listener: { onReceived: (message: RongMessage) => void }): void;
  connect(token: string, callbacks?: RongConnectCallback): Promise<string>;
  reconnect(callback?: RongConnectCallback, config?: { auto?: boolean; url?: string; rate?: number[] }): Promise<string>;
  disconnect(): Promise<void>;
  logout(callback?: Callback<boolean>): Promise<boolean>;
  getCurrentConnectionStatus(): number;
  getConnectionChannel(): number;
  getStorageProvider(): StorageProvider;
  getCurrentUserId(): string;
  getDeltaTime(): number;
  getPullSetting(callback?: Callback): Promise<{ pullOnConnect: boolean; syncIntervalMs: number; syncPageSize: number; offlineMessageDuration: null }>;
  setOfflineMessageDuration(duration: number, callback?: Callback): Promise<never>;
  getAppInfo(callback?: Callback): Promise<{ appKey: string; server: string; deviceId: string; transport: string }>;
  getSDKInfo(callback?: Callback): Promise<{ name: string; version: string; compatibleWith: string }>;
  setDeviceInfo(device: { id?: string; [k: string]: unknown }, callback?: Callback): Promise<Record<string, unknown>>;
  setFilterMessages(objectNames: string[]): void;

  // not in Tidings: fail with NOT_SUPPORTED
  startCustomService(...args: any[]): Promise<never>;
  stopCustomeService(...args: any[]): Promise<never>;
  switchToHumanMode(...args: any[]): Promise<never>;
  evaluateRebotCustomService(...args: any[]): Promise<never>;
  evaluateHumanCustomService(...args: any[]): Promise<never>;
  getAgoraDynamicKey(...args: any[]): Promise<never>;

  // the local store
  getMessage(messageId: number, callback?: Callback<RongMessage>): Promise<RongMessage>;
  insertMessage(conversationType: number, targetId: string, content: MessageContent | Partial<RongMessage>, callback?: Callback<RongMessage>): Promise<RongMessage>;
  sendLocalMessage(message: RongMessage, callback?: Callback<RongMessage>): Promise<RongMessage>;
  updateMessage(message: Partial<RongMessage> & { messageId: number }, callback?: Callback<boolean>): Promise<boolean>;
  deleteLocalMessages(conversationType: number, targetId: string, messageIds: number[], callback?: Callback<boolean>): Promise<boolean>;
  deleteMessages(conversationType: number, targetId: string, messages: (number | string | Partial<RongMessage>)[], callback?: Callback<boolean>): Promise<boolean>;
  setMessageContent(messageId: number, content: MessageContent, objectName?: string | Callback<boolean>, callback?: Callback<boolean>): Promise<boolean>;
  setMessageSearchField(messageId: number, content: unknown, searchFiles: string | string[], callback?: Callback<boolean>): Promise<boolean>;
  setMessageExtra(messageId: number, value: string, callback?: Callback<boolean>): Promise<boolean>;
  setMessageReceivedStatus(messageId: number, receivedStatus: number, callback?: Callback<boolean>): Promise<boolean>;
  setMessageStatus(messageId: number, status: number, callback?: Callback<boolean>): Promise<boolean>;
  setMessageSentStatus(messageId: number, sentStatus: number, callback?: Callback<boolean>): Promise<boolean>;
  clearData(callback?: Callback<boolean>): Promise<boolean>;
  clearMessages(conversationType: number, targetId: string, callback?: Callback<boolean>): Promise<boolean>;
  clearMessagesUnreadStatus(conversationType: number, targetId: string, callback?: Callback<boolean>): Promise<boolean>;
  clearCache(): boolean;
  clearLocalStorage(callback?: Callback<boolean>): Promise<boolean>;
  searchMessageByContent(
    conversationType: number,
    targetId: string,
    keyword: string,
    timestamp: number,
    count: number,
    total: number,
    callback?: Callback<RongMessage[]>,
  ): Promise<{ list: RongMessage[]; matched: number }>;
  searchConversationByContent(keyword: string, callback?: Callback<RongConversation[]>, conversationTypes?: number[]): Promise<RongConversation[]>;

  // sending
  sendMessage(
    conversationType: number,
    targetId: string,
    msg: MessageContent,
    callback?: Callback<RongMessage> & { onBefore?: (message: RongMessage) => void },
    isMentioned?: boolean,
    pushContent?: string,
    pushData?: string | null,
    methodType?: unknown,
    config?: { userIds?: string[]; isStatus?: boolean; [k: string]: unknown },
  ): Promise<RongMessage>;
  sendTextMessage(conversationType: number, targetId: string, content: string, callback?: Callback<RongMessage>): Promise<RongMessage>;
  sendTypingStatusMessage(conversationType: number, targetId: string, typingContentType?: string | Callback<boolean>, callback?: Callback<boolean>): Promise<boolean>;
  sendReceiptResponse(conversationType: number, targetId: string, callback?: Callback<boolean>): Promise<boolean>;
  sendRecallMessage(message: Partial<RongMessage>, callback?: Callback<RongMessage>): Promise<RongMessage>;

  // history
  getHistoryMessages(
    conversationType: number,
    targetId: string,
    timestamp: number,
    count: number,
    callback?: Callback<RongMessage[]>,
    objectName?: string,
    order?: number,
  ): Promise<{ list: RongMessage[]; hasMore: boolean }>;
  getRemoteHistoryMessages(params: { conversationType: number; targetId: string; timestamp?: number; count?: number; order?: number }, callback?: Callback<RongMessage[]>): Promise<{ list: RongMessage[]; hasMore: boolean }>;
  getRemoteHistoryMessages(conversationType: number, targetId: string, timestamp: number, count: number, callback?: Callback<RongMessage[]>): Promise<{ list: RongMessage[]; hasMore: boolean }>;
  clearHistoryMessages(params: { conversationType: number; targetId: string; timestamp?: number }, callback?: Callback<boolean>): Promise<boolean>;
  clearRemoteHistoryMessages(params: { conversationType: number; targetId: string; timestamp: number }, callback?: Callback<boolean>): Promise<boolean>;
  deleteRemoteMessages(conversationType: number, targetId: string, delMsgs: Partial<RongMessage>[], callback?: Callback<boolean>): Promise<boolean>;

  // conversations
  pottingConversation(tempConver: any): RongConversation;
  getConversationList(callback?: Callback<RongConversation[]>, conversationTypes?: number[] | null, count?: number): Promise<RongConversation[]>;
  getRemoteConversationList(callback?: Callback<RongConversation[]>, conversationTypes?: number[] | null, count?: number): Promise<RongConversation[]>;
  getConversation(conversationType: number, targetId: string, callback?: Callback<RongConversation | null>): Promise<RongConversation | null>;
  addConversation(conversation: Partial<RongConversation> & { conversationType: number; targetId: string }, callback?: Callback<boolean>): Promise<boolean>;
  createConversation(conversationType: number, targetId: string, converTitle: string): RongConversation;
  createConversationShape(conversationType: number, targetId: string, title: string): RongConversation;
  updateConversation(conversation: Partial<RongConversation> & { conversationType: number; targetId: string }, callback?: Callback<RongConversation>): Promise<RongConversation>;
  removeConversation(conversationType: number, targetId: string, callback?: Callback<boolean>): Promise<boolean>;
  setConversationHidden(conversationType: number, targetId: string, isHidden: boolean, callback?: Callback<boolean>): Promise<boolean>;
  clearConversations(callback?: Callback<boolean>, conversationTypes?: number[]): Promise<boolean>;
  setConversationToTop(conversationType: number, targetId: string, isTop: boolean, callback?: Callback<boolean>): Promise<boolean>;
  getConversationNotificationStatus(conversationType: number, targetId: string, callback?: Callback<number>): Promise<number>;
  setConversationNotificationStatus(conversationType: number, targetId: string, notificationStatus: number, callback?: Callback): Promise<unknown>;
  getNotificationQuietHours(callback?: Callback): Promise<{ startMinute: number; minutes: number }>;

  // drafts (synchronous, as in the seed)
  saveTextMessageDraft(conversationType: number, targetId: string, value: string): boolean;
  getTextMessageDraft(conversationType: number, targetId: string): string | null;
  clearTextMessageDraft(conversationType: number, targetId: string): boolean;

  // unread counts
  getUnreadCount(conversationType: number, targetId: string, callback?: Callback<number>): Promise<number>;
  getTotalUnreadCount(callback?: Callback<number>, conversationTypes?: number[]): Promise<number>;
  getConversationUnreadCount(conversationTypes: number[], callback?: Callback<number>): Promise<number>;
  setUnreadCount(conversationType: number, targetId: string, count: number, callback?: Callback<boolean>): Promise<boolean>;
  clearUnreadCount(conversationType: number, targetId: string, callback?: Callback<boolean>): Promise<boolean>;
  clearUnreadCountByTimestamp(conversationType: number, targetId: string, timestamp: number, callback?: Callback<boolean>): Promise<boolean>;
  clearTotalUnreadCount(callback?: Callback<boolean>): Promise<boolean>;
  hasRemoteUnreadMessages(token: string, callback?: Callback<boolean>): Promise<boolean>;

  // discussions
  createDiscussion(name: string, userIdList: string[], callback?: Callback<string>): Promise<string>;
  addMemberToDiscussion(discussionId: string, userIdList: string[], callback?: Callback<boolean>): Promise<boolean>;
  removeMemberFromDiscussion(discussionId: string, userId: string, callback?: Callback<boolean>): Promise<boolean>;
  quitDiscussion(discussionId: string, callback?: Callback<boolean>): Promise<boolean>;
  setDiscussionName(discussionId: string, name: string, callback?: Callback<boolean>): Promise<boolean>;
  setDiscussionInviteStatus(discussionId: string, status: number, callback?: Callback<boolean>): Promise<boolean>;
  getDiscussion(
    discussionId: string,
    callback?: Callback,
  ): Promise<{ id: string; name: string; creatorId: string; memberIdList: string[]; isOpen: boolean }>;

  // chatrooms
  joinChatRoom(chatroomId: string, messageCount: number, callback?: Callback<boolean>): Promise<boolean>;
  quitChatRoom(chatroomId: string, callback?: Callback<boolean>): Promise<boolean>;
  getChatRoomInfo(chatroomId: string, count: number, order: number, callback?: Callback): Promise<import('./index.js').ChatroomInfo>;
  setChatroomHisMessageTimestamp(chatroomId: string, timestamp: number): void;
  getChatRoomHistoryMessages(chatroomId: string, count: number, order?: number | Callback, callback?: Callback<RongMessage[]>): Promise<{ list: RongMessage[]; hasMore: boolean }>;
  setChatroomEntry(chatroomId: string, entry: { key: string; value: string; isAutoDelete?: boolean }, callback?: Callback<boolean>): Promise<boolean>;
  forceSetChatroomEntry(chatroomId: string, entry: { key: string; value: string; isAutoDelete?: boolean }, callback?: Callback<boolean>): Promise<boolean>;
  getChatroomEntry(chatroomId: string, key: string, callback?: Callback<string>): Promise<string>;
  getAllChatroomEntries(chatroomId: string, callback?: Callback<Record<string, string>>): Promise<Record<string, string>>;
  removeChatroomEntry(chatroomId: string, entry: string | { key: string }, callback?: Callback<boolean>): Promise<boolean>;
  forceRemoveChatroomEntry(chatroomId: string, entry: string | { key: string }, callback?: Callback<boolean>): Promise<boolean>;

  // blacklist
  addToBlacklist(userId: string, callback?: Callback<boolean>): Promise<boolean>;
  removeFromBlacklist(userId: string, callback?: Callback<boolean>): Promise<boolean>;
  getBlacklist(callback?: Callback<string[]>): Promise<string[]>;
  getBlacklistStatus(userId: string, callback?: Callback<number>): Promise<number>;

  // files
  getFileToken(fileType: number, callback?: Callback): Promise<unknown>;
  getFileUrl(fileType: number, fileName: string, oriName?: string, callback?: Callback, message?: Partial<RongMessage>): Promise<unknown>;

  // users
  getUserStatus(userId: string, callback?: Callback): Promise<{ userId: string; online: boolean; lastSeen: number; status: string }>;
  setUserStatus(status: string, callback?: Callback<boolean>): Promise<boolean>;
  setUserStatusListener(
    config: { userIds: string[] },
    listener: (status: { userId: string; online: boolean; lastSeen: number }) => void,
    callback?: Callback,
  ): Promise<unknown>;
  login(params: { account: string; password: string }, callback?: Callback<{ account: string; token: string; userId: string }>): Promise<{ account: string; token: string; userId: string }>;
  getUserInfo(userId: string, callback?: Callback): Promise<{ id: string; name: string; portrait: string; extra: unknown }>;
  revoked(params: { password: string }, callback?: Callback<boolean>): Promise<boolean>;
  registerMessageType(
    messageType: string,
    objectName: string,
    messageTag?: { isCounted?: boolean; isPersited?: boolean },
    propNames?: string[],
  ): typeof MessageContent;
}

/** Seed 004's RongIMLib namespace. */
export declare const RongIMLib: Readonly<
  Record<string, any> & {
    RongIMClient: typeof RongIMClient;
    MessageContent: typeof MessageContent;
    MentionedInfo: typeof MentionedInfo;
    TextMessage: typeof TextMessage;
    ImageMessage: typeof ImageMessage;
    ReadReceiptMessage: typeof ReadReceiptMessage;
    MessageType: Record<string, string>;
    ConnectionStatus: typeof ConnectionStatus;
    ConnectionState: typeof ConnectionState;
    ConversationType: typeof ConversationType;
    ErrorCode: typeof ErrorCode;
    MentionedType: typeof MentionedType;
    ReceivedStatus: typeof ReceivedStatus;
  }
>;

export default RongIMLib;
