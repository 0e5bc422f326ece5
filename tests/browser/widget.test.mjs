// Browser tests: the widget and ChatClient in headless Chromium against a real chat-local.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { join } from 'node:path';
import {
  startServer, launchBrowser, readMessages, tempDir, removeDir, waitFor, ensureOutput,
  newPage, launcher, input, openWidget, connected, send,
} from './support.mjs';

let browser;
const servers = [];
const dirs = [];
// HTTP servers a test starts itself (a stand-in n8n, another site), closed here too: one left
// listening after a failed test would keep this process alive until the run's timeout.
const httpServers = [];

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const s of httpServers) {
    s.closeAllConnections();
    s.close();
  }
  for (const s of servers) await s.stop('SIGKILL');
  for (const d of dirs) removeDir(d);
});

/** Listens on an ephemeral port of `host`; closed after the tests even if one fails. */
async function listen(httpServer, host) {
  httpServers.push(httpServer);
  await new Promise((r) => httpServer.listen(0, host, r));
  return httpServer;
}

async function server(opts = {}) {
  const dataDir = opts.dataDir ?? tempDir();
  if (!opts.dataDir) dirs.push(dataDir);
  const s = await startServer({ ...opts, dataDir });
  servers.push(s);
  return { ...s, dataDir };
}

/** Waits until the widget shows `n` messages with a seq, all answered. */
async function settled(page, n) {
  return waitFor(async () => {
    const ms = await readMessages(page);
    const done = ms.length === n && ms.every((m) => m.seq != null) && ms.filter((m) => m.role === 'user').every((m) => m.status === 'answered');
    return done && ms;
  }, { what: `${n} settled messages`, timeoutMs: 20_000 });
}

function assertExactlyOnceInOrder(ms) {
  const seqs = ms.map((m) => m.seq);
  assert.deepEqual(seqs, Array.from({ length: ms.length }, (_, i) => i + 1), `seqs 1..${ms.length} once each, in order: ${JSON.stringify(seqs)}`);
  assert.equal(new Set(ms.map((m) => m.id)).size, ms.length, 'no id twice');
}

