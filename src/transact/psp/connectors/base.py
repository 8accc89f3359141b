"""What every connector shares: the orders it turns into requests, the one result shape,
and the declaration the adapter core routes by.

A connector is pure: it builds an `HttpCall` and parses the answer. The adapter
core sends the call (httpx, timeouts, circuit breakers) and decides about
failover; a connector knows nothing of routing, settings or other connectors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

from transact.kernel.sensitive import Pan, SensitiveStr


class Interaction(StrEnum):
    """How the card reached us, which providers flag on the authorization.

    * `ecommerce`: the cardholder typed it into a web page (pay-by-link); 3-D
      Secure may apply.
    * `moto`: mail order / telephone order, card not present: the customer gave
      it over the phone (keypad or speech). Out of scope for 3-D Secure.
    * `merchant_initiated`: a stored card charged without the cardholder taking
      part (card on file, unscheduled).
    """

    ECOMMERCE = "ecommerce"
    MOTO = "moto"
    MERCHANT_INITIATED = "merchant_initiated"


# Channels where the card is given over the phone: their authorizations are MOTO.
PHONE_CHANNELS = frozenset({"phone", "speech", "ivr"})


def interaction_for(channel: str) -> Interaction:
    """The phone channels are telephone orders (MOTO); everything else is e-commerce."""
    return Interaction.MOTO if channel in PHONE_CHANNELS else Interaction.ECOMMERCE


class Outcome(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    PENDING = "pending"  # e.g. a 3-D Secure challenge is required
    ERROR = "error"


class DeclineCode(StrEnum):
    """Normalized reasons, whatever each provider calls them."""

    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    INCORRECT_CVC = "incorrect_cvc"
    EXPIRED_CARD = "expired_card"
    DO_NOT_HONOR = "do_not_honor"
    PROCESSING_ERROR = "processing_error"
    AUTHENTICATION_REQUIRED = "authentication_required"
    INVALID_REQUEST = "invalid_request"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class Card:
    pan: Pan
    expiry_month: int
    expiry_year: int  # four digits
    cvv: SensitiveStr | None = None
    holder: str | None = None
    # The billing postcode, where the tenant asks for it ("SW1A 1AA" from the payment
    # page, digits from a keypad): sent for the issuer's address check (AVS). Personal
    # data: kept out of the repr, so a logged Card never shows it.
    postcode: str | None = field(default=None, repr=False)


# The issuer's verdict on the billing postcode, whatever each provider calls it:
# "pass" it matches, "fail" it does not, "unavailable" the provider could not check.
# A check is information for the merchant, never a decline by itself.
PostcodeCheck = Literal["pass", "fail", "unavailable"]


@dataclass(frozen=True)
class Order:
    """One money movement, in minor units. `reference` is ours and unique per payment:
    providers store it, so the core can later ask for the payment by it."""

    reference: str
    amount: int
    currency: str
    idempotency_key: str
    capture: bool = True  # a sale; False authorizes only
    card: Card | None = None
    token: str | None = None  # a stored PSP token instead of a card
    description: str | None = None
    interaction: Interaction = Interaction.ECOMMERCE
    # Ask the provider to keep the card for later charges, answering with its token
    # where it can (`PspResult.token`); `shopper_reference` names whose card it is.
    store: bool = False
    shopper_reference: str | None = None
    # Where the provider sends the cardholder after a 3-D Secure check (the hosted
    # payment page's way back); None: the connector's configured default.
    return_url: str | None = None


@dataclass(frozen=True)
class HttpCall:
    method: str
    path: str  # joined to the connector's base URL by the core
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    form: Mapping[str, str] | None = None


@dataclass(frozen=True)
class PspResult:
    outcome: Outcome
    psp_reference: str | None = None
    decline_code: DeclineCode | None = None
    message: str | None = None  # the provider's words, for operators; never card data
    may_retry_elsewhere: bool = False  # True only when this PSP provably did not charge
    http_status: int | None = None
    amount: int | None = None  # what the PSP says was authorized/captured/refunded
    token: str | None = None  # from tokenize, or an authorization that stored the card
    action: Mapping[str, Any] | None = None  # e.g. where the 3-D Secure challenge lives
    # From a status query, where the provider says it: how much of the payment it has
    # refunded (reconciliation compares it with ours). None: not said.
    refunded: int | None = None
    # The address check of the billing postcode (AVS); None where the provider said
    # nothing about it (no postcode went, or its answer carries no check).
    postcode_check: PostcodeCheck | None = None


class Connector(Protocol):
    """Each verb is a pair: `<verb>_call(...) -> HttpCall` and `parse_<verb>(status, body)`."""

    name: str
    base_url: str  # where the core sends this connector's calls
    brands: frozenset[str]
    currencies: frozenset[str] | None  # None: any ISO 4217 currency
    # False where the provider cannot find a payment by our reference: then
    # `status_call` must not be sent, and an ambiguous failure cannot be resolved
    # by asking (the core must not fail over; it records the attempt as unknown).
    supports_status_query: bool

    def authorize_call(self, order: Order) -> HttpCall: ...
    def parse_authorize(self, status: int, body: Any) -> PspResult: ...
    def capture_call(
        self, psp_reference: str, amount: int, currency: str, idempotency_key: str
    ) -> HttpCall: ...
    def parse_capture(self, status: int, body: Any) -> PspResult: ...
    def void_call(self, psp_reference: str, idempotency_key: str) -> HttpCall: ...
    def parse_void(self, status: int, body: Any) -> PspResult: ...
    def refund_call(
        self, psp_reference: str, amount: int, currency: str, idempotency_key: str
    ) -> HttpCall: ...
    def parse_refund(self, status: int, body: Any) -> PspResult: ...
    def verify_call(self, order: Order) -> HttpCall: ...
    def parse_verify(self, status: int, body: Any) -> PspResult: ...
    def tokenize_call(self, card: Card, reference: str, idempotency_key: str) -> HttpCall: ...
    def parse_tokenize(self, status: int, body: Any) -> PspResult: ...
    # The second step some providers need before a token can be charged again
    # (Stripe: attach the PaymentMethod to a Customer); None where the first was enough.
    def keep_token_call(
        self, token: str, reference: str, idempotency_key: str
    ) -> HttpCall | None: ...
    def parse_keep_token(self, status: int, body: Any) -> PspResult: ...
    # Charge a stored token, merchant-initiated (the cardholder takes no part).
    def charge_token_call(self, order: Order) -> HttpCall: ...
    def status_call(self, reference: str, psp_reference: str | None) -> HttpCall: ...
    def parse_status(self, status: int, body: Any) -> PspResult: ...
    def scrub(self, transcript: Any) -> Any: ...
