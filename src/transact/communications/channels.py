"""The channels behind one port: each takes a rendered message to its destination and says
what happened as a `Delivery`. E-mail over SMTP, SMS over the Twilio Messages API.

(The outbox channel needs no transport: the flow stores the message itself.) Nothing
here logs a destination or a message's text: both hold personal data and a link's
secret URL.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Any

import aiosmtplib
import httpx

from transact.communications.domain import (
    Delivery,
    EmailConfig,
    Rendered,
    Result,
    Sender,
    SmsConfig,
    smtp_reply,
    twilio_answer,
    twilio_sent_before,
)

SMS_TIMEOUT = 10.0


def email_message(sender: Sender, to: str, rendered: Rendered) -> EmailMessage:
    """Plain text first, HTML as the alternative a mail client prefers."""
    assert sender.email is not None
    message = EmailMessage()
    message["From"] = formataddr((sender.name or "", sender.email))
    message["To"] = to
    message["Subject"] = rendered.subject
    message["Date"] = formatdate(localtime=False)
    # Hex, not `make_msgid`'s long decimal run, which can pass for a card number.
    message["Message-ID"] = f"<{secrets.token_hex(16)}@{sender.email.rpartition('@')[2]}>"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


def smtp_options(config: EmailConfig, password: str | None) -> dict[str, Any]:
    """aiosmtplib's connection options for a tenant's server (certificates are checked)."""
    return {
        "hostname": config.host,
        "port": config.port,
        "use_tls": config.security == "tls",
        "start_tls": config.security == "starttls",
        "username": config.username if password is not None else None,
        "password": password,
        "timeout": config.timeout,
        "validate_certs": True,
    }


async def send_email(
    config: EmailConfig, password: str | None, sender: Sender, to: str, rendered: Rendered
) -> Delivery:
    message = email_message(sender, to, rendered)
    try:
        await aiosmtplib.send(message, **smtp_options(config, password))
    except aiosmtplib.SMTPRecipientsRefused as refused:
        codes = [r.code for r in refused.recipients] or [550]
        return smtp_reply(min(codes))
    except aiosmtplib.SMTPAuthenticationError:
        return Delivery(Result.FAILED, "smtp", reason="the mail server refused our credentials")
    except aiosmtplib.SMTPResponseException as answer:
        return smtp_reply(answer.code)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as problem:
        # Could not talk to the server at all: it may be back in a moment.
        return Delivery(
            Result.RETRY,
            "smtp",
            reason=f"the mail server is unreachable ({type(problem).__name__})",
        )
    return Delivery(Result.SENT, "smtp", provider_id=str(message["Message-ID"]))


@dataclass(frozen=True)
class Sms:
    to: str
    body: str
    status_callback: str | None


def twilio_form(config: SmsConfig, sms: Sms) -> dict[str, str]:
    form = {"To": sms.to, "From": config.sender, "Body": sms.body}
    if sms.status_callback:
        form["StatusCallback"] = sms.status_callback
    return form


def _messages_url(config: SmsConfig) -> str:
    return f"{config.base_url.rstrip('/')}/2010-04-01/Accounts/{config.account_sid}/Messages.json"


async def send_sms(
    client: httpx.AsyncClient, config: SmsConfig, auth_token: str, sms: Sms
) -> Delivery:
    try:
        response = await client.post(
            _messages_url(config),
            data=twilio_form(config, sms),
            auth=(config.account_sid, auth_token),
            timeout=SMS_TIMEOUT,
        )
    except (httpx.ConnectError, httpx.ConnectTimeout) as problem:
        return Delivery(
            Result.RETRY,
            "twilio",
            reason=f"the SMS provider is unreachable ({type(problem).__name__})",
        )
    except httpx.HTTPError as problem:
        # The request may have got there and only the answer was lost.
        return Delivery(
            Result.RETRY,
            "twilio",
            reason=f"no answer from the SMS provider ({type(problem).__name__})",
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    return twilio_answer(response.status_code, body)


async def sms_sent_before(
    client: httpx.AsyncClient, config: SmsConfig, auth_token: str, sms: Sms, since: datetime
) -> Delivery | None:
    """Before sending again: did an earlier try get through? Its delivery (with its sid and
    how far it got) if so, None if not, RETRY when the provider cannot say (sending blind
    could text the customer twice)."""
    query = {"To": sms.to, "From": config.sender, "DateSent>": since.date().isoformat()}
    try:
        response = await client.get(
            _messages_url(config),
            params=query,
            auth=(config.account_sid, auth_token),
            timeout=SMS_TIMEOUT,
        )
        listing = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as problem:
        listing, why = None, type(problem).__name__
    else:
        why = str(response.status_code)
    if listing is None:
        return Delivery(
            Result.RETRY,
            "twilio",
            reason=f"the SMS provider could not say whether it was sent ({why})",
        )
    return twilio_sent_before(listing, sms.body, config.sender, since)
