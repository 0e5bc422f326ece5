// Unit tests of ChatClient's pure logic (no browser, no server). The logic lives in
// web/chat-logic.js; it is imported here as users import it, from chat-client.js.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as client from '../../web/chat-client.js';
import * as logic from '../../web/chat-logic.js';
import {
  backoffDelay, mergeMessage, mergeMessages, advanceCursor, hasGap, furthestStatus,
  addPending, markSent, settlePending, settleFromMessages, setPendingState, sendsDue,
  createTypingDebouncer, jwtSubject, sessionUsable, newClientMessageId, DEFAULTS,
} from '../../web/chat-client.js';

test('chat-client.js exports ChatClient, ChatApiError and the whole of chat-logic.js, as they are', () => {
  assert.deepEqual(Object.keys(client).sort(), ['ChatApiError', 'ChatClient', ...Object.keys(logic)].sort());
  for (const [name, value] of Object.entries(logic)) assert.equal(client[name], value, name);
  assert.ok(Object.keys(logic).length >= 19, `chat-logic.js exports ${Object.keys(logic).length} names`);
});

const msg = (seq, extra = {}) => ({
  id: `id-${seq}`, seq, role: seq % 2 ? 'user' : 'assistant', type: 'text',
  content: `m${seq}`, status: 'received', createdAt: '2026-01-01T00:00:00Z', ...extra,
});

describe('backoffDelay', () => {
  test('grows exponentially and is capped', () => {
    const top = () => 0; // random 0: no jitter taken off, the delay is the cap itself
    assert.deepEqual([0, 1, 2, 3, 4].map((n) => backoffDelay(n, { baseMs: 100, maxMs: 1000 }, top)), [100, 200, 400, 800, 1000]);
    assert.equal(backoffDelay(50, { baseMs: 100, maxMs: 1000 }, top), 1000);
    assert.equal(backoffDelay(1e9, {}, top), DEFAULTS.backoffMaxMs);
  });

  test('jitter stays within [cap * (1 - jitter), cap]', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const cap = Math.min(30_000, 500 * 2 ** attempt);
      for (const r of [0, 0.25, 0.5, 0.999999]) {
        const d = backoffDelay(attempt, { baseMs: 500, maxMs: 30_000, jitter: 0.5 }, () => r);
        assert.ok(d >= cap * 0.5 - 1 && d <= cap, `attempt ${attempt}, random ${r}: ${d} not in [${cap / 2}, ${cap}]`);
      }
    }
    // Real randomness: many samples, all in bounds, and not all equal.
    const samples = Array.from({ length: 500 }, () => backoffDelay(3, { baseMs: 1000, maxMs: 60_000, jitter: 0.5 }));
    assert.ok(samples.every((d) => d >= 4000 && d <= 8000));
    assert.ok(new Set(samples).size > 10, 'jitter spreads the delays');
  });

  test('jitter 0 is deterministic, jitter 1 may go down to 0; bad input is clamped', () => {
    assert.equal(backoffDelay(2, { baseMs: 100, jitter: 0 }, () => 0.9), 400);
    assert.equal(backoffDelay(2, { baseMs: 100, jitter: 1 }, () => 1), 0);
    assert.equal(backoffDelay(-3, { baseMs: 100, jitter: 0 }), 100);
    assert.equal(backoffDelay(2, { baseMs: 100, jitter: 7 }, () => 0.5), 200);
  });
});

