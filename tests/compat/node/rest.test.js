'use strict';
// The `pusher` Node server SDK against Herald's REST API, observed through real pusher-js clients.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = { timeout: 20000 };

test('trigger with socket_id excludes that socket only', T, () =>
  h.withClients(async (pool) => {
    const sdk = h.serverSdk();
    const name = h.uniqueName('public-excl-');
    const excluded = await pool.connected();
    const other = await pool.connected();
    const { channel: exCh } = await h.subscribe(excluded, name);
    const { channel: otherCh } = await h.subscribe(other, name);

    const leaked = h.record(exCh, 'update');
    const got = h.nextEvent(otherCh, 'update');
    const res = await h.json(sdk.trigger(name, 'update', { v: 42 }, { socket_id: excluded.connection.socket_id }));
    assert.deepEqual(res, {});
    assert.deepEqual((await got).data, { v: 42 });

    // Without socket_id both get the next one; the excluded socket never saw the first.
    const both = h.nextEvent(exCh, 'update');
    await h.json(sdk.trigger(name, 'update', { v: 43 }));
    assert.deepEqual((await both).data, { v: 43 });
    await h.sleep(h.QUIET_MS);
    assert.deepEqual(leaked.map((e) => e.data), [{ v: 43 }], 'excluded socket received the excluded event');
  }));

test('trigger with info returns user_count and subscription_count per channel', T, () =>
  h.withClients(async (pool) => {
    const sdk = h.serverSdk();
    const pres = h.uniqueName('presence-info-');
    const pub = h.uniqueName('public-info-');
    const a = await pool.connected({ presence: { user_id: 'u1' } });
    const b = await pool.connected({ presence: { user_id: 'u1' } });
    await h.subscribe(a, pres);
    await h.subscribe(b, pres);
    await h.subscribe(a, pub);

    const res = await h.json(sdk.trigger([pres, pub], 'ping', {}, { info: 'user_count,subscription_count' }));
    assert.deepEqual(res, {
      channels: {
        [pres]: { user_count: 1, subscription_count: 2 },
        [pub]: { subscription_count: 1 },
      },
    });
  }));

test('triggerBatch delivers every event of the batch', T, () =>
  h.withClients(async (pool) => {
    const sdk = h.serverSdk();
    const c1 = h.uniqueName('public-batch-');
    const c2 = h.uniqueName('private-batch-');
    const client = await pool.connected();
    const other = await pool.connected();
    const { channel: ch1 } = await h.subscribe(client, c1);
    const { channel: ch2 } = await h.subscribe(client, c2);
    const { channel: otherCh1 } = await h.subscribe(other, c1);

    const e1 = h.nextEvent(ch1, 'first');
    const e2 = h.nextEvent(ch2, 'second');
    const e3 = h.nextEvent(ch1, 'third');
    const otherGot = h.nextEvent(otherCh1, 'third');
    const excludedSeen = h.record(ch1, 'fourth');
    const fourthAtOther = h.nextEvent(otherCh1, 'fourth');
    const res = await h.json(
      sdk.triggerBatch([
        { channel: c1, name: 'first', data: { n: 1 } },
        { channel: c2, name: 'second', data: { n: 2 } },
        { channel: c1, name: 'third', data: 'three' },
        { channel: c1, name: 'fourth', data: { n: 4 }, socket_id: client.connection.socket_id },
      ]),
    );
    assert.deepEqual(res, {});
    assert.deepEqual((await e1).data, { n: 1 });
    assert.deepEqual((await e2).data, { n: 2 });
    assert.equal((await e3).data, 'three');
    assert.equal((await otherGot).data, 'three');
    assert.deepEqual((await fourthAtOther).data, { n: 4 });
    await h.sleep(h.QUIET_MS);
    assert.equal(excludedSeen.length, 0, 'batch item socket_id exclusion ignored');
  }));

test('triggerBatch with info returns attributes per item, in order', T, () =>
  h.withClients(async (pool) => {
    const sdk = h.serverSdk();
    const pres = h.uniqueName('presence-binfo-');
    const pub = h.uniqueName('public-binfo-');
    const client = await pool.connected({ presence: { user_id: 'batcher' } });
    await h.subscribe(client, pres);
    await h.subscribe(client, pub);

    const res = await h.json(
      sdk.triggerBatch([
        { channel: pres, name: 'a', data: '1', info: 'user_count,subscription_count' },
        { channel: pub, name: 'b', data: '2' },
        { channel: pub, name: 'c', data: '3', info: 'subscription_count' },
      ]),
    );
    assert.deepEqual(res, {
      batch: [{ user_count: 1, subscription_count: 1 }, {}, { subscription_count: 1 }],
    });
  }));

