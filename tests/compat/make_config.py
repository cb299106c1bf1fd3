"""Writes the Herald config the compat suites run against: config.json plus the webhook apps
(and the decision hook and watchlist apps).

    python make_config.py OUT_PATH NODE_RECEIVER_PORT PYTHON_RECEIVER_PORT [REDIS_URL]
    python make_config.py OUT_PATH NODE_RECEIVER_PORT PYTHON_RECEIVER_PORT \
        --sentinels MASTER_NAME SENTINEL_PORT,SENTINEL_PORT,...

Every config it writes has permessage-deflate on (`websocket.compression` "shared", Herald's
default, from 256 bytes).

The receivers' ports are only known at run time, so run.sh calls this before starting Herald.
The first app of config.json (the one the SDK suites use) is copied unchanged and keeps no
webhook endpoints; more apps are added, each with its own endpoints or feature:

  WEBHOOK_NODE_APP    endpoints on the Node receiver (node/webhook_receiver.js), verified there
                      with the official `pusher` npm SDK (and, for the two `"signature": "jwt"`
                      ones, with livekit-server-sdk); used by node/webhooks.test.js, and the JWT
                      ones by python/test_webhooks.py too.
  WEBHOOK_PYTHON_APP  a Standard Webhooks endpoint, a JWT endpoint and two Lambda endpoints on
                      the Python receiver (python/webhook_receiver.py); used by
                      python/test_webhooks.py.
  DECISION_HOOK_APP   (when DECISION_HOOK_PORT is set) decision hooks for every event on that
                      port, where node/decision_hooks.test.js runs its hook server.
  WATCHLIST_APP       `enable_watchlist_events`: a sign-in's `watchlist` is watched
                      (node/watchlist.test.js, node/cluster/watchlist.test.js); the first app
                      has no watchlist events. One webhook endpoint, USER_EVENTS_PATH on the
                      Node receiver, for `user_online` / `user_offline` only (no filter: user
                      events have no channel); node/cluster/user_webhooks.test.js reads it. The
                      receiver verifies its requests with this app's credentials.

With REDIS_URL the config is that of a cluster node (`adapter.driver` redis; each node gets its
id from HERALD_NODE_ID), for the two-node run of node/cluster/.

With --sentinels the config is that of a cluster node that finds its Redis through Sentinel, for
the failover run of node/sentinel/: `adapter.driver` redis with no `adapter.redis.url`, and
Sockudo's `"database": {"redis": {"sentinels": [{"host": "127.0.0.1", "port": P}, ...],
"name": MASTER_NAME}}`.

tls_config() writes the config of the TLS node that tls_herald.py starts: config.json with an
`ssl` block (Sockudo's keys) serving the given PEM chain and key on the main port.

Everything points at 127.0.0.1.
"""

import base64
import json
import os
import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

ALL_EVENT_TYPES = [
    "channel_occupied", "channel_vacated", "member_added", "member_removed",
    "client_event", "cache_miss",
]

WEBHOOK_NODE_APP = {"id": "100002", "key": "compat-wh-node-key", "secret": "compat-wh-node-secret"}
WEBHOOK_PYTHON_APP = {"id": "100003", "key": "compat-wh-py-key", "secret": "compat-wh-py-secret"}
# Asks the decision hook on 127.0.0.1:$DECISION_HOOK_PORT (node/decision_hooks.test.js runs it).
DECISION_HOOK_APP = {"id": "100004", "key": "compat-hook-key", "secret": "compat-hook-secret"}
# Watchlist events on; user presence webhooks (and no others) on the Node receiver.
WATCHLIST_APP = {"id": "100005", "key": "compat-watch-key", "secret": "compat-watch-secret"}
USER_EVENT_TYPES = ["user_online", "user_offline"]
# The watchlist app's endpoint on the Node receiver, a path of its own (no other app's endpoint
# is there, so the receiver knows whose secret to verify with and the tests read only its events).
USER_EVENTS_PATH = "/user-events"

LAMBDA_REGION = "eu-west-1"
LAMBDA_FUNCTION = "compat-fn"
LAMBDA_QUALIFIER = "live"
# An ARN as the function name: its ':' must be percent-encoded in the path (and the path then
# encoded once more for the SigV4 canonical request).
LAMBDA_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:compat-arn"


def app_entry(creds, webhooks):
    return {
        **creds,
        "enabled": True,
        "enable_client_messages": True,
        "enable_user_authentication": False,
        "enable_subscription_count": False,
        "max_client_events_per_second": 100,
        "max_presence_members_per_channel": 100,
        "webhooks": webhooks,
    }


