// AgentClient: the agent routes of the chat API over HTTP (`Authorization: Bearer <agent JWT>`)
// and the agent WebSocket (`?agentToken=`), reconnecting with backoff and jitter, pinging to
// stay under idle timeouts. The agent console (agent-console.js) is built on it; a host app may
// use it alone. Events: `inbox`, `message`, `delta`, `typing`, `presence`, `agents`, `error`
// (the server's frames) and `connection` ({ state, attempt }) and `reconnected` (after a
// reconnect: what was pushed meanwhile was missed, reload it). Attachments: `upload` asks for
// an upload URL (`POST /agent/sessions/{id}/attachments`) and PUTs the file there; `send` takes
// the attachments to send with the message. `editMessage` and `deleteMessage` change one of
// the agent's own messages; `messages(id, { updatedAfter })` lists the changes missed.

import { backoffDelay, ChatApiError, ChatAttachmentError, attachmentName, contentTypeOf, uploadFile } from './chat-client.js';
import { agentSocketUrl } from './agent-logic.js';

export { ChatApiError };

export class AgentClient {
  /**
   * @param {{ apiBase: string, token: string, websocketUrl?: string, fetch?: typeof fetch,
   *   WebSocket?: typeof WebSocket, backoffBaseMs?: number, backoffMaxMs?: number, pingIntervalMs?: number }} o
   */
  constructor(o) {
    this.apiBase = String(o.apiBase).replace(/\/+$/, '');
    this.token = o.token;
    this.websocketUrl = o.websocketUrl;
    this._fetch = o.fetch ?? ((/** @type {any[]} */ ...a) => globalThis.fetch(.../** @type {[any, any]} */ (a)));
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    this._backoff = { baseMs: o.backoffBaseMs ?? 500, maxMs: o.backoffMaxMs ?? 30_000, jitter: 0.5 };
    this._pingMs = o.pingIntervalMs ?? 4 * 60_000;
    /** @type {Map<string, Set<(d: any) => void>>} */
    this._listeners = new Map();
    /** @type {WebSocket | null} */
    this._ws = null;
    this._attempt = 0;
    this._stopped = true;
    this._everOpened = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._retryTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this._pingTimer = undefined;
    this.state = 'idle';
  }

  /**
   * @param {string} type
   * @param {(d: any) => void} fn
   * @returns {() => void}
   */
  on(type, fn) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  /**
   * @param {string} type
   * @param {any} detail
   */
  _emit(type, detail) {
    for (const fn of [...(this._listeners.get(type) ?? [])]) {
      try {
        fn(detail);
      } catch (e) {
        console.error(`agent-client: a '${type}' listener threw`, e);
      }
    }
  }

  // --- HTTP

