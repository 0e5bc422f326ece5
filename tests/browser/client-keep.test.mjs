// Unit tests of ChatClient's side of "conversations people keep" (issue 13): which session a
// start opens for a signed-in user (their latest conversation on a device with none stored; a
// new one only when they have none, or when asked), through test doubles of fetch and the
// WebSocket (no browser, no server).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient, canChange, mergeMessage } from '../../web/chat-client.js';

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

describe('edit and delete: the merge, canChange, and ChatClient', () => {
  const at = (s) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
  const msg = (over) => ({ id: 'M1', seq: 1, sessionId: 'S', role: 'user', type: 'text', content: 'helo', status: 'answered', createdAt: at(0), updatedAt: at(0), ...over });

  test('a newer version replaces the text; an older one (a stale page) changes only the status; a tombstone drops data', () => {
    const edited = msg({ content: 'hello', editedAt: at(5), updatedAt: at(5), status: 'received' });
    let { list } = mergeMessage([msg({ status: 'received' })], edited);
    assert.equal(list[0].content, 'hello');
    ({ list } = mergeMessage(list, msg({ status: 'answered' })));
    assert.equal(list[0].content, 'hello', 'the older text does not come back');
    assert.equal(list[0].editedAt, at(5));
    assert.equal(list[0].status, 'answered', 'the status still moves forward');
    const withData = [msg({ data: { page: '/x' }, metadata: { a: 1 } })];
    ({ list } = mergeMessage(withData, msg({ content: '', deleted: true, deletedAt: at(9), updatedAt: at(9) })));
    assert.deepEqual([list[0].content, list[0].deleted, list[0].data, list[0].metadata], ['', true, undefined, undefined]);
  });

  test('canChange: the user\'s own stored message, not a tombstone, within the window', () => {
    const now = Date.parse(at(0)) + 1000;
    assert.equal(canChange(msg(), now, 300_000), true);
    assert.equal(canChange(msg(), Date.parse(at(0)) + 300_000, 300_000), false, 'past the window');
    assert.equal(canChange(msg({ role: 'assistant' }), now, 300_000), false);
    assert.equal(canChange(msg({ deleted: true }), now, 300_000), false);
    assert.equal(canChange(msg({ seq: undefined, pending: true }), now, 300_000), false);
  });

  test('ChatClient: edits pushed replace by id, editMessage PATCHes, and a reconnect asks for the changes since the newest updatedAt seen', async (t) => {
    const requests = [];
    const sockets = [];
    const stored = [msg({ content: 'first', createdAt: at(0), updatedAt: at(0) }), msg({ id: 'M2', seq: 2, content: 'second', createdAt: at(1), updatedAt: at(1) })];
    const reply = (status, body) => ({ ok: status < 300, status, json: async () => body, headers: { get: () => null } });
    const fetch = async (url, init = {}) => {
      const u = new URL(url);
      const method = init.method ?? 'GET';
      requests.push(`${method} ${u.pathname}${u.search}`);
      if (method === 'POST' && u.pathname === '/sessions') return reply(201, { sessionId: 'S', token: 't', expiresAt: new Date(Date.now() + 86_400_000).toISOString(), websocketUrl: 'ws://chat.test/ws' });
      if (u.pathname === '/sessions/S') return reply(200, { session: { id: 'S', readUpTo: 0 }, messages: stored, hasMore: false });
      if (u.pathname === '/sessions/S/messages' && u.searchParams.has('updatedAfter')) {
        const after = Number(u.searchParams.get('updatedAfter'));
        return reply(200, { messages: stored.filter((m) => Date.parse(m.updatedAt) > after && m.editedAt), hasMore: false });
      }
      if (u.pathname === '/sessions/S/messages') return reply(200, { messages: [], hasMore: false });
      if (method === 'PATCH' && u.pathname === '/sessions/S/messages/M2') {
        const body = JSON.parse(init.body);
        stored[1] = { ...stored[1], content: body.content, editedAt: at(3), updatedAt: at(3) };
        return reply(200, { message: stored[1] });
      }
      return reply(404, { error: { code: 'not_found', message: u.pathname } });
    };
    class TestSocket {
      constructor(url) { this.url = url; this.readyState = 0; sockets.push(this); }
      send() {}
      close() { this.readyState = 3; }
      open() { this.readyState = 1; this.onopen?.(); }
      push(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
      drop() { this.readyState = 3; this.onclose?.({ code: 1006 }); }
    }
    const store = new Map();
    const client = new ChatClient({
      baseUrl: 'http://chat.test', fetch, WebSocket: TestSocket, backoffBaseMs: 1, backoffMaxMs: 2,
      storage: { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v), removeItem: (k) => store.delete(k) },
    });
    t.after(() => client.stop());
    const until = async (fn, what) => {
      for (let i = 0; i < 400 && !fn(); i++) await new Promise((r) => setTimeout(r, 5));
      assert.ok(fn(), `timed out waiting for ${what}`);
    };
    await client.start();
    assert.ok(!requests.some((r) => r.includes('updatedAfter')), 'the first load needs no changes');
    sockets[0].open();
    await until(() => client.connectionState === 'open', 'open');
    // Once the socket is open, the changes since the load (made before it subscribed).
    assert.ok(requests.includes(`GET /sessions/S/messages?updatedAfter=${Date.parse(at(1))}&limit=100`), requests.join(', '));

    // Pushed: an edit of the first message replaces it in place.
    sockets[0].push({ event: 'message', message: msg({ content: 'first, fixed', editedAt: at(2), updatedAt: at(2) }) });
    assert.deepEqual(client.messages.map((m) => m.content), ['first, fixed', 'second']);

    // editMessage: PATCH, and the stored message is in the list at once.
    const saved = await client.editMessage('M2', 'second, fixed');
    assert.equal(saved.editedAt, at(3));
    assert.ok(requests.includes('PATCH /sessions/S/messages/M2'), requests.join(', '));
    assert.equal(client.messages[1].content, 'second, fixed');

    // Away: the first message is deleted meanwhile; the reconnect asks for changes since at(3).
    sockets[0].drop();
    stored[0] = { ...stored[0], content: '', deleted: true, deletedAt: at(7), updatedAt: at(7), editedAt: at(2) };
    await until(() => sockets.length > 1, 'a new socket');
    sockets[1].open();
    await until(() => client.messages[0].deleted === true, 'the deletion learnt on catch-up');
    assert.ok(requests.includes(`GET /sessions/S/messages?updatedAfter=${Date.parse(at(3))}&limit=100`), requests.join(', '));
    assert.equal(client.messages[0].content, '');
  });
});
