// Checks, at type-checking time only (`tsc --noEmit -p web/sdk`), that src/rong.js provides
// what rong.d.ts declares, with compatible types. Nothing here runs.

import * as Impl from '../src/rong.js';
import type * as Decl from './rong.js';

export const values: {
  ErrorCode: typeof Decl.ErrorCode;
  NEVER_PRODUCED: typeof Decl.NEVER_PRODUCED;
  ConnectionState: typeof Decl.ConnectionState;
  ReceivedStatus: typeof Decl.ReceivedStatus;
  DiscussionInviteStatus: typeof Decl.DiscussionInviteStatus;
  BlacklistStatus: typeof Decl.BlacklistStatus;
  connectErrorCode: typeof Decl.connectErrorCode;
  MentionedInfo: typeof Decl.MentionedInfo;
  TextMessage: typeof Decl.TextMessage;
  ImageMessage: typeof Decl.ImageMessage;
  HQVoiceMessage: typeof Decl.HQVoiceMessage;
  VoiceMessage: typeof Decl.VoiceMessage;
  FileMessage: typeof Decl.FileMessage;
  LocationMessage: typeof Decl.LocationMessage;
  RichContentMessage: typeof Decl.RichContentMessage;
  TypingStatusMessage: typeof Decl.TypingStatusMessage;
  ReadReceiptMessage: typeof Decl.ReadReceiptMessage;
  MessageType: typeof Decl.MessageType;
  registerMessageType: typeof Decl.registerMessageType;
  MemoryMessageStore: typeof Decl.MemoryMessageStore;
  IndexedDBMessageStore: typeof Decl.IndexedDBMessageStore;
  RongIMClient: typeof Decl.RongIMClient;
} = Impl;
