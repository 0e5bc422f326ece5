// infra/n8n/chat-workflow.json itself: it is exactly what infra/n8n/build-workflow builds from
// the Code nodes' files in infra/n8n/code/ (so the JSON that users import and the code that
// signature.test.mjs and retry.test.mjs test can never drift apart), and it is wired as the
// contract needs. Run: tests/n8n/run.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { buildWorkflow, codeOf, loadWorkflow, nodeNamed, WORKFLOW_PATH } from './harness.mjs';

const workflow = loadWorkflow();
const BUILDER = path.join(path.dirname(WORKFLOW_PATH), 'build-workflow');
const committed = fs.readFileSync(WORKFLOW_PATH, 'utf8');
const codeFiles = fs.readdirSync(path.join(path.dirname(WORKFLOW_PATH), 'code'));

describe('chat-workflow.json is built from infra/n8n/code/*.js', () => {
  test('the committed JSON is byte for byte what build-workflow makes of the code files', () => {
    assert.ok(buildWorkflow() === committed,
      'infra/n8n/chat-workflow.json differs from what infra/n8n/code/*.js build: run infra/n8n/build-workflow and commit both');
    const check = spawnSync(process.execPath, [BUILDER, '--check'], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stderr);
  });

  test('every Code node in the JSON holds its file, as is', () => {
    const codeNodes = workflow.nodes.filter((n) => n.type === 'n8n-nodes-base.code');
    assert.deepEqual(codeNodes.map((n) => n.name).sort(),
      ['AI agent (replace me)', 'Build reply', 'Sign and send reply', 'Verify signature']);
    for (const node of codeNodes) assert.equal(node.parameters.jsCode, codeOf(node.name), node.name);
  });

  test('an edit to a code file changes the build (so the check above can fail)', () => {
    const edited = buildWorkflow({
      readCode: (file) => fs.readFileSync(path.join(path.dirname(WORKFLOW_PATH), 'code', file), 'utf8') +
        (file === 'build-reply.js' ? '// edited\n' : ''),
    });
    assert.notEqual(edited, committed);
    const built = JSON.parse(edited);
    const node = nodeNamed(built, 'Build reply');
    assert.equal(node.parameters.jsCode, `${codeOf('Build reply')}// edited\n`);
    // Everything but that one string is kept as it was.
    node.parameters.jsCode = codeOf('Build reply');
    assert.deepEqual(built, workflow);
  });

  test('an edit made in the JSON alone is undone by the build (the files are the source)', () => {
    const edited = JSON.parse(committed);
    nodeNamed(edited, 'Verify signature').parameters.jsCode += '\n// pasted from the n8n editor\n';
    assert.equal(buildWorkflow({ workflowText: JSON.stringify(edited, null, 2) + '\n' }), committed);
  });

  test('no code is lost or left behind: a Code node without a file, a file without a node', () => {
    const renamed = JSON.parse(committed);
    nodeNamed(renamed, 'Build reply').name = 'Build the reply';
    assert.throws(() => buildWorkflow({ workflowText: JSON.stringify(renamed) }), /"Build the reply" has no file/);
    assert.throws(() => buildWorkflow({ codeFiles: [...codeFiles, 'old-node.js'] }), /code\/old-node\.js belongs to no Code node/);
  });
});

describe('the workflow JSON is wired as the contract needs', () => {
  test('fixed id (for n8n publish:workflow --id) and importable shape', () => {
    assert.equal(workflow.id, 'ChatBackendReply');
    assert.ok(Array.isArray(workflow.nodes) && typeof workflow.connections === 'object');
    const ids = workflow.nodes.map((n) => n.id);
    assert.equal(new Set(ids).size, ids.length, 'node ids are unique');
  });

  test('Webhook: POST /chat, Raw Body on, answered by Respond to Webhook nodes', () => {
    const hook = nodeNamed(workflow, 'Webhook');
    assert.equal(hook.type, 'n8n-nodes-base.webhook');
    assert.equal(hook.parameters.httpMethod, 'POST');
    assert.equal(hook.parameters.path, 'chat');
    assert.equal(hook.parameters.responseMode, 'responseNode');
    assert.equal(hook.parameters.options.rawBody, true);
    assert.ok(hook.webhookId, 'a webhookId, so the production URL is stable');
  });

  test('wiring: verify, 401 or 200 first, then agent, build, sign and send', () => {
    const next = (name, output = 0) => workflow.connections[name].main[output].map((c) => c.node);
    assert.deepEqual(next('Webhook'), ['Verify signature']);
    assert.deepEqual(next('Verify signature'), ['Signature valid?']);
    assert.deepEqual(next('Signature valid?', 0), ['Accept (200)']);
    assert.deepEqual(next('Signature valid?', 1), ['Reject (401)']);
    assert.deepEqual(next('Accept (200)'), ['AI agent (replace me)']);
    assert.deepEqual(next('AI agent (replace me)'), ['Build reply']);
    assert.deepEqual(next('Build reply'), ['Sign and send reply']);
    const reject = nodeNamed(workflow, 'Reject (401)');
    assert.equal(reject.type, 'n8n-nodes-base.respondToWebhook');
    assert.equal(reject.parameters.options.responseCode, '={{ $json.status }}');
    assert.equal(nodeNamed(workflow, 'Accept (200)').parameters.options.responseCode, 200);
  });

  test('Sign and send reply: a Code node whose give-up fails the execution', () => {
    const send = nodeNamed(workflow, 'Sign and send reply');
    assert.equal(send.type, 'n8n-nodes-base.code');
    assert.equal(send.parameters.mode, 'runOnceForAllItems');
    // It retries itself (re-signing each attempt); n8n's own "Retry On Fail" would multiply the
    // attempts, and "On Error: Continue" would turn a give-up into a successful execution.
    assert.notEqual(send.retryOnFail, true);
    assert.ok(send.onError === undefined || send.onError === 'stopWorkflow', `onError is ${send.onError}`);
    assert.equal(workflow.connections['Sign and send reply'], undefined, 'it is the last node');
  });

  test('Code nodes only need the crypto built-in', () => {
    for (const node of workflow.nodes.filter((n) => n.type === 'n8n-nodes-base.code')) {
      const required = [...node.parameters.jsCode.matchAll(/require\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1]);
      for (const r of required) assert.equal(r, 'crypto', `${node.name} requires ${r}`);
    }
  });
});
