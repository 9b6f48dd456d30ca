// The message classes of the RongCloud-compatible entry (./rong.js): seed 004's content classes
// with their `RC:` object names, and the mapping between them and Tidings' types. A class whose
// content has a Tidings built-in type (`text`, `image`, `file`, `voice`, `location`, `rich`,
// `typing`, the `tidings:recall` event) travels as that type, so native clients read it; the
// others travel as app-defined types under their `RC:` name.

import {
  FileMessage as NativeFile,
  ImageMessage as NativeImage,
  LocationMessage as NativeLocation,
  RichContentMessage as NativeRich,
  TextMessage as NativeText,
  TypingStatusMessage as NativeTyping,
  UnknownMessage as NativeUnknown,
  VoiceMessage as NativeVoice,
  MessageContent as NativeContent,
  RegisteredMessage,
  contentClass,
  registerMessageType as registerNative,
} from './messages.js';

/**
 * @typedef {{ id?: string, name?: string, portrait?: string }} UserInfo
 */

/** Seed 004's `@` mention: `type` 1 everyone, 2 the listed users. */
export class MentionedInfo {
  /** @param {{ type?: number, userIdList?: string[], mentionedContent?: string }} [data] */
  constructor(data = {}) {
    /** @type {number} */
    this.type = data.type ?? 2;
    /** @type {string[]} */
    this.userIdList = data.userIdList ?? [];
    /** @type {string | undefined} */
    this.mentionedContent = data.mentionedContent;
  }
}

/** The prefix of a voice message's data URL (`VoiceMessage` carries its audio inline). */
const AMR_PREFIX = 'data:audio/amr;base64,';

/**
 * The base of every content class of the entry. A content carries the seed's fields as own
 * properties; `encode()` answers them as a plain object.
 */
export class MessageContent {
  /** The seed's object name, for example `RC:TxtMsg`. */
  static objectName = '';
  /** The class name the seed reports as `message.messageType`. */
  static messageName = 'MessageContent';
  /** The content's fields (besides `extra` and `user`). @type {string[]} */
  static fields = [];
  /** Counted as unread (seed 004's table, "是否计数"). */
  static isCounted = true;
  /** Stored by the server (seed 004's table, "是否存储"); `false`: a status message. */
  static isPersited = true;

  /** @param {Record<string, any>} [data] */
  constructor(data = {}) {
    const cls = /** @type {typeof MessageContent} */ (this.constructor);
    for (const f of [...cls.fields, 'extra', 'user']) if (data[f] !== undefined) /** @type {any} */ (this)[f] = data[f];
    /** The class name, as the seed's contents carry it. */
    this.messageName = cls.messageName;
  }

  /** The seed's object name of this content. */
  get objectName() {
    return /** @type {typeof MessageContent} */ (this.constructor).objectName;
  }

  /**
   * The content's fields as a plain object (what the local store keeps).
   * @returns {Record<string, any>}
   */
  encode() {
    const cls = /** @type {typeof MessageContent} */ (this.constructor);
    /** @type {Record<string, any>} */
    const out = {};
    for (const f of [...cls.fields, 'extra', 'user']) {
      const v = /** @type {any} */ (this)[f];
      if (v !== undefined) out[f] = v;
    }
    return out;
  }

  /**
   * The Tidings content this content is sent as.
   * @returns {NativeContent}
   */
  toNative() {
    const Native = nativeClass(/** @type {typeof MessageContent} */ (this.constructor));
    return new Native(this.encode());
  }
}

/**
 * The app-defined Tidings class a seed class travels as (registered once, under its `RC:` name).
 * @param {typeof MessageContent} cls
 * @returns {typeof RegisteredMessage}
 */
function nativeClass(cls) {
  const known = contentClass(cls.objectName);
  if (known && /** @type {any} */ (known).prototype instanceof RegisteredMessage) return /** @type {any} */ (known);
  return registerNative(cls.messageName, cls.objectName, { isCounted: cls.isCounted, isPersited: cls.isPersited });
}

/**
 * @param {Record<string, any>} o
 * @returns {{ extra?: string, user?: UserInfo }}
 */
