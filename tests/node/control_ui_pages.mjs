// The OpenClaw Control UI (the openclaw package's dist/control-ui, served by clawgate from
// gateway.controlUi.root) page by page in a real browser: headless Debian Chromium driven by
// playwright-core (scripts/install-browser.sh). Driven by crates/clawgate/tests/control_ui.rs.
//
// It opens `GW_HTTP/#token=GW_TOKEN` in a fresh profile, waits for hello-ok and for the start-up
// requests to be answered, then for each page of PAGES:
//   1. opens it as a user typing the address would (a fresh load and socket, waiting for hello-ok);
//   2. waits until the page's EXPECT methods were answered, then until no request was sent for
//      QUIET_MS (or SETTLE_MS passed: some pages poll), then until every request sent so far was
//      answered (each bounded by PAGE_WAIT_MS);
//   3. records every request sent since it navigated and its answer (method, ok, code, message),
//      and the text of every visible error element (error callouts, error banners, toasts, the
//      composer's errors — the classes the UI's own code gives them);
//   4. saves a screenshot to ARTIFACTS/control-ui-<name>.png.
// With CHAT_TEXT it then types that into the chat page's composer, presses Enter and waits until
// EXPECT_REPLY shows in the page.
// It prints one JSON line last: {ok, pages:[{name, path, requests, errors, screenshot}], chat, …};
// the Rust test decides what must hold.
//
// Env: GW_HTTP, GW_TOKEN, PLAYWRIGHT_DIR, ARTIFACTS, PAGES (JSON [{name, path, expect}]),
// PAGE_WAIT_MS, QUIET_MS, SETTLE_MS, CHAT_TEXT, EXPECT_REPLY, CHROMIUM.

import path from 'node:path';
import { createHarness } from './browser-harness.mjs';

const { result, finish, need, check, step, launch } =
  createHarness({ hardTimeoutMs: 420_000, profilePrefix: 'clawgate-controlui-pages-' });

const httpBase = need('GW_HTTP');
const token = need('GW_TOKEN');
const artifacts = need('ARTIFACTS');
const playwrightDir = need('PLAYWRIGHT_DIR');
const pages = JSON.parse(need('PAGES'));
const pageWaitMs = Number(process.env.PAGE_WAIT_MS || 20_000);
const quietMs = Number(process.env.QUIET_MS || 1_500);
const settleMs = Number(process.env.SETTLE_MS || 4_000);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

// The UI's error surfaces, from its own code: `callout danger` (page and sidebar errors),
// `oc-banner-error`, `*-error-banner`, `systems-callout--error`, the composer's
// `agent-chat__composer-error`, `chat-error__content`, and toasts (`app-toast`, shown for a
// failed action).
const ERROR_SELECTOR = [
  '.callout.danger',
  '.oc-banner-error',
  '[class*="error-banner"]',
  '.systems-callout--error',
  '.agent-chat__composer-error',
  '.chat-error__content',
  '.app-toast[data-active="true"]',
].join(', ');

const sent = [];
const received = [];
const pageErrors = [];
let sockets = 0;

const page = await launch(playwrightDir, executablePath);
page.on('pageerror', (err) => pageErrors.push(String(err)));
page.on('websocket', (ws) => {
  sockets += 1;
  ws.on('framereceived', (f) => {
    try { received.push({ at: Date.now(), frame: JSON.parse(f.payload) }); } catch { /* binary */ }
  });
  ws.on('framesent', (f) => {
    try { sent.push({ at: Date.now(), frame: JSON.parse(f.payload) }); } catch { /* binary */ }
  });
});

/** Requests sent from index `from` on, each with its answer (or `pending`). */
function requests(from = 0) {
  const answers = new Map(received.filter((r) => r.frame.type === 'res').map((r) => [r.frame.id, r.frame]));
  return sent.slice(from)
    .filter((s) => s.frame.type === 'req')
    .map(({ frame: req }) => {
      const res = answers.get(req.id);
      if (!res) return { method: req.method, pending: true };
      const out = { method: req.method, ok: res.ok === true };
      if (!out.ok) Object.assign(out, { code: res.error?.code, message: res.error?.message });
      return out;
    });
}

