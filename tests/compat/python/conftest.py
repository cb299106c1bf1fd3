import json
import os
import secrets
import sys
import time
from pathlib import Path

import pusher
import pytest

from wsclient import Socket

COMPAT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(COMPAT_DIR))
from tls_herald import TlsHerald  # noqa: E402  (lives next to make_config.py, which it uses)

HOST = os.environ.get("HERALD_HOST", "127.0.0.1")
PORT = int(os.environ["HERALD_PORT"])
# The app under test is the first app of the config.json that run.sh starts Herald with.
# (pusher-http-python only accepts numeric app ids.)
with open(COMPAT_DIR / "config.json") as f:
    _APP = json.load(f)["app_manager"]["array"]["apps"][0]
APP_ID = _APP["id"]
APP_KEY = _APP["key"]
APP_SECRET = _APP["secret"]


@pytest.fixture
def sdk():
    return pusher.Pusher(
        app_id=APP_ID, key=APP_KEY, secret=APP_SECRET,
        ssl=False, host=HOST, port=PORT, timeout=5)


def socket_factory(app_key, base_url=None, ssl_context=None):
    """A factory of real WebSocket connections to `app_key` (on base_url, default the plain
    Herald; wss:// with ssl_context), and a function closing them all."""
    opened = []

    def make():
        s = Socket(base_url or f"ws://{HOST}:{PORT}", app_key, ssl_context=ssl_context)
        opened.append(s)
        return s

    def close_all():
        for s in opened:
            s.close()

    return make, close_all


@pytest.fixture
def sockets():
    """Factory for real WebSocket connections; all are closed after the test."""
    make, close_all = socket_factory(APP_KEY)
    yield make
    close_all()


@pytest.fixture(scope="module")
def tls_herald():
    """A second Herald serving TLS on its port (../tls_herald.py: a throwaway CA and certificate
    made with openssl, in a temporary directory removed afterwards); stopped after the module."""
    with TlsHerald() as herald:
        yield herald
        assert herald.alive(), f"the TLS herald died during the tests:\n{herald.log_tail()}"


@pytest.fixture
def unique():
    """Unique channel / user names so tests never share server state."""
    def make(prefix):
        return f"{prefix}{int(time.time() * 1000):x}-{secrets.token_hex(4)}"
    return make
