"""Signing in, on SQLite and PostgreSQL: every way it can go wrong answers clearly and safely."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from tests.integration.auth.conftest import PASSWORD, World
from transact.kernel.security import CSRF_COOKIE, SESSION_COOKIE

GENERIC = {"code": "invalid_credentials", "message": "tenant, username, password or code is wrong"}


def next_code(totp) -> str:  # type: ignore[no-untyped-def]
    """The code of the next 30 s step: the current one was spent on enrolment."""
    return str(totp.at(time.time() + 30))


async def test_agent_signs_in_with_a_password(world: World) -> None:
    tenant = await world.tenant("acme")
    user_id = await world.user(tenant, "alice")
    response = await world.login("acme", "alice")
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert 0 < body["expires_in"] <= 900
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == user_id
    assert claims["tid"] == tenant
    cookie = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookie if c.startswith(SESSION_COOKIE))
    assert "HttpOnly" in session_cookie
    assert "SameSite=strict" in session_cookie
    assert "Secure" in session_cookie
    csrf_cookie = next(c for c in cookie if c.startswith(CSRF_COOKIE))
    assert "HttpOnly" not in csrf_cookie
    assert body["csrf_token"] in csrf_cookie


async def test_wrong_password_unknown_user_and_unknown_tenant_look_the_same(
    world: World,
) -> None:
    tenant = await world.tenant("acme")
    await world.user(tenant, "alice")
    answers = [
        await world.login("acme", "alice", "wrong-password-1"),
        await world.login("acme", "nobody"),
        await world.login("no-such-tenant", "alice"),
    ]
    for answer in answers:
        assert answer.status_code == 401
        assert answer.json() == {"error": GENERIC}


async def test_ten_failures_lock_the_account_for_everyone(world: World) -> None:
    tenant = await world.tenant("acme")
    admin_id = await world.user(tenant, "root", "admin")
    alice = await world.user(tenant, "alice")
    admin = await world.bearer("acme", "root")
    for attempt in range(9):
        assert (await world.login("acme", "alice", "wrong-password-1")).status_code == 401, attempt
    tenth = await world.login("acme", "alice", "wrong-password-1")
    assert tenth.status_code == 423
    assert tenth.json()["error"]["code"] == "account_locked"
    locked = await world.login("acme", "alice")  # even the right password
    assert locked.status_code == 423
    assert (await world.client.get(f"/api/v1/admin/users/{alice}", headers=admin)).json()[
        "locked"
    ] is True

    unlock = await world.client.patch(
        f"/api/v1/admin/users/{alice}", json={"unlock": True}, headers=admin
    )
    assert unlock.status_code == 200
    assert (await world.login("acme", "alice")).status_code == 200
    records = (await world.client.get("/api/v1/audit", headers=admin)).json()
    actions = [r["action"] for r in records]
    assert "auth.locked_out" in actions
    assert any(
        r["action"] == "auth.user_changed" and r["actor"] == f"user:{admin_id}" for r in records
    )


async def test_unknown_usernames_lock_out_like_real_ones(world: World) -> None:
    await world.tenant("acme")
    answers = [await world.login("acme", "ghost", "wrong-password-1") for _ in range(11)]
    assert [a.status_code for a in answers[:9]] == [401] * 9
    assert {a.status_code for a in answers[9:]} == {423}


async def test_bad_input_is_a_clear_4xx(world: World) -> None:
    cases = [
        {"tenant": "acme", "username": "alice"},
        {"tenant": "acme", "username": "alice", "password": "x" * 300},
        {"tenant": "", "username": "alice", "password": PASSWORD},
        {"tenant": "acme", "username": "alice", "password": PASSWORD, "extra": 1},
    ]
    for body in cases:
        response = await world.client.post("/api/v1/auth/login", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "invalid_request"
        assert PASSWORD not in response.text
    garbage = await world.client.post(
        "/api/v1/auth/login", content=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    assert garbage.status_code == 422


async def test_mfa_tenant_enrols_on_first_login_then_needs_the_code(world: World) -> None:
    await world.user(await world.tenant("bank", mfa=True), "bob")
    first = await world.login("bank", "bob")
    assert first.status_code == 403
    error = first.json()["error"]
    assert error["code"] == "mfa_enrolment_required"
    started = await world.client.post(
        "/api/v1/auth/mfa/enroll", json={"enrolment_token": error["enrolment_token"]}
    )
    assert started.json()["otpauth_uri"].startswith("otpauth://totp/Transact:bob%40bank?")
    assert started.json()["qr_svg"].startswith("<svg")
    totp = await world.enrol_mfa(error["enrolment_token"])
    assert len(world.recovery_codes) == 10

    no_code = await world.login("bank", "bob")
    assert no_code.status_code == 401
    assert no_code.json()["error"]["code"] == "otp_required"
    wrong = await world.login("bank", "bob", otp="000000")
    assert wrong.json() == {"error": GENERIC}
    code = next_code(totp)
    assert (await world.login("bank", "bob", otp=code)).status_code == 200
    replayed = await world.login("bank", "bob", otp=code)
    assert replayed.status_code == 401, "a TOTP code works once"


async def test_a_recovery_code_works_once(world: World) -> None:
    await world.user(await world.tenant("bank", mfa=True), "bob")
    ticket = (await world.login("bank", "bob")).json()["error"]["enrolment_token"]
    await world.enrol_mfa(ticket)
    code = world.recovery_codes[0]
    assert (await world.login("bank", "bob", otp=code)).status_code == 200
    assert (await world.login("bank", "bob", otp=code)).status_code == 401


async def test_enrolment_needs_a_valid_ticket(world: World) -> None:
    response = await world.client.post(
        "/api/v1/auth/mfa/enroll", json={"enrolment_token": "forged"}
    )
    assert response.status_code == 401


async def test_api_client_gets_a_token(world: World) -> None:
    tenant = await world.tenant("acme")
    client, secret = await world.accounts.create_client(tenant, "crm", ["payments:write"])
    response = await world.client.post(
        "/api/v1/auth/token", json={"client_id": client.id, "client_secret": secret}
    )
    assert response.status_code == 200
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["kind"] == "client"
    assert claims["scope"] == "payments:write"
    refused = await world.client.post(
        "/api/v1/auth/token", json={"client_id": client.id, "client_secret": "nope"}
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_client"
    # A client token cannot act as a user.
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    assert (await world.client.get("/api/v1/auth/me", headers=headers)).status_code == 403


async def test_tokens_verify_against_the_published_jwks(world: World) -> None:
    await world.user(await world.tenant("acme"), "alice")
    token = (await world.login("acme", "alice")).json()["access_token"]
    jwks = (await world.client.get("/.well-known/jwks.json")).json()
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key=key, algorithms=["EdDSA"], audience="transact-api")
    assert claims["name"] == "alice"


async def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(world: World) -> None:
    await world.user(await world.tenant("acme"), "alice")
    old = await world.bearer("acme", "alice")
    old_kid = jwt.get_unverified_header(old["Authorization"][7:])["kid"]
    await world.accounts.keys.ensure_current(force_rotation=True)
    # The app's own signer picks the new key up on its next start; this one signs now.
    assert (await world.client.get("/api/v1/auth/me", headers=old)).status_code == 200
    kids = {k["kid"] for k in (await world.client.get("/api/v1/auth/jwks")).json()["keys"]}
    assert old_kid in kids
    assert len(kids) == 2


async def test_forged_and_tampered_tokens_are_refused(world: World) -> None:
    await world.user(await world.tenant("acme"), "alice")
    headers = await world.bearer("acme", "alice")
    token = headers["Authorization"][7:]
    head, payload, signature = token.split(".")
    forged_payload = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b'"agent"', b'"admin"')
    ).decode()
    for bad in (
        f"{head}.{forged_payload}.{signature}",
        "not-a-token",
        jwt.encode({"sub": "x"}, "s" * 32, algorithm="HS256"),
    ):
        response = await world.client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {bad}"}
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_token"
    basic = await world.client.get("/api/v1/auth/me", headers={"Authorization": "Basic eA=="})
    assert basic.status_code == 401


async def test_cookie_posts_need_the_csrf_token(world: World) -> None:
    await world.user(await world.tenant("acme"), "alice")
    login = await world.login("acme", "alice")
    csrf = login.json()["csrf_token"]
    assert (await world.client.get("/api/v1/auth/me")).status_code == 200  # cookie, safe
    missing = await world.client.post("/api/v1/auth/refresh")
    assert missing.status_code == 403
    assert missing.json()["error"]["code"] == "csrf_failed"
    wrong = await world.client.post("/api/v1/auth/refresh", headers={"X-CSRF-Token": "x"})
    assert wrong.status_code == 403
    right = await world.client.post("/api/v1/auth/refresh", headers={"X-CSRF-Token": csrf})
    assert right.status_code == 200


async def test_logout_ends_the_session_for_cookie_and_token(world: World) -> None:
    await world.user(await world.tenant("acme"), "alice")
    login = await world.login("acme", "alice")
    bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
    out = await world.client.post(
        "/api/v1/auth/logout", headers={"X-CSRF-Token": login.json()["csrf_token"]}
    )
    assert out.status_code == 204
    after = await world.client.get("/api/v1/auth/me", headers=bearer)
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "session_expired"


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
async def test_idle_sessions_and_expired_tokens_need_a_new_sign_in(world: World) -> None:
    world.kernel.sessions.idle_timeout = 0.5
    await world.user(await world.tenant("acme"), "alice")
    headers = await world.bearer("acme", "alice")
    assert (await world.client.get("/api/v1/auth/me", headers=headers)).status_code == 200
    await asyncio.sleep(0.8)
    idle = await world.client.get("/api/v1/auth/me", headers=headers)
    assert idle.status_code == 401
    assert idle.json()["error"]["code"] == "session_expired"

    world.kernel.sessions.idle_timeout = 60
    world.kernel.settings.access_token_ttl = 1
    headers = await world.bearer("acme", "alice")
    await asyncio.sleep(2.1)
    expired = await world.client.get("/api/v1/auth/me", headers=headers)
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "token_expired"


async def test_launch_link_signs_the_agent_in_once(world: World) -> None:
    tenant = await world.tenant("acme")
    await world.user(tenant, "alice")
    made = await world.launch_link(await world.client_headers(tenant, ["launch"]), "alice")
    assert made.status_code == 201
    assert made.json()["expires_in"] == 60
    query = world.launch_query(made)
    assert query["tenant"] == "acme"
    assert query["username"] == "alice"
    first = await world.client.post("/api/v1/auth/launch", json=query)
    assert first.status_code == 200
    again = await world.client.post("/api/v1/auth/launch", json=query)
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "invalid_launch"


async def test_launch_links_need_the_launch_scope_and_respect_mfa(world: World) -> None:
    tenant = await world.tenant("bank", mfa=True)
    await world.user(tenant, "bob")
    refused = await world.launch_link(await world.client_headers(tenant, ["payments:read"]), "bob")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_scope"

    ticket = (await world.login("bank", "bob")).json()["error"]["enrolment_token"]
    totp = await world.enrol_mfa(ticket)
    query = world.launch_query(
        await world.launch_link(await world.client_headers(tenant, ["launch"]), "bob")
    )
    needs_code = await world.client.post("/api/v1/auth/launch", json=query)
    assert needs_code.json()["error"]["code"] == "otp_required"
    signed_in = await world.client.post(
        "/api/v1/auth/launch", json={**query, "otp": next_code(totp)}
    )
    assert signed_in.status_code == 200


async def test_a_tenant_delegating_mfa_to_its_sso_launches_without_a_code(world: World) -> None:
    tenant = await world.tenant("sso-shop", mfa=True, sso=True)
    await world.user(tenant, "carol")
    query = world.launch_query(
        await world.launch_link(await world.client_headers(tenant, ["launch"]), "carol")
    )
    signed_in = await world.client.post("/api/v1/auth/launch", json=query)
    assert signed_in.status_code == 200, signed_in.text
    # A password login on that tenant still needs MFA: only the launch is delegated.
    assert (await world.login("sso-shop", "carol")).json()["error"]["code"] == (
        "mfa_enrolment_required"
    )
