// Attachments (issue 13) in headless Chromium: the widget in one page, the agent console in
// another. The story: the user attaches files by the button (from the keyboard, the upload's
// progress shown on its chip, slowed by Chromium's network throttling), by pasting an image and
// by dropping files, removes one, and sends the rest with a message; it arrives with its images
// rendered, in the widget and in the console; the agent sends a PDF back, which the widget lists
// as a download link whose bytes are the PDF's. Refused files (too large, a type not accepted,
// too many; and what the server refuses past the page's own check) show a clear error and
// nothing reaches the server. Hostile file names (and a hostile download URL) are shown as text,
// on a page without CSP. The story runs against the real chat-local (its page under its
// Content-Security-Policy: a violation fails the test) and against the tests' agent contract
// server (agent-contract-server.mjs, with the attachment routes as the contract has them),
// which also scripts the refusals and the hostile cases.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startAgentContractServer, signJwt } from './agent-contract-server.mjs';
import {
  launchBrowser, waitFor, newPage, openWidget, connected, send, readMessages, ensureOutput, startServer, tempDir, removeDir,
  AWS_GATEWAY_BIN,
} from './support.mjs';

let browser;
const cleanup = [];

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const f of cleanup.reverse()) await f();
});

const MB = 1024 * 1024;
const widgetEl = (page, css) => page.locator(`[data-chat-widget] ${css}`);
const consoleRoot = (page) => page.locator('[data-agent-console-root]');
const inboxItem = (page, sessionId) => consoleRoot(page).locator(`button.item[data-session="${sessionId}"]`);

async function contract(opts) {
  const srv = await startAgentContractServer(opts);
  cleanup.push(() => srv.close());
  return srv;
}

/** The real chat-local (files on disk in its temporary data folder), with agents enabled. */
async function chatLocal() {
  const secret = 'attachments-browser-test-secret-0123456789';
  const dataDir = tempDir();
  const srv = await startServer({ dataDir, env: { CHAT_AUTH_JWT_SECRET: secret } });
  cleanup.push(async () => {
    await srv.stop();
    removeDir(dataDir);
  });
  return { name: '', url: srv.url, agentToken: ({ id, name }) => signJwt({ sub: id, name, role: 'agent' }, secret) };
}

/**
 * The AWS deployment's code: the Lambda handlers behind the test kit's API Gateway stand-in
 * (`aws-gateway`: HTTP and WebSocket APIs, the Management API the functions push through, the
 * dispatch queue's event source), with DynamoDB, SQS and S3 on the AWS emulator. Files go up to
 * S3 by presigned PUT and come back by presigned GET, through the bucket's CORS rule of
 * template.yaml. Default limits; its n8n is the kit's fake, which reads the files it is sent.
 */
async function awsGateway() {
  const secret = 'attachments-browser-test-secret-aws-0123456789';
  const srv = await startServer({ bin: AWS_GATEWAY_BIN, raiseLimits: false, env: { CHAT_AUTH_JWT_SECRET: secret } });
  cleanup.push(() => srv.stop());
  return { name: '-aws', url: srv.url, agentToken: ({ id, name }) => signJwt({ sub: id, name, role: 'agent' }, secret) };
}

async function context(t) {
  const ctx = await browser.newContext();
  t.after(() => ctx.close());
  return ctx;
}

/** A PNG drawn in the page: a gradient, or random pixels (which do not compress: a big file). */
async function png(page, { width = 64, height = 48, noise = false } = {}) {
  const b64 = await page.evaluate(({ width: w, height: h, noise: n }) => {
    const c = document.createElement('canvas');
    c.width = w;
    c.height = h;
    const x = c.getContext('2d');
    if (n) {
      const img = x.createImageData(w, h);
      for (let i = 0; i < img.data.length; i++) img.data[i] = (i % 4 === 3) ? 255 : Math.floor(Math.random() * 256);
      x.putImageData(img, 0, 0);
    } else {
      const g = x.createLinearGradient(0, 0, w, h);
      g.addColorStop(0, '#2563eb');
      g.addColorStop(1, '#f59e0b');
      x.fillStyle = g;
      x.fillRect(0, 0, w, h);
    }
    return c.toDataURL('image/png').split(',')[1];
  }, { width, height, noise });
  return Buffer.from(b64, 'base64');
}

const PDF = Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n');

/** The files to attach, as the page gets them: `[{ name, type, b64 }]`. */
const forPage = (files) => files.map((f) => ({ name: f.name, type: f.mimeType, b64: f.buffer.toString('base64') }));

