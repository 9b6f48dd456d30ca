// The demo page in a real browser (Debian's Chromium, driven by playwright-core) against a real
// `tidings serve`: people sign up, chat both ways, come back to unread messages, and keep
// chatting over long-polling when WebSocket is blocked. Screenshots of the main views go to
// BROWSER_ARTIFACTS (default target/browser-artifacts).
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { startServer } from './support/server.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const artifacts = process.env.BROWSER_ARTIFACTS ?? join(root, 'target', 'browser-artifacts');
mkdirSync(artifacts, { recursive: true });

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  server = await startServer();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const PASSWORD = 'correct horse battery';
/** A 1×1 PNG. */
const DOT_PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);

/**
 * A person with a browser context of their own, on `at` (the tests' server by default), who
 * makes an account (or, with `login`, signs in to theirs).
 */
async function person(account, { blockWebSocket = false, at = server, viewport = { width: 1100, height: 700 }, login = false } = {}) {
  const context = await browser.newContext({ viewport });
  if (blockWebSocket) {
    await context.addInitScript(() => {
      // As a proxy that refuses the upgrade would: every WebSocket fails.
      window.WebSocket = /** @type {any} */ (
        function () {
          throw new Error('WebSocket is blocked here');
        }
      );
    });
  }
  const page = await open(context, at);
  await page.locator('#account').fill(account);
  await page.locator('#password').fill(PASSWORD);
  if (login) await page.locator('#password').press('Enter');
  else await page.locator('#register').click();
  await connected(page);
  return { account, context, page };
}

async function open(context, at = server) {
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  await page.goto(at.url);
  return page;
}

async function connected(page) {
  await page.locator('#app[data-status="0"]').waitFor();
  await page.locator('#transport[data-transport]').waitFor();
}

async function openChat(page, user) {
  const existing = page.locator(`#conversations li[data-target="${user}"]`);
  if (await existing.count()) {
    await existing.click();
  } else {
    await page.locator('#new-chat-user').fill(user);
    await page.locator('#new-chat-user').press('Enter');
  }
  await page.locator('#chat-title', { hasText: user }).waitFor();
}

async function send(page, text) {
  await page.locator('#text').fill(text);
  await page.locator('#text').press('Enter');
  // Acknowledged by the server: the tick shows.
  await page.locator('#message-list .msg.mine', { hasText: text }).locator('.meta', { hasText: '✓' }).waitFor();
}

async function sees(page, text) {
  await page.locator('#message-list .msg:not(.mine)', { hasText: text }).waitFor();
}

/** Sends an image (dot.png) and a file (notes.txt) to the chat open in `page`. */
async function sendImageAndFile(page) {
  await page.locator('#file').setInputFiles({ name: 'dot.png', mimeType: 'image/png', buffer: DOT_PNG });
  await page.locator('#file').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('the notes') });
}

