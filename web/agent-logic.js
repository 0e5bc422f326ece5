// The pure logic of the agent console (agent-console.js): the inbox (which sessions each tab
// shows, in which order, merging live `inbox` events with loaded pages), canned replies (the
// `/shortcut` search and putting a reply into the composer, validating the manage form), the
// agent token (what it says, whether it is still usable), wait times as people read them,
// which of the agent's own messages may still be edited or deleted and until when.
// Plain functions over plain values, no DOM, socket or timer, so they are unit-tested under
// node --test (tests/browser/agent-logic.test.mjs).

/**
 * @typedef {{ id: string, name: string }} AgentRef
 * @typedef {{
 *   sessionId: string, mode: string, userId?: string, metadata?: Record<string, unknown>,
 *   agent?: AgentRef, waitingSince?: string, lastMessage?: { seq?: number, role?: string, name?: string, content?: string, createdAt?: string },
 *   createdAt: string, updatedAt: string, userOnline?: boolean,
 * }} Summary a session as the agent routes and `inbox` events give it
 * @typedef {'waiting' | 'mine' | 'open'} InboxView
 * @typedef {{ id: string, shortcut: string, title: string, text: string, updatedAt?: string }} CannedReply
 */

/** The inbox tabs, in order, with their labels. */
export const INBOX_VIEWS = /** @type {const} */ ([
  ['waiting', 'Waiting'],
  ['mine', 'Mine'],
  ['open', 'All open'],
]);

/**
 * True when `s` belongs in the tab `view` of the agent `agentId`: waiting sessions; those the
 * agent holds; all open ones (waiting or held by anyone).
 * @param {Summary} s
 * @param {InboxView} view
 * @param {string} agentId
 */
export function inView(s, view, agentId) {
  if (view === 'waiting') return s.mode === 'waiting';
  if (view === 'mine') return s.mode === 'agent' && s.agent?.id === agentId;
  return s.mode === 'waiting' || s.mode === 'agent';
}

/** @param {string | undefined} t */
const time = (t) => {
  const n = Date.parse(t ?? '');
  return Number.isFinite(n) ? n : 0;
};

/**
 * The order of a tab: waiting, the longest waiting first (as the server pages it); the others,
 * the newest activity first. Ties by session id, so the order is stable.
 * @param {InboxView} view
 * @returns {(a: Summary, b: Summary) => number}
 */
export function inboxOrder(view) {
  if (view === 'waiting') {
    return (a, b) => time(a.waitingSince ?? a.updatedAt) - time(b.waitingSince ?? b.updatedAt) || (a.sessionId < b.sessionId ? -1 : a.sessionId > b.sessionId ? 1 : 0);
  }
  return (a, b) => time(b.updatedAt) - time(a.updatedAt) || (a.sessionId < b.sessionId ? -1 : a.sessionId > b.sessionId ? 1 : 0);
}

/**
 * Merges summaries (from a page or an `inbox` event) into the map of known sessions. A summary
 * older than the one held (`updatedAt`) is ignored, so a page loaded before an event arrived
 * cannot undo it. Returns `{ map, changed, entered }`: `map` is a new Map when something changed;
 * `entered` lists the sessions that started waiting with this merge (to announce them once).
 * @param {ReadonlyMap<string, Summary>} map
 * @param {Iterable<Summary>} incoming
 * @returns {{ map: ReadonlyMap<string, Summary>, changed: boolean, entered: Summary[] }}
 */
export function mergeSummaries(map, incoming) {
  /** @type {Map<string, Summary> | null} */
  let next = null;
  /** @type {Summary[]} */
  const entered = [];
  for (const s of incoming) {
    if (!s || typeof s.sessionId !== 'string') continue;
    const old = (next ?? map).get(s.sessionId);
    if (old && time(s.updatedAt) < time(old.updatedAt)) continue;
    if (old && JSON.stringify(old) === JSON.stringify(s)) continue;
    next ??= new Map(map);
    next.set(s.sessionId, s);
    if (s.mode === 'waiting' && old?.mode !== 'waiting') entered.push(s);
  }
  return { map: next ?? map, changed: next !== null, entered };
}

/**
 * The sessions of a tab, in its order.
 * @param {ReadonlyMap<string, Summary>} map
 * @param {InboxView} view
 * @param {string} agentId
 * @returns {Summary[]}
 */
