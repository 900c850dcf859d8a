// Third-party Telegram Bot API peer: `telegram-test-api@4.2.1` (an emulator of api.telegram.org
// with a client that plays the user's side), installed by scripts/install-telegram-test-api.sh.
// Driven by crates/clawgate-channels/tests/telegram_peer.rs.
//
// Usage: node telegram-test-api-server.mjs <port> <bot-token>
// Env:   TTA_DIR — the install dir holding node_modules/telegram-test-api (ESM ignores NODE_PATH,
//        so we resolve through createRequire).
//
// Starts the emulator on 127.0.0.1:<port>, prints one JSON line {"ready":true,"apiRoot":…} on
// stdout, then reads JSON commands, one per stdin line, and answers each with one JSON line,
// using the package's own TelegramClient (so the user's messages have the shape it builds):
//   {"cmd":"send","text":"hello"}   → the user sends a message  → {"ok":true}
//   {"cmd":"replies","timeoutMs":N} → the bot's messages the user has not read yet (waits up to
//                                      N ms for at least one)   → {"ok":true,"result":[…]}
//                                      Ask only after the bot's send returned: the package's
//                                      client keeps polling after its timeout and would swallow
//                                      a later reply.
//   {"cmd":"stats"}                  → Bot API requests per method so far, counted from the
//                                      package's own request log → {"ok":true,"result":{…}}
// Exits when stdin closes (the test dropped its handle) or on a hard timeout.

import { createRequire } from "node:module";
import path from "node:path";
import readline from "node:readline";

const HARD_TIMEOUT_MS = 120_000;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function fail(stage, err) {
  out({ ok: false, stage, error: String(err?.message ?? err) });
  process.exit(1);
}

const [port, token] = process.argv.slice(2);
if (!port || !token) fail("args", "usage: telegram-test-api-server.mjs <port> <bot-token>");

const base = process.env.TTA_DIR ?? process.cwd();
const require = createRequire(path.join(base, "package.json"));
let TelegramServer;
try {
  TelegramServer = require("telegram-test-api");
} catch (err) {
  fail("load telegram-test-api", err);
}

// Count Bot API requests through the package's request logger (the `debug` namespace
// TelegramServer:request logs every request with its URL).
const requests = {};
try {
  const debug = require("debug");
  debug.enable("TelegramServer:request");
  debug.log = (...args) => {
    const m = /"url":"\/bot[^/"]*\/([A-Za-z]+)/.exec(args.join(" "));
    if (m) requests[m[1]] = (requests[m[1]] ?? 0) + 1;
  };
} catch (err) {
  fail("load debug", err);
}

const server = new TelegramServer({ port: Number(port), host: "127.0.0.1", storeTimeout: 120 });
try {
  await server.start();
} catch (err) {
  fail("start", err);
}
const client = server.getClient(token, { userId: 4242, chatId: 4242, userName: "alice", firstName: "Alice" });

async function stop(code) {
  try {
    await server.stop();
  } finally {
    process.exit(code);
  }
}

const hard = setTimeout(() => stop(2), HARD_TIMEOUT_MS);
hard.unref();

const rl = readline.createInterface({ input: process.stdin });
rl.on("close", () => stop(0));
rl.on("line", async (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    out({ ok: false, error: `bad command: ${err.message}` });
    return;
  }
  try {
    if (cmd.cmd === "send") {
      await client.sendMessage(client.makeMessage(cmd.text));
      out({ ok: true });
    } else if (cmd.cmd === "replies") {
      const waiter = server.getClient(token, {
        userId: 4242,
        chatId: 4242,
        timeout: cmd.timeoutMs ?? 5000,
        interval: 50,
      });
      const updates = await waiter.getUpdates();
      out({ ok: true, result: updates.result });
    } else if (cmd.cmd === "stats") {
      out({ ok: true, result: requests });
    } else {
      out({ ok: false, error: `unknown command ${cmd.cmd}` });
    }
  } catch (err) {
    out({ ok: false, error: String(err?.message ?? err) });
  }
});

out({ ready: true, apiRoot: server.config.apiURL });
