// Message contents: the classes an application sends (seed 004's TextMessage, ImageMessage, …),
// each mapping to one of the protocol's built-in types (`text`, `image`, `file`, `voice`,
// `location`, `rich`), and the registry of app-defined types. The protocol's content is a JSON
// object; these classes carry the seed's field names and translate.

/**
 * @typedef {{ id?: string, name?: string, portrait?: string }} UserInfo
 */

/**
 * Removes the keys whose value is `undefined`.
 * @param {Record<string, unknown>} o
 * @returns {Record<string, unknown>}
 */
function defined(o) {
  /** @type {Record<string, unknown>} */
  const out = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out;
}

/**
 * @param {unknown} v
 * @returns {string | undefined}
 */
function str(v) {
  return typeof v === 'string' ? v : undefined;
}

/**
 * @param {unknown} v
 * @returns {number | undefined}
 */
function num(v) {
  return typeof v === 'number' ? v : undefined;
}

/** The base of every message content. */
export class MessageContent {
  /** The protocol's `msgType`. */
  static objectName = '';
  /** The class's name as the seed's `message.messageType` reports it. */
  static messageType = 'MessageContent';
  /** Whether the message raises the recipient's unread count (app-defined types only). */
  static isCounted = true;
  /** Whether the server stores it; `false` makes it a status message (typing and the like). */
  static isPersited = true;

  /** @param {{ extra?: string, user?: UserInfo }} [data] */
  constructor(data = {}) {
    /** @type {string | undefined} app data carried along */
    this.extra = data.extra;
    /** @type {UserInfo | undefined} the sender's profile, if the app sends it along */
    this.user = data.user;
  }

  /** The seed's `messageName`: the class name of this content. */
  get messageName() {
    return /** @type {typeof MessageContent} */ (this.constructor).messageType;
  }

  /** The protocol's `msgType` of this content. */
  get objectName() {
    return /** @type {typeof MessageContent} */ (this.constructor).objectName;
  }

  /**
   * The protocol's content object.
   * @returns {Record<string, unknown>}
   */
  encode() {
    return defined({ extra: this.extra, user: this.user });
  }

  /**
   * The fields every content may carry, from the protocol's content.
   * @param {Record<string, any>} wire
   */
  static common(wire) {
    return { extra: str(wire.extra), user: wire.user && typeof wire.user === 'object' ? wire.user : undefined };
  }

  /**
   * @param {Record<string, any>} wire
   * @returns {MessageContent}
   */
  static decode(wire) {
    return new MessageContent(MessageContent.common(wire));
  }
}

/** `text`: `{text}`. */
export class TextMessage extends MessageContent {
  static objectName = 'text';
  static messageType = 'TextMessage';

  /** @param {{ content: string, extra?: string, user?: UserInfo, mentionedInfo?: import('./types.js').MentionedInfo }} data */
  constructor(data) {
    super(data);
    this.content = data.content;
    /** Mentions to send with it (group messages); the SDK moves them to the frame. */
    this.mentionedInfo = data.mentionedInfo;
  }

  encode() {
    return defined({ text: this.content, ...super.encode() });
  }

  /** @param {Record<string, any>} wire */
  static decode(wire) {
    return new TextMessage({ content: str(wire.text) ?? '', ...MessageContent.common(wire) });
  }
}

/** `image`: `{url, thumbnail?}`; the seed's `imageUri` is the url, `content` the thumbnail. */
export class ImageMessage extends MessageContent {
  static objectName = 'image';
  static messageType = 'ImageMessage';

  /** @param {{ imageUri: string, content?: string, extra?: string, user?: UserInfo }} data */
  constructor(data) {
    super(data);
    this.imageUri = data.imageUri;
    /** A small preview, for example base64 of a small JPEG. */
    this.content = data.content;
  }

  encode() {
    return defined({ url: this.imageUri, thumbnail: this.content, ...super.encode() });
  }

  /** @param {Record<string, any>} wire */
  static decode(wire) {
    return new ImageMessage({
      imageUri: str(wire.url) ?? '',
      content: str(wire.thumbnail),
      ...MessageContent.common(wire),
    });
  }
}

/** `file`: `{url, name, size, type?}`. */
export class FileMessage extends MessageContent {
  static objectName = 'file';
  static messageType = 'FileMessage';

  /** @param {{ fileUrl: string, name: string, size: number, type?: string, extra?: string, user?: UserInfo }} data */
  constructor(data) {
    super(data);
    this.fileUrl = data.fileUrl;
    this.name = data.name;
    this.size = data.size;
    /** The file's extension or MIME type. */
    this.type = data.type;
  }

  encode() {
    return defined({
      url: this.fileUrl,
      name: this.name,
      size: this.size,
      type: this.type,
      ...super.encode(),
    });
  }