export function inboxList(map, view, agentId) {
  return [...map.values()].filter((s) => inView(s, view, agentId)).sort(inboxOrder(view));
}

/**
 * A wait or an age as people read it: `12 s`, `3 min`, `1 h 5 min`, `2 d 3 h`.
 * @param {number} ms
 * @returns {string}
 */
export function formatDuration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

/**
 * Who the customer of a session is, for the inbox: the user id, else `Guest` and a short id.
 * @param {Summary} s
 */
export function customerLabel(s) {
  if (s.userId) return s.userId;
  return `Guest ${s.sessionId.slice(-6)}`;
}

/**
 * The canned replies that fit `query` (the text after `/`), best first: a shortcut starting
 * with it, then a title starting with it, then a shortcut or title containing it; within each,
 * by shortcut. Case-insensitive; an empty query gives them all by shortcut.
 * @param {readonly CannedReply[]} replies
 * @param {string} query
 * @param {number} [max]
 * @returns {CannedReply[]}
 */
export function searchCanned(replies, query, max = 8) {
  const q = query.trim().toLowerCase();
  /** @param {CannedReply} r */
  const rank = (r) => {
    const sc = r.shortcut.toLowerCase();
    const ti = r.title.toLowerCase();
    if (!q || sc.startsWith(q)) return 0;
    if (ti.startsWith(q)) return 1;
    if (sc.includes(q) || ti.includes(q)) return 2;
    return -1;
  };
  return replies
    .map((r) => ({ r, k: rank(r) }))
    .filter((x) => x.k >= 0)
    .sort((a, b) => a.k - b.k || (a.r.shortcut < b.r.shortcut ? -1 : a.r.shortcut > b.r.shortcut ? 1 : 0))
    .slice(0, max)
    .map((x) => x.r);
}

/**
 * The `/shortcut` being typed at the caret: a `/` at the start of the text or after a space,
 * followed by shortcut characters up to the caret. Null when there is none.
 * @param {string} text
 * @param {number} caret
 * @returns {{ query: string, start: number, end: number } | null}
 */
export function slashQuery(text, caret) {
  const before = text.slice(0, caret);
  const m = /(^|\s)\/([a-z0-9_-]{0,32})$/i.exec(before);
  if (!m) return null;
  const start = before.length - m[2].length - 1;
  return { query: m[2], start, end: caret };
}

/**
 * The composer's text with the `/shortcut` at `token` replaced by a canned reply's text, and
 * where the caret goes (after it).
 * @param {string} text
 * @param {{ start: number, end: number }} token
 * @param {string} replyText
 * @returns {{ text: string, caret: number }}
 */
export function insertCanned(text, token, replyText) {
  const out = text.slice(0, token.start) + replyText + text.slice(token.end);
  return { text: out, caret: token.start + replyText.length };
}

const SHORTCUT = /^[a-z0-9][a-z0-9_-]{0,31}$/;

/**
 * What is wrong with a canned reply before it is sent to the server (the server checks the
 * same): `{ field: message }`, empty when it is fine.
 * @param {{ shortcut?: string, title?: string, text?: string }} r
 * @returns {Record<string, string>}
 */
export function cannedErrors(r) {
  /** @type {Record<string, string>} */
  const e = {};
  if (!SHORTCUT.test(r.shortcut ?? '')) e.shortcut = 'Lower-case letters, digits, - and _; 1 to 32 characters, starting with a letter or digit.';
  const title = (r.title ?? '').trim();
  if (!title || [...title].length > 100) e.title = 'A title of 1 to 100 characters.';
  const text = r.text ?? '';
  if (!text.trim() || [...text].length > 4000) e.text = 'A text of 1 to 4,000 characters.';
  return e;
}

/**
 * What an agent token says (unverified: the server checks it; this is only to show the name and
 * notice expiry): `{ sub, name, role, exp }`, or null when it is not a JWT.
 * @param {string} jwt
 * @returns {{ sub: string, name: string, role: string, exp: number | null } | null}
 */