function common(o) {
  return { extra: o.extra, user: o.user };
}

// ---------------------------------------------------------------- contents with a Tidings type

/** `RC:TxtMsg` ↔ `text`. */
export class TextMessage extends MessageContent {
  static objectName = 'RC:TxtMsg';
  static messageName = 'TextMessage';
  static fields = ['content', 'mentionedInfo'];

  /** @param {string} text */
  static obtain(text) {
    return new TextMessage({ content: text });
  }

  toNative() {
    const self = /** @type {any} */ (this);
    return new NativeText({ content: self.content, mentionedInfo: self.mentionedInfo, ...common(self) });
  }
}

/** `RC:ImgMsg` ↔ `image`: `imageUri` the URL, `content` the thumbnail (base64). */
export class ImageMessage extends MessageContent {
  static objectName = 'RC:ImgMsg';
  static messageName = 'ImageMessage';
  static fields = ['content', 'imageUri'];

  /**
   * @param {string} content the thumbnail, base64
   * @param {string} imageUri
   */
  static obtain(content, imageUri) {
    return new ImageMessage({ content, imageUri });
  }

  toNative() {
    const self = /** @type {any} */ (this);
    return new NativeImage({ imageUri: self.imageUri, content: self.content, ...common(self) });
  }
}

/** `RC:HQVCMsg` ↔ `voice` with a URL. */
export class HQVoiceMessage extends MessageContent {
  static objectName = 'RC:HQVCMsg';
  static messageName = 'HQVoiceMessage';
  static fields = ['remoteUrl', 'duration', 'type'];

  /**
   * @param {string} remoteUrl
   * @param {number} duration seconds
   * @param {string} [type] the codec (`aac`)
   */
  static obtain(remoteUrl, duration, type = 'aac') {
    return new HQVoiceMessage({ remoteUrl, duration, type });
  }

  toNative() {
    const self = /** @type {any} */ (this);
    return new NativeVoice({ remoteUrl: self.remoteUrl, duration: self.duration, type: self.type, ...common(self) });
  }
}

/** `RC:VcMsg` ↔ `voice` whose URL is a `data:audio/amr;base64,` URL (the seed's inline AMR). */
export class VoiceMessage extends MessageContent {
  static objectName = 'RC:VcMsg';
  static messageName = 'VoiceMessage';
  static fields = ['content', 'duration'];

  /**
   * @param {string} base64 the AMR audio, base64
   * @param {number} duration seconds
   */
  static obtain(base64, duration) {
    return new VoiceMessage({ content: base64, duration });
  }

  toNative() {
    const self = /** @type {any} */ (this);
    return new NativeVoice({ remoteUrl: AMR_PREFIX + self.content, duration: self.duration, type: 'amr', ...common(self) });
  }
}

/** `RC:FileMsg` ↔ `file`. */
export class FileMessage extends MessageContent {
  static objectName = 'RC:FileMsg';
  static messageName = 'FileMessage';
  static fields = ['name', 'size', 'type', 'fileUrl'];

  /** @param {{ name: string, size: number, type?: string, fileUrl: string }} file */
  static obtain(file) {
    return new FileMessage(file);
  }

  toNative() {
    const self = /** @type {any} */ (this);
    return new NativeFile({ fileUrl: self.fileUrl, name: self.name, size: self.size, type: self.type, ...common(self) });
  }
}

/** `RC:LBSMsg` ↔ `location`. */
export class LocationMessage extends MessageContent {
  static objectName = 'RC:LBSMsg';
  static messageName = 'LocationMessage';
  static fields = ['latitude', 'longitude', 'poi', 'content'];

  /**
   * @param {number} latitude
   * @param {number} longitude
   * @param {string} [poi]
   * @param {string} [content] a map thumbnail, base64
   */
  static obtain(latitude, longitude, poi, content) {
    return new LocationMessage({ latitude, longitude, poi, content });
  }

  toNative() {
    const self = /** @type {any} */ (this);
    return new NativeLocation({
      latitude: self.latitude,
      longitude: self.longitude,
      poi: self.poi,
      content: self.content,
      ...common(self),
    });
  }
}

