// A tiny chat server for the browser tests of streamed replies: the contract's session and
// history routes and its WebSocket (shared/DESIGN.md), in memory, plus the frames chat-local
// does not send yet: `delta` frames of a streamed reply, then the stored reply as a `message`
// with the same id (DESIGN.md, "Second wave" → "Streamed replies"). Each test scripts the
// replies with `onUserMessage(message, reply)`. It also serves web/ and a bare page with the
// widget (no Content-Security-Policy, so that a script the renderer let through would run).
//
// Only what the tests need: one process, no rate limits, no persistence; the WebSocket is a
// minimal RFC 6455 server (text, ping, close; frames from browsers are small and unfragmented).
// Listens on 127.0.0.1 on an ephemeral port.
import { createServer } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './support.mjs';

const WEB_FILES = ['chat-widget.js', 'chat-client.js', 'chat-logic.js', 'chat-markdown.js'];
const PAGE = `<!doctype html><html lang="en"><meta charset="utf-8"><title>Streamed replies</title>
<body style="font-family: system-ui, sans-serif; margin: 40px;"><h1>Shop</h1><p>A page with the chat widget.</p>
<script type="module" src="/chat-widget.js"></script></body></html>`;

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** A ULID-shaped id (26 Crockford base-32 characters, time first). */
export function ulid() {
  let t = Date.now();
  let time = '';
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  return time + [...randomBytes(16)].map((b) => CROCKFORD[b % 32]).join('');
}

/** One text frame from the server (unmasked). */
export function textFrame(text) {
  const payload = Buffer.from(text);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, n])
    : n < 65536 ? Buffer.from([0x81, 126, n >> 8, n & 255])
      : Buffer.concat([Buffer.from([0x81, 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; })()]);
  return Buffer.concat([head, payload]);
}

/**
 * Starts the server. `onUserMessage(message, reply)` runs for every new user message; `reply`
 * has `id`, `delta(text)` (pushes the next delta of that reply) and `finish(content, extra)`
 * (stores the reply with that id and pushes it). Resolves to a handle, see below.
 * @param {{ onUserMessage?: (message: object, reply: object) => void | Promise<void> }} [opts]
 */
