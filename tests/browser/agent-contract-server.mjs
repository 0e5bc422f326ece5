// The issue-12 agent contract (/work/prompts/agents-spec.md, DESIGN.md "People: agents and
// presence") in memory, for browser tests of UI details of the widget and the agent console
// that need no real backend: sessions with a mode, handoff, agent JWTs (HS256, verified with
// the secret given), the inbox, claim / release / close / transfer, agent messages, canned
// replies, agents, and both kinds of WebSocket with their events. The bot answers
// `You said: <text>` and records each dispatch (with its history), as n8n would see it.
// The end-to-end story runs against the real chat-local (agents.test.mjs); this server is
// for what the tests want to script. Listens on 127.0.0.1 on an ephemeral port.
// Attachments (/work/prompts/files-spec.md, "Attachments"; DESIGN.md "Attachments"), as
// chat-local has them: `POST /sessions/{id}/attachments` and `POST /agent/sessions/{id}/attachments`
// check name, type and size (400/413) and answer an upload URL on this server
// (`PUT /uploads/{id}?token=`: the bytes and Content-Type must match the declaration, 409 when
// already uploaded), messages carry attachment ids (each of this session, uploaded, unused, at
// most `maxPerMessage`, else 400 and nothing stored) and are stored with
// `attachments: [{id, name, contentType, size, url}]`, the url a `GET /files/{id}?token=`.
// Every request about attachments is recorded (`attachmentRequests`) so that tests can check
// that a refused file never reached the server.
import { createServer } from 'node:http';
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './support.mjs';
import { ulid, textFrame } from './contract-server.mjs';

const FILES = ['chat-widget.js', 'chat-client.js', 'chat-logic.js', 'chat-markdown.js', 'agent-console.js', 'agent-client.js', 'agent-logic.js'];
const WIDGET_PAGE = `<!doctype html><html lang="en"><meta charset="utf-8"><title>Shop</title><body><h1>Shop</h1>
<script type="module" src="/chat-widget.js"></script></body></html>`;

/** Signs an HS256 JWT with `secret`. */
export function signJwt(claims, secret) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims })}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

function verifyJwt(token, secret) {
  const parts = String(token ?? '').split('.');
  if (parts.length !== 3) return null;
  const want = createHmac('sha256', secret).update(`${parts[0]}.${parts[1]}`).digest();
  const got = Buffer.from(parts[2], 'base64url');
  if (got.length !== want.length || !timingSafeEqual(got, want)) return null;
  try {
    const c = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
    return c.exp * 1000 > Date.now() ? c : null;
  } catch {
    return null;
  }
}

/** Reads client frames (masked, unfragmented) from a socket; calls `onText` with each text. */
function readFrames(socket, onText) {
  let buf = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      const opcode = buf[0] & 0x0f;
      let len = buf[1] & 0x7f;
      let at = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        at = 10;
      }
      if (buf.length < at + 4 + len) return;
      const mask = buf.subarray(at, at + 4);
      const payload = Buffer.from(buf.subarray(at + 4, at + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
      buf = buf.subarray(at + 4 + len);
      if (opcode === 0x8) return void socket.end(Buffer.from([0x88, 0]));
      if (opcode === 0x1) onText(payload.toString('utf8'));
    }
  });
}

/** @param {{ secret?: string }} [opts] */
/**
 * @param {{ secret?: string, attachmentMaxBytes?: number, attachmentTypes?: string[], attachmentsPerMessage?: number }} [opts]
 */
