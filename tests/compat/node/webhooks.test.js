'use strict';
// Herald's webhooks, received and verified the way a Pusher customer's Node server does it:
// node/webhook_receiver.js (started by ../run.sh before Herald) checks every request with
// `pusher.webhook({headers, rawBody}).isValid()` from the official `pusher` npm SDK and keeps
// getEvents(). Real pusher-js clients of the webhook app cause the events; the tests read the
// receiver's log and assert the validated events, their fields, the request headers, the
// per-endpoint filters and retries. The `"signature": "jwt"` endpoints' requests are checked
// with livekit-server-sdk's WebhookReceiver as well. The endpoints are defined in
// ../make_config.py.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const PusherServer = require('pusher');
const { WebhookReceiver } = require('livekit-server-sdk');
const h = require('./helpers');
const { receiverLog } = require('./receiver_log');

const T = { timeout: 20000 };

const CONFIG_PATH = process.env.HERALD_COMPAT_CONFIG;
const RECEIVER = process.env.WEBHOOK_NODE_URL;
// The suite needs the receiver and the generated config that run.sh provides; without them it
// fails rather than passing vacuously.
assert.ok(CONFIG_PATH && RECEIVER, 'run through tests/compat/run.sh (needs HERALD_COMPAT_CONFIG and WEBHOOK_NODE_URL)');

const NODE_APP_ID = '100002'; // make_config.WEBHOOK_NODE_APP
const CONFIG = JSON.parse(fs.readFileSync(CONFIG_PATH, 'utf8'));
const APP = CONFIG.app_manager.array.apps.find((a) => String(a.id) === NODE_APP_ID);
assert.ok(APP, `app ${NODE_APP_ID} missing from ${CONFIG_PATH}`);

const { requests, delivered, waitFor } = receiverLog(RECEIVER);

const names = (events) => events.map((e) => e.name);
const sortByName = (events) => [...events].sort((a, b) => a.name.localeCompare(b.name));
const has = (name, extra = {}) => (events) =>
  events.some((e) => e.name === name && Object.entries(extra).every(([k, v]) => e[k] === v));
const is = (channel) => (c) => c === channel;

function client(opts = {}) {
  return { app: APP, ...opts };
}

// --- tests ----------------------------------------------------------------------------------------

test('channel_occupied / channel_vacated: Pusher-signed requests that pusher.webhook() validates', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('wh-public-');
    const c = await pool.connected(client());
    await h.subscribe(c, name);
    await waitFor('/all', is(name), has('channel_occupied'), 'channel_occupied');
    c.unsubscribe(name);
    const events = await waitFor('/all', is(name), has('channel_vacated'), 'channel_vacated');
    assert.deepEqual(events, [
      { name: 'channel_occupied', channel: name },
      { name: 'channel_vacated', channel: name },
    ]);

    const reqs = (await requests('/all')).filter((r) => r.events.some((e) => e.channel === name));
    assert.ok(reqs.length >= 1);
    const now = Date.now();
    for (const r of reqs) {
      assert.equal(r.method, 'POST');
      assert.equal(r.headers['content-type'], 'application/json');
      assert.equal(r.headers['x-pusher-key'], APP.key);
      assert.match(r.headers['x-pusher-signature'], /^[0-9a-f]{64}$/);
      assert.match(r.webhookId, /^msg_[0-9a-f]{32}$/);
      assert.ok(Math.abs(Number(r.headers['webhook-timestamp']) * 1000 - now) < 60000, 'Webhook-Timestamp is now');
      assert.ok(Math.abs(r.timeMs - now) < 60000, 'time_ms is now');
      assert.equal(r.headers['x-compat-endpoint'], 'all', 'custom endpoint header');
      assert.equal(r.headers['webhook-signature'], undefined, 'no Standard Webhooks signature unless opted in');
      assert.equal(r.headers.authorization, undefined, 'no JWT unless opted in');
      // Header names in the documented case (pusher-http-php reads them case-sensitively).
      const sent = r.rawHeaders.filter((_, i) => i % 2 === 0);
      for (const n of ['X-Pusher-Key', 'X-Pusher-Signature', 'Webhook-Id', 'Webhook-Timestamp', 'Content-Type']) {
        assert.ok(sent.includes(n), `header ${n} sent as ${JSON.stringify(sent)}`);
      }
      assert.deepEqual(Object.keys(JSON.parse(r.rawBody)).sort(), ['events', 'time_ms']);

      // The validation is not vacuous: another secret, another key or a changed body fail.
      const other = new PusherServer({ appId: APP.id, key: APP.key, secret: 'not-the-secret' });
      assert.equal(other.webhook({ headers: r.headers, rawBody: r.rawBody }).isValid(), false);
      const otherKey = new PusherServer({ appId: APP.id, key: 'other-key', secret: APP.secret });
      assert.equal(otherKey.webhook({ headers: r.headers, rawBody: r.rawBody }).isValid(), false);
      const right = new PusherServer({ appId: APP.id, key: APP.key, secret: APP.secret });
      assert.equal(right.webhook({ headers: r.headers, rawBody: r.rawBody }).isValid(), true);
      const tampered = r.rawBody.replace(name, `${name}x`);
      assert.equal(right.webhook({ headers: r.headers, rawBody: tampered }).isValid(), false);
    }
  }));

