'use strict';
// pusher-js user sign-in against Herald, with sendToUser and terminateUserConnections from the
// `pusher` Node server SDK.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = { timeout: 20000 };

// Connects, signs in, and waits until the #server-to-user-{id} subscription has succeeded.
async function signedIn(pool, userId, info = {}) {
  const client = pool.make({ user: { id: userId, user_info: info } });
  await h.waitConnected(client);
  client.signin();
  await h.until(
    () => client.user.user_data && client.user.serverToUserChannel && client.user.serverToUserChannel.subscribed,
    `sign-in of ${userId} and its #server-to-user- subscription`,
  );
  return client;
}

// Collects the connection-level errors pusher-js reports.
function errors(client) {
  const seen = [];
  client.connection.bind('error', (e) => seen.push(e));
  return seen;
}

test('signin: pusher:signin_success, then sendToUser reaches the signed-in user only', T, () =>
  h.withClients(async (pool) => {
    const sdk = h.serverSdk();
    const userId = h.uniqueName('user-');
    const otherId = h.uniqueName('user-');

    const client = pool.make({ user: { id: userId, user_info: { name: 'Dana' } } });
    await h.waitConnected(client);
    const success = h.nextEvent(client, 'pusher:signin_success');
    client.signin();
    const { data } = await success;
    assert.equal(typeof data.user_data, 'string', 'signin_success data.user_data must be a JSON string');
    assert.deepEqual(JSON.parse(data.user_data), { id: userId, user_info: { name: 'Dana' } });
    await h.until(() => client.user.serverToUserChannel && client.user.serverToUserChannel.subscribed, 'server-to-user subscription');
    assert.equal(client.user.user_data.id, userId);
    assert.equal(client.user.serverToUserChannel.name, `#server-to-user-${userId}`);

    // A second socket of the same user and a socket of another user.
    const sameUser = await signedIn(pool, userId);
    const otherUser = await signedIn(pool, otherId);
    const leaked = h.record(otherUser.user, 'notice');

    const got = h.nextEvent(client.user, 'notice');
    const got2 = h.nextEvent(sameUser.user, 'notice');
    const res = await h.json(sdk.sendToUser(userId, 'notice', { text: 'for you' }));
    assert.deepEqual(res, {});
    assert.deepEqual((await got).data, { text: 'for you' });
    assert.deepEqual((await got2).data, { text: 'for you' });

    const toOther = h.nextEvent(otherUser.user, 'notice');
    await h.json(sdk.sendToUser(otherId, 'notice', { text: 'other' }));
    assert.deepEqual((await toOther).data, { text: 'other' });
    await h.sleep(h.QUIET_MS);
    assert.deepEqual(leaked.map((e) => e.data), [{ text: 'other' }], 'sendToUser leaked to another user');
  }));

test('signin with a numeric id (as Laravel signs it): pusher-js gets sendToUser for its string form', T, () =>
  h.withClients(async (pool) => {
    const sdk = h.serverSdk();
    const userId = Number(String(Date.now()).slice(-9));
    const client = pool.make({ user: { id: userId, user_info: { name: 'Numeric' } } });
    await h.waitConnected(client);
    client.signin();
    await h.until(
      () => client.user.user_data && client.user.serverToUserChannel && client.user.serverToUserChannel.subscribed,
      'sign-in with a numeric id and its #server-to-user- subscription',
    );
    assert.equal(client.user.user_data.id, String(userId), 'the echoed id is the string form');
    assert.deepEqual(client.user.user_data.user_info, { name: 'Numeric' });
    const got = h.nextEvent(client.user, 'notice');
    await h.json(sdk.sendToUser(String(userId), 'notice', { text: 'numeric' }));
    assert.deepEqual((await got).data, { text: 'numeric' });
  }));

