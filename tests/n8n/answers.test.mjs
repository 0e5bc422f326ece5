// n8n workflows as people build them, on one real n8n 2.8.4 (started once for this file):
// - a Webhook node answering "when last node finishes" with the last node's output;
// - n8n's Chat Trigger answering whole (response mode "last node");
// - the shipped AI-agent workflow (infra/n8n/ai-agent-workflow.json: Chat Trigger with Basic
//   auth, AI Agent, OpenAI Chat Model, streaming on), its model credential pointing at a small
//   OpenAI-compatible server of this test on 127.0.0.1 (model-server.mjs) that streams a known
//   answer token by token;
// - and the signed callback workflow (infra/n8n/chat-workflow.json), for the Lambda handlers.
// Driven three ways:
// - the real chat-local binary over its WebSocket (the `ws` package of the lockfile): each
//   answer stored and pushed; for the stream, the deltas arrive in order and coalesced, a
//   client that connects mid-stream gets the whole reply, and the stored reply equals the
//   streamed text; without the auth header n8n refuses the dispatch;
// - the Lambda handlers on the emulator instead of chat-local: the Rust test
//   crates/chat-aws/tests/real_n8n.rs (built by tests/n8n/run, passed here as
//   CHAT_AWS_REAL_N8N_TEST), given these n8n URLs in CHAT_TEST_N8N_*;
// - the chat widget in headless Chromium (tests/browser's playwright-core and helpers) on
//   chat-local's own page, the AI agent's answer streaming into it, then rendered as Markdown.
// Prints the time to the first visible text and to the whole reply, the delta frames, and on
// AWS the PostToConnection calls.
// Run: tests/n8n/run.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

import { connected, launchBrowser, newPage, openWidget, send } from '../browser/support.mjs';
import { ANSWER, TOKENS, fakeOpenAi } from './model-server.mjs';
import { WORKFLOW as SIGNED_WORKFLOW, startChatLocal, startN8n, waitFor } from './real-n8n.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const SECRET = `answers test secret ${process.pid}`;
const AGENT_WORKFLOW = path.join(root, 'infra', 'n8n', 'ai-agent-workflow.json');
const WEBHOOK_WORKFLOW = path.join(here, 'workflows', 'webhook-last-node.json');
const CHAT_TRIGGER_WORKFLOW = path.join(here, 'workflows', 'chat-trigger-whole.json');
const BASIC = { user: 'chat-backend', password: `basic-pw-${process.pid}` };
const AUTH_HEADER = `Authorization: Basic ${Buffer.from(`${BASIC.user}:${BASIC.password}`).toString('base64')}`;
// Where each workflow listens on n8n (their webhook paths and ids).
const urls = (base) => ({
  webhookNode: `${base}/webhook/last-node`,
  chatTrigger: `${base}/webhook/2a2b3c4d-0000-4000-8000-0000000000a1/chat`,
  agent: `${base}/webhook/6f3a1c2e-8b4d-4e5f-9a0b-1c2d3e4f5a6b/chat`,
  signed: `${base}/webhook/chat`,
});

/** A WebSocket client of chat-local: every frame parsed, with its arrival time. */
async function openSocket(chat, sessionId, token) {
  const ws = new WebSocket(`${chat.wsUrl}?sessionId=${sessionId}&token=${encodeURIComponent(token)}`);
  const frames = [];
  ws.on('message', (data) => frames.push({ at: performance.now(), frame: JSON.parse(data.toString('utf8')) }));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return {
    frames,
    send: (o) => ws.send(JSON.stringify(o)),
    until: (what, ms, pred) => waitFor(what, ms, () => frames.find((f) => pred(f.frame))),
    close: () => ws.close(),
  };
}

/** A session (with `metadata`), a socket on it, and `text` sent over it; the reply awaited. */
async function askOverWebSocket(chat, text, metadata) {
  const s = await chat.call('POST', '/sessions', null, metadata ? { metadata } : {});
  assert.equal(s.status, 201, JSON.stringify(s.json));
  const { sessionId, token } = s.json;
  const socket = await openSocket(chat, sessionId, token);
  const sentAt = performance.now();
  socket.send({ action: 'sendMessage', content: text, clientMessageId: `c-${Date.now()}` });
  return { sessionId, token, socket, sentAt };
}

const isReply = (f) => f.event === 'message' && f.message.role === 'assistant';