/** `RC:ImgTextMsg` ↔ `rich`. */
export class RichContentMessage extends MessageContent {
  static objectName = 'RC:ImgTextMsg';
  static messageName = 'RichContentMessage';
  static fields = ['title', 'content', 'imageUri', 'url'];

  /**
   * @param {string} title
   * @param {string} content
   * @param {string} [imageUri]
   * @param {string} [url]
   */
  static obtain(title, content, imageUri, url) {
    return new RichContentMessage({ title, content, imageUri, url });
  }

  toNative() {
    const self = /** @type {any} */ (this);
    return new NativeRich({ title: self.title, content: self.content, imageUri: self.imageUri, url: self.url, ...common(self) });
  }
}

/** `RC:TypSts` ↔ `typing` (a status message); `typingContentType` is an object name. */
export class TypingStatusMessage extends MessageContent {
  static objectName = 'RC:TypSts';
  static messageName = 'TypingStatusMessage';
  static fields = ['typingContentType', 'data'];
  static isCounted = false;
  static isPersited = false;

  /**
   * @param {string} [typingContentType] the object name of what is typed (`RC:TxtMsg`)
   * @param {string} [data]
   */
  static obtain(typingContentType = TextMessage.objectName, data) {
    return new TypingStatusMessage({ typingContentType, data });
  }

  toNative() {
    const self = /** @type {any} */ (this);
    return new NativeTyping({ typingContentType: nativeObjectName(self.typingContentType ?? TextMessage.objectName), data: self.data });
  }
}

/**
 * `RC:RcCmd` ← the `tidings:recall` event: a message was recalled. Received only (send a recall
 * with `sendRecallMessage`).
 */
export class RecallCommandMessage extends MessageContent {
  static objectName = 'RC:RcCmd';
  static messageName = 'RecallCommandMessage';
  static fields = ['messageUId', 'conversationType', 'targetId', 'sentTime', 'seq'];
  static isCounted = false;
}

/**
 * `RC:ReadNtf`: the other user read a private conversation up to a message. Sending one moves
 * this user's read position (to `lastMessageSendTime`, or to the message `messageUId` names);
 * received ones come from Tidings' read receipts, with `readSeq` and, when the local store
 * knows that message, `messageUId` and `lastMessageSendTime`.
 */
export class ReadReceiptMessage extends MessageContent {
  static objectName = 'RC:ReadNtf';
  static messageName = 'ReadReceiptMessage';
  static fields = ['messageUId', 'lastMessageSendTime', 'type', 'readSeq'];
  static isCounted = false;
  static isPersited = false;

  /**
   * @param {string} messageUId
   * @param {number} lastMessageSendTime
   * @param {string | number} [type]
   */
  static obtain(messageUId, lastMessageSendTime, type = 1) {
    return new ReadReceiptMessage({ messageUId, lastMessageSendTime, type });
  }
}

/** A content of a type neither the seed's classes nor registered ones name. */
export class UnknownMessage extends MessageContent {
  static messageName = 'UnknownMessage';

  /** @param {{ objectName: string, message: unknown }} data */
  constructor(data) {
    super();
    this.unknownObjectName = data.objectName;
    /** The content as it came (a parsed JSON object). */
    this.message = data.message;
  }

  get objectName() {
    return this.unknownObjectName;
  }

  encode() {
    return { message: this.message };
  }

  toNative() {
    const body = this.message && typeof this.message === 'object' ? this.message : {};
    return new NativeUnknown({ objectName: this.unknownObjectName, content: body });
  }
}

// ---------------------------------------------------------------- contents that travel under their RC: name

/**
 * Declares a seed class that travels as an app-defined type under its object name.
 * @param {string} messageName
 * @param {string} objectName
 * @param {string[]} fields
 * @param {{ isCounted?: boolean, isPersited?: boolean }} [tag]
 * @returns {typeof MessageContent}
 */
