"""Structured JSON logs: card data is masked however it reaches a log line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from transact.kernel.logging import configure_logging
from transact.kernel.sensitive import Pan, SensitiveStr

PAN = "4111111111111111"
MASKED = "411111******1111"
AMEX = "378282246310005"
AMEX_MASKED = "378282*****0005"

Emit = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the logging and structlog configuration back as it was, for the tests after."""
    manager = logging.root.manager
    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate, lg.disabled)
        for name, lg in [("", logging.root), *manager.loggerDict.items()]
        if isinstance(lg, logging.Logger)
    }
    was_configured = structlog.is_configured()
    structlog_config = structlog.get_config()
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        if was_configured:
            structlog.configure(**structlog_config)
        else:
            structlog.reset_defaults()
        for name, lg in [("", logging.root), *manager.loggerDict.items()]:
            if not isinstance(lg, logging.Logger):
                continue
            if name in saved:
                lg.handlers[:], level, lg.propagate, lg.disabled = saved[name]
                lg.setLevel(level)


@pytest.fixture
def stream(restore_logging: None) -> io.StringIO:
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    return out


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def assert_no_card_in(text: str) -> None:
    for clear in (PAN, "4111 1111 1111 1111", "4111-1111-1111-1111", AMEX):
        assert clear not in text


# --- format ----------------------------------------------------------------------


def test_every_line_is_a_json_object(stream: io.StringIO) -> None:
    log = structlog.get_logger("svc")
    log.info("first", n=1)
    log.warning("second", ok=True, ratio=0.5, nothing=None)
    logging.getLogger("stdlib").error("third")
    records = lines(stream)
    assert [r["event"] for r in records] == ["first", "second", "third"]
    assert [r["level"] for r in records] == ["info", "warning", "error"]
    assert [r["logger"] for r in records] == ["svc", "svc", "stdlib"]
    assert all("timestamp" in r for r in records)
    assert records[0]["n"] == 1
    assert (records[1]["ok"], records[1]["ratio"], records[1]["nothing"]) == (True, 0.5, None)


def test_level_filters(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("WARNING", json=True, stream=out)
    structlog.get_logger("svc").info("hidden")
    logging.getLogger("stdlib").info("hidden too")
    structlog.get_logger("svc").warning("shown")
    assert [r["event"] for r in lines(out)] == ["shown"]


def test_ordinary_numbers_stay_numbers(stream: io.StringIO) -> None:
    not_a_card = 4111111111111112  # 16 digits, fails Luhn
    structlog.get_logger().info("order", order_id=12345, amount_minor=1999, other=not_a_card)
    record = lines(stream)[0]
    assert record["order_id"] == 12345
    assert record["amount_minor"] == 1999
    assert record["other"] == not_a_card


# --- structlog: the second wall ------------------------------------------------------


def test_card_number_in_the_event_text_is_masked(stream: io.StringIO) -> None:
    structlog.get_logger().info(f"customer typed {PAN} and {AMEX}")
    assert lines(stream)[0]["event"] == f"customer typed {MASKED} and {AMEX_MASKED}"
    assert_no_card_in(stream.getvalue())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (PAN, MASKED),
        (f"pan={PAN};", f"pan={MASKED};"),
        ("4111 1111 1111 1111", MASKED),
        ("4111-1111-1111-1111", MASKED),
        (int(PAN), MASKED),
        (PAN.encode(), MASKED),
        (f"card {PAN}".encode(), f"card {MASKED}"),
    ],
    ids=["str", "in-text", "spaced", "dashed", "int", "bytes", "bytes-in-text"],
)
def test_card_number_in_a_value_is_masked(
    stream: io.StringIO, value: object, expected: str
) -> None:
    structlog.get_logger().info("evt", card=value)
    assert lines(stream)[0]["card"] == expected
    assert_no_card_in(stream.getvalue())