test('channel queries: /channels, /channels/NAME and /channels/NAME/users', T, () =>
  h.withClients(async (pool) => {
    const sdk = h.serverSdk();
    const pres = h.uniqueName('presence-query-');
    const pub = h.uniqueName('public-query-');
    const u1a = await pool.connected({ presence: { user_id: 'q1', user_info: { name: 'One' } } });
    const u1b = await pool.connected({ presence: { user_id: 'q1', user_info: { name: 'One' } } });
    const u2 = await pool.connected({ presence: { user_id: 'q2' } });
    await h.subscribe(u1a, pres);
    await h.subscribe(u1b, pres);
    await h.subscribe(u2, pres);
    await h.subscribe(u2, pub);

    // All occupied presence channels, with user_count.
    const list = await h.json(sdk.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } }));
    assert.ok(list.channels && typeof list.channels === 'object');
    assert.deepEqual(list.channels[pres], { user_count: 2 });
    for (const name of Object.keys(list.channels)) {
      assert.ok(name.startsWith('presence-'), `filter_by_prefix let ${name} through`);
    }

    // Without info each channel maps to {}; unfiltered lists include public channels.
    const all = await h.json(sdk.get({ path: '/channels' }));
    assert.deepEqual(all.channels[pub], {});
    assert.deepEqual(all.channels[pres], {});

    // subscription_count in the list, for any prefix.
    const pubList = await h.json(sdk.get({ path: '/channels', params: { filter_by_prefix: 'public-query-', info: 'subscription_count' } }));
    assert.deepEqual(pubList.channels[pub], { subscription_count: 1 });
    assert.equal(pubList.channels[pres], undefined, 'filter_by_prefix let a presence channel through');

    // One channel, with both counts.
    const one = await h.json(sdk.get({ path: `/channels/${pres}`, params: { info: 'user_count,subscription_count' } }));
    assert.deepEqual(one, { occupied: true, user_count: 2, subscription_count: 3 });

    const pubInfo = await h.json(sdk.get({ path: `/channels/${pub}`, params: { info: 'subscription_count' } }));
    assert.deepEqual(pubInfo, { occupied: true, subscription_count: 1 });

    const empty = await h.json(sdk.get({ path: `/channels/${h.uniqueName('public-nobody-')}` }));
    assert.deepEqual(empty, { occupied: false });

    // The users of the presence channel, one entry per distinct user.
    const users = await h.json(sdk.get({ path: `/channels/${pres}/users` }));
    assert.deepEqual(
      users.users.map((u) => u.id).sort(),
      ['q1', 'q2'],
    );
    for (const u of users.users) assert.deepEqual(Object.keys(u), ['id']);

    // After a user leaves, the counts follow.
    u2.disconnect();
    let after;
    const deadline = Date.now() + h.WAIT_MS;
    do {
      await h.sleep(50);
      after = await h.json(sdk.get({ path: `/channels/${pres}`, params: { info: 'user_count,subscription_count' } }));
    } while (after.user_count !== 1 && Date.now() < deadline);
    assert.deepEqual(after, { occupied: true, user_count: 1, subscription_count: 2 });
  }));

test('channel queries reject attributes that do not apply with HTTP 400', T, async () => {
  const sdk = h.serverSdk();
  // user_count needs a presence- prefix filter.
  await assert.rejects(
    sdk.get({ path: '/channels', params: { filter_by_prefix: 'public-', info: 'user_count' } }),
    (err) => err.status === 400,
  );
  // users of a non-presence channel.
  await assert.rejects(
    sdk.get({ path: `/channels/${h.uniqueName('public-')}/users` }),
    (err) => err.status === 400,
  );
});

test('requests signed with the wrong secret are refused with 401', T, async () => {
  const Pusher = require('pusher');
  const wrong = new Pusher({
    appId: h.APP_ID,
    key: h.APP_KEY,
    secret: 'not-the-secret',
    host: h.HOST,
    port: String(h.PORT),
    useTLS: false,
  });
  await assert.rejects(wrong.trigger('public-x', 'e', {}), (err) => err.status === 401);
  await assert.rejects(wrong.get({ path: '/channels' }), (err) => err.status === 401);
});
