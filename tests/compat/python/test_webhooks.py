"""Herald's webhooks checked with independent implementations: the Standard Webhooks reference
library (PyPI `standardwebhooks`) for an endpoint with `"signature": "standard-webhooks"`,
LiveKit's `livekit-api` WebhookReceiver for the `"signature": "jwt"` endpoints (this receiver's
and the Node receiver's, whose log has a retried attempt), and botocore's SigV4 signer for the
Lambda endpoints. python/webhook_receiver.py (started by run.sh before Herald) records the raw
requests; real WebSocket clients of the webhook apps cause the events. The endpoints are defined
in ../make_config.py."""

import base64
import hashlib
import json
import os
import re
import time
import urllib.request
from datetime import datetime, timezone
from urllib.parse import parse_qs, quote, urlsplit

import pusher
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from livekit.api import TokenVerifier, WebhookReceiver
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from conftest import HOST, PORT, socket_factory

CONFIG_PATH = os.environ.get("HERALD_COMPAT_CONFIG")
RECEIVER = os.environ.get("WEBHOOK_PYTHON_URL")
NODE_RECEIVER = os.environ.get("WEBHOOK_NODE_URL")
# Without run.sh's receivers and config the suite fails rather than passing vacuously.
assert CONFIG_PATH and RECEIVER and NODE_RECEIVER, \
    "run through tests/compat/run.sh (needs HERALD_COMPAT_CONFIG, WEBHOOK_PYTHON_URL, WEBHOOK_NODE_URL)"

PY_APP_ID = "100003"  # make_config.WEBHOOK_PYTHON_APP
NODE_APP_ID = "100002"  # make_config.WEBHOOK_NODE_APP
WAIT = 5.0
AWS_ACCESS_KEY_ID = os.environ.get("WEBHOOK_AWS_ACCESS_KEY_ID", "")
AWS_SECRET_ACCESS_KEY = os.environ.get("WEBHOOK_AWS_SECRET_ACCESS_KEY", "")
SIGNED_HEADERS = "content-type;host;x-amz-date;x-amz-invocation-type"


def _load_app(app_id=PY_APP_ID):
    with open(CONFIG_PATH) as f:
        apps = json.load(f)["app_manager"]["array"]["apps"]
    return next(a for a in apps if str(a["id"]) == app_id)


@pytest.fixture(scope="module")
def app():
    return _load_app()


@pytest.fixture(scope="module")
def node_app():
    return _load_app(NODE_APP_ID)


@pytest.fixture(scope="module")
def whsec(app):
    return next(e["standard_webhooks_secret"] for e in app["webhooks"]
                if e.get("signature") == "standard-webhooks")


@pytest.fixture(scope="module")
def lambdas(app):
    """The Lambda endpoints' `lambda` objects, by function name."""
    return {e["lambda"]["function_name"]: e["lambda"] for e in app["webhooks"] if "lambda" in e}


@pytest.fixture
def app_sockets(app):
    make, close_all = socket_factory(app["key"])
    yield make
    close_all()


@pytest.fixture
def app_sdk(app):
    return pusher.Pusher(app_id=app["id"], key=app["key"], secret=app["secret"],
                         ssl=False, host=HOST, port=PORT, timeout=5)


# --- the receiver's records ---------------------------------------------------------------------

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Received:
    def __init__(self, record):
        self.method = record["method"]
        self.raw_path = record["path"]
        parts = urlsplit(self.raw_path)
        self.path, self.query = parts.path, parts.query
        self.header_items = [(k, v) for k, v in record["headers"]]
        self.headers = {k.lower(): v for k, v in self.header_items}
        self.body = base64.b64decode(record["body_b64"])
        try:
            self.envelope = json.loads(self.body)
        except ValueError:
            self.envelope = {"events": []}

    def events_for(self, channel):
        return [e for e in self.envelope.get("events", []) if e.get("channel") == channel]


def received(path_prefix):
    with _opener.open(f"{RECEIVER}/_requests", timeout=2) as r:
        records = json.load(r)
    return [Received(rec) for rec in records if rec["path"].startswith(path_prefix)]


