// The demo chat page: built-in accounts with a profile (name and picture), the conversation list,
// one-to-one and group chat with images and files, discussions (groups people make, invite to,
// rename and leave from the page), and chatrooms, over the browser SDK. On a narrow
// screen the list and the chat are two views. One-to-one chats can be started end-to-end
// encrypted (the SDK's E2ee, MLS; a conversation holding encrypted messages stays encrypted):
// each browser is a device with its own keys, kept in IndexedDB. Everything it loads comes from
// this server.
import {
  ConnectionStatus,
  ConversationType,
  E2ee,
  FileMessage,
  ImageMessage,
  TextMessage,
  TidingsClient,
} from '/sdk/index.js';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const SESSION_KEY = 'tidings-demo-session';
const PRIVATE = ConversationType.PRIVATE;
const GROUP = ConversationType.GROUP;
const CHATROOM = ConversationType.CHATROOM;
/** Recent messages shown on joining a chatroom. */
const ROOM_RECENT = 20;
/** Messages per history page (the protocol's largest). */
const PAGE = 100;

/** @type {TidingsClient | null} */
let client = null;
/** @type {{ userId: string, token: string } | null} */
let session = null;
/** The open conversation's target (the other user, the group or the chatroom), and its type. */
let open = '';
let openType = PRIVATE;
/** The oldest seq shown, for loading earlier messages; 0 when all are shown. */
let oldestSeq = 0;
let loadingOlder = false;
/** @type {Map<string, any>} conversations (one-to-one and group) by `type:target` */
const conversations = new Map();
const convKey = (type, target) => `${type}:${target}`;
/** Group names by group id, as far as known. */
const groupNames = new Map();
/** What else is known of each group (`kind`, `ownerId`, `inviteOpen`), by group id. */
const groupInfo = new Map();
/** The groups this user left from this page: their list entries stay gone until a rejoin. */
const leftGroups = new Set();
/** Presence of the users watched, by user id; and the ids this connection watches. */
const presence = new Map();
let watching = '';
/** Profiles (`{name, portrait}`) by user id, as far as fetched, and the ids being fetched. */
const profiles = new Map();
const fetching = new Set();
/** Ids to fetch with the next lookup. */
let profileBatch = /** @type {Set<string>} */ (new Set());
let typingTimer = 0;
let lastTypingSent = 0;

/**
 * This browser's end-to-end encryption (one device: the SDK client's device id, its MLS state in
 * IndexedDB), once open; `e2eeReady` answers it, or null when it cannot be had here.
 * @type {E2ee | null}
 */
let e2ee = null;
/** @type {Promise<E2ee | null>} */
let e2eeReady = Promise.resolve(null);
/** Conversations (`type:target`) known to be encrypted: started so, or holding an `mls` message. */
const encryptedConvs = new Set();
/** Devices (`user:device`) whose keys changed, by conversation (`type:target`). */
const keyWarnings = new Map();
/** What the list previews for an encrypted message, by its uid (its text once decrypted here). */
const plainOf = new Map();
/** Incoming messages are handled one after another, in the order they come (decrypting is async). */
let inbound = Promise.resolve();
/** Numbers the encrypted messages shown before the server took them. */
let localCounter = 0;

// ------------------------------------------------------------------ accounts

async function account(path, body, token, method = 'POST') {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(`/v1/accounts/${path}`, {
    method,
    headers,
    body: body ? JSON.stringify(body) : undefined,
  });
  if (r.status === 204) return {};
  const answer = await r.json().catch(() => ({}));
  if (!r.ok || answer.code) throw new Error(answer.message || `HTTP ${r.status}`);
  return answer;
}

function credentials() {
  return {
    account: /** @type {HTMLInputElement} */ ($('account')).value.trim(),
    password: /** @type {HTMLInputElement} */ ($('password')).value,
  };
}

async function signIn(path) {
  $('auth-error').textContent = '';
  try {
    const answer = await account(path, credentials());
    await start({ userId: answer.userId, token: answer.token });
  } catch (e) {
    $('auth-error').textContent = String(e.message ?? e);
  }
}

$('auth-form').addEventListener('submit', (e) => {
  e.preventDefault();
  signIn('login');
});
$('register').addEventListener('click', () => {
  const form = /** @type {HTMLFormElement} */ ($('auth-form'));
  if (form.reportValidity()) signIn('register');
});
$('sign-out').addEventListener('click', async () => {
  const token = session?.token;
  await client?.disconnect();
  if (token) await account('logout', null, token).catch(() => {});
  signedOut('');
});

function signedOut(reason) {
  localStorage.removeItem(SESSION_KEY);
  session = null;
  client = null;
  e2ee = null;
  e2eeReady = Promise.resolve(null);
  encryptedConvs.clear();
  keyWarnings.clear();
  plainOf.clear();
  delete $('app').dataset.e2ee;
  open = '';
  openType = PRIVATE;
  conversations.clear();
  groupNames.clear();
  groupInfo.clear();
  leftGroups.clear();
  lookups.clear();
  presence.clear();
  profiles.clear();
  fetching.clear();
  profileBatch = new Set();
  watching = '';
  $('app').hidden = true;
  $('auth').hidden = false;
  $('auth-error').textContent = reason;
  banner('');
}

// ------------------------------------------------------------------ connection

function banner(text, bad = false) {
  const b = $('banner');
  b.hidden = !text;
  b.textContent = text;
  b.classList.toggle('bad', bad);
}

function onStatus(status, detail) {
  $('app').dataset.status = String(status);
  switch (status) {
    case ConnectionStatus.CONNECTED:
      banner(client?.getTransportType() === 0 ? 'Connected over long-polling' : '');
      // A subscription lasts as long as its connection: watch again on this one.
      watching = '';
      watchPresence();
      // Key packages are used up as others add this device: top them up now and then.
      e2ee?.publish().catch(() => {});
      break;
    case ConnectionStatus.CONNECTING:
      banner('Connecting…');
      break;
    case ConnectionStatus.NETWORK_UNAVAILABLE:
    case ConnectionStatus.CONNECTION_CLOSED:
      banner('Connection lost: reconnecting…');
      break;
    case ConnectionStatus.WEBSOCKET_UNAVAILABLE:
      banner('WebSocket unavailable: falling back to long-polling…');
      break;
    case ConnectionStatus.KICKED_OFFLINE_BY_OTHER_CLIENT:
      banner('Signed in on another device: this page is disconnected.', true);
      break;
    case ConnectionStatus.DISCONNECTED:
      if (session) banner('Disconnected', true);
      break;
    default:
      banner(detail?.message ? `Not connected: ${detail.message}` : `Not connected (${status})`, true);
  }
}

function showTransport(kind) {
  const t = $('transport');
  t.dataset.transport = kind;
  t.textContent = kind === 'polling' ? 'long-poll' : 'websocket';
}

async function start(s) {
  session = s;
  localStorage.setItem(SESSION_KEY, JSON.stringify(s));
  loadEncryptionNotes();
  $('auth').hidden = true;
  $('app').hidden = false;
  setView('list');
  peerRead.clear();
  showMe();
  const params = new URLSearchParams(location.search);
  const c = new TidingsClient().init('demo', {
    navi: location.origin,
    transport: /** @type {any} */ (params.get('transport') ?? 'auto'),
    deviceId: params.get('device') ?? undefined,
  });
  client = c;
  // Messages may come while connecting: they wait for the E2ee, opened once connected.
  /** @type {(e: E2ee | null) => void} */
  let e2eeOpened = () => {};
  e2eeReady = new Promise((resolve) => (e2eeOpened = resolve));
  c.setConnectionStatusListener({ onChanged: onStatus });
  c.on('transport', showTransport);
  c.on('message', (m) => {
    inbound = inbound.then(() => onMessage(m)).catch((e) => console.error(e));
  });
  c.on('conversation', (conv) => {
    if (conv.conversationType !== PRIVATE && conv.conversationType !== GROUP) return;
    const key = convKey(conv.conversationType, conv.targetId);
    if (conv.removed || (conv.conversationType === GROUP && leftGroups.has(conv.targetId))) conversations.delete(key);
    else conversations.set(key, conv);
    if (conv.conversationType === GROUP) nameGroup(conv.targetId);
    notePeerRead(conv);
    renderConversations();
  });
  c.on('typing', (t) => {
    if (t.conversationType !== openType || t.targetId !== open || t.userId === session?.userId) return;
    $('typing').textContent = `${t.userId} is typing…`;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => ($('typing').textContent = ''), 6000);
  });
  c.on('readReceipt', onReadReceipt);
  c.on('presence', (p) => {
    presence.set(p.userId, p);
    showPresence();
  });
  c.on('sentStatus', (m) => {
    // The E2ee's own sends (`mls`) show as what they hold, from its answer.
    if (isOpen(m) && m.objectName !== 'mls') render(m);
  });
  c.on('chatroom', (e) => {
    if (openType !== CHATROOM || e.chatroomId !== open) return;
    if (e.type === 'left') {
      banner(`You are out of the room (${e.code})`, true);
      $('composer').hidden = true;
    }
    if (e.type === 'notice') loadRoomMembers(open);
  });
  try {
    await c.connect(s.token);
  } catch (e) {
    e2eeOpened(null);
    if (client !== c) return;
    if ([31004, 31005, 31020, 31021, 31009].includes(e.serverCode)) {
      signedOut('Your session has ended: sign in again.');
    }
    return;
  }
  showTransport(c.getTransportType() === 0 ? 'polling' : 'websocket');
  wantProfiles([s.userId]);
  // The list does not wait for the E2ee (IndexedDB, a lock, key packages): encrypted
  // messages wait for it on their own (`e2eeReady`).
  const opening = openE2ee(c).then(e2eeOpened);
  await loadConversations();
  await opening;
}