def test_card_numbers_in_nested_structures_are_masked(stream: io.StringIO) -> None:
    structlog.get_logger().info(
        "evt",
        payload={"card": {"pan": PAN, "all": [PAN, int(PAN), (PAN,)]}, PAN: "as a key"},
        items=[{"pan": PAN}, {PAN}, (AMEX, b"4111111111111111")],
    )
    record = lines(stream)[0]
    assert record["payload"]["card"]["pan"] == MASKED
    assert record["payload"]["card"]["all"] == [MASKED, MASKED, [MASKED]]
    assert record["payload"][MASKED] == "as a key"
    assert record["items"] == [{"pan": MASKED}, [MASKED], [AMEX_MASKED, MASKED]]
    assert_no_card_in(stream.getvalue())


def test_deeply_nested_card_number_is_masked(stream: io.StringIO) -> None:
    deep: Any = PAN
    for _ in range(12):
        deep = {"next": [deep]}
    structlog.get_logger().info("evt", deep=deep)
    assert MASKED in stream.getvalue()
    assert_no_card_in(stream.getvalue())


def test_card_number_inside_an_arbitrary_object_is_masked(stream: io.StringIO) -> None:
    class Order:
        def __repr__(self) -> str:
            return f"Order(pan={PAN})"

    structlog.get_logger().info("evt", order=Order(), error=ValueError(f"bad card {PAN}"))
    record = lines(stream)[0]
    assert record["order"] == f"Order(pan={MASKED})"
    assert record["error"] == f"bad card {MASKED}"
    assert_no_card_in(stream.getvalue())


def test_sensitive_values_mask_themselves(stream: io.StringIO) -> None:
    structlog.get_logger().info(
        "evt", cvv=SensitiveStr("737"), pan=Pan(PAN), nested={"secret": SensitiveStr("hunter2")}
    )
    record = lines(stream)[0]
    assert record["cvv"] == "***"
    assert record["pan"] == MASKED
    assert record["nested"] == {"secret": "***"}
    assert "hunter2" not in stream.getvalue()
    assert '"737"' not in stream.getvalue()
    assert_no_card_in(stream.getvalue())


def test_sensitive_value_formatted_into_the_event_is_masked(stream: io.StringIO) -> None:
    cvv = SensitiveStr("737")
    structlog.get_logger().info(f"cvv was {cvv}, pan was {Pan(PAN)}")
    assert lines(stream)[0]["event"] == f"cvv was ***, pan was {MASKED}"


