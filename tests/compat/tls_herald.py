"""A second Herald with TLS on its main port, for the suites' wss:// and https:// tests.

    HERALD_BIN=... python tls_herald.py

In a fresh temporary directory: makes a throwaway CA and a server certificate for 127.0.0.1 and
localhost with the `openssl` command, writes the config with make_config.tls_config (config.json
plus an `ssl` block), starts HERALD_BIN on a free loopback port and waits (at most 20 s) until
GET https://127.0.0.1:PORT/up answers 200 with that CA as the only trusted root. Then it prints
one JSON line, {"port": PORT, "ca": CA_PEM_PATH}, and runs until its stdin closes (or it gets
SIGTERM / SIGINT), when it stops Herald and removes the directory.

python/conftest.py uses TlsHerald directly; node/tls.test.js runs this script. run.sh exports
HERALD_BIN.
"""

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import make_config

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
OPENSSL_TIMEOUT = 30.0

# Overrides that would change the app under test (as run.sh's start_herald clears them).
CLEARED_ENV = ("HERALD_APP_ID", "HERALD_APP_KEY", "HERALD_APP_SECRET", "HERALD_DEBUG",
               "HERALD_METRICS_PORT")

SERVER_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, timeout=OPENSSL_TIMEOUT,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_certificates(directory):
    """A CA (ca.pem) and a server certificate it signed (server.pem, key server.key, PKCS#8),
    P-256, valid for one day. Returns (ca, cert, key) paths."""
    d = Path(directory)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=Herald compat test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
            cwd=d)
    (d / "server.ext").write_text(SERVER_EXT)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "1",
            "-extfile", "server.ext", "-out", "server.pem", cwd=d)
    return d / "ca.pem", d / "server.pem", d / "server.key"


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class TlsHerald:
    """Context manager: a TLS Herald (its .port, and .ca, the PEM of the CA that signed it)."""

    def __init__(self, herald_bin=None):
        self.herald_bin = herald_bin or os.environ.get("HERALD_BIN")
        if not self.herald_bin:
            raise RuntimeError("HERALD_BIN must name the herald binary (run through tests/compat/run.sh)")
        self.dir = None
        self.proc = None
        self.log = None
        self.port = None
        self.ca = None

    def ssl_context(self):
        """A client context that trusts only this server's CA."""
        return ssl.create_default_context(cafile=str(self.ca))

    def __enter__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="herald-compat-tls."))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def _start(self):
        self.ca, cert, key = make_certificates(self.dir)
        config = self.dir / "config.json"
        make_config.tls_config(config, cert, key)
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
        env.update(HOME=str(self.dir), HERALD_NODE_ID="compat-tls", HERALD_HOST=HOST,
                   HERALD_PORT=str(self.port), HERALD_METRICS_ENABLED="false")
        self.log = open(self.dir / "herald.log", "wb")
        self.proc = subprocess.Popen([self.herald_bin, "--config", str(config)], env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        context = self.ssl_context()
        url = f"https://{HOST}:{self.port}/up"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the TLS herald exited during startup:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1, context=context) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the TLS herald did not answer GET {url} within {START_TIMEOUT} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines=40):
        try:
            text = (self.dir / "herald.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def main():
    # SIGTERM / SIGINT end the wait below like a closed stdin, so the `with` block cleans up.
    def leave(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
    with TlsHerald() as herald:
        print(json.dumps({"port": herald.port, "ca": str(herald.ca)}), flush=True)
        sys.stdin.read()
        if not herald.alive():
            print(f"error: the TLS herald died:\n{herald.log_tail()}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
