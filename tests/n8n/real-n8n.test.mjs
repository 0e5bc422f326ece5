// infra/n8n/chat-workflow.json on a real n8n 2.8.4 (tests/n8n/install, pinned by
// tests/n8n/package-lock.json), imported and published with the n8n CLI and started headless
// on 127.0.0.1 (real-n8n.mjs):
// - end to end with the real chat-local binary: a user message goes to n8n, n8n verifies our
//   signature, answers 200, and its signed reply is stored by chat-local;
// - a bad signature (wrong, over other bytes, another secret, stale, missing) is refused with
//   401 and nothing is sent back;
// - the callback is retried: 429 with Retry-After, then 503, then 200 (a server of this test
//   stands in for the chat backend), each attempt freshly signed, the wait as asked;
// - a callback that never succeeds ends as a failed n8n execution after 5 attempts.
// Run: tests/n8n/run.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import { rustSign, rustVerify } from './harness.mjs';
import { freePort, startChatLocal, startN8n, waitFor } from './real-n8n.mjs';

const SECRET = `real-n8n test secret ${process.pid} ünï 🔑`;
const nowSecs = () => Math.floor(Date.now() / 1000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let n8n;
before(async () => {
  n8n = await startN8n({ secret: SECRET });
}, { timeout: 300_000 });
after(async () => {
  await n8n?.stop();
});

/**
 * A stand-in for the chat backend's POST /webhook on 127.0.0.1: records every request with
 * its arrival time and answers the nth (from 1) with `answer(n)` = {status, headers?, body?}.
 */
async function callbackServer(answer) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      requests.push({ atMs: Date.now(), path: req.url, headers: req.headers, body: Buffer.concat(chunks) });
      const { status, headers = {}, body = '{}' } = answer(requests.length);
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(body);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/webhook`,
    requests,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

let messageCount = 0;
/**
 * POSTs a dispatch as chat-local does: signed with SECRET at the current time, unless `sign`
 * changes that (it gets {ts, body} and returns the headers to send, and may send other bytes).
 */
async function dispatch(callbackUrl, sign = ({ ts, body }) => ({ headers: signed(SECRET, ts, body) })) {
  messageCount += 1;
  const messageId = `01JDREALN8N00000000000000${messageCount}`;
  const content = `héllo #${messageCount} 👋  "two  spaces"`;
  // Pretty-printed on purpose: the workflow must verify the bytes, not re-serialized JSON.
  const body = JSON.stringify({ sessionId: '01JDREALN8N000000000000000', messageId, content, history: [], callbackUrl }, null, 2);
  const { headers, send = body } = sign({ ts: nowSecs(), body });
  const r = await fetch(n8n.webhookUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: send,
    signal: AbortSignal.timeout(30_000),
  });
  return { status: r.status, json: await r.json(), messageId, content };
}
const signed = (secret, ts, body) => ({ 'X-Chat-Timestamp': String(ts), 'X-Chat-Signature': rustSign(secret, ts, body) });

/**
 * Checks the attempts that reached the callback: each signed with SECRET, valid when it
 * arrived, and signed anew: no earlier than the second the previous attempt arrived in.
 */
function assertFreshlySigned(attempts) {
  attempts.forEach((a, i) => {
    const ts = Number(a.headers['x-chat-timestamp']);
    const arrived = Math.floor(a.atMs / 1000);
    const what = `attempt ${i + 1} (signed at ${ts}, arrived at ${arrived})`;
    assert.equal(rustVerify(SECRET, String(ts), a.headers['x-chat-signature'], arrived, a.body), 'ok', what);
    assert.ok(ts <= arrived && arrived - ts <= 5, what);
    if (i > 0) assert.ok(ts >= Math.floor(attempts[i - 1].atMs / 1000), `${what}: not re-signed`);
  });
}

/** The error executions of the workflow whose data mentions `text`. */
async function failedExecutionsMentioning(text) {
  const failed = (await n8n.rest.executions(n8n.workflowId)).filter((e) => e.status === 'error');
  const found = [];
  for (const e of failed) {
    const full = await n8n.rest.execution(e.id);
    if (JSON.stringify(full).includes(text)) found.push(full);
  }
  return found;
}

