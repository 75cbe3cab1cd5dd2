/**
 * Making the children match the registry, as events: a new bot is `configured` (with the
 * history an earlier master kept), a disabled or invalid one `disabled` (with the reason
 * shown), a removed one `removed`, and every other listing `changed`: material (token,
 * mode, handler, API root: a restart) or settings only (hot reload of a running worker).
 */
import { newChild, type Child } from './child.js';
import type { BotSpec, InvalidBot } from '../../config/bot-spec.js';
import type { Dispatcher } from './dispatcher.js';

/** Apply one registry listing: `specs` (valid rows) and `invalid` (rows that did not parse, with why). */
export function reconcileAll(core: Dispatcher, specs: BotSpec[], invalid: InvalidBot[]): void {
  const seen = new Set<string>();
  for (const spec of specs) {
    seen.add(spec.id);
    reconcileOne(core, spec);
  }
  for (const bad of invalid) {
    seen.add(bad.id);
    const c = childOf(core, bad.id, bad.name, null);
    c.spec = null;
    core.logger.error({ botId: bad.id, reason: bad.reason }, 'bot configuration invalid; bot not started');
    core.dispatch(c, { type: 'disabled', why: `invalid configuration: ${bad.reason}`, reason: 'config-change' });
  }
  for (const [id, c] of core.children) if (!seen.has(id)) core.dispatch(c, { type: 'removed' });
}

/** The child of `id`, made (with the restart history an earlier master kept) when first seen. */
function childOf(core: Dispatcher, id: string, name: string, spec: BotSpec | null): Child {
  let c = core.children.get(id);
  if (!c) core.children.set(id, (c = newChild(id, name, spec, core.d.histories?.get(id)?.history)));
  return c;
}

function reconcileOne(core: Dispatcher, spec: BotSpec): void {
  const known = core.children.has(spec.id);
  const c = childOf(core, spec.id, spec.name, spec);
  const old = known ? c.spec : null;
  c.spec = spec;
  c.name = spec.name;
  if (!spec.enabled) return core.dispatch(c, { type: 'disabled', why: 'disabled', reason: 'operator' });
  if (!known) return core.dispatch(c, { type: 'configured', restored: core.d.histories?.get(spec.id) ?? null });
  const material = !old || old.token !== spec.token || old.mode !== spec.mode || old.handler !== spec.handler || old.apiRoot !== spec.apiRoot;
  const settings = old !== null && JSON.stringify(old.settings) !== JSON.stringify(spec.settings);
  core.dispatch(c, { type: 'changed', material, settings });
}
