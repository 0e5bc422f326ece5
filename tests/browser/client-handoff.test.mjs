// Unit tests of ChatClient's side of "people in the loop" (issue 12): who answers the session
// (its mode) from the session view, `session` events and the system messages that announce a
// change; asking for a person over the socket or, offline, over HTTP; typing with an agent's
// name; presence; a new conversation after a closed one. The pure helpers directly, the class
// through test doubles of fetch and the WebSocket (no browser, no server).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient, sessionInfoOf, modeFromMessages, sameSessionInfo } from '../../web/chat-client.js';

describe('session mode helpers', () => {
  test('sessionInfoOf: the mode, the agent only with mode agent, waitingSince only while waiting; no mode means bot', () => {
    assert.deepEqual(sessionInfoOf({ id: 'S', readUpTo: 0 }), { mode: 'bot' });
    assert.deepEqual(sessionInfoOf(null), { mode: 'bot' });
    assert.deepEqual(sessionInfoOf({ mode: 'nonsense' }), { mode: 'bot' });
    assert.deepEqual(sessionInfoOf({ mode: 'waiting', waitingSince: '2026-01-01T00:00:00Z', agent: { id: 'a', name: 'A' } }), { mode: 'waiting', waitingSince: '2026-01-01T00:00:00Z' });
    assert.deepEqual(sessionInfoOf({ mode: 'agent', agent: { id: 'a-1', name: 'Alex' }, waitingSince: 'x' }), { mode: 'agent', agent: { id: 'a-1', name: 'Alex' } });
    assert.deepEqual(sessionInfoOf({ mode: 'agent', agent: { id: 'a-1' } }), { mode: 'agent', agent: { id: 'a-1', name: 'An agent' } });
    assert.deepEqual(sessionInfoOf({ mode: 'closed' }), { mode: 'closed' });
  });

  test('modeFromMessages: the newest system message with data.mode wins; others are ignored', () => {
    const sys = (seq, data) => ({ id: `m${seq}`, seq, role: 'system', type: 'text', content: '…', data });
    assert.equal(modeFromMessages([]), null);
    assert.equal(modeFromMessages([{ id: 'u', seq: 1, role: 'user', data: { mode: 'closed' } }, sys(2, { bot: 'x' })]), null);
    const r = modeFromMessages([sys(5, { mode: 'agent', agent: { id: 'a-1', name: 'Alex' } }), sys(3, { mode: 'waiting' }), sys(4, { mode: 'bogus' })]);
    assert.deepEqual(r, { seq: 5, info: { mode: 'agent', agent: { id: 'a-1', name: 'Alex' } } });
    assert.ok(sameSessionInfo(r.info, { mode: 'agent', agent: { id: 'a-1', name: 'Alex' } }));
    assert.ok(!sameSessionInfo(r.info, { mode: 'agent', agent: { id: 'a-2', name: 'Alex' } }));
  });
});

