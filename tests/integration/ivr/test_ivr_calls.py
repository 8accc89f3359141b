"""Self-service payments end to end: a caller with no agent hears the prompts, keys the card
on the keypad, confirms, and the sandbox PSP decides; the card appears nowhere."""

from __future__ import annotations

import asyncio
import io
import json
import sys

from tests.integration.capture.test_capture import CVV, future_expiry
from tests.integration.ivr.conftest import Caller, Line2, merchant, spoken
from tests.leaks import card_numbers_in, database_dump
from transact.ivr.phrases import PAUSE
from transact.ivr.speech import digits
from transact.telephony.simulate import CallPlan, simulate_ivr_call

PAN = "4242424242424242"
DECLINED_PAN = "4000000000000002"
BILL = {"name": "bills", "amount": 1250, "currency": "GBP", "reference": "INV-1250"}
AMOUNT = ("twelve", "pounds", "fifty")


async def key_card(caller: Caller, flow: dict[str, object], pan: str) -> None:
    """Hear each card prompt in turn and key the field it asks for."""
    assert (await caller.hear()).audio == spoken(flow, "enter_pan")
    await caller.press(pan)
    assert (await caller.hear()).audio == spoken(flow, "enter_expiry")
    await caller.press(future_expiry())
    assert (await caller.hear()).audio == spoken(flow, "enter_cvv")
    await caller.press(CVV)


def read_back(flow: dict[str, object], last4: str) -> bytes:
    return spoken(
        flow,
        "readback_card",
        *digits(last4),
        PAUSE,
        "readback_amount",
        *AMOUNT,
        PAUSE,
        "confirm_menu",
    )


async def test_a_caller_pays_a_fixed_amount_alone_and_the_card_is_nowhere(
    ivr_line: Line2, log_stream: io.StringIO
) -> None:
    flow = await ivr_line.flow(**BILL)
    caller = await ivr_line.call("CA-ivr-paid", "bills")

    greeting = await caller.hear()
    assert greeting.audio == spoken(flow, "greeting", PAUSE, "amount_due", *AMOUNT)
    await key_card(caller, flow, PAN)
    assert (await caller.hear()).audio == read_back(flow, PAN[-4:])
    await caller.press("1")
    assert (await caller.hear()).audio == spoken(flow, "processing")

    outcome = await caller.hear()
    ended = await ivr_line.outcome("CA-ivr-paid")
    confirmation: str = ended.confirmation  # type: ignore[attr-defined]
    assert ended.outcome == "paid"  # type: ignore[attr-defined]
    number = digits(confirmation)
    assert outcome.audio == spoken(
        flow,
        "approved",
        PAUSE,
        "confirmation_is",
        *number,
        PAUSE,
        "again",
        "confirmation_is",
        *number,
    )
    assert (await caller.hear()).audio == spoken(flow, "goodbye")
    await asyncio.wait_for(caller.closed.wait(), 5)  # Transact hung up

    payment_id = ended.capture_id  # type: ignore[attr-defined]
    payment = await ivr_line.client.get(f"/api/v1/payments/{payment_id}", headers=ivr_line.admin)
    assert payment.json()["status"] == "authorized"
    assert payment.json()["channel"] == "ivr"
    assert ivr_line.steps("CA-ivr-paid") == [
        "greeting",
        "opening",
        "card",
        "confirm",
        "paying",
        "outcome",
        "goodbye",
        "ended",
    ]
    published = " ".join(m.model_dump_json() for m in ivr_line.line.published)
    assert card_numbers_in(published) == []
    assert PAN not in published
    assert card_numbers_in(await database_dump(ivr_line.line.kernel.db.engine)) == []
    logs = log_stream.getvalue()
    assert "ivr" in logs  # the services did log, at DEBUG (SQL parameters too)
    assert PAN not in logs
    assert card_numbers_in(logs) == []


async def test_a_key_during_a_prompt_stops_it(ivr_line: Line2) -> None:
    await ivr_line.flow(**BILL)
    caller = await ivr_line.call("CA-ivr-barge", "bills", echo=False)
    greeting = await caller.hear()  # sent, and "playing": its mark is not echoed
    await caller.press("5")
    await ivr_line.line.wait_for("call.prompt_done")
    done = ivr_line.line.events("call.prompt_done")[0]
    assert (done.mark, done.interrupted) == (greeting.mark, True)  # type: ignore[attr-defined]
    assert caller.cleared == 1
    # The flow goes on at once: the card number is asked for.
    assert (await caller.hear()).mark != greeting.mark
    await caller.hang_up()
    assert (await ivr_line.outcome("CA-ivr-barge")).outcome == "abandoned"  # type: ignore[attr-defined]


async def test_a_declined_card_can_be_replaced_by_another(ivr_line: Line2) -> None:
    flow = await ivr_line.flow(**BILL)
    caller = await ivr_line.call("CA-ivr-declined", "bills")
    await caller.hear()
    await key_card(caller, flow, DECLINED_PAN)
    assert (await caller.hear()).audio == read_back(flow, DECLINED_PAN[-4:])
    await caller.press("1")
    await caller.hear()  # processing
    assert (await caller.hear()).audio == spoken(flow, "declined", PAUSE, "retry_menu")
    await caller.press("1")
    await key_card(caller, flow, PAN)
    assert (await caller.hear()).audio == read_back(flow, PAN[-4:])
    await caller.press("1")
    await caller.hear()  # processing
    await caller.hear()  # approved, with the confirmation number
    ended = await ivr_line.outcome("CA-ivr-declined")
    assert (ended.outcome, ended.payments, ended.cards) == ("paid", 2, 2)  # type: ignore[attr-defined]
    assert len(ivr_line.line.events("payment.declined")) == 1


