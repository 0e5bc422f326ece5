// Edit and delete in the widget, in Chromium against a real chat-local: one signed-in user on
// two devices (B opens A's conversation by itself). A edits its own message by keyboard
// (Edit, the text, Enter); B shows the new text with an "edited" mark, live. A deletes it; B
// shows "Message deleted". Only the user's own messages offer Edit and Delete, and a message
// past the edit window (CHAT_EDIT_WINDOW_S) no longer does: a click then says so.
// The agent console, the same way: an agent holding a session edits one of its messages by
// keyboard and deletes another, and the widget shows both live; a save refused by the server
// shows under the message; the customer's edit reaches the console live, and a deletion made
// while the console was offline after its reconnect (`?updatedAfter=`); past a short window
// (CHAT_EDIT_WINDOW_S=2) the agent's message offers no Edit any more.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, readMessages, tempDir, removeDir, waitFor,
  newPage, openWidget, connected, send, ensureOutput,
} from './support.mjs';
import { join } from 'node:path';
import { signJwt } from './agent-contract-server.mjs';

let browser;
const cleanup = [];

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  for (const f of cleanup.reverse()) await f();
  await browser?.close();
});

const w = (page, css) => page.locator(`[data-chat-widget] ${css}`);

function settled(page, n) {
  return waitFor(async () => {
    const ms = await readMessages(page);
    const done = ms.length === n && ms.every((m) => m.seq != null) && ms.filter((m) => m.role === 'user').every((m) => m.status === 'answered');
    return done && ms;
  }, { what: `${n} settled messages`, timeoutMs: 20_000 });
}

test('a user edits and deletes their message; the other device shows "edited" and "Message deleted" live', async () => {
  const secret = 'edits-browser-test-secret-0123456789';
  const dataDir = tempDir();
  const srv = await startServer({ dataDir, env: { CHAT_AUTH_JWT_SECRET: secret } });
  cleanup.push(async () => {
    await srv.stop();
    removeDir(dataDir);
  });
  const jwt = signJwt({ sub: 'user-edits-7' }, secret);
  const device = async () => {
    const context = await browser.newContext();
    cleanup.push(() => context.close());
    return newPage(context, srv.url, { widgetConfig: { authToken: jwt } });
  };

  const a = await device();
  await openWidget(a);
  await connected(a);
  await send(a, 'Helo, wher is my parcel?');
  const [mine, bot] = await settled(a, 2);
  const b = await device();
  await openWidget(b);
  await connected(b);
  await settled(b, 2);

  // Edit and Delete only on the user's own message.
  const row = (page, id) => w(page, `li.msg[data-id="${id}"]`);
  assert.equal(await row(a, bot.id).locator('button.change').count(), 0, 'none on the bot\'s');
  assert.equal(await row(a, mine.id).locator('button.edit').getAttribute('aria-label'), 'Edit your message: Helo, wher is my parcel?');

  // By keyboard: focus Edit, Enter opens the editor (focused, the text selected), type, Enter saves.
  await row(a, mine.id).locator('button.edit').focus();
  await a.keyboard.press('Enter');
  const editor = w(a, 'textarea.edit-input');
  await editor.waitFor({ state: 'visible', timeout: 5000 });
  assert.equal(await editor.inputValue(), 'Helo, wher is my parcel?');
  assert.equal(await a.evaluate(() => document.querySelector('[data-chat-widget]').shadowRoot.activeElement?.className), 'edit-input');
  await editor.fill('Hello, where is my parcel?');
  await editor.press('Enter');
  await waitFor(async () => (await row(a, mine.id).locator('.bubble .text').textContent()) === 'Hello, where is my parcel?', { what: 'the edit on A' });
  assert.equal(await row(a, mine.id).locator('.edited').textContent(), 'edited');
  // B, live.
  await waitFor(async () => (await row(b, mine.id).locator('.bubble .text').textContent()) === 'Hello, where is my parcel?', { what: 'the edit on B' });
  assert.equal(await row(b, mine.id).locator('.edited').count(), 1);
  assert.equal(await row(b, mine.id).getAttribute('data-seq'), String(mine.seq), 'in place');

  // Escape in the editor cancels (the panel stays open).
  await row(a, mine.id).locator('button.edit').click();
  await editor.fill('something else');
  await editor.press('Escape');
  assert.equal(await w(a, '.panel').isVisible(), true);
  assert.equal(await row(a, mine.id).locator('.bubble .text').textContent(), 'Hello, where is my parcel?');

  // Delete: a tombstone on both devices, no buttons left.
  await row(a, mine.id).locator('button.delete').click();
  for (const page of [a, b]) {
    await waitFor(async () => (await row(page, mine.id).getAttribute('class'))?.includes('deleted'), { what: 'the tombstone' });
    assert.equal(await row(page, mine.id).locator('.bubble .text').textContent(), 'Message deleted');
    assert.equal(await row(page, mine.id).locator('button.change').count(), 0);
  }
  assert.equal((await readMessages(b)).length, 2, 'the tombstone keeps its place');
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});

