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