describe('the workflow on a real n8n 2.8.4', () => {
  test('end to end: chat-local dispatches to n8n, and n8n\'s signed reply is stored', { timeout: 120_000 }, async () => {
    const chat = await startChatLocal({ n8nWebhookUrl: n8n.webhookUrl, secret: SECRET });
    try {
      const s = await chat.call('POST', '/sessions', null, {});
      assert.equal(s.status, 201, JSON.stringify(s.json));
      const { sessionId, token } = s.json;
      const text = 'Grüße aus chat-local 🚀 "quoted"\n  and a second line';
      const sent = await chat.call('POST', `/sessions/${sessionId}/messages`, token, { content: text, clientMessageId: 'real-n8n-1' });
      assert.equal(sent.status, 202, JSON.stringify(sent.json));
      const userId = sent.json.message.id;
      const messages = await waitFor('the reply from n8n in the history', 60_000, async () => {
        const page = await chat.call('GET', `/sessions/${sessionId}/messages?after=0`, token);
        assert.equal(page.status, 200, JSON.stringify(page.json));
        const { messages } = page.json;
        return messages.some((m) => m.role === 'assistant' && m.replyTo === userId) && messages;
      }).catch((e) => {
        throw new Error(`${e.message}\n--- chat-local log:\n${chat.log()}`);
      });
      const reply = messages.find((m) => m.role === 'assistant' && m.replyTo === userId);
      assert.equal(reply.content, `You said: ${text}`);
      assert.equal(reply.type, 'text');
      assert.equal(messages.find((m) => m.id === userId).status, 'answered');
      assert.equal(messages.filter((m) => m.role === 'assistant').length, 1, 'one reply');
      // n8n's side: that run succeeded.
      const runs = await waitFor('n8n to record the execution', 15_000, async () => {
        const list = await n8n.rest.executions(n8n.workflowId);
        return list.some((e) => e.status === 'success') && list;
      });
      assert.ok(runs.every((e) => e.status === 'success'), JSON.stringify(runs));
    } finally {
      await chat.stop();
    }
  });

  test('a bad signature is refused with 401 and nothing is sent back', { timeout: 60_000 }, async () => {
    const backend = await callbackServer(() => ({ status: 200, body: '{"messageId":"x"}' }));
    try {
      const refused = {
        'a wrong signature': [({ ts }) => ({ headers: { 'X-Chat-Timestamp': String(ts), 'X-Chat-Signature': `sha256=${'0'.repeat(64)}` } }), 'invalid_signature'],
        'a tampered body': [({ ts, body }) => ({ headers: signed(SECRET, ts, body), send: body.replace('héllo', 'hello') }), 'invalid_signature'],
        'another secret': [({ ts, body }) => ({ headers: signed('another secret', ts, body) }), 'invalid_signature'],
        'a stale timestamp': [({ ts, body }) => ({ headers: signed(SECRET, ts - 301, body) }), 'stale_timestamp'],
        'no signature headers': [() => ({ headers: {} }), 'missing_signature'],
      };
      for (const [what, [sign, error]] of Object.entries(refused)) {
        const r = await dispatch(backend.url, sign);
        assert.equal(r.status, 401, `${what}: ${JSON.stringify(r.json)}`);
        assert.deepEqual([r.json.accepted, r.json.error], [false, error], what);
      }
      const good = await dispatch(backend.url);
      assert.equal(good.status, 200, JSON.stringify(good.json));
      // The good one's reply arrives; by then the refused ones' would have, had there been any.
      await waitFor('the reply to the good dispatch', 30_000, () => backend.requests.length >= 1);
      await sleep(1000);
      assert.equal(backend.requests.length, 1, 'one reply, for the good dispatch only');
      assert.equal(JSON.parse(backend.requests[0].body).replyTo, good.messageId);
    } finally {
      await backend.close();
    }
  });

  test('a refused callback is retried: 429 (Retry-After: 1), 503, then 200', { timeout: 90_000 }, async () => {
    const script = [
      { status: 429, headers: { 'retry-after': '1' }, body: '{"error":{"code":"rate_limited","message":"slow down"}}' },
      { status: 503, body: '{"error":{"code":"unavailable","message":"try again"}}' },
      { status: 200, body: '{"messageId":"01JDREPLY0000000000000000000"}' },
    ];
    const backend = await callbackServer((n) => script[n - 1] ?? { status: 500 });
    try {
      const r = await dispatch(backend.url);
      assert.equal(r.status, 200, JSON.stringify(r.json));
      await waitFor('three attempts', 60_000, () => backend.requests.length >= 3);
      await sleep(1500); // a fourth attempt would come within 1 s
      const attempts = backend.requests;
      assert.equal(attempts.length, 3, 'the third attempt succeeded, no fourth');
      assertFreshlySigned(attempts);
      // The waits are >= 1 s, so each attempt's timestamp is a later second than the last.
      const stamps = attempts.map((a) => Number(a.headers['x-chat-timestamp']));
      assert.ok(stamps[0] < stamps[1] && stamps[1] < stamps[2], `timestamps ${stamps}`);
      for (const a of attempts) {
        assert.equal(a.path, '/webhook');
        assert.equal(a.body.toString(), attempts[0].body.toString(), 'the same reply each time');
      }
      const reply = JSON.parse(attempts[0].body);
      assert.equal(reply.replyTo, r.messageId);
      assert.equal(reply.content, `You said: ${r.content}`);
      // Retry-After: 1 was waited for (without it the first wait is 0.5 s); then the backoff.
      const gap1 = attempts[1].atMs - attempts[0].atMs;
      const gap2 = attempts[2].atMs - attempts[1].atMs;
      assert.ok(gap1 >= 950, `waited ${gap1} ms after the 429 with Retry-After: 1`);
      assert.ok(gap2 >= 950, `waited ${gap2} ms after the 503 (backoff 1 s)`);
    } finally {
      await backend.close();
    }
  });

  test('a callback that always fails ends as a failed execution after 5 attempts', { timeout: 90_000 }, async () => {
    const backend = await callbackServer(() => ({ status: 503, body: '{"error":{"code":"unavailable","message":"down"}}' }));
    try {
      const r = await dispatch(backend.url);
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const [execution] = await waitFor('a failed execution for this callback', 60_000, async () => {
        const found = await failedExecutionsMentioning(backend.url);
        return found.length > 0 && found;
      });
      assert.equal(execution.status, 'error');
      assert.match(JSON.stringify(execution), /after 5 attempts/);
      assert.equal(backend.requests.length, 5, 'five attempts, then it stopped');
      assertFreshlySigned(backend.requests);
    } finally {
      await backend.close();
    }
  });

  test('an unreachable callback (network error) is retried, then fails the execution', { timeout: 90_000 }, async () => {
    const url = `http://127.0.0.1:${await freePort()}/webhook`; // nobody listens there
    const r = await dispatch(url);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const [execution] = await waitFor('a failed execution for this callback', 60_000, async () => {
      const found = await failedExecutionsMentioning(url);
      return found.length > 0 && found;
    });
    assert.match(JSON.stringify(execution), /after 5 attempts.*ECONNREFUSED/);
  });
});
