// The OpenClaw Control UI (the openclaw package's dist/control-ui, served by clawgate from
// gateway.controlUi.root) in a real browser: headless Debian Chromium driven by playwright-core
// (scripts/install-browser.sh). Driven by crates/clawgate/tests/control_ui.rs.
//
// It opens `GW_HTTP/#token=GW_TOKEN` in a fresh profile and:
//   1. waits for the UI's `connect` to be answered with hello-ok, and checks the UI's own
//      connect (client id, v2 device signature over the challenge ts);
//   2. records every request the UI sends on its socket and the answer to each (method, ok,
//      error code and message), until every start-up method named in EXPECT_METHODS was sent and
//      answered, or STARTUP_WAIT_MS passed (then the missing ones are reported);
//   3. reads whether the page shows the build-mismatch state ("Refresh for full capabilities")
//      and how many sockets the page opened (a mismatch makes it reconnect);
//   4. saves a screenshot to SCREENSHOT.
// It prints one JSON line last: {ok, requests:[{method, ok, code, message}], missing, banner,
// sockets, …}; the Rust test decides what must hold.
//
// Env: GW_HTTP, GW_TOKEN, PLAYWRIGHT_DIR, SCREENSHOT, EXPECT_METHODS (comma-separated),
// STARTUP_WAIT_MS, CHROMIUM (default /usr/bin/chromium).

import { createHarness } from './browser-harness.mjs';

const { result, finish, need, check, step, launch } =
  createHarness({ hardTimeoutMs: 120_000, profilePrefix: 'clawgate-controlui-profile-' });

const httpBase = need('GW_HTTP');
const token = need('GW_TOKEN');
const screenshot = need('SCREENSHOT');
const playwrightDir = need('PLAYWRIGHT_DIR');
const expected = need('EXPECT_METHODS').split(',').filter(Boolean);
const startupWaitMs = Number(process.env.STARTUP_WAIT_MS || 30_000);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const sent = [];
const received = [];
let sockets = 0;
const pageErrors = [];

const page = await launch(playwrightDir, executablePath);
page.on('pageerror', (err) => pageErrors.push(String(err)));
page.on('websocket', (ws) => {
  sockets += 1;
  ws.on('framereceived', (f) => {
    try { received.push(JSON.parse(f.payload)); } catch { /* binary: not ours */ }
  });
  ws.on('framesent', (f) => {
    try { sent.push(JSON.parse(f.payload)); } catch { /* binary: not ours */ }
  });
});

/** Each request the UI sent with its answer (or `pending`). */
function requests() {
  const answers = new Map(received.filter((f) => f.type === 'res').map((f) => [f.id, f]));
  return sent
    .filter((f) => f.type === 'req')
    .map((req) => {
      const res = answers.get(req.id);
      if (!res) return { method: req.method, pending: true };
      return { method: req.method, ok: res.ok === true, code: res.error?.code, message: res.error?.message };
    });
}

const answered = (method) => requests().some((r) => r.method === method && !r.pending);

await step('open the UI and connect', async () => {
  await page.goto(`${httpBase}/#token=${encodeURIComponent(token)}`);
  const deadline = Date.now() + 30_000;
  while (!received.some((f) => f.type === 'res' && f.payload?.type === 'hello-ok')) {
    check(Date.now() < deadline, `no hello-ok within 30 s; sent ${JSON.stringify(sent.map((f) => f.method))}`);
    await page.waitForTimeout(100);
  }
  const challenge = received.find((f) => f.type === 'event' && f.event === 'connect.challenge');
  const connect = sent.find((f) => f.type === 'req' && f.method === 'connect');
  check(challenge && connect, 'no challenge/connect seen on the socket');
  const p = connect.params;
  check(p.client.id === 'openclaw-control-ui', `client ${JSON.stringify(p.client)}`);
  check(p.device && p.device.signedAt === challenge.payload.ts, 'device.signedAt is not the challenge ts');
  const hello = received.find((f) => f.type === 'res' && f.id === connect.id);
  result.uiBuildId = p.client.buildId;
  result.server = hello.payload.server;
});

await step('record the start-up requests', async () => {
  // Polling the frames already recorded (not a sleep standing in for a fact): done when every
  // expected method was answered, bounded by STARTUP_WAIT_MS.
  const deadline = Date.now() + startupWaitMs;
  while (!expected.every(answered) && Date.now() < deadline) {
    await page.waitForTimeout(200);
  }
  result.requests = requests();
  result.missing = expected.filter((m) => !answered(m));
});

await step('read the page state', async () => {
  // Locators pierce the UI's (open) shadow roots, where its banners live.
  result.banner = (await page.getByText(/Refresh for full capabilities/i).count()) > 0;
  result.sockets = sockets;
  result.pageErrors = pageErrors;
  await page.screenshot({ path: screenshot, fullPage: false });
});

result.ok = true;
await finish(0);
