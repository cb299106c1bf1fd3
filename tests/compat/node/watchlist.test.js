'use strict';
// Pusher's watchlist events with pusher-js: a client signs in with a `watchlist` in its signed
// user_data and binds `pusher.user.watchlist.bind('online' | 'offline', ...)`. The app with
// `enable_watchlist_events` is make_config.WATCHLIST_APP; the SDK suites' app has none.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');
const w = require('./watchlist_util');

const T = { timeout: 30000 };

test('watchlist: a watched user already online is listed in one online frame right after signin_success (no offline list)', T, () =>
  h.withClients(async (pool) => {
    const bob = h.uniqueName('wl-bob-');
    const carol = h.uniqueName('wl-carol-'); // never online
    // A numeric id, signed as Laravel signs it, watched as a number: online in its string form.
    const num = Number(String(Date.now()).slice(-9)) + 1;
    await w.signedIn(pool, { id: bob });
    await w.signedIn(pool, { id: num });

    const alice = await w.signedIn(pool, { id: h.uniqueName('wl-alice-'), watchlist: [bob, carol, num] });
    await w.expectInitial(alice, [bob, String(num)]);
    assert.deepEqual(w.errorCodes(alice), []);

    // Nobody watched is online: no frame at all (no empty or offline list).
    const dave = await w.signedIn(pool, { id: h.uniqueName('wl-dave-'), watchlist: [carol] });
    await w.expectNoFrames(dave, 'a watchlist of offline users');
  }));

test('watchlist: online when a watched user signs in later, once for a second connection of that user', T, () =>
  h.withClients(async (pool) => {
    const bob = h.uniqueName('wl-bob-');
    const num = Number(String(Date.now()).slice(-9)) + 2;
    const alice = await w.signedIn(pool, { id: h.uniqueName('wl-alice-'), watchlist: [bob, num] });
    await w.expectNoFrames(alice, 'before anyone watched is online');

    // A connection that is not signed in is nobody.
    await pool.connected({ app: w.WATCH_APP });
    await w.signedIn(pool, { id: bob });
    await w.expectIds(alice, 'online', [bob]);
    // bob's second connection: he is online already.
    await w.signedIn(pool, { id: bob });
    await w.signedIn(pool, { id: num });
    await w.expectIds(alice, 'online', [bob, String(num)]);
    assert.deepEqual(alice.offline, []);
    w.assertWellFormed(alice);
    // Each change was its own frame of one event.
    assert.deepEqual(alice.frames.map((f) => f.events.map((e) => e.name)), [['online'], ['online']]);
  }));

test('watchlist: offline only after the last of two connections of the watched user closes', T, () =>
  h.withClients(async (pool) => {
    const bob = h.uniqueName('wl-bob-');
    const bob1 = await w.signedIn(pool, { id: bob });
    const bob2 = await w.signedIn(pool, { id: bob });
    const alice = await w.signedIn(pool, { id: h.uniqueName('wl-alice-'), watchlist: [bob] });
    await w.expectInitial(alice, [bob]);

    bob1.client.disconnect();
    await h.sleep(h.QUIET_MS);
    assert.deepEqual(alice.offline, [], 'offline while bob still had a signed-in connection');

    bob2.client.disconnect();
    await w.expectIds(alice, 'offline', [bob]);
    assert.equal(alice.offline[0].name, 'offline');
    assert.deepEqual(w.ids(alice.online), [bob], 'online again without a new connection');

    // Back online: online again.
    await w.signedIn(pool, { id: bob });
    await w.expectIds(alice, 'online', [bob, bob]);
    w.assertWellFormed(alice);
  }));

test('watchlist: 101 ids give pusher:error 4302, sign-in still succeeds, and the first 100 are watched', T, () =>
  h.withClients(async (pool) => {
    const base = h.uniqueName('wl-many-');
    const list = Array.from({ length: 101 }, (_, i) => `${base}-${i}`);
    const first = list[0];
    const hundredth = list[99];
    const cut = list[100];
    await w.signedIn(pool, { id: first });

    const alice = await w.signedIn(pool, { id: h.uniqueName('wl-alice-'), watchlist: list });
    await h.until(() => w.errorCodes(alice).includes(4302), 'pusher:error 4302 through connection.bind(\'error\')');
    assert.deepEqual(w.errorCodes(alice), [4302]);
    const err = alice.errors.find((e) => e.type === 'PusherError');
    assert.equal(typeof err.data.message, 'string');
    assert.ok(alice.messages.includes('pusher:error'));
    // Signed in, and still connected.
    assert.equal(alice.client.connection.state, 'connected');
    assert.equal(alice.client.user.user_data.id, alice.id);
    await w.expectInitial(alice, [first]);

    // The 101st is not watched; the 100th is.
    await w.signedIn(pool, { id: cut });
    await h.sleep(h.QUIET_MS);
    assert.deepEqual(w.ids(alice.online), [first], 'the 101st id was watched');
    await w.signedIn(pool, { id: hundredth });
    await w.expectIds(alice, 'online', [first, hundredth]);

    // Exactly 100 ids: no error.
    const bob = await w.signedIn(pool, { id: h.uniqueName('wl-bob-'), watchlist: list.slice(0, 100) });
    await w.expectInitial(bob, [first, hundredth]);
    assert.deepEqual(w.errorCodes(bob), []);
    assert.equal(alice.client.connection.state, 'connected');
  }));

test('watchlist: an app without enable_watchlist_events ignores the watchlist (no frames, no 4302)', T, () =>
  h.withClients(async (pool) => {
    const app = w.PLAIN_APP;
    const bob = h.uniqueName('wl-bob-');
    const many = Array.from({ length: 150 }, (_, i) => `${bob}-${i}`);
    const bobRec = await w.signedIn(pool, { app, id: bob });
    const alice = await w.signedIn(pool, { app, id: h.uniqueName('wl-alice-'), watchlist: [bob, ...many] });
    const carol = h.uniqueName('wl-carol-');
    const dave = await w.signedIn(pool, { app, id: h.uniqueName('wl-dave-'), watchlist: [carol] });
    // Changes: carol comes and goes, bob's only connection closes.
    const c = await w.signedIn(pool, { app, id: carol });
    c.client.disconnect();
    bobRec.client.disconnect();
    await w.expectNoFrames(alice, 'alice, on an app without watchlist events');
    await w.expectNoFrames(dave, 'dave, on an app without watchlist events');
    assert.deepEqual(w.errorCodes(alice), []);
    assert.deepEqual(alice.errors, []);
    assert.equal(alice.client.connection.state, 'connected');
  }));
