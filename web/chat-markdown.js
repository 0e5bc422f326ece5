// Markdown for assistant and agent messages, rendered safely: LLM answers are Markdown (lists,
// code, links, bold), and raw `**` in a chat bubble looks broken.
//
// Why a renderer of our own: the widget is a dependency-free embed with no build step, and the
// well-kept Markdown libraries (marked, markdown-it, micromark) produce HTML strings, which
// would need `innerHTML` plus a sanitizer (another dependency) to be safe. This file parses
// into a small tree of plain objects (`parseMarkdown`, pure, unit-tested in Node) and builds DOM
// nodes from it (`renderMarkdown`) with createElement / createTextNode / setAttribute only:
// never `innerHTML`, so text from the server can never become markup. The elements and
// attributes it can create are exactly those listed in MARKDOWN_ELEMENTS / MARKDOWN_ATTRIBUTES
// (tests/browser/markdown.test.mjs checks hostile input against them, and in Chromium too).
//
// What it renders (CommonMark with the GitHub extensions people and LLMs use): paragraphs,
// ATX and setext headings, bullet and ordered lists (nested, tight or loose), fenced and
// indented code blocks, block quotes, thematic breaks, tables; inline code, emphasis and strong
// emphasis, strikethrough, links, autolinks (`<https://…>` and bare http(s) URLs), backslash
// escapes and HTML entities (decoded into text). Chat conventions: a single newline is a line
// break. Not rendered: raw HTML (shown as text), images (shown as a link to the image, labelled
// with its alt text), reference-style links (shown as text).
//
// Links: only absolute http:, https: and mailto: URLs become links (normalized by the URL
// parser, after entities and escapes are decoded), opened in a new tab with
// rel="noopener noreferrer". Any other scheme (javascript:, data:, vbscript:, …) or a
// relative URL is not a link: its Markdown source stays visible as text.
//
// The attachments of a message (`renderAttachments`) are rendered here too, the same way:
// their names are the sender's text and their URLs come from the server, so they get the same
// care (text nodes, http(s) URLs only). The widget and the agent console both show them.

import { INLINE_IMAGE_TYPES, attachmentUrl, attachmentsOf, fileBadge, formatBytes } from './chat-logic.js';

/**
 * @typedef {{ type: 'text', text: string }
 *   | { type: 'code', text: string }
 *   | { type: 'break' }
 *   | { type: 'strong' | 'em' | 'del', children: Inline[] }
 *   | { type: 'link', href: string, title?: string, children: Inline[] }} Inline
 * @typedef {{ type: 'paragraph', children: Inline[] }
 *   | { type: 'heading', level: number, children: Inline[] }
 *   | { type: 'codeblock', text: string, lang?: string }
 *   | { type: 'list', ordered: boolean, start: number, loose: boolean, items: Block[][] }
 *   | { type: 'quote', children: Block[] }
 *   | { type: 'rule' }
 *   | { type: 'table', head: Inline[][], rows: Inline[][][] }} Block
 */

/** Every element renderMarkdown can create. */
export const MARKDOWN_ELEMENTS = Object.freeze([
  'p', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'pre', 'code', 'ul', 'ol', 'li', 'blockquote', 'hr',
  'table', 'thead', 'tbody', 'tr', 'th', 'td', 'strong', 'em', 'del', 'a', 'br',
]);

/** Every attribute renderMarkdown can set, by element; no other element gets any. */
export const MARKDOWN_ATTRIBUTES = Object.freeze({
  a: Object.freeze(['href', 'title', 'target', 'rel']),
  ol: Object.freeze(['start']),
});

/** The URL schemes that become links. */
export const LINK_PROTOCOLS = Object.freeze(['http:', 'https:', 'mailto:']);

// Nesting of quotes and lists (deeper is shown as text), and of inline markup (deeper is
// flattened to its text): bounded so hostile input cannot exhaust the stack.
const MAX_BLOCK_DEPTH = 16;
const MAX_INLINE_DEPTH = 24;

/**
 * The href a Markdown link destination may have, or null when it must not be a link: only
 * absolute http(s) and mailto URLs, normalized by the URL parser (which also drops the tabs
 * and newlines that `java\tscript:` hides behind).
 * @param {string} url a destination, with entities and escapes already decoded
 * @returns {string | null}
 */
export function safeHref(url) {
  const s = String(url).trim();
  if (!s || s.length > 2048) return null;
  let u;
  try {
    u = new URL(s);
  } catch {
    return null; // relative or malformed
  }
  if (!LINK_PROTOCOLS.includes(u.protocol)) return null;
  if (u.protocol !== 'mailto:' && !u.hostname) return null;
  return u.href;
}

// ----- blocks ---------------------------------------------------------------------------------

