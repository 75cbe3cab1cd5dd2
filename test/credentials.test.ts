/**
 * The credential models botfleet ships, each run for real (CI runs as root, so every one
 * can be reproduced with util-linux setpriv): a root master; a non-root user holding the
 * systemd unit's ambient capabilities (read from deploy/botfleet.service, so the unit and
 * this test cannot drift apart); a root master limited to the Kubernetes manifest's
 * capabilities (read from deploy/kubernetes.yaml); a plain non-root user. In each, bots
 * answer, and a probe handler's worker has no capability in any set, `no_new_privs`, cannot
 * signal the master and cannot `setuid(0)` (capabilities(7): the kernel clears capabilities
 * only on a change from uid 0, so a non-root master with ambient capabilities would hand
 * them on unless the spawn drops them: master/host/privileges.ts).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FIXTURES, withFleet, type Fleet } from './helpers/fleet.js';
import { blockingPath } from '../master/host/isolation.js';
import { readCapabilities } from '../master/host/privileges.js';
import { which } from './helpers/tools.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const HOSTILE = path.join(FIXTURES, 'hostile.js');
const NOBODY = 65534;
const codeClosed = blockingPath(path.join(ROOT, 'dist', 'worker', 'bundle.js'));
const skip = process.getuid?.() !== 0 ? 'needs root to reproduce the credential models (CI runs as root)'
  : !which('setpriv') ? 'util-linux setpriv not installed'
  : codeClosed ? `the checkout is closed to other users at ${codeClosed}` : false;

/** setpriv's names (`+setuid`) of the capabilities a unit line lists (`CAP_SETUID ...`). */
const setprivCaps = (names: string[]) => names.map((n) => `+${n.replace(/^CAP_/, '').toLowerCase()}`).join(',');

/** The systemd unit's capabilities: AmbientCapabilities= (and its bounding set, which must be the same). */
function unitCapabilities(): string[] {
  const unit = fs.readFileSync(path.join(ROOT, 'deploy', 'botfleet.service'), 'utf8');
  const ambient = /^AmbientCapabilities=(.*)$/m.exec(unit)![1]!.trim().split(/\s+/);
  const bounding = /^CapabilityBoundingSet=(.*)$/m.exec(unit)![1]!.trim().split(/\s+/);
  assert.deepEqual([...bounding].sort(), [...ambient].sort(), 'the unit bounds the master to what it grants');
  assert.match(unit, /^NoNewPrivileges=yes$/m);
  assert.match(unit, /^User=botfleet$/m, 'a non-root user');
  return ambient;
}

/** The Kubernetes manifest's container capabilities (`add:` after `drop: [ALL]`), as CAP_ names. */
function kubernetesCapabilities(): string[] {
  const yaml = fs.readFileSync(path.join(ROOT, 'deploy', 'kubernetes.yaml'), 'utf8');
  assert.match(yaml, /drop: \[ALL\]/);
  assert.match(yaml, /allowPrivilegeEscalation: false/);
  assert.match(yaml, /runAsUser: 0/);
  return /add: \[([A-Z_, ]+)\]/.exec(yaml)![1]!.split(',').map((c) => `CAP_${c.trim()}`);
}

/** A credential model: who runs the master (and the CLI), with which setpriv options. */
interface Model { name: string; asUid?: number; credentials: string[]; perBotUids: boolean; masterCaps: string[] }

function models(): Model[] {
  const unit = unitCapabilities();
  const k8s = kubernetesCapabilities();
  return [
    { name: 'a root master', credentials: [], perBotUids: true, masterCaps: ['all'] },
    {
      name: 'a non-root user with the systemd unit\'s capabilities', asUid: NOBODY, perBotUids: true, masterCaps: unit,
      credentials: [`--inh-caps=-all,${setprivCaps(unit)}`, `--ambient-caps=-all,${setprivCaps(unit)}`, `--bounding-set=-all,${setprivCaps(unit)}`, '--no-new-privs'],
    },
    {
      name: 'a root master with only the Kubernetes manifest\'s bounding set', perBotUids: true, masterCaps: k8s,
      credentials: [`--bounding-set=-all,${setprivCaps(k8s)}`, '--inh-caps=-all', '--ambient-caps=-all', '--no-new-privs'],
    },
    { name: 'a plain non-root user', asUid: NOBODY, perBotUids: false, masterCaps: [], credentials: ['--inh-caps=-all', '--ambient-caps=-all'] },
  ];
}

