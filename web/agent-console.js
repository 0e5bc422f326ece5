// The agent console: where a person takes a conversation over from the bot and hands it back.
//
// chat-local serves it at /agent (agent.html with this module); on AWS host agent.html and the
// scripts beside it as static files (S3 and CloudFront, or your own site) and give the API's
// URL in the sign-in form (remembered for the tab) or in the page:
//
//   <div data-agent-console data-api-base="https://api.example.com" data-websocket-url="wss://ws.example.com/prod"></div>
//   <script type="module" src="https://your-host/agent-console.js"></script>
//
// A host app that already has the agent's JWT hands it over instead of the sign-in form:
//
//   import { AgentConsole } from 'https://your-host/agent-console.js';
//   AgentConsole.mount(element, { apiBase, websocketUrl, token });
//
// What it does: sign-in with a pasted agent JWT (kept in sessionStorage: gone with the tab);
// the live inbox (tabs Waiting / Mine / All open, wait times, last message; `inbox` events update
// it, new waiting sessions are announced to screen readers once); a conversation with its
// history (paged, the bot's messages included) and the session's metadata; claim, release,
// close, transfer; the composer with canned replies (`/shortcut` opens a keyboard-navigable
// list; a dialog manages them); attachments both ways (shown as in the widget: images inline,
// other files as download links; the agent attaches files with a button or by pasting, each
// checked against the limits, uploaded with its progress, removable until sent); typing both
// ways; Edit (an inline editor: Enter saves, Escape cancels) and Delete on the agent's own
// messages within the edit window (`editWindowMs`, the server's CHAT_EDIT_WINDOW_S; the server
// decides, and a refusal shows under the message), "edited" marks and "Message deleted"
// tombstones, changes by others applied live (by id, the newer version kept) and those missed
// fetched with every catch-up, after a reconnect included (`?updatedAfter=`). Everything from
// the server is put in the page
// as text nodes (Markdown of bot and agent messages through chat-markdown.js, which builds DOM
// nodes too): never innerHTML. It lives in a shadow root, like the widget.

import {
  ATTACHMENT_DEFAULTS, DEFAULTS, attachmentCountProblem, attachmentName, attachmentProblem, createTypingDebouncer, formatBytes, mergeMessages,
  newClientMessageId, ChatApiError,
} from './chat-client.js';
import { renderAttachments, renderMarkdown } from './chat-markdown.js';
import { AgentClient } from './agent-client.js';
import {
  INBOX_VIEWS, agentClaims, canChangeOwn, cannedErrors, changeWindowEnds, customerLabel, formatDuration, inboxList, insertCanned,
  mergeSummaries, newestUpdate, preview, searchCanned, slashQuery, tokenProblem,
} from './agent-logic.js';

/**
 * @typedef {import('./agent-logic.js').Summary} Summary
 * @typedef {import('./agent-logic.js').InboxView} InboxView
 * @typedef {import('./agent-logic.js').CannedReply} CannedReply
 * @typedef {import('./chat-client.js').ChatMessage} ChatMessage
 * @typedef {import('./chat-client.js').ChatAttachment} ChatAttachment
 * @typedef {{ apiBase?: string, websocketUrl?: string, token?: string, storage?: Storage, title?: string,
 *   WebSocket?: typeof WebSocket, backoffBaseMs?: number, backoffMaxMs?: number,
 *   attachments?: Partial<import('./chat-client.js').AttachmentLimits>, editWindowMs?: number }} ConsoleOptions
 *   `attachments`: the server's limits, if not its defaults (checked before an upload);
 *   `editWindowMs`: the server's CHAT_EDIT_WINDOW_S in milliseconds, if not its default (5 minutes)
 * @typedef {HTMLLIElement & { _sig?: string, _editing?: boolean }} Row a message in the log
 * @typedef {{ key: number, name: string, state: 'uploading' | 'ready', attachment?: ChatAttachment,
 *   controller: AbortController, li: HTMLLIElement }} TrayEntry a file attached to the next reply
 */

const STORAGE_KEY = 'agent-console';

