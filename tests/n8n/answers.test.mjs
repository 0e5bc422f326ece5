// n8n workflows as people build them, on a real n8n 2.8.4 with the real chat-local binary,
// driven end to end by WebSocket clients (the `ws` package of the lockfile):
// - a Webhook node answering "when last node finishes" with the last node's output;
// - n8n's Chat Trigger answering whole (response mode "last node");
// - the shipped AI-agent workflow (infra/n8n/ai-agent-workflow.json: Chat Trigger with Basic
//   auth, AI Agent, OpenAI Chat Model, streaming on), its model credential pointing at a small
//   OpenAI-compatible server of this test on 127.0.0.1 that streams a known answer token by
//   token: the deltas arrive in order and coalesced, a client that connects mid-stream gets
//   the whole reply, and the stored reply equals the streamed text; without the auth header
//   n8n refuses the dispatch.
// Prints the time to the first visible text and to the whole reply, and the delta frames.
// Run: tests/n8n/run.

import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

import { startChatLocal, startN8n, waitFor } from './real-n8n.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const SECRET = `answers test secret ${process.pid}`;
const AGENT_WORKFLOW = path.join(root, 'infra', 'n8n', 'ai-agent-workflow.json');
const WEBHOOK_WORKFLOW = path.join(here, 'workflows', 'webhook-last-node.json');
const CHAT_TRIGGER_WORKFLOW = path.join(here, 'workflows', 'chat-trigger-whole.json');
const BASIC = { user: 'chat-backend', password: `basic-pw-${process.pid}` };
const AUTH_HEADER = `Authorization: Basic ${Buffer.from(`${BASIC.user}:${BASIC.password}`).toString('base64')}`;

// The model's answer, streamed in pieces of three characters, one every 25 ms.
const ANSWER = 'Hello! Here is **your** answer:\n\n- first, the plan\n- then, the *details*\n\nAnything else? 🙂';
const TOKENS = Array.from(ANSWER).reduce((acc, ch, i) => {
  if (i % 3 === 0) acc.push('');
  acc[acc.length - 1] += ch;
  return acc;
}, []);
const TOKEN_GAP_MS = 25;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A small OpenAI-compatible server: POST /v1/chat/completions streams ANSWER. */
async function fakeOpenAi() {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      let body = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        // recorded as {}
      }
      requests.push({ path: req.url, body });
      if (req.method !== 'POST' || !req.url.endsWith('/chat/completions')) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"error":{"message":"not found"}}');
        return;
      }
      const base = { id: 'chatcmpl-test', created: Math.floor(Date.now() / 1000), model: body.model ?? 'test' };
      if (!body.stream) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({
          ...base,
          object: 'chat.completion',
          choices: [{ index: 0, message: { role: 'assistant', content: ANSWER }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 10, completion_tokens: TOKENS.length, total_tokens: 10 + TOKENS.length },
        }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const send = (o) => res.write(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', ...o })}\n\n`);
      send({ choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
      for (const t of TOKENS) {
        await sleep(TOKEN_GAP_MS);
        send({ choices: [{ index: 0, delta: { content: t }, finish_reason: null }] });
      }
      send({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
      send({ choices: [], usage: { prompt_tokens: 10, completion_tokens: TOKENS.length, total_tokens: 10 + TOKENS.length } });
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/v1`,
    requests,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

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
    workflowPaths: [AGENT_WORKFLOW, WEBHOOK_WORKFLOW, CHAT_TRIGGER_WORKFLOW],
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
    const chat = await startChatLocal({ n8nWebhookUrl: `${n8n.baseUrl}/webhook/last-node`, secret: SECRET });
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
    const url = `${n8n.baseUrl}/webhook/2a2b3c4d-0000-4000-8000-0000000000a1/chat`;
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
    const url = `${n8n.baseUrl}/webhook/6f3a1c2e-8b4d-4e5f-9a0b-1c2d3e4f5a6b/chat`;
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
    const url = `${n8n.baseUrl}/webhook/6f3a1c2e-8b4d-4e5f-9a0b-1c2d3e4f5a6b/chat`;
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
