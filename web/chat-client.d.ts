// Types of chat-client.js (the browser client of the chat backend; see DESIGN.md).

export type Role = 'user' | 'assistant' | 'system' | 'agent';
export type MessageType =
  | 'text'
  | 'confirmation'
  | 'clarification'
  | 'cancellation'
  | 'error'
  | 'info'
  | 'scheduling_update';
/** Server statuses (`delivered`: a reply from the assistant or an agent), plus the client's
 * own `queued` / `sending` / `failed` for unsent messages. */
export type MessageStatus = 'queued' | 'sending' | 'received' | 'dispatched' | 'answered' | 'failed' | 'delivered';
export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';
/** Who answers a session: the bot, nobody yet (a person was asked for), a person, or no one
 * (closed: a new session is the way on). */
export type SessionMode = 'bot' | 'waiting' | 'agent' | 'closed';

/** Who answers a session, as the session view, `session` events and the system message of
 * each change say it. */
export interface SessionInfo {
  mode: SessionMode;
  /** The person holding it (mode `agent`). */
  agent?: { id: string; name: string };
  /** Since when it waits for a person (mode `waiting`; RFC 3339). */
  waitingSince?: string;
}

/** Someone in a session, from a `presence` event. */
export interface Participant {
  role: Role;
  /** The user id (or `guest`), or the agent's id. */
  id: string;
  /** An agent's name. */
  name?: string;
  online: boolean;
}

export interface ChatMessage {
  /** A ULID once stored; `local:<clientMessageId>` while only optimistic. */
  id: string;
  /** The message's number in its session (1, 2, 3, … without gaps); absent while unsent. */
  seq?: number;
  /** Null on a message sent before the session existed (shown at once, sent once it does). */
  sessionId?: string | null;
  role: Role;
  /** The agent's name, on `agent` messages. */
  name?: string;
  type: MessageType;
  /** The text; while `streaming`, the text so far. */
  content: string;
  data?: ChatMessageData;
  metadata?: Record<string, unknown>;
  status: MessageStatus;
  createdAt: string;
  replyTo?: string;
  clientMessageId?: string;
  /** True while the server has not stored it. */
  pending?: boolean;
  /** The order in which messages not stored yet were sent (they sort after every stored one). */
  localOrder?: number;
  /** Why the server refused it (status `failed`). */
  error?: string;
  /** A `failed` message whose text was sent again with `retry` (this session only). */
  retried?: boolean;
  /** True while the reply is being written (`delta` frames): not stored yet, no seq; the
   * stored reply (a `message` with the same id) replaces it whole. */
  streaming?: boolean;
  /** While streaming: the `index` of the last delta applied. */
  streamIndex?: number;
  /** When it last changed: `createdAt`, or its last edit or deletion. */
  updatedAt?: string;
  /** When its sender last edited it. */
  editedAt?: string;
  /** A tombstone: its sender deleted it (`content` is empty). */
  deleted?: boolean;
  deletedAt?: string;
  /** Files sent with the message. Stored messages carry a download `url` for each (valid
   * about an hour, minted whenever the message is read or pushed); an unsent one has none yet. */
  attachments?: ChatAttachment[];
}

/** A file sent with a message (`POST /sessions/{id}/attachments`, uploaded, then sent by id). */
export interface ChatAttachment {
  /** The attachment id a message is sent with. */
  id: string;
  /** The file's name (text from the sender: show it as text, never as markup). */
  name: string;
  contentType: string;
  /** Bytes. */
  size: number;
  /** A short-lived download URL (absolute, or a path on the chat server); absent while unsent. */
  url?: string;
}

/** What the server accepts as attachments (its `CHAT_ATTACHMENT_*` settings). */
export interface AttachmentLimits {
  /** Largest file, in bytes. Default 10 MB (10485760). */
  maxBytes: number;
  /** Accepted content types; an entry may end in `/*` (`image/*`). Default: PNG, JPEG, GIF,
   * WebP, PDF, plain text. */
  types: readonly string[];
  /** Most attachments in one message. Default 5. */
  maxPerMessage: number;
}

