// botfleet status page: tiles from the `snapshot` events of /api/events, state changes
// from its `state` events, a bot's panel from /api/bots/:id. No framework, no inline
// script (the server's CSP forbids it); every text from the server goes in as textContent.
'use strict';

const $ = (id) => document.getElementById(id);
const STATES = ['running', 'starting', 'pending', 'draining', 'backoff', 'quarantined', 'stopped'];
const UNHEALTHY = new Set(['starting', 'pending', 'draining', 'backoff', 'quarantined']);
const tiles = new Map(); // botId -> { li, button, parts }
let snap = null;
let source = null;
let openBot = null;
let panelTimer = null;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function duration(ms) {
  if (ms === null || ms === undefined || !(ms >= 0)) return '-';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}
const mb = (b) => `${(b / 1048576).toFixed(b >= 104857600 ? 0 : 1)} MB`;
const rate = (v) => (v === null || v === undefined ? '-' : v >= 10 ? String(Math.round(v)) : v.toFixed(1));
const sinceSnap = (iso) => (snap && iso ? Date.parse(snap.at) - Date.parse(iso) : null);
const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });

function isUnhealthy(b) {
  if (UNHEALTHY.has(b.state)) return true;
  if (b.errorsPerMin > 0) return true;
  return snap !== null && b.rssBytes > 0.9 * snap.memoryCapBytes;
}

function matches(b) {
  if ($('unhealthy').checked && !isUnhealthy(b)) return false;
  const q = $('filter').value.trim().toLowerCase();
  if (q === '') return true;
  return [b.botId, b.name, b.state, b.mode || '', b.username || ''].some((x) => String(x).toLowerCase().includes(q));
}

function newTile(botId) {
  const li = el('li');
  const button = el('button', 'tile');
  button.type = 'button';
  const parts = {
    name: el('span', 'name'), state: el('span', 'state'), id: el('p', 'id'), mem: el('div', 'mem'), bar: el('span'),
    facts: el('p', 'facts'), exit: el('p', 'facts'), note: el('p', 'note'),
  };
  const top = el('div', 'top');
  top.append(parts.name, parts.state);
  parts.mem.append(parts.bar);
  parts.mem.setAttribute('aria-hidden', 'true');
  button.append(top, parts.id, parts.mem, parts.facts, parts.exit, parts.note);
  button.addEventListener('click', () => openPanel(botId));
  li.append(button);
  const t = { li, button, parts };
  tiles.set(botId, t);
  return t;
}

function setText(e, text) {
  if (e.textContent !== text) e.textContent = text;
  e.hidden = text === '';
}

function paintState(t, state) {
  t.button.dataset.state = state;
  setText(t.parts.state, state);
}

function fillTile(t, b) {
  paintState(t, b.state);
  setText(t.parts.name, b.name || b.botId);
  const owner = b.owner === undefined ? '' : ` · on ${b.owner ?? 'no member yet'}`;
  setText(t.parts.id, `${b.botId}${b.username ? ' · @' + b.username : ''} · ${b.mode || 'mode -'}${owner}${b.uptimeMs > 0 ? ' · up ' + duration(b.uptimeMs) : ''}`);
  const cap = snap.memoryCapBytes;
  const share = b.rssBytes > 0 ? Math.min(1, b.rssBytes / cap) : 0;
  t.parts.bar.style.width = `${(share * 100).toFixed(1)}%`;
  t.parts.mem.classList.toggle('high', share >= 0.75 && share < 0.9);
  t.parts.mem.classList.toggle('over', share >= 0.9);
  setText(t.parts.facts, `mem ${b.rssBytes > 0 ? mb(b.rssBytes) : '-'} / ${mb(cap)} · ${rate(b.messagesPerMin)} msg/min · ${rate(b.errorsPerMin)} err/min · restarts ${b.restartsLastHour}/${snap.restartWindowMax} in 1h`);
  const exit = b.lastExit ? `last exit: ${b.lastExit.reason}${b.lastExit.code !== null ? ' (code ' + b.lastExit.code + ')' : b.lastExit.signal ? ' (' + b.lastExit.signal + ')' : ''}, ${duration(sinceSnap(b.lastExit.at))} ago` : '';
  setText(t.parts.exit, exit);
  const until = b.quarantinedUntil ? `quarantined until ${clock(b.quarantinedUntil)} (in ${duration(-sinceSnap(b.quarantinedUntil))})` : b.state === 'quarantined' ? 'quarantined until an operator restarts it' : '';
  setText(t.parts.note, [until, b.stateReason && b.state !== 'running' ? b.stateReason : ''].filter(Boolean).join(' — '));
  t.button.setAttribute('aria-label', `${b.name || b.botId}, ${b.state}${b.stateReason ? ', ' + b.stateReason : ''}`);
}

function render() {
  if (!snap) return;
  const m = snap.master;
  $('master').textContent = `master pid ${m.pid} · up ${duration(m.uptimeMs)} · ${m.mode} · capacity ${m.capacity} · v${m.version}`;
  const totals = $('totals');
  totals.replaceChildren(...STATES.filter((s) => snap.totals[s]).map((s) => {
    const li = el('li', '', `${snap.totals[s]} ${s}`);
    li.dataset.state = s;
    return li;
  }));
  if (totals.childElementCount === 0) totals.append(el('li', '', 'no bots'));
  const grid = $('grid');
  const seen = new Set();
  let shown = 0;
  snap.bots.forEach((b, i) => {
    seen.add(b.botId);
    const t = tiles.get(b.botId) || newTile(b.botId);
    fillTile(t, b);
    t.li.hidden = !matches(b);
    if (!t.li.hidden) shown++;
    if (grid.children[i] !== t.li) grid.insertBefore(t.li, grid.children[i] || null);
  });
  for (const [id, t] of tiles) if (!seen.has(id)) {
    t.li.remove();
    tiles.delete(id);
  }
  $('empty').hidden = shown > 0 || snap.bots.length === 0;
}