/** Waits until an image in someone else's message has loaded in `page`. */
async function imageLoaded(page) {
  await page.waitForFunction(
    () => [...document.querySelectorAll('#message-list .msg:not(.mine) img')].some((i) => i.complete && i.naturalWidth > 0),
  );
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`) });
}

/** @type {Awaited<ReturnType<typeof person>>} */
let alice;
/** @type {Awaited<ReturnType<typeof person>>} */
let bob;

test('two people chat both ways', async () => {
  alice = await person('alice');
  bob = await person('bob');
  assert.equal(await alice.page.locator('#transport').getAttribute('data-transport'), 'websocket');
  await shot(alice.page, 'conversation-list-empty');

  await openChat(alice.page, 'bob');
  await send(alice.page, 'hello bob');

  // Bob's list shows the conversation with one unread message and its preview.
  const item = bob.page.locator('#conversations li[data-target="alice"]');
  await item.locator('.badge', { hasText: '1' }).waitFor();
  assert.match(await item.locator('.preview').innerText(), /hello bob/);
  await shot(bob.page, 'conversation-list-unread');
  await item.click();
  await sees(bob.page, 'hello bob');
  // Read now: the badge goes.
  await item.locator('.badge').waitFor({ state: 'detached' });

  await send(bob.page, 'hi alice');
  await sees(alice.page, 'hi alice');

  // An image and a file: uploaded, sent as links, shown to bob (the image by its thumbnail).
  await sendImageAndFile(alice.page);
  await imageLoaded(bob.page);
  const image = bob.page.locator('#message-list .msg:not(.mine) img');
  assert.match(await image.getAttribute('src'), /\/v1\/files\/[0-9a-f]{32}\/thumbnail\?exp=[1-9]\d*&sig=/);
  const file = bob.page.locator('#message-list .msg:not(.mine) a.file', { hasText: 'notes.txt' });
  await file.waitFor();
  const r = await fetch(await file.getAttribute('href'));
  assert.equal(await r.text(), 'the notes');
  await shot(alice.page, 'chat');
});

test('an image and a file whose links expired load from fresh links asked for with the message', async () => {
  // A server whose links live 4 s: the upload's own links in the messages expire that soon.
  const short = await startServer(['--max-file-link-secs', '4']);
  try {
    const carol = await person('carol', { at: short });
    const dave = await person('dave', { at: short });
    await openChat(carol.page, 'dave');
    await sendImageAndFile(carol.page);
    const sent = carol.page.locator('#message-list .msg.mine a.file', { hasText: 'notes.txt' });
    await sent.waitFor();
    const oldThumb = await carol.page.locator('#message-list .msg.mine img').getAttribute('src');
    const oldFile = await sent.getAttribute('href');
    // Dave opens the chat only once the links in the messages no longer work (the two uploads
    // may have been made in different seconds).
    const expired = async (link) => (await fetch(link)).status === 404;
    for (let i = 0; !((await expired(oldFile)) && (await expired(oldThumb))); i++) {
      assert.ok(i < 200, 'the uploads\' links still work');
      await new Promise((r) => setTimeout(r, 50));
    }
    await openChat(dave.page, 'carol');
    await imageLoaded(dave.page);
    const image = dave.page.locator('#message-list .msg:not(.mine) img');
    assert.notEqual(await image.getAttribute('src'), oldThumb);
    // The file's link is renewed when clicked, and downloads.
    const file = dave.page.locator('#message-list .msg:not(.mine) a.file', { hasText: 'notes.txt' });
    assert.equal(await file.getAttribute('href'), oldFile);
    const [download] = await Promise.all([dave.page.waitForEvent('download'), file.click()]);
    assert.notEqual(download.url(), oldFile);
    assert.equal(readFileSync(await download.path(), 'utf8'), 'the notes');
    await carol.context.close();
    await dave.context.close();
  } finally {
    await short.stop();
  }
});

test('someone who was away sees what came meanwhile, with the unread count', async () => {
  assert.ok(alice && bob, 'runs after the first test');
  await bob.page.close();
  for (const text of ['are you there?', 'I have news', 'call me']) {
    await send(alice.page, text);
  }
  // Bob comes back: the same browser remembers him, and the page syncs.
  bob.page = await open(bob.context);
  await connected(bob.page);
  const item = bob.page.locator('#conversations li[data-target="alice"]');
  await item.locator('.badge', { hasText: '3' }).waitFor();
  assert.match(await item.locator('.preview').innerText(), /call me/);
  await shot(bob.page, 'back-with-unread');
  await item.click();
  for (const text of ['are you there?', 'I have news', 'call me']) await sees(bob.page, text);
  // In the order they were sent, each once.
  const texts = await bob.page.locator('#message-list .msg .text').allInnerTexts();
  const tail = texts.slice(-3);
  assert.deepEqual(tail, ['are you there?', 'I have news', 'call me']);
  assert.equal(texts.filter((t) => t === 'call me').length, 1);
});

test('with WebSocket blocked the page falls back to long-polling and keeps working', async () => {
  assert.ok(alice, 'runs after the first test');
  const carol = await person('carol', { blockWebSocket: true });
  assert.equal(await carol.page.locator('#transport').getAttribute('data-transport'), 'polling');
  await carol.page.locator('#banner', { hasText: 'long-polling' }).waitFor();
  await shot(carol.page, 'long-poll-fallback');

  await openChat(alice.page, 'carol');
  await send(alice.page, 'can you hear me over polling?');
  const item = carol.page.locator('#conversations li[data-target="alice"]');
  await item.click();
  await sees(carol.page, 'can you hear me over polling?');
  await send(carol.page, 'loud and clear');
  await sees(alice.page, 'loud and clear');
  await carol.context.close();
});

test('a sent message shows one tick when stored and two once the other person read it', async () => {
  assert.ok(alice && bob, 'runs after the first test');
  // Bob looks at another conversation, so the message waits unread.
  await openChat(bob.page, 'carol');
  await openChat(alice.page, 'bob');
  await send(alice.page, 'did you read this?');
  const tick = alice.page.locator('#message-list .msg.mine', { hasText: 'did you read this?' }).locator('.tick');
  assert.equal((await tick.innerText()).trim(), '✓');
  assert.equal(await tick.getAttribute('title'), 'Delivered to the server');

  await bob.page.locator('#conversations li[data-target="alice"]').click();
  await sees(bob.page, 'did you read this?');
  await alice.page.locator('#message-list .msg.mine', { hasText: 'did you read this?' }).locator('.tick.read', { hasText: '✓✓' }).waitFor();
  assert.equal(await tick.getAttribute('title'), 'Read');
  await shot(alice.page, 'read-ticks');

  // Still read after a reload.
  await alice.page.reload();
  await connected(alice.page);
  await openChat(alice.page, 'bob');
  await alice.page.locator('#message-list .msg.mine', { hasText: 'did you read this?' }).locator('.tick.read').waitFor();
  // And in a browser that never saw the receipt (nothing kept in it): the conversation itself
  // says how far bob has read.
  const elsewhere = await person('alice', { login: true });
  assert.equal(await elsewhere.page.evaluate(() => Object.keys(localStorage).filter((k) => k.includes('peer-read')).length), 0);
  await openChat(elsewhere.page, 'bob');
  await elsewhere.page.locator('#message-list .msg.mine', { hasText: 'did you read this?' }).locator('.tick.read', { hasText: '✓✓' }).waitFor();
  await elsewhere.context.close();
});

test('a conversation of thousands of messages keeps only the rows in view in the page', async () => {
  assert.ok(alice, 'runs after the first test');
  const frank = await person('frank');
  const N = 2001;
  const text = (i) => (i % 9 === 0 ? `bulk ${i} ${'and a longer line of text to wrap '.repeat(8)}` : `bulk ${i}`);
  const sendOne = (i) =>
    server.api('POST', '/messages', {
      fromUserId: i % 2 ? 'frank' : 'alice',
      conversationType: 1,
      targetId: i % 2 ? 'alice' : 'frank',
      content: { text: text(i) },
      clientMsgId: `bulk-${i}`,
    });
  // The first and the last in order; those between in any order, many at a time.
  await sendOne(1);
  for (let i = 2; i < N; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, N - i) }, (_, j) => sendOne(i + j)));
  }
  await sendOne(N);

  await openChat(alice.page, 'frank');
  const row = (i) => alice.page.locator('#message-list .msg .text').filter({ hasText: new RegExp(`^bulk ${i}( |$)`) });
  await row(N).waitFor();
  const box = alice.page.locator('#messages');
  // Scroll up until the beginning is loaded.
  for (let pages = 0; (await box.getAttribute('data-complete')) === null; pages++) {
    assert.ok(pages < 60, 'the beginning is reached');
    const loaded = Number(await box.getAttribute('data-loaded'));
    // Where the top row is on screen once scrolled up, and where after the older page loaded.
    // (Read in the scroll event, after the page's own handler rendered the rows in view and
    // before the page it asked for can have arrived.)
    const seen = await box.evaluate(async (el) => {
      const scrolled = new Promise((r) => el.addEventListener('scroll', r, { once: true }));
      el.scrollTop = 0;
      await scrolled;
      const view = el.getBoundingClientRect().top;
      const li = /** @type {HTMLElement} */ (
        [...document.querySelectorAll('#message-list > li')].find((e) => e.getBoundingClientRect().bottom > view)
      );
      return { key: li.dataset.key, top: li.getBoundingClientRect().top };
    });
    await alice.page.waitForFunction(
      (before) => {
        const el = document.getElementById('messages');
        return el.dataset.complete !== undefined || Number(el.dataset.loaded) > before;
      },
      loaded,
    );
    const top = await alice.page.evaluate(
      (key) => document.querySelector(`#message-list > li[data-key="${key}"]`)?.getBoundingClientRect().top,
      seen.key,
    );
    assert.ok(top !== undefined && Math.abs(top - seen.top) < 2, `the row in view stays put (${seen.top} → ${top})`);
  }
  assert.equal(Number(await box.getAttribute('data-loaded')), N);
  await box.evaluate((el) => (el.scrollTop = 0));
  await row(1).waitFor();
  await alice.page.locator('#history-top', { hasText: 'The beginning of the conversation' }).waitFor();
  const rendered = await alice.page.locator('#message-list > li').count();
  assert.ok(rendered < 200, `${rendered} rows in the page for ${N} messages`);
  await shot(alice.page, 'long-history-top');

  // And down to the newest again.
  await box.evaluate((el) => (el.scrollTop = el.scrollHeight));
  await row(N).waitFor();
  assert.ok((await alice.page.locator('#message-list > li').count()) < 200);
  await frank.context.close();
});