export async function startContractServer({ onUserMessage = () => {} } = {}) {
  const sessions = new Map(); // id -> { id, token, expiresAt, messages: [], sockets: Set, readUpTo }
  const framesIn = []; // every frame a client sent: [sessionId, object]
  let acceptSockets = true;
  let port = 0;

  const json = (res, status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  const authorized = (req, id) => {
    const s = sessions.get(id);
    return s && req.headers.authorization === `Bearer ${s.token}` ? s : null;
  };
  const view = (s) => ({
    id: s.id, kind: 'guest', createdAt: s.createdAt, expiresAt: s.expiresAt,
    lastSeq: s.messages.length, readUpTo: s.readUpTo, unreadCount: 0,
  });
  const push = (s, obj) => {
    const frame = textFrame(JSON.stringify(obj));
    for (const sock of s.sockets) sock.write(frame);
  };
  const store = (s, fields) => {
    const m = { id: ulid(), seq: s.messages.length + 1, sessionId: s.id, type: 'text', createdAt: new Date().toISOString(), ...fields };
    s.messages.push(m);
    return m;
  };

  const http = createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const parts = url.pathname.split('/').filter(Boolean);
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      if (req.method === 'GET' && url.pathname === '/') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
      } else if (req.method === 'GET' && WEB_FILES.includes(parts[0]) && parts.length === 1) {
        res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(readFileSync(join(ROOT, 'web', parts[0])));
      } else if (req.method === 'POST' && url.pathname === '/sessions') {
        const s = {
          id: ulid(), token: randomBytes(18).toString('base64url'), createdAt: new Date().toISOString(),
          expiresAt: new Date(Date.now() + 86_400_000).toISOString(), messages: [], sockets: new Set(), readUpTo: 0,
        };
        sessions.set(s.id, s);
        json(res, 201, { sessionId: s.id, token: s.token, expiresAt: s.expiresAt, websocketUrl: `ws://127.0.0.1:${port}/ws` });
      } else if (parts[0] === 'sessions' && parts.length >= 2) {
        const s = authorized(req, parts[1]);
        if (!s) return json(res, 401, { error: { code: 'invalid_token', message: 'no such session or token' } });
        if (req.method === 'GET' && parts.length === 2) {
          json(res, 200, { session: view(s), messages: s.messages.slice(-50), hasMore: s.messages.length > 50 });
        } else if (req.method === 'GET' && parts[2] === 'messages') {
          const after = Number(url.searchParams.get('after') ?? 0);
          const before = Number(url.searchParams.get('before') ?? Infinity);
          const limit = Math.min(100, Number(url.searchParams.get('limit') ?? 50));
          const all = s.messages.filter((m) => m.seq > after && m.seq < before);
          const page = url.searchParams.has('before') ? all.slice(-limit) : all.slice(0, limit);
          json(res, 200, { messages: page, hasMore: all.length > page.length });
        } else if (req.method === 'POST' && parts[2] === 'read') {
          s.readUpTo = Math.max(s.readUpTo, JSON.parse(body || '{}').upTo ?? 0);
          json(res, 200, { sessionId: s.id, readUpTo: s.readUpTo, unreadCount: 0 });
        } else json(res, 404, { error: { code: 'not_found', message: 'no such route' } });
      } else json(res, 404, { error: { code: 'not_found', message: 'no such route' } });
    });
  });

  // The WebSocket at /ws?sessionId=&token=.
  http.on('upgrade', (req, socket) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const s = sessions.get(url.searchParams.get('sessionId') ?? '');
    if (!acceptSockets || url.pathname !== '/ws' || !s || url.searchParams.get('token') !== s.token) {
      socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    s.sockets.add(socket);
    socket.on('close', () => s.sockets.delete(socket));
    socket.on('error', () => s.sockets.delete(socket));
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
        if (opcode === 0x8) {
          socket.end(Buffer.from([0x88, 0]));
          return;
        }
        if (opcode === 0x9) socket.write(Buffer.concat([Buffer.from([0x8a, payload.length]), payload]));
        if (opcode === 0x1) onFrame(s, socket, payload.toString('utf8'));
      }
    });
  });

  function onFrame(s, socket, text) {
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    framesIn.push([s.id, f]);
    if (f.action === 'ping') socket.write(textFrame(JSON.stringify({ event: 'pong' })));
    if (f.action !== 'sendMessage') return;
    const existing = s.messages.find((m) => m.clientMessageId && m.clientMessageId === f.clientMessageId);
    const m = existing ?? store(s, { role: 'user', content: f.content, status: 'received', clientMessageId: f.clientMessageId });
    socket.write(textFrame(JSON.stringify({ event: 'ack', clientMessageId: f.clientMessageId, messageId: m.id, seq: m.seq })));
    if (existing) return;
    push(s, { event: 'message', message: m });
    push(s, { event: 'typing', role: 'assistant', isTyping: true });
    const id = ulid();
    let index = 0;
    const reply = {
      id,
      /** Pushes the next delta of this reply (or, with `index`, that index: to test gaps and repeats). */
      delta(text, at = index) {
        push(s, { event: 'delta', messageId: id, replyTo: m.id, index: at, text });
        index = at + 1;
      },
      /** Stores the reply (with this id) and pushes it, as the server does when a stream ends. */
      finish(content, extra = {}) {
        const stored = store(s, { id, role: 'assistant', content, status: 'delivered', replyTo: m.id, ...extra });
        m.status = 'answered';
        push(s, { event: 'message', message: stored });
        push(s, { event: 'status', messageId: m.id, status: 'answered' });
        return stored;
      },
    };
    Promise.resolve(onUserMessage(m, reply)).catch((e) => console.error('contract server: a reply script failed', e));
  }

  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  port = http.address().port;
  return {
    url: `http://127.0.0.1:${port}`,
    sessions,
    framesIn,
    /** Cuts every WebSocket from the server side (no close frame) and, with `refuse`, refuses new ones. */
    cut({ refuse = false } = {}) {
      acceptSockets = !refuse;
      for (const s of sessions.values()) for (const sock of s.sockets) sock.destroy();
    },
    /** Accepts WebSockets again after `cut({ refuse: true })`. */
    accept() {
      acceptSockets = true;
    },
    /** The number of open WebSockets. */
    get sockets() {
      let n = 0;
      for (const s of sessions.values()) n += s.sockets.size;
      return n;
    },
    async close() {
      for (const s of sessions.values()) for (const sock of s.sockets) sock.destroy();
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
    },
  };
}