// ------------------------------------------------------------------ end-to-end encryption
//
// docs/e2ee.md: every `mls` message goes through `e2ee.receive`, in the order they come (history
// too: what this device decrypted before comes from its state); an encrypted conversation sends
// with `e2ee.sendText`, never in the clear. `#app[data-e2ee]` says how far the device is:
// `ready` once its key packages are published (others can add it), `unavailable` if it cannot be
// opened here.

/** The device locks this page holds (each for as long as the page lives). */
const heldLocks = new Set();

/**
 * Holds a lock on this device's state, so that two tabs of one browser (one device id, one
 * IndexedDB) never both use it, which would fork its groups: false if another tab holds it.
 */
async function lockDevice(name) {
  if (heldLocks.has(name) || !navigator.locks) return true;
  const got = await new Promise((resolve) => {
    navigator.locks
      .request(name, { ifAvailable: true }, (lock) => {
        resolve(Boolean(lock));
        // Held until the page goes.
        return lock ? new Promise(() => {}) : undefined;
      })
      .catch(() => resolve(false));
  });
  if (got) heldLocks.add(name);
  return got;
}

/** Opens this device's E2ee and publishes its key packages; answers it, or null. */
async function openE2ee(c) {
  try {
    if (!(await lockDevice(`tidings-demo-e2ee:${c.getCurrentUserId()}:${c.deviceId}`))) {
      if (client === c) $('app').dataset.e2ee = 'busy';
      return null;
    }
    const e = await E2ee.open(c);
    if (client !== c) return null;
    e2ee = e;
    e.publish().then(
      () => {
        if (client === c) $('app').dataset.e2ee = 'ready';
      },
      (err) => {
        if (client === c) $('app').dataset.e2ee = 'unpublished';
        console.warn('key packages not published', err);
      },
    );
    return e;
  } catch (err) {
    if (client === c) $('app').dataset.e2ee = 'unavailable';
    console.warn('no end-to-end encryption on this page', err);
    return null;
  }
}

const notesKey = () => `tidings-demo-e2ee:${session?.userId ?? ''}`;

/** Which conversations this user's page knows as encrypted, and their key warnings, as kept. */
function loadEncryptionNotes() {
  encryptedConvs.clear();
  keyWarnings.clear();
  try {
    const kept = JSON.parse(localStorage.getItem(notesKey()) ?? '{}');
    for (const k of kept.encrypted ?? []) encryptedConvs.add(String(k));
    for (const [k, ids] of Object.entries(kept.keyWarnings ?? {})) keyWarnings.set(k, new Set(/** @type {string[]} */ (ids)));
  } catch {
    // nothing kept
  }
}

function saveEncryptionNotes() {
  if (!session) return;
  const kept = {
    encrypted: [...encryptedConvs],
    keyWarnings: Object.fromEntries([...keyWarnings].map(([k, ids]) => [k, [...ids]])),
  };
  localStorage.setItem(notesKey(), JSON.stringify(kept));
}

/** Whether a conversation is encrypted: started so here, or it holds an `mls` message. */
function isEncrypted(type, target) {
  const key = convKey(type, target);
  return encryptedConvs.has(key) || conversations.get(key)?.latestMessage?.objectName === 'mls';
}

/** Marks a conversation as encrypted (from now on it never sends in the clear). */
function noteEncrypted(type, target) {
  const key = convKey(type, target);
  if (encryptedConvs.has(key)) return;
  encryptedConvs.add(key);
  saveEncryptionNotes();
  renderConversations();
  if (open === target && openType === type) showEncryption();
}

/** Notes devices whose keys changed in a conversation (its safety numbers are to compare again). */
function noteKeysChanged(type, target, ids) {
  if (!ids?.length) return;
  const key = convKey(type, target);
  const set = keyWarnings.get(key) ?? new Set();
  for (const id of ids) set.add(id);
  keyWarnings.set(key, set);
  saveEncryptionNotes();
}

/**
 * Whether an `mls` message holds an application message (a PrivateMessage: the E2ee sends its
 * handshakes as PublicMessages), from its MLSMessage header (version, then wire format 2).
 */
function isApplication(m) {
  let c = m.content;
  if (c && typeof c === 'object' && !('mls' in c) && 'content' in c) c = c.content;
  if (typeof c === 'string') {
    try {
      c = JSON.parse(c);
    } catch {
      return false;
    }
  }
  const b64 = typeof c?.mls === 'string' ? c.mls : '';
  try {
    const head = atob(b64.slice(0, 8).replace(/-/g, '+').replace(/_/g, '/'));
    return head.charCodeAt(2) === 0 && head.charCodeAt(3) === 2;
  } catch {
    return false;
  }
}

/**
 * An `mls` message as it shows: what it holds once decrypted, a line saying it cannot be read on
 * this device, or null (a change of the group's devices, or nothing to show).
 */
async function decrypt(m) {
  noteEncrypted(m.conversationType, m.targetId);
  const e = await e2eeReady;
  if (!e) return unreadableMessage(m);
  let r;
  try {
    r = await e.receive(m);
  } catch (err) {
    console.warn('not decrypted', err);
    return unreadableMessage(m);
  }
  switch (r.kind) {
    case 'message':
      return decryptedMessage(r.message, m.clientMsgId);
    case 'unreadable':
      return unreadableMessage(m);
    case 'joined':
    case 'changed':
      noteKeysChanged(m.conversationType, m.targetId, r.keysChanged);
      if (isOpen(m)) refreshSafety();
      return null;
    case 'nothing':
      // Processed before without its text kept: it could not be read then either.
      return isApplication(m) ? unreadableMessage(m) : null;
    default:
      return null;
  }
}

/** A decrypted message (the SDK's `Decrypted`) in the form the page shows messages in. */
function decryptedMessage(d, clientMsgId = '') {
  const text = d.type === 'text' && typeof d.content?.text === 'string' ? d.content.text : null;
  plainOf.set(d.uid, text ?? `[${d.type}]`);
  return {
    conversationType: d.conversationType,
    targetId: d.targetId,
    messageUId: d.uid,
    clientMsgId,
    seq: d.seq,
    sentTime: d.sentTime,
    senderUserId: d.senderId,
    messageDirection: d.senderId === session?.userId ? 1 : 2,
    sentStatus: 30,
    objectName: 'mls',
    encrypted: true,
    innerType: d.type,
    messageType: text === null ? 'EncryptedMessage' : 'TextMessage',
    content: text === null ? d.content : new TextMessage({ content: text }),
  };
}

/** An `mls` message this device cannot read (sent before it joined, or not for it). */
function unreadableMessage(m) {
  return {
    conversationType: m.conversationType,
    targetId: m.targetId,
    messageUId: m.messageUId,
    clientMsgId: m.clientMsgId,
    seq: m.seq,
    sentTime: m.sentTime,
    senderUserId: m.senderUserId,
    messageDirection: m.messageDirection,
    sentStatus: 30,
    objectName: 'mls',
    encrypted: true,
    unreadable: true,
    messageType: 'Unreadable',
    content: null,
  };
}

/** Decrypts the newest message of each encrypted conversation in the list, for its preview. */
function decryptPreviews() {
  for (const conv of conversations.values()) {
    const latest = conv.latestMessage;
    if (latest?.objectName !== 'mls' || plainOf.has(latest.messageUId)) continue;
    inbound = inbound
      .then(async () => {
        const shown = await decrypt(latest);
        if (shown?.unreadable) plainOf.set(latest.messageUId, "Can't be read on this device");
        renderConversations();
      })
      .catch((e) => console.error(e));
  }
}

/** The lock, the safety numbers button and the composer as the open conversation is. */
function showEncryption() {
  const on = Boolean(open) && openType !== CHATROOM && isEncrypted(openType, open);
  $('chat-lock').hidden = !on;
  $('safety-button').hidden = !on;
  $('attach').hidden = on;
  $('chat').dataset.encrypted = String(on);
  /** @type {HTMLInputElement} */ ($('text')).placeholder = on ? 'Write an encrypted message' : 'Write a message';
  if (!on) showSafety(false);
}

/** Shows (or hides) the safety numbers of the open conversation. */
function showSafety(show) {
  $('safety').hidden = !show;
  $('safety-button').setAttribute('aria-expanded', String(show));
  if (show) refreshSafety();
}

$('safety-button').addEventListener('click', () => showSafety($('safety').hidden));

