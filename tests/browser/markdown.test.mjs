// Unit tests of web/chat-markdown.js (no browser): what each construct renders to, and that
// hostile Markdown yields no element, attribute or link beyond what the renderer allows. The
// DOM is a recording stand-in that refuses any element outside MARKDOWN_ELEMENTS, so these
// check every node the renderer creates; widget-streaming.test.mjs runs hostile input through
// the widget in Chromium too.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  renderMarkdown, parseMarkdown, safeHref, MARKDOWN_ELEMENTS, MARKDOWN_ATTRIBUTES, LINK_PROTOCOLS,
} from '../../web/chat-markdown.js';

/** A document that records what is built and refuses elements the renderer must not create. */
function recordingDocument() {
  const node = (props) => ({
    ...props,
    children: [],
    appendChild(c) { this.children.push(c); return c; },
  });
  return {
    createElement(tag) {
      assert.ok(MARKDOWN_ELEMENTS.includes(tag), `created <${tag}>`);
      const e = node({ tag, attrs: new Map() });
      e.setAttribute = (k, v) => e.attrs.set(k, String(v));
      return e;
    },
    createTextNode: (text) => ({ text: String(text) }),
    createDocumentFragment: () => node({ tag: null }),
  };
}

const escape = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Serializes the recorded tree as HTML (to compare it compactly). */
function html(n) {
  if ('text' in n) return escape(n.text);
  const inner = n.children.map(html).join('');
  if (n.tag === null) return inner;
  const attrs = [...n.attrs].map(([k, v]) => ` ${k}="${escape(v)}"`).join('');
  return n.tag === 'br' || n.tag === 'hr' ? `<${n.tag}${attrs}>` : `<${n.tag}${attrs}>${inner}</${n.tag}>`;
}

const render = (src, opts = {}) => renderMarkdown(src, { document: recordingDocument(), ...opts });
const md = (src, opts) => html(render(src, opts));
const A = (href, text) => `<a href="${href}" target="_blank" rel="noopener noreferrer">${text}</a>`;

/** Every element of a recorded tree, with its depth. */
function* elements(n, depth = 0) {
  if ('text' in n) return;
  if (n.tag !== null) yield { el: n, depth };
  for (const c of n.children) yield* elements(c, depth + 1);
}

/** Asserts that only allowed elements and attributes were built, and links only to allowed URLs. */
function assertOnlyAllowed(fragment, what) {
  for (const { el } of elements(fragment)) {
    const allowed = MARKDOWN_ATTRIBUTES[el.tag] ?? [];
    for (const name of el.attrs.keys()) assert.ok(allowed.includes(name), `${what}: <${el.tag} ${name}>`);
    if (el.tag === 'a') {
      assert.ok(LINK_PROTOCOLS.includes(new URL(el.attrs.get('href')).protocol), `${what}: href ${el.attrs.get('href')}`);
      assert.equal(el.attrs.get('target'), '_blank', what);
      assert.equal(el.attrs.get('rel'), 'noopener noreferrer', what);
    }
    if (el.tag === 'ol' && el.attrs.has('start')) assert.match(el.attrs.get('start'), /^\d{1,9}$/, what);
  }
}