/** Why a file cannot be attached, found before anything is uploaded. */
export interface AttachmentProblem {
  code: 'empty' | 'too_large' | 'type_not_allowed' | 'too_many';
  /** A sentence to show as it is (the file's name in it is text). */
  message: string;
}

/** `refused`: the server said no (`status` and its message); `upload_failed`: the upload
 * itself failed (network, storage); `aborted`: the page cancelled it. */
export type AttachmentErrorCode = AttachmentProblem['code'] | 'refused' | 'upload_failed' | 'aborted';

/** Options of `ChatClient.upload` and `uploadFile`. */
export interface UploadOptions {
  /** Called as the bytes go up (XMLHttpRequest's upload progress). */
  onProgress?: (progress: { loaded: number; total: number }) => void;
  /** Aborting it cancels the upload (`ChatAttachmentError` with code `aborted`). */
  signal?: AbortSignal;
}

/** A message's free `data`, with the fields the client and widget understand. */
export interface ChatMessageData {
  /** Suggested replies: the widget shows them as buttons (on the newest reply) that send
   * that text. See `suggestionsOf`. */
  suggestions?: unknown[];
  /** The reply's stream broke: `content` is what came before it did. */
  incomplete?: boolean;
  /** On the system message announcing a change of who answers: the new mode (and agent). */
  mode?: SessionMode;
  agent?: { id: string; name: string };
  [key: string]: unknown;
}

/** A piece of a reply being written, as the server pushes it (coalesced; `index` counts the
 * deltas of one reply from 0). The stored `message` with the same `messageId` follows. */
export interface DeltaFrame {
  event: 'delta';
  /** The reply's id (the stored message will have it). */
  messageId: string;
  /** The user message it answers. */
  replyTo: string;
  index: number;
  /** Text appended to the reply. */
  text: string;
}

export interface StoredSession {
  sessionId: string;
  token: string;
  expiresAt: string;
  websocketUrl: string;
  /** `sub` of the app JWT it was created with; null for guests. */
  subject?: string | null;
}

/** One of a signed-in user's conversations, as `GET /sessions` lists them. */
export interface ConversationSummary {
  sessionId: string;
  /** The first user message's first 80 characters, or "New conversation". */
  title: string;
  createdAt: string;
  /** The last activity (RFC 3339); the list is newest first by it. */
  updatedAt: string;
  lastMessage?: ChatMessage;
  unreadCount: number;
  mode: SessionMode;
}

/** A page of `GET /sessions`; `nextCursor` asks for the next one. */
export interface ConversationsPage {
  sessions: ConversationSummary[];
  nextCursor?: string;
}

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface ChatClientOptions {
  /** The chat server's HTTP base URL. Default: the page's origin. */
  baseUrl?: string;
  /** An app JWT (or a function returning one) for signed-in users; none: a guest session. */
  authToken?: string | null | (() => string | null | Promise<string | null>);
  /** Stored with the new session as its metadata, if the server accepts it. */
  sessionMetadata?: Record<string, unknown>;
  /** localStorage key of the session. Default: `chat-session:<baseUrl>`. */
  storageKey?: string;
  storage?: StorageLike;
  fetch?: typeof fetch;
  WebSocket?: typeof WebSocket;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** 0..1: the share of each delay that is random. */
  backoffJitter?: number;
  /** Default 5 minutes (API Gateway closes idle sockets after 10). */
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
  /** Reconnect (make before break) after this long. Default 110 minutes (the limit is 2 hours). */
  maxConnectionAgeMs?: number;
  /** What the server accepts as attachments, checked before a file is uploaded (the server
   * checks again). Default: the server's defaults (`ATTACHMENT_DEFAULTS`). */
  attachments?: Partial<AttachmentLimits>;
  /** For uploads (progress needs XMLHttpRequest). Default: the page's. */
  XMLHttpRequest?: typeof XMLHttpRequest;
  /** Resend an unacknowledged message after this long. */
  ackTimeoutMs?: number;
  typingRepeatMs?: number;
  typingIdleMs?: number;
  sessionRenewMarginMs?: number;
  pageSize?: number;
  /**
   * A signed-in user on a device with no usable session opens their most recent conversation
   * (`GET /sessions?limit=1`, then `POST /sessions/{id}/resume`) instead of creating one; a
   * session is created only when they have none, or by `newConversation()`. Default true.
   */
  resumeLatest?: boolean;
  /** How long after sending the user may edit or delete a message (the server's
   * `CHAT_EDIT_WINDOW_S`); `canChange` offers it only within. Default 5 minutes. */
  editWindowMs?: number;
}