async def test_too_many_invalid_card_numbers_end_the_call(ivr_line: Line2) -> None:
    flow = await ivr_line.flow(**BILL, max_attempts=2)
    caller = await ivr_line.call("CA-ivr-invalid", "bills")
    await caller.hear()
    assert (await caller.hear()).audio == spoken(flow, "enter_pan")
    await caller.press("4242424242424241#")  # fails the Luhn check
    assert (await caller.hear()).audio == spoken(flow, "invalid_pan")
    await caller.press("1234#")
    assert (await caller.hear()).audio == spoken(flow, "too_many_attempts", PAUSE, "goodbye")
    await asyncio.wait_for(caller.closed.wait(), 5)
    ended = await ivr_line.outcome("CA-ivr-invalid")
    assert ended.outcome == "too_many_attempts"  # type: ignore[attr-defined]
    cancelled = ivr_line.line.events("capture.cancelled")
    assert [c.reason for c in cancelled] == ["failed"]  # type: ignore[attr-defined]


async def test_a_caller_who_hangs_up_mid_card_leaves_nothing_behind(ivr_line: Line2) -> None:
    flow = await ivr_line.flow(**BILL)
    caller = await ivr_line.call("CA-ivr-gone", "bills")
    await caller.hear()
    assert (await caller.hear()).audio == spoken(flow, "enter_pan")
    await caller.press(PAN)
    await caller.hear()  # the expiry date is asked for
    await caller.hang_up()
    ended = await ivr_line.outcome("CA-ivr-gone")
    assert ended.outcome == "abandoned"  # type: ignore[attr-defined]
    cancelled = await ivr_line.line.wait_for("capture.cancelled")
    assert cancelled[0].reason == "call_ended"  # type: ignore[attr-defined]
    payment = await ivr_line.client.get(
        f"/api/v1/payments/{ended.capture_id}",  # type: ignore[attr-defined]
        headers=ivr_line.admin,
    )
    assert payment.json()["status"] == "cancelled"
    # The card draft is gone from the vault (its capture's entry was deleted).
    assert card_numbers_in(await database_dump(ivr_line.line.kernel.db.engine)) == []


async def test_a_call_naming_no_flow_is_told_so_and_ended(ivr_line: Line2) -> None:
    caller = await ivr_line.call("CA-ivr-none", "nothing-here")
    heard = await caller.hear()
    assert heard.audio == spoken({**BILL, "name": "x"}, "unavailable", PAUSE, "goodbye")
    await asyncio.wait_for(caller.closed.wait(), 5)
    assert (await ivr_line.outcome("CA-ivr-none")).outcome == "unavailable"  # type: ignore[attr-defined]


async def test_an_account_number_is_looked_up_at_the_merchant(ivr_line: Line2) -> None:
    async with merchant({"2718281828": (1250, "GBP", "ACC-2718")}) as shop:
        flow = await ivr_line.flow(
            name="accounts", amount_source="account", lookup_url=shop.url, max_attempts=3
        )
        shop.secret = flow["lookup_secret"]
        caller = await ivr_line.call("CA-ivr-account", "accounts")
        assert (await caller.hear()).audio == spoken(flow, "greeting")
        assert (await caller.hear()).audio == spoken(flow, "enter_account")
        await caller.press("55555#")
        assert (await caller.hear()).audio == spoken(
            flow, "account_not_found", PAUSE, "enter_account"
        )
        await caller.press("2718281828#")
        assert (await caller.hear()).audio == spoken(flow, "amount_due", *AMOUNT)
        assert (await caller.hear()).audio == spoken(flow, "enter_pan")
        await caller.hang_up()
        ended = await ivr_line.outcome("CA-ivr-account")

    assert [r["account"] for r in shop.asked] == ["55555", "2718281828"]
    assert all(r["signed"] for r in shop.asked)
    assert (ended.reference, ended.amount) == ("ACC-2718", 1250)  # type: ignore[attr-defined]
    published = " ".join(m.model_dump_json() for m in ivr_line.line.published)
    assert "2718281828" not in published
    assert "2718281828" not in await database_dump(ivr_line.line.kernel.db.engine)


async def test_transact_simulate_call_pays_on_a_self_service_line(ivr_line: Line2) -> None:
    await ivr_line.flow(**BILL)
    script = f"||{PAN}|{future_expiry()}|{CVV}|1"
    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "transact", "simulate", "call", "--url", ivr_line.line.url,
        "--tenant", "shop", "--token", ivr_line.line.token, "--ivr", "bills",
        "--keys", script, "--call-id", "CA-ivr-sim", "--fast",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(command.communicate(), 60)
    assert command.returncode == 0, stderr.decode()
    report = json.loads(stdout)
    assert report["finished_script"] is True
    assert report["prompts_heard"] == 8  # greeting ... goodbye
    assert report["closed_reason"] == "call ended"
    assert (await ivr_line.outcome("CA-ivr-sim")).outcome == "paid"  # type: ignore[attr-defined]


async def test_the_simulator_hangs_up_mid_flow(ivr_line: Line2) -> None:
    await ivr_line.flow(**BILL)
    plan = CallPlan(url=ivr_line.line.url, tenant="shop", token=ivr_line.line.token)
    plan.realtime = False
    plan.call_id = "CA-ivr-sim-gone"
    # Four digits of the card number, then the caller hangs up.
    report = await simulate_ivr_call(plan, "bills", "||4242", hang_up=True)
    assert (report.finished_script, report.prompts_heard) == (True, 2)
    ended = await ivr_line.outcome("CA-ivr-sim-gone")
    assert ended.outcome == "abandoned"  # type: ignore[attr-defined]
    cancelled = await ivr_line.line.wait_for("capture.cancelled")
    assert cancelled[0].reason == "call_ended"  # type: ignore[attr-defined]
