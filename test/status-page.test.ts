/**
 * The live status page on a real fleet: a real browser (Debian's chromium driven by
 * playwright-core, no browser download) sees every bot with its state, a SIGKILLed
 * worker's tile go through backoff/starting back to running without a reload, a
 * quarantined bot's reason and end time, no console error and no request off 127.0.0.1;
 * the event stream carries a state change within 1 s; neither holds a token or message text.
 * BOTFLEET_SCREENSHOT=<file.png> saves the page as the README shows it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { describe, test } from 'node:test';
import { FIXTURES, statusAuthHeaders, withFleet, type Fleet } from './helpers/fleet.js';
import { which } from './helpers/tools.js';
import { waitFor } from './helpers/wait.js';

const CHROMIUM = which('chromium') ?? which('chromium-browser');
const SECRET_TEXT = 'my-private-message-0451';

/** One SSE frame as read: its event name, its JSON data and when it arrived (performance.now ms). */
interface Frame { event: string; data: any; at: number }

/** Open `GET /api/events`; frames are pushed as they arrive. */
function openStream(port: number, frames: Frame[], headers: Record<string, string> = {}): Promise<{ res: http.IncomingMessage; raw: string[]; close(): void }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/api/events', headers }, (res) => {
      const raw: string[] = [];
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        raw.push(d);
        buf += d;
        let end: number;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) frames.push({ event, data: JSON.parse(data), at: performance.now() });
        }
      });
      res.on('error', () => {});
      resolve({ res, raw, close: () => req.destroy() });
    });
    req.on('error', reject);
  });
}

const statusPort = (fleet: Fleet) => JSON.parse(fs.readFileSync(path.join(fleet.home, 'run', 'ports.json'), 'utf8')).status as number;

const crashMarker = (fleet: Fleet) => path.join(fleet.home, 'bots', 'gamma', 'crash-on-boot');

/** Three bots: two that answer, one in a crash loop that the restart intensity quarantines (with an end time). */
async function threeBots(fleet: Fleet): Promise<string[]> {
  // In the bot's own data directory: under the permission model a handler reads nothing else of the home.
  const marker = crashMarker(fleet);
  fs.mkdirSync(path.dirname(marker), { recursive: true });
  fs.writeFileSync(marker, '');
  const handler = path.join(FIXTURES, 'misbehave.js');
  const tokens: string[] = [];
  for (const id of ['alpha', 'beta']) tokens.push((await fleet.addBot(id, { handler })).token);
  tokens.push((await fleet.addBot('gamma', { handler, settings: { crashOnBootIfExists: marker } })).token);
  await fleet.startMaster();
  await fleet.waitRunning(['alpha', 'beta']);
  await fleet.waitWorker('gamma', (w) => w.state === 'quarantined', 20_000, 'gamma quarantined by the restart intensity');
  assert.equal(await fleet.chat('alpha', 7, SECRET_TEXT), `ok: ${SECRET_TEXT}`);
  return tokens;
}

const ENV = { MAX_RESTARTS_PER_HOUR: '2', STATUS_ACTIONS: '1', STATUS_MAX_CLIENTS: '4' };