export interface ChatClientEvents {
  /** A message was added or changed (optimistic, acknowledged, stored, status, streamed). */
  message: { message: ChatMessage; isNew: boolean };
  /** A reply being streamed grew by `text` (delta `index`); `message` is the reply so far.
   * `gap`: a delta was missed (the stored reply will have the whole text). */
  delta: { message: ChatMessage; index: number; text: string; gap: boolean };
  /** After a reconnect, replies whose stream will not finish here were dropped from
   * `messages`; each arrives whole once stored. */
  streamCleared: { messageIds: string[] };
  /** The ordered list changed (after one or more `message` events). */
  change: { messages: readonly ChatMessage[] };
  status: { messageId: string; status: MessageStatus };
  /** `name`: an agent's name, when an agent types. */
  typing: { role: Role; isTyping: boolean; name?: string };
  /** Who answers the session changed (`previous` was the mode before). */
  mode: SessionInfo & { previous: SessionMode };
  /** Who is in the session and online (the user, the agent holding it). */
  presence: { participants: Participant[] };
  read: { upTo: number; unreadCount: number; local?: boolean };
  ack: { clientMessageId: string; messageId: string; seq: number };
  connection: { state: ConnectionState; attempt: number; retryInMs?: number; reason?: string };
  session: { sessionId: string; isNew: boolean; expiresAt: string };
  /** A new session replaced the old one: the message list was cleared. */
  reset: { sessionId: string };
  /** History is loaded (after the first catch-up of a connect). */
  ready: { sessionId: string };
  error: { code?: string; message?: string; clientMessageId?: string };
  /** An upload (`upload`) progressed: `loaded` of `total` bytes of the file `name`. */
  uploadProgress: { name: string; loaded: number; total: number };
}

/** An HTTP error from the chat API (a non-2xx answer), with the contract's error `code`. */
export class ChatApiError extends Error {
  constructor(status: number, code?: string, message?: string, retryAfter?: number);
  /** The HTTP status. */
  readonly status: number;
  readonly code?: string;
  /** Seconds to wait, from a 429's `Retry-After`. */
  readonly retryAfter?: number;
}

/** A file that cannot be attached or uploaded: refused before the upload (the limits), by the
 * server (`refused`, with its HTTP `status`), or an upload that failed or was cancelled. */
export class ChatAttachmentError extends Error {
  constructor(code: AttachmentErrorCode, message: string, fileName?: string, status?: number);
  readonly code: AttachmentErrorCode;
  /** The file's name (as declared). */
  readonly fileName?: string;
  /** The HTTP status, when the server or the storage refused it. */
  readonly status?: number;
}

