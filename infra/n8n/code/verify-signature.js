// Verifies our dispatch: X-Chat-Signature = "sha256=" + hex(HMAC-SHA256(secret,
// "<X-Chat-Timestamp>.<raw body bytes>")), timestamp at most 300 s from now.
// The MAC is computed over the exact bytes received (Webhook option "Raw Body"),
// never over a re-serialized $json.body.
// Needs: NODE_FUNCTION_ALLOW_BUILTIN=crypto, N8N_BLOCK_ENV_ACCESS_IN_NODE=false,
// CHAT_WEBHOOK_SECRET (the same value as the chat backend's).
// Output: { valid: true, status: 200, ...dispatch } or { valid: false, status, error, message }.
const MAX_SKEW_SECS = 300n;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

const fail = (status, error, message) => [{ json: { valid: false, status, error, message } }];

// Never throw: a Code node error before a Respond node makes n8n answer 200 with an empty
// body, which the backend would take as accepted. Every failure is an explicit status.
let crypto;
try {
  crypto = require('crypto');
} catch (e) {
  return fail(500, 'crypto_unavailable', 'set NODE_FUNCTION_ALLOW_BUILTIN=crypto in n8n');
}
try {
  let secret;
  try {
    secret = $env.CHAT_WEBHOOK_SECRET;
  } catch (e) {
    secret = undefined; // env access blocked (N8N_BLOCK_ENV_ACCESS_IN_NODE)
  }
  if (typeof secret !== 'string' || secret === '') {
    return fail(500, 'secret_unavailable',
      'CHAT_WEBHOOK_SECRET is not readable here: set it and N8N_BLOCK_ENV_ACCESS_IN_NODE=false');
  }

  const item = $input.first();
  if (!item.binary || !item.binary.data) {
    return fail(500, 'raw_body_missing', 'turn on the Webhook node option "Raw Body"');
  }
  const raw = await this.helpers.getBinaryDataBuffer(0, 'data');

  const headers = item.json.headers || {};
  const timestamp = headers['x-chat-timestamp'];
  const signature = headers['x-chat-signature'];
  if (typeof timestamp !== 'string' || typeof signature !== 'string') {
    return fail(401, 'missing_signature', 'X-Chat-Timestamp and X-Chat-Signature headers are required');
  }
  const tsText = timestamp.trim();
  if (!/^[+-]?[0-9]+$/.test(tsText) || BigInt(tsText) < I64_MIN || BigInt(tsText) > I64_MAX) {
    return fail(401, 'invalid_timestamp', 'X-Chat-Timestamp must be unix seconds');
  }
  const now = BigInt(Math.floor(Date.now() / 1000));
  const skew = now - BigInt(tsText);
  if (skew > MAX_SKEW_SECS || -skew > MAX_SKEW_SECS) {
    return fail(401, 'stale_timestamp', 'X-Chat-Timestamp is more than 300 s away from now');
  }
  const sigText = signature.trim();
  const hex = sigText.startsWith('sha256=') ? sigText.slice('sha256='.length) : null;
  if (hex === null || hex.length !== 64 || !/^[0-9a-fA-F]+$/.test(hex)) {
    return fail(401, 'invalid_signature', 'signature does not match');
  }
  const expected = crypto.createHmac('sha256', secret)
    .update(Buffer.from(timestamp + '.', 'utf8'))
    .update(raw)
    .digest();
  if (!crypto.timingSafeEqual(expected, Buffer.from(hex, 'hex'))) {
    return fail(401, 'invalid_signature', 'signature does not match');
  }

  // Authentic. Read the dispatch from the same bytes that were verified.
  let dispatch;
  try {
    dispatch = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    return fail(400, 'invalid_payload', 'the body is not JSON');
  }
  const isText = (v) => typeof v === 'string' && v !== '';
  if (dispatch === null || typeof dispatch !== 'object' || Array.isArray(dispatch) ||
      !isText(dispatch.sessionId) || !isText(dispatch.messageId) || !isText(dispatch.callbackUrl) ||
      typeof dispatch.content !== 'string') {
    return fail(400, 'invalid_payload', 'sessionId, messageId, content and callbackUrl are required');
  }
  return [{ json: { ...dispatch, valid: true, status: 200 } }];
} catch (e) {
  return fail(500, 'verify_failed', String((e && e.message) || e));
}
