// The pure logic of ChatClient (chat-client.js): backoff, merging and ordering messages,
// streamed replies (deltas), the catch-up cursor, pending sends, the typing debounce, session
// reuse, suggested replies, who answers a session (its mode), a signed-in user's list of
// conversations, attachments (the checks of a file against the limits before it is uploaded,
// its name, sizes as people read them, which download URLs may be used). Plain functions over
// plain values, with no socket, timer, storage or DOM of their own (timers and randomness are
// injectable), so they are unit-tested without a browser (tests/browser/client-logic.test.mjs)
// and the class stays about connections and events.
//
// chat-client.js re-exports all of it: import from there, which is the documented module.
// The JSDoc types name those of chat-client.d.ts; tests/browser/run checks this file against
// them with TypeScript (tsc --checkJs).

/**
 * @typedef {import('./chat-client.js').ChatMessage} ChatMessage
 * @typedef {import('./chat-client.js').DeltaFrame} DeltaFrame
 * @typedef {import('./chat-client.js').MessageStatus} MessageStatus
 * @typedef {import('./chat-client.js').PendingSend} PendingSend
 * @typedef {import('./chat-client.js').PendingSends} PendingSends
 * @typedef {import('./chat-client.js').StoredSession} StoredSession
 * @typedef {import('./chat-client.js').TypingDebouncer} TypingDebouncer
 * @typedef {import('./chat-client.js').SessionInfo} SessionInfo
 * @typedef {import('./chat-client.js').SessionMode} SessionMode
 * @typedef {import('./chat-client.js').ConversationSummary} ConversationSummary
 * @typedef {import('./chat-client.js').AttachmentLimits} AttachmentLimits
 * @typedef {import('./chat-client.js').AttachmentProblem} AttachmentProblem
 * @typedef {Partial<ChatMessage> & { id: string }} MessageUpdate a message, or some fields of one
 */

/** Default timings (milliseconds). All can be overridden by the constructor's options. */
export const DEFAULTS = Object.freeze({
  backoffBaseMs: 500,
  backoffMaxMs: 30_000,
  backoffJitter: 0.5,
  pingIntervalMs: 5 * 60_000, // API Gateway closes idle sockets after 10 minutes
  pongTimeoutMs: 20_000,
  maxConnectionAgeMs: 110 * 60_000, // API Gateway's hard limit is 2 hours
  ackTimeoutMs: 15_000,
  typingRepeatMs: 3_000,
  typingIdleMs: 2_500,
  sessionRenewMarginMs: 60_000,
  pageSize: 100,
  resumeLatest: true, // a signed-in user on a device with no session opens their latest conversation
  editWindowMs: 300_000, // the server's CHAT_EDIT_WINDOW_S, for offering edit and delete
});

// What an edit or a deletion changes: a version older than the one held keeps these as held.
const CHANGED_FIELDS = /** @type {const} */ (['content', 'data', 'metadata', 'updatedAt', 'editedAt', 'deleted', 'deletedAt']);

/**
 * Whether the user may still edit or delete `message` here: their own stored message, not a
 * tombstone, sent less than `windowMs` before `now` (the server decides: 409 past its window).
 * @param {Partial<ChatMessage> | null | undefined} message
 * @param {number} now
 * @param {number} windowMs
 * @returns {boolean}
 */
export function canChange(message, now, windowMs) {
  if (!message || message.role !== 'user' || message.seq == null || message.deleted || message.pending) return false;
  const at = Date.parse(message.createdAt ?? '');
  return Number.isFinite(at) && now - at < windowMs;
}

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential, capped, with jitter.
 * The result lies in [cap * (1 - jitter), cap] where cap = min(maxMs, baseMs * 2^attempt).
 * @param {number} attempt
 * @param {{ baseMs?: number, maxMs?: number, jitter?: number }} [opts]
 * @param {() => number} [random] in [0, 1)
 * @returns {number}
 */
export function backoffDelay(attempt, opts = {}, random = Math.random) {
  const base = opts.baseMs ?? DEFAULTS.backoffBaseMs;
  const max = opts.maxMs ?? DEFAULTS.backoffMaxMs;
  const jitter = Math.min(1, Math.max(0, opts.jitter ?? DEFAULTS.backoffJitter));
  const n = Math.max(0, Math.floor(attempt));
  const cap = Math.min(max, base * 2 ** Math.min(n, 30));
  return Math.round(cap * (1 - jitter * random()));
}

