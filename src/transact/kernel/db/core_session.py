"""The session a transaction hands to the stores: Core statements on one connection.

Transact maps no classes; every store speaks SQLAlchemy Core (tables, `select`,
`insert`, `text`). An ORM `AsyncSession` would add an identity map, flush checks
and a state machine around every statement and every transaction for nothing, so
`Database.transaction` opens a connection, begins on it, and hands out this
session, which sends statements straight to that connection. It keeps the
`AsyncSession` methods the stores use (`execute`, `scalar`, `stream`,
`begin_nested`, `in_nested_transaction`, `info`, `get_bind`) and their meaning.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import util
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


class CoreSession(AsyncSession):
    """Statements of one transaction, on its connection (`Database.transaction`)."""

    def __init__(self, connection: AsyncConnection) -> None:
        super().__init__(bind=connection, expire_on_commit=False)
        self.core = connection

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

    def in_nested_transaction(self) -> bool:
        return self.core.in_nested_transaction()

    def begin_nested(self) -> Any:
        """A SAVEPOINT for `async with`: released at the end, rolled back to on error."""
        return self.core.begin_nested()
