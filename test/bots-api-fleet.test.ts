/**
 * BOTS_API_URL end to end: a real master polling a bots API served by this test on
 * loopback. A bot added in the API starts within one poll, a bad entry stops only its
 * bot, a 304 writes nothing to the registry, the API down at start leaves the last good
 * fleet running, and no token or the API's bearer appears in logs, status or metrics.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import type { EmulatedBot } from '../scripts/emulator/bot-state.js';
import { withFleet, type Fleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';

const BEARER = 'bots-api-bearer-0123456789';

/** The bots API: serves `doc` with ETag `"<version>"`, 304 on a matching If-None-Match; counts its answers. */
function botsApi() {
  const api = {
    doc: [] as object[],
    version: 1,
    full: new Map<number, number>(),
    notModified: 0,
    /** 304s answered per version. */
    notModifiedOf: new Map<number, number>(),
    unauthorized: 0,
    server: null as http.Server | null,
    port: 0,
    async listen() {
      const server = http.createServer((req, res) => {
        if (req.headers.authorization !== `Bearer ${BEARER}`) {
          api.unauthorized++;
          return void res.writeHead(401).end();
        }
        const etag = `"${api.version}"`;
        if (req.headers['if-none-match'] === etag) {
          api.notModified++;
          api.notModifiedOf.set(api.version, (api.notModifiedOf.get(api.version) ?? 0) + 1);
          return void res.writeHead(304, { etag }).end();
        }
        api.full.set(api.version, (api.full.get(api.version) ?? 0) + 1);
        res.writeHead(200, { 'content-type': 'application/json', etag }).end(JSON.stringify({ bots: api.doc }));
      });
      server.listen(api.port, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      api.port = (server.address() as AddressInfo).port;
      api.server = server;
    },
    async close() {
      const s = api.server;
      api.server = null;
      s?.closeAllConnections();
      if (s) await new Promise((r) => s.close(r));
    },
    publish(doc: object[]) {
      api.doc = doc;
      api.version++;
    },
  };
  return api;
}

const metric = async (fleet: Fleet, name: string): Promise<number | null> => {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec((await fleet.statusHttp('/metrics')).body);
  return m ? Number(m[1]) : null;
};

/** A user says `text` to `tg`; resolves with the reply. */
async function replyOf(fleet: Fleet, tg: EmulatedBot, chatId: number, text: string): Promise<string> {
  const before = tg.sent.length;
  fleet.emulator.userSends(tg, chatId, text);
  return (await fleet.emulator.waitForSent(tg, (x) => x.chat_id === chatId && tg.sent.indexOf(x) >= before, 15_000, `a reply from ${tg.username}`)).text;
}

test('BOTS_API_URL: added bots start within one poll, a bad entry stops only itself, 304s write nothing, the API down at start keeps the last good fleet', async () => {
  const api = botsApi();
  await api.listen();
  try {
    await withFleet({ BOTS_API_URL: `http://127.0.0.1:${api.port}/v1/bots`, BOTS_API_POLL_MS: '1000', BOTS_API_TOKEN: BEARER }, {}, async (fleet) => {
      const tgs = { a: fleet.emulator.createBot('a_bot'), b: fleet.emulator.createBot('b_bot'), c: fleet.emulator.createBot('c_bot') };
      const badToken = 'not-a-token-but-secret-7f3a';
      const entries: Record<string, object> = {
        a: { id: 'a', name: 'Alpha', token: tgs.a.token },
        b: { id: 'b', token: tgs.b.token, handler: 'echo', settings: { note: 'x' } },
        bad: { id: 'bad', token: badToken },
      };
      api.publish(Object.values(entries));
      await fleet.startMaster();
      await fleet.waitRunning(['a', 'b']);
      const bad = await fleet.waitWorker('bad', (w) => w.state === 'stopped' && /bots API: token/.test(w.stateReason ?? ''), 10_000, 'the bad entry stopped with its reason');
      assert.match(bad.stateReason ?? '', /invalid configuration: bots API: token does not look like a Telegram bot token/);
      assert.equal(await replyOf(fleet, tgs.a, 1, 'hello'), 'hello');
      await waitFor(async () => (await metric(fleet, 'botfleet_config_last_reload_success')) === 1 || null, 10_000, 'the reload success metric at 1');
      assert.ok(((await metric(fleet, 'botfleet_config_last_reload_success_timestamp_seconds')) ?? 0) > Date.now() / 1000 - 60);

      // A bot added in the API starts after the first poll that sees the new list.
      api.publish([...Object.values(entries), { id: 'c', token: tgs.c.token }]);
      const v = api.version;
      await waitFor(async () => (await fleet.status()).workers.some((w) => w.botId === 'c') || null, 20_000, 'bot c known to the master');
      assert.equal(api.full.get(v), 1, 'one fetch of the new list');
      assert.equal(api.notModifiedOf.get(v) ?? 0, 0, 'bot c was known before the next poll');
      await fleet.waitRunning(['c']);
      assert.equal(await replyOf(fleet, tgs.c, 2, 'hi c'), 'hi c');

      // An unchanged list is a 304, and a 304 costs no registry write.
      const watcher = new Database(path.join(fleet.home, 'data', 'botfleet.db'), { readonly: true });
      try {
        const before = watcher.pragma('data_version', { simple: true }) as number;
        const seen = api.notModified;
        await waitFor(() => api.notModified >= seen + 3 || null, 10_000, 'three more 304 polls');
        assert.equal(watcher.pragma('data_version', { simple: true }), before, 'no commit to the registry during 304 polls');
      } finally {
        watcher.close();
      }

      // The master stops; the API goes down; the master starts again on the last good list.
      assert.equal((await fleet.cli(['stop'])).code, 0);
      await waitFor(() => fleet.master!.exitCode !== null || null, 20_000, 'the master exiting');
      await api.close();
      fleet.masterOutput.length = 0;
      await fleet.startMaster();
      await fleet.waitRunning(['a', 'b', 'c']);
      await waitFor(() => fleet.masterOutput.join('').includes('bots API fetch failed: the last good list stays in force') || null, 20_000, 'the failed fetch logged');
      assert.equal(await metric(fleet, 'botfleet_config_last_reload_success'), 0);
      assert.equal(await replyOf(fleet, tgs.b, 3, 'still here'), 'still here');

      // The API comes back with one bot removed: it is stopped, the rest keep running.
      api.publish([entries.a!, { id: 'c', token: tgs.c.token }]);
      await api.listen();
      await waitFor(async () => !(await fleet.status()).workers.some((w) => w.botId === 'b') || null, 20_000, 'bot b removed');
      await waitFor(async () => (await metric(fleet, 'botfleet_config_last_reload_success')) === 1 || null, 10_000, 'the reload success metric back at 1');
      await fleet.waitRunning(['a', 'c']);
      assert.equal(api.unauthorized, 0, 'every request carried BOTS_API_TOKEN');

      // No token, and not the API's bearer, in what the master says.
      const said = [
        fleet.masterOutput.join(''), JSON.stringify(await fleet.status()), (await fleet.statusHttp('/metrics')).body,
        (await fleet.cli(['bots', 'list'])).stdout, (await fleet.cli(['describe', 'a'])).stdout,
        ...fs.readdirSync(path.join(fleet.home, 'logs')).map((f) => fs.readFileSync(path.join(fleet.home, 'logs', f), 'utf8')),
      ].join('\n');
      for (const secret of [tgs.a.token, tgs.b.token, tgs.c.token, badToken, BEARER]) assert.ok(!said.includes(secret), 'a secret appeared in output');
      assert.match((await fleet.cli(['bots', 'disable', 'a'])).stderr, /comes from the bots API/);
    });
  } finally {
    await api.close();
  }
});
