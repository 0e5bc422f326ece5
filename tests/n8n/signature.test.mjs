// Cross-check of the n8n workflow's signing and verification code (the Code nodes' files in
// infra/n8n/code/, which infra/n8n/build-workflow puts into chat-workflow.json; never copied)
// against our Rust implementation (chat_core::signature through
// crates/chat-core/examples/signature.rs), both ways. The workflow JSON's own wiring is
// checked by workflow.test.mjs.
// Run: tests/n8n/run  (builds the Rust example, then `node --test tests/n8n/`).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { codeOf, runCodeNode, rustSign, rustVerify, webhookItem } from './harness.mjs';

const VERIFY = codeOf('Verify signature');
const AGENT = codeOf('AI agent (replace me)');
const BUILD = codeOf('Build reply');
const SEND = codeOf('Sign and send reply');

const SECRET = 'test secret: ünïcødé 🔑 and spaces';
const OTHER_SECRET = 'another secret';
const NOW = 1_763_800_000; // unix seconds used as "now" everywhere
const SESSION = '01JD0000000000000000000000';
const MESSAGE = '01JD0000000000000000000001';
const CALLBACK = 'http://127.0.0.1:3000/webhook';

// Dispatch bodies as our `dispatch` sends them, plus odd ones: the bytes are what matter.
const dispatch = (content, extra = {}) =>
  JSON.stringify({ sessionId: SESSION, messageId: MESSAGE, content, history: [], callbackUrl: CALLBACK, ...extra });
const BODIES = {
  'plain ASCII': dispatch('hello'),
  'unicode (accents, CJK, emoji, U+2028)': dispatch('héllo wörld, 日本語, 👋🏽, \u2028 line sep, "quotes" \\ back'),
  'unicode escaped as \\u (other bytes, same JSON value)':
    `{"sessionId":"${SESSION}","messageId":"${MESSAGE}","content":"h\\u00e9llo \\ud83d\\udc4b","history":[],"callbackUrl":"${CALLBACK}"}`,
  'whitespace-sensitive: pretty-printed, CRLF, trailing newline':
    JSON.stringify(JSON.parse(dispatch('  two  spaces\tand a tab  ', { userId: 'u1', metadata: { a: [1, 2.50, 'x'] } })), null, 2).replace(/\n/g, '\r\n') + '\n',
  'history and metadata': dispatch('again', {
    userId: 'user-42',
    metadata: { page: '/checkout', nested: { deep: [true, null, 0.1] } },
    history: [{ id: '01JC', role: 'user', content: 'earlier 🙂' }],
  }),
  'empty-ish: {}': '{}',
  'empty-ish: zero bytes': '',
  'empty-ish: a single space': ' ',
  'empty-ish: a newline': '\n',
};
const isDispatch = (body) => {
  try {
    const v = JSON.parse(body);
    return typeof v?.sessionId === 'string' && typeof v?.callbackUrl === 'string';
  } catch {
    return false;
  }
};

/** The workflow's verdict on one request: 'ok' or the error code of "Verify signature". */
async function workflowVerify({ secret = SECRET, timestamp, signature, body, nowMs = NOW * 1000 }) {
  const headers = {};
  if (timestamp !== undefined) headers['X-Chat-Timestamp'] = String(timestamp);
  if (signature !== undefined) headers['X-Chat-Signature'] = signature;
  const [out] = await runCodeNode(VERIFY, {
    items: [webhookItem(headers, body)],
    env: { CHAT_WEBHOOK_SECRET: secret },
    nowMs,
  });
  return out.json;
}
/** Only the signature part of the verdict: a well-signed body that is not a dispatch is 'ok'. */
const signatureVerdict = (out) => (out.valid || out.error === 'invalid_payload' ? 'ok' : out.error);

function tamper(body) {
  if (body.length === 0) return ' ';
  const b = Buffer.from(body);
  b[b.length - 1] ^= 0x01;
  return b;
}