def wait_for(path_prefix, channel, predicate, what):
    """Polls the receiver (bounded) until predicate(events of `channel`) holds; returns
    (requests carrying events of `channel`, their events in order)."""
    deadline = time.monotonic() + WAIT
    while True:
        reqs = [r for r in received(path_prefix) if r.events_for(channel)]
        events = [e for r in reqs for e in r.events_for(channel)]
        if predicate(events):
            return reqs, events
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting on {path_prefix} for {what}; got {events}")
        time.sleep(0.05)


def has(name, **fields):
    return lambda events: any(
        e["name"] == name and all(e.get(k) == v for k, v in fields.items()) for e in events)


def presence_subscribe(sdk, sock, channel, user_id):
    auth = sdk.authenticate(channel=channel, socket_id=sock.socket_id,
                            custom_data={"user_id": user_id})
    return sock.subscribe(channel, auth=auth["auth"], channel_data=auth["channel_data"])


# --- Standard Webhooks ----------------------------------------------------------------------------

def test_standard_webhooks_signatures_verify(app, app_sdk, whsec, app_sockets, unique):
    channel = unique("presence-std-")
    a, b = app_sockets(), app_sockets()
    presence_subscribe(app_sdk, a, channel, "std-a")
    presence_subscribe(app_sdk, b, channel, "std-b")
    # A client event whose data has non-ASCII text: the signature covers the exact body bytes.
    a.send("client-note", {"text": "h\u00e9llo \u2713", "n": 2}, channel=channel)
    b.expect("client-note", channel)
    a.close()
    b.close()
    reqs, events = wait_for("/standard", channel, has("channel_vacated"), "channel_vacated")

    seen = [(e["name"], e.get("user_id")) for e in events]
    assert seen[:4] == [("channel_occupied", None), ("member_added", "std-a"),
                        ("member_added", "std-b"), ("client_event", "std-a")], events
    # The two sockets close one after the other, but nothing orders their departures.
    assert sorted(seen[4:6]) == [("member_removed", "std-a"), ("member_removed", "std-b")], events
    assert seen[6:] == [("channel_vacated", None)], events
    client_event = next(e for e in events if e["name"] == "client_event")
    assert client_event["event"] == "client-note"
    assert client_event["socket_id"] == a.socket_id
    assert json.loads(client_event["data"]) == {"text": "h\u00e9llo \u2713", "n": 2}

    wh = Webhook(whsec)
    wrong = Webhook("whsec_" + base64.b64encode(b"\x01" * 32).decode())
    for r in reqs:
        assert r.method == "POST"
        assert r.headers["content-type"] == "application/json"
        assert re.fullmatch(r"msg_[0-9a-f]{32}", r.headers["webhook-id"])
        assert re.fullmatch(r"v1,[A-Za-z0-9+/]+=*", r.headers["webhook-signature"])
        # The reference implementation accepts it (and returns the parsed body) ...
        assert wh.verify(r.body, r.headers) == json.loads(r.body)
        # ... also with the header names exactly as sent.
        wh.verify(r.body, dict(r.header_items))
        # The Pusher signature is still there and valid for the official Python SDK.
        assert r.headers["x-pusher-key"] == app["key"]
        assert app_sdk.validate_webhook(
            r.headers["x-pusher-key"], r.headers["x-pusher-signature"], r.body.decode()) is not None

        # Tampering with the body, the id or the timestamp, or another secret, fails.
        with pytest.raises(WebhookVerificationError):
            wh.verify(r.body.replace(channel.encode(), (channel + "x").encode()), r.headers)
        with pytest.raises(WebhookVerificationError):
            wh.verify(r.body + b" ", r.headers)
        with pytest.raises(WebhookVerificationError):
            wh.verify(r.body, {**r.headers, "webhook-id": "msg_" + "0" * 32})
        with pytest.raises(WebhookVerificationError):
            wh.verify(r.body, {**r.headers,
                               "webhook-timestamp": str(int(r.headers["webhook-timestamp"]) - 1)})
        with pytest.raises(WebhookVerificationError):
            wrong.verify(r.body, r.headers)


# --- "signature": "jwt" (checked with livekit-api) --------------------------------------------------

