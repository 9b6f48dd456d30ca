// Seed 004's own usage examples (section 七), ported to @tidings/sdk/rong by changing the
// import, run against a real server with two users: init, the listeners, connect with
// callbacks, sending text, image, voice, rich and group messages built the seed's way, the
// conversation list, unread counts, read notifications, history, recall, clearing, the user
// calls (login, getUserInfo, revoked), disconnect and reconnect.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';

import WebSocket from 'ws';

import * as RongIMLib from '../src/rong.js';
import { MemoryStorage } from '../src/index.js';
import { api } from '../test-support/api.js';
import { serverForFile } from '../test-support/server.js';
import { until } from '../test-support/wait.js';

const RongIMClient = RongIMLib.RongIMClient;
const server = serverForFile(['--send-rate', '0']);

/** Every client the tests made, disconnected after each test. @type {Set<RongIMLib.RongIMClient>} */
const made = new Set();
afterEach(async () => {
  const all = [...made];
  made.clear();
  await Promise.all(all.map((c) => c.disconnect()));
});

/**
 * A client, as `new RongIMClient().init(...)`, disconnected after the test.
 */
function newClient() {
  const c = new RongIMClient().init('appkey', options());
  made.add(c);
  return c;
}

/** What every client of these tests is given besides the seed's options. */
function options() {
  return { navi: server.url, WebSocket, storage: new MemoryStorage(), messageStore: /** @type {const} */ ('memory') };
}

/**
 * The seed's connect, with its three callbacks, as a Promise of the user id.
 * @param {RongIMLib.RongIMClient | typeof RongIMLib.RongIMClient} client
 * @param {string} token
 */
function connect(client, token) {
  return new Promise((resolve, reject) => {
    client.connect(token, {
      onSuccess: (userId) => resolve(userId),
      onTokenIncorrect: () => reject(new Error('token incorrect')),
      onError: (errorCode) => reject(new Error(`connect failed: ${errorCode}`)),
    });
  });
}

/**
 * A seed-style call as a Promise of what `onSuccess` got (all its arguments).
 * @param {(callback: any) => unknown} call
 * @returns {Promise<any[]>}
 */
function callback(call) {
  return new Promise((resolve, reject) => {
    call({
      onSuccess: (/** @type {any[]} */ ...args) => resolve(args),
      onError: (/** @type {number} */ code) => reject(Object.assign(new Error(`onError ${code}`), { code })),
    });
  });
}

/**
 * A message listener that records, the seed's way, by messageType.
 */
function listener() {
  /** @type {any[]} */
  const received = [];
  /** @type {string[]} */
  const log = [];
  return {
    received,
    log,
    onReceived(/** @type {any} */ message) {
      received.push(message);
      const messageContent = message.content;
      switch (message.messageType) {
        case RongIMClient.MessageType.TextMessage:
          log.push(`text ${messageContent.content}`);
          break;
        case RongIMClient.MessageType.ImageMessage:
          log.push(`image ${messageContent.content} ${messageContent.imageUri}`);
          break;
        case RongIMClient.MessageType.HQVoiceMessage:
          log.push(`voice ${messageContent.type} ${messageContent.remoteUrl} ${messageContent.duration}`);
          break;
        case RongIMClient.MessageType.RichContentMessage:
          log.push(`rich ${messageContent.content} ${messageContent.imageUri} ${messageContent.url}`);
          break;
        case RongIMClient.MessageType.UnknownMessage:
          log.push(`unknown ${message.objectName}`);
          break;
        default:
          log.push(`other ${message.messageType}`);
          break;
      }
    },
    /** @param {number} n */
    until: (n) => until(() => received.length >= n, `${n} messages (have ${received.length}: ${log})`),
  };
}