function appDefined(messageName, objectName, fields, tag = {}) {
  const cls = class extends MessageContent {
    static objectName = objectName;
    static messageName = messageName;
    static fields = fields;
    static isCounted = tag.isCounted ?? true;
    static isPersited = tag.isPersited ?? true;
  };
  Object.defineProperty(cls, 'name', { value: messageName });
  return cls;
}

export const GIFMessage = appDefined('GIFMessage', 'RC:GIFMsg', ['gifDataSize', 'remoteUrl', 'width', 'height']);
export const SightMessage = appDefined('SightMessage', 'RC:SightMsg', ['sightUrl', 'content', 'duration', 'size', 'name']);
export const PublicServiceRichContentMessage = appDefined('PublicServiceRichContentMessage', 'RC:PSImgTxtMsg', ['richContentMessage']);
export const PublicServiceMultiRichContentMessage = appDefined('PublicServiceMultiRichContentMessage', 'RC:PSMultiImgTxtMsg', ['richContentMessages']);
const uncounted = { isCounted: false };
export const ContactNotificationMessage = appDefined('ContactNotificationMessage', 'RC:ContactNtf', ['operation', 'targetUserId', 'message', 'sourceUserId'], uncounted);
export const ProfileNotificationMessage = appDefined('ProfileNotificationMessage', 'RC:ProfileNtf', ['operation', 'data'], uncounted);
export const CommandNotificationMessage = appDefined('CommandNotificationMessage', 'RC:CmdNtf', ['name', 'data'], uncounted);
export const InformationNotificationMessage = appDefined('InformationNotificationMessage', 'RC:InfoNtf', ['message'], uncounted);
export const GroupNotificationMessage = appDefined('GroupNotificationMessage', 'RC:GrpNtf', ['operatorUserId', 'operation', 'data', 'message'], uncounted);
const statusOnly = { isCounted: false, isPersited: false };
export const CommandMessage = appDefined('CommandMessage', 'RC:CmdMsg', ['name', 'data'], statusOnly);
export const PublicServiceCommandMessage = appDefined('PublicServiceCommandMessage', 'RC:PSCmd', ['content', 'extra'], statusOnly);
// Group read receipts travel as stored, uncounted messages: the server refuses status messages
// to groups. Tidings records group reads by itself (getGroupMessageReadReceipt).
export const ReadReceiptRequestMessage = appDefined('ReadReceiptRequestMessage', 'RC:RRReqMsg', ['messageUId'], uncounted);
export const ReadReceiptResponseMessage = appDefined('ReadReceiptResponseMessage', 'RC:RRRspMsg', ['receiptMessageDic'], uncounted);

/** `obtain` of the classes above, with the seed's argument orders. */
Object.assign(InformationNotificationMessage, {
  /** @param {string} message */
  obtain: (message) => new InformationNotificationMessage({ message }),
});
Object.assign(CommandMessage, {
  /** @param {string} name @param {string} data */
  obtain: (name, data) => new CommandMessage({ name, data }),
});
Object.assign(CommandNotificationMessage, {
  /** @param {string} name @param {string} data */
  obtain: (name, data) => new CommandNotificationMessage({ name, data }),
});
Object.assign(ContactNotificationMessage, {
  /** @param {string} operation @param {string} sourceUserId @param {string} targetUserId @param {string} message */
  obtain: (operation, sourceUserId, targetUserId, message) =>
    new ContactNotificationMessage({ operation, sourceUserId, targetUserId, message }),
});
Object.assign(ProfileNotificationMessage, {
  /** @param {string} operation @param {string} data */
  obtain: (operation, data) => new ProfileNotificationMessage({ operation, data }),
});
Object.assign(GroupNotificationMessage, {
  /** @param {string} operatorUserId @param {string} operation @param {string} data @param {string} message */
  obtain: (operatorUserId, operation, data, message) =>
    new GroupNotificationMessage({ operatorUserId, operation, data, message }),
});
Object.assign(ReadReceiptRequestMessage, {
  /** @param {string} messageUId */
  obtain: (messageUId) => new ReadReceiptRequestMessage({ messageUId }),
});
Object.assign(ReadReceiptResponseMessage, {
  /** @param {Record<string, string[]>} receiptMessageDic */
  obtain: (receiptMessageDic) => new ReadReceiptResponseMessage({ receiptMessageDic }),
});
for (const cls of [GIFMessage, SightMessage]) {
  Object.assign(cls, { obtain: (/** @type {Record<string, any>} */ data) => new cls(data) });
}

