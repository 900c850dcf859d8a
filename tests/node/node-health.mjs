// Conformance peer: the third-party `openclaw-node@0.14.0` client against a gateway.
//
// It connects (openclaw-node signs the connect with a v2 Ed25519 device signature and keeps its
// identity in $HOME/.openclaw/device-identity.json), calls `health()`, checks `hasMethod("health")`
// against hello-ok's advertised methods, prints one JSON line and exits 0 only when all of that
// worked. Driven by crates/clawgate/tests/conformance_openclaw.rs.
//
// Env: GW_URL (ws://127.0.0.1:PORT), GW_TOKEN, OPENCLAW_PEERS_DIR (the npm install dir holding
// node_modules/openclaw-node; ESM ignores NODE_PATH, so we resolve through createRequire).

import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import path from "node:path";

const HARD_TIMEOUT_MS = 30_000;

function fail(stage, err) {
  console.log(JSON.stringify({ ok: false, stage, error: String(err?.message ?? err) }));
  process.exit(1);
}

const timer = setTimeout(() => fail("timeout", `no result within ${HARD_TIMEOUT_MS} ms`), HARD_TIMEOUT_MS);

const url = process.env.GW_URL;
const token = process.env.GW_TOKEN;
if (!url) fail("env", "GW_URL is not set");

const base = process.env.OPENCLAW_PEERS_DIR ?? process.cwd();
const require = createRequire(path.join(base, "package.json"));
let OpenClawClient;
try {
  ({ OpenClawClient } = require("openclaw-node"));
} catch (err) {
  fail("load openclaw-node", err);
}

// No reconnect loop: a refused connect must fail this run, not be retried.
const client = new OpenClawClient({ url, token, autoReconnect: false });
client.on("error", () => {});

let hello;
try {
  hello = await client.connect();
} catch (err) {
  fail("connect", err);
}

let health;
try {
  health = await client.health();
} catch (err) {
  fail("health", err);
}

const identityPath = path.join(process.env.HOME ?? "/tmp", ".openclaw", "device-identity.json");
const result = {
  ok: health?.ok === true && client.hasMethod("health"),
  protocol: hello?.protocol,
  authMethod: hello?.auth?.method,
  role: hello?.auth?.role,
  scopes: hello?.auth?.scopes,
  hasHealth: client.hasMethod("health"),
  hasNoSuchMethod: client.hasMethod("no.such.method"),
  methodCount: client.availableMethods.length,
  health,
  deviceIdentityWritten: existsSync(identityPath),
};
console.log(JSON.stringify(result));
clearTimeout(timer);
try {
  await client.disconnect();
} catch {
  // The result is already printed; a failing close does not change it.
}
process.exit(result.ok ? 0 : 1);
