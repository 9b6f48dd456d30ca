// @tidings/sdk: the browser SDK of the Tidings instant-messaging server. ES modules, no build
// step. See ../README.md for how to use it; docs/protocol.md for the protocol it speaks.

export { TidingsClient } from './client.js';
export {
  ConnectionStatus,
  ConversationNotificationStatus,
  ConversationType,
  ErrorCode,
  MentionedType,
  MessageDirection,
  SentStatus,
  TidingsError,
  TransportType,
  errorName,
} from './codes.js';
export {
  FileMessage,
  ImageMessage,
  LocationMessage,
  MessageContent,
  MessageTag,
  RecallCommandMessage,
  RegisteredMessage,
  RegisteredMessages,
  RichContentMessage,
  TextMessage,
  TypingStatusMessage,
  UnknownMessage,
  VoiceMessage,
  registerMessageType,
} from './messages.js';
export { LocalStorageProvider, MemoryStorage, defaultStorage } from './storage.js';
export { E2ee, E2eeError, IndexedDbE2eeStorage, MemoryE2eeStorage, WebStorageE2eeStorage, safetyNumber } from './e2ee.js';