/** @type {Record<MessageStatus, number>} */
const STATUS_RANK = { queued: 0, sending: 0, failed: 3, received: 1, dispatched: 2, answered: 4, delivered: 4 };

/**
 * The further along of two statuses (a late page must not move a status backwards).
 * @param {MessageStatus | undefined} a
 * @param {MessageStatus | undefined} b
 * @returns {MessageStatus | undefined}
 */
export function furthestStatus(a, b) {
  if (a == null) return b;
  if (b == null) return a;
  return (STATUS_RANK[b] ?? 1) >= (STATUS_RANK[a] ?? 1) ? b : a;
}

/**
 * The status a message implies for the one it replies to: `answered` for a reply from the
 * assistant or an agent, `failed` for a system error about it; `null` otherwise.
 * @param {Partial<ChatMessage>} m
 * @returns {'answered' | 'failed' | null}
 */
export function impliedStatus(m) {
  if (!m.replyTo || m.content === undefined) return null;
  if (m.role === 'assistant' || m.role === 'agent') return 'answered';
  if (m.role === 'system' && m.type === 'error') return 'failed';
  return null;
}

/**
 * Orders messages: by seq; messages without a seq (not yet stored) come last, in send order.
 * @param {ChatMessage} a
 * @param {ChatMessage} b
 * @returns {number}
 */
export function compareMessages(a, b) {
  const as = a.seq ?? Infinity;
  const bs = b.seq ?? Infinity;
  if (as !== bs) return as < bs ? -1 : 1;
  return (a.localOrder ?? 0) - (b.localOrder ?? 0);
}

/**
 * Merges one message into an ordered list, deduplicating by `id` and by `clientMessageId`
 * (an optimistic message is replaced by the stored one; a reply being streamed is replaced
 * whole by the stored reply, whatever was streamed). Returns
 * `{ list, message, added, changed }`; `list` is a new array only when something changed.
 * An update for a message not in the list is added as it is: pass only whole messages then.
 * @param {readonly ChatMessage[]} list
 * @param {MessageUpdate} incoming
 * @returns {{ list: readonly ChatMessage[], message: ChatMessage, added: boolean, changed: boolean }}
 */
export function mergeMessage(list, incoming) {
  let i = list.findIndex((m) => m.id === incoming.id);
  if (i < 0 && incoming.clientMessageId && (incoming.role ?? 'user') === 'user') {
    i = list.findIndex((m) => m.clientMessageId === incoming.clientMessageId && m.role === 'user');
  }
  if (i < 0) {
    const message = /** @type {ChatMessage} */ ({ ...incoming });
    const next = [...list];
    let at = next.length;
    while (at > 0 && compareMessages(next[at - 1], message) > 0) at--;
    next.splice(at, 0, message);
    return { list: next, message, added: true, changed: true };
  }
  const old = list[i];
  if (old.streaming && incoming.content !== undefined && !incoming.streaming) {
    const stored = /** @type {ChatMessage} */ ({ ...incoming });
    const next = list.filter((_, k) => k !== i);
    let at = next.length;
    while (at > 0 && compareMessages(next[at - 1], stored) > 0) at--;
    next.splice(at, 0, stored);
    return { list: next, message: stored, added: false, changed: true };
  }
  // A version older than the one held (an edit pushed before a catch-up page that still had
  // the text before it) changes only the status; a deletion drops what the tombstone lacks.
  const held = Date.parse(old.updatedAt ?? '');
  const stale = incoming.content !== undefined && Date.parse(incoming.updatedAt ?? '') < held;
  /** @type {Partial<ChatMessage>} */
  const update = { ...incoming };
  if (stale) for (const k of CHANGED_FIELDS) delete update[k];
  const merged = /** @type {ChatMessage} */ ({ ...old, ...update, status: furthestStatus(old.status, incoming.status) });
  if (!stale && incoming.deleted) {
    if (incoming.data === undefined) delete merged.data;
    if (incoming.metadata === undefined) delete merged.metadata;
  }
  if (incoming.seq != null || old.seq != null) delete merged.localOrder;
  if (incoming.pending === undefined && incoming.seq != null) delete merged.pending;
  delete merged.error;
  if (incoming.error) merged.error = incoming.error;
  if (shallowEqual(old, merged)) return { list, message: old, added: false, changed: false };
  const next = [...list];
  next.splice(i, 1);
  let at = next.length;
  while (at > 0 && compareMessages(next[at - 1], merged) > 0) at--;
  next.splice(at, 0, merged);
  return { list: next, message: merged, added: false, changed: true };
}

