'use strict';
// A tiny raw RESP client (node:net, no Redis library) for the Sentinel failover run: the test
// sends `WAIT 1 5000` to the primary and asks the sentinels which server is the primary, and
// ../../run.sh waits with it, through the command line, for the replica's link and for the
// sentinels to know the replica and each other before the test starts.
//
//   node node/sentinel/redis_tool.js wait-replica PORT
//       until the replica on PORT reports master_link_status:up (at most 15 s)
//   node node/sentinel/redis_tool.js wait-sentinels NAME PORT...
//       until every sentinel lists one replica and every other sentinel for NAME (at most 30 s)
//
// Exits non-zero (with the last answer) when the bound passes. Everything is 127.0.0.1.

const net = require('node:net');

// Parses one RESP reply at `offset` of `buf`; returns [value, nextOffset], or null when the
// buffer does not hold the whole reply yet. Errors (-ERR ...) come back as Error values.
function parse(buf, offset) {
  const eol = buf.indexOf('\r\n', offset);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[offset]);
  const line = buf.toString('utf8', offset + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
      return [line, next];
    case '-':
      return [new Error(line), next];
    case ':':
      return [Number(line), next];
    case '$': {
      const len = Number(line);
      if (len < 0) return [null, next];
      if (buf.length < next + len + 2) return null;
      return [buf.toString('utf8', next, next + len), next + len + 2];
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return [null, next];
      const items = [];
      let at = next;
      for (let i = 0; i < count; i += 1) {
        const item = parse(buf, at);
        if (!item) return null;
        items.push(item[0]);
        at = item[1];
      }
      return [items, at];
    }
    default:
      throw new Error(`unexpected RESP type ${JSON.stringify(type)}`);
  }
}

/** Sends one command to 127.0.0.1:`port` and resolves with its reply (rejects on a timeout,
 * a refused connection or a closed socket). */
function command(port, args, timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    let settled = false;
    const finish = (err, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => finish(new Error(`no answer from 127.0.0.1:${port} to ${args[0]} within ${timeoutMs} ms`)), timeoutMs);
    socket.on('connect', () => {
      const parts = [`*${args.length}\r\n`];
      for (const a of args) parts.push(`$${Buffer.byteLength(String(a))}\r\n${a}\r\n`);
      socket.write(parts.join(''));
    });
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      let parsed;
      try {
        parsed = parse(buf, 0);
      } catch (err) {
        finish(err);
        return;
      }
      if (parsed) finish(null, parsed[0]);
    });
    socket.on('error', (err) => finish(err));
    socket.on('close', () => finish(new Error(`127.0.0.1:${port} closed the connection before answering ${args[0]}`)));
  });
}

/** The replies to `command`, or the error's message as a string (for polling). */
async function tryCommand(port, args, timeoutMs) {
  try {
    return await command(port, args, timeoutMs);
  } catch (err) {
    return `error: ${err.message}`;
  }
}

/** `SENTINEL get-master-addr-by-name`: the primary's port as sentinel `port` names it. */
async function primaryPort(sentinelPort, name) {
  const addr = await command(sentinelPort, ['SENTINEL', 'get-master-addr-by-name', name]);
  return Array.isArray(addr) ? Number(addr[1]) : null;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function poll(what, ms, check) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    const [done, state] = await check();
    last = state;
    if (done) return;
    if (Date.now() > deadline) throw new Error(`${what} not within ${ms} ms; last: ${JSON.stringify(last)}`);
    await sleep(100);
  }
}

async function waitReplica(port) {
  await poll(`the replica on 127.0.0.1:${port} in sync`, 15000, async () => {
    const info = await tryCommand(port, ['INFO', 'replication']);
    return [typeof info === 'string' && /master_link_status:up/.test(info), info];
  });
}

async function waitSentinels(name, ports) {
  await poll('every sentinel knowing the replica and the other sentinels', 30000, async () => {
    const seen = [];
    let ready = true;
    for (const port of ports) {
      const replicas = await tryCommand(port, ['SENTINEL', 'replicas', name]);
      const others = await tryCommand(port, ['SENTINEL', 'sentinels', name]);
      const r = Array.isArray(replicas) ? replicas.length : replicas;
      const o = Array.isArray(others) ? others.length : others;
      seen.push({ port, replicas: r, sentinels: o });
      ready = ready && r === 1 && o === ports.length - 1;
    }
    return [ready, seen];
  });
}

async function main(argv) {
  const [what, ...rest] = argv;
  if (what === 'wait-replica' && rest.length === 1) return waitReplica(Number(rest[0]));
  if (what === 'wait-sentinels' && rest.length >= 2) return waitSentinels(rest[0], rest.slice(1).map(Number));
  throw new Error('usage: redis_tool.js wait-replica PORT | wait-sentinels NAME PORT...');
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (err) => {
      console.error(`error: ${err.message}`);
      process.exit(1);
    },
  );
}

module.exports = { command, primaryPort };