describe('Markdown: what each construct renders to', () => {
  test('paragraphs; a single newline is a line break (chat style)', () => {
    assert.equal(md('Hello\nworld\n\nSecond  \nparagraph'), '<p>Hello<br>world</p><p>Second<br>paragraph</p>');
    assert.equal(md(''), '');
    assert.equal(md('   \n\n  '), '');
  });

  test('headings: ATX and setext, shifted by headingOffset and capped at h6', () => {
    assert.equal(md('# One\n## Two ##\n###### Six\n#hashtag'), '<h1>One</h1><h2>Two</h2><h6>Six</h6><p>#hashtag</p>');
    assert.equal(md('Title\n=====\nSub\n---'), '<h1>Title</h1><h2>Sub</h2>');
    assert.equal(md('# One\n#### Four', { headingOffset: 2 }), '<h3>One</h3><h6>Four</h6>');
  });

  test('bold, italic, both, strikethrough; underscores inside words stay text', () => {
    assert.equal(md('**bold** __bold__ *it* _it_ ***both*** ~~gone~~'),
      '<p><strong>bold</strong> <strong>bold</strong> <em>it</em> <em>it</em> <em><strong>both</strong></em> <del>gone</del></p>');
    assert.equal(md('snake_case_name and 2*3*4'), '<p>snake_case_name and 2<em>3</em>4</p>');
    assert.equal(md('**bold with *italic* inside**'), '<p><strong>bold with <em>italic</em> inside</strong></p>');
    assert.equal(md('*unclosed **also'), '<p>*unclosed **also</p>');
    assert.equal(md('\\*not emphasis\\*'), '<p>*not emphasis*</p>');
  });

  test('inline code: literal, with longer fences for backticks inside', () => {
    assert.equal(md('Run `npm test` now'), '<p>Run <code>npm test</code> now</p>');
    assert.equal(md('`` a ` b `` and `**x** &amp; <b>`'), '<p><code>a ` b</code> and <code>**x** &amp;amp; &lt;b&gt;</code></p>');
    assert.equal(md('`unclosed'), '<p>`unclosed</p>');
  });

  test('code blocks: fenced (its language ignored), unclosed to the end, indented', () => {
    assert.equal(md('```js\nconst a = 1;\n  if (a < 2) {}\n```\nafter'), '<pre><code>const a = 1;\n  if (a &lt; 2) {}</code></pre><p>after</p>');
    assert.equal(md('~~~\n# not a heading\n~~~'), '<pre><code># not a heading</code></pre>');
    assert.equal(md('Text:\n\n```\nstill writing'), '<p>Text:</p><pre><code>still writing</code></pre>');
    assert.equal(md('    indented\n    code'), '<pre><code>indented\ncode</code></pre>');
  });

  test('lists: bullets, numbers with their start, nesting, tight and loose', () => {
    assert.equal(md('- a\n- b\n  - c\n  - d\n- e'), '<ul><li>a</li><li>b<ul><li>c</li><li>d</li></ul></li><li>e</li></ul>');
    assert.equal(md('1. one\n2. two'), '<ol><li>one</li><li>two</li></ol>');
    assert.equal(md('3) three\n4) four'), '<ol start="3"><li>three</li><li>four</li></ol>');
    assert.equal(md('* a\n\n* b'), '<ul><li><p>a</p></li><li><p>b</p></li></ul>');
    assert.equal(md('1. **Step**: do it\n   - detail\n2. Next'), '<ol><li><strong>Step</strong>: do it<ul><li>detail</li></ul></li><li>Next</li></ol>');
    assert.equal(md('- item\ncontinued lazily'), '<ul><li>item<br>continued lazily</li></ul>');
  });

  test('a list interrupts a paragraph only as CommonMark says (a number must be 1)', () => {
    assert.equal(md('Steps:\n1. a\n2. b'), '<p>Steps:</p><ol><li>a</li><li>b</li></ol>');
    assert.equal(md('Steps:\n- a'), '<p>Steps:</p><ul><li>a</li></ul>');
    assert.equal(md('The year\n1984. It was'), '<p>The year<br>1984. It was</p>');
  });

  test('links: inline with a title, autolinks, bare URLs, e-mail; images become links', () => {
    assert.equal(md('[docs](https://example.com/a "The docs")'),
      '<p><a href="https://example.com/a" target="_blank" rel="noopener noreferrer" title="The docs">docs</a></p>');
    assert.equal(md('<https://example.com> <help@example.com>'),
      `<p>${A('https://example.com/', 'https://example.com')} ${A('mailto:help@example.com', 'help@example.com')}</p>`);
    assert.equal(md('See https://example.com/a_(b). Or (https://example.com/c).'),
      `<p>See ${A('https://example.com/a_(b)', 'https://example.com/a_(b)')}. Or (${A('https://example.com/c', 'https://example.com/c')}).</p>`);
    assert.equal(md('[**bold** link](https://x.test/)'), `<p>${A('https://x.test/', '<strong>bold</strong> link')}</p>`);
    assert.equal(md('[https://a.test](https://b.test)'), `<p>${A('https://b.test/', 'https://a.test')}</p>`);
    assert.equal(md('![a chart](https://x.test/c.png)'), `<p>${A('https://x.test/c.png', 'a chart')}</p>`);
    assert.equal(md('[mail us](mailto:help@example.com)'), `<p>${A('mailto:help@example.com', 'mail us')}</p>`);
    assert.equal(md('[spaces](<https://x.test/a b>)'), `<p>${A('https://x.test/a%20b', 'spaces')}</p>`);
  });

  test('relative links, reference links and unknown schemes stay visible as text', () => {
    assert.equal(md('[help](/help) [ref][1] [x](ftp://x.test/f)'), '<p>[help](/help) [ref][1] [x](ftp://x.test/f)</p>');
  });

  test('block quotes, rules, tables', () => {
    assert.equal(md('> quoted\n> **text**\nlazy'), '<blockquote><p>quoted<br><strong>text</strong><br>lazy</p></blockquote>');
    assert.equal(md('a\n\n---\n\n***\nb'), '<p>a</p><hr><hr><p>b</p>');
    assert.equal(md('| Plan | Price |\n|:-----|------:|\n| Basic | `$5` |\n| Pro | **$9** | extra |\n| Short |'),
      '<table><thead><tr><th>Plan</th><th>Price</th></tr></thead><tbody>'
      + '<tr><td>Basic</td><td><code>$5</code></td></tr><tr><td>Pro</td><td><strong>$9</strong></td></tr><tr><td>Short</td><td></td></tr></tbody></table>');
  });

  test('raw HTML and entities are text: entities decoded, tags shown as written', () => {
    assert.equal(md('<b>hi</b> &amp; &copy; &#65; &#x1F600; &bogus; &#0;'), '<p>&lt;b&gt;hi&lt;/b&gt; &amp; © A 😀 &amp;bogus; \uFFFD</p>');
  });

  test('a typical LLM answer', () => {
    const answer = [
      '## Resetting your password',
      '',
      'You can do it in **two** ways:',
      '',
      '1. In the app: *Settings → Security*.',
      '2. From the command line:',
      '',
      '   ```sh',
      '   chat reset --user me',
      '   ```',
      '',
      'More in [the guide](https://example.com/guide).',
    ].join('\n');
    assert.equal(md(answer, { headingOffset: 2 }),
      '<h4>Resetting your password</h4><p>You can do it in <strong>two</strong> ways:</p>'
      + '<ol><li><p>In the app: <em>Settings → Security</em>.</p></li><li><p>From the command line:</p><pre><code>chat reset --user me</code></pre></li></ol>'
      + `<p>More in ${A('https://example.com/guide', 'the guide')}.</p>`);
  });
});

