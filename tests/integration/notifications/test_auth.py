"""Who may open `/ws/agent`: a bearer header, the session cookie from our own pages, or a
first `auth` message; never a token in the URL; nothing else stays open."""

from __future__ import annotations

import json

from tests.integration.notifications.conftest import Desk, Feed


async def test_a_bearer_header_signs_the_socket_in(desk: Desk) -> None:
    alice = await desk.person("alice")
    feed, subscribed = await desk.feed(alice)
    assert subscribed == {"type": "subscribed", "scope": "agent", "last_id": 0}
    await feed.close()


async def test_ready_says_who_and_what_may_be_watched(desk: Desk) -> None:
    alice = await desk.person("alice")
    ws = await desk.raw(additional_headers=alice.bearer)
    ready = await Feed(ws).expect("ready")
    assert ready["user"] == {
        "id": alice.id,
        "tenant_id": desk.tenant_id,
        "username": "alice",
        "role": "agent",
    }
    assert ready["scopes"] == ["agent"]
    assert ready["heartbeat"] == 0.5
    await ws.close()


async def test_the_session_cookie_from_our_own_origin_signs_in(desk: Desk) -> None:
    alice = await desk.person("alice")
    cookie = {"Cookie": f"transact_session={alice.session_id}"}
    ws = await desk.raw(additional_headers=cookie, origin=desk.origin)
    feed = Feed(ws)
    assert (await feed.expect("ready"))["user"]["id"] == alice.id
    await feed.expect("subscribed")
    await feed.close()


async def test_the_session_cookie_from_another_site_is_refused(desk: Desk) -> None:
    """Cross-site WebSocket hijacking: the browser sends our cookie with evil.example's
    upgrade, and the Origin that gives it away."""
    alice = await desk.person("alice")
    cookie = {"Cookie": f"transact_session={alice.session_id}"}
    for origin in ("https://evil.example", f"http://127.0.0.1:{desk.port + 1}", "null"):
        ws = await desk.raw(additional_headers=cookie, origin=origin)
        code, reason = await Feed(ws).closed()
        assert code == 4403, (origin, code)
        assert reason is not None
        assert "Origin" in reason


async def test_the_session_cookie_without_an_origin_is_refused(desk: Desk) -> None:
    alice = await desk.person("alice")
    ws = await desk.raw(additional_headers={"Cookie": f"transact_session={alice.session_id}"})
    assert (await Feed(ws).closed())[0] == 4403


async def test_an_ended_session_cookie_is_refused(desk: Desk) -> None:
    ws = await desk.raw(additional_headers={"Cookie": "transact_session=nope"}, origin=desk.origin)
    code, reason = await Feed(ws).closed()
    assert code == 4401
    assert reason is not None
    assert "session_expired" in reason


async def test_a_token_in_the_first_message_signs_in(desk: Desk) -> None:
    alice = await desk.person("alice")
    ws = await desk.raw()
    await ws.send(json.dumps({"type": "auth", "token": alice.token}))
    feed = Feed(ws)
    assert (await feed.expect("ready"))["user"]["id"] == alice.id
    await feed.expect("subscribed")
    await feed.close()


async def test_a_bad_token_is_refused_with_its_reason(desk: Desk) -> None:
    ws = await desk.raw(additional_headers={"Authorization": "Bearer not-a-jwt"})
    code, reason = await Feed(ws).closed()
    assert code == 4401
    assert reason is not None
    assert "invalid_token" in reason
    ws = await desk.raw()
    await ws.send(json.dumps({"type": "auth", "token": "not-a-jwt"}))
    assert (await Feed(ws).closed())[0] == 4401
    ws = await desk.raw(additional_headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert (await Feed(ws).closed())[0] == 4401


async def test_no_credentials_closes_the_socket_in_time(desk: Desk) -> None:
    ws = await desk.raw()
    code, reason = await Feed(ws).closed(seconds=3)
    assert code == 4401
    assert reason is not None
    assert "auth" in reason


async def test_a_first_message_that_is_not_auth_is_refused(desk: Desk) -> None:
    ws = await desk.raw()
    await ws.send(json.dumps({"type": "resume", "after": 3}))
    assert (await Feed(ws).closed())[0] == 4401


async def test_a_token_in_the_url_is_refused_even_a_good_one(desk: Desk) -> None:
    alice = await desk.person("alice")
    for name in ("token", "access_token"):
        ws = await desk.raw(f"?{name}={alice.token}")
        code, reason = await Feed(ws).closed()
        assert code == 1008
        assert reason is not None
        assert "URL" in reason


async def test_api_clients_are_refused(desk: Desk) -> None:
    client, secret = await desk.accounts.create_client(
        desk.tenant_id, "crm", ["calls:read", "payments:read"]
    )
    token = await desk.http.post(
        "/api/v1/auth/token", json={"client_id": client.id, "client_secret": secret}
    )
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    ws = await desk.raw(additional_headers=bearer)
    assert (await Feed(ws).closed())[0] == 4403


async def test_logging_out_closes_the_socket_at_the_next_heartbeat(desk: Desk) -> None:
    alice = await desk.person("alice")
    feed, _ = await desk.feed(alice)
    response = await desk.http.post("/api/v1/auth/logout", headers=alice.bearer)
    assert response.status_code == 204
    code, reason = await feed.closed(seconds=3)
    assert code == 4401
    assert reason is not None
    assert "session has ended" in reason


async def test_bad_frames_close_the_socket_with_their_code(desk: Desk) -> None:
    alice = await desk.person("alice")
    feed, _ = await desk.feed(alice)
    await feed.ws.send(b"\x00\x01")
    assert (await feed.closed())[0] == 1003
    feed, _ = await desk.feed(alice)
    await feed.ws.send("{not json")
    assert (await feed.closed())[0] == 1007
    feed, _ = await desk.feed(alice)
    await feed.ws.send(json.dumps({"type": "ping", "pad": "x" * 5000}))
    assert (await feed.closed())[0] == 1009


async def test_unknown_messages_get_an_error_and_the_socket_stays(desk: Desk) -> None:
    alice = await desk.person("alice")
    feed, _ = await desk.feed(alice)
    await feed.ws.send(json.dumps({"type": "dance"}))
    assert (await feed.expect("error"))["code"] == "unknown_type"
    await feed.ws.send(json.dumps({"type": "ping"}))
    await feed.expect("pong")
    await feed.ws.send(json.dumps({"type": "auth", "token": alice.token}))
    assert (await feed.expect("error"))["code"] == "already_authenticated"
    await feed.close()
