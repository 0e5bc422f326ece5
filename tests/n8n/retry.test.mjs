// The retry policy of the workflow's "Sign and send reply" Code node
// (infra/n8n/code/sign-and-send-reply.js), run under the harness's stand-ins with a fake
// clock, so every case is exact and instant: which answers are retried, how long it waits
// (Retry-After, capped; else exponential backoff), that every attempt is signed anew, and
// that giving up throws (a failed n8n execution). real-n8n.test.mjs checks the same on a real n8n.
// Run: tests/n8n/run.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { codeOf, runCodeNode, rustVerify } from './harness.mjs';

const SEND = codeOf('Sign and send reply');
const SECRET = 'retry test secret';
const NOW_MS = 1_763_800_000_000;
const CALLBACK = 'http://127.0.0.1:3000/webhook';
const BODY = JSON.stringify({ sessionId: 's', replyTo: 'm', content: 'hi', type: 'text', eventId: 'n8n-m' });
const ok = { statusCode: 200, headers: { 'content-type': 'application/json' }, body: { messageId: 'r1' } };
const status = (statusCode, headers = {}) => ({ statusCode, headers, body: { error: { code: 'x', message: 'y' } } });
const networkError = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:3000'), { code: 'ECONNREFUSED' });

/**
 * Runs the node against a scripted backend: `answers[i]` is what attempt i gets (a response,
 * or an Error to throw as a network failure). Resolves to {out, error, attempts, sleeps}.
 */
async function send(answers) {
  const clock = { nowMs: NOW_MS, sleeps: [] };
  const attempts = [];
  const httpRequest = async (options) => {
    attempts.push({ options, atMs: clock.nowMs });
    const answer = answers[attempts.length - 1];
    if (answer === undefined) throw new Error(`attempt ${attempts.length} was not expected`);
    if (answer instanceof Error) throw answer;
    return answer;
  };
  let out;
  let error;
  try {
    out = await runCodeNode(SEND, {
      items: [{ json: { callbackUrl: CALLBACK, body: BODY } }],
      env: { CHAT_WEBHOOK_SECRET: SECRET },
      clock,
      httpRequest,
    });
  } catch (e) {
    error = e;
  }
  return { out, error, attempts, sleeps: clock.sleeps };
}

describe('Sign and send reply retries what waiting can fix', () => {
  test('200 at once: one attempt, no wait', async () => {
    const r = await send([ok]);
    assert.equal(r.error, undefined);
    assert.deepEqual(r.out, [{ json: { callbackUrl: CALLBACK, status: 200, attempts: 1, response: { messageId: 'r1' } } }]);
    assert.deepEqual(r.sleeps, []);
    const { options } = r.attempts[0];
    assert.equal(options.url, CALLBACK);
    assert.equal(options.body, BODY, 'the body is sent as built, byte for byte');
    assert.equal(options.returnFullResponse, true);
    assert.equal(options.ignoreHttpStatusErrors, true);
    assert.ok(options.timeout > 0 && options.timeout <= 30_000, `a bounded request timeout: ${options.timeout}`);
  });

  test('429 with Retry-After: 1, then 503, then 200: waits 1 s, then the backoff', async () => {
    const r = await send([status(429, { 'retry-after': '1' }), status(503), ok]);
    assert.equal(r.error, undefined);
    assert.equal(r.out[0].json.attempts, 3);
    assert.deepEqual(r.sleeps, [1000, 1000]);
  });

  test('every attempt is signed anew with the time it is sent', async () => {
    const r = await send([status(429, { 'retry-after': '7' }), status(500), status(502, { 'retry-after': '3' }), ok]);
    assert.equal(r.attempts.length, 4);
    const stamps = r.attempts.map(({ options }) => options.headers['X-Chat-Timestamp']);
    assert.deepEqual(stamps, r.attempts.map(({ atMs }) => String(Math.floor(atMs / 1000))));
    assert.equal(new Set(stamps).size, 4, `fresh timestamps: ${stamps}`);
    for (const { options, atMs } of r.attempts) {
      const { 'X-Chat-Timestamp': ts, 'X-Chat-Signature': sig } = options.headers;
      assert.equal(rustVerify(SECRET, ts, sig, Math.floor(atMs / 1000), options.body), 'ok');
    }
  });

  test('without Retry-After: 0.5 s, 1 s, 2 s, 4 s, then it gives up after 5 attempts by throwing', async () => {
    const r = await send([status(503), status(500), status(504), status(502), status(503)]);
    assert.equal(r.attempts.length, 5);
    assert.deepEqual(r.sleeps, [500, 1000, 2000, 4000]);
    assert.ok(r.error, 'giving up throws: the n8n execution fails');
    assert.match(r.error.message, /after 5 attempts/);
    assert.match(r.error.message, /attempt 1: HTTP 503.*attempt 5: HTTP 503/);
  });

  test('network errors are retried like a 5xx', async () => {
    const r = await send([networkError(), networkError(), ok]);
    assert.equal(r.error, undefined);
    assert.equal(r.out[0].json.attempts, 3);
    assert.deepEqual(r.sleeps, [500, 1000]);
    const gaveUp = await send([networkError(), networkError(), networkError(), networkError(), networkError()]);
    assert.match(gaveUp.error.message, /after 5 attempts.*ECONNREFUSED/);
  });

  test('Retry-After is capped at 30 s', async () => {
    const r = await send([status(429, { 'retry-after': '3600' }), ok]);
    assert.deepEqual(r.sleeps, [30_000]);
  });

  test('Retry-After as an HTTP date; 0; or unreadable (then the backoff)', async () => {
    const at = new Date(NOW_MS + 12_000).toUTCString(); // whole seconds: NOW_MS is one
    assert.deepEqual((await send([status(503, { 'retry-after': at }), ok])).sleeps, [12_000]);
    const past = new Date(NOW_MS - 60_000).toUTCString();
    assert.deepEqual((await send([status(503, { 'retry-after': past }), ok])).sleeps, [0]);
    assert.deepEqual((await send([status(429, { 'retry-after': '0' }), ok])).sleeps, [0]);
    assert.deepEqual((await send([status(429, { 'retry-after': 'soon' }), ok])).sleeps, [500]);
    assert.deepEqual((await send([status(429, { 'retry-after': '-5' }), ok])).sleeps, [500]);
  });

  test('the longest run stays inside the 300 s n8n gives a Code node', async () => {
    const slow = status(429, { 'retry-after': '9999' });
    const r = await send([slow, slow, slow, slow, slow]);
    assert.equal(r.attempts.length, 5);
    const timeout = r.attempts[0].options.timeout;
    const worstMs = r.sleeps.reduce((a, b) => a + b, 0) + r.attempts.length * timeout;
    assert.ok(worstMs < 300_000, `worst case ${worstMs} ms`);
  });

  for (const code of [400, 401, 403, 404, 409, 413, 422]) {
    test(`${code} is not retried: it fails at once`, async () => {
      const r = await send([status(code), ok]);
      assert.equal(r.attempts.length, 1);
      assert.deepEqual(r.sleeps, []);
      assert.match(r.error.message, new RegExp(`not retried.*HTTP ${code}`));
    });
  }
});
