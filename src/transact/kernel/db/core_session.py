"""The session a transaction hands to the stores: Core statements on one connection.

Transact maps no classes; every store speaks SQLAlchemy Core (tables, `select`,
`insert`, `text`). An ORM `AsyncSession` would add an identity map, flush checks
and a state machine around every statement and every transaction for nothing, so
`Database.transaction` opens a connection, begins on it, and hands out this
session, which sends statements straight to that connection. It keeps the
`AsyncSession` methods the stores use (`execute`, `scalar`, `scalars`, `stream`,
`begin_nested`, `in_nested_transaction`, `info`, `get_bind`) and their meaning.
It is typed as an `AsyncSession` for the stores, but never builds the ORM session
behind one (about a quarter of an empty transaction's cost): nothing else of
`AsyncSession` may be used on it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import util
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncResult, AsyncSession


class CoreSession(AsyncSession):
    """Statements of one transaction, on its connection (`Database.transaction`)."""

    def __init__(self, connection: AsyncConnection) -> None:
        # AsyncSession.__init__ is skipped on purpose (see the module's docstring).
        self.core = connection
        self._info: dict[Any, Any] = {}

    @property
    def info(self) -> dict[Any, Any]:
        return self._info

    def get_bind(self, *args: Any, **kw: Any) -> Connection:
        return self.core.sync_connection  # type: ignore[return-value]

    async def execute(
        self,
        statement: Any,
        params: Any = None,
        *,
        execution_options: Any = util.EMPTY_DICT,
        bind_arguments: Any = None,
        **kw: Any,
    ) -> Any:
        return await self.core.execute(statement, params, execution_options=execution_options)

    async def scalar(
        self,
        statement: Any,
        params: Any = None,
        *,
        execution_options: Any = util.EMPTY_DICT,
        bind_arguments: Any = None,
        **kw: Any,
    ) -> Any:
        # Through `execute`, so a subclass that runs statements another way runs these too.
        result = await self.execute(statement, params, execution_options=execution_options)
        return result.scalar()

    async def scalars(
        self,
        statement: Any,
        params: Any = None,
        *,
        execution_options: Any = util.EMPTY_DICT,
        bind_arguments: Any = None,
        **kw: Any,
    ) -> Any:
        result = await self.execute(statement, params, execution_options=execution_options)
        return result.scalars()

    async def stream(
        self,
        statement: Any,
        params: Any = None,
        *,
        execution_options: Any = util.EMPTY_DICT,
        bind_arguments: Any = None,
        **kw: Any,
    ) -> AsyncResult[Any]:
        """Rows a few at a time from a server-side cursor where the driver has them;
        else (SQLite) buffered, as `AsyncSession.stream` gives them there."""
        if self.core.dialect.supports_server_side_cursors:
            streamed: AsyncResult[Any] = await self.core.stream(
                statement, params, execution_options=execution_options
            )
            return streamed
        return AsyncResult(
            await self.execute(statement, params, execution_options=execution_options)
        )

    def in_nested_transaction(self) -> bool:
        return self.core.in_nested_transaction()

    def begin_nested(self) -> Any:
        """A SAVEPOINT for `async with`: released at the end, rolled back to on error."""
        return self.core.begin_nested()
