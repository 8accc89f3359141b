"""Every connector against the PSP simulator over real HTTP: one contract, four providers.

The simulator runs under uvicorn in a thread for the session; each test uses its
own references, so tests never see each other's payments.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import uvicorn

from tests.servers import free_port, wait_for
from transact.kernel.sensitive import Pan, SensitiveStr
from transact.psp.connectors import Connector, make
from transact.psp.connectors.base import Card, DeclineCode, HttpCall, Interaction, Order, Outcome
from transact.psp.connectors.http import send
from transact.psp.flow import action_url
from transact.psp.simulator import create_simulator_app

NAMES = ["sandbox", "stripe", "adyen", "checkout"]
CREDENTIALS: dict[str, dict[str, str]] = {
    "sandbox": {},
    "stripe": {"secret_key": "sk_test_simulator"},
    "adyen": {"api_key": "sim-api-key", "merchant_account": "TransactTest"},
    "checkout": {"secret_key": "sk_sbox_simulator"},
}
# Adyen's lookup by reference exists only in the simulator; the suite uses it.
OPTIONS: dict[str, dict[str, str]] = {"adyen": {"status_query": "true"}}

VISA = "4242424242424242"
DECLINES = {
    "4000000000000002": DeclineCode.CARD_DECLINED,
    "4000000000009995": DeclineCode.INSUFFICIENT_FUNDS,
    "4000000000000127": DeclineCode.INCORRECT_CVC,
    "4000000000000069": DeclineCode.EXPIRED_CARD,
    "4000000000000119": DeclineCode.PROCESSING_ERROR,
}
CHALLENGE = "4000000000003220"
NEXT_YEAR = datetime.date.today().year + 3


@pytest.fixture(scope="session")
def sim_url() -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_simulator_app(hang_seconds=5),
        host="127.0.0.1",
        port=port,
        # No log settings: uvicorn would rewrite the process's logging for later tests.
        log_config=None,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="psp-simulator", daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the PSP simulator")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(params=NAMES)
def connector(request: pytest.FixtureRequest, sim_url: str) -> Connector:
    name = request.param
    return make(name, base_url=sim_url, credentials=CREDENTIALS[name], options=OPTIONS.get(name))


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


def card(number: str = VISA, cvv: str = "123") -> Card:
    return Card(Pan(number), 12, NEXT_YEAR, SensitiveStr(cvv), holder="Ada Lovelace")


def order(number: str = VISA, *, amount: int = 1000, capture: bool = True) -> Order:
    return Order(
        reference=f"ref-{uuid.uuid4().hex[:12]}",
        amount=amount,
        currency="GBP",
        idempotency_key=uuid.uuid4().hex,
        capture=capture,
        card=card(number),
    )


def key() -> str:
    return uuid.uuid4().hex


def with_fault(call: HttpCall, fault: str) -> HttpCall:
    return dataclasses.replace(call, headers={**call.headers, "X-Sim-Fault": fault})


async def sim(client: httpx.AsyncClient, sim_url: str, path: str, **params: str) -> Any:
    response = await client.get(f"{sim_url}{path}", params=params)
    response.raise_for_status()
    return response.json()


async def charges(client: httpx.AsyncClient, sim_url: str, c: Connector, reference: str) -> int:
    counts = await sim(client, sim_url, "/_sim/charges")
    return int(counts["charges"][c.name].get(reference, 0))


async def payment_of(
    client: httpx.AsyncClient, sim_url: str, c: Connector, reference: str
) -> dict[str, Any]:
    rows = (await sim(client, sim_url, "/_sim/payments", provider=c.name, reference=reference))[
        "data"
    ]
    assert len(rows) == 1, rows
    return dict(rows[0])


async def authorize(client: httpx.AsyncClient, c: Connector, o: Order) -> Any:
    return c.parse_authorize(*await send(client, c, c.authorize_call(o)))


# --- money moves ------------------------------------------------------------------------


async def test_sale_is_approved_and_captured(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = order()
    result = await authorize(client, connector, o)
    assert result.outcome is Outcome.APPROVED
    assert result.psp_reference
    assert result.amount == 1000
    assert result.may_retry_elsewhere is False
    stored = await payment_of(client, sim_url, connector, o.reference)
    assert (stored["authorized"], stored["captured"]) == (1000, 1000)
    assert (stored["brand"], stored["last4"]) == ("visa", "4242")


@pytest.mark.parametrize("number", ["4111111111111111", "5555555555554444", "378282246310005"])
async def test_every_approving_test_card(
    connector: Connector, client: httpx.AsyncClient, number: str
) -> None:
    o = dataclasses.replace(order(), card=card(number, "1234" if number[0] == "3" else "123"))
    assert (await authorize(client, connector, o)).outcome is Outcome.APPROVED


async def test_authorize_then_capture(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = order(capture=False)
    auth = await authorize(client, connector, o)
    assert auth.outcome is Outcome.APPROVED
    assert auth.psp_reference is not None
    held = await payment_of(client, sim_url, connector, o.reference)
    assert (held["authorized"], held["captured"]) == (1000, 0)
    call = connector.capture_call(auth.psp_reference, 1000, "GBP", key())
    captured = connector.parse_capture(*await send(client, connector, call))
    assert captured.outcome is Outcome.APPROVED
    assert (await payment_of(client, sim_url, connector, o.reference))["captured"] == 1000


async def test_capture_above_the_authorization_is_refused(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = order(capture=False)
    auth = await authorize(client, connector, o)
    assert auth.psp_reference is not None
    call = connector.capture_call(auth.psp_reference, 1001, "GBP", key())
    result = connector.parse_capture(*await send(client, connector, call))
    assert result.outcome is Outcome.ERROR
    assert result.decline_code is DeclineCode.INVALID_REQUEST
    assert (await payment_of(client, sim_url, connector, o.reference))["captured"] == 0


@pytest.mark.parametrize(("number", "code"), list(DECLINES.items()))
async def test_decline_cards_are_declined_with_the_normalized_code(
    connector: Connector, client: httpx.AsyncClient, sim_url: str, number: str, code: DeclineCode
) -> None:
    o = order(number)
    result = await authorize(client, connector, o)
    assert result.outcome is Outcome.DECLINED
    assert result.decline_code is code
    assert result.may_retry_elsewhere is False
    assert await charges(client, sim_url, connector, o.reference) == 0


async def test_3ds_card_is_pending_with_an_action(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = order(CHALLENGE)
    result = await authorize(client, connector, o)
    assert result.outcome is Outcome.PENDING
    assert result.decline_code is DeclineCode.AUTHENTICATION_REQUIRED
    assert result.action
    assert result.may_retry_elsewhere is False
    assert await charges(client, sim_url, connector, o.reference) == 0


async def test_partial_then_full_refund_and_no_more(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = order()
    sale = await authorize(client, connector, o)
    assert sale.psp_reference is not None
    for amount in (400, 600):
        call = connector.refund_call(sale.psp_reference, amount, "GBP", key())
        refund = connector.parse_refund(*await send(client, connector, call))
        assert refund.outcome is Outcome.APPROVED, refund
    assert (await payment_of(client, sim_url, connector, o.reference))["refunded"] == 1000
    call = connector.refund_call(sale.psp_reference, 1, "GBP", key())
    more = connector.parse_refund(*await send(client, connector, call))
    assert more.outcome is Outcome.ERROR
    assert more.decline_code is DeclineCode.INVALID_REQUEST


async def test_refund_above_captured_is_refused(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = order()
    sale = await authorize(client, connector, o)
    assert sale.psp_reference is not None
    call = connector.refund_call(sale.psp_reference, 1500, "GBP", key())
    result = connector.parse_refund(*await send(client, connector, call))
    assert result.outcome is Outcome.ERROR
    assert result.decline_code is DeclineCode.INVALID_REQUEST
    assert (await payment_of(client, sim_url, connector, o.reference))["refunded"] == 0


async def test_refund_of_an_uncaptured_authorization_is_refused(
    connector: Connector, client: httpx.AsyncClient
) -> None:
    auth = await authorize(client, connector, order(capture=False))
    assert auth.psp_reference is not None
    call = connector.refund_call(auth.psp_reference, 100, "GBP", key())
    assert connector.parse_refund(*await send(client, connector, call)).outcome is Outcome.ERROR


async def test_void_releases_an_authorization(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = order(capture=False)
    auth = await authorize(client, connector, o)
    assert auth.psp_reference is not None
    voided = connector.parse_void(
        *await send(client, connector, connector.void_call(auth.psp_reference, key()))
    )
    assert voided.outcome is Outcome.APPROVED
    assert (await payment_of(client, sim_url, connector, o.reference))["voided"] is True
    call = connector.capture_call(auth.psp_reference, 1000, "GBP", key())
    assert connector.parse_capture(*await send(client, connector, call)).outcome is Outcome.ERROR


async def test_void_after_capture_is_refused(
    connector: Connector, client: httpx.AsyncClient
) -> None:
    sale = await authorize(client, connector, order())
    assert sale.psp_reference is not None
    call = connector.void_call(sale.psp_reference, key())
    assert connector.parse_void(*await send(client, connector, call)).outcome is Outcome.ERROR


async def keep(client: httpx.AsyncClient, c: Connector, token: str, reference: str) -> str:
    """The token after the connector's second step, where it has one."""
    follow = c.keep_token_call(token, reference, key())
    if follow is None:
        return token
    kept = c.parse_keep_token(*await send(client, c, follow))
    assert kept.outcome is Outcome.APPROVED, kept
    assert kept.token
    return kept.token


