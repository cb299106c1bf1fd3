'use strict';
// Decision hooks seen by the official clients: this file runs the hook server itself on
// $DECISION_HOOK_PORT, where the app DECISION_HOOK_APP of the generated config (../make_config.py)
// sends every call. Each call is checked with the `pusher` npm SDK's
// pusher.webhook({headers, rawBody}).isValid(), as the app's backend would; pusher-js clients
// then see what each answer does: refusals of a connection, a subscription and a client event,
// and a hook outage that pusher-js rides out by reconnecting on its own.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const PusherServer = require('pusher');
const h = require('./helpers');

const T = { timeout: 30000 };

const CONFIG_PATH = process.env.HERALD_COMPAT_CONFIG;
const HOOK_PORT = Number(process.env.DECISION_HOOK_PORT);
assert.ok(CONFIG_PATH && HOOK_PORT, 'run through tests/compat/run.sh (needs HERALD_COMPAT_CONFIG and DECISION_HOOK_PORT)');
const CONFIG = JSON.parse(fs.readFileSync(CONFIG_PATH, 'utf8'));
const APP = CONFIG.app_manager.array.apps.find((a) => String(a.id) === '100004');
assert.ok(APP && APP.decision_hooks, `the decision hook app is missing from ${CONFIG_PATH}`);
const verifier = new PusherServer({ appId: String(APP.id), key: APP.key, secret: APP.secret });

// --- the hook server -------------------------------------------------------------------------

const calls = [];
// (body) => {status, body, delayMs}; replaced per test.
let decide = () => ({ status: 200, body: { allow: true } });

function handle(req, res) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const rawBody = Buffer.concat(chunks).toString('utf8');
    const valid = verifier.webhook({ headers: req.headers, rawBody }).isValid();
    const body = JSON.parse(rawBody);
    calls.push({ headers: req.headers, body, valid });
    const answer = decide(body);
    setTimeout(() => {
      res.writeHead(answer.status, { 'Content-Type': 'application/json' });
      res.end(typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body));
    }, answer.delayMs || 0);
  });
}

let hookServer = null;

function startHook() {
  return new Promise((resolve, reject) => {
    hookServer = http.createServer(handle);
    hookServer.once('error', reject);
    hookServer.listen(HOOK_PORT, '127.0.0.1', resolve);
  });
}

function stopHook() {
  if (!hookServer) return Promise.resolve();
  const server = hookServer;
  hookServer = null;
  server.closeAllConnections();
  return new Promise((resolve) => server.close(resolve));
}

before(startHook);
after(stopHook);

const hookApp = (opts = {}) => ({ app: APP, ...opts });
const callsOf = (type) => calls.filter((c) => c.body.type === type);

function connectionErrors(client) {
  const seen = [];
  client.connection.bind('error', (e) => seen.push(e));
  return seen;
}

// --- tests -----------------------------------------------------------------------------------

test('every call is signed so that pusher.webhook().isValid() accepts it, and carries the request', T, () =>
  h.withClients(async (pool) => {
    decide = () => ({ status: 200, body: { allow: true } });
    const before = calls.length;
    const client = await pool.connected(hookApp());
    const name = h.uniqueName('private-hooked-');
    const { channel } = await h.subscribe(client, name);
    const other = await pool.connected(hookApp());
    const { channel: otherCh } = await h.subscribe(other, name);
    const got = h.nextEvent(otherCh, 'client-ping');
    assert.ok(channel.trigger('client-ping', { n: 1 }));
    await got;

    const mine = calls.slice(before);
    assert.ok(mine.length >= 5, `expected 2 connections, 2 subscriptions and a client event; got ${mine.length}`);
    for (const call of mine) {
      assert.equal(call.valid, true, `pusher.webhook().isValid() rejected ${JSON.stringify(call.body)}`);
      assert.equal(call.headers['x-compat-hook'], 'yes');
      assert.match(call.headers['webhook-id'], /^msg_[0-9a-f]{32}$/);
      assert.ok(Math.abs(call.body.time_ms - Date.now()) < 60000);
    }
    const connection = mine.find((c) => c.body.type === 'connection_starting' && c.body.data.socket_id === client.connection.socket_id);
    assert.ok(connection, 'no connection_starting for the first client');
    assert.equal(connection.body.data.app_id, String(APP.id));
    assert.equal(connection.body.data.client, 'js');
    assert.equal(connection.body.data.protocol, '7');
    assert.equal(connection.body.data.ip, '127.0.0.1');
    const subscription = mine.find((c) => c.body.type === 'subscription_starting');
    assert.equal(subscription.body.data.channel, name);
    const event = mine.find((c) => c.body.type === 'client_event_sending');
    assert.deepEqual(event.body.data.data, { n: 1 });
    assert.equal(event.body.data.event, 'client-ping');
  }));

