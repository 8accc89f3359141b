"""The e-mail a customer gets and how we reach a tenant's SMTP server."""

from __future__ import annotations

from transact.communications import channels, domain
from transact.communications.domain import EmailConfig, Sender, Settings

VALUES = {
    "merchant": "Shop",
    "amount": "£1.00",
    "reference": "R",
    "url": "https://pay.example/pay/" + "a" * 43,
    "expires": "30 minutes",
}


def test_an_email_has_text_and_html_and_a_hex_message_id() -> None:
    rendered = domain.render(Settings(), "payment_link", VALUES)
    message = channels.email_message(
        Sender("Shop", "pay@shop.example"), "jane@example.com", rendered
    )
    assert message["From"] == "Shop <pay@shop.example>"
    assert message.get_body(preferencelist=("plain",)) is not None
    assert message.get_body(preferencelist=("html",)) is not None
    message_id = str(message["Message-ID"])
    assert message_id.endswith("@shop.example>")
    # A long decimal run here would look like a card number to the log redactor.
    assert not any(run.isdigit() and len(run) >= 13 for run in message_id.split("."))


def test_smtp_security_options() -> None:
    starttls = channels.smtp_options(EmailConfig("h", 587, "starttls", "u"), "p")
    assert starttls["start_tls"] is True
    assert starttls["use_tls"] is False
    assert starttls["validate_certs"] is True
    assert starttls["username"] == "u"
    implicit = channels.smtp_options(EmailConfig("h", 465, "tls"), None)
    assert implicit["use_tls"] is True
    assert implicit["start_tls"] is False
    assert implicit["username"] is None
    plain = channels.smtp_options(EmailConfig("h", 25, "none"), None)
    assert plain["use_tls"] is False
    assert plain["start_tls"] is False