/** Lists the open conversation's devices with their safety numbers, this device's marked. */
async function refreshSafety() {
  if ($('safety').hidden) return;
  const type = openType;
  const target = open;
  const e = await e2eeReady;
  const members = e ? await e.members(type, target).catch(() => []) : [];
  if (open !== target || openType !== type) return;
  const me = session?.userId;
  const device = client?.deviceId;
  const changedKeys = [...(keyWarnings.get(convKey(type, target)) ?? [])];
  const list = $('safety-list');
  list.dataset.count = String(members.length);
  list.replaceChildren(
    ...members.map((d) => {
      const own = d.userId === me && d.deviceId === device;
      const li = document.createElement('li');
      li.dataset.user = d.userId;
      li.dataset.device = d.deviceId;
      if (own) li.className = 'own';
      const who = Object.assign(document.createElement('span'), { className: 'who', textContent: `${displayName(d.userId)} · ${d.deviceId}` });
      if (own) who.append(' ', Object.assign(document.createElement('span'), { className: 'own-mark', textContent: '(this device)' }));
      li.append(who, Object.assign(document.createElement('code'), { className: 'number', textContent: d.safetyNumber }));
      if (changedKeys.includes(`${d.userId}:${d.deviceId}`)) {
        li.classList.add('changed');
        li.append(Object.assign(document.createElement('span'), { className: 'changed-mark', textContent: '⚠ keys changed' }));
      }
      return li;
    }),
  );
  if (!members.length) {
    const why = e
      ? 'No devices yet: the first message sent makes the encrypted group.'
      : $('app').dataset.e2ee === 'busy'
        ? 'Encryption is open in another tab of this browser: use that one.'
        : 'Encryption is not available on this page.';
    list.append(Object.assign(document.createElement('li'), { className: 'empty', textContent: why }));
  }
  const warning = $('safety-warning');
  warning.hidden = !changedKeys.length;
  warning.replaceChildren();
  if (!changedKeys.length) return;
  const compared = Object.assign(document.createElement('button'), { type: 'button', className: 'link', textContent: 'Compared: they match' });
  compared.addEventListener('click', () => {
    keyWarnings.delete(convKey(type, target));
    saveEncryptionNotes();
    refreshSafety();
  });
  warning.append(
    `The keys of ${changedKeys.join(', ')} changed since this device first saw them: compare the safety numbers again. `,
    compared,
  );
}

// ------------------------------------------------------------------ conversations

async function loadConversations() {
  if (!client) return;
  const [list, groups] = await Promise.all([
    client.getConversationList([PRIVATE, GROUP]).catch(() => []),
    client.getGroupList().catch(() => []),
  ]);
  conversations.clear();
  for (const conv of list) {
    conversations.set(convKey(conv.conversationType, conv.targetId), conv);
    notePeerRead(conv);
  }
  // The user's groups show even before their first message.
  for (const g of groups) {
    noteGroup(g);
    const key = convKey(GROUP, g.groupId);
    if (!conversations.has(key)) {
      conversations.set(key, { conversationType: GROUP, targetId: g.groupId, unreadMessageCount: 0, sentTime: g.createdTime });
    }
  }
  renderConversations();
  decryptPreviews();
}

/**
 * Looks up a group's profile once (or `again`, after it changed), for the list and the chat
 * header.
 */
async function nameGroup(groupId, again = false) {
  if (!client || (groupNames.has(groupId) && !again)) return;
  if (!groupNames.has(groupId)) groupNames.set(groupId, groupId);
  const asked = staleLookups(groupId);
  const g = await client.getGroupInfo(groupId).catch(() => null);
  // A later lookup or change of the group answers with a newer profile than this one.
  if (!g || lookups.get(groupId) !== asked) return;
  noteGroup(g);
  renderConversations();
  if (openType === GROUP && open === groupId) showGroup();
}

/** The latest lookup or change of each group, by group id: only its answer is kept. */
const lookups = new Map();

/** Makes the answers of a group's lookups under way stale; answers the new latest. */
function staleLookups(groupId) {
  const n = (lookups.get(groupId) ?? 0) + 1;
  lookups.set(groupId, n);
  return n;
}

/** Keeps what a group's profile (the SDK's `Group`) says. */
function noteGroup(g) {
  groupNames.set(g.groupId, g.name || g.groupId);
  groupInfo.set(g.groupId, { kind: g.kind, ownerId: g.ownerId, inviteOpen: g.inviteOpen, memberCount: g.memberCount });
}

/** Whether a group is a discussion (made and managed by its members). */
function isDiscussion(groupId) {
  return groupInfo.get(groupId)?.kind === 'discussion';
}

/** What a conversation is called: the other user's name (or id), or the group's name. */
function title(type, target) {
  if (type === GROUP) return groupNames.get(target) || target;
  if (type === CHATROOM) return `Room ${target}`;
  return displayName(target);
}

// ------------------------------------------------------------------ profiles

/** A user's name as they set it, or their id. */
function displayName(userId) {
  return profiles.get(userId)?.name || userId;
}

/**
 * Fetches the profiles of these users, once each (in batches of at most 100, the protocol's
 * most), and shows them where the users appear.
 */
function wantProfiles(ids) {
  const queued = profileBatch.size > 0;
  for (const id of ids) if (id && !profiles.has(id) && !fetching.has(id)) profileBatch.add(id);
  if (queued || !profileBatch.size) return;
  queueMicrotask(async () => {
    const batch = [...profileBatch];
    profileBatch = new Set();
    for (const id of batch) fetching.add(id);
    for (let i = 0; i < batch.length; i += 100) {
      const part = batch.slice(i, i + 100);
      const got = client ? await client.getUsers(part).catch(() => null) : null;
      // A failed lookup shows the ids, and is not repeated on every render.
      for (const id of part) profiles.set(id, { name: '', portrait: '' });
      for (const u of got ?? []) profiles.set(u.userId, { name: u.name, portrait: u.portrait });
      for (const id of part) fetching.delete(id);
    }
    showProfiles();
    if (session && batch.includes(session.userId)) renewPicture();
  });
}

/** A picture link with less than this left (seconds) is renewed when the page loads. */
const RENEW_PICTURE_SECS = 2 * 24 * 3600;

/**
 * Renews the link to this user's own picture when it is about to expire (every file link does,
 * after the server's `max_file_link_secs`), and saves the new one in the profile: only the
 * uploader may ask for a fresh link with the file alone, so the others' pages cannot.
 */
async function renewPicture() {
  const me = session?.userId ?? '';
  const portrait = profiles.get(me)?.portrait ?? '';
  if (!client || !session || !/\/v1\/files\//.test(portrait)) return;
  if (expiryOf(portrait) - Date.now() / 1000 > RENEW_PICTURE_SECS) return;
  try {
    // The longest the server gives (it cuts the asked lifetime to its maximum).
    const fresh = await client.getFileUrl(portrait, 365 * 24 * 3600);
    const answer = await account('me', { portrait: fresh.url }, session.token, 'PATCH');
    if (session?.userId !== me) return;
    profiles.set(me, { name: String(answer.user?.name ?? ''), portrait: String(answer.user?.portrait ?? fresh.url) });
    showProfiles();
  } catch {
    // The picture shows the name's first letter until a later load renews it.
  }
}

/** An avatar: the user's picture, or the first letter of their name. */
function avatar(userId, label = displayName(userId)) {
  const span = Object.assign(document.createElement('span'), { className: 'avatar' });
  fillAvatar(span, userId, label);
  return span;
}

function fillAvatar(span, userId, label = displayName(userId)) {
  span.dataset.user = userId;
  const portrait = profiles.get(userId)?.portrait;
  if (portrait) {
    const img = Object.assign(document.createElement('img'), { src: portrait, alt: '' });
    // An expired or broken link shows the letter instead.
    img.addEventListener('error', () => span.replaceChildren(document.createTextNode(initial(label))), { once: true });
    span.replaceChildren(img);
  } else {
    span.replaceChildren(document.createTextNode(initial(label)));
  }
}

function initial(label) {
  return [...(label || '?')][0].toUpperCase();
}

/** Brings every place a name or an avatar shows up to date with the profiles known. */
function showProfiles() {
  showMe();
  renderConversations();
  if (open) {
    $('chat-title').textContent = title(openType, open);
    if (openType === PRIVATE) fillAvatar($('chat-avatar'), open);
    if (openType === GROUP) showGroup();
  }
  for (const row of rows) if ((row.m.messageDirection !== 1 && row.m.conversationType !== PRIVATE) || isNotice(row.m)) changed(row);
  layout();
  if (openType === CHATROOM && open) renderRoomMembers();
}

function showMe() {
  if (!session) return;
  $('me-name').textContent = displayName(session.userId);
  fillAvatar($('me-avatar'), session.userId);
}

// The profile editor: a name, and a picture uploaded as a file and linked from the profile.
$('edit-profile').addEventListener('click', () => {
  const form = $('profile');
  form.hidden = !form.hidden;
  if (form.hidden || !session) return;
  /** @type {HTMLInputElement} */ ($('profile-name')).value = profiles.get(session.userId)?.name ?? '';
  /** @type {HTMLInputElement} */ ($('profile-picture')).value = '';
  fillAvatar($('profile-avatar'), session.userId);
  $('profile-error').textContent = '';
  /** @type {HTMLInputElement} */ ($('profile-name')).focus();
});
$('profile-cancel').addEventListener('click', () => ($('profile').hidden = true));
$('profile').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!session) return;
  const me = session.userId;
  const name = /** @type {HTMLInputElement} */ ($('profile-name')).value.trim();
  const file = /** @type {HTMLInputElement} */ ($('profile-picture')).files?.[0];
  $('profile-error').textContent = '';
  try {
    /** @type {{ name: string, portrait?: string }} */
    const change = { name };
    if (file) {
      const up = await upload(file);
      if (up.file.kind !== 'image') throw new Error('the picture must be an image');
      change.portrait = up.url;
    }
    const answer = await account('me', change, session.token, 'PATCH');
    profiles.set(me, { name: String(answer.user?.name ?? name), portrait: String(answer.user?.portrait ?? '') });
    $('profile').hidden = true;
    showProfiles();
  } catch (err) {
    $('profile-error').textContent = `Not saved: ${err.message ?? err}`;
  }
});

