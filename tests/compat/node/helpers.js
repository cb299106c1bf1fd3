'use strict';
// Shared helpers for the Node compatibility suite: real pusher-js clients and the official
// `pusher` server SDK, both pointed at the Herald instance started by ../run.sh.

const crypto = require('node:crypto');
const PusherClient = require('pusher-js');
const PusherServer = require('pusher');

const HOST = process.env.HERALD_HOST || '127.0.0.1';
const PORT = Number(process.env.HERALD_PORT);
if (!Number.isInteger(PORT) || PORT <= 0) {
  throw new Error('HERALD_PORT must be set to the port of a running Herald server');
}
// The two-node run (../run.sh, node/cluster/): node B's port; node A is HERALD_PORT.
const PORT_B = process.env.HERALD_PORT_B ? Number(process.env.HERALD_PORT_B) : undefined;

// The app under test is the first app of the config.json that run.sh starts Herald with.
const APP = require('../config.json').app_manager.array.apps[0];
const APP_ID = APP.id;
const APP_KEY = APP.key;
const APP_SECRET = APP.secret;

// Upper bound for every single wait in the suite.
const WAIT_MS = 5000;
// How long we watch for something that must NOT happen.
const QUIET_MS = 700;

// Master key for private-encrypted- channels (32 bytes, base64). The SDK derives each channel's
// shared secret from it; Herald never sees it.
const ENCRYPTION_MASTER_KEY_BASE64 = Buffer.alloc(32, 7).toString('base64');

// app: {id, key, secret}; defaults to the app under test. (The webhook tests use other apps of
// the generated config, see ../make_config.py.) port: the node to talk to.
function serverSdk(app = APP, port = PORT) {
  return new PusherServer({
    appId: String(app.id),
    key: app.key,
    secret: app.secret,
    host: HOST,
    port: String(port),
    useTLS: false,
    timeout: WAIT_MS,
    encryptionMasterKeyBase64: ENCRYPTION_MASTER_KEY_BASE64,
  });
}

// A fresh channel name per test, so tests (and test files running in parallel) never share state.
function uniqueName(prefix) {
  return `${prefix}${Date.now().toString(36)}-${crypto.randomBytes(4).toString('hex')}`;
}

// A sign-in signature made the way every server SDK makes it, for user data the npm SDK refuses.
function signUser(app, socketId, user) {
  const userData = JSON.stringify(user);
  const signature = crypto.createHmac('sha256', app.secret).update(`${socketId}::user::${userData}`).digest('hex');
  return { auth: `${app.key}:${signature}`, user_data: userData };
}

/**
 * Creates a pusher-js client whose channel authorization and user authentication are signed
 * locally with the server SDK (the app's auth endpoint, minus HTTP).
 *
 * opts.presence: {user_id, user_info} used as presence channel_data.
 * opts.user: user data object for pusher.signin(). A numeric id (as Laravel's authenticateUser
 *   signs it) is signed here directly: the `pusher` npm SDK refuses anything but a string.
 * opts.badAuth: true, or a predicate on the channel name: sign those private/presence
 *   subscriptions with a wrong signature.
 * opts.badUserAuth: sign the sign-in request with a wrong signature.
 * opts.clientOptions: extra pusher-js options.
 * opts.app: {id, key, secret} of another app than the one under test.
 * opts.port: the node to connect to (default HERALD_PORT).
 */
function makeClient(opts = {}) {
  const app = opts.app || APP;
  const sdk = serverSdk(app);
  const client = new PusherClient(app.key, {
    wsHost: HOST,
    wsPort: opts.port || PORT,
    forceTLS: false,
    enabledTransports: ['ws'],
    cluster: 'mt1',
    disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        try {
          const bad = typeof opts.badAuth === 'function' ? opts.badAuth(channelName) : opts.badAuth;
          if (bad) {
            callback(null, { auth: `${app.key}:${'0'.repeat(64)}` });
            return;
          }
          const presenceData = channelName.startsWith('presence-') ? opts.presence : undefined;
          callback(null, sdk.authorizeChannel(socketId, channelName, presenceData));
        } catch (err) {
          callback(err, null);
        }
      },
    },
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        try {
          const signed = typeof opts.user.id === 'string'
            ? sdk.authenticateUser(socketId, opts.user)
            : signUser(app, socketId, opts.user);
          if (opts.badUserAuth) signed.auth = `${app.key}:${'0'.repeat(64)}`;
          callback(null, signed);
        } catch (err) {
          callback(err, null);
        }
      },
    },
    ...(opts.clientOptions || {}),
  });
  return client;
}

