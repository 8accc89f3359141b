"""Token signing keys: Ed25519, rotated, private halves sealed, public halves published.

Every process verifies tokens with the JWKS that auth publishes in the cache;
only auth holds private keys, sealed in its table with the master key.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from transact.auth import store
from transact.auth.domain import new_id
from transact.contracts import utcnow
from transact.kernel import Kernel
from transact.kernel.security import JWKS_KEY

ROTATE_AFTER = timedelta(days=30)
# A retired key verifies tokens it signed until they can no longer be valid.
KEEP_RETIRED = timedelta(days=1)
_SYSTEM = "_system"
_CONTEXT = b"auth-signing-key"


class SigningKeys:
    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._current: tuple[str, Ed25519PrivateKey] | None = None

    async def ensure_current(self, *, force_rotation: bool = False) -> str:
        """Load the newest key, minting one when there is none, it is old, or rotation is asked."""
        now = utcnow()
        async with self._kernel.db.transaction() as session:
            keys = await store.signing_keys_all(session)
            active = next((k for k in keys if k.retired_at is None), None)
            if force_rotation or active is None or now - active.created_at > ROTATE_AFTER:
                active = await self._mint(session, now)
                await store.retire_signing_keys(session, active.kid, now)
                keys = await store.signing_keys_all(session)
        pem = self._kernel.vault.unseal(_SYSTEM, active.private_sealed, _CONTEXT)
        private = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(private, Ed25519PrivateKey)
        self._current = (active.kid, private)
        await self.publish(keys)
        return active.kid

    async def _mint(self, session: Any, now: Any) -> store.SigningKey:
        private = Ed25519PrivateKey.generate()
        kid = new_id("key")
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
        public.update(kid=kid, use="sig", alg="EdDSA")
        key = store.SigningKey(
            kid, self._kernel.vault.seal(_SYSTEM, pem, _CONTEXT), public, now, None
        )
        await store.add_signing_key(session, key)
        return key

    async def publish(self, keys: list[store.SigningKey] | None = None) -> dict[str, Any]:
        if keys is None:
            async with self._kernel.db.transaction() as session:
                keys = await store.signing_keys_all(session)
        now = utcnow()
        live = [
            k.public_jwk for k in keys if k.retired_at is None or now - k.retired_at < KEEP_RETIRED
        ]
        jwks = {"keys": live}
        await self._kernel.cache.set(JWKS_KEY, json.dumps(jwks).encode())
        return jwks

    async def jwks(self) -> dict[str, Any]:
        """What is published; read from the cache so anonymous GETs write nothing."""
        raw = await self._kernel.cache.get(JWKS_KEY)
        return json.loads(raw) if raw else await self.publish()

    async def sign(self, claims: dict[str, Any]) -> str:
        if self._current is None:
            await self.ensure_current()
        assert self._current is not None
        kid, private = self._current
        return jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": kid})