let openai;
let n8n;
before(async () => {
  openai = await fakeOpenAi();
  n8n = await startN8n({
    secret: SECRET,
    workflowPaths: [AGENT_WORKFLOW, WEBHOOK_WORKFLOW, CHAT_TRIGGER_WORKFLOW, SIGNED_WORKFLOW],
    credentials: [
      { id: 'ChatBackendOpenAi', name: 'OpenAI-compatible API', type: 'openAiApi', data: { apiKey: 'sk-test', url: openai.url } },
      { id: 'ChatBackendBasicAuth', name: 'Chat backend (Basic auth)', type: 'httpBasicAuth', data: BASIC },
    ],
  });
}, { timeout: 300_000 });
after(async () => {
  await n8n?.stop();
  await openai?.close();
});

describe('stock n8n workflows answering in the response, on a real n8n 2.8.4', () => {
  test('a Webhook node answering with the last node\'s output', { timeout: 120_000 }, async () => {
    const chat = await startChatLocal({ n8nWebhookUrl: urls(n8n.baseUrl).webhookNode, secret: SECRET });
    try {
      const { sessionId, token, socket } = await askOverWebSocket(chat, 'What does it cost?', { page: '/pricing' });
      const reply = await socket.until('the reply pushed', 60_000, isReply).catch((e) => {
        throw new Error(`${e.message}\n--- chat-local log:\n${chat.log()}`);
      });
      assert.equal(reply.frame.message.content, 'Webhook node says: What does it cost? (page /pricing)');
      const page = await chat.call('GET', `/sessions/${sessionId}/messages?after=0`, token);
      const [user, stored] = page.json.messages;
      assert.equal(user.status, 'answered');
      assert.equal(stored.id, reply.frame.message.id);
      assert.equal(stored.replyTo, user.id);
      socket.close();
    } finally {
      await chat.stop();
    }
  });

  test('n8n\'s Chat Trigger answering whole', { timeout: 120_000 }, async () => {
    const url = urls(n8n.baseUrl).chatTrigger;
    const chat = await startChatLocal({ n8nWebhookUrl: url, secret: SECRET });
    try {
      const { sessionId, token, socket } = await askOverWebSocket(chat, 'Grüezi 👋');
      const reply = await socket.until('the reply pushed', 60_000, isReply).catch((e) => {
        throw new Error(`${e.message}\n--- chat-local log:\n${chat.log()}`);
      });
      assert.equal(reply.frame.message.content, 'Chat Trigger says: Grüezi 👋');
      const page = await chat.call('GET', `/sessions/${sessionId}/messages?after=0`, token);
      assert.deepEqual(page.json.messages.map((m) => [m.role, m.status]), [['user', 'answered'], ['assistant', 'delivered']]);
      socket.close();
    } finally {
      await chat.stop();
    }
  });

  test('the shipped AI-agent workflow streams its answer as coalesced deltas', { timeout: 120_000 }, async () => {
    const url = urls(n8n.baseUrl).agent;
    const chat = await startChatLocal({ n8nWebhookUrl: url, secret: SECRET, env: { CHAT_N8N_AUTH_HEADER: AUTH_HEADER } });
    try {
      const question = 'Can you explain the plan?';
      const { sessionId, token, socket, sentAt } = await askOverWebSocket(chat, question);
      const first = await socket.until('the first delta', 60_000, (f) => f.event === 'delta').catch((e) => {
        throw new Error(`${e.message}\n--- chat-local log:\n${chat.log()}`);
      });
      // A second client connects mid-stream: it gets the whole reply once it is done.
      const late = await openSocket(chat, sessionId, token);
      const reply = await socket.until('the stored reply pushed', 60_000, isReply);
      const deltas = socket.frames.filter((f) => f.frame.event === 'delta');
      const streamed = deltas.map((d) => d.frame.text).join('');
      // In order; what was written after the last delta comes with the stored reply itself.
      assert.ok(streamed.length > 0 && ANSWER.startsWith(streamed), `the deltas carry the answer in order: ${JSON.stringify(streamed)}`);
      deltas.forEach((d, i) => {
        assert.equal(d.frame.index, i);
        assert.equal(d.frame.messageId, reply.frame.message.id);
        assert.equal(d.frame.replyTo, reply.frame.message.replyTo);
      });
      assert.ok(reply.at >= deltas.at(-1).at, 'the message comes after the last delta');
      assert.equal(reply.frame.message.content, ANSWER);
      // Coalesced: far fewer frames than tokens (at most one per 100 ms of writing).
      assert.ok(deltas.length >= 2 && deltas.length <= TOKENS.length / 2, `${deltas.length} deltas for ${TOKENS.length} tokens`);
      const lateReply = await late.until('the reply on the late socket', 30_000, isReply);
      assert.equal(lateReply.frame.message.content, ANSWER);
      const page = await chat.call('GET', `/sessions/${sessionId}/messages?after=0`, token);
      const stored = page.json.messages.find((m) => m.role === 'assistant');
      assert.equal(stored.content, ANSWER, 'the stored reply equals the streamed text');
      assert.equal(page.json.messages[0].status, 'answered');
      const asked = openai.requests.at(-1);
      assert.equal(asked.body.stream, true);
      assert.ok(JSON.stringify(asked.body.messages).includes(question), 'the user\'s text reached the model');
      console.log(
        `streamed answer on chat-local: first visible text after ${Math.round(first.at - sentAt)} ms, ` +
        `whole reply after ${Math.round(reply.at - sentAt)} ms, ${deltas.length} delta frames for ${TOKENS.length} model tokens`,
      );
      socket.close();
      late.close();
    } finally {
      await chat.stop();
    }
  });

  test('without CHAT_N8N_AUTH_HEADER the Basic-auth Chat Trigger refuses the dispatch', { timeout: 120_000 }, async () => {
    const url = urls(n8n.baseUrl).agent;
    const chat = await startChatLocal({ n8nWebhookUrl: url, secret: SECRET, env: { CHAT_DISPATCH_MAX_ATTEMPTS: '1' } });
    try {
      const before = openai.requests.length;
      const { socket } = await askOverWebSocket(chat, 'hello?');
      const notice = await socket.until('the failure notice', 60_000, (f) => f.event === 'message' && f.message.role === 'system');
      assert.equal(notice.frame.message.type, 'error');
      assert.equal(openai.requests.length, before, 'the model was never asked');
      assert.match(chat.log(), /n8n answered 403|n8n answered 401/);
      socket.close();
    } finally {
      await chat.stop();
    }
  });
});

