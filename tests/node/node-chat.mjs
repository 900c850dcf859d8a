// Conformance peer: a chat with the third-party `openclaw-node@0.14.0` client, the way the live
// capture's node-client.js used it (contracts/openclaw-live.md §4, C11).
//
// It connects (v2-signed device), calls `health()`, `sessions.list {limit:10}`, subscribes to the
// session's messages (`sessions.subscribeMessages`, i.e. `sessions.messages.subscribe`), runs
// `chat()` (the library streams the `agent` method by watching `agent` events of its run), then
// sends a second message with `chat.send` (with an idempotency key: the library's own
// `sessions.send()` leaves it out, which the real gateway refuses) and waits for its `chat`
// final event, reads `chat.history {limit:20}`, and unsubscribes. It prints one JSON line with
// what it saw and exits 0 when every step worked; the Rust test judges the content.
// Driven by crates/clawgate/tests/conformance_agent.rs.
//
// Env: GW_URL (ws://127.0.0.1:PORT), GW_TOKEN, SESSION_KEY (default agent:main:main),
// OPENCLAW_PEERS_DIR (the npm install dir; ESM ignores NODE_PATH, so we use createRequire).

import { createRequire } from "node:module";
import path from "node:path";

const HARD_TIMEOUT_MS = 60_000;
const FINAL_TIMEOUT_MS = 30_000;

const result = { ok: false, steps: [] };

function finish(code) {
  console.log(JSON.stringify(result));
  process.exit(code);
}

function fail(stage, err) {
  result.stage = stage;
  result.error = String(err?.message ?? err);
  finish(1);
}

setTimeout(() => fail("timeout", `no result within ${HARD_TIMEOUT_MS} ms`), HARD_TIMEOUT_MS).unref();

const url = process.env.GW_URL;
const token = process.env.GW_TOKEN;
const sessionKey = process.env.SESSION_KEY || "agent:main:main";
if (!url) fail("env", "GW_URL is not set");

const base = process.env.OPENCLAW_PEERS_DIR ?? process.cwd();
const require = createRequire(path.join(base, "package.json"));
let OpenClawClient;
try {
  ({ OpenClawClient } = require("openclaw-node"));
} catch (err) {
  fail("load openclaw-node", err);
}

async function step(name, fn) {
  try {
    const value = await fn();
    result.steps.push(name);
    return value;
  } catch (err) {
    fail(name, err);
  }
}

const text = (message) => {
  const content = message?.content;
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.filter((p) => p?.type === "text").map((p) => p.text).join("");
  return "";
};

// No reconnect loop: a refused connect must fail this run, not be retried.
const client = new OpenClawClient({ url, token, autoReconnect: false });
client.on("error", () => {});

await step("connect", () => client.connect());
result.health = await step("health", () => client.health());
const listed = await step("sessions.list", () => client.sessions.list({ limit: 10 }));
result.sessionsListed = Array.isArray(listed?.sessions);

const sessionMessages = [];
const subscription = await step("sessions.messages.subscribe", () =>
  client.sessions.subscribeMessages(sessionKey, (event) => {
    if (event.event === "session.message") {
      sessionMessages.push({ role: event.payload?.message?.role, text: text(event.payload?.message) });
    }
  }),
);

result.chunks = await step("chat", async () => {
  const chunks = [];
  for await (const chunk of client.chat("Say hello via openclaw-node", { sessionKey })) {
    chunks.push({ type: chunk.type, text: chunk.text, runId: chunk.runId });
  }
  return chunks;
});

// chat.send answers at once; the reply arrives as `chat` events of its run.
const idempotencyKey = `node-chat-${Date.now()}`;
const finalEvent = new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("no chat final event for chat.send")), FINAL_TIMEOUT_MS);
  client.on("event", (event) => {
    const p = event.payload;
    if (event.event === "chat" && p?.runId === idempotencyKey && ["final", "aborted", "error"].includes(p.state)) {
      clearTimeout(timer);
      resolve(p);
    }
  });
});
result.chatSend = await step("chat.send", async () => {
  const res = await client.request("chat.send", { sessionKey, message: "Second message via chat.send", idempotencyKey });
  return res.payload;
});
const final = await step("chat.send final", () => finalEvent);
result.chatSendFinal = { state: final.state, text: text(final.message) };

const history = await step("chat.history", () => client.sessions.history(sessionKey, { limit: 20 }));
result.history = (history?.messages ?? []).map((m) => ({ role: m.role, text: text(m) }));

await step("sessions.messages.unsubscribe", () => subscription.unsubscribe());
result.sessionMessages = sessionMessages;
result.ok = true;
try {
  await client.disconnect();
} catch {
  // The result is complete; a failing close does not change it.
}
finish(0);
