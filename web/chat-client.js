// ChatClient: a dependency-free browser client for the chat backend (see DESIGN.md).
//
//   import { ChatClient } from 'https://your-chat-host/chat-client.js';
//   const chat = new ChatClient({ baseUrl: 'https://your-chat-host' });
//   chat.on('message', ({ message }) => render(message));
//   await chat.start();
//   chat.send('Hello');
//
// What it does: creates or resumes a session (kept in localStorage; a fresh one when it has
// expired or the server refuses it; a signed-in user with none stored here gets their most
// recent conversation resumed), connects the WebSocket, reconnects with exponential
// backoff and jitter, pings to stay under idle timeouts, reconnects before the connection age
// limit (make-before-break), catches up with `GET …/messages?after=<seq>` on every (re)connect
// (and with `?updatedAfter=` for edits and deletions missed), dedupes by id, and sends with a `clientMessageId`: shown at once, settled on `ack`, re-sent
// after a reconnect if never acknowledged (the server is idempotent on it). A reply that is
// streamed (`delta` frames) is held as a message marked `streaming` with its text so far, and
// replaced by the stored reply (the `message` with the same id). It knows who answers the
// session (its `mode`: the bot, waiting for a person, a person, closed; from the session view,
// `session` events and the system messages that announce each change), asks for a person
// (`requestHandoff`), keeps the session's `presence`, and starts a new conversation when asked.
// Attachments: `upload(file)` checks a file against the limits, asks for an upload URL and PUTs
// the bytes there (XMLHttpRequest, for progress); `send(text, { attachments })` sends their ids.
//
// This file holds the class: connections, timers, storage and events. The pure logic it runs
// (backoff, merge, cursor, pending sends, typing debounce, session reuse) is in chat-logic.js,
// served beside it, and re-exported here so that this stays the one module to import. The class
// stays whole, about 600 lines of code: its methods share one state (the socket and its spare,
// timers, the message list, pending sends), and splitting it would spread that state over files.
// Types: chat-client.d.ts; the JSDoc types here name its types, and tests/browser/run checks
// this file against it with TypeScript (tsc --checkJs).

import {
  ATTACHMENT_DEFAULTS,
  DEFAULTS,
  addPending,
  attachmentCountProblem,
  attachmentName,
  attachmentProblem,
  attachmentsOf,
  contentTypeOf,
  advanceCursor,
  applyDelta,
  backoffDelay,
  canChange,
  clearStreams,
  createTypingDebouncer,
  furthestStatus,
  hasGap,
  impliedStatus,
  jwtSubject,
  markSent,
  mergeMessages,
  modeFromMessages,
  newClientMessageId,
  sameSessionInfo,
  sendsDue,
  sessionInfoOf,
  sessionUsable,
  setPendingState,
  settleFromMessages,
  settlePending,
} from './chat-logic.js';

export * from './chat-logic.js';

/**
 * @typedef {import('./chat-client.js').AttachmentErrorCode} AttachmentErrorCode
 * @typedef {import('./chat-client.js').AttachmentLimits} AttachmentLimits
 * @typedef {import('./chat-client.js').ChatAttachment} ChatAttachment
 * @typedef {import('./chat-client.js').UploadOptions} UploadOptions
 * @typedef {import('./chat-client.js').ChatClientEvents} ChatClientEvents
 * @typedef {import('./chat-client.js').ChatClientOptions} ChatClientOptions
 * @typedef {import('./chat-client.js').ChatMessage} ChatMessage
 * @typedef {import('./chat-client.js').ChatClient} DeclaredChatClient
 * @typedef {import('./chat-client.js').ConnectionState} ConnectionState
 * @typedef {import('./chat-client.js').MessageStatus} MessageStatus
 * @typedef {import('./chat-client.js').PendingSends} PendingSends
 * @typedef {import('./chat-client.js').Participant} Participant
 * @typedef {import('./chat-client.js').SessionInfo} SessionInfo
 * @typedef {import('./chat-client.js').StorageLike} StorageLike
 * @typedef {import('./chat-client.js').StoredSession} StoredSession
 * @typedef {import('./chat-logic.js').MessageUpdate} MessageUpdate
 * @typedef {Omit<StoredSession, 'token'> & { token: string | null }} Session
 *   the session in use; its token is null once the server refused it
 * @typedef {ReturnType<typeof setTimeout>} Timer
 * @typedef {WebSocket & { _pingTimer?: Timer, _pongTimer?: Timer, _ageTimer?: Timer, _openedAt?: number }} Socket
 *   a socket with the timers that keep it alive
 */

