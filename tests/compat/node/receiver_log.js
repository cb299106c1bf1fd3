'use strict';
// Reads the log of node/webhook_receiver.js (GET /_log), shared by the webhook tests of the
// single-node and the two-node runs.

const assert = require('node:assert/strict');
const h = require('./helpers');

/** The log readers of the receiver at base URL `receiver`. */
function receiverLog(receiver) {
  async function fetchLog() {
    const res = await fetch(`${receiver}/_log`, { signal: AbortSignal.timeout(2000) });
    assert.equal(res.status, 200);
    return res.json();
  }

  // Requests to `path`. Every one must have passed pusher.webhook().isValid(), and every one
  // with an Authorization header livekit-server-sdk's WebhookReceiver.receive() too.
  async function requests(path) {
    const log = (await fetchLog()).filter((r) => r.path === path);
    const invalid = log.filter((r) => !r.valid);
    assert.deepEqual(invalid, [], `requests to ${path} that pusher.webhook().isValid() rejected`);
    const refused = log.filter((r) => r.livekit && !r.livekit.valid);
    assert.deepEqual(refused, [], `requests to ${path} that LiveKit's WebhookReceiver refused`);
    return log;
  }

  // The events `path` accepted (answered 200), one per delivery: deliveries are at least once,
  // so they are de-duplicated on Webhook-Id as the README tells receivers to do (an event sent
  // twice under two ids stays twice). `match` selects by channel name.
  async function delivered(path, match) {
    const seen = new Set();
    const out = [];
    for (const r of await requests(path)) {
      if (r.status !== 200 || seen.has(r.webhookId)) continue;
      seen.add(r.webhookId);
      for (const e of r.events) if (match(e.channel)) out.push(e);
    }
    return out;
  }

  // Polls until predicate(events) holds (bounded by `ms`); returns the events.
  async function waitFor(path, match, predicate, what, ms = h.WAIT_MS) {
    const deadline = Date.now() + ms;
    for (;;) {
      const events = await delivered(path, match);
      if (predicate(events)) return events;
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting on ${path} for ${what}; got ${JSON.stringify(events)}`);
      }
      await h.sleep(50);
    }
  }

  return { requests, delivered, waitFor };
}

module.exports = { receiverLog };