const BLANK = /^[ \t]*$/;
const FENCE = /^( {0,3})(`{3,}|~{3,})(.*)$/;
const ATX = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$/;
const RULE = /^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const SETEXT = /^ {0,3}(=+|-+)[ \t]*$/;
const ITEM = /^( {0,3})([-+*]|(\d{1,9})([.)]))(?:( +)(.*))?$/;
const TABLE_DELIMITER = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;

/**
 * Parses Markdown into blocks of plain objects (see the typedefs above).
 * @param {string} src
 * @returns {Block[]}
 */
export function parseMarkdown(src) {
  const text = String(src ?? '').replace(/\r\n?/g, '\n').replace(/\0/g, '\uFFFD');
  return parseBlocks(text.split('\n').map(expandTabs), 0);
}

/**
 * Leading tabs become spaces (to the next multiple of 4), so indentation is counted in spaces.
 * @param {string} line
 */
function expandTabs(line) {
  if (!line.includes('\t')) return line;
  let out = '';
  let i = 0;
  for (; i < line.length && (line[i] === ' ' || line[i] === '\t'); i++) {
    out += line[i] === '\t' ? ' '.repeat(4 - (out.length % 4)) : ' ';
  }
  return out + line.slice(i);
}

/** @param {string} line */
const indentOf = (line) => line.length - line.trimStart().length;

/**
 * A list item's marker: its kind, number and the column its content starts at.
 * @param {string} line
 */
function listItem(line) {
  const m = ITEM.exec(line);
  if (!m) return null;
  const [, indent, marker, num, delim, spaces = '', rest = ''] = m;
  if (m[5] === undefined && line.length !== indent.length + marker.length) return null;
  const markerEnd = indent.length + marker.length;
  const blankStart = rest === '';
  // 1 to 4 spaces: the content starts after them; 5 or more: after one (the rest is code).
  const gap = blankStart || spaces.length > 4 ? 1 : spaces.length;
  const content = blankStart ? '' : spaces.length > 4 ? ' '.repeat(spaces.length - 1) + rest : rest;
  return {
    ordered: num !== undefined,
    kind: num !== undefined ? /** @type {string} */ (delim) : marker,
    start: num !== undefined ? Number(num) : 1,
    width: markerEnd + gap,
    content,
    empty: blankStart,
  };
}

/**
 * True when `line` begins a block that ends a paragraph (or a lazy continuation).
 * @param {string} line
 * @param {string | undefined} next the line after it (a table needs its delimiter row)
 */
function interrupts(line, next) {
  if (FENCE.test(line) || ATX.test(line) || RULE.test(line) || QUOTE.test(line)) return true;
  const item = listItem(line);
  // As in CommonMark: an empty item, or an ordered one not starting at 1, cannot interrupt.
  if (item && !item.empty && (!item.ordered || item.start === 1)) return true;
  return tableHeader(line, next) !== null;
}

/**
 * The cells of a table row (split on unescaped pipes, outer pipes dropped).
 * @param {string} line
 * @returns {string[]}
 */
function splitRow(line) {
  let s = line.trim();
  if (s.startsWith('|')) s = s.slice(1);
  if (s.endsWith('|') && !s.endsWith('\\|')) s = s.slice(0, -1);
  const cells = [];
  let cell = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && s[i + 1] === '|') {
      cell += '|';
      i++;
    } else if (s[i] === '|') {
      cells.push(cell.trim());
      cell = '';
    } else cell += s[i];
  }
  cells.push(cell.trim());
  return cells;
}

/**
 * The header cells when `line` and `next` open a table, else null.
 * @param {string} line
 * @param {string | undefined} next
 */
function tableHeader(line, next) {
  if (next === undefined || !line.includes('|') || indentOf(line) > 3 || !TABLE_DELIMITER.test(next)) return null;
  if (!next.includes('|') && !line.trim().startsWith('|')) return null;
  const head = splitRow(line);
  return head.length === splitRow(next).length ? head : null;
}

/**
 * @param {string[]} lines
 * @param {number} depth nesting of quotes and lists
 * @returns {Block[]}
 */
function parseBlocks(lines, depth) {
  /** @type {Block[]} */
  const blocks = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (BLANK.test(line)) {
      i++;
      continue;
    }
    // Indented code (four spaces).
    if (indentOf(line) >= 4) {
      const code = [];
      while (i < lines.length && (BLANK.test(lines[i]) || indentOf(lines[i]) >= 4)) code.push(lines[i++].slice(4));
      while (code.length && BLANK.test(code[code.length - 1])) code.pop();
      blocks.push({ type: 'codeblock', text: code.join('\n') });
      continue;
    }
    let m = FENCE.exec(line);
    if (m && !(m[2][0] === '`' && m[3].includes('`'))) {
      const [, indent, fence, info] = m;
      const code = [];
      i++;
      while (i < lines.length) {
        const close = FENCE.exec(lines[i]);
        if (close && close[2][0] === fence[0] && close[2].length >= fence.length && BLANK.test(close[3])) {
          i++;
          break;
        }
        // Up to the fence's own indentation is removed from each line.
        const l = lines[i++];
        code.push(l.slice(Math.min(indent.length, indentOf(l))));
      }
      const lang = decodeText(info.trim().split(/\s+/)[0] ?? '');
      blocks.push(lang ? { type: 'codeblock', text: code.join('\n'), lang } : { type: 'codeblock', text: code.join('\n') });
      continue;
    }
    m = ATX.exec(line);
    if (m) {
      const content = (m[2] ?? '').replace(/(?:^|[ \t]+)#+[ \t]*$/, '');
      blocks.push({ type: 'heading', level: m[1].length, children: parseInline(content.trim()) });
      i++;
      continue;
    }
    if (RULE.test(line)) {
      blocks.push({ type: 'rule' });
      i++;
      continue;
    }
    if (depth < MAX_BLOCK_DEPTH && QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length) {
        const q = QUOTE.exec(lines[i]);
        if (q) inner.push(q[1]);
        // A lazy continuation: paragraph text without the `>`.
        else if (!BLANK.test(lines[i]) && inner.length && !BLANK.test(inner[inner.length - 1]) && !interrupts(lines[i], lines[i + 1])) inner.push(lines[i]);
        else break;
        i++;
      }
      blocks.push({ type: 'quote', children: parseBlocks(inner, depth + 1) });
      continue;
    }
    if (depth < MAX_BLOCK_DEPTH && listItem(line)) {
      const { block, next } = parseList(lines, i, depth);
      blocks.push(block);
      i = next;
      continue;
    }
    const head = tableHeader(line, lines[i + 1]);
    if (head) {
      i += 2;
      /** @type {Inline[][][]} */
      const rows = [];
      while (i < lines.length && !BLANK.test(lines[i]) && !interrupts(lines[i], undefined)) {
        const cells = splitRow(lines[i++]);
        rows.push(head.map((_, c) => parseInline(cells[c] ?? '')));
      }
      blocks.push({ type: 'table', head: head.map((c) => parseInline(c)), rows });
      continue;
    }
    // A paragraph: up to a blank line or a block that interrupts it; a setext underline
    // makes it a heading.
    const para = [line];
    /** @type {number | null} */
    let setext = null;
    i++;
    while (i < lines.length) {
      const l = lines[i];
      if (BLANK.test(l)) break;
      const s = SETEXT.exec(l);
      if (s) {
        setext = s[1][0] === '=' ? 1 : 2;
        i++;
        break;
      }
      if (interrupts(l, lines[i + 1])) break;
      para.push(l);
      i++;
    }
    const content = para.map((l) => l.trimStart()).join('\n').trimEnd();
    blocks.push(setext ? { type: 'heading', level: setext, children: parseInline(content) } : { type: 'paragraph', children: parseInline(content) });
  }
  return blocks;
}

/**
 * A list from line `start`: its items (each parsed as blocks) and the line after it.
 * @param {string[]} lines
 * @param {number} start
 * @param {number} depth
 * @returns {{ block: Block, next: number }}
 */
function parseList(lines, start, depth) {
  const first = /** @type {NonNullable<ReturnType<typeof listItem>>} */ (listItem(lines[start]));
  /** @type {Block[][]} */
  const items = [];
  let loose = false;
  let i = start;
  while (i < lines.length) {
    const item = listItem(lines[i]);
    if (!item || item.ordered !== first.ordered || item.kind !== first.kind || RULE.test(lines[i])) break;
    const body = [item.content];
    i++;
    while (i < lines.length) {
      const l = lines[i];
      if (BLANK.test(l)) {
        body.push('');
      } else if (indentOf(l) >= item.width) {
        body.push(l.slice(item.width));
      } else if (body[body.length - 1] !== '' && !BLANK.test(body[body.length - 1]) && !interrupts(l, lines[i + 1]) && !listItem(l)) {
        body.push(l); // lazy continuation of the item's paragraph
      } else break;
      i++;
    }
    let trailing = 0;
    while (body.length > 1 && BLANK.test(body[body.length - 1])) {
      body.pop();
      trailing++;
    }
    const blocks = parseBlocks(body, depth + 1);
    // Loose: a blank line between two of the item's blocks (outside code), or between items.
    if (blocks.length > 1 && body.some((l, n) => n > 0 && BLANK.test(l) && !BLANK.test(body[n - 1])) && blocks.some((b) => b.type !== 'codeblock')) loose = true;
    items.push(blocks);
    if (trailing) {
      const next = i < lines.length ? listItem(lines[i]) : null;
      if (next && next.ordered === first.ordered && next.kind === first.kind && !RULE.test(lines[i])) loose = true;
      else break;
    }
  }
  return { block: { type: 'list', ordered: first.ordered, start: first.start, loose, items }, next: i };
}

// ----- inline ---------------------------------------------------------------------------------

const ASCII_PUNCT = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~';
const WHITESPACE = /\s/u;
const PUNCT = /[\p{P}\p{S}]/u;

/** @type {Record<string, string>} */
const ENTITIES = {
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0', copy: '©', reg: '®',
  trade: '™', hellip: '…', mdash: '—', ndash: '–', lsquo: '‘', rsquo: '’', ldquo: '“',
  rdquo: '”', laquo: '«', raquo: '»', bull: '•', middot: '·', times: '×', divide: '÷',
  deg: '°', euro: '€', pound: '£', yen: '¥', cent: '¢', sect: '§', para: '¶', larr: '←',
  rarr: '→', uarr: '↑', darr: '↓', harr: '↔', le: '≤', ge: '≥', ne: '≠', plusmn: '±',
  colon: ':', lpar: '(', rpar: ')', sol: '/', bsol: '\\', num: '#', excl: '!', quest: '?',
  Tab: '\t', NewLine: '\n', ast: '*', lowbar: '_', grave: '`', tilde: '˜', lbrack: '[',
  rbrack: ']', lcub: '{', rcub: '}', vert: '|', semi: ';', comma: ',', period: '.', equals: '=',
  plus: '+', percnt: '%', dollar: '$', commat: '@', Hat: '^', zwj: '\u200d', zwnj: '\u200c',
};
const ENTITY = /^&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([A-Za-z][A-Za-z0-9]{1,31}));/;

