// Unit tests of ChatClient and merged frames (issue 14): the client opts in with `v=2` on its
// WebSocket URL, and one round ends the same whether the server merges frames (`ack` with
// `message`, `status` with `typing`, `message` with `status`) or sends them one by one, as an
// older server does. Through test doubles of fetch and the WebSocket (no browser, no server).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient } from '../../web/chat-client.js';

describe('ChatClient: merged frames (v=2) and the old ones', () => {
  const reply = (status, body) => ({ ok: status < 300, status, json: async () => body, headers: { get: () => null } });
  const fetch = async (url, init = {}) => {
    const u = new URL(url);
    if (init.method === 'POST' && u.pathname === '/sessions') {
      return reply(201, { sessionId: 'S1', token: 't1', expiresAt: new Date(Date.now() + 86_400_000).toISOString(), websocketUrl: 'ws://chat.test/ws' });
    }
    if (u.pathname === '/sessions/S1') return reply(200, { session: { id: 'S1', readUpTo: 0, mode: 'bot' }, messages: [], hasMore: false });
    if (u.pathname === '/sessions/S1/messages') return reply(200, { messages: [], hasMore: false });
    return reply(404, { error: { code: 'not_found', message: u.pathname } });
  };
  const sockets = [];
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
  }
  const settle = () => new Promise((r) => setTimeout(r, 5));
  async function until(fn, what) {
    for (let i = 0; i < 400; i++) {
      if (fn()) return;
      await settle();
    }
    assert.fail(`timed out waiting for ${what}`);
  }

  /** A started client on an open socket; the frames of one round; what it ends with. */
  async function round(t, frames) {
    sockets.length = 0;
    const storage = new Map();
    const client = new ChatClient({
      baseUrl: 'http://chat.test', fetch, WebSocket: TestSocket, backoffBaseMs: 1, backoffMaxMs: 2,
      storage: { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v), removeItem: (k) => storage.delete(k) },
    });
    t.after(() => client.stop());
    const events = [];
    for (const type of ['ack', 'status', 'typing']) client.on(type, (d) => events.push([type, d]));
    await client.start();
    const ws = sockets[0];
    ws.open();
    await until(() => client.connectionState === 'open', 'the socket to open');
    client.send('Hi', { clientMessageId: 'cm-1' });
    await until(() => ws.sent.some((f) => f.action === 'sendMessage'), 'the send');
    const user = { id: 'U1', seq: 1, sessionId: 'S1', role: 'user', type: 'text', content: 'Hi', clientMessageId: 'cm-1', status: 'received', createdAt: '2026-01-01T00:00:00Z' };
    const answer = { id: 'A2', seq: 2, sessionId: 'S1', role: 'assistant', type: 'text', content: 'Hello', replyTo: 'U1', status: 'delivered', createdAt: '2026-01-01T00:00:01Z' };
    for (const f of frames(user, answer)) ws.push(f);
    const shown = client.messages.map((m) => [m.id, m.role, m.content, m.status, !!m.pending]);
    return { url: ws.url, shown, events };
  }

  const ack = { event: 'ack', clientMessageId: 'cm-1', messageId: 'U1', seq: 1 };
  const status = (s) => ({ event: 'status', sessionId: 'S1', messageId: 'U1', status: s });
  const typing = { event: 'typing', role: 'assistant', isTyping: true };

  test('the client asks for merged frames on its WebSocket URL', async (t) => {
    const { url } = await round(t, () => []);
    const q = new URL(url).searchParams;
    assert.deepEqual([q.get('sessionId'), q.get('token'), q.get('v')], ['S1', 't1', '2']);
  });

  test('a round in merged frames ends as the same round in old frames: messages, statuses, events', async (t) => {
    const merged = await round(t, (user, answer) => [
      { ...ack, message: user },
      { ...status('dispatched'), typing: { role: 'assistant', isTyping: true } },
      { event: 'message', message: answer, status: { sessionId: 'S1', messageId: 'U1', status: 'answered' } },
    ]);
    const old = await round(t, (user, answer) => [
      ack,
      { event: 'message', message: user },
      status('dispatched'),
      typing,
      { event: 'message', message: answer },
      status('answered'),
    ]);
    const expected = [['U1', 'user', 'Hi', 'answered', false], ['A2', 'assistant', 'Hello', 'delivered', false]];
    assert.deepEqual(merged.shown, expected);
    assert.deepEqual(old.shown, expected);
    assert.deepEqual(merged.events, old.events, 'the same events, in the same order');
    assert.deepEqual(merged.events.map(([k, d]) => [k, d.status ?? d.isTyping ?? d.messageId]), [
      ['ack', 'U1'], ['status', 'dispatched'], ['typing', true], ['typing', false], ['status', 'answered'],
    ]);
  });

  test('an ack with its message but no clientMessageId still shows the message', async (t) => {
    const { shown } = await round(t, (user) => [{ event: 'ack', messageId: 'U9', seq: 1, message: { ...user, id: 'U9', clientMessageId: undefined, content: 'Other' } }]);
    assert.ok(shown.some(([id, , content]) => id === 'U9' && content === 'Other'), JSON.stringify(shown));
  });
});
