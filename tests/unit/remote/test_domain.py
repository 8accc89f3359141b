"""Link rules: tokens, expiry, channels, who may still pay, attempts, the page's state."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime, timedelta

import pytest

from transact.remote import domain
from transact.remote.domain import (
    Attempt,
    AttemptStatus,
    Link,
    LinkError,
    LinkSettings,
    LinkStatus,
    PageState,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def link(**changes: object) -> Link:
    base = Link(
        id="lnk_1",
        tenant_id="t",
        agent_id="u1",
        created_by="user:u1",
        amount=1250,
        currency="GBP",
        reference="INV-1",
        channel="chat",
        to_masked=None,
        status=LinkStatus.OPENED,
        attempts=0,
        max_attempts=3,
        expires_at=NOW + timedelta(minutes=30),
        created_at=NOW,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def attempt(status: AttemptStatus, **changes: object) -> Attempt:
    return dataclasses.replace(Attempt("pay_1", "lnk_1", "t", status), **changes)  # type: ignore[arg-type]


def test_tokens_have_256_bits_and_only_their_hash_is_kept() -> None:
    token = secrets.token_urlsafe(domain.TOKEN_BYTES)
    assert domain.looks_like_token(token)
    assert len(token) == 43
    assert domain.token_hash(token) != token
    assert len(domain.token_hash(token)) == 64
    assert domain.token_hash(token) == domain.token_hash(token)
    for bad in ("", "short", token + "x", token[:-1] + "!", "../" + token[3:]):
        assert not domain.looks_like_token(bad)


def test_a_million_link_tokens_and_their_hashes_never_collide() -> None:
    tokens = {secrets.token_urlsafe(domain.TOKEN_BYTES) for _ in range(1_000_000)}
    assert len(tokens) == 1_000_000
    assert len({domain.token_hash(token) for token in tokens}) == 1_000_000


def test_expiry_defaults_to_30_minutes_and_stays_within_the_tenants_limit() -> None:
    settings = LinkSettings()
    assert domain.expiry(settings, None, NOW) == NOW + timedelta(minutes=30)
    assert domain.expiry(settings, 7 * 86400, NOW) == NOW + timedelta(days=7)
    tight = LinkSettings(default_expires_in=600, max_expires_in=3600)
    assert domain.expiry(tight, None, NOW) == NOW + timedelta(minutes=10)
    for seconds in (0, 59, 3601):
        with pytest.raises(LinkError) as refused:
            domain.expiry(tight, seconds, NOW)
        assert refused.value.code == "invalid_expiry"


@pytest.mark.parametrize(
    "values",
    [
        {"max_expires_in": 8 * 86400},
        {"default_expires_in": 30},
        {"default_expires_in": 7200, "max_expires_in": 3600},
        {"max_attempts": 0},
        {"submitter": "robot"},
        {"merchant_name": ""},
        {"card_posts_per_ip_per_hour": 0},
        {"surprise": 1},
    ],
)
def test_bad_settings_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(LinkError) as refused:
        LinkSettings.from_dict(values)
    assert refused.value.code == "invalid_settings"


def test_settings_round_trip_and_name_the_fields() -> None:
    settings = LinkSettings(ask_postcode=True, submitter=domain.Submitter.AGENT)
    assert LinkSettings.from_dict(settings.to_dict()) == settings
    assert settings.fields == ["pan", "expiry", "cvv", "postcode"]
    assert LinkSettings().fields == ["pan", "expiry", "cvv"]


@pytest.mark.parametrize(
    ("channel", "to", "code"),
    [
        ("fax", None, "invalid_channel"),
        ("SMS", "+447700900123", "invalid_channel"),
        ("sms", None, "missing_destination"),
        ("email", "", "missing_destination"),
        ("chat", "a@b.example", "unexpected_destination"),
    ],
)
def test_channels_and_destinations(channel: str, to: str | None, code: str) -> None:
    with pytest.raises(LinkError) as refused:
        domain.check_channel(channel, to)
    assert refused.value.code == code


def test_a_link_past_its_expiry_reads_expired_before_the_sweep() -> None:
    assert domain.status_at(link(), NOW) is LinkStatus.OPENED
    assert domain.status_at(link(), NOW + timedelta(minutes=30)) is LinkStatus.EXPIRED
    paid = link(status=LinkStatus.COMPLETED)
    assert domain.status_at(paid, NOW + timedelta(days=9)) is LinkStatus.COMPLETED


@pytest.mark.parametrize(
    ("the_link", "current", "code"),
    [
        (link(status=LinkStatus.COMPLETED), None, "paid"),
        (link(status=LinkStatus.CANCELLED), None, "cancelled"),
        (link(expires_at=NOW), None, "expired"),
        (link(attempts=3), None, "too_many_attempts"),
        (link(status=LinkStatus.FAILED, attempts=3), None, "too_many_attempts"),
        (link(attempts=1), attempt(AttemptStatus.SUBMITTED), "attempt_in_progress"),
        (link(attempts=1), attempt(AttemptStatus.CHALLENGE), "attempt_in_progress"),
    ],
)
def test_who_may_not_post_a_card(the_link: Link, current: Attempt | None, code: str) -> None:
    with pytest.raises(LinkError) as refused:
        domain.may_post_card(the_link, current, NOW)
    assert refused.value.code == code


def test_a_card_may_follow_a_failed_attempt_while_attempts_remain() -> None:
    domain.may_post_card(link(attempts=2), attempt(AttemptStatus.DECLINED), NOW)
    domain.may_post_card(link(status=LinkStatus.ACTIVE), None, NOW)


def test_attempts_only_move_forward() -> None:
    assert domain.moves_to(AttemptStatus.POSTED, AttemptStatus.SUBMITTED)
    assert domain.moves_to(AttemptStatus.POSTED, AttemptStatus.AUTHORIZED)  # events overtake
    assert domain.moves_to(AttemptStatus.SUBMITTED, AttemptStatus.CHALLENGE)
    assert not domain.moves_to(AttemptStatus.SUBMITTED, AttemptStatus.READY)
    assert not domain.moves_to(AttemptStatus.CHALLENGE, AttemptStatus.SUBMITTED)
    assert not domain.moves_to(AttemptStatus.AUTHORIZED, AttemptStatus.DECLINED)
    assert not domain.moves_to(AttemptStatus.INVALID, AttemptStatus.SUBMITTED)


def test_the_link_follows_its_attempts() -> None:
    assert domain.link_after(link(attempts=1), AttemptStatus.AUTHORIZED) is LinkStatus.COMPLETED
    assert domain.link_after(link(attempts=1), AttemptStatus.DECLINED) is None
    assert domain.link_after(link(attempts=3), AttemptStatus.DECLINED) is LinkStatus.FAILED
    assert domain.link_after(link(attempts=3), AttemptStatus.INVALID) is LinkStatus.FAILED
    # Money moved: paid even if the link expired or was cancelled meanwhile.
    late = link(status=LinkStatus.EXPIRED, attempts=1)
    assert domain.link_after(late, AttemptStatus.AUTHORIZED) is LinkStatus.COMPLETED
    assert domain.link_after(late, AttemptStatus.DECLINED) is None
    paid = link(status=LinkStatus.COMPLETED)
    assert domain.link_after(paid, AttemptStatus.AUTHORIZED) is None


def test_what_the_page_shows() -> None:
    assert domain.page_state(link(), None, NOW) is PageState.FORM
    assert domain.page_state(link(), attempt(AttemptStatus.POSTED), NOW) is PageState.WAITING
    assert domain.page_state(link(), attempt(AttemptStatus.READY), NOW) is PageState.AGENT
    challenge = attempt(AttemptStatus.CHALLENGE, action_url="https://bank.example/3ds")
    assert domain.page_state(link(), challenge, NOW) is PageState.CHALLENGE
    assert domain.page_state(link(), attempt(AttemptStatus.DECLINED), NOW) is PageState.FORM
    paid = link(status=LinkStatus.COMPLETED)
    assert domain.page_state(paid, None, NOW) is PageState.PAID
    assert domain.page_state(link(expires_at=NOW), None, NOW) is PageState.ENDED


def test_outcomes_in_plain_words() -> None:
    assert domain.last_outcome(None) is None
    assert domain.last_outcome(attempt(AttemptStatus.AUTHORIZED)) is None
    declined = attempt(AttemptStatus.DECLINED, decline_code="insufficient_funds")
    assert "not enough funds" in str(domain.last_outcome(declined))
    assert "another card" in str(domain.last_outcome(attempt(AttemptStatus.DECLINED)))
    assert "check the card" in str(domain.last_outcome(attempt(AttemptStatus.INVALID)))
    assert domain.field_message("pan", "fails the Luhn check") == "Enter a valid card number."
    assert "another card" in domain.field_message("pan", "amex is not accepted")


def test_posted_fields_lose_only_the_separators_people_type() -> None:
    form = {"number": "4242 4242-4242 4242", "expiry": "12 / 2031", "cvc": " 123 "}
    assert domain.posted_card(form, ["pan", "expiry", "cvv"]) == {
        "pan": "4242424242424242",
        "expiry": "1231",
        "cvv": "123",
    }
    assert domain.posted_card({}, ["pan", "expiry", "cvv", "postcode"]) == dict.fromkeys(
        ("pan", "expiry", "cvv", "postcode"), ""
    )
    assert len(domain.posted_card({"number": "4" * 500}, ["pan"])["pan"]) == domain.MAX_POSTED


def test_a_posted_postcode_keeps_its_spaces_for_the_rules_to_judge() -> None:
    # "SW1A 1AA" is a postcode with its space; normalizing is billing_postcode's job.
    form = {"postcode": " sw1a 1aa "}
    assert domain.posted_card(form, ["postcode"]) == {"postcode": " sw1a 1aa "}
    assert len(domain.posted_card({"postcode": "A" * 500}, ["postcode"])["postcode"]) == (
        domain.MAX_POSTED
    )


def test_money_and_durations_as_people_read_them() -> None:
    assert domain.money(1250, "GBP") == "£12.50"
    assert domain.money(100000, "EUR") == "€1,000.00"
    assert domain.money(500, "JPY") == "¥500"
    assert domain.money(1234, "ISK") == "1,234 ISK"
    assert domain.money(1005, "KWD") == "1.005 KWD"
    assert domain.duration(1800) == "30 minutes"
    assert domain.duration(5400) == "90 minutes"
    assert domain.duration(3600) == "1 hour"
    assert domain.duration(7 * 86400) == "7 days"
    assert domain.duration(30) == "1 minute"