describe('ChatClient with test doubles: handoff, mode, typing names, presence, a new conversation', () => {
  function harness({ mode = 'bot' } = {}) {
    const stored = [{ id: 'U1', seq: 1, sessionId: 'S1', role: 'user', type: 'text', content: 'Hi', status: 'answered', createdAt: '2026-01-01T00:00:00Z' }];
    const requests = [];
    const sockets = [];
    let sessions = 0;
    const state = { mode };
    const reply = (status, body) => ({ ok: status < 300, status, json: async () => body, headers: { get: () => null } });
    const fetch = async (url, init = {}) => {
      const u = new URL(url);
      requests.push([init.method ?? 'GET', u.pathname, init.body ?? null]);
      if (init.method === 'POST' && u.pathname === '/sessions') {
        sessions += 1;
        return reply(201, { sessionId: `S${sessions}`, token: `t${sessions}`, expiresAt: new Date(Date.now() + 86_400_000).toISOString(), websocketUrl: 'ws://chat.test/ws' });
      }
      const id = u.pathname.split('/')[2];
      const mine = stored.filter((m) => m.sessionId === id);
      if (u.pathname === `/sessions/${id}`) return reply(200, { session: { id, readUpTo: 0, mode: id === 'S1' ? state.mode : 'bot' }, messages: mine, hasMore: false });
      if (u.pathname === `/sessions/${id}/messages`) {
        const after = Number(u.searchParams.get('after'));
        return reply(200, { messages: mine.filter((m) => m.seq > after), hasMore: false });
      }
      if (u.pathname === `/sessions/${id}/handoff` && init.method === 'POST') {
        state.mode = 'waiting';
        return reply(200, { session: { id, mode: 'waiting', waitingSince: '2026-01-01T00:01:00Z' } });
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
    return { stored, requests, sockets, fetch, TestSocket, state };
  }

  const settle = () => new Promise((r) => setTimeout(r, 5));
  async function until(fn, what) {
    for (let i = 0; i < 400; i++) {
      if (fn()) return;
      await settle();
    }
    assert.fail(`timed out waiting for ${what}`);
  }

  async function started(t, opts) {
    const h = harness(opts);
    const storage = new Map();
    const client = new ChatClient({
      baseUrl: 'http://chat.test', fetch: h.fetch, WebSocket: h.TestSocket, backoffBaseMs: 1, backoffMaxMs: 2,
      storage: { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v), removeItem: (k) => storage.delete(k) },
    });
    t.after(() => client.stop());
    const events = [];
    for (const type of ['mode', 'typing', 'presence', 'reset']) client.on(type, (d) => events.push([type, d]));
    await client.start();
    h.sockets[0].open();
    await until(() => client.connectionState === 'open', 'the socket to open');
    return { ...h, client, events };
  }

  test('the mode comes from the session view; an old server without mode means bot', async (t) => {
    const a = await started(t, { mode: 'agent' });
    assert.equal(a.client.mode, 'agent');
    const b = await started(t, { mode: undefined });
    assert.equal(b.client.mode, 'bot');
    assert.deepEqual(b.events.filter(([k]) => k === 'mode'), []);
  });

  test('requestHandoff sends the handoff frame on the open socket; session events and the system message move the mode', async (t) => {
    const { client, sockets, requests, events } = await started(t);
    await client.requestHandoff();
    assert.deepEqual(sockets[0].sent.filter((f) => f.action === 'handoff'), [{ action: 'handoff' }]);
    assert.equal(requests.some(([, p]) => p.endsWith('/handoff')), false, 'no HTTP request while the socket is open');
    const sys = (seq, content, data) => ({ event: 'message', message: { id: `Y${seq}`, seq, sessionId: 'S1', role: 'system', type: 'text', content, data, status: 'delivered', createdAt: '2026-01-01T00:01:00Z' } });
    sockets[0].push(sys(2, 'Connecting you to a person…', { mode: 'waiting' }));
    assert.equal(client.mode, 'waiting');
    sockets[0].push({ event: 'session', session: { id: 'S1', mode: 'waiting', waitingSince: '2026-01-01T00:01:00Z' } });
    assert.equal(client.sessionInfo.waitingSince, '2026-01-01T00:01:00Z');
    sockets[0].push(sys(3, 'Alex joined the conversation', { mode: 'agent', agent: { id: 'a-1', name: 'Alex' } }));
    sockets[0].push({ event: 'session', session: { id: 'S1', mode: 'agent', agent: { id: 'a-1', name: 'Alex' } } });
    assert.deepEqual(client.sessionInfo, { mode: 'agent', agent: { id: 'a-1', name: 'Alex' } });
    assert.deepEqual(events.filter(([k]) => k === 'mode').map(([, d]) => [d.previous, d.mode]), [['bot', 'waiting'], ['waiting', 'waiting'], ['waiting', 'agent']]);
    // A session event of another session is not ours.
    sockets[0].push({ event: 'session', session: { sessionId: 'OTHER', mode: 'closed' } });
    assert.equal(client.mode, 'agent');
  });

  test('offline, requestHandoff falls back to POST /sessions/{id}/handoff and takes the mode from its answer', async (t) => {
    const { client, sockets, requests } = await started(t);
    sockets[0].readyState = 3; // the socket died; the browser has not said so yet
    await client.requestHandoff();
    assert.deepEqual(requests.filter(([, p]) => p.endsWith('/handoff')), [['POST', '/sessions/S1/handoff', '{}']]);
    assert.equal(client.mode, 'waiting');
    assert.equal(client.sessionInfo.waitingSince, '2026-01-01T00:01:00Z');
  });

  test('a change of mode missed while offline is learnt from the system message caught up with after', async (t) => {
    const { client, sockets, stored } = await started(t);
    sockets[0].drop();
    stored.push({ id: 'Y2', seq: 2, sessionId: 'S1', role: 'system', type: 'text', content: 'Alex joined the conversation', data: { mode: 'agent', agent: { id: 'a-1', name: 'Alex' } }, status: 'delivered', createdAt: '2026-01-01T00:02:00Z' });
    await until(() => sockets.length === 2, 'a new socket');
    sockets[1].open();
    await until(() => client.mode === 'agent', 'the mode from the caught-up system message');
    assert.equal(client.sessionInfo.agent.name, 'Alex');
    // An older announcement arriving later does not take it back.
    sockets[1].push({ event: 'message', message: { ...stored[1], id: 'Y0', seq: 1, data: { mode: 'waiting' } } });
    assert.equal(client.mode, 'agent');
  });

  test('typing carries the agent name; presence lists the participants', async (t) => {
    const { client, sockets, events } = await started(t);
    sockets[0].push({ event: 'typing', role: 'agent', name: 'Alex', isTyping: true });
    sockets[0].push({ event: 'typing', role: 'assistant', isTyping: true });
    assert.deepEqual(events.filter(([k]) => k === 'typing').map(([, d]) => d), [
      { role: 'agent', isTyping: true, name: 'Alex' },
      { role: 'assistant', isTyping: true },
    ]);
    sockets[0].push({ event: 'presence', participants: [{ role: 'user', id: 'guest', online: true }, { role: 'agent', id: 'a-1', name: 'Alex', online: false }, null, 'x'] });
    assert.deepEqual(client.participants, [{ role: 'user', id: 'guest', online: true }, { role: 'agent', id: 'a-1', name: 'Alex', online: false }]);
    assert.equal(events.filter(([k]) => k === 'presence').length, 1);
  });

  test('newConversation leaves a closed session: a new session, the list cleared, the mode back to bot', async (t) => {
    const { client, sockets, events } = await started(t);
    sockets[0].push({ event: 'session', session: { id: 'S1', mode: 'closed' } });
    assert.equal(client.mode, 'closed');
    const started2 = client.newConversation();
    await until(() => sockets.length === 2, 'the new session\'s socket');
    sockets[1].open();
    await started2;
    await until(() => client.connectionState === 'open', 'the new socket to open');
    assert.equal(client.sessionId, 'S2');
    assert.match(sockets[1].url, /sessionId=S2&token=t2/);
    assert.equal(client.mode, 'bot');
    assert.deepEqual(client.messages, []);
    assert.deepEqual(events.filter(([k]) => k === 'reset').map(([, d]) => d.sessionId), ['S2']);
  });
});