  /** @param {Record<string, any>} wire */
  static decode(wire) {
    return new FileMessage({
      fileUrl: str(wire.url) ?? '',
      name: str(wire.name) ?? '',
      size: num(wire.size) ?? 0,
      type: str(wire.type),
      ...MessageContent.common(wire),
    });
  }
}

/** `voice`: `{url, duration}` (seconds); the seed's HQ voice `remoteUrl` is the url. */
export class VoiceMessage extends MessageContent {
  static objectName = 'voice';
  static messageType = 'VoiceMessage';

  /** @param {{ remoteUrl: string, duration: number, type?: string, extra?: string, user?: UserInfo }} data */
  constructor(data) {
    super(data);
    this.remoteUrl = data.remoteUrl;
    this.duration = data.duration;
    /** The codec, for example `aac`. */
    this.type = data.type;
  }

  encode() {
    return defined({ url: this.remoteUrl, duration: this.duration, type: this.type, ...super.encode() });
  }

  /** @param {Record<string, any>} wire */
  static decode(wire) {
    return new VoiceMessage({
      remoteUrl: str(wire.url) ?? '',
      duration: num(wire.duration) ?? 0,
      type: str(wire.type),
      ...MessageContent.common(wire),
    });
  }
}

/** `location`: `{lat, lng, name?, thumbnail?}`; the seed's `poi` is the name, `content` the thumbnail. */
export class LocationMessage extends MessageContent {
  static objectName = 'location';
  static messageType = 'LocationMessage';

  /** @param {{ latitude: number, longitude: number, poi?: string, content?: string, extra?: string, user?: UserInfo }} data */
  constructor(data) {
    super(data);
    this.latitude = data.latitude;
    this.longitude = data.longitude;
    this.poi = data.poi;
    this.content = data.content;
  }

  encode() {
    return defined({
      lat: this.latitude,
      lng: this.longitude,
      name: this.poi,
      thumbnail: this.content,
      ...super.encode(),
    });
  }

  /** @param {Record<string, any>} wire */
  static decode(wire) {
    return new LocationMessage({
      latitude: num(wire.lat) ?? 0,
      longitude: num(wire.lng) ?? 0,
      poi: str(wire.name),
      content: str(wire.thumbnail),
      ...MessageContent.common(wire),
    });
  }
}

/** `rich`: `{title, content?, imageUri?, url?}` (an article card). */
export class RichContentMessage extends MessageContent {
  static objectName = 'rich';
  static messageType = 'RichContentMessage';

  /** @param {{ title: string, content?: string, imageUri?: string, url?: string, extra?: string, user?: UserInfo }} data */
  constructor(data) {
    super(data);
    this.title = data.title;
    this.content = data.content;
    this.imageUri = data.imageUri;
    this.url = data.url;
  }

  encode() {
    return defined({
      title: this.title,
      content: this.content,
      imageUri: this.imageUri,
      url: this.url,
      ...super.encode(),
    });
  }

  /** @param {Record<string, any>} wire */
  static decode(wire) {
    return new RichContentMessage({
      title: str(wire.title) ?? '',
      content: str(wire.content),
      imageUri: str(wire.imageUri),
      url: str(wire.url),
      ...MessageContent.common(wire),
    });
  }
}

/** `typing`: a status message, never stored (`{typingContentType}` as seed 004 has it). */
export class TypingStatusMessage extends MessageContent {
  static objectName = 'typing';
  static messageType = 'TypingStatusMessage';
  static isCounted = false;
  static isPersited = false;

  /** @param {{ typingContentType?: string, data?: string }} [data] */
  constructor(data = {}) {
    super();
    /** What is being typed: the object name of the content (`text` by default). */
    this.typingContentType = data.typingContentType ?? TextMessage.objectName;
    this.data = data.data;
  }

  encode() {
    return defined({ typingContentType: this.typingContentType, data: this.data });
  }

  /** @param {Record<string, any>} wire */
  static decode(wire) {
    return new TypingStatusMessage({ typingContentType: str(wire.typingContentType), data: str(wire.data) });
  }
}

/** `tidings:recall`: the event a recall adds to the conversation (`{action, seq}`). */
export class RecallCommandMessage extends MessageContent {
  static objectName = 'tidings:recall';
  static messageType = 'RecallCommandMessage';
  static isCounted = false;

  /** @param {{ seq: number }} data */
  constructor(data) {
    super();
    /** The conversation seq of the recalled message. */
    this.seq = data.seq;
  }

  encode() {
    return { action: 'recall', seq: this.seq };
  }

  /** @param {Record<string, any>} wire */
  static decode(wire) {
    return new RecallCommandMessage({ seq: Number(wire.seq ?? 0) });
  }
}

/** A content of a type this SDK does not know (`objectName` says which); `content` is its JSON. */
export class UnknownMessage extends MessageContent {
  static messageType = 'UnknownMessage';

  /**
   * @param {{ objectName: string, content: unknown }} data
   */
  constructor(data) {
    super();
    this.unknownObjectName = data.objectName;
    /** The content as it came: a parsed JSON object, or the text if it did not parse. */
    this.content = data.content;
  }

