"""A tenant's call transcription: the setting, which calls are transcribed, and their
redacted transcripts.

With `transcribe_calls` on, voice asks telephony (`voice.transcribe`) at `call.started`
for the customer's audio outside secure mode (`voice.audio`, mode `free`). Each final
utterance is redacted (`domain.free_transcript`: card numbers, expiry- and code-like runs
become labels) before anything else sees it; only the redacted text is stored and
published (`voice.transcript`, source `call`). Audio is never stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Final

from transact.contracts import utcnow
from transact.contracts.voice import VoiceTranscribe, VoiceTranscript
from transact.kernel import Kernel, audit
from transact.kernel.db import add_to_outbox
from transact.kernel.errors import ApiError
from transact.kernel.security import Principal
from transact.voice import domain, store

# Every call start, assignment and end asks for the tenant's setting: it is cached (shared,
# so every process sees a change at once) instead of costing each a database transaction.
SETTING_TTL_S: Final = 60.0


def _setting_key(tenant_id: str) -> str:
    return f"voice:transcribe_calls:{tenant_id}"


def no_transcript() -> ApiError:
    # One answer for "no such call", "not transcribed" and "not yours": nothing to probe.
    return ApiError(404, "not_found", "no transcript for this call")


class CallTranscription:
    def __init__(self, kernel: Kernel, *, available: Callable[[str], Awaitable[bool]]) -> None:
        self.kernel = kernel
        self.available = available  # whether a recognizer hears the tenant's callers

    # --- the tenant's setting ----------------------------------------------------------

    async def transcribes_calls(self, tenant_id: str) -> bool:
        cached = await self.kernel.cache.get(_setting_key(tenant_id))
        if cached is not None:
            return cached == b"1"
        async with self.kernel.db.transaction() as session:
            on = await store.transcribes_calls(session, tenant_id)
        await self._remember(tenant_id, on)
        return on

    async def _remember(self, tenant_id: str, on: bool) -> None:
        await self.kernel.cache.set(_setting_key(tenant_id), b"1" if on else b"0", SETTING_TTL_S)

    async def set_transcribe_calls(self, principal: Principal, on: bool) -> bool:
        async with self.kernel.db.transaction() as session:
            await store.set_transcribe_calls(session, principal.tenant_id, on)
            await audit.append(
                session,
                action="voice.settings_changed",
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                target=principal.tenant_id,
                details={"transcribe_calls": on},
            )
        await self._remember(principal.tenant_id, on)
        return on

    # --- calls -------------------------------------------------------------------------

    async def call_started(self, tenant_id: str, call_id: str) -> bool:
        """Ask telephony for the call's audio when the tenant transcribes calls; whether it
        did. Idempotent: a repeated `call.started` repeats a command telephony ignores."""
        if not await self.available(tenant_id):
            return False  # no recognizer for the tenant: no audio is asked for
        if not await self.transcribes_calls(tenant_id):
            return False
        async with self.kernel.db.transaction() as session:
            await store.note_call(session, tenant_id, call_id, transcribed=True)
            await add_to_outbox(
                session,
                VoiceTranscribe(
                    tenant_id=tenant_id, call_id=call_id, on=True, correlation_id=call_id
                ),
            )
        return True

    async def call_assigned(self, tenant_id: str, call_id: str, agent_id: str) -> None:
        """Who may read the call's transcript (a transfer changes it). Kept while the
        tenant transcribes calls (an assignment may overtake `call.started`: the row is
        made here then); after it turns transcription off, supervisors still read."""
        if not await self.transcribes_calls(tenant_id):
            return
        async with self.kernel.db.transaction() as session:
            await store.note_call(session, tenant_id, call_id, agent_id=agent_id)

    async def call_ended(self, tenant_id: str, call_id: str) -> None:
        if not await self.transcribes_calls(tenant_id):
            return  # such a tenant's calls have no rows
        async with self.kernel.db.transaction() as session:
            await store.forget_untranscribed(session, tenant_id, call_id)

    async def forget_old(self) -> int:
        """Delete the transcripts of calls older than the retention period
        (`TRANSACT_TRANSCRIPT_RETENTION_DAYS`); how many calls' transcripts went."""
        days = self.kernel.settings.transcript_retention_days
        async with self.kernel.db.transaction() as session:
            return await store.forget_older_than(session, utcnow() - timedelta(days=days))

    async def transcribed(self, tenant_id: str, call_id: str) -> bool:
        """Whether free audio of this call may be heard: voice asked for it."""
        async with self.kernel.db.transaction() as session:
            found = await store.call(session, tenant_id, call_id)
        return found is not None and found.transcribed

    # --- what was said -----------------------------------------------------------------

    async def heard(
        self, tenant_id: str, call_id: str, text: str, carried: int = 0
    ) -> tuple[str | None, int]:
        """Store and publish one final utterance, redacted first (`carried`: the digits the
        call's last utterances ended with). The text stored (None when nothing was said)
        and the digits this utterance ends with, for the next one."""
        redacted, trailing = domain.call_transcript(text, carried)
        if not redacted:
            return None, trailing
        async with self.kernel.db.transaction() as session:
            utterance = await store.add_utterance(session, tenant_id, call_id, redacted)
            await add_to_outbox(
                session,
                VoiceTranscript(
                    tenant_id=tenant_id,
                    call_id=call_id,
                    text=redacted,
                    final=True,
                    source="call",
                    seq=utterance.seq,
                    correlation_id=call_id,
                ),
            )
        return redacted, trailing

    async def transcript(self, principal: Principal, call_id: str) -> list[store.Utterance]:
        """The call's redacted transcript, for the agent holding the call or a supervisor
        of its tenant (or an API client of the tenant with `calls:read`)."""
        async with self.kernel.db.transaction() as session:
            found = await store.call(session, principal.tenant_id, call_id)
            if found is None or not found.transcribed or not self._may_read(principal, found):
                raise no_transcript()
            return await store.utterances(session, principal.tenant_id, call_id)

    @staticmethod
    def _may_read(principal: Principal, call: store.CallRow) -> bool:
        if principal.kind == "client" or principal.supervises:
            return True
        return call.agent_id is not None and call.agent_id == principal.id