// ------------------------------------------------------------------ views
//
// On a narrow screen the list and the chat are two views, one at a time (`data-view` on the app);
// on a wide one both show and the attribute changes nothing.

function setView(view) {
  $('app').dataset.view = view;
}

$('back').addEventListener('click', () => setView('list'));

/** Whether a message belongs to the open conversation. */
function isOpen(m) {
  return m.conversationType === openType && m.targetId === open;
}

function preview(m) {
  if (!m) return '';
  if (m.objectName === 'mls') return plainOf.get(m.messageUId) ?? 'Encrypted message';
  if (m.isRecalled) return 'Message recalled';
  const c = m.content;
  switch (m.messageType) {
    case 'TextMessage':
      return c.content;
    case 'ImageMessage':
      return 'Image';
    case 'FileMessage':
      return `File: ${c.name}`;
    default:
      if (m.isRecalled || m.objectName === 'tidings:recall') return 'Message recalled';
      if (m.objectName === 'tidings:edit') return 'Edited a message';
      if (m.objectName === 'tidings:reaction') return 'Reacted to a message';
      if (m.objectName === 'tidings:group') return groupNotice(c?.content);
      return `[${m.objectName}]`;
  }
}

/** A group notification's content as an object (docs/protocol.md, "Groups"). */
function noticeOf(raw) {
  if (typeof raw !== 'string') return raw && typeof raw === 'object' ? raw : {};
  try {
    return JSON.parse(raw) ?? {};
  } catch {
    return {};
  }
}

/** What a group's notification says, with people's names. */
function groupNotice(raw) {
  const n = noticeOf(raw);
  const ids = (n.userIds ?? []).map(String);
  wantProfiles([n.operatorId, n.ownerId, ...ids]);
  const name = (id) => (id === session?.userId ? 'You' : displayName(id));
  const op = n.operatorId ? name(n.operatorId) : 'The app';
  const who = ids.map(name).join(', ');
  switch (n.operation) {
    case 'create':
      return `${op} created the ${n.kind === 'discussion' ? 'discussion' : 'group'}${n.name ? ` “${n.name}”` : ''}`;
    case 'add':
      return ids.length === 1 && ids[0] === n.operatorId ? `${who} joined` : `${op} added ${who}`;
    case 'remove':
      return `${op} removed ${who}`;
    case 'quit':
      return `${who} left`;
    case 'update': {
      const changes = [];
      if (typeof n.name === 'string') changes.push(`renamed it “${n.name}”`);
      if (n.inviteOpen === true) changes.push('let every member invite');
      if (n.inviteOpen === false) changes.push('closed invitations to all but the owner');
      return changes.length ? `${op} ${changes.join(' and ')}` : `${op} changed the group`;
    }
    case 'transfer':
      return `${n.ownerId ? name(n.ownerId) : 'Someone else'} now owns the group`;
    case 'mute':
      return n.all ? `${op} muted the group` : `${op} muted ${who}`;
    case 'unmute':
      return n.all ? `${op} unmuted the group` : `${op} unmuted ${who}`;
    case 'dismiss':
      return 'The group was dismissed';
    default:
      return 'The group changed';
  }
}

function clock(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function renderConversations() {
  wantProfiles(
    [...conversations.values()].flatMap((c) =>
      c.conversationType === PRIVATE ? [c.targetId] : c.latestMessage ? [c.latestMessage.senderUserId] : [],
    ),
  );
  const ul = $('conversations');
  const sorted = [...conversations.values()].sort((a, b) => (b.sentTime ?? 0) - (a.sentTime ?? 0));
  ul.replaceChildren(
    ...sorted.map((conv) => {
      const type = conv.conversationType;
      const isOpenConv = conv.targetId === open && type === openType;
      const li = document.createElement('li');
      li.dataset.target = conv.targetId;
      li.dataset.type = String(type);
      li.classList.toggle('open', isOpenConv);
      const name = Object.assign(document.createElement('span'), {
        className: 'name',
        textContent: title(type, conv.targetId),
      });
      if (isEncrypted(type, conv.targetId)) {
        li.dataset.encrypted = 'true';
        name.prepend(lockIcon());
      }
      const time = Object.assign(document.createElement('span'), {
        className: 'time',
        textContent: clock(conv.sentTime),
      });
      const latest = conv.latestMessage;
      const from = type === GROUP && latest && latest.objectName !== 'tidings:group' ? `${latest.messageDirection === 1 ? 'You' : displayName(latest.senderUserId)}: ` : '';
      const text = Object.assign(document.createElement('span'), {
        className: 'preview',
        textContent: from + preview(latest),
      });
      const pic = Object.assign(document.createElement('span'), { className: 'pic' });
      if (type === GROUP) {
        li.dataset.kind = groupInfo.get(conv.targetId)?.kind ?? '';
        pic.append(groupAvatar(conv.targetId), groupMark(conv.targetId));
      }
      else pic.append(avatar(conv.targetId), dot(conv.targetId));
      li.append(pic, name, time, text);
      if (conv.unreadMessageCount > 0 && !isOpenConv) {
        li.append(
          Object.assign(document.createElement('span'), {
            className: 'badge',
            textContent: String(conv.unreadMessageCount),
          }),
        );
      }
      li.addEventListener('click', () => openConversation(conv.targetId, type));
      return li;
    }),
  );
  showPresence();
  watchPresence();
}

// ------------------------------------------------------------------ presence

/**
 * Watches the users of the listed conversations and the open one (the protocol's presence
 * subscription; one per connection, replaced by each call), when that set changed.
 */
async function watchPresence() {
  if (!client || $('app').dataset.status !== String(ConnectionStatus.CONNECTED)) return;
  const users = [...conversations.values()].filter((c) => c.conversationType === PRIVATE).map((c) => c.targetId);
  if (openType === PRIVATE) users.push(open);
  const ids = [...new Set(users.filter(Boolean))].sort().slice(0, 200);
  const key = ids.join('\n');
  if (key === watching) return;
  watching = key;
  try {
    const q = await client.query({ subscribePresence: { userIds: ids } });
    for (const p of q.presence ?? []) {
      presence.set(String(p.userId), { userId: String(p.userId), online: Boolean(p.online), lastSeen: Number(p.lastSeen ?? 0) });
    }
    showPresence();
  } catch {
    if (watching === key) watching = '';
  }
}

/** The lock of an encrypted conversation. */
function lockIcon() {
  const lock = /** @type {HTMLElement} */ ($('chat-lock').cloneNode(true));
  lock.removeAttribute('id');
  lock.hidden = false;
  return lock;
}

/** A group's avatar: the first letter of its name. */
function groupAvatar(groupId) {
  return Object.assign(document.createElement('span'), { className: 'avatar group', textContent: initial(title(GROUP, groupId)) });
}

/** The mark of a group in the list, where a user has a presence dot: D for a discussion. */
function groupMark(groupId) {
  const discussion = isDiscussion(groupId);
  const span = Object.assign(document.createElement('span'), {
    className: `group-mark${discussion ? ' discussion' : ''}`,
    textContent: discussion ? 'D' : 'G',
    title: discussion ? 'Discussion' : 'Group',
  });
  span.setAttribute('aria-label', discussion ? 'discussion' : 'group');
  return span;
}

/** A presence dot for a user. */
function dot(userId) {
  const span = Object.assign(document.createElement('span'), { className: 'dot' });
  span.dataset.user = userId;
  span.setAttribute('role', 'img');
  return span;
}

function presenceText(p) {
  if (!p) return '';
  if (p.online) return 'online';
  return p.lastSeen ? `last seen ${clock(p.lastSeen)}` : 'offline';
}

/** Brings every presence dot, and the chat header's line, up to date. */
function showPresence() {
  for (const el of document.querySelectorAll('.dot[data-user]')) {
    const span = /** @type {HTMLElement} */ (el);
    const p = presence.get(span.dataset.user ?? '');
    span.dataset.online = p ? String(p.online) : '';
    span.setAttribute('aria-label', p?.online ? 'online' : 'offline');
    span.title = presenceText(p);
  }
  $('peer-presence').textContent = open && openType === PRIVATE ? presenceText(presence.get(open)) : '';
}

$('new-chat').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($('new-chat-user'));
  const user = input.value.trim();
  input.value = '';
  if (!user) return;
  // The lock button starts an encrypted chat: from then on it never sends in the clear.
  if (/** @type {SubmitEvent} */ (e).submitter?.id === 'new-chat-e2ee') noteEncrypted(PRIVATE, user);
  openConversation(user);
});

$('join-room').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($('room-id'));
  const room = input.value.trim();
  if (room) openConversation(room, CHATROOM);
});