# PyJWT warns that the compat apps' secrets are under 32 bytes (Pusher's are 20); not our concern.
ignore_short_key = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def check_jwt(app, body, headers, channel):
    """Verifies one JWT-signed request with livekit-api and checks what it must refuse."""
    token = headers["authorization"]
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token), "the bare token, no 'Bearer '"
    receiver = WebhookReceiver(TokenVerifier(app["key"], app["secret"]))
    receiver.receive(body.decode(), token)
    claims = TokenVerifier(app["key"], app["secret"]).verify(token)
    assert claims.sha256 == base64.b64encode(hashlib.sha256(body).digest()).decode()
    # A changed body, another secret or another key is refused.
    for tampered in (body.replace(channel.encode(), (channel + "x").encode()), body + b" "):
        with pytest.raises(Exception, match="hash mismatch"):
            receiver.receive(tampered.decode(), token)
    for key, secret in ((app["key"], "not-the-secret"), ("other-key", app["secret"])):
        with pytest.raises(Exception):
            WebhookReceiver(TokenVerifier(key, secret)).receive(body.decode(), token)


@ignore_short_key
def test_jwt_signatures_verify_with_livekit_api(app, app_sdk, app_sockets, unique):
    channel = unique("presence-jwt-")
    a, b = app_sockets(), app_sockets()
    presence_subscribe(app_sdk, a, channel, "jwt-a")
    presence_subscribe(app_sdk, b, channel, "jwt-b")
    # Non-ASCII data: the token's sha256 covers the exact body bytes.
    a.send("client-note", {"text": "h\u00e9llo \u2713"}, channel=channel)
    b.expect("client-note", channel)
    a.close()
    b.close()
    reqs, events = wait_for("/jwt", channel, has("channel_vacated"), "channel_vacated")
    assert [e["name"] for e in events][:4] == [
        "channel_occupied", "member_added", "member_added", "client_event"], events
    for r in reqs:
        assert "Authorization" in [k for k, _ in r.header_items], "header name as sent"
        check_jwt(app, r.body, r.headers, channel)
        # The Pusher signature stays beside it.
        assert app_sdk.validate_webhook(
            r.headers["x-pusher-key"], r.headers["x-pusher-signature"], r.body.decode()) is not None
    # The Standard Webhooks endpoint of the same app carries no JWT.
    std, _ = wait_for("/standard", channel, has("channel_vacated"), "channel_vacated")
    assert all("authorization" not in r.headers for r in std)


def node_log():
    with _opener.open(f"{NODE_RECEIVER}/_log", timeout=2) as r:
        return json.load(r)


@ignore_short_key
def test_jwt_retry_and_every_node_jwt_request_verify_with_livekit_api(node_app, unique):
    """A retried attempt is signed anew (the Node receiver refuses every first attempt on
    /jwt-flaky); every JWT request in the Node receiver's log verifies with livekit-api too."""
    channel = unique("jwt-flaky-py-")
    make, close_all = socket_factory(node_app["key"])
    try:
        make().subscribe(channel)
        deadline = time.monotonic() + WAIT
        while True:
            attempts = [r for r in node_log() if r["path"] == "/jwt-flaky"
                        and any(e.get("channel") == channel for e in r["events"] or [])]
            if any(r["status"] == 200 for r in attempts) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        close_all()
    assert [r["status"] for r in attempts] == [503, 200], attempts
    first, retry = attempts
    assert first["webhookId"] == retry["webhookId"]
    assert first["headers"]["authorization"] != retry["headers"]["authorization"]
    for r in attempts:
        check_jwt(node_app, r["rawBody"].encode(), r["headers"], channel)

    jwt_requests = [r for r in node_log() if r["path"] in ("/jwt", "/jwt-flaky")]
    assert len(jwt_requests) >= 2
    verify = WebhookReceiver(TokenVerifier(node_app["key"], node_app["secret"]))
    for r in jwt_requests:
        verify.receive(r["rawBody"], r["headers"]["authorization"])


# --- Lambda (SigV4, checked with botocore) --------------------------------------------------------

def parse_authorization(value):
    m = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})", value)
    assert m, f"unexpected Authorization header: {value!r}"
    key_id, date, region, service, signed, signature = m.groups()
    return {"key_id": key_id, "date": date, "region": region, "service": service,
            "signed_headers": signed, "signature": signature}