const CSS = `
:host { all: initial; display: block; height: 100%; }
* { box-sizing: border-box; }
.app { --accent: #2563eb; --bg: #fff; --fg: #111827; --muted: #6b7280; --line: #e5e7eb; --soft: #f3f4f6; --warn: #b45309;
  --danger: #b91c1c; --link: #1d4ed8; --code-bg: #0000000f;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg);
  height: 100%; display: flex; flex-direction: column; min-height: 0; }
@media (prefers-color-scheme: dark) {
  .app { --bg: #111827; --fg: #f9fafb; --muted: #9ca3af; --line: #374151; --soft: #1f2937; --link: #93c5fd; --code-bg: #ffffff1a; --warn: #fbbf24; --danger: #f87171; }
}
button, input, select, textarea { font: inherit; color: inherit; }
button:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible, a:focus-visible, [tabindex]:focus-visible {
  outline: 3px solid #f59e0b; outline-offset: 2px; }
[hidden] { display: none !important; }
.bar { display: flex; align-items: center; gap: 12px; padding: 10px 16px; background: var(--accent); color: #fff; flex-wrap: wrap; }
.bar h1 { font-size: 17px; margin: 0; flex: 1; }
.bar .me { font-weight: 600; }
.bar select, .bar button { background: #fff2; color: #fff; border: 1px solid #fff6; border-radius: 8px; padding: 4px 10px; cursor: pointer; }
.bar select option { color: #111827; }
.conn { font-size: 12px; display: flex; gap: 6px; align-items: center; }
.dot { width: 8px; height: 8px; border-radius: 50%; background: #fbbf24; display: inline-block; }
.conn[data-state="open"] .dot { background: #4ade80; }
.conn[data-state="reconnecting"] .dot, .conn[data-state="closed"] .dot { background: #f87171; }
.alert { margin: 8px 16px 0; padding: 8px 12px; border: 1px solid var(--danger); color: var(--danger); border-radius: 8px; display: flex; gap: 8px; align-items: center; }
.alert:empty { display: none; }
.alert button { margin-left: auto; border: 0; background: transparent; cursor: pointer; color: inherit; font-size: 18px; line-height: 1; }
.signin { max-width: 560px; margin: 40px auto; padding: 0 16px; }
.signin h2 { margin-top: 0; }
label { display: block; font-weight: 600; margin: 12px 0 4px; }
.hint { color: var(--muted); font-size: 12.5px; margin: 2px 0; }
.signin textarea, .signin input, .canned-form input, .canned-form textarea { width: 100%; border: 1px solid var(--line); border-radius: 8px; padding: 8px; background: var(--bg); }
.primary { background: var(--accent); color: #fff; border: 0; border-radius: 8px; padding: 8px 16px; font-weight: 600; cursor: pointer; }
.secondary { background: transparent; border: 1px solid var(--line); border-radius: 8px; padding: 6px 12px; cursor: pointer; }
.secondary:hover { border-color: var(--accent); }
.danger { color: var(--danger); }
button:disabled { opacity: .5; cursor: default; }
.form-error { color: var(--danger); font-weight: 600; min-height: 1.2em; }
.work { flex: 1; display: grid; grid-template-columns: minmax(260px, 340px) 1fr; min-height: 0; }
nav { border-right: 1px solid var(--line); display: flex; flex-direction: column; min-height: 0; }
nav h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); margin: 12px 14px 6px; }
[role=tablist] { display: flex; gap: 4px; padding: 0 10px 8px; border-bottom: 1px solid var(--line); }
[role=tab] { border: 0; background: transparent; padding: 6px 10px; border-radius: 8px; cursor: pointer; }
[role=tab][aria-selected=true] { background: var(--soft); font-weight: 700; box-shadow: inset 0 -2px 0 var(--accent); }
.count { display: inline-block; min-width: 20px; padding: 0 6px; margin-left: 4px; border-radius: 10px; background: var(--line); font-size: 12px; text-align: center; }
.inbox-panel { overflow-y: auto; flex: 1; }
.inbox { list-style: none; margin: 0; padding: 0; }
.item { display: block; width: 100%; text-align: left; border: 0; border-bottom: 1px solid var(--line); background: transparent; padding: 10px 14px; cursor: pointer; }
.item:hover { background: var(--soft); }
.item[aria-current=true] { background: var(--soft); box-shadow: inset 3px 0 0 var(--accent); }
.item .top { display: flex; gap: 8px; align-items: baseline; }
.item .who { font-weight: 600; flex: 1; min-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.item .wait { font-size: 12px; color: var(--warn); white-space: nowrap; }
.item .holder { font-size: 12px; color: var(--muted); white-space: nowrap; }
.item .last { font-size: 13px; color: var(--muted); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.empty { color: var(--muted); padding: 16px 14px; margin: 0; }
.more { margin: 10px 14px; }
main { display: flex; flex-direction: column; min-height: 0; min-width: 0; }
.placeholder { color: var(--muted); margin: auto; padding: 24px; text-align: center; }
.conv { display: flex; flex-direction: column; min-height: 0; flex: 1; }
.conv-head { display: flex; flex-wrap: wrap; gap: 8px 12px; align-items: center; padding: 10px 16px; border-bottom: 1px solid var(--line); }
.conv-head h2 { margin: 0; font-size: 16px; overflow-wrap: anywhere; }
.badge { font-size: 12px; border-radius: 999px; padding: 1px 8px; border: 1px solid var(--line); }
.badge[data-mode=waiting] { border-color: var(--warn); color: var(--warn); }
.badge[data-mode=agent] { border-color: var(--accent); color: var(--accent); }
.presence { font-size: 12px; color: var(--muted); }
.actions { display: flex; gap: 6px; margin-left: auto; flex-wrap: wrap; align-items: center; }
.actions select { border: 1px solid var(--line); border-radius: 8px; padding: 5px; background: var(--bg); }
details.meta { padding: 6px 16px; border-bottom: 1px solid var(--line); font-size: 13px; }
details.meta summary { cursor: pointer; color: var(--muted); }
details.meta dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 6px 0; }
details.meta dt { font-weight: 600; }
details.meta dd { margin: 0; overflow-wrap: anywhere; white-space: pre-wrap; }
.log { flex: 1; overflow-y: auto; list-style: none; margin: 0; padding: 14px 16px; display: flex; flex-direction: column; gap: 10px; }
.msg { max-width: 80%; display: flex; flex-direction: column; gap: 2px; min-width: 0; }
.msg .who { font-size: 11px; color: var(--muted); font-weight: 600; }
.bubble { padding: 8px 12px; border-radius: 12px; background: var(--soft); white-space: pre-wrap; overflow-wrap: anywhere; min-width: 0; }
.msg.user { align-self: flex-start; }
.msg.assistant .bubble { background: transparent; border: 1px solid var(--line); }
.msg.agent { align-self: flex-end; align-items: flex-end; }
.msg.agent .bubble { background: var(--accent); color: #fff; --link: #fff; }
.msg.system { align-self: center; text-align: center; }
.msg.system .bubble { background: transparent; color: var(--muted); font-style: italic; font-size: 12.5px; padding: 2px 8px; }
.msg .meta { display: flex; gap: 6px; align-items: baseline; font-size: 11px; color: var(--muted); }
.change { font: inherit; font-size: 11px; border: 0; background: transparent; color: var(--muted); padding: 1px 2px; cursor: pointer; text-decoration: underline; }
.change:hover, .change:focus-visible { color: var(--accent); }
.edited { font-style: italic; }
.msg.deleted .bubble { background: transparent; color: var(--muted); border: 1px dashed var(--line); font-style: italic; }
.edit-form { display: flex; flex-direction: column; gap: 4px; align-items: flex-end; width: min(420px, 100%); }
.edit-form textarea { width: 100%; min-height: 56px; resize: vertical; border: 1px solid var(--line); border-radius: 10px; padding: 6px 8px; background: var(--bg); }
.edit-form .row { margin-top: 0; }
.edit-note { font-size: 12px; color: var(--danger); }
.md { white-space: normal; }
.md p, .md ul, .md ol, .md pre, .md blockquote, .md table { margin: 0 0 .5em; }
.md > :last-child { margin-bottom: 0; }
.md h3, .md h4, .md h5, .md h6 { font-size: 1em; margin: 0 0 .4em; }
.md ul, .md ol { padding-left: 1.4em; }
.md code { font: .88em ui-monospace, SFMono-Regular, Menlo, monospace; background: var(--code-bg); border-radius: 4px; padding: 0 .3em; }
.md pre { background: #0f172a; color: #e2e8f0; border-radius: 8px; padding: 8px; overflow-x: auto; white-space: pre; }
.md a { color: var(--link); }
.md table { border-collapse: collapse; display: block; overflow-x: auto; }
.md th, .md td { border: 1px solid var(--line); padding: 2px 6px; }
.older-row { text-align: center; }
.typing { min-height: 22px; padding: 0 16px; color: var(--muted); font-size: 13px; }
.composer { position: relative; display: flex; gap: 8px; padding: 10px 16px; border-top: 1px solid var(--line); align-items: flex-end; }
.composer textarea { flex: 1; resize: vertical; min-height: 42px; max-height: 200px; border: 1px solid var(--line); border-radius: 10px; padding: 8px 10px; background: var(--bg); }
.composer textarea:disabled { background: var(--soft); }
.pop { position: absolute; left: 16px; right: 90px; bottom: 100%; margin: 0 0 4px; padding: 4px; list-style: none; background: var(--bg);
  border: 1px solid var(--line); border-radius: 10px; box-shadow: 0 8px 24px #0003; max-height: 260px; overflow-y: auto; }
.pop li { padding: 6px 10px; border-radius: 6px; cursor: pointer; }
.pop li[aria-selected=true] { background: var(--accent); color: #fff; }
.pop .sc { font-weight: 700; margin-right: 8px; }
.pop .tx { display: block; font-size: 12px; opacity: .8; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.attach { align-self: stretch; min-width: 42px; border: 1px solid var(--line); border-radius: 10px; background: var(--bg); cursor: pointer; font-size: 18px; }
.tray { list-style: none; margin: 0; padding: 8px 16px 0; display: flex; flex-wrap: wrap; gap: 8px; }
.tray:empty { display: none; }
.chip { display: flex; gap: 6px; align-items: center; border: 1px solid var(--line); border-radius: 10px; padding: 4px 4px 4px 8px; font-size: 12.5px; max-width: 100%; }
.chip .name { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; max-width: 220px; }
.chip .state { color: var(--muted); white-space: nowrap; }
.chip progress { width: 70px; height: 6px; }
.chip .remove { border: 0; background: transparent; cursor: pointer; font-size: 16px; width: 26px; height: 26px; border-radius: 6px; }
.text:empty { display: none; }
.attachments { list-style: none; margin: 6px 0 0; padding: 0; display: flex; flex-direction: column; gap: 6px; white-space: normal; }
.bubble > .attachments:first-child { margin-top: 0; }
.attachment img { display: block; max-width: 100%; max-height: 240px; border-radius: 8px; }
.attachment a { color: inherit; }
.attachment.file a, .attachment .file-name-size { display: inline-flex; gap: 6px; align-items: baseline; padding: 5px 8px; border-radius: 8px;
  background: #0000000d; text-decoration: none; overflow-wrap: anywhere; }
.msg.agent .attachment.file a { background: #ffffff2e; }
.attachment .size { opacity: .8; font-size: 12px; white-space: nowrap; }
.attachment .icon { font-size: 9.5px; font-weight: 700; border: 1.5px solid currentColor; border-radius: 4px; padding: 1px 3px; opacity: .85; align-self: center; }
.hold-hint { margin: 0; padding: 0 16px 8px; color: var(--muted); font-size: 12.5px; }
dialog { border: 1px solid var(--line); border-radius: 12px; padding: 0; width: min(640px, 94vw); color: var(--fg); background: var(--bg); }
dialog::backdrop { background: #0006; }
.dlg { padding: 16px 18px; }
.dlg h2 { margin: 0 0 8px; font-size: 17px; }
.canned-list { list-style: none; padding: 0; margin: 0 0 12px; max-height: 240px; overflow-y: auto; border: 1px solid var(--line); border-radius: 8px; }
.canned-list li { display: flex; gap: 8px; align-items: center; padding: 6px 10px; border-bottom: 1px solid var(--line); }
.canned-list li:last-child { border-bottom: 0; }
.canned-list .what { flex: 1; min-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.row { display: flex; gap: 8px; justify-content: flex-end; margin-top: 12px; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
@media (max-width: 760px) {
  .work { grid-template-columns: 1fr; grid-template-rows: minmax(160px, 40%) 1fr; }
  nav { border-right: 0; border-bottom: 1px solid var(--line); }
}
`;