/**
 * The text an entity at the start of `s` stands for, and its length; null if there is none.
 * @param {string} s
 * @returns {[string, number] | null}
 */
function entityAt(s) {
  const m = ENTITY.exec(s);
  if (!m) return null;
  if (m[3] !== undefined) return Object.hasOwn(ENTITIES, m[3]) ? [ENTITIES[m[3]], m[0].length] : null;
  const cp = m[1] !== undefined ? Number(m[1]) : parseInt(/** @type {string} */ (m[2]), 16);
  const ok = cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
  return [ok ? String.fromCodePoint(cp) : '\uFFFD', m[0].length];
}

/**
 * Backslash escapes and entities decoded (link destinations, titles, code languages).
 * @param {string} s
 */
function decodeText(s) {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && i + 1 < s.length && ASCII_PUNCT.includes(s[i + 1])) {
      out += s[++i];
    } else if (c === '&') {
      const e = entityAt(s.slice(i, i + 40));
      if (e) {
        out += e[0];
        i += e[1] - 1;
      } else out += c;
    } else out += c;
  }
  return out;
}

/**
 * An item of the inline sequence while it is parsed: text, a finished node, or a run of
 * emphasis delimiters (`*`, `_`, `~`) not matched yet. A doubly linked list, so that matched
 * runs can wrap what lies between them.
 * @typedef {{ kind: 'text', text: string, prev: Item | null, next: Item | null }
 *   | { kind: 'node', node: Inline, prev: Item | null, next: Item | null }
 *   | { kind: 'delim', ch: string, count: number, orig: number, canOpen: boolean, canClose: boolean,
 *       prev: Item | null, next: Item | null }} Item
 * @typedef {{ kind: 'text', text: string } | { kind: 'node', node: Inline }
 *   | { kind: 'delim', ch: string, count: number, orig: number, canOpen: boolean, canClose: boolean }} NewItem
 */