/** Opens the action menu of the row holding `text`. */
async function menuOf(page, text) {
  // By its key: an edited row no longer holds its old text.
  const key = await page.locator('#message-list > li', { hasText: text }).getAttribute('data-key');
  const row = page.locator(`#message-list > li[data-key="${key}"]`);
  await row.hover();
  await row.getByRole('button', { name: 'Message actions' }).click();
  return row;
}

test('people edit and recall their messages and react to any, seen live and after a reload', async () => {
  assert.ok(alice && bob, 'runs after the first test');
  await openChat(alice.page, 'bob');
  await openChat(bob.page, 'alice');
  await send(alice.page, 'see you at noon');
  await sees(bob.page, 'see you at noon');

  // Alice edits hers.
  let row = await menuOf(alice.page, 'see you at noon');
  await row.getByRole('button', { name: 'Edit' }).click();
  await row.getByRole('textbox', { name: 'Edit message' }).fill('see you at one');
  await row.getByRole('textbox', { name: 'Edit message' }).press('Enter');
  const edited = bob.page.locator('#message-list .msg:not(.mine)', { hasText: 'see you at one' });
  await edited.locator('.meta', { hasText: 'edited' }).waitFor();
  assert.equal(await bob.page.locator('#message-list .msg', { hasText: 'see you at noon' }).count(), 0);

  // Bob reacts to it.
  row = await menuOf(bob.page, 'see you at one');
  await row.getByRole('button', { name: 'React with 👍' }).click();
  await alice.page.locator('#message-list .msg.mine', { hasText: 'see you at one' }).locator('.reaction', { hasText: '👍 1' }).waitFor();
  await shot(alice.page, 'reactions-and-edits');
  // Escape closes a menu; on a touch screen a long press opens it.
  row = await menuOf(alice.page, 'see you at one');
  await row.locator('.menu').waitFor();
  await alice.page.keyboard.press('Escape');
  await row.locator('.menu').waitFor({ state: 'detached' });
  await row.locator('.msg').dispatchEvent('pointerdown', { pointerType: 'touch', bubbles: true });
  await row.locator('.menu').getByRole('button', { name: 'Edit' }).waitFor();
  await alice.page.keyboard.press('Escape');
  await row.locator('.menu').waitFor({ state: 'detached' });

  // Alice sends something and takes it back.
  await send(alice.page, 'wrong window, sorry');
  await sees(bob.page, 'wrong window, sorry');
  row = await menuOf(alice.page, 'wrong window, sorry');
  await shot(alice.page, 'message-menu');
  await row.getByRole('button', { name: 'Recall' }).click();
  await bob.page.locator('#message-list .msg', { hasText: 'wrong window, sorry' }).waitFor({ state: 'detached' });
  await bob.page.locator('#message-list .msg:not(.mine) .recalled', { hasText: 'Message recalled' }).waitFor();

  // After a reload bob sees it all as it is now.
  await bob.page.reload();
  await connected(bob.page);
  await openChat(bob.page, 'alice');
  await bob.page.locator('#message-list .msg', { hasText: 'see you at one' }).locator('.reaction', { hasText: '👍 1' }).waitFor();
  await bob.page.locator('#message-list .msg', { hasText: 'see you at one' }).locator('.meta', { hasText: 'edited' }).waitFor();
  await bob.page.locator('#message-list .recalled', { hasText: 'Message recalled' }).waitFor();
  assert.equal(await bob.page.locator('#message-list .msg', { hasText: 'wrong window, sorry' }).count(), 0);
});

test("a contact's dot turns online when they connect and offline when they leave", async () => {
  assert.ok(alice && bob, 'runs after the first test');
  await openChat(alice.page, 'bob');
  const dot = alice.page.locator('#conversations li[data-target="bob"] .dot');
  await alice.page.locator('#conversations li[data-target="bob"] .dot[data-online="true"]').waitFor();
  assert.equal(await dot.getAttribute('aria-label'), 'online');
  await alice.page.locator('#peer-presence', { hasText: 'online' }).waitFor();
  await shot(alice.page, 'presence-online');

  await bob.page.close();
  await alice.page.locator('#conversations li[data-target="bob"] .dot[data-online="false"]').waitFor();
  assert.equal(await dot.getAttribute('aria-label'), 'offline');
  await alice.page.locator('#chat-dot[data-online="false"]').waitFor();
  await alice.page.locator('#peer-presence', { hasText: 'last seen' }).waitFor();

  bob.page = await open(bob.context);
  await connected(bob.page);
  await alice.page.locator('#conversations li[data-target="bob"] .dot[data-online="true"]').waitFor();
  await alice.page.locator('#chat-dot[data-online="true"]').waitFor();
});

