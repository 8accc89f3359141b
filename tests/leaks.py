"""Finds card data in clear where it must never be: Redis, database rows, log text."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from transact.kernel.pan_scan import redis_texts
from transact.kernel.sensitive import find_card_numbers

# A digit run glued to letters is part of an identifier (hex ids hold long digit runs,
# a tenth of them Luhn-valid by chance), not a card number someone wrote down.
_IN_A_WORD = re.compile(r"[A-Za-z0-9_]*[0-9][0-9 -]*[0-9][A-Za-z0-9_]*")


def card_numbers_in(blob: bytes | str) -> list[str]:
    """Every card-like number (Luhn-valid 13-19 digits, separators allowed) in the text,
    except digit runs inside alphanumeric identifiers."""
    text_ = blob.decode("latin-1") if isinstance(blob, bytes) else blob
    found: list[str] = []
    for token in _IN_A_WORD.finditer(text_):
        word = token.group(0)
        if any(ch.isalpha() or ch == "_" for ch in word):
            continue
        if _fraction(text_, token.start()):
            continue
        found += find_card_numbers(word)
    return found


def _fraction(text_: str, start: int) -> bool:
    """The digits after a decimal point (a float in Redis, `0.092610316806368`), which
    are Luhn-valid by chance a tenth of the time, are not a card number."""
    return start >= 2 and text_[start - 1] == "." and text_[start - 2].isdigit()


async def redis_raw_dump(url: str, namespace: str = "") -> bytes:
    """The raw bytes of every key (under `namespace`) and of its value, whatever its type,
    read the way `transact audit scan` reads them."""
    texts = [text_ async for _where, text_ in redis_texts(url, match=f"{namespace}*")]
    return "\n".join(texts).encode("latin-1")


async def database_dump(engine: AsyncEngine) -> str:
    """Every column of every row of every table, as text."""

    def tables(connection: Any) -> list[str]:
        return list(inspect(connection).get_table_names())

    parts: list[str] = []
    async with engine.connect() as conn:
        for table in await conn.run_sync(tables):
            rows = (await conn.execute(text(f'SELECT * FROM "{table}"'))).all()  # noqa: S608
            for row in rows:
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        parts.append(bytes(value).decode("latin-1"))
                    else:
                        parts.append(str(value))
    return "\n".join(parts)
