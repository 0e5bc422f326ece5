// Starts the real n8n (the one tests/n8n/install put in tests/n8n/node_modules) and the real
// chat-local binary for real-n8n.test.mjs: each on 127.0.0.1 on an ephemeral port, with a
// temporary folder, every wait bounded, each stopped with its child processes at the end, also
// when a test fails or the run is interrupted.
//
// n8n runs headless and offline: a temporary N8N_USER_FOLDER, the workflow imported and
// published with the n8n CLI before `n8n start`, no telemetry, version checks, templates,
// banners, community packages or license renewal, and the settings the workflow needs
// (NODE_FUNCTION_ALLOW_BUILTIN=crypto, N8N_BLOCK_ENV_ACCESS_IN_NODE=false, CHAT_WEBHOOK_SECRET).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
export const N8N_BIN = path.join(here, 'node_modules', '.bin', 'n8n');
export const WORKFLOW = path.join(root, 'infra', 'n8n', 'chat-workflow.json');
export const CHAT_LOCAL_BIN = process.env.CHAT_LOCAL_BIN ?? path.join(root, 'target', 'debug', 'chat-local');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A free TCP port on 127.0.0.1 (the OS picks it). */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Polls `check` every 250 ms until it returns something truthy; throws after `ms`. */
export async function waitFor(what, ms, check) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(250);
  }
}

// Every process group and temporary folder made here, so that an interrupted run still stops
// and removes them.
const running = new Set();
const folders = new Set();
const killAll = () => {
  for (const child of running) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const folder of folders) fs.rmSync(folder, { recursive: true, force: true, maxRetries: 3 });
};

function tempFolder(prefix) {
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  folders.add(folder);
  return folder;
}

function removeFolder(folder) {
  fs.rmSync(folder, { recursive: true, force: true });
  folders.delete(folder);
}
process.once('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    killAll();
    process.exit(128 + os.constants.signals[signal]);
  });
}

/** Starts `bin args` in its own process group (so its children stop with it), output to `log`. */
function launch(bin, args, { env, log }) {
  const out = fs.openSync(log, 'a');
  const child = spawn(bin, args, { env, detached: true, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  running.add(child);
  exited.then(() => running.delete(child));
  return { child, exited };
}

/** SIGTERM to the group, SIGKILL after `graceMs`; resolves when the leader has exited. */
async function stopGroup({ child, exited }, graceMs = 15_000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }, graceMs);
  await exited;
  clearTimeout(timer);
  // The task runner and anything else n8n started: no survivors.
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // none left
  }
}

/** Runs an n8n CLI command to completion (bounded); throws with the log's tail if it fails. */
async function n8nCli(args, { env, log, timeoutMs = 120_000 }) {
  const started = launch(N8N_BIN, args, { env, log });
  const timer = setTimeout(() => stopGroup(started, 2000), timeoutMs);
  const { code, signal } = await started.exited;
  clearTimeout(timer);
  if (code !== 0) {
    throw new Error(`n8n ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${tail(log)}`);
  }
}

const tail = (file, lines = 40) => {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
};

/**
 * Imports `credentials` (an array of n8n credential objects {id, name, type, data}, which n8n
 * encrypts itself) and publishes the workflows (`workflowPath`, or each of `workflowPaths`)
 * into a fresh n8n user folder, starts n8n and waits until every workflow is active. Resolves
 * to {baseUrl, webhookUrl, log, workflowId, rest, stop} (webhookUrl and workflowId: the first
 * workflow's, the shipped signed workflow by default).
 */
