// Runs the JavaScript of the n8n workflow's Code nodes outside n8n, with small stand-ins for
// what n8n 2.x gives a Code node (its JS task runner): a `node:vm` context holding `$input`,
// `$env`, `$(...)`, `helpers` (reached as `this.helpers`), `Buffer` and a `require` that only
// allows `crypto` (NODE_FUNCTION_ALLOW_BUILTIN=crypto), the code wrapped exactly as the runner
// wraps it. The code is read from its file in infra/n8n/code/ (what infra/n8n/build-workflow
// puts into the workflow JSON). And a thin client of the Rust signature CLI
// (crates/chat-core/examples/signature.rs).

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const hostRequire = createRequire(import.meta.url);
const builder = hostRequire(path.join(root, 'infra', 'n8n', 'build-workflow'));
export const WORKFLOW_PATH = builder.WORKFLOW_PATH;
export const RUST_BIN = process.env.CHAT_SIGNATURE_BIN ??
  path.join(root, 'target', 'debug', 'examples', 'signature');

export function loadWorkflow() {
  return JSON.parse(fs.readFileSync(WORKFLOW_PATH, 'utf8'));
}

export function nodeNamed(workflow, name) {
  const node = workflow.nodes.find((n) => n.name === name);
  if (!node) throw new Error(`the workflow has no node named ${JSON.stringify(name)}`);
  return node;
}

/** The JavaScript of the Code node `name`, read from its file in infra/n8n/code/. */
export const codeOf = builder.codeOf;

/** infra/n8n/build-workflow's build(): the workflow JSON text made from the code files. */
export const buildWorkflow = builder.build;

/**
 * Runs a Code node's code ("Run Once for All Items") and resolves to the items it returns.
 * items: its input items ({json, binary?}); env: what `$env` holds (or 'blocked' to make
 * reading it throw, as n8n does with N8N_BLOCK_ENV_ACCESS_IN_NODE=true); nodes: outputs of
 * earlier nodes by name, for `$('Name')`; nowMs: what `Date.now()` returns; allowCrypto: false
 * acts as n8n without NODE_FUNCTION_ALLOW_BUILTIN=crypto; httpRequest: stands in for
 * `this.helpers.httpRequest` (n8n runs it in its main process and hands back the result, or
 * the error as a plain object); clock: a fake clock `{ nowMs, sleeps: [] }` for code that
 * waits: `Date.now()` reads it, and `setTimeout(fn, ms)` records ms, moves it on by ms and
 * calls fn at once.
 */
export async function runCodeNode(code, { items = [], env = {}, nodes = {}, nowMs, allowCrypto = true, httpRequest, clock } = {}) {
  const envProxy = new Proxy(env === 'blocked' ? {} : env, {
    get(target, key) {
      if (env === 'blocked') throw new Error('access to env vars denied');
      return target[key];
    },
  });
  const sandbox = {
    require(name) {
      if (allowCrypto && (name === 'crypto' || name === 'node:crypto')) return hostRequire('node:crypto');
      throw new Error(`Cannot find module '${name}' (not allowed by NODE_FUNCTION_ALLOW_BUILTIN)`);
    },
    Buffer,
    console,
    $input: { first: () => items[0], last: () => items.at(-1), all: () => items },
    $json: items[0]?.json,
    $env: envProxy,
    $(name) {
      const out = nodes[name];
      if (!out) throw new Error(`Referenced node doesn't exist: ${name}`);
      return { first: () => out[0], last: () => out.at(-1), all: () => out };
    },
    helpers: {
      async getBinaryDataBuffer(itemIndex, property) {
        const binary = items[itemIndex]?.binary?.[property];
        if (!binary) throw new Error(`no binary property ${property} on item ${itemIndex}`);
        return Buffer.from(binary.data, 'base64');
      },
      async httpRequest(options) {
        if (!httpRequest) throw new Error('this test gave no httpRequest stand-in');
        // Both ways through JSON, as over the task runner's connection.
        try {
          return JSON.parse(JSON.stringify(await httpRequest(JSON.parse(JSON.stringify(options)))));
        } catch (e) {
          throw JSON.parse(JSON.stringify({ message: e.message, code: e.code }));
        }
      },
    },
    setTimeout(fn, ms) {
      if (!clock) throw new Error('this test gave no clock for setTimeout');
      clock.sleeps.push(ms);
      clock.nowMs += ms;
      return setImmediate(fn);
    },
  };
  const context = vm.createContext(sandbox);
  if (clock) {
    sandbox.readClock = () => clock.nowMs;
    vm.runInContext('Date.now = () => readClock()', context);
  } else if (nowMs !== undefined) {
    vm.runInContext(`Date.now = () => ${Number(nowMs)}`, context);
  }
  // The n8n 2.x JS task runner runs `module.exports = async function VmCodeWrapper() {<code>\n}()`
  // in such a context, so `this` inside the code is the context's global (with `helpers`).
  const wrapped = [
    'globalThis.global = globalThis',
    'var module = { exports: {} }',
    `module.exports = async function VmCodeWrapper() {${code}\n}()`,
  ].join('; ');
  const result = await vm.runInContext(wrapped, context, { filename: 'code-node.js' });
  // Items cross back from the vm realm: make them plain host objects.
  return JSON.parse(JSON.stringify(result));
}

/** What n8n's Webhook node (option Raw Body) outputs for a POST with these headers and bytes. */
export function webhookItem(headers, rawBody, parsedBody = undefined) {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    json: {
      headers: { 'content-type': 'application/json', ...lower },
      params: {},
      query: {},
      body: parsedBody ?? {},
    },
    binary: { data: { data: Buffer.from(rawBody).toString('base64'), mimeType: 'application/json' } },
  };
}

function runRust(args, body) {
  const r = spawnSync(RUST_BIN, args, { input: Buffer.from(body) });
  if (r.error) throw new Error(`cannot run ${RUST_BIN} (build it: cargo build -p chat-core --example signature): ${r.error.message}`);
  if (r.status !== 0 && r.status !== 1) {
    throw new Error(`${RUST_BIN} ${args[0]} exited ${r.status}: ${r.stderr}`);
  }
  return { status: r.status, out: r.stdout.toString('utf8').trim() };
}

/** Rust's `signature::sign`: the X-Chat-Signature value. */
export function rustSign(secret, timestamp, body) {
  const r = runRust(['sign', secret, String(timestamp)], body);
  if (r.status !== 0) throw new Error('rust sign failed');
  return r.out;
}

/** Rust's `signature::verify`: 'ok' or its error code. */
export function rustVerify(secret, timestamp, signature, nowSecs, body) {
  return runRust(['verify', secret, String(timestamp), signature, String(nowSecs)], body).out;
}
