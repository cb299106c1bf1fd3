"""A tiny synchronous Pusher-protocol WebSocket client, just enough to have real sockets
subscribed, signed in and receiving events while the official Python server SDK drives Herald.
Every wait is bounded."""

import json
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

WAIT = 5.0


class ClosedError(Exception):
    pass


class Socket:
    def __init__(self, base_url, key, ssl_context=None):
        """base_url: ws://HOST:PORT, or wss://HOST:PORT with the ssl.SSLContext to verify it."""
        url = f"{base_url}/app/{key}?protocol=7&client=js&version=8.6.0&flash=false"
        self.ws = connect(url, ssl=ssl_context, open_timeout=WAIT, close_timeout=2)
        self.inbox = []
        self.close_code = None
        est = self._recv(WAIT)
        assert est is not None, "no pusher:connection_established"
        assert est["event"] == "pusher:connection_established", est
        data = json.loads(est["data"])
        self.socket_id = data["socket_id"]
        self.activity_timeout = data["activity_timeout"]

    # -- low level -------------------------------------------------------------------------

    def _recv(self, timeout):
        """One frame as a dict, None on timeout; raises ClosedError once the socket is closed."""
        if self.close_code is not None:
            raise ClosedError(self.close_code)
        try:
            raw = self.ws.recv(timeout=max(timeout, 0.001))
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd is not None else 1006
            raise ClosedError(self.close_code) from None
        return json.loads(raw)

    def send(self, event, data, channel=None):
        frame = {"event": event, "data": data}
        if channel is not None:
            frame["channel"] = channel
        self.ws.send(json.dumps(frame))

    def expect(self, event, channel=None, timeout=WAIT):
        """Returns the first frame (buffered or new) matching event (and channel, if given)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self.inbox):
                if msg.get("event") == event and (channel is None or msg.get("channel") == channel):
                    return self.inbox.pop(i)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {event} on {channel}; got {self.inbox}")
            msg = self._recv(remaining)
            if msg is not None:
                self.inbox.append(msg)

    def drain(self, duration):
        """Reads everything that arrives within `duration` seconds into the inbox."""
        deadline = time.monotonic() + duration
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            msg = self._recv(remaining)
            if msg is not None:
                self.inbox.append(msg)

    def received(self, event, channel=None):
        return [m for m in self.inbox
                if m.get("event") == event and (channel is None or m.get("channel") == channel)]

    def wait_closed(self, timeout=WAIT):
        """Reads frames until the server closes the socket; returns the close code."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                msg = self._recv(deadline - time.monotonic())
                if msg is not None:
                    self.inbox.append(msg)
        except ClosedError:
            return self.close_code
        raise AssertionError(f"socket not closed within {timeout}s")

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass

    # -- protocol --------------------------------------------------------------------------

    def subscribe(self, channel, auth=None, channel_data=None):
        data = {"channel": channel, "auth": auth or ""}
        if channel_data is not None:
            data["channel_data"] = channel_data
        self.send("pusher:subscribe", data)
        deadline = time.monotonic() + WAIT
        while True:
            for i, msg in enumerate(self.inbox):
                if msg.get("channel") == channel and msg.get("event") in (
                        "pusher_internal:subscription_succeeded", "pusher:subscription_error"):
                    self.inbox.pop(i)
                    if msg["event"] == "pusher:subscription_error":
                        raise AssertionError(f"subscription to {channel} refused: {msg}")
                    return json.loads(msg["data"]) if isinstance(msg.get("data"), str) else msg.get("data")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no subscription_succeeded for {channel}; got {self.inbox}")
            msg = self._recv(remaining)
            if msg is not None:
                self.inbox.append(msg)

    def signin(self, auth, user_data):
        self.send("pusher:signin", {"auth": auth, "user_data": user_data})
        msg = self.expect("pusher:signin_success")
        data = msg["data"]
        if isinstance(data, str):
            data = json.loads(data)
        return data