// ------------------------------------------------------------------ the open conversation
//
// The message list is virtualized: `rows` holds every loaded message of the open conversation in
// order, but only the rows near the viewport (MARGIN pixels either side) are in the DOM, between
// two spacers whose heights stand for the rest. Rows are measured once rendered (and again when
// they resize, as an image loads); unmeasured rows count as ESTIMATE. The scroll position is kept
// by an anchor — the first row in view and how far into it the view starts — so that loading
// older pages above, or a row above changing height, does not move what the reader sees; unless
// the view is at the bottom, where it stays as messages arrive.

const MARGIN = 800;
const ESTIMATE = 56;
const OLDER_AT = 1200;

/**
 * @typedef {{ k: string, m: any }} Row
 */
/** @type {Row[]} */
let rows = [];
/** Rows by server uid, by client message id and by seq. */
const byUid = new Map();
const byClient = new Map();
const bySeq = new Map();
/** Measured heights by row key. */
const heights = new Map();
/** Rendered row elements by row key. */
const rendered = new Map();
let rowCounter = 0;
/** The row whose action menu is open, and the row being edited (row keys). */
let menuFor = '';
let editing = '';
/** The reactions the menu offers. */
const REACTIONS = ['👍', '❤️', '😂', '🎉'];
/** Row tops (prefix sums of heights), from the last layout. */
let tops = new Float64Array(1);
let anchor = { k: '', delta: 0 };
let atBottom = true;
let laying = false;
/**
 * The other user's read position in each private conversation: the conversation's
 * `peerReadSeq` as the server keeps it (so it survives a reload), raised by read receipts.
 */
const peerRead = new Map();

const resized = new ResizeObserver((entries) => {
  let changed = false;
  for (const e of entries) {
    const el = /** @type {HTMLElement} */ (e.target);
    const k = el.dataset.key ?? '';
    if (rendered.get(k) !== el || !el.isConnected) continue;
    const h = el.getBoundingClientRect().height;
    if (h && heights.get(k) !== h) {
      heights.set(k, h);
      changed = true;
    }
  }
  if (changed) layout();
});

function findRow(m) {
  return (m.messageUId && byUid.get(m.messageUId)) || (m.clientMsgId && byClient.get(m.clientMsgId)) || null;
}

/** Indexes a row's message (again, after it changed). */
function index(row) {
  const m = row.m;
  if (m.messageUId) byUid.set(m.messageUId, row);
  if (m.clientMsgId) byClient.set(m.clientMsgId, row);
  if (m.seq) bySeq.set(m.seq, row);
}

/** Forgets a row's element, so the next layout builds it afresh. */
function changed(row) {
  const el = rendered.get(row.k);
  if (el) {
    resized.unobserve(el);
    el.remove();
  }
  rendered.delete(row.k);
}

/**
 * An event of the conversation (recall, edit, reaction): applied to its message, never a row.
 * A group's notification is not one: it shows as a line of its own.
 */
function isEvent(m) {
  return typeof m.objectName === 'string' && m.objectName.startsWith('tidings:') && !isNotice(m);
}

/** A group's notification (docs/protocol.md, "Groups"): someone joined, left, renamed it, … */
function isNotice(m) {
  return m.objectName === 'tidings:group';
}

/** Empties the message view, for another conversation or none. */
function clearMessages() {
  rows = [];
  byUid.clear();
  byClient.clear();
  bySeq.clear();
  for (const el of rendered.values()) resized.unobserve(el);
  rendered.clear();
  $('message-list').replaceChildren();
  oldestSeq = 0;
  atBottom = true;
  anchor = { k: '', delta: 0 };
  $('messages').dataset.loaded = '0';
  delete $('messages').dataset.complete;
  $('history-top').textContent = '';
}

async function openConversation(target, type = PRIVATE) {
  if (!client) return;
  // A chatroom is followed only while it is open.
  if (openType === CHATROOM && open && (open !== target || type !== CHATROOM)) {
    client.quitChatRoom(open).catch(() => {});
  }
  open = target;
  openType = type;
  clearMessages();
  $('chat-title').textContent = title(type, target);
  $('chat-dot').dataset.user = type === PRIVATE ? target : '';
  $('chat-dot').hidden = type !== PRIVATE;
  $('chat-avatar').hidden = type !== PRIVATE;
  if (type === PRIVATE) {
    wantProfiles([target]);
    fillAvatar($('chat-avatar'), target);
  }
  $('leave-room').hidden = type !== CHATROOM;
  $('room-members').hidden = type !== CHATROOM;
  $('leave-group').hidden = type !== GROUP;
  $('group-tools').hidden = true;
  delete $('chat').dataset.kind;
  if (type === GROUP) {
    showGroup();
    nameGroup(target, true);
  }
  roomMembers = [];
  $('room-member-list').replaceChildren();
  $('room-count').textContent = '0';
  setView('chat');
  $('chat').dataset.type = String(type);
  $('typing').textContent = '';
  $('composer').hidden = false;
  showSafety(false);
  showEncryption();
  renderConversations();
  showPresence();
  if (type === CHATROOM) await joinRoom(target);
  else await loadOlder(true);
  markRead();
  /** @type {HTMLInputElement} */ ($('text')).focus();
}

/** Joins the open chatroom, showing its recent messages; its later ones come as they are sent. */
async function joinRoom(room) {
  if (!client) return;
  try {
    const joined = await client.joinChatRoom(room, ROOM_RECENT);
    if (openType !== CHATROOM || open !== room) return;
    for (const m of joined.messages) if (!isEvent(m)) render(m);
    $('history-top').textContent = 'Recent messages of the room';
    $('messages').dataset.complete = '';
    await loadRoomMembers(room);
  } catch (e) {
    if (openType !== CHATROOM || open !== room) return;
    $('composer').hidden = true;
    banner(`Could not join the room: ${e.message ?? e}`, true);
    setTimeout(() => banner(''), 4000);
  }
}

/** The open room's members (the first 100), by user id. */
let roomMembers = /** @type {string[]} */ ([]);

async function loadRoomMembers(room) {
  if (!client) return;
  const info = await client.getChatRoomInfo(room, { count: 100 }).catch(() => null);
  if (!info || openType !== CHATROOM || open !== room) return;
  roomMembers = info.members.map((m) => m.userId);
  $('room-count').textContent = String(info.userTotalNums);
  wantProfiles(roomMembers);
  renderRoomMembers();
}

function renderRoomMembers() {
  $('room-member-list').replaceChildren(
    ...roomMembers.map((id) => {
      const li = document.createElement('li');
      li.dataset.user = id;
      li.append(avatar(id), Object.assign(document.createElement('span'), { className: 'member-name', textContent: displayName(id) }));
      return li;
    }),
  );
}

$('leave-room').addEventListener('click', async () => {
  if (!client || openType !== CHATROOM || !open) return;
  const room = open;
  await client.quitChatRoom(room).catch(() => {});
  closeChat();
});

// ------------------------------------------------------------------ discussions
//
// Groups people make themselves (docs/protocol.md, "Discussions"): made from the list with a name
// and the other members' ids; once open, any member invites and renames, the owner opens or closes
// invitations to all, and anyone leaves. Each change shows in the chat as its notification.

/** User ids typed into a field, separated by commas or spaces. */
function userIdsIn(id) {
  const input = /** @type {HTMLInputElement} */ ($(id));
  return input.value.split(/[\s,]+/).filter(Boolean);
}

/** Says in the banner why a change was refused. */
function refused(what, e) {
  const why =
    {
      20406: 'only the owner may do that',
      21407: 'only the owner may invite now',
      22406: 'you are not in it',
      35001: 'it has ended',
      40022: 'it would be too big',
      42006: 'a member id is not valid',
      42007: 'the name is too long',
    }[e?.code] ?? e?.message ?? e;
  banner(`${what}: ${why}`, true);
  setTimeout(() => banner(''), 4000);
}

/** The open group's header and, for a discussion, its settings as last known. */
function showGroup() {
  if (openType !== GROUP || !open) return;
  $('chat-title').textContent = title(GROUP, open);
  const info = groupInfo.get(open);
  const discussion = info?.kind === 'discussion';
  $('chat').dataset.kind = info?.kind ?? '';
  $('group-tools').hidden = !discussion;
  if (!discussion) return;
  const owner = info.ownerId === session?.userId;
  const members = `${info.memberCount} member${info.memberCount === 1 ? '' : 's'}`;
  $('group-facts').textContent = `${members} · owner ${owner ? 'you' : displayName(info.ownerId)}`;
  const inviteOpen = /** @type {HTMLInputElement} */ ($('invite-open'));
  // While a change is under way the switch shows what the owner asked for.
  if (!changing) inviteOpen.checked = info.inviteOpen;
  inviteOpen.disabled = !owner;
  $('invite').hidden = !owner && !info.inviteOpen;
}

/** How many changes of the open discussion are under way. */
let changing = 0;

/** Runs a change of the open discussion; shows it as it now is, or why not. */
async function changeDiscussion(what, change) {
  if (!client || openType !== GROUP || !open) return false;
  const id = open;
  staleLookups(id);
  changing++;
  try {
    const g = await change(client, id);
    staleLookups(id);
    noteGroup(g);
  } catch (e) {
    refused(`Could not ${what}`, e);
    return false;
  } finally {
    changing--;
    renderConversations();
    showGroup();
  }
  return true;
}

