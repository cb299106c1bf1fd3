'use strict';
// permessage-deflate on the wire, with Node's `ws` (which offers it on every connection, as
// browsers do): the negotiated parameters, RSV1 on broadcasts above the threshold, the same
// compressed bytes on two sockets, plain frames to a socket without the extension, and a
// compressed client event relayed. run.sh starts Herald with `websocket.compression` "shared"
// from 256 bytes (make_config.py).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const WebSocket = require('ws');
const h = require('./helpers');

const T = { timeout: 20000 };
const URL = `ws://${h.HOST}:${h.PORT}/app/${h.APP_KEY}?protocol=7&client=js&version=8.4.0`;

// A ws client recording the raw frames it is sent (from the TCP socket, before ws inflates
// them) and the messages they carry.
function open(options) {
  const ws = new WebSocket(URL, options);
  const wire = { bytes: Buffer.alloc(0), frames: [] };
  const messages = [];
  const handshake = {};
  ws.on('upgrade', (response) => {
    handshake.extensions = response.headers['sec-websocket-extensions'];
  });
  // At 'open' ws has put what came with the 101 back into the socket's stream: listening
  // from here on sees every frame whole.
  ws.on('open', () => {
    ws._socket.on('data', (chunk) => {
      wire.bytes = Buffer.concat([wire.bytes, chunk]);
      wire.frames.push(...takeFrames(wire));
    });
  });
  ws.on('message', (data) => messages.push(JSON.parse(data.toString())));
  return { ws, wire, messages, handshake };
}

// Whole server frames at the front of wire.bytes: {rsv1, opcode, payload}.
function takeFrames(wire) {
  const frames = [];
  for (;;) {
    const b = wire.bytes;
    if (b.length < 2) return frames;
    let length = b[1] & 0x7f;
    let at = 2;
    if (length === 126) {
      if (b.length < 4) return frames;
      length = b.readUInt16BE(2);
      at = 4;
    } else if (length === 127) {
      if (b.length < 10) return frames;
      length = Number(b.readBigUInt64BE(2));
      at = 10;
    }
    if (b.length < at + length) return frames;
    frames.push({ rsv1: (b[0] & 0x40) !== 0, opcode: b[0] & 0x0f, payload: b.subarray(at, at + length) });
    wire.bytes = b.subarray(at + length);
  }
}

async function established(client) {
  await h.until(() => client.messages.some((m) => m.event === 'pusher:connection_established'), 'connection_established');
  const message = client.messages.find((m) => m.event === 'pusher:connection_established');
  return JSON.parse(message.data).socket_id;
}

async function subscribe(client, channel, socketId) {
  const data = { channel };
  if (channel.startsWith('private-')) {
    const signature = crypto.createHmac('sha256', h.APP_SECRET).update(`${socketId}:${channel}`).digest('hex');
    data.auth = `${h.APP_KEY}:${signature}`;
  }
  client.ws.send(JSON.stringify({ event: 'pusher:subscribe', data }));
  await h.until(() => client.messages.some(
    (m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === channel), `subscribed to ${channel}`);
}

function closeAll(clients) {
  for (const c of clients) c.ws.terminate();
}

test('ws negotiates permessage-deflate without context takeover and with a window value', T, async () => {
  const client = open();
  try {
    await established(client);
    assert.equal(client.ws.extensions, 'permessage-deflate');
    const header = client.handshake.extensions;
    const params = header.split(';').map((p) => p.trim());
    assert.equal(params[0], 'permessage-deflate');
    assert.ok(params.includes('server_no_context_takeover'), header);
    assert.ok(params.includes('client_no_context_takeover'), header);
    assert.ok(params.includes('client_max_window_bits=15'), header);
  } finally {
    closeAll([client]);
  }
});

test('an offer of a smaller server window is answered without the extension', T, async () => {
  const client = open({ perMessageDeflate: { serverMaxWindowBits: 10 } });
  try {
    await established(client);
    assert.equal(client.ws.extensions, '');
    assert.equal(client.handshake.extensions, undefined);
  } finally {
    closeAll([client]);
  }
});

test('a broadcast goes compressed once (RSV1, the same bytes) and plain without the extension', T, async () => {
  const first = open();
  const second = open();
  const plain = open({ perMessageDeflate: false });
  const clients = [first, second, plain];
  try {
    const channel = h.uniqueName('deflate-');
    for (const c of clients) await subscribe(c, channel, await established(c));
    const quotes = Array.from({ length: 40 }, (_, i) => ({ symbol: `SYM${i}`, bid: 100 + i, ask: 101 + i }));
    await h.json(h.serverSdk().trigger(channel, 'quotes', quotes));
    for (const c of clients) {
      await h.until(() => c.messages.some((m) => m.event === 'quotes'), 'the quotes event');
      const message = c.messages.find((m) => m.event === 'quotes');
      assert.deepEqual(JSON.parse(message.data), quotes, 'the same event after inflating');
    }
    // The last data frame each socket got is the event's.
    const last = (c) => c.wire.frames.filter((f) => f.opcode === 1).at(-1);
    const [a, b, p] = clients.map(last);
    assert.equal(a.rsv1, true, 'RSV1 set on the compressed frame');
    assert.equal(b.rsv1, true);
    assert.ok(a.payload.equals(b.payload), 'the same compressed bytes on both sockets');
    assert.ok(a.payload.length < JSON.stringify(quotes).length / 2);
    assert.equal(p.rsv1, false, 'plain frame without the extension');
    assert.ok(p.payload.includes('"event":"quotes"'));
    // Protocol events are never compressed.
    const succeeded = first.wire.frames.find((f) => f.payload.includes('pusher_internal:subscription_succeeded'));
    assert.equal(succeeded.rsv1, false);
  } finally {
    closeAll(clients);
  }
});

test('a compressed client event is accepted and relayed', T, async () => {
  const sender = open();
  const receiver = open({ perMessageDeflate: false });
  try {
    const channel = h.uniqueName('private-deflate-');
    await subscribe(sender, channel, await established(sender));
    await subscribe(receiver, channel, await established(receiver));
    const text = 'compress me '.repeat(200);
    // ws compresses messages of 1024 bytes or more once the extension is negotiated.
    const sent = [];
    const socket = sender.ws._socket;
    const write = socket.write.bind(socket);
    socket.write = (chunk, ...rest) => {
      sent.push(Buffer.from(chunk));
      return write(chunk, ...rest);
    };
    sender.ws.send(JSON.stringify({ event: 'client-long', channel, data: { text } }));
    await h.until(() => receiver.messages.some((m) => m.event === 'client-long'), 'the relayed client event');
    const relayed = receiver.messages.find((m) => m.event === 'client-long');
    assert.equal(relayed.data.text, text);
    assert.ok(sent.length > 0 && sent[0][0] === 0xc1, 'the client sent it compressed (FIN, RSV1, text)');
  } finally {
    closeAll([sender, receiver]);
  }
});
