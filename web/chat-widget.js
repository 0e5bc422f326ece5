// The chat widget: a floating button that opens a support-style chat panel, built on ChatClient.
//
// Embed it in any page with one line (the chat host serves this file):
//
//   <script type="module" src="https://your-chat-host/chat-widget.js"></script>
//
// Options, all optional, go in `window.chatWidgetConfig` before that line:
//   { title, subtitle, baseUrl, authToken, open, autoMount, placeholder, storageKey,
//     clientOptions /* more ChatClient options, e.g. { backoffMaxMs: 10000 } */ }
// With `autoMount: false`, mount it yourself: `import { mountChatWidget } from '…/chat-widget.js'`.
//
// The widget lives in a shadow root, so the host page's CSS and this CSS never mix.
// Assistant and agent messages are Markdown, rendered to DOM nodes by chat-markdown.js (served
// beside this file; never innerHTML); a reply that is streamed grows in place with a caret and
// is announced to screen readers once, when it is stored. Suggested replies of the newest reply
// (`data.suggestions`) are buttons that send their text.
// People in the loop: a "Talk to a person" button asks for one (shown only while the bot
// answers); the header says subtly who answers (the assistant, waiting for a person, the
// agent by name, closed); system messages are centered notices; agent messages carry the
// agent's name, and so does the typing indicator. A closed conversation disables the composer
// and offers to start a new one.
// Signed-in users (an `authToken`) get "Previous conversations" in the header: their
// conversations on any device (title, when, unread), one opened here with a click or Enter
// (a fresh token for this device), and "New conversation". Arrow keys, Home and End move
// through the list; Escape goes back to the conversation. On a device with none of their
// sessions stored, the widget opens their most recent conversation (ChatClient's resumeLatest).
// Attachments: a paperclip button (a file picker), pasting an image into the message box, or
// dropping files on the panel attach files to the next message. Each is checked against the
// limits first (a refused type or size is explained, and nothing is uploaded), then uploaded
// at once with its progress on its chip (a thumbnail for images, drawn on a canvas: no object
// or data URL, so no Content-Security-Policy has to allow one), removable until sent. Sent and
// received attachments show in the messages: images inline (their alt text is the file's
// name), other files as download links with name and size (chat-markdown.js renders both).
// The user's own recent messages offer Edit (an inline editor: Enter saves, Escape cancels) and
// Delete; edited messages say so, deleted ones stay as "Message deleted".
// tests/browser/run type-checks it (tsc --checkJs) against chat-client.d.ts, as a user of it.

import {
  ChatClient, INLINE_IMAGE_TYPES, attachmentCountProblem, attachmentName, attachmentUrl, contentTypeOf, fileBadge, formatBytes,
  mergeConversations, relativeTime, suggestionsOf,
} from './chat-client.js';
import { renderAttachments, renderMarkdown } from './chat-markdown.js';

/**
 * @typedef {import('./chat-client.js').ChatClientOptions} ChatClientOptions
 * @typedef {import('./chat-client.js').ChatMessage} ChatMessage
 * @typedef {import('./chat-client.js').ConversationSummary} ConversationSummary
 * @typedef {import('./chat-client.js').ChatAttachment} ChatAttachment
 * @typedef {{ key: number, file: File, name: string, state: 'uploading' | 'ready', loaded: number,
 *   attachment?: ChatAttachment, controller: AbortController, li: HTMLLIElement, bar: HTMLProgressElement,
 *   stateText: HTMLSpanElement }} TrayEntry a file attached to the next message
 * @typedef {object} ChatWidgetOptions
 * @property {string} [title] the panel's title
 * @property {string} [subtitle] shown while the conversation is empty
 * @property {string} [baseUrl] the chat server; default: the origin this file was loaded from
 * @property {ChatClientOptions['authToken']} [authToken] an app JWT: a user session, else a guest's
 * @property {boolean} [open] start opened
 * @property {boolean} [autoMount] false: no widget until you call mountChatWidget(options)
 * @property {string} [placeholder] of the message box
 * @property {string} [storageKey] of the session in localStorage
 * @property {ChatClientOptions} [clientOptions] more ChatClient options
 * @property {ChatClient} [client] an existing ChatClient to show (it is not stopped on destroy)
 * @property {Element} [container] where the widget goes; default: document.body
 */

