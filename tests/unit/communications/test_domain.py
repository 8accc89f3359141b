"""Message rules: addresses, masking, templates, SMS length, retries, provider answers,
delivery reports and Twilio's signatures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from transact.communications import domain
from transact.communications.domain import (
    Delivery,
    Result,
    Settings,
    SettingsError,
    Status,
    twilio_sent_before,
)
from transact.contracts.messages import InvalidDestination, destination, e164, email_address, mask

VALUES = {
    "merchant": "Example Shop",
    "amount": "£12.50",
    "reference": "INV-1",
    "url": "https://pay.example.com/pay/" + "t" * 43,
    "expires": "30 minutes",
}


@pytest.mark.parametrize(
    ("given", "expected"),
    [("+44 7700 900-123", "+447700900123"), ("+1 (415) 555.0100", "+14155550100")],
)
def test_e164_numbers(given: str, expected: str) -> None:
    assert e164(given) == expected


@pytest.mark.parametrize("given", ["07700900123", "+0447700900123", "+44 7700 9OO123", "+123", ""])
def test_numbers_that_are_not_e164(given: str) -> None:
    with pytest.raises(InvalidDestination) as refused:
        e164(given)
    assert given.strip() == "" or given not in str(refused.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Jane.Doe@Example.COM", "Jane.Doe@example.com"),
        (" a+tag@sub.example.co.uk ", "a+tag@sub.example.co.uk"),
        ("x@xn--bcher-kva.example", "x@xn--bcher-kva.example"),
    ],
)
def test_email_addresses(given: str, expected: str) -> None:
    assert email_address(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "plain",
        "a@b",
        "a@b.c",
        "@example.com",
        "a@.example.com",
        "a..b@example.com",
        "a b@example.com",
        "ünï@example.com",
        "a@-x.example.com",
        "a@example.123",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_addresses_that_are_not(given: str) -> None:
    with pytest.raises(InvalidDestination):
        email_address(given)


def test_destinations_are_masked_for_logs_events_and_agents() -> None:
    assert mask("email", "jane@example.com") == "j***@example.com"
    assert mask("sms", "+447700900123") == "+44*******123"
    assert "900" not in mask("sms", "+447700900123")
    assert destination("sms", "+44 7700 900123") == "+447700900123"
    with pytest.raises(InvalidDestination):
        destination("fax", "+447700900123")


def test_default_templates_show_the_link_in_every_form() -> None:
    rendered = domain.render(Settings(), "payment_link", VALUES)
    assert rendered.subject == "Your payment link from Example Shop"
    assert VALUES["url"] in rendered.text
    assert f'href="{VALUES["url"]}"' in rendered.html
    assert VALUES["url"] in rendered.sms
    assert domain.segments(rendered.sms) == 1


def test_html_escapes_what_it_is_given() -> None:
    values = {**VALUES, "reference": "<script>alert(1)</script>"}
    rendered = domain.render(Settings(), "payment_link", values)
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html


def test_a_tenants_template_is_checked_and_used() -> None:
    own = {"payment_link": {"sms": "Pay {{ amount }} to {{ merchant }}: {{ url }}"}}
    rendered = domain.render(Settings(templates=own), "payment_link", VALUES)
    assert rendered.sms == f"Pay £12.50 to Example Shop: {VALUES['url']}"
    for bad, why in [
        ({"payment_link": {"sms": "Pay now"}}, "must show the link"),
        ({"payment_link": {"sms": "{{ url "}}, "templates.payment_link.sms"),
        ({"payment_link": {"sms": "{{ nothing }} {{ url }}"}}, "undefined"),
        ({"receipt": {"sms": "{{ url }}"}}, "unknown template"),
        ({"payment_link": {"fax": "{{ url }}"}}, "parts are"),
        ({"payment_link": {"text": "{{ url.__class__.__mro__ }}"}}, "templates.payment_link"),
    ]:
        with pytest.raises(SettingsError, match=why):
            Settings(templates=bad)


def test_sms_fits_one_gsm7_message_when_it_can() -> None:
    assert domain.gsm7("Pay £12.50 at https://x.example/pay/abc")
    assert not domain.gsm7("Pay ₹12")
    assert domain.septets("€[]") == 6
    long = "x" * 200
    assert domain.fit_sms([long, "Pay: short"]) == "Pay: short"
    typographic = "It\u2019s \u201cquoted\u201d \u2013 fine"
    assert domain.fit_sms([typographic]) == 'It\'s "quoted" - fine'
    assert domain.segments("x" * 160) == 1
    assert domain.segments("x" * 161) == 2
    assert domain.segments("₹" * 70) == 1
    assert domain.segments("₹" * 71) == 2
    # Nothing fits: the candidate sent as the fewest messages.
    assert domain.fit_sms(["₹" * 150, "x" * 200]) == "x" * 200
    long_merchant = {**VALUES, "merchant": "A Very Long Merchant Name Limited " * 3}
    rendered = domain.render(Settings(), "payment_link", long_merchant)
    assert rendered.sms == f"Pay £12.50: {VALUES['url']}"


def test_retries_back_off_then_give_up() -> None:
    assert domain.retry_delay(1) == timedelta(seconds=2)
    assert domain.retry_delay(3) == timedelta(seconds=8)
    assert domain.retry_delay(20) == timedelta(minutes=5)
    passing = Delivery(Result.RETRY, "smtp", reason="busy")
    assert domain.after_failure(passing, 1) is Result.RETRY
    assert domain.after_failure(passing, domain.MAX_ATTEMPTS) is Result.FAILED
    final = Delivery(Result.FAILED, "smtp", reason="no such user")
    assert domain.after_failure(final, 1) is Result.FAILED


def test_provider_answers() -> None:
    assert domain.smtp_reply(451).result is Result.RETRY
    assert domain.smtp_reply(550).result is Result.FAILED
    assert domain.twilio_answer(201, {"sid": "SM1"}) == Delivery(Result.SENT, "twilio", "SM1")
    assert domain.twilio_answer(503, None).result is Result.RETRY
    assert domain.twilio_answer(429, {}).result is Result.RETRY
    assert domain.twilio_answer(401, {}).reason == "the SMS provider refused our credentials"
    invalid = domain.twilio_answer(400, {"code": 21211, "message": "bad"})
    assert invalid == Delivery(
        Result.FAILED, "twilio", reason="the number is not a valid phone number"
    )


def test_delivery_reports_never_undo_a_final_status() -> None:
    assert domain.callback_status("delivered") is Status.DELIVERED
    assert domain.callback_status("undelivered") is Status.FAILED
    assert domain.callback_status("sent") is None
    assert domain.may_become(Status.SENT, Status.DELIVERED)
    assert not domain.may_become(Status.DELIVERED, Status.FAILED)
    assert not domain.may_become(Status.FAILED, Status.DELIVERED)


def test_twilio_signatures() -> None:
    url = "https://shop.example/api/v1/communications/sms/t1/status"
    params = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+447700900123"}
    signature = domain.twilio_signature("token", url, params)
    assert domain.signature_valid("token", url, params, signature)
    assert not domain.signature_valid("other", url, params, signature)
    assert not domain.signature_valid("token", url + "x", params, signature)
    changed = {**params, "MessageStatus": "failed"}
    assert not domain.signature_valid("token", url, changed, signature)
    assert not domain.signature_valid("token", url, params, "")


def test_settings_rules() -> None:
    with pytest.raises(SettingsError, match=r"sender\.email"):
        Settings.from_dict({"email": {"host": "smtp.example.com"}})
    with pytest.raises(SettingsError, match="security"):
        Settings.from_dict(
            {"sender": {"email": "a@shop.example"}, "email": {"host": "h", "security": "ssl"}}
        )
    with pytest.raises(SettingsError, match=r"sms\.from"):
        Settings.from_dict({"sms": {"account_sid": "AC1", "from": "not a sender id!"}})
    settings = Settings.from_dict(
        {
            "sender": {"name": "Shop", "email": "pay@shop.example"},
            "email": {"host": "smtp.shop.example", "port": 465, "security": "tls"},
            "sms": {"account_sid": "AC1", "from": "ShopPay"},
        }
    )
    assert Settings.from_dict(settings.to_dict()) == settings
    assert settings.to_dict()["sms"]["from"] == "ShopPay"


def test_an_earlier_try_is_recognised_by_its_text_sender_and_time() -> None:
    since = datetime(2026, 11, 27, 9, 30, 15, 600000, tzinfo=UTC)
    ours = {
        "sid": "SMours",
        "body": "Pay here: https://pay.example/pay/abc",
        "from": "+447700900000",
        "date_created": "Fri, 27 Nov 2026 09:30:15 +0000",
    }
    listing = {
        "messages": [
            {**ours, "sid": "SMolder", "date_created": "Fri, 27 Nov 2026 09:29:00 +0000"},
            {**ours, "sid": "SMother", "body": "Another link"},
            {**ours, "sid": "SMelse", "from": "+447700900999"},
            "junk",
            {**ours, "sid": "SMbad", "date_created": "not a date"},
            ours,
        ]
    }
    body, sender = ours["body"], ours["from"]
    assert twilio_sent_before(listing, body, sender, since) == Delivery(
        Result.SENT, "twilio", provider_id="SMours"
    )
    delivered = {"messages": [{**ours, "status": "delivered"}]}
    assert twilio_sent_before(delivered, body, sender, since) == Delivery(
        Result.DELIVERED, "twilio", provider_id="SMours"
    )
    lost = {"messages": [{**ours, "status": "undelivered", "error_code": 30003}]}
    failed = twilio_sent_before(lost, body, sender, since)
    assert failed is not None
    assert failed.result is Result.FAILED
    assert failed.reason == "the handset is switched off or unreachable"
    assert twilio_sent_before({"messages": listing["messages"][:5]}, body, sender, since) is None
    assert twilio_sent_before(None, body, sender, since) is None
    assert twilio_sent_before({"messages": "x"}, body, sender, since) is None
