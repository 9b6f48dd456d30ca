// The RongCloud-compatible entry (@tidings/sdk/rong) has every function seed 004 lists for
// RongIMClient (section 五.3, imclient.ts: 107 of them), the statics the seed calls on the
// class, and the functions with no Tidings counterpart fail with their documented code, through
// `onError` and a rejected Promise, never silently.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import RongIMLibDefault, { ErrorCode, NEVER_PRODUCED, RongIMClient, RongIMLib } from '../src/rong.js';

/** Seed 004, 五.3, `imclient.ts`, class RongIMClient: every [function], in the seed's order. */
const SEED_FUNCTIONS = [
  'init', 'initApp', 'connect', 'reconnect', 'registerMessageType', 'setConnectionStatusListener',
  'setOnReceiveMessageListener', 'logout', 'disconnect', 'startCustomService', 'stopCustomeService',
  'switchToHumanMode', 'evaluateRebotCustomService', 'evaluateHumanCustomService',
  'getCurrentConnectionStatus', 'getConnectionChannel', 'getStorageProvider', 'setFilterMessages',
  'getAgoraDynamicKey', 'getCurrentUserId', 'getDeltaTime', 'getMessage', 'deleteLocalMessages',
  'updateMessage', 'clearData', 'clearMessages', 'clearMessagesUnreadStatus', 'deleteMessages',
  'sendLocalMessage', 'getPullSetting', 'setOfflineMessageDuration', 'sendMessage',
  'sendReceiptResponse', 'sendTypingStatusMessage', 'sendTextMessage', 'sendRecallMessage',
  'insertMessage', 'setMessageContent', 'setMessageSearchField', 'getHistoryMessages',
  'getRemoteHistoryMessages', 'clearHistoryMessages', 'clearRemoteHistoryMessages',
  'deleteRemoteMessages', 'hasRemoteUnreadMessages', 'getTotalUnreadCount',
  'getConversationUnreadCount', 'getUnreadCount', 'setUnreadCount', 'clearUnreadCountByTimestamp',
  'clearUnreadCount', 'clearTotalUnreadCount', 'clearLocalStorage', 'setMessageExtra',
  'setMessageReceivedStatus', 'setMessageStatus', 'setMessageSentStatus', 'clearTextMessageDraft',
  'getTextMessageDraft', 'saveTextMessageDraft', 'searchConversationByContent',
  'searchMessageByContent', 'clearCache', 'clearConversations', 'getConversation',
  'pottingConversation', 'addConversation', 'getConversationList', 'getRemoteConversationList',
  'updateConversation', 'createConversation', 'removeConversation', 'setConversationHidden',
  'setConversationToTop', 'getConversationNotificationStatus', 'setConversationNotificationStatus',
  'getNotificationQuietHours', 'addMemberToDiscussion', 'createDiscussion', 'getDiscussion',
  'quitDiscussion', 'removeMemberFromDiscussion', 'setDiscussionInviteStatus', 'setDiscussionName',
  'joinChatRoom', 'setDeviceInfo', 'setChatroomHisMessageTimestamp', 'getChatRoomHistoryMessages',
  'getChatRoomInfo', 'quitChatRoom', 'setChatroomEntry', 'forceSetChatroomEntry', 'getChatroomEntry',
  'getAllChatroomEntries', 'removeChatroomEntry', 'forceRemoveChatroomEntry', 'addToBlacklist',
  'getBlacklist', 'getBlacklistStatus', 'removeFromBlacklist', 'getFileToken', 'getFileUrl',
  'getUserStatus', 'setUserStatus', 'setUserStatusListener', 'getAppInfo', 'getSDKInfo',
];

/** What the seed calls on the class itself (section 七, and `RongIMClient.init`). */
const SEED_STATICS = [
  'init', 'getInstance', 'connect', 'reconnect', 'setConnectionStatusListener',
  'setOnReceiveMessageListener', 'registerMessageType',
];

