"""Call transcripts are kept for `TRANSACT_TRANSCRIPT_RETENTION_DAYS` only: older calls'
transcripts (and their rows) are deleted, newer ones stay."""

from __future__ import annotations

import base64
import os
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from transact.contracts import utcnow
from transact.kernel import Kernel
from transact.kernel.settings import load_settings
from transact.voice import store
from transact.voice.transcription import CallTranscription


async def test_transcripts_older_than_the_retention_period_are_deleted(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        master_key=base64.b64encode(os.urandom(32)).decode(),
        transcript_retention_days=30,
    )
    kernel = Kernel.from_settings(settings)
    await kernel.db.migrate()
    try:
        async with kernel.db.transaction() as session:
            for call_id, age_days in (("CA-old", 31), ("CA-new", 29)):
                await store.note_call(session, "t1", call_id, transcribed=True)
                await store.add_utterance(session, "t1", call_id, "Hello.")
                await store.add_utterance(session, "t1", call_id, "My card is [card number].")
                await session.execute(
                    update(store.calls)
                    .where(store.calls.c.call_id == call_id)
                    .values(started_at=utcnow() - timedelta(days=age_days))
                )
        transcription = CallTranscription(kernel, available=True)

        assert await transcription.forget_old() == 1
        assert await transcription.forget_old() == 0  # nothing more to do
        async with kernel.db.transaction() as session:
            assert await store.utterances(session, "t1", "CA-old") == []
            assert await store.call(session, "t1", "CA-old") is None
            kept = await store.utterances(session, "t1", "CA-new")
            assert [u.text for u in kept] == ["Hello.", "My card is [card number]."]
    finally:
        await kernel.db.close()
