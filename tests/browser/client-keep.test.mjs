// Unit tests of ChatClient's side of "conversations people keep" (issue 13): which session a
// start opens for a signed-in user (their latest conversation on a device with none stored; a
// new one only when they have none, or when asked), through test doubles of fetch and the
// WebSocket (no browser, no server).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient } from '../../web/chat-client.js';

/** An app JWT whose payload names `sub` (the client reads the subject, never the signature). */
const jwtOf = (sub) => `e30.${Buffer.from(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + 3600 })).toString('base64url')}.sig`;

function harness({ conversations = [], listStatus = 200 } = {}) {
  const requests = [];
  let created = 0;
  const reply = (status, body) => ({ ok: status < 300, status, json: async () => body, headers: { get: () => null } });
  const session = (id) => ({ sessionId: id, token: `t-${id}-${requests.length}`, expiresAt: new Date(Date.now() + 86_400_000).toISOString(), websocketUrl: 'ws://chat.test/ws' });
  const fetch = async (url, init = {}) => {
    const u = new URL(url);
    const method = init.method ?? 'GET';
    requests.push(`${method} ${u.pathname}${u.search}`);
    if (method === 'GET' && u.pathname === '/sessions') {
      if (listStatus !== 200) return reply(listStatus, { error: { code: 'not_found', message: 'no list' } });
      return reply(200, { sessions: conversations.slice(0, Number(u.searchParams.get('limit') ?? 20)).map((sessionId) => ({ sessionId })) });
    }
    if (method === 'POST' && u.pathname === '/sessions') {
      created += 1;
      return reply(201, session(`NEW${created}`));
    }
    const [, , id, action] = u.pathname.split('/');
    if (method === 'POST' && action === 'resume') return reply(200, session(id));
    if (u.pathname === `/sessions/${id}`) return reply(200, { session: { id, readUpTo: 0 }, messages: [], hasMore: false });
    if (u.pathname === `/sessions/${id}/messages`) return reply(200, { messages: [], hasMore: false });
    return reply(404, { error: { code: 'not_found', message: u.pathname } });
  };
  class TestSocket {
    constructor(url) { this.url = url; this.readyState = 0; }
    send() {}
    close() { this.readyState = 3; }
  }
  return { requests, fetch, TestSocket };
}

function clientOf(t, h, options = {}) {
  const storage = new Map();
  const client = new ChatClient({
    baseUrl: 'http://chat.test', fetch: h.fetch, WebSocket: h.TestSocket, backoffBaseMs: 1, backoffMaxMs: 2,
    storage: { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v), removeItem: (k) => storage.delete(k) },
    ...options,
  });
  t.after(() => client.stop());
  return { client, storage };
}

describe('ChatClient: the session a signed-in user opens', () => {
  test('a device with none stored opens the latest conversation (list of one, then resume), creating nothing', async (t) => {
    const h = harness({ conversations: ['LATEST', 'OLDER'] });
    const { client } = clientOf(t, h, { authToken: jwtOf('u-1') });
    await client.start();
    assert.equal(client.sessionId, 'LATEST');
    assert.deepEqual(h.requests.slice(0, 2), ['GET /sessions?limit=1', 'POST /sessions/LATEST/resume']);
    assert.ok(!h.requests.includes('POST /sessions'), h.requests.join(', '));
  });

  test('a user with no conversation gets a new one; newConversation() creates even when some exist', async (t) => {
    const none = harness();
    const a = clientOf(t, none, { authToken: jwtOf('u-1') });
    await a.client.start();
    assert.equal(a.client.sessionId, 'NEW1');
    assert.deepEqual(none.requests.slice(0, 2), ['GET /sessions?limit=1', 'POST /sessions']);

    const some = harness({ conversations: ['LATEST'] });
    const b = clientOf(t, some, { authToken: jwtOf('u-1') });
    await b.client.start();
    assert.equal(b.client.sessionId, 'LATEST');
    await b.client.newConversation();
    assert.equal(b.client.sessionId, 'NEW1', 'asked for: a new one, not the latest again');
    assert.equal(some.requests.filter((r) => r === 'GET /sessions?limit=1').length, 1);
  });

  test('a stored session is used as it is; a guest and resumeLatest: false never list', async (t) => {
    const h = harness({ conversations: ['LATEST'] });
    const first = clientOf(t, h, { authToken: jwtOf('u-1') });
    await first.client.start();
    first.client.stop();
    const again = new ChatClient({
      baseUrl: 'http://chat.test', fetch: h.fetch, WebSocket: h.TestSocket, authToken: jwtOf('u-1'),
      storage: { getItem: (k) => first.storage.get(k) ?? null, setItem: (k, v) => first.storage.set(k, v), removeItem: (k) => first.storage.delete(k) },
    });
    t.after(() => again.stop());
    const before = h.requests.length;
    await again.start();
    assert.equal(again.sessionId, 'LATEST');
    assert.ok(!h.requests.slice(before).some((r) => r.startsWith('GET /sessions?') || r.endsWith('/resume')), h.requests.slice(before).join(', '));

    const guest = harness({ conversations: ['LATEST'] });
    const g = clientOf(t, guest);
    await g.client.start();
    assert.equal(g.client.sessionId, 'NEW1');
    assert.equal(guest.requests[0], 'POST /sessions');

    const off = harness({ conversations: ['LATEST'] });
    const o = clientOf(t, off, { authToken: jwtOf('u-1'), resumeLatest: false });
    await o.client.start();
    assert.equal(o.client.sessionId, 'NEW1');
    assert.equal(off.requests[0], 'POST /sessions');
  });

  test('a server without the list (404) still gets a session: a new one', async (t) => {
    const h = harness({ conversations: ['LATEST'], listStatus: 404 });
    const { client } = clientOf(t, h, { authToken: jwtOf('u-1') });
    await client.start();
    assert.equal(client.sessionId, 'NEW1');
  });
});