test('the other person typing shows in the chat header', async () => {
  assert.ok(alice && bob, 'runs after the first test');
  await openChat(alice.page, 'bob');
  await openChat(bob.page, 'alice');
  await bob.page.locator('#text').pressSequentially('just a sec');
  await alice.page.locator('#typing', { hasText: 'bob is typing…' }).waitFor();
  await shot(alice.page, 'typing');
  // It goes once their message arrives.
  await bob.page.locator('#text').press('Enter');
  await sees(alice.page, 'just a sec');
  // In the same moment as the message shows, not after the indicator's own timeout.
  assert.equal(await alice.page.locator('#typing').textContent(), '');
});

test('a group made by the app server shows in the list, and its members chat in it', async () => {
  assert.ok(alice && bob, 'runs after the first test');
  await server.api('POST', '/groups', {
    groupId: 'team',
    ownerId: 'alice',
    name: 'Team Tidings',
    memberIds: ['bob'],
  });
  // Its creation reaches alice's open page: the group shows in her list.
  const group = alice.page.locator('#conversations li[data-target="team"][data-type="3"]');
  await group.locator('.name', { hasText: 'Team Tidings' }).waitFor();
  await group.locator('.preview', { hasText: 'created the group' }).waitFor();
  await group.click();
  await alice.page.locator('#chat-title', { hasText: 'Team Tidings' }).waitFor();
  await send(alice.page, 'hello team');

  // Bob gets the group with its name, an unread badge and a preview naming the sender.
  const item = bob.page.locator('#conversations li[data-target="team"][data-type="3"]');
  await item.locator('.name', { hasText: 'Team Tidings' }).waitFor();
  await item.locator('.badge', { hasText: '1' }).waitFor();
  await item.locator('.preview', { hasText: 'alice: hello team' }).waitFor();
  await item.click();
  await bob.page.locator('#chat-title', { hasText: 'Team Tidings' }).waitFor();
  const theirs = bob.page.locator('#message-list .msg:not(.mine)', { hasText: 'hello team' });
  await theirs.waitFor();
  assert.equal(await theirs.locator('.sender').textContent(), 'alice');
  await send(bob.page, 'hi alice, bob here');
  await shot(bob.page, 'group');

  const answer = alice.page.locator('#message-list .msg:not(.mine)', { hasText: 'hi alice, bob here' });
  await answer.waitFor();
  assert.equal(await answer.locator('.sender').textContent(), 'bob');
  // Own bubbles carry no name.
  assert.equal(await alice.page.locator('#message-list .msg.mine .sender').count(), 0);

  // After a reload the list (read from the server) still has the group, with its name.
  await alice.page.reload();
  await connected(alice.page);
  await group.locator('.name', { hasText: 'Team Tidings' }).waitFor();
  await group.locator('.preview', { hasText: 'bob: hi alice, bob here' }).waitFor();
});

test('people in a chatroom chat live, and one who joins later sees the recent messages', async () => {
  assert.ok(alice && bob, 'runs after the first test');
  const join = async (page) => {
    await page.locator('#room-id').fill('lobby');
    await page.locator('#join-room button').click();
    await page.locator('#chat-title', { hasText: 'lobby' }).waitFor();
    await page.locator('#messages[data-complete]').waitFor();
  };
  await join(alice.page);
  await join(bob.page);
  await send(alice.page, 'anyone in the lobby?');
  await sees(bob.page, 'anyone in the lobby?');
  await send(bob.page, 'bob is here');
  await sees(alice.page, 'bob is here');
  const theirs = alice.page.locator('#message-list .msg:not(.mine)', { hasText: 'bob is here' });
  assert.equal(await theirs.locator('.sender').textContent(), 'bob');
  // A room is not a conversation: no list entry, no badge.
  assert.equal(await alice.page.locator('#conversations li[data-target="lobby"]').count(), 0);
  await shot(alice.page, 'chatroom');

  const dave = await person('dave');
  await join(dave.page);
  await sees(dave.page, 'anyone in the lobby?');
  await sees(dave.page, 'bob is here');

  // Leaving the view quits the room.
  await openChat(alice.page, 'bob');
  for (let i = 0; ; i++) {
    const { members } = await server.api('GET', '/chatrooms/lobby/members');
    if (!members.some((m) => m.userId === 'alice')) break;
    assert.ok(i < 100, 'alice is still in the room');
    await new Promise((r) => setTimeout(r, 100));
  }
  await dave.context.close();
});

/** Whether the page scrolls sideways. */
async function scrollsSideways(page) {
  return page.evaluate(() => document.scrollingElement.scrollWidth > window.innerWidth);
}

test('on a phone the list and the chat are separate views, with a back button', async () => {
  // A server of its own: registrations per client address are limited.
  const at = await startServer();
  try {
    const pat = await person('pat', { at, viewport: { width: 390, height: 844 } });
    const quinn = await person('quinn', { at });
    await openChat(quinn.page, 'pat');
    await send(quinn.page, 'hi pat, this is a long line to see that it wraps on a narrow screen: ' + 'x'.repeat(120));
    const sidebar = pat.page.locator('.sidebar');
    const chat = pat.page.locator('#chat');
    const item = pat.page.locator('#conversations li[data-target="quinn"]');
    await item.waitFor();
    assert.ok(await sidebar.isVisible(), 'the list shows');
    assert.ok(!(await chat.isVisible()), 'the chat does not');
    assert.ok(!(await scrollsSideways(pat.page)), 'no sideways scroll on the list');
    await shot(pat.page, 'phone-list');

    await item.click();
    await sees(pat.page, 'hi pat');
    assert.ok(await chat.isVisible(), 'the chat shows');
    assert.ok(!(await sidebar.isVisible()), 'the list does not');
    await send(pat.page, 'hello from a phone');
    await sendImageAndFile(pat.page);
    await pat.page.locator('#message-list .msg.mine a.file', { hasText: 'notes.txt' }).waitFor();
    assert.ok(!(await scrollsSideways(pat.page)), 'no sideways scroll in the chat');
    const box = await pat.page.locator('#composer').boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `the composer fits: ${JSON.stringify(box)}`);
    await shot(pat.page, 'phone-chat');

    await pat.page.getByRole('button', { name: 'Back to the conversations' }).click();
    await sidebar.waitFor();
    assert.ok(!(await chat.isVisible()), 'back on the list');
    assert.ok(!(await scrollsSideways(pat.page)));
    // On a wide screen the back button is not shown: both views are.
    assert.equal(await quinn.page.locator('#back').isVisible(), false);
    console.log(`phone screenshots: ${join(artifacts, 'phone-list.png')}, ${join(artifacts, 'phone-chat.png')}`);
    await pat.context.close();
    await quinn.context.close();
  } finally {
    await at.stop();
  }
});

