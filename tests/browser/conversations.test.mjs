// Conversations people keep, in Chromium against a real chat-local: one signed-in user on two
// devices (two browser contexts, nothing shared but the app JWT). Device A talks; device B's
// widget opens that conversation by itself (the user's most recent: GET /sessions?limit=1,
// POST /sessions/{id}/resume), shows its history, writes in it, and device A receives that
// live; then B's "Previous conversations" list, its keyboard, and "New conversation".
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

/** Waits until the widget shows `n` stored messages, every user message answered. */
function settled(page, n) {
  return waitFor(async () => {
    const ms = await readMessages(page);
    const done = ms.length === n && ms.every((m) => m.seq != null) && ms.filter((m) => m.role === 'user').every((m) => m.status === 'answered');
    return done && ms;
  }, { what: `${n} settled messages`, timeoutMs: 20_000 });
}

const sessionIdOf = (page) => page.evaluate(() => window.__chatWidget.client.sessionId);

test('one user, two devices: B opens A\'s latest conversation by itself (history, its own token), A receives B\'s message live; the list, keyboard and New conversation', async () => {
  const secret = 'keep-browser-test-secret-0123456789';
  const dataDir = tempDir();
  const srv = await startServer({ dataDir, env: { CHAT_AUTH_JWT_SECRET: secret } });
  cleanup.push(async () => {
    await srv.stop();
    removeDir(dataDir);
  });
  const jwt = signJwt({ sub: 'user-keep-42' }, secret);
  const device = async () => {
    const context = await browser.newContext();
    cleanup.push(() => context.close());
    return newPage(context, srv.url, { widgetConfig: { authToken: jwt } });
  };
  const api = async (method, path, auth, body) => {
    const r = await fetch(`${srv.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${auth}` },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return [r.status, await r.json().catch(() => null)];
  };
  const listing = async () => (await api('GET', '/sessions', jwt))[1].sessions;

  // Device A: the user has no conversation yet, so the widget creates one. The first
  // message's text looks like markup; the list must show it as text.
  const first = '<img src=x onerror="window.__pwned=1"> Where is my parcel?';
  const a = await device();
  await openWidget(a);
  await connected(a);
  const sessionA = await sessionIdOf(a);
  await send(a, first);
  await settled(a, 2);
  await w(a, 'textarea').press('Escape');
  await w(a, '.panel').waitFor({ state: 'hidden', timeout: 5000 });
  const stored = await a.evaluate(() => JSON.parse(localStorage.getItem(Object.keys(localStorage).find((k) => k.startsWith('chat-session:') && !k.endsWith(':pending')))));
  // Another conversation of the user, started elsewhere (over HTTP); its answer stays unread.
  const [created, other] = await api('POST', '/sessions', jwt, {});
  assert.equal(created, 201);
  const older = 'Do you ship abroad?';
  assert.equal((await api('POST', `/sessions/${other.sessionId}/messages`, other.token, { content: older, clientMessageId: 'o-1' }))[0], 202);
  const listedOther = await waitFor(async () => {
    const c = (await listing()).find((s) => s.sessionId === other.sessionId);
    return c?.unreadCount > 0 && c;
  }, { what: 'an unread answer in the other conversation' });
  // Then A's conversation is the newest again: a second question (A's token, over HTTP).
  assert.equal((await api('POST', `/sessions/${sessionA}/messages`, stored.token, { content: 'And when will it come?', clientMessageId: 'a-second-1' }))[0], 202);
  await settled(a, 4);
  await waitFor(async () => (await listing())[0]?.sessionId === sessionA && (await listing())[0].lastMessage?.role === 'assistant', { what: 'A\'s conversation to be the newest' });

  // Device B (nothing shared with A but the app JWT): the widget opens the user's most
  // recent conversation, A's, with a token of its own, instead of creating an empty one.
  const b = await device();
  await openWidget(b);
  await connected(b);
  assert.equal(await sessionIdOf(b), sessionA);
  const seen = await settled(b, 4);
  assert.deepEqual(seen.map((m) => [m.role, m.text]), [
    ['user', first],
    ['assistant', `You said: ${first}`],
    ['user', 'And when will it come?'],
    ['assistant', 'You said: And when will it come?'],
  ]);
  const storedB = await b.evaluate(() => JSON.parse(localStorage.getItem(Object.keys(localStorage).find((k) => k.startsWith('chat-session:') && !k.endsWith(':pending')))));
  assert.equal(storedB.sessionId, sessionA);
  assert.notEqual(storedB.token, stored.token);
  assert.equal((await listing()).length, 2, 'no empty conversation was created');

  // B writes; A receives it live (and the answer) on its open socket.
  await send(b, 'Sent from my phone');
  await settled(b, 6);
  await openWidget(a);
  const onA = await settled(a, 6);
  assert.deepEqual(onA.slice(4).map((m) => [m.role, m.text]), [['user', 'Sent from my phone'], ['assistant', 'You said: Sent from my phone']]);
  assert.deepEqual(onA.map((m) => m.id), seen.map((m) => m.id).concat((await readMessages(b)).slice(4).map((m) => m.id)));

  // The list on B: A's conversation (current) first, then the other one, unread.
  const history = w(b, 'button.history');
  assert.equal(await history.getAttribute('aria-label'), 'Previous conversations');
  assert.equal(await history.getAttribute('aria-expanded'), 'false');
  await history.click();
  assert.equal(await history.getAttribute('aria-expanded'), 'true');
  const itemA = w(b, `button.conv[data-session-id="${sessionA}"]`);
  const itemOther = w(b, `button.conv[data-session-id="${other.sessionId}"]`);
  await itemOther.waitFor({ state: 'visible', timeout: 10_000 });
  assert.equal(await w(b, '.log').isVisible(), false, 'the list replaces the messages');
  assert.equal(await itemA.locator('.conv-title').textContent(), first, 'the title, as text');
  assert.equal(await w(b, '.conversations img').count(), 0, 'no markup from a title');
  assert.equal(await b.evaluate(() => window.__pwned), undefined);
  assert.equal(await itemOther.locator('.conv-time').textContent(), 'just now');
  assert.equal(await itemOther.locator('.conv-unread').textContent(), `${listedOther.unreadCount} unread`);
  assert.equal(await itemOther.getAttribute('aria-label'), `${older}, just now, ${listedOther.unreadCount} unread`);
  assert.equal(await itemOther.locator('.conv-last').textContent(), `You said: ${older}`);
  const items = await w(b, 'button.conv').evaluateAll((bs) => bs.map((x) => [x.dataset.sessionId, x.getAttribute('aria-current'), x.querySelector('.conv-title').textContent]));
  assert.deepEqual(items, [[sessionA, 'true', first], [other.sessionId, null, older]]);

  // By keyboard: focus is on the current conversation; ArrowDown, then Enter opens the other.
  const focused = () => b.evaluate(() => document.querySelector('[data-chat-widget]').shadowRoot.activeElement?.dataset.sessionId ?? null);
  await waitFor(async () => (await focused()) === sessionA, { what: 'focus on the current conversation' });
  await b.keyboard.press('ArrowDown');
  assert.equal(await focused(), other.sessionId);
  await b.keyboard.press('Enter');
  await waitFor(async () => (await sessionIdOf(b)) === other.sessionId, { what: 'B to open the other conversation' });
  await w(b, '.log').waitFor({ state: 'visible', timeout: 10_000 });
  assert.equal(await history.getAttribute('aria-expanded'), 'false');
  await connected(b);
  assert.deepEqual((await settled(b, 2)).map((m) => [m.role, m.text]), [['user', older], ['assistant', `You said: ${older}`]]);

  // "New conversation" from the list: B starts afresh; the list then holds three.
  await history.click();
  await w(b, 'button.start-new').click();
  await waitFor(async () => {
    const id = await sessionIdOf(b);
    return id && id !== sessionA && id !== other.sessionId;
  }, { what: 'a new conversation on B' });
  assert.deepEqual(await readMessages(b), []);
  await history.click();
  await waitFor(async () => (await w(b, 'button.conv').count()) === 3, { what: 'three conversations listed' });
  // Escape goes back to the conversation (the panel stays open).
  await b.keyboard.press('Escape');
  await w(b, '.log').waitFor({ state: 'visible', timeout: 5000 });
  assert.equal(await w(b, '.panel').isVisible(), true);

  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});

test('a guest has no list of conversations', async () => {
  const dataDir = tempDir();
  const srv = await startServer({ dataDir });
  cleanup.push(async () => {
    await srv.stop();
    removeDir(dataDir);
  });
  const context = await browser.newContext();
  cleanup.push(() => context.close());
  const page = await newPage(context, srv.url);
  await openWidget(page);
  await connected(page);
  assert.equal(await w(page, 'button.history').isHidden(), true);
  await assert.rejects(page.evaluate(() => window.__chatWidget.client.listConversations()), /signed-in user/);
});
