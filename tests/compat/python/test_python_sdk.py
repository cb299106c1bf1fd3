"""The official Python server SDK (PyPI `pusher`, pusher-http-python) against Herald, with real
WebSocket connections on the other side."""

import json

import pusher
import pytest

from conftest import APP_KEY

QUIET = 0.7


def presence_member(sdk, sock, channel, user_id, user_info=None):
    """Subscribes `sock` to a presence channel with a signature made by the SDK."""
    custom = {"user_id": user_id}
    if user_info is not None:
        custom["user_info"] = user_info
    auth = sdk.authenticate(channel=channel, socket_id=sock.socket_id, custom_data=custom)
    return sock.subscribe(channel, auth=auth["auth"], channel_data=auth["channel_data"])


def test_trigger_returns_empty_dict_and_delivers(sdk, sockets, unique):
    channel = unique("public-py-")
    other = unique("public-py-")
    sock = sockets()
    sock.subscribe(channel)
    sock.subscribe(other)

    result = sdk.trigger(channel, "greeting", {"text": "hello", "n": 1})
    assert result == {}
    msg = sock.expect("greeting", channel)
    assert isinstance(msg["data"], str), "event data must reach clients as the published string"
    assert json.loads(msg["data"]) == {"text": "hello", "n": 1}

    # Several channels at once; a plain string is relayed untouched.
    assert sdk.trigger([channel, other], "multi", "just text") == {}
    assert sock.expect("multi", channel)["data"] == "just text"
    assert sock.expect("multi", other)["data"] == "just text"


def test_trigger_socket_id_exclusion(sdk, sockets, unique):
    channel = unique("public-py-excl-")
    excluded = sockets()
    receiver = sockets()
    excluded.subscribe(channel)
    receiver.subscribe(channel)

    assert sdk.trigger(channel, "update", {"v": 1}, socket_id=excluded.socket_id) == {}
    assert json.loads(receiver.expect("update", channel)["data"]) == {"v": 1}

    # A follow-up event without exclusion is the only one the excluded socket sees.
    assert sdk.trigger(channel, "update", {"v": 2}) == {}
    assert json.loads(excluded.expect("update", channel)["data"]) == {"v": 2}
    excluded.drain(QUIET)
    assert excluded.received("update") == []


def test_trigger_batch(sdk, sockets, unique):
    c1 = unique("public-py-batch-")
    c2 = unique("private-py-batch-")
    sock = sockets()
    other = sockets()
    sock.subscribe(c1)
    sock.subscribe(c2, auth=sdk.authenticate(channel=c2, socket_id=sock.socket_id)["auth"])
    other.subscribe(c1)

    result = sdk.trigger_batch([
        {"channel": c1, "name": "first", "data": {"n": 1}},
        {"channel": c2, "name": "second", "data": {"n": 2}},
        {"channel": c1, "name": "third", "data": "three", "socket_id": sock.socket_id},
    ])
    assert result == {}
    assert json.loads(sock.expect("first", c1)["data"]) == {"n": 1}
    assert json.loads(sock.expect("second", c2)["data"]) == {"n": 2}
    assert json.loads(other.expect("first", c1)["data"]) == {"n": 1}
    assert other.expect("third", c1)["data"] == "three"
    sock.drain(QUIET)
    assert sock.received("third") == [], "batch item socket_id exclusion ignored"


def test_get_requests_carry_body_md5(sdk):
    # pusher-http-python adds body_md5 (of the empty body) to GET requests too; every GET test
    # in this file therefore checks that Herald accepts it.
    request = sdk._pusher_client.channels_info.make_request(prefix_filter="presence-")
    assert request.method == "GET"
    assert request.query_params["body_md5"] == "d41d8cd98f00b204e9800998ecf8427e"


def test_channels_info_with_prefix_and_info(sdk, sockets, unique):
    pres = unique("presence-py-list-")
    pub = unique("public-py-list-")
    a, b, c = sockets(), sockets(), sockets()
    presence_member(sdk, a, pres, "u1", {"name": "One"})
    presence_member(sdk, b, pres, "u1", {"name": "One"})
    presence_member(sdk, c, pres, "u2")
    c.subscribe(pub)

    listed = sdk.channels_info(prefix_filter="presence-", attributes=["user_count"])
    assert listed["channels"][pres] == {"user_count": 2}
    assert all(name.startswith("presence-") for name in listed["channels"])
    assert pub not in listed["channels"]

    everything = sdk.channels_info()
    assert everything["channels"][pub] == {}
    assert everything["channels"][pres] == {}

    with pytest.raises(pusher.errors.PusherBadRequest):
        sdk.channels_info(prefix_filter="public-", attributes=["user_count"])


def test_channel_info_on_occupied_presence_channel(sdk, sockets, unique):
    pres = unique("presence-py-info-")
    a, b, c = sockets(), sockets(), sockets()
    presence_member(sdk, a, pres, "alice")
    presence_member(sdk, b, pres, "bob")
    presence_member(sdk, c, pres, "bob")

    info = sdk.channel_info(pres, ["user_count", "subscription_count"])
    assert info == {"occupied": True, "user_count": 2, "subscription_count": 3}

    assert sdk.channel_info(pres) == {"occupied": True}
    assert sdk.channel_info(unique("presence-py-empty-")) == {"occupied": False}

    # user_count does not apply to a public channel.
    pub = unique("public-py-info-")
    a.subscribe(pub)
    with pytest.raises(pusher.errors.PusherBadRequest):
        sdk.channel_info(pub, ["user_count"])
    assert sdk.channel_info(pub, ["subscription_count"]) == {"occupied": True, "subscription_count": 1}


