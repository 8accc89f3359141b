"""SQLite for the async engine, run on the event loop's own thread.

aiosqlite hands every driver call (cursor, execute, fetch, close, commit) to a
worker thread and back: about ninety hand-offs per payment, each a queue put, a
thread wake-up and a wake-up of the loop. A SQLite statement on a local file
takes microseconds, so the hand-offs, not SQLite, were most of a payment's cost.
This dialect runs the standard `sqlite3` driver inline instead, inside
SQLAlchemy's greenlet, and never lets SQLite's busy handler block the loop:
its busy timeout is zero, and a statement that finds the database locked (by
another process, or by a transaction of this one that is waiting on I/O) is
retried after an asynchronous sleep, so the lock holder can go on meanwhile.

Retrying is safe: a statement refused with SQLITE_BUSY has done nothing, and
every transaction takes the write lock at `BEGIN IMMEDIATE` (see `do_begin`),
so inside one a statement is never refused.

For the same reason a transaction's statements need no greenlet: `InlineSession`
runs them directly, once its connection has been had (and `BEGIN IMMEDIATE`
waited for) through the usual greenlet. An ORM async session spends more on the
greenlet hand-off and bookkeeping of each statement than SQLite spends running it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import pool, util
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util.concurrency import await_, in_greenlet

from transact.kernel.db.core_session import CoreSession

DRIVER = "transact_inline"

# How long a statement keeps trying a locked database: SQLite's `busy_timeout` that
# the aiosqlite engine had.
BUSY_SECONDS = 5.0
_FIRST_PAUSE = 0.0005
_LONGEST_PAUSE = 0.02

T = TypeVar("T")


def _locked(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _pause(seconds: float) -> None:
    if in_greenlet():
        await_(asyncio.sleep(seconds))
    else:  # a sync use (Alembic's offline helpers): no loop to yield to
        time.sleep(seconds)


async def _nothing() -> None:
    return None


def _until_unlocked(step: Callable[[], T]) -> T:
    if in_greenlet():
        # SQLAlchemy's AsyncConnection checks that a statement awaited something (a
        # guard against sync drivers); this costs two greenlet switches, no loop turn.
        await_(_nothing())
    deadline = time.monotonic() + BUSY_SECONDS
    pause = _FIRST_PAUSE
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if not _locked(exc) or time.monotonic() >= deadline:
                raise
        _pause(pause)
        pause = min(pause * 2, _LONGEST_PAUSE)


class _Cursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        _until_unlocked(lambda: super(_Cursor, self).execute(sql, parameters))
        return self

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> _Cursor:
        rows = list(seq_of_parameters)  # a generator could not be replayed after a retry
        _until_unlocked(lambda: super(_Cursor, self).executemany(sql, rows))
        return self

    async def _async_soft_close(self) -> None:
        """Asked for by SQLAlchemy's async results; a sqlite3 cursor keeps its rows
        without it."""


class _Connection(sqlite3.Connection):
    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)

    def commit(self) -> None:
        _until_unlocked(super().commit)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)


class _DBAPI:
    """`sqlite3`, except that its connections are the retrying kind above."""

    def __init__(self) -> None:
        self.__dict__.update(
            {
                name: getattr(sqlite3, name)
                for name in dir(sqlite3)
                if not name.startswith("__") and name != "connect"
            }
        )

    def connect(self, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs["factory"] = _Connection
        kwargs["timeout"] = 0  # never the busy handler's blocking sleeps: see _until_unlocked
        # The pool hands connections out to whichever thread's loop asks for them.
        kwargs["check_same_thread"] = False
        connection: sqlite3.Connection = sqlite3.connect(*args, **kwargs)
        return connection


class InlineSQLiteDialect(SQLiteDialect_pysqlite):
    driver = DRIVER
    is_async = True
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return _DBAPI()

    def do_begin(self, dbapi_connection: Any) -> None:
        # IMMEDIATE takes the write lock at BEGIN, so a read-then-write transaction (the
        # audit chain, a state machine) cannot be overtaken between its read and its
        # write. Sent to the driver directly: it is the statement of every transaction.
        dbapi_connection.execute("BEGIN IMMEDIATE")

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        if cls._is_url_file_db(url):
            return pool.AsyncAdaptedQueuePool
        return pool.StaticPool


class InlineSession(CoreSession):
    """The session of a SQLite transaction: its statements run inline on the
    transaction's connection, without a greenlet each.

    `Database.transaction` makes one around a connection whose `BEGIN IMMEDIATE`
    it has already awaited. Results are buffered, as `AsyncSession` buffers them.
    """

    def __init__(self, connection: AsyncConnection) -> None:
        super().__init__(connection)
        self._held: Connection = connection.sync_connection  # type: ignore[assignment]

    @staticmethod
    def _options(execution_options: Any) -> Any:
        if execution_options:
            return util.immutabledict(execution_options).union(_BUFFERED)
        return _BUFFERED

    async def execute(
        self,
        statement: Any,
        params: Any = None,
        *,
        execution_options: Any = util.EMPTY_DICT,
        bind_arguments: Any = None,
        **kw: Any,
    ) -> Any:
        return self._held.execute(
            statement, params, execution_options=self._options(execution_options)
        )


_BUFFERED = util.immutabledict({"prebuffer_rows": True})

registry.register(f"sqlite.{DRIVER}", __name__, "InlineSQLiteDialect")
