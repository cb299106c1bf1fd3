'use strict';
// The official clients across a Redis Sentinel failover (../../run.sh): a private primary, one
// replica and three redis-sentinel processes monitoring it as `mymaster`, and two Herald nodes
// whose config names no Redis URL, only the sentinels. pusher-js clients connect to node A (and
// one to node B), the `pusher` server SDK triggers and queries through node B. The test kills
// the primary with SIGKILL once the replica has every write (WAIT 1), and the nodes must follow
// the sentinels to the promoted replica without a restart: events triggered through B reach
// node A again, REST queries through B answer with the whole cluster's counts, the clients stay
// connected and subscribed, and no webhook already delivered is sent again.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const h = require('../helpers');
const { receiverLog } = require('../receiver_log');
const redis = require('./redis_tool');

const A = h.PORT;
const B = h.PORT_B;
const env = process.env;
const CONFIG_PATH = env.HERALD_COMPAT_CONFIG;
const RECEIVER = env.WEBHOOK_NODE_URL;
const PRIMARY_PORT = Number(env.REDIS_PRIMARY_PORT);
const PRIMARY_PID = Number(env.REDIS_PRIMARY_PID);
const REPLICA_PORT = Number(env.REDIS_REPLICA_PORT);
const SENTINEL_PORTS = (env.REDIS_SENTINEL_PORTS || '').split(',').filter(Boolean).map(Number);
const MASTER = env.REDIS_SENTINEL_MASTER;
// Without the Sentinel setup this file would test nothing: fail at load instead.
assert.ok(
  B && CONFIG_PATH && RECEIVER && PRIMARY_PORT && PRIMARY_PID && REPLICA_PORT && SENTINEL_PORTS.length === 3 && MASTER,
  'run through tests/compat/run.sh (needs HERALD_PORT_B, HERALD_COMPAT_CONFIG, WEBHOOK_NODE_URL, REDIS_PRIMARY_PORT, '
    + 'REDIS_PRIMARY_PID, REDIS_REPLICA_PORT, REDIS_SENTINEL_PORTS, REDIS_SENTINEL_MASTER)',
);

const CONFIG = JSON.parse(fs.readFileSync(CONFIG_PATH, 'utf8'));
assert.equal(CONFIG.adapter && CONFIG.adapter.driver, 'redis', `${CONFIG_PATH} is not a cluster config`);
assert.equal(CONFIG.adapter.redis.url, undefined, 'a Sentinel config names no Redis URL');
assert.deepEqual(
  CONFIG.database.redis.sentinels.map((s) => s.port).sort(),
  [...SENTINEL_PORTS].sort(),
  'the nodes ask these sentinels',
);
// The webhook app: its `/all` endpoint on the Node receiver gets every channel event.
const APP = CONFIG.app_manager.array.apps.find((a) => String(a.id) === '100002');
const { requests, delivered, waitFor } = receiverLog(RECEIVER);

// From the SIGKILL of the primary, the bound for events through node B to reach node A again
// and for node B's REST queries to answer right.
const FAILOVER_BOUND_MS = 20000;
// How often a probe event is triggered while the cluster has no Redis.
const PROBE_EVERY_MS = 300;
// How long a silent node may take to be found dead (the config's node_timeout_ms, 8 s by
// default, plus two heartbeats and a second): the test watches that long after the cluster
// came back that neither node was taken for dead over the failover (the heartbeats of both
// stopped with the primary).
const REDIS = CONFIG.adapter.redis || {};
const DEAD_NODE_BOUND_MS = (REDIS.node_timeout_ms || 8000) + 2 * (REDIS.heartbeat_interval_ms || 1000) + 1000;
// Statuses a trigger may get while the primary is gone.
const TOLERATED = new Set([200, 500, 503]);

const sdkB = () => h.serverSdk(APP, B);

function memberIds(channel) {
  const ids = [];
  channel.members.each((m) => ids.push(m.id));
  return ids.sort();
}

