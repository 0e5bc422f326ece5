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
  applyDelta, clearStreams, suggestionsOf,
} from '../../web/chat-client.js';

test('chat-client.js exports ChatClient, ChatApiError, ChatAttachmentError, uploadFile and the whole of chat-logic.js, as they are', () => {
  assert.deepEqual(Object.keys(client).sort(), ['ChatApiError', 'ChatAttachmentError', 'ChatClient', 'uploadFile', ...Object.keys(logic)].sort());
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

describe('streamed replies (delta frames)', () => {
  const at = (localOrder) => ({ createdAt: '2026-01-01T00:00:05Z', localOrder });
  const delta = (index, text, messageId = 'R1') => ({ event: 'delta', messageId, replyTo: 'id-1', index, text });

  test('the first delta adds a streaming reply after the stored messages; later ones append', () => {
    const local = { id: 'local:c9', clientMessageId: 'c9', role: 'user', type: 'text', content: 'later', status: 'queued', pending: true, localOrder: 1 };
    let r = applyDelta([msg(1), local], delta(0, 'Hel'), at(2));
    assert.equal(r.added, true);
    assert.equal(r.gap, false);
    assert.deepEqual(r.list.map((m) => m.id), ['id-1', 'local:c9', 'R1'], 'after stored messages, in local order');
    assert.deepEqual(r.message, {
      id: 'R1', role: 'assistant', type: 'text', content: 'Hel', status: 'delivered', createdAt: '2026-01-01T00:00:05Z',
      streaming: true, streamIndex: 0, replyTo: 'id-1', localOrder: 2,
    });
    r = applyDelta(r.list, delta(1, 'lo, '), at(3));
    assert.equal(r.added, false);
    assert.equal(r.message.content, 'Hello, ');
    assert.equal(r.message.streamIndex, 1);
    assert.equal(r.list.length, 3);
  });

  test('a repeated or older index changes nothing; a skipped one is tolerated and flagged', () => {
    let { list } = applyDelta([], delta(0, 'a'), at(1));
    ({ list } = applyDelta(list, delta(1, 'b'), at(1)));
    const same = applyDelta(list, delta(1, 'b'), at(1));
    assert.equal(same.changed, false);
    assert.equal(same.list, list, 'the same array');
    assert.equal(applyDelta(list, delta(0, 'a'), at(1)).changed, false);
    const gap = applyDelta(list, delta(4, 'e'), at(1));
    assert.equal(gap.gap, true);
    assert.equal(gap.message.content, 'abe', 'the text goes on; the stored reply will fix it');
    assert.equal(gap.message.streamIndex, 4);
  });

  test('a delta of a stored reply, of one whose start was missed, or a malformed frame changes nothing', () => {
    const stored = [msg(1), msg(2, { id: 'R1', replyTo: 'id-1', content: 'Done' })];
    assert.equal(applyDelta(stored, delta(3, ' late'), at(1)).changed, false, 'the reply is stored already');
    assert.equal(applyDelta([msg(1)], delta(2, 'middle'), at(1)).changed, false, 'joined mid-stream: the reply comes whole');
    for (const bad of [
      { event: 'delta', index: 0, text: 'x' },
      { ...delta(0, 'x'), messageId: 7 },
      { ...delta(0, 'x'), index: -1 },
      { ...delta(0, 'x'), index: 1.5 },
      { ...delta(0, 'x'), index: '0' },
      { ...delta(0, 'x'), text: null },
    ]) assert.equal(applyDelta([], bad, at(1)).changed, false, JSON.stringify(bad));
  });

  test('the stored reply replaces the streamed one whole, takes its place by seq, and ends streaming', () => {
    let { list } = applyDelta([msg(1)], delta(0, 'Half an ans'), at(1));
    const local = { id: 'local:c5', clientMessageId: 'c5', role: 'user', type: 'text', content: 'next', status: 'queued', pending: true, localOrder: 2 };
    ({ list } = mergeMessages(list, [local]));
    const stored = msg(2, { id: 'R1', replyTo: 'id-1', content: 'Half an answer, then the rest.', status: 'delivered', data: { suggestions: ['Thanks'] } });
    const r = mergeMessage(list, stored);
    assert.equal(r.added, false);
    assert.deepEqual(r.message, stored, 'nothing of the stream is left (streaming, streamIndex, localOrder)');
    assert.deepEqual(r.list.map((m) => m.id), ['id-1', 'R1', 'local:c5']);
    // A whole message replaces it even when the text is shorter (the stream had a gap).
    ({ list } = applyDelta([], delta(0, 'abc'), at(1)));
    assert.equal(mergeMessage(list, msg(1, { id: 'R1', content: 'ab' })).message.content, 'ab');
    // A status update of a streaming message is merged as usual.
    assert.equal(mergeMessage(list, { id: 'R1', status: 'delivered' }).message.streaming, true);
  });

  test('clearStreams drops unfinished streams, except those kept', () => {
    let { list } = applyDelta([msg(1)], delta(0, 'a', 'R1'), at(1));
    ({ list } = applyDelta(list, delta(0, 'b', 'R2'), at(2)));
    const r = clearStreams(list, new Set(['R2']));
    assert.deepEqual(r.cleared, ['R1']);
    assert.deepEqual(r.list.map((m) => m.id), ['id-1', 'R2']);
    assert.equal(clearStreams(r.list, new Set(['R2'])).list, r.list, 'nothing to clear: the same array');
    assert.deepEqual(clearStreams(list).cleared, ['R1', 'R2']);
  });

  test('suggestionsOf: strings only, trimmed, no repeats, bounded', () => {
    assert.deepEqual(suggestionsOf(msg(2, { data: { suggestions: [' Yes ', 'No', 'Yes', '', 7, null, { t: 1 }, 'x'.repeat(201), 'Maybe'] } })), ['Yes', 'No', 'Maybe']);
    assert.deepEqual(suggestionsOf(msg(2, { data: { suggestions: 'Yes' } })), []);
    assert.deepEqual(suggestionsOf(msg(2)), []);
    assert.deepEqual(suggestionsOf(null), []);
    assert.deepEqual(suggestionsOf({ data: { suggestions: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'] } }), ['a', 'b', 'c', 'd', 'e', 'f']);
    assert.deepEqual(suggestionsOf({ data: { suggestions: ['a', 'b', 'c'] } }, { max: 2 }), ['a', 'b']);
  });
});

describe('ChatClient with a test double of the socket: deltas, the stored reply, reconnects', () => {
  /** An in-memory server behind `fetch`, and WebSockets the test opens, feeds and drops. */
  function harness() {
    const stored = [];
    const sockets = [];
    const session = { sessionId: 'S1', token: 't', expiresAt: new Date(Date.now() + 86_400_000).toISOString(), websocketUrl: 'ws://chat.test/ws' };
    const reply = (status, body) => ({ ok: status < 300, status, json: async () => body, headers: { get: () => null } });
    const fetch = async (url, init = {}) => {
      const u = new URL(url);
      if (init.method === 'POST' && u.pathname === '/sessions') return reply(201, session);
      if (u.pathname === '/sessions/S1') return reply(200, { session: { id: 'S1', readUpTo: 0 }, messages: stored.slice(-50), hasMore: false });
      if (u.pathname === '/sessions/S1/messages') {
        const after = Number(u.searchParams.get('after'));
        return reply(200, { messages: stored.filter((m) => m.seq > after), hasMore: false });
      }
      return reply(404, { error: { code: 'not_found', message: u.pathname } });
    };
    class TestSocket {
      constructor(url) {
        this.url = url;
        this.readyState = 0;
        this.sent = [];
        sockets.push(this);
      }
      send(data) { this.sent.push(JSON.parse(data)); }
      close() { this.readyState = 3; }
      open() { this.readyState = 1; this.onopen?.(); }
      push(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
      drop() { this.readyState = 3; this.onclose?.({ code: 1006 }); }
    }
    return { stored, sockets, fetch, TestSocket };
  }

  const settle = () => new Promise((r) => setTimeout(r, 5));
  async function until(fn, what) {
    for (let i = 0; i < 400; i++) {
      if (fn()) return;
      await settle();
    }
    assert.fail(`timed out waiting for ${what}`);
  }
  const storedReply = (seq, id, content) => ({ id, seq, sessionId: 'S1', role: 'assistant', type: 'text', content, status: 'delivered', createdAt: '2026-01-01T00:00:09Z', replyTo: 'U1' });

  /** A started client on the test double; stopped after the test, even a failed one (its
   * timers would keep the test process alive). */
  async function started(t) {
    const h = harness();
    h.stored.push({ id: 'U1', seq: 1, sessionId: 'S1', role: 'user', type: 'text', content: 'Hi', status: 'dispatched', createdAt: '2026-01-01T00:00:00Z' });
    const { ChatClient } = await import('../../web/chat-client.js');
    const storage = new Map();
    const client = new ChatClient({
      baseUrl: 'http://chat.test', fetch: h.fetch, WebSocket: h.TestSocket, backoffBaseMs: 1, backoffMaxMs: 2,
      storage: { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v), removeItem: (k) => storage.delete(k) },
    });
    t.after(() => client.stop());
    const events = [];
    for (const type of ['delta', 'streamCleared', 'typing']) client.on(type, (d) => events.push([type, d]));
    await client.start();
    h.sockets[0].open();
    await until(() => client.connectionState === 'open', 'the socket to open');
    return { ...h, client, events };
  }
  const delta = (messageId, index, text) => ({ event: 'delta', messageId, replyTo: 'U1', index, text });

  test('deltas build a streaming reply; the stored reply replaces it; a late delta is ignored', async (t) => {
    const { client, sockets, events } = await started(t);
    const ws = sockets[0];
    ws.push(delta('R1', 0, 'Step **one**'));
    ws.push(delta('R1', 1, ', step two'));
    ws.push(delta('R1', 1, ', step two')); // repeated: ignored
    let r = client.messages.find((m) => m.id === 'R1');
    assert.equal(r.content, 'Step **one**, step two');
    assert.equal(r.streaming, true);
    assert.equal(r.seq, undefined);
    assert.deepEqual(events.filter(([t]) => t === 'delta').map(([, d]) => [d.index, d.text, d.gap, d.message.content]), [
      [0, 'Step **one**', false, 'Step **one**'],
      [1, ', step two', false, 'Step **one**, step two'],
    ]);
    assert.ok(events.some(([t, d]) => t === 'typing' && d.role === 'assistant' && d.isTyping === false), 'the typing indicator goes when the reply shows');
    ws.push(delta('R1', 3, ' (gap)'));
    assert.equal(events.at(-1)[1].gap, true);
    const final = storedReply(2, 'R1', 'Step **one**, step two, step three.');
    ws.push({ event: 'message', message: final });
    r = client.messages.find((m) => m.id === 'R1');
    assert.deepEqual(r, final, 'the stored reply, whole; no longer streaming');
    assert.equal(client.messages.find((m) => m.id === 'U1').status, 'answered');
    ws.push(delta('R1', 4, ' late'));
    assert.deepEqual(client.messages.find((m) => m.id === 'R1'), final);
    assert.equal(client.messages.length, 2);
  });

  test('after a reconnect: a stream stored meanwhile comes by after, one going on stays, one that died is cleared', async (t) => {
    const { client, sockets, stored, events } = await started(t);
    sockets[0].push(delta('DONE', 0, 'Finished while '));
    sockets[0].push(delta('GOES_ON', 0, 'Still '));
    sockets[0].push(delta('DIED', 0, 'Never fin'));
    assert.deepEqual(client.messages.filter((m) => m.streaming).map((m) => m.id), ['DONE', 'GOES_ON', 'DIED']);
    sockets[0].drop();
    // While the client is away: DONE is stored; GOES_ON is still being written; DIED never ends.
    stored.push(storedReply(2, 'DONE', 'Finished while you were away.'));
    await until(() => sockets.length === 2, 'a new socket');
    sockets[1].open();
    sockets[1].push(delta('GOES_ON', 3, 'writing')); // right after the open, before its catch-up ends
    await until(() => client.connectionState === 'open', 'the reconnect');
    const byId = Object.fromEntries(client.messages.map((m) => [m.id, m]));
    assert.equal(byId.DONE.content, 'Finished while you were away.');
    assert.equal(byId.DONE.streaming, undefined);
    assert.equal(byId.GOES_ON.streaming, true);
    assert.equal(byId.GOES_ON.content, 'Still writing');
    assert.equal(byId.DIED, undefined, 'the stream that will not finish here is cleared');
    assert.deepEqual(events.filter(([t]) => t === 'streamCleared').map(([, d]) => d.messageIds), [['DIED']]);
    // Its late deltas do not bring a half reply back; its stored reply comes whole.
    sockets[1].push(delta('DIED', 1, 'ished'));
    assert.equal(client.messages.some((m) => m.id === 'DIED'), false);
    sockets[1].push({ event: 'message', message: storedReply(3, 'DIED', 'Never finished, but stored.') });
    assert.equal(client.messages.find((m) => m.id === 'DIED').content, 'Never finished, but stored.');
  });

  test('a make-before-break socket replacement clears nothing', async (t) => {
    const { client, sockets } = await started(t);
    sockets[0].push(delta('R1', 0, 'Going on'));
    client._openSocket(true); // the age limit's proactive reconnect
    sockets[1].open();
    await until(() => client._ws === sockets[1], 'the replacement');
    await settle();
    assert.equal(client.messages.find((m) => m.id === 'R1')?.streaming, true);
    sockets[1].push(delta('R1', 1, ' and on'));
    assert.equal(client.messages.find((m) => m.id === 'R1').content, 'Going on and on');
  });
});

describe('a signed-in user\'s list of conversations', () => {
  const now = Date.parse('2025-06-10T12:00:00Z');
  test('relativeTime: just now, minutes, hours, yesterday, days, then the date; garbage is empty', () => {
    const { relativeTime } = client;
    assert.equal(relativeTime('2025-06-10T11:59:30Z', now), 'just now');
    assert.equal(relativeTime('2025-06-10T12:00:05Z', now), 'just now', 'a clock a little ahead is not "in the future"');
    assert.equal(relativeTime('2025-06-10T11:55:00Z', now), '5 min ago');
    assert.equal(relativeTime(now - 59 * 60_000, now), '59 min ago');
    assert.equal(relativeTime(new Date(now - 3 * 3600_000), now), '3 h ago');
    assert.equal(relativeTime('2025-06-09T10:00:00Z', now), 'yesterday');
    assert.equal(relativeTime('2025-06-06T12:00:00Z', now), '4 days ago');
    assert.equal(relativeTime('2025-05-01T12:00:00Z', now, 'en-US'), 'May 1, 2025');
    assert.equal(relativeTime('not a time', now), '');
  });

  test('mergeConversations: each session once, the newer entry wins, newest activity first', () => {
    const { mergeConversations } = client;
    const c = (id, updatedAt, title = id) => ({ sessionId: id, title, createdAt: '2025-06-01T00:00:00Z', updatedAt, unreadCount: 0, mode: 'bot' });
    const first = [c('s3', '2025-06-10T10:00:00Z'), c('s2', '2025-06-09T10:00:00Z')];
    // While the second page was read, s2 got a message: it shows up there again, newer.
    const second = [c('s2', '2025-06-10T11:00:00Z', 's2 newer'), c('s1', '2025-06-08T10:00:00Z')];
    const merged = mergeConversations(first, second);
    assert.deepEqual(merged.map((x) => [x.sessionId, x.title]), [['s2', 's2 newer'], ['s3', 's3'], ['s1', 's1']]);
    // An older copy does not replace a newer one.
    assert.deepEqual(mergeConversations(merged, [c('s2', '2025-06-01T00:00:00Z', 'stale')]).map((x) => x.title), ['s2 newer', 's3', 's1']);
    assert.deepEqual(mergeConversations([], []), []);
  });
});