describe('status page', () => {
  test('in a real browser: every bot, a SIGKILL seen live through backoff/starting to running, a quarantine with reason and end, nothing off loopback', {
    skip: CHROMIUM ? false : 'chromium is not installed (Debian package `chromium`; .ci/run installs it)', timeout: 120_000,
  }, async () => {
    const { chromium } = await import('playwright-core');
    await withFleet(ENV, {}, async (fleet) => {
      const tokens = await threeBots(fleet);
      const port = statusPort(fleet);
      const browser = await chromium.launch({ executablePath: CHROMIUM!, args: ['--no-sandbox'] });
      try {
        // A browser logs in with any user and the generated token as password (HTTP Basic).
        const token = fs.readFileSync(path.join(fleet.home, 'data', 'status.token'), 'utf8').trim();
        const page = await browser.newPage({ viewport: { width: 1100, height: 760 }, httpCredentials: { username: 'operator', password: token } });
        const problems: string[] = [];
        const requests: string[] = [];
        page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
        page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
        page.on('request', (r) => requests.push(r.url()));
        await page.goto(`http://127.0.0.1:${port}/`);
        const tile = (id: string) => page.locator('.tile', { has: page.locator('.id', { hasText: new RegExp(`^${id} `) }) });
        for (const [id, state] of [['alpha', 'running'], ['beta', 'running'], ['gamma', 'quarantined']]) {
          await tile(id!).locator('.state', { hasText: state! }).waitFor({ timeout: 10_000 });
        }
        // Snapshots keep coming: the master's uptime line moves on by itself.
        const masterLine = await page.locator('#master').innerText();
        await page.waitForFunction((was) => document.getElementById('master')!.textContent !== was, masterLine, { timeout: 5_000 });
        const gamma = await tile('gamma').innerText();
        assert.match(gamma, /quarantined until \d\d:\d\d:\d\d/, 'the quarantine end is shown');
        assert.match(gamma, /restarts within/, 'and its reason');
        assert.match(gamma, /last exit: crash/);

        // Every state alpha's tile shows from now on, recorded in the page; the marker proves no reload.
        await page.evaluate(() => {
          const w = window as unknown as { seen: string[]; marker: number };
          w.seen = [];
          w.marker = 42;
          const button = [...document.querySelectorAll('.tile')].find((b) => b.querySelector('.id')?.textContent?.startsWith('alpha '))!;
          new MutationObserver(() => w.seen.push((button as HTMLElement).dataset.state!)).observe(button, { attributes: true, attributeFilter: ['data-state'] });
        });
        const before = (await fleet.worker('alpha'))!;
        process.kill(before.pid!, 'SIGKILL');
        await page.waitForFunction(() => (window as unknown as { seen: string[] }).seen.some((s) => s === 'backoff' || s === 'starting'), undefined, { timeout: 10_000 });
        await tile('alpha').locator('.state', { hasText: 'running' }).waitFor({ timeout: 20_000 });
        const after = await page.evaluate(() => {
          const w = window as unknown as { seen: string[]; marker: number };
          return { seen: w.seen, marker: w.marker };
        });
        assert.equal(after.marker, 42, 'the same document: no reload');
        assert.equal(after.seen.at(-1), 'running');
        assert.notEqual((await fleet.worker('alpha'))!.pid, before.pid, 'a new worker');

        // The panel: transitions with reasons, recent log lines; keyboard opens it.
        await tile('alpha').focus();
        await page.keyboard.press('Enter');
        await page.locator('#panel-transitions tr', { hasText: 'backoff' }).first().waitFor({ timeout: 10_000 });
        assert.match(await page.locator('#panel-transitions').innerText(), /crash/);
        await page.locator('#panel-log li').first().waitFor();
        assert.equal(await page.locator('#panel-restart').innerText(), 'Restart');
        if (process.env.BOTFLEET_SCREENSHOT) {
          await page.keyboard.press('Escape');
          // Two fresh snapshots, so every tile shows numbers from after the restart.
          for (let i = 0; i < 2; i++) {
            const line = await page.locator('#master').innerText();
            await page.waitForFunction((was) => document.getElementById('master')!.textContent !== was, line, { timeout: 5_000 });
          }
          await page.screenshot({ path: process.env.BOTFLEET_SCREENSHOT });
          await tile('alpha').click();
          await page.locator('#panel-transitions tr').first().waitFor();
        }

        // The page and what it loaded: no token, no message text.
        const html = await page.content();
        const panel = (await fleet.statusHttp('/api/bots/alpha')).body;
        for (const secret of [...tokens, SECRET_TEXT]) {
          assert.ok(!html.includes(secret) && !panel.includes(secret), 'no token or message text in the page or the panel');
        }
        assert.deepEqual(problems, [], 'no console errors');
        assert.ok(requests.length >= 4, `the page made its requests (${requests.length})`);
        for (const u of requests) assert.equal(new URL(u).hostname, '127.0.0.1', `request off loopback: ${u}`);
      } finally {
        await browser.close();
      }
    });
  });

  test('the stream: a state change within 1 s, snapshots each second, no token or message text; a release through the page action', { timeout: 120_000 }, async () => {
    await withFleet(ENV, {}, async (fleet) => {
      const tokens = await threeBots(fleet);
      const port = statusPort(fleet);
      const frames: Frame[] = [];
      const auth = statusAuthHeaders(fleet.home);
      assert.equal((await openStream(port, [])).res.statusCode, 401, 'no stream without the token');
      const s = await openStream(port, frames, auth);
      try {
        assert.equal(s.res.statusCode, 200);
        assert.match(String(s.res.headers['content-type']), /^text\/event-stream/);
        assert.match(String(s.res.headers['content-security-policy']), /script-src 'self'/);
        await waitFor(() => frames.filter((f) => f.event === 'snapshot').length >= 3, 5_000, 'three snapshots');
        const snap = frames.find((f) => f.event === 'snapshot')!.data;
        assert.deepEqual(snap.bots.map((b: { botId: string }) => b.botId).sort(), ['alpha', 'beta', 'gamma']);
        const ticks = frames.filter((f) => f.event === 'snapshot').map((f) => f.at);
        assert.ok(ticks[2]! - ticks[1]! > 500 && ticks[2]! - ticks[1]! < 2500, 'about one snapshot a second');

        const beta = (await fleet.worker('beta'))!;
        const killedAt = performance.now();
        process.kill(beta.pid!, 'SIGKILL');
        await waitFor(() => frames.some((f) => f.event === 'state' && f.data.botId === 'beta' && f.data.from === 'running'), 5_000, "beta's state event");
        const ev = frames.find((f) => f.event === 'state' && f.data.botId === 'beta' && f.data.from === 'running')!;
        assert.ok(ev.at - killedAt < 1000, `the event came ${Math.round(ev.at - killedAt)} ms after the kill`);
        assert.ok(['backoff', 'starting'].includes(ev.data.to), ev.data.to);
        assert.ok(Math.abs(Date.parse(ev.data.at) - Date.now()) < 60_000, 'an ISO time');
        await fleet.waitRunning(['beta']);

        // Actions: same-origin only, the CLI's restart path; a quarantined bot is released.
        const post = (botId: string, headers: Record<string, string>) => fetch(`http://127.0.0.1:${port}/api/bots/${botId}/restart`, { method: 'POST', headers: { ...auth, ...headers } });
        assert.equal((await post('gamma', {})).status, 403, 'no Origin: refused');
        assert.equal((await post('gamma', { origin: 'http://evil.example' })).status, 403, 'another origin: refused');
        assert.equal((await post('nope', { origin: `http://127.0.0.1:${port}` })).status, 404);
        fs.rmSync(crashMarker(fleet));
        const r = await post('gamma', { origin: `http://127.0.0.1:${port}` });
        assert.equal(r.status, 200, await r.clone().text());
        assert.deepEqual((await r.json()).restarted, ['gamma']);
        await waitFor(() => frames.some((f) => f.event === 'state' && f.data.botId === 'gamma' && f.data.from === 'quarantined'), 5_000, 'the release in the stream');

        const all = s.raw.join('');
        for (const secret of [...tokens, SECRET_TEXT]) assert.ok(!all.includes(secret), 'no token or message text in the stream');
        // Bounded: STATUS_MAX_CLIENTS=4, one in use.
        const more = await Promise.all([1, 2, 3, 4].map(() => openStream(port, [], auth)));
        assert.deepEqual(more.map((m) => m.res.statusCode).sort(), [200, 200, 200, 503]);
        for (const m of more) m.close();
      } finally {
        s.close();
      }
    });
  });
});
