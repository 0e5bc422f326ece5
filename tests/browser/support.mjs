// Test support: start/stop a real chat-local, launch Debian's Chromium, open pages with the
// widget (fast reconnects, CSP violations collected) and read it.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const OUTPUT = join(ROOT, 'tests/output');
const BIN = process.env.CHAT_LOCAL_BIN
  ?? join(process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, 'target'), 'debug/chat-local');

/** The Lambda handlers behind the test kit's API Gateway stand-in, on the AWS emulator. */
export const AWS_GATEWAY_BIN = process.env.AWS_GATEWAY_BIN
  ?? join(process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, 'target'), 'debug/aws-gateway');

export function tempDir() {
  return mkdtempSync(join(tmpdir(), 'chat-browser-'));
}

/** Polls `fn` until it returns a truthy value; throws after `timeoutMs`. */
export async function waitFor(fn, { timeoutMs = 15_000, intervalMs = 50, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Starts chat-local on `addr` (default an ephemeral 127.0.0.1 port) with `dataDir`; resolves to
 * `{ url, port, proc, stop(signal) }` once it prints its address. Rate limits are raised unless
 * `raiseLimits` is false. `bin` starts another server that prints its address the same way
 * (`AWS_GATEWAY_BIN`: the Lambda handlers behind the tests' API Gateway stand-in).
 */
export async function startServer({ dataDir, addr = '127.0.0.1:0', env = {}, bin = BIN, raiseLimits = true } = {}) {
  const limits = raiseLimits ? {
    CHAT_RATE_MESSAGES_PER_MINUTE: '10000',
    CHAT_RATE_SESSIONS_PER_5MIN: '10000',
    CHAT_RATE_WEBHOOKS_PER_MINUTE: '10000',
  } : {};
  const proc = spawn(bin, [], {
    env: {
      ...process.env,
      CHAT_ADDR: addr,
      ...(dataDir ? { CHAT_DATA_DIR: dataDir } : {}),
      ...limits,
      RUST_LOG: process.env.RUST_LOG ?? 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 20_000) stderr = stderr.slice(-10_000);
  });
  const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  const url = await new Promise((resolveUrl, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${bin} did not start within 60 s; stderr:\n${stderr}`));
    }, 60_000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${bin} exited (${code}) before listening; stderr:\n${stderr}`));
    });
  });
  const port = Number(new URL(url).port);
  return {
    url,
    port,
    proc,
    get stderr() {
      return stderr;
    },
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS, timeout: 60_000 });
}

/** The widget's messages as rendered: [{ role, type, seq, id, status, text, streaming }]. */
export function readMessages(page) {
  return page.evaluate(() => {
    const root = document.querySelector('[data-chat-widget]')?.shadowRoot;
    if (!root) return [];
    return [...root.querySelectorAll('li.msg')].map((li) => ({
      role: li.dataset.role,
      type: li.dataset.type,
      seq: li.dataset.seq === '' ? null : Number(li.dataset.seq),
      id: li.dataset.id,
      status: li.querySelector('.status')?.dataset.status ?? null,
      text: li.querySelector('.bubble .text').textContent,
      streaming: li.dataset.streaming === 'true',
    }));
  });
}

// Reconnect quickly in tests (the defaults back off up to 30 s), whatever config the page sets;
// `extra` (e.g. `{ authToken }`) goes over the page's own config.
const config = (extra = {}) => `(() => {
  const fast = { backoffBaseMs: 200, backoffMaxMs: 1500 };
  const extra = ${JSON.stringify(extra)};
  let config = { ...extra, clientOptions: { ...fast, ...extra.clientOptions } };
  Object.defineProperty(window, 'chatWidgetConfig', {
    configurable: true,
    get: () => config,
    set: (v) => { config = { ...v, ...extra, clientOptions: { ...fast, ...(v && v.clientOptions), ...extra.clientOptions } }; },
  });
})();`;

// Content-Security-Policy violations, as the page sees them (window.__cspViolations).
const CSP_WATCH = `(() => {
  window.__cspViolations = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__cspViolations.push(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline'));
  });
})();`;

/**
 * A page at `url`; `page.errors` collects uncaught errors and CSP violations reported on the
 * console. `widgetConfig` is merged over the page's `window.chatWidgetConfig`. `init`: a script
 * run before the page's own (after the widget config hook).
 */
export async function newPage(context, url, { viewport, widgetConfig, init } = {}) {
  const page = await context.newPage();
  if (viewport) await page.setViewportSize(viewport);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) errors.push(`CSP: ${m.text()}`);
  });
  await page.addInitScript(CSP_WATCH);
  await page.addInitScript(config(widgetConfig));
  if (init) await page.addInitScript(init);
  await page.goto(url);
  page.errors = errors;
  return page;
}

export const launcher = (page) => page.locator('[data-chat-widget] .launcher');
export const input = (page) => page.locator('[data-chat-widget] textarea');

export async function openWidget(page) {
  await launcher(page).click();
  await page.locator('[data-chat-widget] .panel').waitFor({ state: 'visible', timeout: 10_000 });
}

export async function connected(page) {
  await waitFor(() => page.evaluate(() => window.__chatWidget?.client.connectionState === 'open'), { what: 'the widget to connect' });
}

export async function send(page, text) {
  await input(page).fill(text);
  await input(page).press('Enter');
}

export function ensureOutput() {
  mkdirSync(OUTPUT, { recursive: true });
  return OUTPUT;
}

export function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true });
}
