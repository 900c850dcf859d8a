// The reference relay (examples/compose-relay) in a real browser: headless Chromium driven by
// playwright-core. Driven by examples/compose-relay/tests/browser.rs.
//
// Two users in one browser: ann on RELAY_A (http://127.0.0.1:PORT) and bob on RELAY_B
// (http://localhost:PORT) — cookies are per host, so each page has its own login. Checks:
//   1. ann logs in, opens document `plan`, and her private chat gets the fake model's reply;
//   2. bob opens `plan`: his private chat does not show ann's; in the shared chat his message
//      gets a reply, and ann sees that exchange in the shared chat but bob's private one never;
//   3. bob is refused `secret` (not in the ACL) and cannot name another user's chat;
//   4. it prints `STOP`: the Rust test stops the gateway; the page must say the assistant is
//      unavailable and a message must be refused with that notice;
//   5. it prints `START`: the gateway comes back; the page recovers by itself, history is intact,
//      and a new message gets its reply.
// It prints one JSON line `{ok, …}` last and exits 0 when every check passed.
//
// Env: RELAY_A, RELAY_B, EXPECT_REPLY, PLAYWRIGHT_DIR, CHROMIUM (default /usr/bin/chromium).

import { createHarness } from './browser-harness.mjs';

const WAIT = 60_000;
const { result, finish, need, check, step, launch } =
  createHarness({ hardTimeoutMs: 240_000, profilePrefix: 'clawgate-relay-profile-' });

const relayA = need('RELAY_A');
const relayB = need('RELAY_B');
const reply = need('EXPECT_REPLY');
const playwrightDir = need('PLAYWRIGHT_DIR');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const ann = await launch(playwrightDir, executablePath);
const bob = await ann.context().newPage();

async function login(page, base, user, password) {
  await page.goto(base + '/');
  await page.fill('#user', user);
  await page.fill('#password', password);
  await page.click('#login-button');
  await page.waitForSelector('#app.on', { timeout: WAIT });
}

async function openDoc(page, id) {
  await page.click(`[data-doc="${id}"]`);
  await page.waitForSelector(`#log[data-shows="${id}/private"]`, { timeout: WAIT });
  await page.waitForSelector('#status[data-gateway="connected"]', { timeout: WAIT });
}

/** Switch chat and wait until the log shows its history. */
async function tab(page, which) {
  const id = await page.textContent('#doc-title');
  await page.click(`#tab-${which}`);
  await page.waitForSelector(`#log[data-shows="${id}/${which}"]`, { timeout: WAIT });
  await page.waitForSelector('#status[data-gateway="connected"]', { timeout: WAIT });
}

const texts = (page, role) =>
  page.$$eval(`#log .msg[data-role="${role}"]`, (els) => els.map((e) => e.textContent));

/** Send and wait until the history (reloaded on `final`) holds `assistants` complete replies. */
async function send(page, text, assistants) {
  await page.fill('#message', text);
  await page.click('#send');
  await page.waitForFunction(
    ([n, reply]) => {
      const done = [...document.querySelectorAll('#log .msg[data-role="assistant"]')]
        .filter((e) => !e.dataset.partial && e.textContent === reply);
      return done.length >= n;
    },
    [assistants, reply],
    { timeout: WAIT },
  );
}

await step('ann logs in and chats privately on plan', async () => {
  await login(ann, relayA, 'ann', 'ann-password');
  await openDoc(ann, 'plan');
  await send(ann, 'hello from ann', 1);
  check((await texts(ann, 'user')).includes('hello from ann'), 'ann sees her message');
});

await step('bob does not see ann\'s private chat', async () => {
  await login(bob, relayB, 'bob', 'bob-password');
  const docs = await bob.$$eval('#docs button', (els) => els.map((e) => e.dataset.doc));
  check(JSON.stringify(docs) === '["plan"]', `bob's documents: ${docs}`);
  await openDoc(bob, 'plan');
  const seen = await texts(bob, 'user');
  check(seen.length === 0, `bob's private chat is empty, saw ${JSON.stringify(seen)}`);
});

await step('the shared chat is shared', async () => {
  await tab(bob, 'shared');
  await send(bob, 'bob in shared', 1);
  await tab(ann, 'shared');
  await ann.waitForFunction(() => [...document.querySelectorAll('#log .msg')].some((e) => e.textContent === '[bob] bob in shared'), null, { timeout: WAIT });
  const annShared = await texts(ann, 'user');
  check(!annShared.includes('hello from ann'), 'ann\'s private message is not in the shared chat');
  await tab(ann, 'private');
  const annPrivate = await texts(ann, 'user');
  check(JSON.stringify(annPrivate) === '["hello from ann"]', `ann's private chat: ${JSON.stringify(annPrivate)}`);
});

await step('bob is refused a document he may not open', async () => {
  await bob.fill('#open-id', 'secret');
  await bob.click('#open-button');
  await bob.waitForFunction(() => document.getElementById('notice').textContent.includes('no access'), null, { timeout: WAIT });
  const direct = await bob.evaluate(async () => (await fetch('/api/docs/secret/chats/private/history')).status);
  check(direct === 403, `direct history of secret: ${direct}`);
  const other = await bob.evaluate(async () => (await fetch('/api/docs/plan/chats/ann/history')).status);
  check(other === 404, `naming ann's chat: ${other}`);
  const sneaky = await bob.evaluate(async () => (await fetch('/api/docs/plan:ann/chats/private/history')).status);
  check(sneaky === 403, `a doc id with a colon: ${sneaky}`);
  const anon = await bob.evaluate(async () => (await fetch('/api/docs/plan/chats/private/history', { credentials: 'omit' })).status);
  check(anon === 401, `without the cookie: ${anon}`);
});

await step('gateway down: the page says the assistant is unavailable', async () => {
  console.log('STOP');
  await ann.waitForSelector('#status[data-gateway="unavailable"]', { timeout: WAIT });
  check((await ann.textContent('#status')) === 'assistant unavailable', 'status text');
  await ann.fill('#message', 'anyone there?');
  await ann.click('#send');
  await ann.waitForFunction(() => document.getElementById('notice').textContent.includes('assistant unavailable'), null, { timeout: WAIT });
  result.unavailableNotice = await ann.textContent('#notice');
});

await step('gateway back: the page recovers and chats again', async () => {
  console.log('START');
  await ann.waitForSelector('#status[data-gateway="connected"]', { timeout: WAIT });
  await send(ann, 'after the restart', 2);
  const mine = await texts(ann, 'user');
  check(JSON.stringify(mine) === '["hello from ann","after the restart"]', `ann's history: ${JSON.stringify(mine)}`);
});

result.ok = true;
await finish(0);
