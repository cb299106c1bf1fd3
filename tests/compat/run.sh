#!/usr/bin/env bash
# Official-client compatibility suites for Herald.
#
#   tests/compat/run.sh HERALD_BIN
#
# Installs the suites' dependencies (npm ci; a Python venv in tests/compat/.venv), then
#   - starts two webhook receivers on free loopback ports (node/webhook_receiver.js, which
#     verifies with the `pusher` npm SDK and, for JWT-signed requests, livekit-server-sdk, and
#     python/webhook_receiver.py, which records requests for the standardwebhooks / livekit-api /
#     botocore checks),
#   - writes the server config (config.json plus the webhook apps pointing at those receivers,
#     see make_config.py) to a temporary file,
#   - starts the given herald binary on a free loopback port with it, and runs
#       1. the Node suite (pusher-js, the `pusher` npm server SDK, livekit-server-sdk) under
#          `node --test`,
#       2. the Python suite (the `pusher` PyPI server SDK, standardwebhooks, livekit-api, botocore)
#          under pytest,
#     (node/tls.test.js and python/test_tls.py each start a second herald with TLS themselves,
#     through tls_herald.py, from HERALD_BIN: a throwaway CA and certificate made with openssl),
#   - then stops it, starts a private redis-server and two cluster nodes A and B on it (and a
#     third node C, which node/cluster/watchlist.test.js kills with SIGKILL), and runs
#       3. the two-node suite (node/cluster/: pusher-js on node A, the `pusher` SDK on node B),
#   - then stops those, starts a private Sentinel setup (a redis-server primary, one replica and
#     three redis-sentinel processes monitoring it as `mymaster`) and two nodes that find Redis
#     through the sentinels (no adapter.redis.url), and runs
#       4. the failover suite (node/sentinel/: pusher-js on node A, the `pusher` SDK on node B;
#          the test kills the primary with SIGKILL, REDIS_PRIMARY_PID).
# Herald and the receivers are always stopped on exit. Exits non-zero if anything fails.
# Everything listens on and talks to 127.0.0.1 only.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 HERALD_BIN" >&2
  exit 2
fi
herald_bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
if [ ! -x "$herald_bin" ]; then
  echo "error: $1 is not an executable herald binary" >&2
  exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

# Per-suite wall-clock bounds (seconds); each suite normally takes well under 30 s.
suite_timeout=150

if ! command -v openssl >/dev/null 2>&1; then
  echo "error: openssl is not installed (the TLS tests make their certificates with it)" >&2
  exit 2
fi

echo "== compat: installing Node dependencies (npm ci)"
npm ci --no-audit --no-fund --loglevel=error </dev/null

echo "== compat: installing Python dependencies (.venv)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt </dev/null
py=.venv/bin/python

# A free TCP port on 127.0.0.1 (the kernel picks it; the socket is closed right away).
free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# N distinct free TCP ports on 127.0.0.1 (all bound at once, so no two are the same; then closed).
free_ports() {
  "$py" -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()' "$1"
}

# From here on everything is local: no proxy may be used (Herald's HTTP client, urllib in the
# tests and the start-up probes would all honour these variables).
unset HTTP_PROXY http_proxy HTTPS_PROXY https_proxy ALL_PROXY all_proxy
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

# Three distinct free ports: Herald, the Node receiver, the Python receiver.
port="$(free_port)"
node_hook_port="$(free_port)"
py_hook_port="$(free_port)"
for _ in $(seq 1 20); do
  [ "$node_hook_port" != "$port" ] && break
  node_hook_port="$(free_port)"
done
for _ in $(seq 1 20); do
  [ "$py_hook_port" != "$port" ] && [ "$py_hook_port" != "$node_hook_port" ] && break
  py_hook_port="$(free_port)"
done
work="$(mktemp -d -t herald-compat.XXXXXX)"
log="$work/herald.log"
config="$work/config.json"
cluster_config="$work/cluster.json"
server_pid=""
node_a_pid=""
node_b_pid=""
node_c_pid=""
redis_pid=""
primary_pid=""
replica_pid=""
sentinel_pids=""
sentinel_a_pid=""
sentinel_b_pid=""
node_hook_pid=""
py_hook_pid=""

# Fake AWS credentials for the Lambda endpoints; the Python suite checks the SigV4 signature
# with them. No AWS endpoint is ever contacted (the Lambda endpoint_url is the local receiver).
aws_access_key_id=AKIDCOMPAT
aws_secret_access_key=compat-secret-key

stop_pid() {
  local pid="$1"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}

