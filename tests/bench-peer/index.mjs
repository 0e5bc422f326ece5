// The Node.js 20 peer of the cold-start benchmark (functions/benches/cold_start.rs): a
// WebSocket `$connect` handler doing what our `connect` function does, written the usual way
// for Node: AWS SDK v3 with its default credential chain and the client at module scope. It
// verifies the session token (an HS256 JWT signed with CHAT_SESSION_SECRET, naming the session
// in `sid`, expiring at `exp`), reads the session item (it must exist and be live), puts the
// connection's two items in one TransactWriteItems (the session's fan-out entry and the
// lookup by connection id, as crates/chat-aws/src/dynamo/store.rs), logs one JSON line and one
// EMF metric line, and answers 200 `{}` (or the contract's error shape).
//
// The Lambda runtime interface is the small loop at the end (GET next, POST response), as a
// custom runtime's bootstrap does; `bootstrap` execs this file with node.

import { createHmac, timingSafeEqual } from "node:crypto";
import http from "node:http";
import { DynamoDBClient, GetItemCommand, TransactWriteItemsCommand } from "@aws-sdk/client-dynamodb";

const TABLE = process.env.TABLE_NAME;
const SECRET = process.env.CHAT_SESSION_SECRET;
if (!TABLE || !SECRET) {
  console.error(JSON.stringify({ level: "ERROR", message: "TABLE_NAME and CHAT_SESSION_SECRET are required" }));
  process.exit(1);
}
const dynamo = new DynamoDBClient({});

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

function respond(status, body) {
  return { statusCode: status, headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
}

function error(status, code, message) {
  return respond(status, { error: { code, message } });
}

function b64url(buf) {
  return Buffer.from(buf).toString("base64url");
}

// The claims of a valid HS256 token, or null.
function verify(token) {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  let header;
  try {
    header = JSON.parse(Buffer.from(parts[0], "base64url").toString());
  } catch {
    return null;
  }
  if (header.alg !== "HS256") return null;
  const want = Buffer.from(b64url(createHmac("sha256", SECRET).update(`${parts[0]}.${parts[1]}`).digest()));
  const got = Buffer.from(parts[2]);
  if (want.length !== got.length || !timingSafeEqual(want, got)) return null;
  try {
    return JSON.parse(Buffer.from(parts[1], "base64url").toString());
  } catch {
    return null;
  }
}

async function connect(event) {
  const q = event.queryStringParameters || {};
  const connectionId = event.requestContext?.connectionId;
  if (!connectionId) return error(400, "invalid_input", "no connection id");
  if (!q.sessionId) return error(400, "invalid_query", "sessionId is required in the WebSocket URL");
  if (!q.token) return error(401, "missing_token", "a session token is required (Authorization: Bearer <token>)");
  const claims = verify(q.token);
  if (!claims || typeof claims.sid !== "string" || typeof claims.exp !== "number") {
    return error(401, "invalid_token", "session token is invalid");
  }
  const now = Date.now();
  if (claims.exp * 1000 <= now) return error(401, "token_expired", "session token has expired; create a new session");
  const sid = q.sessionId.toUpperCase();
  if (!ULID.test(sid)) return error(400, "invalid_input", "sessionId is not a valid id");
  if (sid !== claims.sid.toUpperCase()) return error(403, "forbidden", "this token belongs to another session");

  const pk = `SESSION#${claims.sid}`;
  const session = await dynamo.send(
    new GetItemCommand({ TableName: TABLE, Key: { pk: { S: pk }, sk: { S: "SESSION" } }, ConsistentRead: true }),
  );
  if (!session.Item || Number(session.Item.expiresAtMs?.N ?? 0) <= now) {
    return error(404, "not_found", "unknown session");
  }
  const expiresAt = claims.exp * 1000;
  const common = {
    connectedAt: { N: String(now) },
    expiresAtMs: { N: String(expiresAt) },
    ttl: { N: String(Math.floor(expiresAt / 1000)) },
  };
  await dynamo.send(
    new TransactWriteItemsCommand({
      TransactItems: [
        { Put: { TableName: TABLE, Item: { pk: { S: pk }, sk: { S: `CONN#${connectionId}` }, ...common } } },
        {
          Put: {
            TableName: TABLE,
            Item: { pk: { S: `CONN#${connectionId}` }, sk: { S: "CONN" }, sessionId: { S: claims.sid }, ...common },
          },
        },
      ],
    }),
  );
  console.log(JSON.stringify({ level: "INFO", message: "connected", session_id: claims.sid, connection_id: connectionId }));
  console.log(
    JSON.stringify({
      _aws: {
        Timestamp: now,
        CloudWatchMetrics: [{ Namespace: "Chat", Dimensions: [["Function"]], Metrics: [{ Name: "ConnectionsOpened", Unit: "Count" }] }],
      },
      Function: process.env.AWS_LAMBDA_FUNCTION_NAME,
      ConnectionsOpened: 1,
    }),
  );
  return respond(200, {});
}

// The runtime interface: one invocation at a time, as Lambda runs a function.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");

function request(method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path, agent }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    if (body !== undefined) {
      req.setHeader("content-type", "application/json");
      req.end(body);
    } else {
      req.end();
    }
  });
}

for (;;) {
  const next = await request("GET", "/2018-06-01/runtime/invocation/next");
  const id = next.headers["lambda-runtime-aws-request-id"];
  let result;
  try {
    result = await connect(JSON.parse(next.body));
  } catch (e) {
    console.error(JSON.stringify({ level: "ERROR", message: "connect failed", error: String(e) }));
    result = error(500, "internal", "internal error");
  }
  await request("POST", `/2018-06-01/runtime/invocation/${id}/response`, JSON.stringify(result));
}