test('member_added / member_removed with user_id; a second socket of a user adds no member', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('presence-room-');
    const alice = await pool.connected(client({ presence: { user_id: 'alice', user_info: { n: 1 } } }));
    await h.subscribe(alice, name);
    await waitFor('/all', is(name), has('member_added', { user_id: 'alice' }), 'member_added alice');

    const bob1 = await pool.connected(client({ presence: { user_id: 'bob' } }));
    await h.subscribe(bob1, name);
    await waitFor('/all', is(name), has('member_added', { user_id: 'bob' }), 'member_added bob');
    const bob2 = await pool.connected(client({ presence: { user_id: 'bob' } }));
    await h.subscribe(bob2, name);
    // bob still has a socket in the channel when one of his two leaves: no member_removed yet.
    // (Whichever of the two is processed first, exactly one member_removed for bob follows.)
    bob2.disconnect();
    bob1.unsubscribe(name);
    await waitFor('/all', is(name), has('member_removed', { user_id: 'bob' }), 'member_removed bob');
    alice.disconnect();
    const events = await waitFor('/all', is(name), has('channel_vacated'), 'channel_vacated');

    const expected = [
      { name: 'channel_occupied', channel: name },
      { name: 'member_added', channel: name, user_id: 'alice' },
      { name: 'member_added', channel: name, user_id: 'bob' },
      { name: 'member_removed', channel: name, user_id: 'bob' },
      { name: 'member_removed', channel: name, user_id: 'alice' },
      { name: 'channel_vacated', channel: name },
    ];
    assert.deepEqual(events, expected);
    // The presence + prefix filtered endpoint gets the same events for a matching channel.
    const filtered = await waitFor('/presence-room', is(name), has('channel_vacated'), 'channel_vacated');
    assert.deepEqual(filtered, expected);
    // ... and the private-only one none of them.
    assert.deepEqual(await delivered('/private', is(name)), []);
  }));