describe('chat widget in Chromium', () => {
  test('open the widget, send with Enter, see the dev bot reply; Escape closes; status and types render', async () => {
    const srv = await server();
    const context = await browser.newContext();
    const page = await newPage(context, srv.url);
    await openWidget(page);
    assert.equal(await page.evaluate(() => document.querySelector('[data-chat-widget]').shadowRoot.activeElement?.tagName), 'TEXTAREA', 'focus goes to the input');
    await connected(page);
    await send(page, 'Hello from Chromium');
    const ms = await settled(page, 2);
    assert.deepEqual(ms.map((m) => [m.role, m.type, m.text]), [
      ['user', 'text', 'Hello from Chromium'],
      ['assistant', 'text', 'You said: Hello from Chromium'],
    ]);
    assert.equal(await input(page).inputValue(), '', 'the input is cleared');
    // Each reply type is rendered with its own class and label.
    await send(page, '/confirmation Book it?');
    const ms2 = await settled(page, 4);
    assert.equal(ms2[3].type, 'confirmation');
    const label = await page.locator('[data-chat-widget] li.t-confirmation .kind').textContent();
    assert.match(label, /Confirmation/);
    // Accessibility basics.
    assert.equal(await page.locator('[data-chat-widget] [role=log]').getAttribute('aria-live'), 'polite');
    assert.equal(await page.locator('[data-chat-widget] [role=dialog]').getAttribute('aria-labelledby'), 'chat-title');
    // Escape closes and gives focus back to the button.
    await input(page).press('Escape');
    await page.locator('[data-chat-widget] .panel').waitFor({ state: 'hidden', timeout: 5000 });
    assert.equal(await launcher(page).getAttribute('aria-expanded'), 'false');
    assert.equal(await page.evaluate(() => document.querySelector('[data-chat-widget]').shadowRoot.activeElement?.className), 'launcher');
    assert.deepEqual(page.errors, []);
    await context.close();
    await srv.stop();
  });

  test('a server-side cut: messages sent while disconnected arrive once, in order, after the reconnect', async () => {
    const first = await server();
    const context = await browser.newContext();
    const page = await newPage(context, first.url);
    await openWidget(page);
    await connected(page);
    await send(page, 'before the cut');
    await settled(page, 2);

    // Cut every socket from the server side: kill the process outright (no close frame).
    await first.stop('SIGKILL');
    await waitFor(() => page.evaluate(() => window.__chatWidget.client.connectionState !== 'open'), { what: 'the widget to notice the cut' });
    const shown = await page.locator('[data-chat-widget] .conn').textContent();
    assert.match(shown, /Reconnecting|Connecting/);

    // Send while disconnected: shown at once, waiting.
    await send(page, 'while down 1');
    await send(page, 'while down 2');
    const waiting = await readMessages(page);
    assert.deepEqual(waiting.slice(2).map((m) => [m.text, m.status, m.seq]), [
      ['while down 1', 'queued', null],
      ['while down 2', 'queued', null],
    ]);

    // The server comes back on the same port and data; another device posts a message before
    // the widget reconnects, which the widget must catch up on.
    const second = await server({ dataDir: first.dataDir, addr: `127.0.0.1:${first.port}` });
    const session = await page.evaluate(() => {
      const key = Object.keys(localStorage).find((k) => k.startsWith('chat-session:') && !k.endsWith(':pending'));
      return JSON.parse(localStorage.getItem(key));
    });
    const res = await fetch(`${second.url}/sessions/${session.sessionId}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${session.token}` },
      body: JSON.stringify({ content: 'from another device', clientMessageId: 'other-device-1' }),
    });
    assert.equal(res.status, 202);

    await connected(page);
    await send(page, 'after the reconnect');
    const ms = await settled(page, 10);
    assertExactlyOnceInOrder(ms);
    const users = ms.filter((m) => m.role === 'user').map((m) => m.text);
    assert.deepEqual(users.slice(0, 1), ['before the cut']);
    // The two offline sends keep their order; the other device's message may land around them.
    const offline = users.filter((t) => t.startsWith('while down'));
    assert.deepEqual(offline, ['while down 1', 'while down 2']);
    assert.equal(users.filter((t) => t === 'from another device').length, 1);
    assert.equal(users.at(-1), 'after the reconnect');
    for (const u of users) assert.equal(ms.filter((m) => m.text === `You said: ${u}`).length, 1, `one reply to ${u}`);

    // The server holds each message once too.
    const page1 = await (await fetch(`${second.url}/sessions/${session.sessionId}/messages?after=0&limit=100`, {
      headers: { authorization: `Bearer ${session.token}` },
    })).json();
    assert.deepEqual(page1.messages.map((m) => m.content), ms.map((m) => m.text));

    // Reload: the history is there, once.
    await page.reload();
    await openWidget(page);
    const again = await settled(page, 10);
    assert.deepEqual(again.map((m) => m.id), ms.map((m) => m.id));
    assert.deepEqual(page.errors, []);
    await context.close();
    await second.stop();
  });

  test('a message no answer came for is marked failed with Retry; Retry sends its text again', async () => {
    // An n8n that accepts every message; it answers (signed, on the callback) only from the
    // second one on, so the first runs into the reply deadline.
    const secret = 'browser-test-webhook-secret';
    let calls = 0;
    const n8n = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', async () => {
        calls += 1;
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"accepted":true}');
        if (calls < 2) return;
        const d = JSON.parse(body);
        const reply = JSON.stringify({ sessionId: d.sessionId, replyTo: d.messageId, eventId: `e-${d.messageId}`, content: `Answer to: ${d.content}` });
        const ts = String(Math.floor(Date.now() / 1000));
        const { createHmac } = await import('node:crypto');
        const sig = 'sha256=' + createHmac('sha256', secret).update(`${ts}.`).update(reply).digest('hex');
        await fetch(d.callbackUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-chat-timestamp': ts, 'x-chat-signature': sig }, body: reply });
      });
    });
    await listen(n8n, '127.0.0.1');
    const srv = await server({ env: {
      CHAT_N8N_WEBHOOK_URL: `http://127.0.0.1:${n8n.address().port}/webhook/chat`,
      CHAT_WEBHOOK_SECRET: secret,
      CHAT_REPLY_TIMEOUT_MS: '1000',
    } });
    const context = await browser.newContext();
    const page = await newPage(context, srv.url);
    await openWidget(page);
    await connected(page);
    await send(page, 'Is anyone there?');
    const retry = page.locator('[data-chat-widget] li.msg[data-role=user] .retry');
    await retry.waitFor({ state: 'visible', timeout: 15_000 });
    let ms = await readMessages(page);
    assert.equal(ms[0].status, 'failed');
    assert.equal(ms[1].role, 'system', 'the user is told');
    await retry.click();
    ms = await waitFor(async () => {
      const all = await readMessages(page);
      return all.length === 4 && all[3].role === 'assistant' && all;
    }, { what: 'the resent message answered' });
    assert.deepEqual(ms.map((m) => [m.role, m.text]), [
      ['user', 'Is anyone there?'],
      ['system', ms[1].text],
      ['user', 'Is anyone there?'],
      ['assistant', 'Answer to: Is anyone there?'],
    ]);
    assert.equal(ms[2].status, 'answered');
    assert.equal(await retry.count(), 0, 'no Retry on a message already sent again');
    assert.deepEqual(page.errors, []);
    await context.close();
    await srv.stop();
    await new Promise((r) => n8n.close(r));
  });

  test('two tabs of one session both see a reply; the closed one shows an unread badge', async () => {
    const srv = await server();
    const context = await browser.newContext(); // shared localStorage: one session
    const tab1 = await newPage(context, srv.url);
    await openWidget(tab1);
    await connected(tab1);
    await send(tab1, 'first');
    await settled(tab1, 2);

    const tab2 = await newPage(context, srv.url);
    await openWidget(tab2);
    await connected(tab2);
    await settled(tab2, 2);
    assert.equal(await tab1.evaluate(() => window.__chatWidget.client.sessionId), await tab2.evaluate(() => window.__chatWidget.client.sessionId));

    await send(tab2, 'from tab 2');
    const t2 = await settled(tab2, 4);
    const t1 = await settled(tab1, 4);
    assert.deepEqual(t1.map((m) => m.id), t2.map((m) => m.id));
    assert.equal(t1[3].text, 'You said: from tab 2');

    // Close tab 1's panel; a reply that arrives now (to a message from another device) shows
    // up as unread on its button.
    await tab1.locator('[data-chat-widget] .close').click();
    await tab2.close();
    const session = await tab1.evaluate(() => JSON.parse(localStorage.getItem(Object.keys(localStorage).find((k) => k.startsWith('chat-session:') && !k.endsWith(':pending')))));
    await fetch(`${srv.url}/sessions/${session.sessionId}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${session.token}` },
      body: JSON.stringify({ content: 'from the API' }),
    });
    await waitFor(async () => (await tab1.locator('[data-chat-widget] .badge').textContent()) === '1', { what: 'the unread badge' });
    assert.match(await launcher(tab1).getAttribute('aria-label'), /1 unread/);
    await openWidget(tab1);
    await waitFor(async () => tab1.locator('[data-chat-widget] .badge').isHidden(), { what: 'the badge to clear' });
    assert.deepEqual(tab1.errors, []);
    await context.close();
    await srv.stop();
  });

  test('the page and embed.html work under their Content-Security-Policy, with no violation', async () => {
    const srv = await server();
    for (const [path, title] of [['/', 'Chat (chat-local)'], ['/embed.html', 'Support']]) {
      const res = await fetch(`${srv.url}${path}`);
      const csp = res.headers.get('content-security-policy') ?? '';
      assert.match(csp, /frame-ancestors 'none'/, `${path}: ${csp}`);
      assert.doesNotMatch(csp, /script-src[^;]*'unsafe-inline'/, `${path}: ${csp}`);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      const context = await browser.newContext();
      const page = await newPage(context, `${srv.url}${path}`);
      await openWidget(page);
      // The page's inline configuration script ran (allowed by its hash).
      assert.equal(await page.locator('[data-chat-widget] h2').textContent(), title);
      await connected(page);
      await send(page, `under the policy of ${path}`);
      const ms = await settled(page, 2);
      assert.equal(ms[1].text, `You said: under the policy of ${path}`);
      assert.deepEqual(await page.evaluate(() => window.__cspViolations), [], path);
      assert.deepEqual(page.errors, [], path);

      // The watch above can fail: an inline script the policy does not name is blocked and reported.
      await page.evaluate(() => {
        const s = document.createElement('script');
        s.textContent = 'window.__injected = true;';
        document.body.append(s);
      });
      await waitFor(() => page.evaluate(() => window.__cspViolations.length > 0), { what: 'the violation to be reported' });
      assert.equal(await page.evaluate(() => window.__injected), undefined, 'the injected script did not run');
      await context.close();
    }
    await srv.stop();
  });

  test('the one-line embed works on a page of another origin (CORS)', async () => {
    const srv = await server();
    const site = createServer((req, res) => {
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(`<!doctype html><meta charset="utf-8"><title>Some shop</title><h1>Some shop</h1>
<script>window.chatWidgetConfig = { title: 'Shop support' };</script>
<script type="module" src="${srv.url}/chat-widget.js"></script>`);
    });
    await listen(site, 'localhost');
    const origin = `http://localhost:${site.address().port}`;
    const context = await browser.newContext();
    // The modules the one line loads from the chat server: chat-widget.js imports
    // chat-client.js (which imports chat-logic.js) and chat-markdown.js. Each must be served,
    // with CORS.
    const modules = {};
    context.on('response', (r) => {
      if (r.url().startsWith(`${srv.url}/`) && r.url().endsWith('.js')) {
        modules[new URL(r.url()).pathname] = [r.status(), r.headers()['access-control-allow-origin']];
      }
    });
    const page = await newPage(context, origin);
    await waitFor(() => Object.keys(modules).length === 4, { what: 'the four modules to load' });
    assert.deepEqual(modules, {
      '/chat-widget.js': [200, '*'],
      '/chat-client.js': [200, '*'],
      '/chat-logic.js': [200, '*'],
      '/chat-markdown.js': [200, '*'],
    });
    await openWidget(page);
    assert.equal(await page.locator('[data-chat-widget] h2').textContent(), 'Shop support');
    await connected(page);
    await send(page, 'cross origin');
    const ms = await settled(page, 2);
    assert.equal(ms[1].text, 'You said: cross origin');
    assert.deepEqual(page.errors, []);
    await context.close();
    site.closeAllConnections();
    await new Promise((r) => site.close(r));
    await srv.stop();
  });

  test('screenshots of the open widget (desktop and 375 px phone)', async () => {
    const srv = await server();
    const out = ensureOutput();
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    const page = await newPage(context, srv.url);
    await openWidget(page);
    await connected(page);
    const lines = [
      'Hi! Can I book a table for two tonight?',
      '/clarification Which time suits you, 7 pm or 9 pm?',
      '/confirmation Table for two at 7 pm. Shall I book it?',
      '/error The booking system is not answering right now.',
    ];
    let n = 0;
    for (const l of lines) {
      await send(page, l);
      n += 2;
      await settled(page, n);
    }
    await page.screenshot({ path: join(out, 'widget.png') });
    const types = (await readMessages(page)).filter((m) => m.role !== 'user').map((m) => m.type);
    assert.deepEqual(types, ['text', 'clarification', 'confirmation', 'error']);
    // Colours differ by type (not just the label).
    const colours = await page.evaluate(() => {
      const root = document.querySelector('[data-chat-widget]').shadowRoot;
      return ['confirmation', 'error', 'text'].map((t) => getComputedStyle(root.querySelector(`li.t-${t}:not(.user) .bubble`)).backgroundColor);
    });
    assert.equal(new Set(colours).size, 3, `distinct colours: ${colours}`);

    // Phone width: the panel fills the screen and nothing overflows sideways.
    const phone = await newPage(context, srv.url, { viewport: { width: 375, height: 740 } });
    await openWidget(phone);
    await settled(phone, n);
    const box = await phone.locator('[data-chat-widget] .panel').boundingBox();
    assert.ok(box.width <= 375 && box.width >= 370, `panel width ${box.width}`);
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(overflow, false);
    await phone.screenshot({ path: join(out, 'widget-phone.png') });
    await context.close();
    await srv.stop();
  });

  test('a long history: the latest page first, earlier pages on demand', async () => {
    const srv = await server();
    const context = await browser.newContext();
    const page = await newPage(context, srv.url);
    await connected(page);
    const session = await page.evaluate(() => JSON.parse(localStorage.getItem(Object.keys(localStorage).find((k) => k.startsWith('chat-session:') && !k.endsWith(':pending')))));
    const auth = { authorization: `Bearer ${session.token}` };
    for (let i = 1; i <= 30; i++) {
      const r = await fetch(`${srv.url}/sessions/${session.sessionId}/messages`, {
        method: 'POST', headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ content: `history ${i}`, clientMessageId: `h-${i}` }),
      });
      assert.equal(r.status, 202);
    }
    await waitFor(async () => (await (await fetch(`${srv.url}/sessions/${session.sessionId}`, { headers: auth })).json()).session.lastSeq === 60, { what: '60 stored messages' });
    await page.reload();
    await openWidget(page);
    await waitFor(async () => (await readMessages(page)).length === 50, { what: 'the latest 50' });
    const latest = await readMessages(page);
    assert.equal(latest[0].seq, 11);
    const older = page.locator('[data-chat-widget] .older');
    await older.click();
    const all = await settled(page, 60);
    assertExactlyOnceInOrder(all);
    await older.waitFor({ state: 'hidden', timeout: 5000 });
    await context.close();
    await srv.stop();
  });

  test('the widget really uses the fast test backoff', async () => {
    const srv = await server();
    const context = await browser.newContext();
    const page = await newPage(context, srv.url);
    assert.equal(await page.evaluate(() => window.__chatWidget.client.options.backoffMaxMs), 1500);
    await context.close();
    await srv.stop();
  });
});

