"""Structured JSON logs with card data masked before anything is written.

Two walls: values typed `SensitiveStr`/`Pan` mask themselves, and a processor
masks any Luhn-valid 13-19 digit run in any string, however it got there.
The standard library's loggers (uvicorn, SQLAlchemy) pass the same processors.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

from transact.kernel.sensitive import SensitiveStr, redact_card_numbers


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, SensitiveStr):
        return value.masked()
    if isinstance(value, str):
        return redact_card_numbers(value)
    if depth > 6:
        return redact_card_numbers(repr(value))
    if isinstance(value, Mapping):
        return {_scrub(k, depth + 1): _scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, depth + 1) for v in value]
    if isinstance(value, bytes):
        return redact_card_numbers(value.decode("utf-8", errors="replace"))
    if isinstance(value, bool | float) or value is None:
        return value
    if isinstance(value, int):
        # A card number logged as an integer is still a card number.
        text = str(value)
        masked = redact_card_numbers(text)
        return value if masked == text else masked
    return redact_card_numbers(str(value))


def mask_card_data(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the last wall before a log line leaves the process."""
    return {key: _scrub(value) for key, value in event_dict.items()}


def _render_exception_masked(
    logger: WrappedLogger, name: str, event_dict: MutableMapping[str, Any]
) -> EventDict:
    rendered = structlog.processors.format_exc_info(logger, name, dict(event_dict))
    if "exception" in rendered:
        rendered["exception"] = redact_card_numbers(str(rendered["exception"]))
    return rendered


WIRE_LOGGERS = ("websockets", "uvicorn.error", "httpcore", "hpack", "aiosmtplib")


def configure_logging(level: str = "INFO", json: bool = True, stream: TextIO | None = None) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _render_exception_masked,
        mask_card_data,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Alembic announces every plugin it loads at INFO; only its problems matter here.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    # At DEBUG these libraries log what crosses the wire: every media frame (call audio,
    # whose tones are card digits), request headers (PSP keys), SMTP bodies (link
    # tokens). Debugging Transact never needs that, so they stay at INFO at most.
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
