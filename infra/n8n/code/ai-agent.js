// ================= YOUR AI AGENT GOES HERE =================
// Replace this node with your AI Agent (or any chain of nodes). Its input is the
// verified dispatch: $json.content (the user's message), $json.sessionId (use it as the
// memory/session key), $json.history, $json.userId, $json.metadata.
// Its output item needs the answer in `content` (or `output`, as the AI Agent node
// gives it, or `text`); optional `type` (text, confirmation, clarification,
// cancellation, error, info, scheduling_update) and `data` (a JSON object).
// This stand-in echoes the message so the workflow runs out of the box.
return $input.all().map((item) => ({
  json: {
    content: `You said: ${item.json.content}`,
    type: 'text',
  },
}));
