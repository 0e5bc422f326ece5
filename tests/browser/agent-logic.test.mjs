// Unit tests of the agent console's pure logic (web/agent-logic.js) under node --test: which
// sessions each inbox tab shows and in which order, merging pages and live `inbox` events,
// the `/shortcut` search of canned replies and putting one into the composer, the manage form's
// checks, what an agent token says, wait times, previews, the WebSocket URL; which of the
// agent's own messages offer Edit and Delete and until when, and where a reconnect's
// `?updatedAfter=` starts.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  INBOX_VIEWS, inView, inboxOrder, mergeSummaries, inboxList, formatDuration, customerLabel, searchCanned,
  slashQuery, insertCanned, cannedErrors, agentClaims, tokenProblem, agentSocketUrl, preview,
  canChangeOwn, changeWindowEnds, newestUpdate,
} from '../../web/agent-logic.js';
import { mergeMessages } from '../../web/chat-logic.js';

const at = (min) => new Date(Date.UTC(2026, 0, 1, 10, min)).toISOString();
const summary = (id, fields) => ({ sessionId: id, mode: 'waiting', createdAt: at(0), updatedAt: at(0), userOnline: true, ...fields });

describe('inbox', () => {
  test('tabs: waiting, mine (held by me), all open (waiting or held by anyone); bot and closed sessions nowhere', () => {
    const w = summary('W', { mode: 'waiting' });
    const mine = summary('M', { mode: 'agent', agent: { id: 'me', name: 'Me' } });
    const theirs = summary('T', { mode: 'agent', agent: { id: 'other', name: 'Other' } });
    const bot = summary('B', { mode: 'bot' });
    const closed = summary('C', { mode: 'closed' });
    const all = [w, mine, theirs, bot, closed];
    assert.deepEqual(INBOX_VIEWS.map(([v]) => v), ['waiting', 'mine', 'open']);
    assert.deepEqual(all.filter((s) => inView(s, 'waiting', 'me')).map((s) => s.sessionId), ['W']);
    assert.deepEqual(all.filter((s) => inView(s, 'mine', 'me')).map((s) => s.sessionId), ['M']);
    assert.deepEqual(all.filter((s) => inView(s, 'open', 'me')).map((s) => s.sessionId), ['W', 'M', 'T']);
  });

  test('order: waiting oldest waitingSince first; mine and open newest activity first; ties stable by id', () => {
    const a = summary('A', { waitingSince: at(5), updatedAt: at(9) });
    const b = summary('B', { waitingSince: at(2), updatedAt: at(3) });
    const c = summary('C', { waitingSince: at(2), updatedAt: at(1) });
    assert.deepEqual([a, b, c].sort(inboxOrder('waiting')).map((s) => s.sessionId), ['B', 'C', 'A']);
    assert.deepEqual([c, a, b].sort(inboxOrder('open')).map((s) => s.sessionId), ['A', 'B', 'C']);
  });

  test('merging: pages and events upsert by session; an older summary never undoes a newer one', () => {
    let map = new Map();
    let r = mergeSummaries(map, [summary('A', { waitingSince: at(1), updatedAt: at(1) }), summary('B', { mode: 'agent', agent: { id: 'me', name: 'Me' }, updatedAt: at(2) })]);
    assert.equal(r.changed, true);
    assert.deepEqual(r.entered.map((s) => s.sessionId), ['A']);
    map = r.map;
    // The agent claimed A (an event), then a page loaded earlier arrives saying A still waits.
    r = mergeSummaries(map, [summary('A', { mode: 'agent', agent: { id: 'me', name: 'Me' }, updatedAt: at(4) })]);
    map = r.map;
    assert.deepEqual(r.entered, []);
    r = mergeSummaries(map, [summary('A', { waitingSince: at(1), updatedAt: at(1) })]);
    assert.equal(r.changed, false);
    assert.equal(r.map.get('A').mode, 'agent');
    assert.deepEqual(inboxList(map, 'mine', 'me').map((s) => s.sessionId), ['A', 'B']);
    assert.deepEqual(inboxList(map, 'waiting', 'me'), []);
    // Released to the bot: gone from every tab; waiting again: entered again.
    r = mergeSummaries(map, [summary('A', { mode: 'bot', updatedAt: at(5) })]);
    map = r.map;
    assert.deepEqual(inboxList(map, 'open', 'me').map((s) => s.sessionId), ['B']);
    r = mergeSummaries(map, [summary('A', { mode: 'waiting', waitingSince: at(6), updatedAt: at(6) })]);
    assert.deepEqual(r.entered.map((s) => s.sessionId), ['A']);
    // The same summary again changes nothing (and keeps the same map); garbage is skipped.
    const again = mergeSummaries(r.map, [r.map.get('A'), null, { nope: 1 }]);
    assert.equal(again.changed, false);
    assert.equal(again.map, r.map);
  });

  test('merging never mutates the map it is given', () => {
    const map = new Map([['A', summary('A', {})]]);
    const copy = new Map(map);
    mergeSummaries(map, [summary('A', { mode: 'closed', updatedAt: at(3) }), summary('Z', {})]);
    assert.deepEqual(map, copy);
  });
});