test("the list previews the newest message a person sees: not reactions or edits, and a recall as recalled", async () => {
  // A server of its own: registrations per client address are limited.
  const at = await startServer();
  try {
    const gus = await person('gus', { at });
    const hal = await person('hal', { at });
    const ivy = await person('ivy', { at });
    await openChat(gus.page, 'hal');
    await send(gus.page, 'first');
    await send(gus.page, 'second');
    await openChat(ivy.page, 'hal');
    await send(ivy.page, 'from ivy');
    const order = () => hal.page.locator('#conversations li').evaluateAll((lis) => lis.map((li) => li.dataset.target));
    const gusItem = hal.page.locator('#conversations li[data-target="gus"]');
    await hal.page.locator('#conversations li[data-target="ivy"] .preview', { hasText: 'from ivy' }).waitFor();
    await gusItem.locator('.preview', { hasText: 'second' }).waitFor();
    assert.deepEqual(await order(), ['ivy', 'gus']);

    // Hal reacts to gus's older message; gus edits it. Hal sees both in the chat (so his page has
    // taken the events), and the list is as it was.
    await openChat(hal.page, 'gus');
    const row = await menuOf(hal.page, 'first');
    await row.getByRole('button', { name: 'React with 👍' }).click();
    await gus.page.locator('#message-list .msg.mine', { hasText: 'first' }).locator('.reaction', { hasText: '👍 1' }).waitFor();
    const edit = await menuOf(gus.page, 'first');
    await edit.getByRole('button', { name: 'Edit' }).click();
    await edit.getByRole('textbox', { name: 'Edit message' }).fill('first, edited');
    await edit.getByRole('textbox', { name: 'Edit message' }).press('Enter');
    await hal.page.locator('#message-list .msg', { hasText: 'first, edited' }).locator('.meta', { hasText: 'edited' }).waitFor();
    assert.equal((await gusItem.locator('.preview').innerText()).trim(), 'second');
    assert.deepEqual(await order(), ['ivy', 'gus']);
    await shot(hal.page, 'list-after-reaction-and-edit');

    // Gus recalls his newest message: the preview says so.
    const recall = await menuOf(gus.page, 'second');
    await recall.getByRole('button', { name: 'Recall' }).click();
    await gusItem.locator('.preview', { hasText: 'Message recalled' }).waitFor();
    assert.deepEqual(await order(), ['ivy', 'gus']);
    // The same from the server's list after a reload.
    await hal.page.reload();
    await connected(hal.page);
    await gusItem.locator('.preview', { hasText: 'Message recalled' }).waitFor();
    assert.deepEqual(await order(), ['ivy', 'gus']);
    for (const p of [gus, hal, ivy]) await p.context.close();
  } finally {
    await at.stop();
  }
});

test('people set a name and a picture, shown in the list, the chat header and group messages', async () => {
  // A server of its own: registrations per client address are limited.
  const at = await startServer();
  try {
    const kim = await person('kim', { at });
    const lou = await person('lou', { at });
    // Kim edits her profile: a name, and a picture uploaded as an image.
    await kim.page.getByRole('button', { name: 'Edit your profile' }).click();
    await kim.page.locator('#profile-name').fill('Kim Kowalski');
    await kim.page.locator('#profile-picture').setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: DOT_PNG });
    await shot(kim.page, 'profile-editor');
    await kim.page.locator('#profile-save').click();
    await kim.page.locator('#profile').waitFor({ state: 'hidden' });
    await kim.page.locator('#me-name', { hasText: 'Kim Kowalski' }).waitFor();
    const portrait = await kim.page.locator('#me-avatar img').getAttribute('src');
    assert.match(portrait ?? '', /\/v1\/files\/[0-9a-f]{32}\?exp=\d+&sig=/);
    assert.equal((await fetch(portrait ?? '')).status, 200);
    // Saved on the server: the account's profile.
    const { user } = await at.api('GET', '/users/kim');
    assert.deepEqual([user.name, user.portrait], ['Kim Kowalski', portrait]);

    // Lou sees her name and picture in the list and in the chat header.
    await openChat(kim.page, 'lou');
    await send(kim.page, 'hello lou');
    const item = lou.page.locator('#conversations li[data-target="kim"]');
    await item.locator('.name', { hasText: 'Kim Kowalski' }).waitFor();
    assert.equal(await item.locator('.avatar img').getAttribute('src'), portrait);
    await item.click();
    await lou.page.locator('#chat-title', { hasText: 'Kim Kowalski' }).waitFor();
    assert.equal(await lou.page.locator('#chat-avatar img').getAttribute('src'), portrait);
    // A user without a profile: their id and its first letter.
    await kim.page.locator('#conversations li[data-target="lou"] .name', { hasText: 'lou' }).waitFor();
    assert.equal((await kim.page.locator('#conversations li[data-target="lou"] .avatar').innerText()).trim(), 'L');

    // Small files show their size in bytes, larger ones in KiB.
    await kim.page.locator('#file').setInputFiles({ name: 'tiny.txt', mimeType: 'text/plain', buffer: Buffer.from('x'.repeat(512)) });
    await kim.page.locator('#file').setInputFiles({ name: 'two.txt', mimeType: 'text/plain', buffer: Buffer.from('y'.repeat(2048)) });
    await lou.page.locator('#message-list a.file', { hasText: 'tiny.txt (512 B)' }).waitFor();
    await lou.page.locator('#message-list a.file', { hasText: 'two.txt (2.0 KiB)' }).waitFor();

    // In a group, her messages carry her name and picture.
    await at.api('POST', '/groups', { groupId: 'studio', ownerId: 'lou', name: 'Studio', memberIds: ['kim'] });
    const group = kim.page.locator('#conversations li[data-target="studio"][data-type="3"]');
    await group.click();
    await kim.page.locator('#chat-title', { hasText: 'Studio' }).waitFor();
    await send(kim.page, 'hi studio');
    await lou.page.locator('#conversations li[data-target="studio"] .preview', { hasText: 'Kim Kowalski: hi studio' }).waitFor();
    await lou.page.locator('#conversations li[data-target="studio"]').click();
    const theirs = lou.page.locator('#message-list > li', { hasText: 'hi studio' });
    await theirs.locator('.sender', { hasText: 'Kim Kowalski' }).waitFor();
    assert.equal(await theirs.locator('.avatar img').getAttribute('src'), portrait);
    await shot(lou.page, 'group-with-profiles');
    await kim.context.close();
    await lou.context.close();
  } finally {
    await at.stop();
  }
});

