// People in the loop (issue 12) in headless Chromium: the widget in one page, the agent console
// in others. The story against the real chat-local: the user asks for a person, the session
// appears live in the agent's Waiting tab, the agent claims it (a second agent's claim is
// refused with a visible message), both type and see each other typing, they exchange
// messages, the agent releases and the bot answers again with the agent's messages in the
// history n8n receives. Against the tests' agent contract server (no CSP, so markup that got
// through would run): hostile names, metadata and messages rendered as text; a closed
// conversation and a new one; canned replies managed and inserted by keyboard.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { startAgentContractServer, signJwt } from './agent-contract-server.mjs';
import {
  launchBrowser, waitFor, newPage, openWidget, connected, send, readMessages, startServer, tempDir, removeDir, ensureOutput,
} from './support.mjs';

let browser;
const cleanup = [];

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const f of cleanup.reverse()) await f();
});

// --- the console, as a test reads and drives it (its shadow root; Playwright's CSS locators pierce it)

const consoleRoot = (page) => page.locator('[data-agent-console-root]');

async function signInConsole(page, token) {
  await consoleRoot(page).locator('#token').fill(token);
  await consoleRoot(page).getByRole('button', { name: 'Sign in' }).click();
  await consoleRoot(page).getByRole('tab', { name: /Waiting/ }).waitFor({ state: 'visible', timeout: 10_000 });
  await waitFor(() => page.evaluate(() => window.__agentConsole?.state.connection === 'open'), { what: 'the console\'s socket' });
}

const inboxItem = (page, sessionId) => consoleRoot(page).locator(`button.item[data-session="${sessionId}"]`);
const consoleAlert = (page) => consoleRoot(page).locator('.alert');

/** The console's conversation log: [{ role, who, text }]. */
function consoleMessages(page) {
  return page.evaluate(() => {
    const root = document.querySelector('[data-agent-console-root]').shadowRoot;
    return [...root.querySelectorAll('.log li.msg')].map((li) => ({
      role: li.dataset.role,
      who: li.querySelector('.who')?.textContent ?? null,
      text: li.querySelector('.bubble .text').textContent,
    }));
  });
}

async function widgetTyping(page) {
  return page.evaluate(() => {
    const t = document.querySelector('[data-chat-widget]').shadowRoot.querySelector('.typing');
    return t.hidden ? '' : t.textContent;
  });
}

const widgetEl = (page, css) => page.locator(`[data-chat-widget] ${css}`);

// --- backends

/** The real chat-local, with a recording stand-in for n8n (answers whole, as n8n's Webhook node can). */
async function chatLocal() {
  const secret = 'agents-browser-test-secret-0123456789';
  const dispatches = [];
  const n8n = createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => { raw += d; });
    req.on('end', () => {
      const body = JSON.parse(raw || '{}');
      dispatches.push(body);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ output: `You said: ${body.content}` }));
    });
  });
  await new Promise((r) => n8n.listen(0, '127.0.0.1', r));
  const dataDir = tempDir();
  const srv = await startServer({
    dataDir,
    env: { CHAT_AUTH_JWT_SECRET: secret, CHAT_N8N_WEBHOOK_URL: `http://127.0.0.1:${n8n.address().port}/webhook/chat` },
  });
  cleanup.push(async () => {
    await srv.stop();
    n8n.closeAllConnections();
    await new Promise((r) => n8n.close(r));
    removeDir(dataDir);
  });
  return { name: '', url: srv.url, dispatches, agentToken: ({ id, name }) => signJwt({ sub: id, name, role: 'agent' }, secret) };
}

async function contract() {
  const srv = await startAgentContractServer();
  cleanup.push(() => srv.close());
  return srv;
}

// --- the story

/**
 * @param {{ url: string, dispatches: { history: { role: string, content: string, name?: string }[] }[],
 *   agentToken: (a: { id: string, name: string }) => string }} backend
 */