test('client_event: event, data (a string), socket_id, and user_id on presence channels', T, () =>
  h.withClients(async (pool) => {
    const priv = h.uniqueName('private-wh-client-');
    const pres = h.uniqueName('presence-room-client-');
    const sender = await pool.connected(client({ presence: { user_id: 'sender-1' } }));
    const receiver = await pool.connected(client({ presence: { user_id: 'receiver-1' } }));
    const { channel: sPriv } = await h.subscribe(sender, priv);
    const { channel: rPriv } = await h.subscribe(receiver, priv);
    const { channel: sPres } = await h.subscribe(sender, pres);
    const { channel: rPres } = await h.subscribe(receiver, pres);
    const socketId = sender.connection.socket_id;

    const got = h.nextEvent(rPriv, 'client-greet');
    assert.ok(sPriv.trigger('client-greet', { text: 'hi', n: 1 }));
    assert.deepEqual((await got).data, { text: 'hi', n: 1 });
    const gotPres = h.nextEvent(rPres, 'client-note');
    assert.ok(sPres.trigger('client-note', 'plain text'));
    assert.equal((await gotPres).data, 'plain text');

    const privEvents = await waitFor('/all', is(priv), has('client_event'), 'client_event (private)');
    const ce = privEvents.find((e) => e.name === 'client_event');
    assert.deepEqual(
      { ...ce, data: JSON.parse(ce.data) },
      { name: 'client_event', channel: priv, event: 'client-greet', data: { text: 'hi', n: 1 }, socket_id: socketId },
    );
    assert.equal(typeof ce.data, 'string', 'client_event data is a string');
    assert.equal('user_id' in ce, false, 'no user_id on a private channel');

    const presEvents = await waitFor('/all', is(pres), has('client_event'), 'client_event (presence)');
    assert.deepEqual(presEvents.find((e) => e.name === 'client_event'), {
      name: 'client_event',
      channel: pres,
      event: 'client-note',
      data: 'plain text',
      socket_id: socketId,
      user_id: 'sender-1',
    });

    // The type-filtered and type+prefix-filtered endpoints get the client event of their channel.
    const onPrivate = await waitFor('/private', is(priv), has('client_event'), 'client_event on /private');
    assert.deepEqual(onPrivate.filter((e) => e.name === 'client_event'), [ce]);
    const onRoom = await waitFor('/presence-room', is(pres), has('client_event'), 'client_event on /presence-room');
    assert.equal(onRoom.filter((e) => e.name === 'client_event').length, 1);
    assert.equal(onRoom.find((e) => e.name === 'client_event').user_id, 'sender-1');
  }));

test('cache_miss: sent when a cache channel is subscribed with nothing cached, not once it is cached', T, () =>
  h.withClients(async (pool) => {
    const sdk = h.serverSdk(APP);
    const privCache = h.uniqueName('private-cache-wh-');
    const cache = h.uniqueName('cache-wh-');
    const c1 = await pool.connected(client());

    // private-cache-: on /all and /private, but not on /cache-miss (prefix cache-).
    const privMiss = h.nextEvent(c1.subscribe(privCache), 'pusher:cache_miss');
    await h.subscribe(c1, privCache);
    await privMiss;
    await waitFor('/all', is(privCache), has('cache_miss'), 'cache_miss (private-cache)');
    await waitFor('/private', is(privCache), has('cache_miss'), 'cache_miss (private-cache) on /private');

    const miss = h.nextEvent(c1.subscribe(cache), 'pusher:cache_miss');
    await h.subscribe(c1, cache);
    await miss;
    const all = await waitFor('/all', is(cache), (ev) => ev.length >= 2, 'channel_occupied and cache_miss');
    // Both come from the same subscription; their relative order is not specified (Herald sends
    // cache_miss first).
    assert.deepEqual(sortByName(all), [
      { name: 'cache_miss', channel: cache },
      { name: 'channel_occupied', channel: cache },
    ]);
    // The cache_miss-only endpoint: exactly the one event of its prefix, no channel_occupied.
    const onlyMiss = await waitFor('/cache-miss', is(cache), has('cache_miss'), 'cache_miss on /cache-miss');
    assert.deepEqual(onlyMiss, [{ name: 'cache_miss', channel: cache }]);
    assert.deepEqual(await delivered('/cache-miss', is(privCache)), [], 'private-cache- does not match prefix cache-');

    // Once an event is cached, a new subscriber gets it and no cache_miss is sent.
    await h.json(sdk.trigger(cache, 'state', { v: 1 }));
    const c2 = await pool.connected(client());
    const missed = h.record(c2.subscribe(cache), 'pusher:cache_miss');
    const cached = h.nextEvent(c2.channel(cache), 'state');
    await h.subscribe(c2, cache);
    assert.deepEqual((await cached).data, { v: 1 });
    // Marker: another cache channel's miss, submitted after c2's subscription.
    const marker = h.uniqueName('cache-wh-marker-');
    await h.subscribe(c2, marker);
    await waitFor('/cache-miss', is(marker), has('cache_miss'), 'marker cache_miss');
    await h.sleep(200);
    assert.equal(missed.length, 0);
    assert.deepEqual(names(sortByName(await delivered('/all', is(cache)))), ['cache_miss', 'channel_occupied']);
    assert.deepEqual(await delivered('/cache-miss', is(cache)), [{ name: 'cache_miss', channel: cache }]);
  }));

