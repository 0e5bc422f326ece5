// Browser tests of streamed replies, Markdown and suggested replies in headless Chromium.
// These run the widget against the contract server of the tests (contract-server.mjs: the
// contract's routes and WebSocket, in memory, on 127.0.0.1), whose replies each test scripts
// delta by delta; the widget on chat-local with a real n8n streaming is in
// tests/n8n/answers.test.mjs.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startContractServer } from './contract-server.mjs';
import {
  launchBrowser, readMessages, waitFor, ensureOutput, newPage, openWidget, connected, send,
} from './support.mjs';
import { MARKDOWN_ELEMENTS, MARKDOWN_ATTRIBUTES, LINK_PROTOCOLS } from '../../web/chat-markdown.js';

let browser;
const servers = [];

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const s of servers) await s.close();
});

/** A contract server whose replies the test scripts: `replies` collects each reply handle. */
async function contract(script = (m, reply, replies) => replies.push(reply)) {
  const replies = [];
  const srv = await startContractServer({ onUserMessage: (m, reply) => script(m, reply, replies) });
  servers.push(srv);
  return { srv, replies };
}

/** Counts the ChatClient's `delta` events in the page (window.__deltas). */
async function countDeltas(page) {
  await page.evaluate(() => {
    window.__deltas = 0;
    window.__chatWidget.client.on('delta', () => { window.__deltas += 1; });
  });
}

const deltasSeen = (page, n) => waitFor(() => page.evaluate((k) => window.__deltas >= k, n), { what: `${n} deltas` });

/** What a reply's row looks like now: position, size, caret, what screen readers may see. */
function row(page, id) {
  return page.evaluate((messageId) => {
    const root = document.querySelector('[data-chat-widget]').shadowRoot;
    const li = root.querySelector(`li.msg[data-id="${messageId}"]`);
    if (!li) return null;
    const log = root.querySelector('.log');
    return {
      top: li.offsetTop,
      bubbleHeight: li.querySelector('.bubble').getBoundingClientRect().height,
      streaming: li.dataset.streaming === 'true',
      caret: li.querySelector('.caret') !== null,
      ariaHidden: li.getAttribute('aria-hidden'),
      text: li.querySelector('.text').textContent,
      note: li.querySelector('.note')?.textContent ?? null,
      suggestions: [...li.querySelectorAll('.suggestion')].map((b) => b.textContent),
      atBottom: log.scrollHeight - log.scrollTop - log.clientHeight <= 1,
      scrollTop: log.scrollTop,
    };
  }, id);
}

/**
 * Records what the message log's live region would announce (role=log, aria-relevant=
 * additions): the text of each node added to it, unless it is inside an aria-hidden subtree.
 */
async function recordAnnouncements(page) {
  await page.evaluate(() => {
    const log = document.querySelector('[data-chat-widget]').shadowRoot.querySelector('[role=log]');
    window.__announced = [];
    const hidden = (node) => {
      for (let e = node.nodeType === 1 ? node : node.parentElement; e && e !== log; e = e.parentElement) {
        if (e.getAttribute('aria-hidden') === 'true') return true;
      }
      return false;
    };
    new MutationObserver((records) => {
      for (const r of records) {
        for (const n of r.addedNodes) {
          const text = (n.textContent ?? '').trim();
          if (text && !hidden(n)) window.__announced.push(text);
        }
      }
    }).observe(log, { childList: true, subtree: true });
  });
}

/** Every element inside a reply's Markdown that the renderer does not allow (none expected). */
function disallowedIn(page, id, { caretAllowed }) {
  return page.evaluate(({ messageId, elements, attributes, protocols, caret }) => {
    const li = document.querySelector('[data-chat-widget]').shadowRoot.querySelector(`li.msg[data-id="${messageId}"]`);
    const bad = [];
    for (const el of li.querySelector('.md').querySelectorAll('*')) {
      const tag = el.tagName.toLowerCase();
      if (caret && tag === 'span' && el.className === 'caret' && el.children.length === 0) continue;
      if (!elements.includes(tag)) bad.push(`<${tag}>`);
      for (const a of el.getAttributeNames()) if (!(attributes[tag] ?? []).includes(a)) bad.push(`<${tag} ${a}>`);
      if (tag === 'a') {
        if (!protocols.includes(new URL(el.getAttribute('href')).protocol)) bad.push(`href ${el.getAttribute('href')}`);
        if (el.target !== '_blank' || el.rel !== 'noopener noreferrer') bad.push(`a target=${el.target} rel=${el.rel}`);
      }
    }
    return bad;
  }, { messageId: id, elements: MARKDOWN_ELEMENTS, attributes: MARKDOWN_ATTRIBUTES, protocols: LINK_PROTOCOLS, caret: caretAllowed });
}