export class ChatClient {
  constructor(options?: ChatClientOptions);
  readonly options: Required<Omit<ChatClientOptions, 'authToken' | 'sessionMetadata' | 'storage' | 'fetch' | 'WebSocket' | 'storageKey' | 'baseUrl' | 'attachments' | 'XMLHttpRequest'>> & ChatClientOptions;
  /** The attachment limits in use (the `attachments` option over the defaults). */
  readonly attachmentLimits: AttachmentLimits;
  readonly baseUrl: string;
  readonly messages: readonly ChatMessage[];
  readonly connectionState: ConnectionState;
  readonly sessionId: string | null;
  /** Every message up to this seq is known. */
  readonly cursor: number;
  readonly readUpTo: number;
  /** Older history exists than the messages held (the first load brings the latest 50). */
  readonly hasOlder: boolean;
  readonly unreadCount: number;
  /** Who answers the session (`bot` until the server says otherwise). */
  readonly mode: SessionMode;
  readonly sessionInfo: SessionInfo;
  /** From the last `presence` event (empty before one). */
  readonly participants: readonly Participant[];
  on<K extends keyof ChatClientEvents>(type: K, listener: (detail: ChatClientEvents[K]) => void): () => void;
  off<K extends keyof ChatClientEvents>(type: K, listener: (detail: ChatClientEvents[K]) => void): void;
  /** Creates or resumes the session, loads history, connects. */
  start(): Promise<void>;
  stop(): void;
  forgetSession(): void;
  /** Shows the message at once and sends it (now, or after the reconnect). With `attachments`
   * (uploaded with `upload`) the content may be empty; more than `maxPerMessage` throws a
   * `ChatAttachmentError` (`too_many`). */
  send(content: string, options?: { metadata?: Record<string, unknown>; clientMessageId?: string; attachments?: readonly ChatAttachment[] }): ChatMessage;
  /** Why `file` cannot be attached under `attachmentLimits` (type, size, empty), or null. */
  checkAttachment(file: { name?: string; type?: string; size: number }): ChatAttachmentError | null;
  /** Uploads a file for the next message: checks it, asks the server for an upload URL
   * (`POST /sessions/{id}/attachments`), PUTs the bytes there with its `uploadHeaders`
   * (progress: `onProgress` and `uploadProgress` events). Resolves to the attachment to pass
   * to `send`; rejects with a `ChatAttachmentError`. Waits for the session if it is starting. */
  upload(file: File, options?: UploadOptions): Promise<ChatAttachment>;
  /** Sends a failed message again: one the server refused (by `clientMessageId`), or one the
   * server marked `failed` (by `id` or `clientMessageId`; its text goes out as a new message). */
  retry(key: string): ChatMessage | undefined;
  /** Call on every keystroke (debounced); `false` stops the indicator at once. */
  sendTyping(isTyping?: boolean): void;
  markRead(upTo?: number): void;
  /** Loads older history; resolves to whether there is still more. */
  loadOlder(limit?: number): Promise<boolean>;
  /** Asks for a person (the `handoff` frame, or `POST /sessions/{id}/handoff` while offline);
   * the `mode` event follows. Idempotent on the server. */
  requestHandoff(): Promise<void>;
  /** Leaves this session (e.g. a closed one) and starts a new one (`reset` follows). */
  newConversation(): Promise<void>;
  /** A signed-in user's conversations on any device (`GET /sessions` with the app JWT),
   * newest activity first; rejects without an `authToken`. */
  listConversations(options?: { limit?: number; cursor?: string }): Promise<ConversationsPage>;
  /** Opens one of the user's conversations here (`POST /sessions/{id}/resume`: a fresh token
   * for this device): its history loads and the socket connects (`reset` follows). */
  resumeConversation(sessionId: string): Promise<void>;
  /** Edits one of the user's own messages (`PATCH …/messages/{id}`, within the edit window:
   * else a ChatApiError 409); resolves to the stored message, already in `messages`. */
  editMessage(messageId: string, content: string): Promise<ChatMessage>;
  /** Deletes one of the user's own messages: it stays as a tombstone (`deleted: true`). */
  deleteMessage(messageId: string): Promise<ChatMessage>;
  /** Whether `message` may still be edited or deleted here (see `canChange`). */
  canChange(message: ChatMessage): boolean;
}

// ----- pure helpers (exported for tests and custom clients) ---------------------------------

