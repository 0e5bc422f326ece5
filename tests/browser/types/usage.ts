// web/chat-client.js and web/chat-widget.js used the way README.md and chat-client.d.ts
// document them, through the declarations a TypeScript user gets. Compiled, never run, by tsc
// in tests/browser/run: a declaration that cannot express a documented use fails the browser
// tests. It names every export, every constructor option and every event, so a declaration
// that is renamed or dropped fails here too.

import {
  ChatApiError,
  ChatClient,
  DEFAULTS,
  addPending,
  advanceCursor,
  applyDelta,
  backoffDelay,
  clearStreams,
  compareMessages,
  createTypingDebouncer,
  furthestStatus,
  hasGap,
  impliedStatus,
  jwtSubject,
  markSent,
  mergeMessage,
  mergeMessages,
  newClientMessageId,
  sendsDue,
  sessionUsable,
  setPendingState,
  settleFromMessages,
  settlePending,
  suggestionsOf,
  sessionInfoOf,
  modeFromMessages,
  sameSessionInfo,
  relativeTime,
  mergeConversations,
  ATTACHMENT_DEFAULTS,
  INLINE_IMAGE_TYPES,
  ChatAttachmentError,
  attachmentCountProblem,
  attachmentName,
  attachmentProblem,
  attachmentUrl,
  attachmentsOf,
  contentTypeOf,
  describeTypes,
  fileBadge,
  formatBytes,
  typeAllowed,
  uploadFile,
  type AttachmentErrorCode,
  type AttachmentLimits,
  type AttachmentProblem,
  type ChatAttachment,
  type UploadOptions,
  type ChatClientEvents,
  type ChatClientOptions,
  type ChatMessage,
  type ChatMessageData,
  type DeltaFrame,
  type ConnectionState,
  type ConversationSummary,
  type ConversationsPage,
  type MessageStatus,
  type MessageType,
  type PendingSend,
  type PendingSends,
  type Participant,
  type Role,
  type SessionInfo,
  type SessionMode,
  type StorageLike,
  type StoredSession,
  type TypingDebouncer,
} from '../../../web/chat-client.js';
import { TYPE_LABELS, mountChatWidget } from '../../../web/chat-widget.js';
import {
  LINK_PROTOCOLS, MARKDOWN_ATTRIBUTES, MARKDOWN_ELEMENTS, parseInline, parseMarkdown, renderMarkdown, safeHref,
} from '../../../web/chat-markdown.js';

declare function render(messages: readonly ChatMessage[]): void;
declare function showTyping(role: Role, isTyping: boolean): void;
declare function showState(state: ConnectionState): void;
declare const input: HTMLTextAreaElement;
declare const form: HTMLFormElement;
declare const appJwt: string;

// README, "Use ChatClient directly", as written there.
const chat = new ChatClient({ baseUrl: 'https://your-chat-host', authToken: appJwt });
chat.on('change', ({ messages }) => render(messages));
chat.on('typing', ({ role, isTyping }) => showTyping(role, isTyping));
chat.on('connection', ({ state }) => showState(state));
await chat.start();
input.oninput = () => chat.sendTyping();
form.onsubmit = (e) => { e.preventDefault(); chat.send(input.value); input.value = ''; };

// Every constructor option (Required<>: an option added to the declarations must appear here).
const storage: StorageLike = window.localStorage;
const allOptions: Required<ChatClientOptions> = {
  baseUrl: location.origin,
  authToken: async () => (Math.random() > 0.5 ? appJwt : null),
  sessionMetadata: { page: '/checkout' },
  storageKey: 'my-chat',
  storage,
  fetch: (url, init) => window.fetch(url, init),
  WebSocket: window.WebSocket,
  backoffBaseMs: DEFAULTS.backoffBaseMs,
  backoffMaxMs: DEFAULTS.backoffMaxMs,
  backoffJitter: DEFAULTS.backoffJitter,
  pingIntervalMs: DEFAULTS.pingIntervalMs,
  pongTimeoutMs: DEFAULTS.pongTimeoutMs,
  maxConnectionAgeMs: DEFAULTS.maxConnectionAgeMs,
  ackTimeoutMs: DEFAULTS.ackTimeoutMs,
  typingRepeatMs: DEFAULTS.typingRepeatMs,
  typingIdleMs: DEFAULTS.typingIdleMs,
  sessionRenewMarginMs: DEFAULTS.sessionRenewMarginMs,
  pageSize: DEFAULTS.pageSize,
  resumeLatest: DEFAULTS.resumeLatest,
  editWindowMs: DEFAULTS.editWindowMs,
  attachments: { maxBytes: 5 * 1024 * 1024, types: ['image/*', 'application/pdf'], maxPerMessage: 3 },
  XMLHttpRequest: window.XMLHttpRequest,
};
const client = new ChatClient(allOptions);
new ChatClient();
new ChatClient({ authToken: null });
new ChatClient({ authToken: () => null });