$('new-discussion').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!client) return;
  const nameInput = /** @type {HTMLInputElement} */ ($('discussion-name'));
  const name = nameInput.value.trim();
  if (!name) return;
  try {
    const g = await client.createDiscussion(name, userIdsIn('discussion-members'));
    noteGroup(g);
    leftGroups.delete(g.groupId);
    nameInput.value = '';
    /** @type {HTMLInputElement} */ ($('discussion-members')).value = '';
    // Its list entry shows at once; the server's conversation comes with the notification.
    const key = convKey(GROUP, g.groupId);
    if (!conversations.has(key)) {
      conversations.set(key, { conversationType: GROUP, targetId: g.groupId, unreadMessageCount: 0, sentTime: g.createdTime });
    }
    await openConversation(g.groupId, GROUP);
  } catch (err) {
    refused('Could not create the discussion', err);
  }
});

$('invite').addEventListener('submit', async (e) => {
  e.preventDefault();
  const ids = userIdsIn('invite-ids');
  if (!ids.length) return;
  if (await changeDiscussion('invite', (c, id) => c.addDiscussionMembers(id, ids))) {
    /** @type {HTMLInputElement} */ ($('invite-ids')).value = '';
  }
});

$('rename').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($('rename-name'));
  const name = input.value.trim();
  if (!name) return;
  if (await changeDiscussion('rename it', (c, id) => c.updateDiscussion(id, { name }))) input.value = '';
});

$('invite-open').addEventListener('change', (e) => {
  const inviteOpen = /** @type {HTMLInputElement} */ (e.target).checked;
  changeDiscussion('change who may invite', (c, id) => c.updateDiscussion(id, { inviteOpen }));
});

$('leave-group').addEventListener('click', async () => {
  if (!client || openType !== GROUP || !open) return;
  const id = open;
  try {
    await client.quitGroup(id);
  } catch (e) {
    refused('Could not leave', e);
    return;
  }
  // Out of the group, its conversation goes from the list (here and, removed, after a reload).
  leftGroups.add(id);
  conversations.delete(convKey(GROUP, id));
  closeChat();
  await client.removeConversation(GROUP, id).catch(() => {});
});

/** Shows no conversation (after leaving a room), back on the list. */
function closeChat() {
  open = '';
  openType = PRIVATE;
  clearMessages();
  $('chat-title').textContent = 'No conversation open';
  $('chat-dot').hidden = true;
  $('chat-avatar').hidden = true;
  $('leave-room').hidden = true;
  $('room-members').hidden = true;
  $('leave-group').hidden = true;
  $('group-tools').hidden = true;
  $('composer').hidden = true;
  $('typing').textContent = '';
  delete $('chat').dataset.type;
  showEncryption();
  delete $('chat').dataset.kind;
  renderConversations();
  showPresence();
  setView('list');
}

async function loadOlder(first = false) {
  if (!client || openType === CHATROOM || loadingOlder || (!first && !oldestSeq)) return;
  loadingOlder = true;
  const target = open;
  const type = openType;
  try {
    const page = await client.getHistoryMessages(type, target, {
      count: PAGE,
      beforeSeq: first ? undefined : oldestSeq,
    });
    if (target !== open || type !== openType) return;
    const messages = page.messages.sort((a, b) => a.seq - b.seq);
    // Encrypted messages show as what they hold, decrypted in order (or from this device's
    // state, for those it decrypted before).
    const shown = [];
    for (const m of messages) {
      if (m.objectName !== 'mls') shown.push(m);
      else {
        const d = await decrypt(m);
        if (d) shown.push(d);
      }
    }
    if (target !== open || type !== openType) return;
    const fresh = [];
    for (const m of shown) {
      if (isEvent(m) || findRow(m)) continue;
      const row = { k: `r${++rowCounter}`, m };
      index(row);
      fresh.push(row);
    }
    rows = fresh.concat(rows);
    oldestSeq = page.hasMore && messages.length ? messages[0].seq : 0;
    $('history-top').textContent = oldestSeq ? 'Loading earlier messages…' : 'The beginning of the conversation';
    const box = $('messages');
    box.dataset.loaded = String(rows.length);
    if (!oldestSeq) box.dataset.complete = '';
    layout();
  } finally {
    loadingOlder = false;
  }
  nearTop();
}

/** Loads an older page when the view is near the top of what is loaded. */
function nearTop() {
  const box = $('messages');
  if (oldestSeq && !loadingOlder && box.scrollTop < OLDER_AT) loadOlder();
}