test('a chatroom shows its members and has a leave button; the page has an icon and loads nothing missing', async () => {
  // A server of its own: registrations per client address are limited.
  const at = await startServer();
  try {
    const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
    const missing = [];
    context.on('response', (r) => {
      if (r.status() >= 400) missing.push(`${r.status()} ${r.url()}`);
    });
    const errors = [];
    context.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    const page = await open(context, at);
    await page.locator('#account').fill('mia');
    await page.locator('#password').fill(PASSWORD);
    await page.locator('#register').click();
    await connected(page);
    // The icon is served (a missing one would be a 404 below, as /favicon.ico would be without it).
    const icon = await page.locator('link[rel="icon"]').getAttribute('href');
    const served = await fetch(new URL(icon ?? '', at.url));
    assert.equal(served.status, 200);
    assert.match(served.headers.get('content-type') ?? '', /^image\/svg\+xml/);
    const ned = await person('ned', { at });
    const join = async (p) => {
      await p.locator('#room-id').fill('plaza');
      await p.locator('#join-room button').click();
      await p.locator('#messages[data-complete]').waitFor();
    };
    await join(page);
    await join(ned.page);
    const members = page.locator('#room-member-list');
    await page.locator('#room-members summary').click();
    await members.locator('li[data-user="ned"]').waitFor();
    await members.locator('li[data-user="mia"]').waitFor();
    await page.locator('#room-count', { hasText: '2' }).waitFor();
    await shot(page, 'chatroom-members');

    // Ned leaves with the button: out of the room on the server, and out of mia's list.
    await ned.page.getByRole('button', { name: 'Leave room' }).click();
    await ned.page.locator('#chat-title', { hasText: 'No conversation open' }).waitFor();
    assert.equal(await ned.page.locator('#composer').isVisible(), false);
    await members.locator('li[data-user="ned"]').waitFor({ state: 'detached' });
    const { members: left } = await at.api('GET', '/chatrooms/plaza/members');
    assert.deepEqual(left.map((m) => m.userId), ['mia']);
    assert.deepEqual(missing, [], 'nothing the page asked for was missing');
    assert.deepEqual(errors, [], 'no errors in the console');
    await context.close();
    await ned.context.close();
  } finally {
    await at.stop();
  }
});

test("a picture's link is renewed by its owner's page before it expires", async () => {
  // File links that live 4 s: the picture's link in the profile expires that soon.
  const at = await startServer(['--max-file-link-secs', '4']);
  try {
    const olga = await person('olga', { at });
    await olga.page.getByRole('button', { name: 'Edit your profile' }).click();
    await olga.page.locator('#profile-picture').setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: DOT_PNG });
    await olga.page.locator('#profile-save').click();
    await olga.page.locator('#me-avatar img').waitFor();
    const { user } = await at.api('GET', '/users/olga');
    const old = user.portrait;
    for (let i = 0; (await fetch(old)).status !== 404; i++) {
      assert.ok(i < 200, 'the link still works');
      await new Promise((r) => setTimeout(r, 50));
    }
    // Olga's page, loaded again, renews it; the profile holds a working link.
    await olga.page.reload();
    await connected(olga.page);
    for (let i = 0; ; i++) {
      const { user: now } = await at.api('GET', '/users/olga');
      if (now.portrait !== old) {
        assert.equal((await fetch(now.portrait)).status, 200);
        break;
      }
      assert.ok(i < 200, 'the picture was not renewed');
      await new Promise((r) => setTimeout(r, 50));
    }
    await olga.context.close();
  } finally {
    await at.stop();
  }
});