describe('Rust signs, the workflow verifies (b)', () => {
  for (const [name, body] of Object.entries(BODIES)) {
    test(name, async () => {
      const sig = rustSign(SECRET, NOW, body);
      // [case, timestamp header, signature header, body, secret in n8n, now, expected]
      const cases = [
        ['fresh', NOW, sig, body, SECRET, NOW, 'ok'],
        ['299 s old', NOW, sig, body, SECRET, NOW + 299, 'ok'],
        ['300 s old (limit)', NOW, sig, body, SECRET, NOW + 300, 'ok'],
        ['300 s ahead (limit)', NOW, sig, body, SECRET, NOW - 300, 'ok'],
        ['301 s old', NOW, sig, body, SECRET, NOW + 301, 'stale_timestamp'],
        ['301 s ahead', NOW, sig, body, SECRET, NOW - 301, 'stale_timestamp'],
        ['tampered body', NOW, sig, tamper(body), SECRET, NOW, 'invalid_signature'],
        ['body with a space appended', NOW, sig, body + ' ', SECRET, NOW, 'invalid_signature'],
        ['tampered timestamp', NOW + 1, sig, body, SECRET, NOW, 'invalid_signature'],
        ['other secret', NOW, sig, body, OTHER_SECRET, NOW, 'invalid_signature'],
        ['uppercase hex', NOW, 'sha256=' + sig.slice(7).toUpperCase(), body, SECRET, NOW, 'ok'],
        ['no sha256= prefix', NOW, sig.slice(7), body, SECRET, NOW, 'invalid_signature'],
        ['non-hex signature', NOW, 'sha256=zz', body, SECRET, NOW, 'invalid_signature'],
        ['truncated signature', NOW, sig.slice(0, -2), body, SECRET, NOW, 'invalid_signature'],
        ['timestamp not a number', 'abc', sig, body, SECRET, NOW, 'invalid_timestamp'],
        ['timestamp in exponent form', '1.7e9', sig, body, SECRET, NOW, 'invalid_timestamp'],
      ];
      if (isDispatch(body) && JSON.stringify(JSON.parse(body)) !== body) {
        // What a verifier over a re-serialized $json.body would see: must not pass.
        cases.push(['re-serialized JSON', NOW, sig, JSON.stringify(JSON.parse(body)), SECRET, NOW, 'invalid_signature']);
      }
      for (const [what, ts, s, b, secret, now, expected] of cases) {
        const rust = rustVerify(secret, ts, s, now, b);
        const out = await workflowVerify({ secret, timestamp: ts, signature: s, body: b, nowMs: now * 1000 + 999 });
        const js = signatureVerdict(out);
        assert.equal(rust, expected, `${what}: Rust said ${rust}`);
        assert.equal(js, expected, `${what}: the workflow said ${js} (${out.message})`);
        if (js !== 'ok') assert.equal(out.status, 401, `${what}: a bad signature is a 401`);
      }
      // A well-signed body is passed on exactly as received (parsed from the verified bytes).
      const out = await workflowVerify({ timestamp: NOW, signature: sig, body });
      if (isDispatch(body)) {
        assert.equal(out.valid, true);
        assert.equal(out.status, 200);
        assert.deepEqual({ ...out, valid: undefined, status: undefined }, { ...JSON.parse(body), valid: undefined, status: undefined });
      } else {
        assert.deepEqual([out.valid, out.status, out.error], [false, 400, 'invalid_payload']);
      }
    });
  }

  test("Rust's known vector (s3cret, 1700000000, {})", async () => {
    const sig = 'sha256=97926816e98fbb41ccb1673225ff29a2f35369099990e1b1561651e7bd097ebf';
    assert.equal(rustSign('s3cret', 1700000000, '{}'), sig);
    const out = await workflowVerify({ secret: 's3cret', timestamp: 1700000000, signature: sig, body: '{}', nowMs: 1700000000_000 });
    assert.equal(signatureVerdict(out), 'ok');
  });

  test('missing headers are 401 missing_signature', async () => {
    const sig = rustSign(SECRET, NOW, BODIES['plain ASCII']);
    for (const req of [{ signature: sig }, { timestamp: NOW }, {}]) {
      const out = await workflowVerify({ ...req, body: BODIES['plain ASCII'] });
      assert.deepEqual([out.valid, out.status, out.error], [false, 401, 'missing_signature']);
    }
  });

  test('verifies the raw bytes, not the parsed body n8n also gives', async () => {
    const body = BODIES['plain ASCII'];
    const sig = rustSign(SECRET, NOW, body);
    const forged = { ...JSON.parse(body), content: 'forged' };
    const [{ json: out }] = await runCodeNode(VERIFY, {
      items: [webhookItem({ 'X-Chat-Timestamp': String(NOW), 'X-Chat-Signature': sig }, body, forged)],
      env: { CHAT_WEBHOOK_SECRET: SECRET },
      nowMs: NOW * 1000,
    });
    assert.equal(out.valid, true);
    assert.equal(out.content, 'hello');
  });

  test('a missing secret or blocked env access is a loud 500, not a pass', async () => {
    const body = BODIES['plain ASCII'];
    const sig = rustSign(SECRET, NOW, body);
    for (const env of [{}, { CHAT_WEBHOOK_SECRET: '' }, 'blocked']) {
      const [{ json: out }] = await runCodeNode(VERIFY, {
        items: [webhookItem({ 'X-Chat-Timestamp': String(NOW), 'X-Chat-Signature': sig }, body)],
        env,
        nowMs: NOW * 1000,
      });
      assert.deepEqual([out.valid, out.status, out.error], [false, 500, 'secret_unavailable']);
    }
  });

  test('without NODE_FUNCTION_ALLOW_BUILTIN=crypto it is a loud 500, not a throw (n8n would answer 200)', async () => {
    const body = BODIES['plain ASCII'];
    const [{ json: out }] = await runCodeNode(VERIFY, {
      items: [webhookItem({ 'X-Chat-Timestamp': String(NOW), 'X-Chat-Signature': rustSign(SECRET, NOW, body) }, body)],
      env: { CHAT_WEBHOOK_SECRET: SECRET },
      nowMs: NOW * 1000,
      allowCrypto: false,
    });
    assert.deepEqual([out.valid, out.status, out.error], [false, 500, 'crypto_unavailable']);
  });

  test('an unexpected failure inside verification is a 500, not a throw', async () => {
    const item = webhookItem({ 'X-Chat-Timestamp': String(NOW), 'X-Chat-Signature': 'sha256=00' }, '{}');
    // Stored binary data that cannot be read back: getBinaryDataBuffer throws.
    item.binary.data = { get data() { throw new Error('binary data is gone'); } };
    const [{ json: out }] = await runCodeNode(VERIFY, {
      items: [item],
      env: { CHAT_WEBHOOK_SECRET: SECRET },
      nowMs: NOW * 1000,
    });
    assert.deepEqual([out.valid, out.status, out.error], [false, 500, 'verify_failed']);
  });

  test('without the Raw Body option it refuses instead of guessing the bytes', async () => {
    const item = webhookItem({ 'X-Chat-Timestamp': String(NOW), 'X-Chat-Signature': 'sha256=00' }, '{}');
    delete item.binary;
    const [{ json: out }] = await runCodeNode(VERIFY, { items: [item], env: { CHAT_WEBHOOK_SECRET: SECRET }, nowMs: NOW * 1000 });
    assert.deepEqual([out.valid, out.status, out.error], [false, 500, 'raw_body_missing']);
  });
});

