'use strict';
// Herald's console page. Everything that came from clients or apps (channel and event names,
// data, user ids) is put into the page as text (textContent), never as HTML; the page's
// Content-Security-Policy allows no inline script either.

const state = {
  app: null,
  nodes: new Map(), // per node: its last report, and the rates between its last two
  polled: false, // an overview was read before: rates are known
  series: [], // messages per second of the selected app
  entries: [], // journal entries of the selected app, oldest first
  kinds: new Set(),
  paused: false,
  dropped: 0,
  stream: null,
};
const MAX_ENTRIES = 1000;
const MAX_POINTS = 120;

const $ = (id) => document.getElementById(id);

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

async function getJson(path) {
  const res = await fetch(path, { credentials: 'same-origin' });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

// --- overview -----------------------------------------------------------------------------

const RATES = ['messages_in', 'messages_out', 'rest_requests'];

// A node's figures are counters since it started, so a rate is the difference between two of
// its reports over its own clock. Another node reports once per heartbeat: a poll that reads
// the same report again keeps the rates it had, and a node that joins or goes moves the
// cluster's rates by its own rate, never by its whole count.
function trackNodes(overview) {
  const seen = new Set();
  for (const report of overview.nodes) {
    const name = report.node || 'this node';
    seen.add(name);
    const known = state.nodes.get(name);
    if (known && report.time_ms <= known.report.time_ms) continue;
    const rates = {};
    if (known) {
      const seconds = (report.time_ms - known.report.time_ms) / 1000;
      for (const [app, figures] of Object.entries(report.apps)) {
        const before = known.report.apps[app];
        rates[app] = {};
        for (const field of RATES) {
          rates[app][field] = before ? Math.max(0, (figures[field] - before[field]) / seconds) : 0;
        }
      }
    }
    state.nodes.set(name, { report, rates });
  }
  for (const name of [...state.nodes.keys()]) if (!seen.has(name)) state.nodes.delete(name);
}

function nodeRate(node, app, field) {
  const rates = node && node.rates[app];
  return rates ? rates[field] : 0;
}

function appRate(app, field) {
  let sum = 0;
  for (const node of state.nodes.values()) sum += nodeRate(node, app, field);
  return sum;
}

function age(ms) {
  if (!ms) return '–';
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function renderOverview(overview) {
  $('node').textContent = overview.node ? `node ${overview.node}` : 'this server (a single node)';
  $('cluster-unavailable').hidden = !overview.cluster_unavailable;
  renderRedis(overview.redis);
  trackNodes(overview);
  const rows = $('apps').querySelector('tbody');
  rows.replaceChildren();
  for (const app of overview.apps) {
    const queue = app.webhook_queue || {};
    const cells = [
      app.id, app.figures.connections, app.channels === null ? '?' : app.channels,
      appRate(app.id, 'messages_in').toFixed(1),
      appRate(app.id, 'messages_out').toFixed(1),
      appRate(app.id, 'rest_requests').toFixed(1),
      queue.queued === undefined ? '–' : queue.queued, age(queue.oldest_age_ms),
      app.figures.webhook_delivered, app.figures.webhook_retried, app.figures.webhook_dead,
    ];
    const row = el('tr', null, { 'data-app': app.id });
    for (const cell of cells) row.append(el('td', cell));
    rows.append(row);
    if (app.id === state.app && state.polled) {
      state.series.push(appRate(app.id, 'messages_in') + appRate(app.id, 'messages_out'));
      if (state.series.length > MAX_POINTS) state.series.shift();
    }
  }
  renderNodes(overview);
  state.polled = true;
  drawChart();
}

// This node's Redis: the primaries it uses (and shards it serves locally), failovers followed,
// its pub/sub connection's health.
function renderRedis(redis) {
  const line = $('redis');
  line.hidden = !redis;
  if (!redis) return;
  const primaries = redis.primaries.length ? redis.primaries.join(', ') : 'not known yet';
  const label = redis.primaries.length > 1 ? 'shard primaries' : 'primary';
  const out = redis.shards_out && redis.shards_out.length
    ? ` · served locally (shard out): ${redis.shards_out.join(', ')}` : '';
  line.textContent = `Redis ${label}: ${primaries}${out} · failovers followed: ${redis.failovers}` +
    ` · pub/sub reconnects: ${redis.pubsub_reconnects}` +
    ` · pub/sub last heard: ${redis.pubsub_heard_seconds_ago} s ago`;
}

// One row per node: its connections and message rates over every app.
function renderNodes(overview) {
  const rows = $('nodes').querySelector('tbody');
  rows.replaceChildren();
  for (const report of overview.nodes) {
    const name = report.node || 'this node';
    const node = state.nodes.get(name);
    const own = report.node === overview.node;
    const apps = Object.keys(report.apps);
    const sum = (of) => apps.reduce((total, app) => total + of(app), 0);
    // Clocks of two nodes may differ a little: never a report from the future.
    const since = Math.max(0, overview.time_ms - report.time_ms);
    const cells = [
      own && report.node ? `${name} (this node)` : name,
      sum((app) => report.apps[app].connections),
      sum((app) => nodeRate(node, app, 'messages_in')).toFixed(1),
      sum((app) => nodeRate(node, app, 'messages_out')).toFixed(1),
      own ? 'now' : `${age(since) === '–' ? '0 ms' : age(since)} ago`,
    ];
    const row = el('tr', null, { 'data-node': name });
    if (own) row.className = 'own';
    for (const cell of cells) row.append(el('td', cell));
    rows.append(row);
  }
}

function drawChart() {
  const canvas = $('chart');
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const max = Math.max(1, ...state.series);
  ctx.strokeStyle = '#2d6cdf';
  ctx.lineWidth = 2;
  ctx.beginPath();
  state.series.forEach((v, i) => {
    const x = (i / (MAX_POINTS - 1)) * width;
    const y = height - 4 - (v / max) * (height - 20);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = '#5b6478';
  ctx.font = '11px sans-serif';
  ctx.fillText(`max ${max.toFixed(1)}/s`, 6, 12);
}

function fillAppSelect(overview) {
  const select = $('app-select');
  if (select.options.length) return;
  for (const app of overview.apps) select.append(el('option', app.id, { value: app.id }));
  selectApp(overview.apps.length ? overview.apps[0].id : null);
}

async function refreshOverview() {
  try {
    const overview = await getJson('/console/api/overview');
    fillAppSelect(overview);
    renderOverview(overview);
  } catch (e) {
    $('node').textContent = `unreachable (${e.message})`;
  }
}

// --- channels and members -------------------------------------------------------------------

async function refreshChannels() {
  if (!state.app) return;
  let body;
  try {
    body = await getJson(`/console/api/apps/${encodeURIComponent(state.app)}/channels`);
  } catch (_) {
    return;
  }
  const rows = $('channels').querySelector('tbody');
  rows.replaceChildren();
  for (const channel of body.channels) {
    const row = el('tr', null, { 'data-channel': channel.name });
    row.append(el('td', channel.name), el('td', channel.subscription_count),
      el('td', channel.user_count === null ? '' : channel.user_count));
    row.addEventListener('click', () => showMembers(channel.name));
    rows.append(row);
  }
}

async function showMembers(channel) {
  $('send-channel').value = channel;
  $('members-of').textContent = channel;
  const list = $('members');
  list.replaceChildren();
  if (!channel.startsWith('presence-')) {
    list.append(el('li', 'not a presence channel'));
    return;
  }
  try {
    const path = `/console/api/apps/${encodeURIComponent(state.app)}/channels/${encodeURIComponent(channel)}/users`;
    const body = await getJson(path);
    for (const id of body.users) list.append(el('li', id));
  } catch (e) {
    list.append(el('li', e.message));
  }
}

// --- the live log ---------------------------------------------------------------------------

function matches(entry) {
  const channel = $('filter-channel').value.trim();
  const kind = $('filter-kind').value;
  if (kind && entry.kind !== kind) return false;
  if (channel && !(entry.channel || '').includes(channel)) return false;
  return true;
}

function entryNode(entry) {
  const item = el('li', null, { 'data-kind': entry.kind });
  item.className = 'entry';
  const time = new Date(entry.time_ms || Date.now()).toLocaleTimeString();
  const where = [entry.channel, entry.socket_id].filter(Boolean).join(' · ');
  const detail = where ? `${where}  ${JSON.stringify(entry.detail)}` : JSON.stringify(entry.detail);
  item.append(el('span', time, { class: 'time' }), el('span', entry.kind, { class: 'kind' }),
    el('span', detail, { class: 'detail' }));
  return item;
}

function renderLog() {
  const log = $('log');
  log.replaceChildren(...state.entries.filter(matches).reverse().slice(0, 300).map(entryNode));
}

function addKind(kind) {
  if (state.kinds.has(kind)) return;
  state.kinds.add(kind);
  $('filter-kind').append(el('option', kind, { value: kind }));
}

function onEntry(entry) {
  if (entry.kind === 'dropped') {
    state.dropped += entry.detail.count;
    const notice = $('dropped');
    notice.hidden = false;
    notice.textContent = `${state.dropped} entries dropped (this page fell behind)`;
  }
  addKind(entry.kind);
  state.entries.push(entry);
  if (state.entries.length > MAX_ENTRIES) state.entries.shift();
  if (!state.paused && matches(entry)) {
    const log = $('log');
    log.prepend(entryNode(entry));
    while (log.childElementCount > 300) log.lastElementChild.remove();
  }
}

function selectApp(app) {
  state.app = app;
  state.entries = [];
  state.series = [];
  $('log').replaceChildren();
  if (state.stream) state.stream.close();
  if (!app) return;
  state.stream = new EventSource(`/console/api/apps/${encodeURIComponent(app)}/stream`);
  state.stream.onmessage = (message) => onEntry(JSON.parse(message.data));
  refreshChannels();
}

// --- sending --------------------------------------------------------------------------------

async function send() {
  const result = $('send-result');
  const body = {
    channel: $('send-channel').value.trim(),
    name: $('send-event').value.trim(),
    data: $('send-data').value,
  };
  try {
    const res = await fetch(`/console/api/apps/${encodeURIComponent(state.app)}/events`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const reply = await res.json();
    result.textContent = res.ok ? 'sent' : `refused: ${reply.error}`;
  } catch (e) {
    result.textContent = `failed: ${e.message}`;
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('app-select').addEventListener('change', (e) => selectApp(e.target.value));
  $('filter-channel').addEventListener('input', renderLog);
  $('filter-kind').addEventListener('change', renderLog);
  $('pause').addEventListener('click', () => {
    state.paused = !state.paused;
    $('pause').textContent = state.paused ? 'Resume' : 'Pause';
    if (!state.paused) renderLog();
  });
  $('send-button').addEventListener('click', send);
  refreshOverview();
  setInterval(refreshOverview, 1000);
  setInterval(refreshChannels, 2000);
});