describe('canned replies', () => {
  const replies = [
    { id: '1', shortcut: 'refund', title: 'Refund policy', text: 'Refunds take 5 days.' },
    { id: '2', shortcut: 'hello', title: 'Greeting', text: 'Hello! How can I help?' },
    { id: '3', shortcut: 'bye', title: 'Say goodbye', text: 'Bye!' },
    { id: '4', shortcut: 'ship-eu', title: 'Refund for EU shipping', text: 'EU…' },
  ];
  test('search: shortcut prefix first, then title prefix, then contains; case-insensitive; empty = all by shortcut', () => {
    assert.deepEqual(searchCanned(replies, '').map((r) => r.shortcut), ['bye', 'hello', 'refund', 'ship-eu']);
    assert.deepEqual(searchCanned(replies, 'RE').map((r) => r.shortcut), ['refund', 'ship-eu', 'hello'], 'Greeting contains re');
    assert.deepEqual(searchCanned(replies, 'say').map((r) => r.shortcut), ['bye']);
    assert.deepEqual(searchCanned(replies, 'eu').map((r) => r.shortcut), ['ship-eu']);
    assert.deepEqual(searchCanned(replies, 'good').map((r) => r.shortcut), ['bye']);
    assert.deepEqual(searchCanned(replies, 'zzz'), []);
    assert.equal(searchCanned(replies, '', 2).length, 2);
  });

  test('slashQuery: a / at the start or after a space, up to the caret; not inside a word or a URL', () => {
    assert.deepEqual(slashQuery('/ref', 4), { query: 'ref', start: 0, end: 4 });
    assert.deepEqual(slashQuery('Hi /he', 6), { query: 'he', start: 3, end: 6 });
    assert.deepEqual(slashQuery('/', 1), { query: '', start: 0, end: 1 });
    assert.equal(slashQuery('and/or', 6), null);
    assert.equal(slashQuery('see https://x.test/a', 20), null);
    assert.equal(slashQuery('/ref now', 8), null, 'the caret is past the shortcut');
    assert.deepEqual(slashQuery('/ref now', 4), { query: 'ref', start: 0, end: 4 });
  });

  test('insertCanned replaces the /shortcut with the text and puts the caret after it', () => {
    const text = 'Hi /he, thanks';
    const token = slashQuery(text, 6);
    assert.deepEqual(insertCanned(text, token, 'Hello!'), { text: 'Hi Hello!, thanks', caret: 9 });
  });

  test('the manage form checks what the server checks', () => {
    assert.deepEqual(cannedErrors({ shortcut: 'ok-1_x', title: 'T', text: 'x' }), {});
    assert.deepEqual(Object.keys(cannedErrors({ shortcut: 'Bad', title: '', text: ' ' })).sort(), ['shortcut', 'text', 'title']);
    assert.ok(cannedErrors({ shortcut: '-x', title: 'T', text: 'x' }).shortcut);
    assert.ok(cannedErrors({ shortcut: 'a'.repeat(33), title: 'T', text: 'x' }).shortcut);
    assert.equal(cannedErrors({ shortcut: 'a'.repeat(32), title: 'T'.repeat(100), text: 'x'.repeat(4000) }).shortcut, undefined);
    assert.ok(cannedErrors({ shortcut: 'a', title: 'T'.repeat(101), text: 'x' }).title);
    assert.ok(cannedErrors({ shortcut: 'a', title: 'T', text: 'x'.repeat(4001) }).text);
  });
});

