/**
 * Making the children match the registry: new bots start, disabled and removed ones
 * stop, a material change (token, mode, handler, API root) restarts, a settings change
 * is sent to the running worker (hot reload), and an invalid row stops only its bot,
 * with the reason shown.
 */
import { errorMessage } from '../../common/errors.js';
import { newChild, type Child } from './child.js';
import type { BotSpec, InvalidBot } from './child-spec.js';
import type { SupervisorCore } from './supervisor-core.js';
import type { RestoredHistory } from './supervisor-deps.js';

/** Apply one registry listing: `specs` (valid rows) and `invalid` (rows that did not parse, with why). */
export function reconcileAll(core: SupervisorCore, specs: BotSpec[], invalid: InvalidBot[]): void {
  const seen = new Set<string>();
  for (const spec of specs) {
    seen.add(spec.id);
    reconcileOne(core, spec);
  }
  for (const bad of invalid) {
    seen.add(bad.id);
    reconcileInvalid(core, bad);
  }
  for (const [id, c] of core.children) {
    if (seen.has(id)) continue;
    void core.stopProc(c, 'operator', 'stop', 'removed').then(() => {
      if (core.children.get(id) === c && c.intent === 'stop') {
        core.children.delete(id);
        void c.log?.close();
        core.d.onRemoved?.(id);
      }
    });
  }
}

function reconcileInvalid(core: SupervisorCore, bad: InvalidBot): void {
  let c = core.children.get(bad.id);
  if (!c) core.children.set(bad.id, (c = newChild(bad.id, bad.name, null)));
  const child = c;
  child.spec = null;
  const why = `invalid configuration: ${bad.reason}`;
  core.logger.error({ botId: bad.id, reason: bad.reason }, 'bot configuration invalid; bot not started');
  void core.stopProc(child, 'config-change', 'stop', why).then(() => {
    if (child.state === 'stopped') child.stateReason = why;
  });
}

/** The child of `spec.id`, made (with the history an earlier master kept) when first seen. */
function childFor(core: SupervisorCore, spec: BotSpec): { c: Child; restored: RestoredHistory | undefined } {
  const known = core.children.get(spec.id);
  if (known) return { c: known, restored: undefined };
  const c = newChild(spec.id, spec.name, spec);
  core.children.set(spec.id, c);
  const restored = core.d.histories?.get(spec.id);
  if (restored) c.history = restored.history;
  return { c, restored };
}

function reconcileOne(core: SupervisorCore, spec: BotSpec): void {
  const { c, restored } = childFor(core, spec);
  const old = c.spec;
  c.spec = spec;
  c.name = spec.name;
  if (!spec.enabled) {
    if (c.intent !== 'stop' || c.state !== 'stopped') void core.stopProc(c, 'operator', 'stop', 'disabled');
    return;
  }
  const material = !old || old.token !== spec.token || old.mode !== spec.mode || old.handler !== spec.handler || old.apiRoot !== spec.apiRoot;
  if (material) c.prepareDelivery = true;
  if (c.intent !== 'run') {
    c.intent = 'run';
    if (restored && (restored.doNotRestart || (restored.quarantinedUntil !== null && restored.quarantinedUntil > core.now()))) return core.restoreQuarantine(c, restored);
    if (!c.proc) return void core.launch(c, old ? 'enabled' : 'configured');
  }
  if (old && material && c.proc) return void core.stopProc(c, 'config-change', 'restart', 'configuration changed');
  if (old && material && c.state === 'quarantined' && !c.launching) {
    // A fixed token or handler deserves a fresh try, without waiting for the window.
    core.freshStart(c);
    return void core.launch(c, 'configuration changed');
  }
  if (old && JSON.stringify(old.settings) !== JSON.stringify(spec.settings) && c.proc && c.state === 'running') hotReload(core, c, spec);
}

/** Send changed settings to the running worker (the `settings` message); a failed send is logged. */
function hotReload(core: SupervisorCore, c: Child, spec: BotSpec): void {
  try {
    c.proc!.send({ v: 1, type: 'settings', settings: spec.settings });
    core.logger.info({ botId: c.botId }, 'settings sent to worker (hot reload)');
  } catch (err) {
    core.logger.warn({ botId: c.botId, err: errorMessage(err) }, 'could not send settings');
  }
}