const ANSWER = [
  'To reset your password:\n\n1. Open **Sett',
  'ings**\n2. Choose *Security*\n',
  '3. Click `Reset`\n\nSee [the guide](https://exa',
  'mple.com/reset) or run:\n\n```sh\nchat reset --user me\n',
  '```\n\nAnything else?',
];

describe('streamed replies in Chromium', () => {
  test('a streamed reply grows in place with a caret, the stored reply replaces it, screen readers hear it once; suggestions send their text', async () => {
    const { srv, replies } = await contract((m, reply, replies) => {
      if (m.content.startsWith('filler')) reply.finish(`Answer to ${m.content}`);
      else replies.push(reply);
    });
    const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
    const page = await newPage(context, srv.url);
    await openWidget(page);
    await connected(page);
    // Enough history that the log scrolls.
    for (let i = 1; i <= 4; i++) await send(page, `filler ${i}`);
    await waitFor(async () => (await readMessages(page)).length === 8, { what: '8 messages' });
    await countDeltas(page);
    await recordAnnouncements(page);

    await send(page, 'How do I reset my password?');
    const reply = await waitFor(() => replies[0], { what: 'the message at the server' });
    await page.locator('[data-chat-widget] .typing').waitFor({ state: 'visible', timeout: 5000 });
    const states = [];
    for (const [k, chunk] of ANSWER.entries()) {
      reply.delta(chunk);
      await deltasSeen(page, k + 1);
      states.push(await row(page, reply.id));
      if (k === 0) {
        assert.equal(await page.locator('[data-chat-widget] .typing').isHidden(), true, 'the reply replaces the typing indicator');
        const tree = await page.locator('[data-chat-widget] [role=log]').ariaSnapshot();
        assert.doesNotMatch(tree, /reset your password/, 'the text being written is not in the accessibility tree');
      }
    }
    for (const s of states) {
      assert.equal(s.streaming, true);
      assert.equal(s.caret, true, 'a caret while writing');
      assert.equal(s.ariaHidden, 'true', 'hidden from screen readers while writing');
      assert.equal(s.top, states[0].top, `the row stays where it began: ${states.map((x) => x.top)}`);
      assert.equal(s.atBottom, true, 'the view follows the reply');
    }
    for (let k = 1; k < states.length; k++) {
      assert.ok(states[k].bubbleHeight >= states[k - 1].bubbleHeight, `the row only grows: ${states.map((x) => x.bubbleHeight)}`);
    }
    assert.match(states.at(-1).text, /Anything else\?$/);

    // The stored reply: the same text, whole. It replaces the streamed row in place.
    reply.finish(ANSWER.join(''), { data: { suggestions: ['Thanks, that worked', 'Talk to a person'] } });
    const done = await waitFor(async () => {
      const s = await row(page, reply.id);
      return s && !s.streaming && s;
    }, { what: 'the stored reply' });
    assert.equal(done.top, states[0].top, 'no jump when the stored reply replaces the stream');
    assert.ok(Math.abs(done.bubbleHeight - states.at(-1).bubbleHeight) <= 1, `same size: ${done.bubbleHeight} vs ${states.at(-1).bubbleHeight}`);
    assert.equal(done.caret, false);
    assert.equal(done.ariaHidden, null);
    assert.equal(done.atBottom, true);
    assert.match(await page.locator('[data-chat-widget] [role=log]').ariaSnapshot(), /Anything else\?/);

    // Announced once, whole: never a partial text.
    const announced = (await page.evaluate(() => window.__announced)).filter((t) => t.includes('reset your password'));
    assert.equal(announced.length, 1, JSON.stringify(announced));
    assert.match(announced[0], /Anything else\?/);

    // The Markdown, rendered.
    const md = page.locator(`[data-chat-widget] li.msg[data-id="${reply.id}"] .md`);
    assert.equal(await md.locator('ol > li').count(), 3);
    assert.equal(await md.locator('strong').textContent(), 'Settings');
    assert.equal(await md.locator('em').textContent(), 'Security');
    assert.equal(await md.locator('li code').textContent(), 'Reset');
    assert.equal(await md.locator('pre > code').textContent(), 'chat reset --user me');
    const link = md.locator('a');
    assert.deepEqual([await link.textContent(), await link.getAttribute('href'), await link.getAttribute('target'), await link.getAttribute('rel')],
      ['the guide', 'https://example.com/reset', '_blank', 'noopener noreferrer']);
    assert.match(await md.locator('p').last().textContent(), /^Anything else\?$/);
    assert.deepEqual(await disallowedIn(page, reply.id, { caretAllowed: false }), []);

    // Suggested replies: buttons on the newest reply; one click sends its text.
    assert.deepEqual(done.suggestions, ['Thanks, that worked', 'Talk to a person']);
    await page.locator('[data-chat-widget] .suggestion', { hasText: 'Talk to a person' }).click();
    await waitFor(() => srv.framesIn.some(([, f]) => f.action === 'sendMessage' && f.content === 'Talk to a person'), { what: 'the suggestion sent' });
    const ms = await readMessages(page);
    assert.deepEqual([ms.at(-1).role, ms.at(-1).text], ['user', 'Talk to a person']);
    assert.equal(await page.locator('[data-chat-widget] .suggestion').count(), 0, 'no suggestions once the user answered');

    // A reply streamed while the reader has scrolled up does not pull the view down; its
    // suggestions show on it, the newest reply, only.
    const second = await waitFor(() => replies[1], { what: 'the second message at the server' });
    await page.evaluate(() => { document.querySelector('[data-chat-widget]').shadowRoot.querySelector('.log').scrollTop = 0; });
    second.delta('A person will ');
    await deltasSeen(page, ANSWER.length + 1);
    second.delta('join you **shortly**.');
    await deltasSeen(page, ANSWER.length + 2);
    assert.equal((await row(page, second.id)).scrollTop, 0, 'the reader keeps their place');
    second.finish('A person will join you **shortly**.', { data: { suggestions: ['OK'] } });
    await waitFor(async () => (await row(page, second.id))?.suggestions.length === 1, { what: 'the new suggestions' });
    assert.deepEqual((await row(page, reply.id)).suggestions, []);
    assert.equal(await page.locator('[data-chat-widget] .suggestion').count(), 1);
    assert.deepEqual(page.errors, []);
    await context.close();
  });

  test('a reconnect mid-stream: a reply stored meanwhile replaces its row; a stream that never finishes is cleared, and its reply comes whole', async () => {
    const { srv, replies } = await contract();
    const context = await browser.newContext();
    const page = await newPage(context, srv.url);
    await openWidget(page);
    await connected(page);
    await countDeltas(page);

    await send(page, 'First question');
    const a = await waitFor(() => replies[0], { what: 'the first message' });
    a.delta('The answer is ');
    a.delta('coming');
    await deltasSeen(page, 2);
    await page.evaluate((id) => {
      document.querySelector('[data-chat-widget]').shadowRoot.querySelector(`li.msg[data-id="${id}"]`).__mark = 'the streamed row';
    }, a.id);
    // The connection breaks; the stream breaks too, and the server stores what came, marked.
    srv.cut({ refuse: true });
    await waitFor(() => page.evaluate(() => window.__chatWidget.client.connectionState !== 'open'), { what: 'the widget to notice' });
    a.finish('The answer is coming', { data: { incomplete: true } });
    srv.accept();
    await connected(page);
    const aRow = await waitFor(async () => {
      const s = await row(page, a.id);
      return s && !s.streaming && s;
    }, { what: 'the stored reply after the reconnect' });
    assert.equal(aRow.text, 'The answer is coming');
    assert.match(aRow.note, /cut off/);
    assert.equal(await page.evaluate((id) => document.querySelector('[data-chat-widget]').shadowRoot.querySelector(`li.msg[data-id="${id}"]`).__mark, a.id),
      'the streamed row', 'the same row, replaced in place');

    await send(page, 'Second question');
    const b = await waitFor(() => replies[1], { what: 'the second message' });
    b.delta('Half of it');
    await deltasSeen(page, 3);
    assert.equal((await row(page, b.id)).streaming, true);
    srv.cut({ refuse: true });
    await waitFor(() => page.evaluate(() => window.__chatWidget.client.connectionState !== 'open'), { what: 'the widget to notice' });
    srv.accept();
    await connected(page);
    await waitFor(async () => (await row(page, b.id)) === null, { what: 'the unfinished stream to be cleared' });
    b.delta(' and the rest'); // its later deltas bring no half reply back
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await row(page, b.id), null);
    b.finish('Half of it and the rest, stored.');
    const bRow = await waitFor(() => row(page, b.id), { what: 'the whole reply' });
    assert.deepEqual([bRow.streaming, bRow.text], [false, 'Half of it and the rest, stored.']);
    const ms = await readMessages(page);
    assert.deepEqual(ms.map((m) => m.seq), [1, 2, 3, 4]);
    assert.deepEqual(page.errors, []);
    await context.close();
  });

  test('hostile Markdown in a streamed reply: no element or attribute beyond those allowed, no script runs, nothing loads', async () => {
    const { srv, replies } = await contract();
    const context = await browser.newContext();
    const page = await newPage(context, srv.url);
    const dialogs = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      d.dismiss().catch(() => {});
    });
    const foreign = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(srv.url) && !r.url().startsWith('ws://127.0.0.1')) foreign.push(r.url());
    });
    await openWidget(page);
    await connected(page);
    await countDeltas(page);
    // The detector works on this page (no CSP here): markup built from a string runs handlers.
    await page.evaluate(() => {
      window.__xss = [];
      document.createElement('div').innerHTML = '<img src="x" onerror="window.__xss.push(\'control\')">';
    });
    await waitFor(() => page.evaluate(() => window.__xss.includes('control')), { what: 'the control payload to run' });
    await page.evaluate(() => { window.__xss = []; });

    const hostile = [
      '<script>window.__xss.push("script")</script>',
      '<img src="https://evil.test/img.png" onerror="window.__xss.push(\'img\')">',
      '<svg onload="window.__xss.push(\'svg\')"><a href="javascript:window.__xss.push(\'svg-a\')">x</a></svg>',
      '<iframe srcdoc="<script>parent.__xss.push(\'iframe\')</script>"></iframe>',
      '<details open ontoggle="window.__xss.push(\'details\')">x</details>',
      '[click](javascript:window.__xss.push("link"))',
      '[click](JaVaScRiPt:window.__xss.push("case"))',
      '[click](jav&#x61;script:window.__xss.push("entity"))',
      '[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
      '<javascript:window.__xss.push("autolink")>',
      '![pixel](https://evil.test/pixel.png)',
      '![x](javascript:window.__xss.push("image"))',
      '&lt;img src=x onerror=window.__xss.push("decoded")&gt;',
      '**<b onclick="window.__xss.push(\'b\')">bold</b>** _<i>unclosed',
      '| <img src=x onerror=window.__xss.push("cell")> | [x](javascript:1) |\n|---|---|\n| `<script>` | <style>*{display:none}</style> |',
      '> <a href="javascript:window.__xss.push(\'quote\')">q</a>\n> - [[[nested](https://ok.test/)',
      '```html\n<script>window.__xss.push("code")</script>\n```',
      '[ok](https://ok.test/"onmouseover="window.__xss.push(\'attr\'))',
    ].join('\n\n');
    await send(page, 'Show me something nasty');
    const reply = await waitFor(() => replies[0], { what: 'the message' });
    // Streamed in small pieces, so that half-written markup is rendered along the way.
    const pieces = hostile.match(/[\s\S]{1,37}/g);
    for (const [k, piece] of pieces.entries()) {
      reply.delta(piece);
      if (k % 5 === 4 || k === pieces.length - 1) {
        await deltasSeen(page, k + 1);
        assert.deepEqual(await disallowedIn(page, reply.id, { caretAllowed: true }), [], `after ${k + 1} pieces`);
      }
    }
    reply.finish(hostile);
    await waitFor(async () => (await row(page, reply.id))?.streaming === false, { what: 'the stored reply' });
    assert.deepEqual(await disallowedIn(page, reply.id, { caretAllowed: false }), []);
    // Point at and focus everything in the reply, as a user would, and let any handler run.
    await page.evaluate((id) => {
      const li = document.querySelector('[data-chat-widget]').shadowRoot.querySelector(`li.msg[data-id="${id}"]`);
      for (const el of li.querySelectorAll('*')) {
        for (const type of ['mouseover', 'mouseenter', 'focus']) el.dispatchEvent(new Event(type));
      }
    }, reply.id);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await page.evaluate(() => window.__xss), [], 'no script ran');
    assert.deepEqual(dialogs, []);
    assert.deepEqual(foreign, [], 'nothing was loaded from elsewhere');
    // What was hostile markup is there to read, as text.
    const text = (await row(page, reply.id)).text;
    for (const shown of ['<script>window.__xss.push("script")</script>', '[click](javascript:window.__xss.push("link"))', '<img src=x onerror=window.__xss.push("decoded")>']) {
      assert.ok(text.includes(shown), `shown as text: ${shown}`);
    }
    assert.deepEqual(page.errors, []);
    await context.close();
  });

  test('screenshots of a streamed Markdown reply (desktop and 375 px phone), while it is written and once stored', async () => {
    const { srv, replies } = await contract();
    const out = ensureOutput();
    const context = await browser.newContext();
    const desktop = await newPage(context, srv.url, { viewport: { width: 1100, height: 900 } });
    await openWidget(desktop);
    await connected(desktop);
    await send(desktop, 'Which plan fits a team of five?');
    const reply = await waitFor(() => replies[0], { what: 'the message' });
    const phone = await newPage(context, srv.url, { viewport: { width: 375, height: 740 } });
    await openWidget(phone);
    await connected(phone);
    await countDeltas(desktop);
    await countDeltas(phone);
    const answer = [
      '### Plans for a team of five\n\n',
      'For **five people**, *Team* is usually the best fit:\n\n',
      '| Plan | Seats | Price |\n|---|---|---|\n| Basic | 1 | $5 |\n| Team | 10 | $25 |\n\n',
      '- Shared inbox and `@mentions`\n- Priority support\n  - replies within 4 h\n',
      '\nTo switch, run:\n\n```sh\nchat plan set team --seats 5\n```\n\n',
      'Details on [the pricing page](https://example.com/pricing).',
    ];
    for (const [k, chunk] of answer.entries()) {
      reply.delta(chunk);
      await deltasSeen(desktop, k + 1);
      await deltasSeen(phone, k + 1);
      if (k === 3) {
        // (Animations stopped: the caret blinks, and would be caught half the time.)
        await desktop.screenshot({ path: join(out, 'stream.png'), animations: 'disabled' });
        await phone.screenshot({ path: join(out, 'stream-phone.png'), animations: 'disabled' });
      }
    }
    reply.finish(answer.join(''), { data: { suggestions: ['Switch to Team', 'Compare all plans'] } });
    for (const page of [desktop, phone]) {
      await waitFor(async () => (await row(page, reply.id))?.suggestions.length === 2, { what: 'the stored reply' });
    }
    await desktop.screenshot({ path: join(out, 'stream-final.png') });
    await phone.screenshot({ path: join(out, 'stream-final-phone.png') });
    // On the phone the reply fits the screen: wide tables and code scroll inside it.
    const fits = await phone.evaluate((id) => {
      const li = document.querySelector('[data-chat-widget]').shadowRoot.querySelector(`li.msg[data-id="${id}"]`);
      return document.documentElement.scrollWidth <= window.innerWidth && li.getBoundingClientRect().right <= window.innerWidth;
    }, reply.id);
    assert.equal(fits, true);
    assert.deepEqual(desktop.errors, []);
    assert.deepEqual(phone.errors, []);
    await context.close();
  });
});
