"""Auth rules, free of I/O: passwords, lockout, TOTP, recovery codes, token claims."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from transact.kernel.errors import ApiError
from transact.kernel.security import AUDIENCE, ISSUER, Role, Scope

MAX_FAILED_ATTEMPTS = 10  # PCI DSS 8.3.4: lock after no more than 10 attempts
LOCKOUT = timedelta(minutes=30)  # ... for at least 30 minutes
MIN_PASSWORD_LENGTH = 12  # PCI DSS 8.3.6
MAX_PASSWORD_LENGTH = 128  # hashing a megabyte "password" is a denial of service
TOTP_WINDOW = 1  # one 30 s step either side, for clock drift
RECOVERY_CODES = 10
LAUNCH_TTL = 60.0
CLIENT_TOKEN_TTL = 600

# OWASP's argon2id parameters: 19 MiB, 2 passes, 1 lane.
hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified when the user does not exist, so both answers take the same time.
DUMMY_HASH = hasher.hash("transact-dummy-password-for-timing")

TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


class PolicyError(ApiError):
    """Input that breaks a rule; the message says which, for the person who typed it."""

    def __init__(self, message: str) -> None:
        super().__init__(422, "policy_violation", message)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def check_tenant_name(name: str) -> str:
    if not TENANT_NAME.match(name):
        raise PolicyError("tenant names are 2-63 lowercase letters, digits or '-'")
    return name


def check_username(name: str) -> str:
    if not USERNAME.match(name):
        raise PolicyError(
            "usernames are 1-128 letters, digits or . _ @ -, starting with one of the first two"
        )
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise PolicyError(f"passwords are {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters")
    if not (any(c.isalpha() for c in password) and any(c.isdigit() for c in password)):
        raise PolicyError("passwords need both letters and digits")
    return password


def check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise PolicyError(f"role must be one of: {', '.join(r.value for r in Role)}") from None


def check_scopes(scopes: list[str]) -> list[str]:
    known = {s.value for s in Scope}
    unknown = sorted(set(scopes) - known)
    if unknown:
        raise PolicyError(f"unknown scopes {unknown}; known: {sorted(known)}")
    return sorted(set(scopes))


def hash_secret(secret: str) -> str:
    return hasher.hash(secret)


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    """Constant work whether or not there is a stored hash."""
    if len(secret) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return hasher.verify(stored_hash or DUMMY_HASH, secret) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A password that satisfies the policy, for the demo and for admins who ask for one."""
    while True:
        candidate = secrets.token_urlsafe(15)
        if any(c.isdigit() for c in candidate) and any(c.isalpha() for c in candidate):
            return candidate


@dataclass(frozen=True)
class Lockout:
    failed_attempts: int
    locked_until: datetime | None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def after_failure(self, now: datetime) -> Lockout:
        """One more failure; the tenth in a row locks the account for 30 minutes."""
        attempts = (
            0
            if self.locked_until is not None and now >= self.locked_until
            else (self.failed_attempts)
        )
        attempts += 1
        if attempts >= MAX_FAILED_ATTEMPTS:
            return Lockout(0, now + LOCKOUT)
        return Lockout(attempts, None)

    @staticmethod
    def cleared() -> Lockout:
        return Lockout(0, None)


def new_totp_secret() -> str:
    return pyotp.random_base32()


def otpauth_uri(secret: str, tenant: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=f"{username}@{tenant}", issuer_name="Transact")


def totp_step(secret: str, otp: str, now: datetime, last_step: int | None) -> int | None:
    """The time step `otp` belongs to, or None when it is wrong or was already used."""
    if not (otp.isascii() and otp.isdigit() and len(otp) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        if secrets.compare_digest(totp.generate_otp(step), otp):
            # A code is good once: a replayed (or older) step is refused.
            return step if last_step is None or step > last_step else None
    return None


def new_recovery_codes() -> list[str]:
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return [
        "-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(2))
        for _ in range(RECOVERY_CODES)
    ]


def looks_like_recovery_code(value: str) -> bool:
    return len(value) == 11 and value[5] == "-"


def user_claims(
    *,
    user_id: str,
    tenant_id: str,
    username: str,
    role: str,
    session_id: str,
    now: datetime,
    ttl: float,
) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user_id,
        "tid": tenant_id,
        "kind": "user",
        "name": username,
        "role": role,
        "sid": session_id,
        "jti": secrets.token_hex(8),
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp() + ttl),
    }


def client_claims(
    *,
    client_id: str,
    tenant_id: str,
    name: str,
    scopes: list[str],
    now: datetime,
) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": client_id,
        "tid": tenant_id,
        "kind": "client",
        "name": name,
        "scope": " ".join(scopes),
        "jti": secrets.token_hex(8),
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp() + CLIENT_TOKEN_TTL),
    }
