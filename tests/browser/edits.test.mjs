// Edit and delete in the widget, in Chromium against a real chat-local: one signed-in user on
// two devices (B opens A's conversation by itself). A edits its own message by keyboard
// (Edit, the text, Enter); B shows the new text with an "edited" mark, live. A deletes it; B
// shows "Message deleted". Only the user's own messages offer Edit and Delete, and a message
// past the edit window (CHAT_EDIT_WINDOW_S) no longer does: a click then says so.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, readMessages, tempDir, removeDir, waitFor,
  newPage, openWidget, connected, send,
} from './support.mjs';
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
