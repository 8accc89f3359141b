"""PostgreSQL: a transaction's repeated plain statements go straight to asyncpg.

Through SQLAlchemy, every statement costs a greenlet switch, an execution context, a
cursor and a result: about 90 microseconds of CPU on top of asyncpg's own 30 (measured
on this project's machine). The stores mostly run the same prebuilt statements over
and over: INSERTs and UPDATEs whose only answer they read is a row count, and SELECTs
of plain columns. So `PgSession` compiles such a statement once per set of parameter
names, with the engine's dialect, and runs it on the transaction's asyncpg connection
itself. The SQL text, bind processors, Python-side column defaults and the lazily
started transaction are exactly SQLAlchemy's; rows come back as SQLAlchemy rows (by
name or position, `first()`, `scalar()`, `all()`...), and errors as SQLAlchemy's
error classes (an IntegrityError stays one).

Anything else (RETURNING, executemany, columns SQLAlchemy converts as it reads them,
statements built afresh per call, and a statement's first run) goes through
SQLAlchemy as before. The adapter attributes used here (`_execute_mutex`,
`_transaction`, `_start_transaction`, `_handle_exception`) are SQLAlchemy 2.1's,
pinned in pyproject.toml; every PostgreSQL test runs through them.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, TextClause, exc, util
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Delete, Insert, Update, UpdateBase

from transact.kernel.db.core_session import CoreSession

_ROWCOUNT = re.compile(r"(?:UPDATE|DELETE|INSERT \d+) (\d+)")

# Statements seen once, weakly: a statement object built for one call dies with it and
# is never planned; a prebuilt one is planned at its second run.
_seen: weakref.WeakKeyDictionary[Any, dict[tuple[str, ...], Any]] = weakref.WeakKeyDictionary()
_PLANNED = (Insert, Update, Delete, Select, TextClause)


@dataclass(frozen=True)
class Plan:
    """One compiled statement: its SQL and how to turn the caller's values into arguments."""

    sql: str
    positions: tuple[str, ...]
    processors: dict[str, Any]
    defaults: tuple[tuple[str, Any], ...]  # (parameter, column default) filled per run
    compiled: Any
    reads: bool  # rows come back (a SELECT); else only a row count
    columns: tuple[str, ...] = ()  # a SELECT's result keys; a text's come with its rows

    def arguments(self, params: dict[str, Any]) -> list[Any]:
        values = self.compiled.construct_params(params, escape_names=False)
        for key, default in self.defaults:
            values[key] = default.arg(None) if default.is_callable else default.arg
        processors = self.processors
        return [
            processors[key](values[key]) if key in processors else values[key]
            for key in self.positions
        ]


@dataclass(frozen=True)
class Written:
    """What a plain write returns: how many rows it touched, as a cursor result says."""

    rowcount: int


def plan_for(dialect: Dialect, statement: Any, params: Any) -> Plan | None:
    """The plan for a statement run before with the same parameter names, else None."""
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        return None  # executemany
    if not isinstance(statement, _PLANNED):
        return None
    # The compiled SQL may differ with the server's version; nothing else of the
    # dialect varies between asyncpg engines.
    keys = (str(dialect.server_version_info), *sorted(params))
    try:
        plans = _seen[statement]
    except KeyError:
        _seen[statement] = {keys: None}
        return None
    if keys not in plans:
        plans[keys] = None  # first run with these names: SQLAlchemy's path
        return None
    plan = plans[keys]
    if plan is None:
        plan = plans[keys] = _compile(dialect, statement, keys[1:])
    return plan or None


