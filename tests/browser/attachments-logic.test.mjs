// Unit tests of the client's side of attachments (issue 13): the pure checks and formatting of
// chat-logic.js (a file's name, type and size against the limits, sizes as people read them,
// which download URLs may be used), and ChatClient's `upload` and `send` with attachments
// through test doubles of fetch, XMLHttpRequest and the WebSocket (no browser, no server).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  ATTACHMENT_DEFAULTS, ChatAttachmentError, ChatClient, attachmentCountProblem, attachmentName, attachmentProblem,
  attachmentUrl, attachmentsOf, contentTypeOf, describeTypes, fileBadge, formatBytes, typeAllowed, uploadFile,
} from '../../web/chat-client.js';

const MB = 1024 * 1024;

describe('attachment checks and formatting', () => {
  test('formatBytes: bytes, then KB/MB with one decimal below 100, rounded down', () => {
    assert.deepEqual([0, 1, 1023, 1024, 1536, 10 * 1024 - 1, 100 * 1024, 1.5 * MB, 10 * MB, 11e6, 10 * MB + 1, 3 * 1024 * MB].map(formatBytes),
      ['0 B', '1 B', '1023 B', '1 KB', '1.5 KB', '9.9 KB', '100 KB', '1.5 MB', '10 MB', '10.4 MB', '10 MB', '3 GB']);
    assert.equal(formatBytes(-5), '0 B');
    assert.equal(formatBytes(Number.NaN), '0 B');
  });

  test('attachmentName: control characters and path separators become _, at most 200 characters with the extension kept', () => {
    assert.equal(attachmentName('photo.png'), 'photo.png');
    assert.equal(attachmentName('../../etc/passwd'), '.._.._etc_passwd');
    assert.equal(attachmentName('a\\b\u0000c\nd\u007f.txt'), 'a_b_c_d_.txt');
    assert.equal(attachmentName('  spaced.pdf  '), 'spaced.pdf');
    assert.equal(attachmentName(''), 'file');
    const long = attachmentName(`${'x'.repeat(300)}.jpeg`);
    assert.equal([...long].length, 200);
    assert.ok(long.endsWith('x.jpeg'));
    // Characters outside the BMP count as one each.
    assert.equal([...attachmentName('😀'.repeat(250))].length, 200);
    // A hostile name that is a valid name stays as it is: it is shown as text.
    assert.equal(attachmentName('<img src=x onerror=alert(1)>.png'), '<img src=x onerror=alert(1)>.png');
  });

  test('contentTypeOf and typeAllowed: the browser\'s type, else the extension\'s; wildcards in the allowed list', () => {
    assert.equal(contentTypeOf({ name: 'a.png', type: 'IMAGE/PNG' }), 'image/png');
    assert.equal(contentTypeOf({ name: 'a.txt', type: 'text/plain;charset=utf-8' }), 'text/plain');
    assert.equal(contentTypeOf({ name: 'Scan.PDF', type: '' }), 'application/pdf');
    assert.equal(contentTypeOf({ name: 'photo.jpg' }), 'image/jpeg');
    assert.equal(contentTypeOf({ name: 'noext', type: '' }), 'application/octet-stream');
    assert.ok(typeAllowed('image/webp', ATTACHMENT_DEFAULTS.types));
    assert.ok(!typeAllowed('image/svg+xml', ATTACHMENT_DEFAULTS.types), 'SVG is not among the defaults');
    assert.ok(typeAllowed('image/svg+xml', ['image/*']));
    assert.ok(!typeAllowed('imagex/png', ['image/*']));
    assert.ok(!typeAllowed('text/html', ATTACHMENT_DEFAULTS.types));
    assert.equal(describeTypes(ATTACHMENT_DEFAULTS.types), 'PNG, JPEG, GIF, WebP, PDF or plain text');
    assert.equal(describeTypes(['image/*']), 'any image');
  });

  test('attachmentProblem: type first, then empty, then size; each with a message naming the file and the limit', () => {
    assert.equal(attachmentProblem({ name: 'ok.png', type: 'image/png', size: 10 * MB }), null, 'exactly the limit is fine');
    const big = attachmentProblem({ name: 'big.png', type: 'image/png', size: 12 * MB });
    assert.equal(big.code, 'too_large');
    assert.equal(big.message, '“big.png” is too large (12 MB); the limit is 10 MB.');
    const justOver = attachmentProblem({ name: 'b.png', type: 'image/png', size: 10 * MB + 1 });
    assert.equal(justOver.message, `“b.png” is too large (${10 * MB + 1} bytes); the limit is ${10 * MB} bytes.`, 'never "10 MB; the limit is 10 MB"');
    const exe = attachmentProblem({ name: 'setup.exe', type: 'application/x-msdownload', size: 100 });
    assert.equal(exe.code, 'type_not_allowed');
    assert.match(exe.message, /“setup\.exe” cannot be sent: this type of file \(application\/x-msdownload\) is not accepted\. Allowed: PNG, JPEG, GIF, WebP, PDF or plain text\./);
    assert.equal(attachmentProblem({ name: 'e.txt', type: 'text/plain', size: 0 }).code, 'empty');
    assert.equal(attachmentProblem({ name: 'x.gif', type: 'image/gif', size: 2 * MB }, { maxBytes: MB }).code, 'too_large', 'the page\'s limits apply');
    assert.equal(attachmentProblem({ name: 'x.exe', type: 'application/x-msdownload', size: 2 }, { types: ['application/*'] }), null);
    assert.equal(attachmentCountProblem(5), null);
    assert.deepEqual(attachmentCountProblem(6), { code: 'too_many', message: 'A message can carry at most 5 files.' });
    assert.deepEqual(attachmentCountProblem(2, { maxPerMessage: 1 }), { code: 'too_many', message: 'A message can carry at most 1 file.' });
  });

  test('attachmentUrl: http(s) only, relative ones resolved against the chat server', () => {
    assert.equal(attachmentUrl('/files/A?token=t', 'http://127.0.0.1:8080'), 'http://127.0.0.1:8080/files/A?token=t');
    assert.equal(attachmentUrl('https://bucket.s3.amazonaws.com/k?X-Amz-Signature=s', 'http://127.0.0.1:8080'), 'https://bucket.s3.amazonaws.com/k?X-Amz-Signature=s');
    for (const bad of ['javascript:alert(1)', ' JaVaScRiPt:alert(1)', 'java\tscript:alert(1)', 'data:text/html,<script>alert(1)</script>', 'vbscript:x', 'blob:http://x/1', '', null, 42, {}]) {
      assert.equal(attachmentUrl(bad, 'http://127.0.0.1:8080'), null, String(bad));
    }
    assert.equal(attachmentUrl('/files/A'), null, 'a relative URL needs a base');
  });

  test('fileBadge: the kind of file on its icon', () => {
    assert.deepEqual([fileBadge('a.pdf', 'application/pdf'), fileBadge('notes', 'text/plain'), fileBadge('x.jpeg', 'image/jpeg'), fileBadge('archive.tar.gz'), fileBadge('README'), fileBadge('x.markdown')],
      ['PDF', 'TXT', 'JPEG', 'GZ', 'FILE', 'FILE']);
  });

  test('attachmentsOf keeps well-formed entries only', () => {
    assert.deepEqual(attachmentsOf([
      { id: 'A', name: 'a.png', contentType: 'image/png', size: 3, url: 'u' },
      null, 'x', { name: 'no id' }, { id: 'B' },
    ]), [
      { id: 'A', name: 'a.png', contentType: 'image/png', size: 3, url: 'u' },
      { id: 'B', name: 'file', contentType: 'application/octet-stream', size: 0 },
    ]);
    assert.deepEqual(attachmentsOf(undefined), []);
  });
});