export const DEFAULTS: Readonly<Required<Pick<ChatClientOptions,
  'backoffBaseMs' | 'backoffMaxMs' | 'backoffJitter' | 'pingIntervalMs' | 'pongTimeoutMs' |
  'maxConnectionAgeMs' | 'ackTimeoutMs' | 'typingRepeatMs' | 'typingIdleMs' |
  'sessionRenewMarginMs' | 'pageSize' | 'resumeLatest' | 'editWindowMs'>>>;

/** In [cap * (1 - jitter), cap], cap = min(maxMs, baseMs * 2^attempt). */
export function backoffDelay(
  attempt: number,
  opts?: { baseMs?: number; maxMs?: number; jitter?: number },
  random?: () => number,
): number;
export function furthestStatus(a?: MessageStatus, b?: MessageStatus): MessageStatus | undefined;
/** What a message means for the one it replies to: `answered` (a reply from the assistant or
 * an agent), `failed` (a system error about it), or null. */
export function impliedStatus(message: Partial<ChatMessage>): 'answered' | 'failed' | null;
export function compareMessages(a: ChatMessage, b: ChatMessage): number;
/** `list` is a new array when something changed, else the one passed in. */
export function mergeMessage(
  list: readonly ChatMessage[],
  incoming: Partial<ChatMessage> & { id: string },
): { list: readonly ChatMessage[]; message: ChatMessage; added: boolean; changed: boolean };
export function mergeMessages(
  list: readonly ChatMessage[],
  incoming: Iterable<Partial<ChatMessage> & { id: string }>,
): { list: readonly ChatMessage[]; changes: { message: ChatMessage; added: boolean }[] };
/** Applies a `delta` frame: the first (index 0) adds a `streaming` message, later ones append;
 * repeats, deltas of a stored reply or of one whose start was missed change nothing. */
export function applyDelta(
  list: readonly ChatMessage[],
  delta: Partial<DeltaFrame>,
  at: { createdAt: string; localOrder?: number },
): { list: readonly ChatMessage[]; message: ChatMessage | null; added: boolean; changed: boolean; gap: boolean };
/** Drops the messages still streaming, except those in `keep`. */
export function clearStreams(
  list: readonly ChatMessage[],
  keep?: ReadonlySet<string>,
): { list: readonly ChatMessage[]; cleared: string[] };
/** A message's suggested replies: the strings of `data.suggestions`, trimmed, deduplicated,
 * at most `max` (6), each at most `maxChars` (200) long. */
export function suggestionsOf(
  message: Partial<ChatMessage> | null | undefined,
  opts?: { max?: number; maxChars?: number },
): string[];
export function advanceCursor(cursor: number, seqs: Iterable<number>): number;
/** Whether the user may still edit or delete `message`: their own stored message, not a
 * tombstone, sent less than `windowMs` before `now`. */
export function canChange(message: Partial<ChatMessage> | null | undefined, now: number, windowMs: number): boolean;
export function hasGap(cursor: number, seq: number): boolean;

export interface PendingSend {
  clientMessageId: string;
  content: string;
  attachments?: ChatAttachment[];
  metadata?: Record<string, unknown>;
  createdAt: number;
  attempts: number;
  sentAt?: number;
  state: 'queued' | 'sending' | 'failed';
  error?: string;
}
export type PendingSends = ReadonlyMap<string, PendingSend>;
export function addPending(
  pending: PendingSends,
  entry: Pick<PendingSend, 'clientMessageId' | 'content' | 'createdAt'> & Partial<PendingSend>,
): Map<string, PendingSend>;
export function markSent(pending: PendingSends, clientMessageId: string, now: number): PendingSends;
export function settlePending(pending: PendingSends, clientMessageId: string): PendingSends;
export function settleFromMessages(pending: PendingSends, messages: Iterable<{ clientMessageId?: string }>): PendingSends;
export function setPendingState(
  pending: PendingSends,
  clientMessageId: string,
  state: PendingSend['state'],
  extra?: Partial<PendingSend>,
): PendingSends;
export function sendsDue(
  pending: PendingSends,
  now: number,
  opts?: { ackTimeoutMs?: number; reconnected?: boolean },
): PendingSend[];

