// The built-in web chat in a real browser: headless Debian Chromium driven by playwright-core
// (installed by scripts/install-browser.sh). Driven by crates/clawgate/tests/webchat.rs.
//
// It opens `GW_HTTP/#token=GW_TOKEN` in a fresh profile and checks, in order:
//   1. the page connects (device key made in WebCrypto, v2-signed challenge, silent loopback
//      pairing) and drops the token from the URL;
//   2. a message sent from the composer gets the fake model's reply, rendered while it streams
//      (a partial text is seen in the page, and `chat` delta frames arrive before the final);
//   3. a screenshot is saved to SCREENSHOT;
//   4. after a reload (same profile: same device key, token from storage) the history shows both
//      messages;
//   5. it prints `RESTART` and waits: the Rust test restarts the gateway; the page must show the
//      disconnected state with its countdown, reconnect by itself, and chat again;
//   6. "New chat" opens a second session that gets its own reply and shows in the sidebar.
// It prints one JSON line `{ok, …}` last and exits 0 when every check passed.
//
// Env: GW_HTTP (http://127.0.0.1:PORT), GW_TOKEN, EXPECT_REPLY (the fake model's whole reply),
// PLAYWRIGHT_DIR (holds node_modules/playwright-core), SCREENSHOT (PNG path), CHROMIUM
// (default /usr/bin/chromium).

import fs from 'node:fs';
import path from 'node:path';

import { createHarness } from './browser-harness.mjs';

const STEP_TIMEOUT_MS = 30_000;

const { result, finish, need, check, step, launch } =
  createHarness({ hardTimeoutMs: 120_000, profilePrefix: 'clawgate-webchat-profile-' });

const httpBase = need('GW_HTTP');
const token = need('GW_TOKEN');
const expectReply = need('EXPECT_REPLY');
const screenshot = need('SCREENSHOT');
const playwrightDir = need('PLAYWRIGHT_DIR');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

// Everything the page hears on its WebSocket, in order (the protocol-level view of streaming).
const frames = [];
const sent = [];
const pageErrors = [];
const consoleProblems = [];

const page = await launch(playwrightDir, executablePath);
page.setDefaultTimeout(STEP_TIMEOUT_MS);
page.on('pageerror', (err) => pageErrors.push(String(err)));
page.on('console', (msg) => {
  const text = msg.text();
  // CSP violations and failed loads are reported on the console: any of them fails the test.
  // Failed WebSocket attempts are expected while the gateway restarts.
  if (/^WebSocket connection to .* failed/.test(text)) return;
  if (msg.type() === 'error' || /Content Security Policy/i.test(text)) consoleProblems.push(text);
});
page.on('websocket', (ws) => {
  ws.on('framereceived', (f) => {
    try { frames.push(JSON.parse(f.payload)); } catch { /* binary or junk: not ours */ }
  });
  ws.on('framesent', (f) => {
    try { sent.push(JSON.parse(f.payload)); } catch { /* ignore */ }
  });
});

const connected = () => page.waitForSelector('body[data-conn="connected"]', { timeout: STEP_TIMEOUT_MS });

async function sendAndWaitForReply(text) {
  // The page takes input once the session's history is in (it replaces the message list).
  await page.waitForSelector('#messages:not([aria-busy="true"])');
  await page.waitForSelector('#send:not([disabled])');
  const before = await page.locator('.msg.assistant[data-state="final"]').count();
  await page.locator('#input').fill(text);
  await page.locator('#input').press('Enter');
  await page.waitForFunction(
    ([n, want]) => {
      const done = document.querySelectorAll('.msg.assistant[data-state="final"]');
      return done.length > n && done[done.length - 1].querySelector('.body').textContent === want;
    },
    [before, expectReply],
    { timeout: STEP_TIMEOUT_MS },
  );
}

await step('open the page and connect', async () => {
  await page.goto(`${httpBase}/#token=${encodeURIComponent(token)}`);
  await connected();
  const url = page.url();
  check(!url.includes(token), `the token is still in the URL: ${url}`);
  const stored = await page.evaluate(() => localStorage.getItem('clawgate.webchat.token'));
  check(stored === token, 'the token was not kept in localStorage');
});