/**
 * Runs `bin args` with `env` in its own process group, bounded by `ms` (then the group is
 * killed); resolves to {code, signal, output} (stdout and stderr interleaved).
 */
function runBounded(bin, args, env, ms) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    const timer = setTimeout(() => {
      output += `\n(killed after ${ms} ms)`;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }, ms);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output });
    });
  });
}

describe('the same workflows through the Lambda handlers on the emulator', () => {
  // crates/chat-aws/tests/real_n8n.rs: session, send (WebSocket frames), dispatch against this
  // n8n and the webhook function for the signed callback, on the moto emulator.
  const TESTS = [
    'a_webhook_node_answering_with_its_last_nodes_output',
    'a_chat_trigger_answering_whole',
    'the_signed_callback_workflow_answers_through_the_webhook_function',
    'the_shipped_ai_agent_workflow_streams_coalesced_deltas',
  ];
  test('session, send, dispatch and webhook handlers with the real n8n (crates/chat-aws/tests/real_n8n.rs)', { timeout: 300_000 }, async () => {
    const bin = process.env.CHAT_AWS_REAL_N8N_TEST;
    assert.ok(bin, 'CHAT_AWS_REAL_N8N_TEST (the built crates/chat-aws/tests/real_n8n.rs) is not set: run tests/n8n/run');
    const at = urls(n8n.baseUrl);
    const env = {
      ...process.env,
      CHAT_TEST_N8N_WEBHOOK_NODE_URL: at.webhookNode,
      CHAT_TEST_N8N_CHAT_TRIGGER_URL: at.chatTrigger,
      CHAT_TEST_N8N_AGENT_URL: at.agent,
      CHAT_TEST_N8N_SIGNED_URL: at.signed,
      CHAT_TEST_N8N_AUTH_HEADER: AUTH_HEADER,
      CHAT_TEST_N8N_SECRET: SECRET,
      CHAT_TEST_N8N_ANSWER: ANSWER,
      CHAT_TEST_N8N_TOKENS: String(TOKENS.length),
    };
    // One at a time, so that the streamed figures are not shared with the other tests.
    const { code, signal, output } = await runBounded(bin, ['--test-threads=1', '--show-output', '--exact', ...TESTS], env, 270_000);
    const figures = output.split('\n').filter((l) => l.startsWith('streamed answer through the Lambda handlers'));
    for (const line of figures) console.log(line);
    assert.equal(code, 0, `the Rust test failed (${signal ?? `exit ${code}`}):\n${output}`);
    for (const t of TESTS) assert.match(output, new RegExp(`^test ${t} \\.\\.\\. ok$`, 'm'), `${t} ran and passed`);
    assert.match(output, /test result: ok\. 4 passed; 0 failed/);
    assert.equal(figures.length, 1, 'the streamed figures printed');
  });
});