/** Seed 004, 六, the error code table (103 rows): name and number. */
const SEED_ERROR_TABLE = (
  'TIMEOUT -1 UNKNOWN -2 PARAMETER_ERROR -3 RECALL_MESSAGE 25101 SEND_FREQUENCY_TOO_FAST 20604 ' +
  'RC_MSG_UNAUTHORIZED 20406 RC_DISCUSSION_GROUP_ID_INVALID 20407 FORBIDDEN_IN_GROUP 22408 ' +
  'NOT_IN_DISCUSSION 21406 NOT_IN_GROUP 22406 NOT_IN_CHATROOM 23406 FORBIDDEN_IN_CHATROOM 23408 ' +
  'RC_CHATROOM_USER_KICKED 23409 RC_CHATROOM_NOT_EXIST 23410 RC_CHATROOM_IS_FULL 23411 ' +
  'RC_CHATROOM_PATAMETER_INVALID 23412 CHATROOM_GET_HISTORYMSG_ERROR 23413 ' +
  'CHATROOM_NOT_OPEN_HISTORYMSG_STORE 23414 CHATROOM_KV_EXCEED 23423 CHATROOM_KV_OVERWRITE_INVALID ' +
  '23424 CHATROOM_KV_STORE_NOT_OPEN 23426 CHATROOM_KEY_NOT_EXIST 23427 SENSITIVE_SHIELD 21501 ' +
  'SENSITIVE_REPLACE 21502 JOIN_IN_DISCUSSION 21407 CREATE_DISCUSSION 21408 INVITE_DICUSSION 21409 ' +
  'GET_USERINFO_ERROR 23407 REJECTED_BY_BLACKLIST 405 RC_NET_CHANNEL_INVALID 30001 ' +
  'RC_NET_UNAVAILABLE 30002 RC_MSG_RESP_TIMEOUT 30003 RC_HTTP_SEND_FAIL 30004 RC_HTTP_REQ_TIMEOUT ' +
  '30005 RC_HTTP_RECV_FAIL 30006 RC_NAVI_RESOURCE_ERROR 30007 RC_NODE_NOT_FOUND 30008 ' +
  'RC_DOMAIN_NOT_RESOLVE 30009 RC_SOCKET_NOT_CREATED 30010 RC_SOCKET_DISCONNECTED 30011 ' +
  'RC_PING_SEND_FAIL 30012 RC_PONG_RECV_FAIL 30013 RC_MSG_SEND_FAIL 30014 RC_CONN_ACK_TIMEOUT ' +
  '31000 RC_CONN_PROTO_VERSION_ERROR 31001 RC_CONN_ID_REJECT 31002 RC_CONN_SERVER_UNAVAILABLE ' +
  '31003 RC_CONN_USER_OR_PASSWD_ERROR 31004 RC_CONN_NOT_AUTHRORIZED 31005 RC_CONN_REDIRECTED 31006 ' +
  'RC_CONN_PACKAGE_NAME_INVALID 31007 RC_CONN_APP_BLOCKED_OR_DELETED 31008 RC_CONN_USER_BLOCKED ' +
  '31009 RC_DISCONN_KICK 31010 RC_DISCONN_EXCEPTION 31011 RC_QUERY_ACK_NO_DATA 32001 ' +
  'RC_MSG_DATA_INCOMPLETE 32002 BIZ_ERROR_CLIENT_NOT_INIT 33001 BIZ_ERROR_DATABASE_ERROR 33002 ' +
  'BIZ_ERROR_INVALID_PARAMETER 33003 BIZ_ERROR_NO_CHANNEL 33004 BIZ_ERROR_RECONNECT_SUCCESS 33005 ' +
  'BIZ_ERROR_CONNECTING 33006 MSG_INSERT_ERROR 33008 MSG_DEL_ERROR 33009 CONVER_REMOVE_ERROR 34001 ' +
  'CONVER_GETLIST_ERROR 34002 CONVER_SETOP_ERROR 34003 CONVER_TOTAL_UNREAD_ERROR 34004 ' +
  'CONVER_TYPE_UNREAD_ERROR 34005 CONVER_ID_TYPE_UNREAD_ERROR 34006 CONVER_CLEAR_ERROR 34007 ' +
  'CLEAR_HIS_ERROR 34010 CLEAR_HIS_TYPE_ERROR 34008 CLEAR_HIS_TIME_ERROR 34011 CONVER_GET_ERROR ' +
  '34009 GROUP_SYNC_ERROR 35001 GROUP_MATCH_ERROR 35002 CHATROOM_ID_ISNULL 36001 ' +
  'CHARTOOM_JOIN_ERROR 36002 CHATROOM_HISMESSAGE_ERROR 36003 CHATROOM_KV_NOT_FOUND 36004 ' +
  'BLACK_ADD_ERROR 37001 BLACK_GETSTATUS_ERROR 37002 BLACK_REMOVE_ERROR 37003 DRAF_GET_ERROR 38001 ' +
  'DRAF_SAVE_ERROR 38002 DRAF_REMOVE_ERROR 38003 SUBSCRIBE_ERROR 39001 COOKIE_ENABLE 51001 ' +
  'GET_MESSAGE_BY_ID_ERROR 61001 HAVNODEVICEID 24001 DEVICEIDISHAVE 24002 SUCCESS 0 FEILD 24009 ' +
  'NULLCHANNELNAME 24011 INTERNALERRROR 24015 CLOSE_BEFORE_OPEN 51001 ALREADY_IN_USE 51002 ' +
  'INVALID_CHANNEL_NAME 51003 DELETE_MESSAGE_ID_IS_NULL 61001 REMOTE_ENGINE_UN_SUPPORTED 16 ' +
  'REMOTE_NETWORK_ERROR 17 '
)
  .trim()
  .split(/\s+/);