test('people make a discussion from the page, rename it, invite, chat in it and leave it', async () => {
  // A server of its own: registrations per client address are limited.
  const at = await startServer();
  try {
    const owen = await person('owen', { at });
    // Pia is on a phone: the list and the chat are separate views.
    const pia = await person('pia', { at, viewport: { width: 390, height: 844 } });

    // Owen makes a discussion with pia: it opens, and shows in his list as a discussion.
    await owen.page.locator('#discussion-name').fill('Weekend plans');
    await owen.page.locator('#discussion-members').fill('pia');
    await owen.page.locator('#new-discussion button').click();
    await owen.page.locator('#chat-title', { hasText: 'Weekend plans' }).waitFor();
    const ownItem = owen.page.locator('#conversations li[data-type="3"][data-kind="discussion"]');
    await ownItem.locator('.name', { hasText: 'Weekend plans' }).waitFor();
    const notices = owen.page.locator('#message-list .notice');
    await notices.filter({ hasText: 'You created the discussion “Weekend plans”' }).waitFor();

    // He renames it from its settings; the header, the list and the chat say so.
    await owen.page.locator('#group-tools summary').click();
    await owen.page.locator('#group-facts', { hasText: '2 members · owner you' }).waitFor();
    await owen.page.locator('#rename-name').fill('Hike on Sunday');
    await owen.page.locator('#rename button').click();
    await owen.page.locator('#chat-title', { hasText: 'Hike on Sunday' }).waitFor();
    await ownItem.locator('.name', { hasText: 'Hike on Sunday' }).waitFor();
    await notices.filter({ hasText: 'You renamed it “Hike on Sunday”' }).waitFor();

    // Pia sees it in her list under its new name, marked as a discussion, and opens it.
    const item = pia.page.locator('#conversations li[data-type="3"][data-kind="discussion"]');
    await item.locator('.name', { hasText: 'Hike on Sunday' }).waitFor();
    assert.equal(await item.locator('.group-mark').getAttribute('aria-label'), 'discussion');
    assert.ok(!(await scrollsSideways(pia.page)), 'no sideways scroll on the list');
    await shot(pia.page, 'discussion-phone-list');
    await item.click();
    await pia.page.locator('#chat-title', { hasText: 'Hike on Sunday' }).waitFor();
    await pia.page.locator('#message-list .notice', { hasText: 'owen created the discussion “Weekend plans”' }).waitFor();
    await pia.page.locator('#message-list .notice', { hasText: 'owen renamed it “Hike on Sunday”' }).waitFor();

    // A message gets through, both ways.
    await send(pia.page, 'count me in');
    await sees(owen.page, 'count me in');
    await send(owen.page, 'great, 9 am');
    await sees(pia.page, 'great, 9 am');

    // Invitations are open to every member: pia invites rex; owen's view shows it.
    await pia.page.locator('#group-tools summary').click();
    await pia.page.locator('#group-facts', { hasText: 'owner owen' }).waitFor();
    assert.ok(await pia.page.locator('#invite-open').isDisabled(), 'only the owner decides who may invite');
    await pia.page.locator('#invite-ids').fill('rex');
    await pia.page.locator('#invite button').click();
    await notices.filter({ hasText: 'pia added rex' }).waitFor();
    await owen.page.locator('#group-facts', { hasText: '3 members' }).waitFor();
    assert.ok(!(await scrollsSideways(pia.page)), 'no sideways scroll in the chat');
    await shot(pia.page, 'discussion-phone-chat');

    // Owen closes the invitations to all but himself: pia's page says so and offers no invite.
    await owen.page.locator('#invite-open').uncheck();
    await notices.filter({ hasText: 'You closed invitations to all but the owner' }).waitFor();
    await pia.page.locator('#message-list .notice', { hasText: 'owen closed invitations to all but the owner' }).waitFor();
    await pia.page.locator('#invite').waitFor({ state: 'hidden' });
    assert.equal(await pia.page.locator('#invite-open').isChecked(), false);

    // Pia leaves: she is back on her list, which no longer has it; owen's view shows the leave.
    await pia.page.locator('#leave-group').click();
    await pia.page.locator('.sidebar').waitFor();
    await item.waitFor({ state: 'detached' });
    await notices.filter({ hasText: 'pia left' }).waitFor();
    await owen.page.locator('#group-facts', { hasText: '2 members · owner you' }).waitFor();
    await ownItem.locator('.preview', { hasText: 'pia left' }).waitFor();
    await shot(owen.page, 'discussion');
    // After a reload it stays out of her list: a private message from owen after it marks the
    // list as read from the server.
    await pia.page.reload();
    await connected(pia.page);
    await openChat(owen.page, 'pia');
    await send(owen.page, 'see you');
    await pia.page.locator('#conversations li[data-target="owen"] .preview', { hasText: 'see you' }).waitFor();
    assert.equal(await pia.page.locator('#conversations li[data-type="3"]').count(), 0);
    await owen.context.close();
    await pia.context.close();
  } finally {
    await at.stop();
  }
});

/** Waits until the page's device published its key packages (others can add it to encrypted chats). */
async function e2eeReady(page) {
  await page.locator('#app[data-e2ee="ready"]').waitFor();
}

/** The open encrypted chat's devices as its safety numbers panel lists them. */
async function safetyNumbers(page) {
  if (await page.locator('#safety').isHidden()) await page.locator('#safety-button').click();
  const items = page.locator('#safety-list li[data-device]');
  await items.first().waitFor();
  return items.evaluateAll((lis) =>
    lis.map((li) => ({
      user: li.dataset.user,
      device: li.dataset.device,
      number: li.querySelector('.number')?.textContent ?? '',
      own: li.classList.contains('own'),
    })),
  );
}

