"""Who is who, for services that must not read auth's tables: users by name, media secrets.

Auth writes the directory into the cache (the same pattern as the JWKS) whenever a
user or a tenant's media token changes, and rewrites all of it when it starts, so a
cache that was flushed fills again. Every other service only reads it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass

from transact.kernel.cache import Cache

PREFIX = "auth:dir"


def token_hash(token: str) -> str:
    """Media tokens are long random secrets, so a plain SHA-256 is a safe verifier."""
    return hashlib.sha256(b"transact-media-token:" + token.encode()).hexdigest()


@dataclass(frozen=True)
class DirectoryUser:
    id: str
    tenant_id: str
    username: str
    role: str
    disabled: bool = False


@dataclass(frozen=True)
class MediaTenant:
    """A tenant as the telephony platform names it, with the hashes of its media tokens
    (more than one while a rotation is under way)."""

    tenant_id: str
    name: str
    token_hashes: tuple[str, ...]

    def accepts(self, token: str) -> bool:
        candidate = token_hash(token)
        # Compare against every hash so the time taken says nothing about which matched.
        matches = [hmac.compare_digest(candidate, h) for h in self.token_hashes]
        return any(matches)


class Directory:
    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    @staticmethod
    def _user_key(tenant_id: str, username: str) -> str:
        return f"{PREFIX}:user:{tenant_id}:{username.lower()}"

    @staticmethod
    def _user_id_key(tenant_id: str, user_id: str) -> str:
        return f"{PREFIX}:uid:{tenant_id}:{user_id}"

    @staticmethod
    def _media_key(tenant_name: str) -> str:
        return f"{PREFIX}:media:{tenant_name.lower()}"

    async def put_user(self, user: DirectoryUser) -> None:
        raw = json.dumps(asdict(user)).encode()
        await self._cache.set(self._user_key(user.tenant_id, user.username), raw)
        await self._cache.set(self._user_id_key(user.tenant_id, user.id), raw)

    async def user(self, tenant_id: str, username: str) -> DirectoryUser | None:
        return self._decode_user(await self._cache.get(self._user_key(tenant_id, username)))

    async def user_by_id(self, tenant_id: str, user_id: str) -> DirectoryUser | None:
        return self._decode_user(await self._cache.get(self._user_id_key(tenant_id, user_id)))

    @staticmethod
    def _decode_user(raw: bytes | None) -> DirectoryUser | None:
        return DirectoryUser(**json.loads(raw)) if raw else None

    async def put_media_tenant(self, tenant: MediaTenant) -> None:
        raw = json.dumps(
            {"tenant_id": tenant.tenant_id, "name": tenant.name, "hashes": tenant.token_hashes}
        ).encode()
        await self._cache.set(self._media_key(tenant.name), raw)

    async def media_tenant(self, tenant_name: str) -> MediaTenant | None:
        raw = await self._cache.get(self._media_key(tenant_name))
        if not raw:
            return None
        data = json.loads(raw)
        return MediaTenant(data["tenant_id"], data["name"], tuple(data["hashes"]))