// Every event, with the fields its detail has (a mapped type: an event added must appear here).
const listeners: { [K in keyof ChatClientEvents]: (detail: ChatClientEvents[K]) => void } = {
  message: ({ message, isNew }) => console.log(message.id, message.seq ?? 'unsent', isNew, message.streaming === true),
  delta: ({ message, index, text, gap }) => console.log(message.content, message.streamIndex ?? 0, index + 1, text, gap),
  streamCleared: ({ messageIds }) => console.log(messageIds.length),
  change: ({ messages }) => render(messages),
  status: ({ messageId, status }) => console.log(messageId, status satisfies MessageStatus),
  typing: ({ role, isTyping, name }) => { showTyping(role, isTyping); console.log(name ?? ''); },
  mode: ({ mode, agent, waitingSince, previous }) => console.log(mode satisfies SessionMode, agent?.name ?? '', waitingSince ?? '', previous),
  presence: ({ participants }) => console.log(participants.map((p: Participant) => `${p.role}:${p.id}:${p.name ?? ''}:${p.online}`)),
  read: ({ upTo, unreadCount, local }) => console.log(upTo + unreadCount, local === true),
  ack: ({ clientMessageId, messageId, seq }) => console.log(clientMessageId, messageId, seq + 1),
  connection: ({ state, attempt, retryInMs, reason }) => console.log(state, attempt, retryInMs ?? 0, reason ?? ''),
  session: ({ sessionId, isNew, expiresAt }) => console.log(sessionId, isNew, Date.parse(expiresAt)),
  reset: ({ sessionId }) => console.log(sessionId),
  ready: ({ sessionId }) => console.log(sessionId.length),
  error: ({ code, message, clientMessageId }) => console.log(code ?? '', message ?? '', clientMessageId ?? ''),
  uploadProgress: ({ name, loaded, total }) => console.log(name, loaded / total),
};
for (const type of Object.keys(listeners) as (keyof ChatClientEvents)[]) {
  const off: () => void = client.on(type, listeners[type] as (detail: unknown) => void);
  off();
}
client.off('change', listeners.change);

// The rest of the documented API: state, sending, history, lifecycle.
const sent: ChatMessage = client.send('Hello', { metadata: { orderId: 42 }, clientMessageId: newClientMessageId() });
const again: ChatMessage | undefined = client.retry(sent.clientMessageId ?? sent.id);
client.sendTyping(false);
client.markRead();
client.markRead(sent.seq ?? 0);
const more: boolean = await client.loadOlder(50);
const state: {
  messages: readonly ChatMessage[]; connection: ConnectionState; sessionId: string | null; cursor: number;
  readUpTo: number; hasOlder: boolean; unread: number; baseUrl: string; pageSize: number;
} = {
  messages: client.messages,
  connection: client.connectionState,
  sessionId: client.sessionId,
  cursor: client.cursor,
  readUpTo: client.readUpTo,
  hasOlder: client.hasOlder,
  unread: client.unreadCount,
  baseUrl: client.baseUrl,
  pageSize: client.options.pageSize,
};
const info: SessionInfo = client.sessionInfo;
const who: readonly Participant[] = client.participants;
console.log(client.mode satisfies SessionMode, info.agent?.id, who.length);
await client.requestHandoff();
await client.newConversation();
// A signed-in user's conversations on any device, and opening one here.
const page: ConversationsPage = await client.listConversations({ limit: 20 });
const nextPage = page.nextCursor ? await client.listConversations({ cursor: page.nextCursor }) : { sessions: [] };
const all: ConversationSummary[] = mergeConversations(page.sessions, nextPage.sessions);
for (const c of all) console.log(c.title, relativeTime(c.updatedAt, Date.now()), c.unreadCount, c.mode, c.lastMessage?.content);
if (all[0]) await client.resumeConversation(all[0].sessionId);
const fromView: SessionInfo = sessionInfoOf({ mode: 'agent', agent: { id: 'a-1', name: 'Alex' } });
const said: { seq: number; info: SessionInfo } | null = modeFromMessages(client.messages);
console.log(sameSessionInfo(fromView, said?.info ?? info));
client.stop();
client.forgetSession();
console.log(again, more, state);