def node_endpoints(port):
    base = f"http://127.0.0.1:{port}"
    return [
        # Everything, with a custom header.
        {"url": f"{base}/all", "event_types": ALL_EVENT_TYPES,
         "headers": {"X-Compat-Endpoint": "all"}},
        # Presence channels whose name starts with presence-room- (type AND prefix).
        {"url": f"{base}/presence-room", "event_types": ALL_EVENT_TYPES,
         "filter": {"channel_type": "presence", "channel_prefix": "presence-room-"}},
        # Every private channel (encrypted and cache ones included), by type only.
        {"url": f"{base}/private", "event_types": ALL_EVENT_TYPES,
         "filter": {"channel_type": "private"}},
        # Only cache_miss, only for channels starting with cache- (prefix only).
        {"url": f"{base}/cache-miss", "event_types": ["cache_miss"],
         "filter": {"channel_prefix": "cache-"}},
        # The receiver answers 503 to the first attempt of every delivery: retries are exercised.
        {"url": f"{base}/flaky", "event_types": ["channel_occupied"],
         "filter": {"channel_prefix": "flaky-"}},
        # Signed as LiveKit signs its webhooks (Authorization: a JWT over the body's SHA-256);
        # the receiver also checks every request with livekit-server-sdk's WebhookReceiver.
        {"url": f"{base}/jwt", "event_types": ALL_EVENT_TYPES, "signature": "jwt"},
        # JWT-signed and answered 503 on every first attempt: the retry must be signed anew.
        {"url": f"{base}/jwt-flaky", "event_types": ["channel_occupied"], "signature": "jwt",
         "filter": {"channel_prefix": "jwt-flaky-"}},
    ]


def python_endpoints(port, whsec):
    base = f"http://127.0.0.1:{port}"
    return [
        {"url": f"{base}/standard", "event_types": ALL_EVENT_TYPES,
         "signature": "standard-webhooks", "standard_webhooks_secret": whsec},
        # Checked with livekit-api's WebhookReceiver by python/test_webhooks.py.
        {"url": f"{base}/jwt", "event_types": ALL_EVENT_TYPES, "signature": "jwt"},
        {"lambda": {"function_name": LAMBDA_FUNCTION, "invocation_type": "RequestResponse",
                    "qualifier": LAMBDA_QUALIFIER, "region": LAMBDA_REGION,
                    "endpoint_url": base},
         "event_types": ["channel_occupied", "channel_vacated", "client_event"]},
        # Defaults: invocation type Event, no qualifier.
        {"lambda": {"function_name": LAMBDA_ARN, "region": LAMBDA_REGION, "endpoint_url": base},
         "event_types": ["channel_occupied"],
         "filter": {"channel_prefix": "arn-"}},
    ]


def main():
    out, node_port, py_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    redis_url = None
    sentinels = None
    if len(sys.argv) > 4 and sys.argv[4] == "--sentinels":
        master_name = sys.argv[5]
        sentinels = [{"host": "127.0.0.1", "port": int(p)} for p in sys.argv[6].split(",")]
    elif len(sys.argv) > 4:
        redis_url = sys.argv[4]
    with open(HERE / "config.json") as f:
        config = json.load(f)
    whsec = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    config["webhooks"] = {
        "batching": {"enabled": True, "duration": 50},
        # vacated / member_removed / user_offline go out at once instead of after 3 s.
        "grace_period_ms": 0,
        "request_timeout_ms": 2000,
        # Fast retries; give up after 10 s (a receiver that is gone must not keep Herald busy).
        "retry": {"initial_backoff_ms": 100, "max_backoff_ms": 400, "max_elapsed_time_ms": 10000},
    }
    apps = config["app_manager"]["array"]["apps"]
    apps.append(app_entry(WEBHOOK_NODE_APP, node_endpoints(node_port)))
    apps.append(app_entry(WEBHOOK_PYTHON_APP, python_endpoints(py_port, whsec)))
    hook_port = os.environ.get("DECISION_HOOK_PORT")
    if hook_port:
        hooked = app_entry(DECISION_HOOK_APP, [])
        hooked["decision_hooks"] = {
            "url": f"http://127.0.0.1:{int(hook_port)}/decide",
            "events": ["connection_starting", "subscription_starting", "client_event_sending"],
            "request_timeout_ms": 1000,
            "on_failure": "reject",
            "headers": {"X-Compat-Hook": "yes"},
        }
        apps.append(hooked)
    watching = app_entry(WATCHLIST_APP, [
        {"url": f"http://127.0.0.1:{node_port}{USER_EVENTS_PATH}", "event_types": USER_EVENT_TYPES},
    ])
    watching["enable_watchlist_events"] = True
    apps.append(watching)
    # permessage-deflate for clients that offer it (browsers, Node's ws, Python's websockets;
    # pusher-js's Node build does not): Herald's default "shared", written out, from 256 bytes
    # instead of 1024: node/compression.test.js and python/test_compression_browser.py check it;
    # every other suite runs beside it.
    config.setdefault("websocket", {})
    config["websocket"]["compression"] = "shared"
    config["websocket"]["compression_threshold_bytes"] = 256
    # The debug console, for python/test_console_browser.py.
    config["console"] = {"token": "compat-console-token-0123456789abcdef"}
    if redis_url:
        config["adapter"] = {"driver": "redis", "redis": {"url": redis_url, "prefix": "compat"}}
    if sentinels:
        # No URL: the sentinels name the primary (a URL beside them is a config error).
        config["adapter"] = {"driver": "redis", "redis": {"prefix": "compat"}}
        config["database"] = {"redis": {"sentinels": sentinels, "name": master_name}}
    with open(out, "w") as f:
        json.dump(config, f, indent=2)


def tls_config(out, cert_path, key_path):
    """config.json (its SDK app only, no webhooks) with TLS on the main port."""
    with open(HERE / "config.json") as f:
        config = json.load(f)
    config["ssl"] = {"enabled": True, "cert_path": str(cert_path), "key_path": str(key_path)}
    with open(out, "w") as f:
        json.dump(config, f, indent=2)


if __name__ == "__main__":
    main()