// The status of a `pusher` SDK call: the response's, or the RequestError's (the SDK rejects
// non-2xx answers), or the error's message when there was no answer at all.
async function statusOf(call) {
  try {
    return (await call()).status;
  } catch (err) {
    return err.status || `no answer (${err.message})`;
  }
}

/**
 * Calls `send(n)` every PROBE_EVERY_MS (without waiting for the previous call) until `channel`
 * emits `event` with a `{n}` one of them sent, or `deadline`. Resolves with the time it was
 * heard (null when the deadline passed) and the statuses the calls got, once every call settled.
 */
async function untilDelivered(send, channel, event, deadline) {
  let heardAt = null;
  const handler = (data) => {
    if (heardAt === null && data && Number.isInteger(data.n)) heardAt = Date.now();
  };
  channel.bind(event, handler);
  const calls = [];
  try {
    for (let n = 0; heardAt === null && Date.now() < deadline; n += 1) {
      calls.push(send(n));
      const next = Date.now() + PROBE_EVERY_MS;
      while (heardAt === null && Date.now() < next) await h.sleep(10);
    }
  } finally {
    channel.unbind(event, handler);
  }
  const statuses = await Promise.all(calls);
  return { heardAt, statuses };
}

function tally(statuses) {
  const counts = {};
  for (const s of statuses) counts[s] = (counts[s] || 0) + 1;
  return JSON.stringify(counts);
}

