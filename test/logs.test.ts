/**
 * Logs: rotation keeps LOG_KEEP_FILES copies and the size bound under a bot logging
 * fast; `botfleet logs -f` follows across rotations without losing a line; each of a
 * handler's lines about an update carries its updateId; the same handler error within
 * 30 s is logged once, then summarized; LOG_TO_STDOUT sends worker lines to the
 * master's stdout as JSON with botId; --level and --since filter. Plus the pure parts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { openLogFile } from '../master/host/log-file.js';
import { createRepeatFilter, MAX_KEYS } from '../common/repeat-filter.js';
import { parseDuration, passes } from '../cli/logs.js';
import { CLI, FIXTURES, withFleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';

const MISBEHAVE = path.join(FIXTURES, 'misbehave.js');
const linesOf = (file: string) => fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('log files', () => {
  test('rotation keeps `keep` copies, newest .1, and at most (keep + 1) x maxBytes', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-logs-'));
    try {
      const file = path.join(dir, 'x.log');
      const log = openLogFile(file, 4096, 3);
      const line = (i: number) => JSON.stringify({ seq: i, pad: 'y'.repeat(200) }) + '\n';
      for (let i = 0; i < 1000; i++) log.write(line(i));
      await log.close();
      const names = fs.readdirSync(dir).sort();
      assert.deepEqual(names, ['x.log', 'x.log.1', 'x.log.2', 'x.log.3']);
      const total = names.reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
      assert.ok(total <= 4 * (4096 + line(0).length), `total ${total}`);
      // Newest first: the live file ends with the last line, .1 holds the lines just before it.
      const seqs = (f: string) => linesOf(path.join(dir, f)).map((o) => o.seq as number);
      assert.equal(seqs('x.log').at(-1), 999);
      assert.equal(seqs('x.log.1').at(-1)! + 1, seqs('x.log')[0]);
      assert.equal(seqs('x.log.2').at(-1)! + 1, seqs('x.log.1')[0]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('repeated errors', () => {
  test('the first is logged, repeats in the window counted, one summary per window', () => {
    const f = createRepeatFilter(30_000);
    assert.equal(f.seen('E', 0), true);
    for (let t = 1; t <= 5; t++) assert.equal(f.seen('E', t * 1000), false);
    assert.equal(f.seen('other', 6000), true, 'another error is its own key');
    assert.deepEqual(f.flush(10_000), [], 'the window is not over');
    assert.deepEqual(f.flush(30_000), [{ key: 'E', suppressed: 5, since: 0 }]);
    assert.deepEqual(f.flush(31_000), [], 'each summary once');
    assert.equal(f.seen('E', 31_000), true, 'a new window logs again');
    assert.equal(f.seen('E', 32_000), false);
    assert.deepEqual(f.flush(33_000, true), [{ key: 'E', suppressed: 1, since: 31_000 }], 'all windows at a stop');
  });
  test('bounded: past MAX_KEYS the oldest keys are forgotten and their counts summarized', () => {
    const f = createRepeatFilter(30_000);
    f.seen('first', 0);
    f.seen('first', 1);
    for (let i = 0; i < MAX_KEYS + 10; i++) f.seen(`k${i}`, 2);
    assert.deepEqual(f.flush(3), [{ key: 'first', suppressed: 1, since: 0 }]);
  });
});

describe('the logs command\'s filter', () => {
  test('durations', () => {
    assert.equal(parseDuration('10m'), 600_000);
    assert.equal(parseDuration('90s'), 90_000);
    assert.equal(parseDuration('2h'), 7_200_000);
    assert.equal(parseDuration('1d'), 86_400_000);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('10'), null);
    assert.equal(parseDuration('-1m'), null);
  });
  test('level and time; a line that is not JSON is shown', () => {
    const at = (iso: string, level: number) => JSON.stringify({ level, time: iso, msg: 'x' });
    const since = Date.parse('2026-12-02T10:00:00Z');
    assert.equal(passes(at('2026-12-02T10:00:01Z', 40), { minLevel: 40, sinceMs: since }), true);
    assert.equal(passes(at('2026-12-02T10:00:01Z', 30), { minLevel: 40, sinceMs: since }), false);
    assert.equal(passes(at('2026-12-02T09:59:59Z', 50), { minLevel: 40, sinceMs: since }), false);
    assert.equal(passes('a stack trace line', { minLevel: 60, sinceMs: since }), true);
  });
});

describe('a bot logging fast', () => {
  test('rotation bounds its files; logs -f follows across rotations in order; lines carry updateId; LOG_TO_STDOUT has them with botId', async () => {
    await withFleet({ LOG_MAX_BYTES: '4096', LOG_KEEP_FILES: '2', LOG_TO_STDOUT: '1', LOG_LEVEL: 'info' }, {}, async (fleet) => {
      await fleet.addBot('chatty', { handler: MISBEHAVE });
      await fleet.startMaster();
      await fleet.waitRunning(['chatty']);
      const logs = path.join(fleet.home, 'logs');
      const follower = spawn(process.execPath, [CLI, 'logs', 'chatty', '-f', '-n', '1', '--json'], { env: fleet.env, stdio: ['ignore', 'pipe', 'pipe'] });
      let seen = '';
      follower.stdout.on('data', (d: Buffer) => (seen += d.toString()));
      try {
        // Its last line printed: the follower is watching from the end of the file.
        await waitFor(() => seen.includes('\n'), 10_000, 'the follower printing the last line');
        fleet.emulator.userSends(fleet.tg('chatty'), 9, 'log 80');
        await waitFor(() => fleet.tg('chatty').sent.some((m) => m.text === 'logged 80'), 30_000, 'the 80 lines logged');
        const numbered = () => seen.split('\n').filter((l) => l.includes('"numbered line"')).map((l) => JSON.parse(l) as { seq: number; updateId: number; botId: string });
        await waitFor(() => numbered().length >= 80, 10_000, 'the follower printing all 80 lines');
        const got = numbered();
        assert.deepEqual(got.map((o) => o.seq), Array.from({ length: 80 }, (_, i) => i), 'every line once, in order, across rotations');
        assert.ok(got.every((o) => Number.isInteger(o.updateId) && o.botId === 'chatty'), 'each line carries its update and bot');
        const files = fs.readdirSync(logs).filter((f) => f.startsWith('worker_chatty.log')).sort();
        assert.deepEqual(files, ['worker_chatty.log', 'worker_chatty.log.1', 'worker_chatty.log.2'], 'LOG_KEEP_FILES copies, no more');
        const total = files.reduce((n, f) => n + fs.statSync(path.join(logs, f)).size, 0);
        assert.ok(total <= 3 * (4096 + 1024), `total ${total}`);
        const stdoutLines = fleet.masterOutput.join('').split('\n').filter((l) => l.includes('"numbered line"'));
        assert.ok(stdoutLines.length >= 80, 'LOG_TO_STDOUT: the worker lines on the master\'s stdout');
        assert.ok(stdoutLines.every((l) => (JSON.parse(l) as { botId?: string }).botId === 'chatty'));
      } finally {
        follower.kill('SIGTERM');
      }
    });
  });

  test('the same handler error is logged once in 30 s, then summarized with the count; --level filters', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('failing', { handler: MISBEHAVE });
      await fleet.startMaster();
      await fleet.waitRunning(['failing']);
      for (let i = 0; i < 5; i++) fleet.emulator.userSends(fleet.tg('failing'), 3, 'fail');
      await fleet.waitWorker('failing', (w) => w.errors >= 5, 10_000, 'five handler errors counted');
      const off = await fleet.cli(['bots', 'disable', 'failing']);
      assert.equal(off.code, 0, off.stderr);
      await fleet.waitWorker('failing', (w) => w.state === 'stopped', 15_000, 'the bot stopped');
      const file = path.join(fleet.home, 'logs', 'worker_failing.log');
      const lines = linesOf(file);
      assert.equal(lines.filter((l) => l.msg === 'handler failed on update').length, 1, 'logged once');
      const summary = lines.find((l) => l.msg === 'identical handler errors suppressed');
      assert.equal(summary?.suppressed, 4);
      const warn = await fleet.cli(['logs', 'failing', '--level', 'warn', '--json', '-n', '1000']);
      assert.equal(warn.code, 0, warn.stderr);
      const shown = warn.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number });
      assert.ok(shown.length >= 2 && shown.every((l) => l.level >= 40), 'only warn and above');
      const bad = await fleet.cli(['logs', 'failing', '--since', 'yesterday']);
      assert.equal(bad.code, 2);
    });
  });

  test('logs --all interleaves the master and every bot by time, each line with its botId; with no master, status names the home', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('one');
      await fleet.addBot('two');
      const absent = await fleet.cli(['status']);
      assert.equal(absent.code, 3);
      assert.match(absent.stderr, new RegExp(`not running in ${fleet.home.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), 'which home was looked at');
      await fleet.startMaster();
      await fleet.waitRunning(['one', 'two']);
      assert.equal(await fleet.chat('one', 1, 'hi'), 'hi');
      assert.equal(await fleet.chat('two', 2, 'hi'), 'hi');
      const r = await fleet.cli(['logs', '--all', '--json', '-n', '500']);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { botId?: string; time?: string });
      assert.deepEqual(new Set(lines.map((l) => l.botId)), new Set(['master', 'one', 'two']), 'every log, each line tagged');
      const times = lines.map((l) => Date.parse(String(l.time)));
      assert.ok(times.every((t, i) => i === 0 || t >= times[i - 1]!), 'in time order');
      const both = await fleet.cli(['logs', 'one', '--all']);
      assert.equal(both.code, 2, 'a bot id or --all');
    });
  });
});