async function story(backend, t) {
  const user = await newPage(await browser.newContext(), `${backend.url}/`);
  const alex = await newPage(await browser.newContext(), `${backend.url}/agent`, { viewport: { width: 1280, height: 800 } });
  const sam = await newPage(await browser.newContext(), `${backend.url}/agent`);
  t.after(() => Promise.all([user, alex, sam].map((p) => p.context().close())));

  await signInConsole(alex, backend.agentToken({ id: 'a-alex', name: 'Alex' }));
  await signInConsole(sam, backend.agentToken({ id: 'a-sam', name: 'Sam' }));
  assert.equal(await consoleRoot(alex).locator('.me').textContent(), 'Alex');

  // The user talks to the bot first.
  await openWidget(user);
  await connected(user);
  await send(user, 'Where is my parcel?');
  await waitFor(async () => (await readMessages(user)).some((m) => m.role === 'assistant' && m.text.includes('You said: Where is my parcel?')), { what: 'the bot\'s answer' });
  const sessionId = await user.evaluate(() => window.__chatWidget.client.sessionId);
  assert.equal(await inboxItem(alex, sessionId).count(), 0, 'not in the inbox while the bot answers');

  // The user asks for a person; the session shows up in Alex's Waiting tab without a reload.
  const asked = Date.now();
  await widgetEl(user, '.handoff').click();
  await inboxItem(alex, sessionId).waitFor({ state: 'visible', timeout: 10_000 });
  const toInboxMs = Date.now() - asked;
  await waitFor(async () => (await readMessages(user)).some((m) => m.role === 'system' && m.text === 'Connecting you to a person…'), { what: 'the waiting notice' });
  await waitFor(async () => (await widgetEl(user, '.mode').textContent()).includes('Waiting for a person'), { what: 'the widget to say it waits' });
  assert.equal(await widgetEl(user, '.handoff-row').isHidden(), true, 'no second handoff button while waiting');
  assert.match(await inboxItem(alex, sessionId).textContent(), /waiting \d+ s/);
  assert.match(await consoleRoot(alex).locator('[data-announcer]').textContent(), /New conversation waiting/);
  assert.equal(await consoleRoot(alex).locator('#tab-waiting .count').textContent(), '1');

  // Sam opens it too (from All open) before Alex claims it.
  await consoleRoot(sam).getByRole('tab', { name: /All open/ }).click();
  await inboxItem(sam, sessionId).click();

  // Alex opens it: the bot's earlier messages are there; Alex claims it.
  await inboxItem(alex, sessionId).click();
  await waitFor(async () => (await consoleMessages(alex)).some((m) => m.role === 'assistant' && m.who === 'Bot' && m.text.includes('You said: Where is my parcel?')), { what: 'the history in the console' });
  assert.ok((await consoleMessages(alex)).some((m) => m.role === 'user' && m.text === 'Where is my parcel?'));
  await consoleRoot(alex).getByRole('button', { name: 'Claim' }).click();
  await waitFor(async () => (await consoleRoot(alex).locator('.badge').textContent()) === 'With you', { what: 'Alex to hold it' });
  assert.equal(await consoleRoot(alex).locator('.composer textarea').evaluate((e) => document.querySelector('[data-agent-console-root]').shadowRoot.activeElement === e), true, 'the composer has the focus after a claim');
  await waitFor(async () => (await readMessages(user)).some((m) => m.role === 'system' && m.text === 'Alex joined the conversation'), { what: 'the joined notice' });
  await waitFor(async () => (await widgetEl(user, '.mode').textContent()).includes('Alex'), { what: 'the widget to name Alex' });
  await consoleRoot(alex).getByRole('tab', { name: /Mine/ }).click();
  await inboxItem(alex, sessionId).waitFor({ state: 'visible', timeout: 5_000 });

  // Sam's claim of the same session is refused, and Sam is told so.
  await waitFor(async () => /Alex/.test(await consoleRoot(sam).locator('.badge').textContent()), { what: 'Sam\'s console to see Alex holds it' });
  await consoleRoot(sam).getByRole('button', { name: 'Claim' }).click();
  await waitFor(async () => /Someone else has already taken this conversation/.test(await consoleAlert(sam).textContent()), { what: 'the refusal shown to Sam' });
  assert.equal(await consoleAlert(sam).getAttribute('role'), 'alert');
  assert.equal(await consoleRoot(sam).locator('.composer textarea').isDisabled(), true);

  // Typing, both ways.
  await widgetEl(user, 'textarea').pressSequentially('I ordered', { delay: 20 });
  await waitFor(async () => (await consoleRoot(alex).locator('.typing').textContent()) === 'The customer is typing…', { what: 'Alex to see the customer typing' });
  await consoleRoot(alex).locator('.composer textarea').pressSequentially('Let me', { delay: 20 });
  await waitFor(async () => (await widgetTyping(user)) === 'Alex is typing…', { what: 'the user to see Alex typing' });

  // Messages, both ways; the bot stays quiet.
  await widgetEl(user, 'textarea').fill('I ordered on Monday');
  await widgetEl(user, 'textarea').press('Enter');
  await waitFor(async () => (await consoleMessages(alex)).some((m) => m.role === 'user' && m.text === 'I ordered on Monday'), { what: 'the message at Alex' });
  await consoleRoot(alex).locator('.composer textarea').fill('Let me **check** that for you.');
  await consoleRoot(alex).locator('.composer textarea').press('Enter');
  await waitFor(async () => (await readMessages(user)).some((m) => m.role === 'agent' && m.text === 'Let me check that for you.'), { what: 'Alex\'s message at the user' });
  const agentRow = widgetEl(user, 'li.msg.agent').last();
  assert.equal(await agentRow.locator('.who').textContent(), 'Alex');
  assert.equal(await agentRow.locator('strong').textContent(), 'check', 'Markdown rendered');
  assert.ok((await consoleMessages(alex)).some((m) => m.role === 'agent' && m.who === 'Alex' && m.text === 'Let me check that for you.'));
  assert.equal((await readMessages(user)).some((m) => m.role === 'assistant' && m.text.includes('I ordered on Monday')), false, 'the bot did not answer while Alex holds it');
  await alex.screenshot({ path: join(ensureOutput(), `agent-console${backend.name}.png`) });

  // Alex releases; the bot is back and n8n sees Alex's message in the history.
  await consoleRoot(alex).getByRole('button', { name: 'Release to bot' }).click();
  await waitFor(async () => (await readMessages(user)).some((m) => m.role === 'system' && m.text === 'Alex left; the assistant is back'), { what: 'the left notice' });
  await waitFor(async () => widgetEl(user, '.handoff-row').isVisible(), { what: 'the handoff button back' });
  await send(user, 'Thanks!');
  await waitFor(async () => (await readMessages(user)).some((m) => m.role === 'assistant' && m.text.includes('You said: Thanks!')), { what: 'the bot to answer again' });
  const last = backend.dispatches.at(-1);
  assert.ok(last.history.some((m) => m.role === 'agent' && m.name === 'Alex' && m.content === 'Let me **check** that for you.'), `the agent's message in n8n's history: ${JSON.stringify(last.history)}`);
  assert.equal(await inboxItem(alex, sessionId).count(), 0, 'gone from Mine once released');

  for (const p of [user, alex, sam]) assert.deepEqual(p.errors, []);
  return { toInboxMs };
}

