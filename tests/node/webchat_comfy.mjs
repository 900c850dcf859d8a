// A ComfyUI job from the built-in web chat in a real browser: headless Debian Chromium driven by
// playwright-core (installed by scripts/install-browser.sh). Driven by
// crates/clawgate/tests/webchat_comfy.rs, against a gateway with a FakeComfy worker.
//
// It opens `GW_HTTP/#token=GW_TOKEN` in a fresh profile and checks, in order:
//   1. the page connects;
//   2. RUN_COMMAND typed into the composer is answered with `[Job Submitted]` as the reply;
//   3. the finished job arrives live as a `[Job Completed]` message showing the image inline: an
//      <img> loaded from this gateway's `/media/<token>` (alt = the file name, lazy), whose
//      natural size is the size asked for; a screenshot is saved to SCREENSHOT;
//   4. after a reload the history shows the same image again;
//   5. no page errors, failed loads or CSP violations.
// It prints one JSON line `{ok, naturalWidth, naturalHeight, src, …}` last and exits 0 when every
// check passed.
//
// Env: GW_HTTP (http://127.0.0.1:PORT), GW_TOKEN, RUN_COMMAND, PLAYWRIGHT_DIR (holds
// node_modules/playwright-core), SCREENSHOT (PNG path), CHROMIUM (default /usr/bin/chromium).

import fs from 'node:fs';
import path from 'node:path';

import { createHarness } from './browser-harness.mjs';

const STEP_TIMEOUT_MS = 40_000;

const { result, finish, need, check, step, launch } =
  createHarness({ hardTimeoutMs: 120_000, profilePrefix: 'clawgate-webchat-comfy-profile-' });

const httpBase = need('GW_HTTP');
const token = need('GW_TOKEN');
const command = need('RUN_COMMAND');
const screenshot = need('SCREENSHOT');
const playwrightDir = need('PLAYWRIGHT_DIR');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const pageErrors = [];
const consoleProblems = [];
const failedRequests = [];

const page = await launch(playwrightDir, executablePath);
page.setDefaultTimeout(STEP_TIMEOUT_MS);
page.on('pageerror', (err) => pageErrors.push(String(err)));
page.on('console', (msg) => {
  const text = msg.text();
  if (msg.type() === 'error' || /Content Security Policy/i.test(text)) consoleProblems.push(text);
});
page.on('response', (res) => {
  if (res.url().includes('/media/') && res.status() !== 200) failedRequests.push(`${res.status()} ${res.url()}`);
});

const connected = () => page.waitForSelector('body[data-conn="connected"]', { timeout: STEP_TIMEOUT_MS });

/**
 * The loaded result image, waited for. The page may re-render the conversation (a run's end
 * reloads the history) between a check that saw the image and the read that follows, so the
 * check and the read are one step, retried until both hold.
 */
const waitResultImage = async () => {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  for (;;) {
    const img = await resultImage();
    if (img) return img;
    if (Date.now() > deadline) throw new Error('no loaded result image in the page');
    await new Promise((r) => setTimeout(r, 50));
  }
};

/** The loaded result image in the page, or null. */
const resultImage = () => page.evaluate(() => {
  const img = [...document.querySelectorAll('.msg.assistant .media img')].find((i) => i.complete && i.naturalWidth > 0);
  if (!img) return null;
  const msg = img.closest('.msg');
  return {
    src: img.src,
    alt: img.alt,
    loading: img.loading,
    naturalWidth: img.naturalWidth,
    naturalHeight: img.naturalHeight,
    text: msg.querySelector('.body').textContent,
    images: document.querySelectorAll('.msg .media img').length,
  };
});

await step('open the page and connect', async () => {
  await page.goto(`${httpBase}/#token=${encodeURIComponent(token)}`);
  await connected();
});

await step('the command is answered by the gateway', async () => {
  await page.waitForSelector('#messages:not([aria-busy="true"])');
  await page.waitForSelector('#send:not([disabled])');
  await page.locator('#input').fill(command);
  await page.locator('#input').press('Enter');
  await page.waitForFunction(() => [...document.querySelectorAll('.msg.assistant[data-state="final"] .body')]
    .some((b) => b.textContent.startsWith('[Job Submitted]')));
  const userText = await page.locator('.msg.user .body').last().textContent();
  check(userText === command, `user message shows ${userText}`);
});

await step('the finished job shows its image inline', async () => {
  const img = await waitResultImage();
  check(img.text.startsWith('[Job Completed]') && img.text.includes('Images: 1'), `message text ${img.text}`);
  check(img.src.startsWith(`${httpBase}/media/`), `image source ${img.src}`);
  check(/\.png$/.test(img.alt), `alt ${img.alt}`);
  check(img.loading === 'lazy', `loading ${img.loading}`);
  check(img.images === 1, `${img.images} images in the page`);
  Object.assign(result, { src: img.src, naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight });
  // Nothing from the message became markup: the text is one text node.
  const bodies = await page.evaluate(() => [...document.querySelectorAll('.msg .body')].every((b) => b.children.length === 0));
  check(bodies, 'a message body holds elements');
  fs.mkdirSync(path.dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot });
});

await step('reload shows the image from the history', async () => {
  await page.reload();
  await connected();
  const img = await waitResultImage();
  check(img.naturalWidth === result.naturalWidth && img.naturalHeight === result.naturalHeight, `after reload ${JSON.stringify(img)}`);
  const texts = await page.locator('.msg .body').allTextContents();
  check(texts[0] === command && texts[1].startsWith('[Job Submitted]') && texts[2].startsWith('[Job Completed]'),
    `history ${JSON.stringify(texts)}`);
});

await step('no page errors, failed media loads or CSP violations', async () => {
  check(pageErrors.length === 0, `page errors: ${pageErrors.join(' | ')}`);
  check(consoleProblems.length === 0, `console errors: ${consoleProblems.join(' | ')}`);
  check(failedRequests.length === 0, `media requests: ${failedRequests.join(' | ')}`);
});

result.ok = true;
await finish(0);