test('a refused connection: pusher-js gets error 4009 with the reason and does not reconnect', T, () =>
  h.withClients(async (pool) => {
    decide = (body) => (body.type === 'connection_starting'
      ? { status: 200, body: { allow: false, reason: 'account suspended' } }
      : { status: 200, body: { allow: true } });
    const client = pool.make(hookApp());
    const errors = connectionErrors(client);
    const states = [];
    client.connection.bind('state_change', ({ current }) => states.push(current));
    await h.until(() => client.connection.state === 'disconnected', 'disconnected after the refusal');
    const refusal = errors.find((e) => e.error && e.error.data && e.error.data.code === 4009);
    assert.ok(refusal, `no 4009 error: ${JSON.stringify(errors)}`);
    assert.equal(refusal.error.data.message, 'account suspended');
    await h.sleep(1500);
    assert.equal(client.connection.state, 'disconnected');
    // (pusher-js was already connecting when the listener was bound: any later one is a retry.)
    assert.ok(!states.includes('connecting'), `reconnected: ${states.join(' -> ')}`);
  }));

test('a refused subscription: pusher:subscription_error {type: AuthError, error: reason, status: 403}; the socket stays', T, () =>
  h.withClients(async (pool) => {
    decide = (body) => (body.type === 'subscription_starting' && body.data.channel.includes('vip')
      ? { status: 200, body: { allow: false, reason: 'members only' } }
      : { status: 200, body: { allow: true } });
    const client = await pool.connected(hookApp());
    const name = h.uniqueName('vip-room-');
    const channel = client.subscribe(name);
    const { data } = await h.nextEvent(channel, 'pusher:subscription_error');
    assert.deepEqual(data, { type: 'AuthError', error: 'members only', status: 403 });
    assert.equal(channel.subscribed, false);
    // Nothing of it is left on the server, and the socket keeps working.
    const sdk = h.serverSdk(APP);
    const info = await h.json(sdk.get({ path: `/channels/${name}` }));
    assert.deepEqual(info, { occupied: false });
    await h.subscribe(client, h.uniqueName('open-room-'));
    assert.equal(client.connection.state, 'connected');
  }));

test('a refused client event: pusher-js gets a pusher:error with the reason; nobody gets the event', T, () =>
  h.withClients(async (pool) => {
    decide = (body) => (body.type === 'client_event_sending'
      ? { status: 200, body: { allow: false, reason: 'too loud' } }
      : { status: 200, body: { allow: true } });
    const name = h.uniqueName('private-quiet-');
    const sender = await pool.connected(hookApp());
    const listener = await pool.connected(hookApp());
    const { channel: sCh } = await h.subscribe(sender, name);
    const { channel: lCh } = await h.subscribe(listener, name);
    const leaked = h.record(lCh, 'client-shout');
    const error = h.nextEvent(sender.connection, 'error');
    assert.ok(sCh.trigger('client-shout', { volume: 11 }));
    const { data } = await error;
    assert.equal(data.type, 'PusherError');
    assert.deepEqual(data.data, { code: null, message: 'too loud' });
    await h.sleep(h.QUIET_MS);
    assert.equal(leaked.length, 0, 'the refused event was delivered');
    assert.equal(sender.connection.state, 'connected');
  }));

test('a hook outage: connections close with 4100, pusher-js backs off and reconnects by itself once the hook is back', T, async () => {
  decide = () => ({ status: 200, body: { allow: true } });
  await stopHook();
  try {
    await h.withClients(async (pool) => {
      const client = pool.make(hookApp());
      const errors = connectionErrors(client);
      await h.until(() => errors.some((e) => e.error && e.error.data && e.error.data.code === 4100), 'a 4100 during the outage', 8000);
      assert.notEqual(client.connection.state, 'connected');
      await startHook();
      await h.waitConnected(client, 10000);
      const { channel } = await h.subscribe(client, h.uniqueName('after-outage-'));
      assert.equal(channel.subscribed, true);
    });
  } finally {
    if (!hookServer) await startHook();
  }
});
