/**
 * The scale issue's first must-show on one box: 100 bots on this 2-core machine start with the
 * defaults (no capacity setting changed: the memory reserve decides, not 20 per core), all
 * running; imported with `bots import` in one go.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { withFleet } from './helpers/fleet.js';

test('100 polling bots start with the default capacity on this machine: all running', { timeout: 180_000 }, async (t) => {
  await withFleet({}, {}, async (fleet) => {
    const ids = Array.from({ length: 100 }, (_, i) => `s${String(i).padStart(3, '0')}`);
    const file = path.join(fleet.home, 'bots.ndjson');
    fs.writeFileSync(file, ids.map((id) => JSON.stringify({ id, name: id, token: fleet.emulator.createBot(`${id}_bot`).token, mode: 'polling', handler: 'echo' })).join('\n'));
    const r = await fleet.cli(['bots', 'import', file]);
    assert.match(r.stdout, /^added 100, changed 0, unchanged 0, refused 0$/m, r.stderr);
    await fleet.startMaster();
    const s = await fleet.waitRunning(ids, 120_000);
    assert.equal(s.master.capacity, 1000, 'MAX_TOTAL_WORKERS, no per-core cap');
    assert.equal(s.workers.filter((w) => w.state === 'running').length, 100);
    t.diagnostic(`${os.availableParallelism()} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB: 100 running`);
  });
});