/**
 * Keeps Playwright's interception of file choosers on for `page`: it is switched on by the first
 * listener, asynchronously, so a chooser opened just after `waitForEvent` may escape it.
 */
const intercepting = new WeakSet();
async function interceptChoosers(page) {
  if (intercepting.has(page)) return;
  intercepting.add(page);
  page.on('filechooser', () => {});
  await page.evaluate(() => 0);
}

/** Opens the widget's file picker from the keyboard (Enter on the attach button) and picks `files`. */
async function attachByKeyboard(page, files) {
  await interceptChoosers(page);
  await widgetEl(page, 'button.attach').focus();
  const [chooser] = await Promise.all([page.waitForEvent('filechooser', { timeout: 5_000 }), page.keyboard.press('Enter')]);
  assert.equal(chooser.isMultiple(), true);
  await chooser.setFiles(files);
}

/** Pastes `files` into the widget's message box (a paste event carrying them, as a browser makes it). */
async function pasteFiles(page, files) {
  return page.evaluate((list) => {
    const box = document.querySelector('[data-chat-widget]').shadowRoot.querySelector('textarea');
    const dt = new DataTransfer();
    for (const f of list) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name, { type: f.type }));
    const ev = new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true, composed: true });
    box.dispatchEvent(ev);
    return ev.defaultPrevented;
  }, forPage(files));
}

/** Drags `files` over the widget's panel and drops them; returns whether the drop zone showed. */
async function dropFiles(page, files) {
  return page.evaluate((list) => {
    const root = document.querySelector('[data-chat-widget]').shadowRoot;
    const panel = root.querySelector('.panel');
    const dt = new DataTransfer();
    for (const f of list) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name, { type: f.type }));
    const target = root.querySelector('.log');
    target.dispatchEvent(new DragEvent('dragenter', { dataTransfer: dt, bubbles: true, cancelable: true, composed: true }));
    target.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true, composed: true }));
    const shown = !root.querySelector('.drop').hidden;
    target.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true, composed: true }));
    return { shown, hiddenAfter: root.querySelector('.drop').hidden, panel: !!panel };
  }, forPage(files));
}

/** The chips of files attached to the next message, in the widget or the console. */
function chips(page, host = '[data-chat-widget]') {
  return page.evaluate((h) => [...document.querySelector(h).shadowRoot.querySelectorAll('.tray .chip')].map((li) => ({
    name: li.querySelector('.name').textContent,
    state: li.dataset.state,
    progress: li.querySelector('progress').value,
    status: li.querySelector('.state').textContent,
    thumbnail: li.querySelector('canvas')?.dataset.drawn === 'true',
  })), host);
}

/** The messages of the widget or the console with their attachments as rendered. */
function shown(page, host = '[data-chat-widget]') {
  return page.evaluate((h) => [...document.querySelector(h).shadowRoot.querySelectorAll('li.msg')].map((li) => ({
    role: li.dataset.role,
    text: li.querySelector('.bubble .text').textContent,
    files: [...li.querySelectorAll('li.attachment')].map((a) => {
      const img = a.querySelector('img');
      const link = a.querySelector('a');
      return {
        kind: img ? 'image' : 'file',
        alt: img?.getAttribute('alt') ?? null,
        loaded: img ? img.complete && img.naturalWidth > 0 : null,
        text: img ? '' : `${a.querySelector('.name').textContent} ${a.querySelector('.size').textContent}`,
        icon: a.querySelector('.icon')?.textContent ?? null,
        href: link?.href ?? null,
        rel: link?.rel ?? null,
        target: link?.target ?? null,
      };
    }),
  })), host);
}

const alertText = async (page) => ((await widgetEl(page, '.attach-error').isVisible()) ? widgetEl(page, '.attach-error span').textContent() : '');

async function signInConsole(page, token) {
  await consoleRoot(page).locator('#token').fill(token);
  await consoleRoot(page).getByRole('button', { name: 'Sign in' }).click();
  await consoleRoot(page).getByRole('tab', { name: /Waiting/ }).waitFor({ state: 'visible', timeout: 10_000 });
  await waitFor(() => page.evaluate(() => window.__agentConsole?.state.connection === 'open'), { what: 'the console\'s socket' });
}