const CSS = `
:host { all: initial; }
* { box-sizing: border-box; }
.root { --accent: #2563eb; --bg: #ffffff; --fg: #111827; --muted: #6b7280; --line: #e5e7eb;
  --bubble: #f3f4f6; --link: #1d4ed8; --code-bg: #0000000f; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; }
@media (prefers-color-scheme: dark) {
  .root { --bg: #111827; --fg: #f9fafb; --muted: #9ca3af; --line: #374151; --bubble: #1f2937;
    --link: #93c5fd; --code-bg: #ffffff1a; }
}
.launcher { width: 60px; height: 60px; border-radius: 50%; border: 0; background: var(--accent);
  color: #fff; cursor: pointer; box-shadow: 0 6px 20px #0004; display: grid; place-items: center;
  position: relative; margin-left: auto; }
.launcher:hover { filter: brightness(1.08); }
.launcher:focus-visible, button:focus-visible, textarea:focus-visible, a:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
.launcher svg { width: 28px; height: 28px; }
.badge { position: absolute; top: -4px; right: -4px; min-width: 22px; height: 22px; padding: 0 6px;
  border-radius: 11px; background: #dc2626; color: #fff; font-size: 12px; font-weight: 700;
  display: grid; place-items: center; border: 2px solid var(--bg); }
.badge[hidden] { display: none; }
.panel { position: absolute; right: 0; bottom: 76px; width: 380px; height: min(620px, calc(100vh - 110px));
  background: var(--bg); border: 1px solid var(--line); border-radius: 16px; box-shadow: 0 12px 40px #0005;
  display: flex; flex-direction: column; overflow: hidden; }
.panel[hidden] { display: none; }
header { display: flex; align-items: center; gap: 10px; padding: 12px 14px; background: var(--accent); color: #fff; }
header .titles { flex: 1; min-width: 0; }
header h2 { margin: 0; font-size: 16px; font-weight: 650; }
header .conn { font-size: 12px; opacity: .92; display: flex; align-items: center; gap: 6px; }
.dot { width: 8px; height: 8px; border-radius: 50%; background: #fbbf24; display: inline-block; }
.conn[data-state="open"] .dot { background: #4ade80; }
.conn[data-state="reconnecting"] .dot, .conn[data-state="closed"] .dot { background: #f87171; }
.close { background: transparent; border: 0; color: #fff; font-size: 24px; line-height: 1; cursor: pointer;
  width: 36px; height: 36px; border-radius: 8px; }
.close:hover { background: #fff2; }
.mode { font-size: 12px; opacity: .85; }
.mode:empty { display: none; }
.handoff-row, .closed-row { display: flex; justify-content: center; align-items: center; gap: 8px; padding: 6px 12px 0; font-size: 13px; color: var(--muted); }
.handoff-row[hidden], .closed-row[hidden] { display: none; }
.handoff { font: inherit; font-size: 13px; color: var(--accent); background: transparent; border: 1px solid var(--line);
  border-radius: 999px; padding: 3px 12px; cursor: pointer; }
.handoff:hover { border-color: var(--accent); }
.handoff:disabled { opacity: .6; cursor: default; }
.new-conversation, .start-new { font: inherit; font-size: 13px; font-weight: 600; color: #fff; background: var(--accent); border: 0;
  border-radius: 8px; padding: 6px 12px; cursor: pointer; }
form[hidden] { display: none; }
.log { flex: 1; overflow-y: auto; padding: 14px; display: flex; flex-direction: column; gap: 10px;
  margin: 0; list-style: none; }
.empty { color: var(--muted); text-align: center; margin: auto; font-size: 14px; }
.msg { max-width: 85%; min-width: 0; display: flex; flex-direction: column; gap: 3px; }
.msg .who { font-size: 11px; color: var(--muted); font-weight: 600; text-transform: uppercase; letter-spacing: .03em; }
.bubble { padding: 9px 12px; border-radius: 14px; white-space: pre-wrap; overflow-wrap: anywhere; background: var(--bubble);
  min-width: 0; max-width: 100%; }
.msg.user { align-self: flex-end; align-items: flex-end; }
.msg.user .bubble { background: var(--accent); color: #fff; border-bottom-right-radius: 4px; }
.msg.assistant, .msg.agent { align-self: flex-start; }
.msg.assistant .bubble, .msg.agent .bubble { border-bottom-left-radius: 4px; }
.msg.system { align-self: center; max-width: 92%; }
.msg.system .bubble { background: transparent; border: 1px dashed var(--line); color: var(--muted); font-size: 13px; }
.msg.notice { align-self: center; max-width: 92%; align-items: center; text-align: center; }
.msg.notice .bubble { background: transparent; border: 0; padding: 2px 8px; color: var(--muted); font-size: 12.5px; font-style: italic; }
.kind { font-size: 11px; font-weight: 700; display: flex; gap: 5px; align-items: center; text-transform: uppercase; letter-spacing: .04em; }
.md { white-space: normal; }
.md p, .md ul, .md ol, .md pre, .md blockquote, .md table, .md h1, .md h2, .md h3, .md h4, .md h5, .md h6 { margin: 0 0 .55em; }
.md > :last-child { margin-bottom: 0; }
.md h1, .md h2, .md h3, .md h4, .md h5, .md h6 { font-size: 1em; font-weight: 700; line-height: 1.3; }
.md h1, .md h2, .md h3 { font-size: 1.1em; }
.md ul, .md ol { padding-left: 1.4em; }
.md ul { list-style: disc; } .md ul ul { list-style: circle; } .md ol { list-style: decimal; }
.md li + li { margin-top: .15em; }
.md li > ul, .md li > ol, .md li > p { margin: .15em 0; }
.md code { font: .88em/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--code-bg);
  border-radius: 4px; padding: .05em .3em; }
.md pre { background: #0f172a; color: #e2e8f0; border-radius: 8px; padding: 8px 10px; overflow-x: auto; white-space: pre; }
.md pre code { background: none; padding: 0; color: inherit; }
.md a { color: var(--link); text-decoration: underline; }
.md blockquote { margin-left: 0; margin-right: 0; padding-left: 10px; border-left: 3px solid var(--line); color: var(--muted); }
.md hr { border: 0; border-top: 1px solid var(--line); }
.md table { border-collapse: collapse; display: block; overflow-x: auto; max-width: 100%; font-size: .92em; }
.md th, .md td { border: 1px solid var(--line); padding: 3px 7px; text-align: left; }
.caret { display: inline-block; width: .45em; height: 1.05em; margin-left: 2px; vertical-align: -.15em;
  background: currentColor; opacity: .6; animation: caret 1s steps(2, start) infinite; }
@keyframes caret { to { visibility: hidden; } }
.note { margin-top: 6px; font-size: 12px; font-style: italic; color: var(--muted); }
.suggestions { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 4px; }
.suggestion { font: inherit; font-size: 13px; color: var(--accent); background: var(--bg); border: 1px solid var(--accent);
  border-radius: 999px; padding: 4px 12px; cursor: pointer; text-align: left; }
.suggestion:hover { background: var(--accent); color: #fff; }
.t-confirmation .bubble { background: #dcfce7; color: #14532d; border: 1px solid #16a34a; }
.t-confirmation .kind { color: #15803d; }
.t-clarification .bubble { background: #fef9c3; color: #713f12; border: 1px solid #ca8a04; }
.t-clarification .kind { color: #a16207; }
.t-cancellation .bubble { background: #f3f4f6; color: #374151; border: 1px solid #9ca3af; text-decoration-color: #9ca3af; }
.t-cancellation .kind { color: #4b5563; }
.t-error .bubble { background: #fee2e2; color: #7f1d1d; border: 1px solid #dc2626; }
.t-error .kind { color: #b91c1c; }
.t-info .bubble { background: #e0f2fe; color: #0c4a6e; border: 1px solid #0284c7; }
.t-info .kind { color: #0369a1; }
.t-scheduling_update .bubble { background: #ede9fe; color: #3b0764; border: 1px solid #7c3aed; }
.t-scheduling_update .kind { color: #6d28d9; }
.data { margin-top: 4px; font-size: 12px; opacity: .85; }
.data dt { font-weight: 600; display: inline; }
.data dd { display: inline; margin: 0 8px 0 4px; }
.meta { font-size: 11px; color: var(--muted); display: flex; gap: 6px; align-items: center; }
.meta .status[data-status="failed"] { color: #dc2626; font-weight: 600; }
.retry { font: inherit; font-size: 11px; border: 1px solid #dc2626; color: #dc2626; background: transparent;
  border-radius: 6px; padding: 1px 6px; cursor: pointer; }
.change { font: inherit; font-size: 11px; border: 0; background: transparent; color: var(--muted); padding: 1px 2px;
  cursor: pointer; text-decoration: underline; }
.change:hover, .change:focus-visible { color: var(--accent); }
.edited { font-style: italic; }
.msg.deleted .bubble { background: transparent; color: var(--muted); border: 1px dashed var(--line); font-style: italic; }
.edit-form { display: flex; flex-direction: column; gap: 4px; align-items: flex-end; }
.edit-form textarea { font: inherit; width: 240px; max-width: 100%; min-height: 48px; border: 1px solid var(--line);
  border-radius: 8px; padding: 6px 8px; resize: vertical; }
.edit-form .row { display: flex; gap: 6px; }
.edit-note { font-size: 11px; color: #dc2626; }
.typing { height: 22px; padding: 0 16px; color: var(--muted); font-size: 13px; display: flex; align-items: center; gap: 6px; }
.typing[hidden] { visibility: hidden; display: flex; }
.typing i { width: 6px; height: 6px; border-radius: 50%; background: var(--muted); display: inline-block; animation: blink 1.2s infinite; }
.typing i:nth-child(2) { animation-delay: .2s; } .typing i:nth-child(3) { animation-delay: .4s; }
@keyframes blink { 0%, 80%, 100% { opacity: .25; } 40% { opacity: 1; } }
@media (prefers-reduced-motion: reduce) { .typing i, .caret { animation: none; } }
form { display: flex; gap: 8px; padding: 10px 12px; border-top: 1px solid var(--line); align-items: flex-end; }
textarea { flex: 1; resize: none; font: inherit; color: var(--fg); background: var(--bg); border: 1px solid var(--line);
  border-radius: 10px; padding: 9px 10px; max-height: 120px; min-height: 40px; }
.send { background: var(--accent); color: #fff; border: 0; border-radius: 10px; padding: 0 14px; height: 40px; font: inherit; font-weight: 600; cursor: pointer; }
.send:disabled { opacity: .5; cursor: default; }
.older-row { text-align: center; list-style: none; }
.older-row[hidden] { display: none; }
.older, .more-conversations { font: inherit; font-size: 13px; color: var(--accent); background: transparent; border: 1px solid var(--line);
  border-radius: 999px; padding: 4px 12px; cursor: pointer; }
.history { background: transparent; border: 0; color: #fff; cursor: pointer; width: 36px; height: 36px; border-radius: 8px;
  display: grid; place-items: center; }
.history:hover, .history[aria-expanded="true"] { background: #fff2; }
.history svg { width: 20px; height: 20px; }
.history[hidden] { display: none; }
.panel.listing .log, .panel.listing .typing, .panel.listing .handoff-row, .panel.listing .closed-row, .panel.listing .tray,
.panel.listing .attach-error, .panel.listing form { display: none; }
.conversations { flex: 1; overflow-y: auto; padding: 12px 14px; display: flex; flex-direction: column; gap: 10px; }
.conversations[hidden] { display: none; }
.conversations-head { display: flex; align-items: center; justify-content: space-between; gap: 8px; }
.conversations h3 { margin: 0; font-size: 14px; font-weight: 650; }
.conv-list { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 6px; }
.conv { width: 100%; text-align: left; font: inherit; color: var(--fg); background: var(--bg); border: 1px solid var(--line);
  border-radius: 10px; padding: 8px 10px; cursor: pointer; display: grid; grid-template-columns: 1fr auto; gap: 2px 8px; }
.conv:hover { border-color: var(--accent); }
.conv[aria-current="true"] { border-color: var(--accent); box-shadow: inset 3px 0 0 var(--accent); }
.conv-title { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; min-width: 0; }
.conv-time { font-size: 12px; color: var(--muted); white-space: nowrap; }
.conv-last { grid-column: 1; font-size: 13px; color: var(--muted); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; min-width: 0; }
.conv-unread { grid-column: 2; justify-self: end; font-size: 11px; font-weight: 700; color: #fff; background: var(--accent);
  border-radius: 999px; padding: 1px 7px; }
.conv-unread[hidden] { display: none; }
.conversations-status { font-size: 13px; color: var(--muted); margin: 0; }
.conversations-status:empty { display: none; }
.more-conversations[hidden] { display: none; }
.more-conversations { align-self: center; }
.attach { flex: none; width: 40px; height: 40px; border: 1px solid var(--line); border-radius: 10px; background: var(--bg);
  color: var(--muted); cursor: pointer; display: grid; place-items: center; padding: 0; }
.attach:hover { color: var(--accent); border-color: var(--accent); }
.attach:disabled { opacity: .5; cursor: default; }
.attach svg { width: 20px; height: 20px; }
.tray { list-style: none; margin: 0; padding: 8px 12px 0; display: flex; gap: 8px; flex-wrap: wrap; }
.tray[hidden] { display: none; }
.chip { display: flex; align-items: center; gap: 6px; border: 1px solid var(--line); border-radius: 10px; padding: 4px 4px 4px 6px;
  font-size: 12px; max-width: 100%; background: var(--bg); }
.chip canvas, .chip .ficon { width: 36px; height: 36px; border-radius: 6px; object-fit: cover; flex: none; }
.chip .ficon { display: grid; place-items: center; background: var(--bubble); font-size: 10px; font-weight: 700; letter-spacing: .03em; color: var(--muted); }
.chip .info { display: flex; flex-direction: column; min-width: 0; max-width: 170px; gap: 2px; }
.chip .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; font-weight: 600; }
.chip .state { color: var(--muted); }
.chip progress { width: 100%; height: 4px; }
.chip progress[hidden] { display: none; }
.chip .remove { flex: none; border: 0; background: transparent; color: var(--muted); cursor: pointer; font-size: 18px; line-height: 1;
  width: 28px; height: 28px; border-radius: 6px; }
.chip .remove:hover { background: var(--bubble); color: var(--fg); }
.attach-error { margin: 8px 12px 0; padding: 6px 10px; font-size: 13px; color: #7f1d1d; background: #fee2e2;
  border: 1px solid #dc2626; border-radius: 8px; display: flex; gap: 8px; align-items: flex-start; overflow-wrap: anywhere; }
.attach-error[hidden] { display: none; }
.attach-error span { flex: 1; }
.attach-error button { border: 0; background: transparent; color: inherit; cursor: pointer; font-size: 16px; line-height: 1; }
.drop { position: absolute; inset: 0; display: grid; place-items: center; background: #1d4ed8d9; color: #fff; font-weight: 650;
  font-size: 16px; border: 3px dashed #fff; border-radius: 16px; z-index: 2; pointer-events: none; }
.drop[hidden] { display: none; }
.text:empty { display: none; }
.attachments { list-style: none; margin: 6px 0 0; padding: 0; display: flex; flex-direction: column; gap: 6px; white-space: normal; }
.bubble > .attachments:first-child { margin-top: 0; }
.attachment img { display: block; max-width: 100%; max-height: 220px; border-radius: 8px; background: #0000000d; }
.attachment a { color: inherit; }
.attachment.file a, .attachment .file-name-size { display: inline-flex; gap: 6px; align-items: baseline; padding: 6px 8px;
  border-radius: 8px; background: #0000000d; text-decoration: none; overflow-wrap: anywhere; }
.attachment.file a:hover .name { text-decoration: underline; }
.msg.user .attachment.file a, .msg.user .attachment .file-name-size { background: #ffffff2e; }
.attachment .size { opacity: .8; font-size: 12px; white-space: nowrap; }
.attachment .icon { font-size: 9.5px; font-weight: 700; letter-spacing: .03em; border: 1.5px solid currentColor; border-radius: 4px; padding: 1px 3px; opacity: .85; align-self: center; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
@media (max-width: 480px) {
  .root { right: 12px; bottom: 12px; }
  .root.open { inset: 0; }
  .root.open .launcher { display: none; }
  .panel { position: fixed; inset: 0; width: 100%; height: 100%; border-radius: 0; border: 0; }
}
`;

