// LINE's own signature check as an independent oracle: `validateSignature` of `@line/bot-sdk@11.2.0`
// (installed by scripts/install-line-sdk.sh). Driven by crates/clawgate-channels/tests/line_sdk.rs.
//
// Usage: node line-validate-signature.mjs
// Env:   LINE_SDK_DIR — the install dir holding node_modules/@line/bot-sdk (ESM ignores NODE_PATH,
//        so we resolve through createRequire).
//
// Reads one JSON case per stdin line, {"body": "<base64 of the raw body>", "secret": "…",
// "signature": "…"}, and answers each with one line, {"valid": true|false}. Exits when stdin
// closes.

import { createRequire } from "node:module";
import path from "node:path";
import readline from "node:readline";

const dir = process.env.LINE_SDK_DIR;
if (!dir) {
  console.error("LINE_SDK_DIR is not set");
  process.exit(2);
}
const require = createRequire(path.join(dir, "package.json"));
const { validateSignature } = require("@line/bot-sdk");

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const c = JSON.parse(line);
  const body = Buffer.from(c.body, "base64");
  let valid;
  try {
    valid = validateSignature(body, c.secret, c.signature);
  } catch (e) {
    valid = false;
  }
  process.stdout.write(JSON.stringify({ valid }) + "\n");
}
