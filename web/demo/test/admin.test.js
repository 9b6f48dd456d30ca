// The admin console (`/admin`) in a real browser (Debian's Chromium, driven by playwright-core)
// against a real `tidings serve`: an operator added with `tidings admin add` signs in (the
// session cookie is Secure, HttpOnly and SameSite=Strict, and the browser keeps it on
// http://127.0.0.1), sees a user of the demo page come online, kicks them, bans them and sees
// their reconnect refused, sends a system message that another user (the browser SDK) receives,
// finds it all in the audit log, and signs out; every admin API route (the table the Rust test
// passes in TIDINGS_ADMIN_ROUTES) refuses a request without a session; and the group, chatroom
// and sensitive-word pages do what they say. Screenshots go to BROWSER_ARTIFACTS.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { startServer } from './support/server.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const artifacts = process.env.BROWSER_ARTIFACTS ?? join(root, 'target', 'browser-artifacts');
mkdirSync(artifacts, { recursive: true });

const OPERATOR_PASSWORD = 'operator password';
const USER_PASSWORD = 'correct horse battery';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  server = await startServer();
  const added = spawnSync(process.env.TIDINGS_BIN ?? '', ['admin', 'add', 'root', '--password-stdin', '--data-dir', server.dataDir], {
    input: `${OPERATOR_PASSWORD}\n`,
    encoding: 'utf8',
  });
  assert.equal(added.status, 0, added.stderr);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function newPage(path) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  await page.goto(`${server.url}${path}`);
  return { context, page };
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`) });
}

test('an operator signs in, kicks and bans a user, sends a system message, and signs out', async () => {
  // A user of the demo page (the browser SDK), online.
  const ann = await newPage('/');
  await ann.page.locator('#account').fill('ann');
  await ann.page.locator('#password').fill(USER_PASSWORD);
  await ann.page.locator('#register').click();
  await ann.page.locator('#app[data-status="0"]').waitFor();

  // Another user, on the SDK directly, recording what arrives.
  const { token: carolToken } = await server.api('POST', '/users/carol/token');
  const carol = await newPage('/admin');
  await carol.page.evaluate(async (token) => {
    const { TidingsClient } = await import('/sdk/index.js');
    const c = new TidingsClient().init('app', { navi: location.origin });
    /** @type {any} */ (window).got = [];
    c.on('message', (m) => /** @type {any} */ (window).got.push(JSON.stringify(m)));
    await c.connect(token);
  }, carolToken);

  // The operator signs in.
  const { context, page } = await newPage('/admin');
  await page.locator('#sign-in-form').waitFor();
  await shot(page, 'admin-sign-in');
  await page.locator('#name').fill('root');
  await page.locator('#password').fill('wrong password');
  await page.locator('#sign-in-button').click();
  await page.locator('#sign-in-error', { hasText: '42011' }).waitFor();
  await page.locator('#password').fill(OPERATOR_PASSWORD);
  await page.locator('#sign-in-button').click();
  await page.locator('#operator', { hasText: 'Signed in as root' }).waitFor();
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'tidings_admin');
  assert.ok(session, 'the browser kept the session cookie on http://127.0.0.1');
  assert.equal(session.secure, true);
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(session.path, '/admin');
  assert.equal(await page.evaluate(() => document.cookie), '', 'the page cannot read it');

  // The overview counts both connections.
  await page.locator('#figures dd', { hasText: /^2$/ }).first().waitFor();
  await shot(page, 'admin-overview');

  // Ann is online, with her device.
  await page.locator('#tabs button[data-page="users"]').click();
  await page.locator('#user-prefix').fill('an');
  await page.locator('#find-users button').click();
  const row = page.locator('#user-list tr[data-user="ann"]');
  await row.locator('.online', { hasText: 'online' }).waitFor();
  await row.locator('button', { hasText: 'Open' }).click();
  await page.locator('#devices tr').first().waitFor();
  await shot(page, 'admin-user');

  // Kicked: her page is disconnected with 41008, and not reconnecting.
  await page.locator('#devices tr button', { hasText: 'Kick' }).first().click();
  await page.locator('#status', { hasText: 'Kicked' }).waitFor();
  await ann.page.locator('#app[data-status="41008"]').waitFor();
  await page.locator('#devices tr').waitFor({ state: 'detached' });

  // Banned: coming back, her page is refused and signed out.
  await page.locator('#ban').click();
  await page.locator('#user[data-banned="true"]').waitFor();
  await ann.page.reload();
  await ann.page.locator('#auth').waitFor();
  await ann.page.locator('#banner, #auth-error', { hasText: /session has ended|banned/i }).first().waitFor();

  // A system message reaches carol.
  await page.locator('#tabs button[data-page="messages"]').click();
  await page.locator('#system-to').fill('carol');
  await page.locator('#system-text').fill('maintenance at noon');
  await page.locator('#system button[type="submit"]').click();
  await page.locator('#status', { hasText: 'Sent to 1 user' }).waitFor();
  await carol.page.waitForFunction(() => /** @type {any} */ (window).got.some((m) => m.includes('maintenance at noon')));

  // A private message found in its conversation, and recalled.
  await server.api('POST', '/messages', { fromUserId: 'dave', conversationType: 1, targetId: 'carol', content: { text: 'buy cheap pills' } });
  await page.locator('#history-type').selectOption('1');
  await page.locator('#history-user').fill('dave');
  await page.locator('#history-target').fill('carol');
  await page.locator('#history button[type="submit"]').click();
  const message = page.locator('#history-list tr[data-seq="1"]');
  await message.locator('td', { hasText: 'buy cheap pills' }).waitFor();
  await message.locator('button', { hasText: 'Recall' }).click();
  await message.locator('td', { hasText: '(recalled)' }).waitFor();
  const recalled = await server.api('GET', '/history?conversationType=1&userId=dave&targetId=carol');
  assert.equal(recalled.messages[0].recalled, true);

  // All of it is in the audit log, newest first.
  await page.locator('#tabs button[data-page="audit"]').click();
  await page.locator('#audit tr[data-action="message.system"]').waitFor();
  const actions = await page.locator('#audit tr').evaluateAll((rows) => rows.map((r) => /** @type {HTMLElement} */ (r).dataset.action));
  assert.deepEqual(actions.slice(0, 7), ['message.history', 'message.recall', 'message.history', 'message.system', 'user.ban', 'user.kick', 'login']);
  await shot(page, 'admin-audit');

  // Signed out: the form again, and the API refuses the old session.
  await page.locator('#sign-out').click();
  await page.locator('#sign-in-form').waitFor();
  const after = await page.evaluate(async () => {
    const r = await fetch('/admin/api/users/ann/unban', { method: 'POST', headers: { 'X-Tidings-Admin': '1' } });
    return { status: r.status, body: await r.json() };
  });
  assert.equal(after.status, 401);
  assert.equal(after.body.code, 42030);
});

test('the admin API refuses a request from another site', async () => {
  const { page } = await newPage('/admin');
  await page.locator('#name').fill('root');
  await page.locator('#password').fill(OPERATOR_PASSWORD);
  await page.locator('#sign-in-button').click();
  await page.locator('#operator', { hasText: 'Signed in as root' }).waitFor();
  // The page's own request without the header: refused (a cross-site form cannot send it).
  const bare = await page.evaluate(async () => {
    const r = await fetch('/admin/api/users/ann/unban', { method: 'POST' });
    return { status: r.status, body: await r.json() };
  });
  assert.equal(bare.status, 403);
  assert.equal(bare.body.code, 42031);
});

test('without a session, every admin API route is refused', async () => {
  const routes = JSON.parse(process.env.TIDINGS_ADMIN_ROUTES ?? '[]');
  assert.ok(routes.length > 20, 'the route table is passed in (TIDINGS_ADMIN_ROUTES)');
  const { page } = await newPage('/admin');
  await page.locator('#sign-in-form').waitFor();
  const answers = await page.evaluate(async (routes) => {
    const out = [];
    for (const [method, path] of routes) {
      const url = path.replace(/\{[a-z_]+\}/g, 'someone');
      const r = await fetch(url, { method, headers: { 'X-Tidings-Admin': '1' } });
      out.push({ route: `${method} ${path}`, status: r.status, code: (await r.json()).code });
    }
    return out;
  }, routes);
  for (const a of answers) assert.deepEqual([a.route, a.status, a.code], [a.route, 401, 42030]);
});

test('groups, chatrooms and sensitive words from the console', async () => {
  await server.api('POST', '/groups', { groupId: 'crew', ownerId: 'olga', memberIds: ['pat'] });
  await server.api('POST', '/chatrooms', { chatroomId: 'hall', name: 'The hall' });
  const { page } = await newPage('/admin');
  page.on('dialog', (d) => d.accept());
  await page.locator('#name').fill('root');
  await page.locator('#password').fill(OPERATOR_PASSWORD);
  await page.locator('#sign-in-button').click();
  await page.locator('#operator', { hasText: 'Signed in as root' }).waitFor();

  // A group: add a member, mute one, remove one, dismiss it.
  await page.locator('#tabs button[data-page="groups"]').click();
  await page.locator('#group-id').fill('crew');
  await page.locator('#load-group button').click();
  await page.locator('#group-members tr[data-member="pat"]').waitFor();
  await page.locator('#add-member-ids').fill('quinn, rae');
  await page.locator('#add-members button').click();
  await page.locator('#group-members tr[data-member="rae"]').waitFor();
  await page.locator('#mute-group-user').fill('quinn');
  await page.locator('#mute-group button').click();
  await page.locator('#group-members tr[data-member="quinn"] td', { hasText: 'until lifted' }).waitFor();
  await page.locator('#group-members tr[data-member="pat"] button', { hasText: 'Remove' }).click();
  await page.locator('#group-members tr[data-member="pat"]').waitFor({ state: 'detached' });
  await shot(page, 'admin-group');
  await page.locator('#dismiss').click();
  await page.locator('#status', { hasText: 'Dismissed' }).waitFor();
  assert.notEqual((await server.api('GET', '/groups/crew')).group.dismissedTime, 0);

  // A chatroom: ban a user for ten minutes, then destroy it.
  await page.locator('#tabs button[data-page="chatrooms"]').click();
  await page.locator('#room-id').fill('hall');
  await page.locator('#load-room button').click();
  await page.locator('#room-info dd', { hasText: 'The hall' }).waitFor();
  await page.locator('#room-user-ids').fill('troll');
  await page.locator('#room-minutes').fill('10');
  await page.locator('#room-users button[data-act="ban"]').click();
  await page.locator('#status', { hasText: 'ban done' }).waitFor();
  await page.locator('#destroy').click();
  await page.locator('#status', { hasText: 'Destroyed' }).waitFor();
  await assert.rejects(server.api('GET', '/chatrooms/hall'), /23410/);

  // Sensitive words: add one with a replacement, then remove it.
  await page.locator('#tabs button[data-page="words"]').click();
  await page.locator('#word').fill('darn');
  await page.locator('#replacement').fill('****');
  await page.locator('#add-word button').click();
  const row = page.locator('#words tr', { hasText: 'darn' });
  await row.locator('td', { hasText: '****' }).waitFor();
  assert.deepEqual((await server.api('GET', '/sensitive-words')).words, [{ word: 'darn', replacement: '****' }]);
  await row.locator('button', { hasText: 'Remove' }).click();
  await row.waitFor({ state: 'detached' });
  assert.deepEqual((await server.api('GET', '/sensitive-words')).words, []);

  // Each is in the audit log.
  await page.locator('#tabs button[data-page="audit"]').click();
  await page.locator('#audit tr[data-action="words.remove"]').waitFor();
  const actions = await page.locator('#audit tr').evaluateAll((rows) => rows.map((r) => /** @type {HTMLElement} */ (r).dataset.action));
  assert.deepEqual(actions.slice(0, 8), [
    'words.remove',
    'words.add',
    'chatroom.destroy',
    'chatroom.ban',
    'group.dismiss',
    'group.remove',
    'group.mute',
    'group.add',
  ]);
});