// A message as the server sends it, and the client's own fields.
const type: MessageType = 'scheduling_update';
const stored: ChatMessage = {
  id: '01J0000000000000000000000A', seq: 3, sessionId: '01J0000000000000000000000S', role: 'assistant', type,
  content: 'Moved to 10:00', data: { slot: '10:00' }, metadata: {}, status: 'answered', createdAt: new Date().toISOString(),
  replyTo: '01J0000000000000000000000B',
};
const unsent: ChatMessage = {
  id: 'local:c1', clientMessageId: 'c1', sessionId: null, role: 'user', type: 'text', content: 'hi',
  status: 'queued', createdAt: new Date().toISOString(), pending: true, localOrder: 1, error: undefined, retried: false,
};

// Errors from the HTTP API.
try {
  await client.start();
} catch (e) {
  if (e instanceof ChatApiError) console.log(e.status, e.code ?? '', e.retryAfter ?? 0, e.message);
}
const refused = new ChatApiError(429, 'rate_limited', 'too many', 6);

// The pure helpers.
const delay: number = backoffDelay(3, { baseMs: 100, maxMs: 1000, jitter: 0.5 }, Math.random) + backoffDelay(0);
const status: MessageStatus | undefined = furthestStatus('received', 'answered') ?? furthestStatus();
const implied: 'answered' | 'failed' | null = impliedStatus(stored);
const order: number = compareMessages(stored, unsent);
const one = mergeMessage([unsent], { id: 'x', clientMessageId: 'c1', seq: 4, status: 'received' });
const many = mergeMessages(one.list, [stored, { id: stored.id, status: 'answered' }]);
const changed: { message: ChatMessage; added: boolean }[] = many.changes;
const cursor: number = advanceCursor(2, new Set([3, 4])) + advanceCursor(0, [1, 2]);
const gap: boolean = hasGap(cursor, 9);
let pending: PendingSends = addPending(new Map(), { clientMessageId: 'c1', content: 'hi', createdAt: Date.now() });
pending = markSent(pending, 'c1', Date.now());
pending = setPendingState(pending, 'c1', 'failed', { error: 'too long' });
const due: PendingSend[] = sendsDue(pending, Date.now(), { ackTimeoutMs: 1000, reconnected: true });
pending = settleFromMessages(settlePending(pending, 'c1'), [stored, unsent]);
const typing: TypingDebouncer = createTypingDebouncer((on) => console.log(on), {
  repeatMs: 3000, idleMs: 2500, now: () => Date.now(), setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (t) => clearTimeout(t as number),
});
typing.keystroke();
typing.stop();
const subject: string | null = jwtSubject(appJwt);
const session: StoredSession = {
  sessionId: 's', token: 't', expiresAt: new Date().toISOString(), websocketUrl: 'wss://example.test/ws', subject,
};
const usable: boolean = sessionUsable(session, Date.now()) || sessionUsable(null, Date.now(), 60_000, 'user-1');
console.log(refused, delay, status, implied, order, changed, gap, due, typing.typing, usable);

// Streamed replies and suggested replies.
const frame: DeltaFrame = { event: 'delta', messageId: '01J0000000000000000000000R', replyTo: stored.id, index: 0, text: 'Hel' };
const streamed = applyDelta([stored], frame, { createdAt: new Date().toISOString(), localOrder: 1 });
const partial: ChatMessage | null = streamed.message;
const more2 = applyDelta(streamed.list, { ...frame, index: 1, text: 'lo' }, { createdAt: new Date().toISOString() });
const stillWriting: boolean = more2.added || more2.changed || more2.gap || partial?.streaming === true;
const { list: withoutStreams, cleared }: { list: readonly ChatMessage[]; cleared: string[] } = clearStreams(more2.list, new Set([frame.messageId]));
const data: ChatMessageData = { suggestions: ['Yes', 'No'], incomplete: false, orderId: 7 };
const offered: string[] = suggestionsOf({ ...stored, data }, { max: 3, maxChars: 80 }).concat(suggestionsOf(null));
const delivered: MessageStatus = 'delivered';
console.log(stillWriting, withoutStreams, cleared, offered, delivered);