// Tracks clients created during one test and disconnects them all afterwards.
class ClientPool {
  constructor() {
    this.clients = [];
  }

  make(opts) {
    const c = makeClient(opts);
    this.clients.push(c);
    return c;
  }

  async connected(opts) {
    const c = this.make(opts);
    await waitConnected(c);
    return c;
  }

  closeAll() {
    for (const c of this.clients) {
      try {
        c.disconnect();
      } catch (_) {
        // already gone
      }
    }
    this.clients = [];
  }
}

// Runs fn(pool) and always disconnects the pool's clients afterwards.
async function withClients(fn) {
  const pool = new ClientPool();
  try {
    return await fn(pool);
  } finally {
    pool.closeAll();
  }
}

function timeoutError(what, ms) {
  return new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/**
 * Resolves with the first (data, metadata) emitted for `event` on `target` (a pusher-js
 * Channel, client, connection or user facade), rejecting after `ms`. Bind before the action
 * that causes the event.
 */
function nextEvent(target, event, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const handler = (data, metadata) => {
      clearTimeout(timer);
      target.unbind(event, handler);
      resolve({ data, metadata });
    };
    const timer = setTimeout(() => {
      target.unbind(event, handler);
      reject(timeoutError(`event ${event}`, ms));
    }, ms);
    target.bind(event, handler);
  });
}

// Records every emission of `event` on `target` (for "must not receive" assertions).
function record(target, event) {
  const seen = [];
  const handler = (data, metadata) => seen.push({ data, metadata });
  target.bind(event, handler);
  seen.stop = () => target.unbind(event, handler);
  return seen;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Polls `predicate` until it is truthy, failing after `ms`.
async function until(predicate, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = predicate();
    if (v) return v;
    if (Date.now() > deadline) throw timeoutError(what, ms);
    await sleep(20);
  }
}

async function waitConnected(client, ms = WAIT_MS) {
  if (client.connection.state === 'connected') return client;
  await new Promise((resolve, reject) => {
    const onChange = ({ current }) => {
      if (current === 'connected') {
        done();
        resolve();
      } else if (current === 'failed' || current === 'unavailable') {
        done();
        reject(new Error(`connection went to state ${current}`));
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(timeoutError(`connected (state is ${client.connection.state})`, ms));
    }, ms);
    const done = () => {
      clearTimeout(timer);
      client.connection.unbind('state_change', onChange);
    };
    client.connection.bind('state_change', onChange);
  });
  return client;
}

// Subscribes and resolves with {channel, data} once pusher:subscription_succeeded arrives;
// rejects on pusher:subscription_error or after `ms`.
function subscribe(client, name, ms = WAIT_MS) {
  const channel = client.subscribe(name);
  return new Promise((resolve, reject) => {
    const onOk = (data) => {
      done();
      resolve({ channel, data });
    };
    const onErr = (data) => {
      done();
      reject(new Error(`subscription to ${name} failed: ${JSON.stringify(data)}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(timeoutError(`subscription_succeeded on ${name}`, ms));
    }, ms);
    const done = () => {
      clearTimeout(timer);
      channel.unbind('pusher:subscription_succeeded', onOk);
      channel.unbind('pusher:subscription_error', onErr);
    };
    channel.bind('pusher:subscription_succeeded', onOk);
    channel.bind('pusher:subscription_error', onErr);
  });
}

// Parses the JSON body of a `pusher` SDK response (a node-fetch Response).
async function json(responsePromise) {
  const res = await responsePromise;
  if (res.status !== 200) {
    throw new Error(`expected HTTP 200, got ${res.status}: ${await res.text()}`);
  }
  return res.json();
}

module.exports = {
  HOST,
  PORT,
  PORT_B,
  APP_ID,
  APP_KEY,
  APP_SECRET,
  WAIT_MS,
  QUIET_MS,
  serverSdk,
  uniqueName,
  makeClient,
  withClients,
  nextEvent,
  record,
  sleep,
  until,
  waitConnected,
  subscribe,
  json,
};