class Items {
  constructor() {
    /** @type {Item | null} */
    this.head = null;
    /** @type {Item | null} */
    this.tail = null;
  }

  /**
   * @param {NewItem} fields
   * @param {Item | null} [after] default: at the end
   * @returns {Item}
   */
  insert(fields, after = this.tail) {
    const item = /** @type {Item} */ ({ ...fields, prev: after, next: after ? after.next : this.head });
    if (item.next) item.next.prev = item;
    else this.tail = item;
    if (after) after.next = item;
    else this.head = item;
    return item;
  }

  /** @param {Item} item */
  remove(item) {
    if (item.prev) item.prev.next = item.next;
    else this.head = item.next;
    if (item.next) item.next.prev = item.prev;
    else this.tail = item.prev;
  }

  /**
   * Takes out the items strictly between `a` and `b` (`a` null: from the start; `b` null: to
   * the end) and returns them as nodes.
   * @param {Item | null} a
   * @param {Item | null} b
   * @returns {Inline[]}
   */
  cut(a, b) {
    const first = a ? a.next : this.head;
    if (!first || first === b) return [];
    const last = b ? /** @type {Item} */ (b.prev) : /** @type {Item} */ (this.tail);
    if (a) a.next = b;
    else this.head = b;
    if (b) b.prev = a;
    else this.tail = a;
    last.next = null;
    return toNodes(first);
  }
}

