'use strict';
// Watchlist events across the cluster (../../run.sh): the watcher's pusher-js client on node A,
// the watched users' pusher-js clients on node B (and on node A), and a third node C that the
// last test kills with SIGKILL (run.sh starts it and passes HERALD_PORT_C / HERALD_PID_C). A
// user is online once, whatever the number of signed-in connections and nodes, and offline only
// after the last one is gone, even when that one's node died without a word.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../helpers');
const w = require('../watchlist_util');

const T = { timeout: 30000 };

const A = h.PORT;
const B = h.PORT_B;
const C = process.env.HERALD_PORT_C ? Number(process.env.HERALD_PORT_C) : undefined;
const PID_C = process.env.HERALD_PID_C ? Number(process.env.HERALD_PID_C) : undefined;
assert.ok(B && C && PID_C, 'run through tests/compat/run.sh (needs HERALD_PORT_B, HERALD_PORT_C, HERALD_PID_C)');
assert.equal(w.CONFIG.adapter && w.CONFIG.adapter.driver, 'redis', 'not a cluster config');

// How long a dead node may take to be noticed: its heartbeat must be older than node_timeout_ms
// (8 s unless the config says otherwise), found by a survivor's next check (one heartbeat), and
// its sockets reaped; plus slack for a debug build.
const REDIS = w.CONFIG.adapter.redis || {};
const NODE_TIMEOUT_MS = REDIS.node_timeout_ms || 8000;
const HEARTBEAT_MS = REDIS.heartbeat_interval_ms || 1000;
const DEAD_NODE_BOUND_MS = NODE_TIMEOUT_MS + 2 * HEARTBEAT_MS + 1000;

test('cluster watchlist: a watched user online on node B is in the initial online frame of a watcher on node A', T, () =>
  h.withClients(async (pool) => {
    const bob = h.uniqueName('wlc-bob-');
    const carol = h.uniqueName('wlc-carol-'); // never online
    const num = Number(String(Date.now()).slice(-9)) + 3;
    await w.signedIn(pool, { port: B, id: bob });
    await w.signedIn(pool, { port: B, id: num });

    const alice = await w.signedIn(pool, { port: A, id: h.uniqueName('wlc-alice-'), watchlist: [carol, bob, num] });
    await w.expectInitial(alice, [bob, String(num)]);
    // And a watcher on node B sees the same.
    const erin = await w.signedIn(pool, { port: B, id: h.uniqueName('wlc-erin-'), watchlist: [bob, carol] });
    await w.expectInitial(erin, [bob]);

    const dave = await w.signedIn(pool, { port: A, id: h.uniqueName('wlc-dave-'), watchlist: [carol] });
    await w.expectNoFrames(dave, 'a watchlist of offline users');
  }));

test('cluster watchlist: a watcher on node A gets online when the watched user signs in on node B, once for a second connection on node A', T, () =>
  h.withClients(async (pool) => {
    const bob = h.uniqueName('wlc-bob-');
    const alice = await w.signedIn(pool, { port: A, id: h.uniqueName('wlc-alice-'), watchlist: [bob] });
    await w.expectNoFrames(alice, 'before bob is online');

    await w.signedIn(pool, { port: B, id: bob });
    await w.expectIds(alice, 'online', [bob]);
    await w.signedIn(pool, { port: A, id: bob });
    await w.signedIn(pool, { port: B, id: bob });
    await h.sleep(h.QUIET_MS);
    assert.deepEqual(w.ids(alice.online), [bob], 'bob announced again for a second connection');
    assert.deepEqual(alice.offline, []);
    assert.equal(alice.frames.length, 1);
    w.assertWellFormed(alice);
  }));

test('cluster watchlist: offline only after the last of two connections on two nodes (A and B) closes, for watchers on both nodes', T, () =>
  h.withClients(async (pool) => {
    const bob = h.uniqueName('wlc-bob-');
    const onA = await w.signedIn(pool, { port: A, id: bob });
    const onB = await w.signedIn(pool, { port: B, id: bob });
    const alice = await w.signedIn(pool, { port: A, id: h.uniqueName('wlc-alice-'), watchlist: [bob] });
    const erin = await w.signedIn(pool, { port: B, id: h.uniqueName('wlc-erin-'), watchlist: [bob] });
    await w.expectInitial(alice, [bob]);
    await w.expectInitial(erin, [bob]);

    onB.client.disconnect();
    await h.sleep(h.QUIET_MS);
    assert.deepEqual(alice.offline, [], 'offline on node A while bob was still signed in on node A');
    assert.deepEqual(erin.offline, [], 'offline on node B while bob was still signed in on node A');

    onA.client.disconnect();
    await w.expectIds(alice, 'offline', [bob]);
    await w.expectIds(erin, 'offline', [bob]);

    // The other order: the last connection is the one on node B.
    const again = await w.signedIn(pool, { port: B, id: bob });
    await w.expectIds(alice, 'online', [bob, bob]);
    const againA = await w.signedIn(pool, { port: A, id: bob });
    againA.client.disconnect();
    await h.sleep(h.QUIET_MS);
    assert.deepEqual(w.ids(alice.offline), [bob], 'offline while bob was still signed in on node B');
    again.client.disconnect();
    await w.expectIds(alice, 'offline', [bob, bob]);
    assert.deepEqual(w.ids(alice.online), [bob, bob]);
    w.assertWellFormed(alice);
    w.assertWellFormed(erin);
  }));

test('cluster watchlist: the users of a node killed with SIGKILL go offline for a watcher on a survivor (a user also on node A stays online)', { timeout: 60000 }, (t) =>
  h.withClients(async (pool) => {
    const bob = h.uniqueName('wlc-bob-'); // only on node C
    const dave = h.uniqueName('wlc-dave-'); // on node C and on node A
    const onC = [
      await w.signedIn(pool, { port: C, id: bob }),
      await w.signedIn(pool, { port: C, id: bob }),
      await w.signedIn(pool, { port: C, id: dave }),
    ];
    await w.signedIn(pool, { port: A, id: dave });
    const alice = await w.signedIn(pool, { port: A, id: h.uniqueName('wlc-alice-'), watchlist: [bob, dave] });
    const erin = await w.signedIn(pool, { port: B, id: h.uniqueName('wlc-erin-'), watchlist: [bob] });
    await w.expectInitial(alice, [bob, dave]);
    await w.expectInitial(erin, [bob]);

    const killedAt = Date.now();
    process.kill(PID_C, 'SIGKILL');
    // Node C's clients lost their socket; stop them before pusher-js retries node C.
    await h.until(() => onC.every((r) => r.client.connection.state !== 'connected'), 'node C\'s clients to notice', 5000);
    for (const r of onC) r.client.disconnect();

    await h.until(() => alice.offline.length > 0, `bob offline on node A within ${DEAD_NODE_BOUND_MS} ms of node C's SIGKILL`, DEAD_NODE_BOUND_MS);
    const took = Date.now() - killedAt;
    await h.until(() => erin.offline.length > 0, 'bob offline on node B', 2000);
    await h.sleep(h.QUIET_MS);
    t.diagnostic(`bob went offline ${took} ms after node C was killed`);
    assert.deepEqual(w.ids(alice.offline), [bob], 'dave (still signed in on node A) went offline, or bob twice');
    assert.deepEqual(w.ids(erin.offline), [bob]);
    assert.deepEqual(w.ids(alice.online).sort(), [bob, dave].sort(), 'online events after the kill');
    w.assertWellFormed(alice);
    w.assertWellFormed(erin);
  }));