export interface TypingDebouncer {
  keystroke(): void;
  stop(): void;
  readonly typing: boolean;
}
export function createTypingDebouncer(
  send: (isTyping: boolean) => void,
  opts?: {
    repeatMs?: number;
    idleMs?: number;
    now?: () => number;
    setTimeout?: (f: () => void, ms: number) => unknown;
    clearTimeout?: (t: unknown) => void;
  },
): TypingDebouncer;
export function newClientMessageId(): string;
export function jwtSubject(jwt: string): string | null;
/** Who answers, from a session view or a system message's `data`; no `mode`: `bot`. */
export function sessionInfoOf(view: { mode?: unknown; agent?: unknown; waitingSince?: unknown } | null | undefined): SessionInfo;
/** The newest change of mode that the system messages among `messages` announce (`data.mode`). */
export function modeFromMessages(messages: readonly Partial<ChatMessage>[]): { seq: number; info: SessionInfo } | null;
export function sameSessionInfo(a: SessionInfo, b: SessionInfo): boolean;
/** "just now", "5 min ago", "3 h ago", "yesterday", "4 days ago", then the date. */
export function relativeTime(when: string | number | Date, now: number, locale?: string): string;
/** A page of conversations added to a list: each session once (the newer wins), newest first. */
export function mergeConversations(
  list: readonly ConversationSummary[],
  page: readonly ConversationSummary[],
): ConversationSummary[];
export function sessionUsable(
  stored: StoredSession | null | undefined,
  now: number,
  marginMs?: number,
  subject?: string | null,
): boolean;

// ----- attachments -----------------------------------------------------------------------------

export const ATTACHMENT_DEFAULTS: Readonly<AttachmentLimits>;
/** Image types shown inline (PNG, JPEG, GIF, WebP; never SVG). */
export const INLINE_IMAGE_TYPES: readonly string[];
/** The name a file is declared with: no control characters or path separators, 1 to 200 characters. */
export function attachmentName(name: string): string;
/** The browser's type, else the extension's, else `application/octet-stream`. */
export function contentTypeOf(file: { name?: string; type?: string }): string;
export function typeAllowed(type: string, allowed: readonly string[]): boolean;
/** `PNG, JPEG, GIF, WebP, PDF or plain text`. */
export function describeTypes(types: readonly string[]): string;
/** `512 B`, `1.5 KB`, `3.4 MB` (rounded down). */
export function formatBytes(bytes: number): string;
export function attachmentProblem(file: { name?: string; type?: string; size: number }, limits?: Partial<AttachmentLimits>): AttachmentProblem | null;
export function attachmentCountProblem(count: number, limits?: Partial<AttachmentLimits>): AttachmentProblem | null;
/** An http(s) URL (resolved against `baseUrl`), or null for anything else. */
export function attachmentUrl(url: unknown, baseUrl?: string): string | null;
/** A file's kind for its icon: `PDF`, `TXT`, else its extension in capitals (at most 4), else `FILE`. */
export function fileBadge(name: string, contentType?: string): string;
/** The well-formed attachments of a list from the server. */
export function attachmentsOf(list: unknown): ChatAttachment[];
/** PUTs `body` to `url` with exactly `headers` (those a browser may set) by XMLHttpRequest, for
 * its upload progress. Rejects with a `ChatAttachmentError` (`refused` with the status for a
 * 4xx, `upload_failed`, `aborted`). */
export function uploadFile(
  url: string,
  headers: Record<string, string>,
  body: Blob,
  options?: UploadOptions & { XMLHttpRequest?: typeof XMLHttpRequest; fileName?: string },
): Promise<void>;