def token_charge(token: str, amount: int = 700) -> Order:
    return dataclasses.replace(
        order(amount=amount), card=None, token=token, interaction=Interaction.MERCHANT_INITIATED
    )


async def test_tokenize_then_charge_the_token_again_and_again(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    reference = f"shopper-{key()[:8]}"
    call = connector.tokenize_call(card(), reference, key())
    stored = connector.parse_tokenize(*await send(client, connector, call))
    assert stored.outcome is Outcome.APPROVED
    assert stored.token
    token = await keep(client, connector, stored.token, reference)
    for _ in range(2):  # a stored card is charged more than once
        o = token_charge(token)
        result = connector.parse_authorize(
            *await send(client, connector, connector.charge_token_call(o))
        )
        assert result.outcome is Outcome.APPROVED, result
        assert await charges(client, sim_url, connector, o.reference) == 1
        charged = await payment_of(client, sim_url, connector, o.reference)
        assert (charged["last4"], charged["interaction"]) == ("4242", "merchant_initiated")


async def test_an_unattached_stripe_payment_method_is_charged_once_only(
    client: httpx.AsyncClient, sim_url: str
) -> None:
    stripe = make("stripe", base_url=sim_url, credentials=CREDENTIALS["stripe"])
    call = stripe.tokenize_call(card(), "r", key())
    pm = stripe.parse_tokenize(*await send(client, stripe, call)).token
    assert pm is not None
    first = await authorize(client, stripe, token_charge(pm))
    assert first.outcome is Outcome.APPROVED
    again = await authorize(client, stripe, token_charge(pm))
    assert again.outcome is Outcome.ERROR  # why keep_token_call attaches it to a Customer


async def test_a_card_saved_with_its_authorization_comes_back_as_a_token(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = dataclasses.replace(order(), store=True, shopper_reference=f"s-{key()[:8]}")
    result = await authorize(client, connector, o)
    assert result.outcome is Outcome.APPROVED
    if connector.name == "stripe":
        assert result.token is None or result.token.startswith("pm_")
        return  # Stripe saves a card for a Customer only: tokenize + keep_token_call
    assert result.token
    again = await authorize(client, connector, token_charge(result.token))
    assert again.outcome is Outcome.APPROVED
    assert await charges(client, sim_url, connector, o.reference) == 1


@pytest.mark.parametrize("interaction", [Interaction.MOTO, Interaction.ECOMMERCE])
async def test_the_interaction_reaches_the_provider(
    connector: Connector, client: httpx.AsyncClient, sim_url: str, interaction: Interaction
) -> None:
    o = dataclasses.replace(order(), interaction=interaction)
    assert (await authorize(client, connector, o)).outcome is Outcome.APPROVED
    assert (await payment_of(client, sim_url, connector, o.reference))[
        "interaction"
    ] == interaction.value


async def test_a_moto_payment_skips_3ds(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = dataclasses.replace(order(CHALLENGE), interaction=Interaction.MOTO)
    result = await authorize(client, connector, o)
    assert result.outcome is Outcome.APPROVED
    assert await charges(client, sim_url, connector, o.reference) == 1


async def test_verify_moves_no_money(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = order()
    result = connector.parse_verify(*await send(client, connector, connector.verify_call(o)))
    assert result.outcome is Outcome.APPROVED
    assert await charges(client, sim_url, connector, o.reference) == 0
    declined = order("4000000000009995")
    result = connector.parse_verify(*await send(client, connector, connector.verify_call(declined)))
    assert result.outcome is Outcome.DECLINED
    assert result.decline_code is DeclineCode.INSUFFICIENT_FUNDS


# --- ambiguity, idempotency, faults ------------------------------------------------------


@pytest.mark.parametrize("fault", ["after_charge=500", "after_charge=502"])
async def test_status_by_reference_after_an_ambiguous_error_finds_the_one_charge(
    connector: Connector, client: httpx.AsyncClient, sim_url: str, fault: str
) -> None:
    assert connector.supports_status_query
    o = order()
    answer = connector.parse_authorize(
        *await send(client, connector, with_fault(connector.authorize_call(o), fault))
    )
    assert answer.outcome is Outcome.ERROR
    assert answer.may_retry_elsewhere is False  # the PSP may have charged: it did
    status = connector.parse_status(
        *await send(client, connector, connector.status_call(o.reference, None))
    )
    assert status.outcome is Outcome.APPROVED
    assert status.psp_reference
    assert await charges(client, sim_url, connector, o.reference) == 1


@pytest.mark.parametrize("fault", ["after_charge=reset", "after_charge=timeout"])
async def test_a_lost_answer_after_the_charge_is_resolved_by_asking(
    connector: Connector, client: httpx.AsyncClient, sim_url: str, fault: str
) -> None:
    o = order()
    with pytest.raises(httpx.TransportError):  # ReadTimeout, ReadError, RemoteProtocolError
        await _send_with_timeout(client, connector, o, fault)
    status = connector.parse_status(
        *await send(client, connector, connector.status_call(o.reference, None))
    )
    assert status.outcome is Outcome.APPROVED
    assert await charges(client, sim_url, connector, o.reference) == 1
    # The same request again (same key) replays the outcome and charges nothing more.
    replay = await authorize(client, connector, o)
    assert replay.outcome is Outcome.APPROVED
    assert replay.psp_reference == status.psp_reference
    assert await charges(client, sim_url, connector, o.reference) == 1


async def _send_with_timeout(
    client: httpx.AsyncClient, connector: Connector, o: Order, fault: str
) -> Any:
    call = with_fault(connector.authorize_call(o), fault)
    async with httpx.AsyncClient(timeout=httpx.Timeout(0.5)) as short:
        return await send(short if "timeout" in fault else client, connector, call)


async def test_reset_before_processing_raises_and_charges_nothing(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = order()
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        await send(client, connector, with_fault(connector.authorize_call(o), "reset"))
    status = connector.parse_status(
        *await send(client, connector, connector.status_call(o.reference, None))
    )
    assert status.outcome is Outcome.ERROR
    assert status.decline_code is DeclineCode.NOT_FOUND
    assert await charges(client, sim_url, connector, o.reference) == 0


async def test_timeout_raises_read_timeout(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = order()
    async with httpx.AsyncClient(timeout=httpx.Timeout(0.3)) as short:
        with pytest.raises(httpx.ReadTimeout):
            await send(short, connector, with_fault(connector.authorize_call(o), "timeout"))
    assert await charges(client, sim_url, connector, o.reference) == 0


async def test_same_idempotency_key_charges_once(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = order()
    first = await authorize(client, connector, o)
    second = await authorize(client, connector, o)
    assert first.outcome is second.outcome is Outcome.APPROVED
    assert first.psp_reference == second.psp_reference
    assert await charges(client, sim_url, connector, o.reference) == 1
    counts = await sim(client, sim_url, "/_sim/charges")
    assert counts["attempts"][connector.name][o.reference] == 1


async def test_same_key_with_another_request_is_refused_and_not_retryable(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = order()
    assert (await authorize(client, connector, o)).outcome is Outcome.APPROVED
    changed = dataclasses.replace(o, amount=2000)
    result = await authorize(client, connector, changed)
    assert result.outcome is Outcome.ERROR
    assert result.may_retry_elsewhere is False
    assert await charges(client, sim_url, connector, o.reference) == 1


@pytest.mark.parametrize(
    ("status", "code", "retry"),
    [
        (503, DeclineCode.UNAVAILABLE, False),
        (429, DeclineCode.RATE_LIMITED, True),
        (500, DeclineCode.PROCESSING_ERROR, False),
        (502, DeclineCode.UNAVAILABLE, False),
    ],
)
async def test_refusals_before_processing_map_to_errors(
    connector: Connector,
    client: httpx.AsyncClient,
    sim_url: str,
    status: int,
    code: DeclineCode,
    retry: bool,
) -> None:
    o = order()
    call = with_fault(connector.authorize_call(o), f"status={status}")
    result = connector.parse_authorize(*await send(client, connector, call))
    assert result.outcome is Outcome.ERROR
    assert result.http_status == status
    assert result.decline_code is code
    assert result.may_retry_elsewhere is retry
    assert await charges(client, sim_url, connector, o.reference) == 0


async def test_queued_faults_hit_the_next_requests_only(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    queued = await client.post(
        f"{sim_url}/_sim/faults",
        json={"provider": connector.name, "fault": "status=503", "count": 2, "method": "POST"},
    )
    assert queued.status_code == 201
    o = order()
    outcomes = [(await authorize(client, connector, o)).outcome for _ in range(3)]
    assert outcomes == [Outcome.ERROR, Outcome.ERROR, Outcome.APPROVED]
    assert await charges(client, sim_url, connector, o.reference) == 1


async def test_status_of_an_unknown_reference(
    connector: Connector, client: httpx.AsyncClient
) -> None:
    call = connector.status_call(f"never-{key()}", None)
    result = connector.parse_status(*await send(client, connector, call))
    assert result.outcome is Outcome.ERROR
    assert result.decline_code is DeclineCode.NOT_FOUND
    # Only a strongly consistent lookup proves "never charged".
    assert result.may_retry_elsewhere is (connector.name in ("sandbox", "adyen"))


async def test_status_by_psp_reference(connector: Connector, client: httpx.AsyncClient) -> None:
    o = order(capture=False)
    auth = await authorize(client, connector, o)
    call = connector.status_call(o.reference, auth.psp_reference)
    result = connector.parse_status(*await send(client, connector, call))
    assert result.outcome is Outcome.APPROVED
    assert result.psp_reference == auth.psp_reference


async def test_invalid_card_number_never_charges(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = order("4242424242424241")
    result = await authorize(client, connector, o)
    assert result.outcome in (Outcome.DECLINED, Outcome.ERROR)
    if result.outcome is Outcome.ERROR:
        assert result.decline_code is DeclineCode.INVALID_REQUEST
        assert result.may_retry_elsewhere is True
    assert await charges(client, sim_url, connector, o.reference) == 0


async def test_wrong_credentials_are_refused_before_processing(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    if connector.name == "sandbox":
        pytest.skip("the sandbox takes any caller unless given a key")
    o = order()
    call = connector.authorize_call(o)
    headers = {
        k: v for k, v in call.headers.items() if k.lower() not in ("authorization", "x-api-key")
    }
    result = connector.parse_authorize(
        *await send(client, connector, dataclasses.replace(call, headers=headers))
    )
    assert result.outcome is Outcome.ERROR
    assert result.http_status == 401
    assert result.may_retry_elsewhere is True
    assert await charges(client, sim_url, connector, o.reference) == 0


# --- card data --------------------------------------------------------------------------


async def test_scrub_removes_card_data_from_what_went_over_the_wire(
    connector: Connector, sim_url: str
) -> None:
    sent: list[bytes] = []

    async def record(request: httpx.Request) -> None:
        sent.append(await request.aread())

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as recording:
        o = dataclasses.replace(order(), card=card("4000000000009995", "987"))
        call = connector.authorize_call(o)
        status, body = await send(recording, connector, call)
    wire = sent[0].decode()
    assert "4000000000009995" in wire  # the test means something: the PAN was there
    transcripts = [
        connector.scrub(wire),
        connector.scrub(sent[0]),
        connector.scrub(call),
        connector.scrub({"request": {"json": call.json, "form": call.form}, "response": body}),
    ]
    for scrubbed in transcripts:
        text = repr(scrubbed)
        assert "4000000000009995" not in text
        assert not re.search(r"(?<![0-9A-Za-z])987(?![0-9A-Za-z])", text)  # the CVC
        assert "sk_" not in text
        assert "sim-api-key" not in text
    assert status < 500


def test_psp_sim_command_serves_the_simulator() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSACT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "transact", "psp-sim", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/_sim/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, "transact psp-sim", timeout=90)  # a Python start-up, loaded CI
        connector = make("sandbox", base_url=f"http://127.0.0.1:{port}", credentials={})
        call = connector.authorize_call(order())
        response = httpx.post(
            f"http://127.0.0.1:{port}{call.path}", json=call.json, headers=dict(call.headers)
        )
        assert connector.parse_authorize(response.status_code, response.json()).outcome is (
            Outcome.APPROVED
        )
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
    assert f"localhost:{port}" in output.decode()
    assert "4242424242424242" not in output.decode()


async def test_after_3ds_the_provider_sends_the_customer_back_where_the_order_said(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    way_back = "https://pay.shop.example/pay/return"
    o = dataclasses.replace(order(CHALLENGE), return_url=way_back)
    result = await authorize(client, connector, o)
    assert result.outcome is Outcome.PENDING
    challenge = action_url(result.action)
    assert challenge is not None
    # The bank's page as the customer's browser reaches it (the simulator serves it), with
    # no way back in the link: it comes from the payment request, as with a real PSP.
    page_url = sim_url + "/3ds/" + challenge.rsplit("/3ds/", 1)[1].split("?")[0]
    page = await client.get(page_url)
    assert page.status_code == 200
    assert f'value="{way_back}"' in page.text
    done = await client.post(page_url, data={"result": "approved", "return_url": way_back})
    assert done.status_code == 303
    assert done.headers["location"] == way_back


# --- billing postcode (AVS) ---------------------------------------------------------------

# Where each provider takes the billing postcode (the path into the JSON body; Stripe's
# form key).
POSTCODE_ON_THE_WIRE: dict[str, tuple[str, ...]] = {
    "sandbox": ("card", "postcode"),
    "stripe": ("payment_method_data[billing_details][address][postal_code]",),
    "adyen": ("billingAddress", "postalCode"),
    "checkout": ("source", "billing_address", "zip"),
}
# What each provider's answer says of a card sent without a postcode: Stripe and the
# sandbox nothing; Adyen "5 No AVS data provided", Checkout.com "I" (not verified).
NO_POSTCODE_CHECK: dict[str, str | None] = {
    "sandbox": None,
    "stripe": None,
    "adyen": "unavailable",
    "checkout": "unavailable",
}


def with_postcode(o: Order, postcode: str | None) -> Order:
    assert o.card is not None
    return dataclasses.replace(o, card=dataclasses.replace(o.card, postcode=postcode))


async def wire_of(c: Connector, o: Order) -> tuple[bytes, int, Any]:
    """The request body as it left, and the answer."""
    sent: list[bytes] = []

    async def record(request: httpx.Request) -> None:
        sent.append(await request.aread())

    async with httpx.AsyncClient(event_hooks={"request": [record]}, timeout=5.0) as recording:
        status, body = await send(recording, c, c.authorize_call(o))
    return sent[0], status, body


async def test_the_postcode_goes_in_each_providers_own_format(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = with_postcode(order(), "SW1A 1AA")
    raw, status, body = await wire_of(connector, o)
    path = POSTCODE_ON_THE_WIRE[connector.name]
    if connector.name == "stripe":
        form = dict(parse_qsl(raw.decode()))
        assert form[path[0]] == "SW1A 1AA"
        assert form["expand[0]"] == "latest_charge"  # the check is on the charge
    else:
        sent: Any = json.loads(raw)
        for step in path:
            sent = sent[step]
        assert sent == "SW1A 1AA"
    if connector.name == "adyen":
        address = json.loads(raw)["billingAddress"]
        # Adyen requires the whole address: what we do not know is said so.
        assert address == {
            "street": "N/A",
            "houseNumberOrName": "N/A",
            "city": "N/A",
            "postalCode": "SW1A 1AA",
            "country": "ZZ",
        }
    result = connector.parse_authorize(status, body)
    assert result.outcome is Outcome.APPROVED
    assert result.postcode_check == "pass"


@pytest.mark.parametrize(
    ("postcode", "check"),
    [
        ("SW1A 1AA", "pass"),
        ("EC1A 1BB", "pass"),
        ("90210", "pass"),
        ("ZZ1 1ZZ", "fail"),
        ("00000", "fail"),
        ("99999", "unavailable"),
    ],
)
async def test_the_providers_postcode_check_is_read_and_never_declines_by_itself(
    connector: Connector, client: httpx.AsyncClient, sim_url: str, postcode: str, check: str
) -> None:
    o = with_postcode(order(), postcode)
    result = await authorize(client, connector, o)
    assert result.outcome is Outcome.APPROVED  # a failed check is the merchant's to judge
    assert result.postcode_check == check
    assert (await payment_of(client, sim_url, connector, o.reference))["postcode_check"] == check
    assert await charges(client, sim_url, connector, o.reference) == 1


async def test_a_decline_still_says_the_postcode_check(
    connector: Connector, client: httpx.AsyncClient
) -> None:
    o = with_postcode(order("4000000000009995"), "ZZ1 1ZZ")
    result = await authorize(client, connector, o)
    assert result.outcome is Outcome.DECLINED
    assert result.decline_code is DeclineCode.INSUFFICIENT_FUNDS
    assert result.postcode_check == "fail"


async def test_no_postcode_sends_no_address_and_gets_no_check(
    connector: Connector, client: httpx.AsyncClient, sim_url: str
) -> None:
    o = with_postcode(order(), None)
    raw, status, body = await wire_of(connector, o)
    for name in ("postal", "postcode", "billing_address", "billingAddress", "zip"):
        assert name not in raw.decode()
    result = connector.parse_authorize(status, body)
    assert result.outcome is Outcome.APPROVED
    assert result.postcode_check == NO_POSTCODE_CHECK[connector.name]


async def test_scrub_masks_the_postcode_like_the_name(connector: Connector) -> None:
    o = with_postcode(order(), "SW1A 1AA")
    raw, _status, body = await wire_of(connector, o)
    assert b"SW1A" in raw  # the test means something: the postcode was on the wire
    call = connector.authorize_call(o)
    for scrubbed in (
        connector.scrub(raw),
        connector.scrub(raw.decode()),
        connector.scrub(call),
        connector.scrub({"request": {"json": call.json, "form": call.form}, "response": body}),
    ):
        text = repr(scrubbed)
        assert "SW1A" not in text
        assert "Lovelace" not in text