/**
 * Applies a `delta` frame (a piece of a reply being written) to an ordered list. The reply is
 * held as a message with `streaming: true`, its text so far as `content`, and the index of the
 * last delta applied as `streamIndex`; it has no seq and sorts after the stored messages.
 * - the first delta (index 0) adds it; a later one appends its text;
 * - a repeated or older index changes nothing (a socket and its replacement may both carry it);
 * - a skipped index is tolerated (`gap: true`): the text goes on from there, and the stored
 *   reply (the `message` event with the same id) replaces the whole text anyway;
 * - a delta for a reply already stored, or for one whose beginning this client never saw (a
 *   tab opened or reconnected mid-stream: it gets the whole reply as a `message`), changes
 *   nothing; so does a frame that is not a valid delta.
 * `list` is a new array only when something changed.
 * @param {readonly ChatMessage[]} list
 * @param {Partial<DeltaFrame>} delta
 * @param {{ createdAt: string, localOrder?: number }} at when the reply began, and its place
 *   among messages not stored yet
 * @returns {{ list: readonly ChatMessage[], message: ChatMessage | null, added: boolean, changed: boolean, gap: boolean }}
 */
export function applyDelta(list, delta, at) {
  const unchanged = { list, message: null, added: false, changed: false, gap: false };
  const { messageId, index, text, replyTo } = delta;
  if (typeof messageId !== 'string' || !messageId || typeof text !== 'string') return unchanged;
  if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0) return unchanged;
  const i = list.findIndex((m) => m.id === messageId);
  if (i < 0) {
    if (index !== 0) return unchanged;
    /** @type {ChatMessage} */
    const message = {
      id: messageId,
      role: 'assistant',
      type: 'text',
      content: text,
      status: 'delivered',
      createdAt: at.createdAt,
      streaming: true,
      streamIndex: 0,
      ...(typeof replyTo === 'string' && replyTo ? { replyTo } : {}),
      ...(at.localOrder != null ? { localOrder: at.localOrder } : {}),
    };
    const next = [...list];
    let pos = next.length;
    while (pos > 0 && compareMessages(next[pos - 1], message) > 0) pos--;
    next.splice(pos, 0, message);
    return { list: next, message, added: true, changed: true, gap: false };
  }
  const old = list[i];
  if (!old.streaming || index <= (old.streamIndex ?? -1)) return unchanged;
  const message = { ...old, content: old.content + text, streamIndex: index };
  const next = [...list];
  next[i] = message;
  return { list: next, message, added: false, changed: true, gap: index > (old.streamIndex ?? -1) + 1 };
}

/**
 * Removes the replies still streaming, except those in `keep`: after a reconnect, a stream
 * that was not finished by the catch-up and did not go on over the new socket will never
 * finish here (its deltas went to a socket that is gone); the stored reply comes whole, by a
 * push or the next catch-up. Returns the new list and the ids removed.
 * @param {readonly ChatMessage[]} list
 * @param {ReadonlySet<string>} [keep]
 * @returns {{ list: readonly ChatMessage[], cleared: string[] }}
 */
export function clearStreams(list, keep = new Set()) {
  const cleared = list.filter((m) => m.streaming && !keep.has(m.id)).map((m) => m.id);
  if (!cleared.length) return { list, cleared };
  return { list: list.filter((m) => !cleared.includes(m.id)), cleared };
}

/**
 * The suggested replies a message offers (`data.suggestions`): its strings, trimmed, without
 * empty ones or repeats, at most `max` of them, each at most `maxChars` long (longer ones are
 * dropped: a suggestion is sent as it is). Anything else in `data.suggestions` is ignored.
 * @param {Partial<ChatMessage> | null | undefined} message
 * @param {{ max?: number, maxChars?: number }} [opts]
 * @returns {string[]}
 */