test('two people chat end-to-end encrypted: a lock, the same safety numbers on both sides, no plaintext on the server', async () => {
  const erin = await person('erin');
  const gus = await person('gus');
  await e2eeReady(erin.page);
  await e2eeReady(gus.page);

  // Erin starts an encrypted chat with gus (the lock button beside Open).
  await erin.page.locator('#new-chat-user').fill('gus');
  await erin.page.locator('#new-chat-e2ee').click();
  await erin.page.locator('#chat-title', { hasText: 'gus' }).waitFor();
  await erin.page.locator('#chat-lock').waitFor();
  assert.equal(await erin.page.locator('#text').getAttribute('placeholder'), 'Write an encrypted message');
  await send(erin.page, 'the vault code is 4711');

  // Gus's list shows the conversation with a lock and the decrypted preview.
  const item = gus.page.locator('#conversations li[data-target="erin"]');
  await item.locator('.lock').waitFor();
  await item.locator('.preview', { hasText: 'the vault code is 4711' }).waitFor();
  await item.click();
  await sees(gus.page, 'the vault code is 4711');
  await gus.page.locator('#chat-lock').waitFor();
  await send(gus.page, 'noted, burning this message');
  await sees(erin.page, 'noted, burning this message');
  await send(erin.page, 'thanks');
  await sees(gus.page, 'thanks');
  await erin.page.locator('#conversations li[data-target="gus"] .lock').waitFor();

  // The safety numbers: both devices, the same numbers on both sides, each page's own marked.
  const erinSees = await safetyNumbers(erin.page);
  const gusSees = await safetyNumbers(gus.page);
  const plain = (list) => list.map(({ user, device, number }) => `${user}:${device} ${number}`).sort();
  assert.equal(erinSees.length, 2, JSON.stringify(erinSees));
  assert.deepEqual(plain(erinSees), plain(gusSees));
  assert.deepEqual(erinSees.map((d) => d.user).sort(), ['erin', 'gus']);
  for (const d of erinSees) assert.match(d.number, /^\d{5}( \d{5}){5}$/);
  const erinOwn = erinSees.filter((d) => d.own);
  const gusOwn = gusSees.filter((d) => d.own);
  assert.equal(erinOwn.length, 1);
  assert.equal(erinOwn[0].user, 'erin');
  assert.equal(gusOwn.length, 1);
  assert.equal(gusOwn[0].user, 'gus');
  assert.equal(await erin.page.locator('#safety-warning').isHidden(), true);
  await shot(erin.page, 'encrypted-chat-safety-numbers');

  // The server stored only MLS messages: none of the text is there.
  const stored = await server.api('GET', '/history?conversationType=1&userId=erin&targetId=gus&limit=500');
  assert.ok(stored.messages.length >= 4, `${stored.messages.length} messages stored`);
  for (const m of stored.messages) assert.equal(m.msgType, 'mls', JSON.stringify(m));
  const all = JSON.stringify(stored);
  for (const text of ['vault', '4711', 'burning', 'thanks']) assert.ok(!all.includes(text), `"${text}" is stored in the clear`);

  // After a reload gus reads the history from his device's state.
  await gus.page.reload();
  await connected(gus.page);
  await openChat(gus.page, 'erin');
  await sees(gus.page, 'the vault code is 4711');
  await gus.page.locator('#message-list .msg.mine', { hasText: 'noted, burning this message' }).waitFor();
  await gus.page.locator('#chat-lock').waitFor();

  // Gus in another browser is a new device, not in the group: the earlier messages show as
  // unreadable there, never as what the server holds.
  const gus2 = await person('gus', { login: true });
  await openChat(gus2.page, 'erin');
  await gus2.page.locator('#chat-lock').waitFor();
  await gus2.page.locator('#messages[data-complete]').waitFor();
  await gus2.page.locator('#message-list .unreadable', { hasText: "can't be read on this device" }).first().waitFor();
  assert.equal(await gus2.page.locator('#message-list .unreadable').count(), 3);
  const shown = await gus2.page.locator('#message-list').innerText();
  assert.doesNotMatch(shown, /[A-Za-z0-9+/=]{24,}/);
  assert.doesNotMatch(shown, /vault/);
  await shot(gus2.page, 'encrypted-chat-other-device');
  await gus2.context.close();
  ({ erin: encErin, gus: encGus } = { erin, gus });
});

/** The two people of the encrypted chat, for the next test. */
let encErin;
let encGus;

test("a device whose keys changed is reported beside the safety numbers", async () => {
  assert.ok(encErin && encGus, 'runs after the encrypted chat test');
  const erin = encErin;
  const gus = encGus;
  const device = (await safetyNumbers(erin.page)).find((d) => d.user === 'gus')?.device;
  assert.ok(device);
  // Gus's browser loses its encryption state but keeps its device id: it is the same device
  // with new keys. (Deleted from a page of the origin that does not run the app.)
  await gus.page.close();
  const bare = await gus.context.newPage();
  await bare.goto(`${server.url}/healthz`);
  await bare.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const req = indexedDB.deleteDatabase('tidings-e2ee');
        req.onsuccess = resolve;
        req.onerror = () => reject(req.error);
      }),
  );
  // His page takes the group made below as encrypted (as if he had started it so).
  await bare.evaluate(() => localStorage.setItem('tidings-demo-e2ee:gus', JSON.stringify({ encrypted: ['3:vault'] })));
  await bare.close();
  await server.api('POST', '/groups', { groupId: 'vault', ownerId: 'erin', name: 'Vault', memberIds: ['gus'] });
  gus.page = await open(gus.context);
  await connected(gus.page);
  await e2eeReady(gus.page);
  await gus.page.locator('#conversations li[data-target="vault"]').click();
  await gus.page.locator('#chat-lock').waitFor();
  await send(gus.page, 'new keys, same me');

  // Erin joins the group gus made, and is told that the keys of gus's device changed.
  const item = erin.page.locator('#conversations li[data-target="vault"]');
  await item.locator('.lock').waitFor();
  await item.click();
  await sees(erin.page, 'new keys, same me');
  await erin.page.locator('#chat-lock').waitFor();
  const listed = await safetyNumbers(erin.page);
  assert.ok(listed.some((d) => d.user === 'gus' && d.device === device));
  const warning = erin.page.locator('#safety-warning');
  await warning.waitFor();
  assert.match(await warning.innerText(), new RegExp(`gus:${device}.*compare the safety numbers again`));
  await erin.page.locator(`#safety-list li.changed[data-device="${device}"] .changed-mark`).waitFor();
  await shot(erin.page, 'encrypted-keys-changed');
  // Once compared, she says so and the warning goes.
  await warning.getByRole('button', { name: 'Compared: they match' }).click();
  await warning.waitFor({ state: 'hidden' });
  assert.equal(await erin.page.locator('#safety-list li.changed').count(), 0);

  // A second tab of the same browser (the same device) leaves the device's state to the first.
  const tab = await open(erin.context);
  await tab.locator('#app[data-e2ee="busy"]').waitFor();
  await erin.context.close();
  await gus.context.close();
});
