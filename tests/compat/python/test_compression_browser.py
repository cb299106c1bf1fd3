"""pusher-js in headless Chromium, which offers permessage-deflate on every connection (the
Node build of pusher-js offers none): run.sh starts Herald with `websocket.compression`
"shared" from 256 bytes, the handshake is answered with the extension, and broadcasts above the
threshold (sent compressed) decode to the events the server SDK triggered."""

import json

from selenium.webdriver.support.ui import WebDriverWait

WAIT = 10


def wait_for(driver, what, predicate):
    return WebDriverWait(driver, WAIT).until(lambda d: predicate(d), message=f"waiting for {what}")


class HandshakeLog:
    """The WebSocket handshake responses in Chromium's performance log (read once: each read
    drains the log)."""

    def __init__(self, driver):
        self.driver = driver
        self.responses = []

    def extensions(self):
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.webSocketHandshakeResponseReceived":
                headers = message["params"]["response"]["headers"]
                self.responses.append({k.lower(): v for k, v in headers.items()})
        found = [r.get("sec-websocket-extensions") for r in self.responses]
        return next((value for value in found if value), None)


def test_pusher_js_in_chromium_negotiates_compression_and_decodes_broadcasts(browser, client_page, sdk, unique):
    channel = unique("deflate-browser-")
    log = HandshakeLog(browser)
    browser.get(client_page)
    wait_for(browser, "pusher-js connected", lambda d: d.execute_script(
        "return window.pusherClient && window.pusherClient.connection.state === 'connected'"))
    extensions = wait_for(browser, "the handshake in the performance log", lambda d: log.extensions())
    params = [p.strip() for p in extensions.split(";")]
    assert params[0] == "permessage-deflate", extensions
    assert "server_no_context_takeover" in params and "client_no_context_takeover" in params, extensions
    assert any(p.startswith("client_max_window_bits=") for p in params), extensions

    browser.execute_script("window.subscribeTo(arguments[0])", channel)
    wait_for(browser, "the subscription", lambda d: d.execute_script("return !!window.subscribed[arguments[0]]", channel))
    sent = [{"n": n, "rows": [{"id": i, "name": f"row {i}", "price": 1.5 * i} for i in range(40)]}
            for n in range(3)]
    for data in sent:
        sdk.trigger(channel, "big", data)
    sdk.trigger(channel, "small", {"ok": True})
    got = wait_for(browser, "the events in the browser", lambda d: d.execute_script(
        """const got = window.received.filter(r => r.channel === arguments[0] && (r.event === 'big' || r.event === 'small'));
           return got.length === 4 ? got : null;""", channel))
    assert [g["event"] for g in got] == ["big", "big", "big", "small"]
    assert [g["data"] for g in got[:3]] == sent
    assert got[3]["data"] == {"ok": True}