export function suggestionsOf(message, { max = 6, maxChars = 200 } = {}) {
  const raw = message?.data?.suggestions;
  if (!Array.isArray(raw)) return [];
  /** @type {string[]} */
  const out = [];
  for (const s of raw) {
    if (typeof s !== 'string') continue;
    const t = s.trim();
    if (t && t.length <= maxChars && !out.includes(t)) out.push(t);
    if (out.length >= max) break;
  }
  return out;
}

/**
 * Merges many messages; returns `{ list, changes: [{message, added}] }`.
 * @param {readonly ChatMessage[]} list
 * @param {Iterable<MessageUpdate>} incoming
 * @returns {{ list: readonly ChatMessage[], changes: { message: ChatMessage, added: boolean }[] }}
 */
export function mergeMessages(list, incoming) {
  /** @type {{ message: ChatMessage, added: boolean }[]} */
  const changes = [];
  for (const m of incoming) {
    const r = mergeMessage(list, m);
    list = r.list;
    if (r.changed) changes.push({ message: r.message, added: r.added });
  }
  return { list, changes };
}

/**
 * @param {ChatMessage} a
 * @param {ChatMessage} b
 */
function shallowEqual(a, b) {
  const ka = /** @type {(keyof ChatMessage)[]} */ (Object.keys(a));
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => a[k] === b[k]);
}

/**
 * The catch-up cursor: the highest seq up to which every message is known, starting at
 * `cursor`. Catching up with `after=<cursor>` can then never skip a message, even one that
 * was pushed out of order or missed while a later one arrived.
 * @param {number} cursor
 * @param {Iterable<number>} seqs
 * @returns {number}
 */
export function advanceCursor(cursor, seqs) {
  const known = seqs instanceof Set ? seqs : new Set(seqs);
  let c = cursor;
  while (known.has(c + 1)) c++;
  return c;
}

/**
 * True when a pushed seq shows that something between the cursor and it was missed.
 * @param {number} cursor
 * @param {number} seq
 * @returns {boolean}
 */
export function hasGap(cursor, seq) {
  return seq > cursor + 1;
}

/**
 * Pending sends: user messages not yet acknowledged, keyed by clientMessageId. A plain Map of
 * `{ clientMessageId, content, metadata?, createdAt, attempts, sentAt?, state }` where state is
 * `queued` (not on the wire), `sending` (sent, awaiting ack) or `failed` (refused; retry by hand).
 * This adds one.
 * @param {PendingSends} pending
 * @param {Pick<PendingSend, 'clientMessageId' | 'content' | 'createdAt'> & Partial<PendingSend>} entry
 * @returns {Map<string, PendingSend>}
 */
export function addPending(pending, entry) {
  const next = new Map(pending);
  next.set(entry.clientMessageId, { attempts: 0, state: 'queued', ...entry });
  return next;
}

/**
 * Marks a pending send as written to the socket at `now`.
 * @param {PendingSends} pending
 * @param {string} clientMessageId
 * @param {number} now
 * @returns {PendingSends}
 */
export function markSent(pending, clientMessageId, now) {
  const p = pending.get(clientMessageId);
  if (!p) return pending;
  const next = new Map(pending);
  next.set(clientMessageId, { ...p, state: 'sending', sentAt: now, attempts: p.attempts + 1 });
  return next;
}

/**
 * Removes a pending send once the server has it (ack, or found in a page or a push).
 * @param {PendingSends} pending
 * @param {string} clientMessageId
 * @returns {PendingSends}
 */
export function settlePending(pending, clientMessageId) {
  if (!pending.has(clientMessageId)) return pending;
  const next = new Map(pending);
  next.delete(clientMessageId);
  return next;
}

/**
 * Settles every pending send whose clientMessageId appears among stored `messages`.
 * @param {PendingSends} pending
 * @param {Iterable<{ clientMessageId?: string }>} messages
 * @returns {PendingSends}
 */
export function settleFromMessages(pending, messages) {
  let next = pending;
  for (const m of messages) if (m.clientMessageId) next = settlePending(next, m.clientMessageId);
  return next;
}