/** An HTTP error from the chat API, with the contract's `code`. */
export class ChatApiError extends Error {
  /**
   * @param {number} status the HTTP status
   * @param {string} [code] the contract's error code
   * @param {string} [message]
   * @param {number} [retryAfter] seconds, from a 429's Retry-After
   */
  constructor(status, code, message, retryAfter) {
    super(message || code || `HTTP ${status}`);
    this.name = 'ChatApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** A file that cannot be attached or uploaded, with a `code` saying why (see chat-client.d.ts). */
export class ChatAttachmentError extends Error {
  /**
   * @param {AttachmentErrorCode} code
   * @param {string} message
   * @param {string} [fileName]
   * @param {number} [status] the HTTP status, when the server or the storage refused it
   */
  constructor(code, message, fileName, status) {
    super(message);
    this.name = 'ChatAttachmentError';
    this.code = code;
    this.fileName = fileName;
    this.status = status;
  }
}

// Headers a page may not set on a request (the browser sets them itself, e.g. from the body).
const FORBIDDEN_HEADERS = new Set(['content-length', 'host', 'connection', 'expect', 'transfer-encoding', 'keep-alive', 'upgrade']);

/**
 * PUTs `body` to an upload URL with exactly `headers` (those a page may set: the browser sets
 * Content-Length from the body), by XMLHttpRequest, whose upload reports progress (fetch does
 * not). Resolves on a 2xx answer; rejects with a ChatAttachmentError.
 * @param {string} url
 * @param {Record<string, string>} headers
 * @param {Blob} body
 * @param {UploadOptions & { XMLHttpRequest?: typeof XMLHttpRequest, fileName?: string }} [options]
 * @returns {Promise<void>}
 */
export function uploadFile(url, headers, body, options = {}) {
  const name = options.fileName;
  return new Promise((resolve, reject) => {
    const Xhr = options.XMLHttpRequest ?? globalThis.XMLHttpRequest;
    if (options.signal?.aborted) return reject(new ChatAttachmentError('aborted', 'The upload was cancelled.', name));
    const xhr = new Xhr();
    xhr.open('PUT', url);
    for (const [k, v] of Object.entries(headers ?? {})) {
      if (!FORBIDDEN_HEADERS.has(k.toLowerCase())) xhr.setRequestHeader(k, String(v));
    }
    const onAbort = () => xhr.abort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const done = () => options.signal?.removeEventListener('abort', onAbort);
    xhr.upload.onprogress = (e) => options.onProgress?.({ loaded: e.loaded, total: e.lengthComputable ? e.total : body.size });
    xhr.onload = () => {
      done();
      if (xhr.status >= 200 && xhr.status < 300) {
        options.onProgress?.({ loaded: body.size, total: body.size });
        return resolve();
      }
      // chat-local answers in the contract's error shape; S3 in XML (its message is not for people).
      let message = '';
      try {
        message = JSON.parse(xhr.responseText)?.error?.message ?? '';
      } catch {
        /* not JSON */
      }
      const code = xhr.status === 413 ? 'too_large' : xhr.status >= 400 && xhr.status < 500 ? 'refused' : 'upload_failed';
      reject(new ChatAttachmentError(code, message || `The upload${name ? ` of “${name}”` : ''} was refused (HTTP ${xhr.status}).`, name, xhr.status));
    };
    xhr.onerror = () => {
      done();
      reject(new ChatAttachmentError('upload_failed', `The upload${name ? ` of “${name}”` : ''} failed. Check your connection.`, name));
    };
    xhr.onabort = () => {
      done();
      reject(new ChatAttachmentError('aborted', 'The upload was cancelled.', name));
    };
    xhr.send(body);
  });
}

const noopStorage = { getItem: () => null, setItem() {}, removeItem() {} };

/** @returns {StorageLike} */
function defaultStorage() {
  try {
    const s = globalThis.localStorage;
    if (s) {
      s.getItem('__chat_probe__');
      return s;
    }
  } catch {
    /* storage disabled (privacy mode, sandboxed iframe) */
  }
  return noopStorage;
}

/** @implements {DeclaredChatClient} */
export class ChatClient {
  /**
   * @param {ChatClientOptions} [options] see chat-client.d.ts
   */
  constructor(options = {}) {
    const o = { ...DEFAULTS, ...options };
    this.options = o;
    this.baseUrl = String(o.baseUrl ?? globalThis.location?.origin ?? '').replace(/\/+$/, '');
    this._storage = o.storage ?? defaultStorage();
    this._storageKey = o.storageKey ?? `chat-session:${this.baseUrl}`;
    this._fetch = o.fetch ?? /** @type {typeof fetch} */ ((...a) => globalThis.fetch(...a));
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    /** @type {AttachmentLimits} */
    this.attachmentLimits = { ...ATTACHMENT_DEFAULTS, ...o.attachments };
    /** @type {Map<string, Set<(detail: any) => void>>} */
    this._listeners = new Map();
    /** @type {readonly ChatMessage[]} */
    this._messages = [];
    /** @type {PendingSends} */
    this._pending = new Map();
    /** @type {Set<number>} */
    this._known = new Set();
    // Statuses pushed for messages not held yet (a catch-up page in flight may bring them
    // with an older status): applied when the message arrives.
    /** @type {Map<string, MessageStatus | undefined>} */
    this._earlyStatus = new Map();
    this._cursor = 0;
    // newConversation() asked for a session of its own: the next one is created, not resumed.
    this._wantNew = false;
    // The newest `updatedAt` seen (ms): a reconnect asks for the changes since then.
    this._seenUpdatedAt = 0;
    // The replies a delta arrived for since the current socket opened (null once its
    // catch-up is done): a stream not among them after a reconnect will not finish here.
    /** @type {Set<string> | null} */
    this._streamsSeen = null;
    /** @type {Session | null} */
    this._session = null;
    /** @type {ConnectionState} */
    this._state = 'idle';
    /** @type {Socket | null} */
    this._ws = null;
    this._attempt = 0;
    /** @type {Set<Timer>} */
    this._timers = new Set();
    this._stopped = true;
    this._readUpTo = 0;
    this._localOrder = 0;
    this._rejections = 0;
    this._gen = 0;
    /** @type {SessionInfo} who answers the session */
    this._info = { mode: 'bot' };
    // The seq up to which the session's info is known (a system message about a change of
    // mode with a higher seq is newer).
    this._infoSeq = 0;
    /** @type {Participant[]} */
    this._participants = [];
    this._typing = createTypingDebouncer((isTyping) => this._frame({ action: 'typing', isTyping }), {
      repeatMs: o.typingRepeatMs,
      idleMs: o.typingIdleMs,
    });
  }

  // --- events

  /**
   * Subscribes to an event; returns a function that unsubscribes.
   * @template {keyof ChatClientEvents} K
   * @param {K} type
   * @param {(detail: ChatClientEvents[K]) => void} fn
   * @returns {() => void}
   */
  on(type, fn) {
    let listeners = this._listeners.get(type);
    if (!listeners) this._listeners.set(type, (listeners = new Set()));
    listeners.add(fn);
    return () => this.off(type, fn);
  }

  /**
   * @template {keyof ChatClientEvents} K
   * @param {K} type
   * @param {(detail: ChatClientEvents[K]) => void} fn
   */
  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  /**
   * @template {keyof ChatClientEvents} K
   * @param {K} type
   * @param {ChatClientEvents[K]} detail
   */
  _emit(type, detail) {
    for (const fn of [...(this._listeners.get(type) ?? [])]) {
      try {
        fn(detail);
      } catch (e) {
        console.error(`chat-client: a '${type}' listener threw`, e);
      }
    }
  }

  // --- state

  /** The conversation, ordered by seq; unsent messages last. Do not mutate. */
  get messages() {
    return this._messages;
  }

  /** `idle`, `connecting`, `open`, `reconnecting` or `closed`. */
  get connectionState() {
    return this._state;
  }

  get sessionId() {
    return this._session?.sessionId ?? null;
  }

  /** The highest seq up to which every message is known. */
  get cursor() {
    return this._cursor;
  }

  /** True when older history exists than the messages held (see loadOlder). */
  get hasOlder() {
    const oldest = this._oldestSeq();
    return oldest !== undefined && oldest > 1 && this._hasOlder !== false;
  }

  /** Who answers the session: `bot`, `waiting` (for a person), `agent` or `closed`. */
  get mode() {
    return this._info.mode;
  }

  /** `{ mode, agent?, waitingSince? }` of the session. */
  get sessionInfo() {
    return this._info;
  }

  /** The session's participants and whether they are online, from the last `presence` event. */
  get participants() {
    return this._participants;
  }

  get readUpTo() {
    return this._readUpTo;
  }

  /** Messages from others with a seq above the read mark. */
  get unreadCount() {
    return this._messages.filter((m) => m.role !== 'user' && m.seq != null && m.seq > this._readUpTo).length;
  }

  // --- lifecycle

  /** Creates or resumes the session, loads history and connects. Resolves once the session exists. */
  async start() {
    if (!this._stopped) return this._ready;
    this._stopped = false;
    if (!this._onWake && globalThis.addEventListener) {
      this._onWake = () => {
        if (globalThis.document?.visibilityState !== 'hidden') this._reconnectNow();
      };
      globalThis.addEventListener('online', this._onWake);
      globalThis.document?.addEventListener?.('visibilitychange', this._onWake);
    }
    this._ready = (async () => {
      this._setState('connecting');
      this._restorePending();
      await this._connectLoop();
    })();
    return this._ready;
  }

  /** Closes the socket and stops reconnecting. Pending sends stay stored for the next start. */
  stop() {
    this._stopped = true;
    if (this._onWake) {
      globalThis.removeEventListener?.('online', this._onWake);
      globalThis.document?.removeEventListener?.('visibilitychange', this._onWake);
      this._onWake = null;
    }
    this._wake = null;
    this._ackCheck = null;
    this._gen = (this._gen ?? 0) + 1; // a connect loop still awaiting a request ends there
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    const ws = this._ws;
    this._ws = null;
    this._spare?.close(1000, 'client stopped');
    this._spare = null;
    if (ws) {
      this._detach(ws);
      try {
        ws.close(1000, 'client stopped');
      } catch {
        /* already closed */
      }
    }
    this._setState('closed');
  }

  /** Forgets the stored session (e.g. on logout); the next start() creates a new one. */
  forgetSession() {
    this._storage.removeItem(this._storageKey);
    this._storage.removeItem(this._storageKey + ':pending');
    this._session = null;
  }

  // --- sending

  /**
   * Sends a user message. It appears at once (status `sending`, or `queued` while offline) and
   * is settled when the server acknowledges it. Returns the optimistic message.
   * With `attachments` (from `upload`), the text may be empty.
   * @param {string} content
   * @param {{ metadata?: Record<string, unknown>, clientMessageId?: string, attachments?: readonly ChatAttachment[] }} [options]
   * @returns {ChatMessage}
   */
  send(content, { metadata, clientMessageId = newClientMessageId(), attachments: given } = {}) {
    const text = String(content);
    const attachments = attachmentsOf(given).map(({ url: _url, ...a }) => a);
    if (!text.trim() && !attachments.length) throw new Error('a message needs some text');
    const tooMany = attachmentCountProblem(attachments.length, this.attachmentLimits);
    if (tooMany) throw new ChatAttachmentError(tooMany.code, tooMany.message);
    this._typing.stop();
    const createdAt = Date.now();
    this._pending = addPending(this._pending, { clientMessageId, content: text, metadata, createdAt, ...(attachments.length ? { attachments } : {}) });
    this._savePending();
    /** @type {ChatMessage} */
    const optimistic = {
      id: `local:${clientMessageId}`,
      clientMessageId,
      sessionId: this.sessionId,
      role: 'user',
      type: 'text',
      content: text,
      status: 'queued',
      createdAt: new Date(createdAt).toISOString(),
      pending: true,
      localOrder: ++this._localOrder,
      ...(metadata ? { metadata } : {}),
      ...(attachments.length ? { attachments } : {}),
    };
    this._merge([optimistic]);
    this._flushSends(false);
    // Merged just above, so it is there.
    return /** @type {ChatMessage} */ (this._messages.find((m) => m.clientMessageId === clientMessageId));
  }

  /**
   * Sends a failed message again: one the server refused (by its `clientMessageId`, resent
   * as it was), or one the server marked `failed` because no answer came (by its `id` or
   * `clientMessageId`: its text goes out as a new message; the failed one stays in the
   * history, marked `retried`). Returns the new message in the second case.
   * @param {string} key
   * @returns {ChatMessage | undefined}
   */
  retry(key) {
    if (this._pending.has(key)) {
      this._pending = setPendingState(this._pending, key, 'queued');
      this._updateLocal(key, { status: 'queued', error: undefined });
      this._flushSends(false);
      return undefined;
    }
    const failed = this._messages.find((m) => (m.id === key || (key && m.clientMessageId === key))
      && m.role === 'user' && m.status === 'failed' && !m.pending && !m.retried);
    if (!failed) return undefined;
    const next = { ...failed, retried: true };
    this._messages = this._messages.map((x) => (x === failed ? next : x));
    this._emit('message', { message: next, isNew: false });
    // Attachments stay with the failed message (an attachment goes with one message only).
    if (!failed.content.trim()) return undefined;
    return this.send(failed.content, failed.metadata ? { metadata: failed.metadata } : {});
  }

  /**
   * Why `file` cannot be attached under the limits (type, size, empty), or null.
   * @param {{ name?: string, type?: string, size: number }} file
   * @returns {ChatAttachmentError | null}
   */
  checkAttachment(file) {
    const p = attachmentProblem(file, this.attachmentLimits);
    return p ? new ChatAttachmentError(p.code, p.message, attachmentName(file?.name ?? '')) : null;
  }

  /**
   * Uploads a file for the next message: checks it, asks for an upload URL
   * (`POST /sessions/{id}/attachments`), PUTs the bytes with the `uploadHeaders` given.
   * Resolves to the attachment to pass to `send`; rejects with a ChatAttachmentError.
   * @param {File} file
   * @param {UploadOptions} [options]
   * @returns {Promise<ChatAttachment>}
   */
  async upload(file, { onProgress, signal } = {}) {
    const problem = this.checkAttachment(file);
    if (problem) throw problem;
    const name = attachmentName(file.name);
    const contentType = contentTypeOf(file);
    if (!this._session?.token) {
      if (!this._ready) throw new Error('start() the client before uploading');
      await this._ready;
    }
    if (signal?.aborted) throw new ChatAttachmentError('aborted', 'The upload was cancelled.', name);
    const id = /** @type {Session} */ (this._session).sessionId;
    let ticket;
    try {
      ticket = await this._http('POST', `/sessions/${id}/attachments`, { name, contentType, size: file.size });
    } catch (e) {
      if (!(e instanceof ChatApiError)) throw new ChatAttachmentError('upload_failed', `Could not upload “${name}”. Check your connection.`, name);
      const code = e.status === 413 || e.code === 'too_large' ? 'too_large' : 'refused';
      throw new ChatAttachmentError(code, e.message && e.message !== e.code ? `“${name}” was refused: ${e.message}` : `“${name}” was refused (HTTP ${e.status}).`, name, e.status);
    }
    const url = new URL(String(ticket.uploadUrl), `${this.baseUrl}/`).href;
    await uploadFile(url, ticket.uploadHeaders ?? { 'Content-Type': contentType }, file, {
      signal,
      fileName: name,
      XMLHttpRequest: this.options.XMLHttpRequest,
      onProgress: (p) => {
        onProgress?.(p);
        this._emit('uploadProgress', { name, ...p });
      },
    });
    return { id: String(ticket.attachmentId), name, contentType, size: file.size };
  }

  /** Call on every keystroke: sends a debounced typing indicator. */
  sendTyping(isTyping = true) {
    if (isTyping) this._typing.keystroke();
    else this._typing.stop();
  }

  /** Marks messages up to `upTo` (default: the newest) as read. */
  markRead(upTo = this._lastSeq()) {
    if (!upTo || upTo <= this._readUpTo) return;
    this._readUpTo = upTo;
    this._emit('read', { upTo, unreadCount: this.unreadCount, local: true });
    if (!this._frame({ action: 'read', upTo }) && this._session) {
      this._http('POST', `/sessions/${this._session.sessionId}/read`, { upTo }).catch(() => {});
    }
  }

  /** Loads older history (before the oldest message held). Resolves to true if there is more. */
  async loadOlder(limit = 50) {
    const oldest = this._oldestSeq();
    if (!this._session || oldest === undefined || oldest <= 1) {
      this._hasOlder = false;
      return false;
    }
    const page = await this._http('GET', `/sessions/${this._session.sessionId}/messages?before=${oldest}&limit=${limit}`);
    this._merge(page.messages);
    this._hasOlder = page.hasMore;
    this._emit('change', { messages: this._messages });
    return page.hasMore;
  }

  /**
   * Asks for a person: the `handoff` frame on the open socket, else `POST …/handoff`. The
   * server answers with a system message and a `session` event (the `mode` event here); asking
   * again while waiting or with an agent changes nothing.
   * @returns {Promise<void>}
   */
  async requestHandoff() {
    if (this._frame({ action: 'handoff' })) return;
    if (!this._session?.token) await this._ready;
    const id = /** @type {Session} */ (this._session).sessionId; // the session exists once started
    const res = await this._http('POST', `/sessions/${id}/handoff`, {});
    if (res?.session && this._session?.sessionId === id) this._setInfo(sessionInfoOf(res.session), this._lastSeq());
  }

  /**
   * Leaves this conversation (e.g. once it is closed) and starts a new session: the message
   * list is cleared (`reset`), unsent messages of the old one are dropped.
   * @returns {Promise<void>}
   */
  async newConversation() {
    this.stop();
    this._wantNew = true; // asked for: not the latest conversation again
    this._storage.removeItem(this._storageKey);
    this._pending = new Map();
    this._savePending();
    this._messages = this._messages.filter((m) => !m.pending);
    if (this._session) this._session = { ...this._session, token: null };
    return this.start();
  }

  /**
   * A signed-in user's conversations (`GET /sessions` with the app JWT), newest activity first.
   * @param {{ limit?: number, cursor?: string }} [options]
   * @returns {Promise<import('./chat-client.js').ConversationsPage>}
   */
  async listConversations({ limit, cursor } = {}) {
    const q = new URLSearchParams();
    if (limit != null) q.set('limit', String(limit));
    if (cursor) q.set('cursor', cursor);
    const query = q.toString();
    return this._http('GET', `/sessions${query ? `?${query}` : ''}`, undefined, await this._appAuth(), false);
  }

  /**
   * Opens one of the user's conversations on this device: a fresh token for it
   * (`POST /sessions/{id}/resume`), then its history and the socket. Unsent messages of the
   * conversation left are dropped, as with newConversation.
   * @param {string} sessionId
   * @returns {Promise<void>}
   */
  async resumeConversation(sessionId) {
    const headers = await this._appAuth();
    const resumed = await this._http('POST', `/sessions/${encodeURIComponent(sessionId)}/resume`, undefined, headers, false);
    this.stop();
    this._wantNew = false;
    this._pending = new Map();
    this._savePending();
    this._messages = this._messages.filter((m) => !m.pending);
    this._useSession({ ...resumed, subject: jwtSubject(headers.authorization.slice('Bearer '.length)) }, false);
    return this.start();
  }

  /**
   * Edits one of the user's own messages; resolves to the stored message.
   * @param {string} messageId
   * @param {string} content
   * @returns {Promise<ChatMessage>}
   */
  async editMessage(messageId, content) {
    return this._changeMessage('PATCH', messageId, { content });
  }

  /**
   * Deletes one of the user's own messages (a tombstone stays in its place).
   * @param {string} messageId
   * @returns {Promise<ChatMessage>}
   */
  async deleteMessage(messageId) {
    return this._changeMessage('DELETE', messageId, undefined);
  }

  /**
   * @param {ChatMessage} message
   * @returns {boolean}
   */
  canChange(message) {
    return canChange(message, Date.now(), this.options.editWindowMs);
  }

  /**
   * @param {'PATCH' | 'DELETE'} method
   * @param {string} messageId
   * @param {unknown} body
   * @returns {Promise<ChatMessage>}
   */
  async _changeMessage(method, messageId, body) {
    const id = this.sessionId;
    if (!id) throw new ChatApiError(404, 'not_found', 'no session yet');
    const r = await this._http(method, `/sessions/${encodeURIComponent(id)}/messages/${encodeURIComponent(messageId)}`, body);
    if (this.sessionId === id && r?.message) this._merge([r.message]);
    return r.message;
  }

  /** The app JWT's Authorization header; a user's own routes need one. */
  async _appAuth() {
    const authToken = await this._authToken();
    if (!authToken) throw new ChatApiError(401, 'missing_token', 'a signed-in user (authToken) is needed for this');
    return { authorization: `Bearer ${authToken}` };
  }

  // --- internals: session

  async _ensureSession() {
    const now = Date.now();
    const authToken = await this._authToken();
    const subject = authToken ? jwtSubject(authToken) : null;
    if (sessionUsable(this._session, now, this.options.sessionRenewMarginMs, subject)) return;
    let stored = null;
    try {
      stored = JSON.parse(this._storage.getItem(this._storageKey) || 'null');
    } catch {
      stored = null;
    }
    if (sessionUsable(stored, now, this.options.sessionRenewMarginMs, subject)) {
      this._useSession(stored, false);
      return;
    }
    /** @type {Record<string, string>} */
    const headers = authToken ? { authorization: `Bearer ${authToken}` } : {};
    if (subject && this.options.resumeLatest && !this._wantNew) {
      const latest = await this._resumeLatest(headers);
      if (latest) {
        this._useSession({ ...latest, subject }, false);
        return;
      }
    }
    const created = await this._http('POST', '/sessions', this.options.sessionMetadata ? { metadata: this.options.sessionMetadata } : {}, headers, false);
    this._wantNew = false;
    this._useSession({ ...created, subject }, true);
  }

  /**
   * A signed-in user's most recent conversation, resumed with a fresh token for this device;
   * null when they have none (or the server has no list: a 4xx other than 429).
   * @param {Record<string, string>} headers the app JWT's Authorization header
   */
  async _resumeLatest(headers) {
    try {
      const page = await this._http('GET', '/sessions?limit=1', undefined, headers, false);
      const id = page?.sessions?.[0]?.sessionId;
      if (!id) return null;
      return await this._http('POST', `/sessions/${encodeURIComponent(id)}/resume`, undefined, headers, false);
    } catch (e) {
      if (e instanceof ChatApiError && e.status >= 400 && e.status < 500 && e.status !== 429) return null;
      throw e;
    }
  }

  async _authToken() {
    const t = this.options.authToken;
    if (!t) return null;
    return typeof t === 'function' ? (await t()) || null : t;
  }

  /**
   * @param {StoredSession} s
   * @param {boolean} isNew
   */
  _useSession(s, isNew) {
    const changed = this._session && this._session.sessionId !== s.sessionId;
    if (changed) {
      this._messages = [];
      this._known = new Set();
      this._earlyStatus = new Map();
      this._cursor = 0;
      this._seenUpdatedAt = 0;
      this._readUpTo = 0;
      this._loaded = false;
      this._hasOlder = undefined;
      this._everOpened = false;
      this._participants = [];
      this._infoSeq = 0;
      this._setInfo({ mode: 'bot' }, 0);
      this._emit('reset', { sessionId: s.sessionId });
    }
    this._session = s;
    this._storage.setItem(this._storageKey, JSON.stringify(s));
    this._emit('session', { sessionId: s.sessionId, isNew, expiresAt: s.expiresAt });
  }

  _dropSession() {
    this._storage.removeItem(this._storageKey);
    if (this._session) this._session = { ...this._session, token: null };
  }

  // --- internals: HTTP

  /**
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body] sent as JSON
   * @param {Record<string, string>} [extraHeaders]
   * @param {boolean} [withToken] with the session's token
   * @returns {Promise<any>} the response's JSON; throws a ChatApiError for a non-2xx answer
   */
  async _http(method, path, body, extraHeaders = {}, withToken = true) {
    /** @type {Record<string, string>} */
    const headers = { ...extraHeaders };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (withToken && this._session?.token) headers.authorization = `Bearer ${this._session.token}`;
    const res = await this._fetch(this.baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json().catch(() => ({}));
    if (!res.ok) {
      const retry = Number(res.headers?.get?.('retry-after')) || undefined;
      throw new ChatApiError(res.status, json?.error?.code, json?.error?.message, retry);
    }
    return json;
  }

  /** Loads what was missed: the first time the latest page, then every page after the cursor. */
  async _catchUp() {
    const id = /** @type {Session} */ (this._session).sessionId; // _ensureSession ran first
    // Taken before the pages below: a message they bring may be newer than a change missed.
    const changedSince = this._loaded ? this._seenUpdatedAt : 0;
    if (!this._loaded) {
      const first = await this._http('GET', `/sessions/${id}`);
      if (this._session?.sessionId !== id) return;
      this._loaded = true;
      this._readUpTo = Math.max(this._readUpTo, first.session?.readUpTo ?? 0);
      const oldest = first.messages[0]?.seq;
      // Start the cursor just before the window we hold, so `after` fills any later gap.
      if (oldest != null) this._cursor = Math.max(this._cursor, oldest - 1);
      this._hasOlder = !!first.hasMore;
      this._setInfo(sessionInfoOf(first.session), first.messages.at(-1)?.seq ?? 0);
      this._merge(first.messages);
      this._emit('read', { upTo: this._readUpTo, unreadCount: this.unreadCount });
    }
    for (let guard = 0; guard < 1000; guard++) {
      const after = this._cursor;
      const page = await this._http('GET', `/sessions/${id}/messages?after=${after}&limit=${this.options.pageSize}`);
      if (this._session?.sessionId !== id) return;
      this._merge(page.messages);
      const top = page.messages.at(-1)?.seq ?? after;
      // Pages are gapless: everything up to the page's last seq is now known.
      this._cursor = Math.max(this._cursor, top);
      this._cursor = advanceCursor(this._cursor, this._known);
      if (!page.hasMore || page.messages.length === 0) break;
    }
    // Edits and deletions made while away (the first load has every message as it is now).
    let since = changedSince;
    for (let guard = 0; since > 0 && guard < 1000; guard++) {
      const page = await this._http('GET', `/sessions/${id}/messages?updatedAfter=${since}&limit=${this.options.pageSize}`);
      if (this._session?.sessionId !== id) return;
      this._merge(page.messages);
      const last = Date.parse(page.messages.at(-1)?.updatedAt ?? '');
      if (!page.hasMore || !Number.isFinite(last) || last <= since) break;
      since = last;
    }
  }

  // --- internals: connection

  async _connectLoop() {
    const gen = this._gen;
    while (!this._stopped && gen === this._gen) {
      try {
        await this._ensureSession();
        await this._catchUp();
        if (this._stopped || gen !== this._gen) return;
        this._emit('ready', { sessionId: /** @type {string} */ (this.sessionId) });
        this._openSocket();
        return;
      } catch (e) {
        if (this._stopped) return;
        if (e instanceof ChatApiError && [401, 403, 404].includes(e.status)) {
          // Expired, revoked or unknown session: start a fresh one right away.
          this._dropSession();
          this._emit('error', { code: e.code ?? 'session_rejected', message: e.message });
          if (this._rejections++ < 3) continue;
        }
        if (e instanceof ChatApiError && e.status === 429 && e.retryAfter) {
          await this._sleep(e.retryAfter * 1000);
          continue;
        }
        await this._sleep(this._nextBackoff(e));
      }
    }
  }

  /** @param {any} reason what ended the attempt (an Error, or `{ message }`) */
  _nextBackoff(reason) {
    const delay = backoffDelay(this._attempt++, {
      baseMs: this.options.backoffBaseMs,
      maxMs: this.options.backoffMaxMs,
      jitter: this.options.backoffJitter,
    });
    this._setState('reconnecting', { retryInMs: delay, reason: reason?.message });
    return delay;
  }

  /**
   * A backoff wait that `_reconnectNow()` can cut short.
   * @param {number} ms
   * @returns {Promise<void>}
   */
  _sleep(ms) {
    return new Promise((resolve) => {
      const t = this._timer(() => {
        this._wake = null;
        resolve();
      }, ms);
      this._wake = () => {
        clearTimeout(t);
        this._timers.delete(t);
        this._wake = null;
        resolve();
      };
    });
  }

  /** The network is back or the tab is visible again: skip the rest of the backoff wait. */
  _reconnectNow() {
    if (this._stopped || !this._wake) return;
    this._attempt = 0;
    this._wake();
  }

  /**
   * @param {() => void} fn
   * @param {number} ms
   */
  _timer(fn, ms) {
    const t = setTimeout(() => {
      this._timers.delete(t);
      fn();
    }, ms);
    this._timers.add(t);
    return t;
  }

  _wsUrl() {
    const s = /** @type {StoredSession} */ (this._session); // usable: _ensureSession ran first
    const sep = s.websocketUrl.includes('?') ? '&' : '?';
    // v=2: this client understands merged frames (fewer pushes per round); an older server
    // ignores it and sends today's frames, which are understood too.
    return `${s.websocketUrl}${sep}sessionId=${encodeURIComponent(s.sessionId)}&token=${encodeURIComponent(s.token)}&v=2`;
  }

  /** Opens a socket. With `replacing`, the current one keeps working until this one is open. */
  _openSocket(replacing = false) {
    if (this._stopped) return;
    if (!replacing) this._setState(this._everOpened ? 'reconnecting' : 'connecting');
    const ws = new this._WebSocket(this._wsUrl());
    if (replacing) this._spare = ws;
    else this._ws = ws;
    ws.onopen = () => this._onOpen(ws, replacing);
    ws.onmessage = (e) => this._onFrame(ws, e.data);
    ws.onclose = (e) => this._onClose(ws, e);
    ws.onerror = () => {};
  }

  /** @param {Socket} ws */
  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    clearTimeout(ws._pingTimer);
    clearTimeout(ws._pongTimer);
    clearTimeout(ws._ageTimer);
  }

  /**
   * @param {Socket} ws
   * @param {boolean} replacing
   */
  async _onOpen(ws, replacing) {
    if (this._stopped) return this._detach(ws);
    if (replacing) {
      // Make before break: the new socket takes over, the old one closes cleanly.
      const old = this._ws;
      this._spare = null;
      this._ws = ws;
      if (old) {
        this._detach(old);
        try {
          old.close(1000, 'replaced');
        } catch {
          /* closed */
        }
      }
    }
    const reconnected = this._everOpened === true;
    this._everOpened = true;
    if (!replacing) this._streamsSeen = new Set();
    this._rejections = 0;
    ws._openedAt = Date.now();
    this._schedulePing(ws);
    ws._ageTimer = setTimeout(() => {
      if (ws === this._ws && !this._stopped) this._openSocket(true);
    }, this.options.maxConnectionAgeMs);
    try {
      await this._catchUp(); // anything committed while we were away
    } catch (e) {
      if (e instanceof ChatApiError && [401, 403, 404].includes(e.status)) {
        this._dropSession();
        try {
          ws.close(4001, 'session rejected');
        } catch {
          /* closed */
        }
        return;
      }
    }
    if (ws !== this._ws) return;
    if (!replacing) this._clearStreams();
    this._attempt = 0;
    this._setState('open');
    this._flushSends(reconnected || replacing);
  }

  /**
   * @param {Socket} ws
   * @param {{ code?: number }} [e] the close event
   */
  _onClose(ws, e) {
    this._detach(ws);
    if (ws === this._spare) {
      this._spare = null; // the replacement failed; the current socket goes on
      return;
    }
    if (ws !== this._ws) return;
    this._ws = null;
    if (this._stopped) return;
    // Messages sent on this socket may or may not have arrived: they go again on reconnect.
    for (const p of this._pending.values()) {
      if (p.state === 'sending') this._pending = setPendingState(this._pending, p.clientMessageId, 'queued');
    }
    const delay = this._nextBackoff({ message: `closed (${e?.code ?? '?'})` });
    this._emit('typing', { role: 'assistant', isTyping: false });
    this._sleep(delay).then(() => this._connectLoop());
  }

  /** @param {Socket} ws */
  _schedulePing(ws) {
    clearTimeout(ws._pingTimer);
    ws._pingTimer = setTimeout(() => {
      if (ws !== this._ws) return;
      if (this._frame({ action: 'ping' }, ws)) {
        clearTimeout(ws._pongTimer);
        ws._pongTimer = setTimeout(() => {
          // No pong: the connection is dead even if the browser has not noticed.
          if (ws === this._ws) {
            try {
              ws.close(4000, 'no pong');
            } catch {
              /* closed */
            }
            this._onClose(ws, { code: 4000 });
          }
        }, this.options.pongTimeoutMs);
      }
      this._schedulePing(ws);
    }, this.options.pingIntervalMs);
  }

  /**
   * Writes a frame on the open socket; false when there is none.
   * @param {object} obj
   * @param {Socket | null} [ws]
   */
  _frame(obj, ws = this._ws) {
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  /** @param {boolean} reconnected */
  _flushSends(reconnected) {
    if (this._state !== 'open') return; // (re)connecting: flushed once the socket is open
    const due = sendsDue(this._pending, Date.now(), { ackTimeoutMs: this.options.ackTimeoutMs, reconnected });
    for (const p of due) {
      /** @type {{ action: 'sendMessage', content: string, clientMessageId: string, metadata?: Record<string, unknown>, attachments?: string[] }} */
      const frame = { action: 'sendMessage', content: p.content, clientMessageId: p.clientMessageId };
      if (p.metadata) frame.metadata = p.metadata;
      if (p.attachments?.length) frame.attachments = p.attachments.map((a) => a.id);
      if (!this._frame(frame)) break;
      this._pending = markSent(this._pending, p.clientMessageId, Date.now());
      this._updateLocal(p.clientMessageId, { status: 'sending' });
    }
    const unsettled = [...this._pending.values()].some((p) => p.state !== 'failed');
    if (unsettled && !this._ackCheck) {
      this._ackCheck = this._timer(() => {
        this._ackCheck = null;
        this._flushSends(false);
      }, this.options.ackTimeoutMs);
    }
  }

  /**
   * @param {Socket} ws
   * @param {string} data a frame from the server
   */
  _onFrame(ws, data) {
    let ev;
    try {
      ev = JSON.parse(data);
    } catch {
      return;
    }
    if (ws !== this._ws && ws !== this._spare) return;
    this._onEvent(ws, ev);
  }

  /**
   * One server event. A merged frame (v=2) carries a second event as a member: `ack` with
   * `message`, `status` with `typing`, `message` with `status`; each is handled as if it had
   * come in its own frame right after.
   * @param {Socket} ws
   * @param {any} ev
   */
  _onEvent(ws, ev) {
    if (!ev || typeof ev !== 'object') return;
    switch (ev.event) {
      case 'message': {
        const m = ev.message;
        if (!m || m.sessionId && m.sessionId !== this.sessionId) return;
        const gap = m.seq != null && hasGap(this._cursor, m.seq) && !this._known.has(m.seq);
        this._merge([m]);
        if (m.role !== 'user') this._emit('typing', { role: m.role, isTyping: false });
        if (gap) this._catchUp().catch(() => {});
        if (ev.status && typeof ev.status === 'object') this._onEvent(ws, { ...ev.status, event: 'status' });
        break;
      }
      case 'delta': {
        const r = applyDelta(this._messages, ev, { createdAt: new Date().toISOString(), localOrder: this._localOrder + 1 });
        if (!r.changed || !r.message) break;
        if (r.added) {
          this._localOrder++;
          this._emit('typing', { role: r.message.role, isTyping: false }); // the reply shows itself
        }
        this._messages = r.list;
        this._streamsSeen?.add(r.message.id);
        this._emit('delta', { message: r.message, index: ev.index, text: ev.text, gap: r.gap });
        this._emit('message', { message: r.message, isNew: r.added });
        this._emit('change', { messages: this._messages });
        break;
      }
      case 'ack': {
        const carried = ev.message && typeof ev.message === 'object' ? ev.message : null;
        if (!ev.clientMessageId) {
          if (carried) this._onEvent(ws, { event: 'message', message: carried });
          break;
        }
        this._pending = settlePending(this._pending, ev.clientMessageId);
        this._savePending();
        this._merge([{ id: ev.messageId, seq: ev.seq, clientMessageId: ev.clientMessageId, role: 'user', status: 'received', pending: undefined }]);
        this._emit('ack', { clientMessageId: ev.clientMessageId, messageId: ev.messageId, seq: ev.seq });
        if (carried) this._onEvent(ws, { event: 'message', message: carried });
        break;
      }
      case 'status': {
        const m = this._messages.find((x) => x.id === ev.messageId);
        if (m) this._merge([{ id: ev.messageId, status: ev.status }]);
        else if (ev.messageId) {
          this._earlyStatus.set(ev.messageId, furthestStatus(this._earlyStatus.get(ev.messageId), ev.status));
          if (this._earlyStatus.size > 500) this._earlyStatus.delete(/** @type {string} */ (this._earlyStatus.keys().next().value));
        }
        this._emit('status', { messageId: ev.messageId, status: ev.status });
        if (ev.typing && typeof ev.typing === 'object') this._onEvent(ws, { ...ev.typing, event: 'typing' });
        break;
      }
      case 'typing':
        this._emit('typing', { role: ev.role, isTyping: !!ev.isTyping, ...(typeof ev.name === 'string' && ev.name ? { name: ev.name } : {}) });
        break;
      case 'session':
        if (!ev.session || typeof ev.session !== 'object') break;
        if (ev.session.sessionId && ev.session.sessionId !== this.sessionId) break;
        this._setInfo(sessionInfoOf(ev.session), this._lastSeq());
        break;
      case 'presence': {
        if (!Array.isArray(ev.participants)) break;
        this._participants = ev.participants
          .filter((/** @type {any} */ p) => p && typeof p.role === 'string')
          .map((/** @type {any} */ p) => ({ role: p.role, id: String(p.id ?? ''), online: !!p.online, ...(typeof p.name === 'string' ? { name: p.name } : {}) }));
        this._emit('presence', { participants: this._participants });
        break;
      }
      case 'read':
        this._readUpTo = Math.max(this._readUpTo, ev.upTo ?? 0);
        this._emit('read', { upTo: ev.upTo, unreadCount: this.unreadCount });
        break;
      case 'pong':
        clearTimeout(ws._pongTimer);
        break;
      case 'error': {
        const id = ev.clientMessageId;
        if (id && this._pending.has(id)) {
          if (ev.code === 'rate_limited') {
            const secs = Number(/(\d+)\s*s/.exec(ev.message ?? '')?.[1]) || 5;
            this._pending = setPendingState(this._pending, id, 'queued');
            this._updateLocal(id, { status: 'queued' });
            this._timer(() => this._flushSends(false), secs * 1000);
          } else {
            this._pending = setPendingState(this._pending, id, 'failed', { error: ev.message });
            this._updateLocal(id, { status: 'failed', error: ev.message });
          }
          this._savePending();
        }
        this._emit('error', { code: ev.code, message: ev.message, clientMessageId: id });
        break;
      }
      default:
        break;
    }
  }

  // --- internals: the message list

  /** @param {MessageUpdate[]} incoming */
  _merge(incoming) {
    // Updates (status, ack) for a message we do not hold are ignored, except full messages.
    const full = incoming
      .filter((m) => m.content !== undefined || this._messages.some((x) => x.id === m.id || (m.clientMessageId && x.clientMessageId === m.clientMessageId)))
      .map((m) => {
        const early = this._earlyStatus.get(m.id);
        if (early === undefined) return m;
        this._earlyStatus.delete(m.id);
        return { ...m, status: furthestStatus(m.status, early) };
      });
    // A reply answers the message it replies to, and a system error about it means it failed,
    // exactly as the server moves their statuses. A catch-up page (`after=<seq>`) brings the
    // reply but not the older message, whose status push may have come while offline.
    for (const m of [...full]) {
      const implied = impliedStatus(m);
      if (!implied || !m.replyTo) continue;
      if (this._messages.some((x) => x.id === m.replyTo) || full.some((x) => x.id === m.replyTo && x.content !== undefined)) {
        full.push({ id: m.replyTo, status: implied });
      } else {
        this._earlyStatus.set(m.replyTo, furthestStatus(this._earlyStatus.get(m.replyTo), implied));
      }
    }
    if (!full.length) return;
    const { list, changes } = mergeMessages(this._messages, full);
    this._messages = list;
    const said = modeFromMessages(full);
    if (said && said.seq > this._infoSeq) this._setInfo(said.info, said.seq);
    for (const m of full) if (m.seq != null) this._known.add(m.seq);
    for (const m of full) {
      const at = Date.parse(m.updatedAt ?? '');
      if (Number.isFinite(at) && at > this._seenUpdatedAt) this._seenUpdatedAt = at;
    }
    this._cursor = advanceCursor(this._cursor, this._known);
    const settled = settleFromMessages(this._pending, full.filter((m) => m.seq != null));
    if (settled !== this._pending) {
      this._pending = settled;
      this._savePending();
    }
    for (const c of changes) this._emit('message', { message: c.message, isNew: c.added });
    if (changes.length) this._emit('change', { messages: this._messages });
  }

  /** After a reconnect's catch-up: drops the streams that will not finish on this socket. */
  _clearStreams() {
    const { list, cleared } = clearStreams(this._messages, this._streamsSeen ?? new Set());
    this._streamsSeen = null;
    if (!cleared.length) return;
    this._messages = list;
    this._emit('streamCleared', { messageIds: cleared });
    this._emit('change', { messages: this._messages });
  }

  /**
   * @param {string} clientMessageId
   * @param {Partial<ChatMessage>} patch
   */
  _updateLocal(clientMessageId, patch) {
    const m = this._messages.find((x) => x.clientMessageId === clientMessageId && x.pending);
    if (!m) return;
    const next = { ...m, ...patch };
    if (patch.error === undefined) delete next.error;
    this._messages = this._messages.map((x) => (x === m ? next : x));
    this._emit('message', { message: next, isNew: false });
    this._emit('change', { messages: this._messages });
  }

  _lastSeq() {
    let s = 0;
    for (const m of this._messages) if (m.seq != null && m.seq > s) s = m.seq;
    return s;
  }

  /** The seq of the oldest message held that has one. */
  _oldestSeq() {
    return this._messages.find((m) => m.seq != null)?.seq;
  }

  /**
   * Records who answers the session as of `seq`; emits `mode` when that changed.
   * @param {SessionInfo} info
   * @param {number} seq
   */
  _setInfo(info, seq) {
    this._infoSeq = Math.max(this._infoSeq, seq);
    if (sameSessionInfo(this._info, info)) return;
    const previous = this._info.mode;
    this._info = info;
    this._emit('mode', { ...info, previous });
  }

  /**
   * @param {ConnectionState} state
   * @param {{ retryInMs?: number, reason?: string }} [extra]
   */
  _setState(state, extra = {}) {
    if (this._state === state && state !== 'reconnecting') return;
    this._state = state;
    this._emit('connection', { state, attempt: this._attempt, ...extra });
  }

  // --- pending sends survive a reload

  _savePending() {
    try {
      const list = [...this._pending.values()].map(({ clientMessageId, content, metadata, attachments, createdAt, state }) => ({ clientMessageId, content, metadata, attachments, createdAt, state: state === 'failed' ? 'failed' : 'queued' }));
      if (list.length) this._storage.setItem(this._storageKey + ':pending', JSON.stringify(list));
      else this._storage.removeItem(this._storageKey + ':pending');
    } catch {
      /* storage full or disabled: pending sends then live only in memory */
    }
  }

  _restorePending() {
    let list = [];
    try {
      list = JSON.parse(this._storage.getItem(this._storageKey + ':pending') || '[]');
    } catch {
      list = [];
    }
    for (const p of Array.isArray(list) ? list : []) {
      if (!p?.clientMessageId || this._pending.has(p.clientMessageId)) continue;
      const attachments = attachmentsOf(p.attachments);
      this._pending = addPending(this._pending, { ...p, attachments: attachments.length ? attachments : undefined, state: p.state === 'failed' ? 'failed' : 'queued' });
      this._merge([{
        id: `local:${p.clientMessageId}`,
        clientMessageId: p.clientMessageId,
        role: 'user',
        type: 'text',
        content: p.content,
        status: p.state === 'failed' ? 'failed' : 'queued',
        createdAt: new Date(p.createdAt).toISOString(),
        pending: true,
        localOrder: ++this._localOrder,
        ...(attachments.length ? { attachments } : {}),
      }]);
    }
  }
}