describe('the chat widget in Chromium, on chat-local, with the AI-agent workflow streaming', () => {
  test('the reply appears as it is written, then as Markdown; the stored history equals the streamed text', { timeout: 120_000 }, async () => {
    const chat = await startChatLocal({ n8nWebhookUrl: urls(n8n.baseUrl).agent, secret: SECRET, env: { CHAT_N8N_AUTH_HEADER: AUTH_HEADER } });
    const browser = await launchBrowser();
    try {
      const page = await newPage(await browser.newContext(), chat.baseUrl);
      await openWidget(page);
      await connected(page);
      // Every state the assistant's row goes through (seen by a MutationObserver, so no state
      // is missed between two polls), and the client's delta events.
      await page.evaluate(() => {
        const client = window.__chatWidget.client;
        window.__deltas = [];
        client.on('delta', (d) => window.__deltas.push(d.text));
        const root = document.querySelector('[data-chat-widget]').shadowRoot;
        window.__states = [];
        const note = () => {
          const li = root.querySelector('li.msg[data-role=assistant]');
          if (!li) return;
          const s = {
            at: performance.now(),
            streaming: li.dataset.streaming === 'true',
            caret: li.querySelector('.caret') !== null,
            ariaHidden: li.getAttribute('aria-hidden'),
            text: li.querySelector('.text').textContent,
          };
          const last = window.__states.at(-1);
          if (!last || last.text !== s.text || last.streaming !== s.streaming || last.caret !== s.caret) window.__states.push(s);
        };
        new MutationObserver(note).observe(root, { childList: true, subtree: true, characterData: true, attributes: true });
      });
      const sentAt = await page.evaluate(() => performance.now());
      await send(page, 'What is the plan?');
      const done = (states) => states.find((s) => !s.streaming && /Anything else\?/.test(s.text));
      await waitFor('the whole reply in the widget', 60_000, () => page.evaluate(() => window.__states).then(done)).catch((e) => {
        throw new Error(`${e.message}\n--- chat-local log:\n${chat.log()}`);
      });
      const states = await page.evaluate(() => window.__states);
      const final = done(states);
      // Progressively: a partial text with the writing caret, hidden from screen readers, before the whole text.
      const partial = states.find((s) => s.streaming && s.caret && s.text.trim().length > 0);
      assert.ok(partial, `a partial reply with a caret was shown: ${JSON.stringify(states)}`);
      assert.ok(partial.at < final.at);
      assert.ok(partial.text.length < final.text.length, `partial: ${JSON.stringify(partial.text)}`);
      assert.equal(partial.ariaHidden, 'true');
      assert.deepEqual([final.caret, final.ariaHidden], [false, null], 'no caret once stored; screen readers get it');
      // The final Markdown, rendered.
      const md = page.locator('[data-chat-widget] li.msg[data-role=assistant] .md');
      assert.equal(await md.locator('strong').textContent(), 'your');
      assert.deepEqual(await md.locator('ul > li').allTextContents(), ['first, the plan', 'then, the details']);
      assert.equal(await md.locator('em').textContent(), 'details');
      assert.doesNotMatch(final.text, /\*/, 'no raw Markdown');
      // The stored history equals the streamed text (the deltas, then the rest with the reply).
      const deltas = await page.evaluate(() => window.__deltas);
      const streamed = deltas.join('');
      assert.ok(deltas.length >= 1 && ANSWER.startsWith(streamed), `the deltas carry the answer in order: ${JSON.stringify(streamed)}`);
      const { sessionId, token } = await page.evaluate(() => JSON.parse(localStorage.getItem(`chat-session:${window.__chatWidget.client.baseUrl}`)));
      const history = await chat.call('GET', `/sessions/${sessionId}/messages?after=0`, token);
      const stored = history.json.messages.filter((m) => m.role === 'assistant');
      assert.deepEqual(stored.map((m) => m.content), [ANSWER]);
      const held = await page.evaluate(() => window.__chatWidget.client.messages.filter((m) => m.role === 'assistant').map((m) => m.content));
      assert.deepEqual(held, [ANSWER], 'the widget holds the stored text');
      assert.deepEqual(page.errors, []);
      console.log(
        `streamed answer in the widget (chat-local, Chromium): first visible text after ${Math.round(states.find((s) => s.text.trim()).at - sentAt)} ms, ` +
        `whole reply rendered after ${Math.round(final.at - sentAt)} ms, ${deltas.length} deltas, ${states.filter((s) => s.streaming).length} partial renders`,
      );
    } finally {
      await browser.close();
      await chat.stop();
    }
  });
});