// Hostile input: each must render with allowed elements and attributes only, and no link but
// to an http(s) or mailto URL.
const HOSTILE = [
  '<script>alert(1)</script>',
  '<img src="https://evil.test/x.png" onerror="alert(1)">',
  '<svg onload=alert(1)><a href="javascript:alert(1)">x</a></svg>',
  '<iframe src="javascript:alert(1)"></iframe>',
  '[click](javascript:alert(1))',
  '[click](JaVaScRiPt:alert(1))',
  '[click]( javascript:alert(1) )',
  '[click](java\tscript:alert(1))',
  '[click](jav&#x61;script:alert(1))',
  '[click](javascript&colon;alert(1))',
  '[click](&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1))',
  '[click](<javascript:alert(1)>)',
  '[click](java\\script:alert(1))',
  '[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
  '[click](vbscript:msgbox(1))',
  '[click](file:///etc/passwd)',
  '[click](//evil.test/)',
  '<javascript:alert(1)>',
  '<data:text/html,<script>alert(1)</script>>',
  '![x](javascript:alert(1))',
  '![x](https://evil.test/x.png" onerror="alert(1))',
  '[x](https://ok.test/"onmouseover="alert(1))',
  '[x](https://ok.test/ "title\\" onmouseover=\\"alert(1)")',
  '&lt;script&gt;alert(1)&lt;/script&gt;',
  '&#60;img src=x onerror=alert(1)&#62;',
  '**<script>**alert(1)**</script>**',
  '`<script>alert(1)</script>`',
  '```html\n<script>alert(1)</script>\n```',
  '[a [b](javascript:alert(1)) c](https://ok.test/)',
  '[[[[[[[[x](https://ok.test/)',
  '**_~~`[<a href="javascript:alert(1)">` unclosed',
  '| <img src=x onerror=alert(1)> | b |\n|---|---|\n| [x](javascript:alert(1)) | <script> |',
  '> <script>\n> - [x](javascript:alert(1))\n>   - <img src=x onerror=alert(1)>',
  '<a href="https://ok.test/" onclick="alert(1)">x</a>',
  '<style>*{display:none}</style><link rel=stylesheet href=https://evil.test/x.css>',
  '<form action=https://evil.test/><input name=p><button>Go</button></form>',
];

