// The demo chat page: built-in accounts, the conversation list, one-to-one chat with images and
// files, over the browser SDK. Everything it loads comes from this server.
import {
  ConnectionStatus,
  ConversationType,
  FileMessage,
  ImageMessage,
  TextMessage,
  TidingsClient,
} from '/sdk/index.js';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const SESSION_KEY = 'tidings-demo-session';
const PRIVATE = ConversationType.PRIVATE;
const PAGE = 30;

/** @type {TidingsClient | null} */
let client = null;
/** @type {{ userId: string, token: string } | null} */
let session = null;
/** The open conversation's other user. */
let open = '';
/** Rendered bubbles of the open conversation, by message id (server uid, else client id). */
const bubbles = new Map();
/** The oldest seq shown, for loading earlier messages; 0 when all are shown. */
let oldestSeq = 0;
let loadingOlder = false;
/** @type {Map<string, any>} conversations by target id */
const conversations = new Map();
let typingTimer = 0;
let lastTypingSent = 0;

// ------------------------------------------------------------------ accounts

async function account(path, body, token) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(`/v1/accounts/${path}`, {
    method: 'POST',
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
  open = '';
  conversations.clear();
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
  $('auth').hidden = true;
  $('app').hidden = false;
  $('me-name').textContent = s.userId;
  const params = new URLSearchParams(location.search);
  const c = new TidingsClient().init('demo', {
    navi: location.origin,
    transport: /** @type {any} */ (params.get('transport') ?? 'auto'),
    deviceId: params.get('device') ?? undefined,
  });
  client = c;
  c.setConnectionStatusListener({ onChanged: onStatus });
  c.on('transport', showTransport);
  c.on('message', onMessage);
  c.on('conversation', (conv) => {
    if (conv.conversationType !== PRIVATE) return;
    if (conv.removed) conversations.delete(conv.targetId);
    else conversations.set(conv.targetId, conv);
    renderConversations();
  });
  c.on('typing', (t) => {
    if (t.targetId !== open || t.userId === session?.userId) return;
    $('typing').textContent = `${t.userId} is typing…`;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => ($('typing').textContent = ''), 6000);
  });
  c.on('sentStatus', (m) => {
    if (m.targetId === open) render(m);
  });
  try {
    await c.connect(s.token);
  } catch (e) {
    if (client !== c) return;
    if ([31004, 31005, 31020, 31021, 31009].includes(e.serverCode)) {
      signedOut('Your session has ended: sign in again.');
    }
    return;
  }
  showTransport(c.getTransportType() === 0 ? 'polling' : 'websocket');
  await loadConversations();
}

// ------------------------------------------------------------------ conversations

async function loadConversations() {
  if (!client) return;
  const list = await client.getConversationList([PRIVATE]).catch(() => []);
  conversations.clear();
  for (const conv of list) conversations.set(conv.targetId, conv);
  renderConversations();
}

function preview(m) {
  if (!m) return '';
  const c = m.content;
  switch (m.messageType) {
    case 'TextMessage':
      return c.content;
    case 'ImageMessage':
      return 'Image';
    case 'FileMessage':
      return `File: ${c.name}`;
    default:
      return m.isRecalled ? 'Message recalled' : `[${m.objectName}]`;
  }
}

function clock(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function renderConversations() {
  const ul = $('conversations');
  const sorted = [...conversations.values()].sort((a, b) => (b.sentTime ?? 0) - (a.sentTime ?? 0));
  ul.replaceChildren(
    ...sorted.map((conv) => {
      const li = document.createElement('li');
      li.dataset.target = conv.targetId;
      li.classList.toggle('open', conv.targetId === open);
      const name = Object.assign(document.createElement('span'), {
        className: 'name',
        textContent: conv.targetId,
      });
      const time = Object.assign(document.createElement('span'), {
        className: 'time',
        textContent: clock(conv.sentTime),
      });
      const text = Object.assign(document.createElement('span'), {
        className: 'preview',
        textContent: preview(conv.latestMessage),
      });
      li.append(name, time, text);
      if (conv.unreadMessageCount > 0 && conv.targetId !== open) {
        li.append(
          Object.assign(document.createElement('span'), {
            className: 'badge',
            textContent: String(conv.unreadMessageCount),
          }),
        );
      }
      li.addEventListener('click', () => openConversation(conv.targetId));
      return li;
    }),
  );
}

$('new-chat').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($('new-chat-user'));
  const user = input.value.trim();
  input.value = '';
  if (user) openConversation(user);
});

// ------------------------------------------------------------------ the open conversation

