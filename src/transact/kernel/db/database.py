"""Engine, sessions, readiness and migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from transact.kernel.errors import BackendUnavailable, ConfigError
from transact.kernel.settings import redact_url

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Any fixed 64-bit number: serializes `transact migrate` run by several processes at once.
_MIGRATION_LOCK = 0x7472616E73616374


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    # Let SQLAlchemy, not the driver, open transactions (see _sqlite_begin).
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock at BEGIN, so a read-then-write transaction (the
    # audit chain, a state machine) cannot be overtaken between its read and its write.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(
                f"TRANSACT_DATABASE_URL={redact_url(url)!r} is not a valid URL"
            ) from None
        self.dialect = parsed.get_backend_name()
        options: dict[str, Any] = {"echo": echo, "pool_pre_ping": True}
        if self.dialect == "sqlite" and parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        if self.dialect == "postgresql":
            options.update(pool_size=10, max_overflow=10)
        self.engine: AsyncEngine = create_async_engine(url, **options)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (OperationalError, DBAPIError, OSError) as exc:
            raise BackendUnavailable(
                f"cannot reach the database at {redact_url(self.url)}: {_first_line(exc)}"
            ) from None

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        from transact.kernel.db.migrations import upgrade_to_head

        await self.ping()
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            await conn.run_sync(upgrade_to_head)

    async def close(self) -> None:
        await self.engine.dispose()


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]