export async function startN8n({ secret, workflowPath = WORKFLOW, workflowPaths = [workflowPath], credentials = [] }) {
  if (!fs.existsSync(N8N_BIN)) throw new Error(`no n8n at ${N8N_BIN}: run tests/n8n/install`);
  const folder = tempFolder('chat-n8n-test-');
  const log = path.join(folder, 'n8n.log');
  const port = await freePort();
  const env = {
    PATH: process.env.PATH,
    HOME: folder,
    TZ: 'UTC',
    N8N_USER_FOLDER: folder,
    N8N_LISTEN_ADDRESS: '127.0.0.1',
    N8N_HOST: '127.0.0.1',
    N8N_PORT: String(port),
    N8N_PROTOCOL: 'http',
    N8N_RUNNERS_BROKER_LISTEN_ADDRESS: '127.0.0.1',
    N8N_RUNNERS_BROKER_PORT: String(await freePort()),
    // Offline: nothing that calls out.
    N8N_DIAGNOSTICS_ENABLED: 'false',
    N8N_VERSION_NOTIFICATIONS_ENABLED: 'false',
    N8N_VERSION_NOTIFICATIONS_WHATS_NEW_ENABLED: 'false',
    N8N_TEMPLATES_ENABLED: 'false',
    N8N_DYNAMIC_BANNERS_ENABLED: 'false',
    N8N_COMMUNITY_PACKAGES_ENABLED: 'false',
    N8N_PERSONALIZATION_ENABLED: 'false',
    N8N_HIRING_BANNER_ENABLED: 'false',
    N8N_AI_ENABLED: 'false',
    N8N_LICENSE_AUTO_RENEW_ENABLED: 'false',
    N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS: 'false',
    // What the workflow needs (infra/n8n/README.md).
    NODE_FUNCTION_ALLOW_BUILTIN: 'crypto',
    N8N_BLOCK_ENV_ACCESS_IN_NODE: 'false',
    CHAT_WEBHOOK_SECRET: secret,
  };
  const ids = workflowPaths.map((p) => JSON.parse(fs.readFileSync(p, 'utf8')).id);
  const id = ids[0];
  try {
    if (credentials.length > 0) {
      const file = path.join(folder, 'credentials.json');
      fs.writeFileSync(file, JSON.stringify(credentials), { mode: 0o600 });
      await n8nCli(['import:credentials', `--input=${file}`], { env, log });
      fs.rmSync(file);
    }
    for (const [i, p] of workflowPaths.entries()) {
      await n8nCli(['import:workflow', `--input=${p}`], { env, log });
      await n8nCli(['publish:workflow', `--id=${ids[i]}`], { env, log });
    }
  } catch (e) {
    removeFolder(folder);
    throw e;
  }

  const n8n = launch(N8N_BIN, ['start'], { env, log });
  const baseUrl = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await stopGroup(n8n);
    removeFolder(folder);
  };
  try {
    // /healthz answers before the published workflows are active: wait for n8n to say so.
    await waitFor('n8n to activate the workflow', 180_000, () => {
      if (n8n.child.exitCode !== null) throw new Error(`n8n exited with ${n8n.child.exitCode}`);
      const text = fs.readFileSync(log, 'utf8');
      return text.includes('Editor is now accessible') && ids.every((i) => new RegExp(`Activated workflow .*ID: ${i}`).test(text));
    });
  } catch (e) {
    const message = `${e.message}\n--- n8n log:\n${tail(log)}`;
    await stop();
    throw new Error(message);
  }
  return { baseUrl, webhookUrl: `${baseUrl}/webhook/chat`, log, workflowId: id, rest: restClient(baseUrl), stop };
}

/**
 * n8n's own REST API (what its editor uses), signed in as the instance owner, which the first
 * call sets up. Only reads executions here.
 */
function restClient(baseUrl) {
  const browserId = 'chat-n8n-tests';
  let cookie;
  const call = async (method, route, body) => {
    const r = await fetch(`${baseUrl}/rest${route}`, {
      method,
      headers: { 'content-type': 'application/json', 'browser-id': browserId, ...(cookie ? { cookie } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`n8n ${method} /rest${route}: HTTP ${r.status} ${text.slice(0, 300)}`);
    return { response: r, json: text ? JSON.parse(text) : undefined };
  };
  const signIn = async () => {
    if (cookie) return;
    const { response } = await call('POST', '/owner/setup', {
      email: 'owner@example.com',
      firstName: 'Chat',
      lastName: 'Tests',
      password: 'Owner-password-1',
    });
    const auth = response.headers.getSetCookie().find((c) => c.startsWith('n8n-auth='));
    if (!auth) throw new Error('n8n set no n8n-auth cookie at owner setup');
    cookie = auth.split(';')[0];
  };
  return {
    /** The workflow's executions, newest first: [{id, status, mode, startedAt, stoppedAt}]. */
    async executions(workflowId) {
      await signIn();
      const filter = encodeURIComponent(JSON.stringify({ workflowId }));
      const { json } = await call('GET', `/executions?filter=${filter}&limit=50`);
      return json.data.results;
    },
    /** One execution with its run data (n8n's flatted format, as text). */
    async execution(id) {
      await signIn();
      const { json } = await call('GET', `/executions/${id}`);
      return json.data;
    },
  };
}

/**
 * Starts chat-local with its dispatches going to `n8nWebhookUrl`, signed with `secret`, and
 * waits until it answers. Resolves to {baseUrl, call(method, path, token, body), stop()}.
 */
export async function startChatLocal({ n8nWebhookUrl, secret, env = {} }) {
  if (!fs.existsSync(CHAT_LOCAL_BIN)) throw new Error(`no chat-local at ${CHAT_LOCAL_BIN}: cargo build -p chat-local`);
  const folder = tempFolder('chat-local-n8n-test-');
  const log = path.join(folder, 'chat-local.log');
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const proc = launch(CHAT_LOCAL_BIN, [], {
    log,
    env: {
      PATH: process.env.PATH,
      CHAT_ADDR: `127.0.0.1:${port}`,
      CHAT_DATA_DIR: path.join(folder, 'data'),
      CHAT_PUBLIC_URL: baseUrl,
      CHAT_N8N_WEBHOOK_URL: n8nWebhookUrl,
      CHAT_WEBHOOK_SECRET: secret,
      CHAT_SESSION_SECRET: 'real-n8n test session secret',
      RUST_LOG: 'info',
      ...env,
    },
  });
  const stop = async () => {
    await stopGroup(proc, 5000);
    removeFolder(folder);
  };
  const call = async (method, route, token, body) => {
    const r = await fetch(baseUrl + route, {
      method,
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: r.status, json: await r.json() };
  };
  try {
    await waitFor('chat-local to answer /health', 30_000, async () => {
      if (proc.child.exitCode !== null) throw new Error(`chat-local exited:\n${tail(log)}`);
      return fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);
    });
  } catch (e) {
    await stop();
    throw e;
  }
  return { baseUrl, wsUrl: `ws://127.0.0.1:${port}/ws`, call, log: () => tail(log), stop };
}