/**
 * Runs the workflow's own chain: Verify signature -> agent output -> Build reply -> Sign and
 * send reply, and returns what the last one sent: {callbackUrl, body, timestamp, signature}.
 */
async function workflowReply(agentOutput, { nowMs = NOW * 1000 + 123, content = 'hi 👋' } = {}) {
  const body = dispatch(content);
  const request = await runCodeNode(VERIFY, {
    items: [webhookItem({ 'X-Chat-Timestamp': String(NOW), 'X-Chat-Signature': rustSign(SECRET, NOW, body) }, body)],
    env: { CHAT_WEBHOOK_SECRET: SECRET },
    nowMs: NOW * 1000,
  });
  assert.equal(request[0].json.valid, true);
  const agent = agentOutput ?? (await runCodeNode(AGENT, { items: request, nowMs }));
  const built = await runCodeNode(BUILD, { items: agent, nodes: { 'Verify signature': request }, nowMs });
  const sent = [];
  const [out] = await runCodeNode(SEND, {
    items: built,
    env: { CHAT_WEBHOOK_SECRET: SECRET },
    clock: { nowMs, sleeps: [] },
    httpRequest: async (options) => {
      sent.push(options);
      return { statusCode: 200, headers: {}, body: { messageId: 'reply-id' } };
    },
  });
  assert.equal(sent.length, 1, 'one POST when the backend answers 200');
  assert.deepEqual(out.json, { callbackUrl: CALLBACK, status: 200, attempts: 1, response: { messageId: 'reply-id' } });
  const [{ method, url, headers, body: sentBody }] = sent;
  assert.equal(method, 'POST');
  assert.equal(headers['Content-Type'], 'application/json');
  return { callbackUrl: url, body: sentBody, timestamp: headers['X-Chat-Timestamp'], signature: headers['X-Chat-Signature'] };
}

