'use strict';
// Shared by node/watchlist.test.js and node/cluster/watchlist.test.js: pusher-js clients that
// sign in with a `watchlist` and record what pusher-js makes of Pusher's watchlist events
// (`pusher.user.watchlist.bind('online' | 'offline', ...)`), next to the raw
// `pusher_internal:watchlist_events` frames and the connection's errors.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const h = require('./helpers');

const CONFIG_PATH = process.env.HERALD_COMPAT_CONFIG;
// The watchlist app exists only in the generated config (../make_config.py): fail at load
// rather than pass vacuously.
assert.ok(CONFIG_PATH, 'run through tests/compat/run.sh (needs HERALD_COMPAT_CONFIG)');
const CONFIG = JSON.parse(fs.readFileSync(CONFIG_PATH, 'utf8'));
const APPS = CONFIG.app_manager.array.apps;
// `enable_watchlist_events: true` (make_config.WATCHLIST_APP).
const WATCH_APP = APPS.find((a) => a.enable_watchlist_events === true);
assert.ok(WATCH_APP, `${CONFIG_PATH} has no app with enable_watchlist_events`);
// The SDK suites' app: no `enable_watchlist_events`.
const PLAIN_APP = APPS[0];
assert.ok(!PLAIN_APP.enable_watchlist_events, 'the first app must not have watchlist events');

const WATCHLIST_EVENT = 'pusher_internal:watchlist_events';

/**
 * Creates a pusher-js client for `id` (a string, or a number signed as Laravel signs it) with
 * `watchlist` (omitted when undefined), connects it, signs it in, and waits for
 * `pusher:signin_success` and its #server-to-user- subscription. Everything is recorded from
 * the moment the client exists, so the initial status frame cannot be missed:
 *   messages: every message event name, in order (to place the watchlist frames);
 *   frames:   the data of each raw `pusher_internal:watchlist_events` frame;
 *   online / offline: the `event` objects pusher-js's watchlist facade emitted;
 *   errors:   the connection's `error` events.
 * opts: {id, watchlist, info, port, app}.
 */
async function signedIn(pool, opts) {
  const app = opts.app || WATCH_APP;
  const user = { id: opts.id, user_info: opts.info || { name: String(opts.id) } };
  if (opts.watchlist !== undefined) user.watchlist = opts.watchlist;
  const client = pool.make({ app, port: opts.port, user });
  const rec = {
    client,
    id: String(opts.id),
    messages: [],
    frames: [],
    online: [],
    offline: [],
    errors: [],
  };
  client.connection.bind('message', (msg) => {
    rec.messages.push(msg.event);
    if (msg.event === WATCHLIST_EVENT) rec.frames.push(msg.data);
  });
  client.connection.bind('error', (e) => rec.errors.push(e));
  client.user.watchlist.bind('online', (event) => rec.online.push(event));
  client.user.watchlist.bind('offline', (event) => rec.offline.push(event));

  await h.waitConnected(client);
  client.signin();
  await h.until(
    () => client.user.user_data && client.user.serverToUserChannel && client.user.serverToUserChannel.subscribed,
    `sign-in of ${rec.id} and its #server-to-user- subscription`,
  );
  assert.equal(client.user.user_data.id, rec.id);
  return rec;
}

// The ids of every `online` (or `offline`) event pusher-js emitted, in order, flattened.
function ids(events) {
  return events.flatMap((e) => e.user_ids);
}

// Waits until the facade has emitted `kind` ('online' / 'offline') events whose ids, together,
// are `expected` (any order); then fails if more arrive within QUIET_MS.
async function expectIds(rec, kind, expected, ms = h.WAIT_MS) {
  const want = [...expected].map(String).sort();
  await h.until(() => ids(rec[kind]).length >= want.length, `${kind} ${JSON.stringify(want)} for ${rec.id}`, ms);
  await h.sleep(h.QUIET_MS);
  assert.deepEqual(ids(rec[kind]).sort(), want, `${rec.id}'s ${kind} events: ${JSON.stringify(rec[kind])}`);
}

// Every watchlist event has a known name and a non-empty list of string ids.
function assertWellFormed(rec) {
  for (const frame of rec.frames) {
    assert.ok(frame && Array.isArray(frame.events) && frame.events.length > 0, `watchlist frame ${JSON.stringify(frame)}`);
    for (const e of frame.events) {
      assert.ok(e.name === 'online' || e.name === 'offline', `event name in ${JSON.stringify(frame)}`);
      assert.ok(Array.isArray(e.user_ids) && e.user_ids.length > 0, `user_ids in ${JSON.stringify(frame)}`);
      for (const id of e.user_ids) assert.equal(typeof id, 'string', `user id ${JSON.stringify(id)} is not a string`);
    }
  }
}

// The initial status: exactly one watchlist frame, after pusher:signin_success, listing `online`
// (any order) as `online` and nothing else (no offline list). Waits for it, then QUIET_MS more.
async function expectInitial(rec, online) {
  const want = [...online].map(String).sort();
  await h.until(() => rec.frames.length >= 1, `the initial watchlist frame for ${rec.id}`);
  await h.sleep(h.QUIET_MS);
  assert.equal(rec.frames.length, 1, `one initial watchlist frame, got ${JSON.stringify(rec.frames)}`);
  assertWellFormed(rec);
  const [frame] = rec.frames;
  assert.equal(frame.events.length, 1, `one event in ${JSON.stringify(frame)}`);
  assert.equal(frame.events[0].name, 'online');
  assert.deepEqual([...frame.events[0].user_ids].sort(), want);
  const success = rec.messages.indexOf('pusher:signin_success');
  const first = rec.messages.indexOf(WATCHLIST_EVENT);
  assert.ok(success >= 0 && first > success, `the watchlist frame came before pusher:signin_success: ${rec.messages.join(', ')}`);
  // What the app sees through pusher-js.
  assert.deepEqual(ids(rec.online).sort(), want);
  assert.equal(rec.offline.length, 0, `offline events: ${JSON.stringify(rec.offline)}`);
}

// No watchlist frame for QUIET_MS (and none before).
async function expectNoFrames(rec, what) {
  await h.sleep(h.QUIET_MS);
  assert.deepEqual(rec.frames, [], `${what}: unexpected watchlist frames`);
  assert.deepEqual(rec.online, [], `${what}: unexpected online events`);
  assert.deepEqual(rec.offline, [], `${what}: unexpected offline events`);
}

// The `pusher:error` codes the connection reported.
function errorCodes(rec) {
  return rec.errors.filter((e) => e.type === 'PusherError' && e.data).map((e) => e.data.code);
}

module.exports = {
  WATCH_APP,
  PLAIN_APP,
  CONFIG,
  signedIn,
  ids,
  expectIds,
  expectInitial,
  expectNoFrames,
  assertWellFormed,
  errorCodes,
};
