"""Engine, sessions, readiness and migrations."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Row, Select, Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    create_async_engine,
)

from transact.kernel.db import pg_direct, sqlite_inline
from transact.kernel.db.pg_direct import PgSession
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

# Seconds a transaction waits for this process's SQLite write turn before going on
# without it (see `Database._writing`).
WRITE_TURN_WAIT = 10.0

# Where `add_to_outbox` leaves a transaction's messages for the commit hook (`session.info`).
COMMITTED_MESSAGES = "transact.outbox.messages"

# Any fixed 64-bit number: serializes `transact migrate` run by several processes at once.
_MIGRATION_LOCK = 0x7472616E73616374

# A pooled PostgreSQL connection unused for this many seconds is pinged before it is
# handed out (see `_live_check`).
PING_IF_IDLE_FOR = 2.0

# Connections a process keeps checked out between its transactions (see
# `Database._kept_connection`); on SQLite only the write turn's holder uses one.
KEEP_CONNECTIONS = 4
_RETURNED_AT = "transact.returned_at"
_KEPT_SINCE = "transact.kept_since"


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    # Let SQLAlchemy, not the driver, open transactions (see the dialect's do_begin).
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit survives
    # the process being killed; only an OS crash or power loss can lose the last ones.
    cursor.execute("PRAGMA synchronous=NORMAL")
    # No busy handler: its sleeps would block the event loop this driver runs on; a
    # locked database is waited for asynchronously instead (see sqlite_inline).
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.close()


def _note_return(_: Any, record: Any) -> None:
    # A connection kept between transactions has been unused since it was kept.
    record.info[_RETURNED_AT] = record.info.pop(_KEPT_SINCE, None) or time.monotonic()


def _live_check(dialect: Dialect) -> Callable[[Any, Any, Any], None]:
    """The pool's check-out hook: refuse a dead connection, without a round trip each time.

    SQLAlchemy's pre-ping costs three (BEGIN, a ping, ROLLBACK) at every check-out.
    A server that stopped or ended the backend closed the socket, which asyncpg has
    already seen: that costs nothing to ask. Only a connection that sat unused for a
    while, where a silent network failure could hide, is pinged. Raising
    DisconnectionError makes the pool reconnect and try again.
    """

    def hand_out_live(dbapi_conn: Any, record: Any, _: Any) -> None:
        if dbapi_conn.driver_connection.is_closed():
            raise DisconnectionError("the database server closed this connection")
        returned = record.info.get(_RETURNED_AT)
        if returned is not None and time.monotonic() - returned >= PING_IF_IDLE_FOR:
            try:
                dialect.do_ping(dbapi_conn)
            except Exception as exc:
                raise DisconnectionError(f"a pooled connection failed its ping: {exc}") from exc

    return hand_out_live


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
        if self.dialect == "sqlite":
            # The URL names aiosqlite, the async driver users know; SQLite is run
            # inline on the event loop instead, which is several times faster.
            parsed = parsed.set(drivername=f"sqlite+{sqlite_inline.DRIVER}")
        options: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite" and parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        if self.dialect == "postgresql":
            options.update(pool_size=10, max_overflow=10)
        self.engine: AsyncEngine = create_async_engine(parsed, **options)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:  # a pooled network connection is checked as it is handed out
            event.listen(self.engine.sync_engine, "checkin", _note_return)
            event.listen(self.engine.sync_engine, "checkout", _live_check(self.engine.dialect))
        self._writer: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._writer_task: asyncio.Task[Any] | None = None
        # Connections between transactions, newest last, with when each was put back:
        # (loop, [(connection, monotonic time)]).
        self._kept: tuple[asyncio.AbstractEventLoop, list[tuple[AsyncConnection, float]]] | None = (
            None
        )
        # Told, after each commit, the outbox messages that transaction added (the
        # running relay publishes them at once; see `OutboxRelay`).
        self.after_commit: Callable[[list[Any]], None] | None = None

    def _write_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer[0] is not loop:
            self._writer = (loop, asyncio.Lock())
        return self._writer[1]

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[bool]:
        """Hold this process's SQLite write turn, if it can be had; yields whether it is.

        A transaction opened inside another in the same task, or a turn not had
        within WRITE_TURN_WAIT, goes on without it and meets SQLite's own lock
        instead, as it would without this queue: never a deadlock.
        """
        task = asyncio.current_task()
        if task is not None and task is self._writer_task:
            yield False
            return
        lock = self._write_lock()
        acquired = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WRITE_TURN_WAIT):
                acquired = await lock.acquire()
        if not acquired:
            yield False
            return
        self._writer_task = task
        try:
            yield True
        finally:
            self._writer_task = None
            lock.release()

    def _kept_list(self) -> list[tuple[AsyncConnection, float]]:
        loop = asyncio.get_running_loop()
        if self._kept is None or self._kept[0] is not loop:
            self._kept = (loop, [])
        return self._kept[1]

    def _is_open(self, connection: AsyncConnection) -> bool:
        if self.dialect == "postgresql":
            return pg_direct.is_open(connection)
        return not (connection.closed or connection.invalidated)

    async def _kept_connection(self) -> AsyncConnection:
        """A connection kept from an earlier transaction, else one from the pool.

        Checking a connection out of the pool and back in (with its reset) cost about
        135 microseconds of CPU per transaction on PostgreSQL, more than the statements
        of a short one. A kept connection is checked as the pool's check-out hook would:
        one that was closed, or a PostgreSQL one unused for PING_IF_IDLE_FOR, goes back
        to the pool instead, and the pool hands out a checked one.
        """
        kept = self._kept_list()
        while kept:
            connection, since = kept.pop()
            if self._is_open(connection):
                if self.dialect == "sqlite" or time.monotonic() - since < PING_IF_IDLE_FOR:
                    return connection
                connection.info[_KEPT_SINCE] = since  # so the pool pings it
            await _close_quietly(connection)
        return await self.engine.connect()

    async def _keep(self, connection: AsyncConnection) -> None:
        """After its transaction ended: keep the connection for the next, or let it go."""
        kept = self._kept_list()
        reusable = not connection.in_transaction() and self._is_open(connection)
        if reusable and len(kept) < KEEP_CONNECTIONS:
            kept.append((connection, time.monotonic()))
        else:
            await _close_quietly(connection)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error.

        Its statements go straight to the transaction's connection (`CoreSession`).
        On SQLite every transaction takes the database's one write lock at BEGIN
        (see `sqlite_inline`); transactions of this process queue for it here, in
        order, and its statements run inline (`InlineSession`). Another process
        holding the lock is waited for asynchronously.
        """
        async with AsyncExitStack() as stack:
            has_turn = self.dialect == "sqlite" and await stack.enter_async_context(self._writing())
            # On SQLite the BEGIN IMMEDIATE goes through the greenlet (the lock may have
            # to be waited for); the statements then run inline. Only the write turn's
            # holder, one transaction at a time, reuses a kept SQLite connection.
            if has_turn or self.dialect == "postgresql":
                connection = await self._kept_connection()
                stack.push_async_callback(self._keep, connection)
            else:
                connection = await stack.enter_async_context(self.engine.connect())
            await stack.enter_async_context(connection.begin())
            session = (
                sqlite_inline.InlineSession(connection)
                if self.dialect == "sqlite"
                else PgSession(connection)
            )
            yield session
        # Reached only when the transaction committed.
        committed = session.info.pop(COMMITTED_MESSAGES, None)
        if committed and self.after_commit is not None:
            self.after_commit(committed)

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
        if self._kept is not None:
            owner, kept = self._kept
            self._kept = None
            if owner is asyncio.get_running_loop():
                for connection, _ in kept:
                    await _close_quietly(connection)
        await self.engine.dispose()


async def _close_quietly(connection: AsyncConnection) -> None:
    """Back to the pool; a connection that fails even that is dropped."""
    with contextlib.suppress(Exception):
        await connection.close()


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def upsert_insert(session: AsyncSession, table: Table) -> Any:
    """An INSERT into `table` in the session's own dialect, the one whose statement has
    `on_conflict_do_nothing` / `on_conflict_do_update` (PostgreSQL and SQLite alike)."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def first_row(
    session: AsyncSession, query: Select[Any], *, lock: bool = False
) -> Row[Any] | None:
    """The query's first row, locked for the transaction (`FOR UPDATE`) when asked;
    SQLite ignores the lock, its one writer at a time already serializes."""
    if lock:
        query = query.with_for_update()
    found: Row[Any] | None = (await session.execute(query)).first()
    return found
