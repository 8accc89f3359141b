"""One-time link codes: the Agent UI shows six digits, the agent keys them on their own
phone, telephony reports them on the call's agent leg, and that call is theirs.

Codes live in the cache (Redis when distributed), so any instance can redeem a code
another issued. Only a keyed digest of a code is ever stored: six digits hashed
without a secret would be read back by trying a million candidates.
"""

from __future__ import annotations

import secrets
from typing import Final

from transact.correlation import domain
from transact.kernel.cache import Cache
from transact.kernel.errors import ApiError
from transact.kernel.vault import Vault

CODE_TTL: Final = 120.0  # seconds: long enough to dial in and key it, short enough to guess
MAX_FAILURES: Final = 5  # wrong codes per call before that call's codes are ignored
FAILURE_WINDOW: Final = 600.0
_DRAWS: Final = 20  # tries for a code no other pending code of the tenant uses
PREFIX: Final = "correlation"


class LinkCodes:
    def __init__(self, cache: Cache, vault: Vault) -> None:
        self._cache = cache
        self._vault = vault

    def _code_key(self, tenant_id: str, code: str) -> str:
        return f"{PREFIX}:code:{tenant_id}:{self._vault.digest(tenant_id, 'link-code', code)}"

    @staticmethod
    def _agent_key(tenant_id: str, agent_id: str) -> str:
        return f"{PREFIX}:agent-code:{tenant_id}:{agent_id}"

    @staticmethod
    def _failures_key(tenant_id: str, call_id: str) -> str:
        return f"{PREFIX}:code-failures:{tenant_id}:{call_id}"

    async def issue(self, tenant_id: str, agent_id: str) -> str:
        """A fresh code for the agent; their previous pending code stops working, so an
        agent never has more than one code a guesser could hit."""
        for _ in range(_DRAWS):
            code = domain.format_code(secrets.randbelow(10**domain.CODE_DIGITS))
            key = self._code_key(tenant_id, code)
            if await self._cache.set_if_absent(key, agent_id.encode(), CODE_TTL):
                break
        else:
            raise ApiError(503, "codes_unavailable", "no link code is free just now; try again")
        previous = await self._cache.get(self._agent_key(tenant_id, agent_id))
        if previous is not None and previous.decode() != key:
            await self._cache.delete(previous.decode())
        await self._cache.set(self._agent_key(tenant_id, agent_id), key.encode(), CODE_TTL)
        return code

    async def redeem(self, tenant_id: str, code: str) -> str | None:
        """The agent a pending code belongs to, consuming it; None for a wrong or used code."""
        raw = await self._cache.take(self._code_key(tenant_id, code))
        return raw.decode() if raw is not None else None

    async def failures(self, tenant_id: str, call_id: str) -> int:
        raw = await self._cache.get(self._failures_key(tenant_id, call_id))
        return int(raw) if raw else 0

    async def count_failure(self, tenant_id: str, call_id: str) -> int:
        return await self._cache.incr(self._failures_key(tenant_id, call_id), FAILURE_WINDOW)