const HISTORY_ICON = '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M3 12a9 9 0 1 0 3-6.7L3 8"/><path d="M3 3v5h5"/><path d="M12 7v5l3 2"/></svg>';

const CLIP = '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M21.44 11.05l-9.19 9.19a6 6 0 0 1-8.49-8.49l9.19-9.19a4 4 0 0 1 5.66 5.66l-9.2 9.19a2 2 0 0 1-2.83-2.83l8.49-8.48"/></svg>';
const ICON = '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z"/></svg>';

/**
 * How each reply type is labelled (and marked besides colour, for accessibility).
 * @type {Record<string, string | null>}
 */
export const TYPE_LABELS = {
  text: null,
  confirmation: '✓ Confirmation',
  clarification: '? Clarification',
  cancellation: '✕ Cancelled',
  error: '⚠ Error',
  info: 'ℹ Info',
  scheduling_update: '🗓 Scheduling update',
};

/** @type {Record<string, string>} */
const ROLE_LABELS = { user: 'You', assistant: 'Assistant', agent: 'Agent', system: 'System' };
/** @type {Record<string, string>} */
const STATUS_LABELS = {
  queued: 'Waiting for connection',
  sending: 'Sending…',
  received: 'Sent',
  dispatched: 'Delivered',
  answered: 'Answered',
  failed: 'Not sent',
};
/** Keys of a message's `data` shown as suggestion buttons or a note, not in its data list. */
const DATA_SHOWN_ELSEWHERE = new Set(['suggestions', 'incomplete']);