cleanup() {
  local rc=$?
  # Herald first (it flushes pending webhooks to the receivers on shutdown), then the receivers.
  stop_pid "$server_pid"
  stop_pid "$node_a_pid"
  stop_pid "$node_b_pid"
  stop_pid "$node_c_pid"
  stop_pid "$redis_pid"
  stop_pid "$sentinel_a_pid"
  stop_pid "$sentinel_b_pid"
  for pid in $sentinel_pids; do
    stop_pid "$pid"
  done
  stop_pid "$replica_pid"
  stop_pid "$primary_pid"
  stop_pid "$node_hook_pid"
  stop_pid "$py_hook_pid"
  if [ "$rc" -ne 0 ]; then
    for f in herald.log node-a.log node-b.log node-c.log redis.log \
      sentinel-node-a.log sentinel-node-b.log primary.log replica.log \
      sentinel-1.log sentinel-2.log sentinel-3.log node-receiver.log python-receiver.log; do
      if [ -s "$work/$f" ]; then
        echo "== compat: last lines of $f"
        tail -n 40 "$work/$f" || true
      fi
    done
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (at most 20 s) until GET $2 answers 200, failing if process $1 exits first.
wait_http() {
  local pid="$1" url="$2" what="$3"
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "error: $what exited during startup" >&2
      return 1
    fi
    if "$py" -c 'import sys, urllib.request
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=1)
    sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)' "$url"; then
      return 0
    fi
    sleep 0.2
  done
  echo "error: $what did not answer GET $url within 20 s" >&2
  return 1
}

# The decision hook's port: node/decision_hooks.test.js listens on it (and, to test an outage,
# at first does not).
decision_hook_port="$(free_port)"
export DECISION_HOOK_PORT="$decision_hook_port"
"$py" make_config.py "$config" "$node_hook_port" "$py_hook_port"
node_hook_app="$("$py" -c 'import make_config; print(make_config.WEBHOOK_NODE_APP["id"])')"

echo "== compat: starting the webhook receivers on 127.0.0.1:$node_hook_port (node) and 127.0.0.1:$py_hook_port (python)"
"$py" python/webhook_receiver.py "$py_hook_port" </dev/null >"$work/python-receiver.log" 2>&1 &
py_hook_pid=$!
node node/webhook_receiver.js "$node_hook_port" "$config" "$node_hook_app" </dev/null \
  >"$work/node-receiver.log" 2>&1 &
node_hook_pid=$!
wait_http "$py_hook_pid" "http://127.0.0.1:$py_hook_port/_requests" "the Python webhook receiver"
wait_http "$node_hook_pid" "http://127.0.0.1:$node_hook_port/_log" "the Node webhook receiver"

# start_herald NODE_ID PORT CONFIG LOG: starts the binary in the background, its pid in
# $herald_pid. The env overrides that could change the app under test are cleared; only host,
# port, metrics and the node id are set. AWS: only the fake key pair above; no profile, file,
# region or metadata.
start_herald() {
  env -u HERALD_APP_ID -u HERALD_APP_KEY -u HERALD_APP_SECRET -u HERALD_DEBUG -u HERALD_METRICS_PORT \
    -u AWS_SESSION_TOKEN -u AWS_PROFILE -u AWS_SHARED_CREDENTIALS_FILE -u AWS_CONFIG_FILE \
    -u AWS_REGION -u AWS_DEFAULT_REGION \
    AWS_ACCESS_KEY_ID="$aws_access_key_id" AWS_SECRET_ACCESS_KEY="$aws_secret_access_key" \
    AWS_EC2_METADATA_DISABLED=true HOME="$work" HERALD_NODE_ID="compat-$1" \
    HERALD_HOST=127.0.0.1 HERALD_PORT="$2" HERALD_METRICS_ENABLED=false \
    "$herald_bin" --config "$3" </dev/null >"$4" 2>&1 &
  herald_pid=$!
}

echo "== compat: starting $herald_bin on 127.0.0.1:$port"
start_herald single "$port" "$config" "$log"
server_pid=$herald_pid
wait_http "$server_pid" "http://127.0.0.1:$port/up" "herald"

export HERALD_HOST=127.0.0.1
export HERALD_PORT="$port"
export HERALD_URL="http://127.0.0.1:$port"
export HERALD_COMPAT_CONFIG="$config"
# For the TLS tests, which start their own herald (tls_herald.py).
export HERALD_BIN="$herald_bin"
export WEBHOOK_NODE_URL="http://127.0.0.1:$node_hook_port"
export WEBHOOK_PYTHON_URL="http://127.0.0.1:$py_hook_port"
export WEBHOOK_AWS_ACCESS_KEY_ID="$aws_access_key_id"
export WEBHOOK_AWS_SECRET_ACCESS_KEY="$aws_secret_access_key"

status=0