test('past the edit window the widget offers no edit, and a late click says it can no longer change', async () => {
  const dataDir = tempDir();
  const srv = await startServer({ dataDir, env: { CHAT_EDIT_WINDOW_S: '1' } });
  cleanup.push(async () => {
    await srv.stop();
    removeDir(dataDir);
  });
  const context = await browser.newContext();
  cleanup.push(() => context.close());
  // The client believes in a longer window than the server's: the server's 409 decides.
  const page = await newPage(context, srv.url, { widgetConfig: { clientOptions: { editWindowMs: 600_000 } } });
  await openWidget(page);
  await connected(page);
  await send(page, 'quick one');
  const [mine] = await settled(page, 2);
  await new Promise((r) => setTimeout(r, 1_100)); // past the server's 1 s window
  const row = w(page, `li.msg[data-id="${mine.id}"]`);
  await row.locator('button.delete').click();
  await waitFor(async () => (await row.locator('.edit-note').count()) === 1, { what: 'the refusal shown' });
  assert.equal(await row.locator('.edit-note').textContent(), 'This message can no longer be changed.');
  assert.equal(await row.locator('.bubble .text').textContent(), 'quick one');

  // With the client's own window passed, the buttons are gone on the next render.
  const gone = await page.evaluate(() => {
    const { client } = window.__chatWidget;
    const m = client.messages.find((x) => x.role === 'user');
    return client.canChange({ ...m, createdAt: new Date(Date.now() - 600_001).toISOString() });
  });
  assert.equal(gone, false);
  assert.deepEqual(page.errors, []);
});

// --- the agent console

const c = (page, css) => page.locator(`[data-agent-console-root] ${css}`);
const crow = (page, id) => c(page, `.log li.msg[data-id="${id}"]`);
const cActive = (page) => page.evaluate(() => document.querySelector('[data-agent-console-root]').shadowRoot.activeElement?.className ?? null);

/** The console's log: [{ id, role, text, changes }] (`changes`: its Edit and Delete buttons). */
function consoleLog(page) {
  return page.evaluate(() => [...document.querySelector('[data-agent-console-root]').shadowRoot.querySelectorAll('.log li.msg')]
    .map((li) => ({ id: li.dataset.id, role: li.dataset.role, text: li.querySelector('.bubble .text')?.textContent ?? null, changes: li.querySelectorAll('button.change').length })));
}

// The console's sockets, and a switch that makes its reconnects fail (the server refuses a
// socket with a bad token) until it is turned off: an outage the test decides.
const GATED_CONSOLE = `(() => {
  window.__consoleSockets = [];
  window.__blockSockets = false;
  const Real = window.WebSocket;
  class Gated extends Real {
    constructor(url, protocols) {
      super(window.__blockSockets ? String(url).replace(/agentToken=[^&]*/, 'agentToken=blocked') : url, protocols);
      window.__consoleSockets.push(this);
    }
  }
  window.agentConsoleConfig = { ...window.agentConsoleConfig, WebSocket: Gated, backoffBaseMs: 100, backoffMaxMs: 400 };
})();`;

async function signInConsole(page, token) {
  await c(page, '#token').fill(token);
  await c(page, '.signin button[type=submit]').click();
  await c(page, '#tab-waiting').waitFor({ state: 'visible', timeout: 10_000 });
  await waitFor(() => page.evaluate(() => window.__agentConsole?.state.connection === 'open'), { what: 'the console\'s socket' });
}

async function claim(page, sessionId) {
  await c(page, `button.item[data-session="${sessionId}"]`).waitFor({ state: 'visible', timeout: 10_000 });
  await c(page, `button.item[data-session="${sessionId}"]`).click();
  await c(page, '.conv-head').getByRole('button', { name: 'Claim' }).click();
  await waitFor(async () => (await c(page, '.badge').textContent()) === 'With you', { what: 'the agent to hold it' });
}

/** Sends `text` from the console; resolves to its stored message's row ({ id, … }). */
async function reply(page, text) {
  await c(page, '.composer textarea').fill(text);
  await c(page, '.composer textarea').press('Enter');
  return waitFor(async () => (await consoleLog(page)).find((m) => m.role === 'agent' && m.text === text), { what: `"${text}" in the console` });
}