/** @type {Record<string, string>} */
const CONN_LABELS = { idle: 'Starting…', connecting: 'Connecting…', open: 'Online', reconnecting: 'Reconnecting…', closed: 'Offline' };

/**
 * An element with attributes (`class`, `text`, others as attributes; true: present, false or
 * null: absent) and children.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, any>} [attrs]
 * @param {...(Node | string | null | undefined)} children
 * @returns {HTMLElementTagNameMap[K] & { _sig?: string }} (`_sig`: what a message row shows)
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

/**
 * Where a streaming reply's caret goes: at the end of its last block (the last paragraph, list
 * item, code block or cell), so it follows the text.
 * @param {Element} root
 * @returns {Element}
 */
function caretHost(root) {
  let host = root;
  for (;;) {
    const last = host.lastElementChild;
    if (last?.tagName === 'PRE') return last.lastElementChild ?? last; // inside the code
    if (!last || !/^(P|H[1-6]|UL|OL|LI|BLOCKQUOTE|TABLE|THEAD|TBODY|TR|TH|TD)$/.test(last.tagName)) return host;
    host = last;
  }
}

/**
 * Mounts the widget on the page and returns `{ client, open, close, toggle, destroy, element }`.
 * Options: see the header of this file; `client` may be an existing ChatClient.
 * @param {ChatWidgetOptions} [options]
 */