describe('tokens, times, labels', () => {
  const jwt = (claims) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;
  test('agentClaims reads sub, name, role, exp; tokenProblem says what is wrong before asking the server', () => {
    const now = Date.UTC(2026, 0, 1);
    const good = jwt({ sub: 'a-1', name: 'Alex', role: 'agent', exp: now / 1000 + 3600 });
    assert.deepEqual(agentClaims(good), { sub: 'a-1', name: 'Alex', role: 'agent', exp: now / 1000 + 3600 });
    assert.equal(tokenProblem(good, now), null);
    assert.match(tokenProblem('not a token', now), /not a JWT/);
    assert.match(tokenProblem(jwt({ sub: 'u', role: 'user', exp: now / 1000 + 3600 }), now), /not an agent token/);
    assert.match(tokenProblem(jwt({ role: 'agent' }), now), /no "sub"/);
    assert.match(tokenProblem(jwt({ sub: 'a', role: 'agent', exp: now / 1000 + 30 }), now), /expired/);
    assert.equal(agentClaims('a.b'), null);
  });

  test('formatDuration reads like people speak', () => {
    assert.equal(formatDuration(-5), '0 s');
    assert.equal(formatDuration(42_000), '42 s');
    assert.equal(formatDuration(3 * 60_000 + 59_000), '3 min');
    assert.equal(formatDuration(60 * 60_000), '1 h');
    assert.equal(formatDuration(65 * 60_000), '1 h 5 min');
    assert.equal(formatDuration(27 * 3_600_000), '1 d 3 h');
  });

  test('labels and previews are plain strings (the console puts them in text nodes)', () => {
    assert.equal(customerLabel(summary('01ABCDEFGHJKMN', { userId: 'u-7' })), 'u-7');
    assert.equal(customerLabel(summary('01ABCDEFGHJKMN', {})), 'Guest GHJKMN');
    assert.equal(preview({ role: 'user', content: '  <b>hi</b>\n there ' }), 'Customer: <b>hi</b> there');
    assert.equal(preview({ role: 'agent', name: 'Alex', content: 'ok' }), 'Alex: ok');
    assert.equal(preview({ role: 'system', content: 'Alex joined' }), 'Alex joined');
    assert.equal(preview({ role: 'assistant', content: 'x'.repeat(200) }, 10), `Bot: ${'x'.repeat(9)}…`);
    assert.equal(preview(undefined), '');
  });

  test('the socket URL: the configured one, else the API base as ws(s) with /ws; the token encoded', () => {
    assert.equal(agentSocketUrl('http://127.0.0.1:3000/', undefined, 'a.b+c'), 'ws://127.0.0.1:3000/ws?agentToken=a.b%2Bc');
    assert.equal(agentSocketUrl('https://api.test', '', 't'), 'wss://api.test/ws?agentToken=t');
    assert.equal(agentSocketUrl('https://api.test', 'wss://ws.test/prod', 't'), 'wss://ws.test/prod?agentToken=t');
    assert.equal(agentSocketUrl('https://api.test', 'wss://ws.test/prod?x=1', 't'), 'wss://ws.test/prod?x=1&agentToken=t');
  });
});