test('the agent console: an agent edits and deletes its own messages and the widget shows both live; the customer\'s changes reach the console, live and after a reconnect', async () => {
  const secret = 'edits-console-test-secret-0123456789';
  const dataDir = tempDir();
  const srv = await startServer({ dataDir, env: { CHAT_AUTH_JWT_SECRET: secret } });
  cleanup.push(async () => {
    await srv.stop();
    removeDir(dataDir);
  });
  const agentJwt = signJwt({ sub: 'a-alex', name: 'Alex', role: 'agent' }, secret);
  const contexts = [await browser.newContext(), await browser.newContext()];
  cleanup.push(() => Promise.all(contexts.map((x) => x.close())));
  const user = await newPage(contexts[0], srv.url);
  const alex = await newPage(contexts[1], `${srv.url}/agent`, { init: GATED_CONSOLE });
  await signInConsole(alex, agentJwt);

  await openWidget(user);
  await connected(user);
  await send(user, 'Helo, I need a persn');
  const [mine, bot] = await settled(user, 2);
  await w(user, '.handoff').click();
  const sessionId = await user.evaluate(() => window.__chatWidget.client.sessionId);
  await claim(alex, sessionId);
  const first = await reply(alex, 'Helo, I am Alex');
  const second = await reply(alex, 'A message sent by mistake');
  const third = await reply(alex, 'Let me check');
  const wrow = (id) => w(user, `li.msg[data-id="${id}"]`);
  await waitFor(async () => (await wrow(third.id).count()) === 1, { what: 'Alex\'s messages in the widget' });

  // Edit and Delete only on Alex's own messages.
  await waitFor(async () => (await consoleLog(alex)).some((m) => m.id === mine.id), { what: 'the customer\'s message in the console' });
  const log = await consoleLog(alex);
  assert.equal(log.find((m) => m.id === mine.id).changes, 0, 'none on the customer\'s');
  assert.equal(log.find((m) => m.id === bot.id).changes, 0, 'none on the bot\'s');
  assert.equal(log.filter((m) => m.role === 'system').every((m) => m.changes === 0), true, 'none on notices');
  assert.deepEqual([first, second, third].map((m) => m.changes), [2, 2, 2]);
  assert.equal(await crow(alex, first.id).locator('button.edit').getAttribute('aria-label'), 'Edit your message: Helo, I am Alex');

  // By keyboard: Edit, Enter opens the editor (focused, the text in it), Enter saves.
  await crow(alex, first.id).locator('button.edit').focus();
  await alex.keyboard.press('Enter');
  const editor = c(alex, 'textarea.edit-input');
  await editor.waitFor({ state: 'visible', timeout: 5000 });
  assert.equal(await editor.inputValue(), 'Helo, I am Alex');
  assert.equal(await cActive(alex), 'edit-input');
  await editor.fill('Hello, I am Alex');
  await editor.press('Enter');
  await waitFor(async () => (await crow(alex, first.id).locator('.bubble .text').textContent()) === 'Hello, I am Alex', { what: 'the edit in the console' });
  assert.equal(await crow(alex, first.id).locator('.edited').textContent(), 'edited');
  assert.equal(await c(alex, '.composer textarea').evaluate((e) => document.querySelector('[data-agent-console-root]').shadowRoot.activeElement === e), true, 'the composer has the focus again');
  // The widget, live and in place.
  await waitFor(async () => (await wrow(first.id).locator('.bubble .text').textContent()) === 'Hello, I am Alex', { what: 'the edit in the widget' });
  assert.equal(await wrow(first.id).locator('.edited').count(), 1);
  assert.equal(await wrow(first.id).getAttribute('data-seq'), await crow(alex, first.id).getAttribute('data-seq'));

  // Escape cancels.
  await crow(alex, first.id).locator('button.edit').click();
  await editor.fill('something else');
  await editor.press('Escape');
  assert.equal(await editor.count(), 0);
  assert.equal(await crow(alex, first.id).locator('.bubble .text').textContent(), 'Hello, I am Alex');

  // Delete: a tombstone in both, no buttons left.
  await crow(alex, second.id).locator('button.delete').click();
  await waitFor(async () => (await crow(alex, second.id).getAttribute('class'))?.includes('deleted'), { what: 'the tombstone in the console' });
  assert.equal(await crow(alex, second.id).locator('.bubble .text').textContent(), 'Message deleted');
  assert.equal(await crow(alex, second.id).locator('button.change').count(), 0);
  await waitFor(async () => (await wrow(second.id).getAttribute('class'))?.includes('deleted'), { what: 'the tombstone in the widget' });
  assert.equal(await wrow(second.id).locator('.bubble .text').textContent(), 'Message deleted');

  // A save the server refuses (the message was deleted meanwhile, here over HTTP) says so
  // under the message; the editor stayed open while the deletion arrived.
  await crow(alex, third.id).locator('button.edit').click();
  await editor.fill('Let me check that');
  const del = await fetch(`${srv.url}/agent/sessions/${sessionId}/messages/${third.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${agentJwt}` } });
  assert.equal(del.status, 200);
  await waitFor(async () => (await wrow(third.id).getAttribute('class'))?.includes('deleted'), { what: 'the deletion pushed' });
  assert.equal(await editor.inputValue(), 'Let me check that', 'the editor kept while a change arrives');
  await editor.press('Enter');
  await waitFor(async () => (await crow(alex, third.id).locator('.edit-note').count()) === 1, { what: 'the refusal shown' });
  assert.equal(await crow(alex, third.id).locator('.edit-note').textContent(), 'This message can no longer be changed.');
  assert.equal(await crow(alex, third.id).locator('.bubble .text').textContent(), 'Message deleted');

  // The customer edits theirs: the console shows it, live.
  await wrow(mine.id).locator('button.edit').click();
  await w(user, 'textarea.edit-input').fill('Hello, I need a person');
  await w(user, 'textarea.edit-input').press('Enter');
  await waitFor(async () => (await crow(alex, mine.id).locator('.bubble .text').textContent()) === 'Hello, I need a person', { what: 'the customer\'s edit in the console' });
  assert.equal(await crow(alex, mine.id).locator('.edited').textContent(), 'edited');
  assert.equal(await crow(alex, mine.id).locator('button.change').count(), 0);

  // The console goes offline; the customer deletes their message meanwhile; after the
  // reconnect the console has the tombstone (the push was missed: `?updatedAfter=`).
  await alex.evaluate(() => {
    window.__blockSockets = true;
    window.__consoleSockets.at(-1).close();
  });
  await waitFor(() => alex.evaluate(() => window.__agentConsole.state.connection === 'reconnecting'), { what: 'the console offline' });
  await wrow(mine.id).locator('button.delete').click();
  await waitFor(async () => (await wrow(mine.id).getAttribute('class'))?.includes('deleted'), { what: 'the deletion in the widget' });
  assert.equal(await crow(alex, mine.id).locator('.bubble .text').textContent(), 'Hello, I need a person', 'not pushed to the console while offline');
  await alex.evaluate(() => { window.__blockSockets = false; });
  await waitFor(() => alex.evaluate(() => window.__agentConsole.state.connection === 'open'), { what: 'the console back' });
  await waitFor(async () => (await crow(alex, mine.id).getAttribute('class'))?.includes('deleted'), { what: 'the missed deletion in the console' });
  assert.equal(await crow(alex, mine.id).locator('.bubble .text').textContent(), 'Message deleted');
  assert.equal((await consoleLog(alex)).length, log.length, 'every message in its place, nothing added');
  await alex.screenshot({ path: join(ensureOutput(), 'agent-console-edits.png') });

  assert.deepEqual(user.errors, []);
  assert.deepEqual(alex.errors, []);
});