/**
 * An element with attributes (`class`, `text`; true: present, false/null: absent) and children.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, any>} [attrs]
 * @param {...(Node | string | null | undefined)} children
 * @returns {HTMLElementTagNameMap[K] & { _sig?: string }}
 */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  e.append(...children.filter((c) => c != null));
  return e;
}

/** @param {string | undefined} t */
const clock = (t) => {
  const d = new Date(t ?? '');
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
};

/**
 * The sessionStorage of the page, or a stand-in when it is not available.
 * @returns {Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>}
 */
function defaultStorage() {
  try {
    const s = globalThis.sessionStorage;
    s.getItem(STORAGE_KEY);
    return s;
  } catch {
    const m = new Map();
    return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, v), removeItem: (k) => m.delete(k) };
  }
}

/**
 * Mounts the console in `container`; returns `{ element, destroy, signOut, state }`.
 * @param {Element} container
 * @param {ConsoleOptions} [options]
 */
export function mountAgentConsole(container, options = {}) {
  const storage = options.storage ?? defaultStorage();
  const saved = (() => {
    try {
      return JSON.parse(storage.getItem(STORAGE_KEY) || 'null') ?? {};
    } catch {
      return {};
    }
  })();
  const defaultBase = options.apiBase ?? saved.apiBase ?? globalThis.location?.origin ?? '';

  const host = el('div', { 'data-agent-console-root': '' });
  host.style.height = '100%';
  const shadow = host.attachShadow({ mode: 'open' });

  // --- the frame: header, alert, sign-in, workspace, announcer, dialog
  const me = el('span', { class: 'me' });
  const statusSel = el('select', { 'aria-label': 'Your status' }, el('option', { value: 'online', text: 'Online' }), el('option', { value: 'away', text: 'Away' }));
  const connText = el('span', { text: 'Offline' });
  const conn = el('span', { class: 'conn', role: 'status', 'data-state': 'idle' }, el('span', { class: 'dot', 'aria-hidden': 'true' }), connText);
  const cannedBtn = el('button', { type: 'button', text: 'Canned replies', 'aria-haspopup': 'dialog' });
  const signOutBtn = el('button', { type: 'button', text: 'Sign out' });
  const signedInBits = el('span', { class: 'conn', hidden: true }, me, statusSel, conn, cannedBtn, signOutBtn);
  const header = el('header', { class: 'bar' }, el('h1', { text: options.title ?? 'Agent console' }), signedInBits);

  const alertText = el('span');
  const alertClose = el('button', { type: 'button', 'aria-label': 'Dismiss', text: '×' });
  const alertBox = el('div', { class: 'alert', role: 'alert', hidden: true }, alertText, alertClose);

  const tokenInput = el('textarea', { id: 'token', rows: '4', spellcheck: 'false', autocomplete: 'off', 'aria-describedby': 'token-hint' });
  const baseInput = el('input', { id: 'api-base', type: 'url', value: defaultBase, 'aria-describedby': 'base-hint' });
  const wsInput = el('input', { id: 'ws-url', type: 'url', value: options.websocketUrl ?? saved.websocketUrl ?? '', 'aria-describedby': 'ws-hint' });
  const signInError = el('p', { class: 'form-error', role: 'alert' });
  const signInBtn = el('button', { class: 'primary', type: 'submit', text: 'Sign in' });
  const signInForm = el('form', { 'aria-labelledby': 'signin-title' },
    el('label', { for: 'token', text: 'Agent token' }),
    el('p', { class: 'hint', id: 'token-hint', text: 'Paste the JWT your team gave you (role "agent"). On chat-local: chat-local agent-token --name "Your name". It is kept in this tab only.' }),
    tokenInput,
    el('label', { for: 'api-base', text: 'Chat API address' }),
    el('p', { class: 'hint', id: 'base-hint', text: 'The HTTP API of the chat backend, e.g. https://abc123.execute-api.eu-west-1.amazonaws.com.' }),
    baseInput,
    el('label', { for: 'ws-url', text: 'WebSocket address (optional)' }),
    el('p', { class: 'hint', id: 'ws-hint', text: 'Empty: the API address with /ws (chat-local). On AWS: the WebSocket API URL with its stage.' }),
    wsInput,
    signInError,
    signInBtn);
  const signIn = el('main', { class: 'signin', hidden: true }, el('h2', { id: 'signin-title', text: 'Sign in' }), signInForm);

  /** @type {Record<string, HTMLButtonElement>} */
  const tabs = {};
  /** @type {Record<string, HTMLSpanElement>} */
  const counts = {};
  const tablist = el('div', { role: 'tablist', 'aria-label': 'Inbox views' });
  for (const [view, label] of INBOX_VIEWS) {
    counts[view] = el('span', { class: 'count', text: '0' });
    tabs[view] = el('button', { type: 'button', role: 'tab', id: `tab-${view}`, 'aria-controls': 'inbox-panel', 'aria-selected': 'false', tabindex: '-1', 'data-view': view }, label, counts[view]);
    tablist.append(tabs[view]);
  }
  const inboxUl = el('ul', { class: 'inbox', 'aria-label': 'Conversations' });
  const inboxEmpty = el('p', { class: 'empty', text: 'No conversations here.' });
  const moreBtn = el('button', { class: 'secondary more', type: 'button', text: 'Load more', hidden: true });
  const inboxPanel = el('div', { class: 'inbox-panel', id: 'inbox-panel', role: 'tabpanel', 'aria-labelledby': 'tab-waiting' }, inboxUl, inboxEmpty, moreBtn);
  const nav = el('nav', { 'aria-label': 'Inbox' }, el('h2', { text: 'Inbox' }), tablist, inboxPanel);

  const convTitle = el('h2', { id: 'conv-title', tabindex: '-1' });
  const modeBadge = el('span', { class: 'badge' });
  const presence = el('span', { class: 'presence' });
  const claimBtn = el('button', { class: 'primary', type: 'button', text: 'Claim' });
  const releaseBtn = el('button', { class: 'secondary', type: 'button', text: 'Release to bot' });
  const closeBtn = el('button', { class: 'secondary danger', type: 'button', text: 'Close' });
  const transferSel = el('select', { 'aria-label': 'Transfer to' });
  const transferBtn = el('button', { class: 'secondary', type: 'button', text: 'Transfer' });
  const transferBox = el('span', { class: 'transfer' }, transferSel, transferBtn);
  const actions = el('div', { class: 'actions', role: 'group', 'aria-label': 'Conversation actions' }, claimBtn, releaseBtn, transferBox, closeBtn);
  const metaDl = el('dl');
  const meta = el('details', { class: 'meta' }, el('summary', { text: 'Session details' }), metaDl);
  const olderBtn = el('button', { class: 'secondary', type: 'button', text: 'Show earlier messages' });
  const olderRow = el('li', { class: 'older-row', hidden: true }, olderBtn);
  const log = el('ol', { class: 'log', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': 'Conversation', tabindex: '0' }, olderRow);
  const typingLine = el('div', { class: 'typing', 'aria-live': 'polite' });
  const pop = el('ul', { class: 'pop', id: 'canned-pop', role: 'listbox', 'aria-label': 'Canned replies', hidden: true });
  const composer = el('textarea', {
    rows: '2', 'aria-label': 'Reply', placeholder: 'Reply… (type / for canned replies)', role: 'combobox', 'aria-autocomplete': 'list',
    'aria-controls': 'canned-pop', 'aria-expanded': 'false', maxlength: '4000', autocomplete: 'off',
  });
  const sendBtn = el('button', { class: 'primary', type: 'submit', text: 'Send' });
  const limits = { ...ATTACHMENT_DEFAULTS, ...options.attachments };
  const attachBtn = el('button', { class: 'attach', type: 'button', 'aria-label': 'Attach files', title: 'Attach files', text: '+ File' });
  const fileInput = el('input', { type: 'file', multiple: true, hidden: true, tabindex: '-1', 'aria-hidden': 'true', accept: limits.types.join(',') });
  const tray = el('ul', { class: 'tray', 'aria-label': 'Files to send' });
  const composerForm = el('form', { class: 'composer', 'aria-label': 'Reply to the customer' }, pop, attachBtn, fileInput, composer, sendBtn);
  const holdHint = el('p', { class: 'hold-hint', text: 'Claim this conversation to reply.' });
  const conv = el('div', { class: 'conv', hidden: true },
    el('div', { class: 'conv-head' }, convTitle, modeBadge, presence, actions), meta, log, typingLine, tray, composerForm, holdHint);
  const placeholder = el('p', { class: 'placeholder', text: 'Pick a conversation from the inbox.' });
  const main = el('main', { 'aria-labelledby': 'conv-title' }, placeholder, conv);
  const work = el('div', { class: 'work', hidden: true }, nav, main);
  const announcer = el('div', { class: 'sr', 'aria-live': 'polite', 'data-announcer': '' });

  // The canned replies dialog: the list, and a form to create or edit one.
  const cannedList = el('ul', { class: 'canned-list', 'aria-label': 'Saved replies' });
  const fShortcut = el('input', { id: 'c-shortcut', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'c-shortcut-err' });
  const fTitle = el('input', { id: 'c-title', autocomplete: 'off', 'aria-describedby': 'c-title-err' });
  const fText = el('textarea', { id: 'c-text', rows: '4', 'aria-describedby': 'c-text-err' });
  const errShortcut = el('p', { class: 'form-error', id: 'c-shortcut-err' });
  const errTitle = el('p', { class: 'form-error', id: 'c-title-err' });
  const errText = el('p', { class: 'form-error', id: 'c-text-err' });
  const formError = el('p', { class: 'form-error', role: 'alert' });
  const formTitle = el('h3', { text: 'New reply' });
  const saveBtn = el('button', { class: 'primary', type: 'submit', text: 'Save' });
  const cancelEditBtn = el('button', { class: 'secondary', type: 'button', text: 'Cancel edit', hidden: true });
  const doneBtn = el('button', { class: 'secondary', type: 'button', text: 'Done' });
  const cannedForm = el('form', { class: 'canned-form', 'aria-labelledby': 'c-form-title' },
    formTitle,
    el('label', { for: 'c-shortcut', text: 'Shortcut (typed after /)' }), fShortcut, errShortcut,
    el('label', { for: 'c-title', text: 'Title' }), fTitle, errTitle,
    el('label', { for: 'c-text', text: 'Text' }), fText, errText,
    formError,
    el('div', { class: 'row' }, cancelEditBtn, saveBtn, doneBtn));
  formTitle.id = 'c-form-title';
  const dialog = el('dialog', { 'aria-labelledby': 'canned-title' }, el('div', { class: 'dlg' }, el('h2', { id: 'canned-title', text: 'Canned replies' }), cannedList, cannedForm));

  const app = el('div', { class: 'app' }, header, alertBox, signIn, work, announcer, dialog);
  shadow.append(el('style', { text: CSS }), app);
  container.append(host);

  // --- state
  /** @type {AgentClient | null} */
  let client = null;
  let agent = { id: '', name: '' };
  /** @type {ReadonlyMap<string, Summary>} */
  let summaries = new Map();
  /** @type {InboxView} */
  let view = 'waiting';
  /** @type {Record<string, string | undefined>} */
  const cursors = {};
  /** @type {{ id: string, messages: readonly ChatMessage[], hasMore: boolean } | null} */
  let current = null;
  /** @type {{ id: string, name: string, status?: string }[]} */
  let agents = [];
  /** @type {CannedReply[]} */
  let canned = [];
  /** @type {{ query: string, start: number, end: number } | null} */
  let token = null;
  /** @type {CannedReply[]} */
  let matches = [];
  let active = 0;
  /** @type {string | null} */
  let editing = null;
  /** @type {Map<string, HTMLLIElement>} */
  const items = new Map();
  /** @type {Map<string, Row>} */
  const rows = new Map();
  const editWindowMs = options.editWindowMs ?? DEFAULTS.editWindowMs;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let windowTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let typingTimer;
  /** @type {(() => void)[]} */
  let offs = [];
  let destroyed = false;
  const typing = createTypingDebouncer((isTyping) => {
    if (current) client?.typing(current.id, isTyping);
  });
  const tick = setInterval(() => renderInbox(), 15_000);

  // --- helpers
  /** @param {string} text */
  function showError(text) {
    alertText.textContent = text;
    alertBox.hidden = false;
  }
  function clearError() {
    alertText.textContent = '';
    alertBox.hidden = true;
  }
  /** @param {string} text */
  function announce(text) {
    announcer.textContent = text;
  }
  /** @param {unknown} e @param {string} [conflict] what a 409 means here */
  function explain(e, conflict) {
    if (e instanceof ChatApiError) {
      if (e.status === 409 && conflict) return conflict;
      if (e.status === 401) return 'The server refused your token (expired or not valid). Sign in again.';
      if (e.status === 403) return 'This token is not allowed to use the agent console.';
      return e.message || `The server answered ${e.status}.`;
    }
    return 'Could not reach the chat server. Check your connection.';
  }
  const held = (/** @type {Summary | undefined} */ s) => !!s && s.mode === 'agent' && s.agent?.id === agent.id;
  const summaryOf = (/** @type {string} */ id) => summaries.get(id);

  function save() {
    try {
      storage.setItem(STORAGE_KEY, JSON.stringify({ token: client?.token, apiBase: client?.apiBase, websocketUrl: client?.websocketUrl || undefined }));
    } catch {
      /* storage full or disabled: signed in for this page only */
    }
  }

  // --- sign-in
  /** @param {string} jwt @param {string} apiBase @param {string} [websocketUrl] */
  async function signInWith(jwt, apiBase, websocketUrl) {
    const problem = tokenProblem(jwt, Date.now());
    if (problem) throw new Error(problem);
    const c = new AgentClient({ apiBase, token: jwt.trim(), websocketUrl: websocketUrl || undefined, WebSocket: options.WebSocket, backoffBaseMs: options.backoffBaseMs, backoffMaxMs: options.backoffMaxMs });
    try {
      const a = await c.agents();
      agents = Array.isArray(a?.agents) ? a.agents : [];
    } catch (e) {
      throw new Error(explain(e));
    }
    if (destroyed) return;
    const claims = /** @type {NonNullable<ReturnType<typeof agentClaims>>} */ (agentClaims(jwt));
    agent = { id: claims.sub, name: claims.name || claims.sub };
    client = c;
    save();
    me.textContent = agent.name;
    signIn.hidden = true;
    work.hidden = false;
    signedInBits.hidden = false;
    offs = [
      c.on('connection', ({ state }) => {
        conn.dataset.state = state;
        connText.textContent = state === 'open' ? 'Live' : state === 'reconnecting' ? 'Reconnecting…' : state === 'connecting' ? 'Connecting…' : 'Offline';
        if (state === 'open') c.status(/** @type {'online' | 'away'} */ (statusSel.value));
      }),
      c.on('reconnected', () => {
        reloadInbox();
        if (current) catchUp(current.id);
      }),
      c.on('inbox', (ev) => onSummaries([ev.session], true)),
      c.on('message', (ev) => onMessage(ev.message)),
      c.on('typing', onTyping),
      c.on('presence', onPresence),
      c.on('agents', (ev) => {
        if (Array.isArray(ev.agents)) agents = ev.agents;
        renderConversationHead();
      }),
      c.on('error', (ev) => showError(ev.message || ev.code || 'The server refused that.')),
    ];
    selectView(view, false);
    await reloadInbox();
    loadCanned();
    c.connect();
    tabs[view].focus();
  }

  function signOut() {
    typing.stop();
    for (const off of offs) off();
    offs = [];
    client?.stop();
    client = null;
    storage.removeItem(STORAGE_KEY);
    summaries = new Map();
    current = null;
    for (const li of items.values()) li.remove();
    items.clear();
    clearConversation();
    work.hidden = true;
    signedInBits.hidden = true;
    signIn.hidden = false;
    tokenInput.value = '';
    tokenInput.focus();
  }

  signInForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    signInError.textContent = '';
    signInBtn.disabled = true;
    try {
      await signInWith(tokenInput.value, baseInput.value.trim() || defaultBase, wsInput.value.trim());
    } catch (err) {
      signInError.textContent = /** @type {Error} */ (err).message;
      tokenInput.focus();
    } finally {
      signInBtn.disabled = false;
    }
  });
  signOutBtn.addEventListener('click', signOut);
  statusSel.addEventListener('change', () => client?.status(/** @type {'online' | 'away'} */ (statusSel.value)));
  alertClose.addEventListener('click', clearError);

  // --- inbox
  async function reloadInbox() {
    const c = client;
    if (!c) return;
    try {
      const pages = await Promise.all(INBOX_VIEWS.map(([v]) => c.inbox(v)));
      if (c !== client) return;
      INBOX_VIEWS.forEach(([v], i) => {
        cursors[v] = pages[i].nextCursor;
      });
      onSummaries(pages.flatMap((p) => p.sessions ?? []), false);
    } catch (e) {
      showError(`Could not load the inbox: ${explain(e)}`);
    }
  }

  /** @param {Summary[]} list @param {boolean} live from an event (announce new waiting ones) */
  function onSummaries(list, live) {
    const r = mergeSummaries(summaries, list);
    if (!r.changed) return;
    summaries = r.map;
    if (live && r.entered.length) {
      const s = r.entered[r.entered.length - 1];
      announce(`New conversation waiting: ${customerLabel(s)}. ${preview(s.lastMessage)}`);
    }
    renderInbox();
    if (current && list.some((s) => s?.sessionId === current?.id)) {
      renderConversationHead();
      const s = summaryOf(current.id);
      const top = current.messages.at(-1)?.seq ?? 0;
      if (s?.lastMessage?.seq != null && s.lastMessage.seq > top) catchUp(current.id);
    }
  }

  function renderInbox() {
    if (!client) return;
    for (const [v] of INBOX_VIEWS) counts[v].textContent = String(inboxList(summaries, /** @type {InboxView} */ (v), agent.id).length);
    const list = inboxList(summaries, view, agent.id);
    const now = Date.now();
    const keep = new Set();
    /** @type {Element | null} */
    let prev = null;
    for (const s of list) {
      keep.add(s.sessionId);
      let li = items.get(s.sessionId);
      if (!li) {
        li = el('li');
        items.set(s.sessionId, li);
      }
      const who = customerLabel(s);
      const since = s.mode === 'waiting' ? Date.parse(s.waitingSince ?? s.updatedAt) : NaN;
      const btn = el('button', { class: 'item', type: 'button', 'data-session': s.sessionId, 'data-mode': s.mode, 'aria-current': current?.id === s.sessionId ? 'true' : false },
        el('span', { class: 'top' },
          el('span', { class: 'who', text: who }),
          s.mode === 'waiting' ? el('span', { class: 'wait', text: Number.isFinite(since) ? `waiting ${formatDuration(now - since)}` : 'waiting' })
            : el('span', { class: 'holder', text: held(s) ? 'you' : s.agent?.name ?? '' })),
        el('span', { class: 'last', text: preview(s.lastMessage) }));
      btn.addEventListener('click', () => openSession(s.sessionId));
      const focused = shadow.activeElement?.closest?.('li') === li;
      li.replaceChildren(btn);
      if (focused) btn.focus();
      if (prev ? prev.nextSibling !== li : inboxUl.firstChild !== li) {
        if (prev) prev.after(li);
        else inboxUl.prepend(li);
      }
      prev = li;
    }
    for (const [id, li] of items) {
      if (!keep.has(id)) {
        li.remove();
        items.delete(id);
      }
    }
    inboxEmpty.hidden = list.length > 0;
    moreBtn.hidden = !cursors[view];
  }

  /** @param {InboxView} v @param {boolean} focus */
  function selectView(v, focus) {
    view = v;
    for (const [k, b] of Object.entries(tabs)) {
      b.setAttribute('aria-selected', String(k === v));
      b.tabIndex = k === v ? 0 : -1;
    }
    inboxPanel.setAttribute('aria-labelledby', `tab-${v}`);
    if (focus) tabs[v].focus();
    renderInbox();
  }

  tablist.addEventListener('click', (e) => {
    const b = /** @type {HTMLElement} */ (e.target).closest?.('[role=tab]');
    if (b instanceof HTMLElement && b.dataset.view) selectView(/** @type {InboxView} */ (b.dataset.view), true);
  });
  tablist.addEventListener('keydown', (e) => {
    const order = INBOX_VIEWS.map(([v]) => v);
    const i = order.indexOf(view);
    const to = e.key === 'ArrowRight' ? order[(i + 1) % order.length] : e.key === 'ArrowLeft' ? order[(i + order.length - 1) % order.length]
      : e.key === 'Home' ? order[0] : e.key === 'End' ? order[order.length - 1] : null;
    if (!to) return;
    e.preventDefault();
    selectView(/** @type {InboxView} */ (to), true);
  });
  inboxUl.addEventListener('keydown', (e) => {
    if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
    const buttons = [...inboxUl.querySelectorAll('button.item')];
    const i = buttons.indexOf(/** @type {Element} */ (shadow.activeElement));
    if (i < 0) return;
    e.preventDefault();
    const next = /** @type {HTMLElement | undefined} */ (buttons[e.key === 'ArrowDown' ? Math.min(buttons.length - 1, i + 1) : Math.max(0, i - 1)]);
    next?.focus();
  });
  moreBtn.addEventListener('click', async () => {
    const c = client;
    const cur = cursors[view];
    if (!c || !cur) return;
    moreBtn.disabled = true;
    try {
      const page = await c.inbox(view, cur);
      cursors[view] = page.nextCursor;
      onSummaries(page.sessions ?? [], false);
      renderInbox();
    } catch (e) {
      showError(`Could not load more: ${explain(e)}`);
    } finally {
      moreBtn.disabled = false;
    }
  });

  // --- a conversation
  /** @param {string} id */
  async function openSession(id) {
    const c = client;
    if (!c) return;
    if (current?.id !== id) {
      typing.stop();
      clearConversation();
      current = { id, messages: [], hasMore: false };
    }
    placeholder.hidden = true;
    conv.hidden = false;
    renderInbox();
    renderConversationHead();
    convTitle.focus();
    // Who can take it over (for transfer) may have changed since sign-in.
    c.agents().then((a) => {
      if (Array.isArray(a?.agents)) agents = a.agents;
      renderConversationHead();
    }).catch(() => {});
    // The history is put in place without announcing it; new messages are announced after.
    log.setAttribute('aria-live', 'off');
    try {
      const r = await c.session(id);
      if (current?.id !== id) return;
      if (r.session) onSummaries([r.session], false);
      current.hasMore = !!r.hasMore;
      mergeIntoCurrent(r.messages ?? []);
    } catch (e) {
      showError(`Could not open the conversation: ${explain(e)}`);
    } finally {
      if (current?.id === id) setTimeout(() => log.setAttribute('aria-live', 'polite'), 0);
    }
    renderConversationHead();
    log.scrollTop = log.scrollHeight;
  }

  function clearConversation() {
    clearTimeout(windowTimer);
    clearTray();
    for (const li of rows.values()) li.remove();
    rows.clear();
    typingLine.textContent = '';
    composer.value = '';
    closePop();
    conv.hidden = true;
    placeholder.hidden = false;
  }

  /**
   * Loads the messages after the newest held, then the edits and deletions made since the
   * newest change held (`?updatedAfter=`): those pushed while the socket was down, and those
   * never pushed here (only the agent holding a session gets its `message` events).
   * @param {string} id
   */
  async function catchUp(id) {
    const c = client;
    if (!c || current?.id !== id) return;
    // Taken before the pages below: a message they bring may be newer than a change missed.
    let since = newestUpdate(current.messages);
    try {
      for (let guard = 0; guard < 20; guard++) {
        const after = current.messages.filter((m) => m.seq != null).at(-1)?.seq ?? 0;
        const page = await c.messages(id, { after, limit: 100 });
        if (current?.id !== id) return;
        mergeIntoCurrent(page.messages ?? []);
        if (!page.hasMore || !page.messages?.length) break;
      }
      for (let guard = 0; since > 0 && guard < 20; guard++) {
        const page = await c.messages(id, { updatedAfter: since, limit: 100 });
        if (current?.id !== id) return;
        mergeIntoCurrent(page.messages ?? []);
        const last = Date.parse(page.messages?.at(-1)?.updatedAt ?? '');
        if (!page.hasMore || !Number.isFinite(last) || last <= since) break;
        since = last;
      }
    } catch (e) {
      showError(`Could not load new messages: ${explain(e)}`);
    }
  }

  /** @param {ChatMessage} m */
  function onMessage(m) {
    if (!m || !current || m.sessionId !== current.id) return;
    mergeIntoCurrent([m]);
    if (m.role === 'user') typingLine.textContent = '';
  }

  /** @param {any} ev */
  function onTyping(ev) {
    if (!current || ev.sessionId !== current.id || ev.role !== 'user') return;
    clearTimeout(typingTimer);
    typingLine.textContent = ev.isTyping ? 'The customer is typing…' : '';
    if (ev.isTyping) typingTimer = setTimeout(() => { typingLine.textContent = ''; }, 30_000);
  }

  /** @param {any} ev */
  function onPresence(ev) {
    if (!Array.isArray(ev.participants)) return;
    const user = ev.participants.find((/** @type {any} */ p) => p?.role === 'user');
    const s = ev.sessionId ? summaryOf(ev.sessionId) : undefined;
    if (s && user) {
      summaries = new Map(summaries).set(s.sessionId, { ...s, userOnline: !!user.online });
      if (current?.id === s.sessionId) renderConversationHead();
    }
  }

  /** @param {readonly ChatMessage[]} incoming */
  function mergeIntoCurrent(incoming) {
    if (!current) return;
    const { list, changes } = mergeMessages(current.messages, incoming);
    current.messages = list;
    if (changes.length) renderLog();
  }

  function renderLog() {
    if (!current) return;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    const now = Date.now();
    /** @type {Element} */
    let prev = olderRow;
    const keep = new Set();
    for (const m of current.messages) {
      keep.add(m.id);
      let li = rows.get(m.id);
      if (!li) {
        li = el('li');
        rows.set(m.id, li);
      }
      const files = (m.attachments ?? []).map((a) => [a.id, a.name, a.contentType, a.size, !!a.url]);
      const changeable = canChangeOwn(m, agent.name, now, editWindowMs);
      const sig = JSON.stringify([m.seq, m.role, m.name, m.type, m.content, m.createdAt, files, m.editedAt, m.deleted, changeable]);
      // A message being edited keeps its editor until saved or cancelled.
      if (li._sig !== sig && !li._editing) {
        li._sig = sig;
        renderRow(li, m, changeable);
      }
      if (prev.nextSibling !== li) prev.after(li);
      prev = li;
    }
    for (const [id, li] of rows) {
      if (!keep.has(id)) {
        li.remove();
        rows.delete(id);
      }
    }
    olderRow.hidden = !current.hasMore;
    if (atBottom) log.scrollTop = log.scrollHeight;
    // Edit and Delete go away when the window closes, not at the next change.
    clearTimeout(windowTimer);
    const ends = changeWindowEnds(current.messages, agent.name, now, editWindowMs);
    if (ends !== null) windowTimer = setTimeout(renderLog, ends + 50);
  }

  /** @param {Row} li @param {ChatMessage} m @param {boolean} changeable */
  function renderRow(li, m, changeable) {
    li.className = `msg ${m.role}${m.deleted ? ' deleted' : ''}`;
    li.dataset.id = m.id;
    li.dataset.role = m.role;
    li.dataset.seq = String(m.seq ?? '');
    const who = m.role === 'user' ? 'Customer' : m.role === 'assistant' ? 'Bot' : m.role === 'agent' ? (m.name || 'Agent') : null;
    const bubble = el('div', { class: 'bubble' });
    if (m.deleted) {
      bubble.append(el('div', { class: 'text', text: 'Message deleted' }));
    } else if (m.role === 'assistant' || m.role === 'agent') {
      const text = el('div', { class: 'text md' });
      text.append(renderMarkdown(m.content ?? '', { headingOffset: 2 }));
      bubble.append(text);
    } else {
      bubble.append(el('div', { class: 'text', text: m.content ?? '' }));
    }
    const files = renderAttachments(m.attachments, { baseUrl: client?.apiBase });
    if (files) bubble.append(files);
    const meta = el('div', { class: 'meta' }, el('span', { class: 'time', text: clock(m.createdAt) }));
    if (m.editedAt && !m.deleted) meta.append(el('span', { class: 'edited', text: 'edited' }));
    if (changeable) {
      const edit = el('button', { class: 'change edit', type: 'button', text: 'Edit', 'aria-label': `Edit your message: ${m.content}` });
      edit.addEventListener('click', () => openEditor(li, m));
      const del = el('button', { class: 'change delete', type: 'button', text: 'Delete', 'aria-label': `Delete your message: ${m.content}` });
      del.addEventListener('click', () => {
        const c = client;
        const sid = current?.id;
        if (c && sid) changeMessage(li, () => c.deleteMessage(sid, m.id));
      });
      meta.append(edit, del);
    }
    li.replaceChildren(
      who ? el('span', { class: 'who', text: who }) : el('span', { class: 'sr', text: 'Notice:' }),
      bubble,
      meta);
  }

  /**
   * Runs an edit or a deletion; a refusal (past the edit window, another agent's message)
   * shows under the message.
   * @param {Row} li
   * @param {() => Promise<{ message?: ChatMessage }>} change
   */
  async function changeMessage(li, change) {
    const id = current?.id;
    /** @type {string | null} */
    let why = null;
    try {
      const r = await change();
      if (r?.message && current?.id === id) mergeIntoCurrent([r.message]);
    } catch (e) {
      why = e instanceof ChatApiError && e.status === 409 ? 'This message can no longer be changed.'
        : e instanceof ChatApiError && e.status === 403 ? 'Only your own messages can be changed.'
          : `Could not change the message. ${explain(e)}`;
    }
    if (current?.id !== id) return;
    li._editing = false;
    li._sig = '';
    renderLog();
    if (why) li.append(el('div', { class: 'edit-note', role: 'status', text: why }));
    else if (!composer.disabled) composer.focus();
  }

  /**
   * Replaces a message's text with an editor (Enter saves, Shift+Enter a new line, Escape
   * cancels).
   * @param {Row} li
   * @param {ChatMessage} m
   */
  function openEditor(li, m) {
    li._editing = true;
    const area = el('textarea', { class: 'edit-input', 'aria-label': 'Edit your message', maxlength: '4000' });
    area.value = m.content;
    const save = el('button', { class: 'primary change-save', type: 'button', text: 'Save' });
    const cancel = el('button', { class: 'secondary change-cancel', type: 'button', text: 'Cancel' });
    const stop = () => {
      li._editing = false;
      li._sig = '';
      renderLog();
      if (!composer.disabled) composer.focus();
      else /** @type {HTMLElement | null} */ (li.querySelector('button.edit'))?.focus();
    };
    const commit = () => {
      const c = client;
      const sid = current?.id;
      const text = area.value.trim();
      if (!c || !sid || !text || text === m.content) return stop();
      save.disabled = true;
      changeMessage(li, () => c.editMessage(sid, m.id, text));
    };
    save.addEventListener('click', commit);
    cancel.addEventListener('click', stop);
    area.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        commit();
      } else if (e.key === 'Escape') {
        e.preventDefault();
        stop();
      }
    });
    li.querySelector('.bubble')?.replaceWith(el('div', { class: 'edit-form' }, area, el('div', { class: 'row' }, save, cancel)));
    li.querySelector('.meta')?.remove();
    area.focus();
    area.select();
  }

  function renderConversationHead() {
    if (!current) return;
    const s = summaryOf(current.id);
    convTitle.textContent = s ? customerLabel(s) : 'Conversation';
    const mode = s?.mode ?? 'bot';
    modeBadge.dataset.mode = mode;
    modeBadge.textContent = mode === 'waiting' ? 'Waiting for a person' : mode === 'agent' ? (held(s) ? 'With you' : `With ${s?.agent?.name ?? 'an agent'}`) : mode === 'closed' ? 'Closed' : 'Bot';
    presence.textContent = s?.userOnline === undefined ? '' : s.userOnline ? 'Customer online' : 'Customer offline';
    const mine = held(s);
    const other = mode === 'agent' && !mine;
    // Claim stays usable when another agent holds it: the server refuses, and says so (the
    // same happens when two agents click at once).
    claimBtn.hidden = mine || mode === 'closed';
    releaseBtn.hidden = !(mine || mode === 'waiting');
    closeBtn.hidden = mode === 'closed';
    closeBtn.disabled = other;
    const others = agents.filter((a) => a.id !== agent.id);
    const chosen = transferSel.value;
    transferSel.replaceChildren(...others.map((a) => el('option', { value: a.id, text: `${a.name}${a.status && a.status !== 'online' ? ` (${a.status})` : ''}` })));
    if (others.some((a) => a.id === chosen)) transferSel.value = chosen;
    transferBox.hidden = !mine || others.length === 0;
    composer.disabled = !mine;
    attachBtn.disabled = !mine;
    sendBtn.disabled = !mine || [...attached.values()].some((e) => e.state === 'uploading');
    holdHint.hidden = mine;
    holdHint.textContent = mode === 'closed' ? 'This conversation is closed.' : other ? `${s?.agent?.name ?? 'Another agent'} holds this conversation.` : 'Claim this conversation to reply.';
    // Metadata and facts, as text.
    /** @type {[string, string][]} */
    const facts = [['Session', current.id]];
    if (s?.userId) facts.push(['User', s.userId]);
    if (s?.createdAt) facts.push(['Started', new Date(s.createdAt).toLocaleString()]);
    for (const [k, v] of Object.entries(s?.metadata ?? {})) facts.push([k, typeof v === 'string' ? v : JSON.stringify(v)]);
    const sig = JSON.stringify(facts);
    if (metaDl.dataset.sig !== sig) {
      metaDl.dataset.sig = sig;
      metaDl.replaceChildren(...facts.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
    }
  }

  /**
   * Runs an action on the current conversation; a 409 shows what it means.
   * @param {() => Promise<any>} run
   * @param {string} conflict
   */
  async function act(run, conflict) {
    if (!current) return null;
    const id = current.id;
    clearError();
    try {
      const r = await run();
      if (r?.session) onSummaries([r.session], false);
      return r;
    } catch (e) {
      showError(explain(e, conflict));
      // What the session is now (someone else may hold it).
      client?.session(id).then((r) => r?.session && onSummaries([r.session], false)).catch(() => {});
      return null;
    } finally {
      renderConversationHead();
    }
  }

  claimBtn.addEventListener('click', async () => {
    const c = client;
    if (!c || !current) return;
    const id = current.id;
    const r = await act(() => c.act(id, 'claim'), 'Someone else has already taken this conversation (or it is closed).');
    if (r) {
      composer.focus();
      catchUp(id);
    }
  });
  releaseBtn.addEventListener('click', () => {
    const c = client;
    if (!c || !current) return;
    typing.stop();
    const id = current.id;
    act(() => c.act(id, 'release'), 'You do not hold this conversation any more.').then(() => convTitle.focus());
  });
  closeBtn.addEventListener('click', () => {
    const c = client;
    if (!c || !current) return;
    typing.stop();
    const id = current.id;
    act(() => c.act(id, 'close'), 'Another agent holds this conversation, or it is already closed.').then(() => convTitle.focus());
  });
  transferBtn.addEventListener('click', () => {
    const c = client;
    const to = agents.find((a) => a.id === transferSel.value);
    if (!c || !current || !to) return;
    typing.stop();
    const id = current.id;
    act(() => c.transfer(id, to), 'You do not hold this conversation any more.').then((r) => {
      if (r) announce(`Transferred to ${to.name}.`);
      convTitle.focus();
    });
  });
  olderBtn.addEventListener('click', async () => {
    const c = client;
    if (!c || !current) return;
    const id = current.id;
    const oldest = current.messages.find((m) => m.seq != null)?.seq;
    if (!oldest) return;
    olderBtn.disabled = true;
    const before = log.scrollHeight;
    try {
      const page = await c.messages(id, { before: oldest, limit: 50 });
      if (current?.id !== id) return;
      current.hasMore = !!page.hasMore;
      mergeIntoCurrent(page.messages ?? []);
      renderLog();
      log.scrollTop += log.scrollHeight - before;
    } catch (e) {
      showError(`Could not load earlier messages: ${explain(e)}`);
    } finally {
      olderBtn.disabled = false;
    }
  });

  // --- composer and canned replies
  async function send() {
    const c = client;
    const text = composer.value;
    const entries = [...attached.values()];
    if (!c || !current || (!text.trim() && !entries.length)) return;
    if (entries.some((e) => e.state === 'uploading')) return showError('Wait until the files are uploaded, then send.');
    const id = current.id;
    typing.stop();
    composer.value = '';
    sendBtn.disabled = true;
    try {
      const r = await c.send(id, text, newClientMessageId(), entries.map((e) => /** @type {ChatAttachment} */ (e.attachment)));
      for (const e of entries) {
        e.li.remove();
        attached.delete(e.key);
      }
      if (r?.message && current?.id === id) mergeIntoCurrent([r.message]);
      log.scrollTop = log.scrollHeight;
    } catch (e) {
      if (!composer.value) composer.value = text; // nothing lost
      showError(explain(e, 'You do not hold this conversation (any more): claim it to reply.'));
    } finally {
      renderConversationHead();
      composer.focus();
    }
  }

  // --- attachments of the next reply
  /** @type {Map<number, TrayEntry>} */
  const attached = new Map();
  let nextKey = 0;

  function clearTray() {
    for (const e of attached.values()) {
      e.controller.abort();
      e.li.remove();
    }
    attached.clear();
  }

  /** @param {Iterable<File>} files */
  function attachFiles(files) {
    const c = client;
    if (!c || !current || composer.disabled) return;
    const id = current.id;
    /** @type {string[]} */
    const refused = [];
    for (const file of files) {
      const problem = attachmentCountProblem(attached.size + 1, limits) ?? attachmentProblem(file, limits);
      if (problem) {
        refused.push(problem.message);
        if (problem.code === 'too_many') break;
        continue;
      }
      const key = ++nextKey;
      const name = attachmentName(file.name);
      const bar = el('progress', { max: '100', value: '0', 'aria-label': `Uploading ${name}` });
      const state = el('span', { class: 'state', text: `${formatBytes(file.size)} · uploading…` });
      const remove = el('button', { class: 'remove', type: 'button', 'aria-label': `Remove ${name}`, text: '×' });
      const li = el('li', { class: 'chip', 'data-state': 'uploading' }, el('span', { class: 'name', text: name, title: name }), state, bar, remove);
      /** @type {TrayEntry} */
      const entry = { key, name, state: 'uploading', controller: new AbortController(), li };
      attached.set(key, entry);
      tray.append(li);
      remove.addEventListener('click', () => {
        entry.controller.abort();
        attached.delete(key);
        li.remove();
        renderConversationHead();
        composer.focus();
      });
      c.upload(id, file, {
        signal: entry.controller.signal,
        onProgress: ({ loaded, total }) => {
          const pct = total > 0 ? Math.min(100, Math.round((100 * loaded) / total)) : 0;
          bar.value = pct;
          state.textContent = `${formatBytes(file.size)} · ${pct} %`;
        },
      }).then((a) => {
        if (attached.get(key) !== entry) return;
        entry.attachment = a;
        entry.state = 'ready';
        li.dataset.state = 'ready';
        bar.hidden = true;
        state.textContent = `${formatBytes(file.size)} · ready`;
        renderConversationHead();
      }, (/** @type {any} */ e) => {
        if (attached.get(key) !== entry) return;
        attached.delete(key);
        li.remove();
        renderConversationHead();
        showError(e?.message || `Could not upload “${name}”.`);
      });
    }
    if (refused.length) showError(refused.join(' '));
    renderConversationHead();
  }

  attachBtn.addEventListener('click', () => fileInput.click());
  fileInput.addEventListener('change', () => {
    attachFiles(fileInput.files ?? []);
    fileInput.value = '';
    composer.focus();
  });
  composer.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files ?? [])];
    if (!files.length) return;
    if (!e.clipboardData?.getData('text/plain')) e.preventDefault();
    attachFiles(files);
  });

  composerForm.addEventListener('submit', (e) => {
    e.preventDefault();
    send();
  });
  composer.addEventListener('input', () => {
    if (composer.value) typing.keystroke();
    else typing.stop();
    updatePop();
  });
  composer.addEventListener('click', updatePop);
  composer.addEventListener('blur', () => setTimeout(() => {
    if (shadow.activeElement !== composer) closePop();
  }, 150));
  composer.addEventListener('keydown', (e) => {
    if (!pop.hidden && matches.length) {
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        active = (active + (e.key === 'ArrowDown' ? 1 : matches.length - 1)) % matches.length;
        renderPop();
        return;
      }
      if (e.key === 'Enter' || e.key === 'Tab') {
        e.preventDefault();
        pick(matches[active]);
        return;
      }
    }
    if (e.key === 'Escape' && !pop.hidden) {
      e.preventDefault();
      closePop();
      return;
    }
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });

  function updatePop() {
    token = slashQuery(composer.value, composer.selectionStart ?? composer.value.length);
    matches = token ? searchCanned(canned, token.query) : [];
    if (!token || !matches.length) return closePop();
    active = Math.min(active, matches.length - 1);
    renderPop();
  }

  function renderPop() {
    pop.replaceChildren(...matches.map((r, i) => {
      const li = el('li', { id: `canned-opt-${i}`, role: 'option', 'aria-selected': String(i === active), 'data-shortcut': r.shortcut },
        el('span', { class: 'sc', text: `/${r.shortcut}` }), el('span', { text: r.title }), el('span', { class: 'tx', text: r.text }));
      li.addEventListener('mousedown', (e) => {
        e.preventDefault(); // keep the focus in the composer
        pick(r);
      });
      return li;
    }));
    pop.hidden = false;
    composer.setAttribute('aria-expanded', 'true');
    composer.setAttribute('aria-activedescendant', `canned-opt-${active}`);
    pop.querySelector('[aria-selected=true]')?.scrollIntoView?.({ block: 'nearest' });
  }

  function closePop() {
    pop.hidden = true;
    matches = [];
    active = 0;
    composer.setAttribute('aria-expanded', 'false');
    composer.removeAttribute('aria-activedescendant');
  }

  /** @param {CannedReply} r */
  function pick(r) {
    if (!token) return;
    const out = insertCanned(composer.value, token, r.text);
    composer.value = out.text;
    composer.setSelectionRange(out.caret, out.caret);
    closePop();
    composer.focus();
    typing.keystroke();
  }

  async function loadCanned() {
    const c = client;
    if (!c) return;
    try {
      const r = await c.canned();
      canned = Array.isArray(r?.replies) ? r.replies : [];
      renderCannedList();
    } catch (e) {
      showError(`Could not load canned replies: ${explain(e)}`);
    }
  }

  function renderCannedList() {
    cannedList.replaceChildren(...(canned.length ? canned.map((r) => {
      const edit = el('button', { class: 'secondary', type: 'button', text: 'Edit', 'aria-label': `Edit /${r.shortcut}` });
      const del = el('button', { class: 'secondary danger', type: 'button', text: 'Delete', 'aria-label': `Delete /${r.shortcut}` });
      edit.addEventListener('click', () => startEdit(r));
      del.addEventListener('click', () => removeCanned(r));
      return el('li', { 'data-shortcut': r.shortcut }, el('span', { class: 'what' }, el('strong', { text: `/${r.shortcut}` }), ` ${r.title}`), edit, del);
    }) : [el('li', { text: 'No canned replies yet.' })]));
  }

  /** @param {CannedReply | null} r */
  function startEdit(r) {
    editing = r?.id ?? null;
    formTitle.textContent = r ? `Edit /${r.shortcut}` : 'New reply';
    fShortcut.value = r?.shortcut ?? '';
    fTitle.value = r?.title ?? '';
    fText.value = r?.text ?? '';
    cancelEditBtn.hidden = !r;
    for (const p of [errShortcut, errTitle, errText, formError]) p.textContent = '';
    for (const f of [fShortcut, fTitle, fText]) f.removeAttribute('aria-invalid');
    fShortcut.focus();
  }

  /** @param {CannedReply} r */
  async function removeCanned(r) {
    const c = client;
    if (!c) return;
    formError.textContent = '';
    try {
      await c.deleteCanned(r.id);
      canned = canned.filter((x) => x.id !== r.id);
      renderCannedList();
      if (editing === r.id) startEdit(null);
      announce(`Deleted /${r.shortcut}.`);
      fShortcut.focus();
    } catch (e) {
      formError.textContent = explain(e);
    }
  }

  cannedForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const c = client;
    if (!c) return;
    const body = { shortcut: fShortcut.value.trim(), title: fTitle.value.trim(), text: fText.value };
    const errs = cannedErrors(body);
    errShortcut.textContent = errs.shortcut ?? '';
    errTitle.textContent = errs.title ?? '';
    errText.textContent = errs.text ?? '';
    formError.textContent = '';
    for (const [f, k] of /** @type {[HTMLElement, string][]} */ ([[fShortcut, 'shortcut'], [fTitle, 'title'], [fText, 'text']])) {
      if (errs[k]) f.setAttribute('aria-invalid', 'true');
      else f.removeAttribute('aria-invalid');
    }
    const first = errs.shortcut ? fShortcut : errs.title ? fTitle : errs.text ? fText : null;
    if (first) return first.focus();
    try {
      const r = await c.saveCanned(body, editing ?? undefined);
      const saved = r?.reply;
      if (saved) canned = [...canned.filter((x) => x.id !== saved.id), saved].sort((a, b) => (a.shortcut < b.shortcut ? -1 : 1));
      renderCannedList();
      announce(`Saved /${body.shortcut}.`);
      startEdit(null);
    } catch (err) {
      formError.textContent = explain(err, `The shortcut /${body.shortcut} is already used.`);
    }
  });
  cancelEditBtn.addEventListener('click', () => startEdit(null));
  doneBtn.addEventListener('click', () => dialog.close());
  cannedBtn.addEventListener('click', () => {
    renderCannedList();
    startEdit(null);
    dialog.showModal();
    fShortcut.focus();
    loadCanned();
  });
  dialog.addEventListener('close', () => cannedBtn.focus());

  // --- start
  const given = options.token ?? saved.token;
  if (given) {
    signInWith(given, defaultBase, options.websocketUrl ?? saved.websocketUrl).catch((e) => {
      signIn.hidden = false;
      signInError.textContent = e.message;
      if (!options.token) storage.removeItem(STORAGE_KEY);
    });
  } else {
    signIn.hidden = false;
  }

  return {
    element: host,
    signOut,
    /** What the console holds now (for tests and host apps). */
    get state() {
      return { agent, view, current: current?.id ?? null, sessions: [...summaries.values()], canned, connection: client?.state ?? 'closed' };
    },
    destroy() {
      destroyed = true;
      clearInterval(tick);
      clearTimeout(typingTimer);
      clearTimeout(windowTimer);
      typing.stop();
      for (const off of offs) off();
      client?.stop();
      host.remove();
    },
  };
}

/** `AgentConsole.mount(element, { apiBase, websocketUrl, token })`. */
export const AgentConsole = Object.freeze({ mount: mountAgentConsole });

// Auto-mount on an element with `data-agent-console` (agent.html), unless the page opts out.
const page = /** @type {typeof globalThis & { agentConsoleConfig?: ConsoleOptions & { autoMount?: boolean }, __agentConsole?: ReturnType<typeof mountAgentConsole> }} */ (globalThis);
if (typeof document !== 'undefined' && page.agentConsoleConfig?.autoMount !== false && !page.__agentConsole) {
  const mount = () => {
    const target = document.querySelector('[data-agent-console]');
    if (!target || page.__agentConsole) return;
    const t = /** @type {HTMLElement} */ (target);
    page.__agentConsole = mountAgentConsole(t, {
      ...page.agentConsoleConfig,
      ...(t.dataset.apiBase ? { apiBase: t.dataset.apiBase } : {}),
      ...(t.dataset.websocketUrl ? { websocketUrl: t.dataset.websocketUrl } : {}),
    });
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', mount, { once: true });
  else mount();
}