/** Every class of the entry, by message name. @type {Record<string, typeof MessageContent>} */
export const MessageClasses = {};
/** Classes by the seed's object name. @type {Map<string, typeof MessageContent>} */
const byObjectName = new Map();

/** @param {typeof MessageContent} cls */
function add(cls) {
  MessageClasses[cls.messageName] = cls;
  byObjectName.set(cls.objectName, cls);
}

for (const cls of [
  TextMessage,
  ImageMessage,
  GIFMessage,
  VoiceMessage,
  HQVoiceMessage,
  FileMessage,
  LocationMessage,
  RichContentMessage,
  SightMessage,
  PublicServiceRichContentMessage,
  PublicServiceMultiRichContentMessage,
  ContactNotificationMessage,
  ProfileNotificationMessage,
  CommandNotificationMessage,
  InformationNotificationMessage,
  GroupNotificationMessage,
  ReadReceiptMessage,
  PublicServiceCommandMessage,
  CommandMessage,
  TypingStatusMessage,
  ReadReceiptRequestMessage,
  ReadReceiptResponseMessage,
  RecallCommandMessage,
]) {
  add(cls);
}
MessageClasses.UnknownMessage = UnknownMessage;

/** The seed's `RongIMClient.MessageType`: every class name, by itself. */
export const MessageType = /** @type {Record<string, string>} */ ({});
for (const name of Object.keys(MessageClasses)) MessageType[name] = name;

/**
 * Tidings' built-in types and the seed's object names (one each way; `voice` reads back as
 * `RC:HQVCMsg` unless its URL is inline AMR).
 */
const NATIVE_TO_SEED = new Map([
  ['text', 'RC:TxtMsg'],
  ['image', 'RC:ImgMsg'],
  ['voice', 'RC:HQVCMsg'],
  ['file', 'RC:FileMsg'],
  ['location', 'RC:LBSMsg'],
  ['rich', 'RC:ImgTextMsg'],
  ['typing', 'RC:TypSts'],
  ['tidings:recall', 'RC:RcCmd'],
  ['tidings:read', 'RC:ReadNtf'],
]);
const SEED_TO_NATIVE = new Map([...NATIVE_TO_SEED].map(([n, s]) => [s, n]));
SEED_TO_NATIVE.set('RC:VcMsg', 'voice');

// The classes with no Tidings type are registered with the Tidings SDK under their RC: names,
// so that received ones decode with their fields.
for (const cls of Object.values(MessageClasses)) {
  if (!SEED_TO_NATIVE.has(cls.objectName) && cls.objectName && cls !== ReadReceiptMessage) nativeClass(cls);
}

/**
 * The seed's object name of a Tidings type (app-defined types keep theirs).
 * @param {string} native
 */
export function seedObjectName(native) {
  return NATIVE_TO_SEED.get(native) ?? native;
}

/**
 * The Tidings type a seed object name travels as.
 * @param {string} seed
 */
export function nativeObjectName(seed) {
  return SEED_TO_NATIVE.get(seed) ?? seed;
}

/**
 * The class of a seed object name, if there is one.
 * @param {string} objectName
 */
export function classOf(objectName) {
  return byObjectName.get(objectName);
}

/**
 * Rebuilds a content from what `encode()` gave (the local store).
 * @param {string} objectName the seed's
 * @param {Record<string, any>} fields
 * @returns {MessageContent}
 */
export function contentFromFields(objectName, fields) {
  const cls = byObjectName.get(objectName);
  if (!cls || cls === UnknownMessage) return new UnknownMessage({ objectName, message: fields?.message ?? fields });
  return new cls(fields);
}

