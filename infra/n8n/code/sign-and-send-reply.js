// POSTs the reply to callbackUrl, signed, and retries what waiting can fix: 429 (the chat
// backend's webhook rate limit), 5xx (its storage briefly unavailable), network errors and
// timeouts. Every attempt is signed anew with the current time:
//   X-Chat-Timestamp = unix seconds, X-Chat-Signature = "sha256=" + hex(HMAC-SHA256(secret,
//   "<timestamp>.<body>")), the body sent byte for byte as "Build reply" serialized it.
// Between attempts it waits what the backend's Retry-After asks (seconds or an HTTP date,
// capped at 30 s), else 0.5 s, 1 s, 2 s, 4 s. It gives up by throwing, so the execution ends
// as failed (visible in Executions, and to an error workflow), never as a silent success:
// after 5 attempts, or at once on a status no retry can fix (another 4xx, e.g. 401 for a
// wrong secret). A repeated reply is harmless: the backend keys it by eventId.
// Worst case 5 x 10 s (request timeout) + 4 x 30 s = 170 s, inside the 300 s that n8n gives a
// Code node (N8N_RUNNERS_TASK_TIMEOUT).
// Needs: NODE_FUNCTION_ALLOW_BUILTIN=crypto, N8N_BLOCK_ENV_ACCESS_IN_NODE=false,
// CHAT_WEBHOOK_SECRET (the same value as the chat backend's).
const crypto = require('crypto');
const MAX_ATTEMPTS = 5;
const FIRST_BACKOFF_MS = 500;
const MAX_WAIT_MS = 30000;
const TIMEOUT_MS = 10000;

let secret;
try {
  secret = $env.CHAT_WEBHOOK_SECRET;
} catch (e) {
  secret = undefined; // env access blocked (N8N_BLOCK_ENV_ACCESS_IN_NODE)
}
if (typeof secret !== 'string' || secret === '') {
  throw new Error('CHAT_WEBHOOK_SECRET is not set (and N8N_BLOCK_ENV_ACCESS_IN_NODE must be false)');
}
const sign = (timestamp, body) => 'sha256=' + crypto.createHmac('sha256', secret)
  .update(Buffer.from(timestamp + '.', 'utf8'))
  .update(Buffer.from(body, 'utf8'))
  .digest('hex');

/** Retry-After in ms (delta-seconds or an HTTP date), or undefined if absent or unreadable. */
function retryAfterMs(headers) {
  let value = headers ? headers['retry-after'] : undefined;
  if (Array.isArray(value)) value = value[0];
  if (typeof value === 'number') value = String(value);
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (/^[0-9]+$/.test(text)) return Number(text) * 1000;
  if (!/GMT$/.test(text)) return undefined; // an HTTP date ends in GMT
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

const short = (value) => {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text === undefined ? '' : text.slice(0, 300);
};

const sent = [];
for (const item of $input.all()) {
  const { callbackUrl, body } = item.json;
  if (typeof callbackUrl !== 'string' || typeof body !== 'string') {
    throw new Error('expected {callbackUrl, body} from "Build reply"');
  }
  const failures = [];
  for (let attempt = 1; ; attempt++) {
    const timestamp = String(Math.floor(Date.now() / 1000));
    let response;
    let failure;
    try {
      response = await this.helpers.httpRequest({
        method: 'POST',
        url: callbackUrl,
        headers: {
          'Content-Type': 'application/json',
          'X-Chat-Timestamp': timestamp,
          'X-Chat-Signature': sign(timestamp, body),
        },
        body,
        json: false,
        returnFullResponse: true,
        ignoreHttpStatusErrors: true,
        timeout: TIMEOUT_MS,
      });
    } catch (e) {
      // Network error or timeout (the error crosses from n8n's main process as a plain object).
      failure = [e && e.code, e && e.message].filter(Boolean).join(' ') || 'request failed';
    }
    const status = response ? response.statusCode : undefined;
    if (status >= 200 && status < 300) {
      sent.push({ json: { callbackUrl, status, attempts: attempt, response: response.body } });
      break;
    }
    if (failure === undefined) {
      failure = `HTTP ${status} ${short(response.body)}`;
      if (status !== 429 && status < 500) {
        throw new Error(`the chat backend refused the reply (not retried): ${failure}`);
      }
    }
    failures.push(`attempt ${attempt}: ${failure}`);
    if (attempt >= MAX_ATTEMPTS) {
      throw new Error(`gave up on the reply to ${callbackUrl} after ${attempt} attempts: ${failures.join('; ')}`);
    }
    const hinted = response ? retryAfterMs(response.headers) : undefined;
    const wait = Math.min(MAX_WAIT_MS, hinted ?? FIRST_BACKOFF_MS * 2 ** (attempt - 1));
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}
return sent;