  /**
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   * @returns {Promise<any>} the JSON answer; a ChatApiError for a non-2xx one
   */
  async http(method, path, body) {
    /** @type {Record<string, string>} */
    const headers = { authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await this._fetch(this.apiBase + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const json = res.status === 204 ? {} : await res.json().catch(() => ({}));
    if (!res.ok) throw new ChatApiError(res.status, json?.error?.code, json?.error?.message, Number(res.headers?.get?.('retry-after')) || undefined);
    return json;
  }

  /** @param {string} view @param {string} [cursor] */
  inbox(view, cursor) {
    return this.http('GET', `/agent/inbox?view=${encodeURIComponent(view)}&limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
  }

  /** @param {string} id */
  session(id) {
    return this.http('GET', `/agent/sessions/${encodeURIComponent(id)}`);
  }

  /**
   * A page of history (`before`/`after` a seq), or the messages edited or deleted after
   * `updatedAfter` (Unix ms or RFC 3339), oldest change first.
   * @param {string} id
   * @param {{ before?: number, after?: number, updatedAfter?: number | string, limit?: number }} q
   */
  messages(id, q) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v != null) p.set(k, String(v));
    return this.http('GET', `/agent/sessions/${encodeURIComponent(id)}/messages?${p}`);
  }

  /** @param {string} id @param {'claim' | 'release' | 'close'} action */
  act(id, action) {
    return this.http('POST', `/agent/sessions/${encodeURIComponent(id)}/${action}`, {});
  }

  /** @param {string} id @param {{ id: string, name: string }} to */
  transfer(id, to) {
    return this.http('POST', `/agent/sessions/${encodeURIComponent(id)}/transfer`, { agentId: to.id, agentName: to.name });
  }

  /**
   * @param {string} id
   * @param {string} content
   * @param {string} clientMessageId
   * @param {readonly { id: string }[]} [attachments] uploaded with `upload`
   */
  send(id, content, clientMessageId, attachments = []) {
    return this.http('POST', `/agent/sessions/${encodeURIComponent(id)}/messages`, {
      content, clientMessageId, ...(attachments.length ? { attachments: attachments.map((a) => a.id) } : {}),
    });
  }

  /**
   * Edits one of the agent's own messages (within the server's edit window); resolves to
   * `{ message }`, the stored message with `editedAt`.
   * @param {string} id the session
   * @param {string} messageId
   * @param {string} content
   */
  editMessage(id, messageId, content) {
    return this.http('PATCH', `/agent/sessions/${encodeURIComponent(id)}/messages/${encodeURIComponent(messageId)}`, { content });
  }

  /**
   * Deletes one of the agent's own messages: resolves to `{ message }`, its tombstone.
   * @param {string} id the session
   * @param {string} messageId
   */
  deleteMessage(id, messageId) {
    return this.http('DELETE', `/agent/sessions/${encodeURIComponent(id)}/messages/${encodeURIComponent(messageId)}`);
  }

  /**
   * Uploads a file to send in session `id` (which the agent must hold): asks for an upload URL,
   * PUTs the bytes with the headers given. Resolves to the attachment; rejects with a
   * ChatAttachmentError. Check the file against the limits first (`attachmentProblem`).
   * @param {string} id
   * @param {File} file
   * @param {import('./chat-client.js').UploadOptions} [options]
   * @returns {Promise<import('./chat-client.js').ChatAttachment>}
   */
  async upload(id, file, { onProgress, signal } = {}) {
    const name = attachmentName(file.name);
    const contentType = contentTypeOf(file);
    let ticket;
    try {
      ticket = await this.http('POST', `/agent/sessions/${encodeURIComponent(id)}/attachments`, { name, contentType, size: file.size });
    } catch (e) {
      if (!(e instanceof ChatApiError)) throw new ChatAttachmentError('upload_failed', `Could not upload “${name}”. Check your connection.`, name);
      const code = e.status === 413 || e.code === 'too_large' ? 'too_large' : 'refused';
      throw new ChatAttachmentError(code, e.message && e.message !== e.code ? `“${name}” was refused: ${e.message}` : `“${name}” was refused (HTTP ${e.status}).`, name, e.status);
    }
    const url = new URL(String(ticket.uploadUrl), `${this.apiBase}/`).href;
    await uploadFile(url, ticket.uploadHeaders ?? { 'Content-Type': contentType }, file, { onProgress, signal, fileName: name });
    return { id: String(ticket.attachmentId), name, contentType, size: file.size };
  }

  agents() {
    return this.http('GET', '/agent/agents');
  }

  /** @param {string} [q] */
  canned(q) {
    return this.http('GET', `/agent/canned${q ? `?q=${encodeURIComponent(q)}` : ''}`);
  }

  /** @param {{ shortcut: string, title: string, text: string }} r @param {string} [id] */
  saveCanned(r, id) {
    return id ? this.http('PUT', `/agent/canned/${encodeURIComponent(id)}`, r) : this.http('POST', '/agent/canned', r);
  }

  /** @param {string} id */
  deleteCanned(id) {
    return this.http('DELETE', `/agent/canned/${encodeURIComponent(id)}`);
  }

  // --- WebSocket

  /** Connects, and keeps reconnecting until stop(). */
  connect() {
    if (!this._stopped) return;
    this._stopped = false;
    this._open();
  }

  stop() {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    clearInterval(this._pingTimer);
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000, 'signed out');
      } catch {
        /* closed */
      }
    }
    this._setState('closed');
  }

  /**
   * Writes a frame; false when the socket is not open.
   * @param {object} frame
   */
  frame(frame) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  /** @param {string} sessionId @param {boolean} isTyping */
  typing(sessionId, isTyping) {
    return this.frame({ action: 'typing', sessionId, isTyping });
  }

  /** @param {'online' | 'away'} status */
  status(status) {
    return this.frame({ action: 'status', status });
  }

  /** @param {string} state */
  _setState(state) {
    if (this.state === state && state !== 'reconnecting') return;
    this.state = state;
    this._emit('connection', { state, attempt: this._attempt });
  }

  _open() {
    if (this._stopped) return;
    this._setState(this._everOpened ? 'reconnecting' : 'connecting');
    const ws = new this._WebSocket(agentSocketUrl(this.apiBase, this.websocketUrl, this.token));
    this._ws = ws;
    ws.onopen = () => {
      const again = this._everOpened;
      this._everOpened = true;
      this._attempt = 0;
      clearInterval(this._pingTimer);
      this._pingTimer = setInterval(() => this.frame({ action: 'ping' }), this._pingMs);
      this._setState('open');
      if (again) this._emit('reconnected', {});
    };
    ws.onmessage = (e) => {
      let ev;
      try {
        ev = JSON.parse(e.data);
      } catch {
        return;
      }
      if (ev && typeof ev.event === 'string' && ev.event !== 'pong') this._emit(ev.event, ev);
    };
    ws.onerror = () => {};
    ws.onclose = () => {
      if (ws !== this._ws) return;
      this._ws = null;
      clearInterval(this._pingTimer);
      if (this._stopped) return;
      const delay = backoffDelay(this._attempt++, this._backoff);
      this._setState('reconnecting');
      this._retryTimer = setTimeout(() => this._open(), delay);
    };
  }
}