test('filters: channel_type and channel_prefix endpoints get only matching channels', T, () =>
  h.withClients(async (pool) => {
    const tag = h.uniqueName('');
    const channels = {
      public: `wh-filter-${tag}`,
      presenceOther: `presence-other-${tag}`,
      encrypted: `private-encrypted-wh-${tag}`,
      private: `private-wh-filter-${tag}`,
      presenceRoom: `presence-room-filter-${tag}`,
    };
    const ours = (c) => typeof c === 'string' && c.endsWith(tag);
    const c = await pool.connected(client({ presence: { user_id: 'filter-user' } }));
    // One after the other, each seen on /all before the next: the endpoints' queues are ordered,
    // so once a filtered endpoint has the last matching event, anything earlier has arrived too.
    for (const name of Object.values(channels)) {
      await h.subscribe(c, name);
      await waitFor('/all', is(name), has('channel_occupied'), `channel_occupied ${name}`);
    }
    await waitFor('/private', ours, has('channel_occupied', { channel: channels.private }), '/private');
    await waitFor('/presence-room', ours, has('member_added', { channel: channels.presenceRoom }), '/presence-room');
    await h.sleep(h.QUIET_MS);

    const occupied = async (path) =>
      (await delivered(path, ours)).filter((e) => e.name === 'channel_occupied').map((e) => e.channel);
    assert.deepEqual(await occupied('/all'), Object.values(channels));
    // channel_type private: every private- channel, encrypted ones included.
    assert.deepEqual(await occupied('/private'), [channels.encrypted, channels.private]);
    // channel_type presence AND channel_prefix presence-room-.
    assert.deepEqual(await delivered('/presence-room', ours), [
      { name: 'channel_occupied', channel: channels.presenceRoom },
      { name: 'member_added', channel: channels.presenceRoom, user_id: 'filter-user' },
    ]);
    assert.deepEqual(await delivered('/cache-miss', ours), []);
    assert.deepEqual(await delivered('/flaky', ours), []);
  }));

test('retries: a 503 is retried under the same Webhook-Id, and the retry is signed validly too', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('flaky-wh-');
    const c = await pool.connected(client());
    await h.subscribe(c, name);
    const events = await waitFor('/flaky', is(name), has('channel_occupied'), 'channel_occupied (retried)');
    assert.deepEqual(events, [{ name: 'channel_occupied', channel: name }]);

    const attempts = (await requests('/flaky')).filter((r) => r.events.some((e) => e.channel === name));
    assert.deepEqual(attempts.map((r) => r.status), [503, 200], 'one refused attempt, then one accepted');
    const [first, retry] = attempts;
    assert.equal(retry.webhookId, first.webhookId, 'a retry keeps the Webhook-Id');
    assert.deepEqual(retry.events, first.events);
    assert.ok(retry.receivedAt - first.receivedAt < 3000, 'retried after the configured ~100 ms back-off');
    assert.ok(retry.timeMs >= first.timeMs);
  }));

// --- "signature": "jwt" (LiveKit's webhook signing) --------------------------------------------------

const livekit = new WebhookReceiver(APP.key, APP.secret);
const b64url = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

