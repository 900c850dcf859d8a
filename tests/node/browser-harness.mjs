// The part every headless-Chromium test script shares: a step runner that records which steps
// passed, one JSON result line printed last (exit 0 only when every check passed), a hard
// timeout, required env vars, and a fresh-profile Chromium from playwright-core with the flags
// this machine's closed network needs.
//
// const h = createHarness({ hardTimeoutMs, profilePrefix });
// const page = await h.launch(playwrightDir, executablePath);   // step 'launch chromium'
// await h.step('name', async () => { h.check(cond, 'message'); });
// h.result.extra = …;  await h.finish(0);

import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function createHarness({ hardTimeoutMs, profilePrefix }) {
  const result = { ok: false, steps: [] };
  let context = null;
  let userDataDir = null;

  async function finish(code) {
    try { if (context) await context.close(); } catch { /* already gone */ }
    try { if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true }); } catch { /* best effort */ }
    console.log(JSON.stringify(result));
    process.exit(code);
  }

  function fail(stage, err) {
    result.stage = stage;
    result.error = String(err?.stack ?? err?.message ?? err);
    return finish(1);
  }

  setTimeout(() => fail('timeout', `no result within ${hardTimeoutMs} ms`), hardTimeoutMs).unref();

  function need(name) {
    const v = process.env[name];
    if (!v) {
      console.log(JSON.stringify({ ok: false, stage: 'env', error: `${name} is not set` }));
      process.exit(1);
    }
    return v;
  }

  function check(cond, message) {
    if (!cond) throw new Error(message);
  }

  async function step(name, fn) {
    try {
      const value = await fn();
      result.steps.push(name);
      return value;
    } catch (err) {
      await fail(name, err);
      throw err;
    }
  }

  /** Chromium in a fresh profile; resolves to its first page. */
  async function launch(playwrightDir, executablePath) {
    const require = createRequire(path.join(playwrightDir, 'package.json'));
    let chromium;
    try {
      ({ chromium } = require('playwright-core'));
    } catch (err) {
      await fail('load playwright-core', err);
    }
    userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), profilePrefix));
    context = await step('launch chromium', () =>
      chromium.launchPersistentContext(userDataDir, {
        executablePath,
        headless: true,
        args: [
          '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
          '--disable-background-networking', '--disable-component-update', '--disable-sync',
        ],
        viewport: { width: 1200, height: 760 },
      }));
    return context.pages()[0] ?? (await context.newPage());
  }

  return { result, finish, fail, need, check, step, launch };
}
