// Checks, at type-checking time only (`tsc --noEmit -p web/sdk`), that the JavaScript provides
// what index.d.ts declares, with compatible types: each declared value is assigned the
// implementation's. Nothing here runs.

import * as Impl from '../src/index.js';
import type * as Decl from './index.js';

export const values: {
  ConnectionStatus: typeof Decl.ConnectionStatus;
  TransportType: typeof Decl.TransportType;
  ConversationType: typeof Decl.ConversationType;
  SentStatus: typeof Decl.SentStatus;
  MessageDirection: typeof Decl.MessageDirection;
  MentionedType: typeof Decl.MentionedType;
  ConversationNotificationStatus: typeof Decl.ConversationNotificationStatus;
  ErrorCode: typeof Decl.ErrorCode;
  errorName: typeof Decl.errorName;
  TidingsError: typeof Decl.TidingsError;
  MessageContent: typeof Decl.MessageContent;
  TextMessage: typeof Decl.TextMessage;
  ImageMessage: typeof Decl.ImageMessage;
  FileMessage: typeof Decl.FileMessage;
  VoiceMessage: typeof Decl.VoiceMessage;
  LocationMessage: typeof Decl.LocationMessage;
  RichContentMessage: typeof Decl.RichContentMessage;
  TypingStatusMessage: typeof Decl.TypingStatusMessage;
  RecallCommandMessage: typeof Decl.RecallCommandMessage;
  UnknownMessage: typeof Decl.UnknownMessage;
  MessageTag: typeof Decl.MessageTag;
  registerMessageType: typeof Decl.registerMessageType;
  MemoryStorage: typeof Decl.MemoryStorage;
  LocalStorageProvider: typeof Decl.LocalStorageProvider;
  defaultStorage: typeof Decl.defaultStorage;
  MemoryE2eeStorage: typeof Decl.MemoryE2eeStorage;
  IndexedDbE2eeStorage: typeof Decl.IndexedDbE2eeStorage;
  WebStorageE2eeStorage: typeof Decl.WebStorageE2eeStorage;
  E2eeError: typeof Decl.E2eeError;
  safetyNumber: typeof Decl.safetyNumber;
  E2ee: Pick<typeof Decl.E2ee, 'open'>;
} = Impl;

/** The client, instance side and static side. */
export const client: Decl.TidingsClient = new Impl.TidingsClient();
export const clientClass: Pick<
  typeof Decl.TidingsClient,
  'init' | 'getInstance' | 'connect' | 'setConnectionStatusListener' | 'setOnReceiveMessageListener' | 'reconnect'
> = Impl.TidingsClient;

/** What the client hands out has the declared shapes. */
export async function shapes(c: Impl.TidingsClient): Promise<void> {
  const m: Decl.Message = await c.sendMessage(1, 'bob', new Impl.TextMessage({ content: 'hi' }));
  const list: Decl.Conversation[] = await c.getConversationList();
  const page: Decl.HistoryPage = await c.getHistoryMessages(1, 'bob');
  const stats: Decl.ClientStats = c.stats;
  const joined: Decl.ChatroomJoined = await c.joinChatRoom('lobby', 5);
  const info: Decl.ChatroomInfo = await c.getChatRoomInfo('lobby', { count: 10 });
  const entry: Decl.ChatroomEntry = await c.setChatroomEntry('lobby', { key: 'k', value: 'v' });
  const group: Decl.Group = await c.getGroupInfo('team');
  const members: Decl.MembersPage = await c.getGroupMembers('team');
  const receipt: Decl.GroupReadReceipt = await c.getGroupMessageReadReceipt('team', m);
  const found: Decl.SearchPage = await c.searchMessages('hi');
  const presence: Decl.Presence[] = await c.subscribeUserStatus(['bob']);
  const quiet: Decl.QuietHours = await c.getNotificationQuietHours();
  const vapidKey: string = await c.registerPush({ endpoint: 'https://push.example/1', keys: { p256dh: 'k', auth: 'a' } });
  const unregistered: boolean = await c.unregisterPush('https://push.example/1');
  const upload: Decl.Upload = await c.uploadFile('text', { name: 'a.txt', type: 'text/plain' });
  const link: Decl.FileUrl = await c.getFileUrl(upload, 60);
  c.on('chatroom', (e: Decl.ChatroomEvent) => void e);
  const count: number = await c.publishKeyPackages([new Uint8Array()], true);
  const claimed: Decl.ClaimedKeyPackage[] = await c.claimKeyPackages(['bob'], ['bob:phone']);
  const e2ee: Decl.E2ee = await Impl.E2ee.open(c, { deviceId: 'phone', storage: new Impl.MemoryE2eeStorage() });
  const received: Decl.Received = await e2ee.receive(m);
  const decrypted: Decl.Decrypted = await e2ee.sendText(1, 'bob', 'hi');
  const devices: Decl.MemberDevice[] = await e2ee.members(1, 'bob');
  const epoch: number | null = await e2ee.epoch(1, 'bob');
  void [count, claimed, received, decrypted, devices, epoch];
  void [joined, info, entry, group, members, receipt, found, presence, quiet, link, vapidKey, unregistered];
  void m;
  void list;
  void page;
  void stats;
}