/** The first row whose bottom is below `y` (list coordinates). */
function rowAt(y) {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (tops[mid + 1] <= y) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Places the spacers and renders the rows near the view, keeping the anchor (or the bottom) in
 * place; repeats while rendering measured rows to other heights than counted.
 */
function layout() {
  if (laying) return;
  laying = true;
  try {
    const box = $('messages');
    const list = $('message-list');
    const base = $('spacer-top').offsetTop;
    for (let round = 0; round < 4; round++) {
      tops = new Float64Array(rows.length + 1);
      for (let i = 0; i < rows.length; i++) tops[i + 1] = tops[i] + (heights.get(rows[i].k) ?? ESTIMATE);
      const total = tops[rows.length];
      const keyIndex = anchor.k ? rows.findIndex((r) => r.k === anchor.k) : -1;
      const target = atBottom || keyIndex < 0 ? base + total : base + tops[keyIndex] + anchor.delta;
      const from = rowAt(Math.max(0, target - base - MARGIN));
      const to = Math.min(rows.length, rowAt(target - base + box.clientHeight + MARGIN) + 1);
      $('spacer-top').style.height = `${tops[from]}px`;
      $('spacer-bottom').style.height = `${total - tops[to]}px`;
      const want = rows.slice(from, to);
      const keep = new Set(want.map((r) => r.k));
      for (const [k, el] of rendered) {
        if (!keep.has(k)) {
          resized.unobserve(el);
          rendered.delete(k);
        }
      }
      list.replaceChildren(...want.map((r) => rendered.get(r.k) ?? build(r)));
      let moved = false;
      for (const r of want) {
        // Fractional heights: rounded ones would add up to a drift of the rows below.
        const h = /** @type {HTMLElement} */ (rendered.get(r.k)).getBoundingClientRect().height;
        if (heights.get(r.k) !== h) {
          heights.set(r.k, h);
          moved = true;
        }
      }
      box.scrollTop = atBottom ? box.scrollHeight : target;
      if (!moved) break;
    }
    noteAnchor();
  } finally {
    laying = false;
  }
}

/** Remembers which row the view starts in. */
function noteAnchor() {
  const box = $('messages');
  atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 4;
  const y = box.scrollTop - $('spacer-top').offsetTop;
  const i = Math.min(rowAt(Math.max(0, y)), rows.length - 1);
  anchor = i < 0 ? { k: '', delta: 0 } : { k: rows[i].k, delta: y - tops[i] };
}

// A taller or shorter window shows other rows.
window.addEventListener('resize', () => layout());

$('messages').addEventListener('scroll', () => {
  if (laying) return;
  noteAnchor();
  // Re-render once the view nears the edge of the rendered rows.
  const box = $('messages');
  const list = $('message-list');
  const y = box.scrollTop;
  const above = list.offsetTop;
  const below = above + list.offsetHeight;
  if ((y - above < MARGIN / 2 && $('spacer-top').offsetHeight > 0) ||
      (below - y - box.clientHeight < MARGIN / 2 && $('spacer-bottom').offsetHeight > 0)) {
    layout();
  }
  nearTop();
});

/** A row's element. */
function build(row) {
  const m = row.m;
  if (isNotice(m)) return buildNotice(row);
  const li = document.createElement('li');
  li.className = `msg-row${m.messageDirection === 1 ? ' mine' : ''}`;
  li.dataset.key = row.k;
  if (m.encrypted) li.dataset.encrypted = m.unreadable ? 'unreadable' : 'true';
  li.dataset.seq = String(m.seq);
  li.dataset.uid = m.messageUId;
  const mine = m.messageDirection === 1;
  const div = document.createElement('div');
  div.className = `msg${mine ? ' mine' : ''}${m.sentStatus === 20 ? ' failed' : ''}`;
  // In a group or a room, other people's messages say whose they are.
  if (!mine && m.conversationType !== PRIVATE) {
    wantProfiles([m.senderUserId]);
    li.append(avatar(m.senderUserId));
    const sender = Object.assign(document.createElement('span'), { className: 'sender', textContent: displayName(m.senderUserId) });
    sender.dataset.user = m.senderUserId;
    div.append(sender);
  }
  div.append(editing === row.k ? editor(row) : body(m));
  if (m.reactions?.length && !m.isRecalled) div.append(reactions(row));
  const meta = Object.assign(document.createElement('span'), {
    className: 'meta',
    textContent: `${m.isEdited && !m.isRecalled ? 'edited · ' : ''}${clock(m.sentTime)}`,
  });
  if (mine) {
    const read = m.conversationType === PRIVATE && m.seq && m.seq <= (peerRead.get(m.targetId) ?? 0);
    const status = m.messageUId ? (read ? '✓✓' : '✓') : m.sentStatus === 20 ? '✗ not sent' : '…';
    const tick = Object.assign(document.createElement('span'), {
      className: `tick${read ? ' read' : ''}`,
      textContent: ` ${status}`,
      title: read ? 'Read' : m.messageUId ? 'Delivered to the server' : m.sentStatus === 20 ? 'Not sent' : 'Sending',
    });
    meta.append(tick);
  }
  div.append(meta);
  li.append(div);
  // The server's recall, edit and reaction requests would not be encrypted: none for these.
  if (m.messageUId && m.seq && !m.isRecalled && m.conversationType !== CHATROOM && !m.encrypted) li.append(actions(row));
  for (const img of li.querySelectorAll('img')) img.addEventListener('load', () => layout());
  rendered.set(row.k, li);
  resized.observe(li);
  return li;
}

/** A group notification's row: a centred line saying what changed. */
function buildNotice(row) {
  const li = Object.assign(document.createElement('li'), { className: 'notice-row' });
  li.dataset.key = row.k;
  li.dataset.seq = String(row.m.seq);
  li.dataset.operation = String(noticeOf(row.m.content?.content).operation ?? '');
  li.append(Object.assign(document.createElement('span'), { className: 'notice', textContent: groupNotice(row.m.content?.content) }));
  rendered.set(row.k, li);
  resized.observe(li);
  return li;
}

function body(m) {
  const c = m.content;
  if (m.unreadable) {
    // Another tab of this browser has the device's keys open.
    const elsewhere = $('app').dataset.e2ee === 'busy' ? ' (it is open in another tab)' : '';
    return Object.assign(document.createElement('span'), { className: 'unreadable', textContent: `Encrypted message: can't be read on this device${elsewhere}` });
  }
  if (m.encrypted && m.messageType !== 'TextMessage') {
    return Object.assign(document.createElement('span'), { className: 'unreadable', textContent: `[encrypted ${m.innerType}]` });
  }
  if (m.isRecalled) return Object.assign(document.createElement('span'), { className: 'recalled', textContent: 'Message recalled' });
  switch (m.messageType) {
    case 'TextMessage':
      return Object.assign(document.createElement('span'), { className: 'text', textContent: c.content });
    case 'ImageMessage': {
      const a = Object.assign(document.createElement('a'), { href: c.imageUri, target: '_blank' });
      const img = Object.assign(document.createElement('img'), { src: c.content || c.imageUri, alt: 'image' });
      // The links in a message expire (after the server's maximum, 7 days by default): an image
      // that does not load asks once for fresh links, naming the message it is in.
      img.addEventListener(
        'error',
        async () => {
          const fresh = await freshLinks(m, c.imageUri);
          if (!fresh) return;
          a.href = fresh.url;
          img.src = (c.content && fresh.thumbnailUrl) || fresh.url;
        },
        { once: true },
      );
      refreshedOnClick(a, m, c.imageUri);
      a.append(img);
      return a;
    }
    case 'FileMessage': {
      const a = Object.assign(document.createElement('a'), {
        href: c.fileUrl,
        className: 'file',
        textContent: `${c.name} (${size(c.size)})`,
      });
      refreshedOnClick(a, m, c.fileUrl);
      return a;
    }
    default:
      return document.createTextNode(`[${m.objectName}]`);
  }
}

/** A file's size: in bytes under 1 KiB, else in KiB or MiB. */
function size(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10 * 1024 ? 1 : 0)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

/**
 * Fresh links to the file `link` points at, asked for with the message `m` that carries it
 * (the uploader's own message needs none); null if the server gives none.
 */
async function freshLinks(m, link) {
  try {
    return await client.getFileUrl(link, m.seq ? m : undefined);
  } catch (err) {
    banner(`No fresh link to the file: ${err.message ?? err}`, true);
    return null;
  }
}

/** Seconds since the epoch at which one of the server's file links stops working. */
function expiryOf(link) {
  return Number(/[?&]exp=(\d+)/.exec(link)?.[1] ?? 0);
}

/** A link `a` to a file that, clicked once it has expired, is replaced by a fresh one and followed. */
function refreshedOnClick(a, m, link) {
  a.addEventListener('click', async (e) => {
    if (expiryOf(a.href) > Date.now() / 1000) return;
    e.preventDefault();
    const fresh = await freshLinks(m, link);
    if (!fresh) return;
    a.href = fresh.url;
    a.click();
  });
}

/** The reactions under a message: each emoji with its count; one's own can be taken back. */
function reactions(row) {
  const ul = Object.assign(document.createElement('ul'), { className: 'reactions' });
  ul.setAttribute('aria-label', 'Reactions');
  for (const r of row.m.reactions) {
    const mine = r.userIds.includes(session?.userId);
    const b = Object.assign(document.createElement('button'), {
      type: 'button',
      className: `reaction${mine ? ' mine' : ''}`,
      textContent: `${r.emoji} ${r.userIds.length}`,
      title: `${r.userIds.join(', ')}${mine ? ' (select to take yours back)' : ''}`,
    });
    b.setAttribute('aria-pressed', String(mine));
    b.addEventListener('click', () => act(row, { reactToMessage: { emoji: r.emoji, remove: mine } }));
    const li = document.createElement('li');
    li.append(b);
    ul.append(li);
  }
  return ul;
}

/** The per-message menu: a button that opens it (on hover or focus), and its actions. */
function actions(row) {
  const m = row.m;
  const wrap = Object.assign(document.createElement('div'), { className: 'actions' });
  const toggle = Object.assign(document.createElement('button'), {
    type: 'button',
    className: 'menu-toggle',
    title: 'Message actions',
  });
  toggle.setAttribute('aria-label', 'Message actions');
  toggle.setAttribute('aria-expanded', String(menuFor === row.k));
  toggle.innerHTML = '<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true"><circle cx="5" cy="12" r="2" fill="currentColor"/><circle cx="12" cy="12" r="2" fill="currentColor"/><circle cx="19" cy="12" r="2" fill="currentColor"/></svg>';
  toggle.addEventListener('click', () => showMenu(menuFor === row.k ? '' : row.k));
  wrap.append(toggle);
  if (menuFor !== row.k) return wrap;
  const menu = Object.assign(document.createElement('div'), { className: 'menu' });
  menu.setAttribute('role', 'group');
  menu.setAttribute('aria-label', 'Message actions');
  for (const emoji of REACTIONS) {
    const b = Object.assign(document.createElement('button'), { type: 'button', className: 'react', textContent: emoji });
    b.setAttribute('aria-label', `React with ${emoji}`);
    b.addEventListener('click', () => {
      const had = m.reactions?.some((r) => r.emoji === emoji && r.userIds.includes(session?.userId));
      act(row, { reactToMessage: { emoji, remove: Boolean(had) } });
    });
    menu.append(b);
  }
  if (m.messageDirection === 1) {
    if (m.messageType === 'TextMessage') {
      const edit = Object.assign(document.createElement('button'), { type: 'button', textContent: 'Edit' });
      edit.addEventListener('click', () => {
        editing = row.k;
        showMenu('');
      });
      menu.append(edit);
    }
    const recall = Object.assign(document.createElement('button'), { type: 'button', textContent: 'Recall' });
    recall.addEventListener('click', () => act(row, { recallMessage: {} }));
    menu.append(recall);
  }
  wrap.append(menu);
  return wrap;
}

// Escape closes the menu; a long press on a message (touch screens) opens it.
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && menuFor) showMenu('');
});
let pressTimer = 0;
$('message-list').addEventListener('pointerdown', (e) => {
  const li = /** @type {HTMLElement | null} */ (/** @type {HTMLElement} */ (e.target).closest('#message-list > li'));
  if (e.pointerType !== 'touch' || !li?.querySelector('.menu-toggle')) return;
  const k = li.dataset.key ?? '';
  pressTimer = setTimeout(() => showMenu(k), 500);
});
for (const end of ['pointerup', 'pointercancel', 'pointermove']) {
  $('message-list').addEventListener(end, () => clearTimeout(pressTimer));
}

/** Opens the menu of one row (or none), closing the other's. */
function showMenu(k) {
  const before = menuFor;
  menuFor = k;
  for (const row of rows) if (row.k === before || row.k === k || row.k === editing) changed(row);
  layout();
  if (k) /** @type {HTMLElement | null} */ (rendered.get(k)?.querySelector('.menu button'))?.focus();
}

/** The editor of an own text message, in place of its text. */
function editor(row) {
  const form = Object.assign(document.createElement('form'), { className: 'edit' });
  const input = Object.assign(document.createElement('input'), { value: row.m.content.content, required: true });
  input.setAttribute('aria-label', 'Edit message');
  const save = Object.assign(document.createElement('button'), { type: 'submit', textContent: 'Save' });
  const cancel = Object.assign(document.createElement('button'), { type: 'button', className: 'link', textContent: 'Cancel' });
  const done = () => {
    editing = '';
    changed(row);
    layout();
  };
  cancel.addEventListener('click', done);
  input.addEventListener('keydown', (e) => e.key === 'Escape' && done());
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = input.value;
    done();
    if (text.trim() && text !== row.m.content.content) {
      await act(row, { editMessage: { content: JSON.stringify({ text }) } });
    }
  });
  form.append(input, save, cancel);
  queueMicrotask(() => input.focus());
  return form;
}

/**
 * A recall, edit or reaction through the raw query (the SDK wraps only recalls); the answer is
 * the message as it now is.
 */