def test_bound_and_context_values_are_masked(stream: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(pan_in_context=PAN)
    structlog.get_logger().bind(pan_bound=PAN).info("evt")
    record = lines(stream)[0]
    assert record["pan_in_context"] == MASKED
    assert record["pan_bound"] == MASKED
    assert_no_card_in(stream.getvalue())


def test_positional_arguments_are_masked(stream: io.StringIO) -> None:
    structlog.get_logger().info("card %s", PAN)
    assert MASKED in stream.getvalue()
    assert_no_card_in(stream.getvalue())


def test_exception_with_traceback_is_masked(stream: io.StringIO) -> None:
    log = structlog.get_logger()
    pan = PAN
    try:
        raise ValueError(f"PSP rejected {pan}")
    except ValueError:
        log.exception("psp_call_failed", pan=pan)
    record = lines(stream)[0]
    assert record["event"] == "psp_call_failed"
    assert record["level"] == "error"
    assert record["pan"] == MASKED
    assert "Traceback (most recent call last)" in record["exception"]
    assert f"ValueError: PSP rejected {MASKED}" in record["exception"]
    assert_no_card_in(stream.getvalue())


def test_chained_exceptions_are_masked(stream: io.StringIO) -> None:
    try:
        try:
            raise KeyError(f"4111 1111 1111 1111 not found, {AMEX} neither")
        except KeyError as inner:
            raise RuntimeError(f"lookup of {PAN} failed") from inner
    except RuntimeError:
        structlog.get_logger().exception("failed")
    record = lines(stream)[0]
    assert "direct cause" in record["exception"]
    assert MASKED in record["exception"]
    assert AMEX_MASKED in record["exception"]
    assert_no_card_in(stream.getvalue())


def test_exc_info_given_as_an_exception_is_masked(stream: io.StringIO) -> None:
    structlog.get_logger().error("failed", exc_info=ValueError(f"card {PAN}"))
    assert f"card {MASKED}" in lines(stream)[0]["exception"]
    assert_no_card_in(stream.getvalue())


# --- the standard library's loggers ---------------------------------------------------


def test_stdlib_message_and_arguments_are_masked(stream: io.StringIO) -> None:
    logger = logging.getLogger("some.library")
    logger.warning("card %s", PAN)
    logger.warning(f"card {PAN}")
    logger.warning("card %s cvv %s", Pan(PAN), SensitiveStr("737"))
    logger.warning("amounts %d", int(PAN))
    events = [r["event"] for r in lines(stream)]
    assert events == [
        f"card {MASKED}",
        f"card {MASKED}",
        f"card {MASKED} cvv ***",
        f"amounts {MASKED}",
    ]
    assert_no_card_in(stream.getvalue())


def test_stdlib_exception_with_traceback_is_masked(stream: io.StringIO) -> None:
    try:
        raise ValueError(f"PSP rejected {PAN}")
    except ValueError:
        logging.getLogger("some.library").exception("call failed for %s", PAN)
    record = lines(stream)[0]
    assert record["event"] == f"call failed for {MASKED}"
    assert "Traceback (most recent call last)" in record["exception"]
    assert f"ValueError: PSP rejected {MASKED}" in record["exception"]
    assert_no_card_in(stream.getvalue())
    assert len(stream.getvalue().splitlines()) == 1  # no clear traceback appended after the JSON


def test_stdlib_stack_info_is_masked(stream: io.StringIO) -> None:
    def deep_call() -> None:
        # The source line below shows in the stack, and with it the number.
        logging.getLogger("x").info("where am i", stack_info=True, extra={"n": "4111111111111111"})

    deep_call()
    assert "deep_call" in stream.getvalue()
    assert_no_card_in(stream.getvalue())


def test_uvicorn_access_log_goes_through_the_same_wall(stream: io.StringIO) -> None:
    logging.getLogger("uvicorn.access").info('"GET /pay?pan=%s HTTP/1.1" 200', PAN)
    record = lines(stream)[0]
    assert record["logger"] == "uvicorn.access"
    assert MASKED in record["event"]
    assert_no_card_in(stream.getvalue())


# --- console output ----------------------------------------------------------------------


def test_console_output_is_masked_too(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("INFO", json=False, stream=out)
    structlog.get_logger().info(f"typed {PAN}", pan=PAN, cvv=SensitiveStr("737"))
    try:
        raise ValueError(PAN)
    except ValueError:
        logging.getLogger("x").exception("boom")
    text = out.getvalue()
    assert MASKED in text
    assert "***" in text
    # The time stamps' microseconds may hold "737" by chance (they once did).
    assert "737" not in re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z", "", text)
    assert_no_card_in(text)


def test_reconfiguring_does_not_duplicate_output(restore_logging: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", stream=first)
    configure_logging("INFO", stream=second)
    structlog.get_logger().info("once")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1


def test_at_debug_the_wire_libraries_keep_call_audio_and_headers_out(
    restore_logging: None,
) -> None:
    out = io.StringIO()
    configure_logging("DEBUG", json=True, stream=out)
    logging.getLogger("uvicorn.error").debug('< TEXT \'{"event": "media", "payload": "/w=="}\'')
    logging.getLogger("websockets.client").debug("> TEXT media frame")
    logging.getLogger("httpcore.http11").debug("send_request_headers Authorization: Bearer sk")
    logging.getLogger("aiosmtplib").debug("DATA https://pay.example/pay/secret-token")
    structlog.get_logger("svc").debug("ours")
    logging.getLogger("websockets.server").warning("a problem still shows")
    assert [r["event"] for r in lines(out)] == ["ours", "a problem still shows"]
