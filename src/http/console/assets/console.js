'use strict';
// Herald's console page. Everything that came from clients or apps (channel and event names,
// data, user ids) is put into the page as text (textContent), never as HTML; the page's
// Content-Security-Policy allows no inline script either.

const state = {
  app: null,
  previous: null, // the last overview, for per-second rates
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

function rate(now, before, field, seconds) {
  if (!before || seconds <= 0) return 0;
  return Math.max(0, (now.figures[field] - before.figures[field]) / seconds);
}

function age(ms) {
  if (!ms) return '–';
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function renderOverview(overview) {
  $('node').textContent = overview.node || 'single node';
  const before = state.previous;
  const seconds = before ? (overview.time_ms - before.time_ms) / 1000 : 0;
  const rows = $('apps').querySelector('tbody');
  rows.replaceChildren();
  for (const app of overview.apps) {
    const prev = before && before.apps.find((a) => a.id === app.id);
    const queue = app.webhook_queue || {};
    const cells = [
      app.id, app.figures.connections, app.channels === null ? '?' : app.channels,
      rate(app, prev, 'messages_in', seconds).toFixed(1),
      rate(app, prev, 'messages_out', seconds).toFixed(1),
      rate(app, prev, 'rest_requests', seconds).toFixed(1),
      queue.queued === undefined ? '–' : queue.queued, age(queue.oldest_age_ms),
      app.figures.webhook_delivered, app.figures.webhook_retried, app.figures.webhook_dead,
    ];
    const row = el('tr', null, { 'data-app': app.id });
    for (const cell of cells) row.append(el('td', cell));
    rows.append(row);
    if (app.id === state.app && prev) {
      state.series.push(rate(app, prev, 'messages_in', seconds) + rate(app, prev, 'messages_out', seconds));
      if (state.series.length > MAX_POINTS) state.series.shift();
    }
  }
  state.previous = overview;
  drawChart();
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