export async function startAgentContractServer({
  secret = 'agent-contract-secret',
  attachmentMaxBytes = 10 * 1024 * 1024,
  attachmentTypes = ['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'application/pdf', 'text/plain'],
  attachmentsPerMessage = 5,
} = {}) {
  const attachments = new Map(); // id -> { id, sessionId, name, contentType, size, token, bytes?: Buffer, messageId? }
  const attachmentRequests = []; // [method, path] of every attachment request
  const sessions = new Map();
  const agentConns = new Set(); // { socket, agent: {id, name}, status }
  const seenAgents = new Map(); // id -> { id, name, status }
  const canned = new Map();
  const dispatches = [];
  let port = 0;
  const now = () => new Date().toISOString();
  const err = (res, status, code, message) => json(res, status, { error: { code, message } });
  const json = (res, status, body) => res.writeHead(status, { 'content-type': 'application/json', 'access-control-allow-origin': '*' }).end(body === undefined ? '' : JSON.stringify(body));
  const send = (socket, obj) => socket.write(textFrame(JSON.stringify(obj)));

  const view = (s) => ({
    id: s.id, kind: 'guest', createdAt: s.createdAt, expiresAt: s.expiresAt, lastSeq: s.messages.length, readUpTo: 0, unreadCount: 0,
    mode: s.mode, ...(s.agent ? { agent: s.agent } : {}), ...(s.waitingSince ? { waitingSince: s.waitingSince } : {}),
  });
  const summary = (s) => ({
    sessionId: s.id, mode: s.mode, ...(s.metadata ? { metadata: s.metadata } : {}), ...(s.agent ? { agent: s.agent } : {}),
    ...(s.waitingSince ? { waitingSince: s.waitingSince } : {}), ...(s.messages.length ? { lastMessage: s.messages.at(-1) } : {}),
    createdAt: s.createdAt, updatedAt: s.updatedAt, userOnline: s.sockets.size > 0,
  });
  const holders = (s) => [...agentConns].filter((c) => s.agent && c.agent.id === s.agent.id);
  const toSession = (s, obj, { agents = true } = {}) => {
    for (const sock of s.sockets) send(sock, obj);
    if (agents) for (const c of holders(s)) send(c.socket, obj.event === 'message' ? obj : { ...obj, sessionId: s.id });
  };
  const inbox = (s) => {
    for (const c of agentConns) send(c.socket, { event: 'inbox', session: summary(s) });
  };
  const presence = (s) => {
    const participants = [{ role: 'user', id: 'guest', online: s.sockets.size > 0 }];
    if (s.agent) participants.push({ role: 'agent', id: s.agent.id, name: s.agent.name, online: [...agentConns].some((c) => c.agent.id === s.agent.id) });
    toSession(s, { event: 'presence', participants });
  };
  const store = (s, fields) => {
    const m = { id: ulid(), seq: s.messages.length + 1, sessionId: s.id, type: 'text', status: 'delivered', createdAt: now(), ...fields };
    s.messages.push(m);
    s.updatedAt = m.createdAt;
    return m;
  };
  /** The attachments of a message to store, or an error message naming the id that cannot go. */
  function takeAttachments(s, ids) {
    if (ids === undefined) return { list: [] };
    if (!Array.isArray(ids)) return { error: 'attachments must be a list of ids' };
    if (ids.length > attachmentsPerMessage) return { error: `at most ${attachmentsPerMessage} attachments per message` };
    const list = [];
    for (const id of ids) {
      const a = attachments.get(id);
      if (!a || a.sessionId !== s.id) return { error: `attachment ${id} is not one of this session` };
      if (!a.bytes) return { error: `attachment ${id} is not uploaded` };
      if (a.messageId) return { error: `attachment ${id} is already used by another message` };
      list.push(a);
    }
    return { list };
  }
  const attachmentView = (a) => ({ id: a.id, name: a.name, contentType: a.contentType, size: a.size, url: `http://127.0.0.1:${port}/files/${a.id}?token=${a.token}` });
  function storeWithAttachments(s, list, fields) {
    const m = store(s, { ...fields, ...(list.length ? { attachments: list.map(attachmentView) } : {}) });
    for (const a of list) a.messageId = m.id;
    return m;
  }
  /** Checks a declaration; answers 201 with an upload ticket, or the 400/413. */
  function declare(res, s, body) {
    const name = body.name;
    if (typeof name !== 'string' || !name.length || [...name].length > 200 || /[\u0000-\u001f\u007f/\\]/.test(name)) return err(res, 400, 'invalid_input', 'name must be 1 to 200 characters, without path separators or control characters');
    if (!attachmentTypes.includes(body.contentType)) return err(res, 400, 'invalid_input', `content type ${String(body.contentType)} is not accepted`);
    if (!Number.isSafeInteger(body.size) || body.size < 1) return err(res, 400, 'invalid_input', 'size must be a positive number of bytes');
    if (body.size > attachmentMaxBytes) return err(res, 413, 'too_large', `the file is larger than ${attachmentMaxBytes} bytes`);
    const a = { id: ulid(), sessionId: s.id, name, contentType: body.contentType, size: body.size, token: randomBytes(12).toString('base64url') };
    attachments.set(a.id, a);
    return json(res, 201, {
      attachmentId: a.id,
      uploadUrl: `http://127.0.0.1:${port}/uploads/${a.id}?token=${a.token}`,
      uploadHeaders: { 'Content-Type': a.contentType },
      expiresAt: new Date(Date.now() + 15 * 60_000).toISOString(),
    });
  }
  /** `PUT /uploads/{id}?token=`: streamed, counted, refused when it differs from the declaration. */
  function receiveUpload(req, res, id, token) {
    const a = attachments.get(id);
    if (!a || a.token !== token) return err(res, 403, 'forbidden', 'bad upload token');
    if (a.bytes) return err(res, 409, 'conflict', 'already uploaded');
    if ((req.headers['content-type'] ?? '') !== a.contentType) return err(res, 400, 'invalid_input', 'the content type differs from the declared one');
    const chunks = [];
    let n = 0;
    let over = false;
    req.on('data', (d) => {
      n += d.length;
      if (n > a.size) over = true;
      else chunks.push(d);
    });
    req.on('end', () => {
      if (over) return err(res, 413, 'too_large', 'more bytes than declared');
      if (n !== a.size) return err(res, 400, 'invalid_input', 'fewer bytes than declared');
      a.bytes = Buffer.concat(chunks);
      res.writeHead(200, { 'access-control-allow-origin': '*' }).end();
    });
  }
  const CONTENT = { waiting: () => 'Connecting you to a person…', claimed: (a) => `${a.name} joined the conversation`, released: (a) => `${a.name} left; the assistant is back`, closed: () => 'This conversation was closed' };
  function changeMode(s, mode, agent, what) {
    const by = s.agent;
    s.mode = mode;
    s.agent = mode === 'agent' ? agent : undefined;
    s.waitingSince = mode === 'waiting' ? now() : undefined;
    const m = store(s, { role: 'system', content: CONTENT[what](what === 'released' ? by : agent), data: { mode, ...(s.agent ? { agent: s.agent } : {}) } });
    toSession(s, { event: 'message', message: m });
    toSession(s, { event: 'session', session: view(s) }, { agents: false });
    inbox(s);
    if (what === 'claimed' || what === 'released') presence(s);
  }
  function userMessage(s, content, clientMessageId, socket, ids) {
    const existing = clientMessageId && s.messages.find((m) => m.clientMessageId === clientMessageId);
    if (s.mode === 'closed' && !existing) return { error: 'conflict' };
    const taken = existing ? { list: [] } : takeAttachments(s, ids);
    if (taken.error) return { error: 'invalid_input', message: taken.error };
    const m = existing ?? storeWithAttachments(s, taken.list, { role: 'user', content, status: 'received', ...(clientMessageId ? { clientMessageId } : {}) });
    if (socket) send(socket, { event: 'ack', clientMessageId, messageId: m.id, seq: m.seq });
    if (existing) return { m };
    toSession(s, { event: 'message', message: m });
    if (s.mode === 'bot') {
      dispatches.push({ sessionId: s.id, content, attachments: m.attachments ?? [], history: s.messages.slice(0, -1).map(({ role, content: c, name }) => ({ role, content: c, ...(name ? { name } : {}) })) });
      setTimeout(() => {
        const r = store(s, { role: 'assistant', content: `You said: ${content}`, replyTo: m.id });
        m.status = 'answered';
        toSession(s, { event: 'message', message: r });
        toSession(s, { event: 'status', messageId: m.id, status: 'answered' });
      }, 30);
    } else inbox(s);
    return { m };
  }
  const agentOf = (req) => {
    const h = req.headers.authorization ?? '';
    const c = verifyJwt(h.startsWith('Bearer ') ? h.slice(7) : '', secret);
    if (!c) return { status: 401 };
    if (c.role !== 'agent') return { status: 403 };
    return { agent: { id: c.sub, name: c.name } };
  };

  const http = createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const p = url.pathname.split('/').filter(Boolean);
    if (/attachments$|^\/uploads\/|^\/files\//.test(url.pathname)) attachmentRequests.push([req.method, url.pathname]);
    if (req.method === 'PUT' && p[0] === 'uploads' && p.length === 2) return receiveUpload(req, res, p[1], url.searchParams.get('token'));
    let raw = '';
    req.on('data', (d) => { raw += d; });
    req.on('end', () => {
      let body = {};
      try {
        body = raw ? JSON.parse(raw) : {};
      } catch {
        return err(res, 400, 'invalid_input', 'bad JSON');
      }
      if (req.method === 'OPTIONS') {
        return res.writeHead(204, { 'access-control-allow-origin': '*', 'access-control-allow-methods': 'GET, POST, PUT, DELETE', 'access-control-allow-headers': 'authorization, content-type' }).end();
      }
      if (req.method === 'GET' && url.pathname === '/') return res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(WIDGET_PAGE);
      if (req.method === 'GET' && url.pathname === '/agent') return res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(readFileSync(join(ROOT, 'web/agent.html')));
      if (req.method === 'GET' && p[0] === 'files' && p.length === 2) {
        const a = attachments.get(p[1]);
        if (!a?.bytes || a.token !== url.searchParams.get('token')) return err(res, 404, 'not_found', 'no such file');
        const image = a.contentType.startsWith('image/');
        return res.writeHead(200, {
          'content-type': a.contentType, 'content-length': a.size, 'x-content-type-options': 'nosniff',
          ...(image ? {} : { 'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(a.name)}` }),
        }).end(a.bytes);
      }
      if (req.method === 'GET' && p.length === 1 && FILES.includes(p[0])) return res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(readFileSync(join(ROOT, 'web', p[0])));
      if (req.method === 'POST' && url.pathname === '/sessions') {
        const s = { id: ulid(), token: randomBytes(18).toString('base64url'), createdAt: now(), updatedAt: now(), expiresAt: new Date(Date.now() + 86_400_000).toISOString(), messages: [], sockets: new Set(), mode: 'bot', metadata: body.metadata };
        sessions.set(s.id, s);
        return json(res, 201, { sessionId: s.id, token: s.token, expiresAt: s.expiresAt, websocketUrl: `ws://127.0.0.1:${port}/ws` });
      }
      if (p[0] === 'sessions' && p.length >= 2) {
        const s = sessions.get(p[1]);
        if (!s || req.headers.authorization !== `Bearer ${s.token}`) return err(res, 401, 'invalid_token', 'no such session or token');
        if (req.method === 'GET' && p.length === 2) return json(res, 200, { session: view(s), messages: s.messages.slice(-50), hasMore: s.messages.length > 50 });
        if (req.method === 'GET' && p[2] === 'messages') return json(res, 200, page(s, url));
        if (req.method === 'POST' && p[2] === 'read') return json(res, 200, { sessionId: s.id, readUpTo: 0, unreadCount: 0 });
        if (req.method === 'POST' && p[2] === 'attachments' && p.length === 3) return declare(res, s, body);
        if (req.method === 'POST' && p[2] === 'handoff') {
          if (s.mode === 'bot') changeMode(s, 'waiting', undefined, 'waiting');
          return json(res, 200, { session: view(s) });
        }
        return err(res, 404, 'not_found', 'no such route');
      }
      if (p[0] === 'agent') {
        const who = agentOf(req);
        if (!who.agent) return err(res, who.status, who.status === 401 ? 'invalid_token' : 'forbidden', who.status === 401 ? 'a valid agent token is required' : 'not an agent');
        const me = who.agent;
        if (req.method === 'GET' && p[1] === 'inbox') {
          const v = url.searchParams.get('view') ?? 'waiting';
          let list = [...sessions.values()].filter((s) => (v === 'waiting' ? s.mode === 'waiting' : v === 'mine' ? s.mode === 'agent' && s.agent.id === me.id : s.mode === 'waiting' || s.mode === 'agent'));
          list = v === 'waiting' ? list.sort((a, b) => (a.waitingSince < b.waitingSince ? -1 : 1)) : list.sort((a, b) => (a.updatedAt > b.updatedAt ? -1 : 1));
          return json(res, 200, { sessions: list.map(summary) });
        }
        if (req.method === 'GET' && p[1] === 'agents') return json(res, 200, { agents: [...seenAgents.values()].map((a) => ({ ...a, holding: [...sessions.values()].filter((s) => s.agent?.id === a.id).length })) });
        if (p[1] === 'canned') {
          if (req.method === 'GET') {
            const q = (url.searchParams.get('q') ?? '').toLowerCase();
            return json(res, 200, { replies: [...canned.values()].filter((r) => !q || r.shortcut.includes(q) || r.title.toLowerCase().includes(q)).sort((a, b) => (a.shortcut < b.shortcut ? -1 : 1)) });
          }
          const bad = !/^[a-z0-9][a-z0-9_-]{0,31}$/.test(body.shortcut ?? '') || !body.title || !body.text;
          if ((req.method === 'POST' || req.method === 'PUT') && bad) return err(res, 400, 'invalid_input', 'bad canned reply');
          if (req.method === 'POST') {
            if ([...canned.values()].some((r) => r.shortcut === body.shortcut)) return err(res, 409, 'conflict', 'shortcut used');
            const r = { id: ulid(), shortcut: body.shortcut, title: body.title, text: body.text, updatedAt: now() };
            canned.set(r.id, r);
            return json(res, 201, { reply: r });
          }
          const r = canned.get(p[2]);
          if (!r) return err(res, 404, 'not_found', 'no such reply');
          if (req.method === 'PUT') {
            Object.assign(r, { shortcut: body.shortcut, title: body.title, text: body.text, updatedAt: now() });
            return json(res, 200, { reply: r });
          }
          if (req.method === 'DELETE') {
            canned.delete(r.id);
            return json(res, 204);
          }
        }
        if (p[1] === 'sessions' && p[2]) {
          const s = sessions.get(p[2]);
          if (!s) return err(res, 404, 'not_found', 'no such session');
          const mine = s.mode === 'agent' && s.agent.id === me.id;
          const a = p[3];
          if (req.method === 'GET' && !a) return json(res, 200, { session: summary(s), messages: s.messages.slice(-50), hasMore: s.messages.length > 50 });
          if (req.method === 'GET' && a === 'messages') return json(res, 200, page(s, url));
          if (req.method === 'POST' && a === 'claim') {
            if (mine) return json(res, 200, { session: summary(s) });
            if (s.mode !== 'bot' && s.mode !== 'waiting') return err(res, 409, 'conflict', 'someone else holds it, or it is closed');
            changeMode(s, 'agent', me, 'claimed');
            return json(res, 200, { session: summary(s) });
          }
          if (req.method === 'POST' && a === 'release') {
            if (!mine && s.mode !== 'waiting') return err(res, 409, 'conflict', 'not yours');
            if (mine) changeMode(s, 'bot', undefined, 'released');
            else changeMode(s, 'bot', undefined, 'closed');
            return json(res, 200, { session: summary(s) });
          }
          if (req.method === 'POST' && a === 'close') {
            if (s.mode === 'closed' || (s.mode === 'agent' && !mine)) return err(res, 409, 'conflict', 'not yours');
            changeMode(s, 'closed', undefined, 'closed');
            return json(res, 200, { session: summary(s) });
          }
          if (req.method === 'POST' && a === 'transfer') {
            if (body.agentId === me.id) return err(res, 400, 'invalid_input', 'that is you');
            if (!mine) return err(res, 409, 'conflict', 'not yours');
            changeMode(s, 'agent', { id: body.agentId, name: body.agentName }, 'claimed');
            return json(res, 200, { session: summary(s) });
          }
          if (req.method === 'POST' && a === 'attachments') {
            if (!mine) return err(res, 409, 'conflict', 'you do not hold this session');
            return declare(res, s, body);
          }
          if (req.method === 'POST' && a === 'messages') {
            if (!mine) return err(res, 409, 'conflict', 'you do not hold this session');
            const existing = body.clientMessageId && s.messages.find((m) => m.clientMessageId === body.clientMessageId && m.role === 'agent');
            const taken = existing ? { list: [] } : takeAttachments(s, body.attachments);
            if (taken.error) return err(res, 400, 'invalid_input', taken.error);
            const m = existing ?? storeWithAttachments(s, taken.list, { role: 'agent', name: me.name, content: body.content, clientMessageId: body.clientMessageId });
            if (!existing) {
              toSession(s, { event: 'message', message: m });
              inbox(s);
            }
            return json(res, 202, { message: m });
          }
        }
      }
      return err(res, 404, 'not_found', 'no such route');
    });
  });

  function page(s, url) {
    const after = Number(url.searchParams.get('after') ?? 0);
    const before = Number(url.searchParams.get('before') ?? Infinity);
    const limit = Math.min(100, Number(url.searchParams.get('limit') ?? 50));
    const all = s.messages.filter((m) => m.seq > after && m.seq < before);
    const out = url.searchParams.has('before') ? all.slice(-limit) : all.slice(0, limit);
    return { messages: out, hasMore: all.length > out.length };
  }

  http.on('upgrade', (req, socket) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const agentClaims = url.searchParams.has('agentToken') ? verifyJwt(url.searchParams.get('agentToken'), secret) : null;
    const s = sessions.get(url.searchParams.get('sessionId') ?? '');
    const userOk = s && url.searchParams.get('token') === s.token;
    if (url.pathname !== '/ws' || (!userOk && agentClaims?.role !== 'agent')) {
      socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    socket.on('error', () => {});
    if (userOk) {
      s.sockets.add(socket);
      if (s.sockets.size === 1) presence(s);
      socket.on('close', () => {
        s.sockets.delete(socket);
        if (s.sockets.size === 0) presence(s);
      });
      readFrames(socket, (text) => {
        let f;
        try { f = JSON.parse(text); } catch { return; }
        if (f.action === 'ping') send(socket, { event: 'pong' });
        if (f.action === 'handoff' && s.mode === 'bot') changeMode(s, 'waiting', undefined, 'waiting');
        if (f.action === 'typing') for (const c of holders(s)) send(c.socket, { event: 'typing', role: 'user', isTyping: !!f.isTyping, sessionId: s.id });
        if (f.action === 'sendMessage') {
          const r = userMessage(s, f.content, f.clientMessageId, socket, f.attachments);
          if (r.error) send(socket, { event: 'error', code: r.error, message: r.message ?? 'this conversation is closed', clientMessageId: f.clientMessageId });
        }
      });
      return;
    }
    const conn = { socket, agent: { id: agentClaims.sub, name: agentClaims.name }, status: 'online' };
    agentConns.add(conn);
    seenAgents.set(conn.agent.id, { ...conn.agent, status: 'online' });
    socket.on('close', () => agentConns.delete(conn));
    readFrames(socket, (text) => {
      let f;
      try { f = JSON.parse(text); } catch { return; }
      if (f.action === 'ping') send(socket, { event: 'pong' });
      if (f.action === 'status') seenAgents.set(conn.agent.id, { ...conn.agent, status: f.status === 'away' ? 'away' : 'online' });
      if (f.action === 'typing') {
        const t = sessions.get(f.sessionId);
        if (!t || t.agent?.id !== conn.agent.id) return send(socket, { event: 'error', code: 'conflict', message: 'you do not hold this session' });
        for (const sock of t.sockets) send(sock, { event: 'typing', role: 'agent', name: conn.agent.name, isTyping: !!f.isTyping });
      }
    });
  });

  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  port = http.address().port;
  return {
    url: `http://127.0.0.1:${port}`,
    sessions,
    dispatches,
    attachments,
    attachmentRequests,
    /** Stores a message with these fields in session `id` and pushes it (to script what a server might send). */
    inject(id, fields) {
      const s = sessions.get(id);
      const m = store(s, fields);
      toSession(s, { event: 'message', message: m });
      return m;
    },
    agentToken: ({ id, name, role = 'agent' }) => signJwt({ sub: id, name, role }, secret),
    async close() {
      for (const s of sessions.values()) for (const sock of s.sockets) sock.destroy();
      for (const c of agentConns) c.socket.destroy();
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
    },
  };
}
