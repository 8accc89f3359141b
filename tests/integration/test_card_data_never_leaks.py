"""A test card written through the vault never appears in clear in Redis, the database or logs."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import AsyncIterator

import pytest
import structlog

from tests.conftest import create_database, drop_database
from tests.leaks import card_numbers_in, database_dump, redis_raw_dump
from tests.waiting import eventually
from transact.contracts import Message
from transact.kernel import Kernel
from transact.kernel.db import add_to_outbox
from transact.kernel.logging import configure_logging
from transact.kernel.sensitive import Pan, SensitiveStr
from transact.kernel.settings import load_settings

PAN = "4111111111111111"
EXPIRY = "12/30"
CVV = "737"


class KeysTyped(Message):
    """Stand-in for `call.keypad`: the keys travel sealed."""

    topic = "test.keys_typed"
    sealed: str


@pytest.fixture
async def kernel(redis_url: str, postgres_admin_url: str, namespace: str) -> AsyncIterator[Kernel]:
    db_url = await create_database(postgres_admin_url)
    settings = load_settings(
        master_key=base64.b64encode(b"m" * 32).decode(),
        bus_url=redis_url,
        cache_url=redis_url,
        database_url=db_url,
        namespace=namespace,
        outbox_poll_interval=0.05,
    )
    k = Kernel.from_settings(settings)
    await k.start(migrate=True)
    yield k
    await k.stop()
    await drop_database(postgres_admin_url, db_url)


@pytest.fixture
def log_stream() -> AsyncIterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("DEBUG", json=True, stream=stream)
    yield stream  # type: ignore[misc]
    root.handlers[:], level = saved
    root.setLevel(level)
    structlog.reset_defaults()


async def test_card_data_stays_sealed_everywhere(
    kernel: Kernel, redis_url: str, namespace: str, log_stream: io.StringIO
) -> None:
    tenant = "tenant-a"
    card = json.dumps({"pan": PAN, "expiry": EXPIRY, "cvv": CVV}).encode()
    ref = await kernel.vault.put(tenant, card)

    # Keys typed on a phone cross the bus sealed, via the outbox, into a handler.
    received: list[Message] = []

    async def on_keys(message: Message) -> None:
        received.append(message)

    kernel.bus.subscribe(KeysTyped.topic, "capture", on_keys)
    await kernel.bus.start()
    sealed = kernel.vault.seal(tenant, PAN.encode(), b"keys")
    async with kernel.db.transaction() as session:
        await add_to_outbox(
            session,
            KeysTyped(
                tenant_id=tenant, correlation_id=ref, sealed=base64.b64encode(sealed).decode()
            ),
        )
    kernel.relay.notify()
    await eventually(lambda: bool(received))
    assert isinstance(received[0], KeysTyped)
    opened = kernel.vault.unseal(tenant, base64.b64decode(received[0].sealed), b"keys")
    assert opened.decode() == PAN

    # Careless logging is caught by the second wall.
    log = structlog.get_logger("careless")
    log.info(
        f"customer typed {PAN}",
        pan=Pan(PAN),
        cvv=SensitiveStr(CVV),
        spaced="4111 1111 1111 1111",
        as_int=int(PAN),
    )
    logging.getLogger("stdlib").warning("card %s", PAN)
    try:
        raise ValueError(f"PSP rejected {PAN}")
    except ValueError:
        log.exception("psp_call_failed")

    # While the card waits in the vault, nothing holds it in clear.
    redis_bytes = await redis_raw_dump(redis_url, namespace)
    database_text = await database_dump(kernel.db.engine)
    logs = log_stream.getvalue()
    assert logs.count("\n") >= 3
    for where, content in (("redis", redis_bytes), ("database", database_text), ("logs", logs)):
        assert card_numbers_in(content) == [], f"card number in clear in {where}"
        raw = content if isinstance(content, bytes) else content.encode()
        assert PAN.encode() not in raw, where
        assert f'"cvv": "{CVV}"'.encode() not in raw, where
        assert f'"expiry": "{EXPIRY}"'.encode() not in raw, where
    assert "***" in logs
    assert "411111******1111" in logs

    # Taking the card out is a one-time act; afterwards Redis holds nothing of it.
    assert json.loads(await kernel.vault.take(tenant, ref)) == {
        "pan": PAN,
        "expiry": EXPIRY,
        "cvv": CVV,
    }
    assert f":vault:{tenant}:{ref}".encode() not in await redis_raw_dump(redis_url, namespace)