describe('merge and dedupe', () => {
  test('orders by seq and drops duplicates by id', () => {
    let { list } = mergeMessages([], [msg(3), msg(1), msg(2), msg(1), msg(3)]);
    assert.deepEqual(list.map((m) => m.seq), [1, 2, 3]);
    const again = mergeMessage(list, msg(2));
    assert.equal(again.changed, false);
    assert.equal(again.list, list, 'an unchanged merge returns the same array');
    ({ list } = mergeMessages(list, [msg(5), msg(4)]));
    assert.deepEqual(list.map((m) => m.id), ['id-1', 'id-2', 'id-3', 'id-4', 'id-5']);
  });

  test('an optimistic message is replaced by the stored one (by clientMessageId), never doubled', () => {
    const local = { id: 'local:c1', clientMessageId: 'c1', role: 'user', type: 'text', content: 'hi', status: 'sending', pending: true, localOrder: 1 };
    let { list } = mergeMessages([msg(1), msg(2)], [local]);
    assert.deepEqual(list.map((m) => m.id), ['id-1', 'id-2', 'local:c1'], 'unsent messages go last');
    // The ack: id and seq only.
    let r = mergeMessage(list, { id: 'S3', seq: 3, clientMessageId: 'c1', role: 'user', status: 'received', pending: undefined });
    assert.equal(r.added, false);
    list = r.list;
    assert.equal(list.length, 3);
    assert.deepEqual(list[2], { id: 'S3', seq: 3, clientMessageId: 'c1', role: 'user', type: 'text', content: 'hi', status: 'received' });
    // The same message pushed and then caught up: still one copy.
    ({ list } = mergeMessages(list, [msg(3, { id: 'S3', clientMessageId: 'c1', role: 'user', content: 'hi' }), msg(3, { id: 'S3', clientMessageId: 'c1', role: 'user', content: 'hi' })]));
    assert.equal(list.filter((m) => m.clientMessageId === 'c1').length, 1);
  });

  test('the stored copy may arrive before the ack (another order, same result)', () => {
    const local = { id: 'local:c2', clientMessageId: 'c2', role: 'user', type: 'text', content: 'yo', status: 'sending', pending: true, localOrder: 1 };
    let { list } = mergeMessages([], [local, msg(1, { id: 'S1', clientMessageId: 'c2', content: 'yo' })]);
    ({ list } = mergeMessages(list, [{ id: 'S1', seq: 1, clientMessageId: 'c2', role: 'user', status: 'received', pending: undefined }]));
    assert.equal(list.length, 1);
    assert.equal(list[0].id, 'S1');
    assert.equal(list[0].pending, undefined);
  });

  test('a late page never moves a status backwards', () => {
    let { list } = mergeMessages([], [msg(1, { status: 'answered' })]);
    ({ list } = mergeMessages(list, [msg(1, { status: 'dispatched' })]));
    assert.equal(list[0].status, 'answered');
    ({ list } = mergeMessages(list, [{ id: 'id-1', status: 'answered' }]));
    assert.equal(furthestStatus('received', 'dispatched'), 'dispatched');
    assert.equal(furthestStatus('dispatched', 'received'), 'dispatched');
    assert.equal(furthestStatus('dispatched', 'failed'), 'failed');
    assert.equal(furthestStatus(undefined, 'received'), 'received');
  });

  test('messages of other users with a clientMessageId do not swallow replies', () => {
    const { list } = mergeMessages([], [
      msg(1, { clientMessageId: 'x', role: 'user' }),
      msg(2, { clientMessageId: 'x', role: 'assistant' }), // a reply never matches by clientMessageId
    ]);
    assert.equal(list.length, 2);
  });
});

describe('catch-up cursor', () => {
  test('advances only over contiguous seqs', () => {
    assert.equal(advanceCursor(0, [1, 2, 3, 5, 6]), 3);
    assert.equal(advanceCursor(3, new Set([1, 2, 3, 5, 6])), 3);
    assert.equal(advanceCursor(3, [4, 5, 6]), 6);
    assert.equal(advanceCursor(0, []), 0);
    assert.equal(advanceCursor(10, [1, 2]), 10, 'never goes back');
  });

  test('a gap is detected so the client catches up', () => {
    assert.equal(hasGap(3, 4), false);
    assert.equal(hasGap(3, 5), true);
    assert.equal(hasGap(3, 2), false);
  });

  test('after a missed push the cursor stays below it, so after=<cursor> re-fetches it', () => {
    const seen = new Set([1, 2]);
    let cursor = advanceCursor(0, seen);
    seen.add(4); // 3 was missed while 4 was pushed
    cursor = advanceCursor(cursor, seen);
    assert.equal(cursor, 2);
    seen.add(3); // the page after=2 brings 3 (and 4 again, deduped by id)
    assert.equal(advanceCursor(cursor, seen), 4);
  });
});

