// Builds the reply for the chat backend's POST /webhook as the exact string that
// "Sign and send reply" signs and sends. eventId is derived from the message id, so a
// repeated run (a retried dispatch, a retried callback) is a no-op on the chat side.
const TYPES = ['text', 'confirmation', 'clarification', 'cancellation', 'error', 'info',
  'scheduling_update', 'handoff'];

const request = $('Verify signature').first().json;
const answer = $input.first().json;

let content = answer.content ?? answer.output ?? answer.text;
let type = TYPES.includes(answer.type) ? answer.type : 'text';
if (answer.error !== undefined || typeof content !== 'string' || content.trim() === '') {
  // The agent failed (node setting "On Error: Continue") or gave nothing usable.
  content = 'Sorry, the assistant could not answer this time. Please try again.';
  type = 'error';
}

const reply = {
  sessionId: request.sessionId,
  replyTo: request.messageId,
  content,
  type,
  eventId: `n8n-${request.messageId}`,
};
if (answer.data !== null && typeof answer.data === 'object' && !Array.isArray(answer.data)) {
  reply.data = answer.data;
}
// Serialized once: the signature is over these bytes, and they are sent as they are.
return [{ json: { callbackUrl: request.callbackUrl, body: JSON.stringify(reply) } }];