/** Section 七's user calls, besides the 107. */
const SEED_USER_CALLS = ['login', 'getUserInfo', 'revoked', 'logout'];

test("the seed's 107 functions exist on a RongIMClient instance, and the static ones on the class", () => {
  assert.equal(SEED_FUNCTIONS.length, 107);
  assert.equal(new Set(SEED_FUNCTIONS).size, 107, 'the list has no repeats');
  const client = RongIMClient.init('surface', { servers: ['http://127.0.0.1:9'] });
  const missing = [...SEED_FUNCTIONS, ...SEED_USER_CALLS].filter((name) => typeof (/** @type {any} */ (client))[name] !== 'function');
  assert.deepEqual(missing, []);
  const missingStatics = SEED_STATICS.filter((name) => typeof (/** @type {any} */ (RongIMClient))[name] !== 'function');
  assert.deepEqual(missingStatics, []);
  assert.equal(RongIMClient.getInstance(), client);
  assert.equal(RongIMLib.RongIMClient, RongIMClient);
  assert.equal(RongIMLibDefault, RongIMLib);
});

test("every row of the seed's error table is in ErrorCode, under its name and number", () => {
  const rows = [];
  for (let i = 0; i < SEED_ERROR_TABLE.length; i += 2) rows.push([SEED_ERROR_TABLE[i], Number(SEED_ERROR_TABLE[i + 1])]);
  assert.equal(rows.length, 103);
  const wrong = rows.filter(([name, code]) => (/** @type {any} */ (ErrorCode))[name] !== code);
  assert.deepEqual(wrong, []);
});

test('the namespace holds the enumerations and classes with the seed values', () => {
  const { ConversationType, ConnectionStatus, MessageType } = RongIMLib;
  assert.deepEqual(
    [ConversationType.PRIVATE, ConversationType.DISCUSSION, ConversationType.GROUP, ConversationType.CHATROOM,
      ConversationType.CUSTOMER_SERVICE, ConversationType.SYSTEM],
    [1, 2, 3, 4, 5, 6],
  );
  assert.equal(ConnectionStatus.KICKED_OFFLINE_BY_OTHER_CLIENT, 6);
  assert.equal(ConnectionStatus.RESPONSE_NAVI_TIMEOUT, 204);
  assert.equal(RongIMClient.MessageType.TextMessage, 'TextMessage');
  assert.equal(MessageType.HQVoiceMessage, 'HQVoiceMessage');
  const names = {
    TextMessage: 'RC:TxtMsg', ImageMessage: 'RC:ImgMsg', VoiceMessage: 'RC:VcMsg', HQVoiceMessage: 'RC:HQVCMsg',
    FileMessage: 'RC:FileMsg', LocationMessage: 'RC:LBSMsg', RichContentMessage: 'RC:ImgTextMsg',
    RecallCommandMessage: 'RC:RcCmd', TypingStatusMessage: 'RC:TypSts', ReadReceiptMessage: 'RC:ReadNtf',
    ReadReceiptRequestMessage: 'RC:RRReqMsg', ReadReceiptResponseMessage: 'RC:RRRspMsg', GIFMessage: 'RC:GIFMsg',
    SightMessage: 'RC:SightMsg', InformationNotificationMessage: 'RC:InfoNtf', CommandMessage: 'RC:CmdMsg',
    ContactNotificationMessage: 'RC:ContactNtf', ProfileNotificationMessage: 'RC:ProfileNtf',
    CommandNotificationMessage: 'RC:CmdNtf', GroupNotificationMessage: 'RC:GrpNtf',
    PublicServiceCommandMessage: 'RC:PSCmd', PublicServiceRichContentMessage: 'RC:PSImgTxtMsg',
    PublicServiceMultiRichContentMessage: 'RC:PSMultiImgTxtMsg',
  };
  for (const [cls, objectName] of Object.entries(names)) {
    const C = /** @type {any} */ (RongIMLib)[cls];
    assert.equal(C.objectName, objectName, cls);
    assert.equal(C.messageName, cls);
  }
  const t = RongIMLib.TextMessage.obtain('hello');
  assert.equal(t.content, 'hello');
  assert.equal(t.messageName, 'TextMessage');
  assert.equal(t.objectName, 'RC:TxtMsg');
  const m = new RongIMLib.MentionedInfo();
  m.type = RongIMLib.MentionedType.PART;
  m.userIdList = ['u1'];
  assert.deepEqual({ ...m }, { type: 2, userIdList: ['u1'], mentionedContent: undefined });
  for (const name of NEVER_PRODUCED) assert.ok(name in ErrorCode, `${name} is a seed name`);
});

