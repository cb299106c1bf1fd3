'use strict';
// The official clients against a two-node Herald cluster (../../run.sh starts a private
// redis-server and nodes A and B on it): pusher-js clients connect to node A (and some to node
// B), and the `pusher` server SDK triggers and queries through node B. What must hold is that
// the two nodes behave as one server.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const h = require('../helpers');
const { receiverLog } = require('../receiver_log');

const T = { timeout: 30000 };

const A = h.PORT;
const B = h.PORT_B;
const CONFIG_PATH = process.env.HERALD_COMPAT_CONFIG;
const RECEIVER = process.env.WEBHOOK_NODE_URL;
// Without the second node and the receiver this suite would test one node only: fail instead.
assert.ok(B && CONFIG_PATH && RECEIVER, 'run through tests/compat/run.sh (needs HERALD_PORT_B, HERALD_COMPAT_CONFIG, WEBHOOK_NODE_URL)');

const CONFIG = JSON.parse(fs.readFileSync(CONFIG_PATH, 'utf8'));
assert.equal(CONFIG.adapter && CONFIG.adapter.driver, 'redis', `${CONFIG_PATH} is not a cluster config`);
const WEBHOOK_APP = CONFIG.app_manager.array.apps.find((a) => String(a.id) === '100002');
const { delivered, waitFor } = receiverLog(RECEIVER);

// The server SDK talks to node B only.
const sdkB = () => h.serverSdk(undefined, B);

function memberIds(channel) {
  const ids = [];
  channel.members.each((m) => ids.push(m.id));
  return ids.sort();
}

