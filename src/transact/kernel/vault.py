"""The vault: card data sealed with the tenant's key, kept in the cache for minutes.

Only ciphertext ever reaches the cache backend, so Redis (or a memory dump of
it) never holds a card number in clear. Entries expire on their own and are
deleted when taken.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from transact.kernel.cache import Cache
from transact.kernel.crypto import Keyring
from transact.kernel.errors import VaultError


class Vault:
    def __init__(self, cache: Cache, keyring: Keyring, default_ttl: float = 900.0) -> None:
        self._cache = cache
        self._keyring = keyring
        self.default_ttl = default_ttl
        # Told (operation, hit) of each put, take and delete: the kernel's metrics.
        self.observe: Callable[[str, bool], None] | None = None

    @staticmethod
    def new_ref() -> str:
        return "vlt_" + secrets.token_urlsafe(24)

    @staticmethod
    def _key(tenant_id: str, ref: str) -> str:
        # A ':' in either part could make one tenant's key name another tenant's entry.
        if not tenant_id or not ref or ":" in tenant_id or ":" in ref:
            raise VaultError("tenant id and vault reference must be non-empty and contain no ':'")
        return f"vault:{tenant_id}:{ref}"

    async def put(
        self, tenant_id: str, plaintext: bytes, *, ref: str | None = None, ttl: float | None = None
    ) -> str:
        """Seal and store; returns the reference. Re-using a ref replaces its entry."""
        ref = ref or self.new_ref()
        blob = self._keyring.seal(tenant_id, plaintext, context=ref.encode())
        # `ttl or default` would turn ttl=0 into 15 minutes; let the cache refuse it instead.
        ttl = self.default_ttl if ttl is None else ttl
        await self._cache.set(self._key(tenant_id, ref), blob, ttl)
        if self.observe is not None:
            self.observe("put", True)
        return ref

    async def get(self, tenant_id: str, ref: str) -> bytes:
        """Read without consuming, for an entry still being filled in."""
        blob = await self._cache.get(self._key(tenant_id, ref))
        return self._open(tenant_id, ref, blob)

    async def take(self, tenant_id: str, ref: str) -> bytes:
        """Read once: the entry is gone afterwards, whoever asks next."""
        blob = await self._cache.take(self._key(tenant_id, ref))
        if self.observe is not None:
            self.observe("take", blob is not None)
        return self._open(tenant_id, ref, blob)

    async def delete(self, tenant_id: str, ref: str) -> bool:
        deleted = await self._cache.delete(self._key(tenant_id, ref))
        if self.observe is not None:
            self.observe("delete", deleted)
        return deleted

    def _open(self, tenant_id: str, ref: str, blob: bytes | None) -> bytes:
        if blob is None:
            raise VaultError("no such vault entry (expired, used or never stored)")
        return self._keyring.open(tenant_id, blob, context=ref.encode())

    def seal(self, tenant_id: str, plaintext: bytes, context: bytes = b"") -> bytes:
        """Seal bytes for travel (e.g. keys on the bus) without storing them."""
        return self._keyring.seal(tenant_id, plaintext, context)

    def unseal(self, tenant_id: str, blob: bytes, context: bytes = b"") -> bytes:
        return self._keyring.open(tenant_id, blob, context)

    def digest(self, tenant_id: str, label: str, value: str) -> str:
        """Keyed fingerprint of a personal value (e.g. a phone number) for matching."""
        return self._keyring.digest(tenant_id, label, value)