# livekit-server-sdk's "exports" hide its package.json from require(): read the file instead.
livekit_node_version="$(node -p 'JSON.parse(require("fs").readFileSync("node_modules/livekit-server-sdk/package.json", "utf8")).version')"
echo "== compat: Node suite (pusher-js $(node -p 'require("pusher-js/package.json").version'), pusher $(node -p 'require("pusher/package.json").version'), livekit-server-sdk $livekit_node_version)"
# --test-force-exit: after a server-initiated close (4009), pusher-js's bundled faye-websocket
# leaves a 30 s close timer running on the already-closed socket, which would otherwise keep each
# test process alive for 30 s after its tests have finished.
if ! timeout --kill-after=5 "$suite_timeout" \
  node --test --test-force-exit node/*.test.js </dev/null; then
  echo "== compat: Node suite FAILED" >&2
  status=1
fi

echo "== compat: Python suite ($("$py" -c 'import importlib.metadata as m; print(", ".join(p + " " + m.version(p) for p in ("pusher", "standardwebhooks", "livekit-api", "botocore")))'))"
if ! timeout --kill-after=5 "$suite_timeout" \
  "$py" -m pytest -p no:cacheprovider -q python </dev/null; then
  echo "== compat: Python suite FAILED" >&2
  status=1
fi

if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "error: herald died during the suites" >&2
  status=1
fi
stop_pid "$server_pid"
server_pid=""

# The two-node run: a private redis-server and nodes A and B on it, the same apps and receivers.
redis_port="$(free_port)"
port_a="$(free_port)"
port_b="$(free_port)"
port_c="$(free_port)"
for _ in $(seq 1 20); do
  [ "$port_a" != "$redis_port" ] && [ "$port_b" != "$redis_port" ] && [ "$port_c" != "$redis_port" ] \
    && [ "$port_a" != "$port_b" ] && [ "$port_c" != "$port_a" ] && [ "$port_c" != "$port_b" ] && break
  port_a="$(free_port)"
  port_b="$(free_port)"
  port_c="$(free_port)"
done
echo "== compat: two-node run (redis-server on 127.0.0.1:$redis_port, nodes on $port_a and $port_b, node C to be killed on $port_c)"
if ! command -v redis-server >/dev/null 2>&1; then
  echo "error: redis-server is not installed (scripts/test.sh installs it)" >&2
  exit 1
fi
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
  --dir "$work" --maxmemory-policy noeviction </dev/null >"$work/redis.log" 2>&1 &
redis_pid=$!
"$py" make_config.py "$cluster_config" "$node_hook_port" "$py_hook_port" "redis://127.0.0.1:$redis_port/0"
start_herald A "$port_a" "$cluster_config" "$work/node-a.log"
node_a_pid=$herald_pid
start_herald B "$port_b" "$cluster_config" "$work/node-b.log"
node_b_pid=$herald_pid
# Node C: only node/cluster/watchlist.test.js uses it, and kills it with SIGKILL (HERALD_PID_C)
# to see a dead node's users go offline on the survivors.
start_herald C "$port_c" "$cluster_config" "$work/node-c.log"
node_c_pid=$herald_pid
wait_http "$node_a_pid" "http://127.0.0.1:$port_a/up" "node A"
wait_http "$node_b_pid" "http://127.0.0.1:$port_b/up" "node B"
wait_http "$node_c_pid" "http://127.0.0.1:$port_c/up" "node C"

echo "== compat: Node two-node suite (pusher-js on node A, the pusher SDK on node B)"
if ! HERALD_PORT="$port_a" HERALD_PORT_B="$port_b" HERALD_PORT_C="$port_c" HERALD_PID_C="$node_c_pid" \
  HERALD_COMPAT_CONFIG="$cluster_config" \
  timeout --kill-after=5 "$suite_timeout" node --test --test-force-exit node/cluster/*.test.js </dev/null; then
  echo "== compat: Node two-node suite FAILED" >&2
  status=1
fi
for pid in "$node_a_pid" "$node_b_pid" "$redis_pid"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "error: a node or redis-server died during the two-node suite" >&2
    status=1
  fi
done

stop_pid "$node_a_pid"
stop_pid "$node_b_pid"
stop_pid "$node_c_pid"
stop_pid "$redis_pid"
node_a_pid=""
node_b_pid=""
node_c_pid=""
redis_pid=""

# The Sentinel failover run: a primary, one replica (diskless sync at once) and three sentinels
# (down after 1 s, failover timeout 5 s, quorum 2; their config files in $work/sentinel), and
# two nodes with the same apps and receivers that ask the sentinels for the primary. The test
# kills the primary with SIGKILL (REDIS_PRIMARY_PID) once the replica has every write (WAIT 1).
if ! command -v redis-sentinel >/dev/null 2>&1; then
  echo "error: redis-sentinel is not installed (scripts/test.sh installs it)" >&2
  exit 1
fi
read -r primary_port replica_port sentinel_port_1 sentinel_port_2 sentinel_port_3 s_port_a s_port_b \
  <<<"$(free_ports 7)"
sentinel_ports="$sentinel_port_1 $sentinel_port_2 $sentinel_port_3"
sentinel_master=mymaster
sentinel_dir="$work/sentinel"
sentinel_config="$work/sentinel-cluster.json"
mkdir -p "$sentinel_dir/primary" "$sentinel_dir/replica"
echo "== compat: Sentinel run (primary on 127.0.0.1:$primary_port, replica on $replica_port, sentinels on ${sentinel_ports// /, }, nodes on $s_port_a and $s_port_b)"
redis_args=(--bind 127.0.0.1 --save "" --appendonly no --maxmemory-policy noeviction
  --repl-diskless-sync-delay 0)
redis-server "${redis_args[@]}" --port "$primary_port" --dir "$sentinel_dir/primary" \
  </dev/null >"$work/primary.log" 2>&1 &
primary_pid=$!
redis-server "${redis_args[@]}" --port "$replica_port" --dir "$sentinel_dir/replica" \
  --replicaof 127.0.0.1 "$primary_port" </dev/null >"$work/replica.log" 2>&1 &
replica_pid=$!
# The replica is linked before the sentinels start, so their first INFO of the primary lists it.
node node/sentinel/redis_tool.js wait-replica "$replica_port" </dev/null
i=0
for sport in $sentinel_ports; do
  i=$((i + 1))
  printf '%s\n' "port $sport" "bind 127.0.0.1" "daemonize no" 'logfile ""' "dir $sentinel_dir" \
    "sentinel monitor $sentinel_master 127.0.0.1 $primary_port 2" \
    "sentinel down-after-milliseconds $sentinel_master 1000" \
    "sentinel failover-timeout $sentinel_master 5000" \
    "sentinel parallel-syncs $sentinel_master 1" >"$sentinel_dir/sentinel-$i.conf"
  redis-sentinel "$sentinel_dir/sentinel-$i.conf" </dev/null >"$work/sentinel-$i.log" 2>&1 &
  sentinel_pids="$sentinel_pids $!"
done
"$py" make_config.py "$sentinel_config" "$node_hook_port" "$py_hook_port" \
  --sentinels "$sentinel_master" "${sentinel_ports// /,}"
start_herald SA "$s_port_a" "$sentinel_config" "$work/sentinel-node-a.log"
sentinel_a_pid=$herald_pid
start_herald SB "$s_port_b" "$sentinel_config" "$work/sentinel-node-b.log"
sentinel_b_pid=$herald_pid
wait_http "$sentinel_a_pid" "http://127.0.0.1:$s_port_a/up" "Sentinel node A"
wait_http "$sentinel_b_pid" "http://127.0.0.1:$s_port_b/up" "Sentinel node B"
# A failover needs the sentinels to know the replica and each other (bounded: 30 s).
# shellcheck disable=SC2086
node node/sentinel/redis_tool.js wait-sentinels "$sentinel_master" $sentinel_ports </dev/null

echo "== compat: Node Sentinel failover suite (pusher-js on node A, the pusher SDK on node B, the primary killed)"
if ! HERALD_PORT="$s_port_a" HERALD_PORT_B="$s_port_b" HERALD_COMPAT_CONFIG="$sentinel_config" \
  REDIS_PRIMARY_PORT="$primary_port" REDIS_PRIMARY_PID="$primary_pid" \
  REDIS_REPLICA_PORT="$replica_port" REDIS_SENTINEL_PORTS="${sentinel_ports// /,}" \
  REDIS_SENTINEL_MASTER="$sentinel_master" \
  timeout --kill-after=5 "$suite_timeout" node --test --test-force-exit node/sentinel/*.test.js </dev/null; then
  echo "== compat: Node Sentinel failover suite FAILED" >&2
  status=1
fi
# shellcheck disable=SC2086
for pid in "$sentinel_a_pid" "$sentinel_b_pid" "$replica_pid" $sentinel_pids; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "error: a node, the replica or a sentinel died during the Sentinel failover suite" >&2
    status=1
  fi
done
# The test killed the primary: reap it, so that its PID is never signalled again.
if ! kill -0 "$primary_pid" 2>/dev/null; then
  wait "$primary_pid" 2>/dev/null || true
  primary_pid=""
fi
stop_pid "$sentinel_a_pid"
stop_pid "$sentinel_b_pid"
for pid in $sentinel_pids; do
  stop_pid "$pid"
done
stop_pid "$replica_pid"
stop_pid "$primary_pid"
sentinel_a_pid=""
sentinel_b_pid=""
sentinel_pids=""
replica_pid=""
primary_pid=""

for pid in "$node_hook_pid" "$py_hook_pid"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "error: a webhook receiver died during the suites" >&2
    status=1
  fi
done

exit "$status"
