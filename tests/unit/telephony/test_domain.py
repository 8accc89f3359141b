"""Telephony's pure rules: wire parsing, ordering, key merging, agent codes, references."""

from __future__ import annotations

import base64
import contextlib
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transact.telephony import domain
from transact.telephony.domain import Dtmf, Ignored, Media, ProtocolError, Start, Stop


def _start(**start: object) -> str:
    body = {
        "callSid": "CA1",
        "streamSid": "MZ1",
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"tenant": "shop", "token": "t"},
        **start,
    }
    return json.dumps({"event": "start", "sequenceNumber": "1", "start": body})


class TestParse:
    def test_start_carries_call_stream_and_parameters(self) -> None:
        seq, message = domain.parse_message(_start())
        assert seq == 1
        assert message == Start("CA1", "MZ1", {"tenant": "shop", "token": "t"}, "audio/x-mulaw")

    def test_media_payload_is_decoded(self) -> None:
        payload = base64.b64encode(b"\xff" * 160).decode()
        raw = {"event": "media", "sequenceNumber": "7", "media": {"payload": payload, "chunk": "3"}}
        seq, message = domain.parse_message(json.dumps(raw))
        assert seq == 7
        assert message == Media(b"\xff" * 160, 3, None)

    def test_dtmf_stop_and_unknown_events(self) -> None:
        raw = json.dumps({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": "#"}})
        assert domain.parse_message(raw)[1] == Dtmf("#")
        assert domain.parse_message('{"event": "stop"}')[1] == Stop()
        assert domain.parse_message('{"event": "connected"}')[1] == Ignored("connected")
        assert domain.parse_message('{"event": "whatever"}')[1] == Ignored("whatever")

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            ("{not json", "not valid JSON"),
            ("[1, 2]", "no event"),
            ('{"event": 5}', "no event"),
            ('{"event": "media", "media": {"payload": "***"}}', "not base64"),
            ('{"event": "media"}', "no media object"),
            ('{"event": "dtmf", "dtmf": {"digit": "X"}}', "not a keypad key"),
            ('{"event": "stop", "sequenceNumber": "x"}', "not a number"),
            ('{"event": "start", "start": {"streamSid": "MZ"}}', "callSid"),
        ],
    )
    def test_broken_messages_say_what_is_wrong(self, raw: str, reason: str) -> None:
        with pytest.raises(ProtocolError, match=reason):
            domain.parse_message(raw)

    def test_only_8khz_mulaw_is_accepted(self) -> None:
        with pytest.raises(ProtocolError, match="x-mulaw"):
            domain.parse_message(_start(mediaFormat={"encoding": "audio/l16", "sampleRate": 16000}))

    def test_oversized_messages_are_refused(self) -> None:
        with pytest.raises(ProtocolError, match="too large"):
            domain.parse_message("x" * (domain.MAX_MESSAGE_BYTES + 1))

    @given(st.text(max_size=200))
    def test_any_text_parses_or_raises_protocol_error(self, raw: str) -> None:
        with contextlib.suppress(ProtocolError):
            domain.parse_message(raw)


class TestReorder:
    def test_in_order_messages_pass_straight_through(self) -> None:
        r = domain.Reorder(next_seq=2)
        assert [r.push(s, Ignored(str(s))) for s in (2, 3)] == [[Ignored("2")], [Ignored("3")]]

    def test_a_swapped_pair_comes_out_in_order(self) -> None:
        r = domain.Reorder(next_seq=2)
        assert r.push(3, Ignored("3")) == []
        assert r.push(2, Ignored("2")) == [Ignored("2"), Ignored("3")]

    def test_a_gap_is_skipped_once_the_window_is_full(self) -> None:
        r = domain.Reorder(window=2, next_seq=2)
        assert r.push(4, Ignored("4")) == []
        assert r.push(5, Ignored("5")) == []
        assert r.push(6, Ignored("6")) == [Ignored("4"), Ignored("5"), Ignored("6")]
        assert r.push(3, Ignored("3")) == []  # too late: dropped, not played out of place
        assert r.dropped == 1

    def test_duplicates_are_dropped_and_flush_releases_everything(self) -> None:
        r = domain.Reorder(next_seq=2)
        assert r.push(2, Ignored("2")) == [Ignored("2")]
        assert r.push(2, Ignored("again")) == []
        r.push(5, Ignored("5"))
        r.push(4, Ignored("4"))
        assert r.flush() == [Ignored("4"), Ignored("5")]

    @given(st.permutations(list(range(2, 12))))
    def test_any_shuffle_within_the_window_is_fully_restored(self, order: list[int]) -> None:
        r = domain.Reorder(window=16, next_seq=2)
        out = [m for s in order for m in r.push(s, Ignored(str(s)))] + r.flush()
        assert out == [Ignored(str(s)) for s in range(2, 12)]


class TestKeyMerger:
    def test_in_band_and_out_of_band_reports_of_one_press_count_once(self) -> None:
        m = domain.KeyMerger()
        assert m.accept("5", "inband", 1000)
        assert not m.accept("5", "outband", 1100)
        assert m.accept("5", "inband", 1400)  # a second press

    def test_either_source_may_come_first(self) -> None:
        m = domain.KeyMerger()
        assert m.accept("7", "outband", 0)
        assert not m.accept("7", "inband", 60)

    def test_repeated_keys_from_one_source_all_count(self) -> None:
        m = domain.KeyMerger()
        assert all(m.accept("1", "inband", t) for t in (0, 150, 300))

    def test_different_keys_never_merge(self) -> None:
        m = domain.KeyMerger()
        assert m.accept("1", "inband", 0)
        assert m.accept("2", "outband", 10)


class TestAgentCode:
    def test_six_digits_make_a_code(self) -> None:
        c = domain.AgentCode()
        results = [c.press(k, i * 200) for i, k in enumerate("123456")]
        assert results == [None] * 5 + ["123456"]

    def test_hash_ends_a_short_code_and_star_clears(self) -> None:
        c = domain.AgentCode()
        for i, k in enumerate("12*98"):
            c.press(k, i * 100)
        assert c.press("#", 600) == "98"

    def test_a_long_pause_starts_over(self) -> None:
        c = domain.AgentCode()
        c.press("1", 0)
        c.press("2", 100)
        assert [c.press(k, 9000 + i) for i, k in enumerate("345678")][-1] == "345678"


class TestReferencesAndNumbers:
    def test_references_are_short_and_readable(self) -> None:
        refs = {domain.new_reference() for _ in range(200)}
        assert len(refs) > 190
        assert all(re.fullmatch(r"[A-HJ-NP-Z2-9]{2}-[A-HJ-NP-Z2-9]{4}", r) for r in refs)

    def test_a_platform_reference_is_used_only_when_sane(self) -> None:
        assert domain.clean_reference(" k7-3q9 ") == "K7-3Q9"
        assert domain.clean_reference("<script>") is None
        assert domain.clean_reference(None) is None

    def test_numbers_are_normalised_and_masked(self) -> None:
        assert domain.e164("+44 (20) 7946-0958") == "+442079460958"
        assert domain.e164("02079460958") is None
        assert domain.mask_number("+442079460958") == "+44******0958"
