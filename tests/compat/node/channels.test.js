'use strict';
// pusher-js against Herald: connection handshake, public, private and cache channels.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = { timeout: 20000 };

test('pusher-js connects and gets a Pusher-format socket_id', T, () =>
  h.withClients(async (pool) => {
    const client = await pool.connected();
    assert.equal(client.connection.state, 'connected');
    assert.match(client.connection.socket_id, /^\d+\.\d+$/);

    const other = await pool.connected();
    assert.notEqual(other.connection.socket_id, client.connection.socket_id, 'socket ids must be unique');
  }));

test('public channel: subscribe and receive events triggered with the server SDK', T, () =>
  h.withClients(async (pool) => {
    const sdk = h.serverSdk();
    const client = await pool.connected();
    const name = h.uniqueName('public-');
    const name2 = h.uniqueName('public-');
    const { channel } = await h.subscribe(client, name);
    const { channel: channel2 } = await h.subscribe(client, name2);
    assert.equal(channel.subscribed, true);

    const got = h.nextEvent(channel, 'greeting');
    const res = await h.json(sdk.trigger(name, 'greeting', { text: 'hello', n: 1 }));
    assert.deepEqual(res, {});
    const { data } = await got;
    assert.deepEqual(data, { text: 'hello', n: 1 });

    // One trigger to several channels reaches each of them.
    const a = h.nextEvent(channel, 'multi');
    const b = h.nextEvent(channel2, 'multi');
    await h.json(sdk.trigger([name, name2], 'multi', 'plain string payload'));
    assert.equal((await a).data, 'plain string payload');
    assert.equal((await b).data, 'plain string payload');

    // After unsubscribing, events are no longer delivered.
    const seen = h.record(channel, 'after-unsubscribe');
    client.unsubscribe(name);
    await h.sleep(200);
    const still = h.nextEvent(channel2, 'after-unsubscribe');
    await h.json(sdk.trigger([name, name2], 'after-unsubscribe', { x: 1 }));
    await still;
    await h.sleep(h.QUIET_MS);
    assert.equal(seen.length, 0, 'unsubscribed channel must not receive events');
  }));

test('private channel: an authorized subscription succeeds and receives events', T, () =>
  h.withClients(async (pool) => {
    const sdk = h.serverSdk();
    const client = await pool.connected();
    const name = h.uniqueName('private-');
    const { channel } = await h.subscribe(client, name);
    assert.equal(channel.subscribed, true);

    const got = h.nextEvent(channel, 'secret-event');
    await h.json(sdk.trigger(name, 'secret-event', { ok: true }));
    assert.deepEqual((await got).data, { ok: true });
  }));

test('private channel: a bad signature gives pusher:subscription_error and the connection stays usable', T, () =>
  h.withClients(async (pool) => {
    const badName = h.uniqueName('private-bad-');
    const goodName = h.uniqueName('private-good-');
    const client = await pool.connected({ badAuth: (channel) => channel === badName });

    const channel = client.subscribe(badName);
    const succeeded = h.record(channel, 'pusher:subscription_succeeded');
    const { data } = await h.nextEvent(channel, 'pusher:subscription_error');
    assert.ok(data && typeof data === 'object', `subscription_error data should be an object, got ${JSON.stringify(data)}`);
    assert.equal(data.type, 'AuthError', `subscription_error data: ${JSON.stringify(data)}`);
    assert.equal(channel.subscribed, false);
    await h.sleep(h.QUIET_MS);
    assert.equal(succeeded.length, 0, 'a refused subscription must not also succeed');

    // The refused channel must not receive events.
    const sdk = h.serverSdk();
    const leaked = h.record(channel, 'leak');
    await h.json(sdk.trigger(badName, 'leak', { x: 1 }));

    // The socket is not closed: the same connection can still subscribe with a good signature.
    assert.equal(client.connection.state, 'connected');
    const { channel: good } = await h.subscribe(client, goodName);
    assert.equal(good.subscribed, true);
    assert.equal(client.connection.state, 'connected');
    assert.equal(leaked.length, 0, 'unauthorized channel received an event');
  }));

