"""Saying numbers and amounts, the shipped recordings, tenants' uploads, composing prompts,
re-rendering with espeak-ng, and the merchant lookup's rules."""

from __future__ import annotations

import io
import json
import shutil
import wave

import numpy as np
import pytest

from transact.contracts.calls import audio_clip_digest, audio_clip_key
from transact.ivr import prompts, render, speech
from transact.ivr.domain import AccountFound, AccountNotFound, Flow, LookupFailed
from transact.ivr.lookup import Reach, read_answer, signature, url_problem
from transact.ivr.phrases import PAUSE, PAUSE_MS, TEXTS, WORD_GAP_MS
from transact.kernel.audio import AudioFormatError, ulaw_decode
from transact.kernel.cache.memory import MemoryCache
from transact.telephony.dtmf import detect_keys

FLOW = Flow(name="bills", amount=1250, reference="INV-1")


def wav(samples: np.ndarray, rate: int = 8000, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(samples, channels).astype("<i2").tobytes())
    return out.getvalue()


def tone(seconds: float, level: int = 8000) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return (level * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


class TestSpeech:
    @pytest.mark.parametrize(
        ("amount", "currency", "words"),
        [
            (1250, "GBP", "twelve pounds fifty"),
            (100, "GBP", "one pound"),
            (1, "GBP", "one penny"),
            (99, "GBP", "ninety nine pence"),
            (1205, "GBP", "twelve pounds and five pence"),
            (123456, "USD", "one thousand two hundred and thirty four dollars and fifty six cents"),
            (1000500, "EUR", "ten thousand and five euros"),
            (101, "EUR", "one euro and one cent"),
            (1250, "JPY", "one thousand two hundred and fifty letter_j letter_p letter_y"),
            (1205, "CHF", "twelve point zero five letter_c letter_h letter_f"),
            (2_000_017_00, "GBP", "two million and seventeen pounds"),
        ],
    )
    def test_amounts_as_a_person_says_them(self, amount: int, currency: str, words: str) -> None:
        assert " ".join(speech.amount(amount, currency)) == words

    def test_every_word_said_has_a_recording(self) -> None:
        said = set()
        for n in (*range(0, 1200), 1_000_000, 2_345_678_901):
            said |= set(speech.number(n))
        for currency in ("GBP", "USD", "EUR", "JPY", "KWD"):
            said |= set(speech.amount(123456, currency))
        assert said <= set(TEXTS)

    def test_digits_and_letters_one_by_one(self) -> None:
        assert speech.digits("4-2 0") == ["four", "two", "zero"]
        assert speech.letters("K7") == ["letter_k", "seven"]

    def test_refusals(self) -> None:
        with pytest.raises(ValueError, match="ISO 4217"):
            speech.amount(1, "ABC")
        with pytest.raises(ValueError, match="zero or more"):
            speech.number(-1)


class TestShippedRecordings:
    def test_every_phrase_is_shipped_and_none_holds_a_key_tone(self) -> None:
        assert set(prompts.standard_names("en")) == set(TEXTS)
        for name in TEXTS:
            audio = prompts.standard("en", name)
            assert audio is not None
            assert 0.15 < len(audio) / 8000 < 6, name
            assert detect_keys(ulaw_decode(audio)) == "", name  # a prompt is never a key

    def test_no_recording_for_unknown_names_or_paths(self) -> None:
        assert prompts.standard("en", "no_such_phrase") is None
        assert prompts.standard("en", "../__init__") is None
        assert prompts.standard("xx", "greeting") is None


class TestComposing:
    def test_words_get_short_gaps_and_pauses_long_ones(self) -> None:
        composed = prompts.compose(FLOW, ["amount_due", "twelve", PAUSE, "goodbye"])
        standard = [prompts.standard("en", n) for n in ("amount_due", "twelve", "goodbye")]
        gap, pause = prompts.silence(WORD_GAP_MS), prompts.silence(PAUSE_MS)
        assert composed.clips == (standard[0], gap, standard[1], pause, standard[2])
        assert composed.seconds == pytest.approx(sum(len(c) for c in composed.clips) / 8000)
        assert composed.missing == ()

    def test_a_tenants_recording_replaces_the_standard_one(self) -> None:
        mine = b"\x10" * 800
        flow = Flow.from_dict({**FLOW.to_dict(), "prompts": {"greeting": "acme_hello"}})
        assert prompts.compose(flow, ["greeting"], {"acme_hello": mine}).clips == (mine,)
        # An upload under the standard name counts too, for every flow.
        assert prompts.compose(FLOW, ["goodbye"], {"goodbye": mine}).clips == (mine,)
        # A chosen recording that is gone falls back to the standard one.
        assert prompts.compose(flow, ["greeting"], {}).clips == (
            prompts.standard("en", "greeting"),
        )
        assert prompts.recordings_wanted(flow, ["greeting", PAUSE]) == {"greeting", "acme_hello"}

    def test_phrases_without_any_recording_are_skipped_and_named(self) -> None:
        composed = prompts.compose(FLOW, ["nope", "goodbye"])
        assert composed.missing == ("nope",)
        assert composed.clips == (prompts.standard("en", "goodbye"),)

    async def test_clips_are_put_in_the_cache_under_their_hash_once(self) -> None:
        cache = MemoryCache()
        shelf = prompts.ClipShelf(cache)
        names = await shelf.names([b"abc", b"abc"])
        assert names == [audio_clip_digest(b"abc")] * 2
        assert await cache.get(audio_clip_key(names[0])) == b"abc"
        await cache.delete(audio_clip_key(names[0]))
        await shelf.names([b"abc"])  # put recently: not again
        assert await cache.get(audio_clip_key(names[0])) is None


class TestUploads:
    def test_a_good_recording_is_kept_as_mu_law(self) -> None:
        recording = prompts.accept_upload(wav(tone(1.5)))
        assert recording.seconds == 1.5
        assert len(recording.audio) == 12000
        assert np.abs(ulaw_decode(recording.audio).astype(int) - tone(1.5)).max() < 300

    @pytest.mark.parametrize(
        ("raw", "problem"),
        [
            (b"not a wav", "not a WAV file"),
            (wav(tone(1.0), rate=16000), "sample rate 16000"),
            (wav(tone(1.0), channels=2), "2 channels"),
            (wav(tone(0.05)), "shorter than"),
            (wav(tone(31.0)), "longer than 30"),
            (wav(np.zeros(8000, dtype=np.int16)), "silent"),
            (b"RIFF" + b"\0" * (600 * 1024), "larger than 512 KiB"),
        ],
    )
    def test_bad_recordings_are_refused_with_the_reason(self, raw: bytes, problem: str) -> None:
        with pytest.raises(AudioFormatError, match=problem):
            prompts.accept_upload(raw)


class TestRendering:
    def test_resampling_keeps_speech_and_drops_what_8_khz_cannot_carry(self) -> None:
        rate = 22050
        t = np.arange(rate) / rate
        low = np.sin(2 * np.pi * 1000 * t)
        high = np.sin(2 * np.pi * 6000 * t)  # would fold back to 2 kHz if not filtered
        out = render.resample(0.5 * low + 0.5 * high, rate)
        assert len(out) == 8000
        spectrum = np.abs(np.fft.rfft(out[1000:7000]))
        freqs = np.fft.rfftfreq(6000, 1 / 8000)
        at = lambda f: spectrum[np.argmin(np.abs(freqs - f))]  # noqa: E731
        assert at(1000) > 50 * at(2000)

    def test_silence_is_trimmed_to_a_short_margin(self) -> None:
        voice = np.concatenate([np.zeros(5000), np.ones(1000), np.zeros(5000)])
        trimmed = render.trim(voice, 10000)
        assert len(trimmed) == 1000 + 2 * 300

    def test_levels_are_brought_to_one_peak(self) -> None:
        audio = ulaw_decode(render.to_ulaw(np.array([0.0, 0.01, -0.02])))
        assert abs(int(np.abs(audio).max()) - render.PEAK) < 600

    @pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
    def test_a_phrase_renders_with_espeak_ng(self, tmp_path: object) -> None:
        from pathlib import Path

        folder = Path(str(tmp_path))
        written = render.render_all(folder, texts={"goodbye": "Goodbye."})
        audio = written[0].read_bytes()
        assert written == [folder / "goodbye.ulaw"]
        assert 0.3 < len(audio) / 8000 < 2


class TestLookupRules:
    @pytest.mark.parametrize(
        ("url", "problem"),
        [
            ("http://shop.example/l", "https"),
            ("https://user:pw@shop.example/l", "credentials"),
            ("https://127.0.0.1/l", "loopback"),
            ("https://10.1.2.3/l", "private"),
            ("https://169.254.169.254/latest", "link-local"),
            ("ftp://shop.example/l", "https://host"),
            ("https://shop.example/a b", "no spaces"),
        ],
    )
    def test_urls_refused_by_default(self, url: str, problem: str) -> None:
        assert problem in (url_problem(url, Reach()) or "")

    def test_private_hosts_when_allowed(self) -> None:
        assert url_problem("http://127.0.0.1:8080/l", Reach(private=True)) is None
        assert url_problem("https://shop.example/l", Reach()) is None
        assert "link-local" in (url_problem("https://169.254.1.1/", Reach(private=True)) or "")

    def test_answers(self) -> None:
        good = json.dumps({"amount": 1250, "currency": "GBP", "reference": "ACC-1"}).encode()
        assert read_answer(200, good) == AccountFound(1250, "GBP", "ACC-1")
        assert read_answer(404, b"") == AccountNotFound()
        for status, body in [
            (500, good),
            (200, b"nope"),
            (200, b"[]"),
            (200, json.dumps({"amount": -1, "currency": "GBP", "reference": "R"}).encode()),
            (200, json.dumps({"amount": 1, "currency": "GBP", "reference": ""}).encode()),
            (200, json.dumps({"amount": 1, "currency": "GBP"}).encode()),
        ]:
            assert read_answer(status, body) == LookupFailed(), (status, body)

    def test_the_signature_is_an_hmac_of_time_and_body(self) -> None:
        import hashlib
        import hmac

        expected = hmac.new(b"s3cret", b"1700000000.{}", hashlib.sha256).hexdigest()
        assert signature("s3cret", 1700000000, b"{}") == f"t=1700000000,v1={expected}"