async function act(row, query) {
  if (!client) return;
  const [name, body] = Object.entries(query)[0];
  menuFor = '';
  try {
    const q = await client.query({
      [name]: { conversationType: row.m.conversationType, targetId: row.m.targetId, seq: String(row.m.seq), ...body },
    });
    const raw = q.messages?.[0];
    if (raw) updateFrom(row, raw);
  } catch (e) {
    const why = { 40019: 'it is too late to recall it', 40020: 'it was recalled' }[e.serverCode] ?? e.message ?? e;
    banner(`Could not change the message: ${why}`, true);
    setTimeout(() => banner(''), 4000);
  }
  changed(row);
  layout();
}

/** Takes a message's state from the protocol's form of it (a query's answer). */
function updateFrom(row, raw) {
  const m = { ...row.m, isRecalled: Boolean(raw.recalled), isEdited: Boolean(raw.edited) };
  m.reactions = (raw.reactions ?? []).map((r) => ({ emoji: String(r.emoji), userIds: (r.userIds ?? []).map(String) }));
  if (m.messageType === 'TextMessage' && !m.isRecalled) {
    const text = JSON.parse(String(raw.content ?? '{}')).text;
    if (typeof text === 'string') m.content = new TextMessage({ content: text });
  }
  row.m = m;
}

/** Shows a message of the open conversation (new, or changed). */
function render(m) {
  if (isEvent(m)) {
    applyEvent(m);
    return;
  }
  let row = findRow(m);
  if (row) {
    row.m = m;
    changed(row);
  } else {
    row = { k: `r${++rowCounter}`, m };
    rows.push(row);
    if (m.messageDirection === 1) atBottom = true;
  }
  index(row);
  $('messages').dataset.loaded = String(rows.length);
  layout();
}

/** A recall, edit or reaction event: changes the message it names. */
function applyEvent(m) {
  const c = m.content;
  const seq = Number(c?.seq ?? c?.content?.seq ?? 0);
  const row = bySeq.get(seq);
  if (!row) return;
  if (m.objectName === 'tidings:recall') row.m = { ...row.m, isRecalled: true, reactions: [] };
  if (m.objectName === 'tidings:edit' && row.m.messageType === 'TextMessage') {
    const text = JSON.parse(String(c.content?.content ?? '{}')).text;
    if (typeof text === 'string') row.m = { ...row.m, isEdited: true, content: new TextMessage({ content: text }) };
  }
  if (m.objectName === 'tidings:reaction') {
    const { emoji, userId, added } = c.content ?? {};
    const list = (row.m.reactions ?? []).map((r) => ({ emoji: r.emoji, userIds: r.userIds.filter((u) => u !== userId || r.emoji !== emoji) }));
    let r = list.find((x) => x.emoji === emoji);
    if (added) {
      if (!r) list.push((r = { emoji, userIds: [] }));
      r.userIds.push(userId);
      r.userIds.sort();
    }
    row.m = { ...row.m, reactions: list.filter((x) => x.userIds.length) };
  }
  changed(row);
  layout();
}

async function onMessage(m) {
  if (m.objectName === 'mls') {
    const shown = await decrypt(m);
    renderConversations();
    if (!shown) return;
    m = shown;
  }
  if (m.conversationType === GROUP) {
    if (isNotice(m)) onNotice(m);
    else nameGroup(m.targetId);
  }
  if (isOpen(m)) {
    // Their message is what they were typing.
    if (m.messageDirection !== 1 && !isEvent(m)) {
      clearTimeout(typingTimer);
      $('typing').textContent = '';
    }
    render(m);
    markRead();
  }
}

/**
 * A group changed: a name it carries is the group's new one; the rest (owner, invitations) is
 * looked up again, unless this user is out of the group.
 */
function onNotice(m) {
  const n = noticeOf(m.content?.content);
  const me = session?.userId;
  const ids = (n.userIds ?? []).map(String);
  if (typeof n.name === 'string' && n.name) groupNames.set(m.targetId, n.name);
  if (n.operation === 'add' && ids.includes(me)) leftGroups.delete(m.targetId);
  const out = n.operation === 'dismiss' || ((n.operation === 'quit' || n.operation === 'remove') && ids.includes(me));
  if (!out) nameGroup(m.targetId, true);
  renderConversations();
  if (openType === GROUP && open === m.targetId) showGroup();
}

/** The other user read up to `readSeq`: own messages up to there show as read. */
function onReadReceipt(r) {
  if (r.conversationType !== PRIVATE) return;
  peerReadTo(r.targetId, r.readSeq);
}

/** A conversation as the server or the SDK gave it: its other side's read position. */
function notePeerRead(conv) {
  if (conv.conversationType === PRIVATE && conv.peerReadSeq) peerReadTo(conv.targetId, conv.peerReadSeq);
}

function peerReadTo(target, readSeq) {
  if ((peerRead.get(target) ?? 0) >= readSeq) return;
  peerRead.set(target, readSeq);
  if (target !== open || openType !== PRIVATE) return;
  for (const row of rows) if (row.m.messageDirection === 1 && row.m.seq && row.m.seq <= readSeq) changed(row);
  layout();
}

function markRead() {
  if (client && open && openType !== CHATROOM && document.visibilityState === 'visible') {
    client.clearUnreadCount(openType, open).catch(() => {});
  }
}
document.addEventListener('visibilitychange', markRead);

// ------------------------------------------------------------------ sending

async function send(content) {
  if (!client || !open) return;
  const target = open;
  const type = openType;
  try {
    await client.sendMessage(type, target, content, {
      onBefore: (m) => {
        if (isOpen(m)) render(m);
      },
    });
  } catch (e) {
    banner(`Not sent: ${e.message ?? e}`, true);
    setTimeout(() => banner(''), 4000);
  }
}

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($('text'));
  const text = input.value;
  if (!text.trim()) return;
  input.value = '';
  if (openType !== CHATROOM && isEncrypted(openType, open)) sendEncrypted(text);
  else send(new TextMessage({ content: text }));
});

/**
 * Sends a text encrypted (`e2ee.sendText`; the first send makes the group, with every device of
 * both people that published key packages). It shows at once, and as sent once the server took it.
 */
async function sendEncrypted(text) {
  if (!client || !open || !session) return;
  const target = open;
  const type = openType;
  const pending = {
    conversationType: type,
    targetId: target,
    clientMsgId: `e2ee-local-${++localCounter}`,
    senderUserId: session.userId,
    messageDirection: 1,
    sentTime: Date.now(),
    sentStatus: 10,
    objectName: 'mls',
    encrypted: true,
    innerType: 'text',
    messageType: 'TextMessage',
    content: new TextMessage({ content: text }),
  };
  render(pending);
  try {
    const e = await e2eeReady;
    if (!e) throw new Error('end-to-end encryption is not available on this page');
    const d = await e.sendText(type, target, text);
    const sent = { ...decryptedMessage(d), clientMsgId: pending.clientMsgId };
    if (open === target && openType === type) {
      const echo = byUid.get(d.uid);
      const row = byClient.get(pending.clientMsgId);
      // Its copy came back first (from another path): the pending row goes.
      if (echo && row && echo !== row) removeRow(row);
      else render(sent);
      refreshSafety();
    }
    renderConversations();
  } catch (err) {
    const why = err?.kind === 'noDevices' ? `${displayName(target)} has no device that takes encrypted messages yet` : err?.message ?? err;
    if (open === target && openType === type) render({ ...pending, sentStatus: 20 });
    banner(`Not sent: ${why}`, true);
    setTimeout(() => banner(''), 4000);
  }
}

/** Takes a row out of the open conversation. */
function removeRow(row) {
  rows = rows.filter((r) => r !== row);
  for (const map of [byUid, byClient, bySeq]) for (const [k, r] of map) if (r === row) map.delete(k);
  changed(row);
  $('messages').dataset.loaded = String(rows.length);
  layout();
}

$('text').addEventListener('input', () => {
  const now = Date.now();
  if (client && open && openType === PRIVATE && now - lastTypingSent > 3000) {
    lastTypingSent = now;
    client.sendTypingStatusMessage(PRIVATE, open);
  }
});

$('file').addEventListener('change', async (e) => {
  const input = /** @type {HTMLInputElement} */ (e.target);
  const file = input.files?.[0];
  input.value = '';
  if (!file || !session) return;
  banner(`Uploading ${file.name}…`);
  try {
    const up = await upload(file);
    banner('');
    if (up.file.kind === 'image') {
      await send(new ImageMessage({ imageUri: up.url, content: up.thumbnailUrl }));
    } else {
      await send(
        new FileMessage({ fileUrl: up.url, name: up.file.name, size: up.file.size, type: up.file.type }),
      );
    }
  } catch (err) {
    banner(`Upload failed: ${err.message ?? err}`, true);
  }
});

/** Uploads a file with this user's token (docs/protocol.md, "Files"); answers the server's JSON. */
async function upload(file) {
  if (!session) throw new Error('not signed in');
  const r = await fetch(`/v1/files?name=${encodeURIComponent(file.name)}`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${session.token}`,
      'Content-Type': file.type || 'application/octet-stream',
    },
    body: file,
  });
  const up = await r.json();
  if (!r.ok || up.code) throw new Error(up.message || `HTTP ${r.status}`);
  return up;
}

// ------------------------------------------------------------------ start

const saved = localStorage.getItem(SESSION_KEY);
if (saved) {
  start(JSON.parse(saved));
} else {
  $('auth').hidden = false;
}