async function openConversation(target) {
  if (!client) return;
  open = target;
  bubbles.clear();
  oldestSeq = 0;
  $('message-list').replaceChildren();
  $('chat-title').textContent = target;
  $('typing').textContent = '';
  $('composer').hidden = false;
  renderConversations();
  await loadOlder(true);
  markRead();
  /** @type {HTMLInputElement} */ ($('text')).focus();
}

async function loadOlder(first = false) {
  if (!client || loadingOlder || (!first && !oldestSeq)) return;
  loadingOlder = true;
  const target = open;
  const box = $('messages');
  const before = box.scrollHeight - box.scrollTop;
  try {
    const page = await client.getHistoryMessages(PRIVATE, target, {
      count: PAGE,
      beforeSeq: first ? undefined : oldestSeq,
    });
    if (target !== open) return;
    const messages = page.messages.sort((a, b) => a.seq - b.seq);
    const list = $('message-list');
    const els = messages.filter((m) => !bubbles.has(key(m))).map((m) => bubble(m));
    list.prepend(...els);
    oldestSeq = page.hasMore && messages.length ? messages[0].seq : 0;
    $('history-top').textContent = oldestSeq ? '' : 'The beginning of the conversation';
    box.scrollTop = first ? box.scrollHeight : box.scrollHeight - before;
  } finally {
    loadingOlder = false;
  }
}

$('messages').addEventListener('scroll', () => {
  if ($('messages').scrollTop < 40) loadOlder();
});

function key(m) {
  return m.messageUId || `c:${m.clientMsgId}`;
}

/** A message's bubble, made or updated. */
function bubble(m) {
  let li = bubbles.get(key(m)) ?? (m.clientMsgId ? bubbles.get(`c:${m.clientMsgId}`) : undefined);
  if (!li) li = document.createElement('li');
  bubbles.set(key(m), li);
  if (m.clientMsgId) bubbles.set(`c:${m.clientMsgId}`, li);
  li.className = `msg${m.messageDirection === 1 ? ' mine' : ''}${m.sentStatus === 20 ? ' failed' : ''}`;
  li.dataset.uid = m.messageUId;
  li.dataset.seq = String(m.seq);
  li.replaceChildren(body(m));
  const status = m.messageDirection !== 1 ? '' : m.messageUId ? ' ✓' : m.sentStatus === 20 ? ' ✗ not sent' : ' …';
  li.append(
    Object.assign(document.createElement('span'), {
      className: 'meta',
      textContent: `${clock(m.sentTime)}${status}`,
    }),
  );
  return li;
}

function body(m) {
  const c = m.content;
  if (m.isRecalled) return document.createTextNode('Message recalled');
  switch (m.messageType) {
    case 'TextMessage':
      return Object.assign(document.createElement('span'), { className: 'text', textContent: c.content });
    case 'ImageMessage': {
      const a = Object.assign(document.createElement('a'), { href: c.imageUri, target: '_blank' });
      a.append(Object.assign(document.createElement('img'), { src: c.content || c.imageUri, alt: 'image' }));
      return a;
    }
    case 'FileMessage':
      return Object.assign(document.createElement('a'), {
        href: c.fileUrl,
        className: 'file',
        textContent: `${c.name} (${Math.max(1, Math.round(c.size / 1024))} KiB)`,
      });
    default:
      return document.createTextNode(`[${m.objectName}]`);
  }
}

/** Shows a message of the open conversation (new, or changed). */
function render(m) {
  const list = $('message-list');
  const known = bubbles.has(key(m)) || (m.clientMsgId && bubbles.has(`c:${m.clientMsgId}`));
  const li = bubble(m);
  if (!known) {
    const box = $('messages');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    list.append(li);
    if (atBottom || m.messageDirection === 1) box.scrollTop = box.scrollHeight;
  }
}

function onMessage(m) {
  if (m.conversationType !== PRIVATE) return;
  if (m.targetId === open) {
    render(m);
    markRead();
  }
}

function markRead() {
  if (client && open && document.visibilityState === 'visible') {
    client.clearUnreadCount(PRIVATE, open).catch(() => {});
  }
}
document.addEventListener('visibilitychange', markRead);

// ------------------------------------------------------------------ sending

async function send(content) {
  if (!client || !open) return;
  const target = open;
  try {
    await client.sendMessage(PRIVATE, target, content, {
      onBefore: (m) => {
        if (target === open) render(m);
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
  send(new TextMessage({ content: text }));
});

$('text').addEventListener('input', () => {
  const now = Date.now();
  if (client && open && now - lastTypingSent > 3000) {
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

// ------------------------------------------------------------------ start

const saved = localStorage.getItem(SESSION_KEY);
if (saved) {
  start(JSON.parse(saved));
} else {
  $('auth').hidden = false;
}