def _compile(dialect: Dialect, statement: Any, keys: tuple[str, ...]) -> Any:
    """A Plan, or False where the statement needs more than this module does."""
    writes = isinstance(statement, UpdateBase)
    if writes and (statement._returning or getattr(statement, "_multi_values", ())):
        return False
    if isinstance(statement, Insert):
        # Without this, PostgreSQL INSERTs return the new primary key, which no
        # store reads (`inserted_primary_key` is used nowhere).
        statement = statement.inline()
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys) if writes else None)
    if (
        not compiled.positional
        or compiled.literal_execute_params
        or compiled.post_compile_params
        or compiled.schema_translate_map
        or (writes and compiled.effective_returning)
        or any(_reads_with_processor(dialect, entry.type) for entry in compiled._result_columns)
    ):
        return False
    defaults = []
    if compiled.insert_prefetch or compiled.update_prefetch:
        key_of = compiled._within_exec_param_key_getter
        defaults += [(key_of(c), c.default) for c in compiled.insert_prefetch]
        defaults += [(key_of(c), c.onupdate) for c in compiled.update_prefetch]
    if any(not (d.is_scalar or d.is_callable) for _, d in defaults):
        return False
    return Plan(
        sql=compiled.string,
        positions=tuple(compiled.positiontup),
        processors=dict(compiled._bind_processors),
        defaults=tuple(defaults),
        compiled=compiled,
        reads=not writes,
        columns=tuple(entry.keyname for entry in compiled._result_columns),
    )


def _reads_with_processor(dialect: Dialect, type_: Any) -> bool:
    """Whether SQLAlchemy converts this column's values as they are read: asyncpg hands
    back the Python values of the types the stores use as they are, so none of ours do."""
    return type_._cached_result_processor(dialect, None) is not None


def _rows(plan: Plan, records: list[Any]) -> IteratorResult[Any]:
    columns = plan.columns or (tuple(records[0].keys()) if records else ())
    return IteratorResult(SimpleResultMetaData(columns), iter(records))


def adapter_of(connection: AsyncConnection) -> Any:
    """SQLAlchemy's asyncpg adapter under a connection that is checked out and valid."""
    return connection.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]


def is_open(connection: AsyncConnection) -> bool:
    """Whether the connection can run a transaction, asked without a round trip: asyncpg
    has already seen a socket the server closed."""
    if connection.closed or connection.invalidated:
        return False
    return not adapter_of(connection).driver_connection.is_closed()


class PgSession(CoreSession):
    """A transaction's statements on PostgreSQL: repeated plain ones run directly."""

    _adapted: Any = None

    async def execute(
        self,
        statement: Any,
        params: Any = None,
        *,
        execution_options: Any = util.EMPTY_DICT,
        bind_arguments: Any = None,
        **kw: Any,
    ) -> Any:
        # Options, and statement logging (echo), are SQLAlchemy's to honour.
        usual = execution_options or self.core.sync_engine.echo
        plan = None if usual else plan_for(self.core.dialect, statement, params)
        if plan is None:
            return await super().execute(
                statement, params, execution_options=execution_options, **kw
            )
        return await self._run(plan, plan.arguments(params or {}))

    async def _run(self, plan: Plan, arguments: list[Any]) -> Any:
        if self._adapted is None:
            self._adapted = adapter_of(self.core)
        adapted = self._adapted
        async with adapted._execute_mutex:
            # SQLAlchemy begins on PostgreSQL at the first statement; so must we.
            if adapted._transaction is None:
                await adapted._start_transaction()
            try:
                if plan.reads:
                    return _rows(plan, await adapted.driver_connection.fetch(plan.sql, *arguments))
                status = await adapted.driver_connection.execute(plan.sql, *arguments)
            except Exception as error:  # translated below, as SQLAlchemy does
                raise await self._translated(error, plan, arguments) from error
        found = _ROWCOUNT.match(status or "")
        return Written(int(found.group(1)) if found else -1)

    async def _translated(
        self, error: Exception, plan: Plan, arguments: list[Any]
    ) -> exc.DBAPIError:
        """The SQLAlchemy error the same failure raises on the usual path."""
        dialect = self.core.dialect
        try:
            self._adapted._handle_exception(error)
        except Exception as dbapi_error:
            invalidated = dialect.is_disconnect(dbapi_error, self._adapted, None)  # type: ignore[arg-type]
            if invalidated:
                await self.core.invalidate(dbapi_error)
            return exc.DBAPIError.instance(  # type: ignore[return-value]
                plan.sql,
                arguments,
                dbapi_error,
                dialect.loaded_dbapi.Error,
                connection_invalidated=invalidated,
                dialect=dialect,
            )
        raise AssertionError("_handle_exception always raises")
