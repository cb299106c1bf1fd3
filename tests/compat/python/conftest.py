import json
import os
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pusher
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

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


# Headless Chromium (Debian's `chromium` and `chromium-driver`, driven by Selenium with both
# paths given, so nothing is downloaded) and a pusher-js page for it.
PUSHER_JS = COMPAT_DIR / "node_modules" / "pusher-js" / "dist" / "web" / "pusher.min.js"
CLIENT_DIR = Path(__file__).resolve().parent / "console_client"
CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
BROWSER_WAIT = 10


class ClientServer(BaseHTTPRequestHandler):
    """Serves the pusher-js client page and signs its private-channel subscriptions."""

    sdk = pusher.Pusher(app_id=APP_ID, key=APP_KEY, secret=APP_SECRET, ssl=False, host=HOST, port=PORT)

    def log_message(self, *args):
        pass

    def send_body(self, status, content_type, body):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        files = {
            "/client.html": (CLIENT_DIR / "client.html", "text/html"),
            "/client.js": (CLIENT_DIR / "client.js", "text/javascript"),
            "/pusher.min.js": (PUSHER_JS, "text/javascript"),
        }
        if path not in files:
            return self.send_body(404, "text/plain", b"not found")
        file, content_type = files[path]
        self.send_body(200, content_type, file.read_bytes())

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        signed = self.sdk.authenticate(channel=form["channel_name"][0], socket_id=form["socket_id"][0])
        self.send_body(200, "application/json", json.dumps(signed).encode())


@pytest.fixture
def client_page():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ClientServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield f"http://127.0.0.1:{port}/client.html?key={APP_KEY}&host={HOST}&port={PORT}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser():
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "chromium and chromium-driver (Debian packages) are needed; scripts/test.sh installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1100", "--no-proxy-server", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]:
        options.add_argument(flag)
    # The DevTools network events, for the WebSocket handshake's headers.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(BROWSER_WAIT)
    yield driver
    driver.quit()