describe('Markdown: hostile input', () => {
  for (const src of HOSTILE) {
    test(`only allowed elements, attributes and links: ${JSON.stringify(src).slice(0, 70)}`, () => {
      const fragment = render(src);
      assertOnlyAllowed(fragment, src);
      // No attribute value is a script URL. (Text such as `onerror=` inside a value is inert:
      // values are set with setAttribute, never parsed as HTML.)
      for (const { el } of elements(fragment)) {
        for (const v of el.attrs.values()) assert.doesNotMatch(v, /^\s*(javascript|data|vbscript):/i, src);
      }
    });
  }

  test('refused links keep their source visible, and tags their text', () => {
    assert.equal(md('[click](javascript:alert(1))'), '<p>[click](javascript:alert(1))</p>');
    assert.equal(md('<script>alert(1)</script>'), '<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>');
    assert.equal(md('&lt;script&gt;'), '<p>&lt;script&gt;</p>');
    assert.equal(md('[a [b](javascript:alert(1)) c](https://ok.test/)'), `<p>${A('https://ok.test/', 'a [b](javascript:alert(1)) c')}</p>`);
  });

  test('safeHref: only absolute http(s) and mailto URLs, normalized', () => {
    const ok = {
      'https://example.com': 'https://example.com/',
      'HTTP://Example.com/a?b=1#c': 'http://example.com/a?b=1#c',
      '  https://example.com/x  ': 'https://example.com/x',
      'mailto:help@example.com': 'mailto:help@example.com',
      'https://example.com/"onclick="x': 'https://example.com/%22onclick=%22x',
    };
    for (const [url, want] of Object.entries(ok)) assert.equal(safeHref(url), want, url);
    for (const url of [
      'javascript:alert(1)', 'JAVASCRIPT:alert(1)', ' javascript:alert(1)', 'java\tscript:alert(1)',
      'java\nscript:alert(1)', '\u0001javascript:alert(1)', 'data:text/html,x', 'vbscript:x', 'file:///etc/passwd',
      'ftp://example.com/', 'blob:https://example.com/x', '/relative', '//evil.test/', 'example.com', '', 'https://',
      `https://example.com/${'a'.repeat(3000)}`,
    ]) assert.equal(safeHref(url), null, JSON.stringify(url));
  });

  test('every prefix of a reply (as it streams) renders with allowed nodes only', () => {
    const reply = `${HOSTILE.join('\n\n')}\n\n## Done\n\n1. **a** [ok](https://ok.test/)\n   - \`x\`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n\`\`\`\nend\n\`\`\``;
    for (let i = 0; i <= reply.length; i += 3) assertOnlyAllowed(render(reply.slice(0, i)), `prefix ${i}`);
  });

  test('deep nesting is bounded: no stack overflow, a bounded tree', () => {
    const deep = [
      `${'>'.repeat(5000)} x`,
      Array.from({ length: 300 }, (_, k) => `${'  '.repeat(k)}- level ${k}`).join('\n'),
      `${'*'.repeat(8000)}a${'*'.repeat(8000)}`,
      `${'*a '.repeat(4000)}${'b* '.repeat(4000)}`,
      `${'['.repeat(8000)}x${'](https://ok.test/)'.repeat(100)}`,
      `${'_'.repeat(3000)}${'**x'.repeat(2000)}`,
      '`'.repeat(10000),
      `[x](${'('.repeat(5000)}https://ok.test/)`,
    ];
    for (const src of deep) {
      const fragment = render(src);
      assertOnlyAllowed(fragment, src.slice(0, 20));
      const depth = Math.max(0, ...[...elements(fragment)].map((e) => e.depth));
      assert.ok(depth <= 80, `${src.slice(0, 20)}…: depth ${depth}`);
    }
  });

  test('parseMarkdown is plain data (no DOM needed)', () => {
    assert.deepEqual(parseMarkdown('# Hi\n\n- **a**'), [
      { type: 'heading', level: 1, children: [{ type: 'text', text: 'Hi' }] },
      { type: 'list', ordered: false, start: 1, loose: false, items: [[{ type: 'paragraph', children: [{ type: 'strong', children: [{ type: 'text', text: 'a' }] }] }]] },
    ]);
  });
});
