"""The vault on every cache backend: sealed card data, tenant-bound, read once.

Every test taking `cache` runs on the in-process cache and on a real Redis.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.leaks import redis_raw_dump
from transact.kernel.cache import Cache, MemoryCache
from transact.kernel.crypto import KEY_ID_LEN, VERSION, Keyring, key_id_of
from transact.kernel.errors import VaultError
from transact.kernel.vault import Vault

OLD_KEY = hashlib.sha256(b"test master key: old").digest()
NEW_KEY = hashlib.sha256(b"test master key: new").digest()

PAN = "4111111111111111"
EXPIRY = "12/30"
CVV = "737"
CARD = json.dumps({"pan": PAN, "expiry": EXPIRY, "cvv": CVV}).encode()


@pytest.fixture
def vault(cache: Cache) -> Vault:
    return Vault(cache, Keyring([NEW_KEY]))


def cache_key(tenant_id: str, ref: str) -> str:
    """Where the vault keeps an entry; checked against the cache in each test using it."""
    return Vault._key(tenant_id, ref)


async def raw_blob(cache: Cache, tenant_id: str, ref: str) -> bytes:
    blob = await cache.get(cache_key(tenant_id, ref))
    assert blob is not None, "the vault entry is not where the test expects it"
    return blob


# --- round trips -------------------------------------------------------------


async def test_put_then_get_round_trips(vault: Vault) -> None:
    ref = await vault.put("tenant-a", CARD)
    assert await vault.get("tenant-a", ref) == CARD


async def test_get_does_not_consume(vault: Vault) -> None:
    ref = await vault.put("tenant-a", CARD)
    assert await vault.get("tenant-a", ref) == CARD
    assert await vault.get("tenant-a", ref) == CARD


async def test_take_returns_the_plaintext_once(vault: Vault) -> None:
    ref = await vault.put("tenant-a", CARD)
    assert await vault.take("tenant-a", ref) == CARD
    with pytest.raises(VaultError):
        await vault.take("tenant-a", ref)
    with pytest.raises(VaultError):
        await vault.get("tenant-a", ref)


async def test_take_removes_the_entry_from_the_cache(cache: Cache, vault: Vault) -> None:
    ref = await vault.put("tenant-a", CARD)
    await raw_blob(cache, "tenant-a", ref)
    await vault.take("tenant-a", ref)
    assert await cache.get(cache_key("tenant-a", ref)) is None


async def test_concurrent_takes_release_the_card_once(vault: Vault) -> None:
    ref = await vault.put("tenant-a", CARD)
    results = await asyncio.gather(
        *(vault.take("tenant-a", ref) for _ in range(10)), return_exceptions=True
    )
    assert results.count(CARD) == 1
    assert all(isinstance(r, VaultError) for r in results if r != CARD)


async def test_unknown_ref_raises(vault: Vault) -> None:
    with pytest.raises(VaultError):
        await vault.get("tenant-a", "vlt_never-stored")
    with pytest.raises(VaultError):
        await vault.take("tenant-a", "vlt_never-stored")


async def test_refs_are_fresh_and_unguessable(vault: Vault) -> None:
    refs = {await vault.put("tenant-a", CARD) for _ in range(20)}
    assert len(refs) == 20
    for ref in refs:
        assert ref.startswith("vlt_")
        assert len(ref) >= 4 + 32  # 24 random bytes, url-safe base64
        assert PAN not in ref


async def test_put_with_a_given_ref_replaces_its_entry(vault: Vault) -> None:
    ref = await vault.put("tenant-a", b"first")
    assert await vault.put("tenant-a", b"second", ref=ref) == ref
    assert await vault.get("tenant-a", ref) == b"second"


async def test_empty_and_binary_plaintexts_round_trip(vault: Vault) -> None:
    for plaintext in (b"", bytes(range(256))):
        ref = await vault.put("tenant-a", plaintext)
        assert await vault.take("tenant-a", ref) == plaintext


# --- expiry and deletion -----------------------------------------------------


async def test_default_ttl_is_fifteen_minutes(cache: Cache, vault: Vault) -> None:
    assert vault.default_ttl == 900.0
    ref = await vault.put("tenant-a", CARD)
    left = await cache.ttl(cache_key("tenant-a", ref))
    assert left is not None
    assert 890 < left <= 900


async def test_configured_default_ttl_expires_entries(cache: Cache) -> None:
    vault = Vault(cache, Keyring([NEW_KEY]), default_ttl=0.15)
    ref = await vault.put("tenant-a", CARD)
    assert await vault.get("tenant-a", ref) == CARD
    await asyncio.sleep(0.3)
    with pytest.raises(VaultError):
        await vault.get("tenant-a", ref)
    with pytest.raises(VaultError):
        await vault.take("tenant-a", ref)


async def test_ttl_given_to_put_overrides_the_default(cache: Cache, vault: Vault) -> None:
    short = await vault.put("tenant-a", CARD, ttl=0.15)
    long = await vault.put("tenant-a", CARD, ttl=3600)
    left = await cache.ttl(cache_key("tenant-a", long))
    assert left is not None
    assert 3590 < left <= 3600
    await asyncio.sleep(0.3)
    with pytest.raises(VaultError):
        await vault.get("tenant-a", short)
    assert await vault.get("tenant-a", long) == CARD


@pytest.mark.parametrize("bad", [0, -1])
async def test_non_positive_ttl_is_refused_not_replaced_by_the_default(
    vault: Vault, bad: float
) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await vault.put("tenant-a", CARD, ttl=bad)


async def test_delete_removes_the_entry(cache: Cache, vault: Vault) -> None:
    ref = await vault.put("tenant-a", CARD)
    assert await vault.delete("tenant-a", ref) is True
    assert await cache.get(cache_key("tenant-a", ref)) is None
    with pytest.raises(VaultError):
        await vault.get("tenant-a", ref)
    assert await vault.delete("tenant-a", ref) is False


async def test_delete_of_another_tenants_ref_leaves_it_alone(vault: Vault) -> None:
    ref = await vault.put("tenant-a", CARD)
    assert await vault.delete("tenant-b", ref) is False
    assert await vault.get("tenant-a", ref) == CARD


# --- tenants -----------------------------------------------------------------


async def test_another_tenant_cannot_read_the_entry(vault: Vault) -> None:
    ref = await vault.put("tenant-a", CARD)
    with pytest.raises(VaultError):
        await vault.get("tenant-b", ref)
    with pytest.raises(VaultError):
        await vault.take("tenant-b", ref)
    # The failed attempts consumed nothing of tenant A's.
    assert await vault.take("tenant-a", ref) == CARD


async def test_a_blob_copied_to_another_tenant_does_not_open(cache: Cache, vault: Vault) -> None:
    ref = await vault.put("tenant-a", CARD)
    blob = await raw_blob(cache, "tenant-a", ref)
    await cache.set(cache_key("tenant-b", ref), blob)
    with pytest.raises(VaultError):
        await vault.get("tenant-b", ref)
    with pytest.raises(VaultError):
        await vault.take("tenant-b", ref)
    assert await vault.get("tenant-a", ref) == CARD


async def test_a_blob_copied_to_another_ref_does_not_open(cache: Cache, vault: Vault) -> None:
    ref = await vault.put("tenant-a", CARD)
    blob = await raw_blob(cache, "tenant-a", ref)
    other = Vault.new_ref()
    await cache.set(cache_key("tenant-a", other), blob)
    with pytest.raises(VaultError):
        await vault.get("tenant-a", other)


# --- tampering ---------------------------------------------------------------

HEADER = 1 + KEY_ID_LEN + 12


@pytest.mark.parametrize(
    "position",
    [0, 1, KEY_ID_LEN, 1 + KEY_ID_LEN, HEADER - 1, HEADER, HEADER + 5, -1],
    ids=[
        "version",
        "key-id-first",
        "key-id-last",
        "nonce-first",
        "nonce-last",
        "ciphertext-first",
        "ciphertext-middle",
        "tag-last",
    ],
)
async def test_a_tampered_blob_does_not_open(cache: Cache, vault: Vault, position: int) -> None:
    ref = await vault.put("tenant-a", CARD)
    blob = bytearray(await raw_blob(cache, "tenant-a", ref))
    blob[position] ^= 0x01
    await cache.set(cache_key("tenant-a", ref), bytes(blob))
    with pytest.raises(VaultError):
        await vault.get("tenant-a", ref)


@pytest.mark.parametrize("cut", [1, 16, 40])
async def test_a_truncated_blob_does_not_open(cache: Cache, vault: Vault, cut: int) -> None:
    ref = await vault.put("tenant-a", CARD)
    blob = await raw_blob(cache, "tenant-a", ref)
    await cache.set(cache_key("tenant-a", ref), blob[:-cut])
    with pytest.raises(VaultError):
        await vault.get("tenant-a", ref)


@pytest.mark.parametrize("junk", [b"", b"\x01", b'{"pan": "not sealed"}', bytes(200)])
async def test_junk_in_the_cache_does_not_open(cache: Cache, vault: Vault, junk: bytes) -> None:
    ref = Vault.new_ref()
    await cache.set(cache_key("tenant-a", ref), junk, ttl=60)
    with pytest.raises(VaultError):
        await vault.get("tenant-a", ref)


# --- key rotation ------------------------------------------------------------


async def test_rotation_old_entries_open_and_new_ones_use_the_new_key(cache: Cache) -> None:
    before = Vault(cache, Keyring([OLD_KEY]))
    old_ref = await before.put("tenant-a", CARD)
    assert (await raw_blob(cache, "tenant-a", old_ref))[1 : 1 + KEY_ID_LEN] == key_id_of(OLD_KEY)

    after = Vault(cache, Keyring([NEW_KEY, OLD_KEY]))
    assert await after.get("tenant-a", old_ref) == CARD

    new_ref = await after.put("tenant-a", CARD)
    header = (await raw_blob(cache, "tenant-a", new_ref))[: 1 + KEY_ID_LEN]
    assert header[0] == VERSION
    assert header[1 : 1 + KEY_ID_LEN] == key_id_of(NEW_KEY)
    assert key_id_of(NEW_KEY) != key_id_of(OLD_KEY)
    assert await after.take("tenant-a", new_ref) == CARD


async def test_a_keyring_without_the_old_key_cannot_open_old_entries(cache: Cache) -> None:
    old_ref = await Vault(cache, Keyring([OLD_KEY])).put("tenant-a", CARD)
    with pytest.raises(VaultError):
        await Vault(cache, Keyring([NEW_KEY])).get("tenant-a", old_ref)


async def test_entries_sealed_with_the_new_key_do_not_open_with_only_the_old(
    cache: Cache,
) -> None:
    new_ref = await Vault(cache, Keyring([NEW_KEY, OLD_KEY])).put("tenant-a", CARD)
    with pytest.raises(VaultError):
        await Vault(cache, Keyring([OLD_KEY])).get("tenant-a", new_ref)


# --- sealed blobs for travel ---------------------------------------------------


async def test_seal_for_travel_is_bound_to_tenant_and_context(vault: Vault) -> None:
    blob = vault.seal("tenant-a", b"1234#", context=b"call-1")
    assert b"1234#" not in blob
    assert vault.unseal("tenant-a", blob, context=b"call-1") == b"1234#"
    with pytest.raises(VaultError):
        vault.unseal("tenant-b", blob, context=b"call-1")
    with pytest.raises(VaultError):
        vault.unseal("tenant-a", blob, context=b"call-2")


# --- card data never reaches the backend in clear ------------------------------


def clear_forms(*secrets: str) -> list[bytes]:
    """Ways a secret could sit in storage without being encrypted."""
    forms: list[bytes] = []
    for secret in secrets:
        raw = secret.encode()
        forms += [raw, secret.encode("utf-16-le"), raw.hex().encode()]
    forms += [base64.b64encode(CARD), CARD.hex().encode()]
    # A PAN kept with separators is still a PAN.
    forms.append(" ".join(PAN[i : i + 4] for i in range(0, 16, 4)).encode())
    return forms


async def redis_contents(url: str) -> list[bytes]:
    return [await redis_raw_dump(url)]


async def backend_contents(cache: Cache, request: pytest.FixtureRequest) -> list[bytes]:
    if isinstance(cache, MemoryCache):
        return [k.encode() for k in cache._items] + [v for v, _ in cache._items.values()]
    return await redis_contents(request.getfixturevalue("redis_url"))


async def test_backend_never_holds_card_data_in_clear(
    cache: Cache, vault: Vault, request: pytest.FixtureRequest
) -> None:
    refs = [await vault.put(f"tenant-{i}", CARD) for i in range(3)]
    rotated = await Vault(cache, Keyring([OLD_KEY, NEW_KEY])).put("tenant-0", CARD)

    contents = await backend_contents(cache, request)
    # The scan sees the vault entries, so an empty scan cannot pass for a clean one.
    for i, ref in enumerate(refs):
        blob = await raw_blob(cache, f"tenant-{i}", ref)
        assert any(blob in value for value in contents)
    rotated_blob = await raw_blob(cache, "tenant-0", rotated)
    assert any(rotated_blob in value for value in contents)

    for value in contents:
        for form in clear_forms(PAN):
            assert form not in value, "a clear card number reached the cache backend"
    blobs = [await raw_blob(cache, f"tenant-{i}", ref) for i, ref in enumerate(refs)]
    for blob in blobs:
        for form in clear_forms(PAN, EXPIRY, CVV, "expiry", "cvv"):
            assert form not in blob


async def test_the_clear_data_scan_would_see_a_leak(
    cache: Cache, request: pytest.FixtureRequest, namespace: str
) -> None:
    """Guard for the test above: a PAN stored in clear, in any shape, is found."""
    planted = f"{namespace}:leak"
    if isinstance(cache, MemoryCache):
        await cache.set(planted, CARD)
        assert any(PAN.encode() in v for v in await backend_contents(cache, request))
        return
    url = request.getfixturevalue("redis_url")
    raw: Any = aioredis.Redis.from_url(url)
    long_value = CARD * 20  # long enough for DUMP to compress it
    plants: dict[str, Callable[[str], Awaitable[Any]]] = {
        "string": lambda k: raw.set(k, long_value),
        "hash": lambda k: raw.hset(k, "card", long_value),
        "list": lambda k: raw.rpush(k, long_value),
        "stream": lambda k: raw.xadd(k, {"card": long_value}),
    }
    try:
        for kind, plant in plants.items():
            await plant(f"{planted}:{kind}")
            await raw.pexpire(f"{planted}:{kind}", 5000)  # a safety net if cleanup fails
            contents = await redis_contents(url)
            assert any(PAN.encode() in v for v in contents), kind
            await raw.delete(f"{planted}:{kind}")
    finally:
        await raw.delete(*(f"{planted}:{kind}" for kind in plants))
        await raw.aclose()


@pytest.mark.parametrize(("tenant", "ref"), [("a:b", "r"), ("a", "x:y"), ("", "r"), ("a", "")])
async def test_ambiguous_tenant_or_ref_is_refused(vault: Vault, tenant: str, ref: str) -> None:
    with pytest.raises(VaultError, match="no ':'"):
        await vault.put(tenant, b"x", ref=ref or None) if ref else await vault.get(tenant, ref)