def botocore_signature(r, secret=AWS_SECRET_ACCESS_KEY, body=None, region="eu-west-1"):
    """The SigV4 signature botocore computes for the received request, at its X-Amz-Date."""
    auth = parse_authorization(r.headers["authorization"])
    signed = auth["signed_headers"].split(";")
    url = f"http://{r.headers['host']}{r.raw_path}"
    request = AWSRequest(method=r.method, url=url,
                         headers={name: r.headers[name] for name in signed},
                         data=r.body if body is None else body)
    request.context["timestamp"] = r.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(AWS_ACCESS_KEY_ID, secret), "lambda", region)
    assert signer.signed_headers(signer.headers_to_sign(request)) == auth["signed_headers"]
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)


def check_sigv4(r, lambda_cfg, invocation_type):
    assert AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "run.sh passes the fake AWS credentials"
    assert r.method == "POST"
    assert r.path == f"/2015-03-31/functions/{quote(lambda_cfg['function_name'], safe='')}/invocations"
    if lambda_cfg.get("qualifier"):
        assert parse_qs(r.query, keep_blank_values=True) == {"Qualifier": [lambda_cfg["qualifier"]]}
    else:
        assert r.query == ""
    assert r.headers["x-amz-invocation-type"] == invocation_type
    assert r.headers["content-type"] == "application/json"
    # IAM authenticates Lambda calls: no Pusher or Standard Webhooks headers.
    for name in ("x-pusher-key", "x-pusher-signature", "webhook-signature"):
        assert name not in r.headers, name

    auth = parse_authorization(r.headers["authorization"])
    assert auth["key_id"] == AWS_ACCESS_KEY_ID
    assert (auth["region"], auth["service"]) == (lambda_cfg["region"], "lambda")
    assert auth["signed_headers"] == SIGNED_HEADERS
    amz_date = r.headers["x-amz-date"]
    assert re.fullmatch(r"\d{8}T\d{6}Z", amz_date)
    assert auth["date"] == amz_date[:8]
    sent_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert abs(sent_at.timestamp() - time.time()) < 300, "X-Amz-Date is now"

    # botocore, given the received request, computes the same signature ...
    assert botocore_signature(r) == auth["signature"]
    # ... and a different one for a changed body, another secret or another region.
    assert botocore_signature(r, body=r.body + b" ") != auth["signature"]
    assert botocore_signature(r, secret=AWS_SECRET_ACCESS_KEY + "x") != auth["signature"]
    assert botocore_signature(r, region="us-east-1") != auth["signature"]


def test_lambda_request_response_sigv4(lambdas, app_sdk, app_sockets, unique):
    cfg = lambdas["compat-fn"]
    channel = unique("private-lambda-")
    a, b = app_sockets(), app_sockets()
    for s in (a, b):
        s.subscribe(channel, auth=app_sdk.authenticate(channel=channel, socket_id=s.socket_id)["auth"])
    a.send("client-ping", {"n": 1}, channel=channel)
    b.expect("client-ping", channel)
    a.close()
    b.close()
    prefix = "/2015-03-31/functions/compat-fn/"
    reqs, events = wait_for(prefix, channel, has("channel_vacated"), "channel_vacated")
    assert [e["name"] for e in events] == ["channel_occupied", "client_event", "channel_vacated"]
    client_event = dict(events[1])
    assert isinstance(client_event["data"], str), "client_event data is a string"
    client_event["data"] = json.loads(client_event["data"])
    assert client_event == {"name": "client_event", "channel": channel, "event": "client-ping",
                            "data": {"n": 1}, "socket_id": a.socket_id}
    for r in reqs:
        assert set(r.envelope) == {"time_ms", "events"}
        check_sigv4(r, cfg, "RequestResponse")


def test_lambda_arn_event_invocation_sigv4(lambdas, app_sockets, unique):
    arn = next(name for name in lambdas if name.startswith("arn:"))
    cfg = lambdas[arn]
    channel = unique("arn-lambda-")
    s = app_sockets()
    s.subscribe(channel)
    # The ARN's ':' are percent-encoded in the path (and encoded again in the canonical request).
    prefix = "/2015-03-31/functions/" + quote(arn, safe="") + "/"
    assert "%3A" in prefix
    reqs, events = wait_for(prefix, channel, has("channel_occupied"), "channel_occupied")
    assert events == [{"name": "channel_occupied", "channel": channel}]
    for r in reqs:
        check_sigv4(r, cfg, "Event")