/**
 * Calls `fn` with a callback and answers what `onError` got and what the Promise rejected with.
 * @param {(cb: any) => Promise<unknown>} fn
 */
async function failure(fn) {
  /** @type {number[]} */
  const codes = [];
  const p = fn({ onSuccess: () => codes.push(0), onError: (/** @type {number} */ code) => codes.push(code) });
  const err = await p.then(
    () => null,
    (e) => e,
  );
  return { codes, err };
}

test('functions with no counterpart fail with NOT_SUPPORTED (-4), through onError and the Promise', async () => {
  const client = RongIMClient.init('surface', { servers: ['http://127.0.0.1:9'] });
  const calls = [
    (/** @type {any} */ cb) => client.startCustomService({ customerServiceId: 'cs' }, cb),
    (/** @type {any} */ cb) => client.stopCustomeService({ customerServiceId: 'cs' }, cb),
    (/** @type {any} */ cb) => client.switchToHumanMode({ customerServiceId: 'cs' }, cb),
    (/** @type {any} */ cb) => client.evaluateRebotCustomService({ customerServiceId: 'cs' }, cb),
    (/** @type {any} */ cb) => client.evaluateHumanCustomService({ customerServiceId: 'cs' }, cb),
    (/** @type {any} */ cb) => client.getAgoraDynamicKey(1, 'channel', cb),
  ];
  for (const call of calls) {
    const { codes, err } = await failure(call);
    assert.deepEqual(codes, [ErrorCode.NOT_SUPPORTED]);
    assert.equal(err.code, -4);
  }
  // And without a callback, the Promise alone says it.
  await assert.rejects(client.startCustomService(), (e) => /** @type {any} */ (e).code === -4);
});

test("setOfflineMessageDuration fails with SERVER_SETTING (-5); getPullSetting answers what the client knows", async () => {
  const client = RongIMClient.init('surface', { servers: ['http://127.0.0.1:9'], syncIntervalMs: 60_000 });
  const { codes, err } = await failure((cb) => client.setOfflineMessageDuration(7, cb));
  assert.deepEqual(codes, [ErrorCode.SERVER_SETTING]);
  assert.equal(err.code, -5);
  const setting = await client.getPullSetting();
  assert.equal(setting.syncIntervalMs, 60_000);
  assert.equal(setting.offlineMessageDuration, null);
  const info = await client.getSDKInfo();
  assert.equal(info.name, '@tidings/sdk/rong');
  const app = await client.getAppInfo();
  assert.equal(app.appKey, 'surface');
  assert.equal(app.server, 'http://127.0.0.1:9');
});

test('before init, getInstance fails with BIZ_ERROR_CLIENT_NOT_INIT; the local store needs a user', async () => {
  const fresh = new RongIMClient();
  assert.throws(() => fresh.getCurrentUserId(), (e) => /** @type {any} */ (e).code === ErrorCode.BIZ_ERROR_CLIENT_NOT_INIT);
  const client = new RongIMClient().init('surface', { servers: ['http://127.0.0.1:9'] });
  const { codes } = await failure((cb) => client.getMessage(1, cb));
  assert.deepEqual(codes, [ErrorCode.BIZ_ERROR_CLIENT_NOT_INIT]);
});