test("seed 004's section 七 examples, ported, between two users", async () => {
  // ➣ 初始化 (the seed passes null and {protobuf}; the Tidings options ride along).
  made.add(RongIMClient.init('appkey', null, { protobuf: {}, ...options() }));

  // ➣ 连接和监听: the status listener, the message listener.
  /** @type {number[]} */
  const statuses = [];
  RongIMClient.setConnectionStatusListener({
    onChanged(status) {
      statuses.push(status);
    },
  });
  const aliceInbox = listener();
  RongIMClient.setOnReceiveMessageListener(aliceInbox);

  // A token that is no good: onTokenIncorrect.
  const incorrect = await new Promise((resolve) => {
    RongIMClient.connect('not-a-token', {
      onSuccess: () => resolve('success'),
      onTokenIncorrect: () => resolve('incorrect'),
      onError: (code) => resolve(`error ${code}`),
    });
  });
  assert.equal(incorrect, 'incorrect');

  const alice = 'rong-alice';
  const bob = 'rong-bob';
  assert.equal(await connect(RongIMClient, await server.token(alice)), alice);
  assert.ok(statuses.includes(RongIMLib.ConnectionStatus.CONNECTED));
  const me = RongIMClient.getInstance();
  assert.equal(me.getCurrentUserId(), alice);
  assert.equal(me.getCurrentConnectionStatus(), RongIMLib.ConnectionStatus.CONNECTED);
  assert.equal(me.getConnectionChannel(), RongIMLib.TransportType.WEBSOCKET);

  const other = newClient();
  const bobInbox = listener();
  other.setOnReceiveMessageListener(bobInbox);
  assert.equal(await connect(other, await server.token(bob)), bob);

  // ➣ 消息 1) 文本消息, with the user info the seed carries in the content.
  const user = { id: alice, name: '张三', portrait: 'https://cdn.example.com/thinking-face.png' };
  const text = new RongIMLib.TextMessage({ content: 'hello RongCloud!', extra: '附加信息', user });
  const [sent] = await callback((cb) => me.sendMessage(RongIMLib.ConversationType.PRIVATE, bob, text, cb));
  assert.equal(sent.messageUId.length, 26);
  assert.ok(sent.sentTime > 0);
  assert.equal(sent.objectName, 'RC:TxtMsg');
  assert.equal(sent.messageType, 'TextMessage');
  assert.equal(sent.messageDirection, RongIMLib.MessageDirection.SEND);
  assert.equal(sent.sentStatus, RongIMLib.SentStatus.SENT);
  assert.deepEqual(sent.content.user, user);
  assert.ok(sent.messageId > 0, 'kept in the local store');

  // Image (TextMessage.obtain and the other constructors), voice, rich content.
  await me.sendMessage(1, bob, RongIMLib.ImageMessage.obtain('dGh1bWI=', 'https://img.example.com/1.jpg'));
  await me.sendMessage(1, bob, RongIMLib.HQVoiceMessage.obtain('https://a.example.com/1.aac', 7));
  await me.sendMessage(1, bob, RongIMLib.RichContentMessage.obtain('title', 'body', 'https://img.example.com/2.jpg', 'https://example.com'));
  const [last] = await callback((cb) => me.sendTextMessage(1, bob, RongIMLib.TextMessage.obtain('bye').content, cb));

  await bobInbox.until(5);
  assert.deepEqual(bobInbox.log, [
    'text hello RongCloud!',
    'image dGh1bWI= https://img.example.com/1.jpg',
    'voice aac https://a.example.com/1.aac 7',
    'rich body https://img.example.com/2.jpg https://example.com',
    'text bye',
  ]);
  const first = bobInbox.received[0];
  assert.equal(first.objectName, 'RC:TxtMsg');
  assert.equal(first.conversationType, RongIMLib.ConversationType.PRIVATE);
  assert.equal(first.targetId, alice);
  assert.equal(first.senderUserId, alice);
  assert.equal(first.messageUId, sent.messageUId);
  assert.equal(first.messageDirection, RongIMLib.MessageDirection.RECEIVE);
  assert.equal(first.receivedStatus, RongIMLib.ReceivedStatus.UNREAD);
  assert.equal(first.content.extra, '附加信息');
  assert.deepEqual(first.content.user, user, '用户信息获取 - 通过 Socket 消息体');
  assert.ok(first.messageId > 0);
  assert.deepEqual(
    bobInbox.received.map((m) => m.objectName),
    ['RC:TxtMsg', 'RC:ImgMsg', 'RC:HQVCMsg', 'RC:ImgTextMsg', 'RC:TxtMsg'],
  );

  // ➣ 会话 2. 获取会话列表.
  const [list] = await callback((cb) => other.getConversationList(cb, [RongIMLib.ConversationType.PRIVATE], 150));
  assert.equal(list.length, 1);
  assert.equal(list[0].targetId, alice);
  assert.equal(list[0].conversationType, 1);
  assert.equal(list[0].unreadMessageCount, 5);
  assert.equal(list[0].latestMessage.objectName, 'RC:TxtMsg');
  assert.equal(list[0].latestMessageId, last.messageUId);
  assert.equal(list[0].objectName, 'RC:TxtMsg');
  // 3. 获取会话详情.
  const [conversation] = await callback((cb) => other.getConversation(RongIMLib.ConversationType.PRIVATE, alice, cb));
  assert.equal(conversation.unreadMessageCount, 5);

  // ➣ 未读消息: total, one conversation, by types.
  assert.deepEqual(await callback((cb) => other.getTotalUnreadCount(cb)), [5]);
  assert.deepEqual(await callback((cb) => other.getUnreadCount(RongIMLib.ConversationType.PRIVATE, alice, cb)), [5]);
  assert.deepEqual(
    await callback((cb) =>
      other.getConversationUnreadCount([RongIMLib.ConversationType.PRIVATE, RongIMLib.ConversationType.DISCUSSION], cb),
    ),
    [5],
  );

  // ➣ 3) 发送已读通知消息: bob reads up to the last message; alice gets RC:ReadNtf.
  const receipt = new RongIMLib.ReadReceiptMessage({
    messageUId: last.messageUId,
    lastMessageSendTime: last.sentTime,
    type: '1',
  });
  await callback((cb) => other.sendMessage(RongIMLib.ConversationType.PRIVATE, alice, receipt, cb));
  await aliceInbox.until(1);
  const ntf = aliceInbox.received[0];
  assert.equal(ntf.messageType, 'ReadReceiptMessage');
  assert.equal(ntf.objectName, 'RC:ReadNtf');
  assert.equal(ntf.targetId, bob);
  assert.equal(ntf.content.messageUId, last.messageUId, 'the store knows which message was read');
  assert.equal(ntf.content.lastMessageSendTime, last.sentTime);
  assert.deepEqual(await callback((cb) => other.getTotalUnreadCount(cb)), [0]);

  // 1) 清除指定会话未读数 (already read: still a success).
  assert.deepEqual(await callback((cb) => other.clearUnreadCount(RongIMLib.ConversationType.PRIVATE, alice, cb)), [true]);

  // ➣ 历史消息 1) 拉取历史消息.
  const params = { conversationType: RongIMLib.ConversationType.PRIVATE, targetId: alice, timestamp: 0, count: 20 };
  const [history, hasMore] = await callback((cb) => other.getRemoteHistoryMessages(params, cb));
  assert.equal(hasMore, false);
  assert.deepEqual(
    history.map((/** @type {any} */ m) => m.objectName),
    ['RC:TxtMsg', 'RC:ImgMsg', 'RC:HQVCMsg', 'RC:ImgTextMsg', 'RC:TxtMsg'],
  );
  assert.equal(history[0].messageId, first.messageId, 'history finds the stored messages');

  // ➣ 2) 发送撤回消息: bob gets RC:RcCmd naming the message.
  const [recall] = await callback((cb) => me.sendRecallMessage(last, cb));
  assert.equal(recall.objectName, 'RC:RcCmd');
  assert.equal(recall.content.messageUId, last.messageUId);
  await bobInbox.until(6);
  const cmd = bobInbox.received[5];
  assert.equal(cmd.messageType, 'RecallCommandMessage');
  assert.equal(cmd.content.messageUId, last.messageUId);

  // A group message with mentions and a push text (发送消息示例).
  await api(server, 'post', '/groups', { groupId: 'rong-group1', ownerId: alice, memberIds: [bob] });
  const mentioneds = new RongIMLib.MentionedInfo();
  mentioneds.type = RongIMLib.MentionedType.PART;
  mentioneds.userIdList = [bob];
  const msg = new RongIMLib.TextMessage({ content: 'hello RongCloud!', extra: '附加信息', mentionedInfo: mentioneds });
  const [groupSent] = await callback((cb) =>
    me.sendMessage(RongIMLib.ConversationType.GROUP, 'rong-group1', msg, cb, true, 'user 发送了一条消息', null, null, {}),
  );
  assert.equal(groupSent.conversationType, RongIMLib.ConversationType.GROUP);
  await bobInbox.until(8);
  const created = bobInbox.received[6];
  assert.equal(created.objectName, 'RC:GrpNtf', "the group's notification, as the seed's GroupNotificationMessage");
  assert.equal(created.content.operation, 'Create');
  const groupMessage = bobInbox.received[7];
  assert.equal(groupMessage.conversationType, 3);
  assert.equal(groupMessage.targetId, 'rong-group1');
  assert.deepEqual(groupMessage.mentionedInfo.userIdList, [bob]);
  assert.equal(groupMessage.pushContent, 'user 发送了一条消息');

  // ➣ 2) 清除历史消息: bob's history of alice is empty afterwards.
  const clear = { conversationType: RongIMLib.ConversationType.PRIVATE, targetId: alice, timestamp: last.sentTime + 1 };
  assert.deepEqual(await callback((cb) => other.clearRemoteHistoryMessages(clear, cb)), [true]);
  const [afterClear] = await callback((cb) => other.getRemoteHistoryMessages({ ...params, timestamp: 0 }, cb));
  assert.deepEqual(
    afterClear.filter((/** @type {any} */ m) => m.sentTime <= last.sentTime),
    [],
  );

  // ➣ 会话 4. 删除会话, 5. 清除会话列表.
  await callback((cb) => other.removeConversation(RongIMLib.ConversationType.PRIVATE, alice, cb));
  const [afterRemove] = await callback((cb) => other.getConversationList(cb, null));
  assert.deepEqual(
    afterRemove.map((/** @type {any} */ c) => c.targetId),
    ['rong-group1'],
  );
  await callback((cb) => other.clearConversations(cb, [RongIMLib.ConversationType.PRIVATE, RongIMLib.ConversationType.GROUP]));
  assert.deepEqual((await callback((cb) => other.getConversationList(cb, null)))[0], []);

  // ➣ 3. 断开链接, 4. 重新连接.
  await RongIMClient.getInstance().disconnect();
  await until(() => statuses.includes(RongIMLib.ConnectionStatus.DISCONNECTED), 'DISCONNECTED');
  const [again] = await new Promise((resolve, reject) =>
    RongIMClient.reconnect(
      { onSuccess: (/** @type {string} */ id) => resolve([id]), onTokenIncorrect: () => reject(new Error('token')), onError: reject },
      { auto: true, url: 'cdn.example.com/ping', rate: [100, 1000, 3000] },
    ),
  );
  assert.equal(again, alice);
  await me.disconnect();
  await other.disconnect();
});