// Polls a REST GET through node B until `done(body)` holds; returns the last body.
async function pollB(path, params, done, what) {
  let body;
  const deadline = Date.now() + h.WAIT_MS;
  for (;;) {
    body = await h.json(sdkB().get({ path, params }));
    if (done(body)) return body;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last ${JSON.stringify(body)}`);
    await h.sleep(50);
  }
}

test('an event triggered through node B reaches subscribers on both nodes, socket_id excluded', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('cluster-pub-');
    const onA = await pool.connected({ port: A });
    const onB = await pool.connected({ port: B });
    const excluded = await pool.connected({ port: A });
    const { channel: aCh } = await h.subscribe(onA, name);
    const { channel: bCh } = await h.subscribe(onB, name);
    const { channel: xCh } = await h.subscribe(excluded, name);
    const leaked = h.record(xCh, 'greet');

    const gotA = h.nextEvent(aCh, 'greet');
    const gotB = h.nextEvent(bCh, 'greet');
    const res = await sdkB().trigger(name, 'greet', { n: 1 }, { socket_id: excluded.connection.socket_id });
    assert.equal(res.status, 200);
    assert.deepEqual((await gotA).data, { n: 1 });
    assert.deepEqual((await gotB).data, { n: 1 });

    // Two triggers that did not overlap arrive in that order on node A.
    const order = h.record(aCh, 'seq');
    for (let i = 0; i < 20; i += 1) {
      assert.equal((await sdkB().trigger(name, 'seq', { i })).status, 200);
    }
    await h.until(() => order.length === 20, '20 seq events on node A');
    assert.deepEqual(order.map((e) => e.data.i), [...Array(20).keys()]);
    await h.sleep(h.QUIET_MS);
    assert.equal(order.length, 20, 'an event arrived twice');
    assert.equal(leaked.length, 0, 'the excluded socket got the event');
  }));

test('presence across nodes: one member list, member events on the other node, REST users from node B', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('presence-cluster-');
    const alice = await pool.connected({ port: A, presence: { user_id: 'alice', user_info: { name: 'Alice' } } });
    const { channel: aCh } = await h.subscribe(alice, name);
    const added = h.nextEvent(aCh, 'pusher:member_added');

    const bob = await pool.connected({ port: B, presence: { user_id: 'bob', user_info: { name: 'Bob' } } });
    const { channel: bCh } = await h.subscribe(bob, name);
    assert.deepEqual(memberIds(bCh), ['alice', 'bob'], "bob's list on node B includes alice from node A");
    assert.deepEqual(bCh.members.get('alice').info, { name: 'Alice' });
    assert.equal((await added).data.id, 'bob');
    assert.deepEqual(memberIds(aCh), ['alice', 'bob']);

    // bob's second socket, on node A, is the same member: no member_added for it.
    const extraAdds = h.record(aCh, 'pusher:member_added');
    const bob2 = await pool.connected({ port: A, presence: { user_id: 'bob' } });
    await h.subscribe(bob2, name);

    const users = await h.json(sdkB().get({ path: `/channels/${name}/users` }));
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['alice', 'bob']);
    const info = await h.json(sdkB().get({ path: `/channels/${name}`, params: { info: 'user_count,subscription_count' } }));
    assert.deepEqual(info, { occupied: true, user_count: 2, subscription_count: 3 });

    // One of bob's two sockets leaves: he stays; the other leaves: alice is told, across nodes.
    const removed = h.nextEvent(aCh, 'pusher:member_removed');
    bob2.disconnect();
    await pollB(`/channels/${name}`, { info: 'subscription_count' }, (b) => b.subscription_count === 2, 'subscription_count 2');
    bob.disconnect();
    assert.equal((await removed).data.id, 'bob');
    assert.deepEqual(memberIds(aCh), ['alice']);
    assert.equal(extraAdds.length, 0, "bob's second socket announced him again");
    await pollB(`/channels/${name}`, { info: 'user_count' }, (b) => b.user_count === 1, 'user_count 1');
  }));

test('client events sent on node A reach a subscriber on node B, with user_id, and are not echoed', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('presence-cluster-client-');
    const sender = await pool.connected({ port: A, presence: { user_id: 'sender' } });
    const receiver = await pool.connected({ port: B, presence: { user_id: 'receiver' } });
    const { channel: sCh } = await h.subscribe(sender, name);
    const { channel: rCh } = await h.subscribe(receiver, name);
    const echo = h.record(sCh, 'client-note');

    const got = h.nextEvent(rCh, 'client-note');
    assert.ok(sCh.trigger('client-note', { text: 'across' }));
    const { data, metadata } = await got;
    assert.deepEqual(data, { text: 'across' });
    assert.equal(metadata.user_id, 'sender');
    await h.sleep(h.QUIET_MS);
    assert.equal(echo.length, 0, 'the sender got its own client event');
  }));

test('channel queries through node B count the subscribers of both nodes', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('public-cluster-query-');
    const a1 = await pool.connected({ port: A });
    const a2 = await pool.connected({ port: A });
    const b1 = await pool.connected({ port: B });
    for (const c of [a1, a2, b1]) await h.subscribe(c, name);

    const list = await h.json(sdkB().get({ path: '/channels', params: { filter_by_prefix: 'public-cluster-query-', info: 'subscription_count' } }));
    assert.deepEqual(list.channels[name], { subscription_count: 3 });
    const one = await h.json(sdkB().get({ path: `/channels/${name}`, params: { info: 'subscription_count' } }));
    assert.deepEqual(one, { occupied: true, subscription_count: 3 });

    a1.disconnect();
    a2.disconnect();
    b1.disconnect();
    await pollB(`/channels/${name}`, {}, (b) => b.occupied === false, 'occupied false');
  }));

test('subscription_count events count the subscribers of both nodes', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('public-cluster-count-');
    const a = await pool.connected({ port: A });
    const b = await pool.connected({ port: B });
    const { channel: aCh } = await h.subscribe(a, name);
    await h.until(() => aCh.subscriptionCount === 1, 'subscriptionCount 1 on node A');
    await h.subscribe(b, name);
    await h.until(() => aCh.subscriptionCount === 2, 'subscriptionCount 2 on node A after a node B subscriber');
    b.disconnect();
    await h.until(() => aCh.subscriptionCount === 1, 'subscriptionCount back to 1 on node A');
  }));

test('terminateUserConnections through node B closes the user\'s sockets on node A', T, () =>
  h.withClients(async (pool) => {
    const userId = h.uniqueName('cluster-doomed-');
    const victim = pool.make({ port: A, user: { id: userId } });
    await h.waitConnected(victim);
    victim.signin();
    await h.until(
      () => victim.user.serverToUserChannel && victim.user.serverToUserChannel.subscribed,
      'sign-in and the #server-to-user- subscription on node A',
    );
    const bystander = await pool.connected({ port: A });

    // sendToUser through node B reaches the signed-in socket on node A first.
    const note = h.nextEvent(victim.user, 'notice');
    await h.json(sdkB().sendToUser(userId, 'notice', { via: 'B' }));
    assert.deepEqual((await note).data, { via: 'B' });

    assert.deepEqual(await h.json(sdkB().terminateUserConnections(userId)), {});
    await h.until(() => victim.connection.state === 'disconnected', 'the victim on node A disconnected');
    await h.sleep(h.QUIET_MS);
    assert.equal(victim.connection.state, 'disconnected', 'the victim reconnected');
    assert.equal(bystander.connection.state, 'connected');
  }));

test('cache channel: the last event triggered through node B is replayed to a subscriber on node A', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('cache-cluster-');
    const warm = await pool.connected({ port: B });
    await h.subscribe(warm, name);
    assert.equal((await sdkB().trigger(name, 'state', { v: 1 })).status, 200);
    assert.equal((await sdkB().trigger(name, 'state', { v: 2 })).status, 200);

    const late = await pool.connected({ port: A });
    const channel = late.subscribe(name);
    const { data } = await h.nextEvent(channel, 'state');
    assert.deepEqual(data, { v: 2 });
  }));

test('webhooks: subscribers arriving and leaving on both nodes give one channel_occupied and one channel_vacated, validated by pusher.webhook() (and by LiveKit\'s WebhookReceiver on the JWT endpoint)', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('wh-cluster-');
    const app = { app: WEBHOOK_APP };
    const clients = [];
    for (const port of [A, B, A, B]) clients.push(await pool.connected({ ...app, port }));
    await Promise.all(clients.map((c) => h.subscribe(c, name)));
    await waitFor('/all', (c) => c === name, (ev) => ev.some((e) => e.name === 'channel_occupied'), 'channel_occupied');
    for (const c of clients) c.unsubscribe(name);
    await waitFor('/all', (c) => c === name, (ev) => ev.some((e) => e.name === 'channel_vacated'), 'channel_vacated');
    await h.sleep(h.QUIET_MS);
    assert.deepEqual(await delivered('/all', (c) => c === name), [
      { name: 'channel_occupied', channel: name },
      { name: 'channel_vacated', channel: name },
    ]);
    // The cluster's stream delivery signs the JWT endpoint's requests too; the receiver checked
    // each with livekit-server-sdk's WebhookReceiver (delivered() fails on one it refused).
    await waitFor('/jwt', (c) => c === name, (ev) => ev.some((e) => e.name === 'channel_vacated'), 'channel_vacated on /jwt');
    assert.deepEqual(await delivered('/jwt', (c) => c === name), [
      { name: 'channel_occupied', channel: name },
      { name: 'channel_vacated', channel: name },
    ]);
  }));