test('signin with a bad signature is refused with 4009', T, () =>
  h.withClients(async (pool) => {
    const client = pool.make({ user: { id: h.uniqueName('user-') }, badUserAuth: true });
    await h.waitConnected(client);
    const errs = errors(client);
    const gotSuccess = h.record(client, 'pusher:signin_success');
    client.signin();
    await h.until(() => errs.some((e) => e.type === 'PusherError' && e.data && e.data.code === 4009), 'pusher:error 4009');
    await h.until(
      () => errs.some((e) => e.type === 'WebSocketError' && e.error && e.error.data && e.error.data.code === 4009),
      'WebSocket close with code 4009',
    );
    await h.until(() => client.connection.state === 'disconnected', 'disconnected state after refused sign-in');
    assert.equal(gotSuccess.length, 0);
    assert.equal(client.user.user_data, null);
  }));

test('terminateUserConnections closes the user\'s signed-in sockets with 4009, without reconnect', T, () =>
  h.withClients(async (pool) => {
    const sdk = h.serverSdk();
    const userId = h.uniqueName('doomed-');
    const victim1 = await signedIn(pool, userId);
    const victim2 = await signedIn(pool, userId);
    const bystander = await signedIn(pool, h.uniqueName('bystander-'));
    // Same user id, but only as a presence member (never signed in): must stay connected.
    const presenceOnly = await pool.connected({ presence: { user_id: userId } });
    await h.subscribe(presenceOnly, h.uniqueName('presence-term-'));

    const errs1 = errors(victim1);
    const errs2 = errors(victim2);
    const states = [];
    victim1.connection.bind('state_change', ({ current }) => states.push(current));
    const otherErrs = errors(bystander);

    const res = await h.json(sdk.terminateUserConnections(userId));
    assert.deepEqual(res, {});

    for (const [client, errs] of [[victim1, errs1], [victim2, errs2]]) {
      // The pusher:error frame ...
      await h.until(
        () => errs.some((e) => e.type === 'PusherError' && e.data && e.data.code === 4009),
        'pusher:error with code 4009',
      );
      // ... and the close frame: pusher-js maps close code 4009 to the "refused" action.
      await h.until(
        () => errs.some((e) => e.type === 'WebSocketError' && e.error && e.error.data && e.error.data.code === 4009),
        'WebSocket close with code 4009',
      );
      await h.until(() => client.connection.state === 'disconnected', 'disconnected state');
    }

    // No auto-reconnect.
    await h.sleep(1500);
    assert.equal(victim1.connection.state, 'disconnected');
    assert.equal(victim2.connection.state, 'disconnected');
    assert.ok(!states.includes('connecting'), `victim reconnected: ${states.join(' -> ')}`);

    assert.equal(bystander.connection.state, 'connected');
    assert.equal(presenceOnly.connection.state, 'connected');
    assert.equal(otherErrs.length, 0);

    // The bystander still works.
    const got = h.nextEvent(bystander.user, 'still-here');
    await h.json(sdk.sendToUser(bystander.user.user_data.id, 'still-here', {}));
    await got;
  }));

test('presence subscription of a signed-in user without channel_data uses the sign-in user data', T, () =>
  h.withClients(async (pool) => {
    // pusher-js 8 omits channel_data when the channel authorization has none and the connection
    // is signed in; membership then comes from user_data.
    const sdk = h.serverSdk();
    const userId = h.uniqueName('member-');
    const client = await signedIn(pool, userId, { name: 'Signed' });
    const name = h.uniqueName('presence-signedin-');
    const { channel, data } = await h.subscribe(client, name);
    assert.equal(data.count, 1);
    assert.equal(channel.members.me.id, userId);
    assert.deepEqual(channel.members.me.info, { name: 'Signed' });

    const users = await h.json(sdk.get({ path: `/channels/${name}/users` }));
    assert.deepEqual(users, { users: [{ id: userId }] });

    const watcher = await pool.connected({ presence: { user_id: 'watcher' } });
    const { channel: wCh } = await h.subscribe(watcher, name);
    assert.deepEqual(wCh.members.get(userId).info, { name: 'Signed' });
  }));