/** A stand-in XMLHttpRequest: records requests; the test answers each (progress, then a status). */
function fakeXhr() {
  const made = [];
  class FakeXhr {
    constructor() {
      this.headers = {};
      this.upload = {};
      this.status = 0;
      this.responseText = '';
      made.push(this);
    }
    open(method, url) { this.method = method; this.url = url; }
    setRequestHeader(k, v) { this.headers[k] = v; }
    send(body) { this.body = body; }
    abort() { this.aborted = true; this.onabort?.(); }
    progress(loaded, total) { this.upload.onprogress?.({ loaded, total, lengthComputable: true }); }
    answer(status, text = '') { this.status = status; this.responseText = text; this.onload?.(); }
    fail() { this.onerror?.(); }
  }
  return { made, FakeXhr };
}

const tick = () => new Promise((r) => setTimeout(r, 1));
async function until(fn, what) {
  for (let i = 0; i < 400; i++) {
    if (fn()) return;
    await tick();
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe('uploadFile', () => {
  test('PUTs with the headers a page may set, reports progress, resolves on 2xx', async () => {
    const { made, FakeXhr } = fakeXhr();
    const body = new Blob(['hello']);
    const seen = [];
    const p = uploadFile('https://bucket.test/k?sig=1', { 'Content-Type': 'text/plain', 'Content-Length': '5', 'x-amz-meta-a': 'b' }, body, { XMLHttpRequest: FakeXhr, onProgress: (e) => seen.push(e) });
    const x = made[0];
    assert.equal(x.method, 'PUT');
    assert.equal(x.url, 'https://bucket.test/k?sig=1');
    assert.deepEqual(x.headers, { 'Content-Type': 'text/plain', 'x-amz-meta-a': 'b' }, 'Content-Length is the browser\'s to set');
    assert.equal(x.body, body);
    x.progress(2, 5);
    x.answer(200);
    await p;
    assert.deepEqual(seen, [{ loaded: 2, total: 5 }, { loaded: 5, total: 5 }]);
  });

  test('a 413, another 4xx, a network error and an abort are told apart', async () => {
    const { made, FakeXhr } = fakeXhr();
    const run = (answer, opts = {}) => {
      const p = uploadFile('http://x.test/u', {}, new Blob(['x']), { XMLHttpRequest: FakeXhr, fileName: 'a.png', ...opts });
      answer(made.at(-1));
      return p.then(() => assert.fail('resolved'), (e) => e);
    };
    const big = await run((x) => x.answer(413, JSON.stringify({ error: { code: 'too_large', message: 'more bytes than declared' } })));
    assert.ok(big instanceof ChatAttachmentError);
    assert.deepEqual([big.code, big.status, big.message, big.fileName], ['too_large', 413, 'more bytes than declared', 'a.png']);
    const s3 = await run((x) => x.answer(403, '<Error><Code>SignatureDoesNotMatch</Code></Error>'));
    assert.deepEqual([s3.code, s3.status, s3.message], ['refused', 403, 'The upload of “a.png” was refused (HTTP 403).']);
    const down = await run((x) => x.fail());
    assert.equal(down.code, 'upload_failed');
    const controller = new AbortController();
    const aborted = await run(() => controller.abort(), { signal: controller.signal });
    assert.equal(aborted.code, 'aborted');
    assert.equal(made.at(-1).aborted, true);
  });
});

describe('ChatClient: upload and send with attachments (test doubles)', () => {
  async function started(t, { attachments, storage = new Map() } = {}) {
    const requests = [];
    const sockets = [];
    const answers = { declare: (body) => [201, { attachmentId: 'A1', uploadUrl: '/uploads/A1?token=up', uploadHeaders: { 'Content-Type': body.contentType }, expiresAt: '2030-01-01T00:00:00Z' }] };
    const reply = (status, body) => ({ ok: status < 300, status, json: async () => body, headers: { get: () => null } });
    const fetch = async (url, init = {}) => {
      const u = new URL(url);
      requests.push([init.method ?? 'GET', u.pathname, init.body ? JSON.parse(init.body) : null, init.headers ?? {}]);
      if (init.method === 'POST' && u.pathname === '/sessions') return reply(201, { sessionId: 'S1', token: 'tok', expiresAt: new Date(Date.now() + 86_400_000).toISOString(), websocketUrl: 'ws://chat.test/ws' });
      if (u.pathname === '/sessions/S1') return reply(200, { session: { id: 'S1', readUpTo: 0 }, messages: [], hasMore: false });
      if (u.pathname === '/sessions/S1/messages') return reply(200, { messages: [], hasMore: false });
      if (u.pathname === '/sessions/S1/attachments') return reply(...answers.declare(JSON.parse(init.body)));
      return reply(404, { error: { code: 'not_found', message: u.pathname } });
    };
    class TestSocket {
      constructor(url) { this.url = url; this.readyState = 0; this.sent = []; sockets.push(this); }
      send(data) { this.sent.push(JSON.parse(data)); }
      close() { this.readyState = 3; }
      open() { this.readyState = 1; this.onopen?.(); }
      push(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
    }
    const { made, FakeXhr } = fakeXhr();
    const client = new ChatClient({
      baseUrl: 'http://chat.test', fetch, WebSocket: TestSocket, XMLHttpRequest: FakeXhr, backoffBaseMs: 1, backoffMaxMs: 2, attachments,
      storage: { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v), removeItem: (k) => storage.delete(k) },
    });
    t.after(() => client.stop());
    await client.start();
    sockets[0].open();
    await until(() => client.connectionState === 'open', 'the socket to open');
    return { client, requests, sockets, made, answers, storage };
  }
  const file = (name, type, size) => new File([new Uint8Array(size)], name, { type });

  test('upload: declares the file, PUTs it to the upload URL (resolved against the server) with the upload headers, reports progress', async (t) => {
    const { client, requests, made } = await started(t);
    const progress = [];
    const events = [];
    client.on('uploadProgress', (e) => events.push(e));
    const p = client.upload(file('photo.png', 'image/png', 2048), { onProgress: (e) => progress.push(e) });
    await until(() => made.length === 1, 'the PUT');
    const declared = requests.find(([m, path]) => m === 'POST' && path === '/sessions/S1/attachments');
    assert.deepEqual(declared[2], { name: 'photo.png', contentType: 'image/png', size: 2048 });
    assert.equal(declared[3].authorization, 'Bearer tok');
    assert.equal(made[0].url, 'http://chat.test/uploads/A1?token=up');
    assert.deepEqual(made[0].headers, { 'Content-Type': 'image/png' });
    made[0].progress(1024, 2048);
    made[0].answer(200);
    assert.deepEqual(await p, { id: 'A1', name: 'photo.png', contentType: 'image/png', size: 2048 });
    assert.deepEqual(progress, [{ loaded: 1024, total: 2048 }, { loaded: 2048, total: 2048 }]);
    assert.deepEqual(events, [{ name: 'photo.png', loaded: 1024, total: 2048 }, { name: 'photo.png', loaded: 2048, total: 2048 }]);
  });

  test('a refused type or size is refused before any request; the page\'s limits apply', async (t) => {
    const { client, requests, made } = await started(t, { attachments: { maxBytes: 1000 } });
    const before = requests.length;
    await assert.rejects(client.upload(file('big.png', 'image/png', 1001)), (e) => e instanceof ChatAttachmentError && e.code === 'too_large' && e.fileName === 'big.png' && /the limit is 1000 B/.test(e.message));
    await assert.rejects(client.upload(file('run.sh', 'application/x-sh', 10)), (e) => e.code === 'type_not_allowed' && /not accepted/.test(e.message));
    await assert.rejects(client.upload(file('empty.txt', 'text/plain', 0)), (e) => e.code === 'empty');
    assert.equal(requests.length, before, 'nothing asked of the server');
    assert.equal(made.length, 0, 'nothing uploaded');
    assert.equal(client.checkAttachment(file('ok.txt', 'text/plain', 3)), null);
    assert.equal(client.attachmentLimits.maxBytes, 1000);
    assert.equal(client.attachmentLimits.maxPerMessage, ATTACHMENT_DEFAULTS.maxPerMessage);
  });

  test('the server\'s 413 and 400 become ChatAttachmentErrors with its message; nothing is uploaded', async (t) => {
    const { client, answers, made } = await started(t, { attachments: { maxBytes: 100 * MB } });
    answers.declare = () => [413, { error: { code: 'too_large', message: 'the file is larger than 10485760 bytes' } }];
    await assert.rejects(client.upload(file('big.pdf', 'application/pdf', 20 * MB)), (e) => e.code === 'too_large' && e.status === 413 && e.message === '“big.pdf” was refused: the file is larger than 10485760 bytes');
    answers.declare = () => [400, { error: { code: 'invalid_input', message: 'content type text/plain is not accepted' } }];
    await assert.rejects(client.upload(file('a.txt', 'text/plain', 5)), (e) => e.code === 'refused' && e.status === 400 && /not accepted/.test(e.message));
    assert.equal(made.length, 0);
  });

  test('send with attachments: shown at once with them, the frame carries their ids, the text may be empty; they survive a reload', async (t) => {
    const { client, sockets, storage } = await started(t);
    const a = { id: 'A1', name: 'photo.png', contentType: 'image/png', size: 2048 };
    const b = { id: 'A2', name: 'notes.txt', contentType: 'text/plain', size: 12, url: 'http://ignored' };
    const m = client.send('', { attachments: [a, b], clientMessageId: 'c1' });
    assert.deepEqual(m.attachments, [a, { id: 'A2', name: 'notes.txt', contentType: 'text/plain', size: 12 }], 'no url until stored');
    assert.deepEqual(sockets[0].sent.filter((f) => f.action === 'sendMessage'), [{ action: 'sendMessage', content: '', clientMessageId: 'c1', attachments: ['A1', 'A2'] }]);
    const saved = JSON.parse([...storage.entries()].find(([k]) => k.endsWith(':pending'))[1]);
    assert.deepEqual(saved[0].attachments.map((x) => x.id), ['A1', 'A2']);
    // The stored message (with download URLs) replaces the optimistic one.
    sockets[0].push({ event: 'ack', clientMessageId: 'c1', messageId: 'M1', seq: 1 });
    sockets[0].push({ event: 'message', message: { id: 'M1', seq: 1, sessionId: 'S1', role: 'user', type: 'text', content: '', clientMessageId: 'c1', status: 'received', createdAt: '2026-01-01T00:00:00Z', attachments: [{ ...a, url: '/files/A1?token=x' }, { ...b, url: '/files/A2?token=y' }] } });
    assert.deepEqual(client.messages.map((x) => [x.id, x.attachments.map((y) => y.url)]), [['M1', ['/files/A1?token=x', '/files/A2?token=y']]]);
  });

  test('an unsent message with attachments is restored after a reload and sent with them', async (t) => {
    const first = await started(t);
    first.sockets[0].readyState = 3; // the socket is gone: the send stays queued
    first.client.send('see this', { attachments: [{ id: 'A9', name: 'x.pdf', contentType: 'application/pdf', size: 5 }], clientMessageId: 'c9' });
    first.client.stop();
    // A new page: a new client over the same storage.
    const { client, sockets } = await started(t, { storage: first.storage });
    assert.deepEqual(client.messages.map((m) => [m.content, m.attachments?.map((x) => x.name)]), [['see this', ['x.pdf']]]);
    await until(() => sockets[0].sent.some((f) => f.action === 'sendMessage'), 'the resend');
    assert.deepEqual(sockets[0].sent.filter((f) => f.action === 'sendMessage'), [{ action: 'sendMessage', content: 'see this', clientMessageId: 'c9', attachments: ['A9'] }]);
  });

  test('more attachments than a message may carry: refused at send, nothing sent', async (t) => {
    const { client, sockets } = await started(t, { attachments: { maxPerMessage: 2 } });
    const three = ['A', 'B', 'C'].map((id) => ({ id, name: `${id}.png`, contentType: 'image/png', size: 1 }));
    assert.throws(() => client.send('x', { attachments: three }), (e) => e instanceof ChatAttachmentError && e.code === 'too_many');
    assert.throws(() => client.send('   '), /needs some text/);
    assert.deepEqual(sockets[0].sent.filter((f) => f.action === 'sendMessage'), []);
    assert.deepEqual(client.messages, []);
  });
});