function onState(e) {
  const t = tiles.get(e.botId);
  if (t) paintState(t, e.to);
  if (snap) {
    const b = snap.bots.find((x) => x.botId === e.botId);
    if (b) {
      b.state = e.to;
      b.stateReason = e.reason;
      t && fillTile(t, b);
    }
  }
  if (openBot === e.botId) refreshPanel();
}

function live(on, text) {
  const l = $('live');
  l.className = `live ${on ? 'on' : 'off'}`;
  l.textContent = text;
}

function connect() {
  if (source) return;
  source = new EventSource('/api/events');
  source.addEventListener('open', () => live(true, 'live'));
  source.addEventListener('snapshot', (m) => {
    snap = JSON.parse(m.data);
    render();
  });
  source.addEventListener('state', (m) => onState(JSON.parse(m.data)));
  source.addEventListener('error', () => {
    live(false, 'reconnecting…');
    // EventSource retries by itself unless the server refused (503: too many streams); then we do.
    if (source && source.readyState === EventSource.CLOSED) {
      source = null;
      setTimeout(() => document.hidden || connect(), 3000);
    }
  });
}

function disconnect() {
  if (source) source.close();
  source = null;
  live(false, 'paused while hidden');
}

function sparkline(box, values, label, format) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 100 30');
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  const max = Math.max(1, ...values);
  const min = Math.min(...values, max);
  const span = max - min || 1;
  const line = document.createElementNS(ns, 'polyline');
  const n = values.length;
  line.setAttribute('points', values.map((v, i) => `${n === 1 ? 100 : (i / (n - 1)) * 100},${29 - ((v - min) / span) * 28}`).join(' '));
  const title = document.createElementNS(ns, 'title');
  const summary = n === 0 ? `${label}: no samples yet` : `${label}: now ${format(values[n - 1])}, min ${format(Math.min(...values))}, max ${format(Math.max(...values))} (${n} samples)`;
  title.textContent = summary;
  svg.append(title, line);
  box.replaceChildren(svg, el('p', '', summary));
}

async function refreshPanel() {
  if (!openBot) return;
  const id = openBot;
  let d;
  try {
    const r = await fetch(`/api/bots/${encodeURIComponent(id)}`, { cache: 'no-store' });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    d = await r.json();
  } catch (err) {
    $('panel-state').textContent = `could not load: ${err.message}`;
    return;
  }
  if (openBot !== id) return;
  const s = d.status;
  $('panel-title').textContent = `${s.name || s.botId} (${s.botId})`;
  $('panel-state').textContent = `${s.state}${s.stateReason ? ' — ' + s.stateReason : ''} · pid ${s.pid ?? '-'} · restarts ${d.restartWindow.restarts.length}/${d.restartWindow.max} in the window, ${s.restarts} in all${s.quarantinedUntil ? ' · quarantined until ' + clock(s.quarantinedUntil) : ''}`;
  sparkline($('spark-mem'), d.series.rssBytes, 'memory', mb);
  sparkline($('spark-upd'), d.series.handled, `updates handled per ${d.sampleMs / 1000}s`, (v) => String(v));
  $('panel-transitions').replaceChildren(...d.transitions.slice().reverse().map((t) => {
    const tr = el('tr');
    tr.append(el('td', '', clock(t.at)), el('td', '', t.from), el('td', '', t.to), el('td', '', t.reason || ''));
    return tr;
  }));
  $('panel-log').replaceChildren(...d.recentLog.slice().reverse().map((l) => {
    const level = l.level >= 50 ? 'error' : l.level >= 40 ? 'warn' : 'info';
    const li = el('li', level);
    li.append(el('span', 'lvl', level), document.createTextNode(`${l.at ? clock(l.at) + ' ' : ''}${l.msg}`));
    return li;
  }));
  if (d.recentLog.length === 0) $('panel-log').append(el('li', '', 'no lines yet'));
  const actions = snap && snap.actions;
  $('panel-actions').hidden = !actions;
  $('panel-restart').textContent = s.state === 'quarantined' ? 'Release quarantine' : 'Restart';
}

function openPanel(botId) {
  openBot = botId;
  $('panel-action-result').textContent = '';
  const dlg = $('panel');
  if (!dlg.open) dlg.showModal();
  refreshPanel();
  clearInterval(panelTimer);
  panelTimer = setInterval(() => document.hidden || refreshPanel(), 5000);
}

function closePanel() {
  openBot = null;
  clearInterval(panelTimer);
  if ($('panel').open) $('panel').close();
}

async function restartOpenBot() {
  const id = openBot;
  const out = $('panel-action-result');
  out.textContent = 'restarting…';
  try {
    const r = await fetch(`/api/bots/${encodeURIComponent(id)}/restart`, { method: 'POST' });
    const body = await r.json();
    out.textContent = r.ok ? (body.restarted && body.restarted.length ? 'running again' : `not restarted: ${(body.skipped[0] || {}).why || '?'}`) : `refused: ${body.error}`;
  } catch (err) {
    out.textContent = `failed: ${err.message}`;
  }
  refreshPanel();
}

document.addEventListener('DOMContentLoaded', () => {
  $('filter').addEventListener('input', render);
  $('unhealthy').addEventListener('change', render);
  $('panel-close').addEventListener('click', closePanel);
  $('panel').addEventListener('close', () => {
    openBot = null;
    clearInterval(panelTimer);
  });
  $('panel-restart').addEventListener('click', restartOpenBot);
  document.addEventListener('visibilitychange', () => (document.hidden ? disconnect() : connect()));
  connect();
});
