'use strict';
// Webhook receiver for the Node suite, started by ../run.sh before Herald:
//
//   node node/webhook_receiver.js PORT CONFIG_PATH APP_ID
//
// Listens on 127.0.0.1:PORT. Every POST is checked the way a Pusher customer's server does it,
// with the official `pusher` npm SDK: pusher.webhook({headers, rawBody}).isValid() with the
// credentials of the app of CONFIG_PATH (the generated Herald config) whose webhook endpoint is
// the URL the request came to (http://127.0.0.1:PORT plus its path: app 100005's /user-events,
// say), or of app APP_ID for a path no app names (a path two apps name is refused at start-up).
// A request with an Authorization header (the `"signature": "jwt"` endpoints) is also checked the
// way a LiveKit customer's server does it, with livekit-server-sdk's WebhookReceiver.receive(body,
// header), with the same app's key and secret. Each request is recorded (path, the id of the app
// it was checked for, headers as sent, raw body, validity, getEvents()) and answered 200, except
// on /flaky and /jwt-flaky, whose first attempt of every Webhook-Id is answered 503 so that Herald
// retries. An invalid request is recorded with `valid: false` (and answered 200 all the same).
// GET /_log returns the records as JSON; node/webhooks.test.js and node/cluster/ poll it.

const fs = require('node:fs');
const http = require('node:http');
const PusherServer = require('pusher');
const { WebhookReceiver } = require('livekit-server-sdk');

const [portArg, configPath, appId] = process.argv.slice(2);
const port = Number(portArg);
if (!Number.isInteger(port) || port <= 0 || !configPath || !appId) {
  console.error('usage: node webhook_receiver.js PORT CONFIG_PATH APP_ID');
  process.exit(2);
}
const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const app = config.app_manager.array.apps.find((a) => String(a.id) === appId);
if (!app) {
  console.error(`no app ${appId} in ${configPath}`);
  process.exit(2);
}

// The verifiers of one app: the `pusher` SDK and LiveKit's receiver with its key and secret.
function verifiers(a) {
  return {
    appId: String(a.id),
    pusher: new PusherServer({ appId: String(a.id), key: a.key, secret: a.secret }),
    livekit: new WebhookReceiver(a.key, a.secret),
  };
}
const fallback = verifiers(app);
// Path -> the verifiers of the app whose endpoint URL is this receiver plus that path.
const byPath = new Map();
for (const a of config.app_manager.array.apps) {
  for (const endpoint of a.webhooks || []) {
    if (typeof endpoint.url !== 'string') continue;
    const url = new URL(endpoint.url);
    if (url.hostname !== '127.0.0.1' || Number(url.port) !== port) continue;
    const path = url.pathname + url.search;
    const known = byPath.get(path);
    if (known && known.appId !== String(a.id)) {
      console.error(`${path} is an endpoint of apps ${known.appId} and ${a.id} in ${configPath}`);
      process.exit(2);
    }
    if (!known) byPath.set(path, verifiers(a));
  }
}
const FLAKY = new Set(['/flaky', '/jwt-flaky']);
const MAX_BODY = 1024 * 1024;
const records = [];
const flakySeen = new Set();

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/_log') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(records));
    return;
  }
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size <= MAX_BODY) chunks.push(c);
  });
  req.on('end', async () => {
    const rawBody = Buffer.concat(chunks).toString('utf8');
    const { appId: checkedAs, pusher, livekit } = byPath.get(req.url) || fallback;
    // null without an Authorization header; else whether LiveKit's receiver accepted it.
    let livekitResult = null;
    if (req.headers.authorization !== undefined) {
      try {
        await livekit.receive(rawBody, req.headers.authorization);
        livekitResult = { valid: true, error: null };
      } catch (e) {
        livekitResult = { valid: false, error: String(e && e.message) };
      }
    }
    const webhook = pusher.webhook({ headers: req.headers, rawBody });
    const valid = webhook.isValid();
    let events = null;
    let timeMs = null;
    if (valid) {
      events = webhook.getEvents();
      timeMs = webhook.getTime().getTime();
    }
    const webhookId = req.headers['webhook-id'] || null;
    let status = 200;
    if (FLAKY.has(req.url) && webhookId && !flakySeen.has(webhookId)) {
      flakySeen.add(webhookId);
      status = 503;
    }
    records.push({
      seq: records.length,
      receivedAt: Date.now(),
      method: req.method,
      path: req.url,
      appId: checkedAs,
      httpVersion: req.httpVersion,
      rawHeaders: req.rawHeaders,
      headers: req.headers,
      rawBody,
      valid,
      livekit: livekitResult,
      events,
      timeMs,
      webhookId,
      status,
    });
    res.writeHead(status, { 'Content-Type': 'text/plain' });
    res.end(status === 200 ? 'ok' : 'try again');
  });
});

server.listen(port, '127.0.0.1', () => {
  const others = [...byPath].filter(([, v]) => v.appId !== appId).map(([p, v]) => `${p} for app ${v.appId}`);
  console.log(`webhook receiver (node) listening on 127.0.0.1:${port} for app ${appId}${others.length ? ` (${others.join(', ')})` : ''}`);
});

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