/** CAP_ names of a capability mask (linux/capability.h numbering for those we grant). */
const NUMBERS: Record<string, number> = { CAP_CHOWN: 0, CAP_FOWNER: 3, CAP_KILL: 5, CAP_SETGID: 6, CAP_SETUID: 7 };
const mask = (names: string[]) => names.reduce((m, n) => m | (1n << BigInt(NUMBERS[n]!)), 0n);

describe('credential models: every model runs its bots, and no bot holds or gains a capability', { skip }, () => {
  for (const m of skip ? [] : models()) {
    test(m.name, async () => {
      // Like systemd's RuntimeDirectory=: a lock directory of the master's user (a non-root master cannot create /run/botfleet).
      const runtime = m.asUid !== undefined ? fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-test-run-')) : null;
      if (runtime) fs.chownSync(runtime, m.asUid!, m.asUid!);
      try {
        await withFleet(runtime ? { RUNTIME_DIRECTORY: runtime } : {}, { asUid: m.asUid, credentials: m.credentials }, async (fleet) => {
          await runModel(fleet, m);
        });
      } finally {
        if (runtime) fs.rmSync(runtime, { recursive: true, force: true });
      }
    });
  }
});

async function runModel(fleet: Fleet, m: Model): Promise<void> {
  await fleet.addBot('hostile', { handler: HOSTILE, settings: { home: fleet.home } });
  await fleet.addBot('neighbour');
  await fleet.startMaster();
  const s = await fleet.waitRunning(['hostile', 'neighbour']);
  // The model is what it claims: the master's own credentials.
  const master = readCapabilities(s.master.pid);
  if (m.masterCaps[0] !== 'all') assert.equal(master.effective, mask(m.masterCaps), `the master holds exactly ${m.masterCaps.join(' ') || 'nothing'}`);
  assert.equal(fs.statSync(`/proc/${s.master.pid}`).uid, m.asUid ?? 0);
  assert.equal(s.master.isolation.uid, m.perBotUids, `per-bot uids: ${s.master.isolation.notes.join('; ')}`);
  assert.equal(await fleet.chat('neighbour', 1, 'hello'), 'hello', 'bots answer');
  const hostile = s.workers.find((w) => w.botId === 'hostile')!;
  const caps = readCapabilities(hostile.pid!);
  assert.deepEqual({ inh: caps.inheritable, prm: caps.permitted, eff: caps.effective, amb: caps.ambient }, { inh: 0n, prm: 0n, eff: 0n, amb: 0n }, 'no capability in any set');
  assert.equal(caps.noNewPrivs, true, 'no_new_privs: no setuid binary or file capability can raise it');
  if (m.perBotUids) assert.notEqual(fs.statSync(`/proc/${hostile.pid}`).uid, fs.statSync(`/proc/${s.master.pid}`).uid, 'its own uid');
  const n = (await fleet.worker('neighbour'))!;
  const r = JSON.parse(await fleet.chat('hostile', 2, `probe ${n.pid}`)) as Record<string, string>;
  assert.notEqual(r.signalMaster, 'ok', 'it cannot signal the master');
  assert.notEqual(r.setuidRoot, 'ok', 'it cannot become root');
  assert.equal(r.writeOwnDir, 'ok', 'it works in its own data directory (its working directory)');
  assert.equal(await fleet.chat('hostile', 3, 'still here'), 'ok: still here');
}
