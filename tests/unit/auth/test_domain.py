"""Auth's pure rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transact.auth import domain
from transact.auth.domain import Lockout, PolicyError
from transact.kernel.security import Principal, Role

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_ten_failures_in_a_row_lock_for_thirty_minutes() -> None:
    state = Lockout.cleared()
    for _ in range(9):
        state = state.after_failure(NOW)
        assert not state.locked(NOW)
    state = state.after_failure(NOW)
    assert state.locked(NOW)
    assert state.locked(NOW + timedelta(minutes=29, seconds=59))
    assert not state.locked(NOW + timedelta(minutes=30))


def test_a_lapsed_lock_starts_counting_afresh() -> None:
    locked = Lockout(0, NOW)
    after = locked.after_failure(NOW + timedelta(minutes=31))
    assert after == Lockout(1, None)


@pytest.mark.parametrize("password", ["short1", "a" * 20, "1" * 20, "x1" * 65])
def test_password_policy_refuses(password: str) -> None:
    with pytest.raises(PolicyError):
        domain.check_password(password)


def test_password_policy_accepts_and_generated_passwords_pass() -> None:
    assert domain.check_password("correct-horse-42")
    for _ in range(20):
        domain.check_password(domain.generate_password())


def test_secrets_verify_and_unknown_users_never_do() -> None:
    stored = domain.hash_secret("correct-horse-42")
    assert stored.startswith("$argon2id$")
    assert domain.verify_secret(stored, "correct-horse-42")
    assert not domain.verify_secret(stored, "correct-horse-43")
    assert not domain.verify_secret(None, "transact-dummy-password-for-timing")
    assert not domain.verify_secret("not a hash", "x")
    assert not domain.verify_secret(stored, "x" * 1000)


def test_totp_accepts_drift_of_one_step_and_refuses_replay() -> None:
    secret = domain.new_totp_secret()
    totp = pyotp.TOTP(secret)
    step = totp.timecode(NOW)
    assert domain.totp_step(secret, totp.at(NOW), NOW, None) == step
    assert domain.totp_step(secret, totp.at(NOW - timedelta(seconds=30)), NOW, None) == step - 1
    assert domain.totp_step(secret, totp.at(NOW + timedelta(seconds=30)), NOW, None) == step + 1
    assert domain.totp_step(secret, totp.at(NOW - timedelta(seconds=90)), NOW, None) is None
    assert domain.totp_step(secret, totp.at(NOW), NOW, step) is None, "replay"
    assert domain.totp_step(secret, totp.at(NOW), NOW, step + 1) is None, "older than used"
    for junk in ("", "12345", "1234567", "abcdef", "١٢٣٤٥٦"):
        assert domain.totp_step(secret, junk, NOW, None) is None


def test_recovery_codes_are_distinct_and_recognisable() -> None:
    codes = domain.new_recovery_codes()
    assert len(set(codes)) == 10
    assert all(domain.looks_like_recovery_code(c) for c in codes)
    assert not domain.looks_like_recovery_code("123456")


@pytest.mark.parametrize("name", ["A", "a", "-abc", "has space", "x" * 64, "UPPER"])
def test_tenant_names_are_checked(name: str) -> None:
    with pytest.raises(PolicyError):
        domain.check_tenant_name(name)


def test_scopes_and_roles_are_checked() -> None:
    assert domain.check_scopes(["launch", "launch"]) == ["launch"]
    with pytest.raises(PolicyError, match="unknown scopes"):
        domain.check_scopes(["everything"])
    assert domain.check_role("supervisor") is Role.SUPERVISOR
    with pytest.raises(PolicyError):
        domain.check_role("root")


ids = st.text(alphabet="abc", min_size=1, max_size=3)


@given(
    tenant=ids,
    other_tenant=ids,
    me=ids,
    owner=st.none() | ids,
    role=st.sampled_from(list(Role)),
    kind=st.sampled_from(["user", "client"]),
)
def test_no_principal_reads_another_tenants_resources(
    tenant: str, other_tenant: str, me: str, owner: str | None, role: Role, kind: str
) -> None:
    principal = Principal(
        kind=kind, id=me, tenant_id=tenant, name=me, role=role if kind == "user" else None
    )
    if other_tenant != tenant:
        assert not principal.may_read(other_tenant, owner)
    if kind == "user" and role is Role.AGENT and owner is not None and owner != me:
        assert not principal.may_read(tenant, owner), "agents see only their own"
    assert principal.may_read(tenant, me)
