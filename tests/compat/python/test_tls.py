"""The official Python server SDK over https and a WebSocket client over wss against a second
Herald serving TLS on its port (the `tls_herald` fixture, ../tls_herald.py), trusting only the
throwaway CA that signed its certificate."""

import json

import pusher
import pytest
import requests
from pusher.requests import RequestsBackend

from conftest import APP_ID, APP_KEY, APP_SECRET, HOST, socket_factory


class CABundleBackend(RequestsBackend):
    """The SDK's default (requests) backend, verifying with `ca_bundle`. RequestsBackend pins
    `verify` to the SDK's bundled cacert.pem whenever ssl=True, which overrides both a `verify`
    backend option and REQUESTS_CA_BUNDLE; the `backend` option is the SDK's way to change that."""

    def __init__(self, client, ca_bundle, **options):
        super().__init__(client, **options)
        self.options["verify"] = ca_bundle


def tls_sdk(herald, **options):
    return pusher.Pusher(
        app_id=APP_ID, key=APP_KEY, secret=APP_SECRET,
        ssl=True, host=HOST, port=herald.port, timeout=5, **options)


@pytest.fixture
def https_sdk(tls_herald):
    return tls_sdk(tls_herald, backend=CABundleBackend, ca_bundle=str(tls_herald.ca))


@pytest.fixture
def wss_sockets(tls_herald):
    make, close_all = socket_factory(
        APP_KEY, f"wss://{HOST}:{tls_herald.port}", tls_herald.ssl_context())
    yield make
    close_all()


def test_https_trigger_reaches_wss_socket(https_sdk, wss_sockets, unique):
    channel = unique("public-py-tls-")
    sock = wss_sockets()
    sock.subscribe(channel)

    assert https_sdk.trigger(channel, "tls-greeting", {"over": "tls", "n": 1}) == {}
    msg = sock.expect("tls-greeting", channel)
    assert json.loads(msg["data"]) == {"over": "tls", "n": 1}

    listed = https_sdk.channels_info(prefix_filter="public-py-tls-")
    assert listed["channels"][channel] == {}
    assert https_sdk.channel_info(channel, ["subscription_count"]) == {
        "occupied": True, "subscription_count": 1}


def test_https_refused_without_the_ca(tls_herald, unique):
    # The SDK's own trust store does not know the throwaway CA: the handshake must fail, so the
    # calls above really went over verified TLS.
    with pytest.raises(requests.exceptions.SSLError):
        tls_sdk(tls_herald).trigger(unique("public-py-tls-"), "never", {})
