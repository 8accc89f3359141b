"""`transact audit scan` finds card data in clear wherever it hides, and passes clean stores."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from tests.integration.test_cli import transact
from transact.kernel.db import Database

PAN = "4111111111111111"
SPACED = "5555 5555 5555 4444"


async def migrated(url: str) -> Database:
    db = Database(url)
    await db.migrate()
    return db


async def plant(db: Database, value: str) -> None:
    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO kernel_inbox (message_id, consumer, processed_at) VALUES (:m, :h, :t)"
            ),
            {"m": "msg-1", "h": value, "t": datetime(2026, 11, 27, tzinfo=UTC)},
        )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    asyncio.run(_close(migrated(f"sqlite+aiosqlite:///{tmp_path}/transact.db")))
    return tmp_path


async def _close(made: object) -> None:
    db = await made  # type: ignore[misc]
    await db.close()


def test_a_clean_store_passes(data_dir: Path) -> None:
    result = transact("audit", "scan", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 finding(s) in 1 source(s)" in result.stderr


def test_a_card_number_in_a_table_or_a_log_is_found_and_shown_masked(
    data_dir: Path, tmp_path: Path
) -> None:
    async def go() -> None:
        db = Database(f"sqlite+aiosqlite:///{data_dir}/transact.db")
        await plant(db, f"note: card {SPACED}")
        await db.close()

    asyncio.run(go())
    log = tmp_path / "app.log"
    log.write_text(f'{{"event": "x", "pan": "{PAN}", "cvv": "737"}}\n')
    result = transact(
        "audit", "scan", "--data-dir", str(data_dir), "--logs", str(log), "--security-code", "737"
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any("555555******4444" in ln and "kernel_inbox.consumer" in ln for ln in lines)
    assert any("411111******1111" in ln and "app.log:1" in ln for ln in lines)
    assert any(ln.startswith("security_code") for ln in lines)
    assert PAN not in result.stdout + result.stderr
    assert "5555 5555 5555 4444" not in result.stdout


def test_ids_and_timestamps_are_not_mistaken_for_cards(tmp_path: Path) -> None:
    log = tmp_path / "ids.log"
    log.write_text("id=a4111111111111111b at 2026-11-27T05:00:00 ref=ten_4111111111111111\n")
    result = transact("audit", "scan", "--logs", str(log), "--security-code", "737")
    assert result.returncode == 0, result.stdout


def test_nothing_to_scan_or_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    assert transact("audit", "scan").returncode == 2
    missing = transact("audit", "scan", "--logs", str(tmp_path / "nope.log"))
    assert missing.returncode == 2
    assert "no such file" in missing.stderr


@pytest.mark.redis
def test_redis_values_of_every_type_are_read(redis_url: str) -> None:
    async def go() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await client.flushdb()
        await client.xadd("scan:stream", {"data": f"card {PAN}"})
        await client.hset("scan:hash", "f", "fine")
        await client.aclose()

    asyncio.run(go())
    result = transact("audit", "scan", "--redis", redis_url)
    assert result.returncode == 1
    assert "redis:scan:stream" in result.stdout
    assert "scan:hash" not in result.stdout


async def test_every_postgresql_table_is_read(postgres_url: str) -> None:
    db = await migrated(postgres_url)
    await plant(db, f"card {PAN}")
    await db.close()
    plain = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    result = await asyncio.to_thread(transact, "audit", "scan", "--pg", plain)
    assert result.returncode == 1
    assert "postgresql:kernel_inbox.consumer" in result.stdout
