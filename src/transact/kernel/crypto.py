"""Authenticated encryption with per-tenant keys derived from the master key.

Blob layout (all binary): version (1 byte) | key id (8 bytes) | nonce (12) | ciphertext+tag.
The key id names the master key that sealed the blob, so keys can rotate:
every configured key decrypts, only the first encrypts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from transact.kernel.errors import ConfigError, VaultError

VERSION = 1
KEY_ID_LEN = 8
NONCE_LEN = 12
_HEADER = 1 + KEY_ID_LEN + NONCE_LEN


def key_id_of(master_key: bytes) -> bytes:
    """A public fingerprint of a master key; it reveals nothing usable about the key."""
    return hashlib.sha256(b"transact-key-id:" + master_key).digest()[:KEY_ID_LEN]


def derive_tenant_key(master_key: bytes, tenant_id: str, purpose: str) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"transact-vault-v1",
        info=f"{purpose}:{tenant_id}".encode(),
    )
    return hkdf.derive(master_key)


@dataclass
class Keyring:
    """Seals and opens bytes for one tenant at a time; the tenant is bound into the AAD."""

    master_keys: list[bytes] = field(repr=False)  # never in logs or tracebacks
    purpose: str = "vault"
    _derived: dict[tuple[bytes, str], AESGCM] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.master_keys:
            raise ConfigError("the keyring needs at least one master key")
        if any(len(k) != 32 for k in self.master_keys):
            raise ConfigError("every master key must be 32 bytes")
        self._by_id = {key_id_of(k): k for k in self.master_keys}

    @property
    def current_key_id(self) -> bytes:
        return key_id_of(self.master_keys[0])

    def _aead(self, key_id: bytes, tenant_id: str) -> AESGCM:
        cached = self._derived.get((key_id, tenant_id))
        if cached is None:
            master = self._by_id.get(key_id)
            if master is None:
                raise VaultError("sealed with a key this keyring does not hold")
            cached = AESGCM(derive_tenant_key(master, tenant_id, self.purpose))
            self._derived[(key_id, tenant_id)] = cached
        return cached

    def seal(self, tenant_id: str, plaintext: bytes, context: bytes = b"") -> bytes:
        key_id = self.current_key_id
        nonce = os.urandom(NONCE_LEN)
        aad = self._aad(tenant_id, context)
        ciphertext = self._aead(key_id, tenant_id).encrypt(nonce, plaintext, aad)
        return bytes([VERSION]) + key_id + nonce + ciphertext

    def open(self, tenant_id: str, blob: bytes, context: bytes = b"") -> bytes:
        if len(blob) < _HEADER + 16 or blob[0] != VERSION:
            raise VaultError("not a sealed blob")
        key_id = blob[1 : 1 + KEY_ID_LEN]
        nonce = blob[1 + KEY_ID_LEN : _HEADER]
        try:
            return self._aead(key_id, tenant_id).decrypt(
                nonce, blob[_HEADER:], self._aad(tenant_id, context)
            )
        except InvalidTag:
            raise VaultError("sealed blob does not open for this tenant") from None

    def digest(self, tenant_id: str, label: str, value: str) -> str:
        """A keyed, tenant-bound fingerprint (HMAC-SHA256) of a personal value such as a
        phone number: equal inputs match, the value itself cannot be read back or guessed
        by hashing candidates without the master key."""
        key = derive_tenant_key(self.master_keys[0], tenant_id, f"digest:{label}")
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def _aad(tenant_id: str, context: bytes) -> bytes:
        return b"transact|" + tenant_id.encode() + b"|" + context
