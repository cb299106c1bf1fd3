'use strict';
// pusher-js against Herald: presence membership and client events.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = { timeout: 20000 };

function memberIds(channel) {
  const ids = [];
  channel.members.each((m) => ids.push(m.id));
  return ids.sort();
}

test('presence channel: members list, me, member_added and member_removed', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('presence-');
    const alice = await pool.connected({ presence: { user_id: 'alice', user_info: { name: 'Alice' } } });
    const { channel: aCh } = await h.subscribe(alice, name);
    const counts = h.record(aCh, 'pusher:subscription_count');

    assert.equal(aCh.members.count, 1);
    assert.equal(aCh.members.me.id, 'alice');
    assert.deepEqual(aCh.members.me.info, { name: 'Alice' });
    assert.deepEqual(memberIds(aCh), ['alice']);

    const added = h.nextEvent(aCh, 'pusher:member_added');
    const bob = await pool.connected({ presence: { user_id: 'bob', user_info: { name: 'Bob' } } });
    const { channel: bCh, data: bobMembers } = await h.subscribe(bob, name);

    // Bob's subscription_succeeded carries the full list, including himself.
    assert.equal(bobMembers.count, 2);
    assert.equal(bCh.members.count, 2);
    assert.equal(bCh.members.me.id, 'bob');
    assert.deepEqual(memberIds(bCh), ['alice', 'bob']);
    assert.deepEqual(bCh.members.get('alice').info, { name: 'Alice' });

    const { data: member } = await added;
    assert.equal(member.id, 'bob');
    assert.deepEqual(member.info, { name: 'Bob' });
    assert.equal(aCh.members.count, 2);
    assert.deepEqual(memberIds(aCh), ['alice', 'bob']);

    const removed = h.nextEvent(aCh, 'pusher:member_removed');
    bob.disconnect();
    const { data: gone } = await removed;
    assert.equal(gone.id, 'bob');
    assert.equal(aCh.members.count, 1);
    assert.deepEqual(memberIds(aCh), ['alice']);
    assert.equal(counts.length, 0, 'subscription_count must not be sent on presence channels');
  }));

test('presence channel: a second socket of the same user adds no member, and leaving it removes none', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('presence-');
    const watcher = await pool.connected({ presence: { user_id: 'watcher' } });
    const { channel: wCh } = await h.subscribe(watcher, name);

    const added = h.record(wCh, 'pusher:member_added');
    const removed = h.record(wCh, 'pusher:member_removed');
    const carol1 = await pool.connected({ presence: { user_id: 'carol', user_info: { n: 1 } } });
    await h.subscribe(carol1, name);
    await h.until(() => added.length === 1, 'member_added for carol');

    const carol2 = await pool.connected({ presence: { user_id: 'carol', user_info: { n: 2 } } });
    const { channel: c2Ch } = await h.subscribe(carol2, name);
    assert.equal(c2Ch.members.count, 2, 'members are counted per user, not per socket');
    await h.sleep(h.QUIET_MS);
    assert.equal(added.length, 1, 'second socket of the same user must not trigger member_added');

    carol2.disconnect();
    await h.sleep(h.QUIET_MS);
    assert.equal(removed.length, 0, 'member_removed sent while the user still has a socket in the channel');
    assert.equal(wCh.members.count, 2);

    carol1.disconnect();
    await h.until(() => removed.length === 1, 'member_removed for carol');
    assert.equal(removed[0].data.id, 'carol');
    assert.equal(wCh.members.count, 1);
  }));

test('client events on a private channel reach other subscribers and are not echoed to the sender', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('private-chat-');
    const a = await pool.connected();
    const b = await pool.connected();
    const c = await pool.connected();
    const { channel: aCh } = await h.subscribe(a, name);
    const { channel: bCh } = await h.subscribe(b, name);
    const { channel: cCh } = await h.subscribe(c, name);

    const echo = h.record(aCh, 'client-typing');
    const atB = h.nextEvent(bCh, 'client-typing');
    const atC = h.nextEvent(cCh, 'client-typing');
    assert.equal(aCh.trigger('client-typing', { who: 'a', n: 1 }), true);
    const gotB = await atB;
    assert.deepEqual(gotB.data, { who: 'a', n: 1 });
    assert.equal(gotB.metadata.user_id, undefined, 'user_id is only added on presence channels');
    assert.deepEqual((await atC).data, { who: 'a', n: 1 });

    // And the other way round, with a string payload relayed unchanged.
    const atA = h.nextEvent(aCh, 'client-reply');
    bCh.trigger('client-reply', 'just a string');
    assert.equal((await atA).data, 'just a string');

    await h.sleep(h.QUIET_MS);
    assert.equal(echo.length, 0, 'client event was echoed to its sender');
  }));

