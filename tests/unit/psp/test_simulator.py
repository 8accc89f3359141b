"""The PSP simulator in-process (httpx.ASGITransport), as the embedded sandbox runs it."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx
import pytest

from transact.kernel.sensitive import Pan, SensitiveStr
from transact.psp import simulator
from transact.psp.connectors import make
from transact.psp.connectors.base import Card, DeclineCode, HttpCall, Order, Outcome
from transact.psp.connectors.http import send
from transact.psp.connectors.sandbox import SandboxConnector
from transact.psp.simulator import SimulatorApp, brand_of, create_simulator_app

PAN = "5555555555554444"
YEAR = datetime.date.today().year + 2


@pytest.fixture
def app() -> SimulatorApp:
    return create_simulator_app()


@pytest.fixture
async def client(app: SimulatorApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox"
    ) as http:
        yield http


def order(reference: str = "pay_1", number: str = PAN, **changes: Any) -> Order:
    card = Card(Pan(number), 1, YEAR, SensitiveStr("321"))
    base = Order(reference, 1000, "GBP", f"key-{reference}", card=card)
    return dataclasses.replace(base, **changes)


SANDBOX = SandboxConnector("http://sandbox")


async def test_the_embedded_sandbox_takes_a_payment(client: httpx.AsyncClient) -> None:
    result = SANDBOX.parse_authorize(*await send(client, SANDBOX, SANDBOX.authorize_call(order())))
    assert result.outcome is Outcome.APPROVED
    charges = (await client.get("/_sim/charges")).json()
    assert charges["charges"]["sandbox"] == {"pay_1": 1}


async def test_in_process_reset_and_timeout_raise_what_httpx_would(
    client: httpx.AsyncClient,
) -> None:
    queued = await client.post(
        "/_sim/faults", json={"provider": "sandbox", "fault": "after_charge=reset"}
    )
    assert queued.status_code == 201
    with pytest.raises(httpx.RemoteProtocolError):
        await send(client, SANDBOX, SANDBOX.authorize_call(order("pay_r")))
    await client.post("/_sim/faults", json={"provider": "sandbox", "fault": "timeout"})
    started = asyncio.get_running_loop().time()
    with pytest.raises(httpx.ReadTimeout):
        await send(client, SANDBOX, SANDBOX.authorize_call(order("pay_t")))
    assert asyncio.get_running_loop().time() - started < 1  # no socket: no real wait
    status = SANDBOX.parse_status(*await send(client, SANDBOX, SANDBOX.status_call("pay_r", None)))
    assert status.outcome is Outcome.APPROVED
    charges = (await client.get("/_sim/charges")).json()["charges"]["sandbox"]
    assert charges == {"pay_r": 1}


async def test_a_second_request_while_the_first_runs_gets_409(client: httpx.AsyncClient) -> None:
    call = SANDBOX.authorize_call(order("pay_c"))
    slow = dataclasses.replace(call, headers={**call.headers, "X-Sim-Fault": "latency=200"})
    first, second = await asyncio.gather(
        send(client, SANDBOX, slow), _after(0.05, send(client, SANDBOX, call))
    )
    assert SANDBOX.parse_authorize(*first).outcome is Outcome.APPROVED
    running = SANDBOX.parse_authorize(*second)
    assert (running.http_status, running.may_retry_elsewhere) == (409, False)


async def _after(seconds: float, work: Any) -> Any:
    await asyncio.sleep(seconds)
    return await work


async def test_queued_faults_match_method_and_path(client: httpx.AsyncClient) -> None:
    await client.post(
        "/_sim/faults",
        json={"provider": "sandbox", "fault": "status=503", "path": "/sandbox/tokens"},
    )
    sale = SANDBOX.parse_authorize(*await send(client, SANDBOX, SANDBOX.authorize_call(order())))
    assert sale.outcome is Outcome.APPROVED  # not the tokens path: untouched
    card = order().card
    assert card is not None
    token = SANDBOX.parse_tokenize(
        *await send(client, SANDBOX, SANDBOX.tokenize_call(card, "c", "k"))
    )
    assert (token.outcome, token.decline_code) == (Outcome.ERROR, DeclineCode.UNAVAILABLE)


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "paypal", "fault": "status=500"},
        {"provider": "stripe", "fault": "explode"},
        {"provider": "stripe", "fault": "status=500", "count": 0},
    ],
)
async def test_bad_fault_requests_are_refused(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    assert (await client.post("/_sim/faults", json=body)).status_code == 400


async def test_bad_fault_header_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/sandbox/payments", headers={"X-Sim-Fault": "wat=1"})
    assert response.status_code == 400


async def test_reset_forgets_everything(client: httpx.AsyncClient) -> None:
    await send(client, SANDBOX, SANDBOX.authorize_call(order()))
    await client.post("/_sim/faults", json={"provider": "sandbox", "fault": "status=500"})
    assert (await client.post("/_sim/reset")).json() == {"reset": True}
    assert (await client.get("/_sim/payments")).json() == {"data": []}
    result = SANDBOX.parse_authorize(*await send(client, SANDBOX, SANDBOX.authorize_call(order())))
    assert result.outcome is Outcome.APPROVED


async def test_unknown_paths_and_methods(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nowhere")).status_code == 404
    assert (await client.get("/_sim/nowhere")).status_code == 404
    assert (await client.delete("/sandbox/payments")).status_code == 405
    assert (await client.get("/_sim/health")).json() == {"ok": True}


async def test_sandbox_key_is_checked_when_given() -> None:
    app = create_simulator_app(sandbox_api_key="sbx-secret")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        keyed = SandboxConnector("http://sandbox", api_key="sbx-secret")
        wrong = SandboxConnector("http://sandbox", api_key="nope")
        ok = keyed.parse_authorize(*await send(http, keyed, keyed.authorize_call(order())))
        refused = wrong.parse_authorize(*await send(http, wrong, wrong.authorize_call(order("b"))))
    assert ok.outcome is Outcome.APPROVED
    assert (refused.http_status, refused.may_retry_elsewhere) == (401, True)


async def test_a_past_expiry_declines_as_expired(client: httpx.AsyncClient) -> None:
    old = Card(Pan(PAN), 1, 2020, SensitiveStr("321"))
    result = SANDBOX.parse_authorize(
        *await send(client, SANDBOX, SANDBOX.authorize_call(order(card=old)))
    )
    assert (result.outcome, result.decline_code) == (Outcome.DECLINED, DeclineCode.EXPIRED_CARD)


async def test_the_simulator_keeps_no_card_data(app: SimulatorApp) -> None:
    numbers = {"4242424242424242", "4000000000009995", "378282246310005"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        for name, creds, options in (
            ("sandbox", {}, None),
            ("stripe", {"secret_key": "sk_test_x"}, None),
            ("adyen", {"api_key": "k", "merchant_account": "M"}, {"status_query": "true"}),
            ("checkout", {"secret_key": "sk_sbox_x"}, None),
        ):
            connector = make(name, base_url="http://sim", credentials=creds, options=options)
            for i, number in enumerate(sorted(numbers)):
                o = order(f"{name}-{i}", number)
                await send(http, connector, connector.authorize_call(o))
                assert o.card is not None
                await send(http, connector, connector.tokenize_call(o.card, f"c{i}", f"t{i}"))
            payments = (await http.get("http://sim/_sim/payments")).json()
    assert {p["last4"] for p in payments["data"]} == {"4242", "9995", "0005"}
    held = repr(vars(app.state)) + repr(payments)
    for number in numbers:
        assert number not in held
        assert number[6:12] not in held  # not even the middle digits
    # Nothing with a place for a card number or security code exists to be kept.
    kept = {f.name for f in dataclasses.fields(type(next(iter(app.state.payments.values()))))}
    assert not kept & {"number", "pan", "cvc", "cvv", "card", "exp_month", "exp_year"}


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "discover"),
        ("3056930009020004", "diners"),
        ("3566002020360505", "jcb"),
        ("6200000000000005", "unionpay"),
        ("9999999999999995", "unknown"),
    ],
)
def test_brands(number: str, brand: str) -> None:
    assert brand_of(number) == brand


async def test_a_lifespan_is_answered(app: SimulatorApp) -> None:
    messages: list[MutableMapping[str, Any]] = [
        {"type": "lifespan.startup"},
        {"type": "lifespan.shutdown"},
    ]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return messages.pop(0)

    async def record(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, record)
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_a_non_json_body_is_a_validation_error(client: httpx.AsyncClient) -> None:
    call = HttpCall("POST", "/sandbox/payments", {"Idempotency-Key": "x"})
    response = await client.post(call.path, content=b"{not json", headers=dict(call.headers))
    assert response.status_code == 422
    assert SANDBOX.parse_authorize(response.status_code, response.json()).may_retry_elsewhere


async def test_a_simulator_bug_answers_500_and_logs_no_card_data(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: Any) -> Any:
        raise ValueError(f"cannot parse {PAN}")

    routes = [
        (o, m, p, broken if h is simulator.sandbox_pay else h) for o, m, p, h in simulator.ROUTES
    ]
    monkeypatch.setattr(simulator, "ROUTES", routes)
    result = SANDBOX.parse_authorize(*await send(client, SANDBOX, SANDBOX.authorize_call(order())))
    assert (result.http_status, result.may_retry_elsewhere) == (500, False)
    assert "ValueError" in caplog.text
    assert PAN not in caplog.text