describe('pending sends', () => {
  test('queued, sent, acked', () => {
    let p = addPending(new Map(), { clientMessageId: 'a', content: 'A', createdAt: 1 });
    p = addPending(p, { clientMessageId: 'b', content: 'B', createdAt: 2 });
    assert.deepEqual(sendsDue(p, 100).map((x) => x.clientMessageId), ['a', 'b']);
    p = markSent(p, 'a', 100);
    assert.equal(p.get('a').state, 'sending');
    assert.equal(p.get('a').attempts, 1);
    assert.deepEqual(sendsDue(p, 200, { ackTimeoutMs: 1000 }).map((x) => x.clientMessageId), ['b'], 'in flight: not resent before the ack timeout');
    assert.deepEqual(sendsDue(p, 1200, { ackTimeoutMs: 1000 }).map((x) => x.clientMessageId), ['a', 'b'], 'no ack in time: resent');
    p = settlePending(p, 'a');
    assert.deepEqual([...p.keys()], ['b']);
    assert.equal(settlePending(p, 'zzz'), p, 'settling an unknown id changes nothing');
  });

  test('after a reconnect every unsettled send goes again, oldest first; failed ones wait', () => {
    let p = new Map();
    p = addPending(p, { clientMessageId: 'late', content: 'L', createdAt: 5 });
    p = addPending(p, { clientMessageId: 'early', content: 'E', createdAt: 1 });
    p = addPending(p, { clientMessageId: 'bad', content: 'X', createdAt: 3 });
    p = markSent(p, 'late', 10);
    p = setPendingState(p, 'bad', 'failed', { error: 'too long' });
    assert.deepEqual(sendsDue(p, 11, { reconnected: true }).map((x) => x.clientMessageId), ['early', 'late']);
    assert.equal(p.get('bad').error, 'too long');
    p = setPendingState(p, 'bad', 'queued');
    assert.deepEqual(sendsDue(p, 11, { ackTimeoutMs: 1000 }).map((x) => x.clientMessageId), ['early', 'bad']);
  });

  test('a send found in a history page is settled (so it is not sent again)', () => {
    let p = addPending(new Map(), { clientMessageId: 'a', content: 'A', createdAt: 1 });
    p = addPending(p, { clientMessageId: 'b', content: 'B', createdAt: 2 });
    p = settleFromMessages(p, [msg(1, { clientMessageId: 'a' }), msg(2)]);
    assert.deepEqual([...p.keys()], ['b']);
  });

  test('the helpers never mutate their input', () => {
    const p0 = addPending(new Map(), { clientMessageId: 'a', content: 'A', createdAt: 1 });
    const p1 = markSent(p0, 'a', 5);
    assert.equal(p0.get('a').state, 'queued');
    settlePending(p1, 'a');
    assert.equal(p1.size, 1);
  });
});

describe('typing debounce', () => {
  function fakeTimers() {
    let t = 0;
    let timers = [];
    return {
      now: () => t,
      setTimeout: (f, ms) => { const h = { f, at: t + ms }; timers.push(h); return h; },
      clearTimeout: (h) => { timers = timers.filter((x) => x !== h); },
      advance(ms) {
        t += ms;
        for (const h of timers.filter((x) => x.at <= t)) { timers = timers.filter((x) => x !== h); h.f(); }
      },
    };
  }

  test('true at once, repeated at most every repeatMs, false after idle', () => {
    const sent = [];
    const clock = fakeTimers();
    const d = createTypingDebouncer((v) => sent.push(v), { repeatMs: 3000, idleMs: 2000, ...clock });
    d.keystroke();
    for (let i = 0; i < 10; i++) { clock.advance(500); d.keystroke(); } // 5 s of typing
    assert.deepEqual(sent, [true, true], 'one at the start, one after 3 s');
    clock.advance(1999);
    assert.deepEqual(sent, [true, true]);
    clock.advance(1);
    assert.deepEqual(sent, [true, true, false]);
    assert.equal(d.typing, false);
  });

  test('stop() sends false once, only when typing', () => {
    const sent = [];
    const d = createTypingDebouncer((v) => sent.push(v), fakeTimers());
    d.stop();
    assert.deepEqual(sent, []);
    d.keystroke();
    d.stop();
    d.stop();
    assert.deepEqual(sent, [true, false]);
  });
});

