'use strict';
// Webhook receiver for the Node suite, started by ../run.sh before Herald:
//
//   node node/webhook_receiver.js PORT CONFIG_PATH APP_ID
//
// Listens on 127.0.0.1:PORT. Every POST is checked the way a Pusher customer's server does it,
// with the official `pusher` npm SDK: pusher.webhook({headers, rawBody}).isValid() with the
// credentials of app APP_ID from CONFIG_PATH (the generated Herald config). A request with an
// Authorization header (the `"signature": "jwt"` endpoints) is also checked the way a LiveKit
// customer's server does it, with livekit-server-sdk's WebhookReceiver.receive(body, header).
// Each request is recorded (path, headers as sent, raw body, validity, getEvents()) and answered
// 200, except on /flaky and /jwt-flaky, whose first attempt of every Webhook-Id is answered 503
// so that Herald retries. GET /_log returns the records as JSON; node/webhooks.test.js polls it.

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

const pusher = new PusherServer({ appId: String(app.id), key: app.key, secret: app.secret });
const livekit = new WebhookReceiver(app.key, app.secret);
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
  console.log(`webhook receiver (node) listening on 127.0.0.1:${port} for app ${appId}`);
});

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