// Checks one JWT-signed request beyond what the receiver already did: the header as sent, the
// claims, the Pusher signature beside it, and that LiveKit's receiver refuses what it must.
async function checkJwtRequest(r, tamper) {
  const token = r.headers.authorization;
  const sent = r.rawHeaders.filter((_, i) => i % 2 === 0);
  assert.ok(sent.includes('Authorization'), `Authorization sent as ${JSON.stringify(sent)}`);
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'the bare token, no "Bearer "');
  assert.deepEqual(b64url(token.split('.')[0]), { alg: 'HS256', typ: 'JWT' });
  const claims = b64url(token.split('.')[1]);
  assert.deepEqual(Object.keys(claims).sort(), ['exp', 'iat', 'iss', 'nbf', 'sha256']);
  assert.equal(claims.iss, APP.key);
  assert.equal(claims.sha256, crypto.createHash('sha256').update(r.rawBody, 'utf8').digest('base64'));
  assert.equal(claims.nbf, claims.iat);
  assert.equal(claims.exp - claims.iat, 300);
  assert.equal(String(claims.iat), r.headers['webhook-timestamp']);
  assert.ok(r.valid, 'the Pusher signature stays valid');

  await livekit.receive(r.rawBody, token);
  await assert.rejects(livekit.receive(tamper(r.rawBody), token), /sha256/);
  await assert.rejects(livekit.receive(`${r.rawBody} `, token), /sha256/);
  await assert.rejects(new WebhookReceiver(APP.key, 'not-the-secret').receive(r.rawBody, token));
  await assert.rejects(new WebhookReceiver('other-key', APP.secret).receive(r.rawBody, token));
}

test('signature jwt: Authorization is a JWT that livekit-server-sdk verifies; tampered bodies are refused', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('presence-jwt-');
    const a = await pool.connected(client({ presence: { user_id: 'jwt-a' } }));
    const b = await pool.connected(client({ presence: { user_id: 'jwt-b' } }));
    const { channel: aCh } = await h.subscribe(a, name);
    const { channel: bCh } = await h.subscribe(b, name);
    // Non-ASCII data: the digest covers the exact UTF-8 bytes of the body.
    const got = h.nextEvent(bCh, 'client-note');
    assert.ok(aCh.trigger('client-note', { text: 'h\u00e9llo \u2713' }));
    await got;
    a.disconnect();
    b.disconnect();
    const events = await waitFor('/jwt', is(name), has('channel_vacated'), 'channel_vacated on /jwt');
    assert.deepEqual(names(events).slice(0, 4), ['channel_occupied', 'member_added', 'member_added', 'client_event']);
    assert.equal(JSON.parse(events[3].data).text, 'h\u00e9llo \u2713');

    const reqs = (await requests('/jwt')).filter((r) => r.events.some((e) => e.channel === name));
    assert.ok(reqs.length >= 1);
    for (const r of reqs) {
      assert.deepEqual(r.livekit, { valid: true, error: null }, 'checked by the receiver as it arrived');
      await checkJwtRequest(r, (body) => body.replace(name, `${name}x`));
    }
  }));

test('signature jwt: a retried attempt is signed again and verifies with livekit-server-sdk', T, () =>
  h.withClients(async (pool) => {
    const name = h.uniqueName('jwt-flaky-');
    const c = await pool.connected(client());
    await h.subscribe(c, name);
    await waitFor('/jwt-flaky', is(name), has('channel_occupied'), 'channel_occupied (retried)');
    const attempts = (await requests('/jwt-flaky')).filter((r) => r.events.some((e) => e.channel === name));
    assert.deepEqual(attempts.map((r) => r.status), [503, 200], 'one refused attempt, then one accepted');
    const [first, retry] = attempts;
    assert.equal(retry.webhookId, first.webhookId);
    assert.notEqual(retry.rawBody, first.rawBody, 'a fresh time_ms');
    assert.notEqual(retry.headers.authorization, first.headers.authorization, 'a fresh token');
    for (const r of attempts) await checkJwtRequest(r, (body) => body.replace(name, `${name}x`));
    // Each token covers its own body only.
    await assert.rejects(livekit.receive(retry.rawBody, first.headers.authorization), /sha256/);
  }));