describe('people in the loop, end to end', () => {
  test('against the real chat-local: handoff, live inbox, claim (a second claim refused), typing, messages, release, the bot back with the agent in its history', async (t) => {
    const { toInboxMs } = await story(await chatLocal(), t);
    t.diagnostic(`from "Talk to a person" to the session in the agent's Waiting tab: ${toInboxMs} ms`);
  });

  test('against the agent contract server (the same story)', async (t) => {
    await story(Object.assign(await contract(), { name: '-contract' }), t);
  });
});

describe('the console against the agent contract server', () => {
  test('hostile names, metadata and messages are shown as text, never markup (no CSP on this page)', async (t) => {
    const srv = await contract();
    const ctx = await browser.newContext();
    t.after(() => ctx.close());
    const evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
    // A session with hostile metadata, a hostile user message, then waiting.
    const created = await (await fetch(`${srv.url}/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ metadata: { page: evil, [evil]: '**x**' } }) })).json();
    const auth = { authorization: `Bearer ${created.token}`, 'content-type': 'application/json' };
    const s = srv.sessions.get(created.sessionId);
    s.messages.push({ id: 'M1', seq: 1, sessionId: s.id, role: 'user', type: 'text', content: `${evil} [x](javascript:window.__pwned=3)`, status: 'received', createdAt: new Date().toISOString() });
    s.messages.push({ id: 'M2', seq: 2, sessionId: s.id, role: 'assistant', type: 'text', content: `${evil}\n\n[click](javascript:window.__pwned=4) **fine**`, status: 'delivered', createdAt: new Date().toISOString() });
    await fetch(`${srv.url}/sessions/${s.id}/handoff`, { method: 'POST', headers: auth, body: '{}' });

    const page = await newPage(ctx, `${srv.url}/agent`);
    await signInConsole(page, srv.agentToken({ id: 'a-evil', name: evil }));
    assert.equal(await consoleRoot(page).locator('.me').textContent(), evil, 'the name as text');
    await inboxItem(page, s.id).click();
    await consoleRoot(page).getByRole('button', { name: 'Claim' }).click();
    await waitFor(async () => (await consoleMessages(page)).some((m) => m.role === 'system' && m.text === `${evil} joined the conversation`), { what: 'the joined notice' });
    await consoleRoot(page).locator('.composer textarea').fill(`Agent says ${evil}`);
    await consoleRoot(page).locator('.composer textarea').press('Enter');
    await waitFor(async () => (await consoleMessages(page)).some((m) => m.role === 'agent' && m.text === `Agent says ${evil}`), { what: 'the agent message' });
    await page.locator('[data-agent-console-root] details.meta summary').click();
    const found = await page.evaluate(() => {
      const root = document.querySelector('[data-agent-console-root]').shadowRoot;
      return {
        imgs: root.querySelectorAll('img').length + document.querySelectorAll('img').length,
        scripts: root.querySelectorAll('script').length,
        handlers: [...root.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length,
        jsLinks: [...root.querySelectorAll('a')].filter((a) => !/^(https?|mailto):/.test(a.href)).length,
        strong: [...root.querySelectorAll('.log strong')].map((e) => e.textContent),
        meta: [...root.querySelectorAll('details.meta dd')].map((e) => e.textContent),
        metaKeys: [...root.querySelectorAll('details.meta dt')].map((e) => e.textContent),
        inbox: root.querySelector('button.item')?.textContent ?? '',
        pwned: window.__pwned ?? null,
      };
    });
    assert.deepEqual({ imgs: found.imgs, scripts: found.scripts, handlers: found.handlers, jsLinks: found.jsLinks, pwned: found.pwned }, { imgs: 0, scripts: 0, handlers: 0, jsLinks: 0, pwned: null });
    assert.deepEqual(found.strong, ['fine'], 'the bot\'s Markdown rendered, the user\'s not');
    assert.ok(found.meta.includes(evil), 'metadata values as text');
    assert.ok(found.metaKeys.includes(evil), 'metadata keys as text');
    assert.ok((await consoleMessages(page)).some((m) => m.role === 'user' && m.text === `${evil} [x](javascript:window.__pwned=3)`));
    assert.deepEqual(page.errors, []);
  });

  test('canned replies: created in the dialog, found by /shortcut, picked by keyboard; a used shortcut is refused', async (t) => {
    const srv = await contract();
    const ctx = await browser.newContext();
    t.after(() => ctx.close());
    const created = await (await fetch(`${srv.url}/sessions`, { method: 'POST', body: '{}' })).json();
    await fetch(`${srv.url}/sessions/${created.sessionId}/handoff`, { method: 'POST', headers: { authorization: `Bearer ${created.token}` }, body: '{}' });
    const page = await newPage(ctx, `${srv.url}/agent`);
    await signInConsole(page, srv.agentToken({ id: 'a-1', name: 'Alex' }));
    const root = consoleRoot(page);

    await root.getByRole('button', { name: 'Canned replies' }).click();
    const dialog = root.locator('dialog');
    await dialog.waitFor({ state: 'visible' });
    // A bad shortcut is explained before anything is sent.
    await dialog.locator('#c-shortcut').fill('Bad Shortcut');
    await dialog.getByRole('button', { name: 'Save' }).click();
    assert.match(await dialog.locator('#c-shortcut-err').textContent(), /Lower-case/);
    assert.equal(await dialog.locator('#c-shortcut').getAttribute('aria-invalid'), 'true');
    for (const [shortcut, title, text] of [['refund', 'Refund policy', 'Refunds take **5 days**.'], ['hello', 'Greeting', 'Hello! How can I help?']]) {
      await dialog.locator('#c-shortcut').fill(shortcut);
      await dialog.locator('#c-title').fill(title);
      await dialog.locator('#c-text').fill(text);
      await dialog.getByRole('button', { name: 'Save' }).click();
      await dialog.locator(`li[data-shortcut="${shortcut}"]`).waitFor({ timeout: 5_000 });
    }
    await dialog.locator('#c-shortcut').fill('hello');
    await dialog.locator('#c-title').fill('Again');
    await dialog.locator('#c-text').fill('x');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await waitFor(async () => /already used/.test(await dialog.locator('.canned-form [role=alert]').textContent()), { what: 'the conflict message' });
    // Edit one, delete none; Escape closes the dialog and gives the focus back.
    await dialog.getByRole('button', { name: 'Edit /hello' }).click();
    await dialog.locator('#c-text').fill('Hello there! How can I help?');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await waitFor(async () => (await dialog.locator('#c-form-title').textContent()) === 'New reply', { what: 'the edit saved' });
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });

    await inboxItem(page, created.sessionId).click();
    await root.getByRole('button', { name: 'Claim' }).click();
    const box = root.locator('.composer textarea');
    await waitFor(() => box.isEnabled(), { what: 'the composer' });
    await box.focus();
    await page.keyboard.type('Hi /');
    const options = root.locator('.pop [role=option]');
    await waitFor(async () => (await options.count()) === 2, { what: 'both canned replies offered' });
    assert.equal(await box.getAttribute('aria-expanded'), 'true');
    await page.keyboard.type('he');
    await waitFor(async () => (await options.count()) === 1, { what: 'the search to narrow' });
    await page.keyboard.press('Backspace');
    await page.keyboard.press('Backspace');
    await waitFor(async () => (await options.count()) === 2, { what: 'both again' });
    await page.keyboard.press('ArrowDown');
    assert.equal(await box.getAttribute('aria-activedescendant'), 'canned-opt-1');
    assert.equal(await options.nth(1).getAttribute('data-shortcut'), 'refund');
    await page.keyboard.press('Enter');
    assert.equal(await box.inputValue(), 'Hi Refunds take **5 days**.');
    assert.equal(await root.locator('.pop').isHidden(), true);
    await page.keyboard.press('Enter');
    await waitFor(async () => (await consoleMessages(page)).some((m) => m.role === 'agent' && m.text === 'Hi Refunds take 5 days.'), { what: 'the canned reply sent' });
    assert.deepEqual([...srv.sessions.get(created.sessionId).messages].filter((m) => m.role === 'agent').map((m) => m.content), ['Hi Refunds take **5 days**.']);
    assert.deepEqual(page.errors, []);
  });

  test('a closed conversation: the widget disables the composer and starts a new conversation on request', async (t) => {
    const srv = await contract();
    const ctx = await browser.newContext();
    t.after(() => ctx.close());
    const user = await newPage(ctx, `${srv.url}/`);
    await openWidget(user);
    await connected(user);
    const first = await user.evaluate(() => window.__chatWidget.client.sessionId);
    await widgetEl(user, '.handoff').click();
    await waitFor(async () => (await readMessages(user)).some((m) => m.text === 'Connecting you to a person…'), { what: 'waiting' });
    const token = srv.agentToken({ id: 'a-1', name: 'Alex' });
    const r = await fetch(`${srv.url}/agent/sessions/${first}/close`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: '{}' });
    assert.equal(r.status, 200);
    await waitFor(() => widgetEl(user, '.closed-row').isVisible(), { what: 'the closed row' });
    assert.equal(await widgetEl(user, 'form').isHidden(), true);
    assert.equal(await widgetEl(user, 'textarea').isDisabled(), true);
    assert.match(await widgetEl(user, '.mode').textContent(), /Closed/);
    await widgetEl(user, '.new-conversation').click();
    await waitFor(async () => (await user.evaluate(() => window.__chatWidget.client.sessionId)) !== first, { what: 'a new session' });
    await waitFor(() => widgetEl(user, 'form').isVisible(), { what: 'the composer back' });
    assert.deepEqual(await readMessages(user), [], 'the new conversation starts empty');
    await send(user, 'New question');
    await waitFor(async () => (await readMessages(user)).some((m) => m.text === 'You said: New question'), { what: 'the bot in the new session' });
    assert.deepEqual(user.errors, []);
  });
});