// Polls a REST GET through node B until it answers 200 and `done(body)` holds, or `deadline`.
async function restUntil(path, params, done, deadline, what) {
  let last;
  for (;;) {
    try {
      const res = await sdkB().get({ path, params });
      last = res.status === 200 ? await res.json() : `${res.status} ${await res.text()}`;
      if (res.status === 200 && done(last)) return last;
    } catch (err) {
      last = `${err.status || ''} ${err.message}`;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within the failover bound; last ${JSON.stringify(last)}`);
    await h.sleep(100);
  }
}

// The occupancy and membership webhooks of `channel` as delivered to /all (de-duplicated on
// Webhook-Id; client_event left out), one "name user_id" string each.
async function hookEvents(channel) {
  return (await delivered('/all', (c) => c === channel))
    .filter((e) => e.name !== 'client_event')
    .map((e) => `${e.name} ${e.user_id || ''}`.trim());
}

// How many `name` events for `channel` /all received, not de-duplicated (one resent under the
// same Webhook-Id counts twice).
async function rawCount(channel, name) {
  let count = 0;
  for (const r of await requests('/all')) {
    count += r.events.filter((e) => e.channel === channel && e.name === name).length;
  }
  return count;
}

test('Sentinel failover: after a SIGKILL of the primary, events through node B reach pusher-js on node A again, REST answers right through B, no webhook is sent twice', { timeout: 90000 }, (t) =>
  h.withClients(async (pool) => {
    assert.equal(await redis.primaryPort(SENTINEL_PORTS[0], MASTER), PRIMARY_PORT, 'the sentinels name the primary');
    const pub = h.uniqueName('sentinel-pub-');
    const presence = h.uniqueName('presence-sentinel-');

    // Before: alice on node A in both channels, bob on node B in both; an event triggered
    // through node B reaches alice on node A.
    const alice = await pool.connected({ app: APP, port: A, presence: { user_id: 'alice', user_info: { name: 'Alice' } } });
    const bob = await pool.connected({ app: APP, port: B, presence: { user_id: 'bob', user_info: { name: 'Bob' } } });
    const { channel: alicePub } = await h.subscribe(alice, pub);
    const { channel: alicePresence } = await h.subscribe(alice, presence);
    await h.subscribe(bob, pub);
    const { channel: bobPresence } = await h.subscribe(bob, presence);
    await h.until(() => memberIds(alicePresence).length === 2, 'bob in alice\'s member list');
    assert.deepEqual(memberIds(alicePresence), ['alice', 'bob']);

    const before = h.nextEvent(alicePub, 'greet');
    assert.equal((await sdkB().trigger(pub, 'greet', { phase: 'before' })).status, 200);
    assert.deepEqual((await before).data, { phase: 'before' });
    const beforePresence = h.nextEvent(alicePresence, 'greet');
    assert.equal((await sdkB().trigger(presence, 'greet', { phase: 'before' })).status, 200);
    assert.deepEqual((await beforePresence).data, { phase: 'before' });

    await waitFor('/all', (c) => c === pub, (ev) => ev.length >= 1, 'channel_occupied of the public channel');
    await waitFor('/all', (c) => c === presence, (ev) => ev.length >= 3, 'channel_occupied and two member_added');
    assert.deepEqual(await hookEvents(pub), ['channel_occupied']);
    assert.deepEqual((await hookEvents(presence)).sort(), ['channel_occupied', 'member_added alice', 'member_added bob']);
    // Herald records a delivery in Redis after the receiver's answer: give it that moment, so
    // the replica gets it with everything else.
    await h.sleep(h.QUIET_MS);

    const aliceSocket = alice.connection.socket_id;
    const bobSocket = bob.connection.socket_id;
    const aliceStates = [];
    const bobStates = [];
    alice.connection.bind('state_change', ({ current }) => aliceStates.push(current));
    bob.connection.bind('state_change', ({ current }) => bobStates.push(current));
    const removed = h.record(alicePresence, 'pusher:member_removed');
    const removedOnB = h.record(bobPresence, 'pusher:member_removed');

    // The replica has every write, then the primary dies without a word.
    const acked = await redis.command(PRIMARY_PORT, ['WAIT', '1', '5000'], 7000);
    assert.equal(acked, 1, 'the replica acknowledged every write before the primary is killed');
    process.kill(PRIMARY_PID, 'SIGKILL');
    const killedAt = Date.now();
    const deadline = killedAt + FAILOVER_BOUND_MS;

    // Events triggered through node B reach alice on node A again.
    const probe = await untilDelivered(
      (n) => statusOf(() => sdkB().trigger(pub, 'probe', { n })),
      alicePub,
      'probe',
      deadline,
    );
    const toEvent = probe.heardAt === null ? null : probe.heardAt - killedAt;
    t.diagnostic(`SIGKILL of the primary to a cross-node event on node A: ${toEvent === null ? 'never' : `${toEvent} ms`} (bound ${FAILOVER_BOUND_MS} ms); trigger statuses through node B: ${tally(probe.statuses)}`);
    assert.notEqual(probe.heardAt, null, `no event triggered through node B reached node A within ${FAILOVER_BOUND_MS} ms of the SIGKILL; statuses ${tally(probe.statuses)}`);
    const refused = probe.statuses.filter((s) => !TOLERATED.has(s));
    assert.deepEqual(refused, [], 'trigger answers other than 200, 500 or 503 during the failover');

    // The presence channel too, and a client event the other way, from node A to bob on node B.
    const presenceProbe = await untilDelivered(
      (n) => statusOf(() => sdkB().trigger(presence, 'probe', { n })),
      alicePresence,
      'probe',
      deadline,
    );
    assert.notEqual(presenceProbe.heardAt, null, `no presence event through node B within the bound; ${tally(presenceProbe.statuses)}`);
    const clientProbe = await untilDelivered(
      async (n) => (alicePresence.trigger('client-probe', { n }) ? 'sent' : 'not sent'),
      bobPresence,
      'client-probe',
      deadline,
    );
    assert.notEqual(clientProbe.heardAt, null, 'no client event from node A reached node B within the bound');

    // REST through node B: the whole cluster's counts.
    const info = await restUntil(`/channels/${pub}`, { info: 'subscription_count' },
      (b) => b.subscription_count === 2, deadline, 'the public channel\'s info');
    assert.deepEqual(info, { occupied: true, subscription_count: 2 });
    const presenceInfo = await restUntil(`/channels/${presence}`, { info: 'user_count' },
      (b) => b.user_count === 2, deadline, 'the presence channel\'s info');
    assert.deepEqual(presenceInfo, { occupied: true, user_count: 2 });
    const users = await restUntil(`/channels/${presence}/users`, {},
      (b) => Array.isArray(b.users) && b.users.length === 2, deadline, 'the presence users');
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['alice', 'bob']);
    t.diagnostic(`SIGKILL of the primary to REST answering right through node B: ${Date.now() - killedAt} ms`);

    assert.equal(await redis.primaryPort(SENTINEL_PORTS[0], MASTER), REPLICA_PORT, 'the sentinels promoted the replica');

    // Webhooks flow after the failover: a new channel on node A is occupied, once. Bounded
    // beyond the receiver's usual wait: a webhook round holding a command sent to the dead
    // primary first waits for that command's reconnection attempts to give up.
    const fresh = h.uniqueName('sentinel-after-');
    await h.subscribe(alice, fresh);
    await waitFor('/all', (c) => c === fresh, (ev) => ev.length >= 1, 'channel_occupied after the failover', 15000);
    const freshAt = (await requests('/all')).find((r) => r.events.some((e) => e.channel === fresh)).receivedAt;
    t.diagnostic(`SIGKILL of the primary to the webhook of a channel occupied after the failover: ${freshAt - killedAt} ms`);

    // Past the bound in which a dead node is found (node_timeout_ms, two heartbeats and a
    // second), counted from the first event relayed after the failover, nobody was taken for
    // dead: alice and bob never noticed anything, the same connections, the same members,
    // nobody removed.
    await h.sleep(Math.max(0, probe.heardAt + DEAD_NODE_BOUND_MS - Date.now()));
    for (const [who, client, id, changes] of [['alice', alice, aliceSocket, aliceStates], ['bob', bob, bobSocket, bobStates]]) {
      assert.equal(client.connection.state, 'connected', `${who}'s connection`);
      assert.equal(client.connection.socket_id, id, `${who} was reconnected`);
      assert.deepEqual(changes, [], `${who}'s connection changed state during the failover`);
    }
    assert.deepEqual(memberIds(alicePresence), ['alice', 'bob']);
    assert.deepEqual(memberIds(bobPresence), ['alice', 'bob']);
    assert.deepEqual([...removed, ...removedOnB].map((e) => e.data), [], 'a member_removed for a member who never left');
    const later = await h.json(sdkB().get({ path: `/channels/${presence}/users` }));
    assert.deepEqual(later.users.map((u) => u.id).sort(), ['alice', 'bob'], 'the presence users, later');
    const laterInfo = await h.json(sdkB().get({ path: `/channels/${pub}`, params: { info: 'subscription_count' } }));
    assert.deepEqual(laterInfo, { occupied: true, subscription_count: 2 }, 'the public channel, later');

    // Nothing already delivered was sent again, not even under the same Webhook-Id, and nothing
    // was vacated or removed.
    assert.deepEqual(await hookEvents(fresh), ['channel_occupied']);
    assert.deepEqual(await hookEvents(pub), ['channel_occupied'], 'the public channel\'s webhooks');
    assert.equal(await rawCount(pub, 'channel_occupied'), 1, 'channel_occupied events of the public channel received by /all');
    assert.deepEqual((await hookEvents(presence)).sort(), ['channel_occupied', 'member_added alice', 'member_added bob'],
      'the presence channel\'s webhooks');
    assert.equal(await rawCount(presence, 'channel_occupied'), 1, 'channel_occupied events of the presence channel received by /all');
    assert.equal(await rawCount(presence, 'member_added'), 2, 'member_added events of the presence channel received by /all');
  }));