test('cache channel: cache_miss when empty, then the last event is replayed to new subscribers', T, () =>
  h.withClients(async (pool) => {
    const sdk = h.serverSdk();
    const name = h.uniqueName('cache-');

    const first = await pool.connected();
    const channel = first.subscribe(name);
    const miss = h.nextEvent(channel, 'pusher:cache_miss');
    await h.nextEvent(channel, 'pusher:subscription_succeeded');
    await miss;

    // Nothing cached yet: the REST API reports cache: null.
    const before = await h.json(sdk.get({ path: `/channels/${name}`, params: { info: 'cache' } }));
    assert.equal(before.occupied, true);
    assert.equal(before.cache, null);

    const live = h.nextEvent(channel, 'price');
    await h.json(sdk.trigger(name, 'price', { v: 1 }));
    assert.deepEqual((await live).data, { v: 1 });
    const live2 = h.nextEvent(channel, 'price');
    await h.json(sdk.trigger(name, 'price', { v: 2 }));
    assert.deepEqual((await live2).data, { v: 2 });

    // A new subscriber gets the last event right after subscribing, and no cache_miss.
    const second = await pool.connected();
    const ch2 = second.subscribe(name);
    const misses = h.record(ch2, 'pusher:cache_miss');
    const replay = h.nextEvent(ch2, 'price');
    await h.nextEvent(ch2, 'pusher:subscription_succeeded');
    assert.deepEqual((await replay).data, { v: 2 });
    await h.sleep(h.QUIET_MS);
    assert.equal(misses.length, 0, 'cache_miss sent although an event was cached');

    const after = await h.json(sdk.get({ path: `/channels/${name}`, params: { info: 'cache' } }));
    assert.equal(after.occupied, true);
    assert.ok(after.cache && typeof after.cache === 'object', `cache: ${JSON.stringify(after.cache)}`);
    assert.equal(after.cache.data, JSON.stringify({ v: 2 }));
    assert.equal(typeof after.cache.ttl, 'number');
    assert.ok(after.cache.ttl > 0);
  }));

test('pusher-js activity check: pusher:ping is answered with pusher:pong and the connection stays up', T, () =>
  h.withClients(async (pool) => {
    // pusher-js pings after min(activityTimeout, server activity_timeout) without traffic and
    // reconnects if no pong arrives within pongTimeout.
    const client = pool.make({ clientOptions: { activityTimeout: 300, pongTimeout: 1500 } });
    await h.waitConnected(client);
    const socketId = client.connection.socket_id;
    const states = [];
    client.connection.bind('state_change', ({ current }) => states.push(current));
    const pongs = [];
    client.connection.bind('message', (m) => {
      if (m.event === 'pusher:pong') pongs.push(m);
    });

    await h.until(() => pongs.length >= 3, 'three pusher:pong replies', h.WAIT_MS);
    assert.equal(client.connection.state, 'connected');
    assert.deepEqual(states, [], `connection changed state: ${states.join(' -> ')}`);
    assert.equal(client.connection.socket_id, socketId, 'the client reconnected');
  }));

test('subscription_count: subscribers of a public channel are told the socket count', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('public-count-');
    const a = await pool.connected();
    const b = await pool.connected();
    const { channel: aCh } = await h.subscribe(a, name);
    await h.until(() => aCh.subscriptionCount === 1, 'subscriptionCount 1');

    const two = h.nextEvent(aCh, 'pusher:subscription_count');
    const { channel: bCh } = await h.subscribe(b, name);
    assert.deepEqual((await two).data, { subscription_count: 2 });
    assert.equal(aCh.subscriptionCount, 2);
    await h.until(() => bCh.subscriptionCount === 2, 'subscriptionCount 2 on the new subscriber');

    const one = h.nextEvent(aCh, 'pusher:subscription_count');
    b.disconnect();
    assert.deepEqual((await one).data, { subscription_count: 1 });
    assert.equal(aCh.subscriptionCount, 1);
  }));

