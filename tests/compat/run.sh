#!/usr/bin/env bash
# Official-client compatibility suites for Herald.
#
#   tests/compat/run.sh HERALD_BIN
#
# Installs the suites' dependencies (npm ci; a Python venv in tests/compat/.venv), starts the
# given herald binary on a free loopback port with tests/compat/config.json, then runs
#   1. the Node suite (pusher-js + the `pusher` npm server SDK) under `node --test`,
#   2. the Python suite (the `pusher` PyPI server SDK) under pytest.
# The server is always stopped on exit. Exits non-zero if anything fails.
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

port="$(free_port)"
log="$(mktemp -t herald-compat.XXXXXX.log)"
server_pid=""

cleanup() {
  local rc=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ] && [ -s "$log" ]; then
    echo "== compat: last lines of the herald log ($log)"
    tail -n 40 "$log" || true
  fi
  rm -f "$log"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== compat: starting $herald_bin on 127.0.0.1:$port"
# The env overrides that could change the app under test are cleared; only host, port and
# metrics are set.
env -u HERALD_APP_ID -u HERALD_APP_KEY -u HERALD_APP_SECRET -u HERALD_DEBUG -u HERALD_METRICS_PORT \
  HERALD_HOST=127.0.0.1 HERALD_PORT="$port" HERALD_METRICS_ENABLED=false \
  "$herald_bin" --config "$here/config.json" </dev/null >"$log" 2>&1 &
server_pid=$!

# Wait (at most 20 s) for GET /up to answer 200.
up=0
for _ in $(seq 1 100); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "error: herald exited during startup" >&2
    exit 1
  fi
  if "$py" -c 'import sys, urllib.request
try:
    r = urllib.request.urlopen("http://127.0.0.1:%s/up" % sys.argv[1], timeout=1)
    sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)' "$port"; then
    up=1
    break
  fi
  sleep 0.2
done
if [ "$up" -ne 1 ]; then
  echo "error: herald did not answer GET /up within 20 s" >&2
  exit 1
fi

export HERALD_HOST=127.0.0.1
export HERALD_PORT="$port"
export HERALD_URL="http://127.0.0.1:$port"

status=0

echo "== compat: Node suite (pusher-js $(node -p 'require("pusher-js/package.json").version'), pusher $(node -p 'require("pusher/package.json").version'))"
# --test-force-exit: after a server-initiated close (4009), pusher-js's bundled faye-websocket
# leaves a 30 s close timer running on the already-closed socket, which would otherwise keep each
# test process alive for 30 s after its tests have finished.
if ! timeout --kill-after=5 "$suite_timeout" \
  node --test --test-force-exit node/*.test.js </dev/null; then
  echo "== compat: Node suite FAILED" >&2
  status=1
fi

echo "== compat: Python suite (pusher $("$py" -c 'import importlib.metadata as m; print(m.version("pusher"))'))"
if ! timeout --kill-after=5 "$suite_timeout" \
  "$py" -m pytest -p no:cacheprovider -q python </dev/null; then
  echo "== compat: Python suite FAILED" >&2
  status=1
fi

if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "error: herald died during the suites" >&2
  status=1
fi

exit "$status"
