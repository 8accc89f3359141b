"""The keyring: AES-256-GCM with per-tenant keys derived from rotating master keys."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transact.kernel.crypto import (
    KEY_ID_LEN,
    NONCE_LEN,
    VERSION,
    Keyring,
    derive_tenant_key,
    key_id_of,
)
from transact.kernel.errors import ConfigError, VaultError

KEY_1 = hashlib.sha256(b"master one").digest()
KEY_2 = hashlib.sha256(b"master two").digest()
HEADER = 1 + KEY_ID_LEN + NONCE_LEN
TAG = 16


# --- construction --------------------------------------------------------------


def test_a_keyring_needs_a_key() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        Keyring([])


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_every_master_key_must_be_32_bytes(length: int) -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        Keyring([b"k" * length])
    with pytest.raises(ConfigError, match="32 bytes"):
        Keyring([KEY_1, b"k" * length])


def test_the_keyring_does_not_show_its_keys() -> None:
    keyring = Keyring([KEY_1, KEY_2])
    keyring.seal("tenant-a", b"x")  # fills the derived-key cache too
    shown = repr(keyring) + str(keyring)
    for key in (KEY_1, KEY_2):
        assert repr(key) not in shown
        assert key.hex() not in shown


# --- key ids and derivation ------------------------------------------------------


def test_key_id_is_a_stable_fingerprint() -> None:
    assert key_id_of(KEY_1) == key_id_of(KEY_1)
    assert len(key_id_of(KEY_1)) == KEY_ID_LEN
    assert key_id_of(KEY_1) != key_id_of(KEY_2)
    assert key_id_of(KEY_1) not in KEY_1


def test_current_key_id_is_the_first_keys() -> None:
    assert Keyring([KEY_1, KEY_2]).current_key_id == key_id_of(KEY_1)
    assert Keyring([KEY_2, KEY_1]).current_key_id == key_id_of(KEY_2)


def test_tenant_keys_differ_by_tenant_purpose_and_master() -> None:
    base = derive_tenant_key(KEY_1, "tenant-a", "vault")
    assert len(base) == 32
    assert base == derive_tenant_key(KEY_1, "tenant-a", "vault")
    assert base != derive_tenant_key(KEY_1, "tenant-b", "vault")
    assert base != derive_tenant_key(KEY_1, "tenant-a", "keypad")
    assert base != derive_tenant_key(KEY_2, "tenant-a", "vault")
    assert base != KEY_1


# --- seal and open -----------------------------------------------------------------


def test_seal_then_open_round_trips() -> None:
    keyring = Keyring([KEY_1])
    blob = keyring.seal("tenant-a", b"4111111111111111")
    assert keyring.open("tenant-a", blob) == b"4111111111111111"


@given(st.binary(max_size=2048), st.text(min_size=1, max_size=40), st.binary(max_size=64))
def test_any_bytes_round_trip(plaintext: bytes, tenant: str, context: bytes) -> None:
    keyring = Keyring([KEY_1])
    assert keyring.open(tenant, keyring.seal(tenant, plaintext, context), context) == plaintext


def test_blob_layout() -> None:
    plaintext = b"4111111111111111"
    blob = Keyring([KEY_1]).seal("tenant-a", plaintext)
    assert blob[0] == VERSION
    assert blob[1 : 1 + KEY_ID_LEN] == key_id_of(KEY_1)
    assert len(blob) == HEADER + len(plaintext) + TAG
    assert plaintext not in blob


def test_every_seal_uses_a_fresh_nonce() -> None:
    keyring = Keyring([KEY_1])
    blobs = [keyring.seal("tenant-a", b"same") for _ in range(50)]
    assert len({b[1 + KEY_ID_LEN : HEADER] for b in blobs}) == 50
    assert len(set(blobs)) == 50


def test_a_blob_opens_only_for_its_tenant() -> None:
    keyring = Keyring([KEY_1])
    blob = keyring.seal("tenant-a", b"secret")
    with pytest.raises(VaultError):
        keyring.open("tenant-b", blob)
    with pytest.raises(VaultError):
        keyring.open("tenant-a ", blob)


def test_a_blob_opens_only_with_its_context() -> None:
    keyring = Keyring([KEY_1])
    blob = keyring.seal("tenant-a", b"secret", context=b"call-1")
    assert keyring.open("tenant-a", blob, context=b"call-1") == b"secret"
    for wrong in (b"", b"call-2", b"call-1 "):
        with pytest.raises(VaultError):
            keyring.open("tenant-a", blob, context=wrong)


def test_tenant_and_context_cannot_be_shifted_into_each_other() -> None:
    keyring = Keyring([KEY_1])
    blob = keyring.seal("a|b", b"secret", context=b"c")
    with pytest.raises(VaultError):
        keyring.open("a", blob, context=b"b|c")


def test_a_blob_opens_only_for_its_purpose() -> None:
    blob = Keyring([KEY_1], purpose="vault").seal("tenant-a", b"secret")
    with pytest.raises(VaultError):
        Keyring([KEY_1], purpose="keypad").open("tenant-a", blob)


def test_a_keyring_with_another_master_key_cannot_open() -> None:
    blob = Keyring([KEY_1]).seal("tenant-a", b"secret")
    with pytest.raises(VaultError, match="does not hold"):
        Keyring([KEY_2]).open("tenant-a", blob)


@given(st.data())
def test_any_single_bit_flip_is_detected(data: st.DataObject) -> None:
    keyring = Keyring([KEY_1])
    blob = bytearray(keyring.seal("tenant-a", b"4111111111111111"))
    position = data.draw(st.integers(0, len(blob) - 1))
    blob[position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(VaultError):
        keyring.open("tenant-a", bytes(blob))


@pytest.mark.parametrize("length", [0, 1, HEADER, HEADER + TAG - 1])
def test_short_blobs_are_refused(length: int) -> None:
    blob = Keyring([KEY_1]).seal("tenant-a", b"")
    assert len(blob) == HEADER + TAG
    with pytest.raises(VaultError, match="not a sealed blob"):
        Keyring([KEY_1]).open("tenant-a", blob[:length])


def test_unknown_version_is_refused() -> None:
    blob = Keyring([KEY_1]).seal("tenant-a", b"secret")
    with pytest.raises(VaultError, match="not a sealed blob"):
        Keyring([KEY_1]).open("tenant-a", bytes([VERSION + 1]) + blob[1:])


def test_error_messages_do_not_carry_the_plaintext_or_keys() -> None:
    blob = Keyring([KEY_1]).seal("tenant-a", b"4111111111111111")
    for keyring, tenant in ((Keyring([KEY_1]), "tenant-b"), (Keyring([KEY_2]), "tenant-a")):
        with pytest.raises(VaultError) as caught:
            keyring.open(tenant, blob)
        message = str(caught.value)
        assert "4111111111111111" not in message
        assert KEY_1.hex() not in message
        assert caught.value.__cause__ is None


# --- rotation ------------------------------------------------------------------------


def test_rotation_every_key_opens_only_the_first_seals() -> None:
    old = Keyring([KEY_1])
    rotated = Keyring([KEY_2, KEY_1])
    old_blob = old.seal("tenant-a", b"sealed before")
    assert rotated.open("tenant-a", old_blob) == b"sealed before"

    new_blob = rotated.seal("tenant-a", b"sealed after")
    assert new_blob[1 : 1 + KEY_ID_LEN] == key_id_of(KEY_2)
    assert rotated.open("tenant-a", new_blob) == b"sealed after"
    with pytest.raises(VaultError):
        old.open("tenant-a", new_blob)


def test_a_retired_key_no_longer_opens() -> None:
    blob = Keyring([KEY_1]).seal("tenant-a", b"secret")
    with pytest.raises(VaultError):
        Keyring([KEY_2]).open("tenant-a", blob)
