// A small OpenAI-compatible chat model server for the n8n tests, on 127.0.0.1: POST
// /v1/chat/completions streams a known answer (ANSWER, in TOKENS) the way OpenAI streams, so
// that the shipped AI-agent workflow streams it through n8n. Every request is recorded.

import http from 'node:http';

// The model's answer, streamed in pieces of three characters, one every 25 ms.
export const ANSWER = 'Hello! Here is **your** answer:\n\n- first, the plan\n- then, the *details*\n\nAnything else? 🙂';
export const TOKENS = Array.from(ANSWER).reduce((acc, ch, i) => {
  if (i % 3 === 0) acc.push('');
  acc[acc.length - 1] += ch;
  return acc;
}, []);
export const TOKEN_GAP_MS = 25;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A small OpenAI-compatible server: POST /v1/chat/completions streams ANSWER. */
export async function fakeOpenAi() {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      let body = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        // recorded as {}
      }
      requests.push({ path: req.url, body });
      if (req.method !== 'POST' || !req.url.endsWith('/chat/completions')) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"error":{"message":"not found"}}');
        return;
      }
      const base = { id: 'chatcmpl-test', created: Math.floor(Date.now() / 1000), model: body.model ?? 'test' };
      if (!body.stream) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({
          ...base,
          object: 'chat.completion',
          choices: [{ index: 0, message: { role: 'assistant', content: ANSWER }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 10, completion_tokens: TOKENS.length, total_tokens: 10 + TOKENS.length },
        }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const send = (o) => res.write(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', ...o })}\n\n`);
      send({ choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
      for (const t of TOKENS) {
        await sleep(TOKEN_GAP_MS);
        send({ choices: [{ index: 0, delta: { content: t }, finish_reason: null }] });
      }
      send({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
      send({ choices: [], usage: { prompt_tokens: 10, completion_tokens: TOKENS.length, total_tokens: 10 + TOKENS.length } });
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/v1`,
    requests,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}