/**
 * Marks a pending send failed (the server refused it) or back to queued (to send again).
 * @param {PendingSends} pending
 * @param {string} clientMessageId
 * @param {PendingSend['state']} state
 * @param {Partial<PendingSend>} [extra]
 * @returns {PendingSends}
 */
export function setPendingState(pending, clientMessageId, state, extra = {}) {
  const p = pending.get(clientMessageId);
  if (!p) return pending;
  const next = new Map(pending);
  next.set(clientMessageId, { ...p, ...extra, state });
  return next;
}

/**
 * The pending sends to (re)send now, oldest first: all that are queued, plus those sent more
 * than `ackTimeoutMs` ago without an ack. After a reconnect everything not failed is resent
 * (pass `reconnected: true`): an earlier socket's frame may or may not have reached the server,
 * and the server dedupes on clientMessageId.
 * @param {PendingSends} pending
 * @param {number} now
 * @param {{ ackTimeoutMs?: number, reconnected?: boolean }} [opts]
 * @returns {PendingSend[]}
 */
export function sendsDue(pending, now, { ackTimeoutMs = DEFAULTS.ackTimeoutMs, reconnected = false } = {}) {
  return [...pending.values()]
    .filter((p) => p.state !== 'failed')
    .filter((p) => reconnected || p.state === 'queued' || now - (p.sentAt ?? 0) >= ackTimeoutMs)
    .sort((a, b) => a.createdAt - b.createdAt);
}

/**
 * A debounced typing signal: call `keystroke()` on every input. It sends `true` at once, then
 * at most every `repeatMs` while typing continues, and `false` after `idleMs` without input.
 * `stop()` sends `false` now (e.g. on send). Timers are injectable for tests.
 * @param {(isTyping: boolean) => void} send
 * @param {{
 *   repeatMs?: number, idleMs?: number, now?: () => number,
 *   setTimeout?: (f: () => void, ms: number) => unknown, clearTimeout?: (t: unknown) => void,
 * }} [opts]
 * @returns {TypingDebouncer}
 */
export function createTypingDebouncer(send, opts = {}) {
  const repeatMs = opts.repeatMs ?? DEFAULTS.typingRepeatMs;
  const idleMs = opts.idleMs ?? DEFAULTS.typingIdleMs;
  const now = opts.now ?? (() => Date.now());
  const setT = opts.setTimeout ?? ((f, ms) => setTimeout(f, ms));
  const clearT = opts.clearTimeout ?? ((/** @type {any} */ t) => clearTimeout(t));
  let typing = false;
  let lastSent = -Infinity;
  /** @type {unknown} */
  let idle = null;
  const stop = () => {
    if (idle !== null) clearT(idle);
    idle = null;
    if (typing) {
      typing = false;
      send(false);
    }
  };
  const keystroke = () => {
    const t = now();
    if (!typing || t - lastSent >= repeatMs) {
      typing = true;
      lastSent = t;
      send(true);
    }
    if (idle !== null) clearT(idle);
    idle = setT(stop, idleMs);
  };
  return { keystroke, stop, get typing() { return typing; } };
}

/**
 * A clientMessageId: printable ASCII, at most 128 characters.
 * @returns {string}
 */
export function newClientMessageId() {
  const c = globalThis.crypto;
  if (c?.randomUUID) return c.randomUUID();
  const b = new Uint8Array(16);
  if (c?.getRandomValues) c.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * The `sub` of a JWT (unverified: only to tell which user a stored session belongs to).
 * @param {string} jwt
 * @returns {string | null}
 */
export function jwtSubject(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
    return typeof json.sub === 'string' ? json.sub : null;
  } catch {
    return null;
  }
}

/**
 * True when a stored session can still be used at `now` (with a safety margin), by the user
 * `subject` (null: a guest).
 * @param {(Omit<StoredSession, 'token'> & { token: string | null }) | null | undefined} stored
 *   a token of null (one the server refused) is not usable
 * @param {number} now
 * @param {number} [marginMs]
 * @param {string | null} [subject]
 * @returns {boolean}
 */
export function sessionUsable(stored, now, marginMs = DEFAULTS.sessionRenewMarginMs, subject = null) {
  if (!stored || !stored.sessionId || !stored.token || !stored.websocketUrl) return false;
  const exp = Date.parse(stored.expiresAt);
  if (!Number.isFinite(exp) || exp - marginMs <= now) return false;
  return (stored.subject ?? null) === (subject ?? null);
}

