"""Messages to customers (a payment link by e-mail or SMS) and what became of them.

A destination never travels in clear: `message.send` carries it, with the values its
template is filled with (a payment link's secret URL among them), sealed with the
tenant's key; every event names the destination masked. The address rules live here,
beside the command that carries addresses, so the service that asks (remote) and the
one that delivers (communications) refuse the same addresses with the same words.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from transact.contracts.base import Message

Channel = Literal["email", "sms"]
CHANNELS: Final = ("email", "sms")


def message_context(message_id: str) -> bytes:
    """Associated data sealing a message's payload to it: a blob moved to another
    message does not open there."""
    return b"message:" + message_id.encode()


class MessageSend(Message):
    """Deliver one message (a command for communications).

    `sealed` is base64 of `Vault.seal(tenant, json {"to": ..., "values": {...}},
    message_context(message_id))`. `about` names what the message is about (a
    link id), so the service that asked can follow its delivery.
    """

    topic = "message.send"
    message_id: str
    channel: Channel
    to_masked: str
    template: str
    sealed: str
    about: str | None = None
    agent_id: str | None = None


class _MessageEvent(Message):
    message_id: str
    channel: Channel
    provider: str
    to_masked: str
    template: str
    about: str | None = None
    agent_id: str | None = None


class MessageSent(_MessageEvent):
    """The provider took the message (an SMTP server accepted it, the SMS API queued it,
    or it was put in the outbox)."""

    topic = "message.sent"
    attempts: int


class MessageDelivered(_MessageEvent):
    """The provider reports the message reached the handset (or the outbox holds it)."""

    topic = "message.delivered"


class MessageFailed(_MessageEvent):
    """Given up: `reason` says why in words an agent can act on; never the address."""

    topic = "message.failed"
    reason: str
    attempts: int


# --- addresses --------------------------------------------------------------------------


class InvalidDestination(ValueError):
    """The message says what is wrong, never repeating the address."""


E164_MIN_DIGITS: Final = 7
E164_MAX_DIGITS: Final = 15
_NUMBER_PUNCTUATION: Final = re.compile(r"[\s\-.()/]+")

MAX_EMAIL: Final = 254
MAX_LOCAL: Final = 64
_LOCAL: Final = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TLD: Final = re.compile(r"([A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})")


def e164(text: str) -> str:
    """`+447700900123` from `+44 7700 900-123`; raises `InvalidDestination` otherwise."""
    compact = _NUMBER_PUNCTUATION.sub("", text)
    if not compact.startswith("+"):
        raise InvalidDestination(
            "use E.164: '+', the country code and the number, e.g. +447700900123"
        )
    digits = compact[1:]
    if not (digits.isascii() and digits.isdigit()):
        raise InvalidDestination("only digits, spaces, dashes and brackets may follow '+'")
    if digits.startswith("0"):
        raise InvalidDestination("a country code never starts with 0")
    if not E164_MIN_DIGITS <= len(digits) <= E164_MAX_DIGITS:
        raise InvalidDestination(
            f"an E.164 number has {E164_MIN_DIGITS} to {E164_MAX_DIGITS} digits after '+'"
        )
    return "+" + digits


def email_address(text: str) -> str:
    """A deliverable-looking address (`name@example.com`, domain lower-cased); raises
    `InvalidDestination` for anything else. No DNS look-up: that is the SMTP server's."""
    address = text.strip()
    if not address.isascii():
        raise InvalidDestination("use the ASCII form of the address (punycode for the domain)")
    if len(address) > MAX_EMAIL:
        raise InvalidDestination(f"an e-mail address has at most {MAX_EMAIL} characters")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise InvalidDestination("an e-mail address looks like name@example.com")
    if len(local) > MAX_LOCAL or not _LOCAL.fullmatch(local):
        raise InvalidDestination("the part before '@' has characters an address cannot have")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidDestination("the part after '@' is not a domain such as example.com")
    if not _TLD.fullmatch(labels[-1]):
        raise InvalidDestination("the domain must end in a top-level domain such as .com")
    return f"{local}@{domain.lower()}"


def destination(channel: str, text: str) -> str:
    """The destination in the form it is sent to, for `channel`."""
    if channel == "email":
        return email_address(text)
    if channel == "sms":
        return e164(text)
    raise InvalidDestination(f"channel must be one of {', '.join(CHANNELS)}")


VISIBLE_LEADING: Final = 3  # '+' and the first two digits of the country code
VISIBLE_TRAILING: Final = 3


def mask(channel: str, to: str) -> str:
    """What logs, events and agents see: `j***@example.com`, `+44*******123`."""
    if channel == "email":
        local, _, domain = to.rpartition("@")
        return f"{local[:1]}***@{domain}" if local else "***"
    if len(to) <= VISIBLE_LEADING + VISIBLE_TRAILING:
        return "*" * len(to)
    hidden = len(to) - VISIBLE_LEADING - VISIBLE_TRAILING
    return to[:VISIBLE_LEADING] + "*" * hidden + to[-VISIBLE_TRAILING:]
