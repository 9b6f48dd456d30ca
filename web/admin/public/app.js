// The admin console: sign in as an operator, then look at the service and act on its users,
// groups, chatrooms, messages and sensitive words. Every call goes to /admin/api with the
// session cookie the server set at sign-in (HttpOnly: this script never sees it) and the
// X-Tidings-Admin header, without which the server refuses a request as possibly cross-site.
// The server does each action for the operator and writes it to the audit log; this page
// never holds the app secret.

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** Codes the server answers (docs/protocol.md, "Errors"). */
const SIGN_IN_NEEDED = 42030;

/** An error answer of the admin API. */
class ApiError extends Error {
  /** @param {number} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/**
 * Calls the admin API; answers its JSON, or throws an ApiError. A 42030 (no session) shows the
 * sign-in form.
 * @param {string} method
 * @param {string} path under /admin/api
 * @param {unknown} [body]
 */
async function api(method, path, body) {
  const headers = { 'X-Tidings-Admin': '1' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(`/admin/api${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  let answer;
  try {
    answer = await r.json();
  } catch {
    throw new ApiError(0, `the server answered ${r.status} without JSON`);
  }
  if (answer.code !== 0) {
    if (answer.code === SIGN_IN_NEEDED) showSignIn('Your session has ended: sign in again.');
    throw new ApiError(answer.code, `${answer.code}: ${answer.message}`);
  }
  return answer;
}

/** Shows the outcome of an action. */
function status(text, good = true) {
  const s = $('status');
  s.textContent = text;
  s.className = `status ${good ? 'good' : 'bad'}`;
}

/** Runs an action, showing its outcome; answers what it answered, or undefined on failure. */
async function act(what, run) {
  try {
    const out = await run();
    if (what) status(what);
    return out;
  } catch (e) {
    status(e instanceof Error ? e.message : String(e), false);
    return undefined;
  }
}

/**
 * Makes an element with attributes and children (text or elements).
 * @param {string} tag
 * @param {Record<string, string>} [attrs]
 * @param {...(Node | string | number | null | undefined)} children
 */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

function button(text, onClick, cls = '') {
  const b = el('button', { type: 'button', class: cls }, text);
  b.addEventListener('click', onClick);
  return b;
}

/** A time in ms as local text; 0 as "—", the far future as "until lifted". */
function time(ms) {
  if (!ms) return '—';
  if (ms >= 8.64e15) return 'until lifted';
  return new Date(ms).toLocaleString();
}

function fill(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v ?? '—')]));
}

/** Comma-separated ids as a list. */
function ids(text) {
  return text.split(',').map((s) => s.trim()).filter(Boolean);
}

/** Minutes from an input: absent (empty) or a number. */
function minutes(input) {
  const v = /** @type {HTMLInputElement} */ (input).value.trim();
  return v === '' ? undefined : Number(v);
}

const value = (id) => /** @type {HTMLInputElement} */ ($(id)).value.trim();

// ------------------------------------------------------------------ sign-in and pages

function showSignIn(message = '') {
  $('console').hidden = true;
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = message;
  clearInterval(overviewTimer);
}

function showConsole(operator) {
  $('sign-in').hidden = true;
  $('console').hidden = false;
  $('operator').textContent = `Signed in as ${operator}`;
  showPage('overview');
}

$('sign-in-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('sign-in-error').textContent = '';
  try {
    const r = await api('POST', '/login', { name: value('name'), password: /** @type {HTMLInputElement} */ ($('password')).value });
    /** @type {HTMLInputElement} */ ($('password')).value = '';
    showConsole(r.operator);
  } catch (e) {
    $('sign-in-error').textContent = e instanceof Error ? e.message : String(e);
  }
});

$('sign-out').addEventListener('click', async () => {
  await act('', () => api('POST', '/logout'));
  showSignIn('Signed out.');
});

/** @type {ReturnType<typeof setInterval> | undefined} */
let overviewTimer;

const loaders = {
  overview: loadOverview,
  users: () => findUsers(false),
  groups: async () => {},
  chatrooms: async () => {},
  messages: async () => {},
  words: loadWords,
  audit: () => loadAudit(false),
};

function showPage(name) {
  for (const b of $('tabs').querySelectorAll('button')) b.classList.toggle('open', b.dataset.page === name);
  for (const p of document.querySelectorAll('.page')) p.hidden = p.id !== `page-${name}`;
  clearInterval(overviewTimer);
  if (name === 'overview') overviewTimer = setInterval(() => act('', loadOverview), 5000);
  status('');
  act('', loaders[name]);
}

for (const b of $('tabs').querySelectorAll('button')) {
  b.addEventListener('click', () => showPage(/** @type {HTMLElement} */ (b).dataset.page));
}

// ------------------------------------------------------------------ overview

async function loadOverview() {
  const o = await api('GET', '/overview');
  // The rates, latencies and drops come from the metrics over the last few seconds.
  const why = o.metrics === 'off' ? 'metrics are off (--metrics-listen off)' : o.metrics === 'on' ? null : o.metrics;
  const ms = (p) => (p ? `p50 ${p.p50} · p90 ${p.p90} · p99 ${p.p99}` : 'no messages in the last interval');
  const drops = (d) => Object.entries(d.total).map(([k, v]) => `${k} ${v} (+${d.lastInterval[k]})`).join(' · ');
  fill($('figures'), [
    ['Connections', o.connections],
    ['Users online (this node)', o.usersOnline],
    ['Long-poll sessions', o.pollSessions],
    ['Messages per second', why ?? `${o.messagesPerSecond} (last ${o.intervalSecs} s)`],
    ['Publish → PUBACK (ms)', why ?? ms(o.latencyMs.publishToPuback)],
    ['Publish → delivery (ms)', why ?? ms(o.latencyMs.publishToDelivery)],
    ['Drops since start (+ last interval)', why ?? drops(o.drops)],
    ['Server time', time(o.serverTime)],
  ]);
  $('nodes').replaceChildren(
    ...o.nodes.map((n) => el('tr', {}, el('td', {}, n.node ?? '(single node)'), el('td', {}, n.self ? 'yes' : ''), el('td', {}, n.urls.join(' ')))),
  );
}

// ------------------------------------------------------------------ users

let usersAfter = '';
/** The user open in the detail view. */
let openUser = '';

async function findUsers(more) {
  if (!more) usersAfter = '';
  const q = new URLSearchParams({ prefix: value('user-prefix'), after: usersAfter });
  const r = await api('GET', `/users?${q}`);
  const rows = r.users.map((u) =>
    el(
      'tr',
      { 'data-user': u.userId },
      el('td', {}, u.userId),
      el('td', {}, u.name),
      el('td', { class: 'online' }, u.online ? 'online' : ''),
      el('td', { class: 'banned' }, u.banned ? 'banned' : ''),
      el('td', {}, button('Open', () => act('', () => openUserView(u.userId)))),
    ),
  );
  if (more) $('user-list').append(...rows);
  else $('user-list').replaceChildren(...rows);
  usersAfter = r.nextAfter;
  $('more-users').hidden = !usersAfter;
}

$('find-users').addEventListener('submit', (ev) => {
  ev.preventDefault();
  act('', () => findUsers(false));
});
$('more-users').addEventListener('click', () => act('', () => findUsers(true)));

async function openUserView(user) {
  openUser = user;
  $('user').hidden = false;
  $('user-title').textContent = user;
  $('minted').textContent = '';
  await loadUser();
}

async function loadUser() {
  const user = encodeURIComponent(openUser);
  const [{ user: u }, d, g] = await Promise.all([
    api('GET', `/users/${user}`),
    api('GET', `/users/${user}/devices`),
    api('GET', `/users/${user}/groups`),
  ]);
  fill($('user-profile'), [
    ['Name', u.name],
    ['Portrait', u.portrait],
    ['Extra', u.extra === null ? '' : JSON.stringify(u.extra)],
    ['Online', u.online ? 'yes' : 'no'],
    ['Banned', u.banned ? 'yes' : 'no'],
    ['Last seen', time(u.lastSeen)],
  ]);
  $('user').dataset.banned = String(u.banned);
  $('elsewhere').hidden = !d.onlineElsewhere;
  $('devices').replaceChildren(
    ...d.devices.map((dev) =>
      el(
        'tr',
        { 'data-device': dev.deviceId || `session-${dev.sessionId}` },
        el('td', {}, dev.deviceId || `(anonymous, session ${dev.sessionId})`),
        el('td', {}, dev.platform),
        el('td', {}, time(dev.connectedAt)),
        el(
          'td',
          {},
          button('Kick', () =>
            userAction(`Kicked ${dev.deviceId || 'the device'}`, 'kick', dev.deviceId ? { deviceId: dev.deviceId } : { sessionId: dev.sessionId }),
          ),
        ),
      ),
    ),
  );
  $('user-groups').replaceChildren(...g.groups.map((gr) => el('li', {}, `${gr.groupId} ${gr.name ? `(${gr.name})` : ''}`)));
}

/** An action on the open user, then the view again. */
async function userAction(done, what, body) {
  const out = await act(done, () => api('POST', `/users/${encodeURIComponent(openUser)}/${what}`, body));
  await act('', loadUser);
  return out;
}

$('user-refresh').addEventListener('click', () => act('', loadUser));
$('kick-all').addEventListener('click', () => userAction('Kicked every device', 'kick', {}));
$('ban').addEventListener('click', () => userAction('Banned', 'ban'));
$('unban').addEventListener('click', () => userAction('Unbanned', 'unban'));
$('revoke').addEventListener('click', () => userAction('Revoked every token', 'revoke'));
$('mint').addEventListener('click', async () => {
  const r = await userAction('Minted a token', 'token', {});
  if (r) $('minted').textContent = `${r.token} (expires ${time(r.expiresAt * 1000)})`;
});

// ------------------------------------------------------------------ groups

let openGroup = '';

async function loadGroup() {
  const g = encodeURIComponent(openGroup);
  const [{ group }, m] = await Promise.all([api('GET', `/groups/${g}`), api('GET', `/groups/${g}/members?limit=200`)]);
  $('group').hidden = false;
  fill($('group-info'), [
    ['Group', group.groupId],
    ['Kind', group.kind],
    ['Name', group.name],
    ['Owner', group.ownerId],
    ['Members', group.memberCount],
    ['Created', time(group.createdTime)],
    ['Muted until', time(group.mutedUntil)],
    ['Dismissed', time(group.dismissedTime)],
  ]);
  $('group-members').replaceChildren(
    ...m.members.map((mem) =>
      el(
        'tr',
        { 'data-member': mem.userId },
        el('td', {}, mem.userId),
        el('td', {}, time(mem.joinedTime)),
        el('td', {}, time(mem.mutedUntil)),
        el('td', {}, button('Remove', () => groupAction(`Removed ${mem.userId}`, 'POST', 'members/remove', { userIds: [mem.userId] }))),
      ),
    ),
  );
}

async function groupAction(done, method, what, body) {
  await act(done, () => api(method, `/groups/${encodeURIComponent(openGroup)}${what ? `/${what}` : ''}`, body));
  await act('', loadGroup);
}

$('load-group').addEventListener('submit', (ev) => {
  ev.preventDefault();
  openGroup = value('group-id');
  act('', loadGroup);
});
$('add-members').addEventListener('submit', (ev) => {
  ev.preventDefault();
  groupAction('Added', 'POST', 'members', { userIds: ids(value('add-member-ids')) });
});
$('mute-group').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const body = { userId: value('mute-group-user') || undefined, minutes: minutes($('mute-group-minutes')) };
  groupAction('Mute set', 'POST', 'mute', body);
});
$('dismiss').addEventListener('click', () => {
  if (confirm(`Dismiss the group ${openGroup}?`)) groupAction('Dismissed', 'DELETE', '');
});

// ------------------------------------------------------------------ chatrooms

let openRoom = '';

async function loadRoom() {
  const r = encodeURIComponent(openRoom);
  const [{ chatroom }, m, e] = await Promise.all([
    api('GET', `/chatrooms/${r}`),
    api('GET', `/chatrooms/${r}/members?limit=200`),
    api('GET', `/chatrooms/${r}/entries`),
  ]);
  $('room').hidden = false;
  fill($('room-info'), [
    ['Chatroom', chatroom.chatroomId],
    ['Name', chatroom.name],
    ['Members', chatroom.memberCount],
    ['Kept', chatroom.kept ? 'yes' : 'no (made by a join)'],
    ['Muted until', time(chatroom.mutedUntil)],
    ['Seq', chatroom.seq],
  ]);
  $('room-members').replaceChildren(
    ...m.members.map((mem) => el('tr', {}, el('td', {}, mem.userId), el('td', {}, time(mem.joinedTime)), el('td', {}, time(mem.mutedUntil)))),
  );
  $('room-entries').replaceChildren(...e.entries.map((en) => el('tr', {}, el('td', {}, en.key), el('td', {}, en.value), el('td', {}, en.userId))));
}

async function roomAction(done, method, what, body) {
  await act(done, () => api(method, `/chatrooms/${encodeURIComponent(openRoom)}${what ? `/${what}` : ''}`, body));
  await act('', loadRoom);
}

$('load-room').addEventListener('submit', (ev) => {
  ev.preventDefault();
  openRoom = value('room-id');
  act('', loadRoom);
});
$('room-users').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const which = /** @type {HTMLElement | null} */ (/** @type {SubmitEvent} */ (ev).submitter)?.dataset.act ?? 'kick';
  const body = { userIds: ids(value('room-user-ids')) };
  if (which !== 'kick') body.minutes = minutes($('room-minutes'));
  roomAction(`${which} done`, 'POST', which, body);
});
$('mute-room').addEventListener('submit', (ev) => {
  ev.preventDefault();
  roomAction('Room mute set', 'POST', 'mute', { minutes: minutes($('mute-room-minutes')) });
});
$('destroy').addEventListener('click', async () => {
  if (!confirm(`Destroy the room ${openRoom}?`)) return;
  // Nothing is left to show afterwards.
  if (await act('Destroyed', () => api('DELETE', `/chatrooms/${encodeURIComponent(openRoom)}`))) $('room').hidden = true;
});

// ------------------------------------------------------------------ messages

$('system').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const to = ids(value('system-to'));
  act(`Sent to ${to.length} user(s)`, () =>
    api('POST', '/messages/system', { fromUserId: value('system-from'), toUserIds: to, content: { text: value('system-text') } }),
  );
});
$('broadcast').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (!confirm('Send this to every user?')) return;
  const r = await act('', () => api('POST', '/messages/broadcast', { fromUserId: value('broadcast-from'), content: { text: value('broadcast-text') } }));
  if (r) status(`Broadcast to ${r.recipients} users`);
});
/** The conversation the history list shows, and where its next page starts. */
let history = { type: 1, user: '', target: '', after: 0 };

async function loadHistory(more) {
  if (!more) {
    history = { type: Number(value('history-type')), user: value('history-user'), target: value('history-target'), after: 0 };
  }
  const q = new URLSearchParams({
    conversationType: String(history.type),
    userId: history.user,
    targetId: history.target,
    afterSeq: String(history.after),
  });
  const r = await api('GET', `/history?${q}`);
  const rows = r.messages.map((m) => {
    // Recalled as its sender, in the conversation as the sender sees it (a system message: the
    // system account's conversation with the user it went to).
    const target = history.type === 3 ? history.target : m.senderId === history.user ? history.target : history.user;
    const recall = () =>
      act(`Recalled message ${m.seq}`, () =>
        api('POST', '/messages/recall', { fromUserId: m.senderId, conversationType: history.type, targetId: target, seq: m.seq }),
      ).then(() => act('', () => loadHistory(false)));
    return el(
      'tr',
      { 'data-seq': String(m.seq) },
      el('td', {}, m.seq),
      el('td', {}, time(m.sentTime)),
      el('td', {}, m.senderId),
      el('td', {}, m.msgType),
      el('td', { class: 'details' }, m.recalled ? '(recalled)' : JSON.stringify(m.content)),
      // The notices the server records cannot be recalled.
      el('td', {}, m.recalled || m.msgType.startsWith('tidings:') ? '' : button('Recall', recall, 'danger')),
    );
  });
  if (more) $('history-list').append(...rows);
  else $('history-list').replaceChildren(...rows);
  history.after = r.nextAfterSeq;
  $('history-more').hidden = !history.after;
}

$('history').addEventListener('submit', (ev) => {
  ev.preventDefault();
  act('', () => loadHistory(false));
});
$('history-more').addEventListener('click', () => act('', () => loadHistory(true)));

$('recall').addEventListener('submit', (ev) => {
  ev.preventDefault();
  act('Recalled', () =>
    api('POST', '/messages/recall', {
      fromUserId: value('recall-from'),
      conversationType: Number(value('recall-type')),
      targetId: value('recall-target'),
      seq: Number(value('recall-seq')),
    }),
  );
});

// ------------------------------------------------------------------ sensitive words

function showWords(words) {
  $('words').replaceChildren(
    ...words.map((w) =>
      el(
        'tr',
        {},
        el('td', {}, w.word),
        el('td', {}, w.replacement ?? '(refused)'),
        el('td', {}, button('Remove', async () => {
          const r = await act(`Removed ${w.word}`, () => api('POST', '/sensitive-words/remove', { words: [w.word] }));
          if (r) showWords(r.words);
        })),
      ),
    ),
  );
}

async function loadWords() {
  showWords((await api('GET', '/sensitive-words')).words);
}

$('add-word').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const replacement = value('replacement');
  const r = await act('Added', () => api('POST', '/sensitive-words', { words: [{ word: value('word'), replacement: replacement || undefined }] }));
  if (r) showWords(r.words);
});

// ------------------------------------------------------------------ audit log

let auditBefore = 0;

async function loadAudit(more) {
  if (!more) auditBefore = 0;
  const r = await api('GET', `/audit?before=${auditBefore}&limit=50`);
  const rows = r.entries.map((e) =>
    el(
      'tr',
      { 'data-action': e.action },
      el('td', {}, time(e.time)),
      el('td', {}, e.operator),
      el('td', {}, e.action),
      el('td', {}, e.target),
      el('td', { class: 'details' }, JSON.stringify(e.details)),
    ),
  );
  if (more) $('audit').append(...rows);
  else $('audit').replaceChildren(...rows);
  auditBefore = r.nextBefore;
  $('older').hidden = !auditBefore;
}

$('older').addEventListener('click', () => act('', () => loadAudit(true)));

// ------------------------------------------------------------------ start

api('GET', '/me').then(
  (r) => showConsole(r.operator),
  (e) => {
    showSignIn(e instanceof ApiError && e.code === SIGN_IN_NEEDED ? '' : e.message);
  },
);