/** The modes of a session (who answers): the bot, nobody yet (a person was asked for), a person, or no one ever again. */
const MODES = ['bot', 'waiting', 'agent', 'closed'];

/**
 * Who answers a session, from a session view (`GET /sessions/{id}`'s `session`, a `session`
 * event's `session`) or a system message's `data` (`{mode, agent?}`): `{ mode, agent?,
 * waitingSince? }`. An older server sends no `mode`: the bot answers then.
 * @param {{ mode?: unknown, agent?: unknown, waitingSince?: unknown } | null | undefined} view
 * @returns {SessionInfo}
 */
export function sessionInfoOf(view) {
  const mode = /** @type {SessionMode} */ (MODES.includes(/** @type {string} */ (view?.mode)) ? view?.mode : 'bot');
  /** @type {SessionInfo} */
  const info = { mode };
  const a = /** @type {{ id?: unknown, name?: unknown } | null | undefined} */ (view?.agent);
  if (mode === 'agent' && a && typeof a.id === 'string') info.agent = { id: a.id, name: typeof a.name === 'string' && a.name ? a.name : 'An agent' };
  if (mode === 'waiting' && typeof view?.waitingSince === 'string') info.waitingSince = view.waitingSince;
  return info;
}

/**
 * The mode the newest stored system message about a change of mode (`data.mode`) says, or
 * null when none of `messages` says one. A client that was offline while the mode changed
 * learns it from the history it catches up with.
 * @param {readonly Partial<ChatMessage>[]} messages
 * @returns {{ seq: number, info: SessionInfo } | null}
 */
export function modeFromMessages(messages) {
  /** @type {{ seq: number, info: SessionInfo } | null} */
  let best = null;
  for (const m of messages) {
    if (m.role !== 'system' || m.seq == null || !m.data || typeof m.data.mode !== 'string' || !MODES.includes(m.data.mode)) continue;
    if (!best || m.seq > best.seq) best = { seq: m.seq, info: sessionInfoOf(m.data) };
  }
  return best;
}

/**
 * True when two session infos say the same (mode, agent and since when it waits).
 * @param {SessionInfo} a
 * @param {SessionInfo} b
 */
export function sameSessionInfo(a, b) {
  return a.mode === b.mode && a.agent?.id === b.agent?.id && a.agent?.name === b.agent?.name && a.waitingSince === b.waitingSince;
}

/**
 * When something happened, said briefly relative to `now` for a list of conversations: "just
 * now", "5 min ago", "3 h ago", "yesterday", "4 days ago", then the date. An unreadable time
 * (or one in the future by a clock's skew) is "just now" rather than nonsense.
 * @param {string | number | Date} when RFC 3339, milliseconds or a Date
 * @param {number} now milliseconds
 * @param {string} [locale] for the date of something older than a week
 * @returns {string}
 */
