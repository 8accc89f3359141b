"""Payment commands and outcomes between capture and the PSP adapter."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from transact.contracts.base import Message


class PaymentRequested(Message):
    """Authorize this payment with the card sealed in the vault under `vault_ref` (single use).

    The vault entry is a JSON object of strings: `pan`, `expiry` (MMYY), `cvv` (digits)
    and, where the tenant asks for them, `postcode` (digits from a keypad; a billing
    postcode such as "SW1A 1AA" from the payment page) and `holder` (the name on the
    card). The PSP adapter sends the postcode for the issuer's address check.
    """

    topic = "payment.requested"
    payment_id: str
    capture_id: str
    amount: int
    currency: str
    reference: str
    channel: str
    agent_id: str | None
    vault_ref: str
    idempotency_key: str
    brand: str | None = None
    # Keep the card for later charges: after approval the PSP adapter stores the
    # PSP's token (never the card) and names it in the outcome's `stored_card_id`.
    save_card: bool = False


class AttemptSummary(BaseModel):
    """One authorization attempt at one connector, for reporting (no card data)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connector: str
    outcome: str  # approved / declined / pending / error / sending (answer unknown)
    latency_ms: int | None = None
    decline_code: str | None = None


class _Outcome(Message):
    payment_id: str
    connector: str | None = None
    psp_reference: str | None = None
    decline_code: str | None = None
    attempts: int = 0
    # The stored card this payment saved (`save_card`) or was charged to, if any.
    stored_card_id: str | None = None
    # What reporting aggregates by, so it need not wait for `payment.requested`: absent
    # (None, empty) from messages published before these were carried.
    amount: int | None = None
    currency: str | None = None
    channel: str | None = None
    agent_id: str | None = None
    brand: str | None = None
    latency_ms: int | None = None  # PSP time over all authorization attempts
    failovers: int | None = None  # connectors left for the next one
    tried: list[AttemptSummary] = Field(default_factory=list)


class PaymentAuthorized(_Outcome):
    topic = "payment.authorized"


class PaymentDeclined(_Outcome):
    topic = "payment.declined"


class PaymentFailed(_Outcome):
    topic = "payment.failed"


class PaymentPending(_Outcome):
    """The PSP has not decided yet; the payment stays `submitted`.

    `action` is `authentication_required` (a 3-D Secure challenge waits for the
    cardholder, at `action_url` where the PSP gives one) or `processing` (the PSP
    is still deciding). A later `payment.authorized`, `.declined` or `.failed`
    ends it, once the PSP's answer is known (a status query).
    """

    topic = "payment.pending"
    action: str = "authentication_required"
    action_url: str | None = None


class PaymentRefunded(Message):
    topic = "payment.refunded"
    payment_id: str
    amount: int
    refunded_total: int
    fully: bool
    connector: str
    psp_reference: str | None = None


class PaymentCaptured(Message):
    topic = "payment.captured"
    payment_id: str
    amount: int
    captured_total: int
    connector: str
    psp_reference: str | None = None


class PaymentVoided(Message):
    topic = "payment.voided"
    payment_id: str
    connector: str
    psp_reference: str | None = None