export function mountChatWidget(options = {}) {
  const baseUrl = options.baseUrl ?? new URL('.', import.meta.url).origin;
  const client = options.client ?? new ChatClient({ baseUrl, authToken: options.authToken, storageKey: options.storageKey, ...options.clientOptions });
  const host = el('div', { 'data-chat-widget': '' });
  const shadow = host.attachShadow({ mode: 'open' });
  const titleId = 'chat-title';

  const badge = el('span', { class: 'badge', hidden: true, 'aria-hidden': 'true' });
  const launcher = el('button', { class: 'launcher', type: 'button', 'aria-haspopup': 'dialog', 'aria-expanded': 'false', 'aria-controls': 'chat-panel', 'aria-label': 'Open chat' });
  launcher.innerHTML = ICON;
  launcher.append(badge);

  const connText = el('span', { class: 'conn-text', text: CONN_LABELS.idle });
  const modeText = el('span', { class: 'mode' });
  const conn = el('div', { class: 'conn', role: 'status', 'data-state': 'idle' }, el('span', { class: 'dot', 'aria-hidden': 'true' }), connText, modeText);
  const closeBtn = el('button', { class: 'close', type: 'button', 'aria-label': 'Close chat', text: '×' });
  // Signed in: the user's conversations on any device (GET /sessions with the app JWT).
  const signedIn = !!client.options.authToken;
  const historyBtn = el('button', { class: 'history', type: 'button', 'aria-label': 'Previous conversations', 'aria-expanded': 'false', 'aria-controls': 'chat-conversations', hidden: !signedIn });
  historyBtn.innerHTML = HISTORY_ICON; // a constant icon, no data
  const header = el('header', {}, el('div', { class: 'titles' }, el('h2', { id: titleId, text: options.title ?? 'Chat with us' }), conn), historyBtn, closeBtn);
  const startNewBtn = el('button', { class: 'start-new', type: 'button', text: 'New conversation' });
  const convList = el('ul', { class: 'conv-list', 'aria-labelledby': 'chat-conversations-title' });
  const convStatus = el('p', { class: 'conversations-status', role: 'status' });
  const moreBtn = el('button', { class: 'more-conversations', type: 'button', text: 'Show more', hidden: true });
  const conversations = el('section', { class: 'conversations', id: 'chat-conversations', hidden: true, 'aria-labelledby': 'chat-conversations-title' },
    el('div', { class: 'conversations-head' }, el('h3', { id: 'chat-conversations-title', text: 'Previous conversations' }), startNewBtn),
    convStatus, convList, moreBtn);
  const log = el('ol', { class: 'log', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': 'Messages', tabindex: '0' });
  const empty = el('li', { class: 'empty', text: options.subtitle ?? 'Ask us anything. We usually answer within seconds.' });
  const olderBtn = el('button', { class: 'older', type: 'button', text: 'Show earlier messages' });
  const older = el('li', { class: 'older-row', hidden: true }, olderBtn);
  log.append(older, empty);
  const typingText = el('span', { class: 'typing-text' });
  const typing = el('div', { class: 'typing', hidden: true, 'aria-live': 'polite' }, el('i'), el('i'), el('i'), typingText);
  const input = el('textarea', { id: 'chat-input', rows: '1', maxlength: '4000', placeholder: options.placeholder ?? 'Type a message…', 'aria-label': 'Message', autocomplete: 'off' });
  const sendBtn = el('button', { class: 'send', type: 'submit', text: 'Send' });
  const limits = client.attachmentLimits;
  const attachBtn = el('button', { class: 'attach', type: 'button', 'aria-label': 'Attach files', title: 'Attach files' });
  attachBtn.innerHTML = CLIP; // a constant icon, no data
  const fileInput = el('input', { type: 'file', multiple: true, hidden: true, tabindex: '-1', 'aria-hidden': 'true', accept: limits.types.join(',') });
  const form = el('form', { 'aria-label': 'Send a message' }, attachBtn, fileInput, input, sendBtn);
  const tray = el('ul', { class: 'tray', 'aria-label': 'Files to send', hidden: true });
  const attachErrorText = el('span');
  const attachErrorClose = el('button', { type: 'button', 'aria-label': 'Dismiss', text: '×' });
  const attachError = el('div', { class: 'attach-error', role: 'alert', hidden: true }, attachErrorText, attachErrorClose);
  const dropZone = el('div', { class: 'drop', hidden: true, 'aria-hidden': 'true', text: 'Drop files to attach them' });
  const handoffBtn = el('button', { class: 'handoff', type: 'button', text: 'Talk to a person' });
  const handoffRow = el('div', { class: 'handoff-row' }, handoffBtn);
  const newConversationBtn = el('button', { class: 'new-conversation', type: 'button', text: 'Start a new conversation' });
  const closedRow = el('div', { class: 'closed-row', hidden: true }, el('span', { text: 'This conversation is closed.' }), newConversationBtn);
  const panel = el('section', { class: 'panel', id: 'chat-panel', role: 'dialog', 'aria-modal': 'false', 'aria-labelledby': titleId, hidden: true }, header, conversations, log, typing, handoffRow, closedRow, attachError, tray, form, dropZone);
  const root = el('div', { class: 'root' }, panel, launcher);
  const style = el('style', { text: CSS });
  shadow.append(style, root);
  (options.container ?? document.body).append(host);

  const rows = new Map(); // message key -> <li>
  let isOpen = false;
  // The suggested replies of the newest reply, shown inside its row (moved, never rebuilt
  // with it, so the row is not announced again).
  const suggestions = el('div', { class: 'suggestions', role: 'group', 'aria-label': 'Suggested replies' });
  let suggestionsKey = '';

  const keyOf = (/** @type {ChatMessage} */ m) => (m.clientMessageId && m.role === 'user' ? `c:${m.clientMessageId}` : `i:${m.id}`);

  /**
   * Renders a message into its row; true when the row is new.
   * @param {ChatMessage} m
   */
  function renderMessage(m) {
    const key = keyOf(m);
    let li = rows.get(key);
    const fresh = !li;
    if (fresh) {
      li = el('li');
      rows.set(key, li);
    }
    // Rebuild a row only when it changed, so screen readers hear each message once.
    // Download URLs are minted anew on every read: a new one alone does not rebuild the row
    // (an image would load again), it only replaces the links' href.
    const files = (m.attachments ?? []).map((a) => [a.id, a.name, a.contentType, a.size, !!a.url]);
    const changeable = client.canChange(m);
    const sig = JSON.stringify([m.id, m.seq, m.type, m.role, m.name, m.status, m.content, m.pending, m.error, m.data, m.retried, m.streaming, files, m.editedAt, m.deleted, changeable]);
    // A message being edited keeps its editor until saved or cancelled.
    if (li._editing) return fresh;
    if (li._sig === sig) {
      refreshLinks(li, m);
      return fresh;
    }
    li._sig = sig;
    const type = m.type || 'text';
    // A plain system message (a change of who answers, a welcome) is a centered notice.
    const notice = m.role === 'system' && type === 'text';
    li.className = `msg ${m.role} t-${type}${m.streaming ? ' streaming' : ''}${notice ? ' notice' : ''}${m.deleted ? ' deleted' : ''}`;
    // A reply being written is hidden from screen readers (the log would read every delta);
    // the stored reply replaces its content and is announced once.
    if (m.streaming) {
      li.setAttribute('aria-hidden', 'true');
      li.dataset.streaming = 'true';
    } else {
      li.removeAttribute('aria-hidden');
      delete li.dataset.streaming;
    }
    li.dataset.id = m.id;
    li.dataset.seq = m.seq ?? '';
    li.dataset.type = type;
    li.dataset.role = m.role;
    if (m.clientMessageId) li.dataset.clientMessageId = m.clientMessageId;
    const label = TYPE_LABELS[type];
    const who = m.role === 'agent' && m.name ? m.name : ROLE_LABELS[m.role] ?? m.role;
    const parts = notice ? [el('span', { class: 'sr', text: 'Notice:' })] : [el('span', { class: 'who', text: who })];
    if (m.name) li.dataset.name = m.name;
    else delete li.dataset.name;
    const bubble = el('div', { class: 'bubble' });
    if (label && !m.deleted) bubble.append(el('div', { class: 'kind', text: label }));
    if (m.deleted) {
      bubble.append(el('div', { class: 'text', text: 'Message deleted' }));
    } else if (m.role === 'assistant' || m.role === 'agent') {
      const text = el('div', { class: 'text md' });
      text.append(renderMarkdown(m.content ?? '', { headingOffset: 2 }));
      if (m.streaming) caretHost(text).append(el('span', { class: 'caret', 'aria-hidden': 'true' }));
      bubble.append(text);
    } else {
      bubble.append(el('div', { class: 'text', text: m.content ?? '' }));
    }
    const attached = renderAttachments(m.attachments, { baseUrl: client.baseUrl });
    if (attached) bubble.append(attached);
    if (m.data?.incomplete === true) bubble.append(el('div', { class: 'note', text: 'This answer was cut off before it was complete.' }));
    if (type !== 'text' && m.data && typeof m.data === 'object') {
      const entries = Object.entries(m.data).filter(([k, v]) => !DATA_SHOWN_ELSEWHERE.has(k) && (v == null || typeof v !== 'object')).slice(0, 6);
      if (entries.length) {
        const dl = el('dl', { class: 'data' });
        for (const [k, v] of entries) dl.append(el('dt', { text: `${k}:` }), el('dd', { text: String(v) }));
        bubble.append(dl);
      }
    }
    parts.push(bubble);
    if (m.role === 'user') {
      const meta = el('div', { class: 'meta' });
      const status = el('span', { class: 'status', 'data-status': m.status, text: STATUS_LABELS[m.status] ?? m.status });
      meta.append(status);
      if (m.status === 'failed' && m.error && m.attachments?.length) status.title = m.error;
      if (m.status === 'failed' && m.pending) {
        const retry = el('button', { class: 'retry', type: 'button', text: 'Retry', 'aria-label': `Retry sending: ${m.content}` });
        // An unsent message always has its clientMessageId.
        retry.addEventListener('click', () => client.retry(/** @type {string} */ (m.clientMessageId)));
        meta.append(retry);
        if (m.error) status.title = m.error;
      } else if (m.status === 'failed' && !m.retried && m.content.trim()) {
        // Stored, but no answer came (the assistant was unreachable or too slow).
        status.textContent = 'Not answered';
        const retry = el('button', { class: 'retry', type: 'button', text: 'Retry', 'aria-label': `Send again: ${m.content}` });
        retry.addEventListener('click', () => client.retry(m.id));
        meta.append(retry);
      } else if (m.status === 'failed') {
        status.textContent = 'Not answered (sent again)';
      }
      if (m.editedAt && !m.deleted) meta.append(el('span', { class: 'edited', text: 'edited' }));
      if (changeable) {
        const edit = el('button', { class: 'change edit', type: 'button', text: 'Edit', 'aria-label': `Edit your message: ${m.content}` });
        edit.addEventListener('click', () => startEdit(/** @type {HTMLLIElement} */ (li), m));
        const del = el('button', { class: 'change delete', type: 'button', text: 'Delete', 'aria-label': `Delete your message: ${m.content}` });
        del.addEventListener('click', () => changeMessage(/** @type {HTMLLIElement} */ (li), () => client.deleteMessage(m.id)));
        meta.append(edit, del);
      }
      parts.push(meta);
    } else {
      const time = m.createdAt ? new Date(m.createdAt) : null;
      const meta = el('div', { class: 'meta' });
      if (time && !Number.isNaN(time.getTime())) meta.append(time.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
      if (m.editedAt && !m.deleted) meta.append(el('span', { class: 'edited', text: 'edited' }));
      if (meta.childNodes.length) parts.push(meta);
    }
    li.replaceChildren(...parts);
    return fresh;
  }

  /**
   * Runs an edit or a deletion; a refusal (e.g. past the edit window) shows under the message.
   * @param {HTMLLIElement & { _editing?: boolean, _sig?: string }} li
   * @param {() => Promise<unknown>} change
   */
  async function changeMessage(li, change) {
    try {
      await change();
      li._editing = false;
      li._sig = '';
      renderAll();
      input.focus();
    } catch (e) {
      console.warn('chat-widget: could not change the message', e);
      li._editing = false;
      li._sig = '';
      renderAll();
      const why = /** @type {any} */ (e)?.status === 409 ? 'This message can no longer be changed.' : 'Could not change the message.';
      li.append(el('div', { class: 'edit-note', role: 'status', text: why }));
    }
  }

  /**
   * Replaces a message's text with an editor (Enter saves, Escape cancels).
   * @param {HTMLLIElement & { _editing?: boolean, _sig?: string }} li
   * @param {ChatMessage} m
   */
  function startEdit(li, m) {
    li._editing = true;
    const area = /** @type {HTMLTextAreaElement} */ (el('textarea', { class: 'edit-input', 'aria-label': 'Edit your message' }));
    area.value = m.content;
    const save = el('button', { class: 'change save', type: 'button', text: 'Save' });
    const cancel = el('button', { class: 'change cancel', type: 'button', text: 'Cancel' });
    const stop = () => {
      li._editing = false;
      li._sig = '';
      renderAll();
      input.focus();
    };
    const commit = () => {
      const text = area.value.trim();
      if (!text || text === m.content) return stop();
      save.disabled = true;
      changeMessage(li, () => client.editMessage(m.id, text));
    };
    save.addEventListener('click', commit);
    cancel.addEventListener('click', stop);
    area.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        commit();
      } else if (e.key === 'Escape') {
        e.preventDefault();
        e.stopPropagation(); // cancels the edit, not the panel
        stop();
      }
    });
    const form = el('div', { class: 'edit-form' }, area, el('div', { class: 'row' }, save, cancel));
    li.querySelector('.bubble')?.replaceWith(form);
    li.querySelector('.meta')?.remove();
    area.focus();
    area.select();
  }

  /**
   * Gives a row's download links the message's current URLs.
   * @param {HTMLElement} li
   * @param {ChatMessage} m
   */
  function refreshLinks(li, m) {
    for (const a of m.attachments ?? []) {
      const fresh = attachmentUrl(a.url, client.baseUrl);
      const link = [...li.querySelectorAll('li.attachment')].find((x) => x.getAttribute('data-attachment-id') === a.id)?.querySelector('a');
      if (fresh && link && link.getAttribute('href') !== fresh) link.setAttribute('href', fresh);
    }
  }

  function renderAll() {
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    const wanted = [];
    const keep = new Set();
    for (const m of client.messages) {
      renderMessage(m);
      const key = keyOf(m);
      keep.add(key);
      wanted.push(rows.get(key));
    }
    for (const [k, li] of rows) if (!keep.has(k)) { li.remove(); rows.delete(k); }
    empty.hidden = wanted.length > 0;
    older.hidden = !client.hasOlder;
    // Put rows in order, moving only those out of place (keeps the aria-live region calm).
    let prev = empty;
    for (const li of wanted) {
      if (prev.nextSibling !== li) prev.after(li);
      prev = li;
    }
    renderSuggestions();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  /** Shows the suggested replies of the newest message, if it is a stored reply that has some. */
  function renderSuggestions() {
    const newest = client.messages[client.messages.length - 1];
    const offered = newest && newest.role !== 'user' && !newest.streaming ? suggestionsOf(newest) : [];
    const li = offered.length ? rows.get(keyOf(newest)) : undefined;
    if (!li) {
      suggestions.remove();
      suggestionsKey = '';
      return;
    }
    const key = JSON.stringify([newest.id, offered]);
    if (key !== suggestionsKey) {
      suggestionsKey = key;
      suggestions.replaceChildren(...offered.map((text) => {
        const b = el('button', { class: 'suggestion', type: 'button', text });
        b.addEventListener('click', () => {
          client.send(text);
          log.scrollTop = log.scrollHeight;
          input.focus();
        });
        return b;
      }));
    }
    if (li.lastChild !== suggestions) li.append(suggestions);
  }

  /** Who answers, subtly in the header; the handoff button and the composer follow it. */
  function renderMode() {
    const { mode, agent } = client.sessionInfo;
    root.dataset.mode = mode;
    const agentAway = agent && client.participants.some((p) => p.role === 'agent' && p.id === agent.id && !p.online);
    modeText.textContent = mode === 'waiting' ? '· Waiting for a person'
      : mode === 'agent' ? `· ${agent?.name ?? 'An agent'}${agentAway ? ' (away)' : ''}`
        : mode === 'closed' ? '· Closed' : '';
    handoffRow.hidden = mode !== 'bot';
    handoffBtn.disabled = false;
    const closed = mode === 'closed';
    const wasClosed = form.hidden;
    closedRow.hidden = !closed;
    form.hidden = closed;
    input.disabled = closed;
    attachBtn.disabled = closed;
    updateSend();
    if (closed) {
      client.sendTyping(false);
      if (isOpen && shadow.activeElement === input) newConversationBtn.focus();
    } else if (wasClosed && isOpen) input.focus();
  }

  function updateBadge() {
    const n = isOpen ? 0 : client.unreadCount;
    badge.hidden = n === 0;
    badge.textContent = n > 9 ? '9+' : String(n);
    launcher.setAttribute('aria-label', n ? `Open chat (${n} unread)` : 'Open chat');
  }

  function markReadIfOpen() {
    if (isOpen && document.visibilityState !== 'hidden') client.markRead();
    updateBadge();
  }

  function open() {
    if (isOpen) return;
    isOpen = true;
    panel.hidden = false;
    root.classList.add('open');
    launcher.setAttribute('aria-expanded', 'true');
    log.scrollTop = log.scrollHeight;
    input.focus();
    markReadIfOpen();
  }

  function close() {
    if (!isOpen) return;
    isOpen = false;
    panel.hidden = true;
    root.classList.remove('open');
    launcher.setAttribute('aria-expanded', 'false');
    client.sendTyping(false);
    updateBadge();
    launcher.focus();
  }

  const toggle = () => (isOpen ? close() : open());

  function submit() {
    const text = input.value;
    const entries = [...attached.values()];
    if (entries.some((e) => e.state === 'uploading')) {
      showAttachError('Wait until the files are uploaded, then send.');
      return;
    }
    if (!text.trim() && !entries.length) return;
    try {
      client.send(text, entries.length ? { attachments: entries.map((e) => /** @type {ChatAttachment} */ (e.attachment)) } : {});
    } catch (e) {
      showAttachError(/** @type {Error} */ (e).message);
      return;
    }
    for (const e of entries) e.li.remove();
    attached.clear();
    renderTray();
    clearAttachError();
    log.scrollTop = log.scrollHeight;
    input.value = '';
    autosize();
    input.focus();
  }

  // --- attachments of the next message

  /** @type {Map<number, TrayEntry>} */
  const attached = new Map();
  let nextKey = 0;

  /** @param {string} text */
  function showAttachError(text) {
    attachErrorText.textContent = text;
    attachError.hidden = false;
  }
  function clearAttachError() {
    attachErrorText.textContent = '';
    attachError.hidden = true;
  }

  function updateSend() {
    const uploading = [...attached.values()].some((e) => e.state === 'uploading');
    sendBtn.disabled = client.sessionInfo.mode === 'closed' || uploading;
  }

  function renderTray() {
    tray.hidden = attached.size === 0;
    updateSend();
  }

  /**
   * Checks files against the limits and uploads those that pass; says why the others cannot go.
   * @param {Iterable<File>} files
   */
  function attachFiles(files) {
    if (client.sessionInfo.mode === 'closed') return;
    /** @type {string[]} */
    const refused = [];
    for (const file of files) {
      const tooMany = attachmentCountProblem(attached.size + 1, limits);
      if (tooMany) {
        refused.push(tooMany.message);
        break;
      }
      const problem = client.checkAttachment(file);
      if (problem) refused.push(problem.message);
      else startUpload(file);
    }
    if (refused.length) showAttachError(refused.join(' '));
    else clearAttachError();
    renderTray();
  }

  /** @param {File} file */
  function startUpload(file) {
    const key = ++nextKey;
    const name = attachmentName(file.name);
    const image = INLINE_IMAGE_TYPES.includes(contentTypeOf(file));
    const preview = image ? el('canvas', { role: 'img', 'aria-label': `Preview of ${name}`, width: '36', height: '36' }) : el('span', { class: 'ficon', 'aria-hidden': 'true', text: fileBadge(name, contentTypeOf(file)) });
    const bar = el('progress', { max: '100', value: '0', 'aria-label': `Uploading ${name}` });
    const stateText = el('span', { class: 'state', text: `${formatBytes(file.size)} · uploading…` });
    const remove = el('button', { class: 'remove', type: 'button', 'aria-label': `Remove ${name}`, text: '×' });
    const li = el('li', { class: 'chip', 'data-state': 'uploading' }, preview, el('span', { class: 'info' }, el('span', { class: 'name', text: name, title: name }), stateText, bar), remove);
    /** @type {TrayEntry} */
    const entry = { key, file, name, state: 'uploading', loaded: 0, controller: new AbortController(), li, bar, stateText };
    attached.set(key, entry);
    tray.append(li);
    if (image) drawThumbnail(file, /** @type {HTMLCanvasElement} */ (preview));
    remove.addEventListener('click', () => {
      entry.controller.abort();
      attached.delete(key);
      const next = li.nextElementSibling?.querySelector('button.remove') ?? li.previousElementSibling?.querySelector('button.remove');
      li.remove();
      renderTray();
      /** @type {HTMLElement} */ (next ?? input).focus();
    });
    client.upload(file, {
      signal: entry.controller.signal,
      onProgress: ({ loaded, total }) => {
        const pct = total > 0 ? Math.min(100, Math.round((100 * loaded) / total)) : 0;
        bar.value = pct;
        stateText.textContent = `${formatBytes(file.size)} · ${pct} %`;
      },
    }).then((attachment) => {
      if (attached.get(key) !== entry) return; // removed meanwhile
      entry.attachment = attachment;
      entry.state = 'ready';
      li.dataset.state = 'ready';
      bar.value = 100;
      bar.hidden = true;
      stateText.textContent = `${formatBytes(file.size)} · ready`;
      renderTray();
    }, (/** @type {any} */ e) => {
      if (attached.get(key) !== entry) return; // removed (aborted) meanwhile
      attached.delete(key);
      li.remove();
      renderTray();
      showAttachError(e?.message || `Could not upload “${name}”.`);
    });
  }

  /**
   * Draws a small preview of an image on `canvas` (decoded by the browser, no URL needed);
   * a file it cannot decode keeps the blank tile.
   * @param {File} file
   * @param {HTMLCanvasElement} canvas
   */
  async function drawThumbnail(file, canvas) {
    if (typeof createImageBitmap !== 'function') return;
    try {
      const bitmap = await createImageBitmap(file);
      const scale = Math.min(1, 96 / Math.max(bitmap.width, bitmap.height));
      canvas.width = Math.max(1, Math.round(bitmap.width * scale));
      canvas.height = Math.max(1, Math.round(bitmap.height * scale));
      canvas.getContext('2d')?.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      bitmap.close();
      canvas.dataset.drawn = 'true';
    } catch {
      /* not an image the browser can decode: the tile stays blank */
    }
  }

  attachBtn.addEventListener('click', () => fileInput.click());
  fileInput.addEventListener('change', () => {
    attachFiles(fileInput.files ?? []);
    fileInput.value = '';
    input.focus();
  });
  attachErrorClose.addEventListener('click', () => {
    clearAttachError();
    input.focus();
  });
  input.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files ?? [])];
    if (!files.length) return;
    if (!e.clipboardData?.getData('text/plain')) e.preventDefault();
    attachFiles(files);
  });
  const dragsFiles = (/** @type {DragEvent} */ e) => !!e.dataTransfer && [...e.dataTransfer.types].includes('Files') && client.sessionInfo.mode !== 'closed';
  panel.addEventListener('dragover', (e) => {
    if (!dragsFiles(e)) return;
    e.preventDefault();
    /** @type {DataTransfer} */ (e.dataTransfer).dropEffect = 'copy';
    dropZone.hidden = false;
  });
  panel.addEventListener('dragleave', (e) => {
    const to = /** @type {Node | null} */ (e.relatedTarget);
    if (!to || !panel.contains(to)) dropZone.hidden = true;
  });
  panel.addEventListener('drop', (e) => {
    dropZone.hidden = true;
    if (!dragsFiles(e)) return;
    e.preventDefault();
    attachFiles(/** @type {DataTransfer} */ (e.dataTransfer).files);
    input.focus();
  });

  function autosize() {
    input.style.height = 'auto';
    input.style.height = `${Math.min(120, input.scrollHeight + 2)}px`;
  }

  // --- previous conversations (signed-in users)

  /** @type {ConversationSummary[]} */
  let listed = [];
  /** @type {string | undefined} */
  let nextCursor;
  let listing = false;

  /** Renders the listed conversations, each a button (its title and texts as text). */
  function renderConversations() {
    const now = Date.now();
    convList.replaceChildren(...listed.map((c) => {
      const when = relativeTime(c.updatedAt, now);
      const unread = c.unreadCount > 0 ? `${c.unreadCount} unread` : '';
      const current = c.sessionId === client.sessionId;
      const last = c.lastMessage?.content ?? '';
      const b = el('button', {
        class: 'conv', type: 'button', 'data-session-id': c.sessionId, 'aria-current': current ? 'true' : null,
        'aria-label': [c.title, when, unread, current ? 'open now' : ''].filter(Boolean).join(', '),
      },
      el('span', { class: 'conv-title', text: c.title }),
      el('time', { class: 'conv-time', datetime: c.updatedAt, title: new Date(c.updatedAt).toLocaleString(), text: when }),
      el('span', { class: 'conv-last', text: last }),
      el('span', { class: 'conv-unread', hidden: !unread, text: unread }));
      b.addEventListener('click', () => openConversation(c.sessionId));
      return el('li', {}, b);
    }));
    moreBtn.hidden = !nextCursor;
  }

  /** Loads the first page (`more`: the next one) of the user's conversations. */
  async function loadConversations(more = false) {
    convStatus.textContent = 'Loading…';
    try {
      const page = await client.listConversations(more && nextCursor ? { cursor: nextCursor } : {});
      listed = more ? mergeConversations(listed, page.sessions) : mergeConversations([], page.sessions);
      nextCursor = page.nextCursor;
      convStatus.textContent = listed.length ? '' : 'No conversations yet.';
    } catch (e) {
      console.warn('chat-widget: could not list conversations', e);
      convStatus.textContent = 'Could not load your conversations.';
    }
    renderConversations();
  }

  /** Shows the list of conversations instead of the messages. */
  async function showConversations() {
    listing = true;
    panel.classList.add('listing');
    conversations.hidden = false;
    historyBtn.setAttribute('aria-expanded', 'true');
    listed = [];
    nextCursor = undefined;
    renderConversations();
    startNewBtn.focus();
    await loadConversations();
    if (!listing) return;
    const focusNow = shadow.activeElement;
    if (!focusNow || focusNow === startNewBtn || focusNow === historyBtn) {
      /** @type {HTMLElement | null} */ (convList.querySelector('.conv[aria-current="true"]') ?? convList.querySelector('.conv'))?.focus();
    }
  }

  /** Back to the messages. */
  function showChat() {
    listing = false;
    panel.classList.remove('listing');
    conversations.hidden = true;
    historyBtn.setAttribute('aria-expanded', 'false');
    log.scrollTop = log.scrollHeight;
    if (!input.disabled) input.focus();
  }

  /** Opens one of the user's conversations on this device. */
  async function openConversation(/** @type {string} */ sessionId) {
    if (sessionId === client.sessionId) {
      showChat();
      return;
    }
    convStatus.textContent = 'Opening…';
    try {
      await client.resumeConversation(sessionId);
      convStatus.textContent = '';
      showChat();
    } catch (e) {
      console.warn('chat-widget: could not open the conversation', e);
      convStatus.textContent = 'Could not open that conversation.';
    }
  }

  historyBtn.addEventListener('click', () => (listing ? showChat() : showConversations()));
  moreBtn.addEventListener('click', () => loadConversations(true));
  startNewBtn.addEventListener('click', () => {
    startNewBtn.disabled = true;
    showChat();
    client.newConversation().catch((e) => console.error('chat-widget: could not start a new conversation', e))
      .finally(() => {
        startNewBtn.disabled = false;
      });
  });
  conversations.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation(); // back to the conversation, not closing the panel
      showChat();
      return;
    }
    const items = /** @type {HTMLElement[]} */ ([...convList.querySelectorAll('.conv')]);
    const at = items.indexOf(/** @type {HTMLElement} */ (shadow.activeElement));
    if (at < 0 || !items.length) return;
    const to = e.key === 'ArrowDown' ? Math.min(items.length - 1, at + 1)
      : e.key === 'ArrowUp' ? Math.max(0, at - 1)
        : e.key === 'Home' ? 0 : e.key === 'End' ? items.length - 1 : -1;
    if (to < 0) return;
    e.preventDefault();
    items[to].focus();
  });

  olderBtn.addEventListener('click', async () => {
    const before = log.scrollHeight;
    olderBtn.disabled = true;
    try {
      await client.loadOlder();
    } catch (e) {
      console.warn('chat-widget: could not load earlier messages', e);
    }
    olderBtn.disabled = false;
    older.hidden = !client.hasOlder;
    log.scrollTop += log.scrollHeight - before; // keep the reader's place
  });
  handoffBtn.addEventListener('click', async () => {
    handoffBtn.disabled = true;
    try {
      await client.requestHandoff();
      // The server's answer (the `mode` event) hides the button; if it never comes, it is usable again.
      setTimeout(() => { handoffBtn.disabled = false; }, 10_000);
    } catch (e) {
      console.warn('chat-widget: could not ask for a person', e);
      handoffBtn.disabled = false;
    }
    input.focus();
  });
  newConversationBtn.addEventListener('click', () => {
    newConversationBtn.disabled = true;
    client.newConversation().catch((e) => console.error('chat-widget: could not start a new conversation', e))
      .finally(() => {
        newConversationBtn.disabled = false;
      });
  });
  launcher.addEventListener('click', toggle);
  closeBtn.addEventListener('click', close);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    submit();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  input.addEventListener('input', () => {
    autosize();
    if (input.value) client.sendTyping(true);
    else client.sendTyping(false);
  });
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      close();
    }
  });
  document.addEventListener('visibilitychange', markReadIfOpen);

  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let typingTimer;
  const offs = [
    client.on('change', () => {
      renderAll();
      markReadIfOpen();
    }),
    client.on('reset', () => {
      for (const li of rows.values()) li.remove();
      rows.clear();
      renderAll();
    }),
    client.on('read', updateBadge),
    client.on('typing', ({ role, isTyping, name }) => {
      if (role === 'user') return; // another tab of this user
      clearTimeout(typingTimer);
      typing.hidden = !isTyping;
      typingText.textContent = isTyping ? `${(role === 'agent' && name) || ROLE_LABELS[role] || role} is typing…` : '';
      if (isTyping) typingTimer = setTimeout(() => { typing.hidden = true; }, 30_000);
    }),
    client.on('mode', renderMode),
    client.on('presence', renderMode),
    client.on('connection', ({ state }) => {
      conn.dataset.state = state;
      connText.textContent = CONN_LABELS[state] ?? state;
      root.dataset.connection = state;
    }),
  ];

  renderAll();
  renderMode();
  client.start().catch((e) => console.error('chat-widget: could not start', e));
  if (options.open) open();

  return {
    client,
    element: host,
    open,
    close,
    toggle,
    get isOpen() {
      return isOpen;
    },
    destroy() {
      for (const e of attached.values()) e.controller.abort();
      offs.forEach((off) => off());
      document.removeEventListener('visibilitychange', markReadIfOpen);
      if (!options.client) client.stop();
      host.remove();
    },
  };
}

// Auto-mount for the one-line embed, unless the page opts out.
const page = /** @type {typeof globalThis & { chatWidgetConfig?: ChatWidgetOptions, __chatWidget?: ReturnType<typeof mountChatWidget> }} */ (globalThis);
const config = page.chatWidgetConfig ?? {};
if (typeof document !== 'undefined' && config.autoMount !== false && !page.__chatWidget) {
  const mount = () => {
    page.__chatWidget = mountChatWidget(config);
  };
  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount, { once: true });
}
