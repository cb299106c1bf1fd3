#!/usr/bin/env bash
# Runs every test suite: Rust unit + integration tests (cargo nextest), then the official-client
# compatibility suites (pusher-js and the `pusher` npm SDK under Node's test runner, the `pusher`
# PyPI SDK under pytest, the console in headless Chromium). Installs what the suites need on a
# fresh machine: redis-server, redis-sentinel, openssl, chromium, chromium-driver, postgresql and
# mariadb-server from the Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
# No AWS credential lookup may leave this machine (the Lambda tests sign with fake keys).
export AWS_EC2_METADATA_DISABLED=true

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

# The cluster tests start private redis-server instances (on free loopback ports, killed by PID).
if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server (Debian package) for the cluster tests"
  sudo_if_needed=""
  if [ "$(id -u)" -ne 0 ]; then sudo_if_needed="sudo"; fi
  $sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -qq redis-server >/dev/null
  # The package starts a system-wide instance on 6379; the tests use their own, so stop it.
  $sudo_if_needed systemctl stop redis-server >/dev/null 2>&1 || $sudo_if_needed service redis-server stop >/dev/null 2>&1 || true
fi

# The Sentinel test starts three private redis-sentinel processes beside its primary and replica.
if ! command -v redis-sentinel >/dev/null 2>&1; then
  echo "== installing redis-sentinel (Debian package) for the Sentinel failover test"
  sudo_if_needed=""
  if [ "$(id -u)" -ne 0 ]; then sudo_if_needed="sudo"; fi
  $sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -qq redis-sentinel >/dev/null
  # The package starts a system-wide sentinel on 26379; the test uses its own, so stop it.
  $sudo_if_needed systemctl stop redis-sentinel >/dev/null 2>&1 || $sudo_if_needed service redis-sentinel stop >/dev/null 2>&1 || true
fi

# The app store's tests start a private PostgreSQL and a private MariaDB each (initdb /
# mariadb-install-db into a temp dir, a free loopback port, killed by PID).
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v mariadbd >/dev/null 2>&1; then
  echo "== installing postgresql and mariadb-server (Debian packages) for the app store tests"
  sudo_if_needed=""
  if [ "$(id -u)" -ne 0 ]; then sudo_if_needed="sudo"; fi
  $sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -qq postgresql mariadb-server >/dev/null
  # The packages may start system-wide instances (5432, 3306); the tests use their own.
  $sudo_if_needed systemctl stop postgresql mariadb >/dev/null 2>&1 || true
  $sudo_if_needed service postgresql stop >/dev/null 2>&1 || true
  $sudo_if_needed service mariadb stop >/dev/null 2>&1 || true
fi

# The TLS tests make their CA and certificates with the openssl command.
if ! command -v openssl >/dev/null 2>&1; then
  echo "== installing openssl (Debian package) for the TLS tests"
  sudo_if_needed=""
  if [ "$(id -u)" -ne 0 ]; then sudo_if_needed="sudo"; fi
  $sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -qq openssl >/dev/null
fi

# The console's browser test drives Debian's headless Chromium through its driver.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "== installing chromium and chromium-driver (Debian packages) for the console's browser test"
  sudo_if_needed=""
  if [ "$(id -u)" -ne 0 ]; then sudo_if_needed="sudo"; fi
  $sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -qq chromium chromium-driver >/dev/null
fi

echo "== cargo build (herald binary for the compatibility suites; the benchmark crate, so it keeps building)"
cargo build --bin herald
cargo build -p herald-bench

echo "== Rust unit and integration tests"
cargo nextest run --no-fail-fast

echo "== scale scenario, small (lean clients, the connect floor, one node and two on redis-server)"
# About 2,000 sockets on one node and 2 x 1,000 on two nodes, with the debug builds; it stops
# every process it started and fails on a lost socket or delivery.
timeout 90 "$target_dir/debug/herald-bench" --scenario scale \
  --server "$target_dir/debug/herald --config {config}" \
  --scale-steps 1000 --scale-connections 2000 --scale-idle-secs 4 \
  --scale-nodes 2 --scale-node-connections 1000 --scale-broadcasts 2 >/dev/null

if [ -x tests/compat/run.sh ]; then
  echo "== official-client compatibility suites"
  tests/compat/run.sh "$target_dir/debug/herald"
fi
