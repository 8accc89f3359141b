"""Correlation's pure rules: the registry's folds, who may hold a call, references,
phone numbers, moments and link codes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transact.correlation import domain
from transact.correlation.domain import Call, CallState, Facts, Verdict

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
DIGEST = "a" * 64


def facts(**changes: object) -> Facts:
    base = Facts(
        reference="K7-3Q9",
        from_masked="+44******0958",
        to_masked="+44******0100",
        from_digest=DIGEST,
        to_digest="b" * 64,
        sip_call_id="sip-1@pbx",
        external_id="crm-1",
        started_at=T0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def live_call(agent_id: str | None = None) -> Call:
    call = domain.started(None, "ten_1", "CA1", facts())
    return dataclasses.replace(call, agent_id=agent_id)


# --- the registry -------------------------------------------------------------------


class TestRegistry:
    def test_a_started_call_is_live_with_everything_telephony_said(self) -> None:
        call = domain.started(None, "ten_1", "CA1", facts())
        assert call.state is CallState.LIVE
        assert call.live
        assert (call.reference, call.reference_key) == ("K7-3Q9", "K73Q9")
        assert (call.started_at, call.agent_id, call.ended_at) == (T0, None, None)

    def test_a_repeated_start_changes_nothing(self) -> None:
        call = domain.started(None, "ten_1", "CA1", facts())
        again = domain.started(call, "ten_1", "CA1", facts(reference="ZZ-999", started_at=T0))
        assert again == call

    def test_a_repeated_start_fills_gaps_but_keeps_the_holder(self) -> None:
        first = domain.started(None, "ten_1", "CA1", facts(sip_call_id=None))
        held = domain.assigned(first, "usr_a", T0)
        again = domain.started(held, "ten_1", "CA1", facts(sip_call_id="sip-9"))
        assert again.sip_call_id == "sip-9"
        assert again.agent_id == "usr_a"

    def test_an_end_before_the_start_leaves_an_ended_call_the_start_completes(self) -> None:
        tombstone = domain.ended(None, "ten_1", "CA1", T0 + timedelta(minutes=5), "hangup")
        assert tombstone.state is CallState.ENDED
        assert tombstone.started_at is None
        late = domain.started(tombstone, "ten_1", "CA1", facts())
        assert late.state is CallState.ENDED  # not resurrected
        assert (late.reference, late.started_at) == ("K7-3Q9", T0)
        assert late.ended_at == T0 + timedelta(minutes=5)

    def test_the_first_end_wins(self) -> None:
        call = domain.started(None, "ten_1", "CA1", facts())
        first = domain.ended(call, "ten_1", "CA1", T0 + timedelta(minutes=1), "hangup")
        second = domain.ended(first, "ten_1", "CA1", T0 + timedelta(minutes=9), "timeout")
        assert second == first
        assert (first.end_reason, first.ended_at) == ("hangup", T0 + timedelta(minutes=1))

    @given(
        st.lists(st.sampled_from(["started", "ended"]), min_size=1, max_size=6).filter(
            lambda events: "started" in events and "ended" in events
        )
    )
    def test_any_order_and_any_repeats_of_start_and_end_agree(self, events: list[str]) -> None:
        call: Call | None = None
        for event in events:
            if event == "started":
                call = domain.started(call, "ten_1", "CA1", facts())
            else:
                call = domain.ended(call, "ten_1", "CA1", T0 + timedelta(minutes=3), "hangup")
        assert call is not None
        expected = domain.ended(
            domain.started(None, "ten_1", "CA1", facts()),
            "ten_1",
            "CA1",
            T0 + timedelta(minutes=3),
            "hangup",
        )
        assert call == expected


class TestHolding:
    def test_a_free_call_is_claimed(self) -> None:
        assert domain.claim_verdict(live_call(), "usr_a") is Verdict.ASSIGN

    def test_claiming_your_own_call_again_is_fine(self) -> None:
        assert domain.claim_verdict(live_call("usr_a"), "usr_a") is Verdict.ALREADY_YOURS

    def test_a_claim_never_takes_a_call_from_another_agent(self) -> None:
        assert domain.claim_verdict(live_call("usr_b"), "usr_a") is Verdict.TAKEN

    def test_a_transfer_moves_a_held_call(self) -> None:
        assert domain.transfer_verdict(live_call("usr_b"), "usr_a") is Verdict.ASSIGN
        assert domain.transfer_verdict(live_call("usr_a"), "usr_a") is Verdict.ALREADY_YOURS

    def test_nobody_takes_an_ended_call(self) -> None:
        ended = domain.ended(live_call(), "ten_1", "CA1", T0, "hangup")
        assert domain.claim_verdict(ended, "usr_a") is Verdict.ENDED
        assert domain.transfer_verdict(ended, "usr_a") is Verdict.ENDED

    def test_assigned_records_holder_and_time(self) -> None:
        call = domain.assigned(live_call("usr_b"), "usr_a", T0)
        assert (call.agent_id, call.assigned_at) == ("usr_a", T0)

    def test_agents_see_their_calls_supervisors_see_the_tenant(self) -> None:
        mine, free, theirs = live_call("usr_a"), live_call(), live_call("usr_b")
        assert domain.may_see(mine, "ten_1", "usr_a", sees_all=False)
        assert not domain.may_see(free, "ten_1", "usr_a", sees_all=False)
        assert not domain.may_see(theirs, "ten_1", "usr_a", sees_all=False)
        assert domain.may_see(theirs, "ten_1", "usr_s", sees_all=True)
        assert not domain.may_see(mine, "ten_2", "usr_a", sees_all=True)

    def test_agents_find_free_calls_but_not_other_agents(self) -> None:
        assert domain.may_find(live_call(), "ten_1", "usr_a", sees_all=False)
        assert domain.may_find(live_call("usr_a"), "ten_1", "usr_a", sees_all=False)
        assert not domain.may_find(live_call("usr_b"), "ten_1", "usr_a", sees_all=False)
        assert not domain.may_find(live_call(), "ten_2", "usr_a", sees_all=True)


class TestIncomingFacts:
    def kwargs(self, **changes: object) -> dict[str, object]:
        base: dict[str, object] = {
            "reference": "K7-3Q9",
            "from_masked": "+44******0958",
            "to_masked": None,
            "from_digest": DIGEST,
            "to_digest": None,
            "sip_call_id": None,
            "external_id": None,
            "started_at": T0,
        }
        return {**base, **changes}

    def test_good_facts_pass_through(self) -> None:
        checked = domain.started_facts(**self.kwargs())  # type: ignore[arg-type]
        assert (checked.reference, checked.from_masked, checked.from_digest) == (
            "K7-3Q9",
            "+44******0958",
            DIGEST,
        )

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("reference", "R" * 33),
            ("reference", "   "),
            ("from_digest", "not-hex"),
            ("from_digest", "A" * 64),
            ("sip_call_id", "s" * 256),
            ("external_id", ""),
            ("external_id", "crm\x00-1"),
            ("reference", "K7\x00"),
            ("to_masked", "+44\x00"),
        ],
    )
    def test_a_bad_field_is_dropped_not_the_call(self, field: str, value: str) -> None:
        checked = domain.started_facts(**self.kwargs(**{field: value}))  # type: ignore[arg-type]
        assert getattr(checked, field) is None

    def test_a_clear_number_is_masked_before_it_is_kept(self) -> None:
        checked = domain.started_facts(**self.kwargs(from_masked="+442079460958"))  # type: ignore[arg-type]
        assert checked.from_masked == "+44******0958"

    def test_a_time_without_a_zone_is_read_as_utc(self) -> None:
        naive = T0.replace(tzinfo=None)
        checked = domain.started_facts(**self.kwargs(started_at=naive))  # type: ignore[arg-type]
        assert checked.started_at == T0
        assert domain.aware(T0) is T0

    def test_ids_must_fit(self) -> None:
        assert domain.acceptable_ids("ten_1", "CA1")
        assert not domain.acceptable_ids("ten_1", "C" * 129)
        assert not domain.acceptable_ids("t" * 65, "CA1")
        assert not domain.acceptable_ids("ten_1", "")
        assert not domain.acceptable_ids("ten_1", "CA\x001")
        assert not domain.acceptable_ids("ten\n1", "CA1")

    @pytest.mark.parametrize(
        ("hint", "usable"),
        [("alice", "alice"), (" alice ", "alice"), ("", None), (None, None), ("a" * 65, None)],
    )
    def test_agent_hints(self, hint: str | None, usable: str | None) -> None:
        assert domain.usable_hint(hint) == usable


# --- references ---------------------------------------------------------------------


class TestReferences:
    @pytest.mark.parametrize(
        "typed", ["K7-3Q9", "k7-3q9", "K73Q9", "k7 3q9", " K7 - 3Q9 ", "K7\u20133Q9", "k7_3q9"]
    )
    def test_case_dashes_and_spaces_do_not_matter(self, typed: str) -> None:
        assert domain.reference_key(typed) == "K73Q9"

    def test_letters_read_as_digits_match(self) -> None:
        assert domain.reference_key("AO-1IL") == domain.reference_key("A0-111")

    @pytest.mark.parametrize("typed", ["", " - ", "K7/3Q9!", "é7-3Q9", "K" * 17, "x" * 100])
    def test_what_cannot_be_a_reference(self, typed: str) -> None:
        assert domain.reference_key(typed) is None


# --- phone numbers ------------------------------------------------------------------


class TestNumbers:
    @pytest.mark.parametrize(
        "typed",
        ["+442079460958", "+44 20 7946 0958", "+44 (20) 7946-0958", " +44.20.7946.0958 "],
    )
    def test_written_forms_become_e164(self, typed: str) -> None:
        assert domain.e164(typed) == "+442079460958"

    @pytest.mark.parametrize(
        ("typed", "problem"),
        [
            ("02079460958", "use E.164"),
            ("", "use E.164"),
            ("+44 20 7946 095x", "only digits"),
            ("+", "digits"),
            ("+\uff14\uff14" + "2079460958", "only digits"),  # full-width digits
            ("+0442079460958", "never starts with 0"),
            ("+12345", "7 to 15 digits"),
            ("+1234567890123456", "7 to 15 digits"),
        ],
    )
    def test_what_is_not_a_number_says_why(self, typed: str, problem: str) -> None:
        with pytest.raises(domain.InvalidNumber, match=problem) as caught:
            domain.e164(typed)
        digits = "".join(c for c in typed if c.isdigit())
        if len(digits) > 5:
            assert digits not in str(caught.value)

    def test_masking_shows_the_country_and_the_last_three(self) -> None:
        assert domain.mask_number("+442079460958") == "+44******0958"
        assert domain.mask_number("+44 20 7946 0958") == "+44 ** **** 0958"
        assert domain.mask_number("+123456") == "+******"

    @given(st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True))
    def test_a_masked_number_never_shows_more_than_six_digits(self, number: str) -> None:
        masked = domain.mask_number(number)
        assert sum(c.isdigit() for c in masked) == 6
        assert len(masked) == len(number)
        assert domain.safe_masked(masked) == masked

    def test_safe_masked_keeps_masked_forms_and_remasks_clear_ones(self) -> None:
        assert domain.safe_masked("+44******0958") == "+44******0958"
        assert domain.safe_masked("+44 20 7946 0958") == "+44 ** **** 0958"
        assert domain.safe_masked("  ") is None
        assert domain.safe_masked(None) is None
        long = domain.safe_masked("*" * 40)
        assert long is not None
        assert len(long) == domain.MAX_MASKED


# --- moments and codes --------------------------------------------------------------


class TestMoments:
    def test_iso_with_an_offset(self) -> None:
        assert domain.moment("2026-11-27T10:00:00Z") == T0
        assert domain.moment("2026-11-27T11:00:00+01:00") == T0

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("yesterday", "ISO 8601"),
            ("2026-13-01T00:00:00Z", "ISO 8601"),
            ("2026-11-27T10:00", "time zone"),
            ("0001-01-01T00:00:00+01:00", "outside"),
            ("9999-12-31T23:59:59-01:00", "outside"),
        ],
    )
    def test_bad_moments(self, text: str, problem: str) -> None:
        with pytest.raises(domain.InvalidMoment, match=problem):
            domain.moment(text)

    def test_a_window_must_not_be_backwards(self) -> None:
        domain.check_window(T0, T0)
        domain.check_window(None, T0)
        with pytest.raises(domain.InvalidMoment, match="later"):
            domain.check_window(T0 + timedelta(seconds=1), T0)


class TestCodes:
    def test_codes_are_six_digits_with_leading_zeros(self) -> None:
        assert domain.format_code(42) == "000042"
        assert domain.format_code(999_999) == "999999"
        with pytest.raises(ValueError, match="below"):
            domain.format_code(1_000_000)

    @pytest.mark.parametrize(
        ("keys", "code"),
        [
            ("123456", "123456"),
            ("123456#", "123456"),
            (" 012345* ", "012345"),
            ("12345", None),
            ("1234567", None),
            ("12a456", None),
            ("", None),
        ],
    )
    def test_keyed_codes(self, keys: str, code: str | None) -> None:
        assert domain.keyed_code(keys) == code