/** Polls the recorded frames (facts, not a sleep standing in for one) until `done()` or `ms`. */
async function until(done, ms) {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await page.waitForTimeout(100);
  return done();
}

/** Every request from `from` answered and nothing sent for `quietMs`. */
function settled(from) {
  const since = sent.slice(from);
  const last = since.length ? since[since.length - 1].at : 0;
  return requests(from).every((r) => !r.pending) && Date.now() - last >= quietMs;
}

async function visibleErrors() {
  const out = [];
  const all = page.locator(ERROR_SELECTOR);
  const n = await all.count();
  for (let i = 0; i < n; i += 1) {
    const el = all.nth(i);
    if (await el.isVisible().catch(() => false)) out.push((await el.innerText().catch(() => '?')).trim().slice(0, 300));
  }
  return out;
}

/** Opens `to` as a user typing the address would: a fresh load, a new socket, the token again. */
async function navigate(to) {
  const before = received.filter((r) => r.frame.type === 'res' && r.frame.payload?.type === 'hello-ok').length;
  await page.goto(`${httpBase}${to}#token=${encodeURIComponent(token)}`);
  const hello = () => received.filter((r) => r.frame.type === 'res' && r.frame.payload?.type === 'hello-ok').length > before;
  check(await until(hello, 30_000), `no hello-ok within 30 s after opening ${to}`);
}

/**
 * Waits for a page to load: its EXPECT methods answered, then no request for QUIET_MS or
 * SETTLE_MS after opening (pages that poll, like the systems page's `system.info` every second,
 * are never quiet), then every request sent until that point answered (bounded).
 */
async function settle(from, expect = []) {
  const opened = Date.now();
  const expected = () => expect.every((m) => requests(from).some((r) => r.method === m && !r.pending));
  const sawExpected = await until(expected, pageWaitMs);
  await until(() => settled(from) || Date.now() - opened >= settleMs, pageWaitMs);
  const upto = sent.length;
  const made = () => requests(from).slice(0, requests(from).length - requests(upto).length);
  await until(() => made().every((r) => !r.pending), pageWaitMs);
  return { sawExpected, requests: made() };
}

await step('open the UI and connect', async () => {
  await page.goto(`${httpBase}/#token=${encodeURIComponent(token)}`);
  const hello = () => received.some((r) => r.frame.type === 'res' && r.frame.payload?.type === 'hello-ok');
  check(await until(hello, 30_000), 'no hello-ok within 30 s');
  await until(() => settled(0), 30_000);
  result.startup = requests(0);
});

result.pages = [];
for (const { name, path: to, expect = [] } of pages) {
  await step(`page ${name}`, async () => {
    const from = sent.length;
    await navigate(to);
    const { sawExpected, requests: made } = await settle(from, expect);
    const screenshot = path.join(artifacts, `control-ui-${name}.png`);
    await page.screenshot({ path: screenshot, fullPage: false });
    result.pages.push({
      name,
      path: to,
      location: await page.evaluate(() => window.location.pathname),
      sawExpected,
      requests: made,
      errors: await visibleErrors(),
      screenshot,
    });
  });
}

const chatText = process.env.CHAT_TEXT;
if (chatText) {
  await step('chat through the composer', async () => {
    let from = sent.length;
    await navigate('/chat');
    await settle(from);
    from = sent.length;
    const composer = page.locator('textarea:visible, [contenteditable="true"]:visible').first();
    await composer.click();
    await page.keyboard.insertText(chatText);
    await page.keyboard.press('Enter');
    const reply = need('EXPECT_REPLY');
    const sentChat = () => requests(from).some((r) => r.method === 'chat.send' && !r.pending);
    check(await until(sentChat, 20_000), `no chat.send answered; sent ${JSON.stringify(requests(from))}`);
    await page.getByText(reply).first().waitFor({ state: 'visible', timeout: 60_000 });
    const { requests: made } = await settle(from);
    const screenshot = path.join(artifacts, 'control-ui-chat-reply.png');
    await page.screenshot({ path: screenshot, fullPage: false });
    result.chat = { requests: made, errors: await visibleErrors(), screenshot, replyShown: true };
  });
}

result.sockets = sockets;
result.pageErrors = pageErrors;
result.ok = true;
await finish(0);