test('client events on a presence channel carry the sender user_id in metadata', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('presence-chat-');
    const alice = await pool.connected({ presence: { user_id: 'alice', user_info: { name: 'Alice' } } });
    const bob = await pool.connected({ presence: { user_id: 'bob' } });
    const { channel: aCh } = await h.subscribe(alice, name);
    const { channel: bCh } = await h.subscribe(bob, name);

    const echo = h.record(aCh, 'client-move');
    const atBob = h.nextEvent(bCh, 'client-move');
    aCh.trigger('client-move', { x: 3, y: 4 });
    const { data, metadata } = await atBob;
    assert.deepEqual(data, { x: 3, y: 4 });
    assert.equal(metadata.user_id, 'alice');

    const atAlice = h.nextEvent(aCh, 'client-wave');
    bCh.trigger('client-wave', { hi: true });
    const back = await atAlice;
    assert.deepEqual(back.data, { hi: true });
    assert.equal(back.metadata.user_id, 'bob');

    await h.sleep(h.QUIET_MS);
    assert.equal(echo.length, 0, 'client event was echoed to its sender');
  }));

test('client events on a public channel are not relayed', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('public-chat-');
    const a = await pool.connected();
    const b = await pool.connected();
    const { channel: aCh } = await h.subscribe(a, name);
    const { channel: bCh } = await h.subscribe(b, name);

    const atB = h.record(bCh, 'client-sneaky');
    aCh.trigger('client-sneaky', { x: 1 });

    // A server event sent afterwards arrives, proving b was listening the whole time.
    const marker = h.nextEvent(bCh, 'marker');
    await h.json(h.serverSdk().trigger(name, 'marker', {}));
    await marker;
    await h.sleep(h.QUIET_MS);
    assert.equal(atB.length, 0, 'client event relayed on a public channel');
    assert.equal(b.connection.state, 'connected');
  }));

test('presence channel: unsubscribing (without disconnecting) sends member_removed', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('presence-unsub-');
    const a = await pool.connected({ presence: { user_id: 'stayer' } });
    const b = await pool.connected({ presence: { user_id: 'leaver' } });
    const { channel: aCh } = await h.subscribe(a, name);
    const added = h.nextEvent(aCh, 'pusher:member_added');
    await h.subscribe(b, name);
    assert.equal((await added).data.id, 'leaver');

    const removed = h.nextEvent(aCh, 'pusher:member_removed');
    b.unsubscribe(name);
    assert.equal((await removed).data.id, 'leaver');
    assert.deepEqual(memberIds(aCh), ['stayer']);
    assert.equal(b.connection.state, 'connected');
  }));

test('client events: only subscribed sockets can send them', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('private-members-only-');
    const member = await pool.connected();
    const outsider = await pool.connected();
    const { channel } = await h.subscribe(member, name);
    const seen = h.record(channel, 'client-intrusion');

    // pusher-js only sends client events through Channel objects; go under it for a socket
    // that never subscribed.
    outsider.send_event('client-intrusion', { x: 1 }, name);
    const marker = h.nextEvent(channel, 'marker');
    await h.json(h.serverSdk().trigger(name, 'marker', {}));
    await marker;
    await h.sleep(h.QUIET_MS);
    assert.equal(seen.length, 0, 'client event from a non-subscriber was relayed');
  }));

test('client events over the rate limit are rejected with pusher:error 4301; the socket stays open', T, () =>
  h.withClients(async (pool) => {
    // config.json: max_client_events_per_second = 100.
    const name = h.uniqueName('private-rate-');
    const a = await pool.connected();
    const b = await pool.connected();
    const { channel: aCh } = await h.subscribe(a, name);
    const { channel: bCh } = await h.subscribe(b, name);
    const errs = [];
    a.connection.bind('error', (e) => errs.push(e));
    const got = h.record(bCh, 'client-burst');

    const burst = 250;
    for (let i = 0; i < burst; i += 1) aCh.trigger('client-burst', { i });
    await h.until(() => errs.length > 0, 'a rate-limit error');
    await h.sleep(1100);

    assert.ok(errs.every((e) => e.type === 'PusherError' && e.data.code === 4301), JSON.stringify(errs[0]));
    // The burst is sent within a few ms, so at most two one-second windows' worth pass.
    assert.ok(got.length >= 100 && got.length <= 200, `relayed ${got.length} of ${burst}`);
    assert.equal(got.length + errs.length, burst, 'every event is either relayed or rejected');
    assert.equal(a.connection.state, 'connected');

    // Once the window has passed, client events flow again.
    const after = h.nextEvent(bCh, 'client-after');
    aCh.trigger('client-after', { ok: true });
    assert.deepEqual((await after).data, { ok: true });
  }));