test('the agent console: past the edit window (CHAT_EDIT_WINDOW_S=2) the agent\'s message offers no Edit any more', async () => {
  const secret = 'edits-console-window-secret-0123456789';
  const dataDir = tempDir();
  const srv = await startServer({ dataDir, env: { CHAT_AUTH_JWT_SECRET: secret, CHAT_EDIT_WINDOW_S: '2' } });
  cleanup.push(async () => {
    await srv.stop();
    removeDir(dataDir);
  });
  // A session waiting for a person, made over HTTP.
  const created = await (await fetch(`${srv.url}/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).json();
  const handoff = await fetch(`${srv.url}/sessions/${created.sessionId}/handoff`, { method: 'POST', headers: { authorization: `Bearer ${created.token}`, 'content-type': 'application/json' }, body: '{}' });
  assert.equal(handoff.status, 200);
  const context = await browser.newContext();
  cleanup.push(() => context.close());
  const alex = await newPage(context, `${srv.url}/agent`, { init: 'window.agentConsoleConfig = { editWindowMs: 2000 };' });
  await signInConsole(alex, signJwt({ sub: 'a-alex', name: 'Alex', role: 'agent' }, secret));
  await claim(alex, created.sessionId);
  const sent = await reply(alex, 'quick one');
  assert.equal(sent.changes, 2, 'Edit and Delete while the window lasts');
  // Gone when the window ends, without anything else happening in the conversation.
  await waitFor(async () => (await crow(alex, sent.id).locator('button.change').count()) === 0, { what: 'Edit and Delete gone', timeoutMs: 10_000 });
  assert.equal(await crow(alex, sent.id).locator('.bubble .text').textContent(), 'quick one');
  assert.deepEqual(alex.errors, []);
});
