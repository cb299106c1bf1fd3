'use strict';
// User presence webhooks across the cluster (../../run.sh): `user_online` / `user_offline` of the
// watchlist app (make_config.WATCHLIST_APP), whose only endpoint is USER_EVENTS_PATH on the Node
// receiver (node/webhook_receiver.js), which checks every request with the official `pusher` npm
// SDK (pusher.webhook({headers, rawBody}).isValid()) and this app's credentials. pusher-js
// clients sign in (`pusher:signin`) on node A and node B; the whole cluster must send exactly one
// event per transition of a user: online at their first signed-in connection anywhere, offline
// once the last is closed (after webhooks.grace_period_ms), each once, strictly alternating.
// Events are counted raw, one per event in every request received: Herald retries only a failed
// delivery and the receiver answers 200 on this path, so a second copy is a duplicate.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const PusherServer = require('pusher');
const h = require('../helpers');
const w = require('../watchlist_util');
const { receiverLog } = require('../receiver_log');

const A = h.PORT;
const B = h.PORT_B;
const RECEIVER = process.env.WEBHOOK_NODE_URL;
assert.ok(B && RECEIVER, 'run through tests/compat/run.sh (needs HERALD_PORT_B, WEBHOOK_NODE_URL)');
assert.equal(w.CONFIG.adapter && w.CONFIG.adapter.driver, 'redis', 'not a cluster config');

const PATH = '/user-events'; // make_config.USER_EVENTS_PATH
const USER_EVENT_TYPES = ['user_online', 'user_offline'];
const APP = w.WATCH_APP;
// The endpoint the config gives the app: this receiver, this path, the user events only, no
// filter (Herald refuses a filter next to user event types).
const ENDPOINT = (APP.webhooks || []).find((e) => e.url === `${RECEIVER}${PATH}`);
assert.ok(ENDPOINT, `app ${APP.id} has no webhook endpoint ${RECEIVER}${PATH}`);
assert.deepEqual([...ENDPOINT.event_types].sort(), [...USER_EVENT_TYPES].sort());
assert.equal(ENDPOINT.filter, undefined);
// Another app of the config (the Node receiver's own): its secret must not verify these requests.
const OTHER_APP = w.CONFIG.app_manager.array.apps.find((a) => String(a.id) === '100002');
assert.ok(OTHER_APP && OTHER_APP.secret !== APP.secret);

// user_offline waits out the grace period (Herald's default is 3 s; run.sh's config sets 0), and
// every delivery the batching window.
const WEBHOOKS = w.CONFIG.webhooks || {};
const GRACE_MS = WEBHOOKS.grace_period_ms === undefined ? 3000 : WEBHOOKS.grace_period_ms;
const BATCH_MS = WEBHOOKS.batching && WEBHOOKS.batching.enabled ? (WEBHOOKS.batching.duration || 0) : 0;
const ONLINE_WAIT_MS = BATCH_MS + h.WAIT_MS;
const OFFLINE_WAIT_MS = GRACE_MS + BATCH_MS + h.WAIT_MS;
// Watching for something that must not come: longer than a batch and a grace period.
const QUIET_MS = h.QUIET_MS + BATCH_MS;

const T = { timeout: 30000 + 4 * GRACE_MS };

const { requests } = receiverLog(RECEIVER);

/**
 * Every request to PATH so far (each one already passed pusher.webhook().isValid() in the
 * receiver, or requests() fails), checked for being this app's: verified with its credentials,
 * answered 200, the Pusher envelope with user events only. Returns the events of `users`, raw
 * (no de-duplication), in the order received: [{name, user_id, receivedAt, record}].
 */
async function userEvents(users) {
  const out = [];
  for (const r of await requests(PATH)) {
    assert.equal(r.valid, true);
    assert.equal(r.appId, String(APP.id), `request ${r.seq} to ${PATH} verified for app ${r.appId}`);
    assert.equal(r.status, 200);
    const body = JSON.parse(r.rawBody);
    assert.deepEqual(Object.keys(body).sort(), ['events', 'time_ms'], `envelope of ${r.rawBody}`);
    assert.equal(typeof body.time_ms, 'number');
    assert.ok(Array.isArray(body.events) && body.events.length > 0, `events of ${r.rawBody}`);
    // What the SDK handed the receiver is the body's events.
    assert.deepEqual(r.events, body.events);
    for (const e of body.events) {
      assert.ok(USER_EVENT_TYPES.includes(e.name), `a ${e.name} event reached ${PATH}: ${r.rawBody}`);
      assert.deepEqual(Object.keys(e).sort(), ['name', 'user_id'], `fields of ${JSON.stringify(e)}`);
      assert.equal(typeof e.user_id, 'string');
      if (users.includes(e.user_id)) out.push({ ...e, receivedAt: r.receivedAt, record: r });
    }
  }
  return out;
}