describe('the workflow signs, Rust verifies (a)', () => {
  const answers = {
    'the shipped stand-in agent': [undefined, { content: 'You said: hi 👋', type: 'text' }],
    'an AI Agent node (`output`)': [[{ json: { output: 'Bonjour ! Ça va ? 日本語 🎉' } }], { content: 'Bonjour ! Ça va ? 日本語 🎉', type: 'text' }],
    'whitespace-sensitive content': [[{ json: { content: '  two  spaces\n\ttab\r\nCRLF  ' } }], { content: '  two  spaces\n\ttab\r\nCRLF  ', type: 'text' }],
    'quotes, backslashes, U+2028, </script>': [[{ json: { content: '"q" \\ \u2028 \u2029 </script> \u0000' } }], { content: '"q" \\ \u2028 \u2029 </script> \u0000', type: 'text' }],
    'a typed reply with data': [
      [{ json: { content: 'Book it?', type: 'confirmation', data: { slot: '2026-11-23T10:00Z', ok: [true, 1.5, 'ü'] } } }],
      { content: 'Book it?', type: 'confirmation', data: { slot: '2026-11-23T10:00Z', ok: [true, 1.5, 'ü'] } },
    ],
    'an unknown type falls back to text': [[{ json: { content: 'x', type: 'shout' } }], { content: 'x', type: 'text' }],
    'a handoff asks for a person': [[{ json: { content: 'Let me find a colleague.', type: 'handoff' } }], { content: 'Let me find a colleague.', type: 'handoff' }],
    'empty-ish: a failed agent (On Error: Continue)': [[{ json: { error: 'model timed out' } }], { type: 'error' }],
    'empty-ish: an empty answer': [[{ json: { content: '' } }], { type: 'error' }],
    'empty-ish: a whitespace-only answer': [[{ json: { output: ' \n ' } }], { type: 'error' }],
  };
  for (const [name, [agentOutput, expected]] of Object.entries(answers)) {
    test(name, async () => {
      const out = await workflowReply(agentOutput);
      assert.equal(out.callbackUrl, CALLBACK);
      assert.equal(out.timestamp, String(NOW));
      const reply = JSON.parse(out.body);
      assert.equal(reply.sessionId, SESSION);
      assert.equal(reply.replyTo, MESSAGE);
      assert.equal(reply.eventId, `n8n-${MESSAGE}`);
      for (const [k, v] of Object.entries(expected)) assert.deepEqual(reply[k], v, k);
      if (expected.type === 'error') assert.ok(reply.content.trim().length > 0);

      const ts = out.timestamp;
      const body = out.body;
      const cases = [
        ['as sent', ts, out.signature, body, SECRET, NOW, 'ok'],
        ['300 s later', ts, out.signature, body, SECRET, NOW + 300, 'ok'],
        ['301 s later', ts, out.signature, body, SECRET, NOW + 301, 'stale_timestamp'],
        ['301 s earlier', ts, out.signature, body, SECRET, NOW - 301, 'stale_timestamp'],
        ['re-serialized body (what a JSON-mode HTTP node would send)', ts, out.signature, JSON.stringify(JSON.parse(body), null, 1), SECRET, NOW, 'invalid_signature'],
        ['tampered body', ts, out.signature, tamper(body), SECRET, NOW, 'invalid_signature'],
        ['body with a space appended', ts, out.signature, body + ' ', SECRET, NOW, 'invalid_signature'],
        ['tampered timestamp', String(NOW - 1), out.signature, body, SECRET, NOW, 'invalid_signature'],
        ['other secret', ts, out.signature, body, OTHER_SECRET, NOW, 'invalid_signature'],
      ];
      for (const [what, t, s, b, secret, now, expectedVerdict] of cases) {
        assert.equal(rustVerify(secret, t, s, now, b), expectedVerdict, what);
      }
      // And the signature is exactly Rust's for the same string.
      assert.equal(out.signature, rustSign(SECRET, ts, body));
    });
  }

  test('eventId is deterministic: a repeated run replies with the same eventId', async () => {
    const first = JSON.parse((await workflowReply(undefined, { nowMs: NOW * 1000 })).body);
    const again = JSON.parse((await workflowReply(undefined, { nowMs: (NOW + 7) * 1000 })).body);
    assert.equal(first.eventId, again.eventId);
  });

  test('a missing secret stops the run instead of sending an unsigned reply', async () => {
    for (const env of ['blocked', {}]) {
      let posts = 0;
      await assert.rejects(
        runCodeNode(SEND, {
          items: [{ json: { callbackUrl: CALLBACK, body: '{}' } }],
          env,
          clock: { nowMs: NOW * 1000, sleeps: [] },
          httpRequest: async () => {
            posts++;
            return { statusCode: 200, headers: {}, body: {} };
          },
        }),
        /CHAT_WEBHOOK_SECRET/,
      );
      assert.equal(posts, 0);
    }
  });
});