def test_users_info(sdk, sockets, unique):
    pres = unique("presence-py-users-")
    a, b, c = sockets(), sockets(), sockets()
    presence_member(sdk, a, pres, "alice", {"name": "Alice"})
    presence_member(sdk, b, pres, "bob")
    presence_member(sdk, c, pres, "bob")

    users = sdk.users_info(pres)
    assert sorted(u["id"] for u in users["users"]) == ["alice", "bob"]
    assert all(set(u) == {"id"} for u in users["users"])

    with pytest.raises(pusher.errors.PusherBadRequest):
        sdk.users_info(unique("public-py-users-"))


def test_authenticate_private_and_presence(sdk, sockets, unique):
    private = unique("private-py-auth-")
    pres = unique("presence-py-auth-")
    first, second = sockets(), sockets()

    auth = sdk.authenticate(channel=private, socket_id=first.socket_id)
    assert set(auth) == {"auth"}
    assert auth["auth"].startswith(APP_KEY + ":")
    first.subscribe(private, auth=auth["auth"])

    # The presence signature covers the exact channel_data string the SDK produced.
    members = presence_member(sdk, first, pres, "alice", {"name": "Alice"})
    assert members["presence"]["count"] == 1
    assert members["presence"]["ids"] == ["alice"]
    assert members["presence"]["hash"] == {"alice": {"name": "Alice"}}

    members = presence_member(sdk, second, pres, 7, {"name": "Seven"})
    assert members["presence"]["count"] == 2
    assert sorted(members["presence"]["ids"]) == ["7", "alice"]
    added = first.expect("pusher_internal:member_added", pres)
    assert json.loads(added["data"]) == {"user_id": "7", "user_info": {"name": "Seven"}}

    # A signature made for another socket is refused, and the socket stays open.
    stolen = sdk.authenticate(channel=private, socket_id=first.socket_id)
    second.send("pusher:subscribe", {"channel": private, "auth": stolen["auth"]})
    refused = second.expect("pusher:subscription_error", private)
    assert refused["data"]["type"] == "AuthError"
    assert sdk.trigger(private, "only-first", {}) == {}
    first.expect("only-first", private)
    second.drain(QUIET)
    assert second.received("only-first") == []
    assert second.close_code is None


def test_authenticate_user_and_send_to_user(sdk, sockets, unique):
    user_id = unique("py-user-")
    sock = sockets()
    other = sockets()

    signed = sdk.authenticate_user(sock.socket_id, {"id": user_id, "user_info": {"name": "Py"}})
    assert set(signed) == {"auth", "user_data"}
    success = sock.signin(signed["auth"], signed["user_data"])
    assert json.loads(success["user_data"]) == {"id": user_id, "user_info": {"name": "Py"}}
    sock.subscribe(f"#server-to-user-{user_id}")

    # Another socket may not subscribe to this user's channel.
    other.send("pusher:subscribe", {"channel": f"#server-to-user-{user_id}", "auth": ""})

    assert sdk.send_to_user(user_id, "notice", {"text": "hi"}) == {}
    msg = sock.expect("notice", f"#server-to-user-{user_id}")
    assert json.loads(msg["data"]) == {"text": "hi"}
    other.drain(QUIET)
    assert other.received("notice") == []
    assert other.received("pusher_internal:subscription_succeeded") == []


def test_terminate_user_connections(sdk, sockets, unique):
    user_id = unique("py-doomed-")
    victim = sockets()
    victim2 = sockets()
    bystander = sockets()
    presence_only = sockets()
    for s in (victim, victim2):
        signed = sdk.authenticate_user(s.socket_id, {"id": user_id})
        s.signin(signed["auth"], signed["user_data"])
    signed = sdk.authenticate_user(bystander.socket_id, {"id": unique("py-bystander-")})
    bystander.signin(signed["auth"], signed["user_data"])
    presence_member(sdk, presence_only, unique("presence-py-term-"), user_id)

    # pusher-http-python posts to /users/{id}/terminate_connections (no /apps/{id} prefix).
    assert sdk.terminate_user_connections(user_id) == {}

    for s in (victim, victim2):
        assert s.wait_closed() == 4009
        errors = s.received("pusher:error")
        assert errors, "no pusher:error before the close"
        assert errors[0]["data"]["code"] == 4009

    bystander.drain(QUIET)
    presence_only.drain(0.1)
    assert bystander.close_code is None
    assert presence_only.close_code is None
    assert bystander.received("pusher:error") == []


def test_unicode_data_and_odd_channel_names(sdk, sockets, unique):
    # Allowed characters: [A-Za-z0-9_\-=@,.;]; the Python SDK puts them unescaped in the path it
    # signs, and json-escapes non-ASCII data in the body it hashes.
    channel = unique("public-py-odd_Name=@,.;-")
    sock = sockets()
    sock.subscribe(channel)

    payload = {"text": "héllo wörld ✓ 日本語 🚀", "quote": "\"\\\n"}
    assert sdk.trigger(channel, "unicode", payload) == {}
    assert json.loads(sock.expect("unicode", channel)["data"]) == payload

    assert sdk.trigger(channel, "raw", "ünïcödé, not JSON {") == {}
    assert sock.expect("raw", channel)["data"] == "ünïcödé, not JSON {"

    assert sdk.channel_info(channel, ["subscription_count"]) == {"occupied": True, "subscription_count": 1}
    assert sdk.channels_info(prefix_filter="public-py-odd_")["channels"][channel] == {}