// The sequence of event names `user` got (in the order received).
function namesOf(events, user) {
  return events.filter((e) => e.user_id === user).map((e) => e.name);
}

// Polls until `predicate(events of users)` holds, at most `ms`; returns those events.
async function waitEvents(users, predicate, what, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const events = await userEvents(users);
    if (predicate(events)) return events;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting on ${PATH} for ${what}; got ${JSON.stringify(events.map(({ name, user_id: u }) => ({ name, user_id: u })))}`);
    }
    await h.sleep(50);
  }
}

test('user webhooks: user_online / user_offline once per transition for the whole cluster (sign-ins on nodes A and B), signed as pusher.webhook() validates', T, () =>
  h.withClients(async (pool) => {
    const x = h.uniqueName('uwh-x-');
    const y = h.uniqueName('uwh-y-');
    const users = [x, y];
    const names = (events) => ({ [x]: namesOf(events, x), [y]: namesOf(events, y) });

    // X's first signed-in connection, on node A: online.
    const xOnA = await w.signedIn(pool, { port: A, id: x });
    await waitEvents(users, (ev) => namesOf(ev, x).length >= 1, `user_online ${x}`, ONLINE_WAIT_MS);
    // A second one, on node B: nothing.
    const xOnB = await w.signedIn(pool, { port: B, id: x });
    await h.sleep(QUIET_MS);
    assert.deepEqual(names(await userEvents(users)), { [x]: ['user_online'], [y]: [] },
      'after a second signed-in connection of X on node B');

    // Closing one of the two: X is still online (on node A).
    xOnB.client.disconnect();
    await h.sleep(QUIET_MS + GRACE_MS);
    assert.deepEqual(names(await userEvents(users)), { [x]: ['user_online'], [y]: [] },
      'after X\'s connection on node B closed, X still signed in on node A');
    // The last one: offline, once the grace period is over.
    const xClosedAt = Date.now();
    xOnA.client.disconnect();
    const afterX = await waitEvents(users, (ev) => namesOf(ev, x).length >= 2, `user_offline ${x}`, OFFLINE_WAIT_MS);
    const xOffline = afterX.find((e) => e.user_id === x && e.name === 'user_offline');
    assert.ok(xOffline, `no user_offline for X: ${JSON.stringify(names(afterX))}`);
    assert.ok(xOffline.receivedAt - xClosedAt >= GRACE_MS,
      `user_offline ${xOffline.receivedAt - xClosedAt} ms after X's last connection closed, within the ${GRACE_MS} ms grace period`);

    // Y signs in on node B and leaves.
    const yOnB = await w.signedIn(pool, { port: B, id: y });
    await waitEvents(users, (ev) => namesOf(ev, y).length >= 1, `user_online ${y}`, ONLINE_WAIT_MS);
    yOnB.client.disconnect();
    await waitEvents(users, (ev) => namesOf(ev, y).length >= 2, `user_offline ${y}`, OFFLINE_WAIT_MS);

    // Nothing more comes: exactly these four events, each once, in this order per user.
    await h.sleep(QUIET_MS + GRACE_MS);
    const events = await userEvents(users);
    assert.deepEqual(names(events), {
      [x]: ['user_online', 'user_offline'],
      [y]: ['user_online', 'user_offline'],
    }, `user events at ${PATH}, counted raw`);
    assert.equal(events.length, 4);

    // Each request, checked again here: it is Pusher-signed for this app (the header names its
    // key), and the check is not vacuous: another app's secret, another key or a changed body fail.
    const right = new PusherServer({ appId: String(APP.id), key: APP.key, secret: APP.secret });
    const otherSecret = new PusherServer({ appId: String(APP.id), key: APP.key, secret: OTHER_APP.secret });
    const otherKey = new PusherServer({ appId: String(APP.id), key: OTHER_APP.key, secret: APP.secret });
    const now = Date.now();
    for (const r of new Set(events.map((e) => e.record))) {
      assert.equal(r.method, 'POST');
      assert.equal(r.headers['content-type'], 'application/json');
      assert.equal(r.headers['x-pusher-key'], APP.key);
      assert.match(r.headers['x-pusher-signature'], /^[0-9a-f]{64}$/);
      assert.ok(Math.abs(r.timeMs - now) < 60000, 'time_ms is now');
      const signed = { headers: r.headers, rawBody: r.rawBody };
      assert.equal(right.webhook(signed).isValid(), true);
      assert.equal(otherSecret.webhook(signed).isValid(), false, 'valid with another app\'s secret');
      assert.equal(otherKey.webhook(signed).isValid(), false, 'valid for another key');
      const tampered = r.rawBody.split(x).join(`${x}z`).split(y).join(`${y}z`);
      assert.notEqual(tampered, r.rawBody);
      assert.equal(right.webhook({ headers: r.headers, rawBody: tampered }).isValid(), false, 'valid with a changed body');
    }
  }));