describe('ChatClient in Chromium', () => {
  /** A page on the server's origin with ChatClient loaded as window.ChatClient. */
  async function clientPage(context, srv) {
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.errors = errors;
    await page.goto(`${srv.url}/health`);
    await page.evaluate(async () => {
      window.ChatClient = (await import('/chat-client.js')).ChatClient;
    });
    return page;
  }

  test('keepalive pings, and a proactive reconnect before the age limit loses and doubles nothing', async () => {
    const srv = await server();
    const context = await browser.newContext();
    const page = await clientPage(context, srv);
    const frames = { pings: 0, pongs: 0, sockets: 0 };
    page.on('websocket', (ws) => {
      frames.sockets++;
      ws.on('framesent', ({ payload }) => { if (String(payload).includes('"ping"')) frames.pings++; });
      ws.on('framereceived', ({ payload }) => { if (String(payload).includes('"pong"')) frames.pongs++; });
    });
    await page.evaluate(async () => {
      const c = new window.ChatClient({ pingIntervalMs: 300, maxConnectionAgeMs: 1500 });
      window.client = c;
      window.states = [];
      c.on('connection', ({ state }) => window.states.push(state));
      await c.start();
    });
    const sendAndWait = async (text, n) => {
      await page.evaluate((t) => window.client.send(t), text);
      return waitFor(() => page.evaluate((k) => {
        const ms = window.client.messages;
        return ms.length === k && ms.every((m) => m.status !== 'sending' && m.status !== 'queued' && !m.pending) && ms;
      }, n), { what: `${n} messages` });
    };
    await sendAndWait('one', 2);
    await waitFor(() => frames.sockets >= 2, { what: 'a proactive reconnect', timeoutMs: 10_000 });
    await sendAndWait('two', 4);
    await waitFor(() => frames.sockets >= 3, { what: 'a second proactive reconnect', timeoutMs: 10_000 });
    const ms = await sendAndWait('three', 6);
    assert.deepEqual(ms.map((m) => m.seq), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(ms.map((m) => m.content), ['one', 'You said: one', 'two', 'You said: two', 'three', 'You said: three']);
    assert.ok(frames.pings >= 2 && frames.pongs >= 2, `pings ${frames.pings}, pongs ${frames.pongs}`);
    const states = await page.evaluate(() => window.states);
    assert.deepEqual([...new Set(states)], ['connecting', 'open'], `make before break: never reconnecting (${states})`);
    await page.evaluate(() => window.client.stop());
    assert.deepEqual(page.errors, []);
    await context.close();
    await srv.stop();
  });

  test('a stored session the server rejects (401) is replaced by a fresh one', async () => {
    const srv = await server();
    const context = await browser.newContext();
    const page = await clientPage(context, srv);
    const result = await page.evaluate(async () => {
      const key = `chat-session:${location.origin}`;
      localStorage.setItem(key, JSON.stringify({
        sessionId: '01J00000000000000000000000', token: 'forged.token.value',
        expiresAt: new Date(Date.now() + 3600_000).toISOString(),
        websocketUrl: `ws://${location.host}/ws`,
      }));
      const c = new window.ChatClient();
      const sessions = [];
      c.on('session', (s) => sessions.push(s));
      await c.start();
      c.stop();
      return { sessions, stored: JSON.parse(localStorage.getItem(key)) };
    });
    assert.equal(result.sessions.at(-1).isNew, true);
    assert.notEqual(result.stored.sessionId, '01J00000000000000000000000');
    assert.equal(result.stored.sessionId, result.sessions.at(-1).sessionId);
    assert.deepEqual(page.errors, []);
    await context.close();
    await srv.stop();
  });
});