// The Markdown renderer the widget uses, on its own.
const fragment: DocumentFragment = renderMarkdown('**Hi** [docs](https://example.com)', { document, headingOffset: 2 });
const blocks = parseMarkdown('# Title');
const inlines = parseInline('*em*');
const href: string | null = safeHref('https://example.com');
console.log(fragment, blocks, inlines, href, MARKDOWN_ELEMENTS.includes('a'), MARKDOWN_ATTRIBUTES.a, LINK_PROTOCOLS);

// README, "Embed the chat widget in a page": window.chatWidgetConfig and mountChatWidget.
const widget = mountChatWidget({
  title: 'Support',
  subtitle: 'We usually answer within seconds.',
  authToken: appJwt,
  open: true,
  autoMount: false,
  placeholder: 'Ask us',
  storageKey: 'my-chat',
  clientOptions: { backoffMaxMs: 10_000 },
});
widget.open();
widget.toggle();
widget.close();
const shown: boolean = widget.isOpen;
const host: HTMLElement = widget.element;
const label: string | null = TYPE_LABELS.confirmation;
mountChatWidget({ client: widget.client, container: document.body }).destroy();
console.log(shown, host, label);

// README, "Attachments": upload files, then send them with a message.
declare const fileInput: HTMLInputElement;
const limits: AttachmentLimits = client.attachmentLimits;
const picked: File[] = [...(fileInput.files ?? [])];
const refusedNow: (ChatAttachmentError | null)[] = picked.map((f) => client.checkAttachment(f));
const controller = new AbortController();
const uploadOptions: UploadOptions = { onProgress: ({ loaded, total }) => console.log(`${Math.round((100 * loaded) / total)} %`), signal: controller.signal };
try {
  const uploaded: ChatAttachment[] = await Promise.all(picked.map((f) => client.upload(f, uploadOptions)));
  const withFiles: ChatMessage = client.send('', { attachments: uploaded });
  for (const a of withFiles.attachments ?? []) console.log(a.id, a.name, a.contentType, a.size, a.url ?? 'not stored yet');
} catch (e) {
  if (e instanceof ChatAttachmentError) {
    const code: AttachmentErrorCode = e.code;
    console.log(code, e.fileName ?? '', e.status ?? 0, e.message);
  }
}
const problem: AttachmentProblem | null = attachmentProblem({ name: 'a.exe', type: 'application/x-msdownload', size: 3 }, { types: ['image/*'] })
  ?? attachmentCountProblem(6, ATTACHMENT_DEFAULTS) ?? attachmentCountProblem(1);
const shownName: string = attachmentName('../etc/passwd');
const typeOf: string = contentTypeOf({ name: 'photo.JPG', type: '' });
const okType: boolean = typeAllowed(typeOf, limits.types) && INLINE_IMAGE_TYPES.includes(typeOf);
const sizes: string = `${formatBytes(1536)} ${describeTypes(ATTACHMENT_DEFAULTS.types)} ${fileBadge('a.pdf', 'application/pdf')} ${fileBadge('b.zip')}`;
const link: string | null = attachmentUrl('/files/01J?token=t', client.baseUrl) ?? attachmentUrl('javascript:alert(1)');
const kept: ChatAttachment[] = attachmentsOf([{ id: 'A', name: 'a.png', contentType: 'image/png', size: 3, url: 'https://x.test/a' }, null]);
await uploadFile('https://bucket.test/put', { 'Content-Type': 'image/png' }, new Blob(['x']), { ...uploadOptions, XMLHttpRequest, fileName: 'a.png' });
console.log(refusedNow, problem?.code, problem?.message, shownName, okType, sizes, link, kept, new ChatAttachmentError('too_large', 'too big', 'a.png', 413));
