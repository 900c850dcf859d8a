// Two user flows of the OpenClaw Control UI (the openclaw package's dist/control-ui, served by
// clawgate from gateway.controlUi.root) in headless Chromium, driven by
// crates/clawgate/tests/control_ui.rs:
//   1. Automations: "New automation", type a name, a prompt and an interval in the form's own
//      fields (the form's default schedule is "every N minutes"), press "Create automation", wait
//      until `cron.add` is answered and the list shows the name; screenshot
//      ARTIFACTS/control-ui-cron-created.png.
//   2. Devices: the pending pairing request of DEVICE_ID (made by the Rust test before) shows in
//      the devices page; click its Approve, wait until `device.pair.approve` is answered and the
//      request left the page; screenshot ARTIFACTS/control-ui-device-approved.png.
// It prints one JSON line last: {ok, cron:{requests, errors}, device:{requests, errors}, …}; the
// Rust test checks the gateway's side (cron.list, the device connecting).
//
// Env: GW_HTTP, GW_TOKEN, PLAYWRIGHT_DIR, ARTIFACTS, CRON_NAME, CRON_PROMPT, CRON_EVERY_MINUTES,
// DEVICE_ID, CHROMIUM.

import path from 'node:path';
import { createHarness } from './browser-harness.mjs';

const { result, finish, need, check, step, launch } =
  createHarness({ hardTimeoutMs: 240_000, profilePrefix: 'clawgate-controlui-flows-' });

const httpBase = need('GW_HTTP');
const token = need('GW_TOKEN');
const artifacts = need('ARTIFACTS');
const playwrightDir = need('PLAYWRIGHT_DIR');
const cronName = need('CRON_NAME');
const cronPrompt = need('CRON_PROMPT');
const everyMinutes = need('CRON_EVERY_MINUTES');
const deviceId = need('DEVICE_ID');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = 30_000;

// The UI's error surfaces (as in control_ui_pages.mjs, from the UI's own classes).
const ERROR_SELECTOR = [
  '.callout.danger',
  '.oc-banner-error',
  '[class*="error-banner"]',
  '.systems-callout--error',
  '.app-toast[data-active="true"]',
].join(', ');

const sent = [];
const received = [];
const pageErrors = [];

const page = await launch(playwrightDir, executablePath);
page.on('pageerror', (err) => pageErrors.push(String(err)));
page.on('websocket', (ws) => {
  ws.on('framereceived', (f) => {
    try { received.push(JSON.parse(f.payload)); } catch { /* binary */ }
  });
  ws.on('framesent', (f) => {
    try { sent.push(JSON.parse(f.payload)); } catch { /* binary */ }
  });
});

/** Requests sent from index `from` on, each with its answer (or `pending`). */
function requests(from = 0) {
  const answers = new Map(received.filter((r) => r.type === 'res').map((r) => [r.id, r]));
  return sent.slice(from)
    .filter((s) => s.type === 'req')
    .map((req) => {
      const res = answers.get(req.id);
      if (!res) return { method: req.method, pending: true };
      const out = { method: req.method, ok: res.ok === true };
      if (!out.ok) Object.assign(out, { code: res.error?.code, message: res.error?.message });
      return out;
    });
}

/** The first request of `method` sent from `from` on, with its params and answer. */
function exchange(method, from) {
  const req = sent.slice(from).find((s) => s.type === 'req' && s.method === method);
  if (!req) return null;
  const res = received.find((r) => r.type === 'res' && r.id === req.id);
  return { params: req.params, res };
}

/** Polls the recorded frames (facts, not a sleep standing in for one) until `done()` or `ms`. */
async function until(done, ms) {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await page.waitForTimeout(100);
  return done();
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

const helloCount = () => received.filter((r) => r.type === 'res' && r.payload?.type === 'hello-ok').length;

/** Opens `to` as a user typing the address would, and waits for the page's hello-ok. */
async function open(to) {
  const before = helloCount();
  await page.goto(`${httpBase}${to}#token=${encodeURIComponent(token)}`);
  check(await until(() => helloCount() > before, WAIT_MS), `no hello-ok within 30 s after opening ${to}`);
}

/** Clicks into a field and types, as a user does (replacing what the form prefilled). */
async function typeInto(selector, text) {
  const field = page.locator(selector).first();
  await field.waitFor({ state: 'visible', timeout: WAIT_MS });
  await field.click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Backspace');
  await page.keyboard.type(text);
}

await step('create an automation in the form', async () => {
  const from = sent.length;
  await open('/automations');
  const list = () => requests(from).some((r) => r.method === 'cron.list' && !r.pending);
  check(await until(list, WAIT_MS), 'the automations page never listed its jobs');
  await page.getByRole('button', { name: 'New automation' }).first().click();
  await typeInto('#cron-name', cronName);
  await typeInto('#cron-payload-text', cronPrompt);
  await typeInto('#cron-every-amount', everyMinutes);
  const submitFrom = sent.length;
  await page.getByRole('button', { name: 'Create automation', exact: true }).click();
  check(await until(() => exchange('cron.add', submitFrom)?.res, WAIT_MS),
    `no cron.add answered; sent ${JSON.stringify(requests(submitFrom))}`);
  const add = exchange('cron.add', submitFrom);
  check(add.res.ok === true, `cron.add failed: ${JSON.stringify(add.res.error)}`);
  await page.getByText(cronName).first().waitFor({ state: 'visible', timeout: WAIT_MS });
  await until(() => requests(from).every((r) => !r.pending), WAIT_MS);
  const screenshot = path.join(artifacts, 'control-ui-cron-created.png');
  await page.screenshot({ path: screenshot, fullPage: false });
  result.cron = { sentParams: add.params, jobId: add.res.payload?.id, requests: requests(from), errors: await visibleErrors(), screenshot };
});

await step('approve the pending device', async () => {
  const from = sent.length;
  await open('/settings/devices');
  const listed = () => requests(from).some((r) => r.method === 'device.pair.list' && !r.pending);
  check(await until(listed, WAIT_MS), 'the devices page never listed pairing requests');
  // The pending request names the device (its id, shortened or not); its row has the button.
  const approve = page.getByRole('button', { name: /^approve$/i }).first();
  await approve.waitFor({ state: 'visible', timeout: WAIT_MS });
  const clickFrom = sent.length;
  await approve.click();
  check(await until(() => exchange('device.pair.approve', clickFrom)?.res, WAIT_MS),
    `no device.pair.approve answered; sent ${JSON.stringify(requests(clickFrom))}`);
  const approved = exchange('device.pair.approve', clickFrom);
  check(approved.res.ok === true, `device.pair.approve failed: ${JSON.stringify(approved.res.error)}`);
  await approve.waitFor({ state: 'detached', timeout: WAIT_MS }).catch(() => {});
  await until(() => requests(from).every((r) => !r.pending), WAIT_MS);
  const screenshot = path.join(artifacts, 'control-ui-device-approved.png');
  await page.screenshot({ path: screenshot, fullPage: false });
  result.device = {
    requestId: approved.params?.requestId,
    approvedDeviceId: approved.res.payload?.device?.deviceId ?? null,
    expectedDeviceId: deviceId,
    requests: requests(from),
    errors: await visibleErrors(),
    screenshot,
  };
});

result.pageErrors = pageErrors;
result.ok = true;
await finish(0);