test('用户信息相关操作: login, getUserInfo, logout and revoked over the accounts endpoints', async () => {
  const account = 'rong-carol';
  const password = 'correct horse battery';
  const res = await fetch(`${server.url}/v1/accounts/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ account, password, name: '张三' }),
  });
  assert.equal(res.status, 200);

  const client = newClient();
  // 1. 用户登录.
  const [userOf] = await callback((cb) => client.login({ account, password }, cb));
  assert.equal(userOf.account, account);
  assert.equal(userOf.userId, account);
  assert.ok(userOf.token);
  assert.equal(await connect(client, userOf.token), account);

  // 3. 用户信息获取 - 通过 HTTP 请求.
  const [info] = await callback((cb) => client.getUserInfo(account, cb));
  assert.deepEqual({ id: info.id, name: info.name }, { id: account, name: '张三' });

  // A wrong password: onError with the server's code.
  const wrong = newClient();
  await assert.rejects(callback((cb) => wrong.login({ account, password: 'not the password' }, cb)), (e) => /** @type {any} */ (e).code === 42011);

  // 5. 退出登录: the session logged in with login() ends on the server: its token no longer connects.
  assert.deepEqual(await callback((cb) => client.logout(cb)), [true]);
  const stale = await new Promise((resolve) =>
    newClient().connect(userOf.token, {
      onSuccess: () => resolve('success'),
      onTokenIncorrect: () => resolve('incorrect'),
      onError: (code) => resolve(`error ${code}`),
    }),
  );
  assert.equal(stale, 'incorrect');

  // 6. 注销账户: log in again, delete the account; logging in fails afterwards.
  await callback((cb) => client.login({ account, password }, cb));
  assert.deepEqual(await callback((cb) => client.revoked({ password }, cb)), [true]);
  await assert.rejects(callback((cb) => wrong.login({ account, password }, cb)), (e) => /** @type {any} */ (e).code === 42011);
});