/** The widget asks for a person; Alex claims the session in the console. */
async function handedToAgent(user, alex, backend) {
  await signInConsole(alex, backend.agentToken({ id: 'a-alex', name: 'Alex' }));
  await openWidget(user);
  await connected(user);
  await widgetEl(user, '.handoff').click();
  const sessionId = await user.evaluate(() => window.__chatWidget.client.sessionId);
  await inboxItem(alex, sessionId).click();
  await consoleRoot(alex).getByRole('button', { name: 'Claim' }).click();
  await waitFor(async () => (await consoleRoot(alex).locator('.badge').textContent()) === 'With you', { what: 'Alex to hold it' });
  await waitFor(async () => (await readMessages(user)).some((m) => m.text === 'Alex joined the conversation'), { what: 'the joined notice' });
  return sessionId;
}

/** Fetches `url` in the page; resolves to its bytes (base64) and content type. */
function download(page, url) {
  return page.evaluate(async (u) => {
    const r = await fetch(u);
    const b = new Uint8Array(await r.arrayBuffer());
    let s = '';
    for (const x of b) s += String.fromCharCode(x);
    return { status: r.status, type: r.headers.get('content-type'), b64: btoa(s), disposition: r.headers.get('content-disposition') };
  }, url);
}

async function story(backend, t) {
  const user = await newPage(await context(t), `${backend.url}/`);
  const alex = await newPage(await context(t), `${backend.url}/agent`, { viewport: { width: 1280, height: 800 } });
  await handedToAgent(user, alex, backend);

  // 1. By the button, from the keyboard: a big photo, its upload slowed so that its progress shows.
  const photo = await png(user, { width: 700, height: 700, noise: true });
  assert.ok(photo.length > MB, `a big photo (${photo.length} bytes)`);
  const cdp = await user.context().newCDPSession(user);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 512 * 1024 });
  await attachByKeyboard(user, [{ name: 'photo.png', mimeType: 'image/png', buffer: photo }]);
  const partWay = await waitFor(async () => {
    const [c] = await chips(user);
    return c && c.state === 'uploading' && c.progress > 0 && c.progress < 100 && c;
  }, { what: 'the upload part way', timeoutMs: 20_000 });
  assert.match(partWay.status, /^1\.\d MB · \d{1,2} %$/, `the chip says how far: ${partWay.status}`);
  assert.equal(await widgetEl(user, 'button.send').isDisabled(), true, 'no sending while a file uploads');
  await widgetEl(user, '.tray').screenshot({ path: join(ensureOutput(), 'attachments-progress.png') });
  await waitFor(async () => (await chips(user))[0]?.state === 'ready', { what: 'the photo uploaded', timeoutMs: 30_000 });
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });

  // 2. Pasting an image into the message box.
  const small = await png(user, { width: 40, height: 30 });
  assert.equal(await pasteFiles(user, [{ name: 'image.png', mimeType: 'image/png', buffer: small }]), true, 'the paste of a file is not also pasted as text');
  // 3. Dropping files on the panel (the drop zone shows while dragging).
  const dropped = await dropFiles(user, [
    { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('Order 1234\n') },
    { name: 'extra.png', mimeType: 'image/png', buffer: small },
  ]);
  assert.deepEqual(dropped, { shown: true, hiddenAfter: true, panel: true });
  await waitFor(async () => {
    const c = await chips(user);
    return c.length === 4 && c.every((x) => x.state === 'ready');
  }, { what: 'four files ready' });
  const ready = await chips(user);
  assert.deepEqual(ready.map((c) => [c.name, c.thumbnail]), [['photo.png', true], ['image.png', true], ['notes.txt', false], ['extra.png', true]], 'thumbnails of images, a file icon otherwise');
  assert.equal(ready[2].status, '11 B · ready');
  await widgetEl(user, '.tray').screenshot({ path: join(ensureOutput(), 'attachments-tray.png') });

  // One is removed before sending (by its labelled button).
  await widgetEl(user, '.tray').getByRole('button', { name: 'Remove extra.png' }).click();
  assert.deepEqual((await chips(user)).map((c) => c.name), ['photo.png', 'image.png', 'notes.txt']);

  await send(user, 'Here are my files');
  assert.deepEqual(await chips(user), [], 'the tray is empty once sent');
  const isStored = (m) => m.role === 'user' && m.text === 'Here are my files' && m.files.length === 3 && m.files.every((f) => f.href);
  const inWidget = await waitFor(async () => (await shown(user)).find(isStored), { what: 'the message with its files in the widget' });
  await waitFor(async () => (await shown(user)).find(isStored)?.files.filter((f) => f.kind === 'image').every((f) => f.loaded), { what: 'the images rendered in the widget' });
  assert.deepEqual(inWidget.files.map((f) => [f.kind, f.alt, f.text]), [
    ['image', 'photo.png', ''], ['image', 'image.png', ''], ['file', null, 'notes.txt (11 B)'],
  ]);
  for (const f of inWidget.files) assert.deepEqual([f.rel, f.target], ['noopener noreferrer', '_blank']);
  const photoBack = await download(user, inWidget.files[0].href);
  assert.equal(photoBack.status, 200);
  assert.equal(Buffer.from(photoBack.b64, 'base64').equals(photo), true, 'the photo comes back byte for byte');

  // The console shows the same message with its files.
  const inConsole = await waitFor(async () => (await shown(alex, '[data-agent-console-root]')).find(isStored), { what: 'the message in the console' });
  await waitFor(async () => (await shown(alex, '[data-agent-console-root]')).find(isStored)?.files.filter((f) => f.kind === 'image').every((f) => f.loaded), { what: 'the images rendered in the console' });
  assert.deepEqual(inConsole.files.map((f) => [f.kind, f.alt ?? f.text]), [['image', 'photo.png'], ['image', 'image.png'], ['file', 'notes.txt (11 B)']]);

  // The agent sends a PDF back (the console's attach button); the widget lists it as a download.
  await interceptChoosers(alex);
  const [chooser] = await Promise.all([alex.waitForEvent('filechooser', { timeout: 5_000 }), consoleRoot(alex).getByRole('button', { name: 'Attach files' }).click()]);
  await chooser.setFiles([{ name: 'invoice.pdf', mimeType: 'application/pdf', buffer: PDF }]);
  await waitFor(async () => (await chips(alex, '[data-agent-console-root]'))[0]?.state === 'ready', { what: 'the PDF uploaded from the console' });
  await consoleRoot(alex).locator('.composer textarea').fill('Your invoice');
  await consoleRoot(alex).locator('.composer textarea').press('Enter');
  const pdfRow = await waitFor(async () => (await shown(user)).find((m) => m.role === 'agent' && m.text === 'Your invoice' && m.files[0]?.href), { what: 'the PDF in the widget' });
  assert.deepEqual(pdfRow.files.map((f) => [f.kind, f.text, f.rel]), [['file', `invoice.pdf (${PDF.length} B)`, 'noopener noreferrer']]);
  assert.equal(pdfRow.files[0].icon, 'PDF');
  const link = widgetEl(user, 'li.msg.agent li.attachment a').last();
  assert.equal(await link.getAttribute('download'), 'invoice.pdf');
  const pdfBack = await download(user, pdfRow.files[0].href);
  assert.equal(pdfBack.status, 200);
  assert.equal(pdfBack.type, 'application/pdf');
  // Content-Disposition is not a header a page may read across origins (S3 on AWS), so it is
  // checked from here, as a browser's navigation to the link gets it.
  const pdfHead = await fetch(new URL(pdfRow.files[0].href, backend.url));
  assert.match(pdfHead.headers.get('content-disposition') ?? '', /^attachment/);
  assert.equal(Buffer.from(pdfBack.b64, 'base64').equals(PDF), true, 'the PDF comes back byte for byte');
  assert.deepEqual(await chips(alex, '[data-agent-console-root]'), [], 'the console\'s tray is empty once sent');
  await widgetEl(user, '.panel').screenshot({ path: join(ensureOutput(), `attachments-widget${backend.name ?? ''}.png`) });
  for (const p of [user, alex]) assert.deepEqual(p.errors, []);
}

