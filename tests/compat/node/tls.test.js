'use strict';
// TLS on Herald's main port, seen by the official clients: this file starts a second Herald with
// `ssl` enabled (../tls_herald.py: a throwaway CA and server certificate made with openssl in a
// temporary directory, the config written by make_config.py; HERALD_BIN names the binary), then
// a pusher-js client with forceTLS (wss://, in a child process that trusts the CA through
// NODE_EXTRA_CA_CERTS, see tls_client.js) receives what the `pusher` SDK triggers over https
// (useTLS, with an https.Agent trusting only that CA). Herald and the client are stopped after.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const https = require('node:https');
const path = require('node:path');
const readline = require('node:readline');
const PusherServer = require('pusher');
const h = require('./helpers');

const T = { timeout: 30000 };

const COMPAT_DIR = path.resolve(__dirname, '..');
const PYTHON = process.env.HERALD_COMPAT_PYTHON || path.join(COMPAT_DIR, '.venv', 'bin', 'python');
assert.ok(process.env.HERALD_BIN, 'run through tests/compat/run.sh (needs HERALD_BIN for the TLS Herald)');
// The TLS Herald's start-up: certificates, config, and GET /up answering over https.
const START_MS = 30000;

/**
 * Spawns a child whose stdout is JSON lines; next(ms) resolves with the next line parsed, and
 * rejects after `ms` or when the child exits first (with its stderr). stop() ends the child:
 * stdin closed, SIGTERM after 5 s, SIGKILL after 5 s more.
 */
function spawnJsonLines(command, args, options) {
  const child = spawn(command, args, { ...options, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = [];
  const waiters = [];
  let stderr = '';
  let exited = null;
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(line);
    flush();
  });
  const gone = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      flush();
      resolve();
    });
  });
  child.on('error', (err) => {
    exited = { error: err };
    flush();
  });
  function flush() {
    while (waiters.length && (lines.length || exited)) {
      const w = waiters.shift();
      clearTimeout(w.timer);
      if (lines.length) {
        const line = lines.shift();
        try {
          w.resolve(JSON.parse(line));
        } catch (err) {
          w.reject(new Error(`${command}: not JSON: ${line}`));
        }
      } else {
        w.reject(new Error(`${command} ${args.join(' ')} exited (${JSON.stringify(exited)}): ${stderr}`));
      }
    }
  }
  function next(ms) {
    return new Promise((resolve, reject) => {
      const w = { resolve, reject };
      w.timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`timed out after ${ms} ms waiting for a line from ${command}: ${stderr}`));
      }, ms);
      waiters.push(w);
      flush();
    });
  }
  async function stop() {
    if (exited) return;
    child.stdin.end();
    const escalate = (sig, ms) =>
      Promise.race([gone.then(() => true), h.sleep(ms).then(() => false)]).then((done) => {
        if (!done && !exited) child.kill(sig);
        return done;
      });
    if (!(await escalate('SIGTERM', 5000))) {
      if (!(await escalate('SIGKILL', 5000))) await gone;
    }
  }
  return { child, next, stop };
}

let herald = null;
let tls = null; // {port, ca (the CA's PEM path), caPem}

before(async () => {
  herald = spawnJsonLines(PYTHON, [path.join(COMPAT_DIR, 'tls_herald.py')], { cwd: COMPAT_DIR });
  const started = await herald.next(START_MS);
  tls = { ...started, caPem: fs.readFileSync(started.ca) };
});

after(async () => {
  if (herald) await herald.stop();
  herald = null;
});

function tlsSdk(options = {}) {
  return new PusherServer({
    appId: String(h.APP_ID),
    key: h.APP_KEY,
    secret: h.APP_SECRET,
    host: h.HOST,
    port: String(tls.port),
    useTLS: true,
    timeout: h.WAIT_MS,
    ...options,
  });
}

test('pusher-js over wss:// receives an event the pusher SDK triggers over https://', T, async () => {
  const sdk = tlsSdk({ agent: new https.Agent({ ca: tls.caPem }) });
  const channel = h.uniqueName('public-tls-');
  const client = spawnJsonLines(process.execPath, [path.join(__dirname, 'tls_client.js'), channel, 'tls-update'], {
    cwd: COMPAT_DIR,
    env: { ...process.env, NODE_EXTRA_CA_CERTS: tls.ca, HERALD_TLS_PORT: String(tls.port) },
  });
  try {
    const ready = await client.next(3 * h.WAIT_MS);
    assert.ok(ready.ready, `the pusher-js client failed: ${JSON.stringify(ready)}`);
    assert.equal(ready.ready.usingTLS, true);

    const info = await h.json(sdk.get({ path: `/channels/${channel}`, params: { info: 'subscription_count' } }));
    assert.deepEqual(info, { occupied: true, subscription_count: 1 });

    const res = await h.json(sdk.trigger(channel, 'tls-update', { over: 'tls', n: 7 }));
    assert.deepEqual(res, {});
    const got = await client.next(3 * h.WAIT_MS);
    assert.deepEqual(got, { event: { over: 'tls', n: 7 } });
  } finally {
    await client.stop();
  }
});

test('the pusher SDK refuses the TLS port without the CA', T, async () => {
  // Node's own trust store does not know the throwaway CA: the call must fail in the handshake,
  // so the calls above really went over verified TLS.
  await assert.rejects(
    tlsSdk().trigger(h.uniqueName('public-tls-'), 'never', {}),
    (err) => /certificate/i.test(`${err.message} ${err.error && err.error.message}`),
  );
});