/**
 * Inline nodes from a chain of items: adjacent text joined, unmatched delimiters as text.
 * @param {Item | null} item
 * @returns {Inline[]}
 */
function toNodes(item) {
  /** @type {Inline[]} */
  const out = [];
  for (let it = item; it; it = it.next) {
    const text = it.kind === 'text' ? it.text : it.kind === 'delim' ? it.ch.repeat(it.count) : null;
    if (text === null) out.push(/** @type {{ node: Inline }} */ (it).node);
    else if (!text) continue;
    else if (out.length && out[out.length - 1].type === 'text') /** @type {{ text: string }} */ (out[out.length - 1]).text += text;
    else out.push({ type: 'text', text });
  }
  return out;
}

/**
 * Parses a paragraph's (or heading's, or cell's) text into inline nodes.
 * @param {string} text
 * @returns {Inline[]}
 */
export function parseInline(text) {
  const items = new Items();
  /** @type {{ item: Item, image: boolean, active: boolean }[]} */
  const brackets = [];
  let buf = '';
  const flush = () => {
    if (buf) items.insert({ kind: 'text', text: buf });
    buf = '';
  };
  /** @param {Inline} node */
  const push = (node) => {
    flush();
    items.insert({ kind: 'node', node });
  };
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text[i];
    if (c === '\\') {
      const d = text[i + 1];
      if (d === '\n') {
        push({ type: 'break' });
        i += 2;
      } else if (d !== undefined && ASCII_PUNCT.includes(d)) {
        buf += d;
        i += 2;
      } else {
        buf += c;
        i++;
      }
      continue;
    }
    if (c === '`') {
      let run = 1;
      while (text[i + run] === '`') run++;
      const fence = '`'.repeat(run);
      let close = text.indexOf(fence, i + run);
      while (close !== -1 && (text[close + run] === '`' || text[close - 1] === '`')) {
        let end = close;
        while (text[end] === '`') end++;
        close = text.indexOf(fence, end);
      }
      if (close === -1) {
        buf += fence;
        i += run;
        continue;
      }
      let code = text.slice(i + run, close).replace(/\n/g, ' ');
      if (code.length > 2 && code[0] === ' ' && code[code.length - 1] === ' ' && code.trim()) code = code.slice(1, -1);
      push({ type: 'code', text: code });
      i = close + run;
      continue;
    }
    if (c === '<') {
      const rest = text.slice(i, i + 2100);
      const uri = /^<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^<>\u0000-\u0020]*)>/.exec(rest);
      const email = uri ? null : /^<([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)>/.exec(rest);
      const m = uri ?? email;
      if (m) {
        const href = safeHref(email ? `mailto:${m[1]}` : m[1]);
        if (href) push({ type: 'link', href, children: [{ type: 'text', text: m[1] }] });
        else buf += m[0]; // not a link we allow: its text, as written
        i += m[0].length;
        continue;
      }
      buf += c;
      i++;
      continue;
    }
    if (c === '&') {
      const e = entityAt(text.slice(i, i + 40));
      if (e) {
        buf += e[0];
        i += e[1];
      } else {
        buf += c;
        i++;
      }
      continue;
    }
    if (c === '\n') {
      buf = buf.replace(/[ \t]+$/, '');
      push({ type: 'break' });
      i++;
      while (text[i] === ' ' || text[i] === '\t') i++;
      continue;
    }
    if (c === '[' || (c === '!' && text[i + 1] === '[')) {
      flush();
      const image = c === '!';
      brackets.push({ item: items.insert({ kind: 'text', text: image ? '![' : '[' }), image, active: true });
      i += image ? 2 : 1;
      continue;
    }
    if (c === ']') {
      flush();
      const opener = brackets.pop();
      const dest = opener && opener.active && text[i + 1] === '(' ? linkDestination(text, i + 1) : null;
      const href = dest && safeHref(dest.url);
      if (!opener || !dest || !href) {
        // Not a link (or not one we allow): the brackets and what follows stay text.
        items.insert({ kind: 'text', text: ']' });
        i++;
        continue;
      }
      processEmphasis(items, opener.item);
      const label = items.cut(opener.item, null);
      items.remove(opener.item);
      /** @type {Inline[]} */
      const children = opener.image ? [{ type: 'text', text: plainText(label) || 'image' }] : unwrapLinks(label);
      /** @type {Inline} */
      const link = dest.title ? { type: 'link', href, title: dest.title, children } : { type: 'link', href, children };
      items.insert({ kind: 'node', node: link });
      // No link inside a link: earlier `[` can no longer open one.
      if (!opener.image) for (const b of brackets) if (!b.image) b.active = false;
      i = dest.end;
      continue;
    }
    if (c === '*' || c === '_' || c === '~') {
      let run = 1;
      while (text[i + run] === c) run++;
      if (c === '~' && run > 2) {
        buf += c.repeat(run);
        i += run;
        continue;
      }
      const before = i > 0 ? text[i - 1] : ' ';
      const after = i + run < n ? text[i + run] : ' ';
      const left = !WHITESPACE.test(after) && (!PUNCT.test(after) || WHITESPACE.test(before) || PUNCT.test(before));
      const right = !WHITESPACE.test(before) && (!PUNCT.test(before) || WHITESPACE.test(after) || PUNCT.test(after));
      const canOpen = c === '_' ? left && (!right || PUNCT.test(before)) : left;
      const canClose = c === '_' ? right && (!left || PUNCT.test(after)) : right;
      flush();
      items.insert({ kind: 'delim', ch: c, count: run, orig: run, canOpen, canClose });
      i += run;
      continue;
    }
    if ((c === 'h' || c === 'H') && (i === 0 || /[\s*_~(]/.test(text[i - 1]))) {
      const url = bareUrl(text, i, brackets.length > 0);
      if (url) {
        const href = safeHref(url);
        if (href) {
          push({ type: 'link', href, children: [{ type: 'text', text: url }] });
          i += url.length;
          continue;
        }
      }
    }
    buf += c;
    i++;
  }
  flush();
  processEmphasis(items, null);
  return toNodes(items.head);
}