describe('edit and delete of the agent\'s own messages', () => {
  const T0 = Date.UTC(2026, 0, 1, 10, 0);
  const iso = (ms) => new Date(ms).toISOString();
  const msg = (fields) => ({ id: 'M1', seq: 3, role: 'agent', name: 'Alex', type: 'text', content: 'hi', status: 'delivered', createdAt: iso(T0), updatedAt: iso(T0), ...fields });
  const WINDOW = 300_000;

  test('offered on the agent\'s own stored message within the window, nowhere else', () => {
    assert.equal(canChangeOwn(msg({}), 'Alex', T0 + 1_000, WINDOW), true);
    assert.equal(canChangeOwn(msg({}), 'Alex', T0 + WINDOW - 1, WINDOW), true);
    assert.equal(canChangeOwn(msg({}), 'Alex', T0 + WINDOW, WINDOW), false, 'the window is over');
    assert.equal(canChangeOwn(msg({ name: 'Sam' }), 'Alex', T0, WINDOW), false, 'another agent\'s');
    assert.equal(canChangeOwn(msg({}), '', T0, WINDOW), false, 'no name signed in');
    assert.equal(canChangeOwn(msg({ role: 'user', name: 'Alex' }), 'Alex', T0, WINDOW), false, 'the customer\'s');
    assert.equal(canChangeOwn(msg({ role: 'assistant', name: undefined }), 'Alex', T0, WINDOW), false, 'the bot\'s');
    assert.equal(canChangeOwn(msg({ role: 'system', name: undefined }), 'Alex', T0, WINDOW), false);
    assert.equal(canChangeOwn(msg({ deleted: true, content: '' }), 'Alex', T0, WINDOW), false, 'a tombstone');
    assert.equal(canChangeOwn(msg({ seq: undefined }), 'Alex', T0, WINDOW), false, 'not stored');
    assert.equal(canChangeOwn(msg({ createdAt: 'garbage' }), 'Alex', T0, WINDOW), false);
    assert.equal(canChangeOwn(msg({}), 'Alex', T0, 0), false, 'CHAT_EDIT_WINDOW_S=0: never');
    assert.equal(canChangeOwn(null, 'Alex', T0, WINDOW), false);
  });

  test('the next end of a window among the changeable messages; null when none is', () => {
    const list = [
      msg({ id: 'A', createdAt: iso(T0) }),
      msg({ id: 'B', createdAt: iso(T0 + 60_000) }),
      msg({ id: 'C', createdAt: iso(T0 + 10_000), name: 'Sam' }),
      msg({ id: 'D', createdAt: iso(T0 + 5_000), deleted: true }),
    ];
    assert.equal(changeWindowEnds(list, 'Alex', T0 + 1_000, WINDOW), WINDOW - 1_000, 'A ends first');
    assert.equal(changeWindowEnds(list, 'Alex', T0 + WINDOW, WINDOW), 60_000, 'then B');
    assert.equal(changeWindowEnds(list, 'Alex', T0 + WINDOW + 60_000, WINDOW), null);
    assert.equal(changeWindowEnds([], 'Alex', T0, WINDOW), null);
  });

  test('a reconnect asks for the changes after the newest updatedAt held (createdAt for old servers); 0 for none', () => {
    assert.equal(newestUpdate([]), 0);
    assert.equal(newestUpdate([
      msg({ id: 'A', createdAt: iso(T0), updatedAt: iso(T0 + 90_000), editedAt: iso(T0 + 90_000) }),
      msg({ id: 'B', createdAt: iso(T0 + 60_000), updatedAt: iso(T0 + 60_000) }),
      { id: 'C', createdAt: iso(T0 + 30_000) },
      { id: 'D', updatedAt: 'garbage' },
    ]), T0 + 90_000);
  });

  test('the console\'s merge (mergeMessages): an edit pushed replaces by id, an older version never overwrites it, a tombstone stays', () => {
    const v1 = msg({});
    const v2 = msg({ content: 'hello', editedAt: iso(T0 + 20_000), updatedAt: iso(T0 + 20_000) });
    let { list } = mergeMessages([v1], [v2]);
    assert.deepEqual(list.map((m) => [m.id, m.seq, m.content, m.editedAt]), [['M1', 3, 'hello', iso(T0 + 20_000)]]);
    ({ list } = mergeMessages(list, [v1]));
    assert.equal(list[0].content, 'hello', 'a page loaded before the edit does not undo it');
    const gone = msg({ content: '', deleted: true, deletedAt: iso(T0 + 30_000), updatedAt: iso(T0 + 30_000) });
    ({ list } = mergeMessages(list, [gone, v2]));
    assert.deepEqual([list.length, list[0].deleted, list[0].content], [1, true, '']);
  });
});
