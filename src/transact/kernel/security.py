"""Who is asking: principals, sessions, token verification and the rules every service applies.

The auth service issues tokens and sessions; every other service verifies them
here, through the cache (sessions and the published signing keys live there),
without calling auth. Agents see their own tenant only, and within it only
their own calls and payments unless they supervise.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import jwt
from fastapi import Request

from transact.kernel.cache import Cache
from transact.kernel.errors import ApiError

ISSUER = "transact"
AUDIENCE = "transact-api"
SESSION_COOKIE = "transact_session"
CSRF_COOKIE = "transact_csrf"
CSRF_HEADER = "x-csrf-token"
JWKS_KEY = "auth:jwks"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class Scope(StrEnum):
    """What an API client may do; users act by role instead."""

    PAYMENTS_READ = "payments:read"
    PAYMENTS_WRITE = "payments:write"
    LINKS_WRITE = "links:write"
    CALLS_READ = "calls:read"
    CALLS_ASSIGN = "calls:assign"
    LAUNCH = "launch"
    REPORTS_READ = "reports:read"


@dataclass(frozen=True)
class Principal:
    kind: str  # "user" or "client"
    id: str
    tenant_id: str
    name: str
    role: Role | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    session_id: str | None = None
    via_cookie: bool = False

    @property
    def actor(self) -> str:
        """How the audit trail names this principal."""
        return f"{self.kind}:{self.id}"

    @property
    def supervises(self) -> bool:
        return self.role in (Role.SUPERVISOR, Role.ADMIN)

    def may_read(self, tenant_id: str, owner_id: str | None = None) -> bool:
        """Own tenant only; within it, own resources unless supervisor, admin or client."""
        if tenant_id != self.tenant_id:
            return False
        if self.kind == "client" or self.supervises or owner_id is None:
            return True
        return owner_id == self.id

    def has_scope(self, scope: str) -> bool:
        return self.kind == "user" or scope in self.scopes


def ensure_visible(principal: Principal, tenant_id: str, owner_id: str | None = None) -> None:
    """404, not 403, for another tenant's or agent's resource: its existence is not ours to tell."""
    if not principal.may_read(tenant_id, owner_id):
        raise ApiError(404, "not_found", "no such resource")


@dataclass
class Session:
    id: str
    tenant_id: str
    user_id: str
    username: str
    role: str
    csrf: str
    created_at: float
    auth_time: float

    def principal(self, *, via_cookie: bool) -> Principal:
        return Principal(
            kind="user",
            id=self.user_id,
            tenant_id=self.tenant_id,
            name=self.username,
            role=Role(self.role),
            session_id=self.id,
            via_cookie=via_cookie,
        )


class Sessions:
    """Login sessions in the cache: they lapse after the idle timeout unless used (PCI 8.2.8)."""

    def __init__(self, cache: Cache, idle_timeout: float, max_age: float) -> None:
        self._cache = cache
        self.idle_timeout = idle_timeout
        self.max_age = max_age

    @staticmethod
    def _key(session_id: str) -> str:
        return f"auth:session:{session_id}"

    async def create(self, *, tenant_id: str, user_id: str, username: str, role: str) -> Session:
        now = time.time()
        session = Session(
            id=secrets.token_urlsafe(32),
            tenant_id=tenant_id,
            user_id=user_id,
            username=username,
            role=role,
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            auth_time=now,
        )
        await self._save(session)
        return session

    async def _save(self, session: Session) -> None:
        await self._cache.set(
            self._key(session.id), json.dumps(asdict(session)).encode(), self.idle_timeout
        )

    async def touch(self, session_id: str) -> Session | None:
        """The live session, its idle clock restarted; None once idle or too old."""
        raw = await self._cache.get(self._key(session_id))
        if raw is None:
            return None
        session = Session(**json.loads(raw))
        if time.time() - session.created_at > self.max_age:
            await self.end(session_id)
            return None
        await self._save(session)
        return session

    async def end(self, session_id: str) -> None:
        await self._cache.delete(self._key(session_id))

    async def alive(self, session_id: str) -> bool:
        """Whether the session still stands, without restarting its idle clock: a
        long-lived push socket must not keep an idle session signed in."""
        raw = await self._cache.get(self._key(session_id))
        if raw is None:
            return False
        return time.time() - float(json.loads(raw)["created_at"]) <= self.max_age


class TokenVerifier:
    """Checks access tokens against the signing keys auth publishes in the cache."""

    def __init__(self, cache: Cache, refresh_after: float = 30.0) -> None:
        self._cache = cache
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at = 0.0
        self._refresh_after = refresh_after

    async def _key(self, kid: str) -> jwt.PyJWK | None:
        stale = time.monotonic() - self._loaded_at > self._refresh_after
        if kid not in self._keys or stale:
            raw = await self._cache.get(JWKS_KEY)
            keys = jwt.PyJWKSet.from_json(raw.decode()).keys if raw else []
            self._keys = {k.key_id: k for k in keys if k.key_id}
            self._loaded_at = time.monotonic()
        return self._keys.get(kid)

    async def claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            key = await self._key(str(header.get("kid", "")))
            if key is None:
                raise jwt.InvalidTokenError("unknown signing key")
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=["EdDSA"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "tid", "kind"]},
            )
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "token_expired", "the access token has expired") from None
        except (jwt.InvalidTokenError, ValueError):
            raise ApiError(401, "invalid_token", "the access token is not valid") from None
        return claims


class Authenticator:
    """Turns a request into a Principal, or answers 401/403 with a clear reason."""

    def __init__(self, verifier: TokenVerifier, sessions: Sessions) -> None:
        self.verifier = verifier
        self.sessions = sessions

    async def principal(self, request: Request) -> Principal:
        authorization = request.headers.get("authorization", "")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "invalid_token", "use 'Authorization: Bearer <token>'")
            return await self._from_token(token.strip())
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            return await self._from_cookie(request, session_id)
        raise ApiError(401, "unauthenticated", "sign in or present a bearer token")

    async def from_token(self, token: str) -> Principal:
        """The principal of a bearer token presented outside an HTTP request (a WebSocket's
        first message); 401 `ApiError` as for a request."""
        return await self._from_token(token)

    async def from_session(self, session_id: str) -> Principal:
        """The principal of a session cookie on a WebSocket upgrade. The caller checks the
        Origin instead of a CSRF header, which a browser cannot add to an upgrade."""
        session = await self.sessions.touch(session_id)
        if session is None:
            raise ApiError(401, "session_expired", "the session has ended; sign in again")
        return session.principal(via_cookie=True)

    async def _from_token(self, token: str) -> Principal:
        claims = await self.verifier.claims(token)
        if claims["kind"] == "client":
            return Principal(
                kind="client",
                id=claims["sub"],
                tenant_id=claims["tid"],
                name=str(claims.get("name", claims["sub"])),
                scopes=frozenset(str(claims.get("scope", "")).split()),
            )
        session = await self.sessions.touch(str(claims.get("sid", "")))
        if session is None or session.user_id != claims["sub"]:
            raise ApiError(401, "session_expired", "the session has ended; sign in again")
        return session.principal(via_cookie=False)

    async def _from_cookie(self, request: Request, session_id: str) -> Principal:
        session = await self.sessions.touch(session_id)
        if session is None:
            raise ApiError(401, "session_expired", "the session has ended; sign in again")
        if request.method not in _SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            # A cookie rides along on any cross-site request; the CSRF token does not.
            if not sent or not hmac.compare_digest(sent, session.csrf):
                raise ApiError(403, "csrf_failed", "missing or wrong X-CSRF-Token header")
        return session.principal(via_cookie=True)


def require(authenticator: Authenticator, *roles: Role, scope: str | None = None) -> Any:
    """A FastAPI dependency: the principal if it has one of `roles` (users) or `scope` (clients)."""

    async def dependency(request: Request) -> Principal:
        principal = await authenticator.principal(request)
        if principal.kind == "user" and roles and principal.role not in roles:
            raise ApiError(403, "forbidden", "your role does not allow this")
        if principal.kind == "client" and (scope is None or scope not in principal.scopes):
            raise ApiError(
                403,
                "insufficient_scope",
                f"this API client lacks the scope {scope!r}"
                if scope
                else "API clients cannot use this endpoint",
            )
        request.state.principal = principal
        return principal

    return dependency