/**
 * A bare http(s) URL at `i` (GitHub's autolink rule: trailing punctuation and an unbalanced
 * closing parenthesis are not part of it), or null.
 * @param {string} text
 * @param {number} i
 * @param {boolean} inLabel inside a link's `[…]`: the URL ends at the `]`
 */
function bareUrl(text, i, inLabel) {
  const m = /^https?:\/\/[^\s<>"`]+/i.exec(text.slice(i, i + 2100));
  if (!m) return null;
  let url = inLabel ? m[0].split(']')[0] : m[0];
  for (;;) {
    const last = url[url.length - 1];
    if ('?!.,:*_~\'";'.includes(last)) url = url.slice(0, -1);
    else if (last === ')' && (url.match(/\)/g) ?? []).length > (url.match(/\(/g) ?? []).length) url = url.slice(0, -1);
    else break;
  }
  return /^https?:\/\/[^/?#]/i.test(url) ? url : null;
}

/**
 * An inline link's destination and title from the `(` at `p`: `(url "title")`.
 * @param {string} text
 * @param {number} p
 * @returns {{ url: string, title?: string, end: number } | null}
 */
function linkDestination(text, p) {
  let j = p + 1;
  const skipSpace = () => {
    let newlines = 0;
    while (j < text.length && (text[j] === ' ' || text[j] === '\t' || text[j] === '\n')) {
      if (text[j] === '\n' && ++newlines > 1) return;
      j++;
    }
  };
  skipSpace();
  let raw;
  if (text[j] === '<') {
    const end = text.indexOf('>', j + 1);
    if (end === -1) return null;
    raw = text.slice(j + 1, end);
    if (/[\n<]/.test(raw)) return null;
    j = end + 1;
  } else {
    const from = j;
    let depth = 0;
    while (j < text.length) {
      const ch = text[j];
      if (ch === '\\' && j + 1 < text.length && ASCII_PUNCT.includes(text[j + 1])) {
        j += 2;
        continue;
      }
      if (ch <= ' ' || ch === '\u007f') break;
      if (ch === '(' && ++depth > 32) return null;
      if (ch === ')' && depth-- === 0) break;
      j++;
    }
    if (depth > 0) return null;
    raw = text.slice(from, j);
  }
  const beforeTitle = j;
  skipSpace();
  let title;
  const open = text[j];
  if (j > beforeTitle && (open === '"' || open === "'" || open === '(')) {
    const close = open === '(' ? ')' : open;
    let k = j + 1;
    while (k < text.length && text[k] !== close) k += text[k] === '\\' ? 2 : 1;
    if (k >= text.length) return null;
    title = decodeText(text.slice(j + 1, k));
    j = k + 1;
    skipSpace();
  }
  if (text[j] !== ')') return null;
  return title ? { url: decodeText(raw), title, end: j + 1 } : { url: decodeText(raw), end: j + 1 };
}

/**
 * The CommonMark "process emphasis" step over the delimiter runs after `bottom`: matched runs
 * become `em` (one), `strong` (two) or `del` (tildes), the rest stays text.
 * @param {Items} items
 * @param {Item | null} bottom
 */
function processEmphasis(items, bottom) {
  /** @type {Record<string, Item | null>} */
  const openersBottom = {};
  let closer = bottom ? bottom.next : items.head;
  while (closer) {
    if (closer.kind !== 'delim' || !closer.canClose) {
      closer = closer.next;
      continue;
    }
    const c = closer;
    const key = `${c.ch}${c.canOpen ? 1 : 0}${c.orig % 3}`;
    const limit = openersBottom[key] ?? bottom;
    /** @type {Item | null} */
    let opener = c.prev;
    /** @type {(Item & { kind: 'delim' }) | null} */
    let found = null;
    while (opener && opener !== limit && opener !== bottom) {
      if (opener.kind === 'delim' && opener.ch === c.ch && opener.canOpen) {
        const o = opener;
        const ok = c.ch === '~'
          ? o.count === c.count
          : !((o.canClose || c.canOpen) && (o.orig + c.orig) % 3 === 0 && !(o.orig % 3 === 0 && c.orig % 3 === 0));
        if (ok) {
          found = o;
          break;
        }
      }
      opener = opener.prev;
    }
    if (!found) {
      openersBottom[key] = c.prev;
      closer = c.next;
      continue;
    }
    const use = c.ch === '~' ? c.count : c.count >= 2 && found.count >= 2 ? 2 : 1;
    /** @type {'em' | 'strong' | 'del'} */
    const type = c.ch === '~' ? 'del' : use === 2 ? 'strong' : 'em';
    found.count -= use;
    c.count -= use;
    const children = items.cut(found, c);
    items.insert({ kind: 'node', node: { type, children } }, found);
    if (found.count === 0) items.remove(found);
    if (c.count === 0) {
      closer = c.next;
      items.remove(c);
    }
  }
}

/**
 * The text of inline nodes (iterative: nesting may be deep).
 * @param {Inline[]} nodes
 */
function plainText(nodes) {
  let out = '';
  /** @type {Inline[]} */
  const stack = [...nodes].reverse();
  while (stack.length) {
    const node = /** @type {Inline} */ (stack.pop());
    if (node.type === 'text' || node.type === 'code') out += node.text;
    else if (node.type === 'break') out += '\n';
    else for (let k = node.children.length - 1; k >= 0; k--) stack.push(node.children[k]);
  }
  return out;
}

/**
 * A link's label without links in it (a bare URL in a label is text there).
 * @param {Inline[]} nodes
 * @returns {Inline[]}
 */
function unwrapLinks(nodes) {
  return nodes.flatMap((node) => {
    if (node.type === 'link') return unwrapLinks(node.children);
    if (node.type === 'strong' || node.type === 'em' || node.type === 'del') return [{ ...node, children: unwrapLinks(node.children) }];
    return [node];
  });
}

// ----- DOM ------------------------------------------------------------------------------------

/**
 * @typedef {object} RenderOptions
 * @property {Pick<Document, 'createElement' | 'createTextNode' | 'createDocumentFragment'>} [document]
 *   default: the page's
 * @property {number} [headingOffset] added to heading levels (the widget uses 2: its panel's
 *   title is an h2, so `# Title` in a message becomes an h3); capped at h6
 */

/**
 * Renders Markdown into a DocumentFragment of DOM nodes (no HTML string is ever parsed).
 * @param {string} src
 * @param {RenderOptions} [options]
 * @returns {DocumentFragment}
 */
export function renderMarkdown(src, options = {}) {
  const doc = options.document ?? globalThis.document;
  const offset = Math.max(0, Math.floor(options.headingOffset ?? 0));
  /**
   * @param {string} tag one of MARKDOWN_ELEMENTS
   * @param {Record<string, string>} [attrs] only MARKDOWN_ATTRIBUTES[tag]
   */
  const el = (tag, attrs = {}) => {
    const e = doc.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  };
  /**
   * @param {Node} parent
   * @param {Inline[]} nodes
   * @param {number} depth
   */
  const inline = (parent, nodes, depth) => {
    if (depth > MAX_INLINE_DEPTH) {
      parent.appendChild(doc.createTextNode(plainText(nodes)));
      return;
    }
    for (const node of nodes) {
      if (node.type === 'text') parent.appendChild(doc.createTextNode(node.text));
      else if (node.type === 'break') parent.appendChild(el('br'));
      else if (node.type === 'code') parent.appendChild(el('code')).appendChild(doc.createTextNode(node.text));
      else if (node.type === 'link') {
        /** @type {Record<string, string>} */
        const attrs = { href: node.href, target: '_blank', rel: 'noopener noreferrer' };
        if (node.title) attrs.title = node.title;
        inline(parent.appendChild(el('a', attrs)), node.children, depth + 1);
      } else inline(parent.appendChild(el(node.type)), node.children, depth + 1);
    }
  };
  /**
   * @param {Node} parent
   * @param {Block[]} list
   * @param {boolean} tight list items: paragraphs without <p>
   */
  const renderBlocks = (parent, list, tight) => {
    for (const b of list) {
      if (b.type === 'paragraph') {
        if (tight) inline(parent, b.children, 0);
        else inline(parent.appendChild(el('p')), b.children, 0);
      } else if (b.type === 'heading') inline(parent.appendChild(el(`h${Math.min(6, b.level + offset)}`)), b.children, 0);
      else if (b.type === 'codeblock') parent.appendChild(el('pre')).appendChild(el('code')).appendChild(doc.createTextNode(b.text));
      else if (b.type === 'rule') parent.appendChild(el('hr'));
      else if (b.type === 'quote') renderBlocks(parent.appendChild(el('blockquote')), b.children, false);
      else if (b.type === 'list') {
        const ol = parent.appendChild(b.ordered ? el('ol', b.start !== 1 ? { start: String(b.start) } : {}) : el('ul'));
        for (const item of b.items) renderBlocks(ol.appendChild(el('li')), item, !b.loose);
      } else if (b.type === 'table') {
        const table = parent.appendChild(el('table'));
        const headRow = table.appendChild(el('thead')).appendChild(el('tr'));
        for (const cell of b.head) inline(headRow.appendChild(el('th')), cell, 0);
        if (b.rows.length) {
          const body = table.appendChild(el('tbody'));
          for (const row of b.rows) {
            const tr = body.appendChild(el('tr'));
            for (const cell of row) inline(tr.appendChild(el('td')), cell, 0);
          }
        }
      }
    }
  };
  const fragment = doc.createDocumentFragment();
  renderBlocks(fragment, parseMarkdown(src), false);
  return fragment;
}

/**
 * A message's attachments as a list (`ul.attachments`), or null when it has none: an image
 * (PNG, JPEG, GIF, WebP) with a download URL is shown inline, its alt text its name, as a link
 * to the full picture; any other file is a download link with its name and size. Links open in
 * a new tab with rel="noopener noreferrer". Names are text nodes; a URL that is not http(s)
 * (after resolving against `baseUrl`) makes no link or image, nor does a missing one (an unsent
 * message): its name and size are shown as text.
 * @param {unknown} list the message's `attachments`
 * @param {{ document?: Document, baseUrl?: string }} [options]
 * @returns {HTMLUListElement | null}
 */
export function renderAttachments(list, options = {}) {
  const items = attachmentsOf(list);
  if (!items.length) return null;
  const doc = options.document ?? globalThis.document;
  /**
   * @template {keyof HTMLElementTagNameMap} K
   * @param {K} tag
   * @param {Record<string, string>} [attrs]
   * @param {string} [text]
   */
  const el = (tag, attrs = {}, text) => {
    const e = doc.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text != null) e.appendChild(doc.createTextNode(text));
    return e;
  };
  const ul = el('ul', { class: 'attachments', 'aria-label': items.length === 1 ? 'Attachment' : `${items.length} attachments` });
  for (const a of items) {
    const url = attachmentUrl(a.url, options.baseUrl);
    const image = !!url && INLINE_IMAGE_TYPES.includes(a.contentType.toLowerCase());
    const li = el('li', { class: `attachment ${image ? 'image' : 'file'}${url ? '' : ' pending'}`, 'data-attachment-id': a.id });
    if (image && url) {
      const link = el('a', { href: url, target: '_blank', rel: 'noopener noreferrer', title: a.name });
      link.appendChild(el('img', { src: url, alt: a.name, loading: 'lazy', decoding: 'async', referrerpolicy: 'no-referrer' }));
      li.appendChild(link);
    } else {
      const holder = url ? el('a', { href: url, download: a.name, target: '_blank', rel: 'noopener noreferrer' }) : el('span', { class: 'file-name-size' });
      holder.append(el('span', { class: 'icon', 'aria-hidden': 'true' }, fileBadge(a.name, a.contentType)), el('span', { class: 'name' }, a.name), doc.createTextNode(' '), el('span', { class: 'size' }, `(${formatBytes(a.size)})`));
      li.appendChild(holder);
    }
    ul.appendChild(li);
  }
  return ul;
}