  get objectName() {
    return this.unknownObjectName;
  }

  encode() {
    return this.content && typeof this.content === 'object'
      ? /** @type {Record<string, unknown>} */ (this.content)
      : {};
  }
}

/**
 * Seed 004's message tag: whether a registered type counts as unread and is stored.
 */
export class MessageTag {
  /**
   * @param {boolean} isCounted
   * @param {boolean} isPersited
   */
  constructor(isCounted, isPersited) {
    this.isCounted = isCounted;
    this.isPersited = isPersited;
  }
}

/**
 * A content of a registered app-defined type: it carries its fields as they are on the wire.
 */
export class RegisteredMessage extends MessageContent {
  /** The fields of the type (empty: any). */
  /** @type {string[]} */
  static propNames = [];

  /** @param {Record<string, unknown>} [data] */
  constructor(data = {}) {
    super();
    const props = /** @type {typeof RegisteredMessage} */ (this.constructor).propNames;
    /** @type {Record<string, unknown>} the content's fields */
    this.fields = {};
    for (const [k, v] of Object.entries(data)) {
      if (v !== undefined && (props.length === 0 || props.includes(k))) this.fields[k] = v;
    }
    Object.assign(this, this.fields);
  }

  encode() {
    return { ...this.fields };
  }
}

/**
 * What the SDK needs of a content class.
 * @typedef {object} ContentClass
 * @property {string} objectName
 * @property {string} messageType
 * @property {boolean} isCounted
 * @property {boolean} isPersited
 * @property {(wire: Record<string, any>) => MessageContent} decode
 */

/** The classes by object name (`msgType`). @type {Map<string, ContentClass>} */
const registry = new Map();

/** @param {ContentClass} cls */
function register(cls) {
  registry.set(cls.objectName, cls);
}

for (const cls of [
  TextMessage,
  ImageMessage,
  FileMessage,
  VoiceMessage,
  LocationMessage,
  RichContentMessage,
  TypingStatusMessage,
  RecallCommandMessage,
]) {
  register(cls);
}

/** What the server accepts as an app-defined `msgType`. */
const APP_TYPE = /^[A-Za-z0-9_\-.:]{1,32}$/;

/**
 * Registers an app-defined message type (seed 004's `registerMessageType`); answers its class,
 * which is also kept in `RegisteredMessages[messageType]`. Received messages of `objectName`
 * are decoded into it.
 * @param {string} messageType the class name, for example `PokeMessage`
 * @param {string} objectName the protocol's `msgType`, for example `app:poke` (1–32 of
 *   `A-Za-z0-9_-.:`; not beginning with `tidings:`, not a built-in type)
 * @param {MessageTag | { isCounted?: boolean, isPersited?: boolean }} [messageTag]
 * @param {string[]} [propNames] the content's fields (empty: whatever is given)
 * @returns {typeof RegisteredMessage}
 */
export function registerMessageType(messageType, objectName, messageTag = {}, propNames = []) {
  if (!APP_TYPE.test(objectName) || objectName.startsWith('tidings:')) {
    throw new TypeError(`invalid message type name: ${objectName}`);
  }
  const existing = registry.get(objectName);
  if (existing && !Object.values(RegisteredMessages).includes(/** @type {any} */ (existing))) {
    throw new TypeError(`${objectName} is a built-in type`);
  }
  /** @type {typeof RegisteredMessage} */
  const cls = class extends RegisteredMessage {
    static objectName = objectName;
    static messageType = messageType;
    static isCounted = messageTag.isCounted ?? true;
    static isPersited = messageTag.isPersited ?? true;
    static propNames = [...propNames];

    /**
     * @param {Record<string, any>} wire
     * @returns {RegisteredMessage}
     */
    static decode(wire) {
      return new cls(wire);
    }
  };
  Object.defineProperty(cls, 'name', { value: messageType });
  register(cls);
  RegisteredMessages[messageType] = cls;
  return cls;
}

/** The classes registered with `registerMessageType`, by message type. */
/** @type {Record<string, typeof RegisteredMessage>} */
export const RegisteredMessages = {};

/**
 * Decodes a protocol content into its class.
 * @param {string} objectName the `msgType`
 * @param {string} text the content, JSON as text
 * @returns {MessageContent}
 */
export function decodeContent(objectName, text) {
  let wire;
  try {
    wire = JSON.parse(text);
  } catch {
    return new UnknownMessage({ objectName, content: text });
  }
  const cls = registry.get(objectName);
  if (!cls || !wire || typeof wire !== 'object') return new UnknownMessage({ objectName, content: wire });
  return cls.decode(wire);
}

/**
 * The class of an object name, if one is registered.
 * @param {string} objectName
 * @returns {ContentClass | undefined}
 */
export function contentClass(objectName) {
  return registry.get(objectName);
}
