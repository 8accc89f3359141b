"""Merchant webhooks' pure rules: the signature, the retry schedule, the URL rule, the payload."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime

import pytest

from tests.leaks import card_numbers_in
from transact.contracts.payments import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    PaymentVoided,
)
from transact.psp import store
from transact.psp.webhooks import (
    DEFAULT_DELAYS,
    Resolver,
    TargetPolicy,
    TargetRefused,
    TargetUnresolved,
    backoff,
    encode,
    event_payload,
    new_secret,
    sign,
    url_problem,
    verify_signature,
    vet_target,
)

SECRET = "whsec_test-secret"
BODY = b'{"id":"evt1","type":"payment.authorized","created":1,"data":{}}'
T = 1_800_000_000


def test_the_header_is_stripe_style_and_signs_timestamp_dot_body() -> None:
    header = sign(SECRET, BODY, T)
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={T},v1={expected}"


def test_a_fresh_signature_verifies_from_bytes_or_text() -> None:
    header = sign(SECRET, BODY, T)
    assert verify_signature(SECRET, header, BODY, now=T)
    assert verify_signature(SECRET, header, BODY.decode(), now=T + 299)


def test_a_tampered_body_does_not_verify() -> None:
    header = sign(SECRET, BODY, T)
    assert not verify_signature(SECRET, header, BODY.replace(b"evt1", b"evt2"), now=T)
    # Re-encoding the JSON changes the bytes, so it fails too: verify the raw body.
    reencoded = json.dumps(json.loads(BODY)).encode()
    assert not verify_signature(SECRET, header, reencoded, now=T)


def test_the_wrong_secret_does_not_verify() -> None:
    header = sign(SECRET, BODY, T)
    assert not verify_signature("whsec_another", header, BODY, now=T)


def test_a_stale_or_future_timestamp_does_not_verify() -> None:
    header = sign(SECRET, BODY, T)
    assert not verify_signature(SECRET, header, BODY, now=T + 301)
    assert not verify_signature(SECRET, header, BODY, now=T - 301)
    assert verify_signature(SECRET, header, BODY, tolerance=600, now=T + 500)


def test_a_timestamp_swapped_into_a_valid_header_does_not_verify() -> None:
    signature = sign(SECRET, BODY, T).split(",")[1]
    assert not verify_signature(SECRET, f"t={T + 10},{signature}", BODY, now=T + 10)


@pytest.mark.parametrize(
    "header",
    ["", "garbage", "v1=abc", f"t={T}", f"t=soon,v1={'0' * 64}", f"t={T},v1=", f"t={T},v0=abc"],
)
def test_malformed_headers_do_not_verify(header: str) -> None:
    assert not verify_signature(SECRET, header, BODY, now=T)


def test_any_of_several_v1_signatures_may_match() -> None:
    valid = sign(SECRET, BODY, T).split(",")[1]
    assert verify_signature(SECRET, f"t={T},v1={'0' * 64},{valid}", BODY, now=T)


def test_secrets_are_prefixed_and_unguessable() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_")
    assert len(first) > 40
    assert first != second


def test_the_backoff_schedule_grows_then_stays_capped() -> None:
    assert [backoff(n) for n in range(1, 11)] == [
        5.0,
        30.0,
        120.0,
        600.0,
        3600.0,
        10800.0,
        21600.0,
        21600.0,
        21600.0,
        21600.0,
    ]
    assert backoff(0) == DEFAULT_DELAYS[0]
    assert backoff(3, [0.01, 0.02]) == 0.02
    with pytest.raises(ValueError, match="delays"):
        backoff(1, [])


STRICT = TargetPolicy()
DEMO = TargetPolicy(allow_loopback=True)
PRIVATE = TargetPolicy(allow_private=True)


def resolver(*answers: str) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        return list(answers)

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "https://merchant.example/hooks/transact",
        "https://merchant.example:8443/hooks?tenant=7",
        "https://93.184.216.34/hook",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
    ],
)
def test_https_to_a_public_host_is_accepted(url: str) -> None:
    assert url_problem(url, STRICT) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://merchant.example/hook", "https"),
        ("http://127.0.0.1:8123/hook", "https"),
        ("ftp://merchant.example/hook", "https"),
        ("merchant.example/hook", "https"),
        ("https://", "host"),
        ("https://user:pass@merchant.example/", "credentials"),
        ("https://merchant.example/#frag", "fragment"),
        ("https://merchant.example:99999/", "valid"),
        ("https://merchant.example/a b", "spaces"),
        ("https://merchant.example/\n", "spaces"),
        ("", "characters"),
        ("https://merchant.example/" + "a" * 2048, "characters"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://10.0.0.5/hook", "private"),
        ("https://192.168.1.1/hook", "private"),
        ("https://172.16.0.1/hook", "private"),
        ("https://100.64.0.1/hook", "private"),
        ("https://[fd00::1]/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[fe80::1]/hook", "link-local"),
        ("https://224.0.0.1/hook", "multicast"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://240.0.0.1/hook", "reserved"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://[::ffff:10.1.2.3]/hook", "private"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str, problem: str) -> None:
    reason = url_problem(url, STRICT)
    assert reason is not None
    assert problem in reason


def test_demo_mode_allows_loopback_receivers_only() -> None:
    assert url_problem("http://127.0.0.1:8123/hook", DEMO) is None
    assert url_problem("http://[::1]:9000/hook", DEMO) is None
    assert url_problem("https://10.0.0.5/hook", DEMO) is not None
    assert url_problem("ftp://merchant.example/hook", DEMO) is not None


def test_the_private_switch_allows_private_but_never_link_local() -> None:
    assert url_problem("http://10.0.0.5/hook", PRIVATE) is None
    assert url_problem("http://127.0.0.1/hook", PRIVATE) is None
    assert url_problem("https://169.254.169.254/", PRIVATE) is not None
    assert url_problem("https://224.0.0.1/", PRIVATE) is not None


@pytest.mark.parametrize(
    ("answers", "problem"),
    [
        (("127.0.0.1",), "loopback"),
        (("10.1.2.3",), "private"),
        (("169.254.169.254",), "link-local"),
        (("::ffff:192.168.0.10",), "private"),
        # One bad address among good ones refuses the host: the connect could pick it.
        (("93.184.216.34", "10.0.0.1"), "private"),
    ],
)
async def test_a_name_resolving_inward_is_refused(answers: tuple[str, ...], problem: str) -> None:
    with pytest.raises(TargetRefused, match=problem):
        await vet_target("https://hooks.merchant.example/x", STRICT, resolver(*answers))


async def test_a_public_name_is_pinned_to_the_address_that_was_checked() -> None:
    pinned = await vet_target(
        "https://hooks.merchant.example:8443/x?y=1", STRICT, resolver("93.184.216.34")
    )
    assert pinned.url == "https://93.184.216.34:8443/x?y=1"
    assert pinned.host_header == "hooks.merchant.example:8443"
    assert pinned.sni_hostname == "hooks.merchant.example"
    v6 = await vet_target("https://hooks.merchant.example/", STRICT, resolver("2606:2800::1"))
    assert v6.url == "https://[2606:2800::1]/"


async def test_plain_http_never_reaches_a_public_host() -> None:
    with pytest.raises(TargetRefused, match="https"):
        await vet_target("http://hooks.merchant.example/", PRIVATE, resolver("93.184.216.34"))
    pinned = await vet_target("http://receiver.internal/", PRIVATE, resolver("10.0.0.7"))
    assert (pinned.url, pinned.sni_hostname) == ("http://10.0.0.7/", None)


async def test_a_name_that_does_not_resolve_is_not_final() -> None:
    async def broken(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    with pytest.raises(TargetUnresolved):
        await vet_target("https://nowhere.example/", STRICT, broken)
    with pytest.raises(TargetUnresolved):
        await vet_target("https://nowhere.example/", STRICT, resolver())


def _payment(**values: object) -> store.Payment:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    base: dict[str, object] = {
        "id": "pay_1",
        "tenant_id": "t1",
        "capture_id": "cap_1",
        "amount": 1250,
        "currency": "GBP",
        "reference": "INV-1",
        "channel": "phone",
        "agent_id": "a1",
        "brand": "visa",
        "status": "authorized",
        "connector": "stripe",
        "psp_reference": "pi_1",
        "decline_code": None,
        "attempts": 1,
        "authorized_amount": 1250,
        "captured_amount": 1250,
        "refunded_amount": 0,
        "created_at": now,
        "updated_at": now,
    }
    return store.Payment(**{**base, **values})  # type: ignore[arg-type]


def test_an_outcome_payload_is_the_allowlist_plus_amount_currency_and_reference() -> None:
    at = datetime(2026, 1, 1, 12, tzinfo=UTC)
    message = PaymentAuthorized(
        tenant_id="t1",
        payment_id="pay_1",
        connector="stripe",
        psp_reference="pi_1",
        attempts=1,
        occurred_at=at,
        correlation_id="pay_1",
    )
    payload = event_payload(message, _payment())
    assert payload == {
        "id": message.id,
        "type": "payment.authorized",
        "created": int(at.timestamp()),
        "data": {
            "payment_id": "pay_1",
            "connector": "stripe",
            "psp_reference": "pi_1",
            "decline_code": None,
            "attempts": 1,
            "stored_card_id": None,
            "amount": 1250,
            "currency": "GBP",
            "reference": "INV-1",
        },
    }


def test_a_refund_payload_carries_the_refunded_amount() -> None:
    message = PaymentRefunded(
        tenant_id="t1",
        payment_id="pay_1",
        amount=300,
        refunded_total=300,
        fully=False,
        connector="adyen",
    )
    data = event_payload(message, _payment())["data"]
    assert (data["amount"], data["refunded_total"], data["fully"]) == (300, 300, False)
    assert data["currency"] == "GBP"


def test_another_tenants_payment_never_enriches_a_payload() -> None:
    message = PaymentDeclined(tenant_id="t2", payment_id="pay_1", decline_code="do_not_honor")
    data = event_payload(message, _payment())["data"]
    assert "amount" not in data
    assert "reference" not in data


def test_a_card_number_typed_as_the_reference_is_masked() -> None:
    message = PaymentDeclined(tenant_id="t1", payment_id="pay_1")
    body = encode(event_payload(message, _payment(reference="card 4242 4242 4242 4242")))
    assert card_numbers_in(body) == []
    assert "424242******4242" in body


def test_captures_and_voids_are_told_with_their_own_fields() -> None:
    captured = PaymentCaptured(
        tenant_id="t1", payment_id="pay_1", amount=600, captured_total=600, connector="stripe"
    )
    data = event_payload(captured, _payment())["data"]
    assert (data["amount"], data["captured_total"]) == (600, 600)
    voided = event_payload(
        PaymentVoided(tenant_id="t1", payment_id="pay_1", connector="stripe"), None
    )
    assert voided["type"] == "payment.voided"
    assert voided["data"] == {"payment_id": "pay_1", "connector": "stripe", "psp_reference": None}