describe('attachments in the widget and the agent console', () => {
  test('against the real chat-local: by button (keyboard, progress), paste and drop; sent, rendered in both; a PDF back as a download', async (t) => {
    await story(await chatLocal(), t);
  });

  test('on the AWS deployment (Lambda handlers, DynamoDB, SQS and S3 on the emulator): by button (keyboard, progress), paste and drop; sent, rendered in both; a PDF back as a download', async (t) => {
    await story(await awsGateway(), t);
  });

  test('on the AWS deployment: a file sent to the bot reaches n8n as a URL it can read; the image comes from S3, also after a reload', async (t) => {
    const backend = await awsGateway();
    const user = await newPage(await context(t), `${backend.url}/`);
    await openWidget(user);
    await connected(user);
    const image = await png(user, { width: 40, height: 30 });
    await attachByKeyboard(user, [{ name: 'screen.png', mimeType: 'image/png', buffer: image }]);
    await waitFor(async () => (await chips(user))[0]?.state === 'ready', { what: 'the image uploaded to S3' });
    await send(user, 'What is on my screen?');
    const reply = await waitFor(async () => (await readMessages(user)).find((m) => m.role === 'assistant'), { what: 'n8n\'s answer', timeoutMs: 30_000 });
    assert.equal(reply.text, `fake n8n got: What is on my screen? [screen.png: ${image.length} bytes]`, 'n8n downloaded the file by its URL');
    const isMine = (m) => m.role === 'user' && m.text === 'What is on my screen?' && m.files[0]?.loaded;
    const mine = await waitFor(async () => (await shown(user)).find(isMine), { what: 'the image rendered from S3' });
    const s3 = new URL(mine.files[0].href);
    assert.notEqual(s3.origin, new URL(backend.url).origin, 'the file is served by S3 (the emulator), not through the functions');
    assert.match(s3.search, /X-Amz-Signature=/, 'by a presigned URL');
    const back = await download(user, mine.files[0].href);
    assert.equal(Buffer.from(back.b64, 'base64').equals(image), true, 'the image comes back byte for byte');
    await user.reload();
    await openWidget(user);
    await waitFor(async () => (await shown(user)).find(isMine), { what: 'the image again after a reload (history mints a fresh URL)' });
    assert.deepEqual(user.errors, []);
  });

  test('against the agent contract server: by button (keyboard, progress), paste and drop; sent, rendered in both; a PDF back as a download', async (t) => {
    await story(Object.assign(await contract(), { name: '-contract' }), t);
  });

  test('refused files: too large, a type not accepted, too many; the server\'s own refusal; a clear error each time and nothing sent', async (t) => {
    const srv = await contract();
    const ctx = await context(t);
    const user = await newPage(ctx, `${srv.url}/`);
    await openWidget(user);
    await connected(user);
    const sessionId = await user.evaluate(() => window.__chatWidget.client.sessionId);

    await attachByKeyboard(user, [{ name: 'big.png', mimeType: 'image/png', buffer: Buffer.alloc(10 * MB + 1) }]);
    await waitFor(async () => (await alertText(user)) !== '', { what: 'the size error' });
    assert.equal(await alertText(user), `“big.png” is too large (${10 * MB + 1} bytes); the limit is ${10 * MB} bytes.`);
    assert.equal(await widgetEl(user, '.attach-error').getAttribute('role'), 'alert');

    await attachByKeyboard(user, [{ name: 'setup.exe', mimeType: 'application/x-msdownload', buffer: Buffer.from('MZ') }]);
    assert.equal(await alertText(user), '“setup.exe” cannot be sent: this type of file (application/x-msdownload) is not accepted. Allowed: PNG, JPEG, GIF, WebP, PDF or plain text.');
    await dropFiles(user, [{ name: 'page.html', mimeType: 'text/html', buffer: Buffer.from('<h1>x</h1>') }]);
    assert.match(await alertText(user), /^“page\.html” cannot be sent: this type of file \(text\/html\) is not accepted\./);
    assert.deepEqual(await chips(user), []);

    // Six at once: five are attached, the sixth is refused with the reason.
    const small = await png(user);
    await attachByKeyboard(user, [1, 2, 3, 4, 5, 6].map((i) => ({ name: `p${i}.png`, mimeType: 'image/png', buffer: small })));
    assert.equal(await alertText(user), 'A message can carry at most 5 files.');
    assert.equal((await chips(user)).length, 5);
    for (let i = 1; i <= 5; i++) await widgetEl(user, '.tray').getByRole('button', { name: `Remove p${i}.png` }).click();
    assert.deepEqual(await chips(user), []);

    // The alert can be dismissed.
    await widgetEl(user, '.attach-error').getByRole('button', { name: 'Dismiss' }).click();
    assert.equal(await widgetEl(user, '.attach-error').isHidden(), true);

    // Nothing of the refused files reached the server; no message was sent.
    const refusedNames = srv.attachmentRequests.length;
    assert.equal([...srv.attachments.values()].filter((a) => /big|setup|page/.test(a.name)).length, 0);
    assert.deepEqual(srv.sessions.get(sessionId).messages.filter((m) => m.role === 'user'), []);
    assert.deepEqual((await readMessages(user)).filter((m) => m.role === 'user'), []);

    // A page whose own limit is higher than the server's: the server's 413 is shown, nothing uploaded.
    const lax = await newPage(ctx, `${srv.url}/`, { init: 'window.chatWidgetConfig = { clientOptions: { attachments: { maxBytes: 64 * 1024 * 1024 } } };' });
    await lax.evaluate(() => localStorage.clear());
    await lax.reload();
    await openWidget(lax);
    await connected(lax);
    await attachByKeyboard(lax, [{ name: 'huge.pdf', mimeType: 'application/pdf', buffer: Buffer.alloc(12 * MB) }]);
    await waitFor(async () => (await alertText(lax)) !== '', { what: 'the server\'s refusal' });
    assert.equal(await alertText(lax), `“huge.pdf” was refused: the file is larger than ${10 * MB} bytes`);
    assert.deepEqual(await chips(lax), []);
    assert.deepEqual(srv.attachmentRequests.slice(refusedNames).map(([m, p]) => [m, p.replace(/[0-9A-Z]{26}/, 'ID')]), [['POST', '/sessions/ID/attachments']], 'asked, refused, nothing PUT');
    assert.deepEqual([...user.errors, ...lax.errors], []);
  });

  test('hostile file names and a hostile download URL are shown as text, in the widget and the console (no CSP on this page)', async (t) => {
    const srv = await contract();
    const user = await newPage(await context(t), `${srv.url}/`);
    const alex = await newPage(await context(t), `${srv.url}/agent`);
    const sessionId = await handedToAgent(user, alex, srv);
    const evilImage = '<img src=x onerror="window.__pwned=1">.png';
    const evilText = '"><svg onload=window.__pwned=2><script>window.__pwned=3</script>.txt';
    const declaredText = evilText.replace('/', '_'); // no path separator in a declared name
    await attachByKeyboard(user, [
      { name: evilImage, mimeType: 'image/png', buffer: await png(user) },
      { name: evilText, mimeType: 'text/plain', buffer: Buffer.from('hi') },
    ]);
    await waitFor(async () => (await chips(user)).every((c) => c.state === 'ready') && (await chips(user)).length === 2, { what: 'both uploaded' });
    assert.deepEqual((await chips(user)).map((c) => c.name), [evilImage, declaredText], 'names as text on the chips');
    await send(user, '');
    await waitFor(async () => (await shown(user)).some((m) => m.role === 'user' && m.files.length === 2 && m.files[0].loaded), { what: 'the message with both' });
    // A message whose attachment URL is a script: no link is made of it.
    srv.inject(sessionId, { role: 'agent', name: 'Alex', content: 'A link', attachments: [{ id: 'X1', name: 'run.pdf', contentType: 'application/pdf', size: 10, url: 'javascript:window.__pwned=4' }, { id: 'X2', name: 'pic.png', contentType: 'image/png', size: 10, url: ' data:image/png;base64,AAAA' }] });
    await waitFor(async () => (await shown(user)).some((m) => m.text === 'A link'), { what: 'the injected message' });
    await waitFor(async () => (await shown(alex, '[data-agent-console-root]')).some((m) => m.text === 'A link'), { what: 'the injected message in the console' });
    for (const [page, host] of [[user, '[data-chat-widget]'], [alex, '[data-agent-console-root]']]) {
      const rows = await shown(page, host);
      const mine = rows.find((m) => m.role === 'user' && m.files.length === 2);
      assert.deepEqual(mine.files.map((f) => [f.kind, f.alt, f.text]), [['image', evilImage, ''], ['file', null, `${declaredText} (2 B)`]], host);
      const injected = rows.find((m) => m.text === 'A link');
      assert.deepEqual(injected.files.map((f) => [f.kind, f.href, f.text]), [['file', null, 'run.pdf (10 B)'], ['file', null, 'pic.png (10 B)']], `${host}: no link, no image`);
      const found = await page.evaluate((h) => {
        const root = document.querySelector(h).shadowRoot;
        return {
          imgs: root.querySelectorAll('img').length,
          svgs: root.querySelectorAll('.log svg, .tray svg').length,
          scripts: root.querySelectorAll('script').length + document.querySelectorAll('body script:not([src])').length,
          handlers: [...root.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length,
          badLinks: [...root.querySelectorAll('a')].filter((a) => a.getAttribute('href') && !/^https?:/.test(a.href)).length,
          pwned: window.__pwned ?? null,
        };
      }, host);
      assert.deepEqual(found, { imgs: 1, svgs: 0, scripts: 0, handlers: 0, badLinks: 0, pwned: null }, host);
    }
    for (const p of [user, alex]) assert.deepEqual(p.errors, []);
  });
});
