'use strict';
// The pusher-js side of tls.test.js, run by it in a child process: Node reads
// NODE_EXTRA_CA_CERTS (the throwaway CA of the TLS Herald) only at start-up, and pusher-js's Node
// transport passes no TLS options to its WebSocket client, so this process is where the CA is
// trusted.
//
//   NODE_EXTRA_CA_CERTS=CA.pem HERALD_TLS_PORT=PORT node node/tls_client.js CHANNEL EVENT
//
// Connects with forceTLS (wss://) to HERALD_TLS_PORT, subscribes to CHANNEL and prints JSON lines
// on stdout: {"ready": {"socketId", "usingTLS"}} once subscribed, then {"event": data} for the
// first EVENT, and exits 0. Any failure, or nothing within the bounds, prints {"error": message}
// and exits 1; a closed stdin (the test is gone) ends it too.

const h = require('./helpers');

const TLS_PORT = Number(process.env.HERALD_TLS_PORT);
const [channelName, eventName] = process.argv.slice(2);

function say(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

async function main() {
  if (!Number.isInteger(TLS_PORT) || TLS_PORT <= 0 || !channelName || !eventName) {
    throw new Error('usage: HERALD_TLS_PORT=PORT node tls_client.js CHANNEL EVENT');
  }
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('NODE_EXTRA_CA_CERTS is not set');
  const client = h.makeClient({
    port: TLS_PORT,
    clientOptions: { forceTLS: true, wsPort: TLS_PORT, wssPort: TLS_PORT },
  });
  try {
    await h.waitConnected(client);
    const { channel } = await h.subscribe(client, channelName);
    const got = h.nextEvent(channel, eventName, 3 * h.WAIT_MS);
    say({ ready: { socketId: client.connection.socket_id, usingTLS: client.connection.isUsingTLS() } });
    say({ event: (await got).data });
  } finally {
    client.disconnect();
  }
}

process.stdin.on('end', () => process.exit(1));
process.stdin.resume();
main().then(
  () => process.exit(0),
  (err) => {
    say({ error: String((err && err.stack) || err) });
    process.exit(1);
  },
);