/**
 * The entry's content of a Tidings content.
 * @param {NativeContent} native
 * @param {string} nativeType the Tidings `msgType`
 * @returns {MessageContent}
 */
export function fromNative(native, nativeType) {
  const n = /** @type {any} */ (native);
  const base = { extra: n.extra, user: n.user };
  switch (nativeType) {
    case 'text':
      return new TextMessage({ content: n.content, ...base });
    case 'image':
      return new ImageMessage({ imageUri: n.imageUri, content: n.content, ...base });
    case 'voice':
      if (typeof n.remoteUrl === 'string' && n.remoteUrl.startsWith(AMR_PREFIX)) {
        return new VoiceMessage({ content: n.remoteUrl.slice(AMR_PREFIX.length), duration: n.duration, ...base });
      }
      return new HQVoiceMessage({ remoteUrl: n.remoteUrl, duration: n.duration, type: n.type, ...base });
    case 'file':
      return new FileMessage({ fileUrl: n.fileUrl, name: n.name, size: n.size, type: n.type, ...base });
    case 'location':
      return new LocationMessage({ latitude: n.latitude, longitude: n.longitude, poi: n.poi, content: n.content, ...base });
    case 'rich':
      return new RichContentMessage({ title: n.title, content: n.content, imageUri: n.imageUri, url: n.url, ...base });
    case 'typing':
      return new TypingStatusMessage({ typingContentType: seedObjectName(n.typingContentType ?? 'text'), data: n.data });
    case 'tidings:recall':
      return new RecallCommandMessage({ seq: n.seq });
    case 'tidings:group':
      if (n instanceof NativeUnknown && n.content && typeof n.content === 'object') return groupNotification(/** @type {any} */ (n.content));
      break;
    default:
      break;
  }
  const cls = byObjectName.get(nativeType);
  if (cls && n instanceof RegisteredMessage) return new cls(n.fields);
  if (cls && n instanceof NativeUnknown && n.content && typeof n.content === 'object') return new cls(n.content);
  const body = n instanceof NativeUnknown ? n.content : n instanceof RegisteredMessage ? n.fields : n.encode?.();
  return new UnknownMessage({ objectName: nativeType, message: body });
}

/** Tidings' group operations, as RongCloud's group notifications name them. */
const GROUP_OPERATIONS = /** @type {Record<string, string>} */ ({
  create: 'Create',
  add: 'Add',
  remove: 'Kicked',
  quit: 'Quit',
  update: 'Rename',
  transfer: 'Transfer',
  mute: 'Mute',
  unmute: 'Unmute',
  dismiss: 'Dismiss',
});

/**
 * `RC:GrpNtf` of a `tidings:group` notification: `operation` in RongCloud's words, `data` the
 * notification as Tidings has it (`userIds`, `name`, `ownerId`, …).
 * @param {Record<string, any>} wire
 */
function groupNotification(wire) {
  const operation = String(wire.operation ?? '');
  return new GroupNotificationMessage({
    operatorUserId: String(wire.operatorId ?? ''),
    operation: GROUP_OPERATIONS[operation] ?? operation,
    data: wire,
    message: '',
  });
}

/**
 * Seed 004's `registerMessageType`: an app-defined type, sent under `objectName`.
 * @param {string} messageType the class name
 * @param {string} objectName
 * @param {{ isCounted?: boolean, isPersited?: boolean }} [messageTag]
 * @param {string[]} [propNames]
 * @returns {typeof MessageContent}
 */
export function registerMessageType(messageType, objectName, messageTag = {}, propNames = []) {
  // The Tidings registry checks the name (and refuses built-in ones) first.
  registerNative(messageType, objectName, messageTag, propNames);
  const cls = appDefined(messageType, objectName, [...propNames], messageTag);
  add(cls);
  MessageType[messageType] = messageType;
  return cls;
}

/**
 * The text of a content that searches find (the seed's search field aside).
 * @param {MessageContent} content
 */
export function searchableText(content) {
  const c = /** @type {any} */ (content);
  return [c.content, c.title, c.name, c.poi, c.message]
    .filter((v) => typeof v === 'string')
    .join('\n');
}