await step('handshake as webchat-ui with a v2-signed device', async () => {
  const challenge = frames.find((f) => f.type === 'event' && f.event === 'connect.challenge');
  const connect = sent.find((f) => f.type === 'req' && f.method === 'connect');
  check(challenge && connect, 'no challenge/connect seen on the socket');
  const p = connect.params;
  check(p.client.id === 'webchat-ui' && p.client.mode === 'webchat', `client ${JSON.stringify(p.client)}`);
  check(p.device && p.device.signedAt === challenge.payload.ts, 'device.signedAt is not the challenge ts');
  check(p.device.nonce === challenge.payload.nonce, 'device.nonce is not the challenge nonce');
  check(/^[0-9a-f]{64}$/.test(p.device.id), `device id ${p.device.id}`);
  check(/^[A-Za-z0-9_-]{43}$/.test(p.device.publicKey), `public key ${p.device.publicKey}`);
  const hello = frames.find((f) => f.type === 'res' && f.id === connect.id);
  check(hello && hello.ok, `connect refused: ${JSON.stringify(hello)}`);
  const scopes = hello.payload.auth.scopes;
  check(scopes.includes('operator.read') && scopes.includes('operator.write'), `granted scopes ${scopes}`);
  result.deviceId = p.device.id;
  result.authMethod = hello.payload.auth.method;
  result.grantedScopes = scopes;
});

await step('send a message and watch the reply stream', async () => {
  // Record every text the reply bubble shows while it streams, as the user would see it.
  await page.evaluate(() => {
    window.__seen = [];
    new MutationObserver(() => {
      for (const el of document.querySelectorAll('.msg.assistant[data-run-id]')) {
        window.__seen.push({ state: el.dataset.state, text: el.querySelector('.body').textContent });
      }
    }).observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true, attributes: true });
  });
  const firstFrame = frames.length;
  await sendAndWaitForReply('Hi there');
  const seen = await page.evaluate(() => window.__seen);
  const partial = seen.filter((s) => s.state === 'streaming' && s.text.length > 0 && s.text.length < expectReply.length);
  check(partial.length > 0, `no partial reply was rendered before the final: ${JSON.stringify(seen)}`);
  check(partial.every((s) => expectReply.startsWith(s.text)), `a partial reply is not a prefix: ${JSON.stringify(partial)}`);
  const chat = frames.slice(firstFrame).filter((f) => f.type === 'event' && f.event === 'chat').map((f) => f.payload.state);
  const firstDelta = chat.indexOf('delta');
  const final = chat.indexOf('final');
  check(firstDelta >= 0 && final > firstDelta, `chat states on the socket: ${chat}`);
  result.deltaFrames = chat.filter((s) => s === 'delta').length;
  result.partialRenders = partial.length;
  const userText = await page.locator('.msg.user .body').last().textContent();
  check(userText === 'Hi there', `user message shows ${userText}`);
});

await step('the session list catches up, then a screenshot', async () => {
  await page.waitForFunction(() =>
    /^2 messages/.test(document.querySelector('#sessions button[aria-current="true"] .meta')?.textContent ?? ''));
  fs.mkdirSync(path.dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot });
});

await step('reload shows the history', async () => {
  await page.reload();
  await connected();
  await page.waitForFunction(
    (want) => {
      const users = [...document.querySelectorAll('.msg.user .body')].map((e) => e.textContent);
      const bots = [...document.querySelectorAll('.msg.assistant .body')].map((e) => e.textContent);
      return users.includes('Hi there') && bots.includes(want);
    },
    expectReply,
  );
  const title = await page.locator('#sessions button[aria-current="true"] .title').textContent();
  check(title === 'Main session', `selected session is ${title}`);
});

await step('gateway restart: disconnected state, then automatic reconnect', async () => {
  console.log('RESTART');
  await page.waitForSelector('body[data-conn="disconnected"]', { timeout: STEP_TIMEOUT_MS });
  await page.waitForFunction(() => /reconnecting in \d+s/.test(document.getElementById('banner-text').textContent));
  result.disconnectedBanner = await page.locator('#banner-text').textContent();
  check(await page.locator('#input').isDisabled(), 'the composer stays enabled while disconnected');
  await connected();
  check(await page.locator('#banner').isHidden(), 'the banner stays after reconnecting');
  await sendAndWaitForReply('Still there?');
});

await step('new chat gets its own session', async () => {
  await page.locator('#new-chat').click();
  check((await page.locator('.msg').count()) === 0, 'a new chat starts empty');
  await sendAndWaitForReply('A new topic');
  await page.waitForFunction(() => document.querySelectorAll('#sessions li').length >= 2);
  const current = await page.locator('#sessions button[aria-current="true"]').getAttribute('data-key');
  check(/^agent:main:webchat:[0-9a-f]{12}$/.test(current), `new session key ${current}`);
  result.newSessionKey = current;
});

await step('no page errors or CSP violations', async () => {
  check(pageErrors.length === 0, `page errors: ${pageErrors.join(' | ')}`);
  check(consoleProblems.length === 0, `console errors: ${consoleProblems.join(' | ')}`);
});

result.ok = true;
await finish(0);