test('private-encrypted channel: events encrypted by the server SDK are decrypted by pusher-js', T, () =>
  h.withClients(async (pool) => {
    const sdk = h.serverSdk();
    const name = h.uniqueName('private-encrypted-');
    const a = await pool.connected();
    const b = await pool.connected();
    const { channel: aCh } = await h.subscribe(a, name);
    const { channel: bCh } = await h.subscribe(b, name);

    const got = h.nextEvent(aCh, 'secret');
    const got2 = h.nextEvent(bCh, 'secret');
    await h.json(sdk.trigger(name, 'secret', { msg: 'only for you', n: 5 }));
    assert.deepEqual((await got).data, { msg: 'only for you', n: 5 });
    assert.deepEqual((await got2).data, { msg: 'only for you', n: 5 });

    // Exclusion works on encrypted channels as well.
    const leaked = h.record(aCh, 'secret2');
    const got3 = h.nextEvent(bCh, 'secret2');
    await h.json(sdk.trigger(name, 'secret2', 'text', { socket_id: a.connection.socket_id }));
    assert.equal((await got3).data, 'text');
    await h.sleep(h.QUIET_MS);
    assert.equal(leaked.length, 0);

    // A raw client event on an encrypted channel (pusher-js refuses to send one, so go under it)
    // must not be relayed.
    const relayed = h.record(bCh, 'client-plain');
    a.send_event('client-plain', { x: 1 }, name);
    const marker = h.nextEvent(bCh, 'marker');
    await h.json(sdk.trigger(name, 'marker', {}));
    await marker;
    await h.sleep(h.QUIET_MS);
    assert.equal(relayed.length, 0, 'client event relayed on a private-encrypted channel');
  }));

test('unicode payloads and every allowed channel-name character survive the round trip', T, () =>
  h.withClients(async (pool) => {
    const sdk = h.serverSdk();
    // Allowed characters: [A-Za-z0-9_\-=@,.;]
    const name = h.uniqueName('public-odd_Name=@,.;-');
    const client = await pool.connected();
    const { channel } = await h.subscribe(client, name);

    const payload = { text: 'héllo wörld ✓ 日本語 🚀', quote: '"\\\n' };
    const got = h.nextEvent(channel, 'unicode');
    await h.json(sdk.trigger(name, 'unicode', payload));
    assert.deepEqual((await got).data, payload);

    const raw = h.nextEvent(channel, 'raw-string');
    await h.json(sdk.trigger(name, 'raw-string', 'ünïcödé, not JSON {'));
    assert.equal((await raw).data, 'ünïcödé, not JSON {');

    const info = await h.json(sdk.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } }));
    assert.deepEqual(info, { occupied: true, subscription_count: 1 });
  }));

test('private-cache channel: client events are relayed but never cached', T, () =>
  h.withClients(async (pool) => {
    const sdk = h.serverSdk();
    const name = h.uniqueName('private-cache-');
    const a = await pool.connected();
    const b = await pool.connected();
    const aCh = a.subscribe(name);
    const aMiss = h.nextEvent(aCh, 'pusher:cache_miss');
    await h.nextEvent(aCh, 'pusher:subscription_succeeded');
    await aMiss;
    const { channel: bCh } = await h.subscribe(b, name);

    const got = h.nextEvent(bCh, 'client-note');
    aCh.trigger('client-note', { from: 'a' });
    assert.deepEqual((await got).data, { from: 'a' });

    // Only the client event has been sent: a newcomer still gets cache_miss.
    const c = await pool.connected();
    const cCh = c.subscribe(name);
    const replayed = h.record(cCh, 'client-note');
    const miss = h.nextEvent(cCh, 'pusher:cache_miss');
    await h.nextEvent(cCh, 'pusher:subscription_succeeded');
    await miss;

    // A server event is cached and replayed.
    await h.json(sdk.trigger(name, 'server-note', { from: 'server' }));
    const d = await pool.connected();
    const dCh = d.subscribe(name);
    const replay = h.nextEvent(dCh, 'server-note');
    await h.nextEvent(dCh, 'pusher:subscription_succeeded');
    assert.deepEqual((await replay).data, { from: 'server' });
    assert.equal(replayed.length, 0);
  }));