export function relativeTime(when, now, locale) {
  const t = when instanceof Date ? when.getTime() : typeof when === 'number' ? when : Date.parse(when);
  if (!Number.isFinite(t)) return '';
  const s = Math.floor((now - t) / 1000);
  if (s < 60) return 'just now';
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min ago`;
  const h = Math.floor(min / 60);
  if (h < 24) return `${h} h ago`;
  const days = Math.floor(h / 24);
  if (days === 1) return 'yesterday';
  if (days < 7) return `${days} days ago`;
  return new Date(t).toLocaleDateString(locale, { year: 'numeric', month: 'short', day: 'numeric' });
}

/**
 * Appends a page of `GET /sessions` to the conversations already listed: each session once
 * (the newer entry wins, as a conversation that moved between two pages' reads shows up on
 * both), newest activity first.
 * @param {readonly ConversationSummary[]} list
 * @param {readonly ConversationSummary[]} page
 * @returns {ConversationSummary[]}
 */
export function mergeConversations(list, page) {
  /** @type {Map<string, ConversationSummary>} */
  const byId = new Map();
  for (const c of [...list, ...page]) {
    const held = byId.get(c.sessionId);
    if (!held || Date.parse(c.updatedAt) >= Date.parse(held.updatedAt)) byId.set(c.sessionId, c);
  }
  return [...byId.values()].sort((a, b) => Date.parse(b.updatedAt) - Date.parse(a.updatedAt) || (a.sessionId < b.sessionId ? 1 : -1));
}

// ----- attachments ----------------------------------------------------------------------------

/**
 * The server's default attachment limits (`CHAT_ATTACHMENT_MAX_BYTES`, `CHAT_ATTACHMENT_TYPES`,
 * `CHAT_ATTACHMENTS_PER_MESSAGE`). A page whose server is configured otherwise passes its own
 * (ChatClient's `attachments` option); the server checks again either way.
 * @type {Readonly<AttachmentLimits>}
 */
export const ATTACHMENT_DEFAULTS = Object.freeze({
  maxBytes: 10 * 1024 * 1024,
  types: Object.freeze(['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'application/pdf', 'text/plain']),
  maxPerMessage: 5,
});

/** Image types a browser shows inline (never SVG: it is a document, not a picture). */
export const INLINE_IMAGE_TYPES = Object.freeze(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);

/** @type {Record<string, string>} what a file's extension says when the browser gives no type */
const TYPE_BY_EXTENSION = {
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp',
  pdf: 'application/pdf', txt: 'text/plain', text: 'text/plain', log: 'text/plain',
};

/** @type {Record<string, string>} how people call the usual types */
const TYPE_LABELS = {
  'image/png': 'PNG', 'image/jpeg': 'JPEG', 'image/gif': 'GIF', 'image/webp': 'WebP',
  'application/pdf': 'PDF', 'text/plain': 'plain text',
};

/**
 * The name an attachment is declared with: the file's name without control characters or path
 * separators (each becomes `_`), trimmed, at most 200 characters (the extension kept); `file`
 * when nothing is left. The contract refuses any other name; a browser's file names rarely
 * need this, names made up by a page or pasted data may.
 * @param {string} name
 * @returns {string}
 */
export function attachmentName(name) {
  // eslint-disable-next-line no-control-regex
  let n = String(name ?? '').replace(/[\u0000-\u001f\u007f-\u009f/\\]/g, '_').trim();
  const chars = [...n];
  if (chars.length > 200) {
    const dot = n.lastIndexOf('.');
    const ext = dot > 0 && n.length - dot <= 10 ? [...n.slice(dot)] : [];
    n = chars.slice(0, 200 - ext.length).join('') + ext.join('');
  }
  return n || 'file';
}

/**
 * A file's content type: the browser's (lower case, without parameters), else what its
 * extension says, else `application/octet-stream`.
 * @param {{ name?: string, type?: string }} file
 * @returns {string}
 */
export function contentTypeOf(file) {
  const t = String(file?.type ?? '').split(';')[0].trim().toLowerCase();
  if (t) return t;
  const ext = /\.([a-z0-9]{1,8})$/i.exec(String(file?.name ?? ''))?.[1]?.toLowerCase();
  return (ext && TYPE_BY_EXTENSION[ext]) || 'application/octet-stream';
}

/**
 * True when `type` is in `allowed` (entries may end in `/*`: `image/*`).
 * @param {string} type
 * @param {readonly string[]} allowed
 */
export function typeAllowed(type, allowed) {
  const t = type.toLowerCase();
  return allowed.some((a) => {
    const x = a.trim().toLowerCase();
    return x === t || (x.endsWith('/*') && t.startsWith(x.slice(0, -1)));
  });
}

/**
 * The allowed types as people read them: `PNG, JPEG, GIF, WebP, PDF or plain text`.
 * @param {readonly string[]} types
 */
export function describeTypes(types) {
  const labels = [...new Set(types.map((t) => TYPE_LABELS[t.toLowerCase()] ?? (t.endsWith('/*') ? `any ${t.slice(0, -2)}` : t)))];
  return labels.length > 1 ? `${labels.slice(0, -1).join(', ')} or ${labels.at(-1)}` : labels[0] ?? 'none';
}

/**
 * A size as people read it: `512 B`, `1.5 KB`, `12.3 KB`, `340 KB`, `3.4 MB` (1 KB = 1024
 * bytes; rounded down, so a file just over a limit never reads as the limit).
 * @param {number} bytes
 * @returns {string}
 */
export function formatBytes(bytes) {
  const n = Math.max(0, Math.floor(Number(bytes) || 0));
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  const text = v < 100 ? (Math.floor(v * 10) / 10).toFixed(1).replace(/\.0$/, '') : String(Math.floor(v));
  return `${text} ${units[u]}`;
}

/**
 * What keeps a file from being attached under `limits`, or null when it may be uploaded:
 * `{ code, message }` with code `empty`, `too_large` or `type_not_allowed`, and a message to
 * show as it is (the file's name in it is text, never markup).
 * @param {{ name?: string, type?: string, size: number }} file
 * @param {Partial<AttachmentLimits>} [limits]
 * @returns {AttachmentProblem | null}
 */
export function attachmentProblem(file, limits = {}) {
  const { maxBytes, types } = { ...ATTACHMENT_DEFAULTS, ...limits };
  const name = attachmentName(file?.name ?? '');
  const type = contentTypeOf(file);
  if (!typeAllowed(type, types)) {
    return { code: 'type_not_allowed', message: `“${name}” cannot be sent: this type of file (${type}) is not accepted. Allowed: ${describeTypes(types)}.` };
  }
  const size = Number(file?.size);
  if (!Number.isFinite(size) || size <= 0) return { code: 'empty', message: `“${name}” is empty.` };
  if (size > maxBytes) {
    const [a, b] = formatBytes(size) === formatBytes(maxBytes) ? [`${size} bytes`, `${maxBytes} bytes`] : [formatBytes(size), formatBytes(maxBytes)];
    return { code: 'too_large', message: `“${name}” is too large (${a}); the limit is ${b}.` };
  }
  return null;
}

/**
 * What keeps `count` attachments from going in one message under `limits`, or null.
 * @param {number} count
 * @param {Partial<AttachmentLimits>} [limits]
 * @returns {AttachmentProblem | null}
 */
export function attachmentCountProblem(count, limits = {}) {
  const { maxPerMessage } = { ...ATTACHMENT_DEFAULTS, ...limits };
  if (count <= maxPerMessage) return null;
  return { code: 'too_many', message: `A message can carry at most ${maxPerMessage} ${maxPerMessage === 1 ? 'file' : 'files'}.` };
}

/**
 * The URL an attachment may be downloaded or shown from: resolved against `baseUrl` (chat-local
 * may give a path), and only http(s); null for anything else (`javascript:`, `data:`, …).
 * @param {unknown} url
 * @param {string} [baseUrl]
 * @returns {string | null}
 */
export function attachmentUrl(url, baseUrl) {
  if (typeof url !== 'string' || !url.trim() || url.length > 8192) return null;
  let u;
  try {
    u = baseUrl ? new URL(url.trim(), baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`) : new URL(url.trim());
  } catch {
    return null;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
  return u.href;
}

/**
 * A short label of a file's kind for its icon: `PDF`, `TXT`, `PNG`, else its extension in capitals
 * (at most 4 letters), else `FILE`.
 * @param {string} name
 * @param {string} [contentType]
 * @returns {string}
 */
export function fileBadge(name, contentType = '') {
  const t = contentType.toLowerCase();
  if (t === 'application/pdf') return 'PDF';
  if (t === 'text/plain') return 'TXT';
  const ext = /\.([a-z0-9]{1,4})$/i.exec(String(name ?? ''))?.[1];
  return ext ? ext.toUpperCase() : 'FILE';
}

/**
 * A message's attachments as the client keeps them: those with an id, a name and a size;
 * anything else in the list is dropped.
 * @param {unknown} list
 * @returns {import('./chat-client.js').ChatAttachment[]}
 */
export function attachmentsOf(list) {
  if (!Array.isArray(list)) return [];
  return list.filter((a) => a && typeof a === 'object' && typeof a.id === 'string' && a.id).map((a) => ({
    id: a.id,
    name: typeof a.name === 'string' && a.name ? a.name : 'file',
    contentType: typeof a.contentType === 'string' ? a.contentType : 'application/octet-stream',
    size: Number.isFinite(a.size) ? a.size : 0,
    ...(typeof a.url === 'string' ? { url: a.url } : {}),
  }));
}
