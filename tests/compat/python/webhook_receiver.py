"""Webhook receiver for the Python suite, started by ../run.sh before Herald:

    python python/webhook_receiver.py PORT

Listens on 127.0.0.1:PORT and records every POST exactly as received (method, raw path with
query, headers in order and original case, raw body), answering 200 (for the Lambda `Invoke`
path a JSON body, as a function with RequestResponse would). It verifies nothing itself:
python/test_webhooks.py fetches the records from GET /_requests and checks them with the
`standardwebhooks` and `botocore` packages.
"""

import base64
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1024 * 1024

_lock = threading.Lock()
_records = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "compat-webhook-receiver"

    def log_message(self, *args):  # quiet
        pass

    def _reply(self, status, body, content_type="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/_requests":
            with _lock:
                body = json.dumps(_records)
            self._reply(200, body)
        else:
            self._reply(404, "{}")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._reply(413, "{}")
            return
        body = self.rfile.read(length) if length else b""
        with _lock:
            _records.append({
                "seq": len(_records),
                "method": self.command,
                "path": self.path,
                "request_version": self.request_version,
                "headers": list(self.headers.items()),
                "body_b64": base64.b64encode(body).decode(),
            })
        if "/invocations" in self.path:
            self._reply(200, '{"statusCode": 200}')
        else:
            self._reply(200, "{}")


def main():
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"webhook receiver (python) listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()


if __name__ == "__main__":
    main()