export function agentClaims(jwt) {
  try {
    const part = String(jwt).trim().split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const c = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
    if (!c || typeof c !== 'object') return null;
    return {
      sub: typeof c.sub === 'string' ? c.sub : '',
      name: typeof c.name === 'string' ? c.name : '',
      role: typeof c.role === 'string' ? c.role : '',
      exp: typeof c.exp === 'number' ? c.exp : null,
    };
  } catch {
    return null;
  }
}

/**
 * Why a token cannot be used to sign in, or null when it can (expiry within a minute counts).
 * @param {string} jwt
 * @param {number} now milliseconds
 * @returns {string | null}
 */
export function tokenProblem(jwt, now) {
  const c = agentClaims(jwt);
  if (!c) return 'That is not a JWT (three base64url parts separated by dots).';
  if (c.role !== 'agent') return 'This token is not an agent token (its role is not "agent").';
  if (!c.sub) return 'This token names no agent (no "sub").';
  if (c.exp !== null && c.exp * 1000 <= now + 60_000) return 'This token has expired.';
  return null;
}

/**
 * The WebSocket URL of the agent connection: the configured one, else the API base with
 * ws(s): and `/ws` (as chat-local serves it); the token goes in `agentToken`.
 * @param {string} apiBase
 * @param {string | undefined} websocketUrl
 * @param {string} token
 */
export function agentSocketUrl(apiBase, websocketUrl, token) {
  const base = websocketUrl || `${apiBase.replace(/^http/, 'ws').replace(/\/+$/, '')}/ws`;
  const sep = base.includes('?') ? '&' : '?';
  return `${base}${sep}agentToken=${encodeURIComponent(token)}`;
}

/**
 * A short one-line preview of a message for the inbox.
 * @param {{ role?: string, name?: string, content?: string } | undefined} m
 * @param {number} [max]
 */
export function preview(m, max = 90) {
  if (!m) return '';
  const who = m.role === 'agent' ? (m.name || 'Agent') : m.role === 'assistant' ? 'Bot' : m.role === 'system' ? '' : 'Customer';
  const text = String(m.content ?? '').replace(/\s+/g, ' ').trim();
  const cut = [...text].length > max ? `${[...text].slice(0, max - 1).join('')}…` : text;
  return who ? `${who}: ${cut}` : cut;
}

/**
 * Whether the agent named `agentName` may still edit or delete `message` here: an `agent`
 * message under that name (the wire does not carry the agent's id; the server checks it and
 * refuses another agent's with 403), stored, not a tombstone, sent less than `windowMs` before
 * `now`. The server decides: past its window it answers 409.
 * @param {{ role?: string, name?: string, seq?: number, deleted?: boolean, pending?: boolean, createdAt?: string } | null | undefined} message
 * @param {string} agentName
 * @param {number} now milliseconds
 * @param {number} windowMs
 */
export function canChangeOwn(message, agentName, now, windowMs) {
  if (!message || message.role !== 'agent' || !agentName || message.name !== agentName) return false;
  if (message.seq == null || message.deleted || message.pending) return false;
  const at = Date.parse(message.createdAt ?? '');
  return Number.isFinite(at) && now - at < windowMs;
}

/**
 * When the next of the agent's changeable messages leaves the edit window (milliseconds from
 * `now`), so Edit and Delete go away on time; null when none is changeable.
 * @param {readonly { role?: string, name?: string, seq?: number, deleted?: boolean, pending?: boolean, createdAt?: string }[]} messages
 * @param {string} agentName
 * @param {number} now
 * @param {number} windowMs
 * @returns {number | null}
 */
export function changeWindowEnds(messages, agentName, now, windowMs) {
  let next = null;
  for (const m of messages) {
    if (!canChangeOwn(m, agentName, now, windowMs)) continue;
    const left = Date.parse(/** @type {string} */ (m.createdAt)) + windowMs - now;
    if (next === null || left < next) next = left;
  }
  return next;
}

/**
 * The newest `updatedAt` among `messages` (Unix milliseconds; 0 for none): after a reconnect,
 * `?updatedAfter=` it lists the edits and deletions missed meanwhile.
 * @param {readonly { updatedAt?: string, createdAt?: string }[]} messages
 */
export function newestUpdate(messages) {
  let max = 0;
  for (const m of messages) {
    const t = Date.parse(m.updatedAt ?? m.createdAt ?? '');
    if (Number.isFinite(t) && t > max) max = t;
  }
  return max;
}