describe('sessions and ids', () => {
  const jwt = (payload) => `e30.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`;

  test('a stored session is reused until it nearly expires, and only for the same user', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    const s = { sessionId: 's', token: 't', websocketUrl: 'ws://x/ws', expiresAt: '2026-01-01T01:00:00Z' };
    assert.equal(sessionUsable(s, now), true);
    assert.equal(sessionUsable(s, now + 3600_000 - 30_000), false, 'inside the renew margin');
    assert.equal(sessionUsable({ ...s, token: null }, now), false, 'a rejected token');
    assert.equal(sessionUsable(null, now), false);
    assert.equal(sessionUsable({ ...s, expiresAt: 'garbage' }, now), false);
    assert.equal(sessionUsable(s, now, 60_000, 'user-1'), false, 'a guest session is not reused for a signed-in user');
    assert.equal(sessionUsable({ ...s, subject: 'user-1' }, now, 60_000, 'user-1'), true);
    assert.equal(sessionUsable({ ...s, subject: 'user-1' }, now, 60_000, 'user-2'), false);
  });

  test('jwtSubject reads sub, and is null on garbage', () => {
    assert.equal(jwtSubject(jwt({ sub: 'user-42', n: 'é' })), 'user-42');
    assert.equal(jwtSubject(jwt({ nope: 1 })), null);
    assert.equal(jwtSubject('not a jwt'), null);
  });

  test('clientMessageIds are unique printable ASCII of at most 128 characters', () => {
    const ids = new Set(Array.from({ length: 1000 }, newClientMessageId));
    assert.equal(ids.size, 1000);
    for (const id of ids) assert.match(id, /^[\x21-\x7e]{1,128}$/);
  });
});

describe('ChatClient frames', () => {
  test('a status pushed before its message arrives is not lost when a catch-up page brings the message older', async () => {
    const { ChatClient } = await import('../../web/chat-client.js');
    const client = new ChatClient({ baseUrl: 'http://127.0.0.1:1', fetch: async () => { throw new Error('offline'); } });
    const ws = {};
    client._ws = ws;
    client._session = { sessionId: 's1' };
    // The reply's `answered` status comes over the socket while the catch-up request is in
    // flight; the page it returns was read before the status changed.
    client._onFrame(ws, JSON.stringify({ event: 'status', messageId: 'id-3', status: 'answered' }));
    client._merge([msg(3, { status: 'dispatched', sessionId: 's1' }), msg(4, { sessionId: 's1' })]);
    assert.equal(client.messages.find((m) => m.id === 'id-3').status, 'answered');
    // An early status never moves a newer one back.
    client._onFrame(ws, JSON.stringify({ event: 'status', messageId: 'id-5', status: 'dispatched' }));
    client._merge([msg(5, { status: 'answered', sessionId: 's1' })]);
    assert.equal(client.messages.find((m) => m.id === 'id-5').status, 'answered');
  });

  test('a reply caught up by seq answers the message it replies to, whose push came while offline', async () => {
    const { ChatClient } = await import('../../web/chat-client.js');
    const client = new ChatClient({ baseUrl: 'http://127.0.0.1:1', fetch: async () => { throw new Error('offline'); } });
    client._session = { sessionId: 's1' };
    client._merge([msg(3, { status: 'dispatched', sessionId: 's1' })]);
    // Offline: the reply was stored and the `answered` status pushed to nobody. The catch-up
    // (`after=3`) brings only the reply.
    client._merge([msg(4, { replyTo: 'id-3', sessionId: 's1' })]);
    assert.equal(client.messages.find((m) => m.id === 'id-3').status, 'answered');
    // A system error about a message means it failed; a later answer still wins.
    client._merge([msg(5, { status: 'dispatched' })]);
    client._merge([msg(6, { role: 'system', type: 'error', replyTo: 'id-5' })]);
    assert.equal(client.messages.find((m) => m.id === 'id-5').status, 'failed');
    client._merge([msg(8, { replyTo: 'id-5' })]);
    assert.equal(client.messages.find((m) => m.id === 'id-5').status, 'answered');
    // A reply in the same page as its message, and one before its message arrives.
    client._merge([msg(9, { status: 'received' }), msg(10, { replyTo: 'id-9' })]);
    assert.equal(client.messages.find((m) => m.id === 'id-9').status, 'answered');
    client._merge([msg(12, { replyTo: 'id-11' })]);
    client._merge([msg(11, { status: 'dispatched' })]);
    assert.equal(client.messages.find((m) => m.id === 'id-11').status, 'answered');
  });
});
